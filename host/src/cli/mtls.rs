//! Self-hosted CA lifecycle commands, with the Dapr CLI's names and meaning:
//! `warden mtls renew-certificate`, `warden mtls expiry`, `warden mtls export`, and
//! `warden status`. They act on the credential files; a running server hot-reloads the result.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use serde::Serialize;
use warden_core::UnixTime;
use warden_core::bundle::{
    BundleError, CaBundle, CertificatesError, IssueError, certificates_to_pem, create_root,
    parse_certificates, renew_root,
};
use warden_core::crypto::{CaSigner, KeyAlgorithm, KeyError};
use warden_core::expiry::{CaCertKind, expiry_warning};
use warden_core::profile::{DEFAULT_CLOCK_SKEW, Validity};
use warden_core::spiffe::{SpiffeId, SpiffeIdError, TrustDomain};
use x509_cert::Certificate;
use zeroize::Zeroizing;

use crate::credentials::CredentialsArg;
use crate::credentials::store::CredentialPaths;
use crate::go::time::go_time;
use crate::native::{NativeError, NativeKey, NativeVerifier};
use crate::rotation::issuer::{RotationError, new_issuer};
use crate::rotation::root::{Phase, RootRotationError};
use crate::util::OutputFormat;
use crate::util::files;

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// `warden mtls ...`
#[derive(Debug, clap::Subcommand)]
pub(crate) enum MtlsCommand {
    /// Replace the root and issuer: a fresh root key (no key given), a new root signed with an
    /// existing root key (--private-key: clients holding the old root keep working), or your own
    /// files (--ca-root-certificate, --issuer-private-key, --issuer-public-certificate).
    #[command(visible_aliases = ["renew-cert", "rnc"])]
    RenewCertificate(RenewArgs),
    /// Print how long the root and the issuer certificates have left.
    Expiry(ExpiryArgs),
    /// Copy ca.crt, issuer.crt and issuer.key into a directory (mode 0600).
    Export(ExportArgs),
}

/// `warden mtls renew-certificate`
#[derive(Debug, Args)]
pub(crate) struct RenewArgs {
    #[command(flatten)]
    credentials: CredentialsArg,
    /// Root private key (PEM: SEC1 EC, PKCS#8). When it is the key of a root in the current
    /// ca.crt, the new root keeps that root's subject and key identifier, so clients holding the
    /// old ca.crt keep trusting the CA; any other key needs --force.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["ca_root_certificate", "issuer_private_key", "issuer_public_certificate"])]
    private_key: Option<PathBuf>,
    /// Your root certificate(s) (PEM), installed as ca.crt.
    #[arg(long, value_name = "FILE", requires_all = ["issuer_private_key", "issuer_public_certificate"])]
    ca_root_certificate: Option<PathBuf>,
    /// Your issuer private key (PEM), installed as issuer.key.
    #[arg(long, value_name = "FILE", requires_all = ["ca_root_certificate", "issuer_public_certificate"])]
    issuer_private_key: Option<PathBuf>,
    /// Your issuer certificate chain (PEM), installed as issuer.crt.
    #[arg(long, value_name = "FILE", requires_all = ["ca_root_certificate", "issuer_private_key"])]
    issuer_public_certificate: Option<PathBuf>,
    /// Lifetime of the generated root and issuer, in days.
    #[arg(long, value_name = "DAYS", default_value_t = 365)]
    valid_until: u32,
    /// Trust domain of a new root (its subject O=) and of the issuer's SPIFFE ID. Default: the
    /// current root's (its O=, else the issuer's SPIFFE ID, else its CN=); localhost without one.
    #[arg(long, conflicts_with_all = ["ca_root_certificate", "issuer_private_key", "issuer_public_certificate"])]
    trust_domain: Option<String>,
    /// Sentry's namespace, for the issuer's subject spiffe://<td>/ns/<NAMESPACE>/dapr-sentry.
    #[arg(long, env = "NAMESPACE", default_value = "default")]
    namespace: String,
    /// Replace the root although clients holding the current ca.crt will stop trusting the CA
    /// (a root key that is not the current root's, or a root rotation in progress).
    #[arg(long, conflicts_with_all = ["ca_root_certificate", "issuer_private_key", "issuer_public_certificate"])]
    force: bool,
}

/// `warden mtls expiry`
#[derive(Debug, Args)]
pub(crate) struct ExpiryArgs {
    #[command(flatten)]
    credentials: CredentialsArg,
    /// `text` or `json`.
    #[arg(long, short = 'o', value_enum, default_value = "text")]
    output: OutputFormat,
}

/// `warden mtls export`
#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    #[command(flatten)]
    credentials: CredentialsArg,
    /// Where to write the three files.
    #[arg(long = "out", short = 'o', value_name = "DIR", default_value = ".")]
    out: PathBuf,
}

/// `warden status`
#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    credentials: CredentialsArg,
    /// `text` or `json`.
    #[arg(long, short = 'o', value_enum, default_value = "text")]
    output: OutputFormat,
}

/// Why a lifecycle command failed. Nothing is written when any check fails.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum LifecycleError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A certificate file does not hold certificates.
    #[error("{}: {source}; nothing was changed", path.display())]
    Certificates {
        /// The file.
        path: PathBuf,
        /// What is wrong in it.
        source: CertificatesError,
    },
    /// A key file does not hold a usable key.
    #[error("{}: {source}; nothing was changed", path.display())]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        source: KeyError,
    },
    /// A PEM file given is not UTF-8 text.
    #[error("{}: not UTF-8 PEM; nothing was changed", path.display())]
    NotUtf8 {
        /// The file.
        path: PathBuf,
    },
    /// The files given do not form a valid credential set.
    #[error("{}: {source}; nothing was changed", path.display())]
    InvalidSet {
        /// The file the problem is in.
        path: PathBuf,
        /// What is wrong.
        source: BundleError,
    },
    /// `--trust-domain` is not a trust domain.
    #[error("--trust-domain {value:?}: {source}; nothing was changed")]
    InvalidTrustDomain {
        /// The value given.
        value: String,
        /// Why it is not one.
        source: SpiffeIdError,
    },
    /// Sentry's default trust domain (`localhost`) was refused; never happens.
    #[error("{0}; nothing was changed")]
    DefaultTrustDomain(#[source] SpiffeIdError),
    /// `NAMESPACE` does not make a Sentry SPIFFE ID.
    #[error("NAMESPACE {value:?}: {source}; nothing was changed")]
    InvalidNamespace {
        /// The value given.
        value: String,
        /// Why it is not valid.
        source: SpiffeIdError,
    },
    /// The root rotation state file cannot be read.
    #[error("{0}; nothing was changed")]
    RootRotation(#[source] Box<RootRotationError>),
    /// Making the new root key failed.
    #[error("{0}; nothing was changed")]
    NewKey(#[source] NativeError),
    /// Making the new root certificate failed.
    #[error("{0}; nothing was changed")]
    NewRoot(#[source] IssueError),
    /// Making the new issuer failed.
    #[error("{0}; nothing was changed")]
    NewIssuer(#[source] Box<RotationError>),
    /// The new issuer's key does not read back.
    #[error("{0}; nothing was changed")]
    NewIssuerKey(#[source] KeyError),
    /// Encoding or decoding a certificate failed.
    #[error("{0}; nothing was changed")]
    Der(#[source] der::Error),
    /// A same-key renewal whose issuer does not verify under the old root.
    #[error("the renewed issuer does not verify under the old root: {0}; nothing was changed")]
    NotUnderOldRoot(#[source] BundleError),
    /// The report could not be encoded as JSON.
    #[error("{0}; nothing was changed")]
    Json(#[source] serde_json::Error),
    /// The command would break clients and `--force` was not given; nothing was changed.
    #[error("{0}; nothing was changed")]
    Refused(#[source] ReplaceRisk),
    /// Writing failed.
    #[error(transparent)]
    Write(#[from] files::WriteError),
}

/// Why replacing `ca.crt` could break clients: refused unless `--force`, a warning with it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum ReplaceRisk {
    /// `ca.crt` does not read as certificates.
    #[error(
        "{}: {source}: cannot tell whether clients holding it would trust the new root; \
         repair it, or pass --force to replace the root",
        ca.display()
    )]
    CaUnreadable {
        /// `ca.crt`.
        ca: PathBuf,
        /// What is wrong in it.
        source: CertificatesError,
    },
    /// `--private-key` is not the key of any current root.
    #[error(
        "--private-key {} is not the key of any root in {ca}: clients holding the \
         current {ca} will stop trusting the CA (every certificate it issues fails \
         verification there) until they get the new one. To change the root key \
         without downtime use `warden root rotate prepare`, `activate` and `finish`; \
         to keep the current root give its key; to replace the root now, pass --force",
        key.display(),
        ca = ca.display()
    )]
    ForeignRootKey {
        /// The `--private-key` file.
        key: PathBuf,
        /// `ca.crt`.
        ca: PathBuf,
    },
    /// No `--private-key`: a fresh root key.
    #[error(
        "no --private-key: a fresh root key, so clients holding the current {} will \
         stop trusting the CA (every certificate it issues fails verification there) \
         until they get the new one. To keep them, give the current root's key with \
         --private-key; to change the root key without downtime use `warden root rotate \
         prepare`, `activate` and `finish`; to replace the root now, pass --force",
        ca.display()
    )]
    FreshRootKey {
        /// `ca.crt`.
        ca: PathBuf,
    },
    /// A root rotation is prepared or active: replacing `ca.crt` drops its new root.
    #[error(
        "a root rotation is {phase} ({}): replacing {} now drops its new root; finish it with \
         `warden root rotate` first, or pass --force",
        state.display(),
        ca.display()
    )]
    RootRotationInProgress {
        /// Its phase.
        phase: Phase,
        /// The state file.
        state: PathBuf,
        /// `ca.crt`.
        ca: PathBuf,
    },
}

fn read(path: &Path) -> Result<Vec<u8>, LifecycleError> {
    std::fs::read(path).map_err(|source| LifecycleError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn certificates_in(text: &[u8], path: &Path) -> Result<Vec<Certificate>, LifecycleError> {
    parse_certificates(text).map_err(|source| LifecycleError::Certificates {
        path: path.to_path_buf(),
        source,
    })
}

fn key_in(text: &[u8], path: &Path) -> Result<NativeKey, LifecycleError> {
    NativeKey::from_pem(text).map_err(|source| LifecycleError::KeyFile {
        path: path.to_path_buf(),
        source,
    })
}

use crate::util::clock::now;

/// The three files of a new credential set, validated.
struct NewSet {
    ca: String,
    issuer_certificate: String,
    issuer_key: Zeroizing<String>,
    bundle: CaBundle,
}

/// Runs `warden mtls ...`.
pub(crate) fn run(command: MtlsCommand) -> Result<(), LifecycleError> {
    match command {
        MtlsCommand::RenewCertificate(args) => run_renew(args),
        MtlsCommand::Expiry(args) => run_expiry(args),
        MtlsCommand::Export(args) => run_export(args),
    }
}

/// `warden mtls renew-certificate`. Builds and validates the whole new set before writing any
/// file; writes `ca.crt` first so that with `--private-key` (same root key) the old issuer keeps
/// verifying at every instant.
pub(crate) fn run_renew(args: RenewArgs) -> Result<(), LifecycleError> {
    let paths = args.credentials.paths();
    let now = now();
    let set = if let (Some(ca), Some(key), Some(chain)) = (
        &args.ca_root_certificate,
        &args.issuer_private_key,
        &args.issuer_public_certificate,
    ) {
        bring_your_own(ca, chain, key, now)?
    } else {
        let root_key: Box<dyn CaSigner> = match &args.private_key {
            Some(file) => Box::new(key_in(&Zeroizing::new(read(file)?), file)?),
            None => {
                Box::new(NativeKey::generate(KeyAlgorithm::P256).map_err(LifecycleError::NewKey)?)
            }
        };
        let current = CurrentSet::read(&paths)?;
        let renewed = current.anchor_of(&root_key.public_key());
        if renewed.is_none() {
            current.check_replace(&paths, args.private_key.as_deref(), args.force)?;
        }
        check_no_root_rotation(&paths, args.force)?;
        let trust_domain = match &args.trust_domain {
            Some(td) => {
                TrustDomain::new(td).map_err(|source| LifecycleError::InvalidTrustDomain {
                    value: td.clone(),
                    source,
                })?
            }
            None => current.trust_domain(renewed)?,
        };
        let sentry_id = SpiffeId::sentry(&trust_domain, &args.namespace).map_err(|source| {
            LifecycleError::InvalidNamespace {
                value: args.namespace.clone(),
                source,
            }
        })?;
        let lifetime = DAY * args.valid_until.max(1);
        let root = match renewed {
            Some(anchor) => NewRoot::Renewed(anchor),
            None => NewRoot::Fresh(&trust_domain),
        };
        generated(root_key.as_ref(), root, &sentry_id, lifetime, now)?
    };
    files::create_private_dir(&paths.dir)?;
    files::write_files_atomically(&[
        (&paths.trust_anchors, set.ca.as_bytes()),
        (&paths.issuer_key, set.issuer_key.as_bytes()),
        (&paths.issuer_certificate, set.issuer_certificate.as_bytes()),
    ])?;
    let not_after = set.bundle.issuer_validity().not_after;
    println!(
        "Certificate rotation is successful! Your new certificate is valid through {}",
        go_time(not_after)
    );
    Ok(())
}

/// The anchors in `ca.crt` before a renewal, as far as they could be read.
enum CurrentSet {
    /// No `ca.crt`: no client can hold an anchor of this CA yet.
    Absent,
    /// The anchors (DER, as in the file, and parsed) and the issuer chain when it reads.
    Anchors {
        ders: Vec<Vec<u8>>,
        certificates: Vec<Certificate>,
        issuer_chain: Vec<Certificate>,
    },
    /// `ca.crt` exists but does not read as certificates.
    Unreadable(CertificatesError),
}

/// What the new root is.
#[derive(Clone, Copy)]
enum NewRoot<'a> {
    /// A new subject `O=<td>` and key identifier.
    Fresh(&'a TrustDomain),
    /// The subject and key identifier of this anchor (DER), with the same key.
    Renewed(&'a [u8]),
}

impl CurrentSet {
    fn read(paths: &CredentialPaths) -> Result<Self, LifecycleError> {
        let text = match std::fs::read(&paths.trust_anchors) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::Absent),
            Err(source) => {
                return Err(LifecycleError::Read {
                    path: paths.trust_anchors.clone(),
                    source,
                });
            }
        };
        let parsed = warden_core::bundle::certificate_ders(&text).and_then(|ders| {
            let certificates = parse_certificates(&text)?;
            Ok((ders, certificates))
        });
        Ok(match parsed {
            Ok((ders, certificates)) => Self::Anchors {
                ders,
                certificates,
                // Only for naming defaults: a broken issuer.crt is replaced anyway.
                issuer_chain: std::fs::read(&paths.issuer_certificate)
                    .ok()
                    .and_then(|t| parse_certificates(&t).ok())
                    .unwrap_or_default(),
            },
            Err(e) => Self::Unreadable(e),
        })
    }

    /// The DER of the anchor whose key is `key`.
    fn anchor_of(&self, key: &spki::SubjectPublicKeyInfoOwned) -> Option<&[u8]> {
        match self {
            Self::Anchors {
                ders, certificates, ..
            } => certificates
                .iter()
                .zip(ders)
                .find(|(cert, _)| warden_core::bundle::key_matches(cert, key))
                .map(|(_, der)| der.as_slice()),
            Self::Absent | Self::Unreadable(_) => None,
        }
    }

    /// Refuses, unless `force`, a root that clients holding the current anchors will not trust.
    fn check_replace(
        &self,
        paths: &CredentialPaths,
        private_key: Option<&Path>,
        force: bool,
    ) -> Result<(), LifecycleError> {
        let ca = paths.trust_anchors.clone();
        let why = match (self, private_key) {
            (Self::Absent, _) => return Ok(()),
            (Self::Unreadable(e), _) => ReplaceRisk::CaUnreadable {
                ca,
                source: e.clone(),
            },
            (Self::Anchors { .. }, Some(key)) => ReplaceRisk::ForeignRootKey {
                key: key.to_path_buf(),
                ca,
            },
            (Self::Anchors { .. }, None) => ReplaceRisk::FreshRootKey { ca },
        };
        if force {
            tracing::warn!(target: crate::observability::SCOPE_CA, "--force: {why}");
            eprintln!("WARNING: --force: {why}");
            Ok(())
        } else {
            Err(LifecycleError::Refused(why))
        }
    }

    /// The trust domain of the current root (`renewed`, else any anchor): its `O=`, else the
    /// issuer's SPIFFE ID, else its `CN=`; `localhost` (Sentry's default) without one.
    fn trust_domain(&self, renewed: Option<&[u8]>) -> Result<TrustDomain, LifecycleError> {
        let found = match self {
            Self::Anchors {
                ders,
                certificates,
                issuer_chain,
            } => {
                let anchors: Vec<&Certificate> = match renewed {
                    Some(der) => certificates
                        .iter()
                        .zip(ders)
                        .filter(|(_, d)| d.as_slice() == der)
                        .map(|(c, _)| c)
                        .collect(),
                    None => certificates.iter().collect(),
                };
                crate::rotation::root::trust_domain_of(&anchors, issuer_chain)
            }
            Self::Absent | Self::Unreadable(_) => None,
        };
        match found {
            Some(td) => Ok(td),
            None => TrustDomain::new("localhost").map_err(LifecycleError::DefaultTrustDomain),
        }
    }
}

/// Refuses, unless `force`, to replace `ca.crt` while a root rotation is prepared or active:
/// the rotation's new root would be dropped from it.
fn check_no_root_rotation(paths: &CredentialPaths, force: bool) -> Result<(), LifecycleError> {
    let state = crate::rotation::root::read_state(&paths.dir)
        .map_err(|e| LifecycleError::RootRotation(Box::new(e)))?;
    let Some(state) = state.filter(|s| s.phase != Phase::Finished) else {
        return Ok(());
    };
    let why = ReplaceRisk::RootRotationInProgress {
        phase: state.phase,
        state: crate::credentials::state_path(&paths.dir),
        ca: paths.trust_anchors.clone(),
    };
    if force {
        eprintln!("WARNING: --force: {why}");
        Ok(())
    } else {
        Err(LifecycleError::Refused(why))
    }
}

fn generated(
    root_key: &dyn CaSigner,
    root: NewRoot<'_>,
    sentry_id: &SpiffeId,
    lifetime: Duration,
    now: UnixTime,
) -> Result<NewSet, LifecycleError> {
    let validity = Validity::backdated(now, DEFAULT_CLOCK_SKEW, lifetime);
    let mut rng = crate::util::clock::rng();
    let new_root = match root {
        NewRoot::Fresh(trust_domain) => create_root(root_key, trust_domain, validity, &mut rng),
        NewRoot::Renewed(old) => renew_root(root_key, old, validity, &mut rng),
    }
    .map_err(LifecycleError::NewRoot)?;
    let ca = certificates_to_pem([&new_root]).map_err(LifecycleError::Der)?;
    let issuer = new_issuer(
        root_key,
        std::slice::from_ref(&new_root),
        sentry_id,
        lifetime,
        DEFAULT_CLOCK_SKEW,
        now,
    )
    .map_err(|e| LifecycleError::NewIssuer(Box::new(e)))?;
    if let NewRoot::Renewed(old) = root {
        // The promise of a same-key renewal, checked before anything is written: the new
        // issuer chains to the old root as a client holding it sees it.
        let old = <Certificate as der::Decode>::from_der(old).map_err(LifecycleError::Der)?;
        if Validity::of(&old).contains(now) {
            let key = NativeKey::from_pem(issuer.key_pem.as_bytes())
                .map_err(LifecycleError::NewIssuerKey)?;
            CaBundle::from_parts(
                vec![old],
                issuer.bundle.issuer_chain().to_vec(),
                Box::new(key),
                now,
                &NativeVerifier,
            )
            .map_err(LifecycleError::NotUnderOldRoot)?;
        }
    }
    Ok(NewSet {
        ca,
        issuer_certificate: issuer.certificate_pem,
        issuer_key: issuer.key_pem,
        bundle: issuer.bundle,
    })
}

fn bring_your_own(
    ca: &Path,
    chain: &Path,
    key: &Path,
    now: UnixTime,
) -> Result<NewSet, LifecycleError> {
    let ca_text = read(ca)?;
    let chain_text = read(chain)?;
    let key_text = Zeroizing::new(read(key)?);
    let anchors = certificates_in(&ca_text, ca)?;
    let issuers = certificates_in(&chain_text, chain)?;
    let signer = key_in(&key_text, key)?;
    let bundle = CaBundle::from_parts(anchors, issuers, Box::new(signer), now, &NativeVerifier)
        .map_err(|source| {
            let file = match source.file() {
                warden_core::bundle::CredentialFile::TrustAnchors => ca,
                warden_core::bundle::CredentialFile::IssuerKey => key,
                _ => chain,
            };
            LifecycleError::InvalidSet {
                path: file.to_path_buf(),
                source,
            }
        })?;
    let text = |bytes: Vec<u8>, path: &Path| {
        String::from_utf8(bytes).map_err(|_| LifecycleError::NotUtf8 {
            path: path.to_path_buf(),
        })
    };
    Ok(NewSet {
        ca: text(ca_text, ca)?,
        issuer_certificate: text(chain_text, chain)?,
        issuer_key: Zeroizing::new(text(key_text.to_vec(), key)?),
        bundle,
    })
}

/// One certificate's facts, as `status` and `expiry` report them.
#[derive(Debug, Serialize)]
pub(crate) struct CertificateReport {
    /// `root` or `issuer`.
    pub kind: &'static str,
    /// Subject DN (RFC 4514).
    pub subject: String,
    /// SHA-256 of the DER, lowercase hex.
    pub sha256_fingerprint: String,
    /// NotBefore, RFC 3339.
    pub not_before: String,
    /// NotAfter, RFC 3339.
    pub not_after: String,
    /// Whole hours until NotAfter (negative once expired).
    pub expires_in_hours: i64,
    /// Sentry's 30-day warning text, when it applies.
    pub warning: Option<String>,
    #[serde(skip)]
    not_after_time: UnixTime,
}

/// What `status` prints.
#[derive(Debug, Serialize)]
pub(crate) struct StatusReport {
    /// The credential directory.
    pub issuer_credentials: String,
    /// Where the issuer key is: always a file for now (`issuer.key`).
    pub issuer_key_location: String,
    /// Whether the set validates as the server would load it.
    pub valid: bool,
    /// Why not, when it does not.
    pub error: Option<String>,
    /// The roots, then the issuer chain.
    pub certificates: Vec<CertificateReport>,
    /// The root rotation in progress or last done (`root-rotation.json`), if any.
    pub root_rotation: Option<crate::rotation::root::PhaseReport>,
    /// Why `root-rotation.json` could not be read, when it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root_rotation_error: Option<String>,
}

fn report(kind: &'static str, cert: &Certificate, now: UnixTime) -> CertificateReport {
    let validity = Validity::of(cert);
    // Whole hours as Go's int(time.Until(t).Hours()) counts them (truncated toward zero),
    // so this agrees with the warning text.
    let secs_left = if now <= validity.not_after {
        i128::from(now.until(validity.not_after).as_secs())
    } else {
        -i128::from(validity.not_after.until(now).as_secs())
    };
    let cert_kind = if kind == "root" {
        CaCertKind::Root
    } else {
        CaCertKind::Issuer
    };
    CertificateReport {
        kind,
        subject: cert.tbs_certificate().subject().to_string(),
        sha256_fingerprint: crate::util::digest::fingerprint(cert),
        not_before: validity.not_before.to_string(),
        not_after: validity.not_after.to_string(),
        expires_in_hours: i64::try_from(secs_left / 3600).unwrap_or(i64::MIN),
        warning: expiry_warning(cert_kind, validity.not_after, now).map(|w| w.to_string()),
        not_after_time: validity.not_after,
    }
}

fn certificates(
    paths: &CredentialPaths,
    now: UnixTime,
) -> Result<Vec<CertificateReport>, LifecycleError> {
    let anchors = certificates_in(&read(&paths.trust_anchors)?, &paths.trust_anchors)?;
    let chain = certificates_in(&read(&paths.issuer_certificate)?, &paths.issuer_certificate)?;
    let mut out: Vec<CertificateReport> = anchors.iter().map(|c| report("root", c, now)).collect();
    // A trailing copy of the root in issuer.crt is dropped, as when loading.
    out.extend(
        chain
            .iter()
            .filter(|c| !anchors.iter().any(|a| a == *c))
            .map(|c| report("issuer", c, now)),
    );
    Ok(out)
}

/// `warden mtls expiry`: the Dapr CLI's line for the root, and the same for the issuer.
pub(crate) fn run_expiry(args: ExpiryArgs) -> Result<(), LifecycleError> {
    let now = now();
    let reports = certificates(&args.credentials.paths(), now)?;
    match args.output {
        OutputFormat::Json => println!("{}", to_json(&reports)?),
        OutputFormat::Text => print!("{}", expiry_text(&reports)),
    }
    Ok(())
}

fn expiry_text(reports: &[CertificateReport]) -> String {
    let mut out = String::new();
    for r in reports {
        let what = if r.kind == "root" { "Root" } else { "Issuer" };
        let _ = writeln!(
            out,
            "{what} certificate expires in {} hours. Expiry date: {}",
            r.expires_in_hours,
            go_time(r.not_after_time)
        );
    }
    out
}

/// `warden mtls export`.
pub(crate) fn run_export(args: ExportArgs) -> Result<(), LifecycleError> {
    let paths = args.credentials.paths();
    let files = [
        (&paths.trust_anchors, "ca.crt"),
        (&paths.issuer_certificate, "issuer.crt"),
        (&paths.issuer_key, "issuer.key"),
    ];
    let contents: Vec<(PathBuf, Zeroizing<Vec<u8>>)> = files
        .iter()
        .map(|(from, name)| Ok((args.out.join(name), Zeroizing::new(read(from)?))))
        .collect::<Result<_, LifecycleError>>()?;
    files::create_private_dir(&args.out)?;
    let refs: Vec<(&Path, &[u8])> = contents
        .iter()
        .map(|(p, c)| (p.as_path(), c.as_slice()))
        .collect();
    files::write_files_atomically(&refs)?;
    println!(
        "Trust certs successfully exported to {}",
        args.out.display()
    );
    Ok(())
}

/// `warden status`.
pub(crate) fn run_status(args: StatusArgs) -> Result<(), LifecycleError> {
    let paths = args.credentials.paths();
    let now = now();
    let certificates = certificates(&paths, now)?;
    let error = crate::credentials::store::load(&paths, now)
        .err()
        .map(|e| e.to_string());
    let status = StatusReport {
        issuer_credentials: paths.dir.display().to_string(),
        issuer_key_location: format!("file {}", paths.issuer_key.display()),
        valid: error.is_none(),
        error,
        certificates,
        root_rotation: None,
        root_rotation_error: None,
    };
    let status = match crate::rotation::root::phase_report(&paths.dir) {
        Ok(phase) => StatusReport {
            root_rotation: phase,
            ..status
        },
        Err(e) => StatusReport {
            root_rotation_error: Some(e.to_string()),
            ..status
        },
    };
    match args.output {
        OutputFormat::Json => println!("{}", to_json(&status)?),
        OutputFormat::Text => print!("{}", status_text(&status)),
    }
    Ok(())
}

fn status_text(status: &StatusReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Credentials: {}", status.issuer_credentials);
    let _ = writeln!(out, "Issuer key:  {}", status.issuer_key_location);
    match &status.error {
        None => {
            let _ = writeln!(out, "State:       valid");
        }
        Some(e) => {
            let _ = writeln!(out, "State:       INVALID: {e}");
        }
    }
    out.push_str(&crate::rotation::root::phase_text(
        status.root_rotation.as_ref(),
        status.root_rotation_error.as_deref(),
    ));
    for c in &status.certificates {
        let _ = writeln!(out, "\n{} certificate", c.kind);
        let _ = writeln!(out, "  subject:    {}", c.subject);
        let _ = writeln!(out, "  sha256:     {}", c.sha256_fingerprint);
        let _ = writeln!(out, "  not before: {}", c.not_before);
        let _ = writeln!(
            out,
            "  not after:  {} ({} hours left)",
            c.not_after, c.expires_in_hours
        );
        if let Some(w) = &c.warning {
            let _ = writeln!(out, "  WARNING:    {w}");
        }
    }
    out
}

fn to_json(value: &impl Serialize) -> Result<String, LifecycleError> {
    serde_json::to_string_pretty(value).map_err(LifecycleError::Json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt as _;
    use warden_core::bundle::key_matches;

    fn creds(dir: &Path) -> CredentialsArg {
        CredentialsArg {
            issuer_credentials: dir.to_path_buf(),
        }
    }

    fn renew(dir: &Path) -> RenewArgs {
        RenewArgs {
            credentials: creds(dir),
            private_key: None,
            ca_root_certificate: None,
            issuer_private_key: None,
            issuer_public_certificate: None,
            valid_until: 365,
            trust_domain: None,
            namespace: "default".into(),
            force: false,
        }
    }

    fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
        let mut files: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap())
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        files.sort();
        files
    }

    fn root_of(dir: &Path) -> Certificate {
        parse_certificates(&fs::read(dir.join("ca.crt")).unwrap())
            .unwrap()
            .remove(0)
    }

    #[test]
    fn fresh_renewal_makes_a_loadable_set() {
        let dir = tempfile::tempdir().unwrap();
        run_renew(renew(dir.path())).unwrap();
        let paths = creds(dir.path()).paths();
        crate::credentials::store::load(&paths, now()).unwrap();
        for f in ["ca.crt", "issuer.crt", "issuer.key"] {
            let mode = fs::metadata(dir.path().join(f))
                .unwrap()
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(mode, 0o600, "{f}");
        }
        let first_root = root_of(dir.path());
        let refused = run_renew(renew(dir.path())).unwrap_err();
        assert!(
            matches!(
                refused,
                LifecycleError::Refused(ReplaceRisk::FreshRootKey { .. })
            ),
            "{refused}"
        );
        assert!(refused.to_string().contains("--force"), "{refused}");
        let mut forced = renew(dir.path());
        forced.force = true;
        run_renew(forced).unwrap();
        assert!(
            !key_matches(
                &root_of(dir.path()),
                &first_root
                    .tbs_certificate()
                    .subject_public_key_info()
                    .clone()
            ),
            "no key given: a fresh root key"
        );
    }

    #[test]
    fn renewal_with_the_root_key_keeps_old_anchors_valid() {
        let dir = tempfile::tempdir().unwrap();
        let root_key = NativeKey::generate(KeyAlgorithm::P256).unwrap();
        let key_file = dir.path().join("root.key");
        fs::write(&key_file, root_key.to_pkcs8_pem().unwrap().as_bytes()).unwrap();
        let creds_dir = dir.path().join("creds");
        let mut args = renew(&creds_dir);
        args.private_key = Some(key_file.clone());
        run_renew(args).unwrap();
        let old_ca = fs::read(creds_dir.join("ca.crt")).unwrap();
        let mut args = renew(&creds_dir);
        args.private_key = Some(key_file);
        run_renew(args).unwrap();
        assert_ne!(fs::read(creds_dir.join("ca.crt")).unwrap(), old_ca);
        // A client still holding the old ca.crt accepts the new issuer.
        let bundle = CaBundle::from_pem(
            &old_ca,
            &fs::read(creds_dir.join("issuer.crt")).unwrap(),
            &fs::read(creds_dir.join("issuer.key")).unwrap(),
            now(),
            &NativeVerifier,
        );
        assert!(bundle.is_ok(), "{:?}", bundle.err());
    }

    #[test]
    fn renewal_refuses_to_drop_a_root_rotation_in_progress() {
        use crate::credentials::state_path;
        use crate::rotation::root::{Phase, RotationState};
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("root.key");
        let root_key = NativeKey::generate(KeyAlgorithm::P256).unwrap();
        fs::write(&key_file, root_key.to_pkcs8_pem().unwrap().as_bytes()).unwrap();
        let creds = dir.path().join("creds");
        let mut args = renew(&creds);
        args.private_key = Some(key_file.clone());
        run_renew(args).unwrap();
        let state = RotationState {
            phase: Phase::Prepared,
            new_root_sha256: String::new(),
            new_root_pem: String::new(),
            old_roots_sha256: Vec::new(),
            new_root_key: String::new(),
            prepared_at: 0,
            published_at: Some(0),
            activated_at: None,
            finished_at: None,
        };
        fs::write(state_path(&creds), serde_json::to_string(&state).unwrap()).unwrap();
        let before = snapshot(&creds);
        let mut args = renew(&creds);
        args.private_key = Some(key_file.clone());
        let err = run_renew(args).unwrap_err();
        assert!(
            matches!(
                err,
                LifecycleError::Refused(ReplaceRisk::RootRotationInProgress {
                    phase: Phase::Prepared,
                    ..
                })
            ),
            "{err}"
        );
        assert_eq!(snapshot(&creds), before);
        let mut args = renew(&creds);
        args.private_key = Some(key_file);
        args.force = true;
        run_renew(args).unwrap();
    }

    #[test]
    fn renewal_over_an_unreadable_ca_crt_needs_force() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("ca.crt"),
            "-----BEGIN CERTIFICATE-----\nAAAA\n",
        )
        .unwrap();
        let before = snapshot(dir.path());
        let err = run_renew(renew(dir.path())).unwrap_err();
        assert!(
            matches!(
                err,
                LifecycleError::Refused(ReplaceRisk::CaUnreadable { .. })
            ),
            "{err}"
        );
        assert!(err.to_string().contains("--force"), "{err}");
        assert_eq!(snapshot(dir.path()), before);
        let mut forced = renew(dir.path());
        forced.force = true;
        run_renew(forced).unwrap();
        crate::credentials::store::load(&creds(dir.path()).paths(), now()).unwrap();
    }

    #[test]
    fn invalid_byo_input_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        run_renew(renew(dir.path())).unwrap();
        let before = snapshot(dir.path());
        let other = tempfile::tempdir().unwrap();
        run_renew(renew(other.path())).unwrap();
        let mut args = renew(dir.path());
        args.ca_root_certificate = Some(other.path().join("ca.crt"));
        args.issuer_public_certificate = Some(other.path().join("issuer.crt"));
        // The key of the set already installed: does not match the other issuer.
        args.issuer_private_key = Some(dir.path().join("issuer.key"));
        let err = run_renew(args).unwrap_err();
        assert!(
            matches!(&err, LifecycleError::InvalidSet { path, .. }
                if *path == dir.path().join("issuer.key")),
            "{err}"
        );
        let text = err.to_string();
        assert!(
            text.contains("issuer key does not match issuer certificate")
                && text.ends_with("nothing was changed"),
            "{text}"
        );
        assert_eq!(snapshot(dir.path()), before);
    }

    #[test]
    fn valid_byo_input_is_installed_as_given() {
        let dir = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        run_renew(renew(other.path())).unwrap();
        let mut args = renew(dir.path());
        args.ca_root_certificate = Some(other.path().join("ca.crt"));
        args.issuer_public_certificate = Some(other.path().join("issuer.crt"));
        args.issuer_private_key = Some(other.path().join("issuer.key"));
        run_renew(args).unwrap();
        assert_eq!(snapshot(dir.path()), snapshot(other.path()));
    }

    #[test]
    fn expiry_prints_the_dapr_cli_line() {
        let dir = tempfile::tempdir().unwrap();
        let mut args = renew(dir.path());
        args.valid_until = 10;
        run_renew(args).unwrap();
        let reports = certificates(&creds(dir.path()).paths(), now()).unwrap();
        let text = expiry_text(&reports);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        // Ten days from (almost) now: 240 whole hours, or 239 if a second boundary passed.
        let hours = reports[0].expires_in_hours;
        assert!(hours == 240 || hours == 239, "{text}");
        assert!(
            lines[0].starts_with(&format!(
                "Root certificate expires in {hours} hours. Expiry date: "
            )) && lines[0].ends_with(" +0000 UTC"),
            "{text}"
        );
        assert!(
            lines[1].starts_with("Issuer certificate expires in "),
            "{text}"
        );
        assert!(
            reports.iter().all(|r| r
                .warning
                .as_deref()
                .is_some_and(|w| w.contains("certificate expires in 9 days and 23 hours")
                    || w.contains("certificate expires in 10 days and 0 hours"))),
            "{reports:?}"
        );
    }

    #[test]
    fn export_copies_the_three_files_0600() {
        let dir = tempfile::tempdir().unwrap();
        run_renew(renew(dir.path())).unwrap();
        let out = tempfile::tempdir().unwrap();
        let target = out.path().join("exported");
        run_export(ExportArgs {
            credentials: creds(dir.path()),
            out: target.clone(),
        })
        .unwrap();
        assert_eq!(snapshot(&target), snapshot(dir.path()));
        for f in ["ca.crt", "issuer.crt", "issuer.key"] {
            let mode = fs::metadata(target.join(f)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{f}");
        }
    }

    #[test]
    fn status_reports_fingerprints_and_validity() {
        let dir = tempfile::tempdir().unwrap();
        run_renew(renew(dir.path())).unwrap();
        let paths = creds(dir.path()).paths();
        let certs = certificates(&paths, now()).unwrap();
        assert_eq!(certs.len(), 2);
        assert_eq!(certs[0].kind, "root");
        assert_eq!(certs[0].subject, "O=localhost");
        assert_eq!(
            certs[1].subject,
            "O=spiffe://localhost/ns/default/dapr-sentry"
        );
        assert_eq!(certs[0].sha256_fingerprint.len(), 64);
        assert!(certs.iter().all(|c| c.warning.is_none()));
        let status = StatusReport {
            issuer_credentials: paths.dir.display().to_string(),
            issuer_key_location: "file".into(),
            valid: true,
            error: None,
            root_rotation: None,
            root_rotation_error: None,
            certificates: certs,
        };
        let json: serde_json::Value = serde_json::from_str(&to_json(&status).unwrap()).unwrap();
        assert_eq!(json["certificates"][1]["kind"], "issuer");
        assert!(status_text(&status).contains("State:       valid"));
    }
}

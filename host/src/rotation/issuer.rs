//! The HSM-held root: `warden hsm init-root`, `warden issuer rotate`, and the server's
//! automatic issuer rotation.
//!
//! The root key lives in a PKCS#11 token ([`warden_hsm`]) and signs only issuers (a YubiHSM 2
//! manages about 9 signatures/s); the issuer is a software key that signs every workload
//! certificate. Rotation writes `issuer.key` then `issuer.crt`, each atomically (0600): the
//! reload watcher refuses a mismatched pair and takes the new set once both are in place.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use warden_core::UnixTime;
use warden_core::bundle::{
    BundleError, CaBundle, CertificatesError, IssueError, certificates_to_pem, create_issuer,
    create_root, key_matches, parse_certificates,
};
use warden_core::chain::ChainError;
use warden_core::crypto::{CaSigner, KeyAlgorithm, KeyError};
use warden_core::csr::CsrError;
use warden_core::profile::{DEFAULT_CLOCK_SKEW, Validity};
use warden_core::schedule;
use warden_core::spiffe::{SpiffeId, SpiffeIdError, TrustDomain};
use warden_hsm::{Hsm, HsmConfig, HsmError};
use x509_cert::Certificate;

use super::{sentry_id_of, subject_o};
use crate::credentials::store::CredentialPaths;
use crate::native::{NativeError, NativeKey, NativeVerifier};
use crate::observability::SCOPE_CA;
use crate::util::clock::{now, rng};
use crate::util::files;

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// Which HSM key to use; the same flags on every command that touches the HSM. The PIN comes
/// from `WARDEN_HSM_PIN` or `--hsm-pin-file`, never from the command line.
#[derive(Clone, Debug, Default, Args)]
pub(crate) struct HsmArgs {
    /// PKCS#11 module (SoftHSM2: /usr/lib/softhsm/libsofthsm2.so; YubiHSM 2: yubihsm_pkcs11.so).
    #[arg(long, value_name = "PATH")]
    pub hsm_module: Option<PathBuf>,
    /// Label of the token holding the root key (the slot is looked up by label).
    #[arg(long, value_name = "LABEL")]
    pub hsm_token_label: Option<String>,
    /// Label of the root key pair in the token.
    #[arg(long, value_name = "LABEL")]
    pub hsm_key_label: Option<String>,
    /// File holding the user PIN (default: the WARDEN_HSM_PIN environment variable).
    #[arg(long, value_name = "FILE")]
    pub hsm_pin_file: Option<PathBuf>,
}

impl HsmArgs {
    /// The HSM configuration, `None` when no `--hsm-*` flag is given; an error when only some
    /// are, or when the PIN cannot be read.
    pub(crate) fn config(&self) -> Result<Option<HsmConfig>, RotationError> {
        match (&self.hsm_module, &self.hsm_token_label, &self.hsm_key_label) {
            (None, None, None) if self.hsm_pin_file.is_none() => Ok(None),
            (Some(module), Some(token), Some(key)) => Ok(Some(HsmConfig {
                module: module.clone(),
                token_label: token.clone(),
                key_label: key.clone(),
                pin: warden_hsm::read_pin(self.hsm_pin_file.as_deref())?,
            })),
            _ => Err(RotationError::HsmFlagsIncomplete),
        }
    }
}

/// The root key that signs issuers: in the HSM (`--hsm-*`) or a PKCS#8 PEM file
/// (`--root-key`); the same flags on every command that signs an issuer.
#[derive(Clone, Debug, Default, Args)]
pub(crate) struct RootKeyArgs {
    #[command(flatten)]
    pub hsm: HsmArgs,
    /// The root private key as a PKCS#8 PEM file (instead of --hsm-*).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["hsm_module", "hsm_token_label", "hsm_key_label"])]
    pub root_key: Option<PathBuf>,
}

impl RootKeyArgs {
    /// Opens the root key: logs in to the HSM, or reads and parses the key file.
    pub(crate) fn signer(&self) -> Result<Box<dyn CaSigner>, RotationError> {
        match (&self.root_key, self.hsm.config()?) {
            (Some(file), None) => {
                let pem = zeroize::Zeroizing::new(std::fs::read(file).map_err(|source| {
                    RotationError::Read {
                        path: file.clone(),
                        source,
                    }
                })?);
                Ok(Box::new(NativeKey::from_pem(&pem).map_err(|source| {
                    RotationError::KeyFile {
                        path: file.clone(),
                        source,
                    }
                })?))
            }
            (None, Some(config)) => Ok(Box::new(Hsm::open_signer(&config)?)),
            _ => Err(RotationError::NoRootKey),
        }
    }
}

/// `warden hsm init-root`
#[derive(Debug, Args)]
pub(crate) struct InitRootArgs {
    #[command(flatten)]
    hsm: HsmArgs,
    /// Trust domain of the root (`O=<td>`) and of the issuer's SPIFFE ID.
    #[arg(long, default_value = "localhost")]
    trust_domain: String,
    /// Root lifetime in days; the first issuer gets the same (capped at the root's).
    #[arg(long, value_name = "DAYS", default_value_t = 3650)]
    valid_until: u64,
    /// First issuer's lifetime in days (default: 365).
    #[arg(long, value_name = "DAYS", default_value_t = 365)]
    issuer_valid_until: u64,
    /// Where ca.crt, issuer.crt and issuer.key are written.
    #[arg(long, value_name = "DIR")]
    issuer_credentials: PathBuf,
    /// Sentry's namespace: the issuer's SPIFFE path.
    #[arg(long, env = "NAMESPACE", default_value = "default", hide = true)]
    namespace: String,
    /// Make the root from the existing key pair labelled --hsm-key-label instead of generating
    /// one: for a key left in the token by an init-root that could not write its files.
    #[arg(long)]
    reuse_key: bool,
}

/// `warden issuer rotate`
#[derive(Debug, Args)]
pub(crate) struct RotateArgs {
    /// The credential directory holding ca.crt, issuer.crt and issuer.key.
    #[arg(long, value_name = "DIR")]
    issuer_credentials: PathBuf,
    #[command(flatten)]
    root: RootKeyArgs,
    /// New issuer lifetime in days (capped at the root's NotAfter).
    #[arg(long, value_name = "DAYS", default_value_t = 365)]
    valid_until: u64,
    /// New issuer lifetime in seconds (tests and drills; overrides --valid-until).
    #[arg(long, value_name = "SECONDS", hide = true)]
    valid_for_secs: Option<u64>,
    /// Sentry's namespace: the issuer's SPIFFE path when issuer.crt is missing (otherwise the
    /// current issuer's SPIFFE ID is kept).
    #[arg(long, env = "NAMESPACE", default_value = "default", hide = true)]
    namespace: String,
}

/// Why a root or issuer operation failed.
///
/// Flags first (what to give instead), then files and values (which one, and what is wrong),
/// then building, validating and writing, then `hsm init-root`'s own outcomes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RotationError {
    /// The HSM refused or could not be reached.
    #[error(transparent)]
    Hsm(#[from] HsmError),
    /// Some of `--hsm-module`, `--hsm-token-label` and `--hsm-key-label`, not all three.
    #[error("--hsm-module, --hsm-token-label and --hsm-key-label must be given together")]
    HsmFlagsIncomplete,
    /// `hsm init-root` without the `--hsm-*` flags.
    #[error("warden hsm init-root needs --hsm-module, --hsm-token-label and --hsm-key-label")]
    InitRootNeedsHsm,
    /// Neither `--root-key` nor the `--hsm-*` flags.
    #[error("give the root key: --hsm-module/--hsm-token-label/--hsm-key-label or --root-key FILE")]
    NoRootKey,
    /// A trust domain or namespace (flag or environment variable) that is not valid.
    #[error("invalid {flag} {value:?}: {source}")]
    InvalidName {
        /// `--trust-domain`, `--namespace` or `NAMESPACE`.
        flag: &'static str,
        /// The value given.
        value: String,
        /// Why it is not valid.
        source: SpiffeIdError,
    },
    /// `NAMESPACE` does not make a valid Sentry SPIFFE ID (`hsm init-root`).
    #[error("invalid NAMESPACE: {source}")]
    InvalidNamespace {
        /// Why it is not valid.
        source: SpiffeIdError,
    },
    /// A number of days that is zero or does not fit.
    #[error("invalid number of days: {days}")]
    InvalidDays {
        /// The number given.
        days: u64,
    },
    /// `--valid-until` of `issuer sign-csr` is zero or does not fit.
    #[error("invalid --valid-until {days}: a number of days from 1")]
    InvalidValidUntil {
        /// The number given.
        days: u64,
    },
    /// `--valid-for-secs 0`.
    #[error("invalid --valid-for-secs 0: an issuer needs a lifetime")]
    ZeroLifetime,
    /// `--workload-ttl 0s` (`edge provision`).
    #[error("--workload-ttl must be at least 1s")]
    ZeroWorkloadTtl,
    /// A duration flag longer than the edge device stores (`u32` seconds).
    #[error("{flag} {secs}s is longer than the device can store ({} s)", u32::MAX)]
    TooLongForDevice {
        /// The flag.
        flag: &'static str,
        /// Its value in seconds.
        secs: u64,
    },
    /// A credential file exists where `hsm init-root` would write a new set.
    #[error(
        "{} already exists; refusing to overwrite credentials (use `warden issuer rotate` for a new issuer)",
        path.display()
    )]
    CredentialsExist {
        /// The file in the way.
        path: PathBuf,
    },
    /// An output file exists and `--force` was not given.
    #[error(
        "{}{} already exists; refusing to overwrite it (use --force to replace it)",
        flag.map(|f| format!("{f} ")).unwrap_or_default(),
        path.display()
    )]
    OutputExists {
        /// The flag that named it, when the message names one (`--out`).
        flag: Option<&'static str>,
        /// The file.
        path: PathBuf,
    },
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A certificate file (`ca.crt`, `issuer.crt`) does not hold certificates.
    #[error("{}: {source}", path.display())]
    Certificates {
        /// The file.
        path: PathBuf,
        /// What is wrong in it.
        source: CertificatesError,
    },
    /// The root key file does not hold a usable key.
    #[error("{}: {source}", path.display())]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        source: KeyError,
    },
    /// The root key made none of the anchors.
    #[error("the root key does not match any certificate in {}", ca.display())]
    RootNotInCa {
        /// `ca.crt`.
        ca: PathBuf,
    },
    /// No root made by the root key has a trust domain as subject `O=`, and there is no
    /// `issuer.crt` to take the SPIFFE ID from.
    #[error(
        "{}: no root made by this root key with a trust domain as subject O=, and no \
         issuer.crt to take the SPIFFE ID from",
        ca.display()
    )]
    NoTrustDomain {
        /// `ca.crt`.
        ca: PathBuf,
    },
    /// The root made by the root key has no trust domain as subject `O=` (`issuer sign-csr`).
    #[error("{}: the root made by this root key has no trust domain as subject O=", ca.display())]
    RootWithoutTrustDomain {
        /// `ca.crt`.
        ca: PathBuf,
    },
    /// The current issuer has no SPIFFE ID to keep.
    #[error("{}: cannot find the issuer's SPIFFE ID (subject O=spiffe://...)", issuer.display())]
    NoSentryId {
        /// `issuer.crt`.
        issuer: PathBuf,
    },
    /// A CSR that does not parse or verify.
    #[error("{input}: {source}")]
    Csr {
        /// Where it came from (`--csr FILE`, a device).
        input: String,
        /// What is wrong with it.
        source: CsrError,
    },
    /// An issuer for a CSR could not be made or does not verify.
    #[error("cannot make the issuer for {input}: {reason}")]
    CsrIssuer {
        /// Where the CSR came from.
        input: String,
        /// What failed.
        reason: CsrIssuerError,
    },
    /// Making a key failed.
    #[error(transparent)]
    NewKey(#[from] NativeError),
    /// Making a certificate failed.
    #[error(transparent)]
    Certificate(#[from] IssueError),
    /// Encoding certificates as PEM failed.
    #[error(transparent)]
    Pem(#[from] der::Error),
    /// The new issuer does not make a credential set the server loads.
    #[error(transparent)]
    NewIssuerInvalid(#[from] BundleError),
    /// Writing the new files failed.
    #[error(transparent)]
    Write(#[from] files::WriteError),
    /// A key labelled `--hsm-key-label` is already in the token (`hsm init-root`).
    #[error(
        "a key labelled {key_label:?} already exists on token {token_label:?}; refusing to make another. \
         If it was left by an init-root that could not write its files (no ca.crt \
         was ever made from it), re-run with --reuse-key to make the root from it, or \
         delete it with `{delete_command}`; otherwise choose another --hsm-key-label"
    )]
    KeyLabelTaken {
        /// The key label.
        key_label: String,
        /// The token label.
        token_label: String,
        /// The OpenSC command that deletes the key pair.
        delete_command: String,
    },
    /// `hsm init-root` failed after making a key; says what became of the key.
    #[error(transparent)]
    InitRoot(Box<InitRootFailure>),
}

/// How `hsm init-root` failed after it made a key in the token, and what became of the key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InitRootFailure {
    /// The key was removed again: the same command can be re-run.
    #[error(
        "{source}; the new key {key_label:?} was removed from token {token_label:?} again, so the same \
         command can be re-run once this is fixed"
    )]
    KeyRemoved {
        /// Why init-root failed.
        source: RotationError,
        /// The key label.
        key_label: String,
        /// The token label.
        token_label: String,
    },
    /// Removing the key failed too: it is still in the token.
    #[error(
        "{source}; the new key {key_label:?} is still on token {token_label:?} because removing it failed \
         too ({undo}): re-run with --reuse-key once this is fixed, or delete it \
         with `{delete_command}`"
    )]
    KeyLeft {
        /// Why init-root failed.
        source: RotationError,
        /// The key label.
        key_label: String,
        /// The token label.
        token_label: String,
        /// Why removing the key failed.
        undo: HsmError,
        /// The OpenSC command that deletes the key pair.
        delete_command: String,
    },
}

/// What failed when making an issuer certificate for a CSR.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CsrIssuerError {
    /// Building or signing the certificate.
    #[error(transparent)]
    Create(#[from] IssueError),
    /// The signed certificate carries another key than the CSR's.
    #[error("the certificate does not carry the CSR's key")]
    KeyNotCarried,
    /// Encoding the certificates.
    #[error(transparent)]
    Encode(#[from] CertificatesError),
    /// The certificate does not verify under the root.
    #[error("it does not verify under the root in {}: {source}", ca.display())]
    NotUnderRoot {
        /// `ca.crt`.
        ca: PathBuf,
        /// Why.
        source: ChainError,
    },
    /// Encoding the certificate as PEM.
    #[error(transparent)]
    Pem(#[from] der::Error),
}

/// `warden hsm init-root`.
///
/// Everything that can be checked is checked before a key exists in the token (flags, the
/// directory); a key made here and then left without a `ca.crt` would be an orphan, so when
/// anything after the key generation fails the new key pair is destroyed again.
pub(crate) fn run_init_root(args: InitRootArgs) -> Result<(), RotationError> {
    let config = args.hsm.config()?.ok_or(RotationError::InitRootNeedsHsm)?;
    let trust_domain =
        TrustDomain::new(&args.trust_domain).map_err(|source| RotationError::InvalidName {
            flag: "--trust-domain",
            value: args.trust_domain.clone(),
            source,
        })?;
    let root_life = DAY * days(args.valid_until)?;
    let issuer_life = DAY * days(args.issuer_valid_until)?;
    let sentry_id = SpiffeId::sentry(&trust_domain, &args.namespace)
        .map_err(|source| RotationError::InvalidNamespace { source })?;
    let paths = CredentialPaths::in_dir(&args.issuer_credentials);
    // symlink_metadata: a dangling symlink is something in the way too.
    if let Some(existing) = [
        &paths.trust_anchors,
        &paths.issuer_certificate,
        &paths.issuer_key,
    ]
    .into_iter()
    .find(|p| std::fs::symlink_metadata(p).is_ok())
    {
        return Err(RotationError::CredentialsExist {
            path: existing.clone(),
        });
    }
    files::create_private_dir(&paths.dir)?;
    let hsm = Hsm::open(&config)?;
    let (root_key, created) = if args.reuse_key {
        (hsm.signer(&config.key_label)?, false)
    } else {
        match hsm.generate_key(&config.key_label) {
            Ok(key) => (key, true),
            Err(HsmError::KeyExists { .. }) => {
                return Err(RotationError::KeyLabelTaken {
                    key_label: config.key_label.clone(),
                    token_label: config.token_label.clone(),
                    delete_command: delete_key_command(&config),
                });
            }
            Err(e) => return Err(e.into()),
        }
    };
    let now = now();
    let written = write_new_root(
        &root_key,
        &paths,
        &trust_domain,
        &sentry_id,
        root_life,
        issuer_life,
        now,
    );
    let issuer = match written {
        Ok(issuer) => issuer,
        Err(e) if created => {
            drop(root_key);
            let (source, key_label, token_label) =
                (e, config.key_label.clone(), config.token_label.clone());
            let failure = match hsm.destroy_key_pair(&config.key_label) {
                Ok(_) => InitRootFailure::KeyRemoved {
                    source,
                    key_label,
                    token_label,
                },
                Err(undo) => InitRootFailure::KeyLeft {
                    source,
                    key_label,
                    token_label,
                    undo,
                    delete_command: delete_key_command(&config),
                },
            };
            return Err(RotationError::InitRoot(Box::new(failure)));
        }
        Err(e) => return Err(e),
    };
    tracing::info!(target: SCOPE_CA,
        "Root key {:?} {} in HSM token {:?}; wrote {}, {} and {} (issuer valid until {})",
        config.key_label, if created { "created" } else { "reused" }, config.token_label,
        paths.trust_anchors.display(), paths.issuer_certificate.display(), paths.issuer_key.display(),
        issuer.validity.not_after.as_secs());
    Ok(())
}

/// The OpenSC command that deletes the key pair `config` names; it asks for the PIN itself.
fn delete_key_command(config: &HsmConfig) -> String {
    let base = format!(
        "pkcs11-tool --module {} --token-label {} --login --delete-object --label {}",
        shell_quote(&config.module.display().to_string()),
        shell_quote(&config.token_label),
        shell_quote(&config.key_label)
    );
    format!("{base} --type privkey && {base} --type pubkey")
}

/// `text` as one POSIX shell word, safe to paste whatever it holds (`$`, quotes, spaces).
fn shell_quote(text: &str) -> String {
    if !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:,@%".contains(c))
    {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

/// Writes the self-signed root made with `root_key` and a first issuer.
fn write_new_root(
    root_key: &dyn CaSigner,
    paths: &CredentialPaths,
    trust_domain: &TrustDomain,
    sentry_id: &SpiffeId,
    root_life: Duration,
    issuer_life: Duration,
    now: UnixTime,
) -> Result<NewIssuer, RotationError> {
    let root = create_root(
        root_key,
        trust_domain,
        Validity::backdated(now, DEFAULT_CLOCK_SKEW, root_life),
        &mut rng(),
    )?;
    let ca_pem = certificates_to_pem([&root])?;
    let issuer = new_issuer(
        root_key,
        std::slice::from_ref(&root),
        sentry_id,
        issuer_life,
        DEFAULT_CLOCK_SKEW,
        now,
    )?;
    // ca.crt last: a set without it is incomplete and never mistaken for a finished one.
    files::write_files_atomically(&[
        (&paths.issuer_key, issuer.key_pem.as_bytes()),
        (&paths.issuer_certificate, issuer.certificate_pem.as_bytes()),
        (&paths.trust_anchors, ca_pem.as_bytes()),
    ])?;
    Ok(issuer)
}

fn days(n: u64) -> Result<u32, RotationError> {
    u32::try_from(n)
        .ok()
        .filter(|d| *d > 0)
        .ok_or(RotationError::InvalidDays { days: n })
}

/// `warden issuer rotate`.
pub(crate) fn run_rotate(args: RotateArgs) -> Result<(), RotationError> {
    let paths = CredentialPaths::in_dir(&args.issuer_credentials);
    let lifetime = match args.valid_for_secs {
        Some(secs) => Duration::from_secs(secs),
        None => DAY * days(args.valid_until)?,
    };
    let root = args.root.signer()?;
    // Without issuer.crt there is no SPIFFE ID to keep: take the root's trust domain.
    let fallback = match std::fs::symlink_metadata(&paths.issuer_certificate) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Some(sentry_id_from_root(&paths, root.as_ref(), &args.namespace)?)
        }
        _ => None,
    };
    let rotated = replace_issuer(
        &paths,
        root.as_ref(),
        fallback.as_ref(),
        lifetime,
        DEFAULT_CLOCK_SKEW,
        now(),
    )?;
    tracing::info!(target: SCOPE_CA, "New issuer written to {} (valid until unix {})",
        paths.issuer_certificate.display(), rotated.validity.not_after.as_secs());
    Ok(())
}

/// A freshly made issuer: what is written, and the bundle it makes with the current anchors.
pub struct NewIssuer {
    /// `issuer.crt` text.
    pub certificate_pem: String,
    /// `issuer.key` text.
    pub key_pem: zeroize::Zeroizing<String>,
    /// Its validity.
    pub validity: Validity,
    /// The validated bundle (anchors + new issuer + key).
    pub bundle: CaBundle,
}

impl fmt::Debug for NewIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewIssuer")
            .field("validity", &self.validity)
            .finish_non_exhaustive()
    }
}

pub(crate) fn new_issuer(
    root_key: &dyn CaSigner,
    anchors: &[Certificate],
    sentry_id: &SpiffeId,
    lifetime: Duration,
    clock_skew: Duration,
    now: UnixTime,
) -> Result<NewIssuer, RotationError> {
    let root_public = root_key.public_key();
    let root = anchors
        .iter()
        .find(|anchor| key_matches(anchor, &root_public))
        // The anchors are ca.crt's, or the new root about to be written there.
        .ok_or_else(|| RotationError::RootNotInCa {
            ca: PathBuf::from("ca.crt"),
        })?;
    let key = NativeKey::generate(KeyAlgorithm::P256)?;
    let issuer = create_issuer(
        root_key,
        root,
        key.public_key(),
        sentry_id,
        Validity::backdated(now, clock_skew, lifetime),
        &mut rng(),
    )?;
    let validity = Validity::of(&issuer);
    let certificate_pem = certificates_to_pem([&issuer])?;
    let key_pem = key.to_pkcs8_pem()?;
    // What is written must load: the same validation the server runs on reload.
    let bundle = CaBundle::from_parts(
        anchors.to_vec(),
        vec![issuer],
        Box::new(key),
        now,
        &NativeVerifier,
    )?;
    Ok(NewIssuer {
        certificate_pem,
        key_pem,
        validity,
        bundle,
    })
}

/// Sentry's SPIFFE ID in the trust domain of the anchor in `ca.crt` that `root_key` made (its
/// subject `O=`): for an issuer made when there is no issuer.crt to copy the ID from.
fn sentry_id_from_root(
    paths: &CredentialPaths,
    root_key: &dyn CaSigner,
    namespace: &str,
) -> Result<SpiffeId, RotationError> {
    let bytes = std::fs::read(&paths.trust_anchors).map_err(|source| RotationError::Read {
        path: paths.trust_anchors.clone(),
        source,
    })?;
    let anchors = parse_certificates(&bytes).map_err(|source| RotationError::Certificates {
        path: paths.trust_anchors.clone(),
        source,
    })?;
    let trust_domain =
        root_trust_domain(&anchors, root_key).ok_or_else(|| RotationError::NoTrustDomain {
            ca: paths.trust_anchors.clone(),
        })?;
    SpiffeId::sentry(&trust_domain, namespace).map_err(|source| RotationError::InvalidName {
        flag: "NAMESPACE",
        value: namespace.to_owned(),
        source,
    })
}

/// The trust domain (subject `O=`) of the first of `anchors` made by `root_key`.
pub(crate) fn root_trust_domain(
    anchors: &[Certificate],
    root_key: &dyn CaSigner,
) -> Option<TrustDomain> {
    let public = root_key.public_key();
    anchors
        .iter()
        .filter(|anchor| key_matches(anchor, &public))
        .flat_map(subject_o)
        .find_map(|o| TrustDomain::new(&o).ok())
}

/// Makes a new issuer signed by `root_key` for the credential set in `paths` and writes
/// `issuer.key` then `issuer.crt` atomically. The issuer keeps the current issuer's SPIFFE ID.
pub fn rotate_issuer(
    paths: &CredentialPaths,
    root_key: &dyn CaSigner,
    lifetime: Duration,
    clock_skew: Duration,
    now: UnixTime,
) -> Result<NewIssuer, RotationError> {
    replace_issuer(paths, root_key, None, lifetime, clock_skew, now)
}

/// [`rotate_issuer`], also when `issuer.crt` is missing: the new issuer then gets
/// `missing_issuer_id` (without it a missing `issuer.crt` is an error). `ca.crt` is only read.
pub(crate) fn replace_issuer(
    paths: &CredentialPaths,
    root_key: &dyn CaSigner,
    missing_issuer_id: Option<&SpiffeId>,
    lifetime: Duration,
    clock_skew: Duration,
    now: UnixTime,
) -> Result<NewIssuer, RotationError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| RotationError::Read {
            path: path.to_path_buf(),
            source,
        })
    };
    let anchors = parse_certificates(&read(&paths.trust_anchors)?).map_err(|source| {
        RotationError::Certificates {
            path: paths.trust_anchors.clone(),
            source,
        }
    })?;
    let sentry_id = match (std::fs::read(&paths.issuer_certificate), missing_issuer_id) {
        (Err(e), Some(id)) if e.kind() == std::io::ErrorKind::NotFound => id.clone(),
        (Err(source), _) => {
            return Err(RotationError::Read {
                path: paths.issuer_certificate.clone(),
                source,
            });
        }
        (Ok(bytes), _) => {
            let current =
                parse_certificates(&bytes).map_err(|source| RotationError::Certificates {
                    path: paths.issuer_certificate.clone(),
                    source,
                })?;
            current
                .first()
                .and_then(sentry_id_of)
                .ok_or_else(|| RotationError::NoSentryId {
                    issuer: paths.issuer_certificate.clone(),
                })?
        }
    };
    let issuer = new_issuer(root_key, &anchors, &sentry_id, lifetime, clock_skew, now)?;
    files::write_files_atomically(&[
        (&paths.issuer_key, issuer.key_pem.as_bytes()),
        (&paths.issuer_certificate, issuer.certificate_pem.as_bytes()),
    ])?;
    Ok(issuer)
}

/// First retry after a failed rotation; doubled up to [`MAX_BACKOFF`].
pub(crate) const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Longest wait between rotation attempts after failures.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Longest sleep between checks (a reload may bring a new issuer at any time).
const CHECK_INTERVAL: Duration = Duration::from_secs(30);

/// The server's automatic rotation: sleeps until the live issuer is due, rotates it with the
/// HSM root, hands the new bundle to `install`, and on failure keeps the current issuer, logs
/// and retries with backoff. Runs until the task is dropped.
pub(crate) async fn auto_rotate(
    config: HsmConfig,
    paths: CredentialPaths,
    current: impl Fn() -> Arc<CaBundle> + Send + 'static,
    install: impl Fn(Arc<CaBundle>) + Send + 'static,
    workload_ttl: Duration,
    clock_skew: Duration,
) {
    tracing::info!(target: SCOPE_CA,
        "Automatic issuer rotation enabled: root key {:?} in HSM token {:?}",
        config.key_label, config.token_label);
    let config = Arc::new(config);
    let mut signer: Option<Arc<warden_hsm::HsmSigner>> = None;
    let mut backoff = FIRST_BACKOFF;
    loop {
        let validity = current().issuer_validity();
        let due = schedule::issuer_rotation_due(validity, clock_skew, workload_ttl);
        let now = now();
        if now < due {
            tokio::time::sleep(now.until(due).min(CHECK_INTERVAL)).await;
            continue;
        }
        let lifetime = schedule::issuer_lifetime(validity, clock_skew);
        let attempt = {
            let config = Arc::clone(&config);
            let paths = paths.clone();
            let cached = signer.clone();
            tokio::task::spawn_blocking(move || {
                let signer = match cached {
                    Some(signer) => signer,
                    None => Arc::new(Hsm::open_signer(&config)?),
                };
                let issuer = rotate_issuer(&paths, signer.as_ref(), lifetime, clock_skew, now)?;
                Ok::<_, RotationError>((signer, issuer))
            })
            .await
        };
        match attempt {
            Ok(Ok((used, issuer))) => {
                signer = Some(used);
                backoff = FIRST_BACKOFF;
                tracing::info!(target: SCOPE_CA,
                    "Issuer rotated with the HSM root: new issuer valid until unix {}",
                    issuer.validity.not_after.as_secs());
                install(Arc::new(issuer.bundle));
            }
            Ok(Err(e)) => {
                // A broken session or a token that went away: reopen on the next attempt.
                signer = None;
                tracing::error!(target: SCOPE_CA,
                    "Issuer rotation failed, still serving with the current issuer (valid until unix {}); retrying in {}s: {e}",
                    validity.not_after.as_secs(), backoff.as_secs());
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Err(e) => {
                signer = None;
                tracing::error!(target: SCOPE_CA, "Issuer rotation task failed: {e}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delete_commands_quote_labels_for_the_shell() {
        assert_eq!(shell_quote("warden-root"), "warden-root");
        assert_eq!(shell_quote("/usr/lib/x.so"), "/usr/lib/x.so");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a b$(x)"), "'a b$(x)'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }

    #[test]
    fn no_command_takes_a_pin_on_the_command_line() {
        use clap::Parser as _;
        let hsm = [
            "--hsm-module",
            "m.so",
            "--hsm-token-label",
            "t",
            "--hsm-key-label",
            "k",
        ];
        for command in [
            &["warden"][..],
            &["warden", "hsm", "init-root", "--issuer-credentials", "d"],
            &["warden", "issuer", "rotate", "--issuer-credentials", "d"],
            &[
                "warden",
                "issuer",
                "sign-csr",
                "--issuer-credentials",
                "d",
                "--csr",
                "c",
                "--out",
                "o",
            ],
            &[
                "warden",
                "edge",
                "provision",
                "--device",
                "s",
                "--issuer-credentials",
                "d",
            ],
        ] {
            let base: Vec<&str> = command.iter().chain(hsm.iter()).copied().collect();
            assert!(crate::cli::Cli::try_parse_from(&base).is_ok(), "{base:?}");
            for flag in ["--hsm-pin", "--pin", "--hsm-user-pin"] {
                let mut args = base.clone();
                args.extend([flag, "1234"]);
                let err = crate::cli::Cli::try_parse_from(&args).unwrap_err();
                assert_eq!(
                    err.kind(),
                    clap::error::ErrorKind::UnknownArgument,
                    "{args:?}"
                );
            }
        }
    }

    #[test]
    fn the_hsm_guide_puts_no_pin_on_a_command_line() {
        let guide = include_str!("../../../docs/hsm.md");
        let mut in_code = false;
        let mut commands = 0;
        for line in guide.lines() {
            if line.trim_start().starts_with("```") {
                in_code = !in_code;
                continue;
            }
            let line = line.trim();
            if !in_code || line.starts_with('#') || line.is_empty() {
                continue;
            }
            commands += 1;
            for needle in ["--pin", "--so-pin", "PIN=", "PIN =", "pin-value"] {
                assert!(!line.contains(needle), "docs/hsm.md: {line}");
            }
        }
        assert!(commands > 5, "no commands found in docs/hsm.md");
        assert!(guide.contains("--hsm-pin-file hsm.pin"));
    }
}

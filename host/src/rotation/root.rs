//! Root rotation without downtime: `warden root rotate prepare | activate | finish`.
//!
//! 1. `prepare` makes a new root key (a 0600 PKCS#8 file or a new key in the HSM) and a
//!    self-signed root for the same trust domain, and publishes old + new anchors in `ca.crt`.
//!    Every SignCertificate response carries all anchors, so clients learn the new root at their
//!    next renewal.
//! 2. `activate` (refused until the wait below has passed since `prepare`) writes a new issuer
//!    signed by the new root; the server hot-reloads it, and leaves chained to the new root are
//!    trusted by every client that renewed since `prepare`.
//! 3. `finish` (refused until the wait has passed since `activate`) removes the old roots from
//!    `ca.crt`: by then every leaf signed by the old issuer has expired.
//!
//! The wait is the longest workload certificate lifetime plus the allowed clock skew plus
//! [`RELOAD_MARGIN`] (the server applies a changed file after a 2 s debounce, and keeps
//! signing with the old set until then). `--force` skips it, with a warning.
//!
//! Progress is kept in `DIR/root-rotation.json`, written atomically. Every phase is written so
//! that re-running the same command after a crash finishes it:
//! - `prepare` writes the new key (file) and the state (`prepared`, not yet published), then
//!   `ca.crt`, then the state again with `published_at`. Re-running it publishes `ca.crt` if
//!   that had not happened.
//! - `activate` writes `issuer.key`, `issuer.crt`, then the state (`active`). Re-running it
//!   before the state was written makes another issuer (harmless) and records the phase.
//! - `finish` writes `ca.crt`, then the state (`finished`). Re-running it is a no-op rewrite.

use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use serde::{Deserialize, Serialize};
use warden_core::UnixTime;
use warden_core::bundle::{
    BundleError, CaBundle, CertificatesError, IssueError, certificates_to_pem, create_root,
    key_matches, parse_certificates,
};
use warden_core::crypto::{CaSigner, KeyAlgorithm, KeyError};
use warden_core::profile::{DEFAULT_CLOCK_SKEW, Validity};
use warden_core::schedule;
use warden_core::spiffe::{SpiffeId, SpiffeIdError, TrustDomain};
use warden_hsm::Hsm;
use x509_cert::Certificate;
use zeroize::Zeroizing;

use super::sentry_id_of;
use crate::config::{ConfigError, SentryConfig};
use crate::credentials::store::CredentialPaths;
use crate::credentials::{DEFAULT_DIR, state_path};
use crate::go::duration::{DurationError, parse_go_duration};
use crate::native::{NativeError, NativeKey, NativeVerifier};
use crate::rotation::issuer::{HsmArgs, NewIssuer, RotationError, new_issuer};
use crate::util::clock::{now, rng};
use crate::util::digest::fingerprint;
use crate::util::files;

use RootRotationError as E;

const DAY: Duration = Duration::from_secs(24 * 60 * 60);
/// Added to every wait: the server's reload debounce (2 s) and slack for the watcher.
pub(crate) const RELOAD_MARGIN: Duration = Duration::from_secs(5);

/// The credential directory.
#[derive(Clone, Debug, Args)]
pub(crate) struct DirArg {
    /// Directory holding ca.crt, issuer.crt, issuer.key and root-rotation.json.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_DIR)]
    pub issuer_credentials: PathBuf,
}

/// How long to wait between phases: Sentry's config or its two flags.
#[derive(Clone, Debug, Args)]
pub(crate) struct WaitArgs {
    /// Sentry's configuration file (spec.mtls.workloadCertTTL and allowedClockSkew).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Longest workload certificate lifetime (Go duration; default 24h, or the config's).
    #[arg(long, value_name = "DURATION")]
    pub workload_cert_ttl: Option<String>,
    /// Allowed clock skew (Go duration; default 15m, or the config's).
    #[arg(long, value_name = "DURATION")]
    pub allowed_clock_skew: Option<String>,
    /// Go on although the wait has not passed (clients may fail until they renew).
    #[arg(long)]
    pub force: bool,
}

/// `warden root rotate prepare`
#[derive(Debug, Args)]
pub(crate) struct PrepareArgs {
    #[command(flatten)]
    dir: DirArg,
    /// Where to write the new root private key (PKCS#8 PEM, mode 0600; must not exist).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["hsm_module", "hsm_token_label", "hsm_key_label"])]
    root_key_out: Option<PathBuf>,
    /// The new root key in an HSM: --hsm-key-label names the key to create.
    #[command(flatten)]
    hsm: HsmArgs,
    /// Lifetime of the new root in days.
    #[arg(long, value_name = "DAYS", default_value_t = 365)]
    valid_until: u32,
    /// Trust domain of the new root (its subject O=). Default: the current root's (its O=, else
    /// the issuer's SPIFFE ID, else its CN=).
    #[arg(long)]
    trust_domain: Option<String>,
}

/// `warden root rotate activate`
#[derive(Debug, Args)]
pub(crate) struct ActivateArgs {
    #[command(flatten)]
    dir: DirArg,
    /// The new root's private key file (written by prepare --root-key-out).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["hsm_module", "hsm_token_label", "hsm_key_label"])]
    root_key: Option<PathBuf>,
    /// The new root key in an HSM (the label given to prepare).
    #[command(flatten)]
    hsm: HsmArgs,
    /// Lifetime of the new issuer in days (capped at the new root's).
    #[arg(long, value_name = "DAYS", default_value_t = 365)]
    valid_until: u32,
    /// Sentry's namespace, for the new issuer's subject spiffe://<td>/ns/<NAMESPACE>/dapr-sentry
    /// when the current issuer has no SPIFFE ID (your own certificates); otherwise its own.
    #[arg(long, env = "NAMESPACE", default_value = "default")]
    namespace: String,
    #[command(flatten)]
    wait: WaitArgs,
}

/// `warden root rotate finish`
#[derive(Debug, Args)]
pub(crate) struct FinishArgs {
    #[command(flatten)]
    dir: DirArg,
    #[command(flatten)]
    wait: WaitArgs,
}

/// Where a rotation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Phase {
    /// New root made; published in ca.crt once `published_at` is set.
    Prepared,
    /// Issuing under the new root; old roots still trusted.
    Active,
    /// Old roots removed.
    Finished,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Prepared => "prepared",
            Self::Active => "active",
            Self::Finished => "finished",
        })
    }
}

/// The state file, `DIR/root-rotation.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RotationState {
    /// The phase reached.
    pub phase: Phase,
    /// SHA-256 of the new root's DER, lowercase hex.
    pub new_root_sha256: String,
    /// The new root certificate (PEM), so a crashed prepare can publish it.
    pub new_root_pem: String,
    /// SHA-256 of each anchor of ca.crt before prepare: what finish removes.
    pub old_roots_sha256: Vec<String>,
    /// Where the new root key is (`file PATH` or `hsm token T key K`).
    pub new_root_key: String,
    /// When prepare made the new root (Unix seconds).
    pub prepared_at: u64,
    /// When ca.crt with both roots was written (Unix seconds).
    pub published_at: Option<u64>,
    /// When the issuer signed by the new root was written (Unix seconds).
    pub activated_at: Option<u64>,
    /// When the old roots were removed (Unix seconds).
    pub finished_at: Option<u64>,
}

/// The earliest time the next phase may run: `since + ttl + skew + RELOAD_MARGIN`
/// ([`warden_core::schedule::phase_wait_until`]).
pub(crate) fn wait_until(since: u64, workload_ttl: Duration, clock_skew: Duration) -> UnixTime {
    schedule::phase_wait_until(
        UnixTime::from_secs(since),
        workload_ttl,
        clock_skew,
        RELOAD_MARGIN,
    )
}

/// The command the operator runs next, and from when (`None`: at once).
pub(crate) fn next_step(
    state: &RotationState,
    workload_ttl: Duration,
    clock_skew: Duration,
) -> (&'static str, Option<UnixTime>) {
    match (state.phase, state.published_at, state.activated_at) {
        (Phase::Prepared, None, _) => ("warden root rotate prepare (to publish ca.crt)", None),
        (Phase::Prepared, Some(published), _) => (
            "warden root rotate activate",
            Some(wait_until(published, workload_ttl, clock_skew)),
        ),
        (Phase::Active, _, Some(activated)) => (
            "warden root rotate finish",
            Some(wait_until(activated, workload_ttl, clock_skew)),
        ),
        (Phase::Active, _, None) => ("warden root rotate finish", None),
        (Phase::Finished, _, _) => ("none (rotation complete)", None),
    }
}

/// Why a root rotation step failed; nothing is changed by a refused step.
///
/// The first group refuses a step (the wrong phase, missing or conflicting flags, a wait not
/// yet over); the second says which file or value is not what it should be.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum RootRotationError {
    /// No state file: no rotation was started.
    #[error("{} does not exist: no root rotation in progress; start one with `warden root rotate prepare`", state.display())]
    NoRotation {
        /// The state file looked for.
        state: PathBuf,
    },
    /// `prepare` while a rotation is active.
    #[error("{}: the rotation is already active; run `warden root rotate finish`", state.display())]
    AlreadyActive {
        /// The state file.
        state: PathBuf,
    },
    /// `activate` before `prepare` published the new root (an interrupted prepare).
    #[error("{}: the new root is not published in ca.crt yet (prepare was interrupted); re-run `warden root rotate prepare`", state.display())]
    NotPublished {
        /// The state file.
        state: PathBuf,
    },
    /// `activate` after the rotation finished.
    #[error("{}: the rotation is finished; start a new one with `warden root rotate prepare`", state.display())]
    AlreadyFinished {
        /// The state file.
        state: PathBuf,
    },
    /// `finish` before `activate`.
    #[error("{}: the rotation is {phase}, not active; run `warden root rotate activate` first", state.display())]
    NotActive {
        /// The state file.
        state: PathBuf,
        /// The phase recorded in it.
        phase: Phase,
    },
    /// The wait since the previous step is not over and `--force` was not given.
    #[error(
        "{step} is refused until {until} ({left_secs} s from now): {reason} must have passed \
         (workload certificate TTL + allowed clock skew + {} s reload margin). Wait, or pass --force \
         to go on anyway",
        RELOAD_MARGIN.as_secs()
    )]
    WaitNotOver {
        /// The refused step (`activate`, `finish`).
        step: &'static str,
        /// What the wait is for.
        reason: &'static str,
        /// The earliest time the step may run.
        until: UnixTime,
        /// Seconds from now until then.
        left_secs: u64,
    },
    /// `--trust-domain` is not a trust domain.
    #[error("invalid --trust-domain {value:?}: {source}")]
    InvalidTrustDomain {
        /// The value given.
        value: String,
        /// Why it is not one.
        source: SpiffeIdError,
    },
    /// `--root-key-out` names a file that exists.
    #[error("--root-key-out {}: the file exists (perhaps left by an interrupted prepare); remove it or choose another path", path.display())]
    KeyFileExists {
        /// The file.
        path: PathBuf,
    },
    /// `prepare` without `--root-key-out` nor the `--hsm-*` flags.
    #[error(
        "give where the new root key goes: --root-key-out FILE, or \
         --hsm-module/--hsm-token-label/--hsm-key-label (a new label)"
    )]
    NoNewKeyLocation,
    /// `activate` without `--root-key` nor the `--hsm-*` flags.
    #[error(
        "give the new root key: --root-key FILE (from prepare --root-key-out) or \
         --hsm-module/--hsm-token-label/--hsm-key-label"
    )]
    NoRootKey,
    /// A wait flag is not a Go duration.
    #[error("{flag} {value:?}: {source}")]
    InvalidWaitFlag {
        /// `--workload-cert-ttl` or `--allowed-clock-skew`.
        flag: &'static str,
        /// The value given.
        value: String,
        /// Why it is not a duration.
        source: DurationError,
    },
    /// `--config` could not be loaded.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The state file is not JSON of a rotation state.
    #[error(
        "{}: not a root rotation state file ({source}); restore it from a backup or remove it \
         after checking ca.crt by hand",
        path.display()
    )]
    StateUnreadable {
        /// The state file.
        path: PathBuf,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// The state could not be encoded as JSON.
    #[error("{0}")]
    StateEncoding(#[source] serde_json::Error),
    /// The state file's `new_root_pem` is not a certificate.
    #[error("{}: new_root_pem is not a certificate; restore the file from a backup", state.display())]
    RecordedRootUnreadable {
        /// The state file.
        state: PathBuf,
    },
    /// A certificate file (`ca.crt`, `issuer.crt`) does not hold certificates.
    #[error("{}: {source}", path.display())]
    Certificates {
        /// The file.
        path: PathBuf,
        /// What is wrong in it.
        source: CertificatesError,
    },
    /// A key file (`issuer.key`) does not hold a usable key.
    #[error("{}: {source}", path.display())]
    Key {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        source: KeyError,
    },
    /// The `--root-key` file does not hold a usable key.
    #[error("--root-key {}: {source}", path.display())]
    RootKeyFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        source: KeyError,
    },
    /// No root nor the issuer names a trust domain, and `--trust-domain` was not given.
    #[error(
        "{}: no root names a trust domain (subject O= or CN=), nor does the issuer's \
         SPIFFE ID; give the new root's with --trust-domain",
        path.display()
    )]
    NoTrustDomain {
        /// `ca.crt`.
        path: PathBuf,
    },
    /// The credential set with the changed anchors would not load.
    #[error("the resulting credential set in {} would not load: {source}; nothing was changed", dir.display())]
    SetWouldNotLoad {
        /// The credential directory.
        dir: PathBuf,
        /// Why it would not load.
        source: BundleError,
    },
    /// The root key given is not the one `prepare` recorded.
    #[error(
        "the root key given does not belong to the new root (SHA-256 {new_root_sha256}) recorded in {}; \
         give the key prepare created ({key_location})",
        state.display()
    )]
    WrongRootKey {
        /// The new root's fingerprint.
        new_root_sha256: String,
        /// The state file.
        state: PathBuf,
        /// Where prepare put the key.
        key_location: String,
    },
    /// `ca.crt` lost the new root before `activate`.
    #[error("{} does not hold the new root (SHA-256 {new_root_sha256}); re-run `warden root rotate prepare` to publish it", ca.display())]
    NewRootNotPublished {
        /// `ca.crt`.
        ca: PathBuf,
        /// The new root's fingerprint.
        new_root_sha256: String,
    },
    /// `ca.crt` lost the new root before `finish`.
    #[error(
        "{} does not hold the new root (SHA-256 {new_root_sha256}) recorded in {}; refusing to remove the old roots",
        ca.display(),
        state.display()
    )]
    NewRootMissing {
        /// `ca.crt`.
        ca: PathBuf,
        /// The new root's fingerprint.
        new_root_sha256: String,
        /// The state file.
        state: PathBuf,
    },
    /// Neither the issuer nor the new root gives Sentry's SPIFFE ID.
    #[error(
        "{}: cannot find the issuer's SPIFFE ID (subject O=spiffe://...), nor a \
         trust domain in the new root with NAMESPACE {namespace:?}",
        issuer.display()
    )]
    NoSentryId {
        /// `issuer.crt`.
        issuer: PathBuf,
        /// The `NAMESPACE` given.
        namespace: String,
    },
    /// The issuer made under the new root does not validate with the published anchors.
    #[error("the new issuer does not validate: {0}; nothing was changed")]
    NewIssuerInvalid(#[source] BundleError),
    /// The new issuer's certificate does not read back.
    #[error("{0}")]
    NewIssuerCertificates(#[source] CertificatesError),
    /// The new issuer's key does not read back.
    #[error("{0}")]
    NewIssuerKey(#[source] KeyError),
    /// Making the new root key failed.
    #[error(transparent)]
    NewKey(#[from] NativeError),
    /// Making the new root certificate failed.
    #[error(transparent)]
    NewRoot(#[from] IssueError),
    /// Encoding certificates as PEM failed.
    #[error(transparent)]
    Pem(#[from] der::Error),
    /// From the issuer / HSM code.
    #[error(transparent)]
    Rotation(#[from] RotationError),
    /// Writing failed.
    #[error(transparent)]
    Write(#[from] files::WriteError),
}

fn read(path: &Path) -> Result<Vec<u8>, RootRotationError> {
    std::fs::read(path).map_err(|source| E::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads the state file; `None` when there is none.
pub(crate) fn read_state(dir: &Path) -> Result<Option<RotationState>, RootRotationError> {
    let path = state_path(dir);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| E::StateUnreadable { path, source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(E::Read { path, source }),
    }
}

fn write_state(dir: &Path, state: &RotationState) -> Result<(), RootRotationError> {
    let text = serde_json::to_string_pretty(state).map_err(E::StateEncoding)?;
    files::write_files_atomically(&[(&state_path(dir), text.as_bytes())])?;
    Ok(())
}

fn certificates_in(path: &Path) -> Result<Vec<Certificate>, RootRotationError> {
    parse_certificates(&read(path)?).map_err(|source| E::Certificates {
        path: path.to_path_buf(),
        source,
    })
}

fn anchors(paths: &CredentialPaths) -> Result<Vec<Certificate>, RootRotationError> {
    certificates_in(&paths.trust_anchors)
}

fn issuer_chain(paths: &CredentialPaths) -> Result<Vec<Certificate>, RootRotationError> {
    certificates_in(&paths.issuer_certificate)
}

fn issuer_key(paths: &CredentialPaths) -> Result<NativeKey, RootRotationError> {
    NativeKey::from_pem(&Zeroizing::new(read(&paths.issuer_key)?)).map_err(|source| E::Key {
        path: paths.issuer_key.clone(),
        source,
    })
}

/// Checks that `anchors` + the current issuer files make a set the server loads.
fn validate_set(
    paths: &CredentialPaths,
    anchors: Vec<Certificate>,
    now: UnixTime,
) -> Result<CaBundle, RootRotationError> {
    CaBundle::from_parts(
        anchors,
        issuer_chain(paths)?,
        Box::new(issuer_key(paths)?),
        now,
        &NativeVerifier,
    )
    .map_err(|source| E::SetWouldNotLoad {
        dir: paths.dir.clone(),
        source,
    })
}

/// The trust domain a CA already has: the first root's subject `O=` that is a trust domain,
/// else the issuer's SPIFFE ID's (`O=spiffe://<td>/...`), else the first root's `CN=` that is
/// one (the Dapr docs' OpenSSL recipe: `O=dapr.io/sentry`, `CN=cluster.local`). A new or renewed
/// root takes it by default, rather than `localhost`.
pub(crate) fn trust_domain_of(
    anchors: &[&Certificate],
    issuer_chain: &[Certificate],
) -> Option<TrustDomain> {
    let from = |oid| {
        anchors
            .iter()
            .filter_map(move |a| subject_attribute(a, oid))
            .find_map(|v| TrustDomain::new(&v).ok())
    };
    from(const_oid::db::rfc4519::O)
        .or_else(|| {
            issuer_chain
                .first()
                .and_then(sentry_id_of)
                .map(|id| id.trust_domain().clone())
        })
        .or_else(|| from(const_oid::db::rfc4519::CN))
}

/// The first string value of the subject's `oid` attribute.
fn subject_attribute(cert: &Certificate, oid: const_oid::ObjectIdentifier) -> Option<String> {
    super::subject_attributes(cert, oid).next()
}

fn pem_of(cert: &Certificate) -> Result<String, RootRotationError> {
    Ok(certificates_to_pem([cert])?)
}

/// The new root recorded in the state file `state_file`.
fn recorded_root(
    state: &RotationState,
    state_file: &Path,
) -> Result<Certificate, RootRotationError> {
    parse_certificates(state.new_root_pem.as_bytes())
        .ok()
        .and_then(|certs| certs.into_iter().next())
        .ok_or_else(|| E::RecordedRootUnreadable {
            state: state_file.to_path_buf(),
        })
}

/// The new root's key, made by `prepare`.
struct NewRootKey {
    /// Signs the new root.
    signer: Box<dyn CaSigner>,
    /// The key file to write (path, PKCS#8 PEM); `None` for a key in the HSM.
    file: Option<(PathBuf, Zeroizing<String>)>,
    /// Where the key lives, as recorded in the state file.
    location: String,
}

/// `warden root rotate prepare`.
pub(crate) fn run_prepare(args: PrepareArgs) -> Result<(), RootRotationError> {
    prepare(args, now())
}

fn prepare(args: PrepareArgs, now: UnixTime) -> Result<(), RootRotationError> {
    let dir = &args.dir.issuer_credentials;
    let paths = CredentialPaths::in_dir(dir);
    if let Some(state) = read_state(dir)? {
        match state.phase {
            Phase::Prepared => return resume_prepare(&paths, state, now),
            Phase::Active => {
                return Err(E::AlreadyActive {
                    state: state_path(dir),
                });
            }
            // A finished rotation: a new one may begin.
            Phase::Finished => {}
        }
    }
    let current = anchors(&paths)?;
    let trust_domain = new_root_trust_domain(args.trust_domain.as_deref(), &paths, &current)?;
    // The current set must load, so that what is published is the old set plus one anchor.
    validate_set(&paths, current.clone(), now)?;
    let key = make_new_root_key(args.root_key_out.as_deref(), &args.hsm)?;
    let lifetime = DAY * args.valid_until.max(1);
    let root = make_new_root(
        &paths,
        &current,
        key.signer.as_ref(),
        &trust_domain,
        lifetime,
        now,
    )?;
    let state = RotationState {
        phase: Phase::Prepared,
        new_root_sha256: fingerprint(&root),
        new_root_pem: pem_of(&root)?,
        old_roots_sha256: current.iter().map(fingerprint).collect(),
        new_root_key: key.location,
        prepared_at: now.as_secs(),
        published_at: None,
        activated_at: None,
        finished_at: None,
    };
    write_key_and_state(dir, key.file.as_ref(), &state)?;
    resume_prepare(&paths, state, now)
}

/// The new root's trust domain: `--trust-domain`, else the one the CA already has.
fn new_root_trust_domain(
    flag: Option<&str>,
    paths: &CredentialPaths,
    current: &[Certificate],
) -> Result<TrustDomain, RootRotationError> {
    match flag {
        Some(td) => TrustDomain::new(td).map_err(|source| E::InvalidTrustDomain {
            value: td.to_owned(),
            source,
        }),
        None => trust_domain_of(&current.iter().collect::<Vec<_>>(), &issuer_chain(paths)?)
            .ok_or_else(|| E::NoTrustDomain {
                path: paths.trust_anchors.clone(),
            }),
    }
}

/// Makes the new root key: in memory for `--root-key-out` (not yet written), or in the HSM.
fn make_new_root_key(
    key_out: Option<&Path>,
    hsm: &HsmArgs,
) -> Result<NewRootKey, RootRotationError> {
    match (key_out, hsm.config()?) {
        (Some(file), None) => {
            if file.exists() {
                return Err(E::KeyFileExists {
                    path: file.to_path_buf(),
                });
            }
            let key = NativeKey::generate(KeyAlgorithm::P256)?;
            let pem = key.to_pkcs8_pem()?;
            Ok(NewRootKey {
                signer: Box::new(key),
                file: Some((file.to_path_buf(), pem)),
                location: format!("file {}", file.display()),
            })
        }
        (None, Some(config)) => {
            let hsm = Hsm::open(&config).map_err(RotationError::from)?;
            let key = hsm
                .generate_key(&config.key_label)
                .map_err(RotationError::from)?;
            Ok(NewRootKey {
                signer: Box::new(key),
                file: None,
                location: format!(
                    "hsm token {:?} key {:?}",
                    config.token_label, config.key_label
                ),
            })
        }
        _ => Err(E::NoNewKeyLocation),
    }
}

/// Makes the new self-signed root and checks that the current set plus it still loads.
fn make_new_root(
    paths: &CredentialPaths,
    current: &[Certificate],
    key: &dyn CaSigner,
    trust_domain: &TrustDomain,
    lifetime: Duration,
    now: UnixTime,
) -> Result<Certificate, RootRotationError> {
    let root = create_root(
        key,
        trust_domain,
        Validity::backdated(now, DEFAULT_CLOCK_SKEW, lifetime),
        &mut rng(),
    )?;
    let mut published = current.to_vec();
    published.push(root.clone());
    validate_set(paths, published, now)?;
    Ok(root)
}

/// Writes the new key file (if any) and the state together, the state last: a state file
/// always names a key that exists, and a crash before it leaves only an unpublished key file.
fn write_key_and_state(
    dir: &Path,
    key_file: Option<&(PathBuf, Zeroizing<String>)>,
    state: &RotationState,
) -> Result<(), RootRotationError> {
    let text = serde_json::to_string_pretty(state).map_err(E::StateEncoding)?;
    let state_file = state_path(dir);
    match key_file {
        Some((file, pem)) => files::write_files_atomically(&[
            (file, pem.as_bytes()),
            (&state_file, text.as_bytes()),
        ])?,
        None => files::write_files_atomically(&[(&state_file, text.as_bytes())])?,
    }
    Ok(())
}

/// Publishes old + new roots in ca.crt (unless already there) and records `published_at`.
fn resume_prepare(
    paths: &CredentialPaths,
    mut state: RotationState,
    now: UnixTime,
) -> Result<(), RootRotationError> {
    let root = recorded_root(&state, &state_path(&paths.dir))?;
    let mut current = anchors(paths)?;
    if !current.contains(&root) {
        current.push(root);
        validate_set(paths, current.clone(), now)?;
        let pem = certificates_to_pem(current.iter())?;
        files::write_files_atomically(&[(&paths.trust_anchors, pem.as_bytes())])?;
        state.published_at = None;
    }
    if state.published_at.is_none() {
        state.published_at = Some(now.as_secs());
        write_state(&paths.dir, &state)?;
    }
    println!(
        "Root rotation prepared: {} now holds {} root(s), the new one with SHA-256 {} (key: {}).\n\
         Next: `warden root rotate activate` once every client has renewed (workload TTL + clock skew).",
        paths.trust_anchors.display(),
        current.len(),
        state.new_root_sha256,
        state.new_root_key
    );
    Ok(())
}

/// Workload TTL and clock skew from the flags, then `--config`, then Sentry's defaults.
fn wait_params(args: &WaitArgs) -> Result<(Duration, Duration), RootRotationError> {
    let base = match &args.config {
        Some(file) => SentryConfig::load(file)?,
        None => SentryConfig::default(),
    };
    let duration = |flag: &'static str, value: &Option<String>, default: Duration| match value {
        Some(text) => parse_go_duration(text).map_err(|source| E::InvalidWaitFlag {
            flag,
            value: text.clone(),
            source,
        }),
        None => Ok(default),
    };
    Ok((
        duration(
            "--workload-cert-ttl",
            &args.workload_cert_ttl,
            base.workload_cert_ttl,
        )?,
        duration(
            "--allowed-clock-skew",
            &args.allowed_clock_skew,
            base.allowed_clock_skew,
        )?,
    ))
}

/// Refuses (or, with `--force`, warns) when `now` is before `until`.
fn check_wait(
    step: &'static str,
    reason: &'static str,
    until: UnixTime,
    now: UnixTime,
    force: bool,
) -> Result<(), RootRotationError> {
    if now >= until {
        return Ok(());
    }
    let refusal = E::WaitNotOver {
        step,
        reason,
        until,
        left_secs: now.until(until).as_secs(),
    };
    if force {
        tracing::warn!(target: crate::observability::SCOPE_CA, "--force: {refusal}");
        eprintln!("WARNING: --force: {refusal}; clients that have not renewed since may fail");
        Ok(())
    } else {
        Err(refusal)
    }
}

fn require_state(dir: &Path) -> Result<RotationState, RootRotationError> {
    read_state(dir)?.ok_or_else(|| E::NoRotation {
        state: state_path(dir),
    })
}

/// `warden root rotate activate`.
pub(crate) fn run_activate(args: ActivateArgs) -> Result<(), RootRotationError> {
    activate(args, now())
}

fn activate(args: ActivateArgs, now: UnixTime) -> Result<(), RootRotationError> {
    let dir = &args.dir.issuer_credentials;
    let paths = CredentialPaths::in_dir(dir);
    let mut state = require_state(dir)?;
    let Some(published) = published_at_for_activate(dir, &state)? else {
        return Ok(());
    };
    let (ttl, skew) = wait_params(&args.wait)?;
    check_wait(
        "activate",
        "the time for every client to renew and learn the new root since prepare",
        wait_until(published, ttl, skew),
        now,
        args.wait.force,
    )?;
    let root_key = open_new_root_key(args.root_key.as_deref(), &args.hsm)?;
    let (new_root, current) = check_new_root(&paths, &state, root_key.as_ref())?;
    let sentry_id = new_issuer_id(&paths, &new_root, &args.namespace)?;
    // Only the new root can sign: give new_issuer an anchor list holding just it, then
    // validate against everything published.
    let issuer = new_issuer(
        root_key.as_ref(),
        std::slice::from_ref(&new_root),
        &sentry_id,
        DAY * args.valid_until.max(1),
        skew,
        now,
    )?;
    check_new_issuer(current, &issuer, now)?;
    files::write_files_atomically(&[
        (&paths.issuer_key, issuer.key_pem.as_bytes()),
        (&paths.issuer_certificate, issuer.certificate_pem.as_bytes()),
    ])?;
    state.phase = Phase::Active;
    state.activated_at = Some(now.as_secs());
    write_state(dir, &state)?;
    println!(
        "Root rotation active: {} is signed by the new root (valid until {}). \
         Next: `warden root rotate finish` after {}.",
        paths.issuer_certificate.display(),
        issuer.validity.not_after,
        wait_until(now.as_secs(), ttl, skew)
    );
    Ok(())
}

/// When the new root was published, which the activate wait counts from; `None` (after saying
/// so) when the rotation is already active; an error in any other phase.
fn published_at_for_activate(
    dir: &Path,
    state: &RotationState,
) -> Result<Option<u64>, RootRotationError> {
    match (state.phase, state.published_at) {
        (Phase::Prepared, Some(published)) => Ok(Some(published)),
        (Phase::Prepared, None) => Err(E::NotPublished {
            state: state_path(dir),
        }),
        (Phase::Active, _) => {
            println!(
                "Root rotation already active (issuer signed by the new root since unix {}). Next: `warden root rotate finish`.",
                state.activated_at.unwrap_or_default()
            );
            Ok(None)
        }
        (Phase::Finished, _) => Err(E::AlreadyFinished {
            state: state_path(dir),
        }),
    }
}

/// Opens the new root key: the `--root-key` file, or the key in the HSM.
fn open_new_root_key(
    file: Option<&Path>,
    hsm: &HsmArgs,
) -> Result<Box<dyn CaSigner>, RootRotationError> {
    match (file, hsm.config()?) {
        (Some(file), None) => Ok(Box::new(
            NativeKey::from_pem(&Zeroizing::new(read(file)?)).map_err(|source| E::RootKeyFile {
                path: file.to_path_buf(),
                source,
            })?,
        )),
        (None, Some(config)) => Ok(Box::new(
            Hsm::open_signer(&config).map_err(RotationError::from)?,
        )),
        _ => Err(E::NoRootKey),
    }
}

/// The recorded new root, checked to be the one `root_key` made and to be published in
/// `ca.crt`; with the anchors of `ca.crt`.
fn check_new_root(
    paths: &CredentialPaths,
    state: &RotationState,
    root_key: &dyn CaSigner,
) -> Result<(Certificate, Vec<Certificate>), RootRotationError> {
    let state_file = state_path(&paths.dir);
    let new_root = recorded_root(state, &state_file)?;
    if !key_matches(&new_root, &root_key.public_key()) {
        return Err(E::WrongRootKey {
            new_root_sha256: state.new_root_sha256.clone(),
            state: state_file,
            key_location: state.new_root_key.clone(),
        });
    }
    let current = anchors(paths)?;
    if !current.contains(&new_root) {
        return Err(E::NewRootNotPublished {
            ca: paths.trust_anchors.clone(),
            new_root_sha256: state.new_root_sha256.clone(),
        });
    }
    Ok((new_root, current))
}

/// The current issuer's SPIFFE ID, else (your own certificates, named otherwise) Sentry's ID
/// in the new root's trust domain.
fn new_issuer_id(
    paths: &CredentialPaths,
    new_root: &Certificate,
    namespace: &str,
) -> Result<SpiffeId, RootRotationError> {
    match issuer_chain(paths)?.first().and_then(sentry_id_of) {
        Some(id) => Ok(id),
        None => trust_domain_of(&[new_root], &[])
            .and_then(|td| SpiffeId::sentry(&td, namespace).ok())
            .ok_or_else(|| E::NoSentryId {
                issuer: paths.issuer_certificate.clone(),
                namespace: namespace.to_owned(),
            }),
    }
}

/// Checks that the new issuer loads with every published anchor, before anything is written.
fn check_new_issuer(
    anchors: Vec<Certificate>,
    issuer: &NewIssuer,
    now: UnixTime,
) -> Result<(), RootRotationError> {
    let issuer_certs =
        parse_certificates(issuer.certificate_pem.as_bytes()).map_err(E::NewIssuerCertificates)?;
    let key = NativeKey::from_pem(issuer.key_pem.as_bytes()).map_err(E::NewIssuerKey)?;
    CaBundle::from_parts(anchors, issuer_certs, Box::new(key), now, &NativeVerifier)
        .map_err(E::NewIssuerInvalid)?;
    Ok(())
}

/// `warden root rotate finish`.
pub(crate) fn run_finish(args: FinishArgs) -> Result<(), RootRotationError> {
    finish(args, now())
}

fn finish(args: FinishArgs, now: UnixTime) -> Result<(), RootRotationError> {
    let dir = &args.dir.issuer_credentials;
    let paths = CredentialPaths::in_dir(dir);
    let mut state = require_state(dir)?;
    let activated = match (state.phase, state.activated_at) {
        (Phase::Active, Some(activated)) => activated,
        (Phase::Finished, _) => {
            println!(
                "Root rotation already finished: {} holds only the new root (SHA-256 {}).",
                paths.trust_anchors.display(),
                state.new_root_sha256
            );
            return Ok(());
        }
        (Phase::Active, None) | (Phase::Prepared, _) => {
            return Err(E::NotActive {
                state: state_path(dir),
                phase: state.phase,
            });
        }
    };
    let (ttl, skew) = wait_params(&args.wait)?;
    check_wait(
        "finish",
        "the lifetime of every leaf signed by the old issuer since activate",
        wait_until(activated, ttl, skew),
        now,
        args.wait.force,
    )?;
    let kept: Vec<Certificate> = anchors(&paths)?
        .into_iter()
        .filter(|a| !state.old_roots_sha256.contains(&fingerprint(a)))
        .collect();
    if !kept.iter().any(|a| fingerprint(a) == state.new_root_sha256) {
        return Err(E::NewRootMissing {
            ca: paths.trust_anchors.clone(),
            new_root_sha256: state.new_root_sha256.clone(),
            state: state_path(dir),
        });
    }
    validate_set(&paths, kept.clone(), now)?;
    let pem = certificates_to_pem(kept.iter())?;
    files::write_files_atomically(&[(&paths.trust_anchors, pem.as_bytes())])?;
    state.phase = Phase::Finished;
    state.finished_at = Some(now.as_secs());
    write_state(dir, &state)?;
    println!(
        "Root rotation finished: {} holds only the new root (SHA-256 {}).",
        paths.trust_anchors.display(),
        state.new_root_sha256
    );
    Ok(())
}

/// What `warden status` shows about a rotation.
#[derive(Debug, Serialize)]
pub(crate) struct PhaseReport {
    /// `prepared`, `active` or `finished`.
    pub phase: Phase,
    /// SHA-256 of the new root.
    pub new_root_sha256: String,
    /// Where its key is.
    pub new_root_key: String,
    /// RFC 3339 times of each step done.
    pub prepared_at: String,
    /// When ca.crt got both roots.
    pub published_at: Option<String>,
    /// When issuance switched.
    pub activated_at: Option<String>,
    /// When the old roots were removed.
    pub finished_at: Option<String>,
    /// The command to run next.
    pub next: String,
    /// Not before this time (RFC 3339), with Sentry's default TTL and skew.
    pub next_not_before: Option<String>,
}

/// The rotation phase in `dir`, for `warden status`: `Ok(None)` when no rotation was started.
///
/// # Errors
///
/// The state file cannot be read or is not a rotation state.
pub(crate) fn phase_report(dir: &Path) -> Result<Option<PhaseReport>, RootRotationError> {
    let Some(state) = read_state(dir)? else {
        return Ok(None);
    };
    let defaults = SentryConfig::default();
    let (next, not_before) = next_step(
        &state,
        defaults.workload_cert_ttl,
        defaults.allowed_clock_skew,
    );
    let time = |secs: u64| UnixTime::from_secs(secs).to_string();
    Ok(Some(PhaseReport {
        phase: state.phase,
        prepared_at: time(state.prepared_at),
        published_at: state.published_at.map(time),
        activated_at: state.activated_at.map(time),
        finished_at: state.finished_at.map(time),
        next: next.to_owned(),
        next_not_before: not_before.map(|t| t.to_string()),
        new_root_sha256: state.new_root_sha256,
        new_root_key: state.new_root_key,
    }))
}

/// The text lines `warden status` prints for a rotation.
pub(crate) fn phase_text(report: Option<&PhaseReport>, error: Option<&str>) -> String {
    let mut out = String::new();
    match (report, error) {
        (_, Some(e)) => {
            let _ = writeln!(out, "Root rotation: UNREADABLE: {e}");
        }
        (None, None) => {}
        (Some(r), None) => {
            let published = if r.phase == Phase::Prepared && r.published_at.is_none() {
                " (new root not yet published in ca.crt)"
            } else {
                ""
            };
            let _ = writeln!(out, "Root rotation: {}{published}", r.phase);
            let _ = writeln!(out, "  new root sha256: {}", r.new_root_sha256);
            let _ = writeln!(out, "  new root key:    {}", r.new_root_key);
            let _ = writeln!(out, "  prepared at:     {}", r.prepared_at);
            for (label, value) in [
                ("published at:    ", &r.published_at),
                ("activated at:    ", &r.activated_at),
                ("finished at:     ", &r.finished_at),
            ] {
                if let Some(v) = value {
                    let _ = writeln!(out, "  {label}{v}");
                }
            }
            match &r.next_not_before {
                Some(t) => {
                    let _ = writeln!(
                        out,
                        "  next:            {} (not before {t} with a 24h TTL and 15m skew)",
                        r.next
                    );
                }
                None => {
                    let _ = writeln!(out, "  next:            {}", r.next);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt as _;

    use crate::credentials::store::{GenerateOptions, load, load_or_generate};

    const T0: u64 = 1_800_000_000;
    const TTL: Duration = Duration::from_secs(24 * 3600);
    const SKEW: Duration = Duration::from_secs(15 * 60);

    fn at(secs: u64) -> UnixTime {
        UnixTime::from_secs(secs)
    }

    fn wait() -> u64 {
        (TTL + SKEW + RELOAD_MARGIN).as_secs()
    }

    /// A self-hosted credential set made as the server makes it on first start.
    fn setup() -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("creds");
        load_or_generate(
            &CredentialPaths::in_dir(&dir),
            &GenerateOptions {
                trust_domain: TrustDomain::new("example.org").unwrap(),
                namespace: "dapr-system".into(),
                clock_skew: SKEW,
            },
            at(T0 - 60),
            &mut rng(),
        )
        .unwrap();
        (tmp, dir)
    }

    fn dir_arg(dir: &Path) -> DirArg {
        DirArg {
            issuer_credentials: dir.to_path_buf(),
        }
    }

    fn prepare_args(dir: &Path, key: &Path) -> PrepareArgs {
        PrepareArgs {
            dir: dir_arg(dir),
            root_key_out: Some(key.to_path_buf()),
            hsm: HsmArgs::default(),
            valid_until: 365,
            trust_domain: None,
        }
    }

    fn wait_args(force: bool) -> WaitArgs {
        WaitArgs {
            config: None,
            workload_cert_ttl: None,
            allowed_clock_skew: None,
            force,
        }
    }

    fn activate_args(dir: &Path, key: &Path, force: bool) -> ActivateArgs {
        ActivateArgs {
            dir: dir_arg(dir),
            root_key: Some(key.to_path_buf()),
            hsm: HsmArgs::default(),
            valid_until: 30,
            namespace: "default".into(),
            wait: wait_args(force),
        }
    }

    fn finish_args(dir: &Path, force: bool) -> FinishArgs {
        FinishArgs {
            dir: dir_arg(dir),
            wait: wait_args(force),
        }
    }

    fn anchors_of(dir: &Path) -> Vec<Certificate> {
        anchors(&CredentialPaths::in_dir(dir)).unwrap()
    }

    fn state(dir: &Path) -> RotationState {
        read_state(dir).unwrap().unwrap()
    }

    #[test]
    fn the_wait_is_ttl_plus_skew_plus_reload_margin() {
        assert_eq!(
            wait_until(T0, TTL, SKEW).as_secs(),
            T0 + 86_400 + 900 + RELOAD_MARGIN.as_secs()
        );
        assert_eq!(
            wait_until(T0, Duration::from_secs(5), Duration::ZERO).as_secs(),
            T0 + 5 + RELOAD_MARGIN.as_secs()
        );
        // Refused one second early, allowed at the instant, and --force always goes on.
        let until = wait_until(T0, TTL, SKEW);
        let early = until.saturating_sub(Duration::from_secs(1));
        let err = check_wait("finish", "x", until, early, false).unwrap_err();
        assert!(
            matches!(err, RootRotationError::WaitNotOver { step: "finish", left_secs: 1, until: u, .. } if u == until),
            "{err}"
        );
        // The refusal tells the operator how to go on anyway.
        assert!(err.to_string().contains("--force"), "{err}");
        check_wait("finish", "x", until, until, false).unwrap();
        check_wait("finish", "x", until, early, true).unwrap();
    }

    #[test]
    fn next_step_follows_the_phases() {
        let mut s = RotationState {
            phase: Phase::Prepared,
            new_root_sha256: String::new(),
            new_root_pem: String::new(),
            old_roots_sha256: Vec::new(),
            new_root_key: String::new(),
            prepared_at: T0,
            published_at: None,
            activated_at: None,
            finished_at: None,
        };
        assert_eq!(next_step(&s, TTL, SKEW).1, None);
        assert!(next_step(&s, TTL, SKEW).0.contains("prepare"));
        s.published_at = Some(T0 + 1);
        assert_eq!(
            next_step(&s, TTL, SKEW),
            (
                "warden root rotate activate",
                Some(wait_until(T0 + 1, TTL, SKEW))
            )
        );
        s.phase = Phase::Active;
        s.activated_at = Some(T0 + 100);
        assert_eq!(
            next_step(&s, TTL, SKEW),
            (
                "warden root rotate finish",
                Some(wait_until(T0 + 100, TTL, SKEW))
            )
        );
        s.phase = Phase::Finished;
        assert_eq!(next_step(&s, TTL, SKEW).1, None);
        // The file's spelling of the phase is lowercase.
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains(r#""phase":"finished""#), "{json}");
        assert_eq!(serde_json::from_str::<RotationState>(&json).unwrap(), s);
    }

    #[test]
    fn full_rotation_with_waits_refusals_and_idempotent_reruns() {
        let (tmp, dir) = setup();
        let key = tmp.path().join("new-root.key");
        let old = anchors_of(&dir);
        assert_eq!(old.len(), 1);

        // Nothing to activate or finish yet.
        let err = activate(activate_args(&dir, &key, true), at(T0)).unwrap_err();
        assert!(matches!(err, RootRotationError::NoRotation { .. }), "{err}");
        assert!(err.to_string().contains("prepare"), "{err}");

        prepare(prepare_args(&dir, &key), at(T0)).unwrap();
        let mode = fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let published = anchors_of(&dir);
        assert_eq!(published.len(), 2);
        assert_eq!(published[0], old[0], "the old root stays first");
        let s = state(&dir);
        assert_eq!(s.phase, Phase::Prepared);
        assert_eq!(s.published_at, Some(T0));
        assert_eq!(s.new_root_sha256, fingerprint(&published[1]));
        assert_eq!(s.old_roots_sha256, vec![fingerprint(&old[0])]);
        assert_eq!(
            super::super::subject_o(&published[1]).next().as_deref(),
            Some("example.org")
        );
        load(&CredentialPaths::in_dir(&dir), at(T0)).unwrap();

        // Re-running prepare changes nothing; a second key file is never made.
        let ca_before = fs::read(dir.join("ca.crt")).unwrap();
        prepare(
            prepare_args(&dir, &tmp.path().join("other.key")),
            at(T0 + 5),
        )
        .unwrap();
        assert_eq!(fs::read(dir.join("ca.crt")).unwrap(), ca_before);
        assert!(!tmp.path().join("other.key").exists());
        assert_eq!(state(&dir), s);

        // activate: refused before the wait, and with the wrong key.
        let err = activate(activate_args(&dir, &key, false), at(T0 + 60)).unwrap_err();
        assert!(
            matches!(
                err,
                RootRotationError::WaitNotOver {
                    step: "activate",
                    ..
                }
            ),
            "{err}"
        );
        let wrong = tmp.path().join("wrong.key");
        fs::write(
            &wrong,
            NativeKey::generate(KeyAlgorithm::P256)
                .unwrap()
                .to_pkcs8_pem()
                .unwrap()
                .as_bytes(),
        )
        .unwrap();
        let err = activate(activate_args(&dir, &wrong, true), at(T0 + 60)).unwrap_err();
        assert!(
            matches!(err, RootRotationError::WrongRootKey { .. }),
            "{err}"
        );
        assert_eq!(state(&dir).phase, Phase::Prepared);

        let t_act = T0 + wait();
        activate(activate_args(&dir, &key, false), at(t_act)).unwrap();
        let s = state(&dir);
        assert_eq!((s.phase, s.activated_at), (Phase::Active, Some(t_act)));
        let bundle = load(&CredentialPaths::in_dir(&dir), at(t_act)).unwrap();
        let chain = issuer_chain(&CredentialPaths::in_dir(&dir)).unwrap();
        assert_eq!(
            chain[0].tbs_certificate().issuer(),
            published[1].tbs_certificate().subject()
        );
        assert_eq!(
            sentry_id_of(&chain[0]).unwrap().to_string(),
            "spiffe://example.org/ns/dapr-system/dapr-sentry",
            "the issuer keeps its SPIFFE ID"
        );
        drop(bundle);
        // Re-running activate does not make yet another issuer.
        let issuer_before = fs::read(dir.join("issuer.crt")).unwrap();
        activate(activate_args(&dir, &key, false), at(t_act + 1)).unwrap();
        assert_eq!(fs::read(dir.join("issuer.crt")).unwrap(), issuer_before);

        // finish: refused before the wait with a clear message, then done.
        let err = finish(finish_args(&dir, false), at(t_act + wait() - 1)).unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(
                err,
                RootRotationError::WaitNotOver {
                    step: "finish",
                    left_secs: 1,
                    ..
                }
            ),
            "{text}"
        );
        // The operator's message, word for word.
        assert_eq!(
            text,
            format!(
                "finish is refused until {} (1 s from now): the lifetime of every leaf signed by \
                 the old issuer since activate must have passed (workload certificate TTL + \
                 allowed clock skew + 5 s reload margin). Wait, or pass --force to go on anyway",
                at(t_act + wait())
            )
        );
        assert_eq!(
            anchors_of(&dir).len(),
            2,
            "a refused finish changes nothing"
        );
        finish(finish_args(&dir, false), at(t_act + wait())).unwrap();
        assert_eq!(anchors_of(&dir), vec![published[1].clone()]);
        load(&CredentialPaths::in_dir(&dir), at(t_act + wait())).unwrap();
        let s = state(&dir);
        assert_eq!(s.phase, Phase::Finished);
        finish(finish_args(&dir, false), at(t_act + wait() + 1)).unwrap();
        assert_eq!(state(&dir), s);

        // The status report names the phase.
        let report = phase_report(&dir).unwrap().unwrap();
        assert_eq!(report.phase, Phase::Finished);
        assert!(phase_text(Some(&report), None).contains("Root rotation: finished"));

        // A new rotation may start after a finished one.
        prepare(
            prepare_args(&dir, &tmp.path().join("third.key")),
            at(t_act + wait() + 2),
        )
        .unwrap();
        assert_eq!(anchors_of(&dir).len(), 2);
        assert_eq!(
            state(&dir).old_roots_sha256,
            vec![fingerprint(&published[1])]
        );
    }

    #[test]
    fn a_crash_inside_prepare_or_activate_is_finished_by_rerunning_it() {
        let (tmp, dir) = setup();
        let key = tmp.path().join("new-root.key");
        let ca_old = fs::read(dir.join("ca.crt")).unwrap();
        prepare(prepare_args(&dir, &key), at(T0)).unwrap();
        // Crash after the key and the state, before ca.crt: put back what was on disk then.
        let mut s = state(&dir);
        s.published_at = None;
        write_state(&dir, &s).unwrap();
        fs::write(dir.join("ca.crt"), &ca_old).unwrap();
        let report = phase_report(&dir).unwrap().unwrap();
        assert!(
            phase_text(Some(&report), None).contains("not yet published"),
            "{}",
            phase_text(Some(&report), None)
        );
        let err = activate(activate_args(&dir, &key, true), at(T0 + 10)).unwrap_err();
        assert!(
            matches!(err, RootRotationError::NotPublished { .. }),
            "{err}"
        );
        // The key file exists: rerunning prepare reuses the recorded root, not a new key.
        prepare(prepare_args(&dir, &key), at(T0 + 20)).unwrap();
        assert_eq!(anchors_of(&dir).len(), 2);
        assert_eq!(
            state(&dir).published_at,
            Some(T0 + 20),
            "the wait starts at publication"
        );

        // Crash after the issuer files, before the state: the state still says prepared.
        let before = fs::read(state_path(&dir)).unwrap();
        activate(activate_args(&dir, &key, true), at(T0 + 30)).unwrap();
        fs::write(state_path(&dir), &before).unwrap();
        let err = finish(finish_args(&dir, true), at(T0 + 40)).unwrap_err();
        assert!(
            matches!(
                err,
                RootRotationError::NotActive {
                    phase: Phase::Prepared,
                    ..
                }
            ),
            "{err}"
        );
        activate(activate_args(&dir, &key, true), at(T0 + 50)).unwrap();
        assert_eq!(state(&dir).activated_at, Some(T0 + 50));
        load(&CredentialPaths::in_dir(&dir), at(T0 + 50)).unwrap();

        // Crash after ca.crt, before the state: finish again completes it.
        let before = fs::read(state_path(&dir)).unwrap();
        finish(finish_args(&dir, true), at(T0 + 60)).unwrap();
        fs::write(state_path(&dir), &before).unwrap();
        finish(finish_args(&dir, true), at(T0 + 70)).unwrap();
        assert_eq!(state(&dir).phase, Phase::Finished);
        assert_eq!(anchors_of(&dir).len(), 1);
    }

    #[test]
    fn prepare_refuses_an_existing_key_file_and_changes_nothing() {
        let (tmp, dir) = setup();
        let key = tmp.path().join("exists.key");
        fs::write(&key, "keep me").unwrap();
        let ca = fs::read(dir.join("ca.crt")).unwrap();
        let err = prepare(prepare_args(&dir, &key), at(T0)).unwrap_err();
        assert!(
            matches!(&err, RootRotationError::KeyFileExists { path } if *path == key),
            "{err}"
        );
        assert_eq!(fs::read(&key).unwrap(), b"keep me");
        assert_eq!(fs::read(dir.join("ca.crt")).unwrap(), ca);
        assert!(read_state(&dir).unwrap().is_none());
        // Neither a key file nor HSM flags: a usage error.
        let mut args = prepare_args(&dir, &key);
        args.root_key_out = None;
        let err = prepare(args, at(T0)).unwrap_err();
        assert!(matches!(err, RootRotationError::NoNewKeyLocation), "{err}");
    }

    #[test]
    fn the_wait_comes_from_flags_or_the_config_file() {
        let tmp = tempfile::tempdir().unwrap();
        let config = tmp.path().join("config.yaml");
        fs::write(
            &config,
            "kind: Configuration\napiVersion: dapr.io/v1alpha1\nspec:\n  mtls:\n    workloadCertTTL: 5s\n    allowedClockSkew: 0s\n",
        )
        .unwrap();
        let mut args = wait_args(false);
        assert_eq!(wait_params(&args).unwrap(), (TTL, SKEW));
        args.config = Some(config);
        assert_eq!(
            wait_params(&args).unwrap(),
            (Duration::from_secs(5), Duration::ZERO)
        );
        args.workload_cert_ttl = Some("1h".into());
        assert_eq!(
            wait_params(&args).unwrap(),
            (Duration::from_secs(3600), Duration::ZERO)
        );
        args.allowed_clock_skew = Some("soon".into());
        let err = wait_params(&args).unwrap_err();
        assert!(
            matches!(
                &err,
                RootRotationError::InvalidWaitFlag {
                    flag: "--allowed-clock-skew",
                    value,
                    ..
                } if value == "soon"
            ),
            "{err}"
        );
    }
}

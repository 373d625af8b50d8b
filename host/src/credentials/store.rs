//! The self-hosted credential store: `ca.crt`, `issuer.crt` and `issuer.key` in
//! `--issuer-credentials`, as Sentry keeps them.
//!
//! Rules: when all three files exist they are loaded and validated, and any problem is fatal
//! and leaves the files untouched. What happens when some are missing is [`start_action`]'s
//! table. Unlike Sentry (which regenerates all three when any is missing), a new root is made
//! only when `ca.crt` is absent, no root rotation is under way and the root is not in an HSM:
//! a published `ca.crt` is never replaced, because every workload that trusts it would break.
//! Generation must never leave a set that *looks* complete but is not, so the trust-anchor file
//! is written last, and [`GENERATION_MARKER`] is written before anything else and removed once
//! the set is complete: after a crash at any point either the marker says the issuer files
//! beside a missing `ca.crt` are our own unpublished leftovers (the next start generates again),
//! or the whole new set is in place. Issuer files without `ca.crt` and without the marker are
//! somebody's credentials: refused, never overwritten.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rand_core::CryptoRng;
use warden_core::UnixTime;
use warden_core::bundle::{
    BundleError, CaBundle, CaParams, CredentialFile, IssueError, parse_certificates,
};
use warden_core::crypto::KeyAlgorithm;
use warden_core::profile::DEFAULT_CA_TTL;
use warden_core::spiffe::TrustDomain;

use crate::native::{NativeKey, NativeVerifier};
use crate::util::files::{self, WriteError};

/// Where the three credential files are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialPaths {
    /// `--issuer-credentials`.
    pub dir: PathBuf,
    /// `ca.crt`: trust anchors.
    pub trust_anchors: PathBuf,
    /// `issuer.crt`: issuer chain.
    pub issuer_certificate: PathBuf,
    /// `issuer.key`: issuer private key.
    pub issuer_key: PathBuf,
}

impl CredentialPaths {
    /// The files under their standard names (`ca.crt`, `issuer.crt`, `issuer.key`) in `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        Self::new(
            dir,
            warden_core::bundle::TRUST_ANCHORS_FILENAME,
            warden_core::bundle::ISSUER_CERT_FILENAME,
            warden_core::bundle::ISSUER_KEY_FILENAME,
        )
    }

    /// Joins the filename flags to the directory; an absolute filename is used as given, as
    /// Sentry does (`Path::join` with an absolute path replaces the base).
    pub fn new(dir: &Path, ca_filename: &str, cert_filename: &str, key_filename: &str) -> Self {
        Self {
            dir: dir.to_path_buf(),
            trust_anchors: dir.join(ca_filename),
            issuer_certificate: dir.join(cert_filename),
            issuer_key: dir.join(key_filename),
        }
    }

    /// The path of one file of the set.
    pub fn path(&self, file: CredentialFile) -> &Path {
        match file {
            CredentialFile::TrustAnchors => &self.trust_anchors,
            CredentialFile::IssuerCertificate => &self.issuer_certificate,
            CredentialFile::IssuerKey => &self.issuer_key,
            _ => &self.issuer_certificate,
        }
    }

    /// The distinct directories holding the files: what the reloader watches.
    pub fn directories(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = Vec::new();
        for file in [
            &self.trust_anchors,
            &self.issuer_certificate,
            &self.issuer_key,
        ] {
            let dir = file
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
                .to_path_buf();
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
        dirs
    }
}

/// Why the credentials could not be loaded or created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A file exists but cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The files were read but do not form a valid credential set.
    #[error("invalid credentials in {}: {source}", path.display())]
    Invalid {
        /// The file the problem is in.
        path: PathBuf,
        /// What is wrong.
        source: BundleError,
    },
    /// A fresh CA could not be made.
    #[error("cannot generate a self-signed CA: {0}")]
    Generate(#[from] IssueError),
    /// The generated files could not be written.
    #[error("cannot store the generated CA: {0}")]
    Write(#[from] WriteError),
    /// Some files are missing and making them again could replace a published root.
    #[error("{0}")]
    Incomplete(String),
    /// The HSM root could not make the missing issuer.
    #[error("cannot make a new issuer from the HSM root: {0}")]
    HsmIssuer(String),
}

/// Whether the credentials were found or had to be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    /// All three files existed and were valid.
    Loaded,
    /// `ca.crt` was missing (never published); a new CA was generated and written.
    Generated,
    /// `ca.crt` was there but the issuer was not; a new issuer was made by the HSM root.
    IssuedFromHsm,
}

/// Written in the credential directory before a new CA's first file and removed once its
/// `ca.crt` is in place: proof that issuer files without `ca.crt` were left by an interrupted
/// generation, not by an operator who deleted `ca.crt`.
pub const GENERATION_MARKER: &str = ".warden-generating";

/// What start-up finds: which files exist, and whether the root is in an HSM. The inputs of
/// [`start_action`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct StartState {
    /// `ca.crt` exists (a dangling symlink counts: it is not ours to replace).
    pub trust_anchors: bool,
    /// `issuer.crt` exists.
    pub issuer_certificate: bool,
    /// `issuer.key` exists.
    pub issuer_key: bool,
    /// `root-rotation.json` exists in the credential directory (any phase, even unparsable).
    pub rotation_state: bool,
    /// `--hsm-module/--hsm-token-label/--hsm-key-label` were given.
    pub hsm: bool,
    /// [`GENERATION_MARKER`] exists: a generation was interrupted before `ca.crt` was written.
    pub generation_interrupted: bool,
}

impl StartState {
    /// Looks at the files; `hsm` says whether the `--hsm-*` flags were given.
    pub(crate) fn of(paths: &CredentialPaths, hsm: bool) -> Result<Self, StoreError> {
        Ok(Self {
            trust_anchors: exists(&paths.trust_anchors)?,
            issuer_certificate: exists(&paths.issuer_certificate)?,
            issuer_key: exists(&paths.issuer_key)?,
            rotation_state: exists(&crate::credentials::state_path(&paths.dir))?,
            hsm,
            generation_interrupted: exists(&generation_marker(paths))?,
        })
    }

    fn complete(&self) -> bool {
        self.trust_anchors && self.issuer_certificate && self.issuer_key
    }
}

/// What start-up does with the files it found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) enum StartAction {
    /// All three files exist: load and validate them.
    Load,
    /// No `ca.crt`, no rotation state, no HSM, and no issuer file either or only those of an
    /// interrupted generation ([`GENERATION_MARKER`]): nothing was ever published, make a new CA.
    Generate,
    /// `ca.crt` exists, the issuer does not, the root is in the HSM: the HSM root signs a new
    /// issuer, as `warden issuer rotate` does.
    IssueFromHsm,
    /// Something is missing while a root rotation is recorded: refuse.
    RefuseRotationState,
    /// `ca.crt` is missing but the root is in the HSM: refuse (a software root must not
    /// replace it; `warden hsm init-root` makes HSM roots).
    RefuseHsmRootMissing,
    /// `ca.crt` exists, the issuer does not, and there is no root key to sign a new one.
    RefuseIssuerMissing,
    /// `ca.crt` is missing but issuer files exist that no interrupted generation of ours left:
    /// somebody's credentials, not to be overwritten.
    RefuseTrustAnchorsMissing,
}

/// The start-up rule, as a table (first matching row wins):
///
/// | ca.crt | issuer.crt + issuer.key | root-rotation.json | --hsm-* | action |
/// |---|---|---|---|---|
/// | yes | both | any | any | load |
/// | any | any missing | yes | any | refuse |
/// | no | any | no | yes | refuse: restore ca.crt or `warden hsm init-root` |
/// | no | none, or any with the generation marker | no | no | generate a new CA |
/// | no | some, no generation marker | no | no | refuse: restore ca.crt or move the files away |
/// | yes | any missing | no | yes | new issuer from the HSM root |
/// | yes | any missing | no | no | refuse: `warden issuer rotate` or restore |
pub(crate) fn start_action(state: StartState) -> StartAction {
    if state.complete() {
        StartAction::Load
    } else if state.rotation_state {
        StartAction::RefuseRotationState
    } else {
        match (state.trust_anchors, state.hsm) {
            (false, true) => StartAction::RefuseHsmRootMissing,
            (false, false)
                if state.generation_interrupted
                    || !(state.issuer_certificate || state.issuer_key) =>
            {
                StartAction::Generate
            }
            (false, false) => StartAction::RefuseTrustAnchorsMissing,
            (true, true) => StartAction::IssueFromHsm,
            (true, false) => StartAction::RefuseIssuerMissing,
        }
    }
}

/// Whether something is at `path` (not following a final symlink).
fn exists(path: &Path) -> Result<bool, StoreError> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(StoreError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The fatal message for a refused start: which files are missing, why Warden does not make
/// them, and how to go on on purpose.
fn refusal(action: StartAction, state: StartState, paths: &CredentialPaths) -> String {
    let missing: Vec<String> = [
        (state.trust_anchors, &paths.trust_anchors),
        (state.issuer_certificate, &paths.issuer_certificate),
        (state.issuer_key, &paths.issuer_key),
    ]
    .iter()
    .filter(|(present, _)| !present)
    .map(|(_, path)| path.display().to_string())
    .collect();
    let missing = missing.join(" and ");
    let dir = paths.dir.display();
    let ca = paths.trust_anchors.display();
    match action {
        StartAction::RefuseRotationState => format!(
            "missing {missing} while a root rotation is recorded in {}: refusing to start \
             (Warden never makes a new root or issuer in the middle of a root rotation). Restore \
             the missing file(s) from a backup, or make a new issuer on purpose with \
             `warden issuer rotate --issuer-credentials {dir}` and the right root key (the old \
             root's before `activate`, new_root_key in that file after); to abandon the roots in {ca} and start over, move \
             ca.crt, issuer.crt, issuer.key and root-rotation.json away",
            crate::credentials::state_path(&paths.dir).display()
        ),
        StartAction::RefuseHsmRootMissing => format!(
            "missing {missing} while the root is in an HSM (--hsm-* given): refusing to start \
             (a software root must not replace the HSM root). Restore {ca} from a backup (a \
             missing issuer is then made by the HSM root), or make a new HSM root on purpose \
             with `warden hsm init-root --issuer-credentials DIR --hsm-...` into an empty directory"
        ),
        StartAction::RefuseTrustAnchorsMissing => format!(
            "missing {missing} while the issuer file(s) of a CA are in {dir}: refusing to start \
             (a new root would overwrite them, and {ca} may be published). Restore {ca} from a \
             backup, or to start over with a new CA on purpose, move the issuer files away"
        ),
        _ => format!(
            "missing {missing} while {ca} exists: refusing to start (a new root would replace \
             the published one and break every workload that trusts it). Make a new issuer for \
             this root with `warden issuer rotate --issuer-credentials {dir} --root-key ROOT.key` \
             (or start with --hsm-* when the root is in an HSM), or restore the file(s) from a \
             backup; to start over with a new root on purpose, move {ca} and the issuer files away"
        ),
    }
}

/// What a generated CA looks like.
#[derive(Clone, Debug)]
pub(crate) struct GenerateOptions {
    /// `--trust-domain`: the root's `O=` and the issuer's SPIFFE subject.
    pub trust_domain: TrustDomain,
    /// Sentry's namespace (env `NAMESPACE`).
    pub namespace: String,
    /// Backdating of both certificates.
    pub clock_skew: std::time::Duration,
}

/// Makes a new issuer (`issuer.crt` and `issuer.key`) for the `ca.crt` in the paths, signed by
/// the HSM root; the error is shown to the operator.
pub(crate) type HsmIssuerFn<'a> = &'a mut dyn FnMut(&CredentialPaths) -> Result<(), String>;

#[cfg(test)]
/// Loads the credential set, or makes what [`start_action`] allows; no root in an HSM.
pub(crate) fn load_or_generate<R: CryptoRng + ?Sized>(
    paths: &CredentialPaths,
    options: &GenerateOptions,
    now: UnixTime,
    rng: &mut R,
) -> Result<(CaBundle, Origin), StoreError> {
    load_or_start(paths, options, None, now, rng)
}

/// Loads the credential set, or makes what [`start_action`] allows: a new CA when nothing was
/// ever published, a new issuer through `hsm_issuer` (given with `--hsm-*`) when only the issuer
/// is missing; otherwise [`StoreError::Incomplete`]. `ca.crt` is never removed or overwritten.
pub(crate) fn load_or_start<R: CryptoRng + ?Sized>(
    paths: &CredentialPaths,
    options: &GenerateOptions,
    hsm_issuer: Option<HsmIssuerFn<'_>>,
    now: UnixTime,
    rng: &mut R,
) -> Result<(CaBundle, Origin), StoreError> {
    let state = StartState::of(paths, hsm_issuer.is_some())?;
    let action = start_action(state);
    let origin = match (action, hsm_issuer) {
        (StartAction::Load, _) => {
            remove_generation_marker(paths)?;
            Origin::Loaded
        }
        (StartAction::Generate, _) => {
            generate(paths, options, now, rng)?;
            Origin::Generated
        }
        (StartAction::IssueFromHsm, Some(issue)) => {
            for file in [&paths.issuer_certificate, &paths.issuer_key] {
                files::remove_stale_temp_files(file);
            }
            issue(paths).map_err(StoreError::HsmIssuer)?;
            Origin::IssuedFromHsm
        }
        _ => return Err(StoreError::Incomplete(refusal(action, state, paths))),
    };
    // Read what is on disk (after writing, too): the live bundle is then exactly what a restart
    // loads, and the issuer key is the native (fast) one.
    let files = read_all(paths)?.ok_or_else(|| StoreError::Read {
        path: paths.dir.clone(),
        source: io::Error::new(
            io::ErrorKind::NotFound,
            "a credential file vanished while starting",
        ),
    })?;
    Ok((validate(paths, &files, now)?, origin))
}

/// Loads and validates the credential set; a missing file is an error here (used on reload,
/// where the running CA must not be replaced by a half-copied set).
pub fn load(paths: &CredentialPaths, now: UnixTime) -> Result<CaBundle, StoreError> {
    let files = read_all(paths)?.ok_or_else(|| StoreError::Read {
        path: paths.dir.clone(),
        source: io::Error::new(
            io::ErrorKind::NotFound,
            "the credential set is incomplete (ca.crt, issuer.crt and issuer.key are all needed)",
        ),
    })?;
    validate(paths, &files, now)
}

struct RawFiles {
    trust_anchors: Vec<u8>,
    issuer_certificate: Vec<u8>,
    issuer_key: zeroize::Zeroizing<Vec<u8>>,
}

/// All three files, or `None` when any is missing.
fn read_all(paths: &CredentialPaths) -> Result<Option<RawFiles>, StoreError> {
    let read = |path: &Path| match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StoreError::Read {
            path: path.to_path_buf(),
            source,
        }),
    };
    let trust_anchors = read(&paths.trust_anchors)?;
    let issuer_certificate = read(&paths.issuer_certificate)?;
    let issuer_key = read(&paths.issuer_key)?.map(zeroize::Zeroizing::new);
    Ok(match (trust_anchors, issuer_certificate, issuer_key) {
        (Some(trust_anchors), Some(issuer_certificate), Some(issuer_key)) => Some(RawFiles {
            trust_anchors,
            issuer_certificate,
            issuer_key,
        }),
        _ => None,
    })
}

fn validate(
    paths: &CredentialPaths,
    files: &RawFiles,
    now: UnixTime,
) -> Result<CaBundle, StoreError> {
    let invalid = |source: BundleError| StoreError::Invalid {
        path: paths.path(source.file()).to_path_buf(),
        source,
    };
    let anchors = parse_certificates(&files.trust_anchors)
        .map_err(|e| invalid(BundleError::Certificates(CredentialFile::TrustAnchors, e)))?;
    let chain = parse_certificates(&files.issuer_certificate).map_err(|e| {
        invalid(BundleError::Certificates(
            CredentialFile::IssuerCertificate,
            e,
        ))
    })?;
    let key =
        NativeKey::from_pem(&files.issuer_key).map_err(|e| invalid(BundleError::IssuerKey(e)))?;
    CaBundle::from_parts(anchors, chain, Box::new(key), now, &NativeVerifier).map_err(invalid)
}

fn generate<R: CryptoRng + ?Sized>(
    paths: &CredentialPaths,
    options: &GenerateOptions,
    now: UnixTime,
    rng: &mut R,
) -> Result<(), StoreError> {
    let params = CaParams {
        trust_domain: &options.trust_domain,
        namespace: &options.namespace,
        key_algorithm: KeyAlgorithm::P256,
        lifetime: DEFAULT_CA_TTL,
        clock_skew: options.clock_skew,
    };
    let (_, files) = CaBundle::generate(&params, now, rng)?;
    for dir in paths.directories() {
        files::create_private_dir(&dir)?;
    }
    // Only reached without ca.crt (start_action), which is written last. A start killed while
    // writing (kill -9, power loss) may have left temporary files.
    let marker = generation_marker(paths);
    for file in [
        &marker,
        &paths.trust_anchors,
        &paths.issuer_certificate,
        &paths.issuer_key,
    ] {
        files::remove_stale_temp_files(file);
    }
    files::write_files_atomically(&[(
        &marker,
        b"a new CA is being generated here; if this file remains, that start was interrupted\n",
    )])?;
    files::write_files_atomically(&[
        (&paths.issuer_key, files.issuer_key.as_bytes()),
        (
            &paths.issuer_certificate,
            files.issuer_certificate.as_bytes(),
        ),
        (&paths.trust_anchors, files.trust_anchors.as_bytes()),
    ])?;
    remove_generation_marker(paths)
}

fn generation_marker(paths: &CredentialPaths) -> PathBuf {
    paths.dir.join(GENERATION_MARKER)
}

/// Removes the marker of a generation whose `ca.crt` is in place (also one left by a start
/// killed between writing `ca.crt` and removing it): later, issuer files without `ca.crt` are
/// somebody's, not ours to regenerate.
fn remove_generation_marker(paths: &CredentialPaths) -> Result<(), StoreError> {
    match fs::remove_file(generation_marker(paths)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(StoreError::Read {
            path: generation_marker(paths),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    use crate::util::clock::now;

    fn options() -> GenerateOptions {
        GenerateOptions {
            trust_domain: TrustDomain::new("localhost").unwrap(),
            namespace: "default".into(),
            clock_skew: Duration::from_secs(900),
        }
    }

    use crate::util::clock::rng;

    #[test]
    fn generates_once_then_loads_the_same_root() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("creds");
        let paths = CredentialPaths::in_dir(&dir);
        let (first, origin) = load_or_generate(&paths, &options(), now(), &mut rng()).unwrap();
        assert_eq!(origin, Origin::Generated);
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        for p in [
            &paths.trust_anchors,
            &paths.issuer_certificate,
            &paths.issuer_key,
        ] {
            assert_eq!(fs::metadata(p).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let (second, origin) = load_or_generate(&paths, &options(), now(), &mut rng()).unwrap();
        assert_eq!(origin, Origin::Loaded);
        assert_eq!(first.trust_anchors_pem(), second.trust_anchors_pem());
    }

    fn state(ca: bool, crt: bool, key: bool, rotation: bool, hsm: bool) -> StartState {
        StartState {
            trust_anchors: ca,
            issuer_certificate: crt,
            issuer_key: key,
            rotation_state: rotation,
            hsm,
            generation_interrupted: false,
        }
    }

    fn interrupted(state: StartState) -> StartState {
        StartState {
            generation_interrupted: true,
            ..state
        }
    }

    /// Every combination of the six inputs.
    fn all_states() -> Vec<StartState> {
        (0u8..64)
            .map(|b| StartState {
                generation_interrupted: b & 32 != 0,
                ..state(b & 1 != 0, b & 2 != 0, b & 4 != 0, b & 8 != 0, b & 16 != 0)
            })
            .collect()
    }

    #[test]
    fn row_complete_set_is_loaded_whatever_else() {
        for rotation in [false, true] {
            for hsm in [false, true] {
                assert_eq!(
                    start_action(state(true, true, true, rotation, hsm)),
                    StartAction::Load
                );
            }
        }
    }

    #[test]
    fn row_anything_missing_during_a_root_rotation_is_refused() {
        for s in all_states() {
            if s.rotation_state && !s.complete() {
                assert_eq!(start_action(s), StartAction::RefuseRotationState, "{s:?}");
            }
        }
    }

    #[test]
    fn row_no_ca_crt_with_an_hsm_root_is_refused() {
        for (crt, key) in [(false, false), (true, false), (false, true), (true, true)] {
            assert_eq!(
                start_action(state(false, crt, key, false, true)),
                StartAction::RefuseHsmRootMissing
            );
        }
    }

    #[test]
    fn row_no_ca_crt_without_hsm_or_rotation_generates() {
        // Nothing at all (first start), or issuer files left by a start killed before it
        // wrote ca.crt (written last, so this set was never published).
        assert_eq!(
            start_action(state(false, false, false, false, false)),
            StartAction::Generate
        );
        for (crt, key) in [(false, false), (true, false), (false, true), (true, true)] {
            assert_eq!(
                start_action(interrupted(state(false, crt, key, false, false))),
                StartAction::Generate
            );
        }
    }

    #[test]
    fn row_issuer_files_without_ca_crt_or_marker_are_refused() {
        // An operator deleted ca.crt of a working CA: its issuer files are not ours to replace.
        for (crt, key) in [(true, false), (false, true), (true, true)] {
            assert_eq!(
                start_action(state(false, crt, key, false, false)),
                StartAction::RefuseTrustAnchorsMissing
            );
        }
    }

    #[test]
    fn row_missing_issuer_with_an_hsm_root_gets_a_new_issuer() {
        for (crt, key) in [(false, false), (true, false), (false, true)] {
            assert_eq!(
                start_action(state(true, crt, key, false, true)),
                StartAction::IssueFromHsm
            );
        }
    }

    #[test]
    fn row_missing_issuer_without_a_root_key_is_refused() {
        for (crt, key) in [(false, false), (true, false), (false, true)] {
            assert_eq!(
                start_action(state(true, crt, key, false, false)),
                StartAction::RefuseIssuerMissing
            );
        }
    }

    #[test]
    fn a_root_is_made_only_from_nothing_published() {
        for s in all_states() {
            let action = start_action(s);
            let nothing_of_somebody_else =
                s.generation_interrupted || !(s.issuer_certificate || s.issuer_key);
            assert_eq!(
                action == StartAction::Generate,
                !s.trust_anchors && !s.rotation_state && !s.hsm && nothing_of_somebody_else,
                "{s:?}: {action:?}"
            );
            if s.trust_anchors {
                assert!(
                    matches!(
                        action,
                        StartAction::Load
                            | StartAction::IssueFromHsm
                            | StartAction::RefuseIssuerMissing
                            | StartAction::RefuseRotationState
                    ),
                    "{s:?}: {action:?}"
                );
            }
        }
    }

    fn files(paths: &CredentialPaths) -> Vec<Option<Vec<u8>>> {
        [
            &paths.trust_anchors,
            &paths.issuer_certificate,
            &paths.issuer_key,
        ]
        .iter()
        .map(|p| fs::read(p).ok())
        .collect()
    }

    #[test]
    fn a_missing_issuer_key_is_refused_naming_it_and_ca_crt_is_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = CredentialPaths::in_dir(tmp.path());
        load_or_generate(&paths, &options(), now(), &mut rng()).unwrap();
        fs::remove_file(&paths.issuer_key).unwrap();
        let before = files(&paths);
        let err = load_or_generate(&paths, &options(), now(), &mut rng()).unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, StoreError::Incomplete(_)), "{err:?}");
        assert!(
            message.contains(&format!("missing {}", paths.issuer_key.display()))
                && message.contains("warden issuer rotate"),
            "{message}"
        );
        assert!(!message.contains("issuer.crt and"), "{message}");
        assert_eq!(files(&paths), before);
    }

    #[test]
    fn a_missing_issuer_with_an_hsm_root_is_made_by_it_and_ca_crt_is_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = CredentialPaths::in_dir(tmp.path());
        load_or_generate(&paths, &options(), now(), &mut rng()).unwrap();
        let issuer = files(&paths);
        fs::remove_file(&paths.issuer_key).unwrap();
        fs::remove_file(&paths.issuer_certificate).unwrap();
        let mut calls = 0;
        // Stands in for the HSM root: writes back an issuer that root signed.
        let mut issue = |p: &CredentialPaths| {
            calls += 1;
            fs::write(&p.issuer_certificate, issuer[1].as_ref().unwrap()).unwrap();
            fs::write(&p.issuer_key, issuer[2].as_ref().unwrap()).unwrap();
            Ok(())
        };
        let (_, origin) =
            load_or_start(&paths, &options(), Some(&mut issue), now(), &mut rng()).unwrap();
        assert_eq!(origin, Origin::IssuedFromHsm);
        assert_eq!(calls, 1);
        assert_eq!(files(&paths), issuer);

        // A failing HSM is fatal and names the cause.
        fs::remove_file(&paths.issuer_key).unwrap();
        let mut broken = |_: &CredentialPaths| Err("C_Login returned CKR_PIN_INCORRECT".to_owned());
        let err = load_or_start(&paths, &options(), Some(&mut broken), now(), &mut rng())
            .unwrap_err()
            .to_string();
        assert!(err.contains("CKR_PIN_INCORRECT"), "{err}");
        assert_eq!(fs::read(&paths.trust_anchors).ok(), issuer[0]);
    }

    #[test]
    fn no_ca_crt_with_an_hsm_root_is_refused_and_nothing_is_written() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = CredentialPaths::in_dir(tmp.path());
        let mut issue = |_: &CredentialPaths| -> Result<(), String> {
            panic!("the HSM must not be used without ca.crt")
        };
        let err = load_or_start(&paths, &options(), Some(&mut issue), now(), &mut rng())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("ca.crt") && err.contains("warden hsm init-root"),
            "{err}"
        );
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_missing_file_during_a_root_rotation_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = CredentialPaths::in_dir(tmp.path());
        load_or_generate(&paths, &options(), now(), &mut rng()).unwrap();
        fs::write(tmp.path().join("root-rotation.json"), "{}").unwrap();
        for missing in [&paths.issuer_key, &paths.trust_anchors] {
            fs::remove_file(missing).unwrap();
            let before = files(&paths);
            let err = load_or_generate(&paths, &options(), now(), &mut rng())
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(&missing.display().to_string()) && err.contains("root-rotation.json"),
                "{err}"
            );
            assert_eq!(files(&paths), before);
        }
    }

    #[test]
    fn a_dangling_ca_crt_symlink_is_not_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = CredentialPaths::in_dir(tmp.path());
        std::os::unix::fs::symlink(tmp.path().join("gone"), &paths.trust_anchors).unwrap();
        let err = load_or_generate(&paths, &options(), now(), &mut rng()).unwrap_err();
        assert!(matches!(err, StoreError::Incomplete(_)), "{err:?}");
        assert!(
            fs::symlink_metadata(&paths.trust_anchors)
                .unwrap()
                .is_symlink()
        );
    }

    #[test]
    fn a_deleted_ca_crt_beside_issuer_files_is_refused_and_nothing_is_written() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = CredentialPaths::in_dir(tmp.path());
        load_or_generate(&paths, &options(), now(), &mut rng()).unwrap();
        assert!(!tmp.path().join(GENERATION_MARKER).exists());
        fs::remove_file(&paths.trust_anchors).unwrap();
        let before = files(&paths);
        let err = load_or_generate(&paths, &options(), now(), &mut rng()).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("ca.crt") && text.contains("refusing to start"),
            "{text}"
        );
        assert_eq!(files(&paths), before, "the issuer files were touched");
        // The same files left by an interrupted generation of ours are replaced.
        fs::write(tmp.path().join(GENERATION_MARKER), "").unwrap();
        let (_, origin) = load_or_generate(&paths, &options(), now(), &mut rng()).unwrap();
        assert_eq!(origin, Origin::Generated);
        assert!(!tmp.path().join(GENERATION_MARKER).exists());
    }

    #[test]
    fn generation_after_a_killed_start_removes_its_temporary_files() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = CredentialPaths::in_dir(tmp.path());
        // What a start killed between writing issuer.key and issuer.crt leaves behind.
        fs::write(tmp.path().join(GENERATION_MARKER), "").unwrap();
        fs::write(&paths.issuer_key, "-----BEGIN PRIVATE KEY-----\n").unwrap();
        fs::write(tmp.path().join(".issuer.crt.tmp-99999"), "-----BEGIN CERT").unwrap();
        let (_, origin) = load_or_generate(&paths, &options(), now(), &mut rng()).unwrap();
        assert_eq!(origin, Origin::Generated);
        let mut names: Vec<String> = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["ca.crt", "issuer.crt", "issuer.key"]);
        load(&paths, now()).unwrap();
    }

    #[test]
    fn invalid_set_names_the_file_and_is_left_untouched() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = CredentialPaths::in_dir(tmp.path());
        load_or_generate(&paths, &options(), now(), &mut rng()).unwrap();
        let other = tempfile::tempdir().unwrap();
        let other_paths = CredentialPaths::in_dir(other.path());
        load_or_generate(&other_paths, &options(), now(), &mut rng()).unwrap();
        fs::copy(&other_paths.issuer_key, &paths.issuer_key).unwrap();
        let before: Vec<Vec<u8>> = [
            &paths.trust_anchors,
            &paths.issuer_certificate,
            &paths.issuer_key,
        ]
        .iter()
        .map(|p| fs::read(p).unwrap())
        .collect();
        let err = load_or_generate(&paths, &options(), now(), &mut rng()).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("issuer.key") && message.contains("does not match"),
            "{message}"
        );
        let after: Vec<Vec<u8>> = [
            &paths.trust_anchors,
            &paths.issuer_certificate,
            &paths.issuer_key,
        ]
        .iter()
        .map(|p| fs::read(p).unwrap())
        .collect();
        assert_eq!(before, after);
    }

    #[test]
    fn absolute_filenames_are_used_as_given() {
        let tmp = tempfile::tempdir().unwrap();
        let elsewhere = tmp.path().join("elsewhere.crt");
        let paths = CredentialPaths::new(
            &tmp.path().join("dir"),
            elsewhere.to_str().unwrap(),
            "issuer.crt",
            "issuer.key",
        );
        assert_eq!(paths.trust_anchors, elsewhere);
        assert_eq!(paths.directories().len(), 2);
    }
}

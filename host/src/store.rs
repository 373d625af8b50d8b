//! The self-hosted credential store: `ca.crt`, `issuer.crt` and `issuer.key` in
//! `--issuer-credentials`, as Sentry keeps them.
//!
//! Rules (spec §4): when any of the three files is missing the CA is generated and all three are
//! written; when all exist they are loaded and validated, and any problem is fatal and leaves the
//! files untouched. Generation must never leave a set that *looks* complete but is not, so the
//! trust-anchor file is removed first and written last: after a crash at any point either some
//! file is missing (and the next start regenerates) or the whole new set is in place.

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

use crate::fsutil::{self, WriteError};
use crate::native::{NativeKey, NativeVerifier};

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
}

/// Whether the credentials were found or had to be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// All three files existed and were valid.
    Loaded,
    /// At least one file was missing; a new CA was generated and written.
    Generated,
}

/// What a generated CA looks like.
#[derive(Clone, Debug)]
pub struct GenerateOptions {
    /// `--trust-domain`: the root's `O=` and the issuer's SPIFFE subject.
    pub trust_domain: TrustDomain,
    /// Sentry's namespace (env `NAMESPACE`).
    pub namespace: String,
    /// Backdating of both certificates.
    pub clock_skew: std::time::Duration,
}

/// Loads the credential set, or generates and stores one when any file is missing.
pub fn load_or_generate<R: CryptoRng + ?Sized>(
    paths: &CredentialPaths,
    options: &GenerateOptions,
    now: UnixTime,
    rng: &mut R,
) -> Result<(CaBundle, Origin), StoreError> {
    match read_all(paths)? {
        Some(files) => Ok((validate(paths, &files, now)?, Origin::Loaded)),
        None => {
            generate(paths, options, now, rng)?;
            // Re-read what was written: the live bundle is then exactly what a restart loads,
            // and the issuer key is the native (fast) one.
            let files = read_all(paths)?.ok_or_else(|| StoreError::Read {
                path: paths.trust_anchors.clone(),
                source: io::Error::new(io::ErrorKind::NotFound, "vanished right after writing"),
            })?;
            Ok((validate(paths, &files, now)?, Origin::Generated))
        }
    }
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
        fsutil::create_private_dir(&dir)?;
    }
    remove_if_present(&paths.trust_anchors)?;
    // A start killed while writing (kill -9, power loss) may have left temporary files.
    for file in [
        &paths.trust_anchors,
        &paths.issuer_certificate,
        &paths.issuer_key,
    ] {
        fsutil::remove_stale_temp_files(file);
    }
    fsutil::write_files_atomically(&[
        (&paths.issuer_key, files.issuer_key.as_bytes()),
        (
            &paths.issuer_certificate,
            files.issuer_certificate.as_bytes(),
        ),
        (&paths.trust_anchors, files.trust_anchors.as_bytes()),
    ])?;
    Ok(())
}

fn remove_if_present(path: &Path) -> Result<(), StoreError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(StoreError::Read {
            path: path.to_path_buf(),
            source: e,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::time::{Duration, SystemTime};

    fn now() -> UnixTime {
        UnixTime::from_duration(
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap(),
        )
    }

    fn options() -> GenerateOptions {
        GenerateOptions {
            trust_domain: TrustDomain::new("localhost").unwrap(),
            namespace: "default".into(),
            clock_skew: Duration::from_secs(900),
        }
    }

    fn rng() -> rand_core::UnwrapErr<getrandom::SysRng> {
        rand_core::UnwrapErr(getrandom::SysRng)
    }

    fn default_paths(dir: &Path) -> CredentialPaths {
        CredentialPaths::new(dir, "ca.crt", "issuer.crt", "issuer.key")
    }

    #[test]
    fn generates_once_then_loads_the_same_root() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("creds");
        let paths = default_paths(&dir);
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

    #[test]
    fn one_missing_file_regenerates_all_three() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = default_paths(tmp.path());
        load_or_generate(&paths, &options(), now(), &mut rng()).unwrap();
        let old_root = fs::read(&paths.trust_anchors).unwrap();
        fs::remove_file(&paths.issuer_key).unwrap();
        let (_, origin) = load_or_generate(&paths, &options(), now(), &mut rng()).unwrap();
        assert_eq!(origin, Origin::Generated);
        assert_ne!(fs::read(&paths.trust_anchors).unwrap(), old_root);
    }

    #[test]
    fn generation_after_a_killed_start_removes_its_temporary_files() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = default_paths(tmp.path());
        // What a start killed between writing issuer.key and issuer.crt leaves behind.
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
        let paths = default_paths(tmp.path());
        load_or_generate(&paths, &options(), now(), &mut rng()).unwrap();
        let other = tempfile::tempdir().unwrap();
        let other_paths = default_paths(other.path());
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

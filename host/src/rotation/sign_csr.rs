//! `warden issuer sign-csr`: an issuer certificate for a key that lives elsewhere (an edge
//! device's, made on the device and never leaving it), signed by the root in the HSM or in a
//! key file. `warden edge provision` signs the device's CSR with the same code ([`IssuerRoot`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use warden_core::UnixTime;
use warden_core::bundle::{
    certificates_to_pem, create_issuer, encode_certificates, key_matches, parse_certificates,
    read_certificates,
};
use warden_core::chain::verify_chain;
use warden_core::crypto::CaSigner;
use warden_core::csr::{MAX_CSR_LEN, parse_and_verify};
use warden_core::profile::{DEFAULT_CLOCK_SKEW, Validity};
use warden_core::spiffe::SpiffeId;
use x509_cert::Certificate;

use crate::native::NativeVerifier;
use crate::observability::SCOPE_CA;
use crate::rotation::issuer::{CsrIssuerError, RootKeyArgs, RotationError, root_trust_domain};
use crate::util::files;

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// `warden issuer sign-csr`
#[derive(Debug, Args)]
pub(crate) struct SignCsrArgs {
    /// The issuer's CSR (PEM CERTIFICATE REQUEST, or DER), for example from
    /// `warden edge provision`'s device.
    #[arg(long, value_name = "FILE")]
    csr: PathBuf,
    /// Where the issuer certificate (PEM) is written, atomically, mode 0644.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Replace --out if it exists.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    root: IssuerRootArgs,
}

/// The root that signs an issuer CSR, and the new issuer's lifetime and SPIFFE ID: the flags of
/// `warden issuer sign-csr` and `warden edge provision`.
#[derive(Clone, Debug, Args)]
pub(crate) struct IssuerRootArgs {
    /// The credential directory whose ca.crt holds the root certificate (the certificate there
    /// made by the root key; during a root rotation ca.crt holds old and new roots).
    #[arg(long, value_name = "DIR")]
    pub issuer_credentials: PathBuf,
    #[command(flatten)]
    pub key: RootKeyArgs,
    /// Issuer lifetime in days (capped at the root's NotAfter).
    #[arg(long, value_name = "DAYS", default_value_t = 365)]
    pub valid_until: u64,
    /// Issuer lifetime in seconds (tests and drills; overrides --valid-until).
    #[arg(long, value_name = "SECONDS", hide = true)]
    pub valid_for_secs: Option<u64>,
    /// Sentry's namespace: the issuer's SPIFFE ID is
    /// spiffe://<the root's trust domain>/ns/<NAMESPACE>/dapr-sentry.
    #[arg(long, env = "NAMESPACE", default_value = "default")]
    pub namespace: String,
}

/// The root, loaded and checked, ready to sign issuer CSRs.
pub(crate) struct IssuerRoot {
    key: Box<dyn CaSigner>,
    ca_file: PathBuf,
    /// `ca.crt` as read: the trust anchors to hand out with the issuer.
    anchors_pem: Vec<u8>,
    /// The certificate in `ca.crt` made by `key`.
    root: Certificate,
    sentry_id: SpiffeId,
    lifetime: Duration,
}

impl std::fmt::Debug for IssuerRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuerRoot")
            .field("ca_file", &self.ca_file)
            .field("sentry_id", &self.sentry_id)
            .finish_non_exhaustive()
    }
}

/// An issuer certificate made by [`IssuerRoot::sign_csr`].
#[derive(Clone, Debug)]
pub(crate) struct SignedIssuer {
    /// The certificate, PEM.
    pub certificate_pem: String,
    /// Its validity.
    pub validity: Validity,
    /// Its SPIFFE ID (subject `O=`).
    pub sentry_id: SpiffeId,
}

impl IssuerRootArgs {
    /// Reads `ca.crt`, opens the root key (logging in to the HSM) and finds the root
    /// certificate made by it. Everything that can be checked without the key is checked first.
    pub(crate) fn load(&self) -> Result<IssuerRoot, RotationError> {
        let lifetime = match self.valid_for_secs {
            Some(0) => {
                return Err(RotationError::ZeroLifetime);
            }
            Some(secs) => Duration::from_secs(secs),
            None => u32::try_from(self.valid_until)
                .ok()
                .filter(|d| *d > 0)
                .map(|d| DAY * d)
                .ok_or(RotationError::InvalidValidUntil {
                    days: self.valid_until,
                })?,
        };
        let ca_file = self.issuer_credentials.join("ca.crt");
        let anchors_pem = std::fs::read(&ca_file).map_err(|source| RotationError::Read {
            path: ca_file.clone(),
            source,
        })?;
        let anchors =
            parse_certificates(&anchors_pem).map_err(|source| RotationError::Certificates {
                path: ca_file.clone(),
                source,
            })?;
        let key = self.key.signer()?;
        let public = key.public_key();
        let root = anchors
            .iter()
            .find(|anchor| key_matches(anchor, &public))
            .cloned()
            .ok_or_else(|| RotationError::RootNotInCa {
                ca: ca_file.clone(),
            })?;
        let trust_domain = root_trust_domain(&anchors, key.as_ref()).ok_or_else(|| {
            RotationError::RootWithoutTrustDomain {
                ca: ca_file.clone(),
            }
        })?;
        let sentry_id = SpiffeId::sentry(&trust_domain, &self.namespace).map_err(|source| {
            RotationError::InvalidName {
                flag: "--namespace",
                value: self.namespace.clone(),
                source,
            }
        })?;
        Ok(IssuerRoot {
            key,
            ca_file,
            anchors_pem,
            root,
            sentry_id,
            lifetime,
        })
    }
}

impl IssuerRoot {
    /// `ca.crt` as read: every trust anchor, for a device to verify its issuer against.
    pub(crate) fn anchors_pem(&self) -> &[u8] {
        &self.anchors_pem
    }

    /// Verifies `csr` (named `source` in errors) and makes an issuer certificate for its key
    /// with the issuer profile (CA, pathlen 0, Sentry's SPIFFE ID, NotAfter capped at the
    /// root's), then checks that it verifies under the root at `now`.
    pub(crate) fn sign_csr(
        &self,
        csr: &[u8],
        source: &str,
        now: UnixTime,
    ) -> Result<SignedIssuer, RotationError> {
        // Every key type the server accepts in a workload CSR is one the issuer profile can
        // certify and the host can sign with; the device makes P-256.
        let verified = parse_and_verify(csr, &NativeVerifier).map_err(|e| RotationError::Csr {
            input: source.to_owned(),
            source: e,
        })?;
        let issue_err = |reason: CsrIssuerError| RotationError::CsrIssuer {
            input: source.to_owned(),
            reason,
        };
        let issuer = create_issuer(
            self.key.as_ref(),
            &self.root,
            verified.public_key.clone(),
            &self.sentry_id,
            Validity::backdated(now, DEFAULT_CLOCK_SKEW, self.lifetime),
            &mut crate::util::clock::rng(),
        )
        .map_err(|e| issue_err(e.into()))?;
        if !key_matches(&issuer, &verified.public_key) {
            return Err(issue_err(CsrIssuerError::KeyNotCarried));
        }
        // An HSM that signed with another key, or a root already expired, shows here.
        let ders = encode_certificates(&[issuer.clone(), self.root.clone()])
            .map_err(|e| issue_err(e.into()))?;
        let refs = read_certificates(&ders).map_err(|e| issue_err(e.into()))?;
        if let [issuer_ref, root_ref] = refs.as_slice() {
            verify_chain(
                std::slice::from_ref(issuer_ref),
                std::slice::from_ref(root_ref),
                now,
                &NativeVerifier,
            )
            .map_err(|source| {
                issue_err(CsrIssuerError::NotUnderRoot {
                    ca: self.ca_file.clone(),
                    source,
                })
            })?;
        }
        Ok(SignedIssuer {
            certificate_pem: certificates_to_pem([&issuer]).map_err(|e| issue_err(e.into()))?,
            validity: Validity::of(&issuer),
            sentry_id: self.sentry_id.clone(),
        })
    }
}

/// Reads a CSR file, never more than a CSR can be (`/dev/zero` is refused, not read forever).
pub(crate) fn read_csr_file(path: &Path) -> Result<Vec<u8>, RotationError> {
    files::read_at_most(path, MAX_CSR_LEN).map_err(|source| RotationError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// `warden issuer sign-csr`.
pub(crate) fn run(args: SignCsrArgs) -> Result<(), RotationError> {
    let out_exists = std::fs::symlink_metadata(&args.out).is_ok();
    if out_exists && !args.force {
        return Err(RotationError::OutputExists {
            flag: Some("--out"),
            path: args.out.clone(),
        });
    }
    let csr = read_csr_file(&args.csr)?;
    let root = args.root.load()?;
    let signed = root.sign_csr(
        &csr,
        &format!("--csr {}", args.csr.display()),
        crate::util::clock::now(),
    )?;
    files::write_public_file_atomically(&args.out, signed.certificate_pem.as_bytes(), args.force)?;
    tracing::info!(target: SCOPE_CA,
        "Issuer certificate for {} written to {} ({}, valid until {})",
        args.csr.display(), args.out.display(), signed.sentry_id, signed.validity.not_after);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::native::NativeKey;
    use warden_core::bundle::{CaBundle, create_root};
    use warden_core::crypto::KeyAlgorithm;
    use warden_core::csr::{CsrError, CsrTemplate, create_csr, csr_to_pem};
    use warden_core::spiffe::TrustDomain;

    /// A root (key file + ca.crt, 30 days) and a device key with its CSR, in a temporary dir.
    struct Setup {
        dir: tempfile::TempDir,
        device_key: NativeKey,
        csr_der: Vec<u8>,
    }

    impl Setup {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let root_key = NativeKey::generate(KeyAlgorithm::P256).unwrap();
            let root = create_root(
                &root_key,
                &TrustDomain::new("edge.example").unwrap(),
                Validity::backdated(
                    crate::util::clock::now(),
                    DEFAULT_CLOCK_SKEW,
                    Duration::from_secs(30 * 86_400),
                ),
                &mut crate::util::clock::rng(),
            )
            .unwrap();
            std::fs::write(
                dir.path().join("ca.crt"),
                certificates_to_pem([&root]).unwrap(),
            )
            .unwrap();
            std::fs::write(
                dir.path().join("root.key"),
                root_key.to_pkcs8_pem().unwrap().as_bytes(),
            )
            .unwrap();
            let device_key = NativeKey::generate(KeyAlgorithm::P256).unwrap();
            let csr_der = create_csr(&device_key, &CsrTemplate::default()).unwrap();
            let csr = csr_to_pem(&csr_der).unwrap();
            std::fs::write(dir.path().join("device.csr"), csr).unwrap();
            Self {
                dir,
                device_key,
                csr_der,
            }
        }

        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }

        fn args(&self, csr: &str, out: &str) -> SignCsrArgs {
            SignCsrArgs {
                csr: self.path(csr),
                out: self.path(out),
                force: false,
                root: IssuerRootArgs {
                    issuer_credentials: self.dir.path().to_path_buf(),
                    key: RootKeyArgs {
                        root_key: Some(self.path("root.key")),
                        ..RootKeyArgs::default()
                    },
                    valid_until: 365,
                    valid_for_secs: None,
                    namespace: "edge".to_owned(),
                },
            }
        }
    }

    #[test]
    fn signs_a_device_csr_with_a_root_key_file_into_an_issuer_the_device_can_serve_with() {
        let setup = Setup::new();
        run(setup.args("device.csr", "issuer.crt")).unwrap();
        let out = setup.path("issuer.crt");
        let issuer = parse_certificates(&std::fs::read(&out).unwrap()).unwrap();
        assert_eq!(issuer.len(), 1);
        assert!(key_matches(&issuer[0], &setup.device_key.public_key()));
        let anchors = parse_certificates(&std::fs::read(setup.path("ca.crt")).unwrap()).unwrap();
        // Capped at the root's NotAfter (30 days) although 365 days were asked for.
        assert_eq!(
            Validity::of(&issuer[0]).not_after,
            Validity::of(&anchors[0]).not_after
        );
        let subject = issuer[0].tbs_certificate().subject().to_string();
        assert_eq!(subject, "O=spiffe://edge.example/ns/edge/dapr-sentry");
        // What the device does with it on INSTALL_ISSUER: a bundle for its own key.
        CaBundle::from_parts(
            anchors,
            issuer,
            Box::new(setup.device_key),
            crate::util::clock::now(),
            &NativeVerifier,
        )
        .unwrap();
    }

    #[test]
    fn refuses_bad_input_with_the_flag_or_file_named_and_writes_nothing() {
        let setup = Setup::new();
        std::fs::write(
            setup.path("garbage.csr"),
            "-----BEGIN CERTIFICATE REQUEST-----\n",
        )
        .unwrap();
        let mut bad = setup.csr_der.clone();
        *bad.last_mut().unwrap() ^= 1;
        std::fs::write(setup.path("bad.csr"), bad).unwrap();
        std::fs::write(setup.path("taken.crt"), "keep me").unwrap();
        let other = NativeKey::generate(KeyAlgorithm::P256).unwrap();
        std::fs::write(
            setup.path("other.key"),
            other.to_pkcs8_pem().unwrap().as_bytes(),
        )
        .unwrap();
        let before: Vec<_> = std::fs::read_dir(setup.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();

        let err = |args: SignCsrArgs| run(args).unwrap_err();
        // Each refusal is its own variant, and its message names the flag or the file.
        let e = err(setup.args("garbage.csr", "out.crt"));
        assert!(
            matches!(&e, RotationError::Csr { input, source: CsrError::Pem(_) }
                if input.starts_with("--csr ") && input.ends_with("garbage.csr")),
            "{e}"
        );
        assert!(e.to_string().contains("garbage.csr: CSR PEM"), "{e}");
        let e = err(setup.args("bad.csr", "out.crt"));
        assert!(
            matches!(
                &e,
                RotationError::Csr {
                    source: CsrError::InvalidSignature(_),
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("bad.csr: CSR signature"), "{e}");
        let e = err(setup.args("device.csr", "taken.crt"));
        assert!(
            matches!(&e, RotationError::OutputExists { flag: Some("--out"), path }
                if *path == setup.path("taken.crt")),
            "{e}"
        );
        assert!(e.to_string().contains("--force"), "{e}");
        assert_eq!(std::fs::read(setup.path("taken.crt")).unwrap(), b"keep me");
        let mut wrong_root = setup.args("device.csr", "out.crt");
        wrong_root.root.key.root_key = Some(setup.path("other.key"));
        let e = err(wrong_root);
        assert!(
            matches!(&e, RotationError::RootNotInCa { ca } if *ca == setup.path("ca.crt")),
            "{e}"
        );
        let mut no_root = setup.args("device.csr", "out.crt");
        no_root.root.issuer_credentials = setup.path("nowhere");
        let e = err(no_root);
        assert!(
            matches!(&e, RotationError::Read { path, .. } if path.ends_with("nowhere/ca.crt")),
            "{e}"
        );
        let mut no_days = setup.args("device.csr", "out.crt");
        no_days.root.valid_until = 0;
        let e = err(no_days);
        assert!(
            matches!(e, RotationError::InvalidValidUntil { days: 0 }),
            "{e}"
        );
        let after: Vec<_> = std::fs::read_dir(setup.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(before, after);

        let mut forced = setup.args("device.csr", "taken.crt");
        forced.force = true;
        run(forced).unwrap();
        assert!(
            std::fs::read(setup.path("taken.crt"))
                .unwrap()
                .starts_with(b"-----BEGIN CERTIFICATE-----")
        );
    }
}

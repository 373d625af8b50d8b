//! Helpers shared by the integration tests: OS randomness, the clock, running external
//! verifiers (openssl, python3), temporary files, test data, and a throwaway CA.

use std::borrow::BorrowMut;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use getrandom::SysRng;
use rand_core::UnwrapErr;
use warden_core::UnixTime;
use warden_core::bundle::{
    CaBundle, CaParams, CredentialFiles, IssuedSvid, WorkloadRequest, certificates_to_pem,
    parse_certificates,
};
use warden_core::crypto::{KeyAlgorithm, KeyType, RustCryptoVerifier};
use warden_core::csr::{self, VerifiedCsr};
use warden_core::profile::{DEFAULT_CA_TTL, DEFAULT_CLOCK_SKEW, DEFAULT_WORKLOAD_TTL};
use warden_core::spiffe::{SpiffeId, TrustDomain};
use x509_cert::Certificate;

/// The trust domain test CAs are made for (Sentry's `--trust-domain` in Kubernetes).
pub const CA_TRUST_DOMAIN: &str = "cluster.local";
/// Sentry's namespace, which goes into the issuer subject.
pub const SENTRY_NAMESPACE: &str = "dapr-system";
/// The trust domain of workload IDs (Sentry's default for requests without one).
pub const WORKLOAD_TRUST_DOMAIN: &str = "public";

/// What to tell someone whose machine lacks an external verifier.
pub const INSTALL_HINT: &str =
    "run scripts/test.sh, which installs the external verifiers (openssl, python3-cryptography)";

/// OS randomness, as the `warden` host passes it to core.
pub fn rng() -> UnwrapErr<SysRng> {
    UnwrapErr(SysRng)
}

/// The system clock as core's time type.
pub fn now() -> UnixTime {
    UnixTime::from_duration(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("the system clock is after 1970"),
    )
}

/// What a finished command printed.
#[derive(Debug)]
pub struct CmdOutput {
    /// Whether it exited with status 0.
    pub success: bool,
    /// The exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    /// Standard output, lossily decoded.
    pub stdout: String,
    /// Standard error, lossily decoded.
    pub stderr: String,
}

impl CmdOutput {
    /// Standard output then standard error (openssl splits its messages between them).
    pub fn combined(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// The command line, for messages.
pub fn describe(cmd: &Command) -> String {
    let mut out = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        let _ = write!(out, " {}", arg.to_string_lossy());
    }
    if let Some(dir) = cmd.get_current_dir() {
        let _ = write!(out, "   (in {})", dir.display());
    }
    out
}

/// Runs `cmd` (owned or `&mut`) to completion whatever its exit status. Panics only when the program cannot be
/// started, naming the program and how to install it.
pub fn try_run(mut cmd: impl BorrowMut<Command>) -> CmdOutput {
    let cmd = cmd.borrow_mut();
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("could not start `{}`: {e}; {INSTALL_HINT}", describe(cmd)));
    CmdOutput {
        success: output.status.success(),
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs `cmd` and panics, showing its stderr and stdout, unless it exits with status 0.
pub fn run(mut cmd: impl BorrowMut<Command>) -> CmdOutput {
    let cmd = cmd.borrow_mut();
    let out = try_run(&mut *cmd);
    assert!(
        out.success,
        "`{}` failed with exit code {:?}\n--- stderr ---\n{}\n--- stdout ---\n{}",
        describe(cmd),
        out.code,
        out.stderr,
        out.stdout
    );
    out
}

/// An `openssl` (from `PATH`) command running in `dir` with `args`.
pub fn openssl<I, S>(dir: &Path, args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new("openssl");
    cmd.current_dir(dir).args(args);
    cmd
}

/// A fresh temporary directory, removed when dropped.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("warden-interop-")
        .tempdir()
        .expect("create a temporary directory")
}

/// Writes `contents` to `dir/name` and returns the path.
pub fn write_file(dir: &Path, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}

/// Reads a file, panicking with its path on failure.
pub fn read_file(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// A path under `tests/data`.
pub fn data_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data")
        .join(relative)
}

/// Parses and verifies a CSR with core, panicking with the reason if it is refused.
pub fn verified_csr(what: &str, input: &[u8]) -> VerifiedCsr {
    csr::parse_and_verify(input, &RustCryptoVerifier)
        .unwrap_or_else(|e| panic!("core refused the CSR {what}: {e} ({e:?})"))
}

/// One of the Go-made daprd-shaped CSRs in `tests/data/go-csr`, as the PEM text daprd sends.
pub fn go_csr_pem(file: &str) -> Vec<u8> {
    read_file(&data_path(&format!("go-csr/{file}")))
}

/// One of the Go-made daprd-shaped CSRs in `tests/data/go-csr`, verified by core.
pub fn verified_go_csr(file: &str) -> VerifiedCsr {
    let path = data_path(&format!("go-csr/{file}"));
    verified_csr(&path.display().to_string(), &read_file(&path))
}

/// `spiffe://public/ns/<namespace>/<app>`.
pub fn workload_id(namespace: &str, app: &str) -> SpiffeId {
    let td = TrustDomain::new(WORKLOAD_TRUST_DOMAIN).expect("valid trust domain");
    SpiffeId::workload(&td, namespace, app).expect("valid workload SPIFFE ID")
}

/// One certificate as PEM.
pub fn certificate_pem(cert: &Certificate) -> String {
    certificates_to_pem([cert]).expect("encode certificate as PEM")
}

/// Every certificate in PEM text.
pub fn parse_chain(pem: &str) -> Vec<Certificate> {
    parse_certificates(pem.as_bytes()).expect("parse PEM certificates")
}

/// Core's `verify_svid` for a PEM chain (leaf first) against x509-cert anchors.
pub fn verify_svid_pem(
    chain_pem: &str,
    anchors: &[Certificate],
    at: UnixTime,
) -> Result<SpiffeId, warden_core::chain::SvidError> {
    let chain_der =
        warden_core::bundle::certificate_ders(chain_pem.as_bytes()).expect("PEM certificates");
    let chain = warden_core::bundle::read_certificates(&chain_der).expect("DER certificates");
    let anchors_der = warden_core::bundle::encode_certificates(anchors).expect("encode anchors");
    let anchors = warden_core::bundle::read_certificates(&anchors_der).expect("DER anchors");
    warden_core::chain::verify_svid(&chain, &anchors, at, &RustCryptoVerifier)
}

/// Issues a workload SVID from `bundle` at `at` with Sentry's default TTL and skew.
pub fn issue_leaf(
    bundle: &CaBundle,
    public_key: &spki::SubjectPublicKeyInfoOwned,
    spiffe_id: &SpiffeId,
    dns_names: &[String],
    at: UnixTime,
) -> IssuedSvid {
    bundle
        .issue_workload(
            &WorkloadRequest {
                public_key,
                spiffe_id,
                dns_names,
                ttl: DEFAULT_WORKLOAD_TTL,
                clock_skew: DEFAULT_CLOCK_SKEW,
            },
            at,
            &mut rng(),
        )
        .unwrap_or_else(|e| panic!("issue a workload SVID for {spiffe_id}: {e}"))
}

/// A freshly generated root + issuer, as Sentry makes on first start.
#[derive(Debug)]
pub struct TestCa {
    /// The loaded bundle.
    pub bundle: CaBundle,
    /// `ca.crt`, `issuer.crt`, `issuer.key` as Sentry would store them.
    pub files: CredentialFiles,
    /// The instant it was generated at.
    pub created: UnixTime,
}

/// Where [`TestCa::write`] put the files.
#[derive(Debug)]
pub struct CaPaths {
    /// `ca.crt`.
    pub trust_anchors: PathBuf,
    /// `issuer.crt`.
    pub issuer_certificate: PathBuf,
}

impl TestCa {
    /// A CA for [`CA_TRUST_DOMAIN`] with `algorithm` keys, made now.
    pub fn generate(algorithm: KeyAlgorithm) -> Self {
        Self::generate_for(CA_TRUST_DOMAIN, algorithm)
    }

    /// A CA for `trust_domain` with `algorithm` keys, made now.
    pub fn generate_for(trust_domain: &str, algorithm: KeyAlgorithm) -> Self {
        let td = TrustDomain::new(trust_domain).expect("valid trust domain");
        let created = now();
        let params = CaParams {
            trust_domain: &td,
            namespace: SENTRY_NAMESPACE,
            key_algorithm: algorithm,
            lifetime: DEFAULT_CA_TTL,
            clock_skew: DEFAULT_CLOCK_SKEW,
        };
        let (bundle, files) = CaBundle::generate(&params, created, &mut rng())
            .unwrap_or_else(|e| panic!("generate a {algorithm:?} CA: {e}"));
        Self {
            bundle,
            files,
            created,
        }
    }

    /// Issues a workload SVID for `public_key` now.
    pub fn issue(
        &self,
        public_key: &spki::SubjectPublicKeyInfoOwned,
        spiffe_id: &SpiffeId,
        dns_names: &[String],
    ) -> IssuedSvid {
        issue_leaf(&self.bundle, public_key, spiffe_id, dns_names, now())
    }

    /// Writes `ca.crt` and `issuer.crt` (never the key) into `dir` under `prefix`.
    pub fn write(&self, dir: &Path, prefix: &str) -> CaPaths {
        CaPaths {
            trust_anchors: write_file(dir, &format!("{prefix}ca.crt"), &self.files.trust_anchors),
            issuer_certificate: write_file(
                dir,
                &format!("{prefix}issuer.crt"),
                &self.files.issuer_certificate,
            ),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// openssl-made keys and CSRs, `openssl verify`, and the Dapr docs' OpenSSL "bring your own
// certificates" recipe (shared by the `interop::openssl` and `server` tests).

/// A key type openssl makes with `genpkey`, and what core must classify it as.
#[derive(Debug)]
pub struct OpensslKey {
    /// The short name tests and file names use (`p256`, `ed25519`, ...).
    pub name: &'static str,
    /// The `openssl genpkey` arguments that make it.
    pub genpkey: &'static [&'static str],
    /// What core must classify the key as.
    pub expected: KeyType,
}

/// The key types daprd may send, as openssl makes them: P-256, P-384, Ed25519 and RSA 2048.
pub const OPENSSL_KEYS: [OpensslKey; 4] = [
    OpensslKey {
        name: "p256",
        genpkey: &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        expected: KeyType::EcdsaP256,
    },
    OpensslKey {
        name: "p384",
        genpkey: &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
        expected: KeyType::EcdsaP384,
    },
    OpensslKey {
        name: "ed25519",
        genpkey: &["-algorithm", "ED25519"],
        expected: KeyType::Ed25519,
    },
    OpensslKey {
        name: "rsa2048",
        genpkey: &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        expected: KeyType::Rsa { bits: 2048 },
    },
];

/// A key and an empty-subject CSR made by openssl.
#[derive(Debug)]
pub struct OpensslCsr {
    /// `<name>.key`, PKCS#8 PEM.
    pub key_file: String,
    /// The CSR as PEM.
    pub pem: Vec<u8>,
    /// The CSR as DER.
    pub der: Vec<u8>,
    /// The key's SubjectPublicKeyInfo DER as openssl prints it.
    pub spki_der: Vec<u8>,
}

/// The `OPENSSL_KEYS` entry called `name`.
pub fn openssl_key(name: &str) -> &'static OpensslKey {
    OPENSSL_KEYS
        .iter()
        .find(|key| key.name == name)
        .unwrap_or_else(|| panic!("no openssl key type {name}"))
}

/// A fresh `key` made by `openssl genpkey` into `dir/file` (PKCS#8 PEM).
pub fn openssl_genpkey(dir: &Path, key: &OpensslKey, file: &str) {
    run(openssl(dir, ["genpkey", "-out", file]).args(key.genpkey));
}

/// A fresh `key` and an empty-subject CSR for it, made by openssl in `dir` (as PEM and DER),
/// with the key's SubjectPublicKeyInfo as openssl prints it.
pub fn openssl_csr(dir: &Path, key: &OpensslKey) -> OpensslCsr {
    let key_file = format!("{}.key", key.name);
    let pem_file = format!("{}.csr.pem", key.name);
    let der_file = format!("{}.csr.der", key.name);
    let spki_file = format!("{}.spki.der", key.name);
    openssl_genpkey(dir, key, &key_file);
    run(openssl(
        dir,
        [
            "req", "-new", "-key", &key_file, "-subj", "/", "-out", &pem_file,
        ],
    ));
    run(openssl(
        dir,
        [
            "req", "-in", &pem_file, "-outform", "DER", "-out", &der_file,
        ],
    ));
    run(openssl(
        dir,
        [
            "pkey", "-in", &key_file, "-pubout", "-outform", "DER", "-out", &spki_file,
        ],
    ));
    OpensslCsr {
        key_file,
        pem: read_file(&dir.join(pem_file)),
        der: read_file(&dir.join(der_file)),
        spki_der: read_file(&dir.join(spki_file)),
    }
}

/// `openssl verify -x509_strict -CAfile <ca> -untrusted <issuer> -purpose <purpose> <leaf>` for
/// both `sslclient` and `sslserver`; panics unless openssl prints `<leaf>: OK` each time.
pub fn openssl_verify_ok(dir: &Path, ca: &str, untrusted: &str, leaf: &str) {
    for purpose in ["sslclient", "sslserver"] {
        let out = run(openssl(
            dir,
            [
                "verify",
                "-x509_strict",
                "-CAfile",
                ca,
                "-untrusted",
                untrusted,
                "-purpose",
                purpose,
                leaf,
            ],
        ));
        assert_eq!(
            out.stdout.trim(),
            format!("{leaf}: OK"),
            "openssl verify -purpose {purpose} {leaf}: {}",
            out.combined()
        );
    }
}

/// `root.conf` exactly as the docs give it.
pub const SEED_ROOT_CONF: &str = "\
[req]
distinguished_name = req_distinguished_name
x509_extensions = v3_req
prompt = no
[req_distinguished_name]
C = US
ST = VA
L = Daprville
O = dapr.io/sentry
OU = dapr.io/sentry
CN = cluster.local
[v3_req]
basicConstraints = critical, CA:true
keyUsage = critical, digitalSignature, cRLSign, keyCertSign
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = @alt_names
[alt_names]
DNS.1 = cluster.local
";

/// The docs' root commands, verbatim.
pub const SEED_ROOT_COMMANDS: [&str; 3] = [
    "openssl ecparam -genkey -name prime256v1 | openssl ec -out root.key",
    "openssl req -new -nodes -sha256 -key root.key -out root.csr -config root.conf -extensions v3_req",
    "openssl x509 -req -sha256 -days 365 -in root.csr -signkey root.key -outform PEM -out root.pem -extfile root.conf -extensions v3_req",
];

/// The docs' issuer commands, verbatim.
pub const SEED_ISSUER_COMMANDS: [&str; 3] = [
    "openssl ecparam -genkey -name prime256v1 | openssl ec -out issuer.key",
    "openssl req -new -sha256 -key issuer.key -out issuer.csr -config issuer.conf -extensions v3_req",
    "openssl x509 -req -in issuer.csr -CA root.pem -CAkey root.key -CAcreateserial -outform PEM -out issuer.pem -days 365 -sha256 -extfile issuer.conf -extensions v3_req",
];

/// `issuer.conf`: the same content with `pathlen:0` appended to the basicConstraints line.
pub fn seed_issuer_conf() -> String {
    const LINE: &str = "basicConstraints = critical, CA:true\n";
    assert_eq!(SEED_ROOT_CONF.matches(LINE).count(), 1);
    SEED_ROOT_CONF.replace(LINE, "basicConstraints = critical, CA:true, pathlen:0\n")
}

/// Runs the recipe in `dir`, leaving `root.pem`, `root.key`, `issuer.pem`, `issuer.key`.
pub fn run_seed_recipe(dir: &Path) {
    write_file(dir, "root.conf", SEED_ROOT_CONF);
    write_file(dir, "issuer.conf", seed_issuer_conf());
    for line in SEED_ROOT_COMMANDS.iter().chain(&SEED_ISSUER_COMMANDS) {
        // The recipe pipes one openssl into another, so it runs under sh as written.
        let mut cmd = Command::new("sh");
        cmd.current_dir(dir).args(["-c", line]);
        run(&mut cmd);
    }
    // Sanity: the recipe produced the shape the docs describe.
    let issuer_text = run(openssl(
        dir,
        ["x509", "-noout", "-text", "-in", "issuer.pem"],
    ))
    .stdout;
    assert!(
        issuer_text.contains("CA:TRUE, pathlen:0"),
        "recipe issuer lacks pathlen:0: {issuer_text}"
    );
    let root_text = run(openssl(dir, ["x509", "-noout", "-text", "-in", "root.pem"])).stdout;
    assert!(
        root_text.contains("CA:TRUE") && !root_text.contains("pathlen"),
        "recipe root: {root_text}"
    );
}

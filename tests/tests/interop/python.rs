//! Interop with pyca/cryptography's X.509 path validation (`tests/data/verify_svid.py`), a
//! verifier written independently of both RustCrypto and OpenSSL's chain builder.
//!
//! Needs `python3` with `cryptography` >= 43. When either is missing the tests FAIL and say to
//! run `scripts/test.sh`; they never pass silently.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use warden_core::UnixTime;
use warden_core::bundle::IssuedSvid;
use warden_core::crypto::{CaSigner as _, KeyAlgorithm, KeyType, SoftwareKey};
use warden_tests::common;
use warden_tests::common::{
    CmdOutput, INSTALL_HINT, TestCa, certificate_pem, data_path, run, tempdir, try_run,
    verified_go_csr, workload_id, write_file,
};

fn python() -> Command {
    Command::new(std::env::var_os("PYTHON").unwrap_or_else(|| "python3".into()))
}

/// Fails the test, with instructions, unless `python3 -c "import cryptography"` works.
fn require_cryptography() {
    let out = try_run(python().args([
        "-c",
        "import cryptography, cryptography.x509.verification as v; \
         print(cryptography.__version__); v.PolicyBuilder.build_client_verifier",
    ]));
    assert!(
        out.success,
        "python3 cannot use pyca/cryptography's client verifier (needs cryptography >= 43): \
         {}\n{INSTALL_HINT}",
        out.stderr.trim()
    );
}

fn leaf_pem(issued: &IssuedSvid) -> String {
    certificate_pem(&issued.certificate)
}

fn script() -> PathBuf {
    data_path("verify_svid.py")
}

/// How much of the script to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Direct signature checks, then cryptography's path validation.
    Full,
    /// Direct signature checks only (`--signatures-only`).
    SignaturesOnly,
}

/// The message cryptography's verifier gives for a key outside the CA/Browser Forum allow-list
/// (RSA, ECDSA P-256/384/521), which is how releases 43 to 50 treat Ed25519 CA keys.
const FORBIDDEN_KEY: &str = "Forbidden public key algorithm";

/// Writes ca.crt / issuer.crt / leaf.crt (PEM; the script uses its first block) into `dir` and
/// runs the script.
fn verify_with_python(
    dir: &Path,
    trust_anchors: &str,
    issuer_chain: &str,
    leaf: &str,
    at: Option<UnixTime>,
    mode: Mode,
) -> CmdOutput {
    write_file(dir, "ca.crt", trust_anchors);
    write_file(dir, "issuer.crt", issuer_chain);
    write_file(dir, "leaf.crt", leaf);
    let mut cmd = python();
    cmd.current_dir(dir)
        .arg(script())
        .args(["ca.crt", "issuer.crt", "leaf.crt"]);
    if let Some(at) = at {
        cmd.args(["--at", &at.as_secs().to_string()]);
    }
    if mode == Mode::SignaturesOnly {
        cmd.arg("--signatures-only");
    }
    try_run(cmd)
}

/// Leaf keys: daprd's Ed25519 and P-256 CSRs, the injector's RSA CSR (Go-made fixtures), and
/// keys core generates.
fn leaf_keys() -> Vec<(&'static str, spki::SubjectPublicKeyInfoOwned)> {
    let ed = verified_go_csr("csr-ed25519.pem");
    assert_eq!(ed.key_type, KeyType::Ed25519);
    let p256 = verified_go_csr("csr-p256.pem");
    assert_eq!(p256.key_type, KeyType::EcdsaP256);
    let rsa = verified_go_csr("csr-rsa2048.pem");
    assert_eq!(rsa.key_type, KeyType::Rsa { bits: 2048 });
    vec![
        ("ed25519", ed.public_key),
        ("p256", p256.public_key),
        ("rsa2048", rsa.public_key),
        (
            "core-p256",
            SoftwareKey::generate(KeyAlgorithm::P256, &mut common::rng()).public_key(),
        ),
    ]
}

#[test]
fn python_cryptography_verifies_core_chains_and_reads_the_spiffe_id() {
    require_cryptography();
    for ca_algorithm in [KeyAlgorithm::P256, KeyAlgorithm::Ed25519] {
        let ca = TestCa::generate(ca_algorithm);
        for (name, public_key) in leaf_keys() {
            let dir = tempdir();
            let id = workload_id("default", &format!("py-{name}"));
            let dns = vec![format!("py-{name}.default.svc")];
            let issued = ca.issue(&public_key, &id, &dns);
            let out = verify_with_python(
                dir.path(),
                &ca.files.trust_anchors,
                &ca.files.issuer_certificate,
                &leaf_pem(&issued),
                None,
                Mode::Full,
            );
            let expected = format!("spiffe://public/ns/default/py-{name}");
            assert_eq!(expected, id.to_string());
            if ca_algorithm == KeyAlgorithm::Ed25519 && !out.success {
                // cryptography's path policy refuses Ed25519 CA keys (see verify_svid.py); it
                // must be for that reason and no other, and the signatures must still check out.
                assert!(
                    out.stderr.contains(FORBIDDEN_KEY),
                    "cryptography rejects the Ed25519 CA / {name} leaf chain for another reason: {}",
                    out.stderr.trim()
                );
                let direct = verify_with_python(
                    dir.path(),
                    &ca.files.trust_anchors,
                    &ca.files.issuer_certificate,
                    &leaf_pem(&issued),
                    None,
                    Mode::SignaturesOnly,
                );
                assert!(
                    direct.success,
                    "cryptography rejects the Ed25519 signatures of the {name} chain: {}",
                    direct.stderr.trim()
                );
                assert_eq!(direct.stdout.trim(), expected, "Ed25519/{name}");
                continue;
            }
            assert!(
                out.success,
                "cryptography rejects the {ca_algorithm:?} CA / {name} leaf chain: {}",
                out.stderr.trim()
            );
            assert_eq!(out.stdout.trim(), expected, "{ca_algorithm:?}/{name}");
        }
    }
}

#[test]
fn python_cryptography_accepts_the_sign_certificate_response_encoding() {
    // What a client gets back: `workload_certificate` (leaf then issuer chain, no root) and
    // `trust_chain_certificates[0]` (every root). Fed to cryptography as they are, they must
    // yield the ID.
    require_cryptography();
    let ca = TestCa::generate(KeyAlgorithm::P256);
    let key = SoftwareKey::generate(KeyAlgorithm::Ed25519, &mut common::rng());
    let id = workload_id("dapr-system", "dapr-operator");
    let issued = ca.issue(&key.public_key(), &id, &[]);
    let response_chain = issued
        .chain_pem
        .strip_prefix(leaf_pem(&issued).as_str())
        .expect("workload_certificate starts with the leaf");
    assert_eq!(response_chain, ca.bundle.issuer_chain_pem());
    let dir = tempdir();
    let out = verify_with_python(
        dir.path(),
        ca.bundle.trust_anchors_pem(),
        response_chain,
        &issued.chain_pem,
        None,
        Mode::Full,
    );
    assert!(out.success, "{}", out.stderr.trim());
    assert_eq!(
        out.stdout.trim(),
        "spiffe://public/ns/dapr-system/dapr-operator"
    );
}

#[test]
fn python_cryptography_rejects_another_cas_anchor() {
    require_cryptography();
    let ca = TestCa::generate(KeyAlgorithm::P256);
    let other = TestCa::generate(KeyAlgorithm::P256);
    let key = SoftwareKey::generate(KeyAlgorithm::P256, &mut common::rng());
    let issued = ca.issue(&key.public_key(), &workload_id("default", "app"), &[]);
    let dir = tempdir();
    let out = verify_with_python(
        dir.path(),
        &other.files.trust_anchors,
        &ca.files.issuer_certificate,
        &leaf_pem(&issued),
        None,
        Mode::Full,
    );
    assert!(
        !out.success,
        "cryptography accepted a chain under the wrong anchor: {}",
        out.stdout
    );
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("no trust anchor directly issued the issuer certificate"),
        "{}",
        out.stderr
    );
    assert!(
        out.stdout.is_empty(),
        "printed an ID anyway: {}",
        out.stdout
    );
}

#[test]
fn python_cryptography_rejects_the_leaf_after_not_after() {
    require_cryptography();
    let ca = TestCa::generate(KeyAlgorithm::P256);
    let key = SoftwareKey::generate(KeyAlgorithm::Ed25519, &mut common::rng());
    let issued = ca.issue(&key.public_key(), &workload_id("default", "app"), &[]);
    let dir = tempdir();
    // Control: at NotAfter itself the chain is valid.
    let at_end = verify_with_python(
        dir.path(),
        &ca.files.trust_anchors,
        &ca.files.issuer_certificate,
        &leaf_pem(&issued),
        Some(issued.validity.not_after),
        Mode::Full,
    );
    assert!(at_end.success, "{}", at_end.stderr.trim());
    let later = issued
        .validity
        .not_after
        .saturating_add(Duration::from_secs(1));
    let out = verify_with_python(
        dir.path(),
        &ca.files.trust_anchors,
        &ca.files.issuer_certificate,
        &leaf_pem(&issued),
        Some(later),
        Mode::Full,
    );
    assert!(!out.success, "expired leaf accepted: {}", out.stdout);
    assert!(
        out.stderr.contains("path validation failed")
            && out.stderr.contains("not valid at validation time"),
        "{}",
        out.stderr
    );
}

#[test]
fn python_script_refuses_bad_usage() {
    // The script itself must be able to fail loudly, not print an ID for anything.
    require_cryptography();
    let out = try_run(python().arg(script()).arg("only-one-argument"));
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    let _ = run(python().arg(script()).arg("--help"));
}

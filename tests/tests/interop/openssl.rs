//! Interop with the `openssl` command line (OpenSSL 3): CSRs in both directions, core-made
//! chains under `openssl verify -x509_strict`, and credentials made with the Dapr docs' OpenSSL
//! "bring your own certificates" recipe loaded by core.
//!
//! Needs `openssl` on `PATH`; without it every test fails and says to
//! run `scripts/test.sh`.

use std::path::Path;

use der::{Decode, Encode};
use warden_core::bundle::{BundleError, CaBundle};
use warden_core::crypto::{CaSigner as _, KeyAlgorithm, KeyType, RustCryptoVerifier, SoftwareKey};
use warden_core::csr::{self, CsrTemplate};
use warden_tests::common;
use warden_tests::common::{
    OPENSSL_KEYS, TestCa, certificate_pem, data_path, issue_leaf, now, openssl, openssl_csr,
    openssl_verify_ok, parse_chain, read_file, run, run_seed_recipe, tempdir, try_run,
    verified_csr, verify_svid_pem, workload_id, write_file,
};
use x509_cert::Certificate;
use x509_cert::request::CertReq;

#[test]
fn openssl_empty_subject_csrs_are_accepted_with_their_key_type() {
    let dir = tempdir();
    for key in &OPENSSL_KEYS {
        let made = openssl_csr(dir.path(), key);
        let request = CertReq::from_der(&made.der).expect("openssl CSR is DER");
        assert!(
            request.info.subject.is_empty(),
            "{}: openssl -subj / must give an empty subject, got {}",
            key.name,
            request.info.subject
        );
        for (form, input) in [("PEM", &made.pem), ("DER", &made.der)] {
            let verified = verified_csr(&format!("{} ({form})", key.name), input);
            assert_eq!(verified.key_type, key.expected, "{} ({form})", key.name);
            assert_eq!(
                verified.public_key.to_der().expect("encode SPKI"),
                made.spki_der,
                "{} ({form}): core returned a different key than openssl's",
                key.name
            );
        }
    }
}

#[test]
fn go_made_daprd_csrs_are_accepted_including_legacy_block_type() {
    let cases = [
        ("csr-ed25519.pem", "CERTIFICATE REQUEST", KeyType::Ed25519),
        ("csr-p256.pem", "CERTIFICATE REQUEST", KeyType::EcdsaP256),
        ("csr-p384.pem", "CERTIFICATE REQUEST", KeyType::EcdsaP384),
        (
            "csr-rsa2048.pem",
            "CERTIFICATE REQUEST",
            KeyType::Rsa { bits: 2048 },
        ),
        (
            "csr-p256-legacy-block-type.pem",
            "CERTIFICATE",
            KeyType::EcdsaP256,
        ),
    ];
    for (file, label, expected) in cases {
        let path = data_path(&format!("go-csr/{file}"));
        let input = read_file(&path);
        let text = String::from_utf8(input.clone()).expect("fixture is text");
        assert!(
            text.starts_with(&format!("-----BEGIN {label}-----\n")),
            "{file}: expected PEM block type {label}"
        );
        let verified = verified_csr(file, &input);
        assert_eq!(verified.key_type, expected, "{file}");
        if label == "CERTIFICATE REQUEST" {
            // An independent opinion that the fixture's self-signature is sound.
            let out = run(openssl(
                Path::new(env!("CARGO_MANIFEST_DIR")),
                ["req", "-verify", "-noout", "-in"],
            )
            .arg(&path));
            assert!(
                out.combined().contains("verify OK"),
                "{file}: openssl req -verify said {}",
                out.combined()
            );
        }
    }
}

#[test]
fn core_csrs_pass_openssl_req_verify_and_show_requested_sans() {
    let dir = tempdir();
    let id = workload_id("default", "csr-app");
    let dns = ["csr-app.default.svc", "localhost"];
    for algorithm in [KeyAlgorithm::P256, KeyAlgorithm::Ed25519] {
        let key = SoftwareKey::generate(algorithm, &mut common::rng());
        for with_sans in [false, true] {
            let template = if with_sans {
                CsrTemplate {
                    spiffe_id: Some(&id),
                    dns_names: &dns,
                }
            } else {
                CsrTemplate::default()
            };
            let der = csr::create_csr(&key, &template).expect("core makes a CSR");
            let pem = csr::csr_to_pem(&der).expect("CSR as PEM");
            let name = format!("core-{algorithm:?}-{with_sans}.csr");
            write_file(dir.path(), &name, &pem);

            let verify = run(openssl(
                dir.path(),
                ["req", "-verify", "-noout", "-in", &name],
            ));
            assert!(
                verify.combined().contains("verify OK"),
                "{name}: openssl req -verify said {}",
                verify.combined()
            );

            let text = run(openssl(
                dir.path(),
                ["req", "-noout", "-text", "-in", &name],
            ))
            .stdout;
            let expected_alg = match algorithm {
                KeyAlgorithm::P256 => "Public Key Algorithm: id-ecPublicKey",
                _ => "Public Key Algorithm: ED25519",
            };
            assert!(text.contains(expected_alg), "{name}: {text}");
            if with_sans {
                assert!(
                    text.contains("X509v3 Subject Alternative Name"),
                    "{name}: {text}"
                );
                assert!(text.contains(&format!("URI:{id}")), "{name}: {text}");
                for d in dns {
                    assert!(text.contains(&format!("DNS:{d}")), "{name}: {text}");
                }
            } else {
                assert!(
                    !text.contains("Subject Alternative Name"),
                    "{name}: the empty template must request no SAN: {text}"
                );
                let request = CertReq::from_der(&der).expect("core CSR is DER");
                assert!(request.info.subject.is_empty(), "{name}: subject not empty");
            }
        }
    }
}

/// daprd's CSRs (Go's `x509.CreateCertificateRequest` with an empty template) carry an empty
/// attribute set, `[0] {}`. Core documents `create_csr`'s default template as producing exactly
/// that, but x509-cert's `RequestBuilder::finalize` always inserts an extensionRequest
/// attribute, even with no extensions, so core's CSR carries `extensionRequest = SEQUENCE {}`,
/// which also breaks `Extensions ::= SEQUENCE SIZE (1..MAX)` (RFC 5280 / PKCS#9).
#[test]
fn core_empty_template_csr_has_no_attributes_like_go() {
    let go = CertReq::from_der(&go_csr_der("csr-ed25519.pem")).expect("Go CSR is DER");
    assert!(go.info.attributes.is_empty(), "Go fixture has attributes");
    for algorithm in [KeyAlgorithm::P256, KeyAlgorithm::Ed25519] {
        let key = SoftwareKey::generate(algorithm, &mut common::rng());
        let der = csr::create_csr(&key, &CsrTemplate::default()).expect("core makes a CSR");
        let request = CertReq::from_der(&der).expect("core CSR is DER");
        assert!(
            request.info.attributes.is_empty(),
            "{algorithm:?}: core's empty-template CSR has {} attribute(s), Go's has none",
            request.info.attributes.len()
        );
    }
}

/// The DER inside one of the Go-made fixtures.
fn go_csr_der(file: &str) -> Vec<u8> {
    let path = data_path(&format!("go-csr/{file}"));
    let dir = tempdir();
    run(openssl(
        dir.path(),
        ["req", "-outform", "DER", "-out", "csr.der", "-in"],
    )
    .arg(&path));
    read_file(&dir.path().join("csr.der"))
}

#[test]
fn tampered_core_csr_fails_openssl_req_verify() {
    let dir = tempdir();
    for algorithm in [KeyAlgorithm::P256, KeyAlgorithm::Ed25519] {
        let key = SoftwareKey::generate(algorithm, &mut common::rng());
        let mut der = csr::create_csr(&key, &CsrTemplate::default()).expect("core makes a CSR");
        // For Ed25519 the last byte is inside the raw signature; for ECDSA it is the last byte of
        // the DER-encoded `s`. Either way the signature no longer verifies.
        *der.last_mut().expect("non-empty CSR") ^= 0x01;
        let name = format!("tampered-{algorithm:?}.csr");
        write_file(dir.path(), &name, csr::csr_to_pem(&der).expect("PEM"));
        let out = try_run(openssl(
            dir.path(),
            ["req", "-verify", "-noout", "-in", &name],
        ));
        // OpenSSL 3.0 exits 0 from `req -verify` even on failure, so judge by what it prints.
        assert!(
            out.combined().contains("verify failure") && !out.combined().contains("verify OK"),
            "{name}: openssl did not reject a tampered CSR: {}",
            out.combined()
        );
        assert!(
            csr::parse_and_verify(&der, &RustCryptoVerifier).is_err(),
            "{name}: core accepted a tampered CSR"
        );
    }
}

/// The public key of a certificate (or key file) as openssl prints it.
fn openssl_public_key_pem(dir: &Path, args: &[&str]) -> String {
    run(openssl(dir, args)).stdout
}

#[test]
fn core_chains_pass_openssl_verify_strict_for_all_key_types() {
    let dir = tempdir();
    let d = dir.path();
    for ca_algorithm in [KeyAlgorithm::P256, KeyAlgorithm::Ed25519] {
        let ca = TestCa::generate(ca_algorithm);
        let prefix = format!("{ca_algorithm:?}-");
        let paths = ca.write(d, &prefix);
        let ca_file = paths.trust_anchors.display().to_string();
        let issuer_file = paths.issuer_certificate.display().to_string();
        for key in &OPENSSL_KEYS {
            let made = openssl_csr(d, key);
            let verified = verified_csr(key.name, &made.pem);
            let app = format!("app-{}", key.name);
            let id = workload_id("default", &app);
            let dns = vec![format!("{app}.default.svc.cluster.local")];
            let issued = ca.issue(&verified.public_key, &id, &dns);
            let leaf_file = format!("{prefix}{}-leaf.crt", key.name);
            write_file(d, &leaf_file, certificate_pem(&issued.certificate));

            openssl_verify_ok(d, &ca_file, &issuer_file, &leaf_file);

            // The certificate certifies the openssl-held key, not some other key.
            assert_eq!(
                openssl_public_key_pem(d, &["x509", "-noout", "-pubkey", "-in", &leaf_file]),
                openssl_public_key_pem(d, &["pkey", "-pubout", "-in", &made.key_file]),
                "{leaf_file}: leaf key differs from the CSR key"
            );
            let san = run(openssl(
                d,
                [
                    "x509",
                    "-noout",
                    "-ext",
                    "subjectAltName",
                    "-in",
                    &leaf_file,
                ],
            ))
            .stdout;
            assert!(
                san.contains("critical"),
                "{leaf_file}: SAN not critical: {san}"
            );
            assert!(san.contains(&format!("URI:{id}")), "{leaf_file}: {san}");
            assert!(
                san.contains(&format!("DNS:{}", dns[0])),
                "{leaf_file}: {san}"
            );
        }
    }
}

#[test]
fn openssl_rejects_leaf_against_another_cas_trust_anchor() {
    let dir = tempdir();
    let d = dir.path();
    // Same trust domain, so names match and only the keys tell the CAs apart.
    let ours = TestCa::generate(KeyAlgorithm::P256);
    let theirs = TestCa::generate(KeyAlgorithm::P256);
    let ours_paths = ours.write(d, "ours-");
    let theirs_paths = theirs.write(d, "theirs-");
    let key = SoftwareKey::generate(KeyAlgorithm::Ed25519, &mut common::rng());
    let issued = ours.issue(&key.public_key(), &workload_id("default", "app"), &[]);
    write_file(d, "leaf.crt", certificate_pem(&issued.certificate));

    // Control: the right anchor verifies.
    openssl_verify_ok(
        d,
        &ours_paths.trust_anchors.display().to_string(),
        &ours_paths.issuer_certificate.display().to_string(),
        "leaf.crt",
    );
    for untrusted in [
        &ours_paths.issuer_certificate,
        &theirs_paths.issuer_certificate,
    ] {
        let out = try_run(openssl(
            d,
            [
                "verify",
                "-x509_strict",
                "-CAfile",
                &theirs_paths.trust_anchors.display().to_string(),
                "-untrusted",
                &untrusted.display().to_string(),
                "leaf.crt",
            ],
        ));
        assert!(
            !out.success,
            "openssl verified our leaf against another CA's anchor (untrusted {}): {}",
            untrusted.display(),
            out.combined()
        );
        // The leaf's AKID names our issuer's key, the issuer's AKID names our root's key, so
        // openssl finds no issuer in their anchors (X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY).
        assert!(
            out.combined()
                .contains("unable to get local issuer certificate"),
            "unexpected openssl error: {}",
            out.combined()
        );
    }
}

#[test]
fn openssl_rejects_core_leaf_after_not_after() {
    let dir = tempdir();
    let d = dir.path();
    let ca = TestCa::generate(KeyAlgorithm::P256);
    let paths = ca.write(d, "");
    let key = SoftwareKey::generate(KeyAlgorithm::P256, &mut common::rng());
    let issued = ca.issue(&key.public_key(), &workload_id("default", "app"), &[]);
    write_file(d, "leaf.crt", certificate_pem(&issued.certificate));
    let after = issued.validity.not_after.as_secs() + 60;
    let out = try_run(openssl(
        d,
        [
            "verify",
            "-x509_strict",
            "-attime",
            &after.to_string(),
            "-CAfile",
            &paths.trust_anchors.display().to_string(),
            "-untrusted",
            &paths.issuer_certificate.display().to_string(),
            "leaf.crt",
        ],
    ));
    assert!(!out.success, "expired leaf verified: {}", out.combined());
    assert!(
        out.combined().contains("certificate has expired"),
        "unexpected openssl error: {}",
        out.combined()
    );
}

// ---------------------------------------------------------------------------------------------
// The Dapr docs' OpenSSL "bring your own certificates" recipe (`common::run_seed_recipe`), run
// verbatim.

/// Loads the recipe's files with core, with `issuer.crt` and `issuer.key` taken from the files
/// given.
fn load_seed_bundle(
    dir: &Path,
    issuer_crt: &str,
    issuer_key: &str,
) -> Result<CaBundle, BundleError> {
    CaBundle::from_pem(
        &read_file(&dir.join("root.pem")),
        &read_file(&dir.join(issuer_crt)),
        &read_file(&dir.join(issuer_key)),
        now(),
        &RustCryptoVerifier,
    )
}

/// Issues a leaf for an openssl-made Ed25519 key (daprd 1.18's default) from `bundle`, checks it
/// with core and with `openssl verify` against the recipe's root; returns the issued chain.
fn issue_and_verify_seed_leaf(
    dir: &Path,
    bundle: &CaBundle,
    untrusted: &str,
    tag: &str,
) -> Vec<Certificate> {
    let key = &OPENSSL_KEYS[2];
    assert_eq!(key.expected, KeyType::Ed25519);
    let made = openssl_csr(dir, key);
    let verified = verified_csr(key.name, &made.pem);
    let id = workload_id("default", &format!("seed-{tag}"));
    let at = now();
    let issued = issue_leaf(bundle, &verified.public_key, &id, &[], at);
    let leaf_file = format!("seed-{tag}-leaf.crt");
    write_file(dir, &leaf_file, certificate_pem(&issued.certificate));
    openssl_verify_ok(dir, "root.pem", untrusted, &leaf_file);

    let chain = parse_chain(&issued.chain_pem);
    let got = verify_svid_pem(&issued.chain_pem, bundle.trust_anchors(), at)
        .unwrap_or_else(|e| panic!("{tag}: core rejects its own SVID: {e}"));
    assert_eq!(got, id);
    chain
}

fn pem_to_der(dir: &Path, file: &str) -> Vec<Vec<u8>> {
    parse_chain(&String::from_utf8(read_file(&dir.join(file))).expect("PEM text"))
        .iter()
        .map(|c| c.to_der().expect("DER"))
        .collect()
}

#[test]
fn seed_recipe_credentials_with_sec1_issuer_key_load_and_issue() {
    let dir = tempdir();
    let d = dir.path();
    run_seed_recipe(d);
    let key_text = String::from_utf8(read_file(&d.join("issuer.key"))).expect("text");
    assert!(
        key_text.starts_with("-----BEGIN EC PRIVATE KEY-----\n"),
        "`openssl ec -out` should write SEC1: {key_text}"
    );

    let bundle = load_seed_bundle(d, "issuer.pem", "issuer.key")
        .unwrap_or_else(|e| panic!("core refuses the docs' OpenSSL credentials: {e}"));
    assert_eq!(
        bundle
            .trust_anchors()
            .iter()
            .map(|c| c.to_der().expect("DER"))
            .collect::<Vec<_>>(),
        pem_to_der(d, "root.pem")
    );
    assert_eq!(
        bundle
            .issuer_chain()
            .iter()
            .map(|c| c.to_der().expect("DER"))
            .collect::<Vec<_>>(),
        pem_to_der(d, "issuer.pem")
    );
    let chain = issue_and_verify_seed_leaf(d, &bundle, "issuer.pem", "sec1");
    assert_eq!(chain.len(), 2, "leaf + issuer");

    // The root's key is not the issuer's: core must notice.
    assert_eq!(
        load_seed_bundle(d, "issuer.pem", "root.key").err(),
        Some(BundleError::KeyMismatch)
    );
}

#[test]
fn seed_recipe_issuer_chain_with_trailing_root_drops_the_root() {
    let dir = tempdir();
    let d = dir.path();
    run_seed_recipe(d);
    let mut with_root = read_file(&d.join("issuer.pem"));
    with_root.extend(read_file(&d.join("root.pem")));
    write_file(d, "issuer-with-root.crt", &with_root);
    assert_eq!(pem_to_der(d, "issuer-with-root.crt").len(), 2);

    let bundle = load_seed_bundle(d, "issuer-with-root.crt", "issuer.key")
        .unwrap_or_else(|e| panic!("core refuses issuer.crt with the root appended: {e}"));
    let issuer_only = pem_to_der(d, "issuer.pem");
    assert_eq!(
        bundle
            .issuer_chain()
            .iter()
            .map(|c| c.to_der().expect("DER"))
            .collect::<Vec<_>>(),
        issuer_only,
        "the trailing self-signed root must be dropped from the issuer chain"
    );
    let chain = issue_and_verify_seed_leaf(d, &bundle, "issuer-with-root.crt", "with-root");
    assert_eq!(chain.len(), 2, "the response chain must not carry the root");
    assert_eq!(chain[1].to_der().expect("DER"), issuer_only[0]);
}

#[test]
fn seed_recipe_credentials_with_pkcs8_issuer_key_load_and_issue() {
    let dir = tempdir();
    let d = dir.path();
    run_seed_recipe(d);
    run(openssl(
        d,
        [
            "pkcs8",
            "-topk8",
            "-nocrypt",
            "-in",
            "issuer.key",
            "-out",
            "issuer.pk8.key",
        ],
    ));
    let key_text = String::from_utf8(read_file(&d.join("issuer.pk8.key"))).expect("text");
    assert!(
        key_text.starts_with("-----BEGIN PRIVATE KEY-----\n"),
        "expected PKCS#8: {key_text}"
    );
    let bundle = load_seed_bundle(d, "issuer.pem", "issuer.pk8.key")
        .unwrap_or_else(|e| panic!("core refuses a PKCS#8 issuer key: {e}"));
    let chain = issue_and_verify_seed_leaf(d, &bundle, "issuer.pem", "pkcs8");
    assert_eq!(chain.len(), 2);
}

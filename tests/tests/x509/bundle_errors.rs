//! One test per way `CaBundle::from_pem` / `from_parts` refuses a credential set
//! (`ca.crt`, `issuer.crt`, `issuer.key`), with the exact `BundleError`, its Display text
//! (Sentry's wording where Sentry has one) and the file it blames; plus the shapes Sentry
//! accepts (a trailing root in issuer.crt, several anchors).

use std::time::Duration;

use der::Decode;
use warden_core::UnixTime;
use warden_core::bundle::{
    BundleError, CaBundle, CertificatesError, CredentialFile, CredentialFiles, IssuedSvid,
    WorkloadRequest, create_issuer, create_root, parse_certificates,
};
use warden_core::chain::{ChainError, SvidError};
use warden_core::crypto::{
    CaSigner, KeyAlgorithm, KeyError, RustCryptoVerifier, SoftwareKey, VerifyError,
};
use warden_core::pem::PemError;
use warden_core::profile::Validity;
use warden_core::spiffe::SpiffeId;
use x509_cert::Certificate;

use warden_tests::support::*;

const TD: &str = "example.org";
const LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);
const SKEW: Duration = Duration::from_secs(10 * 60);

fn fresh(alg: KeyAlgorithm) -> (CaBundle, CredentialFiles) {
    generate(&td(TD), alg, LIFETIME, SKEW, NOW)
}

fn load(ca: &str, issuer: &str, key: &str, now: UnixTime) -> Result<CaBundle, BundleError> {
    CaBundle::from_pem(
        ca.as_bytes(),
        issuer.as_bytes(),
        key.as_bytes(),
        now,
        &RustCryptoVerifier,
    )
}

/// Asserts the exact error, its text and the file it blames.
fn expect(
    result: Result<CaBundle, BundleError>,
    expected: &BundleError,
    text: &str,
    file: CredentialFile,
) {
    let err = result.unwrap_err();
    assert_eq!(&err, expected);
    assert_eq!(err.to_string(), text);
    assert_eq!(err.file(), file);
}

fn cert_pem(cert: &Certificate) -> String {
    pem("CERTIFICATE", &der_of(cert))
}

fn key_pem(key: &SoftwareKey) -> String {
    key.to_pkcs8_pem().unwrap().to_string()
}

fn sentry_id() -> SpiffeId {
    SpiffeId::sentry(&td(TD), NAMESPACE).unwrap()
}

/// A key made by `openssl genpkey args...`, optionally re-encoded in the traditional
/// (PKCS#1 / SEC1) form.
fn openssl_key(args: &[&str], traditional: bool) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut genpkey = vec!["genpkey"];
    genpkey.extend_from_slice(args);
    genpkey.extend_from_slice(&["-out", "key.pem"]);
    openssl_stdout(dir.path(), &genpkey);
    if traditional {
        openssl_stdout(
            dir.path(),
            &[
                "pkey",
                "-in",
                "key.pem",
                "-traditional",
                "-out",
                "key.pem.trad",
            ],
        );
        return std::fs::read_to_string(dir.path().join("key.pem.trad")).unwrap();
    }
    std::fs::read_to_string(dir.path().join("key.pem")).unwrap()
}

/// Issuer NotBefore / NotAfter of `fresh`.
fn nb() -> u64 {
    NOW.as_secs() - SKEW.as_secs()
}
fn na() -> u64 {
    NOW.as_secs() + LIFETIME.as_secs()
}

// ---------------------------------------------------------------------------------------------
// Baseline.

/// Issues `spiffe://<TD>/ns/default/app` for `key` with the tests' TTL and skew.
fn issue_app_leaf(bundle: &CaBundle, key: &SoftwareKey, now: UnixTime) -> (SpiffeId, IssuedSvid) {
    let id = SpiffeId::workload(&td(TD), "default", "app").unwrap();
    let issued = bundle
        .issue_workload(
            &WorkloadRequest {
                public_key: &key.public_key(),
                spiffe_id: &id,
                dns_names: &[],
                ttl: HOUR,
                clock_skew: SKEW,
            },
            now,
            &mut rng(),
        )
        .unwrap();
    (id, issued)
}

#[test]
fn generated_files_load_inside_the_whole_window() {
    for alg in [KeyAlgorithm::P256, KeyAlgorithm::Ed25519] {
        let (_, f) = fresh(alg);
        for now in [UnixTime::from_secs(nb()), NOW, UnixTime::from_secs(na())] {
            let bundle = load(&f.trust_anchors, &f.issuer_certificate, &f.issuer_key, now).unwrap();
            assert_eq!(bundle.trust_anchors().len(), 1);
            assert_eq!(bundle.issuer_chain().len(), 1);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// ca.crt

#[test]
fn trust_anchor_that_is_not_self_signed() {
    let (_, f) = fresh(KeyAlgorithm::P256);
    // The issuer certificate put into ca.crt: alone (position 0) and after the root (1).
    expect(
        load(
            &f.issuer_certificate,
            &f.issuer_certificate,
            &f.issuer_key,
            NOW,
        ),
        &BundleError::AnchorNotSelfSigned { position: 0 },
        "certificate in trust anchor is not self-signed (certificate 0)",
        CredentialFile::TrustAnchors,
    );
    let ca = format!("{}{}", f.trust_anchors, f.issuer_certificate);
    expect(
        load(&ca, &f.issuer_certificate, &f.issuer_key, NOW),
        &BundleError::AnchorNotSelfSigned { position: 1 },
        "certificate in trust anchor is not self-signed (certificate 1)",
        CredentialFile::TrustAnchors,
    );
}

#[test]
fn truncated_ca_crt() {
    let (_, f) = fresh(KeyAlgorithm::P256);
    let half = &f.trust_anchors[..f.trust_anchors.len() / 2];
    expect(
        load(half, &f.issuer_certificate, &f.issuer_key, NOW),
        &BundleError::Certificates(
            CredentialFile::TrustAnchors,
            CertificatesError::Pem(PemError::Unterminated),
        ),
        "PEM block has no END line",
        CredentialFile::TrustAnchors,
    );
}

#[test]
fn ca_crt_with_a_line_missing_does_not_parse() {
    // The PEM frame and base64 stay valid (one whole 64-column line = 48 bytes is dropped), so
    // the DER is what breaks.
    let (bundle, f) = fresh(KeyAlgorithm::P256);
    let mut lines: Vec<&str> = f.trust_anchors.lines().collect();
    lines.remove(2);
    let broken = lines.join("\n") + "\n";
    let der = pem_der(&broken, "CERTIFICATE");
    assert_eq!(der.len(), der_of(&bundle.trust_anchors()[0]).len() - 48);
    let error = Certificate::from_der(&der).unwrap_err();
    let err = load(&broken, &f.issuer_certificate, &f.issuer_key, NOW).unwrap_err();
    assert_eq!(
        err,
        BundleError::Certificates(
            CredentialFile::TrustAnchors,
            CertificatesError::Malformed { position: 0, error },
        )
    );
    assert_eq!(
        err.to_string(),
        format!("certificate 0 does not parse: {error}")
    );
    assert!(
        err.to_string()
            .starts_with("certificate 0 does not parse: ")
    );
    assert_eq!(err.file(), CredentialFile::TrustAnchors);
}

#[test]
fn empty_ca_crt() {
    let (_, f) = fresh(KeyAlgorithm::P256);
    for ca in ["", "\n", "# no certificates here\n"] {
        expect(
            load(ca, &f.issuer_certificate, &f.issuer_key, NOW),
            &BundleError::Certificates(
                CredentialFile::TrustAnchors,
                CertificatesError::NoCertificates,
            ),
            "no PEM CERTIFICATE block found",
            CredentialFile::TrustAnchors,
        );
    }
}

#[test]
fn public_key_block_in_ca_crt() {
    let (bundle, f) = fresh(KeyAlgorithm::P256);
    let spki = bundle.trust_anchors()[0]
        .tbs_certificate()
        .subject_public_key_info()
        .clone();
    let public_key = pem("PUBLIC KEY", &der::Encode::to_der(&spki).unwrap());
    // Alone, and after a valid root.
    for ca in [
        public_key.clone(),
        format!("{}{public_key}", f.trust_anchors),
    ] {
        expect(
            load(&ca, &f.issuer_certificate, &f.issuer_key, NOW),
            &BundleError::Certificates(
                CredentialFile::TrustAnchors,
                CertificatesError::UnexpectedBlock("PUBLIC KEY".into()),
            ),
            "unexpected PEM block \"PUBLIC KEY\", expected \"CERTIFICATE\"",
            CredentialFile::TrustAnchors,
        );
    }
}

#[test]
fn der_instead_of_pem_in_ca_crt() {
    let (bundle, f) = fresh(KeyAlgorithm::P256);
    let der = der_of(&bundle.trust_anchors()[0]);
    let err = CaBundle::from_pem(
        &der,
        f.issuer_certificate.as_bytes(),
        f.issuer_key.as_bytes(),
        NOW,
        &RustCryptoVerifier,
    )
    .unwrap_err();
    assert_eq!(
        err,
        BundleError::Certificates(
            CredentialFile::TrustAnchors,
            CertificatesError::Pem(PemError::NotText)
        )
    );
    assert_eq!(err.to_string(), "PEM input is not UTF-8 text");
    assert_eq!(err.file(), CredentialFile::TrustAnchors);
}

// ---------------------------------------------------------------------------------------------
// issuer.crt

#[test]
fn issuer_chain_to_a_different_root_with_the_same_name() {
    // Two CAs for the same trust domain: the roots share the subject O=example.org, so the
    // anchor is found by name and its key fails the signature.
    let (_, a) = fresh(KeyAlgorithm::P256);
    let (_, b) = fresh(KeyAlgorithm::P256);
    expect(
        load(&a.trust_anchors, &b.issuer_certificate, &b.issuer_key, NOW),
        &BundleError::NotTrusted(ChainError::BadSignature {
            position: 0,
            error: VerifyError::BadSignature,
        }),
        "issuer chain does not belong to trust anchors: certificate 0 signature: signature verification failed",
        CredentialFile::IssuerCertificate,
    );
}

#[test]
fn issuer_chain_to_a_root_of_another_trust_domain() {
    let (_, a) = generate(
        &td("other.example"),
        KeyAlgorithm::Ed25519,
        LIFETIME,
        SKEW,
        NOW,
    );
    let (_, b) = fresh(KeyAlgorithm::Ed25519);
    expect(
        load(&a.trust_anchors, &b.issuer_certificate, &b.issuer_key, NOW),
        &BundleError::NotTrusted(ChainError::UnknownIssuer),
        "issuer chain does not belong to trust anchors: certificate signed by unknown authority",
        CredentialFile::IssuerCertificate,
    );
}

#[test]
fn expired_issuer() {
    let (_, f) = fresh(KeyAlgorithm::P256);
    for now in [
        UnixTime::from_secs(na() + 1),
        UnixTime::from_millis(na() * 1000 + 1),
        UnixTime::from_secs(na() + 400 * 86400),
    ] {
        expect(
            load(&f.trust_anchors, &f.issuer_certificate, &f.issuer_key, now),
            &BundleError::NotTrusted(ChainError::Expired {
                position: Some(0),
                not_after: UnixTime::from_secs(na()),
            }),
            "issuer chain does not belong to trust anchors: certificate 0 expired at 2026-03-31T12:00:00Z",
            CredentialFile::IssuerCertificate,
        );
    }
}

#[test]
fn issuer_not_yet_valid() {
    let (_, f) = fresh(KeyAlgorithm::Ed25519);
    for now in [UnixTime::from_secs(nb() - 1), UnixTime::EPOCH] {
        expect(
            load(&f.trust_anchors, &f.issuer_certificate, &f.issuer_key, now),
            &BundleError::NotTrusted(ChainError::NotYetValid {
                position: Some(0),
                not_before: UnixTime::from_secs(nb()),
            }),
            "issuer chain does not belong to trust anchors: certificate 0 is not valid before 2026-03-01T11:50:00Z",
            CredentialFile::IssuerCertificate,
        );
    }
}

#[test]
fn trust_anchor_not_yet_valid() {
    // A root whose NotBefore (NOW) is later than its issuer's (NOW − 1h), loaded in between.
    let root_key = SoftwareKey::generate(KeyAlgorithm::P256, &mut rng());
    let root = create_root(
        &root_key,
        &td(TD),
        Validity {
            not_before: NOW,
            not_after: shift(NOW, 86400),
        },
        &mut rng(),
    )
    .unwrap();
    let issuer_key = SoftwareKey::generate(KeyAlgorithm::P256, &mut rng());
    let issuer = create_issuer(
        &root_key,
        &root,
        issuer_key.public_key(),
        &sentry_id(),
        Validity {
            not_before: shift(NOW, -3600),
            not_after: shift(NOW, 86400),
        },
        &mut rng(),
    )
    .unwrap();
    let (ca, crt, key) = (cert_pem(&root), cert_pem(&issuer), key_pem(&issuer_key));
    expect(
        load(&ca, &crt, &key, shift(NOW, -1800)),
        &BundleError::NotTrusted(ChainError::NotYetValid {
            position: None,
            not_before: NOW,
        }),
        "issuer chain does not belong to trust anchors: trust anchor is not valid before 2026-03-01T12:00:00Z",
        CredentialFile::IssuerCertificate,
    );
    load(&ca, &crt, &key, NOW).unwrap();
}

#[test]
fn broken_chain_order() {
    // issuer.crt = [root-signed issuer, an unrelated intermediate]: the issuer's issuer name
    // (O=example.org) is not the next certificate's subject.
    let (_, a) = fresh(KeyAlgorithm::P256);
    let (_, b) = fresh(KeyAlgorithm::P256);
    let crt = format!("{}{}", a.issuer_certificate, b.issuer_certificate);
    expect(
        load(&a.trust_anchors, &crt, &a.issuer_key, NOW),
        &BundleError::IssuerChainBroken(ChainError::IssuerNameMismatch { position: 0 }),
        "issuer chain is not a valid chain: certificate 0's issuer is not the subject of the certificate after it",
        CredentialFile::IssuerCertificate,
    );
}

#[test]
fn chain_link_with_a_bad_signature() {
    // issuer.crt = [issuer A, root B, root A]: root A (trailing, self-signed) is dropped; root
    // B has the right name (same trust domain) but did not sign issuer A.
    let (_, a) = fresh(KeyAlgorithm::P256);
    let (_, b) = fresh(KeyAlgorithm::P256);
    let crt = format!(
        "{}{}{}",
        a.issuer_certificate, b.trust_anchors, a.trust_anchors
    );
    expect(
        load(&a.trust_anchors, &crt, &a.issuer_key, NOW),
        &BundleError::IssuerChainBroken(ChainError::BadSignature {
            position: 0,
            error: VerifyError::BadSignature,
        }),
        "issuer chain is not a valid chain: certificate 0 signature: signature verification failed",
        CredentialFile::IssuerCertificate,
    );
}

#[test]
fn issuer_certificate_that_is_not_a_ca() {
    // A workload leaf and its own key as issuer.crt / issuer.key.
    let (bundle, f) = fresh(KeyAlgorithm::P256);
    let leaf_key = SoftwareKey::generate(KeyAlgorithm::P256, &mut rng());
    let (_, issued) = issue_app_leaf(&bundle, &leaf_key, NOW);
    // The leaf alone, and the full response chain (leaf + issuer).
    for crt in [cert_pem(&issued.certificate), issued.chain_pem.clone()] {
        expect(
            load(&f.trust_anchors, &crt, &key_pem(&leaf_key), NOW),
            &BundleError::IssuerNotCa,
            "issuer certificate is not a CA",
            CredentialFile::IssuerCertificate,
        );
    }
}

#[test]
fn issuer_crt_with_only_a_self_signed_root() {
    let (_, f) = fresh(KeyAlgorithm::P256);
    expect(
        load(&f.trust_anchors, &f.trust_anchors, &f.issuer_key, NOW),
        &BundleError::NoIssuerCertificate,
        "issuer chain holds no certificate that is not self-signed",
        CredentialFile::IssuerCertificate,
    );
}

#[test]
fn truncated_issuer_crt() {
    let (_, f) = fresh(KeyAlgorithm::Ed25519);
    let half = &f.issuer_certificate[..f.issuer_certificate.len() / 2];
    expect(
        load(&f.trust_anchors, half, &f.issuer_key, NOW),
        &BundleError::Certificates(
            CredentialFile::IssuerCertificate,
            CertificatesError::Pem(PemError::Unterminated),
        ),
        "PEM block has no END line",
        CredentialFile::IssuerCertificate,
    );
}

#[test]
fn empty_issuer_crt() {
    let (_, f) = fresh(KeyAlgorithm::P256);
    expect(
        load(&f.trust_anchors, "", &f.issuer_key, NOW),
        &BundleError::Certificates(
            CredentialFile::IssuerCertificate,
            CertificatesError::NoCertificates,
        ),
        "no PEM CERTIFICATE block found",
        CredentialFile::IssuerCertificate,
    );
}

#[test]
fn private_key_block_in_issuer_crt() {
    // A common mistake: the key appended to the certificate file.
    let (_, f) = fresh(KeyAlgorithm::P256);
    let crt = format!("{}{}", f.issuer_certificate, *f.issuer_key);
    expect(
        load(&f.trust_anchors, &crt, &f.issuer_key, NOW),
        &BundleError::Certificates(
            CredentialFile::IssuerCertificate,
            CertificatesError::UnexpectedBlock("PRIVATE KEY".into()),
        ),
        "unexpected PEM block \"PRIVATE KEY\", expected \"CERTIFICATE\"",
        CredentialFile::IssuerCertificate,
    );
}

#[test]
fn malformed_second_certificate_in_issuer_crt() {
    let (_, f) = fresh(KeyAlgorithm::P256);
    let crt = format!(
        "{}{}",
        f.issuer_certificate,
        pem("CERTIFICATE", &[0x30, 0x03, 0x02, 0x01])
    );
    let error = Certificate::from_der(&[0x30, 0x03, 0x02, 0x01]).unwrap_err();
    let err = load(&f.trust_anchors, &crt, &f.issuer_key, NOW).unwrap_err();
    assert_eq!(
        err,
        BundleError::Certificates(
            CredentialFile::IssuerCertificate,
            CertificatesError::Malformed { position: 1, error },
        )
    );
    assert_eq!(
        err.to_string(),
        "certificate 1 does not parse: ASN.1 DER message is incomplete: expected 5, actual 4 at DER byte 4"
    );
    assert_eq!(err.file(), CredentialFile::IssuerCertificate);
}

// ---------------------------------------------------------------------------------------------
// issuer.key

#[test]
fn issuer_key_that_does_not_match_the_certificate() {
    let (_, a) = fresh(KeyAlgorithm::P256);
    // Another key of the same algorithm, and one of the other algorithm.
    let (_, b) = fresh(KeyAlgorithm::P256);
    let (_, c) = fresh(KeyAlgorithm::Ed25519);
    for key in [&b.issuer_key, &c.issuer_key] {
        expect(
            load(&a.trust_anchors, &a.issuer_certificate, key, NOW),
            &BundleError::KeyMismatch,
            "issuer key does not match issuer certificate",
            CredentialFile::IssuerKey,
        );
    }
    // The root's key is not the issuer's either (from_parts with a kept root key).
    let root_key = SoftwareKey::generate(KeyAlgorithm::P256, &mut rng());
    let root = create_root(
        &root_key,
        &td(TD),
        Validity::backdated(NOW, SKEW, LIFETIME),
        &mut rng(),
    )
    .unwrap();
    let issuer_key = SoftwareKey::generate(KeyAlgorithm::P256, &mut rng());
    let issuer = create_issuer(
        &root_key,
        &root,
        issuer_key.public_key(),
        &sentry_id(),
        Validity::backdated(NOW, SKEW, LIFETIME),
        &mut rng(),
    )
    .unwrap();
    let err = CaBundle::from_parts(
        vec![root],
        vec![issuer],
        Box::new(root_key),
        NOW,
        &RustCryptoVerifier,
    )
    .unwrap_err();
    assert_eq!(err, BundleError::KeyMismatch);
    assert_eq!(err.file(), CredentialFile::IssuerKey);
}

fn expect_key_error(key: &str, error: KeyError, text: &str) {
    let (_, f) = fresh(KeyAlgorithm::P256);
    expect(
        load(&f.trust_anchors, &f.issuer_certificate, key, NOW),
        &BundleError::IssuerKey(error),
        text,
        CredentialFile::IssuerKey,
    );
}

#[test]
fn garbage_issuer_key() {
    for key in ["", "garbage", "not a key at all\n\n"] {
        expect_key_error(key, KeyError::NoPemBlock, "issuer key: no PEM block found");
    }
    expect_key_error(
        &pem("PRIVATE KEY", b"definitely not PKCS#8"),
        KeyError::Malformed,
        "issuer key: malformed private key",
    );
}

#[test]
fn truncated_issuer_key() {
    let (_, f) = fresh(KeyAlgorithm::P256);
    let half = &f.issuer_key[..f.issuer_key.len() / 2];
    expect_key_error(
        half,
        KeyError::Pem(PemError::Unterminated),
        "issuer key: PEM block has no END line",
    );
}

#[test]
fn certificate_block_as_issuer_key() {
    let (_, f) = fresh(KeyAlgorithm::P256);
    expect_key_error(
        &f.issuer_certificate,
        KeyError::UnexpectedBlockType,
        "issuer key: PEM block is not a private key (expected PRIVATE KEY or EC PRIVATE KEY)",
    );
}

/// An RSA 2048 issuer key (PKCS#1 when `traditional`, else PKCS#8), whose PEM starts with
/// `first_line`, is refused as an unsupported algorithm.
fn rsa_issuer_key_is_refused_as_unsupported(traditional: bool, first_line: &str) {
    let key = openssl_key(
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        traditional,
    );
    assert!(key.starts_with(first_line));
    expect_key_error(
        &key,
        KeyError::UnsupportedAlgorithm,
        "issuer key: unsupported private key algorithm (supported: ECDSA P-256, Ed25519)",
    );
}

#[test]
fn rsa_issuer_key_is_unsupported() {
    rsa_issuer_key_is_refused_as_unsupported(false, "-----BEGIN PRIVATE KEY-----\n");
}

/// Sentry reads `RSA PRIVATE KEY` issuer keys (dapr-sentry.md §3). Warden signs only with
/// P-256 and Ed25519, so an RSA key must be refused either way — but as an unsupported
/// algorithm, like the PKCS#8 RSA key above. Core reports `UnexpectedBlockType`, whose text
/// ("PEM block is not a private key") is wrong for a PKCS#1 private key and sends the operator
/// looking for a file-format problem.
#[test]
fn rsa_pkcs1_issuer_key_is_reported_as_unsupported_algorithm() {
    rsa_issuer_key_is_refused_as_unsupported(true, "-----BEGIN RSA PRIVATE KEY-----\n");
}

#[test]
fn p384_issuer_key_is_unsupported() {
    // PKCS#8 and SEC1 (`EC PRIVATE KEY`) encodings.
    for traditional in [false, true] {
        let key = openssl_key(
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
            traditional,
        );
        let label = if traditional {
            "EC PRIVATE KEY"
        } else {
            "PRIVATE KEY"
        };
        assert!(key.starts_with(&format!("-----BEGIN {label}-----\n")));
        expect_key_error(
            &key,
            KeyError::UnsupportedAlgorithm,
            "issuer key: unsupported private key algorithm (supported: ECDSA P-256, Ed25519)",
        );
    }
}

#[test]
fn ed448_issuer_key_is_unsupported() {
    let key = openssl_key(&["-algorithm", "ED448"], false);
    expect_key_error(
        &key,
        KeyError::UnsupportedAlgorithm,
        "issuer key: unsupported private key algorithm (supported: ECDSA P-256, Ed25519)",
    );
}

#[test]
fn openssl_p256_keys_load_in_pkcs8_and_sec1_form() {
    // The Dapr docs' BYO recipe makes an `EC PRIVATE KEY`; both encodings must load.
    for traditional in [false, true] {
        let key_text = openssl_key(
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
            traditional,
        );
        let issuer_key = SoftwareKey::from_pem(key_text.as_bytes()).unwrap();
        let root_key = SoftwareKey::generate(KeyAlgorithm::Ed25519, &mut rng());
        let validity = Validity::backdated(NOW, SKEW, LIFETIME);
        let root = create_root(&root_key, &td(TD), validity, &mut rng()).unwrap();
        let issuer = create_issuer(
            &root_key,
            &root,
            issuer_key.public_key(),
            &sentry_id(),
            validity,
            &mut rng(),
        )
        .unwrap();
        let bundle = load(&cert_pem(&root), &cert_pem(&issuer), &key_text, NOW).unwrap();
        assert_eq!(bundle.issuer(), &issuer);
    }
}

// ---------------------------------------------------------------------------------------------
// Shapes Sentry accepts.

#[test]
fn trailing_self_signed_root_in_issuer_crt_is_dropped() {
    for alg in [KeyAlgorithm::P256, KeyAlgorithm::Ed25519] {
        let (bundle, f) = fresh(alg);
        let crt = format!(
            "# issuer\n{}# root\n{}",
            f.issuer_certificate, f.trust_anchors
        );
        let loaded = load(&f.trust_anchors, &crt, &f.issuer_key, NOW).unwrap();
        assert_eq!(loaded.issuer_chain().len(), 1);
        assert_eq!(loaded.issuer_chain(), bundle.issuer_chain());
        assert_eq!(loaded.issuer_chain_pem(), f.issuer_certificate);
        assert_eq!(parse_certificates(crt.as_bytes()).unwrap().len(), 2);
    }
}

#[test]
fn two_anchors_where_only_the_second_signs() {
    let (_, a) = fresh(KeyAlgorithm::P256);
    // First anchor with the same name (a rotated root) and with another name.
    let (_, same_name) = fresh(KeyAlgorithm::P256);
    let (_, other_name) = generate(
        &td("other.example"),
        KeyAlgorithm::P256,
        LIFETIME,
        SKEW,
        NOW,
    );
    for first in [&same_name, &other_name] {
        let ca = format!("{}{}", first.trust_anchors, a.trust_anchors);
        let bundle = load(&ca, &a.issuer_certificate, &a.issuer_key, NOW).unwrap();
        assert_eq!(bundle.trust_anchors().len(), 2);
        assert_eq!(bundle.trust_anchors_pem(), ca);
        // Leaves verify against both anchors as published.
        let leaf_key = SoftwareKey::generate(KeyAlgorithm::Ed25519, &mut rng());
        let (id, issued) = issue_app_leaf(&bundle, &leaf_key, NOW);
        let chain_certs = parse_certificates(issued.chain_pem.as_bytes()).unwrap();
        assert_eq!(
            core_verify_svid(&chain_certs, bundle.trust_anchors(), NOW),
            Ok(id)
        );
        webpki_verify(
            &issued.certificate,
            bundle.issuer_chain(),
            bundle.trust_anchors(),
            NOW,
        )
        .unwrap();
    }
    // Without the signing anchor, the same-name root alone is refused.
    expect(
        load(
            &same_name.trust_anchors,
            &a.issuer_certificate,
            &a.issuer_key,
            NOW,
        ),
        &BundleError::NotTrusted(ChainError::BadSignature {
            position: 0,
            error: VerifyError::BadSignature,
        }),
        "issuer chain does not belong to trust anchors: certificate 0 signature: signature verification failed",
        CredentialFile::IssuerCertificate,
    );
}

/// An issuer chain [issuer2, issuer1] where issuer1 has pathlen:0 (Warden's issuer profile)
/// loads, as in Sentry (the chain is checked with the issuer as its end), but every leaf it
/// issues then breaks issuer1's path length, for core's checker and for rustls-webpki alike.
#[test]
fn issuer_below_a_pathlen_0_issuer_loads_but_its_leaves_do_not_verify() {
    let (parent, f) = fresh(KeyAlgorithm::P256);
    let parent_key = issuer_key(&f);
    let key2 = SoftwareKey::generate(KeyAlgorithm::P256, &mut rng());
    let issuer2 = create_issuer(
        &parent_key,
        parent.issuer(),
        key2.public_key(),
        &sentry_id(),
        Validity::backdated(NOW, SKEW, LIFETIME),
        &mut rng(),
    )
    .unwrap();
    let crt = format!("{}{}", cert_pem(&issuer2), f.issuer_certificate);
    let bundle = load(&f.trust_anchors, &crt, &key_pem(&key2), NOW).unwrap();
    assert_eq!(bundle.issuer_chain().len(), 2);
    let leaf_key = SoftwareKey::generate(KeyAlgorithm::Ed25519, &mut rng());
    let (_, issued) = issue_app_leaf(&bundle, &leaf_key, NOW);
    let chain_certs = parse_certificates(issued.chain_pem.as_bytes()).unwrap();
    assert_eq!(chain_certs.len(), 3);
    assert_eq!(
        core_verify_svid(&chain_certs, bundle.trust_anchors(), NOW),
        Err(SvidError::Chain(ChainError::PathLenExceeded {
            position: Some(2)
        }))
    );
    assert!(
        webpki_verify(
            &issued.certificate,
            bundle.issuer_chain(),
            bundle.trust_anchors(),
            NOW
        )
        .is_err()
    );
}

/// Root renewal with the same key (dapr-sentry.md §4: "a new root signed by the same key (with
/// the same subject) still verifies"): ca.crt = [old root, new root], same subject, same key,
/// the issuer made under the new root.
struct SameKeyRenewal {
    old_root: Certificate,
    new_root: Certificate,
    issuer: Certificate,
    issuer_key: SoftwareKey,
}

fn same_key_renewal() -> SameKeyRenewal {
    let root_key = SoftwareKey::generate(KeyAlgorithm::P256, &mut rng());
    let old_root = create_root(
        &root_key,
        &td(TD),
        Validity::backdated(NOW, SKEW, 30 * DAY),
        &mut rng(),
    )
    .unwrap();
    // Renewed 10 days before the old root expires.
    let renewed_at = shift(NOW, 20 * 86400);
    let new_root = create_root(
        &root_key,
        &td(TD),
        Validity::backdated(renewed_at, SKEW, 400 * DAY),
        &mut rng(),
    )
    .unwrap();
    let issuer_key = SoftwareKey::generate(KeyAlgorithm::P256, &mut rng());
    let issuer = create_issuer(
        &root_key,
        &new_root,
        issuer_key.public_key(),
        &sentry_id(),
        Validity::backdated(renewed_at, SKEW, 90 * DAY),
        &mut rng(),
    )
    .unwrap();
    assert_eq!(
        old_root.tbs_certificate().subject(),
        new_root.tbs_certificate().subject()
    );
    assert_eq!(skid_of(&old_root), skid_of(&new_root));
    SameKeyRenewal {
        old_root,
        new_root,
        issuer,
        issuer_key,
    }
}

#[test]
fn same_key_root_renewal_loads_while_both_roots_are_valid() {
    let r = same_key_renewal();
    let at = shift(NOW, 25 * 86400);
    for ca in [
        format!("{}{}", cert_pem(&r.old_root), cert_pem(&r.new_root)),
        format!("{}{}", cert_pem(&r.new_root), cert_pem(&r.old_root)),
    ] {
        load(&ca, &cert_pem(&r.issuer), &key_pem(&r.issuer_key), at).unwrap();
    }
}

/// Once the old root has expired but is still listed first in ca.crt, `chain::verify_chain`
/// stops at the first anchor whose name and signature match and returns that anchor's
/// validity error, instead of trying the next anchor (the valid new root with the same key).
/// So the same files load or not depending on the order of ca.crt, and leaves fail
/// `verify_svid`. Go's x509 (Sentry, daprd) and rustls-webpki try every candidate root.
#[test]
fn same_key_root_renewal_loads_after_the_old_root_expired() {
    let r = same_key_renewal();
    // 40 days after NOW: the old root (30 days) has expired; new root and issuer are valid.
    let at = shift(NOW, 40 * 86400);
    let new_first = format!("{}{}", cert_pem(&r.new_root), cert_pem(&r.old_root));
    let old_first = format!("{}{}", cert_pem(&r.old_root), cert_pem(&r.new_root));
    // Passes today: the valid anchor comes first.
    let bundle = load(
        &new_first,
        &cert_pem(&r.issuer),
        &key_pem(&r.issuer_key),
        at,
    )
    .unwrap();
    // rustls-webpki accepts a leaf of this issuer with the old root listed first.
    let leaf_key = SoftwareKey::generate(KeyAlgorithm::Ed25519, &mut rng());
    let (id, issued) = issue_app_leaf(&bundle, &leaf_key, at);
    let anchors_old_first = [r.old_root.clone(), r.new_root.clone()];
    webpki_verify(
        &issued.certificate,
        bundle.issuer_chain(),
        &anchors_old_first,
        at,
    )
    .unwrap();
    // Fails today with NotTrusted(Expired { position: None, .. }) for the old root.
    let loaded = load(
        &old_first,
        &cert_pem(&r.issuer),
        &key_pem(&r.issuer_key),
        at,
    );
    assert!(loaded.is_ok(), "{:?}", loaded.unwrap_err());
    let chain_certs = parse_certificates(issued.chain_pem.as_bytes()).unwrap();
    assert_eq!(
        core_verify_svid(&chain_certs, &anchors_old_first, at),
        Ok(id)
    );
}

/// Same PEM strictness as `csr_rejections::pem_wrapped_at_other_widths_is_accepted_like_go`,
/// for BYO credential files: a ca.crt wrapped at 76 columns (GNU `base64`, Java's MIME
/// encoder) loads in Sentry (Go's `pem.Decode` accepts any width) but not in Warden.
#[test]
fn ca_crt_wrapped_at_76_columns_loads_like_in_sentry() {
    let (bundle, f) = fresh(KeyAlgorithm::P256);
    let b64 = base64_encode(&der_of(&bundle.trust_anchors()[0]));
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    let ca = format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    );
    let loaded = load(&ca, &f.issuer_certificate, &f.issuer_key, NOW);
    assert!(loaded.is_ok(), "{:?}", loaded.unwrap_err());
}

//! Interop with rustls-webpki 0.103 (what rustls, and so most Rust TLS stacks, use to check
//! peer certificates): core-made root → issuer → leaf chains must verify as TLS server and
//! client certificates, for every CA key algorithm and the leaf key types daprd, the injector and
//! the operator send.
//!
//! webpki has no API for URI SANs, so each accepted chain is also run through core's own
//! `chain::verify_svid`, which must return the exact SPIFFE ID.

use std::time::Duration;

use der::Encode;
use rustls_pki_types::{CertificateDer, UnixTime as PkiTime};
use warden_core::UnixTime;
use warden_core::bundle::IssuedSvid;
use warden_core::chain::{ChainError, SvidError};
use warden_core::crypto::{CaSigner as _, KeyAlgorithm, KeyType, SoftwareKey};
use warden_tests::common;
use warden_tests::common::{TestCa, now, verified_go_csr, verify_svid_pem, workload_id};
use webpki::{EndEntityCert, KeyUsage, anchor_from_trusted_cert};
use x509_cert::Certificate;

fn der_of(cert: &Certificate) -> CertificateDer<'static> {
    CertificateDer::from(cert.to_der().expect("encode certificate"))
}

fn pki_time(t: UnixTime) -> PkiTime {
    PkiTime::since_unix_epoch(t.as_duration())
}

/// Verifies `issued`'s leaf with webpki against `anchors`, with the issuer chain of `ca` as
/// intermediates. On success returns the DER of the intermediates webpki put on the path.
fn webpki_verify(
    issued: &IssuedSvid,
    ca: &TestCa,
    anchors: &[Certificate],
    at: UnixTime,
    usage: KeyUsage,
) -> Result<Vec<Vec<u8>>, webpki::Error> {
    let anchor_ders: Vec<CertificateDer<'static>> = anchors.iter().map(der_of).collect();
    let trust_anchors: Vec<_> = anchor_ders
        .iter()
        .map(|der| anchor_from_trusted_cert(der).expect("webpki parses the root as an anchor"))
        .collect();
    let intermediates: Vec<CertificateDer<'static>> =
        ca.bundle.issuer_chain().iter().map(der_of).collect();
    let leaf_der = CertificateDer::from(issued.certificate_der.as_slice());
    let leaf = EndEntityCert::try_from(&leaf_der).expect("webpki parses the leaf");
    let path = leaf.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &trust_anchors,
        &intermediates,
        pki_time(at),
        usage,
        None,
        None,
    )?;
    Ok(path
        .intermediate_certificates()
        .map(|c| c.der().as_ref().to_vec())
        .collect())
}

/// Leaf keys as clients send them: daprd (Ed25519 since 1.18, P-256 before), the injector and
/// operator (RSA), plus P-384. The CSRs are the Go-made fixtures, so the key went through core's
/// CSR check first.
fn leaf_keys() -> Vec<(&'static str, spki::SubjectPublicKeyInfoOwned)> {
    let mut keys = Vec::new();
    for (name, file, expected) in [
        ("p256", "csr-p256.pem", KeyType::EcdsaP256),
        ("p384", "csr-p384.pem", KeyType::EcdsaP384),
        ("ed25519", "csr-ed25519.pem", KeyType::Ed25519),
        ("rsa2048", "csr-rsa2048.pem", KeyType::Rsa { bits: 2048 }),
    ] {
        let csr = verified_go_csr(file);
        assert_eq!(csr.key_type, expected, "{file}");
        keys.push((name, csr.public_key));
    }
    // And keys core generates itself (Warden's own serving SVID).
    for algorithm in [KeyAlgorithm::P256, KeyAlgorithm::Ed25519] {
        let key = SoftwareKey::generate(algorithm, &mut common::rng());
        let name = match algorithm {
            KeyAlgorithm::P256 => "core-p256",
            _ => "core-ed25519",
        };
        keys.push((name, key.public_key()));
    }
    keys
}

#[test]
fn webpki_accepts_core_chains_for_server_and_client_auth() {
    for ca_algorithm in [KeyAlgorithm::P256, KeyAlgorithm::Ed25519] {
        let ca = TestCa::generate(ca_algorithm);
        let issuer_der = ca.bundle.issuer().to_der().expect("DER");
        for (name, public_key) in leaf_keys() {
            let id = workload_id("default", &format!("webpki-{name}"));
            let dns = vec![format!("webpki-{name}.default.svc.cluster.local")];
            let issued = ca.issue(&public_key, &id, &dns);
            let at = now();
            for (usage_name, usage) in [
                ("server_auth", KeyUsage::server_auth()),
                ("client_auth", KeyUsage::client_auth()),
            ] {
                let path = webpki_verify(&issued, &ca, ca.bundle.trust_anchors(), at, usage)
                    .unwrap_or_else(|e| {
                        panic!(
                            "webpki rejects {ca_algorithm:?} CA / {name} leaf ({usage_name}): {e:?}"
                        )
                    });
                assert_eq!(
                    path,
                    vec![issuer_der.clone()],
                    "{ca_algorithm:?}/{name}: the path must run through the issuer"
                );
            }
            let got = verify_svid_pem(&issued.chain_pem, ca.bundle.trust_anchors(), at)
                .unwrap_or_else(|e| panic!("core rejects {ca_algorithm:?}/{name}: {e}"));
            assert_eq!(got, id, "{ca_algorithm:?}/{name}");
            assert_eq!(
                got.to_string(),
                format!("spiffe://public/ns/default/webpki-{name}")
            );
        }
    }
}

#[test]
fn webpki_rejects_a_trust_anchor_from_another_trust_domain() {
    let ca = TestCa::generate(KeyAlgorithm::P256);
    let other = TestCa::generate_for("other.example", KeyAlgorithm::P256);
    let key = SoftwareKey::generate(KeyAlgorithm::Ed25519, &mut common::rng());
    let id = workload_id("default", "app");
    let issued = ca.issue(&key.public_key(), &id, &[]);
    let at = now();
    // Control: the right anchor passes, so the failure below is about the anchor.
    assert!(
        webpki_verify(
            &issued,
            &ca,
            ca.bundle.trust_anchors(),
            at,
            KeyUsage::server_auth()
        )
        .is_ok()
    );

    assert_eq!(
        webpki_verify(
            &issued,
            &ca,
            other.bundle.trust_anchors(),
            at,
            KeyUsage::server_auth()
        ),
        Err(webpki::Error::UnknownIssuer)
    );
    assert_eq!(
        verify_svid_pem(&issued.chain_pem, other.bundle.trust_anchors(), at),
        Err(SvidError::Chain(ChainError::UnknownIssuer))
    );
}

#[test]
fn webpki_rejects_a_same_named_trust_anchor_with_another_key() {
    // Same trust domain, so the root subjects are equal and only the keys differ: the case of a
    // root re-made with a new key (#8646).
    let ca = TestCa::generate(KeyAlgorithm::P256);
    let other = TestCa::generate(KeyAlgorithm::P256);
    assert_eq!(
        ca.bundle.trust_anchors()[0].tbs_certificate().subject(),
        other.bundle.trust_anchors()[0].tbs_certificate().subject()
    );
    let key = SoftwareKey::generate(KeyAlgorithm::P256, &mut common::rng());
    let issued = ca.issue(&key.public_key(), &workload_id("default", "app"), &[]);
    let at = now();
    let result = webpki_verify(
        &issued,
        &ca,
        other.bundle.trust_anchors(),
        at,
        KeyUsage::client_auth(),
    );
    // webpki tries the anchor whose name matches and reports the failed signature check.
    assert_eq!(result, Err(webpki::Error::InvalidSignatureForPublicKey));

    assert!(
        matches!(
            verify_svid_pem(&issued.chain_pem, other.bundle.trust_anchors(), at),
            Err(SvidError::Chain(ChainError::BadSignature {
                position: 1,
                ..
            }))
        ),
        "core must report the issuer's signature as not made by that root"
    );
}

#[test]
fn webpki_rejects_the_leaf_after_not_after() {
    let ca = TestCa::generate(KeyAlgorithm::Ed25519);
    let key = SoftwareKey::generate(KeyAlgorithm::Ed25519, &mut common::rng());
    let issued = ca.issue(&key.public_key(), &workload_id("default", "app"), &[]);
    let not_after = issued.validity.not_after;

    // The last valid second still passes (NotAfter is inclusive)…
    assert!(
        webpki_verify(
            &issued,
            &ca,
            ca.bundle.trust_anchors(),
            not_after,
            KeyUsage::server_auth()
        )
        .is_ok()
    );
    // …the next one does not.
    let later = not_after.saturating_add(Duration::from_secs(1));
    match webpki_verify(
        &issued,
        &ca,
        ca.bundle.trust_anchors(),
        later,
        KeyUsage::server_auth(),
    ) {
        Err(webpki::Error::CertExpired {
            time,
            not_after: na,
        }) => {
            assert_eq!(time, pki_time(later));
            assert_eq!(na, pki_time(not_after));
        }
        other => panic!("expected CertExpired, got {other:?}"),
    }
    assert_eq!(
        verify_svid_pem(&issued.chain_pem, ca.bundle.trust_anchors(), later),
        Err(SvidError::Chain(ChainError::Expired {
            position: Some(0),
            not_after
        }))
    );
}

#[test]
fn webpki_rejects_the_leaf_before_not_before() {
    let ca = TestCa::generate(KeyAlgorithm::P256);
    let key = SoftwareKey::generate(KeyAlgorithm::P256, &mut common::rng());
    let issued = ca.issue(&key.public_key(), &workload_id("default", "app"), &[]);
    let before = issued
        .validity
        .not_before
        .saturating_sub(Duration::from_secs(1));
    assert!(
        matches!(
            webpki_verify(
                &issued,
                &ca,
                ca.bundle.trust_anchors(),
                before,
                KeyUsage::server_auth()
            ),
            Err(webpki::Error::CertNotValidYet { .. })
        ),
        "webpki must refuse a leaf before its NotBefore"
    );
}

//! Every field and critical flag of every certificate kind warden-core makes (root, issuer,
//! workload SVID, Sentry's serving SVID), decoded with x509-cert and compared byte for byte with
//! DER written out by hand; validity math; issuance windows; the response encoding; and each leaf
//! checked as an X509-SVID by core, by independent assertions and by rustls-webpki.

use std::time::Duration;

use der::Encode;
use warden_core::UnixTime;
use warden_core::bundle::{
    CaBundle, IssueError, IssuedSvid, WorkloadRequest, create_issuer, create_root,
    parse_certificates,
};
use warden_core::chain::{ChainError, SvidError};
use warden_core::crypto::{CaSigner, KeyAlgorithm, RustCryptoVerifier, SoftwareKey, VerifyError};
use warden_core::profile::{DEFAULT_CA_TTL, DEFAULT_CLOCK_SKEW, DEFAULT_WORKLOAD_TTL, Validity};
use warden_core::spiffe::{SpiffeId, TrustDomain};
use x509_cert::time::Time;
use x509_cert::{Certificate, Version};

use warden_tests::support::*;

/// CA settings as an operator might configure them (not the defaults).
const CA_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);
const CA_SKEW: Duration = Duration::from_secs(10 * 60);
/// Workload settings as in a Sentry config: `workloadCertTTL: 1h`, `allowedClockSkew: 5m`.
const TTL: Duration = Duration::from_secs(3600);
const SKEW: Duration = Duration::from_secs(5 * 60);

const TD: &str = "example.org";

fn sentry_o(td: &str) -> String {
    format!("spiffe://{td}/ns/{NAMESPACE}/dapr-sentry")
}

fn issue(
    bundle: &CaBundle,
    key: &SoftwareKey,
    id: &SpiffeId,
    dns: &[String],
    ttl: Duration,
    skew: Duration,
    now: UnixTime,
) -> Result<IssuedSvid, IssueError> {
    bundle.issue_workload(
        &WorkloadRequest {
            public_key: &key.public_key(),
            spiffe_id: id,
            dns_names: dns,
            ttl,
            clock_skew: skew,
        },
        now,
        &mut rng(),
    )
}

fn leaf_key(alg: KeyAlgorithm) -> SoftwareKey {
    SoftwareKey::generate(alg, &mut rng())
}

fn app_id() -> SpiffeId {
    SpiffeId::workload(&td("public"), "default", "my-app").unwrap()
}

/// The signature algorithm OID a CA key of `alg` must produce.
fn sig_oid(alg: KeyAlgorithm) -> const_oid::ObjectIdentifier {
    match alg {
        KeyAlgorithm::P256 => OID_ECDSA_WITH_SHA256,
        KeyAlgorithm::Ed25519 => OID_ED25519,
        other => panic!("unexpected {other:?}"),
    }
}

/// Asserts the serial is a positive DER INTEGER of at most 17 content bytes whose magnitude is
/// exactly 16 bytes with a non-zero top byte (≥ 121 significant bits out of 128 random ones);
/// returns the magnitude.
fn assert_serial(cert: &Certificate) -> Vec<u8> {
    let der = serial_der(cert);
    assert_eq!(der[0], 0x02, "serial is an INTEGER");
    let content = &der[2..];
    assert_eq!(usize::from(der[1]), content.len());
    assert!(content.len() <= 17, "serial is {} bytes", content.len());
    assert_eq!(content[0] & 0x80, 0, "serial is positive");
    let magnitude = if content[0] == 0 {
        assert!(content[1] >= 0x80, "serial INTEGER is minimally encoded");
        &content[1..]
    } else {
        content
    };
    assert_eq!(magnitude.len(), 16, "serial carries 128 random bits");
    assert_ne!(magnitude[0], 0);
    magnitude.to_vec()
}

/// Fields every certificate shares: v3, serial, signature algorithm (outer == TBS, no
/// parameters), no unique identifiers, validity as UTCTime before 2050.
fn assert_common(cert: &Certificate, ca_alg: KeyAlgorithm) {
    let tbs = cert.tbs_certificate();
    assert_eq!(tbs.version(), Version::V3);
    assert_serial(cert);
    assert_eq!(cert.signature_algorithm().oid, sig_oid(ca_alg));
    assert_eq!(
        cert.signature_algorithm().parameters,
        None,
        "RFC 5758/8410: no parameters"
    );
    assert_eq!(tbs.signature(), cert.signature_algorithm());
    assert_eq!(*tbs.issuer_unique_id(), None);
    assert_eq!(*tbs.subject_unique_id(), None);
    let validity = tbs.validity();
    assert!(matches!(validity.not_before, Time::UtcTime(_)));
    assert!(matches!(validity.not_after, Time::UtcTime(_)));
    // The signature BIT STRING has no unused bits; Ed25519 signatures are 64 bytes.
    let sig = cert
        .signature()
        .as_bytes()
        .expect("octet-aligned signature");
    if ca_alg == KeyAlgorithm::Ed25519 {
        assert_eq!(sig.len(), 64);
    } else {
        assert_eq!(sig[0], 0x30, "ECDSA signature is a DER Ecdsa-Sig-Value");
    }
}

fn assert_validity(cert: &Certificate, not_before: u64, not_after: u64) {
    let v = cert.tbs_certificate().validity();
    assert_eq!(v.not_before.to_unix_duration().as_secs(), not_before);
    assert_eq!(v.not_after.to_unix_duration().as_secs(), not_after);
}

/// The SPKI DER of a key as it must appear in a certificate.
fn assert_spki(cert: &Certificate, alg: KeyAlgorithm) {
    let spki = cert.tbs_certificate().subject_public_key_info();
    match alg {
        KeyAlgorithm::P256 => {
            assert_eq!(spki.algorithm.oid, OID_EC_PUBLIC_KEY);
            let curve: const_oid::ObjectIdentifier = spki
                .algorithm
                .parameters
                .as_ref()
                .unwrap()
                .decode_as()
                .unwrap();
            assert_eq!(curve.to_string(), "1.2.840.10045.3.1.7");
            let key = spki.subject_public_key.as_bytes().unwrap();
            assert_eq!(key.len(), 65);
            assert_eq!(key[0], 0x04, "uncompressed point");
        }
        KeyAlgorithm::Ed25519 => {
            assert_eq!(spki.algorithm.oid, OID_ED25519);
            assert_eq!(spki.algorithm.parameters, None);
            assert_eq!(spki.subject_public_key.as_bytes().unwrap().len(), 32);
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// RFC 7093 method 1 by an independent SHA-256 (openssl).
fn expected_key_id(cert: &Certificate) -> Vec<u8> {
    let spki = cert.tbs_certificate().subject_public_key_info();
    sha256(spki.subject_public_key.as_bytes().unwrap())[..20].to_vec()
}

fn sorted(mut oids: Vec<const_oid::ObjectIdentifier>) -> Vec<const_oid::ObjectIdentifier> {
    oids.sort();
    oids
}

/// A CA certificate's extensions: exactly `oids`; basicConstraints critical with value `bc`;
/// keyUsage critical, certificate and CRL signing; a 20-byte SKID over its public key, which is
/// returned.
fn assert_ca_extensions(
    cert: &Certificate,
    oids: Vec<const_oid::ObjectIdentifier>,
    bc: &[u8],
) -> Vec<u8> {
    assert_eq!(extension_oids(cert), sorted(oids));
    let basic_constraints = extension(cert, OID_BASIC_CONSTRAINTS).unwrap();
    assert!(basic_constraints.critical);
    assert_eq!(basic_constraints.value, bc);
    let ku = extension(cert, OID_KEY_USAGE).unwrap();
    assert!(ku.critical);
    assert_eq!(ku.value, KU_CERT_SIGN_CRL_SIGN);
    let skid = skid_of(cert);
    assert_eq!(skid.len(), 20);
    assert_eq!(skid, expected_key_id(cert));
    skid
}

fn check_root(root: &Certificate, alg: KeyAlgorithm, td: &str, nb: u64, na: u64) {
    assert_common(root, alg);
    let tbs = root.tbs_certificate();
    // Subject: exactly one RDN holding one attribute, O=<td> (UTF8String).
    assert_eq!(tbs.subject().len(), 1);
    assert_eq!(tbs.subject().iter().count(), 1);
    assert_eq!(tbs.subject().to_der().unwrap(), organization_name_der(td));
    assert_eq!(tbs.subject().to_string(), format!("O={td}"));
    assert!(matches!(
        tbs.subject().organization().unwrap(),
        Some(x509_cert::ext::pkix::name::DirectoryString::Utf8String(o)) if o == td
    ));
    assert_eq!(tbs.subject().iter().next().unwrap().oid, OID_ORGANIZATION);
    assert_eq!(
        tbs.issuer().to_der().unwrap(),
        tbs.subject().to_der().unwrap()
    );
    assert_validity(root, nb, na);
    assert_spki(root, alg);
    // Exactly basicConstraints, keyUsage, SKID.
    assert_ca_extensions(
        root,
        vec![OID_BASIC_CONSTRAINTS, OID_KEY_USAGE, OID_SUBJECT_KEY_ID],
        BC_CA_NO_PATHLEN,
    );
    assert!(extension(root, OID_SUBJECT_ALT_NAME).is_none());
    assert!(extension(root, OID_EXT_KEY_USAGE).is_none());
    assert!(extension(root, OID_AUTHORITY_KEY_ID).is_none());
    assert!(core_is_self_signed(root));
    assert_x509_svid_signing_cert(root);
}

fn check_issuer(
    issuer: &Certificate,
    root: &Certificate,
    alg: KeyAlgorithm,
    td: &str,
    nb: u64,
    na: u64,
) {
    assert_common(issuer, alg);
    let tbs = issuer.tbs_certificate();
    assert_eq!(tbs.subject().len(), 1);
    assert_eq!(
        tbs.subject().to_der().unwrap(),
        organization_name_der(&sentry_o(td))
    );
    assert_eq!(
        tbs.issuer().to_der().unwrap(),
        root.tbs_certificate().subject().to_der().unwrap()
    );
    assert_validity(issuer, nb, na);
    let skid = assert_ca_extensions(
        issuer,
        vec![
            OID_BASIC_CONSTRAINTS,
            OID_KEY_USAGE,
            OID_SUBJECT_KEY_ID,
            OID_AUTHORITY_KEY_ID,
        ],
        BC_CA_PATHLEN_0,
    );
    assert_ne!(skid, skid_of(root));
    assert_eq!(akid_of(issuer), skid_of(root));
    assert!(!core_is_self_signed(issuer));
    assert_x509_svid_signing_cert(issuer);
}

/// Every field of a workload SVID.
#[allow(clippy::too_many_arguments)]
fn check_workload(
    issued: &IssuedSvid,
    bundle: &CaBundle,
    ca_alg: KeyAlgorithm,
    key: &SoftwareKey,
    id: &str,
    dns: &[&str],
    nb: u64,
    na: u64,
) {
    let leaf = &issued.certificate;
    let issuer = bundle.issuer();
    assert_common(leaf, ca_alg);
    assert_eq!(issued.certificate_der, der_of(leaf));
    let tbs = leaf.tbs_certificate();
    assert!(tbs.subject().is_empty());
    assert_eq!(tbs.subject().to_der().unwrap(), [0x30, 0x00]);
    assert_eq!(
        tbs.issuer().to_der().unwrap(),
        issuer.tbs_certificate().subject().to_der().unwrap()
    );
    assert_eq!(
        tbs.subject_public_key_info().to_der().unwrap(),
        key.public_key().to_der().unwrap()
    );
    assert_spki(leaf, key.algorithm());
    assert_validity(leaf, nb, na);
    assert_eq!(issued.validity.not_before, UnixTime::from_secs(nb));
    assert_eq!(issued.validity.not_after, UnixTime::from_secs(na));
    // Exactly: keyUsage, extKeyUsage, basicConstraints, AKID, SAN. No SKID.
    assert_eq!(extensions(leaf).len(), 5);
    assert_eq!(
        extension_oids(leaf),
        sorted(vec![
            OID_KEY_USAGE,
            OID_EXT_KEY_USAGE,
            OID_BASIC_CONSTRAINTS,
            OID_AUTHORITY_KEY_ID,
            OID_SUBJECT_ALT_NAME
        ])
    );
    let ku = extension(leaf, OID_KEY_USAGE).unwrap();
    assert!(ku.critical);
    assert_eq!(ku.value, KU_DIGITAL_SIGNATURE);
    let eku = extension(leaf, OID_EXT_KEY_USAGE).unwrap();
    assert!(!eku.critical);
    assert_eq!(eku.value, EKU_SERVER_CLIENT);
    let bc = extension(leaf, OID_BASIC_CONSTRAINTS).unwrap();
    assert!(bc.critical, "profile.rs: critical CA:false");
    assert_eq!(bc.value, BC_NOT_CA);
    assert_eq!(akid_of(leaf), skid_of(issuer));
    let san = extension(leaf, OID_SUBJECT_ALT_NAME).unwrap();
    assert!(san.critical, "empty subject => critical SAN");
    assert_eq!(san.value, san_der(id, dns));
    let (critical, uris, dns_names) = san_names(leaf);
    assert!(critical);
    assert_eq!(uris, [id]);
    assert_eq!(dns_names, dns);
    assert!(extension(leaf, OID_SUBJECT_KEY_ID).is_none());

    // SPIFFE X509-SVID rules: independent assertions, core's checker, and rustls-webpki.
    assert_x509_svid_leaf(leaf, id);
    assert_eq!(core_svid_id(leaf).unwrap().to_string(), id);
    let now = UnixTime::from_secs(nb).saturating_add(SKEW);
    let chain_certs = parse_certificates(issued.chain_pem.as_bytes()).unwrap();
    assert_eq!(
        core_verify_svid(&chain_certs, bundle.trust_anchors(), now)
            .unwrap()
            .to_string(),
        id
    );
    webpki_verify(leaf, bundle.issuer_chain(), bundle.trust_anchors(), now).unwrap();
    for name in dns {
        assert!(webpki_valid_for_dns(leaf, name), "{name}");
    }
    assert!(!webpki_valid_for_dns(leaf, "not-listed.example"));
}

fn roots_and_issuers(alg: KeyAlgorithm) {
    let trust_domain = td(TD);
    let (bundle, files) = generate(&trust_domain, alg, CA_LIFETIME, CA_SKEW, NOW);
    let nb = NOW.as_secs() - CA_SKEW.as_secs();
    let na = NOW.as_secs() + CA_LIFETIME.as_secs();
    assert_eq!(bundle.trust_anchors().len(), 1);
    assert_eq!(bundle.issuer_chain().len(), 1);
    let root = &bundle.trust_anchors()[0];
    let issuer = bundle.issuer();
    check_root(root, alg, TD, nb, na);
    check_issuer(issuer, root, alg, TD, nb, na);
    assert_spki(issuer, alg);
    assert_eq!(
        issuer
            .tbs_certificate()
            .subject_public_key_info()
            .to_der()
            .unwrap(),
        issuer_key(&files).public_key().to_der().unwrap()
    );
    assert_ne!(serial_der(root), serial_der(issuer));
    assert_eq!(
        bundle.issuer_validity(),
        Validity {
            not_before: UnixTime::from_secs(nb),
            not_after: UnixTime::from_secs(na)
        }
    );
    // The files hold exactly these certificates, as Go writes PEM.
    assert_eq!(files.trust_anchors, pem("CERTIFICATE", &der_of(root)));
    assert_eq!(
        files.issuer_certificate,
        pem("CERTIFICATE", &der_of(issuer))
    );
    let key_blocks = pem_blocks(&files.issuer_key);
    assert_eq!(key_blocks.len(), 1);
    assert_eq!(key_blocks[0].0, "PRIVATE KEY", "issuer.key is PKCS#8");
    core_verify_chain(std::slice::from_ref(issuer), bundle.trust_anchors(), NOW).unwrap();
    // Reloading the files gives the same credentials.
    let reloaded = CaBundle::from_pem(
        files.trust_anchors.as_bytes(),
        files.issuer_certificate.as_bytes(),
        files.issuer_key.as_bytes(),
        NOW,
        &RustCryptoVerifier,
    )
    .unwrap();
    assert_eq!(reloaded.trust_anchors(), bundle.trust_anchors());
    assert_eq!(reloaded.issuer_chain(), bundle.issuer_chain());
}

#[test]
fn root_and_issuer_profiles_p256() {
    roots_and_issuers(KeyAlgorithm::P256);
}

#[test]
fn root_and_issuer_profiles_ed25519() {
    roots_and_issuers(KeyAlgorithm::Ed25519);
}

fn workload(ca_alg: KeyAlgorithm, leaf_alg: KeyAlgorithm) {
    let (bundle, _) = generate(&td(TD), ca_alg, CA_LIFETIME, CA_SKEW, NOW);
    let key = leaf_key(leaf_alg);
    let id = app_id();
    let dns = [
        "dapr-sidecar-injector.dapr-system.svc",
        "dapr-scheduler-server-0.dapr-scheduler-server.dapr-system.svc.cluster.local",
        "b.example",
    ];
    let dns_owned: Vec<String> = dns.iter().map(|s| s.to_string()).collect();
    // A sub-second "now" one hour after the CA was made: both ends truncate to whole seconds.
    let now_secs = NOW.as_secs() + 3600;
    let now = UnixTime::from_millis(now_secs * 1000 + 750);
    let issued = issue(&bundle, &key, &id, &dns_owned, TTL, SKEW, now).unwrap();
    check_workload(
        &issued,
        &bundle,
        ca_alg,
        &key,
        "spiffe://public/ns/default/my-app",
        &dns,
        now_secs - 300,
        now_secs + 3600,
    );
}

#[test]
fn workload_svid_profile_p256_ca_ed25519_leaf() {
    workload(KeyAlgorithm::P256, KeyAlgorithm::Ed25519);
}

#[test]
fn workload_svid_profile_ed25519_ca_p256_leaf() {
    workload(KeyAlgorithm::Ed25519, KeyAlgorithm::P256);
}

#[test]
fn workload_svid_profile_same_key_types() {
    workload(KeyAlgorithm::P256, KeyAlgorithm::P256);
    workload(KeyAlgorithm::Ed25519, KeyAlgorithm::Ed25519);
}

#[test]
fn workload_svid_without_dns_names_has_only_the_uri() {
    let (bundle, _) = generate(&td(TD), KeyAlgorithm::P256, CA_LIFETIME, CA_SKEW, NOW);
    let key = leaf_key(KeyAlgorithm::Ed25519);
    let issued = issue(&bundle, &key, &app_id(), &[], TTL, SKEW, NOW).unwrap();
    let id = "spiffe://public/ns/default/my-app";
    let nb = NOW.as_secs() - 300;
    check_workload(
        &issued,
        &bundle,
        KeyAlgorithm::P256,
        &key,
        id,
        &[],
        nb,
        NOW.as_secs() + 3600,
    );
    // SEQUENCE { [6] "spiffe://public/ns/default/my-app" }
    let mut expected = vec![0x30, 2 + id.len() as u8, 0x86, id.len() as u8];
    expected.extend_from_slice(id.as_bytes());
    assert_eq!(
        extension(&issued.certificate, OID_SUBJECT_ALT_NAME)
            .unwrap()
            .value,
        expected
    );
}

#[test]
fn sentry_serving_svid_is_the_workload_profile_for_sentrys_id() {
    for ca_alg in [KeyAlgorithm::P256, KeyAlgorithm::Ed25519] {
        let trust_domain = td("cluster.local");
        let (bundle, _) = generate(&trust_domain, ca_alg, CA_LIFETIME, CA_SKEW, NOW);
        // Sentry's own key is Ed25519 (dapr-sentry.md §1).
        let key = leaf_key(KeyAlgorithm::Ed25519);
        let id = SpiffeId::sentry(&trust_domain, NAMESPACE).unwrap();
        assert_eq!(
            id.to_string(),
            "spiffe://cluster.local/ns/dapr-system/dapr-sentry"
        );
        let issued = issue(&bundle, &key, &id, &[], TTL, SKEW, NOW).unwrap();
        check_workload(
            &issued,
            &bundle,
            ca_alg,
            &key,
            "spiffe://cluster.local/ns/dapr-system/dapr-sentry",
            &[],
            NOW.as_secs() - 300,
            NOW.as_secs() + 3600,
        );
        // No DNS SAN: clients authorize Sentry by SPIFFE ID.
        assert!(san_names(&issued.certificate).2.is_empty());
        // The serving SVID's ID is the O of the issuer that signed it.
        assert_eq!(
            bundle.issuer().tbs_certificate().subject().to_string(),
            format!("O={id}")
        );
    }
}

#[test]
fn serials_are_positive_random_128_bit_and_distinct() {
    let (bundle, _) = generate(&td(TD), KeyAlgorithm::P256, CA_LIFETIME, CA_SKEW, NOW);
    let key = leaf_key(KeyAlgorithm::Ed25519);
    let id = app_id();
    let serials: Vec<Vec<u8>> = (0..64)
        .map(|_| {
            let issued = issue(&bundle, &key, &id, &[], TTL, SKEW, NOW).unwrap();
            assert_serial(&issued.certificate)
        })
        .collect();
    let mut unique = serials.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), serials.len(), "two issuances share a serial");
    // Every one of the 128 bit positions takes both values across 64 serials: the serial holds
    // 128 bits of randomness, not a counter or a fixed prefix (false failure chance ~2^-56).
    let mut varies = [0u8; 16];
    for s in &serials[1..] {
        for (i, (a, b)) in s.iter().zip(&serials[0]).enumerate() {
            varies[i] |= a ^ b;
        }
    }
    assert_eq!(varies, [0xff; 16], "bits that never change: {varies:02x?}");
    // Both encodings appear: 16 bytes (top bit clear) and 17 bytes (0x00 sign byte).
    let lengths: Vec<usize> = (0..64)
        .map(|_| {
            let issued = issue(&bundle, &key, &id, &[], TTL, SKEW, NOW).unwrap();
            serial_der(&issued.certificate).len() - 2
        })
        .collect();
    assert!(
        lengths.contains(&16) && lengths.contains(&17),
        "{lengths:?}"
    );
}

#[test]
fn defaults_are_sentrys() {
    assert_eq!(DEFAULT_WORKLOAD_TTL, Duration::from_secs(24 * 3600));
    assert_eq!(DEFAULT_CLOCK_SKEW, Duration::from_secs(15 * 60));
    assert_eq!(DEFAULT_CA_TTL, Duration::from_secs(365 * 24 * 3600));
    let trust_domain = td(TD);
    let (bundle, _) = generate(
        &trust_domain,
        KeyAlgorithm::Ed25519,
        DEFAULT_CA_TTL,
        DEFAULT_CLOCK_SKEW,
        NOW,
    );
    let root = &bundle.trust_anchors()[0];
    assert_validity(root, NOW.as_secs() - 900, NOW.as_secs() + 365 * 86400);
    assert_validity(
        bundle.issuer(),
        NOW.as_secs() - 900,
        NOW.as_secs() + 365 * 86400,
    );
    let key = leaf_key(KeyAlgorithm::Ed25519);
    let issued = issue(
        &bundle,
        &key,
        &app_id(),
        &[],
        DEFAULT_WORKLOAD_TTL,
        DEFAULT_CLOCK_SKEW,
        NOW,
    )
    .unwrap();
    assert_validity(
        &issued.certificate,
        NOW.as_secs() - 900,
        NOW.as_secs() + 86400,
    );
}

#[test]
fn ca_validity_past_2049_is_generalized_time() {
    // RFC 5280 4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050.
    let lifetime = Duration::from_secs(30 * 365 * 24 * 3600);
    let (bundle, _) = generate(&td(TD), KeyAlgorithm::P256, lifetime, CA_SKEW, NOW);
    for cert in [&bundle.trust_anchors()[0], bundle.issuer()] {
        let v = cert.tbs_certificate().validity();
        assert!(matches!(v.not_before, Time::UtcTime(_)));
        assert!(matches!(v.not_after, Time::GeneralTime(_)));
        assert_validity(
            cert,
            NOW.as_secs() - CA_SKEW.as_secs(),
            NOW.as_secs() + lifetime.as_secs(),
        );
    }
}

#[test]
fn leaf_not_after_is_capped_at_the_issuer_not_after() {
    // The issuer expires 2h after NOW; a 24h TTL requested 1h after NOW must stop there.
    let ca_lifetime = 2 * HOUR;
    let (bundle, _) = generate(&td(TD), KeyAlgorithm::P256, ca_lifetime, CA_SKEW, NOW);
    let issuer_na = NOW.as_secs() + 2 * 3600;
    assert_eq!(bundle.issuer_validity().not_after.as_secs(), issuer_na);
    let key = leaf_key(KeyAlgorithm::Ed25519);
    let id = app_id();
    let now = shift(NOW, 3600);
    let issued = issue(&bundle, &key, &id, &[], DAY, SKEW, now).unwrap();
    assert_validity(&issued.certificate, now.as_secs() - 300, issuer_na);
    assert_eq!(issued.validity.not_after.as_secs(), issuer_na);
    webpki_verify(
        &issued.certificate,
        bundle.issuer_chain(),
        bundle.trust_anchors(),
        now,
    )
    .unwrap();
    // A TTL ending exactly at the issuer's NotAfter is not changed; one second less is kept.
    let exact = issue(&bundle, &key, &id, &[], HOUR, SKEW, now).unwrap();
    assert_eq!(exact.validity.not_after.as_secs(), issuer_na);
    let shorter = issue(
        &bundle,
        &key,
        &id,
        &[],
        HOUR - Duration::from_secs(1),
        SKEW,
        now,
    )
    .unwrap();
    assert_eq!(shorter.validity.not_after.as_secs(), issuer_na - 1);
    // At the issuer's last second the leaf's window ends right there.
    let last = issue(
        &bundle,
        &key,
        &id,
        &[],
        TTL,
        SKEW,
        UnixTime::from_secs(issuer_na),
    )
    .unwrap();
    assert_validity(&last.certificate, issuer_na - 300, issuer_na);
}

/// Issuing an SVID for `key` from `bundle` at each of `refused` fails with an error that
/// `is_expected` accepts and that reads `text`; at `edge` (the issuer's validity bound) it
/// succeeds.
fn issuance_is_refused_outside_the_issuer_validity(
    (bundle, key): (&CaBundle, &SoftwareKey),
    refused: &[UnixTime],
    is_expected: impl Fn(&IssueError) -> bool,
    text: &str,
    edge: UnixTime,
) {
    for &now in refused {
        let err = issue(bundle, key, &app_id(), &[], TTL, SKEW, now).unwrap_err();
        assert!(is_expected(&err), "{err:?}");
        assert_eq!(err.to_string(), text);
    }
    issue(bundle, key, &app_id(), &[], TTL, SKEW, edge).unwrap();
}

#[test]
fn issuance_is_refused_after_the_issuer_expires() {
    let (bundle, _) = generate(&td(TD), KeyAlgorithm::P256, HOUR, CA_SKEW, NOW);
    let na = NOW.as_secs() + 3600;
    let key = leaf_key(KeyAlgorithm::Ed25519);
    issuance_is_refused_outside_the_issuer_validity(
        (&bundle, &key),
        &[
            UnixTime::from_secs(na + 1),
            UnixTime::from_millis(na * 1000 + 1),
            UnixTime::from_secs(na + 365 * 86400),
        ],
        |err| matches!(err, IssueError::IssuerExpired { not_after } if not_after.as_secs() == na),
        "issuer certificate expired at 2026-03-01T13:00:00Z",
        UnixTime::from_secs(na),
    );
}

#[test]
fn issuance_is_refused_before_the_issuer_is_valid() {
    let (bundle, _) = generate(&td(TD), KeyAlgorithm::Ed25519, HOUR, CA_SKEW, NOW);
    let nb = NOW.as_secs() - CA_SKEW.as_secs();
    let key = leaf_key(KeyAlgorithm::P256);
    issuance_is_refused_outside_the_issuer_validity(
        (&bundle, &key),
        &[UnixTime::from_secs(nb - 1), UnixTime::from_secs(0)],
        |err| matches!(err, IssueError::IssuerNotYetValid { not_before } if not_before.as_secs() == nb),
        "issuer certificate is not valid before 2026-03-01T11:50:00Z",
        UnixTime::from_secs(nb),
    );
}

#[test]
fn issuance_is_refused_for_an_id_without_a_path() {
    let trust_domain = td(TD);
    let (bundle, _) = generate(&trust_domain, KeyAlgorithm::P256, CA_LIFETIME, CA_SKEW, NOW);
    let key = leaf_key(KeyAlgorithm::Ed25519);
    let err = issue(&bundle, &key, &trust_domain.id(), &[], TTL, SKEW, NOW).unwrap_err();
    assert!(matches!(&err, IssueError::InvalidName(n) if n == "spiffe://example.org"));
    assert_eq!(
        err.to_string(),
        "invalid name for a certificate: spiffe://example.org"
    );
}

#[test]
fn chain_pem_is_leaf_then_issuer_and_anchors_pem_reparses_to_the_roots() {
    for alg in [KeyAlgorithm::P256, KeyAlgorithm::Ed25519] {
        let (bundle, files) = generate(&td(TD), alg, CA_LIFETIME, CA_SKEW, NOW);
        let root = bundle.trust_anchors()[0].clone();
        let issuer = bundle.issuer().clone();
        // Also load issuer.crt with the root appended: the self-signed root must still not
        // appear in the response chain.
        let issuer_crt_with_root = format!("{}{}", files.issuer_certificate, files.trust_anchors);
        let loaded = CaBundle::from_pem(
            files.trust_anchors.as_bytes(),
            issuer_crt_with_root.as_bytes(),
            files.issuer_key.as_bytes(),
            NOW,
            &RustCryptoVerifier,
        )
        .unwrap();
        for b in [&bundle, &loaded] {
            let issued = issue(b, &leaf_key(alg), &app_id(), &[], TTL, SKEW, NOW).unwrap();
            // Byte-exact: PEM(leaf) then PEM(issuer), LF, 64 columns, no root.
            assert_eq!(
                issued.chain_pem,
                format!(
                    "{}{}",
                    pem("CERTIFICATE", &issued.certificate_der),
                    pem("CERTIFICATE", &der_of(&issuer))
                )
            );
            let blocks = pem_blocks(&issued.chain_pem);
            assert_eq!(blocks.len(), 2);
            assert!(blocks.iter().all(|(label, _)| label == "CERTIFICATE"));
            assert!(blocks.iter().all(|(_, der)| *der != der_of(&root)));
            for cert in parse_certificates(issued.chain_pem.as_bytes()).unwrap() {
                assert!(!core_is_self_signed(&cert));
            }
            // trust_chain_certificates[0]: exactly the roots.
            assert_eq!(b.trust_anchors_pem(), pem("CERTIFICATE", &der_of(&root)));
            assert_eq!(
                parse_certificates(b.trust_anchors_pem().as_bytes()).unwrap(),
                vec![root.clone()]
            );
            assert_eq!(b.issuer_chain_pem(), pem("CERTIFICATE", &der_of(&issuer)));
        }
    }
}

#[test]
fn core_and_independent_checkers_reject_ca_certificates_as_leaves() {
    let (bundle, _) = generate(&td(TD), KeyAlgorithm::P256, CA_LIFETIME, CA_SKEW, NOW);
    for ca in [&bundle.trust_anchors()[0], bundle.issuer()] {
        assert_eq!(core_svid_id(ca), Err(SvidError::LeafIsCa));
        let ca = ca.clone();
        let independent = std::panic::catch_unwind(move || {
            assert_x509_svid_leaf(&ca, "spiffe://example.org/ns/dapr-system/dapr-sentry")
        });
        assert!(independent.is_err());
    }
    // And a real leaf does not pass as a signing certificate.
    let issued = issue(
        &bundle,
        &leaf_key(KeyAlgorithm::P256),
        &app_id(),
        &[],
        TTL,
        SKEW,
        NOW,
    )
    .unwrap();
    let leaf = issued.certificate.clone();
    assert!(std::panic::catch_unwind(move || assert_x509_svid_signing_cert(&leaf)).is_err());
    // A leaf checked against the wrong anchors fails in core and in webpki.
    let (other, _) = generate(&td(TD), KeyAlgorithm::P256, CA_LIFETIME, CA_SKEW, NOW);
    let chain_certs = parse_certificates(issued.chain_pem.as_bytes()).unwrap();
    assert_eq!(
        core_verify_svid(&chain_certs, other.trust_anchors(), NOW),
        Err(SvidError::Chain(ChainError::BadSignature {
            position: 1,
            error: VerifyError::BadSignature
        }))
    );
    assert!(
        webpki_verify(
            &issued.certificate,
            bundle.issuer_chain(),
            other.trust_anchors(),
            NOW
        )
        .is_err()
    );
    // And outside its window.
    let late = shift(NOW, 3601);
    assert!(matches!(
        core_verify_svid(&chain_certs, bundle.trust_anchors(), late),
        Err(SvidError::Chain(ChainError::Expired {
            position: Some(0),
            ..
        }))
    ));
    assert!(
        webpki_verify(
            &issued.certificate,
            bundle.issuer_chain(),
            bundle.trust_anchors(),
            late
        )
        .is_err()
    );
}

/// `renew-certificate --private-key`: the operator keeps the root key, so a new issuer can be
/// made later from the same root with `create_issuer` and loaded with `from_parts`.
#[test]
fn from_parts_with_an_issuer_from_a_kept_root_key() {
    for (root_alg, issuer_alg) in [
        (KeyAlgorithm::P256, KeyAlgorithm::Ed25519),
        (KeyAlgorithm::Ed25519, KeyAlgorithm::P256),
    ] {
        let trust_domain = td(TD);
        let sentry_id = SpiffeId::sentry(&trust_domain, NAMESPACE).unwrap();
        let root_key = SoftwareKey::generate(root_alg, &mut rng());
        let root_validity = Validity::backdated(NOW, CA_SKEW, 365 * DAY);
        let root = create_root(&root_key, &trust_domain, root_validity, &mut rng()).unwrap();
        let root_nb = NOW.as_secs() - CA_SKEW.as_secs();
        let root_na = NOW.as_secs() + 365 * 86400;
        check_root(&root, root_alg, TD, root_nb, root_na);
        assert_eq!(
            root.tbs_certificate()
                .subject_public_key_info()
                .to_der()
                .unwrap(),
            root_key.public_key().to_der().unwrap()
        );

        let make_issuer = |at: UnixTime, lifetime: Duration| {
            let key = SoftwareKey::generate(issuer_alg, &mut rng());
            let cert = create_issuer(
                &root_key,
                &root,
                key.public_key(),
                &sentry_id,
                Validity::backdated(at, CA_SKEW, lifetime),
                &mut rng(),
            )
            .unwrap();
            (key, cert)
        };

        // First issuer, 90 days; signed by the root's algorithm.
        let (key1, issuer1) = make_issuer(NOW, 90 * DAY);
        check_issuer(
            &issuer1,
            &root,
            root_alg,
            TD,
            root_nb,
            NOW.as_secs() + 90 * 86400,
        );
        assert_spki(&issuer1, issuer_alg);
        let bundle1 = CaBundle::from_parts(
            vec![root.clone()],
            vec![issuer1.clone()],
            Box::new(key1),
            NOW,
            &RustCryptoVerifier,
        )
        .unwrap();
        // Leaves are signed with the issuer key's algorithm, whatever the root uses.
        let key = leaf_key(KeyAlgorithm::Ed25519);
        let leaf1 = issue(&bundle1, &key, &app_id(), &[], TTL, SKEW, NOW).unwrap();
        check_workload(
            &leaf1,
            &bundle1,
            issuer_alg,
            &key,
            "spiffe://public/ns/default/my-app",
            &[],
            NOW.as_secs() - 300,
            NOW.as_secs() + 3600,
        );

        // 60 days later, a renewed issuer from the same kept root key. Its NotAfter request
        // (400 days) is capped at the root's.
        let later = shift(NOW, 60 * 86400);
        let (key2, issuer2) = make_issuer(later, 400 * DAY);
        assert_validity(&issuer2, later.as_secs() - CA_SKEW.as_secs(), root_na);
        assert_ne!(skid_of(&issuer2), skid_of(&issuer1));
        assert_eq!(akid_of(&issuer2), skid_of(&root));
        let bundle2 = CaBundle::from_parts(
            vec![root.clone()],
            vec![issuer2],
            Box::new(key2),
            later,
            &RustCryptoVerifier,
        )
        .unwrap();
        let leaf2 = issue(&bundle2, &key, &app_id(), &[], TTL, SKEW, later).unwrap();
        // Same ca.crt: no client needs new anchors.
        assert_eq!(bundle1.trust_anchors_pem(), bundle2.trust_anchors_pem());
        for (issued, b, at) in [(&leaf1, &bundle1, NOW), (&leaf2, &bundle2, later)] {
            let chain_certs = parse_certificates(issued.chain_pem.as_bytes()).unwrap();
            core_verify_svid(&chain_certs, bundle2.trust_anchors(), at).unwrap();
            webpki_verify(
                &issued.certificate,
                b.issuer_chain(),
                bundle2.trust_anchors(),
                at,
            )
            .unwrap();
        }
    }
}

/// Root rotation: ca.crt holds the old and the new root; leaves from either issuer verify.
#[test]
fn two_roots_in_ca_crt_verify_leaves_from_either_issuer() {
    let trust_domain = td(TD);
    let (old, old_files) = generate(&trust_domain, KeyAlgorithm::P256, CA_LIFETIME, CA_SKEW, NOW);
    let (new, new_files) = generate(
        &trust_domain,
        KeyAlgorithm::Ed25519,
        CA_LIFETIME,
        CA_SKEW,
        NOW,
    );
    let old_root = old.trust_anchors()[0].clone();
    let new_root = new.trust_anchors()[0].clone();
    // Same subject (O=<td>), different keys.
    assert_eq!(
        old_root.tbs_certificate().subject(),
        new_root.tbs_certificate().subject()
    );
    let ca_crt = format!(
        "# old root\n{}# new root\n{}",
        old_files.trust_anchors, new_files.trust_anchors
    );
    let anchors = vec![old_root.clone(), new_root.clone()];
    let key = leaf_key(KeyAlgorithm::Ed25519);
    let mut leaves = Vec::new();
    for files in [&old_files, &new_files] {
        let bundle = CaBundle::from_pem(
            ca_crt.as_bytes(),
            files.issuer_certificate.as_bytes(),
            files.issuer_key.as_bytes(),
            NOW,
            &RustCryptoVerifier,
        )
        .unwrap();
        assert_eq!(bundle.trust_anchors(), anchors.as_slice());
        // Comments stripped, both roots in order.
        assert_eq!(
            bundle.trust_anchors_pem(),
            format!(
                "{}{}",
                pem("CERTIFICATE", &der_of(&old_root)),
                pem("CERTIFICATE", &der_of(&new_root))
            )
        );
        let issued = issue(&bundle, &key, &app_id(), &[], TTL, SKEW, NOW).unwrap();
        leaves.push((issued, bundle));
    }
    for (issued, bundle) in &leaves {
        let chain_certs = parse_certificates(issued.chain_pem.as_bytes()).unwrap();
        assert_eq!(
            core_verify_svid(&chain_certs, &anchors, NOW)
                .unwrap()
                .to_string(),
            "spiffe://public/ns/default/my-app"
        );
        webpki_verify(&issued.certificate, bundle.issuer_chain(), &anchors, NOW).unwrap();
        // Either order of anchors works.
        let reversed = [new_root.clone(), old_root.clone()];
        core_verify_svid(&chain_certs, &reversed, NOW).unwrap();
        webpki_verify(&issued.certificate, bundle.issuer_chain(), &reversed, NOW).unwrap();
    }
    // Each leaf needs its own root: with only the other root it does not verify.
    let (old_leaf, old_bundle) = &leaves[0];
    let old_chain = parse_certificates(old_leaf.chain_pem.as_bytes()).unwrap();
    assert!(core_verify_svid(&old_chain, std::slice::from_ref(&new_root), NOW).is_err());
    assert!(
        webpki_verify(
            &old_leaf.certificate,
            old_bundle.issuer_chain(),
            std::slice::from_ref(&new_root),
            NOW
        )
        .is_err()
    );
    let (new_leaf, _) = &leaves[1];
    let new_chain = parse_certificates(new_leaf.chain_pem.as_bytes()).unwrap();
    assert!(core_verify_svid(&new_chain, std::slice::from_ref(&old_root), NOW).is_err());
}

#[test]
fn trust_domain_is_any_valid_name() {
    // A trust domain with every allowed character class goes verbatim into O.
    let name = "prod-1.corp_x.example";
    let trust_domain = TrustDomain::new(name).unwrap();
    let (bundle, _) = generate(&trust_domain, KeyAlgorithm::P256, CA_LIFETIME, CA_SKEW, NOW);
    let nb = NOW.as_secs() - CA_SKEW.as_secs();
    let na = NOW.as_secs() + CA_LIFETIME.as_secs();
    check_root(&bundle.trust_anchors()[0], KeyAlgorithm::P256, name, nb, na);
    check_issuer(
        bundle.issuer(),
        &bundle.trust_anchors()[0],
        KeyAlgorithm::P256,
        name,
        nb,
        na,
    );
}

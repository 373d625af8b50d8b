//! Helpers for the `x509` tests (`profiles`, `csr_rejections`, `bundle_errors`).
//!
//! Everything here is deliberately independent of `warden-core`'s own checks: DER is compared
//! byte for byte against values written out by hand, base64/PEM are re-implemented, SHA-256
//! comes from the openssl CLI and chains are cross-checked with rustls-webpki.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use const_oid::ObjectIdentifier;
use der::Encode;
use rustls_pki_types::CertificateDer;
use warden_core::UnixTime;
use warden_core::bundle::{CaBundle, CaParams, CredentialFiles};
use warden_core::crypto::{KeyAlgorithm, SoftwareKey};
use warden_core::spiffe::TrustDomain;
use x509_cert::Certificate;

pub use crate::common::{data_path, go_csr_pem, rng};

/// 2026-03-01T12:00:00Z: a fixed "now" so every date in these tests is reproducible.
pub const NOW: UnixTime = UnixTime::from_secs(1_772_366_400);

/// One minute.
pub const MINUTE: Duration = Duration::from_secs(60);
/// One hour.
pub const HOUR: Duration = Duration::from_secs(3600);
/// One day.
pub const DAY: Duration = Duration::from_secs(24 * 3600);

/// Namespace used for Sentry in these tests.
pub const NAMESPACE: &str = "dapr-system";

// OIDs written out here rather than taken from core.
/// organizationName (2.5.4.10).
pub const OID_ORGANIZATION: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.10");
/// basicConstraints.
pub const OID_BASIC_CONSTRAINTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.19");
/// keyUsage.
pub const OID_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.15");
/// extKeyUsage.
pub const OID_EXT_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37");
/// subjectKeyIdentifier.
pub const OID_SUBJECT_KEY_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.14");
/// authorityKeyIdentifier.
pub const OID_AUTHORITY_KEY_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.35");
/// subjectAltName.
pub const OID_SUBJECT_ALT_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.17");
/// ecdsa-with-SHA256.
pub const OID_ECDSA_WITH_SHA256: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
/// ecdsa-with-SHA1.
pub const OID_ECDSA_WITH_SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.1");
/// sha256WithRSAEncryption.
pub const OID_SHA256_WITH_RSA: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
/// id-Ed25519.
pub const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
/// id-X25519.
pub const OID_X25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.110");
/// id-ecPublicKey.
pub const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// id-dsa.
pub const OID_DSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10040.4.1");
/// secp521r1 (P-521).
pub const OID_SECP521R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.35");

/// basicConstraints `SEQUENCE { cA TRUE }`.
pub const BC_CA_NO_PATHLEN: &[u8] = &[0x30, 0x03, 0x01, 0x01, 0xff];
/// basicConstraints `SEQUENCE { cA TRUE, pathLenConstraint 0 }`.
pub const BC_CA_PATHLEN_0: &[u8] = &[0x30, 0x06, 0x01, 0x01, 0xff, 0x02, 0x01, 0x00];
/// basicConstraints `SEQUENCE {}`: cA FALSE is the DEFAULT, so DER omits it.
pub const BC_NOT_CA: &[u8] = &[0x30, 0x00];
/// keyUsage BIT STRING with keyCertSign (bit 5) and cRLSign (bit 6) only: 1 unused bit, 0x06.
pub const KU_CERT_SIGN_CRL_SIGN: &[u8] = &[0x03, 0x02, 0x01, 0x06];
/// keyUsage BIT STRING with digitalSignature (bit 0) only: 7 unused bits, 0x80.
pub const KU_DIGITAL_SIGNATURE: &[u8] = &[0x03, 0x02, 0x07, 0x80];
/// extKeyUsage `SEQUENCE { id-kp-serverAuth, id-kp-clientAuth }`.
pub const EKU_SERVER_CLIENT: &[u8] = &[
    0x30, 0x14, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01, 0x06, 0x08, 0x2b, 0x06,
    0x01, 0x05, 0x05, 0x07, 0x03, 0x02,
];

/// A trust domain that must be valid.
pub fn td(name: &str) -> TrustDomain {
    TrustDomain::new(name).unwrap()
}

/// CA parameters with [`NAMESPACE`] as Sentry's namespace.
pub fn ca_params<'a>(
    trust_domain: &'a TrustDomain,
    key_algorithm: KeyAlgorithm,
    lifetime: Duration,
    clock_skew: Duration,
) -> CaParams<'a> {
    CaParams {
        trust_domain,
        namespace: NAMESPACE,
        key_algorithm,
        lifetime,
        clock_skew,
    }
}

/// A fresh self-signed CA (root + issuer) as Sentry makes on first start.
pub fn generate(
    trust_domain: &TrustDomain,
    key_algorithm: KeyAlgorithm,
    lifetime: Duration,
    clock_skew: Duration,
    now: UnixTime,
) -> (CaBundle, CredentialFiles) {
    CaBundle::generate(
        &ca_params(trust_domain, key_algorithm, lifetime, clock_skew),
        now,
        &mut rng(),
    )
    .unwrap()
}

/// The issuer key of a generated credential set.
pub fn issuer_key(files: &CredentialFiles) -> SoftwareKey {
    SoftwareKey::from_pem(files.issuer_key.as_bytes()).unwrap()
}

/// A time as a Duration since the epoch offset by `delta` seconds (may be negative).
pub fn shift(t: UnixTime, delta: i64) -> UnixTime {
    if delta >= 0 {
        t.saturating_add(Duration::from_secs(delta.unsigned_abs()))
    } else {
        t.saturating_sub(Duration::from_secs(delta.unsigned_abs()))
    }
}

// ---------------------------------------------------------------------------------------------
// base64 and PEM, written out independently of core and pem-rfc7468.

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = [
            B64[(n >> 18) as usize & 63],
            B64[(n >> 12) as usize & 63],
            B64[(n >> 6) as usize & 63],
            B64[n as usize & 63],
        ];
        let keep = chunk.len() + 1;
        for (i, c) in chars.iter().enumerate() {
            out.push(if i < keep { char::from(*c) } else { '=' });
        }
    }
    out
}

/// Standard base64, ignoring whitespace and padding; panics on other characters.
pub fn base64_decode(text: &str) -> Vec<u8> {
    let mut bits = 0u32;
    let mut nbits = 0;
    let mut out = Vec::new();
    for c in text
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
    {
        let v = B64
            .iter()
            .position(|x| *x == c)
            .unwrap_or_else(|| panic!("not base64: {:?}", char::from(c)));
        bits = (bits << 6) | v as u32;
        nbits += 6;
        if nbits >= 8 {
            nbits -= 8;
            out.push((bits >> nbits) as u8);
        }
    }
    out
}

/// A PEM block with `label`: 64-column base64, LF line endings (as Go writes).
pub fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64_encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Every PEM block in `text` as (label, DER), in order.
pub fn pem_blocks(text: &str) -> Vec<(String, Vec<u8>)> {
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let after = &rest[start + "-----BEGIN ".len()..];
        let label_end = after.find("-----").unwrap();
        let label = after[..label_end].to_string();
        let end_marker = format!("-----END {label}-----");
        let body_start = label_end + 5;
        let end = after.find(&end_marker).unwrap();
        blocks.push((label, base64_decode(&after[body_start..end])));
        rest = &after[end + end_marker.len()..];
    }
    blocks
}

/// The DER of the only PEM block in `text`, checking its label.
pub fn pem_der(text: &str, label: &str) -> Vec<u8> {
    let blocks = pem_blocks(text);
    assert_eq!(blocks.len(), 1, "expected one PEM block in {text}");
    assert_eq!(blocks[0].0, label);
    blocks[0].1.clone()
}

// ---------------------------------------------------------------------------------------------
// DER helpers.

/// A definite DER length.
pub fn der_len(len: usize) -> Vec<u8> {
    if len < 0x80 {
        vec![len as u8]
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .iter()
            .copied()
            .skip_while(|b| *b == 0)
            .collect();
        let mut out = vec![0x80 | bytes.len() as u8];
        out.extend(bytes);
        out
    }
}

/// `tag || length || content`.
pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend(der_len(content.len()));
    out.extend_from_slice(content);
    out
}

/// The DER of `Name ::= SEQUENCE { SET { SEQUENCE { id-at-organizationName, UTF8String } } }`.
pub fn organization_name_der(value: &str) -> Vec<u8> {
    let mut atv = tlv(0x06, &[0x55, 0x04, 0x0a]);
    atv.extend(tlv(0x0c, value.as_bytes()));
    tlv(0x30, &tlv(0x31, &tlv(0x30, &atv)))
}

/// The DER of a SubjectAltName with one URI followed by DNS names.
pub fn san_der(uri: &str, dns: &[&str]) -> Vec<u8> {
    let mut names = tlv(0x86, uri.as_bytes());
    for d in dns {
        names.extend(tlv(0x82, d.as_bytes()));
    }
    tlv(0x30, &names)
}

/// One extension as seen on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ext {
    /// extnID.
    pub oid: ObjectIdentifier,
    /// The critical flag.
    pub critical: bool,
    /// The extnValue OCTET STRING's content.
    pub value: Vec<u8>,
}

/// Every extension of `cert`, in order.
pub fn extensions(cert: &Certificate) -> Vec<Ext> {
    cert.tbs_certificate()
        .extensions()
        .map(|exts| {
            exts.iter()
                .map(|e| Ext {
                    oid: e.extn_id,
                    critical: e.critical,
                    value: e.extn_value.as_bytes().to_vec(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The one extension with `oid` (asserting it is not duplicated), if any.
pub fn extension(cert: &Certificate, oid: ObjectIdentifier) -> Option<Ext> {
    let found: Vec<Ext> = extensions(cert)
        .into_iter()
        .filter(|e| e.oid == oid)
        .collect();
    assert!(
        found.len() <= 1,
        "extension {oid} appears {} times",
        found.len()
    );
    found.into_iter().next()
}

/// The sorted OIDs of every extension (to compare sets exactly).
pub fn extension_oids(cert: &Certificate) -> Vec<ObjectIdentifier> {
    let mut oids: Vec<ObjectIdentifier> = extensions(cert).iter().map(|e| e.oid).collect();
    oids.sort();
    oids
}

/// The 20-byte key identifier inside an SKID extension value (`OCTET STRING`).
pub fn skid_of(cert: &Certificate) -> Vec<u8> {
    let ext = extension(cert, OID_SUBJECT_KEY_ID).expect("SKID present");
    assert!(
        !ext.critical,
        "SKID must not be critical (RFC 5280 4.2.1.2)"
    );
    assert_eq!(ext.value[0], 0x04, "SKID is an OCTET STRING");
    assert_eq!(ext.value[1] as usize, ext.value.len() - 2);
    ext.value[2..].to_vec()
}

/// The keyIdentifier of an AKID that holds nothing else (`SEQUENCE { [0] keyIdentifier }`).
pub fn akid_of(cert: &Certificate) -> Vec<u8> {
    let ext = extension(cert, OID_AUTHORITY_KEY_ID).expect("AKID present");
    assert!(
        !ext.critical,
        "AKID must not be critical (RFC 5280 4.2.1.1)"
    );
    let v = &ext.value;
    assert_eq!(v[0], 0x30);
    assert_eq!(v[1] as usize, v.len() - 2, "AKID holds only keyIdentifier");
    assert_eq!(v[2], 0x80, "AKID keyIdentifier is [0] IMPLICIT");
    assert_eq!(v[3] as usize, v.len() - 4, "AKID holds only keyIdentifier");
    v[4..].to_vec()
}

/// The DER of a certificate's serial number INTEGER (tag, length, content).
pub fn serial_der(cert: &Certificate) -> Vec<u8> {
    cert.tbs_certificate().serial_number().to_der().unwrap()
}

/// The DER of a certificate.
pub fn der_of(cert: &Certificate) -> Vec<u8> {
    cert.to_der().unwrap()
}

// ---------------------------------------------------------------------------------------------
// Independent X509-SVID checks (spiffe.md "X509-SVID"), not using core's `chain` module.

/// The URI SANs and DNS SANs of `cert`, decoded from the raw extension bytes.
pub fn san_names(cert: &Certificate) -> (bool, Vec<String>, Vec<String>) {
    let ext = extension(cert, OID_SUBJECT_ALT_NAME).expect("SAN present");
    let v = &ext.value;
    assert_eq!(v[0], 0x30, "SAN is a SEQUENCE");
    let (len, mut i) = read_len(v, 1);
    assert_eq!(i + len, v.len(), "SAN has no trailing bytes");
    let mut uris = Vec::new();
    let mut dns = Vec::new();
    while i < v.len() {
        let tag = v[i];
        let (len, start) = read_len(v, i + 1);
        let value = String::from_utf8(v[start..start + len].to_vec()).unwrap();
        match tag {
            0x86 => uris.push(value),
            0x82 => dns.push(value),
            other => panic!("unexpected GeneralName tag {other:#x}"),
        }
        i = start + len;
    }
    (ext.critical, uris, dns)
}

fn read_len(v: &[u8], at: usize) -> (usize, usize) {
    let first = v[at];
    if first < 0x80 {
        (usize::from(first), at + 1)
    } else {
        let n = usize::from(first & 0x7f);
        let mut len = 0usize;
        for b in &v[at + 1..at + 1 + n] {
            len = (len << 8) | usize::from(*b);
        }
        (len, at + 1 + n)
    }
}

/// SPIFFE-ID.md rules, written out: scheme, lowercase trust domain, non-empty path of clean
/// segments. Returns (trust domain, path).
pub fn split_spiffe_id(uri: &str) -> (String, String) {
    let rest = uri.strip_prefix("spiffe://").expect("scheme spiffe://");
    let (td, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    assert!(!td.is_empty(), "trust domain is empty in {uri}");
    assert!(
        td.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)),
        "bad trust domain {td}"
    );
    if !path.is_empty() {
        assert!(!path.ends_with('/'), "trailing slash in {uri}");
        for segment in path[1..].split('/') {
            assert!(!segment.is_empty(), "empty segment in {uri}");
            assert!(segment != "." && segment != "..", "dot segment in {uri}");
            assert!(
                segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)),
                "bad segment {segment} in {uri}"
            );
        }
    }
    assert!(uri.len() <= 2048);
    (td.to_string(), path.to_string())
}

/// Asserts the X509-SVID leaf rules on `leaf` by reading raw extension bytes, and that its one
/// URI SAN is `expected_id`.
pub fn assert_x509_svid_leaf(leaf: &Certificate, expected_id: &str) {
    // 1 + 8: exactly one URI SAN, a SPIFFE ID with a non-root path.
    let (san_critical, uris, _) = san_names(leaf);
    assert_eq!(uris, [expected_id], "exactly one URI SAN");
    let (_, path) = split_spiffe_id(&uris[0]);
    assert!(!path.is_empty(), "leaf SPIFFE ID must have a path");
    // 2: empty subject => SAN critical.
    if leaf.tbs_certificate().subject().is_empty() {
        assert!(san_critical, "empty subject needs a critical SAN");
    }
    // 4: cA=false (basicConstraints absent or without cA TRUE).
    if let Some(bc) = extension(leaf, OID_BASIC_CONSTRAINTS) {
        assert_eq!(
            bc.value, BC_NOT_CA,
            "leaf basicConstraints must have cA=false"
        );
    }
    // 6: keyUsage present, critical, digitalSignature, neither keyCertSign nor cRLSign.
    let ku = extension(leaf, OID_KEY_USAGE).expect("leaf keyUsage present");
    assert!(ku.critical, "leaf keyUsage critical");
    let (bits, _) = key_usage_bits(&ku.value);
    assert!(bits & (1 << 0) != 0, "digitalSignature set");
    assert!(bits & (1 << 5) == 0, "keyCertSign not set");
    assert!(bits & (1 << 6) == 0, "cRLSign not set");
    // 7: EKU, when present, has both serverAuth and clientAuth.
    if let Some(eku) = extension(leaf, OID_EXT_KEY_USAGE) {
        let has = |last: u8| {
            eku.value
                .windows(10)
                .any(|w| w == [0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, last])
        };
        assert!(has(1) && has(2), "EKU has serverAuth and clientAuth");
    }
}

/// Asserts the X509-SVID signing-certificate rules on `ca` (keyCertSign, cA=true, keyUsage
/// critical, and Appendix A: no digitalSignature on a CA).
pub fn assert_x509_svid_signing_cert(ca: &Certificate) {
    let bc = extension(ca, OID_BASIC_CONSTRAINTS).expect("CA basicConstraints present");
    assert!(bc.value.starts_with(&[0x30]) && bc.value.len() >= 5);
    assert_eq!(&bc.value[2..5], &[0x01, 0x01, 0xff], "cA TRUE");
    let ku = extension(ca, OID_KEY_USAGE).expect("CA keyUsage present");
    assert!(ku.critical, "CA keyUsage critical");
    let (bits, _) = key_usage_bits(&ku.value);
    assert!(bits & (1 << 5) != 0, "keyCertSign set");
    assert!(
        bits & (1 << 0) == 0,
        "no digitalSignature on a CA (Appendix A)"
    );
    if extension(ca, OID_SUBJECT_ALT_NAME).is_some() {
        // A signing cert's SPIFFE ID, if any, has no path.
        let (_, uris, _) = san_names(ca);
        for uri in uris {
            assert!(split_spiffe_id(&uri).1.is_empty());
        }
    }
}

/// The keyUsage bits with bit 0 = digitalSignature, and the unused-bit count.
pub fn key_usage_bits(value: &[u8]) -> (u16, u8) {
    assert_eq!(value[0], 0x03, "keyUsage is a BIT STRING");
    let len = usize::from(value[1]);
    assert_eq!(len + 2, value.len());
    let unused = value[2];
    let mut bits = 0u16;
    for (byte_index, byte) in value[3..].iter().enumerate() {
        for bit in 0..8 {
            if byte & (0x80 >> bit) != 0 {
                bits |= 1 << (byte_index * 8 + bit);
            }
        }
    }
    (bits, unused)
}

// ---------------------------------------------------------------------------------------------
// rustls-webpki as a second, independent path validator.

/// Verifies `leaf` to `anchors` through `intermediates` with rustls-webpki, for both server and
/// client auth, at `now`.
pub fn webpki_verify(
    leaf: &Certificate,
    intermediates: &[Certificate],
    anchors: &[Certificate],
    now: UnixTime,
) -> Result<(), webpki::Error> {
    let leaf_der = CertificateDer::from(der_of(leaf));
    let anchor_ders: Vec<CertificateDer<'static>> = anchors
        .iter()
        .map(|c| CertificateDer::from(der_of(c)))
        .collect();
    let anchors: Vec<_> = anchor_ders
        .iter()
        .map(|c| webpki::anchor_from_trusted_cert(c).unwrap())
        .collect();
    let intermediates: Vec<CertificateDer<'static>> = intermediates
        .iter()
        .map(|c| CertificateDer::from(der_of(c)))
        .collect();
    let end_entity = webpki::EndEntityCert::try_from(&leaf_der)?;
    let time = rustls_pki_types::UnixTime::since_unix_epoch(now.as_duration());
    for usage in [
        webpki::KeyUsage::server_auth(),
        webpki::KeyUsage::client_auth(),
    ] {
        end_entity.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &anchors,
            &intermediates,
            time,
            usage,
            None,
            None,
        )?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// openssl CLI and fixtures.

/// The openssl CLI the independent checks run.
pub const OPENSSL: &str = "/usr/bin/openssl";

/// Runs `openssl args...` in `dir`, feeding `stdin`; returns stdout, panicking with stderr on
/// failure.
pub fn openssl_in(dir: &Path, args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let mut child = Command::new(OPENSSL)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {OPENSSL}: {e}"));
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Runs `openssl args...` in `dir`; returns stdout.
pub fn openssl_stdout(dir: &Path, args: &[&str]) -> Vec<u8> {
    openssl_in(dir, args, &[])
}

/// SHA-256 by the openssl CLI (an implementation independent of core's sha2).
pub fn sha256(data: &[u8]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    openssl_in(dir.path(), &["dgst", "-sha256", "-binary"], data)
}

/// Whether rustls-webpki accepts `leaf` for the DNS name `name` (SAN dNSName matching).
pub fn webpki_valid_for_dns(leaf: &Certificate, name: &str) -> bool {
    let leaf_der = CertificateDer::from(der_of(leaf));
    let end_entity = webpki::EndEntityCert::try_from(&leaf_der).unwrap();
    let server_name = rustls_pki_types::ServerName::try_from(name).unwrap();
    end_entity
        .verify_is_valid_for_subject_name(&server_name)
        .is_ok()
}

/// x509-cert certificates as core's checks read them (in place, from their DER).
fn core_read<R>(
    certificates: &[Certificate],
    check: impl FnOnce(&[warden_core::certificate::CertificateRef<'_>]) -> R,
) -> R {
    let ders = warden_core::bundle::encode_certificates(certificates).expect("encode");
    check(&warden_core::bundle::read_certificates(&ders).expect("read DER"))
}

/// A chain and its anchors as core's checks read them.
fn core_read_pair<R>(
    chain: &[Certificate],
    anchors: &[Certificate],
    check: impl FnOnce(
        &[warden_core::certificate::CertificateRef<'_>],
        &[warden_core::certificate::CertificateRef<'_>],
    ) -> R,
) -> R {
    core_read(chain, |chain| {
        core_read(anchors, |anchors| check(chain, anchors))
    })
}

/// Core's `chain::verify_svid` with the RustCrypto verifier.
pub fn core_verify_svid(
    chain: &[Certificate],
    anchors: &[Certificate],
    at: UnixTime,
) -> Result<warden_core::spiffe::SpiffeId, warden_core::chain::SvidError> {
    core_read_pair(chain, anchors, |chain, anchors| {
        warden_core::chain::verify_svid(
            chain,
            anchors,
            at,
            &warden_core::crypto::RustCryptoVerifier,
        )
    })
}

/// Core's `chain::verify_chain` with the RustCrypto verifier.
pub fn core_verify_chain(
    chain: &[Certificate],
    anchors: &[Certificate],
    at: UnixTime,
) -> Result<(), warden_core::chain::ChainError> {
    core_read_pair(chain, anchors, |chain, anchors| {
        warden_core::chain::verify_chain(
            chain,
            anchors,
            at,
            &warden_core::crypto::RustCryptoVerifier,
        )
    })
}

/// Core's `chain::svid_id`.
pub fn core_svid_id(
    leaf: &Certificate,
) -> Result<warden_core::spiffe::SpiffeId, warden_core::chain::SvidError> {
    core_read(std::slice::from_ref(leaf), |certs| {
        warden_core::chain::svid_id(&certs[0])
    })
}

/// Core's `chain::is_self_signed` with the RustCrypto verifier.
pub fn core_is_self_signed(cert: &Certificate) -> bool {
    core_read(std::slice::from_ref(cert), |certs| {
        warden_core::chain::is_self_signed(&certs[0], &warden_core::crypto::RustCryptoVerifier)
    })
}

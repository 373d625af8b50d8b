//! One test per way `csr::parse_and_verify` refuses a CSR: the exact `CsrError` variant, its
//! Display text, and whether it is a framing error (Sentry's "invalid certificate signing
//! request") or a parse/verify error. Key types core does not accept are made at test time
//! with the openssl CLI or by editing a Go-made CSR; the Go fixtures are the accepted baseline.

use der::asn1::BitString;
use der::{Decode, Encode};
use spki::AlgorithmIdentifierOwned;
use warden_core::crypto::{
    CaSigner, KeyAlgorithm, KeyType, RustCryptoVerifier, SoftwareKey, VerifyError,
};
use warden_core::csr::{self, CsrError, MAX_CSR_LEN, VerifiedCsr};
use warden_core::pem::PemError;
use x509_cert::request::CertReq;

use warden_tests::support::*;

fn parse(input: &[u8]) -> Result<VerifiedCsr, CsrError> {
    csr::parse_and_verify(input, &RustCryptoVerifier)
}

/// Asserts the exact error, its text and its classification.
fn expect(input: &[u8], expected: &CsrError, text: &str, framing: bool) {
    let err = parse(input).unwrap_err();
    assert_eq!(&err, expected);
    assert_eq!(err.to_string(), text);
    assert_eq!(err.is_framing_error(), framing, "{err:?}");
}

fn fixture_der(name: &str) -> Vec<u8> {
    pem_der(
        std::str::from_utf8(&go_csr_pem(name)).unwrap(),
        "CERTIFICATE REQUEST",
    )
}

fn csr_pem(der: &[u8]) -> Vec<u8> {
    pem("CERTIFICATE REQUEST", der).into_bytes()
}

/// A Go fixture with its structure edited, re-encoded.
fn edited(name: &str, edit: impl FnOnce(&mut CertReq)) -> Vec<u8> {
    let mut req = CertReq::from_der(&fixture_der(name)).unwrap();
    edit(&mut req);
    req.to_der().unwrap()
}

/// A CSR made by `openssl req` for a key made by `openssl genpkey genpkey_args...`.
fn openssl_csr(genpkey_args: &[&str]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["genpkey"];
    args.extend_from_slice(genpkey_args);
    args.extend_from_slice(&["-out", "key.pem"]);
    openssl_stdout(dir.path(), &args);
    openssl_stdout(
        dir.path(),
        &[
            "req", "-new", "-key", "key.pem", "-subj", "/", "-out", "csr.pem",
        ],
    );
    std::fs::read(dir.path().join("csr.pem")).unwrap()
}

fn unsupported_key(oid: const_oid::ObjectIdentifier) -> CsrError {
    CsrError::UnsupportedKey(VerifyError::UnsupportedKeyType(oid))
}

// ---------------------------------------------------------------------------------------------
// Baseline: what daprd sends is accepted, so the rejections below are about the one change.

#[test]
fn go_fixtures_are_accepted_with_their_key_type() {
    for (name, key_type) in [
        ("csr-ed25519.pem", KeyType::Ed25519),
        ("csr-p256.pem", KeyType::EcdsaP256),
        ("csr-p384.pem", KeyType::EcdsaP384),
        ("csr-rsa2048.pem", KeyType::Rsa { bits: 2048 }),
    ] {
        let pem_text = go_csr_pem(name);
        let der = fixture_der(name);
        let spki = CertReq::from_der(&der).unwrap().info.public_key;
        // PEM, and the same CSR as bare DER.
        for input in [pem_text.clone(), der.clone()] {
            let verified = parse(&input).unwrap();
            assert_eq!(verified.key_type, key_type, "{name}");
            assert_eq!(verified.public_key, spki, "{name}");
        }
    }
    // daprd < 1.12 labelled its CSR "CERTIFICATE".
    let legacy = go_csr_pem("csr-p256-legacy-block-type.pem");
    assert!(
        std::str::from_utf8(&legacy)
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----\n")
    );
    assert_eq!(parse(&legacy).unwrap().key_type, KeyType::EcdsaP256);
}

#[test]
fn text_around_the_block_and_line_endings_are_tolerated() {
    let pem_text = String::from_utf8(go_csr_pem("csr-ed25519.pem")).unwrap();
    // Go's pem.Decode skips text before the block; trailing whitespace is not data.
    let with_comment = format!("# daprd CSR\n{pem_text}\n\n  \t\n");
    assert_eq!(
        parse(with_comment.as_bytes()).unwrap().key_type,
        KeyType::Ed25519
    );
    let crlf = pem_text.replace('\n', "\r\n");
    assert_eq!(parse(crlf.as_bytes()).unwrap().key_type, KeyType::Ed25519);
    // Exactly MAX_CSR_LEN bytes is still accepted.
    let mut padded = pem_text.into_bytes();
    padded.resize(MAX_CSR_LEN, b'\n');
    assert_eq!(padded.len(), 65536);
    assert_eq!(parse(&padded).unwrap().key_type, KeyType::Ed25519);
}

// ---------------------------------------------------------------------------------------------
// Framing.

#[test]
fn empty_input() {
    expect(b"", &CsrError::Empty, "CSR is empty", true);
}

#[test]
fn larger_than_64_kib() {
    let input = vec![b'A'; MAX_CSR_LEN + 1];
    expect(
        &input,
        &CsrError::TooLarge { len: 65537 },
        "CSR is 65537 bytes, larger than the 65536-byte limit",
        false,
    );
    // The limit applies before anything else: a valid CSR padded past it is refused too.
    let mut padded = go_csr_pem("csr-p256.pem");
    padded.resize(MAX_CSR_LEN + 1, b'\n');
    expect(
        &padded,
        &CsrError::TooLarge { len: 65537 },
        "CSR is 65537 bytes, larger than the 65536-byte limit",
        false,
    );
}

#[test]
fn random_text_is_not_pem() {
    for text in [
        &b"this is not a certificate signing request"[..],
        b"MIIBDzCBtgIBADAAMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE",
        b"-----END CERTIFICATE REQUEST-----\n",
        b" ",
    ] {
        expect(
            text,
            &CsrError::NotPem,
            "CSR is not PEM (no BEGIN line) nor DER",
            true,
        );
    }
}

#[test]
fn binary_garbage_is_not_pem() {
    // Not UTF-8 and not starting with a DER SEQUENCE tag.
    let garbage = [0xde, 0xad, 0xbe, 0xef, 0xff, 0xfe, 0x00, 0x80, 0x81];
    expect(
        &garbage,
        &CsrError::NotPem,
        "CSR is not PEM (no BEGIN line) nor DER",
        true,
    );
}

#[test]
fn binary_garbage_starting_like_der_is_malformed() {
    // 0x30 is a SEQUENCE tag, so this is taken as DER, and it is not a valid one.
    let garbage = [0x30, 0xff, 0x13, 0x37, 0x00];
    let der_err = CertReq::from_der(&garbage).unwrap_err();
    expect(
        &garbage,
        &CsrError::Malformed(der_err),
        "malformed CSR: incorrect length for SEQUENCE at DER byte 2",
        false,
    );
}

#[test]
fn wrong_pem_block_type_public_key() {
    let der = fixture_der("csr-p256.pem");
    let spki = CertReq::from_der(&der).unwrap().info.public_key;
    let input = pem("PUBLIC KEY", &spki.to_der().unwrap());
    expect(
        input.as_bytes(),
        &CsrError::WrongBlockType("PUBLIC KEY".into()),
        "PEM block type is \"PUBLIC KEY\", expected \"CERTIFICATE REQUEST\"",
        true,
    );
}

#[test]
fn wrong_pem_block_type_openssl_new_certificate_request() {
    // OpenSSL's old `-----BEGIN NEW CERTIFICATE REQUEST-----` is not accepted by Go either.
    let input = pem("NEW CERTIFICATE REQUEST", &fixture_der("csr-p256.pem"));
    expect(
        input.as_bytes(),
        &CsrError::WrongBlockType("NEW CERTIFICATE REQUEST".into()),
        "PEM block type is \"NEW CERTIFICATE REQUEST\", expected \"CERTIFICATE REQUEST\"",
        true,
    );
}

#[test]
fn trailing_data_after_the_pem_block() {
    let pem_text = String::from_utf8(go_csr_pem("csr-ed25519.pem")).unwrap();
    for input in [
        format!("{pem_text}junk"),
        format!("{pem_text}\n# trailing comment\n"),
        // A second block is trailing data too: one CSR per request.
        format!("{pem_text}{pem_text}"),
    ] {
        expect(
            input.as_bytes(),
            &CsrError::TrailingData,
            "trailing data after the CSR",
            false,
        );
    }
}

#[test]
fn trailing_bytes_after_the_der() {
    let mut der = fixture_der("csr-p256.pem");
    der.extend_from_slice(&[0x00, 0x00]);
    // As bare DER and inside a PEM frame.
    for input in [der.clone(), csr_pem(&der)] {
        expect(
            &input,
            &CsrError::TrailingData,
            "trailing data after the CSR",
            false,
        );
    }
}

#[test]
fn bad_der_inside_a_valid_pem_frame() {
    // Valid base64 of bytes that are not a PKCS#10 request.
    let input = pem("CERTIFICATE REQUEST", b"not DER at all");
    let der_err = CertReq::from_der(b"not DER at all").unwrap_err();
    expect(
        input.as_bytes(),
        &CsrError::Malformed(der_err),
        "malformed CSR: unexpected ASN.1 DER tag: expected SEQUENCE, got APPLICATION [14] (constructed)",
        false,
    );
    // A truncated CSR: the outer length promises more than there is.
    let der = fixture_der("csr-p256.pem");
    let cut = &der[..der.len() - 10];
    let der_err = CertReq::from_der(cut).unwrap_err();
    expect(
        &csr_pem(cut),
        &CsrError::Malformed(der_err),
        "malformed CSR: ASN.1 DER message is incomplete: expected 180, actual 179 at DER byte 179",
        false,
    );
    // A certificate (not a request) under the legacy label.
    let (bundle, _) = generate(&td("example.org"), KeyAlgorithm::P256, DAY, MINUTE, NOW);
    let cert_der = der_of(bundle.issuer());
    let der_err = CertReq::from_der(&cert_der).unwrap_err();
    let err = parse(pem("CERTIFICATE", &cert_der).as_bytes()).unwrap_err();
    assert_eq!(err, CsrError::Malformed(der_err));
    assert!(err.to_string().starts_with("malformed CSR: "), "{err}");
    assert!(!err.is_framing_error());
}

#[test]
fn broken_base64() {
    let pem_text = String::from_utf8(go_csr_pem("csr-p256.pem")).unwrap();
    // Replace one base64 character of the body with a character outside the alphabet.
    let body_start = pem_text.find('\n').unwrap() + 1;
    let mut broken = pem_text.clone().into_bytes();
    broken[body_start + 5] = b'!';
    let err = parse(&broken).unwrap_err();
    assert!(
        matches!(err, CsrError::Pem(PemError::Malformed(_))),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "CSR PEM: malformed PEM block: PEM Base64 error: invalid Base64 encoding"
    );
    assert!(err.is_framing_error());
}

#[test]
fn unterminated_pem_block() {
    let pem_text = String::from_utf8(go_csr_pem("csr-p256.pem")).unwrap();
    let cut = &pem_text[..pem_text.len() / 2];
    expect(
        cut.as_bytes(),
        &CsrError::Pem(PemError::Unterminated),
        "CSR PEM: PEM block has no END line",
        true,
    );
}

#[test]
fn mismatched_end_label() {
    let pem_text = String::from_utf8(go_csr_pem("csr-p256.pem")).unwrap();
    let input = pem_text.replace(
        "-----END CERTIFICATE REQUEST-----",
        "-----END CERTIFICATE-----",
    );
    let err = parse(input.as_bytes()).unwrap_err();
    assert!(
        matches!(err, CsrError::Pem(PemError::Malformed(_))),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "CSR PEM: malformed PEM block: PEM error in post-encapsulation boundary"
    );
    assert!(err.is_framing_error());
}

// ---------------------------------------------------------------------------------------------
// Keys core does not accept.

#[test]
fn dsa_key_is_unsupported() {
    // OpenSSL 3 generates DSA parameters and the key in two steps.
    let dir = tempfile::tempdir().unwrap();
    openssl_stdout(
        dir.path(),
        &[
            "genpkey",
            "-genparam",
            "-algorithm",
            "DSA",
            "-pkeyopt",
            "dsa_paramgen_bits:2048",
            "-out",
            "params.pem",
        ],
    );
    openssl_stdout(
        dir.path(),
        &["genpkey", "-paramfile", "params.pem", "-out", "key.pem"],
    );
    openssl_stdout(
        dir.path(),
        &[
            "req", "-new", "-key", "key.pem", "-subj", "/", "-out", "csr.pem",
        ],
    );
    let input = std::fs::read(dir.path().join("csr.pem")).unwrap();
    let req = CertReq::from_der(&pem_der(
        std::str::from_utf8(&input).unwrap(),
        "CERTIFICATE REQUEST",
    ))
    .unwrap();
    assert_eq!(req.info.public_key.algorithm.oid, OID_DSA);
    expect(
        &input,
        &unsupported_key(OID_DSA),
        "CSR public key: unsupported public key type 1.2.840.10040.4.1 (id-dsa)",
        false,
    );
}

#[test]
fn x25519_key_is_unsupported() {
    // openssl cannot self-sign with an X25519 key; put the X25519 OID into a Go Ed25519 CSR.
    let der = edited("csr-ed25519.pem", |req| {
        assert_eq!(req.info.public_key.algorithm.oid, OID_ED25519);
        req.info.public_key.algorithm.oid = OID_X25519;
    });
    // Only the OID changed (…2b 65 70 → …2b 65 6e in the SPKI).
    let original = fixture_der("csr-ed25519.pem");
    let diffs: Vec<usize> = (0..der.len()).filter(|i| der[*i] != original[*i]).collect();
    assert_eq!(diffs.len(), 1);
    assert_eq!((original[diffs[0]], der[diffs[0]]), (0x70, 0x6e));
    expect(
        &csr_pem(&der),
        &unsupported_key(OID_X25519),
        "CSR public key: unsupported public key type 1.3.101.110 (id-X25519)",
        false,
    );
}

#[test]
fn p521_key_is_unsupported() {
    let input = openssl_csr(&["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-521"]);
    expect(
        &input,
        &unsupported_key(OID_SECP521R1),
        "CSR public key: unsupported public key type 1.3.132.0.35 (secp521r1)",
        false,
    );
}

#[test]
fn rsa_1024_key_is_too_small() {
    let input = openssl_csr(&["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"]);
    expect(
        &input,
        &CsrError::UnsupportedKey(VerifyError::RsaKeySize(1024)),
        "CSR public key: unsupported RSA key size 1024 bits (accepted: 2048-4096)",
        false,
    );
}

#[test]
fn rsa_key_size_bounds() {
    let small = openssl_csr(&["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2047"]);
    expect(
        &small,
        &CsrError::UnsupportedKey(VerifyError::RsaKeySize(2047)),
        "CSR public key: unsupported RSA key size 2047 bits (accepted: 2048-4096)",
        false,
    );
    // (OpenSSL rounds a 4097-bit request down to 4096, so the first size above is 4098.)
    let big = openssl_csr(&["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:4098"]);
    expect(
        &big,
        &CsrError::UnsupportedKey(VerifyError::RsaKeySize(4098)),
        "CSR public key: unsupported RSA key size 4098 bits (accepted: 2048-4096)",
        false,
    );
    let max = openssl_csr(&["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:4096"]);
    assert_eq!(parse(&max).unwrap().key_type, KeyType::Rsa { bits: 4096 });
}

#[test]
fn ec_key_without_curve_parameters_is_malformed_key() {
    let der = edited("csr-p256.pem", |req| {
        req.info.public_key.algorithm.parameters = None;
    });
    expect(
        &csr_pem(&der),
        &CsrError::UnsupportedKey(VerifyError::MalformedKey),
        "CSR public key: malformed public key",
        false,
    );
}

// ---------------------------------------------------------------------------------------------
// Signatures.

#[test]
fn bad_signature() {
    for name in [
        "csr-ed25519.pem",
        "csr-p256.pem",
        "csr-p384.pem",
        "csr-rsa2048.pem",
    ] {
        // The signature BIT STRING is the last element, so the last byte is signature.
        let mut der = fixture_der(name);
        *der.last_mut().unwrap() ^= 0x01;
        assert!(CertReq::from_der(&der).is_ok(), "{name} still parses");
        for input in [csr_pem(&der), der.clone()] {
            expect(
                &input,
                &CsrError::InvalidSignature(VerifyError::BadSignature),
                "CSR signature: signature verification failed",
                false,
            );
        }
    }
}

#[test]
fn signed_content_changed_after_signing() {
    // The Go P-256 CSR with another valid P-256 key swapped in: the key type is fine, so only
    // the signature check can notice.
    let other = SoftwareKey::generate(KeyAlgorithm::P256, &mut rng()).public_key();
    let der = edited("csr-p256.pem", |req| {
        assert_ne!(req.info.public_key, other);
        req.info.public_key = other.clone();
    });
    expect(
        &csr_pem(&der),
        &CsrError::InvalidSignature(VerifyError::BadSignature),
        "CSR signature: signature verification failed",
        false,
    );
}

#[test]
fn signature_algorithm_does_not_match_key() {
    let alg = |oid, null_params: bool| AlgorithmIdentifierOwned {
        oid,
        parameters: null_params.then(|| der::asn1::Null.into()),
    };
    for (name, algorithm) in [
        // Ed25519 key, ECDSA algorithm.
        ("csr-ed25519.pem", alg(OID_ECDSA_WITH_SHA256, false)),
        // P-256 key, RSA algorithm.
        ("csr-p256.pem", alg(OID_SHA256_WITH_RSA, true)),
        // P-256 key, Ed25519 algorithm.
        ("csr-p256.pem", alg(OID_ED25519, false)),
        // RSA key, ECDSA algorithm.
        ("csr-rsa2048.pem", alg(OID_ECDSA_WITH_SHA256, false)),
    ] {
        let der = edited(name, |req| req.algorithm = algorithm);
        expect(
            &csr_pem(&der),
            &CsrError::InvalidSignature(VerifyError::AlgorithmKeyMismatch),
            "CSR signature: signature algorithm does not match the public key type",
            false,
        );
    }
}

#[test]
fn unsupported_signature_algorithm() {
    let der = edited("csr-p256.pem", |req| {
        req.algorithm = AlgorithmIdentifierOwned {
            oid: OID_ECDSA_WITH_SHA1,
            parameters: None,
        };
    });
    expect(
        &csr_pem(&der),
        &CsrError::InvalidSignature(VerifyError::UnsupportedSignatureAlgorithm(
            OID_ECDSA_WITH_SHA1,
        )),
        "CSR signature: unsupported signature algorithm 1.2.840.10045.4.1",
        false,
    );
}

#[test]
fn malformed_signature() {
    // Ed25519 signature one byte short; ECDSA signature that is not a DER Ecdsa-Sig-Value;
    // a signature BIT STRING with unused bits.
    let short = edited("csr-ed25519.pem", |req| {
        let sig = req.signature.as_bytes().unwrap();
        assert_eq!(sig.len(), 64);
        req.signature = BitString::from_bytes(&sig[..63]).unwrap();
    });
    let not_der = edited("csr-p256.pem", |req| {
        req.signature = BitString::from_bytes(&[0xff; 70]).unwrap();
    });
    let unused_bits = edited("csr-ed25519.pem", |req| {
        let sig = req.signature.as_bytes().unwrap().to_vec();
        req.signature = BitString::new(1, sig).unwrap();
    });
    for der in [short, not_der, unused_bits] {
        expect(
            &csr_pem(&der),
            &CsrError::InvalidSignature(VerifyError::MalformedSignature),
            "CSR signature: malformed signature",
            false,
        );
    }
}

/// `is_framing_error` for every variant, in one table: true exactly for the errors Sentry
/// reports as "invalid certificate signing request" (no usable PEM block).
#[test]
fn framing_error_classification() {
    let cases: Vec<(CsrError, bool)> = vec![
        (CsrError::Empty, true),
        (CsrError::NotPem, true),
        (CsrError::Pem(PemError::Unterminated), true),
        (CsrError::Pem(PemError::NotText), true),
        (CsrError::WrongBlockType("PUBLIC KEY".into()), true),
        (CsrError::TooLarge { len: 65537 }, false),
        (CsrError::TrailingData, false),
        (
            CsrError::Malformed(CertReq::from_der(&[0x30, 0x00]).unwrap_err()),
            false,
        ),
        (unsupported_key(OID_DSA), false),
        (
            CsrError::UnsupportedKey(VerifyError::RsaKeySize(1024)),
            false,
        ),
        (CsrError::InvalidSignature(VerifyError::BadSignature), false),
        (
            CsrError::InvalidSignature(VerifyError::AlgorithmKeyMismatch),
            false,
        ),
    ];
    for (err, framing) in cases {
        assert_eq!(err.is_framing_error(), framing, "{err:?}");
    }
}

/// The CSR's base64 body re-wrapped at `width` columns (0 = one line).
fn rewrapped(name: &str, width: usize) -> Vec<u8> {
    let b64 = base64_encode(&fixture_der(name));
    let lines: Vec<&str> = if width == 0 {
        vec![b64.as_str()]
    } else {
        b64.as_bytes()
            .chunks(width)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect()
    };
    format!(
        "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
        lines.join("\n")
    )
    .into_bytes()
}

/// Go's `pem.Decode` (Sentry, daprd) strips spaces, tabs and line breaks before base64-decoding,
/// so any line width is accepted: 76 columns (MIME, GNU `base64`), 48, or one long line. Core
/// decodes with pem-rfc7468's strict RFC 7468 grammar, which requires exactly 64 columns, and
/// refuses such a CSR with `Pem(Malformed(Base64(InvalidEncoding)))` (a framing error, so
/// "invalid certificate signing request"). pem.rs documents the strictness as deliberate; it is
/// still a wire difference from Sentry.
#[test]
fn pem_wrapped_at_other_widths_is_accepted_like_go() {
    for width in [76, 48, 0] {
        let input = rewrapped("csr-p256.pem", width);
        assert_eq!(
            parse(&input).map(|v| v.key_type),
            Ok(KeyType::EcdsaP256),
            "width {width}"
        );
    }
}

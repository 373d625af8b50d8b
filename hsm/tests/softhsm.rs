//! The PKCS#11 signer and key generation against a real SoftHSM2 token.
// The whole binary is test code: this lets clippy.toml's `allow-*-in-tests` settings cover the
// helpers outside `#[test]` functions too.
#![cfg(test)]

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use cryptoki::object::{Attribute, AttributeType};
use der::referenced::OwnedToRef as _;
use der::{Decode, Encode};
use warden_core::UnixTime;
use warden_core::bundle::{certificates_to_pem, create_root};
use warden_core::crypto::{CaSigner, RustCryptoVerifier, SignatureVerifier};
use warden_core::profile::Validity;
use warden_core::spiffe::TrustDomain;
use warden_hsm::{Hsm, HsmError};

fn rng() -> rand_core::UnwrapErr<getrandom::SysRng> {
    rand_core::UnwrapErr(getrandom::SysRng)
}

fn now() -> UnixTime {
    UnixTime::from_duration(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap(),
    )
}

#[test]
fn generated_key_is_sensitive_and_never_extractable() {
    common::isolated("generated_key_is_sensitive_and_never_extractable", |_| {
        let hsm = Hsm::open(&common::config("root")).unwrap();
        hsm.generate_key("root").unwrap();
        let attributes = hsm
            .private_key_attributes(
                "root",
                &[
                    AttributeType::Token,
                    AttributeType::Private,
                    AttributeType::Sensitive,
                    AttributeType::Extractable,
                    AttributeType::Sign,
                    AttributeType::NeverExtractable,
                ],
            )
            .unwrap();
        for expected in [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::NeverExtractable(true),
        ] {
            assert!(
                attributes.contains(&expected),
                "{expected:?} missing in {attributes:?}"
            );
        }
        // CKA_VALUE of a sensitive key is never returned.
        match hsm.private_key_attributes("root", &[AttributeType::Value]) {
            Err(e) => assert!(e.to_string().contains("CKR_ATTRIBUTE_SENSITIVE"), "{e}"),
            Ok(values) => assert!(
                !values.iter().any(|a| matches!(a, Attribute::Value(_))),
                "CKA_VALUE was readable: {values:?}"
            ),
        }
    });
}

#[test]
fn refuses_to_overwrite_a_key_label() {
    common::isolated("refuses_to_overwrite_a_key_label", |_| {
        let hsm = Hsm::open(&common::config("root")).unwrap();
        let first = hsm.generate_key("root").unwrap();
        let err = hsm.generate_key("root").unwrap_err();
        assert!(matches!(err, HsmError::KeyExists { .. }), "{err:?}");
        assert!(err.to_string().contains("refusing to overwrite"), "{err}");
        // The original key is still the one found.
        let again = Hsm::open_signer(&common::config("root")).unwrap();
        assert_eq!(first.public_key(), again.public_key());
    });
}

#[test]
fn root_signed_in_the_token_verifies_with_openssl() {
    common::isolated("root_signed_in_the_token_verifies_with_openssl", |dir| {
        let hsm = Hsm::open(&common::config("root")).unwrap();
        let signer = hsm.generate_key("root").unwrap();
        let td = TrustDomain::new("example.org").unwrap();
        let validity =
            Validity::backdated(now(), Duration::from_secs(60), Duration::from_secs(3600));
        let root = create_root(&signer, &td, validity, &mut rng()).unwrap();
        let pem = certificates_to_pem([&root]).unwrap();
        let path = dir.join("ca.crt");
        std::fs::write(&path, &pem).unwrap();
        let verify = Command::new("openssl")
            .args(["verify", "-x509_strict", "-CAfile"])
            .arg(&path)
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            verify.status.success(),
            "{}{}",
            String::from_utf8_lossy(&verify.stdout),
            String::from_utf8_lossy(&verify.stderr)
        );
        // The certificate's key is the token's public key (read afresh from CKA_EC_POINT).
        let reopened = Hsm::open_signer(&common::config("root")).unwrap();
        let cert_key = root
            .tbs_certificate()
            .subject_public_key_info()
            .to_der()
            .unwrap();
        assert_eq!(cert_key, reopened.public_key().to_der().unwrap());
        let pubkey = Command::new("openssl")
            .args(["x509", "-noout", "-pubkey", "-in"])
            .arg(&path)
            .output()
            .unwrap();
        let pubkey = String::from_utf8(pubkey.stdout).unwrap();
        let b64: String = pubkey.lines().filter(|l| !l.starts_with("-----")).collect();
        let from_openssl = pem_body_to_der(&b64);
        assert_eq!(from_openssl, cert_key);
    });
}

fn pem_body_to_der(b64: &str) -> Vec<u8> {
    let pem = format!("-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n");
    let spki = spki::SubjectPublicKeyInfoOwned::from_der(&pem_to_der(&pem)).unwrap();
    spki.to_der().unwrap()
}

fn pem_to_der(pem: &str) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(["pkey", "-pubin", "-outform", "DER"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write as _;
            child.stdin.take().unwrap().write_all(pem.as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    out.stdout
}

#[test]
fn signatures_are_low_s_der_and_verify_from_two_threads() {
    common::isolated(
        "signatures_are_low_s_der_and_verify_from_two_threads",
        |_| {
            let hsm = Hsm::open(&common::config("k")).unwrap();
            let signer = Arc::new(hsm.generate_key("k").unwrap());
            let spki_der = signer.public_key().to_der().unwrap();
            let threads: Vec<_> = (0..2)
                .map(|t| {
                    let signer = Arc::clone(&signer);
                    let spki_der = spki_der.clone();
                    std::thread::spawn(move || {
                        let spki = spki::SubjectPublicKeyInfoRef::from_der(&spki_der).unwrap();
                        for i in 0..50 {
                            let message = format!("message {t} {i}");
                            let signature = signer.sign(message.as_bytes()).unwrap();
                            let parsed = p256::ecdsa::Signature::from_der(&signature).unwrap();
                            assert_eq!(parsed.normalize_s(), parsed, "high S");
                            RustCryptoVerifier
                                .verify(
                                    spki.clone(),
                                    signer.signature_algorithm().owned_to_ref(),
                                    message.as_bytes(),
                                    &signature,
                                )
                                .unwrap();
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
        },
    );
}

#[test]
fn wrong_pin_is_reported_as_ckr_pin_incorrect() {
    common::isolated("wrong_pin_is_reported_as_ckr_pin_incorrect", |_| {
        let mut config = common::config("root");
        config.pin = zeroize::Zeroizing::new("not-the-pin".to_owned());
        let err = Hsm::open(&config).unwrap_err();
        assert!(matches!(err, HsmError::PinIncorrect { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains("C_Login returned CKR_PIN_INCORRECT"),
            "{text}"
        );
        assert!(text.contains("WARDEN_HSM_PIN"), "{text}");
        assert!(!text.contains("not-the-pin"), "PIN leaked: {text}");
    });
}

#[test]
fn missing_token_names_the_label_and_what_exists() {
    common::isolated("missing_token_names_the_label_and_what_exists", |_| {
        let mut config = common::config("root");
        config.token_label = "no-such-token".to_owned();
        let text = Hsm::open(&config).unwrap_err().to_string();
        assert!(
            text.contains("no token labelled \"no-such-token\""),
            "{text}"
        );
        assert!(text.contains("warden-test"), "{text}");
        assert!(text.contains("--hsm-token-label"), "{text}");
    });
}

#[test]
fn missing_key_label_says_to_run_init_root() {
    common::isolated("missing_key_label_says_to_run_init_root", |_| {
        let err = Hsm::open_signer(&common::config("absent")).unwrap_err();
        assert!(matches!(err, HsmError::KeyNotFound { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains("no EC private key labelled \"absent\""),
            "{text}"
        );
        assert!(text.contains("warden hsm init-root"), "{text}");
    });
}

#[test]
fn missing_module_names_the_path() {
    let mut config = common::config("root");
    config.module = "/nonexistent/libpkcs11.so".into();
    let text = Hsm::open(&config).unwrap_err().to_string();
    assert!(
        text.contains("cannot load the PKCS#11 module /nonexistent/libpkcs11.so"),
        "{text}"
    );
    assert!(text.contains("--hsm-module"), "{text}");
}

#[test]
fn a_p384_key_is_refused_as_the_wrong_type() {
    common::isolated("a_p384_key_is_refused_as_the_wrong_type", |_| {
        use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
        use cryptoki::mechanism::Mechanism;
        use cryptoki::session::UserType;
        let pkcs11 = Pkcs11::new(common::module()).unwrap();
        pkcs11
            .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
            .unwrap();
        let slot = pkcs11.get_slots_with_token().unwrap()[0];
        let session = pkcs11.open_rw_session(slot).unwrap();
        session
            .login(UserType::User, Some(&common::PIN.into()))
            .unwrap();
        let p384 = vec![0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
        let label = b"p384".to_vec();
        session
            .generate_key_pair(
                &Mechanism::EccKeyPairGen,
                &[
                    Attribute::Token(true),
                    Attribute::EcParams(p384),
                    Attribute::Label(label.clone()),
                ],
                &[
                    Attribute::Token(true),
                    Attribute::Private(true),
                    Attribute::Sensitive(true),
                    Attribute::Sign(true),
                    Attribute::Label(label),
                ],
            )
            .unwrap();
        let err = Hsm::open_signer(&common::config("p384")).unwrap_err();
        assert!(matches!(err, HsmError::WrongKeyType { .. }), "{err:?}");
        assert!(err.to_string().contains("EC P-256"), "{err}");
    });
}

#[test]
fn pin_comes_from_the_file_or_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pin");
    std::fs::write(&file, "s3cret\n").unwrap();
    assert_eq!(
        warden_hsm::read_pin(Some(&file)).unwrap().as_str(),
        "s3cret"
    );
    std::fs::write(&file, "").unwrap();
    assert!(warden_hsm::read_pin(Some(&file)).is_err());
    let text = warden_hsm::read_pin(Some(&dir.path().join("absent")))
        .unwrap_err()
        .to_string();
    assert!(text.contains("cannot read the PIN file"), "{text}");
}

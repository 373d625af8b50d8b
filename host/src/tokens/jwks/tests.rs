//! Unit tests of the jwks validator: options, sources, key sets and token checks at a fixed
//! time. Tokens are signed here with aws-lc-rs, independently of the library that verifies
//! them.

use std::collections::BTreeMap;
use std::time::Duration;

use base64ct::{Base64UrlUnpadded, Encoding as _};
use serde_json::Value;

use super::key_set::*;
use super::options::*;
use super::validator::*;
use crate::observability::Health;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self as sig, KeyPair as _};

const AUD: &str = "spiffe://localhost/ns/default/dapr-sentry";
const SUB: &str = "spiffe://public/ns/default/app";
const NOW: u64 = 1_800_000_000;

fn b64(bytes: &[u8]) -> String {
    Base64UrlUnpadded::encode_string(bytes)
}

enum Signer {
    Es256(sig::EcdsaKeyPair),
    Ed(sig::Ed25519KeyPair),
}

impl Signer {
    fn es256() -> Self {
        let rng = SystemRandom::new();
        let pkcs8 =
            sig::EcdsaKeyPair::generate_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        Self::Es256(
            sig::EcdsaKeyPair::from_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
                .unwrap(),
        )
    }

    fn ed() -> Self {
        Self::Ed(sig::Ed25519KeyPair::generate().unwrap())
    }

    fn alg(&self) -> &'static str {
        match self {
            Self::Es256(_) => "ES256",
            Self::Ed(_) => "EdDSA",
        }
    }

    fn jwk(&self, kid: Option<&str>) -> Value {
        let mut jwk = match self {
            Self::Es256(k) => {
                let point = k.public_key().as_ref();
                serde_json::json!({"kty": "EC", "crv": "P-256",
                    "x": b64(&point[1..33]), "y": b64(&point[33..65])})
            }
            Self::Ed(k) => {
                serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": b64(k.public_key().as_ref())})
            }
        };
        if let Some(kid) = kid {
            jwk["kid"] = kid.into();
        }
        jwk
    }

    fn sign_raw(&self, message: &[u8]) -> Vec<u8> {
        match self {
            Self::Es256(k) => k
                .sign(&SystemRandom::new(), message)
                .unwrap()
                .as_ref()
                .to_vec(),
            Self::Ed(k) => k.sign(message).as_ref().to_vec(),
        }
    }

    fn token(&self, header: &Value, claims: &Value) -> String {
        let message = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let signature = self.sign_raw(message.as_bytes());
        format!("{message}.{}", b64(&signature))
    }

    fn header(&self, kid: Option<&str>) -> Value {
        let mut header = serde_json::json!({"alg": self.alg(), "typ": "JWT"});
        if let Some(kid) = kid {
            header["kid"] = kid.into();
        }
        header
    }
}

fn claims() -> Value {
    serde_json::json!({"aud": [AUD, "other"], "sub": SUB, "exp": NOW + 600, "nbf": NOW - 10, "iat": NOW - 10})
}

fn set(jwks: &[Value]) -> KeySet {
    KeySet::parse(serde_json::json!({ "keys": jwks }).to_string().as_bytes()).unwrap()
}

fn reason(set: &KeySet, token: &str) -> String {
    set.verify(token, AUD, SUB, NOW).unwrap_err().to_string()
}

#[test]
fn valid_tokens_are_accepted() {
    for signer in [Signer::es256(), Signer::ed()] {
        let keys = set(&[signer.jwk(Some("k1"))]);
        let token = signer.token(&signer.header(Some("k1")), &claims());
        keys.verify(&token, AUD, SUB, NOW).unwrap();
        // No kid: every key of the right type is tried.
        let token = signer.token(&signer.header(None), &claims());
        keys.verify(&token, AUD, SUB, NOW).unwrap();
        // A single-string audience, and no nbf/iat: only exp is required.
        let token = signer.token(
            &signer.header(Some("k1")),
            &serde_json::json!({"aud": AUD, "sub": SUB, "exp": NOW + 60}),
        );
        keys.verify(&token, AUD, SUB, NOW).unwrap();
    }
}

#[test]
fn a_token_without_exp_is_refused() {
    // Sentry accepts it (and it would then be valid forever); Warden requires exp.
    for signer in [Signer::es256(), Signer::ed()] {
        let keys = set(&[signer.jwk(Some("k1"))]);
        for claims in [
            serde_json::json!({"aud": AUD, "sub": SUB}),
            serde_json::json!({"aud": AUD, "sub": SUB, "exp": null, "iat": NOW, "nbf": NOW}),
        ] {
            let token = signer.token(&signer.header(Some("k1")), &claims);
            assert_eq!(
                reason(&keys, &token),
                "\"exp\" not satisfied: required claim not found",
                "{claims}"
            );
        }
    }
    assert_eq!(
        check_claims(&serde_json::json!({"aud": AUD, "sub": SUB}), AUD, SUB, NOW)
            .unwrap_err()
            .to_string(),
        "\"exp\" not satisfied: required claim not found"
    );
}

#[test]
fn time_claims_have_five_minutes_of_leeway() {
    let signer = Signer::es256();
    let keys = set(&[signer.jwk(None)]);
    let with = |name: &str, value: u64| {
        let mut c = claims();
        c[name] = value.into();
        signer.token(&signer.header(None), &c)
    };
    for ok in [
        with("exp", NOW - 299),
        with("nbf", NOW + 299),
        with("iat", NOW + 299),
    ] {
        keys.verify(&ok, AUD, SUB, NOW).unwrap();
    }
    assert_eq!(
        reason(&keys, &with("exp", NOW - 301)),
        "\"exp\" not satisfied: the token has expired"
    );
    assert_eq!(
        reason(&keys, &with("nbf", NOW + 301)),
        "\"nbf\" not satisfied: the token is not valid yet"
    );
    assert_eq!(
        reason(&keys, &with("iat", NOW + 301)),
        "\"iat\" not satisfied: the token was issued in the future"
    );
    let mut c = claims();
    c["exp"] = "soon".into();
    assert_eq!(
        reason(&keys, &signer.token(&signer.header(None), &c)),
        "\"exp\" not satisfied: not a NumericDate"
    );
}

#[test]
fn audience_and_subject_are_checked() {
    let signer = Signer::ed();
    let keys = set(&[signer.jwk(Some("k"))]);
    let token = |claims: Value| signer.token(&signer.header(Some("k")), &claims);
    let cases = [
        (
            serde_json::json!({"sub": SUB}),
            "\"aud\" not satisfied: required claim not found".to_owned(),
        ),
        (
            serde_json::json!({"aud": "dapr.io/sentry", "sub": SUB}),
            format!("\"aud\" not satisfied: the audience does not contain {AUD}"),
        ),
        (
            serde_json::json!({"aud": [], "sub": SUB}),
            format!("\"aud\" not satisfied: the audience does not contain {AUD}"),
        ),
        (
            serde_json::json!({"aud": 7, "sub": SUB}),
            "\"aud\" not satisfied: not a string or a list of strings".to_owned(),
        ),
        (
            serde_json::json!({"aud": AUD}),
            "\"sub\" not satisfied: required claim not found".to_owned(),
        ),
        (
            serde_json::json!({"aud": AUD, "sub": "spiffe://public/ns/default/other"}),
            format!("\"sub\" not satisfied: expected {SUB}"),
        ),
    ];
    for (mut claims, want) in cases {
        claims["exp"] = (NOW + 60).into();
        assert_eq!(reason(&keys, &token(claims.clone())), want, "{claims}");
    }
}

#[test]
fn algorithms_keys_and_signatures() {
    let es = Signer::es256();
    let ed = Signer::ed();
    let keys = set(&[es.jwk(Some("es")), ed.jwk(Some("ed"))]);
    let c = claims();
    // alg none, and HMAC, are refused by name.
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none"}"#),
        b64(c.to_string().as_bytes())
    );
    assert!(reason(&keys, &none).starts_with("unsupported signature algorithm \"none\""));
    let hs = es.token(&serde_json::json!({"alg": "HS256", "kid": "es"}), &c);
    assert!(reason(&keys, &hs).starts_with("unsupported signature algorithm \"HS256\""));
    // The algorithm must fit the key the kid names.
    let mismatched = ed.token(&serde_json::json!({"alg": "EdDSA", "kid": "es"}), &c);
    assert_eq!(
        reason(&keys, &mismatched),
        "algorithm \"EdDSA\" does not match key \"es\" (EC P-256)"
    );
    assert_eq!(
        keys.verify(&es.token(&es.header(Some("nope")), &c), AUD, SUB, NOW),
        Err(TokenError::UnknownKid("nope".into()))
    );
    assert_eq!(
        reason(&keys, &es.token(&es.header(Some("nope")), &c)),
        "failed to find key with key ID \"nope\" in key set"
    );
    // Signed by another key under a known kid.
    let other = Signer::es256();
    assert_eq!(
        reason(&keys, &other.token(&other.header(Some("es")), &c)),
        "could not verify message using any of the signatures or keys"
    );
    // A payload changed after signing.
    let good = es.token(&es.header(Some("es")), &c);
    let parts: Vec<&str> = good.split('.').collect();
    let mut changed = c.clone();
    changed["sub"] = "spiffe://public/ns/default/admin".into();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64(changed.to_string().as_bytes()),
        parts[2]
    );
    assert_eq!(
        reason(&keys, &tampered),
        "could not verify message using any of the signatures or keys"
    );
    // Malformed tokens.
    assert_eq!(
        reason(&keys, "not-a-jwt"),
        "failed to parse token: a signed JWT has 3 dot-separated parts, this one has 1"
    );
    assert_eq!(
        reason(&keys, "a.b.c"),
        "failed to parse token: the header is not base64url JSON"
    );
    // A JWK whose own alg differs from the token's is not used.
    let mut pinned = es.jwk(None);
    pinned["alg"] = "ES384".into();
    assert!(KeySet::parse(serde_json::json!({"keys": [pinned]}).to_string().as_bytes()).is_err());
}

#[test]
fn key_sets_skip_unusable_keys() {
    let es = Signer::es256();
    let mut enc = es.jwk(Some("enc"));
    enc["use"] = "enc".into();
    let keys = set(&[
        serde_json::json!({"kty": "oct", "k": b64(b"secret"), "kid": "hmac"}),
        enc,
        serde_json::json!({"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"}),
        serde_json::json!({"kty": "XYZ"}),
        es.jwk(Some("sig")),
    ]);
    assert_eq!(keys.len(), 1);
    // The skipped HMAC key cannot be used, whatever the token says.
    let hs = es.token(
        &serde_json::json!({"alg": "HS256", "kid": "hmac"}),
        &claims(),
    );
    assert!(reason(&keys, &hs).starts_with("unsupported signature algorithm"));
    let err = KeySet::parse(b"{\"keys\": []}").unwrap_err();
    assert!(
        matches!(err, KeySetError::NoUsableKey { skipped: 0 }),
        "{err}"
    );
    // The reasons are logged and returned to operators word for word.
    assert_eq!(
        err.to_string(),
        "the JWK Set has no usable key (EC P-256/P-384, RSA or Ed25519 signature keys); 0 skipped"
    );
    let err = KeySet::parse(b"{}").unwrap_err();
    assert!(matches!(err, KeySetError::NoKeysArray), "{err}");
    assert_eq!(err.to_string(), "not a JWK Set: no \"keys\" array");
    let err = KeySet::parse(b"nope").unwrap_err();
    assert!(matches!(err, KeySetError::NotJson(_)), "{err}");
    assert!(err.to_string().starts_with("not valid JSON: "), "{err}");
}

fn options(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn options_defaults_floors_and_case() {
    let o = JwksOptions::parse(&options(&[("source", "https://x/jwks")])).unwrap();
    assert_eq!(o.min_refresh_interval, DEFAULT_MIN_REFRESH_INTERVAL);
    assert_eq!(o.request_timeout, DEFAULT_REQUEST_TIMEOUT);
    assert_eq!(o.ca_certificate, None);
    let o = JwksOptions::parse(&options(&[
        ("SOURCE", " https://x/jwks "),
        ("MinRefreshInterval", "90"),
        ("requesttimeout", "1m30s"),
        ("cacertificate", "/etc/ca.pem"),
        ("extra", "1"),
    ]))
    .unwrap();
    assert_eq!(o.source, "https://x/jwks");
    assert_eq!(o.min_refresh_interval, Duration::from_secs(90));
    assert_eq!(o.request_timeout, Duration::from_secs(90));
    assert_eq!(o.ca_certificate.as_deref(), Some("/etc/ca.pem"));
    assert_eq!(o.unknown, vec!["extra".to_owned()]);
    // Values not above the floors fall back to the defaults, as in Sentry.
    let o = JwksOptions::parse(&options(&[
        ("source", "https://x"),
        ("minRefreshInterval", "1s"),
        ("requestTimeout", "1ms"),
    ]))
    .unwrap();
    assert_eq!(o.min_refresh_interval, DEFAULT_MIN_REFRESH_INTERVAL);
    assert_eq!(o.request_timeout, DEFAULT_REQUEST_TIMEOUT);
    let o = JwksOptions::parse(&options(&[
        ("source", "https://x"),
        ("minRefreshInterval", "1001ms"),
        ("requestTimeout", "2ms"),
    ]))
    .unwrap();
    assert_eq!(o.min_refresh_interval, Duration::from_millis(1001));
    assert_eq!(o.request_timeout, Duration::from_millis(2));
    // Debug never prints inline key material.
    let o = JwksOptions::parse(&options(&[("source", "{\"keys\": []}")])).unwrap();
    assert!(!format!("{o:?}").contains("keys"), "{o:?}");
}

#[test]
fn sources_are_recognised() {
    let json = r#"{"keys":[]}"#;
    assert!(matches!(
        Source::resolve("https://x/jwks").unwrap(),
        Source::Https(_)
    ));
    assert!(matches!(
        Source::resolve("http://x/jwks").unwrap(),
        Source::Http(_)
    ));
    assert_eq!(Source::resolve(json).unwrap(), Source::Inline(json.into()));
    use base64ct::{Base64, Base64Unpadded, Base64Url, Base64UrlUnpadded, Encoding as _};
    let encoders: [fn(&[u8]) -> String; 4] = [
        Base64::encode_string,
        Base64Unpadded::encode_string,
        Base64Url::encode_string,
        Base64UrlUnpadded::encode_string,
    ];
    for encode in encoders {
        let encoded = encode(json.as_bytes());
        assert_eq!(
            Source::resolve(&encoded).unwrap(),
            Source::Inline(json.into())
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jwks.json");
    std::fs::write(&file, json).unwrap();
    assert_eq!(
        Source::resolve(file.to_str().unwrap()).unwrap(),
        Source::File(file.clone())
    );
    let missing = dir.path().join("missing.json");
    assert_eq!(
        Source::resolve(missing.to_str().unwrap())
            .unwrap_err()
            .to_string(),
        format!(
            "source: '{}' is not a regular file (and not a URL, JWKS JSON or base64 of it)",
            missing.display()
        )
    );
    assert_eq!(
        Source::resolve("garbage").unwrap_err().to_string(),
        "source: not an https:// or http:// URL, an existing file, JWKS JSON, or base64 of JWKS JSON"
    );
    assert_eq!(
        Source::resolve("https://").unwrap_err().to_string(),
        "source: invalid URL: empty host"
    );
}

#[tokio::test]
async fn start_errors_name_the_option() {
    let health = Health::default();
    let start = |pairs: &[(&str, &str)]| {
        let options = JwksOptions::parse(&options(pairs)).unwrap();
        JwksValidator::start(&options, AUD.into(), health.register(HEALTH_TARGET))
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    assert!(
        start(&[("source", r#"{"keys": 1}"#)]).starts_with("source: inline JWKS: not a JWK Set")
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jwks.json");
    std::fs::write(&file, "[]").unwrap();
    assert_eq!(
        start(&[("source", file.to_str().unwrap())]),
        format!(
            "source: {}: not a JWK Set: no \"keys\" array",
            file.display()
        )
    );
    let missing = dir.path().join("ca.pem");
    assert!(
        start(&[
            ("source", "https://127.0.0.1:1/jwks"),
            ("caCertificate", missing.to_str().unwrap())
        ])
        .starts_with(&format!(
            "caCertificate: not PEM text, and cannot read file '{}': ",
            missing.display()
        ))
    );
    std::fs::write(&missing, "hello").unwrap();
    assert_eq!(
        start(&[
            ("source", "https://127.0.0.1:1/jwks"),
            ("caCertificate", missing.to_str().unwrap())
        ]),
        format!(
            "caCertificate: file '{}' holds no PEM CERTIFICATE block",
            missing.display()
        )
    );
    assert!(
        start(&[
            ("source", "https://127.0.0.1:1/jwks"),
            (
                "caCertificate",
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
            )
        ])
        .starts_with("caCertificate: certificate #1: not X.509: ")
    );
}

#[tokio::test]
async fn inline_source_is_ready_at_once_and_remote_is_not() {
    let health = Health::default();
    let signer = Signer::ed();
    let jwks = serde_json::json!({"keys": [signer.jwk(Some("k"))]}).to_string();
    let o = JwksOptions::parse(&options(&[("source", &jwks)])).unwrap();
    let v = JwksValidator::start(&o, AUD.into(), health.register(HEALTH_TARGET)).unwrap();
    assert!(v.is_ready() && health.is_ready());
    let mut c = claims();
    c["exp"] = (crate::util::clock::now().as_secs() + 60).into();
    c["nbf"] = crate::util::clock::now().as_secs().into();
    c["iat"] = crate::util::clock::now().as_secs().into();
    let token = signer.token(&signer.header(Some("k")), &c);
    v.verify(&token, SUB).await.unwrap();
    assert_eq!(
        v.verify(&token, "spiffe://public/ns/x/app")
            .await
            .unwrap_err()
            .to_string(),
        "token validation failed: \"sub\" not satisfied: expected spiffe://public/ns/x/app"
    );

    let health = Health::default();
    // Nothing listens on port 1: never ready, and says so.
    let o = JwksOptions::parse(&options(&[("source", "http://127.0.0.1:1/jwks")])).unwrap();
    let v = JwksValidator::start(&o, AUD.into(), health.register(HEALTH_TARGET)).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!v.is_ready() && !health.is_ready());
    assert_eq!(v.verify(&token, SUB).await, Err(VerifyError::NotReady));
    assert_eq!(
        VerifyError::NotReady.to_string(),
        "jwks validator not ready"
    );
}

#[test]
fn caller_chosen_header_values_are_shown_bounded_in_reasons() {
    // Reasons are logged for every refused request; a header can be megabytes long.
    let signer = Signer::es256();
    let keys = set(&[signer.jwk(Some("k1"))]);
    let long_kid = "k".repeat(100_000);
    let token = signer.token(&signer.header(Some(&long_kid)), &claims());
    let why = reason(&keys, &token);
    assert_eq!(
        why,
        format!(
            "failed to find key with key ID \"{}...(100000 bytes)\" in key set",
            "k".repeat(64)
        )
    );
    let long_alg = "é".repeat(1000);
    let header = serde_json::json!({"alg": long_alg, "kid": "k1"});
    let token = format!(
        "{}.{}.sig",
        b64(header.to_string().as_bytes()),
        b64(claims().to_string().as_bytes())
    );
    let why = reason(&keys, &token);
    assert!(
        why.starts_with(&format!(
            "unsupported signature algorithm \"{}...(2000 bytes)\"; accepted: ",
            "é".repeat(64)
        )),
        "{why}"
    );
    // Ordinary values are shown as written (Sentry's wording).
    let token = signer.token(&signer.header(Some("rotated-2")), &claims());
    assert_eq!(
        reason(&keys, &token),
        "failed to find key with key ID \"rotated-2\" in key set"
    );
}

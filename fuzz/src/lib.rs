//! The bodies of Warden's fuzz targets, one function per target.
//!
//! Each function drives public APIs of `warden-core` and `warden-host` with one input and
//! asserts the properties that must hold for every input (two verifiers agree, a parsed ID
//! prints back to itself, ...). It returns the outcome so a caller can assert more.
//!
//! The same file is compiled twice: here, for the `fuzz_targets/*.rs` binaries, and by
//! `tests/tests/fuzz_regressions.rs` (through `#[path]`), which replays every input under
//! `tests/data/fuzz/<target>/` in the normal `cargo test`. So a crash the fuzzer found and a
//! regression test for it run exactly the same code. Nothing here ships in a library.

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use warden_core::UnixTime;
use warden_core::bundle::{self, BundleError, CaBundle};
use warden_core::certificate::CertificateRef;
use warden_core::chain;
use warden_core::crypto::{KeyError, RustCryptoVerifier, SoftwareKey};
use warden_core::csr::{self, CsrError, VerifiedCsr};
use warden_core::profile::Validity;
use warden_core::spiffe::{self, SpiffeId, SpiffeIdError, TrustDomain};
use warden_host::expand_env;
use warden_host::jwks::{self, JwksOptions, KeySet, TokenError};
use warden_host::{ConfigError, SentryConfig};
use warden_host::{DurationError, parse_go_duration};
use warden_host::{NativeKey, NativeVerifier};

/// The instant credential bundles are checked at: 2027-01-15, inside the validity of the
/// seed bundles (2025-01-01 to 2035-01-01).
pub const BUNDLE_NOW: UnixTime = UnixTime::from_secs(1_800_000_000);

/// The instant JWT claims are checked at (the seed tokens' `iat`).
pub const JWT_NOW: u64 = 1_800_000_000;

/// The audience and subject the JWT target expects (those of the seed tokens).
pub const JWT_AUDIENCE: &str = "warden";
/// See [`JWT_AUDIENCE`].
pub const JWT_SUBJECT: &str = "spiffe://public/ns/default/app";

/// The key set the JWT target verifies tokens against: one P-256 and one Ed25519 key, the
/// keys the seed tokens are signed with.
pub const JWKS: &[u8] = include_bytes!("../../tests/data/fuzz/jwks.json");

/// Splits `data` at NUL bytes into at most `N` parts; missing parts are empty. Text inputs
/// (PEM, IDs) never contain NUL, so a seed is its parts joined with `\0`.
pub fn split_nul<const N: usize>(data: &[u8]) -> [&[u8]; N] {
    let mut parts: [&[u8]; N] = [&[]; N];
    let mut rest = data;
    for (i, part) in parts.iter_mut().enumerate() {
        if i + 1 == N {
            *part = rest;
            break;
        }
        match rest.iter().position(|&b| b == 0) {
            Some(at) => {
                let (head, tail) = rest.split_at(at);
                *part = head;
                rest = tail.get(1..).unwrap_or_default();
            }
            None => {
                *part = rest;
                rest = &[];
            }
        }
    }
    parts
}

/// Target `csr`: a CSR (PEM or DER) is parsed and its self-signature verified by core's
/// RustCrypto verifier and by the host's aws-lc-rs verifier, which must give the same answer,
/// error included.
pub fn csr(data: &[u8]) -> Result<VerifiedCsr, CsrError> {
    let core = csr::parse_and_verify(data, &RustCryptoVerifier);
    let native = csr::parse_and_verify(data, &NativeVerifier);
    assert_eq!(core, native, "the CSR verifiers disagree");
    if let Err(e) = &core {
        // Display must not panic either: it ends up in the gRPC status.
        let _ = e.to_string();
    }
    core
}

/// Target `bundle`: `ca.crt`, `issuer.crt` and `issuer.key`, joined with NUL bytes, are
/// loaded as Sentry loads them, with both verifiers (which must agree); the key is also read
/// by the host's `NativeKey`, which must accept every key core accepts, with the same public
/// key. Each certificate block also goes through core's in-place reader and the checks on it
/// (the browser's `inspectCertificate` and `verifyChain` path), which must not panic.
pub fn bundle(data: &[u8]) -> Result<(), BundleError> {
    let [anchors, issuer, key] = split_nul::<3>(data);
    let _ = bundle::parse_certificates(anchors);
    for text in [anchors, issuer] {
        let Ok(ders) = bundle::certificate_ders(text) else {
            continue;
        };
        for cert in ders
            .iter()
            .filter_map(|der| CertificateRef::from_der(der).ok())
        {
            let _ = chain::svid_id(&cert).map_err(|e| e.to_string());
            let _ = cert.subject().rdns();
            let _ = chain::is_self_signed(&cert, &RustCryptoVerifier);
        }
    }
    let core = CaBundle::from_pem(anchors, issuer, key, BUNDLE_NOW, &RustCryptoVerifier);
    let native = CaBundle::from_pem(anchors, issuer, key, BUNDLE_NOW, &NativeVerifier);
    let outcome = |r: &Result<CaBundle, BundleError>| -> Result<(String, String), BundleError> {
        r.as_ref()
            .map(|b| {
                (
                    b.trust_anchors_pem().to_owned(),
                    b.issuer_chain_pem().to_owned(),
                )
            })
            .map_err(Clone::clone)
    };
    assert_eq!(
        outcome(&core),
        outcome(&native),
        "the bundle verifiers disagree"
    );
    if let Err(e) = &core {
        let _ = e.to_string();
    }
    key_agrees(key);
    core.map(|_| ())
}

/// Core's `SoftwareKey` and the host's `NativeKey` read the same PEM alike: a key core accepts
/// loads natively with the same public key, and core's framing errors are the host's.
fn key_agrees(key: &[u8]) {
    use warden_core::crypto::CaSigner as _;
    let core = SoftwareKey::from_pem(key);
    let native = NativeKey::from_pem(key);
    match (&core, &native) {
        (Ok(core), Ok(native)) => {
            assert_eq!(core.public_key(), native.public_key(), "the keys differ");
        }
        (Ok(_), Err(e)) => panic!("core reads the key, NativeKey refuses it: {e}"),
        (Err(KeyError::UnsupportedAlgorithm), _) => {}
        (Err(c), Err(n)) => assert_eq!(c, n, "the key errors differ"),
        (Err(c), Ok(_)) => panic!("core refuses the key ({c}), NativeKey reads it"),
    }
}

/// What the `config` target produced.
#[derive(Debug)]
pub struct ConfigOutcome {
    /// The whole input as a Go duration.
    pub duration: Result<Duration, DurationError>,
    /// The input, with `$VAR`s expanded, as a config file.
    pub config: Result<SentryConfig, ConfigError>,
}

/// Target `config`: the input (UTF-8 only, as the file is read as a string) is parsed as a Go
/// duration, then expanded as Go's `os.ExpandEnv` would (with a fixed environment) and parsed
/// as a Dapr `Configuration`; the options of each `jwks` validator go through
/// `JwksOptions::parse` as at start-up.
pub fn config(data: &[u8]) -> Option<ConfigOutcome> {
    let text = std::str::from_utf8(data).ok()?;
    let duration = parse_go_duration(text);
    if let Err(e) = &duration {
        let _ = e.to_string();
    }
    let expanded = expand_env(text, fixed_env);
    let parsed = SentryConfig::from_yaml(&expanded, Path::new("fuzz.yaml"));
    match &parsed {
        Ok(parsed) => {
            assert!(
                !parsed.workload_cert_ttl.is_zero(),
                "a zero TTL was accepted"
            );
            for validator in &parsed.token_validators {
                let _ = JwksOptions::parse(&validator.options);
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    Some(ConfigOutcome {
        duration,
        config: parsed,
    })
}

/// The environment `config` expands with: a few names set, the rest unset.
fn fixed_env(name: &str) -> Option<String> {
    match name {
        "TTL" => Some("1h".to_owned()),
        "SKEW" => Some("15".to_owned()),
        "CA_PEM" => Some("-----BEGIN CERTIFICATE-----\n".to_owned()),
        "EMPTY" => Some(String::new()),
        "YAML" => Some("{a: [b, c]}\n- x: |\n  y".to_owned()),
        _ => None,
    }
}

/// Target `spiffe`: the input (UTF-8) as a SPIFFE ID, a trust domain (config and request
/// forms) and an app ID; and, split at NUL into trust domain, namespace and app ID, as the
/// workload ID Sentry builds. Every ID that parses must print back to itself.
pub fn spiffe(data: &[u8]) -> Option<Result<SpiffeId, SpiffeIdError>> {
    let text = std::str::from_utf8(data).ok()?;
    let id = SpiffeId::parse(text);
    match &id {
        Ok(parsed) => {
            let printed = parsed.to_string();
            assert_eq!(printed, text, "a SPIFFE ID does not print back to itself");
            let again = SpiffeId::parse(&printed);
            assert_eq!(
                again.as_ref(),
                Ok(parsed),
                "a printed SPIFFE ID does not reparse"
            );
            let rebuilt = SpiffeId::from_path(parsed.trust_domain(), parsed.path());
            assert_eq!(
                rebuilt.as_ref(),
                Ok(parsed),
                "from_path disagrees with parse"
            );
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    for td in [TrustDomain::new(text), TrustDomain::from_request(text)]
        .into_iter()
        .flatten()
    {
        let reparsed = SpiffeId::parse(&td.id().to_string());
        assert_eq!(
            reparsed,
            Ok(td.id()),
            "a trust domain's ID does not reparse"
        );
    }
    let _ = spiffe::validate_app_id(text);
    let [td, namespace, app_id] = split_nul::<3>(data);
    if let (Ok(td), Ok(namespace), Ok(app_id)) = (
        std::str::from_utf8(td),
        std::str::from_utf8(namespace),
        std::str::from_utf8(app_id),
    ) && let Ok(td) = TrustDomain::new(td)
        && let Ok(workload) = SpiffeId::workload(&td, namespace, app_id)
    {
        let reparsed = SpiffeId::parse(&workload.to_string());
        assert_eq!(reparsed, Ok(workload), "a workload ID does not reparse");
    }
    Some(id)
}

/// What the `jwt` target produced.
#[derive(Debug)]
pub struct JwtOutcome {
    /// The input as a token, verified against [`JWKS`].
    pub token: Result<(), TokenError>,
    /// The input as JSON claims, checked as a verified token's claims are.
    pub claims: Option<Result<(), TokenError>>,
    /// Whether the input parses as a JWK Set with a usable key.
    pub key_set: Result<usize, String>,
}

/// Target `jwt`: the input as a compact JWT (header read by `read_header`, then the whole
/// `KeySet::verify` path against [`JWKS`]); as JSON claims (`check_claims`); and as a JWK Set.
pub fn jwt(data: &[u8]) -> JwtOutcome {
    static KEYS: OnceLock<KeySet> = OnceLock::new();
    let keys = KEYS.get_or_init(|| match KeySet::parse(JWKS) {
        Ok(keys) => keys,
        Err(e) => panic!("tests/data/fuzz/jwks.json: {e}"),
    });
    let token = match std::str::from_utf8(data) {
        Ok(text) => {
            let header = jwks::read_header(text);
            let verified = keys.verify(text, JWT_AUDIENCE, JWT_SUBJECT, JWT_NOW);
            if let Err(e) = &header {
                assert_eq!(verified.as_ref(), Err(e), "verify ignored a bad header");
            }
            verified
        }
        Err(_) => Err(TokenError::Invalid("not UTF-8".to_owned())),
    };
    let claims = serde_json::from_slice::<serde_json::Value>(data)
        .ok()
        .map(|claims| jwks::check_claims(&claims, JWT_AUDIENCE, JWT_SUBJECT, JWT_NOW));
    let key_set = KeySet::parse(data)
        .map(|set| set.len())
        .map_err(|e| e.to_string());
    JwtOutcome {
        token,
        claims,
        key_set,
    }
}

/// Target `certificate`: one DER certificate, read by core's in-place reader (`CertificateRef`:
/// chain checks, the `identity` client, the browser) and by x509-cert's owned decoder.
///
/// * Both read it: every field they share must be equal.
/// * Only x509-cert reads it: allowed only for what core checks beyond x509-cert (signature
///   algorithms inside and outside the signed part differ; an empty RDN).
/// * Only core reads it: allowed only for a name x509-cert refuses (its SET OF ordering is
///   stricter; core compares names as bytes).
///
/// On what core reads, the SVID leaf rules run and the self-signature check must give the same
/// answer with both verifiers.
pub fn certificate(data: &[u8]) -> Result<(), der::Error> {
    use der::Decode as _;
    use x509_cert::Certificate;
    use x509_cert::name::Name;

    let owned = Certificate::from_der(data);
    let read = CertificateRef::from_der(data);
    match (&owned, &read) {
        (Ok(owned), Ok(read)) => {
            let tbs = owned.tbs_certificate();
            fn der_of(value: &impl der::Encode) -> Option<Vec<u8>> {
                value.to_der().ok()
            }
            // x509-cert reads a DEFAULT value that is encoded anyway (version v1, critical
            // FALSE) and leaves it out when re-encoding, so its TBS bytes are the input's only
            // when the input is canonical DER; core keeps the bytes that were signed.
            if der_of(owned).as_deref() == Some(data) {
                assert_eq!(Some(read.tbs_der().to_vec()), der_of(tbs), "TBS bytes");
            }
            assert_eq!(read.serial(), tbs.serial_number().as_bytes(), "serial");
            assert_eq!(
                Some(read.issuer().as_der().to_vec()),
                der_of(tbs.issuer()),
                "issuer"
            );
            assert_eq!(
                Some(read.subject().as_der().to_vec()),
                der_of(tbs.subject()),
                "subject"
            );
            assert_eq!(
                read.subject().rdns().len(),
                tbs.subject().iter_rdn().count(),
                "RDNs"
            );
            assert_eq!(read.validity(), Validity::of(owned), "validity");
            assert_eq!(
                der_of(&read.public_key()),
                der_of(tbs.subject_public_key_info()),
                "public key"
            );
            assert_eq!(read.signature(), owned.signature().as_bytes(), "signature");
            assert_eq!(
                der_of(&read.signature_algorithm()),
                der_of(owned.signature_algorithm()),
                "signature algorithm"
            );
            let extensions: Vec<_> = read
                .extensions()
                .iter()
                .map(|e| (e.extn_id, e.critical, e.extn_value.as_bytes().to_vec()))
                .collect();
            let owned_extensions: Vec<_> = tbs
                .extensions()
                .into_iter()
                .flatten()
                .map(|e| (e.extn_id, e.critical, e.extn_value.as_bytes().to_vec()))
                .collect();
            assert_eq!(extensions, owned_extensions, "extensions");
        }
        (Ok(owned), Err(_)) => {
            let tbs = owned.tbs_certificate();
            let empty_rdn = [tbs.issuer(), tbs.subject()]
                .into_iter()
                .any(|name| name.iter_rdn().any(|rdn| rdn.iter().next().is_none()));
            assert!(
                owned.signature_algorithm() != tbs.signature() || empty_rdn,
                "core refuses a certificate x509-cert reads"
            );
        }
        (Err(_), Ok(read)) => assert!(
            Name::from_der(read.issuer().as_der()).is_err()
                || Name::from_der(read.subject().as_der()).is_err(),
            "core reads a certificate x509-cert refuses, and not for a name"
        ),
        (Err(_), Err(_)) => {}
    }
    let read = read?;
    if let Err(e) = chain::svid_id(&read) {
        let _ = e.to_string();
    }
    assert_eq!(
        chain::is_self_signed(&read, &RustCryptoVerifier),
        chain::is_self_signed(&read, &NativeVerifier),
        "the verifiers disagree on the self-signature"
    );
    Ok(())
}

/// A target body with its outcome dropped.
pub type Body = fn(&[u8]);

/// Every target by name, for the regression test and the docs.
pub const TARGETS: [(&str, Body); 6] = [
    ("csr", |d| {
        let _ = csr(d);
    }),
    ("bundle", |d| {
        let _ = bundle(d);
    }),
    ("config", |d| {
        let _ = config(d);
    }),
    ("spiffe", |d| {
        let _ = spiffe(d);
    }),
    ("jwt", |d| {
        let _ = jwt(d);
    }),
    ("certificate", |d| {
        let _ = certificate(d);
    }),
];

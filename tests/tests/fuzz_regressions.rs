//! Replays the fuzz inputs in the normal `cargo test`, through the very code the fuzz targets
//! run: `fuzz/src/lib.rs` is compiled into this test as a module.
//!
//! * every file under `tests/data/fuzz/<target>/` (inputs that once crashed a target, plus
//!   hand-made hostile ones) and every seed under `fuzz/seeds/<target>/` must go through its
//!   target without a panic;
//! * the seeds must still mean what they were made for (the bundles load at the fuzzing
//!   instant, the tokens verify), or the fuzzer would start from nothing useful;
//! * inputs with a known meaning get their exact error asserted.
//!
//! See docs/fuzzing.md.
// The whole binary is test code: this lets clippy.toml's `allow-*-in-tests` settings cover the
// helpers outside `#[test]` functions too.
#![cfg(test)]

#[allow(unreachable_pub, dead_code)]
#[path = "../../fuzz/src/lib.rs"]
mod fuzz_bodies;

use std::path::{Path, PathBuf};

use fuzz_bodies::TARGETS;
use warden_core::bundle::{BundleError, CertificatesError, CredentialFile};
use warden_core::csr::CsrError;
use warden_core::pem::PemError;
use warden_core::spiffe::SpiffeIdError;
use warden_host::DurationError;
use warden_host::jwks::TokenError;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The files of `dir`, sorted; none when it does not exist.
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn input(target: &str, name: &str) -> Vec<u8> {
    let path = repo().join("tests/data/fuzz").join(target).join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn seed(target: &str, name: &str) -> Vec<u8> {
    let path = repo().join("fuzz/seeds").join(target).join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every regression input and every seed goes through its target without a panic.
#[test]
fn every_input_runs_through_its_target() {
    let mut count = 0;
    for (target, body) in TARGETS {
        for dir in ["tests/data/fuzz", "fuzz/seeds"] {
            for path in files(&repo().join(dir).join(target)) {
                let data = std::fs::read(&path).unwrap();
                let outcome = std::panic::catch_unwind(|| body(&data));
                assert!(outcome.is_ok(), "{target}: {} panicked", path.display());
                count += 1;
            }
        }
    }
    assert!(count >= 25, "only {count} inputs found");
}

/// The seed certificates (Warden's roots and issuers, an openssl leaf with a multi-valued RDN)
/// read the same with core's in-place reader and x509-cert's decoder.
#[test]
fn certificate_seeds_read() {
    let seeds = files(&repo().join("fuzz/seeds/certificate"));
    assert!(seeds.len() >= 5, "only {} certificate seeds", seeds.len());
    for path in seeds {
        let data = std::fs::read(&path).unwrap();
        fuzz_bodies::certificate(&data).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

/// Found by the `certificate` target on its first run: a DEFAULT value encoded anyway (version
/// v1; critical FALSE). x509-cert reads such a certificate and re-encodes it without the value,
/// so a signature checked over its re-encoding would be checked over bytes nobody signed; core
/// keeps the signed bytes as they are.
#[test]
fn certificates_with_explicit_defaults_keep_their_signed_bytes() {
    use der::{Decode as _, Encode as _};
    use warden_core::certificate::CertificateRef;

    for name in ["explicit-default-version", "explicit-critical-false"] {
        let data = input("certificate", name);
        fuzz_bodies::certificate(&data).unwrap();
        let owned = x509_cert::Certificate::from_der(&data).unwrap();
        let read = CertificateRef::from_der(&data).unwrap();
        let reencoded_tbs = owned.tbs_certificate().to_der().unwrap();
        assert!(
            read.tbs_der().len() > reencoded_tbs.len(),
            "{name}: the DEFAULT value stays in the signed bytes"
        );
        assert_ne!(
            owned.to_der().unwrap(),
            data,
            "{name}: x509-cert re-encodes differently"
        );
    }
}

/// The seed CSRs (Go-made, as daprd sends them) verify with both verifiers.
#[test]
fn csr_seeds_verify() {
    for name in [
        "csr-p256.pem",
        "csr-p256.der",
        "csr-p384.pem",
        "csr-ed25519.pem",
        "csr-rsa2048.pem",
        "csr-p256-legacy-block-type.pem",
    ] {
        fuzz_bodies::csr(&seed("csr", name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

/// The seed bundles load at the fuzzing instant, except the one made to fail.
#[test]
fn bundle_seeds_load() {
    for name in ["p256", "p256-sec1", "ed25519"] {
        fuzz_bodies::bundle(&seed("bundle", name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    assert_eq!(
        fuzz_bodies::bundle(&seed("bundle", "two-anchors-wrong-key")),
        Err(BundleError::KeyMismatch)
    );
}

/// The seed configs and durations parse as intended.
#[test]
fn config_seeds_parse() {
    let full = fuzz_bodies::config(&seed("config", "full.yaml")).unwrap();
    let full = full.config.unwrap();
    assert_eq!(full.workload_cert_ttl.as_secs(), 5400);
    assert_eq!(full.allowed_clock_skew.as_secs(), 0);
    assert_eq!(full.token_validators.len(), 1);
    let env = fuzz_bodies::config(&seed("config", "env.yaml")).unwrap();
    let env = env.config.unwrap();
    assert_eq!(env.workload_cert_ttl.as_secs(), 3600);
    assert_eq!(env.allowed_clock_skew.as_nanos(), 15_500);
    let bad = fuzz_bodies::config(&seed("config", "bad.yaml")).unwrap();
    assert!(bad.config.is_err());
    let d = fuzz_bodies::config(&seed("config", "duration.txt")).unwrap();
    assert_eq!(d.duration.unwrap().as_nanos(), 3_723_000_000_004);
    let d = fuzz_bodies::config(&seed("config", "duration-frac.txt")).unwrap();
    assert_eq!(d.duration.unwrap().as_nanos(), 500);
}

/// The seed IDs parse (or fail) as intended.
#[test]
fn spiffe_seeds_parse() {
    for name in ["sentry.txt", "td-only.txt", "workload.txt"] {
        fuzz_bodies::spiffe(&seed("spiffe", name))
            .unwrap()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    assert_eq!(
        fuzz_bodies::spiffe(&seed("spiffe", "bad.txt")).unwrap(),
        Err(SpiffeIdError::WrongScheme)
    );
}

/// The seed tokens verify against the fuzzing key set; `alg: none` is refused by name.
#[test]
fn jwt_seeds_verify() {
    for name in ["token-es256.txt", "token-eddsa.txt"] {
        let outcome = fuzz_bodies::jwt(&seed("jwt", name));
        assert_eq!(outcome.token, Ok(()), "{name}");
    }
    let none = fuzz_bodies::jwt(&seed("jwt", "token-none.txt"));
    assert!(
        matches!(&none.token, Err(TokenError::Invalid(why)) if why.contains("\"none\"")),
        "{:?}",
        none.token
    );
    let claims = fuzz_bodies::jwt(&seed("jwt", "claims.json"));
    assert_eq!(claims.claims, Some(Ok(())));
    assert_eq!(fuzz_bodies::jwt(&seed("jwt", "jwks.json")).key_set, Ok(2));
}

/// Hand-made hostile inputs kept under tests/data/fuzz/, with the exact error each must get.
#[test]
fn known_bad_inputs_get_their_error() {
    let garbage = fuzz_bodies::csr(&input("csr", "pem-garbage-base64.pem"));
    assert!(
        matches!(garbage, Err(CsrError::Pem(PemError::Malformed(_)))),
        "{garbage:?}"
    );
    assert_eq!(
        fuzz_bodies::bundle(&input("bundle", "empty-issuer")),
        Err(BundleError::Certificates(
            CredentialFile::IssuerCertificate,
            CertificatesError::NoCertificates
        ))
    );
    let d = fuzz_bodies::config(&input("config", "duration-overflow.txt")).unwrap();
    assert_eq!(
        d.duration,
        Err(DurationError::Invalid {
            input: "9223372036854775807ns1ns".to_owned()
        })
    );
    assert_eq!(
        fuzz_bodies::spiffe(&input("spiffe", "dot-segment.txt")).unwrap(),
        Err(SpiffeIdError::DotSegment)
    );
    let jwt = fuzz_bodies::jwt(&input("jwt", "two-parts.txt"));
    assert!(
        matches!(&jwt.token, Err(TokenError::Invalid(why)) if why.contains("this one has 2")),
        "{:?}",
        jwt.token
    );
}

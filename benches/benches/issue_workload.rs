//! What one `SignCertificate` costs in Warden's core, next to the raw signatures it is made of.
//!
//! * `issue_workload/<ca>_ca/<csr>_csr`: PEM CSR in, PEM chain out, as the server will run it:
//!   `csr::parse_and_verify` + `SpiffeId::workload` + `CaBundle::issue_workload` (which builds,
//!   signs and PEM-encodes the leaf and appends the issuer chain). The CSRs are the daprd-shaped
//!   Go CSRs from `tests/data/go-csr/`.
//! * `steps/csr_parse_and_verify/<csr>` and `steps/issue_verified_key/<ca>_ca`: the two halves
//!   of the above (the second with a P-256 workload key).
//! * `primitives/<alg>_{sign,verify}`: one signature / one check over a 300-byte message (a
//!   workload TBSCertificate is 300–400 bytes) through the same backend: `SoftwareKey::sign` and
//!   `RustCryptoVerifier::verify`.
//!
//! Issuing = verify the CSR + sign the certificate, so `sign + verify` is the floor of one
//! issuance and `issuance / (sign + verify)` says how much the X.509 work around them costs.
//! Numbers in `benches/README.md`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use der::referenced::OwnedToRef;
use getrandom::SysRng;
use rand_core::UnwrapErr;
use warden_benches::{CSR_ED25519, CSR_P256, ca_params, message, now};
use warden_core::UnixTime;
use warden_core::bundle::{CaBundle, WorkloadRequest};
use warden_core::crypto::{
    CaSigner, KeyAlgorithm, RustCryptoVerifier, SignatureVerifier, SoftwareKey,
};
use warden_core::csr;
use warden_core::profile::{DEFAULT_CLOCK_SKEW, DEFAULT_WORKLOAD_TTL};
use warden_core::spiffe::{SpiffeId, TrustDomain};

fn ca(algorithm: KeyAlgorithm, trust_domain: &TrustDomain, now: UnixTime) -> CaBundle {
    CaBundle::generate(
        &ca_params(trust_domain, algorithm),
        now,
        &mut UnwrapErr(SysRng),
    )
    .expect("generate CA")
    .0
}

/// One `SignCertificate`: PEM CSR in, PEM chain out.
fn issue(bundle: &CaBundle, request_td: &TrustDomain, csr_pem: &[u8], now: UnixTime) -> String {
    warden_benches::issue(bundle, &RustCryptoVerifier, request_td, csr_pem, now).chain_pem
}

fn issue_workload(c: &mut Criterion) {
    let now = now();
    let ca_td = TrustDomain::new("cluster.local").unwrap();
    let request_td = TrustDomain::from_request("").unwrap();
    let p256_ca = ca(KeyAlgorithm::P256, &ca_td, now);
    let ed25519_ca = ca(KeyAlgorithm::Ed25519, &ca_td, now);

    let mut group = c.benchmark_group("issue_workload");
    for (name, bundle, csr_pem) in [
        ("p256_ca/p256_csr", &p256_ca, CSR_P256),
        ("p256_ca/ed25519_csr", &p256_ca, CSR_ED25519),
        ("ed25519_ca/p256_csr", &ed25519_ca, CSR_P256),
        ("ed25519_ca/ed25519_csr", &ed25519_ca, CSR_ED25519),
    ] {
        // The output must be a two-certificate chain; check once outside the timing loop.
        let chain = issue(bundle, &request_td, csr_pem, now);
        assert_eq!(chain.matches("-----BEGIN CERTIFICATE-----").count(), 2);
        group.bench_function(name, |b| {
            b.iter(|| issue(bundle, &request_td, black_box(csr_pem), now));
        });
    }
    group.finish();
}

/// The two halves of [`issue`]: checking the CSR, and building + signing the certificate for an
/// already verified key.
fn steps(c: &mut Criterion) {
    let now = now();
    let ca_td = TrustDomain::new("cluster.local").unwrap();
    let request_td = TrustDomain::from_request("").unwrap();
    let p256_ca = ca(KeyAlgorithm::P256, &ca_td, now);
    let ed25519_ca = ca(KeyAlgorithm::Ed25519, &ca_td, now);
    let id = SpiffeId::workload(&request_td, "default", "myapp").unwrap();
    let key = csr::parse_and_verify(CSR_P256, &RustCryptoVerifier)
        .unwrap()
        .public_key;

    let mut group = c.benchmark_group("steps");
    for (name, csr_pem) in [("p256", CSR_P256), ("ed25519", CSR_ED25519)] {
        group.bench_function(format!("csr_parse_and_verify/{name}"), |b| {
            b.iter(|| csr::parse_and_verify(black_box(csr_pem), &RustCryptoVerifier).unwrap());
        });
    }
    for (name, bundle) in [("p256_ca", &p256_ca), ("ed25519_ca", &ed25519_ca)] {
        group.bench_function(format!("issue_verified_key/{name}"), |b| {
            let mut rng = UnwrapErr(SysRng);
            b.iter(|| {
                bundle
                    .issue_workload(
                        &WorkloadRequest {
                            public_key: black_box(&key),
                            spiffe_id: &id,
                            dns_names: &[],
                            ttl: DEFAULT_WORKLOAD_TTL,
                            clock_skew: DEFAULT_CLOCK_SKEW,
                        },
                        now,
                        &mut rng,
                    )
                    .unwrap()
                    .chain_pem
            });
        });
    }
    group.finish();
}

fn primitives(c: &mut Criterion) {
    let mut rng = UnwrapErr(SysRng);
    let message = message();
    let mut group = c.benchmark_group("primitives");
    for (name, algorithm) in [
        ("p256", KeyAlgorithm::P256),
        ("ed25519", KeyAlgorithm::Ed25519),
    ] {
        let key = SoftwareKey::generate(algorithm, &mut rng);
        let spki = key.public_key();
        let signature_algorithm = key.signature_algorithm();
        let signature = key.sign(&message).unwrap();
        RustCryptoVerifier
            .verify(
                spki.owned_to_ref(),
                signature_algorithm.owned_to_ref(),
                &message,
                &signature,
            )
            .unwrap();
        group.bench_function(format!("{name}_sign"), |b| {
            b.iter(|| key.sign(black_box(&message)).unwrap());
        });
        group.bench_function(format!("{name}_verify"), |b| {
            b.iter(|| {
                RustCryptoVerifier
                    .verify(
                        spki.owned_to_ref(),
                        signature_algorithm.owned_to_ref(),
                        black_box(&message),
                        black_box(&signature),
                    )
                    .unwrap();
            });
        });
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = issue_workload, steps, primitives
}
criterion_main!(benches);

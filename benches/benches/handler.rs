//! The `SignCertificate` handler path with each crypto backend, next to the raw signatures it is
//! made of.
//!
//! * `handler/<backend>/<csr>_csr`: PEM CSR in, response out, as `host/src/ca/service.rs` runs it:
//!   `csr::parse_and_verify` + `SpiffeId::workload` + `CaBundle::issue_workload` (build, sign and
//!   PEM-encode the leaf, append the issuer chain) + the response fields (chain bytes, trust
//!   anchors PEM, `valid_until`). P-256 issuer; the CSRs are daprd-shaped Go CSRs from
//!   `tests/data/go-csr/`. Validators, metrics, logging and gRPC are left out.
//! * `primitives/<backend>/<op>`: one P-256 signature, one P-256 check and one Ed25519 check over
//!   a 300-byte message (a workload TBSCertificate is 300–400 bytes) through the same backend.
//!
//! Backends: `native` is the host's aws-lc-rs backend (`NativeVerifier`, `NativeKey` issuer key),
//! `rustcrypto` is core's pure-Rust one (`RustCryptoVerifier`, `SoftwareKey`). Both load the
//! same credential files, so only the crypto differs.
//!
//! Issuing = verify the CSR + sign the certificate, so `1 / (sign + verify)` of one backend is
//! the ceiling of its issuance rate. Numbers in `benches/README.md`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use der::referenced::OwnedToRef;
use getrandom::SysRng;
use rand_core::UnwrapErr;
use warden_benches::{CSR_ED25519, CSR_P256, ca_params, message, now};
use warden_core::UnixTime;
use warden_core::bundle::{self, CaBundle};
use warden_core::crypto::{
    CaSigner, KeyAlgorithm, RustCryptoVerifier, SignatureVerifier, SoftwareKey,
};
use warden_core::spiffe::TrustDomain;
use warden_host::{NativeKey, NativeVerifier};

/// What `SignCertificateResponse` carries, without the protobuf type.
struct Response {
    workload_certificate: Vec<u8>,
    trust_chain_certificates: Vec<Vec<u8>>,
    valid_until: u64,
}

/// A CA and the verifier that goes with its backend.
struct Backend {
    name: &'static str,
    bundle: CaBundle,
    verifier: &'static dyn SignatureVerifier,
}

/// One P-256 CA's files, loaded once per backend.
fn backends(now: UnixTime) -> [Backend; 2] {
    let trust_domain = TrustDomain::new("cluster.local").unwrap();
    let params = ca_params(&trust_domain, KeyAlgorithm::P256);
    let (_, files) = CaBundle::generate(&params, now, &mut UnwrapErr(SysRng)).unwrap();
    let native = CaBundle::from_parts(
        bundle::parse_certificates(files.trust_anchors.as_bytes()).unwrap(),
        bundle::parse_certificates(files.issuer_certificate.as_bytes()).unwrap(),
        Box::new(NativeKey::from_pem(files.issuer_key.as_bytes()).unwrap()),
        now,
        &NativeVerifier,
    )
    .unwrap();
    let rustcrypto = CaBundle::from_pem(
        files.trust_anchors.as_bytes(),
        files.issuer_certificate.as_bytes(),
        files.issuer_key.as_bytes(),
        now,
        &RustCryptoVerifier,
    )
    .unwrap();
    [
        Backend {
            name: "native",
            bundle: native,
            verifier: &NativeVerifier,
        },
        Backend {
            name: "rustcrypto",
            bundle: rustcrypto,
            verifier: &RustCryptoVerifier,
        },
    ]
}

/// One `SignCertificate` past the validator: PEM CSR in, response out.
fn handle(backend: &Backend, request_td: &TrustDomain, csr_pem: &[u8], now: UnixTime) -> Response {
    let issued = warden_benches::issue(&backend.bundle, backend.verifier, request_td, csr_pem, now);
    Response {
        workload_certificate: issued.chain_pem.into_bytes(),
        trust_chain_certificates: vec![backend.bundle.trust_anchors_pem().as_bytes().to_vec()],
        valid_until: issued.validity.not_after.as_secs(),
    }
}

fn handler(c: &mut Criterion) {
    let now = now();
    let request_td = TrustDomain::from_request("").unwrap();
    let backends = backends(now);
    let mut group = c.benchmark_group("handler");
    for backend in &backends {
        for (csr_name, csr_pem) in [("p256_csr", CSR_P256), ("ed25519_csr", CSR_ED25519)] {
            // The response must hold a two-certificate chain that the other backend accepts;
            // check once, outside the timing loop.
            let response = handle(backend, &request_td, csr_pem, now);
            let chain_der = bundle::certificate_ders(&response.workload_certificate).unwrap();
            let chain = bundle::read_certificates(&chain_der).unwrap();
            assert_eq!(chain.len(), 2);
            let anchors_der = bundle::encode_certificates(backend.bundle.trust_anchors()).unwrap();
            let anchors = bundle::read_certificates(&anchors_der).unwrap();
            assert_eq!(response.trust_chain_certificates.len(), 1);
            assert!(response.valid_until > now.as_secs());
            for verifier in [
                &NativeVerifier as &dyn SignatureVerifier,
                &RustCryptoVerifier,
            ] {
                warden_core::chain::verify_svid(&chain, &anchors, now, verifier).unwrap();
            }
            group.bench_function(format!("{}/{csr_name}", backend.name), |b| {
                b.iter(|| handle(backend, &request_td, black_box(csr_pem), now));
            });
        }
    }
    group.finish();
}

fn primitives(c: &mut Criterion) {
    let message = message();
    let p256 = SoftwareKey::generate(KeyAlgorithm::P256, &mut UnwrapErr(SysRng));
    let ed25519 = SoftwareKey::generate(KeyAlgorithm::Ed25519, &mut UnwrapErr(SysRng));
    // The same P-256 key in both backends.
    let p256_native = NativeKey::from_software_key(&p256).unwrap();
    let signers: [(&str, &dyn CaSigner, &dyn SignatureVerifier); 2] = [
        ("native", &p256_native, &NativeVerifier),
        ("rustcrypto", &p256, &RustCryptoVerifier),
    ];

    let mut group = c.benchmark_group("primitives");
    for (backend, signer, verifier) in signers {
        group.bench_function(format!("{backend}/p256_sign"), |b| {
            b.iter(|| signer.sign(black_box(&message)).unwrap());
        });
        for (alg, key) in [("p256", &p256), ("ed25519", &ed25519)] {
            let spki = key.public_key();
            let algorithm = key.signature_algorithm();
            let signature = key.sign(&message).unwrap();
            verifier
                .verify(
                    spki.owned_to_ref(),
                    algorithm.owned_to_ref(),
                    &message,
                    &signature,
                )
                .unwrap();
            group.bench_function(format!("{backend}/{alg}_verify"), |b| {
                b.iter(|| {
                    verifier
                        .verify(
                            spki.owned_to_ref(),
                            algorithm.owned_to_ref(),
                            black_box(&message),
                            black_box(&signature),
                        )
                        .unwrap();
                });
            });
        }
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
    targets = handler, primitives
}
criterion_main!(benches);

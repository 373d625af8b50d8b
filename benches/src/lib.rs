//! Shared set-up for the criterion benches in `benches/benches/`; numbers in `benches/README.md`.
#![allow(clippy::expect_used)] // bench set-up: a failure here is a broken bench, not input

use std::time::SystemTime;

use getrandom::SysRng;
use rand_core::UnwrapErr;
use warden_core::UnixTime;
use warden_core::bundle::{CaBundle, CaParams, IssuedSvid, WorkloadRequest};
use warden_core::crypto::{KeyAlgorithm, SignatureVerifier};
use warden_core::csr;
use warden_core::profile::{DEFAULT_CA_TTL, DEFAULT_CLOCK_SKEW, DEFAULT_WORKLOAD_TTL};
use warden_core::spiffe::{SpiffeId, TrustDomain};

/// A daprd ≤ 1.17 CSR (Go stdlib, empty template, ECDSA P-256).
pub const CSR_P256: &[u8] = include_bytes!("../../tests/data/go-csr/csr-p256.pem");
/// A daprd ≥ 1.18 CSR (Go stdlib, empty template, Ed25519).
pub const CSR_ED25519: &[u8] = include_bytes!("../../tests/data/go-csr/csr-ed25519.pem");

/// About the size of the TBSCertificate of a workload SVID (300–400 bytes).
pub const MESSAGE_LEN: usize = 300;

/// A fixed message of [`MESSAGE_LEN`] bytes for the raw sign/verify benches.
pub fn message() -> Vec<u8> {
    (0..MESSAGE_LEN).map(|i| (i * 7 + 3) as u8).collect()
}

/// The system clock.
pub fn now() -> UnixTime {
    UnixTime::from_duration(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("clock after 1970"),
    )
}

/// How the benches' CAs are made: Sentry's defaults in `dapr-system`.
pub fn ca_params(trust_domain: &TrustDomain, algorithm: KeyAlgorithm) -> CaParams<'_> {
    CaParams {
        trust_domain,
        namespace: "dapr-system",
        key_algorithm: algorithm,
        lifetime: DEFAULT_CA_TTL,
        clock_skew: DEFAULT_CLOCK_SKEW,
    }
}

/// One `SignCertificate` past the validator, as `host/src/ca/service.rs` runs it: verify the PEM
/// CSR, then issue `spiffe://<td>/ns/default/myapp` with the default TTL and skew.
pub fn issue(
    bundle: &CaBundle,
    verifier: &dyn SignatureVerifier,
    request_td: &TrustDomain,
    csr_pem: &[u8],
    now: UnixTime,
) -> IssuedSvid {
    let verified = csr::parse_and_verify(csr_pem, verifier).expect("CSR verifies");
    let id = SpiffeId::workload(request_td, "default", "myapp").expect("valid SPIFFE ID");
    bundle
        .issue_workload(
            &WorkloadRequest {
                public_key: &verified.public_key,
                spiffe_id: &id,
                dns_names: &[],
                ttl: DEFAULT_WORKLOAD_TTL,
                clock_skew: DEFAULT_CLOCK_SKEW,
            },
            now,
            &mut UnwrapErr(SysRng),
        )
        .expect("issue")
}

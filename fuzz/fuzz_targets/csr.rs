//! Fuzz target `csr`: CSR PEM/DER parse + verify, RustCrypto and aws-lc-rs verifiers compared.
//!
//! The body is [`warden_fuzz::csr`], shared with `tests/tests/fuzz_regressions.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = warden_fuzz::csr(data);
});

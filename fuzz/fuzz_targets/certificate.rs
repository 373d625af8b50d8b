//! Fuzz target `certificate`: one DER certificate through core's in-place reader and
//! x509-cert's decoder (differential), then the chain checks on it.
//!
//! The body is [`warden_fuzz::certificate`], shared with `tests/tests/fuzz_regressions.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = warden_fuzz::certificate(data);
});

//! Fuzz target `bundle`: credential bundle (ca.crt, issuer.crt, issuer.key) parse and chain checks.
//!
//! The body is [`warden_fuzz::bundle`], shared with `tests/tests/fuzz_regressions.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = warden_fuzz::bundle(data);
});

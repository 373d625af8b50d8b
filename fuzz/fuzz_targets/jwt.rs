//! Fuzz target `jwt`: JWT header and claims parsing, JWK Set parsing.
//!
//! The body is [`warden_fuzz::jwt`], shared with `tests/tests/fuzz_regressions.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = warden_fuzz::jwt(data);
});

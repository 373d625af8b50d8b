//! Fuzz target `spiffe`: SPIFFE ID, trust domain and app ID parsing.
//!
//! The body is [`warden_fuzz::spiffe`], shared with `tests/tests/fuzz_regressions.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = warden_fuzz::spiffe(data);
});

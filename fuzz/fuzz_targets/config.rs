//! Fuzz target `config`: Dapr Configuration YAML, env expansion and Go durations.
//!
//! The body is [`warden_fuzz::config`], shared with `tests/tests/fuzz_regressions.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = warden_fuzz::config(data);
});

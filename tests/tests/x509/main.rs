//! warden-core's certificates, CSR checks and credential bundles, byte for byte against DER
//! written out by hand and against independent checks (`warden_tests::support`). One test
//! binary with a module per subject.
// The whole binary is test code: this lets clippy.toml's `allow-*-in-tests` settings cover the
// helpers outside `#[test]` functions too.
#![cfg(test)]

mod bundle_errors;
mod csr_rejections;
mod profiles;

//! The test-support library of Warden's integration tests (`tests/tests/*`): one place for the
//! helpers every test binary shares.
//!
//! - [`common`]: OS randomness, the clock, external commands (openssl, python3), temporary files,
//!   the Go-made CSR fixtures, openssl-made keys and CSRs, and a throwaway SPIFFE CA
//!   ([`common::TestCa`]).
//! - [`support`]: checks written independently of `warden-core` (hand-written DER and PEM,
//!   X509-SVID rules, rustls-webpki, SHA-256 by openssl) and thin wrappers over core's checks.
//! - [`server`]: a real `warden` process ([`server::Warden`]) on loopback ports, a gRPC client,
//!   response checks, credentials whose root key the test keeps, and a small tmpfs.
//! - [`softhsm`]: a SoftHSM2 token and the `warden` commands that use it.
//! - [`sentry_table`]: bad `SignCertificate` requests and Sentry's exact answer to each.
//!
//! The server binary the tests start is this package's `warden-under-test`
//! ([`server::warden_binary`]).
// This is test code compiled as a library, so clippy's `allow-*-in-tests` settings
// (`clippy.toml`) do not reach it: a helper that cannot do its job panics with a message, as a
// failed assertion in a test does.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
#![warn(missing_docs)]

pub mod common;
pub mod sentry_table;
pub mod server;
pub mod softhsm;
pub mod support;

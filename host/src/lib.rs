//! The `warden` binary as a library: a Sentry-compatible SPIFFE CA (gRPC over TLS), and the
//! daprd-like identity client. `main.rs` only calls [`cli::main`].
pub mod config;
pub mod fsutil;
pub mod identity;
pub mod native;
pub mod observability;
pub mod proto;

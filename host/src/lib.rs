//! The `warden` binary as a library: a Sentry-compatible SPIFFE CA (gRPC over TLS), and the
//! daprd-like identity client. `main.rs` only calls [`cli::main`].
pub mod audit;
pub mod cli;
pub mod config;
pub mod digest;
pub mod fsutil;
pub mod identity;
pub mod jwks;
pub mod jwt;
pub mod lifecycle;
pub mod native;
pub mod observability;
pub mod proto;
pub mod reload;
pub mod root_rotation;
pub mod rotation;
pub mod server;
pub mod service;
pub mod sign_csr;
pub mod spiffe_bundle;
pub mod store;
pub mod tls;
pub mod web;

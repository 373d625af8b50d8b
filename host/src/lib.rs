//! The `warden` binary as a library: a Sentry-compatible SPIFFE CA (gRPC over TLS), and the
//! daprd-like identity client. `main.rs` only calls [`cli::main`].
//!
//! The modules form a one-way tree (`scripts/module-graph.py` checks it): `cli` uses
//! everything; `server` starts the CA; `rotation`, `credentials`, `ca` and `tokens` are the
//! CA's parts, each using only the ones after it in this list; `go`, `util`, `native`,
//! `observability` and `proto` use no other module. `docs/architecture.md` is the map.
pub mod cli;
pub mod client;
pub mod edge;
pub mod server;

pub mod rotation;

pub mod credentials;

pub mod ca;
pub mod config;
pub mod tokens;

pub mod go;
pub mod native;
pub mod observability;
pub mod proto;
pub mod util;

//! The `warden` binary as a library: a Sentry-compatible SPIFFE CA (gRPC over TLS), and the
//! daprd-like identity client. `main.rs` only calls [`main`].
//!
//! The modules form a one-way tree (`scripts/module-graph.py` checks it): `cli` uses
//! everything; `server` starts the CA; `rotation`, `credentials`, `ca` and `tokens` are the
//! CA's parts, each using only the ones after it in this list; `go`, `util`, `native`,
//! `observability` and `proto` use no other module. `docs/architecture.md` is the map.
#![warn(missing_docs)]

pub(crate) mod cli;
pub mod client;
pub(crate) mod edge;
pub(crate) mod server;

pub(crate) mod rotation;

pub(crate) mod credentials;

pub(crate) mod ca;
pub(crate) mod config;
pub(crate) mod tokens;

pub(crate) mod go;
pub(crate) mod native;
pub(crate) mod observability;
pub mod proto;
pub(crate) mod util;

// The API the workspace's other crates use (the test server binary, benches, fuzz targets and
// tests), and nothing more: everything else is `pub(crate)`, so the compiler reports what is
// unused. `client` (the daprd-like client) and `proto` (the wire types) are public whole.
pub use cli::main;
pub use config::{ConfigError, SentryConfig};
pub use credentials::store::{CredentialPaths, GENERATION_MARKER, load as load_credentials};
pub use go::duration::{DurationError, parse_go_duration};
pub use go::env::expand_env;
pub use native::{NativeKey, NativeVerifier};
pub use rotation::issuer::rotate_issuer;
pub use tokens::jwt::{MAX_JWT_AUDIENCE_LEN, MAX_JWT_AUDIENCES};
pub use util::digest::fingerprint;

/// The `jwks` validator's parsing and claim checks, which the fuzz targets drive directly.
pub mod jwks {
    pub use crate::tokens::jwks::{JwksOptions, KeySet, TokenError, check_claims, read_header};
}

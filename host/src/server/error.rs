//! Why [`super::run`] stopped: one variant per start-up step that can fail, and the shutdown
//! that ran out of time.
//!
//! The texts are the `fatal` log line's: a wrapped error keeps its own text (`transparent`),
//! and a step that adds context names its cause as the `source`, so the binary's line (the
//! error, then each cause not already in it) reads as before.

use std::net::{AddrParseError, SocketAddr};
use std::time::Duration;

use warden_core::spiffe::SpiffeIdError;

use super::shutdown::{SHUTDOWN_GRACE_TEST_ENV, SHUTDOWN_GRACE_TEST_MAX_MS};
use super::web::WebError;
use crate::ca::audit::AuditError;
use crate::config::ConfigError;
use crate::credentials::serving_cert::ServingCertError;
use crate::credentials::store::StoreError;
use crate::rotation::issuer::RotationError;
use crate::tokens::jwt::{JwtError, StartError};

/// Why the server did not start, or did not stop gracefully.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum ServeError {
    /// `--mode kubernetes`: not supported yet.
    #[error(
        "--mode kubernetes is not supported yet by warden; run with --mode standalone (the default)"
    )]
    KubernetesMode,
    /// `--mode` is neither `standalone` nor `kubernetes`.
    #[error("invalid --mode {0:?}: expected standalone or kubernetes")]
    Mode(String),
    /// The config file could not be read, or its token validators could not start.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `--trust-domain` is not a valid SPIFFE trust domain.
    #[error("invalid --trust-domain {value:?}: {source}")]
    TrustDomain {
        /// The flag's value.
        value: String,
        /// What is wrong with it.
        source: SpiffeIdError,
    },
    /// The `NAMESPACE` does not make a valid SPIFFE ID for this server.
    #[error("invalid NAMESPACE {value:?}: {source}")]
    Namespace {
        /// The namespace.
        value: String,
        /// What is wrong with it.
        source: SpiffeIdError,
    },
    /// The gRPC-Web flags (`--grpc-web`, `--allowed-origins`, `--ui`) do not fit together.
    #[error(transparent)]
    Web(#[from] WebError),
    /// The `--jwt-*` or `--oidc-*` flags are wrong, or the JWT signing key cannot be loaded or
    /// made.
    #[error(transparent)]
    Jwt(#[from] JwtError),
    /// The `--hsm-*` flags are wrong (no PIN, for example).
    #[error(transparent)]
    Hsm(#[from] RotationError),
    /// The trust anchors, issuer certificate or key could not be loaded or made.
    #[error(transparent)]
    Credentials(#[from] StoreError),
    /// The server's own certificate could not be issued.
    #[error(transparent)]
    ServingCert(#[from] ServingCertError),
    /// The audit log could not be opened or failed its check.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// The JWT key watcher or the OIDC server could not start.
    #[error(transparent)]
    Oidc(#[from] StartError),
    /// The tests' shutdown grace override is not a number of milliseconds in range.
    #[error(
        "{}: expected a number of milliseconds up to {}",
        SHUTDOWN_GRACE_TEST_ENV,
        SHUTDOWN_GRACE_TEST_MAX_MS
    )]
    ShutdownGrace,
    /// A `--*listen-address` is not an IP address.
    #[error("invalid {server} listen address {address:?}")]
    ListenAddress {
        /// Which server: `gRPC`, `healthz` or `metrics`.
        server: &'static str,
        /// The flag's value.
        address: String,
        /// Why it is not an IP address.
        source: AddrParseError,
    },
    /// A server could not listen on all interfaces (IPv6, then IPv4) on its port.
    #[error("cannot listen for {server} on port {port}")]
    ListenAllInterfaces {
        /// Which server: `gRPC`, `healthz` or `metrics`.
        server: &'static str,
        /// Its port.
        port: u16,
        /// The OS error of the IPv4 attempt.
        source: std::io::Error,
    },
    /// A server could not listen on its address.
    #[error("cannot listen for {server} on {address}")]
    Listen {
        /// Which server: `gRPC`, `healthz` or `metrics`.
        server: &'static str,
        /// The address and port.
        address: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The credential directories could not be watched for reloads.
    #[error("cannot watch the credential directories")]
    Watch(#[source] notify::Error),
    /// The gRPC port's TLS configuration could not be built.
    #[error(transparent)]
    Tls(#[from] rustls::Error),
    /// A server did not stop within the grace period, or failed while stopping.
    #[error("Sentry did not shut down gracefully: {}", joined(.failures))]
    Shutdown {
        /// What went wrong with each server that did not stop cleanly, in the order they were
        /// stopped.
        failures: Vec<StopFailure>,
    },
}

/// Why one server did not stop cleanly at shutdown.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum StopFailure {
    /// The gRPC server ended with an error.
    #[error("gRPC server error: {0}")]
    Grpc(tonic::transport::Error),
    /// The gRPC server's task panicked or was cancelled.
    #[error("gRPC server task failed: {0}")]
    GrpcTask(tokio::task::JoinError),
    /// Requests still running at the deadline were cut.
    #[error(
        "{cut} in-flight request(s) did not finish within the {grace:?} grace period and were cut"
    )]
    RequestsCut {
        /// How many.
        cut: usize,
        /// The grace period they had.
        grace: Duration,
    },
    /// Another server (`healthz`, `metrics`, `OIDC`) ended with an error.
    #[error("{server} server error: {error}")]
    Server {
        /// Which server.
        server: &'static str,
        /// Its error.
        error: std::io::Error,
    },
    /// Another server's task panicked or was cancelled.
    #[error("{server} server task failed: {error}")]
    ServerTask {
        /// Which server.
        server: &'static str,
        /// How the task ended.
        error: tokio::task::JoinError,
    },
    /// Another server had not stopped at the deadline; its connections were cut.
    #[error(
        "the {server} server did not stop within the {grace:?} grace period; its connections were cut"
    )]
    ServerCut {
        /// Which server.
        server: &'static str,
        /// The grace period it had.
        grace: Duration,
    },
}

/// The failures, one after the other.
fn joined(failures: &[StopFailure]) -> String {
    failures
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

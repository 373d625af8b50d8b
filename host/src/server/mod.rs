//! `warden` with no subcommand: Sentry's flags, Sentry's start-up sequence and log lines, the
//! gRPC CA over TLS, healthz and metrics, hot reload, expiry reports and graceful shutdown.
//!
//! [`run`] is the table of contents; each step lives in a file of this folder: `startup`
//! (settings, credentials, audit log, CA state, healthz and metrics), `background` (reload,
//! rotation, renewal), `grpc` and `web` (the gRPC port and its browser layers), `listeners`
//! (sockets and TLS), `trust_bundle` (`GET /bundle`) and `shutdown`.

mod background;
mod error;
mod grpc;
mod listeners;
mod shutdown;
pub(crate) mod spiffe_bundle;
mod startup;
mod trust_bundle;
pub(crate) mod web;

use std::path::PathBuf;

pub(crate) use error::{ServeError, StopFailure};

use warden_core::bundle::{ISSUER_CERT_FILENAME, ISSUER_KEY_FILENAME, TRUST_ANCHORS_FILENAME};

use crate::observability::{LogLevel, SCOPE_SENTRY};

/// Sentry's flags, names and defaults (spec §4). Go's single-dash spelling (`-port`) is
/// accepted too, see [`crate::cli`].
#[derive(Clone, Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// Directory holding the trust anchors, issuer certificate and issuer key. Generated
    /// (self-signed root + issuer, files 0600) on first start when any file is missing.
    #[arg(long, default_value = "/var/run/secrets/dapr.io/credentials")]
    pub issuer_credentials: PathBuf,
    /// Trust anchors file name (PEM, one or more self-signed roots). An absolute path is used
    /// as given.
    #[arg(long, default_value = TRUST_ANCHORS_FILENAME)]
    pub issuer_ca_filename: String,
    /// Issuer certificate chain file name (PEM, issuer first).
    #[arg(long, default_value = ISSUER_CERT_FILENAME)]
    pub issuer_certificate_filename: String,
    /// Issuer private key file name (PEM: PKCS#8, SEC1 EC or PKCS#1 RSA).
    #[arg(long, default_value = ISSUER_KEY_FILENAME)]
    pub issuer_key_filename: String,
    /// Trust domain of the CA: the root's subject and this server's SPIFFE ID
    /// spiffe://<trust-domain>/ns/<NAMESPACE>/dapr-sentry.
    #[arg(long, default_value = "localhost")]
    pub trust_domain: String,
    /// Path of a Dapr Configuration YAML (spec.mtls: workloadCertTTL, allowedClockSkew,
    /// tokenValidators). Without it: 24h TTL, 15m skew, insecure validator.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// gRPC port of the CA (TLS, ALPN h2).
    #[arg(long, default_value_t = 50001, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,
    /// Address the gRPC server binds; empty means all interfaces.
    #[arg(long, default_value = "")]
    pub listen_address: String,
    /// Port of the health endpoint GET /healthz.
    #[arg(long, default_value_t = 8080, value_parser = clap::value_parser!(u16).range(1..))]
    pub healthz_port: u16,
    /// Address of the health endpoint; empty means all interfaces.
    #[arg(long, default_value = "")]
    pub healthz_listen_address: String,
    /// Serve Prometheus metrics.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub enable_metrics: bool,
    /// Port of the Prometheus endpoint (GET / and /metrics).
    #[arg(long, default_value_t = 9090, value_parser = clap::value_parser!(u16).range(1..))]
    pub metrics_port: u16,
    /// Address of the Prometheus endpoint.
    #[arg(long, default_value = "0.0.0.0")]
    pub metrics_listen_address: String,
    /// Only `standalone` is supported; `kubernetes` is refused with an explanation.
    #[arg(long, default_value = "standalone")]
    pub mode: String,
    /// Accepted for compatibility; only used in kubernetes mode.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Minimum log level.
    #[arg(long, value_enum, default_value = "info")]
    pub log_level: LogLevel,
    /// Log JSON lines with Dapr's fields (time, level, msg, scope, type, instance, ver).
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub log_as_json: bool,
    /// Append one JSON line per SignCertificate (issued or refused; never the token) to this
    /// file, HMAC-chained with a checkpoint beside it (FILE.checkpoint), so `warden audit
    /// verify` finds any edited, deleted or reordered line, including the last ones. Nothing is
    /// issued while the file cannot be written.
    #[arg(long, value_name = "FILE")]
    pub audit_log: Option<PathBuf>,
    /// The audit chain's key (32 random bytes, hex, 0600), created on first use. Default:
    /// `audit.key` in --issuer-credentials.
    #[arg(long, value_name = "FILE", requires = "audit_log")]
    pub audit_key: Option<PathBuf>,
    /// Roll the audit log over when it reaches this many bytes: FILE becomes FILE.<n> and a new
    /// FILE continues the chain. 0 (the default) never rolls over.
    #[arg(
        long,
        value_name = "BYTES",
        default_value_t = 0,
        requires = "audit_log"
    )]
    pub audit_log_max_bytes: u64,
    /// Sentry's namespace: the issuer's and this server's SPIFFE path.
    #[arg(
        long = "namespace",
        env = "NAMESPACE",
        default_value = "default",
        hide = true
    )]
    pub namespace: String,
    /// Also accept gRPC-Web (browsers, tonic-web) for SignCertificate on the gRPC port, over
    /// h2 or HTTP/1.1. Off by default: the port then speaks plain gRPC over h2 only, as Sentry.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub grpc_web: bool,
    /// Comma-separated exact origins (scheme://host[:port]) whose pages may call gRPC-Web from
    /// another origin (CORS); no wildcards. Needs --grpc-web. The --ui page is same-origin.
    #[arg(long, default_value = "", value_name = "ORIGINS")]
    pub allowed_origins: String,
    /// Serve the static files of DIR (html, js, wasm, css, json) for GET on the gRPC port:
    /// the browser demo page in wasm/www. No directory listing, nothing outside DIR.
    #[arg(long, value_name = "DIR")]
    pub ui: Option<PathBuf>,
    /// The HSM-held root: with these, the server rotates its issuer automatically.
    #[command(flatten)]
    pub hsm: crate::rotation::issuer::HsmArgs,
    /// JWT-SVIDs and OIDC discovery (`--jwt-*`, `--oidc-*`).
    #[command(flatten)]
    pub jwt: crate::tokens::jwt::JwtArgs,
}

/// Version printed in the start-up line and in JSON logs.
pub(crate) const VERSION: &str = env!("CARGO_PKG_VERSION");
const COMMIT: &str = match option_env!("WARDEN_GIT_COMMIT") {
    Some(c) => c,
    None => "unknown",
};

/// Runs the CA until SIGTERM/SIGINT. Start-up errors are returned (the caller logs them as
/// fatal and exits non-zero); nothing on disk is touched when validation fails.
pub(crate) async fn run(args: ServeArgs) -> Result<(), ServeError> {
    tracing::info!(target: SCOPE_SENTRY, "Starting Dapr Sentry certificate authority -- version {VERSION} -- commit {COMMIT}");
    startup::check_mode(&args.mode)?;
    let mut settings = startup::Settings::read(&args)?;
    let probes = startup::Probes::register(args.enable_metrics);
    let validators = startup::start_validators(&args, &settings, &probes.health)?;
    let credentials = startup::load_credentials(&args, &settings, &probes.metrics)?;
    let serving = startup::serving_cert(&credentials, &settings)?;
    let jwt = startup::load_jwt_issuer(settings.jwt.take())?;
    let audit = startup::open_audit_log(&args, &probes)?;
    let state = startup::ca_state(
        &args,
        &settings,
        &credentials,
        &probes,
        validators,
        jwt,
        audit,
    );

    let (shutdown, signal) = shutdown::channel(shutdown::grace()?);
    let (healthz, trust_bundle) =
        startup::serve_healthz(&args, &probes, &credentials, &signal).await?;
    let (oidc, _jwt_watcher) =
        startup::serve_oidc(&state, settings.oidc.take(), &probes, &signal).await?;
    let metrics = startup::serve_metrics(&args, &probes, &signal).await?;
    let server_id = &settings.server_id;
    let _watcher = background::spawn(&state, &serving, server_id, &trust_bundle, credentials)?;
    let incoming = grpc::listen(&args, &serving, &settings.web).await?;
    probes.sentry.ready();
    let (grpc, in_flight) = grpc::spawn(incoming, &settings.web, &state, &signal);

    shutdown::wait_for_signal().await;
    tracing::info!(target: SCOPE_SENTRY, "Received shutdown signal; finishing in-flight requests");
    probes.sentry.not_ready();
    shutdown
        .finish(grpc, &in_flight, healthz, metrics, oidc)
        .await
}

//! `warden` with no subcommand: Sentry's flags, Sentry's start-up sequence and log lines, the
//! gRPC CA over TLS, healthz and metrics, hot reload, expiry reports and graceful shutdown.

pub mod spiffe_bundle;
pub mod web;

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use arc_swap::ArcSwap;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;
use warden_core::bundle::{ISSUER_CERT_FILENAME, ISSUER_KEY_FILENAME, TRUST_ANCHORS_FILENAME};
use warden_core::spiffe::{SpiffeId, TrustDomain};

use crate::ca::service::{CaService, CaState, IssuancePolicy};
use crate::config::SentryConfig;
use crate::credentials::reload;
use crate::credentials::serving_cert::{self, ServingCert};
use crate::credentials::store::{self, CredentialPaths, GenerateOptions, Origin};
use crate::observability::{self, Health, LogLevel, Metrics, SCOPE_CA, SCOPE_SENTRY, SCOPE_SERVER};
use crate::util::clock::now;

/// Sentry's flags, names and defaults (spec §4). Go's single-dash spelling (`-port`) is
/// accepted too, see [`crate::cli`].
#[derive(Clone, Debug, clap::Args)]
pub struct ServeArgs {
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
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
const COMMIT: &str = match option_env!("WARDEN_GIT_COMMIT") {
    Some(c) => c,
    None => "unknown",
};

/// Lifetime of an issuer the HSM root makes at start-up when the issuer files are missing: the
/// default of `warden issuer rotate` (capped at the root's NotAfter).
const HSM_ISSUER_LIFETIME: Duration = Duration::from_secs(365 * 24 * 60 * 60);
/// How long in-flight requests get to finish after SIGTERM (Sentry's 15 s).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(15);
/// Overrides [`SHUTDOWN_GRACE`] in milliseconds, for the tests only (a test that waits out
/// 15 s would slow the suite). Undocumented on purpose: operators get Sentry's value.
const SHUTDOWN_GRACE_TEST_ENV: &str = "WARDEN_TEST_SHUTDOWN_GRACE_MS";
/// A TLS handshake that takes longer than this is dropped (slow or idle clients).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A client that completed the TLS handshake must send its first bytes (the HTTP/2 preface)
/// within this; otherwise the connection is closed (HTTP/2 keep-alive pings only start after the
/// preface, so a silent client would otherwise hold its connection forever).
const PREFACE_TIMEOUT: Duration = Duration::from_secs(10);
/// The HTTP/2 client preface is 24 bytes; the look-ahead buffer needs no more.
const PREFACE_BUFFER: usize = 24;

/// Runs the CA until SIGTERM/SIGINT. Start-up errors are returned (the caller logs them as
/// fatal and exits non-zero); nothing on disk is touched when validation fails.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    tracing::info!(target: SCOPE_SENTRY, "Starting Dapr Sentry certificate authority -- version {VERSION} -- commit {COMMIT}");
    match args.mode.as_str() {
        "standalone" => {}
        "kubernetes" => bail!(
            "--mode kubernetes is not supported yet by warden; run with --mode standalone (the default)"
        ),
        other => bail!("invalid --mode {other:?}: expected standalone or kubernetes"),
    }
    let config = match &args.config {
        Some(path) => SentryConfig::load(path)?,
        None => SentryConfig::default(),
    };
    let trust_domain = TrustDomain::new(&args.trust_domain)
        .map_err(|e| anyhow::anyhow!("invalid --trust-domain {:?}: {e}", args.trust_domain))?;
    let server_id = SpiffeId::sentry(&trust_domain, &args.namespace)
        .map_err(|e| anyhow::anyhow!("invalid NAMESPACE {:?}: {e}", args.namespace))?;
    let web = web::WebOptions::new(args.grpc_web, &args.allowed_origins, args.ui.as_deref())?;
    let jwt_settings = args.jwt.settings(&args.issuer_credentials)?;
    let oidc_settings = args.jwt.oidc_settings()?;
    let policy = IssuancePolicy {
        ttl: config.workload_cert_ttl,
        clock_skew: config.allowed_clock_skew,
    };

    let metrics = Metrics::new();
    let health = Health::default();
    let healthz_target = health.register("healthz-server");
    let sentry_target = health.register("sentry-server");
    let metrics_target = args
        .enable_metrics
        .then(|| health.register("metrics-exporter"));
    // A configured jwks validator registers its own health target, ready after its first load.
    let validators = crate::config::start_validators(
        &config,
        args.config.as_deref().unwrap_or(std::path::Path::new("")),
        &health,
        &server_id.to_string(),
    )?;

    tracing::info!(target: SCOPE_SENTRY, "Using local file system for trust bundle storage");
    let paths = CredentialPaths::new(
        &args.issuer_credentials,
        &args.issuer_ca_filename,
        &args.issuer_certificate_filename,
        &args.issuer_key_filename,
    );
    let generate = GenerateOptions {
        trust_domain: trust_domain.clone(),
        namespace: args.namespace.clone(),
        clock_skew: policy.clock_skew,
    };
    // Read before the credentials: with an HSM root a missing issuer is made by the HSM, and a
    // missing ca.crt is never replaced by a software root.
    let hsm = args.hsm.config()?;
    let mut issue_from_hsm = hsm.as_ref().map(|config| {
        let server_id = server_id.clone();
        move |paths: &CredentialPaths| -> Result<(), String> {
            let signer = warden_hsm::Hsm::open_signer(config).map_err(|e| e.to_string())?;
            let issuer = crate::rotation::issuer::replace_issuer(
                paths,
                &signer,
                Some(&server_id),
                HSM_ISSUER_LIFETIME,
                policy.clock_skew,
                now(),
            )
            .map_err(|e| e.to_string())?;
            tracing::info!(target: SCOPE_CA,
                "Issuer certs not found: made a new issuer with the HSM root (key {:?} in token {:?}), valid until unix {}; {} kept as it is",
                config.key_label, config.token_label, issuer.validity.not_after.as_secs(),
                paths.trust_anchors.display());
            Ok(())
        }
    });
    let (bundle, origin) = store::load_or_start(
        &paths,
        &generate,
        issue_from_hsm
            .as_mut()
            .map(|f| f as &mut dyn FnMut(&CredentialPaths) -> Result<(), String>),
        now(),
        &mut rand_core::UnwrapErr(getrandom::SysRng),
    )?;
    drop(issue_from_hsm);
    match origin {
        Origin::Generated => {
            tracing::info!(target: SCOPE_CA, "Root and issuer certs not found: generating self signed CA");
            metrics.issuer_cert_changed();
        }
        Origin::IssuedFromHsm => metrics.issuer_cert_changed(),
        Origin::Loaded => {
            tracing::info!(target: SCOPE_CA, "Root and issuer certs found: using credentials from store");
        }
    }
    // Sentry does not look; a key other users can read, or a directory they can write to,
    // gives the CA away, so say so (a warning: the operator may have reasons).
    for problem in crate::util::files::loose_permissions(&paths.dir, &[&paths.issuer_key]) {
        tracing::warn!(target: SCOPE_CA, "{problem}");
    }
    tracing::info!(target: SCOPE_CA, "CA certificate key pair ready");
    let bundle = Arc::new(bundle);
    reload::report_expiry(&bundle, &metrics, now());

    let serving = Arc::new(ServingCert::new(&bundle, &server_id, policy, now())?);
    let jwt = jwt_settings
        .map(|s| crate::tokens::jwt::JwtIssuer::load_or_generate(s, now().as_secs()))
        .transpose()?
        .map(Arc::new);
    let state = Arc::new(CaState {
        bundle: ArcSwap::new(Arc::clone(&bundle)),
        policy,
        validators: validators.clone(),
        namespace: args.namespace.clone(),
        trust_domain: trust_domain.clone(),
        metrics: metrics.clone(),
        audit: args
            .audit_log
            .as_deref()
            .map(|path| {
                crate::ca::audit::AuditLog::open(
                    path,
                    crate::ca::audit::AuditOptions {
                        key: args
                            .audit_key
                            .clone()
                            .unwrap_or_else(|| args.issuer_credentials.join("audit.key")),
                        max_bytes: args.audit_log_max_bytes,
                        health: Some(health.register("audit-log")),
                        metrics: Some(metrics.clone()),
                    },
                )
            })
            .transpose()?,
        jwt: jwt.clone(),
    });
    for name in validators.names() {
        tracing::info!(target: SCOPE_SERVER, "Adding validator '{name}' with Sentry ID: {server_id}");
    }

    let grace = shutdown_grace()?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let shutdown = move || {
        let mut rx = shutdown_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };

    let healthz_listener = bind(&args.healthz_listen_address, args.healthz_port, "healthz").await?;
    let trust_bundle = Arc::new(TrustBundle::new(paths.trust_anchors.clone()));
    trust_bundle.update(&bundle);
    let healthz = tokio::spawn(observability::serve_healthz(
        healthz_listener,
        health.clone(),
        trust_bundle.router(),
        shutdown(),
    ));
    tracing::info!(target: SCOPE_SENTRY, "Healthz server is listening on {}:{}", args.healthz_listen_address, args.healthz_port);
    healthz_target.ready();
    let (oidc_server, _jwt_watcher) =
        crate::tokens::jwt::start(jwt.as_ref(), oidc_settings, &health, shutdown()).await?;
    let metrics_server = match metrics_target {
        Some(target) => {
            let listener = bind(&args.metrics_listen_address, args.metrics_port, "metrics").await?;
            target.ready();
            tracing::info!(target: SCOPE_SENTRY, "metrics server started on {}:{}/", args.metrics_listen_address, args.metrics_port);
            Some(tokio::spawn(observability::serve_metrics(
                listener,
                metrics.clone(),
                shutdown(),
            )))
        }
        None => None,
    };

    // Reload and renewal share one path: a new bundle also means a new serving certificate,
    // so clients that only trust a new root can still reach the server.
    let on_new_bundle = {
        let state = Arc::clone(&state);
        let serving = Arc::clone(&serving);
        let server_id = server_id.clone();
        let metrics = metrics.clone();
        let trust_bundle = Arc::clone(&trust_bundle);
        move |bundle: Arc<warden_core::bundle::CaBundle>| {
            state.bundle.store(Arc::clone(&bundle));
            trust_bundle.update(&bundle);
            if let Err(e) = serving.renew(&bundle, &server_id, policy, now()) {
                metrics.server_cert_issue_failed("ca_error");
                tracing::error!(target: SCOPE_SERVER, "Failed to renew the server certificate after reload: {e}");
            }
        }
    };
    let _watcher = reload::watch(
        paths.clone(),
        crate::util::watch::RELOAD_DEBOUNCE,
        metrics.clone(),
        on_new_bundle.clone(),
    )
    .context("cannot watch the credential directories")?;
    if let Some(hsm) = hsm {
        let state = Arc::clone(&state);
        tokio::spawn(crate::rotation::issuer::auto_rotate(
            hsm,
            paths.clone(),
            move || state.bundle.load_full(),
            on_new_bundle,
            policy.ttl,
            policy.clock_skew,
        ));
    }
    tokio::spawn(renew_serving_cert(
        Arc::clone(&state),
        Arc::clone(&serving),
        server_id.clone(),
    ));
    tokio::spawn(hourly_expiry_report(Arc::clone(&state)));
    if state.audit.is_some() {
        tokio::spawn(recheck_audit_log(Arc::clone(&state)));
    }

    let grpc_listener = bind(&args.listen_address, args.port, "gRPC").await?;
    let mut tls_config = serving_cert::server_config(Arc::clone(&serving))?;
    if web.http1() {
        // gRPC-Web clients and proxies may speak HTTP/1.1; plain gRPC stays on h2.
        tls_config.alpn_protocols.push(b"http/1.1".to_vec());
    }
    let acceptor = TlsAcceptor::from(Arc::new(tls_config));
    let incoming = tls_incoming(grpc_listener, acceptor);
    tracing::info!(target: SCOPE_SERVER, "Running gRPC server on port {}", args.port);
    if web.grpc_web {
        tracing::info!(target: SCOPE_SERVER, "Accepting gRPC-Web on port {}; CORS origins: {}", args.port,
            if web.allowed_origins.is_empty() { "none (same origin only)".to_owned() } else { web.allowed_origins.join(", ") });
    }
    if let Some(dir) = &web.ui {
        tracing::info!(target: SCOPE_SERVER, "Serving the browser UI from {} at https://<host>:{}/", dir.display(), args.port);
    }
    sentry_target.ready();

    // Outermost the in-flight counter (it must see every request to say how many a shutdown
    // cut), then the browser layers (web.rs): CORS, static UI, gRPC-Web translation, and
    // always the gRPC content-type check in front of the CA.
    let in_flight = InFlight::default();
    let mut grpc = tokio::spawn(
        tonic::transport::Server::builder()
            .accept_http1(web.http1())
            .http2_keepalive_interval(Some(Duration::from_secs(60)))
            .layer(in_flight.clone())
            .layer(tower::util::option_layer(web.cors_layer()))
            .layer(tower::util::option_layer(web.ui_layer()))
            .layer(tower::util::option_layer(web.grpc_web_layer()))
            .layer(web::GrpcOnlyLayer)
            .add_service(CaService::new(Arc::clone(&state)).into_server())
            .serve_with_incoming_shutdown(incoming, shutdown()),
    );

    wait_for_signal().await;
    tracing::info!(target: SCOPE_SENTRY, "Received shutdown signal; finishing in-flight requests");
    sentry_target.not_ready();
    let _ = shutdown_tx.send(true);
    // One deadline for everything: a server that cannot stop within the grace period is cut,
    // and the exit status says so (Sentry logs "shut down gracefully" and exits 0 regardless).
    let deadline = tokio::time::Instant::now() + grace;
    let mut failures = Vec::new();
    match tokio::time::timeout_at(deadline, &mut grpc).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => failures.push(format!("gRPC server error: {e}")),
        Ok(Err(e)) => failures.push(format!("gRPC server task failed: {e}")),
        Err(_) => {
            let cut = in_flight.count();
            grpc.abort();
            tracing::error!(target: SCOPE_SERVER, "Shutdown grace period of {grace:?} ran out: cutting {cut} in-flight request(s)");
            failures.push(format!(
                "{cut} in-flight request(s) did not finish within the {grace:?} grace period and were cut"
            ));
        }
    }
    let others = [
        ("healthz", Some(healthz)),
        ("metrics", metrics_server),
        ("OIDC", oidc_server),
    ];
    for (name, task) in others {
        let Some(mut task) = task else { continue };
        match tokio::time::timeout_at(deadline, &mut task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => failures.push(format!("{name} server error: {e}")),
            Ok(Err(e)) => failures.push(format!("{name} server task failed: {e}")),
            Err(_) => {
                task.abort();
                failures.push(format!(
                    "the {name} server did not stop within the {grace:?} grace period; its connections were cut"
                ));
            }
        }
    }
    if !failures.is_empty() {
        bail!(
            "Sentry did not shut down gracefully: {}",
            failures.join("; ")
        );
    }
    tracing::info!(target: SCOPE_SENTRY, "Sentry shut down gracefully");
    Ok(())
}

/// [`SHUTDOWN_GRACE`], or the tests' override.
fn shutdown_grace() -> anyhow::Result<Duration> {
    parse_shutdown_grace(std::env::var_os(SHUTDOWN_GRACE_TEST_ENV).as_deref())
}

/// The longest grace the override accepts: beyond it the deadline arithmetic could overflow.
const SHUTDOWN_GRACE_TEST_MAX_MS: u64 = 3_600_000;

fn parse_shutdown_grace(value: Option<&std::ffi::OsStr>) -> anyhow::Result<Duration> {
    let Some(value) = value else {
        return Ok(SHUTDOWN_GRACE);
    };
    value
        .to_str()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|ms| *ms <= SHUTDOWN_GRACE_TEST_MAX_MS)
        .map(Duration::from_millis)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "{SHUTDOWN_GRACE_TEST_ENV}: expected a number of milliseconds up to {SHUTDOWN_GRACE_TEST_MAX_MS}"
            )
        })
}

/// Counts the requests being handled, so a shutdown that runs out of time can say how many it
/// cut. A request counts from the moment its headers reach the service until its handler
/// returns or is dropped (a unary answer is small and leaves at once).
#[derive(Clone, Debug, Default)]
struct InFlight(Arc<std::sync::atomic::AtomicUsize>);

impl InFlight {
    fn count(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn enter(&self) -> InFlightGuard {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        InFlightGuard(Arc::clone(&self.0))
    }
}

struct InFlightGuard(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl<S> tower::Layer<S> for InFlight {
    type Service = InFlightService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        InFlightService {
            inner,
            count: self.clone(),
        }
    }
}

#[derive(Clone, Debug)]
struct InFlightService<S> {
    inner: S,
    count: InFlight,
}

impl<S, R> tower::Service<R> for InFlightService<S>
where
    S: tower::Service<R>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = std::pin::Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        let guard = self.count.enter();
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await;
            drop(guard);
            response
        })
    }
}

async fn bind(address: &str, port: u16, what: &str) -> anyhow::Result<TcpListener> {
    let ip: IpAddr = if address.is_empty() {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        address
            .parse()
            .with_context(|| format!("invalid {what} listen address {address:?}"))?
    };
    let addr = SocketAddr::new(ip, port);
    match TcpListener::bind(addr).await {
        Ok(l) => Ok(l),
        // Hosts without IPv6 cannot bind [::]; all-interfaces then means 0.0.0.0.
        Err(_) if address.is_empty() => TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], port)))
            .await
            .with_context(|| format!("cannot listen for {what} on port {port}")),
        Err(e) => Err(e).with_context(|| format!("cannot listen for {what} on {addr}")),
    }
}

/// Accepts TCP connections and completes TLS handshakes off the accept loop, so one slow
/// client cannot hold up the others; a connection whose first bytes do not arrive within
/// [`PREFACE_TIMEOUT`] after the handshake is closed.
fn tls_incoming(
    listener: TcpListener,
    acceptor: TlsAcceptor,
) -> ReceiverStream<Result<SpokeFirst, std::io::Error>> {
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(conn) => conn,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(target: SCOPE_SERVER, "accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            if tx.is_closed() {
                break;
            }
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let mut stream =
                            tokio::io::BufReader::with_capacity(PREFACE_BUFFER, stream);
                        match tokio::time::timeout(
                            PREFACE_TIMEOUT,
                            tokio::io::AsyncBufReadExt::fill_buf(&mut stream),
                        )
                        .await
                        {
                            Ok(Ok(first)) if !first.is_empty() => {
                                let _ = tx.send(Ok(SpokeFirst(stream))).await;
                            }
                            Ok(_) => {}
                            Err(_) => {
                                tracing::debug!(target: SCOPE_SERVER, "{peer} sent nothing after the TLS handshake; closed");
                            }
                        }
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(target: SCOPE_SERVER, "TLS handshake with {peer} failed: {e}");
                    }
                    Err(_) => {
                        tracing::debug!(target: SCOPE_SERVER, "TLS handshake with {peer} timed out");
                    }
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// A TLS connection whose client has sent its first bytes, still buffered for the reader.
struct SpokeFirst(tokio::io::BufReader<tokio_rustls::server::TlsStream<TcpStream>>);

impl tonic::transport::server::Connected for SpokeFirst {
    type ConnectInfo =
        <tokio_rustls::server::TlsStream<TcpStream> as tonic::transport::server::Connected>::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        tonic::transport::server::Connected::connect_info(self.0.get_ref())
    }
}

impl tokio::io::AsyncRead for SpokeFirst {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        tokio::io::AsyncRead::poll_read(std::pin::Pin::new(&mut self.0), cx, buf)
    }
}

impl tokio::io::AsyncWrite for SpokeFirst {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        tokio::io::AsyncWrite::poll_write(std::pin::Pin::new(&mut self.0), cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        tokio::io::AsyncWrite::poll_write_vectored(std::pin::Pin::new(&mut self.0), cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        tokio::io::AsyncWrite::is_write_vectored(&self.0)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        tokio::io::AsyncWrite::poll_flush(std::pin::Pin::new(&mut self.0), cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        tokio::io::AsyncWrite::poll_shutdown(std::pin::Pin::new(&mut self.0), cx)
    }
}

/// Renews the server's own SVID at half its life; retries every 10 s on failure.
async fn renew_serving_cert(state: Arc<CaState>, serving: Arc<ServingCert>, server_id: SpiffeId) {
    loop {
        let due = warden_core::schedule::renewal_time(serving.validity());
        let wait = now().until(due).min(Duration::from_secs(60));
        tokio::time::sleep(wait.max(Duration::from_secs(1))).await;
        if now() < due {
            continue;
        }
        let bundle = state.bundle.load_full();
        match serving.renew(&bundle, &server_id, state.policy, now()) {
            Ok(v) => {
                tracing::info!(target: SCOPE_SERVER, "Renewed server certificate; expires on {}", v.not_after)
            }
            Err(e) => {
                state.metrics.server_cert_issue_failed("ca_error");
                tracing::error!(target: SCOPE_SERVER, "Failed to renew the server certificate: {e}");
                tokio::time::sleep(Duration::from_secs(10)).await;
            }
        }
    }
}

/// While the audit log cannot be written, healthz is 503 and probes may keep requests away,
/// so the server itself retries every second: once a write succeeds, it is ready again.
async fn recheck_audit_log(state: Arc<CaState>) {
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    loop {
        ticker.tick().await;
        if let Some(audit) = &state.audit {
            // A no-op while writable; a failure is logged by the audit log itself.
            let _ = audit.ensure_writable();
        }
    }
}

/// Sentry ≤1.11's hourly check, extended to the issuer.
async fn hourly_expiry_report(state: Arc<CaState>) {
    let mut ticker = tokio::time::interval(Duration::from_secs(3600));
    ticker.tick().await; // the first tick is immediate; start-up already reported
    loop {
        ticker.tick().await;
        reload::report_expiry(&state.bundle.load(), &state.metrics, now());
    }
}

async fn wait_for_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(target: SCOPE_SENTRY, "cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

/// The SPIFFE bundle served at `GET /bundle`, rebuilt whenever the anchors change.
///
/// Either the complete document for the anchors in use, or 503: before the first build, and
/// whenever the anchors in use cannot be written as a bundle (a key with no JWK form, a
/// `ca.crt` whose modification time gives no `spiffe_sequence`). Never an empty or partial
/// 200, and never a stale document for anchors the CA no longer uses.
#[derive(Debug)]
struct TrustBundle {
    trust_anchors_file: PathBuf,
    json: ArcSwap<Option<String>>,
}

impl TrustBundle {
    fn new(trust_anchors_file: PathBuf) -> Self {
        Self {
            trust_anchors_file,
            json: ArcSwap::from_pointee(None),
        }
    }

    /// Recomputes the bundle; on failure `/bundle` answers 503 until the next success.
    fn update(&self, bundle: &warden_core::bundle::CaBundle) {
        let anchors = bundle.trust_anchors();
        let json = spiffe_bundle::sequence(&self.trust_anchors_file).and_then(|sequence| {
            spiffe_bundle::bundle_json(anchors, sequence, spiffe_bundle::DEFAULT_REFRESH_HINT_SECS)
        });
        match json {
            Ok(json) => self.json.store(Arc::new(Some(json))),
            Err(e) => {
                self.json.store(Arc::new(None));
                tracing::error!(target: SCOPE_SENTRY, "Cannot update the SPIFFE trust bundle; GET /bundle answers 503 until the anchors can be published: {e}");
            }
        }
    }

    fn router(self: &Arc<Self>) -> axum::Router {
        use axum::http::{StatusCode, header};
        use axum::response::IntoResponse as _;
        let this = Arc::clone(self);
        axum::Router::new().route(
            "/bundle",
            axum::routing::get(move || {
                let json = this.json.load_full();
                async move {
                    match Option::clone(&json) {
                        Some(json) => {
                            ([(header::CONTENT_TYPE, "application/json")], json).into_response()
                        }
                        // The reason is in the log; the healthz port is unauthenticated.
                        None => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            [
                                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                                (header::CACHE_CONTROL, "no-store"),
                            ],
                            "trust bundle not available\n",
                        )
                            .into_response(),
                    }
                }
            }),
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use tower::ServiceExt as _;

    async fn get_bundle(trust_bundle: &Arc<TrustBundle>) -> (u16, String) {
        let response = trust_bundle
            .router()
            .oneshot(
                axum::http::Request::get("/bundle")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    fn generated(dir: &std::path::Path) -> (warden_core::bundle::CaBundle, PathBuf) {
        let paths = CredentialPaths::new(dir, "ca.crt", "issuer.crt", "issuer.key");
        let options = GenerateOptions {
            trust_domain: TrustDomain::new("localhost").unwrap(),
            namespace: "default".into(),
            clock_skew: Duration::from_secs(60),
        };
        let (bundle, _) = store::load_or_generate(
            &paths,
            &options,
            now(),
            &mut rand_core::UnwrapErr(getrandom::SysRng),
        )
        .unwrap();
        (bundle, paths.trust_anchors)
    }

    #[test]
    fn shutdown_grace_is_sentrys_unless_the_tests_override_it_within_bounds() {
        use std::ffi::OsStr;
        assert_eq!(parse_shutdown_grace(None).unwrap(), Duration::from_secs(15));
        assert_eq!(
            parse_shutdown_grace(Some(OsStr::new("250"))).unwrap(),
            Duration::from_millis(250)
        );
        // u64::MAX ms would overflow the deadline (a panic at shutdown).
        for bad in ["", "-1", "1s", "18446744073709551615", "3600001"] {
            assert!(
                parse_shutdown_grace(Some(OsStr::new(bad))).is_err(),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn bundle_is_503_until_built_and_when_the_anchors_cannot_be_published() {
        let dir = tempfile::tempdir().unwrap();
        let (bundle, ca) = generated(dir.path());
        let trust_bundle = Arc::new(TrustBundle::new(ca.clone()));
        // Before the first build (the old code answered 200 with an empty body).
        assert_eq!(
            get_bundle(&trust_bundle).await,
            (503, "trust bundle not available\n".to_owned())
        );
        trust_bundle.update(&bundle);
        let (status, body) = get_bundle(&trust_bundle).await;
        assert_eq!(status, 200);
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["keys"].as_array().unwrap().len(), 1);
        // ca.crt gone (or its mtime unusable): no stale or empty document.
        std::fs::remove_file(&ca).unwrap();
        trust_bundle.update(&bundle);
        assert_eq!(get_bundle(&trust_bundle).await.0, 503);
    }
}

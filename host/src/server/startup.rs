//! The start-up steps of [`super::run`], in Sentry's order: read the settings, register the
//! readiness targets, start the validators, load or generate the credentials, open the audit
//! log, build the CA's state, and start the healthz and metrics servers.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use warden_core::bundle::CaBundle;
use warden_core::spiffe::{SpiffeId, TrustDomain};
use warden_hsm::HsmConfig;

use super::listeners::bind;
use super::shutdown::{ServerTask, ShutdownSignal};
use super::trust_bundle::TrustBundle;
use super::web::WebOptions;
use super::{ServeArgs, ServeError};
use crate::ca::audit::{AuditError, AuditLog, AuditOptions};
use crate::ca::service::{CaState, IssuancePolicy};
use crate::config::{ConfigError, SentryConfig};
use crate::credentials::reload;
use crate::credentials::serving_cert::ServingCert;
use crate::credentials::store::{self, CredentialPaths, GenerateOptions, Origin};
use crate::observability::{
    self, Health, HealthTarget, Metrics, SCOPE_CA, SCOPE_SENTRY, SCOPE_SERVER,
};
use crate::tokens::Validators;
use crate::tokens::jwt::{JwtIssuer, JwtSettings, OidcSettings};
use crate::util::clock::now;

/// Lifetime of an issuer the HSM root makes at start-up when the issuer files are missing: the
/// default of `warden issuer rotate` (capped at the root's NotAfter).
const HSM_ISSUER_LIFETIME: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// Only standalone mode runs; kubernetes mode is refused with an explanation.
pub(super) fn check_mode(mode: &str) -> Result<(), ServeError> {
    match mode {
        "standalone" => Ok(()),
        "kubernetes" => Err(ServeError::KubernetesMode),
        other => Err(ServeError::Mode(other.to_owned())),
    }
}

/// What the flags and the config file say, all checked before anything starts.
pub(super) struct Settings {
    pub(super) config: SentryConfig,
    pub(super) trust_domain: TrustDomain,
    /// This server's own SPIFFE ID (the audience of jwks tokens, the serving SVID's subject).
    pub(super) server_id: SpiffeId,
    pub(super) web: WebOptions,
    pub(super) jwt: Option<JwtSettings>,
    pub(super) oidc: Option<OidcSettings>,
    pub(super) policy: IssuancePolicy,
}

impl Settings {
    /// Reads the config file and checks the flags; nothing is started or written yet.
    pub(super) fn read(args: &ServeArgs) -> Result<Self, ServeError> {
        let config = match &args.config {
            Some(path) => SentryConfig::load(path)?,
            None => SentryConfig::default(),
        };
        let trust_domain =
            TrustDomain::new(&args.trust_domain).map_err(|source| ServeError::TrustDomain {
                value: args.trust_domain.clone(),
                source,
            })?;
        let server_id = SpiffeId::sentry(&trust_domain, &args.namespace).map_err(|source| {
            ServeError::Namespace {
                value: args.namespace.clone(),
                source,
            }
        })?;
        let web = WebOptions::new(args.grpc_web, &args.allowed_origins, args.ui.as_deref())?;
        let jwt = args.jwt.settings(&args.issuer_credentials)?;
        let oidc = args.jwt.oidc_settings()?;
        let policy = IssuancePolicy {
            ttl: config.workload_cert_ttl,
            clock_skew: config.allowed_clock_skew,
        };
        Ok(Self {
            config,
            trust_domain,
            server_id,
            web,
            jwt,
            oidc,
            policy,
        })
    }
}

/// The counters and the readiness targets of the servers this process runs.
pub(super) struct Probes {
    pub(super) metrics: Metrics,
    pub(super) health: Health,
    pub(super) healthz: HealthTarget,
    pub(super) sentry: HealthTarget,
    pub(super) metrics_exporter: Option<HealthTarget>,
}

impl Probes {
    /// A fresh metrics registry, and the servers' readiness targets, none ready yet.
    pub(super) fn register(enable_metrics: bool) -> Self {
        let metrics = Metrics::new();
        let health = Health::default();
        let healthz = health.register("healthz-server");
        let sentry = health.register("sentry-server");
        let metrics_exporter = enable_metrics.then(|| health.register("metrics-exporter"));
        Self {
            metrics,
            health,
            healthz,
            sentry,
            metrics_exporter,
        }
    }
}

/// The token validators of the config file. A configured jwks validator registers its own
/// health target, ready after its first load.
pub(super) fn start_validators(
    args: &ServeArgs,
    settings: &Settings,
    health: &Health,
) -> Result<Validators, ConfigError> {
    crate::config::start_validators(
        &settings.config,
        args.config.as_deref().unwrap_or(Path::new("")),
        health,
        &settings.server_id.to_string(),
    )
}

/// The CA's credentials as loaded (or made) at start-up.
pub(super) struct Credentials {
    pub(super) paths: CredentialPaths,
    /// The HSM-held root, when configured: it makes missing issuers and rotates the issuer.
    pub(super) hsm: Option<HsmConfig>,
    pub(super) bundle: Arc<CaBundle>,
}

/// Loads the trust anchors, issuer certificate and key; generates a self-signed root and issuer
/// when they are missing, or has the HSM root make a new issuer.
pub(super) fn load_credentials(
    args: &ServeArgs,
    settings: &Settings,
    metrics: &Metrics,
) -> Result<Credentials, ServeError> {
    tracing::info!(target: SCOPE_SENTRY, "Using local file system for trust bundle storage");
    let paths = CredentialPaths::new(
        &args.issuer_credentials,
        &args.issuer_ca_filename,
        &args.issuer_certificate_filename,
        &args.issuer_key_filename,
    );
    let generate = GenerateOptions {
        trust_domain: settings.trust_domain.clone(),
        namespace: args.namespace.clone(),
        clock_skew: settings.policy.clock_skew,
    };
    // Read before the credentials: with an HSM root a missing issuer is made by the HSM, and a
    // missing ca.crt is never replaced by a software root.
    let hsm = args.hsm.config()?;
    let mut issue_from_hsm = hsm
        .as_ref()
        .map(|config| issuer_from_hsm(config, &settings.server_id, settings.policy.clock_skew));
    let (bundle, origin) = store::load_or_start(
        &paths,
        &generate,
        issue_from_hsm
            .as_mut()
            .map(|f| f as &mut dyn FnMut(&CredentialPaths) -> Result<(), String>),
        now(),
        &mut crate::util::clock::rng(),
    )?;
    drop(issue_from_hsm);
    report_origin(origin, metrics);
    // Sentry does not look; a key other users can read, or a directory they can write to,
    // gives the CA away, so say so (a warning: the operator may have reasons).
    for problem in crate::util::files::loose_permissions(&paths.dir, &[&paths.issuer_key]) {
        tracing::warn!(target: SCOPE_CA, "{problem}");
    }
    tracing::info!(target: SCOPE_CA, "CA certificate key pair ready");
    let bundle = Arc::new(bundle);
    reload::report_expiry(&bundle, metrics, now());
    Ok(Credentials { paths, hsm, bundle })
}

/// Makes a new issuer with the HSM root, for when the issuer files are missing.
fn issuer_from_hsm<'a>(
    config: &'a HsmConfig,
    server_id: &SpiffeId,
    clock_skew: Duration,
) -> impl FnMut(&CredentialPaths) -> Result<(), String> + use<'a> {
    let server_id = server_id.clone();
    move |paths: &CredentialPaths| -> Result<(), String> {
        let signer = warden_hsm::Hsm::open_signer(config).map_err(|e| e.to_string())?;
        let issuer = crate::rotation::issuer::replace_issuer(
            paths,
            &signer,
            Some(&server_id),
            HSM_ISSUER_LIFETIME,
            clock_skew,
            now(),
        )
        .map_err(|e| e.to_string())?;
        tracing::info!(target: SCOPE_CA,
            "Issuer certs not found: made a new issuer with the HSM root (key {:?} in token {:?}), valid until unix {}; {} kept as it is",
            config.key_label, config.token_label, issuer.validity.not_after.as_secs(),
            paths.trust_anchors.display());
        Ok(())
    }
}

/// Sentry's log line for where the credentials came from.
fn report_origin(origin: Origin, metrics: &Metrics) {
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
}

/// The server's own SVID, issued by the CA it serves.
pub(super) fn serving_cert(
    credentials: &Credentials,
    settings: &Settings,
) -> Result<Arc<ServingCert>, ServeError> {
    let serving = ServingCert::new(
        &credentials.bundle,
        &settings.server_id,
        settings.policy,
        now(),
    )?;
    Ok(Arc::new(serving))
}

/// `--jwt-enabled`: the JWT-SVID issuer with its signing key (made on first start).
pub(super) fn load_jwt_issuer(
    settings: Option<JwtSettings>,
) -> Result<Option<Arc<JwtIssuer>>, ServeError> {
    Ok(settings
        .map(|s| JwtIssuer::load_or_generate(s, now().as_secs()))
        .transpose()?
        .map(Arc::new))
}

/// `--audit-log`: the HMAC-chained audit log, verified before it is extended.
pub(super) fn open_audit_log(
    args: &ServeArgs,
    probes: &Probes,
) -> Result<Option<AuditLog>, AuditError> {
    args.audit_log
        .as_deref()
        .map(|path| {
            AuditLog::open(
                path,
                AuditOptions {
                    key: args
                        .audit_key
                        .clone()
                        .unwrap_or_else(|| args.issuer_credentials.join("audit.key")),
                    max_bytes: args.audit_log_max_bytes,
                    health: Some(probes.health.register("audit-log")),
                    metrics: Some(probes.metrics.clone()),
                },
            )
        })
        .transpose()
}

/// Everything a SignCertificate request needs, shared by all connections; logs the validators.
pub(super) fn ca_state(
    args: &ServeArgs,
    settings: &Settings,
    credentials: &Credentials,
    probes: &Probes,
    validators: Validators,
    jwt: Option<Arc<JwtIssuer>>,
    audit: Option<AuditLog>,
) -> Arc<CaState> {
    let state = Arc::new(CaState {
        bundle: ArcSwap::new(Arc::clone(&credentials.bundle)),
        policy: settings.policy,
        validators,
        namespace: args.namespace.clone(),
        trust_domain: settings.trust_domain.clone(),
        metrics: probes.metrics.clone(),
        audit,
        jwt,
    });
    for name in state.validators.names() {
        tracing::info!(target: SCOPE_SERVER, "Adding validator '{name}' with Sentry ID: {}", settings.server_id);
    }
    state
}

/// `GET /healthz`, and the trust bundle at `GET /bundle`, on the healthz port.
pub(super) async fn serve_healthz(
    args: &ServeArgs,
    probes: &Probes,
    credentials: &Credentials,
    signal: &ShutdownSignal,
) -> Result<(ServerTask, Arc<TrustBundle>), ServeError> {
    let listener = bind(&args.healthz_listen_address, args.healthz_port, "healthz").await?;
    let trust_bundle = Arc::new(TrustBundle::new(credentials.paths.trust_anchors.clone()));
    trust_bundle.update(&credentials.bundle);
    let task = tokio::spawn(observability::serve_healthz(
        listener,
        probes.health.clone(),
        trust_bundle.router(),
        signal.wait(),
    ));
    tracing::info!(target: SCOPE_SENTRY, "Healthz server is listening on {}:{}", args.healthz_listen_address, args.healthz_port);
    probes.healthz.ready();
    Ok((task, trust_bundle))
}

/// `--oidc-enabled`: the OIDC discovery server, and the watcher that reloads the JWT signing
/// key.
pub(super) async fn serve_oidc(
    state: &CaState,
    oidc: Option<OidcSettings>,
    probes: &Probes,
    signal: &ShutdownSignal,
) -> Result<(Option<ServerTask>, Option<notify::RecommendedWatcher>), crate::tokens::jwt::StartError>
{
    crate::tokens::jwt::start(state.jwt.as_ref(), oidc, &probes.health, signal.wait()).await
}

/// `--enable-metrics`: the Prometheus endpoint.
pub(super) async fn serve_metrics(
    args: &ServeArgs,
    probes: &Probes,
    signal: &ShutdownSignal,
) -> Result<Option<ServerTask>, ServeError> {
    let Some(target) = &probes.metrics_exporter else {
        return Ok(None);
    };
    let listener = bind(&args.metrics_listen_address, args.metrics_port, "metrics").await?;
    target.ready();
    tracing::info!(target: SCOPE_SENTRY, "metrics server started on {}:{}/", args.metrics_listen_address, args.metrics_port);
    Ok(Some(tokio::spawn(observability::serve_metrics(
        listener,
        probes.metrics.clone(),
        signal.wait(),
    ))))
}

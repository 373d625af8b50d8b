//! What runs beside the gRPC server: the credential reload watcher, the HSM issuer's automatic
//! rotation, the serving certificate's renewal, the hourly expiry report and the audit log's
//! recheck.

use std::sync::Arc;
use std::time::Duration;

use warden_core::bundle::CaBundle;
use warden_core::spiffe::SpiffeId;

use super::ServeError;
use super::startup::Credentials;
use super::trust_bundle::TrustBundle;
use crate::ca::service::CaState;
use crate::credentials::reload;
use crate::credentials::serving_cert::ServingCert;
use crate::observability::SCOPE_SERVER;
use crate::util::clock::now;

/// Starts every background task; the returned watcher must live as long as the server.
pub(super) fn spawn(
    state: &Arc<CaState>,
    serving: &Arc<ServingCert>,
    server_id: &SpiffeId,
    trust_bundle: &Arc<TrustBundle>,
    credentials: Credentials,
) -> Result<notify::RecommendedWatcher, ServeError> {
    let Credentials { paths, hsm, .. } = credentials;
    let on_new_bundle = on_new_bundle(state, serving, server_id, trust_bundle);
    let watcher = reload::watch(
        paths.clone(),
        crate::util::watch::RELOAD_DEBOUNCE,
        state.metrics.clone(),
        on_new_bundle.clone(),
    )
    .map_err(ServeError::Watch)?;
    if let Some(hsm) = hsm {
        let state = Arc::clone(state);
        let policy = state.policy;
        tokio::spawn(crate::rotation::issuer::auto_rotate(
            hsm,
            paths,
            move || state.bundle.load_full(),
            on_new_bundle,
            policy.ttl,
            policy.clock_skew,
        ));
    }
    tokio::spawn(renew_serving_cert(
        Arc::clone(state),
        Arc::clone(serving),
        server_id.clone(),
    ));
    tokio::spawn(hourly_expiry_report(Arc::clone(state)));
    if state.audit.is_some() {
        tokio::spawn(recheck_audit_log(Arc::clone(state)));
    }
    Ok(watcher)
}

/// Reload and renewal share one path: a new bundle also means a new serving certificate, so
/// clients that only trust a new root can still reach the server.
fn on_new_bundle(
    state: &Arc<CaState>,
    serving: &Arc<ServingCert>,
    server_id: &SpiffeId,
    trust_bundle: &Arc<TrustBundle>,
) -> impl Fn(Arc<CaBundle>) + Clone + Send + 'static {
    let state = Arc::clone(state);
    let serving = Arc::clone(serving);
    let server_id = server_id.clone();
    let trust_bundle = Arc::clone(trust_bundle);
    move |bundle: Arc<CaBundle>| {
        state.bundle.store(Arc::clone(&bundle));
        trust_bundle.update(&bundle);
        if let Err(e) = serving.renew(&bundle, &server_id, state.policy, now()) {
            state.metrics.server_cert_issue_failed("ca_error");
            tracing::error!(target: SCOPE_SERVER, "Failed to renew the server certificate after reload: {e}");
        }
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

//! Readiness for Kubernetes probes (`GET /healthz`), modelled on Dapr kit's healthz: a set of named targets,
//! ready only when every one of them is.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

/// The process's readiness: a set of named targets (e.g. `sentry-server`, `metrics-exporter`). Clones share the
/// same set, so the healthz server and every component can hold one.
#[derive(Clone, Debug, Default)]
pub(crate) struct Health {
    targets: Arc<Mutex<BTreeMap<&'static str, Arc<AtomicBool>>>>,
}

/// One component's readiness switch, handed out by [`Health::register`].
#[derive(Clone, Debug)]
pub(crate) struct HealthTarget {
    ready: Arc<AtomicBool>,
}

impl Health {
    /// Adds the target `name`, not ready, and returns its switch.
    ///
    /// Registering a name again returns a switch for the same target and resets it to not ready: a component
    /// registers when it (re)starts, and must not inherit readiness from its previous incarnation.
    pub(crate) fn register(&self, name: &'static str) -> HealthTarget {
        let mut targets = self.targets.lock().unwrap_or_else(PoisonError::into_inner);
        let ready = Arc::clone(targets.entry(name).or_default());
        ready.store(false, Ordering::SeqCst);
        HealthTarget { ready }
    }

    #[cfg(test)]
    /// True iff at least one target is registered and all are ready; a process that has registered nothing
    /// yet has not started anything, so it must not receive traffic.
    pub(crate) fn is_ready(&self) -> bool {
        self.not_ready().is_ok()
    }

    /// `Ok` when ready, otherwise the names of the targets that are not (empty when none are registered).
    fn not_ready(&self) -> Result<(), Vec<&'static str>> {
        let targets = self.targets.lock().unwrap_or_else(PoisonError::into_inner);
        let pending: Vec<&'static str> = targets
            .iter()
            .filter(|(_, ready)| !ready.load(Ordering::SeqCst))
            .map(|(name, _)| *name)
            .collect();
        if targets.is_empty() || !pending.is_empty() {
            Err(pending)
        } else {
            Ok(())
        }
    }
}

impl HealthTarget {
    /// Marks the component ready (listening, credentials loaded).
    pub(crate) fn ready(&self) {
        self.ready.store(true, Ordering::SeqCst);
    }

    /// Marks the component not ready, e.g. while it reloads, so probes take the pod out of rotation.
    pub(crate) fn not_ready(&self) {
        self.ready.store(false, Ordering::SeqCst);
    }
}

/// Serves `GET /healthz` until `shutdown` completes, then finishes in-flight requests and returns.
///
/// Answers 200 `ok` when [`Health::is_ready`], otherwise 503 naming the targets that are not ready, so a failing
/// probe says which component is stuck. Requests `/healthz` does not match go to `extra`, letting other features
/// share the port (e.g. `GET /bundle`); routes in `extra` for `/healthz` itself are shadowed. Non-GET on
/// `/healthz` gets 405.
pub(crate) async fn serve_healthz(
    listener: tokio::net::TcpListener,
    health: Health,
    extra: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // `fallback_service` rather than `merge`: merge panics on overlapping routes.
    let app = Router::new()
        .route("/healthz", get(healthz))
        .with_state(health)
        .fallback_service(extra);
    super::serve_http(listener, app, shutdown).await
}

async fn healthz(State(health): State<Health>) -> (StatusCode, String) {
    match health.not_ready() {
        Ok(()) => (StatusCode::OK, "ok\n".to_owned()),
        Err(pending) if pending.is_empty() => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no health targets registered\n".to_owned(),
        ),
        Err(pending) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", pending.join(", ")),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_http::{request, spawn_until};
    use super::*;

    #[test]
    fn ready_iff_some_targets_and_all_ready() {
        let health = Health::default();
        assert!(!health.is_ready(), "no targets means not ready");
        let server = health.register("sentry-server");
        let metrics = health.clone().register("metrics-exporter");
        assert!(!health.is_ready());
        server.ready();
        assert!(!health.is_ready());
        metrics.ready();
        assert!(health.is_ready());
        metrics.clone().not_ready();
        assert!(!health.is_ready());
        metrics.ready();
        // Re-registering resets the shared target.
        let again = health.register("sentry-server");
        assert!(!health.is_ready());
        again.ready();
        assert!(health.is_ready());
        server.not_ready();
        assert!(!health.is_ready());
    }

    #[tokio::test]
    async fn healthz_goes_from_503_to_200_and_serves_extra_routes() {
        let health = Health::default();
        let server = health.register("sentry-server");
        let exporter = health.register("metrics-exporter");
        let extra = Router::new().route("/bundle", get(|| async { "bundle" }));
        let (addr, stop, task) = spawn_until(|listener, shutdown| {
            serve_healthz(listener, health.clone(), extra, shutdown)
        })
        .await;

        let response = request(addr, "GET", "/healthz").await;
        assert_eq!(response.status, 503);
        assert_eq!(
            response.body,
            "not ready: metrics-exporter, sentry-server\n"
        );

        server.ready();
        let response = request(addr, "GET", "/healthz").await;
        assert_eq!(response.status, 503);
        assert_eq!(response.body, "not ready: metrics-exporter\n");

        exporter.ready();
        let response = request(addr, "GET", "/healthz").await;
        assert_eq!(response.status, 200);
        assert_eq!(response.body, "ok\n");

        exporter.not_ready();
        assert_eq!(request(addr, "GET", "/healthz").await.status, 503);

        let response = request(addr, "GET", "/bundle").await;
        assert_eq!((response.status, response.body.as_str()), (200, "bundle"));
        assert_eq!(request(addr, "GET", "/nope").await.status, 404);
        assert_eq!(request(addr, "POST", "/healthz").await.status, 405);

        stop.send(()).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }

    #[tokio::test]
    async fn healthz_with_no_targets_is_503() {
        let (addr, stop, task) = spawn_until(|listener, shutdown| {
            serve_healthz(listener, Health::default(), Router::new(), shutdown)
        })
        .await;
        let response = request(addr, "GET", "/healthz").await;
        assert_eq!(response.status, 503);
        assert_eq!(response.body, "not ready: no health targets registered\n");
        stop.send(()).unwrap();
        task.await.unwrap().unwrap();
    }
}

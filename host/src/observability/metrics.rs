//! Sentry's Prometheus metrics, under the exact names Dapr's OpenCensus exporter produces, so existing
//! dashboards and alerts keep working, and the HTTP endpoint that serves them.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Content type of [`Metrics::encode`]'s output.
///
/// prometheus-client writes OpenMetrics text (counter `# TYPE` lines without `_total`, a final `# EOF`), which
/// Prometheus only reads correctly when told it is OpenMetrics; the classic `text/plain; version=0.0.4` would
/// make it treat the counters as untyped.
pub(crate) const METRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The `reason` label of the failure counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

/// A gauge family used with the empty label set only, so the gauge is absent until first set: an expiry of
/// 0 (1970) before the CA has loaded would fire every "certificate expires soon" alert.
type LastValue = Family<Vec<(String, String)>, Gauge>;

/// Sentry's metrics registry. Clones share the same counters, so every component can hold its own handle.
#[derive(Clone)]
pub(crate) struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    sign_request_received: Counter,
    sign_success: Counter,
    sign_failure: Family<ReasonLabel, Counter>,
    server_cert_issue_failed: Family<ReasonLabel, Counter>,
    issuer_cert_changed: Counter,
    issuer_cert_expiry: LastValue,
    root_cert_expiry: LastValue,
    audit_write_failures: Counter,
    audit_log_writable: LastValue,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field(
                "sign_request_received",
                &self.inner.sign_request_received.get(),
            )
            .field("sign_success", &self.inner.sign_success.get())
            .field("issuer_cert_changed", &self.inner.issuer_cert_changed.get())
            .finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates the registry with every Sentry metric registered (counters start at 0, expiry gauges absent).
    pub(crate) fn new() -> Self {
        let mut registry = Registry::default();
        let sign_request_received = Counter::default();
        registry.register(
            "dapr_sentry_cert_sign_request_received",
            "The number of CSRs received",
            sign_request_received.clone(),
        );
        let sign_success = Counter::default();
        registry.register(
            "dapr_sentry_cert_sign_success",
            "The number of certificates issuances that have succeeded",
            sign_success.clone(),
        );
        let sign_failure = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "dapr_sentry_cert_sign_failure",
            "The number of errors occurred when signing the CSR",
            sign_failure.clone(),
        );
        let server_cert_issue_failed = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "dapr_sentry_servercert_issue_failed",
            "The number of server TLS certificate issuance failures",
            server_cert_issue_failed.clone(),
        );
        let issuer_cert_changed = Counter::default();
        registry.register(
            "dapr_sentry_issuercert_changed",
            "The number of issuer cert updates, when issuer cert or key is changed",
            issuer_cert_changed.clone(),
        );
        let issuer_cert_expiry = LastValue::default();
        registry.register(
            "dapr_sentry_issuercert_expiry_timestamp",
            "The unix timestamp, in seconds, when issuer/root cert will expire",
            issuer_cert_expiry.clone(),
        );
        let root_cert_expiry = LastValue::default();
        registry.register(
            "dapr_sentry_rootcert_expiry_timestamp",
            "The unix timestamp, in seconds, when the earliest trust anchor (root cert) will expire (Warden extension)",
            root_cert_expiry.clone(),
        );
        let audit_write_failures = Counter::default();
        registry.register(
            "warden_audit_log_write_failures",
            "The number of audit log lines that could not be written (each refused its request) (Warden extension)",
            audit_write_failures.clone(),
        );
        let audit_log_writable = LastValue::default();
        registry.register(
            "warden_audit_log_writable",
            "1 while the audit log can be written, 0 while requests are refused because it cannot; absent without --audit-log (Warden extension)",
            audit_log_writable.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                registry,
                sign_request_received,
                sign_success,
                sign_failure,
                server_cert_issue_failed,
                issuer_cert_changed,
                issuer_cert_expiry,
                root_cert_expiry,
                audit_write_failures,
                audit_log_writable,
            }),
        }
    }

    /// Counts a SignCertificate call before any validation, so failures can be read as a ratio of requests.
    pub(crate) fn sign_request_received(&self) {
        self.inner.sign_request_received.inc();
    }

    /// Counts a certificate returned to a client.
    pub(crate) fn sign_success(&self) {
        self.inner.sign_success.inc();
    }

    /// Counts a failed signing; Sentry ≥1.12 always passes `sign`. Pass only fixed strings, never request data,
    /// since every distinct reason becomes a time series.
    pub(crate) fn sign_failure(&self, reason: &str) {
        self.inner
            .sign_failure
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Counts a failure to issue Warden's own serving certificate (`invalid_csr`, `ca_error`); fixed strings only.
    pub(crate) fn server_cert_issue_failed(&self, reason: &str) {
        self.inner
            .server_cert_issue_failed
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Counts a (re)generation of the trust bundle or a change seen on the credential files.
    pub(crate) fn issuer_cert_changed(&self) {
        self.inner.issuer_cert_changed.inc();
    }

    /// Records the issuer certificate's NotAfter (unix seconds), on startup and every reload, for expiry alerts.
    pub(crate) fn set_issuer_cert_expiry(&self, not_after_unix_secs: i64) {
        self.inner
            .issuer_cert_expiry
            .get_or_create(&Vec::new())
            .set(not_after_unix_secs);
    }

    /// Records the earliest trust anchor NotAfter (unix seconds). Sentry has no such metric, but a root expiring
    /// is the outage operators most often miss (dapr#8407), so Warden exports it.
    pub(crate) fn set_root_cert_expiry(&self, not_after_unix_secs: i64) {
        self.inner
            .root_cert_expiry
            .get_or_create(&Vec::new())
            .set(not_after_unix_secs);
    }

    /// Counts an audit line that could not be written.
    pub(crate) fn audit_write_failed(&self) {
        self.inner.audit_write_failures.inc();
    }

    /// Whether the audit log can be written (an alert on 0 finds a full disk before clients do).
    pub(crate) fn set_audit_log_writable(&self, writable: bool) {
        self.inner
            .audit_log_writable
            .get_or_create(&Vec::new())
            .set(i64::from(writable));
    }

    /// Renders every metric in OpenMetrics text format (see [`METRICS_CONTENT_TYPE`]).
    pub(crate) fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail, and prometheus-client has no other error path.
        if prometheus_client::encoding::text::encode(&mut out, &self.inner.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Serves [`Metrics`] for Prometheus on `GET /` (Sentry's path) and `GET /metrics` (the conventional one) until
/// `shutdown` completes, then finishes in-flight requests and returns.
///
/// Other paths get 404 and other methods 405. The body is OpenMetrics text with content type
/// [`METRICS_CONTENT_TYPE`].
pub(crate) async fn serve_metrics(
    listener: tokio::net::TcpListener,
    metrics: Metrics,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/", get(scrape))
        .route("/metrics", get(scrape))
        .with_state(metrics);
    super::serve_http(listener, app, shutdown).await
}

async fn scrape(State(metrics): State<Metrics>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
        metrics.encode(),
    )
}

#[cfg(test)]
mod tests {
    use super::super::test_http::{request, spawn_until};
    use super::*;

    #[test]
    fn encodes_exact_sentry_names_and_values() {
        let metrics = Metrics::new();
        let text = metrics.encode();
        // Counters exist from the start; expiry gauges only once known.
        assert!(
            text.contains("dapr_sentry_cert_sign_request_received_total 0\n"),
            "{text}"
        );
        assert!(
            !text.contains("dapr_sentry_issuercert_expiry_timestamp "),
            "{text}"
        );
        assert!(
            !text.contains("dapr_sentry_rootcert_expiry_timestamp "),
            "{text}"
        );

        let clone = metrics.clone();
        clone.sign_request_received();
        clone.sign_request_received();
        metrics.sign_request_received();
        metrics.sign_success();
        metrics.sign_success();
        metrics.sign_failure("sign");
        metrics.server_cert_issue_failed("invalid_csr");
        metrics.server_cert_issue_failed("ca_error");
        metrics.server_cert_issue_failed("ca_error");
        metrics.issuer_cert_changed();
        metrics.set_issuer_cert_expiry(1_700_000_000);
        metrics.set_issuer_cert_expiry(1_800_000_000);
        metrics.set_root_cert_expiry(2_000_000_000);
        assert!(!metrics.encode().contains("warden_audit_log_writable "));
        metrics.audit_write_failed();
        metrics.set_audit_log_writable(true);
        metrics.set_audit_log_writable(false);

        let text = metrics.encode();
        for line in [
            "# HELP dapr_sentry_cert_sign_request_received The number of CSRs received.",
            "# TYPE dapr_sentry_cert_sign_request_received counter",
            "dapr_sentry_cert_sign_request_received_total 3",
            "dapr_sentry_cert_sign_success_total 2",
            "dapr_sentry_cert_sign_failure_total{reason=\"sign\"} 1",
            "dapr_sentry_servercert_issue_failed_total{reason=\"invalid_csr\"} 1",
            "dapr_sentry_servercert_issue_failed_total{reason=\"ca_error\"} 2",
            "dapr_sentry_issuercert_changed_total 1",
            "# TYPE dapr_sentry_issuercert_expiry_timestamp gauge",
            "dapr_sentry_issuercert_expiry_timestamp 1800000000",
            "dapr_sentry_rootcert_expiry_timestamp 2000000000",
            "warden_audit_log_write_failures_total 1",
            "warden_audit_log_writable 0",
            "# EOF",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        for help in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let name = help.split(' ').nth(2).unwrap();
            assert!(
                text.contains(&format!("# HELP {name} ")),
                "no HELP for {name}"
            );
        }
    }

    #[tokio::test]
    async fn serves_metrics_on_root_and_metrics_paths() {
        let metrics = Metrics::new();
        metrics.sign_success();
        let (addr, stop, task) =
            spawn_until(|listener, shutdown| serve_metrics(listener, metrics.clone(), shutdown))
                .await;

        for path in ["/", "/metrics"] {
            let response = request(addr, "GET", path).await;
            assert_eq!(response.status, 200, "{path}");
            assert_eq!(
                response.header("content-type").as_deref(),
                Some(METRICS_CONTENT_TYPE)
            );
            assert!(
                response
                    .body
                    .contains("dapr_sentry_cert_sign_success_total 1\n"),
                "{}",
                response.body
            );
        }
        assert_eq!(request(addr, "GET", "/healthz").await.status, 404);
        assert_eq!(request(addr, "POST", "/").await.status, 405);
        assert_eq!(request(addr, "DELETE", "/metrics").await.status, 405);

        stop.send(()).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }
}

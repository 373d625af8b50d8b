//! The trust-bundle endpoint: `GET /bundle` on the healthz port, the SPIFFE bundle of the
//! anchors in use (see [`super::spiffe_bundle`]).

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::spiffe_bundle;
use crate::observability::SCOPE_SENTRY;

/// The SPIFFE bundle served at `GET /bundle`, rebuilt whenever the anchors change.
///
/// Either the complete document for the anchors in use, or 503: before the first build, and
/// whenever the anchors in use cannot be written as a bundle (a key with no JWK form, a
/// `ca.crt` whose modification time gives no `spiffe_sequence`). Never an empty or partial
/// 200, and never a stale document for anchors the CA no longer uses.
#[derive(Debug)]
pub(super) struct TrustBundle {
    trust_anchors_file: PathBuf,
    json: ArcSwap<Option<String>>,
}

impl TrustBundle {
    pub(super) fn new(trust_anchors_file: PathBuf) -> Self {
        Self {
            trust_anchors_file,
            json: ArcSwap::from_pointee(None),
        }
    }

    /// Recomputes the bundle; on failure `/bundle` answers 503 until the next success.
    pub(super) fn update(&self, bundle: &warden_core::bundle::CaBundle) {
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

    pub(super) fn router(self: &Arc<Self>) -> axum::Router {
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
    use std::time::Duration;

    use tower::ServiceExt as _;
    use warden_core::spiffe::TrustDomain;

    use super::*;
    use crate::credentials::store::{self, CredentialPaths, GenerateOptions};
    use crate::util::clock::now;

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
        let paths = CredentialPaths::in_dir(dir);
        let options = GenerateOptions {
            trust_domain: TrustDomain::new("localhost").unwrap(),
            namespace: "default".into(),
            clock_skew: Duration::from_secs(60),
        };
        let (bundle, _) =
            store::load_or_generate(&paths, &options, now(), &mut crate::util::clock::rng())
                .unwrap();
        (bundle, paths.trust_anchors)
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

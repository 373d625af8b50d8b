//! JWT-SVIDs and OIDC discovery (Sentry 1.16+, spec §1 fields 4–5 and §4 "JWT/OIDC"):
//! Sentry's `--jwt-*` and `--oidc-*` flags, the signing key (`jwt.key`, PKCS#8, generated
//! on first start) and its public key set (`jwks.json`), token minting for
//! `SignCertificateResponse.jwt` / `per_audience_jwts`, and the OIDC discovery server.
//!
//! Signing goes through aws-lc-rs, the backend `jsonwebtoken` uses in [`crate::tokens::jwks`].
//! A key change (a new `jwt.key` on disk) keeps the previous public keys in `jwks.json` and
//! in the served JWKS for `--jwt-ttl` after the change was seen, so every token signed with
//! the old key still verifies until it has expired.
//!
//! The layers: [`settings`] turns the flags into validated settings, [`issuer`] owns the keys,
//! `jwks.json`, minting and reload, [`oidc`] is the OIDC discovery server with its host
//! checks; [`start`] here wires the reload watcher and the server together.

mod issuer;
mod oidc;
mod settings;

use std::sync::Arc;

use crate::observability::SCOPE_SENTRY;
use crate::util::watch::{RELOAD_DEBOUNCE, Wake, watch_file};

use issuer::prune_retired_keys;
pub(crate) use issuer::{
    JwtIssuer, ResponseTokens, check_audiences, mint_for_response_off_workers,
};
pub use issuer::{MAX_JWT_AUDIENCE_LEN, MAX_JWT_AUDIENCES};
pub(crate) use oidc::OidcSettings;
use oidc::{oidc_router, serve_oidc};
#[cfg(test)]
pub(crate) use settings::SigningAlgorithm;
pub(crate) use settings::{JwtArgs, JwtError, JwtSettings};

/// Why [`start`] could not start the `jwt.key` watcher or the OIDC server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum StartError {
    /// The `jwt.key` watcher could not be set up.
    #[error("cannot watch the JWT key: {0}")]
    Watch(#[source] notify::Error),
    /// The OIDC server could not listen on its address.
    #[error("cannot listen for OIDC on {address}: {source}")]
    Listen {
        /// `host:port`.
        address: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Starts what JWTs need besides minting: the `jwt.key` watcher (hot reload, 2 s batching
/// like the issuer's) and, when configured, the OIDC server on its own listener with health
/// target `oidc-server`. Keep the returned watcher alive.
///
/// # Errors
///
/// [`StartError`] when the watcher cannot be set up or the OIDC listener cannot bind.
pub(crate) async fn start(
    issuer: Option<&Arc<JwtIssuer>>,
    oidc: Option<OidcSettings>,
    health: &crate::observability::Health,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<
    (
        Option<tokio::task::JoinHandle<std::io::Result<()>>>,
        Option<notify::RecommendedWatcher>,
    ),
    StartError,
> {
    let Some(issuer) = issuer else {
        return Ok((None, None));
    };
    let watcher = {
        let issuer = Arc::clone(issuer);
        let key_path = issuer.settings.key_path.clone();
        watch_file(
            &key_path,
            Wake::OnWriteOrRemove,
            RELOAD_DEBOUNCE,
            move || {
                if let Err(e) = issuer.reload(crate::util::clock::now().as_secs()) {
                    tracing::error!(
                        target: SCOPE_SENTRY,
                        "Failed to reload the JWT key; still signing with the previous one: {e}"
                    );
                }
                true
            },
        )
    }
    .map_err(StartError::Watch)?;
    tokio::spawn(prune_retired_keys(Arc::clone(issuer)));
    let Some(oidc) = oidc else {
        return Ok((None, Some(watcher)));
    };
    let target = health.register("oidc-server");
    let tls = oidc.tls.clone();
    let host = if oidc.address.is_empty() {
        "0.0.0.0"
    } else {
        oidc.address.as_str()
    };
    let listener = tokio::net::TcpListener::bind((host, oidc.port))
        .await
        .map_err(|source| StartError::Listen {
            address: format!("{host}:{}", oidc.port),
            source,
        })?;
    tracing::info!(target: SCOPE_SENTRY, "OIDC server is listening on {host}:{} ({})", oidc.port, if tls.is_some() { "https" } else { "http" });
    let router = oidc_router(Arc::clone(issuer), oidc);
    let task = tokio::spawn(serve_oidc(listener, tls, router, shutdown));
    target.ready();
    Ok((Some(task), Some(watcher)))
}

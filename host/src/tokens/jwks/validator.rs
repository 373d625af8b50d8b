//! The live validator: owns the current key set, loads it at start-up, refreshes a remote one
//! in the background, reloads a file when it changes, and verifies tokens against it.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;

use super::fetch::{Remote, http_client, read_file_set};
use super::key_set::{KeySet, Shown, TokenError};
use super::options::{JwksOptions, OPT_SOURCE, OptionError, Source};
use crate::observability::{HealthTarget, SCOPE_SERVER};
use crate::util::clock::now;
use crate::util::watch::{Wake, watch_file};

/// Name of the readiness target: `/healthz` is 503 until the first set is loaded.
pub(crate) const HEALTH_TARGET: &str = "sentry-jwks-validator";
/// How often a remote set is refreshed when no unknown `kid` asks for it sooner (jwx's
/// default refresh interval, which Sentry's cache uses); never less than `minRefreshInterval`.
pub(crate) const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(900);
/// How soon a remote source is retried after a failed first load; doubles up to
/// [`INITIAL_RETRY_MAX`] (or `minRefreshInterval` when that is shorter).
const INITIAL_RETRY: Duration = Duration::from_millis(500);
const INITIAL_RETRY_MAX: Duration = Duration::from_secs(30);
/// Events on a watched file within this window cause one reload.
const FILE_DEBOUNCE: Duration = Duration::from_millis(200);

/// The `jwks` validator: the current key set and what keeps it fresh.
pub(crate) struct JwksValidator {
    keys: ArcSwapOption<KeySet>,
    /// Sentry's SPIFFE ID, the audience every token must name.
    audience: String,
    remote: Option<Remote>,
    health: HealthTarget,
    /// Keeps the file watcher of a file source alive.
    watcher: Mutex<Option<notify::RecommendedWatcher>>,
}

impl fmt::Debug for JwksValidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwksValidator")
            .field("audience", &self.audience)
            .field("keys", &self.keys.load().as_deref().map(KeySet::len))
            .field("remote", &self.remote.as_ref().map(|r| r.url.as_str()))
            .finish_non_exhaustive()
    }
}

impl JwksValidator {
    /// Resolves the source and starts the validator: an inline set or a file is loaded now
    /// (and a file is watched); a URL is fetched in the background, retried until it answers,
    /// then refreshed every 15 minutes (or `minRefreshInterval` when longer) and whenever a
    /// token names an unknown `kid` (at most once per `minRefreshInterval`). `health` is marked ready after the first
    /// successful load. Must run inside a Tokio runtime.
    ///
    /// # Errors
    ///
    /// An [`OptionError`] when the source is unusable, an inline or file set does not parse,
    /// or `caCertificate` cannot be read or holds no certificate.
    pub(crate) fn start(
        options: &JwksOptions,
        audience: String,
        health: HealthTarget,
    ) -> Result<Arc<Self>, OptionError> {
        for name in &options.unknown {
            tracing::warn!(target: SCOPE_SERVER, "jwks validator: ignoring unknown option '{name}'");
        }
        let source = Source::resolve(&options.source)?;
        if options.ca_certificate.is_some() && !matches!(source, Source::Https(_)) {
            tracing::warn!(target: SCOPE_SERVER, "jwks validator: caCertificate is only used with an https:// source; ignoring it");
        }
        let mut remote = None;
        let mut initial = None;
        match &source {
            Source::Https(url) | Source::Http(url) => {
                if matches!(source, Source::Http(_)) {
                    tracing::warn!(target: SCOPE_SERVER, "jwks validator: fetching the JWKS over plain HTTP from {url}; anyone on the network path can replace the keys. Use https://");
                }
                remote = Some(Remote {
                    url: url.clone(),
                    client: http_client(options, matches!(source, Source::Https(_)))?,
                    min_refresh_interval: options.min_refresh_interval,
                    last_fetch: tokio::sync::Mutex::new(None),
                });
            }
            Source::File(path) => {
                let set = read_file_set(path).map_err(|e| {
                    OptionError::new(OPT_SOURCE, format!("{}: {e}", path.display()))
                })?;
                initial = Some(set);
            }
            Source::Inline(bytes) => {
                let set = KeySet::parse(bytes)
                    .map_err(|e| OptionError::new(OPT_SOURCE, format!("inline JWKS: {e}")))?;
                initial = Some(set);
            }
        }
        let validator = Arc::new(Self {
            keys: ArcSwapOption::empty(),
            audience,
            remote,
            health,
            watcher: Mutex::new(None),
        });
        if let Some(set) = initial {
            tracing::info!(target: SCOPE_SERVER, "jwks validator: loaded {} key(s) from {source:?}", set.len());
            validator.install(set);
        }
        match source {
            Source::Https(_) | Source::Http(_) => {
                tokio::spawn(Self::refresh_loop(Arc::downgrade(&validator)));
            }
            Source::File(path) => {
                let watcher = {
                    let weak = Arc::downgrade(&validator);
                    let reloaded = path.clone();
                    watch_file(&path, Wake::OnWrite, FILE_DEBOUNCE, move || {
                        weak.upgrade()
                            .map(|validator| validator.reload_file(&reloaded))
                            .is_some()
                    })
                }
                .map_err(|e| {
                    OptionError::new(OPT_SOURCE, format!("cannot watch {}: {e}", path.display()))
                })?;
                *validator
                    .watcher
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(watcher);
            }
            Source::Inline(_) => {}
        }
        Ok(validator)
    }

    /// True once a key set has been loaded.
    pub(crate) fn is_ready(&self) -> bool {
        self.keys.load().is_some()
    }

    fn install(&self, set: KeySet) {
        self.keys.store(Some(Arc::new(set)));
        self.health.ready();
    }

    /// Verifies `token` for the workload `subject` (its SPIFFE ID). An unknown `kid` triggers
    /// one refresh of a remote set (subject to `minRefreshInterval`) and a second try.
    ///
    /// # Errors
    ///
    /// "jwks validator not ready" before the first load, otherwise the reason the token was
    /// refused (without the "token validation failed: " prefix, which the caller adds).
    pub(crate) async fn verify(&self, token: &str, subject: &str) -> Result<(), VerifyError> {
        let Some(keys) = self.keys.load_full() else {
            return Err(VerifyError::NotReady);
        };
        match keys.verify(token, &self.audience, subject, now().as_secs()) {
            Err(TokenError::UnknownKid(kid)) if self.remote.is_some() => {
                if self.refresh(true).await {
                    tracing::info!(target: SCOPE_SERVER, "jwks validator: refreshed the key set for an unknown key ID \"{}\"", Shown(&kid));
                }
                let Some(keys) = self.keys.load_full() else {
                    return Err(VerifyError::NotReady);
                };
                keys.verify(token, &self.audience, subject, now().as_secs())
                    .map_err(|e| VerifyError::Token(e.to_string()))
            }
            other => other.map_err(|e| VerifyError::Token(e.to_string())),
        }
    }

    /// Fetches the remote set unless the last fetch started less than `minRefreshInterval`
    /// ago (always, before the first success, when `initial`). Returns whether a new set was
    /// installed.
    async fn refresh(&self, rate_limited: bool) -> bool {
        let Some(remote) = &self.remote else {
            return false;
        };
        let mut last = remote.last_fetch.lock().await;
        if rate_limited
            && let Some(at) = *last
            && at.elapsed() < remote.min_refresh_interval
        {
            return false;
        }
        *last = Some(Instant::now());
        match remote.fetch().await {
            Ok(set) => {
                tracing::debug!(target: SCOPE_SERVER, "jwks validator: fetched {} key(s) from {}", set.len(), remote.url);
                let first = !self.is_ready();
                self.install(set);
                if first {
                    tracing::info!(target: SCOPE_SERVER, "jwks validator: key set loaded from {}; ready", remote.url);
                }
                true
            }
            Err(e) => {
                if self.is_ready() {
                    tracing::warn!(target: SCOPE_SERVER, "jwks validator: refreshing the key set from {} failed; keeping the previous set: {e}", remote.url);
                } else {
                    tracing::warn!(target: SCOPE_SERVER, "jwks validator: fetching the key set from {} failed; not ready yet: {e}", remote.url);
                }
                false
            }
        }
    }

    /// Loads a remote set until it succeeds, then refreshes it every `minRefreshInterval`.
    /// Ends when the validator is dropped.
    async fn refresh_loop(this: std::sync::Weak<Self>) {
        let mut retry = INITIAL_RETRY;
        loop {
            let Some(validator) = this.upgrade() else {
                return;
            };
            let Some(remote) = &validator.remote else {
                return;
            };
            let min = remote.min_refresh_interval;
            let period = DEFAULT_REFRESH_INTERVAL.max(min);
            let wait = if validator.is_ready() {
                // Due a period after the last fetch (an unknown-kid refresh moves it).
                let last = *remote.last_fetch.lock().await;
                let due = last.map_or(Duration::ZERO, |at| period.saturating_sub(at.elapsed()));
                if due.is_zero() {
                    validator.refresh(true).await;
                    period
                } else {
                    due
                }
            } else if validator.refresh(false).await {
                period
            } else {
                let wait = retry;
                retry = (retry * 2).min(INITIAL_RETRY_MAX.min(min));
                wait
            };
            drop(validator);
            tokio::time::sleep(wait).await;
        }
    }

    fn reload_file(&self, path: &Path) {
        match read_file_set(path) {
            Ok(set) => {
                tracing::info!(target: SCOPE_SERVER, "jwks validator: reloaded {} key(s) from {}", set.len(), path.display());
                self.install(set);
            }
            Err(e) => {
                tracing::warn!(target: SCOPE_SERVER, "jwks validator: reloading {} failed; keeping the previous set: {e}", path.display())
            }
        }
    }
}

/// Why [`JwksValidator::verify`] refused a token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum VerifyError {
    /// No key set loaded yet.
    NotReady,
    /// The token is invalid; the reason.
    Token(String),
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotReady => f.write_str("jwks validator not ready"),
            Self::Token(reason) => write!(f, "token validation failed: {reason}"),
        }
    }
}

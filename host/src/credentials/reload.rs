//! Hot reload of the issuer credentials, and the hourly expiry report.
//!
//! Sentry tears its whole runner down on any change in the credential directories. Warden
//! swaps only the bundle: requests in flight finish with the bundle they loaded, new ones get the
//! new one, and a set that does not validate is refused while the old one keeps serving.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::EventKind;
use tokio::sync::mpsc;
use warden_core::UnixTime;
use warden_core::bundle::CaBundle;
use warden_core::expiry::{CaCertKind, ExpiryStatus, expiry_status, expiry_warning};
use warden_core::profile::Validity;

use crate::credentials::store::{self, CredentialPaths};
use crate::go::duration::go_duration;
use crate::observability::{Metrics, SCOPE_CA, SCOPE_SENTRY};

/// How often a credential directory that was deleted is looked for again.
const LOST_DIRECTORY_POLL: Duration = Duration::from_secs(1);

/// Watches the credential directories and calls `on_reload` with each new valid bundle.
/// Returns the watcher, which must be kept alive.
///
/// A watched directory that is deleted (`rm -rf`, an unmounted volume) takes its inotify watch
/// with it. The loaded bundle keeps serving; an error is logged; the directory is then looked for
/// every second, watched again when it is back, and reloaded.
pub(crate) fn watch(
    paths: CredentialPaths,
    debounce: Duration,
    metrics: Metrics,
    on_reload: impl Fn(Arc<CaBundle>) + Send + 'static,
) -> notify::Result<notify::RecommendedWatcher> {
    let (tx, mut rx) = mpsc::channel::<()>(1);
    let names: Vec<PathBuf> = [
        &paths.trust_anchors,
        &paths.issuer_certificate,
        &paths.issuer_key,
    ]
    .into_iter()
    .cloned()
    .collect();
    let dirs = paths.directories();
    let watcher = watch_dirs(&dirs, tx.clone(), names.clone())?;
    let shown: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    tracing::info!(target: SCOPE_SENTRY, "Starting watch on filesystem directories: [{}]", shown.join(" "));
    tokio::spawn(async move {
        // Replacement watchers for directories that were deleted and came back.
        let mut rewatched: Option<notify::RecommendedWatcher> = None;
        let mut lost: Vec<PathBuf> = Vec::new();
        loop {
            if lost.is_empty() {
                if rx.recv().await.is_none() {
                    break;
                }
            } else {
                tokio::select! {
                    event = rx.recv() => if event.is_none() { break },
                    () = tokio::time::sleep(LOST_DIRECTORY_POLL) => {
                        if lost.iter().any(|d| !d.is_dir()) {
                            continue;
                        }
                        match watch_dirs(&dirs, tx.clone(), names.clone()) {
                            Ok(w) => {
                                rewatched = Some(w);
                                for dir in lost.drain(..) {
                                    tracing::info!(target: SCOPE_SENTRY, "Credential directory {} is back; watching it again", dir.display());
                                }
                            }
                            Err(e) => {
                                tracing::error!(target: SCOPE_SENTRY, "Cannot watch the credential directories again: {e}");
                                continue;
                            }
                        }
                    }
                }
            }
            tokio::time::sleep(debounce).await;
            while rx.try_recv().is_ok() {}
            metrics.issuer_cert_changed();
            tracing::warn!(target: SCOPE_SENTRY, "Issuer credentials changed; reloading");
            match store::load(&paths, crate::util::clock::now()) {
                Ok(bundle) => {
                    let bundle = Arc::new(bundle);
                    report_expiry(&bundle, &metrics, crate::util::clock::now());
                    on_reload(bundle);
                    tracing::info!(target: SCOPE_CA, "CA certificate key pair ready");
                }
                Err(e) => tracing::error!(
                    target: SCOPE_SENTRY,
                    "Failed to reload issuer credentials; still serving with the previous ones: {e}"
                ),
            }
            for dir in &dirs {
                if !dir.is_dir() && !lost.contains(dir) {
                    tracing::error!(target: SCOPE_SENTRY, "Credential directory {} is gone; still serving with the loaded credentials until it is back", dir.display());
                    lost.push(dir.clone());
                }
            }
        }
        drop(rewatched);
    });
    Ok(watcher)
}

/// A watcher on `dirs` that signals `tx` on each change to one of the credential files `names`
/// or to a directory itself (deleted or moved away).
fn watch_dirs(
    dirs: &[PathBuf],
    tx: mpsc::Sender<()>,
    names: Vec<PathBuf>,
) -> notify::Result<notify::RecommendedWatcher> {
    let watched = dirs.to_vec();
    let relevant = move |event: &notify::Event| {
        is_credential_change(event, &names)
            || (matches!(event.kind, EventKind::Remove(_))
                && event.paths.iter().any(|p| watched.contains(p)))
    };
    let on_error = |e: &notify::Error| {
        tracing::error!(target: SCOPE_SENTRY, "Error watching credential directories: {e}");
    };
    crate::util::watch::watch_dirs(dirs, relevant, on_error, tx)
}

fn is_credential_change(event: &notify::Event, names: &[PathBuf]) -> bool {
    // Reading the files ourselves produces access events: reacting to them would loop.
    let relevant = matches!(
        event.kind,
        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) | EventKind::Any
    );
    relevant
        && event
            .paths
            .iter()
            .any(|p| names.iter().any(|n| same_file_name(p, n)))
}

fn same_file_name(event_path: &Path, credential: &Path) -> bool {
    event_path == credential
        || (event_path.file_name() == credential.file_name()
            && event_path
                .parent()
                .map(Path::canonicalize)
                .and_then(Result::ok)
                == credential
                    .parent()
                    .map(Path::canonicalize)
                    .and_then(Result::ok))
}

/// Logs Sentry's expiry texts for every anchor and for the issuer, and sets the expiry gauges.
pub(crate) fn report_expiry(bundle: &CaBundle, metrics: &Metrics, now: UnixTime) {
    let mut earliest_root: Option<UnixTime> = None;
    for anchor in bundle.trust_anchors() {
        let not_after = Validity::of(anchor).not_after;
        earliest_root = Some(earliest_root.map_or(not_after, |e| e.min(not_after)));
        log_expiry(CaCertKind::Root, not_after, now);
    }
    let issuer_not_after = bundle.issuer_validity().not_after;
    log_expiry(CaCertKind::Issuer, issuer_not_after, now);
    metrics.set_issuer_cert_expiry(unix_secs(issuer_not_after));
    if let Some(root) = earliest_root {
        metrics.set_root_cert_expiry(unix_secs(root));
    }
}

fn unix_secs(t: UnixTime) -> i64 {
    i64::try_from(t.as_secs()).unwrap_or(i64::MAX)
}

fn log_expiry(kind: CaCertKind, not_after: UnixTime, now: UnixTime) {
    if let Some(warning) = expiry_warning(kind, not_after, now) {
        tracing::warn!(target: SCOPE_SENTRY, "{warning}");
    } else if let ExpiryStatus::Valid { remaining } = expiry_status(not_after, now) {
        tracing::debug!(target: SCOPE_SENTRY, "{} is still valid for {}", kind.subject(), go_duration(remaining));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_deleted_directory_is_watched_again_when_it_comes_back() {
        use crate::credentials::store::{GenerateOptions, load_or_generate};
        let generate = |paths: &CredentialPaths| {
            let options = GenerateOptions {
                trust_domain: warden_core::spiffe::TrustDomain::new("localhost").unwrap(),
                namespace: "default".into(),
                clock_skew: Duration::from_secs(900),
            };
            let mut rng = crate::util::clock::rng();
            load_or_generate(paths, &options, crate::util::clock::now(), &mut rng)
                .unwrap()
                .0
        };
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("creds");
        let paths = CredentialPaths::in_dir(&dir);
        generate(&paths);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let _watcher = watch(
            paths.clone(),
            Duration::from_millis(50),
            Metrics::new(),
            move |bundle| {
                let _ = tx.send(bundle.trust_anchors_pem().to_owned());
            },
        )
        .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            rx.try_recv().is_err(),
            "nothing valid to load while it is gone"
        );
        let restored = generate(&paths);
        let loaded = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("the restored set is loaded")
            .unwrap();
        assert_eq!(loaded, restored.trust_anchors_pem());
    }
}

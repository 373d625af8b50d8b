//! The one file watcher: a directory watch (so a replace by rename is seen too) that calls back
//! once per burst of changes to one file, after the burst has settled.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher as _};

/// How long a burst of changes to credential or key files is let settle before one reload: an
/// operator's `cp` of three files, or a rename after a write, is one change.
pub(crate) const RELOAD_DEBOUNCE: Duration = Duration::from_secs(2);

/// Which events on the watched file wake the watcher.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wake {
    /// Created or written (a removal leaves what was loaded in place, silently).
    OnWrite,
    /// Created, written or removed (a removal is reported by the reload failing).
    OnWriteOrRemove,
}

/// Watches `path`'s directory and calls `on_change` on tokio once per burst of matching events
/// on `path`, `debounce` after the first; stops when `on_change` returns `false`. Returns the
/// watcher, which must be kept alive.
///
/// # Errors
///
/// The watch could not be set up (the directory is missing, or inotify is out of watches).
pub(crate) fn watch_file(
    path: &Path,
    wake: Wake,
    debounce: Duration,
    mut on_change: impl FnMut() -> bool + Send + 'static,
) -> notify::Result<notify::RecommendedWatcher> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
    let name: Option<OsString> = path.file_name().map(ToOwned::to_owned);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        let relevant = match event.kind {
            EventKind::Create(_) | EventKind::Modify(_) | EventKind::Any => true,
            EventKind::Remove(_) => wake == Wake::OnWriteOrRemove,
            _ => false,
        };
        if relevant
            && event
                .paths
                .iter()
                .any(|p| p.file_name().map(ToOwned::to_owned) == name)
        {
            // A full channel already means "reload pending": dropping is right.
            let _ = tx.try_send(());
        }
    })?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            tokio::time::sleep(debounce).await;
            while rx.try_recv().is_ok() {}
            if !on_change() {
                return;
            }
        }
    });
    Ok(watcher)
}

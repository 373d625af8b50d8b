//! The one file watcher: directory watches (so a replace by rename is seen too) that signal a
//! channel on the events a caller cares about ([`watch_dirs`], which the credential reload uses
//! directly), and on top of it one file's changes called back once per settled burst
//! ([`watch_file`], for the token key files).

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
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let relevant = move |event: &notify::Event| {
        let kind = match event.kind {
            EventKind::Create(_) | EventKind::Modify(_) | EventKind::Any => true,
            EventKind::Remove(_) => wake == Wake::OnWriteOrRemove,
            _ => false,
        };
        kind && event
            .paths
            .iter()
            .any(|p| p.file_name().map(ToOwned::to_owned) == name)
    };
    let watcher = watch_dirs(&[dir], relevant, |_| {}, tx)?;
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

/// Watches each of `dirs` (not recursively) and sends on `tx` for every event `relevant`
/// accepts; errors the watcher reports go to `on_error`. A full channel already means "reload
/// pending", so a send that finds it full is dropped. Returns the watcher, which must be kept
/// alive.
///
/// # Errors
///
/// A directory could not be watched (missing, or inotify is out of watches).
pub(crate) fn watch_dirs(
    dirs: &[PathBuf],
    relevant: impl Fn(&notify::Event) -> bool + Send + 'static,
    on_error: impl Fn(&notify::Error) + Send + 'static,
    tx: tokio::sync::mpsc::Sender<()>,
) -> notify::Result<notify::RecommendedWatcher> {
    let mut watcher =
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            Ok(event) if relevant(&event) => {
                let _ = tx.try_send(());
            }
            Ok(_) => {}
            Err(e) => on_error(&e),
        })?;
    for dir in dirs {
        watcher.watch(dir, RecursiveMode::NonRecursive)?;
    }
    Ok(watcher)
}

//! Crash-safe writes of credential files.
//!
//! A credential set is several files that must change together. Each file is written to a
//! temporary sibling, fsynced and renamed over the target, then the directory is fsynced, so a
//! crash leaves each file either old or new and never truncated. Sets are written in an order
//! chosen by the caller (the file whose presence marks the set complete goes last).

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Mode of every file holding credentials (keys and certificates alike, as Sentry does).
pub const CREDENTIAL_FILE_MODE: u32 = 0o600;
/// Mode of a directory Warden creates for credentials.
pub const CREDENTIAL_DIR_MODE: u32 = 0o700;

/// A failed write, naming the path.
#[derive(Debug, thiserror::Error)]
#[error("{action} {}: {source}", path.display())]
pub struct WriteError {
    action: &'static str,
    path: PathBuf,
    #[source]
    source: io::Error,
}

impl WriteError {
    fn new(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Self + use<> {
        let path = path.to_path_buf();
        move |source| Self {
            action,
            path,
            source,
        }
    }
}

/// Creates `dir` and its parents with mode 0700 when missing.
pub fn create_private_dir(dir: &Path) -> Result<(), WriteError> {
    DirBuilder::new()
        .recursive(true)
        .mode(CREDENTIAL_DIR_MODE)
        .create(dir)
        .map_err(WriteError::new("cannot create directory", dir))
}

/// Writes every `(path, contents)` atomically with mode 0600, in order, then fsyncs each
/// parent directory once.
pub fn write_files_atomically(files: &[(&Path, &[u8])]) -> Result<(), WriteError> {
    let mut dirs: Vec<&Path> = Vec::new();
    for (path, contents) in files {
        write_one(path, contents)?;
        let dir = parent_dir(path);
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    for dir in dirs {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(WriteError::new("cannot fsync directory", dir))?;
    }
    Ok(())
}

/// Removes the temporary siblings [`write_files_atomically`] makes for `path`
/// (`.<name>.tmp-<pid>`) that a process killed mid-write left behind. Best effort: a file that
/// cannot be removed is only litter, never read as a credential.
pub fn remove_stale_temp_files(path: &Path) {
    let Some(file_name) = path.file_name() else {
        return;
    };
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(file_name);
    prefix.push(".tmp-");
    let prefix = prefix.as_encoded_bytes();
    let Ok(entries) = fs::read_dir(parent_dir(path)) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.as_encoded_bytes();
        if name.starts_with(prefix)
            && name.len() > prefix.len()
            && name
                .get(prefix.len()..)
                .is_some_and(|pid| pid.iter().all(u8::is_ascii_digit))
        {
            let _ = fs::remove_file(entry.path());
        }
    }
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn write_one(path: &Path, contents: &[u8]) -> Result<(), WriteError> {
    let file_name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file path"))
        .map_err(WriteError::new("cannot write", path))?;
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(file_name);
    temp_name.push(format!(".tmp-{}", std::process::id()));
    let temp = parent_dir(path).join(temp_name);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(CREDENTIAL_FILE_MODE)
            .open(&temp)
            .map_err(WriteError::new("cannot create", &temp))?;
        file.write_all(contents)
            .and_then(|()| file.sync_all())
            .map_err(WriteError::new("cannot write", &temp))?;
        fs::rename(&temp, path).map_err(WriteError::new("cannot rename into place", path))
    })();
    if result.is_err() {
        // Best effort: a leftover temp file is harmless, but do not leave litter behind.
        let _ = fs::remove_file(&temp);
    }
    result
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn writes_all_files_0600_and_replaces_existing() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        fs::write(&a, "old").unwrap();
        write_files_atomically(&[(&a, b"new-a"), (&b, b"new-b")]).unwrap();
        assert_eq!(fs::read(&a).unwrap(), b"new-a");
        assert_eq!(fs::read(&b).unwrap(), b"new-b");
        for p in [&a, &b] {
            let mode = fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", p.display());
        }
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
    }

    #[test]
    fn failure_names_the_path_and_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-dir").join("f");
        let err = write_files_atomically(&[(&missing, b"x")]).unwrap_err();
        assert!(err.to_string().contains("no-such-dir"), "{err}");
    }

    #[test]
    fn stale_temp_files_of_the_path_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("ca.crt");
        for name in [".ca.crt.tmp-123", ".ca.crt.tmp-4567"] {
            fs::write(dir.path().join(name), "partial").unwrap();
        }
        let kept = [
            "ca.crt",
            ".ca.crt.tmp-",
            ".ca.crt.tmp-12x",
            ".issuer.key.tmp-123",
            "x.ca.crt.tmp-1",
        ];
        for name in kept {
            fs::write(dir.path().join(name), "keep").unwrap();
        }
        remove_stale_temp_files(&target);
        let mut left: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        let mut expected: Vec<String> = kept.iter().map(|s| (*s).to_owned()).collect();
        expected.sort();
        assert_eq!(left, expected);
        // A missing directory is not an error.
        remove_stale_temp_files(&dir.path().join("missing/ca.crt"));
    }

    #[test]
    fn creates_private_directories() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("x/y");
        create_private_dir(&nested).unwrap();
        let mode = fs::metadata(&nested).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }
}

//! Crash-safe writes of credential files.
//!
//! A credential set is several files that must change together. Each file is written to a
//! temporary sibling, fsynced and renamed over the target, then the directory is fsynced, so a
//! crash leaves each file either old or new and never truncated. Sets are written in an order
//! chosen by the caller (the file whose presence marks the set complete goes last). A file that
//! must never replace another is linked into place instead, so it too appears whole or not at all.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Mode of every file holding credentials (keys and certificates alike, as Sentry does).
pub(crate) const CREDENTIAL_FILE_MODE: u32 = 0o600;
/// Mode of a directory Warden creates for credentials.
pub(crate) const CREDENTIAL_DIR_MODE: u32 = 0o700;

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
pub(crate) fn create_private_dir(dir: &Path) -> Result<(), WriteError> {
    DirBuilder::new()
        .recursive(true)
        .mode(CREDENTIAL_DIR_MODE)
        .create(dir)
        .map_err(WriteError::new("cannot create directory", dir))
}

/// What makes the credentials open to other local users: a directory they can write to (they
/// could replace `ca.crt`, `issuer.crt` or `issuer.key`, or plant names in it), and key files
/// they can read or write. One message per problem, with the mode and the `chmod` that fixes
/// it; empty when all is private or a path cannot be read (the caller reports that).
/// Symbolic links are followed, as reading the files does.
pub(crate) fn loose_permissions(dir: &Path, key_files: &[&Path]) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |path: &Path| {
        fs::metadata(path)
            .ok()
            .map(|m| m.permissions().mode() & 0o7777)
    };
    let mut problems = Vec::new();
    if let Some(mode) = mode(dir)
        && mode & 0o022 != 0
    {
        problems.push(format!(
            "credentials directory {} is writable by other users (mode {mode:04o}): they can replace the CA's files; run chmod go-w on it",
            dir.display()
        ));
    }
    for key in key_files {
        if let Some(mode) = mode(key)
            && mode & 0o077 != 0
        {
            problems.push(format!(
                "private key {} is accessible to other users (mode {mode:04o}); run chmod 600 on it",
                key.display()
            ));
        }
    }
    problems
}

/// Writes every `(path, contents)` atomically with mode 0600, in order, then fsyncs each
/// parent directory once.
pub(crate) fn write_files_atomically(files: &[(&Path, &[u8])]) -> Result<(), WriteError> {
    let mut dirs: Vec<&Path> = Vec::new();
    for (path, contents) in files {
        write_one(path, contents, Publish::Replace)?;
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

/// Reads `path`, but never more than `limit` bytes of it: a larger file is an error of kind
/// `FileTooLarge` ("larger than `limit` bytes") without reading the rest, so a huge or endless
/// file (`/dev/zero`) cannot take the memory.
pub(crate) fn read_at_most(path: &Path, limit: usize) -> io::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    File::open(path)?
        .take(limit.saturating_add(1) as u64)
        .read_to_end(&mut bytes)?;
    if bytes.len() > limit {
        return Err(io::Error::new(
            io::ErrorKind::FileTooLarge,
            format!("larger than {limit} bytes"),
        ));
    }
    Ok(bytes)
}

/// Creates `path` with `contents` and mode 0600, atomically and only if nothing is there yet
/// (a symbolic link included: it is never followed): the file appears whole or not at all,
/// so a crash can never leave a half-written file that every later start would refuse.
pub(crate) fn create_file_atomically(path: &Path, contents: &[u8]) -> Result<(), WriteError> {
    write_one(path, contents, Publish::CreateNew)?;
    let dir = parent_dir(path);
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(WriteError::new("cannot fsync directory", dir))
}

/// Mode of a file that holds only certificates, which are meant to be handed out.
pub(crate) const PUBLIC_FILE_MODE: u32 = 0o644;

/// Writes a certificate file (nothing secret) atomically with mode 0644: over what is at `path`
/// when `replace`, otherwise only if nothing is there yet (a symbolic link included), failing
/// with `AlreadyExists`.
pub(crate) fn write_public_file_atomically(
    path: &Path,
    contents: &[u8],
    replace: bool,
) -> Result<(), WriteError> {
    let publish = if replace {
        Publish::Replace
    } else {
        Publish::CreateNew
    };
    write_one_with_mode(path, contents, publish, PUBLIC_FILE_MODE)?;
    let dir = parent_dir(path);
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(WriteError::new("cannot fsync directory", dir))
}

/// How a fully written, fsynced temporary file takes its place.
#[derive(Clone, Copy)]
enum Publish {
    /// `rename`: replaces what is there.
    Replace,
    /// `link`: fails with `AlreadyExists` when anything is there.
    CreateNew,
}

/// Removes the temporary siblings [`write_files_atomically`] makes for `path`
/// (`.<name>.tmp-<hex>`; older versions used `.<name>.tmp-<pid>`, which the same pattern
/// covers) that a process killed mid-write left behind. Only regular files and symbolic links
/// with exactly that name are removed, and a link is removed itself, never what it points to.
/// Best effort: a file that cannot be removed is only litter, never read as a credential.
pub(crate) fn remove_stale_temp_files(path: &Path) {
    let Some(file_name) = path.file_name() else {
        return;
    };
    let prefix = temp_prefix(file_name);
    let prefix = prefix.as_encoded_bytes();
    let Ok(entries) = fs::read_dir(parent_dir(path)) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let is_ours = name
            .as_encoded_bytes()
            .strip_prefix(prefix)
            .is_some_and(is_temp_suffix);
        // `file_type` does not follow symbolic links.
        let removable = entry
            .file_type()
            .is_ok_and(|t| t.is_file() || t.is_symlink());
        if is_ours && removable {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// `.<name>.tmp-`: the start of every temporary sibling of `<name>`.
fn temp_prefix(file_name: &std::ffi::OsStr) -> std::ffi::OsString {
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(file_name);
    prefix.push(".tmp-");
    prefix
}

/// What follows the prefix of a temporary name: lower-case hex (the random suffix, or the
/// decimal pid older versions used), at most [`TEMP_SUFFIX_MAX`] characters.
fn is_temp_suffix(suffix: &[u8]) -> bool {
    !suffix.is_empty()
        && suffix.len() <= TEMP_SUFFIX_MAX
        && suffix
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
}

/// Random bytes in a temporary name (printed as twice as many hex digits).
const TEMP_RANDOM_BYTES: usize = 8;
/// The longest suffix [`remove_stale_temp_files`] treats as a temporary name.
const TEMP_SUFFIX_MAX: usize = 2 * TEMP_RANDOM_BYTES;
/// How many random names are tried before giving up (each clash is either astronomically
/// unlikely or someone planting names in the directory).
const TEMP_ATTEMPTS: usize = 8;

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Creates the temporary file `.<name>.tmp-<suffix>` in `dir`, mode 0600. `create_new`
/// (`O_CREAT|O_EXCL`) fails on any existing entry, a symbolic link included, and
/// `O_NOFOLLOW` says the same again, so nothing planted under the name is ever written
/// through.
fn create_temp(
    dir: &Path,
    file_name: &std::ffi::OsStr,
    suffix: &str,
) -> Result<(PathBuf, File), WriteError> {
    let mut temp_name = temp_prefix(file_name);
    temp_name.push(suffix);
    let temp = dir.join(temp_name);
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .mode(CREDENTIAL_FILE_MODE)
        .open(&temp)
        .map_err(WriteError::new("cannot create", &temp))?;
    Ok((temp, file))
}

fn random_suffix() -> Result<String, io::Error> {
    let mut bytes = [0u8; TEMP_RANDOM_BYTES];
    getrandom::fill(&mut bytes).map_err(io::Error::other)?;
    Ok(base16ct::lower::encode_string(&bytes))
}

fn write_one(path: &Path, contents: &[u8], publish: Publish) -> Result<(), WriteError> {
    write_one_with_mode(path, contents, publish, CREDENTIAL_FILE_MODE)
}

/// [`write_one`] with a file mode: the temporary file is created 0600 and gets `mode` (exactly,
/// whatever the umask) once written.
fn write_one_with_mode(
    path: &Path,
    contents: &[u8],
    publish: Publish,
    mode: u32,
) -> Result<(), WriteError> {
    use std::os::unix::fs::PermissionsExt as _;
    let file_name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file path"))
        .map_err(WriteError::new("cannot write", path))?;
    let dir = parent_dir(path);
    let mut attempt = 0;
    let (temp, mut file) = loop {
        attempt += 1;
        let suffix =
            random_suffix().map_err(WriteError::new("cannot name a temporary file for", path))?;
        match create_temp(dir, file_name, &suffix) {
            Ok(created) => break created,
            Err(e)
                if e.source.kind() == io::ErrorKind::AlreadyExists && attempt < TEMP_ATTEMPTS => {}
            Err(e) => return Err(e),
        }
    };
    let result =
        file.write_all(contents)
            .and_then(|()| {
                if mode == CREDENTIAL_FILE_MODE {
                    Ok(())
                } else {
                    file.set_permissions(fs::Permissions::from_mode(mode))
                }
            })
            .and_then(|()| file.sync_all())
            .map_err(WriteError::new("cannot write", &temp))
            .and_then(|()| match publish {
                Publish::Replace => fs::rename(&temp, path)
                    .map_err(WriteError::new("cannot rename into place", path)),
                Publish::CreateNew => {
                    fs::hard_link(&temp, path).map_err(WriteError::new("cannot create", path))
                }
            });
    if result.is_err() || matches!(publish, Publish::CreateNew) {
        // Best effort: the file is ours (created new above), and litter is not left behind.
        let _ = fs::remove_file(&temp);
    }
    result
}

#[cfg(test)]
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
    fn a_public_file_is_0644_and_replaces_only_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("issuer.crt");
        write_public_file_atomically(&path, b"first", false).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"first");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        let err = write_public_file_atomically(&path, b"second", false).unwrap_err();
        assert_eq!(
            std::error::Error::source(&err)
                .and_then(|e| e.downcast_ref::<io::Error>())
                .map(io::Error::kind),
            Some(io::ErrorKind::AlreadyExists)
        );
        assert_eq!(fs::read(&path).unwrap(), b"first");
        // Nothing planted under the name is written through, even a dangling link.
        let link = dir.path().join("link.crt");
        std::os::unix::fs::symlink(dir.path().join("target"), &link).unwrap();
        assert!(write_public_file_atomically(&link, b"x", false).is_err());
        assert!(!dir.path().join("target").exists());
        write_public_file_atomically(&path, b"second", true).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "temporary files left: {names:?}");
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

    /// On the old code the temporary name was `.<name>.tmp-<pid>`: a symbolic link planted
    /// there made the key be written through it, into a file of the planter's choosing.
    #[test]
    fn a_symlink_at_the_old_predictable_temp_name_is_not_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        fs::write(&victim, "victim").unwrap();
        fs::set_permissions(&victim, fs::Permissions::from_mode(0o644)).unwrap();
        let key = dir.path().join("issuer.key");
        let planted = dir
            .path()
            .join(format!(".issuer.key.tmp-{}", std::process::id()));
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        write_files_atomically(&[(&key, b"SECRET KEY")]).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"victim");
        assert_eq!(fs::read(&key).unwrap(), b"SECRET KEY");
        let meta = fs::symlink_metadata(&key).unwrap();
        assert!(meta.file_type().is_file());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn a_planted_entry_at_any_temp_name_is_never_opened() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        fs::write(&victim, "victim").unwrap();
        let name = std::ffi::OsStr::new("issuer.key");
        // A symlink to an existing file, a dangling one, and a plain file.
        std::os::unix::fs::symlink(&victim, dir.path().join(".issuer.key.tmp-aa")).unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("new"),
            dir.path().join(".issuer.key.tmp-bb"),
        )
        .unwrap();
        fs::write(dir.path().join(".issuer.key.tmp-cc"), "theirs").unwrap();
        for suffix in ["aa", "bb", "cc"] {
            let err = create_temp(dir.path(), name, suffix).unwrap_err();
            assert_eq!(err.source.kind(), io::ErrorKind::AlreadyExists, "{suffix}");
        }
        assert_eq!(fs::read(&victim).unwrap(), b"victim");
        assert!(!outside.path().join("new").exists());
        assert_eq!(
            fs::read(dir.path().join(".issuer.key.tmp-cc")).unwrap(),
            b"theirs"
        );
    }

    #[test]
    fn temp_names_are_random_and_cleaned_up_when_stale() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("issuer.key");
        let (first, _) = create_temp(
            dir.path(),
            target.file_name().unwrap(),
            &random_suffix().unwrap(),
        )
        .unwrap();
        let (second, _) = create_temp(
            dir.path(),
            target.file_name().unwrap(),
            &random_suffix().unwrap(),
        )
        .unwrap();
        assert_ne!(first, second);
        for temp in [&first, &second] {
            let name = temp.file_name().unwrap().to_str().unwrap();
            let suffix = name.strip_prefix(".issuer.key.tmp-").unwrap();
            assert_eq!(suffix.len(), 16, "{name}");
            assert_eq!(
                fs::metadata(temp).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        // What a killed start leaves behind is removed by the next start.
        remove_stale_temp_files(&target);
        assert!(!first.exists() && !second.exists());
    }

    #[test]
    fn stale_temp_cleanup_removes_a_planted_link_but_not_its_target_nor_directories() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        fs::write(&victim, "victim").unwrap();
        let link = dir.path().join(".ca.crt.tmp-1234");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let subdir = dir.path().join(".ca.crt.tmp-5678");
        fs::create_dir(&subdir).unwrap();
        fs::write(subdir.join("inside"), "x").unwrap();
        remove_stale_temp_files(&dir.path().join("ca.crt"));
        assert!(fs::symlink_metadata(&link).is_err(), "the link itself goes");
        assert_eq!(fs::read(&victim).unwrap(), b"victim");
        assert!(subdir.join("inside").exists(), "a directory is never ours");
    }

    #[test]
    fn a_symlinked_target_is_replaced_not_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        fs::write(&victim, "victim").unwrap();
        let key = dir.path().join("issuer.key");
        std::os::unix::fs::symlink(&victim, &key).unwrap();
        write_files_atomically(&[(&key, b"SECRET KEY")]).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"victim");
        assert!(fs::symlink_metadata(&key).unwrap().file_type().is_file());
        assert_eq!(fs::read(&key).unwrap(), b"SECRET KEY");
    }

    #[test]
    fn reads_stop_past_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, b"12345").unwrap();
        assert_eq!(read_at_most(&path, 5).unwrap(), b"12345");
        let err = read_at_most(&path, 4).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::FileTooLarge);
        assert_eq!(err.to_string(), "larger than 4 bytes");
        // An endless file is cut at the limit instead of filling the memory.
        let err = read_at_most(Path::new("/dev/zero"), 1024).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::FileTooLarge);
        assert_eq!(
            read_at_most(&dir.path().join("absent"), 4)
                .unwrap_err()
                .kind(),
            io::ErrorKind::NotFound
        );
    }

    #[test]
    fn create_makes_a_whole_private_file_and_never_replaces_or_follows_anything() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("audit.key");
        create_file_atomically(&key, b"KEY\n").unwrap();
        assert_eq!(fs::read(&key).unwrap(), b"KEY\n");
        assert_eq!(
            fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "a temporary file was left: {names:?}");

        let err = create_file_atomically(&key, b"OTHER\n").unwrap_err();
        assert_eq!(err.source.kind(), io::ErrorKind::AlreadyExists, "{err}");
        assert_eq!(fs::read(&key).unwrap(), b"KEY\n");

        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("target");
        let link = dir.path().join("link.key");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = create_file_atomically(&link, b"KEY\n").unwrap_err();
        assert_eq!(err.source.kind(), io::ErrorKind::AlreadyExists, "{err}");
        assert!(!target.exists(), "written through the symbolic link");
    }

    #[test]
    fn loose_permissions_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("issuer.key");
        fs::write(&key, "k").unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
        fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(loose_permissions(dir.path(), &[&key]).is_empty());
        // Read-only for others is fine for the directory, not for a key.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(&key, fs::Permissions::from_mode(0o640)).unwrap();
        assert_eq!(
            loose_permissions(dir.path(), &[&key]),
            [format!(
                "private key {} is accessible to other users (mode 0640); run chmod 600 on it",
                key.display()
            )]
        );
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o1777)).unwrap();
        fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            loose_permissions(dir.path(), &[&key]),
            [format!(
                "credentials directory {} is writable by other users (mode 1777): they can replace the CA's files; run chmod go-w on it",
                dir.path().display()
            )]
        );
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
        // Missing paths are not this function's business.
        assert!(
            loose_permissions(&dir.path().join("nope"), &[&dir.path().join("nokey")]).is_empty()
        );
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

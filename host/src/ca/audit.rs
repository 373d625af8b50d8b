//! The audit log (`--audit-log FILE`): one JSON line per `SignCertificate`, issued or refused,
//! written before the response leaves. Tokens and keys are never written.
//!
//! Integrity (README "Audit log" says what this proves and what it does not):
//! - Each line carries `prev_hmac`, the HMAC-SHA256 of the line before it under a 32-byte key
//!   (`audit.key`, 0600, generated on first use in the credentials directory). Without the key
//!   nobody can write a line that verifies, so editing, inserting, deleting or reordering lines
//!   breaks the chain at a named line.
//! - The last line has no successor to pin it, so after every append a checkpoint (file
//!   sequence number, line count, HMAC of the last line, itself HMAC'd) is written beside the
//!   log (`FILE.checkpoint`). Deleting or editing the last lines then no longer matches it.
//! - Rotation (`--audit-log-max-bytes`): the full file is renamed to `FILE.<seq>` and the new
//!   file starts with a header line carrying the next sequence number, the old file's line
//!   count and its last HMAC, so `warden audit verify FILE.1 FILE.2 FILE` checks the sequence.
//! - A failed write is rolled back to the last good offset, so a full disk never leaves a
//!   fragment that the next line would be glued to; until a write succeeds again issuance is
//!   refused (healthz target `audit-log`, metric `warden_audit_log_writable`).
//!
//! Lines written before the chain was keyed (`prev_sha256`, an unkeyed SHA-256 chain) are still
//! read: they may only precede keyed lines, and the first keyed line pins the last of them.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead as _, BufReader, Write as _};
// `create_new` (O_CREAT|O_EXCL) never follows a symlink, so the key and a rotated file cannot be
// written through one planted in their place.
use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use aws_lc_rs::hmac;
use serde::{Deserialize, Serialize};

use crate::observability::{HealthTarget, Metrics, SCOPE_SERVER};
use crate::util::digest::sha256_hex;

/// `prev_hmac` (or legacy `prev_sha256`) of the first line of the first file.
pub(crate) const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The checkpoint is one fixed-size record overwritten in place: a single `pwrite` of fewer
/// bytes than a page is never seen half-written after a process crash, costs one syscall per
/// record (no create, rename or fsync), and never needs new disk blocks once allocated, so a
/// full disk cannot make it fail.
const CHECKPOINT_LEN: usize = 256;
const KEY_LEN: usize = 32;
/// Domain separation: a checkpoint MAC can never be mistaken for a line MAC.
const CHECKPOINT_CONTEXT: &str = "warden audit checkpoint v1";

/// One audited request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AuditEntry {
    /// RFC 3339 UTC.
    pub time: String,
    /// `issued` or `refused`; Warden's own lines: `rotated` (first line of a rotated file),
    /// `recovered` (an incomplete line was removed at start), `resumed` (writes work again).
    pub outcome: String,
    /// The request's `id`.
    pub app_id: String,
    /// The request's `namespace`.
    pub namespace: String,
    /// The request's `trust_domain` (empty = server default).
    pub trust_domain: String,
    /// `insecure`, `jwks`, ... or the raw number for an unknown value.
    pub validator: String,
    /// The caller's address.
    pub peer: String,
    /// The SVID's SPIFFE ID (issued only).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub spiffe_id: String,
    /// Serial number, hex (issued only).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub serial: String,
    /// NotAfter, RFC 3339 (issued only).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub not_after: String,
    /// Subject key identifier of the issuer that signed it, hex (issued only).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub issuer_skid: String,
    /// gRPC code name (refused only).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub code: String,
    /// gRPC message (refused only), or what happened (Warden's own lines).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

#[derive(Serialize, Deserialize)]
struct Line {
    #[serde(flatten)]
    entry: AuditEntry,
    /// Rotation header only (first line of a file after the first): this file's number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    seq: Option<u64>,
    /// Rotation header only: the line count of the previous file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prev_lines: Option<u64>,
    /// Legacy unkeyed link (before the chain was keyed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prev_sha256: Option<String>,
    /// HMAC-SHA256 of the previous line (for a header: of the previous file's last line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prev_hmac: Option<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
struct Checkpoint {
    seq: u64,
    lines: u64,
    last: String,
    mac: String,
}

/// The chain key (`audit.key`).
pub(crate) struct AuditKey(hmac::Key);

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey(..)")
    }
}

impl AuditKey {
    /// Reads a key file: 64 hex digits (32 bytes), optionally followed by a newline.
    pub(crate) fn load(path: &Path) -> Result<Self, AuditError> {
        let text = fs::read_to_string(path).map_err(|e| AuditError::Key {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let bytes = base16ct::mixed::decode_vec(text.trim())
            .ok()
            .filter(|b| b.len() == KEY_LEN)
            .ok_or_else(|| AuditError::Key {
                path: path.to_path_buf(),
                reason: format!("expected {} hex digits", KEY_LEN * 2),
            })?;
        Ok(Self(hmac::Key::new(hmac::HMAC_SHA256, &bytes)))
    }

    /// Creates a new random key file (0600, never overwriting one) and fsyncs it: a lost key
    /// makes the whole log unverifiable.
    fn create(path: &Path) -> Result<Self, AuditError> {
        let mut bytes = [0u8; KEY_LEN];
        getrandom::fill(&mut bytes).map_err(|e| AuditError::Key {
            path: path.to_path_buf(),
            reason: format!("no randomness: {e}"),
        })?;
        let text = zeroize::Zeroizing::new(format!("{}\n", base16ct::lower::encode_string(&bytes)));
        // Whole or not at all: a half-written key would be refused at every later start.
        crate::util::files::create_file_atomically(path, text.as_bytes()).map_err(|e| {
            AuditError::Key {
                path: path.to_path_buf(),
                reason: format!("cannot create it: {e} (--audit-key FILE puts it elsewhere)"),
            }
        })?;
        let key = Self(hmac::Key::new(hmac::HMAC_SHA256, &bytes));
        zeroize::Zeroize::zeroize(&mut bytes);
        Ok(key)
    }

    fn mac(&self, bytes: &[u8]) -> String {
        base16ct::lower::encode_string(hmac::sign(&self.0, bytes).as_ref())
    }

    fn checkpoint_mac(&self, seq: u64, lines: u64, last: &str) -> String {
        self.mac(format!("{CHECKPOINT_CONTEXT}\n{seq}\n{lines}\n{last}").as_bytes())
    }
}

/// Why the audit log cannot be used or does not verify.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum AuditError {
    /// Opening, reading or writing failed.
    #[error("audit log {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A line is not an audit record.
    #[error("audit log {}: line {line}: not an audit record: {reason}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The JSON error.
        reason: String,
    },
    /// A line's link is not the MAC (or legacy hash) of the line before it.
    #[error(
        "audit log {}: line {line}: chain broken (its link is not the MAC of line {}): line {} was edited, or lines were inserted, deleted or reordered here",
        path.display(), line.saturating_sub(1), line.saturating_sub(1)
    )]
    BrokenLink {
        /// The file.
        path: PathBuf,
        /// 1-based line number of the first line whose link does not hold.
        line: usize,
    },
    /// The files given do not follow each other.
    #[error("audit log {}: {reason}", path.display())]
    Sequence {
        /// The later file.
        path: PathBuf,
        /// What does not match.
        reason: String,
    },
    /// The checkpoint is missing, forged, or does not match the end of the log.
    #[error("audit log {}: {reason}", path.display())]
    Checkpoint {
        /// The log file.
        path: PathBuf,
        /// What does not match.
        reason: String,
    },
    /// The chain key is missing or unreadable.
    #[error("audit key {}: {reason}", path.display())]
    Key {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl AuditError {
    fn io(path: &Path) -> impl Fn(io::Error) -> Self + use<> {
        let path = path.to_path_buf();
        move |source| Self::Io {
            path: path.clone(),
            source,
        }
    }
}

/// Where the audit log keeps its key and when it rotates.
#[derive(Debug, Default)]
pub(crate) struct AuditOptions {
    /// The chain key, created (0600) when neither it nor a keyed log exists.
    pub key: PathBuf,
    /// Roll over to a new file once the current one reaches this size; 0 never.
    pub max_bytes: u64,
    /// Made not ready while the log cannot be written.
    pub health: Option<HealthTarget>,
    /// `warden_audit_log_*`.
    pub metrics: Option<Metrics>,
}

/// An open audit log.
#[derive(Debug)]
pub(crate) struct AuditLog {
    path: PathBuf,
    key: AuditKey,
    max_bytes: u64,
    health: Option<HealthTarget>,
    metrics: Option<Metrics>,
    /// `Tail::failures == 0`, readable without the lock: every request checks it first.
    writable: AtomicBool,
    inner: Mutex<Tail>,
}

#[derive(Debug)]
struct Tail {
    file: File,
    checkpoint: File,
    /// This file's sequence number.
    seq: u64,
    /// Lines in this file.
    lines: u64,
    /// Length of the whole lines written: a failed write is cut back to here.
    good_len: u64,
    /// What the next line must carry.
    last: String,
    /// Writes failed since the last success (0 = healthy).
    failures: u64,
}

/// What one file holds, read line by line.
#[derive(Debug)]
struct Scan {
    seq: u64,
    /// Rotation header: (previous file's line count, previous file's last link).
    header: Option<(u64, String)>,
    lines: u64,
    /// Lines other than Warden's rotation header.
    records: u64,
    /// Any line keyed (then a checkpoint must exist).
    keyed: bool,
    /// Any legacy unkeyed line.
    unkeyed: bool,
    /// The link after the last line (the start link when empty).
    last: String,
    /// The link after the line before the last one.
    before_last: String,
    /// Bytes of whole lines.
    complete_len: u64,
    /// Bytes of an incomplete last line (no newline), 0 when none.
    fragment_len: u64,
}

fn scan(path: &Path, key: Option<&AuditKey>) -> Result<Scan, AuditError> {
    let io_err = AuditError::io(path);
    let mut reader = BufReader::new(File::open(path).map_err(&io_err)?);
    let mut result = Scan {
        seq: 1,
        header: None,
        lines: 0,
        records: 0,
        keyed: false,
        unkeyed: false,
        last: GENESIS.to_owned(),
        before_last: GENESIS.to_owned(),
        complete_len: 0,
        fragment_len: 0,
    };
    // The previous line's text: its link is computed only once the next line says which kind
    // (legacy SHA-256 or keyed HMAC) it needs.
    let mut previous: Option<Vec<u8>> = None;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).map_err(&io_err)?;
        if n == 0 {
            break;
        }
        if buf.last() != Some(&b'\n') {
            result.fragment_len = n as u64;
            break;
        }
        buf.pop();
        let number = usize::try_from(result.lines + 1).unwrap_or(usize::MAX);
        let malformed = |reason: String| AuditError::Malformed {
            path: path.to_path_buf(),
            line: number,
            reason,
        };
        let line: Line = serde_json::from_slice(&buf).map_err(|e| malformed(e.to_string()))?;
        let (link, keyed) = match (&line.prev_hmac, &line.prev_sha256) {
            (Some(link), None) => (link, true),
            (None, Some(link)) => (link, false),
            _ => {
                return Err(malformed(
                    "exactly one of prev_hmac and prev_sha256 is required".into(),
                ));
            }
        };
        if line.seq.is_some() || line.prev_lines.is_some() {
            match (number, line.seq, line.prev_lines, keyed) {
                (1, Some(seq), Some(prev_lines), true) if seq > 1 => {
                    result.seq = seq;
                    result.header = Some((prev_lines, link.clone()));
                }
                _ => {
                    return Err(malformed(
                        "a rotation header (seq, prev_lines) may only be the keyed first line"
                            .into(),
                    ));
                }
            }
        } else {
            result.records += 1;
        }
        if !keyed && result.keyed {
            return Err(malformed("an unkeyed line after keyed lines".into()));
        }
        let expected = match (&previous, keyed) {
            // The first line's link is checked against the previous file by the caller.
            (None, _) if result.header.is_some() => link.clone(),
            (None, _) => GENESIS.to_owned(),
            (Some(text), false) => sha256_hex(text),
            (Some(text), true) => match key {
                Some(key) => key.mac(text),
                None => {
                    return Err(AuditError::Key {
                        path: PathBuf::from("(none given)"),
                        reason: format!(
                            "{} line {number} is keyed (prev_hmac): give the audit key (--key)",
                            path.display()
                        ),
                    });
                }
            },
        };
        if *link != expected {
            return Err(AuditError::BrokenLink {
                path: path.to_path_buf(),
                line: number,
            });
        }
        result.keyed |= keyed;
        result.unkeyed |= !keyed;
        result.lines += 1;
        result.complete_len += n as u64;
        previous = Some(std::mem::take(&mut buf));
    }
    // The links after the last two lines: HMACs when there is a key (what a keyed line after
    // them carries), SHA-256 for a legacy file read without one.
    let start = result
        .header
        .as_ref()
        .map_or_else(|| GENESIS.to_owned(), |(_, link)| link.clone());
    result.last = start.clone();
    result.before_last = start;
    if let Some(text) = previous {
        result.last = match key {
            Some(key) => key.mac(&text),
            None => sha256_hex(&text),
        };
        if result.lines > 1 {
            result.before_last = before_last_link(path, result.lines, key)?;
        }
    }
    Ok(result)
}

/// The link after line `lines - 1` (read again: only needed once per open or verify).
fn before_last_link(path: &Path, lines: u64, key: Option<&AuditKey>) -> Result<String, AuditError> {
    let reader = BufReader::new(File::open(path).map_err(AuditError::io(path))?);
    let wanted = usize::try_from(lines.saturating_sub(2)).unwrap_or(usize::MAX);
    let text = reader
        .split(b'\n')
        .nth(wanted)
        .transpose()
        .map_err(AuditError::io(path))?
        .unwrap_or_default();
    Ok(match key {
        Some(key) => key.mac(&text),
        None => sha256_hex(&text),
    })
}

/// Whether any line of `path` is keyed (`prev_hmac`), without checking anything else.
fn has_keyed_line(path: &Path) -> Result<bool, AuditError> {
    let reader = BufReader::new(File::open(path).map_err(AuditError::io(path))?);
    for text in reader.split(b'\n') {
        let text = text.map_err(AuditError::io(path))?;
        if serde_json::from_slice::<Line>(&text).is_ok_and(|line| line.prev_hmac.is_some()) {
            return Ok(true);
        }
    }
    Ok(false)
}

pub(crate) fn checkpoint_path(log: &Path) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(".checkpoint");
    PathBuf::from(name)
}

fn archive_path(log: &Path, seq: u64) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(format!(".{seq}"));
    PathBuf::from(name)
}

fn rotation_temp_path(log: &Path) -> PathBuf {
    let name = log
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    log.with_file_name(format!(".{name}.next"))
}

fn read_checkpoint(path: &Path, log: &Path, key: &AuditKey) -> Result<Checkpoint, AuditError> {
    let bad = |reason: String| AuditError::Checkpoint {
        path: log.to_path_buf(),
        reason,
    };
    let text = fs::read(path).map_err(AuditError::io(path))?;
    let checkpoint: Checkpoint = serde_json::from_slice(text.trim_ascii()).map_err(|e| {
        bad(format!(
            "checkpoint {} is unreadable ({e}): it was damaged or replaced",
            path.display()
        ))
    })?;
    if key.checkpoint_mac(checkpoint.seq, checkpoint.lines, &checkpoint.last) != checkpoint.mac {
        return Err(bad(format!(
            "checkpoint {} has a wrong MAC: it was forged, or written with another key",
            path.display()
        )));
    }
    Ok(checkpoint)
}

fn encode_checkpoint(key: &AuditKey, seq: u64, lines: u64, last: &str) -> Vec<u8> {
    let checkpoint = Checkpoint {
        seq,
        lines,
        last: last.to_owned(),
        mac: key.checkpoint_mac(seq, lines, last),
    };
    // Serialising four plain fields cannot fail; an empty record would only fail verification.
    let mut bytes = serde_json::to_vec(&checkpoint).unwrap_or_default();
    bytes.resize(CHECKPOINT_LEN - 1, b' ');
    bytes.push(b'\n');
    bytes
}

/// How a checkpoint relates to a file that was read whole.
fn check_against(checkpoint: &Checkpoint, file: &Scan, log: &Path) -> Result<(), String> {
    if checkpoint.seq != file.seq {
        return Err(format!(
            "the checkpoint is for file number {} but {} is file number {}: a file is missing or the checkpoint was replaced",
            checkpoint.seq,
            log.display(),
            file.seq
        ));
    }
    if checkpoint.lines > file.lines {
        return Err(format!(
            "the checkpoint records {} lines but {} has {}: its last {} line(s) were deleted",
            checkpoint.lines,
            log.display(),
            file.lines,
            checkpoint.lines - file.lines
        ));
    }
    if checkpoint.lines < file.lines {
        return Err(format!(
            "the checkpoint records {} lines but {} has {}: the checkpoint was replaced by an older one, or lines after line {} were written without it",
            checkpoint.lines,
            log.display(),
            file.lines,
            checkpoint.lines
        ));
    }
    if checkpoint.last != file.last {
        return Err(format!(
            "line {} of {} is not the line the checkpoint recorded: it was edited, or the last lines were replaced",
            file.lines,
            log.display()
        ));
    }
    Ok(())
}

/// Where [`AuditLog::open`] continues the chain.
#[derive(Debug)]
struct Resume {
    seq: u64,
    lines: u64,
    last: String,
    /// Length of the whole lines already in the file.
    good_len: u64,
    /// The log is missing after a rotation that stopped between its renames: the next file
    /// must be started first.
    finish_rotation: bool,
}

impl Resume {
    /// A first start: file number 1, empty, from the genesis link.
    fn new_chain() -> Self {
        Self {
            seq: 1,
            lines: 0,
            last: GENESIS.to_owned(),
            good_len: 0,
            finish_rotation: false,
        }
    }
}

/// Creates the chain key on first use. A keyed log without its key must not silently get a
/// new one (it would never verify again, and would hide that the key was removed).
fn create_key(
    log: &Path,
    key_file: &Path,
    checkpoint_exists: bool,
    log_exists: bool,
) -> Result<AuditKey, AuditError> {
    let keyed = checkpoint_exists || (log_exists && has_keyed_line(log)?);
    if keyed {
        return Err(AuditError::Key {
            path: key_file.to_path_buf(),
            reason: format!(
                "missing, but {} was written with a key: restore the key (or move the log, its checkpoint and its rotated files aside to start a new chain)",
                log.display()
            ),
        });
    }
    tracing::info!(target: SCOPE_SERVER, "Created the audit log key {}", key_file.display());
    AuditKey::create(key_file)
}

/// A checkpoint or file that does not match: the log is kept as evidence, never extended.
fn refuse(log: &Path, reason: String) -> AuditError {
    AuditError::Checkpoint {
        path: log.to_path_buf(),
        reason: format!(
            "{reason}; refusing to extend it (keep it as evidence, run `warden audit verify`, and move the log, its checkpoint and its rotated files aside to start a new chain)"
        ),
    }
}

/// An existing log: verified against its checkpoint, with what a crash can leave accepted (one
/// whole line after the checkpoint, the first line of a new file after a rotation) or repaired
/// (an incomplete last line, noted in `notes`).
fn resume_file(
    path: &Path,
    key: &AuditKey,
    checkpoint: Option<&Checkpoint>,
    notes: &mut Vec<String>,
) -> Result<Resume, AuditError> {
    let file = scan(path, Some(key))?;
    match checkpoint {
        None if file.keyed => {
            return Err(refuse(
                path,
                format!(
                    "the checkpoint {} is missing",
                    checkpoint_path(path).display()
                ),
            ));
        }
        None => {}
        Some(c) => {
            let one_behind =
                c.seq == file.seq && c.lines + 1 == file.lines && c.last == file.before_last;
            let rotation_cut = file.lines == 1
                && c.seq + 1 == file.seq
                && file.header.as_ref() == Some(&(c.lines, c.last.clone()));
            if one_behind {
                tracing::warn!(target: SCOPE_SERVER, "Audit log {}: its last line was written but not checkpointed (a crash between the two); accepted", path.display());
            } else if !rotation_cut {
                check_against(c, &file, path).map_err(|reason| refuse(path, reason))?;
            }
        }
    }
    if file.fragment_len > 0 {
        // Only whole lines are checkpointed, so a fragment is always after the last
        // checkpointed line: cutting it loses nothing that was vouched for.
        let io_err = AuditError::io(path);
        let f = OpenOptions::new().write(true).open(path).map_err(&io_err)?;
        f.set_len(file.complete_len).map_err(&io_err)?;
        let note = format!(
            "removed an incomplete last line ({} bytes at offset {}) left by an interrupted write",
            file.fragment_len, file.complete_len
        );
        tracing::warn!(target: SCOPE_SERVER, "Audit log {}: {note}", path.display());
        notes.push(note);
    }
    Ok(Resume {
        seq: file.seq,
        lines: file.lines,
        last: file.last,
        good_len: file.complete_len,
        finish_rotation: false,
    })
}

/// The log is gone but its checkpoint is not: either a rotation stopped between its renames
/// (the archive matches the checkpoint), or the log was deleted.
fn resume_after_rotation(
    path: &Path,
    key: &AuditKey,
    c: &Checkpoint,
) -> Result<Resume, AuditError> {
    let archive = archive_path(path, c.seq);
    let previous = archive
        .exists()
        .then(|| scan(&archive, Some(key)))
        .transpose()?;
    match previous {
        Some(file) if check_against(c, &file, &archive).is_ok() => {
            tracing::warn!(target: SCOPE_SERVER, "Audit log {} is missing after a rotation to {}; starting the next file", path.display(), archive.display());
            Ok(Resume {
                seq: c.seq,
                lines: c.lines,
                last: c.last.clone(),
                good_len: 0,
                finish_rotation: true,
            })
        }
        _ => Err(refuse(
            path,
            format!(
                "the log is missing but its checkpoint {} records {} lines in file number {}: it was deleted",
                checkpoint_path(path).display(),
                c.lines,
                c.seq
            ),
        )),
    }
}

impl AuditLog {
    /// Opens (or creates, 0600) the log for appending. An existing log is verified first
    /// (chain and checkpoint), so new lines continue an intact chain. What a crash can leave is
    /// repaired with a warning: an incomplete last line, one whole line written after the
    /// checkpoint, a rotation cut between its renames. Anything else is refused.
    pub(crate) fn open(path: &Path, options: AuditOptions) -> Result<Self, AuditError> {
        let checkpoint_file = checkpoint_path(path);
        let log_exists = path.exists();
        // An empty checkpoint is what a crash right after creating it leaves on a first start;
        // it vouches for nothing, and a keyed log without a real one is still refused below.
        let checkpoint_exists = checkpoint_file.metadata().is_ok_and(|m| m.len() > 0);
        let key_existed = options.key.exists();
        let key = if key_existed {
            AuditKey::load(&options.key)?
        } else {
            create_key(path, &options.key, checkpoint_exists, log_exists)?
        };
        let checkpoint = checkpoint_exists
            .then(|| read_checkpoint(&checkpoint_file, path, &key))
            .transpose()?;
        let _ = fs::remove_file(rotation_temp_path(path));
        let mut notes = Vec::new();
        let resume = if log_exists {
            resume_file(path, &key, checkpoint.as_ref(), &mut notes)?
        } else if let Some(c) = &checkpoint {
            resume_after_rotation(path, &key, c)?
        } else {
            if key_existed {
                // Legitimate after moving a log aside on purpose; otherwise someone deleted the
                // log together with its checkpoint, which nothing on this host can prove.
                tracing::warn!(target: SCOPE_SERVER, "Audit log {} and its checkpoint do not exist but the key {} does: starting a new chain (if the old log was not moved aside on purpose, it was deleted)", path.display(), options.key.display());
            }
            Resume::new_chain()
        };
        let log = Self::open_files(path, key, options, &resume)?;
        log.finish_opening(resume.finish_rotation, notes)?;
        Ok(log)
    }

    /// Opens (or creates, 0600) the log for appending and its checkpoint, continuing at
    /// `resume`.
    fn open_files(
        path: &Path,
        key: AuditKey,
        options: AuditOptions,
        resume: &Resume,
    ) -> Result<Self, AuditError> {
        let checkpoint_file = checkpoint_path(path);
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .map_err(AuditError::io(path))?;
        let checkpoint = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&checkpoint_file)
            .map_err(AuditError::io(&checkpoint_file))?;
        Ok(Self {
            path: path.to_path_buf(),
            key,
            max_bytes: options.max_bytes,
            health: options.health,
            metrics: options.metrics,
            writable: AtomicBool::new(true),
            inner: Mutex::new(Tail {
                file,
                checkpoint,
                seq: resume.seq,
                lines: resume.lines,
                good_len: resume.good_len,
                last: resume.last.clone(),
                failures: 0,
            }),
        })
    }

    /// Finishes an interrupted rotation, writes the checkpoint, records what was repaired,
    /// and reports the log ready.
    fn finish_opening(&self, finish_rotation: bool, notes: Vec<String>) -> Result<(), AuditError> {
        {
            let mut tail = self.lock();
            if finish_rotation {
                // Finish the interrupted rotation: the new file starts after the archive.
                self.start_next_file(&mut tail, false)?;
            }
            self.write_checkpoint(&tail, tail.seq, tail.lines, &tail.last.clone())?;
        }
        for note in notes {
            self.record_own("recovered", note)?;
        }
        if let Some(health) = &self.health {
            health.ready();
        }
        if let Some(metrics) = &self.metrics {
            metrics.set_audit_log_writable(true);
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tail> {
        // A poisoned lock only means another writer panicked; the state it guards is updated
        // only after a whole line and its checkpoint are written.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write_checkpoint(
        &self,
        tail: &Tail,
        seq: u64,
        lines: u64,
        last: &str,
    ) -> Result<(), AuditError> {
        tail.checkpoint
            .write_all_at(&encode_checkpoint(&self.key, seq, lines, last), 0)
            .map_err(AuditError::io(&checkpoint_path(&self.path)))
    }

    /// Appends one record. Returns only once the line and its checkpoint are with the OS
    /// (not fsynced: see README). On failure the file is cut back to its last whole line, the
    /// health target goes not ready and the error is returned: the caller must not answer.
    pub(crate) fn record(&self, entry: AuditEntry) -> Result<(), AuditError> {
        let mut tail = self.lock();
        if tail.failures > 0 {
            self.resume(&mut tail)?;
        }
        self.append(&mut tail, entry)
    }

    /// Ok when the log can be written; after a failure, tries again by writing a `resumed`
    /// line (so the outage is on record). Called before a request is worked on, and
    /// periodically, so a pod taken out of service by its probe comes back by itself.
    pub(crate) fn ensure_writable(&self) -> Result<(), AuditError> {
        if self.is_writable() {
            return Ok(());
        }
        let mut tail = self.lock();
        if tail.failures > 0 {
            self.resume(&mut tail)?;
        }
        Ok(())
    }

    /// True when the last write succeeded.
    pub(crate) fn is_writable(&self) -> bool {
        self.writable.load(Ordering::Acquire)
    }

    fn resume(&self, tail: &mut Tail) -> Result<(), AuditError> {
        let failures = tail.failures;
        self.append(
            tail,
            own_entry(
                "resumed",
                format!("{failures} audit write(s) failed before this line; requests were refused meanwhile"),
            ),
        )?;
        tracing::info!(target: SCOPE_SERVER, "Audit log {} is writable again after {failures} failed write(s)", self.path.display());
        Ok(())
    }

    fn record_own(&self, outcome: &str, message: String) -> Result<(), AuditError> {
        let mut tail = self.lock();
        self.append(&mut tail, own_entry(outcome, message))
    }

    fn append(&self, tail: &mut Tail, entry: AuditEntry) -> Result<(), AuditError> {
        let line = Line {
            entry,
            seq: None,
            prev_lines: None,
            prev_sha256: None,
            prev_hmac: Some(tail.last.clone()),
        };
        let result = self.append_line(tail, &line);
        match &result {
            Ok(()) => {
                if tail.failures > 0 {
                    tail.failures = 0;
                    self.writable.store(true, Ordering::Release);
                    if let Some(health) = &self.health {
                        health.ready();
                    }
                    if let Some(metrics) = &self.metrics {
                        metrics.set_audit_log_writable(true);
                    }
                }
                if self.max_bytes > 0 && tail.good_len >= self.max_bytes {
                    // The record is safely written: a failed rotation only delays the rollover.
                    if let Err(e) = self.start_next_file(tail, true) {
                        tracing::error!(target: SCOPE_SERVER, "Cannot rotate the audit log: {e}");
                    }
                }
            }
            Err(e) => {
                tail.failures += 1;
                self.writable.store(false, Ordering::Release);
                tracing::error!(target: SCOPE_SERVER, "Cannot write the audit log; refusing requests until it can be written: {e}");
                if let Some(health) = &self.health {
                    health.not_ready();
                }
                if let Some(metrics) = &self.metrics {
                    metrics.audit_write_failed();
                    metrics.set_audit_log_writable(false);
                }
            }
        }
        result
    }

    /// Writes one line and its checkpoint, or neither: on any error the file is cut back to
    /// the last whole line (a partial write on a full disk would otherwise leave a fragment
    /// that the next line is glued to) and the old checkpoint is put back.
    fn append_line(&self, tail: &mut Tail, line: &Line) -> Result<(), AuditError> {
        let io_err = AuditError::io(&self.path);
        let text = serde_json::to_vec(line)
            .map_err(|e| io_err(io::Error::new(io::ErrorKind::InvalidData, e)))?;
        let link = self.key.mac(&text);
        let mut bytes = text;
        bytes.push(b'\n');
        // After an earlier failure whose cut-back failed too, the file may still end in a
        // fragment: cut it first.
        let cut_back = |tail: &Tail| tail.file.set_len(tail.good_len);
        if tail.failures > 0 {
            cut_back(tail).map_err(&io_err)?;
        }
        if let Err(e) = tail.file.write_all(&bytes) {
            let _ = cut_back(tail);
            return Err(io_err(e));
        }
        if let Err(e) = self.write_checkpoint(tail, tail.seq, tail.lines + 1, &link) {
            let _ = cut_back(tail);
            let _ = self.write_checkpoint(tail, tail.seq, tail.lines, &tail.last);
            return Err(e);
        }
        tail.good_len += bytes.len() as u64;
        tail.lines += 1;
        tail.last = link;
        Ok(())
    }

    /// Rolls over: the current file becomes `FILE.<seq>` (when `archive`), and a new file
    /// starts with a header pinning the old file's line count and last MAC. The new file is
    /// written under a temporary name first, so a failure leaves the current file in use.
    fn start_next_file(&self, tail: &mut Tail, archive: bool) -> Result<(), AuditError> {
        let next = tail.seq + 1;
        let archived = archive_path(&self.path, tail.seq);
        let header = Line {
            entry: own_entry(
                "rotated",
                format!(
                    "continues {} ({} lines)",
                    archived
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    tail.lines
                ),
            ),
            seq: Some(next),
            prev_lines: Some(tail.lines),
            prev_sha256: None,
            prev_hmac: Some(tail.last.clone()),
        };
        let io_err = AuditError::io(&self.path);
        let text = serde_json::to_vec(&header)
            .map_err(|e| io_err(io::Error::new(io::ErrorKind::InvalidData, e)))?;
        let link = self.key.mac(&text);
        let temp = rotation_temp_path(&self.path);
        let written = (|| {
            let mut file = OpenOptions::new()
                .append(true)
                .create_new(true)
                .mode(0o600)
                .open(&temp)?;
            file.write_all(&text)?;
            file.write_all(b"\n")?;
            Ok::<File, io::Error>(file)
        })();
        let file = match written {
            Ok(file) => file,
            Err(e) => {
                let _ = fs::remove_file(&temp);
                return Err(AuditError::io(&temp)(e));
            }
        };
        if archive {
            if archived.exists() {
                let _ = fs::remove_file(&temp);
                return Err(AuditError::Io {
                    path: archived,
                    source: io::Error::new(io::ErrorKind::AlreadyExists, "will not overwrite"),
                });
            }
            fs::rename(&self.path, &archived).map_err(AuditError::io(&archived))?;
        }
        if let Err(e) = fs::rename(&temp, &self.path) {
            if archive {
                let _ = fs::rename(&archived, &self.path);
            }
            let _ = fs::remove_file(&temp);
            return Err(io_err(e));
        }
        let len = text.len() as u64 + 1;
        tail.file = file;
        tail.seq = next;
        tail.lines = 1;
        tail.good_len = len;
        tail.last = link;
        self.write_checkpoint(tail, tail.seq, tail.lines, &tail.last.clone())?;
        tracing::info!(target: SCOPE_SERVER, "Audit log rotated: {} continues in {}", archived.display(), self.path.display());
        Ok(())
    }
}

fn own_entry(outcome: &str, message: String) -> AuditEntry {
    AuditEntry {
        time: crate::util::clock::now().to_string(),
        outcome: outcome.to_owned(),
        message,
        ..AuditEntry::default()
    }
}

/// A verified sequence of files.
#[derive(Debug)]
pub(crate) struct Verified {
    /// Number of request records (rotation headers not counted).
    pub records: u64,
    /// Sequence number of the first and last file.
    pub seq: (u64, u64),
    /// Whether the end was checked against a checkpoint.
    pub checkpointed: bool,
    /// Whether every line is keyed (false: some legacy unkeyed lines).
    pub legacy_lines: bool,
}

/// Checks the chain of `files` (oldest first: archives, then the live log), that each file
/// continues the one before it, and that the last one ends where `checkpoint` says.
pub(crate) fn verify(
    files: &[PathBuf],
    key: Option<&AuditKey>,
    checkpoint: Option<&Path>,
) -> Result<Verified, AuditError> {
    // The checkpoint's MAC first: a wrong key is then named as such, not as a broken line 2.
    let checkpointed = match (checkpoint, files.last()) {
        (Some(checkpoint), Some(last_path)) => {
            let Some(key) = key else {
                return Err(AuditError::Key {
                    path: PathBuf::from("(none given)"),
                    reason: "checking the checkpoint needs the audit key (--key), or pass --no-checkpoint".into(),
                });
            };
            if !checkpoint.exists() {
                return Err(AuditError::Checkpoint {
                    path: last_path.clone(),
                    reason: format!(
                        "the checkpoint {} is missing: deleted lines at the end cannot be ruled out (--no-checkpoint checks the links only)",
                        checkpoint.display()
                    ),
                });
            }
            Some(read_checkpoint(checkpoint, last_path, key)?)
        }
        _ => None,
    };
    let mut previous: Option<(&Path, Scan)> = None;
    let mut records = 0;
    let mut first_seq = 0;
    let mut legacy = false;
    for path in files {
        let file = scan(path, key)?;
        if file.fragment_len > 0 {
            return Err(AuditError::Malformed {
                path: path.clone(),
                line: usize::try_from(file.lines + 1).unwrap_or(usize::MAX),
                reason: format!(
                    "incomplete last line ({} bytes, no newline): a write was cut short",
                    file.fragment_len
                ),
            });
        }
        let seq_error = |reason: String| AuditError::Sequence {
            path: path.clone(),
            reason,
        };
        match &previous {
            None => first_seq = file.seq,
            Some((before, prev)) => {
                let Some((prev_lines, prev_link)) = &file.header else {
                    return Err(seq_error(format!(
                        "does not start with a rotation header, so it does not continue {}",
                        before.display()
                    )));
                };
                if file.seq != prev.seq + 1 {
                    return Err(seq_error(format!(
                        "is file number {} but follows {} (number {}): a file is missing or out of order",
                        file.seq,
                        before.display(),
                        prev.seq
                    )));
                }
                if *prev_lines != prev.lines {
                    return Err(seq_error(format!(
                        "line 1: the previous file had {prev_lines} lines but {} has {}: lines at its end were deleted",
                        before.display(),
                        prev.lines
                    )));
                }
                if *prev_link != prev.last {
                    return Err(seq_error(format!(
                        "line 1: does not carry the MAC of the last line of {} (line {}): that line was edited",
                        before.display(),
                        prev.lines
                    )));
                }
            }
        }
        records += file.records;
        legacy |= file.unkeyed;
        previous = Some((path, file));
    }
    let Some((last_path, last)) = previous else {
        return Err(AuditError::Sequence {
            path: PathBuf::new(),
            reason: "no file given".into(),
        });
    };
    if let Some(c) = &checkpointed {
        check_against(c, &last, last_path).map_err(|reason| AuditError::Checkpoint {
            path: last_path.to_path_buf(),
            reason,
        })?;
    }
    Ok(Verified {
        records,
        seq: (first_seq, last.seq),
        checkpointed: checkpointed.is_some(),
        legacy_lines: legacy,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(app: &str) -> AuditEntry {
        AuditEntry {
            time: "2026-11-28T21:00:00Z".into(),
            outcome: "issued".into(),
            app_id: app.into(),
            namespace: "default".into(),
            validator: "insecure".into(),
            peer: "127.0.0.1:5000".into(),
            spiffe_id: format!("spiffe://public/ns/default/{app}"),
            ..AuditEntry::default()
        }
    }

    fn options(dir: &Path, max_bytes: u64) -> AuditOptions {
        AuditOptions {
            key: dir.join("audit.key"),
            max_bytes,
            ..AuditOptions::default()
        }
    }

    fn write_log(path: &Path, n: usize) {
        let log = AuditLog::open(path, options(path.parent().unwrap(), 0)).unwrap();
        for i in 0..n {
            log.record(entry(&format!("app{i}"))).unwrap();
        }
    }

    fn check(path: &Path) -> Result<Verified, AuditError> {
        let key = AuditKey::load(&path.parent().unwrap().join("audit.key")).unwrap();
        verify(
            &[path.to_path_buf()],
            Some(&key),
            Some(&checkpoint_path(path)),
        )
    }

    #[test]
    fn chain_verifies_and_continues_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        write_log(&path, 3);
        write_log(&path, 2);
        assert_eq!(check(&path).unwrap().records, 5);
        use std::os::unix::fs::PermissionsExt as _;
        for file in [
            &path,
            &checkpoint_path(&path),
            &dir.path().join("audit.key"),
        ] {
            assert_eq!(
                fs::metadata(file).unwrap().permissions().mode() & 0o777,
                0o600,
                "{}",
                file.display()
            );
        }
        assert_eq!(
            fs::metadata(checkpoint_path(&path)).unwrap().len(),
            CHECKPOINT_LEN as u64
        );
    }

    #[test]
    fn edited_deleted_or_reordered_lines_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        write_log(&path, 5);
        let original = fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = original.lines().collect();
        let write = |lines: &[&str]| fs::write(&path, lines.join("\n") + "\n").unwrap();

        let mut edited = lines.clone();
        let tampered = lines[2].replace("app2", "evil");
        edited[2] = &tampered;
        write(&edited);
        let err = check(&path).unwrap_err();
        assert!(
            matches!(err, AuditError::BrokenLink { line: 4, .. }),
            "{err}"
        );

        let mut deleted = lines.clone();
        deleted.remove(1);
        write(&deleted);
        let err = check(&path).unwrap_err();
        assert!(err.to_string().contains("line 2: chain broken"), "{err}");

        let mut swapped = lines.clone();
        swapped.swap(1, 2);
        write(&swapped);
        let err = check(&path).unwrap_err();
        assert!(err.to_string().contains("line 2: chain broken"), "{err}");

        // The last line and the last two: the links still hold, the checkpoint does not.
        for cut in [1, 2] {
            write(&lines[..lines.len() - cut]);
            let err = check(&path).unwrap_err().to_string();
            assert!(
                err.contains(&format!("its last {cut} line(s) were deleted")),
                "{err}"
            );
            assert!(AuditLog::open(&path, options(dir.path(), 0)).is_err());
        }

        // The last line edited.
        let mut last = lines.clone();
        let tampered = lines[4].replace("app4", "evil");
        last[4] = &tampered;
        write(&last);
        let err = check(&path).unwrap_err().to_string();
        assert!(err.contains("line 5 of") && err.contains("edited"), "{err}");

        fs::write(&path, "not json\n").unwrap();
        assert!(matches!(
            check(&path).unwrap_err(),
            AuditError::Malformed { line: 1, .. }
        ));
        // A broken log is refused at start-up rather than extended.
        assert!(AuditLog::open(&path, options(dir.path(), 0)).is_err());
    }

    #[test]
    fn a_line_without_the_key_does_not_verify() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        write_log(&path, 2);
        // Rewriting the last line with a correct *unkeyed* hash, as the old chain allowed.
        let text = fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let mut forged: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        forged["app_id"] = "evil".into();
        forged["prev_hmac"] = sha256_hex(lines[0].as_bytes()).into();
        fs::write(&path, format!("{}\n{forged}\n", lines[0])).unwrap();
        let err = check(&path).unwrap_err();
        assert!(
            matches!(err, AuditError::BrokenLink { line: 2, .. }),
            "{err}"
        );
    }

    #[test]
    fn a_legacy_unkeyed_log_is_read_and_continued_with_keyed_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let mut text = String::new();
        let mut prev = GENESIS.to_owned();
        for i in 0..2 {
            let line = serde_json::to_string(&Line {
                entry: entry(&format!("old{i}")),
                seq: None,
                prev_lines: None,
                prev_sha256: Some(prev.clone()),
                prev_hmac: None,
            })
            .unwrap();
            prev = sha256_hex(line.as_bytes());
            text.push_str(&line);
            text.push('\n');
        }
        fs::write(&path, &text).unwrap();
        verify(std::slice::from_ref(&path), None, None).unwrap();
        write_log(&path, 2);
        assert_eq!(check(&path).unwrap().records, 4);
        // An unkeyed line may not follow keyed ones.
        let mut appended = fs::read_to_string(&path).unwrap();
        let last = appended.lines().last().unwrap().to_owned();
        appended.push_str(&format!(
            "{{\"time\":\"t\",\"outcome\":\"issued\",\"app_id\":\"x\",\"namespace\":\"\",\"trust_domain\":\"\",\"validator\":\"\",\"peer\":\"\",\"prev_sha256\":\"{}\"}}\n",
            sha256_hex(last.as_bytes())
        ));
        fs::write(&path, appended).unwrap();
        let err = check(&path).unwrap_err().to_string();
        assert!(err.contains("line 5") && err.contains("unkeyed"), "{err}");
    }

    #[test]
    fn an_incomplete_line_after_the_checkpoint_is_cut_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        write_log(&path, 2);
        // A crash mid-write: an incomplete line after the checkpointed ones.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"time\":\"2026-").unwrap();
        drop(f);
        assert!(check(&path).is_err());
        write_log(&path, 1);
        let verified = check(&path).unwrap();
        assert_eq!(verified.records, 4, "2 + recovered + 1");
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"outcome\":\"recovered\""), "{text}");
        assert!(
            text.contains("removed an incomplete last line (14 bytes"),
            "{text}"
        );
    }

    #[test]
    fn one_line_after_the_checkpoint_is_accepted_at_start_but_not_by_verify() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        write_log(&path, 2);
        let older = fs::read(checkpoint_path(&path)).unwrap();
        write_log(&path, 1);
        // A crash between the line and its checkpoint looks like a checkpoint one line old.
        fs::write(checkpoint_path(&path), &older).unwrap();
        let err = check(&path).unwrap_err().to_string();
        assert!(err.contains("replaced by an older one"), "{err}");
        write_log(&path, 0);
        check(&path).unwrap();
        // Three lines behind is no crash: refused at start too.
        write_log(&path, 2);
        fs::write(checkpoint_path(&path), &older).unwrap();
        let err = AuditLog::open(&path, options(dir.path(), 0))
            .unwrap_err()
            .to_string();
        assert!(err.contains("replaced by an older one"), "{err}");
    }

    #[test]
    fn missing_key_or_checkpoint_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        write_log(&path, 1);
        fs::rename(dir.path().join("audit.key"), dir.path().join("k")).unwrap();
        let err = AuditLog::open(&path, options(dir.path(), 0)).unwrap_err();
        assert!(err.to_string().contains("restore the key"), "{err}");
        fs::rename(dir.path().join("k"), dir.path().join("audit.key")).unwrap();
        fs::remove_file(checkpoint_path(&path)).unwrap();
        let err = AuditLog::open(&path, options(dir.path(), 0)).unwrap_err();
        assert!(err.to_string().contains("checkpoint"), "{err}");
        // The log deleted, its checkpoint kept.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        write_log(&path, 1);
        fs::remove_file(&path).unwrap();
        let err = AuditLog::open(&path, options(dir.path(), 0)).unwrap_err();
        assert!(err.to_string().contains("it was deleted"), "{err}");
    }

    #[test]
    fn a_symlink_at_the_key_path_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        std::os::unix::fs::symlink(&target, dir.path().join("audit.key")).unwrap();
        let err = AuditLog::open(&dir.path().join("audit.log"), options(dir.path(), 0))
            .unwrap_err()
            .to_string();
        assert!(err.contains("audit.key") && err.contains("exists"), "{err}");
        assert!(!target.exists(), "the key was written through the symlink");
    }

    #[test]
    fn rotation_links_files_and_verify_checks_the_sequence() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(&path, options(dir.path(), 600)).unwrap();
        for i in 0..6 {
            log.record(entry(&format!("app{i}"))).unwrap();
        }
        drop(log);
        let files = [archive_path(&path, 1), archive_path(&path, 2), path.clone()];
        for f in &files {
            assert!(f.exists(), "{}", f.display());
        }
        let key = AuditKey::load(&dir.path().join("audit.key")).unwrap();
        let cp = checkpoint_path(&path);
        let v = verify(&files, Some(&key), Some(&cp)).unwrap();
        assert_eq!(v.records, 6);
        assert_eq!(v.seq, (1, 3));
        // The later files alone verify (their start is not checked).
        verify(&files[1..], Some(&key), Some(&cp)).unwrap();
        let err = verify(&[files[0].clone(), files[2].clone()], Some(&key), Some(&cp))
            .unwrap_err()
            .to_string();
        assert!(err.contains("a file is missing or out of order"), "{err}");
        let err = verify(
            &[files[1].clone(), files[0].clone(), files[2].clone()],
            Some(&key),
            Some(&cp),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("does not start with a rotation header"),
            "{err}"
        );
        // The last line of a rotated file deleted.
        let text = fs::read_to_string(&files[0]).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        lines.pop();
        fs::write(&files[0], lines.join("\n") + "\n").unwrap();
        let err = verify(&files, Some(&key), Some(&cp))
            .unwrap_err()
            .to_string();
        assert!(err.contains("lines at its end were deleted"), "{err}");
        // Reopening continues the third file.
        let log = AuditLog::open(&path, options(dir.path(), 0)).unwrap();
        log.record(entry("later")).unwrap();
        verify(&files[1..], Some(&key), Some(&cp)).unwrap();
    }

    #[test]
    fn a_rotation_cut_between_its_renames_is_finished_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        write_log(&path, 2);
        // The live file renamed away, the new one not yet in place.
        fs::rename(&path, archive_path(&path, 1)).unwrap();
        write_log(&path, 1);
        let key = AuditKey::load(&dir.path().join("audit.key")).unwrap();
        let v = verify(
            &[archive_path(&path, 1), path.clone()],
            Some(&key),
            Some(&checkpoint_path(&path)),
        )
        .unwrap();
        assert_eq!((v.records, v.seq), (3, (1, 2)));
    }
}

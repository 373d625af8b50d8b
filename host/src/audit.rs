//! The audit log (`--audit-log FILE`): one JSON line per `SignCertificate`, issued or refused,
//! written before the response leaves. Lines are hash-chained: each carries the SHA-256 of the
//! line before it, so `warden audit verify` finds the first edited, inserted or deleted line.
//! Tokens and keys are never written.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead as _, BufReader, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::digest::sha256_hex;

/// `prev_sha256` of the first line.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audited request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// RFC 3339 UTC.
    pub time: String,
    /// `issued` or `refused`.
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
    /// gRPC message (refused only).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

#[derive(Serialize, Deserialize)]
struct Line {
    #[serde(flatten)]
    entry: AuditEntry,
    prev_sha256: String,
}

/// An open audit log.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    inner: Mutex<Tail>,
}

#[derive(Debug)]
struct Tail {
    file: File,
    last_hash: String,
}

/// Why the audit log cannot be used or does not verify.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
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
    /// A line's `prev_sha256` is not the hash of the line before it.
    #[error(
        "audit log {}: line {line}: chain broken (prev_sha256 is not the SHA-256 of line {}): line {} was edited, or lines were inserted or deleted here",
        path.display(), line.saturating_sub(1), line.saturating_sub(1)
    )]
    BrokenLink {
        /// The file.
        path: PathBuf,
        /// 1-based line number of the first line whose link does not hold.
        line: usize,
    },
}

impl AuditLog {
    /// Opens (or creates, 0600) the log for appending; an existing log is verified first, so
    /// new lines continue an intact chain.
    pub fn open(path: &Path) -> Result<Self, AuditError> {
        let io_err = |source| AuditError::Io {
            path: path.to_path_buf(),
            source,
        };
        let last_hash = if path.exists() {
            verify(path)?.last_hash
        } else {
            GENESIS.to_owned()
        };
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .map_err(io_err)?;
        Ok(Self {
            path: path.to_path_buf(),
            inner: Mutex::new(Tail { file, last_hash }),
        })
    }

    /// Appends one record and flushes it to the OS before returning.
    pub fn record(&self, entry: AuditEntry) -> Result<(), AuditError> {
        let io_err = |source| AuditError::Io {
            path: self.path.clone(),
            source,
        };
        // A poisoned lock only means another writer panicked between lines; the chain state
        // it guards is still a whole line.
        let mut tail = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let line = Line {
            entry,
            prev_sha256: tail.last_hash.clone(),
        };
        let text = serde_json::to_string(&line)
            .map_err(|e| io_err(io::Error::new(io::ErrorKind::InvalidData, e)))?;
        let mut bytes = text.into_bytes();
        let hash = sha256_hex(&bytes);
        bytes.push(b'\n');
        tail.file
            .write_all(&bytes)
            .and_then(|()| tail.file.flush())
            .map_err(io_err)?;
        tail.last_hash = hash;
        Ok(())
    }
}

/// A verified log.
#[derive(Debug)]
pub struct Verified {
    /// Number of records.
    pub lines: usize,
    /// SHA-256 of the last line (what the next line must carry).
    pub last_hash: String,
}

/// Checks every link of the chain; the error names the first line that breaks it.
pub fn verify(path: &Path) -> Result<Verified, AuditError> {
    let io_err = |source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    };
    let reader = BufReader::new(File::open(path).map_err(io_err)?);
    let mut expected = GENESIS.to_owned();
    let mut lines = 0;
    for (index, text) in reader.lines().enumerate() {
        let text = text.map_err(io_err)?;
        let number = index + 1;
        let line: Line = serde_json::from_str(&text).map_err(|e| AuditError::Malformed {
            path: path.to_path_buf(),
            line: number,
            reason: e.to_string(),
        })?;
        if line.prev_sha256 != expected {
            return Err(AuditError::BrokenLink {
                path: path.to_path_buf(),
                line: number,
            });
        }
        expected = sha256_hex(text.as_bytes());
        lines = number;
    }
    Ok(Verified {
        lines,
        last_hash: expected,
    })
}

/// `warden audit ...`
#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain of an audit log; names the first broken line.
    Verify {
        /// The audit log.
        file: PathBuf,
    },
}

/// Runs `warden audit verify`.
pub fn run(command: AuditCommand) -> Result<(), AuditError> {
    match command {
        AuditCommand::Verify { file } => {
            let verified = verify(&file)?;
            println!(
                "{}: {} records, chain intact",
                file.display(),
                verified.lines
            );
            Ok(())
        }
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
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

    fn write_log(path: &Path, n: usize) {
        let log = AuditLog::open(path).unwrap();
        for i in 0..n {
            log.record(entry(&format!("app{i}"))).unwrap();
        }
    }

    #[test]
    fn chain_verifies_and_continues_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        write_log(&path, 3);
        write_log(&path, 2);
        assert_eq!(verify(&path).unwrap().lines, 5);
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn edited_or_deleted_lines_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        write_log(&path, 5);
        let original = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = original.lines().collect();

        let mut edited = lines.clone();
        let tampered = lines[2].replace("app2", "evil");
        edited[2] = &tampered;
        std::fs::write(&path, edited.join("\n") + "\n").unwrap();
        match verify(&path).unwrap_err() {
            AuditError::BrokenLink { line, .. } => assert_eq!(line, 4),
            other => panic!("{other}"),
        }

        let mut deleted = lines.clone();
        deleted.remove(1);
        std::fs::write(&path, deleted.join("\n") + "\n").unwrap();
        let err = verify(&path).unwrap_err();
        assert!(
            matches!(err, AuditError::BrokenLink { line: 2, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("line 2: chain broken"), "{err}");

        std::fs::write(&path, "not json\n").unwrap();
        assert!(matches!(
            verify(&path).unwrap_err(),
            AuditError::Malformed { line: 1, .. }
        ));
        // A broken log is refused at start-up rather than extended.
        assert!(AuditLog::open(&path).is_err());
    }
}

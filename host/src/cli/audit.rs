//! `warden audit verify`: check an audit log written with `--audit-log`.

use std::path::PathBuf;

use crate::ca::audit::{AuditError, AuditKey, checkpoint_path, verify};

/// `warden audit ...`
#[derive(Debug, clap::Subcommand)]
pub(crate) enum AuditCommand {
    /// Check an audit log: the MAC chain of every file, that each file continues the one before
    /// it, and that the last file ends where its checkpoint says; names the first broken line.
    Verify {
        /// The chain key (the server's `--audit-key`, by default `audit.key` in its
        /// credentials directory). Needed for every log written by this version.
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        /// The checkpoint of the last file (default: `<last FILE>.checkpoint`).
        #[arg(long, value_name = "FILE", conflicts_with = "no_checkpoint")]
        checkpoint: Option<PathBuf>,
        /// Check the links only: lines deleted at the end of the last file are then not found.
        #[arg(long)]
        no_checkpoint: bool,
        /// The files, oldest first: rotated files (`FILE.1`, `FILE.2`, ...) then the live log.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
}

/// Runs `warden audit verify`.
pub(crate) fn run(command: AuditCommand) -> Result<(), AuditError> {
    match command {
        AuditCommand::Verify {
            key,
            checkpoint,
            no_checkpoint,
            files,
        } => {
            let key = key.as_deref().map(AuditKey::load).transpose()?;
            let checkpoint = match (no_checkpoint, checkpoint, files.last()) {
                (true, _, _) => None,
                (false, Some(c), _) => Some(c),
                (false, None, Some(last)) => {
                    let default = checkpoint_path(last);
                    // A log only ever written by an older version has no key and no
                    // checkpoint: its links are all there is to check.
                    (key.is_some() || default.exists()).then_some(default)
                }
                (false, None, None) => None,
            };
            let verified = verify(&files, key.as_ref(), checkpoint.as_deref())?;
            let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
            let mut summary = format!(
                "{}: {} records, chain intact",
                names.join(", "),
                verified.records
            );
            if verified.seq.0 > 1 {
                summary.push_str(&format!(
                    "; starts at file number {} (earlier files not checked)",
                    verified.seq.0
                ));
            }
            summary.push_str(if verified.checkpointed {
                "; ends where its checkpoint says"
            } else {
                "; NOT checked against a checkpoint: deleted last lines would not be found"
            });
            if verified.legacy_lines {
                summary.push_str(
                    "; has unkeyed lines from an older version (anyone could have rewritten those)",
                );
            }
            println!("{summary}");
            Ok(())
        }
    }
}

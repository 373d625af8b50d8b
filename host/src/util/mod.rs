//! Small pieces every other module uses: the clock, crash-safe file writes and digests.
pub mod clock;
pub mod digest;
pub mod files;

/// How reports are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// For people.
    Text,
    /// One JSON document.
    Json,
}
pub mod watch;

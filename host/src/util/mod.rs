//! Small pieces every other module uses: the clock, crash-safe file writes and digests.
pub(crate) mod clock;
pub(crate) mod digest;
pub(crate) mod files;

/// How reports are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum OutputFormat {
    /// For people.
    Text,
    /// One JSON document.
    Json,
}
pub(crate) mod watch;

//! `warden root rotate prepare|activate|finish`: root rotation with overlapping trust anchors.

use crate::rotation::root::{
    ActivateArgs, FinishArgs, PrepareArgs, RootRotationError, run_activate, run_finish, run_prepare,
};

/// `warden root ...`
#[derive(Debug, clap::Subcommand)]
pub(crate) enum RootCommand {
    /// Replace the root without downtime, in three phases: prepare, activate, finish.
    #[command(subcommand)]
    Rotate(RotateCommand),
}

/// `warden root rotate ...`
#[derive(Debug, clap::Subcommand)]
pub(crate) enum RotateCommand {
    /// Create the new root key and certificate and publish old + new roots in ca.crt.
    Prepare(PrepareArgs),
    /// Switch issuance to a new issuer signed by the new root.
    Activate(ActivateArgs),
    /// Remove the old root(s) from ca.crt once no leaf of the old issuer can still be valid.
    Finish(FinishArgs),
}

/// Runs `warden root ...`.
pub(crate) fn run(command: RootCommand) -> Result<(), RootRotationError> {
    let RootCommand::Rotate(step) = command;
    match step {
        RotateCommand::Prepare(args) => run_prepare(args),
        RotateCommand::Activate(args) => run_activate(args),
        RotateCommand::Finish(args) => run_finish(args),
    }
}

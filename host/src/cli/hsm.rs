//! `warden hsm init-root`: make the root key in a PKCS#11 token and its self-signed root.

use crate::rotation::issuer::{InitRootArgs, RotationError, run_init_root};

/// `warden hsm ...`
#[derive(Debug, clap::Subcommand)]
pub(crate) enum HsmCommand {
    /// Create the root key pair inside the HSM, a self-signed root (ca.crt) and a first issuer
    /// (issuer.crt, issuer.key: a software key signed by the HSM root).
    InitRoot(InitRootArgs),
}

/// Runs `warden hsm ...`.
pub(crate) fn run(command: HsmCommand) -> Result<(), RotationError> {
    let HsmCommand::InitRoot(args) = command;
    run_init_root(args)
}

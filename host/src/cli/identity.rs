//! `warden identity fetch`: act as a workload and get an X509-SVID from a running CA.

use clap::Subcommand;

use crate::client::{FetchArgs, run_fetch};

/// `warden identity ...`
#[derive(Debug, Subcommand)]
pub(crate) enum IdentityCommand {
    /// Make a key and CSR, request a certificate, verify it and write key.pem, cert.pem, ca.pem.
    Fetch(FetchArgs),
}

/// Runs `warden identity ...`.
pub(crate) async fn run(command: IdentityCommand) -> anyhow::Result<()> {
    let IdentityCommand::Fetch(args) = command;
    Ok(run_fetch(args).await?)
}

//! `warden edge status|provision|issue`: drive an edge sentry over a serial line.

use crate::edge::{
    EdgeError, IssueArgs, ProvisionArgs, StatusArgs, run_issue, run_provision, run_status,
};

/// `warden edge ...`
#[derive(Debug, clap::Subcommand)]
pub(crate) enum EdgeCommand {
    /// Show the device's state: provisioned or not, its issuer's validity, rotation, counters.
    Status(StatusArgs),
    /// Provision the device, or rotate its issuer when due: get the CSR of the issuer key the
    /// device makes, sign it with the root (as `warden issuer sign-csr` does) and install the
    /// certificate. Does nothing when the device serves and no rotation is due.
    Provision(ProvisionArgs),
    /// Have the device sign a workload CSR, as SignCertificate does; prints the chain.
    Issue(IssueArgs),
}

/// Runs one `warden edge` command.
pub(crate) fn run(command: EdgeCommand) -> Result<(), EdgeError> {
    match command {
        EdgeCommand::Status(args) => run_status(args),
        EdgeCommand::Provision(args) => run_provision(args),
        EdgeCommand::Issue(args) => run_issue(args),
    }
}

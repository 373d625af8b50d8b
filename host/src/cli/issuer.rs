//! `warden issuer rotate|sign-csr`: a new issuer for this CA, or an issuer CSR signed for
//! another one (an edge device).

use crate::rotation::issuer::{RotateArgs, RotationError, run_rotate};
use crate::rotation::sign_csr::{self, SignCsrArgs};

/// `warden issuer ...`
#[derive(Debug, clap::Subcommand)]
pub(crate) enum IssuerCommand {
    /// Make a new issuer key and certificate signed by the root (in the HSM with --hsm-*, or
    /// --root-key FILE) and atomically replace issuer.crt / issuer.key; a running server
    /// hot-reloads them.
    Rotate(RotateArgs),
    /// Sign an issuer CSR (a key made elsewhere, such as on an edge device) with the root (in
    /// the HSM with --hsm-*, or --root-key FILE): an issuer certificate with the issuer profile
    /// (CA, pathlen 0, Sentry's SPIFFE ID, NotAfter capped at the root's), written to --out.
    SignCsr(SignCsrArgs),
}

/// Runs `warden issuer ...`.
pub(crate) fn run(command: IssuerCommand) -> Result<(), RotationError> {
    match command {
        IssuerCommand::Rotate(args) => run_rotate(args),
        IssuerCommand::SignCsr(args) => sign_csr::run(args),
    }
}

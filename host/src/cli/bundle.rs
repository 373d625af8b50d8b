//! `warden bundle`: print the trust anchors as a SPIFFE trust bundle (JWK Set).

use crate::server::spiffe_bundle::{DEFAULT_REFRESH_HINT_SECS, bundle_json, sequence};

/// `warden bundle`
#[derive(Debug, clap::Args)]
pub(crate) struct BundleArgs {
    #[command(flatten)]
    credentials: crate::credentials::CredentialsArg,
    /// `spiffe_refresh_hint` in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_REFRESH_HINT_SECS)]
    refresh_hint: u64,
}

/// Prints the bundle of the anchors in `ca.crt`.
pub(crate) fn run(args: BundleArgs) -> anyhow::Result<()> {
    let dir = &args.credentials.issuer_credentials;
    let ca = dir.join(warden_core::bundle::TRUST_ANCHORS_FILENAME);
    let text =
        std::fs::read(&ca).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", ca.display()))?;
    let anchors = warden_core::bundle::parse_certificates(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", ca.display()))?;
    let sequence = sequence(&ca)?;
    println!("{}", bundle_json(&anchors, sequence, args.refresh_hint)?);
    Ok(())
}

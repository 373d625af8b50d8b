//! The credential set on disk: loading or generating it at start, reloading it when its files
//! change, and the server's own serving certificate issued from it.
pub(crate) mod reload;
pub(crate) mod serving_cert;
pub(crate) mod store;

use std::path::{Path, PathBuf};

use clap::Args;

use store::CredentialPaths;

/// Where Dapr mounts the credentials in a pod, and every command's default directory.
pub(crate) const DEFAULT_DIR: &str = "/var/run/secrets/dapr.io/credentials";

/// Name of the state file inside the credential directory.
pub(crate) const STATE_FILENAME: &str = "root-rotation.json";

/// The state file's path in `dir`.
pub(crate) fn state_path(dir: &Path) -> PathBuf {
    dir.join(STATE_FILENAME)
}

/// The credential directory, as every lifecycle command takes it.
#[derive(Clone, Debug, Args)]
pub(crate) struct CredentialsArg {
    /// Directory holding ca.crt, issuer.crt and issuer.key.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_DIR)]
    pub issuer_credentials: PathBuf,
}

impl CredentialsArg {
    pub(crate) fn paths(&self) -> CredentialPaths {
        CredentialPaths::in_dir(&self.issuer_credentials)
    }
}

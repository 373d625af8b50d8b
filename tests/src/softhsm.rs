//! A SoftHSM2 token for the tests that keep the root key in an HSM (`server::hsm`,
//! `edge_device`), and the `warden` commands that use it.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{run, tempdir};
use crate::server::{Options, warden_binary};

/// The SoftHSM2 PKCS#11 module (Debian's path).
pub const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// The label of the token [`Token::init`] initialises.
pub const TOKEN: &str = "warden-e2e";
/// The label of the root key in the token.
pub const KEY: &str = "warden-root";
/// The token's user PIN.
pub const PIN: &str = "e2e-user-pin";

/// A SoftHSM2 token in its own directory, reached through `SOFTHSM2_CONF`.
#[derive(Debug)]
pub struct Token {
    /// The directory holding the configuration and the token files.
    pub dir: tempfile::TempDir,
    /// The `softhsm2.conf` to put in `SOFTHSM2_CONF`.
    pub conf: PathBuf,
}

impl Token {
    /// A fresh token labelled [`TOKEN`] with user PIN [`PIN`], in a new temporary directory.
    pub fn init() -> Self {
        let dir = tempdir();
        let tokens = dir.path().join("tokens");
        std::fs::create_dir_all(&tokens).unwrap();
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .unwrap();
        let mut init = Command::new("softhsm2-util");
        init.args(["--init-token", "--free", "--label", TOKEN])
            .args(["--pin", PIN, "--so-pin", "e2e-so-pin"])
            .env("SOFTHSM2_CONF", &conf);
        run(init);
        Self { dir, conf }
    }

    /// The token directory (`directories.tokendir`).
    pub fn tokens(&self) -> PathBuf {
        self.dir.path().join("tokens")
    }

    /// The `--hsm-module`, `--hsm-token-label` and `--hsm-key-label` flags for this token's key.
    pub fn hsm_flags() -> Vec<String> {
        [
            "--hsm-module",
            MODULE,
            "--hsm-token-label",
            TOKEN,
            "--hsm-key-label",
            KEY,
        ]
        .map(String::from)
        .to_vec()
    }

    /// `warden <args>` with this token and the PIN in the environment.
    pub fn warden(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(warden_binary());
        cmd.args(args)
            .env("SOFTHSM2_CONF", &self.conf)
            .env("WARDEN_HSM_PIN", PIN);
        cmd
    }

    /// `warden hsm init-root` for trust domain `public`, writing its files into `creds`.
    pub fn init_root(&self, creds: &Path) {
        let mut cmd = self.warden(&["hsm", "init-root", "--trust-domain", "public"]);
        cmd.args(Self::hsm_flags())
            .arg("--issuer-credentials")
            .arg(creds);
        run(cmd);
    }

    /// `warden issuer rotate` in `creds` with the HSM root and `extra` flags.
    pub fn rotate(&self, creds: &Path, extra: &[&str]) {
        let mut cmd = self.warden(&["issuer", "rotate"]);
        cmd.args(Self::hsm_flags())
            .arg("--issuer-credentials")
            .arg(creds)
            .args(extra);
        run(cmd);
    }

    /// Server [`Options`] that use this token's root key.
    pub fn server_options(&self) -> Options {
        Options::new()
            .args(Self::hsm_flags())
            .env("SOFTHSM2_CONF", self.conf.to_str().unwrap())
            .env("WARDEN_HSM_PIN", PIN)
    }
}

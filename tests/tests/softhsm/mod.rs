//! A SoftHSM2 token for the tests that keep the root key in an HSM (`server_hsm`,
//! `edge_device`), and the `warden` commands that use it.
//!
//! Test crates that include this module also declare `mod common;`, `mod server_support;` and
//! `mod support;`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{run, tempdir};
use crate::server_support::{Options, WARDEN};

pub(crate) const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
pub(crate) const TOKEN: &str = "warden-e2e";
pub(crate) const KEY: &str = "warden-root";
pub(crate) const PIN: &str = "e2e-user-pin";

/// A SoftHSM2 token in its own directory, reached through `SOFTHSM2_CONF`.
pub(crate) struct Token {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) conf: PathBuf,
}

impl Token {
    pub(crate) fn new() -> Self {
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

    pub(crate) fn tokens(&self) -> PathBuf {
        self.dir.path().join("tokens")
    }

    pub(crate) fn hsm_flags() -> Vec<String> {
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
    pub(crate) fn warden(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(WARDEN);
        cmd.args(args)
            .env("SOFTHSM2_CONF", &self.conf)
            .env("WARDEN_HSM_PIN", PIN);
        cmd
    }

    pub(crate) fn init_root(&self, creds: &Path) {
        let mut cmd = self.warden(&["hsm", "init-root", "--trust-domain", "public"]);
        cmd.args(Self::hsm_flags())
            .arg("--issuer-credentials")
            .arg(creds);
        run(cmd);
    }

    pub(crate) fn rotate(&self, creds: &Path, extra: &[&str]) {
        let mut cmd = self.warden(&["issuer", "rotate"]);
        cmd.args(Self::hsm_flags())
            .arg("--issuer-credentials")
            .arg(creds)
            .args(extra);
        run(cmd);
    }

    pub(crate) fn server_options(&self) -> Options {
        Options::new()
            .args(Self::hsm_flags())
            .env("SOFTHSM2_CONF", self.conf.to_str().unwrap())
            .env("WARDEN_HSM_PIN", PIN)
    }
}

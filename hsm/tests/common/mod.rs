//! SoftHSM2 tokens for tests. `SOFTHSM2_CONF` is read by the module at `C_Initialize` and the
//! environment cannot be changed safely inside a running test process, so every test re-runs
//! itself in a child process with its own token directory and `SOFTHSM2_CONF`.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::Command;

use warden_hsm::HsmConfig;
use zeroize::Zeroizing;

pub const TOKEN: &str = "warden-test";
pub const PIN: &str = "1234-user";
pub const SO_PIN: &str = "5678-so";
const CHILD: &str = "WARDEN_HSM_TEST_CHILD";

/// The module under test: `WARDEN_TEST_PKCS11_MODULE`, else Debian's SoftHSM2.
pub fn module() -> PathBuf {
    std::env::var_os("WARDEN_TEST_PKCS11_MODULE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(warden_hsm::SOFTHSM2_MODULE))
}

pub fn config(key_label: &str) -> HsmConfig {
    HsmConfig {
        module: module(),
        token_label: TOKEN.to_owned(),
        key_label: key_label.to_owned(),
        pin: Zeroizing::new(PIN.to_owned()),
    }
}

/// Writes a SoftHSM2 configuration with its token directory under `dir` and initialises a token
/// labelled [`TOKEN`]. Returns the configuration file.
pub fn init_token(dir: &Path) -> PathBuf {
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    let out = Command::new("softhsm2-util")
        .args([
            "--init-token",
            "--free",
            "--label",
            TOKEN,
            "--pin",
            PIN,
            "--so-pin",
            SO_PIN,
        ])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .expect("softhsm2-util (apt-get install softhsm2)");
    assert!(
        out.status.success(),
        "softhsm2-util --init-token failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    conf
}

/// Runs `body` in a child process of this test binary that has a fresh token. `name` is the
/// test function's name.
pub fn isolated(name: &str, body: impl FnOnce(&Path)) {
    if let Some(dir) = std::env::var_os(CHILD) {
        body(Path::new(&dir));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let conf = init_token(dir.path());
    let out = Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env("SOFTHSM2_CONF", &conf)
        .env(CHILD, dir.path())
        .env_remove(warden_hsm::PIN_ENV)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child test {name} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

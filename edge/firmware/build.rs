//! Puts `memory.x` where cortex-m-rt's `link.x` finds it, for the firmware target only: a host
//! build (`cargo clippy --workspace`) never links the firmware and needs no linker script.

use std::env;
use std::fs;
use std::io;
use std::path::PathBuf;

fn main() -> io::Result<()> {
    println!("cargo:rerun-if-changed=memory.x");
    println!("cargo:rerun-if-changed=build.rs");
    if !env::var("TARGET").is_ok_and(|t| t.starts_with("thumbv")) {
        return Ok(());
    }
    let out = env::var_os("OUT_DIR")
        .map(PathBuf::from)
        .ok_or_else(|| io::Error::other("OUT_DIR is not set"))?;
    fs::write(out.join("memory.x"), include_bytes!("memory.x"))?;
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rustc-link-arg-bins=-Tlink.x");
    Ok(())
}

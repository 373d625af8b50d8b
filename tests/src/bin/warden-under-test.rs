//! The `warden` server under another name, so the `server_*` integration tests of this package
//! can start it as a real process through `env!("CARGO_BIN_EXE_warden-under-test")` (a binary
//! named `warden` here would collide with `warden-host`'s).
fn main() -> std::process::ExitCode {
    warden_host::cli::main()
}

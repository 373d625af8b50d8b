//! The `warden` server under another name, so the integration tests of this package can start
//! it as a real process (`warden_tests::server::warden_binary` finds it; a binary named `warden`
//! here would collide with `warden-host`'s).
fn main() -> std::process::ExitCode {
    warden_host::main()
}

//! `warden`: see the library's `cli` module.
fn main() -> std::process::ExitCode {
    warden_host::main()
}

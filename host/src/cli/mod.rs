//! Command line: `warden` (serve, with Sentry's flags) and its subcommands.

pub(crate) mod audit;
pub(crate) mod bundle;
pub(crate) mod edge;
pub(crate) mod hsm;
pub(crate) mod identity;
pub(crate) mod issuer;
pub(crate) mod mtls;
pub(crate) mod root;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::observability::{self, LogLevel, LogOptions, SCOPE_SENTRY};
use crate::server::{self, ServeArgs, VERSION};

/// A SPIFFE certificate authority, wire-compatible with Dapr Sentry.
///
/// With no subcommand, serves `dapr.proto.sentry.v1.CA/SignCertificate` on --port (TLS, ALPN h2),
/// generating a self-signed root and issuer in --issuer-credentials on first start.
#[derive(Debug, Parser)]
#[command(name = "warden", version, args_conflicts_with_subcommands = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Act as a workload: get an X509-SVID from a running CA, as daprd does.
    #[command(subcommand)]
    Identity(identity::IdentityCommand),
    /// Manage the root key held in a PKCS#11 HSM.
    #[command(subcommand)]
    Hsm(hsm::HsmCommand),
    /// Manage the issuer (intermediate) certificate.
    #[command(subcommand)]
    Issuer(issuer::IssuerCommand),
    /// The Dapr CLI's certificate commands: renew-certificate, expiry, export.
    #[command(subcommand)]
    Mtls(mtls::MtlsCommand),
    /// Show the credential set: subjects, fingerprints, validity, warnings.
    Status(mtls::StatusArgs),
    /// Root certificate rotation without downtime (prepare, activate, finish).
    #[command(subcommand)]
    Root(root::RootCommand),
    /// Print the trust anchors as a SPIFFE trust bundle (JWK Set).
    Bundle(bundle::BundleArgs),
    /// Talk to an edge sentry (a microcontroller running the warden-edge firmware) over a
    /// serial line or a UNIX socket: status, provision, issue.
    #[command(subcommand)]
    Edge(edge::EdgeCommand),
    /// Check an audit log written with --audit-log.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
}

/// Go's flag package accepts `-port 50001` for `--port 50001`, and Sentry's manifests and
/// scripts use both spellings, so single-dash long flags are rewritten before clap sees them.
///
/// Only flags are rewritten, never values: the flags and which of them take a value come from
/// clap's own definition of [`Cli`] (walking into subcommands as they are named). As in Go, the
/// argument after a flag that takes a value is that value whatever it looks like, so
/// `--trust-domain -x` becomes `--trust-domain=-x` (clap would otherwise read `-x` as a flag).
/// A single-dash word that is not one of the command's long flags and starts with one of its
/// short flags (`-ojson`) is left to clap; after `--` nothing is touched.
pub(crate) fn normalize_go_flags(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    use clap::CommandFactory as _;
    let mut command = Cli::command();
    command.build();
    normalize_for(&command, args)
}

fn normalize_for(root: &clap::Command, args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut args = args.into_iter();
    let mut out: Vec<OsString> = args.next().into_iter().collect();
    let mut command = root;
    // The long flag whose value is the next argument, if any.
    let mut pending: Option<String> = None;
    let mut short_pending = false;
    let mut passthrough = false;
    for arg in args {
        if passthrough {
            out.push(arg);
            continue;
        }
        if let Some(flag) = pending.take() {
            if arg.as_encoded_bytes().starts_with(b"-") {
                // Joined, so clap cannot take the value for a flag.
                out.pop();
                let mut joined = OsString::from(flag);
                joined.push("=");
                joined.push(&arg);
                out.push(joined);
            } else {
                out.push(arg);
            }
            continue;
        }
        if std::mem::take(&mut short_pending) {
            out.push(arg);
            continue;
        }
        let Some(text) = arg.to_str() else {
            out.push(arg);
            continue;
        };
        if text == "--" {
            passthrough = true;
            out.push(arg);
            continue;
        }
        if let Some(long) = text.strip_prefix("--") {
            if !long.contains('=') && takes_value(command, long) {
                pending = Some(text.to_owned());
            }
            out.push(arg);
            continue;
        }
        if let Some(rest) = text.strip_prefix('-') {
            let (name, value) = match rest.split_once('=') {
                Some((name, _)) => (name, true),
                None => (rest, false),
            };
            let mut chars = rest.chars();
            let first = chars.next();
            if first.is_some_and(|c| c.is_ascii_alphabetic()) && chars.next().is_some() {
                let known_long = find_long(command, name).is_some();
                let short_start = first.is_some_and(|c| is_short(command, c));
                if known_long || !short_start {
                    let long = format!("-{text}");
                    if !value && takes_value(command, name) {
                        pending = Some(long.clone());
                    }
                    out.push(OsString::from(long));
                    continue;
                }
                // Short flags, possibly clustered with a value (`-ojson`): clap's business.
                out.push(arg);
                continue;
            }
            if let Some(c) = first
                && rest.len() == 1
            {
                short_pending = command
                    .get_arguments()
                    .find(|a| a.get_short() == Some(c))
                    .is_some_and(arg_takes_value);
            }
            out.push(arg);
            continue;
        }
        // A subcommand name, or a positional argument.
        if let Some(sub) = command.find_subcommand(text) {
            command = sub;
        }
        out.push(arg);
    }
    out
}

fn find_long<'a>(command: &'a clap::Command, name: &str) -> Option<&'a clap::Arg> {
    command.get_arguments().find(|a| {
        a.get_long() == Some(name)
            || a.get_all_aliases()
                .is_some_and(|aliases| aliases.contains(&name))
    })
}

fn is_short(command: &clap::Command, c: char) -> bool {
    command.get_arguments().any(|a| {
        a.get_short() == Some(c)
            || a.get_all_short_aliases()
                .is_some_and(|aliases| aliases.contains(&c))
    })
}

/// A flag that needs a value (`--port 1`), as opposed to a switch or a flag whose value is
/// optional (`--log-as-json`, `--enable-metrics[=false]`).
fn takes_value(command: &clap::Command, name: &str) -> bool {
    find_long(command, name).is_some_and(arg_takes_value)
}

fn arg_takes_value(arg: &clap::Arg) -> bool {
    arg.get_action().takes_values() && arg.get_num_args().is_some_and(|n| n.min_values() > 0)
}

/// The binary's entry point.
pub fn main() -> ExitCode {
    let cli = Cli::parse_from(normalize_go_flags(std::env::args_os()));
    let log = match &cli.command {
        None => LogOptions {
            level: cli.serve.log_level,
            json: cli.serve.log_as_json,
            version: VERSION,
        },
        Some(_) => LogOptions {
            level: LogLevel::Info,
            json: false,
            version: VERSION,
        },
    };
    if let Err(e) = observability::init_logging(&log) {
        eprintln!("warden: cannot set up logging: {e}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(target: SCOPE_SENTRY, fatal = true, "cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            None => server::run(cli.serve).await.map_err(anyhow::Error::from),
            Some(Command::Identity(command)) => identity::run(command).await,
            Some(Command::Hsm(command)) => hsm::run(command).map_err(anyhow::Error::from),
            Some(Command::Issuer(command)) => issuer::run(command).map_err(anyhow::Error::from),
            Some(Command::Mtls(command)) => mtls::run(command).map_err(anyhow::Error::from),
            Some(Command::Status(args)) => mtls::run_status(args).map_err(anyhow::Error::from),
            Some(Command::Root(command)) => root::run(command).map_err(anyhow::Error::from),
            Some(Command::Bundle(args)) => bundle::run(args),
            Some(Command::Edge(command)) => edge::run(command).map_err(anyhow::Error::from),
            Some(Command::Audit(command)) => audit::run(command).map_err(anyhow::Error::from),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(target: SCOPE_SENTRY, fatal = true, "{}", error_text(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line. Most of our error types already put their cause in
/// their own message (thiserror's `{source}`); anyhow's `{:#}` would then repeat each cause
/// once per level, so a cause whose text is already there is not appended again.
fn error_text(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn error_text_names_each_cause_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("cannot write /x/.issuer.key.tmp-1: {0}")]
        struct Write(#[source] std::io::Error);
        #[derive(Debug, thiserror::Error)]
        #[error("cannot store the generated CA: {0}")]
        struct Store(#[source] Write);
        let full = std::io::Error::from(std::io::ErrorKind::StorageFull);
        let cause = full.to_string();
        let error = anyhow::Error::new(Store(Write(full))).context("first start");
        let text = error_text(&error);
        assert_eq!(
            text,
            format!(
                "first start: cannot store the generated CA: cannot write /x/.issuer.key.tmp-1: {cause}"
            )
        );
        assert_eq!(text.matches(&cause).count(), 1);
        // A cause not already in the message is still shown.
        let plain = anyhow::anyhow!("disk").context("cannot start");
        assert_eq!(error_text(&plain), "cannot start: disk");
    }

    #[test]
    fn go_single_dash_flags_become_long_flags_and_values_are_never_rewritten() {
        let table: &[(&[&str], &[&str])] = &[
            // The Go spelling, a double-dash flag, a short flag, and `--` ends the flags.
            (
                &["-port", "1", "--trust-domain", "x", "-v", "--", "-keep"],
                &["--port", "1", "--trust-domain", "x", "-v", "--", "-keep"],
            ),
            // A value starting with a dash is the flag's value (as in Go), never a flag.
            (&["--trust-domain", "-x"], &["--trust-domain=-x"]),
            (&["-trust-domain", "-x"], &["--trust-domain=-x"]),
            (
                &["-issuer-credentials", "-dir"],
                &["--issuer-credentials=-dir"],
            ),
            (
                &["-issuer-credentials", "-port"],
                &["--issuer-credentials=-port"],
            ),
            (
                &["-issuer-credentials", "--port"],
                &["--issuer-credentials=--port"],
            ),
            (&["-trust-domain", "--"], &["--trust-domain=--"]),
            (&["-config", "-"], &["--config=-"]),
            // `=` forms keep their value as written.
            (&["--port=1", "-port=2"], &["--port=1", "--port=2"]),
            (&["-trust-domain=-x"], &["--trust-domain=-x"]),
            (
                &["-trust-domain=-port", "-port", "7"],
                &["--trust-domain=-port", "--port", "7"],
            ),
            // Switches and optional-value flags take no separate value: what follows is
            // read on its own.
            (
                &["-log-as-json", "-port", "1"],
                &["--log-as-json", "--port", "1"],
            ),
            (
                &["-enable-metrics=false", "-grpc-web"],
                &["--enable-metrics=false", "--grpc-web"],
            ),
            (&["-log-as-json", "-x"], &["--log-as-json", "-x"]),
            // After `--`, nothing.
            (
                &["--", "-port", "-trust-domain"],
                &["--", "-port", "-trust-domain"],
            ),
            // Repeated flags are passed on as they are (clap refuses them, below).
            (
                &["-port", "1", "-port", "2"],
                &["--port", "1", "--port", "2"],
            ),
            // Subcommands: their own flags, and their short flags (clustered or not).
            (
                &["mtls", "expiry", "-ojson", "-issuer-credentials", "-d"],
                &["mtls", "expiry", "-ojson", "--issuer-credentials=-d"],
            ),
            (
                &["mtls", "expiry", "-o", "json"],
                &["mtls", "expiry", "-o", "json"],
            ),
            (
                &["mtls", "export", "-out", "-dir"],
                &["mtls", "export", "--out=-dir"],
            ),
            (&["status", "-o", "-ojson"], &["status", "-o", "-ojson"]),
            // An unknown long flag is still rewritten, so clap's error names it.
            (&["-prot", "1"], &["--prot", "1"]),
            // Negative numbers and lone dashes are not flags.
            (&["-1", "-"], &["-1", "-"]),
        ];
        for (input, want) in table {
            let mut args = vec!["warden"];
            args.extend_from_slice(input);
            let mut expected = vec!["warden"];
            expected.extend_from_slice(want);
            assert_eq!(normalize_go_flags(os(&args)), os(&expected), "{input:?}");
        }
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        let mut all = vec!["warden"];
        all.extend_from_slice(args);
        Cli::try_parse_from(normalize_go_flags(os(&all)))
    }

    #[test]
    fn dash_values_parse_as_values_and_hostile_flags_are_refused() {
        let cli = parse(&["-trust-domain", "-x", "-issuer-credentials", "-dir"]).unwrap();
        assert_eq!(cli.serve.trust_domain, "-x");
        assert_eq!(cli.serve.issuer_credentials, std::path::Path::new("-dir"));
        let cli = parse(&["-issuer-credentials", "-port", "-port", "7"]).unwrap();
        assert_eq!(cli.serve.issuer_credentials, std::path::Path::new("-port"));
        assert_eq!(cli.serve.port, 7);
        // Given twice, in either spelling: refused rather than one silently winning.
        for twice in [
            &["-port", "1", "-port", "2"][..],
            &["--trust-domain", "a", "-trust-domain=b"],
        ] {
            let e = parse(twice).unwrap_err();
            assert_eq!(
                e.kind(),
                clap::error::ErrorKind::ArgumentConflict,
                "{twice:?}: {e}"
            );
        }
        // Port 0 would listen on a random port while the log names port 0.
        for flag in ["-port", "-healthz-port", "-metrics-port"] {
            for bad in ["0", "-1", "65536", "99999999999999999999"] {
                assert!(parse(&[flag, bad]).is_err(), "{flag} {bad}");
            }
            assert!(parse(&[flag, "65535"]).is_ok(), "{flag}");
        }
        // The short output flag of a subcommand works clustered, as clap defines it.
        assert!(parse(&["mtls", "expiry", "-ojson"]).is_ok());
        assert!(parse(&["status", "-ojson"]).is_ok());
    }

    #[test]
    fn sentry_defaults() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["warden"]).unwrap();
        let s = cli.serve;
        assert_eq!(
            s.issuer_credentials,
            std::path::Path::new("/var/run/secrets/dapr.io/credentials")
        );
        assert_eq!(
            (
                s.issuer_ca_filename.as_str(),
                s.issuer_certificate_filename.as_str(),
                s.issuer_key_filename.as_str()
            ),
            ("ca.crt", "issuer.crt", "issuer.key")
        );
        assert_eq!(s.trust_domain, "localhost");
        assert_eq!(
            (s.port, s.healthz_port, s.metrics_port),
            (50001, 8080, 9090)
        );
        assert!(s.enable_metrics);
        assert!(!s.log_as_json);
        assert_eq!(s.mode, "standalone");
        let cli =
            Cli::try_parse_from(["warden", "--enable-metrics=false", "--log-as-json"]).unwrap();
        assert!(!cli.serve.enable_metrics);
        assert!(cli.serve.log_as_json);
    }
}

//! Command line: `warden` (serve, with Sentry's flags) and its subcommands.

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::identity::FetchArgs;
use crate::observability::{self, LogLevel, LogOptions, SCOPE_SENTRY};
use crate::server::{self, ServeArgs, VERSION};

/// A SPIFFE certificate authority, wire-compatible with Dapr Sentry.
///
/// With no subcommand, serves `dapr.proto.sentry.v1.CA/SignCertificate` on --port (TLS, ALPN h2),
/// generating a self-signed root and issuer in --issuer-credentials on first start.
#[derive(Debug, Parser)]
#[command(name = "warden", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Act as a workload: get an X509-SVID from a running CA, as daprd does.
    #[command(subcommand)]
    Identity(IdentityCommand),
    /// Manage the root key held in a PKCS#11 HSM.
    #[command(subcommand)]
    Hsm(crate::rotation::HsmCommand),
    /// Manage the issuer (intermediate) certificate.
    #[command(subcommand)]
    Issuer(crate::rotation::IssuerCommand),
    /// The Dapr CLI's certificate commands: renew-certificate, expiry, export.
    #[command(subcommand)]
    Mtls(crate::lifecycle::MtlsCommand),
    /// Show the credential set: subjects, fingerprints, validity, warnings.
    Status(crate::lifecycle::StatusArgs),
    /// Root certificate rotation without downtime (prepare, activate, finish).
    #[command(subcommand)]
    Root(crate::root_rotation::RootCommand),
    /// Print the trust anchors as a SPIFFE trust bundle (JWK Set).
    Bundle(crate::spiffe_bundle::BundleArgs),
    /// Check an audit log written with --audit-log.
    #[command(subcommand)]
    Audit(crate::audit::AuditCommand),
}

#[derive(Debug, Subcommand)]
enum IdentityCommand {
    /// Make a key and CSR, request a certificate, verify it and write key.pem, cert.pem, ca.pem.
    Fetch(FetchArgs),
}

/// Go's flag package accepts `-port 50001` for `--port 50001`, and Sentry's manifests and
/// scripts use both spellings, so single-dash long flags are rewritten before clap sees them.
pub fn normalize_go_flags(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut passthrough = false;
    for (i, arg) in args.into_iter().enumerate() {
        let rewrite = !passthrough
            && i > 0
            && arg.to_str().is_some_and(|s| {
                let mut chars = s.chars();
                chars.next() == Some('-')
                    && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
                    && s.len() > 2
            });
        if arg == "--" {
            passthrough = true;
        }
        if rewrite {
            let mut long = OsString::from("-");
            long.push(&arg);
            out.push(long);
        } else {
            out.push(arg);
        }
    }
    out
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
            None => server::run(cli.serve).await,
            Some(Command::Identity(IdentityCommand::Fetch(args))) => {
                crate::identity::run_fetch(args).await
            }
            Some(Command::Hsm(crate::rotation::HsmCommand::InitRoot(args))) => {
                crate::rotation::run_init_root(args).map_err(anyhow::Error::from)
            }
            Some(Command::Mtls(command)) => {
                use crate::lifecycle::{self, MtlsCommand};
                match command {
                    MtlsCommand::RenewCertificate(args) => lifecycle::run_renew(args),
                    MtlsCommand::Expiry(args) => lifecycle::run_expiry(args),
                    MtlsCommand::Export(args) => lifecycle::run_export(args),
                }
                .map_err(anyhow::Error::from)
            }
            Some(Command::Bundle(args)) => crate::spiffe_bundle::run(args),
            Some(Command::Audit(command)) => {
                crate::audit::run(command).map_err(anyhow::Error::from)
            }
            Some(Command::Status(args)) => {
                crate::lifecycle::run_status(args).map_err(anyhow::Error::from)
            }
            Some(Command::Issuer(crate::rotation::IssuerCommand::Rotate(args))) => {
                crate::rotation::run_rotate(args).map_err(anyhow::Error::from)
            }
            Some(Command::Root(crate::root_rotation::RootCommand::Rotate(step))) => {
                use crate::root_rotation::{self, RotateCommand};
                match step {
                    RotateCommand::Prepare(args) => root_rotation::run_prepare(args),
                    RotateCommand::Activate(args) => root_rotation::run_activate(args),
                    RotateCommand::Finish(args) => root_rotation::run_finish(args),
                }
                .map_err(anyhow::Error::from)
            }
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
#[allow(clippy::unwrap_used)]
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
    fn go_single_dash_flags_become_long_flags() {
        assert_eq!(
            normalize_go_flags(os(&[
                "warden",
                "-port",
                "1",
                "--trust-domain",
                "x",
                "-v",
                "--",
                "-keep"
            ])),
            os(&[
                "warden",
                "--port",
                "1",
                "--trust-domain",
                "x",
                "-v",
                "--",
                "-keep"
            ])
        );
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

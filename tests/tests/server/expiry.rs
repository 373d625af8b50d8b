//! Time-driven behaviour of the `warden` server: Sentry's expiry warning texts at start-up for
//! an issuer inside the 30-day window, and the server's own TLS certificate renewed in-process
//! at half its life.

use std::time::Duration;

use warden_core::profile::Validity;
use warden_tests::common;
use warden_tests::common::{run, tempdir, write_file};
use warden_tests::server::{Options, OwnCa, Warden, field, seconds_ago};

#[test]
fn issuer_inside_the_warning_window_is_reported_with_sentrys_text() {
    let creds = tempdir();
    let ca = OwnCa::generate();
    // Ten days of life left: at start-up 239 whole hours remain, so "9 days and 23 hours".
    let issuer = ca.issuer_valid(Validity {
        not_before: seconds_ago(3600),
        not_after: common::now().saturating_add(Duration::from_secs(10 * 24 * 3600)),
    });
    ca.write(creds.path(), &issuer);
    let warden = Warden::start(creds.path());
    let json = warden.output.json();
    let expected =
        "Dapr issuer certificate expiration warning: certificate expires in 9 days and 23 hours";
    let line = json
        .iter()
        .find(|l| field(l, "msg") == expected)
        .unwrap_or_else(|| panic!("no {expected:?} line in:\n{}", warden.output.text()));
    assert_eq!(field(line, "level"), "warning");
    assert_eq!(field(line, "scope"), "dapr.sentry");
    // The root has a year left: no warning for it.
    assert!(
        !json
            .iter()
            .any(|l| field(l, "msg").starts_with("Dapr root certificate expiration warning")),
        "unexpected root warning:\n{}",
        warden.output.text()
    );
}

/// The leaf certificate `openssl s_client` is shown by the server, as PEM.
fn served_leaf(port: u16) -> String {
    let dir = tempdir();
    let out = run(std::process::Command::new("sh").current_dir(dir.path()).args([
        "-c",
        &format!(
            "openssl s_client -connect 127.0.0.1:{port} -alpn h2 </dev/null 2>/dev/null | openssl x509"
        ),
    ]));
    let pem = out.stdout;
    assert!(pem.contains("BEGIN CERTIFICATE"), "no certificate served");
    pem
}

#[test]
fn serving_certificate_is_renewed_at_half_life() {
    let creds = tempdir();
    let config = write_file(
        creds.path(),
        "config.yaml",
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nspec:\n  mtls:\n    workloadCertTTL: 4s\n    allowedClockSkew: 0s\n",
    );
    let dir = creds.path().join("credentials");
    let warden = Warden::start_with(
        &dir,
        &Options::new().args(["--config", config.to_str().unwrap()]),
    );
    let first = served_leaf(warden.port);
    // Half of a 4 s life is 2 s; the renewal loop sleeps at least 1 s between checks.
    std::thread::sleep(Duration::from_millis(3500));
    let second = served_leaf(warden.port);
    assert_ne!(first, second, "the serving certificate was not renewed");
    let renewed = warden
        .output
        .json()
        .iter()
        .filter(|l| field(l, "msg").starts_with("Renewed server certificate; expires on "))
        .count();
    assert!(renewed >= 1, "{}", warden.output.text());
}

//! The `warden` server's credential store as a process sees it: generation on first start
//! (private modes), byte-identical reuse on restart, the Dapr docs' OpenSSL BYO recipe, and
//! start-up refusals (a `fatal` log line naming the file and the problem, a non-zero exit,
//! nothing on disk changed) for invalid credential sets, flags and config files.

use std::path::Path;

use warden_core::bundle::parse_certificates;
use warden_core::profile::Validity;
use warden_tests::common::{
    OPENSSL_KEYS, openssl_csr, read_file, run_seed_recipe, tempdir, write_file,
};
use warden_tests::server;
use warden_tests::server::{
    Options, OwnCa, Warden, check_response, ders, field, mode, request, seconds_ago, sign, snapshot,
};

const DAY: u64 = 24 * 3600;

/// Issues one leaf for an openssl Ed25519 CSR and checks it against `ca.crt` of the server.
async fn issue_one(warden: &Warden, work: &Path, tag: &str) -> server::Issued {
    let csr = openssl_csr(work, &OPENSSL_KEYS[2]).pem;
    let mut client = warden.client().await;
    let response = sign(&mut client, request(tag, "default", "", &csr))
        .await
        .unwrap_or_else(|s| panic!("{tag}: {s:?}"));
    let issued = check_response(
        &response,
        &warden.trust_anchors_path(),
        &format!("spiffe://public/ns/default/{tag}"),
    );
    issued.openssl_verify(work, &warden.trust_anchors_path(), tag);
    issued
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_generates_private_credentials_and_restart_reuses_them() {
    let work = tempdir();
    let parent = tempdir();
    let dir = parent.path().join("credentials");
    assert!(!dir.exists());

    let warden = Warden::start(&dir);
    assert!(
        warden
            .output
            .find(
                0,
                "info",
                "Root and issuer certs not found: generating self signed CA"
            )
            .is_some(),
        "{}",
        warden.output.text()
    );
    assert_eq!(mode(&dir), 0o700, "a created credentials directory is 0700");
    for name in ["ca.crt", "issuer.crt", "issuer.key"] {
        assert_eq!(mode(&dir.join(name)), 0o600, "{name} must be 0600");
    }
    let roots = parse_certificates(&read_file(&dir.join("ca.crt"))).unwrap();
    assert_eq!(roots.len(), 1, "one generated root");
    let first = issue_one(&warden, work.path(), "first").await;
    let stopped = warden.stop_gracefully();
    assert_eq!(stopped.code, Some(0), "{}", stopped.output.text());
    let files = snapshot(&dir);
    assert_eq!(
        files.keys().collect::<Vec<_>>(),
        ["ca.crt", "issuer.crt", "issuer.key"]
    );

    let warden = Warden::start(&dir);
    assert!(
        warden
            .output
            .find(
                0,
                "info",
                "Root and issuer certs found: using credentials from store"
            )
            .is_some(),
        "{}",
        warden.output.text()
    );
    assert!(
        warden
            .output
            .find(0, "info", "generating self signed CA")
            .is_none()
    );
    assert_eq!(snapshot(&dir), files, "a restart must not rewrite anything");
    let second = issue_one(&warden, work.path(), "second").await;
    assert_eq!(
        ders(&second.intermediates),
        ders(&first.intermediates),
        "the same issuer signs after a restart"
    );
    drop(warden);
    assert_eq!(snapshot(&dir), files);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docs_openssl_recipe_credentials_serve_leaves_chaining_to_that_root() {
    let work = tempdir();
    let creds = tempdir();
    run_seed_recipe(work.path());
    write_file(
        creds.path(),
        "ca.crt",
        read_file(&work.path().join("root.pem")),
    );
    write_file(
        creds.path(),
        "issuer.crt",
        read_file(&work.path().join("issuer.pem")),
    );
    write_file(
        creds.path(),
        "issuer.key",
        read_file(&work.path().join("issuer.key")),
    );
    let files = snapshot(creds.path());

    let warden = Warden::start(creds.path());
    assert!(
        warden
            .output
            .find(
                0,
                "info",
                "Root and issuer certs found: using credentials from store"
            )
            .is_some(),
        "{}",
        warden.output.text()
    );
    let issued = issue_one(&warden, work.path(), "byo").await;
    let recipe_issuer = parse_certificates(&read_file(&work.path().join("issuer.pem"))).unwrap();
    assert_eq!(
        ders(&issued.intermediates),
        ders(&recipe_issuer),
        "workload_certificate = leaf + the recipe's issuer"
    );
    issued.openssl_verify(work.path(), &work.path().join("root.pem"), "byo-root");
    let stopped = warden.stop_gracefully();
    assert_eq!(stopped.code, Some(0), "{}", stopped.output.text());
    assert_eq!(
        snapshot(creds.path()),
        files,
        "BYO credentials must be left as they are"
    );
}

/// Starts on `dir`, expects a refusal whose fatal line contains every needle, and checks that
/// the directory is byte-identical afterwards.
fn assert_refused(dir: &Path, options: &Options, needles: &[&str]) -> String {
    let before = snapshot(dir);
    let exited = Warden::start_failure(dir, options);
    let msg = exited.assert_fatal(needles);
    assert_eq!(
        snapshot(dir),
        before,
        "a refused start must not change the credentials"
    );
    msg
}

fn path_str(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

/// Credentials that `write` puts in a fresh directory are refused at start, with a fatal line
/// naming `file` and containing every needle (see [`assert_refused`]).
fn refused_credentials(write: impl FnOnce(&Path), file: &str, needles: &[&str]) {
    let creds = tempdir();
    write(creds.path());
    let path = path_str(creds.path(), file);
    let mut all = vec![path.as_str()];
    all.extend_from_slice(needles);
    assert_refused(creds.path(), &Options::new(), &all);
}

#[test]
fn expired_issuer_is_refused() {
    refused_credentials(
        |dir| {
            let ca = OwnCa::generate();
            let issuer = ca.issuer_valid(Validity {
                not_before: seconds_ago(30 * DAY),
                not_after: seconds_ago(DAY),
            });
            ca.write(dir, &issuer);
        },
        "issuer.crt",
        &["issuer chain does not belong to trust anchors", "expired"],
    );
}

#[test]
fn issuer_key_of_another_ca_is_refused() {
    refused_credentials(
        |dir| {
            let ca = OwnCa::generate();
            ca.write(dir, &ca.issuer());
            write_file(dir, "issuer.key", OwnCa::generate().issuer().key_pem());
        },
        "issuer.key",
        &["issuer key does not match issuer certificate"],
    );
}

#[test]
fn issuer_of_another_root_is_refused() {
    refused_credentials(
        |dir| {
            let ca = OwnCa::generate();
            ca.write(dir, &OwnCa::generate().issuer());
        },
        "issuer.crt",
        &["issuer chain does not belong to trust anchors"],
    );
}

#[test]
fn trust_anchor_that_is_not_self_signed_is_refused() {
    refused_credentials(
        |dir| {
            let ca = OwnCa::generate();
            let issuer = ca.issuer();
            ca.write(dir, &issuer);
            write_file(dir, "ca.crt", issuer.certificate_pem());
        },
        "ca.crt",
        &["certificate in trust anchor is not self-signed"],
    );
}

#[test]
fn truncated_issuer_certificate_is_refused() {
    refused_credentials(
        |dir| {
            let ca = OwnCa::generate();
            let issuer = ca.issuer();
            ca.write(dir, &issuer);
            let pem = issuer.certificate_pem();
            write_file(dir, "issuer.crt", &pem[..pem.len() / 2]);
        },
        "issuer.crt",
        &["PEM block has no END line"],
    );
}

#[test]
fn kubernetes_mode_is_refused_before_touching_the_disk() {
    let parent = tempdir();
    let dir = parent.path().join("credentials");
    let exited = Warden::start_failure(&dir, &Options::new().args(["--mode", "kubernetes"]));
    exited.assert_fatal(&["--mode kubernetes", "not supported yet"]);
    assert!(!dir.exists(), "a refused start must not create credentials");
}

#[test]
fn config_with_a_day_unit_is_refused_naming_file_field_and_value() {
    let parent = tempdir();
    let dir = parent.path().join("credentials");
    let config = write_file(
        parent.path(),
        "config.yaml",
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nspec:\n  mtls:\n    workloadCertTTL: 1d\n",
    );
    let exited = Warden::start_failure(
        &dir,
        &Options::new().args(["--config", config.to_str().unwrap()]),
    );
    exited.assert_fatal(&[
        config.to_str().unwrap(),
        "spec.mtls.workloadCertTTL",
        "\"1d\"",
        "error parsing WorkloadCertTTL duration",
    ]);
    assert!(!dir.exists(), "a refused start must not create credentials");
}

#[test]
fn missing_config_file_is_refused() {
    let parent = tempdir();
    let dir = parent.path().join("credentials");
    let config = parent.path().join("no-such-config.yaml");
    let exited = Warden::start_failure(
        &dir,
        &Options::new().args(["--config", config.to_str().unwrap()]),
    );
    let msg = exited.assert_fatal(&[config.to_str().unwrap()]);
    assert!(
        msg.to_ascii_lowercase().contains("no such file"),
        "the fatal line should say the file is missing: {msg}"
    );
    assert!(!dir.exists(), "a refused start must not create credentials");
    // The fatal line is a well-formed Dapr log line.
    let fatal = &exited.fatal_lines()[0];
    assert_eq!(field(fatal, "type"), "log");
    assert!(field(fatal, "scope").starts_with("dapr.sentry"));
}

#[test]
fn loose_credential_permissions_are_warned_about_at_start() {
    use std::os::unix::fs::PermissionsExt as _;
    let parent = tempdir();
    let dir = parent.path().join("credentials");
    std::fs::create_dir(&dir).unwrap();
    let ca = OwnCa::generate();
    ca.write(&dir, &ca.issuer());
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::set_permissions(
        dir.join("issuer.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let warden = Warden::start(&dir);
    for needle in [
        "is writable by other users (mode 0777)",
        "issuer.key is accessible to other users (mode 0644); run chmod 600 on it",
    ] {
        assert!(
            warden.output.find(0, "warning", needle).is_some(),
            "no warning {needle:?}:\n{}",
            warden.output.text()
        );
    }
    drop(warden);

    // Private modes: no warning.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::set_permissions(
        dir.join("issuer.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let warden = Warden::start(&dir);
    assert!(
        warden.output.find(0, "warning", "other users").is_none(),
        "{}",
        warden.output.text()
    );
}

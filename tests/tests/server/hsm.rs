//! The HSM-held root on a real SoftHSM2 token: `warden hsm init-root`, `warden issuer rotate`
//! under client load, the server's automatic rotation, and serving on when the HSM goes away.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use warden_core::bundle::parse_certificates;
use warden_core::profile::Validity;
use warden_tests::common::{OPENSSL_KEYS, openssl, openssl_csr, run, tempdir};
use warden_tests::server::{
    Options, Warden, check_response, ders, mode, request, sign, warden_binary,
};
use warden_tests::softhsm::{KEY, MODULE, PIN, TOKEN, Token};
use warden_tests::{common, server};

fn issuer_der(creds: &Path) -> Vec<u8> {
    let certs = parse_certificates(&std::fs::read(creds.join("issuer.crt")).unwrap()).unwrap();
    ders(&certs[..1]).remove(0)
}

fn openssl_verify_issuer(creds: &Path) {
    run(openssl(
        creds,
        [
            "verify",
            "-x509_strict",
            "-CAfile",
            "ca.crt",
            "-partial_chain",
            "issuer.crt",
        ],
    ));
}

/// A request loop (a request every 5 ms on one connection) that records every failure.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    issuers: Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
    task: tokio::task::JoinHandle<Vec<String>>,
}

impl Load {
    async fn start(warden: &Warden, csr: Vec<u8>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let issuers = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut client = warden.client().await;
        let task = {
            let (stop, ok, issuers) = (Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&issuers));
            tokio::spawn(async move {
                let mut failures = Vec::new();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    match sign(&mut client, request("loop", "default", "", &csr)).await {
                        Ok(response) => match parse_certificates(&response.workload_certificate) {
                            Ok(certs) if certs.len() >= 2 => {
                                let issuer = ders(&certs[1..2]).remove(0);
                                let mut seen = issuers.lock().unwrap();
                                if seen.last() != Some(&issuer) {
                                    seen.push(issuer);
                                }
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            other => failures.push(format!("{n}: bad chain {other:?}")),
                        },
                        Err(status) => failures.push(format!("{n}: {status:?}")),
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                failures
            })
        };
        Self {
            stop,
            ok,
            issuers,
            task,
        }
    }

    async fn wait_for_issuer(&self, issuer: &[u8], timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.issuers.lock().unwrap().last().map(Vec::as_slice) != Some(issuer) {
            assert!(
                Instant::now() < deadline,
                "issuer not seen within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn wait_for_more(&self, more: u64) {
        let target = self.ok.load(Ordering::Relaxed) + more;
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.ok.load(Ordering::Relaxed) < target {
            assert!(Instant::now() < deadline, "requests stalled");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn finish(self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_root_in_the_hsm_then_rotate_the_issuer_under_load_without_a_failed_request() {
    let token = Token::init();
    let creds = tempdir();
    let work = tempdir();
    token.init_root(creds.path());
    // The root is self-signed, strict X.509, and its issuer verifies under it.
    run(openssl(
        creds.path(),
        ["verify", "-x509_strict", "-CAfile", "ca.crt", "ca.crt"],
    ));
    openssl_verify_issuer(creds.path());
    assert_eq!(mode(&creds.path().join("issuer.key")), 0o600);
    // Running init-root again refuses to overwrite anything.
    let mut again = token.warden(&["hsm", "init-root"]);
    again
        .args(Token::hsm_flags())
        .arg("--issuer-credentials")
        .arg(creds.path());
    let out = again.output().unwrap();
    assert!(!out.status.success());
    let ca_before = std::fs::read(creds.path().join("ca.crt")).unwrap();

    let warden = Warden::start(creds.path());
    let csr = openssl_csr(work.path(), &OPENSSL_KEYS[2]).pem;
    let load = Load::start(&warden, csr.clone()).await;
    let first = issuer_der(creds.path());
    load.wait_for_issuer(&first, Duration::from_secs(10)).await;
    load.wait_for_more(20).await;
    let mut client = warden.client().await;
    let before = sign(&mut client, request("before", "default", "", &csr))
        .await
        .unwrap();

    token.rotate(creds.path(), &["--valid-until", "30"]);
    let second = issuer_der(creds.path());
    assert_ne!(first, second);
    // The new issuer is signed by the HSM root: it verifies under the unchanged ca.crt.
    assert_eq!(
        std::fs::read(creds.path().join("ca.crt")).unwrap(),
        ca_before
    );
    openssl_verify_issuer(creds.path());
    load.wait_for_issuer(&second, Duration::from_secs(15)).await;
    load.wait_for_more(20).await;
    let after = sign(&mut client, request("after", "default", "", &csr))
        .await
        .unwrap();
    let failures = load.finish().await;
    assert!(failures.is_empty(), "failed requests: {failures:#?}");

    let anchors = warden.trust_anchors_path();
    let before = check_response(&before, &anchors, "spiffe://public/ns/default/before");
    let after = check_response(&after, &anchors, "spiffe://public/ns/default/after");
    before.openssl_verify(work.path(), &anchors, "before");
    after.openssl_verify(work.path(), &anchors, "after");
    assert_ne!(before.akid(), after.akid());
    let second_cert =
        &parse_certificates(&std::fs::read(creds.path().join("issuer.crt")).unwrap()).unwrap()[0];
    let days = Validity::of(second_cert);
    let life = days.not_before.until(days.not_after).as_secs();
    assert!((30 * 86_400..=30 * 86_400 + 3600).contains(&life), "{life}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_rotates_its_issuer_on_its_own_and_serves_on_when_the_hsm_is_gone() {
    let token = Token::init();
    let creds = tempdir();
    let work = tempdir();
    token.init_root(creds.path());
    // A 15-second issuer: due for rotation 10 s after it was made.
    token.rotate(creds.path(), &["--valid-for-secs", "15"]);
    let first = issuer_der(creds.path());

    let warden = Warden::start_with(creds.path(), &token.server_options());
    let csr = openssl_csr(work.path(), &OPENSSL_KEYS[2]).pem;
    let load = Load::start(&warden, csr.clone()).await;
    warden
        .output
        .wait_for(
            0,
            "info",
            "Issuer rotated with the HSM root",
            Duration::from_secs(20),
        )
        .await;
    let second = issuer_der(creds.path());
    assert_ne!(first, second);
    openssl_verify_issuer(creds.path());
    load.wait_for_issuer(&second, Duration::from_secs(10)).await;
    let mut client = warden.client().await;
    let response = sign(&mut client, request("auto", "default", "", &csr))
        .await
        .unwrap();
    let issued = check_response(
        &response,
        &warden.trust_anchors_path(),
        "spiffe://public/ns/default/auto",
    );
    // Leaves never outlive the short issuer.
    let issuer_cert =
        &parse_certificates(&std::fs::read(creds.path().join("issuer.crt")).unwrap()).unwrap()[0];
    assert!(issued.validity().not_after <= Validity::of(issuer_cert).not_after);

    // The token goes away: the next rotation fails, is logged, and serving goes on.
    let gone = token.dir.path().join("tokens-gone");
    std::fs::rename(token.tokens(), &gone).unwrap();
    let mark = warden.output.mark();
    warden
        .output
        .wait_for(
            mark,
            "error",
            "Issuer rotation failed",
            Duration::from_secs(20),
        )
        .await;
    sign(&mut client, request("hsm-gone", "default", "", &csr))
        .await
        .unwrap();
    load.wait_for_more(10).await;

    // The token comes back: the retry (with backoff) rotates before the issuer runs out.
    std::fs::rename(&gone, token.tokens()).unwrap();
    let mark = warden.output.mark();
    warden
        .output
        .wait_for(
            mark,
            "info",
            "Issuer rotated with the HSM root",
            Duration::from_secs(20),
        )
        .await;
    load.wait_for_more(10).await;
    let failures = load.finish().await;
    assert!(failures.is_empty(), "failed requests: {failures:#?}");
}

/// Runs `cmd`, which must fail; returns stdout + stderr.
fn failing(mut cmd: Command) -> String {
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "succeeded unexpectedly:\n{text}");
    text
}

#[test]
fn rotate_refuses_a_wrong_pin_a_missing_module_or_no_pin_and_leaves_the_files() {
    let token = Token::init();
    let creds = tempdir();
    token.init_root(creds.path());
    let before = server::snapshot(creds.path());
    let rotate = |pin: Option<&str>, module: &str| {
        let mut cmd = Command::new(warden_binary());
        cmd.args(["issuer", "rotate", "--issuer-credentials"])
            .arg(creds.path())
            .args(["--hsm-module", module, "--hsm-token-label", TOKEN])
            .args(["--hsm-key-label", KEY])
            .env("SOFTHSM2_CONF", &token.conf)
            .env_remove("WARDEN_HSM_PIN");
        if let Some(pin) = pin {
            cmd.env("WARDEN_HSM_PIN", pin);
        }
        cmd
    };
    let text = failing(rotate(Some("wrong-pin"), MODULE));
    assert!(
        text.contains("C_Login returned CKR_PIN_INCORRECT"),
        "{text}"
    );
    assert!(!text.contains("wrong-pin"), "the PIN was printed: {text}");
    let text = failing(rotate(Some(PIN), "/nonexistent/pkcs11.so"));
    assert!(
        text.contains("cannot load the PKCS#11 module /nonexistent/pkcs11.so"),
        "{text}"
    );
    let text = failing(rotate(None, MODULE));
    assert!(text.contains("WARDEN_HSM_PIN"), "{text}");
    let mut wrong_key = token.warden(&["issuer", "rotate", "--issuer-credentials"]);
    wrong_key
        .arg(creds.path())
        .args(["--hsm-module", MODULE, "--hsm-token-label", TOKEN])
        .args(["--hsm-key-label", "no-such-key"]);
    let text = failing(wrong_key);
    assert!(
        text.contains("C_FindObjects: no EC private key labelled") && text.contains("no-such-key"),
        "{text}"
    );
    assert_eq!(text.matches("C_FindObjects").count(), 1, "{text}");
    assert_eq!(server::snapshot(creds.path()), before);
}

#[test]
fn rotate_with_a_root_key_file() {
    use warden_core::bundle::{certificates_to_pem, create_issuer, create_root};
    use warden_core::crypto::{CaSigner, KeyAlgorithm, SoftwareKey};
    use warden_core::profile::DEFAULT_CLOCK_SKEW;
    use warden_core::spiffe::{SpiffeId, TrustDomain};

    let creds = tempdir();
    let mut rng = rand_core::UnwrapErr(getrandom::SysRng);
    let td = TrustDomain::new("public").unwrap();
    let now = warden_core::UnixTime::from_duration(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap(),
    );
    let validity = Validity::backdated(now, DEFAULT_CLOCK_SKEW, Duration::from_secs(86_400 * 90));
    let root_key = SoftwareKey::generate(KeyAlgorithm::P256, &mut rng);
    let root = create_root(&root_key, &td, validity, &mut rng).unwrap();
    let issuer_key = SoftwareKey::generate(KeyAlgorithm::P256, &mut rng);
    let sentry = SpiffeId::sentry(&td, "default").unwrap();
    let issuer = create_issuer(
        &root_key,
        &root,
        issuer_key.public_key(),
        &sentry,
        validity,
        &mut rng,
    )
    .unwrap();
    let dir = creds.path();
    std::fs::write(dir.join("ca.crt"), certificates_to_pem([&root]).unwrap()).unwrap();
    std::fs::write(
        dir.join("issuer.crt"),
        certificates_to_pem([&issuer]).unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.join("issuer.key"),
        issuer_key.to_pkcs8_pem().unwrap().as_bytes(),
    )
    .unwrap();
    let keys = tempdir();
    let root_file = keys.path().join("root.key");
    std::fs::write(&root_file, root_key.to_pkcs8_pem().unwrap().as_bytes()).unwrap();
    let first = issuer_der(dir);
    let first_subject = issuer.tbs_certificate().subject().clone();

    let mut cmd = Command::new(warden_binary());
    cmd.args(["issuer", "rotate", "--issuer-credentials"])
        .arg(dir)
        .arg("--root-key")
        .arg(&root_file)
        .args(["--valid-until", "7"]);
    run(cmd);
    assert_ne!(issuer_der(dir), first);
    openssl_verify_issuer(dir);
    assert_eq!(mode(&dir.join("issuer.key")), 0o600);
    let issuer = &parse_certificates(&std::fs::read(dir.join("issuer.crt")).unwrap()).unwrap()[0];
    assert_eq!(issuer.tbs_certificate().subject(), &first_subject);

    // A root key that matches nothing in ca.crt is refused and nothing changes.
    let other = SoftwareKey::generate(KeyAlgorithm::P256, &mut rng);
    std::fs::write(&root_file, other.to_pkcs8_pem().unwrap().as_bytes()).unwrap();
    let before = server::snapshot(dir);
    let mut cmd = Command::new(warden_binary());
    cmd.args(["issuer", "rotate", "--issuer-credentials"])
        .arg(dir)
        .arg("--root-key")
        .arg(&root_file);
    let text = failing(cmd);
    assert!(
        text.contains("the root key does not match any certificate in ca.crt"),
        "{text}"
    );
    assert_eq!(server::snapshot(dir), before);
}

// ---------------------------------------------------------------------------------------------
// Start-up with part of the credential set missing (issue 15, defect 1): the HSM root is never
// replaced by a software root, and ca.crt is never touched.

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

/// The server's credential files and root-rotation.json, by name.
fn files(creds: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    server::snapshot(creds)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_issuer_with_hsm_flags_gets_a_new_issuer_from_the_same_hsm_root() {
    let token = Token::init();
    let creds = tempdir();
    let work = tempdir();
    token.init_root(creds.path());
    let ca = read(&creds.path().join("ca.crt"));
    let first = issuer_der(creds.path());

    // issuer.key alone, then both issuer files: each start makes an issuer with the HSM root.
    for deleted in [&["issuer.key"][..], &["issuer.key", "issuer.crt"]] {
        for name in deleted {
            std::fs::remove_file(creds.path().join(name)).unwrap();
        }
        let warden = Warden::start_with(creds.path(), &token.server_options());
        warden
            .output
            .find(0, "info", "made a new issuer with the HSM root")
            .unwrap_or_else(|| panic!("no log line; output:\n{}", warden.output.text()));
        assert!(
            warden
                .output
                .find(0, "info", "generating self signed CA")
                .is_none(),
            "{}",
            warden.output.text()
        );
        assert_eq!(read(&creds.path().join("ca.crt")), ca, "ca.crt changed");
        assert_ne!(issuer_der(creds.path()), first);
        assert_eq!(mode(&creds.path().join("issuer.key")), 0o600);
        openssl_verify_issuer(creds.path());
        let csr = openssl_csr(work.path(), &OPENSSL_KEYS[2]).pem;
        let mut client = warden.client().await;
        let response = sign(&mut client, request("newissuer", "default", "", &csr))
            .await
            .unwrap();
        let issued = check_response(
            &response,
            &creds.path().join("ca.crt"),
            "spiffe://public/ns/default/newissuer",
        );
        issued.openssl_verify(work.path(), &creds.path().join("ca.crt"), "newissuer");
    }
}

#[test]
fn a_deleted_issuer_key_without_hsm_flags_is_refused_and_ca_crt_is_untouched() {
    let token = Token::init();
    let creds = tempdir();
    token.init_root(creds.path());
    std::fs::remove_file(creds.path().join("issuer.key")).unwrap();
    let before = files(creds.path());
    let exited = Warden::start_failure(creds.path(), &Options::new());
    let msg = exited.assert_fatal(&[
        &format!("missing {}", creds.path().join("issuer.key").display()),
        "refusing to start",
        "warden issuer rotate",
    ]);
    assert!(!msg.contains("issuer.crt and"), "{msg}");
    assert!(
        !exited.output.text().contains("generating self signed CA"),
        "{}",
        exited.output.text()
    );
    assert_eq!(files(creds.path()), before);

    // The way out the message names works: a new issuer from the HSM root, then a normal start.
    token.rotate(creds.path(), &[]);
    openssl_verify_issuer(creds.path());
    assert_eq!(files(creds.path())["ca.crt"], before["ca.crt"]);
    drop(Warden::start(creds.path()));

    // Both issuer files gone: refused naming both; `issuer rotate` then takes the SPIFFE ID
    // from the root's trust domain, since there is no issuer.crt to copy it from.
    for name in ["issuer.key", "issuer.crt"] {
        std::fs::remove_file(creds.path().join(name)).unwrap();
    }
    let exited = Warden::start_failure(creds.path(), &Options::new());
    exited.assert_fatal(&[&format!(
        "missing {} and {}",
        creds.path().join("issuer.crt").display(),
        creds.path().join("issuer.key").display()
    )]);
    token.rotate(creds.path(), &[]);
    openssl_verify_issuer(creds.path());
    let issuer = &parse_certificates(&read(&creds.path().join("issuer.crt"))).unwrap()[0];
    assert!(
        issuer
            .tbs_certificate()
            .subject()
            .to_string()
            .contains("spiffe://public/ns/default/dapr-sentry"),
        "{}",
        issuer.tbs_certificate().subject()
    );
    assert_eq!(files(creds.path())["ca.crt"], before["ca.crt"]);
    drop(Warden::start(creds.path()));
}

#[test]
fn a_missing_file_during_a_root_rotation_is_refused_with_or_without_hsm_flags() {
    let token = Token::init();
    let creds = tempdir();
    token.init_root(creds.path());
    let mut prepare = token.warden(&["root", "rotate", "prepare", "--issuer-credentials"]);
    prepare.arg(creds.path()).args([
        "--hsm-module",
        MODULE,
        "--hsm-token-label",
        TOKEN,
        "--hsm-key-label",
        "next-root",
    ]);
    run(prepare);
    assert!(creds.path().join("root-rotation.json").exists());
    for missing in ["issuer.key", "ca.crt"] {
        std::fs::remove_file(creds.path().join(missing)).unwrap();
        let before = files(creds.path());
        for options in [Options::new(), token.server_options()] {
            let exited = Warden::start_failure(creds.path(), &options);
            exited.assert_fatal(&[
                &creds.path().join(missing).display().to_string(),
                "root-rotation.json",
                "refusing to start",
            ]);
            assert_eq!(files(creds.path()), before, "{missing}");
        }
    }
}

#[test]
fn no_ca_crt_with_hsm_flags_is_refused_and_an_empty_directory_without_them_generates() {
    let token = Token::init();
    let creds = tempdir();
    token.init_root(creds.path());
    std::fs::remove_file(creds.path().join("ca.crt")).unwrap();
    let before = files(creds.path());
    let exited = Warden::start_failure(creds.path(), &token.server_options());
    exited.assert_fatal(&["ca.crt", "in an HSM", "warden hsm init-root"]);
    assert_eq!(files(creds.path()), before);

    // Nothing at all with --hsm-*: the root lives in the HSM, so still no software root.
    let empty = tempdir();
    let exited = Warden::start_failure(empty.path(), &token.server_options());
    exited.assert_fatal(&["ca.crt", "warden hsm init-root"]);
    assert!(files(empty.path()).is_empty());

    // Nothing at all and no --hsm-*: the first start generates, as before.
    let warden = Warden::start(empty.path());
    assert!(
        warden
            .output
            .find(0, "info", "generating self signed CA")
            .is_some()
    );
    assert_eq!(
        files(empty.path()).keys().collect::<Vec<_>>(),
        ["ca.crt", "issuer.crt", "issuer.key"]
    );
}

// ---------------------------------------------------------------------------------------------
// `hsm init-root` never leaves an orphan key in the token (issue 15, defect 7).

/// Whether a key labelled `label` can be used from the token (an `issuer rotate` that fails
/// only for want of credential files, or for the missing key).
fn key_exists(token: &Token, label: &str) -> bool {
    let empty = tempdir();
    let mut cmd = token.warden(&["issuer", "rotate", "--issuer-credentials"]);
    cmd.arg(empty.path()).args([
        "--hsm-module",
        MODULE,
        "--hsm-token-label",
        TOKEN,
        "--hsm-key-label",
        label,
    ]);
    let text = failing(cmd);
    if text.contains("C_FindObjects: no EC private key labelled") {
        false
    } else {
        assert!(text.contains("ca.crt"), "{text}");
        true
    }
}

fn init_root_command(token: &Token, creds: &Path, extra: &[&str]) -> Command {
    let mut cmd = token.warden(&["hsm", "init-root", "--trust-domain", "public"]);
    cmd.args(Token::hsm_flags())
        .arg("--issuer-credentials")
        .arg(creds)
        .args(extra);
    cmd
}

#[test]
fn init_root_that_fails_before_writing_leaves_no_key_in_the_token() {
    let token = Token::init();
    let parent = tempdir();
    // A file where the directory should be, and an invalid lifetime: both used to fail after
    // the key was made.
    let in_the_way = parent.path().join("creds");
    std::fs::write(&in_the_way, "not a directory").unwrap();
    let text = failing(init_root_command(&token, &in_the_way, &[]));
    assert!(text.contains("cannot create directory"), "{text}");
    assert!(!key_exists(&token, KEY));
    let creds = parent.path().join("fresh");
    let text = failing(init_root_command(&token, &creds, &["--valid-until", "0"]));
    assert!(text.contains("invalid number of days: 0"), "{text}");
    assert!(!key_exists(&token, KEY));
    // So the same command with the same label works once the problem is fixed.
    run(init_root_command(&token, &creds, &[]));
    openssl_verify_issuer(&creds);
}

#[test]
fn init_root_that_cannot_write_its_files_removes_its_key_again() {
    let token = Token::init();
    let Some(read_only) = server::Tmpfs::mount("64k") else {
        return;
    };
    read_only.remount_read_only();
    let text = failing(init_root_command(&token, &read_only.mount_point, &[]));
    assert!(
        text.contains("Read-only file system") && text.contains("was removed from token"),
        "{text}"
    );
    assert!(!text.contains(PIN), "the PIN was printed: {text}");
    assert!(!key_exists(&token, KEY));
    assert_eq!(
        std::fs::read_dir(&read_only.mount_point).unwrap().count(),
        0
    );
    let creds = tempdir();
    run(init_root_command(&token, creds.path(), &[]));
    openssl_verify_issuer(creds.path());
}

#[test]
fn a_key_left_in_the_token_is_explained_and_can_be_reused_on_request() {
    let token = Token::init();
    // A key with no credential files: what a kill -9 between key generation and writing leaves.
    let lost = tempdir();
    token.init_root(lost.path());
    let lost_root = &parse_certificates(&read(&lost.path().join("ca.crt"))).unwrap()[0];
    let creds = tempdir();
    let text = failing(init_root_command(&token, creds.path(), &[]));
    for needle in [
        "already exists on token",
        "--reuse-key",
        &format!(
            "`pkcs11-tool --module {MODULE} --token-label {TOKEN} --login --delete-object --label {KEY} --type privkey && "
        ),
        "--type pubkey`",
    ] {
        assert!(text.contains(needle), "{needle:?} not in {text}");
    }
    assert!(!text.contains(PIN), "the PIN was printed: {text}");
    assert!(files(creds.path()).is_empty());

    run(init_root_command(&token, creds.path(), &["--reuse-key"]));
    openssl_verify_issuer(creds.path());
    let root = &parse_certificates(&read(&creds.path().join("ca.crt"))).unwrap()[0];
    assert_eq!(
        root.tbs_certificate().subject_public_key_info(),
        lost_root.tbs_certificate().subject_public_key_info(),
        "the root is made from the key in the token"
    );
    assert!(key_exists(&token, KEY));
}

// ---------------------------------------------------------------------------------------------
// `warden issuer sign-csr` with the HSM root (issue 16: an edge device's issuer).

fn sign_csr_command(token: &Token, creds: &Path, csr: &Path, out: &Path) -> Command {
    let mut cmd = token.warden(&["issuer", "sign-csr", "--namespace", "edge"]);
    cmd.args(Token::hsm_flags())
        .arg("--issuer-credentials")
        .arg(creds)
        .arg("--csr")
        .arg(csr)
        .arg("--out")
        .arg(out);
    cmd
}

/// `out` (made by `sign-csr` from the CSR with key `csr_spki_der`) verifies under `dir/ca.crt`
/// (the root, `root_pem`), is 0644, certifies the CSR's key, names the edge trust domain, is a
/// CA with pathlen 0, and ends no later than the root.
fn issuer_for_the_csr_key_verifies(dir: &Path, out: &Path, csr_spki_der: &[u8], root_pem: &[u8]) {
    use der::Encode as _;
    let verified = run(openssl(
        dir,
        ["verify", "-x509_strict", "-CAfile", "ca.crt", "issuer.crt"],
    ));
    assert_eq!(verified.stdout.trim(), "issuer.crt: OK");
    assert_eq!(mode(out), 0o644);
    let issuer = &parse_certificates(&read(out)).unwrap()[0];
    assert_eq!(
        issuer
            .tbs_certificate()
            .subject_public_key_info()
            .to_der()
            .unwrap(),
        csr_spki_der,
        "the issuer certifies the CSR's key"
    );
    let text = run(openssl(
        dir,
        [
            "x509",
            "-in",
            "issuer.crt",
            "-noout",
            "-nameopt",
            "RFC2253",
            "-subject",
            "-ext",
            "basicConstraints",
        ],
    ))
    .stdout;
    assert!(
        text.contains("O=spiffe://public/ns/edge/dapr-sentry"),
        "{text}"
    );
    assert!(text.contains("CA:TRUE, pathlen:0"), "{text}");
    let root = &parse_certificates(root_pem).unwrap()[0];
    assert!(Validity::of(issuer).not_after <= Validity::of(root).not_after);
}

/// An existing --out is refused and kept; --force replaces it (with an issuer that verifies).
fn existing_out_is_kept_unless_forced(token: &Token, creds: &Path, csr_file: &Path, out: &Path) {
    let dir = out.parent().unwrap();
    let first = read(out);
    let text = failing(sign_csr_command(token, creds, csr_file, out));
    assert!(
        text.contains("already exists") && text.contains("--force"),
        "{text}"
    );
    assert_eq!(read(out), first);
    let mut forced = sign_csr_command(token, creds, csr_file, out);
    forced.arg("--force");
    run(forced);
    assert_ne!(read(out), first);
    run(openssl(
        dir,
        ["verify", "-x509_strict", "-CAfile", "ca.crt", "issuer.crt"],
    ));
}

/// Hostile or broken input: a clear error naming the flag or file, and nothing written in
/// `dir`. `(csr_file, csr_der)` is a good CSR (its file and its DER) to break.
fn bad_input_is_refused_writing_nothing(
    token: &Token,
    creds: &Path,
    dir: &Path,
    (csr_file, csr_der): (&Path, &[u8]),
) {
    let garbage = common::write_file(dir, "garbage.csr", "not a CSR at all\n");
    let mut bad_signature = csr_der.to_vec();
    *bad_signature.last_mut().unwrap() ^= 0x01;
    let bad_signature = common::write_file(dir, "bad-signature.csr", bad_signature);
    let huge = common::write_file(dir, "huge.csr", vec![b'A'; 65 * 1024]);
    let no_root = tempdir();
    let fresh = dir.join("fresh.crt");
    let cases: [(&Path, &Path, &[&str]); 5] = [
        (creds, &garbage, &["--csr", "garbage.csr", "CSR is not PEM"]),
        (
            creds,
            &bad_signature,
            &["--csr", "bad-signature.csr", "CSR signature"],
        ),
        (creds, &huge, &["huge.csr", "larger than 65536 bytes"]),
        (
            creds,
            &dir.join("missing.csr"),
            &["cannot read", "missing.csr"],
        ),
        (no_root.path(), csr_file, &["cannot read", "ca.crt"]),
    ];
    for (creds_dir, csr_path, needles) in cases {
        let before = server::snapshot(dir);
        let text = failing(sign_csr_command(token, creds_dir, csr_path, &fresh));
        for needle in needles {
            assert!(text.contains(needle), "{needle:?} not in {text}");
        }
        assert_eq!(server::snapshot(dir), before, "{text}");
        assert!(!fresh.exists());
    }
}

#[test]
fn sign_csr_with_the_hsm_root_makes_an_issuer_for_the_csr_key_and_refuses_bad_input() {
    let token = Token::init();
    let creds = tempdir();
    token.init_root(creds.path());
    let work = tempdir();
    let dir = work.path();
    let csr = openssl_csr(dir, common::openssl_key("p256"));
    let csr_file = dir.join("p256.csr.pem");
    let out = dir.join("issuer.crt");
    std::fs::copy(creds.path().join("ca.crt"), dir.join("ca.crt")).unwrap();
    let ca_before = read(&creds.path().join("ca.crt"));

    run(sign_csr_command(&token, creds.path(), &csr_file, &out));
    issuer_for_the_csr_key_verifies(dir, &out, &csr.spki_der, &ca_before);
    existing_out_is_kept_unless_forced(&token, creds.path(), &csr_file, &out);
    bad_input_is_refused_writing_nothing(&token, creds.path(), dir, (&csr_file, &csr.der));
    assert_eq!(read(&creds.path().join("ca.crt")), ca_before);
}

//! Faults around the credential directory (issue 8): `kill -9` during first-start generation,
//! a full disk during generation (a 16 KiB tmpfs), and the directory deleted under a running
//! server. The invariant everywhere: a complete valid set or no `ca.crt` at all, never a mix, no
//! truncated file, and a running server keeps serving what it loaded.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use warden_core::bundle::parse_certificates;
use warden_core::crypto::KeyAlgorithm;
use warden_host::NativeKey;
use warden_host::client::{RequestParams, new_key_and_csr};
use warden_host::{CredentialPaths, GENERATION_MARKER, load_credentials};
use warden_tests::common::tempdir;
use warden_tests::server::{
    Options, OwnCa, Tmpfs, Warden, check_response, replace_file, snapshot, warden_binary,
};
use warden_tests::{common, server};

const FILES: [&str; 3] = ["ca.crt", "issuer.crt", "issuer.key"];

fn paths(dir: &Path) -> CredentialPaths {
    CredentialPaths::new(dir, "ca.crt", "issuer.crt", "issuer.key")
}

/// Issues one leaf over a fresh connection that trusts `anchors` and checks it.
async fn issue_one(warden: &Warden, anchors: &Path, app: &str) {
    let mut client = server::connect_client(&warden.address(), anchors, &warden.server_id)
        .await
        .unwrap_or_else(|e| panic!("{e}; output:\n{}", warden.output.text()));
    issue_on(&mut client, warden, anchors, app).await;
}

async fn issue_on(
    client: &mut warden_host::proto::ca_client::CaClient<tonic::transport::Channel>,
    warden: &Warden,
    anchors: &Path,
    app: &str,
) {
    let (_, csr) = new_key_and_csr(KeyAlgorithm::P256).unwrap();
    let request = RequestParams::insecure(app, "default").to_request(&csr);
    let response = server::sign(client, request)
        .await
        .unwrap_or_else(|s| panic!("{app}: {s:?}; output:\n{}", warden.output.text()));
    check_response(
        &response,
        anchors,
        &format!("spiffe://public/ns/default/{app}"),
    );
}

/// What a credential directory holds after a fault.
#[derive(Debug, PartialEq, Eq)]
enum State {
    /// No `ca.crt`: the next start generates a new set. Any credential file present is complete.
    NoSet,
    /// All three files, and they load as a valid set.
    Complete,
}

/// Checks the all-or-nothing invariant and returns which state the directory is in.
fn inspect(dir: &Path) -> State {
    let present = |name: &str| dir.join(name).exists();
    // Files renamed into place are never truncated: each one present parses.
    if present("issuer.key") {
        NativeKey::from_pem(&fs::read(dir.join("issuer.key")).unwrap())
            .unwrap_or_else(|e| panic!("issuer.key in {} is not a whole key: {e}", dir.display()));
    }
    for name in ["issuer.crt", "ca.crt"] {
        if present(name) {
            let certs = parse_certificates(&fs::read(dir.join(name)).unwrap())
                .unwrap_or_else(|e| panic!("{name} in {} is not whole: {e}", dir.display()));
            assert!(!certs.is_empty(), "{name} holds no certificate");
        }
    }
    if present("ca.crt") {
        assert!(
            present("issuer.crt") && present("issuer.key"),
            "ca.crt without the rest of the set in {}: {:?}",
            dir.display(),
            names(dir)
        );
        load_credentials(&paths(dir), common::now())
            .unwrap_or_else(|e| panic!("a set with ca.crt must be valid: {e}"));
        State::Complete
    } else {
        State::NoSet
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn temp_files(dir: &Path) -> Vec<String> {
    names(dir)
        .into_iter()
        .filter(|n| n.contains(".tmp-"))
        .collect()
}

/// Starts `warden-under-test` on free ports without waiting for anything (the harness waits for
/// health, which is too late to interrupt generation).
fn spawn_raw(dir: &Path) -> std::process::Child {
    let ports: Vec<u16> = (0..3)
        .map(|_| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        })
        .collect();
    Command::new(warden_binary())
        .arg("--issuer-credentials")
        .arg(dir)
        .args(["--listen-address", "127.0.0.1", "--port"])
        .arg(ports[0].to_string())
        .args(["--healthz-listen-address", "127.0.0.1", "--healthz-port"])
        .arg(ports[1].to_string())
        .args(["--metrics-listen-address", "127.0.0.1", "--metrics-port"])
        .arg(ports[2].to_string())
        .env("NAMESPACE", "default")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// How long after spawn `ca.crt` appears on a first start (polled every 0.5 ms).
fn time_to_complete_set() -> Duration {
    let parent = tempdir();
    let dir = parent.path().join("creds");
    let started = Instant::now();
    let mut child = spawn_raw(&dir);
    while !dir.join("ca.crt").exists() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no ca.crt after 30 s"
        );
        std::thread::sleep(Duration::from_micros(500));
    }
    let elapsed = started.elapsed();
    let _ = child.kill();
    let _ = child.wait();
    elapsed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_first_start_leaves_a_complete_set_or_none() {
    let full = time_to_complete_set();
    // The kill point hovers around the moment the files are written: later after a kill that
    // found nothing, earlier after one that found a complete set (start-up jitter spreads the
    // kills over the write window). The first kill comes before anything is written.
    let mut delay = Duration::ZERO;
    let mut seen = Vec::new();
    for i in 0..16 {
        let parent = tempdir();
        let dir = parent.path().join("creds");
        let mut child = spawn_raw(&dir);
        std::thread::sleep(delay);
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let state = inspect(&dir);
        let before = snapshot_if_exists(&dir);
        seen.push((delay.as_micros(), state.name(), names(&dir)));

        // The next start must serve, with a complete set and no litter.
        let warden = Warden::start(&dir);
        assert_eq!(inspect(&dir), State::Complete, "run {i}");
        assert!(
            temp_files(&dir).is_empty(),
            "run {i}: temporary files left after the restart: {:?}",
            names(&dir)
        );
        if state == State::Complete {
            assert_eq!(
                snapshot_if_exists(&dir),
                before,
                "run {i}: a complete set must be loaded as is, not regenerated"
            );
        }
        issue_one(&warden, &dir.join("ca.crt"), &format!("kill{i}")).await;
        delay = match state {
            State::NoSet if delay.is_zero() => full * 8 / 10,
            State::NoSet => delay * 11 / 10 + Duration::from_millis(1),
            State::Complete => delay * 9 / 10,
        };
    }
    eprintln!("time to a complete set: {full:?}; (delay us, state, files): {seen:?}");
    assert!(
        seen.iter().any(|(_, s, _)| *s == "none") && seen.iter().any(|(_, s, _)| *s == "complete"),
        "the kill points must cover both outcomes: {seen:?}"
    );
}

impl State {
    fn name(&self) -> &'static str {
        match self {
            Self::NoSet => "none",
            Self::Complete => "complete",
        }
    }
}

/// The credential files (not the generation marker, which a load of a complete set removes).
fn snapshot_if_exists(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    if dir.exists() {
        let mut files = snapshot(dir);
        files.retain(|name, _| FILES.contains(&name.as_str()));
        files
    } else {
        std::collections::BTreeMap::new()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_after_a_crash_mid_write_cleans_up_and_generates() {
    // The state a crash between two renames leaves: issuer.key in place, issuer.crt only as a
    // truncated temporary file, no ca.crt.
    let parent = tempdir();
    let dir = parent.path().join("creds");
    fs::create_dir(&dir).unwrap();
    let other = tempdir();
    let ca = OwnCa::generate();
    ca.write(other.path(), &ca.issuer());
    fs::copy(other.path().join("issuer.key"), dir.join("issuer.key")).unwrap();
    let crt = fs::read(other.path().join("issuer.crt")).unwrap();
    fs::write(dir.join(".issuer.crt.tmp-4242"), &crt[..crt.len() / 2]).unwrap();
    assert_eq!(inspect(&dir), State::NoSet);

    // Without the marker a generation writes first, these are somebody's issuer files (ca.crt
    // deleted by hand): refused and left alone.
    let exited = Warden::start_failure(&dir, &Options::new());
    exited.assert_fatal(&["ca.crt", "refusing to start"]);
    assert!(dir.join("issuer.key").exists() && !dir.join("ca.crt").exists());

    // With it, they are an interrupted generation's: cleaned up and generated again.
    fs::write(dir.join(GENERATION_MARKER), "").unwrap();
    let warden = Warden::start(&dir);
    assert_eq!(names(&dir), FILES, "the temporary file is gone");
    assert_eq!(inspect(&dir), State::Complete);
    issue_one(&warden, &dir.join("ca.crt"), "aftercrash").await;
}

// ---------------------------------------------------------------------------------------------
// Disk full.

#[test]
fn disk_full_during_generation_is_a_clear_error_and_leaves_no_half_set() {
    let mut outcomes = Vec::new();
    // 0: not even the first file fits; 4 KiB: one file; 8 KiB: two files; the third never fits.
    for free in [0, 4096, 8192] {
        let Some(fs_small) = Tmpfs::mount("16k") else {
            return;
        };
        fs_small.fill_leaving(free as u64);
        let dir = fs_small.mount_point.join("creds");
        let exited = Warden::start_failure(&dir, &Options::new());
        let msg = exited.assert_fatal(&["No space left on device"]);
        assert!(
            FILES
                .iter()
                .chain([&GENERATION_MARKER])
                .any(|f| msg.contains(f)),
            "the error must name the file: {msg}"
        );
        assert_eq!(
            inspect(&dir),
            State::NoSet,
            "free {free}: {:?}",
            names(&dir)
        );
        assert!(
            temp_files(&dir).is_empty(),
            "free {free}: temporary files left: {:?}",
            names(&dir)
        );
        outcomes.push((free, msg, names(&dir)));
        // Space again: the next start completes the set and serves.
        fs::remove_file(fs_small.mount_point.join("filler")).unwrap();
        let warden = Warden::start(&dir);
        assert_eq!(inspect(&dir), State::Complete);
        drop(warden);
    }
    eprintln!("disk-full outcomes (free bytes, fatal message, files): {outcomes:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_set_on_a_full_disk_is_loaded_untouched() {
    let Some(fs_small) = Tmpfs::mount("16k") else {
        return;
    };
    let dir = fs_small.mount_point.join("creds");
    fs::create_dir(&dir).unwrap();
    let ca = OwnCa::generate();
    ca.write(&dir, &ca.issuer());
    fs_small.fill_leaving(0);
    let before = snapshot(&dir);
    let warden = Warden::start(&dir);
    issue_one(&warden, &dir.join("ca.crt"), "fulldisk").await;
    assert_eq!(snapshot(&dir), before);
    assert!(temp_files(&dir).is_empty());
}

// ---------------------------------------------------------------------------------------------
// The directory deleted under a running server.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_directory_deleted_while_running_keeps_serving() {
    let parent = tempdir();
    let dir = parent.path().join("creds");
    fs::create_dir(&dir).unwrap();
    let ca = OwnCa::generate();
    let first = ca.issuer();
    ca.write(&dir, &first);
    let anchors = common::write_file(parent.path(), "anchors.pem", ca.root_pem());
    let warden = Warden::start_with(&dir, &Options::new().args(["--log-level", "debug"]));
    let mut open = server::connect_client(&warden.address(), &anchors, &warden.server_id)
        .await
        .unwrap();
    issue_on(&mut open, &warden, &anchors, "before").await;

    let mark = warden.output.mark();
    fs::remove_dir_all(&dir).unwrap();
    for needle in [
        "Failed to reload issuer credentials",
        "is gone; still serving",
    ] {
        warden
            .output
            .wait_for(mark, "error", needle, Duration::from_secs(20))
            .await;
    }
    // Both the open connection and a new one are served with the loaded issuer.
    issue_on(&mut open, &warden, &anchors, "deleted").await;
    issue_one(&warden, &anchors, "deletednew").await;
    assert_eq!(warden.healthz().0, 200);

    // The directory comes back with a new issuer: the server serves, and picks the new issuer up.
    let second = ca.issuer();
    fs::create_dir(&dir).unwrap();
    let mark = warden.output.mark();
    ca.write(&dir, &second);
    replace_file(&dir, "issuer.crt", second.certificate_pem());
    issue_one(&warden, &anchors, "restored").await;
    let picked_up = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if warden
                .output
                .find(mark, "info", "CA certificate key pair ready")
                .is_some()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .is_ok();
    assert!(
        picked_up,
        "the restored directory's new issuer was not loaded; output:\n{}",
        warden.output.text()
    );
    let (_, csr) = new_key_and_csr(KeyAlgorithm::P256).unwrap();
    let response = server::sign(
        &mut open,
        RequestParams::insecure("newissuer", "default").to_request(&csr),
    )
    .await
    .unwrap();
    let issued = check_response(&response, &anchors, "spiffe://public/ns/default/newissuer");
    assert_eq!(
        issued.akid(),
        second.skid(),
        "leaves come from the restored issuer"
    );
}

//! Root rotation without downtime (`warden root rotate prepare | activate | finish`) against a
//! running server: client loops that refresh their anchors from every response see no failed
//! request and no failed TLS connection from the first root to the second; during the overlap a
//! leaf under the old root and a leaf under the new one complete an mTLS handshake with each
//! other (openssl s_server / s_client trusting the published ca.crt); each phase is refused
//! until its wait has passed; a crash between or inside phases is finished by re-running.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use warden_core::bundle::parse_certificates;
use warden_core::spiffe::SpiffeId;
use warden_tests::common::{OPENSSL_KEYS, openssl, openssl_csr, read_file, run, tempdir, try_run};
use warden_tests::server::{
    Options, Warden, check_response, ders, mode, request, sign, warden_binary,
};
use warden_tests::{common, server};
use x509_cert::Certificate;

/// `warden-under-test root rotate <step> --issuer-credentials dir <extra>`.
fn rotate(step: &str, dir: &Path, extra: &[&str]) -> common::CmdOutput {
    let mut cmd = Command::new(warden_binary());
    cmd.args(["root", "rotate", step, "--issuer-credentials"])
        .arg(dir)
        .args(extra)
        .env_remove("RUST_LOG");
    try_run(cmd)
}

fn status(dir: &Path, json: bool) -> common::CmdOutput {
    let mut cmd = Command::new(warden_binary());
    cmd.args(["status", "--issuer-credentials"]).arg(dir);
    if json {
        cmd.args(["--output", "json"]);
    }
    run(cmd)
}

fn ok(out: common::CmdOutput, what: &str) -> common::CmdOutput {
    assert!(
        out.success,
        "{what} failed ({:?}):\n{}",
        out.code,
        out.combined()
    );
    out
}

fn refused(out: common::CmdOutput, needle: &str, what: &str) -> String {
    let text = out.combined();
    assert!(!out.success, "{what} should have been refused:\n{text}");
    assert!(
        text.contains(needle),
        "{what}: expected {needle:?} in:\n{text}"
    );
    text
}

fn anchors_in(dir: &Path) -> Vec<Certificate> {
    parse_certificates(&read_file(&dir.join("ca.crt"))).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Client loops that refresh their anchors from each response, as daprd does.

#[derive(Debug, Default)]
struct Seen {
    /// (number of anchors in trust_chain_certificates, issuer DER) of each success, in order.
    responses: Vec<(usize, Vec<u8>)>,
    failures: Vec<String>,
}

/// A loop's latest response: anchor count and issuer DER.
type Latest = Arc<Mutex<(usize, Vec<u8>)>>;

struct Loops {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    latest: Vec<Latest>,
    tasks: Vec<tokio::task::JoinHandle<Seen>>,
}

impl Loops {
    /// One loop on a long-lived connection, one that opens a new TLS connection per request
    /// with the anchors of the last response (never re-reading ca.crt).
    async fn start(warden: &Warden, csr: Vec<u8>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let mut latest = Vec::new();
        let mut tasks = Vec::new();
        for fresh in [false, true] {
            let stop = Arc::clone(&stop);
            let ok = Arc::clone(&ok);
            let mine = Arc::new(Mutex::new((0usize, Vec::new())));
            latest.push(Arc::clone(&mine));
            let csr = csr.clone();
            let address = warden.address();
            let expected = SpiffeId::parse(&warden.server_id).unwrap();
            let mut anchors = parse_certificates(&read_file(&warden.trust_anchors_path())).unwrap();
            let mut client = warden.client().await;
            tasks.push(tokio::spawn(async move {
                let mut seen = Seen::default();
                let pause = Duration::from_millis(if fresh { 30 } else { 10 });
                let app = if fresh { "fresh" } else { "steady" };
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    if fresh {
                        let config = warden_host::client::spiffe_client_config(
                            anchors.clone(),
                            expected.clone(),
                        )
                        .unwrap();
                        match warden_host::client::connect(&address, Arc::new(config)).await {
                            Ok(c) => client = c,
                            Err(e) => {
                                seen.failures.push(format!("{app} {n}: TLS connect: {e:?}"));
                                tokio::time::sleep(pause).await;
                                continue;
                            }
                        }
                    }
                    match sign(&mut client, request(app, "default", "", &csr)).await {
                        Ok(response) => {
                            let chain = parse_certificates(&response.workload_certificate);
                            let sent = response
                                .trust_chain_certificates
                                .first()
                                .map(|pem| parse_certificates(pem));
                            match (chain.as_deref(), sent) {
                                (Ok([_leaf, issuer, ..]), Some(Ok(sent))) if !sent.is_empty() => {
                                    let issuer = ders(std::slice::from_ref(issuer)).remove(0);
                                    *mine.lock().unwrap() = (sent.len(), issuer.clone());
                                    seen.responses.push((sent.len(), issuer));
                                    anchors = sent;
                                    ok.fetch_add(1, Ordering::Relaxed);
                                }
                                other => seen
                                    .failures
                                    .push(format!("{app} {n}: bad response {other:?}")),
                            }
                        }
                        Err(status) => seen.failures.push(format!("{app} {n}: {status:?}")),
                    }
                    tokio::time::sleep(pause).await;
                }
                seen
            }));
        }
        Self {
            stop,
            ok,
            latest,
            tasks,
        }
    }

    /// Waits until every loop's latest response satisfies `pred(anchor count, issuer DER)`.
    async fn wait_all(&self, what: &str, pred: impl Fn(usize, &[u8]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if self.latest.iter().all(|l| {
                let l = l.lock().unwrap();
                pred(l.0, &l.1)
            }) {
                return;
            }
            assert!(Instant::now() < deadline, "loops never saw {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn wait_for_more(&self, more: u64) {
        let target = self.ok.load(Ordering::Relaxed) + more;
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.ok.load(Ordering::Relaxed) < target {
            assert!(
                Instant::now() < deadline,
                "fewer than {more} more successes"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn finish(self) -> Vec<Seen> {
        self.stop.store(true, Ordering::Relaxed);
        let mut out = Vec::new();
        for task in self.tasks {
            out.push(task.await.unwrap());
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// A leaf from the server, with its key, for openssl.

struct Leaf {
    cert: PathBuf,
    chain: PathBuf,
    key: PathBuf,
}

async fn leaf(warden: &Warden, dir: &Path, app: &str) -> (Leaf, Certificate) {
    std::fs::create_dir_all(dir).unwrap();
    let csr = openssl_csr(dir, &OPENSSL_KEYS[0]);
    let mut client = warden.client().await;
    let response = sign(&mut client, request(app, "default", "", &csr.pem))
        .await
        .unwrap();
    let issued = check_response(
        &response,
        &warden.trust_anchors_path(),
        &format!("spiffe://public/ns/default/{app}"),
    );
    let cert = common::write_file(dir, "leaf.pem", common::certificate_pem(&issued.leaf));
    let chain = common::write_file(
        dir,
        "chain.pem",
        warden_core::bundle::certificates_to_pem(issued.intermediates.iter()).unwrap(),
    );
    (
        Leaf {
            cert,
            chain,
            key: dir.join(csr.key_file),
        },
        issued.intermediates[0].clone(),
    )
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `openssl s_server` holding `server`, client certificate required, and `openssl s_client`
/// holding `client`, each trusting only `ca` and failing on any verification error; both
/// verify at `at` (Unix seconds: an instant when both leaves are valid).
fn mtls_handshake(
    work: &Path,
    ca: &Path,
    server: &Leaf,
    client: &Leaf,
    at: u64,
) -> Result<(), String> {
    use std::io::Write as _;
    let port = free_port();
    let at = at.to_string();
    let path = |p: &Path| p.to_str().unwrap().to_owned();
    let tls_args = |leaf: &Leaf| {
        vec![
            "-cert".to_owned(),
            path(&leaf.cert),
            "-cert_chain".to_owned(),
            path(&leaf.chain),
            "-key".to_owned(),
            path(&leaf.key),
            "-CAfile".to_owned(),
            path(ca),
            "-verify_return_error".to_owned(),
            "-attime".to_owned(),
            at.clone(),
            "-x509_strict".to_owned(),
        ]
    };
    let server_log = work.join(format!("s_server-{port}.log"));
    // -www answers a request only after the handshake, with the client certificate verified
    // (-Verify: required; -verify_return_error: any verification error aborts).
    let mut s_server = openssl(
        work,
        [
            "s_server",
            "-accept",
            &format!("127.0.0.1:{port}"),
            "-naccept",
            "1",
            "-www",
            "-Verify",
            "2",
        ],
    )
    .args(tls_args(server))
    .stdin(Stdio::null())
    .stdout(std::fs::File::create(&server_log).unwrap())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let client_text = loop {
        let mut s_client = openssl(
            work,
            [
                "s_client",
                "-connect",
                &format!("127.0.0.1:{port}"),
                "-ign_eof",
                "-brief",
            ],
        )
        .args(tls_args(client))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
        let _ = s_client
            .stdin
            .take()
            .unwrap()
            .write_all(b"GET / HTTP/1.0\r\n\r\n");
        let out = s_client.wait_with_output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if text.contains("errno=111") && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        break text;
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while s_server.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = s_server.kill();
    let _ = s_server.wait();
    let server_text = String::from_utf8_lossy(&read_file(&server_log)).into_owned();
    if client_text.contains("Verification: OK") && client_text.contains("HTTP/1.0 200 ok") {
        Ok(())
    } else {
        Err(format!(
            "the mTLS handshake failed:\n--- s_client ---\n{client_text}\n--- s_server ---\n{server_text}"
        ))
    }
}

// ---------------------------------------------------------------------------------------------

const CONFIG: &str = "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: daprsystem\nspec:\n  mtls:\n    enabled: true\n    workloadCertTTL: 4s\n    allowedClockSkew: 0s\n";
/// TTL + skew + the 5 s reload margin of `warden root rotate`.
const WAIT: Duration = Duration::from_secs(4 + 5);

/// The DER of each certificate in `issuer.crt`.
fn issuer_ders(dir: &Path) -> Vec<Vec<u8>> {
    ders(&parse_certificates(&read_file(&dir.join("issuer.crt"))).unwrap())
}

/// A rotation of the root of a running server whose clients run in `loops`: the phases with
/// their flags, and the checks after each.
struct Rotation<'a> {
    warden: &'a Warden,
    loops: &'a Loops,
    /// Scratch space: the new root key, leaves, the overlap bundle.
    work: &'a Path,
    /// `--issuer-credentials`.
    dir: &'a Path,
    config_flag: String,
    /// `--root-key-out` of prepare, `--root-key` of activate.
    key: PathBuf,
}

impl Rotation<'_> {
    fn activate_flags(&self) -> [&str; 4] {
        [
            "--root-key",
            self.key.to_str().unwrap(),
            "--config",
            &self.config_flag,
        ]
    }

    fn finish_flags(&self) -> [&str; 2] {
        ["--config", &self.config_flag]
    }

    /// Runs `step`, which must succeed; returns the log mark taken before.
    fn run_ok(&self, step: &str, flags: &[&str]) -> usize {
        let mark = self.warden.output.mark();
        ok(rotate(step, self.dir, flags), step);
        mark
    }

    /// Waits for the server to reload its issuer credentials (logged after `mark`).
    async fn reloaded_since(&self, mark: usize) {
        self.warden
            .output
            .wait_for(
                mark,
                "warning",
                "Issuer credentials changed; reloading",
                Duration::from_secs(15),
            )
            .await;
    }

    /// prepare: both roots published (the old one first); every loop learns them from its
    /// next response. Returns both roots and when prepare ended.
    async fn prepare_publishes_both_roots(
        &self,
        old_root: &[Certificate],
    ) -> (Vec<Certificate>, Instant) {
        let out = ok(
            rotate(
                "prepare",
                self.dir,
                &["--root-key-out", self.key.to_str().unwrap()],
            ),
            "prepare",
        );
        eprintln!("{}", out.combined());
        let prepared_at = Instant::now();
        assert_eq!(mode(&self.key), 0o600);
        let both = anchors_in(self.dir);
        assert_eq!(both.len(), 2);
        assert_eq!(both[0], old_root[0]);
        assert!(
            status(self.dir, false)
                .stdout
                .contains("Root rotation: prepared")
        );
        self.loops.wait_all("both anchors", |n, _| n == 2).await;
        (both, prepared_at)
    }

    /// Right after prepare, finish and activate are refused.
    fn next_phases_are_refused_too_early(&self) {
        refused(
            rotate("finish", self.dir, &self.finish_flags()),
            "run `warden root rotate activate` first",
            "finish after prepare",
        );
        refused(
            rotate("activate", self.dir, &self.activate_flags()),
            "activate is refused until",
            "early activate",
        );
    }

    /// activate: the new issuer is signed by the new root (`both[1]`), the server reloads it
    /// and every loop gets leaves from it. Returns the new issuer's DER and when activate
    /// ended.
    async fn activate_switches_to_the_new_issuer(
        &self,
        both: &[Certificate],
    ) -> (Vec<u8>, Instant) {
        let mark = self.run_ok("activate", &self.activate_flags());
        let activated_at = Instant::now();
        let new_issuer = issuer_ders(self.dir);
        assert_eq!(
            parse_certificates(&read_file(&self.dir.join("issuer.crt"))).unwrap()[0]
                .tbs_certificate()
                .issuer(),
            both[1].tbs_certificate().subject()
        );
        self.reloaded_since(mark).await;
        let issuer_der = new_issuer[0].clone();
        self.loops
            .wait_all("the new issuer", |_, issuer| {
                issuer == issuer_der.as_slice()
            })
            .await;
        (issuer_der, activated_at)
    }

    /// Overlap: a leaf under the new root and `old_leaf` (under the old root) accept each
    /// other. Returns the new leaf, the instant both were checked at, and a copy of the
    /// overlap bundle.
    async fn overlap_leaves_accept_each_other(&self, old_leaf: &Leaf) -> (Leaf, u64, PathBuf) {
        let (new_leaf, _) = leaf(self.warden, &self.work.join("new"), "new-leaf").await;
        let now = common::now().as_secs();
        let ca = self.dir.join("ca.crt");
        mtls_handshake(self.work, &ca, old_leaf, &new_leaf, now).unwrap();
        mtls_handshake(self.work, &ca, &new_leaf, old_leaf, now).unwrap();
        let overlap_ca = self.work.join("overlap-ca.crt");
        std::fs::copy(&ca, &overlap_ca).unwrap();
        (new_leaf, now, overlap_ca)
    }

    /// finish before the wait: refused, ca.crt untouched.
    fn finish_is_refused_too_early(&self) {
        let text = refused(
            rotate("finish", self.dir, &self.finish_flags()),
            "finish is refused until",
            "early finish",
        );
        assert!(text.contains("--force"), "{text}");
        assert_eq!(anchors_in(self.dir).len(), 2);
        assert!(
            status(self.dir, false)
                .stdout
                .contains("Root rotation: active")
        );
    }

    /// finish: only the new root (`both[1]`) is left, the server reloads and the loops see
    /// only it, and keep succeeding.
    async fn finish_leaves_only_the_new_root(&self, both: &[Certificate]) {
        let mark = self.run_ok("finish", &self.finish_flags());
        assert_eq!(anchors_in(self.dir), vec![both[1].clone()]);
        self.reloaded_since(mark).await;
        self.loops
            .wait_all("only the new anchor", |n, _| n == 1)
            .await;
        self.loops.wait_for_more(10).await;
    }

    /// The handshake check is not vacuous: with only the new root trusted, the old-root leaf
    /// is refused (at the same instant `now` as in the overlap), while the overlap bundle
    /// still accepts it.
    fn old_leaf_is_refused_after_finish(
        &self,
        (old_leaf, new_leaf): (&Leaf, &Leaf),
        now: u64,
        overlap_ca: &Path,
    ) {
        let err = mtls_handshake(self.work, &self.dir.join("ca.crt"), old_leaf, new_leaf, now)
            .expect_err("after finish a leaf under the old root must be refused");
        assert!(
            err.contains("Verification error") || err.contains("verify error"),
            "{err}"
        );
        mtls_handshake(self.work, overlap_ca, old_leaf, new_leaf, now).unwrap();
        let status_text = status(self.dir, false).stdout;
        assert!(
            status_text.contains("Root rotation: finished"),
            "{status_text}"
        );
    }
}

/// Loop `i` saw no failure; its anchors went 1 → 2 → 1, never back; its issuers went
/// `old_issuer` → `new_issuer`, never back.
fn loop_never_failed_nor_went_back(i: usize, seen: &Seen, old_issuer: &[u8], new_issuer: &[u8]) {
    assert!(
        seen.failures.is_empty(),
        "loop {i}: {} failures:\n{}",
        seen.failures.len(),
        seen.failures.join("\n")
    );
    let counts: Vec<usize> = seen.responses.iter().map(|r| r.0).collect();
    let mut phases = counts.clone();
    phases.dedup();
    assert_eq!(phases, vec![1, 2, 1], "loop {i}: anchor counts over time");
    let switch = seen
        .responses
        .iter()
        .position(|r| r.1 == new_issuer)
        .unwrap();
    assert!(
        seen.responses[..switch].iter().all(|r| r.1 == old_issuer),
        "loop {i}"
    );
    assert!(
        seen.responses[switch..].iter().all(|r| r.1 == new_issuer),
        "loop {i}"
    );
    eprintln!("loop {i}: {} requests, all succeeded", seen.responses.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_root_rotation_under_client_loops_without_a_failure() {
    let started = Instant::now();
    let work = tempdir();
    let creds = tempdir();
    let dir = creds.path();
    let config = common::write_file(work.path(), "config.yaml", CONFIG);
    let config_flag = config.to_str().unwrap().to_owned();
    let warden = Warden::start_with(dir, &Options::new().args(["--config", &config_flag]));
    let old_root = anchors_in(dir);
    assert_eq!(old_root.len(), 1);
    let old_issuer = issuer_ders(dir);

    let csr = openssl_csr(work.path(), &OPENSSL_KEYS[1]).pem;
    let loops = Loops::start(&warden, csr).await;
    loops.wait_for_more(10).await;
    let rotation = Rotation {
        warden: &warden,
        loops: &loops,
        work: work.path(),
        dir,
        config_flag,
        key: work.path().join("new-root.key"),
    };

    let (both, prepared_at) = rotation.prepare_publishes_both_roots(&old_root).await;
    rotation.next_phases_are_refused_too_early();
    // A leaf under the old root, taken just before the switch.
    tokio::time::sleep(WAIT.saturating_sub(prepared_at.elapsed())).await;
    let (old_leaf, old_leaf_issuer) = leaf(&warden, &work.path().join("old"), "old-leaf").await;
    assert_eq!(
        ders(std::slice::from_ref(&old_leaf_issuer)),
        old_issuer[..1]
    );
    let (new_issuer, activated_at) = rotation.activate_switches_to_the_new_issuer(&both).await;
    let (new_leaf, now, overlap_ca) = rotation.overlap_leaves_accept_each_other(&old_leaf).await;
    rotation.finish_is_refused_too_early();
    tokio::time::sleep(WAIT.saturating_sub(activated_at.elapsed())).await;
    rotation.finish_leaves_only_the_new_root(&both).await;
    rotation.old_leaf_is_refused_after_finish((&old_leaf, &new_leaf), now, &overlap_ca);

    let seen = loops.finish().await;
    for (i, s) in seen.iter().enumerate() {
        loop_never_failed_nor_went_back(i, s, &old_issuer[0], &new_issuer);
    }
    eprintln!("root rotation under load took {:?}", started.elapsed());
}

/// Puts back `name` in `dir` as it was (as if the crash came before it was replaced).
fn restore(dir: &Path, name: &str, bytes: &[u8]) {
    server::replace_file(dir, name, bytes);
}

/// A process killed with SIGKILL right after prepare (with `--root-key-out key_flag`): status
/// shows the phase.
fn sigkill_right_after_prepare(dir: &Path, key_flag: &str) {
    let mut child = Command::new(warden_binary())
        .args(["root", "rotate", "prepare", "--issuer-credentials"])
        .arg(dir)
        .args(["--root-key-out", key_flag])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !dir.join("root-rotation.json").exists() || anchors_in(dir).len() < 2 {
        assert!(Instant::now() < deadline, "prepare never wrote its state");
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
    let text = status(dir, false).stdout;
    assert!(text.contains("Root rotation: prepared"), "{text}");
}

/// A crash inside prepare after the state file, before ca.crt (put back as `ca_before`):
/// status says so, activate refuses, and prepare publishes the recorded root (no new key).
/// Returns the recorded new root's SHA-256.
fn crash_inside_prepare_before_publication(dir: &Path, key: &Path, ca_before: &[u8]) -> String {
    let key_flag = key.to_str().unwrap();
    let state_file = dir.join("root-rotation.json");
    let mut state: serde_json::Value = serde_json::from_slice(&read_file(&state_file)).unwrap();
    let new_root = state["new_root_sha256"].as_str().unwrap().to_owned();
    state["published_at"] = serde_json::Value::Null;
    restore(
        dir,
        "root-rotation.json",
        &serde_json::to_vec(&state).unwrap(),
    );
    restore(dir, "ca.crt", ca_before);
    let text = status(dir, false).stdout;
    assert!(
        text.contains("Root rotation: prepared (new root not yet published in ca.crt)")
            && text.contains("next:            warden root rotate prepare"),
        "{text}"
    );
    refused(
        rotate("activate", dir, &["--root-key", key_flag, "--force"]),
        "re-run `warden root rotate prepare`",
        "activate before publication",
    );
    let key_bytes = read_file(key);
    ok(
        rotate("prepare", dir, &["--root-key-out", key_flag]),
        "resumed prepare",
    );
    assert_eq!(
        read_file(key),
        key_bytes,
        "the key made before the crash is kept"
    );
    assert_eq!(anchors_in(dir).len(), 2);
    let json: serde_json::Value = serde_json::from_str(&status(dir, true).stdout).unwrap();
    assert_eq!(json["root_rotation"]["phase"], "prepared");
    assert_eq!(json["root_rotation"]["new_root_sha256"], new_root.as_str());
    assert!(json["root_rotation"]["published_at"].is_string(), "{json}");
    assert_eq!(json["root_rotation"]["next"], "warden root rotate activate");
    new_root
}

/// A crash inside activate after the issuer files, before the state: status still says
/// prepared; activate again records it.
fn crash_inside_activate_before_the_state(dir: &Path, key_flag: &str) {
    let state_before = read_file(&dir.join("root-rotation.json"));
    let out = ok(
        rotate("activate", dir, &["--root-key", key_flag, "--force"]),
        "forced activate",
    );
    assert!(
        out.stderr.contains("WARNING: --force"),
        "{}",
        out.combined()
    );
    restore(dir, "root-rotation.json", &state_before);
    assert!(
        status(dir, false)
            .stdout
            .contains("Root rotation: prepared")
    );
    refused(
        rotate("finish", dir, &["--force"]),
        "run `warden root rotate activate` first",
        "finish while prepared",
    );
    ok(
        rotate("activate", dir, &["--root-key", key_flag, "--force"]),
        "activate again",
    );
    assert!(status(dir, false).stdout.contains("Root rotation: active"));
}

#[test]
fn a_crash_between_or_inside_phases_shows_in_status_and_the_next_command_continues() {
    let work = tempdir();
    let creds = tempdir();
    let dir = creds.path();
    let ca = server::OwnCa::generate();
    ca.write(dir, &ca.issuer());
    let key = work.path().join("new-root.key");
    let key_flag = key.to_str().unwrap();
    let ca_before = read_file(&dir.join("ca.crt"));

    sigkill_right_after_prepare(dir, key_flag);
    let new_root = crash_inside_prepare_before_publication(dir, &key, &ca_before);
    crash_inside_activate_before_the_state(dir, key_flag);

    // finish follows: refused before its wait, done with --force.
    refused(
        rotate("finish", dir, &[]),
        "finish is refused until",
        "finish with the default 24h wait",
    );
    ok(rotate("finish", dir, &["--force"]), "forced finish");
    let text = status(dir, false).stdout;
    assert!(
        text.contains("Root rotation: finished") && text.contains("State:       valid"),
        "{text}"
    );
    assert_eq!(anchors_in(dir).len(), 1);
    assert_eq!(super_fingerprint(&anchors_in(dir)[0]), new_root);
}

fn super_fingerprint(cert: &Certificate) -> String {
    warden_host::fingerprint(cert)
}

/// The new root key created and used inside a SoftHSM2 token (labels old-root → new-root).
#[test]
fn root_rotation_with_the_new_key_in_an_hsm() {
    const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
    const PIN: &str = "rr-user-pin";
    let token = tempdir();
    let tokens = token.path().join("tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    let conf = common::write_file(
        token.path(),
        "softhsm2.conf",
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    );
    let mut init = Command::new("softhsm2-util");
    init.args(["--init-token", "--free", "--label", "rr"])
        .args(["--pin", PIN, "--so-pin", "rr-so-pin"])
        .env("SOFTHSM2_CONF", &conf);
    run(init);
    let hsm = |label: &str| {
        [
            "--hsm-module",
            MODULE,
            "--hsm-token-label",
            "rr",
            "--hsm-key-label",
            label,
        ]
        .map(String::from)
        .to_vec()
    };
    let warden = |args: Vec<String>| {
        let mut cmd = Command::new(warden_binary());
        cmd.args(args)
            .env("SOFTHSM2_CONF", &conf)
            .env("WARDEN_HSM_PIN", PIN)
            .env_remove("RUST_LOG");
        try_run(cmd)
    };
    let creds = tempdir();
    let dir = creds.path().to_str().unwrap().to_owned();
    let step = |name: &str, extra: Vec<String>| {
        let mut args: Vec<String> = ["root", "rotate", name, "--issuer-credentials", &dir]
            .map(String::from)
            .to_vec();
        args.extend(extra);
        warden(args)
    };
    let mut init_root: Vec<String> = ["hsm", "init-root", "--issuer-credentials", &dir]
        .map(String::from)
        .to_vec();
    init_root.extend(hsm("old-root"));
    ok(warden(init_root), "hsm init-root");

    // The label must be new: the current root's label is refused and nothing is published.
    refused(
        step("prepare", hsm("old-root")),
        "already exists",
        "prepare over an existing HSM key",
    );
    assert_eq!(anchors_in(creds.path()).len(), 1);
    ok(step("prepare", hsm("new-root")), "prepare in the HSM");
    let both = anchors_in(creds.path());
    assert_eq!(both.len(), 2);
    let text = status(creds.path(), false).stdout;
    assert!(
        text.contains(r#"new root key:    hsm token "rr" key "new-root""#),
        "{text}"
    );

    // activate with the old root's key is refused; with the new one it signs the issuer.
    let mut force = hsm("old-root");
    force.push("--force".into());
    refused(
        step("activate", force),
        "does not belong to the new root",
        "activate with the old root key",
    );
    let mut force = hsm("new-root");
    force.push("--force".into());
    ok(step("activate", force), "activate with the HSM key");
    let issuer = parse_certificates(&read_file(&creds.path().join("issuer.crt"))).unwrap();
    assert_eq!(
        issuer[0].tbs_certificate().issuer(),
        both[1].tbs_certificate().subject()
    );
    ok(step("finish", vec!["--force".into()]), "finish");
    assert_eq!(anchors_in(creds.path()), vec![both[1].clone()]);
    // Later issuer rotations use the new label.
    let mut rotate_issuer: Vec<String> = ["issuer", "rotate", "--issuer-credentials", &dir]
        .map(String::from)
        .to_vec();
    rotate_issuer.extend(hsm("new-root"));
    ok(warden(rotate_issuer), "issuer rotate with the new root");
    assert!(
        status(creds.path(), false)
            .stdout
            .contains("State:       valid")
    );
}

//! The `warden` server over its life: hot reload of the issuer under continuous load (and a
//! corrupt issuer refused while serving goes on), metrics and healthz, JSON start-up logs,
//! graceful shutdown with requests in flight, and the `identity fetch` client against it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use tonic::Code;
use warden_core::bundle::parse_certificates;
use warden_core::certificate::CertificateRef;
use warden_core::profile::Validity;
use warden_tests::common::{
    OPENSSL_KEYS, openssl, openssl_csr, openssl_genpkey, read_file, run, run_seed_recipe, tempdir,
    write_file,
};
use warden_tests::server::{
    Options, OwnCa, Warden, check_response, connect_client, ders, field, metric, mode,
    replace_file, request, sign, snapshot, warden_binary,
};
use warden_tests::{common, support};

// ---------------------------------------------------------------------------------------------
// Continuous load for the reload test.

/// What one load loop saw.
#[derive(Debug, Default)]
struct LoopReport {
    /// The issuer (DER of the certificate after the leaf) of every successful response, in order.
    issuers: Vec<Vec<u8>>,
    /// A sample of the `workload_certificate`s received, for the external verifiers: each first
    /// one from a new issuer, then every 25th.
    chains: Vec<String>,
    /// Every failure (connect, TLS to the server, call, or chain verification), described.
    failures: Vec<String>,
}

/// Request loops as daprd sidecars: each trusts only the `ca.crt` it was given at start, for
/// the server's certificate and for every returned chain (checked with rustls-webpki). Even
/// loops keep one connection (a request every 3 ms), odd ones open a new TLS connection for
/// every request (every 20 ms), as restarted sidecars do.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    latest_issuer: Arc<Mutex<Vec<u8>>>,
    tasks: Vec<tokio::task::JoinHandle<LoopReport>>,
}

impl Load {
    async fn start(warden: &Warden, anchors_file: &Path, csr: &[u8], loops: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let latest_issuer = Arc::new(Mutex::new(Vec::new()));
        let anchors = parse_certificates(&read_file(anchors_file)).unwrap();
        let mut tasks = Vec::new();
        for i in 0..loops {
            let fresh_connections = i % 2 == 1;
            let (stop, ok, latest_issuer) = (
                Arc::clone(&stop),
                Arc::clone(&ok),
                Arc::clone(&latest_issuer),
            );
            let (csr, anchors) = (csr.to_vec(), anchors.clone());
            let (address, server_id, anchors_file) = (
                warden.address(),
                warden.server_id.clone(),
                anchors_file.to_path_buf(),
            );
            let mut client = connect_client(&address, &anchors_file, &server_id)
                .await
                .unwrap();
            tasks.push(tokio::spawn(async move {
                let mut report = LoopReport::default();
                let pause = Duration::from_millis(if fresh_connections { 20 } else { 3 });
                let app = if fresh_connections { "fresh" } else { "steady" };
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    tokio::time::sleep(pause).await;
                    if fresh_connections {
                        match connect_client(&address, &anchors_file, &server_id).await {
                            Ok(c) => client = c,
                            Err(e) => {
                                report.failures.push(format!("loop {i} connect {n}: {e}"));
                                continue;
                            }
                        }
                    }
                    let response = match sign(&mut client, request(app, "default", "", &csr)).await
                    {
                        Ok(r) => r,
                        Err(status) => {
                            report
                                .failures
                                .push(format!("loop {i} call {n}: {status:?}"));
                            continue;
                        }
                    };
                    let certs = match parse_certificates(&response.workload_certificate) {
                        Ok(certs) if certs.len() >= 2 => certs,
                        other => {
                            report.failures.push(format!("loop {i} {n}: {other:?}"));
                            continue;
                        }
                    };
                    if let Err(e) =
                        support::webpki_verify(&certs[0], &certs[1..], &anchors, common::now())
                    {
                        report
                            .failures
                            .push(format!("loop {i} {n}: webpki with its ca.crt: {e:?}"));
                        continue;
                    }
                    let issuer = ders(&certs[1..2]).remove(0);
                    if report.issuers.last() != Some(&issuer) || report.issuers.len() % 25 == 0 {
                        report.chains.push(
                            String::from_utf8(response.workload_certificate.clone()).unwrap(),
                        );
                    }
                    *latest_issuer.lock().unwrap() = issuer.clone();
                    report.issuers.push(issuer);
                    ok.fetch_add(1, Ordering::Relaxed);
                }
                report
            }));
        }
        Self {
            stop,
            ok,
            latest_issuer,
            tasks,
        }
    }

    fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    /// Waits (up to 20 s) until `done(successful requests, latest issuer DER)` holds.
    async fn wait_for(&self, what: &str, done: impl Fn(u64, &[u8]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let issuer = self.latest_issuer.lock().unwrap().clone();
            if done(self.ok(), &issuer) {
                return;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until a response carried `issuer_der` as its issuer.
    async fn wait_for_issuer(&self, issuer_der: &[u8], what: &str) {
        self.wait_for(&format!("a leaf from the {what} issuer"), |_, issuer| {
            issuer == issuer_der
        })
        .await;
    }

    /// Waits until `more` further requests have succeeded.
    async fn wait_for_more(&self, more: u64) {
        let target = self.ok() + more;
        self.wait_for(&format!("{more} more successful requests"), |ok, _| {
            ok >= target
        })
        .await;
    }

    async fn finish(self) -> Vec<LoopReport> {
        self.stop.store(true, Ordering::Relaxed);
        let mut reports = Vec::new();
        for task in self.tasks {
            reports.push(task.await.unwrap());
        }
        reports
    }

    /// Stops, and checks that no request failed and that every loop saw leaves of `old` and
    /// then only of `new` (a refused reload must not replace `new`, `old` must not come back).
    async fn finish_switched_once(self, old: &[u8], new: &[u8]) -> Vec<LoopReport> {
        let reports = self.finish().await;
        for (i, report) in reports.iter().enumerate() {
            assert!(
                report.failures.is_empty(),
                "loop {i}: {} failed requests:\n{}",
                report.failures.len(),
                report.failures.join("\n")
            );
            let switch = report
                .issuers
                .iter()
                .position(|d| d == new)
                .unwrap_or_else(|| panic!("loop {i} never got a leaf of the new issuer"));
            assert!(switch > 0, "loop {i} saw no leaf of the old issuer");
            assert!(
                report.issuers[..switch].iter().all(|d| d == old),
                "loop {i}: a leaf before the switch came from an unknown issuer"
            );
            assert!(
                report.issuers[switch..].iter().all(|d| d == new),
                "loop {i}: after the switch every leaf must come from the new issuer"
            );
        }
        reports
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reload_swaps_the_issuer_without_a_failed_request_and_ignores_a_corrupt_one() {
    let work = tempdir();
    let creds = tempdir();
    let ca = OwnCa::generate();
    let first = ca.issuer();
    ca.write(creds.path(), &first);
    let first_der = ders(std::slice::from_ref(&first.certificate)).remove(0);

    let warden = Warden::start(creds.path());
    let csr = openssl_csr(work.path(), &OPENSSL_KEYS[2]).pem;
    let load = Load::start(&warden, &warden.trust_anchors_path(), &csr, 2).await;
    load.wait_for_issuer(&first_der, "first").await;
    load.wait_for_more(20).await;

    // Rotate: a new issuer key and certificate under the same root.
    let second = ca.issuer();
    let second_der = ders(std::slice::from_ref(&second.certificate)).remove(0);
    let mark = warden.output.mark();
    replace_file(creds.path(), "issuer.key", second.key_pem());
    replace_file(creds.path(), "issuer.crt", second.certificate_pem());
    warden
        .output
        .wait_for(
            mark,
            "warning",
            "Issuer credentials changed; reloading",
            Duration::from_secs(15),
        )
        .await;
    load.wait_for_issuer(&second_der, "second").await;
    load.wait_for_more(20).await;
    let mut client = warden.client().await;
    let response = sign(&mut client, request("rotated", "default", "", &csr))
        .await
        .unwrap();
    let issued = check_response(
        &response,
        &warden.trust_anchors_path(),
        "spiffe://public/ns/default/rotated",
    );
    assert_eq!(
        issued.akid(),
        second.skid(),
        "leaves after the reload are signed by the new issuer key"
    );
    assert_eq!(
        issued.leaf.tbs_certificate().issuer(),
        second.certificate.tbs_certificate().subject()
    );
    issued.openssl_verify(work.path(), &warden.trust_anchors_path(), "rotated");

    // A corrupt issuer.crt is refused; the second issuer keeps signing.
    let mark = warden.output.mark();
    replace_file(
        creds.path(),
        "issuer.crt",
        "-----BEGIN CERTIFICATE-----\nTUlJQmVhdA==\n",
    );
    let issuer_path = creds.path().join("issuer.crt").display().to_string();
    warden
        .output
        .wait_for(
            mark,
            "warning",
            "Issuer credentials changed; reloading",
            Duration::from_secs(15),
        )
        .await;
    let error = warden
        .output
        .wait_for(mark, "error", &issuer_path, Duration::from_secs(10))
        .await;
    eprintln!("reload refused: {}", field(&error, "msg"));
    load.wait_for_more(20).await;
    assert_eq!(warden.healthz().0, 200, "still healthy after a bad reload");

    load.finish_switched_once(&first_der, &second_der).await;
    let (_, text) = warden.metrics("/metrics");
    assert_eq!(
        metric(&text, "dapr_sentry_issuercert_expiry_timestamp"),
        Some(Validity::of(&second.certificate).not_after.as_secs() as f64),
        "the expiry gauge follows the reloaded issuer, not the refused one"
    );
    assert!(
        metric(&text, "dapr_sentry_issuercert_changed_total").unwrap_or(0.0) >= 2.0,
        "two change events were seen:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_and_show_issuer_expiry_and_healthz_is_ok() {
    let work = tempdir();
    let creds = tempdir();
    let warden = Warden::start(creds.path());
    let csr = openssl_csr(work.path(), &OPENSSL_KEYS[0]).pem;
    let mut client = warden.client().await;

    let (status, body) = warden.healthz();
    assert_eq!(status, 200, "healthz while serving: {body}");
    let (_, text) = warden.metrics("/metrics");
    assert_eq!(
        metric(&text, "dapr_sentry_cert_sign_request_received_total"),
        Some(0.0),
        "{text}"
    );

    const GOOD: u64 = 3;
    for i in 0..GOOD {
        sign(
            &mut client,
            request(&format!("app{i}"), "default", "", &csr),
        )
        .await
        .unwrap();
    }
    let bad = [
        (request("", "default", "", &csr), Code::PermissionDenied),
        (
            request("app", "default", "", b"garbage"),
            Code::InvalidArgument,
        ),
    ];
    let bad_count = bad.len() as u64;
    for (req, code) in bad {
        assert_eq!(sign(&mut client, req).await.unwrap_err().code(), code);
    }

    let issuer = parse_certificates(&read_file(&creds.path().join("issuer.crt"))).unwrap();
    let issuer_not_after = Validity::of(&issuer[0]).not_after.as_secs() as f64;
    for path in ["/metrics", "/"] {
        let (status, text) = warden.metrics(path);
        assert_eq!(status, 200, "GET {path}");
        assert_eq!(
            metric(&text, "dapr_sentry_cert_sign_request_received_total"),
            Some((GOOD + bad_count) as f64),
            "GET {path}:\n{text}"
        );
        assert_eq!(
            metric(&text, "dapr_sentry_cert_sign_success_total"),
            Some(GOOD as f64),
            "GET {path}:\n{text}"
        );
        assert_eq!(
            metric(&text, "dapr_sentry_issuercert_expiry_timestamp"),
            Some(issuer_not_after),
            "GET {path}:\n{text}"
        );
        assert_eq!(
            metric(&text, "dapr_sentry_issuercert_changed_total"),
            Some(1.0),
            "generating the CA counts as one change; GET {path}:\n{text}"
        );
    }
    assert_eq!(warden.healthz().0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_requests_in_flight_shuts_down_gracefully() {
    let work = tempdir();
    let creds = tempdir();
    let warden = Warden::start(creds.path());
    let csr = openssl_csr(work.path(), &OPENSSL_KEYS[3]).pem;
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for t in 0..4 {
        let mut client = warden.client().await;
        let (stop, ok, csr) = (Arc::clone(&stop), Arc::clone(&ok), csr.clone());
        tasks.push(tokio::spawn(async move {
            let mut errors = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match sign(&mut client, request(&format!("t{t}"), "default", "", &csr)).await {
                    Ok(_) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(status) => {
                        errors.push(status);
                        break;
                    }
                }
            }
            errors
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while ok.load(Ordering::Relaxed) < 20 {
        assert!(Instant::now() < deadline, "the load never got going");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let started = Instant::now();
    let mark = warden.output.mark();
    warden.send_sigterm();
    let (warden, exited) = tokio::task::spawn_blocking(move || {
        let mut warden = warden;
        let exited = warden.wait_exit();
        (warden, exited)
    })
    .await
    .unwrap();
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut errors = Vec::new();
    for task in tasks {
        errors.extend(task.await.unwrap());
    }
    assert_eq!(exited.code, Some(0), "{}", exited.output.text());
    assert!(
        exited
            .output
            .find(mark, "info", "Sentry shut down gracefully")
            .is_some(),
        "{}",
        exited.output.text()
    );
    assert!(
        exited.output.find(mark, "error", "grace period").is_none()
            && exited.fatal_lines().is_empty(),
        "in-flight requests must finish within the grace period:\n{}",
        exited.output.text()
    );
    assert!(
        took < Duration::from_secs(10),
        "shutdown took {took:?}; in-flight requests or idle connections held it up"
    );
    // Requests after the GOAWAY fail at the transport; none may be answered as a signing
    // failure (the CA must stay intact until the last in-flight request is done).
    for status in &errors {
        assert!(
            !matches!(
                status.code(),
                Code::PermissionDenied | Code::InvalidArgument
            ) && status.message() != "failed to sign certificate",
            "a request during shutdown got a CA answer instead of a closed connection: \
             {status:?}"
        );
    }
    eprintln!(
        "shutdown took {took:?}; {} successful requests; request errors after SIGTERM: {:?}",
        ok.load(Ordering::Relaxed),
        errors
            .iter()
            .map(|s| (s.code(), s.message().to_owned()))
            .collect::<Vec<_>>()
    );
    drop(warden);
}

/// Opens an HTTP/2 stream for SignCertificate and sends only its headers: the handler then
/// waits for a body that never comes, which keeps the server's graceful shutdown waiting.
/// Returns what must stay alive for the stream to stay open.
async fn stalled_sign_request(warden: &Warden) -> impl Sized + use<> {
    let anchors = parse_certificates(&read_file(&warden.trust_anchors_path())).unwrap();
    let expected = warden_core::spiffe::SpiffeId::parse(&warden.server_id).unwrap();
    let config = warden_host::client::spiffe_client_config(anchors, expected).unwrap();
    let tcp = tokio::net::TcpStream::connect(warden.address())
        .await
        .unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(
            rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    let (client, connection) = h2::client::Builder::new()
        .handshake::<_, &'static [u8]>(tls)
        .await
        .unwrap();
    let connection = tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let request = http::Request::post(format!(
        "https://{}/dapr.proto.sentry.v1.CA/SignCertificate",
        warden.address()
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers")
    .body(())
    .unwrap();
    let (response, body) = client.send_request(request, false).unwrap();
    (client, body, response, connection)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_stalled_request_cuts_it_after_the_grace_period_and_exits_non_zero() {
    let creds = tempdir();
    // 1 s instead of Sentry's 15 s, through the tests-only override.
    let options = Options::new().env("WARDEN_TEST_SHUTDOWN_GRACE_MS", "1000");
    let warden = Warden::start_with(creds.path(), &options);
    let _stalled = stalled_sign_request(&warden).await;
    // The stream is open once the server has the headers; give it a moment to call the handler.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let mark = warden.output.mark();
    warden.send_sigterm();
    let exited = tokio::task::spawn_blocking(move || {
        let mut warden = warden;
        warden.wait_exit()
    })
    .await
    .unwrap();
    let took = started.elapsed();
    assert_eq!(exited.code, Some(1), "{}", exited.output.text());
    assert!(
        exited
            .output
            .find(mark, "error", "ran out: cutting 1 in-flight request(s)")
            .is_some(),
        "{}",
        exited.output.text()
    );
    exited.assert_fatal(&[
        "Sentry did not shut down gracefully",
        "1 in-flight request(s) did not finish within the 1s grace period and were cut",
    ]);
    assert!(
        exited
            .output
            .find(mark, "info", "Sentry shut down gracefully")
            .is_none(),
        "{}",
        exited.output.text()
    );
    assert!(took < Duration::from_secs(10), "shutdown took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_stalled_healthz_client_still_ends_within_the_grace_period() {
    use std::io::Write as _;
    let creds = tempdir();
    let options = Options::new().env("WARDEN_TEST_SHUTDOWN_GRACE_MS", "1000");
    let warden = Warden::start_with(creds.path(), &options);
    // Half a request head on the unauthenticated healthz port, then silence.
    let mut slow = std::net::TcpStream::connect(("127.0.0.1", warden.healthz_port)).unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    warden.send_sigterm();
    let exited = tokio::task::spawn_blocking(move || {
        let mut warden = warden;
        warden.wait_exit()
    })
    .await
    .unwrap();
    let took = started.elapsed();
    // The old server waited for the healthz connection without a bound.
    assert!(took < Duration::from_secs(10), "shutdown took {took:?}");
    assert_eq!(exited.code, Some(1), "{}", exited.output.text());
    exited.assert_fatal(&["the healthz server did not stop within the 1s grace period"]);
    drop(slow);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_the_short_test_grace_and_no_stalled_request_exits_zero() {
    // The other side of the test above, with the same 1 s grace: an idle client connection
    // and a finished request are not in flight, so the stop is graceful.
    let work = tempdir();
    let creds = tempdir();
    let options = Options::new().env("WARDEN_TEST_SHUTDOWN_GRACE_MS", "1000");
    let warden = Warden::start_with(creds.path(), &options);
    let mut client = warden.client().await;
    let csr = openssl_csr(work.path(), &OPENSSL_KEYS[0]).pem;
    sign(&mut client, request("app", "default", "", &csr))
        .await
        .unwrap();
    let mark = warden.output.mark();
    let exited = tokio::task::spawn_blocking(move || warden.stop_gracefully())
        .await
        .unwrap();
    assert_eq!(exited.code, Some(0), "{}", exited.output.text());
    assert!(
        exited
            .output
            .find(mark, "info", "Sentry shut down gracefully")
            .is_some(),
        "{}",
        exited.output.text()
    );
    assert!(exited.fatal_lines().is_empty(), "{}", exited.output.text());
    drop(client);
}

#[test]
fn json_start_up_logs_carry_dapr_keys() {
    let creds = tempdir();
    let warden = Warden::start(creds.path());
    let lines = warden.output.lines();
    assert!(!lines.is_empty());
    for line in &lines {
        let map = match serde_json::from_str::<serde_json::Value>(line) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => panic!("not a JSON object log line: {line}"),
        };
        for key in ["time", "level", "msg", "scope", "type", "instance", "ver"] {
            assert!(
                map.get(key).is_some_and(serde_json::Value::is_string),
                "{key} missing or not a string in {line}"
            );
        }
        assert_eq!(field(&map, "type"), "log", "{line}");
        assert!(
            ["debug", "info", "warning", "error", "fatal"].contains(&field(&map, "level")),
            "{line}"
        );
        assert!(field(&map, "scope").starts_with("dapr.sentry"), "{line}");
        let time = field(&map, "time");
        assert!(
            time.len() > 20 && time.as_bytes()[10] == b'T' && time.ends_with('Z'),
            "time is not RFC 3339 UTC: {line}"
        );
        assert!(!field(&map, "ver").is_empty(), "{line}");
        assert!(!field(&map, "instance").is_empty(), "{line}");
    }
    let json = warden.output.json();
    let running = format!("Running gRPC server on port {}", warden.port);
    let line = json
        .iter()
        .find(|l| field(l, "msg") == running)
        .unwrap_or_else(|| panic!("no {running:?} line:\n{}", lines.join("\n")));
    assert_eq!(field(line, "level"), "info");
    assert_eq!(field(line, "scope"), "dapr.sentry.server");
    for needle in [
        "Starting Dapr Sentry certificate authority -- version ",
        "Using local file system for trust bundle storage",
        "CA certificate key pair ready",
    ] {
        assert!(
            json.iter().any(|l| field(l, "msg").starts_with(needle)),
            "no start-up line {needle:?}:\n{}",
            lines.join("\n")
        );
    }
}

/// Runs `warden-under-test identity fetch` against the server.
fn fetch(warden: &Warden, out: &Path, extra: &[&str]) -> common::CmdOutput {
    let mut cmd = Command::new(warden_binary());
    cmd.args(["identity", "fetch", "--sentry-address"])
        .arg(warden.address())
        .arg("--trust-anchors")
        .arg(warden.trust_anchors_path())
        .args(["--app-id", "myapp", "--out"])
        .arg(out)
        .args(extra)
        .env_remove("RUST_LOG");
    common::try_run(cmd)
}

#[test]
fn identity_fetch_writes_a_verified_svid_and_checks_the_server_id() {
    let work = tempdir();
    let creds = tempdir();
    let warden = Warden::start(creds.path());
    let out = work.path().join("svid");

    let got = fetch(&warden, &out, &[]);
    assert!(got.success, "identity fetch failed: {}", got.combined());
    assert_eq!(mode(&out.join("key.pem")), 0o600, "key.pem must be 0600");
    let chain = parse_certificates(&read_file(&out.join("cert.pem"))).unwrap();
    assert!(chain.len() >= 2, "cert.pem holds the leaf and the issuer");
    support::assert_x509_svid_leaf(&chain[0], "spiffe://public/ns/default/myapp");
    let ca = parse_certificates(&read_file(&out.join("ca.pem"))).unwrap();
    let anchors = parse_certificates(&read_file(&warden.trust_anchors_path())).unwrap();
    assert_eq!(
        ders(&ca),
        ders(&anchors),
        "ca.pem is the server's trust bundle"
    );
    let ca_path = out.join("ca.pem");
    let cert_path = out.join("cert.pem");
    let verify = run(openssl(
        work.path(),
        [
            "verify",
            "-x509_strict",
            "-purpose",
            "sslclient",
            "-CAfile",
            ca_path.to_str().unwrap(),
            "-untrusted",
            cert_path.to_str().unwrap(),
            cert_path.to_str().unwrap(),
        ],
    ));
    assert!(
        verify.stdout.trim().ends_with(": OK"),
        "{}",
        verify.combined()
    );
    // key.pem is the key of the leaf.
    let key_pub = run(openssl(
        work.path(),
        [
            "pkey",
            "-pubout",
            "-in",
            out.join("key.pem").to_str().unwrap(),
        ],
    ))
    .stdout;
    let cert_pub = run(openssl(
        work.path(),
        [
            "x509",
            "-noout",
            "-pubkey",
            "-in",
            cert_path.to_str().unwrap(),
        ],
    ))
    .stdout;
    assert_eq!(key_pub, cert_pub, "key.pem does not match cert.pem");

    // A client expecting Sentry in another namespace must refuse this server.
    let other = work.path().join("other");
    let got = fetch(
        &warden,
        &other,
        &["--control-plane-namespace", "dapr-system"],
    );
    assert!(
        !got.success,
        "fetch trusted a server with the wrong SPIFFE ID: {}",
        got.combined()
    );
    let said = got.combined();
    assert!(
        said.contains("spiffe://localhost/ns/dapr-system/dapr-sentry")
            && said.contains(&warden.server_id),
        "the failure should name the expected and the presented server ID: {said}"
    );
    assert!(
        !other.join("cert.pem").exists() && !other.join("key.pem").exists(),
        "a failed fetch must not write credentials"
    );
}

// ---------------------------------------------------------------------------------------------
// Same-key renewal of the Dapr docs' OpenSSL credentials: clients that hold the old ca.crt keep
// verifying, with rustls-webpki, openssl, Go's crypto/x509 and pyca/cryptography.

/// Runs `warden ARGS` (a subcommand) to completion.
fn warden_cli(args: &[&str]) -> common::CmdOutput {
    common::try_run(Command::new(warden_binary()).args(args))
}

/// Installs the recipe's `root.pem`, `issuer.pem` and `issuer.key` (made in `work`) as the
/// credential set in `creds`, and keeps a copy of the root as `work/old-ca.crt`: what a client
/// that got its anchors before the renewal holds.
fn install_recipe(work: &Path, creds: &Path) -> PathBuf {
    run_seed_recipe(work);
    let root = read_file(&work.join("root.pem"));
    write_file(creds, "ca.crt", &root);
    write_file(creds, "issuer.crt", read_file(&work.join("issuer.pem")));
    write_file(creds, "issuer.key", read_file(&work.join("issuer.key")));
    write_file(work, "old-ca.crt", &root)
}

/// Go's crypto/x509 (`tests/go/verify_chains`, standard library only), built once per target
/// dir with module downloads off and its caches under `CARGO_TARGET_TMPDIR`.
fn go_verifier() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-verify-chains");
            std::fs::create_dir_all(&base).unwrap();
            let binary = base.join("verify_chains");
            let source = common::data_path("../go/verify_chains/main.go");
            let mut cmd = Command::new("go");
            cmd.current_dir(&base)
                .args(["build", "-o"])
                .arg(&binary)
                .arg(&source)
                .env("GOCACHE", base.join("cache"))
                .env("GOPATH", base.join("gopath"))
                .env("GOPROXY", "off")
                .env("GOFLAGS", "")
                .env("CGO_ENABLED", "0");
            let built = cmd.output().unwrap_or_else(|e| {
                panic!(
                    "cannot run `go` ({e}): Go's crypto/x509 is one of the verifiers; \
                     run scripts/test.sh (it installs Debian's golang-go)"
                )
            });
            assert!(
                built.status.success(),
                "go build {}: {}",
                source.display(),
                String::from_utf8_lossy(&built.stderr)
            );
            binary
        })
        .clone()
}

/// Verifies every chain file in `dir` (leaf first) against `anchors` with Go's crypto/x509.
fn go_verify(dir: &Path, anchors: &str, chains: &[String]) -> common::CmdOutput {
    let mut cmd = Command::new(go_verifier());
    cmd.current_dir(dir).arg(anchors).args(chains);
    common::try_run(cmd)
}

/// What the clients holding only the old `ca.crt` saw.
fn subject_der(cert_der: &[u8]) -> Vec<u8> {
    CertificateRef::from_der(cert_der)
        .unwrap()
        .subject()
        .as_der()
        .to_vec()
}

fn issuer_der(cert_der: &[u8]) -> Vec<u8> {
    CertificateRef::from_der(cert_der)
        .unwrap()
        .issuer()
        .as_der()
        .to_vec()
}

/// `warden mtls renew-certificate` with the recipe's root key (`work/root.key`), run off the
/// runtime while the clients keep calling; it must succeed.
async fn renew_with_the_recipe_root_key(work: &Path, creds: &Path) {
    let dir = creds.display().to_string();
    let key = work.join("root.key").display().to_string();
    let renewal = tokio::task::spawn_blocking(move || {
        warden_cli(&[
            "mtls",
            "renew-certificate",
            "--issuer-credentials",
            &dir,
            "--private-key",
            &key,
        ])
    })
    .await
    .unwrap();
    assert!(renewal.success, "renew-certificate: {}", renewal.combined());
}

/// The renewed root in `creds` is `old_root` re-signed: same subject bytes, key and key
/// identifier; the renewed issuer hangs under it. Returns the renewed issuer's DER.
fn renewed_root_is_the_old_one_resigned(
    creds: &Path,
    old_root: &x509_cert::Certificate,
) -> Vec<u8> {
    let old_root_der = ders(std::slice::from_ref(old_root)).remove(0);
    let new_root = parse_certificates(&read_file(&creds.join("ca.crt"))).unwrap();
    assert_eq!(new_root.len(), 1);
    let new_root_der = ders(&new_root).remove(0);
    assert_ne!(new_root_der, old_root_der, "a new root certificate");
    assert_eq!(subject_der(&new_root_der), subject_der(&old_root_der));
    assert_eq!(
        new_root[0].tbs_certificate().subject_public_key_info(),
        old_root.tbs_certificate().subject_public_key_info()
    );
    assert_eq!(support::skid_of(&new_root[0]), support::skid_of(old_root));
    let new_issuer = parse_certificates(&read_file(&creds.join("issuer.crt"))).unwrap();
    let new_issuer_der = ders(&new_issuer).remove(0);
    assert_eq!(issuer_der(&new_issuer_der), subject_der(&old_root_der));
    assert_eq!(support::akid_of(&new_issuer[0]), support::skid_of(old_root));
    assert_eq!(
        new_issuer[0].tbs_certificate().subject().to_string(),
        "O=spiffe://cluster.local/ns/default/dapr-sentry",
        "the trust domain comes from the recipe root's CN (its O= is not one)"
    );
    new_issuer_der
}

/// Go's crypto/x509, with the old ca.crt (`work/old-ca.crt`), on the sampled `chains` of both
/// issuers; `go` builds the verifier.
async fn go_verifies_the_chains_with_the_old_ca(
    work: &Path,
    chains: &[String],
    go: tokio::task::JoinHandle<PathBuf>,
) {
    let names: Vec<String> = chains
        .iter()
        .enumerate()
        .map(|(i, pem)| {
            let name = format!("chain-{i}.pem");
            write_file(work, &name, pem);
            name
        })
        .collect();
    go.await.unwrap();
    let out = go_verify(work, "old-ca.crt", &names);
    assert!(
        out.success,
        "Go crypto/x509 with the old ca.crt: {}",
        out.combined()
    );
    assert_eq!(out.stdout.lines().count(), names.len());
}

/// A leaf from the running server on the renewed set (issuer `new_issuer_der`, as in `creds`),
/// through openssl and Python with the old ca.crt (`old_ca`, `work/old-ca.crt`).
async fn renewed_leaf_verifies_with_the_old_ca(
    warden: &Warden,
    (old_ca, csr): (&Path, &[u8]),
    (work, creds): (&Path, &Path),
    new_issuer_der: &[u8],
) {
    let mut client = connect_client(&warden.address(), old_ca, &warden.server_id)
        .await
        .unwrap();
    let response = sign(&mut client, request("renewed", "default", "", csr))
        .await
        .unwrap();
    let certs = parse_certificates(&response.workload_certificate).unwrap();
    assert_eq!(ders(&certs[1..]), vec![new_issuer_der.to_vec()]);
    write_file(work, "leaf.pem", common::certificate_pem(&certs[0]));
    write_file(
        work,
        "renewed-issuer.crt",
        read_file(&creds.join("issuer.crt")),
    );
    common::openssl_verify_ok(work, "old-ca.crt", "renewed-issuer.crt", "leaf.pem");
    let issuer_alone = run(openssl(
        work,
        [
            "verify",
            "-x509_strict",
            "-CAfile",
            "old-ca.crt",
            "renewed-issuer.crt",
        ],
    ));
    assert_eq!(issuer_alone.stdout.trim(), "renewed-issuer.crt: OK");
    let python = common::try_run(
        Command::new(std::env::var_os("PYTHON").unwrap_or_else(|| "python3".into()))
            .current_dir(work)
            .arg(common::data_path("verify_svid.py"))
            .args(["old-ca.crt", "renewed-issuer.crt", "leaf.pem"]),
    );
    assert!(
        python.success,
        "pyca/cryptography with the old ca.crt: {}",
        python.combined()
    );
    assert_eq!(python.stdout.trim(), "spiffe://public/ns/default/renewed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_key_renewal_of_recipe_credentials_keeps_old_ca_crt_clients_under_load() {
    let go = tokio::task::spawn_blocking(go_verifier);
    let work = tempdir();
    let creds = tempdir();
    let old_ca = install_recipe(work.path(), creds.path());
    let old_root = parse_certificates(&read_file(&old_ca)).unwrap().remove(0);
    let old_issuer_der =
        ders(&parse_certificates(&read_file(&work.path().join("issuer.pem"))).unwrap()).remove(0);

    let warden = Warden::start(creds.path());
    let csr = openssl_csr(work.path(), &OPENSSL_KEYS[0]).pem;
    let load = Load::start(&warden, &old_ca, &csr, 4).await;
    load.wait_for("20 leaves from the recipe's issuer", |ok, issuer| {
        ok >= 20 && issuer == old_issuer_der
    })
    .await;

    // The renewal runs while the clients keep calling; the server then hot-reloads.
    let mark = warden.output.mark();
    renew_with_the_recipe_root_key(work.path(), creds.path()).await;
    let new_issuer_der = renewed_root_is_the_old_one_resigned(creds.path(), &old_root);
    warden
        .output
        .wait_for(
            mark,
            "warning",
            "Issuer credentials changed; reloading",
            Duration::from_secs(15),
        )
        .await;
    load.wait_for("leaves from the renewed issuer", |_, issuer| {
        issuer == new_issuer_der
    })
    .await;
    load.wait_for_more(20).await;
    let reports = load
        .finish_switched_once(&old_issuer_der, &new_issuer_der)
        .await;
    let chains: Vec<String> = reports.iter().flat_map(|r| r.chains.clone()).collect();
    eprintln!(
        "{} leaves verified by webpki with the old ca.crt; {} sampled for Go",
        reports.iter().map(|r| r.issuers.len()).sum::<usize>(),
        chains.len()
    );

    go_verifies_the_chains_with_the_old_ca(work.path(), &chains, go).await;
    renewed_leaf_verifies_with_the_old_ca(
        &warden,
        (&old_ca, &csr),
        (work.path(), creds.path()),
        &new_issuer_der,
    )
    .await;
}

#[test]
fn renewal_with_a_key_of_no_current_root_is_refused_without_force() {
    let work = tempdir();
    let creds = tempdir();
    let old_ca = install_recipe(work.path(), creds.path());
    openssl_genpkey(work.path(), &OPENSSL_KEYS[0], "other.key");
    let dir = creds.path().display().to_string();
    let other = work.path().join("other.key").display().to_string();
    let before = snapshot(creds.path());
    for key in [Some(other.as_str()), None] {
        let mut args = vec!["mtls", "renew-certificate", "--issuer-credentials", &dir];
        args.extend(key.map(|k| ["--private-key", k]).into_iter().flatten());
        let out = warden_cli(&args);
        assert!(!out.success, "{args:?} must be refused: {}", out.combined());
        for needle in [
            "clients holding the current",
            "will stop trusting the CA",
            "warden root rotate",
            "--force",
            "nothing was changed",
        ] {
            // The fatal log line (stdout); its text as the error.
            let text = out.combined();
            assert!(text.contains(needle), "{args:?}: no {needle:?} in {text}");
        }
        assert_eq!(
            snapshot(creds.path()),
            before,
            "{args:?} changed the credentials"
        );
    }

    let out = warden_cli(&[
        "mtls",
        "renew-certificate",
        "--issuer-credentials",
        &dir,
        "--private-key",
        &other,
        "--force",
    ]);
    assert!(out.success, "with --force: {}", out.combined());
    assert!(out.stderr.contains("WARNING: --force"), "{}", out.stderr);
    // The warning was true: the new root has the other key, and the old ca.crt refuses it.
    let spki = run(openssl(
        work.path(),
        [
            "pkey",
            "-in",
            "other.key",
            "-pubout",
            "-outform",
            "DER",
            "-out",
            "other.spki",
        ],
    ));
    drop(spki);
    let new_root = parse_certificates(&read_file(&creds.path().join("ca.crt"))).unwrap();
    assert_eq!(
        der::Encode::to_der(new_root[0].tbs_certificate().subject_public_key_info()).unwrap(),
        read_file(&work.path().join("other.spki"))
    );
    write_file(
        work.path(),
        "forced-issuer.crt",
        read_file(&creds.path().join("issuer.crt")),
    );
    let refused = common::try_run(openssl(
        work.path(),
        [
            "verify",
            "-CAfile",
            old_ca.to_str().unwrap(),
            "forced-issuer.crt",
        ],
    ));
    assert!(!refused.success, "{}", refused.combined());
}

#[test]
fn renewal_and_root_rotation_keep_the_current_trust_domain() {
    let work = tempdir();
    let creds = tempdir();
    let dir = creds.path().display().to_string();
    let subjects = |dir: &Path| -> (String, String) {
        let root = parse_certificates(&read_file(&dir.join("ca.crt"))).unwrap();
        let issuer = parse_certificates(&read_file(&dir.join("issuer.crt"))).unwrap();
        (
            root.last().unwrap().tbs_certificate().subject().to_string(),
            issuer[0].tbs_certificate().subject().to_string(),
        )
    };
    let example = (
        "O=example.org".to_owned(),
        "O=spiffe://example.org/ns/default/dapr-sentry".to_owned(),
    );
    let renew = |extra: &[&str]| {
        let mut args = vec!["mtls", "renew-certificate", "--issuer-credentials", &dir];
        args.extend_from_slice(extra);
        let out = warden_cli(&args);
        assert!(out.success, "{args:?}: {}", out.combined());
    };
    openssl_genpkey(work.path(), &OPENSSL_KEYS[0], "root.key");
    openssl_genpkey(work.path(), &OPENSSL_KEYS[0], "other.key");
    let key = work.path().join("root.key").display().to_string();
    let other = work.path().join("other.key").display().to_string();
    renew(&["--private-key", &key, "--trust-domain", "example.org"]);
    assert_eq!(subjects(creds.path()), example);
    // The same key without --trust-domain: the root keeps its subject, the issuer the trust
    // domain.
    renew(&["--private-key", &key]);
    assert_eq!(subjects(creds.path()), example, "the same key");
    // A new root key (none given, or a key of no current root), without --trust-domain.
    renew(&["--force"]);
    assert_eq!(subjects(creds.path()), example, "no key");
    renew(&["--private-key", &other, "--force"]);
    assert_eq!(subjects(creds.path()), example, "a key of no current root");

    // root rotate prepare: the new root (appended to ca.crt) has the current trust domain.
    let prepare = |dir: &str, out_key: &str| {
        let out = warden_cli(&[
            "root",
            "rotate",
            "prepare",
            "--issuer-credentials",
            dir,
            "--root-key-out",
            out_key,
        ]);
        assert!(out.success, "prepare {dir}: {}", out.combined());
    };
    let new_key = work.path().join("new-root.key").display().to_string();
    prepare(&dir, &new_key);
    assert_eq!(subjects(creds.path()).0, "O=example.org");

    // Your own certificates (the docs' recipe: O=dapr.io/sentry is no trust domain): the
    // trust domain comes from the root's CN=, for the new root and for its issuer.
    let recipe_work = tempdir();
    let recipe = tempdir();
    install_recipe(recipe_work.path(), recipe.path());
    let recipe_dir = recipe.path().display().to_string();
    let recipe_key = recipe_work
        .path()
        .join("new-root.key")
        .display()
        .to_string();
    prepare(&recipe_dir, &recipe_key);
    assert_eq!(subjects(recipe.path()).0, "O=cluster.local");
    let out = warden_cli(&[
        "root",
        "rotate",
        "activate",
        "--issuer-credentials",
        &recipe_dir,
        "--root-key",
        &recipe_key,
        "--force",
    ]);
    assert!(out.success, "activate: {}", out.combined());
    assert_eq!(
        subjects(recipe.path()).1,
        "O=spiffe://cluster.local/ns/default/dapr-sentry"
    );
}

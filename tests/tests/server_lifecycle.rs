//! The `warden` server over its life: hot reload of the issuer under continuous load (and a
//! corrupt issuer refused while serving goes on), metrics and healthz, JSON start-up logs,
//! graceful shutdown with requests in flight, and the `identity fetch` client against it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;
mod server_support;
mod support;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{OPENSSL_KEYS, openssl, openssl_csr, read_file, run, tempdir};
use server_support::{
    Options, OwnCa, WARDEN, Warden, check_response, connect_client, ders, field, metric, mode,
    replace_file, request, sign,
};
use tonic::Code;
use warden_core::bundle::parse_certificates;
use warden_core::profile::Validity;

// ---------------------------------------------------------------------------------------------
// Continuous load for the reload test.

/// What one load loop saw.
#[derive(Debug, Default)]
struct LoopReport {
    /// The issuer (DER of the certificate after the leaf) of every successful response, in order.
    issuers: Vec<Vec<u8>>,
    /// Every failure, described.
    failures: Vec<String>,
}

/// Two request loops: one on a long-lived connection (a request every 2 ms), one that opens a
/// new TLS connection for every request (every 20 ms), as restarted sidecars do.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    latest_issuer: Arc<Mutex<Vec<u8>>>,
    tasks: Vec<tokio::task::JoinHandle<LoopReport>>,
}

impl Load {
    async fn start(warden: &Warden, csr: Vec<u8>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let latest_issuer = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for fresh_connections in [false, true] {
            let stop = Arc::clone(&stop);
            let ok = Arc::clone(&ok);
            let latest_issuer = Arc::clone(&latest_issuer);
            let csr = csr.clone();
            let address = warden.address();
            let anchors = warden.trust_anchors_path();
            let server_id = warden.server_id.clone();
            let mut client = warden.client().await;
            tasks.push(tokio::spawn(async move {
                let mut report = LoopReport::default();
                let pause = Duration::from_millis(if fresh_connections { 20 } else { 2 });
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    if fresh_connections {
                        match connect_client(&address, &anchors, &server_id).await {
                            Ok(c) => client = c,
                            Err(e) => {
                                report.failures.push(format!("connect {n}: {e}"));
                                tokio::time::sleep(pause).await;
                                continue;
                            }
                        }
                    }
                    let app = if fresh_connections { "fresh" } else { "steady" };
                    match sign(&mut client, request(app, "default", "", &csr)).await {
                        Ok(response) => {
                            let certs = parse_certificates(&response.workload_certificate);
                            match certs.as_deref() {
                                Ok([_leaf, issuer, ..]) => {
                                    let issuer = ders(std::slice::from_ref(issuer)).remove(0);
                                    *latest_issuer.lock().unwrap() = issuer.clone();
                                    report.issuers.push(issuer);
                                    ok.fetch_add(1, Ordering::Relaxed);
                                }
                                other => report
                                    .failures
                                    .push(format!("{app} {n}: bad chain {other:?}")),
                            }
                        }
                        Err(status) => report.failures.push(format!("{app} {n}: {status:?}")),
                    }
                    tokio::time::sleep(pause).await;
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

    /// Waits until a response carried `issuer_der` as its issuer.
    async fn wait_for_issuer(&self, issuer_der: &[u8], timeout: Duration, what: &str) {
        let deadline = Instant::now() + timeout;
        while *self.latest_issuer.lock().unwrap() != issuer_der {
            assert!(
                Instant::now() < deadline,
                "no leaf from the {what} issuer within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until `more` further requests have succeeded.
    async fn wait_for_more(&self, more: u64, timeout: Duration) {
        let target = self.ok() + more;
        let deadline = Instant::now() + timeout;
        while self.ok() < target {
            assert!(
                Instant::now() < deadline,
                "fewer than {more} successful requests within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn finish(self) -> Vec<LoopReport> {
        self.stop.store(true, Ordering::Relaxed);
        let mut reports = Vec::new();
        for task in self.tasks {
            reports.push(task.await.unwrap());
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
    let load = Load::start(&warden, csr.clone()).await;
    load.wait_for_issuer(&first_der, Duration::from_secs(10), "first")
        .await;
    load.wait_for_more(20, Duration::from_secs(10)).await;

    // Rotate: a new issuer key and certificate under the same root.
    let second = ca.issuer();
    let second_der = ders(std::slice::from_ref(&second.certificate)).remove(0);
    let mark = warden.output.len();
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
    load.wait_for_issuer(&second_der, Duration::from_secs(10), "second")
        .await;
    load.wait_for_more(20, Duration::from_secs(10)).await;
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
    let mark = warden.output.len();
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
    load.wait_for_more(20, Duration::from_secs(10)).await;
    assert_eq!(warden.healthz().0, 200, "still healthy after a bad reload");

    let reports = load.finish().await;
    for (i, report) in reports.iter().enumerate() {
        assert!(
            report.failures.is_empty(),
            "loop {i}: {} failed requests during reloads:\n{}",
            report.failures.len(),
            report.failures.join("\n")
        );
        let switch = report
            .issuers
            .iter()
            .position(|d| *d == second_der)
            .unwrap_or_else(|| panic!("loop {i} never saw the second issuer"));
        assert!(
            report.issuers[..switch].iter().all(|d| *d == first_der),
            "loop {i}: a leaf before the switch came from an unknown issuer"
        );
        assert!(
            report.issuers[switch..].iter().all(|d| *d == second_der),
            "loop {i}: after the switch every leaf must come from the second issuer \
             (the corrupt issuer.crt must not replace it, and the first must not come back)"
        );
    }
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
    let mark = warden.output.len();
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
    let config = warden_host::identity::spiffe_client_config(anchors, expected).unwrap();
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
    let mark = warden.output.len();
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
    let mark = warden.output.len();
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
    let mut cmd = Command::new(WARDEN);
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

//! Hostile clients (issue 8): slowloris (a ClientHello one byte per second, and handshakes that
//! never send a request: both are cut after 10 s), 10 MiB frames and messages sent again and again, and 1,000 idle TLS
//! connections. During each, another client's requests keep succeeding with bounded latency, and
//! the server's RSS stays bounded. The numbers are printed (`--nocapture`) for the report.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use warden_core::bundle::parse_certificates;
use warden_core::crypto::KeyAlgorithm;
use warden_core::spiffe::SpiffeId;
use warden_host::client::{RequestParams, new_key_and_csr, spiffe_client_config};
use warden_tests::server::{Warden, connect_client};
use warden_tests::{common, server};

/// The server's RSS must stay below this during every attack (generous: the debug build).
const RSS_BOUND_KIB: u64 = 64 * 1024;
/// Any single request of the well-behaved client must answer within this.
const LATENCY_BOUND: Duration = Duration::from_secs(3);

/// `VmRSS` and `VmHWM` of a process, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Raises the soft open-files limit of a process to `n`, or to its hard limit when that is
/// lower (via `prlimit(1)`: the tests forbid unsafe code). Returns the soft limit set.
fn raise_nofile(pid: u32, n: u64) -> u64 {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let hard: u64 = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(4))
        .map_or(n, |h| h.parse().unwrap_or(n));
    let soft = n.min(hard);
    let status = Command::new("prlimit")
        .arg(format!("--pid={pid}"))
        .arg(format!("--nofile={soft}:"))
        .status()
        .expect("run prlimit");
    assert!(status.success(), "prlimit --nofile={soft} for {pid} failed");
    soft
}

/// Samples the server's RSS every 50 ms until stopped; returns the peak seen.
struct RssSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl RssSampler {
    fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, peak) = (Arc::clone(&stop), Arc::clone(&peak));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    peak.fetch_max(memory_kib(pid).0, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        Self { stop, peak, thread }
    }

    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
        self.peak.load(Ordering::Relaxed)
    }
}

/// A well-behaved client sending requests one after another on one connection until stopped.
struct Probe {
    stop: Arc<AtomicBool>,
    task: JoinHandle<Vec<Duration>>,
}

impl Probe {
    async fn start(warden: &Warden) -> Self {
        let mut client = warden.client().await;
        let stop = Arc::new(AtomicBool::new(false));
        let task = {
            let stop = Arc::clone(&stop);
            let output = warden.output.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let (_, csr) = new_key_and_csr(KeyAlgorithm::P256).unwrap();
                    let request = RequestParams::insecure("probe", "default").to_request(&csr);
                    let sent = Instant::now();
                    let response = server::sign(&mut client, request)
                        .await
                        .unwrap_or_else(|s| {
                            panic!(
                                "the probe's request failed: {s:?}; output:\n{}",
                                output.text()
                            )
                        });
                    latencies.push(sent.elapsed());
                    assert!(!response.workload_certificate.is_empty());
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                latencies
            })
        };
        Self { stop, task }
    }

    /// Stops and checks: requests were answered throughout, none slower than the bound.
    async fn finish(self, what: &str) -> (usize, Duration, Duration) {
        self.stop.store(true, Ordering::Relaxed);
        let mut latencies = self.task.await.unwrap();
        latencies.sort_unstable();
        let n = latencies.len();
        assert!(n >= 5, "{what}: only {n} probe requests were answered");
        let p50 = latencies[n / 2];
        let max = latencies[n - 1];
        assert!(
            max <= LATENCY_BOUND,
            "{what}: a probe request took {max:?} (bound {LATENCY_BOUND:?})"
        );
        (n, p50, max)
    }
}

fn tls_connector(warden: &Warden) -> TlsConnector {
    let anchors = parse_certificates(&common::read_file(&warden.trust_anchors_path())).unwrap();
    let config =
        spiffe_client_config(anchors, SpiffeId::parse(&warden.server_id).unwrap()).unwrap();
    TlsConnector::from(Arc::new(config))
}

async fn tls_connect(warden: &Warden, connector: &TlsConnector) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(warden.address()).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    tokio::time::timeout(Duration::from_secs(30), connector.connect(name, tcp))
        .await
        .expect("TLS handshake within 30 s")
        .expect("TLS handshake")
}

/// Reports one attack and checks the memory bound and that a new connection still works.
async fn conclude(warden: &Warden, what: &str, probe: Probe, sampler: RssSampler, idle_kib: u64) {
    let peak = sampler.finish();
    let (n, p50, max) = probe.finish(what).await;
    let (rss, hwm) = memory_kib(warden.pid());
    eprintln!(
        "{what}: server RSS idle {idle_kib} KiB, peak sampled {peak} KiB, now {rss} KiB, \
         VmHWM {hwm} KiB; probe: {n} requests, p50 {p50:?}, max {max:?}"
    );
    assert!(
        peak < RSS_BOUND_KIB && hwm < RSS_BOUND_KIB,
        "{what}: RSS peaked at {peak} KiB / VmHWM {hwm} KiB (bound {RSS_BOUND_KIB} KiB)"
    );
    // A newcomer is served too.
    let anchors = warden.trust_anchors_path();
    let mut client = connect_client(&warden.address(), &anchors, &warden.server_id)
        .await
        .unwrap();
    let (_, csr) = new_key_and_csr(KeyAlgorithm::P256).unwrap();
    server::sign(
        &mut client,
        RequestParams::insecure("newcomer", "default").to_request(&csr),
    )
    .await
    .unwrap_or_else(|s| panic!("{what}: a new client was refused: {s:?}"));
}

fn start(dir: &Path) -> (Warden, u64) {
    let warden = Warden::start(&dir.join("creds"));
    std::thread::sleep(Duration::from_millis(300));
    let idle = memory_kib(warden.pid()).0;
    (warden, idle)
}

/// The first bytes of a TLS 1.2/1.3 ClientHello record announcing 512 bytes.
const CLIENT_HELLO_PREFIX: [u8; 9] = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc];

/// 100 connections dripping a ClientHello one byte per second for up to 30 s; each task
/// returns how long the server took to hang up, or `None` if it never did.
fn drip_client_hellos(warden: &Warden) -> Vec<JoinHandle<Option<Duration>>> {
    (0..100)
        .map(|_| {
            let address = warden.address();
            tokio::spawn(async move {
                let mut tcp = TcpStream::connect(address).await.unwrap();
                let started = Instant::now();
                for byte in CLIENT_HELLO_PREFIX.iter().cycle().take(30) {
                    if tcp.write_all(&[*byte]).await.is_err() {
                        return Some(started.elapsed());
                    }
                    let mut buf = [0u8; 64];
                    // Waiting up to 1 s for the server to hang up paces the drip.
                    let read = tcp.read(&mut buf);
                    if let Ok(Ok(0) | Err(_)) =
                        tokio::time::timeout(Duration::from_secs(1), read).await
                    {
                        return Some(started.elapsed());
                    }
                }
                None
            })
        })
        .collect()
}

/// On the HTTP endpoints (healthz and metrics; OIDC runs on the same server code): a silent
/// connection, a request head never finished, and a keep-alive left idle after one request.
async fn idle_http_connections(warden: &Warden) -> Vec<(&'static str, TcpStream)> {
    let mut http_idle = Vec::new();
    for port in [warden.healthz_port, warden.metrics_port] {
        let silent = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let mut partial = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        partial
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
            .await
            .unwrap();
        let mut kept = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let mut head = [0u8; 16];
        assert!(
            kept.read(&mut head).await.unwrap() > 0,
            "no answer on {port}"
        );
        http_idle.extend([
            ("silent", silent),
            ("partial head", partial),
            ("idle keep-alive", kept),
        ]);
    }
    http_idle
}

/// The silent TLS connections are closed by the server once the preface deadline (10 s) has
/// passed; returns the longest time since `since` until one was closed.
async fn silent_tls_connections_are_closed(
    silent: Vec<TlsStream<TcpStream>>,
    since: Instant,
) -> Duration {
    let mut silent_cut = Duration::ZERO;
    for mut tls in silent {
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(20), tls.read(&mut buf)).await;
        assert!(
            matches!(read, Ok(Ok(0) | Err(_))),
            "a TLS connection that never sent a request was kept open ({read:?})"
        );
        silent_cut = silent_cut.max(since.elapsed());
    }
    silent_cut
}

/// Each idle HTTP connection is closed by the server (header timeout) within 20 s.
async fn idle_http_connections_are_closed(http_idle: Vec<(&str, TcpStream)>) {
    for (what, mut tcp) in http_idle {
        let closed = tokio::time::timeout(Duration::from_secs(20), async {
            let mut buf = [0u8; 1024];
            loop {
                if let Ok(0) | Err(_) = tcp.read(&mut buf).await {
                    break;
                }
            }
        })
        .await;
        assert!(
            closed.is_ok(),
            "an HTTP endpoint kept a {what} connection open past the header timeout"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_clients_are_cut_off_and_others_are_served() {
    let work = common::tempdir();
    let (warden, idle) = start(work.path());
    let probe = Probe::start(&warden).await;
    let sampler = RssSampler::start(warden.pid());
    let fds_before = open_fds(warden.pid());

    // 100 connections dripping a ClientHello one byte per second, and 100 that finish the
    // handshake and then never send the HTTP/2 preface; idle HTTP connections too.
    let slow = drip_client_hellos(&warden);
    let http_idle = idle_http_connections(&warden).await;
    let connector = tls_connector(&warden);
    let mut silent = Vec::new();
    for _ in 0..100 {
        silent.push(tls_connect(&warden, &connector).await);
    }
    let silent_since = Instant::now();
    let fds_during = open_fds(warden.pid());
    let mut cut_after = Vec::new();
    for task in slow {
        cut_after.push(task.await.unwrap());
    }
    let silent_cut = silent_tls_connections_are_closed(silent, silent_since).await;
    idle_http_connections_are_closed(http_idle).await;
    conclude(&warden, "slowloris", probe, sampler, idle).await;
    // The dripping clients were disconnected by the handshake timeout (10 s), not left to hold
    // a connection for the 30 s they tried.
    let worst = cut_after
        .iter()
        .map(|c| c.unwrap_or_else(|| panic!("a slowloris client kept its connection for 30 s")))
        .max()
        .unwrap();
    assert!(worst < Duration::from_secs(15), "cut after {worst:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let fds_after = open_fds(warden.pid());
    eprintln!(
        "slowloris: dripping clients cut after at most {worst:?}, silent TLS clients within \
         {silent_cut:?} of the last handshake; server fds before {fds_before}, with 100 silent \
         TLS connections {fds_during}, after they were cut {fds_after}"
    );
    assert!(
        fds_after <= fds_before + 2,
        "fds: {fds_before} -> {fds_after}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_mib_frames_and_messages_are_refused_without_memory_growth() {
    let work = common::tempdir();
    let (warden, idle) = start(work.path());
    let probe = Probe::start(&warden).await;
    let sampler = RssSampler::start(warden.pid());
    let connector = tls_connector(&warden);
    let ten_mib = vec![0u8; 10 << 20];

    // Raw HTTP/2: a DATA frame header announcing 10 MiB (the limit is 16 KiB), then the bytes.
    let mut frame_results = Vec::new();
    for _ in 0..5 {
        let mut tls = tls_connect(&warden, &connector).await;
        let mut head = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        head.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]); // empty SETTINGS
        head.extend_from_slice(&[0xa0, 0x00, 0x00, 0, 0, 0, 0, 0, 1]); // DATA, 10 MiB, stream 1
        tls.write_all(&head).await.unwrap();
        let sent = tokio::time::timeout(Duration::from_secs(10), tls.write_all(&ten_mib)).await;
        // The server must hang up (GOAWAY FRAME_SIZE_ERROR) rather than take all 10 MiB in.
        let mut rest = Vec::new();
        let closed =
            tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut rest)).await;
        frame_results.push((sent.map(|r| r.is_ok()).ok(), closed.is_ok()));
    }
    assert!(
        frame_results.iter().all(|(_, closed)| *closed),
        "the server kept an oversized-frame connection open: {frame_results:?}"
    );

    // gRPC: a SignCertificate message of 10 MiB (a 10 MiB CSR), over and over, 4 at a time.
    let mut refused = 0;
    for _ in 0..3 {
        let mut calls = Vec::new();
        for _ in 0..4 {
            let mut client = warden.client().await.max_encoding_message_size(usize::MAX);
            let csr = ten_mib.clone();
            calls.push(tokio::spawn(async move {
                server::sign(&mut client, server::request("big", "default", "", &csr)).await
            }));
        }
        for call in calls {
            let status = call
                .await
                .unwrap()
                .expect_err("a 10 MiB request must be refused");
            assert!(
                matches!(
                    status.code(),
                    tonic::Code::ResourceExhausted | tonic::Code::OutOfRange
                ),
                "{status:?}"
            );
            refused += 1;
        }
    }
    conclude(&warden, "10 MiB frames", probe, sampler, idle).await;
    eprintln!(
        "10 MiB frames: raw frames (sent in full?, closed): {frame_results:?}; {refused} oversized gRPC messages refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_idle_connections_do_not_starve_others() {
    const IDLE: usize = 1000;
    let work = common::tempdir();
    let (warden, idle) = start(work.path());
    for pid in [std::process::id(), warden.pid()] {
        let soft = raise_nofile(pid, 4096);
        assert!(
            soft >= IDLE as u64 + 200,
            "this test needs a hard open-files limit of at least {} (ulimit -Hn); pid {pid} has {soft}",
            IDLE + 200
        );
    }
    let probe = Probe::start(&warden).await;
    let sampler = RssSampler::start(warden.pid());
    let fds_before = open_fds(warden.pid());
    let connector = tls_connector(&warden);

    // Half finish the TLS handshake and stay silent; half are bare TCP connections that never
    // start one (the handshake and preface timeouts close them after 10 s).
    let started = Instant::now();
    let mut tls_idle = Vec::new();
    let mut tcp_idle = Vec::new();
    let mut fds_during = 0;
    for i in 0..IDLE {
        if i % 2 == 0 {
            tls_idle.push(tls_connect(&warden, &connector).await);
        } else {
            tcp_idle.push(TcpStream::connect(warden.address()).await.unwrap());
        }
        if i % 50 == 49 {
            fds_during = fds_during.max(open_fds(warden.pid()));
        }
    }
    let opened_in = started.elapsed();
    let (rss_all_open, _) = memory_kib(warden.pid());
    // Hold them past the handshake timeout.
    tokio::time::sleep(Duration::from_secs(11).saturating_sub(opened_in)).await;
    let fds_held = open_fds(warden.pid());
    conclude(&warden, "1000 idle connections", probe, sampler, idle).await;
    drop(tls_idle);
    drop(tcp_idle);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let fds_after = open_fds(warden.pid());
    eprintln!(
        "1000 idle connections: opened in {opened_in:?}; RSS with all open {rss_all_open} KiB; \
         server fds before {fds_before}, with all open {fds_during}, after 11 s {fds_held}, \
         after closing {fds_after}"
    );
    assert!(
        fds_during >= fds_before + IDLE / 2,
        "the connections were not all open at the server ({fds_during} fds)"
    );
    assert!(
        fds_after <= fds_before + 2,
        "fds: {fds_before} -> {fds_after}"
    );
}

/// Largest file `--ui` serves (`web::MAX_FILE`).
const UI_MAX_FILE: usize = 16 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_stalled_downloads_of_the_largest_ui_file_do_not_each_hold_a_copy() {
    const DOWNLOADS: usize = 24;
    let work = common::tempdir();
    let ui = work.path().join("ui");
    std::fs::create_dir_all(&ui).unwrap();
    let content: Vec<u8> = (0..UI_MAX_FILE).map(|i| (i % 251) as u8).collect();
    std::fs::write(ui.join("big.wasm"), &content).unwrap();
    std::fs::write(ui.join("index.html"), "<!doctype html>").unwrap();
    let options = server::Options::new().args([
        "--grpc-web".to_owned(),
        "--ui".to_owned(),
        ui.to_str().unwrap().to_owned(),
    ]);
    let warden = Warden::start_with(&work.path().join("creds"), &options);
    std::thread::sleep(Duration::from_millis(300));
    let idle = memory_kib(warden.pid()).0;
    let probe = Probe::start(&warden).await;
    let sampler = RssSampler::start(warden.pid());
    let anchors = parse_certificates(&common::read_file(&warden.trust_anchors_path())).unwrap();
    let mut config =
        spiffe_client_config(anchors, SpiffeId::parse(&warden.server_id).unwrap()).unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = TlsConnector::from(Arc::new(config));
    let get = b"GET /big.wasm HTTP/1.1\r\nHost: localhost\r\n\r\n";

    // Each client asks for the file and reads nothing: the server can only send what the
    // socket buffers take, and must not hold the rest of the file per client meanwhile.
    let mut stalled = Vec::new();
    for _ in 0..DOWNLOADS {
        let mut tls = tls_connect(&warden, &connector).await;
        tls.write_all(get).await.unwrap();
        tls.flush().await.unwrap();
        stalled.push(tls);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    conclude(&warden, "stalled UI downloads", probe, sampler, idle).await;

    // Streaming still delivers the whole file, byte for byte.
    let mut tls = stalled.pop().unwrap();
    let mut received = Vec::new();
    let expected_len = content.len();
    let mut header_end = None;
    tokio::time::timeout(Duration::from_secs(60), async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = tls.read(&mut buf).await.unwrap();
            assert!(n > 0, "the connection closed before the whole file came");
            received.extend_from_slice(&buf[..n]);
            if header_end.is_none() {
                header_end = received.windows(4).position(|w| w == b"\r\n\r\n");
            }
            if header_end.is_some_and(|end| received.len() >= end + 4 + expected_len) {
                break;
            }
        }
    })
    .await
    .expect("the whole file within 60 s");
    let end = header_end.unwrap();
    let head = String::from_utf8_lossy(&received[..end]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        head.contains(&format!("content-length: {expected_len}")),
        "{head}"
    );
    assert!(
        received[end + 4..] == content[..],
        "the streamed file differs"
    );
}

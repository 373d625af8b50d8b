//! `warden-loadgen`: daprd-shaped `SignCertificate` requests against a running CA (Warden or
//! Sentry), over N TLS connections authorized as daprd authorizes Sentry. Reports throughput,
//! latency percentiles and errors; exits non-zero when any request failed.
//!
//! Two ways to load the server:
//! - closed loop (default): M requests in flight per connection, each sent as soon as the previous
//!   one answered — this finds the saturation throughput;
//! - open loop (`--rate N`): requests start at a fixed rate whatever the answers do, spread over
//!   the connections; latency is measured from the *scheduled* start, so a stalled server shows
//!   up in the percentiles instead of silently slowing the client (no coordinated omission).
//!
//! The run ends after `--requests N` or after `--duration SECS`. Every request ends as exactly
//! one success or one error (a request without an answer within `--timeout` is an error).
//!
//! The CSRs (one fresh key each, as daprd makes them) are generated before the clock starts, so
//! the numbers measure the server, not the client's key generation. A timed run reuses a pool of
//! `--csr-pool` CSRs round robin: the server signs each request anew either way.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use warden_core::bundle::parse_certificates;
use warden_core::crypto::KeyAlgorithm;
use warden_core::spiffe::{SpiffeId, TrustDomain};
use warden_host::client::{self, CsrKeyType, RequestParams};
use warden_host::proto::SignCertificateRequest;
use warden_host::proto::SignCertificateResponse;

/// Load generator for a Sentry-compatible CA.
#[derive(Debug, Parser)]
#[command(name = "warden-loadgen", version)]
struct Args {
    /// Address of the CA, host:port.
    #[arg(long, default_value = "localhost:50001")]
    address: String,
    /// PEM trust anchors of the CA (its ca.crt).
    #[arg(long, value_name = "FILE")]
    trust_anchors: PathBuf,
    /// TLS connections to open (default: 2 x CPU cores).
    #[arg(long)]
    connections: Option<usize>,
    /// Requests in flight on each connection (closed loop).
    #[arg(long)]
    concurrency_per_connection: Option<usize>,
    /// Total number of requests to send (default 10000 unless --duration is given).
    #[arg(long, conflicts_with = "duration")]
    requests: Option<usize>,
    /// Send requests for this many seconds instead of a fixed number.
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    /// Open loop: start this many requests per second (spread over the connections) instead of
    /// keeping a fixed number in flight.
    #[arg(long, value_name = "N", conflicts_with = "concurrency_per_connection")]
    rate: Option<f64>,
    /// A request without an answer after this many seconds counts as an error.
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    timeout: f64,
    /// Distinct CSRs prepared for a timed run (used round robin).
    #[arg(long, default_value_t = 4096)]
    csr_pool: usize,
    /// Key type of the CSRs.
    #[arg(long, value_enum, default_value_t = CsrKeyType::Ed25519)]
    key_type: CsrKeyType,
    /// Namespace to request.
    #[arg(long, default_value = "default")]
    namespace: String,
    /// App id to request.
    #[arg(long, default_value = "loadgen")]
    app_id: String,
    /// Trust domain of the CA's SPIFFE ID spiffe://<TD>/ns/<NS>/dapr-sentry.
    #[arg(long, default_value = "localhost")]
    control_plane_trust_domain: String,
    /// Namespace of the CA's SPIFFE ID.
    #[arg(long, default_value = "default")]
    control_plane_namespace: String,
    /// Print the results as one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

/// What one worker saw.
#[derive(Debug, Default)]
struct WorkerStats {
    latencies: Vec<Duration>,
    errors: usize,
    /// Error message → count.
    messages: BTreeMap<String, usize>,
}

/// The whole run.
#[derive(Debug)]
struct Report {
    connections: usize,
    /// Closed loop: requests in flight per connection; `None` for an open-loop run.
    concurrency_per_connection: Option<usize>,
    /// Open loop: the requested rate.
    target_rate: Option<f64>,
    /// Requests started (each ends as one success or one error).
    requests: usize,
    succeeded: usize,
    errors: usize,
    elapsed: Duration,
    /// Successful latencies, sorted.
    latencies: Vec<Duration>,
}

impl Report {
    fn requests_per_second(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.succeeded as f64 / secs
        } else {
            0.0
        }
    }

    /// Nearest-rank percentile of the successful latencies.
    fn percentile(&self, p: f64) -> Duration {
        let n = self.latencies.len();
        if n == 0 {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * n as f64).ceil() as usize;
        self.latencies
            .get(rank.clamp(1, n) - 1)
            .copied()
            .unwrap_or_default()
    }

    fn max(&self) -> Duration {
        self.latencies.last().copied().unwrap_or_default()
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("warden-loadgen: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&args)) {
        Ok(report) => {
            print_report(&args, &report);
            if report.errors == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("warden-loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Makes `count` daprd-shaped requests, spread over the CPU cores.
fn prepare_requests(
    params: &RequestParams,
    key: KeyAlgorithm,
    count: usize,
) -> Result<Vec<SignCertificateRequest>, String> {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let per_thread = count.div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let n = per_thread.min(count.saturating_sub(t * per_thread));
                scope.spawn(move || {
                    (0..n)
                        .map(|_| {
                            client::new_key_and_csr(key)
                                .map(|(_, csr)| params.to_request(&csr))
                                .map_err(|e| e.to_string())
                        })
                        .collect::<Result<Vec<_>, _>>()
                })
            })
            .collect();
        let mut all = Vec::with_capacity(count);
        for handle in handles {
            let part = handle
                .join()
                .map_err(|_| "a CSR thread panicked".to_owned())??;
            all.extend(part);
        }
        Ok(all)
    })
}

/// When the run ends.
#[derive(Clone, Copy, Debug)]
enum Stop {
    /// After this many requests.
    Count(usize),
    /// When this much time has passed since the clock started.
    After(Duration),
}

impl Stop {
    fn of(args: &Args) -> Result<Self, String> {
        match (args.requests, args.duration) {
            (_, Some(secs)) => Duration::try_from_secs_f64(secs)
                .ok()
                .filter(|d| !d.is_zero())
                .map(Self::After)
                .ok_or_else(|| format!("--duration must be a positive number of seconds: {secs}")),
            (Some(0), None) => Err("--requests must be at least 1".into()),
            (Some(n), None) => Ok(Self::Count(n)),
            (None, None) => Ok(Self::Count(10_000)),
        }
    }

    /// How many distinct CSRs to prepare.
    fn pool_size(self, csr_pool: usize) -> usize {
        match self {
            Self::Count(n) => n,
            Self::After(_) => csr_pool.max(1),
        }
    }

    /// Whether request number `index`, to start at `at`, is still part of the run that started
    /// at `clock`.
    fn admits(self, index: usize, at: Instant, clock: Instant) -> bool {
        match self {
            Self::Count(n) => index < n,
            Self::After(d) => at.duration_since(clock) < d,
        }
    }
}

/// One request's outcome: `Ok(latency)` or the error message.
type Outcome = Result<Duration, String>;

/// Sends a request on connection number `.0` (modulo the number of connections).
type Call = Arc<
    dyn Fn(
            usize,
            SignCertificateRequest,
        ) -> Pin<Box<dyn Future<Output = Result<SignCertificateResponse, String>> + Send>>
        + Send
        + Sync,
>;

/// Sends one request and classifies the answer; `since` is when the latency clock starts.
async fn one_request(
    call: &Call,
    connection: usize,
    request: SignCertificateRequest,
    since: Instant,
    timeout: Duration,
) -> Outcome {
    let result = tokio::time::timeout(timeout, call(connection, request)).await;
    let latency = since.elapsed();
    match result {
        Err(_) => Err(format!("no answer within {timeout:?}")),
        Ok(Err(message)) => Err(message),
        Ok(Ok(response)) => {
            if response.workload_certificate.is_empty() {
                Err("empty workload_certificate".to_owned())
            } else if response.valid_until.is_none() {
                Err("no valid_until".to_owned())
            } else {
                Ok(latency)
            }
        }
    }
}

impl WorkerStats {
    fn record(&mut self, outcome: Outcome) {
        match outcome {
            Ok(latency) => self.latencies.push(latency),
            Err(message) => {
                self.errors += 1;
                *self.messages.entry(message).or_default() += 1;
            }
        }
    }

    fn merge(&mut self, other: Self) {
        self.latencies.extend(other.latencies);
        self.errors += other.errors;
        for (message, count) in other.messages {
            *self.messages.entry(message).or_default() += count;
        }
    }
}

async fn run(args: &Args) -> Result<Report, String> {
    let connections = args
        .connections
        .unwrap_or_else(|| 2 * std::thread::available_parallelism().map_or(1, usize::from));
    let concurrency = args.concurrency_per_connection.unwrap_or(1);
    if connections == 0 || concurrency == 0 {
        return Err("--connections and --concurrency-per-connection must be at least 1".into());
    }
    if let Some(rate) = args.rate
        && !(rate.is_finite() && rate > 0.0)
    {
        return Err(format!("--rate must be a positive number: {rate}"));
    }
    let timeout = Duration::try_from_secs_f64(args.timeout)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            format!(
                "--timeout must be a positive number of seconds: {}",
                args.timeout
            )
        })?;
    let stop = Stop::of(args)?;
    let anchors_pem = std::fs::read(&args.trust_anchors)
        .map_err(|e| format!("cannot read {}: {e}", args.trust_anchors.display()))?;
    let anchors = parse_certificates(&anchors_pem)
        .map_err(|e| format!("{}: {e}", args.trust_anchors.display()))?;
    let td = TrustDomain::new(&args.control_plane_trust_domain)
        .map_err(|e| format!("--control-plane-trust-domain: {e}"))?;
    let server_id = SpiffeId::sentry(&td, &args.control_plane_namespace)
        .map_err(|e| format!("--control-plane-namespace: {e}"))?;
    let tls =
        Arc::new(client::spiffe_client_config(anchors, server_id).map_err(|e| e.to_string())?);

    let started = Instant::now();
    let params = RequestParams::insecure(&args.app_id, &args.namespace);
    let pool = Arc::new(prepare_requests(
        &params,
        args.key_type.into(),
        stop.pool_size(args.csr_pool),
    )?);
    if !args.json {
        eprintln!(
            "prepared {} {:?} CSRs in {:.2} s",
            pool.len(),
            args.key_type,
            started.elapsed().as_secs_f64()
        );
    }

    let mut clients = Vec::with_capacity(connections);
    for _ in 0..connections {
        clients.push(
            client::connect(&args.address, Arc::clone(&tls))
                .await
                .map_err(|e| e.to_string())?,
        );
    }

    let call: Call = Arc::new(move |connection, request| {
        let mut client = clients
            .get(connection % clients.len())
            .cloned()
            .unwrap_or_else(|| unreachable!("at least one connection"));
        Box::pin(async move {
            client
                .sign_certificate(request)
                .await
                .map(|r| r.into_inner())
                .map_err(|status| format!("{:?}: {}", status.code(), status.message()))
        })
    });
    let clock = Instant::now();
    let stats = match args.rate {
        None => closed_loop(&call, connections, concurrency, &pool, stop, clock, timeout).await?,
        Some(rate) => open_loop(&call, rate, &pool, stop, clock, timeout).await?,
    };
    let elapsed = clock.elapsed();
    let WorkerStats {
        mut latencies,
        errors,
        messages,
    } = stats;
    latencies.sort_unstable();
    for (message, count) in messages.iter().take(10) {
        eprintln!("error ({count}x): {message}");
    }
    Ok(Report {
        connections,
        concurrency_per_connection: args.rate.is_none().then_some(concurrency),
        target_rate: args.rate,
        requests: latencies.len() + errors,
        succeeded: latencies.len(),
        errors,
        elapsed,
        latencies,
    })
}

/// `concurrency` workers per connection, each sending its next request when the previous one
/// answered.
async fn closed_loop(
    call: &Call,
    connections: usize,
    concurrency: usize,
    pool: &Arc<Vec<SignCertificateRequest>>,
    stop: Stop,
    clock: Instant,
    timeout: Duration,
) -> Result<WorkerStats, String> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for connection in 0..connections {
        for _ in 0..concurrency {
            let call = Arc::clone(call);
            let pool = Arc::clone(pool);
            let next = Arc::clone(&next);
            workers.push(tokio::spawn(async move {
                let mut stats = WorkerStats::default();
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let sent = Instant::now();
                    if !stop.admits(index, sent, clock) {
                        break;
                    }
                    let Some(request) = pool.get(index % pool.len()).cloned() else {
                        break;
                    };
                    stats.record(one_request(&call, connection, request, sent, timeout).await);
                }
                stats
            }));
        }
    }
    let mut all = WorkerStats::default();
    for worker in workers {
        all.merge(worker.await.map_err(|e| format!("a worker failed: {e}"))?);
    }
    Ok(all)
}

/// Starts request `i` at `clock + i / rate`, round robin over the connections, whatever the
/// earlier requests are doing; latency counts from the scheduled start.
async fn open_loop(
    call: &Call,
    rate: f64,
    pool: &Arc<Vec<SignCertificateRequest>>,
    stop: Stop,
    clock: Instant,
    timeout: Duration,
) -> Result<WorkerStats, String> {
    let mut in_flight = tokio::task::JoinSet::new();
    let mut all = WorkerStats::default();
    let mut behind = false;
    for index in 0.. {
        let scheduled = clock + Duration::from_secs_f64(index as f64 / rate);
        if !stop.admits(index, scheduled, clock) {
            break;
        }
        tokio::time::sleep_until(scheduled.into()).await;
        if !behind && scheduled.elapsed() > Duration::from_millis(100) {
            behind = true;
            eprintln!("warning: the client fell more than 100 ms behind the schedule");
        }
        let call = Arc::clone(call);
        let request = pool.get(index % pool.len()).cloned().ok_or("no request")?;
        in_flight
            .spawn(async move { one_request(&call, index, request, scheduled, timeout).await });
        while let Some(done) = in_flight.try_join_next() {
            all.record(done.map_err(|e| format!("a request task failed: {e}"))?);
        }
    }
    while let Some(done) = in_flight.join_next().await {
        all.record(done.map_err(|e| format!("a request task failed: {e}"))?);
    }
    Ok(all)
}

fn print_report(args: &Args, r: &Report) {
    let mode = match (r.concurrency_per_connection, r.target_rate) {
        (_, Some(rate)) => format!("open loop at {rate} requests/s"),
        (Some(c), None) => format!("{c} in flight"),
        (None, None) => String::new(),
    };
    if args.json {
        println!(
            concat!(
                "{{\"address\":{:?},\"key_type\":\"{}\",\"connections\":{},",
                "\"concurrency_per_connection\":{},\"target_rate\":{},",
                "\"requests\":{},\"succeeded\":{},",
                "\"errors\":{},\"elapsed_s\":{:.6},\"requests_per_second\":{:.1},",
                "\"latency_ms\":{{\"p50\":{:.3},\"p90\":{:.3},\"p99\":{:.3},\"max\":{:.3}}}}}"
            ),
            args.address,
            match args.key_type {
                CsrKeyType::Ed25519 => "ed25519",
                CsrKeyType::P256 => "p256",
            },
            r.connections,
            r.concurrency_per_connection
                .map_or_else(|| "null".to_owned(), |c| c.to_string()),
            r.target_rate
                .map_or_else(|| "null".to_owned(), |c| c.to_string()),
            r.requests,
            r.succeeded,
            r.errors,
            r.elapsed.as_secs_f64(),
            r.requests_per_second(),
            ms(r.percentile(50.0)),
            ms(r.percentile(90.0)),
            ms(r.percentile(99.0)),
            ms(r.max()),
        );
        return;
    }
    println!(
        "{} requests to {} over {} connections, {mode}",
        r.requests, args.address, r.connections
    );
    println!("  succeeded:  {}   errors: {}", r.succeeded, r.errors);
    println!(
        "  elapsed:    {:.3} s   throughput: {:.1} requests/s",
        r.elapsed.as_secs_f64(),
        r.requests_per_second()
    );
    println!(
        "  latency ms: p50 {:.3}   p90 {:.3}   p99 {:.3}   max {:.3}",
        ms(r.percentile(50.0)),
        ms(r.percentile(90.0)),
        ms(r.percentile(99.0)),
        ms(r.max())
    );
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let report = Report {
            connections: 1,
            concurrency_per_connection: Some(1),
            target_rate: None,
            requests: 100,
            succeeded: 100,
            errors: 0,
            elapsed: Duration::from_secs(2),
            latencies: (1..=100).map(Duration::from_millis).collect(),
        };
        assert_eq!(report.percentile(50.0), Duration::from_millis(50));
        assert_eq!(report.percentile(90.0), Duration::from_millis(90));
        assert_eq!(report.percentile(99.0), Duration::from_millis(99));
        assert_eq!(report.max(), Duration::from_millis(100));
        assert!((report.requests_per_second() - 50.0).abs() < 1e-9);
    }

    #[test]
    fn stop_by_count_or_by_time() {
        let clock = Instant::now();
        let count = Stop::Count(3);
        assert!(count.admits(2, clock + Duration::from_secs(99), clock));
        assert!(!count.admits(3, clock, clock));
        assert_eq!(count.pool_size(4096), 3);
        let timed = Stop::After(Duration::from_secs(2));
        assert!(timed.admits(1_000_000, clock + Duration::from_millis(1999), clock));
        assert!(!timed.admits(0, clock + Duration::from_secs(2), clock));
        assert_eq!(timed.pool_size(64), 64);
    }

    #[test]
    fn outcomes_are_counted_exactly() {
        let mut a = WorkerStats::default();
        a.record(Ok(Duration::from_millis(1)));
        a.record(Err("x".into()));
        let mut b = WorkerStats::default();
        b.record(Err("x".into()));
        b.record(Err("y".into()));
        a.merge(b);
        assert_eq!(a.latencies.len(), 1);
        assert_eq!(a.errors, 3);
        assert_eq!(a.messages.get("x"), Some(&2));
        assert_eq!(a.messages.get("y"), Some(&1));
    }

    #[test]
    fn csrs_are_prepared_in_full() {
        let params = RequestParams::insecure("app", "default");
        let requests = prepare_requests(&params, KeyAlgorithm::Ed25519, 7).unwrap();
        assert_eq!(requests.len(), 7);
        assert!(requests.iter().all(|r| r.id == "app"));
        let csrs: std::collections::BTreeSet<_> = requests
            .iter()
            .map(|r| r.certificate_signing_request.clone())
            .collect();
        assert_eq!(csrs.len(), 7, "every request has its own key");
    }
}

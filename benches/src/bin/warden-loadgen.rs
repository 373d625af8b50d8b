//! `warden-loadgen`: a fixed number of daprd-shaped `SignCertificate` requests against a running
//! CA (Warden or Sentry), over N TLS connections authorized as daprd authorizes Sentry, with M
//! requests in flight per connection. Reports throughput, latency percentiles and errors; exits
//! non-zero when any request failed.
//!
//! The CSRs (one fresh key each, as daprd makes them) are generated before the clock starts, so
//! the numbers measure the server, not the client's key generation.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use warden_core::bundle::parse_certificates;
use warden_core::crypto::KeyAlgorithm;
use warden_core::spiffe::{SpiffeId, TrustDomain};
use warden_host::identity::{self, CsrKeyType, RequestParams};
use warden_host::proto::SignCertificateRequest;

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
    /// Requests in flight on each connection.
    #[arg(long, default_value_t = 1)]
    concurrency_per_connection: usize,
    /// Total number of requests to send.
    #[arg(long, default_value_t = 10_000)]
    requests: usize,
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
    concurrency_per_connection: usize,
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
                            identity::new_key_and_csr(key)
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

async fn run(args: &Args) -> Result<Report, String> {
    let connections = args
        .connections
        .unwrap_or_else(|| 2 * std::thread::available_parallelism().map_or(1, usize::from));
    if connections == 0 || args.concurrency_per_connection == 0 {
        return Err("--connections and --concurrency-per-connection must be at least 1".into());
    }
    let anchors_pem = std::fs::read(&args.trust_anchors)
        .map_err(|e| format!("cannot read {}: {e}", args.trust_anchors.display()))?;
    let anchors = parse_certificates(&anchors_pem)
        .map_err(|e| format!("{}: {e}", args.trust_anchors.display()))?;
    let td = TrustDomain::new(&args.control_plane_trust_domain)
        .map_err(|e| format!("--control-plane-trust-domain: {e}"))?;
    let server_id = SpiffeId::sentry(&td, &args.control_plane_namespace)
        .map_err(|e| format!("--control-plane-namespace: {e}"))?;
    let tls =
        Arc::new(identity::spiffe_client_config(anchors, server_id).map_err(|e| e.to_string())?);

    let started = Instant::now();
    let params = RequestParams::insecure(&args.app_id, &args.namespace);
    let requests = Arc::new(prepare_requests(
        &params,
        args.key_type.into(),
        args.requests,
    )?);
    if !args.json {
        eprintln!(
            "prepared {} {:?} CSRs in {:.2} s",
            requests.len(),
            args.key_type,
            started.elapsed().as_secs_f64()
        );
    }

    let mut clients = Vec::with_capacity(connections);
    for _ in 0..connections {
        clients.push(
            identity::connect(&args.address, Arc::clone(&tls))
                .await
                .map_err(|e| e.to_string())?,
        );
    }

    let next = Arc::new(AtomicUsize::new(0));
    let clock = Instant::now();
    let mut workers = Vec::new();
    for client in &clients {
        for _ in 0..args.concurrency_per_connection {
            let mut client = client.clone();
            let requests = Arc::clone(&requests);
            let next = Arc::clone(&next);
            workers.push(tokio::spawn(async move {
                let mut stats = WorkerStats::default();
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(request) = requests.get(index).cloned() else {
                        break;
                    };
                    let sent = Instant::now();
                    let result = client.sign_certificate(request).await;
                    let latency = sent.elapsed();
                    let failure = match result {
                        Ok(response) => {
                            let response = response.into_inner();
                            if response.workload_certificate.is_empty() {
                                Some("empty workload_certificate".to_owned())
                            } else if response.valid_until.is_none() {
                                Some("no valid_until".to_owned())
                            } else {
                                None
                            }
                        }
                        Err(status) => Some(format!("{:?}: {}", status.code(), status.message())),
                    };
                    match failure {
                        None => stats.latencies.push(latency),
                        Some(message) => {
                            stats.errors += 1;
                            *stats.messages.entry(message).or_default() += 1;
                        }
                    }
                }
                stats
            }));
        }
    }
    let mut latencies = Vec::with_capacity(requests.len());
    let mut errors = 0;
    let mut messages: BTreeMap<String, usize> = BTreeMap::new();
    for worker in workers {
        let stats = worker.await.map_err(|e| format!("a worker failed: {e}"))?;
        latencies.extend(stats.latencies);
        errors += stats.errors;
        for (message, count) in stats.messages {
            *messages.entry(message).or_default() += count;
        }
    }
    let elapsed = clock.elapsed();
    latencies.sort_unstable();
    for (message, count) in messages.iter().take(10) {
        eprintln!("error ({count}x): {message}");
    }
    Ok(Report {
        connections,
        concurrency_per_connection: args.concurrency_per_connection,
        requests: requests.len(),
        succeeded: latencies.len(),
        errors,
        elapsed,
        latencies,
    })
}

fn print_report(args: &Args, r: &Report) {
    if args.json {
        println!(
            concat!(
                "{{\"address\":{:?},\"key_type\":\"{}\",\"connections\":{},",
                "\"concurrency_per_connection\":{},\"requests\":{},\"succeeded\":{},",
                "\"errors\":{},\"elapsed_s\":{:.6},\"requests_per_second\":{:.1},",
                "\"latency_ms\":{{\"p50\":{:.3},\"p90\":{:.3},\"p99\":{:.3},\"max\":{:.3}}}}}"
            ),
            args.address,
            match args.key_type {
                CsrKeyType::Ed25519 => "ed25519",
                CsrKeyType::P256 => "p256",
            },
            r.connections,
            r.concurrency_per_connection,
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
        "{} requests to {} over {} connections x {} in flight",
        r.requests, args.address, r.connections, r.concurrency_per_connection
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
            concurrency_per_connection: 1,
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

//! Graceful shutdown: the signal that starts it, the grace period, and the one deadline by which
//! every server must have stopped.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::listeners::InFlight;
use super::{ServeError, StopFailure};
use crate::observability::{SCOPE_SENTRY, SCOPE_SERVER};

/// How long in-flight requests get to finish after SIGTERM (Sentry's 15 s).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(15);
/// Overrides [`SHUTDOWN_GRACE`] in milliseconds, for the tests only (a test that waits out
/// 15 s would slow the suite). Undocumented on purpose: operators get Sentry's value.
pub(super) const SHUTDOWN_GRACE_TEST_ENV: &str = "WARDEN_TEST_SHUTDOWN_GRACE_MS";
/// The longest grace the override accepts: beyond it the deadline arithmetic could overflow.
pub(super) const SHUTDOWN_GRACE_TEST_MAX_MS: u64 = 3_600_000;

/// A server task that ends when its server stops.
pub(super) type ServerTask = JoinHandle<std::io::Result<()>>;

/// [`SHUTDOWN_GRACE`], or the tests' override.
pub(super) fn grace() -> Result<Duration, ServeError> {
    parse_shutdown_grace(std::env::var_os(SHUTDOWN_GRACE_TEST_ENV).as_deref())
}

fn parse_shutdown_grace(value: Option<&std::ffi::OsStr>) -> Result<Duration, ServeError> {
    let Some(value) = value else {
        return Ok(SHUTDOWN_GRACE);
    };
    value
        .to_str()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|ms| *ms <= SHUTDOWN_GRACE_TEST_MAX_MS)
        .map(Duration::from_millis)
        .ok_or(ServeError::ShutdownGrace)
}

/// Tells every server to stop; [`Shutdown::finish`] then waits for them.
#[derive(Debug)]
pub(super) struct Shutdown {
    tx: watch::Sender<bool>,
    grace: Duration,
}

/// What each server waits on to start its graceful stop.
#[derive(Clone, Debug)]
pub(super) struct ShutdownSignal(watch::Receiver<bool>);

impl ShutdownSignal {
    /// Completes once the shutdown has begun.
    pub(super) fn wait(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.0.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    }
}

/// A shutdown with `grace` for the servers to stop, and the signal they wait on.
pub(super) fn channel(grace: Duration) -> (Shutdown, ShutdownSignal) {
    let (tx, rx) = watch::channel(false);
    (Shutdown { tx, grace }, ShutdownSignal(rx))
}

impl Shutdown {
    /// Stops the servers. One deadline for everything: a server that cannot stop within the
    /// grace period is cut, and the exit status says so (Sentry logs "shut down gracefully"
    /// and exits 0 regardless).
    pub(super) async fn finish(
        self,
        grpc: JoinHandle<Result<(), tonic::transport::Error>>,
        in_flight: &InFlight,
        healthz: ServerTask,
        metrics: Option<ServerTask>,
        oidc: Option<ServerTask>,
    ) -> Result<(), ServeError> {
        let grace = self.grace;
        let _ = self.tx.send(true);
        let deadline = tokio::time::Instant::now() + grace;
        let mut failures = Vec::new();
        if let Err(failure) = stop_grpc(grpc, in_flight, deadline, grace).await {
            failures.push(failure);
        }
        let others = [
            ("healthz", Some(healthz)),
            ("metrics", metrics),
            ("OIDC", oidc),
        ];
        for (name, task) in others {
            let Some(task) = task else { continue };
            if let Err(failure) = stop_server(name, task, deadline, grace).await {
                failures.push(failure);
            }
        }
        if !failures.is_empty() {
            return Err(ServeError::Shutdown { failures });
        }
        tracing::info!(target: SCOPE_SENTRY, "Sentry shut down gracefully");
        Ok(())
    }
}

/// Waits for the gRPC server to finish its in-flight requests; past the deadline they are cut.
async fn stop_grpc(
    mut grpc: JoinHandle<Result<(), tonic::transport::Error>>,
    in_flight: &InFlight,
    deadline: tokio::time::Instant,
    grace: Duration,
) -> Result<(), StopFailure> {
    match tokio::time::timeout_at(deadline, &mut grpc).await {
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(e))) => Err(StopFailure::Grpc(e)),
        Ok(Err(e)) => Err(StopFailure::GrpcTask(e)),
        Err(_) => {
            let cut = in_flight.count();
            grpc.abort();
            tracing::error!(target: SCOPE_SERVER, "Shutdown grace period of {grace:?} ran out: cutting {cut} in-flight request(s)");
            Err(StopFailure::RequestsCut { cut, grace })
        }
    }
}

/// Waits for one of the other servers to stop; past the deadline its connections are cut.
async fn stop_server(
    server: &'static str,
    mut task: ServerTask,
    deadline: tokio::time::Instant,
    grace: Duration,
) -> Result<(), StopFailure> {
    match tokio::time::timeout_at(deadline, &mut task).await {
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(error))) => Err(StopFailure::Server { server, error }),
        Ok(Err(error)) => Err(StopFailure::ServerTask { server, error }),
        Err(_) => {
            task.abort();
            Err(StopFailure::ServerCut { server, grace })
        }
    }
}

/// Completes on SIGTERM or SIGINT.
pub(super) async fn wait_for_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(target: SCOPE_SENTRY, "cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn shutdown_grace_is_sentrys_unless_the_tests_override_it_within_bounds() {
        use std::ffi::OsStr;
        assert_eq!(parse_shutdown_grace(None).unwrap(), Duration::from_secs(15));
        assert_eq!(
            parse_shutdown_grace(Some(OsStr::new("250"))).unwrap(),
            Duration::from_millis(250)
        );
        // u64::MAX ms would overflow the deadline (a panic at shutdown).
        for bad in ["", "-1", "1s", "18446744073709551615", "3600001"] {
            assert!(
                matches!(
                    parse_shutdown_grace(Some(OsStr::new(bad))),
                    Err(ServeError::ShutdownGrace)
                ),
                "{bad}"
            );
        }
    }
}

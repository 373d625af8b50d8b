//! What operators see of a running Warden: Dapr kit-style logs, Sentry's Prometheus metrics, and the
//! healthz and metrics HTTP servers, all compatible with Sentry so existing probes, dashboards and log
//! pipelines keep working.
//!
//! - Logs: [`init_logging`] with scopes [`SCOPE_SENTRY`], [`SCOPE_CA`], [`SCOPE_SERVER`] as tracing targets;
//!   mark a fatal error with `tracing::error!(target: SCOPE_SENTRY, fatal = true, "...")`.
//! - Metrics: [`Metrics`], served by [`serve_metrics`] (Sentry's `--metrics-port`, default 9090).
//! - Readiness: [`Health`] and [`HealthTarget`], served by [`serve_healthz`] (`--healthz-port`, default 8080).

mod health;
mod logging;
mod metrics;

pub(crate) use health::{Health, HealthTarget, serve_healthz};
pub(crate) use logging::{
    LogLevel, LogOptions, SCOPE_CA, SCOPE_SENTRY, SCOPE_SERVER, init_logging,
};
pub(crate) use metrics::{Metrics, serve_metrics};

use std::future::Future;
use std::time::Duration;

/// How long a client of the HTTP endpoints (healthz, metrics, OIDC) may take to send a request
/// head, and how long a kept-alive connection may stay silent: the gRPC port's preface timeout.
pub(crate) const HTTP_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `router` over HTTP/1.1 on `listener` until `shutdown`, then finishes the requests in
/// flight. Unlike `axum::serve`, a connection that sends no complete request head within
/// [`HTTP_HEADER_TIMEOUT`] (a silent client, slowloris, an idle keep-alive) is closed, so
/// idle clients cannot pin file descriptors forever.
pub(crate) async fn serve_http<L>(
    mut listener: L,
    router: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: axum::serve::Listener,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HTTP_HEADER_TIMEOUT);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            (io, _) = listener.accept() => {
                let service = hyper_util::service::TowerToHyperService::new(router.clone());
                let connection = graceful
                    .watch(builder.serve_connection(hyper_util::rt::TokioIo::new(io), service));
                tokio::spawn(async move {
                    // A client that goes away or times out ends only its own connection.
                    let _ = connection.await;
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// A tiny HTTP/1.1 client and server harness for the endpoint tests, so they need no client dependency.
#[cfg(test)]
mod test_http {
    use std::future::Future;
    use std::net::SocketAddr;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::oneshot;
    use tokio::task::JoinHandle;

    /// A parsed response.
    pub(super) struct Response {
        pub(super) status: u16,
        pub(super) headers: Vec<(String, String)>,
        pub(super) body: String,
    }

    impl Response {
        pub(super) fn header(&self, name: &str) -> Option<String> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        }
    }

    /// Binds 127.0.0.1:0, runs `serve` on it in a task, and returns the address, the shutdown trigger and the task.
    pub(super) async fn spawn_until<F, Fut>(
        serve: F,
    ) -> (
        SocketAddr,
        oneshot::Sender<()>,
        JoinHandle<std::io::Result<()>>,
    )
    where
        F: FnOnce(TcpListener, std::pin::Pin<Box<dyn Future<Output = ()> + Send>>) -> Fut,
        Fut: Future<Output = std::io::Result<()>> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = Box::pin(async move {
            let _ = stopped.await;
        });
        let task = tokio::spawn(serve(listener, shutdown));
        (addr, stop, task)
    }

    /// Sends one `Connection: close` request and reads the whole response (the body is not chunked for these
    /// handlers: axum sets Content-Length on fixed bodies).
    pub(super) async fn request(addr: SocketAddr, method: &str, path: &str) -> Response {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        let raw = String::from_utf8(raw).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers = lines
            .map(|line| {
                let (name, value) = line.split_once(':').unwrap();
                (name.trim().to_owned(), value.trim().to_owned())
            })
            .collect();
        Response {
            status,
            headers,
            body: body.to_owned(),
        }
    }
}

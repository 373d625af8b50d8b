//! The listening sockets: binding an address, TLS handshakes off the accept loop, and the
//! in-flight request count a shutdown reports.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;

use super::ServeError;
use crate::observability::SCOPE_SERVER;

/// A TLS handshake that takes longer than this is dropped (slow or idle clients).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A client that completed the TLS handshake must send its first bytes (the HTTP/2 preface)
/// within this; otherwise the connection is closed (HTTP/2 keep-alive pings only start after the
/// preface, so a silent client would otherwise hold its connection forever).
const PREFACE_TIMEOUT: Duration = Duration::from_secs(10);
/// The HTTP/2 client preface is 24 bytes; the look-ahead buffer needs no more.
const PREFACE_BUFFER: usize = 24;

/// Counts the requests being handled, so a shutdown that runs out of time can say how many it
/// cut. A request counts from the moment its headers reach the service until its handler
/// returns or is dropped (a unary answer is small and leaves at once).
#[derive(Clone, Debug, Default)]
pub(super) struct InFlight(Arc<std::sync::atomic::AtomicUsize>);

impl InFlight {
    pub(super) fn count(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn enter(&self) -> InFlightGuard {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        InFlightGuard(Arc::clone(&self.0))
    }
}

struct InFlightGuard(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl<S> tower::Layer<S> for InFlight {
    type Service = InFlightService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        InFlightService {
            inner,
            count: self.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub(super) struct InFlightService<S> {
    inner: S,
    count: InFlight,
}

impl<S, R> tower::Service<R> for InFlightService<S>
where
    S: tower::Service<R>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = std::pin::Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        let guard = self.count.enter();
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await;
            drop(guard);
            response
        })
    }
}

/// Listens on `address` (empty: all interfaces) and `port` for the `server` named.
pub(super) async fn bind(
    address: &str,
    port: u16,
    server: &'static str,
) -> Result<TcpListener, ServeError> {
    let ip: IpAddr = if address.is_empty() {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        address
            .parse()
            .map_err(|source| ServeError::ListenAddress {
                server,
                address: address.to_owned(),
                source,
            })?
    };
    let addr = SocketAddr::new(ip, port);
    match TcpListener::bind(addr).await {
        Ok(l) => Ok(l),
        // Hosts without IPv6 cannot bind [::]; all-interfaces then means 0.0.0.0.
        Err(_) if address.is_empty() => TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], port)))
            .await
            .map_err(|source| ServeError::ListenAllInterfaces {
                server,
                port,
                source,
            }),
        Err(source) => Err(ServeError::Listen {
            server,
            address: addr,
            source,
        }),
    }
}

/// Accepts TCP connections and completes TLS handshakes off the accept loop, so one slow
/// client cannot hold up the others; a connection whose first bytes do not arrive within
/// [`PREFACE_TIMEOUT`] after the handshake is closed.
pub(super) fn tls_incoming(
    listener: TcpListener,
    acceptor: TlsAcceptor,
) -> ReceiverStream<Result<SpokeFirst, std::io::Error>> {
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(conn) => conn,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(target: SCOPE_SERVER, "accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            if tx.is_closed() {
                break;
            }
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let mut stream =
                            tokio::io::BufReader::with_capacity(PREFACE_BUFFER, stream);
                        match tokio::time::timeout(
                            PREFACE_TIMEOUT,
                            tokio::io::AsyncBufReadExt::fill_buf(&mut stream),
                        )
                        .await
                        {
                            Ok(Ok(first)) if !first.is_empty() => {
                                let _ = tx.send(Ok(SpokeFirst(stream))).await;
                            }
                            Ok(_) => {}
                            Err(_) => {
                                tracing::debug!(target: SCOPE_SERVER, "{peer} sent nothing after the TLS handshake; closed");
                            }
                        }
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(target: SCOPE_SERVER, "TLS handshake with {peer} failed: {e}");
                    }
                    Err(_) => {
                        tracing::debug!(target: SCOPE_SERVER, "TLS handshake with {peer} timed out");
                    }
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// A TLS connection whose client has sent its first bytes, still buffered for the reader.
pub(super) struct SpokeFirst(tokio::io::BufReader<tokio_rustls::server::TlsStream<TcpStream>>);

impl tonic::transport::server::Connected for SpokeFirst {
    type ConnectInfo =
        <tokio_rustls::server::TlsStream<TcpStream> as tonic::transport::server::Connected>::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        tonic::transport::server::Connected::connect_info(self.0.get_ref())
    }
}

impl tokio::io::AsyncRead for SpokeFirst {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        tokio::io::AsyncRead::poll_read(std::pin::Pin::new(&mut self.0), cx, buf)
    }
}

impl tokio::io::AsyncWrite for SpokeFirst {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        tokio::io::AsyncWrite::poll_write(std::pin::Pin::new(&mut self.0), cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        tokio::io::AsyncWrite::poll_write_vectored(std::pin::Pin::new(&mut self.0), cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        tokio::io::AsyncWrite::is_write_vectored(&self.0)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        tokio::io::AsyncWrite::poll_flush(std::pin::Pin::new(&mut self.0), cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        tokio::io::AsyncWrite::poll_shutdown(std::pin::Pin::new(&mut self.0), cx)
    }
}

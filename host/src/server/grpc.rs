//! The CA's gRPC port: TLS with the serving SVID, and the service stack in front of the
//! SignCertificate handler.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;

use super::listeners::{InFlight, SpokeFirst, bind, tls_incoming};
use super::shutdown::ShutdownSignal;
use super::web::{self, WebOptions};
use super::{ServeArgs, ServeError};
use crate::ca::service::{CaService, CaState};
use crate::credentials::serving_cert::{self, ServingCert};
use crate::observability::SCOPE_SERVER;

/// Accepted connections, TLS done and the client's first bytes in.
pub(super) type Incoming = ReceiverStream<Result<SpokeFirst, std::io::Error>>;

/// Binds the gRPC port and starts accepting TLS connections on it.
pub(super) async fn listen(
    args: &ServeArgs,
    serving: &Arc<ServingCert>,
    web: &WebOptions,
) -> Result<Incoming, ServeError> {
    let grpc_listener = bind(&args.listen_address, args.port, "gRPC").await?;
    let mut tls_config = serving_cert::server_config(Arc::clone(serving))?;
    if web.http1() {
        // gRPC-Web clients and proxies may speak HTTP/1.1; plain gRPC stays on h2.
        tls_config.alpn_protocols.push(b"http/1.1".to_vec());
    }
    let acceptor = TlsAcceptor::from(Arc::new(tls_config));
    let incoming = tls_incoming(grpc_listener, acceptor);
    tracing::info!(target: SCOPE_SERVER, "Running gRPC server on port {}", args.port);
    if web.grpc_web {
        tracing::info!(target: SCOPE_SERVER, "Accepting gRPC-Web on port {}; CORS origins: {}", args.port,
            if web.allowed_origins.is_empty() { "none (same origin only)".to_owned() } else { web.allowed_origins.join(", ") });
    }
    if let Some(dir) = &web.ui {
        tracing::info!(target: SCOPE_SERVER, "Serving the browser UI from {} at https://<host>:{}/", dir.display(), args.port);
    }
    Ok(incoming)
}

/// Serves the CA on `incoming` until the shutdown signal; returns the server task and the
/// count of requests in flight.
///
/// Outermost the in-flight counter (it must see every request to say how many a shutdown
/// cut), then the browser layers (web.rs): CORS, static UI, gRPC-Web translation, and always
/// the gRPC content-type check in front of the CA.
pub(super) fn spawn(
    incoming: Incoming,
    web: &WebOptions,
    state: &Arc<CaState>,
    signal: &ShutdownSignal,
) -> (JoinHandle<Result<(), tonic::transport::Error>>, InFlight) {
    let in_flight = InFlight::default();
    let grpc = tokio::spawn(
        tonic::transport::Server::builder()
            .accept_http1(web.http1())
            .http2_keepalive_interval(Some(Duration::from_secs(60)))
            .layer(in_flight.clone())
            .layer(tower::util::option_layer(web.cors_layer()))
            .layer(tower::util::option_layer(web.ui_layer()))
            .layer(tower::util::option_layer(web.grpc_web_layer()))
            .layer(web::GrpcOnlyLayer)
            .add_service(CaService::new(Arc::clone(state)).into_server())
            .serve_with_incoming_shutdown(incoming, signal.wait()),
    );
    (grpc, in_flight)
}

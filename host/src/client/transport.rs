//! How daprd reaches Sentry: TLS (1.2 or 1.3, ALPN `h2`) with the server authorized by its exact
//! SPIFFE ID through the trust anchors (go-spiffe `TLSClientCredentials` + `AuthorizeID`), then
//! gRPC over that stream.

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::{CertificateError, DigitallySignedStruct, OtherError, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint, Uri};
use warden_core::bundle::{CertificatesError, encode_certificates, read_certificates};
use warden_core::certificate::CertificateRef;
use warden_core::chain::{SvidError, verify_svid};
use warden_core::spiffe::SpiffeId;
use x509_cert::Certificate;

use crate::native::NativeVerifier;
use crate::proto::ca_client::CaClient;

/// The ALPN protocol gRPC needs; grpc-go clients refuse a server that does not select it.
const ALPN_H2: &[u8] = b"h2";
/// SNI sent when the address is an IP literal (the verifier ignores names anyway).
const FALLBACK_SERVER_NAME: &str = "localhost";
/// How long [`connect`] waits for TCP plus the TLS handshake.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the server's certificate chain was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerIdentityError {
    /// A presented certificate does not parse.
    #[error("server certificate {position} does not parse: {error}")]
    Malformed {
        /// Which certificate (0 = the leaf).
        position: usize,
        /// The DER error.
        error: der::Error,
    },
    /// The chain does not verify to the trust anchors, or the leaf is not an X509-SVID.
    #[error("server certificate is not an X509-SVID trusted by the trust anchors: {0}")]
    Untrusted(SvidError),
    /// A trust anchor does not parse.
    #[error("trust anchor: {0}")]
    TrustAnchor(CertificatesError),
    /// The leaf is a valid SVID for another SPIFFE ID.
    #[error("server SPIFFE ID {presented} is not the expected {expected}")]
    WrongId {
        /// The ID in the server's leaf.
        presented: SpiffeId,
        /// The ID the client requires.
        expected: SpiffeId,
    },
}

/// Why [`spiffe_client_config`] could not build a configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientConfigError {
    /// No trust anchors were given, so no server could ever be trusted.
    #[error("no trust anchors")]
    NoTrustAnchors,
    /// A trust anchor does not encode.
    #[error("trust anchor: {0}")]
    TrustAnchor(CertificatesError),
    /// rustls refused the settings.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

/// A rustls server-certificate verifier that does what go-spiffe's `AuthorizeID` does: the
/// chain must verify to the trust anchors at the current time (core's [`verify_svid`]: RFC 5280
/// path checks plus the X509-SVID leaf rules) and the leaf's SPIFFE ID must equal the expected
/// ID exactly. The server name (SNI, hostname) is ignored, as Sentry's certificate has no DNS SAN.
///
/// Failures are reported as [`rustls::Error::InvalidCertificate`] with
/// [`CertificateError::Other`] wrapping a [`ServerIdentityError`], so the server receives a
/// `certificate_unknown` alert and the error names what was wrong.
#[derive(Debug)]
pub struct SpiffeServerVerifier {
    /// DER, read in place at each check.
    anchors: Vec<Vec<u8>>,
    expected: SpiffeId,
    algorithms: WebPkiSupportedAlgorithms,
}

impl SpiffeServerVerifier {
    /// A verifier for servers whose leaf is `expected` under `anchors` (DER); handshake
    /// signatures are checked with `provider`'s algorithms.
    pub fn new(anchors: Vec<Vec<u8>>, expected: SpiffeId, provider: &CryptoProvider) -> Self {
        Self {
            anchors,
            expected,
            algorithms: provider.signature_verification_algorithms,
        }
    }

    /// The SPIFFE ID servers must present.
    pub fn expected_id(&self) -> &SpiffeId {
        &self.expected
    }

    /// Checks a presented chain (leaf first) at `now`; the pure part of
    /// [`ServerCertVerifier::verify_server_cert`].
    pub fn verify_chain_der(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: warden_core::UnixTime,
    ) -> Result<(), ServerIdentityError> {
        let chain = std::iter::once(end_entity)
            .chain(intermediates)
            .enumerate()
            .map(|(position, der)| {
                CertificateRef::from_der(der)
                    .map_err(|error| ServerIdentityError::Malformed { position, error })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let anchors = read_certificates(&self.anchors).map_err(ServerIdentityError::TrustAnchor)?;
        let presented = verify_svid(&chain, &anchors, now, &NativeVerifier)
            .map_err(ServerIdentityError::Untrusted)?;
        if presented != self.expected {
            return Err(ServerIdentityError::WrongId {
                presented,
                expected: self.expected.clone(),
            });
        }
        Ok(())
    }
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: rustls_pki_types::UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let now = warden_core::UnixTime::from_secs(now.as_secs());
        self.verify_chain_der(end_entity, intermediates, now)
            .map(|()| ServerCertVerified::assertion())
            .map_err(|e| {
                rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e))))
            })
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The client TLS settings daprd uses towards Sentry: TLS 1.3 or 1.2 with the aws-lc-rs
/// provider, ALPN `h2`, no client certificate, and the server authorized by
/// [`SpiffeServerVerifier`]: a chain to `anchors` and a leaf whose SPIFFE ID is exactly
/// `expected_server_id` (normally `spiffe://<control-plane TD>/ns/<control-plane ns>/dapr-sentry`).
pub fn spiffe_client_config(
    anchors: Vec<Certificate>,
    expected_server_id: SpiffeId,
) -> Result<rustls::ClientConfig, ClientConfigError> {
    if anchors.is_empty() {
        return Err(ClientConfigError::NoTrustAnchors);
    }
    let anchors = encode_certificates(&anchors).map_err(ClientConfigError::TrustAnchor)?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = SpiffeServerVerifier::new(anchors, expected_server_id, &provider);
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(config)
}

/// One failed dial, as the connector reports it.
#[derive(Debug)]
#[non_exhaustive]
pub enum DialError {
    /// The TCP connection failed (refused, unreachable, name not resolved): worth retrying.
    Tcp {
        /// The address dialled.
        address: String,
        /// Why.
        source: io::Error,
    },
    /// The TLS handshake failed, typically because the server is not trusted.
    Tls {
        /// The address dialled.
        address: String,
        /// Why (rustls's error inside an `io::Error`).
        source: io::Error,
    },
    /// The server did not select ALPN `h2`; grpc-go clients such as daprd refuse such servers.
    NoAlpnH2 {
        /// The address dialled.
        address: String,
    },
}

impl DialError {
    /// Whether trying again may help (the server may not be up yet); a refused certificate or a
    /// missing ALPN will not change.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Tcp { .. })
    }
}

impl fmt::Display for DialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp { address, source } => write!(f, "TCP connection to {address}: {source}"),
            Self::Tls { address, source } => {
                write!(f, "TLS handshake with {address}: ")?;
                // Show our verifier's own message rather than rustls's wrapping of it.
                let identity = source
                    .get_ref()
                    .and_then(|e| e.downcast_ref::<rustls::Error>())
                    .and_then(|e| match e {
                        rustls::Error::InvalidCertificate(CertificateError::Other(other)) => {
                            other.0.downcast_ref::<ServerIdentityError>()
                        }
                        _ => None,
                    });
                match identity {
                    Some(e) => write!(f, "{e}"),
                    None => write!(f, "{source}"),
                }
            }
            Self::NoAlpnH2 { address } => write!(
                f,
                "server {address} did not negotiate ALPN \"h2\" (gRPC clients such as daprd refuse it)"
            ),
        }
    }
}

/// No `source`: the `Display` text already includes the cause, and error chains printed with
/// `{:#}` would otherwise repeat it.
impl std::error::Error for DialError {}

/// Why [`connect`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The address is not `host:port`.
    #[error("invalid sentry address {address:?}: expected host:port")]
    InvalidAddress {
        /// The address given.
        address: String,
    },
    /// The connection or handshake failed.
    #[error("cannot connect to {address}: {detail}")]
    Connect {
        /// The address given.
        address: String,
        /// The innermost useful message (the dial error, or tonic's chain).
        detail: String,
        /// Whether trying again may help.
        retryable: bool,
    },
}

impl ConnectError {
    /// Whether trying again may help: the TCP connection failed or timed out. A refused server
    /// certificate or a bad address will not change.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::InvalidAddress { .. } => false,
            Self::Connect { retryable, .. } => *retryable,
        }
    }

    fn from_transport(address: &str, error: &tonic::transport::Error) -> Self {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
        let mut messages = Vec::new();
        while let Some(e) = source {
            if let Some(dial) = e.downcast_ref::<DialError>() {
                return Self::Connect {
                    address: address.to_owned(),
                    detail: dial.to_string(),
                    retryable: dial.is_retryable(),
                };
            }
            messages.push(e.to_string());
            source = e.source();
        }
        // Not from our connector: tonic's own failure, such as the connect timeout.
        Self::Connect {
            address: address.to_owned(),
            detail: messages.join(": "),
            retryable: true,
        }
    }
}

/// The host part of `host:port` or `[ipv6]:port`.
fn host_of(address: &str) -> Option<&str> {
    if let Some(rest) = address.strip_prefix('[') {
        let (host, port) = rest.split_once(']')?;
        port.strip_prefix(':').filter(|p| !p.is_empty())?;
        return Some(host);
    }
    let (host, port) = address.rsplit_once(':')?;
    if host.is_empty() || port.is_empty() || host.contains(':') || address.contains('/') {
        return None;
    }
    Some(host)
}

/// The SNI for `address`: its host name, or `localhost` for an IP literal or a name rustls
/// cannot send. Only cosmetic: [`SpiffeServerVerifier`] ignores it, as go-spiffe does.
fn server_name_for(address: &str) -> Option<ServerName<'static>> {
    let host = host_of(address)?;
    let name = if host.parse::<IpAddr>().is_ok() {
        FALLBACK_SERVER_NAME
    } else {
        host
    };
    ServerName::try_from(name.to_owned())
        .or_else(|_| ServerName::try_from(FALLBACK_SERVER_NAME))
        .ok()
}

/// Opens a gRPC channel to the CA at `address` (`host:port`, as `--sentry-address` takes it)
/// over TCP + TLS with `config` (normally [`spiffe_client_config`]), and returns a client for
/// `dapr.proto.sentry.v1.CA`.
///
/// The connection is made (and the server authorized) before this returns, within
/// [`CONNECT_TIMEOUT`]; if it later drops, the channel redials with the same settings. The SNI is
/// the host of `address`, or `localhost` for an IP address. The server must select ALPN `h2`.
///
/// # Errors
///
/// [`ConnectError::InvalidAddress`] for an address that is not `host:port`;
/// [`ConnectError::Connect`] when TCP, the handshake or the server's identity fails, with the
/// reason in its message (for example `server SPIFFE ID ... is not the expected ...`).
pub async fn connect(
    address: &str,
    config: Arc<rustls::ClientConfig>,
) -> Result<CaClient<Channel>, ConnectError> {
    let invalid = || ConnectError::InvalidAddress {
        address: address.to_owned(),
    };
    let server_name = server_name_for(address).ok_or_else(invalid)?;
    let endpoint = Endpoint::from_shared(format!("http://{address}"))
        .map_err(|_| invalid())?
        .connect_timeout(CONNECT_TIMEOUT);
    let connector = TlsConnector::from(config);
    let target: Arc<str> = Arc::from(address);
    let dial = tower::service_fn(move |_: Uri| {
        let connector = connector.clone();
        let server_name = server_name.clone();
        let address = Arc::clone(&target);
        async move {
            let tcp = TcpStream::connect(&*address)
                .await
                .map_err(|source| DialError::Tcp {
                    address: address.to_string(),
                    source,
                })?;
            // gRPC requests are small; do not let Nagle hold them back.
            let _ = tcp.set_nodelay(true);
            let tls = connector
                .connect(server_name, tcp)
                .await
                .map_err(|source| DialError::Tls {
                    address: address.to_string(),
                    source,
                })?;
            if tls.get_ref().1.alpn_protocol() != Some(ALPN_H2) {
                return Err(DialError::NoAlpnH2 {
                    address: address.to_string(),
                });
            }
            Ok::<_, DialError>(TokioIo::new(tls))
        }
    });
    let channel = endpoint
        .connect_with_connector(dial)
        .await
        .map_err(|e| ConnectError::from_transport(address, &e))?;
    Ok(CaClient::new(channel))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use der::Encode as _;
    use warden_core::spiffe::TrustDomain;

    use super::*;
    use crate::client::test_support::TestCa;
    use crate::util::clock::now;

    fn der_chain(
        svid: &warden_core::bundle::IssuedSvid,
        ca: &TestCa,
    ) -> Vec<CertificateDer<'static>> {
        let mut chain = vec![CertificateDer::from(svid.certificate_der.clone())];
        for cert in ca.bundle.issuer_chain() {
            chain.push(CertificateDer::from(cert.to_der().unwrap()));
        }
        chain
    }

    fn verifier(ca: &TestCa, expected: SpiffeId) -> SpiffeServerVerifier {
        SpiffeServerVerifier::new(
            encode_certificates(ca.bundle.trust_anchors()).unwrap(),
            expected,
            &rustls::crypto::aws_lc_rs::default_provider(),
        )
    }

    fn check(
        v: &SpiffeServerVerifier,
        chain: &[CertificateDer<'static>],
        at: warden_core::UnixTime,
    ) -> Result<(), rustls::Error> {
        let name = ServerName::try_from("not-checked.example").unwrap();
        v.verify_server_cert(
            &chain[0],
            &chain[1..],
            &name,
            &[],
            rustls_pki_types::UnixTime::since_unix_epoch(at.as_duration()),
        )
        .map(|_| ())
    }

    fn identity_error(e: &rustls::Error) -> &ServerIdentityError {
        match e {
            rustls::Error::InvalidCertificate(CertificateError::Other(other)) => other
                .0
                .downcast_ref::<ServerIdentityError>()
                .expect("a ServerIdentityError"),
            other => panic!("unexpected error {other:?}"),
        }
    }

    #[test]
    fn accepts_the_sentry_svid_whatever_the_server_name() {
        let ca = TestCa::new("localhost");
        let id = ca.sentry_id();
        let svid = ca.issue(&id, now(), Duration::from_secs(3600));
        let v = verifier(&ca, id);
        check(&v, &der_chain(&svid, &ca), now()).unwrap();
    }

    #[test]
    fn rejects_another_spiffe_id_with_both_ids_in_the_message() {
        let ca = TestCa::new("localhost");
        let other = SpiffeId::parse("spiffe://a/ns/b/c").unwrap();
        let svid = ca.issue(&other, now(), Duration::from_secs(3600));
        let v = verifier(&ca, ca.sentry_id());
        let err = check(&v, &der_chain(&svid, &ca), now()).unwrap_err();
        assert!(matches!(
            identity_error(&err),
            ServerIdentityError::WrongId { .. }
        ));
        assert_eq!(
            identity_error(&err).to_string(),
            "server SPIFFE ID spiffe://a/ns/b/c is not the expected spiffe://localhost/ns/default/dapr-sentry"
        );
        // Same path in another trust domain, and another namespace: still refused.
        for wrong in [
            "spiffe://public/ns/default/dapr-sentry",
            "spiffe://localhost/ns/dapr-system/dapr-sentry",
        ] {
            let svid = ca.issue(
                &SpiffeId::parse(wrong).unwrap(),
                now(),
                Duration::from_secs(60),
            );
            assert!(check(&v, &der_chain(&svid, &ca), now()).is_err(), "{wrong}");
        }
    }

    #[test]
    fn rejects_a_chain_to_another_root() {
        let ca = TestCa::new("localhost");
        let stranger = TestCa::new("localhost");
        let svid = stranger.issue(&stranger.sentry_id(), now(), Duration::from_secs(3600));
        let v = verifier(&ca, ca.sentry_id());
        let err = check(&v, &der_chain(&svid, &stranger), now()).unwrap_err();
        let e = identity_error(&err);
        assert!(matches!(e, ServerIdentityError::Untrusted(_)), "{e:?}");
        assert!(e.to_string().contains("not an X509-SVID trusted"), "{e}");
    }

    #[test]
    fn rejects_an_expired_leaf() {
        let ca = TestCa::new("localhost");
        let issued_at = now().saturating_sub(Duration::from_secs(7200));
        let svid = ca.issue(&ca.sentry_id(), issued_at, Duration::from_secs(3600));
        let v = verifier(&ca, ca.sentry_id());
        let err = check(&v, &der_chain(&svid, &ca), now()).unwrap_err();
        let e = identity_error(&err);
        assert!(e.to_string().contains("expired"), "{e}");
        // The same chain was fine while it was valid.
        check(&v, &der_chain(&svid, &ca), issued_at).unwrap();
    }

    #[test]
    fn rejects_garbage_and_ca_leaves() {
        let ca = TestCa::new("localhost");
        let v = verifier(&ca, ca.sentry_id());
        let garbage = vec![CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x01])];
        let err = check(&v, &garbage, now()).unwrap_err();
        assert!(matches!(
            identity_error(&err),
            ServerIdentityError::Malformed { position: 0, .. }
        ));
        // The issuer itself (a CA, no URI SAN) is not a server identity.
        let issuer = CertificateDer::from(ca.bundle.issuer().to_der().unwrap());
        assert!(check(&v, &[issuer], now()).is_err());
    }

    #[test]
    fn client_config_speaks_h2_and_needs_anchors() {
        let ca = TestCa::new("localhost");
        let config =
            spiffe_client_config(ca.bundle.trust_anchors().to_vec(), ca.sentry_id()).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"h2".to_vec()]);
        assert!(matches!(
            spiffe_client_config(Vec::new(), ca.sentry_id()),
            Err(ClientConfigError::NoTrustAnchors)
        ));
        let td = TrustDomain::new("localhost").unwrap();
        assert_eq!(
            ca.sentry_id(),
            SpiffeId::sentry(&td, "default").unwrap(),
            "test CA serves the default Sentry ID"
        );
    }

    #[test]
    fn addresses_and_server_names() {
        assert_eq!(host_of("localhost:50001"), Some("localhost"));
        assert_eq!(host_of("10.0.0.1:443"), Some("10.0.0.1"));
        assert_eq!(host_of("[::1]:50001"), Some("::1"));
        for bad in [
            "localhost",
            ":50001",
            "host:",
            "::1:5",
            "http://h:1",
            "[::1]",
        ] {
            assert_eq!(host_of(bad), None, "{bad}");
        }
        let name = |a| server_name_for(a).map(|n| n.to_str().into_owned());
        assert_eq!(
            name("dapr-sentry.dapr-system.svc.cluster.local:443").as_deref(),
            Some("dapr-sentry.dapr-system.svc.cluster.local")
        );
        assert_eq!(name("127.0.0.1:50001").as_deref(), Some("localhost"));
        assert_eq!(name("[::1]:50001").as_deref(), Some("localhost"));
    }

    #[tokio::test]
    async fn connect_reports_refused_connections_as_retryable() {
        let ca = TestCa::new("localhost");
        let config =
            spiffe_client_config(ca.bundle.trust_anchors().to_vec(), ca.sentry_id()).unwrap();
        // A port that was just free: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = connect(&format!("127.0.0.1:{port}"), Arc::new(config.clone()))
            .await
            .unwrap_err();
        assert!(err.is_retryable(), "{err}");
        assert!(err.to_string().contains("TCP connection to"), "{err}");
        let err = connect("no-port", Arc::new(config)).await.unwrap_err();
        assert!(matches!(err, ConnectError::InvalidAddress { .. }), "{err}");
        assert!(!err.is_retryable());
    }
}

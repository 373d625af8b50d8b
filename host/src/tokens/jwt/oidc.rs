//! The OIDC discovery server: its settings, the host checks that decide which host the
//! discovery URLs name, the two endpoints, and the optional TLS listener.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::issuer::JwtIssuer;
use super::settings::{JwtArgs, JwtError};
use crate::observability::SCOPE_SENTRY;

/// The validated OIDC server settings.
#[derive(Clone, Debug)]
pub(crate) struct OidcSettings {
    /// Where to listen.
    pub address: String,
    /// Port.
    pub port: u16,
    /// The server TLS configuration (from the cert and key files) when HTTPS is on.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// `--oidc-jwks-uri`, when set.
    pub jwks_uri: Option<String>,
    /// Normalised prefix: empty, or `/a/b` without a trailing slash.
    pub path_prefix: String,
    /// `--oidc-allowed-hosts`; empty means any `Host` (and `X-Forwarded-Host` is ignored).
    pub allowed_hosts: Vec<AllowedHost>,
}

/// One `--oidc-allowed-hosts` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum AllowedHost {
    /// `*`: any syntactically valid host.
    Any,
    /// A name (or IP literal) as configured, and the port it is pinned to, if any.
    Name {
        /// The configured spelling, echoed in URLs.
        name: String,
        /// With a port, only that port matches; without, any port (or none) does.
        port: Option<u16>,
    },
}

impl AllowedHost {
    /// Parses a flag entry: `*`, `name` or `name:port` (`[v6]` / `[v6]:port` for IPv6).
    pub(crate) fn parse(entry: &str) -> Result<Self, JwtError> {
        let entry = entry.trim();
        if entry == "*" {
            return Ok(Self::Any);
        }
        let (name, port) = parse_authority(entry).ok_or_else(|| {
            JwtError::Config(format!(
                "invalid --oidc-allowed-hosts entry {entry:?}: expected a host name or IP, optionally with :port, or *"
            ))
        })?;
        Ok(Self::Name {
            name: name.to_owned(),
            port,
        })
    }
}

/// Why the OIDC server refuses a request's host.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) enum HostRefusal {
    /// The host (or `X-Forwarded-Host`) is missing, empty or not `name[:port]`: 400.
    Malformed(&'static str),
    /// Several hosts are claimed at once: 400.
    Ambiguous(&'static str),
    /// Not in `--oidc-allowed-hosts`: 403.
    NotAllowed,
}

/// Splits `name[:port]` (or `[v6][:port]`) and checks its syntax: a name of letters, digits,
/// `-`, `.` and `_` (at most 253 bytes), an IPv6 literal of hex digits, `:` and `.` in
/// brackets, and a decimal port. Anything else (userinfo, paths, spaces, quotes) is refused,
/// so nothing but a host ever reaches a URL.
fn parse_authority(text: &str) -> Option<(&str, Option<u16>)> {
    let (name, port) = if text.starts_with('[') {
        let end = text.find(']')?;
        let (name, rest) = text.split_at(end + 1);
        let inner = name.get(1..name.len() - 1)?;
        if inner.is_empty()
            || !inner
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return None;
        }
        match rest {
            "" => (name, None),
            _ => (name, Some(rest.strip_prefix(':')?)),
        }
    } else {
        let (name, port) = match text.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (text, None),
        };
        if name.is_empty()
            || name.len() > 253
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        {
            return None;
        }
        (name, port)
    };
    let port = match port {
        None => None,
        Some(digits) => {
            if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit())
            {
                return None;
            }
            Some(digits.parse::<u16>().ok()?)
        }
    };
    Some((name, port))
}

fn with_port(name: &str, port: Option<u16>) -> String {
    match port {
        Some(port) => format!("{name}:{port}"),
        None => name.to_owned(),
    }
}

/// The host the discovery URLs are built from, after checking it; the same value that was
/// checked is returned, so nothing unchecked is ever echoed.
///
/// - `host`: the `Host` header values and the request target's authority (absolute-form, or
///   HTTP/2 `:authority`). More than one `Host`, or a `Host` that differs from the authority,
///   is ambiguous; none is malformed.
/// - Without an allow-list every valid host is used (lower-cased) and `X-Forwarded-Host` is
///   ignored: anyone can send any `Host` then, so production setups set `--jwt-issuer`
///   and/or `--oidc-allowed-hosts`.
/// - With an allow-list, `X-Forwarded-Host` (a proxy's public name) replaces `Host` when
///   present. It must be a single value: several headers or a comma list are refused, since a
///   proxy appends to what the client sent and the first value is the client's. The chosen
///   value must match an entry: names compare case-insensitively, an entry without a port
///   allows any port, an entry with one only that port. The URL carries the entry's spelling
///   and the request's port; `*` allows any valid host, echoed lower-cased.
pub(crate) fn select_host(
    host: &[&str],
    authority: Option<&str>,
    forwarded: &[&str],
    allowed: &[AllowedHost],
) -> Result<String, HostRefusal> {
    if host.len() > 1 {
        return Err(HostRefusal::Ambiguous("several Host headers"));
    }
    let request_host = match (host.first(), authority) {
        (Some(h), Some(a)) if !h.eq_ignore_ascii_case(a) => {
            return Err(HostRefusal::Ambiguous(
                "the Host header differs from the request target",
            ));
        }
        (Some(h), _) => *h,
        (None, Some(a)) => a,
        (None, None) => return Err(HostRefusal::Malformed("no Host header")),
    };
    let malformed_host = HostRefusal::Malformed("the Host header is not a host name[:port]");
    if allowed.is_empty() {
        let (name, port) = parse_authority(request_host).ok_or(malformed_host)?;
        return Ok(with_port(&name.to_ascii_lowercase(), port));
    }
    let values: Vec<&str> = forwarded
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let (candidate, malformed) = match values.as_slice() {
        [] => (request_host, malformed_host),
        [one] => (
            *one,
            HostRefusal::Malformed("X-Forwarded-Host is not a host name[:port]"),
        ),
        _ => return Err(HostRefusal::Ambiguous("several X-Forwarded-Host values")),
    };
    let (name, port) = parse_authority(candidate).ok_or(malformed)?;
    for entry in allowed {
        match entry {
            AllowedHost::Any => return Ok(with_port(&name.to_ascii_lowercase(), port)),
            AllowedHost::Name {
                name: allowed_name,
                port: allowed_port,
            } if allowed_name.eq_ignore_ascii_case(name)
                && (allowed_port.is_none() || *allowed_port == port) =>
            {
                return Ok(with_port(allowed_name, port));
            }
            AllowedHost::Name { .. } => {}
        }
    }
    Err(HostRefusal::NotAllowed)
}

impl JwtArgs {
    /// The OIDC server settings; `None` unless both `--oidc-enabled` and `--jwt-enabled`.
    pub(crate) fn oidc_settings(&self) -> Result<Option<OidcSettings>, JwtError> {
        if !(self.oidc_enabled && self.jwt_enabled) {
            if self.oidc_enabled {
                tracing::warn!(target: SCOPE_SENTRY, "--oidc-enabled has no effect without --jwt-enabled");
            }
            return Ok(None);
        }
        let tls = if self.oidc_server_tls_enabled {
            if self.oidc_server_tls_cert_file.is_empty() || self.oidc_server_tls_key_file.is_empty()
            {
                return Err(JwtError::Config(
                    "--oidc-server-tls-enabled needs --oidc-server-tls-cert-file and --oidc-server-tls-key-file"
                        .into(),
                ));
            }
            Some(Arc::new(oidc_tls_config(
                Path::new(&self.oidc_server_tls_cert_file),
                Path::new(&self.oidc_server_tls_key_file),
            )?))
        } else {
            None
        };
        let trimmed = self.oidc_path_prefix.trim_matches('/');
        let path_prefix = if trimmed.is_empty() {
            String::new()
        } else {
            format!("/{trimmed}")
        };
        let allowed_hosts = self
            .oidc_allowed_hosts
            .iter()
            .filter(|h| !h.trim().is_empty())
            .map(|h| AllowedHost::parse(h))
            .collect::<Result<Vec<_>, _>>()?;
        if allowed_hosts.is_empty() && self.jwt_issuer.is_empty() {
            tracing::warn!(target: SCOPE_SENTRY, "OIDC discovery builds its issuer and jwks_uri from the request's Host header: set --jwt-issuer or --oidc-allowed-hosts before exposing it");
        }
        Ok(Some(OidcSettings {
            address: self.oidc_server_listen_address.clone(),
            port: self.oidc_server_listen_port,
            tls,
            jwks_uri: (!self.oidc_jwks_uri.is_empty()).then(|| self.oidc_jwks_uri.clone()),
            path_prefix,
            allowed_hosts,
        }))
    }
}

/// The OIDC discovery endpoints: `GET <prefix>/.well-known/openid-configuration` and
/// `GET <prefix>/jwks.json`, `Cache-Control: public, max-age=3600`; 405 for other methods,
/// 400 for a missing, malformed or ambiguous host, 403 for one outside the allow-list (see
/// [`select_host`]), 404 elsewhere.
pub(crate) fn oidc_router(issuer: Arc<JwtIssuer>, settings: OidcSettings) -> axum::Router {
    let settings = Arc::new(settings);
    axum::Router::new().fallback(move |request: axum::extract::Request| {
        let issuer = Arc::clone(&issuer);
        let settings = Arc::clone(&settings);
        async move { oidc_answer(&issuer, &settings, &request) }
    })
}

/// Every value of a header; one that is not visible ASCII becomes "" and is so refused as
/// malformed.
fn header_values<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Vec<&'a str> {
    headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap_or(""))
        .collect()
}

fn oidc_answer(
    issuer: &JwtIssuer,
    settings: &OidcSettings,
    request: &axum::extract::Request,
) -> axum::response::Response {
    use axum::http::{HeaderValue, StatusCode, header};
    use axum::response::IntoResponse as _;
    let refuse = |status: StatusCode, message: &str| {
        let mut response = (status, format!("{message}\n")).into_response();
        // A refusal must not be cached in place of the document.
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    };
    let headers = request.headers();
    let host_values = header_values(headers, header::HOST.as_str());
    // X-Forwarded-Host is not even read without an allow-list.
    let forwarded = if settings.allowed_hosts.is_empty() {
        Vec::new()
    } else {
        header_values(headers, "x-forwarded-host")
    };
    let host = match select_host(
        &host_values,
        request
            .uri()
            .authority()
            .map(axum::http::uri::Authority::as_str),
        &forwarded,
        &settings.allowed_hosts,
    ) {
        Ok(host) => host,
        Err(HostRefusal::NotAllowed) => return refuse(StatusCode::FORBIDDEN, "host not allowed"),
        Err(HostRefusal::Malformed(why) | HostRefusal::Ambiguous(why)) => {
            return refuse(StatusCode::BAD_REQUEST, why);
        }
    };
    let path = request.uri().path();
    let Some(rest) = path.strip_prefix(settings.path_prefix.as_str()) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let discovery = rest == "/.well-known/openid-configuration";
    if !discovery && rest != "/jwks.json" {
        return StatusCode::NOT_FOUND.into_response();
    }
    if request.method() != axum::http::Method::GET {
        return (StatusCode::METHOD_NOT_ALLOWED, [(header::ALLOW, "GET")]).into_response();
    }
    let mut from_headers = false;
    let body = if discovery {
        let scheme = if settings.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let base = format!("{scheme}://{host}{}", settings.path_prefix);
        let configured_issuer = issuer.settings.issuer.as_deref();
        // A configured issuer or jwks_uri wins over anything the request says; with an
        // issuer URL, the key set is published under it.
        let jwks_uri = match (&settings.jwks_uri, configured_issuer) {
            (Some(uri), _) => uri.clone(),
            (None, Some(iss)) if iss.starts_with("https://") || iss.starts_with("http://") => {
                format!("{}/jwks.json", iss.trim_end_matches('/'))
            }
            _ => {
                from_headers = true;
                format!("{base}/jwks.json")
            }
        };
        let issuer_url = configured_issuer.map_or_else(
            || {
                from_headers = true;
                base.clone()
            },
            str::to_owned,
        );
        json!({
            "issuer": issuer_url,
            "jwks_uri": jwks_uri,
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [issuer.settings.algorithm.name()],
            "scopes_supported": ["openid"],
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "use"],
        })
    } else {
        issuer.jwks(crate::util::clock::now().as_secs())
    };
    let mut response = (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    if from_headers && !settings.allowed_hosts.is_empty() {
        // The document depends on X-Forwarded-Host, which caches do not key on by themselves.
        response
            .headers_mut()
            .insert(header::VARY, HeaderValue::from_static("x-forwarded-host"));
    }
    response
}

/// Loads the OIDC server's TLS certificate chain and key (PEM).
pub(crate) fn oidc_tls_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, JwtError> {
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |path: &Path, reason: String| JwtError::Key {
        path: path.to_path_buf(),
        reason,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| bad(cert, e.to_string()))?;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| bad(cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| bad(cert, e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A TLS listener for `axum::serve`. Handshakes run off the accept loop, so one slow client
/// holds up no one; those that fail or take over 10 s are dropped.
struct TlsListener {
    local_addr: std::io::Result<std::net::SocketAddr>,
    rx: tokio::sync::mpsc::Receiver<(
        tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
        std::net::SocketAddr,
    )>,
}

impl TlsListener {
    fn new(listener: tokio::net::TcpListener, config: Arc<rustls::ServerConfig>) -> Self {
        let local_addr = listener.local_addr();
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let Ok((tcp, peer)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                if tx.is_closed() {
                    break;
                }
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let handshake = acceptor.accept(tcp);
                    if let Ok(Ok(stream)) =
                        tokio::time::timeout(Duration::from_secs(10), handshake).await
                    {
                        let _ = tx.send((stream, peer)).await;
                    }
                });
            }
        });
        Self { local_addr, rx }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(conn) => conn,
            // The accept task only ends with the runtime.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        match &self.local_addr {
            Ok(addr) => Ok(*addr),
            Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
        }
    }
}

/// Serves the OIDC endpoints until `shutdown` (HTTPS when `tls` is given).
pub(crate) async fn serve_oidc(
    listener: tokio::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    match tls {
        Some(config) => {
            crate::observability::serve_http(TlsListener::new(listener, config), router, shutdown)
                .await
        }
        None => crate::observability::serve_http(listener, router, shutdown).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    use super::super::settings::SigningAlgorithm;
    use super::super::settings::tests::settings;

    #[tokio::test]
    async fn oidc_host_checks_follow_x_forwarded_host_and_wildcard() {
        use tower::ServiceExt as _;
        let dir = tempfile::tempdir().unwrap();
        let issuer = Arc::new(
            JwtIssuer::load_or_generate(settings(dir.path(), SigningAlgorithm::EdDsa), 0).unwrap(),
        );
        let oidc = |hosts: &[&str]| OidcSettings {
            address: String::new(),
            port: 0,
            tls: None,
            jwks_uri: None,
            path_prefix: String::new(),
            allowed_hosts: hosts
                .iter()
                .map(|h| AllowedHost::parse(h).unwrap())
                .collect(),
        };
        let status = |hosts: &[&str], host: &str, forwarded: Option<&str>| {
            let router = oidc_router(Arc::clone(&issuer), oidc(hosts));
            let mut request = axum::http::Request::builder()
                .uri("/jwks.json")
                .header("host", host);
            if let Some(f) = forwarded {
                request = request.header("x-forwarded-host", f);
            }
            let request = request.body(axum::body::Body::empty()).unwrap();
            async move { router.oneshot(request).await.unwrap().status().as_u16() }
        };
        assert_eq!(
            status(&["sentry.example"], "sentry.example:443", None).await,
            200
        );
        assert_eq!(status(&["sentry.example"], "10.0.0.1", None).await, 403);
        assert_eq!(
            status(&["sentry.example"], "10.0.0.1", Some("sentry.example")).await,
            200
        );
        assert_eq!(
            status(&["sentry.example"], "sentry.example", Some("evil")).await,
            403
        );
        assert_eq!(status(&["*"], "anything", None).await, 200);
        assert_eq!(status(&[], "anything", None).await, 200);
    }

    fn allowed(entries: &[&str]) -> Vec<AllowedHost> {
        entries
            .iter()
            .map(|e| AllowedHost::parse(e).unwrap())
            .collect()
    }

    /// The Host × X-Forwarded-Host matrix of `select_host` (issue 15, defect 3): one row a
    /// case, (Host headers, request-target authority, X-Forwarded-Host headers, allow-list,
    /// answer).
    #[test]
    fn select_host_uses_exactly_the_host_it_checked() {
        use HostRefusal::{Ambiguous, Malformed, NotAllowed};
        const BAD_HOST: HostRefusal = Malformed("the Host header is not a host name[:port]");
        const BAD_FORWARDED: HostRefusal = Malformed("X-Forwarded-Host is not a host name[:port]");
        const SEVERAL_HOSTS: HostRefusal = Ambiguous("several Host headers");
        const SEVERAL_FORWARDED: HostRefusal = Ambiguous("several X-Forwarded-Host values");
        const HOST_NOT_TARGET: HostRefusal =
            Ambiguous("the Host header differs from the request target");
        type Row<'a> = (
            &'a [&'a str],
            Option<&'a str>,
            &'a [&'a str],
            &'a [AllowedHost],
            Result<&'a str, HostRefusal>,
        );
        let good = allowed(&["Good.Example", "pinned.example:8443", "[::1]"]);
        let none: Vec<AllowedHost> = Vec::new();
        let any = allowed(&["*"]);
        #[rustfmt::skip]
        let cases: &[Row<'_>] = &[
            // The reported attack: an allowed X-Forwarded-Host must not let Host through.
            (&["evil.example"], None, &["good.example"], &good, Ok("Good.Example")),
            // X-Forwarded-Host allowed / not allowed / absent.
            (&["10.0.0.1:9080"], None, &["good.example"], &good, Ok("Good.Example")),
            (&["good.example"], None, &["evil.example"], &good, Err(NotAllowed)),
            (&["good.example"], None, &[], &good, Ok("Good.Example")),
            (&["evil.example"], None, &[], &good, Err(NotAllowed)),
            // Several values: several headers, a comma list, an empty value.
            (&["good.example"], None, &["good.example", "good.example"],
                &good, Err(SEVERAL_FORWARDED)),
            (&["good.example"], None, &["evil.example, good.example"],
                &good, Err(SEVERAL_FORWARDED)),
            (&["good.example"], None, &["good.example,"], &good, Err(SEVERAL_FORWARDED)),
            (&["good.example"], None, &[""], &good, Err(BAD_FORWARDED)),
            // Ports: an entry without a port allows any and the request's port is kept; a
            // pinned entry allows only its port.
            (&["good.example:8443"], None, &[], &good, Ok("Good.Example:8443")),
            (&["x"], None, &["good.example:443"], &good, Ok("Good.Example:443")),
            (&["pinned.example:8443"], None, &[], &good, Ok("pinned.example:8443")),
            (&["pinned.example:9443"], None, &[], &good, Err(NotAllowed)),
            (&["pinned.example"], None, &[], &good, Err(NotAllowed)),
            (&["good.example:99999"], None, &[], &good, Err(BAD_HOST)),
            (&["good.example:"], None, &[], &good, Err(BAD_HOST)),
            // Upper case compares equal and the configured spelling is echoed.
            (&["GOOD.EXAMPLE"], None, &[], &good, Ok("Good.Example")),
            (&["x"], None, &["GoOd.ExAmPlE:80"], &good, Ok("Good.Example:80")),
            // IPv6 literals.
            (&["[::1]:9080"], None, &[], &good, Ok("[::1]:9080")),
            (&["[::2]"], None, &[], &good, Err(NotAllowed)),
            // Smuggling attempts never reach a URL.
            (&["good.example/evil"], None, &[], &good, Err(BAD_HOST)),
            (&["x"], None, &["good.example@evil.example"], &good, Err(BAD_FORWARDED)),
            (&["x"], None, &["good.example\"}"], &good, Err(BAD_FORWARDED)),
            (&["evil.example/#"], None, &[], &none, Err(BAD_HOST)),
            // Host itself: missing, repeated, or contradicted by the request target.
            (&[], None, &[], &good, Err(Malformed("no Host header"))),
            (&["good.example", "evil.example"], None, &[], &good, Err(SEVERAL_HOSTS)),
            (&["good.example"], Some("evil.example"), &[], &good, Err(HOST_NOT_TARGET)),
            (&[], Some("good.example"), &[], &good, Ok("Good.Example")),
            (&["GOOD.example"], Some("good.example"), &[], &good, Ok("Good.Example")),
            // No allow-list: X-Forwarded-Host is ignored, Host is echoed lower-cased.
            (&["Some.Host:9080"], None, &["good.example"], &none, Ok("some.host:9080")),
            (&["some.host"], None, &["a, b"], &none, Ok("some.host")),
            // `*`: any valid host, X-Forwarded-Host honoured, lower-cased.
            (&["x"], None, &["Proxy.Example"], &any, Ok("proxy.example")),
            (&["x"], None, &["a", "b"], &any, Err(SEVERAL_FORWARDED)),
        ];
        assert_eq!(cases.len(), 33);
        for (i, (host, authority, forwarded, list, want)) in cases.iter().enumerate() {
            let got = select_host(host, *authority, forwarded, list);
            assert_eq!(
                got.as_deref().map_err(Clone::clone),
                want.clone(),
                "case {i}: Host {host:?} authority {authority:?} X-Forwarded-Host {forwarded:?}"
            );
        }
        for bad in ["good.example/x", "", ":80", "a b", "[zz]", "h:0x1"] {
            if !bad.is_empty() {
                assert!(AllowedHost::parse(bad).is_err(), "{bad:?}");
            }
        }
    }

    /// The reported request (Host evil, X-Forwarded-Host good) through the real router: every
    /// URL names the allowed host, and configured values win over both headers.
    #[tokio::test]
    async fn discovery_urls_never_echo_an_unchecked_host() {
        use tower::ServiceExt as _;
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(dir.path(), SigningAlgorithm::EdDsa);
        s.issuer = None;
        let unconfigured = Arc::new(JwtIssuer::load_or_generate(s.clone(), 0).unwrap());
        s.issuer = Some("https://issuer.example/dapr".into());
        let configured = Arc::new(JwtIssuer::load_or_generate(s, 0).unwrap());
        let oidc = |hosts: &[&str], jwks_uri: Option<&str>| OidcSettings {
            address: String::new(),
            port: 0,
            tls: None,
            jwks_uri: jwks_uri.map(str::to_owned),
            path_prefix: String::new(),
            allowed_hosts: allowed(hosts),
        };
        let get = |issuer: &Arc<JwtIssuer>, settings: OidcSettings, host: &str, forwarded: &str| {
            let router = oidc_router(Arc::clone(issuer), settings);
            let request = axum::http::Request::builder()
                .uri("/.well-known/openid-configuration")
                .header("host", host)
                .header("x-forwarded-host", forwarded)
                .body(axum::body::Body::empty())
                .unwrap();
            async move {
                let response = router.oneshot(request).await.unwrap();
                let status = response.status().as_u16();
                let cache = response.headers().get("cache-control").cloned();
                let body = axum::body::to_bytes(response.into_body(), 1 << 20)
                    .await
                    .unwrap();
                (
                    status,
                    cache,
                    serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null),
                )
            }
        };
        let (status, _, doc) = get(
            &unconfigured,
            oidc(&["good.example"], None),
            "evil.example",
            "good.example",
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(doc["issuer"], "http://good.example");
        assert_eq!(doc["jwks_uri"], "http://good.example/jwks.json");
        assert!(!doc.to_string().contains("evil"), "{doc}");
        let (status, cache, _) = get(
            &unconfigured,
            oidc(&["good.example"], None),
            "good.example",
            "evil.example",
        )
        .await;
        assert_eq!(status, 403);
        assert_eq!(cache.unwrap(), "no-store");
        // --jwt-issuer wins, and the key set is published under it.
        for hosts in [&[][..], &["*"][..]] {
            let (status, _, doc) = get(
                &configured,
                oidc(hosts, None),
                "evil.example",
                "evil.example",
            )
            .await;
            assert_eq!(status, 200);
            assert_eq!(doc["issuer"], "https://issuer.example/dapr");
            assert_eq!(doc["jwks_uri"], "https://issuer.example/dapr/jwks.json");
        }
        // --oidc-jwks-uri wins too.
        let (_, _, doc) = get(
            &unconfigured,
            oidc(&[], Some("https://keys.example/k.json")),
            "evil.example",
            "x",
        )
        .await;
        assert_eq!(doc["jwks_uri"], "https://keys.example/k.json");
        assert_eq!(
            doc["issuer"], "http://evil.example",
            "no allow-list, no issuer: Host"
        );
    }
}

//! The browser side of the CA port: gRPC-Web for `SignCertificate` (`--grpc-web`, tonic-web),
//! CORS for an exact list of origins (`--allowed-origins`), and the static demo page
//! (`--ui DIR`).
//!
//! Everything here is a tower layer around the same tonic routes that serve plain gRPC, so a
//! browser request reaches the same `CaService` (validators, audit log, metrics). The layers,
//! outermost first:
//!
//! 1. [`CorsLayer`] (with `--grpc-web`): answers preflight `OPTIONS` and adds the
//!    `Access-Control-*` headers for the allowed origins only.
//! 2. [`UiLayer`] (with `--ui`): `GET`/`HEAD` of a few static file types from one directory.
//! 3. [`tonic_web::GrpcWebLayer`] (with `--grpc-web`): translates `application/grpc-web*`
//!    to gRPC and the response trailers back into the body.
//! 4. [`GrpcOnlyLayer`] (always): anything that is still not `application/grpc` is refused
//!    with HTTP 415 and `grpc-status` 3, as grpc-go (and so Sentry) does.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{
    HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, header,
};
use futures_util::StreamExt as _;
use tonic::body::Body;
use tower::{Layer, Service};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// What is wrong with a `--grpc-web`, `--allowed-origins` or `--ui` setting.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum WebError {
    /// One entry of `--allowed-origins` is not an origin.
    #[error("invalid --allowed-origins entry {origin:?}: {reason}")]
    Origin {
        /// The entry as given.
        origin: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `--allowed-origins` without `--grpc-web`.
    #[error("--allowed-origins needs --grpc-web (the origins only apply to gRPC-Web requests)")]
    OriginsWithoutGrpcWeb,
    /// The `--ui` directory cannot be used.
    #[error("invalid --ui directory {dir:?}: {reason}")]
    Ui {
        /// The directory as given.
        dir: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// The browser-facing settings of the CA port, validated.
#[derive(Clone, Debug, Default)]
pub(crate) struct WebOptions {
    /// Accept gRPC-Web (and HTTP/1.1 next to h2).
    pub grpc_web: bool,
    /// Exact origins allowed to call cross-origin (normalised: lower-case, no default port).
    pub allowed_origins: Vec<String>,
    /// Canonical directory of the static UI.
    pub ui: Option<PathBuf>,
}

impl WebOptions {
    /// Validates the flags: `allowed_origins` is the comma-separated `--allowed-origins` value
    /// (empty: none), `ui` the `--ui` directory.
    pub(crate) fn new(
        grpc_web: bool,
        allowed_origins: &str,
        ui: Option<&Path>,
    ) -> Result<Self, WebError> {
        let allowed_origins = parse_allowed_origins(allowed_origins)?;
        if !allowed_origins.is_empty() && !grpc_web {
            return Err(WebError::OriginsWithoutGrpcWeb);
        }
        let ui = ui.map(check_ui_dir).transpose()?;
        Ok(Self {
            grpc_web,
            allowed_origins,
            ui,
        })
    }

    /// Whether the port also speaks HTTP/1.1 (ALPN `http/1.1` next to `h2`): only for
    /// gRPC-Web, whose clients and proxies may not speak h2. Plain gRPC stays h2-only.
    pub(crate) fn http1(&self) -> bool {
        self.grpc_web
    }

    /// The CORS layer, when gRPC-Web is on.
    pub(crate) fn cors_layer(&self) -> Option<CorsLayer> {
        if !self.grpc_web {
            return None;
        }
        let origins: Vec<HeaderValue> = self
            .allowed_origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        Some(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(origins))
                .allow_methods([Method::POST, Method::OPTIONS])
                .allow_headers([
                    header::CONTENT_TYPE,
                    HeaderName::from_static("x-grpc-web"),
                    HeaderName::from_static("x-user-agent"),
                    HeaderName::from_static("grpc-timeout"),
                ])
                .expose_headers([
                    HeaderName::from_static("grpc-status"),
                    HeaderName::from_static("grpc-message"),
                    HeaderName::from_static("grpc-status-details-bin"),
                ])
                .max_age(Duration::from_secs(600)),
        )
    }

    /// The static UI layer, with `--ui`.
    pub(crate) fn ui_layer(&self) -> Option<UiLayer> {
        self.ui.as_ref().map(|root| UiLayer {
            root: Arc::new(root.clone()),
        })
    }

    /// The gRPC-Web translation layer, with `--grpc-web`.
    pub(crate) fn grpc_web_layer(&self) -> Option<tonic_web::GrpcWebLayer> {
        self.grpc_web.then(tonic_web::GrpcWebLayer::new)
    }
}

/// Parses the comma-separated `--allowed-origins` list. Each entry must be a serialised
/// origin as browsers send it in `Origin`: `http` or `https`, `://`, a host, an optional
/// port, nothing else (no path, no trailing `/`, no wildcard, no user info).
pub(crate) fn parse_allowed_origins(list: &str) -> Result<Vec<String>, WebError> {
    let mut origins = Vec::new();
    for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let origin = normalise_origin(entry).map_err(|reason| WebError::Origin {
            origin: entry.to_owned(),
            reason,
        })?;
        if !origins.contains(&origin) {
            origins.push(origin);
        }
    }
    Ok(origins)
}

fn normalise_origin(entry: &str) -> Result<String, &'static str> {
    if entry == "*" || entry.contains('*') {
        return Err("wildcards are not accepted; list each origin exactly");
    }
    let lower = entry.to_ascii_lowercase();
    let (scheme, rest) = lower
        .split_once("://")
        .ok_or("expected scheme://host[:port], e.g. https://app.example.com")?;
    let default_port = match scheme {
        "https" => "443",
        "http" => "80",
        _ => return Err("the scheme must be http or https"),
    };
    if rest.contains(['/', '?', '#', '@', '\\']) {
        return Err("an origin has no path, query, fragment or user info (no trailing '/')");
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (addr, after) = v6.split_once(']').ok_or("unclosed '[' in an IPv6 host")?;
        if addr.is_empty()
            || !addr
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return Err("invalid IPv6 host");
        }
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or("unexpected text after the IPv6 host")?,
            ),
        };
        (&rest[..addr.len() + 2], port)
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        }
    };
    if host.is_empty() {
        return Err("the host is empty");
    }
    if !host.starts_with('[')
        && !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    {
        return Err("the host may only hold letters, digits, '-' and '.'");
    }
    match port {
        None => Ok(format!("{scheme}://{host}")),
        Some(p) => {
            let n: u16 = p
                .parse()
                .map_err(|_| "the port must be a number from 1 to 65535")?;
            if n == 0 {
                return Err("the port must be a number from 1 to 65535");
            }
            // Browsers leave the scheme's default port out of `Origin`.
            if p == default_port {
                Ok(format!("{scheme}://{host}"))
            } else {
                Ok(format!("{scheme}://{host}:{n}"))
            }
        }
    }
}

fn check_ui_dir(dir: &Path) -> Result<PathBuf, WebError> {
    let err = |reason: String| WebError::Ui {
        dir: dir.to_path_buf(),
        reason,
    };
    let root = dir.canonicalize().map_err(|e| err(e.to_string()))?;
    if !root.is_dir() {
        return Err(err("not a directory".into()));
    }
    if !root.join("index.html").is_file() {
        return Err(err("it has no index.html".into()));
    }
    Ok(root)
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

// ---------------------------------------------------------------------------------------------
// Static UI.

/// Serves `GET`/`HEAD` requests from one directory; every other request goes on to gRPC.
#[derive(Clone, Debug)]
pub(crate) struct UiLayer {
    root: Arc<PathBuf>,
}

impl<S> Layer<S> for UiLayer {
    type Service = Ui<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Ui {
            root: Arc::clone(&self.root),
            inner,
        }
    }
}

/// The service made by [`UiLayer`].
#[derive(Clone, Debug)]
pub(crate) struct Ui<S> {
    root: Arc<PathBuf>,
    inner: S,
}

impl<S, B> Service<Request<B>> for Ui<S>
where
    S: Service<Request<B>, Response = Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Response<Body>, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let head = req.method() == Method::HEAD;
        if req.method() != Method::GET && !head {
            return Box::pin(self.inner.call(req));
        }
        let root = Arc::clone(&self.root);
        let path = req.uri().path().to_owned();
        Box::pin(async move { Ok(serve_file(&root, &path, head).await) })
    }
}

/// Largest file served (the demo's `.wasm` is well under 1 MiB).
const MAX_FILE: u64 = 16 * 1024 * 1024;

/// Read size of a served file: what one download holds in memory at a time.
const UI_CHUNK: usize = 16 * 1024;

/// The content security policy of the served pages: scripts and wasm from this origin only;
/// `connect-src` also allows other HTTPS origins (the page's "CA URL" field).
const CSP: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; \
                   connect-src 'self' https:; object-src 'none'; base-uri 'none'; \
                   frame-ancestors 'none'; form-action 'none'";

/// Content type by extension; files of any other type are not served.
fn content_type(name: &str) -> Option<&'static str> {
    let ext = name.rsplit_once('.')?.1;
    Some(match ext {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "wasm" => "application/wasm",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "ico" => "image/x-icon",
        "txt" => "text/plain; charset=utf-8",
        _ => return None,
    })
}

/// Maps a request path to a relative file path, or `None` for anything that is not a plain
/// `name/name.ext` path: `..`, `.`, empty segments, hidden files, percent escapes and
/// backslashes are all refused. `/` is `index.html`.
pub(crate) fn ui_relative_path(path: &str) -> Option<PathBuf> {
    let rel = path.strip_prefix('/')?;
    if rel.is_empty() {
        return Some(PathBuf::from("index.html"));
    }
    let mut out = PathBuf::new();
    for segment in rel.split('/') {
        let ok = !segment.is_empty()
            && !segment.starts_with('.')
            && segment
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !ok {
            return None;
        }
        out.push(segment);
    }
    Some(out)
}

async fn serve_file(root: &Path, path: &str, head: bool) -> Response<Body> {
    let Some(rel) = ui_relative_path(path) else {
        return plain(StatusCode::NOT_FOUND, "not found\n");
    };
    let Some(ctype) = rel.to_str().and_then(content_type) else {
        return plain(StatusCode::NOT_FOUND, "not found\n");
    };
    // Symbolic links may not lead out of the directory.
    let path = match tokio::fs::canonicalize(root.join(&rel)).await {
        Ok(f) if f.starts_with(root) => f,
        _ => return plain(StatusCode::NOT_FOUND, "not found\n"),
    };
    let file = match tokio::fs::File::open(&path).await {
        Ok(file) => file,
        Err(e) => {
            tracing::warn!(target: crate::observability::SCOPE_SERVER, "--ui: cannot open {}: {e}", path.display());
            return plain(StatusCode::NOT_FOUND, "not found\n");
        }
    };
    // The length announced is that of the file opened, even if the path is replaced meanwhile.
    let len = match file.metadata().await {
        Ok(m) if m.is_file() && m.len() <= MAX_FILE => m.len(),
        _ => return plain(StatusCode::NOT_FOUND, "not found\n"),
    };
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // Streamed in small chunks, never read whole: a thousand concurrent downloads of the
    // largest file must not hold a thousand copies of it in memory.
    let body = if head {
        Body::empty()
    } else {
        let chunks = tokio_util::io::ReaderStream::with_capacity(
            tokio::io::AsyncReadExt::take(file, len),
            UI_CHUNK,
        )
        .map(|chunk| chunk.map(http_body::Frame::data));
        Body::new(http_body_util::StreamBody::new(chunks))
    };
    respond(StatusCode::OK, headers, body)
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    respond(
        status,
        headers,
        Body::new(http_body_util::Full::new(Bytes::from_static(
            text.as_bytes(),
        ))),
    )
}

fn respond(status: StatusCode, mut headers: HeaderMap, body: Body) -> Response<Body> {
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    respond_exactly(status, headers, body)
}

fn respond_exactly(status: StatusCode, headers: HeaderMap, body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

// ---------------------------------------------------------------------------------------------
// Only gRPC reaches the CA.

/// Refuses every request whose `content-type` is not `application/grpc` (or
/// `application/grpc+<codec>`, `application/grpc;...`) with HTTP 415, `grpc-status: 3` and
/// `invalid gRPC request content-type "<type>"`, the trailers-only answer grpc-go (Sentry)
/// gives. gRPC-Web requests reach it already translated when `--grpc-web` is on, and are
/// refused this way when it is off.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct GrpcOnlyLayer;

impl<S> Layer<S> for GrpcOnlyLayer {
    type Service = GrpcOnly<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcOnly { inner }
    }
}

/// The service made by [`GrpcOnlyLayer`].
#[derive(Clone, Debug)]
pub(crate) struct GrpcOnly<S> {
    inner: S,
}

/// Whether `content-type` is gRPC's, as grpc-go's `ContentSubtype` decides.
pub(crate) fn is_grpc_content_type(value: Option<&HeaderValue>) -> bool {
    let Some(value) = value.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let lower = value.to_ascii_lowercase();
    match lower.strip_prefix("application/grpc") {
        Some(rest) => rest.is_empty() || rest.starts_with('+') || rest.starts_with(';'),
        None => false,
    }
}

impl<S, B> Service<Request<B>> for GrpcOnly<S>
where
    S: Service<Request<B>, Response = Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Response<Body>, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let ctype = req.headers().get(header::CONTENT_TYPE);
        if is_grpc_content_type(ctype) {
            return Box::pin(self.inner.call(req));
        }
        let shown = ctype
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default();
        let message = format!("invalid gRPC request content-type {shown:?}");
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        headers.insert("grpc-status", HeaderValue::from_static("3"));
        if let Ok(v) = HeaderValue::from_str(&percent_encode_grpc_message(&message)) {
            headers.insert("grpc-message", v);
        }
        let response = respond_exactly(StatusCode::UNSUPPORTED_MEDIA_TYPE, headers, Body::empty());
        Box::pin(async move { Ok::<_, S::Error>(response) })
    }
}

/// gRPC's `grpc-message` encoding: printable ASCII except `%` as is, the rest `%XX`.
fn percent_encode_grpc_message(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for b in message.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_exact_and_normalised() {
        assert_eq!(
            parse_allowed_origins(" https://App.example.com , http://localhost:8080,https://a:443")
                .unwrap(),
            [
                "https://app.example.com",
                "http://localhost:8080",
                "https://a"
            ]
        );
        assert_eq!(
            parse_allowed_origins("https://[::1]:9000").unwrap(),
            ["https://[::1]:9000"]
        );
        assert!(parse_allowed_origins("").unwrap().is_empty());
        for bad in [
            "*",
            "https://*.example.com",
            "example.com",
            "ftp://example.com",
            "https://example.com/",
            "https://example.com/app",
            "https://user@example.com",
            "https://example.com:0",
            "https://example.com:99999",
            "https://",
            "https://ex ample.com",
            "https://[::1",
        ] {
            let err = parse_allowed_origins(bad).unwrap_err().to_string();
            assert!(err.contains("--allowed-origins"), "{bad}: {err}");
        }
    }

    #[test]
    fn origins_need_grpc_web() {
        let err = WebOptions::new(false, "https://a.example", None).unwrap_err();
        assert!(err.to_string().contains("--grpc-web"), "{err}");
    }

    #[test]
    fn ui_paths_refuse_traversal() {
        assert_eq!(ui_relative_path("/").unwrap(), PathBuf::from("index.html"));
        assert_eq!(
            ui_relative_path("/pkg/warden_wasm_bg.wasm").unwrap(),
            PathBuf::from("pkg/warden_wasm_bg.wasm")
        );
        for bad in [
            "/../Cargo.toml",
            "/pkg/../../etc/passwd",
            "/%2e%2e/x.js",
            "/.hidden.js",
            "//etc/passwd",
            "/pkg/",
            "/a\\b.js",
            "relative.js",
        ] {
            assert!(ui_relative_path(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn grpc_content_types() {
        let v = |s: &'static str| Some(HeaderValue::from_static(s));
        assert!(is_grpc_content_type(v("application/grpc").as_ref()));
        assert!(is_grpc_content_type(v("application/grpc+proto").as_ref()));
        assert!(!is_grpc_content_type(
            v("application/grpc-web+proto").as_ref()
        ));
        assert!(!is_grpc_content_type(v("text/plain").as_ref()));
        assert!(!is_grpc_content_type(None));
    }

    #[test]
    fn grpc_message_is_percent_encoded() {
        assert_eq!(
            percent_encode_grpc_message("a \"b\" 100% é"),
            "a \"b\" 100%25 %C3%A9"
        );
    }
}

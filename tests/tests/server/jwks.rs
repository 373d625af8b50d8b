//! The `jwks` token validator end to end: a real `warden` process configured with
//! `tokenValidators: [{name: jwks}]`, a real HTTPS JWKS server on loopback (certificate from a
//! test CA made with openssl, passed as `caCertificate`), tokens signed with jsonwebtoken over
//! keys made by openssl (P-256, RSA 2048, Ed25519).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use base64ct::Encoding as _;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tonic::Code;
use tonic::transport::Channel;
use warden_core::bundle::parse_certificates;
use warden_host::proto::ca_client::CaClient;
use warden_host::proto::sign_certificate_request::TokenValidator;
use warden_host::proto::{SignCertificateRequest, SignCertificateResponse};
use warden_tests::common::{
    OPENSSL_KEYS, openssl, openssl_csr, read_file, run, tempdir, write_file,
};
use warden_tests::server::{Options, Warden, check_response, request, sign, warden_binary};
use warden_tests::{common, server, support};

/// The audience every token must name: the server's SPIFFE ID (harness defaults).
const AUD: &str = "spiffe://localhost/ns/default/dapr-sentry";

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

// ---------------------------------------------------------------------------------------------
// Keys and tokens.

/// A signing key made by openssl, with its public JWK.
struct SigningKey {
    alg: Algorithm,
    encoding: EncodingKey,
    public_pem: Vec<u8>,
    kid: String,
}

impl SigningKey {
    fn generate(dir: &Path, alg: Algorithm, kid: &str) -> Self {
        let genpkey: &[&str] = match alg {
            Algorithm::ES256 => &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
            Algorithm::RS256 => &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
            Algorithm::EdDSA => &["-algorithm", "ED25519"],
            other => panic!("no key recipe for {other:?}"),
        };
        let key = format!("{kid}.key");
        let public = format!("{kid}.pub");
        let mut args = vec!["genpkey"];
        args.extend_from_slice(genpkey);
        args.extend_from_slice(&["-out", &key]);
        run(openssl(dir, args));
        run(openssl(
            dir,
            ["pkey", "-in", &key, "-pubout", "-out", &public],
        ));
        let pem = read_file(&dir.join(&key));
        let encoding = match alg {
            Algorithm::ES256 => EncodingKey::from_ec_pem(&pem),
            Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem),
            _ => EncodingKey::from_ed_pem(&pem),
        }
        .unwrap();
        Self {
            alg,
            encoding,
            public_pem: read_file(&dir.join(&public)),
            kid: kid.into(),
        }
    }

    fn jwk(&self) -> Jwk {
        let mut jwk = Jwk::from_encoding_key(&self.encoding, self.alg).unwrap();
        jwk.common.key_id = Some(self.kid.clone());
        jwk
    }

    /// A token with this key's kid.
    fn token(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }

    /// A token with the given header fields instead of the defaults.
    fn token_with(&self, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

fn jwks_json(keys: &[&SigningKey]) -> String {
    serde_json::to_string(&JwkSet {
        keys: keys.iter().map(|k| k.jwk()).collect(),
    })
    .unwrap()
}

/// Claims of a good token for app `id` in `namespace` under trust domain `td`.
fn claims(td: &str, namespace: &str, id: &str) -> Value {
    let now = unix_now();
    json!({
        "aud": [AUD],
        "sub": format!("spiffe://{td}/ns/{namespace}/{id}"),
        "iat": now,
        "nbf": now,
        "exp": now + 600,
    })
}

fn b64url(bytes: &[u8]) -> String {
    base64ct::Base64UrlUnpadded::encode_string(bytes)
}

// ---------------------------------------------------------------------------------------------
// A test CA and an HTTPS JWKS server.

/// A CA and a server certificate for 127.0.0.1 and localhost, made by openssl.
struct JwksServerCa {
    ca_pem: PathBuf,
    cert_pem: PathBuf,
    key_pem: PathBuf,
}

impl JwksServerCa {
    fn generate(dir: &Path) -> Self {
        run(openssl(
            dir,
            [
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-subj",
                "/CN=jwks test CA",
                "-days",
                "2",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        ));
        run(openssl(
            dir,
            [
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=localhost",
            ],
        ));
        write_file(
            dir,
            "server.ext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
        );
        run(openssl(
            dir,
            [
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.pem",
                "-days",
                "1",
                "-extfile",
                "server.ext",
            ],
        ));
        Self {
            ca_pem: dir.join("ca.pem"),
            cert_pem: dir.join("server.pem"),
            key_pem: dir.join("server.key"),
        }
    }
}

/// What the JWKS server does now.
struct Served {
    /// Drop every connection without answering (the source is down).
    down: AtomicBool,
    body: Mutex<String>,
    /// Successful answers so far.
    hits: AtomicUsize,
}

/// An HTTPS server answering every GET with the current JWKS.
struct JwksServer {
    url: String,
    served: Arc<Served>,
}

impl JwksServer {
    async fn start(ca: &JwksServerCa, body: String, down: bool) -> Self {
        use rustls_pki_types::pem::PemObject as _;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&ca.cert_pem)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let key = PrivateKeyDer::from_pem_file(&ca.key_pem).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "https://127.0.0.1:{}/jwks.json",
            listener.local_addr().unwrap().port()
        );
        let served = Arc::new(Served {
            down: AtomicBool::new(down),
            body: Mutex::new(body),
            hits: AtomicUsize::new(0),
        });
        let state = Arc::clone(&served);
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                if state.down.load(Ordering::SeqCst) {
                    drop(tcp);
                    continue;
                }
                let acceptor = acceptor.clone();
                let state = Arc::clone(&state);
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let body = state.body.lock().unwrap().clone();
                    let response = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                         Connection: close\r\n\r\n{body}",
                        body.len()
                    );
                    state.hits.fetch_add(1, Ordering::SeqCst);
                    let _ = tls.write_all(response.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        Self { url, served }
    }

    fn set_body(&self, body: String) {
        *self.served.body.lock().unwrap() = body;
    }

    fn set_down(&self, down: bool) {
        self.served.down.store(down, Ordering::SeqCst);
    }

    fn hits(&self) -> usize {
        self.served.hits.load(Ordering::SeqCst)
    }
}

/// A Dapr Configuration with one jwks validator and these options.
fn write_config(dir: &Path, options: &[(&str, &str)]) -> PathBuf {
    let mut yaml = String::from(
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: daprsystem\n\
         spec:\n  mtls:\n    enabled: true\n    tokenValidators:\n      - name: jwks\n        options:\n",
    );
    for (key, value) in options {
        yaml.push_str(&format!(
            "          {key}: {}\n",
            serde_json::to_string(value).unwrap()
        ));
    }
    write_file(dir, "config.yaml", yaml)
}

fn start_with_config(creds: &Path, config: &Path, unready_ok: bool) -> Warden {
    let mut options = Options::new().args(["--config", config.to_str().unwrap()]);
    if unready_ok {
        options = options.unready_ok();
    }
    Warden::start_with(creds, &options)
}

/// A jwks request for `id` in `namespace` (trust domain `td`, empty for the default).
fn jwks_request(
    id: &str,
    namespace: &str,
    td: &str,
    csr: &[u8],
    token: &str,
) -> SignCertificateRequest {
    SignCertificateRequest {
        token: token.into(),
        token_validator: TokenValidator::Jwks.into(),
        ..request(id, namespace, td, csr)
    }
}

fn assert_status(
    result: Result<impl std::fmt::Debug, tonic::Status>,
    code: Code,
    message: &str,
    what: &str,
) {
    let status = result.expect_err(what);
    assert_eq!((status.code(), status.message()), (code, message), "{what}");
}

/// The PermissionDenied message for a token whose kid is not in the key set.
fn unknown_kid(kid: &str) -> String {
    format!("token validation failed: failed to find key with key ID \"{kid}\" in key set")
}

/// A client of a jwks-configured `warden`, with the CSR it sends.
struct App<'a> {
    warden: &'a Warden,
    client: CaClient<Channel>,
    csr: Vec<u8>,
}

impl<'a> App<'a> {
    async fn connect(warden: &'a Warden, csr: Vec<u8>) -> Self {
        Self {
            warden,
            client: warden.client().await,
            csr,
        }
    }

    /// One call for `app` in `default` (default trust domain) with this token.
    async fn sign(&mut self, token: &str) -> Result<SignCertificateResponse, tonic::Status> {
        sign(
            &mut self.client,
            jwks_request("app", "default", "", &self.csr, token),
        )
        .await
    }

    /// [`App::sign`] must succeed.
    async fn accepted(&mut self, token: &str, what: &str) -> SignCertificateResponse {
        let result = self.sign(token).await;
        result.unwrap_or_else(|e| panic!("{what}: refused: {e:?}\n{}", self.warden.output.text()))
    }

    /// [`App::accepted`], and the response holds a leaf for `app` that chains to `ca.crt`.
    async fn issued(&mut self, token: &str, what: &str) {
        let response = self.accepted(token, what).await;
        check_response(
            &response,
            &self.warden.trust_anchors_path(),
            "spiffe://public/ns/default/app",
        );
    }

    /// [`App::sign`] must fail with PermissionDenied and this message.
    async fn refused(&mut self, token: &str, message: &str, what: &str) {
        assert_status(
            self.sign(token).await,
            Code::PermissionDenied,
            message,
            what,
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Steps of `https_jwks_accepts_valid_tokens_and_refuses_bad_ones`.

/// The keys the JWKS server publishes (one per key type) and one it does not.
struct Keys {
    es: SigningKey,
    rs: SigningKey,
    ed: SigningKey,
    stranger: SigningKey,
}

impl Keys {
    fn generate(dir: &Path) -> Self {
        Self {
            es: SigningKey::generate(dir, Algorithm::ES256, "es"),
            rs: SigningKey::generate(dir, Algorithm::RS256, "rs"),
            ed: SigningKey::generate(dir, Algorithm::EdDSA, "ed"),
            stranger: SigningKey::generate(dir, Algorithm::ES256, "stranger"),
        }
    }

    /// The JWK Set of the published keys.
    fn published(&self) -> String {
        jwks_json(&[&self.es, &self.rs, &self.ed])
    }
}

/// Validator selection: no default, insecure is off.
async fn only_the_jwks_validator_is_enabled(app: &mut App<'_>, good: &str) {
    let cases = [
        (
            TokenValidator::Unknown,
            "a validator name must be specified in this environment",
            "validator UNKNOWN",
        ),
        (
            TokenValidator::Insecure,
            "the requested validator is not enabled",
            "validator INSECURE",
        ),
    ];
    for (validator, message, what) in cases {
        let mut req = jwks_request("app", "default", "", &app.csr, good);
        req.token_validator = validator.into();
        assert_status(
            sign(&mut app.client, req).await,
            Code::InvalidArgument,
            message,
            what,
        );
    }
}

/// Valid tokens for each key type; the leaf's SPIFFE ID is the token's sub. Without a kid,
/// every key of the token's type is tried.
async fn valid_tokens_of_each_key_type_are_accepted(app: &mut App<'_>, keys: &Keys) {
    for (key, td, namespace, id) in [
        (&keys.es, "", "default", "app"),
        (&keys.rs, "", "prod", "orders"),
        (&keys.ed, "example.org", "default", "web"),
    ] {
        let sub_td = if td.is_empty() { "public" } else { td };
        let token = key.token(&claims(sub_td, namespace, id));
        let response = sign(
            &mut app.client,
            jwks_request(id, namespace, td, &app.csr, &token),
        )
        .await
        .unwrap_or_else(|e| panic!("{:?} token refused: {e:?}", key.alg));
        check_response(
            &response,
            &app.warden.trust_anchors_path(),
            &format!("spiffe://{sub_td}/ns/{namespace}/{id}"),
        );
    }
    let no_kid = keys
        .rs
        .token_with(None, &claims("public", "default", "app"));
    app.accepted(&no_kid, "a token without kid").await;
}

/// The claims of a good token for `app` in `default`, with `changes` applied.
fn app_claims_with(changes: &[(&str, Value)]) -> Value {
    let mut c = claims("public", "default", "app");
    for (name, value) in changes {
        c[*name] = value.clone();
    }
    c
}

/// The claims of a good token for `app` in `default`, without claim `name`.
fn app_claims_without(name: &str) -> Value {
    let mut c = claims("public", "default", "app");
    c.as_object_mut().unwrap().remove(name);
    c
}

/// `good` with its payload's sub changed and its signature kept.
fn tampered(good: &str) -> String {
    let parts: Vec<&str> = good.split('.').collect();
    let payload = app_claims_with(&[("sub", json!("spiffe://public/ns/default/admin"))]);
    format!(
        "{}.{}.{}",
        parts[0],
        b64url(payload.to_string().as_bytes()),
        parts[2]
    )
}

/// An unsigned token (`alg: none`).
fn alg_none() -> String {
    format!(
        "{}.{}.",
        b64url(br#"{"alg":"none","typ":"JWT"}"#),
        b64url(claims("public", "default", "app").to_string().as_bytes())
    )
}

/// An HS256 token whose secret is `key`'s public key, with `key`'s kid.
fn hs256_with_public_key(key: &SigningKey) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(
        &header,
        &claims("public", "default", "app"),
        &EncodingKey::from_secret(&key.public_pem).unwrap(),
    )
    .unwrap()
}

/// Bad tokens for `app` in `default`: (case, token, the PermissionDenied message).
fn bad_token_cases(keys: &Keys, good: &str) -> Vec<(&'static str, String, String)> {
    let Keys {
        es,
        rs,
        ed,
        stranger,
    } = keys;
    let now = unix_now();
    let with = app_claims_with;
    let without = app_claims_without;
    let failed = |reason: &str| format!("token validation failed: {reason}");
    let expected_sub = "spiffe://public/ns/default/app";
    vec![
        (
            "expired",
            es.token(&with(&[
                ("exp", json!(now - 600)),
                ("iat", json!(now - 1200)),
                ("nbf", json!(now - 1200)),
            ])),
            failed("\"exp\" not satisfied: the token has expired"),
        ),
        (
            // Sentry accepts this one, valid forever; Warden requires exp.
            "missing exp",
            rs.token(&without("exp")),
            failed("\"exp\" not satisfied: required claim not found"),
        ),
        (
            "nbf in the future",
            es.token(&with(&[("nbf", json!(now + 600))])),
            failed("\"nbf\" not satisfied: the token is not valid yet"),
        ),
        (
            "iat in the future",
            ed.token(&with(&[("iat", json!(now + 600))])),
            failed("\"iat\" not satisfied: the token was issued in the future"),
        ),
        (
            "wrong aud",
            es.token(&with(&[(
                "aud",
                json!(["dapr.io/sentry", "spiffe://localhost/ns/other/dapr-sentry"]),
            )])),
            failed(&format!(
                "\"aud\" not satisfied: the audience does not contain {AUD}"
            )),
        ),
        (
            "missing aud",
            rs.token(&without("aud")),
            failed("\"aud\" not satisfied: required claim not found"),
        ),
        (
            "missing sub",
            ed.token(&without("sub")),
            failed("\"sub\" not satisfied: required claim not found"),
        ),
        (
            "wrong sub",
            es.token(&with(&[("sub", json!("not-a-spiffe-id"))])),
            failed(&format!("\"sub\" not satisfied: expected {expected_sub}")),
        ),
        (
            "sub for another app",
            es.token(&claims("public", "default", "other")),
            failed(&format!("\"sub\" not satisfied: expected {expected_sub}")),
        ),
        (
            "sub for another namespace",
            rs.token(&claims("public", "prod", "app")),
            failed(&format!("\"sub\" not satisfied: expected {expected_sub}")),
        ),
        (
            "sub for another trust domain",
            ed.token(&claims("example.org", "default", "app")),
            failed(&format!("\"sub\" not satisfied: expected {expected_sub}")),
        ),
        (
            "alg none",
            alg_none(),
            failed(
                "unsupported signature algorithm \"none\"; accepted: ES256, ES384, RS256, RS384, RS512, PS256, EdDSA",
            ),
        ),
        (
            "HS256 with the public key as secret",
            hs256_with_public_key(es),
            failed(
                "unsupported signature algorithm \"HS256\"; accepted: ES256, ES384, RS256, RS384, RS512, PS256, EdDSA",
            ),
        ),
        (
            "unknown kid",
            stranger.token(&claims("public", "default", "app")),
            unknown_kid("stranger"),
        ),
        (
            "signature by another key",
            stranger.token_with(Some("es"), &claims("public", "default", "app")),
            failed("could not verify message using any of the signatures or keys"),
        ),
        (
            "key type does not match alg",
            ed.token_with(Some("es"), &claims("public", "default", "app")),
            failed("algorithm \"EdDSA\" does not match key \"es\" (EC P-256 with alg ES256)"),
        ),
        (
            "tampered payload",
            tampered(good),
            failed("could not verify message using any of the signatures or keys"),
        ),
        (
            "malformed JWT",
            "eyJhbGciOiJFUzI1NiJ9.not-a-token".into(),
            failed("failed to parse token: a signed JWT has 3 dot-separated parts, this one has 2"),
        ),
        (
            "garbage header",
            "abc.def.ghi".into(),
            failed("failed to parse token: the header is not base64url JSON"),
        ),
        (
            "empty token",
            String::new(),
            "the request does not contain a token".into(),
        ),
    ]
}

/// Each bad token is PermissionDenied with its reason, and none is logged.
async fn bad_tokens_are_refused_and_never_logged(
    app: &mut App<'_>,
    cases: &[(&str, String, String)],
) {
    let mark = app.warden.output.mark();
    for (name, token, want) in cases {
        app.refused(token, want, name).await;
    }
    let logged = app.warden.output.lines()[mark..].join("\n");
    for (name, token, _) in cases {
        if token.len() > 20 {
            assert!(
                !logged.contains(token.as_str()),
                "the {name} token was logged"
            );
        }
    }
}

/// The common rules still apply, after the token check and before the JWT; a bad CSR is
/// checked after the token, as in Sentry.
async fn common_rules_apply_around_the_token_check(app: &mut App<'_>, good: &str) {
    let csr = &app.csr.clone()[..];
    let cases = [
        (
            "a.b",
            "",
            csr,
            "",
            Code::PermissionDenied,
            "the request does not contain a token",
            "token checked first",
        ),
        (
            "a.b",
            "",
            csr,
            good,
            Code::PermissionDenied,
            "invalid request: parameter app-id cannot contain dots",
            "common rules",
        ),
        (
            "app",
            "Upper",
            csr,
            good,
            Code::PermissionDenied,
            "trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores",
            "trust domain",
        ),
        (
            "app",
            "",
            &b"not a csr"[..],
            good,
            Code::InvalidArgument,
            "invalid certificate signing request",
            "CSR after token",
        ),
    ];
    for (id, td, csr, token, code, message, what) in cases {
        assert_status(
            sign(&mut app.client, jwks_request(id, "default", td, csr, token)).await,
            code,
            message,
            what,
        );
    }
}

/// `identity fetch --token-file` asks for the JWKS validator and gets a certificate.
fn identity_fetch_with_a_token_file_gets_a_certificate(
    dir: &Path,
    warden: &Warden,
    key: &SigningKey,
) {
    let token_file = write_file(
        dir,
        "token",
        key.token(&claims("public", "default", "myapp")),
    );
    let out = dir.join("svid");
    let mut cmd = Command::new(warden_binary());
    cmd.args(["identity", "fetch", "--sentry-address"])
        .arg(warden.address())
        .arg("--trust-anchors")
        .arg(warden.trust_anchors_path())
        .args(["--app-id", "myapp", "--out"])
        .arg(&out)
        .arg("--token-file")
        .arg(&token_file)
        .env_remove("RUST_LOG");
    let got = common::try_run(cmd);
    assert!(
        got.success,
        "identity fetch --token-file failed: {}",
        got.combined()
    );
    let chain = parse_certificates(&read_file(&out.join("cert.pem"))).unwrap();
    support::assert_x509_svid_leaf(&chain[0], "spiffe://public/ns/default/myapp");
}

// ---------------------------------------------------------------------------------------------
// Steps of `source_down_at_start_then_ready_then_rotation_through_unknown_kid`.

/// Waits until `/healthz` is 200 (after the source came up).
async fn wait_until_ready(warden: &Warden) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while warden.healthz().0 != 200 {
        assert!(
            Instant::now() < deadline,
            "not ready after the source came up:\n{}",
            warden.output.text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The server switches to `rotated` (holding only k2, the key of `new`); `new` is refused as
/// an unknown kid while within minRefreshInterval (3 s) of the first load at `ready_at`, then
/// accepted after one refetch, and `old` (k1) is refused from then on. Returns the log mark
/// taken before the refetch.
async fn rotate_through_unknown_kid(
    app: &mut App<'_>,
    server: &JwksServer,
    rotated: String,
    ready_at: Instant,
    old: &str,
    new: &str,
) -> usize {
    let hits = server.hits();
    server.set_body(rotated);
    if ready_at.elapsed() < Duration::from_secs(2) {
        // Within minRefreshInterval of the last fetch: no refetch, the old set keeps serving.
        app.refused(
            new,
            &unknown_kid("k2"),
            "unknown kid inside minRefreshInterval",
        )
        .await;
        app.accepted(old, "old key inside minRefreshInterval").await;
        assert_eq!(server.hits(), hits, "rate-limited");
    }
    tokio::time::sleep(Duration::from_secs(3).saturating_sub(ready_at.elapsed())).await;
    let mark = app.warden.output.mark();
    app.issued(new, "rotated key").await;
    assert_eq!(server.hits(), hits + 1, "one refetch for the unknown kid");
    assert!(
        app.warden
            .output
            .find(
                mark,
                "info",
                "refreshed the key set for an unknown key ID \"k2\""
            )
            .is_some()
    );
    // k1 is gone now.
    app.refused(old, &unknown_kid("k1"), "retired key").await;
    mark
}

impl App<'_> {
    /// After a refresh that failed (a warning containing `warning` logged after `mark`), the
    /// last good set keeps serving: `(token, kid)` is still an unknown kid, `kept` (a key of
    /// the last good set) is still accepted.
    async fn last_good_set_keeps_serving(
        &mut self,
        mark: usize,
        (token, kid): (&str, &str),
        warning: &str,
        kept: &str,
        what: &str,
    ) {
        self.refused(token, &unknown_kid(kid), what).await;
        self.warden
            .output
            .wait_for(mark, "warning", warning, Duration::from_secs(10))
            .await;
        self.accepted(kept, what).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Tests.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_jwks_accepts_valid_tokens_and_refuses_bad_ones() {
    let work = tempdir();
    let creds = tempdir();
    let dir = work.path();
    let ca = JwksServerCa::generate(dir);
    let keys = Keys::generate(dir);
    let server = JwksServer::start(&ca, keys.published(), false).await;
    let config = write_config(
        dir,
        &[
            ("source", &server.url),
            ("caCertificate", ca.ca_pem.to_str().unwrap()),
        ],
    );
    let warden = start_with_config(creds.path(), &config, false);
    warden
        .output
        .wait_for(
            0,
            "info",
            "Adding validator 'jwks' with Sentry ID: spiffe://localhost/ns/default/dapr-sentry",
            Duration::from_secs(5),
        )
        .await;
    let mut app = App::connect(&warden, openssl_csr(dir, &OPENSSL_KEYS[0]).pem).await;
    let good = keys.es.token(&claims("public", "default", "app"));

    only_the_jwks_validator_is_enabled(&mut app, &good).await;
    valid_tokens_of_each_key_type_are_accepted(&mut app, &keys).await;
    let cases = bad_token_cases(&keys, &good);
    assert!(cases.len() >= 15);
    bad_tokens_are_refused_and_never_logged(&mut app, &cases).await;
    common_rules_apply_around_the_token_check(&mut app, &good).await;
    identity_fetch_with_a_token_file_gets_a_certificate(dir, &warden, &keys.ed);
    assert_eq!(
        server.hits(),
        1,
        "one fetch at start; unknown kids within minRefreshInterval do not refetch"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_down_at_start_then_ready_then_rotation_through_unknown_kid() {
    let work = tempdir();
    let creds = tempdir();
    let dir = work.path();
    let ca = JwksServerCa::generate(dir);
    let k1 = SigningKey::generate(dir, Algorithm::ES256, "k1");
    let k2 = SigningKey::generate(dir, Algorithm::EdDSA, "k2");
    let server = JwksServer::start(&ca, jwks_json(&[&k1]), true).await;
    let config = write_config(
        dir,
        &[
            ("source", &server.url),
            (
                "CACERTIFICATE",
                &String::from_utf8(read_file(&ca.ca_pem)).unwrap(),
            ),
            ("minRefreshInterval", "3"),
            ("requestTimeout", "5s"),
        ],
    );
    let warden = start_with_config(creds.path(), &config, true);
    let csr = openssl_csr(dir, &OPENSSL_KEYS[1]).pem;
    let t1 = k1.token(&claims("public", "default", "app"));

    // Down: not ready, and requests say so.
    assert_eq!(warden.healthz().0, 503);
    let mut app = App::connect(&warden, csr).await;
    app.refused(&t1, "jwks validator not ready", "before the first load")
        .await;
    warden
        .output
        .wait_for(0, "warning", "not ready yet", Duration::from_secs(10))
        .await;

    // Up: ready within the retry backoff, and tokens are accepted.
    server.set_down(false);
    wait_until_ready(&warden).await;
    let ready_at = Instant::now();
    app.issued(&t1, "first key").await;

    // Rotation: the server now publishes only k2.
    let t2 = k2.token(&claims("public", "default", "app"));
    let mark =
        rotate_through_unknown_kid(&mut app, &server, jwks_json(&[&k2]), ready_at, &t1, &t2).await;

    // A failed refresh keeps the last good set.
    server.set_down(true);
    tokio::time::sleep(Duration::from_secs(3)).await;
    app.last_good_set_keeps_serving(
        mark,
        (&t1, "k1"),
        "keeping the previous set",
        &t2,
        "refresh failed",
    )
    .await;
    assert_eq!(warden.healthz().0, 200);

    // A source that answers more than 1 MiB (hostile, or a wrong URL) is cut off at the limit
    // and the last good set keeps serving.
    let mark = warden.output.mark();
    server.set_body(format!(
        "{{\"keys\":[],\"padding\":\"{}\"}}",
        "x".repeat(2 << 20)
    ));
    server.set_down(false);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let t3 = SigningKey::generate(dir, Algorithm::ES256, "k3")
        .token(&claims("public", "default", "app"));
    app.last_good_set_keeps_serving(
        mark,
        (&t3, "k3"),
        "keeping the previous set: the response is larger than 1048576 bytes",
        &t2,
        "oversized refresh",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_source_reloads_and_inline_and_base64_sources_work() {
    let work = tempdir();
    let dir = work.path();
    let k1 = SigningKey::generate(dir, Algorithm::EdDSA, "k1");
    let k2 = SigningKey::generate(dir, Algorithm::ES256, "k2");
    let csr = openssl_csr(dir, &OPENSSL_KEYS[0]).pem;
    let t1 = k1.token(&claims("public", "default", "app"));
    let t2 = k2.token(&claims("public", "default", "app"));

    // File: loaded at start, reloaded when replaced; a broken file keeps the last good set.
    let jwks_dir = tempdir();
    let file = write_file(jwks_dir.path(), "jwks.json", jwks_json(&[&k1]));
    let creds = tempdir();
    let warden = start_with_config(
        creds.path(),
        &write_config(dir, &[("source", file.to_str().unwrap())]),
        false,
    );
    let mut app = App::connect(&warden, csr.clone()).await;
    app.accepted(&t1, "file source").await;
    server::replace_file(jwks_dir.path(), "jwks.json", jwks_json(&[&k2]));
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.sign(&t2).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "file change not picked up:\n{}",
            warden.output.text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mark = warden.output.mark();
    server::replace_file(jwks_dir.path(), "jwks.json", "{not json");
    warden
        .output
        .wait_for(
            mark,
            "warning",
            "keeping the previous set",
            Duration::from_secs(10),
        )
        .await;
    app.accepted(&t2, "broken file").await;
    drop(app);
    drop(warden);

    // Inline JSON, and base64 of it (standard with padding, and raw).
    let json = jwks_json(&[&k1, &k2]);
    let sources = [
        json.clone(),
        base64ct::Base64::encode_string(json.as_bytes()),
        base64ct::Base64Unpadded::encode_string(json.as_bytes()),
    ];
    for source in sources {
        let creds = tempdir();
        let warden = start_with_config(
            creds.path(),
            &write_config(dir, &[("source", &source)]),
            false,
        );
        let mut app = App::connect(&warden, csr.clone()).await;
        for token in [&t1, &t2] {
            app.accepted(token, &format!("inline source {}...", &source[..10]))
                .await;
        }
    }
}

#[test]
fn bad_jwks_options_stop_the_server_naming_file_and_field() {
    let work = tempdir();
    let dir = work.path();
    let missing_ca = dir.join("missing-ca.pem");
    let cases: Vec<(Vec<(&str, &str)>, String)> = vec![
        (
            vec![],
            "spec.mtls.tokenValidators[0].options.source: required".into(),
        ),
        (
            vec![("source", "ftp://example/jwks")],
            "options.source: unsupported URL scheme 'ftp'".into(),
        ),
        (
            vec![("source", "/no/such/jwks.json")],
            "options.source: '/no/such/jwks.json' is not a regular file".into(),
        ),
        (
            vec![("source", "{\"keys\": 3}")],
            "options.source: inline JWKS: not a JWK Set".into(),
        ),
        (
            vec![
                ("source", "https://127.0.0.1:1/jwks"),
                ("caCertificate", missing_ca.to_str().unwrap()),
            ],
            "options.caCertificate: not PEM text, and cannot read file".into(),
        ),
        (
            vec![
                ("source", "https://127.0.0.1:1/jwks"),
                ("minRefreshInterval", "soon"),
            ],
            "options.minRefreshInterval: expected a duration".into(),
        ),
    ];
    for (options, want) in cases {
        let config = write_config(dir, &options);
        let creds = tempdir();
        let exited = Warden::start_failure(
            creds.path(),
            &Options::new().args(["--config", config.to_str().unwrap()]),
        );
        exited.assert_fatal(&[config.to_str().unwrap(), &want]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_server_outside_ca_certificate_is_never_trusted() {
    let work = tempdir();
    let creds = tempdir();
    let dir = work.path();
    let served_by = JwksServerCa::generate(&mkdir(&dir.join("a")));
    let configured = JwksServerCa::generate(&mkdir(&dir.join("b")));
    let key = SigningKey::generate(dir, Algorithm::ES256, "k1");
    let server = JwksServer::start(&served_by, jwks_json(&[&key]), false).await;
    let config = write_config(
        dir,
        &[
            ("source", &server.url),
            ("caCertificate", configured.ca_pem.to_str().unwrap()),
        ],
    );
    let warden = start_with_config(creds.path(), &config, true);
    let failure = warden
        .output
        .wait_for(0, "warning", "not ready yet", Duration::from_secs(10))
        .await;
    let msg = server::field(&failure, "msg");
    assert!(msg.contains("certificate"), "{msg}");
    assert_eq!(warden.healthz().0, 503);
    let mut app = App::connect(&warden, openssl_csr(dir, &OPENSSL_KEYS[0]).pem).await;
    app.refused(
        &key.token(&claims("public", "default", "app")),
        "jwks validator not ready",
        "untrusted JWKS server",
    )
    .await;
    assert_eq!(
        server.hits(),
        0,
        "no JWKS was served over an untrusted connection"
    );
}

/// Creates the directory and returns it.
fn mkdir(path: &Path) -> PathBuf {
    std::fs::create_dir_all(path).unwrap();
    path.to_path_buf()
}

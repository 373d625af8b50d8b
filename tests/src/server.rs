//! A real `warden` server for the `server` tests: the `warden-under-test` binary started as a
//! child process on loopback ports, talked to over real TLS and gRPC, with its log lines captured.
//! It reuses the openssl, PEM and verifier helpers of [`common`] and [`support`].

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use der::Encode as _;
use serde_json::{Map, Value};
use tonic::transport::Channel;
use warden_core::UnixTime;
use warden_core::bundle::{certificates_to_pem, create_issuer, create_root, parse_certificates};
use warden_core::certificate::CertificateRef;
use warden_core::chain;
use warden_core::crypto::{CaSigner as _, KeyAlgorithm, RustCryptoVerifier, SoftwareKey};
use warden_core::profile::{DEFAULT_CA_TTL, DEFAULT_CLOCK_SKEW, Validity};
use warden_core::spiffe::{SpiffeId, TrustDomain};
use warden_host::proto::ca_client::CaClient;
use warden_host::proto::{SignCertificateRequest, SignCertificateResponse};
use x509_cert::Certificate;

use crate::{common, support};

/// The server binary: this package's `warden-under-test` (`warden_host::main`).
///
/// A library has no `CARGO_BIN_EXE_*`, so it is found at run time: cargo puts test executables
/// in `<target>/<profile>/deps/` and the package's binaries, which it builds for the integration
/// tests, one level up in `<target>/<profile>/`, whatever `CARGO_TARGET_DIR` is.
pub fn warden_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test executable's path");
        let mut dir = exe.parent().expect("the test executable is in a directory");
        if dir.ends_with("deps") {
            dir = dir.parent().expect("deps/ is in the profile directory");
        }
        let binary = dir.join(format!("warden-under-test{}", std::env::consts::EXE_SUFFIX));
        assert!(
            binary.is_file(),
            "no server binary at {}: run the tests with `cargo test -p warden-tests`, which builds it",
            binary.display()
        );
        binary
    })
}

/// How long a start may take before the test gives up (a debug build on a busy 2-core box).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a stopping server may take; the server's own grace period is 15 s.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// The namespace the server runs in unless a test sets `NAMESPACE`.
pub const DEFAULT_NAMESPACE: &str = "default";
/// `--trust-domain` unless a test sets it.
pub const DEFAULT_TRUST_DOMAIN: &str = "localhost";

// ---------------------------------------------------------------------------------------------
// Captured output.

/// Every line the child printed (stdout and stderr interleaved as they arrived).
#[derive(Clone, Debug, Default)]
pub struct Output(Arc<Mutex<Vec<String>>>);

impl Output {
    fn push(&self, line: String) {
        self.0.lock().unwrap().push(line);
    }

    /// A copy of every line so far.
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    /// How many lines so far: a mark for [`Output::json_since`] and [`Output::wait_for`].
    pub fn mark(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// Everything printed, for failure messages.
    pub fn text(&self) -> String {
        self.lines().join("\n")
    }

    /// The lines from index `from` on that are JSON objects (log lines with `--log-as-json`).
    pub fn json_since(&self, from: usize) -> Vec<Map<String, Value>> {
        self.lines()
            .iter()
            .skip(from)
            .filter_map(|l| match serde_json::from_str::<Value>(l) {
                Ok(Value::Object(map)) => Some(map),
                _ => None,
            })
            .collect()
    }

    /// Every JSON log line.
    pub fn json(&self) -> Vec<Map<String, Value>> {
        self.json_since(0)
    }

    /// The first JSON log line from index `from` on with this `level` whose `msg` contains
    /// `needle`.
    pub fn find(&self, from: usize, level: &str, needle: &str) -> Option<Map<String, Value>> {
        self.json_since(from)
            .into_iter()
            .find(|l| field(l, "level") == level && field(l, "msg").contains(needle))
    }

    /// Waits (without blocking the async runtime) until [`Output::find`] succeeds.
    pub async fn wait_for(
        &self,
        from: usize,
        level: &str,
        needle: &str,
        timeout: Duration,
    ) -> Map<String, Value> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.find(from, level, needle) {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no {level} log line containing {needle:?} within {timeout:?}; output:\n{}",
                self.text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A string field of a JSON log line, or "" when absent.
pub fn field<'a>(line: &'a Map<String, Value>, key: &str) -> &'a str {
    line.get(key).and_then(Value::as_str).unwrap_or("")
}

fn capture(stream: impl std::io::Read + Send + 'static, output: Output) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            match line {
                Ok(line) => output.push(line),
                Err(_) => break,
            }
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Starting and stopping.

/// Extra flags and environment for one start.
#[derive(Clone, Debug, Default)]
pub struct Options {
    args: Vec<String>,
    env: Vec<(String, String)>,
    namespace: Option<String>,
    trust_domain: Option<String>,
    /// Return once `/healthz` answers at all, even 503 (a component not ready yet), and the
    /// gRPC port accepts connections.
    unready_ok: bool,
}

impl Options {
    /// No extra flags or environment.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds command-line arguments after the harness's own.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable of the child.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Sets `NAMESPACE` (Sentry's namespace), which is also in the server's SPIFFE ID.
    pub fn namespace(mut self, namespace: &str) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// Passes `--trust-domain`, which is also in the server's SPIFFE ID.
    pub fn trust_domain(mut self, trust_domain: &str) -> Self {
        self.trust_domain = Some(trust_domain.into());
        self
    }

    /// Lets the start return as soon as `/healthz` answers, even 503 (not ready), and the gRPC
    /// port accepts connections.
    pub fn unready_ok(mut self) -> Self {
        self.unready_ok = true;
        self
    }
}

/// A server process that ended (start-up failure or stop).
#[derive(Debug)]
pub struct Exited {
    /// Exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    /// What it printed.
    pub output: Output,
}

impl Exited {
    /// The log lines at level `fatal`.
    pub fn fatal_lines(&self) -> Vec<Map<String, Value>> {
        self.output
            .json()
            .into_iter()
            .filter(|l| field(l, "level") == "fatal")
            .collect()
    }

    /// Asserts a non-zero exit and exactly one `fatal` line whose message contains every
    /// needle; returns that message.
    pub fn assert_fatal(&self, needles: &[&str]) -> String {
        assert!(
            self.code.is_some_and(|c| c != 0),
            "expected a non-zero exit code, got {:?}; output:\n{}",
            self.code,
            self.output.text()
        );
        let fatal = self.fatal_lines();
        assert_eq!(
            fatal.len(),
            1,
            "expected one fatal log line; output:\n{}",
            self.output.text()
        );
        let msg = field(&fatal[0], "msg").to_owned();
        for needle in needles {
            assert!(
                msg.contains(needle),
                "the fatal line does not mention {needle:?}: {msg:?}"
            );
        }
        msg
    }

    fn lost_port_race(&self) -> bool {
        let text = self.output.text();
        text.contains("cannot listen") && text.contains("in use")
    }
}

/// A running `warden`, killed when dropped.
#[derive(Debug)]
pub struct Warden {
    child: Child,
    readers: Vec<JoinHandle<()>>,
    /// `--issuer-credentials`.
    pub dir: PathBuf,
    /// gRPC port.
    pub port: u16,
    /// healthz port.
    pub healthz_port: u16,
    /// metrics port.
    pub metrics_port: u16,
    /// `spiffe://<trust domain>/ns/<NAMESPACE>/dapr-sentry`.
    pub server_id: String,
    /// What it printed so far.
    pub output: Output,
}

/// Whether something accepts TCP connections on this loopback port.
fn port_open(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// Three distinct free loopback ports (held together while picking, so they differ).
fn free_ports() -> [u16; 3] {
    let listeners: Vec<TcpListener> = (0..3)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let ports: Vec<u16> = listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect();
    [ports[0], ports[1], ports[2]]
}

impl Warden {
    /// Starts with `--issuer-credentials dir` and waits until `/healthz` is 200; panics with the
    /// output if the process exits instead.
    pub fn start(dir: &Path) -> Self {
        Self::start_with(dir, &Options::new())
    }

    /// [`Warden::start`] with extra flags and environment.
    pub fn start_with(dir: &Path, options: &Options) -> Self {
        match Self::launch(dir, options) {
            Ok(w) => w,
            Err(e) => panic!(
                "warden exited during start-up with code {:?}; output:\n{}",
                e.code,
                e.output.text()
            ),
        }
    }

    /// Starts a server that must fail to start; returns how it ended.
    pub fn start_failure(dir: &Path, options: &Options) -> Exited {
        match Self::launch(dir, options) {
            Ok(w) => panic!(
                "warden started although it should have refused to; output:\n{}",
                w.output.text()
            ),
            Err(e) => e,
        }
    }

    /// Starts and waits until healthy (`Ok`) or exited (`Err`). A lost race for a free port is
    /// retried with new ports.
    pub fn launch(dir: &Path, options: &Options) -> Result<Self, Exited> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Self::launch_once(dir, options) {
                Err(e) if attempt < 3 && e.lost_port_race() => continue,
                other => return other,
            }
        }
    }

    fn launch_once(dir: &Path, options: &Options) -> Result<Self, Exited> {
        let [port, healthz_port, metrics_port] = free_ports();
        let namespace = options.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE);
        let trust_domain = options
            .trust_domain
            .as_deref()
            .unwrap_or(DEFAULT_TRUST_DOMAIN);
        let mut cmd = Command::new(warden_binary());
        cmd.arg("--issuer-credentials")
            .arg(dir)
            .args(["--listen-address", "127.0.0.1", "--port"])
            .arg(port.to_string())
            .args(["--healthz-listen-address", "127.0.0.1", "--healthz-port"])
            .arg(healthz_port.to_string())
            .args(["--metrics-listen-address", "127.0.0.1", "--metrics-port"])
            .arg(metrics_port.to_string())
            .arg("--log-as-json");
        if let Some(td) = &options.trust_domain {
            cmd.args(["--trust-domain", td]);
        }
        cmd.args(&options.args)
            .env_remove("RUST_LOG")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env("NAMESPACE", namespace)
            .envs(options.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", warden_binary().display()));
        let output = Output::default();
        let readers = vec![
            capture(child.stdout.take().unwrap(), output.clone()),
            capture(child.stderr.take().unwrap(), output.clone()),
        ];
        let mut warden = Self {
            child,
            readers,
            dir: dir.to_path_buf(),
            port,
            healthz_port,
            metrics_port,
            server_id: format!("spiffe://{trust_domain}/ns/{namespace}/dapr-sentry"),
            output,
        };
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(status) = warden.child.try_wait().unwrap() {
                warden.join_readers();
                return Err(Exited {
                    code: status.code(),
                    output: warden.output.clone(),
                });
            }
            match http_get(healthz_port, "/healthz") {
                Ok((200, _)) => return Ok(warden),
                // Healthz answers (503) before the gRPC port is bound: wait for that too, or
                // the first `client()` may find the port closed.
                Ok(_) if options.unready_ok && port_open(port) => return Ok(warden),
                _ => {}
            }
            assert!(
                Instant::now() < deadline,
                "warden was not healthy within {STARTUP_TIMEOUT:?}; output:\n{}",
                warden.output.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn join_readers(&mut self) {
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `127.0.0.1:<gRPC port>`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `ca.crt` in the credentials directory.
    pub fn trust_anchors_path(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// Sends SIGTERM (through `kill(1)`; the tests forbid unsafe code).
    pub fn send_sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {} failed", self.pid());
    }

    /// Waits for the process to end (after [`Warden::send_sigterm`]); panics after 30 s.
    pub fn wait_exit(&mut self) -> Exited {
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                self.join_readers();
                return Exited {
                    code: status.code(),
                    output: self.output.clone(),
                };
            }
            assert!(
                Instant::now() < deadline,
                "warden did not exit within {STOP_TIMEOUT:?}; output:\n{}",
                self.output.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then waits for the exit.
    pub fn stop_gracefully(mut self) -> Exited {
        self.send_sigterm();
        self.wait_exit()
    }

    /// `GET path` on the healthz port.
    pub fn healthz(&self) -> (u16, String) {
        http_get(self.healthz_port, "/healthz").expect("GET /healthz")
    }

    /// `GET path` on the metrics port.
    pub fn metrics(&self, path: &str) -> (u16, String) {
        http_get(self.metrics_port, path).unwrap_or_else(|e| panic!("GET {path} on metrics: {e}"))
    }

    /// A gRPC client that trusts `ca.crt` (as read now) and expects the server's SPIFFE ID.
    pub async fn client(&self) -> CaClient<Channel> {
        connect_client(&self.address(), &self.trust_anchors_path(), &self.server_id)
            .await
            .unwrap_or_else(|e| panic!("connect to warden: {e}; output:\n{}", self.output.text()))
    }
}

impl Drop for Warden {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client as daprd builds one: trust anchors from `anchors_file`, server authorized by
/// SPIFFE ID, TLS with ALPN h2.
pub async fn connect_client(
    address: &str,
    anchors_file: &Path,
    server_id: &str,
) -> Result<CaClient<Channel>, String> {
    let anchors = parse_certificates(&common::read_file(anchors_file))
        .map_err(|e| format!("{}: {e}", anchors_file.display()))?;
    let expected = SpiffeId::parse(server_id).map_err(|e| format!("{server_id}: {e}"))?;
    let config = warden_host::client::spiffe_client_config(anchors, expected)
        .map_err(|e| format!("client TLS config: {e:?}"))?;
    warden_host::client::connect(address, Arc::new(config))
        .await
        .map_err(|e| format!("connect to {address}: {e:?}"))
}

// ---------------------------------------------------------------------------------------------
// HTTP/1.1 by hand, for healthz and metrics.

/// `GET path` on `127.0.0.1:port`; returns the status and the body.
pub fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, raw.clone());
    let (head, body) = raw.split_once("\r\n\r\n").ok_or_else(bad)?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Ok((status, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// The value of the unlabelled sample `name` in Prometheus text, if present.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

// ---------------------------------------------------------------------------------------------
// Requests and responses.

/// A `SignCertificateRequest` with the default (insecure) validator.
pub fn request(
    id: &str,
    namespace: &str,
    trust_domain: &str,
    csr: &[u8],
) -> SignCertificateRequest {
    SignCertificateRequest {
        id: id.into(),
        namespace: namespace.into(),
        trust_domain: trust_domain.into(),
        certificate_signing_request: csr.to_vec(),
        ..Default::default()
    }
}

/// One call.
pub async fn sign(
    client: &mut CaClient<Channel>,
    req: SignCertificateRequest,
) -> Result<SignCertificateResponse, tonic::Status> {
    client
        .sign_certificate(req)
        .await
        .map(tonic::Response::into_inner)
}

/// A response taken apart.
#[derive(Debug)]
pub struct Issued {
    /// The leaf.
    pub leaf: Certificate,
    /// The certificates after the leaf in `workload_certificate`.
    pub intermediates: Vec<Certificate>,
    /// `workload_certificate` as text.
    pub chain_pem: String,
}

impl Issued {
    /// The leaf's SubjectPublicKeyInfo DER.
    pub fn leaf_spki_der(&self) -> Vec<u8> {
        self.leaf
            .tbs_certificate()
            .subject_public_key_info()
            .to_der()
            .unwrap()
    }

    /// The leaf's validity.
    pub fn validity(&self) -> Validity {
        Validity::of(&self.leaf)
    }

    /// The leaf's authority key identifier.
    pub fn akid(&self) -> Vec<u8> {
        support::akid_of(&self.leaf)
    }

    /// Writes the leaf and the intermediates to `dir/<tag>-leaf.pem` and
    /// `dir/<tag>-chain.pem` and runs `openssl verify -x509_strict` for sslclient and
    /// sslserver against `anchors_file`.
    pub fn openssl_verify(&self, dir: &Path, anchors_file: &Path, tag: &str) {
        let leaf = format!("{tag}-leaf.pem");
        let untrusted = format!("{tag}-chain.pem");
        common::write_file(dir, &leaf, common::certificate_pem(&self.leaf));
        common::write_file(
            dir,
            &untrusted,
            certificates_to_pem(self.intermediates.iter()).unwrap(),
        );
        common::openssl_verify_ok(dir, anchors_file.to_str().unwrap(), &untrusted, &leaf);
    }
}

/// Checks a response against Sentry's shape (spec §3 "Response") and the SVID rules, and
/// verifies the chain to `anchors_file` with rustls-webpki:
/// - `workload_certificate` is the leaf and the issuer chain, with no self-signed certificate;
/// - `trust_chain_certificates` is one element holding exactly the certificates of `ca.crt`;
/// - `valid_until` is the leaf's NotAfter;
/// - the leaf's only URI SAN is `expected_id`.
pub fn check_response(
    response: &SignCertificateResponse,
    anchors_file: &Path,
    expected_id: &str,
) -> Issued {
    let chain_pem = String::from_utf8(response.workload_certificate.clone())
        .expect("workload_certificate is PEM text");
    let mut certs = parse_certificates(chain_pem.as_bytes())
        .unwrap_or_else(|e| panic!("workload_certificate: {e}\n{chain_pem}"));
    assert!(
        certs.len() >= 2,
        "workload_certificate must hold the leaf and the issuer, got {}",
        certs.len()
    );
    for (i, der) in ders(&certs).iter().enumerate() {
        // Signature-based, as kit's EncodeX509Chain decides: the docs' OpenSSL recipe gives
        // root and issuer the same DN, so comparing names is not enough.
        let cert = CertificateRef::from_der(der).expect("re-encoded certificate reads");
        assert!(
            !chain::is_self_signed(&cert, &RustCryptoVerifier),
            "certificate {i} of workload_certificate is self-signed"
        );
    }
    let anchors = parse_certificates(&common::read_file(anchors_file)).unwrap();
    assert_eq!(
        response.trust_chain_certificates.len(),
        1,
        "trust_chain_certificates must be one element (the whole anchor bundle)"
    );
    let sent_anchors = parse_certificates(&response.trust_chain_certificates[0])
        .expect("trust_chain_certificates[0] is PEM");
    assert_eq!(
        ders(&sent_anchors),
        ders(&anchors),
        "trust_chain_certificates[0] must hold exactly the certificates of {}",
        anchors_file.display()
    );
    let leaf = certs.remove(0);
    let validity = Validity::of(&leaf);
    let valid_until = response.valid_until.as_ref().expect("valid_until is set");
    assert_eq!(
        (valid_until.seconds, valid_until.nanos),
        (i64::try_from(validity.not_after.as_secs()).unwrap(), 0),
        "valid_until must be the leaf's NotAfter"
    );
    support::assert_x509_svid_leaf(&leaf, expected_id);
    support::webpki_verify(&leaf, &certs, &anchors, common::now())
        .unwrap_or_else(|e| panic!("rustls-webpki rejects the chain for {expected_id}: {e:?}"));
    Issued {
        leaf,
        intermediates: certs,
        chain_pem,
    }
}

/// The DER of each certificate.
pub fn ders(certs: &[Certificate]) -> Vec<Vec<u8>> {
    certs.iter().map(|c| c.to_der().unwrap()).collect()
}

/// The SubjectPublicKeyInfo DER of a PEM CSR (either PEM label), read with x509-cert.
pub fn csr_spki_der(csr_pem: &[u8]) -> Vec<u8> {
    use der::Decode as _;
    let text = std::str::from_utf8(csr_pem).unwrap();
    let (_, der) = support::pem_blocks(text).remove(0);
    let req = x509_cert::request::CertReq::from_der(&der).unwrap();
    req.info.public_key.to_der().unwrap()
}

// ---------------------------------------------------------------------------------------------
// Credentials the test holds the root key of.

/// A root CA whose key the test keeps, so it can sign further issuers (rotation, expiry).
pub struct OwnCa {
    trust_domain: TrustDomain,
    root_key: SoftwareKey,
    /// The self-signed root.
    pub root: Certificate,
}

impl std::fmt::Debug for OwnCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnCa").finish_non_exhaustive()
    }
}

/// An issuer certificate and its key.
pub struct OwnIssuer {
    /// The certificate.
    pub certificate: Certificate,
    key: SoftwareKey,
}

impl std::fmt::Debug for OwnIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnIssuer").finish_non_exhaustive()
    }
}

impl OwnIssuer {
    /// `issuer.crt` text.
    pub fn certificate_pem(&self) -> String {
        common::certificate_pem(&self.certificate)
    }

    /// `issuer.key` text (PKCS#8).
    pub fn key_pem(&self) -> String {
        self.key.to_pkcs8_pem().unwrap().to_string()
    }

    /// The issuer's subject key identifier (what a leaf's AKID must equal).
    pub fn skid(&self) -> Vec<u8> {
        support::skid_of(&self.certificate)
    }
}

impl OwnCa {
    /// A P-256 root for `localhost` (the server's default trust domain), valid from 15 minutes
    /// ago for a year.
    pub fn generate() -> Self {
        let trust_domain = TrustDomain::new(DEFAULT_TRUST_DOMAIN).unwrap();
        let root_key = SoftwareKey::generate(KeyAlgorithm::P256, &mut common::rng());
        let validity = Validity::backdated(common::now(), DEFAULT_CLOCK_SKEW, DEFAULT_CA_TTL);
        let root = create_root(&root_key, &trust_domain, validity, &mut common::rng()).unwrap();
        Self {
            trust_domain,
            root_key,
            root,
        }
    }

    /// A new issuer (fresh key) signed by this root, valid from 15 minutes ago for a year.
    pub fn issuer(&self) -> OwnIssuer {
        self.issuer_valid(Validity::backdated(
            common::now(),
            DEFAULT_CLOCK_SKEW,
            DEFAULT_CA_TTL,
        ))
    }

    /// A new issuer with the given validity.
    pub fn issuer_valid(&self, validity: Validity) -> OwnIssuer {
        let key = SoftwareKey::generate(KeyAlgorithm::P256, &mut common::rng());
        let sentry_id = SpiffeId::sentry(&self.trust_domain, DEFAULT_NAMESPACE).unwrap();
        let certificate = create_issuer(
            &self.root_key,
            &self.root,
            key.public_key(),
            &sentry_id,
            validity,
            &mut common::rng(),
        )
        .unwrap();
        OwnIssuer { certificate, key }
    }

    /// `ca.crt` text.
    pub fn root_pem(&self) -> String {
        common::certificate_pem(&self.root)
    }

    /// Writes `ca.crt`, `issuer.crt` and `issuer.key` into `dir`.
    pub fn write(&self, dir: &Path, issuer: &OwnIssuer) {
        common::write_file(dir, "ca.crt", self.root_pem());
        common::write_file(dir, "issuer.crt", issuer.certificate_pem());
        common::write_file(dir, "issuer.key", issuer.key_pem());
    }
}

/// A past instant: `now − secs`.
pub fn seconds_ago(secs: u64) -> UnixTime {
    common::now().saturating_sub(Duration::from_secs(secs))
}

/// Every regular file in `dir` by name, with its bytes: to prove a failed start changed
/// nothing.
pub fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

/// The permission bits of a path.
pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Writes `contents` to `dir/name` by writing a temporary file and renaming it over, as
/// operators and Kubernetes volume updates replace files.
pub fn replace_file(dir: &Path, name: &str, contents: impl AsRef<[u8]>) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

/// A small tmpfs mounted on a fresh directory, unmounted when dropped: the disk-full and
/// read-only faults. Mounting needs root or CAP_SYS_ADMIN.
#[derive(Debug)]
pub struct Tmpfs {
    _parent: tempfile::TempDir,
    /// Where it is mounted.
    pub mount_point: PathBuf,
}

impl Tmpfs {
    /// A tmpfs of `size` (mount's syntax, e.g. `16k`). `None` (with the reason printed) when
    /// this machine cannot mount and `WARDEN_SKIP_TMPFS` says that is known: a skip must be
    /// asked for, or a machine that silently cannot run the fault tests would pass them.
    pub fn mount(size: &str) -> Option<Self> {
        let parent = common::tempdir();
        let mount_point = parent.path().join("small");
        std::fs::create_dir(&mount_point).unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(&mount_point)
            .output()
            .unwrap();
        if !out.status.success() {
            assert!(
                std::env::var_os("WARDEN_SKIP_TMPFS").is_some(),
                "cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {}; \
                 set WARDEN_SKIP_TMPFS=1 to skip the tmpfs tests knowingly",
                String::from_utf8_lossy(&out.stderr)
            );
            eprintln!("SKIPPED (WARDEN_SKIP_TMPFS): cannot mount a tmpfs here");
            return None;
        }
        Some(Self {
            _parent: parent,
            mount_point,
        })
    }

    /// Remounts it read-only.
    pub fn remount_read_only(&self) {
        let out = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(&self.mount_point)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "remount ro: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Fills the file system to the last byte with the file `filler`.
    pub fn fill(&self) {
        self.fill_leaving(0);
    }

    /// Fills the file system, then frees `free` bytes (whole pages) of `filler` again.
    pub fn fill_leaving(&self, free: u64) {
        let mut f = std::fs::File::create(self.mount_point.join("filler")).unwrap();
        let chunk = [0u8; 512];
        loop {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
                Err(e) => panic!("filling the tmpfs: {e}"),
            }
        }
        let len = f.metadata().unwrap().len();
        f.set_len(len.saturating_sub(free)).unwrap();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mount_point).status();
    }
}

//! `warden identity fetch`: get an X509-SVID from a running CA exactly as daprd does (spec §8),
//! and the client pieces the load generator and the end-to-end tests reuse.
//!
//! - [`spiffe_client_config`]: TLS towards the CA, the server authorized by its exact SPIFFE ID
//!   through the trust anchors ([`SpiffeServerVerifier`], go-spiffe's `AuthorizeID`).
//! - [`connect`]: a tonic channel over TCP + that TLS, returning a `CaClient`.
//! - [`fetch_once`]: fresh key, empty-template CSR, `SignCertificate`, daprd's response checks
//!   plus a full chain check ([`check_response`]); [`new_key_and_csr`] and
//!   [`RequestParams::to_request`] are the steps for callers that drive the RPC themselves.
//! - [`run_fetch`]: the subcommand: fetch, write `key.pem`, `cert.pem`, `ca.pem` (0600, atomically)
//!   and, with `--renew`, renew at half the leaf's lifetime until SIGINT or SIGTERM.

mod request;
#[cfg(test)]
mod test_support;
mod transport;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use warden_core::bundle::{CertificatesError, parse_certificates};
use warden_core::crypto::KeyAlgorithm;
use warden_core::spiffe::{SpiffeId, SpiffeIdError, TrustDomain};
use zeroize::Zeroizing;

pub use request::{
    FetchError, Identity, RequestParams, ResponseError, VerifiedResponse, check_response,
    fetch_once, new_key_and_csr,
};
pub use transport::{
    CONNECT_TIMEOUT, ClientConfigError, ConnectError, DialError, ServerIdentityError,
    SpiffeServerVerifier, connect, spiffe_client_config,
};

use crate::proto::sign_certificate_request::TokenValidator;
use crate::util::files::{WriteError, create_private_dir, write_files_atomically};

/// The log scope of daprd's identity code (kit's security provider).
const SCOPE_SECURITY: &str = "dapr.runtime.security";
/// daprd's retry policy for `SignCertificate`: at most this many tries...
const MAX_TRIES: u32 = 5;
/// ...each given this long...
const PER_TRY_TIMEOUT: Duration = Duration::from_secs(3);
/// ...with this pause between them (Warden's choice; long enough for a CA that is starting).
const RETRY_PAUSE: Duration = Duration::from_secs(1);
/// After a failed renewal, daprd tries again after this long.
const RENEW_RETRY: Duration = Duration::from_secs(10);
/// The renewal timer wakes at least this often (daprd does too, so a suspended host catches up).
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// File names kit uses when writing an identity to a directory.
pub const KEY_FILE: &str = "key.pem";
/// The leaf and the issuer chain.
pub const CERT_FILE: &str = "cert.pem";
/// The trust anchors.
pub const CA_FILE: &str = "ca.pem";

/// The CSR key types daprd has used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum CsrKeyType {
    /// Ed25519, daprd 1.18 and later.
    #[default]
    #[value(name = "ed25519")]
    Ed25519,
    /// ECDSA P-256, daprd 1.12 to 1.17.
    #[value(name = "p256")]
    P256,
}

impl From<CsrKeyType> for KeyAlgorithm {
    fn from(value: CsrKeyType) -> Self {
        match value {
            CsrKeyType::Ed25519 => Self::Ed25519,
            CsrKeyType::P256 => Self::P256,
        }
    }
}

/// `warden identity fetch`: daprd's inputs (spec §8) as flags.
#[derive(Clone, Debug, clap::Args)]
pub struct FetchArgs {
    /// Address of the CA, host:port.
    #[arg(long, default_value = "localhost:50001")]
    pub sentry_address: String,
    /// PEM file of the trust anchors that must issue the CA's serving certificate (daprd:
    /// DAPR_TRUST_ANCHORS).
    #[arg(long, value_name = "FILE")]
    pub trust_anchors: PathBuf,
    /// App id to request (`id` of the request).
    #[arg(long)]
    pub app_id: String,
    /// Namespace to request.
    #[arg(long, env = "NAMESPACE", default_value = "default")]
    pub namespace: String,
    /// Trust domain to request; empty lets the server decide (Sentry: `public`).
    #[arg(long, default_value = "")]
    pub trust_domain: String,
    /// Read the token from FILE before every request and ask for the JWKS validator, as daprd
    /// does with DAPR_SENTRY_TOKEN_FILE; without it the token is empty and the server picks the
    /// validator.
    #[arg(long, value_name = "FILE", env = "DAPR_SENTRY_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Trust domain of the CA's own SPIFFE ID (spiffe://TD/ns/NS/dapr-sentry, where NS is
    /// --control-plane-namespace).
    #[arg(
        long,
        env = "DAPR_CONTROLPLANE_TRUST_DOMAIN",
        default_value = "localhost"
    )]
    pub control_plane_trust_domain: String,
    /// Namespace of the CA's own SPIFFE ID.
    #[arg(long, env = "DAPR_CONTROLPLANE_NAMESPACE", default_value = "default")]
    pub control_plane_namespace: String,
    /// Key type of the CSR.
    #[arg(long, value_enum, default_value_t = CsrKeyType::Ed25519)]
    pub key_type: CsrKeyType,
    /// Directory for key.pem (0600), cert.pem and ca.pem; created 0700 when missing.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Keep running and renew at half the certificate's lifetime (retrying every 10 s on
    /// error) until SIGINT or SIGTERM.
    #[arg(long)]
    pub renew: bool,
}

/// Runs `warden identity fetch`: fetches an identity (daprd's retries: 5 tries of 3 s for
/// transient errors), writes it to `--out` and, with `--renew`, keeps it fresh until SIGINT or
/// SIGTERM. A failure of the first fetch is returned; later ones are logged and retried.
pub async fn run_fetch(args: FetchArgs) -> Result<(), IdentityError> {
    if !args.renew {
        run(&args, std::future::pending()).await?;
        return Ok(());
    }
    let mut shutdown = Shutdown::install()?;
    run(&args, async move { shutdown.recv().await }).await?;
    Ok(())
}

/// Why `warden identity fetch` could not get or write an identity.
///
/// Like an `anyhow` context, a variant that wraps a cause says only what was being done: the
/// cause is its [`source`](std::error::Error::source), which the CLI prints after it (and
/// `chain_text` for the log lines).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// `--trust-anchors` could not be read.
    #[error("cannot read trust anchors {}", path.display())]
    ReadTrustAnchors {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// `--trust-anchors` does not hold certificates.
    #[error("trust anchors {}", path.display())]
    TrustAnchors {
        /// The file.
        path: PathBuf,
        /// What is wrong in it.
        #[source]
        source: CertificatesError,
    },
    /// `--control-plane-trust-domain` is not a trust domain.
    #[error("invalid --control-plane-trust-domain {value:?}")]
    ControlPlaneTrustDomain {
        /// The value given.
        value: String,
        /// Why it is not one.
        #[source]
        source: SpiffeIdError,
    },
    /// `--control-plane-namespace` does not make Sentry's SPIFFE ID.
    #[error("invalid --control-plane-namespace {value:?}")]
    ControlPlaneNamespace {
        /// The value given.
        value: String,
        /// Why it is not valid.
        #[source]
        source: SpiffeIdError,
    },
    /// The TLS configuration towards the CA could not be built.
    #[error(transparent)]
    ClientConfig(#[from] ClientConfigError),
    /// `--token-file` could not be read.
    #[error("cannot read token file {}", path.display())]
    ReadToken {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Connecting to the CA failed.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The `SignCertificate` call or its response failed.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// The last try failed, or one that daprd does not retry.
    #[error("failed to get a workload certificate from sentry")]
    NoCertificate(#[source] Box<IdentityError>),
    /// Writing the identity files failed.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// A signal handler could not be installed.
    #[error("cannot handle {signal}")]
    Signal {
        /// `SIGINT` or `SIGTERM`.
        signal: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// An error and each of its causes, joined by `": "` (what `anyhow`'s `{:#}` prints).
fn chain_text(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        text.push_str(": ");
        text.push_str(&next.to_string());
        cause = next.source();
    }
    text
}

/// SIGINT or SIGTERM, with the handlers installed up front so neither kills the process
/// mid-write.
struct Shutdown {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Shutdown {
    fn install() -> Result<Self, IdentityError> {
        use tokio::signal::unix::{SignalKind, signal};
        let handle = |kind, name| {
            signal(kind).map_err(|source| IdentityError::Signal {
                signal: name,
                source,
            })
        };
        Ok(Self {
            interrupt: handle(SignalKind::interrupt(), "SIGINT")?,
            terminate: handle(SignalKind::terminate(), "SIGTERM")?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}

/// Fetches, writes and (with `--renew`) renews until `shutdown` completes; returns how many
/// identities were written.
async fn run(args: &FetchArgs, shutdown: impl Future<Output = ()>) -> Result<u64, IdentityError> {
    let fetcher = Fetcher::new(args)?;
    let mut shutdown = std::pin::pin!(shutdown);
    let mut current = tokio::select! {
        () = &mut shutdown => return Ok(0),
        identity = fetcher.fetch_with_retries() => identity?,
    };
    write_identity(&args.out, &current)?;
    log_written(&current, &args.out);
    let mut written = 1;
    if !args.renew {
        return Ok(written);
    }
    loop {
        let due = current.renewal_time();
        let wait = crate::util::clock::now().until(due).min(MAX_SLEEP);
        tokio::select! {
            () = &mut shutdown => break,
            () = tokio::time::sleep(wait) => {}
        }
        if crate::util::clock::now() < due {
            continue;
        }
        tracing::info!(target: SCOPE_SECURITY, "Renewing workload identity; cert expires on: {}", current.validity.not_after);
        let renewed = tokio::select! {
            () = &mut shutdown => break,
            identity = fetcher.fetch_with_retries() => identity,
        };
        match renewed.and_then(|identity| {
            write_identity(&args.out, &identity)?;
            Ok(identity)
        }) {
            Ok(identity) => {
                current = identity;
                written += 1;
                log_written(&current, &args.out);
            }
            Err(e) => {
                tracing::error!(target: SCOPE_SECURITY, "Failed to renew workload identity, retrying in {}s: {}", RENEW_RETRY.as_secs(), chain_text(&e));
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(RENEW_RETRY) => {}
                }
            }
        }
    }
    tracing::info!(target: SCOPE_SECURITY, "Stopped renewing workload identity");
    Ok(written)
}

fn log_written(identity: &Identity, out: &Path) {
    tracing::info!(
        target: SCOPE_SECURITY,
        "Successfully renewed workload identity; cert expires on: {}, renewal at: {}",
        identity.validity.not_after,
        identity.renewal_time()
    );
    tracing::info!(
        target: SCOPE_SECURITY,
        "Wrote {KEY_FILE}, {CERT_FILE} and {CA_FILE} for {} to {}",
        identity.spiffe_id,
        out.display()
    );
}

/// Writes `ca.pem`, `key.pem`, then `cert.pem` (each atomically, mode 0600) into `dir`,
/// creating it with mode 0700 when missing. `cert.pem` goes last, so a reader that reloads on
/// its change sees the matching key and anchors.
///
/// # Errors
///
/// `WriteError` naming the directory or file that could not be written.
pub fn write_identity(dir: &Path, identity: &Identity) -> Result<(), WriteError> {
    create_private_dir(dir)?;
    let (ca, key, cert) = (dir.join(CA_FILE), dir.join(KEY_FILE), dir.join(CERT_FILE));
    write_files_atomically(&[
        (&ca, identity.trust_anchors_pem.as_bytes()),
        (&key, identity.private_key_pem.as_bytes()),
        (&cert, identity.certificate_chain_pem.as_bytes()),
    ])?;
    Ok(())
}

/// Everything needed for one fetch, prepared once from the flags.
struct Fetcher {
    address: String,
    tls: Arc<rustls::ClientConfig>,
    params: RequestParams,
    token_file: Option<PathBuf>,
    key_algorithm: KeyAlgorithm,
}

/// A failed try, and whether daprd's policy tries again.
struct Attempt {
    error: IdentityError,
    retryable: bool,
}

impl Fetcher {
    fn new(args: &FetchArgs) -> Result<Self, IdentityError> {
        let path = &args.trust_anchors;
        let anchors_pem =
            std::fs::read(path).map_err(|source| IdentityError::ReadTrustAnchors {
                path: path.clone(),
                source,
            })?;
        let anchors =
            parse_certificates(&anchors_pem).map_err(|source| IdentityError::TrustAnchors {
                path: path.clone(),
                source,
            })?;
        let td = TrustDomain::new(&args.control_plane_trust_domain).map_err(|source| {
            IdentityError::ControlPlaneTrustDomain {
                value: args.control_plane_trust_domain.clone(),
                source,
            }
        })?;
        let server_id = SpiffeId::sentry(&td, &args.control_plane_namespace).map_err(|source| {
            IdentityError::ControlPlaneNamespace {
                value: args.control_plane_namespace.clone(),
                source,
            }
        })?;
        let tls = spiffe_client_config(anchors, server_id)?;
        let mut params = RequestParams::insecure(&args.app_id, &args.namespace);
        params.trust_domain.clone_from(&args.trust_domain);
        Ok(Self {
            address: args.sentry_address.clone(),
            tls: Arc::new(tls),
            params,
            token_file: args.token_file.clone(),
            key_algorithm: args.key_type.into(),
        })
    }

    /// The request parameters with the token read now (a projected token rotates).
    fn params(&self) -> Result<RequestParams, IdentityError> {
        let mut params = self.params.clone();
        if let Some(path) = &self.token_file {
            let token = Zeroizing::new(std::fs::read_to_string(path).map_err(|source| {
                IdentityError::ReadToken {
                    path: path.clone(),
                    source,
                }
            })?);
            // A JWT has no whitespace; a trailing newline from `echo` would only break it.
            params.token = Zeroizing::new(token.trim().to_owned());
            params.token_validator = TokenValidator::Jwks;
        }
        Ok(params)
    }

    async fn try_fetch(&self) -> Result<Identity, Attempt> {
        let params = self.params().map_err(|error| Attempt {
            error,
            retryable: false,
        })?;
        let mut client = connect(&self.address, Arc::clone(&self.tls))
            .await
            .map_err(|e| Attempt {
                retryable: e.is_retryable(),
                error: e.into(),
            })?;
        let result = tokio::time::timeout(
            PER_TRY_TIMEOUT,
            fetch_once(&mut client, &params, self.key_algorithm),
        )
        .await
        .unwrap_or(Err(FetchError::Timeout(PER_TRY_TIMEOUT)));
        result.map_err(|e| Attempt {
            retryable: e.is_retryable(),
            error: e.into(),
        })
    }

    async fn fetch_with_retries(&self) -> Result<Identity, IdentityError> {
        let mut tries = 1;
        loop {
            match self.try_fetch().await {
                Ok(identity) => return Ok(identity),
                Err(attempt) if attempt.retryable && tries < MAX_TRIES => {
                    tracing::warn!(target: SCOPE_SECURITY, "Requesting a workload certificate failed (try {tries} of {MAX_TRIES}): {}", chain_text(&attempt.error));
                    tries += 1;
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Err(attempt) => {
                    return Err(IdentityError::NoCertificate(Box::new(attempt.error)));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use arc_swap::ArcSwap;
    use der::Decode as _;
    use der::referenced::OwnedToRef as _;
    use tokio::net::TcpListener;
    use tokio_rustls::TlsAcceptor;
    use tokio_stream::wrappers::ReceiverStream;
    use warden_core::bundle::{certificate_ders, read_certificates};
    use warden_core::crypto::SoftwareKey;
    use warden_core::profile::Validity;

    use super::test_support::{SKEW, TestCa};
    use super::*;
    use crate::ca::service::{CaService, CaState, IssuancePolicy};
    use crate::credentials::serving_cert::ServingCert;
    use crate::observability::Metrics;
    use crate::tokens::Validators;
    use crate::util::clock::now;

    /// An in-process CA serving over TLS on 127.0.0.1 as `spiffe://localhost/ns/default/dapr-sentry`,
    /// issuing leaves for `ttl` with `skew` backdating. The serving certificate lives an hour.
    struct Loopback {
        address: String,
        anchors_pem: String,
        sentry_id: SpiffeId,
    }

    async fn loopback(ttl: Duration, skew: Duration) -> Loopback {
        let ca = TestCa::new("localhost");
        let sentry_id = ca.sentry_id();
        let anchors_pem = ca.bundle.trust_anchors_pem().to_owned();
        let serving_policy = IssuancePolicy {
            ttl: Duration::from_secs(3600),
            clock_skew: SKEW,
        };
        let serving =
            Arc::new(ServingCert::new(&ca.bundle, &sentry_id, serving_policy, now()).unwrap());
        let state = Arc::new(CaState {
            bundle: ArcSwap::from_pointee(ca.bundle),
            policy: IssuancePolicy {
                ttl,
                clock_skew: skew,
            },
            validators: Validators::insecure_default(),
            namespace: "default".into(),
            trust_domain: TrustDomain::new("localhost").unwrap(),
            metrics: Metrics::new(),
            audit: None,
            jwt: None,
        });
        let acceptor = TlsAcceptor::from(Arc::new(
            crate::credentials::serving_cert::server_config(serving).unwrap(),
        ));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        let _ = tx.send(Ok::<_, std::io::Error>(tls)).await;
                    }
                });
            }
        });
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(CaService::new(state).into_server())
                .serve_with_incoming(ReceiverStream::new(rx)),
        );
        Loopback {
            address,
            anchors_pem,
            sentry_id,
        }
    }

    impl Loopback {
        fn config(&self, expected: SpiffeId) -> Arc<rustls::ClientConfig> {
            let anchors = parse_certificates(self.anchors_pem.as_bytes()).unwrap();
            Arc::new(spiffe_client_config(anchors, expected).unwrap())
        }

        fn args(&self, dir: &Path) -> FetchArgs {
            let anchors = dir.join("anchors.pem");
            std::fs::write(&anchors, &self.anchors_pem).unwrap();
            FetchArgs {
                sentry_address: self.address.clone(),
                trust_anchors: anchors,
                app_id: "myapp".into(),
                namespace: "default".into(),
                trust_domain: String::new(),
                token_file: None,
                control_plane_trust_domain: "localhost".into(),
                control_plane_namespace: "default".into(),
                key_type: CsrKeyType::Ed25519,
                out: dir.join("out/svid"),
                renew: false,
            }
        }
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[tokio::test]
    async fn fetch_once_gets_a_verified_identity_for_each_key_type() {
        let server = loopback(Duration::from_secs(3600), SKEW).await;
        let mut client = connect(&server.address, server.config(server.sentry_id.clone()))
            .await
            .unwrap();
        for key_type in [CsrKeyType::Ed25519, CsrKeyType::P256] {
            let params = RequestParams::insecure("myapp", "prod");
            let identity = fetch_once(&mut client, &params, key_type.into())
                .await
                .unwrap();
            assert_eq!(
                identity.spiffe_id.to_string(),
                "spiffe://public/ns/prod/myapp"
            );
            assert_eq!(
                identity
                    .validity
                    .not_before
                    .until(identity.validity.not_after),
                Duration::from_secs(3600) + SKEW
            );
            assert_eq!(identity.trust_anchors_pem, server.anchors_pem);
            let key = SoftwareKey::from_pem(identity.private_key_pem.as_bytes()).unwrap();
            assert_eq!(KeyAlgorithm::from(key_type), key.algorithm());
            // PKCS#8 v1 without the public key, as Go writes it (OpenSSL 3.0 reads no v2).
            let (label, der) =
                pem_rfc7468::decode_vec(identity.private_key_pem.as_bytes()).unwrap();
            assert_eq!(label, "PRIVATE KEY");
            let info = pkcs8::PrivateKeyInfoRef::from_der(&der).unwrap();
            assert_eq!(info.version(), pkcs8::Version::V1, "{key_type:?}");
            let chain = parse_certificates(identity.certificate_chain_pem.as_bytes()).unwrap();
            assert_eq!(chain.len(), 2, "leaf + issuer");
        }
        // The server's errors come back as they are.
        let err = fetch_once(
            &mut client,
            &RequestParams::insecure("a.b", "default"),
            KeyAlgorithm::Ed25519,
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&err, FetchError::Rpc(s) if s.code() == tonic::Code::PermissionDenied),
            "{err}"
        );
        assert!(!err.is_retryable());
        assert!(err.to_string().contains("cannot contain dots"), "{err}");
    }

    #[tokio::test]
    async fn connect_refuses_a_server_with_another_spiffe_id() {
        let server = loopback(Duration::from_secs(3600), SKEW).await;
        let td = TrustDomain::new("localhost").unwrap();
        let expected = SpiffeId::sentry(&td, "dapr-system").unwrap();
        let err = connect(&server.address, server.config(expected))
            .await
            .unwrap_err();
        assert!(!err.is_retryable(), "{err}");
        assert!(
            err.to_string().contains(
                "server SPIFFE ID spiffe://localhost/ns/default/dapr-sentry is not the expected spiffe://localhost/ns/dapr-system/dapr-sentry"
            ),
            "{err}"
        );
    }

    #[tokio::test]
    async fn run_fetch_writes_private_files_and_fails_without_writing() {
        let server = loopback(Duration::from_secs(3600), SKEW).await;
        let dir = tempfile::tempdir().unwrap();
        let args = server.args(dir.path());
        run_fetch(args.clone()).await.unwrap();
        let out = &args.out;
        assert_eq!(mode(out), 0o700);
        for file in [KEY_FILE, CERT_FILE, CA_FILE] {
            assert_eq!(mode(&out.join(file)), 0o600, "{file}");
        }
        let chain_der = certificate_ders(&std::fs::read(out.join(CERT_FILE)).unwrap()).unwrap();
        let chain = read_certificates(&chain_der).unwrap();
        let anchors_der = certificate_ders(&std::fs::read(out.join(CA_FILE)).unwrap()).unwrap();
        let anchors = read_certificates(&anchors_der).unwrap();
        let id = warden_core::chain::verify_svid(
            &chain,
            &anchors,
            now(),
            &crate::native::NativeVerifier,
        )
        .unwrap();
        assert_eq!(id.to_string(), "spiffe://public/ns/default/myapp");
        let key = SoftwareKey::from_pem(&std::fs::read(out.join(KEY_FILE)).unwrap()).unwrap();
        assert_eq!(
            chain[0].public_key(),
            warden_core::crypto::CaSigner::public_key(&key).owned_to_ref()
        );

        // The wrong control-plane namespace: refused at once, nothing written.
        let mut wrong = server.args(dir.path());
        wrong.out = dir.path().join("wrong");
        wrong.control_plane_namespace = "dapr-system".into();
        let err = run_fetch(wrong.clone()).await.unwrap_err();
        assert!(
            chain_text(&err).contains("is not the expected"),
            "{}",
            chain_text(&err)
        );
        assert!(!wrong.out.exists());

        // A token file switches to the JWKS validator, which this server has not enabled.
        let mut jwks = server.args(dir.path());
        let token = dir.path().join("token");
        std::fs::write(&token, "header.payload.sig\n").unwrap();
        jwks.token_file = Some(token);
        jwks.out = dir.path().join("jwks");
        let err = run_fetch(jwks).await.unwrap_err();
        assert!(
            chain_text(&err).contains("the requested validator is not enabled"),
            "{}",
            chain_text(&err)
        );
    }

    #[tokio::test]
    async fn renew_mode_renews_at_half_life_and_stops_on_shutdown() {
        // 2 s leaves without backdating: renewal every second.
        let server = loopback(Duration::from_secs(2), Duration::ZERO).await;
        let dir = tempfile::tempdir().unwrap();
        let mut args = server.args(dir.path());
        args.renew = true;
        let written = run(&args, tokio::time::sleep(Duration::from_millis(2600)))
            .await
            .unwrap();
        assert!(written >= 2, "only {written} identities written");
        let chain = parse_certificates(&std::fs::read(args.out.join(CERT_FILE)).unwrap()).unwrap();
        let validity = Validity::of(&chain[0]);
        assert_eq!(
            validity.not_before.until(validity.not_after),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn flags_have_daprd_defaults() {
        use clap::Parser as _;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            fetch: FetchArgs,
        }
        let cli = Cli::try_parse_from([
            "x",
            "--trust-anchors",
            "ca.pem",
            "--app-id",
            "app",
            "--out",
            "dir",
        ])
        .unwrap();
        let a = cli.fetch;
        assert_eq!(a.sentry_address, "localhost:50001");
        assert_eq!(a.trust_domain, "");
        assert_eq!(a.key_type, CsrKeyType::Ed25519);
        assert!(!a.renew);
        // Environment-backed defaults, unless the environment sets them.
        if std::env::var_os("NAMESPACE").is_none() {
            assert_eq!(a.namespace, "default");
        }
        if std::env::var_os("DAPR_CONTROLPLANE_TRUST_DOMAIN").is_none() {
            assert_eq!(a.control_plane_trust_domain, "localhost");
        }
        if std::env::var_os("DAPR_CONTROLPLANE_NAMESPACE").is_none() {
            assert_eq!(a.control_plane_namespace, "default");
        }
        let cli = Cli::try_parse_from([
            "x",
            "--trust-anchors",
            "a",
            "--app-id",
            "b",
            "--out",
            "c",
            "--key-type",
            "p256",
            "--renew",
        ])
        .unwrap();
        assert_eq!(cli.fetch.key_type, CsrKeyType::P256);
        assert!(cli.fetch.renew);
        assert!(Cli::try_parse_from(["x", "--app-id", "b", "--out", "c"]).is_err());
    }
}

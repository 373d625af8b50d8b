//! `dapr.proto.sentry.v1.CA/SignCertificate`: Sentry's checks, in Sentry's order, with its
//! gRPC codes and messages (spec §2), over core's issuance.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use futures_util::FutureExt as _;
use tonic::{Request, Response, Status};
use warden_core::bundle::{CaBundle, IssuedSvid, WorkloadRequest};
use warden_core::csr::{self, VerifiedCsr};
use warden_core::sentry::{self, Refusal, SignRequest};
use warden_core::spiffe::{SpiffeId, TrustDomain};

use crate::ca::audit::{AuditEntry, AuditLog};
use crate::native::NativeVerifier;
use crate::observability::{Metrics, SCOPE_SERVER};
use crate::proto::sign_certificate_request::TokenValidator;
use crate::proto::{SignCertificateRequest, SignCertificateResponse, ca_server};
use crate::tokens::Validators;
use crate::tokens::jwks::VerifyError;
use crate::util::clock::now;

/// The largest gRPC message accepted: room for a CSR at core's limit plus the other fields.
/// Anything bigger is refused by the transport before it is buffered whole.
pub(crate) const MAX_REQUEST_BYTES: usize = csr::MAX_CSR_LEN + 16 * 1024;

/// How workload certificates are shaped (`spec.mtls` of the configuration).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IssuancePolicy {
    /// `workloadCertTTL`.
    pub ttl: Duration,
    /// `allowedClockSkew`.
    pub clock_skew: Duration,
}

/// Everything a request needs; shared by all connections.
#[derive(Debug)]
pub(crate) struct CaState {
    /// The live credentials; replaced whole on reload, so a request in flight keeps the
    /// bundle it started with.
    pub bundle: ArcSwap<CaBundle>,
    /// TTL and skew.
    pub policy: IssuancePolicy,
    /// Enabled validators.
    pub validators: Validators,
    /// Sentry's own namespace (env `NAMESPACE`): requests from it get control-plane DNS SANs.
    pub namespace: String,
    /// Sentry's trust domain (`--trust-domain`), the fallback cluster domain for the
    /// scheduler's DNS names.
    pub trust_domain: TrustDomain,
    /// Counters.
    pub metrics: Metrics,
    /// `--audit-log`: one line per request, written before the answer.
    pub audit: Option<AuditLog>,
    /// `--jwt-enabled`: the JWT-SVID issuer.
    pub jwt: Option<Arc<crate::tokens::jwt::JwtIssuer>>,
}

/// The gRPC service.
#[derive(Clone, Debug)]
pub(crate) struct CaService {
    state: Arc<CaState>,
}

impl CaService {
    /// A service over shared state.
    pub(crate) fn new(state: Arc<CaState>) -> Self {
        Self { state }
    }

    /// The tonic server with Sentry's message size limit applied.
    pub(crate) fn into_server(self) -> ca_server::CaServer<Self> {
        ca_server::CaServer::new(self)
            .max_decoding_message_size(MAX_REQUEST_BYTES)
            .max_encoding_message_size(1024 * 1024)
    }
}

#[tonic::async_trait]
impl ca_server::Ca for CaService {
    async fn sign_certificate(
        &self,
        request: Request<SignCertificateRequest>,
    ) -> Result<Response<SignCertificateResponse>, Status> {
        let state = Arc::clone(&self.state);
        state.metrics.sign_request_received();
        let peer = request.remote_addr();
        let req = request.into_inner();
        check_audit_log(&state)?;
        let result = sign_catching_panics(&state, &req).await;
        audit(&state, &req, peer, &result)?;
        result.map(|(response, _)| Response::new(response))
    }
}

/// While the audit log cannot be written nothing is issued: do not even do the work (the audit
/// log logs the error and counts it; the `resumed` line counts the refusals).
fn check_audit_log(state: &CaState) -> Result<(), Status> {
    match &state.audit {
        Some(audit) if audit.ensure_writable().is_err() => Err(audit_unavailable()),
        _ => Ok(()),
    }
}

/// [`sign`]; a bug in the handler must cost one request, never the server or the connection.
async fn sign_catching_panics(state: &CaState, req: &SignCertificateRequest) -> SignResult {
    match AssertUnwindSafe(sign(state, req)).catch_unwind().await {
        Ok(result) => result,
        Err(_) => {
            tracing::error!(target: SCOPE_SERVER, "Request handler panicked; request failed");
            state.metrics.sign_failure("sign");
            Err(Status::internal("failed to sign certificate"))
        }
    }
}

/// Writes the request's audit line. No certificate leaves without its audit line: when it
/// cannot be written (record logged why), the answer is [`audit_unavailable`].
fn audit(
    state: &CaState,
    req: &SignCertificateRequest,
    peer: Option<std::net::SocketAddr>,
    result: &SignResult,
) -> Result<(), Status> {
    let Some(audit) = &state.audit else {
        return Ok(());
    };
    // The validator actually used (the server default for UNKNOWN), or the raw request.
    let validator = state.validators.select(req.token_validator).ok();
    let entry = audit_entry(req, validator, peer, result);
    if audit.record(entry).is_err() {
        if result.is_ok() {
            state.metrics.sign_failure("sign");
        }
        return Err(audit_unavailable());
    }
    Ok(())
}

/// The answer while the audit log cannot be written. Unavailable, not Internal: the fault is
/// transient and outside the request (typically a full disk), and daprd and gRPC clients retry
/// Unavailable with backoff, so workloads get their certificate once space is freed. The
/// message names the cause but not the path or the OS error, which are in the server log.
fn audit_unavailable() -> Status {
    Status::unavailable("the audit log cannot be written; certificate not issued, try again later")
}

/// The answer to one request, with what the audit line records of an issued certificate.
type SignResult = Result<(SignCertificateResponse, Option<IssuedFacts>), Status>;

/// What the audit log needs to know about an issued certificate.
#[derive(Debug)]
struct IssuedFacts {
    spiffe_id: String,
    serial: String,
    not_after: String,
    issuer_skid: String,
}

fn audit_entry(
    req: &SignCertificateRequest,
    validator: Option<TokenValidator>,
    peer: Option<std::net::SocketAddr>,
    result: &SignResult,
) -> AuditEntry {
    let validator = validator
        .or_else(|| TokenValidator::try_from(req.token_validator).ok())
        .map(|v| v.as_str_name().to_ascii_lowercase())
        .unwrap_or_else(|| req.token_validator.to_string());
    let mut entry = AuditEntry {
        time: now().to_string(),
        app_id: req.id.clone(),
        namespace: req.namespace.clone(),
        trust_domain: req.trust_domain.clone(),
        validator,
        peer: peer.map(|p| p.to_string()).unwrap_or_default(),
        ..AuditEntry::default()
    };
    match result {
        Ok((_, facts)) => {
            entry.outcome = "issued".into();
            if let Some(facts) = facts {
                entry.spiffe_id.clone_from(&facts.spiffe_id);
                entry.serial.clone_from(&facts.serial);
                entry.not_after.clone_from(&facts.not_after);
                entry.issuer_skid.clone_from(&facts.issuer_skid);
            }
        }
        Err(status) => {
            entry.outcome = "refused".into();
            entry.code = format!("{:?}", status.code());
            entry.message = status.message().to_owned();
        }
    }
    entry
}

/// The issuer's SubjectKeyIdentifier as written in its certificate (what leaves carry as
/// AKID), or empty when it has none.
fn subject_key_id(cert: &x509_cert::Certificate) -> Vec<u8> {
    use der::Decode as _;
    cert.tbs_certificate()
        .extensions()
        .into_iter()
        .flatten()
        .find(|ext| ext.extn_id == const_oid::db::rfc5280::ID_CE_SUBJECT_KEY_IDENTIFIER)
        .and_then(|ext| {
            x509_cert::ext::pkix::SubjectKeyIdentifier::from_der(ext.extn_value.as_bytes()).ok()
        })
        .map(|skid| skid.0.as_bytes().to_vec())
        .unwrap_or_default()
}

/// One SignCertificate request, in Sentry's order: check the request and its token, verify the
/// CSR, issue the certificate (and the JWT-SVIDs), then answer. The audit line is written by
/// the caller from the result.
async fn sign(state: &CaState, req: &SignCertificateRequest) -> SignResult {
    check_audiences(state, req)?;
    let trust_domain = check_token(state, req).await?;
    let verified = verify_csr(req)?;
    let bundle = state.bundle.load_full();
    let (spiffe_id, issued) = issue(state, req, &trust_domain, &bundle, &verified.public_key)?;
    let valid_until = i64::try_from(issued.validity.not_after.as_secs())
        .map_err(|_| sign_failed(state, "NotAfter out of range"))?;
    let (jwt, per_audience_jwts) = mint_jwts(state, req, &spiffe_id, &trust_domain).await?;
    state.metrics.sign_success();
    tracing::debug!(target: SCOPE_SERVER, "Signed certificate for {spiffe_id}, valid until {}", issued.validity.not_after);
    let facts = issued_facts(state, &spiffe_id, &issued, &bundle);
    let response = SignCertificateResponse {
        workload_certificate: issued.chain_pem.into_bytes(),
        trust_chain_certificates: vec![bundle.trust_anchors_pem().as_bytes().to_vec()],
        valid_until: Some(prost_types::Timestamp {
            seconds: valid_until,
            nanos: 0,
        }),
        jwt,
        per_audience_jwts,
    };
    Ok((response, facts))
}

/// Every audience costs a signature: refuse a hostile list before any other work.
fn check_audiences(state: &CaState, req: &SignCertificateRequest) -> Result<(), Status> {
    if state.jwt.is_some() {
        crate::tokens::jwt::check_audiences(&req.jwt_audiences).map_err(|message| {
            tracing::warn!(target: SCOPE_SERVER, "Refused request for app {}: {message}", req.id);
            Status::invalid_argument(message)
        })?;
    }
    Ok(())
}

/// Chooses the validator the request names (or the default) and runs its checks; the trust
/// domain the certificate is issued in.
async fn check_token(state: &CaState, req: &SignCertificateRequest) -> Result<TrustDomain, Status> {
    let validator = state.validators.select(req.token_validator)?;
    validate(&state.validators, validator, req)
        .await
        .map_err(|message| {
            tracing::warn!(target: SCOPE_SERVER, "Failed to validate request: {message}");
            Status::permission_denied(message)
        })
}

/// Core's CSR checks (parse, signature, key type), with Sentry's refusals.
fn verify_csr(req: &SignCertificateRequest) -> Result<VerifiedCsr, Status> {
    sentry::verify_csr(&req.certificate_signing_request, &NativeVerifier).map_err(
        |(refusal, error)| {
            if let Some(e) = error {
                tracing::warn!(target: SCOPE_SERVER, "Failed to verify CSR for app {}: {e}", req.id);
            }
            refusal_status(refusal)
        },
    )
}

/// A failure after the request was accepted: logged, counted, and Sentry's generic refusal.
fn sign_failed(state: &CaState, what: &str) -> Status {
    tracing::error!(target: SCOPE_SERVER, "Error signing identity certificate: {what}");
    state.metrics.sign_failure("sign");
    refusal_status(sentry::sign_failed())
}

/// Builds and signs the workload certificate with the issuer in use.
fn issue(
    state: &CaState,
    req: &SignCertificateRequest,
    trust_domain: &TrustDomain,
    bundle: &CaBundle,
    public_key: &spki::SubjectPublicKeyInfoOwned,
) -> Result<(SpiffeId, IssuedSvid), Status> {
    let dns_names = control_plane_dns_names(state, &req.id, &req.namespace);
    let spiffe_id = sentry::workload_id(trust_domain, &req.namespace, &req.id)
        .map_err(|(_, e)| sign_failed(state, &e.to_string()))?;
    let issued = bundle
        .issue_workload(
            &WorkloadRequest {
                public_key,
                spiffe_id: &spiffe_id,
                dns_names: &dns_names,
                ttl: state.policy.ttl,
                clock_skew: state.policy.clock_skew,
            },
            now(),
            &mut crate::util::clock::rng(),
        )
        .map_err(|e| sign_failed(state, &e.to_string()))?;
    Ok((spiffe_id, issued))
}

/// `--jwt-enabled`: the JWT-SVIDs the response carries (none otherwise).
async fn mint_jwts(
    state: &CaState,
    req: &SignCertificateRequest,
    spiffe_id: &SpiffeId,
    trust_domain: &TrustDomain,
) -> Result<crate::tokens::jwt::ResponseTokens, Status> {
    let Some(issuer) = &state.jwt else {
        return Ok((None, Default::default()));
    };
    crate::tokens::jwt::mint_for_response_off_workers(
        issuer,
        spiffe_id.to_string(),
        trust_domain.as_str().to_owned(),
        req.jwt_audiences.clone(),
        now().as_secs(),
        state.policy.clock_skew,
    )
    .await
    .map_err(|e| {
        tracing::error!(target: SCOPE_SERVER, "Error generating JWT: {e}");
        state.metrics.sign_failure("jwt");
        Status::internal(format!("failed to generate JWT: {e}"))
    })
}

/// What the audit line records of an issued certificate. Only the audit log reads these: do
/// not format them for every request without one.
fn issued_facts(
    state: &CaState,
    spiffe_id: &SpiffeId,
    issued: &IssuedSvid,
    bundle: &CaBundle,
) -> Option<IssuedFacts> {
    state.audit.is_some().then(|| IssuedFacts {
        spiffe_id: spiffe_id.to_string(),
        serial: base16ct::lower::encode_string(
            issued
                .certificate
                .tbs_certificate()
                .serial_number()
                .as_bytes(),
        ),
        not_after: issued.validity.not_after.to_string(),
        issuer_skid: base16ct::lower::encode_string(&subject_key_id(bundle.issuer())),
    })
}

/// The validator's checks. `insecure` has only the common rules. `jwks` (Sentry's
/// `validator/jwks`): a token is required, the key set must be loaded, then the common rules,
/// then the token against the requester's SPIFFE ID. `kubernetes` is never enabled here, so
/// `select` never returns it.
async fn validate(
    validators: &Validators,
    validator: TokenValidator,
    req: &SignCertificateRequest,
) -> Result<TrustDomain, String> {
    match (validator, &validators.jwks) {
        (TokenValidator::Insecure, _) => common_rules(req),
        (TokenValidator::Jwks, Some(jwks)) => {
            if req.token.is_empty() {
                return Err("the request does not contain a token".into());
            }
            if !jwks.is_ready() {
                return Err(VerifyError::NotReady.to_string());
            }
            let trust_domain = common_rules(req)?;
            let subject = SpiffeId::workload(&trust_domain, &req.namespace, &req.id)
                .map_err(|e| format!("failed to construct SPIFFE ID for requestor: {e}"))?;
            jwks.verify(&req.token, &subject.to_string())
                .await
                .map_err(|e| e.to_string())?;
            Ok(trust_domain)
        }
        (other, _) => Err(format!(
            "validator {} is not implemented",
            other.as_str_name().to_ascii_lowercase()
        )),
    }
}

/// Sentry's `validator/internal/common.go` (core's [`sentry::common_rules`]); the message only,
/// since every validator failure is `PermissionDenied`.
fn common_rules(req: &SignCertificateRequest) -> Result<TrustDomain, String> {
    sentry::common_rules(&SignRequest {
        app_id: &req.id,
        namespace: &req.namespace,
        trust_domain: &req.trust_domain,
        csr: &req.certificate_signing_request,
    })
    .map_err(|refusal| refusal.message)
}

/// The gRPC status of one of core's Sentry refusals.
fn refusal_status(refusal: Refusal) -> Status {
    Status::new(
        tonic::Code::from(i32::from(refusal.code.number())),
        refusal.message,
    )
}

/// Spec §2 step 4: webhook and scheduler DNS names for control-plane ids in Sentry's namespace.
/// Standalone mode has no cluster DNS to ask for the cluster domain, so it falls back to the
/// trust domain, as Sentry does when the lookup fails.
fn control_plane_dns_names(state: &CaState, id: &str, namespace: &str) -> Vec<String> {
    if namespace != state.namespace {
        return Vec::new();
    }
    match id {
        "dapr-injector" => vec![format!("dapr-sidecar-injector.{namespace}.svc")],
        "dapr-operator" => vec![format!("dapr-webhook.{namespace}.svc")],
        "dapr-scheduler" => (0..3)
            .map(|i| {
                format!(
                    "dapr-scheduler-server-{i}.dapr-scheduler-server.{namespace}.svc.{}",
                    state.trust_domain.as_str()
                )
            })
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(id: &str, namespace: &str, td: &str, csr: &[u8]) -> SignCertificateRequest {
        SignCertificateRequest {
            id: id.into(),
            namespace: namespace.into(),
            trust_domain: td.into(),
            certificate_signing_request: csr.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn validator_selection_follows_sentry() {
        let insecure = Validators::insecure_default();
        assert_eq!(insecure.select(0).unwrap(), TokenValidator::Insecure);
        assert_eq!(insecure.select(1).unwrap(), TokenValidator::Insecure);
        let err = insecure.select(3).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert_eq!(err.message(), "the requested validator is not enabled");
        assert_eq!(
            insecure.select(42).unwrap_err().message(),
            "the requested validator is not enabled"
        );
        let no_default = Validators {
            enabled: vec![TokenValidator::Jwks],
            default: None,
            jwks: None,
        };
        assert_eq!(
            no_default.select(0).unwrap_err().message(),
            "a validator name must be specified in this environment"
        );
    }

    /// A signer that panics, standing in for any bug below the handler.
    struct PanickingSigner(warden_core::crypto::SoftwareKey);

    impl warden_core::crypto::CaSigner for PanickingSigner {
        fn signature_algorithm(&self) -> spki::AlgorithmIdentifierOwned {
            self.0.signature_algorithm()
        }
        fn public_key(&self) -> spki::SubjectPublicKeyInfoOwned {
            self.0.public_key()
        }
        fn sign(&self, _: &[u8]) -> Result<Vec<u8>, warden_core::crypto::SignError> {
            panic!("signer bug")
        }
    }

    /// A CA service over a fresh self-signed CA whose issuer key `signer` wraps.
    fn test_service(
        signer: impl FnOnce(warden_core::crypto::SoftwareKey) -> Box<dyn warden_core::crypto::CaSigner>,
        jwt: Option<Arc<crate::tokens::jwt::JwtIssuer>>,
    ) -> CaService {
        let mut rng = crate::util::clock::rng();
        let td = TrustDomain::new("localhost").unwrap();
        let (_, files) = CaBundle::generate(
            &warden_core::bundle::CaParams {
                trust_domain: &td,
                namespace: "default",
                key_algorithm: warden_core::crypto::KeyAlgorithm::P256,
                lifetime: Duration::from_secs(3600),
                clock_skew: Duration::ZERO,
            },
            now(),
            &mut rng,
        )
        .unwrap();
        let bundle = CaBundle::from_parts(
            warden_core::bundle::parse_certificates(files.trust_anchors.as_bytes()).unwrap(),
            warden_core::bundle::parse_certificates(files.issuer_certificate.as_bytes()).unwrap(),
            signer(
                warden_core::crypto::SoftwareKey::from_pem(files.issuer_key.as_bytes()).unwrap(),
            ),
            now(),
            &NativeVerifier,
        )
        .unwrap();
        CaService::new(Arc::new(CaState {
            bundle: ArcSwap::from_pointee(bundle),
            policy: IssuancePolicy {
                ttl: Duration::from_secs(60),
                clock_skew: Duration::ZERO,
            },
            validators: Validators::insecure_default(),
            namespace: "default".into(),
            trust_domain: td,
            metrics: Metrics::new(),
            audit: None,
            jwt,
        }))
    }

    /// A daprd-shaped CSR (empty template) for a fresh P-256 key.
    fn p256_csr_pem() -> String {
        let key = warden_core::crypto::SoftwareKey::generate(
            warden_core::crypto::KeyAlgorithm::P256,
            &mut crate::util::clock::rng(),
        );
        csr::csr_to_pem(&csr::create_csr(&key, &csr::CsrTemplate::default()).unwrap()).unwrap()
    }

    #[tokio::test]
    async fn a_panicking_handler_fails_one_request_only() {
        use crate::proto::ca_server::Ca as _;
        let service = test_service(|key| Box::new(PanickingSigner(key)), None);
        let csr_pem = p256_csr_pem();
        for _ in 0..2 {
            let err = service
                .sign_certificate(Request::new(request("app", "ns", "", csr_pem.as_bytes())))
                .await
                .unwrap_err();
            assert_eq!(err.code(), tonic::Code::Internal);
            assert_eq!(err.message(), "failed to sign certificate");
        }
        let metrics = service.state.metrics.encode();
        assert!(
            metrics.contains("dapr_sentry_cert_sign_failure_total{reason=\"sign\"} 2"),
            "{metrics}"
        );
    }

    /// Defect 4: a request over the audience caps is refused with InvalidArgument naming the
    /// limit before a single signature (or the CSR check) is made; one at the caps costs one
    /// token plus one per audience, no more.
    #[tokio::test]
    async fn audience_lists_over_the_cap_are_refused_before_any_signing() {
        use crate::proto::ca_server::Ca as _;
        use crate::tokens::jwt::{JwtIssuer, JwtSettings, MAX_JWT_AUDIENCE_LEN, MAX_JWT_AUDIENCES};
        let dir = tempfile::tempdir().unwrap();
        let jwt = Arc::new(
            JwtIssuer::load_or_generate(
                JwtSettings {
                    key_path: dir.path().join("jwt.key"),
                    jwks_path: dir.path().join("jwks.json"),
                    issuer: None,
                    algorithm: crate::tokens::jwt::SigningAlgorithm::Rs256,
                    key_id: None,
                    ttl: Duration::from_secs(3600),
                },
                now().as_secs(),
            )
            .unwrap(),
        );
        let service = test_service(|key| Box::new(key), Some(Arc::clone(&jwt)));
        let csr_pem = p256_csr_pem();
        let with = |audiences: Vec<String>| SignCertificateRequest {
            jwt_audiences: audiences,
            ..request("app", "ns", "", csr_pem.as_bytes())
        };
        // The reported request: 1,500 audiences.
        let hostile: Vec<String> = (0..1500).map(|i| format!("aud-{i}")).collect();
        let err = service
            .sign_certificate(Request::new(with(hostile)))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert_eq!(
            err.message(),
            format!("too many jwt_audiences: 1500 given, at most {MAX_JWT_AUDIENCES} allowed")
        );
        let err = service
            .sign_certificate(Request::new(with(vec![
                "x".repeat(MAX_JWT_AUDIENCE_LEN + 1),
            ])))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(
            err.message().contains("at most 512 bytes"),
            "{}",
            err.message()
        );
        // Refused before anything else: even an empty CSR gets the audience error.
        let mut no_csr = with((0..=MAX_JWT_AUDIENCES).map(|i| i.to_string()).collect());
        no_csr.certificate_signing_request.clear();
        let err = service
            .sign_certificate(Request::new(no_csr))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert_eq!(jwt.signatures(), 0, "no token signed for a refused request");
        // At the caps: served, with exactly 1 + MAX_JWT_AUDIENCES signatures.
        let at_cap: Vec<String> = (0..MAX_JWT_AUDIENCES)
            .map(|i| {
                format!("{i:03}").repeat(MAX_JWT_AUDIENCE_LEN)[..MAX_JWT_AUDIENCE_LEN].to_owned()
            })
            .collect();
        let response = service
            .sign_certificate(Request::new(with(at_cap)))
            .await
            .unwrap()
            .into_inner();
        assert!(response.jwt.is_some());
        assert_eq!(response.per_audience_jwts.len(), MAX_JWT_AUDIENCES);
        assert_eq!(jwt.signatures(), 1 + MAX_JWT_AUDIENCES as u64);
    }

    #[test]
    fn common_rules_join_field_errors() {
        let err = common_rules(&request("", "", "", b"")).unwrap_err();
        assert_eq!(
            err,
            "invalid request: parameter app-id cannot be empty\nCSR is required\nnamespace is required"
        );
        let err = common_rules(&request("a.b", "ns", "", b"x")).unwrap_err();
        assert_eq!(err, "invalid request: parameter app-id cannot contain dots");
        let err = common_rules(&request("app", "ns", "Upper", b"x")).unwrap_err();
        assert_eq!(
            err,
            "trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores"
        );
        let td = common_rules(&request("app", "ns", "", b"x")).unwrap();
        assert_eq!(td.as_str(), "public");
    }
}

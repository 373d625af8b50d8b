//! One `SignCertificate` round trip as daprd makes it: a fresh key, an empty-template CSR, the
//! request, and daprd's response checks plus a full chain check.

use std::fmt;
use std::time::Duration;

use der::referenced::OwnedToRef as _;
use spki::SubjectPublicKeyInfoOwned;
use tonic::transport::Channel;
use warden_core::UnixTime;
use warden_core::bundle::{CertificatesError, certificate_ders, read_certificates};
use warden_core::certificate::CertificateRef;
use warden_core::chain::{SvidError, verify_svid};
use warden_core::crypto::{CaSigner as _, KeyAlgorithm, SignatureVerifier};
use warden_core::csr::{CsrTemplate, create_csr, csr_to_pem};
use warden_core::profile::Validity;
use warden_core::spiffe::{SpiffeId, TrustDomain};
use zeroize::Zeroizing;

use crate::native::{NativeKey, NativeVerifier};
use crate::proto::ca_client::CaClient;
use crate::proto::sign_certificate_request::TokenValidator;
use crate::proto::{SignCertificateRequest, SignCertificateResponse};

/// What a workload asks for; everything in a `SignCertificateRequest` except the CSR.
#[derive(Clone, PartialEq, Eq)]
pub struct RequestParams {
    /// The app id (request `id`).
    pub app_id: String,
    /// The namespace (daprd: env `NAMESPACE`).
    pub namespace: String,
    /// The requested trust domain; empty lets the server decide (Sentry: `public`).
    pub trust_domain: String,
    /// The token (daprd: the contents of `DAPR_SENTRY_TOKEN_FILE`); empty for none.
    pub token: Zeroizing<String>,
    /// Which validator the server should use; `Unknown` means the server's default.
    pub token_validator: TokenValidator,
}

impl fmt::Debug for RequestParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestParams")
            .field("app_id", &self.app_id)
            .field("namespace", &self.namespace)
            .field("trust_domain", &self.trust_domain)
            .field(
                "token",
                &if self.token.is_empty() {
                    "<none>"
                } else {
                    "<redacted>"
                },
            )
            .field("token_validator", &self.token_validator)
            .finish()
    }
}

impl RequestParams {
    /// A request without a token (validator chosen by the server), as daprd sends when it has
    /// no token file.
    pub fn insecure(app_id: &str, namespace: &str) -> Self {
        Self {
            app_id: app_id.to_owned(),
            namespace: namespace.to_owned(),
            trust_domain: String::new(),
            token: Zeroizing::new(String::new()),
            token_validator: TokenValidator::Unknown,
        }
    }

    /// The SPIFFE ID the server should issue: `spiffe://<td or public>/ns/<namespace>/<app id>`.
    pub fn expected_id(&self) -> Result<SpiffeId, String> {
        let td = TrustDomain::from_request(&self.trust_domain)
            .map_err(|e| format!("trust domain {:?}: {e}", self.trust_domain))?;
        SpiffeId::workload(&td, &self.namespace, &self.app_id).map_err(|e| {
            format!(
                "no SPIFFE ID for app id {:?} in namespace {:?}: {e}",
                self.app_id, self.namespace
            )
        })
    }

    /// The wire request carrying `csr_pem`.
    pub fn to_request(&self, csr_pem: &str) -> SignCertificateRequest {
        SignCertificateRequest {
            id: self.app_id.clone(),
            token: self.token.to_string(),
            trust_domain: self.trust_domain.clone(),
            namespace: self.namespace.clone(),
            certificate_signing_request: csr_pem.as_bytes().to_vec(),
            token_validator: self.token_validator as i32,
            jwt_audiences: Vec::new(),
        }
    }
}

/// A fetched, verified workload identity: what daprd keeps in memory and kit writes to
/// `key.pem`, `cert.pem` and `ca.pem`.
pub struct Identity {
    /// The leaf's SPIFFE ID.
    pub spiffe_id: SpiffeId,
    /// The private key, PKCS#8 `PRIVATE KEY` PEM.
    pub private_key_pem: Zeroizing<String>,
    /// `workload_certificate` as received: the leaf, then the issuer chain.
    pub certificate_chain_pem: String,
    /// The trust anchors from `trust_chain_certificates`, concatenated.
    pub trust_anchors_pem: String,
    /// The leaf's NotBefore and NotAfter.
    pub validity: Validity,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("spiffe_id", &self.spiffe_id)
            .field("validity", &self.validity)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// When to renew: half the leaf's lifetime after NotBefore, as daprd does (kit
    /// `renewalDivisor = 2`; the clock-skew backdating counts).
    pub fn renewal_time(&self) -> UnixTime {
        warden_core::schedule::renewal_time(self.validity)
    }
}

/// The parts of a response that passed [`check_response`].
#[derive(Clone, Debug)]
pub struct VerifiedResponse {
    /// The leaf's SPIFFE ID.
    pub spiffe_id: SpiffeId,
    /// `workload_certificate` as text.
    pub certificate_chain_pem: String,
    /// Every element of `trust_chain_certificates`, concatenated.
    pub trust_anchors_pem: String,
    /// The leaf's validity.
    pub validity: Validity,
}

/// Why a response was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResponseError {
    /// `valid_until` is missing or out of range (daprd: `CheckValid`).
    #[error("invalid valid_until: {0}")]
    ValidUntil(&'static str),
    /// `workload_certificate` is not PEM certificates.
    #[error("workload_certificate: {0}")]
    WorkloadCertificate(CertificatesError),
    /// The leaf's SAN extension does not decode.
    #[error("workload certificate SAN extension: {0}")]
    MalformedSan(der::Error),
    /// The leaf does not carry exactly one URI SAN (daprd's check).
    #[error("workload certificate must have exactly one URI SAN, found {0}")]
    UriSanCount(usize),
    /// `trust_chain_certificates` is empty or not PEM certificates.
    #[error("trust_chain_certificates: {0}")]
    TrustAnchors(CertificatesError),
    /// The chain does not verify to the returned anchors, or the leaf is not an X509-SVID.
    #[error("workload certificate does not verify to the returned trust anchors: {0}")]
    Untrusted(SvidError),
    /// The leaf is not for the requested identity.
    #[error("workload SPIFFE ID {presented} is not the expected {expected}")]
    WrongId {
        /// The ID in the leaf.
        presented: SpiffeId,
        /// `spiffe://<td or public>/ns/<namespace>/<app id>`.
        expected: SpiffeId,
    },
    /// The leaf certifies another key than the CSR's.
    #[error("workload certificate is not for the key in the CSR")]
    KeyMismatch,
}

/// Why [`fetch_once`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The key or CSR could not be made.
    #[error("cannot create the CSR: {0}")]
    Csr(String),
    /// The request parameters name no SPIFFE ID (the server refused them too, or would).
    #[error("{0}")]
    InvalidRequest(String),
    /// The server answered with an error.
    #[error("error from sentry SignCertificate: {code:?}: {message}", code = .0.code(), message = .0.message())]
    Rpc(tonic::Status),
    /// No answer within the per-try timeout.
    #[error("SignCertificate timed out after {0:?}")]
    Timeout(Duration),
    /// The answer does not hold a valid identity.
    #[error("invalid SignCertificate response: {0}")]
    Response(#[from] ResponseError),
}

impl FetchError {
    /// Whether daprd's retry policy tries again: gRPC `Unavailable` and `ResourceExhausted`
    /// (go-grpc-middleware's defaults) and a per-try timeout.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Rpc(status) => matches!(
                status.code(),
                tonic::Code::Unavailable | tonic::Code::ResourceExhausted
            ),
            Self::Timeout(_) => true,
            _ => false,
        }
    }
}

/// A fresh key and its CSR as daprd makes them: empty template (no subject, no SANs, no
/// attributes), PEM `CERTIFICATE REQUEST`.
///
/// The key is an aws-lc-rs [`NativeKey`]: it exports PKCS#8 v1 as Go does (core's
/// `SoftwareKey` writes Ed25519 keys as PKCS#8 v2, which OpenSSL 3.0 cannot read).
pub fn new_key_and_csr(algorithm: KeyAlgorithm) -> Result<(NativeKey, String), FetchError> {
    let key = NativeKey::generate(algorithm).map_err(|e| FetchError::Csr(e.to_string()))?;
    let der =
        create_csr(&key, &CsrTemplate::default()).map_err(|e| FetchError::Csr(e.to_string()))?;
    let pem = csr_to_pem(&der).map_err(|e| FetchError::Csr(e.to_string()))?;
    Ok((key, pem))
}

/// `timestamppb.CheckValid`: present, seconds within years 1–9999, nanos in `0..1e9`.
fn check_timestamp(ts: Option<&prost_types::Timestamp>) -> Result<(), ResponseError> {
    /// 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z in Unix seconds.
    const MIN_SECONDS: i64 = -62_135_596_800;
    const MAX_SECONDS: i64 = 253_402_300_799;
    let ts = ts.ok_or(ResponseError::ValidUntil("missing"))?;
    if !(MIN_SECONDS..=MAX_SECONDS).contains(&ts.seconds) {
        return Err(ResponseError::ValidUntil("seconds out of range"));
    }
    if !(0..1_000_000_000).contains(&ts.nanos) {
        return Err(ResponseError::ValidUntil("nanos out of range"));
    }
    Ok(())
}

fn uri_san_count(leaf: &CertificateRef<'_>) -> Result<usize, ResponseError> {
    let san = leaf.uri_names().map_err(ResponseError::MalformedSan)?;
    Ok(san.map_or(0, |(_, uris)| uris.len()))
}

/// Checks a response as daprd does (`valid_until` valid; `workload_certificate` PEM whose first
/// certificate has exactly one URI SAN), then more strictly: the chain verifies at `now` to the
/// returned trust anchors with the SPIFFE leaf rules, the leaf is `expected` and certifies
/// `public_key`.
pub fn check_response(
    response: &SignCertificateResponse,
    expected: &SpiffeId,
    public_key: &SubjectPublicKeyInfoOwned,
    now: UnixTime,
    verifier: &dyn SignatureVerifier,
) -> Result<VerifiedResponse, ResponseError> {
    check_timestamp(response.valid_until.as_ref())?;
    let chain_der = certificate_ders(&response.workload_certificate)
        .map_err(ResponseError::WorkloadCertificate)?;
    let chain = read_certificates(&chain_der).map_err(ResponseError::WorkloadCertificate)?;
    let leaf = chain.first().ok_or(ResponseError::WorkloadCertificate(
        CertificatesError::NoCertificates,
    ))?;
    match uri_san_count(leaf)? {
        1 => {}
        n => return Err(ResponseError::UriSanCount(n)),
    }
    let mut trust_anchors_pem = String::new();
    for block in &response.trust_chain_certificates {
        trust_anchors_pem.push_str(&String::from_utf8_lossy(block));
        if !trust_anchors_pem.is_empty() && !trust_anchors_pem.ends_with('\n') {
            trust_anchors_pem.push('\n');
        }
    }
    let anchors_der =
        certificate_ders(trust_anchors_pem.as_bytes()).map_err(ResponseError::TrustAnchors)?;
    let anchors = read_certificates(&anchors_der).map_err(ResponseError::TrustAnchors)?;
    let presented =
        verify_svid(&chain, &anchors, now, verifier).map_err(ResponseError::Untrusted)?;
    if presented != *expected {
        return Err(ResponseError::WrongId {
            presented,
            expected: expected.clone(),
        });
    }
    if leaf.public_key() != public_key.owned_to_ref() {
        return Err(ResponseError::KeyMismatch);
    }
    Ok(VerifiedResponse {
        spiffe_id: presented,
        // certificate_ders accepted it, so it is text.
        certificate_chain_pem: String::from_utf8_lossy(&response.workload_certificate).into_owned(),
        trust_anchors_pem,
        validity: leaf.validity(),
    })
}

/// One daprd-style fetch on `client`: a fresh `key_algorithm` key, an empty-template CSR, the
/// `SignCertificate` call for `params`, and [`check_response`] at the current time.
///
/// No timeout or retry is applied here; callers wrap it (daprd: 5 tries of 3 s).
pub async fn fetch_once(
    client: &mut CaClient<Channel>,
    params: &RequestParams,
    key_algorithm: KeyAlgorithm,
) -> Result<Identity, FetchError> {
    let (key, csr_pem) = new_key_and_csr(key_algorithm)?;
    let response = client
        .sign_certificate(params.to_request(&csr_pem))
        .await
        .map_err(FetchError::Rpc)?
        .into_inner();
    let expected = params.expected_id().map_err(FetchError::InvalidRequest)?;
    let verified = check_response(
        &response,
        &expected,
        &key.public_key(),
        crate::util::clock::now(),
        &NativeVerifier,
    )?;
    let private_key_pem = key
        .to_pkcs8_pem()
        .map_err(|e| FetchError::Csr(format!("encoding the private key: {e}")))?;
    Ok(Identity {
        spiffe_id: verified.spiffe_id,
        private_key_pem,
        certificate_chain_pem: verified.certificate_chain_pem,
        trust_anchors_pem: verified.trust_anchors_pem,
        validity: verified.validity,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use warden_core::bundle::certificates_to_pem;
    use warden_core::crypto::SoftwareKey;

    use super::*;
    use crate::client::test_support::{TestCa, two_uri_san_certificate};
    use crate::util::clock::now;

    const DAY: Duration = Duration::from_secs(24 * 3600);

    struct Case {
        ca: TestCa,
        key: SoftwareKey,
        expected: SpiffeId,
        response: SignCertificateResponse,
    }

    /// A response as Sentry builds it for `spiffe://public/ns/default/app`.
    fn case() -> Case {
        let ca = TestCa::new("localhost");
        let key = SoftwareKey::generate(KeyAlgorithm::Ed25519, &mut crate::util::clock::rng());
        let params = RequestParams::insecure("app", "default");
        let expected = params.expected_id().unwrap();
        assert_eq!(expected.to_string(), "spiffe://public/ns/default/app");
        let svid = ca.issue_for_key(&expected, &key.public_key(), now(), DAY);
        let response = SignCertificateResponse {
            workload_certificate: svid.chain_pem.into_bytes(),
            trust_chain_certificates: vec![ca.bundle.trust_anchors_pem().as_bytes().to_vec()],
            valid_until: Some(prost_types::Timestamp {
                seconds: i64::try_from(svid.validity.not_after.as_secs()).unwrap(),
                nanos: 0,
            }),
            ..Default::default()
        };
        Case {
            ca,
            key,
            expected,
            response,
        }
    }

    fn run(case: &Case) -> Result<VerifiedResponse, ResponseError> {
        check_response(
            &case.response,
            &case.expected,
            &case.key.public_key(),
            now(),
            &NativeVerifier,
        )
    }

    #[test]
    fn accepts_a_sentry_shaped_response() {
        let case = case();
        let got = run(&case).unwrap();
        assert_eq!(got.spiffe_id, case.expected);
        assert_eq!(got.trust_anchors_pem, case.ca.bundle.trust_anchors_pem());
        assert_eq!(
            got.validity.not_before.until(got.validity.not_after),
            DAY + crate::client::test_support::SKEW
        );
    }

    #[test]
    fn valid_until_must_be_present_and_in_range() {
        let mut case = case();
        case.response.valid_until = None;
        let err = run(&case).unwrap_err();
        assert!(matches!(err, ResponseError::ValidUntil("missing")), "{err}");
        assert_eq!(err.to_string(), "invalid valid_until: missing");
        case.response.valid_until = Some(prost_types::Timestamp {
            seconds: 0,
            nanos: -1,
        });
        assert!(matches!(run(&case), Err(ResponseError::ValidUntil(_))));
        case.response.valid_until = Some(prost_types::Timestamp {
            seconds: i64::MAX,
            nanos: 0,
        });
        assert!(matches!(run(&case), Err(ResponseError::ValidUntil(_))));
    }

    #[test]
    fn first_certificate_needs_exactly_one_uri_san() {
        let mut case = case();
        // No URI SAN: the issuer certificate first.
        case.response.workload_certificate = case.ca.bundle.issuer_chain_pem().as_bytes().to_vec();
        let err = run(&case).unwrap_err();
        assert!(matches!(err, ResponseError::UriSanCount(0)), "{err}");
        // Two URI SANs.
        let two = two_uri_san_certificate();
        case.response.workload_certificate = certificates_to_pem([&two]).unwrap().into_bytes();
        let err = run(&case).unwrap_err();
        assert!(matches!(err, ResponseError::UriSanCount(2)), "{err}");
        assert_eq!(
            err.to_string(),
            "workload certificate must have exactly one URI SAN, found 2"
        );
        // Not PEM at all.
        case.response.workload_certificate = b"nope".to_vec();
        assert!(matches!(
            run(&case),
            Err(ResponseError::WorkloadCertificate(_))
        ));
    }

    #[test]
    fn chain_must_verify_to_the_returned_anchors() {
        let mut case = case();
        let stranger = TestCa::new("localhost");
        case.response.trust_chain_certificates =
            vec![stranger.bundle.trust_anchors_pem().as_bytes().to_vec()];
        assert!(matches!(run(&case), Err(ResponseError::Untrusted(_))));
        case.response.trust_chain_certificates = Vec::new();
        assert!(matches!(run(&case), Err(ResponseError::TrustAnchors(_))));
    }

    #[test]
    fn anchors_may_come_in_several_elements() {
        let mut case = case();
        let other = TestCa::new("other");
        let mine = case
            .ca
            .bundle
            .trust_anchors_pem()
            .trim_end()
            .as_bytes()
            .to_vec();
        case.response.trust_chain_certificates =
            vec![other.bundle.trust_anchors_pem().as_bytes().to_vec(), mine];
        let got = run(&case).unwrap();
        assert_eq!(
            certificate_ders(got.trust_anchors_pem.as_bytes())
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn leaf_must_be_the_requested_id_and_key() {
        let mut case = case();
        case.expected = SpiffeId::parse("spiffe://public/ns/default/other").unwrap();
        let err = run(&case).unwrap_err();
        assert_eq!(
            err.to_string(),
            "workload SPIFFE ID spiffe://public/ns/default/app is not the expected spiffe://public/ns/default/other"
        );
        let mut case = self::case();
        case.key = SoftwareKey::generate(KeyAlgorithm::Ed25519, &mut crate::util::clock::rng());
        assert!(matches!(run(&case), Err(ResponseError::KeyMismatch)));
    }

    #[test]
    fn expected_id_follows_sentry_defaults() {
        let mut params = RequestParams::insecure("myapp", "prod");
        assert_eq!(
            params.expected_id().unwrap().to_string(),
            "spiffe://public/ns/prod/myapp"
        );
        params.trust_domain = "example.org".into();
        assert_eq!(
            params.expected_id().unwrap().to_string(),
            "spiffe://example.org/ns/prod/myapp"
        );
        params.app_id = "bad app".into();
        assert!(params.expected_id().is_err());
    }

    #[test]
    fn request_carries_every_field_and_debug_hides_the_token() {
        let mut params = RequestParams::insecure("app", "ns");
        params.token = Zeroizing::new("secret-jwt".into());
        params.token_validator = TokenValidator::Jwks;
        let (_, csr) = new_key_and_csr(KeyAlgorithm::P256).unwrap();
        assert!(csr.starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
        let req = params.to_request(&csr);
        assert_eq!(req.id, "app");
        assert_eq!(req.namespace, "ns");
        assert_eq!(req.token, "secret-jwt");
        assert_eq!(req.token_validator, 3);
        assert_eq!(req.certificate_signing_request, csr.as_bytes());
        assert!(!format!("{params:?}").contains("secret"));
        // The CSR is what Sentry's parser accepts.
        let parsed =
            warden_core::csr::parse_and_verify(&req.certificate_signing_request, &NativeVerifier)
                .unwrap();
        assert_eq!(parsed.key_type, warden_core::crypto::KeyType::EcdsaP256);
    }

    #[test]
    fn renewal_is_half_the_lifetime_after_not_before() {
        // Sentry's defaults: 15 min backdating, 24 h TTL: renewal 11 h 52 m 30 s after issuance.
        let issued = UnixTime::from_secs(1_800_000_000);
        let validity = Validity::backdated(
            issued,
            Duration::from_secs(15 * 60),
            Duration::from_secs(24 * 3600),
        );
        assert_eq!(
            issued.until(warden_core::schedule::renewal_time(validity)),
            Duration::from_secs(11 * 3600 + 52 * 60 + 30)
        );
        let identity = Identity {
            spiffe_id: SpiffeId::parse("spiffe://public/ns/a/b").unwrap(),
            private_key_pem: Zeroizing::new(String::new()),
            certificate_chain_pem: String::new(),
            trust_anchors_pem: String::new(),
            validity: Validity {
                not_before: UnixTime::from_secs(100),
                not_after: UnixTime::from_secs(300),
            },
        };
        assert_eq!(identity.renewal_time(), UnixTime::from_secs(200));
        assert!(!format!("{identity:?}").contains("private_key"));
    }
}

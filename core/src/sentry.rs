//! Sentry's rules for a sign request, with its status codes and messages.
//!
//! The `warden` server and the edge firmware answer the same bad request with the same code and
//! text, because both take them from here. The order of the checks is Sentry's: the common
//! request rules (`validator/internal/common.go`), then the CSR, then the SPIFFE ID, which only
//! fails for names the common rules let through.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use crate::crypto::SignatureVerifier;
use crate::csr::{self, CsrError, VerifiedCsr};
use crate::spiffe::{SpiffeId, SpiffeIdError, TrustDomain, validate_app_id};

/// The gRPC status codes Sentry answers a sign request with (numbers as in gRPC).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Code {
    /// The request is malformed (its CSR, a limit).
    InvalidArgument = 3,
    /// The request's fields or token do not pass the validator.
    PermissionDenied = 7,
    /// The CA is not in a state to sign (for example not provisioned).
    FailedPrecondition = 9,
    /// Signing failed, including for names only the certificate builder refuses.
    Internal = 13,
    /// The CA cannot sign for now (for example its audit log cannot be written).
    Unavailable = 14,
}

impl Code {
    /// The gRPC code number.
    pub fn number(self) -> u8 {
        self as u8
    }

    /// The code for a gRPC code number, if it is one of these.
    pub fn from_number(number: u8) -> Option<Self> {
        [
            Self::InvalidArgument,
            Self::PermissionDenied,
            Self::FailedPrecondition,
            Self::Internal,
            Self::Unavailable,
        ]
        .into_iter()
        .find(|code| code.number() == number)
    }
}

/// A refused request: what Sentry would answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The status code.
    pub code: Code,
    /// The status message, word for word.
    pub message: String,
}

impl Refusal {
    fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message)
    }
}

impl core::error::Error for Refusal {}

/// The fields of `SignCertificateRequest` the rules look at.
#[derive(Clone, Copy, Debug)]
pub struct SignRequest<'a> {
    /// `id`: the app id.
    pub app_id: &'a str,
    /// `namespace`.
    pub namespace: &'a str,
    /// `trust_domain` (empty: Sentry's default).
    pub trust_domain: &'a str,
    /// `certificate_signing_request`.
    pub csr: &'a [u8],
}

/// The common rules: the field errors joined as Go's `errors.Join` does (a newline) under
/// "invalid request: ", then the trust domain. `PermissionDenied`, as Sentry's validators fail.
pub fn common_rules(request: &SignRequest<'_>) -> Result<TrustDomain, Refusal> {
    let mut errors: Vec<String> = Vec::new();
    if let Err(e) = validate_app_id(request.app_id) {
        errors.push(e.to_string());
    }
    if request.csr.is_empty() {
        errors.push("CSR is required".into());
    }
    if request.namespace.is_empty() {
        errors.push("namespace is required".into());
    }
    if !errors.is_empty() {
        return Err(Refusal::new(
            Code::PermissionDenied,
            alloc::format!("invalid request: {}", errors.join("\n")),
        ));
    }
    TrustDomain::from_request(request.trust_domain)
        .map_err(|e| Refusal::new(Code::PermissionDenied, e.to_string()))
}

/// The CSR of a request, verified. Sentry PEM-decodes first, so bare DER (which
/// [`csr::parse_and_verify`] also accepts) is refused here, as Sentry refuses it, before any
/// parsing (so there is no [`CsrError`] to log); otherwise the error is returned beside the
/// refusal for the caller's log.
pub fn verify_csr(
    input: &[u8],
    verifier: &dyn SignatureVerifier,
) -> Result<VerifiedCsr, (Refusal, Option<CsrError>)> {
    if input.first() == Some(&0x30) {
        return Err((Refusal::new(Code::InvalidArgument, INVALID_CSR), None));
    }
    csr::parse_and_verify(input, verifier).map_err(|e| (csr_refusal(&e), Some(e)))
}

const INVALID_CSR: &str = "invalid certificate signing request";

fn csr_refusal(e: &CsrError) -> Refusal {
    if e.is_framing_error() {
        Refusal::new(Code::InvalidArgument, INVALID_CSR)
    } else if matches!(e, CsrError::InvalidSignature(_)) {
        Refusal::new(Code::InvalidArgument, "invalid signature")
    } else {
        Refusal::new(
            Code::InvalidArgument,
            alloc::format!("failed to parse certificate signing request: {e}"),
        )
    }
}

/// The requester's SPIFFE ID. An id that passes the common rules but is not a valid path
/// segment (a space, a slash) only fails here, so it is [`sign_failed`], as in Sentry. The
/// [`SpiffeIdError`] is returned beside the refusal for the caller's log.
pub fn workload_id(
    trust_domain: &TrustDomain,
    namespace: &str,
    app_id: &str,
) -> Result<SpiffeId, (Refusal, SpiffeIdError)> {
    SpiffeId::workload(trust_domain, namespace, app_id).map_err(|e| (sign_failed(), e))
}

/// Sentry's answer to every failure after the request was accepted.
pub fn sign_failed() -> Refusal {
    Refusal::new(Code::Internal, "failed to sign certificate")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{KeyAlgorithm, RustCryptoVerifier, SoftwareKey};
    use crate::csr::{CsrTemplate, create_csr};
    use crate::test_rng::seeded_rng;

    fn csr_pem() -> String {
        let key = SoftwareKey::generate(KeyAlgorithm::P256, &mut seeded_rng(7));
        let template = CsrTemplate {
            spiffe_id: None,
            dns_names: &[],
        };
        csr::csr_to_pem(&create_csr(&key, &template).unwrap()).unwrap()
    }

    fn request<'a>(
        app_id: &'a str,
        namespace: &'a str,
        td: &'a str,
        csr: &'a [u8],
    ) -> SignRequest<'a> {
        SignRequest {
            app_id,
            namespace,
            trust_domain: td,
            csr,
        }
    }

    #[test]
    fn common_rules_join_field_errors_and_then_check_the_trust_domain() {
        let refusal = common_rules(&request("", "", "", b"")).unwrap_err();
        assert_eq!(refusal.code, Code::PermissionDenied);
        assert_eq!(
            refusal.message,
            "invalid request: parameter app-id cannot be empty\nCSR is required\nnamespace is required"
        );
        let refusal = common_rules(&request("app", "default", "Example.org", b"x")).unwrap_err();
        assert_eq!(
            refusal,
            Refusal::new(
                Code::PermissionDenied,
                "trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores"
            )
        );
        let td = common_rules(&request("app", "default", "", b"x")).unwrap();
        assert_eq!(td.as_str(), "public");
    }

    #[test]
    fn csr_refusals_are_sentrys() {
        let pem = csr_pem();
        assert!(verify_csr(pem.as_bytes(), &RustCryptoVerifier).is_ok());
        let der = crate::pem::next_block(&pem).unwrap().unwrap().0.der;
        let (refusal, _) = verify_csr(&der, &RustCryptoVerifier).unwrap_err();
        assert_eq!(refusal, Refusal::new(Code::InvalidArgument, INVALID_CSR));
        let (refusal, _) = verify_csr(b"garbage", &RustCryptoVerifier).unwrap_err();
        assert_eq!(refusal, Refusal::new(Code::InvalidArgument, INVALID_CSR));
        let mut bad = der.clone();
        if let Some(last) = bad.last_mut() {
            *last ^= 1;
        }
        let mut bad_pem = String::new();
        crate::pem::encode_into(&mut bad_pem, "CERTIFICATE REQUEST", &bad).unwrap();
        let (refusal, _) = verify_csr(bad_pem.as_bytes(), &RustCryptoVerifier).unwrap_err();
        assert_eq!(
            refusal,
            Refusal::new(Code::InvalidArgument, "invalid signature")
        );
    }

    #[test]
    fn names_refused_only_by_the_spiffe_id_are_internal() {
        let td = TrustDomain::new("example.org").unwrap();
        for (namespace, id) in [
            ("default", "my app"),
            ("kube-system/ns/default", "app"),
            ("default", "a/b"),
        ] {
            assert_eq!(
                workload_id(&td, namespace, id).unwrap_err().0,
                sign_failed()
            );
        }
        assert_eq!(
            workload_id(&td, "default", "app").unwrap().to_string(),
            "spiffe://example.org/ns/default/app"
        );
        assert_eq!(sign_failed().code.number(), 13);
        assert_eq!(Code::from_number(7), Some(Code::PermissionDenied));
        assert_eq!(Code::from_number(0), None);
    }
}

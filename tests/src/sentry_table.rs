//! Bad `SignCertificate` requests and Sentry's exact answer to each (spec §2): one table for
//! the server (`server::requests`) and the edge firmware (`edge_device`), so both are held to
//! the same codes and messages.

use std::path::Path;

use tonic::Code;
use warden_host::proto::SignCertificateRequest;
use warden_host::proto::sign_certificate_request::TokenValidator;

use crate::common::{OPENSSL_KEYS, openssl_csr};
use crate::server::request;
use crate::support;

/// What the status message must be.
#[derive(Debug)]
pub enum Message {
    /// Exactly this text.
    Exact(String),
    /// This text and then something more (a detail that varies).
    Prefix(&'static str),
}

/// One bad request and Sentry's answer.
#[derive(Debug)]
pub struct Case {
    /// What the case is, for failure messages.
    pub name: &'static str,
    /// The bad request.
    pub request: SignCertificateRequest,
    /// Sentry's status code for it.
    pub code: Code,
    /// Sentry's status message for it.
    pub message: Message,
}

impl Case {
    /// A description of how `(code, message)` differs from Sentry's answer, if it does.
    pub fn mismatch(&self, code: Code, message: &str) -> Option<String> {
        let message_ok = match &self.message {
            Message::Exact(m) => message == m,
            Message::Prefix(p) => message.starts_with(p) && message.len() > p.len(),
        };
        if code == self.code && message_ok {
            return None;
        }
        let want = match &self.message {
            Message::Exact(m) => format!("{m:?}"),
            Message::Prefix(p) => format!("{p:?}..."),
        };
        Some(format!(
            "{}: got {code:?} {message:?}, want {:?} {want}",
            self.name, self.code
        ))
    }

    /// Whether the case names a token validator, which only the gRPC request has.
    pub fn selects_a_validator(&self) -> bool {
        self.request.token_validator != TokenValidator::Unknown as i32
    }
}

fn exact(name: &'static str, request: SignCertificateRequest, code: Code, message: &str) -> Case {
    Case {
        name,
        request,
        code,
        message: Message::Exact(message.into()),
    }
}

/// A PEM block with `label` around `der`.
fn pem(label: &str, der: &[u8]) -> Vec<u8> {
    support::pem(label, der).into_bytes()
}

/// Requests Sentry refuses, built around an openssl-made P-256 CSR written into `work`. For
/// the requests it accepts at the limits, see [`accepted_at_the_limits`].
pub fn refused_requests(work: &Path) -> Vec<Case> {
    let made = openssl_csr(work, &OPENSSL_KEYS[0]);
    let csr = made.pem.clone();
    let csr_der = made.der.clone();

    let mut truncated_der = csr_der.clone();
    truncated_der.truncate(csr_der.len() - 10);
    let mut bad_signature_der = csr_der.clone();
    *bad_signature_der.last_mut().unwrap() ^= 0x01;
    let with_validator = |v: TokenValidator| SignCertificateRequest {
        token_validator: v as i32,
        ..request("app", "default", "", &csr)
    };
    let id_65 = "a".repeat(65);

    vec![
        exact(
            "empty id",
            request("", "default", "", &csr),
            Code::PermissionDenied,
            "invalid request: parameter app-id cannot be empty",
        ),
        exact(
            "dotted id",
            request("my.app", "default", "", &csr),
            Code::PermissionDenied,
            "invalid request: parameter app-id cannot contain dots",
        ),
        exact(
            "65-byte id",
            request(&id_65, "default", "", &csr),
            Code::PermissionDenied,
            "invalid request: app ID must be 64 characters or less",
        ),
        exact(
            "missing namespace",
            request("app", "", "", &csr),
            Code::PermissionDenied,
            "invalid request: namespace is required",
        ),
        exact(
            "everything missing (errors joined as Go's errors.Join does)",
            request("", "", "", b""),
            Code::PermissionDenied,
            "invalid request: parameter app-id cannot be empty\nCSR is required\nnamespace is required",
        ),
        exact(
            "uppercase trust domain",
            request("app", "default", "Example.org", &csr),
            Code::PermissionDenied,
            "trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores",
        ),
        exact(
            "empty CSR",
            request("app", "default", "", b""),
            Code::PermissionDenied,
            "invalid request: CSR is required",
        ),
        exact(
            "garbage CSR",
            request("app", "default", "", b"this is not a CSR"),
            Code::InvalidArgument,
            "invalid certificate signing request",
        ),
        exact(
            "CSR DER without PEM (Go's pem.Decode finds no block)",
            request("app", "default", "", &csr_der),
            Code::InvalidArgument,
            "invalid certificate signing request",
        ),
        exact(
            "PEM block with another label",
            request("app", "default", "", &pem("PUBLIC KEY", &made.spki_der)),
            Code::InvalidArgument,
            "invalid certificate signing request",
        ),
        Case {
            name: "PEM CSR with corrupted DER",
            request: request(
                "app",
                "default",
                "",
                &pem("CERTIFICATE REQUEST", &truncated_der),
            ),
            code: Code::InvalidArgument,
            message: Message::Prefix("failed to parse certificate signing request: "),
        },
        exact(
            "CSR with a flipped signature byte",
            request(
                "app",
                "default",
                "",
                &pem("CERTIFICATE REQUEST", &bad_signature_der),
            ),
            Code::InvalidArgument,
            "invalid signature",
        ),
        exact(
            "JWKS validator (not enabled)",
            with_validator(TokenValidator::Jwks),
            Code::InvalidArgument,
            "the requested validator is not enabled",
        ),
        exact(
            "Kubernetes validator (not enabled)",
            with_validator(TokenValidator::Kubernetes),
            Code::InvalidArgument,
            "the requested validator is not enabled",
        ),
        exact(
            "validator number outside the enum",
            SignCertificateRequest {
                token_validator: 42,
                ..request("app", "default", "", &csr)
            },
            Code::InvalidArgument,
            "the requested validator is not enabled",
        ),
        exact(
            "id with a space (only fails when the SPIFFE ID is built)",
            request("my app", "default", "", &csr),
            Code::Internal,
            "failed to sign certificate",
        ),
        exact(
            "namespace with slashes (would forge the path /ns/kube-system/ns/default/app)",
            request("app", "kube-system/ns/default", "", &csr),
            Code::Internal,
            "failed to sign certificate",
        ),
        exact(
            "id with a slash (would forge the path /ns/default/a/b)",
            request("a/b", "default", "", &csr),
            Code::Internal,
            "failed to sign certificate",
        ),
        exact(
            "id with a newline and a bad CSR (the id is logged: a forged log line?)",
            request("app\nlevel=fatal msg=forged", "default", "", b"not a CSR"),
            Code::InvalidArgument,
            "invalid certificate signing request",
        ),
    ]
}

/// Requests at the limits that Sentry accepts: (name, request, the SPIFFE ID of the leaf).
pub fn accepted_at_the_limits(csr: &[u8]) -> Vec<(&'static str, SignCertificateRequest, String)> {
    let id_64 = "a".repeat(64);
    vec![
        (
            "64-byte id",
            request(&id_64, "default", "", csr),
            format!("spiffe://public/ns/default/{id_64}"),
        ),
        (
            "explicit insecure validator",
            SignCertificateRequest {
                token_validator: TokenValidator::Insecure as i32,
                ..request("app", "default", "", csr)
            },
            "spiffe://public/ns/default/app".to_owned(),
        ),
    ]
}

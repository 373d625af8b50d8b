//! Bad `SignCertificate` requests over real gRPC: each gets Sentry's exact status code and
//! message (spec §2), and an oversized request is refused by the transport without hurting the
//! server.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;
mod server_support;
mod support;

use common::{OPENSSL_KEYS, openssl_csr, tempdir};
use server_support::{Warden, check_response, field, request, sign};
use tonic::Code;
use warden_host::proto::SignCertificateRequest;
use warden_host::proto::sign_certificate_request::TokenValidator;

/// What the status message must be.
enum Message {
    Exact(String),
    Prefix(&'static str),
}

struct Case {
    name: &'static str,
    request: SignCertificateRequest,
    code: Code,
    message: Message,
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_sentrys_codes_and_messages() {
    let work = tempdir();
    let creds = tempdir();
    let warden = Warden::start(creds.path());
    let made = openssl_csr(work.path(), &OPENSSL_KEYS[0]);
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
    let id_64 = "a".repeat(64);
    let id_65 = "a".repeat(65);

    let cases = vec![
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
    ];

    let mut client = warden.client().await;
    let mut mismatches = Vec::new();
    for case in cases {
        match sign(&mut client, case.request).await {
            Ok(_) => mismatches.push(format!("{}: accepted", case.name)),
            Err(status) => {
                let message_ok = match &case.message {
                    Message::Exact(m) => status.message() == m,
                    Message::Prefix(p) => {
                        status.message().starts_with(p) && status.message().len() > p.len()
                    }
                };
                if status.code() != case.code || !message_ok {
                    let want = match &case.message {
                        Message::Exact(m) => format!("{m:?}"),
                        Message::Prefix(p) => format!("{p:?}..."),
                    };
                    mismatches.push(format!(
                        "{}: got {:?} {:?}, want {:?} {want}",
                        case.name,
                        status.code(),
                        status.message(),
                        case.code
                    ));
                }
            }
        }
    }

    // The boundary: 64 bytes is accepted; explicit INSECURE is the default validator.
    for (name, req, expected) in [
        (
            "64-byte id",
            request(&id_64, "default", "", &csr),
            format!("spiffe://public/ns/default/{id_64}"),
        ),
        (
            "explicit insecure validator",
            with_validator(TokenValidator::Insecure),
            "spiffe://public/ns/default/app".to_owned(),
        ),
    ] {
        match sign(&mut client, req).await {
            Ok(response) => {
                check_response(&response, &warden.trust_anchors_path(), &expected);
            }
            Err(status) => mismatches.push(format!("{name}: refused with {status:?}")),
        }
    }
    assert!(
        mismatches.is_empty(),
        "requests answered unlike Sentry:\n{}",
        mismatches.join("\n")
    );
    // Request fields reach the log only escaped: the newline id forged no line of its own.
    let lines = warden.output.lines();
    assert!(
        lines
            .iter()
            .all(|line| !line.starts_with("level=") && !line.starts_with(" msg=")),
        "a request field broke a log line:\n{}",
        warden.output.text()
    );
    assert!(
        warden
            .output
            .json()
            .iter()
            .any(|line| field(line, "msg").contains("app\nlevel=fatal")),
        "the refused id is not in the log:\n{}",
        warden.output.text()
    );
}

/// A 10 MiB request is refused by the transport (tonic's decode limit), and the server keeps
/// serving on the same connection and on new ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_is_refused_and_the_server_keeps_serving() {
    let work = tempdir();
    let creds = tempdir();
    let warden = Warden::start(creds.path());
    let csr = openssl_csr(work.path(), &OPENSSL_KEYS[2]).pem;
    let mut client = warden.client().await;

    let huge = vec![b'A'; 10 << 20];
    let status = sign(&mut client, request("big", "default", "", &huge))
        .await
        .expect_err("a 10 MiB request must be refused");
    assert!(
        matches!(status.code(), Code::ResourceExhausted | Code::OutOfRange),
        "oversized request: {status:?}"
    );
    eprintln!(
        "oversized request refused with {:?}: {}",
        status.code(),
        status.message()
    );

    let response = sign(&mut client, request("after", "default", "", &csr))
        .await
        .expect("the same connection still serves");
    check_response(
        &response,
        &warden.trust_anchors_path(),
        "spiffe://public/ns/default/after",
    );
    let mut fresh = warden.client().await;
    let response = sign(&mut fresh, request("fresh", "default", "", &csr))
        .await
        .expect("a new connection is served");
    check_response(
        &response,
        &warden.trust_anchors_path(),
        "spiffe://public/ns/default/fresh",
    );
    assert_eq!(warden.healthz().0, 200);
}

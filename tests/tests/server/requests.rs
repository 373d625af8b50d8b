//! Bad `SignCertificate` requests over real gRPC: each gets Sentry's exact status code and
//! message (spec §2), and an oversized request is refused by the transport without hurting the
//! server.

use tonic::Code;
use warden_tests::common::{OPENSSL_KEYS, openssl_csr, tempdir};
use warden_tests::sentry_table;
use warden_tests::server::{Warden, check_response, field, request, sign};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_sentrys_codes_and_messages() {
    let work = tempdir();
    let creds = tempdir();
    let warden = Warden::start(creds.path());
    let csr = openssl_csr(work.path(), &OPENSSL_KEYS[0]).pem;

    let mut client = warden.client().await;
    let mut mismatches = Vec::new();
    for case in sentry_table::refused_requests(work.path()) {
        match sign(&mut client, case.request.clone()).await {
            Ok(_) => mismatches.push(format!("{}: accepted", case.name)),
            Err(status) => mismatches.extend(case.mismatch(status.code(), status.message())),
        }
    }

    // The boundary: 64 bytes is accepted; explicit INSECURE is the default validator.
    for (name, req, expected) in sentry_table::accepted_at_the_limits(&csr) {
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

//! `--audit-log`: one hash-chained JSON line per request, matching the certificates issued one
//! to one; `warden audit verify` accepts the log and names the first edited or deleted line.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;
mod server_support;
mod support;

use common::{OPENSSL_KEYS, openssl_csr, tempdir, try_run};
use server_support::{Options, WARDEN, Warden, check_response, request, sign};
use warden_core::profile::Validity;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn verify(log: &std::path::Path) -> (bool, String) {
    let out = try_run(std::process::Command::new(WARDEN).args([
        "audit",
        "verify",
        log.to_str().unwrap(),
    ]));
    (out.success, format!("{}{}", out.stdout, out.stderr))
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_lines_match_issued_certificates_and_tampering_is_found() {
    let creds = tempdir();
    let work = tempdir();
    let log = work.path().join("audit.log");
    let warden = Warden::start_with(
        creds.path(),
        &Options::new().args(["--audit-log", log.to_str().unwrap()]),
    );
    let csr = openssl_csr(work.path(), &OPENSSL_KEYS[0]).pem;
    let mut client = warden.client().await;
    let mut issued = Vec::new();
    for app in ["app-a", "app-b", "app-c"] {
        let response = sign(&mut client, request(app, "ns1", "", &csr))
            .await
            .unwrap();
        issued.push(check_response(
            &response,
            &warden.trust_anchors_path(),
            &format!("spiffe://public/ns/ns1/{app}"),
        ));
    }
    let refused = sign(&mut client, request("bad.id", "ns1", "", &csr))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    drop(warden);

    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !text.contains("token"),
        "the token field must never be logged"
    );
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "{text}");
    for (line, cert) in lines.iter().zip(&issued) {
        let tbs = cert.leaf.tbs_certificate();
        assert_eq!(line["outcome"], "issued");
        assert_eq!(line["namespace"], "ns1");
        assert_eq!(line["validator"], "insecure");
        assert_eq!(line["serial"], hex(tbs.serial_number().as_bytes()));
        assert_eq!(
            line["spiffe_id"],
            support::core_svid_id(&cert.leaf).unwrap().to_string()
        );
        assert_eq!(
            line["not_after"],
            Validity::of(&cert.leaf).not_after.to_string()
        );
        assert_eq!(line["issuer_skid"], hex(&cert.akid()));
        assert!(
            line["peer"].as_str().unwrap().starts_with("127.0.0.1:"),
            "{line}"
        );
        assert_eq!(line["prev_sha256"].as_str().unwrap().len(), 64);
    }
    assert_eq!(lines[3]["outcome"], "refused");
    assert_eq!(lines[3]["code"], "PermissionDenied");
    assert_eq!(
        lines[3]["message"],
        "invalid request: parameter app-id cannot contain dots"
    );

    let (ok, output) = verify(&log);
    assert!(ok && output.contains("4 records, chain intact"), "{output}");

    let raw: Vec<&str> = text.lines().collect();
    let edited = raw[1].replace("app-b", "app-x");
    let tampered = [raw[0], edited.as_str(), raw[2], raw[3]].join("\n") + "\n";
    std::fs::write(&log, tampered).unwrap();
    let (ok, output) = verify(&log);
    assert!(!ok && output.contains("line 3: chain broken"), "{output}");

    let deleted = [raw[0], raw[2], raw[3]].join("\n") + "\n";
    std::fs::write(&log, deleted).unwrap();
    let (ok, output) = verify(&log);
    assert!(!ok && output.contains("line 2: chain broken"), "{output}");
}

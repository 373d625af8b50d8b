//! The SPIFFE trust bundle: `GET /bundle` on the healthz port and `warden bundle` agree, carry
//! every anchor of ca.crt as one x509-svid JWK, and bump `spiffe_sequence` when the anchors
//! change (here: a second root published while the server runs), writing nothing next to the
//! credentials.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;
mod server_support;
mod support;

use std::time::{Duration, Instant};

use common::{read_file, run, tempdir};
use server_support::{OwnCa, WARDEN, Warden, http_get, replace_file};
use warden_core::bundle::parse_certificates;

fn bundle_of(warden: &Warden) -> serde_json::Value {
    let (status, body) = http_get(warden.healthz_port, "/bundle").unwrap();
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn x5c_ders(bundle: &serde_json::Value) -> Vec<Vec<u8>> {
    bundle["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            assert_eq!(k["use"], "x509-svid");
            let x5c = k["x5c"].as_array().unwrap();
            assert_eq!(x5c.len(), 1);
            support::base64_decode(x5c[0].as_str().unwrap())
        })
        .collect()
}

#[test]
fn bundle_endpoint_and_cli_follow_the_anchors() {
    let creds = tempdir();
    let warden = Warden::start(creds.path());
    let first = bundle_of(&warden);
    let anchors = parse_certificates(&read_file(&warden.trust_anchors_path())).unwrap();
    assert_eq!(x5c_ders(&first), server_support::ders(&anchors));
    assert_eq!(first["spiffe_refresh_hint"], 300);
    let sequence = first["spiffe_sequence"].as_u64().unwrap();

    let cli = run(std::process::Command::new(WARDEN).args([
        "bundle",
        "--issuer-credentials",
        creds.path().to_str().unwrap(),
    ]));
    let from_cli: serde_json::Value = serde_json::from_str(&cli.stdout).unwrap();
    assert_eq!(from_cli["spiffe_sequence"].as_u64(), Some(sequence));
    assert_eq!(x5c_ders(&from_cli), x5c_ders(&first));

    // Publish a second root next to the first: the server reloads and the bundle grows.
    let extra = OwnCa::generate();
    let both =
        String::from_utf8(read_file(&warden.trust_anchors_path())).unwrap() + &extra.root_pem();
    replace_file(creds.path(), "ca.crt", both);
    let deadline = Instant::now() + Duration::from_secs(15);
    let updated = loop {
        let b = bundle_of(&warden);
        if b["keys"].as_array().unwrap().len() == 2 {
            break b;
        }
        assert!(
            Instant::now() < deadline,
            "bundle never showed the new root"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(updated["spiffe_sequence"].as_u64().unwrap() > sequence);
    assert_eq!(x5c_ders(&updated)[1], support::der_of(&extra.root));
    let mut names: Vec<String> = std::fs::read_dir(creds.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    assert_eq!(names, ["ca.crt", "issuer.crt", "issuer.key"]);
}

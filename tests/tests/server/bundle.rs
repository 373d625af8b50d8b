//! The SPIFFE trust bundle: `GET /bundle` on the healthz port and `warden bundle` agree, carry
//! every anchor of ca.crt as one x509-svid JWK, and bump `spiffe_sequence` when the anchors
//! change (here: a second root published while the server runs), writing nothing next to the
//! credentials.

use std::time::{Duration, Instant};

use warden_core::bundle::parse_certificates;
use warden_tests::common::{read_file, run, tempdir};
use warden_tests::server::{OwnCa, Warden, http_get, replace_file, warden_binary};
use warden_tests::{server, support};

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
    assert_eq!(x5c_ders(&first), server::ders(&anchors));
    assert_eq!(first["spiffe_refresh_hint"], 300);
    let sequence = first["spiffe_sequence"].as_u64().unwrap();

    let cli = run(std::process::Command::new(warden_binary()).args([
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

/// Sets the modification time of `path` to a day before 1970: no `spiffe_sequence` can be
/// derived from it.
fn set_mtime_before_1970(path: &std::path::Path) {
    let before = std::time::UNIX_EPOCH - Duration::from_secs(86_400);
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(before)
        .unwrap();
}

#[test]
fn bundle_endpoint_answers_503_rather_than_an_empty_or_stale_document() {
    let creds = tempdir();
    let ca = OwnCa::generate();
    ca.write(creds.path(), &ca.issuer());
    set_mtime_before_1970(&creds.path().join("ca.crt"));
    let warden = Warden::start(creds.path());
    // The old server answered 200 with an empty body here.
    let (status, body) = http_get(warden.healthz_port, "/bundle").unwrap();
    assert_eq!(
        (status, body.as_str()),
        (503, "trust bundle not available\n"),
        "{}",
        warden.output.text()
    );
    assert!(
        warden
            .output
            .find(0, "error", "Cannot update the SPIFFE trust bundle")
            .is_some(),
        "{}",
        warden.output.text()
    );
    // The CA itself keeps working; the bundle is only unpublishable.
    assert_eq!(warden.healthz().0, 200);

    // A good ca.crt (a second root added) brings the bundle back.
    let extra = OwnCa::generate();
    let both = ca.root_pem() + &extra.root_pem();
    replace_file(creds.path(), "ca.crt", &both);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = http_get(warden.healthz_port, "/bundle").unwrap();
        if status == 200 {
            let json: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(json["keys"].as_array().unwrap().len(), 2, "{body}");
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(Instant::now() < deadline, "the bundle never came back");
        std::thread::sleep(Duration::from_millis(100));
    }

    // New anchors that cannot be published: 503, not the previous (stale) document.
    let third = OwnCa::generate();
    let tmp = creds.path().join(".ca.crt.new");
    std::fs::write(&tmp, ca.root_pem() + &third.root_pem()).unwrap();
    set_mtime_before_1970(&tmp);
    std::fs::rename(&tmp, creds.path().join("ca.crt")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = http_get(warden.healthz_port, "/bundle").unwrap();
        if status == 503 {
            break;
        }
        assert_eq!(status, 200, "{body}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(!body.is_empty() && json["keys"].as_array().is_some_and(|k| !k.is_empty()));
        assert!(
            Instant::now() < deadline,
            "the stale bundle was still served"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

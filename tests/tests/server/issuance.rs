//! The `warden` server issuing over real TLS and gRPC: CSRs of every key type daprd and the
//! control plane send (openssl-made and Go-made, including the legacy `CERTIFICATE` label) get
//! Sentry-shaped responses whose chains openssl and rustls-webpki accept; the config file's TTL
//! and skew (with `${VAR}` expansion); control-plane DNS SANs.

use std::time::Duration;

use warden_tests::common::{
    OPENSSL_KEYS, data_path, now, openssl_csr, read_file, tempdir, write_file,
};
use warden_tests::server::{Options, Warden, check_response, csr_spki_der, request, sign};
use warden_tests::support;

/// Requests from openssl-made CSRs (Ed25519, P-256, P-384, RSA-2048), the same relabelled as
/// legacy `CERTIFICATE` blocks, and daprd-shaped Go CSRs; every response is checked for
/// Sentry's shape and the chain is verified by openssl and rustls-webpki.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csrs_of_every_key_type_get_sentry_shaped_verifiable_chains() {
    let work = tempdir();
    let creds = tempdir();
    let warden = Warden::start(creds.path());
    let anchors = warden.trust_anchors_path();
    let mut client = warden.client().await;

    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    for key in &OPENSSL_KEYS {
        let made = openssl_csr(work.path(), key);
        let legacy = String::from_utf8(made.pem.clone())
            .unwrap()
            .replace("CERTIFICATE REQUEST", "CERTIFICATE");
        assert!(legacy.starts_with("-----BEGIN CERTIFICATE-----\n"));
        cases.push((format!("openssl-{}", key.name), made.pem));
        cases.push((format!("openssl-{}-legacy", key.name), legacy.into_bytes()));
    }
    for file in [
        "csr-ed25519.pem",
        "csr-p256.pem",
        "csr-p384.pem",
        "csr-rsa2048.pem",
        "csr-p256-legacy-block-type.pem",
    ] {
        let name = file.trim_end_matches(".pem").replace("csr-", "go-");
        cases.push((name, read_file(&data_path(&format!("go-csr/{file}")))));
    }

    for (app, csr) in &cases {
        let response = sign(&mut client, request(app, "myns", "", csr))
            .await
            .unwrap_or_else(|s| panic!("{app}: {s:?}"));
        let issued = check_response(
            &response,
            &anchors,
            &format!("spiffe://public/ns/myns/{app}"),
        );
        assert_eq!(
            issued.intermediates.len(),
            1,
            "{app}: leaf + the generated issuer"
        );
        assert_eq!(
            issued.leaf_spki_der(),
            csr_spki_der(csr),
            "{app}: the leaf must certify the CSR's key"
        );
        assert_eq!(
            issued.leaf.tbs_certificate().issuer(),
            issued.intermediates[0].tbs_certificate().subject(),
            "{app}: leaf issuer DN"
        );
        issued.openssl_verify(work.path(), &anchors, app);
    }
}

/// The trust domain in the request (insecure validator) goes into the SPIFFE ID as is; it is
/// never compared with the server's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requested_trust_domain_is_used() {
    let work = tempdir();
    let creds = tempdir();
    let warden = Warden::start(creds.path());
    let csr = openssl_csr(work.path(), &OPENSSL_KEYS[2]).pem;
    let mut client = warden.client().await;
    let response = sign(&mut client, request("myapp", "prod", "example.org", &csr))
        .await
        .unwrap();
    let issued = check_response(
        &response,
        &warden.trust_anchors_path(),
        "spiffe://example.org/ns/prod/myapp",
    );
    issued.openssl_verify(work.path(), &warden.trust_anchors_path(), "td");
}

/// A Dapr Configuration file sets the leaf's lifetime and backdating; `${VAR}` is expanded
/// from the server's environment before parsing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_file_ttl_and_skew_shape_the_leaf_validity() {
    let work = tempdir();
    let creds = tempdir();
    let config = write_file(
        work.path(),
        "config.yaml",
        "apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: daprsystem
spec:
  mtls:
    enabled: true
    workloadCertTTL: 1h30m
    allowedClockSkew: ${WARDEN_TEST_SKEW}
    sentryAddress: localhost:50001
",
    );
    let warden = Warden::start_with(
        creds.path(),
        &Options::new()
            .args(["--config", config.to_str().unwrap()])
            .env("WARDEN_TEST_SKEW", "5m"),
    );
    let csr = openssl_csr(work.path(), &OPENSSL_KEYS[0]).pem;
    let mut client = warden.client().await;
    let before = now().as_secs();
    let response = sign(&mut client, request("ttl", "default", "", &csr))
        .await
        .unwrap();
    let after = now().as_secs();
    let issued = check_response(
        &response,
        &warden.trust_anchors_path(),
        "spiffe://public/ns/default/ttl",
    );
    let validity = issued.validity();
    let (not_before, not_after) = (validity.not_before.as_secs(), validity.not_after.as_secs());
    let lifetime = not_after - not_before;
    let expected = Duration::from_secs(90 * 60 + 5 * 60).as_secs();
    assert!(
        lifetime.abs_diff(expected) <= 2,
        "NotAfter − NotBefore is {lifetime} s, expected {expected} s (1h30m TTL + 5m skew)"
    );
    assert!(
        (before - 300 - 2..=after - 300 + 1).contains(&not_before),
        "NotBefore {not_before} is not now − 5m (request between {before} and {after})"
    );
    assert!(
        (before + 5400 - 2..=after + 5400 + 1).contains(&not_after),
        "NotAfter {not_after} is not now + 1h30m (request between {before} and {after})"
    );
}

/// `dapr-injector`, `dapr-operator` and `dapr-scheduler` in Sentry's own namespace get the
/// webhook and scheduler DNS SANs; the same ids elsewhere get none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_ids_in_sentry_namespace_get_dns_sans() {
    let work = tempdir();
    let creds = tempdir();
    let warden = Warden::start_with(creds.path(), &Options::new().namespace("dapr-system"));
    let anchors = warden.trust_anchors_path();
    let csr = openssl_csr(work.path(), &OPENSSL_KEYS[3]).pem;
    let mut client = warden.client().await;

    let cases: [(&str, &str, Vec<&str>); 5] = [
        (
            "dapr-injector",
            "dapr-system",
            vec!["dapr-sidecar-injector.dapr-system.svc"],
        ),
        (
            "dapr-operator",
            "dapr-system",
            vec!["dapr-webhook.dapr-system.svc"],
        ),
        (
            "dapr-scheduler",
            "dapr-system",
            vec![
                "dapr-scheduler-server-0.dapr-scheduler-server.dapr-system.svc.localhost",
                "dapr-scheduler-server-1.dapr-scheduler-server.dapr-system.svc.localhost",
                "dapr-scheduler-server-2.dapr-scheduler-server.dapr-system.svc.localhost",
            ],
        ),
        ("dapr-injector", "default", vec![]),
        ("myapp", "dapr-system", vec![]),
    ];
    for (id, namespace, dns) in cases {
        let response = sign(&mut client, request(id, namespace, "", &csr))
            .await
            .unwrap_or_else(|s| panic!("{id} in {namespace}: {s:?}"));
        let spiffe_id = format!("spiffe://public/ns/{namespace}/{id}");
        let issued = check_response(&response, &anchors, &spiffe_id);
        let (_, uris, got_dns) = support::san_names(&issued.leaf);
        assert_eq!(uris, [spiffe_id.as_str()], "{id} in {namespace}");
        assert_eq!(got_dns, dns, "{id} in {namespace}: DNS SANs");
        for name in &dns {
            assert!(
                support::webpki_valid_for_dns(&issued.leaf, name),
                "rustls-webpki does not accept {id}'s leaf for {name}"
            );
        }
        issued.openssl_verify(work.path(), &anchors, &format!("{id}-{namespace}"));
    }
}

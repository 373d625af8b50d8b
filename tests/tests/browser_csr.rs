//! Issue 5: CSRs made in headless Chromium are verified natively. `tests/browser/bench.mjs`
//! (playwright-core, Debian's `/usr/bin/chromium`) runs `wasm/www/bench.html`, which makes CSRs
//! with warden-wasm (`generateKeyAndCsr` P-256 and Ed25519, `generateCsrWithWebCrypto`) and with
//! `@peculiar/x509` over WebCrypto, and saves one of each; every one must pass core's
//! `parse_and_verify` and `openssl req -verify`, and request the SPIFFE ID and DNS name the page
//! asked for.
//!
//! Needs `node`, Chromium (`/usr/bin/chromium`, or `WARDEN_CHROMIUM`), `openssl`, the npm
//! packages of `tests/browser` (`npm ci` is run when missing) and the wasm package, built here
//! with `scripts/wasm.sh build`. A missing tool fails the test with what to install; nothing
//! is skipped.
// The whole binary is test code: this lets clippy.toml's `allow-*-in-tests` settings cover the
// helpers outside `#[test]` functions too.
#![cfg(test)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use base64ct::Encoding as _;
use der::Decode;
use serde_json::Value;
use warden_core::crypto::KeyType;
use warden_tests::common::{openssl, read_file, run, tempdir, try_run, verified_csr};
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::request::{CertReq, ExtensionReq};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// What bench.mjs printed and where it saved the CSRs.
struct BrowserCsrs {
    _dir: tempfile::TempDir,
    out: PathBuf,
    report: Value,
}

/// Builds the wasm package and runs the benchmark page once (3 runs per case) for all tests.
fn browser_csrs() -> &'static BrowserCsrs {
    static CSRS: OnceLock<BrowserCsrs> = OnceLock::new();
    CSRS.get_or_init(|| {
        let root = repo_root();
        let node = try_run(Command::new("node").arg("--version"));
        assert!(
            node.success,
            "`node --version` failed: install Node.js (apt-get install nodejs npm): {}",
            node.combined()
        );
        let chromium = std::env::var_os("WARDEN_CHROMIUM")
            .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
        assert!(
            chromium.is_file(),
            "Chromium not found at {} (apt-get install chromium, or set WARDEN_CHROMIUM)",
            chromium.display()
        );
        let browser_dir = root.join("tests/browser");
        if !browser_dir
            .join("node_modules/@peculiar/x509/package.json")
            .is_file()
        {
            run(Command::new("npm").arg("ci").current_dir(&browser_dir));
        }
        run(Command::new("bash")
            .arg(root.join("scripts/wasm.sh"))
            .arg("build")
            .current_dir(&root));
        let dir = tempdir();
        let out = dir.path().join("csrs");
        let bench = run(Command::new("node")
            .arg(browser_dir.join("bench.mjs"))
            .args(["--runs", "3", "--out"])
            .arg(&out)
            .env("CHROMIUM", &chromium)
            .current_dir(&root));
        let report: Value = serde_json::from_str(&bench.stdout)
            .unwrap_or_else(|e| panic!("bench.mjs printed no JSON ({e}):\n{}", bench.stdout));
        BrowserCsrs {
            _dir: dir,
            out,
            report,
        }
    })
}

/// The SANs a CSR requests, as `URI:...` / `DNS:...`.
fn requested_sans(pem: &[u8]) -> Vec<String> {
    let text = std::str::from_utf8(pem).expect("PEM is text");
    let (label, der) = pem_decode(text);
    assert_eq!(label, "CERTIFICATE REQUEST");
    let request = CertReq::from_der(&der).expect("a PKCS#10 request");
    assert!(request.info.subject.is_empty(), "the subject is empty");
    let mut names = Vec::new();
    for attribute in request.info.attributes.iter() {
        for value in attribute.values.iter() {
            let extensions: ExtensionReq = value.decode_as().expect("an extensionRequest");
            for extension in extensions.0 {
                let san = SubjectAltName::from_der(extension.extn_value.as_bytes())
                    .expect("only a SAN extension is requested");
                names.extend(san.0.iter().map(|name| match name {
                    GeneralName::UniformResourceIdentifier(uri) => format!("URI:{uri}"),
                    GeneralName::DnsName(dns) => format!("DNS:{dns}"),
                    other => format!("{other:?}"),
                }));
            }
        }
    }
    names
}

/// One PEM block as (label, DER).
fn pem_decode(text: &str) -> (String, Vec<u8>) {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let label = lines
        .next()
        .and_then(|l| l.strip_prefix("-----BEGIN "))
        .and_then(|l| l.strip_suffix("-----"))
        .expect("a PEM BEGIN line")
        .to_string();
    let body: String = lines.take_while(|l| !l.starts_with("-----END ")).collect();
    let der = base64ct::Base64::decode_vec(&body).expect("PEM base64");
    (label, der)
}

/// Checks one saved CSR: core verifies it with the expected key type, openssl verifies its
/// self-signature, and it requests the page's SPIFFE ID and DNS name.
fn check(file: &str, key_type: KeyType) {
    let csrs = browser_csrs();
    let path = csrs.out.join(file);
    assert!(
        path.is_file(),
        "bench.mjs did not save {file}; it printed:\n{:#}",
        csrs.report
    );
    let pem = read_file(&path);
    let verified = verified_csr(file, &pem);
    assert_eq!(verified.key_type, key_type, "{file}");

    let out = try_run(openssl(
        &csrs.out,
        ["req", "-verify", "-noout", "-in", path.to_str().unwrap()],
    ));
    let text = out.combined();
    assert!(
        out.success && text.contains("verify OK"),
        "openssl req -verify refused {file} (exit {:?}):\n{text}",
        out.code
    );

    let spiffe_id = csrs.report["spiffeId"].as_str().expect("report.spiffeId");
    let dns_name = csrs.report["dnsName"].as_str().expect("report.dnsName");
    assert_eq!(
        requested_sans(&pem),
        [format!("URI:{spiffe_id}"), format!("DNS:{dns_name}")],
        "{file}"
    );
}

#[test]
fn wasm_p256_csr_verifies() {
    check("wasm-p256.csr", KeyType::EcdsaP256);
}

#[test]
fn wasm_ed25519_csr_verifies() {
    check("wasm-ed25519.csr", KeyType::Ed25519);
}

#[test]
fn wasm_webcrypto_csr_verifies() {
    check("wasm-webcrypto-p256.csr", KeyType::EcdsaP256);
}

#[test]
fn peculiar_p256_csr_verifies() {
    check("peculiar-p256.csr", KeyType::EcdsaP256);
}

#[test]
fn peculiar_ed25519_csr_verifies() {
    // Chromium has had Ed25519 in WebCrypto since 137; an older one reports it as unsupported.
    let report = &browser_csrs().report;
    if let Some(why) = report["results"]["peculiarEd25519"]["unsupported"].as_str() {
        panic!("this Chromium cannot make Ed25519 keys in WebCrypto: {why}");
    }
    check("peculiar-ed25519.csr", KeyType::Ed25519);
}

#[test]
fn report_has_medians_for_every_case() {
    let report = &browser_csrs().report;
    assert!(report["chromium"].as_str().is_some_and(|v| !v.is_empty()));
    for case in [
        "wasmP256",
        "wasmEd25519",
        "wasmWebCryptoP256",
        "peculiarP256",
        "peculiarEd25519",
    ] {
        let median = report["results"][case]["medianMs"].as_f64();
        assert!(
            median.is_some_and(|ms| ms >= 0.0),
            "no median for {case}: {report:#}"
        );
    }
}

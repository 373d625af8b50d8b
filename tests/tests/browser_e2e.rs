//! Issue 5 end to end: the demo page (`wasm/www`, served by `warden --ui`) in Debian's headless
//! Chromium makes the key and the CSR with warden-wasm (or WebCrypto), gets a certificate from
//! a running `warden --grpc-web` over gRPC-Web through the `jwks` validator, and shows the
//! SPIFFE ID, validity and chain check; the test reads what the page shows
//! (`tests/browser/e2e.mjs`, playwright-core) and checks it against the server's audit log and
//! its own verifiers. Also: CORS for exact origins only, the static file rules of `--ui`, and
//! that gRPC-Web (and HTTP/1.1) stay off without `--grpc-web`.
//!
//! Needs `node`, Chromium (`/usr/bin/chromium`, or `WARDEN_CHROMIUM`), `tests/browser`'s npm
//! packages (`npm ci` is run when they are missing) and the wasm package, built here with
//! `scripts/wasm.sh build`. A missing tool fails the test with what to install; nothing is
//! skipped.
// The whole binary is test code: this lets clippy.toml's `allow-*-in-tests` settings cover the
// helpers outside `#[test]` functions too.
#![cfg(test)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::SystemTime;

use base64ct::Encoding as _;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value, json};
use warden_host::proto::SignCertificateRequest;
use warden_host::proto::sign_certificate_request::TokenValidator;
use warden_tests::common::{
    OPENSSL_KEYS, openssl_csr, openssl_genpkey, openssl_key, read_file, run, tempdir, try_run,
    write_file,
};
use warden_tests::server::{Options, Warden, check_response, csr_spki_der, sign};

/// The audience every token must name: the server's SPIFFE ID (harness defaults).
const AUD: &str = "spiffe://localhost/ns/default/dapr-sentry";
/// The workload trust domain of the browser's requests (and of the tokens' `sub`).
const TD: &str = "example.org";
/// `workloadCertTTL` and `allowedClockSkew` of the test configuration, in seconds.
const TTL_SECS: u64 = 3600;
const SKEW_SECS: u64 = 120;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

// ---------------------------------------------------------------------------------------------
// Tools: node, Chromium, playwright-core, the wasm package.

/// Where Chromium is: `WARDEN_CHROMIUM` or Debian's `/usr/bin/chromium`.
fn chromium() -> PathBuf {
    std::env::var_os("WARDEN_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

/// Checks node and the npm packages once (running `npm ci` if they are missing).
fn node_ready() -> &'static () {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        let node = try_run(Command::new("node").arg("--version"));
        assert!(
            node.success,
            "`node --version` failed: install Node.js (apt-get install nodejs npm): {}",
            node.combined()
        );
        let browser_dir = repo_root().join("tests/browser");
        if !browser_dir
            .join("node_modules/playwright-core/package.json")
            .is_file()
        {
            let out = try_run(Command::new("npm").arg("ci").current_dir(&browser_dir));
            assert!(
                out.success,
                "`npm ci` in tests/browser failed (playwright-core is needed to drive Chromium): {}",
                out.combined()
            );
        }
    })
}

/// Builds the wasm package with `scripts/wasm.sh build` once (idempotent) and checks Chromium.
fn browser_ready() -> &'static () {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        node_ready();
        let chromium = chromium();
        assert!(
            chromium.is_file(),
            "Chromium not found at {} (set WARDEN_CHROMIUM or apt-get install chromium chromium-driver)",
            chromium.display()
        );
        let root = repo_root();
        let script = root.join("scripts/wasm.sh");
        assert!(
            script.is_file(),
            "{} is missing: the demo page needs the warden-wasm package it builds",
            script.display()
        );
        run(Command::new("bash")
            .arg(&script)
            .arg("build")
            .current_dir(&root));
        for file in ["warden_wasm.js", "warden_wasm_bg.wasm"] {
            let path = root.join("wasm/www/pkg").join(file);
            assert!(
                path.is_file(),
                "scripts/wasm.sh build did not produce {}",
                path.display()
            );
        }
    })
}

/// Runs `tests/browser/e2e.mjs` with this spec and returns its JSON output.
fn drive(spec: &Value) -> Value {
    let dir = tempdir();
    let spec_file = write_file(dir.path(), "spec.json", spec.to_string());
    let out = try_run(
        Command::new("node")
            .arg(repo_root().join("tests/browser/e2e.mjs"))
            .arg(&spec_file),
    );
    assert!(
        out.success,
        "tests/browser/e2e.mjs failed (exit {:?}):\n{}",
        out.code,
        out.combined()
    );
    serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("e2e.mjs printed no JSON ({e}):\n{}", out.combined()))
}

/// The entries of `key` in the driver's output, by name.
fn by_name<'a>(output: &'a Value, key: &str, name: &str) -> &'a Map<String, Value> {
    output[key]
        .as_array()
        .and_then(|a| a.iter().find(|r| r["name"] == name))
        .and_then(Value::as_object)
        .unwrap_or_else(|| panic!("no {key} entry named {name:?} in {output}"))
}

fn text<'a>(entry: &'a Map<String, Value>, field: &str) -> &'a str {
    entry.get(field).and_then(Value::as_str).unwrap_or("")
}

// ---------------------------------------------------------------------------------------------
// The jwks validator: one P-256 key in a file.

struct TokenKey {
    encoding: EncodingKey,
    jwks: String,
}

impl TokenKey {
    fn generate(dir: &Path) -> Self {
        openssl_genpkey(dir, openssl_key("p256"), "jwt.key");
        let encoding = EncodingKey::from_ec_pem(&read_file(&dir.join("jwt.key"))).unwrap();
        let mut jwk = Jwk::from_encoding_key(&encoding, Algorithm::ES256).unwrap();
        jwk.common.key_id = Some("browser".into());
        let jwks = serde_json::to_string(&JwkSet { keys: vec![jwk] }).unwrap();
        Self { encoding, jwks }
    }

    /// A token whose `sub` is `spiffe://<TD>/ns/<namespace>/<app>`.
    fn token(&self, namespace: &str, app: &str) -> String {
        let now = unix_now();
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("browser".into());
        let claims = json!({
            "aud": [AUD],
            "sub": format!("spiffe://{TD}/ns/{namespace}/{app}"),
            "iat": now,
            "nbf": now,
            "exp": now + 600,
        });
        jsonwebtoken::encode(&header, &claims, &self.encoding).unwrap()
    }
}

/// A Dapr Configuration: TTL 1h, skew 2m, only the jwks validator reading `jwks_file`.
fn write_config(dir: &Path, jwks_file: &Path) -> PathBuf {
    let yaml = format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: daprsystem\n\
         spec:\n  mtls:\n    enabled: true\n    workloadCertTTL: {TTL_SECS}s\n    \
         allowedClockSkew: {SKEW_SECS}s\n    tokenValidators:\n      - name: jwks\n        \
         options:\n          source: {}\n",
        serde_json::to_string(jwks_file.to_str().unwrap()).unwrap()
    );
    write_file(dir, "config.yaml", yaml)
}

/// A `warden` as the browser tests run it, and what must live as long as it.
struct BrowserCa {
    warden: Warden,
    /// Signs the tokens its jwks validator accepts.
    key: TokenKey,
    _creds: tempfile::TempDir,
}

/// Starts a `warden` with gRPC-Web on, `ui` served, `allowed_origins` and the jwks validator
/// (a fresh key, its key set and config written to `work`); `extra` are further flags.
fn start_browser_ca(work: &Path, ui: &str, allowed_origins: &str, extra: &[&str]) -> BrowserCa {
    let key = TokenKey::generate(work);
    let jwks_file = write_file(work, "jwks.json", &key.jwks);
    let config = write_config(work, &jwks_file);
    let creds = tempdir();
    let mut args = vec![
        "--config",
        config.to_str().unwrap(),
        "--grpc-web",
        "--ui",
        ui,
        "--allowed-origins",
        allowed_origins,
    ];
    args.extend_from_slice(extra);
    let warden = Warden::start_with(creds.path(), &Options::new().args(args));
    BrowserCa {
        warden,
        key,
        _creds: creds,
    }
}

/// The audit log's lines.
fn audit_lines(path: &Path) -> Vec<Map<String, Value>> {
    String::from_utf8(read_file(path))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter_map(|v| v.as_object().cloned())
        .collect()
}

/// Hex digits only, lower case, no leading zeros: serials as the page, the audit log and the
/// certificate may print them.
fn normalise_serial(s: &str) -> String {
    let hex: String = s
        .chars()
        .filter(char::is_ascii_hexdigit)
        .collect::<String>()
        .to_ascii_lowercase();
    let trimmed = hex.trim_start_matches('0');
    if trimmed.is_empty() {
        "0".into()
    } else {
        trimmed.into()
    }
}

// ---------------------------------------------------------------------------------------------
// The browser.

/// The time window the driver ran in (Unix seconds).
#[derive(Clone, Copy)]
struct Window {
    started: u64,
    finished: u64,
}

/// What the page shows for a certificate it got: its validity as configured (NotBefore =
/// now − skew, NotAfter = now + TTL). Returns NotAfter (Unix seconds).
fn shown_validity_is_as_configured(
    shown: &Map<String, Value>,
    context: &str,
    window: Window,
) -> u64 {
    let Window { started, finished } = window;
    let not_before = shown["notBeforeMs"].as_u64().expect("NotBefore shown") / 1000;
    let not_after = shown["notAfterMs"].as_u64().expect("NotAfter shown") / 1000;
    assert_eq!(not_after - not_before, TTL_SECS + SKEW_SECS, "{context}");
    assert!(
        (started + TTL_SECS - 1..=finished + TTL_SECS + 1).contains(&not_after),
        "NotAfter {not_after} is not about now + {TTL_SECS}s ({started}..{finished}); {context}"
    );
    assert_eq!(
        shown["validUntilMs"].as_u64(),
        Some(not_after * 1000),
        "{context}"
    );
    not_after
}

/// The same PEM the page got, through the harness's Sentry-shape and verifier checks; the
/// certified key is the one the browser made (the CSR's public key). Returns the leaf's serial
/// in hex.
fn shown_certificate_passes_the_harness_checks(
    shown: &Map<String, Value>,
    context: &str,
    anchors_file: &Path,
    expected_id: &str,
    not_after: u64,
) -> String {
    let mut response = warden_host::proto::SignCertificateResponse {
        workload_certificate: text(shown, "certificatePem").as_bytes().to_vec(),
        trust_chain_certificates: vec![text(shown, "anchorsPem").as_bytes().to_vec()],
        ..Default::default()
    };
    let mut valid_until = response.valid_until.take().unwrap_or_default();
    valid_until.seconds = i64::try_from(not_after).unwrap();
    response.valid_until = Some(valid_until);
    let issued = check_response(&response, anchors_file, expected_id);
    assert_eq!(
        issued.leaf_spki_der(),
        csr_spki_der(text(shown, "csrPem").as_bytes()),
        "{context}"
    );
    issued
        .leaf
        .tbs_certificate()
        .serial_number()
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
}

/// The audit log saw the certificate the page shows (serial `leaf_serial`) for `app`.
fn audit_saw_the_shown_certificate(
    audit: &[Map<String, Value>],
    app: &str,
    expected_id: &str,
    (shown, context): (&Map<String, Value>, &str),
    leaf_serial: &str,
) {
    let line = audit
        .iter()
        .find(|l| l["app_id"] == app)
        .unwrap_or_else(|| panic!("no audit line for {app}: {audit:?}"));
    assert_eq!(line["outcome"], "issued", "{context}");
    assert_eq!(line["spiffe_id"], expected_id, "{context}");
    assert_eq!(line["validator"], "jwks", "{context}");
    let audit_serial = normalise_serial(line["serial"].as_str().unwrap());
    assert_eq!(
        normalise_serial(text(shown, "serial")),
        audit_serial,
        "{context}"
    );
    assert_eq!(normalise_serial(leaf_serial), audit_serial, "{context}");
}

/// Case `name` (app `app`) got a certificate for its key (`key_hint` shown), checked by the
/// page, the harness and the audit log, over h2.
fn issued_case_is_right(
    output: &Value,
    audit: &[Map<String, Value>],
    anchors_file: &Path,
    (name, app, key_hint): (&str, &str, &str),
    window: Window,
) {
    let shown = by_name(output, "results", name);
    let context = format!("case {name}: {}", Value::Object(shown.clone()));
    assert_eq!(text(shown, "status"), "done", "{context}");
    let expected_id = format!("spiffe://{TD}/ns/default/{app}");
    assert_eq!(text(shown, "spiffeId"), expected_id, "{context}");
    assert!(shown["chainOk"] == true, "{context}");
    assert!(text(shown, "chainResult").starts_with("ok"), "{context}");
    assert!(text(shown, "keyInfo").contains(key_hint), "{context}");
    assert!(!text(shown, "issuer").is_empty(), "{context}");
    let not_after = shown_validity_is_as_configured(shown, &context, window);
    let leaf_serial = shown_certificate_passes_the_harness_checks(
        shown,
        &context,
        anchors_file,
        &expected_id,
        not_after,
    );
    audit_saw_the_shown_certificate(audit, app, &expected_id, (shown, &context), &leaf_serial);
    assert!(
        shown["protocols"]
            .as_array()
            .is_some_and(|p| p.iter().all(|p| p == "h2")),
        "Chromium should speak h2 (ALPN): {context}"
    );
}

/// Not an allowed origin: the preflight gets no CORS headers, so the browser never sends the
/// request; the page says it cannot reach the CA and the server saw nothing.
fn blocked_origin_never_reaches_the_ca(output: &Value, audit: &[Map<String, Value>]) {
    let blocked = by_name(output, "results", "blocked-origin");
    assert_eq!(text(blocked, "status"), "error", "{blocked:?}");
    assert_eq!(text(blocked, "errorCode"), "UNAVAILABLE", "{blocked:?}");
    assert!(
        text(blocked, "error").contains("cannot reach"),
        "{blocked:?}"
    );
    assert!(
        audit.iter().all(|l| l["app_id"] != "web-blocked"),
        "a blocked cross-origin request reached the CA: {audit:?}"
    );
}

/// Refusals: the page shows the gRPC code and Sentry's message, as audited.
fn refusals_show_the_audited_message(output: &Value, audit: &[Map<String, Value>]) {
    for (name, app, code, needle) in [
        ("wrong-token", "web-refused", "PERMISSION_DENIED", "sub"),
        (
            "validator-off",
            "web-insecure",
            "INVALID_ARGUMENT",
            "the requested validator is not enabled",
        ),
    ] {
        let shown = by_name(output, "results", name);
        assert_eq!(text(shown, "status"), "error", "{name}: {shown:?}");
        assert_eq!(text(shown, "errorCode"), code, "{name}: {shown:?}");
        let error = text(shown, "error");
        assert!(error.contains(needle), "{name}: {error:?}");
        assert!(text(shown, "spiffeId").is_empty(), "{name}: {shown:?}");
        if let Some(line) = audit.iter().find(|l| l["app_id"] == app) {
            assert_eq!(line["outcome"], "refused", "{name}: {line:?}");
            let message = line["message"].as_str().unwrap_or("");
            assert_eq!(error, format!("{code}: {message}"), "{name}: {line:?}");
        } else {
            assert_eq!(name, "validator-off", "no audit line for {app}: {audit:?}");
        }
    }
}

/// p256, ed25519 and WebCrypto keys from the page served by `--ui` (same origin), the same
/// page from another allowed origin, a page from an origin that is not allowed (the browser
/// blocks it), and two refusals shown with Sentry's message on the page.
#[tokio::test(flavor = "multi_thread")]
async fn demo_page_gets_certificates_over_grpc_web() {
    browser_ready();
    let work = tempdir();
    let ui = repo_root().join("wasm/www");
    let ui = ui.to_str().unwrap();

    // A second server only serves the page: a different origin for the CORS cases.
    let page_creds = tempdir();
    let page_server = Warden::start_with(page_creds.path(), &Options::new().args(["--ui", ui]));
    let allowed_origin = format!("https://127.0.0.1:{}", page_server.port);
    let blocked_origin = format!("https://localhost:{}", page_server.port);

    let audit = work.path().join("audit.log");
    let BrowserCa {
        warden,
        key,
        _creds,
    } = start_browser_ca(
        work.path(),
        ui,
        &allowed_origin,
        &["--audit-log", audit.to_str().unwrap()],
    );
    let ca_origin = format!("https://127.0.0.1:{}", warden.port);
    let same_origin_page = format!("{ca_origin}/");

    let case = |name: &str,
                page: &str,
                ca: &str,
                app: &str,
                key_type: &str,
                token: &str,
                validator: i32| {
        json!({
            "name": name, "pageUrl": page, "caUrl": ca, "appId": app, "namespace": "default",
            "trustDomain": TD, "token": token, "validator": validator, "keyType": key_type,
        })
    };
    let jwks = i32::from(TokenValidator::Jwks);
    let insecure = i32::from(TokenValidator::Insecure);
    let started = unix_now();
    let output = drive(&json!({
        "chromium": chromium(),
        "cases": [
            case("p256", &same_origin_page, "", "web-p256", "p256", &key.token("default", "web-p256"), jwks),
            case("ed25519", &same_origin_page, "", "web-ed25519", "ed25519", &key.token("default", "web-ed25519"), jwks),
            case("webcrypto", &same_origin_page, "", "web-webcrypto", "webcrypto-p256", &key.token("default", "web-webcrypto"), jwks),
            case("cross-origin", &format!("{allowed_origin}/"), &ca_origin, "web-cors", "p256", &key.token("default", "web-cors"), jwks),
            case("blocked-origin", &format!("{blocked_origin}/"), &ca_origin, "web-blocked", "p256", &key.token("default", "web-blocked"), jwks),
            case("wrong-token", &same_origin_page, "", "web-refused", "p256", &key.token("default", "someone-else"), jwks),
            case("validator-off", &same_origin_page, "", "web-insecure", "p256", "", insecure),
        ],
    }));
    let finished = unix_now();
    let audit = audit_lines(&audit);
    let anchors_file = warden.trust_anchors_path();
    let window = Window { started, finished };
    for case in [
        ("p256", "web-p256", "ECDSA P-256"),
        ("ed25519", "web-ed25519", "Ed25519"),
        ("webcrypto", "web-webcrypto", "extractable: false"),
        ("cross-origin", "web-cors", "ECDSA P-256"),
    ] {
        issued_case_is_right(&output, &audit, &anchors_file, case, window);
    }
    blocked_origin_never_reaches_the_ca(&output, &audit);
    refusals_show_the_audited_message(&output, &audit);
}

// ---------------------------------------------------------------------------------------------
// HTTP rules without a browser.

/// A UI directory in `work` with one file of each kind, next to a secret it must not reach
/// (outside it, and through a symbolic link).
fn ui_dir_next_to_a_secret(work: &Path) -> PathBuf {
    let ui = work.join("ui");
    std::fs::create_dir_all(ui.join("pkg")).unwrap();
    write_file(&ui, "index.html", "<!doctype html><title>ui</title>");
    write_file(&ui.join("pkg"), "m.wasm", b"\0asm\x01\0\0\0");
    write_file(&ui.join("pkg"), "m.js", "export {};");
    write_file(&ui, ".hidden.js", "secret");
    write_file(&ui, "notes.rs", "secret");
    write_file(work, "secret.txt", "secret");
    std::os::unix::fs::symlink(work.join("secret.txt"), ui.join("link.txt")).unwrap();
    ui
}

/// The HTTP requests of the rules test: CORS preflights, static files and gRPC-Web POSTs to the
/// server with `--grpc-web` (origin `on`, allowing `allowed`) and the one without (`off`).
fn http_rule_requests(on: &str, off: &str, allowed: &str) -> Value {
    let path = "/dapr.proto.sentry.v1.CA/SignCertificate";
    let preflight = |name: &str, origin: &str| {
        json!({
            "name": name, "origin": on, "method": "OPTIONS", "path": path,
            "headers": {
                "origin": origin,
                "access-control-request-method": "POST",
                "access-control-request-headers": "content-type,x-grpc-web,x-user-agent",
            },
        })
    };
    let get = |name: &str, origin: &str, path: &str| json!({ "name": name, "origin": origin, "method": "GET", "path": path });
    // An empty SignCertificateRequest in one gRPC-Web frame.
    let empty_frame = base64ct::Base64::encode_string(&[0u8; 5]);
    let grpc_web_post = |name: &str, origin: &str, http1: bool| {
        json!({
            "name": name, "origin": origin, "method": "POST", "path": path, "http1": http1,
            "headers": { "content-type": "application/grpc-web+proto", "x-grpc-web": "1" },
            "bodyBase64": empty_frame,
        })
    };
    json!({
        "requests": [
            preflight("preflight-allowed", allowed),
            preflight("preflight-other", "https://evil.example.com"),
            preflight("preflight-ci", "https://APP.example.com"),
            get("index", on, "/"),
            get("wasm", on, "/pkg/m.wasm"),
            get("js", on, "/pkg/m.js"),
            get("dotdot", on, "/../secret.txt"),
            get("dotdot-deep", on, "/pkg/../../secret.txt"),
            get("encoded", on, "/%2e%2e/secret.txt"),
            get("hidden", on, "/.hidden.js"),
            get("unlisted-type", on, "/notes.rs"),
            get("symlink-out", on, "/link.txt"),
            get("directory", on, "/pkg"),
            get("missing", on, "/nope.js"),
            grpc_web_post("grpc-web-on", on, false),
            grpc_web_post("grpc-web-on-http1", on, true),
            grpc_web_post("grpc-web-off", off, false),
            grpc_web_post("grpc-web-off-http1", off, true),
            get("ui-without-grpc-web", off, "/"),
        ],
    })
}

/// A response header the driver recorded.
fn header(entry: &Map<String, Value>, name: &str) -> Option<String> {
    entry
        .get("headers")
        .and_then(|h| h.get(name))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// CORS: exact origins only.
fn cors_allows_exact_origins_only(output: &Value, allowed: &str) {
    let ok = by_name(output, "requests", "preflight-allowed");
    assert_eq!(ok["status"], 200, "{ok:?}");
    assert_eq!(
        header(ok, "access-control-allow-origin").as_deref(),
        Some(allowed),
        "{ok:?}"
    );
    let methods = header(ok, "access-control-allow-methods").unwrap_or_default();
    assert!(methods.contains("POST"), "{ok:?}");
    let allowed_headers = header(ok, "access-control-allow-headers").unwrap_or_default();
    for h in ["content-type", "x-grpc-web", "x-user-agent"] {
        assert!(allowed_headers.contains(h), "{h} not allowed: {ok:?}");
    }
    for name in ["preflight-other", "preflight-ci"] {
        let other = by_name(output, "requests", name);
        assert_eq!(
            header(other, "access-control-allow-origin"),
            None,
            "{name} must not be allowed: {other:?}"
        );
    }
}

/// Static files: the right types, nothing else.
fn static_files_of_known_types_only(output: &Value) {
    for (name, content_type) in [
        ("index", "text/html; charset=utf-8"),
        ("wasm", "application/wasm"),
        ("js", "text/javascript; charset=utf-8"),
        ("ui-without-grpc-web", "text/html; charset=utf-8"),
    ] {
        let r = by_name(output, "requests", name);
        assert_eq!(r["status"], 200, "{name}: {r:?}");
        assert_eq!(
            header(r, "content-type").as_deref(),
            Some(content_type),
            "{name}: {r:?}"
        );
        assert_eq!(
            header(r, "x-content-type-options").as_deref(),
            Some("nosniff"),
            "{name}"
        );
    }
    for name in [
        "dotdot",
        "dotdot-deep",
        "encoded",
        "hidden",
        "unlisted-type",
        "symlink-out",
        "directory",
        "missing",
    ] {
        let r = by_name(output, "requests", name);
        assert_eq!(r["status"], 404, "{name}: {r:?}");
        assert!(!text(r, "body").contains("secret"), "{name}: {r:?}");
    }
}

/// gRPC-Web reaches the CA with --grpc-web (h2 and HTTP/1.1): the empty request is refused by
/// the CA itself, in gRPC-Web form. Without it: grpc-go's answer to a non-gRPC content type,
/// and no HTTP/1.1 at all.
fn grpc_web_only_with_the_flag(output: &Value) {
    let req = |name: &str| by_name(output, "requests", name);
    for name in ["grpc-web-on", "grpc-web-on-http1"] {
        let r = req(name);
        assert_eq!(r["status"], 200, "{name}: {r:?}");
        assert_eq!(
            header(r, "content-type").as_deref(),
            Some("application/grpc-web+proto"),
            "{name}: {r:?}"
        );
        assert!(header(r, "grpc-status").is_some(), "{name}: {r:?}");
    }
    assert_eq!(req("grpc-web-on-http1")["httpVersion"], "1.1");
    let off_h2 = req("grpc-web-off");
    assert_eq!(off_h2["status"], 415, "{off_h2:?}");
    assert_eq!(
        header(off_h2, "grpc-status").as_deref(),
        Some("3"),
        "{off_h2:?}"
    );
    assert!(
        header(off_h2, "grpc-message")
            .unwrap_or_default()
            .contains("invalid gRPC request content-type"),
        "{off_h2:?}"
    );
    let off_h1 = req("grpc-web-off-http1");
    assert!(
        off_h1.get("status").is_none() && !text(off_h1, "error").is_empty(),
        "HTTP/1.1 must be refused at the TLS handshake without --grpc-web: {off_h1:?}"
    );
}

/// Plain gRPC still works with --grpc-web on.
async fn plain_grpc_works_with_grpc_web_on(work: &Path, warden: &Warden, key: &TokenKey) {
    let csr = openssl_csr(work, &OPENSSL_KEYS[0]).pem;
    let mut client = warden.client().await;
    let response = sign(
        &mut client,
        SignCertificateRequest {
            id: "grpc-app".into(),
            namespace: "default".into(),
            trust_domain: TD.into(),
            token: key.token("default", "grpc-app"),
            token_validator: TokenValidator::Jwks.into(),
            certificate_signing_request: csr,
            ..Default::default()
        },
    )
    .await
    .unwrap_or_else(|e| panic!("plain gRPC with --grpc-web on: {e:?}"));
    check_response(
        &response,
        &warden.trust_anchors_path(),
        &format!("spiffe://{TD}/ns/default/grpc-app"),
    );
}

/// CORS preflights from an allowed and another origin; `--ui` serves only plain paths of known
/// types inside its directory; gRPC-Web and HTTP/1.1 are refused without `--grpc-web`; plain
/// gRPC still works with it on.
#[tokio::test(flavor = "multi_thread")]
async fn grpc_web_cors_and_static_file_rules() {
    node_ready();
    let work = tempdir();
    let ui = ui_dir_next_to_a_secret(work.path());
    let ui = ui.to_str().unwrap();

    let allowed = "https://app.example.com";
    let BrowserCa {
        warden,
        key,
        _creds,
    } = start_browser_ca(
        work.path(),
        ui,
        &format!("{allowed}, http://localhost:3000"),
        &[],
    );
    let plain_creds = tempdir();
    let plain = Warden::start_with(plain_creds.path(), &Options::new().args(["--ui", ui]));
    let on = format!("https://127.0.0.1:{}", warden.port);
    let off = format!("https://127.0.0.1:{}", plain.port);
    let output = drive(&http_rule_requests(&on, &off, allowed));

    cors_allows_exact_origins_only(&output, allowed);
    static_files_of_known_types_only(&output);
    grpc_web_only_with_the_flag(&output);
    plain_grpc_works_with_grpc_web_on(work.path(), &warden, &key).await;
}

/// Malformed browser flags stop the start with a fatal line naming the flag.
#[test]
fn bad_web_flags_are_fatal() {
    let work = tempdir();
    let no_index = work.path().join("empty");
    std::fs::create_dir_all(&no_index).unwrap();
    for (args, needles) in [
        (
            vec![
                "--grpc-web",
                "--allowed-origins",
                "https://app.example.com/",
            ],
            vec!["--allowed-origins", "https://app.example.com/"],
        ),
        (
            vec!["--grpc-web", "--allowed-origins", "*"],
            vec!["--allowed-origins", "wildcard"],
        ),
        (
            vec!["--grpc-web", "--allowed-origins", "app.example.com"],
            vec!["--allowed-origins", "scheme"],
        ),
        (
            vec!["--allowed-origins", "https://app.example.com"],
            vec!["--allowed-origins", "--grpc-web"],
        ),
        (
            vec!["--ui", "/nonexistent/warden-ui"],
            vec!["--ui", "/nonexistent/warden-ui"],
        ),
        (
            vec!["--ui", no_index.to_str().unwrap()],
            vec!["--ui", "index.html"],
        ),
    ] {
        let creds = tempdir();
        let exited = Warden::start_failure(creds.path(), &Options::new().args(args.clone()));
        exited.assert_fatal(&needles);
        assert!(
            std::fs::read_dir(creds.path()).unwrap().next().is_none(),
            "{args:?}: nothing may be written when the flags are refused"
        );
    }
}

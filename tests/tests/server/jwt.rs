//! JWT-SVIDs and OIDC discovery over a real server (issue 9): the `jwt` and
//! `per_audience_jwts` of a response verify against the JWKS the OIDC server publishes
//! (jsonwebtoken's JWK path) and, independently, with the openssl CLI against the public key
//! openssl derives from `jwt.key`, for RS256, ES256 and EdDSA; claims exact; discovery document,
//! host allow-list, method and path restrictions, HTTPS; key rotation keeps old tokens valid.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

use base64ct::{Base64UrlUnpadded, Encoding as _};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use serde_json::{Value, json};
use warden_host::proto::SignCertificateRequest;
use warden_tests::common::{
    OPENSSL_KEYS, openssl, openssl_csr, openssl_genpkey, run, tempdir, try_run, write_file,
};
use warden_tests::server::{Options, Warden, request, sign};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.1 exchange by hand: status, lower-cased head, body.
fn http(port: u16, method: &str, path: &str, host: &str) -> (u16, String, String) {
    http_with(port, method, path, &[("Host", host)])
}

/// [`http`] with the given header lines (`Host` included) in this order.
fn http_with(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String, String) {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(
            format!(
                "{method} {path} HTTP/1.1\r\n{}Content-Length: 0\r\nConnection: close\r\n\r\n",
                headers
                    .iter()
                    .map(|(name, value)| format!("{name}: {value}\r\n"))
                    .collect::<String>()
            )
            .as_bytes(),
        )
        .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_owned())
}

fn get_json(port: u16, path: &str) -> Value {
    let (status, head, body) = http(port, "GET", path, &format!("127.0.0.1:{port}"));
    assert_eq!(status, 200, "GET {path}: {head}\n{body}");
    assert!(
        head.contains("cache-control: public, max-age=3600"),
        "{head}"
    );
    assert!(head.contains("content-type: application/json"), "{head}");
    serde_json::from_str(&body).unwrap()
}

fn oidc_args(alg: &str, port: u16) -> Vec<String> {
    [
        "--jwt-enabled",
        "--jwt-signing-algorithm",
        alg,
        "--oidc-enabled",
        "--oidc-server-tls-enabled=false",
        "--oidc-server-listen-address",
        "127.0.0.1",
        "--oidc-server-listen-port",
        &port.to_string(),
    ]
    .into_iter()
    .map(str::to_owned)
    .collect()
}

fn jwt_request(csr: &[u8], audiences: &[&str]) -> SignCertificateRequest {
    SignCertificateRequest {
        jwt_audiences: audiences.iter().map(|a| (*a).to_owned()).collect(),
        ..request("app-1", "ns-1", "", csr)
    }
}

/// Verifies `token` with the key of its `kid` in `jwks` (jsonwebtoken's JWK path) and returns
/// the header and claims.
fn verify_with_jwks(jwks: &Value, token: &str, audience: &str) -> (jsonwebtoken::Header, Value) {
    let set: JwkSet = serde_json::from_value(jwks.clone()).unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
    let kid = header.kid.clone().expect("kid");
    let jwk = set
        .find(&kid)
        .unwrap_or_else(|| panic!("kid {kid} not in {jwks}"));
    let key = DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = Validation::new(header.alg);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "nbf", "aud", "sub"]);
    let claims = jsonwebtoken::decode::<Value>(token, &key, &validation)
        .unwrap_or_else(|e| panic!("{token} does not verify: {e}"))
        .claims;
    (header, claims)
}

/// DER of an ECDSA signature from JOSE's fixed r || s.
fn ecdsa_der(raw: &[u8]) -> Vec<u8> {
    fn int(bytes: &[u8]) -> Vec<u8> {
        let mut v: Vec<u8> = bytes.iter().copied().skip_while(|b| *b == 0).collect();
        if v.first().is_none_or(|b| *b & 0x80 != 0) {
            v.insert(0, 0);
        }
        let mut out = vec![0x02, u8::try_from(v.len()).unwrap()];
        out.extend(v);
        out
    }
    let mut body = int(&raw[..32]);
    body.extend(int(&raw[32..]));
    let mut out = vec![0x30, u8::try_from(body.len()).unwrap()];
    out.extend(body);
    out
}

/// The second, independent check: openssl verifies the signature over `header.payload` with
/// the public key it derives itself from `jwt.key`.
fn openssl_verify(dir: &Path, key_file: &Path, token: &str, alg: &str) {
    let (input, sig) = token.rsplit_once('.').unwrap();
    let sig = Base64UrlUnpadded::decode_vec(sig).unwrap();
    write_file(dir, "input", input);
    run(openssl(
        dir,
        [
            "pkey",
            "-in",
            key_file.to_str().unwrap(),
            "-pubout",
            "-out",
            "pub.pem",
        ],
    ));
    let out = match alg {
        "RS256" | "ES256" => {
            let sig = if alg == "ES256" { ecdsa_der(&sig) } else { sig };
            write_file(dir, "sig", sig);
            run(openssl(
                dir,
                [
                    "dgst",
                    "-sha256",
                    "-verify",
                    "pub.pem",
                    "-signature",
                    "sig",
                    "input",
                ],
            ))
        }
        _ => {
            write_file(dir, "sig", sig);
            run(openssl(
                dir,
                [
                    "pkeyutl", "-verify", "-pubin", "-inkey", "pub.pem", "-rawin", "-in", "input",
                    "-sigfile", "sig",
                ],
            ))
        }
    };
    assert!(out.combined().contains("Verified"), "{}", out.combined());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_verify_against_the_published_jwks_for_every_algorithm() {
    let work = tempdir();
    let csr = openssl_csr(work.path(), &OPENSSL_KEYS[0]).pem;
    for (alg, key_type) in [("RS256", "RSA"), ("ES256", "EC"), ("EdDSA", "OKP")] {
        let creds = tempdir();
        let port = free_port();
        let mut args = oidc_args(alg, port);
        args.extend(["--jwt-issuer".into(), "https://issuer.example".into()]);
        let warden = Warden::start_with(creds.path(), &Options::new().args(args));
        // jwt.key (PKCS#8, 0600) and jwks.json were generated beside the other credentials.
        let key_file = creds.path().join("jwt.key");
        let key_pem = std::fs::read_to_string(&key_file).unwrap();
        assert!(key_pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{alg}");
        for name in ["jwt.key", "jwks.json"] {
            let mode = std::fs::metadata(creds.path().join(name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{alg} {name}");
        }

        let mut client = warden.client().await;
        let before = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let response = sign(&mut client, jwt_request(&csr, &["aud-a", "aud-b"]))
            .await
            .unwrap();
        let after = before + 2;
        let jwks = get_json(port, "/jwks.json");
        let on_disk: Value =
            serde_json::from_slice(&std::fs::read(creds.path().join("jwks.json")).unwrap())
                .unwrap();
        assert_eq!(jwks, on_disk, "{alg}: served JWKS = jwks.json");
        let keys = jwks["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 1, "{alg}: {jwks}");
        assert_eq!(keys[0]["kty"], key_type);
        assert_eq!(keys[0]["alg"], alg);
        assert_eq!(keys[0]["use"], "sig");

        let token = response.jwt.clone().expect("jwt");
        let (header, claims) = verify_with_jwks(&jwks, &token, "public");
        assert_eq!(header.typ.as_deref(), Some("JWT"));
        assert_eq!(json!(header.kid), keys[0]["kid"]);
        let object = claims.as_object().unwrap();
        let mut names: Vec<&str> = object.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            ["aud", "exp", "iat", "iss", "jti", "nbf", "sub", "use"],
            "{alg}"
        );
        assert_eq!(claims["sub"], "spiffe://public/ns/ns-1/app-1");
        assert_eq!(claims["aud"], json!(["public", "aud-a", "aud-b"]));
        assert_eq!(claims["iss"], "https://issuer.example");
        assert_eq!(claims["use"], "sig");
        let iat = claims["iat"].as_u64().unwrap();
        assert!((before..=after).contains(&iat), "{alg}: iat {iat}");
        assert_eq!(
            claims["nbf"].as_u64().unwrap(),
            iat - 15 * 60,
            "default skew"
        );
        assert_eq!(
            claims["exp"].as_u64().unwrap(),
            iat + 24 * 3600,
            "--jwt-ttl 24h"
        );
        let jti = claims["jti"].as_str().unwrap();
        assert!(
            jti.len() == 32 && jti.bytes().all(|b| b.is_ascii_hexdigit()),
            "{jti}"
        );
        openssl_verify(work.path(), &key_file, &token, alg);

        // One token per requested audience, each carrying only it.
        let mut audiences: Vec<&String> = response.per_audience_jwts.keys().collect();
        audiences.sort_unstable();
        assert_eq!(audiences, ["aud-a", "aud-b"]);
        let mut jtis = vec![jti.to_owned()];
        for (audience, token) in &response.per_audience_jwts {
            let (_, claims) = verify_with_jwks(&jwks, token, audience);
            assert_eq!(claims["aud"], json!([audience]), "{alg}");
            assert_eq!(claims["sub"], "spiffe://public/ns/ns-1/app-1");
            jtis.push(claims["jti"].as_str().unwrap().to_owned());
            openssl_verify(work.path(), &key_file, token, alg);
        }
        jtis.sort_unstable();
        jtis.dedup();
        assert_eq!(jtis.len(), 3, "jti is random per token");

        // No audiences asked: the trust domain only, and no per-audience tokens.
        let plain = sign(&mut client, jwt_request(&csr, &[])).await.unwrap();
        let (_, claims) = verify_with_jwks(&jwks, &plain.jwt.unwrap(), "public");
        assert_eq!(claims["aud"], json!(["public"]));
        assert!(plain.per_audience_jwts.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_jwt_enabled_responses_carry_no_tokens() {
    let work = tempdir();
    let creds = tempdir();
    let csr = openssl_csr(work.path(), &OPENSSL_KEYS[0]).pem;
    let warden = Warden::start(creds.path());
    let mut client = warden.client().await;
    let response = sign(&mut client, jwt_request(&csr, &["aud-a"]))
        .await
        .unwrap();
    assert!(response.jwt.is_none());
    assert!(response.per_audience_jwts.is_empty());
    assert!(!creds.path().join("jwt.key").exists());
}

#[test]
fn discovery_document_host_allow_list_and_methods() {
    let creds = tempdir();
    let port = free_port();
    let mut args = oidc_args("ES256", port);
    args.extend(
        [
            "--oidc-path-prefix",
            "/oidc/",
            "--oidc-allowed-hosts",
            "127.0.0.1,sentry.example",
        ]
        .map(str::to_owned),
    );
    let warden = Warden::start_with(creds.path(), &Options::new().args(args));
    let doc = get_json(port, "/oidc/.well-known/openid-configuration");
    let base = format!("http://127.0.0.1:{port}/oidc");
    assert_eq!(doc["issuer"], base, "no --jwt-issuer: the server's own URL");
    assert_eq!(doc["jwks_uri"], format!("{base}/jwks.json"));
    assert_eq!(doc["response_types_supported"], json!(["id_token"]));
    assert_eq!(doc["subject_types_supported"], json!(["public"]));
    assert_eq!(
        doc["id_token_signing_alg_values_supported"],
        json!(["ES256"])
    );
    assert_eq!(doc["scopes_supported"], json!(["openid"]));
    assert_eq!(
        doc["claims_supported"],
        json!(["sub", "iss", "aud", "exp", "iat", "nbf", "use"])
    );
    // jwks_uri points at the served key set.
    let jwks_path = doc["jwks_uri"]
        .as_str()
        .unwrap()
        .strip_prefix(&format!("http://127.0.0.1:{port}"))
        .unwrap()
        .to_owned();
    let jwks = get_json(port, &jwks_path);
    assert_eq!(jwks["keys"][0]["alg"], "ES256");

    let host = format!("127.0.0.1:{port}");
    let (status, _, _) = http(port, "GET", "/oidc/jwks.json", "sentry.example");
    assert_eq!(status, 200, "an allowed host name");
    let (status, _, _) = http(port, "GET", "/oidc/jwks.json", "evil.example");
    assert_eq!(status, 403, "a host outside the allow-list");
    let (status, _, _) = http(
        port,
        "GET",
        "/oidc/.well-known/openid-configuration",
        "evil.example:9080",
    );
    assert_eq!(status, 403);
    for method in ["POST", "PUT", "DELETE"] {
        let (status, head, _) = http(port, method, "/oidc/jwks.json", &host);
        assert_eq!(status, 405, "{method}");
        assert!(head.contains("allow: get"), "{head}");
    }
    for path in [
        "/jwks.json",
        "/.well-known/openid-configuration",
        "/oidc/other",
        "/oidc",
    ] {
        let (status, _, _) = http(port, "GET", path, &host);
        assert_eq!(status, 404, "{path}");
    }
    drop(warden);
}

#[test]
fn oidc_over_https_with_configured_jwks_uri() {
    let creds = tempdir();
    let work = tempdir();
    run(openssl(
        work.path(),
        [
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "oidc.key",
            "-out",
            "oidc.crt",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
        ],
    ));
    let port = free_port();
    let args: Vec<String> = [
        "--jwt-enabled",
        "--jwt-issuer",
        "https://localhost",
        "--oidc-enabled",
        "--oidc-server-listen-address",
        "127.0.0.1",
        "--oidc-server-listen-port",
        &port.to_string(),
        "--oidc-server-tls-cert-file",
        work.path().join("oidc.crt").to_str().unwrap(),
        "--oidc-server-tls-key-file",
        work.path().join("oidc.key").to_str().unwrap(),
        "--oidc-jwks-uri",
        "https://keys.example/jwks.json",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    let _warden = Warden::start_with(creds.path(), &Options::new().args(args));
    let curl = |path: &str| {
        let out = run(std::process::Command::new("curl")
            .args(["-sS", "--cacert"])
            .arg(work.path().join("oidc.crt"))
            .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
            .arg(format!("https://localhost:{port}{path}")));
        serde_json::from_str::<Value>(&out.stdout).unwrap()
    };
    let doc = curl("/.well-known/openid-configuration");
    assert_eq!(doc["issuer"], "https://localhost");
    assert_eq!(doc["jwks_uri"], "https://keys.example/jwks.json");
    assert_eq!(
        doc["id_token_signing_alg_values_supported"],
        json!(["RS256"])
    );
    assert_eq!(curl("/jwks.json")["keys"][0]["kty"], "RSA");
    // Plain HTTP on the HTTPS port gets nothing.
    let plain = try_run(
        std::process::Command::new("curl")
            .args(["-sS", "-m", "5"])
            .arg(format!("http://127.0.0.1:{port}/jwks.json")),
    );
    assert!(!plain.success || !plain.stdout.contains("keys"));
}

#[test]
fn bad_jwt_and_oidc_flags_are_fatal() {
    let creds = tempdir();
    let exited = Warden::start_failure(
        creds.path(),
        &Options::new().args(["--jwt-issuer", "https://x"]),
    );
    exited.assert_fatal(&["--jwt-issuer", "--jwt-enabled"]);
    let exited = Warden::start_failure(
        creds.path(),
        &Options::new().args(["--jwt-enabled", "--oidc-enabled"]),
    );
    exited.assert_fatal(&["--oidc-server-tls-cert-file"]);
    let exited = Warden::start_failure(
        creds.path(),
        &Options::new().args(["--jwt-enabled", "--jwt-signing-algorithm", "HS256"]),
    );
    exited.assert_fatal(&["HS256"]);
    // An ES256 key on disk is not used for RS256.
    let key = write_file(creds.path(), "jwt.key", "");
    openssl_genpkey(creds.path(), &OPENSSL_KEYS[0], key.to_str().unwrap());
    let exited = Warden::start_failure(creds.path(), &Options::new().args(["--jwt-enabled"]));
    exited.assert_fatal(&["not a PKCS#8 RSA key"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_key_keeps_old_tokens_verifiable_until_they_expire() {
    let work = tempdir();
    let creds = tempdir();
    let csr = openssl_csr(work.path(), &OPENSSL_KEYS[0]).pem;
    let port = free_port();
    let options = Options::new().args(oidc_args("ES256", port));
    let warden = Warden::start_with(creds.path(), &options);
    let mut client = warden.client().await;
    let old = sign(&mut client, jwt_request(&csr, &[]))
        .await
        .unwrap()
        .jwt
        .unwrap();
    let old_kid = jsonwebtoken::decode_header(&old).unwrap().kid.unwrap();

    swap_in_a_new_jwt_key(work.path(), creds.path());
    let deadline = Instant::now() + Duration::from_secs(20);
    let new = loop {
        let token = sign(&mut client, jwt_request(&csr, &[]))
            .await
            .unwrap()
            .jwt
            .unwrap();
        if jsonwebtoken::decode_header(&token).unwrap().kid.unwrap() != old_kid {
            break token;
        }
        assert!(Instant::now() < deadline, "the new key was not picked up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    openssl_verify(work.path(), &work.path().join("new.key"), &new, "ES256");
    let jwks = get_json(port, "/jwks.json");
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2, "{jwks}");
    verify_with_jwks(&jwks, &old, "public");
    verify_with_jwks(&jwks, &new, "public");

    // After a restart the old key is still published (its tokens have not expired).
    drop(client);
    drop(warden);
    let warden = Warden::start_with(creds.path(), &options);
    let jwks = get_json(port, "/jwks.json");
    verify_with_jwks(&jwks, &old, "public");
    verify_with_jwks(&jwks, &new, "public");
    drop(warden);
}

/// Defect 3 over real HTTP: with an allow-list, the host that was checked is the one in every
/// URL; Host evil + X-Forwarded-Host good no longer yields evil URLs; several values, a host
/// outside the list and malformed values are refused and not cacheable.
#[test]
fn oidc_discovery_urls_come_only_from_the_checked_host() {
    let creds = tempdir();
    let port = free_port();
    let mut args = oidc_args("ES256", port);
    args.extend(["--oidc-allowed-hosts", "Good.Example,127.0.0.1"].map(str::to_owned));
    let warden = Warden::start_with(creds.path(), &Options::new().args(args));
    let discovery = "/.well-known/openid-configuration";
    let doc = |headers: &[(&str, &str)]| {
        let (status, head, body) = http_with(port, "GET", discovery, headers);
        assert_eq!(status, 200, "{headers:?}: {head}\n{body}");
        assert!(
            head.contains("cache-control: public, max-age=3600"),
            "{head}"
        );
        serde_json::from_str::<Value>(&body).unwrap()
    };
    let refused = |headers: &[(&str, &str)], want: u16| {
        let (status, head, body) = http_with(port, "GET", discovery, headers);
        assert_eq!(status, want, "{headers:?}: {head}\n{body}");
        assert!(head.contains("cache-control: no-store"), "{head}");
        assert!(!body.contains("evil"), "{body}");
    };
    // The reported request.
    let poisoned = doc(&[
        ("Host", "evil.example"),
        ("X-Forwarded-Host", "good.example"),
    ]);
    assert_eq!(poisoned["issuer"], "http://Good.Example");
    assert_eq!(poisoned["jwks_uri"], "http://Good.Example/jwks.json");
    // Port kept, upper case compared equal, configured spelling echoed.
    let ported = doc(&[
        ("Host", "127.0.0.1"),
        ("X-Forwarded-Host", "GOOD.EXAMPLE:8443"),
    ]);
    assert_eq!(ported["issuer"], "http://Good.Example:8443");
    assert_eq!(
        doc(&[("Host", &format!("127.0.0.1:{port}"))])["issuer"],
        format!("http://127.0.0.1:{port}")
    );
    refused(
        &[
            ("Host", "good.example"),
            ("X-Forwarded-Host", "evil.example"),
        ],
        403,
    );
    refused(&[("Host", "evil.example")], 403);
    refused(
        &[
            ("Host", "good.example"),
            ("X-Forwarded-Host", "evil.example, good.example"),
        ],
        400,
    );
    refused(
        &[
            ("Host", "good.example"),
            ("X-Forwarded-Host", "good.example"),
            ("X-Forwarded-Host", "evil.example"),
        ],
        400,
    );
    refused(
        &[
            ("Host", "good.example"),
            ("X-Forwarded-Host", "good.example/evil"),
        ],
        400,
    );
    refused(&[("Host", "good.example"), ("Host", "evil.example")], 400);
    // An absolute-form request target naming another host than Host.
    let (status, _, body) = http_with(
        port,
        "GET",
        &format!("http://evil.example{discovery}"),
        &[("Host", "good.example")],
    );
    assert_eq!(status, 400, "{body}");
    drop(warden);
}

/// Defect 4 over real gRPC: a request over the audience caps is refused with InvalidArgument
/// naming the limit; one at the caps (16 audiences of 512 bytes) is served; while several
/// connections keep sending both, plain requests on another connection all succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_audience_lists_are_refused_and_do_not_stall_others() {
    const CAP: usize = warden_host::MAX_JWT_AUDIENCES;
    const LEN: usize = warden_host::MAX_JWT_AUDIENCE_LEN;
    let work = tempdir();
    let creds = tempdir();
    let csr = openssl_csr(work.path(), &OPENSSL_KEYS[0]).pem;
    let warden = Warden::start_with(creds.path(), &Options::new().args(["--jwt-enabled"]));
    let mut client = warden.client().await;
    let over: Vec<String> = (0..1500).map(|i| format!("aud-{i}")).collect();
    let at_cap: Vec<String> = (0..CAP).map(|i| format!("{i:0LEN$}")).collect();
    let with = |audiences: &[String]| SignCertificateRequest {
        jwt_audiences: audiences.to_vec(),
        ..request("app-1", "ns-1", "", &csr)
    };
    let err = sign(&mut client, with(&over)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        err.message(),
        format!("too many jwt_audiences: 1500 given, at most {CAP} allowed")
    );
    let long = vec!["x".repeat(LEN + 1)];
    let err = sign(&mut client, with(&long)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().contains(&format!("at most {LEN} bytes")),
        "{}",
        err.message()
    );
    let full = sign(&mut client, with(&at_cap)).await.unwrap();
    assert_eq!(full.per_audience_jwts.len(), CAP);
    assert!(full.jwt.is_some());

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut attackers = Vec::new();
    for i in 0..4 {
        let mut hostile = warden.client().await;
        let request = with(if i % 2 == 0 { &over } else { &at_cap });
        let stop = std::sync::Arc::clone(&stop);
        attackers.push(tokio::spawn(async move {
            let mut sent = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = sign(&mut hostile, request.clone()).await;
                sent += 1;
            }
            sent
        }));
    }
    let started = Instant::now();
    for _ in 0..20 {
        let response = sign(&mut client, with(&["aud-a".to_owned()]))
            .await
            .unwrap();
        assert_eq!(response.per_audience_jwts.len(), 1);
    }
    let elapsed = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut sent = 0;
    for attacker in attackers {
        sent += attacker.await.unwrap();
    }
    assert!(sent > 0);
    // Generous: 20 requests of about a millisecond each; only a stalled server takes this long.
    assert!(
        elapsed < Duration::from_secs(20),
        "{elapsed:?} for 20 requests under attack"
    );
    drop(warden);
}

/// The `warden_retire_at` of `kid` in `jwks.json` (`None` when not listed or not retired).
fn retire_at(creds: &Path, kid: &str) -> Option<u64> {
    let file: Value =
        serde_json::from_slice(&std::fs::read(creds.join("jwks.json")).unwrap()).unwrap();
    file["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid)
        .and_then(|k| k["warden_retire_at"].as_u64())
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Defect 6 with real restarts and a 6 s --jwt-ttl: the retire time of a replaced key is
/// written once and survives restarts; the running server drops the key from jwks.json when
/// that time comes; a start after it does not publish the key again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retired_jwt_key_stays_retired_across_restarts() {
    let work = tempdir();
    let creds = tempdir();
    let csr = openssl_csr(work.path(), &OPENSSL_KEYS[0]).pem;
    let port = free_port();
    let mut args = oidc_args("ES256", port);
    args.extend(["--jwt-ttl", "6s"].map(str::to_owned));
    let options = Options::new().args(args);
    let warden = Warden::start_with(creds.path(), &options);
    let mut client = warden.client().await;
    let kid_of = |token: &str| jsonwebtoken::decode_header(token).unwrap().kid.unwrap();
    let old_kid = kid_of(
        &sign(&mut client, jwt_request(&csr, &[]))
            .await
            .unwrap()
            .jwt
            .unwrap(),
    );
    swap_in_a_new_jwt_key(work.path(), creds.path());
    let deadline = Instant::now() + Duration::from_secs(20);
    while retire_at(creds.path(), &old_kid).is_none() {
        assert!(Instant::now() < deadline, "the new key was not picked up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let retire = retire_at(creds.path(), &old_kid).unwrap();
    assert!(
        retire <= unix_now() + 6,
        "retire_at {retire} is one TTL after the change"
    );
    drop(client);
    drop(warden);

    // A restart before retire_at keeps it as written (main reset it to now + TTL here); if
    // the start was slow enough to come after it, the key is gone instead.
    let warden = Warden::start_with(creds.path(), &options);
    let saved = std::fs::read(creds.path().join("jwks.json")).unwrap();
    match retire_at(creds.path(), &old_kid) {
        Some(at) => assert_eq!(at, retire, "restart kept retire_at"),
        None => assert!(unix_now() >= retire),
    }
    // The running server drops it from jwks.json and the served set once retire_at passes.
    let deadline = Instant::now() + Duration::from_secs(6 + 10);
    while retire_at(creds.path(), &old_kid).is_some() {
        assert!(
            Instant::now() < deadline,
            "the retired key stayed in jwks.json"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(unix_now() >= retire, "not dropped before its time");
    let jwks = get_json(port, "/jwks.json");
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1, "{jwks}");
    drop(warden);

    // A jwks.json written before retire_at (a backup, or a server stopped in time) does not
    // bring the key back on a later start.
    std::fs::write(creds.path().join("jwks.json"), &saved).unwrap();
    let warden = Warden::start_with(creds.path(), &options);
    let jwks = get_json(port, "/jwks.json");
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1, "{jwks}");
    assert_ne!(jwks["keys"][0]["kid"], old_kid);
    assert_eq!(retire_at(creds.path(), &old_kid), None);
    drop(warden);
}

/// Replaces `creds/jwt.key` with a new P-256 key atomically, as a Secret update would.
fn swap_in_a_new_jwt_key(work: &Path, creds: &Path) {
    openssl_genpkey(work, &OPENSSL_KEYS[0], "new.key");
    std::fs::copy(work.join("new.key"), creds.join(".jwt.key.new")).unwrap();
    std::fs::rename(creds.join(".jwt.key.new"), creds.join("jwt.key")).unwrap();
}

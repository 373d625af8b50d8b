//! warden-wasm in a real browser (headless Chromium through chromedriver):
//! `scripts/wasm.sh test`. Native builds compile this file to nothing.
#![cfg(target_arch = "wasm32")]
// The whole binary is test code: this lets clippy.toml's `allow-*-in-tests` settings cover the
// helpers outside `#[test]` functions too.
#![cfg(test)]
#![allow(missing_docs)]

use core::time::Duration;

use der::{Decode, Encode};
use getrandom::SysRng;
use js_sys::{Array, Object, Reflect};
use rand_core::UnwrapErr;
use warden_core::UnixTime;
use warden_core::bundle::{
    CaBundle, CaParams, WorkloadRequest, certificates_to_pem, parse_certificates,
};
use warden_core::crypto::{KeyAlgorithm, KeyType, RustCryptoVerifier};
use warden_core::csr::{self, VerifiedCsr};
use warden_core::spiffe::{SpiffeId, TrustDomain};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::request::{CertReq, ExtensionReq};

wasm_bindgen_test_configure!(run_in_browser);

const SPIFFE_ID: &str = "spiffe://public/ns/default/web";
const DNS_NAME: &str = "web.default.svc.cluster.local";

fn get(object: &JsValue, name: &str) -> JsValue {
    Reflect::get(object, &JsValue::from_str(name)).unwrap()
}

fn get_string(object: &JsValue, name: &str) -> String {
    get(object, name)
        .as_string()
        .unwrap_or_else(|| panic!("{name} is not a string"))
}

fn options(key_type: Option<&str>, spiffe_id: Option<&str>, dns: &[&str]) -> Object {
    let object = Object::new();
    if let Some(key_type) = key_type {
        Reflect::set(&object, &"keyType".into(), &key_type.into()).unwrap();
    }
    if let Some(id) = spiffe_id {
        Reflect::set(&object, &"spiffeId".into(), &id.into()).unwrap();
    }
    let names: Array = dns.iter().map(|d| JsValue::from_str(d)).collect();
    Reflect::set(&object, &"dnsNames".into(), &names).unwrap();
    object
}

fn error_message(error: wasm_bindgen::JsError) -> String {
    let value = JsValue::from(error);
    let error: &js_sys::Error = value.dyn_ref().expect("a JavaScript Error");
    error.message().as_string().unwrap()
}

/// The CSR verifies with core and requests exactly the URI and DNS SANs asked for.
fn check_csr(pem: &str, key_type: KeyType) -> VerifiedCsr {
    let verified = csr::parse_and_verify(pem.as_bytes(), &RustCryptoVerifier).unwrap();
    assert_eq!(verified.key_type, key_type);
    let (label, der) = pem_rfc7468::decode_vec(pem.as_bytes()).unwrap();
    assert_eq!(label, "CERTIFICATE REQUEST");
    let request = CertReq::from_der(&der).unwrap();
    assert!(
        request.info.subject.is_empty(),
        "subject is empty, like daprd's"
    );
    let attribute = request
        .info
        .attributes
        .iter()
        .next()
        .expect("extensionRequest");
    let extensions =
        ExtensionReq::from_der(&attribute.values.get(0).unwrap().to_der().unwrap()).unwrap();
    let san = extensions.0.first().unwrap();
    let san = SubjectAltName::from_der(san.extn_value.as_bytes()).unwrap();
    let names: Vec<String> = san
        .0
        .iter()
        .map(|name| match name {
            GeneralName::UniformResourceIdentifier(uri) => format!("URI:{uri}"),
            GeneralName::DnsName(dns) => format!("DNS:{dns}"),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        names,
        [format!("URI:{SPIFFE_ID}"), format!("DNS:{DNS_NAME}")]
    );
    verified
}

fn subtle() -> web_sys::SubtleCrypto {
    Reflect::get(&js_sys::global(), &"crypto".into())
        .unwrap()
        .dyn_into::<web_sys::Crypto>()
        .unwrap()
        .subtle()
}

fn generate(key_type: &str) -> (String, String) {
    let made = warden_wasm::generate_key_and_csr(
        options(Some(key_type), Some(SPIFFE_ID), &[DNS_NAME]).unchecked_into(),
    )
    .map_err(error_message)
    .unwrap();
    (
        get_string(&made, "csrPem"),
        get_string(&made, "privateKeyPem"),
    )
}

#[wasm_bindgen_test]
fn p256_key_and_csr() {
    let (csr_pem, key_pem) = generate("p256");
    let verified = check_csr(&csr_pem, KeyType::EcdsaP256);
    assert!(key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    let key = warden_core::crypto::SoftwareKey::from_pem(key_pem.as_bytes()).unwrap();
    assert_eq!(
        warden_core::crypto::CaSigner::public_key(&key),
        verified.public_key
    );
}

#[wasm_bindgen_test]
fn ed25519_key_and_csr() {
    let (csr_pem, key_pem) = generate("ed25519");
    let verified = check_csr(&csr_pem, KeyType::Ed25519);
    let key = warden_core::crypto::SoftwareKey::from_pem(key_pem.as_bytes()).unwrap();
    assert_eq!(
        warden_core::crypto::CaSigner::public_key(&key),
        verified.public_key
    );
}

#[wasm_bindgen_test]
fn two_keys_differ() {
    // Browser randomness really is used: two calls never give the same key.
    assert_ne!(generate("p256").1, generate("p256").1);
    assert_ne!(generate("ed25519").1, generate("ed25519").1);
}

#[wasm_bindgen_test]
fn empty_template_csr() {
    let made = warden_wasm::generate_key_and_csr(options(Some("p256"), None, &[]).unchecked_into())
        .map_err(error_message)
        .unwrap();
    let pem = get_string(&made, "csrPem");
    let verified = csr::parse_and_verify(pem.as_bytes(), &RustCryptoVerifier).unwrap();
    assert_eq!(verified.key_type, KeyType::EcdsaP256);
}

#[wasm_bindgen_test]
fn bad_options_throw_errors_naming_the_field() {
    let call = |o: JsValue| {
        warden_wasm::generate_key_and_csr(o.unchecked_into())
            .map(|_| ())
            .map_err(error_message)
            .unwrap_err()
    };
    assert_eq!(
        call(options(Some("rsa"), None, &[]).into()),
        "keyType: expected \"p256\" or \"ed25519\", got \"rsa\""
    );
    assert!(call(options(None, None, &[]).into()).starts_with("keyType: "));
    assert!(call(JsValue::from_f64(3.0)).starts_with("options: "));
    assert!(
        call(options(Some("p256"), Some("https://x.example/a"), &[]).into())
            .starts_with("spiffeId: ")
    );
    let o = options(Some("p256"), None, &[]);
    Reflect::set(&o, &"dnsNames".into(), &Array::of1(&JsValue::from_f64(1.0))).unwrap();
    assert_eq!(call(o.into()), "dnsNames[0]: expected a string, got number");
    let o = options(Some("p256"), None, &[]);
    Reflect::set(&o, &"dnsNames".into(), &"a.example".into()).unwrap();
    assert!(call(o.into()).starts_with("dnsNames: expected an array"));
    assert!(
        call(options(Some("ed25519"), None, &["bad\u{e9}.example"]).into())
            .starts_with("dnsNames: ")
    );
}

#[wasm_bindgen_test]
async fn webcrypto_csr_with_a_non_extractable_key() {
    let o = options(None, Some(SPIFFE_ID), &[DNS_NAME]);
    let made: JsValue = warden_wasm::generate_csr_with_web_crypto(Some(o.unchecked_into()))
        .await
        .map_err(error_message)
        .unwrap()
        .into();
    let verified = check_csr(&get_string(&made, "csrPem"), KeyType::EcdsaP256);

    let private_key: web_sys::CryptoKey = get(&made, "privateKey").dyn_into().unwrap();
    let public_key: web_sys::CryptoKey = get(&made, "publicKey").dyn_into().unwrap();
    assert!(!private_key.extractable());
    let subtle = subtle();
    let export = subtle.export_key("pkcs8", &private_key).unwrap();
    let refused = JsFuture::from(export)
        .await
        .expect_err("exporting the private key must fail");
    let refused: js_sys::Error = refused.dyn_into().unwrap();
    assert_eq!(refused.name().as_string().unwrap(), "InvalidAccessError");

    // The CSR carries the WebCrypto key pair's public key.
    let spki = JsFuture::from(subtle.export_key("spki", &public_key).unwrap())
        .await
        .unwrap();
    assert_eq!(
        js_sys::Uint8Array::new(&spki).to_vec(),
        verified.public_key.to_der().unwrap()
    );
}

#[wasm_bindgen_test]
async fn webcrypto_without_options() {
    let made: JsValue = warden_wasm::generate_csr_with_web_crypto(None)
        .await
        .map_err(error_message)
        .unwrap()
        .into();
    let pem = get_string(&made, "csrPem");
    csr::parse_and_verify(pem.as_bytes(), &RustCryptoVerifier).unwrap();
}

/// A throwaway CA (as Sentry makes on first start) and a workload SVID for a browser key.
struct Issued {
    chain_pem: String,
    anchors_pem: String,
    not_after_ms: f64,
}

fn now() -> UnixTime {
    UnixTime::from_millis(js_sys::Date::now() as u64)
}

fn new_ca() -> CaBundle {
    let td = TrustDomain::new("cluster.local").unwrap();
    let params = CaParams {
        trust_domain: &td,
        namespace: "dapr-system",
        key_algorithm: KeyAlgorithm::P256,
        lifetime: Duration::from_secs(365 * 24 * 3600),
        clock_skew: Duration::from_secs(15 * 60),
    };
    CaBundle::generate(&params, now(), &mut UnwrapErr(SysRng))
        .unwrap()
        .0
}

fn issue(ca: &CaBundle) -> Issued {
    let (csr_pem, _) = generate("ed25519");
    let verified = csr::parse_and_verify(csr_pem.as_bytes(), &RustCryptoVerifier).unwrap();
    let id = SpiffeId::parse(SPIFFE_ID).unwrap();
    let svid = ca
        .issue_workload(
            &WorkloadRequest {
                public_key: &verified.public_key,
                spiffe_id: &id,
                dns_names: &[],
                ttl: Duration::from_secs(3600),
                clock_skew: Duration::from_secs(15 * 60),
            },
            now(),
            &mut UnwrapErr(SysRng),
        )
        .unwrap();
    Issued {
        chain_pem: svid.chain_pem,
        anchors_pem: ca.trust_anchors_pem().to_string(),
        not_after_ms: (svid.validity.not_after.as_secs() * 1000) as f64,
    }
}

fn verify(chain: &str, anchors: &str, now_ms: f64) -> (bool, Option<String>, Option<String>) {
    let result: JsValue = warden_wasm::verify_chain(chain, anchors, now_ms)
        .map_err(error_message)
        .unwrap()
        .into();
    (
        get(&result, "ok").as_bool().unwrap(),
        get(&result, "error").as_string(),
        get(&result, "spiffeId").as_string(),
    )
}

#[wasm_bindgen_test]
fn verify_chain_accepts_a_good_chain() {
    let ca = new_ca();
    let issued = issue(&ca);
    let (ok, error, id) = verify(&issued.chain_pem, &issued.anchors_pem, js_sys::Date::now());
    assert!(ok, "{error:?}");
    assert_eq!(error, None);
    assert_eq!(id.as_deref(), Some(SPIFFE_ID));
}

#[wasm_bindgen_test]
fn verify_chain_rejects_a_wrong_anchor() {
    let issued = issue(&new_ca());
    let other = new_ca();
    let (ok, error, id) = verify(
        &issued.chain_pem,
        other.trust_anchors_pem(),
        js_sys::Date::now(),
    );
    assert!(!ok);
    assert_eq!(id, None);
    // Same subject (O=cluster.local), different key.
    let error = error.unwrap();
    assert!(error.contains("signature"), "{error}");
}

#[wasm_bindgen_test]
fn verify_chain_rejects_an_expired_leaf() {
    let issued = issue(&new_ca());
    let (ok, error, _) = verify(
        &issued.chain_pem,
        &issued.anchors_pem,
        issued.not_after_ms + 1000.0,
    );
    assert!(!ok);
    let error = error.unwrap();
    assert!(error.starts_with("certificate 0 expired at"), "{error}");
}

#[wasm_bindgen_test]
fn verify_chain_rejects_a_tampered_signature() {
    let issued = issue(&new_ca());
    let mut chain = parse_certificates(issued.chain_pem.as_bytes()).unwrap();
    // The signature BIT STRING ends the certificate: flip its last byte.
    let mut der = chain[0].to_der().unwrap();
    *der.last_mut().unwrap() ^= 0x01;
    chain[0] = x509_cert::Certificate::from_der(&der).unwrap();
    let tampered = certificates_to_pem(&chain).unwrap();
    let (ok, error, _) = verify(&tampered, &issued.anchors_pem, js_sys::Date::now());
    assert!(!ok);
    let error = error.unwrap();
    assert!(error.starts_with("certificate 0 signature"), "{error}");
}

#[wasm_bindgen_test]
fn verify_chain_reports_unparsable_input_and_refuses_a_bad_time() {
    let issued = issue(&new_ca());
    let (ok, error, _) = verify("not pem", &issued.anchors_pem, js_sys::Date::now());
    assert!(!ok);
    assert!(error.unwrap().starts_with("chainPem: "));
    let (ok, error, _) = verify(&issued.chain_pem, "", js_sys::Date::now());
    assert!(!ok);
    assert!(error.unwrap().starts_with("anchorsPem: "));
    let err = warden_wasm::verify_chain(&issued.chain_pem, &issued.anchors_pem, f64::NAN)
        .map(|_| ())
        .map_err(error_message)
        .unwrap_err();
    assert!(err.starts_with("nowMs: "), "{err}");
}

#[wasm_bindgen_test]
fn inspect_certificate_shows_the_svid() {
    let ca = new_ca();
    let issued = issue(&ca);
    let info: JsValue = warden_wasm::inspect_certificate(&issued.chain_pem)
        .map_err(error_message)
        .unwrap()
        .into();
    let leaf = &parse_certificates(issued.chain_pem.as_bytes()).unwrap()[0];
    assert_eq!(get_string(&info, "spiffeId"), SPIFFE_ID);
    let serial: String = leaf
        .tbs_certificate()
        .serial_number()
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(get_string(&info, "serial"), serial);
    assert_eq!(
        get(&info, "notAfter").as_f64().unwrap(),
        issued.not_after_ms
    );
    let not_before = get(&info, "notBefore").as_f64().unwrap();
    assert!(not_before < js_sys::Date::now() && not_before > js_sys::Date::now() - 3_600_000.0);
    assert_eq!(get_string(&info, "subject"), "");
    let issuer = get_string(&info, "issuer");
    assert!(issuer.contains("cluster.local"), "{issuer}");

    // The issuer certificate is a CA, not an SVID: no SPIFFE ID.
    let ca_info: JsValue = warden_wasm::inspect_certificate(ca.issuer_chain_pem())
        .map_err(error_message)
        .unwrap()
        .into();
    assert!(get(&ca_info, "spiffeId").is_null());
    let err = warden_wasm::inspect_certificate("garbage")
        .map(|_| ())
        .map_err(error_message)
        .unwrap_err();
    assert!(err.starts_with("pem: "), "{err}");
}

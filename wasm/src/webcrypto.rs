//! `generateCsrWithWebCrypto`: a non-extractable WebCrypto P-256 key, the CSR built by core.
//!
//! Core's [`CaSigner`](warden_core::crypto::CaSigner) is synchronous and `crypto.subtle.sign`
//! returns a promise, so the CSR is made in two halves: core encodes the
//! CertificationRequestInfo, WebCrypto signs it, core assembles the request.

use alloc::format;
use alloc::string::{String, ToString};

use const_oid::db::rfc5912;
use der::Decode;
use der::referenced::OwnedToRef;
use js_sys::{Array, Object, Uint8Array};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use warden_core::crypto::KeyType;
use warden_core::csr;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{CryptoKey, CryptoKeyPair, SubtleCrypto};

use crate::csr::CsrRequest;
use crate::js::{self, error_text};

/// A CSR whose key stays inside WebCrypto.
#[derive(Debug)]
pub(crate) struct WebCryptoCsr {
    /// `CERTIFICATE REQUEST` PEM.
    pub(crate) csr_pem: String,
    /// The private key: `extractable: false`, usable only for `sign`.
    pub(crate) private_key: CryptoKey,
    /// The public key.
    pub(crate) public_key: CryptoKey,
}

/// `crypto.subtle`, from a window or a worker. Missing outside secure contexts (http://).
fn subtle() -> Result<SubtleCrypto, String> {
    let crypto = js_sys::Reflect::get(&js_sys::global(), &JsValue::from_str("crypto"))
        .ok()
        .and_then(|c| c.dyn_into::<web_sys::Crypto>().ok())
        .ok_or_else(|| String::from("WebCrypto: no global `crypto` object"))?;
    let subtle = crypto.subtle();
    if subtle.is_undefined() {
        return Err(String::from(
            "WebCrypto: crypto.subtle is unavailable (the page must be a secure context: https or localhost)",
        ));
    }
    Ok(subtle)
}

/// Awaits a WebCrypto promise; `step` names the call in errors.
async fn call(step: &str, promise: Result<js_sys::Promise, JsValue>) -> Result<JsValue, String> {
    let promise = promise.map_err(|e| format!("WebCrypto {step}: {}", error_text(&e)))?;
    JsFuture::from(promise)
        .await
        .map_err(|e| format!("WebCrypto {step}: {}", error_text(&e)))
}

/// Makes the key pair in WebCrypto and a CSR for it, signed by `crypto.subtle.sign`.
pub(crate) async fn generate(request: &CsrRequest) -> Result<WebCryptoCsr, String> {
    let subtle = subtle()?;
    let algorithm = js::object(&[
        ("name", JsValue::from_str("ECDSA")),
        ("namedCurve", JsValue::from_str("P-256")),
    ])?;
    let usages = Array::of1(&JsValue::from_str("sign"));
    let pair: CryptoKeyPair = call(
        "generateKey",
        subtle.generate_key_with_object(&algorithm, false, &usages),
    )
    .await?
    .unchecked_into();
    let private_key = pair.get_private_key();
    let public_key = pair.get_public_key();

    // Only the public half is exported; a non-extractable private key cannot be.
    let spki = call("exportKey(spki)", subtle.export_key("spki", &public_key)).await?;
    let spki = Uint8Array::new(&spki).to_vec();
    let spki = SubjectPublicKeyInfoOwned::from_der(&spki)
        .map_err(|e| format!("WebCrypto exportKey(spki) returned a malformed key: {e}"))?;
    // Core would sign anything; make sure WebCrypto really made what was asked for.
    if KeyType::of(&spki.owned_to_ref()) != Ok(KeyType::EcdsaP256) {
        return Err(String::from(
            "WebCrypto generated a key that is not ECDSA P-256",
        ));
    }

    let info = request.with_template(|template| csr::csr_info_to_sign(spki, template))?;
    let sign_params: Object = js::object(&[
        ("name", JsValue::from_str("ECDSA")),
        ("hash", JsValue::from_str("SHA-256")),
    ])?;
    let signature = call(
        "sign",
        subtle.sign_with_object_and_u8_array(&sign_params, &private_key, &info),
    )
    .await?;
    // WebCrypto returns r‖s (IEEE P1363); X.509 wants a DER Ecdsa-Sig-Value.
    let signature = p256::ecdsa::Signature::from_slice(&Uint8Array::new(&signature).to_vec())
        .map_err(|e| format!("WebCrypto sign returned a malformed signature: {e}"))?
        .to_der();
    let algorithm = AlgorithmIdentifierOwned {
        oid: rfc5912::ECDSA_WITH_SHA_256,
        parameters: None,
    };
    let der =
        csr::assemble_csr(&info, algorithm, signature.as_bytes()).map_err(|e| e.to_string())?;
    let csr_pem = csr::csr_to_pem(&der).map_err(|e| format!("CSR PEM encoding: {e}"))?;
    Ok(WebCryptoCsr {
        csr_pem,
        private_key,
        public_key,
    })
}

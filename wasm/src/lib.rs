//! Browser bindings over warden-core: a web application makes its key pair and CSR in the
//! browser (the private key never leaves it), inspects the certificate Warden returns and checks
//! its chain, all with the same core code the server runs.
//!
//! Built with `scripts/wasm.sh build` (`wasm-bindgen --target web`, output in `wasm/www/pkg/`).
//! JavaScript API (camelCase; the generated `.d.ts` carries the types below):
//!
//! - `generateKeyAndCsr({ keyType, spiffeId?, dnsNames? })` → `{ csrPem, privateKeyPem }`
//! - `generateCsrWithWebCrypto({ spiffeId?, dnsNames? })` → `Promise<{ csrPem, privateKey, publicKey }>`
//! - `inspectCertificate(pem)` → `{ spiffeId, serial, notBefore, notAfter, issuer, subject }`
//! - `verifyChain(chainPem, anchorsPem, nowMs)` → `{ ok, error, spiffeId }`
//!
//! Bad arguments throw a JavaScript `Error` whose message starts with the field's name
//! (`keyType: expected "p256" or "ed25519", got "rsa"`); nothing here panics on input.
//!
//! `no_std` + `alloc`, with `std` behind the default `std` feature (as rustls does). The
//! shipped `.wasm` is built without it (`scripts/wasm.sh build`): std's panic machinery
//! (payload boxing, hooks, message formatting) then stays out and a panic, which input cannot
//! cause, traps at once; Talc is the allocator (smaller than the dlmalloc std brings).

#![no_std]

extern crate alloc;
#[cfg(any(feature = "std", test))]
extern crate std;

mod csr;
mod inspect;
mod js;
mod rng;
mod text;
mod webcrypto;

use alloc::string::{String, ToString};

use wasm_bindgen::prelude::*;

use crate::csr::CsrRequest;

/// Without std, a global allocator: Talc's, which grows the wasm memory as std's would.
#[cfg(all(target_arch = "wasm32", not(feature = "std")))]
#[global_allocator]
static ALLOCATOR: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();

/// Without std, a panic traps without formatting its message: nothing on the JavaScript side
/// could show it, and leaving the formatting out keeps the `.wasm` small.
#[cfg(all(target_arch = "wasm32", not(feature = "std")))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    core::arch::wasm32::unreachable()
}

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &'static str = r#"
/** Key algorithms `generateKeyAndCsr` makes. */
export type KeyType = "p256" | "ed25519";

/** What to request in a CSR. Warden (like Dapr Sentry) ignores the SANs, other CAs may not. */
export interface CsrOptions {
  /** A SPIFFE ID (`spiffe://trust-domain/path`) to request as the URI SAN. */
  spiffeId?: string;
  /** DNS names to request. */
  dnsNames?: string[];
}

/** Options of `generateKeyAndCsr`. */
export interface GenerateKeyOptions extends CsrOptions {
  /** `"p256"` (ECDSA P-256 with SHA-256) or `"ed25519"`. */
  keyType: KeyType;
}

/** A fresh key pair and its CSR. */
export interface KeyAndCsr {
  /** PEM `CERTIFICATE REQUEST`. */
  csrPem: string;
  /** PEM PKCS#8 `PRIVATE KEY`. */
  privateKeyPem: string;
}

/** A CSR whose private key stays inside WebCrypto (non-extractable). */
export interface WebCryptoCsr {
  /** PEM `CERTIFICATE REQUEST`, ECDSA P-256 with SHA-256. */
  csrPem: string;
  /** The private key: `extractable: false`, usages `["sign"]`. */
  privateKey: CryptoKey;
  /** The public key. */
  publicKey: CryptoKey;
}

/** What a certificate says. */
export interface CertificateInfo {
  /** The SPIFFE ID if the certificate is an X509-SVID leaf, otherwise null. */
  spiffeId: string | null;
  /** Serial number, lowercase hex. */
  serial: string;
  /** NotBefore, ms since 1970 (`new Date(notBefore)`). */
  notBefore: number;
  /** NotAfter, ms since 1970. */
  notAfter: number;
  /** Issuer name (RFC 4514). */
  issuer: string;
  /** Subject name (RFC 4514; empty for Dapr SVIDs). */
  subject: string;
}

/** Result of `verifyChain`. */
export interface ChainCheck {
  /** Whether the chain is a valid X509-SVID chain to one of the anchors at `nowMs`. */
  ok: boolean;
  /** Why not, when `ok` is false. */
  error: string | null;
  /** The leaf's SPIFFE ID, when `ok`. */
  spiffeId: string | null;
}
"#;

#[wasm_bindgen]
extern "C" {
    /// `GenerateKeyOptions` in TypeScript.
    #[wasm_bindgen(typescript_type = "GenerateKeyOptions")]
    pub type GenerateKeyOptions;
    /// `CsrOptions` in TypeScript.
    #[wasm_bindgen(typescript_type = "CsrOptions")]
    pub type CsrOptions;
    /// `KeyAndCsr` in TypeScript.
    #[wasm_bindgen(typescript_type = "KeyAndCsr")]
    pub type KeyAndCsr;
    /// `WebCryptoCsr` in TypeScript.
    #[wasm_bindgen(typescript_type = "WebCryptoCsr")]
    pub type WebCryptoCsr;
    /// `CertificateInfo` in TypeScript.
    #[wasm_bindgen(typescript_type = "CertificateInfo")]
    pub type CertificateInfo;
    /// `ChainCheck` in TypeScript.
    #[wasm_bindgen(typescript_type = "ChainCheck")]
    pub type ChainCheck;
}

/// A JavaScript `Error` carrying `message`.
fn js_error(message: String) -> JsError {
    JsError::new(&message)
}

/// Reads `spiffeId` and `dnsNames` from an options object.
fn csr_request(options: Option<&js_sys::Object>) -> Result<CsrRequest, String> {
    let spiffe_id = js::optional_string(options, "spiffeId")?;
    let dns_names = js::optional_strings(options, "dnsNames")?;
    CsrRequest::new(spiffe_id.as_deref(), dns_names)
}

/// Makes a key pair (browser randomness) and a CSR for it with warden-core.
///
/// The CSR has an empty subject, like daprd's, and requests `spiffeId` as URI SAN and
/// `dnsNames` as DNS SANs when given. The private key comes back as PKCS#8 PEM.
#[wasm_bindgen(js_name = generateKeyAndCsr)]
pub fn generate_key_and_csr(options: GenerateKeyOptions) -> Result<KeyAndCsr, JsError> {
    key_and_csr(&options)
        .map(JsCast::unchecked_into)
        .map_err(js_error)
}

fn key_and_csr(options: &JsValue) -> Result<js_sys::Object, String> {
    let options = js::options_object(options, false)?;
    let key_type = match js::raw_field(options.as_ref(), "keyType")? {
        Some(value) => match value.as_string() {
            Some(text) => csr::parse_key_type(&text)?,
            None => return Err(csr::key_type_error(&js::describe(&value))),
        },
        None => return Err(csr::key_type_error("undefined")),
    };
    let request = csr_request(options.as_ref())?;
    let made = csr::generate_key_and_csr(key_type, &request)?;
    js::object(&[
        ("csrPem", JsValue::from_str(&made.csr_pem)),
        ("privateKeyPem", JsValue::from_str(&made.private_key_pem)),
    ])
}

/// Makes a P-256 key pair inside WebCrypto (`extractable: false`) and a CSR for it: core
/// builds the request, `crypto.subtle.sign` signs it. Returns the `CryptoKey` handles; the
/// private key can sign (for example a TLS client's proof) but can never be exported.
#[wasm_bindgen(js_name = generateCsrWithWebCrypto)]
pub async fn generate_csr_with_web_crypto(
    options: Option<CsrOptions>,
) -> Result<WebCryptoCsr, JsError> {
    let options = match options {
        Some(options) => js::options_object(&options, true).map_err(js_error)?,
        None => None,
    };
    let request = csr_request(options.as_ref()).map_err(js_error)?;
    let made = webcrypto::generate(&request).await.map_err(js_error)?;
    let result = js::object(&[
        ("csrPem", JsValue::from_str(&made.csr_pem)),
        ("privateKey", made.private_key.into()),
        ("publicKey", made.public_key.into()),
    ])
    .map_err(js_error)?;
    Ok(result.unchecked_into())
}

/// What the first certificate in `pem` says: SPIFFE ID (X509-SVID leaves only), serial,
/// validity (ms since 1970), issuer and subject.
#[wasm_bindgen(js_name = inspectCertificate)]
pub fn inspect_certificate(pem: &str) -> Result<CertificateInfo, JsError> {
    let info = inspect::inspect_certificate(pem).map_err(js_error)?;
    let spiffe_id = info
        .spiffe_id
        .map_or(JsValue::NULL, |id| JsValue::from_str(&id));
    let result = js::object(&[
        ("spiffeId", spiffe_id),
        ("serial", JsValue::from_str(&info.serial)),
        ("notBefore", JsValue::from_f64(info.not_before_ms)),
        ("notAfter", JsValue::from_f64(info.not_after_ms)),
        ("issuer", JsValue::from_str(&info.issuer)),
        ("subject", JsValue::from_str(&info.subject)),
    ])
    .map_err(js_error)?;
    Ok(result.unchecked_into())
}

/// Checks an X509-SVID chain with core's `verify_svid`: `chainPem` is the leaf then its
/// intermediates (Warden's `workload_certificate`), `anchorsPem` the trusted root(s), `nowMs`
/// the time to check at (`Date.now()`).
///
/// A chain that does not verify (or does not parse) gives `{ ok: false, error }`; only a
/// `nowMs` that is not a time throws.
#[wasm_bindgen(js_name = verifyChain)]
pub fn verify_chain(
    #[wasm_bindgen(js_name = chainPem)] chain_pem: &str,
    #[wasm_bindgen(js_name = anchorsPem)] anchors_pem: &str,
    #[wasm_bindgen(js_name = nowMs)] now_ms: f64,
) -> Result<ChainCheck, JsError> {
    let now = inspect::time_from_millis(now_ms).map_err(js_error)?;
    let (ok, error, spiffe_id) = match inspect::verify_chain(chain_pem, anchors_pem, now) {
        Ok(id) => (true, JsValue::NULL, JsValue::from_str(&id.to_string())),
        Err(e) => (false, JsValue::from_str(&e), JsValue::NULL),
    };
    let result = js::object(&[
        ("ok", JsValue::from_bool(ok)),
        ("error", error),
        ("spiffeId", spiffe_id),
    ])
    .map_err(js_error)?;
    Ok(result.unchecked_into())
}

//! Reading certificates and checking chains with core (`inspectCertificate`, `verifyChain`).

use alloc::format;
use alloc::string::{String, ToString};

use warden_core::UnixTime;
use warden_core::bundle::{certificate_ders, read_certificates};
use warden_core::chain;
use warden_core::crypto::RustCryptoVerifier;
use warden_core::spiffe::SpiffeId;

use crate::text;

/// What `inspectCertificate` shows about a certificate.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Inspection {
    /// The SPIFFE ID, when the certificate is an X509-SVID leaf (core's `svid_id`).
    pub(crate) spiffe_id: Option<String>,
    /// The serial number, lowercase hex of its DER content bytes.
    pub(crate) serial: String,
    /// NotBefore, ms since the epoch (JavaScript's `Date` unit).
    pub(crate) not_before_ms: f64,
    /// NotAfter, ms since the epoch.
    pub(crate) not_after_ms: f64,
    /// The issuer name, RFC 4514 text.
    pub(crate) issuer: String,
    /// The subject name, RFC 4514 text (empty for Sentry-style SVIDs).
    pub(crate) subject: String,
}

/// Inspects the first certificate in PEM text.
pub(crate) fn inspect_certificate(pem: &str) -> Result<Inspection, String> {
    let ders = certificate_ders(pem.as_bytes()).map_err(|e| format!("pem: {e}"))?;
    let certificates = read_certificates(&ders).map_err(|e| format!("pem: {e}"))?;
    let cert = certificates
        .first()
        .ok_or_else(|| String::from("pem: no PEM CERTIFICATE block found"))?;
    let validity = cert.validity();
    let mut serial = String::new();
    text::hex(&mut serial, cert.serial());
    Ok(Inspection {
        spiffe_id: chain::svid_id(cert).ok().map(|id| id.to_string()),
        serial,
        not_before_ms: millis(validity.not_before),
        not_after_ms: millis(validity.not_after),
        issuer: text::name(cert.issuer()),
        subject: text::name(cert.subject()),
    })
}

/// A time as JavaScript's ms-since-epoch number. Exact below 2^53 ms (year 287396).
fn millis(t: UnixTime) -> f64 {
    t.as_duration().as_millis() as f64
}

/// JavaScript's ms-since-epoch number as core's time; refuses what is not a time.
pub(crate) fn time_from_millis(now_ms: f64) -> Result<UnixTime, String> {
    // `as u64` saturates; the range check keeps the conversion exact.
    if now_ms.is_finite() && (0.0..=9_007_199_254_740_991.0).contains(&now_ms) {
        Ok(UnixTime::from_millis(now_ms as u64))
    } else {
        // Not `{now_ms}`: float formatting would add ~14 KiB to the .wasm.
        Err(String::from(
            "nowMs: expected milliseconds since 1970 (a finite number ≥ 0 and < 2^53)",
        ))
    }
}

/// Verifies an X509-SVID chain (leaf first, then intermediates) against `anchors_pem` at `now`
/// with core's `verify_svid` and the RustCrypto verifier; returns the leaf's SPIFFE ID or why
/// the chain was refused.
pub(crate) fn verify_chain(
    chain_pem: &str,
    anchors_pem: &str,
    now: UnixTime,
) -> Result<SpiffeId, String> {
    let chain_der = certificate_ders(chain_pem.as_bytes()).map_err(|e| format!("chainPem: {e}"))?;
    let chain = read_certificates(&chain_der).map_err(|e| format!("chainPem: {e}"))?;
    let anchors_der =
        certificate_ders(anchors_pem.as_bytes()).map_err(|e| format!("anchorsPem: {e}"))?;
    let anchors = read_certificates(&anchors_der).map_err(|e| format!("anchorsPem: {e}"))?;
    chain::verify_svid(&chain, &anchors, now, &RustCryptoVerifier).map_err(|e| text::svid_error(&e))
}

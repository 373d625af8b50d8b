//! The trust anchors as a SPIFFE trust bundle (a JWK Set, `SPIFFE_Trust_Domain_and_Bundle.md`):
//! `warden bundle` prints it and the server serves it at `GET /bundle` on the healthz port.
//!
//! `spiffe_sequence` must grow on every change of the anchors, across restarts and across the
//! CLI and the server, without Warden writing next to the operator's credentials (which may be
//! a read-only mount): it is the modification time of `ca.crt` in milliseconds, which every
//! replacement of the file moves forward.

use std::path::{Path, PathBuf};

use base64ct::{Base64, Base64UrlUnpadded, Encoding as _};
use der::{Decode as _, Encode as _};
use serde::Serialize;
use warden_core::crypto::KeyType;
use x509_cert::Certificate;

/// Default `spiffe_refresh_hint`: the 5 minutes the spec suggests to clients without one.
pub(crate) const DEFAULT_REFRESH_HINT_SECS: u64 = 300;

/// Why the bundle could not be produced.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum BundleJsonError {
    /// A trust anchor's key cannot be written as a JWK.
    #[error("trust anchor {position}: {reason}")]
    Key {
        /// Which anchor (0 = first).
        position: usize,
        /// What is wrong.
        reason: String,
    },
    /// The modification time of `ca.crt` could not be read.
    #[error("{}: {reason}", path.display())]
    State {
        /// The trust anchors file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
}

/// One x509-svid JWK: key parameters as RFC 7518 requires, `use`, one `x5c`, no `kid`.
#[derive(Debug, Serialize)]
struct Jwk {
    kty: &'static str,
    #[serde(rename = "use")]
    use_: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    crv: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    x: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    y: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    n: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    e: Option<String>,
    x5c: [String; 1],
}

#[derive(Debug, Serialize)]
struct Bundle {
    keys: Vec<Jwk>,
    spiffe_sequence: u64,
    spiffe_refresh_hint: u64,
}

#[derive(der::Sequence)]
struct RsaPublicKey<'a> {
    modulus: der::asn1::UintRef<'a>,
    public_exponent: der::asn1::UintRef<'a>,
}

fn b64url(bytes: &[u8]) -> String {
    Base64UrlUnpadded::encode_string(bytes)
}

fn jwk(position: usize, cert: &Certificate) -> Result<Jwk, BundleJsonError> {
    let err = |reason: String| BundleJsonError::Key { position, reason };
    let der = cert.to_der().map_err(|e| err(e.to_string()))?;
    let spki = cert.tbs_certificate().subject_public_key_info();
    let key_bits = spki
        .subject_public_key
        .as_bytes()
        .ok_or_else(|| err("public key is not a whole number of bytes".into()))?;
    let key_type = KeyType::of(&der::referenced::OwnedToRef::owned_to_ref(spki))
        .map_err(|e| err(e.to_string()))?;
    let mut jwk = Jwk {
        kty: "EC",
        use_: "x509-svid",
        crv: None,
        x: None,
        y: None,
        n: None,
        e: None,
        x5c: [Base64::encode_string(&der)],
    };
    match key_type {
        KeyType::EcdsaP256 | KeyType::EcdsaP384 => {
            let (crv, len) = if key_type == KeyType::EcdsaP256 {
                ("P-256", 32)
            } else {
                ("P-384", 48)
            };
            let coordinates = key_bits
                .strip_prefix(&[0x04])
                .filter(|c| c.len() == 2 * len)
                .ok_or_else(|| err("EC point is not uncompressed".into()))?;
            let (x, y) = coordinates.split_at(len);
            jwk.crv = Some(crv);
            jwk.x = Some(b64url(x));
            jwk.y = Some(b64url(y));
        }
        KeyType::Ed25519 => {
            jwk.kty = "OKP";
            jwk.crv = Some("Ed25519");
            jwk.x = Some(b64url(key_bits));
        }
        KeyType::Rsa { .. } => {
            let key = RsaPublicKey::from_der(key_bits).map_err(|e| err(e.to_string()))?;
            jwk.kty = "RSA";
            jwk.n = Some(b64url(key.modulus.as_bytes()));
            jwk.e = Some(b64url(key.public_exponent.as_bytes()));
        }
        other => return Err(err(format!("no JWK form for {other:?}"))),
    }
    Ok(jwk)
}

/// The `spiffe_sequence` for the anchors in `ca_path`: its modification time in milliseconds.
pub(crate) fn sequence(ca_path: &Path) -> Result<u64, BundleJsonError> {
    let state_err = |reason: String| BundleJsonError::State {
        path: ca_path.to_path_buf(),
        reason,
    };
    let modified = std::fs::metadata(ca_path)
        .and_then(|m| m.modified())
        .map_err(|e| state_err(e.to_string()))?;
    let since_epoch = modified
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| state_err("modification time before 1970".into()))?;
    u64::try_from(since_epoch.as_millis())
        .map_err(|_| state_err("modification time out of range".into()))
}

/// The bundle JSON for `anchors` with the given sequence and refresh hint.
pub(crate) fn bundle_json(
    anchors: &[Certificate],
    sequence: u64,
    refresh_hint_secs: u64,
) -> Result<String, BundleJsonError> {
    let keys = anchors
        .iter()
        .enumerate()
        .map(|(i, c)| jwk(i, c))
        .collect::<Result<Vec<_>, _>>()?;
    let bundle = Bundle {
        keys,
        spiffe_sequence: sequence,
        spiffe_refresh_hint: refresh_hint_secs,
    };
    serde_json::to_string_pretty(&bundle).map_err(|e| BundleJsonError::Key {
        position: 0,
        reason: e.to_string(),
    })
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
mod tests {
    use super::*;
    use std::time::Duration;
    use warden_core::bundle::{CaBundle, CaParams};
    use warden_core::crypto::KeyAlgorithm;
    use warden_core::spiffe::TrustDomain;

    fn root(algorithm: KeyAlgorithm) -> Certificate {
        let td = TrustDomain::new("example.org").unwrap();
        let (bundle, _) = CaBundle::generate(
            &CaParams {
                trust_domain: &td,
                namespace: "default",
                key_algorithm: algorithm,
                lifetime: Duration::from_secs(3600),
                clock_skew: Duration::ZERO,
            },
            crate::util::clock::now(),
            &mut crate::util::clock::rng(),
        )
        .unwrap();
        bundle.trust_anchors()[0].clone()
    }

    #[test]
    fn jwks_follow_the_spiffe_bundle_rules() {
        let anchors = [root(KeyAlgorithm::P256), root(KeyAlgorithm::Ed25519)];
        let json: serde_json::Value =
            serde_json::from_str(&bundle_json(&anchors, 7, 300).unwrap()).unwrap();
        assert_eq!(json["spiffe_sequence"], 7);
        assert_eq!(json["spiffe_refresh_hint"], 300);
        let keys = json["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 2);
        for (key, cert) in keys.iter().zip(&anchors) {
            assert_eq!(key["use"], "x509-svid");
            assert!(
                key.get("kid").is_none(),
                "x509-svid JWKs must not carry kid"
            );
            let x5c = key["x5c"].as_array().unwrap();
            assert_eq!(x5c.len(), 1);
            assert_eq!(
                Base64::decode_vec(x5c[0].as_str().unwrap()).unwrap(),
                cert.to_der().unwrap()
            );
        }
        assert_eq!(keys[0]["kty"], "EC");
        assert_eq!(keys[0]["crv"], "P-256");
        let x = Base64UrlUnpadded::decode_vec(keys[0]["x"].as_str().unwrap()).unwrap();
        let y = Base64UrlUnpadded::decode_vec(keys[0]["y"].as_str().unwrap()).unwrap();
        let point = anchors[0]
            .tbs_certificate()
            .subject_public_key_info()
            .subject_public_key
            .raw_bytes()
            .to_vec();
        assert_eq!([&[0x04][..], &x, &y].concat(), point);
        assert_eq!(keys[1]["kty"], "OKP");
        assert_eq!(keys[1]["crv"], "Ed25519");
    }

    #[test]
    fn sequence_grows_when_ca_crt_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.crt");
        std::fs::write(&ca, "a").unwrap();
        let first = sequence(&ca).unwrap();
        assert_eq!(
            sequence(&ca).unwrap(),
            first,
            "unchanged file, same sequence"
        );
        std::thread::sleep(Duration::from_millis(20));
        crate::util::files::write_files_atomically(&[(&ca, b"b")]).unwrap();
        assert!(sequence(&ca).unwrap() > first);
        assert!(sequence(&dir.path().join("missing")).is_err());
    }
}

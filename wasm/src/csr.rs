//! Key pairs and CSRs made in memory by core (`generateKeyAndCsr`).

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use warden_core::crypto::{KeyAlgorithm, SoftwareKey};
use warden_core::csr::{self, CsrBuildError, CsrTemplate};
use warden_core::spiffe::SpiffeId;
use zeroize::Zeroizing;

use crate::rng::BrowserRng;

/// What the caller asked to put in a CSR, already checked.
#[derive(Debug, Default)]
pub(crate) struct CsrRequest {
    /// The URI SAN to request.
    pub(crate) spiffe_id: Option<SpiffeId>,
    /// DNS SANs to request.
    pub(crate) dns_names: Vec<String>,
}

impl CsrRequest {
    /// Checks the raw option values; errors name the option.
    pub(crate) fn new(spiffe_id: Option<&str>, dns_names: Vec<String>) -> Result<Self, String> {
        let spiffe_id = spiffe_id
            .map(|id| SpiffeId::parse(id).map_err(|e| format!("spiffeId: {e}")))
            .transpose()?;
        Ok(Self {
            spiffe_id,
            dns_names,
        })
    }

    /// Builds a DER CSR with `build`, which gets core's template for this request.
    pub(crate) fn with_template<T>(
        &self,
        build: impl FnOnce(&CsrTemplate<'_>) -> Result<T, CsrBuildError>,
    ) -> Result<T, String> {
        let dns_names: Vec<&str> = self.dns_names.iter().map(String::as_str).collect();
        let template = CsrTemplate {
            spiffe_id: self.spiffe_id.as_ref(),
            dns_names: &dns_names,
        };
        build(&template).map_err(|e| match e {
            // The only input-dependent failure: name the option it came from.
            CsrBuildError::InvalidDnsName(_) => format!("dnsNames: {e}"),
            other => other.to_string(),
        })
    }
}

/// `keyType` as core's algorithm.
pub(crate) fn parse_key_type(value: &str) -> Result<KeyAlgorithm, String> {
    match value {
        "p256" => Ok(KeyAlgorithm::P256),
        "ed25519" => Ok(KeyAlgorithm::Ed25519),
        other => Err(key_type_error(&format!("{other:?}"))),
    }
}

/// The error for a `keyType` that is not one of ours; `got` describes what was passed.
pub(crate) fn key_type_error(got: &str) -> String {
    format!("keyType: expected \"p256\" or \"ed25519\", got {got}")
}

/// A PEM CSR and its PEM PKCS#8 private key.
#[derive(Debug)]
pub(crate) struct KeyAndCsr {
    /// `CERTIFICATE REQUEST` PEM.
    pub(crate) csr_pem: String,
    /// `PRIVATE KEY` PEM, zeroized when dropped.
    pub(crate) private_key_pem: Zeroizing<String>,
}

/// A fresh key from the browser's randomness and a CSR for it, all made by core.
pub(crate) fn generate_key_and_csr(
    algorithm: KeyAlgorithm,
    request: &CsrRequest,
) -> Result<KeyAndCsr, String> {
    let mut rng = BrowserRng::default();
    let key = SoftwareKey::generate(algorithm, &mut rng);
    // Before the key is used at all: a key from failed randomness must not come out.
    rng.finish()
        .map_err(|e| format!("browser randomness (crypto.getRandomValues) failed: {e}"))?;
    let der = request.with_template(|template| csr::create_csr(&key, template))?;
    let csr_pem = csr::csr_to_pem(&der).map_err(|e| format!("CSR PEM encoding: {e}"))?;
    let private_key_pem = key
        .to_pkcs8_pem()
        .map_err(|e| format!("private key PEM encoding: {e}"))?;
    Ok(KeyAndCsr {
        csr_pem,
        private_key_pem,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use warden_core::crypto::{CaSigner as _, KeyType, RustCryptoVerifier};

    #[test]
    fn both_key_types_make_verifiable_csrs() {
        for (name, key_type) in [("p256", KeyType::EcdsaP256), ("ed25519", KeyType::Ed25519)] {
            let algorithm = parse_key_type(name).unwrap();
            let request = CsrRequest::new(
                Some("spiffe://example.org/ns/default/web"),
                vec![String::from("web.example")],
            )
            .unwrap();
            let made = generate_key_and_csr(algorithm, &request).unwrap();
            let csr = csr::parse_and_verify(made.csr_pem.as_bytes(), &RustCryptoVerifier).unwrap();
            assert_eq!(csr.key_type, key_type);
            let key = SoftwareKey::from_pem(made.private_key_pem.as_bytes()).unwrap();
            assert_eq!(key.public_key(), csr.public_key);
        }
    }

    #[test]
    fn errors_name_the_option() {
        let err = parse_key_type("rsa").unwrap_err();
        assert_eq!(
            err,
            "keyType: expected \"p256\" or \"ed25519\", got \"rsa\""
        );
        assert_eq!(
            key_type_error("undefined"),
            "keyType: expected \"p256\" or \"ed25519\", got undefined"
        );
        let err = CsrRequest::new(Some("https://example.org/x"), Vec::new()).unwrap_err();
        assert!(err.starts_with("spiffeId: "), "{err}");
        let request = CsrRequest::new(None, vec![String::from("é.example")]).unwrap();
        let err = generate_key_and_csr(KeyAlgorithm::P256, &request).unwrap_err();
        assert!(err.starts_with("dnsNames: "), "{err}");
    }
}

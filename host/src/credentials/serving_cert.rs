//! The server's own TLS identity: an X509-SVID `spiffe://<td>/ns/<NAMESPACE>/dapr-sentry`
//! issued in-process by the CA it serves, swapped without dropping connections when it is
//! renewed (at half its life) or when the issuer changes.

use std::sync::Arc;

use arc_swap::ArcSwap;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
use der::Encode as _;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use warden_core::UnixTime;
use warden_core::bundle::{CaBundle, WorkloadRequest};
use warden_core::crypto::{CaSigner as _, SoftwareKey};
use warden_core::profile::Validity;
use warden_core::spiffe::SpiffeId;

use crate::ca::service::IssuancePolicy;

/// Why the serving certificate could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum ServingCertError {
    /// Key generation or loading failed.
    #[error("serving key: {0}")]
    Key(String),
    /// The CA refused to issue.
    #[error("issuing the serving certificate: {0}")]
    Issue(String),
}

/// The current serving certificate, read by rustls on every handshake.
#[derive(Debug)]
pub(crate) struct ServingCert {
    current: ArcSwap<CertifiedKey>,
    validity: ArcSwap<Validity>,
}

impl ServingCert {
    /// Issues the first serving certificate.
    pub(crate) fn new(
        bundle: &CaBundle,
        server_id: &SpiffeId,
        policy: IssuancePolicy,
        now: UnixTime,
    ) -> Result<Self, ServingCertError> {
        let (key, validity) = issue(bundle, server_id, policy, now)?;
        Ok(Self {
            current: ArcSwap::from_pointee(key),
            validity: ArcSwap::from_pointee(validity),
        })
    }

    /// Replaces the certificate with a fresh one from `bundle`; handshakes in progress keep the
    /// old one.
    pub(crate) fn renew(
        &self,
        bundle: &CaBundle,
        server_id: &SpiffeId,
        policy: IssuancePolicy,
        now: UnixTime,
    ) -> Result<Validity, ServingCertError> {
        let (key, validity) = issue(bundle, server_id, policy, now)?;
        self.current.store(Arc::new(key));
        self.validity.store(Arc::new(validity));
        Ok(validity)
    }

    /// Validity of the certificate being served.
    pub(crate) fn validity(&self) -> Validity {
        **self.validity.load()
    }

    #[cfg(test)]
    /// The DER chain being served (leaf first).
    pub(crate) fn chain(&self) -> Vec<CertificateDer<'static>> {
        self.current.load().cert.clone()
    }
}

impl ResolvesServerCert for ServingCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// rustls server settings: TLS 1.2 and 1.3 with aws-lc-rs, ALPN `h2` (grpc-go clients fail
/// without it), no client certificate requested (callers authenticate with tokens).
pub(crate) fn server_config(cert: Arc<ServingCert>) -> Result<rustls::ServerConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(cert);
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

fn issue(
    bundle: &CaBundle,
    server_id: &SpiffeId,
    policy: IssuancePolicy,
    now: UnixTime,
) -> Result<(CertifiedKey, Validity), ServingCertError> {
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &SystemRandom::new())
        .map_err(|e| ServingCertError::Key(e.to_string()))?;
    let public_key = SoftwareKey::from_pkcs8_der(pkcs8.as_ref())
        .map_err(|e| ServingCertError::Key(e.to_string()))?
        .public_key();
    let signing_key = rustls::crypto::aws_lc_rs::sign::any_supported_type(&PrivateKeyDer::Pkcs8(
        PrivatePkcs8KeyDer::from(pkcs8.as_ref().to_vec()),
    ))
    .map_err(|e| ServingCertError::Key(e.to_string()))?;
    let issued = bundle
        .issue_workload(
            &WorkloadRequest {
                public_key: &public_key,
                spiffe_id: server_id,
                dns_names: &[],
                ttl: policy.ttl,
                clock_skew: policy.clock_skew,
            },
            now,
            &mut crate::util::clock::rng(),
        )
        .map_err(|e| ServingCertError::Issue(e.to_string()))?;
    let mut chain = vec![CertificateDer::from(issued.certificate_der)];
    for cert in bundle.issuer_chain() {
        let der = cert
            .to_der()
            .map_err(|e| ServingCertError::Issue(e.to_string()))?;
        chain.push(CertificateDer::from(der));
    }
    Ok((CertifiedKey::new(chain, signing_key), issued.validity))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn serving_cert_carries_the_sentry_id_and_renews() {
        let td = warden_core::spiffe::TrustDomain::new("localhost").unwrap();
        let now = crate::util::clock::now();
        let (bundle, _) = CaBundle::generate(
            &warden_core::bundle::CaParams {
                trust_domain: &td,
                namespace: "default",
                key_algorithm: warden_core::crypto::KeyAlgorithm::P256,
                lifetime: Duration::from_secs(3600),
                clock_skew: Duration::ZERO,
            },
            now,
            &mut crate::util::clock::rng(),
        )
        .unwrap();
        let id = SpiffeId::sentry(&td, "default").unwrap();
        let policy = IssuancePolicy {
            ttl: Duration::from_secs(600),
            clock_skew: Duration::from_secs(60),
        };
        let cert = ServingCert::new(&bundle, &id, policy, now).unwrap();
        let first = cert.chain();
        assert_eq!(first.len(), 2, "leaf + issuer, no root");
        let leaf = warden_core::certificate::CertificateRef::from_der(&first[0]).unwrap();
        assert_eq!(warden_core::chain::svid_id(&leaf).unwrap(), id);
        cert.renew(&bundle, &id, policy, now).unwrap();
        assert_ne!(cert.chain()[0], first[0]);
    }
}

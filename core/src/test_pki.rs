//! A small PKI for unit tests: a root, an issuer and leaves, built with the real profiles from a
//! seeded RNG, so chain and profile tests start from certificates Warden would make.

use alloc::string::String;
use alloc::vec::Vec;
use core::time::Duration;

use der::Encode;
use rand_chacha::ChaCha20Rng;
use x509_cert::Certificate;

use crate::certificate::CertificateRef;
use crate::crypto::{CaSigner, KeyAlgorithm, SoftwareKey};
use crate::profile::{self, IssuerProfile, RootName, RootProfile, Validity, WorkloadProfile};
use crate::spiffe::{SpiffeId, TrustDomain};
use crate::test_rng::seeded_rng;
use crate::time::UnixTime;

/// The time the fixtures are made at.
pub(crate) const NOW: UnixTime = UnixTime::from_secs(1_790_000_000);
/// One day.
pub(crate) const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// A root and an issuer for one trust domain, with their keys.
pub(crate) struct TestPki {
    pub(crate) root_key: SoftwareKey,
    pub(crate) root: Certificate,
    pub(crate) issuer_key: SoftwareKey,
    pub(crate) issuer: Certificate,
    pub(crate) rng: ChaCha20Rng,
}

impl TestPki {
    /// A root `O=<trust_domain>` and its issuer for `dapr-system`, both valid over `validity`.
    pub(crate) fn new(trust_domain: &str, validity: Validity, seed: u64) -> Self {
        let mut rng = seeded_rng(seed);
        let td = TrustDomain::new(trust_domain).unwrap();
        let root_key = SoftwareKey::generate(KeyAlgorithm::P256, &mut rng);
        let root = build(
            RootProfile {
                name: RootName::TrustDomain(&td),
            },
            &root_key,
            &root_key,
            validity,
            &mut rng,
        );
        let issuer_key = SoftwareKey::generate(KeyAlgorithm::P256, &mut rng);
        let sentry_id = SpiffeId::sentry(&td, "dapr-system").unwrap();
        let issuer = build(
            IssuerProfile {
                sentry_id: &sentry_id,
                root: &root,
            },
            &issuer_key,
            &root_key,
            validity,
            &mut rng,
        );
        Self {
            root_key,
            root,
            issuer_key,
            issuer,
            rng,
        }
    }

    /// The usual fixture: `example.org`, valid for a year from a minute before [`NOW`].
    pub(crate) fn example(seed: u64) -> Self {
        Self::new("example.org", year(), seed)
    }

    /// A workload SVID for `id`, signed by the issuer, valid for a day from [`NOW`].
    pub(crate) fn leaf(&mut self, id: &SpiffeId) -> Certificate {
        let validity = day();
        issue_leaf(
            &mut self.rng,
            &self.issuer,
            &self.issuer_key,
            id,
            &[],
            validity,
        )
        .0
    }
}

/// A workload SVID for `id` (and `dns_names`) over `validity`, signed by `signer` as `issuer`;
/// returns it with its new key.
pub(crate) fn issue_leaf(
    rng: &mut ChaCha20Rng,
    issuer: &Certificate,
    signer: &dyn CaSigner,
    id: &SpiffeId,
    dns_names: &[String],
    validity: Validity,
) -> (Certificate, SoftwareKey) {
    let key = SoftwareKey::generate(KeyAlgorithm::P256, rng);
    let profile = WorkloadProfile {
        spiffe_id: id,
        dns_names,
        issuer,
    };
    let leaf = build(profile, &key, signer, validity, rng);
    (leaf, key)
}

/// `spiffe://<td>/ns/default/<app>`.
pub(crate) fn workload_id(td: &str, app: &str) -> SpiffeId {
    SpiffeId::workload(&TrustDomain::new(td).unwrap(), "default", app).unwrap()
}

/// A minute before [`NOW`] to a year after it.
pub(crate) fn year() -> Validity {
    Validity::backdated(NOW, Duration::from_secs(60), profile::DEFAULT_CA_TTL)
}

/// A minute before [`NOW`] to a day after it.
pub(crate) fn day() -> Validity {
    Validity::backdated(NOW, Duration::from_secs(60), DAY)
}

/// Builds and signs one certificate of `profile` for `subject_key`'s public key.
pub(crate) fn build<P: x509_cert::builder::profile::BuilderProfile>(
    profile: P,
    subject_key: &dyn CaSigner,
    signer: &dyn CaSigner,
    validity: Validity,
    rng: &mut ChaCha20Rng,
) -> Certificate {
    profile::build_certificate(profile, subject_key.public_key(), validity, signer, rng).unwrap()
}

/// The DER of each certificate, for reading them as [`CertificateRef`]s.
pub(crate) fn ders(certificates: &[&Certificate]) -> Vec<Vec<u8>> {
    certificates.iter().map(|c| c.to_der().unwrap()).collect()
}

/// Reads DER certificates in place.
pub(crate) fn refs(ders: &[Vec<u8>]) -> Vec<CertificateRef<'_>> {
    ders.iter()
        .map(|der| CertificateRef::from_der(der).unwrap())
        .collect()
}

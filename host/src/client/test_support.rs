//! CAs and certificates for the identity tests, made with core.

use std::time::Duration;

use der::DateTime;
use der::asn1::Ia5String;
use spki::{SubjectPublicKeyInfoOwned, SubjectPublicKeyInfoRef};
use warden_core::UnixTime;
use warden_core::bundle::{CaBundle, CaParams, IssuedSvid, WorkloadRequest};
use warden_core::crypto::{CaSigner as _, KeyAlgorithm, SoftwareKey};
use warden_core::spiffe::{SpiffeId, TrustDomain};
use x509_cert::Certificate;
use x509_cert::builder::profile::BuilderProfile;
use x509_cert::builder::{Builder as _, CertificateBuilder};
use x509_cert::certificate::TbsCertificate;
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};

/// Backdating of test leaves (Sentry's default).
pub(crate) const SKEW: Duration = Duration::from_secs(15 * 60);

use crate::util::clock::now;

use crate::util::clock::rng;

/// A self-generated root + issuer for `spiffe://<td>/ns/default/dapr-sentry`, valid from a day
/// ago for a year, so leaves can be issued in the past.
pub(crate) struct TestCa {
    pub(crate) bundle: CaBundle,
    td: TrustDomain,
}

impl TestCa {
    pub(crate) fn new(td: &str) -> Self {
        let td = TrustDomain::new(td).unwrap();
        let (bundle, _) = CaBundle::generate(
            &CaParams {
                trust_domain: &td,
                namespace: "default",
                key_algorithm: KeyAlgorithm::P256,
                lifetime: Duration::from_secs(365 * 24 * 3600),
                clock_skew: Duration::from_secs(24 * 3600),
            },
            now(),
            &mut rng(),
        )
        .unwrap();
        Self { bundle, td }
    }

    pub(crate) fn sentry_id(&self) -> SpiffeId {
        SpiffeId::sentry(&self.td, "default").unwrap()
    }

    /// A leaf for `id` and a fresh key, issued at `at` for `ttl` (NotBefore = at − [`SKEW`]).
    pub(crate) fn issue(&self, id: &SpiffeId, at: UnixTime, ttl: Duration) -> IssuedSvid {
        let key = SoftwareKey::generate(KeyAlgorithm::Ed25519, &mut rng());
        self.issue_for_key(id, &key.public_key(), at, ttl)
    }

    pub(crate) fn issue_for_key(
        &self,
        id: &SpiffeId,
        key: &SubjectPublicKeyInfoOwned,
        at: UnixTime,
        ttl: Duration,
    ) -> IssuedSvid {
        self.bundle
            .issue_workload(
                &WorkloadRequest {
                    public_key: key,
                    spiffe_id: id,
                    dns_names: &[],
                    ttl,
                    clock_skew: SKEW,
                },
                at,
                &mut rng(),
            )
            .unwrap()
    }
}

/// Makes a leaf with two URI SANs, which no Warden profile produces.
struct TwoUris;

impl BuilderProfile for TwoUris {
    fn get_issuer(&self, subject: &Name) -> Name {
        subject.clone()
    }

    fn get_subject(&self) -> Name {
        Name::default()
    }

    fn build_extensions(
        &self,
        _spk: SubjectPublicKeyInfoRef<'_>,
        _issuer_spk: SubjectPublicKeyInfoRef<'_>,
        _tbs: &TbsCertificate,
    ) -> x509_cert::builder::Result<Vec<Extension>> {
        let uri = |s: &str| GeneralName::UniformResourceIdentifier(Ia5String::new(s).unwrap());
        let san = SubjectAltName(vec![
            uri("spiffe://public/ns/default/app"),
            uri("spiffe://public/ns/default/other"),
        ]);
        Ok(vec![Extension {
            extn_id: <SubjectAltName as const_oid::AssociatedOid>::OID,
            critical: true,
            extn_value: der::asn1::OctetString::new(der::Encode::to_der(&san).unwrap()).unwrap(),
        }])
    }
}

/// A self-signed Ed25519 certificate whose SAN holds two SPIFFE URIs.
pub(crate) fn two_uri_san_certificate() -> Certificate {
    let signer = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let subject_key = SoftwareKey::generate(KeyAlgorithm::Ed25519, &mut rng());
    let time =
        |secs: u64| Time::from(DateTime::from_unix_duration(Duration::from_secs(secs)).unwrap());
    let start = now().as_secs();
    let validity = Validity::new(time(start - 60), time(start + 3600));
    CertificateBuilder::new(
        TwoUris,
        SerialNumber::new(&[1]).unwrap(),
        validity,
        subject_key.public_key(),
    )
    .unwrap()
    .build::<_, ed25519_dalek::Signature>(&signer)
    .unwrap()
}

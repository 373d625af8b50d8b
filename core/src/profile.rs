//! The four certificate kinds Warden makes, one profile type each, every field decided here.
//!
//! | kind | subject | basicConstraints | keyUsage (critical) | other |
//! |---|---|---|---|---|
//! | root | `O=<td>`, or the subject of the root it renews | critical CA:true | keyCertSign, cRLSign | SKID (kept when renewed); self-signed |
//! | issuer | `O=spiffe://<td>/ns/<ns>/dapr-sentry` | critical CA:true pathlen:0 | keyCertSign, cRLSign | SKID, AKID |
//! | workload SVID | empty | critical CA:false | digitalSignature | critical SAN (one URI + DNS), EKU server+client, AKID |
//! | Sentry serving SVID | the workload profile for `spiffe://<td>/ns/<ns>/dapr-sentry` |||
//!
//! CA certificates carry only keyCertSign and cRLSign (not Sentry's digitalSignature), as the
//! X509-SVID spec's Appendix A asks; daprd verifies through the chain, so it does not care.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::str::FromStr;
use core::time::Duration;

use const_oid::AssociatedOid;
use const_oid::db::rfc5912;
use der::Encode;
use der::asn1::{Ia5String, OctetString};
use rand_core::CryptoRng;
use sha2::Digest;
use spki::{SubjectPublicKeyInfoOwned, SubjectPublicKeyInfoRef};
use x509_cert::Certificate;
use x509_cert::builder::CertificateBuilder;
use x509_cert::builder::profile::BuilderProfile;
use x509_cert::certificate::TbsCertificate;
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages,
    SubjectAltName, SubjectKeyIdentifier,
};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;

use crate::crypto::CaSigner;
use crate::signed::{self, BuildError};
use crate::spiffe::{SpiffeId, TrustDomain};
use crate::time::UnixTime;

/// Sentry's default lifetime for self-generated roots and issuers.
pub const DEFAULT_CA_TTL: Duration = Duration::from_secs(365 * 24 * 60 * 60);
/// Sentry's default `workloadCertTTL`.
pub const DEFAULT_WORKLOAD_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Sentry's default `allowedClockSkew`.
pub const DEFAULT_CLOCK_SKEW: Duration = Duration::from_secs(15 * 60);

/// Random bytes in a serial number (a positive 128-bit integer, as Go's `rand.Int(2^128)`).
const SERIAL_RANDOM_BYTES: usize = 16;
/// Length of a key identifier: SHA-256 truncated to 160 bits (RFC 7093 method 1).
const KEY_ID_LEN: usize = 20;

/// A validity window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    /// First second the certificate is valid.
    pub not_before: UnixTime,
    /// Last second the certificate is valid.
    pub not_after: UnixTime,
}

impl Validity {
    /// `now − skew` to `now + lifetime`: backdated so clients with slow clocks accept it.
    pub fn backdated(now: UnixTime, clock_skew: Duration, lifetime: Duration) -> Self {
        Self {
            not_before: now.saturating_sub(clock_skew).truncate_to_secs(),
            not_after: now.saturating_add(lifetime).truncate_to_secs(),
        }
    }

    /// Whether `now` lies inside the window (both ends inclusive, as RFC 5280 says).
    pub fn contains(&self, now: UnixTime) -> bool {
        self.not_before <= now && now <= self.not_after
    }

    /// The validity of a parsed certificate.
    pub fn of(certificate: &Certificate) -> Self {
        let v = certificate.tbs_certificate().validity();
        Self {
            not_before: UnixTime::from_x509(&v.not_before),
            not_after: UnixTime::from_x509(&v.not_after),
        }
    }

    fn to_x509(self) -> Result<x509_cert::time::Validity, der::Error> {
        Ok(x509_cert::time::Validity::new(
            self.not_before.to_x509()?,
            self.not_after.to_x509()?,
        ))
    }
}

/// The root: self-signed, named by [`RootName`].
#[derive(Clone, Copy, Debug)]
pub struct RootProfile<'a> {
    /// Its subject and subject key identifier.
    pub name: RootName<'a>,
}

/// How a root is named.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum RootName<'a> {
    /// A new root: `O=<trust domain>`, SKID derived from its key (RFC 7093 method 1).
    TrustDomain(&'a TrustDomain),
    /// A root renewed with the key of an existing root: that root's subject and SKID, whatever
    /// made them (the Dapr docs' OpenSSL recipe writes a six-attribute DN and a SHA-1 SKID).
    /// Clients match an issuer to their anchor by name (and OpenSSL also by key identifier), so
    /// both must stay identical for a client holding the old root to trust the new one's chains.
    Kept {
        /// The old root's subject.
        subject: &'a Name,
        /// The old root's SKID; `None` when it had none (the renewed root then has none).
        key_identifier: Option<&'a [u8]>,
    },
}

/// The issuer: signed by the root, `O=spiffe://<td>/ns/<ns>/dapr-sentry`, pathlen 0.
#[derive(Clone, Copy, Debug)]
pub struct IssuerProfile<'a> {
    /// Sentry's SPIFFE ID, which Sentry writes into the issuer's subject O.
    pub sentry_id: &'a SpiffeId,
    /// The certificate that signs it.
    pub root: &'a Certificate,
}

/// A workload X509-SVID: empty subject, one URI SAN, digitalSignature, server+client auth.
/// Warden's own serving certificate is this profile for Sentry's SPIFFE ID.
#[derive(Clone, Copy, Debug)]
pub struct WorkloadProfile<'a> {
    /// The SPIFFE ID it certifies (must have a path).
    pub spiffe_id: &'a SpiffeId,
    /// Extra DNS SANs (Sentry adds some for control-plane services).
    pub dns_names: &'a [String],
    /// The issuing certificate.
    pub issuer: &'a Certificate,
}

fn extension<T: Encode + AssociatedOid>(value: &T, critical: bool) -> der::Result<Extension> {
    Ok(Extension {
        extn_id: T::OID,
        critical,
        extn_value: OctetString::new(value.to_der()?)?,
    })
}

fn builder_error(e: der::Error) -> x509_cert::builder::Error {
    x509_cert::builder::Error::Asn1(e)
}

/// RFC 7093 method 1: the leftmost 160 bits of SHA-256 of the subjectPublicKey bits.
pub fn key_identifier(spki: SubjectPublicKeyInfoRef<'_>) -> Vec<u8> {
    let digest = sha2::Sha256::digest(spki.subject_public_key.raw_bytes());
    digest.iter().take(KEY_ID_LEN).copied().collect()
}

fn organization(value: &str) -> der::Result<Name> {
    // Trust domains and SPIFFE paths exclude every RFC 4514 special character, so the string
    // form needs no escaping.
    Name::from_str(&format!("O={value}"))
}

fn subject_key_id(key_id: &[u8]) -> der::Result<Extension> {
    extension(&SubjectKeyIdentifier(OctetString::new(key_id)?), false)
}

/// AKID from the issuing certificate's SKID; omitted when the issuer has none (as Go does).
fn authority_key_id(issuer: &Certificate) -> der::Result<Option<Extension>> {
    let skid = issuer
        .tbs_certificate()
        .get_extension::<SubjectKeyIdentifier>()?
        .map(|(_, skid)| skid.0);
    skid.map(|key_identifier| {
        extension(
            &AuthorityKeyIdentifier {
                key_identifier: Some(key_identifier),
                authority_cert_issuer: None,
                authority_cert_serial_number: None,
            },
            false,
        )
    })
    .transpose()
}

/// What every CA certificate carries: critical basicConstraints CA:true (with `path_len`),
/// critical keyUsage keyCertSign+cRLSign, and its SKID (when it has one).
fn ca_extensions(key_id: Option<&[u8]>, path_len: Option<u8>) -> der::Result<Vec<Extension>> {
    let basic = BasicConstraints {
        ca: true,
        path_len_constraint: path_len,
    };
    let mut extensions = vec![
        extension(&basic, true)?,
        extension(&KeyUsage(KeyUsages::KeyCertSign | KeyUsages::CRLSign), true)?,
    ];
    extensions.extend(key_id.map(subject_key_id).transpose()?);
    Ok(extensions)
}

impl BuilderProfile for RootProfile<'_> {
    fn get_issuer(&self, subject: &Name) -> Name {
        subject.clone()
    }

    fn get_subject(&self) -> Name {
        match self.name {
            // A trust domain is validated to [a-z0-9._-], which always forms a valid Name.
            RootName::TrustDomain(td) => organization(td.as_str()).unwrap_or_default(),
            RootName::Kept { subject, .. } => subject.clone(),
        }
    }

    fn build_extensions(
        &self,
        spk: SubjectPublicKeyInfoRef<'_>,
        _issuer_spk: SubjectPublicKeyInfoRef<'_>,
        _tbs: &TbsCertificate,
    ) -> x509_cert::builder::Result<Vec<Extension>> {
        let key_id = match self.name {
            RootName::TrustDomain(_) => Some(key_identifier(spk)),
            RootName::Kept {
                key_identifier: kept,
                ..
            } => kept.map(<[u8]>::to_vec),
        };
        ca_extensions(key_id.as_deref(), None).map_err(builder_error)
    }
}

impl BuilderProfile for IssuerProfile<'_> {
    fn get_issuer(&self, _subject: &Name) -> Name {
        self.root.tbs_certificate().subject().clone()
    }

    fn get_subject(&self) -> Name {
        // SPIFFE IDs are validated to [a-zA-Z0-9._-/:], which always forms a valid Name.
        organization(&format!("{}", self.sentry_id)).unwrap_or_default()
    }

    fn build_extensions(
        &self,
        spk: SubjectPublicKeyInfoRef<'_>,
        _issuer_spk: SubjectPublicKeyInfoRef<'_>,
        _tbs: &TbsCertificate,
    ) -> x509_cert::builder::Result<Vec<Extension>> {
        let mut extensions =
            ca_extensions(Some(&key_identifier(spk)), Some(0)).map_err(builder_error)?;
        extensions.extend(authority_key_id(self.root).map_err(builder_error)?);
        Ok(extensions)
    }
}

impl BuilderProfile for WorkloadProfile<'_> {
    fn get_issuer(&self, _subject: &Name) -> Name {
        self.issuer.tbs_certificate().subject().clone()
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
        let mut names = Vec::with_capacity(1 + self.dns_names.len());
        names.push(GeneralName::UniformResourceIdentifier(
            Ia5String::new(&format!("{}", self.spiffe_id)).map_err(builder_error)?,
        ));
        for dns in self.dns_names {
            names.push(GeneralName::DnsName(
                Ia5String::new(dns).map_err(builder_error)?,
            ));
        }
        let key_usage = KeyUsage(KeyUsages::DigitalSignature.into());
        let eku = ExtendedKeyUsage(vec![rfc5912::ID_KP_SERVER_AUTH, rfc5912::ID_KP_CLIENT_AUTH]);
        let basic = BasicConstraints {
            ca: false,
            path_len_constraint: None,
        };
        let mut extensions = vec![
            extension(&key_usage, true).map_err(builder_error)?,
            extension(&eku, false).map_err(builder_error)?,
            extension(&basic, true).map_err(builder_error)?,
        ];
        extensions.extend(authority_key_id(self.issuer).map_err(builder_error)?);
        // The subject is empty, so RFC 5280 4.2.1.6 and the X509-SVID spec require a critical SAN.
        extensions.push(extension(&SubjectAltName(names), true).map_err(builder_error)?);
        Ok(extensions)
    }
}

/// Builds and signs one certificate of `profile` for `public_key`.
pub(crate) fn build_certificate<P: BuilderProfile, R: CryptoRng + ?Sized>(
    profile: P,
    public_key: SubjectPublicKeyInfoOwned,
    validity: Validity,
    signer: &dyn CaSigner,
    rng: &mut R,
) -> Result<Certificate, BuildError> {
    let serial = SerialNumber::generate_with_prefix(&[], SERIAL_RANDOM_BYTES, rng)?;
    let builder = CertificateBuilder::new(profile, serial, validity.to_x509()?, public_key)?;
    signed::build_with(builder, signer)
}

#[cfg(test)]
mod tests {
    use alloc::string::ToString;

    use der::Decode;
    use der::referenced::OwnedToRef;
    use x509_cert::ext::pkix::name::GeneralNames;

    use super::*;
    use crate::bundle::{WorkloadRequest, create_issuer};
    use crate::crypto::{KeyAlgorithm, SoftwareKey};
    use crate::test_pki::{self, DAY, NOW, TestPki, build, issue_leaf, workload_id};
    use crate::test_rng::seeded_rng;

    /// The decoded extension `T` of `cert` and whether it is critical; panics when absent.
    fn ext<'a, T>(cert: &'a Certificate) -> (bool, T)
    where
        T: Decode<'a, Error = der::Error> + AssociatedOid,
    {
        cert.tbs_certificate()
            .get_extension::<T>()
            .unwrap()
            .unwrap_or_else(|| panic!("no extension {}", T::OID))
    }

    /// The extension OIDs of `cert`, in certificate order.
    fn extension_ids(cert: &Certificate) -> Vec<const_oid::ObjectIdentifier> {
        let extensions = cert.tbs_certificate().extensions().into_iter().flatten();
        extensions.map(|e| e.extn_id).collect()
    }

    fn skid(cert: &Certificate) -> Vec<u8> {
        ext::<SubjectKeyIdentifier>(cert).1.0.as_bytes().to_vec()
    }

    fn own_key_id(cert: &Certificate) -> Vec<u8> {
        key_identifier(
            cert.tbs_certificate()
                .subject_public_key_info()
                .owned_to_ref(),
        )
    }

    fn ca_key_usage() -> KeyUsage {
        KeyUsage(KeyUsages::KeyCertSign | KeyUsages::CRLSign)
    }

    #[test]
    fn root_is_a_self_signed_ca_named_for_its_trust_domain() {
        let pki = TestPki::example(1);
        let tbs = pki.root.tbs_certificate();
        assert_eq!(tbs.subject().to_string(), "O=example.org");
        assert_eq!(tbs.issuer(), tbs.subject());
        assert_eq!(
            extension_ids(&pki.root),
            [
                rfc5912::ID_CE_BASIC_CONSTRAINTS,
                rfc5912::ID_CE_KEY_USAGE,
                rfc5912::ID_CE_SUBJECT_KEY_IDENTIFIER
            ]
        );
        let (critical, basic) = ext::<BasicConstraints>(&pki.root);
        assert!(critical);
        assert!(basic.ca);
        assert_eq!(basic.path_len_constraint, None, "a root has no path length");
        assert_eq!(ext::<KeyUsage>(&pki.root), (true, ca_key_usage()));
        let (critical, _) = ext::<SubjectKeyIdentifier>(&pki.root);
        assert!(!critical);
        assert_eq!(skid(&pki.root), own_key_id(&pki.root));
        assert_eq!(skid(&pki.root).len(), KEY_ID_LEN);
    }

    #[test]
    fn key_identifier_is_the_leftmost_160_bits_of_sha256() {
        let key = SoftwareKey::generate(KeyAlgorithm::P256, &mut seeded_rng(9));
        let spki = key.public_key();
        let bits = spki.subject_public_key.raw_bytes();
        assert_eq!(bits.len(), 65, "an uncompressed P-256 point");
        let digest = sha2::Sha256::digest(bits);
        assert_eq!(
            key_identifier(spki.owned_to_ref()),
            digest.get(..20).unwrap()
        );
    }

    #[test]
    fn issuer_has_path_length_zero_and_points_at_the_root() {
        let pki = TestPki::example(2);
        let tbs = pki.issuer.tbs_certificate();
        assert_eq!(
            tbs.subject().to_string(),
            "O=spiffe://example.org/ns/dapr-system/dapr-sentry"
        );
        assert_eq!(tbs.issuer(), pki.root.tbs_certificate().subject());
        assert_eq!(
            extension_ids(&pki.issuer),
            [
                rfc5912::ID_CE_BASIC_CONSTRAINTS,
                rfc5912::ID_CE_KEY_USAGE,
                rfc5912::ID_CE_SUBJECT_KEY_IDENTIFIER,
                rfc5912::ID_CE_AUTHORITY_KEY_IDENTIFIER
            ]
        );
        let (critical, basic) = ext::<BasicConstraints>(&pki.issuer);
        assert!(critical);
        assert_eq!((basic.ca, basic.path_len_constraint), (true, Some(0)));
        assert_eq!(ext::<KeyUsage>(&pki.issuer), (true, ca_key_usage()));
        assert_eq!(skid(&pki.issuer), own_key_id(&pki.issuer));
        assert_ne!(skid(&pki.issuer), skid(&pki.root));
        let (critical, akid) = ext::<AuthorityKeyIdentifier>(&pki.issuer);
        assert!(!critical);
        assert_eq!(
            akid.key_identifier.map(|id| id.as_bytes().to_vec()),
            Some(skid(&pki.root))
        );
        assert_eq!(akid.authority_cert_issuer, None);
        assert_eq!(akid.authority_cert_serial_number, None);
    }

    #[test]
    fn workload_svid_has_an_empty_subject_and_a_critical_uri_san() {
        let mut pki = TestPki::example(3);
        let id = workload_id("public", "my-app");
        let dns = [String::from("my-app.default.svc")];
        let (leaf, key) = issue_leaf(
            &mut pki.rng,
            &pki.issuer,
            &pki.issuer_key,
            &id,
            &dns,
            test_pki::day(),
        );
        let tbs = leaf.tbs_certificate();
        assert!(tbs.subject().is_empty());
        assert_eq!(tbs.issuer(), pki.issuer.tbs_certificate().subject());
        assert_eq!(tbs.subject_public_key_info(), &key.public_key());
        assert_eq!(
            extension_ids(&leaf),
            [
                rfc5912::ID_CE_KEY_USAGE,
                rfc5912::ID_CE_EXT_KEY_USAGE,
                rfc5912::ID_CE_BASIC_CONSTRAINTS,
                rfc5912::ID_CE_AUTHORITY_KEY_IDENTIFIER,
                rfc5912::ID_CE_SUBJECT_ALT_NAME
            ]
        );
        assert_eq!(
            ext::<KeyUsage>(&leaf),
            (true, KeyUsage(KeyUsages::DigitalSignature.into()))
        );
        let (critical, eku) = ext::<ExtendedKeyUsage>(&leaf);
        assert!(!critical);
        assert_eq!(
            eku.0,
            [rfc5912::ID_KP_SERVER_AUTH, rfc5912::ID_KP_CLIENT_AUTH]
        );
        let (critical, basic) = ext::<BasicConstraints>(&leaf);
        assert!(critical, "critical CA:false");
        assert_eq!((basic.ca, basic.path_len_constraint), (false, None));
        let (critical, san) = ext::<SubjectAltName>(&leaf);
        assert!(critical, "an empty subject needs a critical SAN");
        let expected: GeneralNames = vec![
            GeneralName::UniformResourceIdentifier(
                Ia5String::new("spiffe://public/ns/default/my-app").unwrap(),
            ),
            GeneralName::DnsName(Ia5String::new("my-app.default.svc").unwrap()),
        ];
        assert_eq!(san.0, expected);
        let akid = ext::<AuthorityKeyIdentifier>(&leaf).1.key_identifier;
        assert_eq!(
            akid.map(|id| id.as_bytes().to_vec()),
            Some(skid(&pki.issuer))
        );
    }

    #[test]
    fn a_kept_root_name_copies_the_subject_and_key_identifier() {
        let mut rng = seeded_rng(4);
        let key = SoftwareKey::generate(KeyAlgorithm::P256, &mut rng);
        let subject = Name::from_str("CN=cluster.local,O=dapr.io/sentry,C=US").unwrap();
        let kept_id = [7u8; 20];
        let root = build(
            RootProfile {
                name: RootName::Kept {
                    subject: &subject,
                    key_identifier: Some(&kept_id),
                },
            },
            &key,
            &key,
            test_pki::year(),
            &mut rng,
        );
        assert_eq!(root.tbs_certificate().subject(), &subject);
        assert_eq!(root.tbs_certificate().issuer(), &subject);
        assert_eq!(skid(&root), kept_id, "kept, not derived from the key");

        // Without a key identifier the root has none, and what it signs carries no AKID.
        let bare = build(
            RootProfile {
                name: RootName::Kept {
                    subject: &subject,
                    key_identifier: None,
                },
            },
            &key,
            &key,
            test_pki::year(),
            &mut rng,
        );
        let no_skid = bare
            .tbs_certificate()
            .get_extension::<SubjectKeyIdentifier>()
            .unwrap();
        assert!(no_skid.is_none());
        let td = TrustDomain::new("cluster.local").unwrap();
        let sentry_id = SpiffeId::sentry(&td, "default").unwrap();
        let issuer = build(
            IssuerProfile {
                sentry_id: &sentry_id,
                root: &bare,
            },
            &key,
            &key,
            test_pki::year(),
            &mut rng,
        );
        assert_eq!(
            extension_ids(&issuer),
            [
                rfc5912::ID_CE_BASIC_CONSTRAINTS,
                rfc5912::ID_CE_KEY_USAGE,
                rfc5912::ID_CE_SUBJECT_KEY_IDENTIFIER
            ],
            "no AKID when the issuer has no SKID, as Go does"
        );
    }

    #[test]
    fn serials_are_positive_128_bit_random_integers() {
        let mut pki = TestPki::example(5);
        let id = workload_id("public", "app");
        let leaves = [pki.leaf(&id), pki.leaf(&id), pki.leaf(&id)];
        let serials: Vec<Vec<u8>> = [&pki.root, &pki.issuer]
            .into_iter()
            .chain(&leaves)
            .map(|c| c.tbs_certificate().serial_number().as_bytes().to_vec())
            .collect();
        for serial in &serials {
            let first = *serial.first().unwrap();
            assert_eq!(first & 0x80, 0, "positive: {serial:02x?}");
            // 16 random bytes, with a leading zero byte when the top bit is set.
            let magnitude = if first == 0 {
                serial.get(1..).unwrap()
            } else {
                serial
            };
            assert_eq!(magnitude.len(), SERIAL_RANDOM_BYTES, "{serial:02x?}");
        }
        for (i, a) in serials.iter().enumerate() {
            for b in serials.iter().skip(i + 1) {
                assert_ne!(a, b);
            }
        }
        // The same seed gives the same serials: they come from the RNG passed in.
        let again = TestPki::example(5);
        assert_eq!(
            again.root.tbs_certificate().serial_number(),
            pki.root.tbs_certificate().serial_number()
        );
    }

    #[test]
    fn validity_is_backdated_in_whole_seconds_and_written_as_given() {
        let now = UnixTime::from_millis(1_790_000_000_750);
        let v = Validity::backdated(now, Duration::from_secs(60), DAY);
        assert_eq!(v.not_before, UnixTime::from_secs(1_790_000_000 - 60));
        assert_eq!(v.not_after, UnixTime::from_secs(1_790_000_000 + 86_400));
        // Both ends are inclusive.
        assert!(v.contains(v.not_before) && v.contains(v.not_after));
        assert!(!v.contains(v.not_after.saturating_add(Duration::from_secs(1))));
        assert!(!v.contains(v.not_before.saturating_sub(Duration::from_secs(1))));
        // A skew longer than the time since the epoch saturates at the epoch.
        let early = Validity::backdated(UnixTime::from_secs(30), Duration::from_secs(60), DAY);
        assert_eq!(early.not_before, UnixTime::EPOCH);

        let mut pki = TestPki::new("example.org", v, 6);
        assert_eq!(Validity::of(&pki.root), v);
        assert_eq!(Validity::of(&pki.issuer), v);
        let leaf = pki.leaf(&workload_id("public", "app"));
        assert_eq!(Validity::of(&leaf), test_pki::day());
    }

    #[test]
    fn nothing_outlives_the_certificate_that_signs_it() {
        // An issuer asked for two years under a one-year root stops with the root.
        let mut pki = TestPki::example(7);
        let td = TrustDomain::new("example.org").unwrap();
        let sentry_id = SpiffeId::sentry(&td, "dapr-system").unwrap();
        let long = Validity::backdated(NOW, Duration::ZERO, 2 * DEFAULT_CA_TTL);
        let issuer_key = SoftwareKey::generate(KeyAlgorithm::P256, &mut pki.rng);
        let issuer = create_issuer(
            &pki.root_key,
            &pki.root,
            issuer_key.public_key(),
            &sentry_id,
            long,
            &mut pki.rng,
        )
        .unwrap();
        assert_eq!(Validity::of(&issuer).not_before, NOW);
        assert_eq!(
            Validity::of(&issuer).not_after,
            Validity::of(&pki.root).not_after
        );

        // A leaf asked for a TTL past the issuer's NotAfter stops with the issuer.
        let (bundle, _) = crate::bundle::tests::generate_for_tests(NOW, 8);
        let issuer_end = bundle.issuer_validity().not_after;
        let key = SoftwareKey::generate(KeyAlgorithm::P256, &mut pki.rng);
        let id = workload_id("public", "app");
        let late = issuer_end.saturating_sub(DAY);
        let issued = bundle
            .issue_workload(
                &WorkloadRequest {
                    public_key: &key.public_key(),
                    spiffe_id: &id,
                    dns_names: &[],
                    ttl: 7 * DAY,
                    clock_skew: DEFAULT_CLOCK_SKEW,
                },
                late,
                &mut pki.rng,
            )
            .unwrap();
        assert_eq!(
            issued.validity,
            Validity {
                not_before: late.saturating_sub(DEFAULT_CLOCK_SKEW),
                not_after: issuer_end,
            }
        );
        assert_eq!(Validity::of(&issued.certificate), issued.validity);
    }
}

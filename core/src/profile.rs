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

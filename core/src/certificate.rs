//! Certificates read in place from their DER: what chain checks and inspection look at.
//!
//! x509-cert's owned `Certificate` decodes and allocates every field, and gives the signed
//! bytes back only by re-encoding itself. A [`CertificateRef`] borrows each field from the DER it
//! was read from instead: the signature is checked over the bytes that were signed, names
//! compare as bytes (DER gives equal names equal bytes, and RFC 5280 §7.1 allows the binary
//! comparison), and nothing is copied. Its decoder is also far smaller than the owned one,
//! which is what keeps the browser build (`warden-wasm`) inside its size budget.
//!
//! What it accepts, next to x509-cert's decoder (the `certificate` fuzz target compares the two):
//! the same DER rules, serial numbers of at most 21 bytes, well-formed names and extensions and
//! no trailing data. Like x509-cert and Go, it reads a DEFAULT value that is encoded anyway
//! (version v1, `critical FALSE`), and keeps it in the signed bytes. It is stricter in two
//! places: the signature algorithm inside the signed part must be byte-identical to the one
//! outside (RFC 5280 §4.1.1.2), and an RDN must hold an attribute. It does not check the order
//! of the attributes inside a multi-valued RDN, since names are compared as bytes anyway.

use alloc::vec::Vec;

use const_oid::db::rfc5912::ID_CE_SUBJECT_ALT_NAME;
use const_oid::{AssociatedOid, ObjectIdentifier};
use der::asn1::{AnyRef, BitStringRef, Ia5StringRef, IntRef, OctetStringRef, SequenceRef};
use der::{Decode, Header, Reader, Sequence, SliceReader, Tag, TagMode, TagNumber};
use spki::{AlgorithmIdentifierRef, SubjectPublicKeyInfoRef};

use crate::profile::Validity;
use crate::time::UnixTime;

/// RFC 5280 allows 20 serial bytes; like x509-cert, a 21st for the sign byte is accepted.
const MAX_SERIAL_LEN: usize = 21;
/// The encoding of X.509 v3.
const MAX_VERSION: u8 = 2;

/// A certificate borrowed from its DER encoding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateRef<'a> {
    tbs: &'a [u8],
    serial: IntRef<'a>,
    issuer: NameRef<'a>,
    validity: Validity,
    subject: NameRef<'a>,
    public_key: SubjectPublicKeyInfoRef<'a>,
    extensions: Vec<ExtensionRef<'a>>,
    signature_algorithm: AlgorithmIdentifierRef<'a>,
    signature: BitStringRef<'a>,
}

impl<'a> CertificateRef<'a> {
    /// Reads one DER `Certificate`; bytes after it are an error.
    pub fn from_der(der: &'a [u8]) -> Result<Self, der::Error> {
        let mut reader = SliceReader::new(der)?;
        let (tbs, algorithm_der, signature) = reader
            .sequence(|r| Ok::<_, der::Error>((r.tlv_bytes()?, r.tlv_bytes()?, r.decode()?)))?;
        let signature_algorithm = AlgorithmIdentifierRef::from_der(algorithm_der)?;
        reader.finish()?;
        let mut reader = SliceReader::new(tbs)?;
        let certificate = reader.sequence(|r| {
            // v1 to v3; the version only gates fields that are read below either way.
            if r.context_specific::<u8>(TagNumber(0), TagMode::Explicit)?
                .is_some_and(|version| version > MAX_VERSION)
            {
                return Err(Tag::Integer.value_error().into());
            }
            let serial: IntRef<'a> = r.decode()?;
            if serial.as_bytes().len() > MAX_SERIAL_LEN {
                return Err(Tag::Integer.value_error().into());
            }
            // RFC 5280 §4.1.1.2: the same algorithm inside and outside the signed part.
            if r.tlv_bytes()? != algorithm_der {
                return Err(Tag::Sequence.value_error().into());
            }
            let issuer = NameRef::decode(r)?;
            let validity: x509_cert::time::Validity = r.decode()?;
            let subject = NameRef::decode(r)?;
            let public_key = r.decode()?;
            r.context_specific::<BitStringRef<'a>>(TagNumber(1), TagMode::Implicit)?;
            r.context_specific::<BitStringRef<'a>>(TagNumber(2), TagMode::Implicit)?;
            let extensions =
                match r.context_specific::<&SequenceRef>(TagNumber(3), TagMode::Explicit)? {
                    Some(list) => decode_all(list.as_bytes())?,
                    None => Vec::new(),
                };
            Ok::<_, der::Error>(Self {
                tbs,
                serial,
                issuer,
                validity: Validity {
                    not_before: UnixTime::from_x509(&validity.not_before),
                    not_after: UnixTime::from_x509(&validity.not_after),
                },
                subject,
                public_key,
                extensions,
                signature_algorithm,
                signature,
            })
        })?;
        reader.finish()?;
        Ok(certificate)
    }

    /// The DER of the `TBSCertificate`: the bytes the signature covers.
    pub fn tbs_der(&self) -> &'a [u8] {
        self.tbs
    }

    /// The serial number's DER content bytes (big-endian, with a leading zero byte when the
    /// high bit is set).
    pub fn serial(&self) -> &'a [u8] {
        self.serial.as_bytes()
    }

    /// The issuer name.
    pub fn issuer(&self) -> NameRef<'a> {
        self.issuer
    }

    /// The subject name.
    pub fn subject(&self) -> NameRef<'a> {
        self.subject
    }

    /// NotBefore and NotAfter.
    pub fn validity(&self) -> Validity {
        self.validity
    }

    /// The subject's public key.
    pub fn public_key(&self) -> SubjectPublicKeyInfoRef<'a> {
        self.public_key.clone()
    }

    /// The extensions, in certificate order.
    pub fn extensions(&self) -> &[ExtensionRef<'a>] {
        &self.extensions
    }

    /// The extension with `oid`, if present; two of them are an error (RFC 5280 §4.2).
    pub fn extension(&self, oid: ObjectIdentifier) -> Result<Option<ExtensionRef<'a>>, der::Error> {
        let mut found = self.extensions.iter().filter(|e| e.extn_id == oid);
        match (found.next(), found.next()) {
            (None, _) => Ok(None),
            (Some(extension), None) => Ok(Some(*extension)),
            (Some(_), Some(_)) => Err(der::ErrorKind::Failed.into()),
        }
    }

    /// A decoded extension and whether it is critical, as x509-cert's `get_extension`.
    pub fn get_extension<T>(&self) -> Result<Option<(bool, T)>, der::Error>
    where
        T: Decode<'a, Error = der::Error> + AssociatedOid,
    {
        self.extension(T::OID)?
            .map(|e| Ok((e.critical, T::from_der(e.extn_value.as_bytes())?)))
            .transpose()
    }

    /// The URIs of the subjectAltName extension and whether it is critical; `None` without the
    /// extension.
    pub fn uri_names(&self) -> Result<Option<(bool, Vec<&'a str>)>, der::Error> {
        match self.extension(ID_CE_SUBJECT_ALT_NAME)? {
            Some(san) => Ok(Some((san.critical, uri_names(san.extn_value.as_bytes())?))),
            None => Ok(None),
        }
    }

    /// The outer signature algorithm.
    pub fn signature_algorithm(&self) -> AlgorithmIdentifierRef<'a> {
        self.signature_algorithm
    }

    /// The signature bytes, or `None` when the BIT STRING has unused bits.
    pub fn signature(&self) -> Option<&'a [u8]> {
        self.signature.as_bytes()
    }
}

/// The `uniformResourceIdentifier` entries of a DER `GeneralNames` (RFC 5280 §4.2.1.6).
///
/// Every entry must be a context-specific `GeneralName` choice, and the IA5String ones
/// (rfc822Name [1], dNSName [2], URI [6]) must be ASCII; the other choices are not read.
fn uri_names(general_names: &[u8]) -> Result<Vec<&str>, der::Error> {
    const RFC822_NAME: TagNumber = TagNumber(1);
    const DNS_NAME: TagNumber = TagNumber(2);
    const URI: TagNumber = TagNumber(6);
    const MAX_CHOICE: TagNumber = TagNumber(8);
    let mut reader = SliceReader::new(general_names)?;
    let uris = reader.sequence(|r| {
        let mut uris = Vec::new();
        while !r.is_finished() {
            let header = Header::decode(r)?;
            let value = r.read_slice(header.length())?;
            let Tag::ContextSpecific {
                constructed,
                number,
            } = header.tag()
            else {
                return Err(header.tag().value_error().into());
            };
            if number > MAX_CHOICE {
                return Err(header.tag().value_error().into());
            }
            if [RFC822_NAME, DNS_NAME, URI].contains(&number) {
                if constructed {
                    return Err(header.tag().value_error().into());
                }
                let text = Ia5StringRef::new(value)?;
                if number == URI {
                    uris.push(text.as_str());
                }
            }
        }
        Ok::<_, der::Error>(uris)
    })?;
    reader.finish()?;
    Ok(uris)
}

/// Every element of a DER `SEQUENCE OF` body.
fn decode_all<'a, T: Decode<'a, Error = der::Error>>(body: &'a [u8]) -> Result<Vec<T>, der::Error> {
    let mut reader = SliceReader::new(body)?;
    let mut items = Vec::new();
    while !reader.is_finished() {
        items.push(reader.decode()?);
    }
    reader.finish()?;
    Ok(items)
}

/// A certificate extension borrowed from the certificate's DER.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Sequence)]
pub struct ExtensionRef<'a> {
    /// Which extension.
    pub extn_id: ObjectIdentifier,
    /// Whether a verifier that does not understand it must refuse the certificate.
    #[asn1(default = "Default::default")]
    pub critical: bool,
    /// The extension's DER value.
    pub extn_value: &'a OctetStringRef,
}

/// An X.501 `Name` borrowed from a certificate: a sequence of RDNs, each a non-empty set of
/// attribute type and value pairs. Equal names have equal DER.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NameRef<'a> {
    der: &'a [u8],
    empty: bool,
}

impl<'a> NameRef<'a> {
    /// Reads one DER `Name`; bytes after it are an error.
    pub fn from_der(der: &'a [u8]) -> Result<Self, der::Error> {
        let mut reader = SliceReader::new(der)?;
        let name = Self::decode(&mut reader)?;
        reader.finish()?;
        Ok(name)
    }

    fn decode<R: Reader<'a>>(reader: &mut R) -> Result<Self, der::Error> {
        let der = reader.tlv_bytes()?;
        let mut rdn_count = 0usize;
        visit_rdns(der, |_| rdn_count += 1)?;
        Ok(Self {
            der,
            empty: rdn_count == 0,
        })
    }

    /// The name's DER (`SEQUENCE OF RelativeDistinguishedName`).
    pub fn as_der(&self) -> &'a [u8] {
        self.der
    }

    /// Whether the name has no RDN (the subject of a Dapr SVID).
    pub fn is_empty(&self) -> bool {
        self.empty
    }

    /// The RDNs in encoded order (most significant first), each with its attributes.
    pub fn rdns(&self) -> Vec<Vec<AttributeRef<'a>>> {
        let mut rdns = Vec::new();
        // The DER was read by `decode`, so this walk cannot fail.
        let _ = visit_rdns(self.der, |rdn| rdns.push(rdn));
        rdns
    }
}

/// One attribute of an RDN, such as `O=example`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Sequence)]
pub struct AttributeRef<'a> {
    /// The attribute type.
    pub oid: ObjectIdentifier,
    /// The value, usually a string type.
    pub value: AnyRef<'a>,
}

fn visit_rdns<'a>(
    name: &'a [u8],
    mut each: impl FnMut(Vec<AttributeRef<'a>>),
) -> Result<(), der::Error> {
    let mut reader = SliceReader::new(name)?;
    reader.sequence(|r| {
        while !r.is_finished() {
            let header = Header::decode(r)?;
            header.tag().assert_eq(Tag::Set)?;
            let body = r.read_slice(header.length())?;
            let attributes: Vec<AttributeRef<'a>> = decode_all(body)?;
            if attributes.is_empty() {
                return Err(Tag::Set.value_error().into());
            }
            each(attributes);
        }
        Ok::<_, der::Error>(())
    })?;
    reader.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::tests::generate_for_tests;
    use der::Encode;
    use x509_cert::Certificate;
    use x509_cert::ext::pkix::{BasicConstraints, KeyUsage};

    fn root() -> Certificate {
        let (bundle, _) = generate_for_tests(UnixTime::from_secs(1_800_000_000), 1);
        bundle.trust_anchors()[0].clone()
    }

    #[test]
    fn reads_what_the_owned_decoder_reads() {
        let owned = root();
        let der = owned.to_der().unwrap();
        let view = CertificateRef::from_der(&der).unwrap();
        let tbs = owned.tbs_certificate();
        assert_eq!(view.tbs_der(), tbs.to_der().unwrap());
        assert_eq!(view.serial(), tbs.serial_number().as_bytes());
        assert_eq!(view.issuer().as_der(), tbs.issuer().to_der().unwrap());
        assert_eq!(view.subject().as_der(), tbs.subject().to_der().unwrap());
        assert!(!view.subject().is_empty());
        assert_eq!(view.validity(), Validity::of(&owned));
        assert_eq!(
            view.public_key().to_der().unwrap(),
            tbs.subject_public_key_info().to_der().unwrap()
        );
        assert_eq!(view.signature(), owned.signature().as_bytes());
        assert_eq!(
            view.signature_algorithm().oid,
            owned.signature_algorithm().oid
        );
        assert_eq!(
            view.extensions().len(),
            tbs.extensions().map_or(0, Vec::len)
        );
        let (critical, basic) = view.get_extension::<BasicConstraints>().unwrap().unwrap();
        assert_eq!(
            Some((critical, basic)),
            tbs.get_extension::<BasicConstraints>().unwrap()
        );
        assert_eq!(
            view.get_extension::<KeyUsage>().unwrap(),
            tbs.get_extension::<KeyUsage>().unwrap()
        );
        let rdns = view.subject().rdns();
        assert_eq!(rdns.len(), tbs.subject().iter_rdn().count());
    }

    #[test]
    fn refuses_trailing_bytes_and_truncation() {
        let mut der = root().to_der().unwrap();
        assert!(CertificateRef::from_der(&der[..der.len() - 1]).is_err());
        der.push(0);
        assert!(CertificateRef::from_der(&der).is_err());
    }

    #[test]
    fn refuses_an_empty_rdn() {
        // SEQUENCE { SET {} }: an RDN must hold at least one attribute.
        assert!(NameRef::from_der(&[0x30, 0x02, 0x31, 0x00]).is_err());
        assert!(NameRef::from_der(&[0x30, 0x00]).unwrap().is_empty());
        assert!(NameRef::from_der(&[0x30, 0x00, 0x00]).is_err());
    }

    #[test]
    fn a_duplicated_extension_is_an_error() {
        let der = root().to_der().unwrap();
        let mut view = CertificateRef::from_der(&der).unwrap();
        let first = view.extensions()[0];
        view.extensions.push(first);
        assert!(view.extension(first.extn_id).is_err());
    }
}

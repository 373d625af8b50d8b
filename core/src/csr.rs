//! Certificate signing requests: parse and verify what clients send, and make our own.
//!
//! Sentry uses only the CSR's public key (subject, SANs and extensions are ignored), so parsing
//! returns the verified key and nothing else.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use const_oid::AssociatedOid;
use der::asn1::{AnyRef, BitString, Ia5StringRef};
use der::referenced::OwnedToRef;
use der::{Decode, Encode, Sequence, Tag, TagNumber, Tagged};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::request::{CertReq, ExtensionReq, Version};

use crate::crypto::{CaSigner, KeyType, SignError, SignatureVerifier, VerifyError};
use crate::pem::{self, PemError};
use crate::signed;
use crate::spiffe::SpiffeId;

/// The largest CSR accepted, PEM or DER. A daprd CSR is under 1 KiB; RSA-4096 is under 2 KiB.
pub const MAX_CSR_LEN: usize = 64 * 1024;

/// The PEM label of a CSR.
pub const CSR_PEM_LABEL: &str = "CERTIFICATE REQUEST";
/// The PEM label daprd before 1.12 put on its CSRs.
pub const LEGACY_CSR_PEM_LABEL: &str = "CERTIFICATE";

/// A CSR whose self-signature checked out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedCsr {
    /// The key the certificate will certify.
    pub public_key: SubjectPublicKeyInfoOwned,
    /// Its type.
    pub key_type: KeyType,
}

/// Why a CSR was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CsrError {
    /// The input is empty.
    Empty,
    /// The input exceeds [`MAX_CSR_LEN`].
    TooLarge {
        /// Input length in bytes.
        len: usize,
    },
    /// The input is neither DER nor text containing a PEM block.
    NotPem,
    /// The PEM framing or base64 is broken.
    Pem(PemError),
    /// The PEM block is not a CSR.
    WrongBlockType(String),
    /// Bytes follow the CSR.
    TrailingData,
    /// The DER structure is not a PKCS#10 request.
    Malformed(der::Error),
    /// The key type is not accepted (DSA, X25519, P-521, small RSA, ...).
    UnsupportedKey(VerifyError),
    /// The self-signature does not verify (or uses an unsupported algorithm).
    InvalidSignature(VerifyError),
}

impl CsrError {
    /// True for errors that mean "this is not a CSR at all" (Sentry: "invalid certificate
    /// signing request"), as opposed to a CSR that fails to parse or verify.
    pub fn is_framing_error(&self) -> bool {
        matches!(
            self,
            Self::Empty | Self::NotPem | Self::Pem(_) | Self::WrongBlockType(_)
        )
    }
}

impl fmt::Display for CsrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("CSR is empty"),
            Self::TooLarge { len } => {
                write!(
                    f,
                    "CSR is {len} bytes, larger than the {MAX_CSR_LEN}-byte limit"
                )
            }
            Self::NotPem => f.write_str("CSR is not PEM (no BEGIN line) nor DER"),
            Self::Pem(e) => write!(f, "CSR PEM: {e}"),
            Self::WrongBlockType(label) => write!(
                f,
                "PEM block type is \"{label}\", expected \"{CSR_PEM_LABEL}\""
            ),
            Self::TrailingData => f.write_str("trailing data after the CSR"),
            Self::Malformed(e) => write!(f, "malformed CSR: {e}"),
            Self::UnsupportedKey(e) => write!(f, "CSR public key: {e}"),
            Self::InvalidSignature(e) => write!(f, "CSR signature: {e}"),
        }
    }
}

impl core::error::Error for CsrError {}

/// Parses a CSR (PEM `CERTIFICATE REQUEST`, legacy PEM `CERTIFICATE`, or DER), checks its
/// self-signature and returns its public key.
pub fn parse_and_verify(
    input: &[u8],
    verifier: &dyn SignatureVerifier,
) -> Result<VerifiedCsr, CsrError> {
    if input.is_empty() {
        return Err(CsrError::Empty);
    }
    if input.len() > MAX_CSR_LEN {
        return Err(CsrError::TooLarge { len: input.len() });
    }
    // A DER SEQUENCE starts with 0x30, which is '0' in text: PEM never starts with it.
    if input.first() == Some(&0x30) {
        return verify_der(input, verifier);
    }
    let text = pem::as_text(input).map_err(|_| CsrError::NotPem)?;
    let (block, rest) = pem::next_block(text)
        .map_err(CsrError::Pem)?
        .ok_or(CsrError::NotPem)?;
    if block.label != CSR_PEM_LABEL && block.label != LEGACY_CSR_PEM_LABEL {
        return Err(CsrError::WrongBlockType(block.label.to_string()));
    }
    if !rest.trim().is_empty() {
        return Err(CsrError::TrailingData);
    }
    verify_der(&block.der, verifier)
}

fn verify_der(der: &[u8], verifier: &dyn SignatureVerifier) -> Result<VerifiedCsr, CsrError> {
    let csr = CertReq::from_der(der).map_err(der_error)?;
    let info = signed::tbs_bytes(der).map_err(der_error)?;
    let public_key = csr.info.public_key;
    let key_type = KeyType::of(&public_key.owned_to_ref()).map_err(CsrError::UnsupportedKey)?;
    let signature = csr
        .signature
        .as_bytes()
        .ok_or(CsrError::InvalidSignature(VerifyError::MalformedSignature))?;
    verifier
        .verify(
            public_key.owned_to_ref(),
            csr.algorithm.owned_to_ref(),
            &info,
            signature,
        )
        .map_err(CsrError::InvalidSignature)?;
    Ok(VerifiedCsr {
        public_key,
        key_type,
    })
}

fn der_error(e: der::Error) -> CsrError {
    if matches!(e.kind(), der::ErrorKind::TrailingData { .. }) {
        CsrError::TrailingData
    } else {
        CsrError::Malformed(e)
    }
}

/// What goes into a CSR Warden makes. The default is daprd's empty template.
#[derive(Clone, Copy, Debug, Default)]
pub struct CsrTemplate<'a> {
    /// A SPIFFE ID to request as the URI SAN (Sentry ignores it; other CAs may not).
    pub spiffe_id: Option<&'a SpiffeId>,
    /// DNS names to request.
    pub dns_names: &'a [&'a str],
}

/// Why a CSR could not be made.
#[derive(Debug)]
#[non_exhaustive]
pub enum CsrBuildError {
    /// A DNS name is not an IA5 string.
    InvalidDnsName(String),
    /// The signer failed.
    Sign(SignError),
    /// Encoding failed.
    Encoding(String),
}

impl fmt::Display for CsrBuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidDnsName(name) => write!(f, "invalid DNS name {name:?}"),
            Self::Sign(e) => write!(f, "{e}"),
            Self::Encoding(e) => write!(f, "encoding the CSR failed: {e}"),
        }
    }
}

impl core::error::Error for CsrBuildError {}

/// Makes a DER CSR for `signer`'s key. With the default template the subject is empty and there
/// are no attributes at all, byte-for-byte the shape of daprd's Go CSRs.
///
/// The request is assembled here rather than by x509-cert's `RequestBuilder`, which always adds
/// an extensionRequest attribute, empty when there is nothing to request (and an empty
/// `Extensions` violates its `SIZE (1..MAX)`).
pub fn create_csr(
    signer: &dyn CaSigner,
    template: &CsrTemplate<'_>,
) -> Result<Vec<u8>, CsrBuildError> {
    let info = csr_info_to_sign(signer.public_key(), template)?;
    let signature = signer.sign(&info).map_err(CsrBuildError::Sign)?;
    assemble_csr(&info, signer.signature_algorithm(), &signature)
}

/// The DER CertificationRequestInfo [`create_csr`] would sign for `public_key`: the first half
/// of `create_csr`, for signers that cannot sign synchronously through [`CaSigner`] (the
/// browser's WebCrypto returns a promise). Sign these bytes, then call [`assemble_csr`].
///
/// The structure is fixed (version 0, empty subject, at most one extensionRequest holding one
/// SAN extension), so it is put together from DER elements rather than x509-cert's owned
/// request types: the bytes are the same (a unit test compares them), and the browser build
/// leaves out their encoders, set sorting included.
pub fn csr_info_to_sign(
    public_key: SubjectPublicKeyInfoOwned,
    template: &CsrTemplate<'_>,
) -> Result<Vec<u8>, CsrBuildError> {
    let mut names = Vec::new();
    if let Some(id) = template.spiffe_id {
        let uri = id.to_string();
        let uri = Ia5StringRef::new(&uri).map_err(encoding_error)?;
        append_tlv(&mut names, context_tag(URI_NAME), uri.as_bytes())?;
    }
    for dns in template.dns_names {
        let name =
            Ia5StringRef::new(dns).map_err(|_| CsrBuildError::InvalidDnsName(dns.to_string()))?;
        append_tlv(&mut names, context_tag(DNS_NAME), name.as_bytes())?;
    }
    let mut attributes = Vec::new();
    if !names.is_empty() {
        let san = tlv(Tag::Sequence, &names)?;
        let mut extension = SubjectAltName::OID.to_der().map_err(encoding_error)?;
        append_tlv(&mut extension, Tag::OctetString, &san)?;
        let extensions = tlv(Tag::Sequence, &tlv(Tag::Sequence, &extension)?)?;
        let mut request = ExtensionReq::OID.to_der().map_err(encoding_error)?;
        append_tlv(&mut request, Tag::Set, &extensions)?;
        append_tlv(&mut attributes, Tag::Sequence, &request)?;
    }
    let mut info = Version::V1.to_der().map_err(encoding_error)?;
    append_tlv(&mut info, Tag::Sequence, &[])?; // the empty subject
    public_key
        .encode_to_vec(&mut info)
        .map_err(encoding_error)?;
    let attributes_tag = Tag::ContextSpecific {
        constructed: true,
        number: TagNumber(0),
    };
    append_tlv(&mut info, attributes_tag, &attributes)?;
    tlv(Tag::Sequence, &info)
}

/// GeneralName choices (RFC 5280 §4.2.1.6).
const DNS_NAME: TagNumber = TagNumber(2);
const URI_NAME: TagNumber = TagNumber(6);

fn context_tag(number: TagNumber) -> Tag {
    Tag::ContextSpecific {
        constructed: false,
        number,
    }
}

/// One DER element: `tag`, the length of `value`, `value`.
fn tlv(tag: Tag, value: &[u8]) -> Result<Vec<u8>, CsrBuildError> {
    let mut out = Vec::new();
    append_tlv(&mut out, tag, value)?;
    Ok(out)
}

fn append_tlv(out: &mut Vec<u8>, tag: Tag, value: &[u8]) -> Result<(), CsrBuildError> {
    AnyRef::new(tag, value)
        .and_then(|element| element.encode_to_vec(out))
        .map(|_| ())
        .map_err(encoding_error)
}

/// The second half of [`create_csr`]: a DER CSR from the DER CertificationRequestInfo made by
/// [`csr_info_to_sign`], the signature algorithm and the signature over `info` as it goes into
/// the BIT STRING (DER `Ecdsa-Sig-Value` for ECDSA, 64 raw bytes for Ed25519).
///
/// `info` is copied as it is, not decoded and re-encoded: the signature covers exactly those
/// bytes (and the browser build stays free of the request decoder). It must be one DER
/// SEQUENCE; the signature is not checked here: [`parse_and_verify`] does that.
pub fn assemble_csr(
    info: &[u8],
    algorithm: AlgorithmIdentifierOwned,
    signature: &[u8],
) -> Result<Vec<u8>, CsrBuildError> {
    let info = AnyRef::from_der(info).map_err(encoding_error)?;
    if info.tag() != Tag::Sequence {
        return Err(encoding_error(
            info.tag().unexpected_error(Some(Tag::Sequence)).into(),
        ));
    }
    SignedRequest {
        info,
        algorithm,
        signature: BitString::from_bytes(signature).map_err(encoding_error)?,
    }
    .to_der()
    .map_err(encoding_error)
}

/// `CertificationRequest` (RFC 2986 §4.2) with its info kept as the signed bytes.
#[derive(Sequence)]
struct SignedRequest<'a> {
    info: AnyRef<'a>,
    algorithm: AlgorithmIdentifierOwned,
    signature: BitString,
}

fn encoding_error(e: der::Error) -> CsrBuildError {
    CsrBuildError::Encoding(e.to_string())
}

/// A DER CSR as PEM `CERTIFICATE REQUEST`.
pub fn csr_to_pem(der: &[u8]) -> Result<String, PemError> {
    let mut out = String::new();
    pem::encode_into(&mut out, CSR_PEM_LABEL, der)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{KeyAlgorithm, RustCryptoVerifier, SoftwareKey};
    use crate::test_rng::seeded_rng;

    /// What x509-cert's owned request types encode for a template: the reference for the DER
    /// `csr_info_to_sign` assembles.
    fn x509_cert_info(
        public_key: SubjectPublicKeyInfoOwned,
        template: &CsrTemplate<'_>,
    ) -> Vec<u8> {
        use der::asn1::{Ia5String, OctetString};
        use x509_cert::attr::{Attribute, Attributes};
        use x509_cert::ext::Extension;
        use x509_cert::ext::pkix::name::GeneralName;
        use x509_cert::name::Name;
        use x509_cert::request::CertReqInfo;

        let mut names = Vec::new();
        if let Some(id) = template.spiffe_id {
            names.push(GeneralName::UniformResourceIdentifier(
                Ia5String::new(&id.to_string()).unwrap(),
            ));
        }
        for dns in template.dns_names {
            names.push(GeneralName::DnsName(Ia5String::new(dns).unwrap()));
        }
        let mut attributes = Attributes::new();
        if !names.is_empty() {
            let san = Extension {
                extn_id: SubjectAltName::OID,
                critical: false,
                extn_value: OctetString::new(SubjectAltName(names).to_der().unwrap()).unwrap(),
            };
            let request = Attribute::try_from(ExtensionReq(alloc::vec![san])).unwrap();
            attributes.insert(request).unwrap();
        }
        CertReqInfo {
            version: Version::V1,
            subject: Name::default(),
            public_key,
            attributes,
        }
        .to_der()
        .unwrap()
    }

    #[test]
    fn info_is_what_x509_cert_encodes() {
        let id = SpiffeId::parse("spiffe://example.org/ns/default/web").unwrap();
        // 200 names: long-form lengths at every level.
        let many: Vec<String> = (0..200).map(|i| alloc::format!("n{i}.example")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        for algorithm in [KeyAlgorithm::P256, KeyAlgorithm::Ed25519] {
            let key = SoftwareKey::generate(algorithm, &mut seeded_rng(5));
            for template in [
                CsrTemplate::default(),
                CsrTemplate {
                    spiffe_id: Some(&id),
                    dns_names: &[],
                },
                CsrTemplate {
                    spiffe_id: None,
                    dns_names: &["a.example", "b.example"],
                },
                CsrTemplate {
                    spiffe_id: Some(&id),
                    dns_names: &many,
                },
            ] {
                assert_eq!(
                    csr_info_to_sign(key.public_key(), &template).unwrap(),
                    x509_cert_info(key.public_key(), &template),
                    "{algorithm:?} {template:?}"
                );
            }
        }
    }

    /// Signing the info from `csr_info_to_sign` separately and assembling gives exactly the CSR
    /// `create_csr` makes (the browser's WebCrypto path relies on it).
    #[test]
    fn split_signing_matches_create_csr() {
        let key = SoftwareKey::generate(KeyAlgorithm::Ed25519, &mut seeded_rng(11));
        let id = SpiffeId::parse("spiffe://example.org/ns/default/web").unwrap();
        let template = CsrTemplate {
            spiffe_id: Some(&id),
            dns_names: &["web.default.svc"],
        };
        let info = csr_info_to_sign(key.public_key(), &template).unwrap();
        let signature = key.sign(&info).unwrap();
        let assembled = assemble_csr(&info, key.signature_algorithm(), &signature).unwrap();
        // Ed25519 signatures are deterministic, so both paths give the same bytes.
        assert_eq!(assembled, create_csr(&key, &template).unwrap());
        let verified = parse_and_verify(&assembled, &RustCryptoVerifier).unwrap();
        assert_eq!(verified.public_key, key.public_key());
    }

    #[test]
    fn assemble_refuses_bytes_that_are_not_a_request_info() {
        let key = SoftwareKey::generate(KeyAlgorithm::P256, &mut seeded_rng(12));
        for info in [&[0x04, 0x00][..], &[0x30, 0x00, 0x00], &[0x30, 0x05]] {
            let err = assemble_csr(info, key.signature_algorithm(), &[1, 2]).unwrap_err();
            assert!(matches!(err, CsrBuildError::Encoding(_)), "{err:?}");
        }
    }

    #[test]
    fn a_wrong_signature_is_assembled_but_does_not_verify() {
        let key = SoftwareKey::generate(KeyAlgorithm::P256, &mut seeded_rng(13));
        let info = csr_info_to_sign(key.public_key(), &CsrTemplate::default()).unwrap();
        let signature = key.sign(b"something else").unwrap();
        let der = assemble_csr(&info, key.signature_algorithm(), &signature).unwrap();
        assert!(matches!(
            parse_and_verify(&der, &RustCryptoVerifier),
            Err(CsrError::InvalidSignature(VerifyError::BadSignature))
        ));
    }
}

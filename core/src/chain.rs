//! Chain checks: does a chain lead to a trust anchor at a given time, and is a leaf an X509-SVID?
//!
//! This is the subset of RFC 5280 path validation that a SPIFFE CA needs (signatures, names,
//! validity, CA flags, key usage, path length, unknown critical extensions), with time and
//! signature verification passed in so it runs the same in the server, a browser and on a device.

use alloc::string::{String, ToString};
use core::fmt;

use const_oid::ObjectIdentifier;
use const_oid::db::rfc5912;
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage};

use crate::certificate::CertificateRef;
use crate::crypto::{OidName, SignatureVerifier, VerifyError};
use crate::spiffe::SpiffeId;
use crate::time::UnixTime;

/// Why a chain does not verify. `position` counts from the first certificate of the chain (0).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChainError {
    /// The chain is empty.
    Empty,
    /// There are no trust anchors.
    NoTrustAnchors,
    /// A certificate's extension (basicConstraints, keyUsage) does not decode.
    Malformed {
        /// Which certificate.
        position: usize,
        /// The DER error.
        error: der::Error,
    },
    /// `now` is after NotAfter.
    Expired {
        /// Which certificate (`None`: the trust anchor).
        position: Option<usize>,
        /// Its NotAfter.
        not_after: UnixTime,
    },
    /// `now` is before NotBefore.
    NotYetValid {
        /// Which certificate (`None`: the trust anchor).
        position: Option<usize>,
        /// Its NotBefore.
        not_before: UnixTime,
    },
    /// A certificate's issuer name is not the next certificate's subject.
    IssuerNameMismatch {
        /// Which certificate.
        position: usize,
    },
    /// A certificate's signature does not verify with the next certificate's key.
    BadSignature {
        /// Which certificate.
        position: usize,
        /// Why.
        error: VerifyError,
    },
    /// A certificate used to sign another is not a CA (basicConstraints CA:true, keyCertSign).
    NotCa {
        /// Which certificate (`None`: the trust anchor).
        position: Option<usize>,
    },
    /// A CA's pathLenConstraint is exceeded.
    PathLenExceeded {
        /// Which certificate (`None`: the trust anchor).
        position: Option<usize>,
    },
    /// A critical extension this verifier does not understand.
    UnknownCriticalExtension {
        /// Which certificate.
        position: usize,
        /// The extension.
        oid: ObjectIdentifier,
    },
    /// No trust anchor has the last certificate's issuer name and a key that verifies it.
    UnknownIssuer,
}

impl fmt::Display for ChainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = |p: &Option<usize>| match p {
            Some(i) => alloc::format!("certificate {i}"),
            None => String::from("trust anchor"),
        };
        match self {
            Self::Empty => f.write_str("certificate chain is empty"),
            Self::NoTrustAnchors => f.write_str("no trust anchors"),
            Self::Malformed { position, error } => {
                write!(f, "certificate {position} is malformed: {error}")
            }
            Self::Expired {
                position,
                not_after,
            } => write!(f, "{} expired at {not_after}", at(position)),
            Self::NotYetValid {
                position,
                not_before,
            } => write!(f, "{} is not valid before {not_before}", at(position)),
            Self::IssuerNameMismatch { position } => write!(
                f,
                "certificate {position}'s issuer is not the subject of the certificate after it"
            ),
            Self::BadSignature { position, error } => {
                write!(f, "certificate {position} signature: {error}")
            }
            Self::NotCa { position } => write!(f, "{} is not a CA", at(position)),
            Self::PathLenExceeded { position } => {
                write!(f, "{} path length constraint exceeded", at(position))
            }
            Self::UnknownCriticalExtension { position, oid } => write!(
                f,
                "certificate {position} has unknown critical extension {}",
                OidName(oid)
            ),
            Self::UnknownIssuer => f.write_str("certificate signed by unknown authority"),
        }
    }
}

impl core::error::Error for ChainError {}

const KNOWN_CRITICAL: [ObjectIdentifier; 5] = [
    rfc5912::ID_CE_BASIC_CONSTRAINTS,
    rfc5912::ID_CE_KEY_USAGE,
    rfc5912::ID_CE_EXT_KEY_USAGE,
    rfc5912::ID_CE_SUBJECT_ALT_NAME,
    rfc5912::ID_CE_AUTHORITY_KEY_IDENTIFIER,
];

/// Verifies `chain` (first certificate = the end of the path, each signed by the next, the last
/// signed by one of `anchors`) at `now`.
///
/// Certificates are read in place ([`CertificateRef`]); for x509-cert's owned ones, encode them
/// with [`crate::bundle::encode_certificates`] and read them with
/// [`crate::bundle::read_certificates`].
///
/// The first certificate may be a leaf or a CA (for checking an issuer chain); every later one
/// and the anchor must be CAs whose path length allows the path.
pub fn verify_chain(
    chain: &[CertificateRef<'_>],
    anchors: &[CertificateRef<'_>],
    now: UnixTime,
    verifier: &dyn SignatureVerifier,
) -> Result<(), ChainError> {
    if chain.is_empty() {
        return Err(ChainError::Empty);
    }
    if anchors.is_empty() {
        return Err(ChainError::NoTrustAnchors);
    }
    for (position, cert) in chain.iter().enumerate() {
        check_validity(cert, now, Some(position))?;
        check_critical_extensions(cert, position)?;
        if position > 0 {
            // A CA at position i has i-1 intermediates below it, excluding the end certificate.
            check_ca(cert, Some(position), position - 1)?;
        }
        if let Some(parent) = chain.get(position + 1) {
            check_link(cert, parent, position, verifier)?;
        }
    }
    let (last_position, last) = chain
        .iter()
        .enumerate()
        .next_back()
        .ok_or(ChainError::Empty)?;
    let mut failure = ChainError::UnknownIssuer;
    for anchor in anchors {
        if anchor.subject() != last.issuer() {
            continue;
        }
        // Keep looking after a failure: during root rotation two anchors share a name (and
        // after a same-key renewal, a key), and the first one may be the expired one.
        let accepted = check_link(last, anchor, last_position, verifier)
            .and_then(|()| check_validity(anchor, now, None))
            .and_then(|()| check_ca(anchor, None, chain.len() - 1));
        match accepted {
            Ok(()) => return Ok(()),
            Err(e) => failure = e,
        }
    }
    Err(failure)
}

fn check_validity(
    cert: &CertificateRef<'_>,
    now: UnixTime,
    position: Option<usize>,
) -> Result<(), ChainError> {
    let validity = cert.validity();
    if now < validity.not_before {
        return Err(ChainError::NotYetValid {
            position,
            not_before: validity.not_before,
        });
    }
    if now > validity.not_after {
        return Err(ChainError::Expired {
            position,
            not_after: validity.not_after,
        });
    }
    Ok(())
}

fn check_critical_extensions(cert: &CertificateRef<'_>, position: usize) -> Result<(), ChainError> {
    match cert
        .extensions()
        .iter()
        .find(|e| e.critical && !KNOWN_CRITICAL.contains(&e.extn_id))
    {
        Some(e) => Err(ChainError::UnknownCriticalExtension {
            position,
            oid: e.extn_id,
        }),
        None => Ok(()),
    }
}

/// CA:true, keyCertSign when keyUsage is present, and room for `intermediates_below`.
fn check_ca(
    cert: &CertificateRef<'_>,
    position: Option<usize>,
    intermediates_below: usize,
) -> Result<(), ChainError> {
    let malformed = |error| ChainError::Malformed {
        position: position.unwrap_or_default(),
        error,
    };
    let basic = cert
        .get_extension::<BasicConstraints>()
        .map_err(malformed)?
        .map(|(_, bc)| bc);
    let Some(basic) = basic.filter(|bc| bc.ca) else {
        return Err(ChainError::NotCa { position });
    };
    if let Some((_, usage)) = cert.get_extension::<KeyUsage>().map_err(malformed)?
        && !usage.key_cert_sign()
    {
        return Err(ChainError::NotCa { position });
    }
    if let Some(limit) = basic.path_len_constraint
        && intermediates_below > usize::from(limit)
    {
        return Err(ChainError::PathLenExceeded { position });
    }
    Ok(())
}

pub(crate) fn check_link(
    cert: &CertificateRef<'_>,
    parent: &CertificateRef<'_>,
    position: usize,
    verifier: &dyn SignatureVerifier,
) -> Result<(), ChainError> {
    if cert.issuer() != parent.subject() {
        return Err(ChainError::IssuerNameMismatch { position });
    }
    verify_signature(cert, parent, verifier)
        .map_err(|error| ChainError::BadSignature { position, error })
}

/// Whether `cert`'s signature over its TBS bytes verifies with `signer_cert`'s public key.
fn verify_signature(
    cert: &CertificateRef<'_>,
    signer_cert: &CertificateRef<'_>,
    verifier: &dyn SignatureVerifier,
) -> Result<(), VerifyError> {
    let signature = cert.signature().ok_or(VerifyError::MalformedSignature)?;
    verifier.verify(
        signer_cert.public_key(),
        cert.signature_algorithm(),
        cert.tbs_der(),
        signature,
    )
}

/// Whether a certificate says it is a CA: basicConstraints CA:true and, when keyUsage is
/// present, keyCertSign.
pub(crate) fn is_ca(cert: &CertificateRef<'_>) -> bool {
    check_ca(cert, None, 0).is_ok()
}

/// Whether a certificate names itself as issuer and its own key verifies its signature.
pub fn is_self_signed(cert: &CertificateRef<'_>, verifier: &dyn SignatureVerifier) -> bool {
    cert.issuer() == cert.subject() && verify_signature(cert, cert, verifier).is_ok()
}

/// Why a leaf is not an X509-SVID.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SvidError {
    /// The chain itself does not verify.
    Chain(ChainError),
    /// The leaf is a CA or may sign certificates or CRLs.
    LeafIsCa,
    /// The leaf's keyUsage is missing, not critical, or lacks digitalSignature.
    KeyUsage,
    /// The leaf has no URI SAN, or more than one.
    UriSanCount(usize),
    /// The URI SAN is not a SPIFFE ID with a path.
    NotSpiffeId(String),
    /// The subject is empty but the SAN extension is not critical.
    SanNotCritical,
    /// An extension does not decode.
    Malformed(der::Error),
}

impl fmt::Display for SvidError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Chain(e) => write!(f, "{e}"),
            Self::LeafIsCa => f.write_str("leaf certificate is a CA or has keyCertSign/cRLSign"),
            Self::KeyUsage => {
                f.write_str("leaf keyUsage must be present, critical and include digitalSignature")
            }
            Self::UriSanCount(n) => write!(f, "leaf must have exactly one URI SAN, found {n}"),
            Self::NotSpiffeId(uri) => write!(f, "URI SAN {uri:?} is not a SPIFFE workload ID"),
            Self::SanNotCritical => {
                f.write_str("subject is empty but the SAN extension is not critical")
            }
            Self::Malformed(e) => write!(f, "malformed leaf extension: {e}"),
        }
    }
}

impl core::error::Error for SvidError {}

/// Verifies an X509-SVID chain (leaf first) against `anchors` at `now` and applies the SPIFFE
/// leaf rules (X509-SVID §4–5 and validation step 8); returns the leaf's SPIFFE ID.
pub fn verify_svid(
    chain: &[CertificateRef<'_>],
    anchors: &[CertificateRef<'_>],
    now: UnixTime,
    verifier: &dyn SignatureVerifier,
) -> Result<SpiffeId, SvidError> {
    verify_chain(chain, anchors, now, verifier).map_err(SvidError::Chain)?;
    let leaf = chain.first().ok_or(SvidError::Chain(ChainError::Empty))?;
    svid_id(leaf)
}

/// The SPIFFE ID of a leaf that follows the X509-SVID leaf rules (no chain check).
pub fn svid_id(leaf: &CertificateRef<'_>) -> Result<SpiffeId, SvidError> {
    if let Some((_, basic)) = leaf
        .get_extension::<BasicConstraints>()
        .map_err(SvidError::Malformed)?
        && basic.ca
    {
        return Err(SvidError::LeafIsCa);
    }
    match leaf
        .get_extension::<KeyUsage>()
        .map_err(SvidError::Malformed)?
    {
        Some((true, usage)) if usage.digital_signature() => {
            if usage.key_cert_sign() || usage.crl_sign() {
                return Err(SvidError::LeafIsCa);
            }
        }
        _ => return Err(SvidError::KeyUsage),
    }
    let (critical, uris) = leaf
        .uri_names()
        .map_err(SvidError::Malformed)?
        .ok_or(SvidError::UriSanCount(0))?;
    if leaf.subject().is_empty() && !critical {
        return Err(SvidError::SanNotCritical);
    }
    let [uri] = uris.as_slice() else {
        return Err(SvidError::UriSanCount(uris.len()));
    };
    match SpiffeId::parse(uri) {
        Ok(id) if id.has_path() => Ok(id),
        _ => Err(SvidError::NotSpiffeId(uri.to_string())),
    }
}

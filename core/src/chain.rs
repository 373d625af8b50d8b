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

#[cfg(test)]
mod tests {
    use core::time::Duration;

    use x509_cert::Certificate;

    use super::*;
    use crate::crypto::{KeyAlgorithm, RustCryptoVerifier, SoftwareKey};
    use crate::profile::{IssuerProfile, Validity};
    use crate::spiffe::TrustDomain;
    use crate::test_pki::{
        DAY, NOW, TestPki, build, day, ders, issue_leaf, refs, workload_id, year,
    };
    use crate::test_rng::seeded_rng;

    /// `verify_chain` over owned certificates.
    fn verify(
        chain: &[&Certificate],
        anchors: &[&Certificate],
        now: UnixTime,
    ) -> Result<(), ChainError> {
        let (chain, anchors) = (ders(chain), ders(anchors));
        verify_chain(&refs(&chain), &refs(&anchors), now, &RustCryptoVerifier)
    }

    fn later(d: Duration) -> UnixTime {
        NOW.saturating_add(d)
    }

    /// An issuer for `pki`'s trust domain signed by `pki`'s issuer (a second intermediate).
    fn sub_issuer(pki: &mut TestPki) -> (Certificate, SoftwareKey) {
        let td = TrustDomain::new("example.org").unwrap();
        let sentry_id = SpiffeId::sentry(&td, "other").unwrap();
        let key = SoftwareKey::generate(KeyAlgorithm::P256, &mut pki.rng);
        let profile = IssuerProfile {
            sentry_id: &sentry_id,
            root: &pki.issuer,
        };
        let sub = build(profile, &key, &pki.issuer_key, year(), &mut pki.rng);
        (sub, key)
    }

    #[test]
    fn a_leaf_and_an_issuer_chain_verify_to_the_root() {
        let mut pki = TestPki::example(1);
        let id = workload_id("public", "app");
        let leaf = pki.leaf(&id);
        assert_eq!(verify(&[&leaf, &pki.issuer], &[&pki.root], NOW), Ok(()));
        // The first certificate may be a CA: an issuer chain on its own.
        assert_eq!(verify(&[&pki.issuer], &[&pki.root], NOW), Ok(()));
        // Both ends of the leaf's validity are inside it.
        let v = Validity::of(&leaf);
        assert_eq!(
            verify(&[&leaf, &pki.issuer], &[&pki.root], v.not_before),
            Ok(())
        );
        assert_eq!(
            verify(&[&leaf, &pki.issuer], &[&pki.root], v.not_after),
            Ok(())
        );

        let (chain, anchors) = (ders(&[&leaf, &pki.issuer]), ders(&[&pki.root]));
        let got = verify_svid(&refs(&chain), &refs(&anchors), NOW, &RustCryptoVerifier);
        assert_eq!(got, Ok(id));
        assert!(is_self_signed(&refs(&anchors)[0], &RustCryptoVerifier));
        assert!(!is_self_signed(&refs(&chain)[1], &RustCryptoVerifier));
    }

    #[test]
    fn an_empty_chain_or_no_anchors_is_refused() {
        let pki = TestPki::example(2);
        assert_eq!(verify(&[], &[&pki.root], NOW), Err(ChainError::Empty));
        assert_eq!(
            verify(&[&pki.issuer], &[], NOW),
            Err(ChainError::NoTrustAnchors)
        );
    }

    #[test]
    fn a_chain_to_another_root_is_refused() {
        let mut pki = TestPki::example(3);
        let leaf = pki.leaf(&workload_id("public", "app"));
        // Another trust domain: no anchor has the issuer's name.
        let stranger = TestPki::new("other.org", year(), 4);
        assert_eq!(
            verify(&[&leaf, &pki.issuer], &[&stranger.root], NOW),
            Err(ChainError::UnknownIssuer)
        );
        // The same name with another key: the signature does not verify.
        let impostor = TestPki::example(5);
        assert_eq!(
            verify(&[&leaf, &pki.issuer], &[&impostor.root], NOW),
            Err(ChainError::BadSignature {
                position: 1,
                error: VerifyError::BadSignature
            })
        );
        // During a root rotation both roots share the name: the right one is still found.
        assert_eq!(
            verify(&[&leaf, &pki.issuer], &[&impostor.root, &pki.root], NOW),
            Ok(())
        );
        // A leaf next to an issuer that did not sign it, named differently.
        assert_eq!(
            verify(&[&leaf, &stranger.issuer], &[&stranger.root], NOW),
            Err(ChainError::IssuerNameMismatch { position: 0 })
        );
        // Named the same but signed by another key.
        assert_eq!(
            verify(&[&leaf, &impostor.issuer], &[&impostor.root], NOW),
            Err(ChainError::BadSignature {
                position: 0,
                error: VerifyError::BadSignature
            })
        );
    }

    #[test]
    fn expired_and_not_yet_valid_certificates_are_refused() {
        let mut pki = TestPki::example(6);
        let leaf = pki.leaf(&workload_id("public", "app"));
        let v = Validity::of(&leaf);
        let one = Duration::from_secs(1);
        assert_eq!(
            verify(
                &[&leaf, &pki.issuer],
                &[&pki.root],
                v.not_after.saturating_add(one)
            ),
            Err(ChainError::Expired {
                position: Some(0),
                not_after: v.not_after
            })
        );
        assert_eq!(
            verify(
                &[&leaf, &pki.issuer],
                &[&pki.root],
                v.not_before.saturating_sub(one)
            ),
            Err(ChainError::NotYetValid {
                position: Some(0),
                not_before: v.not_before
            })
        );
        // An issuer that outlives its root (not made by Warden): the anchor is expired.
        let short = Validity::backdated(NOW, Duration::ZERO, DAY);
        let old = TestPki::new("example.org", short, 7);
        let sentry_id = SpiffeId::sentry(&TrustDomain::new("example.org").unwrap(), "x").unwrap();
        let profile = IssuerProfile {
            sentry_id: &sentry_id,
            root: &old.root,
        };
        let long = Validity::backdated(NOW, Duration::ZERO, 365 * DAY);
        let issuer = build(
            profile,
            &old.issuer_key,
            &old.root_key,
            long,
            &mut seeded_rng(8),
        );
        assert_eq!(
            verify(&[&issuer], &[&old.root], later(2 * DAY)),
            Err(ChainError::Expired {
                position: None,
                not_after: short.not_after
            })
        );
    }

    #[test]
    fn the_issuers_path_length_zero_allows_no_intermediate_below_it() {
        let mut pki = TestPki::example(9);
        let (sub, sub_key) = sub_issuer(&mut pki);
        let id = workload_id("public", "app");
        let (leaf, _) = issue_leaf(&mut pki.rng, &sub, &sub_key, &id, &[], day());
        // The sub-issuer verifies (the root has no limit, the issuer has none below it), the
        // leaf under it does not.
        assert_eq!(verify(&[&sub, &pki.issuer], &[&pki.root], NOW), Ok(()));
        assert_eq!(
            verify(&[&leaf, &sub, &pki.issuer], &[&pki.root], NOW),
            Err(ChainError::PathLenExceeded { position: Some(2) })
        );
        // The same limit on a trust anchor.
        assert_eq!(
            verify(&[&leaf, &sub], &[&pki.issuer], NOW),
            Err(ChainError::PathLenExceeded { position: None })
        );
    }

    #[test]
    fn a_leaf_cannot_sign_certificates() {
        let mut pki = TestPki::example(10);
        let id = workload_id("public", "app");
        let (leaf, leaf_key) =
            issue_leaf(&mut pki.rng, &pki.issuer, &pki.issuer_key, &id, &[], day());
        let (grandchild, _) = issue_leaf(&mut pki.rng, &leaf, &leaf_key, &id, &[], day());
        assert_eq!(
            verify(&[&grandchild, &leaf, &pki.issuer], &[&pki.root], NOW),
            Err(ChainError::NotCa { position: Some(1) })
        );
        assert_eq!(
            verify(&[&grandchild], &[&leaf], NOW),
            Err(ChainError::NotCa { position: None })
        );
    }

    #[test]
    fn a_ca_is_not_an_svid() {
        let pki = TestPki::example(11);
        let issuer = ders(&[&pki.issuer]);
        let issuer = refs(&issuer);
        assert_eq!(svid_id(&issuer[0]), Err(SvidError::LeafIsCa));
        let anchors = ders(&[&pki.root]);
        let chain_only = verify_svid(&issuer, &refs(&anchors), NOW, &RustCryptoVerifier);
        assert_eq!(chain_only, Err(SvidError::LeafIsCa));
        // A chain failure comes first, wrapped.
        let expired = verify_svid(
            &issuer,
            &refs(&anchors),
            later(400 * DAY),
            &RustCryptoVerifier,
        );
        assert!(matches!(
            expired,
            Err(SvidError::Chain(ChainError::Expired {
                position: Some(0),
                ..
            }))
        ));
    }
}

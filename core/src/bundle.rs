//! The CA's credentials (`ca.crt`, `issuer.crt`, `issuer.key`): load and validate them as Sentry
//! does, generate a fresh self-signed set, and issue workload SVIDs from them.

use alloc::boxed::Box;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use core::time::Duration;

use der::referenced::OwnedToRef;
use der::{Decode, Encode};
use rand_core::CryptoRng;
use spki::SubjectPublicKeyInfoOwned;
use x509_cert::Certificate;
use zeroize::Zeroizing;

use crate::certificate::CertificateRef;
use crate::chain::{self, ChainError};
use crate::crypto::{CaSigner, KeyAlgorithm, KeyError, SignError, SignatureVerifier, SoftwareKey};
use crate::pem::{self, CERTIFICATE_LABEL, PemError};
use crate::profile::{self, IssuerProfile, RootName, RootProfile, Validity, WorkloadProfile};
use crate::signed::BuildError;
use crate::spiffe::{SpiffeId, TrustDomain};
use crate::time::UnixTime;

/// Sentry's file name for the trust anchors.
pub const TRUST_ANCHORS_FILENAME: &str = "ca.crt";
/// Sentry's file name for the issuer certificate chain.
pub const ISSUER_CERT_FILENAME: &str = "issuer.crt";
/// Sentry's file name for the issuer private key.
pub const ISSUER_KEY_FILENAME: &str = "issuer.key";

/// Which credential file an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CredentialFile {
    /// `ca.crt`.
    TrustAnchors,
    /// `issuer.crt`.
    IssuerCertificate,
    /// `issuer.key`.
    IssuerKey,
}

impl CredentialFile {
    /// Sentry's default file name.
    pub fn default_filename(self) -> &'static str {
        match self {
            Self::TrustAnchors => TRUST_ANCHORS_FILENAME,
            Self::IssuerCertificate => ISSUER_CERT_FILENAME,
            Self::IssuerKey => ISSUER_KEY_FILENAME,
        }
    }
}

/// Why certificates in a PEM file could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertificatesError {
    /// The PEM framing is broken.
    Pem(PemError),
    /// The file has no `CERTIFICATE` block.
    NoCertificates,
    /// A block is not a `CERTIFICATE`.
    UnexpectedBlock(String),
    /// A certificate does not decode.
    Malformed {
        /// Which certificate (0 = first).
        position: usize,
        /// Why.
        error: der::Error,
    },
}

impl fmt::Display for CertificatesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pem(e) => write!(f, "{e}"),
            Self::NoCertificates => f.write_str("no PEM CERTIFICATE block found"),
            Self::UnexpectedBlock(label) => {
                write!(
                    f,
                    "unexpected PEM block \"{label}\", expected \"CERTIFICATE\""
                )
            }
            Self::Malformed { position, error } => {
                write!(f, "certificate {position} does not parse: {error}")
            }
        }
    }
}

impl core::error::Error for CertificatesError {}

/// The DER of every `CERTIFICATE` block in PEM text, in order, not yet decoded. Text around
/// blocks (comments) is ignored.
pub fn certificate_ders(text: &[u8]) -> Result<Vec<Vec<u8>>, CertificatesError> {
    let text = pem::as_text(text).map_err(CertificatesError::Pem)?;
    let blocks = pem::all_blocks(text).map_err(CertificatesError::Pem)?;
    if blocks.is_empty() {
        return Err(CertificatesError::NoCertificates);
    }
    blocks
        .into_iter()
        .map(|block| {
            if block.label == CERTIFICATE_LABEL {
                Ok(block.der)
            } else {
                Err(CertificatesError::UnexpectedBlock(block.label.to_string()))
            }
        })
        .collect()
}

/// Every certificate in PEM text, in order. Text around blocks (comments) is ignored.
pub fn parse_certificates(text: &[u8]) -> Result<Vec<Certificate>, CertificatesError> {
    certificate_ders(text)?
        .iter()
        .enumerate()
        .map(|(position, der)| {
            Certificate::from_der(der)
                .map_err(|error| CertificatesError::Malformed { position, error })
        })
        .collect()
}

/// DER certificates read in place, for chain checks ([`chain`]).
pub fn read_certificates<D: AsRef<[u8]>>(
    ders: &[D],
) -> Result<Vec<CertificateRef<'_>>, CertificatesError> {
    ders.iter()
        .enumerate()
        .map(|(position, der)| {
            CertificateRef::from_der(der.as_ref())
                .map_err(|error| CertificatesError::Malformed { position, error })
        })
        .collect()
}

/// The DER of x509-cert certificates, to read them with [`read_certificates`].
pub fn encode_certificates(
    certificates: &[Certificate],
) -> Result<Vec<Vec<u8>>, CertificatesError> {
    certificates
        .iter()
        .enumerate()
        .map(|(position, cert)| {
            cert.to_der()
                .map_err(|error| CertificatesError::Malformed { position, error })
        })
        .collect()
}

/// Certificates as concatenated PEM blocks (no comments), as Go's `EncodeX509Chain` writes them.
pub fn certificates_to_pem<'a>(
    certificates: impl IntoIterator<Item = &'a Certificate>,
) -> Result<String, der::Error> {
    let ders = certificates
        .into_iter()
        .map(Encode::to_der)
        .collect::<Result<Vec<_>, _>>()?;
    ders_to_pem(&ders).map_err(|_| der::Error::from(der::ErrorKind::Failed))
}

/// DER certificates as concatenated PEM blocks, as [`certificates_to_pem`] writes them.
fn ders_to_pem<'a>(ders: impl IntoIterator<Item = &'a Vec<u8>>) -> Result<String, PemError> {
    let mut out = String::new();
    for der in ders {
        pem::encode_into(&mut out, CERTIFICATE_LABEL, der)?;
    }
    Ok(out)
}

/// Why a credential set was refused. Messages reuse Sentry's wording.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BundleError {
    /// A certificate file could not be read.
    Certificates(CredentialFile, CertificatesError),
    /// A trust anchor does not sign itself.
    AnchorNotSelfSigned {
        /// Which anchor (0 = first).
        position: usize,
    },
    /// `issuer.crt` holds only self-signed certificates.
    NoIssuerCertificate,
    /// A certificate in `issuer.crt` is not signed by the one after it.
    IssuerChainBroken(ChainError),
    /// The first certificate of `issuer.crt` is not a CA.
    IssuerNotCa,
    /// The issuer key could not be read.
    IssuerKey(KeyError),
    /// The issuer key is not the key of the issuer certificate.
    KeyMismatch,
    /// The issuer chain does not verify to the anchors now.
    NotTrusted(ChainError),
}

impl BundleError {
    /// The file the problem is in.
    pub fn file(&self) -> CredentialFile {
        match self {
            Self::Certificates(file, _) => *file,
            Self::AnchorNotSelfSigned { .. } => CredentialFile::TrustAnchors,
            Self::IssuerKey(_) | Self::KeyMismatch => CredentialFile::IssuerKey,
            Self::NoIssuerCertificate
            | Self::IssuerChainBroken(_)
            | Self::IssuerNotCa
            | Self::NotTrusted(_) => CredentialFile::IssuerCertificate,
        }
    }
}

impl fmt::Display for BundleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Certificates(_, e) => write!(f, "{e}"),
            Self::AnchorNotSelfSigned { position } => write!(
                f,
                "certificate in trust anchor is not self-signed (certificate {position})"
            ),
            Self::NoIssuerCertificate => {
                f.write_str("issuer chain holds no certificate that is not self-signed")
            }
            Self::IssuerChainBroken(e) => write!(f, "issuer chain is not a valid chain: {e}"),
            Self::IssuerNotCa => f.write_str("issuer certificate is not a CA"),
            Self::IssuerKey(e) => write!(f, "issuer key: {e}"),
            Self::KeyMismatch => f.write_str("issuer key does not match issuer certificate"),
            Self::NotTrusted(e) => write!(f, "issuer chain does not belong to trust anchors: {e}"),
        }
    }
}

impl core::error::Error for BundleError {}

/// The PEM texts of a credential set, as written to disk.
pub struct CredentialFiles {
    /// `ca.crt`: the trust anchors.
    pub trust_anchors: String,
    /// `issuer.crt`: the issuer chain.
    pub issuer_certificate: String,
    /// `issuer.key`: PKCS#8 PEM.
    pub issuer_key: Zeroizing<String>,
}

impl fmt::Debug for CredentialFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialFiles")
            .field("trust_anchors", &self.trust_anchors)
            .field("issuer_certificate", &self.issuer_certificate)
            .finish_non_exhaustive()
    }
}

/// A validated credential set, ready to issue.
pub struct CaBundle {
    trust_anchors: Vec<Certificate>,
    trust_anchors_pem: String,
    issuer_chain: Vec<Certificate>,
    issuer_chain_pem: String,
    issuer_key: Box<dyn CaSigner>,
}

impl fmt::Debug for CaBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaBundle")
            .field("trust_anchors", &self.trust_anchors.len())
            .field("issuer_chain", &self.issuer_chain.len())
            .finish_non_exhaustive()
    }
}

impl CaBundle {
    /// Loads `ca.crt`, `issuer.crt` and `issuer.key` and validates them as Sentry does.
    pub fn from_pem(
        trust_anchors: &[u8],
        issuer_certificate: &[u8],
        issuer_key: &[u8],
        now: UnixTime,
        verifier: &dyn SignatureVerifier,
    ) -> Result<Self, BundleError> {
        let anchors = parse_certificates(trust_anchors)
            .map_err(|e| BundleError::Certificates(CredentialFile::TrustAnchors, e))?;
        let chain = parse_certificates(issuer_certificate)
            .map_err(|e| BundleError::Certificates(CredentialFile::IssuerCertificate, e))?;
        let key = SoftwareKey::from_pem(issuer_key).map_err(BundleError::IssuerKey)?;
        Self::from_parts(anchors, chain, Box::new(key), now, verifier)
    }

    /// Validates a credential set whose issuer key may live anywhere (memory, HSM):
    /// every anchor self-signed; the issuer chain linked, its trailing self-signed root dropped;
    /// the first certificate a CA matching the key; the chain valid to an anchor at `now`.
    pub fn from_parts(
        trust_anchors: Vec<Certificate>,
        mut issuer_chain: Vec<Certificate>,
        issuer_key: Box<dyn CaSigner>,
        now: UnixTime,
        verifier: &dyn SignatureVerifier,
    ) -> Result<Self, BundleError> {
        let anchors_der = encode_certificates(&trust_anchors)
            .map_err(|e| BundleError::Certificates(CredentialFile::TrustAnchors, e))?;
        let anchor_refs = read_certificates(&anchors_der)
            .map_err(|e| BundleError::Certificates(CredentialFile::TrustAnchors, e))?;
        let chain_der = encode_certificates(&issuer_chain)
            .map_err(|e| BundleError::Certificates(CredentialFile::IssuerCertificate, e))?;
        let mut issuer_refs = read_certificates(&chain_der)
            .map_err(|e| BundleError::Certificates(CredentialFile::IssuerCertificate, e))?;
        if let Some(position) = anchor_refs
            .iter()
            .position(|anchor| !chain::is_self_signed(anchor, verifier))
        {
            return Err(BundleError::AnchorNotSelfSigned { position });
        }
        if issuer_refs
            .last()
            .is_some_and(|last| chain::is_self_signed(last, verifier))
        {
            issuer_refs.pop();
            issuer_chain.pop();
        }
        let (Some(issuer), Some(issuer_ref)) = (issuer_chain.first(), issuer_refs.first()) else {
            return Err(BundleError::NoIssuerCertificate);
        };
        if !chain::is_ca(issuer_ref) {
            return Err(BundleError::IssuerNotCa);
        }
        if !key_matches(issuer, &issuer_key.public_key()) {
            return Err(BundleError::KeyMismatch);
        }
        // Linkage is checked at the epoch-independent level first, so a broken file is reported
        // as broken rather than as untrusted.
        for (position, pair) in issuer_refs.windows(2).enumerate() {
            if let [child, parent] = pair {
                chain::check_link(child, parent, position, verifier)
                    .map_err(BundleError::IssuerChainBroken)?;
            }
        }
        chain::verify_chain(&issuer_refs, &anchor_refs, now, verifier)
            .map_err(BundleError::NotTrusted)?;
        let trust_anchors_pem = ders_to_pem(&anchors_der).map_err(|e| {
            BundleError::Certificates(CredentialFile::TrustAnchors, CertificatesError::Pem(e))
        })?;
        // Without the self-signed root that may have been dropped above.
        let issuer_chain_pem =
            ders_to_pem(chain_der.iter().take(issuer_refs.len())).map_err(|e| {
                BundleError::Certificates(
                    CredentialFile::IssuerCertificate,
                    CertificatesError::Pem(e),
                )
            })?;
        Ok(Self {
            trust_anchors,
            trust_anchors_pem,
            issuer_chain,
            issuer_chain_pem,
            issuer_key,
        })
    }

    /// Makes a fresh root and issuer, as Sentry does on first start; the root key is discarded,
    /// so the root can never sign again. Returns the bundle and the files to store.
    pub fn generate<R: CryptoRng + ?Sized>(
        params: &CaParams<'_>,
        now: UnixTime,
        rng: &mut R,
    ) -> Result<(Self, CredentialFiles), IssueError> {
        let root_key = SoftwareKey::generate(params.key_algorithm, rng);
        let validity = Validity::backdated(now, params.clock_skew, params.lifetime);
        let root = create_root(&root_key, params.trust_domain, validity, rng)?;
        let issuer_key = SoftwareKey::generate(params.key_algorithm, rng);
        let sentry_id = SpiffeId::sentry(params.trust_domain, params.namespace)
            .map_err(|e| IssueError::InvalidName(e.to_string()))?;
        let issuer = create_issuer(
            &root_key,
            &root,
            issuer_key.public_key(),
            &sentry_id,
            validity,
            rng,
        )?;
        let files = CredentialFiles {
            trust_anchors: certificates_to_pem([&root]).map_err(IssueError::Encoding)?,
            issuer_certificate: certificates_to_pem([&issuer]).map_err(IssueError::Encoding)?,
            issuer_key: issuer_key.to_pkcs8_pem().map_err(IssueError::Key)?,
        };
        let bundle = Self {
            trust_anchors_pem: files.trust_anchors.clone(),
            issuer_chain_pem: files.issuer_certificate.clone(),
            trust_anchors: alloc::vec![root],
            issuer_chain: alloc::vec![issuer],
            issuer_key: Box::new(issuer_key),
        };
        Ok((bundle, files))
    }

    /// The trust anchors.
    pub fn trust_anchors(&self) -> &[Certificate] {
        &self.trust_anchors
    }

    /// The trust anchors as PEM, comments stripped: `trust_chain_certificates[0]` of a response.
    pub fn trust_anchors_pem(&self) -> &str {
        &self.trust_anchors_pem
    }

    /// The issuer chain, issuer first, without self-signed certificates.
    pub fn issuer_chain(&self) -> &[Certificate] {
        &self.issuer_chain
    }

    /// The issuer chain as PEM.
    pub fn issuer_chain_pem(&self) -> &str {
        &self.issuer_chain_pem
    }

    /// The issuing certificate (first of the chain).
    pub fn issuer(&self) -> &Certificate {
        // from_parts and generate both refuse an empty chain.
        self.issuer_chain
            .first()
            .unwrap_or_else(|| unreachable!("a CaBundle always has an issuer certificate"))
    }

    /// The issuer's validity window.
    pub fn issuer_validity(&self) -> Validity {
        Validity::of(self.issuer())
    }

    /// Issues a workload X509-SVID.
    ///
    /// NotBefore = now − skew; NotAfter = min(now + TTL, issuer NotAfter), so no leaf outlives
    /// its issuer (Sentry does not cap, #8557). Refuses while the issuer is expired or not yet
    /// valid.
    pub fn issue_workload<R: CryptoRng + ?Sized>(
        &self,
        request: &WorkloadRequest<'_>,
        now: UnixTime,
        rng: &mut R,
    ) -> Result<IssuedSvid, IssueError> {
        if !request.spiffe_id.has_path() {
            return Err(IssueError::InvalidName(request.spiffe_id.to_string()));
        }
        let issuer_validity = self.issuer_validity();
        if now < issuer_validity.not_before {
            return Err(IssueError::IssuerNotYetValid {
                not_before: issuer_validity.not_before,
            });
        }
        if now > issuer_validity.not_after {
            return Err(IssueError::IssuerExpired {
                not_after: issuer_validity.not_after,
            });
        }
        let mut validity = Validity::backdated(now, request.clock_skew, request.ttl);
        validity.not_after = validity.not_after.min(issuer_validity.not_after);
        let profile = WorkloadProfile {
            spiffe_id: request.spiffe_id,
            dns_names: request.dns_names,
            issuer: self.issuer(),
        };
        let certificate = profile::build_certificate(
            profile,
            request.public_key.clone(),
            validity,
            &*self.issuer_key,
            rng,
        )
        .map_err(IssueError::from)?;
        let certificate_der = certificate.to_der().map_err(IssueError::Encoding)?;
        let mut chain_pem = String::with_capacity(2 * self.issuer_chain_pem.len());
        pem::encode_into(&mut chain_pem, CERTIFICATE_LABEL, &certificate_der)
            .map_err(|_| IssueError::Encoding(der::ErrorKind::Failed.into()))?;
        chain_pem.push_str(&self.issuer_chain_pem);
        Ok(IssuedSvid {
            certificate,
            certificate_der,
            chain_pem,
            validity,
        })
    }
}

/// What a fresh CA looks like.
#[derive(Clone, Copy, Debug)]
pub struct CaParams<'a> {
    /// Trust domain of the root (`--trust-domain`).
    pub trust_domain: &'a TrustDomain,
    /// Sentry's namespace (env `NAMESPACE`), which goes into the issuer's subject.
    pub namespace: &'a str,
    /// Key algorithm for root and issuer.
    pub key_algorithm: KeyAlgorithm,
    /// Lifetime of both certificates.
    pub lifetime: Duration,
    /// Backdating of NotBefore.
    pub clock_skew: Duration,
}

/// A workload certificate to issue.
#[derive(Clone, Copy, Debug)]
pub struct WorkloadRequest<'a> {
    /// The verified CSR key.
    pub public_key: &'a SubjectPublicKeyInfoOwned,
    /// The SPIFFE ID (must have a path).
    pub spiffe_id: &'a SpiffeId,
    /// Extra DNS SANs.
    pub dns_names: &'a [String],
    /// `workloadCertTTL`.
    pub ttl: Duration,
    /// `allowedClockSkew`.
    pub clock_skew: Duration,
}

/// An issued SVID and the response encoding.
#[derive(Clone, Debug)]
pub struct IssuedSvid {
    /// The leaf.
    pub certificate: Certificate,
    /// The leaf's DER.
    pub certificate_der: Vec<u8>,
    /// `workload_certificate`: the leaf then the issuer chain, without self-signed certificates.
    pub chain_pem: String,
    /// The leaf's validity (`valid_until` = `validity.not_after`).
    pub validity: Validity,
}

/// Why a certificate could not be made.
#[derive(Debug)]
#[non_exhaustive]
pub enum IssueError {
    /// The issuer's NotAfter has passed.
    IssuerExpired {
        /// Its NotAfter.
        not_after: UnixTime,
    },
    /// The issuer's NotBefore has not come yet.
    IssuerNotYetValid {
        /// Its NotBefore.
        not_before: UnixTime,
    },
    /// The SPIFFE ID or a name cannot go into a certificate.
    InvalidName(String),
    /// The signer failed.
    Sign(SignError),
    /// A key could not be encoded.
    Key(KeyError),
    /// DER encoding failed.
    Encoding(der::Error),
    /// A root is to be renewed with a key that is not its own.
    NotTheRootKey,
    /// A renewed root's subject would not be byte-identical to the old root's (the old one is
    /// not DER-encoded the way it is re-encoded).
    SubjectNotKept,
}

impl From<BuildError> for IssueError {
    fn from(e: BuildError) -> Self {
        match e {
            BuildError::Sign(e) => Self::Sign(e),
            BuildError::Encoding(e) => Self::Encoding(e),
            BuildError::Builder(x509_cert::builder::Error::Asn1(e)) => Self::Encoding(e),
            BuildError::Builder(other) => Self::InvalidName(other.to_string()),
        }
    }
}

impl fmt::Display for IssueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::IssuerExpired { not_after } => {
                write!(f, "issuer certificate expired at {not_after}")
            }
            Self::IssuerNotYetValid { not_before } => {
                write!(f, "issuer certificate is not valid before {not_before}")
            }
            Self::InvalidName(name) => write!(f, "invalid name for a certificate: {name}"),
            Self::Sign(e) => write!(f, "{e}"),
            Self::Key(e) => write!(f, "{e}"),
            Self::Encoding(e) => write!(f, "certificate encoding failed: {e}"),
            Self::NotTheRootKey => {
                f.write_str("the key is not the key of the root certificate to renew")
            }
            Self::SubjectNotKept => f.write_str(
                "the root's subject name cannot be copied byte for byte into a new certificate",
            ),
        }
    }
}

impl core::error::Error for IssueError {}

/// A self-signed root for `trust_domain` with `signer`'s key.
pub fn create_root<R: CryptoRng + ?Sized>(
    signer: &dyn CaSigner,
    trust_domain: &TrustDomain,
    validity: Validity,
    rng: &mut R,
) -> Result<Certificate, IssueError> {
    profile::build_certificate(
        RootProfile {
            name: RootName::TrustDomain(trust_domain),
        },
        signer.public_key(),
        validity,
        signer,
        rng,
    )
    .map_err(IssueError::from)
}

/// A new self-signed root for the key of `old_root_der` (a DER certificate), with the same
/// subject (byte for byte) and subject key identifier, and a fresh serial and `validity`.
///
/// A client that holds the old root as its trust anchor matches an issuer to it by name (Go's
/// crypto/x509, rustls-webpki, pyca/cryptography) and by key identifier (OpenSSL), then checks
/// the signature with the anchor's key, so every issuer signed with this key and naming the
/// new root verifies under the old root too, and the other way round.
pub fn renew_root<R: CryptoRng + ?Sized>(
    signer: &dyn CaSigner,
    old_root_der: &[u8],
    validity: Validity,
    rng: &mut R,
) -> Result<Certificate, IssueError> {
    let old = CertificateRef::from_der(old_root_der).map_err(IssueError::Encoding)?;
    let public_key = signer.public_key();
    if old.public_key() != public_key.owned_to_ref() {
        return Err(IssueError::NotTheRootKey);
    }
    let subject_der = old.subject().as_der();
    let subject = x509_cert::name::Name::from_der(subject_der).map_err(IssueError::Encoding)?;
    let key_identifier = old
        .get_extension::<x509_cert::ext::pkix::SubjectKeyIdentifier>()
        .map_err(IssueError::Encoding)?
        .map(|(_, skid)| skid.0.into_bytes());
    let root = profile::build_certificate(
        RootProfile {
            name: RootName::Kept {
                subject: &subject,
                key_identifier: key_identifier.as_deref(),
            },
        },
        public_key,
        validity,
        signer,
        rng,
    )
    .map_err(IssueError::from)?;
    // Clients compare names as bytes (Go's RawIssuer against RawSubject); a re-encoding that
    // differs in any byte would silently break them.
    let new_subject = root
        .tbs_certificate()
        .subject()
        .to_der()
        .map_err(IssueError::Encoding)?;
    if new_subject != subject_der {
        return Err(IssueError::SubjectNotKept);
    }
    Ok(root)
}

/// An issuer certificate for `issuer_key`, signed by `root_signer` (the key of `root`).
/// NotAfter is capped at the root's, so the issuer never outlives what vouches for it.
pub fn create_issuer<R: CryptoRng + ?Sized>(
    root_signer: &dyn CaSigner,
    root: &Certificate,
    issuer_key: SubjectPublicKeyInfoOwned,
    sentry_id: &SpiffeId,
    mut validity: Validity,
    rng: &mut R,
) -> Result<Certificate, IssueError> {
    validity.not_after = validity.not_after.min(Validity::of(root).not_after);
    profile::build_certificate(
        IssuerProfile { sentry_id, root },
        issuer_key,
        validity,
        root_signer,
        rng,
    )
    .map_err(IssueError::from)
}

/// Whether `key` is the public key of `certificate`.
pub fn key_matches(certificate: &Certificate, key: &SubjectPublicKeyInfoOwned) -> bool {
    certificate
        .tbs_certificate()
        .subject_public_key_info()
        .owned_to_ref()
        == key.owned_to_ref()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::crypto::RustCryptoVerifier;
    use crate::csr;
    use crate::test_rng::seeded_rng;

    const NOW: UnixTime = UnixTime::from_secs(1_790_000_000);

    /// A fresh P-256 CA for `example.org` with Sentry's defaults, from a seeded RNG.
    pub(crate) fn generate_for_tests(now: UnixTime, seed: u64) -> (CaBundle, CredentialFiles) {
        let td = TrustDomain::new("example.org").unwrap();
        let params = CaParams {
            trust_domain: &td,
            namespace: "dapr-system",
            key_algorithm: KeyAlgorithm::P256,
            lifetime: profile::DEFAULT_CA_TTL,
            clock_skew: profile::DEFAULT_CLOCK_SKEW,
        };
        CaBundle::generate(&params, now, &mut seeded_rng(seed)).unwrap()
    }

    #[test]
    fn generated_ca_issues_svids_that_verify_and_reload() {
        let (bundle, files) = generate_for_tests(NOW, 1);
        let mut rng = seeded_rng(2);
        let reloaded = CaBundle::from_pem(
            files.trust_anchors.as_bytes(),
            files.issuer_certificate.as_bytes(),
            files.issuer_key.as_bytes(),
            NOW,
            &RustCryptoVerifier,
        )
        .unwrap();
        assert_eq!(reloaded.trust_anchors_pem(), bundle.trust_anchors_pem());

        let csr = csr::parse_and_verify(
            include_bytes!("../../tests/data/go-csr/csr-ed25519.pem"),
            &RustCryptoVerifier,
        )
        .unwrap();
        let id =
            SpiffeId::workload(&TrustDomain::new("public").unwrap(), "default", "app").unwrap();
        let issued = reloaded
            .issue_workload(
                &WorkloadRequest {
                    public_key: &csr.public_key,
                    spiffe_id: &id,
                    dns_names: &[],
                    ttl: profile::DEFAULT_WORKLOAD_TTL,
                    clock_skew: profile::DEFAULT_CLOCK_SKEW,
                },
                NOW,
                &mut rng,
            )
            .unwrap();
        let chain_der = certificate_ders(issued.chain_pem.as_bytes()).unwrap();
        let chain = read_certificates(&chain_der).unwrap();
        assert_eq!(chain.len(), 2);
        let anchors_der = encode_certificates(reloaded.trust_anchors()).unwrap();
        let anchors = read_certificates(&anchors_der).unwrap();
        let got = chain::verify_svid(&chain, &anchors, NOW, &RustCryptoVerifier).unwrap();
        assert_eq!(got, id);
    }

    #[test]
    fn renew_root_keeps_a_foreign_subject_and_key_identifier() {
        let mut rng = seeded_rng(3);
        let root_key = SoftwareKey::generate(KeyAlgorithm::P256, &mut rng);
        // The Dapr docs' OpenSSL recipe: a six-attribute DN and a SHA-1 SKID, not ours.
        let subject: x509_cert::name::Name =
            "CN=cluster.local,OU=dapr.io/sentry,O=dapr.io/sentry,L=Daprville,ST=VA,C=US"
                .parse()
                .unwrap();
        let skid = [7u8; 20];
        let validity =
            Validity::backdated(NOW, profile::DEFAULT_CLOCK_SKEW, profile::DEFAULT_CA_TTL);
        let old = profile::build_certificate(
            RootProfile {
                name: RootName::Kept {
                    subject: &subject,
                    key_identifier: Some(&skid),
                },
            },
            root_key.public_key(),
            validity,
            &root_key,
            &mut rng,
        )
        .unwrap();
        let old_der = old.to_der().unwrap();
        let later = Validity::backdated(
            NOW.saturating_add(profile::DEFAULT_WORKLOAD_TTL),
            profile::DEFAULT_CLOCK_SKEW,
            profile::DEFAULT_CA_TTL,
        );
        let renewed = renew_root(&root_key, &old_der, later, &mut rng).unwrap();
        let renewed_der = renewed.to_der().unwrap();
        let (old_ref, new_ref) = (
            CertificateRef::from_der(&old_der).unwrap(),
            CertificateRef::from_der(&renewed_der).unwrap(),
        );
        assert_ne!(old_der, renewed_der);
        assert_eq!(new_ref.subject().as_der(), old_ref.subject().as_der());
        assert_eq!(new_ref.issuer().as_der(), old_ref.subject().as_der());
        let skid_of = |c: &CertificateRef<'_>| {
            c.get_extension::<x509_cert::ext::pkix::SubjectKeyIdentifier>()
                .unwrap()
                .map(|(_, s)| s.0.into_bytes())
        };
        assert_eq!(skid_of(&new_ref).as_deref(), Some(&skid[..]));
        assert!(chain::is_self_signed(&new_ref, &RustCryptoVerifier));

        // An issuer of the renewed root verifies under the old root alone, and the other way.
        let td = TrustDomain::new("cluster.local").unwrap();
        let sentry_id = SpiffeId::sentry(&td, "default").unwrap();
        for (signing_root, checking_root) in [(&renewed, &old_der), (&old, &renewed_der)] {
            let issuer_key = SoftwareKey::generate(KeyAlgorithm::P256, &mut rng);
            let issuer = create_issuer(
                &root_key,
                signing_root,
                issuer_key.public_key(),
                &sentry_id,
                validity,
                &mut rng,
            )
            .unwrap();
            let issuer_der = [issuer.to_der().unwrap()];
            let path = read_certificates(&issuer_der).unwrap();
            let anchors = read_certificates(core::slice::from_ref(checking_root)).unwrap();
            let at = NOW.saturating_add(profile::DEFAULT_WORKLOAD_TTL);
            chain::verify_chain(&path, &anchors, at, &RustCryptoVerifier).unwrap();
        }

        // Without an SKID the renewed root has none either.
        let bare = profile::build_certificate(
            RootProfile {
                name: RootName::Kept {
                    subject: &subject,
                    key_identifier: None,
                },
            },
            root_key.public_key(),
            validity,
            &root_key,
            &mut rng,
        )
        .unwrap();
        let bare_renewed = renew_root(&root_key, &bare.to_der().unwrap(), later, &mut rng)
            .unwrap()
            .to_der()
            .unwrap();
        assert_eq!(
            skid_of(&CertificateRef::from_der(&bare_renewed).unwrap()),
            None
        );

        // Another key is refused: it could not keep the old root's clients.
        let other = SoftwareKey::generate(KeyAlgorithm::P256, &mut rng);
        assert!(matches!(
            renew_root(&other, &old_der, later, &mut rng),
            Err(IssueError::NotTheRootKey)
        ));
    }
}

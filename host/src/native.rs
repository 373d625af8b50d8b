//! The host's fast crypto backend: aws-lc-rs (also rustls's provider) behind core's
//! [`CaSigner`] and [`SignatureVerifier`] traits.
//!
//! Core's pure-Rust RustCrypto backend ([`RustCryptoVerifier`], [`SoftwareKey`]) stays the
//! portable default; the server uses this one. The two must be interchangeable:
//!
//! * [`NativeVerifier`] accepts exactly the key and algorithm combinations
//!   [`RustCryptoVerifier`] accepts, and reports the same [`VerifyError`] for the same bad input:
//!   the key is classified by core's [`KeyType::of`], the checks run in the same order, and the
//!   ECDSA signature DER is held to the `ecdsa` crate's rules before aws-lc-rs sees it.
//! * [`NativeKey`] produces the same AlgorithmIdentifier and SubjectPublicKeyInfo encodings as
//!   [`SoftwareKey`] for the same key, so certificates differ only in their signature.
//!
//! Beyond core, [`NativeKey`] signs with ECDSA P-384 and RSA (PKCS#1 v1.5 with SHA-256, as Go
//! and Sentry do), the other issuer keys Sentry accepts.

use core::fmt;

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::error::KeyRejected;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    self as lc, EcdsaKeyPair, EcdsaSigningAlgorithm, EcdsaVerificationAlgorithm, Ed25519KeyPair,
    KeyPair as _, RsaKeyPair, UnparsedPublicKey,
};
use const_oid::ObjectIdentifier;
use const_oid::db::{rfc5912, rfc8410};
use der::Decode;
use der::asn1::{BitString, UintRef};
use der::referenced::OwnedToRef;
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use spki::{
    AlgorithmIdentifierOwned, AlgorithmIdentifierRef, SubjectPublicKeyInfoOwned,
    SubjectPublicKeyInfoRef,
};
use warden_core::crypto::{
    CaSigner, KeyAlgorithm, KeyError, KeyType, RustCryptoVerifier, SignError, SignatureVerifier,
    SoftwareKey, VerifyError,
};
use warden_core::pem::PemError;
use zeroize::Zeroizing;

/// The PEM label of a PKCS#8 private key, the form Sentry stores `issuer.key` in.
const PKCS8_LABEL: &str = "PRIVATE KEY";
/// An Ed25519 public key is 32 bytes.
const ED25519_KEY_LEN: usize = 32;
/// An Ed25519 signature is 64 bytes.
const ED25519_SIGNATURE_LEN: usize = 64;

/// Why a [`NativeKey`] could not be made or exported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NativeError {
    /// The key is not one Warden signs with, or could not be encoded.
    Key(KeyError),
    /// An aws-lc-rs call failed; it reports nothing beyond which call it was.
    Backend(&'static str),
}

impl fmt::Display for NativeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Key(e) => write!(f, "{e}"),
            Self::Backend(call) => write!(f, "aws-lc-rs {call} failed"),
        }
    }
}

impl std::error::Error for NativeError {}

// ---------------------------------------------------------------------------------------------
// Verification
// ---------------------------------------------------------------------------------------------

/// Signature checks with aws-lc-rs: ECDSA P-256/P-384 (SHA-256/384/512), Ed25519 and RSA
/// PKCS#1 v1.5 (SHA-256/384/512, [`MIN_RSA_BITS`](warden_core::crypto::MIN_RSA_BITS)–
/// [`MAX_RSA_BITS`](warden_core::crypto::MAX_RSA_BITS) bits): the same set, and the same errors,
/// as [`RustCryptoVerifier`].
#[derive(Clone, Copy, Debug, Default)]
pub struct NativeVerifier;

/// The hash a signature algorithm names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

/// A signature algorithm RustCryptoVerifier accepts (parameters are ignored, as there).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scheme {
    Ecdsa(Hash),
    Ed25519,
    RsaPkcs1(Hash),
}

impl Scheme {
    fn of(oid: ObjectIdentifier) -> Result<Self, VerifyError> {
        Ok(match oid {
            o if o == rfc5912::ECDSA_WITH_SHA_256 => Self::Ecdsa(Hash::Sha256),
            o if o == rfc5912::ECDSA_WITH_SHA_384 => Self::Ecdsa(Hash::Sha384),
            o if o == rfc5912::ECDSA_WITH_SHA_512 => Self::Ecdsa(Hash::Sha512),
            o if o == rfc5912::SHA_256_WITH_RSA_ENCRYPTION => Self::RsaPkcs1(Hash::Sha256),
            o if o == rfc5912::SHA_384_WITH_RSA_ENCRYPTION => Self::RsaPkcs1(Hash::Sha384),
            o if o == rfc5912::SHA_512_WITH_RSA_ENCRYPTION => Self::RsaPkcs1(Hash::Sha512),
            o if o == rfc8410::ID_ED_25519 => Self::Ed25519,
            other => return Err(VerifyError::UnsupportedSignatureAlgorithm(other)),
        })
    }
}

/// The NIST curves Warden accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Curve {
    P256,
    P384,
}

impl Curve {
    /// Bytes in a field element (and in a scalar).
    fn field_len(self) -> usize {
        match self {
            Self::P256 => 32,
            Self::P384 => 48,
        }
    }

    fn oid(self) -> ObjectIdentifier {
        match self {
            Self::P256 => rfc5912::SECP_256_R_1,
            Self::P384 => rfc5912::SECP_384_R_1,
        }
    }

    /// The signature algorithm a key on this curve signs with (Go: curve size decides the hash).
    fn signature_oid(self) -> ObjectIdentifier {
        match self {
            Self::P256 => rfc5912::ECDSA_WITH_SHA_256,
            Self::P384 => rfc5912::ECDSA_WITH_SHA_384,
        }
    }

    fn signing(self) -> &'static EcdsaSigningAlgorithm {
        match self {
            Self::P256 => &lc::ECDSA_P256_SHA256_ASN1_SIGNING,
            Self::P384 => &lc::ECDSA_P384_SHA384_ASN1_SIGNING,
        }
    }

    fn verification(self, hash: Hash) -> &'static EcdsaVerificationAlgorithm {
        match (self, hash) {
            (Self::P256, Hash::Sha256) => &lc::ECDSA_P256_SHA256_ASN1,
            (Self::P256, Hash::Sha384) => &lc::ECDSA_P256_SHA384_ASN1,
            (Self::P256, Hash::Sha512) => &lc::ECDSA_P256_SHA512_ASN1,
            (Self::P384, Hash::Sha256) => &lc::ECDSA_P384_SHA256_ASN1,
            (Self::P384, Hash::Sha384) => &lc::ECDSA_P384_SHA384_ASN1,
            (Self::P384, Hash::Sha512) => &lc::ECDSA_P384_SHA512_ASN1,
        }
    }
}

/// `Ecdsa-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }`, decoded as the `ecdsa` crate does.
#[derive(der::Sequence)]
struct EcdsaSigValue<'a> {
    r: UintRef<'a>,
    s: UintRef<'a>,
}

impl SignatureVerifier for NativeVerifier {
    fn verify(
        &self,
        public_key: SubjectPublicKeyInfoRef<'_>,
        algorithm: AlgorithmIdentifierRef<'_>,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), VerifyError> {
        // Same order as RustCryptoVerifier: key type, then algorithm, then the pair, then key
        // bytes, signature encoding and the signature itself.
        let key_type = KeyType::of(&public_key)?;
        let scheme = Scheme::of(algorithm.oid)?;
        match (key_type, scheme) {
            (KeyType::EcdsaP256, Scheme::Ecdsa(hash)) => {
                verify_ecdsa(Curve::P256, hash, public_key, algorithm, message, signature)
            }
            (KeyType::EcdsaP384, Scheme::Ecdsa(hash)) => {
                verify_ecdsa(Curve::P384, hash, public_key, algorithm, message, signature)
            }
            (KeyType::Ed25519, Scheme::Ed25519) => verify_ed25519(
                public_key.subject_public_key.raw_bytes(),
                message,
                signature,
            ),
            (KeyType::Rsa { .. }, Scheme::RsaPkcs1(hash)) => {
                let params = match hash {
                    Hash::Sha256 => &lc::RSA_PKCS1_2048_8192_SHA256,
                    Hash::Sha384 => &lc::RSA_PKCS1_2048_8192_SHA384,
                    Hash::Sha512 => &lc::RSA_PKCS1_2048_8192_SHA512,
                };
                // KeyType::of already decoded the key and checked its size; RustCryptoVerifier
                // reports every later RSA failure as a bad signature, and so does this.
                UnparsedPublicKey::new(params, public_key.subject_public_key.raw_bytes())
                    .verify(message, signature)
                    .map_err(|_| VerifyError::BadSignature)
            }
            _ => Err(VerifyError::AlgorithmKeyMismatch),
        }
    }
}

fn verify_ecdsa(
    curve: Curve,
    hash: Hash,
    public_key: SubjectPublicKeyInfoRef<'_>,
    algorithm: AlgorithmIdentifierRef<'_>,
    message: &[u8],
    signature: &[u8],
) -> Result<(), VerifyError> {
    let key_bytes = public_key.subject_public_key.raw_bytes();
    let field_len = curve.field_len();
    // The SEC1 encodings RustCrypto decodes. aws-lc-rs would also take a whole SPKI here, which
    // RustCrypto would not, so the tag and length are checked first.
    match (key_bytes.first(), key_bytes.len()) {
        (Some(0x02 | 0x03), len) if len == 1 + field_len => {}
        (Some(0x04), len) if len == 1 + 2 * field_len => {}
        // The "compact" form (tag 5, x only) decodes in RustCrypto but not in aws-lc. No client
        // sends it; the rare one is left to core's verifier, which then decides.
        (Some(0x05), len) if len == 1 + field_len => {
            return RustCryptoVerifier.verify(public_key, algorithm, message, signature);
        }
        _ => return Err(VerifyError::MalformedKey),
    }
    let key = UnparsedPublicKey::new(curve.verification(hash), key_bytes)
        .parse()
        .map_err(|_| VerifyError::MalformedKey)?;
    let sig = EcdsaSigValue::from_der(signature).map_err(|_| VerifyError::MalformedSignature)?;
    if sig.r.as_bytes().len() > field_len || sig.s.as_bytes().len() > field_len {
        return Err(VerifyError::MalformedSignature);
    }
    key.verify_sig(message, signature)
        .map_err(|_| VerifyError::BadSignature)
}

fn verify_ed25519(key_bytes: &[u8], message: &[u8], signature: &[u8]) -> Result<(), VerifyError> {
    let Ok(point) = <&[u8; ED25519_KEY_LEN]>::try_from(key_bytes) else {
        return Err(VerifyError::MalformedKey);
    };
    // aws-lc-rs takes any 32 bytes as a key and only fails at verification, where RustCrypto
    // refuses a point that is not on the curve up front. The point is decoded only on the
    // failure path, to say which it was.
    let key_error_or = |other: VerifyError| {
        if ed25519_dalek::VerifyingKey::from_bytes(point).is_err() {
            VerifyError::MalformedKey
        } else {
            other
        }
    };
    if signature.len() != ED25519_SIGNATURE_LEN {
        return Err(key_error_or(VerifyError::MalformedSignature));
    }
    UnparsedPublicKey::new(&lc::ED25519, key_bytes)
        .verify(message, signature)
        .map_err(|_| key_error_or(VerifyError::BadSignature))
}

// ---------------------------------------------------------------------------------------------
// Signing
// ---------------------------------------------------------------------------------------------

/// A CA private key held by aws-lc-rs: ECDSA P-256 or P-384, Ed25519, or RSA 2048–4096 bits.
///
/// Key material lives in aws-lc (freed and cleansed there) and never shows in `Debug`.
pub struct NativeKey {
    key: Pair,
    key_type: KeyType,
    public_key: SubjectPublicKeyInfoOwned,
    signature_algorithm: AlgorithmIdentifierOwned,
}

enum Pair {
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
    Rsa(RsaKeyPair),
}

impl NativeKey {
    /// Reads the first private key in PEM text, as Sentry reads `issuer.key`: PKCS#8
    /// `PRIVATE KEY` (P-256, P-384, Ed25519, RSA), SEC1 `EC PRIVATE KEY` (P-256, P-384) or
    /// PKCS#1 `RSA PRIVATE KEY`. RSA keys must have 2048–4096 bits.
    ///
    /// Core's [`SoftwareKey::from_pem`] reads the text first, so framing errors and the
    /// P-256/Ed25519 rules are core's; what core cannot sign with (RSA, P-384) is loaded here.
    pub fn from_pem(text: &[u8]) -> Result<Self, KeyError> {
        match SoftwareKey::from_pem(text) {
            Ok(key) => Self::from_software_key(&key),
            Err(KeyError::UnsupportedAlgorithm) => Self::from_pem_beyond_core(text),
            Err(e) => Err(e),
        }
    }

    /// The same key as `key`, held by aws-lc-rs.
    pub fn from_software_key(key: &SoftwareKey) -> Result<Self, KeyError> {
        let der = key.to_pkcs8_der()?;
        let native = match key.algorithm() {
            KeyAlgorithm::P256 => Self::from_ecdsa(
                Curve::P256,
                EcdsaKeyPair::from_pkcs8(Curve::P256.signing(), &der).map_err(key_rejected)?,
            )?,
            KeyAlgorithm::Ed25519 => {
                Self::from_ed25519(Ed25519KeyPair::from_pkcs8(&der).map_err(key_rejected)?)?
            }
            _ => return Err(KeyError::UnsupportedAlgorithm),
        };
        // Both backends must see the same key; a difference would be a bug in one of them.
        if native.public_key != key.public_key()
            || native.signature_algorithm != key.signature_algorithm()
        {
            return Err(KeyError::Malformed);
        }
        Ok(native)
    }

    /// The keys core refused as unsupported: RSA (PKCS#1 or PKCS#8) and P-384 (SEC1 or PKCS#8).
    /// Core has already accepted the PEM framing and found a private-key block first.
    fn from_pem_beyond_core(text: &[u8]) -> Result<Self, KeyError> {
        let block =
            Zeroizing::new(PrivateKeyDer::from_pem_slice(text).map_err(|_| KeyError::Malformed)?);
        match &*block {
            PrivateKeyDer::Pkcs1(der) => {
                Self::from_rsa(RsaKeyPair::from_der(der.secret_pkcs1_der()).map_err(key_rejected)?)
            }
            PrivateKeyDer::Sec1(der) => {
                let der = der.secret_sec1_der();
                let sec1 = sec1::EcPrivateKey::try_from(der).map_err(|_| KeyError::Malformed)?;
                if sec1.parameters.and_then(|p| p.named_curve()) != Some(rfc5912::SECP_384_R_1) {
                    return Err(KeyError::UnsupportedAlgorithm);
                }
                let pair = EcdsaKeyPair::from_private_key_der(Curve::P384.signing(), der)
                    .map_err(key_rejected)?;
                Self::from_ecdsa(Curve::P384, pair)
            }
            PrivateKeyDer::Pkcs8(der) => {
                let der = der.secret_pkcs8_der();
                let info =
                    pkcs8::PrivateKeyInfoRef::from_der(der).map_err(|_| KeyError::Malformed)?;
                let oid = info.algorithm.oid;
                if oid == rfc5912::RSA_ENCRYPTION {
                    Self::from_rsa(RsaKeyPair::from_pkcs8(der).map_err(key_rejected)?)
                } else if oid == rfc5912::ID_EC_PUBLIC_KEY
                    && info.algorithm.parameters_oid().ok() == Some(rfc5912::SECP_384_R_1)
                {
                    let pair = EcdsaKeyPair::from_pkcs8(Curve::P384.signing(), der)
                        .map_err(key_rejected)?;
                    Self::from_ecdsa(Curve::P384, pair)
                } else {
                    Err(KeyError::UnsupportedAlgorithm)
                }
            }
            _ => Err(KeyError::UnsupportedAlgorithm),
        }
    }

    /// A fresh key (P-256 or Ed25519) from aws-lc's DRBG, which the OS seeds.
    pub fn generate(algorithm: KeyAlgorithm) -> Result<Self, NativeError> {
        match algorithm {
            KeyAlgorithm::P256 => {
                let pair = EcdsaKeyPair::generate(Curve::P256.signing())
                    .map_err(|_| NativeError::Backend("EcdsaKeyPair::generate"))?;
                Self::from_ecdsa(Curve::P256, pair).map_err(NativeError::Key)
            }
            KeyAlgorithm::Ed25519 => {
                let pair = Ed25519KeyPair::generate()
                    .map_err(|_| NativeError::Backend("Ed25519KeyPair::generate"))?;
                Self::from_ed25519(pair).map_err(NativeError::Key)
            }
            _ => Err(NativeError::Key(KeyError::UnsupportedAlgorithm)),
        }
    }

    /// The key as PKCS#8 v1 `PRIVATE KEY` PEM (no public key inside, as Go writes it).
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, NativeError> {
        // Both aws-lc-rs document types zeroize their bytes on drop.
        let failed = |call| move |_| NativeError::Backend(call);
        match &self.key {
            Pair::Ecdsa(pair) => {
                let doc = pair
                    .to_pkcs8v1()
                    .map_err(failed("EcdsaKeyPair::to_pkcs8v1"))?;
                pkcs8_pem(doc.as_ref())
            }
            Pair::Ed25519(pair) => {
                let der: Pkcs8V1Der<'static> =
                    pair.as_der().map_err(failed("Ed25519KeyPair::as_der"))?;
                pkcs8_pem(der.as_ref())
            }
            Pair::Rsa(pair) => {
                let der: Pkcs8V1Der<'static> =
                    pair.as_der().map_err(failed("RsaKeyPair::as_der"))?;
                pkcs8_pem(der.as_ref())
            }
        }
    }

    /// The key's type (for RSA, with its size).
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    fn from_ecdsa(curve: Curve, pair: EcdsaKeyPair) -> Result<Self, KeyError> {
        // aws-lc-rs gives the public key as an uncompressed SEC1 point, as SoftwareKey does.
        let public_key = spki(
            rfc5912::ID_EC_PUBLIC_KEY,
            Some(der::Any::from(curve.oid())),
            pair.public_key().as_ref(),
        )?;
        Self::new(Pair::Ecdsa(pair), public_key, curve.signature_oid(), None)
    }

    fn from_ed25519(pair: Ed25519KeyPair) -> Result<Self, KeyError> {
        let public_key = spki(rfc8410::ID_ED_25519, None, pair.public_key().as_ref())?;
        Self::new(Pair::Ed25519(pair), public_key, rfc8410::ID_ED_25519, None)
    }

    fn from_rsa(pair: RsaKeyPair) -> Result<Self, KeyError> {
        // RSAPublicKey DER in an rsaEncryption SPKI with NULL parameters, and
        // sha256WithRSAEncryption with NULL parameters, as Go's x509 writes them.
        let public_key = spki(
            rfc5912::RSA_ENCRYPTION,
            Some(der::Any::null()),
            pair.public_key().as_ref(),
        )?;
        Self::new(
            Pair::Rsa(pair),
            public_key,
            rfc5912::SHA_256_WITH_RSA_ENCRYPTION,
            Some(der::Any::null()),
        )
    }

    fn new(
        key: Pair,
        public_key: SubjectPublicKeyInfoOwned,
        signature_oid: ObjectIdentifier,
        signature_parameters: Option<der::Any>,
    ) -> Result<Self, KeyError> {
        // Refuses what the verifiers would refuse in a chain (RSA outside 2048–4096 bits).
        let key_type =
            KeyType::of(&public_key.owned_to_ref()).map_err(|_| KeyError::UnsupportedAlgorithm)?;
        Ok(Self {
            key,
            key_type,
            public_key,
            signature_algorithm: AlgorithmIdentifierOwned {
                oid: signature_oid,
                parameters: signature_parameters,
            },
        })
    }
}

/// PKCS#8 DER as `PRIVATE KEY` PEM (LF, 64 columns), in a buffer that is zeroized on drop.
fn pkcs8_pem(der: &[u8]) -> Result<Zeroizing<String>, NativeError> {
    let pem_error = |e| NativeError::Key(KeyError::Pem(PemError::Malformed(e)));
    let line_ending = pem_rfc7468::LineEnding::LF;
    let len = pem_rfc7468::encoded_len(PKCS8_LABEL, line_ending, der).map_err(pem_error)?;
    let mut buf = Zeroizing::new(vec![0_u8; len]);
    let written = pem_rfc7468::encode(PKCS8_LABEL, line_ending, der, &mut buf)
        .map_err(pem_error)?
        .len();
    buf.truncate(written);
    let text = String::from_utf8(core::mem::take(&mut *buf))
        .map_err(|_| NativeError::Key(KeyError::Malformed))?;
    Ok(Zeroizing::new(text))
}

/// An aws-lc-rs key rejection as core's key error: a size outside what aws-lc signs with is an
/// unsupported key, anything else a malformed one.
fn key_rejected(e: KeyRejected) -> KeyError {
    match e.description_() {
        "TooSmall" | "TooLarge" => KeyError::UnsupportedAlgorithm,
        _ => KeyError::Malformed,
    }
}

fn spki(
    algorithm: ObjectIdentifier,
    parameters: Option<der::Any>,
    key: &[u8],
) -> Result<SubjectPublicKeyInfoOwned, KeyError> {
    Ok(SubjectPublicKeyInfoOwned {
        algorithm: AlgorithmIdentifierOwned {
            oid: algorithm,
            parameters,
        },
        subject_public_key: BitString::from_bytes(key).map_err(|_| KeyError::Malformed)?,
    })
}

impl CaSigner for NativeKey {
    fn signature_algorithm(&self) -> AlgorithmIdentifierOwned {
        self.signature_algorithm.clone()
    }

    fn public_key(&self) -> SubjectPublicKeyInfoOwned {
        self.public_key.clone()
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        // aws-lc-rs ignores this argument (ECDSA nonces and RSA blinding come from aws-lc's own
        // OS-seeded DRBG); it is only there for API compatibility with ring.
        let rng = SystemRandom::new();
        let failed = |call| SignError::new(NativeError::Backend(call));
        match &self.key {
            Pair::Ecdsa(pair) => pair
                .sign(&rng, message)
                .map(|sig| sig.as_ref().to_vec())
                .map_err(|_| failed("EcdsaKeyPair::sign")),
            Pair::Ed25519(pair) => pair
                .try_sign(message)
                .map(|sig| sig.as_ref().to_vec())
                .map_err(|_| failed("Ed25519KeyPair::try_sign")),
            Pair::Rsa(pair) => {
                let mut sig = vec![0_u8; pair.public_modulus_len()];
                pair.sign(&lc::RSA_PKCS1_SHA256, &rng, message, &mut sig)
                    .map_err(|_| failed("RsaKeyPair::sign"))?;
                Ok(sig)
            }
        }
    }
}

impl fmt::Debug for NativeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NativeKey")
            .field("key_type", &self.key_type)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::path::Path;
    use std::process::{Command, Stdio};

    use der::Encode;
    use getrandom::SysRng;
    use rand_core::UnwrapErr;
    use warden_core::UnixTime;
    use warden_core::bundle::{self, CaBundle, CaParams, WorkloadRequest};
    use warden_core::certificate::CertificateRef;
    use warden_core::chain::{self, SvidError};
    use warden_core::csr;
    use warden_core::profile::{
        DEFAULT_CA_TTL, DEFAULT_CLOCK_SKEW, DEFAULT_WORKLOAD_TTL, Validity,
    };
    use warden_core::spiffe::{SpiffeId, TrustDomain};
    use x509_cert::Certificate;

    use super::*;

    const CSR_P256: &[u8] = include_bytes!("../../tests/data/go-csr/csr-p256.pem");
    const CSR_P384: &[u8] = include_bytes!("../../tests/data/go-csr/csr-p384.pem");
    const CSR_ED25519: &[u8] = include_bytes!("../../tests/data/go-csr/csr-ed25519.pem");
    const CSR_RSA2048: &[u8] = include_bytes!("../../tests/data/go-csr/csr-rsa2048.pem");

    use crate::util::clock::now;

    /// Runs the openssl CLI, feeding `input` on stdin; returns stdout, panics on failure.
    fn openssl(args: &[&str], input: &[u8]) -> Vec<u8> {
        use std::io::Write as _;
        let mut child = Command::new("openssl")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("openssl CLI");
        child.stdin.take().unwrap().write_all(input).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// An ECDSA or RSA signature by openssl with the given digest (`-sha384`, ...).
    fn openssl_sign(dir: &Path, key_pem: &[u8], digest: &str, message: &[u8]) -> Vec<u8> {
        let key_path = dir.join("sign.key");
        std::fs::write(&key_path, key_pem).unwrap();
        openssl(
            &["dgst", digest, "-sign", key_path.to_str().unwrap()],
            message,
        )
    }

    /// Fills every request with a counter, so two certificates built from the same start get
    /// the same serial.
    struct CountingRng(u8);

    impl rand_core::TryRng for CountingRng {
        type Error = Infallible;
        fn try_next_u32(&mut self) -> Result<u32, Infallible> {
            let mut b = [0; 4];
            self.try_fill_bytes(&mut b)?;
            Ok(u32::from_le_bytes(b))
        }
        fn try_next_u64(&mut self) -> Result<u64, Infallible> {
            let mut b = [0; 8];
            self.try_fill_bytes(&mut b)?;
            Ok(u64::from_le_bytes(b))
        }
        fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
            for byte in dst {
                self.0 = self.0.wrapping_add(1);
                *byte = self.0;
            }
            Ok(())
        }
    }

    impl rand_core::TryCryptoRng for CountingRng {}

    fn alg(oid: ObjectIdentifier) -> AlgorithmIdentifierOwned {
        AlgorithmIdentifierOwned {
            oid,
            parameters: None,
        }
    }

    fn with_key_bytes(spki: &SubjectPublicKeyInfoOwned, key: &[u8]) -> SubjectPublicKeyInfoOwned {
        SubjectPublicKeyInfoOwned {
            algorithm: spki.algorithm.clone(),
            subject_public_key: BitString::from_bytes(key).unwrap(),
        }
    }

    fn flip_last(bytes: &[u8]) -> Vec<u8> {
        let mut out = bytes.to_vec();
        *out.last_mut().unwrap() ^= 1;
        out
    }

    fn p384_pkcs8_pem() -> Vec<u8> {
        openssl(
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-384",
            ],
            b"",
        )
    }

    const MESSAGE: &[u8] = b"a TBSCertificate, more or less";

    /// One input for both verifiers, and the answer both must give.
    struct Case {
        name: String,
        key: SubjectPublicKeyInfoOwned,
        algorithm: AlgorithmIdentifierOwned,
        message: &'static [u8],
        signature: Vec<u8>,
        expected: Result<(), VerifyError>,
    }

    /// A case over [`MESSAGE`].
    fn case(
        name: impl Into<String>,
        key: &SubjectPublicKeyInfoOwned,
        algorithm: &AlgorithmIdentifierOwned,
        signature: &[u8],
        expected: Result<(), VerifyError>,
    ) -> Case {
        Case {
            name: name.into(),
            key: key.clone(),
            algorithm: algorithm.clone(),
            message: MESSAGE,
            signature: signature.to_vec(),
            expected,
        }
    }

    type Expected = Result<(), VerifyError>;
    const OK: Expected = Ok(());
    const BAD: Expected = Err(VerifyError::BadSignature);
    const BAD_KEY: Expected = Err(VerifyError::MalformedKey);
    const BAD_SIG: Expected = Err(VerifyError::MalformedSignature);
    const MISMATCH: Expected = Err(VerifyError::AlgorithmKeyMismatch);

    /// Builds one group of cases.
    type CaseGroup = fn(&Keys) -> Vec<Case>;

    /// The keys every group of cases signs with or names, made once per test.
    struct Keys {
        p256: NativeKey,
        p256_pem: Zeroizing<String>,
        p384: NativeKey,
        p384_pem: Vec<u8>,
        ed: NativeKey,
        rsa: NativeKey,
        rsa_pem: Vec<u8>,
        core_p256: SoftwareKey,
        rsa1024: SubjectPublicKeyInfoOwned,
    }

    impl Keys {
        fn new() -> Self {
            let p256 = NativeKey::generate(KeyAlgorithm::P256).unwrap();
            let p384_pem = p384_pkcs8_pem();
            let rsa_pem = openssl(&["genrsa", "-traditional", "2048"], b"");
            Self {
                p256_pem: p256.to_pkcs8_pem().unwrap(),
                p256,
                p384: NativeKey::from_pem(&p384_pem).unwrap(),
                p384_pem,
                ed: NativeKey::generate(KeyAlgorithm::Ed25519).unwrap(),
                rsa: NativeKey::from_pem(&rsa_pem).unwrap(),
                rsa_pem,
                core_p256: SoftwareKey::generate(KeyAlgorithm::P256, &mut UnwrapErr(SysRng)),
                rsa1024: SubjectPublicKeyInfoOwned::from_der(&openssl(
                    &["pkey", "-pubout", "-outform", "DER"],
                    &openssl(&["genrsa", "1024"], b""),
                ))
                .unwrap(),
            }
        }
    }

    /// A key's public half and its signature over [`MESSAGE`].
    fn signed(key: &dyn CaSigner) -> (SubjectPublicKeyInfoOwned, Vec<u8>) {
        (key.public_key(), key.sign(MESSAGE).unwrap())
    }

    /// Each key type, with another key of the same type for "wrong key": good, wrong key,
    /// tampered message or signature, and malformed signatures (7 cases a key).
    fn per_key_cases(keys: &Keys) -> Vec<Case> {
        let keys: [(&str, &dyn CaSigner, SubjectPublicKeyInfoOwned); 5] = [
            (
                "P-256",
                &keys.p256,
                NativeKey::generate(KeyAlgorithm::P256)
                    .unwrap()
                    .public_key(),
            ),
            (
                "P-384",
                &keys.p384,
                NativeKey::from_pem(&p384_pkcs8_pem()).unwrap().public_key(),
            ),
            (
                "Ed25519",
                &keys.ed,
                NativeKey::generate(KeyAlgorithm::Ed25519)
                    .unwrap()
                    .public_key(),
            ),
            (
                "RSA-2048",
                &keys.rsa,
                NativeKey::from_pem(&openssl(&["genrsa", "2048"], b""))
                    .unwrap()
                    .public_key(),
            ),
            (
                "P-256 (core-signed)",
                &keys.core_p256,
                keys.p256.public_key(),
            ),
        ];
        let mut cases = Vec::new();
        for (name, key, other) in &keys {
            let (k, a) = (key.public_key(), key.signature_algorithm());
            let sig = key.sign(MESSAGE).unwrap();
            // RSA reports every failure past the key as a bad signature.
            let is_rsa = matches!(KeyType::of(&k.owned_to_ref()), Ok(KeyType::Rsa { .. }));
            let malformed = if is_rsa { BAD } else { BAD_SIG };
            let truncated = &sig[..sig.len() - 1];
            let extended = [sig.as_slice(), &[0]].concat();
            let mut tampered_message = case(format!("{name}: tampered message"), &k, &a, &sig, BAD);
            tampered_message.message = b"a TBSCertificate, more or lesS";
            cases.push(tampered_message);
            #[rustfmt::skip]
            cases.extend([
                case(format!("{name}: good"), &k, &a, &sig, OK),
                case(format!("{name}: wrong key"), other, &a, &sig, BAD),
                case(format!("{name}: tampered signature"), &k, &a, &flip_last(&sig), BAD),
                case(format!("{name}: truncated signature"), &k, &a, truncated, malformed),
                case(format!("{name}: trailing signature byte"), &k, &a, &extended, malformed),
                case(format!("{name}: empty signature"), &k, &a, &[], malformed),
            ]);
        }
        cases
    }

    /// Algorithm/key mismatches, unsupported algorithms, the wrong hash.
    fn algorithm_cases(keys: &Keys) -> Vec<Case> {
        let unsupported =
            |oid| -> Expected { Err(VerifyError::UnsupportedSignatureAlgorithm(oid)) };
        let (p256_key, p256_sig) = signed(&keys.p256);
        let (ed_key, ed_sig) = signed(&keys.ed);
        let (rsa_key, rsa_sig) = signed(&keys.rsa);
        let ecdsa256 = alg(rfc5912::ECDSA_WITH_SHA_256);
        let ecdsa384 = alg(rfc5912::ECDSA_WITH_SHA_384);
        let rsa256 = alg(rfc5912::SHA_256_WITH_RSA_ENCRYPTION);
        let rsa512 = alg(rfc5912::SHA_512_WITH_RSA_ENCRYPTION);
        let ed25519 = alg(rfc8410::ID_ED_25519);
        let sha224 = rfc5912::ECDSA_WITH_SHA_224;
        let sha1_rsa = rfc5912::SHA_1_WITH_RSA_ENCRYPTION;
        let pss = rfc5912::ID_RSASSA_PSS;
        #[rustfmt::skip]
        let cases = vec![
            case("P-256 key, Ed25519 algorithm", &p256_key, &ed25519, &p256_sig, MISMATCH),
            case("P-256 key, RSA algorithm", &p256_key, &rsa256, &p256_sig, MISMATCH),
            case("Ed25519 key, ECDSA algorithm", &ed_key, &ecdsa256, &ed_sig, MISMATCH),
            case("RSA key, ECDSA algorithm", &rsa_key, &ecdsa256, &rsa_sig, MISMATCH),
            case("RSA key, Ed25519 algorithm", &rsa_key, &ed25519, &rsa_sig, MISMATCH),
            case("ecdsa-with-SHA224", &p256_key, &alg(sha224), &p256_sig, unsupported(sha224)),
            case("RSA, sha1WithRSA", &rsa_key, &alg(sha1_rsa), &rsa_sig, unsupported(sha1_rsa)),
            case("RSA, RSASSA-PSS", &rsa_key, &alg(pss), &rsa_sig, unsupported(pss)),
            case("P-256 signature claimed as SHA-384", &p256_key, &ecdsa384, &p256_sig, BAD),
            case("RSA signature claimed as SHA-512", &rsa_key, &rsa512, &rsa_sig, BAD),
        ];
        cases
    }

    /// Keys Warden does not take.
    fn unsupported_key_cases(keys: &Keys) -> Vec<Case> {
        use VerifyError::{RsaKeySize, UnsupportedKeyType};
        let (p256_key, p256_sig) = signed(&keys.p256);
        let (_, ed_sig) = signed(&keys.ed);
        let (_, rsa_sig) = signed(&keys.rsa);
        let (x25519_oid, p521_oid) = (rfc8410::ID_X_25519, rfc5912::SECP_521_R_1);
        let x25519 = SubjectPublicKeyInfoOwned {
            algorithm: alg(x25519_oid),
            subject_public_key: BitString::from_bytes(&[9; 32]).unwrap(),
        };
        let p521 = SubjectPublicKeyInfoOwned {
            algorithm: AlgorithmIdentifierOwned {
                oid: rfc5912::ID_EC_PUBLIC_KEY,
                parameters: Some(der::Any::from(p521_oid)),
            },
            subject_public_key: BitString::from_bytes(&[4; 133]).unwrap(),
        };
        let ec_no_curve = SubjectPublicKeyInfoOwned {
            algorithm: alg(rfc5912::ID_EC_PUBLIC_KEY),
            subject_public_key: p256_key.subject_public_key.clone(),
        };
        let (rsa256, ed25519) = (
            alg(rfc5912::SHA_256_WITH_RSA_ENCRYPTION),
            alg(rfc8410::ID_ED_25519),
        );
        let (ecdsa256, ecdsa512) = (
            alg(rfc5912::ECDSA_WITH_SHA_256),
            alg(rfc5912::ECDSA_WITH_SHA_512),
        );
        #[rustfmt::skip]
        let cases = vec![
            case("RSA-1024", &keys.rsa1024, &rsa256, &rsa_sig, Err(RsaKeySize(1024))),
            case("X25519 key", &x25519, &ed25519, &ed_sig, Err(UnsupportedKeyType(x25519_oid))),
            case("P-521 key", &p521, &ecdsa512, &p256_sig, Err(UnsupportedKeyType(p521_oid))),
            case("EC key without a curve", &ec_no_curve, &ecdsa256, &p256_sig, BAD_KEY),
        ];
        cases
    }

    /// Key encodings: compressed, hybrid and compact points, points off the curve, short keys.
    fn key_encoding_cases(keys: &Keys) -> Vec<Case> {
        let (p256_key, p256_sig) = signed(&keys.p256);
        let (p384_key, p384_sig) = signed(&keys.p384);
        let (ed_key, ed_sig) = signed(&keys.ed);
        let ecdsa256 = alg(rfc5912::ECDSA_WITH_SHA_256);
        let ecdsa384 = alg(rfc5912::ECDSA_WITH_SHA_384);
        let ed25519 = alg(rfc8410::ID_ED_25519);
        let point = p256_key.subject_public_key.raw_bytes();
        let x = &point[1..33];
        let y_odd = point[64] & 1;
        let compressed = [&[2 | y_odd], x].concat();
        let hybrid = [&[6 | y_odd], &point[1..]].concat();
        let mut off_curve = point.to_vec();
        off_curve[10] ^= 1;
        let nested_spki = p256_key.to_der().unwrap();
        let p384_short = with_key_bytes(&p384_key, &p384_key.subject_public_key.raw_bytes()[..96]);
        let ed_short = &ed_key.subject_public_key.raw_bytes()[..31];
        let mut ed_off_curve = [0_u8; 32];
        ed_off_curve[0] = 2; // y = 2: no x on edwards25519
        let mut ed_high_s = ed_sig.clone();
        ed_high_s[63] |= 0xf0;
        let p256_with = |bytes: &[u8]| with_key_bytes(&p256_key, bytes);
        let ed_with = |bytes: &[u8]| with_key_bytes(&ed_key, bytes);
        #[rustfmt::skip]
        let mut cases = vec![
            case("P-256 compressed key", &p256_with(&compressed), &ecdsa256, &p256_sig, OK),
            case("P-256 hybrid key", &p256_with(&hybrid), &ecdsa256, &p256_sig, BAD_KEY),
            case("P-256 point off curve", &p256_with(&off_curve), &ecdsa256, &p256_sig, BAD_KEY),
            case("P-256 identity", &p256_with(&[0]), &ecdsa256, &p256_sig, BAD_KEY),
            case("P-256 short point", &p256_with(&point[..64]), &ecdsa256, &p256_sig, BAD_KEY),
            case("P-256 nested SPKI", &p256_with(&nested_spki), &ecdsa256, &p256_sig, BAD_KEY),
            case("P-384 short point", &p384_short, &ecdsa384, &p384_sig, BAD_KEY),
            case("Ed25519 31-byte key", &ed_with(ed_short), &ed25519, &ed_sig, BAD_KEY),
            case("Ed25519 key off the curve", &ed_with(&ed_off_curve), &ed25519, &ed_sig, BAD_KEY),
            case("Ed25519 key off the curve, short signature", &ed_with(&ed_off_curve), &ed25519,
                &ed_sig[..63], BAD_KEY),
            case("Ed25519 non-canonical S", &ed_key, &ed25519, &ed_high_s, BAD),
        ];
        // The compact form (tag 5): whatever core says, native says too (it defers to core).
        let compact = p256_with(&[&[5], x].concat());
        let expected = RustCryptoVerifier.verify(
            compact.owned_to_ref(),
            ecdsa256.owned_to_ref(),
            MESSAGE,
            &p256_sig,
        );
        cases.push(case(
            "P-256 compact key",
            &compact,
            &ecdsa256,
            &p256_sig,
            expected,
        ));
        cases
    }

    /// ECDSA signature encodings other than DER with minimal integers.
    fn ecdsa_signature_cases(keys: &Keys) -> Vec<Case> {
        let (p256_key, p256_sig) = signed(&keys.p256);
        let ecdsa256 = alg(rfc5912::ECDSA_WITH_SHA_256);
        let parsed = EcdsaSigValue::from_der(&p256_sig).unwrap();
        let (r, s) = (parsed.r.as_bytes(), parsed.s.as_bytes());
        let mut fixed = [0_u8; 64];
        fixed[32 - r.len()..32].copy_from_slice(r);
        fixed[64 - s.len()..].copy_from_slice(s);
        let long_r = [&[1], &fixed[..32]].concat();
        let with_r = |r: &[u8]| {
            let r = UintRef::new(r).unwrap();
            EcdsaSigValue { r, s: parsed.s }.to_der().unwrap()
        };
        let ber_length = [&[0x30, 0x81, p256_sig[1]], &p256_sig[2..]].concat();
        #[rustfmt::skip]
        let cases = vec![
            case("P-256 fixed-size r||s signature", &p256_key, &ecdsa256, &fixed, BAD_SIG),
            case("P-256 signature, 33-byte r", &p256_key, &ecdsa256, &with_r(&long_r), BAD_SIG),
            case("P-256 signature, r = 0", &p256_key, &ecdsa256, &with_r(&[0]), BAD),
            case("P-256 signature, BER length", &p256_key, &ecdsa256, &ber_length, BAD_SIG),
        ];
        cases
    }

    /// Hash and curve pairs no Warden key signs with, signed by openssl, good and tampered.
    fn openssl_cases(keys: &Keys) -> Vec<Case> {
        let (p256_key, p384_key, rsa_key) = (
            keys.p256.public_key(),
            keys.p384.public_key(),
            keys.rsa.public_key(),
        );
        let ecdsa256 = alg(rfc5912::ECDSA_WITH_SHA_256);
        let ecdsa384 = alg(rfc5912::ECDSA_WITH_SHA_384);
        let ecdsa512 = alg(rfc5912::ECDSA_WITH_SHA_512);
        let rsa384 = alg(rfc5912::SHA_384_WITH_RSA_ENCRYPTION);
        let rsa512 = alg(rfc5912::SHA_512_WITH_RSA_ENCRYPTION);
        let (p256_pem, p384_pem, rsa_pem) = (
            keys.p256_pem.as_bytes(),
            &keys.p384_pem[..],
            &keys.rsa_pem[..],
        );
        let dir = tempfile::tempdir().unwrap();
        #[rustfmt::skip]
        let by_openssl = [
            ("P-256/SHA-384", &p256_key, p256_pem, "-sha384", &ecdsa384),
            ("P-256/SHA-512", &p256_key, p256_pem, "-sha512", &ecdsa512),
            ("P-384/SHA-256", &p384_key, p384_pem, "-sha256", &ecdsa256),
            ("P-384/SHA-512", &p384_key, p384_pem, "-sha512", &ecdsa512),
            ("RSA/SHA-384", &rsa_key, rsa_pem, "-sha384", &rsa384),
            ("RSA/SHA-512", &rsa_key, rsa_pem, "-sha512", &rsa512),
        ];
        let mut cases = Vec::new();
        for (name, key, pem, digest, a) in by_openssl {
            let sig = openssl_sign(dir.path(), pem, digest, MESSAGE);
            cases.push(case(format!("{name} by openssl"), key, a, &sig, OK));
            let tampered = flip_last(&sig);
            cases.push(case(
                format!("{name} by openssl, tampered"),
                key,
                a,
                &tampered,
                BAD,
            ));
        }
        cases
    }

    /// Good signatures, and every kind of bad input, through both verifiers: they must agree,
    /// error variant included, and give the expected answer.
    #[test]
    fn verifiers_agree_on_good_and_bad_input() {
        let keys = Keys::new();
        let groups: [(CaseGroup, usize); 6] = [
            (per_key_cases, 35),
            (algorithm_cases, 10),
            (unsupported_key_cases, 4),
            (key_encoding_cases, 12),
            (ecdsa_signature_cases, 4),
            (openssl_cases, 12),
        ];
        let mut checked = 0;
        for (group, count) in groups {
            let cases = group(&keys);
            assert_eq!(cases.len(), count);
            for c in &cases {
                let (key, a) = (c.key.owned_to_ref(), c.algorithm.owned_to_ref());
                let native = NativeVerifier.verify(key.clone(), a, c.message, &c.signature);
                let core = RustCryptoVerifier.verify(key, a, c.message, &c.signature);
                assert_eq!(native, core, "{}: the verifiers disagree", c.name);
                assert_eq!(native, c.expected, "{}", c.name);
            }
            checked += cases.len();
        }
        assert_eq!(checked, 77);
    }

    /// daprd-shaped CSRs from Go parse and verify the same with both verifiers.
    #[test]
    fn go_csrs_verify_with_both_verifiers() {
        for pem in [CSR_P256, CSR_P384, CSR_ED25519, CSR_RSA2048] {
            let native = csr::parse_and_verify(pem, &NativeVerifier).unwrap();
            let core = csr::parse_and_verify(pem, &RustCryptoVerifier).unwrap();
            assert_eq!(native, core);
        }
    }

    fn sign_and_verify_with_both(key: &NativeKey) {
        let message = b"tbs";
        let sig = key.sign(message).unwrap();
        let spki = key.public_key();
        let a = key.signature_algorithm();
        for verifier in [
            &NativeVerifier as &dyn SignatureVerifier,
            &RustCryptoVerifier,
        ] {
            verifier
                .verify(spki.owned_to_ref(), a.owned_to_ref(), message, &sig)
                .unwrap();
            assert_eq!(
                verifier.verify(spki.owned_to_ref(), a.owned_to_ref(), b"tbS", &sig),
                Err(VerifyError::BadSignature)
            );
        }
    }

    #[test]
    fn every_key_type_round_trips() {
        let p256_sec1 = openssl(
            &["ecparam", "-name", "prime256v1", "-genkey", "-noout"],
            b"",
        );
        let p384_sec1 = openssl(&["ecparam", "-name", "secp384r1", "-genkey", "-noout"], b"");
        let p384_pkcs8 = openssl(
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-384",
            ],
            b"",
        );
        let ed_pkcs8 = openssl(&["genpkey", "-algorithm", "ED25519"], b"");
        let rsa_pkcs1 = openssl(&["genrsa", "-traditional", "2048"], b"");
        let rsa_pkcs8 = openssl(
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:3072",
            ],
            b"",
        );
        assert!(p256_sec1.starts_with(b"-----BEGIN EC PRIVATE KEY-----"));
        assert!(rsa_pkcs1.starts_with(b"-----BEGIN RSA PRIVATE KEY-----"));
        let keys = [
            (
                "generated P-256",
                NativeKey::generate(KeyAlgorithm::P256).unwrap(),
                KeyType::EcdsaP256,
            ),
            (
                "generated Ed25519",
                NativeKey::generate(KeyAlgorithm::Ed25519).unwrap(),
                KeyType::Ed25519,
            ),
            (
                "SEC1 P-256",
                NativeKey::from_pem(&p256_sec1).unwrap(),
                KeyType::EcdsaP256,
            ),
            (
                "SEC1 P-384",
                NativeKey::from_pem(&p384_sec1).unwrap(),
                KeyType::EcdsaP384,
            ),
            (
                "PKCS#8 P-384",
                NativeKey::from_pem(&p384_pkcs8).unwrap(),
                KeyType::EcdsaP384,
            ),
            (
                "PKCS#8 Ed25519",
                NativeKey::from_pem(&ed_pkcs8).unwrap(),
                KeyType::Ed25519,
            ),
            (
                "PKCS#1 RSA",
                NativeKey::from_pem(&rsa_pkcs1).unwrap(),
                KeyType::Rsa { bits: 2048 },
            ),
            (
                "PKCS#8 RSA",
                NativeKey::from_pem(&rsa_pkcs8).unwrap(),
                KeyType::Rsa { bits: 3072 },
            ),
        ];
        for (name, key, key_type) in &keys {
            assert_eq!(key.key_type(), *key_type, "{name}");
            sign_and_verify_with_both(key);
            let pem = key.to_pkcs8_pem().unwrap();
            assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{name}");
            let again = NativeKey::from_pem(pem.as_bytes()).unwrap();
            assert_eq!(again.public_key(), key.public_key(), "{name}");
            assert_eq!(
                again.signature_algorithm(),
                key.signature_algorithm(),
                "{name}"
            );
            // openssl reads what Warden writes, and finds the same public key.
            let spki = openssl(&["pkey", "-pubout", "-outform", "DER"], pem.as_bytes());
            assert_eq!(spki, key.public_key().to_der().unwrap(), "{name}");
            // No key bytes in Debug.
            assert_eq!(
                format!("{key:?}"),
                format!("NativeKey {{ key_type: {key_type:?}, .. }}"),
                "{name}"
            );
        }
        // Signature algorithms, as Sentry picks them from the issuer key.
        let rsa = &keys[6].1;
        assert_eq!(
            rsa.signature_algorithm(),
            AlgorithmIdentifierOwned {
                oid: rfc5912::SHA_256_WITH_RSA_ENCRYPTION,
                parameters: Some(der::Any::null()),
            }
        );
        assert_eq!(
            keys[3].1.signature_algorithm(),
            alg(rfc5912::ECDSA_WITH_SHA_384)
        );
    }

    #[test]
    fn refuses_what_warden_cannot_sign_with() {
        use KeyError::*;
        let gen_pkey = |alg: &str, opt: &str| {
            let mut args = vec!["genpkey", "-algorithm", alg];
            if !opt.is_empty() {
                args.extend(["-pkeyopt", opt]);
            }
            openssl(&args, b"")
        };
        let rsa_junk = b"-----BEGIN RSA PRIVATE KEY-----\nAQID\n-----END RSA PRIVATE KEY-----\n";
        let cert = b"-----BEGIN CERTIFICATE-----\nAQID\n-----END CERTIFICATE-----\n";
        let unterminated = b"-----BEGIN PRIVATE KEY-----\nAQID\n";
        for (name, pem, expected) in [
            (
                "PKCS#1 RSA-1024",
                openssl(&["genrsa", "-traditional", "1024"], b""),
                UnsupportedAlgorithm,
            ),
            (
                "PKCS#8 RSA-1024",
                gen_pkey("RSA", "rsa_keygen_bits:1024"),
                UnsupportedAlgorithm,
            ),
            (
                "PKCS#8 RSA-4104",
                gen_pkey("RSA", "rsa_keygen_bits:4104"),
                UnsupportedAlgorithm,
            ),
            (
                "PKCS#8 RSA-PSS",
                gen_pkey("RSA-PSS", "rsa_keygen_bits:2048"),
                UnsupportedAlgorithm,
            ),
            (
                "PKCS#8 P-521",
                gen_pkey("EC", "ec_paramgen_curve:P-521"),
                UnsupportedAlgorithm,
            ),
            (
                "SEC1 P-521",
                openssl(&["ecparam", "-name", "secp521r1", "-genkey", "-noout"], b""),
                UnsupportedAlgorithm,
            ),
            (
                "PKCS#8 X25519",
                gen_pkey("X25519", ""),
                UnsupportedAlgorithm,
            ),
            ("PKCS#8 Ed448", gen_pkey("ED448", ""), UnsupportedAlgorithm),
            ("junk in an RSA block", rsa_junk.to_vec(), Malformed),
            ("certificate", cert.to_vec(), UnexpectedBlockType),
            ("no PEM", b"hello".to_vec(), NoPemBlock),
            (
                "unterminated",
                unterminated.to_vec(),
                Pem(PemError::Unterminated),
            ),
        ] {
            assert_eq!(NativeKey::from_pem(&pem).err(), Some(expected), "{name}");
        }
    }

    /// NativeKey and SoftwareKey holding the same key put the same bytes into a certificate,
    /// signature aside; the native signatures verify with core's verifier.
    #[test]
    fn certificates_match_software_key_but_for_the_signature() {
        let td = TrustDomain::new("example.org").unwrap();
        let validity = Validity::backdated(now(), DEFAULT_CLOCK_SKEW, DEFAULT_CA_TTL);
        for algorithm in [KeyAlgorithm::P256, KeyAlgorithm::Ed25519] {
            // Both directions: core's key into aws-lc, and aws-lc's key into core.
            let software = SoftwareKey::generate(algorithm, &mut UnwrapErr(SysRng));
            let native = NativeKey::from_pem(software.to_pkcs8_pem().unwrap().as_bytes()).unwrap();
            let generated = NativeKey::generate(algorithm).unwrap();
            let generated_in_core =
                SoftwareKey::from_pem(generated.to_pkcs8_pem().unwrap().as_bytes()).unwrap();
            for (software, native) in [(&software, &native), (&generated_in_core, &generated)] {
                assert_eq!(native.public_key(), software.public_key());
                assert_eq!(native.signature_algorithm(), software.signature_algorithm());
                let from_core =
                    bundle::create_root(software, &td, validity, &mut CountingRng(0)).unwrap();
                let from_native =
                    bundle::create_root(native, &td, validity, &mut CountingRng(0)).unwrap();
                assert_eq!(from_native.tbs_certificate(), from_core.tbs_certificate());
                assert_eq!(
                    from_native.signature_algorithm(),
                    from_core.signature_algorithm()
                );
                if algorithm == KeyAlgorithm::Ed25519 {
                    // Ed25519 is deterministic: the whole certificate is the same.
                    assert_eq!(from_native, from_core);
                }
                let native_der = from_native.to_der().unwrap();
                let core_der = from_core.to_der().unwrap();
                let from_native = CertificateRef::from_der(&native_der).unwrap();
                let from_core = CertificateRef::from_der(&core_der).unwrap();
                assert!(chain::is_self_signed(&from_native, &RustCryptoVerifier));
                assert!(chain::is_self_signed(&from_native, &NativeVerifier));
                assert!(chain::is_self_signed(&from_core, &NativeVerifier));
            }
        }
    }

    /// Core's `verify_svid` for x509-cert certificates.
    fn verify_svid(
        chain: &[Certificate],
        anchors: &[Certificate],
        now: UnixTime,
        verifier: &dyn SignatureVerifier,
    ) -> Result<SpiffeId, SvidError> {
        let chain_der = bundle::encode_certificates(chain).unwrap();
        let anchors_der = bundle::encode_certificates(anchors).unwrap();
        chain::verify_svid(
            &bundle::read_certificates(&chain_der).unwrap(),
            &bundle::read_certificates(&anchors_der).unwrap(),
            now,
            verifier,
        )
    }

    fn issue(bundle: &CaBundle, csr_pem: &[u8], now: UnixTime) -> (Vec<Certificate>, SpiffeId) {
        let verified = csr::parse_and_verify(csr_pem, &NativeVerifier).unwrap();
        let td = TrustDomain::new("cluster.local").unwrap();
        let id = SpiffeId::workload(&td, "default", "myapp").unwrap();
        let svid = bundle
            .issue_workload(
                &WorkloadRequest {
                    public_key: &verified.public_key,
                    spiffe_id: &id,
                    dns_names: &[],
                    ttl: DEFAULT_WORKLOAD_TTL,
                    clock_skew: DEFAULT_CLOCK_SKEW,
                },
                now,
                &mut UnwrapErr(SysRng),
            )
            .unwrap();
        let chain = bundle::parse_certificates(svid.chain_pem.as_bytes()).unwrap();
        (chain, id)
    }

    /// A Sentry-style generated credential set, loaded with the issuer key in aws-lc, issues
    /// SVIDs that core's chain check with the RustCrypto verifier accepts.
    #[test]
    fn native_issuer_bundle_issues_svids_core_accepts() {
        let now = now();
        let td = TrustDomain::new("cluster.local").unwrap();
        for algorithm in [KeyAlgorithm::P256, KeyAlgorithm::Ed25519] {
            let params = CaParams {
                trust_domain: &td,
                namespace: "dapr-system",
                key_algorithm: algorithm,
                lifetime: DEFAULT_CA_TTL,
                clock_skew: DEFAULT_CLOCK_SKEW,
            };
            let (_, files) = CaBundle::generate(&params, now, &mut UnwrapErr(SysRng)).unwrap();
            let anchors = bundle::parse_certificates(files.trust_anchors.as_bytes()).unwrap();
            let issuer = bundle::parse_certificates(files.issuer_certificate.as_bytes()).unwrap();
            let key = NativeKey::from_pem(files.issuer_key.as_bytes()).unwrap();
            let ca =
                CaBundle::from_parts(anchors, issuer, Box::new(key), now, &NativeVerifier).unwrap();
            for csr_pem in [CSR_P256, CSR_ED25519, CSR_P384, CSR_RSA2048] {
                let (chain, id) = issue(&ca, csr_pem, now);
                assert_eq!(chain.len(), 2);
                for verifier in [
                    &RustCryptoVerifier as &dyn SignatureVerifier,
                    &NativeVerifier,
                ] {
                    assert_eq!(
                        verify_svid(&chain, ca.trust_anchors(), now, verifier),
                        Ok(id.clone())
                    );
                }
            }
        }
    }

    /// An `openssl genrsa -traditional` issuer key (PKCS#1) loads, and the workload SVIDs it
    /// signs (sha256WithRSAEncryption) pass `openssl verify -x509_strict`.
    #[test]
    fn pkcs1_rsa_issuer_signs_what_openssl_verifies() {
        let now = now();
        let td = TrustDomain::new("cluster.local").unwrap();
        let validity = Validity::backdated(now, DEFAULT_CLOCK_SKEW, DEFAULT_CA_TTL);
        let rsa_pem = openssl(&["genrsa", "-traditional", "2048"], b"");
        assert!(rsa_pem.starts_with(b"-----BEGIN RSA PRIVATE KEY-----"));
        let issuer_key = NativeKey::from_pem(&rsa_pem).unwrap();
        assert_eq!(issuer_key.key_type(), KeyType::Rsa { bits: 2048 });

        let mut rng = UnwrapErr(SysRng);
        let root_key = NativeKey::generate(KeyAlgorithm::P256).unwrap();
        let root = bundle::create_root(&root_key, &td, validity, &mut rng).unwrap();
        let sentry = SpiffeId::sentry(&td, "dapr-system").unwrap();
        let issuer = bundle::create_issuer(
            &root_key,
            &root,
            issuer_key.public_key(),
            &sentry,
            validity,
            &mut rng,
        )
        .unwrap();
        let ca = CaBundle::from_parts(
            vec![root],
            vec![issuer],
            Box::new(issuer_key),
            now,
            &NativeVerifier,
        )
        .unwrap();
        let (chain, id) = issue(&ca, CSR_ED25519, now);
        assert_eq!(
            chain[0].signature_algorithm().oid,
            rfc5912::SHA_256_WITH_RSA_ENCRYPTION
        );
        assert_eq!(
            verify_svid(&chain, ca.trust_anchors(), now, &RustCryptoVerifier),
            Ok(id)
        );

        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
        std::fs::write(path("root.pem"), ca.trust_anchors_pem()).unwrap();
        std::fs::write(path("issuer.pem"), ca.issuer_chain_pem()).unwrap();
        std::fs::write(
            path("leaf.pem"),
            bundle::certificates_to_pem([&chain[0]]).unwrap(),
        )
        .unwrap();
        let out = openssl(
            &[
                "verify",
                "-x509_strict",
                "-CAfile",
                &path("root.pem"),
                "-untrusted",
                &path("issuer.pem"),
                &path("leaf.pem"),
            ],
            b"",
        );
        assert!(String::from_utf8_lossy(&out).ends_with(": OK\n"));

        // And a self-signed RSA root made by the same key.
        let rsa = NativeKey::from_pem(&rsa_pem).unwrap();
        let rsa_root = bundle::create_root(&rsa, &td, validity, &mut rng).unwrap();
        std::fs::write(
            path("rsa-root.pem"),
            bundle::certificates_to_pem([&rsa_root]).unwrap(),
        )
        .unwrap();
        openssl(
            &[
                "verify",
                "-x509_strict",
                "-CAfile",
                &path("rsa-root.pem"),
                &path("rsa-root.pem"),
            ],
            b"",
        );
    }
}

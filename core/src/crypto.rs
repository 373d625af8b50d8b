//! How certificates get signed and signatures get checked.
//!
//! Backends plug in through two small traits, as in rustls: [`CaSigner`] (an HSM key, a browser
//! key, a native-library key) and [`SignatureVerifier`] (a faster native backend). The pure-Rust
//! RustCrypto implementations here are the portable default.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use const_oid::ObjectIdentifier;
use const_oid::db::{rfc5912, rfc8410};
use der::Decode;
use der::asn1::BitString;
use ecdsa::signature::Verifier as _;
use ecdsa::signature::hazmat::PrehashVerifier;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use rand_core::CryptoRng;
#[cfg(feature = "rsa")]
use rsa::traits::PublicKeyParts;
use sha2::Digest;
use spki::{
    AlgorithmIdentifierOwned, AlgorithmIdentifierRef, SubjectPublicKeyInfoOwned,
    SubjectPublicKeyInfoRef,
};
use zeroize::Zeroizing;

use crate::pem::{self, PemError};

/// The smallest RSA modulus accepted in a CSR, in bits (with the `rsa` feature).
pub const MIN_RSA_BITS: u32 = 2048;
/// The largest RSA modulus accepted in a CSR, in bits (with the `rsa` feature).
pub const MAX_RSA_BITS: u32 = 4096;

/// A CA private key, wherever it lives: memory, a PKCS#11 token, a browser.
///
/// `sign` receives the DER bytes to be signed (a TBSCertificate or CertificationRequestInfo)
/// and returns the signature exactly as it goes into the BIT STRING: DER `Ecdsa-Sig-Value`
/// for ECDSA, the 64 raw bytes for Ed25519.
pub trait CaSigner: Send + Sync {
    /// The signature algorithm this key produces, as placed in the certificate.
    fn signature_algorithm(&self) -> AlgorithmIdentifierOwned;
    /// The public key as a SubjectPublicKeyInfo.
    fn public_key(&self) -> SubjectPublicKeyInfoOwned;
    /// Signs `message`.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError>;
}

/// A signature check for a public key given as SubjectPublicKeyInfo.
pub trait SignatureVerifier: Send + Sync {
    /// Checks that `signature` over `message` was made with `public_key` using `algorithm`.
    fn verify(
        &self,
        public_key: SubjectPublicKeyInfoRef<'_>,
        algorithm: AlgorithmIdentifierRef<'_>,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), VerifyError>;
}

/// A signing backend failed; the backend's own error says why.
#[derive(Debug)]
pub struct SignError(Box<dyn core::error::Error + Send + Sync>);

impl SignError {
    /// Wraps a backend error (for example a PKCS#11 return value).
    pub fn new(source: impl core::error::Error + Send + Sync + 'static) -> Self {
        Self(Box::new(source))
    }
}

impl fmt::Display for SignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "signing failed: {}", self.0)
    }
}

impl core::error::Error for SignError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// The kinds of public key Warden accepts from clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyType {
    /// ECDSA on NIST P-256 (daprd 1.12–1.17).
    EcdsaP256,
    /// ECDSA on NIST P-384 (only with the `p384` feature).
    EcdsaP384,
    /// Ed25519 (daprd 1.18 and later).
    Ed25519,
    /// RSA with a modulus of `bits` bits (Dapr's injector and operator; only with the `rsa`
    /// feature).
    Rsa {
        /// Modulus size.
        bits: u32,
    },
}

impl KeyType {
    /// Classifies a SubjectPublicKeyInfo, rejecting keys Warden does not accept.
    ///
    /// Without the `p384` (or `rsa`) feature, P-384 (or RSA) keys are refused as
    /// [`VerifyError::UnsupportedKeyType`].
    pub fn of(spki: &SubjectPublicKeyInfoRef<'_>) -> Result<Self, VerifyError> {
        let oid = spki.algorithm.oid;
        if oid == rfc8410::ID_ED_25519 {
            return Ok(Self::Ed25519);
        }
        if oid == rfc5912::ID_EC_PUBLIC_KEY {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.decode_as::<ObjectIdentifier>().ok())
                .ok_or(VerifyError::MalformedKey)?;
            return match curve {
                c if c == rfc5912::SECP_256_R_1 => Ok(Self::EcdsaP256),
                #[cfg(feature = "p384")]
                c if c == rfc5912::SECP_384_R_1 => Ok(Self::EcdsaP384),
                other => Err(VerifyError::UnsupportedKeyType(other)),
            };
        }
        #[cfg(feature = "rsa")]
        if oid == rfc5912::RSA_ENCRYPTION {
            let key = rsa_public_key(spki)?;
            let bits = key.n().bit_width();
            if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
                return Err(VerifyError::RsaKeySize(bits));
            }
            return Ok(Self::Rsa { bits });
        }
        Err(VerifyError::UnsupportedKeyType(oid))
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EcdsaP256 => f.write_str("ECDSA P-256"),
            Self::EcdsaP384 => f.write_str("ECDSA P-384"),
            Self::Ed25519 => f.write_str("Ed25519"),
            Self::Rsa { bits } => write!(f, "RSA-{bits}"),
        }
    }
}

/// Why a signature did not verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum VerifyError {
    /// The public key algorithm (or EC curve) is not one Warden accepts.
    UnsupportedKeyType(ObjectIdentifier),
    /// The RSA modulus is outside 2048–4096 bits.
    RsaKeySize(u32),
    /// The signature algorithm is not supported.
    UnsupportedSignatureAlgorithm(ObjectIdentifier),
    /// The signature algorithm does not fit the key (for example RSA over an EC key).
    AlgorithmKeyMismatch,
    /// The public key bytes do not decode.
    MalformedKey,
    /// The signature bytes do not decode.
    MalformedSignature,
    /// The signature is well-formed but wrong.
    BadSignature,
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnsupportedKeyType(oid) => {
                write!(f, "unsupported public key type {}", OidName(oid))
            }
            Self::RsaKeySize(bits) => write!(
                f,
                "unsupported RSA key size {bits} bits (accepted: {MIN_RSA_BITS}-{MAX_RSA_BITS})"
            ),
            Self::UnsupportedSignatureAlgorithm(oid) => {
                write!(f, "unsupported signature algorithm {}", OidName(oid))
            }
            Self::AlgorithmKeyMismatch => {
                f.write_str("signature algorithm does not match the public key type")
            }
            Self::MalformedKey => f.write_str("malformed public key"),
            Self::MalformedSignature => f.write_str("malformed signature"),
            Self::BadSignature => f.write_str("signature verification failed"),
        }
    }
}

impl core::error::Error for VerifyError {}

/// Shows an OID with its registered name when there is one: `1.2.840.10040.4.1 (id-dsa)`
/// (the number alone without the `oid-names` feature).
pub(crate) struct OidName<'a>(pub(crate) &'a ObjectIdentifier);

impl fmt::Display for OidName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        #[cfg(feature = "oid-names")]
        if let Some(name) = const_oid::db::DB.by_oid(self.0) {
            return write!(f, "{} ({name})", self.0);
        }
        write!(f, "{}", self.0)
    }
}

#[cfg(feature = "rsa")]
fn rsa_public_key(spki: &SubjectPublicKeyInfoRef<'_>) -> Result<rsa::PublicKey, VerifyError> {
    rsa::PublicKey::try_from(spki.clone()).map_err(|_| VerifyError::MalformedKey)
}

/// The hash a signature algorithm names.
#[derive(Clone, Copy)]
enum HashAlg {
    Sha256,
    Sha384,
    Sha512,
}

impl HashAlg {
    fn digest(self, message: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha256 => sha2::Sha256::digest(message).to_vec(),
            Self::Sha384 => sha2::Sha384::digest(message).to_vec(),
            Self::Sha512 => sha2::Sha512::digest(message).to_vec(),
        }
    }
}

/// Verification with the RustCrypto crates: ECDSA P-256/P-384 (SHA-256/384/512), Ed25519 and
/// RSA PKCS#1 v1.5 (SHA-256/384/512, 2048–4096 bits).
///
/// P-384 needs the `p384` feature and RSA the `rsa` feature (both default); without them such
/// keys get [`VerifyError::UnsupportedKeyType`] and RSA signature algorithms
/// [`VerifyError::UnsupportedSignatureAlgorithm`].
#[derive(Clone, Copy, Debug, Default)]
pub struct RustCryptoVerifier;

impl SignatureVerifier for RustCryptoVerifier {
    fn verify(
        &self,
        public_key: SubjectPublicKeyInfoRef<'_>,
        algorithm: AlgorithmIdentifierRef<'_>,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), VerifyError> {
        let key_type = KeyType::of(&public_key)?;
        let key_bytes = public_key.subject_public_key.raw_bytes();
        let alg = algorithm.oid;
        let ecdsa_hash = match alg {
            a if a == rfc5912::ECDSA_WITH_SHA_256 => Some(HashAlg::Sha256),
            a if a == rfc5912::ECDSA_WITH_SHA_384 => Some(HashAlg::Sha384),
            a if a == rfc5912::ECDSA_WITH_SHA_512 => Some(HashAlg::Sha512),
            _ => None,
        };
        #[cfg(feature = "rsa")]
        let rsa_hash = match alg {
            a if a == rfc5912::SHA_256_WITH_RSA_ENCRYPTION => Some(HashAlg::Sha256),
            a if a == rfc5912::SHA_384_WITH_RSA_ENCRYPTION => Some(HashAlg::Sha384),
            a if a == rfc5912::SHA_512_WITH_RSA_ENCRYPTION => Some(HashAlg::Sha512),
            _ => None,
        };
        #[cfg(not(feature = "rsa"))]
        let rsa_hash: Option<HashAlg> = None;
        if ecdsa_hash.is_none() && rsa_hash.is_none() && alg != rfc8410::ID_ED_25519 {
            return Err(VerifyError::UnsupportedSignatureAlgorithm(alg));
        }
        match (key_type, ecdsa_hash, rsa_hash) {
            (KeyType::EcdsaP256, Some(hash), None) => {
                let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(key_bytes)
                    .map_err(|_| VerifyError::MalformedKey)?;
                let sig = p256::ecdsa::DerSignature::from_bytes(signature)
                    .map_err(|_| VerifyError::MalformedSignature)?;
                key.verify_prehash(&hash.digest(message), &sig)
                    .map_err(|_| VerifyError::BadSignature)
            }
            #[cfg(feature = "p384")]
            (KeyType::EcdsaP384, Some(hash), None) => {
                let key = p384::ecdsa::VerifyingKey::from_sec1_bytes(key_bytes)
                    .map_err(|_| VerifyError::MalformedKey)?;
                let sig = p384::ecdsa::DerSignature::from_bytes(signature)
                    .map_err(|_| VerifyError::MalformedSignature)?;
                key.verify_prehash(&hash.digest(message), &sig)
                    .map_err(|_| VerifyError::BadSignature)
            }
            (KeyType::Ed25519, None, None) => {
                let key_bytes: &[u8; 32] = key_bytes
                    .try_into()
                    .map_err(|_| VerifyError::MalformedKey)?;
                let key = ed25519_dalek::VerifyingKey::from_bytes(key_bytes)
                    .map_err(|_| VerifyError::MalformedKey)?;
                let sig = ed25519_dalek::Signature::from_slice(signature)
                    .map_err(|_| VerifyError::MalformedSignature)?;
                key.verify(message, &sig)
                    .map_err(|_| VerifyError::BadSignature)
            }
            #[cfg(feature = "rsa")]
            (KeyType::Rsa { .. }, None, Some(hash)) => {
                let key = rsa_public_key(&public_key)?;
                let scheme = match hash {
                    HashAlg::Sha256 => rsa::pkcs1v15::Pkcs1v15Sign::new::<sha2::Sha256>(),
                    HashAlg::Sha384 => rsa::pkcs1v15::Pkcs1v15Sign::new::<sha2::Sha384>(),
                    HashAlg::Sha512 => rsa::pkcs1v15::Pkcs1v15Sign::new::<sha2::Sha512>(),
                };
                key.verify(scheme, &hash.digest(message), signature)
                    .map_err(|_| VerifyError::BadSignature)
            }
            _ => Err(VerifyError::AlgorithmKeyMismatch),
        }
    }
}

/// The key algorithms Warden generates (CA keys, CSR keys).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum KeyAlgorithm {
    /// ECDSA P-256 with SHA-256: FIPS-approved, the default.
    #[default]
    P256,
    /// Ed25519, as daprd 1.18 uses.
    Ed25519,
}

/// A private key held in memory: the portable [`CaSigner`].
///
/// Key material is zeroized on drop and never shown by `Debug`.
pub struct SoftwareKey {
    key: KeyMaterial,
    public_key: SubjectPublicKeyInfoOwned,
}

enum KeyMaterial {
    P256(p256::ecdsa::SigningKey),
    Ed25519(ed25519_dalek::SigningKey),
}

/// Why a private key could not be loaded or encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// The PEM framing is broken.
    Pem(PemError),
    /// No PEM block was found.
    NoPemBlock,
    /// The PEM block is not a private key type Warden reads.
    UnexpectedBlockType,
    /// The key decodes but uses an algorithm or curve Warden cannot sign with.
    UnsupportedAlgorithm,
    /// The key bytes do not decode.
    Malformed,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pem(e) => write!(f, "{e}"),
            Self::NoPemBlock => f.write_str("no PEM block found"),
            Self::UnexpectedBlockType => f.write_str(
                "PEM block is not a private key (expected PRIVATE KEY or EC PRIVATE KEY)",
            ),
            Self::UnsupportedAlgorithm => {
                f.write_str("unsupported private key algorithm (supported: ECDSA P-256, Ed25519)")
            }
            Self::Malformed => f.write_str("malformed private key"),
        }
    }
}

impl core::error::Error for KeyError {}

/// `SEQUENCE { INTEGER 0, SEQUENCE { id-Ed25519 }, OCTET STRING { OCTET STRING (32) } }`, up
/// to the 32-byte seed: PKCS#8 v1 for Ed25519 (RFC 8410 §7).
const ED25519_PKCS8_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

const PKCS8_LABEL: &str = "PRIVATE KEY";
const SEC1_LABEL: &str = "EC PRIVATE KEY";
/// Sentry accepts PKCS#1 RSA issuer keys; Warden recognises them to say why it cannot sign.
const PKCS1_RSA_LABEL: &str = "RSA PRIVATE KEY";

impl SoftwareKey {
    /// A fresh key from `rng`.
    pub fn generate<R: CryptoRng + ?Sized>(algorithm: KeyAlgorithm, rng: &mut R) -> Self {
        match algorithm {
            KeyAlgorithm::P256 => Self::from_material(KeyMaterial::P256(
                <p256::ecdsa::SigningKey as p256::elliptic_curve::Generate>::generate_from_rng(rng),
            )),
            KeyAlgorithm::Ed25519 => Self::from_material(KeyMaterial::Ed25519(
                ed25519_dalek::SigningKey::generate(rng),
            )),
        }
    }

    /// Reads the first private key in PEM text: PKCS#8 `PRIVATE KEY` (P-256 or Ed25519) or SEC1
    /// `EC PRIVATE KEY` (P-256).
    pub fn from_pem(text: &[u8]) -> Result<Self, KeyError> {
        let text = pem::as_text(text).map_err(KeyError::Pem)?;
        let (block, _) = pem::next_block(text)
            .map_err(KeyError::Pem)?
            .ok_or(KeyError::NoPemBlock)?;
        let der = Zeroizing::new(block.der);
        match block.label {
            PKCS8_LABEL => Self::from_pkcs8_der(&der),
            SEC1_LABEL => {
                let secret = p256::SecretKey::from_sec1_der(&der)
                    .map_err(|_| KeyError::UnsupportedAlgorithm)?;
                Ok(Self::from_material(KeyMaterial::P256(secret.into())))
            }
            PKCS1_RSA_LABEL => Err(KeyError::UnsupportedAlgorithm),
            _ => Err(KeyError::UnexpectedBlockType),
        }
    }

    /// Reads a PKCS#8 DER private key (P-256 or Ed25519).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, KeyError> {
        let info = pkcs8::PrivateKeyInfoRef::from_der(der).map_err(|_| KeyError::Malformed)?;
        let oid = info.algorithm.oid;
        if oid == rfc8410::ID_ED_25519 {
            let key =
                ed25519_dalek::SigningKey::from_pkcs8_der(der).map_err(|_| KeyError::Malformed)?;
            Ok(Self::from_material(KeyMaterial::Ed25519(key)))
        } else if oid == rfc5912::ID_EC_PUBLIC_KEY {
            let key = p256::ecdsa::SigningKey::from_pkcs8_der(der)
                .map_err(|_| KeyError::UnsupportedAlgorithm)?;
            Ok(Self::from_material(KeyMaterial::P256(key)))
        } else {
            Err(KeyError::UnsupportedAlgorithm)
        }
    }

    /// The key as PKCS#8 `PRIVATE KEY` PEM, the form Sentry stores `issuer.key` in.
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, KeyError> {
        let der = self.to_pkcs8_der()?;
        let mut out = Zeroizing::new(String::new());
        pem::encode_into(&mut out, PKCS8_LABEL, &der).map_err(KeyError::Pem)?;
        Ok(out)
    }

    /// The key as PKCS#8 DER, for handing it to another backend.
    ///
    /// Ed25519 keys are written as PKCS#8 v1 (RFC 8410 §7, no public key), as Go writes them:
    /// ed25519-dalek writes v2, which OpenSSL 3.0 cannot read.
    pub fn to_pkcs8_der(&self) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        match &self.key {
            KeyMaterial::P256(k) => {
                let doc = k.to_pkcs8_der().map_err(|_| KeyError::Malformed)?;
                Ok(Zeroizing::new(doc.as_bytes().to_vec()))
            }
            KeyMaterial::Ed25519(k) => {
                let mut der =
                    Zeroizing::new(Vec::with_capacity(ED25519_PKCS8_V1_PREFIX.len() + 32));
                der.extend_from_slice(&ED25519_PKCS8_V1_PREFIX);
                der.extend_from_slice(k.as_bytes());
                Ok(der)
            }
        }
    }

    /// Which algorithm this key uses.
    pub fn algorithm(&self) -> KeyAlgorithm {
        match self.key {
            KeyMaterial::P256(_) => KeyAlgorithm::P256,
            KeyMaterial::Ed25519(_) => KeyAlgorithm::Ed25519,
        }
    }

    fn from_material(key: KeyMaterial) -> Self {
        let public_key = match &key {
            KeyMaterial::P256(k) => {
                let point = k.verifying_key().to_sec1_point(false);
                spki_from_parts(
                    rfc5912::ID_EC_PUBLIC_KEY,
                    Some(rfc5912::SECP_256_R_1),
                    point.as_bytes(),
                )
            }
            KeyMaterial::Ed25519(k) => {
                spki_from_parts(rfc8410::ID_ED_25519, None, k.verifying_key().as_bytes())
            }
        };
        Self { key, public_key }
    }
}

fn spki_from_parts(
    algorithm: ObjectIdentifier,
    curve: Option<ObjectIdentifier>,
    key: &[u8],
) -> SubjectPublicKeyInfoOwned {
    SubjectPublicKeyInfoOwned {
        algorithm: AlgorithmIdentifierOwned {
            oid: algorithm,
            parameters: curve.map(der::Any::from),
        },
        subject_public_key: BitString::from_bytes(key)
            .unwrap_or_else(|_| unreachable!("a byte string of any length is a valid BIT STRING")),
    }
}

impl CaSigner for SoftwareKey {
    fn signature_algorithm(&self) -> AlgorithmIdentifierOwned {
        let oid = match self.key {
            KeyMaterial::P256(_) => rfc5912::ECDSA_WITH_SHA_256,
            KeyMaterial::Ed25519(_) => rfc8410::ID_ED_25519,
        };
        AlgorithmIdentifierOwned {
            oid,
            parameters: None,
        }
    }

    fn public_key(&self) -> SubjectPublicKeyInfoOwned {
        self.public_key.clone()
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        use ecdsa::signature::Signer as _;
        match &self.key {
            KeyMaterial::P256(k) => {
                let sig: p256::ecdsa::Signature = k.try_sign(message).map_err(SignError::new)?;
                Ok(sig.to_der().as_bytes().to_vec())
            }
            KeyMaterial::Ed25519(k) => Ok(k.try_sign(message).map_err(SignError::new)?.to_vec()),
        }
    }
}

impl fmt::Debug for SoftwareKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SoftwareKey")
            .field("algorithm", &self.algorithm())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::seeded_rng;
    use der::referenced::OwnedToRef;

    fn sign_and_verify(alg: KeyAlgorithm) {
        let key = SoftwareKey::generate(alg, &mut seeded_rng(7));
        let sig = key.sign(b"hello").unwrap();
        let spki = key.public_key();
        let algorithm = key.signature_algorithm();
        RustCryptoVerifier
            .verify(
                spki.owned_to_ref(),
                algorithm.owned_to_ref(),
                b"hello",
                &sig,
            )
            .unwrap();
        assert_eq!(
            RustCryptoVerifier.verify(
                spki.owned_to_ref(),
                algorithm.owned_to_ref(),
                b"hellO",
                &sig
            ),
            Err(VerifyError::BadSignature)
        );
        let pem = key.to_pkcs8_pem().unwrap();
        let again = SoftwareKey::from_pem(pem.as_bytes()).unwrap();
        assert_eq!(again.public_key(), spki);
        let der = key.to_pkcs8_der().unwrap();
        let again = SoftwareKey::from_pkcs8_der(&der).unwrap();
        assert_eq!(again.public_key(), spki);
    }

    #[test]
    fn ed25519_pkcs8_is_version_1_like_go() {
        let key = SoftwareKey::generate(KeyAlgorithm::Ed25519, &mut seeded_rng(7));
        let der = key.to_pkcs8_der().unwrap();
        assert_eq!(der.len(), 48, "v1: no public key field");
        assert_eq!(der[..16], ED25519_PKCS8_V1_PREFIX);
        let again = SoftwareKey::from_pkcs8_der(&der).unwrap();
        assert_eq!(again.public_key(), key.public_key());
    }

    #[test]
    fn p256_sign_verify_round_trip() {
        sign_and_verify(KeyAlgorithm::P256);
    }

    #[test]
    fn ed25519_sign_verify_round_trip() {
        sign_and_verify(KeyAlgorithm::Ed25519);
    }

    #[test]
    fn wrong_algorithm_for_key_is_refused() {
        let key = SoftwareKey::generate(KeyAlgorithm::Ed25519, &mut seeded_rng(1));
        let sig = key.sign(b"m").unwrap();
        let alg = AlgorithmIdentifierOwned {
            oid: rfc5912::ECDSA_WITH_SHA_256,
            parameters: None,
        };
        assert_eq!(
            RustCryptoVerifier.verify(
                key.public_key().owned_to_ref(),
                alg.owned_to_ref(),
                b"m",
                &sig
            ),
            Err(VerifyError::AlgorithmKeyMismatch)
        );
    }

    #[test]
    fn p384_keys_follow_the_p384_feature() {
        let spki = spki_from_parts(
            rfc5912::ID_EC_PUBLIC_KEY,
            Some(rfc5912::SECP_384_R_1),
            &[4; 97],
        );
        let expected = if cfg!(feature = "p384") {
            Ok(KeyType::EcdsaP384)
        } else {
            Err(VerifyError::UnsupportedKeyType(rfc5912::SECP_384_R_1))
        };
        assert_eq!(KeyType::of(&spki.owned_to_ref()), expected);
    }

    #[test]
    fn rsa_keys_follow_the_rsa_feature() {
        // Not an RSAPublicKey: with the feature it is parsed (and refused), without it the
        // algorithm alone is refused.
        let spki = spki_from_parts(rfc5912::RSA_ENCRYPTION, None, &[0x30, 0x00]);
        let expected = if cfg!(feature = "rsa") {
            VerifyError::MalformedKey
        } else {
            VerifyError::UnsupportedKeyType(rfc5912::RSA_ENCRYPTION)
        };
        assert_eq!(KeyType::of(&spki.owned_to_ref()), Err(expected));
    }

    #[test]
    fn debug_does_not_show_key_material() {
        let key = SoftwareKey::generate(KeyAlgorithm::P256, &mut seeded_rng(3));
        let shown = alloc::format!("{key:?}");
        assert_eq!(shown, "SoftwareKey { algorithm: P256, .. }");
    }
}

//! The glue between x509-cert's builders and [`CaSigner`], and the raw signed bytes of parsed
//! objects.
//!
//! x509-cert's builders want a `signature::Keypair`; our signers are trait objects whose errors
//! must survive (an HSM's return value matters), so we call `finalize`, sign ourselves, then
//! `assemble`.

use alloc::vec::Vec;

use der::asn1::{AnyRef, BitString};
use der::{Decode, Encode, Sequence};
use spki::{
    AlgorithmIdentifierOwned, DynSignatureAlgorithmIdentifier, EncodePublicKey,
    SubjectPublicKeyInfoOwned,
};
use x509_cert::builder::Builder;

use crate::crypto::{CaSigner, SignError};

/// A builder failure, or the signer's.
#[derive(Debug)]
pub(crate) enum BuildError {
    Builder(x509_cert::builder::Error),
    Sign(SignError),
    Encoding(der::Error),
}

impl From<x509_cert::builder::Error> for BuildError {
    fn from(e: x509_cert::builder::Error) -> Self {
        Self::Builder(e)
    }
}

impl From<der::Error> for BuildError {
    fn from(e: der::Error) -> Self {
        Self::Encoding(e)
    }
}

/// Runs an x509-cert builder through a [`CaSigner`].
pub(crate) fn build_with<B: Builder>(
    mut builder: B,
    signer: &dyn CaSigner,
) -> Result<B::Output, BuildError> {
    let adapter = KeypairAdapter {
        public_key: PublicKeyDer(signer.public_key()),
        algorithm: signer.signature_algorithm(),
    };
    let to_sign = builder.finalize(&adapter)?;
    let signature = signer.sign(&to_sign).map_err(BuildError::Sign)?;
    let signature = BitString::from_bytes(&signature)?;
    Ok(builder.assemble(signature, &adapter)?)
}

struct KeypairAdapter {
    public_key: PublicKeyDer,
    algorithm: AlgorithmIdentifierOwned,
}

#[derive(Clone)]
struct PublicKeyDer(SubjectPublicKeyInfoOwned);

impl EncodePublicKey for PublicKeyDer {
    fn to_public_key_der(&self) -> spki::Result<der::Document> {
        Ok(der::Document::encode_msg(&self.0)?)
    }
}

impl signature::Keypair for KeypairAdapter {
    type VerifyingKey = PublicKeyDer;
    fn verifying_key(&self) -> PublicKeyDer {
        self.public_key.clone()
    }
}

impl DynSignatureAlgorithmIdentifier for KeypairAdapter {
    fn signature_algorithm_identifier(&self) -> spki::Result<AlgorithmIdentifierOwned> {
        Ok(self.algorithm.clone())
    }
}

/// `SEQUENCE { tbs, algorithm, signature }` kept as raw elements, so signatures are checked over
/// the bytes that were actually signed rather than a re-encoding.
#[derive(Sequence)]
struct SignedRaw<'a> {
    tbs: AnyRef<'a>,
    algorithm: AnyRef<'a>,
    signature: AnyRef<'a>,
}

/// The exact DER of the to-be-signed part of a certificate or CSR.
pub(crate) fn tbs_bytes(der: &[u8]) -> Result<Vec<u8>, der::Error> {
    SignedRaw::from_der(der)?.tbs.to_der()
}

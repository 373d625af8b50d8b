//! Key sets and token checks: JWKS JSON into verification keys, and one token checked
//! against a set at a given time. Pure: no disk, network or clock.

use std::fmt;

use base64ct::{Base64UrlUnpadded, Encoding as _};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use super::MAX_JWKS_BYTES;
use crate::observability::SCOPE_SERVER;

/// Clock skew allowed on `exp`, `nbf` and `iat` (Sentry's `WithAcceptableSkew(5m)`).
pub(crate) const LEEWAY_SECS: u64 = 300;
/// The algorithms a token may use. Never `none`, never HMAC.
pub(crate) const ALGORITHMS: [&str; 7] = [
    "ES256", "ES384", "RS256", "RS384", "RS512", "PS256", "EdDSA",
];

/// The kind of a public key, which decides the algorithms it may verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyKind {
    /// EC on P-256: ES256.
    P256,
    /// EC on P-384: ES384.
    P384,
    /// RSA: RS256, RS384, RS512, PS256.
    Rsa,
    /// OKP Ed25519: EdDSA.
    Ed25519,
}

impl KeyKind {
    fn allows(self, alg: Algorithm) -> bool {
        match self {
            Self::P256 => alg == Algorithm::ES256,
            Self::P384 => alg == Algorithm::ES384,
            Self::Rsa => matches!(
                alg,
                Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 | Algorithm::PS256
            ),
            Self::Ed25519 => alg == Algorithm::EdDSA,
        }
    }
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::P256 => "EC P-256",
            Self::P384 => "EC P-384",
            Self::Rsa => "RSA",
            Self::Ed25519 => "OKP Ed25519",
        })
    }
}

/// One verification key of a set.
struct Key {
    kid: Option<String>,
    kind: KeyKind,
    /// The JWK's own `alg`, which then is the only algorithm it verifies.
    alg: Option<Algorithm>,
    decoding: DecodingKey,
}

impl Key {
    fn allows(&self, alg: Algorithm) -> bool {
        self.kind.allows(alg) && self.alg.is_none_or(|own| own == alg)
    }
}

/// A parsed JWK Set: only the keys that can verify a token.
pub struct KeySet {
    keys: Vec<Key>,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.keys.iter().map(|k| (k.kid.as_deref(), k.kind)))
            .finish()
    }
}

/// Why a token was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenError {
    /// The header names a `kid` that is not in the set: worth a refresh.
    UnknownKid(String),
    /// Anything else; the text is the reason after "token validation failed: ".
    Invalid(String),
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownKid(kid) => {
                write!(
                    f,
                    "failed to find key with key ID \"{}\" in key set",
                    Shown(kid)
                )
            }
            Self::Invalid(reason) => f.write_str(reason),
        }
    }
}

/// The longest part of a caller's header value (`kid`, `alg`) repeated in a reason: reasons are
/// logged, and a token can be megabytes long.
const SHOWN_MAX_CHARS: usize = 64;

/// A caller-chosen header value as shown in a reason: as written when short, otherwise its
/// first [`SHOWN_MAX_CHARS`] characters and its length.
pub(super) struct Shown<'a>(pub(super) &'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.char_indices().nth(SHOWN_MAX_CHARS) {
            None => f.write_str(self.0),
            Some((end, _)) => write!(
                f,
                "{}...({} bytes)",
                self.0.get(..end).unwrap_or_default(),
                self.0.len()
            ),
        }
    }
}

/// Why a JWK Set could not be loaded from its source; the validator keeps the previous set.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeySetError {
    /// The document is not JSON.
    #[error("not valid JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    /// The document has no `keys` array.
    #[error("not a JWK Set: no \"keys\" array")]
    NoKeysArray,
    /// No key of the set can verify tokens here.
    #[error(
        "the JWK Set has no usable key (EC P-256/P-384, RSA or Ed25519 signature keys); {skipped} skipped"
    )]
    NoUsableKey {
        /// How many keys were skipped.
        skipped: usize,
    },
    /// The file is larger than [`MAX_JWKS_BYTES`].
    #[error("{0}")]
    FileTooLarge(#[source] std::io::Error),
    /// The file could not be read.
    #[error("cannot read: {0}")]
    Read(#[source] std::io::Error),
    /// The request failed (connection, TLS, timeout, reading the body), with its causes.
    #[error("{}", error_chain(.0))]
    Request(#[source] reqwest::Error),
    /// The server answered with a status other than success.
    #[error("HTTP status {0}")]
    HttpStatus(reqwest::StatusCode),
    /// The response is larger than [`MAX_JWKS_BYTES`].
    #[error("the response is larger than {MAX_JWKS_BYTES} bytes")]
    ResponseTooLarge,
}

/// One key of a set that cannot verify tokens here, and why; it is skipped.
#[derive(Debug, thiserror::Error)]
#[error("{}{reason}", kid.as_deref().map_or_else(String::new, |k| format!("\"{k}\": ")))]
struct SkippedKey {
    /// Its `kid`, when known by then.
    kid: Option<String>,
    /// Why it is skipped.
    reason: SkipReason,
}

/// Why a key of a set is skipped.
#[derive(Debug, thiserror::Error)]
enum SkipReason {
    /// An HMAC secret.
    #[error("symmetric (oct) keys are never accepted")]
    Symmetric,
    /// Not a JWK.
    #[error("invalid JWK: {0}")]
    NotJwk(#[source] serde_json::Error),
    /// `use: enc`.
    #[error("an encryption key (use: enc)")]
    Encryption,
    /// A curve other than P-256, P-384 or Ed25519.
    #[error("unsupported curve {0:?}")]
    UnsupportedCurve(EllipticCurve),
    /// A key type not supported.
    #[error("unsupported key type")]
    UnsupportedKeyType,
    /// An `alg` that is not one of [`ALGORITHMS`].
    #[error("alg {0:?} is not a signature algorithm accepted here")]
    NotSignatureAlgorithm(KeyAlgorithm),
    /// An `alg` the key type cannot verify.
    #[error("alg {alg:?} does not fit a {kind} key")]
    AlgorithmMismatch {
        /// The key's `alg`.
        alg: KeyAlgorithm,
        /// Its type.
        kind: KeyKind,
    },
    /// The key material is not usable.
    #[error("invalid key: {0}")]
    InvalidKey(#[source] jsonwebtoken::errors::Error),
}

fn invalid(reason: impl Into<String>) -> TokenError {
    TokenError::Invalid(reason.into())
}

impl KeySet {
    /// Parses JWKS JSON (`{"keys": [...]}`). Keys that cannot verify tokens here (`use: enc`,
    /// symmetric `oct` keys, unsupported curves or types, malformed members) are skipped.
    ///
    /// # Errors
    ///
    /// `KeySetError::NotJson`, `KeySetError::NoKeysArray` or `KeySetError::NoUsableKey`.
    pub fn parse(json: &[u8]) -> Result<Self, KeySetError> {
        let document: Value = serde_json::from_slice(json).map_err(KeySetError::NotJson)?;
        let Some(entries) = document.get("keys").and_then(Value::as_array) else {
            return Err(KeySetError::NoKeysArray);
        };
        let mut keys = Vec::new();
        let mut skipped = Vec::new();
        for (index, entry) in entries.iter().enumerate() {
            match parse_key(entry) {
                Ok(key) => keys.push(key),
                Err(why) => skipped.push(format!("keys[{index}]: {why}")),
            }
        }
        if !skipped.is_empty() {
            tracing::warn!(target: SCOPE_SERVER, "JWKS: skipping keys that cannot verify tokens: {}", skipped.join("; "));
        }
        if keys.is_empty() {
            return Err(KeySetError::NoUsableKey {
                skipped: skipped.len(),
            });
        }
        Ok(Self { keys })
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when the set has no key (never, for a set made by [`KeySet::parse`]).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Verifies `token` at `now` (seconds since the epoch): signature, algorithm and key type,
    /// then `exp` (required), `nbf`, `iat` (five minutes of leeway), `aud` containing `audience`, and
    /// `sub` equal to `subject`.
    ///
    /// # Errors
    ///
    /// [`TokenError::UnknownKid`] when the header's `kid` is not in the set, otherwise
    /// [`TokenError::Invalid`] with the reason.
    pub fn verify(
        &self,
        token: &str,
        audience: &str,
        subject: &str,
        now: u64,
    ) -> Result<(), TokenError> {
        let (alg, kid) = read_header(token)?;
        let candidates: Vec<&Key> = match &kid {
            Some(kid) => {
                let same: Vec<&Key> = self
                    .keys
                    .iter()
                    .filter(|k| k.kid.as_deref() == Some(kid.as_str()))
                    .collect();
                if same.is_empty() {
                    return Err(TokenError::UnknownKid(kid.clone()));
                }
                let usable: Vec<&Key> = same.iter().copied().filter(|k| k.allows(alg)).collect();
                if usable.is_empty() {
                    let kinds: Vec<String> = same.iter().map(|k| describe(k)).collect();
                    return Err(invalid(format!(
                        "algorithm \"{alg:?}\" does not match key \"{kid}\" ({})",
                        kinds.join(", ")
                    )));
                }
                usable
            }
            None => {
                let usable: Vec<&Key> = self.keys.iter().filter(|k| k.allows(alg)).collect();
                if usable.is_empty() {
                    return Err(invalid(format!(
                        "no key in the key set can verify \"{alg:?}\" tokens"
                    )));
                }
                usable
            }
        };
        let mut validation = Validation::new(alg);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        let mut claims = None;
        for key in candidates {
            match jsonwebtoken::decode::<Value>(token, &key.decoding, &validation) {
                Ok(data) => {
                    claims = Some(data.claims);
                    break;
                }
                Err(e) if is_signature_error(&e) => {}
                Err(e) => return Err(invalid(format!("failed to parse token: {e}"))),
            }
        }
        let claims = claims.ok_or_else(|| {
            invalid("could not verify message using any of the signatures or keys")
        })?;
        check_claims(&claims, audience, subject, now)
    }
}

fn describe(key: &Key) -> String {
    match key.alg {
        Some(alg) => format!("{} with alg {alg:?}", key.kind),
        None => key.kind.to_string(),
    }
}

fn is_signature_error(e: &jsonwebtoken::errors::Error) -> bool {
    use jsonwebtoken::errors::ErrorKind;
    matches!(
        e.kind(),
        ErrorKind::InvalidSignature
            | ErrorKind::InvalidEcdsaKey
            | ErrorKind::InvalidEddsaKey
            | ErrorKind::InvalidRsaKey(_)
            | ErrorKind::InvalidKeyFormat
            | ErrorKind::InvalidAlgorithm
    )
}

fn parse_key(entry: &Value) -> Result<Key, SkippedKey> {
    let unnamed = |reason| SkippedKey { kid: None, reason };
    if entry.get("kty").and_then(Value::as_str) == Some("oct") {
        return Err(unnamed(SkipReason::Symmetric));
    }
    let jwk: Jwk =
        serde_json::from_value(entry.clone()).map_err(|e| unnamed(SkipReason::NotJwk(e)))?;
    let kid = jwk.common.key_id.clone();
    let skipped = |reason| SkippedKey {
        kid: kid.clone(),
        reason,
    };
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return Err(skipped(SkipReason::Encryption));
    }
    let kind = match &jwk.algorithm {
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => KeyKind::P256,
            EllipticCurve::P384 => KeyKind::P384,
            ref other => return Err(skipped(SkipReason::UnsupportedCurve(other.clone()))),
        },
        AlgorithmParameters::RSA(_) => KeyKind::Rsa,
        AlgorithmParameters::OctetKeyPair(okp) => match okp.curve {
            EllipticCurve::Ed25519 => KeyKind::Ed25519,
            ref other => return Err(skipped(SkipReason::UnsupportedCurve(other.clone()))),
        },
        AlgorithmParameters::OctetKey(_) => return Err(skipped(SkipReason::Symmetric)),
        _ => return Err(skipped(SkipReason::UnsupportedKeyType)),
    };
    let alg = match jwk.common.key_algorithm {
        None => None,
        Some(own) => {
            let alg = signature_algorithm(own)
                .ok_or_else(|| skipped(SkipReason::NotSignatureAlgorithm(own)))?;
            if !kind.allows(alg) {
                return Err(skipped(SkipReason::AlgorithmMismatch { alg: own, kind }));
            }
            Some(alg)
        }
    };
    let decoding = DecodingKey::from_jwk(&jwk).map_err(|e| skipped(SkipReason::InvalidKey(e)))?;
    Ok(Key {
        kid,
        kind,
        alg,
        decoding,
    })
}

fn signature_algorithm(alg: KeyAlgorithm) -> Option<Algorithm> {
    Some(match alg {
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

/// Reads `alg` and `kid` from the header before anything else, so `none`, HMAC and other
/// algorithms are refused by name rather than by a parse error.
///
/// Public for the fuzz targets and their regression tests; [`KeySet::verify`] is the API.
///
/// # Errors
///
/// [`TokenError::Invalid`] when the token is not three parts, the header is not base64url
/// JSON, `alg` is missing or not accepted, or `kid` is not a string.
pub fn read_header(token: &str) -> Result<(Algorithm, Option<String>), TokenError> {
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        return Err(invalid(format!(
            "failed to parse token: a signed JWT has 3 dot-separated parts, this one has {}",
            parts.len()
        )));
    }
    let header = parts
        .first()
        .and_then(|h| Base64UrlUnpadded::decode_vec(h).ok())
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        .filter(Value::is_object)
        .ok_or_else(|| invalid("failed to parse token: the header is not base64url JSON"))?;
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("failed to parse token: the header has no \"alg\""))?;
    if !ALGORITHMS.contains(&alg) {
        return Err(invalid(format!(
            "unsupported signature algorithm \"{}\"; accepted: {}",
            Shown(alg),
            ALGORITHMS.join(", ")
        )));
    }
    let alg: Algorithm = alg
        .parse()
        .map_err(|_| invalid(format!("unsupported signature algorithm \"{alg}\"")))?;
    let kid = match header.get("kid") {
        None | Some(Value::Null) => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err(invalid("failed to parse token: \"kid\" is not a string")),
    };
    Ok((alg, kid))
}

/// Checks the claims of a token whose signature verified, as [`KeySet::verify`] does: `exp`
/// (required), `nbf`, `iat` (optional) against `now` (seconds since the epoch, five minutes of leeway), `aud`
/// containing `audience`, and `sub` equal to `subject`.
///
/// Public for the fuzz targets and their regression tests; [`KeySet::verify`] is the API.
///
/// # Errors
///
/// [`TokenError::Invalid`] naming the first claim that is not satisfied.
pub fn check_claims(
    claims: &Value,
    audience: &str,
    subject: &str,
    now: u64,
) -> Result<(), TokenError> {
    let Some(claims) = claims.as_object() else {
        return Err(invalid(
            "failed to parse token: the claims are not a JSON object",
        ));
    };
    let time = |name: &str| -> Result<Option<u64>, TokenError> {
        match claims.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n
                .as_u64()
                .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
                .map(Some)
                .ok_or_else(|| {
                    invalid(format!("\"{name}\" not satisfied: not a valid NumericDate"))
                }),
            Some(_) => Err(invalid(format!(
                "\"{name}\" not satisfied: not a NumericDate"
            ))),
        }
    };
    // Unlike Sentry (jwx checks `exp` only when present), a token without `exp` is refused:
    // it would otherwise stay usable forever once leaked, and no rotation of the JWKS keys
    // short of removing the key would end it.
    let Some(exp) = time("exp")? else {
        return Err(invalid("\"exp\" not satisfied: required claim not found"));
    };
    if now > exp.saturating_add(LEEWAY_SECS) {
        return Err(invalid("\"exp\" not satisfied: the token has expired"));
    }
    if let Some(nbf) = time("nbf")?
        && nbf > now.saturating_add(LEEWAY_SECS)
    {
        return Err(invalid("\"nbf\" not satisfied: the token is not valid yet"));
    }
    if let Some(iat) = time("iat")?
        && iat > now.saturating_add(LEEWAY_SECS)
    {
        return Err(invalid(
            "\"iat\" not satisfied: the token was issued in the future",
        ));
    }
    match claims.get("aud") {
        None | Some(Value::Null) => {
            return Err(invalid("\"aud\" not satisfied: required claim not found"));
        }
        Some(Value::String(aud)) if aud == audience => {}
        Some(Value::Array(auds)) if auds.iter().any(|a| a.as_str() == Some(audience)) => {}
        Some(Value::String(_) | Value::Array(_)) => {
            return Err(invalid(format!(
                "\"aud\" not satisfied: the audience does not contain {audience}"
            )));
        }
        Some(_) => {
            return Err(invalid(
                "\"aud\" not satisfied: not a string or a list of strings",
            ));
        }
    }
    match claims.get("sub") {
        None | Some(Value::Null) => Err(invalid("\"sub\" not satisfied: required claim not found")),
        Some(Value::String(sub)) if sub == subject => Ok(()),
        Some(_) => Err(invalid(format!(
            "\"sub\" not satisfied: expected {subject}"
        ))),
    }
}

/// An error with its causes, which is where reqwest puts the useful part ("invalid peer
/// certificate: UnknownIssuer", "connection refused").
pub(super) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

//! The `jwks` token validator (spec §2 and §5): callers prove who they are with a JWT signed
//! by a key of a JSON Web Key Set, fetched from a URL, read from a file or given inline.
//!
//! The pieces, from pure to effectful:
//! - [`JwksOptions::parse`] decodes the validator options (names case-insensitive, Go
//!   durations or plain seconds) without touching the disk or the network; the config loader
//!   runs it so a bad option stops the server at start-up naming the field.
//! - [`KeySet::parse`] turns JWKS JSON into verification keys, skipping keys that can never
//!   verify a token here (HMAC secrets, encryption keys, unknown types).
//! - [`KeySet::verify`] checks one token against a set at a given time: the signature with the
//!   key chosen by `kid` (or every key of the right type when there is none), the algorithm
//!   against the key type, then `exp` (required, unlike Sentry), `nbf`/`iat` with five minutes
//!   of leeway, `aud` and `sub`.
//! - [`JwksValidator`] owns the live set: it loads it from the source, refreshes a remote one
//!   in the background (every 15 minutes, or `minRefreshInterval` when longer; an unknown
//!   `kid` asks for an early refresh, at most once per `minRefreshInterval`), reloads a file when it changes, keeps the last
//!   good set when a refresh fails, and marks the `sentry-jwks-validator` health target ready
//!   after the first successful load.
//!
//! Tokens are never logged, whole or in part.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwapOption;
use base64ct::{Base64, Base64Unpadded, Base64Url, Base64UrlUnpadded, Encoding as _};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use crate::observability::{HealthTarget, SCOPE_SERVER};
use crate::util::watch::{Wake, watch_file};

/// Name of the readiness target: `/healthz` is 503 until the first set is loaded.
pub(crate) const HEALTH_TARGET: &str = "sentry-jwks-validator";
/// `minRefreshInterval` when unset or not above [`MIN_REFRESH_FLOOR`].
pub(crate) const DEFAULT_MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(600);
/// `requestTimeout` when unset or not above [`REQUEST_TIMEOUT_FLOOR`].
pub(crate) const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a remote set is refreshed when no unknown `kid` asks for it sooner (jwx's
/// default refresh interval, which Sentry's cache uses); never less than `minRefreshInterval`.
pub(crate) const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(900);
/// A `minRefreshInterval` at or below this is ignored (Sentry's rule).
pub(crate) const MIN_REFRESH_FLOOR: Duration = Duration::from_secs(1);
/// A `requestTimeout` at or below this is ignored (Sentry's rule).
pub(crate) const REQUEST_TIMEOUT_FLOOR: Duration = Duration::from_millis(1);
/// Clock skew allowed on `exp`, `nbf` and `iat` (Sentry's `WithAcceptableSkew(5m)`).
pub(crate) const LEEWAY_SECS: u64 = 300;
/// The largest JWKS document accepted from a URL or a file.
pub(crate) const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// The algorithms a token may use. Never `none`, never HMAC.
pub(crate) const ALGORITHMS: [&str; 7] = [
    "ES256", "ES384", "RS256", "RS384", "RS512", "PS256", "EdDSA",
];
/// How soon a remote source is retried after a failed first load; doubles up to
/// [`INITIAL_RETRY_MAX`] (or `minRefreshInterval` when that is shorter).
const INITIAL_RETRY: Duration = Duration::from_millis(500);
const INITIAL_RETRY_MAX: Duration = Duration::from_secs(30);
/// Events on a watched file within this window cause one reload.
const FILE_DEBOUNCE: Duration = Duration::from_millis(200);

// ---------------------------------------------------------------------------------------------
// Options.

/// The option names, as documented; matched case-insensitively.
const OPT_SOURCE: &str = "source";
const OPT_CA: &str = "caCertificate";
const OPT_MIN_REFRESH: &str = "minRefreshInterval";
const OPT_TIMEOUT: &str = "requestTimeout";

/// A validator option that cannot be used; [`fmt::Display`] is `"<option>: <reason>"`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{option}: {reason}")]
pub struct OptionError {
    /// The option name as documented (`source`, `caCertificate`, ...).
    pub option: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl OptionError {
    fn new(option: &'static str, reason: impl Into<String>) -> Self {
        Self {
            option,
            reason: reason.into(),
        }
    }
}

/// The `jwks` validator options, decoded but not yet resolved against the disk or network.
#[derive(Clone, PartialEq, Eq)]
pub struct JwksOptions {
    /// `source` as written (a URL, a file path, JWKS JSON or base64 of it).
    pub source: String,
    /// `caCertificate` as written (PEM text or a file path), if given.
    pub ca_certificate: Option<String>,
    /// `minRefreshInterval`, the default applied.
    pub min_refresh_interval: Duration,
    /// `requestTimeout`, the default applied.
    pub request_timeout: Duration,
    /// Option names that mean nothing to this validator (logged, then ignored, as Sentry
    /// ignores them).
    pub unknown: Vec<String>,
}

impl fmt::Debug for JwksOptions {
    // An inline source is a public key set, but keep Debug short and the same for every kind.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwksOptions")
            .field("source", &SourceSummary(&self.source))
            .field("ca_certificate", &self.ca_certificate.is_some())
            .field("min_refresh_interval", &self.min_refresh_interval)
            .field("request_timeout", &self.request_timeout)
            .field("unknown", &self.unknown)
            .finish()
    }
}

/// Shows a URL or path, but only the length of inline text.
struct SourceSummary<'a>(&'a str);

impl fmt::Debug for SourceSummary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.len() > 200 || self.0.trim_start().starts_with('{') {
            write!(f, "<{} bytes>", self.0.len())
        } else {
            write!(f, "{:?}", self.0)
        }
    }
}

impl JwksOptions {
    /// Decodes the options of a `jwks` entry (`tokenValidators[i].options`).
    ///
    /// # Errors
    ///
    /// An `OptionError` for a missing or empty `source`, a `source` with a URL scheme other
    /// than `http`/`https`, a bad duration, or an option given twice in different cases.
    pub fn parse(options: &BTreeMap<String, String>) -> Result<Self, OptionError> {
        let mut known: BTreeMap<&'static str, (&str, &str)> = BTreeMap::new();
        let mut unknown = Vec::new();
        for (key, value) in options {
            let Some(name) = [OPT_SOURCE, OPT_CA, OPT_MIN_REFRESH, OPT_TIMEOUT]
                .into_iter()
                .find(|name| name.eq_ignore_ascii_case(key))
            else {
                unknown.push(key.clone());
                continue;
            };
            if let Some((first, _)) = known.insert(name, (key.as_str(), value.as_str())) {
                return Err(OptionError::new(
                    name,
                    format!(
                        "given twice (as '{first}' and '{key}'); option names are case-insensitive"
                    ),
                ));
            }
        }
        let value = |name: &str| known.get(name).map(|(_, v)| v.trim());
        let source = value(OPT_SOURCE).unwrap_or_default();
        if source.is_empty() {
            return Err(OptionError::new(
                OPT_SOURCE,
                "required: an https:// or http:// URL, a file path, JWKS JSON or base64 of it",
            ));
        }
        if let Some((scheme, _)) = source.split_once("://")
            && !scheme.is_empty()
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+')
        {
            let lower = scheme.to_ascii_lowercase();
            if lower != "https" && lower != "http" {
                return Err(OptionError::new(
                    OPT_SOURCE,
                    format!("unsupported URL scheme '{scheme}'; use https:// (or http://)"),
                ));
            }
            if scheme != lower {
                return Err(OptionError::new(
                    OPT_SOURCE,
                    format!("write the URL scheme in lower case ('{lower}://')"),
                ));
            }
        }
        let ca_certificate = value(OPT_CA).filter(|v| !v.is_empty()).map(str::to_owned);
        let min_refresh_interval = duration_option(
            OPT_MIN_REFRESH,
            value(OPT_MIN_REFRESH),
            MIN_REFRESH_FLOOR,
            DEFAULT_MIN_REFRESH_INTERVAL,
        )?;
        let request_timeout = duration_option(
            OPT_TIMEOUT,
            value(OPT_TIMEOUT),
            REQUEST_TIMEOUT_FLOOR,
            DEFAULT_REQUEST_TIMEOUT,
        )?;
        Ok(Self {
            source: source.to_owned(),
            ca_certificate,
            min_refresh_interval,
            request_timeout,
            unknown,
        })
    }
}

/// A Go duration or a plain integer number of seconds; the default when absent, empty, or not
/// above `floor` (Sentry applies a value only when it is larger).
fn duration_option(
    name: &'static str,
    value: Option<&str>,
    floor: Duration,
    default: Duration,
) -> Result<Duration, OptionError> {
    let Some(text) = value.filter(|v| !v.is_empty()) else {
        return Ok(default);
    };
    let parsed = if text.bytes().all(|b| b.is_ascii_digit()) {
        text.parse::<u64>().map(Duration::from_secs).map_err(|e| {
            OptionError::new(name, format!("invalid number of seconds \"{text}\": {e}"))
        })?
    } else {
        crate::go::duration::parse_go_duration(text).map_err(|e| {
            OptionError::new(
                name,
                format!("expected a duration such as 10m or 30s, or a number of seconds: {e}"),
            )
        })?
    };
    Ok(if parsed > floor { parsed } else { default })
}

// ---------------------------------------------------------------------------------------------
// Sources.

/// Where the key set comes from.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// Fetched over HTTPS.
    Https(reqwest::Url),
    /// Fetched over plain HTTP (a warning is logged: anyone on the path can swap the keys).
    Http(reqwest::Url),
    /// Read from a file, and again whenever it changes.
    File(PathBuf),
    /// Given in the options (JSON, or base64 of it), already decoded.
    Inline(Vec<u8>),
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Https(url) | Self::Http(url) => write!(f, "{url}"),
            Self::File(path) => write!(f, "file {}", path.display()),
            Self::Inline(bytes) => write!(f, "inline JWKS ({} bytes)", bytes.len()),
        }
    }
}

impl Source {
    /// Decides what `source` is: a URL by its scheme, then an existing file, then inline JWKS
    /// JSON, then base64 (standard or URL-safe alphabet, padded or not) of JWKS JSON.
    ///
    /// # Errors
    ///
    /// An [`OptionError`] on `source` when it is none of these.
    pub(crate) fn resolve(source: &str) -> Result<Self, OptionError> {
        if source.starts_with("https://") || source.starts_with("http://") {
            let url = reqwest::Url::parse(source)
                .map_err(|e| OptionError::new(OPT_SOURCE, format!("invalid URL: {e}")))?;
            if url.host_str().is_none_or(str::is_empty) {
                return Err(OptionError::new(OPT_SOURCE, "invalid URL: no host"));
            }
            return Ok(if url.scheme() == "https" {
                Self::Https(url)
            } else {
                Self::Http(url)
            });
        }
        let path = Path::new(source);
        if path.is_file() {
            return Ok(Self::File(path.to_path_buf()));
        }
        if source.starts_with('{') {
            return Ok(Self::Inline(source.as_bytes().to_vec()));
        }
        let compact: String = source.split_whitespace().collect();
        type Decode = fn(&str) -> Result<Vec<u8>, base64ct::Error>;
        let decoders: [Decode; 4] = [
            Base64::decode_vec,
            Base64Unpadded::decode_vec,
            Base64Url::decode_vec,
            Base64UrlUnpadded::decode_vec,
        ];
        for decode in decoders {
            if let Ok(decoded) = decode(&compact)
                && decoded.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
            {
                return Ok(Self::Inline(decoded));
            }
        }
        let reason = if source.contains('/') || path.exists() {
            format!("'{source}' is not a regular file (and not a URL, JWKS JSON or base64 of it)")
        } else {
            "not an https:// or http:// URL, an existing file, JWKS JSON, or base64 of JWKS JSON"
                .to_owned()
        };
        Err(OptionError::new(OPT_SOURCE, reason))
    }
}

// ---------------------------------------------------------------------------------------------
// Key sets.

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
struct Shown<'a>(&'a str);

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

/// Seconds since the epoch, for [`KeySet::verify`].
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

// ---------------------------------------------------------------------------------------------
// Start-up.

// ---------------------------------------------------------------------------------------------
// The live validator.

/// The `jwks` validator: the current key set and what keeps it fresh.
pub(crate) struct JwksValidator {
    keys: ArcSwapOption<KeySet>,
    /// Sentry's SPIFFE ID, the audience every token must name.
    audience: String,
    remote: Option<Remote>,
    health: HealthTarget,
    /// Keeps the file watcher of a file source alive.
    watcher: Mutex<Option<notify::RecommendedWatcher>>,
}

impl fmt::Debug for JwksValidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwksValidator")
            .field("audience", &self.audience)
            .field("keys", &self.keys.load().as_deref().map(KeySet::len))
            .field("remote", &self.remote.as_ref().map(|r| r.url.as_str()))
            .finish_non_exhaustive()
    }
}

struct Remote {
    url: reqwest::Url,
    client: reqwest::Client,
    min_refresh_interval: Duration,
    /// When the last fetch started; held across a fetch so concurrent refreshes become one.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
}

impl JwksValidator {
    /// Resolves the source and starts the validator: an inline set or a file is loaded now
    /// (and a file is watched); a URL is fetched in the background, retried until it answers,
    /// then refreshed every 15 minutes (or `minRefreshInterval` when longer) and whenever a
    /// token names an unknown `kid` (at most once per `minRefreshInterval`). `health` is marked ready after the first
    /// successful load. Must run inside a Tokio runtime.
    ///
    /// # Errors
    ///
    /// An [`OptionError`] when the source is unusable, an inline or file set does not parse,
    /// or `caCertificate` cannot be read or holds no certificate.
    pub(crate) fn start(
        options: &JwksOptions,
        audience: String,
        health: HealthTarget,
    ) -> Result<Arc<Self>, OptionError> {
        for name in &options.unknown {
            tracing::warn!(target: SCOPE_SERVER, "jwks validator: ignoring unknown option '{name}'");
        }
        let source = Source::resolve(&options.source)?;
        if options.ca_certificate.is_some() && !matches!(source, Source::Https(_)) {
            tracing::warn!(target: SCOPE_SERVER, "jwks validator: caCertificate is only used with an https:// source; ignoring it");
        }
        let mut remote = None;
        let mut initial = None;
        match &source {
            Source::Https(url) | Source::Http(url) => {
                if matches!(source, Source::Http(_)) {
                    tracing::warn!(target: SCOPE_SERVER, "jwks validator: fetching the JWKS over plain HTTP from {url}; anyone on the network path can replace the keys. Use https://");
                }
                remote = Some(Remote {
                    url: url.clone(),
                    client: http_client(options, matches!(source, Source::Https(_)))?,
                    min_refresh_interval: options.min_refresh_interval,
                    last_fetch: tokio::sync::Mutex::new(None),
                });
            }
            Source::File(path) => {
                let set = read_file_set(path).map_err(|e| {
                    OptionError::new(OPT_SOURCE, format!("{}: {e}", path.display()))
                })?;
                initial = Some(set);
            }
            Source::Inline(bytes) => {
                let set = KeySet::parse(bytes)
                    .map_err(|e| OptionError::new(OPT_SOURCE, format!("inline JWKS: {e}")))?;
                initial = Some(set);
            }
        }
        let validator = Arc::new(Self {
            keys: ArcSwapOption::empty(),
            audience,
            remote,
            health,
            watcher: Mutex::new(None),
        });
        if let Some(set) = initial {
            tracing::info!(target: SCOPE_SERVER, "jwks validator: loaded {} key(s) from {source:?}", set.len());
            validator.install(set);
        }
        match source {
            Source::Https(_) | Source::Http(_) => {
                tokio::spawn(Self::refresh_loop(Arc::downgrade(&validator)));
            }
            Source::File(path) => {
                let watcher = {
                    let weak = Arc::downgrade(&validator);
                    let reloaded = path.clone();
                    watch_file(&path, Wake::OnWrite, FILE_DEBOUNCE, move || {
                        weak.upgrade()
                            .map(|validator| validator.reload_file(&reloaded))
                            .is_some()
                    })
                }
                .map_err(|e| {
                    OptionError::new(OPT_SOURCE, format!("cannot watch {}: {e}", path.display()))
                })?;
                *validator
                    .watcher
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(watcher);
            }
            Source::Inline(_) => {}
        }
        Ok(validator)
    }

    /// True once a key set has been loaded.
    pub(crate) fn is_ready(&self) -> bool {
        self.keys.load().is_some()
    }

    fn install(&self, set: KeySet) {
        self.keys.store(Some(Arc::new(set)));
        self.health.ready();
    }

    /// Verifies `token` for the workload `subject` (its SPIFFE ID). An unknown `kid` triggers
    /// one refresh of a remote set (subject to `minRefreshInterval`) and a second try.
    ///
    /// # Errors
    ///
    /// "jwks validator not ready" before the first load, otherwise the reason the token was
    /// refused (without the "token validation failed: " prefix, which the caller adds).
    pub(crate) async fn verify(&self, token: &str, subject: &str) -> Result<(), VerifyError> {
        let Some(keys) = self.keys.load_full() else {
            return Err(VerifyError::NotReady);
        };
        match keys.verify(token, &self.audience, subject, unix_now()) {
            Err(TokenError::UnknownKid(kid)) if self.remote.is_some() => {
                if self.refresh(true).await {
                    tracing::info!(target: SCOPE_SERVER, "jwks validator: refreshed the key set for an unknown key ID \"{}\"", Shown(&kid));
                }
                let Some(keys) = self.keys.load_full() else {
                    return Err(VerifyError::NotReady);
                };
                keys.verify(token, &self.audience, subject, unix_now())
                    .map_err(|e| VerifyError::Token(e.to_string()))
            }
            other => other.map_err(|e| VerifyError::Token(e.to_string())),
        }
    }

    /// Fetches the remote set unless the last fetch started less than `minRefreshInterval`
    /// ago (always, before the first success, when `initial`). Returns whether a new set was
    /// installed.
    async fn refresh(&self, rate_limited: bool) -> bool {
        let Some(remote) = &self.remote else {
            return false;
        };
        let mut last = remote.last_fetch.lock().await;
        if rate_limited
            && let Some(at) = *last
            && at.elapsed() < remote.min_refresh_interval
        {
            return false;
        }
        *last = Some(Instant::now());
        match remote.fetch().await {
            Ok(set) => {
                tracing::debug!(target: SCOPE_SERVER, "jwks validator: fetched {} key(s) from {}", set.len(), remote.url);
                let first = !self.is_ready();
                self.install(set);
                if first {
                    tracing::info!(target: SCOPE_SERVER, "jwks validator: key set loaded from {}; ready", remote.url);
                }
                true
            }
            Err(e) => {
                if self.is_ready() {
                    tracing::warn!(target: SCOPE_SERVER, "jwks validator: refreshing the key set from {} failed; keeping the previous set: {e}", remote.url);
                } else {
                    tracing::warn!(target: SCOPE_SERVER, "jwks validator: fetching the key set from {} failed; not ready yet: {e}", remote.url);
                }
                false
            }
        }
    }

    /// Loads a remote set until it succeeds, then refreshes it every `minRefreshInterval`.
    /// Ends when the validator is dropped.
    async fn refresh_loop(this: std::sync::Weak<Self>) {
        let mut retry = INITIAL_RETRY;
        loop {
            let Some(validator) = this.upgrade() else {
                return;
            };
            let Some(remote) = &validator.remote else {
                return;
            };
            let min = remote.min_refresh_interval;
            let period = DEFAULT_REFRESH_INTERVAL.max(min);
            let wait = if validator.is_ready() {
                // Due a period after the last fetch (an unknown-kid refresh moves it).
                let last = *remote.last_fetch.lock().await;
                let due = last.map_or(Duration::ZERO, |at| period.saturating_sub(at.elapsed()));
                if due.is_zero() {
                    validator.refresh(true).await;
                    period
                } else {
                    due
                }
            } else if validator.refresh(false).await {
                period
            } else {
                let wait = retry;
                retry = (retry * 2).min(INITIAL_RETRY_MAX.min(min));
                wait
            };
            drop(validator);
            tokio::time::sleep(wait).await;
        }
    }

    fn reload_file(&self, path: &Path) {
        match read_file_set(path) {
            Ok(set) => {
                tracing::info!(target: SCOPE_SERVER, "jwks validator: reloaded {} key(s) from {}", set.len(), path.display());
                self.install(set);
            }
            Err(e) => {
                tracing::warn!(target: SCOPE_SERVER, "jwks validator: reloading {} failed; keeping the previous set: {e}", path.display())
            }
        }
    }
}

/// Why [`JwksValidator::verify`] refused a token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum VerifyError {
    /// No key set loaded yet.
    NotReady,
    /// The token is invalid; the reason.
    Token(String),
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotReady => f.write_str("jwks validator not ready"),
            Self::Token(reason) => write!(f, "token validation failed: {reason}"),
        }
    }
}

impl Remote {
    async fn fetch(&self) -> Result<KeySet, KeySetError> {
        let mut response = self
            .client
            .get(self.url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(KeySetError::Request)?;
        if !response.status().is_success() {
            return Err(KeySetError::HttpStatus(response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(KeySetError::Request)? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(KeySetError::ResponseTooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        KeySet::parse(&body)
    }
}

/// An error with its causes, which is where reqwest puts the useful part ("invalid peer
/// certificate: UnknownIssuer", "connection refused").
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
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

fn http_client(options: &JwksOptions, https: bool) -> Result<reqwest::Client, OptionError> {
    let mut builder = reqwest::Client::builder()
        .timeout(options.request_timeout)
        .connect_timeout(options.request_timeout)
        .user_agent(concat!("warden/", env!("CARGO_PKG_VERSION")))
        .tls_version_min(reqwest::tls::Version::TLS_1_2)
        .no_proxy();
    if https {
        // Never follow a redirect from https to http.
        builder = builder.https_only(true);
        if let Some(ca) = &options.ca_certificate {
            builder = builder.tls_certs_only(ca_certificates(ca)?);
        }
    }
    builder.build().map_err(|e| {
        OptionError::new(
            OPT_SOURCE,
            format!("cannot build the HTTP client: {}", error_chain(&e)),
        )
    })
}

/// The certificates of `caCertificate`, each checked to be X.509 DER; they become the only
/// roots of the fetch.
fn ca_certificates(value: &str) -> Result<Vec<reqwest::Certificate>, OptionError> {
    use der::Decode as _;
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject as _;
    let pem = ca_pem(value)?;
    let mut certs = Vec::new();
    for (index, der) in CertificateDer::pem_slice_iter(&pem).enumerate() {
        let der = der.map_err(|e| OptionError::new(OPT_CA, format!("invalid PEM: {e}")))?;
        x509_cert::Certificate::from_der(&der).map_err(|e| {
            OptionError::new(
                OPT_CA,
                format!("certificate #{}: not X.509: {e}", index + 1),
            )
        })?;
        certs.push(reqwest::Certificate::from_der(&der).map_err(|e| {
            OptionError::new(
                OPT_CA,
                format!("certificate #{}: {}", index + 1, error_chain(&e)),
            )
        })?);
    }
    if certs.is_empty() {
        return Err(OptionError::new(OPT_CA, "no PEM CERTIFICATE block found"));
    }
    Ok(certs)
}

/// `caCertificate` as PEM: the text itself, or the contents of the file it names.
fn ca_pem(value: &str) -> Result<Vec<u8>, OptionError> {
    if value.contains("-----BEGIN") {
        return Ok(value.as_bytes().to_vec());
    }
    let pem = std::fs::read(value).map_err(|e| {
        OptionError::new(
            OPT_CA,
            format!("not PEM text, and cannot read file '{value}': {e}"),
        )
    })?;
    if !pem.windows(10).any(|w| w == b"-----BEGIN") {
        return Err(OptionError::new(
            OPT_CA,
            format!("file '{value}' holds no PEM CERTIFICATE block"),
        ));
    }
    Ok(pem)
}

fn read_file_set(path: &Path) -> Result<KeySet, KeySetError> {
    let bytes = crate::util::files::read_at_most(path, MAX_JWKS_BYTES).map_err(|e| {
        if e.kind() == std::io::ErrorKind::FileTooLarge {
            KeySetError::FileTooLarge(e)
        } else {
            KeySetError::Read(e)
        }
    })?;
    KeySet::parse(&bytes)
}

#[cfg(test)]
mod tests;

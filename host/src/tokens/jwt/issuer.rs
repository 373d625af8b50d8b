//! The JWT issuer: the signing key (`jwt.key`, PKCS#8, generated on first start) and its
//! public key set (`jwks.json`, with retired keys until their tokens expire), reload of a
//! changed key, and token minting for `SignCertificateResponse.jwt` / `per_audience_jwts`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RSA_PKCS1_SHA256,
};
use base64ct::{Base64, Base64UrlUnpadded, Encoding as _};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::settings::{JwtError, JwtSettings, SigningAlgorithm};
use crate::observability::SCOPE_SENTRY;

/// The most `jwt_audiences` one request may carry. Each one costs a signature (its own token in
/// `per_audience_jwts`), so the list is what bounds the signing work of a request; daprd sends the
/// few audiences of `dapr.io/sentry-request-jwt-audiences`.
pub const MAX_JWT_AUDIENCES: usize = 16;
/// The longest `jwt_audiences` entry, in bytes. Cloud audiences are short URIs (GCP's
/// workload identity provider names, the longest, stay under 200 bytes).
pub const MAX_JWT_AUDIENCE_LEN: usize = 512;
/// The most retired public keys kept in `jwks.json`: keys change rarely within one token
/// lifetime, so more can only come from a hostile or broken file.
pub(crate) const MAX_RETIRED_KEYS: usize = 16;
/// The member of a retired key in `jwks.json` that records when it stops being published
/// (Unix seconds). Verifiers ignore unknown JWK members (RFC 7517 §4); the served set omits it.
pub(crate) const RETIRE_AT_MEMBER: &str = "warden_retire_at";
/// The public JWK members kept from `jwks.json`; anything else (private parameters above all)
/// is dropped before a key is published again.
const PUBLIC_JWK_MEMBERS: &[&str] = &["alg", "crv", "e", "kid", "kty", "n", "use", "x", "y"];
/// Members that only a private (or symmetric) key carries.
const PRIVATE_JWK_MEMBERS: &[&str] = &["d", "dp", "dq", "k", "oth", "p", "q", "qi"];

/// Checks `jwt_audiences` against [`MAX_JWT_AUDIENCES`] and [`MAX_JWT_AUDIENCE_LEN`]; the error
/// is the message of the `InvalidArgument` answer.
pub(crate) fn check_audiences(audiences: &[String]) -> Result<(), String> {
    if audiences.len() > MAX_JWT_AUDIENCES {
        return Err(format!(
            "too many jwt_audiences: {} given, at most {MAX_JWT_AUDIENCES} allowed",
            audiences.len()
        ));
    }
    if let Some((i, audience)) = audiences
        .iter()
        .enumerate()
        .find(|(_, a)| a.len() > MAX_JWT_AUDIENCE_LEN)
    {
        return Err(format!(
            "jwt_audiences entry {i} is {} bytes long, at most {MAX_JWT_AUDIENCE_LEN} bytes allowed",
            audience.len()
        ));
    }
    Ok(())
}

enum Pair {
    Rsa(aws_lc_rs::rsa::KeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

/// One signing key with its public JWK.
pub(crate) struct SigningKey {
    pair: Pair,
    algorithm: SigningAlgorithm,
    kid: String,
    jwk: Value,
    /// The PKCS#8 DER, to tell whether the file changed.
    der: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("algorithm", &self.algorithm)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

fn b64url(bytes: &[u8]) -> String {
    Base64UrlUnpadded::encode_string(bytes)
}

impl SigningKey {
    /// A new key for the algorithm (RSA-2048, P-256 or Ed25519).
    pub(crate) fn generate(
        algorithm: SigningAlgorithm,
        key_id: Option<&str>,
    ) -> Result<Self, JwtError> {
        let der: Vec<u8> = match algorithm {
            SigningAlgorithm::Rs256 => {
                aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                    .map_err(|_| JwtError::Backend("RSA key generation"))?
                    .as_der()
                    .map_err(|_| JwtError::Backend("RSA key encoding"))?
                    .as_ref()
                    .to_vec()
            }
            SigningAlgorithm::Es256 => EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                .map_err(|_| JwtError::Backend("P-256 key generation"))?
                .to_pkcs8v1()
                .map_err(|_| JwtError::Backend("P-256 key encoding"))?
                .as_ref()
                .to_vec(),
            SigningAlgorithm::EdDsa => Ed25519KeyPair::generate()
                .map_err(|_| JwtError::Backend("Ed25519 key generation"))?
                .to_pkcs8v1()
                .map_err(|_| JwtError::Backend("Ed25519 key encoding"))?
                .as_ref()
                .to_vec(),
        };
        Self::from_pkcs8(algorithm, Zeroizing::new(der), key_id).map_err(|reason| JwtError::Key {
            path: PathBuf::new(),
            reason,
        })
    }

    /// Parses a PKCS#8 key of the configured algorithm.
    fn from_pkcs8(
        algorithm: SigningAlgorithm,
        der: Zeroizing<Vec<u8>>,
        key_id: Option<&str>,
    ) -> Result<Self, String> {
        let wrong = |what: &str| {
            format!(
                "not a PKCS#8 {what} key, which --jwt-signing-algorithm {} needs",
                algorithm.name()
            )
        };
        let (pair, mut jwk) = match algorithm {
            SigningAlgorithm::Rs256 => {
                let pair = aws_lc_rs::rsa::KeyPair::from_pkcs8(&der).map_err(|_| wrong("RSA"))?;
                if pair.public_modulus_len() < 256 {
                    return Err("RSA key shorter than 2048 bits".into());
                }
                let public = pair.public_key();
                let jwk = json!({
                    "e": b64url(public.exponent().big_endian_without_leading_zero()),
                    "kty": "RSA",
                    "n": b64url(public.modulus().big_endian_without_leading_zero()),
                });
                (Pair::Rsa(pair), jwk)
            }
            SigningAlgorithm::Es256 => {
                let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der)
                    .map_err(|_| wrong("P-256"))?;
                let point = pair.public_key().as_ref();
                let (x, y) = point
                    .get(1..33)
                    .zip(point.get(33..65))
                    .ok_or_else(|| wrong("P-256"))?;
                let jwk = json!({"crv": "P-256", "kty": "EC", "x": b64url(x), "y": b64url(y)});
                (Pair::Ec(pair), jwk)
            }
            SigningAlgorithm::EdDsa => {
                let pair = Ed25519KeyPair::from_pkcs8(&der).map_err(|_| wrong("Ed25519"))?;
                let jwk = json!({"crv": "Ed25519", "kty": "OKP", "x": b64url(pair.public_key().as_ref())});
                (Pair::Ed(pair), jwk)
            }
        };
        // RFC 7638: the required members in lexicographic order, no whitespace; serde_json's
        // map is ordered, so `to_string` of the members above is the canonical form.
        let thumbprint =
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, jwk.to_string().as_bytes());
        let kid = key_id.map_or_else(|| Base64::encode_string(thumbprint.as_ref()), str::to_owned);
        if let Some(map) = jwk.as_object_mut() {
            map.insert("kid".into(), Value::String(kid.clone()));
            map.insert("alg".into(), Value::String(algorithm.name().into()));
            map.insert("use".into(), Value::String("sig".into()));
        }
        Ok(Self {
            pair,
            algorithm,
            kid,
            jwk,
            der,
        })
    }

    #[cfg(test)]
    /// The `kid`.
    pub(crate) fn kid(&self) -> &str {
        &self.kid
    }

    fn pem(&self) -> Result<Zeroizing<String>, JwtError> {
        pem_rfc7468::encode_string("PRIVATE KEY", pem_rfc7468::LineEnding::LF, &self.der)
            .map(Zeroizing::new)
            .map_err(|_| JwtError::Backend("PEM encoding of the JWT key"))
    }

    /// Signs `header.payload` and returns the compact JWS.
    pub(crate) fn sign(&self, claims: &Value) -> Result<String, JwtError> {
        let header = json!({"alg": self.algorithm.name(), "kid": self.kid, "typ": "JWT"});
        let signing_input = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(claims.to_string().as_bytes())
        );
        let rng = SystemRandom::new();
        let signature: Vec<u8> = match &self.pair {
            Pair::Rsa(pair) => {
                let mut sig = vec![0u8; pair.public_modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, &rng, signing_input.as_bytes(), &mut sig)
                    .map_err(|_| JwtError::Backend("RSA signing"))?;
                sig
            }
            Pair::Ec(pair) => pair
                .sign(&rng, signing_input.as_bytes())
                .map_err(|_| JwtError::Backend("ECDSA signing"))?
                .as_ref()
                .to_vec(),
            Pair::Ed(pair) => pair.sign(signing_input.as_bytes()).as_ref().to_vec(),
        };
        Ok(format!("{signing_input}.{}", b64url(&signature)))
    }
}

/// A public key that no longer signs but still verifies tokens until `retire_at` (Unix secs).
#[derive(Clone, Debug)]
struct Retired {
    /// Public members only (see [`PUBLIC_JWK_MEMBERS`]).
    jwk: Value,
    retire_at: u64,
}

#[derive(Debug)]
struct Keys {
    /// Shared, so pruning can rebuild `Keys` without copying the private key.
    current: Arc<SigningKey>,
    retired: Vec<Retired>,
}

impl Keys {
    /// The contents of `jwks.json`: the signing key, then each retired key with its
    /// [`RETIRE_AT_MEMBER`], so a restart knows when to drop it.
    fn file_contents(&self) -> String {
        let mut keys = vec![self.current.jwk.clone()];
        keys.extend(self.retired.iter().map(|r| {
            let mut jwk = r.jwk.clone();
            if let Some(map) = jwk.as_object_mut() {
                map.insert(RETIRE_AT_MEMBER.into(), Value::from(r.retire_at));
            }
            jwk
        }));
        json!({ "keys": keys }).to_string()
    }

    /// The earliest `retire_at` of the retired keys.
    fn next_retirement(&self) -> Option<u64> {
        self.retired.iter().map(|r| r.retire_at).min()
    }
}

/// The JWT-SVID issuer: the live key, the previous public keys, and the settings.
#[derive(Debug)]
pub(crate) struct JwtIssuer {
    pub(super) settings: JwtSettings,
    keys: ArcSwap<Keys>,
    /// Serialises the read-modify-write of `keys` and `jwks.json` (reload and pruning).
    update: std::sync::Mutex<()>,
    /// Signatures made so far: the work requests have caused (for tests and the cap's proof).
    signatures: std::sync::atomic::AtomicU64,
    /// Bounds the minting jobs running at once on the blocking pool, so a flood of requests
    /// queues here instead of starting hundreds of signing threads.
    minting: tokio::sync::Semaphore,
}

fn read_key(settings: &JwtSettings) -> Result<Option<SigningKey>, JwtError> {
    let path = &settings.key_path;
    let text = match std::fs::read(path) {
        Ok(text) => Zeroizing::new(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(JwtError::Key {
                path: path.clone(),
                reason: e.to_string(),
            });
        }
    };
    let bad = |reason: String| JwtError::Key {
        path: path.clone(),
        reason,
    };
    let text = std::str::from_utf8(&text).map_err(|_| bad("not PEM".into()))?;
    let (label, der) = pem_rfc7468::decode_vec(text.trim().as_bytes())
        .map_err(|e| bad(format!("not PEM: {e}")))?;
    if label != "PRIVATE KEY" {
        return Err(bad(format!(
            "PEM block {label:?}, expected \"PRIVATE KEY\" (PKCS#8)"
        )));
    }
    SigningKey::from_pkcs8(
        settings.algorithm,
        Zeroizing::new(der),
        settings.key_id.as_deref(),
    )
    .map(Some)
    .map_err(bad)
}

/// The `keys` of an existing `jwks.json`: `Ok(None)` when there is no file, `Err` (the reason)
/// when it is too big, unreadable or not a key set.
fn read_published(path: &Path) -> Result<Option<Vec<Value>>, String> {
    // Larger than a JWKS document may be: treated as unreadable.
    let bytes = match crate::util::files::read_at_most(path, crate::tokens::jwks::MAX_JWKS_BYTES) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| format!("not JSON: {e}"))?;
    match value.get("keys") {
        Some(Value::Array(keys)) => Ok(Some(keys.clone())),
        _ => Err("no \"keys\" array".into()),
    }
}

fn jwk_kid(jwk: &Value) -> Option<&str> {
    jwk.get("kid").and_then(Value::as_str)
}

/// The retired keys an existing `jwks.json` lists, as they may be published again: public
/// asymmetric keys with a `kid` other than the signing key's, first entry per `kid`, public
/// members only, and a `retire_at` in `(now, now + ttl]`. A key without a readable
/// `retire_at` (a file from Sentry or an older Warden, or the signing key replaced while
/// stopped) retires one TTL from now, and so does one further away than that (no token it
/// signed can outlive it). At most [`MAX_RETIRED_KEYS`] stay: those retiring last. Each entry
/// dropped for any reason but expiry is named in the returned warnings.
fn retired_from_file(
    listed: Vec<Value>,
    current_kid: &str,
    now_secs: u64,
    ttl_secs: u64,
) -> (Vec<Retired>, Vec<String>) {
    let latest = now_secs.saturating_add(ttl_secs);
    let mut warnings = Vec::new();
    let mut retired: Vec<Retired> = Vec::new();
    for (i, entry) in listed.into_iter().enumerate() {
        let Some(map) = entry.as_object() else {
            warnings.push(format!("entry {i} is not a JSON object: dropped"));
            continue;
        };
        let Some(kid) = jwk_kid(&entry) else {
            warnings.push(format!("entry {i} has no \"kid\": dropped"));
            continue;
        };
        if kid == current_kid || retired.iter().any(|r| jwk_kid(&r.jwk) == Some(kid)) {
            continue;
        }
        if PRIVATE_JWK_MEMBERS.iter().any(|m| map.contains_key(*m)) {
            warnings.push(format!(
                "key {kid:?} carries private or symmetric key material: dropped"
            ));
            continue;
        }
        if !matches!(
            map.get("kty").and_then(Value::as_str),
            Some("RSA" | "EC" | "OKP")
        ) {
            warnings.push(format!("key {kid:?} is not an RSA, EC or OKP key: dropped"));
            continue;
        }
        let retire_at = match map.get(RETIRE_AT_MEMBER).and_then(Value::as_u64) {
            Some(at) if at <= now_secs => continue,
            Some(at) if at <= latest => at,
            Some(_) => {
                warnings.push(format!(
                    "key {kid:?} was to be published beyond one --jwt-ttl from now: retiring it at {latest}"
                ));
                latest
            }
            None => latest,
        };
        let jwk: serde_json::Map<String, Value> = map
            .iter()
            .filter(|(name, _)| PUBLIC_JWK_MEMBERS.contains(&name.as_str()))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        retired.push(Retired {
            jwk: Value::Object(jwk),
            retire_at,
        });
    }
    if retired.len() > MAX_RETIRED_KEYS {
        warnings.push(format!(
            "{} retired keys listed, keeping the {MAX_RETIRED_KEYS} retiring last",
            retired.len()
        ));
        retired.sort_by_key(|r| std::cmp::Reverse(r.retire_at));
        retired.truncate(MAX_RETIRED_KEYS);
    }
    (retired, warnings)
}

impl JwtIssuer {
    /// Loads `jwt.key` (checking it matches the algorithm) or generates it when missing,
    /// and writes `jwks.json`: the current key plus the retired keys it already listed, each
    /// kept until the `retire_at` recorded there (see `retired_from_file`), so restarts never
    /// extend how long a retired key is published.
    pub(crate) fn load_or_generate(settings: JwtSettings, now_secs: u64) -> Result<Self, JwtError> {
        let (current, generated) = match read_key(&settings)? {
            Some(key) => (key, false),
            None => (
                SigningKey::generate(settings.algorithm, settings.key_id.as_deref())?,
                true,
            ),
        };
        let path = settings.jwks_path.display();
        let listed = match read_published(&settings.jwks_path) {
            Ok(listed) => listed.unwrap_or_default(),
            Err(reason) => {
                tracing::warn!(target: SCOPE_SENTRY, "JWKS file {path} is unusable ({reason}); rewriting it with the signing key only");
                Vec::new()
            }
        };
        let (retired, warnings) =
            retired_from_file(listed, &current.kid, now_secs, settings.ttl.as_secs());
        for warning in warnings {
            tracing::warn!(target: SCOPE_SENTRY, "JWKS file {path}: {warning}");
        }
        let keys = Keys {
            current: Arc::new(current),
            retired,
        };
        let contents = keys.file_contents();
        if generated {
            tracing::info!(target: SCOPE_SENTRY, "JWT signing key not found: generating a new {} key", settings.algorithm.name());
            crate::util::files::write_files_atomically(&[
                (&settings.key_path, keys.current.pem()?.as_bytes()),
                (&settings.jwks_path, contents.as_bytes()),
            ])?;
        } else if std::fs::read(&settings.jwks_path).ok().as_deref() != Some(contents.as_bytes()) {
            crate::util::files::write_files_atomically(&[(
                &settings.jwks_path,
                contents.as_bytes(),
            )])?;
        }
        tracing::info!(target: SCOPE_SENTRY, "JWT signing key ready (alg {}, kid {})", settings.algorithm.name(), keys.current.kid);
        let parallelism = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        Ok(Self {
            settings,
            keys: ArcSwap::from_pointee(keys),
            update: std::sync::Mutex::new(()),
            signatures: std::sync::atomic::AtomicU64::new(0),
            minting: tokio::sync::Semaphore::new(parallelism),
        })
    }

    #[cfg(test)]
    /// The `kid` of the signing key.
    pub(crate) fn current_kid(&self) -> String {
        self.keys.load().current.kid.clone()
    }

    #[cfg(test)]
    /// How many tokens have been signed since the start.
    pub(crate) fn signatures(&self) -> u64 {
        self.signatures.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The JWKS to publish: the signing key and every retired key still valid at `now_secs`,
    /// with public members only.
    pub(crate) fn jwks(&self, now_secs: u64) -> Value {
        let keys = self.keys.load();
        let mut list = vec![keys.current.jwk.clone()];
        list.extend(
            keys.retired
                .iter()
                .filter(|r| r.retire_at > now_secs)
                .map(|r| r.jwk.clone()),
        );
        json!({ "keys": list })
    }

    /// When the next retired key is due to be dropped (Unix secs).
    pub(crate) fn next_retirement(&self) -> Option<u64> {
        self.keys.load().next_retirement()
    }

    /// Drops the retired keys whose time has come from memory and from `jwks.json`. Returns
    /// whether any was dropped.
    pub(crate) fn prune(&self, now_secs: u64) -> Result<bool, JwtError> {
        let _guard = self
            .update
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let old = self.keys.load_full();
        if old.retired.iter().all(|r| r.retire_at > now_secs) {
            return Ok(false);
        }
        let keys = Keys {
            current: Arc::clone(&old.current),
            retired: old
                .retired
                .iter()
                .filter(|r| r.retire_at > now_secs)
                .cloned()
                .collect(),
        };
        crate::util::files::write_files_atomically(&[(
            &self.settings.jwks_path,
            keys.file_contents().as_bytes(),
        )])?;
        tracing::info!(target: SCOPE_SENTRY, "Retired JWT signing keys dropped from the JWKS; {} left", keys.retired.len());
        self.keys.store(Arc::new(keys));
        Ok(true)
    }

    /// Re-reads `jwt.key`; when it holds a different key, signs with it from now on and keeps
    /// the previous public key published for one token lifetime. Returns whether it changed.
    /// A missing or bad file keeps the current key (and is an error).
    pub(crate) fn reload(&self, now_secs: u64) -> Result<bool, JwtError> {
        let new = read_key(&self.settings)?.ok_or_else(|| JwtError::Key {
            path: self.settings.key_path.clone(),
            reason: "missing".into(),
        })?;
        let _guard = self
            .update
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let old = self.keys.load_full();
        if *new.der == *old.current.der {
            return Ok(false);
        }
        let retire_at = now_secs.saturating_add(self.settings.ttl.as_secs());
        let mut retired: Vec<Retired> = old
            .retired
            .iter()
            .filter(|r| r.retire_at > now_secs && jwk_kid(&r.jwk) != Some(new.kid.as_str()))
            .cloned()
            .collect();
        if old.current.kid == new.kid {
            // A fixed --jwt-key-id names both keys: verifiers pick keys by kid, so the old
            // key cannot stay published beside the new one.
            tracing::warn!(target: SCOPE_SENTRY, "The new JWT key has the same kid {} as the previous one (--jwt-key-id); tokens signed with the previous key no longer verify", new.kid);
        } else {
            retired.push(Retired {
                jwk: old.current.jwk.clone(),
                retire_at,
            });
        }
        if retired.len() > MAX_RETIRED_KEYS {
            retired.sort_by_key(|r| std::cmp::Reverse(r.retire_at));
            retired.truncate(MAX_RETIRED_KEYS);
        }
        let keys = Keys {
            current: Arc::new(new),
            retired,
        };
        crate::util::files::write_files_atomically(&[(
            &self.settings.jwks_path,
            keys.file_contents().as_bytes(),
        )])?;
        tracing::warn!(target: SCOPE_SENTRY, "JWT signing key changed; now signing with kid {}", keys.current.kid);
        self.keys.store(Arc::new(keys));
        Ok(true)
    }

    /// A JWT-SVID for `sub`: `aud` as given, `iat` now, `nbf` now − skew, `exp` now + TTL,
    /// a random 32-hex `jti`, `use: "sig"`, and `iss` when configured.
    pub(crate) fn mint(
        &self,
        sub: &str,
        audiences: &[&str],
        now_secs: u64,
        skew: Duration,
    ) -> Result<String, JwtError> {
        let mut jti = [0u8; 16];
        aws_lc_rs::rand::fill(&mut jti).map_err(|_| JwtError::Backend("random jti"))?;
        let mut claims = json!({
            "aud": audiences,
            "exp": now_secs.saturating_add(self.settings.ttl.as_secs()),
            "iat": now_secs,
            "jti": jti.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            "nbf": now_secs.saturating_sub(skew.as_secs()),
            "sub": sub,
            "use": "sig",
        });
        if let (Some(iss), Some(map)) = (&self.settings.issuer, claims.as_object_mut()) {
            map.insert("iss".into(), Value::String(iss.clone()));
        }
        self.signatures
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.keys.load().current.sign(&claims)
    }
}

/// The tokens of one response: `jwt` and `per_audience_jwts`.
pub(crate) type ResponseTokens = (Option<String>, std::collections::HashMap<String, String>);

/// The response's `jwt` (audiences: the SVID's trust domain, then the requested ones) and
/// `per_audience_jwts` (one token per distinct requested audience, carrying only it). The
/// caller has checked `audiences` with [`check_audiences`], which bounds the signatures to
/// `1 + MAX_JWT_AUDIENCES`.
pub(crate) fn mint_for_response(
    issuer: &JwtIssuer,
    spiffe_id: &str,
    trust_domain: &str,
    audiences: &[String],
    now_secs: u64,
    skew: Duration,
) -> Result<ResponseTokens, JwtError> {
    let mut all: Vec<&str> = vec![trust_domain];
    all.extend(audiences.iter().map(String::as_str));
    let jwt = issuer.mint(spiffe_id, &all, now_secs, skew)?;
    let mut per_audience = std::collections::HashMap::new();
    for audience in audiences {
        if !per_audience.contains_key(audience) {
            let token = issuer.mint(spiffe_id, &[audience.as_str()], now_secs, skew)?;
            per_audience.insert(audience.clone(), token);
        }
    }
    Ok((Some(jwt), per_audience))
}

/// [`mint_for_response`] on tokio's blocking pool, at most one job per core at a time: an RSA
/// signature costs about as much as a whole certificate request, so a request with many
/// audiences must not hold an async worker that other connections need.
pub(crate) async fn mint_for_response_off_workers(
    issuer: &Arc<JwtIssuer>,
    spiffe_id: String,
    trust_domain: String,
    audiences: Vec<String>,
    now_secs: u64,
    skew: Duration,
) -> Result<ResponseTokens, JwtError> {
    let _permit = issuer
        .minting
        .acquire()
        .await
        .map_err(|_| JwtError::Backend("JWT signing queue"))?;
    let issuer = Arc::clone(issuer);
    tokio::task::spawn_blocking(move || {
        mint_for_response(
            &issuer,
            &spiffe_id,
            &trust_domain,
            &audiences,
            now_secs,
            skew,
        )
    })
    .await
    .map_err(|_| JwtError::Backend("JWT signing task"))?
}

/// Drops retired keys from the JWKS and `jwks.json` as their time comes: wakes at the next
/// `retire_at`, and at least every minute to see keys a reload has retired since.
pub(super) async fn prune_retired_keys(issuer: Arc<JwtIssuer>) {
    loop {
        let now = crate::util::clock::now().as_secs();
        let wait = issuer
            .next_retirement()
            .map_or(60, |at| at.saturating_sub(now).clamp(1, 60));
        tokio::time::sleep(Duration::from_secs(wait)).await;
        if let Err(e) = issuer.prune(crate::util::clock::now().as_secs()) {
            tracing::error!(target: SCOPE_SENTRY, "Failed to drop retired JWT keys from the JWKS file: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation, decode, jwk::JwkSet};

    use super::super::settings::JWKS_FILENAME;
    use super::super::settings::tests::settings;

    fn verify(jwks: &Value, token: &str) -> Value {
        let set: JwkSet = serde_json::from_value(jwks.clone()).unwrap();
        let header = jsonwebtoken::decode_header(token).unwrap();
        let jwk = set.find(header.kid.as_deref().unwrap()).unwrap();
        let key = DecodingKey::from_jwk(jwk).unwrap();
        let mut validation = Validation::new(header.alg);
        validation.set_audience(&["td"]);
        decode::<Value>(token, &key, &validation).unwrap().claims
    }

    #[test]
    fn generated_keys_sign_tokens_that_verify_against_the_jwks() {
        for alg in [
            SigningAlgorithm::Rs256,
            SigningAlgorithm::Es256,
            SigningAlgorithm::EdDsa,
        ] {
            let dir = tempfile::tempdir().unwrap();
            let now = crate::util::clock::now().as_secs();
            let issuer = JwtIssuer::load_or_generate(settings(dir.path(), alg), now).unwrap();
            let token = issuer
                .mint(
                    "spiffe://td/ns/default/app",
                    &["td", "x"],
                    now,
                    Duration::from_secs(900),
                )
                .unwrap();
            let claims = verify(&issuer.jwks(now), &token);
            assert_eq!(claims["sub"], "spiffe://td/ns/default/app");
            assert_eq!(claims["aud"], json!(["td", "x"]));
            assert_eq!(claims["nbf"], now - 900);
            assert_eq!(claims["exp"], now + 3600);
            assert_eq!(claims["iss"], "https://issuer.example");
            assert_eq!(claims["jti"].as_str().unwrap().len(), 32);
            // The same key comes back on the next start, and jwks.json is the published set.
            let again = JwtIssuer::load_or_generate(settings(dir.path(), alg), now).unwrap();
            assert_eq!(again.current_kid(), issuer.current_kid());
            let on_disk: Value =
                serde_json::from_slice(&std::fs::read(dir.path().join(JWKS_FILENAME)).unwrap())
                    .unwrap();
            assert_eq!(on_disk, issuer.jwks(now));
        }
    }

    #[test]
    fn thumbprint_matches_rfc7638_example() {
        // RFC 7638 §3.1: the thumbprint of the example RSA key, here base64 std as Sentry.
        let jwk = json!({"e": "AQAB", "kty": "RSA", "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"});
        let digest =
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, jwk.to_string().as_bytes());
        assert_eq!(
            b64url(digest.as_ref()),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn wrong_algorithm_for_the_key_on_disk_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        JwtIssuer::load_or_generate(settings(dir.path(), SigningAlgorithm::Es256), 0).unwrap();
        let err = JwtIssuer::load_or_generate(settings(dir.path(), SigningAlgorithm::Rs256), 0)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a PKCS#8 RSA key"), "{err}");
    }

    #[test]
    fn reload_keeps_the_old_key_published_until_its_tokens_expire() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path(), SigningAlgorithm::Es256);
        let issuer = JwtIssuer::load_or_generate(s.clone(), 1000).unwrap();
        let old = issuer
            .mint("spiffe://td/ns/a/b", &["td"], 1000, Duration::ZERO)
            .unwrap();
        assert!(!issuer.reload(1000).unwrap());
        let fresh = SigningKey::generate(SigningAlgorithm::Es256, None).unwrap();
        crate::util::files::write_files_atomically(&[(
            &s.key_path,
            fresh.pem().unwrap().as_bytes(),
        )])
        .unwrap();
        assert!(issuer.reload(1100).unwrap());
        assert_eq!(issuer.current_kid(), fresh.kid());
        let jwks = issuer.jwks(1100);
        assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
        let set: JwkSet = serde_json::from_value(jwks).unwrap();
        assert!(
            set.find(&jsonwebtoken::decode_header(&old).unwrap().kid.unwrap())
                .is_some()
        );
        // One TTL after the change, only the new key is left.
        assert_eq!(
            issuer.jwks(1100 + 3600)["keys"].as_array().unwrap().len(),
            1
        );
        // A restart keeps the old key listed in jwks.json.
        let restarted = JwtIssuer::load_or_generate(s, 1200).unwrap();
        assert_eq!(restarted.jwks(1200)["keys"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn audience_caps_name_the_limit() {
        let ok: Vec<String> = (0..MAX_JWT_AUDIENCES)
            .map(|i| format!("{i}").repeat(MAX_JWT_AUDIENCE_LEN))
            .map(|a| a.chars().take(MAX_JWT_AUDIENCE_LEN).collect())
            .collect();
        check_audiences(&ok).unwrap();
        let mut many = ok.clone();
        many.push("one-more".into());
        assert_eq!(
            check_audiences(&many).unwrap_err(),
            format!(
                "too many jwt_audiences: {} given, at most {MAX_JWT_AUDIENCES} allowed",
                MAX_JWT_AUDIENCES + 1
            )
        );
        let long = vec!["a".into(), "x".repeat(MAX_JWT_AUDIENCE_LEN + 1)];
        assert_eq!(
            check_audiences(&long).unwrap_err(),
            format!(
                "jwt_audiences entry 1 is {} bytes long, at most {MAX_JWT_AUDIENCE_LEN} bytes allowed",
                MAX_JWT_AUDIENCE_LEN + 1
            )
        );
        // Within the cap, the work is one token plus one per distinct audience.
        let dir = tempfile::tempdir().unwrap();
        let issuer =
            JwtIssuer::load_or_generate(settings(dir.path(), SigningAlgorithm::EdDsa), 0).unwrap();
        let mut repeated = ok.clone();
        repeated.truncate(4);
        repeated.extend(repeated.clone());
        let (_, per) = mint_for_response(
            &issuer,
            "spiffe://td/ns/a/b",
            "td",
            &repeated,
            0,
            Duration::ZERO,
        )
        .unwrap();
        assert_eq!(per.len(), 4);
        assert_eq!(issuer.signatures(), 5);
    }

    fn jwks_file(dir: &Path) -> Value {
        serde_json::from_slice(&std::fs::read(dir.join(JWKS_FILENAME)).unwrap()).unwrap()
    }

    fn retire_at_of(file: &Value, kid: &str) -> Option<u64> {
        file["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == kid)
            .map(|k| k[RETIRE_AT_MEMBER].as_u64().unwrap())
    }

    /// Defect 6: a restart within the TTL keeps the recorded retire_at instead of extending
    /// it, and the key is gone (from memory and jwks.json) once that time has passed, whether
    /// by pruning while running or at the next start. Time is injected.
    #[test]
    fn retired_keys_keep_their_retire_at_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path(), SigningAlgorithm::Es256); // ttl 3600
        let issuer = JwtIssuer::load_or_generate(s.clone(), 1000).unwrap();
        let old_kid = issuer.current_kid();
        let fresh = SigningKey::generate(SigningAlgorithm::Es256, None).unwrap();
        crate::util::files::write_files_atomically(&[(
            &s.key_path,
            fresh.pem().unwrap().as_bytes(),
        )])
        .unwrap();
        assert!(issuer.reload(1100).unwrap());
        assert_eq!(retire_at_of(&jwks_file(dir.path()), &old_kid), Some(4700));
        assert_eq!(issuer.next_retirement(), Some(4700));
        // The served set carries no bookkeeping member.
        assert!(!issuer.jwks(1100).to_string().contains(RETIRE_AT_MEMBER));
        // Restarts within the TTL, each later than the last: retire_at stays 4700.
        for now in [1200, 3000, 4699] {
            let restarted = JwtIssuer::load_or_generate(s.clone(), now).unwrap();
            assert_eq!(
                restarted.jwks(now)["keys"].as_array().unwrap().len(),
                2,
                "at {now}"
            );
            assert_eq!(
                retire_at_of(&jwks_file(dir.path()), &old_kid),
                Some(4700),
                "at {now}"
            );
        }
        // Pruning while running drops it from memory and disk at 4700, not before.
        let running = JwtIssuer::load_or_generate(s.clone(), 4000).unwrap();
        assert!(!running.prune(4699).unwrap());
        assert!(running.prune(4700).unwrap());
        assert_eq!(running.next_retirement(), None);
        assert_eq!(retire_at_of(&jwks_file(dir.path()), &old_kid), None);
        assert_eq!(running.jwks(4700)["keys"].as_array().unwrap().len(), 1);
        // A start after retire_at drops it too (file restored to the state before pruning).
        let mut file = jwks_file(dir.path());
        let mut old = issuer.jwks(1100)["keys"][1].clone();
        old[RETIRE_AT_MEMBER] = json!(4700);
        file["keys"].as_array_mut().unwrap().push(old);
        std::fs::write(dir.path().join(JWKS_FILENAME), file.to_string()).unwrap();
        let late = JwtIssuer::load_or_generate(s, 4701).unwrap();
        assert_eq!(late.jwks(0)["keys"].as_array().unwrap().len(), 1);
        assert_eq!(retire_at_of(&jwks_file(dir.path()), &old_kid), None);
    }

    /// A hostile or broken jwks.json neither stops the start nor keeps a key published beyond
    /// one TTL, and private key material in it is never published.
    #[test]
    fn hostile_jwks_files_neither_crash_nor_publish_forever() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path(), SigningAlgorithm::EdDsa); // ttl 3600
        let current = JwtIssuer::load_or_generate(s.clone(), 0)
            .unwrap()
            .current_kid();
        let other = |kid: &str| json!({"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": kid});
        let write =
            |contents: &str| std::fs::write(dir.path().join(JWKS_FILENAME), contents).unwrap();
        let start = |now: u64| JwtIssuer::load_or_generate(s.clone(), now).unwrap();
        let kids = |issuer: &JwtIssuer| -> Vec<String> {
            issuer.jwks(1000)["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k["kid"].as_str().unwrap().to_owned())
                .collect()
        };
        // Malformed files: the signing key only, and the file is rewritten.
        for bad in ["", "{", "[]", "{\"keys\": 5}", "null", "\u{feff}{}"] {
            write(bad);
            let issuer = start(1000);
            assert_eq!(kids(&issuer), std::slice::from_ref(&current), "{bad:?}");
            assert_eq!(jwks_file(dir.path())["keys"].as_array().unwrap().len(), 1);
        }
        // Too big to read.
        write(&format!(
            "{{\"keys\": [], \"pad\": \"{}\"}}",
            "x".repeat(2 << 20)
        ));
        assert_eq!(kids(&start(1000)), std::slice::from_ref(&current));
        // No retire_at (or a useless one): one TTL from this start, written down, so a
        // later start does not extend it.
        for retire_at in [Value::Null, json!("soon"), json!(-5), json!(1.5e300)] {
            let mut key = other("old");
            if !retire_at.is_null() {
                key[RETIRE_AT_MEMBER] = retire_at.clone();
            }
            write(&json!({"keys": [key]}).to_string());
            start(1000);
            assert_eq!(
                retire_at_of(&jwks_file(dir.path()), "old"),
                Some(4600),
                "{retire_at}"
            );
            start(2000);
            assert_eq!(
                retire_at_of(&jwks_file(dir.path()), "old"),
                Some(4600),
                "{retire_at}"
            );
            assert_eq!(kids(&start(4600)), std::slice::from_ref(&current));
        }
        // Far in the future: clamped to one TTL from now.
        let mut key = other("old");
        key[RETIRE_AT_MEMBER] = json!(u64::MAX);
        write(&json!({"keys": [key]}).to_string());
        start(1000);
        assert_eq!(retire_at_of(&jwks_file(dir.path()), "old"), Some(4600));
        // Private or symmetric material, unknown key types, entries without kid: dropped; the
        // public members of a good key are all that is published.
        let mut private = other("private");
        private["d"] = json!("secret");
        let symmetric = json!({"kty": "oct", "k": "c2VjcmV0", "kid": "oct"});
        let mut extra = other("extra");
        extra["x5u"] = json!("https://evil.example/x");
        write(&json!({"keys": [private, symmetric, {"kty": "OKP"}, 7, extra]}).to_string());
        let issuer = start(1000);
        assert_eq!(kids(&issuer), [current.clone(), "extra".into()]);
        let text = std::fs::read_to_string(dir.path().join(JWKS_FILENAME)).unwrap();
        assert!(
            !text.contains("secret") && !text.contains("c2VjcmV0") && !text.contains("x5u"),
            "{text}"
        );
        // Thousands of keys: the MAX_RETIRED_KEYS retiring last are kept.
        let many: Vec<Value> = (0..5000u64)
            .map(|i| {
                let mut key = other(&format!("k{i}"));
                key[RETIRE_AT_MEMBER] = json!(1001 + i % 3000);
                key
            })
            .collect();
        write(&json!({"keys": many}).to_string());
        let issuer = start(1000);
        let published = kids(&issuer);
        assert_eq!(published.len(), 1 + MAX_RETIRED_KEYS);
        assert!(
            published[1..].iter().all(|k| {
                let i: u64 = k[1..].parse().unwrap();
                1001 + i % 3000 > 4000 - MAX_RETIRED_KEYS as u64
            }),
            "{published:?}"
        );
    }
}

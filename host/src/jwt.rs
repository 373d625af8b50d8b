//! JWT-SVIDs and OIDC discovery (Sentry 1.16+, spec §1 fields 4–5 and §4 "JWT/OIDC"):
//! Sentry's `--jwt-*` and `--oidc-*` flags, the signing key (`jwt.key`, PKCS#8, generated
//! on first start) and its public key set (`jwks.json`), token minting for
//! `SignCertificateResponse.jwt` / `per_audience_jwts`, and the OIDC discovery server.
//!
//! Signing goes through aws-lc-rs, the backend `jsonwebtoken` uses in [`crate::jwks`].
//! A key change (a new `jwt.key` on disk) keeps the previous public keys in `jwks.json` and
//! in the served JWKS for `--jwt-ttl` after the change was seen, so every token signed with
//! the old key still verifies until it has expired.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RSA_PKCS1_SHA256,
};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::observability::SCOPE_SENTRY;

/// Sentry's default JWT key file name.
pub const JWT_KEY_FILENAME: &str = "jwt.key";
/// Sentry's default public key set file name.
pub const JWKS_FILENAME: &str = "jwks.json";

/// Sentry's JWT and OIDC flags (spec §4), flattened into `ServeArgs`.
#[derive(Clone, Debug, clap::Args)]
pub struct JwtArgs {
    /// Return a JWT-SVID (and per-audience JWTs) with every certificate.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub jwt_enabled: bool,
    /// JWT signing key file (PKCS#8 PEM), generated on first start when missing. A relative
    /// name is joined to --issuer-credentials.
    #[arg(long, default_value = JWT_KEY_FILENAME)]
    pub jwt_key_filename: String,
    /// Public key set file (JSON Web Key Set) written beside the key.
    #[arg(long, default_value = JWKS_FILENAME)]
    pub jwks_filename: String,
    /// `iss` claim of every token (and the OIDC issuer); empty means no `iss`.
    #[arg(long, default_value = "")]
    pub jwt_issuer: String,
    /// RS256 (RSA-2048), ES256 (P-256) or EdDSA (Ed25519).
    #[arg(long, default_value = "RS256")]
    pub jwt_signing_algorithm: String,
    /// `kid` of the signing key; empty means the RFC 7638 JWK thumbprint (base64 std of SHA-256).
    #[arg(long, default_value = "")]
    pub jwt_key_id: String,
    /// Lifetime of a token (Go duration).
    #[arg(long, default_value = "24h")]
    pub jwt_ttl: String,
    /// Serve OIDC discovery (needs --jwt-enabled).
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub oidc_enabled: bool,
    /// Port of the OIDC discovery server.
    #[arg(long, default_value_t = 9080)]
    pub oidc_server_listen_port: u16,
    /// Address of the OIDC discovery server.
    #[arg(long, default_value = "localhost")]
    pub oidc_server_listen_address: String,
    /// Serve OIDC over HTTPS (then the cert and key files are required).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub oidc_server_tls_enabled: bool,
    /// PEM certificate chain of the OIDC server.
    #[arg(long, default_value = "")]
    pub oidc_server_tls_cert_file: String,
    /// PEM private key of the OIDC server.
    #[arg(long, default_value = "")]
    pub oidc_server_tls_key_file: String,
    /// `jwks_uri` of the discovery document; empty means `<scheme>://<host><prefix>/jwks.json`.
    #[arg(long, default_value = "")]
    pub oidc_jwks_uri: String,
    /// Path prefix of both OIDC endpoints.
    #[arg(long, default_value = "")]
    pub oidc_path_prefix: String,
    /// Host headers the OIDC server answers (comma-separated or repeated); empty means any.
    #[arg(long, value_delimiter = ',')]
    pub oidc_allowed_hosts: Vec<String>,
}

/// The signing algorithm of the JWT key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SigningAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256, RSA-2048 keys.
    Rs256,
    /// ECDSA P-256 with SHA-256.
    Es256,
    /// Ed25519.
    EdDsa,
}

impl SigningAlgorithm {
    /// Parses the flag value (JOSE names, as Sentry).
    pub fn parse(name: &str) -> Result<Self, JwtError> {
        match name {
            "RS256" => Ok(Self::Rs256),
            "ES256" => Ok(Self::Es256),
            "EdDSA" => Ok(Self::EdDsa),
            other => Err(JwtError::Config(format!(
                "unsupported --jwt-signing-algorithm {other:?}: expected RS256, ES256 or EdDSA"
            ))),
        }
    }

    /// The JOSE `alg` name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Rs256 => "RS256",
            Self::Es256 => "ES256",
            Self::EdDsa => "EdDSA",
        }
    }
}

/// What went wrong with the JWT key or a token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JwtError {
    /// A flag is wrong.
    #[error("{0}")]
    Config(String),
    /// The key file cannot be read or does not hold a usable key.
    #[error("JWT key {path}: {reason}")]
    Key {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Writing the key or key set failed.
    #[error("{0}")]
    Write(#[from] crate::fsutil::WriteError),
    /// The crypto backend failed.
    #[error("{0} failed")]
    Backend(&'static str),
}

/// The validated JWT settings.
#[derive(Clone, Debug)]
pub struct JwtSettings {
    /// `jwt.key`.
    pub key_path: PathBuf,
    /// `jwks.json`.
    pub jwks_path: PathBuf,
    /// `iss`, when configured.
    pub issuer: Option<String>,
    /// Key algorithm.
    pub algorithm: SigningAlgorithm,
    /// `--jwt-key-id`, when set.
    pub key_id: Option<String>,
    /// Token lifetime.
    pub ttl: Duration,
}

impl JwtArgs {
    /// Checks the flags; `None` when JWTs are disabled.
    pub fn settings(&self, credentials_dir: &Path) -> Result<Option<JwtSettings>, JwtError> {
        if !self.jwt_enabled {
            if !self.jwt_issuer.is_empty() {
                return Err(JwtError::Config(
                    "--jwt-issuer is set but --jwt-enabled is false".into(),
                ));
            }
            return Ok(None);
        }
        let ttl = crate::config::parse_go_duration(&self.jwt_ttl)
            .map_err(|e| JwtError::Config(format!("invalid --jwt-ttl: {e}")))?;
        if ttl.is_zero() {
            return Err(JwtError::Config("--jwt-ttl must be positive".into()));
        }
        Ok(Some(JwtSettings {
            key_path: credentials_dir.join(&self.jwt_key_filename),
            jwks_path: credentials_dir.join(&self.jwks_filename),
            issuer: (!self.jwt_issuer.is_empty()).then(|| self.jwt_issuer.clone()),
            algorithm: SigningAlgorithm::parse(&self.jwt_signing_algorithm)?,
            key_id: (!self.jwt_key_id.is_empty()).then(|| self.jwt_key_id.clone()),
            ttl,
        }))
    }
}

enum Pair {
    Rsa(aws_lc_rs::rsa::KeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

/// One signing key with its public JWK.
pub struct SigningKey {
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
    URL_SAFE_NO_PAD.encode(bytes)
}

impl SigningKey {
    /// A new key for the algorithm (RSA-2048, P-256 or Ed25519).
    pub fn generate(algorithm: SigningAlgorithm, key_id: Option<&str>) -> Result<Self, JwtError> {
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
        let kid = key_id.map_or_else(|| STANDARD.encode(thumbprint.as_ref()), str::to_owned);
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

    /// The `kid`.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public JWK (with `kid`, `alg`, `use`).
    pub fn jwk(&self) -> &Value {
        &self.jwk
    }

    fn pem(&self) -> Result<Zeroizing<String>, JwtError> {
        pem_rfc7468::encode_string("PRIVATE KEY", pem_rfc7468::LineEnding::LF, &self.der)
            .map(Zeroizing::new)
            .map_err(|_| JwtError::Backend("PEM encoding of the JWT key"))
    }

    /// Signs `header.payload` and returns the compact JWS.
    pub fn sign(&self, claims: &Value) -> Result<String, JwtError> {
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
    jwk: Value,
    retire_at: u64,
}

#[derive(Debug)]
struct Keys {
    current: SigningKey,
    retired: Vec<Retired>,
}

impl Keys {
    fn jwks(&self) -> Value {
        let mut keys = vec![self.current.jwk.clone()];
        keys.extend(self.retired.iter().map(|r| r.jwk.clone()));
        json!({ "keys": keys })
    }
}

/// The JWT-SVID issuer: the live key, the previous public keys, and the settings.
#[derive(Debug)]
pub struct JwtIssuer {
    settings: JwtSettings,
    keys: ArcSwap<Keys>,
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

/// The public keys listed in an existing `jwks.json` (empty when missing or unreadable).
fn read_published(path: &Path) -> Vec<Value> {
    std::fs::read(path)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        .and_then(|v| v.get("keys").and_then(Value::as_array).cloned())
        .unwrap_or_default()
}

fn jwk_kid(jwk: &Value) -> Option<&str> {
    jwk.get("kid").and_then(Value::as_str)
}

impl JwtIssuer {
    /// Loads `jwt.key` (checking it matches the algorithm) or generates it when missing,
    /// and writes `jwks.json`: the current key plus the keys it already listed, which stay
    /// for one token lifetime from `now_secs`.
    pub fn load_or_generate(settings: JwtSettings, now_secs: u64) -> Result<Self, JwtError> {
        let (current, generated) = match read_key(&settings)? {
            Some(key) => (key, false),
            None => (
                SigningKey::generate(settings.algorithm, settings.key_id.as_deref())?,
                true,
            ),
        };
        let retire_at = now_secs.saturating_add(settings.ttl.as_secs());
        let retired = read_published(&settings.jwks_path)
            .into_iter()
            .filter(|jwk| jwk_kid(jwk).is_some_and(|kid| kid != current.kid))
            .map(|jwk| Retired { jwk, retire_at })
            .collect();
        let keys = Keys { current, retired };
        let jwks = keys.jwks().to_string();
        if generated {
            tracing::info!(target: SCOPE_SENTRY, "JWT signing key not found: generating a new {} key", settings.algorithm.name());
            crate::fsutil::write_files_atomically(&[
                (&settings.key_path, keys.current.pem()?.as_bytes()),
                (&settings.jwks_path, jwks.as_bytes()),
            ])?;
        } else if std::fs::read(&settings.jwks_path).ok().as_deref() != Some(jwks.as_bytes()) {
            crate::fsutil::write_files_atomically(&[(&settings.jwks_path, jwks.as_bytes())])?;
        }
        tracing::info!(target: SCOPE_SENTRY, "JWT signing key ready (alg {}, kid {})", settings.algorithm.name(), keys.current.kid);
        Ok(Self {
            settings,
            keys: ArcSwap::from_pointee(keys),
        })
    }

    /// The settings.
    pub fn settings(&self) -> &JwtSettings {
        &self.settings
    }

    /// The `kid` of the signing key.
    pub fn current_kid(&self) -> String {
        self.keys.load().current.kid.clone()
    }

    /// The JWKS to publish: the signing key and every retired key still valid at `now_secs`.
    pub fn jwks(&self, now_secs: u64) -> Value {
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

    /// Re-reads `jwt.key`; when it holds a different key, signs with it from now on and keeps
    /// the previous public key published for one token lifetime. Returns whether it changed.
    /// A missing or bad file keeps the current key (and is an error).
    pub fn reload(&self, now_secs: u64) -> Result<bool, JwtError> {
        let new = read_key(&self.settings)?.ok_or_else(|| JwtError::Key {
            path: self.settings.key_path.clone(),
            reason: "missing".into(),
        })?;
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
        let keys = Keys {
            current: new,
            retired,
        };
        crate::fsutil::write_files_atomically(&[(
            &self.settings.jwks_path,
            keys.jwks().to_string().as_bytes(),
        )])?;
        tracing::warn!(target: SCOPE_SENTRY, "JWT signing key changed; now signing with kid {}", keys.current.kid);
        self.keys.store(Arc::new(keys));
        Ok(true)
    }

    /// A JWT-SVID for `sub`: `aud` as given, `iat` now, `nbf` now − skew, `exp` now + TTL,
    /// a random 32-hex `jti`, `use: "sig"`, and `iss` when configured.
    pub fn mint(
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
        self.keys.load().current.sign(&claims)
    }
}

/// The response's `jwt` (audiences: the SVID's trust domain, then the requested ones) and
/// `per_audience_jwts` (one token per requested audience, carrying only it).
pub fn mint_for_response(
    issuer: &JwtIssuer,
    spiffe_id: &str,
    trust_domain: &str,
    audiences: &[String],
    now_secs: u64,
    skew: Duration,
) -> Result<(Option<String>, std::collections::HashMap<String, String>), JwtError> {
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

/// Starts what JWTs need besides minting: the `jwt.key` watcher (hot reload, 2 s batching
/// like the issuer's) and, when configured, the OIDC server on its own listener with health
/// target `oidc-server`. Keep the returned watcher alive.
pub async fn start(
    issuer: Option<&Arc<JwtIssuer>>,
    oidc: Option<OidcSettings>,
    health: &crate::observability::Health,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<(
    Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    Option<notify::RecommendedWatcher>,
)> {
    use anyhow::Context as _;
    let Some(issuer) = issuer else {
        return Ok((None, None));
    };
    let watcher = watch_key(Arc::clone(issuer)).context("cannot watch the JWT key")?;
    let Some(oidc) = oidc else {
        return Ok((None, Some(watcher)));
    };
    let target = health.register("oidc-server");
    let tls = oidc.tls.clone();
    let host = if oidc.address.is_empty() {
        "0.0.0.0"
    } else {
        oidc.address.as_str()
    };
    let listener = tokio::net::TcpListener::bind((host, oidc.port))
        .await
        .with_context(|| format!("cannot listen for OIDC on {host}:{}", oidc.port))?;
    tracing::info!(target: SCOPE_SENTRY, "OIDC server is listening on {host}:{} ({})", oidc.port, if tls.is_some() { "https" } else { "http" });
    let router = oidc_router(Arc::clone(issuer), oidc);
    let task = tokio::spawn(serve_oidc(listener, tls, router, shutdown));
    target.ready();
    Ok((Some(task), Some(watcher)))
}

fn watch_key(issuer: Arc<JwtIssuer>) -> notify::Result<notify::RecommendedWatcher> {
    use notify::{EventKind, RecursiveMode, Watcher as _};
    let key_path = issuer.settings.key_path.clone();
    let key_name = key_path.file_name().map(std::ffi::OsStr::to_owned);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            let relevant = matches!(
                event.kind,
                EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) | EventKind::Any
            );
            if relevant
                && event
                    .paths
                    .iter()
                    .any(|p| p.file_name().map(std::ffi::OsStr::to_owned) == key_name)
            {
                let _ = tx.try_send(());
            }
        }
    })?;
    let dir = match key_path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            tokio::time::sleep(crate::reload::RELOAD_DEBOUNCE).await;
            while rx.try_recv().is_ok() {}
            match issuer.reload(crate::service::now().as_secs()) {
                Ok(_) => {}
                Err(e) => tracing::error!(
                    target: SCOPE_SENTRY,
                    "Failed to reload the JWT key; still signing with the previous one: {e}"
                ),
            }
        }
    });
    Ok(watcher)
}

/// The validated OIDC server settings.
#[derive(Clone, Debug)]
pub struct OidcSettings {
    /// Where to listen.
    pub address: String,
    /// Port.
    pub port: u16,
    /// The server TLS configuration (from the cert and key files) when HTTPS is on.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// `--oidc-jwks-uri`, when set.
    pub jwks_uri: Option<String>,
    /// Normalised prefix: empty, or `/a/b` without a trailing slash.
    pub path_prefix: String,
    /// Allowed `Host` headers; empty means any.
    pub allowed_hosts: Vec<String>,
}

impl JwtArgs {
    /// The OIDC server settings; `None` unless both `--oidc-enabled` and `--jwt-enabled`.
    pub fn oidc_settings(&self) -> Result<Option<OidcSettings>, JwtError> {
        if !(self.oidc_enabled && self.jwt_enabled) {
            if self.oidc_enabled {
                tracing::warn!(target: SCOPE_SENTRY, "--oidc-enabled has no effect without --jwt-enabled");
            }
            return Ok(None);
        }
        let tls = if self.oidc_server_tls_enabled {
            if self.oidc_server_tls_cert_file.is_empty() || self.oidc_server_tls_key_file.is_empty()
            {
                return Err(JwtError::Config(
                    "--oidc-server-tls-enabled needs --oidc-server-tls-cert-file and --oidc-server-tls-key-file"
                        .into(),
                ));
            }
            Some(Arc::new(oidc_tls_config(
                Path::new(&self.oidc_server_tls_cert_file),
                Path::new(&self.oidc_server_tls_key_file),
            )?))
        } else {
            None
        };
        let trimmed = self.oidc_path_prefix.trim_matches('/');
        let path_prefix = if trimmed.is_empty() {
            String::new()
        } else {
            format!("/{trimmed}")
        };
        Ok(Some(OidcSettings {
            address: self.oidc_server_listen_address.clone(),
            port: self.oidc_server_listen_port,
            tls,
            jwks_uri: (!self.oidc_jwks_uri.is_empty()).then(|| self.oidc_jwks_uri.clone()),
            path_prefix,
            allowed_hosts: self
                .oidc_allowed_hosts
                .iter()
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect(),
        }))
    }
}

/// The OIDC discovery endpoints: `GET <prefix>/.well-known/openid-configuration` and
/// `GET <prefix>/jwks.json`, `Cache-Control: public, max-age=3600`; 405 for other methods,
/// 403 for a `Host` outside the allow-list, 404 elsewhere.
pub fn oidc_router(issuer: Arc<JwtIssuer>, settings: OidcSettings) -> axum::Router {
    let settings = Arc::new(settings);
    axum::Router::new().fallback(move |request: axum::extract::Request| {
        let issuer = Arc::clone(&issuer);
        let settings = Arc::clone(&settings);
        async move { oidc_answer(&issuer, &settings, &request) }
    })
}

fn oidc_answer(
    issuer: &JwtIssuer,
    settings: &OidcSettings,
    request: &axum::extract::Request,
) -> axum::response::Response {
    use axum::http::{HeaderValue, StatusCode, header};
    use axum::response::IntoResponse as _;
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| {
            request
                .uri()
                .authority()
                .map(axum::http::uri::Authority::as_str)
        })
        .unwrap_or("")
        .to_ascii_lowercase();
    // Behind a proxy the public name is in X-Forwarded-Host, which Sentry checks instead.
    let checked = request
        .headers()
        .get("x-forwarded-host")
        .and_then(|h| h.to_str().ok())
        .map_or_else(|| host.clone(), str::to_ascii_lowercase);
    if !settings.allowed_hosts.is_empty() {
        let host = &checked;
        let name = host.rsplit_once(':').map_or(host.as_str(), |(name, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                name
            } else {
                host.as_str()
            }
        });
        if !settings
            .allowed_hosts
            .iter()
            .any(|h| h == "*" || h == host || h == name)
        {
            return (StatusCode::FORBIDDEN, "host not allowed\n").into_response();
        }
    }
    let path = request.uri().path();
    let Some(rest) = path.strip_prefix(settings.path_prefix.as_str()) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let discovery = rest == "/.well-known/openid-configuration";
    if !discovery && rest != "/jwks.json" {
        return StatusCode::NOT_FOUND.into_response();
    }
    if request.method() != axum::http::Method::GET {
        return (StatusCode::METHOD_NOT_ALLOWED, [(header::ALLOW, "GET")]).into_response();
    }
    let body = if discovery {
        let scheme = if settings.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let base = format!("{scheme}://{host}{}", settings.path_prefix);
        json!({
            "issuer": issuer.settings.issuer.clone().unwrap_or_else(|| base.clone()),
            "jwks_uri": settings.jwks_uri.clone().unwrap_or_else(|| format!("{base}/jwks.json")),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [issuer.settings.algorithm.name()],
            "scopes_supported": ["openid"],
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "use"],
        })
    } else {
        issuer.jwks(crate::service::now().as_secs())
    };
    let mut response = (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    response
}

/// Loads the OIDC server's TLS certificate chain and key (PEM).
pub fn oidc_tls_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, JwtError> {
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |path: &Path, reason: String| JwtError::Key {
        path: path.to_path_buf(),
        reason,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| bad(cert, e.to_string()))?;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| bad(cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| bad(cert, e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A TLS listener for `axum::serve`. Handshakes run off the accept loop, so one slow client
/// holds up no one; those that fail or take over 10 s are dropped.
struct TlsListener {
    local_addr: std::io::Result<std::net::SocketAddr>,
    rx: tokio::sync::mpsc::Receiver<(
        tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
        std::net::SocketAddr,
    )>,
}

impl TlsListener {
    fn new(listener: tokio::net::TcpListener, config: Arc<rustls::ServerConfig>) -> Self {
        let local_addr = listener.local_addr();
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let Ok((tcp, peer)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                if tx.is_closed() {
                    break;
                }
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let handshake = acceptor.accept(tcp);
                    if let Ok(Ok(stream)) =
                        tokio::time::timeout(Duration::from_secs(10), handshake).await
                    {
                        let _ = tx.send((stream, peer)).await;
                    }
                });
            }
        });
        Self { local_addr, rx }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(conn) => conn,
            // The accept task only ends with the runtime.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        match &self.local_addr {
            Ok(addr) => Ok(*addr),
            Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
        }
    }
}

/// Serves the OIDC endpoints until `shutdown` (HTTPS when `tls` is given).
pub async fn serve_oidc(
    listener: tokio::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    match tls {
        Some(config) => {
            axum::serve(TlsListener::new(listener, config), router)
                .with_graceful_shutdown(shutdown)
                .await
        }
        None => {
            axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await
        }
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation, decode, jwk::JwkSet};

    fn settings(dir: &Path, algorithm: SigningAlgorithm) -> JwtSettings {
        JwtSettings {
            key_path: dir.join(JWT_KEY_FILENAME),
            jwks_path: dir.join(JWKS_FILENAME),
            issuer: Some("https://issuer.example".into()),
            algorithm,
            key_id: None,
            ttl: Duration::from_secs(3600),
        }
    }

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
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
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
        crate::fsutil::write_files_atomically(&[(&s.key_path, fresh.pem().unwrap().as_bytes())])
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
    fn issuer_without_jwt_enabled_is_an_error() {
        use clap::Parser as _;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            jwt: JwtArgs,
        }
        let cli = Cli::parse_from(["x", "--jwt-issuer", "https://x"]);
        assert!(
            cli.jwt
                .settings(Path::new("/tmp"))
                .unwrap_err()
                .to_string()
                .contains("--jwt-enabled")
        );
        let cli = Cli::parse_from(["x", "--jwt-enabled", "--jwt-signing-algorithm", "PS256"]);
        assert!(cli.jwt.settings(Path::new("/tmp")).is_err());
    }

    #[tokio::test]
    async fn oidc_host_checks_follow_x_forwarded_host_and_wildcard() {
        use tower::ServiceExt as _;
        let dir = tempfile::tempdir().unwrap();
        let issuer = Arc::new(
            JwtIssuer::load_or_generate(settings(dir.path(), SigningAlgorithm::EdDsa), 0).unwrap(),
        );
        let oidc = |hosts: &[&str]| OidcSettings {
            address: String::new(),
            port: 0,
            tls: None,
            jwks_uri: None,
            path_prefix: String::new(),
            allowed_hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
        };
        let status = |hosts: &[&str], host: &str, forwarded: Option<&str>| {
            let router = oidc_router(Arc::clone(&issuer), oidc(hosts));
            let mut request = axum::http::Request::builder()
                .uri("/jwks.json")
                .header("host", host);
            if let Some(f) = forwarded {
                request = request.header("x-forwarded-host", f);
            }
            let request = request.body(axum::body::Body::empty()).unwrap();
            async move { router.oneshot(request).await.unwrap().status().as_u16() }
        };
        assert_eq!(
            status(&["sentry.example"], "sentry.example:443", None).await,
            200
        );
        assert_eq!(status(&["sentry.example"], "10.0.0.1", None).await, 403);
        assert_eq!(
            status(&["sentry.example"], "10.0.0.1", Some("sentry.example")).await,
            200
        );
        assert_eq!(
            status(&["sentry.example"], "sentry.example", Some("evil")).await,
            403
        );
        assert_eq!(status(&["*"], "anything", None).await, 200);
        assert_eq!(status(&[], "anything", None).await, 200);
    }

    #[test]
    fn key_id_and_ttl_flags_are_used() {
        use clap::Parser as _;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            jwt: JwtArgs,
        }
        let dir = tempfile::tempdir().unwrap();
        let cli = Cli::parse_from([
            "x",
            "--jwt-enabled",
            "--jwt-signing-algorithm",
            "EdDSA",
            "--jwt-key-id",
            "k1",
            "--jwt-ttl",
            "1h30m",
            "--jwks-filename",
            "keys/set.json",
        ]);
        std::fs::create_dir(dir.path().join("keys")).unwrap();
        let settings = cli.jwt.settings(dir.path()).unwrap().unwrap();
        assert_eq!(settings.jwks_path, dir.path().join("keys/set.json"));
        assert_eq!(settings.issuer, None);
        let issuer = JwtIssuer::load_or_generate(settings, 100).unwrap();
        let token = issuer
            .mint("spiffe://td/ns/a/b", &["td"], 100, Duration::from_secs(10))
            .unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.kid.as_deref(), Some("k1"));
        let payload = token.split('.').nth(1).unwrap();
        let claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        assert_eq!(claims["exp"], 100 + 5400);
        assert_eq!(claims["nbf"], 90);
        assert!(claims.get("iss").is_none(), "no iss unless configured");
        assert!(dir.path().join("keys/set.json").exists());
    }
}

//! Sentry's `--jwt-*` and `--oidc-*` flags, and the JWT settings checked from them (the OIDC
//! settings are built in [`super::oidc`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Sentry's default JWT key file name.
pub(crate) const JWT_KEY_FILENAME: &str = "jwt.key";
/// Sentry's default public key set file name.
pub(crate) const JWKS_FILENAME: &str = "jwks.json";

/// Sentry's JWT and OIDC flags (spec §4), flattened into `ServeArgs`.
#[derive(Clone, Debug, clap::Args)]
pub(crate) struct JwtArgs {
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
pub(crate) enum SigningAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256, RSA-2048 keys.
    Rs256,
    /// ECDSA P-256 with SHA-256.
    Es256,
    /// Ed25519.
    EdDsa,
}

impl SigningAlgorithm {
    /// Parses the flag value (JOSE names, as Sentry).
    pub(crate) fn parse(name: &str) -> Result<Self, JwtError> {
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
    pub(crate) fn name(self) -> &'static str {
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
pub(crate) enum JwtError {
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
    Write(#[from] crate::util::files::WriteError),
    /// The crypto backend failed.
    #[error("{0} failed")]
    Backend(&'static str),
}

/// The validated JWT settings.
#[derive(Clone, Debug)]
pub(crate) struct JwtSettings {
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
    pub(crate) fn settings(&self, credentials_dir: &Path) -> Result<Option<JwtSettings>, JwtError> {
        if !self.jwt_enabled {
            if !self.jwt_issuer.is_empty() {
                return Err(JwtError::Config(
                    "--jwt-issuer is set but --jwt-enabled is false".into(),
                ));
            }
            return Ok(None);
        }
        let ttl = crate::go::duration::parse_go_duration(&self.jwt_ttl)
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use base64ct::{Base64UrlUnpadded, Encoding as _};
    use serde_json::Value;

    use super::super::issuer::JwtIssuer;

    /// Settings of a test issuer in `dir`: `iss` set, a one-hour TTL.
    pub(in crate::tokens::jwt) fn settings(dir: &Path, algorithm: SigningAlgorithm) -> JwtSettings {
        JwtSettings {
            key_path: dir.join(JWT_KEY_FILENAME),
            jwks_path: dir.join(JWKS_FILENAME),
            issuer: Some("https://issuer.example".into()),
            algorithm,
            key_id: None,
            ttl: Duration::from_secs(3600),
        }
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
            serde_json::from_slice(&Base64UrlUnpadded::decode_vec(payload).unwrap()).unwrap();
        assert_eq!(claims["exp"], 100 + 5400);
        assert_eq!(claims["nbf"], 90);
        assert!(claims.get("iss").is_none(), "no iss unless configured");
        assert!(dir.path().join("keys/set.json").exists());
    }
}

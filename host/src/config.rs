//! Sentry's self-hosted configuration file (`warden --config PATH`).
//!
//! The file is a Dapr `Configuration` resource. Sentry reads only `spec.mtls` from it, and so
//! does Warden; every other section (tracing, features, accessControl, ...) and every unknown
//! field is skipped, so the file an operator already hands to Dapr loads unchanged.
//!
//! Loading follows Dapr's `LoadStandaloneConfiguration` and Sentry's `parseConfiguration`:
//! 1. the file is read and `$VAR` / `${VAR}` are expanded as Go's `os.ExpandEnv` does
//!    ([`expand_env`]);
//! 2. the first YAML document is decoded (scalars of any type are accepted where Go's yaml.v3
//!    would turn them into strings, so `allowedClockSkew: 0` works);
//! 3. `workloadCertTTL` and `allowedClockSkew` are parsed with Go's `time.ParseDuration` rules
//!    ([`parse_go_duration`]); absent or empty means Sentry's default;
//! 4. `tokenValidators` names are checked exactly as Sentry checks them.
//!
//! `enabled` and `sentryAddress` are ignored, as Sentry ignores them. `controlPlaneTrustDomain`
//! is ignored too: `--trust-domain` always wins.
//!
//! Deliberate differences from Sentry, all about inputs Sentry would silently misread:
//! negative durations are rejected (Go accepts them), a zero `workloadCertTTL` is rejected,
//! and a nested list or map inside validator `options` becomes its JSON text (Sentry's
//! `cast.ToStringMapString` turns it into an empty string).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::go::duration::{DurationError, go_quote, parse_go_duration};
use crate::go::env::{expand_env, process_env};
use crate::observability::Health;
use crate::tokens::Validators;
use crate::tokens::jwks::{HEALTH_TARGET, JwksOptions, JwksValidator};
use warden_core::profile::{DEFAULT_CLOCK_SKEW, DEFAULT_WORKLOAD_TTL};

/// Field path of the workload certificate lifetime, used in error messages.
const TTL_FIELD: &str = "spec.mtls.workloadCertTTL";
/// Field path of the allowed clock skew, used in error messages.
const SKEW_FIELD: &str = "spec.mtls.allowedClockSkew";
/// The only validator name `tokenValidators` may carry (Sentry's CRD enum).
const JWKS: &str = "jwks";

/// The part of a Dapr `Configuration` that shapes Sentry's behaviour, already validated.
///
/// Everything here has a Sentry default, so a missing file section never leaves the server
/// without a value; a config file only narrows or widens what Sentry would do by default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentryConfig {
    /// Lifetime of every workload certificate Warden signs (`spec.mtls.workloadCertTTL`).
    /// Never zero: a certificate that is born expired only produces confusing TLS failures.
    pub workload_cert_ttl: Duration,
    /// How far back `NotBefore` is moved so that peers with slow clocks accept fresh
    /// certificates (`spec.mtls.allowedClockSkew`). Zero is allowed.
    pub allowed_clock_skew: Duration,
    /// Extra token validators in file order, names lower-cased (so always `jwks` today).
    /// When this is empty, self-hosted Sentry enables the `insecure` validator as the default;
    /// when it is not, `insecure` is off and clients must name a validator.
    /// A repeated name keeps its first position and its last options, as Sentry's map does.
    pub token_validators: Vec<TokenValidatorConfig>,
}

impl Default for SentryConfig {
    /// Sentry's behaviour with no config file at all: 24h certificates, 15m skew, and no
    /// extra validators (so `insecure` stays the default in self-hosted mode).
    fn default() -> Self {
        Self {
            workload_cert_ttl: DEFAULT_WORKLOAD_TTL,
            allowed_clock_skew: DEFAULT_CLOCK_SKEW,
            token_validators: Vec::new(),
        }
    }
}

/// One `spec.mtls.tokenValidators` entry.
///
/// Options stay a flat string map because that is what Sentry hands its validators
/// (`map[string]string`); each validator decodes and checks its own keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenValidatorConfig {
    /// Validator name, lower-cased (the file may say `JWKS` or `Jwks`).
    pub name: String,
    /// Options with every value turned into text: strings as written, numbers and booleans
    /// as Go prints them (`10`, `1.5`, `true`), null as the empty string, and nested lists or
    /// maps as compact JSON. Keys keep their case; validators match them case-insensitively.
    pub options: BTreeMap<String, String>,
}

impl SentryConfig {
    /// Reads, expands and parses the config file at `path`.
    ///
    /// Sentry treats every failure here as fatal, including a missing file, because running
    /// with defaults the operator did not choose would be worse than not starting.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Read`] when the file cannot be read, and every error of
    /// [`SentryConfig::from_yaml`].
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let expanded = expand_env(&text, process_env);
        Self::from_yaml(&expanded, path)
    }

    /// Parses the text of a config file whose environment variables are already expanded.
    ///
    /// Split from [`SentryConfig::load`] so tests and callers holding the text need no file
    /// and no process environment; `source` only names the file in error messages.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Yaml`] for text that is not YAML or a known field of the wrong shape,
    /// [`ConfigError::Duration`] or [`ConfigError::ZeroWorkloadCertTtl`] for a bad duration,
    /// and [`ConfigError::BuiltInValidator`], [`ConfigError::UnknownValidator`] or
    /// [`ConfigError::ValidatorOptions`] for a bad `tokenValidators` entry, checked in that
    /// order as Sentry does.
    pub fn from_yaml(text: &str, source: &Path) -> Result<Self, ConfigError> {
        let mtls = decode_mtls(text, source)?;
        let mut config = Self::default();
        if let Some(ttl) = workload_cert_ttl(mtls.workload_cert_ttl, source)? {
            config.workload_cert_ttl = ttl;
        }
        if let Some(skew) = parse_duration_field(
            mtls.allowed_clock_skew.as_deref(),
            SKEW_FIELD,
            "AllowedClockSkew",
            source,
        )? {
            config.allowed_clock_skew = skew;
        }
        note_ignored_trust_domain(mtls.control_plane_trust_domain, source);
        let options_index =
            config.add_validators(mtls.token_validators.unwrap_or_default(), source)?;
        config.check_validator_options(options_index, source)?;
        Ok(config)
    }

    /// Adds the `tokenValidators` entries in file order, each name checked as Sentry checks
    /// it. A repeated name keeps its first position and takes its last options. Returns, for
    /// each kept entry, the index its options came from (for error messages).
    fn add_validators(
        &mut self,
        entries: Vec<RawValidator>,
        source: &Path,
    ) -> Result<Vec<usize>, ConfigError> {
        let mut options_index: Vec<usize> = Vec::new();
        for (index, raw) in entries.into_iter().enumerate() {
            let validator = raw.validate(index, source)?;
            match self
                .token_validators
                .iter()
                .position(|known| known.name == validator.name)
            {
                Some(at) => {
                    if let (Some(known), Some(from)) =
                        (self.token_validators.get_mut(at), options_index.get_mut(at))
                    {
                        known.options = validator.options;
                        *from = index;
                    }
                }
                None => {
                    self.token_validators.push(validator);
                    options_index.push(index);
                }
            }
        }
        Ok(options_index)
    }

    /// Every name is valid (only `jwks` gets here). Its options are decoded now, after all
    /// names are checked, so a bad one stops the server before anything starts; the source
    /// itself is resolved when the validator starts.
    fn check_validator_options(
        &self,
        options_index: Vec<usize>,
        source: &Path,
    ) -> Result<(), ConfigError> {
        for (validator, index) in self.token_validators.iter().zip(options_index) {
            JwksOptions::parse(&validator.options).map_err(|error| {
                ConfigError::ValidatorOption {
                    path: source.to_path_buf(),
                    index,
                    error,
                }
            })?;
        }
        Ok(())
    }
}

/// Decodes `spec.mtls` of the first YAML document; an empty file is all defaults.
fn decode_mtls(text: &str, source: &Path) -> Result<RawMtls, ConfigError> {
    // No snippets: after expansion the text may hold environment values, and an error
    // message ends up in logs. Line and column are enough to find the spot.
    let options = serde_saphyr::options! { with_snippet: false };
    let documents: Vec<RawConfiguration> = serde_saphyr::from_multiple_with_options(text, options)
        .map_err(|err| ConfigError::Yaml {
            path: source.to_path_buf(),
            message: err.to_string(),
        })?;
    // Go's yaml.Unmarshal decodes only the first document.
    Ok(documents
        .into_iter()
        .next()
        .and_then(|doc| doc.spec)
        .and_then(|spec| spec.mtls)
        .unwrap_or_default())
}

/// `workloadCertTTL`: a Go duration greater than zero, or `None` for Sentry's default.
fn workload_cert_ttl(
    value: Option<String>,
    source: &Path,
) -> Result<Option<Duration>, ConfigError> {
    let ttl = parse_duration_field(value.as_deref(), TTL_FIELD, "WorkloadCertTTL", source)?;
    if ttl.is_some_and(|ttl| ttl.is_zero()) {
        return Err(ConfigError::ZeroWorkloadCertTtl {
            path: source.to_path_buf(),
            value: value.unwrap_or_default(),
        });
    }
    Ok(ttl)
}

/// `controlPlaneTrustDomain` is read but not used: says so when the file sets it.
fn note_ignored_trust_domain(trust_domain: Option<String>, source: &Path) {
    if let Some(td) = trust_domain.filter(|td| !td.is_empty()) {
        tracing::info!(
            config = %source.display(),
            control_plane_trust_domain = %td,
            "spec.mtls.controlPlaneTrustDomain is ignored; --trust-domain decides the trust domain"
        );
    }
}

/// Why a config file could not be used.
///
/// Every variant that comes from a file names it, and where it helps the field path and the
/// offending value, because the operator fixes the file, not the code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read (missing, unreadable, a directory, not UTF-8).
    #[error("config file {}: cannot read: {source}", path.display())]
    Read {
        /// The config file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The text is not YAML, or a known field has the wrong shape.
    #[error("config file {}: invalid YAML: {message}", path.display())]
    Yaml {
        /// The config file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// `workloadCertTTL` or `allowedClockSkew` is not a Go duration, or is negative.
    #[error("config file {}: {field}: error parsing {setting} duration: {source}", path.display())]
    Duration {
        /// The config file.
        path: PathBuf,
        /// Field path, such as `spec.mtls.workloadCertTTL`.
        field: &'static str,
        /// Sentry's name for the setting in its own message (`WorkloadCertTTL`).
        setting: &'static str,
        /// What is wrong with the value (the value is quoted in it).
        #[source]
        source: DurationError,
    },
    /// `workloadCertTTL` parses to zero.
    #[error(
        "config file {}: spec.mtls.workloadCertTTL: a workload certificate lifetime of {} is not \
         allowed; it must be greater than zero",
        path.display(),
        go_quote(value)
    )]
    ZeroWorkloadCertTtl {
        /// The config file.
        path: PathBuf,
        /// The value as written.
        value: String,
    },
    /// A `tokenValidators` entry names `kubernetes` or `insecure`, which Sentry manages itself.
    #[error(
        "config file {}: spec.mtls.tokenValidators[{index}].name: invalid token validator: the \
         built-in 'kubernetes' and 'insecure' validators cannot be configured manually",
        path.display()
    )]
    BuiltInValidator {
        /// The config file.
        path: PathBuf,
        /// Position in `tokenValidators`.
        index: usize,
        /// The name as written.
        name: String,
    },
    /// A `tokenValidators` entry names a validator Sentry does not know.
    #[error(
        "config file {}: spec.mtls.tokenValidators[{index}].name: invalid token validator name: \
         '{name}'; supported values: 'jwks'",
        path.display()
    )]
    UnknownValidator {
        /// The config file.
        path: PathBuf,
        /// Position in `tokenValidators`.
        index: usize,
        /// The name as written.
        name: String,
    },
    /// A `tokenValidators` entry has options that are not a map.
    #[error("config file {}: spec.mtls.tokenValidators[{index}].options: {reason}", path.display())]
    ValidatorOptions {
        /// The config file.
        path: PathBuf,
        /// Position in `tokenValidators`.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// A `jwks` option cannot be used (missing `source`, bad duration, unreadable
    /// `caCertificate`, a `source` that is neither a URL, a file nor a JWKS, ...).
    #[error(
        "config file {}: spec.mtls.tokenValidators[{index}].options.{}: {}",
        path.display(),
        error.option,
        error.reason
    )]
    ValidatorOption {
        /// The config file.
        path: PathBuf,
        /// Position in `tokenValidators`.
        index: usize,
        /// The option and what is wrong with it.
        error: crate::tokens::jwks::OptionError,
    },
}

/// Parses an optional duration field; `None` when it is absent or empty (Sentry's default).
fn parse_duration_field(
    value: Option<&str>,
    field: &'static str,
    setting: &'static str,
    source: &Path,
) -> Result<Option<Duration>, ConfigError> {
    match value {
        None | Some("") => Ok(None),
        Some(text) => {
            parse_go_duration(text)
                .map(Some)
                .map_err(|source_err| ConfigError::Duration {
                    path: source.to_path_buf(),
                    field,
                    setting,
                    source: source_err,
                })
        }
    }
}

/// The top of a `Configuration` resource; everything but `spec` is skipped.
#[derive(Debug, Default, Deserialize)]
struct RawConfiguration {
    #[serde(default)]
    spec: Option<RawSpec>,
}

/// `spec`; everything but `mtls` is skipped.
#[derive(Debug, Default, Deserialize)]
struct RawSpec {
    #[serde(default)]
    mtls: Option<RawMtls>,
}

/// `spec.mtls` (Dapr's `MTLSSpec`). `enabled` is not declared because Sentry ignores it.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct RawMtls {
    #[serde(rename = "workloadCertTTL")]
    workload_cert_ttl: Option<String>,
    allowed_clock_skew: Option<String>,
    #[allow(
        dead_code,
        reason = "decoded so a wrong shape fails as in Go; Sentry ignores it"
    )]
    sentry_address: Option<String>,
    control_plane_trust_domain: Option<String>,
    token_validators: Option<Vec<RawValidator>>,
}

/// One `tokenValidators` entry (Dapr's `ValidatorSpec`, whose options are `any`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawValidator {
    name: Option<String>,
    options: Option<serde_json::Value>,
}

impl RawValidator {
    /// Applies Sentry's name rules and flattens the options.
    fn validate(self, index: usize, source: &Path) -> Result<TokenValidatorConfig, ConfigError> {
        let name = self.name.unwrap_or_default();
        let lower = name.to_lowercase();
        match lower.as_str() {
            JWKS => {}
            "kubernetes" | "insecure" => {
                return Err(ConfigError::BuiltInValidator {
                    path: source.to_path_buf(),
                    index,
                    name,
                });
            }
            _ => {
                return Err(ConfigError::UnknownValidator {
                    path: source.to_path_buf(),
                    index,
                    name,
                });
            }
        }
        let options =
            options_map(self.options).map_err(|reason| ConfigError::ValidatorOptions {
                path: source.to_path_buf(),
                index,
                reason,
            })?;
        Ok(TokenValidatorConfig {
            name: lower,
            options,
        })
    }
}

/// Turns validator options into the string map Sentry passes on (`cast.ToStringMapString`):
/// a map, or a string holding a JSON object; null means no options.
fn options_map(options: Option<serde_json::Value>) -> Result<BTreeMap<String, String>, String> {
    let object = match options {
        None | Some(serde_json::Value::Null) => return Ok(BTreeMap::new()),
        Some(serde_json::Value::Object(object)) => object,
        Some(serde_json::Value::String(text)) => {
            match serde_json::from_str::<serde_json::Value>(&text) {
                Ok(serde_json::Value::Object(object)) => object,
                _ => return Err("expected a map, got a string that is not a JSON object".into()),
            }
        }
        Some(other) => return Err(format!("expected a map, got {}", json_kind(&other))),
    };
    Ok(object
        .into_iter()
        .map(|(key, value)| (key, option_text(value)))
        .collect())
}

/// One option value as text, as Go's `cast.ToString` prints scalars.
fn option_text(value: serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(text) => text,
        serde_json::Value::Bool(b) => b.to_string(),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (None, Some(u), _) => u.to_string(),
            // Rust prints f64 like Go's FormatFloat(f, 'f', -1, 64): shortest, no exponent.
            (None, None, Some(f)) => f.to_string(),
            (None, None, None) => n.to_string(),
        },
        nested @ (serde_json::Value::Array(_) | serde_json::Value::Object(_)) => nested.to_string(),
    }
}

/// A short name for the kind of a decoded value, for error messages.
fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "a map",
    }
}

/// The validators of a loaded config: `insecure` as the default when `tokenValidators` is
/// empty, otherwise only the configured `jwks` validator (started here, its health target
/// registered as [`HEALTH_TARGET`]) and no default. `audience` is Sentry's SPIFFE ID.
///
/// # Errors
///
/// [`ConfigError::ValidatorOption`] naming `config_file`, the entry and the option.
pub(crate) fn start_validators(
    config: &SentryConfig,
    config_file: &Path,
    health: &Health,
    audience: &str,
) -> Result<Validators, ConfigError> {
    let Some((index, entry)) = config
        .token_validators
        .iter()
        .enumerate()
        .find(|(_, v)| v.name == "jwks")
    else {
        return Ok(Validators::insecure_default());
    };
    let error = |error| ConfigError::ValidatorOption {
        path: config_file.to_path_buf(),
        index,
        error,
    };
    let options = JwksOptions::parse(&entry.options).map_err(error)?;
    let target = health.register(HEALTH_TARGET);
    let validator = JwksValidator::start(&options, audience.to_owned(), target).map_err(error)?;
    Ok(Validators::configured(validator))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn src() -> &'static Path {
        Path::new("/x/c.yaml")
    }

    fn parse(yaml: &str) -> Result<SentryConfig, ConfigError> {
        SentryConfig::from_yaml(yaml, src())
    }

    fn parse_err(yaml: &str) -> String {
        parse(yaml).unwrap_err().to_string()
    }

    fn mtls(body: &str) -> String {
        let mut yaml = String::from(
            "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: c\nspec:\n  mtls:\n",
        );
        for line in body.lines() {
            yaml.push_str("    ");
            yaml.push_str(line);
            yaml.push('\n');
        }
        yaml
    }

    const REAL_CONFIG: &str = r#"
# Dapr control plane configuration, as shipped by `dapr init`.
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: daprsystem
  namespace: default
  labels:
    app: dapr
spec:
  tracing:
    samplingRate: "1"
    stdout: true
    zipkin:
      endpointAddress: "http://localhost:9411/api/v2/spans"
  metric:
    enabled: true
  features:
    - name: SchedulerReminders
      enabled: true
    - name: HotReload
      enabled: false
  accessControl:
    defaultAction: deny
    trustDomain: "public"
    policies:
      - appId: app1
        defaultAction: allow
        trustDomain: "public"
        namespace: "default"
        operations:
          - name: /op1
            httpVerb: ["POST", "GET"]
            action: deny
  mtls:
    enabled: true
    workloadCertTTL: "1h30m"
    allowedClockSkew: "20s"
    sentryAddress: "localhost:50001"
    controlPlaneTrustDomain: "cluster.local"
    someFutureField: [1, 2, 3]
    tokenValidators:
      - name: jwks
        options:
          source: "https://issuer.example/jwks.json"
          minRefreshInterval: 10m
  nameResolution:
    component: mdns
    configuration:
      anything: goes
"#;

    #[test]
    fn real_configuration_parses() {
        let config = parse(REAL_CONFIG).unwrap();
        assert_eq!(
            config,
            SentryConfig {
                workload_cert_ttl: Duration::from_secs(90 * 60),
                allowed_clock_skew: Duration::from_secs(20),
                token_validators: vec![TokenValidatorConfig {
                    name: "jwks".into(),
                    options: BTreeMap::from([
                        ("minRefreshInterval".into(), "10m".into()),
                        ("source".into(), "https://issuer.example/jwks.json".into()),
                    ]),
                }],
            }
        );
    }

    #[test]
    fn defaults_when_absent_or_empty() {
        let default = SentryConfig::default();
        assert_eq!(default.workload_cert_ttl, Duration::from_secs(24 * 3600));
        assert_eq!(default.allowed_clock_skew, Duration::from_secs(15 * 60));
        assert!(default.token_validators.is_empty());
        for yaml in [
            "",
            "# nothing\n",
            "---\n",
            "apiVersion: dapr.io/v1alpha1\nkind: Configuration\n",
            "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nspec:\n  tracing:\n    samplingRate: '1'\n",
            "spec:\n",
            "spec:\n  mtls:\n",
            "spec:\n  mtls: {}\n",
            "spec:\n  mtls:\n    enabled: false\n",
            "spec:\n  mtls:\n    workloadCertTTL: ''\n    allowedClockSkew: \"\"\n",
            "spec:\n  mtls:\n    workloadCertTTL:\n    allowedClockSkew: ~\n",
            "spec:\n  mtls:\n    tokenValidators: []\n",
        ] {
            assert_eq!(parse(yaml).unwrap(), default, "{yaml:?}");
        }
    }

    #[test]
    fn null_document_and_sections_are_defaults() {
        for yaml in ["~\n", "--- ~\n", "spec: ~\n", "spec:\n  mtls: null\n"] {
            assert_eq!(parse(yaml).unwrap(), SentryConfig::default(), "{yaml:?}");
        }
    }

    #[test]
    fn duplicate_keys_rejected() {
        let message = parse_err(&mtls("workloadCertTTL: 1h\nworkloadCertTTL: 2h"));
        assert!(
            message.starts_with("config file /x/c.yaml: invalid YAML: "),
            "{message}"
        );
        assert!(message.contains("duplicate"), "{message}");
    }

    #[test]
    fn only_first_document_counts() {
        let yaml = "spec:\n  mtls:\n    workloadCertTTL: 2h\n---\nspec:\n  mtls:\n    workloadCertTTL: 3h\n";
        assert_eq!(
            parse(yaml).unwrap().workload_cert_ttl,
            Duration::from_secs(2 * 3600)
        );
    }

    #[test]
    fn unquoted_scalars_are_duration_text() {
        let config = parse(&mtls("workloadCertTTL: 45m\nallowedClockSkew: 0")).unwrap();
        assert_eq!(config.workload_cert_ttl, Duration::from_secs(45 * 60));
        assert_eq!(config.allowed_clock_skew, Duration::ZERO);
    }

    #[test]
    fn missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent.yaml");
        let err = SentryConfig::load(&path).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }));
        assert_eq!(
            err.to_string(),
            format!(
                "config file {}: cannot read: No such file or directory (os error 2)",
                path.display()
            )
        );
    }

    #[test]
    fn load_reads_file_and_expands_env() {
        // Variables this test sets are unlikely to exist elsewhere; reading HOME/PATH instead
        // would depend on the machine, so expansion of set variables is covered by `expand_env`.
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(
            mtls("workloadCertTTL: 2h${WARDEN_CONFIG_TEST_SURELY_UNSET}\nallowedClockSkew: 1m")
                .as_bytes(),
        )
        .unwrap();
        let config = SentryConfig::load(file.path()).unwrap();
        assert_eq!(config.workload_cert_ttl, Duration::from_secs(2 * 3600));
        assert_eq!(config.allowed_clock_skew, Duration::from_secs(60));
    }

    #[test]
    fn load_reports_bad_value_with_path() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(mtls("workloadCertTTL: 1d").as_bytes())
            .unwrap();
        let err = SentryConfig::load(file.path()).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "config file {}: spec.mtls.workloadCertTTL: error parsing WorkloadCertTTL \
                 duration: time: unknown unit \"d\" in duration \"1d\"",
                file.path().display()
            )
        );
    }

    #[test]
    fn bad_yaml() {
        let err = parse("spec:\n  mtls: [\n");
        assert!(matches!(err, Err(ConfigError::Yaml { .. })));
        let message = parse_err("spec:\n  mtls: [\n");
        assert!(
            message.starts_with("config file /x/c.yaml: invalid YAML: "),
            "{message}"
        );
        assert!(message.contains("line 2"), "{message}");
        assert!(!message.contains('\n'), "{message}");

        let message = parse_err(&mtls("workloadCertTTL: [1h]"));
        assert!(
            message.starts_with("config file /x/c.yaml: invalid YAML: "),
            "{message}"
        );
        assert!(message.contains("line 7"), "{message}");

        let message = parse_err("- just\n- a list\n");
        assert!(
            message.starts_with("config file /x/c.yaml: invalid YAML: "),
            "{message}"
        );
    }

    #[test]
    fn bad_ttl_names_field_and_value() {
        assert_eq!(
            parse_err(&mtls("workloadCertTTL: 1d")),
            "config file /x/c.yaml: spec.mtls.workloadCertTTL: error parsing WorkloadCertTTL \
             duration: time: unknown unit \"d\" in duration \"1d\""
        );
        assert_eq!(
            parse_err(&mtls("workloadCertTTL: 10")),
            "config file /x/c.yaml: spec.mtls.workloadCertTTL: error parsing WorkloadCertTTL \
             duration: time: missing unit in duration \"10\""
        );
        assert_eq!(
            parse_err(&mtls("workloadCertTTL: -1h")),
            "config file /x/c.yaml: spec.mtls.workloadCertTTL: error parsing WorkloadCertTTL \
             duration: negative duration \"-1h\" is not allowed"
        );
        assert_eq!(
            parse_err(&mtls("workloadCertTTL: 0s")),
            "config file /x/c.yaml: spec.mtls.workloadCertTTL: a workload certificate lifetime \
             of \"0s\" is not allowed; it must be greater than zero"
        );
        assert!(matches!(
            parse(&mtls("workloadCertTTL: '0'")),
            Err(ConfigError::ZeroWorkloadCertTtl { .. })
        ));
    }

    #[test]
    fn bad_skew_names_field_and_value() {
        assert_eq!(
            parse_err(&mtls("allowedClockSkew: 5 minutes")),
            "config file /x/c.yaml: spec.mtls.allowedClockSkew: error parsing AllowedClockSkew \
             duration: time: unknown unit \" minutes\" in duration \"5 minutes\""
        );
        assert_eq!(
            parse_err(&mtls("allowedClockSkew: -5m")),
            "config file /x/c.yaml: spec.mtls.allowedClockSkew: error parsing AllowedClockSkew \
             duration: negative duration \"-5m\" is not allowed"
        );
        let err = parse(&mtls("allowedClockSkew: 1w")).unwrap_err();
        match &err {
            ConfigError::Duration {
                field,
                setting,
                source,
                ..
            } => {
                assert_eq!(*field, "spec.mtls.allowedClockSkew");
                assert_eq!(*setting, "AllowedClockSkew");
                assert_eq!(
                    *source,
                    DurationError::UnknownUnit {
                        unit: "w".into(),
                        input: "1w".into()
                    }
                );
            }
            other => unreachable!("unexpected {other:?}"),
        }
        assert!(std::error::Error::source(&err).is_some());
    }

    #[test]
    fn ttl_checked_before_skew_and_validators() {
        let message = parse_err(&mtls(
            "workloadCertTTL: 1d\nallowedClockSkew: 1d\ntokenValidators:\n  - name: foo",
        ));
        assert!(message.contains("WorkloadCertTTL"), "{message}");
    }

    #[test]
    fn builtin_validators_rejected() {
        let builtin = "invalid token validator: the built-in 'kubernetes' and 'insecure' \
                       validators cannot be configured manually";
        assert_eq!(
            parse_err(&mtls("tokenValidators:\n  - name: kubernetes")),
            format!("config file /x/c.yaml: spec.mtls.tokenValidators[0].name: {builtin}")
        );
        assert_eq!(
            parse_err(&mtls(
                "tokenValidators:\n  - name: jwks\n  - name: INSECURE"
            )),
            format!("config file /x/c.yaml: spec.mtls.tokenValidators[1].name: {builtin}")
        );
        assert!(matches!(
            parse(&mtls("tokenValidators:\n  - name: Kubernetes")),
            Err(ConfigError::BuiltInValidator { index: 0, ref name, .. }) if name == "Kubernetes"
        ));
    }

    #[test]
    fn unknown_validators_rejected() {
        assert_eq!(
            parse_err(&mtls("tokenValidators:\n  - name: foo")),
            "config file /x/c.yaml: spec.mtls.tokenValidators[0].name: invalid token validator \
             name: 'foo'; supported values: 'jwks'"
        );
        // Sentry quotes the name as written, not lower-cased.
        assert_eq!(
            parse_err(&mtls("tokenValidators:\n  - name: OIDC")),
            "config file /x/c.yaml: spec.mtls.tokenValidators[0].name: invalid token validator \
             name: 'OIDC'; supported values: 'jwks'"
        );
        assert_eq!(
            parse_err(&mtls("tokenValidators:\n  - options:\n      a: b")),
            "config file /x/c.yaml: spec.mtls.tokenValidators[0].name: invalid token validator \
             name: ''; supported values: 'jwks'"
        );
    }

    #[test]
    fn jwks_loads_with_its_options() {
        let config = parse(&mtls(
            "tokenValidators:\n  - name: JWKS\n    options:\n      SOURCE: /etc/jwks.json",
        ))
        .unwrap();
        assert_eq!(
            config.token_validators,
            vec![TokenValidatorConfig {
                name: "jwks".into(),
                options: BTreeMap::from([("SOURCE".into(), "/etc/jwks.json".into())]),
            }]
        );
        assert_eq!(parse(REAL_CONFIG).unwrap().token_validators.len(), 1);
    }

    /// Every jwks option error, as the operator sees it at start-up: file, field, reason.
    #[test]
    fn jwks_option_errors_name_the_field() {
        let at = "config file /x/c.yaml: spec.mtls.tokenValidators[0].options";
        let cases: &[(&str, String)] = &[
            (
                "",
                format!(
                    "{at}.source: required: an https:// or http:// URL, a file path, JWKS JSON \
                     or base64 of it"
                ),
            ),
            (
                "\n      source: ''",
                format!(
                    "{at}.source: required: an https:// or http:// URL, a file path, JWKS JSON \
                     or base64 of it"
                ),
            ),
            (
                "\n      source: ftp://x/jwks",
                format!("{at}.source: unsupported URL scheme 'ftp'; use https:// (or http://)"),
            ),
            (
                "\n      source: HTTPS://x/jwks",
                format!("{at}.source: write the URL scheme in lower case ('https://')"),
            ),
            (
                "\n      source: https://x\n      minRefreshInterval: 10 minutes",
                format!(
                    "{at}.minRefreshInterval: expected a duration such as 10m or 30s, or a \
                     number of seconds: time: unknown unit \" minutes\" in duration \"10 minutes\""
                ),
            ),
            (
                "\n      source: https://x\n      requestTimeout: -1s",
                format!(
                    "{at}.requestTimeout: expected a duration such as 10m or 30s, or a number \
                     of seconds: negative duration \"-1s\" is not allowed"
                ),
            ),
            (
                "\n      source: https://x\n      requestTimeout: '99999999999999999999'",
                format!(
                    "{at}.requestTimeout: invalid number of seconds \"99999999999999999999\": \
                     number too large to fit in target type"
                ),
            ),
            (
                "\n      source: https://x\n      Source: https://y",
                format!(
                    "{at}.source: given twice (as 'Source' and 'source'); option names are \
                     case-insensitive"
                ),
            ),
        ];
        for (options, want) in cases {
            let yaml = mtls(&format!(
                "tokenValidators:\n  - name: jwks\n    options:{options}"
            ));
            let err = parse(&yaml).unwrap_err();
            assert!(
                matches!(err, ConfigError::ValidatorOption { index: 0, .. }),
                "{err:?}"
            );
            assert_eq!(&err.to_string(), want, "options:{options}");
        }
        // The index is the entry whose options were kept.
        assert_eq!(
            parse_err(&mtls(
                "tokenValidators:\n  - name: jwks\n    options:\n      source: a\n  - name: Jwks"
            )),
            format!(
                "config file /x/c.yaml: spec.mtls.tokenValidators[1].options.source: required: \
                 an https:// or http:// URL, a file path, JWKS JSON or base64 of it"
            )
        );
    }

    #[test]
    fn repeated_validator_keeps_last_options() {
        let config = parse(&mtls(
            "tokenValidators:\n  - name: jwks\n    options:\n      source: a\n  - name: Jwks\n    options:\n      source: b",
        ))
        .unwrap();
        assert_eq!(config.token_validators.len(), 1);
        assert_eq!(config.token_validators[0].options["source"], "b");
    }

    #[test]
    fn options_values_become_strings() {
        let config = parse(&mtls(
            "tokenValidators:\n  - name: jwks\n    options:\n      \
             source: /etc/jwks.json\n      \
             requestTimeout: 30\n      \
             minRefreshInterval: 90\n      \
             float: 1.5\n      \
             big: 1e3\n      \
             negative: -7\n      \
             hex: 0x10\n      \
             insecure: true\n      \
             off: false\n      \
             empty:\n      \
             quoted: \"42\"\n      \
             list: [1, two]\n      \
             nested: {k: v}",
        ))
        .unwrap();
        let options = &config.token_validators[0].options;
        let want: BTreeMap<String, String> = [
            ("source", "/etc/jwks.json"),
            ("requestTimeout", "30"),
            ("minRefreshInterval", "90"),
            ("float", "1.5"),
            ("big", "1000"),
            ("negative", "-7"),
            ("hex", "16"),
            ("insecure", "true"),
            ("off", "false"),
            ("empty", ""),
            ("quoted", "42"),
            ("list", r#"[1,"two"]"#),
            ("nested", r#"{"k":"v"}"#),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(options, &want);
    }

    #[test]
    fn options_as_json_string_or_null() {
        let config = parse(&mtls(
            "tokenValidators:\n  - name: jwks\n    options: '{\"source\": \"x\", \"n\": 3}'",
        ))
        .unwrap();
        assert_eq!(
            config.token_validators[0].options,
            BTreeMap::from([("n".into(), "3".into()), ("source".into(), "x".into())])
        );
        let err = parse(&mtls("tokenValidators:\n  - name: jwks\n    options:")).unwrap_err();
        assert!(matches!(err, ConfigError::ValidatorOption { .. }), "{err}");
    }

    #[test]
    fn options_of_wrong_shape_rejected() {
        assert_eq!(
            parse_err(&mtls(
                "tokenValidators:\n  - name: jwks\n    options: [a, b]"
            )),
            "config file /x/c.yaml: spec.mtls.tokenValidators[0].options: expected a map, got a list"
        );
        assert_eq!(
            parse_err(&mtls(
                "tokenValidators:\n  - name: jwks\n    options: not json"
            )),
            "config file /x/c.yaml: spec.mtls.tokenValidators[0].options: expected a map, got a \
             string that is not a JSON object"
        );
    }

    #[tokio::test]
    async fn validators_follow_the_config() {
        let health = Health::default();
        let none = start_validators(
            &SentryConfig::default(),
            Path::new(""),
            &health,
            "spiffe://localhost/ns/default/dapr-sentry",
        )
        .unwrap();
        assert_eq!(none.names(), vec!["insecure".to_owned()]);
        let config = SentryConfig::from_yaml(
            "spec:\n  mtls:\n    tokenValidators:\n      - name: jwks\n        options:\n          source: http://127.0.0.1:1/jwks\n",
            Path::new("/x/c.yaml"),
        )
        .unwrap();
        let jwks = start_validators(
            &config,
            Path::new("/x/c.yaml"),
            &health,
            "spiffe://localhost/ns/default/dapr-sentry",
        )
        .unwrap();
        assert_eq!(jwks.names(), vec!["jwks".to_owned()]);
        // The jwks target is registered and not ready: nothing answers on port 1.
        assert!(!health.is_ready());
        let config = SentryConfig::from_yaml(
            "spec:\n  mtls:\n    tokenValidators:\n      - name: jwks\n        options:\n          source: '{\"keys\": []}'\n",
            Path::new("/x/c.yaml"),
        )
        .unwrap();
        assert_eq!(
            start_validators(
                &config,
                Path::new("/x/c.yaml"),
                &health,
                "spiffe://localhost/ns/default/dapr-sentry"
            )
            .unwrap_err()
            .to_string(),
            "config file /x/c.yaml: spec.mtls.tokenValidators[0].options.source: inline JWKS: the \
             JWK Set has no usable key (EC P-256/P-384, RSA or Ed25519 signature keys); 0 skipped"
        );
    }
}

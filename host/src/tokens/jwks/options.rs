//! The validator options (`tokenValidators[i].options`) and the source they name, decoded
//! without touching the disk or the network.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64ct::{Base64, Base64Unpadded, Base64Url, Base64UrlUnpadded, Encoding as _};

/// `minRefreshInterval` when unset or not above [`MIN_REFRESH_FLOOR`].
pub(crate) const DEFAULT_MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(600);
/// `requestTimeout` when unset or not above [`REQUEST_TIMEOUT_FLOOR`].
pub(crate) const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// A `minRefreshInterval` at or below this is ignored (Sentry's rule).
pub(crate) const MIN_REFRESH_FLOOR: Duration = Duration::from_secs(1);
/// A `requestTimeout` at or below this is ignored (Sentry's rule).
pub(crate) const REQUEST_TIMEOUT_FLOOR: Duration = Duration::from_millis(1);

// ---------------------------------------------------------------------------------------------
// Options.

/// The option names, as documented; matched case-insensitively.
pub(super) const OPT_SOURCE: &str = "source";
pub(super) const OPT_CA: &str = "caCertificate";
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
    pub(super) fn new(option: &'static str, reason: impl Into<String>) -> Self {
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

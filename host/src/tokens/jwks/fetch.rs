//! Getting a key set from its source: the HTTP(S) client (with `caCertificate` as its only
//! roots) and one bounded fetch, and one bounded file read.

use std::path::Path;
use std::time::{Duration, Instant};

use super::MAX_JWKS_BYTES;
use super::key_set::{KeySet, KeySetError, error_chain};
use super::options::{JwksOptions, OPT_CA, OPT_SOURCE, OptionError};

pub(super) struct Remote {
    pub(super) url: reqwest::Url,
    pub(super) client: reqwest::Client,
    pub(super) min_refresh_interval: Duration,
    /// When the last fetch started; held across a fetch so concurrent refreshes become one.
    pub(super) last_fetch: tokio::sync::Mutex<Option<Instant>>,
}

impl Remote {
    pub(super) async fn fetch(&self) -> Result<KeySet, KeySetError> {
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

pub(super) fn http_client(
    options: &JwksOptions,
    https: bool,
) -> Result<reqwest::Client, OptionError> {
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

pub(super) fn read_file_set(path: &Path) -> Result<KeySet, KeySetError> {
    let bytes = crate::util::files::read_at_most(path, MAX_JWKS_BYTES).map_err(|e| {
        if e.kind() == std::io::ErrorKind::FileTooLarge {
            KeySetError::FileTooLarge(e)
        } else {
            KeySetError::Read(e)
        }
    })?;
    KeySet::parse(&bytes)
}

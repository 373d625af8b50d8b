//! Caller tokens: the JWKS validator that checks the tokens daprd sends, and the JWT issuer and
//! OIDC server that mint them.
pub(crate) mod jwks;
pub(crate) mod jwt;

use std::sync::Arc;

use tonic::Status;

use crate::proto::sign_certificate_request::TokenValidator;
use jwks::JwksValidator;

/// Which token validators are enabled and which one a request without a choice gets.
#[derive(Clone, Debug)]
pub(crate) struct Validators {
    pub(crate) enabled: Vec<TokenValidator>,
    pub(crate) default: Option<TokenValidator>,
    pub(crate) jwks: Option<Arc<JwksValidator>>,
}

impl Validators {
    /// Self-hosted with no `tokenValidators` configured: `insecure`, as the default.
    pub(crate) fn insecure_default() -> Self {
        Self {
            enabled: vec![TokenValidator::Insecure],
            default: Some(TokenValidator::Insecure),
            jwks: None,
        }
    }

    /// Self-hosted with `tokenValidators` configured: only those are enabled, `insecure` is
    /// off, and there is no default, so clients must name a validator (spec §5).
    pub(crate) fn configured(jwks: Arc<JwksValidator>) -> Self {
        Self {
            enabled: vec![TokenValidator::Jwks],
            default: None,
            jwks: Some(jwks),
        }
    }

    /// The enabled validators' names, for the start-up log.
    pub(crate) fn names(&self) -> Vec<String> {
        self.enabled
            .iter()
            .map(|v| v.as_str_name().to_ascii_lowercase())
            .collect()
    }

    pub(crate) fn select(&self, requested: i32) -> Result<TokenValidator, Status> {
        let chosen = match TokenValidator::try_from(requested) {
            Ok(TokenValidator::Unknown) => self.default,
            Ok(v) => Some(v),
            // A number outside the enum names no validator that could be enabled.
            Err(_) => {
                return Err(Status::invalid_argument(
                    "the requested validator is not enabled",
                ));
            }
        };
        let chosen = chosen.ok_or_else(|| {
            Status::invalid_argument("a validator name must be specified in this environment")
        })?;
        if !self.enabled.contains(&chosen) {
            return Err(Status::invalid_argument(
                "the requested validator is not enabled",
            ));
        }
        Ok(chosen)
    }
}

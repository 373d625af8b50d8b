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

mod fetch;
mod key_set;
mod options;
mod validator;

pub use key_set::{KeySet, TokenError, check_claims, read_header};
pub use options::JwksOptions;
pub(crate) use options::OptionError;
pub(crate) use validator::{HEALTH_TARGET, JwksValidator, VerifyError};

/// The largest JWKS document accepted from a URL or a file.
pub(crate) const MAX_JWKS_BYTES: usize = 1024 * 1024;

#[cfg(test)]
mod tests;

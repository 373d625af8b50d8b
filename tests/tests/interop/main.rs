//! Warden's certificates and CSRs checked by independent implementations: the openssl CLI,
//! python3 `cryptography` and rustls-webpki. One test binary with a module per verifier.
// The whole binary is test code: this lets clippy.toml's `allow-*-in-tests` settings cover the
// helpers outside `#[test]` functions too.
#![cfg(test)]

mod openssl;
mod python;
mod webpki;

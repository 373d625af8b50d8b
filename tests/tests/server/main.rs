//! The `warden` server as a real process (`warden_tests::server::Warden`): issuance, requests,
//! credentials, expiry, the trust bundle, token validators, audit, lifecycle, faults, hostile
//! clients, HSM roots and root rotation. One test binary with a module per area, so the
//! workspace links one executable for all of them.
// The whole binary is test code: this lets clippy.toml's `allow-*-in-tests` settings cover the
// helpers outside `#[test]` functions too.
#![cfg(test)]

mod audit;
mod bundle;
mod credentials;
mod expiry;
mod faults;
mod hostile;
mod hsm;
mod issuance;
mod jwks;
mod jwt;
mod lifecycle;
mod requests;
mod root_rotation;

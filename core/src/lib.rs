//! Warden's signing core: CSRs, SPIFFE X.509 profiles, chain checks and expiry math.
//!
//! `#![no_std]` + `alloc`: it never reads a clock, a file or the OS. Time ([`UnixTime`]) and
//! randomness (a `rand_core::CryptoRng`) are arguments, so the same code runs in the `warden`
//! server, behind an HSM, in a browser and on a microcontroller.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod time;

pub use time::UnixTime;
pub mod bundle;
pub mod certificate;
pub mod chain;
pub mod crypto;
pub mod csr;
pub mod expiry;
pub mod pem;
pub mod profile;
pub mod schedule;
pub mod sentry;
mod signed;
pub mod spiffe;
#[cfg(test)]
mod test_pki;
#[cfg(test)]
mod test_rng;

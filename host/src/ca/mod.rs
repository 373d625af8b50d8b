//! The CA proper: the `SignCertificate` handler (request rules, token validation, issuance) and
//! the audit log it writes one line to for every certificate.
pub mod audit;
pub mod service;

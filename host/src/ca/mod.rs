//! The CA proper: the `SignCertificate` handler (request rules, token validation, issuance) and
//! the audit log it writes one line to for every certificate.
pub(crate) mod audit;
pub(crate) mod service;

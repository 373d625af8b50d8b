//! Changing the CA's keys and certificates: issuer rotation (by hand or automatic, with a
//! software or HSM root), root rotation with overlapping trust anchors, and signing an issuer
//! CSR for another CA (an edge device).
pub(crate) mod issuer;
pub(crate) mod root;
pub(crate) mod sign_csr;

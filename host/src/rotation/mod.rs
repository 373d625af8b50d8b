//! Changing the CA's keys and certificates: issuer rotation (by hand or automatic, with a
//! software or HSM root), root rotation with overlapping trust anchors, and signing an issuer
//! CSR for another CA (an edge device).
pub(crate) mod issuer;
pub(crate) mod root;
pub(crate) mod sign_csr;

use warden_core::spiffe::SpiffeId;
use x509_cert::Certificate;

/// The string values of a certificate's subject `O=` attributes.
pub(crate) fn subject_o(cert: &Certificate) -> impl Iterator<Item = String> + '_ {
    subject_attributes(cert, const_oid::db::rfc4519::O)
}

/// The UTF8String or PrintableString values of the subject's `oid` attributes, in order.
pub(crate) fn subject_attributes(
    cert: &Certificate,
    oid: const_oid::ObjectIdentifier,
) -> impl Iterator<Item = String> + '_ {
    cert.tbs_certificate()
        .subject()
        .iter()
        .filter(move |atv| atv.oid == oid)
        .filter_map(|atv| {
            der::asn1::Utf8StringRef::try_from(&atv.value)
                .map(|s| s.as_str().to_owned())
                .or_else(|_| {
                    der::asn1::PrintableStringRef::try_from(&atv.value)
                        .map(|s| s.as_str().to_owned())
                })
                .ok()
        })
}

/// The Sentry SPIFFE ID of an issuer certificate: the first of its subject `O=` values that is a
/// SPIFFE ID (`spiffe://<td>/ns/<ns>/dapr-sentry`). Issuer rotation, root rotation and
/// `sign-csr` all read it here.
pub(crate) fn sentry_id_of(issuer: &Certificate) -> Option<SpiffeId> {
    subject_o(issuer).find_map(|o| SpiffeId::parse(&o).ok())
}

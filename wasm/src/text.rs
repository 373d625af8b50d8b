//! Text for certificate names and chain errors, written here rather than by the `Display`
//! impls of x509-cert and warden-core.
//!
//! Those impls look OIDs up in const-oid's name database (`OidName` in core's errors, short
//! attribute names in x509-cert's `Name`). Calling them links the whole database, ~140 KiB of
//! the .wasm, more than half the 250 KiB budget. So names are shown with a short table
//! of the attribute types X.509 CAs use and errors with core's wording but dotted OIDs. The
//! native unit tests below check the wording against core's `Display`, so it cannot drift.

use alloc::format;
use alloc::string::String;
use core::fmt::Write as _;

use const_oid::ObjectIdentifier;
use der::Encode;
use der::asn1::{Ia5StringRef, PrintableStringRef, TeletexStringRef, Utf8StringRef};
use der::{Tag, Tagged};
use warden_core::certificate::{AttributeRef, NameRef};
use warden_core::chain::{ChainError, SvidError};
use warden_core::crypto::{MAX_RSA_BITS, MIN_RSA_BITS, VerifyError};

/// RFC 4514 short names (as x509-cert prints them) of the attribute types seen in CA names.
const ATTRIBUTE_NAMES: [(ObjectIdentifier, &str); 11] = [
    (ObjectIdentifier::new_unwrap("2.5.4.3"), "CN"),
    (ObjectIdentifier::new_unwrap("2.5.4.5"), "SERIALNUMBER"),
    (ObjectIdentifier::new_unwrap("2.5.4.6"), "C"),
    (ObjectIdentifier::new_unwrap("2.5.4.7"), "L"),
    (ObjectIdentifier::new_unwrap("2.5.4.8"), "ST"),
    (ObjectIdentifier::new_unwrap("2.5.4.9"), "STREET"),
    (ObjectIdentifier::new_unwrap("2.5.4.10"), "O"),
    (ObjectIdentifier::new_unwrap("2.5.4.11"), "OU"),
    (
        ObjectIdentifier::new_unwrap("0.9.2342.19200300.100.1.1"),
        "UID",
    ),
    (
        ObjectIdentifier::new_unwrap("0.9.2342.19200300.100.1.25"),
        "DC",
    ),
    (
        ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.1"),
        "EMAILADDRESS",
    ),
];

/// A name as RFC 4514 text (last RDN first), like x509-cert's `Display` for the attribute
/// types in [`ATTRIBUTE_NAMES`]; others as `dotted.oid=#hex-of-DER`.
pub(crate) fn name(name: NameRef<'_>) -> String {
    let mut out = String::new();
    for (i, rdn) in name.rdns().iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, atv) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            attribute(&mut out, atv);
        }
    }
    out
}

fn attribute(out: &mut String, atv: &AttributeRef<'_>) {
    let value = match atv.value.tag() {
        Tag::PrintableString => PrintableStringRef::try_from(atv.value)
            .ok()
            .map(|s| s.as_str()),
        Tag::Utf8String => Utf8StringRef::try_from(atv.value).ok().map(|s| s.as_str()),
        Tag::Ia5String => Ia5StringRef::try_from(atv.value).ok().map(|s| s.as_str()),
        Tag::TeletexString => TeletexStringRef::try_from(atv.value)
            .ok()
            .map(|s| s.as_str()),
        _ => None,
    };
    let key = ATTRIBUTE_NAMES
        .iter()
        .find(|(oid, _)| *oid == atv.oid)
        .map(|(_, key)| *key);
    // Writing to a String cannot fail.
    match (key, value) {
        (Some(key), Some(value)) => {
            out.push_str(key);
            out.push('=');
            let mut chars = value.char_indices().peekable();
            while let Some((i, c)) = chars.next() {
                match c {
                    '#' if i == 0 => out.push_str("\\#"),
                    ' ' if i == 0 || chars.peek().is_none() => out.push_str("\\ "),
                    '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                        out.push('\\');
                        out.push(c);
                    }
                    '\x00'..='\x1f' | '\x7f' => {
                        let _ = write!(out, "\\{:02x}", c as u32);
                    }
                    _ => out.push(c),
                }
            }
        }
        _ => {
            let _ = write!(out, "{}=#", atv.oid);
            hex(out, &atv.value.to_der().unwrap_or_default());
        }
    }
}

/// Lowercase hex.
pub(crate) fn hex(out: &mut String, bytes: &[u8]) {
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
}

/// Core's `SvidError` text (see the module docs for why it is not `to_string()`).
pub(crate) fn svid_error(e: &SvidError) -> String {
    match e {
        SvidError::Chain(e) => chain_error(e),
        SvidError::LeafIsCa => "leaf certificate is a CA or has keyCertSign/cRLSign".into(),
        SvidError::KeyUsage => {
            "leaf keyUsage must be present, critical and include digitalSignature".into()
        }
        SvidError::UriSanCount(n) => format!("leaf must have exactly one URI SAN, found {n}"),
        SvidError::NotSpiffeId(uri) => format!("URI SAN {uri:?} is not a SPIFFE workload ID"),
        SvidError::SanNotCritical => {
            "subject is empty but the SAN extension is not critical".into()
        }
        SvidError::Malformed(e) => format!("malformed leaf extension: {e}"),
        // Not `{other:?}`: Debug of core's errors would add their formatting code to the .wasm.
        _ => "the leaf is not an X509-SVID".into(),
    }
}

fn chain_error(e: &ChainError) -> String {
    let at = |p: &Option<usize>| match p {
        Some(i) => format!("certificate {i}"),
        None => String::from("trust anchor"),
    };
    match e {
        ChainError::Empty => "certificate chain is empty".into(),
        ChainError::NoTrustAnchors => "no trust anchors".into(),
        ChainError::Malformed { position, error } => {
            format!("certificate {position} is malformed: {error}")
        }
        ChainError::Expired {
            position,
            not_after,
        } => format!("{} expired at {not_after}", at(position)),
        ChainError::NotYetValid {
            position,
            not_before,
        } => format!("{} is not valid before {not_before}", at(position)),
        ChainError::IssuerNameMismatch { position } => format!(
            "certificate {position}'s issuer is not the subject of the certificate after it"
        ),
        ChainError::BadSignature { position, error } => {
            format!("certificate {position} signature: {}", verify_error(error))
        }
        ChainError::NotCa { position } => format!("{} is not a CA", at(position)),
        ChainError::PathLenExceeded { position } => {
            format!("{} path length constraint exceeded", at(position))
        }
        ChainError::UnknownCriticalExtension { position, oid } => {
            format!("certificate {position} has unknown critical extension {oid}")
        }
        ChainError::UnknownIssuer => "certificate signed by unknown authority".into(),
        _ => "the certificate chain does not verify".into(),
    }
}

fn verify_error(e: &VerifyError) -> String {
    match e {
        VerifyError::UnsupportedKeyType(oid) => format!("unsupported public key type {oid}"),
        VerifyError::RsaKeySize(bits) => format!(
            "unsupported RSA key size {bits} bits (accepted: {MIN_RSA_BITS}-{MAX_RSA_BITS})"
        ),
        VerifyError::UnsupportedSignatureAlgorithm(oid) => {
            format!("unsupported signature algorithm {oid}")
        }
        VerifyError::AlgorithmKeyMismatch => {
            "signature algorithm does not match the public key type".into()
        }
        VerifyError::MalformedKey => "malformed public key".into(),
        VerifyError::MalformedSignature => "malformed signature".into(),
        VerifyError::BadSignature => "signature verification failed".into(),
        _ => "signature not verified".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use std::str::FromStr;
    use warden_core::UnixTime;
    use x509_cert::name::Name;

    /// Same words as core's `Display` (which the .wasm must not link); OIDs without names.
    #[test]
    fn errors_read_like_cores() {
        let der_error = der::Error::from(der::ErrorKind::Failed);
        let chain_errors = [
            ChainError::Empty,
            ChainError::NoTrustAnchors,
            ChainError::Malformed {
                position: 1,
                error: der_error,
            },
            ChainError::Expired {
                position: Some(0),
                not_after: UnixTime::from_secs(1_800_000_000),
            },
            ChainError::NotYetValid {
                position: None,
                not_before: UnixTime::from_secs(1_800_000_000),
            },
            ChainError::IssuerNameMismatch { position: 0 },
            ChainError::NotCa { position: Some(1) },
            ChainError::NotCa { position: None },
            ChainError::PathLenExceeded { position: None },
            ChainError::UnknownIssuer,
        ];
        let verify_errors = [
            VerifyError::RsaKeySize(1024),
            VerifyError::AlgorithmKeyMismatch,
            VerifyError::MalformedKey,
            VerifyError::MalformedSignature,
            VerifyError::BadSignature,
        ];
        let svid_errors = chain_errors
            .into_iter()
            .chain(
                verify_errors
                    .into_iter()
                    .map(|error| ChainError::BadSignature { position: 0, error }),
            )
            .map(SvidError::Chain)
            .chain([
                SvidError::LeafIsCa,
                SvidError::KeyUsage,
                SvidError::UriSanCount(2),
                SvidError::NotSpiffeId(String::from("https://x")),
                SvidError::SanNotCritical,
                SvidError::Malformed(der_error),
            ]);
        for e in svid_errors {
            assert_eq!(svid_error(&e), e.to_string());
        }
        let oid = ObjectIdentifier::new_unwrap("1.2.840.10040.4.1");
        let e = SvidError::Chain(ChainError::UnknownCriticalExtension { position: 0, oid });
        assert_eq!(
            svid_error(&e),
            "certificate 0 has unknown critical extension 1.2.840.10040.4.1"
        );
        assert!(e.to_string().starts_with(&svid_error(&e)));
    }

    #[test]
    fn names_read_like_x509_cert() {
        for text in [
            "CN=Example CA,O=cluster.local",
            "O=dapr-system+OU=sentry,C=US",
            "CN=a\\,b\\+c,DC=example,DC=org",
        ] {
            let parsed = Name::from_str(text).unwrap();
            let der = parsed.to_der().unwrap();
            assert_eq!(
                name(NameRef::from_der(&der).unwrap()),
                parsed.to_string(),
                "{text}"
            );
        }
        assert_eq!(name(NameRef::from_der(&[0x30, 0x00]).unwrap()), "");
    }
}

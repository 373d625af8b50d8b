//! SHA-256 digests as the audit log, status reports and the trust bundle print them (hex comes
//! from `base16ct`, the workspace's one hex codec).

use der::Encode as _;
use x509_cert::Certificate;

/// SHA-256 of `bytes`, lowercase hex.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    base16ct::lower::encode_string(
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref(),
    )
}

/// SHA-256 fingerprint of a certificate's DER, lowercase hex (empty DER if it cannot be
/// encoded, which a parsed certificate always can).
pub fn fingerprint(cert: &Certificate) -> String {
    sha256_hex(&cert.to_der().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        // The audit key file and the audit log rely on exactly these hex rules.
        assert_eq!(
            base16ct::lower::encode_string(&[0x00, 0xab, 0xff]),
            "00abff"
        );
        assert_eq!(
            base16ct::mixed::decode_vec("00abFF").ok(),
            Some(vec![0x00, 0xab, 0xff])
        );
        assert_eq!(base16ct::mixed::decode_vec("abc").ok(), None);
        assert_eq!(base16ct::mixed::decode_vec("zz").ok(), None);
        assert_eq!(base16ct::mixed::decode_vec("+a").ok(), None);
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}

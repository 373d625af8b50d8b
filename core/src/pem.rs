//! PEM framing shared by CSRs, credential bundles and responses.
//!
//! Go's `pem.Decode` (which Sentry and daprd use) skips text around blocks, so files with
//! comments keep working; the base64 inside a block is decoded strictly by `pem-rfc7468`.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

pub(crate) const CERTIFICATE_LABEL: &str = "CERTIFICATE";

const BEGIN: &str = "-----BEGIN ";
const END: &str = "-----END ";
const DASHES: &str = "-----";

/// One decoded PEM block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PemBlock<'a> {
    pub(crate) label: &'a str,
    pub(crate) der: Vec<u8>,
}

/// Why PEM text could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PemError {
    /// The input is not UTF-8 text.
    NotText,
    /// A `-----BEGIN` line has no matching `-----END` line.
    Unterminated,
    /// The block's base64 or framing is invalid.
    Malformed(pem_rfc7468::Error),
}

impl fmt::Display for PemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotText => f.write_str("PEM input is not UTF-8 text"),
            Self::Unterminated => f.write_str("PEM block has no END line"),
            Self::Malformed(e) => write!(f, "malformed PEM block: {e}"),
        }
    }
}

impl core::error::Error for PemError {}

/// Finds the next PEM block in `text`; returns it and the text after it, or `None` when there
/// is no further `-----BEGIN` line.
///
/// The base64 body may be wrapped at any width (or not at all), as Go's `pem.Decode` allows:
/// BYO files made by other tools are not always wrapped at 64 columns.
pub(crate) fn next_block(text: &str) -> Result<Option<(PemBlock<'_>, &str)>, PemError> {
    let Some(start) = text.find(BEGIN) else {
        return Ok(None);
    };
    let after_begin = text
        .get(start + BEGIN.len()..)
        .ok_or(PemError::Unterminated)?;
    let label_len = after_begin.find(DASHES).ok_or(PemError::Unterminated)?;
    let label = after_begin.get(..label_len).ok_or(PemError::Unterminated)?;
    let body_and_rest = after_begin
        .get(label_len + DASHES.len()..)
        .ok_or(PemError::Unterminated)?;
    let end_at = body_and_rest.find(END).ok_or(PemError::Unterminated)?;
    let body = body_and_rest.get(..end_at).ok_or(PemError::Unterminated)?;
    let after_end = body_and_rest
        .get(end_at + END.len()..)
        .ok_or(PemError::Unterminated)?;
    let end_label_len = after_end.find(DASHES).ok_or(PemError::Unterminated)?;
    if after_end.get(..end_label_len) != Some(label) {
        return Err(PemError::Malformed(
            pem_rfc7468::Error::PostEncapsulationBoundary,
        ));
    }
    let rest = after_end
        .get(end_label_len + DASHES.len()..)
        .unwrap_or_default();
    let base64: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let der = <base64ct::Base64 as base64ct::Encoding>::decode_vec(&base64)
        .map_err(|e| PemError::Malformed(pem_rfc7468::Error::Base64(e)))?;
    Ok(Some((PemBlock { label, der }, rest)))
}

/// Every PEM block in `text`, in order.
pub(crate) fn all_blocks(mut text: &str) -> Result<Vec<PemBlock<'_>>, PemError> {
    let mut blocks = Vec::new();
    while let Some((block, rest)) = next_block(text)? {
        blocks.push(block);
        text = rest;
    }
    Ok(blocks)
}

/// `bytes` as text, or [`PemError::NotText`].
pub(crate) fn as_text(bytes: &[u8]) -> Result<&str, PemError> {
    core::str::from_utf8(bytes).map_err(|_| PemError::NotText)
}

/// Appends `der` as a PEM block with `label` (LF line endings, 64 columns, as Go writes).
pub(crate) fn encode_into(out: &mut String, label: &str, der: &[u8]) -> Result<(), PemError> {
    let pem = pem_rfc7468::encode_string(label, pem_rfc7468::LineEnding::LF, der)
        .map_err(PemError::Malformed)?;
    out.push_str(&pem);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: &str = "-----BEGIN CERTIFICATE-----\nAQID\n-----END CERTIFICATE-----\n";

    #[test]
    fn skips_text_around_blocks() {
        let text = alloc::format!("# comment\n{ONE}between\n{ONE}trailer");
        let blocks = all_blocks(&text).unwrap();
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].label, "CERTIFICATE");
        assert_eq!(blocks[1].der, [1, 2, 3]);
    }

    #[test]
    fn rejects_unterminated_and_bad_base64() {
        assert_eq!(
            next_block("-----BEGIN CERTIFICATE-----\nAQID\n").unwrap_err(),
            PemError::Unterminated
        );
        assert!(matches!(
            next_block("-----BEGIN X-----\n!!!!\n-----END X-----\n").unwrap_err(),
            PemError::Malformed(_)
        ));
        assert!(matches!(
            next_block("-----BEGIN X-----\nAQID\n-----END Y-----\n").unwrap_err(),
            PemError::Malformed(_)
        ));
    }

    #[test]
    fn accepts_any_base64_wrap_width_like_go() {
        let one_line = "-----BEGIN X-----\nAQIDBAUG\n-----END X-----\n";
        let narrow = "-----BEGIN X-----\nAQID\r\nBAUG\r\n-----END X-----\n";
        for text in [one_line, narrow] {
            let (block, _) = next_block(text).unwrap().unwrap();
            assert_eq!(block.der, [1, 2, 3, 4, 5, 6]);
        }
    }

    #[test]
    fn round_trips() {
        let mut out = String::new();
        encode_into(&mut out, CERTIFICATE_LABEL, &[1, 2, 3]).unwrap();
        assert_eq!(out, ONE);
        let (block, rest) = next_block(&out).unwrap().unwrap();
        assert_eq!(block.der, [1, 2, 3]);
        assert_eq!(rest, "\n");
    }
}

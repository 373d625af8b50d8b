//! Go's `time.Duration`: parsing as `time.ParseDuration` does (config values, flags) and
//! formatting as `Duration.String` does (log lines), so values and texts match Sentry's.

use std::fmt::Write as _;
use std::time::Duration;

/// A duration Go's `time.ParseDuration` would reject, or one Warden cannot use.
///
/// The messages are Go's, word for word, so an operator who searches for them finds the same
/// answers as for Sentry.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DurationError {
    /// Not the duration grammar, or out of Go's range (about 292 years).
    #[error("time: invalid duration {}", go_quote(.input))]
    Invalid {
        /// The text as given.
        input: String,
    },
    /// A number without a unit, as in `10`.
    #[error("time: missing unit in duration {}", go_quote(.input))]
    MissingUnit {
        /// The text as given.
        input: String,
    },
    /// A unit outside ns, us, µs, μs, ms, s, m, h (for example `d`).
    #[error("time: unknown unit {} in duration {}", go_quote(.unit), go_quote(.input))]
    UnknownUnit {
        /// The unit as written.
        unit: String,
        /// The text as given.
        input: String,
    },
    /// Valid for Go, but below zero: no lifetime or skew can be negative.
    #[error("negative duration {} is not allowed", go_quote(.input))]
    Negative {
        /// The text as given.
        input: String,
    },
}

/// Go's `time.Duration` limit in nanoseconds, plus one: the bound its parser checks against.
const GO_DURATION_BOUND: u64 = 1 << 63;

/// Parses a duration exactly as Go's `time.ParseDuration` does, minus negative values.
///
/// Dapr config files are written for Go, so `1h30m`, `.5s` and `1µs` must mean what they mean
/// to Sentry, and `1d` or `10` must fail as they fail there. The range is Go's too
/// (`i64::MAX` nanoseconds), so a value Sentry accepts is never refused for size.
///
/// # Errors
///
/// Go's three errors ([`DurationError::Invalid`], [`DurationError::MissingUnit`],
/// [`DurationError::UnknownUnit`]) with Go's text, and [`DurationError::Negative`] for a
/// value below zero.
pub fn parse_go_duration(s: &str) -> Result<Duration, DurationError> {
    let invalid = || DurationError::Invalid {
        input: s.to_owned(),
    };
    let (negative, mut rest) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: u64 = 0;
    while !rest.is_empty() {
        if !rest.starts_with(|c: char| c == '.' || c.is_ascii_digit()) {
            return Err(invalid());
        }
        let (mut value, after_int) = leading_int(rest).ok_or_else(invalid)?;
        let has_int = after_int.len() != rest.len();
        rest = after_int;

        let mut fraction = 0;
        let mut scale = 1.0;
        let mut has_fraction = false;
        if let Some(after_dot) = rest.strip_prefix('.') {
            let (f, sc, after_fraction) = leading_fraction(after_dot);
            has_fraction = after_fraction.len() != after_dot.len();
            (fraction, scale, rest) = (f, sc, after_fraction);
        }
        if !has_int && !has_fraction {
            return Err(invalid());
        }

        let unit_len = rest
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(rest.len());
        let Some((unit, after_unit)) = rest.split_at_checked(unit_len) else {
            return Err(invalid());
        };
        if unit.is_empty() {
            return Err(DurationError::MissingUnit {
                input: s.to_owned(),
            });
        }
        rest = after_unit;
        let unit_nanos = unit_nanos(unit).ok_or_else(|| DurationError::UnknownUnit {
            unit: unit.to_owned(),
            input: s.to_owned(),
        })?;

        if value > GO_DURATION_BOUND / unit_nanos {
            return Err(invalid());
        }
        value *= unit_nanos;
        if fraction > 0 {
            // Go computes the fractional part in float64 (exact to the nanosecond up to hours)
            // and truncates; doing the same gives the same nanosecond count.
            #[allow(
                clippy::cast_precision_loss,
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss
            )]
            let extra = (fraction as f64 * (unit_nanos as f64 / scale)) as u64;
            value = value.checked_add(extra).ok_or_else(invalid)?;
            if value > GO_DURATION_BOUND {
                return Err(invalid());
            }
        }
        total = total.checked_add(value).ok_or_else(invalid)?;
        if total > GO_DURATION_BOUND {
            return Err(invalid());
        }
    }
    if negative && total > 0 {
        return Err(DurationError::Negative {
            input: s.to_owned(),
        });
    }
    if total > GO_DURATION_BOUND - 1 {
        return Err(invalid());
    }
    Ok(Duration::from_nanos(total))
}

/// Consumes leading ASCII digits; `None` when the number passes Go's bound.
fn leading_int(s: &str) -> Option<(u64, &str)> {
    let len = s.bytes().take_while(u8::is_ascii_digit).count();
    let (digits, rest) = s.split_at_checked(len)?;
    let mut x: u64 = 0;
    for digit in digits.bytes() {
        if x > GO_DURATION_BOUND / 10 {
            return None;
        }
        x = x * 10 + u64::from(digit - b'0');
        if x > GO_DURATION_BOUND {
            return None;
        }
    }
    Some((x, rest))
}

/// Consumes leading fraction digits as Go does: digits past the precision are skipped, not an
/// error. Returns the digits as an integer, ten to the number of digits kept, and the rest.
fn leading_fraction(s: &str) -> (u64, f64, &str) {
    let len = s.bytes().take_while(u8::is_ascii_digit).count();
    let (digits, rest) = s.split_at_checked(len).unwrap_or(("", s));
    let mut x: u64 = 0;
    let mut scale = 1.0;
    for digit in digits.bytes() {
        if x > (GO_DURATION_BOUND - 1) / 10 {
            break;
        }
        let next = x * 10 + u64::from(digit - b'0');
        if next > GO_DURATION_BOUND {
            break;
        }
        x = next;
        scale *= 10.0;
    }
    (x, scale, rest)
}

/// Nanoseconds in one Go duration unit.
fn unit_nanos(unit: &str) -> Option<u64> {
    Some(match unit {
        "ns" => 1,
        // U+00B5 MICRO SIGN and U+03BC GREEK SMALL LETTER MU, both accepted by Go.
        "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60 * 1_000_000_000,
        "h" => 60 * 60 * 1_000_000_000,
        _ => return None,
    })
}

/// Quotes text the way Go's `time` package does in its errors: ASCII as is (with `"` and `\`
/// escaped), every byte of a control or non-ASCII character as `\xNN`.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c.is_ascii() && c >= ' ' {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        } else {
            let mut buf = [0; 4];
            for byte in c.encode_utf8(&mut buf).bytes() {
                // Writing to a String cannot fail.
                let _ = write!(out, "\\x{byte:02x}");
            }
        }
    }
    out.push('"');
    out
}
/// Go's `Duration.String` for whole seconds and above (`8759h59m59s`), which is what the
/// "still valid for" line prints after truncation to seconds.
pub(crate) fn go_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS: u64 = 1;
    const US: u64 = 1_000;
    const MS: u64 = 1_000_000;
    const S: u64 = 1_000_000_000;
    const M: u64 = 60 * S;
    const H: u64 = 60 * M;

    #[test]
    fn go_durations_accepted() {
        let cases: &[(&str, u64)] = &[
            ("24h", 24 * H),
            ("15m", 15 * M),
            ("1h30m", H + 30 * M),
            ("25s", 25 * S),
            ("1.5h", H + 30 * M),
            ("300ms", 300 * MS),
            ("1h1m1s1ms1us1ns", H + M + S + MS + US + NS),
            ("0", 0),
            ("+0", 0),
            ("-0", 0),
            ("0s", 0),
            ("-0s", 0),
            ("+5m", 5 * M),
            (".5s", 500 * MS),
            ("5.s", 5 * S),
            ("1\u{b5}s", US),
            ("1\u{3bc}s", US),
            ("1.000000001s", S + 1),
            ("0.3333333333333333333h", 1_200_000_000_000),
            ("2562047h47m16.854775807s", (1 << 63) - 1),
            ("9223372036854775807ns", (1 << 63) - 1),
        ];
        for &(text, nanos) in cases {
            assert_eq!(
                parse_go_duration(text),
                Ok(Duration::from_nanos(nanos)),
                "{text}"
            );
        }
    }

    #[test]
    fn go_durations_rejected() {
        let cases: &[(&str, &str)] = &[
            ("", r#"time: invalid duration """#),
            ("1d", r#"time: unknown unit "d" in duration "1d""#),
            ("10", r#"time: missing unit in duration "10""#),
            ("h", r#"time: invalid duration "h""#),
            ("-5m", r#"negative duration "-5m" is not allowed"#),
            ("-1ns", r#"negative duration "-1ns" is not allowed"#),
            ("1..5s", r#"time: missing unit in duration "1..5s""#),
            ("1e3s", r#"time: unknown unit "e" in duration "1e3s""#),
            ("-", r#"time: invalid duration "-""#),
            ("+", r#"time: invalid duration "+""#),
            (".s", r#"time: invalid duration ".s""#),
            ("1h ", r#"time: unknown unit "h " in duration "1h ""#),
            (" 1h", r#"time: invalid duration " 1h""#),
            ("1H", r#"time: unknown unit "H" in duration "1H""#),
            (
                "5m\u{e9}",
                r#"time: unknown unit "m\xc3\xa9" in duration "5m\xc3\xa9""#,
            ),
            ("1\"s", r#"time: unknown unit "\"s" in duration "1\"s""#),
            ("1\ts", r#"time: unknown unit "\x09s" in duration "1\x09s""#),
            (
                "99999999999999999999h",
                r#"time: invalid duration "99999999999999999999h""#,
            ),
            ("3000000h", r#"time: invalid duration "3000000h""#),
            (
                "9223372036854775808ns",
                r#"time: invalid duration "9223372036854775808ns""#,
            ),
            (
                "2562047h47m16.854775808s",
                r#"time: invalid duration "2562047h47m16.854775808s""#,
            ),
            (
                "9223372036854775808ns9223372036854775808ns",
                r#"time: invalid duration "9223372036854775808ns9223372036854775808ns""#,
            ),
        ];
        for &(text, message) in cases {
            let err = parse_go_duration(text).unwrap_err();
            assert_eq!(err.to_string(), message, "{text:?}");
        }
    }

    #[test]
    fn go_duration_format() {
        assert_eq!(go_duration(Duration::from_secs(0)), "0s");
        assert_eq!(go_duration(Duration::from_secs(59)), "59s");
        assert_eq!(go_duration(Duration::from_secs(61)), "1m1s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(
            go_duration(Duration::from_secs(365 * 24 * 3600 - 1)),
            "8759h59m59s"
        );
    }
}

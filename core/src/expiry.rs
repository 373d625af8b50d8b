//! CA certificate expiry checks, with the warning texts Dapr Sentry 1.11 and earlier logged.
//!
//! Sentry's `watchCertExpiry` checked the root certificate every hour. Operators' alerting
//! matches on its log lines, so the texts are reproduced byte for byte. The check is a pure
//! function of `NotAfter` and `now`; the caller owns the clock and the schedule.

use core::fmt::Write as _;
use core::time::Duration;

use crate::time::UnixTime;

/// How long before `NotAfter` the warning starts: 30 days, as in Sentry.
pub const EXPIRY_WARNING_WINDOW: Duration = Duration::from_secs(30 * 24 * SECS_PER_HOUR);

const SECS_PER_HOUR: u64 = 60 * 60;

/// Where a certificate stands relative to its `NotAfter`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpiryStatus {
    /// `now` is after `NotAfter`.
    Expired,
    /// `NotAfter` is less than [`EXPIRY_WARNING_WINDOW`] away (or is exactly `now`). The whole
    /// hours left, truncated, are split into `days` and the remaining `hours` (0 to 23).
    ExpiresSoon {
        /// Whole days left.
        days: u64,
        /// Whole hours left beyond `days`.
        hours: u64,
    },
    /// `NotAfter` is at least [`EXPIRY_WARNING_WINDOW`] away.
    Valid {
        /// Time left until `NotAfter`.
        remaining: Duration,
    },
}

impl ExpiryStatus {
    /// Whether Sentry would log a warning for this status.
    pub fn is_warning(&self) -> bool {
        matches!(self, Self::Expired | Self::ExpiresSoon { .. })
    }
}

/// Classifies a certificate expiring at `not_after`, as seen at `now`.
///
/// This follows Sentry's Go code: expired only when `now` is strictly after `NotAfter` (Go's
/// `certExpiry.Before(now)`), so at exactly `NotAfter` the certificate still "expires in 0 days
/// and 0 hours"; warned about when `NotAfter - 30 days` is strictly before `now`.
pub fn expiry_status(not_after: UnixTime, now: UnixTime) -> ExpiryStatus {
    if now > not_after {
        return ExpiryStatus::Expired;
    }
    // Comparing the time left with the window, rather than subtracting the window from
    // `not_after`, avoids saturating at the epoch: Go's times can go below it, `UnixTime`
    // cannot, and a `not_after` within 30 days of the epoch would otherwise look valid.
    let remaining = now.until(not_after);
    if remaining < EXPIRY_WARNING_WINDOW {
        // Go takes int(Hours()), truncating; whole seconds give the same whole hours.
        let h = remaining.as_secs() / SECS_PER_HOUR;
        ExpiryStatus::ExpiresSoon {
            days: h / 24,
            hours: h % 24,
        }
    } else {
        ExpiryStatus::Valid { remaining }
    }
}

/// Which CA certificate a warning is about; it only changes the wording.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CaCertKind {
    /// The trust anchor (`ca.crt`), the certificate Sentry itself watched.
    Root,
    /// The issuer (`issuer.crt`) that signs workload certificates.
    Issuer,
}

impl CaCertKind {
    /// How Sentry's log lines name the certificate ("Dapr root certificate").
    pub const fn subject(self) -> &'static str {
        match self {
            Self::Root => "Dapr root certificate",
            Self::Issuer => "Dapr issuer certificate",
        }
    }
}

/// The warning Sentry logs, or `None` when the certificate is still valid beyond the window.
///
/// The texts are Sentry's exactly, including the period after "has expired" and its absence
/// after "hours":
///
/// - `Dapr root certificate expiration warning: certificate has expired.`
/// - `Dapr root certificate expiration warning: certificate expires in 2 days and 15 hours`
///
/// [`CaCertKind::Issuer`] says `Dapr issuer certificate` instead.
pub fn expiry_warning(
    kind: CaCertKind,
    not_after: UnixTime,
    now: UnixTime,
) -> Option<heapless::String<128>> {
    warning_text(kind, expiry_status(not_after, now))
}

const WARNING_CAPACITY: usize = 128;

const EXPIRED_TAIL: &str = " expiration warning: certificate has expired.";
const EXPIRES_IN: &str = " expiration warning: certificate expires in ";
const DAYS_AND: &str = " days and ";
const HOURS: &str = " hours";

/// Decimal digits in `u64::MAX` (18446744073709551615).
const MAX_U64_DIGITS: usize = 20;

const LONGEST_SUBJECT: usize = max(
    CaCertKind::Issuer.subject().len(),
    CaCertKind::Root.subject().len(),
);

/// The longest text `warning_text` can write: the longer subject, and both numbers as wide as
/// any `u64` (only `ExpiresSoon` values built by hand get near that; `expiry_status` keeps
/// `days` below 30).
const LONGEST_WARNING: usize = LONGEST_SUBJECT
    + EXPIRES_IN.len()
    + MAX_U64_DIGITS
    + DAYS_AND.len()
    + MAX_U64_DIGITS
    + HOURS.len();

// With these the writes below cannot run out of room, so a warning is never cut short. The
// longest is 123 bytes today; a longer subject that breaks this must grow the buffer.
const _: () = assert!(LONGEST_WARNING <= WARNING_CAPACITY);
const _: () = assert!(LONGEST_SUBJECT + EXPIRED_TAIL.len() <= WARNING_CAPACITY);

const fn max(a: usize, b: usize) -> usize {
    if a > b { a } else { b }
}

fn warning_text(kind: CaCertKind, status: ExpiryStatus) -> Option<heapless::String<128>> {
    // Naming the capacity here ties the const assertions above to the returned type: a
    // mismatch fails to compile.
    let mut out = heapless::String::<WARNING_CAPACITY>::new();
    let written = match status {
        ExpiryStatus::Valid { .. } => return None,
        ExpiryStatus::Expired => write!(out, "{}{EXPIRED_TAIL}", kind.subject()),
        ExpiryStatus::ExpiresSoon { days, hours } => write!(
            out,
            "{}{EXPIRES_IN}{days}{DAYS_AND}{hours}{HOURS}",
            kind.subject()
        ),
    };
    // Unreachable by the assertions on LONGEST_WARNING; a failure would be dropped rather than
    // returned truncated, and the u64::MAX test would catch it.
    written.ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: u64 = SECS_PER_HOUR;
    const DAY: u64 = 24 * HOUR;
    /// An arbitrary `NotAfter`, 2026-11-30T00:53:20Z.
    const NOT_AFTER: u64 = 1_796_000_000;

    fn at(secs: u64) -> UnixTime {
        UnixTime::from_secs(secs)
    }

    fn root_warning(secs_before: u64) -> Option<heapless::String<128>> {
        expiry_warning(CaCertKind::Root, at(NOT_AFTER), at(NOT_AFTER - secs_before))
    }

    #[test]
    fn window_is_thirty_days() {
        assert_eq!(EXPIRY_WARNING_WINDOW, Duration::from_secs(30 * DAY));
    }

    #[test]
    fn exactly_thirty_days_before_is_valid() {
        let status = expiry_status(at(NOT_AFTER), at(NOT_AFTER - 30 * DAY));
        assert_eq!(
            status,
            ExpiryStatus::Valid {
                remaining: Duration::from_secs(30 * DAY)
            }
        );
        assert!(!status.is_warning());
        assert_eq!(root_warning(30 * DAY), None);
        assert_eq!(root_warning(365 * DAY), None);
    }

    #[test]
    fn one_second_inside_the_window() {
        let status = expiry_status(at(NOT_AFTER), at(NOT_AFTER - 30 * DAY + 1));
        assert_eq!(
            status,
            ExpiryStatus::ExpiresSoon {
                days: 29,
                hours: 23
            }
        );
        assert!(status.is_warning());
        assert_eq!(
            root_warning(30 * DAY - 1).unwrap(),
            "Dapr root certificate expiration warning: certificate expires in 29 days and 23 hours"
        );
    }

    #[test]
    fn sentry_docs_example() {
        assert_eq!(
            root_warning(2 * DAY + 15 * HOUR + 59 * 60).unwrap(),
            "Dapr root certificate expiration warning: certificate expires in 2 days and 15 hours"
        );
    }

    #[test]
    fn under_an_hour_left() {
        assert_eq!(
            expiry_status(at(NOT_AFTER), at(NOT_AFTER - 59 * 60)),
            ExpiryStatus::ExpiresSoon { days: 0, hours: 0 }
        );
        assert_eq!(
            root_warning(59 * 60).unwrap(),
            "Dapr root certificate expiration warning: certificate expires in 0 days and 0 hours"
        );
    }

    #[test]
    fn at_not_after_is_not_yet_expired() {
        assert_eq!(
            expiry_status(at(NOT_AFTER), at(NOT_AFTER)),
            ExpiryStatus::ExpiresSoon { days: 0, hours: 0 }
        );
    }

    #[test]
    fn after_not_after_is_expired() {
        let status = expiry_status(at(NOT_AFTER), at(NOT_AFTER + 1));
        assert_eq!(status, ExpiryStatus::Expired);
        assert!(status.is_warning());
        assert_eq!(
            expiry_warning(CaCertKind::Root, at(NOT_AFTER), at(NOT_AFTER + 1)).unwrap(),
            "Dapr root certificate expiration warning: certificate has expired."
        );
        // Go compares with nanosecond precision, so a nanosecond late is expired too.
        let just_after = at(NOT_AFTER).saturating_add(Duration::from_nanos(1));
        assert_eq!(
            expiry_status(at(NOT_AFTER), just_after),
            ExpiryStatus::Expired
        );
    }

    #[test]
    fn issuer_wording() {
        let issuer = |now| expiry_warning(CaCertKind::Issuer, at(NOT_AFTER), at(now));
        assert_eq!(
            issuer(NOT_AFTER + DAY).unwrap(),
            "Dapr issuer certificate expiration warning: certificate has expired."
        );
        assert_eq!(
            issuer(NOT_AFTER - (2 * DAY + 15 * HOUR)).unwrap(),
            "Dapr issuer certificate expiration warning: certificate expires in 2 days and 15 hours"
        );
        assert_eq!(issuer(NOT_AFTER - 31 * DAY), None);
    }

    #[test]
    fn sub_second_remainder_does_not_change_hours() {
        let now = at(NOT_AFTER - HOUR).saturating_add(Duration::from_nanos(1));
        assert_eq!(
            expiry_status(at(NOT_AFTER), now),
            ExpiryStatus::ExpiresSoon { days: 0, hours: 0 }
        );
        let now = at(NOT_AFTER - HOUR).saturating_sub(Duration::from_nanos(1));
        assert_eq!(
            expiry_status(at(NOT_AFTER), now),
            ExpiryStatus::ExpiresSoon { days: 0, hours: 1 }
        );
    }

    #[test]
    fn not_after_near_the_epoch_still_warns() {
        // Go would compute a NotAfter - 30 days before 1970; that is still before `now`.
        assert_eq!(
            expiry_status(at(10 * DAY), UnixTime::EPOCH),
            ExpiryStatus::ExpiresSoon { days: 10, hours: 0 }
        );
    }

    #[test]
    fn far_future_is_valid() {
        let never = UnixTime::from_duration(Duration::MAX);
        assert_eq!(
            expiry_status(never, UnixTime::EPOCH),
            ExpiryStatus::Valid {
                remaining: Duration::MAX
            }
        );
        assert_eq!(expiry_status(UnixTime::EPOCH, never), ExpiryStatus::Expired);
    }

    #[test]
    fn widest_numbers_fit_without_truncation() {
        for kind in [CaCertKind::Root, CaCertKind::Issuer] {
            let status = ExpiryStatus::ExpiresSoon {
                days: u64::MAX,
                hours: u64::MAX,
            };
            let text = warning_text(kind, status).unwrap();
            let want = alloc::format!(
                "{} expiration warning: certificate expires in {} days and {} hours",
                kind.subject(),
                u64::MAX,
                u64::MAX
            );
            assert_eq!(text.as_str(), want);
            assert!(text.len() <= LONGEST_WARNING);
        }
        assert_eq!(LONGEST_WARNING, 123);
        assert_eq!(
            warning_text(
                CaCertKind::Root,
                ExpiryStatus::Valid {
                    remaining: Duration::ZERO
                }
            ),
            None
        );
    }
}

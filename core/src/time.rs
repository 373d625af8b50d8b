//! Time as an input: core never reads a clock, callers pass `UnixTime`.

use core::fmt;
use core::time::Duration;

use der::DateTime;
use x509_cert::time::Time;

/// A point in time, as the duration since 1970-01-01T00:00:00Z.
///
/// Certificates carry whole seconds, so sub-second precision is kept only for arithmetic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct UnixTime(Duration);

impl UnixTime {
    /// The Unix epoch.
    pub const EPOCH: Self = Self(Duration::ZERO);

    /// A time `secs` seconds after the epoch.
    pub const fn from_secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }

    /// A time `millis` milliseconds after the epoch (the browser's `Date.now()`).
    pub const fn from_millis(millis: u64) -> Self {
        Self(Duration::from_millis(millis))
    }

    /// A time `since_epoch` after the epoch.
    pub const fn from_duration(since_epoch: Duration) -> Self {
        Self(since_epoch)
    }

    /// Whole seconds since the epoch.
    pub const fn as_secs(self) -> u64 {
        self.0.as_secs()
    }

    /// The duration since the epoch.
    pub const fn as_duration(self) -> Duration {
        self.0
    }

    /// `self + d`, saturating at the largest representable time.
    pub fn saturating_add(self, d: Duration) -> Self {
        Self(self.0.saturating_add(d))
    }

    /// `self - d`, saturating at the epoch.
    pub fn saturating_sub(self, d: Duration) -> Self {
        Self(self.0.saturating_sub(d))
    }

    /// How long from `self` until `later`; zero when `later` is not after `self`.
    pub fn until(self, later: Self) -> Duration {
        later.0.saturating_sub(self.0)
    }

    /// Truncates to whole seconds, the precision of an X.509 validity field.
    pub const fn truncate_to_secs(self) -> Self {
        Self::from_secs(self.as_secs())
    }

    /// The X.509 `Time` for this instant (whole seconds).
    pub(crate) fn to_x509(self) -> Result<Time, der::Error> {
        Ok(Time::from(DateTime::from_unix_duration(
            Duration::from_secs(self.as_secs()),
        )?))
    }

    /// The instant an X.509 `Time` denotes.
    pub(crate) fn from_x509(time: &Time) -> Self {
        Self(time.to_unix_duration())
    }
}

impl fmt::Display for UnixTime {
    /// RFC 3339 in UTC, for example `2026-11-28T18:26:32Z`; `<out of range>` past year 9999.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match DateTime::from_unix_duration(Duration::from_secs(self.as_secs())) {
            Ok(dt) => write!(f, "{dt}"),
            Err(_) => f.write_str("<out of range>"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn x509_round_trip_is_second_precise() {
        let t = UnixTime::from_millis(1_764_354_392_750);
        let x = t.to_x509().unwrap();
        assert_eq!(UnixTime::from_x509(&x), UnixTime::from_secs(1_764_354_392));
    }

    #[test]
    fn display_is_rfc3339_utc() {
        assert_eq!(UnixTime::from_secs(0).to_string(), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn saturating_arithmetic() {
        let t = UnixTime::from_secs(10);
        assert_eq!(t.saturating_sub(Duration::from_secs(20)), UnixTime::EPOCH);
        assert_eq!(t.until(UnixTime::from_secs(5)), Duration::ZERO);
        assert_eq!(t.until(UnixTime::from_secs(15)), Duration::from_secs(5));
    }
}

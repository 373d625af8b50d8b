//! Go's time formatting, as Sentry and the Dapr CLI print times.

use warden_core::UnixTime;

/// Go's `time.Time.String()` for a UTC time, as the Dapr CLI prints expiry dates:
/// `2027-11-28 20:41:35 +0000 UTC`.
pub(crate) fn go_time(t: UnixTime) -> String {
    let rfc = t.to_string(); // 2027-11-28T20:41:35Z
    format!(
        "{} +0000 UTC",
        rfc.trim_end_matches('Z').replacen('T', " ", 1)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_time_format() {
        assert_eq!(
            go_time(UnixTime::from_secs(1_827_434_495)),
            "2027-11-28 20:41:35 +0000 UTC"
        );
    }
}

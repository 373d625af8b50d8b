//! Schedule math: when a certificate is renewed, when an issuer is rotated, how long a root
//! rotation phase waits.
//!
//! Pure functions of a validity window and durations: the caller reads the clock and sleeps,
//! so every rule here is testable for any date. Every sum saturates rather than overflows.
//!
//! | what | when |
//! |---|---|
//! | renew a leaf or a serving certificate | [`renewal_time`]: half its life from NotBefore (daprd, Sentry) |
//! | rotate an issuer | [`issuer_rotation_due`]: a third of its life left, or twice the workload TTL |
//! | the replacement issuer's lifetime | [`issuer_lifetime`]: the current one's, without the backdating |
//! | run the next root rotation phase | [`phase_wait_until`]: the longest leaf life + skew + reload margin |
//! | any fraction of a life (the edge device's `rotate_at_permille`) | [`fraction_of_life`] |

use core::time::Duration;

use crate::profile::Validity;
use crate::time::UnixTime;

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// The instant `numerator / denominator` of `validity`'s life after its NotBefore.
///
/// Nanosecond-exact (rounded down); a fraction above one lies past NotAfter, saturating at the
/// largest [`UnixTime`]. An empty or inverted window gives NotBefore; a zero `denominator`
/// gives NotAfter.
pub fn fraction_of_life(validity: Validity, numerator: u32, denominator: u32) -> UnixTime {
    let life = validity.not_before.until(validity.not_after).as_nanos();
    // At most (2^64 s in ns) · (2^32 − 1) < 2^127: no overflow, saturating just in case.
    match life
        .saturating_mul(u128::from(numerator))
        .checked_div(u128::from(denominator))
    {
        Some(offset) => validity
            .not_before
            .saturating_add(duration_from_nanos(offset)),
        None => validity.not_after,
    }
}

/// `nanos` as a `Duration`, saturating at `Duration::MAX`.
fn duration_from_nanos(nanos: u128) -> Duration {
    let secs = u64::try_from(nanos / NANOS_PER_SEC);
    let subsec = u32::try_from(nanos % NANOS_PER_SEC);
    match (secs, subsec) {
        (Ok(secs), Ok(subsec)) => Duration::new(secs, subsec),
        _ => Duration::MAX,
    }
}

/// Renewal at half the lifetime measured from NotBefore, as daprd and Sentry do.
pub fn renewal_time(validity: Validity) -> UnixTime {
    fraction_of_life(validity, 1, 2)
}

/// The issuer's life without the backdating of its NotBefore by `clock_skew`.
fn issuer_life(issuer: Validity, clock_skew: Duration) -> Duration {
    issuer
        .not_before
        .until(issuer.not_after)
        .saturating_sub(clock_skew)
}

/// When the issuer valid over `issuer` should be replaced: once less than a third of its life
/// is left, or less than twice the workload TTL (when its life is longer than three TTLs, so
/// that a short-lived issuer is not rotated without end). `clock_skew` is the backdating of
/// NotBefore, which does not count as life.
pub fn issuer_rotation_due(
    issuer: Validity,
    clock_skew: Duration,
    workload_ttl: Duration,
) -> UnixTime {
    let life = issuer_life(issuer, clock_skew);
    let mut left = life / 3;
    if life > workload_ttl.saturating_mul(3) {
        left = left.max(workload_ttl.saturating_mul(2));
    }
    issuer.not_after.saturating_sub(left)
}

/// The lifetime a replacement issuer gets: the current one's (without the backdating by
/// `clock_skew`), at least one second.
pub fn issuer_lifetime(issuer: Validity, clock_skew: Duration) -> Duration {
    issuer_life(issuer, clock_skew).max(Duration::from_secs(1))
}

/// The earliest time the next root rotation phase may run after the previous one at `since`:
/// `since + workload_ttl + clock_skew + reload_margin`.
///
/// By then every leaf issued before `since` has expired, even on a client whose clock is
/// `clock_skew` behind, and the server has reloaded the files the previous phase wrote
/// (`reload_margin`: the host's reload debounce plus slack for its file watcher).
pub fn phase_wait_until(
    since: UnixTime,
    workload_ttl: Duration,
    clock_skew: Duration,
    reload_margin: Duration,
) -> UnixTime {
    since
        .saturating_add(workload_ttl)
        .saturating_add(clock_skew)
        .saturating_add(reload_margin)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400;

    fn validity(not_before: u64, not_after: u64) -> Validity {
        Validity {
            not_before: UnixTime::from_secs(not_before),
            not_after: UnixTime::from_secs(not_after),
        }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn renewal_is_at_half_life_from_not_before() {
        let validity = Validity {
            not_before: UnixTime::from_secs(1_000),
            not_after: UnixTime::from_secs(1_000 + 24 * 3600),
        };
        assert_eq!(
            renewal_time(validity),
            UnixTime::from_secs(1_000 + 12 * 3600)
        );
    }

    #[test]
    fn renewal_keeps_half_seconds_and_handles_empty_windows() {
        // An odd number of seconds: half of it, to the nanosecond, as `Duration / 2` gives.
        let odd = validity(10, 13);
        assert_eq!(
            renewal_time(odd),
            UnixTime::from_millis(11_500),
            "half of 3 s after 10 s"
        );
        let v = Validity {
            not_before: UnixTime::from_duration(Duration::new(7, 1)),
            not_after: UnixTime::from_duration(Duration::new(12, 4)),
        };
        let life = v.not_before.until(v.not_after);
        assert_eq!(renewal_time(v), v.not_before.saturating_add(life / 2));
        assert_eq!(renewal_time(v).as_duration(), Duration::new(9, 500_000_002));
        // Empty and inverted windows renew at once (at NotBefore).
        assert_eq!(renewal_time(validity(50, 50)), UnixTime::from_secs(50));
        assert_eq!(renewal_time(validity(50, 40)), UnixTime::from_secs(50));
    }

    #[test]
    fn fraction_of_life_counts_from_not_before_and_rounds_down() {
        let v = validity(1_000, 1_000 + 100 * DAY);
        assert_eq!(fraction_of_life(v, 0, 1000), v.not_before);
        assert_eq!(
            fraction_of_life(v, 500, 1000),
            UnixTime::from_secs(1_000 + 50 * DAY)
        );
        assert_eq!(fraction_of_life(v, 1000, 1000), v.not_after);
        // 1/3 of 10 s is 3.333333333 s: rounded down to the nanosecond.
        assert_eq!(
            fraction_of_life(validity(0, 10), 1, 3).as_duration(),
            Duration::new(3, 333_333_333)
        );
        // Whole seconds: the same instant as the device's old second-based arithmetic.
        let (start, life, permille) = (1_700_000_000_u64, 100 * DAY + 60, 777_u64);
        assert_eq!(
            fraction_of_life(validity(start, start + life), 777, 1000).as_secs(),
            start + life * permille / 1000
        );
    }

    #[test]
    fn fraction_of_life_saturates_and_handles_degenerate_input() {
        // The longest window and the largest fraction: saturates instead of overflowing.
        let all = Validity {
            not_before: UnixTime::EPOCH,
            not_after: UnixTime::from_duration(Duration::MAX),
        };
        assert_eq!(
            fraction_of_life(all, u32::MAX, 1),
            UnixTime::from_duration(Duration::MAX)
        );
        assert_eq!(
            fraction_of_life(all, 1, 2).as_secs(),
            u64::MAX / 2,
            "half of the longest life"
        );
        // Past the end when the fraction is above one.
        assert_eq!(
            fraction_of_life(validity(100, 200), 3, 2),
            UnixTime::from_secs(250)
        );
        // A zero denominator gives NotAfter; an inverted window gives NotBefore.
        assert_eq!(
            fraction_of_life(validity(100, 200), 1, 0),
            UnixTime::from_secs(200)
        );
        assert_eq!(
            fraction_of_life(validity(200, 100), 1, 2),
            UnixTime::from_secs(200)
        );
    }

    #[test]
    fn due_with_a_third_of_the_life_left() {
        // 365 days, skew 15 min, TTL 24 h: a third of the life wins.
        let skew = Duration::from_secs(900);
        let life = 365 * 86_400;
        let v = validity(1_000_000 - 900, 1_000_000 + life);
        let due = issuer_rotation_due(v, skew, Duration::from_secs(86_400));
        assert_eq!(due.as_secs(), 1_000_000 + life - life / 3);
    }

    #[test]
    fn due_with_twice_the_ttl_left_when_that_is_more() {
        // 9 days, TTL 2 days: 4 days before the end rather than 3.
        let v = validity(0, 9 * 86_400);
        let due = issuer_rotation_due(v, Duration::ZERO, Duration::from_secs(2 * 86_400));
        assert_eq!(due.as_secs(), 5 * 86_400);
    }

    #[test]
    fn a_short_issuer_is_not_rotated_without_end() {
        // 30 s issuer with a 24 h TTL: the TTL rule cannot apply, a third of the life does.
        let v = validity(10_100 - 900, 10_130);
        let due = issuer_rotation_due(v, Duration::from_secs(900), Duration::from_secs(86_400));
        assert_eq!(due.as_secs(), 10_120);
        assert_eq!(
            issuer_lifetime(v, Duration::from_secs(900)),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn issuer_rotation_at_the_edges_of_the_ttl_rule() {
        // Life exactly three TTLs: the TTL rule does not apply (strictly longer only).
        let v = validity(0, 9 * DAY);
        assert_eq!(
            issuer_rotation_due(v, Duration::ZERO, secs(3 * DAY)).as_secs(),
            6 * DAY
        );
        // One second longer than three TTLs: twice the TTL left.
        let v = validity(0, 9 * DAY + 3);
        assert_eq!(
            issuer_rotation_due(v, Duration::ZERO, secs(3 * DAY)).as_secs(),
            9 * DAY + 3 - 6 * DAY
        );
        // A TTL longer than the whole life: a third of the life, never before NotBefore.
        let v = validity(1_000, 1_000 + DAY);
        let due = issuer_rotation_due(v, Duration::ZERO, secs(365 * DAY));
        assert_eq!(due.as_secs(), 1_000 + DAY - DAY / 3);
        assert!(due >= v.not_before);
        // A TTL so large that three of it overflow: saturates, a third of the life applies.
        assert_eq!(
            issuer_rotation_due(v, Duration::ZERO, Duration::MAX).as_secs(),
            1_000 + DAY - DAY / 3
        );
    }

    #[test]
    fn issuer_rotation_with_no_life_left_after_the_skew() {
        // The skew swallows the whole window: due at NotAfter, and a replacement gets 1 s.
        let v = validity(1_000, 1_600);
        assert_eq!(
            issuer_rotation_due(v, secs(900), secs(60)),
            UnixTime::from_secs(1_600)
        );
        assert_eq!(issuer_lifetime(v, secs(900)), secs(1));
        // A zero-length window.
        let empty = validity(1_000, 1_000);
        assert_eq!(
            issuer_rotation_due(empty, Duration::ZERO, Duration::ZERO),
            UnixTime::from_secs(1_000)
        );
        assert_eq!(issuer_lifetime(empty, Duration::ZERO), secs(1));
        // The TTL rule never reaches back before NotBefore: twice the TTL is under the life.
        let v = validity(0, 10 * DAY);
        assert_eq!(
            issuer_rotation_due(v, Duration::ZERO, secs(3 * DAY)).as_secs(),
            4 * DAY
        );
        assert_eq!(issuer_lifetime(v, secs(DAY)), secs(9 * DAY));
    }

    #[test]
    fn phase_wait_is_ttl_plus_skew_plus_margin() {
        const T0: u64 = 1_800_000_000;
        let since = UnixTime::from_secs(T0);
        assert_eq!(
            phase_wait_until(since, secs(DAY), secs(900), secs(5)).as_secs(),
            T0 + DAY + 900 + 5
        );
        assert_eq!(
            phase_wait_until(since, secs(5), Duration::ZERO, secs(5)).as_secs(),
            T0 + 10
        );
        assert_eq!(
            phase_wait_until(since, Duration::ZERO, Duration::ZERO, Duration::ZERO),
            since
        );
        // Saturates at the largest time instead of overflowing.
        assert_eq!(
            phase_wait_until(since, Duration::MAX, secs(900), secs(5)),
            UnixTime::from_duration(Duration::MAX)
        );
    }
}

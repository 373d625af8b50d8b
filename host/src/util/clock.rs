//! The host's clock and randomness: what core takes as inputs, read from the OS in one place.

use std::time::SystemTime;

use warden_core::UnixTime;

/// The system clock as core's time type.
pub(crate) fn now() -> UnixTime {
    // A clock before 1970 is a broken host; treating it as the epoch makes every certificate
    // check fail loudly rather than panicking.
    UnixTime::from_duration(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default(),
    )
}

/// The OS random number generator, as core's signing and key generation take it.
pub(crate) fn rng() -> rand_core::UnwrapErr<getrandom::SysRng> {
    rand_core::UnwrapErr(getrandom::SysRng)
}

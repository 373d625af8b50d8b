//! Shared helpers for Warden's integration tests live in `tests/tests/common`; this library is
//! intentionally empty so the package has a target.

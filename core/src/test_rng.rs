//! A deterministic RNG for unit tests, so failures reproduce.

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

pub(crate) fn seeded_rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

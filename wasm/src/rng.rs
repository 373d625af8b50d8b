//! The browser's randomness (`crypto.getRandomValues`) as the infallible RNG core asks for.

use core::convert::Infallible;

use rand_core::{TryCryptoRng, TryRng};

/// `getrandom` (the `wasm_js` backend in a browser, the OS elsewhere) behind rand_core's
/// infallible interface, without the panic `rand_core::UnwrapErr` would raise.
///
/// Core's key generation wants an infallible [`rand_core::CryptoRng`], but
/// `crypto.getRandomValues` can throw (no `crypto` global). Instead of panicking, a failure is
/// recorded, the output is filled with a fixed non-zero byte (zero would make P-256's rejection
/// sampling loop forever) and [`BrowserRng::finish`] reports it: the caller must call it and
/// throw away everything made from this RNG when it fails.
#[derive(Debug, Default)]
pub(crate) struct BrowserRng {
    error: Option<getrandom::Error>,
}

impl BrowserRng {
    /// The first randomness failure, if any. Output made with this RNG is unusable on `Err`.
    pub(crate) fn finish(self) -> Result<(), getrandom::Error> {
        self.error.map_or(Ok(()), Err)
    }
}

impl TryRng for BrowserRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut bytes = [0; 4];
        self.try_fill_bytes(&mut bytes)?;
        Ok(u32::from_le_bytes(bytes))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut bytes = [0; 8];
        self.try_fill_bytes(&mut bytes)?;
        Ok(u64::from_le_bytes(bytes))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        if let Err(e) = getrandom::fill(dst) {
            self.error.get_or_insert(e);
            dst.fill(0x5a);
        }
        Ok(())
    }
}

impl TryCryptoRng for BrowserRng {}

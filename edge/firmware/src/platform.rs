//! The board behind `warden-edge`'s traits: [`Store`] is its [`Storage`], [`BoardPlatform`]
//! its [`Platform`] (ticks and memory figures).

use warden_edge::device::Platform;
use warden_edge::store::Storage;

use crate::board;

/// The persistent slots as `warden-edge` storage.
#[derive(Debug)]
pub(crate) struct Store(pub(crate) board::PersistentStore);

impl Storage for Store {
    fn slot_len(&self) -> usize {
        board::SLOT_LEN
    }

    fn read(&self, slot: u8) -> &[u8] {
        self.0.read(slot)
    }

    fn write(&mut self, slot: u8, record: &[u8]) {
        self.0.write(slot, record);
    }
}

/// Ticks and memory figures from the board.
#[derive(Debug)]
pub(crate) struct BoardPlatform;

fn saturate(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl Platform for BoardPlatform {
    fn ticks(&self) -> u64 {
        board::ticks()
    }

    fn tick_hz(&self) -> u32 {
        board::TICK_HZ
    }

    fn heap_size(&self) -> u32 {
        saturate(board::heap_size())
    }

    fn heap_peak(&self) -> u32 {
        saturate(board::heap_peak())
    }

    fn reset_heap_peak(&self) {
        board::reset_heap_peak();
    }

    fn stack_peak(&self) -> u32 {
        saturate(board::stack_peak())
    }
}

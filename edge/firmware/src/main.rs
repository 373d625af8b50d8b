//! Warden's edge sentry firmware for QEMU's `mps2-an386` (Cortex-M4F): the `warden-edge` device
//! behind UART0 (`docs/edge.md`).
//!
//! All hardware access, and all `unsafe`, is in [`board`]; this file is the serving loop and
//! [`platform`] adapts the board to `warden-edge`'s traits.
#![no_std]
#![no_main]

extern crate alloc;

#[allow(unsafe_code)]
mod board;
#[cfg(feature = "fault-injection")]
mod faults;
mod platform;

use warden_edge::device::Device;
use warden_edge::frame::FrameDecoder;
use zeroize::Zeroize;

/// Boots the device from the persistent store and the seed, announces it with the BOOT frame,
/// then answers frames forever: one reply frame per decoder event.
fn run(board: board::Board) -> ! {
    let board::Board {
        mut uart,
        store,
        mut seed,
    } = board;
    let mut device = Device::boot(platform::Store(store), &seed);
    seed.zeroize();
    // Lost when no driver is connected yet (QEMU drops the bytes): the driver asks for STATUS.
    uart.write_all(&device.boot_frame());
    let platform = platform::BoardPlatform;
    let mut decoder = FrameDecoder::new();
    loop {
        decoder.push(uart.read_byte());
        while let Some(event) = decoder.next_event() {
            #[cfg(feature = "fault-injection")]
            faults::inject(&event);
            let reply = device.on_event(event, &platform);
            uart.write_all(&reply);
        }
    }
}

//! The device logic of Warden's edge sentry (`docs/edge.md`): UART framing, the typed
//! messages, the two-slot storage journal and the device state machine.
//!
//! `#![no_std]` + `alloc`: the firmware (`edge/firmware`) runs it on a Cortex-M4F, and the host
//! driver (`warden edge ...`) uses the same [`frame`] and [`message`] codecs. Time comes with
//! every request, randomness from a seed the platform provides at boot, storage through the
//! [`store::Storage`] trait.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod device;
pub mod frame;
pub mod message;
pub mod store;
mod wire;

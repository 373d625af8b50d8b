//! Test-only faults, compiled in only with the `fault-injection` feature (never in the image
//! `scripts/edge.sh build` makes): a frame of kind [`PANIC`] panics and one of kind
//! [`STACK_OVERFLOW`] recurses until the stack runs into the MPU guard, so `edge_device` can
//! show that both reset the core, print nothing, and leave the store as it was.

use warden_edge::frame::Event;

/// A frame of this kind panics.
const PANIC: u8 = 0x7E;
/// A frame of this kind overflows the stack.
const STACK_OVERFLOW: u8 = 0x7D;

/// Acts on a fault frame; any other event goes on to the device.
pub(crate) fn inject(event: &Event) {
    if let Event::Frame { kind, .. } = event {
        match *kind {
            #[allow(clippy::panic)]
            PANIC => panic!("injected fault"),
            STACK_OVERFLOW => {
                recurse(0);
            }
            _ => {}
        }
    }
}

/// Recursion the optimiser can neither unroll nor turn into a loop: each level keeps a
/// 256-byte frame alive across the call.
#[inline(never)]
fn recurse(depth: u32) -> u32 {
    let mut frame = [0u8; 256];
    frame.fill(depth.to_le_bytes()[0]);
    core::hint::black_box(&mut frame);
    if core::hint::black_box(depth) == u32::MAX {
        return 0;
    }
    recurse(depth.wrapping_add(1)).wrapping_add(u32::from(core::hint::black_box(&frame)[0]))
}

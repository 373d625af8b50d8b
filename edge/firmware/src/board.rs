//! Everything that touches the hardware of QEMU's `mps2-an386`: the only module of the firmware
//! allowed `unsafe` (each block says why it is sound). The rest of the firmware is safe code
//! over what this module exports:
//!
//! - the entry point, the panic handler and the fault handler (a panic or a fault resets the
//!   core, so the device comes back serving; nothing is printed: a message could carry secrets
//!   and would not be a frame);
//! - [`Uart`]: CMSDK APB UART0, blocking byte I/O, the receiver waking the core from `wfi`;
//! - [`ticks`]: a 64-bit count of the 25 MHz core clock (SysTick plus a wrap counter);
//! - the global allocator: embedded-alloc's linked-list heap, counted (current, peak);
//! - [`stack_peak`]: the stack's high-water mark, from the paint cortex-m-rt puts on it at reset;
//! - [`PersistentStore`]: the two 8 KiB slots of RAM that survive a reset;
//! - the 32-byte seed mailbox, read once at boot and then wiped.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

use cortex_m::interrupt::InterruptNumber;
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::{NVIC, SCB, SYST};
use cortex_m_rt::{ExceptionFrame, exception};
use embedded_alloc::LlffHeap;

/// QEMU's SYSCLK for the MPS2 boards (`SYSCLK_FRQ` in `hw/arm/mps2.c`: 25 MHz), which clocks
/// the CPU and so SysTick's "processor clock" source. Under `-icount shift=0` one instruction is
/// 1 ns of virtual time, so one tick is 40 instructions.
pub(crate) const TICK_HZ: u32 = 25_000_000;

/// CMSDK APB UART0 (QEMU's first `-serial`).
const UART0: usize = 0x4000_4000;
const UART_DATA: usize = UART0;
const UART_STATE: usize = UART0 + 0x04;
const UART_CTRL: usize = UART0 + 0x08;
const UART_INTCLEAR: usize = UART0 + 0x0C;
const UART_BAUDDIV: usize = UART0 + 0x10;
const STATE_TX_FULL: u32 = 1 << 0;
const STATE_RX_FULL: u32 = 1 << 1;
const CTRL_TX_EN: u32 = 1 << 0;
const CTRL_RX_EN: u32 = 1 << 1;
const CTRL_RX_INT_EN: u32 = 1 << 3;
const INT_RX: u32 = 1 << 1;
/// The smallest divider the CMSDK UART accepts; QEMU delivers bytes without baud-rate delays.
const BAUDDIV: u32 = 16;

/// UART0's receive interrupt on the AN385/AN386 images (`uartirq[0]` in `hw/arm/mps2.c`).
#[derive(Clone, Copy, Debug)]
struct Uart0Rx;

// SAFETY: 0 is UART0's RX interrupt line, a valid NVIC interrupt number on this board.
unsafe impl InterruptNumber for Uart0Rx {
    fn number(self) -> u16 {
        0
    }
}

/// Persistent store: two slots of RAM outside every ELF segment (`memory.x` starts at
/// 0x2000_8000), so QEMU's loader does not rewrite them at `system_reset`.
const STORE_BASE: usize = 0x2000_0000;
/// Bytes per slot.
pub(crate) const SLOT_LEN: usize = 8 * 1024;
const SLOTS: usize = 2;

/// Where `-device loader,file=seed.bin,addr=0x20004000` puts the 32 seed bytes.
const SEED_MAILBOX: usize = 0x2000_4000;
/// Bytes in the seed mailbox.
pub(crate) const SEED_LEN: usize = 32;

/// cortex-m-rt's `paint-stack` value.
const STACK_PAINT: u32 = 0xCCCC_CCCC;

unsafe extern "C" {
    // Linker symbols (memory.x and cortex-m-rt's link.x); only their addresses are used.
    static _stack_start: u32;
    static _stack_end: u32;
    static _ram_end: u32;
}

// Taking the address of a linker symbol reads nothing (and needs no `unsafe`).
fn stack_top() -> usize {
    ptr::addr_of!(_stack_start) as usize
}

fn stack_bottom() -> usize {
    ptr::addr_of!(_stack_end) as usize
}

fn heap_end() -> usize {
    ptr::addr_of!(_ram_end) as usize
}

fn read_reg(address: usize) -> u32 {
    // SAFETY: only called with the CMSDK UART's register addresses above, which are
    // 4-byte-aligned device registers that are always mapped; reading them has no side effect
    // beyond the device's own (DATA pops the received byte, which is what read_byte wants).
    unsafe { ptr::read_volatile(address as *const u32) }
}

fn write_reg(address: usize, value: u32) {
    // SAFETY: as in read_reg; the writes done here (enable bits, divider, a data byte, clearing
    // an interrupt) touch no memory.
    unsafe { ptr::write_volatile(address as *mut u32, value) }
}

/// The board, handed out once by the entry point. (No `Debug`: it holds the seed.)
pub(crate) struct Board {
    /// UART0.
    pub(crate) uart: Uart,
    /// The persistent slots.
    pub(crate) store: PersistentStore,
    /// The seed mailbox as it was at reset (it is wiped right after reading).
    pub(crate) seed: [u8; SEED_LEN],
}

static TAKEN: AtomicBool = AtomicBool::new(false);

#[cortex_m_rt::entry]
fn entry() -> ! {
    match init() {
        Some(board) => crate::run(board),
        // Unreachable (the entry point runs once per reset); resetting is the safe answer.
        None => SCB::sys_reset(),
    }
}

fn init() -> Option<Board> {
    if TAKEN.swap(true, Ordering::AcqRel) {
        return None;
    }
    let heap_start = cortex_m_rt::heap_start() as usize;
    // SAFETY: called once (TAKEN), before any allocation; [heap_start, _ram_end) is the part of
    // the RAM region after .bss that nothing else uses (memory.x, link.x).
    unsafe { HEAP.heap.init(heap_start, heap_end() - heap_start) };
    HEAP_SIZE.store(heap_end() - heap_start, Ordering::Relaxed);

    let mut peripherals = cortex_m::Peripherals::take()?;
    guard_stack(&mut peripherals.MPU, &mut peripherals.SCB);
    let syst = &mut peripherals.SYST;
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(SYST_RELOAD);
    syst.clear_current();
    syst.enable_interrupt();
    syst.enable_counter();

    write_reg(UART_BAUDDIV, BAUDDIV);
    write_reg(UART_CTRL, CTRL_TX_EN | CTRL_RX_EN | CTRL_RX_INT_EN);
    // SAFETY: the UART0 RX handler (DefaultHandler below) only clears the UART's interrupt;
    // unmasking it breaks no critical section (none is open here).
    unsafe { NVIC::unmask(Uart0Rx) };

    Some(Board {
        uart: Uart { _private: () },
        store: PersistentStore { _private: () },
        seed: take_seed(),
    })
}

/// A no-access MPU region of 32 bytes right below the stack: a stack overflow faults there
/// (and the core locks up or resets) instead of running into the RAM below, which leads to the
/// seed mailbox and the persistent store.
fn guard_stack(mpu: &mut cortex_m::peripheral::MPU, scb: &mut SCB) {
    const GUARD_LEN: usize = 32;
    // RASR: enable, SIZE = log2(32) - 1 = 4, AP = 0 (no access), XN.
    const RASR: u32 = 1 | (4 << 1) | (1 << 28);
    // CTRL: ENABLE, PRIVDEFENA (the default map everywhere else).
    const CTRL: u32 = 1 | (1 << 2);
    let base = (stack_bottom() - GUARD_LEN) as u32;
    // SAFETY: region 0 is programmed before the MPU is enabled; the region is 32-byte aligned
    // (the stack's bottom is 0x2000_8000) and nothing the firmware uses lies in it. With
    // PRIVDEFENA every other access keeps the default memory map, so enabling the MPU changes
    // nothing else.
    unsafe {
        mpu.rnr.write(0);
        mpu.rbar.write(base);
        mpu.rasr.write(RASR);
        mpu.ctrl.write(CTRL);
    }
    cortex_m::asm::dsb();
    cortex_m::asm::isb();
    scb.enable(cortex_m::peripheral::scb::Exception::MemoryManagement);
}

/// Reads the seed mailbox and overwrites it with zeros, so a reset that QEMU's loader does not
/// refill finds nothing to reuse (the device also mixes in its boot count).
fn take_seed() -> [u8; SEED_LEN] {
    let mut seed = [0u8; SEED_LEN];
    for (i, byte) in seed.iter_mut().enumerate() {
        let address = (SEED_MAILBOX + i) as *mut u8;
        // SAFETY: the mailbox is 32 bytes of RAM at 0x2000_4000, outside every linker region
        // and used by nothing else.
        unsafe {
            *byte = ptr::read_volatile(address);
            ptr::write_volatile(address, 0);
        }
    }
    seed
}

/// The firmware's only UART.
#[derive(Debug)]
pub(crate) struct Uart {
    _private: (),
}

impl Uart {
    /// Waits until the receiver holds a byte and returns it; the core sleeps (`wfi`) meanwhile.
    pub(crate) fn read_byte(&mut self) -> u8 {
        loop {
            // Checking and sleeping with interrupts masked: a byte arriving between the check
            // and the `wfi` still wakes it (a pending interrupt ends `wfi` even while masked),
            // and its handler runs when the critical section ends.
            let byte = cortex_m::interrupt::free(|_| {
                if read_reg(UART_STATE) & STATE_RX_FULL != 0 {
                    // The low 8 bits of DATA hold the byte.
                    Some((read_reg(UART_DATA) & 0xFF) as u8)
                } else {
                    cortex_m::asm::wfi();
                    None
                }
            });
            if let Some(byte) = byte {
                return byte;
            }
        }
    }

    /// Sends `bytes`, waiting while the transmitter is full.
    pub(crate) fn write_all(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            while read_reg(UART_STATE) & STATE_TX_FULL != 0 {}
            write_reg(UART_DATA, u32::from(byte));
        }
    }
}

// ---- Time ----

/// SysTick counts down from this (its 24 bits), then wraps and raises its exception.
const SYST_RELOAD: u32 = 0x00FF_FFFF;
static SYST_WRAPS: AtomicU32 = AtomicU32::new(0);

#[exception]
fn SysTick() {
    SYST_WRAPS.fetch_add(1, Ordering::Relaxed);
}

/// Core clock ticks since reset ([`TICK_HZ`] per second).
pub(crate) fn ticks() -> u64 {
    cortex_m::interrupt::free(|_| {
        let mut wraps = SYST_WRAPS.load(Ordering::Relaxed);
        let mut current = SYST::get_current();
        // A wrap whose exception is pending (masked here) is not counted yet: count it, and
        // read the counter again, since the first read may predate the wrap.
        if SCB::is_pendst_pending() {
            wraps = wraps.wrapping_add(1);
            current = SYST::get_current();
        }
        u64::from(wraps) * (u64::from(SYST_RELOAD) + 1) + u64::from(SYST_RELOAD - current)
    })
}

// ---- Interrupts and faults ----

#[exception]
unsafe fn DefaultHandler(irqn: i16) {
    if irqn == 0 {
        // UART0 RX: the byte stays in DATA for read_byte; only the interrupt is cleared.
        write_reg(UART_INTCLEAR, INT_RX);
    } else if irqn < 0 {
        // A system exception without a handler of its own (NMI, SVCall, PendSV, ...): nothing
        // here raises one, so the core is in a state nobody planned for.
        SCB::sys_reset()
    }
}

#[exception]
unsafe fn HardFault(_frame: &ExceptionFrame) -> ! {
    SCB::sys_reset()
}

#[exception]
fn MemoryManagement() {
    SCB::sys_reset()
}

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    // Nothing is printed: the message could name secret-derived data, and bytes that are not a
    // frame would only be skipped by the driver. The device resets and sends its BOOT frame.
    SCB::sys_reset()
}

// ---- Heap ----

/// embedded-alloc's linked-list first-fit heap, counting the bytes it hands out (its own
/// `used()`, which includes its rounding) and their high-water mark.
struct CountingHeap {
    heap: LlffHeap,
    peak: AtomicUsize,
}

#[global_allocator]
static HEAP: CountingHeap = CountingHeap {
    heap: LlffHeap::empty(),
    peak: AtomicUsize::new(0),
};
static HEAP_SIZE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to LlffHeap, a sound GlobalAlloc; the counters only observe.
unsafe impl GlobalAlloc for CountingHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is passed on unchanged.
        let block = unsafe { self.heap.alloc(layout) };
        if !block.is_null() {
            self.peak.fetch_max(self.heap.used(), Ordering::Relaxed);
        }
        block
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { self.heap.dealloc(block, layout) }
    }
}

/// Bytes of heap.
pub(crate) fn heap_size() -> usize {
    HEAP_SIZE.load(Ordering::Relaxed)
}

/// Most bytes allocated at once since the last [`reset_heap_peak`].
pub(crate) fn heap_peak() -> usize {
    HEAP.peak.load(Ordering::Relaxed)
}

/// Starts a new high-water mark from what is allocated now.
pub(crate) fn reset_heap_peak() {
    HEAP.peak.store(HEAP.heap.used(), Ordering::Relaxed);
}

// ---- Stack ----

/// Most bytes of stack used since reset: the stack is painted at reset (cortex-m-rt's
/// `paint-stack`), and the lowest word whose paint was scrubbed off marks how deep it went.
pub(crate) fn stack_peak() -> usize {
    let top = stack_top();
    let mut address = stack_bottom();
    while address < top {
        // SAFETY: [_stack_end, _stack_start) is the stack region, RAM that is always mapped;
        // a word below the current stack pointer belongs to no live object, and one above it is
        // only read (volatile, as u32, 4-byte aligned).
        let word = unsafe { ptr::read_volatile(address as *const u32) };
        if word != STACK_PAINT {
            break;
        }
        address += 4;
    }
    top - address
}

// ---- Persistent store ----

/// The two slots of RAM that keep their content across a reset (not across power loss).
#[derive(Debug)]
pub(crate) struct PersistentStore {
    _private: (),
}

impl PersistentStore {
    /// Slot `slot` (0 or 1); any other number reads as empty.
    pub(crate) fn read(&self, slot: u8) -> &[u8] {
        let slot = usize::from(slot);
        if slot >= SLOTS {
            return &[];
        }
        // SAFETY: slots 0 and 1 are 2 × 8 KiB of RAM at 0x2000_0000, outside every linker
        // region, so no Rust object overlaps them; the only writer is `write`, which takes
        // `&mut self` and so cannot run while this borrow of `self` lives.
        unsafe {
            core::slice::from_raw_parts((STORE_BASE + slot * SLOT_LEN) as *const u8, SLOT_LEN)
        }
    }

    /// Writes `record` at the start of slot `slot` (0 or 1; others are ignored), cut to the
    /// slot's length.
    pub(crate) fn write(&mut self, slot: u8, record: &[u8]) {
        let slot = usize::from(slot);
        if slot >= SLOTS {
            return;
        }
        let len = record.len().min(SLOT_LEN);
        // SAFETY: the destination is `len` ≤ 8 KiB bytes inside slot `slot` (see `read`);
        // `&mut self` rules out any outstanding slice from `read`; `record` is ordinary
        // memory, so the ranges cannot overlap.
        unsafe {
            ptr::copy_nonoverlapping(
                record.as_ptr(),
                (STORE_BASE + slot * SLOT_LEN) as *mut u8,
                len,
            );
        }
    }
}

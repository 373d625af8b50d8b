//! Warden's edge sentry firmware for QEMU's `mps2-an386` (Cortex-M4F).
#![no_std]
#![no_main]

extern crate alloc;

#[allow(unsafe_code)]
mod board;

use core::fmt::Write as _;
use core::time::Duration;

use alloc::string::String;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use warden_core::UnixTime;
use warden_core::bundle::{CaBundle, CaParams, WorkloadRequest};
use warden_core::crypto::{KeyAlgorithm, RustCryptoVerifier};
use warden_core::spiffe::{SpiffeId, TrustDomain};

const CSRS: [(&str, &[u8]); 5] = [
    (
        "ed25519",
        include_bytes!("../../../tests/data/go-csr/csr-ed25519.pem"),
    ),
    (
        "p256",
        include_bytes!("../../../tests/data/go-csr/csr-p256.pem"),
    ),
    (
        "p384",
        include_bytes!("../../../tests/data/go-csr/csr-p384.pem"),
    ),
    (
        "rsa2048",
        include_bytes!("../../../tests/data/go-csr/csr-rsa2048.pem"),
    ),
    (
        "legacy",
        include_bytes!("../../../tests/data/go-csr/csr-p256-legacy-block-type.pem"),
    ),
];

fn run(mut board: board::Board) -> ! {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "probe: heap {} stack {}",
        board::heap_size(),
        board::stack_size()
    );
    board.uart.write_all(out.as_bytes());
    let mut rng = ChaCha20Rng::from_seed(board.seed);
    let now = UnixTime::from_secs(1_790_000_000);
    let Ok(td) = TrustDomain::new("example.org") else {
        loop {}
    };
    let params = CaParams {
        trust_domain: &td,
        namespace: "default",
        key_algorithm: KeyAlgorithm::P256,
        lifetime: Duration::from_secs(86400 * 365),
        clock_skew: Duration::from_secs(900),
    };
    let t0 = board::ticks();
    let Ok((bundle, _files)) = CaBundle::generate(&params, now, &mut rng) else {
        loop {}
    };
    let t1 = board::ticks();

    out.clear();
    let _ = writeln!(
        out,
        "generate: ticks {} heap now {}",
        t1 - t0,
        board::heap_used()
    );
    board.uart.write_all(out.as_bytes());
    let Ok(id) = SpiffeId::workload(&td, "default", "app") else {
        loop {}
    };
    for (name, csr) in CSRS {
        board::reset_heap_peak();
        let before = board::heap_used();
        let t0 = board::ticks();
        let result = warden_core::csr::parse_and_verify(csr, &RustCryptoVerifier).map(|verified| {
            bundle.issue_workload(
                &WorkloadRequest {
                    public_key: &verified.public_key,
                    spiffe_id: &id,
                    dns_names: &[],
                    ttl: Duration::from_secs(86400),
                    clock_skew: Duration::from_secs(900),
                },
                now,
                &mut rng,
            )
        });
        let t1 = board::ticks();
        let len = match &result {
            Ok(Ok(svid)) => svid.chain_pem.len(),
            _ => 0,
        };
        drop(result);
        out.clear();
        let _ = writeln!(
            out,
            "{name}: chain {len} ticks {} heap peak {} (base {before}) stack peak {}",
            t1 - t0,
            board::heap_peak() - before,
            board::stack_peak()
        );
        board.uart.write_all(out.as_bytes());
    }
    board.uart.write_all(b"done\n");
    loop {
        let b = board.uart.read_byte();
        board.uart.write_all(&[b]);
    }
}

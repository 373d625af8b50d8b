//! P-256 signatures through SoftHSM2 (PKCS#11, one and two threads) against the in-memory key,
//! and one issuer rotation signed by the HSM root.
//!
//! SoftHSM2 reads `SOFTHSM2_CONF` when the module initialises, and the environment cannot be
//! changed safely in a running process: without `WARDEN_BENCH_SOFTHSM_DIR` the bench makes a
//! token in a temporary directory and re-runs itself with the variables set.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use warden_core::UnixTime;
use warden_core::crypto::{CaSigner, KeyAlgorithm};
use warden_core::profile::DEFAULT_CLOCK_SKEW;
use warden_host::CredentialPaths;
use warden_host::NativeKey;
use warden_host::rotate_issuer;
use warden_hsm::{Hsm, HsmConfig, HsmSigner};

const DIR_ENV: &str = "WARDEN_BENCH_SOFTHSM_DIR";
const TOKEN: &str = "warden-bench";
const PIN: &str = "bench-pin";
const MESSAGE: [u8; 300] = [0x5a; 300];

fn config(label: &str) -> HsmConfig {
    HsmConfig {
        module: PathBuf::from(warden_hsm::SOFTHSM2_MODULE),
        token_label: TOKEN.to_owned(),
        key_label: label.to_owned(),
        pin: zeroize::Zeroizing::new(PIN.to_owned()),
    }
}

fn now() -> UnixTime {
    UnixTime::from_duration(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap(),
    )
}

fn sign_benches(c: &mut Criterion, signer: &Arc<HsmSigner>) {
    let mut group = c.benchmark_group("hsm_sign");
    group.bench_function("softhsm2_p256/1_thread", |b| {
        b.iter(|| signer.sign(&MESSAGE).unwrap())
    });
    // Two threads share the signer (two pooled sessions); the time reported is wall time per
    // signature, so signatures/s = 1 / time.
    group.bench_function("softhsm2_p256/2_threads", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            std::thread::scope(|s| {
                for share in [iters / 2, iters - iters / 2] {
                    let signer = Arc::clone(signer);
                    s.spawn(move || {
                        for _ in 0..share {
                            signer.sign(&MESSAGE).unwrap();
                        }
                    });
                }
            });
            start.elapsed()
        })
    });
    let native = NativeKey::generate(KeyAlgorithm::P256).unwrap();
    group.bench_function("in_memory_p256_native", |b| {
        b.iter(|| native.sign(&MESSAGE).unwrap())
    });
    group.finish();
}

fn rotation_bench(c: &mut Criterion, dir: &Path, root: &Arc<HsmSigner>) {
    // A credential set whose root is the HSM key: init-root's work, done once.
    let creds = dir.join("creds");
    std::fs::create_dir_all(&creds).unwrap();
    let paths = CredentialPaths::new(&creds, "ca.crt", "issuer.crt", "issuer.key");
    let td = warden_core::spiffe::TrustDomain::new("bench.example").unwrap();
    let mut rng = rand_core::UnwrapErr(getrandom::SysRng);
    let validity = warden_core::profile::Validity::backdated(
        now(),
        DEFAULT_CLOCK_SKEW,
        Duration::from_secs(86_400 * 365),
    );
    let root_cert =
        warden_core::bundle::create_root(root.as_ref(), &td, validity, &mut rng).unwrap();
    let sentry = warden_core::spiffe::SpiffeId::sentry(&td, "default").unwrap();
    let issuer_key = NativeKey::generate(KeyAlgorithm::P256).unwrap();
    let issuer = warden_core::bundle::create_issuer(
        root.as_ref(),
        &root_cert,
        issuer_key.public_key(),
        &sentry,
        validity,
        &mut rng,
    )
    .unwrap();
    let pem = |c: &x509_cert::Certificate| warden_core::bundle::certificates_to_pem([c]).unwrap();
    std::fs::write(&paths.trust_anchors, pem(&root_cert)).unwrap();
    std::fs::write(&paths.issuer_certificate, pem(&issuer)).unwrap();
    std::fs::write(
        &paths.issuer_key,
        issuer_key.to_pkcs8_pem().unwrap().as_bytes(),
    )
    .unwrap();

    let mut group = c.benchmark_group("hsm_rotation");
    group.sample_size(20);
    group.bench_function("issuer_rotate_softhsm2", |b| {
        b.iter(|| {
            rotate_issuer(
                &paths,
                root.as_ref(),
                Duration::from_secs(86_400 * 30),
                DEFAULT_CLOCK_SKEW,
                now(),
            )
            .unwrap()
        })
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    let dir = PathBuf::from(std::env::var_os(DIR_ENV).unwrap());
    let hsm = Hsm::open(&config("bench-root")).unwrap();
    let signer = Arc::new(hsm.generate_key("bench-root").unwrap());
    sign_benches(c, &signer);
    rotation_bench(c, &dir, &signer);
}

criterion_group! {
    name = hsm;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    targets = benches
}

fn main() {
    if std::env::var_os(DIR_ENV).is_none() {
        let dir = tempfile::tempdir().unwrap();
        let tokens = dir.path().join("tokens");
        std::fs::create_dir_all(&tokens).unwrap();
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .unwrap();
        let init = Command::new("softhsm2-util")
            .args(["--init-token", "--free", "--label", TOKEN, "--pin", PIN])
            .args(["--so-pin", "bench-so-pin"])
            .env("SOFTHSM2_CONF", &conf)
            .output()
            .expect("softhsm2-util (apt-get install softhsm2)");
        assert!(
            init.status.success(),
            "{}",
            String::from_utf8_lossy(&init.stderr)
        );
        let status = Command::new(std::env::current_exe().unwrap())
            .args(std::env::args_os().skip(1))
            .env("SOFTHSM2_CONF", &conf)
            .env(DIR_ENV, dir.path())
            .status()
            .unwrap();
        std::process::exit(status.code().unwrap_or(1));
    }
    hsm();
    Criterion::default().configure_from_args().final_summary();
}

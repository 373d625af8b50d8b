//! Makes a self-signed root and issuer, issues a workload SVID for a fresh key, writes
//! `ca.crt`, `issuer.crt`, `issuer.key`, `workload.key` and `workload.crt` into a folder and
//! prints the chain.
//!
//! `cargo run -p warden-core --example issue_demo -- [DIR] [TRUST_DOMAIN]`

use std::error::Error;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::SystemTime;

use getrandom::SysRng;
use rand_core::UnwrapErr;
use warden_core::UnixTime;
use warden_core::bundle::{CaBundle, CaParams, WorkloadRequest};
use warden_core::crypto::{CaSigner, KeyAlgorithm, SoftwareKey};
use warden_core::profile::{DEFAULT_CA_TTL, DEFAULT_CLOCK_SKEW, DEFAULT_WORKLOAD_TTL};
use warden_core::spiffe::{SpiffeId, TrustDomain};

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().unwrap_or_else(|| "warden-demo".into());
    let trust_domain = TrustDomain::new(&args.next().unwrap_or_else(|| "localhost".into()))?;
    let dir = Path::new(&dir);
    fs::create_dir_all(dir)?;

    let now = UnixTime::from_duration(SystemTime::now().duration_since(SystemTime::UNIX_EPOCH)?);
    let mut rng = UnwrapErr(SysRng);
    let params = CaParams {
        trust_domain: &trust_domain,
        namespace: "default",
        key_algorithm: KeyAlgorithm::P256,
        lifetime: DEFAULT_CA_TTL,
        clock_skew: DEFAULT_CLOCK_SKEW,
    };
    let (bundle, files) = CaBundle::generate(&params, now, &mut rng)?;
    write_private(&dir.join("ca.crt"), &files.trust_anchors)?;
    write_private(&dir.join("issuer.crt"), &files.issuer_certificate)?;
    write_private(&dir.join("issuer.key"), &files.issuer_key)?;

    let workload_key = SoftwareKey::generate(KeyAlgorithm::P256, &mut rng);
    let id = SpiffeId::workload(&TrustDomain::from_request("")?, "default", "demo-app")?;
    let issued = bundle.issue_workload(
        &WorkloadRequest {
            public_key: &workload_key.public_key(),
            spiffe_id: &id,
            dns_names: &[],
            ttl: DEFAULT_WORKLOAD_TTL,
            clock_skew: DEFAULT_CLOCK_SKEW,
        },
        now,
        &mut rng,
    )?;
    write_private(&dir.join("workload.key"), &workload_key.to_pkcs8_pem()?)?;
    write_private(&dir.join("workload.crt"), &issued.chain_pem)?;

    println!("# {id}, valid until {}", issued.validity.not_after);
    print!("{}", issued.chain_pem);
    println!("# trust anchors ({})", dir.join("ca.crt").display());
    print!("{}", bundle.trust_anchors_pem());
    Ok(())
}

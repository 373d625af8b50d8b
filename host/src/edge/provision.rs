//! `warden edge provision` and `warden edge issue`: the flags, and the exchanges that give the
//! device an issuer signed by the root and have it sign a workload CSR, with every reply
//! checked before anything is written.

use std::io::{self, Write};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use warden_core::UnixTime;
use warden_core::bundle::{
    encode_certificates, key_matches, parse_certificates, read_certificates,
};
use warden_core::chain::verify_chain;
use warden_core::csr::parse_and_verify;
use warden_edge::frame::MAX_PAYLOAD;
use warden_edge::message::{Reply, Request, State};

use super::EdgeError;
use super::link::{DeviceArgs, Link};
use crate::go::duration::parse_go_duration;
use crate::native::NativeVerifier;
use crate::rotation::issuer::RotationError;
use crate::rotation::sign_csr::{IssuerRootArgs, read_csr_file};
use crate::util::clock::now;
use crate::util::files;

fn parse_duration(text: &str) -> Result<Duration, String> {
    parse_go_duration(text).map_err(|e| e.to_string())
}

/// `warden edge provision`
#[derive(Debug, Args)]
pub(crate) struct ProvisionArgs {
    #[command(flatten)]
    device: DeviceArgs,
    #[command(flatten)]
    root: IssuerRootArgs,
    /// The trust anchors (PEM) the device verifies its issuer against and hands out with every
    /// leaf (default: the --issuer-credentials ca.crt; during a root rotation that already
    /// holds the old and the new root).
    #[arg(long, value_name = "FILE")]
    trust_anchors: Option<PathBuf>,
    /// Lifetime of the leaves the device issues (Sentry's default: 24h).
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = parse_duration)]
    workload_ttl: Duration,
    /// How far the device backdates a leaf's NotBefore (Sentry's default: 15m).
    #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = parse_duration)]
    clock_skew: Duration,
    /// The fraction of its issuer's life after which the device makes its next issuer key
    /// (0 < F <= 1). Default 1/2, the project's rule for preparing the next issuer ("prepare at
    /// half its life"): the other half leaves time to reach the device and the HSM before the
    /// issuer expires.
    #[arg(long, value_name = "F", default_value = "0.5", value_parser = parse_fraction)]
    rotate_at: u16,
    /// Make and install a new issuer even when the device serves and no rotation is due (also
    /// applies new --workload-ttl, --clock-skew and --rotate-at).
    #[arg(long)]
    force_rotate: bool,
}

/// A fraction in (0, 1] as per mille (1 to 1000).
fn parse_fraction(text: &str) -> Result<u16, String> {
    let fraction: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    if !(fraction > 0.0 && fraction <= 1.0) {
        return Err(format!("{text} is not above 0 and at most 1"));
    }
    let permille = (fraction * 1000.0).round();
    if permille < 1.0 {
        return Err(format!("{text} is below 0.001"));
    }
    // In 1..=1000 by the checks above.
    Ok(permille as u16)
}

/// `warden edge issue`
#[derive(Debug, Args)]
pub(crate) struct IssueArgs {
    #[command(flatten)]
    device: DeviceArgs,
    /// The workload's CSR (PEM CERTIFICATE REQUEST), sent to the device as it is.
    #[arg(long, value_name = "FILE")]
    csr: PathBuf,
    /// The request's app id (Sentry's `id`).
    #[arg(long, value_name = "ID")]
    app_id: String,
    /// The request's namespace.
    #[arg(long, value_name = "NS")]
    namespace: String,
    /// The request's trust domain (empty: Sentry's rule for an empty one applies).
    #[arg(long, value_name = "TD", default_value = "")]
    trust_domain: String,
    /// Write the chain (leaf, then issuer) here, mode 0644, instead of printing it.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Write the trust anchors the device returns here, mode 0644.
    #[arg(long, value_name = "FILE")]
    trust_anchors_out: Option<PathBuf>,
    /// Replace --out and --trust-anchors-out if they exist.
    #[arg(long)]
    force: bool,
}

fn secs_u32(flag: &'static str, d: Duration) -> Result<u32, EdgeError> {
    u32::try_from(d.as_secs()).map_err(|_| {
        EdgeError::Root(RotationError::TooLongForDevice {
            flag,
            secs: d.as_secs(),
        })
    })
}

/// `warden edge provision`.
pub(crate) fn run_provision(args: ProvisionArgs) -> Result<(), EdgeError> {
    let device = args.device.device.clone();
    let workload_ttl_secs = secs_u32("--workload-ttl", args.workload_ttl)?;
    if workload_ttl_secs == 0 {
        return Err(RotationError::ZeroWorkloadTtl.into());
    }
    let clock_skew_secs = secs_u32("--clock-skew", args.clock_skew)?;
    let anchors_override = args
        .trust_anchors
        .as_ref()
        .map(|file| {
            files::read_at_most(file, MAX_PAYLOAD).map_err(|source| RotationError::Read {
                path: file.clone(),
                source,
            })
        })
        .transpose()?;
    let mut link = Link::open(&args.device)?;
    let status = link.status(now())?;
    let reason = if status.state == State::NeedsProvisioning {
        "needs provisioning"
    } else if status.pending_key {
        "a new issuer key waits for its certificate"
    } else if status.rotation_due {
        "issuer rotation is due"
    } else if args.force_rotate {
        "--force-rotate"
    } else {
        println!(
            "device {}: already provisioned, issuer valid until {}",
            device.display(),
            UnixTime::from_secs(status.issuer_not_after)
        );
        return Ok(());
    };
    // The root first: a wrong PIN or a missing ca.crt is found before the device is asked to
    // make a key.
    let root = args.root.load()?;
    let anchors = anchors_override
        .as_deref()
        .unwrap_or_else(|| root.anchors_pem());
    let csr = link.issuer_csr(now())?;
    let signed = root.sign_csr(
        &csr,
        &format!("the issuer CSR from device {}", device.display()),
        now(),
    )?;
    let reply = link.call(&Request::InstallIssuer {
        now: now().as_secs(),
        issuer_chain: signed.certificate_pem.as_bytes(),
        trust_anchors: anchors,
        workload_ttl_secs,
        clock_skew_secs,
        rotate_at_permille: args.rotate_at,
    })?;
    let issuer_not_after = match reply {
        Reply::Installed { issuer_not_after } => issuer_not_after,
        other => return Err(link.unexpected("INSTALL_ISSUER", &other)),
    };
    if issuer_not_after != signed.validity.not_after.as_secs() {
        return Err(link.protocol(format!(
            "INSTALLED reports an issuer valid until {}, but the certificate sent is valid \
             until {}",
            UnixTime::from_secs(issuer_not_after),
            signed.validity.not_after
        )));
    }
    println!(
        "device {}: {reason}; issuer {} installed, valid until {}",
        device.display(),
        signed.sentry_id,
        UnixTime::from_secs(issuer_not_after)
    );
    Ok(())
}

/// `warden edge issue`.
pub(crate) fn run_issue(args: IssueArgs) -> Result<(), EdgeError> {
    for file in [&args.out, &args.trust_anchors_out].into_iter().flatten() {
        if !args.force && std::fs::symlink_metadata(file).is_ok() {
            return Err(RotationError::OutputExists {
                flag: None,
                path: file.clone(),
            }
            .into());
        }
    }
    let csr = read_csr_file(&args.csr)?;
    let mut link = Link::open(&args.device)?;
    let now = now();
    let reply = link.call(&Request::Sign {
        now: now.as_secs(),
        app_id: &args.app_id,
        namespace: &args.namespace,
        trust_domain: &args.trust_domain,
        csr: &csr,
    })?;
    let Reply::Signed {
        workload_certificate,
        trust_anchors,
        valid_until,
        rotation_due,
    } = reply
    else {
        return Err(link.unexpected("SIGN", &reply));
    };
    check_signed(&csr, &workload_certificate, &trust_anchors, now)
        .map_err(|e| link.protocol(format!("SIGNED reply: {e}")))?;
    match &args.out {
        Some(out) => files::write_public_file_atomically(out, &workload_certificate, args.force)?,
        None => io::stdout()
            .write_all(&workload_certificate)
            .map_err(|e| EdgeError::Output(e.to_string()))?,
    }
    if let Some(out) = &args.trust_anchors_out {
        files::write_public_file_atomically(out, &trust_anchors, args.force)?;
    }
    eprintln!(
        "device {}: certificate valid until {}{}",
        args.device.device.display(),
        UnixTime::from_secs(valid_until),
        if rotation_due {
            "; the device's issuer is due for rotation: run `warden edge provision`"
        } else {
            ""
        }
    );
    Ok(())
}

/// What a device's SIGNED reply must be before it is handed on: a chain for the CSR's key that
/// leads to the returned anchors at `now`.
fn check_signed(
    csr: &[u8],
    chain_pem: &[u8],
    anchors_pem: &[u8],
    now: UnixTime,
) -> Result<(), String> {
    let chain = parse_certificates(chain_pem).map_err(|e| format!("workload_certificate: {e}"))?;
    let anchors = parse_certificates(anchors_pem).map_err(|e| format!("trust_anchors: {e}"))?;
    let csr = parse_and_verify(csr, &NativeVerifier).map_err(|e| format!("the CSR sent: {e}"))?;
    let leaf = chain
        .first()
        .ok_or_else(|| "workload_certificate holds no certificate".to_owned())?;
    if !key_matches(leaf, &csr.public_key) {
        return Err("the certificate is not for the CSR's key".to_owned());
    }
    let chain_der = encode_certificates(&chain).map_err(|e| e.to_string())?;
    let anchors_der = encode_certificates(&anchors).map_err(|e| e.to_string())?;
    let chain_refs = read_certificates(&chain_der).map_err(|e| e.to_string())?;
    let anchor_refs = read_certificates(&anchors_der).map_err(|e| e.to_string())?;
    verify_chain(&chain_refs, &anchor_refs, now, &NativeVerifier)
        .map_err(|e| format!("the chain does not verify under the returned trust anchors: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::edge::{EdgeCommand, run};
    use std::io::Read as _;
    use std::os::unix::net::UnixListener;
    use std::path::Path;
    use std::thread::JoinHandle;
    use std::time::Instant;
    use warden_core::profile::DEFAULT_CLOCK_SKEW;
    use warden_edge::device::{Device, Platform};
    use warden_edge::frame::FrameDecoder;
    use warden_edge::message;
    use warden_edge::store::Storage;

    use super::super::link::tests::FakeEnd;

    #[test]
    fn rotate_at_is_a_fraction_in_per_mille() {
        assert_eq!(parse_fraction("0.5"), Ok(500));
        assert_eq!(parse_fraction("1"), Ok(1000));
        assert_eq!(parse_fraction("0.001"), Ok(1));
        for bad in ["0", "-0.5", "1.01", "NaN", "inf", "0.0001", "half"] {
            assert!(parse_fraction(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn provision_defaults_are_sentrys() {
        let EdgeCommand::Provision(args) = parse(&[
            "provision",
            "--device",
            "d",
            "--issuer-credentials",
            "c",
            "--root-key",
            "k",
        ]) else {
            panic!("not provision");
        };
        assert_eq!(
            (args.workload_ttl, args.clock_skew),
            (
                warden_core::profile::DEFAULT_WORKLOAD_TTL,
                DEFAULT_CLOCK_SKEW
            )
        );
        assert_eq!(args.rotate_at, 500);
        assert_eq!(args.device.timeout, Duration::from_secs(30));
        assert!(!args.force_rotate);
    }

    // -----------------------------------------------------------------------------------------
    // The commands against the real device state machine (warden_edge::device) behind a UNIX
    // socket, as QEMU's `-serial unix:PATH,server=on` offers it.

    struct Ram([Vec<u8>; 2]);

    impl Storage for Ram {
        fn slot_len(&self) -> usize {
            8192
        }
        fn read(&self, slot: u8) -> &[u8] {
            &self.0[usize::from(slot & 1)]
        }
        fn write(&mut self, slot: u8, record: &[u8]) {
            self.0[usize::from(slot & 1)][..record.len()].copy_from_slice(record);
        }
    }

    struct Board(Instant);

    impl Platform for Board {
        fn ticks(&self) -> u64 {
            self.0.elapsed().as_micros() as u64
        }
        fn tick_hz(&self) -> u32 {
            1_000_000
        }
        fn heap_size(&self) -> u32 {
            65_536
        }
        fn heap_peak(&self) -> u32 {
            0
        }
        fn reset_heap_peak(&self) {}
        fn stack_peak(&self) -> u32 {
            0
        }
    }

    /// Serves `connections` connections on `socket` with one booted device (BOOT on the first
    /// connection, as QEMU starts the board when the socket connects).
    fn serve_device(socket: &Path, connections: usize) -> JoinHandle<()> {
        let listener = UnixListener::bind(socket).unwrap();
        std::thread::spawn(move || {
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed).unwrap();
            let mut device = Device::boot(Ram([vec![0; 8192], vec![0; 8192]]), &seed);
            let board = Board(Instant::now());
            for n in 0..connections {
                let (mut stream, _) = listener.accept().unwrap();
                if n == 0 {
                    stream.write_all(&device.boot_frame()).unwrap();
                }
                let mut decoder = FrameDecoder::new();
                let mut buf = [0u8; 512];
                loop {
                    let read = stream.read(&mut buf).unwrap_or(0);
                    if read == 0 {
                        break;
                    }
                    for &byte in &buf[..read] {
                        decoder.push(byte);
                        while let Some(event) = decoder.next_event() {
                            let reply = device.on_event(event, &board);
                            stream.write_all(&reply).unwrap();
                        }
                    }
                }
            }
        })
    }

    fn write_root(dir: &Path) {
        use crate::native::NativeKey;
        use warden_core::bundle::{certificates_to_pem, create_root};
        use warden_core::crypto::KeyAlgorithm;
        use warden_core::profile::Validity;
        let key = NativeKey::generate(KeyAlgorithm::P256).unwrap();
        let root = create_root(
            &key,
            &warden_core::spiffe::TrustDomain::new("edge.example").unwrap(),
            Validity::backdated(now(), DEFAULT_CLOCK_SKEW, Duration::from_secs(90 * 86_400)),
            &mut crate::util::clock::rng(),
        )
        .unwrap();
        std::fs::write(dir.join("ca.crt"), certificates_to_pem([&root]).unwrap()).unwrap();
        std::fs::write(dir.join("root.key"), key.to_pkcs8_pem().unwrap().as_bytes()).unwrap();
    }

    fn workload_csr(dir: &Path) -> PathBuf {
        use crate::native::NativeKey;
        use warden_core::crypto::KeyAlgorithm;
        use warden_core::csr::{CsrTemplate, create_csr, csr_to_pem};
        let key = NativeKey::generate(KeyAlgorithm::P256).unwrap();
        let csr = create_csr(&key, &CsrTemplate::default()).unwrap();
        let path = dir.join("workload.csr");
        std::fs::write(&path, csr_to_pem(&csr).unwrap()).unwrap();
        path
    }

    #[derive(Debug, clap::Parser)]
    struct EdgeCli {
        #[command(subcommand)]
        command: EdgeCommand,
    }

    fn parse<S: AsRef<str>>(args: &[S]) -> EdgeCommand {
        use clap::Parser as _;
        let all = std::iter::once("edge").chain(args.iter().map(AsRef::as_ref));
        EdgeCli::try_parse_from(all).unwrap().command
    }

    /// A device at `socket` that takes one connection and runs `script` on it.
    fn fake_at(
        socket: &Path,
        script: impl FnOnce(&mut FakeEnd) + Send + 'static,
    ) -> JoinHandle<()> {
        let listener = UnixListener::bind(socket).unwrap();
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            script(&mut FakeEnd {
                stream,
                decoder: FrameDecoder::new(),
            });
        })
    }

    #[test]
    fn a_signed_reply_that_does_not_fit_the_request_is_refused_and_nothing_is_written() {
        use warden_core::bundle::{CaBundle, CaParams, WorkloadRequest};
        use warden_core::crypto::{CaSigner as _, KeyAlgorithm};
        use warden_core::spiffe::{SpiffeId, TrustDomain};
        let dir = tempfile::tempdir().unwrap();
        let csr_file = workload_csr(dir.path());
        let csr_key = parse_and_verify(&std::fs::read(&csr_file).unwrap(), &NativeVerifier)
            .unwrap()
            .public_key;
        let td = TrustDomain::new("public").unwrap();
        let mut rng = crate::util::clock::rng();
        let params = CaParams {
            trust_domain: &td,
            namespace: "default",
            key_algorithm: KeyAlgorithm::P256,
            lifetime: Duration::from_secs(86_400),
            clock_skew: DEFAULT_CLOCK_SKEW,
        };
        let (ca, files) = CaBundle::generate(&params, now(), &mut rng).unwrap();
        let (_, other_files) = CaBundle::generate(&params, now(), &mut rng).unwrap();
        let id = SpiffeId::parse("spiffe://public/ns/default/app").unwrap();
        let mut leaf_for = |key| {
            let request = WorkloadRequest {
                public_key: key,
                spiffe_id: &id,
                dns_names: &[],
                ttl: Duration::from_secs(3600),
                clock_skew: DEFAULT_CLOCK_SKEW,
            };
            ca.issue_workload(&request, now(), &mut rng)
                .unwrap()
                .chain_pem
                .into_bytes()
        };
        let other_key = crate::native::NativeKey::generate(KeyAlgorithm::P256)
            .unwrap()
            .public_key();
        let good = leaf_for(&csr_key);
        let anchors = files.trust_anchors.clone().into_bytes();
        let cases: [(Vec<u8>, Vec<u8>, &str); 4] = [
            (
                b"garbage".to_vec(),
                anchors.clone(),
                "workload_certificate: ",
            ),
            (Vec::new(), anchors.clone(), "no PEM CERTIFICATE block"),
            (
                leaf_for(&other_key),
                anchors.clone(),
                "the certificate is not for the CSR's key",
            ),
            (
                good.clone(),
                other_files.trust_anchors.into_bytes(),
                "the chain does not verify under the returned trust anchors",
            ),
        ];
        let out = dir.path().join("chain.pem");
        let anchors_out = dir.path().join("anchors.pem");
        let issue = |socket: &Path| {
            parse(&[
                "issue",
                "--device",
                socket.to_str().unwrap(),
                "--csr",
                csr_file.to_str().unwrap(),
                "--app-id",
                "app",
                "--namespace",
                "default",
                "--out",
                out.to_str().unwrap(),
                "--trust-anchors-out",
                anchors_out.to_str().unwrap(),
            ])
        };
        let answer = |chain: Vec<u8>, anchors: Vec<u8>| {
            move |end: &mut FakeEnd| {
                let (kind, id, _) = end.request();
                assert_eq!(kind, message::kind::SIGN);
                end.reply(
                    id,
                    &Reply::Signed {
                        workload_certificate: chain,
                        trust_anchors: anchors,
                        valid_until: 1,
                        rotation_due: false,
                    },
                );
            }
        };
        for (n, (chain, anchors, needle)) in cases.into_iter().enumerate() {
            let socket = dir.path().join(format!("bad-{n}.sock"));
            let device = fake_at(&socket, answer(chain, anchors));
            let e = run(issue(&socket)).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("device {}: SIGNED reply: ", socket.display()))
                    && e.contains(needle),
                "{e}"
            );
            assert!(!out.exists() && !anchors_out.exists(), "{e}");
            device.join().unwrap();
        }
        let socket = dir.path().join("good.sock");
        let device = fake_at(&socket, answer(good.clone(), anchors.clone()));
        run(issue(&socket)).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), good);
        assert_eq!(std::fs::read(&anchors_out).unwrap(), anchors);
        device.join().unwrap();
    }

    #[test]
    fn provision_issue_and_status_against_the_device_state_machine() {
        let dir = tempfile::tempdir().unwrap();
        let d = |name: &str| dir.path().join(name).display().to_string();
        write_root(dir.path());
        let socket = d("device.sock");
        let device = serve_device(Path::new(&socket), 8);
        let root_flags = [
            "--issuer-credentials",
            dir.path().to_str().unwrap(),
            "--root-key",
            &d("root.key"),
            "--namespace",
            "edge",
        ];
        let provision = |extra: &[&str]| -> Vec<String> {
            ["provision", "--device", socket.as_str(), "--timeout", "10s"]
                .iter()
                .chain(&root_flags)
                .chain(extra)
                .map(|s| (*s).to_owned())
                .collect()
        };
        // 1: not provisioned yet (the BOOT frame on this first connection is skipped).
        let mut link = Link::open(&DeviceArgs {
            device: PathBuf::from(&socket),
            timeout: Duration::from_secs(10),
        })
        .unwrap();
        let before = link.status(now()).unwrap();
        assert_eq!(before.state, State::NeedsProvisioning);
        drop(link);
        // 2: provision; 3: already provisioned.
        run(parse(&provision(&[]))).unwrap();
        run(parse(&provision(&[]))).unwrap();
        // 4: a workload certificate, checked against ca.crt.
        let csr = workload_csr(dir.path());
        run(parse(&[
            "issue",
            "--device",
            &socket,
            "--csr",
            csr.to_str().unwrap(),
            "--app-id",
            "app",
            "--namespace",
            "default",
            "--out",
            &d("chain.pem"),
            "--trust-anchors-out",
            &d("anchors.pem"),
        ]))
        .unwrap();
        let chain = parse_certificates(&std::fs::read(d("chain.pem")).unwrap()).unwrap();
        assert_eq!(chain.len(), 2);
        assert_eq!(
            std::fs::read(d("anchors.pem")).unwrap(),
            std::fs::read(d("ca.crt")).unwrap()
        );
        let issuer = chain[1].clone();
        assert_eq!(
            issuer.tbs_certificate().subject().to_string(),
            "O=spiffe://edge.example/ns/edge/dapr-sentry"
        );
        // 5: a refused request comes back as the device's code and message; nothing written.
        let garbage = dir.path().join("garbage.csr");
        std::fs::write(&garbage, "not a CSR").unwrap();
        let e = run(parse(&[
            "issue",
            "--device",
            &socket,
            "--csr",
            garbage.to_str().unwrap(),
            "--app-id",
            "app",
            "--namespace",
            "default",
            "--out",
            &d("refused.pem"),
        ]))
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            format!(
                "device {socket}: SIGN refused with InvalidArgument (3): invalid certificate signing request"
            )
        );
        assert!(!dir.path().join("refused.pem").exists());
        // 6: a forced rotation installs a new issuer.
        run(parse(&provision(&[
            "--force-rotate",
            "--valid-for-secs",
            "3600",
        ])))
        .unwrap();
        // 7, 8: status as people and scripts read it, and the new issuer's life.
        run(parse(&["status", "--device", &socket, "-o", "json"])).unwrap();
        let mut link = Link::open(&DeviceArgs {
            device: PathBuf::from(&socket),
            timeout: Duration::from_secs(10),
        })
        .unwrap();
        let after = link.status(now()).unwrap();
        drop(link);
        assert_eq!(after.state, State::Serving);
        assert!(!after.pending_key && !after.rotation_due);
        assert_eq!(
            after.issuer_not_after - after.issuer_not_before,
            3600 + DEFAULT_CLOCK_SKEW.as_secs()
        );
        device.join().unwrap();
    }
}

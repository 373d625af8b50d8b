//! The edge sentry (issue 16): the `warden-edge-firmware` image booted in QEMU's `mps2-an386`
//! (Cortex-M4F), provisioned by `warden edge provision` with an issuer signed by a root in a
//! real SoftHSM2 token, then held to what the server promises: leaves every verifier accepts,
//! of the server's exact shape, Sentry's answers to the server's table of bad requests, error
//! frames for broken framing, rotation under a request loop, and resets at the worst moments.
//!
//! The firmware is built by `scripts/edge.sh build` (scripts/test.sh does it first);
//! `WARDEN_EDGE_FIRMWARE` names the ELF. The footprint and instruction counts measured here are
//! written to `edge-measurements.txt` in the test's temporary directory, which scripts/test.sh
//! prints.
// The whole binary is test code: this lets clippy.toml's `allow-*-in-tests` settings cover the
// helpers outside `#[test]` functions too.
#![cfg(test)]

use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use der::Encode as _;
use warden_core::bundle::parse_certificates;
use warden_edge::frame::{self, Event, FrameDecoder};
use warden_edge::message::{Reply, Request, State, Status};
use warden_tests::common::{
    OPENSSL_KEYS, data_path, go_csr_pem, openssl_csr, openssl_verify_ok, read_file, run, tempdir,
    write_file,
};
use warden_tests::server::{Warden, ders, sign};
use warden_tests::softhsm::Token;
use warden_tests::{common, sentry_table, server, support};
use x509_cert::Certificate;

/// Peak heap during one P-256 issuance plus the deepest stack since boot (issue 16's budget).
const HEAP_AND_STACK_BUDGET: u32 = 64 * 1024;
/// How long one device exchange may take: QEMU with `-icount` on a loaded 2-core machine.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(60);

fn firmware() -> PathBuf {
    image("WARDEN_EDGE_FIRMWARE", "")
}

/// The test-only image with the `fault-injection` feature (`scripts/edge.sh build-faults`).
fn fault_firmware() -> PathBuf {
    image("WARDEN_EDGE_FAULT_FIRMWARE", " faults")
}

fn image(variable: &str, elf_argument: &str) -> PathBuf {
    let path = std::env::var_os(variable)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!(
                "{variable} is not set: build the firmware with `scripts/edge.sh build` and \
             `build-faults`, and set it to the path `scripts/edge.sh elf{elf_argument}` prints \
             (scripts/test.sh does both)"
            )
        });
    assert!(
        path.is_file(),
        "{variable}={} is not a file",
        path.display()
    );
    path
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The firmware running in QEMU, its serial port and monitor on UNIX sockets.
struct Board {
    qemu: Child,
    dir: tempfile::TempDir,
}

impl Board {
    fn boot() -> Self {
        Self::boot_image(&firmware())
    }

    fn boot_image(image: &Path) -> Self {
        let dir = tempdir();
        // QEMU gives the board no entropy: a fresh seed per launch, as docs/edge.md describes.
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).unwrap();
        let seed_file = write_file(dir.path(), "seed.bin", seed);
        let log = std::fs::File::create(dir.path().join("qemu.log")).unwrap();
        let qemu = Command::new(repo_root().join("scripts/edge.sh"))
            .arg("qemu")
            .arg(dir.path().join("serial.sock"))
            .arg(dir.path().join("monitor.sock"))
            .arg(&seed_file)
            .env("WARDEN_EDGE_FIRMWARE", image)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start scripts/edge.sh qemu");
        let board = Self { qemu, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !(board.serial().exists() && board.monitor().exists()) {
            assert!(
                Instant::now() < deadline,
                "QEMU made no sockets:\n{}",
                board.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        board
    }

    fn serial(&self) -> PathBuf {
        self.dir.path().join("serial.sock")
    }

    fn monitor(&self) -> PathBuf {
        self.dir.path().join("monitor.sock")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("qemu.log")).unwrap_or_default()
    }

    fn link(&self) -> Link {
        Link::connect(&self.serial())
    }

    /// The reset button: QEMU's `system_reset` (RAM, and so the device's store, is kept).
    fn reset(&self) {
        let mut monitor = UnixStream::connect(self.monitor()).unwrap();
        monitor.write_all(b"system_reset\n").unwrap();
        // Closing the monitor before it has run the command can lose the command: wait for the
        // prompt that follows it.
        monitor
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = Vec::new();
        loop {
            let text = String::from_utf8_lossy(&seen);
            if text
                .rfind("system_reset")
                .is_some_and(|at| text[at..].contains("(qemu)"))
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the QEMU monitor did not take system_reset: {text}"
            );
            let mut buf = [0u8; 1024];
            match monitor.read(&mut buf) {
                Ok(0) => panic!("the QEMU monitor closed: {text}"),
                Ok(n) => seen.extend_from_slice(&buf[..n]),
                Err(_) => {}
            }
        }
    }

    /// `warden <args> --device <serial>` with the token's HSM flags, PIN in the environment.
    fn warden(&self, token: &Token, args: &[&str]) -> Command {
        let mut cmd = token.warden(args);
        cmd.arg("--device").arg(self.serial());
        cmd
    }

    fn provision(&self, token: &Token, creds: &Path, extra: &[&str]) -> String {
        let mut cmd = self.warden(token, &["edge", "provision"]);
        cmd.args(Token::hsm_flags())
            .arg("--issuer-credentials")
            .arg(creds)
            .args(extra);
        run(cmd).stdout
    }
}

impl Drop for Board {
    fn drop(&mut self) {
        let _ = self.qemu.kill();
        let _ = self.qemu.wait();
    }
}

/// What the device answered a SIGN.
struct Signed {
    chain_pem: String,
    trust_anchors_pem: String,
    rotation_due: bool,
}

impl Signed {
    fn chain(&self) -> Vec<Certificate> {
        parse_certificates(self.chain_pem.as_bytes()).unwrap()
    }
}

/// One connection to the device's serial port, speaking the protocol of docs/edge.md with
/// warden-edge's codec (the driver's and the device's).
struct Link {
    stream: UnixStream,
    decoder: FrameDecoder,
    /// Frames decoded but not yet read.
    decoded: std::collections::VecDeque<(u32, Reply)>,
    next_id: u32,
    /// Frames the device sent that were not replies to a request: BOOT, and error frames with
    /// id 0 (garbage reports).
    unsolicited: Vec<Reply>,
}

impl Link {
    fn connect(path: &Path) -> Self {
        let deadline = Instant::now() + Duration::from_secs(20);
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(stream) => break stream,
                Err(e) => {
                    assert!(
                        Instant::now() < deadline,
                        "cannot connect to {}: {e}",
                        path.display()
                    );
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        };
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        Self {
            stream,
            decoder: FrameDecoder::new(),
            decoded: std::collections::VecDeque::new(),
            next_id: 1,
            unsolicited: Vec::new(),
        }
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Sends `request` with a fresh id; returns the id.
    fn send(&mut self, request: &Request<'_>) -> u32 {
        let id = self.next_id;
        self.next_id += 1;
        let (kind, payload) = request.encode();
        self.send_raw(&frame::encode(kind, id, &payload));
        id
    }

    /// The next frame the device sends, as (id, reply).
    fn next_frame(&mut self) -> (u32, Reply) {
        let deadline = Instant::now() + EXCHANGE_TIMEOUT;
        loop {
            if let Some(frame) = self.decoded.pop_front() {
                return frame;
            }
            assert!(
                Instant::now() < deadline,
                "no frame from the device within {EXCHANGE_TIMEOUT:?}"
            );
            let mut buf = [0u8; 4096];
            let n = match self.stream.read(&mut buf) {
                Ok(0) => panic!("the device's serial port closed"),
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    continue;
                }
                Err(e) => panic!("reading the serial port: {e}"),
            };
            // The decoder holds at most one frame: drain it after every byte.
            for &byte in &buf[..n] {
                self.decoder.push(byte);
                while let Some(event) = self.decoder.next_event() {
                    match event {
                        Event::Frame { kind, id, payload } => {
                            let reply = Reply::decode(kind, &payload).unwrap_or_else(|e| {
                                panic!("device sent an undecodable frame: {e}")
                            });
                            self.decoded.push_back((id, reply));
                        }
                        other => panic!("the device's output is not clean framing: {other:?}"),
                    }
                }
            }
        }
    }

    /// The reply to request `id`. Other frames go to `unsolicited`: BOOT and garbage reports
    /// (id 0), late replies to earlier requests (cut short by a reset), and error frames about
    /// the rest of a frame that a reset cut in two (its bytes reach the rebooted device as
    /// junk, in which a sync can start a bogus header with any id).
    fn reply_to(&mut self, id: u32) -> Reply {
        loop {
            let (got, reply) = self.next_frame();
            if got == id {
                return reply;
            }
            assert!(
                got < id || matches!(reply, Reply::Error { .. }),
                "a reply for request {got} while waiting for {id}: {reply:?}"
            );
            self.unsolicited.push(reply);
        }
    }

    /// Reads frames until the device's BOOT frame: the device came back from a reset.
    fn wait_for_boot(&mut self) {
        loop {
            if let (0, Reply::Boot { .. }) = self.next_frame() {
                return;
            }
        }
    }

    fn call(&mut self, request: &Request<'_>) -> Reply {
        let id = self.send(request);
        self.reply_to(id)
    }

    fn status(&mut self) -> Status {
        match self.call(&Request::Status { now: unix_now() }) {
            Reply::StatusReply(status) => status,
            other => panic!("STATUS answered {other:?}"),
        }
    }

    /// A SIGN at `now`: the leaf chain, or the (code, message) of the error frame.
    fn sign_at(
        &mut self,
        now: u64,
        app_id: &str,
        namespace: &str,
        trust_domain: &str,
        csr: &[u8],
    ) -> Result<Signed, (u8, String)> {
        let request = Request::Sign {
            now,
            app_id,
            namespace,
            trust_domain,
            csr,
        };
        match self.call(&request) {
            Reply::Signed {
                workload_certificate,
                trust_anchors,
                rotation_due,
                ..
            } => Ok(Signed {
                chain_pem: String::from_utf8(workload_certificate).unwrap(),
                trust_anchors_pem: String::from_utf8(trust_anchors).unwrap(),
                rotation_due,
            }),
            Reply::Error { code, message } => Err((code, message)),
            other => panic!("SIGN answered {other:?}"),
        }
    }

    fn sign(&mut self, csr: &[u8]) -> Signed {
        self.sign_at(unix_now(), "app", "default", "", csr)
            .unwrap_or_else(|(code, message)| panic!("SIGN refused: {code} {message}"))
    }

    fn issuer_csr(&mut self) -> Vec<u8> {
        match self.call(&Request::IssuerCsr { now: unix_now() }) {
            Reply::IssuerCsr { csr } => csr,
            other => panic!("ISSUER_CSR answered {other:?}"),
        }
    }
}

/// A root in a fresh SoftHSM2 token (`warden hsm init-root`) and its credential directory.
struct HsmRoot {
    token: Token,
    creds: tempfile::TempDir,
}

impl HsmRoot {
    fn new() -> Self {
        let token = Token::init();
        let creds = tempdir();
        token.init_root(creds.path());
        Self { token, creds }
    }

    fn ca_crt(&self) -> PathBuf {
        self.creds.path().join("ca.crt")
    }

    fn anchors(&self) -> Vec<Certificate> {
        parse_certificates(&read_file(&self.ca_crt())).unwrap()
    }

    /// `warden issuer sign-csr` with the HSM root: the issuer certificate PEM.
    fn sign_issuer_csr(&self, csr: &[u8], extra: &[&str]) -> Vec<u8> {
        let work = tempdir();
        let csr_file = write_file(work.path(), "issuer.csr", csr);
        let out = work.path().join("issuer.crt");
        let mut cmd = self.token.warden(&["issuer", "sign-csr"]);
        cmd.args(Token::hsm_flags())
            .arg("--issuer-credentials")
            .arg(self.creds.path())
            .arg("--csr")
            .arg(&csr_file)
            .arg("--out")
            .arg(&out)
            .args(extra);
        run(cmd);
        read_file(&out)
    }

    /// Checks a device SIGN answer with openssl and rustls-webpki against the HSM root, and
    /// the leaf against the X509-SVID rules; returns the leaf's issuer certificate.
    fn check(&self, signed: &Signed, expected_id: &str, work: &Path) -> Certificate {
        let anchors = self.anchors();
        assert_eq!(
            ders(&parse_certificates(signed.trust_anchors_pem.as_bytes()).unwrap()),
            ders(&anchors),
            "the device must answer the HSM root as the trust anchors"
        );
        let mut chain = signed.chain();
        assert_eq!(chain.len(), 2, "leaf and the device's issuer");
        let leaf = chain.remove(0);
        support::assert_x509_svid_leaf(&leaf, expected_id);
        support::webpki_verify(&leaf, &chain, &anchors, common::now())
            .unwrap_or_else(|e| panic!("rustls-webpki rejects the device's chain: {e:?}"));
        write_file(work, "leaf.pem", common::certificate_pem(&leaf));
        write_file(work, "issuer.pem", common::certificate_pem(&chain[0]));
        std::fs::copy(self.ca_crt(), work.join("ca.pem")).unwrap();
        openssl_verify_ok(work, "ca.pem", "issuer.pem", "leaf.pem");
        chain.remove(0)
    }
}

/// The daprd-shaped CSRs of tests/data/go-csr, as (file, PEM).
fn go_csrs() -> Vec<(&'static str, Vec<u8>)> {
    [
        "csr-p256.pem",
        "csr-ed25519.pem",
        "csr-p384.pem",
        "csr-rsa2048.pem",
        "csr-p256-legacy-block-type.pem",
    ]
    .into_iter()
    .map(|file| (file, go_csr_pem(file)))
    .collect()
}

/// Everything of a leaf but what must differ between two issuances: serial, validity, key
/// identifiers, subject key and signature.
fn shape(leaf: &Certificate) -> Vec<String> {
    let tbs = leaf.tbs_certificate();
    let mut shape = vec![
        format!("version {:?}", tbs.version()),
        format!("signature {:?}", tbs.signature()),
        format!("issuer {}", tbs.issuer()),
        format!("subject {}", tbs.subject()),
        format!("algorithm {:?}", leaf.signature_algorithm()),
    ];
    for ext in tbs.extensions().into_iter().flatten() {
        let value = match ext.extn_id {
            const_oid::db::rfc5280::ID_CE_SUBJECT_KEY_IDENTIFIER
            | const_oid::db::rfc5280::ID_CE_AUTHORITY_KEY_IDENTIFIER => "(key id)".to_owned(),
            _ => format!("{:02x?}", ext.extn_value.as_bytes()),
        };
        shape.push(format!("{} critical={} {value}", ext.extn_id, ext.critical));
    }
    shape
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioned_from_softhsm_it_issues_leaves_verifiers_accept_in_the_servers_shape() {
    let root = HsmRoot::new();
    let board = Board::boot();
    let work = tempdir();

    let mut link = board.link();
    let status = link.status();
    assert!(
        status.state != State::Serving,
        "a fresh device must ask to be provisioned: {status:?}"
    );
    match link.sign_at(unix_now(), "app", "default", "", &go_csrs()[0].1) {
        Err((9, message)) => assert!(message.contains("provision"), "{message}"),
        other => panic!(
            "an unprovisioned device must refuse with FailedPrecondition: {:?}",
            other.err()
        ),
    }
    drop(link);

    let out = board.provision(&root.token, root.creds.path(), &[]);
    assert!(out.contains("valid until"), "provision output: {out}");
    let mut link = board.link();
    let status = link.status();
    assert!(
        status.state == State::Serving && !status.pending_key,
        "{status:?}"
    );

    let mut device_issuer = None;
    for (file, csr) in go_csrs() {
        let signed = link.sign(&csr);
        let issuer = root.check(&signed, "spiffe://public/ns/default/app", work.path());
        support::assert_x509_svid_signing_cert(&issuer);
        // The issuer is the device's own, signed by the HSM root, not the server's issuer.crt.
        assert_ne!(
            issuer.to_der().unwrap(),
            first_der(&read_file(&root.creds.path().join("issuer.crt"))),
            "{file}: the device must sign with its own issuer"
        );
        let key = issuer
            .tbs_certificate()
            .subject_public_key_info()
            .to_der()
            .unwrap();
        let previous = device_issuer.get_or_insert(key.clone());
        assert_eq!(
            *previous, key,
            "{file}: every leaf from the same device issuer"
        );
    }

    // The same CSR through the server on the same root: the same leaf, but for what must
    // differ.
    let warden = Warden::start(root.creds.path());
    let mut client = warden.client().await;
    let csr = go_csrs()[0].1.clone();
    let response = sign(&mut client, server::request("app", "default", "", &csr))
        .await
        .unwrap();
    let server_leaf = parse_certificates(&response.workload_certificate)
        .unwrap()
        .remove(0);
    let device_leaf = link.sign(&csr).chain().remove(0);
    assert_eq!(shape(&device_leaf), shape(&server_leaf));
}

fn first_der(pem: &[u8]) -> Vec<u8> {
    parse_certificates(pem).unwrap().remove(0).to_der().unwrap()
}

/// A provisioned device on a fresh HSM root.
fn provisioned(extra: &[&str]) -> (HsmRoot, Board) {
    let root = HsmRoot::new();
    let board = Board::boot();
    board.provision(&root.token, root.creds.path(), extra);
    (root, board)
}

#[test]
fn bad_requests_get_the_servers_codes_and_messages_from_the_device() {
    let (_root, board) = provisioned(&[]);
    let work = tempdir();
    let mut link = board.link();
    let mut mismatches = Vec::new();
    let mut asked = 0;
    for case in sentry_table::refused_requests(work.path()) {
        // The device protocol carries no validator or token (docs/edge.md).
        if case.selects_a_validator() {
            continue;
        }
        asked += 1;
        let r = &case.request;
        match link.sign_at(
            unix_now(),
            &r.id,
            &r.namespace,
            &r.trust_domain,
            &r.certificate_signing_request,
        ) {
            Ok(_) => mismatches.push(format!("{}: accepted", case.name)),
            Err((code, message)) => {
                mismatches.extend(case.mismatch(tonic::Code::from(i32::from(code)), &message));
            }
        }
    }
    assert!(asked >= 15, "only {asked} cases of the table were asked");
    let csr = openssl_csr(work.path(), &OPENSSL_KEYS[0]).pem;
    for (name, r, expected) in sentry_table::accepted_at_the_limits(&csr) {
        match link.sign_at(
            unix_now(),
            &r.id,
            &r.namespace,
            &r.trust_domain,
            &r.certificate_signing_request,
        ) {
            Ok(signed) => support::assert_x509_svid_leaf(&signed.chain()[0], &expected),
            Err(e) => mismatches.push(format!("{name}: refused with {e:?}")),
        }
    }
    assert!(
        mismatches.is_empty(),
        "the device answers unlike Sentry:\n{}",
        mismatches.join("\n")
    );
}

/// Expects an error frame (id `id`, InvalidArgument) whose message contains `needle`, then
/// checks the device still answers STATUS.
fn expect_frame_error(link: &mut Link, id: u32, needle: &str) {
    let (got, reply) = link.next_frame();
    match reply {
        Reply::Error { code, message } => {
            assert_eq!((got, code), (id, 3), "{message}");
            assert!(
                message.contains(needle),
                "error frame {message:?} does not mention {needle:?}"
            );
        }
        other => panic!("expected an error frame about {needle:?}, got {other:?}"),
    }
    assert!(
        link.status().state == State::Serving,
        "the device stopped serving after {needle:?}"
    );
}

#[test]
fn broken_frames_get_error_frames_and_the_device_keeps_serving() {
    let (root, board) = provisioned(&[]);
    let work = tempdir();
    let mut link = board.link();
    // Garbage without a sync (none of the bytes is 0x57).
    link.send_raw(&[0x00; 300]);
    link.send_raw(&frame::encode(0x01, 77, &unix_now().to_le_bytes()));
    match link.next_frame() {
        (0, Reply::Error { code: 3, message }) => assert!(message.contains("300"), "{message}"),
        other => panic!("garbage got {other:?}"),
    }
    match link.next_frame() {
        (77, Reply::StatusReply(_)) => {}
        other => panic!("the STATUS after garbage got {other:?}"),
    }
    // A header announcing more than MAX_PAYLOAD: refused at once, not waited for.
    let mut oversized = frame::encode(0x04, 78, &[]);
    oversized[7..9].copy_from_slice(&u16::MAX.to_le_bytes());
    link.send_raw(&oversized[..9]);
    expect_frame_error(&mut link, 78, "8192");
    // A flipped CRC.
    let mut corrupt = frame::encode(0x01, 79, &unix_now().to_le_bytes());
    *corrupt.last_mut().unwrap() ^= 0xff;
    link.send_raw(&corrupt);
    expect_frame_error(&mut link, 79, "checksum");
    // A truncated SIGN, then STATUS frames: the device waits for the bytes the header
    // announced (it never guesses), then the checksum fails, and every STATUS inside those
    // bytes is still found and answered.
    let (_, csr) = &go_csrs()[0];
    let sign = Request::Sign {
        now: unix_now(),
        app_id: "app",
        namespace: "default",
        trust_domain: "",
        csr,
    };
    let (kind, payload) = sign.encode();
    let whole = frame::encode(kind, 80, &payload);
    link.send_raw(&whole[..whole.len() / 2]);
    let status_frame_len = frame::encode(0x01, 0, &0u64.to_le_bytes()).len();
    let statuses = u32::try_from(whole.len() / status_frame_len + 2).unwrap();
    for id in 100..100 + statuses {
        link.send_raw(&frame::encode(0x01, id, &unix_now().to_le_bytes()));
    }
    let mut answered = std::collections::BTreeSet::new();
    let mut checksum_errors = 0;
    while answered.len() < statuses as usize {
        match link.next_frame() {
            (id, Reply::StatusReply(_)) if (100..100 + statuses).contains(&id) => {
                assert!(answered.insert(id), "STATUS {id} answered twice");
            }
            (80, Reply::Error { code: 3, message }) => {
                assert!(message.contains("checksum"), "{message}");
                checksum_errors += 1;
            }
            other => panic!("unexpected after a truncated frame: {other:?}"),
        }
    }
    assert_eq!(
        checksum_errors, 1,
        "the truncated SIGN must be reported once"
    );
    // A good frame whose payload is not a request: unknown kind, short payload, extra bytes,
    // a string that is not UTF-8.
    link.send_raw(&frame::encode(0x7f, 82, b""));
    expect_frame_error(&mut link, 82, "kind");
    link.send_raw(&frame::encode(kind, 83, &payload[..payload.len() - 1]));
    expect_frame_error(&mut link, 83, "csr");
    let mut extra = payload.clone();
    extra.push(0);
    link.send_raw(&frame::encode(kind, 84, &extra));
    expect_frame_error(&mut link, 84, "trailing");
    let mut not_utf8 = payload.clone();
    // now (8) + app_id length (2) + "app": the first byte of the app id.
    not_utf8[10] = 0xff;
    link.send_raw(&frame::encode(kind, 85, &not_utf8));
    expect_frame_error(&mut link, 85, "app_id");
    // The largest payload, all CSR garbage: Sentry's answer to a garbage CSR.
    let big = vec![b'A'; frame::MAX_PAYLOAD - 64];
    match link.sign_at(unix_now(), "app", "default", "", &big) {
        Err((3, message)) => assert_eq!(message, "invalid certificate signing request"),
        other => panic!("a garbage CSR got {:?}", other.map(|s| s.chain_pem)),
    }
    // Still serving correctly.
    let signed = link.sign(csr);
    root.check(&signed, "spiffe://public/ns/default/app", work.path());
}

/// INSTALL_ISSUER with the HSM root as the trust anchors and Sentry's default TTL and skew.
fn install<'a>(issuer_pem: &'a [u8], anchors_pem: &'a [u8], now: u64) -> Request<'a> {
    Request::InstallIssuer {
        now,
        issuer_chain: issuer_pem,
        trust_anchors: anchors_pem,
        workload_ttl_secs: 24 * 60 * 60,
        clock_skew_secs: 15 * 60,
        rotate_at_permille: 500,
    }
}

/// The issuer certificate (DER) of a device SIGN answer.
fn issuer_of(signed: &Signed) -> Vec<u8> {
    signed.chain()[1].to_der().unwrap()
}

/// How far ahead of the real clock the requests run, so a one-hour issuer is past half its life.
const AHEAD: u64 = 40 * 60;

#[test]
fn rotation_on_the_device_under_a_request_loop_fails_no_request() {
    let (root, board) = provisioned(&["--valid-for-secs", "3600"]);
    let anchors = root.anchors();
    let link = Arc::new(Mutex::new(board.link()));
    let (_, csr) = go_csrs().remove(0);
    let first_issuer = issuer_of(&link.lock().unwrap().sign(&csr));

    // The request loop: every SIGN must succeed and verify; it records which issuer signed.
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let due_seen = Arc::new(AtomicBool::new(false));
    let looper = {
        let (link, stop, served, due_seen, csr, anchors) = (
            link.clone(),
            stop.clone(),
            served.clone(),
            due_seen.clone(),
            csr.clone(),
            anchors.clone(),
        );
        std::thread::spawn(move || {
            let mut issuers: Vec<Vec<u8>> = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let now = unix_now() + AHEAD;
                let signed = link
                    .lock()
                    .unwrap()
                    .sign_at(now, "app", "default", "", &csr)
                    .unwrap_or_else(|e| panic!("a request failed during rotation: {e:?}"));
                let mut chain = signed.chain();
                let leaf = chain.remove(0);
                support::webpki_verify(
                    &leaf,
                    &chain,
                    &anchors,
                    warden_core::UnixTime::from_secs(now),
                )
                .unwrap_or_else(|e| panic!("a leaf during rotation does not verify: {e:?}"));
                if signed.rotation_due {
                    due_seen.store(true, Ordering::SeqCst);
                }
                let issuer = issuer_of(&signed);
                if issuers.last() != Some(&issuer) {
                    issuers.push(issuer);
                }
                served.fetch_add(1, Ordering::SeqCst);
            }
            issuers
        })
    };
    let wait_for = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + EXCHANGE_TIMEOUT;
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    wait_for("rotation_due", &|| due_seen.load(Ordering::SeqCst));
    // The driver's steps, between the loop's requests: the device's new CSR, signed by the
    // HSM root while the loop goes on, then installed.
    let issuer_csr = link.lock().unwrap().issuer_csr();
    let before_signing = served.load(Ordering::SeqCst);
    let issuer_pem = root.sign_issuer_csr(&issuer_csr, &["--valid-for-secs", "3600"]);
    wait_for("requests while the HSM signs", &|| {
        served.load(Ordering::SeqCst) >= before_signing + 10
    });
    let anchors_pem = read_file(&root.ca_crt());
    match link
        .lock()
        .unwrap()
        .call(&install(&issuer_pem, &anchors_pem, unix_now() + AHEAD))
    {
        Reply::Installed { .. } => {}
        other => panic!("INSTALL_ISSUER answered {other:?}"),
    }
    let after_install = served.load(Ordering::SeqCst);
    wait_for("requests after the install", &|| {
        served.load(Ordering::SeqCst) >= after_install + 10
    });
    stop.store(true, Ordering::SeqCst);
    let issuers = looper.join().expect("the request loop saw a failure");
    let new_issuer = first_der(&issuer_pem);
    assert_eq!(
        issuers,
        vec![first_issuer.clone(), new_issuer.clone()],
        "old issuer, then the new one, never back"
    );
    eprintln!(
        "rotation under load: {} requests, 0 failed",
        served.load(Ordering::SeqCst)
    );

    // The driver's own path: once due again, `warden edge provision` rotates.
    let mut link = Arc::try_unwrap(link).ok().unwrap().into_inner().unwrap();
    let later = unix_now() + AHEAD;
    assert!(
        link.sign_at(later, "app", "default", "", &csr)
            .unwrap()
            .rotation_due
    );
    assert!(
        link.status().pending_key,
        "a due rotation must make a pending key"
    );
    drop(link);
    board.provision(
        &root.token,
        root.creds.path(),
        &["--valid-for-secs", "3600"],
    );
    let mut link = board.link();
    let status = link.status();
    assert!(
        status.state == State::Serving && !status.pending_key,
        "{status:?}"
    );
    let third = issuer_of(&link.sign(&csr));
    assert!(
        third != first_issuer && third != new_issuer,
        "provision did not rotate the issuer"
    );
}

#[test]
fn resets_mid_provisioning_and_mid_rotation_never_leave_a_broken_issuer() {
    let root = HsmRoot::new();
    let board = Board::boot();
    let work = tempdir();
    let anchors_pem = read_file(&root.ca_crt());
    let (_, csr) = go_csrs().remove(0);
    let mut link = board.link();

    // A reset after the issuer CSR: the pending key was stored, the same key comes back.
    let key_of = |csr: &[u8]| {
        common::verified_csr("issuer CSR", csr)
            .public_key
            .to_der()
            .unwrap()
    };
    let first_csr = link.issuer_csr();
    board.reset();
    link.wait_for_boot();
    let status = link.status();
    assert!(
        status.state != State::Serving && status.pending_key,
        "{status:?}"
    );
    let again = link.issuer_csr();
    assert_eq!(
        key_of(&again),
        key_of(&first_csr),
        "the pending key must survive a reset"
    );
    let issuer_pem = root.sign_issuer_csr(&again, &[]);

    // Resets racing INSTALL_ISSUER: afterwards the device serves with exactly that issuer, or
    // still waits for it with the same pending key. Never anything else.
    let mut outcomes = Vec::new();
    for delay_ms in [0, 10, 50, 100, 200, 400, 800, 1600, 3200, 6400] {
        link.send(&install(&issuer_pem, &anchors_pem, unix_now()));
        std::thread::sleep(Duration::from_millis(delay_ms));
        board.reset();
        link.wait_for_boot();
        let status = link.status();
        if status.state == State::Serving {
            let signed = link.sign(&csr);
            root.check(&signed, "spiffe://public/ns/default/app", work.path());
            assert_eq!(issuer_of(&signed), first_der(&issuer_pem));
            outcomes.push(format!("{delay_ms} ms: serving"));
            break;
        }
        assert!(
            status.pending_key,
            "after a reset {delay_ms} ms into INSTALL: {status:?}"
        );
        match link.sign_at(unix_now(), "app", "default", "", &csr) {
            Err((9, _)) => {}
            other => panic!(
                "an unprovisioned device must answer FailedPrecondition: {:?}",
                other.err()
            ),
        }
        outcomes.push(format!("{delay_ms} ms: still to be provisioned"));
    }
    if link.status().state != State::Serving {
        match link.call(&install(&issuer_pem, &anchors_pem, unix_now())) {
            Reply::Installed { .. } => {}
            other => panic!("INSTALL_ISSUER answered {other:?}"),
        }
    }
    eprintln!("resets during INSTALL: {}", outcomes.join(", "));

    // Mid-rotation: the old issuer serves, a new one is being installed when the reset comes.
    let old_issuer = first_der(&issuer_pem);
    assert!(
        link.sign_at(unix_now() + 200 * 24 * 60 * 60, "app", "default", "", &csr)
            .unwrap()
            .rotation_due
    );
    let rotation_csr = link.issuer_csr();
    let next_pem = root.sign_issuer_csr(&rotation_csr, &[]);
    let next_issuer = first_der(&next_pem);
    for delay_ms in [0, 50, 200, 800, 3200, 6400] {
        link.send(&install(&next_pem, &anchors_pem, unix_now()));
        std::thread::sleep(Duration::from_millis(delay_ms));
        board.reset();
        link.wait_for_boot();
        let status = link.status();
        assert!(
            status.state == State::Serving,
            "a reset mid-rotation must leave the device serving: {status:?}"
        );
        let signed = link.sign(&csr);
        root.check(&signed, "spiffe://public/ns/default/app", work.path());
        let issuer = issuer_of(&signed);
        assert!(
            issuer == old_issuer || issuer == next_issuer,
            "signed by an unknown issuer"
        );
        if issuer == next_issuer {
            assert!(!status.pending_key, "{status:?}");
            eprintln!(
                "resets during the rotation's INSTALL: installed when reset {delay_ms} ms in"
            );
            return;
        }
        assert!(
            status.pending_key,
            "the pending key must survive: {status:?}"
        );
    }
    match link.call(&install(&next_pem, &anchors_pem, unix_now())) {
        Reply::Installed { .. } => {}
        other => panic!("INSTALL_ISSUER answered {other:?}"),
    }
    assert_eq!(issuer_of(&link.sign(&csr)), next_issuer);
}

#[test]
fn footprint_and_instructions_per_issuance_are_within_budget() {
    let (_root, board) = provisioned(&[]);
    let mut link = board.link();
    let mut report = vec![
        "edge sentry under qemu-system-arm -M mps2-an386 -icount shift=0 (1 instruction = 1 ns of virtual time)".to_owned(),
    ];
    for (file, what) in [
        ("csr-p256.pem", "P-256"),
        ("csr-ed25519.pem", "Ed25519"),
        ("csr-p384.pem", "P-384"),
        ("csr-rsa2048.pem", "RSA-2048"),
    ] {
        let csr = read_file(&data_path(&format!("go-csr/{file}")));
        link.sign(&csr);
        let status = link.status();
        let instructions =
            u128::from(status.ticks_last_sign) * 1_000_000_000 / u128::from(status.tick_hz);
        let heap_and_stack = status.heap_peak_last_sign + status.stack_peak;
        report.push(format!(
            "{what} leaf: {instructions} instructions ({:.1} ms at 100 MHz, 1 instruction per cycle), \
             peak heap {} B, peak stack since boot {} B, together {heap_and_stack} B of {HEAP_AND_STACK_BUDGET} B",
            instructions as f64 / 100_000.0,
            status.heap_peak_last_sign,
            status.stack_peak,
        ));
        if what == "P-256" {
            assert!(
                heap_and_stack <= HEAP_AND_STACK_BUDGET,
                "P-256 issuance needs {heap_and_stack} B of heap and stack, over the {HEAP_AND_STACK_BUDGET} B budget"
            );
        }
    }
    let text = report.join("\n");
    std::fs::write(
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("edge-measurements.txt"),
        &text,
    )
    .unwrap();
    eprintln!("{text}");
}

#[test]
fn a_panic_or_a_stack_overflow_resets_the_device_prints_nothing_and_keeps_its_store() {
    let board = Board::boot_image(&fault_firmware());
    let mut link = board.link();
    let key_of = |csr: &[u8]| {
        common::verified_csr("issuer CSR", csr)
            .public_key
            .to_der()
            .unwrap()
    };
    let pending = key_of(&link.issuer_csr());
    let mut boot_count = link.status().boot_count;
    // The fault image's test-only kinds (edge/firmware/src/faults.rs).
    for (kind, fault) in [(0x7E, "panic"), (0x7D, "stack overflow")] {
        link.send_raw(&frame::encode(kind, 1_000, b""));
        // Only frames may come out (next_frame refuses anything else), and the next is BOOT:
        // without the reset the device would hang and the wait time out.
        link.wait_for_boot();
        let status = link.status();
        boot_count += 1;
        assert_eq!(status.boot_count, boot_count, "{fault}: {status:?}");
        assert!(
            status.pending_key,
            "{fault}: the store must survive: {status:?}"
        );
        assert_eq!(
            key_of(&link.issuer_csr()),
            pending,
            "{fault}: another pending key"
        );
    }
}

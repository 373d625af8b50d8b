//! The device: boot, the request handlers and the issuer life cycle of `docs/edge.md`.
//!
//! [`Device::on_event`] turns every decoder event into exactly one reply frame; nothing here
//! panics on input. A SIGN goes through `warden_core::sentry`'s rules and
//! `CaBundle::issue_workload`, as the `warden` server's `SignCertificate` does.

use alloc::boxed::Box;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use core::time::Duration;

use der::Decode;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sha2::{Digest, Sha256};
use warden_core::UnixTime;
use warden_core::bundle::{
    BundleError, CaBundle, CertificatesError, CredentialFile, WorkloadRequest, encode_certificates,
    parse_certificates,
};
use warden_core::crypto::{KeyAlgorithm, RustCryptoVerifier, SoftwareKey};
use warden_core::csr::{CsrTemplate, create_csr, csr_to_pem};
use warden_core::schedule;
use warden_core::sentry::{self, Code, Refusal, SignRequest};
use x509_cert::Certificate;
use zeroize::Zeroizing;

use crate::frame::{self, Event, MAX_PAYLOAD};
use crate::message::{Reply, Request, State, Status};
use crate::store::{Issuer, Journal, Record, Settings, Storage, StoreError};

/// What the board provides besides storage: a tick counter and memory use figures.
pub trait Platform {
    /// A free-running counter.
    fn ticks(&self) -> u64;
    /// Its frequency.
    fn tick_hz(&self) -> u32;
    /// The heap's size in bytes.
    fn heap_size(&self) -> u32;
    /// Peak heap use since the last [`reset_heap_peak`](Self::reset_heap_peak), in bytes.
    fn heap_peak(&self) -> u32;
    /// Starts a new heap peak measurement at the current use.
    fn reset_heap_peak(&self);
    /// Peak stack use since boot, in bytes.
    fn stack_peak(&self) -> u32;
}

/// Room kept in a SIGNED reply for the leaf's PEM beside the issuer chain and anchors: an
/// RSA-4096 CSR key with a long SPIFFE ID gives a leaf under 1.5 KiB of PEM.
const LEAF_PEM_ALLOWANCE: usize = 2048;

const NO_ENTROPY: &str =
    "the device has no entropy source (its boot seed is all one byte value), so it makes no keys";
const POOL_NOT_STORED: &str =
    "the device could not store its entropy pool at boot, so it makes no keys";
const NO_ISSUER: &str = "the device has no issuer: provision it first (warden edge provision)";
const NO_PENDING_KEY: &str =
    "the device has no pending issuer key: ask for its issuer CSR (ISSUER_CSR) first";

/// The edge sentry's state machine over a [`Storage`].
pub struct Device<S: Storage> {
    journal: Journal<S>,
    /// What the journal holds.
    record: Record,
    /// This boot's pool reached storage, so keys may be made from it.
    pool_stored: bool,
    /// The boot seed was not all one byte value.
    has_entropy: bool,
    rng: ChaCha20Rng,
    /// Built from `record.issuer`.
    bundle: Option<CaBundle>,
    issued: u32,
    heap_peak_last_sign: u32,
    ticks_last_sign: u64,
}

impl<S: Storage> fmt::Debug for Device<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Device")
            .field("record", &self.record)
            .field("pool_stored", &self.pool_stored)
            .field("has_entropy", &self.has_entropy)
            .field("bundle", &self.bundle)
            .field("issued", &self.issued)
            .finish_non_exhaustive()
    }
}

impl<S: Storage> Device<S> {
    /// Starts the device: loads the newest record, mixes `seed` (the board's fresh entropy)
    /// into the stored pool with the boot count, and stores the new pool and count before any
    /// key can be made, so a reset never replays a generator state.
    pub fn boot(storage: S, seed: &[u8]) -> Self {
        let (mut journal, loaded) = Journal::load(storage);
        let mut record = loaded.unwrap_or_default();
        record.boot_count = record.boot_count.wrapping_add(1);
        let pool = Sha256::new()
            .chain_update(b"warden-edge pool v1")
            .chain_update(&record.pool[..])
            .chain_update(record.boot_count.to_le_bytes())
            .chain_update(seed)
            .finalize();
        record.pool.copy_from_slice(&pool);
        let pool_stored = journal.save(&record).is_ok();
        let drbg_seed: [u8; 32] = Sha256::new()
            .chain_update(b"warden-edge drbg v1")
            .chain_update(&record.pool[..])
            .finalize()
            .into();
        let rng = ChaCha20Rng::from_seed(drbg_seed);
        let has_entropy = seed
            .split_first()
            .is_some_and(|(first, rest)| rest.iter().any(|b| b != first));
        // The chain was valid when it was installed; without a clock, that is the time to
        // check it at. Issuing checks the issuer against each request's clock.
        let bundle = record.issuer.as_ref().and_then(|i| open_bundle(i).ok());
        Self {
            journal,
            record,
            pool_stored,
            has_entropy,
            rng,
            bundle,
            issued: 0,
            heap_peak_last_sign: 0,
            ticks_last_sign: 0,
        }
    }

    /// The BOOT frame (id 0) the device sends after every reset.
    pub fn boot_frame(&self) -> Vec<u8> {
        Reply::Boot {
            boot_count: self.record.boot_count,
            state: self.state(),
        }
        .to_frame(0)
    }

    /// The reply frame for one decoder event: the request's reply, or an ERROR frame for a
    /// damaged or unreadable frame (id 0 for skipped garbage).
    pub fn on_event(&mut self, event: Event, platform: &dyn Platform) -> Vec<u8> {
        let (id, reply) = match event {
            Event::Frame { kind, id, payload } => match Request::decode(kind, &payload) {
                Ok(request @ Request::Sign { .. }) => {
                    // A rotation key made now is not part of this SIGN's figures.
                    self.prepare_rotation(UnixTime::from_secs(request.now()));
                    // The measurement covers the whole SIGN: checks, issuance, reply frame.
                    platform.reset_heap_peak();
                    let start = platform.ticks();
                    let reply = self.handle(request, platform);
                    let signed = matches!(reply, Reply::Signed { .. });
                    let frame = reply_frame(id, reply);
                    if signed {
                        self.heap_peak_last_sign = platform.heap_peak();
                        self.ticks_last_sign = platform.ticks().wrapping_sub(start);
                    }
                    return frame;
                }
                Ok(request) => (id, self.handle(request, platform)),
                Err(e) => (id, error(Code::InvalidArgument, e.to_string())),
            },
            Event::Garbage { skipped } => (
                0,
                error(
                    Code::InvalidArgument,
                    alloc::format!("skipped {skipped} bytes that are not part of a frame"),
                ),
            ),
            Event::Oversized { id, len } => (
                id,
                error(
                    Code::InvalidArgument,
                    alloc::format!(
                        "frame payload of {len} bytes exceeds the {MAX_PAYLOAD}-byte limit"
                    ),
                ),
            ),
            Event::BadChecksum { id } => (
                id,
                error(Code::InvalidArgument, "frame checksum does not match"),
            ),
        };
        reply_frame(id, reply)
    }

    /// The storage (for the firmware's diagnostics and tests).
    pub fn storage(&self) -> &S {
        self.journal.storage()
    }

    /// The storage, given back: the device is switched off.
    pub fn into_storage(self) -> S {
        self.journal.into_storage()
    }

    fn state(&self) -> State {
        if self.bundle.is_some() {
            State::Serving
        } else {
            State::NeedsProvisioning
        }
    }

    fn handle(&mut self, request: Request<'_>, platform: &dyn Platform) -> Reply {
        let now = UnixTime::from_secs(request.now());
        let result = match request {
            Request::Status { .. } => {
                self.prepare_rotation(now);
                Ok(Reply::StatusReply(self.status(now, platform)))
            }
            Request::IssuerCsr { .. } => {
                self.prepare_rotation(now);
                self.issuer_csr()
            }
            // No rotation key here: the request is for the key that is already pending.
            Request::InstallIssuer {
                issuer_chain,
                trust_anchors,
                workload_ttl_secs,
                clock_skew_secs,
                rotate_at_permille,
                ..
            } => self.install(
                now,
                issuer_chain,
                trust_anchors,
                Settings {
                    workload_ttl_secs,
                    clock_skew_secs,
                    rotate_at_permille,
                },
            ),
            Request::Sign {
                app_id,
                namespace,
                trust_domain,
                csr,
                ..
            } => {
                let request = SignRequest {
                    app_id,
                    namespace,
                    trust_domain,
                    csr,
                };
                // on_event prepared the rotation before measuring.
                Ok(self.sign(now, &request))
            }
        };
        result.unwrap_or_else(|refusal| Reply::Error {
            code: refusal.code.number(),
            message: refusal.message,
        })
    }

    fn status(&self, now: UnixTime, platform: &dyn Platform) -> Status {
        let validity = self.bundle.as_ref().map(CaBundle::issuer_validity);
        Status {
            state: self.state(),
            pending_key: self.record.pending_key.is_some(),
            rotation_due: self.rotation_due(now),
            issuer_not_before: validity.map_or(0, |v| v.not_before.as_secs()),
            issuer_not_after: validity.map_or(0, |v| v.not_after.as_secs()),
            boot_count: self.record.boot_count,
            issued: self.issued,
            heap_size: platform.heap_size(),
            heap_peak_last_sign: self.heap_peak_last_sign,
            stack_peak: platform.stack_peak(),
            ticks_last_sign: self.ticks_last_sign,
            tick_hz: platform.tick_hz(),
        }
    }

    /// Whether `now` is past the issuer's rotation point: `rotate_at_permille`/1000 of its
    /// life.
    fn rotation_due(&self, now: UnixTime) -> bool {
        let (Some(bundle), Some(issuer)) = (&self.bundle, &self.record.issuer) else {
            return false;
        };
        let permille = u32::from(issuer.settings.rotate_at_permille);
        let due = schedule::fraction_of_life(bundle.issuer_validity(), permille, 1000);
        // In whole seconds: certificate times and request times have no fraction.
        now.as_secs() >= due.as_secs()
    }

    /// Once rotation is due, makes the next issuer key (if none waits yet). The old issuer
    /// keeps signing until the driver installs a certificate for the new key.
    fn prepare_rotation(&mut self, now: UnixTime) {
        if self.record.pending_key.is_none() && self.rotation_due(now) {
            // On failure (no entropy, storage) STATUS still reports rotation_due, and
            // ISSUER_CSR says why.
            let _ = self.make_pending_key();
        }
    }

    /// Makes the pending issuer key and stores it.
    fn make_pending_key(&mut self) -> Result<SoftwareKey, Refusal> {
        if !self.has_entropy {
            return Err(refusal(Code::FailedPrecondition, NO_ENTROPY));
        }
        if !self.pool_stored {
            return Err(refusal(Code::FailedPrecondition, POOL_NOT_STORED));
        }
        let key = SoftwareKey::generate(KeyAlgorithm::P256, &mut self.rng);
        let der = key
            .to_pkcs8_der()
            .map_err(|e| refusal(Code::Internal, e.to_string()))?;
        let before = self.record.pending_key.replace(der);
        if let Err(e) = self.journal.save(&self.record) {
            self.record.pending_key = before;
            return Err(store_refusal(e));
        }
        Ok(key)
    }

    /// ISSUER_CSR: the CSR of the pending key, made first if none waits.
    fn issuer_csr(&mut self) -> Result<Reply, Refusal> {
        let key = match &self.record.pending_key {
            Some(der) => SoftwareKey::from_pkcs8_der(der)
                .map_err(|e| refusal(Code::Internal, alloc::format!("pending key: {e}")))?,
            None => self.make_pending_key()?,
        };
        let csr = create_csr(&key, &CsrTemplate::default())
            .map_err(|e| refusal(Code::Internal, e.to_string()))?;
        let pem = csr_to_pem(&csr).map_err(|e| refusal(Code::Internal, e.to_string()))?;
        Ok(Reply::IssuerCsr {
            csr: pem.into_bytes(),
        })
    }

    /// INSTALL_ISSUER: accepts a CA certificate for the pending key that chains to the given
    /// anchors at `now`; stores it and serves with it. Any failure leaves the state as it was.
    fn install(
        &mut self,
        now: UnixTime,
        chain_pem: &[u8],
        anchors_pem: &[u8],
        settings: Settings,
    ) -> Result<Reply, Refusal> {
        let Some(pending) = &self.record.pending_key else {
            return Err(refusal(Code::FailedPrecondition, NO_PENDING_KEY));
        };
        if settings.workload_ttl_secs == 0 {
            return Err(refusal(
                Code::InvalidArgument,
                "workload_ttl_secs must be at least 1",
            ));
        }
        if !(1..=1000).contains(&settings.rotate_at_permille) {
            return Err(refusal(
                Code::InvalidArgument,
                "rotate_at_permille must be 1 to 1000",
            ));
        }
        let anchors = parse_certificates(anchors_pem)
            .map_err(|e| invalid_pem("trust_anchors", CredentialFile::TrustAnchors, e))?;
        let chain = parse_certificates(chain_pem)
            .map_err(|e| invalid_pem("issuer_chain", CredentialFile::IssuerCertificate, e))?;
        let key = SoftwareKey::from_pkcs8_der(pending)
            .map_err(|e| refusal(Code::Internal, alloc::format!("pending key: {e}")))?;
        let bundle = CaBundle::from_parts(anchors, chain, Box::new(key), now, &RustCryptoVerifier)
            .map_err(|e| refusal(Code::InvalidArgument, e.to_string()))?;
        if bundle.issuer_chain_pem().len() + bundle.trust_anchors_pem().len() + LEAF_PEM_ALLOWANCE
            > MAX_PAYLOAD - 16
        {
            return Err(refusal(
                Code::InvalidArgument,
                "issuer chain and trust anchors are too large: a SIGNED reply would not fit in a frame",
            ));
        }
        let encoded = |certs: &[Certificate], file| {
            encode_certificates(certs).map_err(|e| {
                refusal(
                    Code::InvalidArgument,
                    BundleError::Certificates(file, e).to_string(),
                )
            })
        };
        let issuer = Issuer {
            key: Zeroizing::new(pending.to_vec()),
            chain: encoded(bundle.issuer_chain(), CredentialFile::IssuerCertificate)?,
            anchors: encoded(bundle.trust_anchors(), CredentialFile::TrustAnchors)?,
            settings,
            installed_at: now.as_secs(),
        };
        let old_issuer = self.record.issuer.replace(issuer);
        let old_pending = self.record.pending_key.take();
        if let Err(e) = self.journal.save(&self.record) {
            self.record.issuer = old_issuer;
            self.record.pending_key = old_pending;
            return Err(store_refusal(e));
        }
        let issuer_not_after = bundle.issuer_validity().not_after.as_secs();
        self.bundle = Some(bundle);
        Ok(Reply::Installed { issuer_not_after })
    }

    /// SIGN, with the server's rules and answers.
    fn sign(&mut self, now: UnixTime, request: &SignRequest<'_>) -> Reply {
        match self.issue(now, request) {
            Ok(reply) => reply,
            Err(refusal) => Reply::Error {
                code: refusal.code.number(),
                message: refusal.message,
            },
        }
    }

    fn issue(&mut self, now: UnixTime, request: &SignRequest<'_>) -> Result<Reply, Refusal> {
        let rotation_due = self.rotation_due(now);
        let (Some(bundle), Some(issuer)) = (&self.bundle, &self.record.issuer) else {
            return Err(refusal(Code::FailedPrecondition, NO_ISSUER));
        };
        let trust_domain = sentry::common_rules(request)?;
        let csr = sentry::verify_csr(request.csr, &RustCryptoVerifier).map_err(|(r, _)| r)?;
        let spiffe_id = sentry::workload_id(&trust_domain, request.namespace, request.app_id)
            .map_err(|(r, _)| r)?;
        let workload = WorkloadRequest {
            public_key: &csr.public_key,
            spiffe_id: &spiffe_id,
            dns_names: &[],
            ttl: Duration::from_secs(issuer.settings.workload_ttl_secs.into()),
            clock_skew: Duration::from_secs(issuer.settings.clock_skew_secs.into()),
        };
        let issued = bundle
            .issue_workload(&workload, now, &mut self.rng)
            .map_err(|_| sentry::sign_failed())?;
        self.issued = self.issued.wrapping_add(1);
        Ok(Reply::Signed {
            workload_certificate: issued.chain_pem.into_bytes(),
            trust_anchors: bundle.trust_anchors_pem().as_bytes().to_vec(),
            valid_until: issued.validity.not_after.as_secs(),
            rotation_due,
        })
    }
}

/// The bundle of a stored issuer, validated at its install time.
fn open_bundle(issuer: &Issuer) -> Result<CaBundle, BundleError> {
    let read = |ders: &[Vec<u8>], file| {
        ders.iter()
            .enumerate()
            .map(|(position, der)| {
                Certificate::from_der(der).map_err(|error| {
                    BundleError::Certificates(
                        file,
                        CertificatesError::Malformed { position, error },
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()
    };
    let anchors = read(&issuer.anchors, CredentialFile::TrustAnchors)?;
    let chain = read(&issuer.chain, CredentialFile::IssuerCertificate)?;
    let key = SoftwareKey::from_pkcs8_der(&issuer.key).map_err(BundleError::IssuerKey)?;
    CaBundle::from_parts(
        anchors,
        chain,
        Box::new(key),
        UnixTime::from_secs(issuer.installed_at),
        &RustCryptoVerifier,
    )
}

fn refusal(code: Code, message: impl Into<String>) -> Refusal {
    Refusal {
        code,
        message: message.into(),
    }
}

fn error(code: Code, message: impl Into<String>) -> Reply {
    Reply::Error {
        code: code.number(),
        message: message.into(),
    }
}

fn invalid_pem(field: &str, file: CredentialFile, e: CertificatesError) -> Refusal {
    let e = BundleError::Certificates(file, e);
    refusal(Code::InvalidArgument, alloc::format!("{field}: {e}"))
}

fn store_refusal(e: StoreError) -> Refusal {
    let code = match e {
        StoreError::TooLarge { .. } => Code::InvalidArgument,
        _ => Code::Internal,
    };
    refusal(code, e.to_string())
}

/// The frame of `reply`; one too large for a frame becomes an ERROR.
fn reply_frame(id: u32, reply: Reply) -> Vec<u8> {
    let frame = reply.to_frame(id);
    drop(reply);
    if frame.len() <= frame::MAX_FRAME_LEN {
        return frame;
    }
    let e = frame::PayloadTooLarge {
        len: frame.len() - frame::HEADER_LEN - frame::CRC_LEN,
    };
    drop(frame);
    error(Code::Internal, alloc::format!("the reply {e}")).to_frame(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::FrameDecoder;
    use crate::message::kind;
    use crate::store::tests::FakeStorage;
    use alloc::vec;
    use core::cell::Cell;
    use warden_core::bundle::{
        certificate_ders, certificates_to_pem, create_issuer, create_root, read_certificates,
    };
    use warden_core::chain;
    use warden_core::crypto::CaSigner;
    use warden_core::csr::parse_and_verify;
    use warden_core::profile::Validity;
    use warden_core::spiffe::{SpiffeId, TrustDomain};

    const NOW: u64 = 1_790_000_000;
    const DAY: u64 = 86_400;
    const P256_CSR: &[u8] = include_bytes!("../../tests/data/go-csr/csr-p256.pem");

    fn seed(n: u8) -> [u8; 32] {
        core::array::from_fn(|i| n.wrapping_add(i as u8))
    }

    /// Ticks advance by 1000 per read; the heap figures are fixed markers.
    #[derive(Default)]
    struct FakePlatform {
        ticks: Cell<u64>,
        resets: Cell<u32>,
    }

    impl Platform for FakePlatform {
        fn ticks(&self) -> u64 {
            self.ticks.set(self.ticks.get() + 1000);
            self.ticks.get()
        }
        fn tick_hz(&self) -> u32 {
            25_000_000
        }
        fn heap_size(&self) -> u32 {
            65_536
        }
        fn heap_peak(&self) -> u32 {
            4242 + self.resets.get()
        }
        fn reset_heap_peak(&self) {
            self.resets.set(self.resets.get() + 1);
        }
        fn stack_peak(&self) -> u32 {
            3000
        }
    }

    /// A device driven through the real frame codec, as the firmware and driver use it.
    struct Harness {
        device: Device<FakeStorage>,
        platform: FakePlatform,
        decoder: FrameDecoder,
        next_id: u32,
    }

    impl Harness {
        fn boot(storage: FakeStorage, seed: &[u8]) -> Self {
            let device = Device::boot(storage, seed);
            let mut h = Self {
                device,
                platform: FakePlatform::default(),
                decoder: FrameDecoder::new(),
                next_id: 1,
            };
            let boot = h.device.boot_frame();
            let (id, reply) = h.replies(&[boot]).remove(0);
            assert_eq!(id, 0);
            assert!(matches!(reply, Reply::Boot { .. }));
            h
        }

        fn fresh() -> Self {
            Self::boot(FakeStorage::new(8192), &seed(1))
        }

        fn replies(&mut self, frames: &[Vec<u8>]) -> Vec<(u32, Reply)> {
            let mut decoder = FrameDecoder::new();
            let mut out = Vec::new();
            for b in frames.concat() {
                decoder.push(b);
                while let Some(event) = decoder.next_event() {
                    let Event::Frame { kind, id, payload } = event else {
                        panic!("{event:?}");
                    };
                    out.push((id, Reply::decode(kind, &payload).unwrap()));
                }
            }
            out
        }

        /// Sends raw bytes; returns the decoded reply frames.
        fn send(&mut self, bytes: &[u8]) -> Vec<(u32, Reply)> {
            let mut frames = Vec::new();
            for &b in bytes {
                self.decoder.push(b);
                while let Some(event) = self.decoder.next_event() {
                    frames.push(self.device.on_event(event, &self.platform));
                }
            }
            self.replies(&frames)
        }

        fn request(&mut self, request: Request<'_>) -> Reply {
            let id = self.next_id;
            self.next_id += 1;
            let (kind, payload) = request.encode();
            let mut replies = self.send(&frame::encode(kind, id, &payload));
            assert_eq!(replies.len(), 1);
            let (reply_id, reply) = replies.remove(0);
            assert_eq!(reply_id, id);
            reply
        }

        fn status(&mut self, now: u64) -> Status {
            match self.request(Request::Status { now }) {
                Reply::StatusReply(s) => s,
                other => panic!("{other:?}"),
            }
        }

        fn issuer_csr(&mut self, now: u64) -> Vec<u8> {
            match self.request(Request::IssuerCsr { now }) {
                Reply::IssuerCsr { csr } => csr,
                other => panic!("{other:?}"),
            }
        }

        fn install(&mut self, now: u64, chain: &str, anchors: &str) -> Reply {
            self.request(Request::InstallIssuer {
                now,
                issuer_chain: chain.as_bytes(),
                trust_anchors: anchors.as_bytes(),
                workload_ttl_secs: DAY as u32,
                clock_skew_secs: 900,
                rotate_at_permille: 500,
            })
        }

        fn sign(&mut self, now: u64, app_id: &str, csr: &[u8]) -> Reply {
            self.request(Request::Sign {
                now,
                app_id,
                namespace: "default",
                trust_domain: "public",
                csr,
            })
        }

        fn reboot(self, seed: &[u8]) -> Self {
            Self::boot(self.device.into_storage(), seed)
        }
    }

    /// A root held by the "HSM" (here a software key).
    struct Root {
        key: SoftwareKey,
        cert: Certificate,
        pem: String,
        rng: ChaCha20Rng,
    }

    impl Root {
        fn new(seed: u64) -> Self {
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            let key = SoftwareKey::generate(KeyAlgorithm::P256, &mut rng);
            let td = TrustDomain::new("example.org").unwrap();
            let validity = Validity {
                not_before: UnixTime::from_secs(NOW - DAY),
                not_after: UnixTime::from_secs(NOW + 365 * DAY),
            };
            let cert = create_root(&key, &td, validity, &mut rng).unwrap();
            let pem = certificates_to_pem([&cert]).unwrap();
            Self {
                key,
                cert,
                pem,
                rng,
            }
        }

        /// What `warden issuer sign-csr` does with the device's CSR.
        fn sign_csr(&mut self, csr_pem: &[u8], from: u64, days: u64) -> String {
            let csr = parse_and_verify(csr_pem, &RustCryptoVerifier).unwrap();
            self.issuer_for(csr.public_key, from, days)
        }

        fn issuer_for(
            &mut self,
            key: spki::SubjectPublicKeyInfoOwned,
            from: u64,
            days: u64,
        ) -> String {
            let td = TrustDomain::new("example.org").unwrap();
            let id = SpiffeId::sentry(&td, "dapr-system").unwrap();
            let validity = Validity {
                not_before: UnixTime::from_secs(from - 60),
                not_after: UnixTime::from_secs(from + days * DAY),
            };
            let cert =
                create_issuer(&self.key, &self.cert, key, &id, validity, &mut self.rng).unwrap();
            certificates_to_pem([&cert]).unwrap()
        }

        /// Checks an issued chain against this root alone; returns the leaf's SPIFFE ID and
        /// its issuer's public key.
        fn verify(&self, reply: &Reply, at: u64) -> (String, Vec<u8>) {
            let Reply::Signed {
                workload_certificate,
                trust_anchors,
                ..
            } = reply
            else {
                panic!("{reply:?}");
            };
            assert_eq!(trust_anchors, self.pem.as_bytes());
            let chain_der = certificate_ders(workload_certificate).unwrap();
            let chain = read_certificates(&chain_der).unwrap();
            assert_eq!(chain.len(), 2);
            let anchor_der = certificate_ders(self.pem.as_bytes()).unwrap();
            let anchors = read_certificates(&anchor_der).unwrap();
            let id = chain::verify_svid(
                &chain,
                &anchors,
                UnixTime::from_secs(at),
                &RustCryptoVerifier,
            )
            .unwrap();
            let issuer = Certificate::from_der(&chain_der[1]).unwrap();
            let issuer_key = issuer
                .tbs_certificate()
                .subject_public_key_info()
                .subject_public_key
                .raw_bytes()
                .to_vec();
            (id.to_string(), issuer_key)
        }
    }

    fn csr_key(csr_pem: &[u8]) -> Vec<u8> {
        parse_and_verify(csr_pem, &RustCryptoVerifier)
            .unwrap()
            .public_key
            .subject_public_key
            .raw_bytes()
            .to_vec()
    }

    fn assert_error(reply: &Reply, code: Code, message: &str) {
        match reply {
            Reply::Error {
                code: c,
                message: m,
            } => {
                assert_eq!((*c, m.as_str()), (code.number(), message));
            }
            other => panic!("expected {code:?} {message:?}, got {other:?}"),
        }
    }

    /// A device provisioned by `root`, with its issuer valid from NOW for 100 days.
    fn provisioned(root: &mut Root) -> Harness {
        let mut h = Harness::fresh();
        let csr = h.issuer_csr(NOW);
        let issuer = root.sign_csr(&csr, NOW, 100);
        let reply = h.install(NOW, &issuer, &root.pem);
        assert_eq!(
            reply,
            Reply::Installed {
                issuer_not_after: NOW + 100 * DAY
            }
        );
        h
    }

    #[test]
    fn provisioning_then_signing_gives_a_leaf_that_chains_to_the_root() {
        let mut root = Root::new(1);
        let mut h = Harness::fresh();
        let status = h.status(NOW);
        assert_eq!(
            (status.state, status.pending_key, status.boot_count),
            (State::NeedsProvisioning, false, 1)
        );
        assert_error(
            &h.sign(NOW, "app", P256_CSR),
            Code::FailedPrecondition,
            NO_ISSUER,
        );
        assert_error(
            &h.install(NOW, &root.pem, &root.pem),
            Code::FailedPrecondition,
            NO_PENDING_KEY,
        );

        let csr = h.issuer_csr(NOW);
        assert!(csr.starts_with(b"-----BEGIN CERTIFICATE REQUEST-----\n"));
        // Asked again: a CSR for the same stored key.
        assert_eq!(csr_key(&h.issuer_csr(NOW)), csr_key(&csr));
        assert!(h.status(NOW).pending_key);

        let issuer = root.sign_csr(&csr, NOW, 100);
        let reply = h.install(NOW, &issuer, &root.pem);
        assert_eq!(
            reply,
            Reply::Installed {
                issuer_not_after: NOW + 100 * DAY
            }
        );
        let status = h.status(NOW);
        assert_eq!(
            (status.state, status.pending_key, status.rotation_due),
            (State::Serving, false, false)
        );
        assert_eq!(status.issuer_not_before, NOW - 60);
        assert_eq!(status.issuer_not_after, NOW + 100 * DAY);

        let signed = h.sign(NOW + 5, "app", P256_CSR);
        let (id, issuer_key) = root.verify(&signed, NOW + 5);
        assert_eq!(id, "spiffe://public/ns/default/app");
        assert_eq!(issuer_key, csr_key(&csr));
        let Reply::Signed {
            valid_until,
            rotation_due,
            ..
        } = signed
        else {
            unreachable!()
        };
        assert_eq!((valid_until, rotation_due), (NOW + 5 + DAY, false));

        // Every CSR of the test data signs (Ed25519, P-384, RSA, the legacy block type).
        for csr in [
            &include_bytes!("../../tests/data/go-csr/csr-ed25519.pem")[..],
            include_bytes!("../../tests/data/go-csr/csr-p384.pem"),
            include_bytes!("../../tests/data/go-csr/csr-rsa2048.pem"),
            include_bytes!("../../tests/data/go-csr/csr-p256-legacy-block-type.pem"),
        ] {
            root.verify(&h.sign(NOW + 6, "other", csr), NOW + 6);
        }

        let status = h.status(NOW + 7);
        assert_eq!(status.issued, 5);
        // The platform's figures of the last SIGN: six resets (one per SIGN, the one refused
        // before provisioning too), ticks read twice per SIGN.
        assert_eq!(status.heap_peak_last_sign, 4242 + 6);
        assert_eq!(status.ticks_last_sign, 1000);
        assert_eq!(
            (status.heap_size, status.stack_peak, status.tick_hz),
            (65_536, 3000, 25_000_000)
        );
    }

    #[test]
    fn sign_answers_sentrys_refusals() {
        let mut root = Root::new(2);
        let mut h = provisioned(&mut root);
        assert_error(
            &h.sign(NOW, "", P256_CSR),
            Code::PermissionDenied,
            "invalid request: parameter app-id cannot be empty",
        );
        assert_error(
            &h.sign(NOW, "app", b"garbage"),
            Code::InvalidArgument,
            "invalid certificate signing request",
        );
        assert_error(
            &h.sign(NOW, "my app", P256_CSR),
            Code::Internal,
            "failed to sign certificate",
        );
        // Past the issuer's NotAfter, as the server: Internal.
        assert_error(
            &h.sign(NOW + 101 * DAY, "app", P256_CSR),
            Code::Internal,
            "failed to sign certificate",
        );
        // Refusals do not count as issued, nor replace the last SIGN's figures.
        let status = h.status(NOW);
        assert_eq!((status.issued, status.heap_peak_last_sign), (0, 0));
    }

    #[test]
    fn install_refuses_a_certificate_for_another_key_or_an_untrusted_chain() {
        let mut root = Root::new(3);
        let mut h = Harness::fresh();
        let csr = h.issuer_csr(NOW);
        let mut rng = ChaCha20Rng::seed_from_u64(99);
        let other = SoftwareKey::generate(KeyAlgorithm::P256, &mut rng);
        let foreign = root.issuer_for(other.public_key(), NOW, 100);
        assert_error(
            &h.install(NOW, &foreign, &root.pem),
            Code::InvalidArgument,
            "issuer key does not match issuer certificate",
        );
        let issuer = root.sign_csr(&csr, NOW, 100);
        let other_root = Root::new(4);
        let reply = h.install(NOW, &issuer, &other_root.pem);
        let Reply::Error { code, message } = &reply else {
            panic!("{reply:?}")
        };
        assert_eq!(*code, 3);
        assert!(
            message.starts_with("issuer chain does not belong to trust anchors: "),
            "{message}"
        );
        // Not yet valid at the driver's clock.
        let Reply::Error { code: 3, .. } = h.install(NOW - 2 * DAY, &issuer, &root.pem) else {
            panic!()
        };
        assert_error(
            &h.install(NOW, "", &root.pem),
            Code::InvalidArgument,
            "issuer_chain: no PEM CERTIFICATE block found",
        );
        assert_error(
            &h.install(NOW, &issuer, "junk"),
            Code::InvalidArgument,
            "trust_anchors: no PEM CERTIFICATE block found",
        );
        let bad_settings = h.request(Request::InstallIssuer {
            now: NOW,
            issuer_chain: issuer.as_bytes(),
            trust_anchors: root.pem.as_bytes(),
            workload_ttl_secs: 3600,
            clock_skew_secs: 0,
            rotate_at_permille: 1001,
        });
        assert_error(
            &bad_settings,
            Code::InvalidArgument,
            "rotate_at_permille must be 1 to 1000",
        );
        // Nothing changed: the same key still waits, and its certificate installs.
        let status = h.status(NOW);
        assert_eq!(
            (status.state, status.pending_key),
            (State::NeedsProvisioning, true)
        );
        assert_eq!(csr_key(&h.issuer_csr(NOW)), csr_key(&csr));
        assert!(matches!(
            h.install(NOW, &issuer, &root.pem),
            Reply::Installed { .. }
        ));
    }

    #[test]
    fn a_record_too_large_for_a_slot_is_refused_and_the_old_state_kept() {
        let mut root = Root::new(5);
        let mut h = Harness::boot(FakeStorage::new(600), &seed(1));
        let csr = h.issuer_csr(NOW);
        let issuer = root.sign_csr(&csr, NOW, 100);
        let reply = h.install(NOW, &issuer, &root.pem);
        let Reply::Error { code: 3, message } = &reply else {
            panic!("{reply:?}")
        };
        assert!(
            message.ends_with("more than its 600-byte storage slot"),
            "{message}"
        );
        let status = h.status(NOW);
        assert_eq!(
            (status.state, status.pending_key),
            (State::NeedsProvisioning, true)
        );
        let h = h.reboot(&seed(2));
        assert!(h.device.record.pending_key.is_some());
        assert!(h.device.bundle.is_none());
    }

    #[test]
    fn no_entropy_means_no_keys() {
        for bad_seed in [&[0xAB; 32][..], &[0; 32], &[]] {
            let mut h = Harness::boot(FakeStorage::new(8192), bad_seed);
            let reply = h.request(Request::IssuerCsr { now: NOW });
            assert_error(&reply, Code::FailedPrecondition, NO_ENTROPY);
            assert!(!h.status(NOW).pending_key);
            assert!(h.device.record.pending_key.is_none());
        }
        // A boot whose pool did not reach storage makes no keys either.
        let mut storage = FakeStorage::new(8192);
        storage.cut = Some((1, 10));
        let mut h = Harness::boot(storage, &seed(1));
        assert_error(
            &h.request(Request::IssuerCsr { now: NOW }),
            Code::FailedPrecondition,
            POOL_NOT_STORED,
        );
    }

    #[test]
    fn every_boot_counts_and_changes_the_pool_even_with_the_same_seed() {
        let mut storage = FakeStorage::new(8192);
        let mut pools = Vec::new();
        let mut keys = Vec::new();
        for boot in 1..=3 {
            let mut device = Device::boot(storage, &seed(7));
            assert_eq!(device.record.boot_count, boot);
            // Stored before anything else happens.
            let (_, stored) = Journal::load(device.storage().clone());
            assert_eq!(stored.unwrap().pool, device.record.pool);
            pools.push(device.record.pool.clone());
            let key = SoftwareKey::generate(KeyAlgorithm::P256, &mut device.rng);
            keys.push(key.public_key());
            storage = device.into_storage();
        }
        for i in 0..3 {
            for j in i + 1..3 {
                assert_ne!(pools[i], pools[j]);
                assert_ne!(keys[i], keys[j]);
            }
        }
        // Another seed from the same stored state gives another pool.
        let a = Device::boot(storage.clone(), &seed(7));
        let b = Device::boot(storage, &seed(8));
        assert_ne!(a.record.pool, b.record.pool);
    }

    #[test]
    fn a_reboot_keeps_the_issuer() {
        let mut root = Root::new(6);
        let h = provisioned(&mut root);
        let mut h = h.reboot(&seed(9));
        let boot = h.device.boot_frame();
        assert_eq!(
            h.replies(&[boot])[0].1,
            Reply::Boot {
                boot_count: 2,
                state: State::Serving
            }
        );
        root.verify(&h.sign(NOW + DAY, "app", P256_CSR), NOW + DAY);
    }

    #[test]
    fn rotation_makes_a_pending_key_while_the_old_issuer_keeps_signing() {
        let mut root = Root::new(7);
        let mut h = provisioned(&mut root);
        let first_key = h.device.record.issuer.as_ref().unwrap().key.clone();
        let (_, old_issuer) = root.verify(&h.sign(NOW + 10 * DAY, "app", P256_CSR), NOW + 10 * DAY);
        assert!(!h.status(NOW + 10 * DAY).pending_key);

        // Half of the issuer's life (NOW - 60 to NOW + 100 days) has passed.
        let due = NOW - 60 + (100 * DAY + 60) / 2;
        assert!(!h.status(due - 1).rotation_due);
        let signed = h.sign(due, "app", P256_CSR);
        let Reply::Signed { rotation_due, .. } = &signed else {
            panic!("{signed:?}")
        };
        assert!(*rotation_due);
        assert_eq!(root.verify(&signed, due).1, old_issuer);
        let status = h.status(due);
        assert_eq!(
            (status.state, status.pending_key, status.rotation_due),
            (State::Serving, true, true)
        );
        let csr = h.issuer_csr(due + 1);
        let new_key = csr_key(&csr);
        assert_ne!(new_key, old_issuer);
        // More requests: the same pending key, the old issuer signing.
        assert_eq!(
            root.verify(&h.sign(due + 2, "app", P256_CSR), due + 2).1,
            old_issuer
        );
        assert_eq!(csr_key(&h.issuer_csr(due + 3)), new_key);
        // A reset before the new certificate arrives keeps both.
        let mut h = h.reboot(&seed(10));
        assert_eq!(csr_key(&h.issuer_csr(due + 4)), new_key);
        assert_eq!(
            root.verify(&h.sign(due + 5, "app", P256_CSR), due + 5).1,
            old_issuer
        );

        let issuer = root.sign_csr(&csr, due, 100);
        assert!(matches!(
            h.install(due + 6, &issuer, &root.pem),
            Reply::Installed { .. }
        ));
        let status = h.status(due + 7);
        assert_eq!((status.pending_key, status.rotation_due), (false, false));
        assert_eq!(
            root.verify(&h.sign(due + 8, "app", P256_CSR), due + 8).1,
            new_key
        );
        assert_ne!(h.device.record.issuer.as_ref().unwrap().key, first_key);
    }

    #[test]
    fn a_reset_during_any_save_never_leaves_a_broken_issuer() {
        let mut root = Root::new(8);
        let mut h = Harness::fresh();
        let csr = h.issuer_csr(NOW);
        let issuer = root.sign_csr(&csr, NOW, 100);
        let before_install = h.device.storage().clone();
        let mut outcomes = [0, 0];
        let cuts = (0..24).chain((24..2400).step_by(199)).chain([4000]);
        for k in cuts {
            let mut storage = before_install.clone();
            // Write 1 after this point is the boot, write 2 the install.
            storage.cut = Some((storage.writes + 2, k));
            let mut h = Harness::boot(storage, &seed(3));
            let reply = h.install(NOW, &issuer, &root.pem);
            let mut h = h.reboot(&seed(4));
            let status = h.status(NOW);
            match status.state {
                State::Serving => {
                    outcomes[0] += 1;
                    assert!(matches!(reply, Reply::Installed { .. }), "cut {k}");
                    assert!(!status.pending_key, "cut {k}");
                    root.verify(&h.sign(NOW, "app", P256_CSR), NOW);
                }
                State::NeedsProvisioning => {
                    outcomes[1] += 1;
                    assert!(status.pending_key, "cut {k}");
                    assert_eq!(csr_key(&h.issuer_csr(NOW)), csr_key(&csr), "cut {k}");
                    assert!(matches!(
                        h.install(NOW, &issuer, &root.pem),
                        Reply::Installed { .. }
                    ));
                }
            }
        }
        assert!(outcomes[0] > 0 && outcomes[1] > 0, "{outcomes:?}");

        // A reset while the rotation key is stored: still serving with the old issuer.
        let due = NOW - 60 + (100 * DAY + 60) / 2;
        let mut h = Harness::boot(before_install, &seed(5));
        assert!(matches!(
            h.install(NOW, &issuer, &root.pem),
            Reply::Installed { .. }
        ));
        let serving = h.device.storage().clone();
        for k in (0..24).chain((24..2400).step_by(257)) {
            let mut storage = serving.clone();
            storage.cut = Some((storage.writes + 2, k));
            let mut h = Harness::boot(storage, &seed(6));
            h.status(due);
            let mut h = h.reboot(&seed(7));
            assert_eq!(h.status(due).state, State::Serving, "cut {k}");
            assert_eq!(
                root.verify(&h.sign(due, "app", P256_CSR), due).1,
                csr_key(&csr)
            );
        }
    }

    #[test]
    fn damaged_input_gets_error_frames_and_the_device_keeps_serving() {
        let mut h = Harness::fresh();
        let mut bytes = b"hello".to_vec();
        bytes.extend(frame::encode(kind::STATUS, 5, &NOW.to_le_bytes()));
        let replies = h.send(&bytes);
        assert_eq!(replies.len(), 2);
        assert_eq!(replies[0].0, 0);
        assert_error(
            &replies[0].1,
            Code::InvalidArgument,
            "skipped 5 bytes that are not part of a frame",
        );
        assert!(matches!(replies[1], (5, Reply::StatusReply(_))));

        let mut oversized = vec![0x57, 0x45, kind::SIGN];
        oversized.extend(6u32.to_le_bytes());
        oversized.extend(9000u16.to_le_bytes());
        let replies = h.send(&oversized);
        assert_eq!(replies[0].0, 6);
        assert_error(
            &replies[0].1,
            Code::InvalidArgument,
            "frame payload of 9000 bytes exceeds the 8192-byte limit",
        );

        let mut bad = frame::encode(kind::STATUS, 7, &NOW.to_le_bytes());
        bad[10] ^= 1;
        let replies = h.send(&bad);
        assert_eq!(replies[0].0, 7);
        assert_error(
            &replies[0].1,
            Code::InvalidArgument,
            "frame checksum does not match",
        );

        for (kind, payload, message) in [
            (
                kind::SIGN,
                &NOW.to_le_bytes()[..],
                "payload ends inside field app_id",
            ),
            (0x42, &[][..], "unknown request kind 0x42"),
            (kind::SIGNED, &[][..], "unknown request kind 0x84"),
            (
                kind::STATUS,
                &[0; 9][..],
                "1 trailing bytes after the payload of STATUS",
            ),
        ] {
            let replies = h.send(&frame::encode(kind, 8, payload));
            assert_eq!(replies[0].0, 8);
            assert_error(&replies[0].1, Code::InvalidArgument, message);
        }
        let mut sign = Request::Sign {
            now: NOW,
            app_id: "app",
            namespace: "default",
            trust_domain: "",
            csr: b"x",
        }
        .encode()
        .1;
        sign[8 + 2 + 3 + 2] = 0xC3;
        let replies = h.send(&frame::encode(kind::SIGN, 9, &sign));
        assert_error(
            &replies[0].1,
            Code::InvalidArgument,
            "field namespace is not UTF-8",
        );
        assert_eq!(h.status(NOW).boot_count, 1);
    }

    #[test]
    fn a_reply_too_large_for_a_frame_becomes_an_error_frame() {
        let reply = Reply::Signed {
            workload_certificate: vec![b'A'; 6000],
            trust_anchors: vec![b'B'; 3000],
            valid_until: 1,
            rotation_due: false,
        };
        let mut h = Harness::fresh();
        let (id, reply) = h.replies(&[reply_frame(3, reply)]).remove(0);
        assert_eq!(id, 3);
        assert_error(
            &reply,
            Code::Internal,
            "the reply payload of 9013 bytes exceeds the 8192-byte frame limit",
        );
    }

    #[test]
    fn install_refuses_anchors_too_large_for_a_signed_reply() {
        let mut root = Root::new(9);
        let mut h = Harness::fresh();
        let issuer = root.sign_csr(&h.issuer_csr(NOW), NOW, 100);
        // As many copies of the root as an INSTALL_ISSUER frame can carry.
        let copies = (MAX_PAYLOAD - 32 - issuer.len()) / root.pem.len();
        let anchors = root.pem.repeat(copies);
        assert_error(
            &h.install(NOW, &issuer, &anchors),
            Code::InvalidArgument,
            "issuer chain and trust anchors are too large: a SIGNED reply would not fit in a frame",
        );
        assert!(matches!(
            h.install(NOW, &issuer, &root.pem.repeat(2)),
            Reply::Installed { .. }
        ));
    }

    /// Deterministic pseudo-random numbers (xorshift), so failures reproduce.
    struct Noise(u64);

    impl Noise {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }
    }

    #[test]
    fn random_and_mutated_requests_get_one_decodable_reply_each_and_never_panic() {
        let mut root = Root::new(10);
        let mut h = provisioned(&mut root);
        let issuer = root.sign_csr(&h.issuer_csr(NOW), NOW, 100);
        let valid = [
            Request::Sign {
                now: NOW,
                app_id: "app",
                namespace: "default",
                trust_domain: "public",
                csr: P256_CSR,
            }
            .encode(),
            Request::InstallIssuer {
                now: NOW,
                issuer_chain: issuer.as_bytes(),
                trust_anchors: root.pem.as_bytes(),
                workload_ttl_secs: 60,
                clock_skew_secs: 0,
                rotate_at_permille: 500,
            }
            .encode(),
            Request::Status { now: NOW }.encode(),
        ];
        let mut noise = Noise(0x2545_F491_4F6C_DD1D);
        let mut outcomes = Vec::new();
        for round in 0..150u32 {
            let (kind, mut payload) = valid[noise.below(valid.len())].clone();
            let kind = match noise.below(8) {
                0 => noise.next() as u8,
                1 => kind::ISSUER_CSR,
                _ => kind,
            };
            match noise.below(5) {
                0 => payload.truncate(noise.below(payload.len() + 1)),
                1 => {
                    let n = noise.below(200);
                    payload = noise.bytes(n);
                }
                // Anywhere, or among the leading fields (clock, lengths, names).
                2 | 3 => {
                    let span = if noise.below(2) == 0 {
                        32
                    } else {
                        payload.len()
                    };
                    for _ in 0..1 + noise.below(3) {
                        let at = noise.below(span.min(payload.len()));
                        payload[at] = noise.next() as u8;
                    }
                }
                _ => {}
            }
            let mut bytes = frame::encode(kind, round, &payload);
            if noise.below(10) == 0 {
                let n = noise.below(40);
                bytes.splice(0..0, noise.bytes(n));
            }
            let replies = h.send(&bytes);
            assert!(!replies.is_empty(), "round {round}");
            let (id, reply) = replies.last().unwrap();
            assert_eq!(*id, round, "round {round}");
            let outcome = match reply {
                Reply::Error { code, .. } => *code,
                other => other.encode().0,
            };
            if !outcomes.contains(&outcome) {
                outcomes.push(outcome);
            }
        }
        outcomes.sort_unstable();
        // Refused as malformed, by the request rules, by state; served; issued.
        for expected in [
            3,
            7,
            kind::STATUS_REPLY,
            kind::ISSUER_CSR_REPLY,
            kind::SIGNED,
        ] {
            assert!(outcomes.contains(&expected), "{outcomes:?}");
        }
        // Still serving.
        root.verify(&h.sign(NOW, "app", P256_CSR), NOW);
    }
}

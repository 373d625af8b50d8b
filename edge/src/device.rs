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
        let validity = bundle.issuer_validity();
        let (start, end) = (validity.not_before.as_secs(), validity.not_after.as_secs());
        let life = u128::from(end.saturating_sub(start));
        let offset = life * u128::from(issuer.settings.rotate_at_permille) / 1000;
        let due = u64::try_from(u128::from(start) + offset).unwrap_or(u64::MAX);
        now.as_secs() >= due
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
        self.prepare_rotation(now);
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
    let (kind, payload) = reply.encode();
    frame::try_encode(kind, id, &payload)
        .unwrap_or_else(|e| error(Code::Internal, alloc::format!("the reply {e}")).to_frame(id))
}

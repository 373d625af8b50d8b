//! The device's persisted state: one [`Record`] journaled into two slots.
//!
//! A slot holds `magic, version, sequence, length, body, SHA-256` (the hash over everything
//! before it). Loading takes the newest slot whose hash checks; saving writes the other slot
//! with the next sequence number, so a reset at any byte of a write leaves the previous record
//! in force (`docs/edge.md`, "Storage and resets").

use alloc::vec::Vec;
use core::fmt;

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::message::MessageError;
use crate::wire::{Reader, Writer};

/// Where records are kept: two slots (0 and 1) of [`slot_len`](Storage::slot_len) bytes
/// each, such as two flash sectors or two RAM areas that survive a reset.
pub trait Storage {
    /// The size of one slot in bytes.
    fn slot_len(&self) -> usize;
    /// The whole of `slot` (0 or 1).
    fn read(&self, slot: u8) -> &[u8];
    /// Writes `record` at the start of `slot`. A reset may cut the write short at any byte;
    /// the rest of the slot keeps what it held.
    fn write(&mut self, slot: u8, record: &[u8]);
}

/// The first bytes of a slot that holds a record.
pub const MAGIC: [u8; 4] = *b"WEDS";
/// The record format this code reads and writes.
pub const VERSION: u16 = 1;
/// Magic, version, sequence and body length.
const HEAD_LEN: usize = 4 + 2 + 4 + 4;
const HASH_LEN: usize = 32;

/// The settings an issuer is installed with (`INSTALL_ISSUER`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Lifetime of issued leaves.
    pub workload_ttl_secs: u32,
    /// Backdating of leaves' NotBefore.
    pub clock_skew_secs: u32,
    /// When in the issuer's life (per mille) a new issuer key is made.
    pub rotate_at_permille: u16,
}

/// An installed issuer.
#[derive(Clone, PartialEq, Eq)]
pub struct Issuer {
    /// The issuer key, PKCS#8 DER.
    pub key: Zeroizing<Vec<u8>>,
    /// The issuer chain, DER, issuer first.
    pub chain: Vec<Vec<u8>>,
    /// The trust anchors, DER.
    pub anchors: Vec<Vec<u8>>,
    /// Its settings.
    pub settings: Settings,
    /// The driver's clock when it was installed: the chain was valid then, so the device can
    /// validate it again at boot, when it has no clock.
    pub installed_at: u64,
}

impl fmt::Debug for Issuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issuer")
            .field("chain", &self.chain.len())
            .field("anchors", &self.anchors.len())
            .field("settings", &self.settings)
            .field("installed_at", &self.installed_at)
            .finish_non_exhaustive()
    }
}

/// Everything the device keeps across resets.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Record {
    /// The installed issuer, if any.
    pub issuer: Option<Issuer>,
    /// A key made for the next issuer, PKCS#8 DER, waiting for its certificate.
    pub pending_key: Option<Zeroizing<Vec<u8>>>,
    /// The entropy pool, mixed with the seed at every boot.
    pub pool: Zeroizing<[u8; 32]>,
    /// Boots since the storage was first written.
    pub boot_count: u32,
}

impl fmt::Debug for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Record")
            .field("issuer", &self.issuer)
            .field("pending_key", &self.pending_key.is_some())
            .field("boot_count", &self.boot_count)
            .finish_non_exhaustive()
    }
}

impl Record {
    /// The body of a slot. Zeroized on drop: it holds the keys.
    fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut w = Writer::default();
        match &self.issuer {
            None => {
                w.u8(0);
            }
            Some(issuer) => {
                w.u8(1).bytes(&issuer.key);
                for list in [&issuer.chain, &issuer.anchors] {
                    w.u8(u8::try_from(list.len()).unwrap_or(u8::MAX));
                    for der in list.iter().take(usize::from(u8::MAX)) {
                        w.bytes(der);
                    }
                }
                w.u32(issuer.settings.workload_ttl_secs)
                    .u32(issuer.settings.clock_skew_secs)
                    .u16(issuer.settings.rotate_at_permille)
                    .u64(issuer.installed_at);
            }
        }
        match &self.pending_key {
            None => w.u8(0),
            Some(key) => w.u8(1).bytes(key),
        };
        w.bytes(&self.pool[..]).u32(self.boot_count);
        Zeroizing::new(w.out)
    }

    fn decode(body: &[u8]) -> Result<Self, MessageError> {
        let mut r = Reader::new(body);
        let issuer = if r.bool("issuer")? {
            let key = Zeroizing::new(r.bytes("issuer_key")?.to_vec());
            let mut lists = [Vec::new(), Vec::new()];
            for (list, field) in lists.iter_mut().zip(["issuer_chain", "trust_anchors"]) {
                for _ in 0..r.u8(field)? {
                    list.push(r.bytes(field)?.to_vec());
                }
            }
            let [chain, anchors] = lists;
            Some(Issuer {
                key,
                chain,
                anchors,
                settings: Settings {
                    workload_ttl_secs: r.u32("workload_ttl_secs")?,
                    clock_skew_secs: r.u32("clock_skew_secs")?,
                    rotate_at_permille: r.u16("rotate_at_permille")?,
                },
                installed_at: r.u64("installed_at")?,
            })
        } else {
            None
        };
        let pending_key = if r.bool("pending")? {
            Some(Zeroizing::new(r.bytes("pending_key")?.to_vec()))
        } else {
            None
        };
        let pool = r
            .bytes("pool")?
            .try_into()
            .map_err(|_| MessageError::BadValue { field: "pool" })?;
        let record = Self {
            issuer,
            pending_key,
            pool: Zeroizing::new(pool),
            boot_count: r.u32("boot_count")?,
        };
        r.finish("record")?;
        Ok(record)
    }
}

/// Why a record was not saved. The previous record stays in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreError {
    /// The record does not fit in a slot.
    TooLarge {
        /// The slot image's length.
        len: usize,
        /// The slot's.
        slot_len: usize,
    },
    /// Reading the slot back did not give what was written.
    WriteFailed,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge { len, slot_len } => write!(
                f,
                "the device state would take {len} bytes, more than its {slot_len}-byte storage slot"
            ),
            Self::WriteFailed => f.write_str("the device storage did not keep what was written"),
        }
    }
}

impl core::error::Error for StoreError {}

/// The two slots and which of them holds the newest record.
#[derive(Debug)]
pub struct Journal<S: Storage> {
    storage: S,
    /// The slot of the record in force and its sequence number.
    current: Option<(u8, u32)>,
}

impl<S: Storage> Journal<S> {
    /// Reads both slots; returns the journal and the newest intact record (`None` on a fresh
    /// device, or when both slots are damaged).
    pub fn load(storage: S) -> (Self, Option<Record>) {
        let mut best: Option<(u8, u32, Record)> = None;
        for slot in [0, 1] {
            let Some((seq, record)) = read_slot(storage.read(slot)) else {
                continue;
            };
            let newer = match &best {
                None => true,
                // Sequence numbers wrap; the newer one is ahead by less than half the range.
                Some((_, best_seq, _)) => seq.wrapping_sub(*best_seq).cast_signed() > 0,
            };
            if newer {
                best = Some((slot, seq, record));
            }
        }
        match best {
            Some((slot, seq, record)) => (
                Self {
                    storage,
                    current: Some((slot, seq)),
                },
                Some(record),
            ),
            None => (
                Self {
                    storage,
                    current: None,
                },
                None,
            ),
        }
    }

    /// Writes `record` to the slot not in force, with the next sequence number, and makes it
    /// the one in force once it reads back intact.
    pub fn save(&mut self, record: &Record) -> Result<(), StoreError> {
        let (slot, seq) = match self.current {
            Some((slot, seq)) => (1 - slot, seq.wrapping_add(1)),
            None => (0, 0),
        };
        let body = record.encode();
        let len = HEAD_LEN + body.len() + HASH_LEN;
        let slot_len = self.storage.slot_len();
        let body_len = u32::try_from(body.len()).ok();
        let (Some(body_len), true) = (body_len, len <= slot_len) else {
            return Err(StoreError::TooLarge { len, slot_len });
        };
        let mut image = Zeroizing::new(Vec::with_capacity(len));
        image.extend_from_slice(&MAGIC);
        image.extend_from_slice(&VERSION.to_le_bytes());
        image.extend_from_slice(&seq.to_le_bytes());
        image.extend_from_slice(&body_len.to_le_bytes());
        image.extend_from_slice(&body);
        let hash = Sha256::digest(&image[..]);
        image.extend_from_slice(&hash);
        self.storage.write(slot, &image);
        if self.storage.read(slot).get(..len) != Some(&image[..]) {
            return Err(StoreError::WriteFailed);
        }
        self.current = Some((slot, seq));
        Ok(())
    }

    /// The storage.
    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// The storage, given back (a test's "power off").
    pub fn into_storage(self) -> S {
        self.storage
    }
}

/// The sequence number and record of an intact slot.
fn read_slot(slot: &[u8]) -> Option<(u32, Record)> {
    let head = slot.get(..HEAD_LEN)?;
    if head.get(..4)? != MAGIC || head.get(4..6)? != VERSION.to_le_bytes() {
        return None;
    }
    let seq = u32::from_le_bytes(head.get(6..10)?.try_into().ok()?);
    let body_len = usize::try_from(u32::from_le_bytes(head.get(10..14)?.try_into().ok()?)).ok()?;
    let hashed_len = HEAD_LEN.checked_add(body_len)?;
    let hashed = slot.get(..hashed_len)?;
    let hash = slot.get(hashed_len..hashed_len.checked_add(HASH_LEN)?)?;
    if Sha256::digest(hashed)[..] != *hash {
        return None;
    }
    let record = Record::decode(hashed.get(HEAD_LEN..)?).ok()?;
    Some((seq, record))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use alloc::vec;

    /// RAM slots. `cut = Some((n, k))` makes the `n`-th write (counting from 1) stop after `k`
    /// bytes, as a reset would.
    #[derive(Clone, Debug)]
    pub(crate) struct FakeStorage {
        pub(crate) slots: [Vec<u8>; 2],
        pub(crate) cut: Option<(usize, usize)>,
        pub(crate) writes: usize,
    }

    impl FakeStorage {
        pub(crate) fn new(slot_len: usize) -> Self {
            Self {
                slots: [vec![0xFF; slot_len], vec![0xFF; slot_len]],
                cut: None,
                writes: 0,
            }
        }
    }

    impl Storage for FakeStorage {
        fn slot_len(&self) -> usize {
            self.slots[0].len()
        }

        fn read(&self, slot: u8) -> &[u8] {
            &self.slots[usize::from(slot)]
        }

        fn write(&mut self, slot: u8, record: &[u8]) {
            self.writes += 1;
            let n = match self.cut {
                Some((write, k)) if write == self.writes => k.min(record.len()),
                _ => record.len(),
            };
            self.slots[usize::from(slot)][..n].copy_from_slice(&record[..n]);
        }
    }

    fn record(n: u8) -> Record {
        Record {
            issuer: (n % 2 == 1).then(|| Issuer {
                key: Zeroizing::new(vec![n; 138]),
                chain: vec![vec![n; 700], vec![n + 1; 650]],
                anchors: vec![vec![n; 500]],
                settings: Settings {
                    workload_ttl_secs: 86_400,
                    clock_skew_secs: 900,
                    rotate_at_permille: 500,
                },
                installed_at: 1_790_000_000 + u64::from(n),
            }),
            pending_key: n.is_multiple_of(3).then(|| Zeroizing::new(vec![n; 138])),
            pool: Zeroizing::new([n; 32]),
            boot_count: u32::from(n),
        }
    }

    fn load(storage: FakeStorage) -> (Journal<FakeStorage>, Option<Record>) {
        Journal::load(storage)
    }

    #[test]
    fn a_fresh_device_has_no_record_and_saves_alternate_slots() {
        let (mut journal, loaded) = load(FakeStorage::new(8192));
        assert_eq!(loaded, None);
        for n in 0..5 {
            journal.save(&record(n)).unwrap();
            let (again, loaded) = load(journal.into_storage());
            assert_eq!(loaded, Some(record(n)));
            assert_eq!(again.current, Some((n % 2, u32::from(n))));
            journal = again;
        }
    }

    #[test]
    fn a_write_cut_at_any_byte_leaves_the_old_or_the_new_record() {
        let mut base = Journal::load(FakeStorage::new(4096)).0;
        base.save(&record(1)).unwrap();
        base.save(&record(2)).unwrap();
        let image_len = HEAD_LEN + record(3).encode().len() + HASH_LEN;
        let storage = base.into_storage();
        for k in 0..=image_len {
            let mut s = storage.clone();
            s.cut = Some((s.writes + 1, k));
            let (mut journal, old) = load(s);
            assert_eq!(old, Some(record(2)));
            let saved = journal.save(&record(3));
            // "Reboot".
            let (mut journal, loaded) = load(journal.into_storage());
            if k == image_len {
                saved.unwrap();
                assert_eq!(loaded, Some(record(3)), "cut at {k}");
            } else {
                assert_eq!(saved, Err(StoreError::WriteFailed));
                assert_eq!(loaded, Some(record(2)), "cut at {k}");
            }
            // The next save after the reboot works and is the newest.
            journal.save(&record(4)).unwrap();
            assert_eq!(load(journal.into_storage()).1, Some(record(4)));
        }
    }

    #[test]
    fn a_corrupt_slot_is_skipped_and_two_corrupt_slots_are_a_fresh_device() {
        let mut journal = Journal::load(FakeStorage::new(4096)).0;
        journal.save(&record(1)).unwrap();
        journal.save(&record(2)).unwrap(); // slot 1, newest
        let storage = journal.into_storage();
        let len = HEAD_LEN + record(2).encode().len() + HASH_LEN;
        for at in [0, 5, 7, 11, HEAD_LEN + 3, len - 1] {
            let mut s = storage.clone();
            s.slots[1][at] ^= 0x10;
            assert_eq!(load(s.clone()).1, Some(record(1)), "byte {at}");
            s.slots[0][at] ^= 0x10;
            assert_eq!(load(s).1, None, "byte {at}");
        }
        // A length field pointing past the slot is refused, not read out of bounds.
        let mut s = storage.clone();
        s.slots[1][10..14].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(load(s).1, Some(record(1)));
        // Another format version is not read.
        let mut s = storage;
        s.slots[1][4] = 2;
        assert_eq!(load(s).1, Some(record(1)));
    }

    #[test]
    fn sequence_numbers_wrap() {
        let mut s = FakeStorage::new(4096);
        let mut journal = Journal::load(s.clone()).0;
        journal.current = Some((1, u32::MAX - 1));
        journal.save(&record(1)).unwrap(); // slot 0, seq MAX
        journal.save(&record(2)).unwrap(); // slot 1, seq 0
        s = journal.into_storage();
        let (journal, loaded) = load(s);
        assert_eq!(loaded, Some(record(2)));
        assert_eq!(journal.current, Some((1, 0)));
        let mut journal = journal;
        journal.save(&record(3)).unwrap();
        assert_eq!(load(journal.into_storage()).1, Some(record(3)));
    }

    #[test]
    fn a_record_too_large_for_a_slot_is_refused_and_the_old_one_stays() {
        let mut journal = Journal::load(FakeStorage::new(2048)).0;
        journal.save(&record(2)).unwrap();
        let err = journal.save(&record(1)).unwrap_err();
        assert!(matches!(err, StoreError::TooLarge { slot_len: 2048, .. }));
        assert_eq!(journal.storage().writes, 1);
        assert_eq!(load(journal.into_storage()).1, Some(record(2)));
    }

    #[test]
    fn debug_output_shows_no_key_or_pool() {
        let text = alloc::format!("{:?}", record(3));
        assert!(!text.contains("3, 3"), "{text}");
    }
}

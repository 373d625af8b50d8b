//! UART framing (`docs/edge.md`, "Wire protocol"): `sync kind id len payload crc`.
//!
//! [`encode`] writes one frame; [`FrameDecoder`] reads a byte stream that may hold garbage,
//! truncated frames and bad checksums, and never guesses: a frame is only delivered when all its
//! bytes are in and its CRC matches.

use alloc::vec::Vec;

/// The largest payload a frame may carry.
pub const MAX_PAYLOAD: usize = 8192;
/// The two bytes that start every frame (`"WE"`).
pub const SYNC: [u8; 2] = [0x57, 0x45];
/// Sync, kind, id and length.
pub const HEADER_LEN: usize = 9;
/// The CRC after the payload.
pub const CRC_LEN: usize = 4;
/// The longest frame: header, [`MAX_PAYLOAD`] bytes and the CRC.
pub const MAX_FRAME_LEN: usize = HEADER_LEN + MAX_PAYLOAD + CRC_LEN;
/// Skipped bytes are reported at the latest after this many, even while no sync comes.
pub const GARBAGE_REPORT_AFTER: usize = 512;

/// CRC-32 as zlib's `crc32` computes it; one 256-entry table (1 KiB of flash).
const CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// The payload is longer than [`MAX_PAYLOAD`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PayloadTooLarge {
    /// Its length.
    pub len: usize,
}

impl core::fmt::Display for PayloadTooLarge {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "payload of {} bytes exceeds the {MAX_PAYLOAD}-byte frame limit",
            self.len
        )
    }
}

impl core::error::Error for PayloadTooLarge {}

/// One frame around `payload`.
///
/// `payload` must be at most [`MAX_PAYLOAD`] bytes ([`try_encode`] checks it); a longer one
/// gives a frame whose length field (saturated at `u16::MAX`) every decoder refuses as
/// [`Event::Oversized`], never a frame that decodes as something else.
pub fn encode(kind: u8, id: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len() + CRC_LEN);
    out.resize(HEADER_LEN, 0);
    out.extend_from_slice(payload);
    seal(out, kind, id)
}

/// Completes a frame whose payload was written after [`HEADER_LEN`] reserved bytes: fills
/// in the header and appends the CRC. Saves a copy of large replies.
pub(crate) fn seal(mut out: Vec<u8>, kind: u8, id: u32) -> Vec<u8> {
    let payload_len = out.len().saturating_sub(HEADER_LEN);
    let len = u16::try_from(payload_len).unwrap_or(u16::MAX);
    let mut header = [0; HEADER_LEN];
    header[..2].copy_from_slice(&SYNC);
    header[2] = kind;
    header[3..7].copy_from_slice(&id.to_le_bytes());
    header[7..].copy_from_slice(&len.to_le_bytes());
    if let Some(reserved) = out.get_mut(..HEADER_LEN) {
        reserved.copy_from_slice(&header);
    }
    let crc = CRC32.checksum(out.get(SYNC.len()..).unwrap_or_default());
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// [`encode`], refusing a payload over [`MAX_PAYLOAD`].
pub fn try_encode(kind: u8, id: u32, payload: &[u8]) -> Result<Vec<u8>, PayloadTooLarge> {
    if payload.len() > MAX_PAYLOAD {
        return Err(PayloadTooLarge { len: payload.len() });
    }
    Ok(encode(kind, id, payload))
}

/// What the decoder found in the byte stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A complete frame whose CRC matched.
    Frame {
        /// Its kind.
        kind: u8,
        /// Its request id.
        id: u32,
        /// Its payload (at most [`MAX_PAYLOAD`] bytes).
        payload: Vec<u8>,
    },
    /// Bytes that were not part of any frame were skipped.
    Garbage {
        /// How many.
        skipped: usize,
    },
    /// A header announced a payload over [`MAX_PAYLOAD`]; scanning resumed after its sync.
    Oversized {
        /// The header's id.
        id: u32,
        /// The announced length.
        len: usize,
    },
    /// A frame's CRC did not match; scanning resumed one byte after its sync.
    BadChecksum {
        /// The header's id (not trustworthy, as the frame is damaged).
        id: u32,
    },
}

/// A streaming frame reader.
///
/// Feed it one byte at a time with [`push`](Self::push) and drain [`next_event`](Self::next_event)
/// after each byte (one byte can complete several events). Drained that way it holds at most
/// one frame ([`MAX_FRAME_LEN`] bytes), and it never panics, whatever the input.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    /// Bytes not yet consumed start at `buf[pos]`.
    buf: Vec<u8>,
    pos: usize,
    /// A sync sits at `buf[pos]` and its frame is being collected.
    synced: bool,
    /// Skipped bytes not reported yet.
    skipped: usize,
    /// Skipped bytes that were already reported as part of a bad header or frame and are not
    /// reported again as garbage.
    quiet: usize,
}

impl FrameDecoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one received byte.
    pub fn push(&mut self, byte: u8) {
        self.buf.push(byte);
    }

    /// The next event the received bytes make, or `None` until more bytes come.
    pub fn next_event(&mut self) -> Option<Event> {
        if !self.synced {
            match self.find_sync() {
                Some(event) => return Some(event),
                None if self.synced => {}
                None => {
                    self.compact();
                    return None;
                }
            }
        }
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let Some(header) = rest.get(..HEADER_LEN) else {
            self.compact();
            return None;
        };
        let kind = header.get(2).copied().unwrap_or_default();
        let id = u32::from_le_bytes(le_array(header.get(3..7)));
        let len = usize::from(u16::from_le_bytes(le_array(header.get(7..9))));
        if len > MAX_PAYLOAD {
            // Waiting for the announced bytes could swallow the frames that follow.
            self.synced = false;
            self.pos += SYNC.len();
            self.quiet = HEADER_LEN - SYNC.len();
            return Some(Event::Oversized { id, len });
        }
        let frame_len = HEADER_LEN + len + CRC_LEN;
        let Some(frame) = rest.get(..frame_len) else {
            self.compact();
            return None;
        };
        let body = frame.get(SYNC.len()..HEADER_LEN + len).unwrap_or_default();
        let crc = u32::from_le_bytes(le_array(frame.get(HEADER_LEN + len..)));
        self.synced = false;
        self.quiet = 0;
        if CRC32.checksum(body) != crc {
            // The length may be the damaged part: a good frame can start inside this one.
            self.pos += 1;
            self.quiet = frame_len - 1;
            return Some(Event::BadChecksum { id });
        }
        let payload = if self.pos == 0 {
            // The usual case (bytes drained as they come): the buffer becomes the payload,
            // so a large request is not held twice while it is handled.
            let rest = self.buf.split_off(frame_len.min(self.buf.len()));
            let mut payload = core::mem::replace(&mut self.buf, rest);
            payload.truncate(HEADER_LEN + len);
            payload.drain(..HEADER_LEN.min(payload.len()));
            payload
        } else {
            let payload = frame.get(HEADER_LEN..HEADER_LEN + len).unwrap_or_default();
            let payload = payload.to_vec();
            self.pos += frame_len;
            payload
        };
        Some(Event::Frame { kind, id, payload })
    }

    /// Skips to the next sync. Sets `synced` when one is at `pos`; returns a garbage report
    /// when one is due.
    fn find_sync(&mut self) -> Option<Event> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let (skip, found) = match rest.windows(2).position(|w| w == SYNC) {
            Some(at) => (at, true),
            // A last byte that may start a sync stays until the next byte decides.
            None if rest.last() == SYNC.first() => (rest.len() - 1, false),
            None => (rest.len(), false),
        };
        self.pos += skip;
        let silent = skip.min(self.quiet);
        self.quiet -= silent;
        self.skipped += skip - silent;
        if found {
            self.synced = true;
            self.quiet = 0;
        }
        if self.skipped > 0 && (found || self.skipped >= GARBAGE_REPORT_AFTER) {
            let skipped = core::mem::take(&mut self.skipped);
            return Some(Event::Garbage { skipped });
        }
        None
    }

    /// Drops consumed bytes, so the buffer holds only what is still undecided.
    fn compact(&mut self) {
        if self.pos > 0 {
            self.buf.drain(..self.pos.min(self.buf.len()));
            self.pos = 0;
        }
    }

    /// Bytes held for a frame not yet complete.
    pub fn buffered(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }
}

/// A little-endian integer's bytes; short input (impossible at the call sites) reads as zeros.
fn le_array<const N: usize>(bytes: Option<&[u8]>) -> [u8; N] {
    bytes
        .and_then(|b| b.get(..N))
        .and_then(|b| b.try_into().ok())
        .unwrap_or([0; N])
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn decode_all(decoder: &mut FrameDecoder, bytes: &[u8]) -> Vec<Event> {
        let mut events = Vec::new();
        for &b in bytes {
            decoder.push(b);
            while let Some(e) = decoder.next_event() {
                events.push(e);
            }
            assert!(decoder.buffered() <= MAX_FRAME_LEN);
        }
        events
    }

    fn decode(bytes: &[u8]) -> Vec<Event> {
        decode_all(&mut FrameDecoder::new(), bytes)
    }

    fn frame_event(kind: u8, id: u32, payload: &[u8]) -> Event {
        Event::Frame {
            kind,
            id,
            payload: payload.to_vec(),
        }
    }

    /// Deterministic bytes (xorshift), so failures reproduce.
    fn pseudo_random(len: usize, mut state: u64) -> Vec<u8> {
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    }

    #[test]
    fn encodes_the_documented_layout_with_zlib_crc32() {
        let frame = encode(0x04, 0x0102_0304, b"abc");
        assert_eq!(
            &frame[..12],
            &[
                0x57, 0x45, 0x04, 0x04, 0x03, 0x02, 0x01, 0x03, 0x00, b'a', b'b', b'c'
            ]
        );
        // zlib.crc32(bytes([4, 4, 3, 2, 1, 3, 0]) + b"abc")
        let crc = CRC32.checksum(&frame[2..12]);
        assert_eq!(&frame[12..], &crc.to_le_bytes());
        // The check value of CRC-32/ISO-HDLC (zlib): crc32(b"123456789") = 0xCBF43926.
        assert_eq!(CRC32.checksum(b"123456789"), 0xCBF4_3926);
        assert_eq!(frame.len(), HEADER_LEN + 3 + CRC_LEN);
    }

    #[test]
    fn decodes_byte_at_a_time_and_at_every_split_point() {
        let mut stream = encode(1, 7, b"first");
        stream.extend(encode(0x84, 8, &[0x57, 0x45, 0x57, 0x45, 0]));
        stream.extend(encode(2, 9, b""));
        let expected = vec![
            frame_event(1, 7, b"first"),
            frame_event(0x84, 8, &[0x57, 0x45, 0x57, 0x45, 0]),
            frame_event(2, 9, b""),
        ];
        assert_eq!(decode(&stream), expected);
        // Pushing all bytes before draining gives the same events.
        for split in 0..=stream.len() {
            let mut decoder = FrameDecoder::new();
            let mut events = Vec::new();
            for part in [&stream[..split], &stream[split..]] {
                for &b in part {
                    decoder.push(b);
                }
                while let Some(e) = decoder.next_event() {
                    events.push(e);
                }
            }
            assert_eq!(events, expected, "split at {split}");
            assert_eq!(decoder.buffered(), 0);
        }
    }

    #[test]
    fn a_payload_holding_sync_bytes_and_frames_is_one_frame() {
        let inner = encode(1, 1, b"inner");
        let outer = encode(3, 2, &inner);
        assert_eq!(decode(&outer), vec![frame_event(3, 2, &inner)]);
    }

    #[test]
    fn garbage_before_and_between_frames_is_reported_then_skipped() {
        let mut stream = b"hello".to_vec();
        stream.extend(encode(1, 1, b"a"));
        stream.extend([0x57, 0x00, 0x45, 0x57]); // near-syncs
        stream.extend(encode(1, 2, b"b"));
        assert_eq!(
            decode(&stream),
            vec![
                Event::Garbage { skipped: 5 },
                frame_event(1, 1, b"a"),
                Event::Garbage { skipped: 4 },
                frame_event(1, 2, b"b"),
            ]
        );
    }

    #[test]
    fn long_garbage_is_reported_every_512_bytes_without_a_sync() {
        let events = decode(&[0u8; 1200]);
        assert_eq!(
            events,
            vec![
                Event::Garbage { skipped: 512 },
                Event::Garbage { skipped: 512 }
            ]
        );
        let mut decoder = FrameDecoder::new();
        decode_all(&mut decoder, &[0u8; 1200]);
        assert_eq!(
            decode_all(&mut decoder, &encode(1, 3, b"")),
            vec![Event::Garbage { skipped: 176 }, frame_event(1, 3, b"")]
        );
    }

    #[test]
    fn a_good_frame_after_a_truncated_one_is_found() {
        // The truncated frame announces 100 payload bytes: the decoder takes the next 73 bytes
        // as its rest, finds the CRC wrong and rescans them, finding the frames inside.
        let mut stream = encode(4, 1, &[0xAA; 100])[..40].to_vec();
        let mut expected = vec![Event::BadChecksum { id: 1 }];
        for id in 2..10 {
            stream.extend(encode(1, id, b"good"));
            expected.push(frame_event(1, id, b"good"));
        }
        assert_eq!(decode(&stream), expected);
    }

    #[test]
    fn a_flipped_bit_is_a_bad_checksum_or_oversize_and_later_frames_decode() {
        let good = encode(2, 5, b"payload");
        let later = encode(2, 6, b"later");
        for bit in 16..good.len() * 8 {
            let mut stream = good.clone();
            stream[bit / 8] ^= 1 << (bit % 8);
            stream.extend(&good);
            // Enough bytes to complete whatever length the damage announces.
            stream.extend([0u8; MAX_FRAME_LEN]);
            stream.extend(&later);
            let events = decode(&stream);
            let is_len = (7 * 8..9 * 8).contains(&bit);
            let first = &events[0];
            assert!(
                matches!(first, Event::BadChecksum { .. })
                    || (is_len && matches!(first, Event::Oversized { .. })),
                "bit {bit}: {first:?}"
            );
            let frames: Vec<_> = events
                .into_iter()
                .filter(|e| matches!(e, Event::Frame { .. }))
                .collect();
            assert_eq!(
                frames,
                [frame_event(2, 5, b"payload"), frame_event(2, 6, b"later")],
                "bit {bit}"
            );
        }
    }

    #[test]
    fn an_oversized_header_is_reported_at_once_and_scanning_resumes() {
        let mut stream = vec![0x57, 0x45, 4];
        stream.extend(9u32.to_le_bytes());
        stream.extend(((MAX_PAYLOAD + 1) as u16).to_le_bytes());
        stream.extend(encode(1, 10, b"next"));
        assert_eq!(
            decode(&stream),
            vec![
                Event::Oversized {
                    id: 9,
                    len: MAX_PAYLOAD + 1
                },
                frame_event(1, 10, b"next"),
            ]
        );
        // The largest allowed payload is a frame.
        let max = vec![0x45; MAX_PAYLOAD];
        assert_eq!(decode(&encode(3, 1, &max)), vec![frame_event(3, 1, &max)]);
        assert_eq!(
            try_encode(3, 1, &[0; MAX_PAYLOAD + 1]),
            Err(PayloadTooLarge {
                len: MAX_PAYLOAD + 1
            })
        );
        // encode's over-long frame is refused by the decoder, not misread.
        let events = decode(&encode(3, 1, &[0x57; 70_000]));
        assert_eq!(
            events[0],
            Event::Oversized {
                id: 1,
                len: usize::from(u16::MAX)
            }
        );
        assert!(!events.iter().any(|e| matches!(e, Event::Frame { .. })));
    }

    #[test]
    fn random_garbage_never_panics_and_memory_stays_bounded() {
        let noise = pseudo_random(100_000, 0x9E37_79B9_7F4A_7C15);
        let mut decoder = FrameDecoder::new();
        let mut skipped = 0;
        for event in decode_all(&mut decoder, &noise) {
            if let Event::Garbage { skipped: n } = event {
                skipped += n;
            }
        }
        assert!(skipped > 90_000, "{skipped}");
        // Noise rich in syncs and plausible headers (lengths near the limit).
        let mut syncs = pseudo_random(100_000, 7);
        for (i, b) in syncs.iter_mut().enumerate() {
            match i % 97 {
                0 => *b = 0x57,
                1 => *b = 0x45,
                8 => *b &= 0x1f,
                _ => {}
            }
        }
        let mut decoder = FrameDecoder::new();
        decode_all(&mut decoder, &syncs);
        // After any noise, a good frame still decodes (after at most one unfinished frame).
        let mut tail = vec![0u8; MAX_FRAME_LEN];
        tail.extend(encode(1, 42, b"after noise"));
        let events = decode_all(&mut decoder, &tail);
        assert_eq!(events.last(), Some(&frame_event(1, 42, b"after noise")));
    }
}

//! The typed requests and replies of `docs/edge.md`, and their payload encodings.
//!
//! Shared by the device and the host driver, so both ends use one codec. Decoding never
//! panics; every error names the field or message it is about.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::wire::{Reader, Writer};

/// Request kinds (driver → device).
pub mod kind {
    /// `STATUS`.
    pub const STATUS: u8 = 0x01;
    /// `ISSUER_CSR`.
    pub const ISSUER_CSR: u8 = 0x02;
    /// `INSTALL_ISSUER`.
    pub const INSTALL_ISSUER: u8 = 0x03;
    /// `SIGN`.
    pub const SIGN: u8 = 0x04;
    /// `STATUS_REPLY`.
    pub const STATUS_REPLY: u8 = 0x81;
    /// `ISSUER_CSR_REPLY`.
    pub const ISSUER_CSR_REPLY: u8 = 0x82;
    /// `INSTALLED`.
    pub const INSTALLED: u8 = 0x83;
    /// `SIGNED`.
    pub const SIGNED: u8 = 0x84;
    /// `BOOT`.
    pub const BOOT: u8 = 0x85;
    /// `ERROR`.
    pub const ERROR: u8 = 0xEE;

    /// The protocol name of a kind, for messages.
    pub fn name(kind: u8) -> Option<&'static str> {
        Some(match kind {
            STATUS => "STATUS",
            ISSUER_CSR => "ISSUER_CSR",
            INSTALL_ISSUER => "INSTALL_ISSUER",
            SIGN => "SIGN",
            STATUS_REPLY => "STATUS_REPLY",
            ISSUER_CSR_REPLY => "ISSUER_CSR_REPLY",
            INSTALLED => "INSTALLED",
            SIGNED => "SIGNED",
            BOOT => "BOOT",
            ERROR => "ERROR",
            _ => return None,
        })
    }
}

/// Why a payload does not decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MessageError {
    /// The kind is not a request (for [`Request::decode`]) or not a reply.
    UnknownKind {
        /// The kind byte.
        kind: u8,
        /// Whether a reply was expected.
        reply: bool,
    },
    /// The payload ends inside `field`.
    Truncated {
        /// The field.
        field: &'static str,
    },
    /// A `str` field is not UTF-8.
    NotUtf8 {
        /// The field.
        field: &'static str,
    },
    /// A field has a value the protocol does not define (a flag other than 0 or 1).
    BadValue {
        /// The field.
        field: &'static str,
    },
    /// Bytes follow the last field.
    TrailingBytes {
        /// The message name.
        message: &'static str,
        /// How many.
        count: usize,
    },
}

impl fmt::Display for MessageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownKind { kind, reply } => {
                let what = if *reply { "reply" } else { "request" };
                write!(f, "unknown {what} kind 0x{kind:02x}")
            }
            Self::Truncated { field } => write!(f, "payload ends inside field {field}"),
            Self::NotUtf8 { field } => write!(f, "field {field} is not UTF-8"),
            Self::BadValue { field } => write!(f, "field {field} has an undefined value"),
            Self::TrailingBytes { message, count } => {
                write!(f, "{count} trailing bytes after the payload of {message}")
            }
        }
    }
}

impl core::error::Error for MessageError {}

/// A request from the driver; byte fields borrow the frame's payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// `STATUS`.
    Status {
        /// The driver's clock (Unix seconds).
        now: u64,
    },
    /// `ISSUER_CSR`: make (or reuse) the pending issuer key and answer its CSR.
    IssuerCsr {
        /// The driver's clock.
        now: u64,
    },
    /// `INSTALL_ISSUER`: the certificate for the pending key, and the settings to serve with.
    InstallIssuer {
        /// The driver's clock.
        now: u64,
        /// PEM: the issuer certificate, then any intermediates.
        issuer_chain: &'a [u8],
        /// PEM: the roots.
        trust_anchors: &'a [u8],
        /// Lifetime of issued leaves.
        workload_ttl_secs: u32,
        /// Backdating of leaves' NotBefore.
        clock_skew_secs: u32,
        /// When in the issuer's life (per mille) a new issuer key is made.
        rotate_at_permille: u16,
    },
    /// `SIGN`: what `SignCertificate` carries.
    Sign {
        /// The driver's clock.
        now: u64,
        /// `id`.
        app_id: &'a str,
        /// `namespace`.
        namespace: &'a str,
        /// `trust_domain`.
        trust_domain: &'a str,
        /// PEM CSR (`certificate_signing_request`).
        csr: &'a [u8],
    },
}

impl<'a> Request<'a> {
    /// The kind byte and payload.
    pub fn encode(&self) -> (u8, Vec<u8>) {
        let mut w = Writer::default();
        let kind = match *self {
            Self::Status { now } => {
                w.u64(now);
                kind::STATUS
            }
            Self::IssuerCsr { now } => {
                w.u64(now);
                kind::ISSUER_CSR
            }
            Self::InstallIssuer {
                now,
                issuer_chain,
                trust_anchors,
                workload_ttl_secs,
                clock_skew_secs,
                rotate_at_permille,
            } => {
                w.u64(now)
                    .bytes(issuer_chain)
                    .bytes(trust_anchors)
                    .u32(workload_ttl_secs)
                    .u32(clock_skew_secs)
                    .u16(rotate_at_permille);
                kind::INSTALL_ISSUER
            }
            Self::Sign {
                now,
                app_id,
                namespace,
                trust_domain,
                csr,
            } => {
                w.u64(now)
                    .bytes(app_id.as_bytes())
                    .bytes(namespace.as_bytes())
                    .bytes(trust_domain.as_bytes())
                    .bytes(csr);
                kind::SIGN
            }
        };
        (kind, w.out)
    }

    /// Reads a request payload of `kind`.
    pub fn decode(kind: u8, payload: &'a [u8]) -> Result<Self, MessageError> {
        let mut r = Reader::new(payload);
        let request = match kind {
            kind::STATUS => Self::Status { now: r.u64("now")? },
            kind::ISSUER_CSR => Self::IssuerCsr { now: r.u64("now")? },
            kind::INSTALL_ISSUER => Self::InstallIssuer {
                now: r.u64("now")?,
                issuer_chain: r.bytes("issuer_chain")?,
                trust_anchors: r.bytes("trust_anchors")?,
                workload_ttl_secs: r.u32("workload_ttl_secs")?,
                clock_skew_secs: r.u32("clock_skew_secs")?,
                rotate_at_permille: r.u16("rotate_at_permille")?,
            },
            kind::SIGN => Self::Sign {
                now: r.u64("now")?,
                app_id: r.str("app_id")?,
                namespace: r.str("namespace")?,
                trust_domain: r.str("trust_domain")?,
                csr: r.bytes("csr")?,
            },
            _ => return Err(MessageError::UnknownKind { kind, reply: false }),
        };
        r.finish(kind::name(kind).unwrap_or_default())?;
        Ok(request)
    }

    /// The driver's clock carried by every request.
    pub fn now(&self) -> u64 {
        match *self {
            Self::Status { now }
            | Self::IssuerCsr { now }
            | Self::InstallIssuer { now, .. }
            | Self::Sign { now, .. } => now,
        }
    }
}

/// The device's state, as `STATUS_REPLY` and `BOOT` report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// 0: no issuer installed yet.
    NeedsProvisioning,
    /// 1: an issuer is installed and leaves are issued.
    Serving,
}

impl State {
    fn to_u8(self) -> u8 {
        match self {
            Self::NeedsProvisioning => 0,
            Self::Serving => 1,
        }
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, MessageError> {
        match r.u8("state")? {
            0 => Ok(Self::NeedsProvisioning),
            1 => Ok(Self::Serving),
            _ => Err(MessageError::BadValue { field: "state" }),
        }
    }
}

/// The payload of `STATUS_REPLY`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    /// Provisioned or not.
    pub state: State,
    /// A new issuer key waits for its certificate.
    pub pending_key: bool,
    /// The issuer has passed its rotation point.
    pub rotation_due: bool,
    /// The issuer's NotBefore (0 when none).
    pub issuer_not_before: u64,
    /// The issuer's NotAfter (0 when none).
    pub issuer_not_after: u64,
    /// Resets since the storage was first written.
    pub boot_count: u32,
    /// Leaves issued since boot.
    pub issued: u32,
    /// The heap's size in bytes.
    pub heap_size: u32,
    /// Peak heap use during the last SIGN, in bytes.
    pub heap_peak_last_sign: u32,
    /// Peak stack use since boot, in bytes.
    pub stack_peak: u32,
    /// Ticks the last SIGN took.
    pub ticks_last_sign: u64,
    /// Ticks per second.
    pub tick_hz: u32,
}

/// A reply from the device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `STATUS_REPLY`.
    StatusReply(Status),
    /// `ISSUER_CSR_REPLY`.
    IssuerCsr {
        /// PEM `CERTIFICATE REQUEST` for the pending issuer key.
        csr: Vec<u8>,
    },
    /// `INSTALLED`.
    Installed {
        /// The installed issuer's NotAfter.
        issuer_not_after: u64,
    },
    /// `SIGNED`: what `SignCertificateResponse` carries.
    Signed {
        /// PEM: the leaf, then the issuer chain.
        workload_certificate: Vec<u8>,
        /// PEM: the roots.
        trust_anchors: Vec<u8>,
        /// The leaf's NotAfter.
        valid_until: u64,
        /// The issuer has passed its rotation point.
        rotation_due: bool,
    },
    /// `BOOT`: sent once after every reset, id 0.
    Boot {
        /// Resets since the storage was first written.
        boot_count: u32,
        /// Provisioned or not.
        state: State,
    },
    /// `ERROR`.
    Error {
        /// The gRPC status code Sentry would answer.
        code: u8,
        /// The message.
        message: String,
    },
}

impl Reply {
    /// The kind byte and payload.
    pub fn encode(&self) -> (u8, Vec<u8>) {
        let mut w = Writer {
            out: Vec::with_capacity(self.payload_len_hint()),
        };
        let kind = self.write(&mut w);
        (kind, w.out)
    }

    /// The whole frame for request `id`, written in place (a SIGNED reply is not copied
    /// from a payload buffer into a frame). A payload over [`crate::frame::MAX_PAYLOAD`]
    /// gives a frame every decoder refuses as oversized (see [`crate::frame::encode`]).
    pub fn to_frame(&self, id: u32) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            crate::frame::HEADER_LEN + self.payload_len_hint() + crate::frame::CRC_LEN,
        );
        out.resize(crate::frame::HEADER_LEN, 0);
        let mut w = Writer { out };
        let kind = self.write(&mut w);
        crate::frame::seal(w.out, kind, id)
    }

    /// The payload's length, or close to it.
    fn payload_len_hint(&self) -> usize {
        match self {
            Self::IssuerCsr { csr } => 2 + csr.len(),
            Self::Signed {
                workload_certificate,
                trust_anchors,
                ..
            } => 2 + workload_certificate.len() + 2 + trust_anchors.len() + 8 + 1,
            Self::Error { message, .. } => 1 + 2 + message.len(),
            Self::StatusReply(_) | Self::Installed { .. } | Self::Boot { .. } => 64,
        }
    }

    /// Writes the payload; returns the kind.
    fn write(&self, w: &mut Writer) -> u8 {
        match self {
            Self::StatusReply(s) => {
                w.u8(s.state.to_u8())
                    .u8(s.pending_key.into())
                    .u8(s.rotation_due.into())
                    .u64(s.issuer_not_before)
                    .u64(s.issuer_not_after)
                    .u32(s.boot_count)
                    .u32(s.issued)
                    .u32(s.heap_size)
                    .u32(s.heap_peak_last_sign)
                    .u32(s.stack_peak)
                    .u64(s.ticks_last_sign)
                    .u32(s.tick_hz);
                kind::STATUS_REPLY
            }
            Self::IssuerCsr { csr } => {
                w.bytes(csr);
                kind::ISSUER_CSR_REPLY
            }
            Self::Installed { issuer_not_after } => {
                w.u64(*issuer_not_after);
                kind::INSTALLED
            }
            Self::Signed {
                workload_certificate,
                trust_anchors,
                valid_until,
                rotation_due,
            } => {
                w.bytes(workload_certificate)
                    .bytes(trust_anchors)
                    .u64(*valid_until)
                    .u8((*rotation_due).into());
                kind::SIGNED
            }
            Self::Boot { boot_count, state } => {
                w.u32(*boot_count).u8(state.to_u8());
                kind::BOOT
            }
            Self::Error { code, message } => {
                w.u8(*code).bytes(message.as_bytes());
                kind::ERROR
            }
        }
    }

    /// Reads a reply payload of `kind`.
    pub fn decode(kind: u8, payload: &[u8]) -> Result<Self, MessageError> {
        let mut r = Reader::new(payload);
        let reply = match kind {
            kind::STATUS_REPLY => Self::StatusReply(Status {
                state: State::read(&mut r)?,
                pending_key: r.bool("pending_key")?,
                rotation_due: r.bool("rotation_due")?,
                issuer_not_before: r.u64("issuer_not_before")?,
                issuer_not_after: r.u64("issuer_not_after")?,
                boot_count: r.u32("boot_count")?,
                issued: r.u32("issued")?,
                heap_size: r.u32("heap_size")?,
                heap_peak_last_sign: r.u32("heap_peak_last_sign")?,
                stack_peak: r.u32("stack_peak")?,
                ticks_last_sign: r.u64("ticks_last_sign")?,
                tick_hz: r.u32("tick_hz")?,
            }),
            kind::ISSUER_CSR_REPLY => Self::IssuerCsr {
                csr: r.bytes("csr")?.to_vec(),
            },
            kind::INSTALLED => Self::Installed {
                issuer_not_after: r.u64("issuer_not_after")?,
            },
            kind::SIGNED => Self::Signed {
                workload_certificate: r.bytes("workload_certificate")?.to_vec(),
                trust_anchors: r.bytes("trust_anchors")?.to_vec(),
                valid_until: r.u64("valid_until")?,
                rotation_due: r.bool("rotation_due")?,
            },
            kind::BOOT => Self::Boot {
                boot_count: r.u32("boot_count")?,
                state: State::read(&mut r)?,
            },
            kind::ERROR => Self::Error {
                code: r.u8("code")?,
                message: String::from(r.str("message")?),
            },
            _ => return Err(MessageError::UnknownKind { kind, reply: true }),
        };
        r.finish(kind::name(kind).unwrap_or_default())?;
        Ok(reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    fn requests() -> Vec<Request<'static>> {
        vec![
            Request::Status { now: 1 },
            Request::IssuerCsr { now: u64::MAX },
            Request::InstallIssuer {
                now: 1_790_000_000,
                issuer_chain: b"-----BEGIN CERTIFICATE-----",
                trust_anchors: b"anchors",
                workload_ttl_secs: 86_400,
                clock_skew_secs: 900,
                rotate_at_permille: 500,
            },
            Request::Sign {
                now: 1_790_000_001,
                app_id: "app",
                namespace: "default",
                trust_domain: "public",
                csr: b"csr bytes",
            },
        ]
    }

    fn replies() -> Vec<Reply> {
        vec![
            Reply::StatusReply(Status {
                state: State::Serving,
                pending_key: true,
                rotation_due: false,
                issuer_not_before: 10,
                issuer_not_after: 20,
                boot_count: 3,
                issued: 4,
                heap_size: 5,
                heap_peak_last_sign: 6,
                stack_peak: 7,
                ticks_last_sign: 8,
                tick_hz: 9,
            }),
            Reply::IssuerCsr {
                csr: b"-----BEGIN CERTIFICATE REQUEST-----".to_vec(),
            },
            Reply::Installed {
                issuer_not_after: 99,
            },
            Reply::Signed {
                workload_certificate: b"chain".to_vec(),
                trust_anchors: b"roots".to_vec(),
                valid_until: 12345,
                rotation_due: true,
            },
            Reply::Boot {
                boot_count: 1,
                state: State::NeedsProvisioning,
            },
            Reply::Error {
                code: 3,
                message: "bad".to_string(),
            },
        ]
    }

    #[test]
    fn every_kind_round_trips_and_every_truncation_is_an_error() {
        for request in requests() {
            let (kind, payload) = request.encode();
            assert_eq!(Request::decode(kind, &payload), Ok(request));
            for cut in 0..payload.len() {
                let err = Request::decode(kind, &payload[..cut]).unwrap_err();
                assert!(matches!(err, MessageError::Truncated { .. }), "{err}");
            }
            let mut long = payload.clone();
            long.extend([0, 0]);
            let err = Request::decode(kind, &long).unwrap_err();
            assert_eq!(
                err.to_string(),
                alloc::format!(
                    "2 trailing bytes after the payload of {}",
                    kind::name(kind).unwrap()
                )
            );
        }
        for reply in replies() {
            let (kind, payload) = reply.encode();
            assert_eq!(Reply::decode(kind, &payload).as_ref(), Ok(&reply));
            for cut in 0..payload.len() {
                assert!(Reply::decode(kind, &payload[..cut]).is_err(), "{cut}");
            }
            let mut long = payload.clone();
            long.push(0);
            assert!(matches!(
                Reply::decode(kind, &long),
                Err(MessageError::TrailingBytes { count: 1, .. })
            ));
        }
    }

    #[test]
    fn the_layout_is_the_documented_one() {
        let (kind, payload) = Request::Sign {
            now: 0x0102_0304_0506_0708,
            app_id: "a",
            namespace: "ns",
            trust_domain: "",
            csr: b"C",
        }
        .encode();
        assert_eq!(kind, 0x04);
        assert_eq!(
            payload,
            [
                8, 7, 6, 5, 4, 3, 2, 1, 1, 0, b'a', 2, 0, b'n', b's', 0, 0, 1, 0, b'C'
            ]
        );
        let (kind, payload) = Reply::Error {
            code: 9,
            message: "x".to_string(),
        }
        .encode();
        assert_eq!((kind, payload), (0xEE, vec![9, 1, 0, b'x']));
        let (kind, payload) = replies()[0].encode();
        assert_eq!(kind, 0x81);
        assert_eq!(payload.len(), 3 + 8 + 8 + 4 * 5 + 8 + 4);
    }

    #[test]
    fn errors_name_the_field() {
        let (_, payload) = requests()[3].encode();
        // now (8) + app_id length (2) + 1 byte of "app".
        let err = Request::decode(kind::SIGN, &payload[..11]).unwrap_err();
        assert_eq!(err.to_string(), "payload ends inside field app_id");
        let mut bad = payload.clone();
        bad[8 + 2 + 3 + 2] = 0xFF; // first byte of "default"
        assert_eq!(
            Request::decode(kind::SIGN, &bad).unwrap_err().to_string(),
            "field namespace is not UTF-8"
        );
        assert_eq!(
            Request::decode(0x81, &payload).unwrap_err().to_string(),
            "unknown request kind 0x81"
        );
        assert_eq!(
            Reply::decode(0x04, &payload).unwrap_err().to_string(),
            "unknown reply kind 0x04"
        );
        let (_, mut boot) = replies()[4].encode();
        boot[4] = 2;
        assert_eq!(
            Reply::decode(kind::BOOT, &boot).unwrap_err().to_string(),
            "field state has an undefined value"
        );
        assert_eq!(
            Request::decode(kind::STATUS, &[]).unwrap_err().to_string(),
            "payload ends inside field now"
        );
    }

    #[test]
    fn a_reply_frame_decodes_with_the_frame_decoder() {
        let mut decoder = crate::frame::FrameDecoder::new();
        let reply = replies()[3].clone();
        let mut events = Vec::new();
        for b in reply.to_frame(77) {
            decoder.push(b);
            while let Some(e) = decoder.next_event() {
                events.push(e);
            }
        }
        let [crate::frame::Event::Frame { kind, id, payload }] = &events[..] else {
            panic!("{events:?}")
        };
        assert_eq!(*id, 77);
        assert_eq!(Reply::decode(*kind, payload).unwrap(), reply);
    }
}

//! `warden edge status | provision | issue`: the host side of the edge sentry's serial protocol
//! (`docs/edge.md`), with the device crate's own codec ([`warden_edge::frame`],
//! [`warden_edge::message`]).
//!
//! The device is a UNIX socket (QEMU's `-serial unix:PATH,server=on`) or a serial character
//! device. Every request gets a fresh id and waits at most `--timeout` for the reply with that
//! id; whatever else the device sends meanwhile (its BOOT frame, replies to other ids, damaged
//! frames, garbage) is skipped and counted, so a confused or hostile device costs at most the
//! timeout and a frame's worth of memory, never a hang or a wrong answer taken for ours.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;
use warden_core::UnixTime;
use warden_core::bundle::{
    encode_certificates, key_matches, parse_certificates, read_certificates,
};
use warden_core::chain::verify_chain;
use warden_core::csr::parse_and_verify;
use warden_edge::frame::{self, Event, FrameDecoder, MAX_FRAME_LEN, MAX_PAYLOAD};
use warden_edge::message::{self, Reply, Request, State, Status};

use crate::go::duration::parse_go_duration;
use crate::native::NativeVerifier;
use crate::rotation::issuer::RotationError;
use crate::rotation::sign_csr::{IssuerRootArgs, read_csr_file};
use crate::util::OutputFormat;
use crate::util::files;

/// How to reach the device.
#[derive(Clone, Debug, Args)]
pub(crate) struct DeviceArgs {
    /// The device: a UNIX socket (QEMU `-serial unix:PATH,server=on`) or a serial character
    /// device, opened read+write. Set a serial line up beforehand, for example
    /// `stty -F /dev/ttyUSB0 115200 raw -echo clocal -crtscts`.
    #[arg(long, value_name = "PATH")]
    pub device: PathBuf,
    /// How long to wait for each reply (Go duration: 30s, 2m).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_timeout)]
    pub timeout: Duration,
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    match parse_go_duration(text) {
        Ok(d) if d.is_zero() => Err("the timeout must be above zero".to_owned()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    parse_go_duration(text).map_err(|e| e.to_string())
}

/// `warden edge status`
#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    device: DeviceArgs,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "text")]
    output: OutputFormat,
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

/// Why talking to the device failed; every message names the device.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum EdgeError {
    /// The device could not be opened, read or written.
    #[error("device {}: cannot {action}: {source}", device.display())]
    Io {
        /// The device path.
        device: PathBuf,
        /// What was being done.
        action: String,
        /// The OS error.
        source: io::Error,
    },
    /// No reply with the request's id came in time.
    #[error("device {}: {detail}", device.display())]
    Timeout {
        /// The device path.
        device: PathBuf,
        /// What was waited for and what came instead.
        detail: String,
    },
    /// The device closed the connection.
    #[error("device {}: the connection was closed while waiting for the reply to {request}", device.display())]
    Closed {
        /// The device path.
        device: PathBuf,
        /// The request's name.
        request: &'static str,
    },
    /// The device sent its BOOT frame after it had already answered on this connection.
    #[error("device {}: device reset (BOOT frame, boot count {boot_count}) while waiting for the reply to {request}; run the command again", device.display())]
    DeviceReset {
        /// The device path.
        device: PathBuf,
        /// The boot count in the BOOT frame.
        boot_count: u32,
        /// The request's name.
        request: &'static str,
    },
    /// The device answered ERROR.
    #[error("device {}: {request} refused with {code_name} ({code}): {message}", device.display())]
    Refused {
        /// The device path.
        device: PathBuf,
        /// The request's name.
        request: &'static str,
        /// The gRPC code number.
        code: u8,
        /// Its name.
        code_name: String,
        /// The device's message.
        message: String,
    },
    /// The device's reply is not what the protocol allows.
    #[error("device {}: {}", .0.display(), .1)]
    Protocol(PathBuf, String),
    /// Flags, files or the root.
    #[error(transparent)]
    Root(#[from] RotationError),
    /// Writing an output file failed.
    #[error(transparent)]
    Write(#[from] files::WriteError),
    /// Printing the report failed.
    #[error("cannot print the report: {0}")]
    Output(String),
}

/// A request's protocol name, for messages.
fn request_name(request: &Request<'_>) -> &'static str {
    match request {
        Request::Status { .. } => "STATUS",
        Request::IssuerCsr { .. } => "ISSUER_CSR",
        Request::InstallIssuer { .. } => "INSTALL_ISSUER",
        Request::Sign { .. } => "SIGN",
    }
}

/// Bytes from the device, read by a thread so that waiting can time out on any device.
type Chunk = io::Result<Vec<u8>>;

/// What the device sent that was not the awaited reply, for the message when none comes.
#[derive(Debug, Default)]
struct Skipped {
    garbage_bytes: usize,
    damaged_frames: usize,
    oversized_frames: usize,
    other_replies: usize,
    last_error: Option<String>,
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if self.garbage_bytes > 0 {
            parts.push(format!("{} bytes outside any frame", self.garbage_bytes));
        }
        if self.damaged_frames > 0 {
            parts.push(format!(
                "{} frames with a bad checksum",
                self.damaged_frames
            ));
        }
        if self.oversized_frames > 0 {
            parts.push(format!(
                "{} frame headers over the {MAX_PAYLOAD}-byte limit",
                self.oversized_frames
            ));
        }
        if self.other_replies > 0 {
            parts.push(format!(
                "{} frames for other request ids",
                self.other_replies
            ));
        }
        if let Some(e) = &self.last_error {
            parts.push(format!("an ERROR for another id: {e}"));
        }
        f.write_str(&parts.join(", "))
    }
}

impl Skipped {
    fn is_empty(&self) -> bool {
        self.garbage_bytes == 0
            && self.damaged_frames == 0
            && self.oversized_frames == 0
            && self.other_replies == 0
            && self.last_error.is_none()
    }
}

/// A connection to one device.
pub(crate) struct Link {
    device: PathBuf,
    writer: Box<dyn Write + Send>,
    incoming: Receiver<Chunk>,
    /// Received bytes not yet given to the decoder (the rest of a chunk after a reply).
    inbox: VecDeque<u8>,
    decoder: FrameDecoder,
    /// The last bytes given to the decoder, for [`Link::probe`].
    recent: VecDeque<u8>,
    next_id: u32,
    timeout: Duration,
    /// A reply came on this connection: a BOOT frame after that is a reset, not a start-up.
    answered: bool,
    /// The socket, shut down on drop so the reader thread stops.
    socket: Option<UnixStream>,
}

impl Drop for Link {
    fn drop(&mut self) {
        if let Some(socket) = &self.socket {
            let _ = socket.shutdown(std::net::Shutdown::Both);
        }
    }
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link")
            .field("device", &self.device)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Chunks in flight between the reader thread and the link: bounds the memory a device that
/// sends without pause can take.
const CHUNKS_IN_FLIGHT: usize = 8;
const CHUNK_LEN: usize = 4096;
/// A quiet line for this long with an unfinished frame held starts a [`Link::probe`].
const IDLE: Duration = Duration::from_millis(100);

fn spawn_reader(mut reader: Box<dyn Read + Send>, to: SyncSender<Chunk>) -> io::Result<()> {
    std::thread::Builder::new()
        .name("edge-device-reader".to_owned())
        .spawn(move || {
            let mut buf = vec![0u8; CHUNK_LEN];
            loop {
                let chunk = match reader.read(&mut buf) {
                    Ok(n) => Ok(buf.get(..n).unwrap_or_default().to_vec()),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => Err(e),
                };
                let last = !matches!(&chunk, Ok(bytes) if !bytes.is_empty());
                // The link is gone: nobody waits for more.
                if to.send(chunk).is_err() || last {
                    return;
                }
            }
        })
        .map(drop)
}

impl Link {
    /// Opens `args.device`: connects to a UNIX socket, or opens a serial character device.
    pub(crate) fn open(args: &DeviceArgs) -> Result<Self, EdgeError> {
        let device = &args.device;
        let io_err = |action: &str| {
            let device = device.clone();
            let action = action.to_owned();
            move |source| EdgeError::Io {
                device,
                action,
                source,
            }
        };
        let kind = std::fs::metadata(device)
            .map_err(io_err("open it"))?
            .file_type();
        let mut socket = None;
        let (reader, writer): (Box<dyn Read + Send>, Box<dyn Write + Send>) = if kind.is_socket() {
            let stream = UnixStream::connect(device).map_err(io_err("connect to the socket"))?;
            stream
                .set_write_timeout(Some(args.timeout))
                .map_err(io_err("set a write timeout"))?;
            let reader = stream.try_clone().map_err(io_err("clone the socket"))?;
            socket = Some(stream.try_clone().map_err(io_err("clone the socket"))?);
            (Box::new(reader), Box::new(stream))
        } else if kind.is_char_device() {
            // O_NOCTTY: a serial line must not become this process's controlling terminal.
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
                .open(device)
                .map_err(io_err("open the serial device"))?;
            let reader = file.try_clone().map_err(io_err("clone the file"))?;
            (Box::new(reader), Box::new(file))
        } else {
            return Err(EdgeError::Protocol(
                device.clone(),
                "not a UNIX socket or a serial character device".to_owned(),
            ));
        };
        let mut link = Self::from_parts(device.clone(), reader, writer, args.timeout)
            .map_err(io_err("start the reader"))?;
        link.socket = socket;
        Ok(link)
    }

    /// A link over any byte stream (`device` names it in messages).
    pub(crate) fn from_parts(
        device: PathBuf,
        reader: Box<dyn Read + Send>,
        writer: Box<dyn Write + Send>,
        timeout: Duration,
    ) -> io::Result<Self> {
        let (to, incoming) = sync_channel(CHUNKS_IN_FLIGHT);
        spawn_reader(reader, to)?;
        // A random first id: a late reply to an earlier run's request never matches ours.
        let mut id = [0u8; 4];
        getrandom::fill(&mut id).map_err(io::Error::other)?;
        Ok(Self {
            device,
            writer,
            incoming,
            inbox: VecDeque::new(),
            decoder: FrameDecoder::new(),
            recent: VecDeque::new(),
            next_id: u32::from_le_bytes(id),
            timeout,
            answered: false,
            socket: None,
        })
    }

    fn take_id(&mut self) -> u32 {
        // Id 0 is the device's own (BOOT, errors about garbage).
        if self.next_id == 0 {
            self.next_id = 1;
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        id
    }

    fn protocol(&self, text: impl Into<String>) -> EdgeError {
        EdgeError::Protocol(self.device.clone(), text.into())
    }

    /// Sends `request` and returns the device's reply to it; ERROR becomes
    /// [`EdgeError::Refused`].
    pub(crate) fn call(&mut self, request: &Request<'_>) -> Result<Reply, EdgeError> {
        let name = request_name(request);
        let (kind, payload) = request.encode();
        let id = self.take_id();
        let frame = frame::try_encode(kind, id, &payload)
            .map_err(|e| self.protocol(format!("cannot send {name}: {e}")))?;
        self.writer
            .write_all(&frame)
            .and_then(|()| self.writer.flush())
            .map_err(|source| EdgeError::Io {
                device: self.device.clone(),
                action: format!("send {name}"),
                source,
            })?;
        let deadline = Instant::now() + self.timeout;
        let mut skipped = Skipped::default();
        let mut booted = None;
        // Whether the bytes the decoder holds were already probed (see `probe`).
        let mut probed = false;
        loop {
            while let Some(byte) = self.inbox.pop_front() {
                probed = false;
                self.decoder.push(byte);
                self.recent.push_back(byte);
                if self.recent.len() > MAX_FRAME_LEN {
                    self.recent.pop_front();
                }
                while let Some(event) = self.decoder.next_event() {
                    if let Some(result) = self.on_event(event, id, name, &mut skipped, &mut booted)
                    {
                        return result;
                    }
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let wait = if probed || self.decoder.buffered() == 0 {
                left
            } else {
                left.min(IDLE)
            };
            let received = self.incoming.recv_timeout(wait);
            let ended = !matches!(&received, Ok(Ok(bytes)) if !bytes.is_empty());
            if ended && !probed && self.decoder.buffered() > 0 {
                probed = true;
                if let Some(result) = self.probe(id, name) {
                    return result;
                }
            }
            match received {
                Ok(Ok(bytes)) if bytes.is_empty() => {
                    return Err(EdgeError::Closed {
                        device: self.device.clone(),
                        request: name,
                    });
                }
                Ok(Ok(bytes)) => self.inbox.extend(bytes),
                Ok(Err(source)) => {
                    return Err(EdgeError::Io {
                        device: self.device.clone(),
                        action: format!("read the reply to {name}"),
                        source,
                    });
                }
                Err(RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
                Err(RecvTimeoutError::Timeout) => {
                    let mut detail = format!(
                        "no reply to {name} (id {id}) within {}",
                        humantime(self.timeout)
                    );
                    if let Some(boot_count) = booted {
                        detail.push_str(&format!(
                            "; the device started meanwhile (BOOT frame, boot count \
                             {boot_count}) and may have lost the request: run the command again"
                        ));
                    }
                    if !skipped.is_empty() {
                        detail.push_str(&format!("; skipped from the device: {skipped}"));
                    }
                    return Err(EdgeError::Timeout {
                        device: self.device.clone(),
                        detail,
                    });
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(EdgeError::Closed {
                        device: self.device.clone(),
                        request: name,
                    });
                }
            }
        }
    }

    /// Looks for the reply to `id` inside the bytes the decoder holds for an unfinished frame.
    ///
    /// Noise that ends in a sync (`WE`) makes the decoder read the next bytes as a header and
    /// wait for as many bytes as that bogus header announces (up to 8 KiB), and the reply that
    /// followed the noise stays inside that "frame" until more bytes come, which a device that
    /// has answered never sends. When the line goes quiet with bytes held, a second decoder
    /// scans them from one byte after the held sync. Only a complete frame with a good CRC and
    /// this request's id is taken from it, so a frame in progress cannot be mistaken for it.
    fn probe(&mut self, id: u32, name: &'static str) -> Option<Result<Reply, EdgeError>> {
        let held = self.decoder.buffered().min(self.recent.len());
        let start = self.recent.len() - held;
        let mut decoder = FrameDecoder::new();
        for &byte in self.recent.iter().skip(start + 1) {
            decoder.push(byte);
            while let Some(event) = decoder.next_event() {
                if let Event::Frame {
                    kind,
                    id: reply_id,
                    payload,
                } = event
                    && reply_id == id
                {
                    // What the decoder held was the bogus frame around this reply.
                    self.decoder = FrameDecoder::new();
                    self.recent.clear();
                    return Some(self.reply_for(kind, Reply::decode(kind, &payload), name));
                }
            }
        }
        None
    }

    /// Handles one decoder event while waiting for the reply to request `id`: `Some` ends the
    /// wait.
    fn on_event(
        &mut self,
        event: Event,
        id: u32,
        name: &'static str,
        skipped: &mut Skipped,
        booted: &mut Option<u32>,
    ) -> Option<Result<Reply, EdgeError>> {
        let (kind, reply_id, payload) = match event {
            Event::Frame { kind, id, payload } => (kind, id, payload),
            Event::Garbage { skipped: n } => {
                skipped.garbage_bytes = skipped.garbage_bytes.saturating_add(n);
                return None;
            }
            Event::Oversized { .. } => {
                skipped.oversized_frames += 1;
                return None;
            }
            Event::BadChecksum { .. } => {
                skipped.damaged_frames += 1;
                return None;
            }
        };
        let decoded = Reply::decode(kind, &payload);
        if let Ok(Reply::Boot { boot_count, .. }) = decoded {
            // Before any reply on this connection, a BOOT is the device starting up (QEMU
            // starts the board when the socket is connected) and the request may still be
            // answered; after one, the device was reset under us.
            if self.answered {
                return Some(Err(EdgeError::DeviceReset {
                    device: self.device.clone(),
                    boot_count,
                    request: name,
                }));
            }
            *booted = Some(boot_count);
            return None;
        }
        if reply_id != id {
            skipped.other_replies += 1;
            if let Ok(Reply::Error { code, message }) = decoded {
                skipped.last_error = Some(format!("code {code}: {}", truncate(&message)));
            }
            return None;
        }
        Some(self.reply_for(kind, decoded, name))
    }

    /// The reply frame to our request, as a result: ERROR becomes [`EdgeError::Refused`].
    fn reply_for(
        &mut self,
        kind: u8,
        decoded: Result<Reply, message::MessageError>,
        name: &'static str,
    ) -> Result<Reply, EdgeError> {
        self.answered = true;
        match decoded {
            Ok(Reply::Error { code, message }) => Err(EdgeError::Refused {
                device: self.device.clone(),
                request: name,
                code,
                code_name: format!("{:?}", tonic::Code::from(i32::from(code))),
                message,
            }),
            Ok(reply) => Ok(reply),
            Err(e) => Err(self.protocol(format!(
                "malformed reply to {name} (kind 0x{kind:02x}): {e}"
            ))),
        }
    }

    /// STATUS.
    pub(crate) fn status(&mut self, now: UnixTime) -> Result<Status, EdgeError> {
        match self.call(&Request::Status { now: now.as_secs() })? {
            Reply::StatusReply(status) => Ok(status),
            other => Err(self.unexpected("STATUS", &other)),
        }
    }

    /// ISSUER_CSR: the PEM CSR of the device's pending issuer key.
    pub(crate) fn issuer_csr(&mut self, now: UnixTime) -> Result<Vec<u8>, EdgeError> {
        match self.call(&Request::IssuerCsr { now: now.as_secs() })? {
            Reply::IssuerCsr { csr } => Ok(csr),
            other => Err(self.unexpected("ISSUER_CSR", &other)),
        }
    }

    fn unexpected(&self, request: &str, reply: &Reply) -> EdgeError {
        let (kind, _) = reply.encode();
        self.protocol(format!(
            "unexpected {} reply to {request}",
            message::kind::name(kind).unwrap_or("unknown")
        ))
    }
}

/// A device-supplied text cut to a length fit for one log line.
fn truncate(text: &str) -> String {
    const MAX: usize = 200;
    match text.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}...", text.get(..at).unwrap_or_default()),
        None => text.to_owned(),
    }
}

fn humantime(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

use crate::util::clock::now;

/// `STATUS_REPLY` for people and scripts.
#[derive(Debug, Serialize)]
struct StatusReport {
    device: String,
    state: &'static str,
    pending_key: bool,
    rotation_due: bool,
    issuer_not_before: u64,
    issuer_not_after: u64,
    boot_count: u32,
    issued: u32,
    heap_size: u32,
    heap_peak_last_sign: u32,
    stack_peak: u32,
    ticks_last_sign: u64,
    tick_hz: u32,
}

fn state_name(state: State) -> &'static str {
    match state {
        State::NeedsProvisioning => "needs-provisioning",
        State::Serving => "serving",
    }
}

impl StatusReport {
    fn new(device: &Path, s: &Status) -> Self {
        Self {
            device: device.display().to_string(),
            state: state_name(s.state),
            pending_key: s.pending_key,
            rotation_due: s.rotation_due,
            issuer_not_before: s.issuer_not_before,
            issuer_not_after: s.issuer_not_after,
            boot_count: s.boot_count,
            issued: s.issued,
            heap_size: s.heap_size,
            heap_peak_last_sign: s.heap_peak_last_sign,
            stack_peak: s.stack_peak,
            ticks_last_sign: s.ticks_last_sign,
            tick_hz: s.tick_hz,
        }
    }

    fn text(&self) -> String {
        let yes_no = |b: bool| if b { "yes" } else { "no" };
        let mut out = format!("device {}: {}\n", self.device, self.state);
        if self.issuer_not_after != 0 {
            out.push_str(&format!(
                "  issuer valid:      {} to {}\n",
                UnixTime::from_secs(self.issuer_not_before),
                UnixTime::from_secs(self.issuer_not_after)
            ));
        }
        out.push_str(&format!(
            "  rotation due:      {}\n  pending issuer key: {}\n  boot count:        {}\n  \
             issued since boot: {}\n  heap:              {} bytes, peak {} during the last SIGN\n  \
             stack peak:        {} bytes\n",
            yes_no(self.rotation_due),
            yes_no(self.pending_key),
            self.boot_count,
            self.issued,
            self.heap_size,
            self.heap_peak_last_sign,
            self.stack_peak
        ));
        if self.tick_hz > 0 && self.ticks_last_sign > 0 {
            let ms = self.ticks_last_sign as f64 * 1000.0 / f64::from(self.tick_hz);
            out.push_str(&format!(
                "  last SIGN:         {} ticks ({ms:.1} ms at {} Hz)\n",
                self.ticks_last_sign, self.tick_hz
            ));
        }
        out
    }
}

/// `warden edge status`.
pub(crate) fn run_status(args: StatusArgs) -> Result<(), EdgeError> {
    let mut link = Link::open(&args.device)?;
    let status = link.status(now())?;
    let report = StatusReport::new(&args.device.device, &status);
    match args.output {
        OutputFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(|e| EdgeError::Output(e.to_string()))?
        ),
        OutputFormat::Text => print!("{}", report.text()),
    }
    Ok(())
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
    use std::os::unix::net::UnixListener;
    use std::thread::JoinHandle;
    use warden_core::profile::DEFAULT_CLOCK_SKEW;
    use warden_edge::device::{Device, Platform};
    use warden_edge::store::Storage;

    /// The device end of a link: reads request frames, writes whatever the test scripts.
    struct FakeEnd {
        stream: UnixStream,
        decoder: FrameDecoder,
    }

    impl FakeEnd {
        /// The next request frame: (kind, id, payload).
        fn request(&mut self) -> (u8, u32, Vec<u8>) {
            let mut byte = [0u8; 1];
            loop {
                if self.stream.read(&mut byte).unwrap() == 0 {
                    panic!("the host closed the link");
                }
                self.decoder.push(byte[0]);
                if let Some(event) = self.decoder.next_event() {
                    match event {
                        Event::Frame { kind, id, payload } => {
                            Request::decode(kind, &payload).unwrap();
                            return (kind, id, payload);
                        }
                        other => panic!("the host sent {other:?}"),
                    }
                }
            }
        }

        fn send(&mut self, bytes: &[u8]) {
            self.stream.write_all(bytes).unwrap();
        }

        fn reply(&mut self, id: u32, reply: &Reply) {
            self.send(&reply.to_frame(id));
        }
    }

    /// A link whose device end runs `script` on a thread.
    fn link(
        timeout: Duration,
        script: impl FnOnce(&mut FakeEnd) + Send + 'static,
    ) -> (Link, JoinHandle<()>) {
        let (host, device) = UnixStream::pair().unwrap();
        let thread = std::thread::spawn(move || {
            let mut end = FakeEnd {
                stream: device,
                decoder: FrameDecoder::new(),
            };
            script(&mut end);
        });
        let reader = host.try_clone().unwrap();
        let link = Link::from_parts(
            PathBuf::from("/dev/fake-edge"),
            Box::new(reader),
            Box::new(host),
            timeout,
        )
        .unwrap();
        (link, thread)
    }

    fn status(boot_count: u32) -> Status {
        Status {
            state: State::Serving,
            pending_key: false,
            rotation_due: false,
            issuer_not_before: 1_000,
            issuer_not_after: 2_000,
            boot_count,
            issued: 7,
            heap_size: 65_536,
            heap_peak_last_sign: 20_000,
            stack_peak: 9_000,
            ticks_last_sign: 25_000_000,
            tick_hz: 25_000_000,
        }
    }

    const NOW: UnixTime = UnixTime::from_secs(1_500);

    #[test]
    fn a_status_round_trip() {
        let (mut link, device) = link(Duration::from_secs(10), |end| {
            let (kind, id, payload) = end.request();
            assert_eq!(kind, message::kind::STATUS);
            assert_eq!(
                Request::decode(kind, &payload).unwrap(),
                Request::Status { now: 1_500 }
            );
            end.reply(id, &Reply::StatusReply(status(3)));
        });
        assert_eq!(link.status(NOW).unwrap(), status(3));
        device.join().unwrap();
    }

    /// Everything a noisy or confused device may send before the reply, then the reply.
    fn noise_then_reply(end: &mut FakeEnd, id: u32) {
        end.send(b"\x00noise\xff");
        // A damaged copy of the real reply, then an oversized header.
        let mut damaged = Reply::StatusReply(status(99)).to_frame(id);
        *damaged.last_mut().unwrap() ^= 0xff;
        end.send(&damaged);
        end.send(&[0x57, 0x45, 0x81, 0, 0, 0, 0, 0xff, 0xff]);
        // A late reply to an earlier request and an error about someone's garbage.
        end.reply(id.wrapping_sub(1), &Reply::StatusReply(status(98)));
        end.reply(
            0,
            &Reply::Error {
                code: 3,
                message: "skipped 5 bytes".to_owned(),
            },
        );
        // Noise that ends in a sync and a header announcing 4000 bytes: the decoder waits for
        // them, with the reply inside.
        end.send(b"line noise WE\x81\x00\x00\x00\x00\xa0\x0f");
        end.reply(id, &Reply::StatusReply(status(4)));
    }

    #[test]
    fn garbage_damaged_frames_and_replies_to_other_ids_are_skipped() {
        // With the line kept open (the device waits for the next request), and closed.
        for keep_open in [true, false] {
            let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
            let (mut link, device) = link(Duration::from_secs(10), move |end| {
                let (_, id, _) = end.request();
                noise_then_reply(end, id);
                if keep_open {
                    let _ = done_rx.recv();
                }
            });
            let started = Instant::now();
            assert_eq!(link.status(NOW).unwrap(), status(4), "{keep_open}");
            assert!(started.elapsed() < Duration::from_secs(5));
            done_tx.send(()).ok();
            device.join().unwrap();
        }
    }

    #[test]
    fn an_error_frame_is_a_refusal_naming_device_code_and_message() {
        let (mut link, device) = link(Duration::from_secs(10), |end| {
            let (_, id, _) = end.request();
            end.reply(
                id,
                &Reply::Error {
                    code: 9,
                    message: "the device has no issuer".to_owned(),
                },
            );
        });
        let e = link.status(NOW).unwrap_err();
        assert!(matches!(e, EdgeError::Refused { code: 9, .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            "device /dev/fake-edge: STATUS refused with FailedPrecondition (9): the device has no issuer"
        );
        device.join().unwrap();
    }

    #[test]
    fn a_silent_device_times_out_with_what_it_sent_instead() {
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let (mut link, device) = link(Duration::from_millis(300), move |end| {
            let (_, id, _) = end.request();
            end.send(b"junk");
            end.reply(id ^ 0x8000_0000, &Reply::StatusReply(status(1)));
            // Keeps the line open and says nothing more.
            let _ = done_rx.recv();
        });
        let started = Instant::now();
        let e = link.status(NOW).unwrap_err();
        let waited = started.elapsed();
        assert!(matches!(e, EdgeError::Timeout { .. }), "{e:?}");
        let text = e.to_string();
        assert!(
            text.starts_with("device /dev/fake-edge: no reply to STATUS (id ")
                && text.contains("within 300ms")
                && text.contains("4 bytes outside any frame")
                && text.contains("1 frames for other request ids"),
            "{text}"
        );
        assert!(waited >= Duration::from_millis(300), "{waited:?}");
        assert!(waited < Duration::from_secs(5), "{waited:?}");
        done_tx.send(()).unwrap();
        device.join().unwrap();
    }

    #[test]
    fn a_boot_frame_before_the_first_reply_is_a_start_and_after_it_a_reset() {
        let (mut link, device) = link(Duration::from_secs(30), |end| {
            let boot = Reply::Boot {
                boot_count: 1,
                state: State::NeedsProvisioning,
            };
            // QEMU starts the board when the socket connects: BOOT, then the answer.
            let (_, id, _) = end.request();
            end.reply(0, &boot);
            end.reply(id, &Reply::StatusReply(status(1)));
            // Reset under the second request: BOOT and nothing else.
            let _ = end.request();
            end.reply(
                0,
                &Reply::Boot {
                    boot_count: 2,
                    state: State::Serving,
                },
            );
            let _ = end.request();
        });
        assert_eq!(link.status(NOW).unwrap(), status(1));
        let started = Instant::now();
        let e = link.status(NOW).unwrap_err();
        assert!(
            matches!(e, EdgeError::DeviceReset { boot_count: 2, .. }),
            "{e:?}"
        );
        assert!(e.to_string().contains("device reset"), "{e}");
        // At once, not after the 30 s timeout.
        assert!(started.elapsed() < Duration::from_secs(5));
        // The device end waits for a third request; the link still works.
        let _ = link.call(&Request::Status { now: 1 });
        device.join().unwrap();
    }

    #[test]
    fn a_boot_with_no_answer_says_the_request_may_be_lost() {
        let (mut link, device) = link(Duration::from_millis(200), |end| {
            let _ = end.request();
            end.reply(
                0,
                &Reply::Boot {
                    boot_count: 5,
                    state: State::Serving,
                },
            );
            std::thread::sleep(Duration::from_millis(400));
        });
        let text = link.status(NOW).unwrap_err().to_string();
        assert!(
            text.contains("BOOT frame, boot count 5") && text.contains("run the command again"),
            "{text}"
        );
        device.join().unwrap();
    }

    #[test]
    fn a_closed_line_malformed_and_unexpected_replies_are_errors() {
        let (mut link, device) = link(Duration::from_secs(10), |end| {
            let (_, id, _) = end.request();
            // STATUS_REPLY cut inside issuer_not_before.
            let (kind, payload) = Reply::StatusReply(status(1)).encode();
            end.send(&frame::encode(kind, id, &payload[..10]));
            let (_, id, _) = end.request();
            end.reply(
                id,
                &Reply::Installed {
                    issuer_not_after: 1,
                },
            );
            // Takes the third request and goes away.
            let _ = end.request();
        });
        let text = link.status(NOW).unwrap_err().to_string();
        assert!(
            text.contains("malformed reply to STATUS") && text.contains("field issuer_not_before"),
            "{text}"
        );
        let text = link.status(NOW).unwrap_err().to_string();
        assert_eq!(
            text,
            "device /dev/fake-edge: unexpected INSTALLED reply to STATUS"
        );
        let e = link.status(NOW).unwrap_err();
        assert!(matches!(e, EdgeError::Closed { .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            "device /dev/fake-edge: the connection was closed while waiting for the reply to STATUS"
        );
        device.join().unwrap();
        let e = link.status(NOW).unwrap_err().to_string();
        assert!(
            e.starts_with("device /dev/fake-edge: cannot send STATUS: "),
            "{e}"
        );
    }

    #[test]
    fn a_missing_or_wrong_kind_of_device_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let args = |device: PathBuf| DeviceArgs {
            device,
            timeout: Duration::from_secs(1),
        };
        let missing = dir.path().join("nothing");
        let e = Link::open(&args(missing.clone())).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("device {}: cannot open it", missing.display())),
            "{e}"
        );
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        let e = Link::open(&args(file)).unwrap_err().to_string();
        assert!(
            e.contains("not a UNIX socket or a serial character device"),
            "{e}"
        );
        // A socket nobody listens on any more.
        let stale = dir.path().join("stale.sock");
        drop(UnixListener::bind(&stale).unwrap());
        let e = Link::open(&args(stale)).unwrap_err().to_string();
        assert!(e.contains("cannot connect to the socket"), "{e}");
    }

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
            &mut rand_core::UnwrapErr(getrandom::SysRng),
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
        let mut rng = rand_core::UnwrapErr(getrandom::SysRng);
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

//! The link to the device: a UNIX socket or a serial character device, read by a thread so
//! that every wait can time out, and the frame exchange (one request, the reply with its id,
//! everything else skipped and counted).

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::time::{Duration, Instant};

use clap::Args;
use warden_core::UnixTime;
use warden_edge::frame::{self, Event, FrameDecoder, MAX_FRAME_LEN, MAX_PAYLOAD};
use warden_edge::message::{self, Reply, Request, Status};

use super::EdgeError;
use crate::go::duration::parse_go_duration;

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

    pub(super) fn protocol(&self, text: impl Into<String>) -> EdgeError {
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

    pub(super) fn unexpected(&self, request: &str, reply: &Reply) -> EdgeError {
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;
    use std::thread::JoinHandle;
    use warden_edge::message::State;

    /// The device end of a link: reads request frames, writes whatever the test scripts.
    pub(in crate::edge) struct FakeEnd {
        pub(in crate::edge) stream: UnixStream,
        pub(in crate::edge) decoder: FrameDecoder,
    }

    impl FakeEnd {
        /// The next request frame: (kind, id, payload).
        pub(in crate::edge) fn request(&mut self) -> (u8, u32, Vec<u8>) {
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

        pub(in crate::edge) fn send(&mut self, bytes: &[u8]) {
            self.stream.write_all(bytes).unwrap();
        }

        pub(in crate::edge) fn reply(&mut self, id: u32, reply: &Reply) {
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
}

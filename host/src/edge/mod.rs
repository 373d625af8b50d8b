//! `warden edge status | provision | issue`: the host side of the edge sentry's serial protocol
//! (`docs/edge.md`), with the device crate's own codec ([`warden_edge::frame`],
//! [`warden_edge::message`]).
//!
//! The device is a UNIX socket (QEMU's `-serial unix:PATH,server=on`) or a serial character
//! device. Every request gets a fresh id and waits at most `--timeout` for the reply with that
//! id; whatever else the device sends meanwhile (its BOOT frame, replies to other ids, damaged
//! frames, garbage) is skipped and counted, so a confused or hostile device costs at most the
//! timeout and a frame's worth of memory, never a hang or a wrong answer taken for ours.
//!
//! The layers: [`link`] is the transport and the frame exchange (open the device, send a
//! request, wait for its reply), [`provision`] the `provision` and `issue` logic on top of it,
//! [`report`] the `status` report; [`EdgeError`] here is what each of them returns.

mod link;
mod provision;
mod report;

use std::io;
use std::path::PathBuf;

use crate::rotation::issuer::RotationError;
use crate::util::files;

pub(crate) use provision::{IssueArgs, ProvisionArgs, run_issue, run_provision};
pub(crate) use report::{StatusArgs, run_status};

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

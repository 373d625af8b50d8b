//! `warden edge status`: the device's `STATUS_REPLY` as text or JSON.

use std::path::Path;

use clap::Args;
use serde::Serialize;
use warden_core::UnixTime;
use warden_edge::message::{State, Status};

use super::EdgeError;
use super::link::{DeviceArgs, Link};
use crate::util::OutputFormat;
use crate::util::clock::now;

/// `warden edge status`
#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    device: DeviceArgs,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "text")]
    output: OutputFormat,
}

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

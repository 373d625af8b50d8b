#!/usr/bin/env bash
# Measures what benches/README.md reports for the `warden` server: stripped release binary
# size, idle RSS, RSS under load, and end-to-end throughput/latency with warden-loadgen.
# Usage: scripts/measure-server.sh [requests] [connections]   (loopback only; ~1 min)
set -euo pipefail
cd "$(dirname "$0")/.."

requests=${1:-20000}
connections=${2:-64}
target_dir=${CARGO_TARGET_DIR:-target}

cargo build --release --locked -p warden-host -p warden-benches --bin warden --bin warden-loadgen
work=$(mktemp -d)
cleanup() {
    [[ -n "${pid:-}" ]] && kill "$pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

cp "$target_dir/release/warden" "$work/warden"
strip "$work/warden"
size_bytes=$(stat -c %s "$work/warden")

source scripts/lib/warden-server.sh
start_warden "$work/log" -- "$work/warden" --issuer-credentials "$work/creds" --log-level warn
rss() { awk '/^VmRSS/ {print $2}' "/proc/$pid/status"; }
hwm() { awk '/^VmHWM/ {print $2}' "/proc/$pid/status"; }
sleep 1
idle_kib=$(rss)

"$target_dir/release/warden-loadgen" --address "127.0.0.1:$port" --trust-anchors "$work/creds/ca.crt" \
    --connections "$connections" --requests "$requests" --key-type p256 | tee "$work/load"
loaded_peak_kib=$(hwm)
after_kib=$(rss)

printf '\nstripped binary: %s bytes (%.2f MiB)\n' "$size_bytes" "$(echo "$size_bytes/1048576" | bc -l)"
printf 'idle RSS: %s KiB (%.2f MiB)\n' "$idle_kib" "$(echo "$idle_kib/1024" | bc -l)"
printf 'peak RSS with %s connections: %s KiB (%.2f MiB); after the run: %s KiB\n' \
    "$connections" "$loaded_peak_kib" "$(echo "$loaded_peak_kib/1024" | bc -l)" "$after_kib"

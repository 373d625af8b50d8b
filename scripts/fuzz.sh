#!/usr/bin/env bash
# Runs Warden's cargo-fuzz targets, one after another, each for a fixed time.
#
#   scripts/fuzz.sh [seconds-per-target] [target...]
#
# Defaults: 600 seconds, every target (csr bundle config spiffe jwt). One libFuzzer process at a
# time, so it uses one core. Needs the `nightly` toolchain (rustup); installs cargo-fuzz
# (pinned) into ~/.cache/warden/tools when it is missing. Each target's corpus starts from the
# committed seeds (fuzz/seeds/<target>/) and the regression inputs (tests/data/fuzz/<target>/)
# and grows in fuzz/corpus/<target>/ (gitignored), so later runs pick up where earlier ones
# stopped. Crashes land in fuzz/artifacts/<target>/, the libFuzzer log in
# fuzz/artifacts/<target>/fuzz.log.
#
# Environment: FUZZ_SANITIZER (address | none; default address), FUZZ_ARGS (extra libFuzzer
# flags, e.g. "-max_len=8192").
#
# Exits non-zero when any target crashed (after running the others). See docs/fuzzing.md.
set -euo pipefail

cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.1
TOOLS="${HOME}/.cache/warden/tools"
ALL_TARGETS=(csr bundle certificate config spiffe jwt)

seconds="${1:-600}"
if [[ ! "$seconds" =~ ^[0-9]+$ ]] || ((seconds == 0)); then
    echo "usage: $0 [seconds-per-target] [target...]   (targets: ${ALL_TARGETS[*]})" >&2
    exit 2
fi
shift || true
targets=("$@")
if ((${#targets[@]} == 0)); then
    targets=("${ALL_TARGETS[@]}")
fi
for t in "${targets[@]}"; do
    if [[ ! -f "fuzz/fuzz_targets/$t.rs" ]]; then
        echo "unknown target '$t'; targets: ${ALL_TARGETS[*]}" >&2
        exit 2
    fi
done
sanitizer="${FUZZ_SANITIZER:-address}"

if ! rustup toolchain list | grep -q '^nightly'; then
    echo "cargo-fuzz needs the nightly toolchain (rustup toolchain list shows none)" >&2
    exit 1
fi
export PATH="${TOOLS}/bin:${PATH}"
if ! cargo-fuzz --version 2>/dev/null | grep -q " ${CARGO_FUZZ_VERSION}\$"; then
    cargo install --locked --root "$TOOLS" cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi
export RUSTUP_TOOLCHAIN=nightly

echo "building the fuzz targets (sanitizer: $sanitizer)"
(cd fuzz && cargo fuzz build -s "$sanitizer")
bin_dir="fuzz/target/$(rustc -vV | sed -n 's/^host: //p')/release"

failed=()
summary=()
for t in "${targets[@]}"; do
    corpus="fuzz/corpus/$t"
    artifacts="fuzz/artifacts/$t"
    mkdir -p "$corpus" "$artifacts"
    for seeds in "fuzz/seeds/$t" "tests/data/fuzz/$t"; do
        if [[ -d "$seeds" ]]; then
            find "$seeds" -maxdepth 1 -type f -exec cp -n {} "$corpus/" \;
        fi
    done
    log="$artifacts/fuzz.log"
    echo "==== $t: ${seconds}s, corpus $(find "$corpus" -type f | wc -l) files, log $log"
    status=0
    # The binary built above, not `cargo fuzz run`: that would rebuild whenever a source file
    # changed in the meantime, and the runs would no longer all test the same build.
    # shellcheck disable=SC2086 # FUZZ_ARGS is a list of flags
    ASAN_OPTIONS="detect_odr_violation=0" "$bin_dir/$t" "$corpus" \
        -artifact_prefix="$artifacts/" -max_total_time="$seconds" -print_final_stats=1 \
        ${FUZZ_ARGS:-} >"$log" 2>&1 || status=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -1)
    files=$(find "$corpus" -type f | wc -l)
    line="$t: status=$status execs=${execs:-?} exec/s=${rate:-?} corpus=$files files peak_rss=${rss:-?}MB"
    summary+=("$line")
    echo "$line"
    if ((status != 0)); then
        failed+=("$t")
        echo "---- $t failed; the end of its log:" >&2
        tail -n 40 "$log" >&2
        ls -1 "$artifacts" >&2
    fi
done

echo
echo "==== summary (${seconds}s per target, sanitizer $sanitizer)"
printf '%s\n' "${summary[@]}"
if ((${#failed[@]})); then
    echo "crashed: ${failed[*]} (inputs in fuzz/artifacts/<target>/)" >&2
    exit 1
fi

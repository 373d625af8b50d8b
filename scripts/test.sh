#!/usr/bin/env bash
# The one command that installs what the tests need (idempotently) and runs every check:
# fmt, clippy -D warnings, all tests (headless Chromium ones included), no_std builds, the wasm
# build and its in-browser tests, the edge firmware in QEMU with its budgets, bench compile, and
# the issue_demo example cross-checked with `openssl verify`. Runs from any directory. Honours CARGO_TARGET_DIR.
set -euo pipefail

cd "$(dirname "$0")/.."

# CI runs in a fresh clone each time, on a machine that is kept between runs: share one target
# dir outside the clone so unchanged dependencies are not rebuilt on every run.
if [[ "${CI:-}" == "true" && -z "${CARGO_TARGET_DIR:-}" ]]; then
    export CARGO_TARGET_DIR="${HOME}/.cache/warden/target"
fi

step() {
    printf '\n==== %s ====\n' "$*"
}

SECONDS=0

# --- 1. System tools: openssl CLI, python3 with cryptography.x509.verification ------------------
step "1/12 system tools (openssl, python3 cryptography, softhsm2, chromium, node, go, qemu-system-arm)"
need_apt=()
if ! command -v openssl >/dev/null 2>&1; then
    need_apt+=(openssl)
fi
if ! command -v python3 >/dev/null 2>&1; then
    need_apt+=(python3 python3-pip)
fi
# SoftHSM2: the PKCS#11 token the hsm tests (warden-hsm, warden-tests' server::hsm) run against.
if ! command -v softhsm2-util >/dev/null 2>&1 || [[ ! -e /usr/lib/softhsm/libsofthsm2.so ]]; then
    need_apt+=(softhsm2)
fi
# Headless Chromium: wasm-bindgen-test (through chromedriver) and the browser end-to-end tests
# (through playwright-core, which is told to use this binary rather than download its own).
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium-driver)
command -v npm >/dev/null 2>&1 || need_apt+=(nodejs npm)
# Go's crypto/x509 (daprd's verifier) checks chains in server::lifecycle: a stdlib-only program
# (tests/go/verify_chains) built by the test, with module downloads off.
command -v go >/dev/null 2>&1 || need_apt+=(golang-go)
# The edge sentry firmware runs in QEMU's mps2-an386 (Cortex-M4F) in edge_device.
command -v qemu-system-arm >/dev/null 2>&1 || need_apt+=(qemu-system-arm)
if ((${#need_apt[@]})); then
    if command -v apt-get >/dev/null 2>&1; then
        echo "installing with apt-get: ${need_apt[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
    else
        echo "missing ${need_apt[*]} and no apt-get to install them" >&2
        exit 1
    fi
fi
if ! python3 -c 'import cryptography.x509.verification' >/dev/null 2>&1; then
    # Debian's python3-cryptography is too old for x509.verification (needs 43+), so use pip.
    if ! python3 -m pip --version >/dev/null 2>&1; then
        python3 -m ensurepip --upgrade >/dev/null 2>&1 || true
    fi
    echo "installing python cryptography>=43 with pip"
    python3 -m pip install --quiet --disable-pip-version-check 'cryptography>=43' || true
    python3 -c 'import cryptography.x509.verification' || {
        echo "python3 cannot import cryptography.x509.verification (needs cryptography>=43)" >&2
        exit 1
    }
fi
openssl version
python3 -c 'import cryptography; print("python3 cryptography", cryptography.__version__)'
go version
qemu-system-arm --version | head -n 1

# --- 2. Rust targets and components ------------------------------------------------------------
step "2/12 rustup targets and components"
if command -v rustup >/dev/null 2>&1; then
    installed_targets=$(rustup target list --installed)
    missing_targets=()
    for target in thumbv7em-none-eabihf wasm32-unknown-unknown; do
        grep -qx "$target" <<<"$installed_targets" || missing_targets+=("$target")
    done
    if ((${#missing_targets[@]})); then
        rustup target add "${missing_targets[@]}"
    fi
    installed_components=$(rustup component list --installed)
    missing_components=()
    for component in rustfmt clippy; do
        grep -q "^${component}" <<<"$installed_components" || missing_components+=("$component")
    done
    if ((${#missing_components[@]})); then
        rustup component add "${missing_components[@]}"
    fi
else
    echo "rustup not found; using the toolchain on PATH as it is"
fi
cargo --version

# --- 3. Browser tooling: the npm packages the Chromium tests drive, wasm-bindgen CLI, wasm-opt ---
step "3/12 browser tooling (npm ci in tests/browser; wasm-bindgen CLI and wasm-opt on first use)"
# A clean clone has no node_modules; npm's own cache (~/.npm) makes this quick after the first run.
if [[ ! -d tests/browser/node_modules ]] ||
    [[ tests/browser/package-lock.json -nt tests/browser/node_modules/.package-lock.json ]]; then
    (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
fi
node --version
chromium --version

# --- 4-6. Format, lint, wasm build -------------------------------------------------------------
step "4/12 cargo fmt --all --check, shell syntax, host module graph has no cycle"
cargo fmt --all --check
# The scripts CI does not run (soak, budgets, fuzz, measure-server) must at least parse.
for script in scripts/*.sh scripts/lib/*.sh; do bash -n "$script"; done
# host's module graph is a one-way tree (docs/architecture.md): fail on any cycle.
python3 scripts/module-graph.py host/src --quiet
python3 scripts/module-graph.py host/src --depth 1 --quiet

step "5/12 cargo clippy -D warnings (workspace, and warden-wasm for wasm32)"
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo clippy -p warden-wasm --target wasm32-unknown-unknown --all-targets --locked -- -D warnings

step "6/12 warden-wasm build (wasm-bindgen --target web, wasm-opt, size budget)"
# Before the tests: browser_csr and browser_e2e load this package in Chromium.
scripts/wasm.sh build

step "7/12 edge firmware: clippy for thumbv7em-none-eabihf, build, flash and RAM budget"
# Before the tests: edge_device boots this image in QEMU.
# `fault-injection` implies `board`: one clippy run covers both images.
cargo clippy -p warden-edge-firmware --features fault-injection --target thumbv7em-none-eabihf --locked -- -D warnings
# The test-only image (panic and stack-overflow frames) first: both land at the same path.
scripts/edge.sh build-faults
scripts/edge.sh build
scripts/edge.sh footprint
WARDEN_EDGE_FIRMWARE=$(scripts/edge.sh elf)
WARDEN_EDGE_FAULT_FIRMWARE=$(scripts/edge.sh elf faults)
export WARDEN_EDGE_FIRMWARE WARDEN_EDGE_FAULT_FIRMWARE

# --- 7-8. Tests ------------------------------------------------------------------------------------
step "8/12 cargo test --workspace (headless Chromium, SoftHSM2, openssl, python included)"
rm -f "${CARGO_TARGET_DIR:-target}/tmp/edge-measurements.txt"
cargo test --workspace --locked
# What edge_device measured on the firmware (it fails over the heap + stack budget itself).
cat "${CARGO_TARGET_DIR:-target}/tmp/edge-measurements.txt"
echo

step "9/12 warden-wasm tests in headless Chromium (wasm-bindgen-test)"
scripts/wasm.sh test

# --- 6. no_std builds --------------------------------------------------------------------------
step "10/12 warden-core for thumbv7em-none-eabihf and wasm32-unknown-unknown"
cargo build -p warden-core --locked --target thumbv7em-none-eabihf
cargo build -p warden-core --locked --target wasm32-unknown-unknown

# --- 7. Benches compile ------------------------------------------------------------------------
step "11/12 benches build (test profile; numbers come from scripts/measure-server.sh and cargo bench)"
# The bench profile is optimised and would rebuild every dependency (aws-lc included) a second
# time; building the bench targets with the test profile checks they compile and link, reusing
# what `cargo test` just built.
cargo test --workspace --benches --no-run --locked

# --- 8. The example, cross-checked with openssl -----------------------------------------------
step "12/12 issue_demo example + openssl verify -x509_strict"
tmpdir=$(mktemp -d)
trap 'rm -rf "$tmpdir"' EXIT
# No `-p warden-core`: selecting one package changes feature unification and rebuilds its
# dependencies, while the whole-workspace selection reuses what `cargo test` just built.
cargo run --locked --example issue_demo -- "$tmpdir"
openssl verify -x509_strict -CAfile "$tmpdir/ca.crt" -untrusted "$tmpdir/issuer.crt" \
    "$tmpdir/workload.crt"

step "all checks passed in ${SECONDS}s"

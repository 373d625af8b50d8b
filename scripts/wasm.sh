#!/usr/bin/env bash
# Builds and tests warden-wasm, the browser bindings over warden-core.
#
#   scripts/wasm.sh build   release .wasm (profile wasm-release) → wasm-bindgen --target web →
#                           wasm/www/pkg/ (+ wasm-opt -Oz when available); reports the size,
#                           fails above issue 5's 250 KiB budget
#   scripts/wasm.sh test    the wasm-bindgen tests in wasm/tests/ in headless Chromium
#
# Tools are installed on first use (idempotent) under ~/.cache/warden/tools: the wasm-bindgen
# CLI at exactly the version Cargo.lock pins (the CLI refuses modules from another version) and
# wasm-opt from the npm `binaryen` package (Debian's binaryen is too old for current Rust
# output). Runs from any directory. Honours CARGO_TARGET_DIR.
set -euo pipefail

cd "$(dirname "$0")/.."

TARGET=wasm32-unknown-unknown
PROFILE=wasm-release
TOOLS="${HOME}/.cache/warden/tools"
OUT_DIR=wasm/www/pkg
# Issue 5's budget for the shipped .wasm is 250 KiB (256,000 bytes); the build fails above it, so
# the module cannot grow past it unnoticed (benches/README.md, "Browser (warden-wasm)", says
# where the bytes go).
BUDGET_WASM_BYTES=$((250 * 1024))
BINARYEN_VERSION=132.0.0
TARGET_DIR="${CARGO_TARGET_DIR:-target}"

export PATH="${TOOLS}/bin:${TOOLS}/npm/node_modules/.bin:${PATH}"

die() {
    echo "wasm.sh: $*" >&2
    exit 1
}

# The wasm-bindgen version in Cargo.lock: the CLI must match the crate exactly.
locked_wasm_bindgen_version() {
    awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock
}

ensure_wasm_bindgen_cli() {
    local want have=""
    want="$(locked_wasm_bindgen_version)"
    [[ -n "${want}" ]] || die "no wasm-bindgen in Cargo.lock"
    if command -v wasm-bindgen >/dev/null 2>&1; then
        have="$(wasm-bindgen --version | awk '{ print $2 }')"
    fi
    if [[ "${have}" != "${want}" ]] || ! command -v wasm-bindgen-test-runner >/dev/null 2>&1; then
        echo "installing wasm-bindgen-cli ${want} into ${TOOLS} (found: ${have:-none})"
        # Without --locked: the CLI's own lock file may name yanked crates (see issue 5).
        cargo install --quiet --root "${TOOLS}" wasm-bindgen-cli --version "=${want}"
    fi
    rustup target list --installed 2>/dev/null | grep -qx "${TARGET}" || rustup target add "${TARGET}"
}

# wasm-opt from npm binaryen, if it can be had; the build works (bigger) without it.
find_wasm_opt() {
    if ! command -v wasm-opt >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
        echo "installing wasm-opt (npm binaryen@${BINARYEN_VERSION}) into ${TOOLS}/npm" >&2
        mkdir -p "${TOOLS}/npm"
        npm install --silent --no-audit --no-fund --prefix "${TOOLS}/npm" "binaryen@${BINARYEN_VERSION}" >&2 ||
            echo "wasm.sh: npm install binaryen failed; continuing without wasm-opt" >&2
    fi
    command -v wasm-opt 2>/dev/null || true
}

build() {
    ensure_wasm_bindgen_cli
    # Without warden-wasm's `std` feature: no std panic machinery (a panic traps), Talc as
    # the allocator. sha2's compact software backend: rolled loops, about 16 KB smaller than
    # the unrolled default and fast enough for a CSR or a chain check (target-only rustflags,
    # so build scripts and the other profiles are untouched).
    CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="${CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS:-} --cfg sha2_backend_soft=\"compact\"" \
        cargo build --locked --target "${TARGET}" --profile "${PROFILE}" -p warden-wasm --no-default-features
    local wasm="${TARGET_DIR}/${TARGET}/${PROFILE}/warden_wasm.wasm"
    [[ -f "${wasm}" ]] || die "cargo did not produce ${wasm}"
    rm -rf "${OUT_DIR}"
    wasm-bindgen --target web --out-dir "${OUT_DIR}" "${wasm}"
    local out="${OUT_DIR}/warden_wasm_bg.wasm" wasm_opt optimised="no"
    wasm_opt="$(find_wasm_opt)"
    if [[ -n "${wasm_opt}" ]]; then
        # Rust emits bulk-memory and nontrapping-fptoint ops by default since 1.87.
        "${wasm_opt}" -Oz --converge --strip-debug --strip-producers \
            --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
            --enable-mutable-globals --enable-reference-types --enable-multivalue \
            -o "${out}.opt" "${out}"
        mv "${out}.opt" "${out}"
        optimised="yes ($("${wasm_opt}" --version))"
    fi
    local raw gz
    raw="$(stat -c %s "${out}")"
    gz="$(gzip -9 -c "${out}" | wc -c)"
    printf 'wasm: %s\n  raw  %d bytes (%d KiB)\n  gzip %d bytes (%d KiB)\n  wasm-opt: %s\n' \
        "${out}" "${raw}" $((raw / 1024)) "${gz}" $((gz / 1024)) "${optimised}"
    if ((raw > BUDGET_WASM_BYTES)); then
        die "${out} is ${raw} bytes, over issue 5's budget of ${BUDGET_WASM_BYTES} bytes (250 KiB) by $((raw - BUDGET_WASM_BYTES))"
    fi
    printf '  within issue 5'"'"'s budget of %d bytes (250 KiB): %d bytes to spare\n' \
        "${BUDGET_WASM_BYTES}" $((BUDGET_WASM_BYTES - raw))
}

run_tests() {
    ensure_wasm_bindgen_cli
    local chromedriver="${CHROMEDRIVER:-$(command -v chromedriver || true)}"
    [[ -x "${chromedriver}" ]] || die "chromedriver not found (apt-get install chromium chromium-driver)"
    command -v chromium >/dev/null 2>&1 || die "chromium not found (apt-get install chromium)"
    # The runner adds --headless --no-sandbox --disable-dev-shm-usage itself; webdriver.json
    # names Debian's binary and turns off background traffic.
    CHROMEDRIVER="${chromedriver}" \
        WASM_BINDGEN_TEST_WEBDRIVER_JSON="${PWD}/wasm/tests/webdriver.json" \
        CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
        cargo test --locked --target "${TARGET}" -p warden-wasm "$@"
}

case "${1:-}" in
build) build ;;
test) shift; run_tests "$@" ;;
*)
    echo "usage: $0 build|test [cargo test args]" >&2
    exit 2
    ;;
esac

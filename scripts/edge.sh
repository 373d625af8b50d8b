#!/usr/bin/env bash
# Builds, measures and runs the edge sentry firmware (edge/firmware) for QEMU's mps2-an386.
#
#   scripts/edge.sh build       the firmware ELF (profile `firmware`, thumbv7em-none-eabihf)
#   scripts/edge.sh build-faults
#                               the same with the test-only `fault-injection` feature, copied
#                               to the ELF's path + `-faults` (for edge_device)
#   scripts/edge.sh footprint   flash (text + rodata + vectors) and static RAM (data + bss) of
#                               the ELF; exits non-zero over issue 16's 256 KiB flash budget
#   scripts/edge.sh qemu SOCKET MONITOR SEEDFILE
#                               runs the firmware in QEMU (replacing this shell): UART0 on the
#                               UNIX socket SOCKET, the QEMU monitor on the UNIX socket MONITOR,
#                               the 32 bytes of SEEDFILE in the seed mailbox
#   scripts/edge.sh elf [faults]
#                               prints the ELF's (or the fault image's) absolute path
#
# `qemu` runs $WARDEN_EDGE_FIRMWARE when it is set, else the ELF `build` makes.
#
# Runs from any directory. Honours CARGO_TARGET_DIR.
set -euo pipefail

cd "$(dirname "$0")/.."

TARGET=thumbv7em-none-eabihf
PROFILE=firmware
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
ELF="${TARGET_DIR}/${TARGET}/${PROFILE}/warden-edge-firmware"
# Issue 16's budget for the firmware's flash (text + rodata): 256 KiB.
BUDGET_FLASH_BYTES=$((256 * 1024))
# docs/edge.md: QEMU's generic loader writes the seed here at every launch and every reset.
SEED_MAILBOX=0x20004000

die() {
    echo "edge.sh: $*" >&2
    exit 1
}

usage() {
    sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

build() {
    rustup target list --installed 2>/dev/null | grep -qx "${TARGET}" || rustup target add "${TARGET}"
    cargo build -p warden-edge-firmware --features "${1:-board}" --target "${TARGET}" --profile "${PROFILE}" --locked
}

# Both images come out at the same path (cargo caches each feature set): the fault image is
# copied aside, so build it before the real one.
build_faults() {
    build fault-injection
    cp "${ELF}" "${ELF}-faults"
}

readelf_tool() {
    if command -v readelf >/dev/null 2>&1; then
        echo readelf
    elif command -v llvm-readelf >/dev/null 2>&1; then
        echo llvm-readelf
    else
        die "needs readelf (binutils) or llvm-readelf"
    fi
}

footprint() {
    [[ -f "${ELF}" ]] || die "no firmware at ${ELF}: run 'scripts/edge.sh build' first"
    local tool
    tool="$(readelf_tool)"
    # Section headers: flash is every allocated section with contents (the vector table, .text,
    # .rodata, and the initial values of .data, which are stored in flash); static RAM is .data
    # and the NOBITS sections (.bss, .uninit). The heap and the stack are regions of their own
    # (edge/firmware/memory.x) and not counted here.
    "${tool}" -SW "${ELF}" | sed -n 's/^ *\[ *[0-9]*\] //p' | awk -v budget="${BUDGET_FLASH_BYTES}" '
        # mawk has no strtonum.
        function hex(s,    i, n) {
            n = 0
            for (i = 1; i <= length(s); i++) n = n * 16 + index("0123456789abcdef", substr(s, i, 1)) - 1
            return n
        }
        $3 ~ /^[0-9a-f]+$/ && $5 ~ /^[0-9a-f]+$/ {
            name = $1; type = $2; size = hex($5); flags = $7
            if (flags !~ /A/) next
            if (type == "PROGBITS") flash += size
            if (name == ".data" || type == "NOBITS") ram += size
            if (name == ".text") text = size
            if (name == ".rodata") rodata = size
        }
        END {
            printf "firmware flash: %d bytes (%.1f KiB; .text %d, .rodata %d), budget %d bytes (%d KiB)\n",
                flash, flash / 1024, text, rodata, budget, budget / 1024
            printf "firmware static RAM: %d bytes (.data + .bss)\n", ram
            if (flash == 0) { print "edge.sh: no sections read" > "/dev/stderr"; exit 1 }
            if (flash > budget) { print "edge.sh: flash over budget" > "/dev/stderr"; exit 1 }
        }'
}

qemu() {
    [[ $# -eq 3 ]] || usage
    local socket="$1" monitor="$2" seed="$3" image="${WARDEN_EDGE_FIRMWARE:-${ELF}}"
    [[ -f "${image}" ]] || die "no firmware at ${image}: run 'scripts/edge.sh build' first"
    [[ -f "${seed}" ]] || die "no seed file ${seed}"
    command -v qemu-system-arm >/dev/null 2>&1 || die "needs qemu-system-arm (Debian: apt-get install qemu-system-arm)"
    # -icount shift=0: QEMU's virtual clock advances 2^0 = 1 ns per guest instruction, so the
    # 25 MHz SysTick the firmware counts (tick_hz) moves one tick per 40 instructions, and
    # instructions = ticks * 1e9 / tick_hz whatever the host's speed. (While the core sleeps
    # in `wfi` the virtual clock follows real time; no measurement spans a sleep.)
    #
    # The monitor's socket comes first: QEMU creates the sockets in this order, and the UART's
    # (wait=on) holds QEMU's start until a client connects, so the first BOOT frame is not
    # written into an unconnected socket, where QEMU drops it. Later clients may come and go;
    # bytes sent while none is connected are dropped.
    #
    # The seed is a ROM blob of QEMU's generic loader: QEMU writes it again at every
    # system_reset (the firmware wipes the mailbox after reading it, to no effect there), while
    # the persistent slots at 0x2000_0000, in no ELF segment and no blob, keep their content.
    exec qemu-system-arm -M mps2-an386 -nodefaults -display none \
        -monitor "unix:${monitor},server=on,wait=off" \
        -serial "unix:${socket},server=on,wait=on" \
        -kernel "${image}" \
        -device "loader,file=${seed},addr=${SEED_MAILBOX}" \
        -icount shift=0
}

case "${1:-}" in
build) build ;;
build-faults) build_faults ;;
footprint) footprint ;;
qemu)
    shift
    qemu "$@"
    ;;
elf)
    case "${2:-}" in
    "") realpath -m "${ELF}" ;;
    faults) realpath -m "${ELF}-faults" ;;
    *) usage ;;
    esac
    ;;
*) usage ;;
esac

#!/usr/bin/env bash
# Soak test (issue 8): the release `warden` under saturating load for SECONDS (default 300) while
# the issuer is replaced every 10 s, alternating a valid replacement (a new issuer signed by the
# same root, made with `warden issuer rotate --root-key`) and a corrupt one (a truncated
# issuer.crt, or an issuer.key that does not match issuer.crt). Loopback only.
#
# Pass criteria, each checked and printed (exit 1 when any fails):
#   - warden-loadgen reports zero failed requests (every request counted: success or error);
#   - RSS is flat: the end RSS is at most the RSS after warm-up (10 s of load) plus
#     max(RSS_MARGIN_KIB, 20 %) (default margin 4096 KiB); start/middle/end are printed;
#   - no fd leak: /proc/PID/fd counted idle before the load and again after the load ended and
#     its connections closed; it may grow by at most FD_MARGIN (default 2);
#   - the server log shows exactly one "CA certificate key pair ready" per valid replacement and
#     one "Failed to reload issuer credentials" per corrupt one, and the server is still alive.
#
# Usage: scripts/soak.sh [seconds]
#   env: CONNECTIONS (64), KEY_TYPE (p256), RSS_MARGIN_KIB (4096), FD_MARGIN (2),
#        SOAK_KEEP=1 keeps the work directory (logs) for inspection.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-300}
connections=${CONNECTIONS:-64}
key_type=${KEY_TYPE:-p256}
rss_margin_kib=${RSS_MARGIN_KIB:-4096}
fd_margin=${FD_MARGIN:-2}
period=10
target_dir=${CARGO_TARGET_DIR:-target}

if [[ -z "${SOAK_NO_BUILD:-}" ]]; then
    cargo build --release --locked -p warden-host -p warden-benches --bin warden --bin warden-loadgen
fi
warden="$target_dir/release/warden"
loadgen="$target_dir/release/warden-loadgen"

work=$(mktemp -d)
cleanup() {
    [[ -n "${rotator:-}" ]] && kill "$rotator" 2>/dev/null || true
    [[ -n "${pid:-}" ]] && kill "$pid" 2>/dev/null || true
    if [[ -n "${SOAK_KEEP:-}" ]]; then echo "work directory kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

# A root whose key we keep (so valid issuers can be made), and a second, unrelated set whose
# issuer.key serves as the mismatching key.
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/root.key" 2>/dev/null
"$warden" mtls renew-certificate --issuer-credentials "$work/creds" --private-key "$work/root.key" \
    >"$work/setup.log" 2>&1
"$warden" mtls renew-certificate --issuer-credentials "$work/other" \
    --private-key <(openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 2>/dev/null) \
    >>"$work/setup.log" 2>&1
mkdir -m 700 "$work/staging"
cp -p "$work/creds/"{ca.crt,issuer.crt,issuer.key} "$work/staging/"

source scripts/lib/warden-server.sh
start_warden "$work/log" -- "$warden" --issuer-credentials "$work/creds" --log-as-json
rss() { awk '/^VmRSS/ {print $2}' "/proc/$pid/status"; }
fds() { find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 | wc -l; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
count() { grep -c "$1" "$work/log" || true; }
sleep 1
fds_idle=$(fds)
rss_idle=$(rss)
ready_before=$(count 'CA certificate key pair ready')
refused_before=$(count 'Failed to reload issuer credentials')

# Replaces files the way operators and Kubernetes volume updates do: write beside, rename over.
put() { cp "$1" "$work/creds/.$2.soak" && mv "$work/creds/.$2.soak" "$work/creds/$2"; }
rotate() {
    local n=0 valid=0 corrupt=0
    while true; do
        for _ in $(seq $((period * 10))); do
            [[ -e "$work/stop" ]] && return 0
            sleep 0.1
        done
        n=$((n + 1))
        if ((n % 2 == 1)); then
            "$warden" issuer rotate --issuer-credentials "$work/staging" --root-key "$work/root.key" \
                >>"$work/rotate.log" 2>&1
            put "$work/staging/issuer.key" issuer.key
            put "$work/staging/issuer.crt" issuer.crt
            valid=$((valid + 1))
        elif ((n % 4 == 2)); then
            head -c 300 "$work/staging/issuer.crt" >"$work/truncated.crt"
            put "$work/truncated.crt" issuer.crt
            corrupt=$((corrupt + 1))
        else
            put "$work/other/issuer.key" issuer.key
            corrupt=$((corrupt + 1))
        fi
        echo "$valid $corrupt" >"$work/replacements"
    done
}

echo "soak: ${seconds}s, $connections connections, $key_type CSRs, issuer replaced every ${period}s"
echo "idle: RSS ${rss_idle} KiB, ${fds_idle} fds"
cpu_start=$(cpu_ticks)
/usr/bin/time -f '%U %S' -o "$work/loadgen.time" "$loadgen" --address "127.0.0.1:$port" \
    --trust-anchors "$work/creds/ca.crt" --connections "$connections" --duration "$seconds" \
    --key-type "$key_type" --json >"$work/load.json" 2>"$work/load.err" &
load=$!
echo "0 0" >"$work/replacements"
rotate &
rotator=$!

sleep "$period"
rss_start=$(rss)
samples=("$rss_start")
elapsed=$period
while ((elapsed + period < seconds)); do
    sleep "$period"
    elapsed=$((elapsed + period))
    samples+=("$(rss)")
done
rss_middle=${samples[$((${#samples[@]} / 2))]}
rss_end=$(rss)
load_status=0
wait "$load" || load_status=$?
touch "$work/stop"
wait "$rotator" || true
rotator=
cpu_end=$(cpu_ticks)
# Let the closed connections and a pending reload settle (debounce is 2 s).
sleep 4
fds_after=$(fds)
rss_after=$(rss)
read -r valid corrupt <"$work/replacements"
ready=$(($(count 'CA certificate key pair ready') - ready_before))
refused=$(($(count 'Failed to reload issuer credentials') - refused_before))

cat "$work/load.err" >&2 || true
requests=$(jq .requests "$work/load.json")
errors=$(jq .errors "$work/load.json")
rps=$(jq .requests_per_second "$work/load.json")
read -r lg_user lg_sys <"$work/loadgen.time"
server_cpu_s=$(echo "($cpu_end - $cpu_start) / 100" | bc -l)
loadgen_cpu_s=$(echo "$lg_user + $lg_sys" | bc -l)

echo "load: $requests requests, $errors errors, $rps requests/s; latency ms: $(jq -c .latency_ms "$work/load.json")"
printf 'CPU: server %.1f s (%.0f us/request), loadgen %.1f s, over %s s wall on %s cores\n' \
    "$server_cpu_s" "$(echo "$server_cpu_s * 1000000 / ($requests + 1)" | bc -l)" "$loadgen_cpu_s" \
    "$seconds" "$(nproc)"
echo "RSS KiB: idle $rss_idle, start $rss_start, middle $rss_middle, end $rss_end, after $rss_after"
echo "RSS samples every ${period}s: ${samples[*]}"
echo "fds: idle $fds_idle, after the load $fds_after"
echo "replacements: $valid valid, $corrupt corrupt; log: $ready accepted, $refused refused"

fail=0
check() {
    if [[ "$1" == 1 ]]; then echo "PASS  $2"; else echo "FAIL  $2"; fail=1; fi
}
allowed_rss=$((rss_start + (rss_margin_kib > rss_start / 5 ? rss_margin_kib : rss_start / 5)))
check "$([[ $load_status == 0 && $errors == 0 && $requests -gt 0 ]] && echo 1)" \
    "zero failed requests ($errors of $requests; loadgen exit $load_status)"
check "$((rss_end <= allowed_rss))" "RSS flat: end $rss_end KiB <= start $rss_start + margin = $allowed_rss KiB"
check "$((fds_after <= fds_idle + fd_margin))" "no fd leak: $fds_after <= idle $fds_idle + $fd_margin"
check "$([[ $ready == "$valid" && $refused == "$corrupt" && $valid -gt 0 && $corrupt -gt 0 ]] && echo 1)" \
    "reloads: $ready accepted / $valid valid, $refused refused / $corrupt corrupt"
check "$(kill -0 "$pid" 2>/dev/null && curl -fs "http://127.0.0.1:$healthz/healthz" >/dev/null && echo 1)" \
    "server alive and healthy at the end"
exit "$fail"

# Sourced by the measurement scripts (measure-server.sh, budgets.sh, soak.sh): one way to start
# a `warden` on free loopback ports and wait until it is healthy.
#
#   start_warden LOG [PREFIX...] -- WARDEN_BINARY ARGS...
#
# sets `port`, `healthz`, `metrics` and `pid`; PREFIX (e.g. `nice -n -20`) runs the binary.
# Returns non-zero when /healthz does not answer within 10 s.

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

start_warden() {
    local log=$1
    shift
    local prefix=()
    while [[ $# -gt 0 && "$1" != "--" ]]; do
        prefix+=("$1")
        shift
    done
    shift
    local binary=$1
    shift
    port=$(free_port)
    healthz=$(free_port)
    metrics=$(free_port)
    "${prefix[@]}" "$binary" --listen-address 127.0.0.1 --port "$port" \
        --healthz-listen-address 127.0.0.1 --healthz-port "$healthz" \
        --metrics-listen-address 127.0.0.1 --metrics-port "$metrics" "$@" >"$log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do
        curl -fs "http://127.0.0.1:$healthz/healthz" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    curl -fs "http://127.0.0.1:$healthz/healthz" >/dev/null
}

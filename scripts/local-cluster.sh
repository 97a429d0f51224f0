#!/usr/bin/env bash
# Local brokers on 127.0.0.1 for development and tests.
#
#   scripts/local-cluster.sh start [N]   start N brokers (default 1) on ports 19092, 19093, …
#   scripts/local-cluster.sh status      show them
#   scripts/local-cluster.sh stop        SIGTERM them (clean shutdown) and wait
#
# Data and logs live under $RILL_CLUSTER_DIR (default: a directory under /tmp
# remembered in /tmp/rill-local-cluster). Until replication exists the brokers
# are independent single-node clusters with distinct node ids.
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
state=/tmp/rill-local-cluster
bin="${RILL_BIN:-$here/target/release/rill}"
base_port="${RILL_BASE_PORT:-19092}"

cluster_dir() {
    if [ -n "${RILL_CLUSTER_DIR:-}" ]; then echo "$RILL_CLUSTER_DIR"; elif [ -f "$state" ]; then cat "$state"; fi
}

start() {
    local n="${1:-1}"
    if [ ! -x "$bin" ]; then
        echo "building $bin" >&2
        (cd "$here" && cargo build --release --bin rill)
    fi
    local dir
    dir="$(cluster_dir)"
    if [ -z "$dir" ]; then dir="$(mktemp -d /tmp/rill-cluster.XXXXXX)"; fi
    echo "$dir" > "$state"
    for i in $(seq 0 $((n - 1))); do
        local port=$((base_port + i)) node="$dir/node$i"
        mkdir -p "$node"
        if [ -f "$node/pid" ] && kill -0 "$(cat "$node/pid")" 2>/dev/null; then
            echo "node $i already running (pid $(cat "$node/pid"))"
            continue
        fi
        "$bin" broker --node-id "$i" --data-dir "$node/data" --listen "127.0.0.1:$port" \
            --admin-listen "127.0.0.1:$((9644 + i))" \
            >"$node/stdout.log" 2>"$node/broker.log" &
        echo $! > "$node/pid"
        for _ in $(seq 1 100); do
            grep -q "listening on" "$node/stdout.log" 2>/dev/null && break
            sleep 0.1
        done
        grep -q "listening on" "$node/stdout.log" || { echo "node $i did not start; see $node/broker.log" >&2; exit 1; }
        echo "node $i: 127.0.0.1:$port (pid $(cat "$node/pid"), data $node/data)"
    done
}

status() {
    local dir
    dir="$(cluster_dir)"
    [ -n "$dir" ] && [ -d "$dir" ] || { echo "no local cluster"; return 0; }
    for node in "$dir"/node*; do
        [ -f "$node/pid" ] || continue
        local pid
        pid="$(cat "$node/pid")"
        if kill -0 "$pid" 2>/dev/null; then
            echo "$(basename "$node"): running (pid $pid) $(head -1 "$node/stdout.log")"
        else
            echo "$(basename "$node"): stopped"
        fi
    done
}

stop() {
    local dir
    dir="$(cluster_dir)"
    [ -n "$dir" ] && [ -d "$dir" ] || { echo "no local cluster"; return 0; }
    for node in "$dir"/node*; do
        [ -f "$node/pid" ] || continue
        local pid
        pid="$(cat "$node/pid")"
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid"
            for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            if kill -0 "$pid" 2>/dev/null; then echo "$(basename "$node"): did not stop in 30 s" >&2; else echo "$(basename "$node"): stopped"; fi
        fi
        rm -f "$node/pid"
    done
}

case "${1:-}" in
    start) start "${2:-1}" ;;
    status) status ;;
    stop) stop ;;
    *) echo "usage: $0 start [N] | status | stop" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# Instructions per request of regie and of the bare handler, by crate, under callgrind.
#
#   loadtest/instructions.sh [PATH]     # PATH: /v1/slots/Publicit%C3%A9%202/ad unless given
#   loadtest/instructions.sh impression # the impression beacon of one decision, against a bare GIF
#   INSTRUCTIONS_INVENTORY=doc.json loadtest/instructions.sh /v1/slots/une-2/ad
#   INSTRUCTIONS_INVENTORY=loadtest/inventory-capped.json INSTRUCTIONS_UID=1 loadtest/instructions.sh
#
# INSTRUCTIONS_INVENTORY puts that inventory through the admin API before the warm-up (under
# valgrind a 100 000-campaign document takes a minute or two to parse and compile).
# INSTRUCTIONS_UID=1 gives each request a random `uid` (loadtest/random_uid.lua): a new viewer
# per request, so every frequency-capped decision makes its round trip to Redis.
#
# Time on a shared virtual machine moves by a quarter within minutes; instruction counts do
# not. Each server runs under `valgrind --tool=callgrind` with one worker, gets a warm-up of
# wrk requests, then the counters are zeroed, 10 s of wrk requests (4 connections, a browser's
# user agent) are counted, and the instructions are summed per function and grouped by crate
# (loadtest/callgrind_by_crate.py). regie runs as scripts/loadtest.sh runs it: production
# settings, a redis-server of its own. Uses the release binaries of target/release (build them
# with `cargo build --release --bin regie --example bare`); installs valgrind and wrk (Debian
# packages) when missing.
#
# What callgrind cannot show: time in the kernel (system calls, scheduling) and the cost of
# cache lines shared between cores. Under valgrind, sha2 uses its portable code rather than the
# CPU's SHA instructions, so its share is overstated; the table gives the totals without it.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly ROOT
PATH_=${1:-/v1/slots/Publicit%C3%A9%202/ad}
readonly UA="Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"
readonly REGIE_BIN=${INSTRUCTIONS_REGIE_BIN:-$ROOT/target/release/regie}
readonly BARE_BIN=${INSTRUCTIONS_BARE_BIN:-$ROOT/target/release/examples/bare}
readonly INVENTORY=${INSTRUCTIONS_INVENTORY:-}
if [[ ${INSTRUCTIONS_UID:-0} == 1 ]]; then
    readonly WRK_REQUEST=(-s "$ROOT/loadtest/random_uid.lua")
    readonly WRK_ARGS=(-- "$PATH_" uid)
else
    readonly WRK_REQUEST=()
    readonly WRK_ARGS=()
fi
readonly ADMIN_TOKEN=instructions-admin-token-0123456789abcdef
OUT=$(mktemp -d)
readonly OUT
PIDS=()

cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

missing=()
command -v valgrind >/dev/null || missing+=(valgrind)
command -v wrk >/dev/null || missing+=(wrk)
command -v redis-server >/dev/null || missing+=(redis-server)
if ((${#missing[@]})); then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
[[ -x $REGIE_BIN && -x $BARE_BIN ]] ||
    { echo "build first: cargo build --release --bin regie --example bare" >&2; exit 1; }

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

wait_up() {
    for _ in $(seq 120); do
        curl --silent --output /dev/null --max-time 2 "$1" && return 0
        sleep 1
    done
    echo "nothing answers at $1" >&2
    exit 1
}

# profile NAME PORT: warm up, zero the counters, count 10 s of requests, dump.
profile() {
    local name=$1 port=$2 pid=${PIDS[-1]}
    wrk -t1 -c4 -d3s -H "User-Agent: $UA" "${WRK_REQUEST[@]}" "http://127.0.0.1:$port$PATH_" \
        "${WRK_ARGS[@]}" >/dev/null
    callgrind_control --zero "$pid" >/dev/null 2>&1
    wrk -t1 -c4 -d10s -H "User-Agent: $UA" "${WRK_REQUEST[@]}" "http://127.0.0.1:$port$PATH_" \
        "${WRK_ARGS[@]}" >"$OUT/$name.wrk"
    callgrind_control --dump "$pid" >/dev/null 2>&1
    sleep 1
    kill "$pid"
    wait "$pid" 2>/dev/null || true
}

redis_port=$(free_port)
redis-server --port "$redis_port" --save '' --appendonly no --dir "$OUT" >"$OUT/redis.log" 2>&1 &
PIDS+=($!)

regie_port=$(free_port)
(
    cd "$ROOT"
    export REGIE_REDIS_URL="redis://127.0.0.1:$redis_port/0" REGIE_LISTEN="127.0.0.1:$regie_port"
    export REGIE_PUBLIC_URL="http://127.0.0.1:$regie_port" REGIE_WORKERS=1
    export REGIE_ADMIN_TOKEN=$ADMIN_TOKEN
    export REGIE_ENVIRONMENT=production REGIE_DRAIN_DELAY_MS=0
    export REGIE_DECISIONS_PER_SECOND=1000000000 REGIE_IVT_IMPRESSIONS_PER_MINUTE=4000000000
    exec valgrind --tool=callgrind --callgrind-out-file="$OUT/regie.cg" "$REGIE_BIN"
) >"$OUT/regie.log" 2>&1 &
PIDS+=($!)
wait_up "http://127.0.0.1:$regie_port/readyz"
if [[ -n $INVENTORY ]]; then
    curl --silent --show-error --fail --max-time 900 -X PUT -H "Authorization: Bearer $ADMIN_TOKEN" \
        -H 'Content-Type: application/json' --data-binary "@$INVENTORY" --output /dev/null \
        "http://127.0.0.1:$regie_port/v1/admin/inventory"
fi
content_type=application/json
if [[ $PATH_ == impression ]]; then
    # One token, counted once and then de-duplicated, as scripts/loadtest.sh measures it.
    PATH_=$(curl --silent -A "$UA" "http://127.0.0.1:$regie_port/v1/slots/Publicit%C3%A9%202/ad" |
        python3 -c 'import json, sys, urllib.parse; print(urllib.parse.urlsplit(json.load(sys.stdin)["impression_url"]).path)')
    content_type=image/gif
fi
readonly PATH_
# The bare handler answers as many bytes as regie does.
body_bytes=$(curl --silent -A "$UA" "http://127.0.0.1:$regie_port$PATH_" | wc -c)
profile regie "$regie_port"

bare_port=$(free_port)
valgrind --tool=callgrind --callgrind-out-file="$OUT/bare.cg" "$BARE_BIN" \
    --listen "127.0.0.1:$bare_port" --body-bytes "$body_bytes" --content-type "$content_type" --workers 1 \
    >"$OUT/bare.log" 2>&1 &
PIDS+=($!)
wait_up "http://127.0.0.1:$bare_port/"
profile bare "$bare_port"

requests() { awk '/requests in/{print $1}' "$OUT/$1.wrk"; }
python3 "$ROOT/loadtest/callgrind_by_crate.py" \
    "$(ls "$OUT"/regie.cg.* | head -1)" "$(requests regie)" \
    "$(ls "$OUT"/bare.cg.* | head -1)" "$(requests bare)"
echo "raw outputs: $OUT"

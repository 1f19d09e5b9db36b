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
# INSTRUCTIONS_VALGRIND_ARGS adds options to both valgrind runs: `--cache-sim=yes` counts
# cache misses too (read them with `callgrind_annotate --show=Ir,DLmr,DLmw`).
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
readonly REGIE_BIN=${INSTRUCTIONS_REGIE_BIN:-$ROOT/target/release/regie}
readonly BARE_BIN=${INSTRUCTIONS_BARE_BIN:-$ROOT/target/release/examples/bare}
readonly INVENTORY=${INSTRUCTIONS_INVENTORY:-}
read -ra VALGRIND_ARGS <<<"${INSTRUCTIONS_VALGRIND_ARGS:-}"
readonly VALGRIND_ARGS
if [[ ${INSTRUCTIONS_UID:-0} == 1 ]]; then
    readonly WRK_REQUEST=(-s "$ROOT/loadtest/random_uid.lua")
    readonly WRK_ARGS=(-- "$PATH_" uid)
else
    readonly WRK_REQUEST=()
    readonly WRK_ARGS=()
fi
readonly ADMIN_TOKEN=instructions-admin-token-0123456789abcdef
# shellcheck source=loadtest/common.sh
source "$ROOT/loadtest/common.sh"

install_missing valgrind wrk redis-server
[[ -x $REGIE_BIN && -x $BARE_BIN ]] ||
    { echo "build first: cargo build --release --bin regie --example bare" >&2; exit 1; }

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

start_redis
regie_port=$(free_port)
(
    cd "$ROOT"
    regie_env "$regie_port" 1 "$ADMIN_TOKEN"
    exec valgrind --tool=callgrind "${VALGRIND_ARGS[@]}" --callgrind-out-file="$OUT/regie.cg" "$REGIE_BIN"
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
    PATH_=$(impression_path "$regie_port")
    content_type=image/gif
fi
readonly PATH_
# The bare handler answers as many bytes as regie does.
body_bytes=$(curl --silent -A "$UA" "http://127.0.0.1:$regie_port$PATH_" | wc -c)
profile regie "$regie_port"

bare_port=$(free_port)
valgrind --tool=callgrind "${VALGRIND_ARGS[@]}" --callgrind-out-file="$OUT/bare.cg" "$BARE_BIN" \
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

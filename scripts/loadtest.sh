#!/usr/bin/env bash
# Load test: regie against a bare actix-web handler, on this machine, with wrk.
#
#   scripts/loadtest.sh
#
# What it does, everything on 127.0.0.1 and bounded in time:
#   1. installs wrk (Debian package) and redis-server if missing;
#   2. builds regie and the bare handler (examples/bare.rs) in release;
#   3. starts its own redis-server on a free port (no persistence, a temporary --dir) and
#      regie against it, and waits for /readyz;
#   4. measures, with `wrk -t$THREADS -c$CONNECTIONS -d$DURATION` each:
#        - GET /v1/slots/Publicit%C3%A9%202/ad   against the bare handler answering a JSON
#          body of the same byte length as one regie decision;
#        - GET /v1/i/{token} (impression beacon) against the bare handler answering 43 bytes;
#   5. prints requests/s of each and the ratio regie / bare in a table.
# Everything it started is stopped on exit (trap). Raw outputs go to artifacts/loadtest/.
#
# Environment: LOADTEST_DURATION (10s), LOADTEST_THREADS (2), LOADTEST_CONNECTIONS (32),
# LOADTEST_WORKERS (2: actix workers of both servers), LOADTEST_SKIP_BUILD=1 (reuse the
# binaries in target/release), RUST_LOG (warn).
#
# Adding a measurement: write a `measure_…` function that calls `add_row`, and call it from
# `main`.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly ROOT
readonly DURATION=${LOADTEST_DURATION:-10s}
readonly THREADS=${LOADTEST_THREADS:-2}
readonly CONNECTIONS=${LOADTEST_CONNECTIONS:-32}
readonly WORKERS=${LOADTEST_WORKERS:-2}
readonly SLOT_PATH='/v1/slots/Publicit%C3%A9%202/ad'
readonly ADMIN_TOKEN="loadtest-$RANDOM$RANDOM"
readonly REGIE_BIN="$ROOT/target/release/regie"
readonly BARE_BIN="$ROOT/target/release/examples/bare"
readonly READY_TIMEOUT_SECS=60

OUT="$ROOT/artifacts/loadtest/$(date -u +%Y%m%dT%H%M%SZ)"
readonly OUT
WORK=$(mktemp -d "${TMPDIR:-/tmp}/regie-loadtest.XXXXXX")
readonly WORK

# Loopback only: no proxy may carry a request elsewhere.
export NO_PROXY="127.0.0.1,localhost,::1" no_proxy="127.0.0.1,localhost,::1"
unset HTTP_PROXY HTTPS_PROXY ALL_PROXY http_proxy https_proxy all_proxy

# ------------------------------------------------------------------ process bookkeeping

STARTED_PIDS=()

# Stops what this script started, newest first: TERM, then KILL after 5 s.
cleanup() {
    local status=$? pid i
    trap - EXIT INT TERM
    for ((i = ${#STARTED_PIDS[@]} - 1; i >= 0; i--)); do
        pid=${STARTED_PIDS[i]}
        kill -TERM "$pid" 2>/dev/null || continue
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log() { printf '[loadtest] %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# Runs a command in the background, logging to $OUT/NAME.log, and records its pid.
# The pid is left in $LAST_PID.
spawn() {
    local name=$1
    shift
    "$@" >"$OUT/$name.log" 2>&1 &
    LAST_PID=$!
    STARTED_PIDS+=("$LAST_PID")
}

# ------------------------------------------------------------------------------ helpers

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Waits until URL answers 2xx, while PID lives, for at most SECS seconds.
wait_http() {
    local url=$1 pid=$2 secs=$3 deadline=$((SECONDS + $3))
    while ((SECONDS < deadline)); do
        kill -0 "$pid" 2>/dev/null || die "the process behind $url exited (see $OUT/*.log)"
        curl --silent --fail --max-time 2 --output /dev/null "$url" && return 0
        sleep 0.2
    done
    die "$url did not answer within $secs s"
}

# Starts a bare handler answering BYTES bytes of CONTENT_TYPE. Sets BARE_URL and BARE_PID
# (not printed: a command substitution would run it in a subshell and lose the pid).
BARE_URL=""
BARE_PID=""
start_bare() {
    local name=$1 bytes=$2 content_type=$3 port
    port=$(free_port)
    spawn "$name" "$BARE_BIN" --listen "127.0.0.1:$port" --body-bytes "$bytes" \
        --workers "$WORKERS" --content-type "$content_type"
    BARE_PID=$LAST_PID
    BARE_URL="http://127.0.0.1:$port"
    wait_http "$BARE_URL/" "$BARE_PID" 10
}

# Stops one process started by `spawn` before the end of the script.
stop() {
    local pid=$1 kept=() p
    kill -TERM "$pid" 2>/dev/null && { wait "$pid" 2>/dev/null || true; }
    for p in "${STARTED_PIDS[@]}"; do
        [[ $p == "$pid" ]] || kept+=("$p")
    done
    STARTED_PIDS=("${kept[@]}")
}

# Runs wrk against URL, keeping its output as $OUT/NAME.wrk.txt; prints requests/s.
run_wrk() {
    local name=$1 url=$2 file="$OUT/$1.wrk.txt" rps
    log "wrk -t$THREADS -c$CONNECTIONS -d$DURATION $url"
    # wrk stops by itself after -d; the timeout is a safety net should it hang.
    timeout --kill-after=5 60 wrk --latency -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" \
        "$url" >"$file" 2>&1 || die "wrk failed against $url (see $file)"
    rps=$(awk '/^Requests\/sec:/ { print $2 }' "$file")
    [[ -n $rps ]] || die "no Requests/sec in $file"
    printf '%s' "$rps"
}

# The anomalies wrk saw (non-2xx/3xx answers, socket errors), as a short note.
wrk_anomalies() {
    local file="$OUT/$1.wrk.txt" note=""
    note+=$(awk -F': *' '/Non-2xx or 3xx responses/ { printf "non-2xx %s; ", $2 }' "$file")
    note+=$(awk '/Socket errors/ { sub(/^ *Socket errors: */, ""); printf "socket errors %s; ", $0 }' "$file")
    printf '%s' "${note%; }"
}

# Counts the statuses of N sequential GETs of URL: "200×18 204×2".
status_sample() {
    local url=$1 n=$2
    for _ in $(seq "$n"); do
        curl --silent --max-time 5 --output /dev/null --write-out '%{http_code}\n' "$url" || true
    done | sort | uniq -c | awk '{ printf "%s%s×%s", (NR > 1 ? " " : ""), $2, $1 }'
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }

# ------------------------------------------------------------------------- the table

ROW_NAMES=()
ROW_REGIE=()
ROW_BARE=()
ROW_RATIO=()
ROW_NOTES=()

# add_row NAME REGIE BARE RATIO NOTE: one line of the final table ("-" where n/a).
add_row() {
    ROW_NAMES+=("$1")
    ROW_REGIE+=("$2")
    ROW_BARE+=("$3")
    ROW_RATIO+=("$4")
    ROW_NOTES+=("$5")
}

print_table() {
    local i fmt='%-34s %14s %14s %8s  %s\n'
    echo
    echo "regie load test: wrk -t$THREADS -c$CONNECTIONS -d$DURATION, $WORKERS workers each, $(nproc) cores, Redis store"
    # shellcheck disable=SC2059
    printf "$fmt" "measurement" "regie" "bare" "ratio" "notes"
    # shellcheck disable=SC2059
    printf "$fmt" "-----------" "-----" "----" "-----" "-----"
    for i in "${!ROW_NAMES[@]}"; do
        # shellcheck disable=SC2059
        printf "$fmt" "${ROW_NAMES[i]}" "${ROW_REGIE[i]}" "${ROW_BARE[i]}" "${ROW_RATIO[i]}" "${ROW_NOTES[i]}"
    done
    echo
    echo "raw outputs: $OUT"
}

# ------------------------------------------------------------------------------ setup

ensure_tools() {
    local missing=()
    command -v wrk >/dev/null || missing+=(wrk)
    command -v redis-server >/dev/null || missing+=(redis-server)
    command -v curl >/dev/null || missing+=(curl)
    if ((${#missing[@]})); then
        log "installing ${missing[*]} (apt-get)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    command -v python3 >/dev/null || die "python3 is needed (to find free ports)"
}

build() {
    if [[ ${LOADTEST_SKIP_BUILD:-0} == 1 ]]; then
        [[ -x $REGIE_BIN && -x $BARE_BIN ]] || die "LOADTEST_SKIP_BUILD=1 but the binaries are missing"
        return
    fi
    log "cargo build --release --bin regie --example bare"
    (cd "$ROOT" && cargo build --release --bin regie --example bare)
}

REDIS_PORT=""
start_redis() {
    REDIS_PORT=$(free_port)
    mkdir -p "$WORK/redis"
    spawn redis redis-server --bind 127.0.0.1 --port "$REDIS_PORT" \
        --save "" --appendonly no --dir "$WORK/redis" --daemonize no
    local pid=$LAST_PID deadline=$((SECONDS + 10))
    until redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; do
        kill -0 "$pid" 2>/dev/null || die "redis-server exited (see $OUT/redis.log)"
        ((SECONDS < deadline)) || die "redis-server did not answer within 10 s"
        sleep 0.1
    done
    log "redis-server on 127.0.0.1:$REDIS_PORT"
}

REGIE_URL=""
start_regie() {
    local port
    port=$(free_port)
    REGIE_URL="http://127.0.0.1:$port"
    # The inventory is config/inventory.json, loaded into the empty Redis at start.
    (
        cd "$ROOT"
        export REGIE_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
        export REGIE_LISTEN="127.0.0.1:$port"
        export REGIE_ADMIN_TOKEN="$ADMIN_TOKEN"
        export REGIE_WORKERS="$WORKERS"
        export RUST_LOG="${RUST_LOG:-warn}"
        exec "$REGIE_BIN"
    ) >"$OUT/regie.log" 2>&1 &
    LAST_PID=$!
    STARTED_PIDS+=("$LAST_PID")
    wait_http "$REGIE_URL/readyz" "$LAST_PID" "$READY_TIMEOUT_SECS"
    log "regie on $REGIE_URL: $(curl --silent --max-time 2 "$REGIE_URL/readyz")"
}

# ----------------------------------------------------------------------- measurements

# One decision, fetched before any load: its size sizes the bare handler's body, its
# impression URL gives the beacon token.
FIRST_DECISION=""
fetch_decision() {
    FIRST_DECISION="$OUT/decision.json"
    local status
    status=$(curl --silent --max-time 5 --output "$FIRST_DECISION" --write-out '%{http_code}' \
        "$REGIE_URL$SLOT_PATH")
    [[ $status == 200 ]] || die "GET $SLOT_PATH answered $status, not a decision (see $FIRST_DECISION)"
}

measure_decision() {
    local bytes regie_rps bare_rps note anomalies
    bytes=$(wc -c <"$FIRST_DECISION")
    start_bare bare-decision "$bytes" application/json

    regie_rps=$(run_wrk regie-decision "$REGIE_URL$SLOT_PATH")
    note="body $bytes B; after: $(status_sample "$REGIE_URL$SLOT_PATH" 20)"
    anomalies=$(wrk_anomalies regie-decision)
    [[ -n $anomalies ]] && note+="; $anomalies"
    bare_rps=$(run_wrk bare-decision "$BARE_URL$SLOT_PATH")
    stop "$BARE_PID"

    add_row "GET /v1/slots/{slot}/ad (req/s)" "$regie_rps" "$bare_rps" \
        "$(ratio "$regie_rps" "$bare_rps")" "$note"
}

measure_impression() {
    local impression_url path regie_rps bare_rps note anomalies
    impression_url=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["impression_url"])' \
        "$FIRST_DECISION")
    # The URL is built from REGIE_PUBLIC_URL; aim at this instance whatever its host.
    path="/v1/i/${impression_url##*/v1/i/}"
    start_bare bare-impression 43 image/gif

    regie_rps=$(run_wrk regie-impression "$REGIE_URL$path")
    note="one token: counted once, then deduplicated"
    anomalies=$(wrk_anomalies regie-impression)
    [[ -n $anomalies ]] && note+="; $anomalies"
    bare_rps=$(run_wrk bare-impression "$BARE_URL$path")
    stop "$BARE_PID"

    add_row "GET /v1/i/{token} (req/s)" "$regie_rps" "$bare_rps" \
        "$(ratio "$regie_rps" "$bare_rps")" "$note"
}

main() {
    mkdir -p "$OUT"
    ensure_tools
    build
    start_redis
    start_regie
    fetch_decision
    measure_decision
    measure_impression
    print_table | tee "$OUT/table.txt"
}

main "$@"

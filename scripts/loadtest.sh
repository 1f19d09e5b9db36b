#!/usr/bin/env bash
# Load test: regie against a bare actix-web handler, on this machine, with wrk.
#
#   scripts/loadtest.sh
#
# What it does, everything on 127.0.0.1 and bounded in time:
#   1. installs wrk (Debian package) and redis-server if missing, and oha (`cargo install oha
#      --locked` into ~/.cargo, a few minutes the first time; reused after) for fixed_rate;
#   2. builds regie and the bare handler (examples/bare.rs) in release;
#   3. starts its own redis-server on a free port (no persistence, a temporary --dir), or with
#      LOADTEST_CLUSTER=1 a local Redis Cluster of six (three primaries, three replicas; regie
#      then waits for a replica's acknowledgement of every write that counts), and
#      regie against it, and waits for /readyz;
#   4. measures, with `wrk -t$THREADS -c$CONNECTIONS -d$DURATION` each (the first two
#      comparisons alternate regie and the bare handler $LOADTEST_ROUNDS times and give the
#      median ratio, and the CPU each used per request):
#        - GET /v1/slots/Publicit%C3%A9%202/ad   against the bare handler answering a JSON
#          body of the same byte length as one regie decision;
#        - GET /v1/i/{token} (impression beacon), one token replayed, against the bare
#          handler answering 43 bytes;
#        - GET /v1/i/{token} on distinct decisions: N impression URLs are collected first
#          (loadtest/collect_impressions.py), then walked once each (loadtest/walk_paths.lua),
#          against the bare handler answering 43 bytes under the same script;
#        - the flusher's Redis round trips per 1 000 events over that run (from /metrics), and
#          regie_events_dropped_total;
#        - GET /v1/slots/Publicit%C3%A9%202/ad?uid=<random> on a second regie whose inventory
#          (loadtest/inventory-capped.json) puts caps and a frequency cap on every paid
#          campaign, against the default-inventory regie with and without a random uid
#          (loadtest/random_uid.lua for all three), and regie's own CPU time per request
#          (/proc) in the capped and the uncapped run: their ratio is the throughput ratio
#          where regie alone is the bottleneck, Redis and wrk running elsewhere;
#        - the same capped decisions with every Redis process frozen (SIGSTOP): their latency
#          percentiles, against the capped run with Redis answering (the store's breaker);
#        - fixed_rate: decisions, then one-token beacons, at a fixed rate of half the bare
#          handler's saturating req/s (the median of its rounds in the comparison above, or one
#          wrk run when that comparison was skipped), driven by `oha -q` with latency
#          correction, regie and the bare handler alternating $LOADTEST_LATENCY_ROUNDS times:
#          p50/p99/p99.9 of each (medians of the rounds) and the ratio of the p99s;
#        - inventory_scale: a third regie, under its own key prefix, gets a 100 000-campaign
#          inventory from scripts/gen-inventory.py through `PUT /v1/admin/inventory`. The
#          realistic profile is tried first; a 413 (over the body limit) is noted and the lean
#          profile, which fits, is put instead. Both are validated with `regie check` first.
#          It measures the time from sending the PUT until a decision of a slot only the new
#          inventory has (SCALE_SLOT, `une-2`) is served, with where it went from regie's log,
#          and until the instance has leased a block of every capped campaign's budget;
#          the instance's VmRSS before and after (and its peak, VmHWM); then decisions of that
#          slot against the bare handler, as the first comparison does (alternating rounds,
#          median);
#        - audience: LOADTEST_VIEWERS (1 000 000) distinct viewers (a random uid each), in
#          two halves, through a regie on the embedded store and one on Redis, both serving
#          loadtest/inventory-capped.json, so that each viewer leaves a frequency history: the
#          embedded instance's VmRSS after each half (flat in the second half once
#          REGIE_MAX_VIEWER_HISTORIES is reached) and Redis's used_memory and keys, per viewer;
#   5. prints requests/s of each and the ratio regie / baseline in a table.
# Everything it started is stopped on exit (trap). Raw outputs go to artifacts/loadtest/.
# With the defaults the measurements take about eight minutes, after the build (and after
# oha's installation, the first time).
#
# Environment: LOADTEST_DURATION (10s), LOADTEST_THREADS (2), LOADTEST_CONNECTIONS (32),
# LOADTEST_WORKERS (2: actix workers of both servers), LOADTEST_ROUNDS (3: alternating rounds
# of the comparisons with the bare handler), LOADTEST_LATENCY_ROUNDS (5: alternating rounds
# of the fixed-rate comparisons, whose p99 one stall of the shared machine moves more than it
# moves a throughput), LOADTEST_SKIP_BUILD=1 (reuse the
# binaries in target/release), LOADTEST_REGIE_BIN and LOADTEST_BARE_BIN (binaries built
# elsewhere, e.g. another commit's for an A/B; with LOADTEST_SKIP_BUILD=1), LOADTEST_CLUSTER=1 (a local Redis Cluster instead of one
# redis-server), LOADTEST_BEACONS (distinct impression URLs to collect; by
# default enough for the whole run at 1.5 × the one-token beacon rate, at most 1 000 000),
# RUST_LOG (regie's production setting when unset), LOADTEST_ONLY (comma-separated names of
# MEASUREMENTS below, e.g. `fixed_rate,inventory_scale`: only those run; flush_roundtrips
# reports nothing without distinct_impressions), LOADTEST_SCALE_CAMPAIGNS (100000: campaigns
# of the inventory_scale inventory), LOADTEST_SCALE_PUTS (5: PUTs of it, the median reported).
#
# Adding a measurement: write a `measure_NAME` function that calls `add_row`, and add NAME to
# MEASUREMENTS.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly ROOT
readonly DURATION=${LOADTEST_DURATION:-10s}
readonly THREADS=${LOADTEST_THREADS:-2}
readonly CONNECTIONS=${LOADTEST_CONNECTIONS:-32}
readonly WORKERS=${LOADTEST_WORKERS:-2}
readonly ROUNDS=${LOADTEST_ROUNDS:-3}
readonly LATENCY_ROUNDS=${LOADTEST_LATENCY_ROUNDS:-5}
readonly SLOT_PATH='/v1/slots/Publicit%C3%A9%202/ad'
readonly ADMIN_TOKEN="loadtest-$RANDOM$RANDOM-0123456789abcdefghij"
readonly REGIE_BIN=${LOADTEST_REGIE_BIN:-$ROOT/target/release/regie}
# wrk and curl stand for readers: an HTTP library's user agent, or none, is a bot to regie
# (README, "Invalid traffic"), whose decisions come from the house tier only.
readonly BROWSER_UA="Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"
readonly BARE_BIN=${LOADTEST_BARE_BIN:-$ROOT/target/release/examples/bare}
readonly READY_TIMEOUT_SECS=60
readonly WALK_SCRIPT="$ROOT/loadtest/walk_paths.lua"
readonly UID_SCRIPT="$ROOT/loadtest/random_uid.lua"
readonly CAPPED_INVENTORY="$ROOT/loadtest/inventory-capped.json"
readonly SCALE_PUTS=${LOADTEST_SCALE_PUTS:-5}
readonly SCALE_CAMPAIGNS=${LOADTEST_SCALE_CAMPAIGNS:-100000}
# A slot of the generated inventory only (scripts/gen-inventory.py), among its busiest.
readonly SCALE_SLOT=une-2
readonly SCALE_SLOT_PATH="/v1/slots/$SCALE_SLOT/ad"
# The measurements, in the order they run: each NAME is a function measure_NAME.
readonly MEASUREMENTS=(decision impression distinct_impressions flush_roundtrips
    capped_decisions fixed_rate inventory_scale audience)

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
    kill -TERM "$1" 2>/dev/null && { wait "$1" 2>/dev/null || true; }
    forget "$1"
}

# Drops PID, which has exited and been waited for, from the processes to stop on exit.
forget() {
    local pid=$1 kept=() p
    for p in "${STARTED_PIDS[@]}"; do
        [[ $p == "$pid" ]] || kept+=("$p")
    done
    STARTED_PIDS=("${kept[@]}")
}

# Seconds in a wrk duration: "10s", "2m", "1h" or a bare number of seconds.
duration_secs() {
    awk -v d="$1" 'BEGIN {
        n = d + 0; u = substr(d, length(d))
        printf "%d", (u == "m" ? n * 60 : u == "h" ? n * 3600 : n)
    }'
}

# Runs wrk against URL, keeping its output as $OUT/NAME.wrk.txt; prints requests/s.
# With SCRIPT, wrk runs that Lua script with the remaining arguments (its `init(args)`).
run_wrk() {
    local name=$1 url=$2 file="$OUT/$1.wrk.txt" rps script=() script_args=()
    if (($# > 2)); then
        script=(-s "$3")
        script_args=(-- "${@:4}")
    fi
    log "wrk -t$THREADS -c$CONNECTIONS -d$DURATION ${script[*]} $url ${script_args[*]}"
    # wrk stops by itself after -d; the timeout is a safety net should it hang.
    timeout --kill-after=5 $(($(duration_secs "$DURATION") + 60)) \
        wrk --latency -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" -H "User-Agent: $BROWSER_UA" "${script[@]}" \
        "$url" "${script_args[@]}" >"$file" 2>&1 || die "wrk failed against $url (see $file)"
    rps=$(awk '/^Requests\/sec:/ { print $2 }' "$file")
    [[ -n $rps ]] || die "no Requests/sec in $file"
    printf '%s' "$rps"
}

# CPU time (user and system) PID has used so far, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# The system (kernel) part of cpu_ticks.
system_ticks() { awk '{ print $15 }' "/proc/$1/stat"; }

# Microseconds of CPU per request: TICKS of CPU over REQUESTS.
cpu_us_per_request() {
    awk -v t="$1" -v r="$2" -v hz="$(getconf CLK_TCK)" \
        'BEGIN { if (r > 0) printf "%.1f", t / hz * 1e6 / r; else print "-" }'
}

# The anomalies wrk saw (non-2xx/3xx answers, socket errors), as a short note.
wrk_anomalies() {
    local file="$OUT/$1.wrk.txt" note=""
    note+=$(awk -F': *' '/Non-2xx or 3xx responses/ { printf "non-2xx %s; ", $2 }' "$file")
    note+=$(awk '/Socket errors/ { sub(/^ *Socket errors: */, ""); printf "socket errors %s; ", $0 }' "$file")
    printf '%s' "${note%; }"
}

# NOTE, followed by the anomalies wrk saw in run NAME if there were any.
with_anomalies() {
    local anomalies
    anomalies=$(wrk_anomalies "$1")
    printf '%s%s' "$2" "${anomalies:+; $anomalies}"
}

# Counts the statuses of N sequential GETs of URL: "200×18 204×2".
status_sample() {
    local url=$1 n=$2
    for _ in $(seq "$n"); do
        curl --silent --max-time 5 -A "$BROWSER_UA" --output /dev/null --write-out '%{http_code}\n' "$url" || true
    done | sort | uniq -c | awk '{ printf "%s%s×%s", (NR > 1 ? " " : ""), $2, $1 }'
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }

per_thousand() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", 1000 * a / b; else print "-" }'; }

# The requests wrk completed, from the summary of $OUT/NAME.wrk.txt ("123 requests in 10s").
wrk_requests() { awk '/ requests in / { print $1 }' "$OUT/$1.wrk.txt"; }

# The sum of an INFO field (e.g. used_memory, used_cpu_user) over every Redis process.
redis_info_sum() {
    local addr total=0 value
    for addr in "${REDIS_ADDRS[@]}"; do
        value=$(redis-cli -h "${addr%:*}" -p "${addr#*:}" info all 2>/dev/null |
            awk -F: -v f="$1" '$1 == f { print $2 + 0 }')
        total=$(awk -v a="$total" -v b="${value:-0}" 'BEGIN { print a + b }')
    done
    printf '%s' "$total"
}

# Redis CPU seconds (user and system) over every Redis process.
redis_cpu_secs() {
    awk -v u="$(redis_info_sum used_cpu_user)" -v s="$(redis_info_sum used_cpu_sys)" \
        'BEGIN { printf "%.3f", u + s }'
}

# Microseconds of Redis CPU spent in the named commands (INFO commandstats) over every Redis
# process since the last CONFIG RESETSTAT, e.g. `redis_usec_total zadd zcard`.
redis_usec_total() {
    local addr name usec=0 line
    for addr in "${REDIS_ADDRS[@]}"; do
        for name in "$@"; do
            line=$(redis-cli -h "${addr%:*}" -p "${addr#*:}" info commandstats 2>/dev/null |
                grep "^cmdstat_$name:" || true)
            [[ -n $line ]] || continue
            usec=$((usec + $(tr ':,' '\n\n' <<<"$line" | awk -F= '$1 == "usec" { print $2 }')))
        done
    done
    printf '%s' "$usec"
}

redis_reset_stats() {
    local addr
    for addr in "${REDIS_ADDRS[@]}"; do
        redis-cli -h "${addr%:*}" -p "${addr#*:}" config resetstat >/dev/null
    done
}

# A latency percentile (50%, 99%, …) of wrk run NAME, in milliseconds.
wrk_latency_ms() {
    awk -v p="$2" '$1 == p && NF == 2 {
        v = $2 + 0; u = $2; sub(/^[0-9.]+/, "", u)
        printf "%.2f", (u == "us" ? v / 1000 : u == "s" ? v * 1000 : u == "m" ? v * 60000 : v)
    }' "$OUT/$1.wrk.txt"
}

# The sum of the samples of metric NAME on BASE/metrics whose line contains FILTER (e.g.
# 'op="flush"'), as an integer; 0 when there is none. Label values may hold spaces ("Publicité
# 2"), so the value is the last field and the name is matched at the start of the line.
metric_sum() {
    local base=$1 name=$2 filter=${3:-} text
    text=$(curl --silent --fail --max-time 5 "$base/metrics") || die "GET $base/metrics failed"
    awk -v name="$name" -v filter="$filter" '
        index($0, name "{") == 1 || index($0, name " ") == 1 {
            if (filter == "" || index($0, filter)) sum += $NF
        }
        END { printf "%.0f", sum }' <<<"$text"
}

# Waits, at most 15 s, until regie at BASE holds no pending counter event: the flusher has
# written everything the load so far produced, so round-trip counts read now are complete.
wait_flushed() {
    local base=$1 deadline=$((SECONDS + 15))
    until [[ $(metric_sum "$base" regie_events_pending) == 0 ]]; do
        if ((SECONDS >= deadline)); then
            log "warning: $base still holds pending events after 15 s"
            return 0
        fi
        sleep 0.2
    done
}

# median FORMAT NUMBER...: the median of the numbers, printed with the printf FORMAT.
median() {
    local format=$1
    shift
    printf '%s\n' "$@" | sort -g | awk -v f="$format" '{ v[NR] = $1 }
        END { m = int((NR + 1) / 2); printf f, (NR % 2 ? v[m] : (v[m] + v[m + 1]) / 2) }'
}

# compare_rounds NAME REGIE_URL REGIE_PID BARE_URL BARE_PID [SCRIPT ARGS...]: regie and the
# bare handler (or another reference) in turn, $ROUNDS times each, wrk running SCRIPT with ARGS
# when given. The machine's speed drifts by a quarter within minutes when it is
# shared, so one run of each would compare two different machines; alternating short runs and
# taking the median of each round's ratio compares them under the same conditions. Sets
# CMP_REGIE and CMP_BARE (median req/s), CMP_RATIO (median of the rounds' ratios), CMP_NOTE
# (every round's ratio), CMP_REGIE_CPU and CMP_BARE_CPU (CPU µs per request over all rounds,
# user + system, from /proc), CMP_REGIE_SYS and CMP_BARE_SYS (their system part); CMP_NOTE
# also names what wrk saw go wrong in regie's rounds.
# CMP_BASELINE_ARGS, when set, are the reference's SCRIPT and ARGS instead.
CMP_REGIE="" CMP_BARE="" CMP_RATIO="" CMP_NOTE="" CMP_REGIE_CPU="" CMP_BARE_CPU=""
CMP_REGIE_SYS="" CMP_BARE_SYS="" CMP_BASELINE_ARGS=()
compare_rounds() {
    local name=$1 regie_url=$2 regie_pid=$3 bare_url=$4 bare_pid=$5 round
    local regie_rates=() bare_rates=() ratios=() regie_ticks=0 bare_ticks=0
    local regie_sys=0 bare_sys=0 sys
    local regie_requests=0 bare_requests=0 ticks rps anomalies="" seen script=("${@:6}")
    local baseline=("${@:6}")
    ((${#CMP_BASELINE_ARGS[@]})) && baseline=("${CMP_BASELINE_ARGS[@]}")
    for ((round = 1; round <= ROUNDS; round++)); do
        ticks=$(cpu_ticks "$regie_pid") sys=$(system_ticks "$regie_pid")
        rps=$(run_wrk "regie-$name-$round" "$regie_url" "${script[@]}")
        regie_ticks=$((regie_ticks + $(cpu_ticks "$regie_pid") - ticks))
        regie_sys=$((regie_sys + $(system_ticks "$regie_pid") - sys))
        regie_requests=$((regie_requests + $(wrk_requests "regie-$name-$round")))
        regie_rates+=("$rps")
        ticks=$(cpu_ticks "$bare_pid") sys=$(system_ticks "$bare_pid")
        rps=$(run_wrk "bare-$name-$round" "$bare_url" "${baseline[@]}")
        bare_ticks=$((bare_ticks + $(cpu_ticks "$bare_pid") - ticks))
        bare_sys=$((bare_sys + $(system_ticks "$bare_pid") - sys))
        bare_requests=$((bare_requests + $(wrk_requests "bare-$name-$round")))
        bare_rates+=("$rps")
        ratios+=("$(ratio "${regie_rates[-1]}" "$rps")")
        seen=$(wrk_anomalies "regie-$name-$round")
        [[ -n $seen ]] && anomalies+="; round $round: $seen"
    done
    CMP_REGIE=$(median %.0f "${regie_rates[@]}")
    CMP_BARE=$(median %.0f "${bare_rates[@]}")
    CMP_RATIO=$(median %.2f "${ratios[@]}")
    CMP_NOTE="median of $ROUNDS alternating rounds, ratios ${ratios[*]}$anomalies"
    CMP_REGIE_CPU=$(cpu_us_per_request "$regie_ticks" "$regie_requests")
    CMP_BARE_CPU=$(cpu_us_per_request "$bare_ticks" "$bare_requests")
    CMP_REGIE_SYS=$(cpu_us_per_request "$regie_sys" "$regie_requests")
    CMP_BARE_SYS=$(cpu_us_per_request "$bare_sys" "$bare_requests")
}

# Runs oha against URL at a fixed RATE (req/s) for $DURATION, keeping its JSON report as
# $OUT/NAME.oha.json; prints "p50 p99 p99.9 req/s anomalies" (milliseconds; anomalies is "-"
# or what went wrong, without spaces). With --latency-correction a request's latency counts
# from when the schedule meant to send it, so a stall is not hidden by the requests it delays
# (coordinated omission).
run_oha() {
    local name=$1 url=$2 rate=$3 file="$OUT/$1.oha.json"
    log "oha -q $rate -c $CONNECTIONS -z $DURATION --latency-correction $url"
    timeout --kill-after=5 $(($(duration_secs "$DURATION") + 60)) \
        "$OHA_BIN" --no-tui --output-format json --latency-correction -q "$rate" -c "$CONNECTIONS" \
        -z "$DURATION" -H "User-Agent: $BROWSER_UA" "$url" >"$file" 2>"$OUT/$name.oha.err" ||
        die "oha failed against $url (see $file and $OUT/$name.oha.err)"
    python3 - "$file" <<'PY' || die "unreadable oha report $file"
import json, sys
report = json.load(open(sys.argv[1]))
p = report["latencyPercentiles"]
statuses = report.get("statusCodeDistribution", {})
# oha aborts the requests still in flight at the deadline: not an anomaly.
errors = {k: v for k, v in report.get("errorDistribution", {}).items()
          if k != "aborted due to deadline"}
odd = [f"{code}x{n}" for code, n in sorted(statuses.items()) if not code.startswith("2")]
odd += [f"{k.replace(' ', '_')}x{n}" for k, n in sorted(errors.items())]
ms = lambda v: f"{v * 1000:.2f}" if v is not None else "-"
print(ms(p["p50"]), ms(p["p99"]), ms(p["p99.9"]),
      f"{report['summary']['requestsPerSec']:.0f}", ",".join(odd) or "-")
PY
}

# compare_latency NAME REGIE_URL BARE_URL RATE: both servers at RATE req/s with oha, in turn,
# $LATENCY_ROUNDS times each (see compare_rounds for why). Sets LAT_REGIE and LAT_BARE
# ("p50/p99/p99.9", medians of the rounds, ms), LAT_RATIO (median of the rounds' p99 ratios)
# and LAT_NOTE (the rates reached, every round's ratio, and anomalies seen).
LAT_REGIE="" LAT_BARE="" LAT_RATIO="" LAT_NOTE=""
compare_latency() {
    local name=$1 regie_url=$2 bare_url=$3 rate=$4 round
    local regie_runs=() bare_runs=() ratios=() anomalies="" run p50 p99 p999 reached odd
    for ((round = 1; round <= LATENCY_ROUNDS; round++)); do
        run=$(run_oha "regie-$name-$round" "$regie_url" "$rate")
        read -r p50 p99 p999 reached odd <<<"$run"
        regie_runs+=("$p50 $p99 $p999 $reached")
        [[ $odd == - ]] || anomalies+="; regie round $round: ${odd//,/ }"
        run=$(run_oha "bare-$name-$round" "$bare_url" "$rate")
        read -r p50 p99 p999 reached odd <<<"$run"
        bare_runs+=("$p50 $p99 $p999 $reached")
        [[ $odd == - ]] || anomalies+="; bare round $round: ${odd//,/ }"
        ratios+=("$(ratio "$(cut -d' ' -f2 <<<"${regie_runs[-1]}")" "$p99")")
    done
    LAT_REGIE=$(latency_medians "${regie_runs[@]}")
    LAT_BARE=$(latency_medians "${bare_runs[@]}")
    LAT_RATIO=$(median %.2f "${ratios[@]}")
    LAT_NOTE="reached ${LAT_REGIE##* } (regie) and ${LAT_BARE##* } (bare) req/s;"
    # oha takes more CPU per request than wrk, on the same cores as the servers: when it cannot
    # keep the rate, the machine is saturated and the percentiles are mostly queueing.
    if awk -v a="${LAT_REGIE##* }" -v b="${LAT_BARE##* }" -v r="$rate" \
        'BEGIN { exit !(a < 0.95 * r || b < 0.95 * r) }'; then
        LAT_NOTE+=" UNDER THE RATE: the machine saturated, the percentiles are queueing;"
    fi
    LAT_NOTE+=" median of $LATENCY_ROUNDS alternating rounds, p99 ratios ${ratios[*]}$anomalies"
    LAT_REGIE=${LAT_REGIE% *}
    LAT_BARE=${LAT_BARE% *}
}

# latency_medians "P50 P99 P99.9 REQ/S"...: the median of each column over the runs, as
# "P50/P99/P99.9 REQ/S".
latency_medians() {
    local formats=(%.2f %.2f %.2f %.0f) column values=() medians=()
    for column in 1 2 3 4; do
        mapfile -t values < <(printf '%s\n' "$@" | cut -d' ' -f"$column")
        medians+=("$(median "${formats[column - 1]}" "${values[@]}")")
    done
    printf '%s/%s/%s %s' "${medians[@]}"
}

# Resident memory of PID: "VmRSS VmHWM" (current and peak), in MiB.
rss_mib() {
    awk '/^VmRSS:/ { rss = $2 } /^VmHWM:/ { hwm = $2 }
        END { printf "%.0f %.0f", rss / 1024, hwm / 1024 }' "/proc/$1/status"
}

# Milliseconds since the epoch.
now_ms() { date +%s%3N; }

# ------------------------------------------------------------------------- the table

ROW_NAMES=()
ROW_REGIE=()
ROW_BARE=()
ROW_RATIO=()
ROW_NOTES=()

# add_row NAME REGIE BASELINE RATIO NOTE: one line of the final table ("-" where n/a). The
# baseline is the bare handler unless NOTE names another.
add_row() {
    ROW_NAMES+=("$1")
    ROW_REGIE+=("$2")
    ROW_BARE+=("$3")
    ROW_RATIO+=("$4")
    ROW_NOTES+=("$5")
}

print_table() {
    local i fmt='%-40s %17s %17s %8s  %s\n'
    echo
    echo "regie load test: wrk -t$THREADS -c$CONNECTIONS -d$DURATION, $WORKERS workers each, $(nproc) cores, Redis store"
    echo "baseline: the bare actix-web handler with a body of the same size, unless the notes say otherwise"
    # shellcheck disable=SC2059
    printf "$fmt" "measurement" "regie" "baseline" "ratio" "notes"
    # shellcheck disable=SC2059
    printf "$fmt" "-----------" "-----" "--------" "-----" "-----"
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
    if selected fixed_rate; then ensure_oha; fi
}

# oha drives the fixed-rate runs (wrk has no fixed rate). It is a crate, not a Debian
# package: installed once with cargo into ~/.cargo/bin (or $CARGO_HOME/bin), then reused.
OHA_BIN=""
ensure_oha() {
    local cargo_home=${CARGO_HOME:-$HOME/.cargo}
    OHA_BIN=$(command -v oha || true)
    [[ -z $OHA_BIN && -x $cargo_home/bin/oha ]] && OHA_BIN=$cargo_home/bin/oha
    [[ -n $OHA_BIN ]] && return
    log "installing oha (cargo install --locked oha, a few minutes; see $OUT/oha-install.log)"
    nice -n 10 cargo install --locked --root "$cargo_home" oha >"$OUT/oha-install.log" 2>&1 ||
        die "cargo install oha failed (see $OUT/oha-install.log)"
    OHA_BIN=$cargo_home/bin/oha
}

build() {
    if [[ ${LOADTEST_SKIP_BUILD:-0} == 1 ]]; then
        [[ -x $REGIE_BIN && -x $BARE_BIN ]] || die "LOADTEST_SKIP_BUILD=1 but the binaries are missing"
        return
    fi
    log "cargo build --release --bin regie --example bare"
    (cd "$ROOT" && cargo build --release --bin regie --example bare)
}

# With LOADTEST_CLUSTER=1: six cluster-mode nodes made into three primaries with a replica
# each. Sets REDIS_SEEDS.
REDIS_SEEDS=""
start_cluster() {
    local i port bus nodes=() deadline
    for ((i = 1; i <= 6; i++)); do
        port=$(free_port)
        bus=$(free_port)
        mkdir -p "$WORK/redis-$i"
        spawn "redis-$i" redis-server --bind 127.0.0.1 --port "$port" --cluster-port "$bus" \
            --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 5000 \
            --save "" --appendonly no --dir "$WORK/redis-$i" --daemonize no
        REDIS_PIDS+=("$LAST_PID")
        REDIS_ADDRS+=("127.0.0.1:$port")
        deadline=$((SECONDS + 10))
        until redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null | grep -q PONG; do
            ((SECONDS < deadline)) || die "redis-server $i did not answer within 10 s"
            sleep 0.1
        done
        nodes+=("127.0.0.1:$port")
    done
    redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes \
        >"$OUT/cluster-create.log" 2>&1 || die "redis-cli --cluster create failed (see $OUT/cluster-create.log)"
    deadline=$((SECONDS + 30))
    for node in "${nodes[@]}"; do
        until redis-cli -h "${node%:*}" -p "${node#*:}" cluster info 2>/dev/null |
            grep -q 'cluster_state:ok'; do
            ((SECONDS < deadline)) || die "the cluster did not form within 30 s"
            sleep 0.2
        done
    done
    REDIS_SEEDS=$(printf 'redis://%s,' "${nodes[@]}")
    REDIS_SEEDS=${REDIS_SEEDS%,}
    log "Redis Cluster: $REDIS_SEEDS"
}

REDIS_PORT=""
REDIS_PIDS=()
REDIS_ADDRS=()
start_redis() {
    if [[ ${LOADTEST_CLUSTER:-0} == 1 ]]; then
        start_cluster
        return
    fi
    REDIS_PORT=$(free_port)
    mkdir -p "$WORK/redis"
    spawn redis redis-server --bind 127.0.0.1 --port "$REDIS_PORT" \
        --save "" --appendonly no --dir "$WORK/redis" --daemonize no
    REDIS_PIDS+=("$LAST_PID")
    REDIS_ADDRS+=("127.0.0.1:$REDIS_PORT")
    local pid=$LAST_PID deadline=$((SECONDS + 10))
    until redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; do
        kill -0 "$pid" 2>/dev/null || die "redis-server exited (see $OUT/redis.log)"
        ((SECONDS < deadline)) || die "redis-server did not answer within 10 s"
        sleep 0.1
    done
    log "redis-server on 127.0.0.1:$REDIS_PORT"
}

# Starts a regie against the script's Redis, logging to $OUT/NAME.log, with extra VAR=VALUE
# settings, and waits for /readyz. Sets SPAWNED_URL and LAST_PID (not printed: see start_bare).
SPAWNED_URL=""
spawn_regie() {
    local name=$1 port
    shift
    port=$(free_port)
    SPAWNED_URL="http://127.0.0.1:$port"
    (
        cd "$ROOT"
        if [[ -n $REDIS_SEEDS ]]; then
            export REGIE_REDIS_CLUSTER="$REDIS_SEEDS"
        else
            export REGIE_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
        fi
        export REGIE_LISTEN="127.0.0.1:$port"
        # Production refuses to start without it (tracking URLs are absolute).
        export REGIE_PUBLIC_URL="$SPAWNED_URL"
        export REGIE_ADMIN_TOKEN="$ADMIN_TOKEN"
        export REGIE_WORKERS="$WORKERS"
        # As deployed: JSON logs at info, every request with its context. No drain delay, so
        # that stopping one between measurements is quick.
        export REGIE_ENVIRONMENT=production REGIE_DRAIN_DELAY_MS=0
        # wrk's readers all come from 127.0.0.1: limits per address so high that they never
        # refuse, yet every request still goes through the limiters, as deployed.
        export REGIE_DECISIONS_PER_SECOND=1000000000 REGIE_IVT_IMPRESSIONS_PER_MINUTE=4000000000
        # shellcheck disable=SC2163 # exports each VAR=VALUE argument
        if (($#)); then export "$@"; fi
        exec "$REGIE_BIN"
    ) >"$OUT/$name.log" 2>&1 &
    LAST_PID=$!
    STARTED_PIDS+=("$LAST_PID")
    wait_http "$SPAWNED_URL/readyz" "$LAST_PID" "$READY_TIMEOUT_SECS"
    log "$name on $SPAWNED_URL: $(curl --silent --max-time 2 "$SPAWNED_URL/readyz")"
}

# The main instance: config/inventory.json, loaded into the empty Redis at start, under the
# default key prefix.
REGIE_URL=""
REGIE_PID=""
start_regie() {
    spawn_regie regie
    REGIE_URL=$SPAWNED_URL
    REGIE_PID=$LAST_PID
}

# ----------------------------------------------------------------------- measurements

# One decision, fetched before any load: its size sizes the bare handler's body, its
# impression URL gives the beacon token.
FIRST_DECISION=""
fetch_decision() {
    FIRST_DECISION="$OUT/decision.json"
    local status
    status=$(curl --silent --max-time 5 -A "$BROWSER_UA" --output "$FIRST_DECISION" --write-out '%{http_code}' \
        "$REGIE_URL$SLOT_PATH")
    [[ $status == 200 ]] || die "GET $SLOT_PATH answered $status, not a decision (see $FIRST_DECISION)"
}

# The bare handler's decision req/s: half of it is the rate of the fixed-rate decisions.
BARE_DECISION_RPS=""
measure_decision() {
    local bytes note
    bytes=$(wc -c <"$FIRST_DECISION")
    start_bare bare-decision "$bytes" application/json
    compare_rounds decision "$REGIE_URL$SLOT_PATH" "$REGIE_PID" "$BARE_URL$SLOT_PATH" "$BARE_PID"
    stop "$BARE_PID"
    BARE_DECISION_RPS=$CMP_BARE

    note="body $bytes B; $CMP_NOTE; after: $(status_sample "$REGIE_URL$SLOT_PATH" 20)"
    add_row "GET /v1/slots/{slot}/ad (req/s)" "$CMP_REGIE" "$CMP_BARE" "$CMP_RATIO" "$note"
    add_row "  CPU per request (us), user + system" "$CMP_REGIE_CPU" "$CMP_BARE_CPU" \
        "$(ratio "$CMP_BARE_CPU" "$CMP_REGIE_CPU")" \
        "ratio = bare / regie CPU: the throughput ratio where the server alone is the bottleneck; system (kernel) part: regie $CMP_REGIE_SYS, bare $CMP_BARE_SYS us"
}

# The path of FIRST_DECISION's impression beacon. The URL is built from REGIE_PUBLIC_URL;
# the path aims at whichever instance it is appended to.
beacon_path() {
    local impression_url
    impression_url=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["impression_url"])' \
        "$FIRST_DECISION")
    printf '/v1/i/%s' "${impression_url##*/v1/i/}"
}

# req/s of the one-token beacons: sizes the list of distinct tokens collected next. And the
# bare handler's, whose half is the rate of the fixed-rate beacons.
ONE_TOKEN_BEACON_RPS=""
BARE_BEACON_RPS=""
measure_impression() {
    local path
    path=$(beacon_path)
    start_bare bare-impression 43 image/gif
    compare_rounds impression "$REGIE_URL$path" "$REGIE_PID" "$BARE_URL$path" "$BARE_PID"
    stop "$BARE_PID"
    ONE_TOKEN_BEACON_RPS=$CMP_REGIE
    BARE_BEACON_RPS=$CMP_BARE

    add_row "GET /v1/i/{token} (req/s)" "$CMP_REGIE" "$CMP_BARE" "$CMP_RATIO" \
        "one token: counted once, then deduplicated; $CMP_NOTE"
}

# Impression beacons on distinct decisions. The one-token row replays a token the store
# de-duplicates; here every request carries the token of another decision, so each one is a
# new impression the flusher must write, as on real pages. The tokens are collected first,
# enough for the whole run (wrk cannot stop early without spoiling its req/s: the Lua script
# would start its slice again, and the note says how many requests did), then each wrk thread
# walks its own slice. The bare handler is measured under the same script, so wrk does the
# same work on both sides.
# It also samples the counters measure_flush_roundtrips needs: FLUSH_SAMPLE holds the flush
# round trips before and after, the beacon requests, and the decisions served while collecting.
FLUSH_SAMPLE=()
measure_distinct_impressions() {
    local want secs paths="$WORK/impression-paths.txt" collected got decisions \
        flush_before decisions_before impressions_before rejected_before \
        regie_rps bare_rps requests repeats counted rejected served note anomalies
    secs=$(duration_secs "$DURATION")
    # The request path is the same as for a replayed token, so 1.5 × the one-token rate
    # covers the run with a margin for noise; at least 20 000, and at most 1 000 000 (about
    # 30 s of collecting on 2 cores).
    want=${LOADTEST_BEACONS:-$(awk -v r="$ONE_TOKEN_BEACON_RPS" -v s="$secs" \
        'BEGIN { n = int(r * s * 1.5); print (n < 20000 ? 20000 : n > 1000000 ? 1000000 : n) }')}

    # The replays of the one-token row may still be being written: start from a drained flusher,
    # so the round trips counted below are this measurement's only.
    wait_flushed "$REGIE_URL"
    flush_before=$(metric_sum "$REGIE_URL" regie_store_roundtrips_total 'op="flush"')
    decisions_before=$(metric_sum "$REGIE_URL" regie_decisions_total 'outcome="filled"')
    impressions_before=$(metric_sum "$REGIE_URL" regie_impressions_total)
    rejected_before=$(metric_sum "$REGIE_URL" regie_tracking_rejected_total)

    log "collecting $want impression URLs from distinct decisions"
    collected=$(timeout --kill-after=5 90 python3 "$ROOT/loadtest/collect_impressions.py" \
        "$REGIE_URL" "$want" "$paths" --processes 2 --seconds 60) ||
        die "collecting impression URLs failed"
    echo "$collected" >"$OUT/impression-paths.json"
    got=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["paths"])' "$collected")
    decisions=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["decisions"])' "$collected")
    served=$(($(metric_sum "$REGIE_URL" regie_decisions_total 'outcome="filled"') - decisions_before))
    log "collected $got paths: $collected (regie counted $served filled decisions)"

    start_bare bare-impressions 43 image/gif
    regie_rps=$(run_wrk regie-impressions "$REGIE_URL" "$WALK_SCRIPT" "$paths" "$THREADS")
    requests=$(wrk_requests regie-impressions)
    repeats=$(awk -F'repeats=' '/^walk:/ { print $2 + 0 }' "$OUT/regie-impressions.wrk.txt")
    [[ -n $repeats ]] || die "no walk: line from $WALK_SCRIPT in $OUT/regie-impressions.wrk.txt"
    anomalies=$(wrk_anomalies regie-impressions)
    bare_rps=$(run_wrk bare-impressions "$BARE_URL" "$WALK_SCRIPT" "$paths" "$THREADS")
    stop "$BARE_PID"

    wait_flushed "$REGIE_URL"
    FLUSH_SAMPLE=("$flush_before" "$(metric_sum "$REGIE_URL" regie_store_roundtrips_total 'op="flush"')"
        "$requests" "$decisions")
    counted=$(($(metric_sum "$REGIE_URL" regie_impressions_total) - impressions_before))
    rejected=$(($(metric_sum "$REGIE_URL" regie_tracking_rejected_total) - rejected_before))

    note="$got tokens, $requests requests, $repeats repeats; $counted counted"
    ((rejected == 0)) || note+=", $rejected rejected"
    ((served == decisions)) || note+="; regie served $served decisions for $decisions received"
    [[ -n $anomalies ]] && note+="; $anomalies"
    add_row "GET /v1/i/{token} distinct (req/s)" "$regie_rps" "$bare_rps" \
        "$(ratio "$regie_rps" "$bare_rps")" "$note"
}

# Redis round trips of the flusher per 1 000 events, over measure_distinct_impressions: the
# flush round trips it made from before the collection until everything was written, for the
# beacon requests wrk completed plus the decisions served while collecting (each one a served
# count to write). Then regie_events_dropped_total, which is 0 unless events were dropped
# past REGIE_MAX_PENDING_EVENTS.
measure_flush_roundtrips() {
    if ((${#FLUSH_SAMPLE[@]} == 0)); then
        log "flush_roundtrips skipped: it counts over distinct_impressions, which did not run"
        return
    fi
    local before=${FLUSH_SAMPLE[0]} after=${FLUSH_SAMPLE[1]} requests=${FLUSH_SAMPLE[2]} \
        decisions=${FLUSH_SAMPLE[3]} trips events dropped note
    trips=$((after - before))
    events=$((requests + decisions))
    # Served decisions are summed in memory per campaign, slot and day before a flush, so they
    # weigh little in a batch: the figure for the beacons alone is the stricter one.
    note="target <= 10; $trips round trips for $events events ($requests beacons"
    note+=" + $decisions decisions); beacons alone: $(per_thousand "$trips" "$requests")"
    add_row "flush round trips / 1 000 events" "$(per_thousand "$trips" "$events")" "-" "-" "$note"
    dropped=$(metric_sum "$REGIE_URL" regie_events_dropped_total)
    add_row "regie_events_dropped_total" "$dropped" "-" "-" "should be 0"
}

# Decisions with caps and frequency caps active. A second regie, on the same Redis under its
# own key prefix, serves loadtest/inventory-capped.json: the default inventory with lifetime
# and daily caps (leased from Redis in blocks) and a frequency cap on every paid campaign, all
# far above what a run reaches, so delivery is unchanged and only their cost shows. Frequency
# caps apply only with a uid, so every request has a random one: one Redis round trip per
# request by design, and a background release of the reservation the decision did not use.
# The references are the default-inventory regie under the same script, without uid and with
# the same random uids (no Redis round trip there: no campaign has a frequency cap).
measure_capped_decisions() {
    local capped_url capped_pid capped_rps free_uid_rps free_rps requests freq_before \
        release_before lease_before freq release lease sample note anomalies ticks \
        capped_cpu free_cpu redis_cpu redis_memory freq_usec c b r n
    "$REGIE_BIN" check "$CAPPED_INVENTORY" >"$OUT/inventory-capped.check.txt" 2>&1 ||
        die "$CAPPED_INVENTORY is not valid (see $OUT/inventory-capped.check.txt)"
    spawn_regie regie-capped REGIE_KEY_PREFIX=loadcaps REGIE_INVENTORY="$CAPPED_INVENTORY"
    capped_url=$SPAWNED_URL
    capped_pid=$LAST_PID

    freq_before=$(metric_sum "$capped_url" regie_store_roundtrips_total 'op="frequency"')
    release_before=$(metric_sum "$capped_url" regie_store_roundtrips_total 'op="frequency_release"')
    lease_before=$(metric_sum "$capped_url" regie_store_roundtrips_total 'op="lease"')
    ticks=$(cpu_ticks "$capped_pid")
    redis_reset_stats
    redis_cpu=$(redis_cpu_secs)
    redis_memory=$(redis_info_sum used_memory)
    capped_rps=$(run_wrk regie-capped-uid "$capped_url" "$UID_SCRIPT" "$SLOT_PATH" uid)
    requests=$(wrk_requests regie-capped-uid)
    capped_cpu=$(cpu_us_per_request $(($(cpu_ticks "$capped_pid") - ticks)) "$requests")
    redis_cpu=$(awk -v a="$(redis_cpu_secs)" -v b="$redis_cpu" -v r="$requests" \
        'BEGIN { if (r > 0) printf "%.1f", (a - b) * 1e6 / r; else print "-" }')
    redis_memory=$(awk -v a="$(redis_info_sum used_memory)" -v b="$redis_memory" -v r="$requests" \
        'BEGIN { if (r > 0) printf "%.0f", (a - b) / r; else print "-" }')
    freq_usec=$(awk -v u="$(redis_usec_total zremrangebyscore zadd pexpire zcard)" -v r="$requests" \
        'BEGIN { if (r > 0) printf "%.1f", u / r; else print "-" }')
    freq=$(($(metric_sum "$capped_url" regie_store_roundtrips_total 'op="frequency"') - freq_before))
    release=$(($(metric_sum "$capped_url" regie_store_roundtrips_total 'op="frequency_release"') - release_before))
    lease=$(($(metric_sum "$capped_url" regie_store_roundtrips_total 'op="lease"') - lease_before))
    sample=$(status_sample "$capped_url$SLOT_PATH?uid=loadtest-sample" 20)
    anomalies=$(wrk_anomalies regie-capped-uid)
    measure_frozen_store "$capped_url"
    # The target's ratio: capped and uncapped decisions with the same random uids, in
    # alternating rounds as the other comparisons (a single run of each swings by a third).
    compare_rounds capped-vs-uid "$capped_url" "$capped_pid" "$REGIE_URL" "$REGIE_PID" \
        "$UID_SCRIPT" "$SLOT_PATH" uid
    free_uid_rps=$CMP_BARE
    local uid_rounds_row="$CMP_REGIE|$free_uid_rps|$CMP_RATIO|$CMP_NOTE"
    # The same capped decisions for browsers that keep their frequency state (tag.js): a new
    # viewer each request, with an empty state, against the uncapped decisions with the same
    # random uids and no state, which pay nothing for it.
    freq_before=$(metric_sum "$capped_url" regie_store_roundtrips_total 'op="frequency"')
    CMP_BASELINE_ARGS=("$UID_SCRIPT" "$SLOT_PATH" uid)
    compare_rounds capped-kept-vs-uid "$capped_url" "$capped_pid" "$REGIE_URL" "$REGIE_PID" \
        "$UID_SCRIPT" "$SLOT_PATH" kept
    CMP_BASELINE_ARGS=()
    local kept_trips kept_sample
    kept_trips=$(($(metric_sum "$capped_url" regie_store_roundtrips_total 'op="frequency"') - freq_before))
    kept_sample=$(status_sample "$capped_url$SLOT_PATH?uid=loadtest-sample&fs=" 20)
    # Stopped before the last reference runs: it would only poll, but it should not take CPU.
    stop "$capped_pid"

    ticks=$(cpu_ticks "$REGIE_PID")
    free_rps=$(run_wrk regie-uncapped-nouid "$REGIE_URL" "$UID_SCRIPT" "$SLOT_PATH" none)
    free_cpu=$(cpu_us_per_request $(($(cpu_ticks "$REGIE_PID") - ticks)) \
        "$(wrk_requests regie-uncapped-nouid)")

    add_row "GET {slot}/ad uncapped, no uid (req/s)" "$free_rps" "-" "-" \
        "$(with_anomalies regie-uncapped-nouid "default inventory, random_uid.lua without uid")"
    add_row "GET {slot}/ad uncapped, uid (req/s)" "$free_uid_rps" "-" "-" \
        "default inventory, a random uid per request; median of $ROUNDS rounds"
    note="baseline: uncapped without uid; Redis round trips per request:"
    note+=" frequency $(ratio "$freq" "$requests"), release $(ratio "$release" "$requests"),"
    note+=" lease $(awk -v l="$lease" -v r="$requests" 'BEGIN { if (r > 0) printf "%.3f", l / r }'); after: $sample"
    [[ -n $anomalies ]] && note+="; $anomalies"
    add_row "GET {slot}/ad caps+freq, uid (req/s)" "$capped_rps" "$free_rps" \
        "$(ratio "$capped_rps" "$free_rps")" "$note; one run of each"
    local kept_row="$CMP_REGIE|$CMP_BARE|$CMP_RATIO|$CMP_NOTE"
    IFS='|' read -r c b r n <<<"$uid_rounds_row"
    add_row "  caps+freq uid / uncapped uid" "$c" "$b" "$r" \
        "baseline: uncapped with the same random uids (target >= 0.6); $n"
    IFS='|' read -r c b r n <<<"$kept_row"
    add_row "  caps+freq kept state (fs=) / uncapped uid" "$c" "$b" "$r" \
        "a random uid and an empty frequency state (a new tag.js viewer) per request, vs uncapped with the same random uids and no state (target >= 0.6); frequency round trips: $kept_trips; after: $kept_sample; $n"
    # Redis and wrk take much of the two cores in the capped run; regie's own CPU per request
    # gives the ratio regie would reach where it alone is the bottleneck.
    add_row "  Redis CPU per decision (us), caps+freq" "$redis_cpu" "-" "-" \
        "every Redis process (INFO used_cpu_*); the frequency commands (ZREMRANGEBYSCORE, ZADD, PEXPIRE, ZCARD) $freq_usec us of it (INFO commandstats); Redis memory $redis_memory B per new viewer (used_memory)"
    add_row "  regie CPU per decision (us), caps+freq" "$capped_cpu" "$free_cpu" \
        "$(ratio "$free_cpu" "$capped_cpu")" \
        "baseline: uncapped, no uid; ratio = uncapped / capped CPU: throughput ratio with Redis and wrk on other cores"
}

# The same frequency-capped decisions with every Redis process frozen (SIGSTOP): the store's
# breaker must keep public requests from waiting on it for more than
# REGIE_STORE_REQUEST_TIMEOUT_MS (50 ms), serving them without the frequency-capped campaigns.
# Compares the latency percentiles with those of the run before, Redis answering.
measure_frozen_store() {
    local url=$1 rps p50 p99 before_p99 note
    log "freezing Redis (SIGSTOP) for one run"
    kill -STOP "${REDIS_PIDS[@]}"
    rps=$(run_wrk regie-capped-uid-frozen "$url" "$UID_SCRIPT" "$SLOT_PATH" uid)
    kill -CONT "${REDIS_PIDS[@]}"
    p50=$(wrk_latency_ms regie-capped-uid-frozen 50%)
    p99=$(wrk_latency_ms regie-capped-uid-frozen 99%)
    before_p99=$(wrk_latency_ms regie-capped-uid 99%)
    note="baseline: the run before, Redis answering (p99 $before_p99 ms); target: regie p99 < 50 ms;"
    note+=" p50 $p50 ms; $rps req/s; first breaker log lines: $(grep -c 'store slow or unreachable' "$OUT/regie-capped.log" || true)"
    add_row "  caps+freq uid, Redis frozen: p99 (ms)" "$p99" "$before_p99" "$(ratio "$p99" "$before_p99")" \
        "$(with_anomalies regie-capped-uid-frozen "$note")"
}

# ------------------------------------------------------------------------------- main

# Whether measurement NAME runs: every one does unless LOADTEST_ONLY names some.
# Sends at least N distinct viewers to regie at URL as decisions of the capped slot: runs of
# wrk with loadtest/random_uid.lua (a random 31-bit uid per request, so a million requests
# repeat a few hundred viewers at most) until N requests are answered; prints how many were.
send_viewers() {
    local name=$1 url=$2 n=$3 sent=0 run=0
    while ((sent < n)); do
        run=$((run + 1))
        run_wrk "$name-$run" "$url" "$UID_SCRIPT" "$SLOT_PATH" uid >/dev/null
        sent=$((sent + $(wrk_requests "$name-$run")))
    done
    printf '%s' "$sent"
}

# Bytes per viewer: the growth from BEFORE to AFTER (in UNIT bytes) over VIEWERS.
per_viewer() {
    awk -v a="$2" -v b="$1" -v n="$3" -v u="$4" 'BEGIN { if (n > 0) printf "%.0f", (a - b) * u / n; else print "-" }'
}

# Memory per viewer of frequency histories, LOADTEST_VIEWERS distinct viewers in two halves,
# on the embedded store (regie's VmRSS: bounded by REGIE_MAX_VIEWER_HISTORIES) and on Redis
# (used_memory and keys: bounded by each cap's window, a day in the capped inventory).
measure_audience() {
    local half=$((${LOADTEST_VIEWERS:-1000000} / 2)) url pid rss0 rss1 rss2 sent1 sent2 \
        mem0 mem1 mem2 note
    spawn_regie regie-audience-embedded REGIE_REDIS_URL= REGIE_REDIS_CLUSTER= \
        REGIE_INVENTORY="$CAPPED_INVENTORY"
    url=$SPAWNED_URL
    pid=$LAST_PID
    rss0=$(rss_mib "$pid")
    sent1=$(send_viewers audience-embedded-1 "$url" "$half")
    rss1=$(rss_mib "$pid")
    sent2=$(send_viewers audience-embedded-2 "$url" "$half")
    rss2=$(rss_mib "$pid")
    stop "$pid"
    note="VmRSS MiB: ${rss0% *} at start, ${rss1% *} after $sent1 viewers, ${rss2% *} after $((sent1 + sent2));"
    note+=" bytes per viewer: first half $(per_viewer "${rss0% *}" "${rss1% *}" "$sent1" 1048576),"
    note+=" second half $(per_viewer "${rss1% *}" "${rss2% *}" "$sent2" 1048576)"
    add_row "audience, embedded store (B/viewer)" "$(per_viewer "${rss0% *}" "${rss2% *}" $((sent1 + sent2)) 1048576)" \
        "-" "-" "$note"

    spawn_regie regie-audience-redis REGIE_KEY_PREFIX=loadaudience REGIE_INVENTORY="$CAPPED_INVENTORY"
    url=$SPAWNED_URL
    pid=$LAST_PID
    mem0=$(redis_info_sum used_memory)
    sent1=$(send_viewers audience-redis-1 "$url" "$half")
    mem1=$(redis_info_sum used_memory)
    sent2=$(send_viewers audience-redis-2 "$url" "$half")
    mem2=$(redis_info_sum used_memory)
    stop "$pid"
    note="Redis used_memory MiB: $(awk -v m="$mem0" 'BEGIN { printf "%.0f", m / 1048576 }') before,"
    note+=" $(awk -v m="$mem2" 'BEGIN { printf "%.0f", m / 1048576 }') after $((sent1 + sent2)) viewers;"
    note+=" bytes per viewer: first half $(per_viewer "$mem0" "$mem1" "$sent1" 1),"
    note+=" second half $(per_viewer "$mem1" "$mem2" "$sent2" 1); each expires with its cap's window"
    add_row "audience, Redis (B/viewer)" "$(per_viewer "$mem0" "$mem2" $((sent1 + sent2)) 1)" "-" "-" "$note"
}

selected() { [[ -z ${LOADTEST_ONLY:-} || ",$LOADTEST_ONLY," == *",$1,"* ]]; }

# Fixed-rate latency: decisions, then one-token beacons, at half of the bare handler's
# saturating rate for the same answer, so that both servers have headroom and the percentiles
# show the cost of a request rather than queueing. Saturation is what the comparisons above
# measured (the median of the bare handler's rounds); when they were skipped, one wrk run of
# the bare handler measures it here.
measure_fixed_rate() {
    fixed_rate_row decision "$SLOT_PATH" "$(wc -c <"$FIRST_DECISION")" application/json \
        "$BARE_DECISION_RPS" "GET {slot}/ad" ""
    fixed_rate_row impression "$(beacon_path)" 43 image/gif "$BARE_BEACON_RPS" \
        "GET /v1/i/{token}" " one token;"
}

# One fixed-rate row: PATH on regie and on a bare handler answering BYTES of CONTENT_TYPE, at
# half of SATURATION (measured here when empty), labelled LABEL, with NOTE in its notes.
fixed_rate_row() {
    local name=$1 path=$2 bytes=$3 content_type=$4 saturation=$5 label=$6 note=$7 rate
    start_bare "bare-$name-rate" "$bytes" "$content_type"
    [[ -n $saturation ]] || saturation=$(run_wrk "bare-$name-saturation" "$BARE_URL$path")
    rate=$(half_rate "$saturation")
    compare_latency "$name-rate" "$REGIE_URL$path" "$BARE_URL$path" "$rate"
    stop "$BARE_PID"
    note="target <= 1.2 (ratio of the p99s);$note oha -q $rate -c $CONNECTIONS, latency corrected;"
    add_row "$label at $rate/s: p50/p99/p99.9 ms" "$LAT_REGIE" "$LAT_BARE" "$LAT_RATIO" \
        "$note $LAT_NOTE"
}

# Half of RPS, rounded down to a multiple of 1 000 (at least 1 000): a round rate to read.
half_rate() { awk -v r="$1" 'BEGIN { n = int(r / 2000) * 1000; print (n < 1000 ? 1000 : n) }'; }

# Inventory scale: a 100 000-campaign inventory put through the admin API into a regie of its
# own (its own key prefix in the same Redis, so the other instances keep their inventory).
# The realistic profile of scripts/gen-inventory.py is tried first; when the API refuses it
# as too large (413), the lean profile, which fits, is put instead, and the note says so.
# The time runs from sending the PUT until a poller (poll_until_served) gets a decision of
# SCALE_SLOT_PATH, a slot only the new inventory has: validation, the store write, the
# compilation of the snapshot and its pick-up. Then decisions of that slot against the bare
# handler, as measure_decision does.
measure_inventory_scale() {
    local url pid doc="$WORK/inventory-scale.json" profile generated check_ms started status \
        put_ms served_ms poller rss_before rss_after rss_loaded refused="" bytes note sample \
        put_times put_median first_phases i leases_before capped leased_ms reads_before \
        redis_before reads redis_secs \
        decision="$OUT/decision-scale.json" listing
    spawn_regie regie-scale REGIE_KEY_PREFIX=loadscale
    url=$SPAWNED_URL
    pid=$LAST_PID
    rss_before=$(rss_mib "$pid")
    for profile in realistic lean; do
        log "generating a $SCALE_CAMPAIGNS-campaign inventory, profile $profile"
        generated=$(python3 "$ROOT/scripts/gen-inventory.py" --campaigns "$SCALE_CAMPAIGNS" \
            --profile "$profile" "$doc") || die "scripts/gen-inventory.py failed"
        echo "$generated" >"$OUT/inventory-scale-$profile.json"
        started=$(now_ms)
        "$REGIE_BIN" check "$doc" >"$OUT/inventory-scale-$profile.check.txt" 2>&1 ||
            die "the generated inventory is not valid (see $OUT/inventory-scale-$profile.check.txt)"
        check_ms=$(($(now_ms) - started))
        # Counted before the PUT: reading the document takes Python most of a second.
        capped=$(python3 -c 'import json, sys
print(sum(bool({"total_impressions", "daily_impressions"} & set(c.get("caps", {})))
          for c in json.load(open(sys.argv[1]))["campaigns"]))' "$doc")
        spawn poll-scale-$profile poll_until_served "$url$SCALE_SLOT_PATH" 60
        poller=$LAST_PID
        leases_before=$(metric_sum "$url" regie_store_roundtrips_total 'op="lease"')
        reads_before=$(redis_info_sum total_reads_processed) redis_before=$(redis_cpu_secs)
        started=$(now_ms)
        # curl may fail to send the rest of a body the server already refused: the status says.
        status=$(curl --silent --max-time 60 -X PUT -H "Authorization: Bearer $ADMIN_TOKEN" \
            -H 'Content-Type: application/json' --data-binary "@$doc" \
            --output "$OUT/inventory-scale-$profile.put.json" --write-out '%{http_code}' \
            "$url/v1/admin/inventory" || true)
        put_ms=$(($(now_ms) - started))
        if [[ $status == 413 && $profile == realistic ]]; then
            stop "$poller"
            bytes=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["bytes"])' "$generated")
            refused="realistic profile ($bytes B) refused with 413, lean profile put instead; "
            continue
        fi
        [[ $status == 200 ]] ||
            die "PUT /v1/admin/inventory answered $status (see $OUT/inventory-scale-$profile.put.json)"
        wait "$poller" || die "no decision of $SCALE_SLOT_PATH within 60 s of the PUT"
        forget "$poller"
        served_ms=$(($(tail -1 "$OUT/poll-scale-$profile.log") - started))
        first_phases=$(put_phases "$OUT/regie-scale.log" "$started")
        break
    done
    # A capped campaign serves once the instance holds a block of its budget: the walk that
    # follows a new version leases one for each, in batches (src/delivery.rs).
    leased_ms=$(wait_leased "$url" $((leases_before + capped)) "$started" 60)
    reads=$(awk -v a="$(redis_info_sum total_reads_processed)" -v b="$reads_before" \
        'BEGIN { printf "%.0f", a - b }')
    redis_secs=$(awk -v a="$(redis_cpu_secs)" -v b="$redis_before" 'BEGIN { printf "%.2f", a - b }')
    rss_after=$(rss_mib "$pid")
    # The same document again: each PUT answers once the instance serves it, so its time is
    # the time until served; the median of them all is the row's figure (one PUT alone is at
    # the mercy of the machine's moment).
    put_times=("$put_ms")
    for ((i = 1; i < SCALE_PUTS; i++)); do
        started=$(now_ms)
        status=$(curl --silent --max-time 60 -X PUT -H "Authorization: Bearer $ADMIN_TOKEN" \
            -H 'Content-Type: application/json' --data-binary "@$doc" --output /dev/null \
            --write-out '%{http_code}' "$url/v1/admin/inventory" || true)
        [[ $status == 200 ]] || die "PUT /v1/admin/inventory answered $status (again)"
        put_times+=("$(($(now_ms) - started))")
    done
    put_median=$(printf '%s\n' "${put_times[@]}" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')

    curl --silent --fail --max-time 5 -A "$BROWSER_UA" --output "$decision" \
        "$url$SCALE_SLOT_PATH" || die "GET $SCALE_SLOT_PATH failed on the new inventory"
    listing=$(python3 -c 'import json, sys
print(sum(sys.argv[2] in c["slots"] for c in json.load(open(sys.argv[1]))["campaigns"]))' \
        "$doc" "$SCALE_SLOT")
    start_bare bare-scale "$(wc -c <"$decision")" application/json
    compare_rounds scale "$url$SCALE_SLOT_PATH" "$pid" "$BARE_URL$SCALE_SLOT_PATH" "$BARE_PID"
    stop "$BARE_PID"
    rss_loaded=$(rss_mib "$pid")
    sample=$(status_sample "$url$SCALE_SLOT_PATH" 20)
    stop "$pid"

    note="the first PUT's $capped capped campaigns, that PUT answered after $put_ms ms; - if not"
    note+=" within 60 s; Redis from the PUT until then (the PUT's write included): $reads reads"
    note+=" of commands (INFO total_reads_processed), $redis_secs s of CPU"
    add_row "  every capped budget leased (ms after the PUT)" "$leased_ms" "-" "-" "$note"
    note="target <= 1000; ${refused}profile $profile: $generated; median of ${#put_times[@]} PUTs,"
    note+=" each answered once served: ${put_times[*]} ms; the first served a decision of the new"
    note+=" slot after $served_ms ms ($first_phases); regie check took $check_ms ms"
    add_row "PUT $SCALE_CAMPAIGNS campaigns until served (ms)" "$put_median" "-" "-" "$note"
    # Right after the PUT, the allocator still holds what parsing and compiling freed; it gives
    # it back under the load that follows, so the figure after the decisions is the lasting one.
    note="VmRSS after the decisions; baseline: before the PUT (default inventory);"
    note+=" $(awk -v a="${rss_loaded% *}" -v b="${rss_before% *}" -v n="$SCALE_CAMPAIGNS" \
        'BEGIN { printf "%.1f", (a - b) * 1024 / n }') KiB per campaign;"
    note+=" right after the PUT ${rss_after% *} MiB; peak (VmHWM) ${rss_loaded#* } MiB"
    add_row "  regie VmRSS, $SCALE_CAMPAIGNS campaigns (MiB)" "${rss_loaded% *}" "${rss_before% *}" \
        "$(ratio "${rss_loaded% *}" "${rss_before% *}")" "$note"
    note="target >= 0.85; $listing campaigns list $SCALE_SLOT; body $(wc -c <"$decision") B;"
    note+=" $CMP_NOTE; after: $sample"
    add_row "GET {slot}/ad, $SCALE_CAMPAIGNS campaigns (req/s)" "$CMP_REGIE" "$CMP_BARE" \
        "$CMP_RATIO" "$note"
}

# Where the time of an inventory PUT went, from regie's log LOG (JSON lines) and the time
# STARTED (now_ms) the PUT was sent: when the new version was written to the store, and when
# each compilation of it began serving (the PUT's own, and the one its publication woke).
put_phases() {
    python3 - "$1" "$2" <<'PY'
import datetime as dt, json, sys
started = int(sys.argv[2])
written, served, parse_ms, write_ms = None, [], None, None
for line in open(sys.argv[1], encoding="utf-8", errors="replace"):
    try:
        entry = json.loads(line)
        at = dt.datetime.fromisoformat(entry["timestamp"].replace("Z", "")[:26])
    except (ValueError, KeyError, TypeError):
        continue
    ms = round(at.replace(tzinfo=dt.timezone.utc).timestamp() * 1000) - started
    if ms < 0:
        continue
    if entry.get("message") == "inventory document parsed and validated" and parse_ms is None:
        parse_ms = entry.get("parse_ms")
    if entry.get("message") == "inventory written through the admin API" and written is None:
        written, write_ms = ms, entry.get("write_ms")
    elif entry.get("message") == "serving inventory version":
        served.append(str(ms))
print(f"regie's log: parsed and validated in {'-' if parse_ms is None else parse_ms} ms, then"
      f" written to the store in {'-' if write_ms is None else write_ms} ms (written after"
      f" {'-' if written is None else written} ms), serving after {' and '.join(served) or '-'} ms")
PY
}

# Polls regie at BASE until its lease round trips (regie_store_roundtrips_total{op="lease"})
# reach COUNT, for at most SECS seconds; prints the milliseconds since STARTED (now_ms) when
# they did, or - when they did not.
wait_leased() {
    local base=$1 count=$2 started=$3 deadline=$((SECONDS + $4))
    while ((SECONDS < deadline)); do
        if (($(metric_sum "$base" regie_store_roundtrips_total 'op="lease"') >= count)); then
            echo $(($(now_ms) - started))
            return
        fi
        sleep 0.02
    done
    echo -
}

# Polls URL, as a browser, until it answers 200, for at most SECS seconds; prints the time it
# did (now_ms). Runs in the background while measure_inventory_scale puts the inventory.
poll_until_served() {
    local url=$1 deadline=$((SECONDS + $2))
    while ((SECONDS < deadline)); do
        if [[ $(curl --silent --max-time 2 -A "$BROWSER_UA" --output /dev/null \
            --write-out '%{http_code}' "$url") == 200 ]]; then
            now_ms
            return 0
        fi
        sleep 0.005
    done
    return 1
}

main() {
    local name only=()
    IFS=, read -ra only <<<"${LOADTEST_ONLY:-}"
    for name in "${only[@]}"; do
        [[ " ${MEASUREMENTS[*]} " == *" $name "* ]] ||
            die "LOADTEST_ONLY: no measurement $name (there are: ${MEASUREMENTS[*]})"
    done
    mkdir -p "$OUT"
    ensure_tools
    build
    start_redis
    start_regie
    fetch_decision
    for name in "${MEASUREMENTS[@]}"; do
        if selected "$name"; then "measure_$name"; fi
    done
    print_table | tee "$OUT/table.txt"
}

main "$@"

#!/usr/bin/env bash
# Two builds of regie, one against the other, in alternating rounds of wrk.
#
#   loadtest/ab.sh OLD_BIN NEW_BIN [decision|capped|impression ...]
#
# For a change whose effect is a few percent, which a single run of each build cannot show on
# a shared virtual machine whose speed moves by a quarter within minutes. Both builds run as
# scripts/loadtest.sh runs regie (production settings, 2 workers, a redis-server of the
# script's own, each build under its own key prefix), one loaded at a time; each round runs
# wrk against the old build, then the new one. Prints requests/s and CPU per request of each
# round and the median of the rounds' ratios (new / old).
#
#   decision    GET /v1/slots/Publicit%C3%A9%202/ad, the default inventory
#   capped      GET /v1/slots/banner/ad?uid=<random>, loadtest/inventory-capped.json
#   impression  the impression beacon of one decision (one token, de-duplicated)
#   scale       GET /v1/slots/une-2/ad, the 100 000-campaign inventory of
#               scripts/gen-inventory.py (realistic profile), loaded at start
#
# Each round also prints Redis's CPU per request: one build is loaded at a time, so what Redis
# does meanwhile (leases, flushes) is that build's. The same binary under two settings is
# compared through a wrapper script that exports the setting and execs the binary.
#
# AB_ROUNDS (5), AB_DURATION (10s), AB_CONNECTIONS (32).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly ROOT
(($# >= 2)) || { sed -n '2,23p' "$0" >&2; exit 2; }
readonly OLD=$1 NEW=$2
shift 2
MEASURES=("$@")
((${#MEASURES[@]})) || MEASURES=(decision capped impression)
readonly ROUNDS=${AB_ROUNDS:-5} DURATION=${AB_DURATION:-10s} CONNECTIONS=${AB_CONNECTIONS:-32}
# shellcheck source=loadtest/common.sh
source "$ROOT/loadtest/common.sh"

install_missing wrk redis-server
start_redis
REDIS_PID=${PIDS[-1]}

# start NAME BIN PREFIX [VAR=VALUE ...]: sets STARTED_PID and STARTED_PORT.
start() {
    local name=$1 bin=$2 prefix=$3 port
    shift 3
    port=$(free_port)
    (
        cd "$ROOT"
        regie_env "$port" 2 ab-admin-token-0123456789abcdefghij
        export REGIE_KEY_PREFIX=$prefix
        if (($#)); then export "$@"; fi
        exec "$bin"
    ) >"$OUT/$name.log" 2>&1 &
    STARTED_PID=$! STARTED_PORT=$port
    PIDS+=("$STARTED_PID")
    wait_up "http://127.0.0.1:$port/readyz"
}

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# wrk_round NAME PID URL [script args ...]: prints requests/s, then µs of CPU per request of
# regie and of Redis. WRK_SCRIPT holds wrk's -s option, if any.
wrk_round() {
    local name=$1 pid=$2 url=$3 ticks redis_ticks requests
    shift 3
    ticks=$(cpu_ticks "$pid") redis_ticks=$(cpu_ticks "$REDIS_PID")
    wrk -t2 -c"$CONNECTIONS" -d"$DURATION" -H "User-Agent: $UA" "${WRK_SCRIPT[@]}" "$url" "$@" \
        >"$OUT/$name.wrk"
    ticks=$(($(cpu_ticks "$pid") - ticks)) redis_ticks=$(($(cpu_ticks "$REDIS_PID") - redis_ticks))
    requests=$(awk '/requests in/ { print $1 }' "$OUT/$name.wrk")
    awk -v r="$(awk '/^Requests\/sec:/ { print $2 }' "$OUT/$name.wrk")" -v t="$ticks" \
        -v rt="$redis_ticks" -v n="$requests" -v hz="$(getconf CLK_TCK)" \
        'BEGIN { printf "%.0f %.1f %.1f\n", r, t / hz * 1e6 / n, rt / hz * 1e6 / n }'
}

median() { sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

for measure in "${MEASURES[@]}"; do
    extra=() path=/v1/slots/Publicit%C3%A9%202/ad
    case $measure in
        decision | impression) ;;
        capped)
            extra=(REGIE_INVENTORY=loadtest/inventory-capped.json)
            path=/v1/slots/banner/ad
            ;;
        scale)
            if [[ ! -f $OUT/inventory-scale.json ]]; then
                python3 "$ROOT/scripts/gen-inventory.py" --profile realistic \
                    "$OUT/inventory-scale.json" >/dev/null
            fi
            extra=(REGIE_INVENTORY="$OUT/inventory-scale.json")
            path=/v1/slots/une-2/ad
            ;;
        *) echo "unknown measure: $measure" >&2; exit 2 ;;
    esac
    start "old-$measure" "$OLD" "abold$measure" "${extra[@]}"
    old_pid=$STARTED_PID old_port=$STARTED_PORT
    start "new-$measure" "$NEW" "abnew$measure" "${extra[@]}"
    new_pid=$STARTED_PID new_port=$STARTED_PORT
    old_path=$path new_path=$path
    if [[ $measure == impression ]]; then
        old_path=$(impression_path "$old_port") new_path=$(impression_path "$new_port")
    fi
    if [[ $measure == capped ]]; then
        WRK_SCRIPT=(-s "$ROOT/loadtest/random_uid.lua") script_args=(-- "$path" uid)
    else
        WRK_SCRIPT=() script_args=()
    fi
    if [[ $measure == scale ]]; then
        # Unmeasured: each instance's first walk leases a block of every capped budget.
        for port in "$old_port" "$new_port"; do
            wrk -t2 -c"$CONNECTIONS" -d5s -H "User-Agent: $UA" "http://127.0.0.1:$port$path" >/dev/null
        done
    fi
    ratios=()
    for round in $(seq "$ROUNDS"); do
        read -r old_rps old_cpu old_redis < <(wrk_round "old-$measure-$round" "$old_pid" \
            "http://127.0.0.1:$old_port$old_path" "${script_args[@]}")
        read -r new_rps new_cpu new_redis < <(wrk_round "new-$measure-$round" "$new_pid" \
            "http://127.0.0.1:$new_port$new_path" "${script_args[@]}")
        ratio=$(awk -v n="$new_rps" -v o="$old_rps" 'BEGIN { printf "%.3f", n / o }')
        ratios+=("$ratio")
        printf '%-10s round %d: old %6d req/s %5.1f us CPU (Redis %4.1f); new %6d req/s %5.1f us CPU (Redis %4.1f); new/old %s\n' \
            "$measure" "$round" "$old_rps" "$old_cpu" "$old_redis" "$new_rps" "$new_cpu" "$new_redis" "$ratio"
    done
    printf '%-10s median new/old: %s\n' "$measure" "$(printf '%s\n' "${ratios[@]}" | median)"
    kill "$old_pid" "$new_pid"
    wait "$old_pid" "$new_pid" 2>/dev/null || true
done
echo "raw outputs: $OUT"

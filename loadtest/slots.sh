#!/usr/bin/env bash
# Decisions of `une-2` on the 100 000-campaign inventory against decisions of the default
# inventory's slot, each against a bare handler answering as many bytes, in alternating rounds.
#
#   loadtest/slots.sh [redis|memory]
#
# scripts/loadtest.sh measures both slots too, but minutes apart; this runs the four servers
# in turn within each round, so that whether a large inventory costs a decision more than the
# default one can be told from the machine's drift. Two regie instances (production settings,
# 2 workers): one on the realistic inventory of scripts/gen-inventory.py, one on
# config/inventory.json; on a redis-server of the script's own (`redis`, the default) under
# two key prefixes, or each on its embedded store (`memory`). Prints each round's requests/s
# and ratios, then the median ratio of each slot.
#
# SLOTS_ROUNDS (5), SLOTS_DURATION (8s), SLOTS_CONNECTIONS (32).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly ROOT
readonly STORE=${1:-redis}
[[ $STORE == redis || $STORE == memory ]] || { sed -n '2,15p' "$0" >&2; exit 2; }
readonly ROUNDS=${SLOTS_ROUNDS:-5} DURATION=${SLOTS_DURATION:-8s}
readonly CONNECTIONS=${SLOTS_CONNECTIONS:-32}
readonly REGIE_BIN=$ROOT/target/release/regie BARE_BIN=$ROOT/target/release/examples/bare
readonly SCALE_PATH=/v1/slots/une-2/ad DEFAULT_PATH=/v1/slots/Publicit%C3%A9%202/ad
# shellcheck source=loadtest/common.sh
source "$ROOT/loadtest/common.sh"

install_missing wrk redis-server
[[ -x $REGIE_BIN && -x $BARE_BIN ]] ||
    { echo "build first: cargo build --release --bin regie --example bare" >&2; exit 1; }
start_redis

# start_regie PREFIX [VAR=VALUE ...]: sets PORT to the port of a new regie once it is ready.
# Not run in a command substitution, whose subshell would keep PIDS to itself.
start_regie() {
    local prefix=$1
    shift
    PORT=$(free_port)
    (
        cd "$ROOT"
        regie_env "$PORT" 2 slots-admin-token-0123456789abcdefghij
        export REGIE_KEY_PREFIX=$prefix
        [[ $STORE == redis ]] || unset REGIE_REDIS_URL
        if (($#)); then export "$@"; fi
        exec "$REGIE_BIN"
    ) >"$OUT/regie-$prefix.log" 2>&1 &
    PIDS+=($!)
    wait_up "http://127.0.0.1:$PORT/readyz"
}

# start_bare URL: sets PORT to the port of a bare handler answering as many bytes as URL does.
start_bare() {
    local bytes
    PORT=$(free_port)
    bytes=$(curl --silent -A "$UA" "$1" | wc -c)
    "$BARE_BIN" --listen "127.0.0.1:$PORT" --body-bytes "$bytes" >/dev/null 2>&1 &
    PIDS+=($!)
    wait_up "http://127.0.0.1:$PORT/"
}

rps() {
    wrk -t2 -c"$CONNECTIONS" -d"$DURATION" -H "User-Agent: $UA" "$1" |
        awk '/^Requests\/sec:/ { printf "%.0f", $2 }'
}

python3 "$ROOT/scripts/gen-inventory.py" --profile realistic "$OUT/inventory-scale.json" >/dev/null
start_regie slotsscale REGIE_INVENTORY="$OUT/inventory-scale.json"
scale=$PORT
start_regie slotsdefault
default=$PORT
start_bare "http://127.0.0.1:$scale$SCALE_PATH"
scale_bare=$PORT
start_bare "http://127.0.0.1:$default$DEFAULT_PATH"
default_bare=$PORT
# Unmeasured: the large inventory's first walk leases a block of every capped budget.
wrk -t2 -c"$CONNECTIONS" -d5s -H "User-Agent: $UA" "http://127.0.0.1:$scale$SCALE_PATH" >/dev/null

scale_ratios=() default_ratios=()
for round in $(seq "$ROUNDS"); do
    a=$(rps "http://127.0.0.1:$scale$SCALE_PATH")
    b=$(rps "http://127.0.0.1:$scale_bare$SCALE_PATH")
    c=$(rps "http://127.0.0.1:$default$DEFAULT_PATH")
    d=$(rps "http://127.0.0.1:$default_bare$DEFAULT_PATH")
    scale_ratios+=("$(awk -v r="$a" -v b="$b" 'BEGIN { printf "%.2f", r / b }')")
    default_ratios+=("$(awk -v r="$c" -v b="$d" 'BEGIN { printf "%.2f", r / b }')")
    printf 'round %d: une-2 %6d / bare %6d = %s; default slot %6d / bare %6d = %s\n' \
        "$round" "$a" "$b" "${scale_ratios[-1]}" "$c" "$d" "${default_ratios[-1]}"
done
median() { printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
echo "median ($STORE store): une-2 $(median "${scale_ratios[@]}"), default slot $(median "${default_ratios[@]}") of the bare handler"
echo "raw outputs: $OUT"

# Helpers shared by loadtest/instructions.sh and loadtest/ab.sh; source it after `set -euo
# pipefail` and after setting ROOT. Sourcing it makes OUT (a fresh directory for the raw
# outputs) and PIDS (processes killed on exit).

# The user agent of an ordinary browser: an empty or library one is a bot's (contract 8).
readonly UA="Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"
OUT=$(mktemp -d)
readonly OUT
PIDS=()

cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

# install_missing COMMAND... : installs the Debian packages of the same names when missing.
install_missing() {
    local missing=() command
    for command in "$@"; do
        command -v "$command" >/dev/null || missing+=("$command")
    done
    if ((${#missing[@]})); then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# wait_up URL: waits up to two minutes (under valgrind a start is slow) for URL to answer.
wait_up() {
    for _ in $(seq 240); do
        curl --silent --output /dev/null --max-time 2 "$1" && return 0
        sleep 0.5
    done
    echo "nothing answers at $1" >&2
    exit 1
}

# start_redis: a redis-server of the script's own, keeping nothing on disk; sets REDIS_PORT.
start_redis() {
    REDIS_PORT=$(free_port)
    redis-server --port "$REDIS_PORT" --save '' --appendonly no --dir "$OUT" >"$OUT/redis.log" 2>&1 &
    PIDS+=($!)
}

# regie_env PORT WORKERS ADMIN_TOKEN: exports regie's settings as scripts/loadtest.sh runs it
# (production, on the script's Redis; per-address limits so high that they never refuse, yet
# every request goes through them). For the subshell that then runs regie.
regie_env() {
    export REGIE_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0" REGIE_LISTEN="127.0.0.1:$1"
    export REGIE_PUBLIC_URL="http://127.0.0.1:$1" REGIE_WORKERS=$2 REGIE_ADMIN_TOKEN=$3
    export REGIE_ENVIRONMENT=production REGIE_DRAIN_DELAY_MS=0
    export REGIE_DECISIONS_PER_SECOND=1000000000 REGIE_IVT_IMPRESSIONS_PER_MINUTE=4000000000
}

# impression_path PORT: the path of the impression beacon of one decision of the default
# inventory's slot, made by the regie on PORT.
impression_path() {
    curl --silent -A "$UA" "http://127.0.0.1:$1/v1/slots/Publicit%C3%A9%202/ad" |
        python3 -c 'import json, sys, urllib.parse; print(urllib.parse.urlsplit(json.load(sys.stdin)["impression_url"]).path)'
}

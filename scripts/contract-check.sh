#!/usr/bin/env bash
# Starts a throwaway regie (debug build, embedded store, loopback, free port) and checks that
# its answers match openapi.yaml with schemathesis (scripts/schemathesis.sh). Stops it on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --quiet --bin regie
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
token="contract-check-$RANDOM$RANDOM-0123456789abcdef"
log=$(mktemp)
REGIE_LISTEN="127.0.0.1:$port" REGIE_ADMIN_TOKEN="$token" REGIE_REDIS_URL="" RUST_LOG=warn \
  "${CARGO_TARGET_DIR:-target}/debug/regie" >"$log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -f "$log"' EXIT

for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null || { cat "$log"; exit 1; }

scripts/schemathesis.sh "http://127.0.0.1:$port" "$token"
if grep -q "panicked" "$log"; then
  echo "regie panicked during the contract check:"
  grep -A5 panicked "$log"
  exit 1
fi

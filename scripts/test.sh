#!/usr/bin/env bash
# Runs every test of regie on a fresh machine: installs the system packages the tests need,
# checks formatting and lints, checks the OpenAPI description against a live instance, then
# runs the unit, integration and browser tests.
#
# The tests start their own redis-server processes (own ports, own directories; a six-node
# Redis Cluster made with redis-cli for the cluster tests); they never
# touch the shared Redis on 127.0.0.1:6379.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-cli >/dev/null || missing+=(redis-tools)
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
{ command -v promtool && command -v prometheus; } >/dev/null || missing+=(prometheus)
command -v docker-compose >/dev/null || missing+=(docker-compose)
command -v curl >/dev/null || missing+=(curl)
if ((${#missing[@]})); then
  echo "==> installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings

echo "==> OpenAPI description against a live instance"
scripts/contract-check.sh

echo "==> operations kit: compose file, Prometheus configuration, alert rules and their tests"
scripts/deploy-check.sh

echo "==> cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --all-targets 2>&1 | tee "$log"
# One closing line for the whole run, summed over every test binary.
awk '/^test result:/ { p += $4; f += $6 } END { printf "all tests: %d passed, %d failed\n", p, f }' "$log"

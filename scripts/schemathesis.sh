#!/usr/bin/env bash
# Property-based tests of a running regie against openapi.yaml, with schemathesis.
#
#   scripts/schemathesis.sh BASE_URL ADMIN_TOKEN [more `st run` options…]
#   scripts/schemathesis.sh http://127.0.0.1:18080 secret-admin-token-of-at-least-32-bytes
#
# The script starts nothing: run regie yourself, on loopback, with the same admin token, e.g.
#   REGIE_LISTEN=127.0.0.1:18080 REGIE_ADMIN_TOKEN=secret-admin-token-of-at-least-32-bytes cargo run
# and use a throwaway instance: the admin operations are exercised too, so the inventory is
# replaced, campaigns and slots are deleted and advertiser keys are reissued.
#
# Schemathesis is installed from PyPI, at a pinned version (its CLI changed incompatibly
# between major versions), into target/venv on first use.
#
# Checks: no answer is a server error, and every answer whose status the spec documents
# matches its schema. The run is bounded: at most ST_MAX_EXAMPLES (30) generated cases per
# operation, one worker, and ST_TIMEOUT (900) seconds overall. Exit status: 0 when every
# check passed, non-zero otherwise. A JUnit report goes to artifacts/schemathesis/; to replay
# a failure: (cd target/schemathesis && ../venv/bin/st replay ID).
#
# Environment: ST_MAX_EXAMPLES, ST_SEED (a fixed seed replays a run), ST_TIMEOUT,
# ST_CHECKS (default not_a_server_error,response_schema_conformance).
set -euo pipefail

readonly ST_VERSION=4.32.5
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly ROOT
readonly VENV="$ROOT/target/venv"
readonly SPEC="$ROOT/openapi.yaml"
readonly REPORT_DIR="$ROOT/artifacts/schemathesis"
# Schemathesis keeps a cache of past failures (replayed first on the next run, and read by
# `st replay ID`) in .schemathesis/ under its working directory: keep it out of the sources.
readonly WORK_DIR="$ROOT/target/schemathesis"

usage() {
    # The comment block at the top of this file.
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}" >&2
    exit 2
}

die() {
    echo "schemathesis.sh: $*" >&2
    exit 2
}

(($# >= 2)) || usage
BASE_URL=${1%/}
ADMIN_TOKEN=$2
shift 2

# Traffic goes to this machine's loopback only, never anywhere else.
if ! [[ $BASE_URL =~ ^http://(127\.[0-9]+\.[0-9]+\.[0-9]+|localhost|\[::1\])(:[0-9]+)?$ ]]; then
    die "BASE_URL must be http://127.x.x.x[:port], http://localhost[:port] or http://[::1][:port], not '$BASE_URL'"
fi
[[ -n $ADMIN_TOKEN ]] || die "ADMIN_TOKEN must not be empty"
[[ -f $SPEC ]] || die "no spec at $SPEC"

# No proxy may carry the requests elsewhere.
export NO_PROXY="127.0.0.1,localhost,::1" no_proxy="127.0.0.1,localhost,::1"
unset HTTP_PROXY HTTPS_PROXY ALL_PROXY http_proxy https_proxy all_proxy

install_schemathesis() {
    if [[ -x $VENV/bin/st ]] && "$VENV/bin/st" --version 2>/dev/null | grep -qF "$ST_VERSION"; then
        return
    fi
    echo "Installing schemathesis $ST_VERSION into $VENV…" >&2
    [[ -x $VENV/bin/python ]] || python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        "schemathesis==$ST_VERSION"
}

check_service() {
    if ! curl --silent --fail --max-time 5 --output /dev/null "$BASE_URL/healthz"; then
        die "nothing answers $BASE_URL/healthz: start regie first (see the header of this script)"
    fi
}

install_schemathesis
check_service
mkdir -p "$REPORT_DIR" "$WORK_DIR"
cd "$WORK_DIR"

seed_args=()
[[ -n ${ST_SEED:-} ]] && seed_args=(--seed "$ST_SEED")

echo "schemathesis $ST_VERSION: $SPEC against $BASE_URL" >&2
# The admin token authenticates every request: it is also valid on the advertiser endpoints,
# and the public ones ignore it. Schemathesis masks it in its output.
status=0
timeout --kill-after=10 "${ST_TIMEOUT:-900}" \
    "$VENV/bin/st" run "$SPEC" \
    --url "$BASE_URL" \
    --header "Authorization: Bearer $ADMIN_TOKEN" \
    --header "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36" \
    --checks "${ST_CHECKS:-not_a_server_error,response_schema_conformance}" \
    --max-examples "${ST_MAX_EXAMPLES:-30}" \
    --workers 1 \
    --request-timeout 10 \
    --max-redirects 0 \
    --generation-database none \
    --report junit \
    --report-dir "$REPORT_DIR" \
    "${seed_args[@]}" \
    "$@" || status=$?

if ((status == 124 || status == 137)); then
    echo "schemathesis.sh: the run exceeded ${ST_TIMEOUT:-900} s and was stopped" >&2
fi
exit "$status"

#!/usr/bin/env bash
# Runs the TUF conformance suite (github theupdateframework/tuf-conformance)
# against Tandem's TUF client (agent/src/tuf) and prints pytest's summary
# line with the time it took.
#
# Usage: scripts/tuf-conformance.sh SUITE_DIR [PYTEST_ARGS...]
#   SUITE_DIR    a checkout of tuf-conformance, outside this repository
#                (e.g. git clone https://github.com/theupdateframework/tuf-conformance
#                && git -C tuf-conformance checkout v2.4.0); nothing of it
#                is committed here
#   PYTEST_ARGS  passed on, e.g. -k test_unsigned_metadata -rA
#
# What it does:
# - needs `faketime` (Debian package faketime: scripts/setup.sh installs it);
# - creates the suite's venv in SUITE_DIR/env from PyPI (pip install -e
#   SUITE_DIR, which pins tuf, securesystemslib and pytest), once;
# - builds agent/examples/tuf-conformance-client.rs (the suite's
#   client-under-test CLI, CLIENT-CLI.md) with CARGO_TARGET_DIR if set;
# - runs pytest with --entrypoint pointing at that binary. There is no
#   .xfails file: every test is expected to pass.
#
# Exit status: pytest's (0 only when no test failed).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
say() { printf '[%(%H:%M:%S)T] tuf-conformance: %s\n' -1 "$*" >&2; }

if (($# < 1)) || [[ ! -d $1/tuf_conformance ]]; then
    echo "usage: $0 SUITE_DIR [PYTEST_ARGS...] (a tuf-conformance checkout)" >&2
    exit 2
fi
SUITE="$(cd "$1" && pwd)"
shift
command -v faketime >/dev/null || {
    echo "tuf-conformance: needs faketime (apt-get install faketime, or scripts/setup.sh)" >&2
    exit 2
}

if ! "$SUITE/env/bin/python" -c 'import tuf, pytest' 2>/dev/null; then
    say "venv in $SUITE/env (PyPI)"
    python3 -m venv "$SUITE/env"
    "$SUITE/env/bin/pip" install -q -e "$SUITE"
fi

say "building the client (agent/examples/tuf-conformance-client.rs)"
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
(cd "$ROOT" && cargo build -q -p tandem --example tuf-conformance-client)
CLIENT="$TARGET_DIR/debug/examples/tuf-conformance-client"

say "suite $(git -C "$SUITE" describe --tags --always 2>/dev/null || echo '(not a git checkout)')"
start=$(date +%s)
set +e
(cd "$SUITE" && ./env/bin/pytest tuf_conformance -q -p no:cacheprovider \
    --entrypoint "$CLIENT" "$@") | tee /dev/stderr | tail -n 1 >"${TMPDIR:-/tmp}/tuf-conformance.$$"
rc=${PIPESTATUS[0]}
set -e
summary=$(cat "${TMPDIR:-/tmp}/tuf-conformance.$$")
rm -f "${TMPDIR:-/tmp}/tuf-conformance.$$"
echo "tuf-conformance: ${summary//=/} (wall $(($(date +%s) - start)) s)"
exit "$rc"

#!/usr/bin/env bash
# Runs the whole test suite. As root, the loop-device tests run for real
# (they are required: TANDEM_TEST_REQUIRE_LOOP=1); otherwise they report
# that they were skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -x "$HOME/.cargo/bin/cargo" ]] && export PATH="$HOME/.cargo/bin:$PATH"
if [[ $(id -u) -eq 0 ]]; then
    export TANDEM_TEST_REQUIRE_LOOP=1
fi
cargo test --workspace --locked "$@"

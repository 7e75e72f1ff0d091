#!/usr/bin/env bash
# Runs the whole test suite. As root, the loop-device tests run for real
# (they are required: TANDEM_TEST_REQUIRE_LOOP=1); otherwise they report
# that they were skipped. Ends with one summary line over all test binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -x "$HOME/.cargo/bin/cargo" ]] && export PATH="$HOME/.cargo/bin:$PATH"
if [[ $(id -u) -eq 0 ]]; then
    export TANDEM_TEST_REQUIRE_LOOP=1
fi
# Interop tests against grub-editenv, fw_printenv, mkimage, bootctl: in CI
# (after scripts/setup.sh) a missing tool is a failure, not a skip.
if [[ ${CI:-} == true ]]; then
    export TANDEM_TEST_REQUIRE_TOOLS=1
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
rc=0
cargo test --workspace --locked "$@" 2>&1 | tee "$log" || rc=$?
passed=$(grep -Eo '^test result: .* ([0-9]+) passed' "$log" | grep -Eo '[0-9]+ passed' | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '^test result: .* ([0-9]+) failed' "$log" | grep -Eo '[0-9]+ failed' | awk '{s+=$1} END {print s+0}')

# The QEMU scenarios (real firmware, bootloader, kernel; ~10 min on two
# cores). TANDEM_SKIP_QEMU=1 skips them, e.g. on a machine without QEMU.
if [[ ${TANDEM_SKIP_QEMU:-} != 1 ]]; then
    mkdir -p work-out
    qrc=0
    scripts/qemu-scenarios.sh 2>&1 | tee "$log.qemu" || qrc=$?
    qp=$(sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\1/p' "$log.qemu" | tail -1)
    qf=$(sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\2/p' "$log.qemu" | tail -1)
    passed=$((passed + ${qp:-0}))
    failed=$((failed + ${qf:-0}))
    if [[ $qrc -ne 0 ]]; then
        rc=$qrc
        [[ -z $qf || $qf -eq 0 ]] && failed=$((failed + 1))
    fi
    rm -f "$log.qemu"
    # Same recipe and inputs, byte-identical slot image, bundle and disk.
    rrc=0
    scripts/check-reproducible.sh 2>&1 | tee "$log.repro" || rrc=$?
    rp=$(sed -n 's/^reproducible: \([0-9]*\) passed, \([0-9]*\) failed$/\1/p' "$log.repro")
    rf=$(sed -n 's/^reproducible: \([0-9]*\) passed, \([0-9]*\) failed$/\2/p' "$log.repro")
    passed=$((passed + ${rp:-0}))
    failed=$((failed + ${rf:-1}))
    [[ $rrc -ne 0 ]] && rc=$rrc
    rm -f "$log.repro"
fi
echo
echo "tests: $passed passed, $failed failed"
exit "$rc"

#!/usr/bin/env bash
# Builds the images and runs the QEMU scenario suite (qemu-tests): update
# A->B->A, health-check / kernel-panic / watchdog fallbacks, power cuts at
# random moments (POWER_CUTS, default 20; SEED to repeat a run), hostile
# bundles, an offline update from a second disk, aarch64 with U-Boot
# (scenario 8; ONLY=8 runs it alone), the debian image with systemd
# (scenario 9; ONLY=9 runs it alone), the update channel with no command
# typed (12) and two guests in a FleetLock group (13; ONLY="12 ,13 " runs
# both). Two VMs at a time.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/tools.sh
images=work-out/images
mkdir -p work-out
scripts/build-images.sh "$images" > work-out/build-images.log 2>&1 || { cat work-out/build-images.log; exit 1; }
scripts/build-images-debian.sh "$images/debian" "$images/vendor.key" > work-out/build-images-debian.log 2>&1 \
    || { cat work-out/build-images-debian.log; exit 1; }
args=(--power-cuts "${POWER_CUTS:-20}" --tandem "$agent")
[[ -n ${SEED:-} ]] && args+=(--seed "$SEED")
[[ -n ${ONLY:-} ]] && args+=(--only "$ONLY")
[[ -n ${CUT_PHASES:-} ]] && args+=(--cut-phases "$CUT_PHASES")
"$qemu" scenarios "$images" "${args[@]}"

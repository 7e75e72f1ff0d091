#!/usr/bin/env bash
# The main job: build the minimal image (its channel variant), boot it in
# QEMU (OVMF + GRUB, TCG) and, with nothing typed in the guest, publish
# updates on a TUF channel served from 127.0.0.1: the guest's daemon takes
# 1.1.0 (health check passes, committed), then a broken 1.2.0 whose health
# check fails, which falls back and is not taken again. Prints a timeline.
# Run scripts/setup.sh first (as root).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/tools.sh
t0=$SECONDS
images=work-out/images
scripts/build-images.sh --demo "$images"
step "demo (QEMU, TCG: about two minutes)"
"$qemu" demo "$images" --tandem "$agent"
step "done in $((SECONDS - t0)) s"

#!/usr/bin/env bash
# The main job: build the minimal image, boot it in QEMU (OVMF + GRUB, TCG),
# install an update A->B over HTTP (health check passes, committed), then a
# broken update whose health check fails, which falls back. Prints a
# timeline. Run scripts/setup.sh first (as root).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/tools.sh
t0=$SECONDS
images=work-out/images
scripts/build-images.sh --demo "$images"
step "demo (QEMU, TCG: about a minute and a half)"
"$qemu" demo "$images"
step "done in $((SECONDS - t0)) s"

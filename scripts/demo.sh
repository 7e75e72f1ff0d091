#!/usr/bin/env bash
# The main job: build the minimal image, boot it in QEMU (OVMF + GRUB, TCG),
# install an update A->B over HTTP (health check passes, committed), then a
# broken update whose health check fails, which falls back. Prints a
# timeline. Run scripts/setup.sh first (as root).
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -x "$HOME/.cargo/bin/cargo" ]] && export PATH="$HOME/.cargo/bin:$PATH"
images=work-out/images
scripts/build-images.sh "$images"
echo
echo "== demo"
target/release/tandem-qemu demo "$images"

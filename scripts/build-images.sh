#!/usr/bin/env bash
# Builds what the QEMU demo and scenarios boot, into OUT (default
# work-out/images): a static tandem agent, the minimal image 1.0.0 as a
# GPT disk (slot a), and signed bundles 1.1.0 (good), 1.2.0 (its health
# check fails), 1.3.0 (its init crashes) and 1.4.0 (it hangs). Reuses the
# kernel download in /var/cache/tandem-image. Then the aarch64 images
# (scripts/build-images-arm64.sh) into OUT/arm64.
#
#   scripts/build-images.sh [--demo] [OUT]
#
# --demo builds only what scripts/demo.sh boots: 1.0.0, 1.1.0 and 1.2.0.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/tools.sh
demo=0
if [[ ${1:-} == --demo ]]; then demo=1; shift; fi
out=$(realpath -m "${1:-work-out/images}")
mkdir -p "$out"
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1767225600}

build_tools
recipe=$PWD/image-recipes/recipes/minimal/recipe.toml
f=$PWD/image-recipes/recipes/minimal/files
[[ -f $out/vendor.key ]] || "$agent" keygen -o "$out/vendor" --comment "demo vendor" >/dev/null
img_out=$out
img_common=(--agent "$agent" --init "$init" --key "$out/vendor.key" --out "$out" --cache /var/cache/tandem-image)
# Alone first: it fills the kernel and busybox cache the others read.
build_image "minimal 1.0.0 (disk)" "$recipe" --disk
wait_images
build_image "minimal 1.1.0 (bundle)" "$recipe" --version 1.1.0
build_image "minimal 1.2.0 (bundle, failing health check)" "$recipe" --version 1.2.0 \
    --file /usr/lib/tandem/health-check="$f/health-check-broken"
if ((!demo)); then
    build_image "minimal 1.3.0 (bundle, init crashes: kernel panic)" "$recipe" --version 1.3.0 \
        --file /sbin/init="$f/init-crash"
    build_image "minimal 1.4.0 (bundle, boot hangs with the watchdog armed)" "$recipe" --version 1.4.0 \
        --file /usr/lib/tandem/on-boot="$f/on-boot-hang"
fi
wait_images
if ((!demo)); then
    scripts/build-images-arm64.sh "$out/arm64" "$out/vendor.key"
fi
step "images in $out"

#!/usr/bin/env bash
# Builds what QEMU scenario 8 (aarch64, U-Boot) boots, into $1 (default
# work-out/images/arm64), signed with the key $2 (default: the x86 images'
# vendor.key beside it, created if missing): static aarch64 tandem agent
# and initramfs (cross-built), the minimal-arm64 image 1.0.0 as a GPT disk
# (slot a) with its U-Boot board environment, and signed bundles 1.1.0
# (good) and 1.2.0 (its health check fails). Needs scripts/setup.sh (the
# aarch64 cross compiler, Rust target and the arm64 package lists).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/tools.sh
out=$(realpath -m "${1:-work-out/images/arm64}")
key=$(realpath -m "${2:-$out/../vendor.key}")
mkdir -p "$out"
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1767225600}
triple=aarch64-unknown-linux-gnu

build_tools # the image builder (x86_64)
step "cross-building the static aarch64 agent and initramfs"
# ring compiles C: the Debian cross gcc, for compiling and linking. Static
# glibc as on x86_64 (libc6-dev-arm64-cross has libc.a).
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked -q -p tandem -p tandem-initramfs --target $triple
recipe=$PWD/image-recipes/recipes/minimal-arm64/recipe.toml
files=$PWD/image-recipes/recipes/minimal/files

[[ -f $key ]] || "$agent" keygen -o "${key%.key}" --comment "demo vendor" >/dev/null
img_out=$out
img_common=(--agent "$tdir/$triple/release/tandem" --init "$tdir/$triple/release/tandem-initramfs"
    --key "$key" --out "$out" --cache /var/cache/tandem-image)
build_image "minimal-arm64 1.0.0 (disk, U-Boot env)" "$recipe" --disk
wait_images
build_image "minimal-arm64 1.1.0 (bundle)" "$recipe" --version 1.1.0
build_image "minimal-arm64 1.2.0 (bundle, failing health check)" "$recipe" --version 1.2.0 \
    --file /usr/lib/tandem/health-check="$files/health-check-broken"
wait_images

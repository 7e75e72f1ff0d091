#!/usr/bin/env bash
# Builds what the QEMU demo and scenarios boot, into $1 (default
# work-out/images): a static tandem agent, the minimal image 1.0.0 as a
# GPT disk (slot a), and signed bundles 1.1.0 (good), 1.2.0 (its health
# check fails), 1.3.0 (its init crashes) and 1.4.0 (it hangs). Reuses the kernel download in /var/cache/tandem-image.
# Then the aarch64 images (scripts/build-images-arm64.sh) into $1/arm64.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -x "$HOME/.cargo/bin/cargo" ]] && export PATH="$HOME/.cargo/bin:$PATH"
out=$(realpath -m "${1:-work-out/images}")
mkdir -p "$out"
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1767225600}

echo "== building the static agent and the tools"
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked -q -p tandem -p tandem-initramfs --target x86_64-unknown-linux-gnu
cargo build --release --locked -q -p tandem-image-recipes -p tandem-qemu-tests
agent=$PWD/target/x86_64-unknown-linux-gnu/release/tandem
init=$PWD/target/x86_64-unknown-linux-gnu/release/tandem-initramfs
img=$PWD/target/release/tandem-image
recipe=$PWD/image-recipes/recipes/minimal/recipe.toml

[[ -f $out/vendor.key ]] || target/release/tandem keygen -o "$out/vendor" --comment "demo vendor" >/dev/null 2>&1 \
    || "$agent" keygen -o "$out/vendor" --comment "demo vendor" >/dev/null
common=(--agent "$agent" --init "$init" --key "$out/vendor.key" --out "$out" --work "$out/work" --cache /var/cache/tandem-image)
echo "== minimal 1.0.0 (disk)";  "$img" build "$recipe" "${common[@]}" --disk
echo "== minimal 1.1.0 (bundle)"; "$img" build "$recipe" "${common[@]}" --version 1.1.0
echo "== minimal 1.2.0 (bundle, failing health check)"
"$img" build "$recipe" "${common[@]}" --version 1.2.0 \
    --file /usr/lib/tandem/health-check="$PWD/image-recipes/recipes/minimal/files/health-check-broken"
f=$PWD/image-recipes/recipes/minimal/files
echo "== minimal 1.3.0 (bundle, init crashes: kernel panic)"
"$img" build "$recipe" "${common[@]}" --version 1.3.0 --file /sbin/init="$f/init-crash"
echo "== minimal 1.4.0 (bundle, boot hangs with the watchdog armed)"
"$img" build "$recipe" "${common[@]}" --version 1.4.0 --file /usr/lib/tandem/on-boot="$f/on-boot-hang"
rm -rf "$out/work"
scripts/build-images-arm64.sh "$out/arm64" "$out/vendor.key"
ls -la "$out"

#!/usr/bin/env bash
# Builds what the QEMU demo and scenarios boot, into $1 (default
# work-out/images): a static tandem agent, the minimal image 1.0.0 as a
# GPT disk (slot a), and signed bundles 1.1.0 (good) and 1.2.0 (its
# health check fails). Reuses the kernel download in /var/cache/tandem-image.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -x "$HOME/.cargo/bin/cargo" ]] && export PATH="$HOME/.cargo/bin:$PATH"
out=$(realpath -m "${1:-work-out/images}")
mkdir -p "$out"
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1767225600}

echo "== building the static agent and the tools"
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked -q -p tandem --target x86_64-unknown-linux-gnu
cargo build --release --locked -q -p tandem-image-recipes -p tandem-qemu-tests
agent=$PWD/target/x86_64-unknown-linux-gnu/release/tandem
img=$PWD/target/release/tandem-image
recipe=$PWD/image-recipes/recipes/minimal/recipe.toml

[[ -f $out/vendor.key ]] || target/release/tandem keygen -o "$out/vendor" --comment "demo vendor" >/dev/null 2>&1 \
    || "$agent" keygen -o "$out/vendor" --comment "demo vendor" >/dev/null
common=(--agent "$agent" --key "$out/vendor.key" --out "$out" --work "$out/work" --cache /var/cache/tandem-image)
echo "== minimal 1.0.0 (disk)";  "$img" build "$recipe" "${common[@]}" --disk
echo "== minimal 1.1.0 (bundle)"; "$img" build "$recipe" "${common[@]}" --version 1.1.0
echo "== minimal 1.2.0 (bundle, failing health check)"
"$img" build "$recipe" "${common[@]}" --version 1.2.0 \
    --file /usr/lib/tandem/health-check="$PWD/image-recipes/recipes/minimal/files/health-check-broken"
rm -rf "$out/work"
ls -la "$out"

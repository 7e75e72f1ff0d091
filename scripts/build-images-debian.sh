#!/usr/bin/env bash
# Builds what QEMU scenario 9 (the debian image, systemd) boots, into $1
# (default work-out/images/debian), signed with the key $2 (default: the x86
# images' vendor.key beside it, created if missing): the debian image 1.0.0
# as a GPT disk (slot a), and signed bundles 1.1.0 (good) and 1.2.0 (its
# health check fails). The mmdebstrap tarball is downloaded once into
# /var/cache/tandem-image/debian and reused (needs scripts/setup.sh:
# mmdebstrap; deb.debian.org reachable for the first build).
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -x "$HOME/.cargo/bin/cargo" ]] && export PATH="$HOME/.cargo/bin:$PATH"
out=$(realpath -m "${1:-work-out/images/debian}")
key=$(realpath -m "${2:-$out/../vendor.key}")
mkdir -p "$out"
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1767225600}
tdir=$(realpath -m "${CARGO_TARGET_DIR:-target}")
triple=x86_64-unknown-linux-gnu

echo "== building the static agent and initramfs, and the image builder"
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked -q -p tandem -p tandem-initramfs --target $triple
cargo build --release --locked -q -p tandem-image-recipes
agent=$tdir/$triple/release/tandem
init=$tdir/$triple/release/tandem-initramfs
img=$tdir/release/tandem-image
recipe=$PWD/image-recipes/recipes/debian/recipe.toml
files=$PWD/image-recipes/recipes/minimal/files

if [[ ! -f $key ]]; then
    "$agent" keygen -o "${key%.key}" --comment "demo vendor" >/dev/null
fi
common=(--agent "$agent" --init "$init" --key "$key" --out "$out" --work "$out/work" --cache /var/cache/tandem-image)
echo "== debian 1.0.0 (disk)"; "$img" build "$recipe" "${common[@]}" --disk
echo "== debian 1.1.0 (bundle)"; "$img" build "$recipe" "${common[@]}" --version 1.1.0
echo "== debian 1.2.0 (bundle, failing health check)"
"$img" build "$recipe" "${common[@]}" --version 1.2.0 --file /usr/lib/tandem/health-check="$files/health-check-broken"
rm -rf "$out/work"
ls -la "$out"

#!/usr/bin/env bash
# Builds what QEMU scenario 9 (the debian image, systemd) boots, into $1
# (default work-out/images/debian), signed with the key $2 (default: the
# x86 images' vendor.key beside it, created if missing): the tandem
# Debian package (scripts/build-deb.sh, lintian-checked), the debian image
# 1.0.0 as a GPT disk (slot a) with the agent installed from that package
# by dpkg, and signed bundles 1.1.0 (good) and 1.2.0 (its health check
# fails). The mmdebstrap tarball is downloaded once into
# /var/cache/tandem-image/debian and reused (needs scripts/setup.sh:
# mmdebstrap; deb.debian.org reachable for the first build).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/tools.sh
out=$(realpath -m "${1:-work-out/images/debian}")
key=$(realpath -m "${2:-$out/../vendor.key}")
mkdir -p "$out"
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1767225600}

build_tools
step "building the tandem package (scripts/build-deb.sh)"
rm -f "$out"/tandem_*.deb
# The package's own time is the last commit's, not the images' epoch.
deb=$(env -u SOURCE_DATE_EPOCH scripts/build-deb.sh --out "$out" --lintian | tail -1)
step "package: $deb"
recipe=$PWD/image-recipes/recipes/debian/recipe.toml
files=$PWD/image-recipes/recipes/minimal/files

[[ -f $key ]] || "$agent" keygen -o "${key%.key}" --comment "demo vendor" >/dev/null
img_out=$out
img_common=(--agent "$deb" --init "$init" --key "$key" --out "$out" --cache /var/cache/tandem-image)
build_image "debian 1.0.0 (disk)" "$recipe" --disk
wait_images
build_image "debian 1.1.0 (bundle)" "$recipe" --version 1.1.0
build_image "debian 1.2.0 (bundle, failing health check)" "$recipe" --version 1.2.0 \
    --file /usr/lib/tandem/health-check="$files/health-check-broken"
wait_images
ls -la "$out"

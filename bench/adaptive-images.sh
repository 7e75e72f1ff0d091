#!/usr/bin/env bash
# adaptive-images.sh - builds the update pairs bench/adaptive-bench.sh
# measures, as ext4 debian slot images with image-recipes (mmdebstrap from
# the configured Debian mirror; cached in /var/cache/tandem-image):
#
#   v1        1.0.0  suite bookworm alone (as released), the base set
#   security  1.1.0  the same packages from bookworm, -updates, -security
#   feature   1.1.0  v1 plus curl
#   large     2.0.0  a very different package set (python3, perl, openssh-server, vim, ...)
#
# Usage: bench/adaptive-images.sh [OUT]   (default work-out/adaptive)
# Writes OUT/NAME/*.rootfs.img and OUT/NAME/*.tnd (zstd, 1 MiB frames
# today; whatever `tandem bundle create` writes), and OUT/vendor.key.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/tools.sh
out=$(realpath -m "${1:-work-out/adaptive}")
mkdir -p "$out"
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1767225600}
build_tools
[[ -f $out/vendor.key ]] || "$agent" keygen -o "$out/vendor" --comment "bench vendor" >/dev/null

recipe() { # NAME VERSION UPDATES PACKAGES
    mkdir -p "$out/recipes/$1"
    cat > "$out/recipes/$1/recipe.toml" <<R
name = "bench-$1"
compatible = "tandem-bench-x86_64"
version = "$2"
security_epoch = 0

[kernel]
package = "linux-image-amd64"
modules = ["virtio_pci", "virtio_blk", "ext4", "overlay", "dm-verity"]
cmdline = "console=ttyS0 panic=5 quiet"

[rootfs]
base = "debian"
suite = "bookworm"
updates = $3
packages = [$4]
filesystem = "ext4"
verity = true

[disk]
esp_mib = 64
slot_mib = 1024
data_mib = 64
R
}
recipe v1 1.0.0 false ''
recipe security 1.1.0 true ''
recipe feature 1.1.0 false '"curl"'
recipe large 2.0.0 false '"python3", "perl", "openssh-server", "vim", "git", "less", "man-db", "rsync"'
for n in v1 security feature large; do
    [[ -n $(ls "$out/$n"/*.tnd 2>/dev/null) ]] && continue
    echo "== $n"
    "$img" build "$out/recipes/$n/recipe.toml" --agent "$agent" --init "$init" \
        --key "$out/vendor.key" --out "$out/$n" --work "$out/work-$n" --cache /var/cache/tandem-image
    rm -rf "$out/work-$n"
done
ls -la "$out"/*/

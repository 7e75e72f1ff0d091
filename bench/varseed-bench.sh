#!/usr/bin/env bash
# How long the initramfs's /var seeding takes on ext4 on a loop device
# (initramfs/examples/varseed-bench.rs): the first boot of an image copies
# the dpkg database's shape (FILES files, default 729, as in the debian
# image), the next image finds it all there. Needs root (loop device).
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d /var/tmp/varseed-bench.XXXXXX)
cleanup() {
    mountpoint -q "$work/mnt" && umount "$work/mnt"
    [[ -n ${dev:-} ]] && losetup -d "$dev"
    rm -rf "$work"
}
trap cleanup EXIT
cargo build -q --release --locked -p tandem-initramfs --example varseed-bench
truncate -s 256M "$work/fs.img"
mkfs.ext4 -q -F "$work/fs.img"
dev=$(losetup --find --show "$work/fs.img")
mkdir "$work/mnt"
mount "$dev" "$work/mnt"
"${CARGO_TARGET_DIR:-target}/release/examples/varseed-bench" "$work/mnt"

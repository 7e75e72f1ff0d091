#!/usr/bin/env bash
# Builds what the QEMU demo and scenarios boot, into OUT (default
# work-out/images): a static tandem agent, the minimal image 1.0.0 as a
# GPT disk (slot a), and signed bundles 1.1.0 (good), 1.2.0 (its health
# check fails), 1.3.0 (its init crashes) and 1.4.0 (it hangs); the
# channel variant into OUT/channel, the systemd-boot variant into
# OUT/sdboot and the Secure Boot one into OUT/uki (below). Reuses the kernel download in
# /var/cache/tandem-image. Then the aarch64 images
# (scripts/build-images-arm64.sh) into OUT/arm64.
#
#   scripts/build-images.sh [--demo] [OUT]
#
# --demo builds only what scripts/demo.sh boots: the plain 1.0.0 disk (the
# rig probes with it) and the channel variant's 1.0.0, 1.1.0 and 1.2.0.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/tools.sh
demo=0
if [[ ${1:-} == --demo ]]; then demo=1; shift; fi
out=$(realpath -m "${1:-work-out/images}")
mkdir -p "$out"
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1767225600}
# The Secure Boot db key the UKI variant is signed with: Debian's ovmf
# snakeoil test key (its passphrase, "snakeoil", is in the package's
# README.Debian; sbsign wants it decrypted), enrolled in the snakeoil vars
# the rig boots. SB_KEY/SB_CERT sign with another.
SB_CERT=${SB_CERT:-/usr/share/ovmf/PkKek-1-snakeoil.pem}
if [[ -z ${SB_KEY:-} ]]; then
    SB_KEY=$out/snakeoil-db.key
    [[ -f $SB_KEY ]] || openssl pkey -in /usr/share/ovmf/PkKek-1-snakeoil.key -passin pass:snakeoil -out "$SB_KEY"
fi

build_tools
recipe=$PWD/image-recipes/recipes/minimal/recipe.toml
f=$PWD/image-recipes/recipes/minimal/files
[[ -f $out/vendor.key ]] || "$agent" keygen -o "$out/vendor" --comment "demo vendor" >/dev/null
img_out=$out
img_common=(--agent "$agent" --init "$init" --key "$out/vendor.key" --out "$out" --cache /var/cache/tandem-image)
# Alone first: it fills the kernel and busybox cache the others read.
build_image "minimal 1.0.0 (disk)" "$recipe" --disk
wait_images
if ((!demo)); then
    build_image "minimal 1.1.0 (bundle)" "$recipe" --version 1.1.0 \
        --file /etc/demo/vendor.conf="$f/etc-vendor-1.1.conf" --file /etc/demo/conflict.conf="$f/etc-conflict-1.1.conf" \
        --file /var/lib/demo/state="$f/var-state-1.1" --file /var/lib/demo/new="$f/var-new-1.1"
    build_image "minimal 1.2.0 (bundle, failing health check)" "$recipe" --version 1.2.0 \
        --file /usr/lib/tandem/health-check="$f/health-check-broken"
    build_image "minimal 1.3.0 (bundle, init crashes: kernel panic)" "$recipe" --version 1.3.0 \
        --file /sbin/init="$f/init-crash"
    build_image "minimal 1.4.0 (bundle, boot hangs with the watchdog armed)" "$recipe" --version 1.4.0 \
        --file /usr/lib/tandem/on-boot="$f/on-boot-hang"
fi
wait_images

# The channel variant (the demo, scenarios 12 and 13): the first root of a
# TUF repository in the image, [channel] pointing at the rig's server and
# the init starting the daemon's loop. Its keys stay beside vendor.key, so
# a rebuild ships the same root. A scenario publishes 1.1.0 (good), 1.2.0
# (its health check fails) and 1.3.0 (good) to a copy of the repository.
ch=$out/channel
if [[ ! -f $ch/repo/keys/root.key ]]; then
    rm -rf "$ch/repo"
    "$agent" repo init "$ch/repo" --channel stable >/dev/null
fi
img_out=$ch
img_common=(--agent "$agent" --init "$init" --key "$out/vendor.key" --out "$ch" --cache /var/cache/tandem-image
    --file /usr/lib/tandem/channel/root.json="$ch/repo/repository/1.root.json"
    --file /etc/tandem/conf.d/60-channel.toml="$f/channel.toml"
    --file /usr/lib/tandem/on-ready="$f/on-ready-daemon")
build_image "minimal 1.0.0 (disk, channel)" "$recipe" --disk
build_image "minimal 1.1.0 (bundle, channel)" "$recipe" --version 1.1.0
build_image "minimal 1.2.0 (bundle, channel, failing health check)" "$recipe" --version 1.2.0 \
    --file /usr/lib/tandem/health-check="$f/health-check-broken"
((demo)) || build_image "minimal 1.3.0 (bundle, channel)" "$recipe" --version 1.3.0
wait_images
# The systemd-boot variant (scenarios 15a-15d): the same recipe booted by
# systemd-boot 252 from BLS entries with boot counting; kernel and initrd
# on the ESP, carried by the bundles as images of their own.
if ((!demo)); then
    img_out=$out/sdboot
    mkdir -p "$img_out"
    img_common=(--agent "$agent" --init "$init" --key "$out/vendor.key" --out "$img_out" --cache /var/cache/tandem-image
        --bootloader systemd-boot)
    build_image "minimal 1.0.0 (disk, systemd-boot)" "$recipe" --disk
    build_image "minimal 1.1.0 (bundle, systemd-boot)" "$recipe" --version 1.1.0
    build_image "minimal 1.2.0 (bundle, systemd-boot, failing health check)" "$recipe" --version 1.2.0 \
        --file /usr/lib/tandem/health-check="$f/health-check-broken"
    build_image "minimal 1.3.0 (bundle, systemd-boot, init crashes)" "$recipe" --version 1.3.0 \
        --file /sbin/init="$f/init-crash"
    wait_images
    # The Secure Boot variant (scenarios 16a-16d): systemd-boot and one
    # unified kernel image per slot, signed with the db key of the OVMF
    # vars the rig boots (Debian's snakeoil test key; docs/security.md says
    # how a vendor uses its own). 1.2.0's images are not signed at all.
    img_out=$out/uki
    mkdir -p "$img_out"
    sb=(--efi-key "$SB_KEY" --efi-cert "$SB_CERT")
    img_common=(--agent "$agent" --init "$init" --key "$out/vendor.key" --out "$img_out" --cache /var/cache/tandem-image
        --bootloader systemd-boot --uki)
    build_image "minimal 1.0.0 (disk, signed UKIs)" "$recipe" --disk "${sb[@]}"
    build_image "minimal 1.1.0 (bundle, signed UKIs)" "$recipe" --version 1.1.0 "${sb[@]}"
    build_image "minimal 1.2.0 (bundle, unsigned UKIs)" "$recipe" --version 1.2.0
    wait_images
    scripts/build-images-arm64.sh "$out/arm64" "$out/vendor.key"
fi
step "images in $out"

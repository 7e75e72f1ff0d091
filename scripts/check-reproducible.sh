#!/usr/bin/env bash
# Builds each shipped image twice from the same recipe and inputs, in two
# different directories, and checks that the outputs (slot image, bundle,
# disk, and for arm64 the U-Boot board environment) are byte-identical.
# Covers minimal (amd64, with GRUB, with systemd-boot, and with signed unified kernel images), minimal-arm64 (when its cross-built agent is
# there: scripts/build-images-arm64.sh, run by the scenario suite, makes
# it) and debian (from the cached mmdebstrap tarball the suite's build
# leaves in /var/cache/tandem-image/debian). Prints "reproducible: N
# passed, M failed".
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/tools.sh
images=work-out/images
[[ -f $images/vendor.key ]] || scripts/build-images.sh "$images" >/dev/null
passed=0 failed=0

# check NAME TRIPLE FILES...: build recipes/NAME twice with the agent and
# initramfs built for TRIPLE (AGENT= another agent: the .deb; ARGS= more
# tandem-image options, LABEL= a name for that variant), compare FILES.
check() {
    local name=$1 triple=$2 label=${LABEL:-$1}
    local -a extra
    read -ra extra <<< "${ARGS:-}"
    shift 2
    local agent=${AGENT:-$tdir/$triple/release/tandem} init=$tdir/$triple/release/tandem-initramfs
    if [[ ! -e $agent ]]; then
        echo "FAIL reproducible $name: no $agent (build the images first)"
        failed=$((failed + 1))
        return
    fi
    for run in 1 2; do
        local d=work-out/repro-$label-$run
        rm -rf "$d"
        "$img" build "image-recipes/recipes/$name/recipe.toml" --agent "$agent" --init "$init" \
            --key "$images/vendor.key" --out "$d" --work "$(mktemp -d /tmp/tandem-repro-$run.XXXX)" \
            --cache /var/cache/tandem-image --disk "${extra[@]}" >/dev/null
    done
    for f in "$@"; do
        local a b
        a=$(sha256sum < "work-out/repro-$label-1/$f" | cut -c1-64)
        b=$(sha256sum < "work-out/repro-$label-2/$f" | cut -c1-64)
        local what=$f
        [[ $label != "$name" ]] && what="$f ($label)"
        if [[ $a == "$b" ]]; then
            echo "PASS reproducible $what ($a)"; passed=$((passed + 1))
        else
            echo "FAIL reproducible $what ($a vs $b)"; failed=$((failed + 1))
        fi
    done
}

check minimal x86_64-unknown-linux-gnu minimal-1.0.0.rootfs.img minimal-1.0.0.tnd minimal-1.0.0.disk.img
LABEL=minimal-sdboot ARGS="--bootloader systemd-boot" \
    check minimal x86_64-unknown-linux-gnu minimal-1.0.0.tnd minimal-1.0.0.disk.img
# Signed UKIs (objcopy's PE timestamp is normalized; sbsign runs under faketime at SOURCE_DATE_EPOCH),
# with the snakeoil db key decrypted as build-images.sh does.
[[ -f $images/snakeoil-db.key ]] ||
    openssl pkey -in /usr/share/ovmf/PkKek-1-snakeoil.key -passin pass:snakeoil -out "$images/snakeoil-db.key"
LABEL=minimal-uki ARGS="--bootloader systemd-boot --uki --efi-key $images/snakeoil-db.key --efi-cert /usr/share/ovmf/PkKek-1-snakeoil.pem" \
    check minimal x86_64-unknown-linux-gnu minimal-1.0.0.tnd minimal-1.0.0.disk.img minimal-1.0.0.uki-b.efi
if [[ -x $tdir/aarch64-unknown-linux-gnu/release/tandem || ${CI:-} == true ]]; then
    check minimal-arm64 aarch64-unknown-linux-gnu minimal-arm64-1.0.0.rootfs.img minimal-arm64-1.0.0.tnd \
        minimal-arm64-1.0.0.disk.img minimal-arm64-1.0.0.uboot-env.img
fi
if [[ -d /var/cache/tandem-image/debian || ${CI:-} == true ]]; then
    # With the package the scenario's image has (build-images-debian.sh).
    AGENT=$(ls "$images"/debian/tandem_*.deb 2>/dev/null | head -1) \
        check debian x86_64-unknown-linux-gnu debian-1.0.0.rootfs.img debian-1.0.0.tnd debian-1.0.0.disk.img
fi
echo "reproducible: $passed passed, $failed failed"
[[ $failed -eq 0 ]]

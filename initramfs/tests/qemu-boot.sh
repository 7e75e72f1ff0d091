#!/usr/bin/env bash
# Boots the Rust /init for real: a cpio with the static binary and the
# Debian kernel's modules, a GPT disk (esp, tandem-root-a, tandem-root-b,
# tandem-data) whose slot a is squashfs with a veritysetup hash tree
# appended, and a slot /sbin/init that prints a marker and powers off.
#
# Scenarios (each one QEMU run under TCG, -no-reboot so a reboot ends it):
#   a  verity boot reaches the slot's init (data nosuid,nodev; /run kept)
#   b  one corrupted data block under verity: the kernel restarts
#      (restart_on_corruption), the slot's init is never reached
#   c  the slot partition is missing: FAILED after tandem.wait, reboot
#   d  blank data partition, mke2fs in the initramfs: formatted, boots
#   e  factory-reset flag on the data partition: wiped, boots
#   f  blank data partition, no mke2fs: boots DEGRADED (tmpfs), marker
#   g  tandem.debug and a bad command line: FAILED, then /bin/sh (busybox
#      in that initramfs; the binary built with --features debug-shell)
#   h  no root hash, policy require_verity = yes: FAILED, reboot
#   i  a LUKS header on the data partition: DEGRADED, never formatted
#   j  an ext4 data partition with a broken group descriptor checksum:
#      the mount fails, e2fsck -p repairs it, it mounts
#   k  a second disk with a full set of tandem partitions, root=PARTUUID=
#      of the first disk's slot: boots from the first disk, ignores the
#      second; l  the same without root=PARTUUID: FAILED, ambiguous
#
# Needs root only for nothing: everything is built in files. Needs
# qemu-system-x86_64, sgdisk, mksquashfs, veritysetup, mke2fs, e2fsck,
# debugfs, cpio, /bin/busybox (static) and an unpacked Debian kernel.
#
# Usage: initramfs/tests/qemu-boot.sh [scenario...]   (default: all)
# Env:   KROOT (default /var/tmp/kernel/root), KREL (6.1.0-56-amd64),
#        INIT (a prebuilt binary; default: build it), KEEP=1 keeps the
#        work dir, TIMEOUT per run in seconds (default 120).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
KROOT=${KROOT:-/var/tmp/kernel/root}
KREL=${KREL:-6.1.0-56-amd64}
TIMEOUT=${TIMEOUT:-120}
MODULES="virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk
crc16 mbcache jbd2 crc32c_generic ext4 squashfs overlay dm-mod dm-bufio reed_solomon dm-verity"
MARKER=TANDEM-TEST-SLOT-INIT-REACHED
kernel=$KROOT/boot/vmlinuz-$KREL
moddir=$KROOT/lib/modules/$KREL

for t in qemu-system-x86_64 sgdisk mksquashfs veritysetup mke2fs cpio; do
    command -v "$t" >/dev/null || { echo "qemu-boot: missing tool $t" >&2; exit 2; }
done
[[ -f $kernel ]] || { echo "qemu-boot: no kernel at $kernel (set KROOT/KREL)" >&2; exit 2; }

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target-initramfs}
build_init() { # [cargo args...]
    (cd "$here" && RUSTFLAGS="-C target-feature=+crt-static" \
        cargo build --release -q -p tandem-initramfs --target x86_64-unknown-linux-gnu "$@")
}
if [[ -z ${INIT:-} ]]; then
    build_init
    INIT=$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release/tandem-initramfs
fi
file -L "$INIT" | grep -q 'static' || { echo "qemu-boot: $INIT is not static" >&2; exit 2; }
# The debug shell only exists with the cargo feature: its own build.
if [[ -z ${INIT_DEBUG:-} ]]; then
    CARGO_TARGET_DIR=$CARGO_TARGET_DIR-debug-shell build_init --features debug-shell
    INIT_DEBUG=$CARGO_TARGET_DIR-debug-shell/x86_64-unknown-linux-gnu/release/tandem-initramfs
fi

work=$(mktemp -d /var/tmp/tandem-qemu-boot.XXXXXX)
if [[ -z ${KEEP:-} ]]; then trap 'rm -rf "$work"' EXIT; else echo "work dir: $work"; fi
cd "$work"

# ---- initramfs: /init + modules (+ mke2fs and its libraries for "d") ----
copy_tool() { # dir program
    local d=$1 prog=$2 lib
    mkdir -p "$d/sbin"
    cp "$prog" "$d/sbin/$(basename "$prog")"
    for lib in $(ldd "$prog" | grep -o '/[^ ]*'); do
        mkdir -p "$d$(dirname "$lib")"
        cp -L "$lib" "$d$lib"
    done
}
mkinitramfs() { # out extra(none|mke2fs|busybox|e2fsck) [require_verity]
    local out=$1 extra=$2 policy=${3:-no} d init=$INIT
    [[ $extra == busybox ]] && init=$INIT_DEBUG
    d=$(mktemp -d "$work/initrd.XXXX")
    mkdir -p "$d/lib/modules" "$d/etc/tandem"
    install -m 0755 "$init" "$d/init"
    printf '# qemu-boot.sh\nrequire_verity = %s\n' "$policy" >"$d/etc/tandem/initramfs.conf"
    : >"$d/etc/modules-load"
    for m in $MODULES; do
        local rel
        rel=$(grep -E "(^|/)${m}\.ko(\.[a-z]+)?:" "$moddir/modules.dep" | cut -d: -f1)
        [[ -n $rel ]] || { echo "qemu-boot: module $m not in modules.dep" >&2; exit 2; }
        cp "$moddir/$rel" "$d/lib/modules/"
        basename "$rel" >>"$d/etc/modules-load"
    done
    if [[ $extra == busybox ]]; then
        mkdir -p "$d/bin"
        cp /bin/busybox "$d/bin/busybox"
        ln -s busybox "$d/bin/sh"
        ln -s busybox "$d/bin/poweroff"
    fi
    [[ $extra == mke2fs ]] && copy_tool "$d" /sbin/mke2fs
    [[ $extra == e2fsck ]] && copy_tool "$d" /sbin/e2fsck
    (cd "$d" && find . | LC_ALL=C sort | cpio -o -H newc --quiet) >"$out"
}
mkinitramfs initrd.cpio none
mkinitramfs initrd-mke2fs.cpio mke2fs
mkinitramfs initrd-sh.cpio busybox
mkinitramfs initrd-e2fsck.cpio e2fsck
mkinitramfs initrd-strict.cpio none yes

# ---- slot a: squashfs + verity tree ------------------------------------
mkdir -p slot/bin slot/sbin slot/proc slot/sys slot/dev slot/data slot/var slot/etc slot/tmp slot/run
cp /bin/busybox slot/bin/busybox
ln -s busybox slot/bin/sh
echo "tandem-test" >slot/etc/hostname
cat >slot/sbin/init <<EOF
#!/bin/busybox sh
bb=/bin/busybox
echo "$MARKER uptime=\$(\$bb cut -d' ' -f1 /proc/uptime)"
\$bb grep -E ' / | /data | /var | /etc | /run ' /proc/mounts | \$bb sed 's/^/slot-init: mount: /'
echo "slot-init: /data: \$(\$bb ls -A /data | \$bb tr '\n' ' ')"
[ -e /run/tandem/data-degraded ] && echo "slot-init: degraded marker: \$(\$bb head -n1 /run/tandem/data-degraded)"
echo "slot-init: /dev/tandem: \$(\$bb ls -l /dev/tandem | \$bb sed -n 's/.* \([a-z-]* -> .*\)/\1/p' | \$bb tr '\n' ' ')"
echo probe >/etc/probe && echo probe >/var/probe && echo "slot-init: /etc and /var writable"
\$bb ls / | \$bb grep -q '^init\$' && echo "slot-init: initramfs /init still visible?!"
\$bb poweroff -f
EOF
chmod 755 slot/sbin/init
mksquashfs slot slot.img -comp gzip -noappend -all-root -quiet -no-progress >/dev/null
size=$(stat -c %s slot.img)
hash_offset=$(( (size + 4095) / 4096 * 4096 ))
truncate -s "$hash_offset" slot.img
vout=$(veritysetup format --hash-offset="$hash_offset" slot.img slot.img)
root_hash=$(sed -n 's/^Root hash:[[:space:]]*//p' <<<"$vout")
salt=$(sed -n 's/^Salt:[[:space:]]*//p' <<<"$vout")
[[ ${#root_hash} == 64 ]] || { echo "qemu-boot: no root hash from veritysetup:"; echo "$vout"; exit 1; }
echo "slot image: $(stat -c %s slot.img) bytes, hash offset $hash_offset, root hash $root_hash"
verity_args="tandem.verity.roothash=$root_hash tandem.verity.hashoffset=$hash_offset tandem.verity.salt=$salt"

# ---- data: ext4 (plain, and one carrying the factory-reset flag) -------
mkdir -p data-reset/var/lib/tandem data-reset/etc/upper
echo old >data-reset/var/lib/tandem/state
echo old >data-reset/junk
: >data-reset/.tandem-factory-reset
truncate -s 32M data.img data-reset.img data-blank.img
mke2fs -q -F -t ext4 -L tandem-data data.img
mke2fs -q -F -t ext4 -L tandem-data -d data-reset data-reset.img
# i: a LUKS header over what was ext4 (never to be formatted)
cp data.img data-luks.img
printf 'LUKS\xba\xbe\x00\x02' | dd of=data-luks.img bs=1 conv=notrunc status=none
# j: group 0's descriptor checksum broken: mount refuses, e2fsck -p fixes
cp data.img data-csum.img
gdt=$(dumpe2fs -h data.img 2>/dev/null | sed -n 's/^Block size: *//p')
[[ $gdt == 1024 ]] && gdt_off=2048 || gdt_off=$gdt
printf '\xde\xad' | dd of=data-csum.img bs=1 seek=$((gdt_off + 30)) conv=notrunc status=none

# ---- disk: esp(1M, unformatted) root-a(8M) root-b(8M) data(32M) --------
MIB=1048576
mkdisk() { # out data_image [sgdisk name overrides...]
    local out=$1 data=$2; shift 2
    truncate -s $((1 + 1 + 8 + 8 + 32 + 1))M "$out"
    sgdisk -o -n1:1M:+1M -c1:esp -n2:0:+8M -c2:tandem-root-a \
        -n3:0:+8M -c3:tandem-root-b -n4:0:+32M -c4:tandem-data "$@" "$out" >/dev/null
    dd if=slot.img of="$out" bs=1M seek=2 conv=notrunc status=none
    dd if="$data" of="$out" bs=1M seek=18 conv=notrunc status=none
}
mkdisk disk.img data.img
# b: flip one byte in block 0 of slot a (the squashfs superblock)
cp disk.img disk-corrupt.img
printf '\xff' | dd of=disk-corrupt.img bs=1 seek=$((2 * MIB + 100)) conv=notrunc status=none
# c: no partition is named tandem-root-b
mkdisk disk-nob.img data.img -c3:not-a-slot
mkdisk disk-blank.img data-blank.img
mkdisk disk-reset.img data-reset.img
mkdisk disk-luks.img data-luks.img
mkdisk disk-csum.img data-csum.img
# k, l: a second disk with the same names (other GUIDs: sgdisk picks them)
mkdisk disk-stick.img data.img
partuuid_a=$(sgdisk -i 2 disk.img | sed -n 's/^Partition unique GUID: //p' | tr 'A-Z' 'a-z')

# ---- runs --------------------------------------------------------------
pass=0 fail=0
declare -a summary
boot() { # name initrd disk append expect... (-- forbid...)
    local name=$1 initrd=$2 disk=$3 append=$4; shift 4
    local input=${INPUT:-}
    local log=$work/$name.log t0 t1 ok=1 rc=0
    # every run gets its own copy: a run may format or wipe its disk
    cp "$disk" "$work/$name.disk"
    disk=$work/$name.disk
    local second=()
    if [[ -n ${SECOND:-} ]]; then
        cp "$SECOND" "$work/$name.disk2"
        second=(-drive file="$work/$name.disk2",format=raw,if=virtio)
    fi
    t0=$(date +%s.%N)
    timeout "$TIMEOUT" qemu-system-x86_64 -accel tcg -m 512 -nographic -no-reboot -nic none \
        -kernel "$kernel" -initrd "$initrd" \
        -drive file="$disk",format=raw,if=virtio "${second[@]}" \
        -append "console=ttyS0 panic=1 $append" >"$log" 2>&1 < <(
            # keys for a debug shell: typed every second; $((6*7)) shows
            # the shell ran them (the tty echo shows them unexpanded)
            if [[ -n $input ]]; then
                for _ in $(seq "$TIMEOUT"); do sleep 1; echo "$input"; done
            fi
        ) || rc=$?
    t1=$(date +%s.%N)
    local secs
    secs=$(awk "BEGIN{printf \"%.1f\", $t1-$t0}")
    [[ $rc == 124 ]] && { echo "  $name: QEMU still running after ${TIMEOUT}s (hang)"; ok=0; }
    local forbid=0
    for pat in "$@"; do
        if [[ $pat == -- ]]; then forbid=1; continue; fi
        if ((forbid)); then
            grep -qF -- "$pat" "$log" && { echo "  $name: unexpected: $pat"; ok=0; }
        else
            grep -qF -- "$pat" "$log" || { echo "  $name: missing: $pat"; ok=0; }
        fi
    done
    local up
    up=$(sed -n 's/.*switch_root.*uptime \([0-9.]*\) s).*/\1/p' "$log" | tail -1)
    local line="$name: ${secs}s wall, qemu rc=$rc${up:+, switch_root at ${up}s uptime}"
    if ((ok)); then pass=$((pass + 1)); summary+=("PASS $line"); else
        fail=$((fail + 1)); summary+=("FAIL $line"); echo "---- $name.log (tail)"; tail -40 "$log"; fi
    echo "---- $name: tandem lines"; grep -a -E 'tandem-initramfs|slot-init|TANDEM-TEST|device-mapper|verity' "$log" | tr -d '\r' | sed 's/^/    /'
}

want=${*:-a b c d e f g h i j k l}
for s in $want; do
    case $s in
    a) boot a initrd-strict.cpio disk.img "tandem.slot=a $verity_args" \
        "tandem-initramfs: slot a on /dev/vda2" "dm-verity: /dev/mapper/tandem-root-a over /dev/vda2" \
        "(squashfs, read-only) on /sysroot" "$MARKER" "/etc and /var writable" \
        "slot-init: mount: /dev/vda4 /data ext4 rw,nosuid,nodev" "slot-init: mount: tmpfs /run tmpfs rw,nosuid,nodev" \
        -- "FAILED" "initramfs /init still visible" "DEGRADED" ;;
    b) boot b initrd-strict.cpio disk-corrupt.img "tandem.slot=a $verity_args" \
        "tandem-initramfs: slot a on /dev/vda2" "is corrupted" \
        -- "$MARKER" "Input/output error" ;;
    c) boot c initrd.cpio disk-nob.img "tandem.slot=b tandem.wait=2" \
        "tandem-initramfs: FAILED: partition tandem-root-b not found" "after waiting 2 s" "rebooting" \
        -- "$MARKER" ;;
    d) boot d initrd-mke2fs.cpio disk-blank.img "tandem.slot=a" \
        "tandem-initramfs: slot a on /dev/vda2" "is blank (first MiB all zero): formatting it ext4" \
        "$MARKER" "/etc and /var writable" -- "FAILED" "DEGRADED" ;;
    e) boot e initrd.cpio disk-reset.img "tandem.slot=a" \
        "factory reset: wiping /sysroot/data" "slot-init: /data: etc lost+found var" \
        "$MARKER" -- "FAILED" "junk" ;;
    f) boot f initrd.cpio disk-blank.img "tandem.slot=a" \
        "DEGRADED: the data partition is blank and this initramfs has no /sbin/mke2fs" \
        "$MARKER" "slot-init: degraded marker: the data partition is blank" "/etc and /var writable" \
        -- "FAILED" ;;
    g) INPUT='echo DEBUG-SHELL-$((6*7)); poweroff -f' boot g initrd-sh.cpio disk.img \
        "tandem.slot=c tandem.debug" \
        'tandem-initramfs: FAILED: tandem.slot="c": must be a or b' \
        "tandem.debug: starting /bin/sh instead of rebooting" "DEBUG-SHELL-42" \
        -- "tandem-initramfs: rebooting" "$MARKER" ;;
    h) boot h initrd-strict.cpio disk.img "tandem.slot=a" \
        "tandem-initramfs: FAILED: no tandem.verity.roothash on the kernel command line" "rebooting" \
        -- "$MARKER" ;;
    i) boot i initrd-mke2fs.cpio disk-luks.img "tandem.slot=a" \
        "DEGRADED: the data partition holds LUKS" "$MARKER" "slot-init: degraded marker" \
        -- "FAILED" "formatting" ;;
    j) boot j initrd-e2fsck.cpio disk-csum.img "tandem.slot=a" \
        "does not mount; running e2fsck -p" "repaired by e2fsck" "$MARKER" "/etc and /var writable" \
        -- "FAILED" "DEGRADED" ;;
    k) SECOND=disk-stick.img boot k initrd.cpio disk.img "tandem.slot=a root=PARTUUID=$partuuid_a" \
        "root PARTUUID $partuuid_a" "slot a on /dev/vda2 (by PARTUUID), data /dev/vda4, all on disk vda" \
        "ignoring /dev/vdb4 (tandem-data)" "$MARKER" -- "FAILED" ;;
    l) SECOND=disk-stick.img boot l initrd.cpio disk.img "tandem.slot=a" \
        "tandem-initramfs: FAILED: 2 partitions are named tandem-root-a" "rebooting" -- "$MARKER" ;;
    *) echo "qemu-boot: unknown scenario $s" >&2; exit 2 ;;
    esac
done
echo "==== summary"
printf '%s\n' "${summary[@]}"
echo "$pass passed, $fail failed"
((fail == 0))

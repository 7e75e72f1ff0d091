#!/bin/busybox sh
# Tandem initramfs (busybox flavour): find the slot GRUB chose, mount it
# read-only, mount the data partition (/var bind, /etc overlay), switch_root.
# Any failure prints the reason and reboots at once, so the bootloader
# counts the try and falls back; the data partition is the exception (a
# tmpfs and /run/tandem/data-degraded instead: both slots share it). See
# docs/disk-layout.md. This fallback (tandem-image without --init) does no
# dm-verity and has no policy: images that need verity use the Rust init.
/bin/busybox mkdir -p /sbin /usr/bin /usr/sbin /proc /sys /dev /sysroot
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

fail() {
    echo "tandem-initramfs: FAILED: $*" > /dev/console
    if grep -qw tandem.debug /proc/cmdline; then exec sh; fi
    sleep 1
    reboot -f
}

for m in $(cat /etc/modules-load); do
    insmod "/lib/modules/$m" 2>/dev/null || echo "tandem-initramfs: insmod $m failed"
done

slot=$(sed -n 's/.*tandem\.slot=\([ab]\).*/\1/p' /proc/cmdline)
[ -n "$slot" ] || fail "no tandem.slot=a|b on the kernel command line"

find_part() {
    for i in $(seq 1 50); do
        for u in /sys/class/block/*/uevent; do
            if grep -q "^PARTNAME=$1\$" "$u"; then
                sed -n 's/^DEVNAME=//p' "$u"
                return 0
            fi
        done
        sleep 0.1
    done
    return 1
}

root=$(find_part "tandem-root-$slot") || fail "partition tandem-root-$slot not found"
echo "tandem-initramfs: slot $slot on /dev/$root"
mount -o ro "/dev/$root" /sysroot || fail "cannot mount /dev/$root"
[ -x /sysroot/sbin/init ] || fail "slot $slot has no /sbin/init"

[ -d /sysroot/run ] && mount -t tmpfs -o nosuid,nodev,mode=0755 tmpfs /sysroot/run
if data=$(find_part tandem-data); then
    if [ -e /sysroot/data ]; then
        if ! mount -t ext4 -o nosuid,nodev "/dev/$data" /sysroot/data; then
            why="the data partition /dev/$data does not mount (not formatted or checked by this initramfs)"
            echo "tandem-initramfs: DEGRADED: $why" > /dev/console
            mount -t tmpfs -o nosuid,nodev,mode=0755 tmpfs /sysroot/data
            mkdir -p /sysroot/run/tandem && printf '%s\ndevice=/dev/%s\n' "$why" "$data" > /sysroot/run/tandem/data-degraded
        elif [ -e /sysroot/data/.tandem-factory-reset ]; then
            echo "tandem-initramfs: factory reset: wiping the data partition"
            find /sysroot/data -mindepth 1 -maxdepth 1 ! -name lost+found -exec rm -rf {} +
        fi
        mkdir -p /sysroot/data/var /sysroot/data/etc/upper /sysroot/data/etc/work
        mount --bind /sysroot/data/var /sysroot/var || fail "cannot bind /var"
        mount -t overlay overlay -o nosuid,nodev,lowerdir=/sysroot/etc,upperdir=/sysroot/data/etc/upper,workdir=/sysroot/data/etc/work /sysroot/etc \
            || fail "cannot overlay /etc"
    fi
fi

mount --move /dev /sysroot/dev
mount --move /proc /sysroot/proc
mount --move /sys /sysroot/sys
exec switch_root /sysroot /sbin/init

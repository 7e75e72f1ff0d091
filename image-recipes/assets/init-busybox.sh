#!/bin/sh
# PID 1 of the Tandem minimal image (busybox userland).
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc 2>/dev/null
mount -t sysfs sysfs /sys 2>/dev/null
mount -t devtmpfs devtmpfs /dev 2>/dev/null
# systemd-boot's variables (LoaderBootCountPath names the entry on trial).
[ -d /sys/firmware/efi/efivars ] && mount -t efivarfs efivarfs /sys/firmware/efi/efivars 2>/dev/null
# The initramfs hands over /run (a tmpfs, with /run/tandem/data-degraded
# when the data partition could not be used): keep it.
grep -q " /run " /proc/mounts || mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
mkdir -p /dev/pts /dev/disk/by-partlabel /var/lib/tandem
# Partition-label links for the disk we booted from only (the initramfs
# linked its data partition as /dev/tandem/data): a USB stick with an
# "esp" or "tandem-root-b" must not stand in for ours.
rootdisk=
[ -e /dev/tandem/data ] && rootdisk=$(readlink -f "/sys/class/block/$(basename "$(readlink /dev/tandem/data)")/..")
for u in /sys/class/block/*/uevent; do
    [ -z "$rootdisk" ] || [ "$(readlink -f "${u%/uevent}/..")" = "$rootdisk" ] || continue
    name=$(sed -n 's/^PARTNAME=//p' "$u")
    dev=$(sed -n 's/^DEVNAME=//p' "$u")
    [ -n "$name" ] && ln -sf "/dev/$dev" "/dev/disk/by-partlabel/$name"
done
# The FAT boot partition, where the bootloader's A/B state lives: the ESP
# (GRUB, grubenv) on x86_64, "boot" (U-Boot, tandem.env) on aarch64.
if [ -e /dev/disk/by-partlabel/esp ]; then
    mount -t vfat /dev/disk/by-partlabel/esp /boot/efi || echo "tandem: cannot mount the ESP"
else
    mount -t vfat /dev/disk/by-partlabel/boot /boot/firmware || echo "tandem: cannot mount the boot partition"
fi
ip link set lo up
if [ -e /sys/class/net/eth0 ]; then
    ip addr add 10.0.2.15/24 dev eth0
    ip link set eth0 up
    ip route add default via 10.0.2.2
fi
slot=$(sed -n 's/.*tandem\.slot=\([ab]\).*/\1/p' /proc/cmdline)
echo "TANDEM-BOOTED slot=$slot version=$(cat /usr/lib/tandem/version)"
[ -x /usr/lib/tandem/on-boot ] && /usr/lib/tandem/on-boot
tandem boot-check
echo "TANDEM-BOOTCHECK rc=$?"
echo "TANDEM-READY slot=$slot"
# The image's services (the channel variant's daemon), once this boot is
# judged: a trial boot that fell back never gets here.
[ -x /usr/lib/tandem/on-ready ] && /usr/lib/tandem/on-ready &
# A shell on the serial console (PL011 on aarch64), for the operator and
# the test rig.
tty=ttyS0
[ -c /dev/ttyAMA0 ] && tty=ttyAMA0
while true; do
    setsid sh -c "exec sh -i </dev/$tty >/dev/$tty 2>&1"
    sleep 1
done

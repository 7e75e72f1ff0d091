#!/bin/sh
# Prints the boot markers the QEMU rig and the demo wait for on the
# console (same as the busybox image's init): TANDEM-BOOTED before the
# trial-boot check. Runs the image's optional /usr/lib/tandem/on-boot hook.
slot=$(sed -n 's/.*tandem\.slot=\([ab]\).*/\1/p' /proc/cmdline)
echo "TANDEM-BOOTED slot=$slot version=$(cat /usr/lib/tandem/version)" >/dev/console
if [ -x /usr/lib/tandem/on-boot ]; then
    /usr/lib/tandem/on-boot
fi
exit 0

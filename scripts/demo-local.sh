#!/usr/bin/env bash
# The demo: a device with file-backed A/B slots, booted from slot a running
# version 1.0.0. It installs a signed 1.1.0 update into slot b, shows the
# status, then shows that a tampered bundle and a downgrade are refused with
# both slots left as they were.
#
# Bootloader arming, trial boot and fallback come with the boot-control and
# QEMU work (see docs/); this demo covers the verified, streaming install.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -x "$HOME/.cargo/bin/cargo" ]] && export PATH="$HOME/.cargo/bin:$PATH"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
t0=$SECONDS

cargo build --release --locked -q -p tandem
T="$PWD/target/release/tandem"
W=$(mktemp -d /tmp/tandem-demo.XXXXXX)
trap 'rm -rf "$W"' EXIT
cd "$W"

step "vendor key and device keyring"
"$T" keygen -o vendor --comment "demo vendor"
mkdir keys && cp vendor.pub keys/

step "device: compatible 'tandem-demo', booted from slot a (tandem.slot=a)"
echo "console=ttyS0 tandem.slot=a" > cmdline
cat > tandem.toml <<CONF
compatible = "tandem-demo"
[keyring]
directory = "$W/keys"
[state]
directory = "$W/state"
[boot]
cmdline = "$W/cmdline"
[image]
version = "1.0.0"
[slots.a.rootfs]
device = "$W/rootfs-a.img"
size = "96M"
[slots.b.rootfs]
device = "$W/rootfs-b.img"
size = "96M"
CONF
cat tandem.toml
# The factory image in slot a.
mkdir -p rootfs/etc && echo "VERSION_ID=1.0.0" > rootfs/etc/os-release
truncate -s 96M rootfs-a.img && mkfs.ext4 -q -F -d rootfs rootfs-a.img
truncate -s 96M rootfs-b.img

step "build update 1.1.0: an ext4 root filesystem, zstd-compressed, signed"
echo "VERSION_ID=1.1.0" > rootfs/etc/os-release
mkdir -p rootfs/usr/bin rootfs/usr/share
cp -a /usr/share/common-licenses rootfs/usr/share/
cp /bin/bash /bin/ls /bin/cat rootfs/usr/bin/
seq 1 400000 > rootfs/usr/share/numbers.txt
truncate -s 64M new-rootfs.img && mkfs.ext4 -q -F -d rootfs new-rootfs.img
"$T" bundle create -o update-1.1.0.tnd --version 1.1.0 --compatible tandem-demo \
    --image rootfs=new-rootfs.img --compression zstd --key vendor.key
tar tvf update-1.1.0.tnd
"$T" bundle info update-1.1.0.tnd

step "install 1.1.0 (verify first, then stream into slot b)"
sha_a_before=$(sha256sum rootfs-a.img | cut -d' ' -f1)
"$T" --config tandem.toml install update-1.1.0.tnd
"$T" --config tandem.toml status
cmp -n "$(stat -c %s new-rootfs.img)" new-rootfs.img rootfs-b.img && echo "slot b holds the new image, byte for byte"
[[ $(sha256sum rootfs-a.img | cut -d' ' -f1) == "$sha_a_before" ]] && echo "slot a (booted) untouched"

step "a tampered bundle is refused"
cp update-1.1.0.tnd tampered.tnd
printf 'X' | dd of=tampered.tnd bs=1 seek=$((4096 + 12345)) conv=notrunc status=none
sha_b=$(sha256sum rootfs-b.img | cut -d' ' -f1)
rc=0; "$T" --config tandem.toml install tampered.tnd || rc=$?
[[ $rc -eq 4 ]] || { echo "BUG: expected exit code 4 (bundle refused), got $rc"; exit 1; }
echo "(exit code $rc, as documented: 4 = bundle refused)"
[[ $(sha256sum rootfs-a.img | cut -d' ' -f1) == "$sha_a_before" ]] && echo "slot a (booted) untouched"

step "a downgrade is refused before anything is written"
"$T" bundle create -o old.tnd --version 0.9.0 --compatible tandem-demo --image rootfs=new-rootfs.img --key vendor.key >/dev/null
sha_b=$(sha256sum rootfs-b.img | cut -d' ' -f1)
rc=0; "$T" --config tandem.toml install old.tnd || rc=$?
[[ $rc -eq 4 ]] || { echo "BUG: expected exit code 4 (bundle refused), got $rc"; exit 1; }
[[ $(sha256sum rootfs-b.img | cut -d' ' -f1) == "$sha_b" ]] && echo "slot b untouched by the refused downgrade"

step "status after the refusals"
"$T" --config tandem.toml status
echo
echo "demo finished in $((SECONDS - t0)) s"

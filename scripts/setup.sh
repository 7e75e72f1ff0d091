#!/usr/bin/env bash
# Installs what building, testing and the demo need on Debian 12 (as root).
# Idempotent: installs only what is missing.
#
#   scripts/setup.sh [--demo]
#
# --demo installs only what scripts/demo.sh uses (the x86_64 minimal image
# and QEMU): no aarch64 cross toolchain, Debian image builder, registry or
# packaging checks.
set -euo pipefail
demo=0
if [[ ${1:-} == --demo ]]; then demo=1; fi
say() { printf '[%(%H:%M:%S)T] setup: %s\n' -1 "$*" >&2; }

need_pkgs=()
have() { command -v "$1" >/dev/null 2>&1; }
want() { have "$1" || [[ -e $1 ]] || need_pkgs+=("$2"); }

# The demo: compile the tools, build the minimal image, boot it.
want cc build-essential
want grub-mkimage grub-common
want /usr/lib/grub/x86_64-efi/linux.mod grub-efi-amd64-bin
want mkfs.ext4 e2fsprogs
want sgdisk gdisk
want mksquashfs squashfs-tools
want veritysetup cryptsetup-bin
want mkfs.fat dosfstools
want mcopy mtools
want cpio cpio
want /sbin/depmod kmod
want /bin/busybox busybox-static
want qemu-system-x86_64 qemu-system-x86
want /usr/share/OVMF/OVMF_CODE_4M.fd ovmf
if ((!demo)); then
want losetup mount
want grub-editenv grub-common
want grub-script-check grub-common
want fw_printenv libubootenv-tool
want mkimage u-boot-tools
want bootctl systemd-boot
want /usr/lib/systemd/boot/efi/systemd-bootx64.efi systemd-boot-efi
want sbsign sbsigntool
want python3 python3
want zstd zstd
want /usr/bin/time time
want openssl openssl
want dbus-daemon dbus-daemon
want busctl systemd
want gdbus libglib2.0-bin
want setpriv util-linux
# The debian image (QEMU scenario 9): its root filesystem.
want mmdebstrap mmdebstrap
# aarch64 (QEMU scenario 8): the cross compiler for ring's C and the static
# link, QEMU for arm, Debian's U-Boot for QEMU virt, mkenvimage.
want aarch64-linux-gnu-gcc gcc-aarch64-linux-gnu
want /usr/aarch64-linux-gnu/lib/libc.a libc6-dev-arm64-cross
want qemu-system-aarch64 qemu-system-arm
want /usr/lib/u-boot/qemu_arm64/u-boot.bin u-boot-qemu
want mkenvimage u-boot-tools
# The OCI transport's tests: the CNCF registry, skopeo for a mirror,
# htpasswd (bcrypt) for basic auth.
want docker-registry docker-registry
want skopeo skopeo
want htpasswd apache2-utils
# Docs and packaging checks: the man pages render without a groff warning
# (agent/tests/generated_docs.rs); status --json validates against
# docs/status.schema.json with Debian's jsonschema (status_view.rs);
# scripts/build-deb.sh and lintian (deb_package.rs).
want groff groff-base
/usr/bin/python3 -c 'from jsonschema import Draft202012Validator' 2>/dev/null ||
    need_pkgs+=(python3-jsonschema)
want lintian lintian
# The channel's FleetLock strategy: a real etcd behind the tests' FleetLock
# server (agent/tests/fleetlock.rs).
want etcd etcd-server
# The TUF conformance suite (scripts/tuf-conformance.sh) runs the client
# under faketime.
want faketime faketime
want dpkg-architecture dpkg-dev
want objdump binutils
fi

if ((${#need_pkgs[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "setup: need root to install: ${need_pkgs[*]}" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    say "apt-get update"
    apt-get update -qq
    mapfile -t need_pkgs < <(printf '%s\n' "${need_pkgs[@]}" | sort -u)
    say "installing ${#need_pkgs[@]} packages: ${need_pkgs[*]}"
    apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi
# qemu-img must match the QEMU 7.2 we boot with; a newer backported
# qemu-utils is replaced when qemu-system-x86 comes in, so install it after.
if ! have qemu-img; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-utils >/dev/null
fi
# The image builder downloads a kernel package: the package lists must exist.
if ! compgen -G "/var/lib/apt/lists/*Packages*" >/dev/null; then
    apt-get update -qq
fi
if ((!demo)); then
# ...and for the aarch64 image, arm64 ones (linux-image-arm64:arm64 and
# busybox-static:arm64 are downloaded, never installed).
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    if [[ $(id -u) -ne 0 ]]; then
        echo "setup: need root to run: dpkg --add-architecture arm64 && apt-get update" >&2
        exit 1
    fi
    dpkg --add-architecture arm64
fi
if ! compgen -G "/var/lib/apt/lists/*binary-arm64_Packages*" >/dev/null; then
    say "apt-get update (arm64 package lists)"
    apt-get update -qq
fi
fi

# Rust: this project needs rustc >= 1.89 (see Cargo.toml rust-version).
if ! have cargo && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! have cargo; then
    echo "setup: no cargo found; install Rust >= 1.89 with rustup (https://rustup.rs)" >&2
    exit 1
fi
if have rustup; then
    for c in rustfmt clippy; do
        rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
    done
    # The aarch64 agent and initramfs (scripts/build-images-arm64.sh).
    ((demo)) || rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-linux-gnu \
        || rustup target add aarch64-unknown-linux-gnu
fi
# oras-py (PyPI): another OCI client pushing our artifact type.
if ((!demo)) && ! python3 -c 'import oras.client' 2>/dev/null; then
    if ! python3 -m pip --version >/dev/null 2>&1; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-pip >/dev/null
    fi
    python3 -m pip install -q oras 2>/dev/null ||
        python3 -m pip install -q --break-system-packages oras
fi
# A venv at $1 where python can `import $2`, else made with pip install $3...
venv_with() {
    local dir=$1 imports=$2
    shift 2
    "$dir/bin/python" -c "import $imports" 2>/dev/null && return
    say "$* into $dir (PyPI)"
    python3 -m venv "$dir" 2>/dev/null || {
        rm -rf "$dir"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
        python3 -m venv "$dir"
    }
    "$dir/bin/pip" install -q "$@"
}
if ((!demo)); then
    # gooseBit, a hawkBit DDI server for agent/tests/hawkbit.rs, in its own
    # venv (it pins FastAPI, Tortoise and friends); `wheel` so that the test
    # can pip-install fleet/goosebit-tandem from the working tree.
    venv_with "${TANDEM_GOOSEBIT_VENV:-/opt/tandem/goosebit-venv}" 'goosebit, wheel' \
        'goosebit==0.2.12' wheel
    # python-tuf, the other TUF implementation: its repository library makes
    # what our client consumes (agent/tests/tuf_interop.rs), its ngclient
    # consumes what `tandem repo` makes (agent/tests/tuf_ngclient.rs).
    venv_with "${TANDEM_PYTUF_VENV:-/opt/tandem/python-tuf-venv}" \
        'tuf.api.metadata, tuf.ngclient, securesystemslib.signer' \
        'tuf==6.0.0' 'securesystemslib[crypto]==1.3.1'
fi
say "ok ($(cargo --version))"


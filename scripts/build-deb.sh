#!/usr/bin/env bash
# Builds a Tandem Debian package with plain dpkg-deb and prints its path
# (the last line of stdout). Reproducible: file times, the changelog date
# and the archive come from SOURCE_DATE_EPOCH (default: the last commit).
#
#   scripts/build-deb.sh [--package tandem|tandem-image] [--binary PATH]
#                        [--agent PATH --init PATH] [--out DIR] [--lintian]
#
# tandem (default): the agent for devices: the release binary, the systemd
#           units, the D-Bus policy and activation file, the polkit action
#           and rule, the default configuration (a conffile), man pages,
#           shell completions, the bootloader scripts and docs.
# tandem-image: the image builder for build hosts: tandem-image, the
#           static agent and initramfs it puts into images (their
#           defaults for --agent and --init), the shipped recipes.
# --binary  package this tandem (or tandem-image) binary, stripped here,
#           instead of running cargo build --release; agent/tests/deb_package.rs
#           uses its own
# --agent, --init  tandem-image only: the static agent and initramfs to
#           ship [default: the static build of scripts/lib/tools.sh]
# --out     where the .deb goes [default: $CARGO_TARGET_DIR or target, /deb]
# --lintian run lintian on it; any error fails the script
#
# DEB_MAINTAINER overrides the Maintainer field. Why dpkg-deb and not
# cargo-deb or debhelper: docs/packaging.md.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

package=tandem binary="" payload_agent="" payload_init="" out="" lint=0
while (($#)); do
    case $1 in
        --package) package=$2; shift 2 ;;
        --binary) binary=$2; shift 2 ;;
        --agent) payload_agent=$2; shift 2 ;;
        --init) payload_init=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --lintian) lint=1; shift ;;
        *) echo "usage: $0 [--package tandem|tandem-image] [--binary PATH] [--agent PATH --init PATH] [--out DIR] [--lintian]" >&2; exit 2 ;;
    esac
done
case $package in
    tandem) bin_name=tandem crate=tandem ;;
    tandem-image) bin_name=tandem-image crate=tandem-image-recipes ;;
    *) echo "build-deb: unknown package $package (tandem or tandem-image)" >&2; exit 2 ;;
esac
target=${CARGO_TARGET_DIR:-$repo/target}
out=${out:-$target/deb}

for tool in dpkg-deb dpkg-architecture objdump gzip strip; do
    command -v "$tool" >/dev/null || { echo "build-deb: needs $tool (apt install dpkg-dev binutils)" >&2; exit 1; }
done

upstream=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)
version="$upstream-1"
arch=$(dpkg-architecture -qDEB_HOST_ARCH)
maintainer=${DEB_MAINTAINER:-Tandem maintainers <tandem-maintainers@lists.example.org>}

if [[ -z $binary ]]; then
    echo "build-deb: cargo build --release -p $crate (a few minutes from scratch)" >&2
    cargo build --release --locked -p "$crate" --bin "$bin_name" >&2
    binary=$target/release/$bin_name
fi
[[ -x $binary ]] || { echo "build-deb: $binary: not an executable" >&2; exit 1; }
if [[ $package == tandem-image ]]; then
    if [[ -z $payload_agent || -z $payload_init ]]; then
        . scripts/lib/tools.sh
        build_tools >&2
        payload_agent=${payload_agent:-$agent} payload_init=${payload_init:-$init}
    fi
    for f in "$payload_agent" "$payload_init"; do
        [[ -x $f ]] || { echo "build-deb: $f: not an executable" >&2; exit 1; }
    done
fi
# Only now: cargo would rebuild the agent for a changed SOURCE_DATE_EPOCH.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/root
pkg=$root/DEBIAN

put() { # put MODE SRC DEST (DEST relative to the package root)
    install -D -m "$1" "$2" "$root/$3"
}
doc=usr/share/doc/$package
put 0755 "$binary" "usr/bin/$bin_name"
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$root/usr/bin/$bin_name"
if [[ $package == tandem ]]; then
    put 0644 agent/dist/systemd/tandem.service lib/systemd/system/tandem.service
    put 0644 agent/dist/systemd/tandem-boot-check.service lib/systemd/system/tandem-boot-check.service
    put 0644 agent/dist/dbus/dev.tandem.Agent1.conf usr/share/dbus-1/system.d/dev.tandem.Agent1.conf
    put 0644 agent/dist/dbus/dev.tandem.Agent1.service usr/share/dbus-1/system-services/dev.tandem.Agent1.service
    put 0644 agent/dist/polkit/dev.tandem.policy usr/share/polkit-1/actions/dev.tandem.policy
    put 0644 agent/dist/polkit/50-tandem.rules usr/share/polkit-1/rules.d/50-tandem.rules
    put 0644 agent/dist/config/tandem.toml etc/tandem/tandem.toml
    put 0644 agent/dist/grub/grub.cfg usr/share/tandem/grub/grub.cfg
    put 0644 agent/dist/uboot/boot.cmd usr/share/tandem/uboot/boot.cmd
    put 0644 agent/dist/completions/tandem.bash usr/share/bash-completion/completions/tandem
    put 0644 agent/dist/completions/_tandem usr/share/zsh/vendor-completions/_tandem
    put 0644 agent/dist/completions/tandem.fish usr/share/fish/vendor_completions.d/tandem.fish
    for page in agent/dist/man/*.[0-9]; do
        section=${page##*.}
        put 0644 "$page" "usr/share/man/man$section/$(basename "$page")"
    done
    gzip -9n "$root"/usr/share/man/man*/*
    for d in docs/*.md; do
        put 0644 "$d" "$doc/$(basename "$d")"
    done
    put 0644 docs/status.schema.json "$doc/status.schema.json"
    put 0644 README.md "$doc/README.md"
    put 0644 agent/dist/uboot/README.md "$doc/uboot.md"
    # Compress the larger docs, as policy 12.3 asks; the units link boot.md
    # and dbus.md, so those stay as they are.
    find "$root/$doc" -name '*.md' -size +4k ! -name boot.md ! -name dbus.md -exec gzip -9n {} +
else
    # The payloads tandem-image puts into images: static, because the
    # busybox and OCI bases may have no glibc (lintian override below).
    put 0755 "$payload_agent" usr/lib/tandem-image/tandem
    put 0755 "$payload_init" usr/lib/tandem-image/tandem-initramfs
    strip --strip-unneeded --remove-section=.comment --remove-section=.note \
        "$root/usr/lib/tandem-image/tandem" "$root/usr/lib/tandem-image/tandem-initramfs"
    (cd image-recipes/recipes && find . -type f -printf '%P\n') | sort | while read -r f; do
        mode=0644
        [[ -x image-recipes/recipes/$f ]] && mode=0755
        put "$mode" "image-recipes/recipes/$f" "usr/share/tandem-image/recipes/$f"
    done
    put 0644 image-recipes/man/tandem-image.1 usr/share/man/man1/tandem-image.1
    gzip -9n "$root/usr/share/man/man1/tandem-image.1"
    put 0644 image-recipes/README.md "$doc/README.md"
    gzip -9n "$root/$doc/README.md"
fi

# copyright (DEP-5). The binary links the Rust crates it depends on
# statically: they are listed with their licences.
cat >"$work/crates.py" <<'EOF'
import json, sys
m = json.load(sys.stdin)
pkgs = {p["id"]: p for p in m["packages"]}
nodes = {n["id"]: n for n in m["resolve"]["nodes"]}
root = next(p["id"] for p in m["packages"] if p["name"] == sys.argv[1])
seen, todo = set(), [root]
while todo:
    i = todo.pop()
    if i in seen:
        continue
    seen.add(i)
    for d in nodes[i]["deps"]:
        # Normal dependencies only: not build scripts' or tests'.
        if any(k["kind"] is None for k in d["dep_kinds"]):
            todo.append(d["pkg"])
for i in sorted(seen, key=lambda i: (pkgs[i]["name"], pkgs[i]["version"])):
    p = pkgs[i]
    if p["source"]:
        print(" %s %s: %s" % (p["name"], p["version"], p["license"] or "see the crate"))
EOF
host=$(rustc -vV | sed -n 's/^host: //p')
meta() { cargo metadata --locked --format-version 1 --filter-platform "$host" "$@"; }
crates=$({ meta --offline 2>/dev/null || meta; } | python3 "$work/crates.py" "$crate")
{
    echo "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/"
    echo "Upstream-Name: tandem"
    echo "Comment: The $bin_name binary includes, statically linked, these Rust crates"
    echo " (name, version: licence as the crate declares it):"
    echo "$crates"
    echo
    echo "Files: *"
    echo "Copyright: $(date -u -d "@$SOURCE_DATE_EPOCH" +%Y) The Tandem authors"
    echo "License: Apache-2.0"
    echo " On Debian systems the full text of the Apache License, Version 2.0, is in"
    echo " /usr/share/common-licenses/Apache-2.0."
} >"$work/copyright"
put 0644 "$work/copyright" "$doc/copyright"
{
    echo "$package ($version) unstable; urgency=medium"
    echo
    echo "  * Built from the Tandem repository ($(git rev-parse --short HEAD 2>/dev/null || echo unknown))."
    echo
    echo " -- $maintainer  $(date -u -R -d "@$SOURCE_DATE_EPOCH")"
} | gzip -9n >"$work/changelog.Debian.gz"
put 0644 "$work/changelog.Debian.gz" "$doc/changelog.Debian.gz"
# Not uploaded to Debian: there is no ITP bug for a first upload to close.
{
    printf '%s\n' "$package: initial-upload-closes-no-bugs"
    if [[ $package == tandem-image ]]; then
        # Payloads for images, not run here: the busybox and OCI bases
        # they go into may have no glibc. (Static PIEs look like shared
        # objects without a NEEDED list to lintian.)
        for f in tandem tandem-initramfs; do
            printf '%s\n' "$package: statically-linked-binary [usr/lib/tandem-image/$f]" \
                "$package: shared-library-lacks-prerequisites [usr/lib/tandem-image/$f]"
        done
    fi
} >"$work/overrides"
put 0644 "$work/overrides" "usr/share/lintian/overrides/$package"

# Runtime dependencies from the binary's dynamic section: libc6 at the
# newest glibc symbol version it uses, any other library unversioned.
glibc=$(objdump -T "$root/usr/bin/$bin_name" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -1)
depends="libc6 (>= $glibc)"
for lib in $(objdump -p "$root/usr/bin/$bin_name" | awk '/NEEDED/ {print $2}'); do
    case $lib in
        libc.so.*|libm.so.*|libdl.so.*|libpthread.so.*|librt.so.*|ld-linux*) ;;
        libgcc_s.so.*) depends+=", libgcc-s1" ;;
        *) p=$(dpkg -S "*/$lib" 2>/dev/null | head -1 | cut -d: -f1)
           [[ -n $p ]] || { echo "build-deb: which package has $lib?" >&2; exit 1; }
           depends+=", $p" ;;
    esac
done
# Checksums, modes, times; the archive; lintian. Prints the .deb's path.
finish_package() {
    (cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) >"$pkg/md5sums"
    chmod 0644 "$pkg"/control "$pkg"/md5sums
    if [[ -f $pkg/conffiles ]]; then chmod 0644 "$pkg/conffiles"; fi
    find "$root" -type d -exec chmod 0755 {} +
    find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

    mkdir -p "$out"
    deb=$out/${package}_${version}_${arch}.deb
    dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >&2
    if ((lint)); then
        command -v lintian >/dev/null || { echo "build-deb: --lintian needs lintian (apt install lintian)" >&2; exit 1; }
        lintian --fail-on error --tag-display-limit 0 "$deb" >&2
    fi
    echo "$deb"
    exit 0
}

install -d -m 0755 "$pkg"
installed_size=$(du -sk --apparent-size "$root" | cut -f1)
if [[ $package == tandem-image ]]; then
    # The host tools a build runs (image-recipes/README.md).
    cat >"$pkg/control" <<EOF
Package: tandem-image
Version: $version
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $installed_size
Depends: $depends, apt, cpio, cryptsetup-bin, dosfstools, e2fsprogs, gdisk, grub-common, mtools, squashfs-tools
Recommends: grub-efi-amd64-bin | grub-efi-arm64-bin, mmdebstrap, u-boot-tools, systemd-boot-efi, binutils, sbsigntool, faketime
Suggests: tandem
Section: admin
Priority: optional
Description: image builder for Tandem A/B update images and bundles
 tandem-image builds, from a recipe, a bootable slot image (squashfs or
 ext4, optionally with dm-verity), the signed Tandem update bundle of it,
 and a whole GPT disk to flash: ESP with GRUB or U-Boot's boot script,
 two slots and a data partition. The root filesystem starts from busybox,
 an OCI image's layers, or a minimal Debian made by mmdebstrap.
 .
 This package ships tandem-image, the static tandem agent and initramfs
 it puts into images (its defaults for --agent and --init), and the
 example recipes in /usr/share/tandem-image/recipes.
EOF
    finish_package
fi
depends+=", adduser"
cat >"$pkg/control" <<EOF
Package: tandem
Version: $version
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $installed_size
Depends: $depends
Recommends: dbus, polkitd
Section: admin
Priority: optional
Description: A/B image update agent for image-based Linux hosts
 Tandem writes a signed update bundle into the inactive slot group of an
 A/B pair and switches to it through the bootloader (GRUB, U-Boot,
 systemd-boot or a custom command) for a trial boot; health checks after
 the boot commit it or fall back. Nothing is written before the bundle's
 signatures, compatible string, version and security epoch are checked,
 and the booted slot is never written.
 .
 This package ships the tandem command, tandem-boot-check.service (run
 before boot-complete.target), tandem.service with its D-Bus API,
 activation file, bus policy and polkit action and rule, a default
 /etc/tandem/tandem.toml to adapt, man pages and shell completions.
EOF
echo "/etc/tandem/tandem.toml" >"$pkg/conffiles"

# Maintainer scripts, as dh_installsystemd would write them: the boot
# check is enabled (not started: nothing runs during an image build);
# tandem.service is D-Bus activated, so it is neither enabled nor started,
# only stopped on removal; daemon-reload only where systemd runs.
cat >"$pkg/postinst" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = "configure" ]; then
    # Members of this group may install and manage updates (polkit rule).
    if ! getent group tandem >/dev/null; then
        addgroup --quiet --system tandem
    fi
fi
if [ "$1" = "configure" ] || [ "$1" = "abort-upgrade" ] || [ "$1" = "abort-deconfigure" ] || [ "$1" = "abort-remove" ]; then
    # postrm masks the unit on removal; a reinstall unmasks it.
    deb-systemd-helper unmask 'tandem-boot-check.service' >/dev/null || true
    # was-enabled is true on a first installation: enable there, keep the
    # administrator's choice on upgrades.
    if deb-systemd-helper --quiet was-enabled 'tandem-boot-check.service'; then
        deb-systemd-helper enable 'tandem-boot-check.service' >/dev/null || true
    else
        deb-systemd-helper update-state 'tandem-boot-check.service' >/dev/null || true
    fi
    if [ -d /run/systemd/system ]; then
        systemctl --system daemon-reload >/dev/null || true
    fi
fi
exit 0
EOF
cat >"$pkg/prerm" <<'EOF'
#!/bin/sh
set -e
# A running install is stopped like a power cut would stop it: the target
# group stays invalid, the booted one untouched.
if [ -d /run/systemd/system ] && [ "$1" = remove ]; then
    deb-systemd-invoke stop 'tandem.service' >/dev/null || true
fi
exit 0
EOF
cat >"$pkg/postrm" <<'EOF'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
    systemctl --system daemon-reload >/dev/null || true
fi
if [ "$1" = "remove" ]; then
    if [ -x "/usr/bin/deb-systemd-helper" ]; then
        deb-systemd-helper mask 'tandem-boot-check.service' >/dev/null || true
    fi
fi
if [ "$1" = "purge" ]; then
    if [ -x "/usr/bin/deb-systemd-helper" ]; then
        deb-systemd-helper purge 'tandem-boot-check.service' >/dev/null || true
        deb-systemd-helper unmask 'tandem-boot-check.service' >/dev/null || true
    fi
    # /var/lib/tandem is the device's A/B record (which group is good,
    # which versions failed), not the package's: it is kept.
fi
exit 0
EOF
chmod 0755 "$pkg/postinst" "$pkg/prerm" "$pkg/postrm"
finish_package

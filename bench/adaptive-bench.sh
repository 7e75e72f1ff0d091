#!/usr/bin/env bash
# adaptive-bench.sh - what an adaptive update fetches, against two floors
# measured in the same run, on ext4 debian update pairs built by
# image-recipes (bench/adaptive-images.sh):
#
#   (a) security  v1 (bookworm as released) -> the same packages with
#                 bookworm-updates and bookworm-security
#   (b) feature   v1 -> v1 plus curl
#   (c) same      v1 -> v1 again (a reinstall)
#   (d) large     v1 -> a very different package set
#   (r) rss       (a) with both images padded to 1 GiB: peak RSS
#
# For each: bundle bytes fetched (as % of the full bundle), range requests,
# wall time of `tandem install http://127.0.0.1/...` into file-backed
# slots, peak RSS; and the floors: the zstd size of v2's 4 KiB blocks that
# appear nowhere in v1 (examples/chunkstat.rs), and a static binary delta
# (`zstd --patch-from`, level $DELTA_LEVEL).
#
# Usage (as root or not): bench/adaptive-bench.sh
# Environment: IMAGES=work-out/adaptive (built if missing), WORKDIR (scratch,
# default mktemp -d), DELTA_LEVEL=12 (19 is a little smaller and minutes
# slower), KEEP=1 keeps WORKDIR.
# Prints numbers; it does not judge them. Exit 1 if an install failed or a
# slot is not the image byte for byte.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -x "$HOME/.cargo/bin/cargo" ]] && export PATH="$HOME/.cargo/bin:$PATH"
IMAGES=$(realpath -m "${IMAGES:-work-out/adaptive}")
DELTA_LEVEL=${DELTA_LEVEL:-12}
W=${WORKDIR:-$(mktemp -d /var/tmp/adaptive-bench.XXXXXX)}
mkdir -p "$W"
SERVER=""
cleanup() {
    [[ -n $SERVER ]] && kill "$SERVER" 2>/dev/null || true
    [[ ${KEEP:-0} == 1 ]] || rm -rf "$W"
}
trap cleanup EXIT

[[ -f $IMAGES/large/bench-large-2.0.0.rootfs.img ]] || bench/adaptive-images.sh "$IMAGES"
cargo build --release --locked -q -p tandem --bin tandem --example chunkstat
T=$PWD/target/release/tandem
CHUNKSTAT=$PWD/target/release/examples/chunkstat
img() { echo "$IMAGES/$1/bench-$1-$2.rootfs.img"; }
V1=$(img v1 1.0.0)

# Bundles with today's `bundle create` (content-defined chunks).
mkdir -p "$W/www"
"$T" keygen -o "$W/key" >/dev/null
bundle() { # NAME VERSION IMAGE
    SOURCE_DATE_EPOCH=1767225600 "$T" bundle create -o "$W/www/$1.tnd" --version "$2" \
        --compatible tandem-bench-x86_64 --image "rootfs=$3" --compression zstd --key "$W/key.key" >/dev/null
}
pad() { # IN OUT SIZE
    cp --sparse=always "$1" "$2"
    truncate -s "$3" "$2"
}
echo "== building bundles"
bundle v1 1.0.0 "$V1"
bundle security 1.1.0 "$(img security 1.1.0)"
bundle feature 1.1.0 "$(img feature 1.1.0)"
bundle large 2.0.0 "$(img large 2.0.0)"
pad "$V1" "$W/v1-1g.img" 1G
pad "$(img security 1.1.0)" "$W/security-1g.img" 1G
bundle security-1g 1.1.0 "$W/security-1g.img"

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 bench/range-server.py "$W/www" "$PORT" "$W/requests.log" 2>/dev/null &
SERVER=$!
for _ in $(seq 50); do python3 -c "import socket; socket.create_connection(('127.0.0.1',$PORT))" 2>/dev/null && break; sleep 0.1; done

# One device: slot a holds BOOTED (the running image), slot b empty.
device() { # DIR BOOTED SIZE
    local d=$1
    rm -rf "$d"; mkdir -p "$d/keys" "$d/state"
    cp "$W/key.pub" "$d/keys/"
    echo "tandem.slot=a" > "$d/cmdline"
    pad "$2" "$d/a.img" "$3"
    truncate -s "$3" "$d/b.img"
    # What the image ships (trust, version) and what /etc adds.
    mkdir -p "$d/root/usr/lib/tandem/conf.d" "$d/root/etc/tandem"
    cat > "$d/root/usr/lib/tandem/conf.d/00-bench.toml" <<EOF
compatible = "tandem-bench-x86_64"
[keyring]
directory = "$d/keys"
[image]
version = "1.0.0"
EOF
    cat > "$d/root/etc/tandem/tandem.toml" <<EOF
[state]
directory = "$d/state"
[boot]
cmdline = "$d/cmdline"
[slots.a.rootfs]
device = "$d/a.img"
[slots.b.rootfs]
device = "$d/b.img"
EOF
}

fail=0
printf '\n%-9s %11s %11s %7s %5s %7s %8s %11s %7s %11s %7s\n' case bundle fetched "%" reqs wall_s rss_MiB floor x_floor delta x_delta
run_case() { # NAME BOOTED NEW_IMAGE BUNDLE FLAGS
    local name=$1 booted=$2 new=$3 b=$4 flags=${5:-}
    local d="$W/dev-$name" size
    size=$(( $(stat -c %s "$new") > $(stat -c %s "$booted") ? $(stat -c %s "$new") : $(stat -c %s "$booted") ))
    device "$d" "$booted" "$size"
    : > "$W/requests.log"
    local t0 t1
    t0=$(date +%s.%N)
    if ! TANDEM_LOG=warn /usr/bin/time -f '%M' -o "$d/rss" "$T" --root "$d/root" --direct \
        install $flags "http://127.0.0.1:$PORT/$b.tnd" >"$d/out" 2>"$d/err"; then
        echo "$name: install failed: $(tail -3 "$d/err")"; fail=1; return
    fi
    t1=$(date +%s.%N)
    if ! cmp -s -n "$(stat -c %s "$new")" "$new" "$d/b.img"; then
        echo "$name: slot b is not the image"; fail=1
    fi
    local fetched reqs blen rss floor delta
    fetched=$(awk '{s+=$3} END {print s+0}' "$W/requests.log")
    reqs=$(wc -l < "$W/requests.log")
    blen=$(stat -c %s "$W/www/$b.tnd")
    rss=$(( $(cat "$d/rss") / 1024 ))
    floor=$("$CHUNKSTAT" --floor "$booted" "$new")
    delta=0
    if [[ $name != same && $name != rss-1g ]]; then
        zstd -q -f "-$DELTA_LEVEL" --long=31 --patch-from="$booted" "$new" -o "$W/delta.zst" 2>/dev/null &&
            delta=$(stat -c %s "$W/delta.zst")
    fi
    awk -v n="$name" -v b="$blen" -v f="$fetched" -v r="$reqs" -v t="$(echo "$t1 - $t0" | bc)" \
        -v m="$rss" -v fl="$floor" -v de="$delta" 'BEGIN {
        printf "%-9s %11d %11d %6.2f%% %5d %7.1f %8d %11d %7s %11d %7s\n", n, b, f, 100*f/b, r, t, m, fl,
            (fl > 0 ? sprintf("%.2f", f/fl) : "-"), de, (de > 0 ? sprintf("%.2f", f/de) : "-") }'
    grep -h "fetch\|reus" "$d/out" "$d/err" 2>/dev/null | sed "s/^/    $name: /" | head -3 || true
}
run_case security "$V1" "$(img security 1.1.0)" security
run_case feature "$V1" "$(img feature 1.1.0)" feature
run_case same "$V1" "$V1" v1 --force
run_case large "$V1" "$(img large 2.0.0)" large
run_case rss-1g "$W/v1-1g.img" "$W/security-1g.img" security-1g
echo
echo "floor: zstd of the new image's 4 KiB blocks found nowhere in the old one; delta: zstd -$DELTA_LEVEL --long=31 --patch-from"
echo "targets (issue 12): security, feature <= 1.5 x floor; feature <= 6 %; same <= 1 %; large <= 105 %; rss-1g <= 24 MiB"
exit $fail

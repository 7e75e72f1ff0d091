#!/usr/bin/env bash
# install-bench.sh - measure `tandem install` throughput and memory against
# ceilings taken on the same machine, payload and loop device in the same run.
#
# Usage (as root):   bench/install-bench.sh
# Environment:
#   SIZE_MIB=1024    size of each payload image, MiB
#   WORKDIR=...      scratch directory (default: mktemp -d under /var/tmp);
#                    must be absent or empty; it is removed on exit
#   FILL_PCT=60      how full the ext4 payload is
#   VERIFY=1         compare the loop device with the payload after each install
#   CEIL_RUNS=3      the ceilings are the best of this many runs
#   CASE_RUNS=3      each install case too (fastest wall time; largest peak RSS)
#   KEEP=1           keep WORKDIR on exit (loop device and server still go)
#   TANDEM=path      use this binary instead of building target/release/tandem
#   LOOP_DIO=1       attach the loop device with --direct-io=on: it then writes
#                    to its backing file with O_DIRECT instead of copying into
#                    the page cache, like a real disk (DMA, no CPU copy); 0 for
#                    a buffered loop device. Ceilings and installs use the same.
#
# Exit status: 0 when every install succeeded (whether or not it met the
# targets; this prints numbers, it does not judge them), 1 otherwise.
# See bench/README.md.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/lib.sh
source "$SCRIPT_DIR/lib.sh"
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)

SIZE_MIB=${SIZE_MIB:-1024}
FILL_PCT=${FILL_PCT:-60}
VERIFY=${VERIFY:-1}
CEIL_RUNS=${CEIL_RUNS:-3}
CASE_RUNS=${CASE_RUNS:-3}
KEEP=${KEEP:-0}
LOOP_DIO=${LOOP_DIO:-1}
TARGET_PCT=90      # a case must reach this % of the slower ceiling
RSS_LIMIT_MIB=16   # and peak RSS at most this

W=""               # work directory
LOOPDEV=""         # slot b
HTTP_PID=""        # bench/range-server.py
REG_PID=""         # docker-registry
REG_PORT=""
HTTP_PORT=""
TANDEM=${TANDEM:-}

log() { printf '[bench] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- cleanup

cleanup() {
    local rc=$?
    set +e
    if [[ -n $HTTP_PID ]]; then
        kill "$HTTP_PID" 2>/dev/null
        wait "$HTTP_PID" 2>/dev/null
    fi
    if [[ -n $REG_PID ]]; then
        kill "$REG_PID" 2>/dev/null
        wait "$REG_PID" 2>/dev/null
    fi
    if [[ -n $LOOPDEV ]]; then
        losetup -d "$LOOPDEV" || log "warning: could not detach $LOOPDEV"
    fi
    if [[ -n $W && -d $W ]]; then
        if [[ $KEEP == 1 ]]; then
            log "keeping $W"
        else
            rm -rf -- "$W"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- helpers

# Floating-point arithmetic: calc 'EXPR' [DECIMALS] -> printed, 2 decimals
# unless told otherwise.
calc() { awk "BEGIN { printf \"%.${2:-2}f\", ($1) }"; }

# elapsed CMD... -> seconds the command took (its stdout is discarded).
elapsed() {
    local t0 t1
    t0=$(date +%s%N)
    "$@" >/dev/null
    t1=$(date +%s%N)
    calc "($t1 - $t0) / 1e9" 6
}

# Installs the Debian packages providing missing tools, with one apt update.
ensure_tools() {
    local -a missing=()
    [[ -x /usr/bin/time ]]        || missing+=(time)
    command -v mkfs.ext4 >/dev/null || missing+=(e2fsprogs)
    command -v losetup >/dev/null  || missing+=(mount)      # bookworm: losetup is in "mount"
    command -v openssl >/dev/null  || missing+=(openssl)
    command -v python3 >/dev/null  || missing+=(python3)
    command -v sha256sum >/dev/null || missing+=(coreutils)
    if ((${#missing[@]})); then
        log "installing: ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

build_agent() {
    if [[ -n $TANDEM ]]; then
        [[ -x $TANDEM ]] || die "TANDEM=$TANDEM is not executable"
        return
    fi
    log "building tandem (release)"
    (cd "$REPO_ROOT" && cargo build --release -p tandem)
    TANDEM="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release/tandem"
    [[ -x $TANDEM ]] || die "no binary at $TANDEM"
}

make_workdir() {
    if [[ -n ${WORKDIR:-} ]]; then
        mkdir -p -- "$WORKDIR"
        [[ -z $(ls -A -- "$WORKDIR") ]] || die "WORKDIR=$WORKDIR is not empty (it is removed on exit)"
        W=$(cd "$WORKDIR" && pwd)
    else
        W=$(mktemp -d /var/tmp/tandem-bench.XXXXXX)
    fi
    mkdir -p "$W/logs"
    log "work directory: $W"
}

# ---------------------------------------------------------------- payloads

make_random_image() {
    log "random payload: $SIZE_MIB MiB"
    head -c "${SIZE_MIB}M" /dev/urandom >"$W/random.img"
}

# An ext4 image about FILL_PCT % full of files from usr/bin, usr/share/doc, usr/lib (bench/lib.sh).
make_ext4_image() {
    log "ext4 payload: $SIZE_MIB MiB, ~$FILL_PCT% full"
    make_fs_image "$W/ext4.img" "$SIZE_MIB" "$FILL_PCT" "$W/logs" usr/bin usr/share/doc usr/lib
}

# ---------------------------------------------------------------- device setup

setup_agent() {
    local slot_mib=$((SIZE_MIB + 64))
    "$TANDEM" keygen -o "$W/vendor" >/dev/null
    mkdir -p "$W/keys"
    cp "$W/vendor.pub" "$W/keys/"

    truncate -s "${slot_mib}M" "$W/slot-a.img"
    # Allocate slot b's backing file up front: the first write into a sparse
    # file pays for block allocation (about 3x slower here), which neither a
    # real partition nor the later runs would see.
    fallocate -l "${slot_mib}M" "$W/slot-b.img" 2>/dev/null \
        || truncate -s "${slot_mib}M" "$W/slot-b.img"
    local dio=off
    [[ $LOOP_DIO == 1 ]] && dio=on
    LOOPDEV=$(losetup -f --show --direct-io="$dio" "$W/slot-b.img")
    log "slot b: $LOOPDEV (direct-io $(cat "/sys/block/${LOOPDEV#/dev/}/loop/dio" 2>/dev/null || echo ?))"

    echo "root=/dev/vda tandem.slot=a" >"$W/cmdline"
    # Trust and the running version come from the image's conf.d; the rest
    # from /etc (tandem --root "$W/root").
    mkdir -p "$W/root/usr/lib/tandem/conf.d" "$W/root/etc/tandem/conf.d"
    cat >"$W/root/usr/lib/tandem/conf.d/00-bench.toml" <<EOF
compatible = "bench"
[keyring]
directory = "$W/keys"
[image]
version = "1.0.0"
EOF
    # Streaming throughput is what this measures: no adaptive plan (slot a
    # holds nothing the bundles share anyway).
    cat >"$W/root/etc/tandem/tandem.toml" <<EOF
[state]
directory = "$W/state"
[boot]
cmdline = "$W/cmdline"
[install]
adaptive = false
[slots.a.rootfs]
device = "$W/slot-a.img"
size = "${slot_mib}M"
[slots.b.rootfs]
device = "$LOOPDEV"
EOF
}

# make_bundle NAME IMAGE COMPRESSION [CHUNKING]
make_bundle() {
    log "bundle $1.tnd ($3, ${4:-fixed} chunks)"
    "$TANDEM" bundle create -o "$W/$1.tnd" --version 2.0.0 --compatible bench \
        --image "rootfs=$2" --compression "$3" --chunking "${4:-fixed}" \
        --key "$W/vendor.key" >/dev/null
}

# Debian's docker-registry on a free local port, the bundles pushed to it.
start_registry() {
    command -v docker-registry >/dev/null || apt-get install -y -qq docker-registry >/dev/null
    REG_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    mkdir -p "$W/registry"
    cat >"$W/registry/config.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $W/registry/data
http:
  addr: 127.0.0.1:$REG_PORT
  secret: bench
EOF
    docker-registry serve "$W/registry/config.yml" >"$W/logs/registry.log" 2>&1 &
    REG_PID=$!
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$REG_PORT") 2>/dev/null && break
        sleep 0.1
    done
    local b
    for b in "$@"; do
        "$TANDEM" bundle push --plain-http "$W/$b.tnd" "oci://127.0.0.1:$REG_PORT/bench/$b:2.0.0" >/dev/null
    done
    printf '[oci]\ninsecure_registries = ["127.0.0.1:%s"]\n' "$REG_PORT" \
        >"$W/root/etc/tandem/conf.d/50-registry.toml"
    log "registry on 127.0.0.1:$REG_PORT (pid $REG_PID): $*"
}

# Serves $W on a free local port.
start_http() {
    local try port
    for try in 1 2 3 4 5 6 7 8 9 10; do
        port=$((18080 + RANDOM % 1000))
        # Range-capable (an install reads a remote bundle's head by range).
        python3 "$SCRIPT_DIR/range-server.py" "$W" "$port" "$W/logs/requests.log" \
            >"$W/logs/http.log" 2>&1 &
        HTTP_PID=$!
        for _ in $(seq 50); do
            if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
                HTTP_PORT=$port
                log "http server on 127.0.0.1:$port (pid $HTTP_PID)"
                return
            fi
            kill -0 "$HTTP_PID" 2>/dev/null || break   # port taken: try another
            sleep 0.1
        done
        kill "$HTTP_PID" 2>/dev/null || true
        wait "$HTTP_PID" 2>/dev/null || true
        HTTP_PID=""
    done
    die "could not start the http server"
}

# ---------------------------------------------------------------- ceilings

HASH_OPENSSL=0 HASH_SHA256SUM=0 WRITE_DD=0

# best_rate CMD... -> best MiB/s of CEIL_RUNS runs of CMD over SIZE_MIB.
best_rate() {
    local best=0 r t
    for ((r = 0; r < CEIL_RUNS; r++)); do
        t=$(elapsed "$@")
        best=$(calc "$SIZE_MIB / $t > $best ? $SIZE_MIB / $t : $best")
    done
    echo "$best"
}

# Hash ceilings on the cached random image; write ceiling with dd onto slot
# b after one untimed pass (so the loop device's backing file is written
# once, as it is for every install after the first). Best of CEIL_RUNS each.
measure_ceilings() {
    local ddcmd=(dd if="$W/random.img" of="$LOOPDEV" bs=4M oflag=direct conv=fsync status=none)
    cat "$W/random.img" >/dev/null   # into page cache
    HASH_OPENSSL=$(best_rate openssl dgst -sha256 "$W/random.img")
    HASH_SHA256SUM=$(best_rate sha256sum "$W/random.img")
    "${ddcmd[@]}"                    # warm-up
    WRITE_DD=$(best_rate "${ddcmd[@]}")
    log "ceilings: openssl sha256 $HASH_OPENSSL MiB/s, sha256sum $HASH_SHA256SUM MiB/s, dd write $WRITE_DD MiB/s"
}

# ---------------------------------------------------------------- runs

declare -a R_CASE=() R_STATUS=() R_WALL=() R_CPU=() R_RSS=()
FAILED=0

# field FILE LABEL -> the value after "LABEL: " in /usr/bin/time -v output
field() { awk -F': ' -v l="$2" 'index($0, l) { print $NF; exit }' "$1"; }

# run_case CASE BUNDLE SOURCE PAYLOAD
run_case() {
    local name=$1 bundle=$2 src=$3 payload=$4
    local tag=${name//[\/ ]/_} rc=0 t0 t1 wall user sys rss run
    local best_wall="" best_cpu="" max_rss=0
    local tfile="$W/logs/$tag.time" lfile="$W/logs/$tag.log"
    log "run: $name <- $src (best of $CASE_RUNS)"
    R_CASE+=("$name")
    for ((run = 1; run <= CASE_RUNS; run++)); do
        cat "$W/$bundle" >/dev/null      # source in page cache
        rm -rf -- "$W/state"             # fresh state: no downgrade / lock issues
        t0=$(date +%s%N)
        /usr/bin/time -v -o "$tfile" \
            "$TANDEM" --root "$W/root" --direct install "$src" >"$lfile" 2>&1 || rc=$?
        t1=$(date +%s%N)
        if ((rc != 0)); then
            log "FAILED (exit $rc); last lines of $lfile:"
            tail -n 5 "$lfile" >&2
            FAILED=1
            R_STATUS+=("FAIL($rc)") R_WALL+=(-) R_CPU+=(-) R_RSS+=(-)
            return
        fi
        # time -v reports wall clock in 10 ms steps, too coarse for small
        # SIZE_MIB; take it from the clock around the call instead (the
        # difference is the fork/exec of /usr/bin/time, ~1 ms). CPU and peak
        # RSS come from time -v. The fastest run counts (as for the
        # ceilings); peak RSS is the largest of all runs.
        wall=$(calc "($t1 - $t0) / 1e9" 6)
        user=$(field "$tfile" "User time (seconds)")
        sys=$(field "$tfile" "System time (seconds)")
        rss=$(field "$tfile" "Maximum resident set size (kbytes)")
        ((rss > max_rss)) && max_rss=$rss
        if [[ -z $best_wall ]] || awk -v a="$wall" -v b="$best_wall" 'BEGIN { exit !(a < b) }'; then
            best_wall=$wall best_cpu=$(calc "$user + $sys")
        fi
    done
    R_WALL+=("$best_wall") R_CPU+=("$best_cpu") R_RSS+=("$(calc "$max_rss / 1024")")

    if [[ $VERIFY == 1 ]] && ! cmp -s -n "$((SIZE_MIB << 20))" "$payload" "$LOOPDEV"; then
        log "FAILED: $LOOPDEV does not hold $payload after the install"
        FAILED=1
        R_STATUS+=("BADDATA")
    else
        R_STATUS+=("ok")
    fi
}

# ---------------------------------------------------------------- report

report() {
    local target i mibs meets rssok
    target=$(calc "$TARGET_PCT / 100 * ($HASH_OPENSSL < $WRITE_DD ? $HASH_OPENSSL : $WRITE_DD)")
    echo
    echo "tandem install benchmark: SIZE_MIB=$SIZE_MIB, $(nproc) CPUs, $(uname -r), slot b on $LOOPDEV"
    printf '%-18s %-7s %8s %9s %8s %9s  %-11s %s\n' \
        case status "wall s" "MiB/s" "CPU s" "RSS MiB" "MiB/s>=tgt" "RSS<=${RSS_LIMIT_MIB}"
    for i in "${!R_CASE[@]}"; do
        if [[ ${R_WALL[$i]} == - ]]; then
            printf '%-18s %-7s %8s %9s %8s %9s  %-11s %s\n' "${R_CASE[$i]}" "${R_STATUS[$i]}" - - - - - -
            continue
        fi
        mibs=$(calc "${R_WALL[$i]} > 0 ? $SIZE_MIB / ${R_WALL[$i]} : 0")
        meets=$(awk -v a="$mibs" -v b="$target" 'BEGIN { print (a + 0 >= b + 0) ? "yes" : "NO" }')
        rssok=$(awk -v a="${R_RSS[$i]}" -v b="$RSS_LIMIT_MIB" 'BEGIN { print (a + 0 <= b + 0) ? "yes" : "NO" }')
        printf '%-18s %-7s %8.3f %9s %8s %9s  %-11s %s\n' "${R_CASE[$i]}" "${R_STATUS[$i]}" \
            "${R_WALL[$i]}" "$mibs" "${R_CPU[$i]}" "${R_RSS[$i]}" "$meets" "$rssok"
    done
    echo
    echo "ceilings (same run, best of $CEIL_RUNS):"
    printf '  %-34s %9s MiB/s\n' "hash, openssl dgst -sha256 (cached)" "$HASH_OPENSSL"
    printf '  %-34s %9s MiB/s\n' "hash, sha256sum (cached)" "$HASH_SHA256SUM"
    printf '  %-34s %9s MiB/s\n' "write, dd bs=4M oflag=direct fsync" "$WRITE_DD"
    printf '  %-34s %9s MiB/s  (%d%% of min(openssl hash, dd write))\n' "target" "$target" "$TARGET_PCT"
}

# ---------------------------------------------------------------- main

main() {
    ((EUID == 0)) || die "run as root (loop devices)"
    [[ $SIZE_MIB =~ ^[1-9][0-9]*$ ]] || die "SIZE_MIB must be a positive integer"
    ensure_tools
    build_agent
    make_workdir
    make_random_image
    make_ext4_image
    setup_agent
    make_bundle random-none "$W/random.img" none
    make_bundle ext4-zstd "$W/ext4.img" zstd
    make_bundle ext4-none "$W/ext4.img" none
    make_bundle ext4-zstd-cdc "$W/ext4.img" zstd cdc
    start_http
    start_registry random-none ext4-zstd
    measure_ceilings

    local url="http://127.0.0.1:$HTTP_PORT"
    run_case "random/none file" random-none.tnd "$W/random-none.tnd" "$W/random.img"
    run_case "random/none http" random-none.tnd "$url/random-none.tnd" "$W/random.img"
    run_case "ext4/zstd file" ext4-zstd.tnd "$W/ext4-zstd.tnd" "$W/ext4.img"
    run_case "ext4/zstd http" ext4-zstd.tnd "$url/ext4-zstd.tnd" "$W/ext4.img"
    run_case "ext4/none file" ext4-none.tnd "$W/ext4-none.tnd" "$W/ext4.img"
    run_case "ext4/none http" ext4-none.tnd "$url/ext4-none.tnd" "$W/ext4.img"
    run_case "ext4/zstd-cdc file" ext4-zstd-cdc.tnd "$W/ext4-zstd-cdc.tnd" "$W/ext4.img"
    run_case "ext4/zstd-cdc http" ext4-zstd-cdc.tnd "$url/ext4-zstd-cdc.tnd" "$W/ext4.img"
    local oci="oci://127.0.0.1:$REG_PORT/bench"
    run_case "random/none oci" random-none.tnd "$oci/random-none:2.0.0" "$W/random.img"
    run_case "ext4/zstd oci" ext4-zstd.tnd "$oci/ext4-zstd:2.0.0" "$W/ext4.img"

    report
    return "$FAILED"
}

main "$@"

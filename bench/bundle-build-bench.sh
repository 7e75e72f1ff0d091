#!/usr/bin/env bash
# bundle-build-bench.sh - time `tandem bundle create --compression zstd` on
# one thread and on every CPU, next to `rauc bundle` (a zstd squashfs) of the
# same ext4 image, in the same run.
#
# Usage:        bench/bundle-build-bench.sh
# Environment:
#   SIZE_MIB=1024   size of the ext4 image, MiB
#   FILL_PCT=60     how full it is, with files from /usr/lib, /usr/share, /usr/bin
#   RUNS=3          each case is the fastest of this many runs
#   JOBS=N          --jobs of the "every CPU" case (default: nproc)
#   CHUNKING="fixed cdc"  the --chunking values to time, each with 1 and JOBS
#                   jobs (fixed: 1 MiB zstd frames and chunk index; cdc,
#                   the default: content-defined chunks); empty for a tandem
#                   without --chunking
#   RAUC_LEVEL=3    zstd level of the second rauc case; the first uses
#                   mksquashfs's default for -comp zstd (15)
#   RAUC_FORMAT=plain   the rauc bundle format (plain, RAUC 1.8's default, or verity)
#   WORKDIR=...     scratch directory (default: mktemp -d under /var/tmp);
#                   must be absent or empty; it is removed on exit
#   KEEP=1          keep WORKDIR on exit
#   TANDEM=path     use this binary instead of building target/release/tandem
#   TANDEM_ARGS=... more `tandem bundle create` options for both tandem cases
#
# Every case reads the image from the page cache and writes its bundle beside
# it. tandem fsyncs the bundle before it renames it into place, and that is
# in its time; rauc does not fsync. For each chunking the script checks that
# the bundles made with 1 and JOBS jobs are byte-identical and that
# `tandem bundle verify` accepts them.
#
# Exit status: 0 when every build succeeded, verified and was the same for
# 1 and JOBS jobs (whether or not the target is met: this prints numbers, it does
# not judge them), 1 otherwise. See bench/README.md.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/lib.sh
source "$SCRIPT_DIR/lib.sh"
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)

SIZE_MIB=${SIZE_MIB:-1024}
FILL_PCT=${FILL_PCT:-60}
RUNS=${RUNS:-3}
JOBS=${JOBS:-$(nproc)}
RAUC_LEVEL=${RAUC_LEVEL:-3}
RAUC_FORMAT=${RAUC_FORMAT:-plain}
KEEP=${KEEP:-0}
TANDEM=${TANDEM:-}
read -r -a TANDEM_EXTRA <<<"${TANDEM_ARGS:-}"
read -r -a CHUNKINGS <<<"${CHUNKING-fixed cdc}"
TARGET_RATIO=0.5   # tandem on every CPU: at most this times rauc's time
EPOCH=1795651200   # SOURCE_DATE_EPOCH for the tandem bundles

W=""
LOAD0=""

log() { printf '[bench] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

cleanup() {
    local rc=$?
    set +e
    if [[ -n $W && -d $W ]]; then
        if [[ $KEEP == 1 ]]; then log "keeping $W"; else rm -rf -- "$W"; fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

calc() { awk "BEGIN { printf \"%.${2:-2}f\", ($1) }"; }

# field FILE LABEL -> the value after "LABEL: " in /usr/bin/time -v output
field() { awk -F': ' -v l="$2" 'index($0, l) { print $NF; exit }' "$1"; }

ensure_tools() {
    local -a missing=()
    [[ -x /usr/bin/time ]]           || missing+=(time)
    command -v mkfs.ext4 >/dev/null  || missing+=(e2fsprogs)
    command -v openssl >/dev/null    || missing+=(openssl)
    command -v rauc >/dev/null       || missing+=(rauc)
    command -v mksquashfs >/dev/null || missing+=(squashfs-tools)
    if ((${#missing[@]})); then
        ((EUID == 0)) || die "missing ${missing[*]}; install them (apt-get install ${missing[*]}) or run as root"
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
    (cd "$REPO_ROOT" && cargo build --release --locked -p tandem)
    TANDEM="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release/tandem"
    [[ -x $TANDEM ]] || die "no binary at $TANDEM"
}

make_workdir() {
    if [[ -n ${WORKDIR:-} ]]; then
        mkdir -p -- "$WORKDIR"
        [[ -z $(ls -A -- "$WORKDIR") ]] || die "WORKDIR=$WORKDIR is not empty (it is removed on exit)"
        W=$(cd "$WORKDIR" && pwd)
    else
        W=$(mktemp -d /var/tmp/tandem-bundle-bench.XXXXXX)
    fi
    mkdir -p "$W/logs" "$W/rauc-content"
    log "work directory: $W"
}

# An ext4 image about FILL_PCT % full of files from usr/lib, usr/share, usr/bin (bench/lib.sh).
make_image() {
    log "ext4 image: $SIZE_MIB MiB, ~$FILL_PCT% full"
    make_fs_image "$W/rootfs.ext4" "$SIZE_MIB" "$FILL_PCT" "$W/logs" usr/lib usr/share usr/bin
}

setup_signing() {
    "$TANDEM" keygen -o "$W/vendor" >/dev/null
    mkdir -p "$W/keys"
    cp "$W/vendor.pub" "$W/keys/"
    openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=tandem bundle bench" \
        -keyout "$W/rauc-key.pem" -out "$W/rauc-cert.pem" 2>"$W/logs/openssl.log"
    ln "$W/rootfs.ext4" "$W/rauc-content/rootfs.ext4"
    cat >"$W/rauc-content/manifest.raucm" <<EOF
[update]
compatible=bench
version=2.0.0

[bundle]
format=$RAUC_FORMAT

[image.rootfs]
filename=rootfs.ext4
EOF
}

# tandem_cmd OUT JOBS [CHUNKING] / rauc_cmd OUT MKSQUASHFS-ARGS -> the command, in CMD
tandem_cmd() {
    CMD=(env "SOURCE_DATE_EPOCH=$EPOCH" "$TANDEM" bundle create -o "$1" --version 2.0.0
         --compatible bench --image "rootfs=$W/rootfs.ext4" --compression zstd --jobs "$2"
         --key "$W/vendor.key")
    [[ -z ${3:-} ]] || CMD+=(--chunking "$3")
    CMD+=("${TANDEM_EXTRA[@]}")
}
rauc_cmd() {
    CMD=(rauc bundle --cert="$W/rauc-cert.pem" --key="$W/rauc-key.pem"
         --mksquashfs-args="$2" "$W/rauc-content" "$1")
}
CMD=()

declare -a R_CASE=() R_WALL=() R_CPU=() R_RSS=() R_SIZE=()
FAILED=0

# run_case NAME OUT CMD... -> fastest of RUNS; CPU of that run; largest peak RSS
run_case() {
    local name=$1 out=$2 tag=${1//[^A-Za-z0-9]/_} run t0 t1 wall user sys rss rc
    local best="" best_cpu="" max_rss=0 tfile lfile
    shift 2
    tfile="$W/logs/$tag.time" lfile="$W/logs/$tag.log"
    log "run: $name (best of $RUNS)"
    for ((run = 1; run <= RUNS; run++)); do
        rm -f -- "$out"
        cat "$W/rootfs.ext4" >/dev/null
        rc=0
        t0=$(date +%s%N)
        /usr/bin/time -v -o "$tfile" "$@" >"$lfile" 2>&1 || rc=$?
        t1=$(date +%s%N)
        if ((rc != 0)); then
            log "FAILED (exit $rc); last lines of $lfile:"
            tail -n 5 "$lfile" >&2
            FAILED=1
            R_CASE+=("$name") R_WALL+=(-) R_CPU+=(-) R_RSS+=(-) R_SIZE+=(-)
            return
        fi
        wall=$(calc "($t1 - $t0) / 1e9" 3)
        user=$(field "$tfile" "User time (seconds)")
        sys=$(field "$tfile" "System time (seconds)")
        rss=$(field "$tfile" "Maximum resident set size (kbytes)")
        ((rss > max_rss)) && max_rss=$rss
        if [[ -z $best ]] || awk -v a="$wall" -v b="$best" 'BEGIN { exit !(a < b) }'; then
            best=$wall best_cpu=$(calc "$user + $sys")
        fi
    done
    R_CASE+=("$name") R_WALL+=("$best") R_CPU+=("$best_cpu")
    R_RSS+=("$(calc "$max_rss / 1024" 1)") R_SIZE+=("$(calc "$(stat -c %s "$out") / 1048576" 1)")
}

# ratio I J -> wall time of case I over case J
ratio() {
    [[ -n $1 && -n $2 && ${R_WALL[$1]} != - && ${R_WALL[$2]} != - ]] || { echo -; return; }
    calc "${R_WALL[$1]} / ${R_WALL[$2]}"
}

RAUC_DEF="" RAUC_L3=""       # their indexes in R_*
declare -a T_ONE=() T_ALL=() T_LABEL=() T_SAME=()

report() {
    local i k mibs
    echo
    echo "bundle build benchmark: ext4 image of $SIZE_MIB MiB (~$FILL_PCT% full), $(nproc) CPUs, $(uname -r), best of $RUNS"
    echo "load average before the runs: $LOAD0${TANDEM_ARGS:+; TANDEM_ARGS=$TANDEM_ARGS}"
    echo "$("$TANDEM" --version 2>/dev/null || echo tandem), $(rauc --version), $(mksquashfs -version | head -n 1)"
    printf '%-40s %8s %8s %8s %8s %9s %9s\n' case "wall s" "MiB/s" "CPU s" "RSS MiB" "out MiB" "/ rauc"
    for i in "${!R_CASE[@]}"; do
        if [[ ${R_WALL[$i]} == - ]]; then
            printf '%-40s %8s\n' "${R_CASE[$i]}" FAILED
            continue
        fi
        mibs=$(calc "$SIZE_MIB / ${R_WALL[$i]}" 0)
        printf '%-40s %8.3f %8s %8s %8s %9s %9s\n' "${R_CASE[$i]}" "${R_WALL[$i]}" "$mibs" \
            "${R_CPU[$i]}" "${R_RSS[$i]}" "${R_SIZE[$i]}" "$(ratio "$i" "$RAUC_DEF")"
    done
    echo
    echo "/ rauc: wall time over that of '${R_CASE[$RAUC_DEF]}'"
    for k in "${!T_LABEL[@]}"; do
        echo "${T_LABEL[$k]}:"
        printf '  %-44s %s  (target <= %s)\n' "$JOBS jobs / rauc, mksquashfs zstd default:" \
            "$(ratio "${T_ALL[$k]}" "$RAUC_DEF")" "$TARGET_RATIO"
        printf '  %-44s %s\n' "$JOBS jobs / rauc, zstd level $RAUC_LEVEL:" "$(ratio "${T_ALL[$k]}" "$RAUC_L3")"
        printf '  %-44s %s\n' "$JOBS jobs / 1 job:" "$(ratio "${T_ALL[$k]}" "${T_ONE[$k]}")"
        printf '  %-44s %s\n' "1 and $JOBS jobs byte-identical:" "${T_SAME[$k]}"
    done
}

# tandem_cases CHUNKING LABEL: 1 and JOBS jobs, their bundles compared and verified
tandem_cases() {
    local c=$1 label=$2 tag=${1:-default} same=no
    tandem_cmd "$W/$tag-1.tnd" 1 "$c"
    T_ONE+=("${#R_CASE[@]}")
    run_case "$label, --jobs 1" "$W/$tag-1.tnd" "${CMD[@]}"
    tandem_cmd "$W/$tag-n.tnd" "$JOBS" "$c"
    T_ALL+=("${#R_CASE[@]}")
    run_case "$label, --jobs $JOBS" "$W/$tag-n.tnd" "${CMD[@]}"
    if [[ -f $W/$tag-1.tnd && -f $W/$tag-n.tnd ]] && cmp -s "$W/$tag-1.tnd" "$W/$tag-n.tnd"; then
        same=yes
    else
        FAILED=1
    fi
    if [[ -f $W/$tag-n.tnd ]] && ! "$TANDEM" bundle verify --keyring "$W/keys" "$W/$tag-n.tnd" \
        >"$W/logs/verify-$tag.log" 2>&1; then
        log "FAILED: tandem bundle verify ($label); see below"
        cat "$W/logs/verify-$tag.log" >&2
        FAILED=1
    fi
    T_LABEL+=("$label") T_SAME+=("$same")
    rm -f -- "$W/$tag-1.tnd"          # keep the disk use down
}

main() {
    [[ $SIZE_MIB =~ ^[1-9][0-9]*$ ]] || die "SIZE_MIB must be a positive integer"
    [[ $JOBS =~ ^[1-9][0-9]*$ ]] || die "JOBS must be a positive integer"
    ensure_tools
    build_agent
    make_workdir
    make_image
    setup_signing
    LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)

    local c
    if ((${#CHUNKINGS[@]} == 0)); then
        tandem_cases "" "tandem"
    fi
    for c in "${CHUNKINGS[@]}"; do
        tandem_cases "$c" "tandem $c"
    done
    rauc_cmd "$W/zstd.raucb" "-comp zstd"
    RAUC_DEF=${#R_CASE[@]}
    run_case "rauc, -comp zstd (level 15)" "$W/zstd.raucb" "${CMD[@]}"
    rauc_cmd "$W/zstd$RAUC_LEVEL.raucb" "-comp zstd -Xcompression-level $RAUC_LEVEL"
    RAUC_L3=${#R_CASE[@]}
    run_case "rauc, -comp zstd level $RAUC_LEVEL" "$W/zstd$RAUC_LEVEL.raucb" "${CMD[@]}"

    report
    return "$FAILED"
}

main "$@"

# Shared by the bench scripts (sourced): a filesystem image that compresses
# like a root filesystem, not like zeros.

# make_fs_image OUT SIZE_MIB FILL_PCT WORKDIR DIR...
# Picks files from the DIRs (relative to /), interleaved so the image holds
# a mix of binaries, libraries and text, until about FILL_PCT % of SIZE_MIB
# is used (sizes rounded up to 4 KiB blocks), then builds an ext4 image
# from them with mkfs.ext4 -d (no loop mount). If the sources are smaller
# than that, further rounds go into numbered subdirectories. Unreadable
# files are skipped. Logs with `log` if the caller defines it.
make_fs_image() {
    local out=$1 size_mib=$2 fill_pct=$3 work=$4
    shift 4
    local tree="$work/fs-tree" lists="$work/fs-lists"
    local budget=$((size_mib * 1048576 * fill_pct / 100)) used=0 round=0 got i=0 src
    rm -rf -- "$tree" "$lists"
    mkdir -p "$tree" "$lists"
    # "type<TAB>size<TAB>path" for regular files and symlinks, relative to /.
    for src in "$@"; do
        [[ -d /$src ]] || continue
        (cd / && find "$src" \( -type f -o -type l \) -readable -printf '%y\t%s\t%p\n' 2>/dev/null) \
            >"$lists/src.$i"
        i=$((i + 1))
    done
    ((i > 0)) || { echo "make_fs_image: none of $* exists" >&2; return 1; }
    paste -d '\n' "$lists"/src.* | grep -v '^$' >"$lists/all"
    while ((used < budget * 95 / 100)); do
        awk -F'\t' -v budget=$((budget - used)) '
            { sz = ($1 == "f") ? int(($2 + 4095) / 4096) * 4096 : 0
              if (acc + sz <= budget) { acc += sz; print $3 } }
            END { print acc > "/dev/stderr" }' "$lists/all" \
            >"$lists/round.$round" 2>"$lists/round.$round.bytes"
        got=$(<"$lists/round.$round.bytes")
        ((got > 0)) || break
        mkdir -p "$tree/$round"
        tar -C / -cf - --no-recursion --ignore-failed-read --verbatim-files-from \
            -T "$lists/round.$round" 2>/dev/null | tar -C "$tree/$round" -xpf -
        used=$((used + got))
        round=$((round + 1))
    done
    declare -F log >/dev/null && log "ext4 image $out: $((used >> 20)) MiB of files in $round round(s)"
    truncate -s "${size_mib}M" "$out"
    mkfs.ext4 -q -F -d "$tree" "$out"
    rm -rf -- "$tree" "$lists"
}

#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/, one after another, each on ONE core
# (-jobs=1 -workers=1), and prints one line per target:
#
#   target  seconds  execs  execs/s  corpus  crashes
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#   SECONDS_PER_TARGET  default 600
#   TARGET              default: every target in fuzz/Cargo.toml, in order
#
# Examples:
#   scripts/fuzz.sh                 # every target, 10 minutes each
#   scripts/fuzz.sh 60 manifest tar_header
#
# What it needs and does:
# - cargo-fuzz (installed from crates.io with `cargo install cargo-fuzz`
#   if missing). Only the stable toolchain is here: RUSTC_BOOTSTRAP=1 lets
#   stable rustc take the nightly flags cargo-fuzz passes (-Zsanitizer,
#   -Cpasses=sancov-module, ...). AddressSanitizer works that way on this
#   machine; FUZZ_SANITIZER=none (cargo fuzz -s none) is the fallback, and
#   the script falls back to it by itself if the ASan build fails.
# - Builds with -O and debug assertions (overflow checks included).
# - Corpora live in fuzz/corpus/<target>/ (git-ignored) and grow across
#   runs; each is seeded first from real inputs made here: a bundle from
#   `tandem bundle create` (if target/*/tandem exists or builds), its
#   members, headers and payloads; a grubenv from `grub-editenv`; U-Boot
#   environments from `fw_setenv` (binary) and a text env; the shipped
#   config; and fuzz/regressions/<target>/ (the minimized crashers kept as
#   regression tests, agent/tests/fuzz_regressions.rs).
# - Crashes land in fuzz/artifacts/<target>/ (git-ignored); the run of a
#   target stops at its first one, the others still run. Minimize one with
#   `RUSTC_BOOTSTRAP=1 cargo fuzz tmin -O <target> <file>` in fuzz/ and keep
#   it under fuzz/regressions/<target>/.
# - Full logs: fuzz/artifacts/logs/<target>/fuzz-0.log.
#
# Exit status: 0 if no target crashed, 1 otherwise.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
FUZZ="$ROOT/fuzz"
SECS="${1:-600}"
shift || true
export RUSTC_BOOTSTRAP=1
SAN="${FUZZ_SANITIZER:-address}"
# Build with one job too, unless told otherwise: other work shares the box.
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz from crates.io" >&2
    cargo install cargo-fuzz --locked
fi

if [ "$#" -gt 0 ]; then
    TARGETS=("$@")
else
    mapfile -t TARGETS < <(cd "$FUZZ" && cargo fuzz list)
fi

build() {
    local t="$1"
    (cd "$FUZZ" && cargo fuzz build -O --debug-assertions -s "$SAN" "$t") \
        >>"$FUZZ/artifacts/build.log" 2>&1
}

# --- seeds -----------------------------------------------------------------

seed() { # seed TARGET NAME < bytes
    mkdir -p "$FUZZ/corpus/$1"
    cat >"$FUZZ/corpus/$1/seed-$2"
}

seed_bundle() {
    local tnd="" w="$FUZZ/artifacts/seed-work"
    for b in "$ROOT/target/release/tandem" "$ROOT/target/debug/tandem"; do
        [ -x "$b" ] && tnd="$b" && break
    done
    if [ -z "$tnd" ] && (cd "$ROOT" && cargo build -q -p tandem --bin tandem) 2>/dev/null; then
        tnd="$ROOT/target/debug/tandem"
    fi
    [ -n "$tnd" ] || { echo "fuzz: no tandem binary; bundle seeds skipped" >&2; return 0; }
    rm -rf "$w" && mkdir -p "$w" && cd "$w"
    # The bundle target trusts the key of seed [1; 32]; keygen's key is
    # random, so the signed form of the seed goes through the target's
    # re-signing mode (first byte odd), the plain one through mode 0.
    "$tnd" keygen -o vendor >/dev/null 2>&1 || return 0
    head -c 300000 /dev/urandom >a.img
    head -c 200000 /dev/zero >>a.img
    printf 'boot data\n%.0s' $(seq 1 500) >b.img
    for c in zstd none; do
        "$tnd" bundle create -o "$c.tnd" --version 1.1.0 --compatible fuzz \
            --image rootfs=a.img --image boot=b.img --compression "$c" \
            --key vendor.key >/dev/null 2>&1 || continue
        { printf '\0'; cat "$c.tnd"; } | seed bundle "$c"
        mkdir -p "x-$c" && tar -xf "$c.tnd" -C "x-$c"
        seed manifest "$c" <"x-$c/manifest.json"
        { printf '\1'; cat "x-$c/signatures.json"; } | seed signatures "$c"
        # The mode-1 form: manifest length, manifest, then the archive after
        # the signatures member.
        local m s skip
        m=$(stat -c %s "x-$c/manifest.json")
        s=$(stat -c %s "x-$c/signatures.json")
        skip=$(( 512 + (m + 511) / 512 * 512 + 512 + (s + 511) / 512 * 512 ))
        {
            printf '\1'
            printf "\\x$(printf %02x $((m & 255)))\\x$(printf %02x $((m >> 8 & 255)))"
            cat "x-$c/manifest.json"
            tail -c +$((skip + 1)) "$c.tnd"
        } | seed bundle "$c-resigned"
        head -c 512 "$c.tnd" | seed tar_header "$c-manifest"
        tail -c +$(( skip + 1 )) "$c.tnd" | head -c 512 | seed tar_header "$c-image"
        for f in "x-$c"/images/*; do
            case "$f" in
            *.chunks) { printf '\0\0\0\0\0\0\0\0\0\0\0\0\0'; cat "$f"; } | seed chunk_index "$c-$(basename "$f")" ;;
            # frame_size 1 MiB is selector 8 (4096 << 8).
            *.zst) { printf '\x38'; head -c 65536 "$f"; } | seed frames "$c-$(basename "$f")" ;;
            esac
        done
    done
    cd "$ROOT"
}

seed_boot() {
    local w="$FUZZ/artifacts/seed-work/boot"
    rm -rf "$w" && mkdir -p "$w"
    if command -v grub-editenv >/dev/null; then
        grub-editenv "$w/grubenv" create
        grub-editenv "$w/grubenv" set TANDEM_ORDER="a b" TANDEM_B_TRIES=3 "weird=a\\b
c" saved_entry=0
        seed grubenv editenv <"$w/grubenv"
    fi
    if command -v fw_setenv >/dev/null; then
        head -c 65536 /dev/zero >"$w/env.img"
        echo "$w/env.img 0x0 0x4000" >"$w/single.config"
        printf '%s 0x0 0x4000\n%s 0x8000 0x4000\n' "$w/env.img" "$w/env.img" >"$w/redund.config"
        fw_setenv -c "$w/single.config" TANDEM_ORDER "a b" >/dev/null 2>&1 || true
        fw_setenv -c "$w/single.config" bootcmd "run distro_bootcmd" >/dev/null 2>&1 || true
        { printf '\0'; head -c 16384 "$w/env.img"; } | seed uboot_env single
        head -c 65536 /dev/zero >"$w/env.img"
        fw_setenv -c "$w/redund.config" TANDEM_ORDER "b a" >/dev/null 2>&1 || true
        fw_setenv -c "$w/redund.config" TANDEM_B_TRIES 2 >/dev/null 2>&1 || true
        { printf '\1'; head -c 16384 "$w/env.img"; } | seed uboot_env redundant
    fi
    printf 'TANDEM_A_OK=1\nTANDEM_ORDER=a b\nTANDEM_B_TRIES=3\nx=a\\\\b\\\nc\n\0' | seed uboot_text export
    printf '  # comment\nfoo\nbar=\n=x\n' | seed uboot_text import-edge
    for n in tandem-a.conf tandem-b+3.conf tandem-b+2-1.conf "tandem-a+0-3.CONF" "x+1+2-3.conf"; do
        printf '%s' "$n" | seed bls_entry "$n"
    done
    printf 'console=ttyS0 tandem.slot=b ro tandem.verity.roothash=%s tandem.verity.hashoffset=1048576 tandem.verity.salt=ab tandem.debug -- x' \
        "$(printf 'ab%.0s' $(seq 32))" | seed initramfs_cmdline verity
    printf 'tandem.slot=a quiet' | seed initramfs_cmdline plain
    seed config dist <"$ROOT/agent/dist/config/tandem.toml"
    # A manifest with dm-verity parameters (bundle create writes none).
    printf '{"format":1,"version":"1.1.0","compatible":"fuzz","security_epoch":0,"created":"2026-11-26T00:00:00Z","images":[{"slot_class":"rootfs","size":8388608,"sha256":"%s","compression":"zstd","payload_size":100,"frame_size":1048576,"chunks":{"size":1048576,"sha256":"%s"},"verity":{"root_hash":"%s","salt":"abcd","hash_offset":4194304,"data_block_size":4096,"hash_block_size":4096,"hash_algorithm":"sha256"}}]}' \
        "$(printf 'ab%.0s' $(seq 32))" "$(printf 'cd%.0s' $(seq 32))" "$(printf 'ef%.0s' $(seq 32))" | seed manifest verity
    printf '{"schema":1,"slots":{"a":{"state":"good"},"b":{"state":"invalid"}},"security_epoch_floor":0,"failures":[]}' |
        seed state minimal
    # TUF metadata: a root, a timestamp, targets with a delegation; globs.
    printf '\0{"signed":{"_type":"root","spec_version":"1.0.31","version":1,"expires":"2030-01-01T00:00:00Z","consistent_snapshot":true,"keys":{"k":{"keytype":"ed25519","scheme":"ed25519","keyval":{"public":"%s"}}},"roles":{"root":{"keyids":["k"],"threshold":1},"timestamp":{"keyids":["k"],"threshold":1},"snapshot":{"keyids":["k"],"threshold":1},"targets":{"keyids":["k"],"threshold":1}}},"signatures":[{"keyid":"k","sig":"%s"}]}' \
        "$(printf 'ab%.0s' $(seq 32))" "$(printf 'cd%.0s' $(seq 64))" | seed tuf_metadata root
    printf '\1{"signed":{"_type":"timestamp","spec_version":"1.0","version":2,"expires":"2030-01-01T00:00:00Z","meta":{"snapshot.json":{"version":2,"length":10,"hashes":{"sha256":"%s"}}}},"signatures":[]}' \
        "$(printf 'ab%.0s' $(seq 32))" | seed tuf_metadata timestamp
    printf '\3{"signed":{"_type":"targets","spec_version":"1.0","version":1,"expires":"2030-01-01T00:00:00Z","targets":{"os.tnd":{"length":1,"hashes":{"sha256":"00"},"custom":{"v":1}}},"delegations":{"keys":{},"roles":[{"name":"stable","keyids":[],"threshold":1,"terminating":true,"paths":["stable/*","[a-c]?*"]},{"name":"bins","keyids":[],"threshold":1,"terminating":false,"path_hash_prefixes":["ab"]}]}},"signatures":[]}' |
        seed tuf_metadata targets
    printf '\4dir/*.t[!x]d\ndir/os.tnd' | seed tuf_metadata glob
    printf '\0{"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"@1","platform":{"architecture":"amd64"}}]}\n--\n{"layers":[{"digest":"sha256:%s"}]}' \
        "$(printf '0%.0s' $(seq 64))" | seed oci index
    printf '\1[{"RepoTags":["fuzz"],"Layers":["abc/layer.tar","blobs/sha256/%s"]}]' \
        "$(printf '0%.0s' $(seq 64))" | seed oci docker
}

# --- run -------------------------------------------------------------------

mkdir -p "$FUZZ/artifacts" "$FUZZ/corpus"
: >"$FUZZ/artifacts/build.log"
if ! build "${TARGETS[0]}"; then
    if [ "$SAN" != none ]; then
        echo "fuzz: the $SAN build failed (fuzz/artifacts/build.log); using -s none" >&2
        SAN=none
        build "${TARGETS[0]}" || { tail -30 "$FUZZ/artifacts/build.log" >&2; exit 2; }
    else
        tail -30 "$FUZZ/artifacts/build.log" >&2
        exit 2
    fi
fi
(seed_bundle; seed_boot) || echo "fuzz: some seeds could not be made" >&2

crashed=0
printf '%-18s %7s %12s %9s %7s %7s\n' target seconds execs exec/s corpus crashes
for t in "${TARGETS[@]}"; do
    build "$t" || { printf '%-18s build failed (fuzz/artifacts/build.log)\n' "$t"; crashed=1; continue; }
    corpus="$FUZZ/corpus/$t"
    mkdir -p "$corpus" "$FUZZ/artifacts/$t"
    if [ -d "$FUZZ/regressions/$t" ]; then
        cp -n "$FUZZ/regressions/$t"/* "$corpus/" 2>/dev/null || true
    fi
    # With -jobs=1 libFuzzer runs the fuzzer in one child process whose
    # output goes to fuzz-0.log in the working directory.
    logdir="$FUZZ/artifacts/logs/$t"
    rm -rf "$logdir" && mkdir -p "$logdir"
    log="$logdir/fuzz-0.log"
    before=$(find "$FUZZ/artifacts/$t" -type f | wc -l)
    start=$(date +%s)
    (cd "$logdir" && cargo fuzz run --fuzz-dir "$FUZZ" -O --debug-assertions -s "$SAN" "$t" "$corpus" -- \
        -max_total_time="$SECS" -jobs=1 -workers=1 -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$FUZZ/artifacts/$t/") >"$logdir/driver.log" 2>&1 || true
    secs=$(( $(date +%s) - start ))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    execs=${execs:-0}
    rate=$(( secs > 0 ? execs / secs : 0 ))
    size=$(find "$corpus" -type f | wc -l)
    crashes=$(( $(find "$FUZZ/artifacts/$t" -type f | wc -l) - before ))
    [ "$crashes" -eq 0 ] || crashed=1
    printf '%-18s %7s %12s %9s %7s %7s\n' "$t" "$secs" "$execs" "$rate" "$size" "$crashes"
done
exit "$crashed"

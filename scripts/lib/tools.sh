# Sourced by the image and QEMU scripts: builds, in one cargo run, the
# x86_64 release tools they use, all statically linked: the agent and
# the initramfs the images carry, the image builder and the QEMU rig.
# One target and one set of flags means every crate they share
# (tandem, zstd, rustls, ...) compiles once, not once per target.
#
#   . scripts/lib/tools.sh; build_tools
#   -> $agent $init $img $qemu (absolute paths), $tdir (the target dir)
[[ -x "$HOME/.cargo/bin/cargo" ]] && export PATH="$HOME/.cargo/bin:$PATH"
tdir=$(realpath -m "${CARGO_TARGET_DIR:-target}")
tools_triple=x86_64-unknown-linux-gnu
tools_bin=$tdir/$tools_triple/release
agent=$tools_bin/tandem
init=$tools_bin/tandem-initramfs
img=$tools_bin/tandem-image
qemu=$tools_bin/tandem-qemu

# step TEXT: a timestamped progress line on stderr.
step() {
    printf '[%(%H:%M:%S)T] == %s\n' -1 "$*" >&2
}

build_tools() {
    local what="the agent, initramfs, image builder and QEMU rig"
    if [[ -x $agent && -x $init && -x $img && -x $qemu ]]; then
        step "checking $what are up to date"
    else
        step "compiling $what (release, static; a few minutes the first time)"
    fi
    # RUSTFLAGS with an explicit --target applies to the target only, not
    # to build scripts and proc macros.
    RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked \
        -p tandem -p tandem-initramfs -p tandem-image-recipes -p tandem-qemu-tests \
        --target "$tools_triple"
}

# Image builds, two at a time (TANDEM_BUILD_JOBS): each in its own work
# directory with its output in a log, a line when it starts and ends, the
# log on failure. The first build of a kind should run alone (wait_images
# after it): it fills the kernel and busybox cache the others read.
#   build_image DESC RECIPE ARGS...  (ARGS after the common ones)
#   wait_images                      (fails if any build failed)
_img_running=0 _img_failed=0 _img_n=0
build_image() {
    local desc=$1 recipe=$2
    shift 2
    while ((_img_running >= ${TANDEM_BUILD_JOBS:-2})); do
        wait -n || _img_failed=1
        _img_running=$((_img_running - 1))
    done
    _img_n=$((_img_n + 1))
    local log=$img_out/build-$_img_n.log
    step "building $desc"
    (
        t0=$SECONDS
        work=$(mktemp -d "$img_out/work.XXXXXX")
        if "$img" build "$recipe" "${img_common[@]}" --work "$work" "$@" >"$log" 2>&1; then
            rm -rf "$work" "$log"
            step "built $desc in $((SECONDS - t0)) s"
        else
            step "FAILED: $desc; its log ($log):"
            cat "$log" >&2
            exit 1
        fi
    ) &
    _img_running=$((_img_running + 1))
}
wait_images() {
    while ((_img_running > 0)); do
        wait -n || _img_failed=1
        _img_running=$((_img_running - 1))
    done
    ((_img_failed == 0))
}

#!/usr/bin/env bash
# Builds the minimal image twice from the same recipe and inputs, in two
# different directories, and checks that the slot image, the bundle and the
# disk are byte-identical. Prints "reproducible: N passed, M failed".
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -x "$HOME/.cargo/bin/cargo" ]] && export PATH="$HOME/.cargo/bin:$PATH"
images=work-out/images
[[ -f $images/vendor.key ]] || scripts/build-images.sh "$images" >/dev/null
agent=target/x86_64-unknown-linux-gnu/release/tandem
init=target/x86_64-unknown-linux-gnu/release/tandem-initramfs
recipe=image-recipes/recipes/minimal/recipe.toml
passed=0 failed=0
for run in 1 2; do
    d=work-out/repro-$run
    rm -rf "$d"
    target/release/tandem-image build "$recipe" --agent "$agent" --init "$init" --key "$images/vendor.key" \
        --out "$d" --work "$(mktemp -d /tmp/tandem-repro-$run.XXXX)" --cache /var/cache/tandem-image --disk >/dev/null
done
for f in minimal-1.0.0.rootfs.img minimal-1.0.0.tnd minimal-1.0.0.disk.img; do
    a=$(sha256sum < "work-out/repro-1/$f" | cut -c1-64)
    b=$(sha256sum < "work-out/repro-2/$f" | cut -c1-64)
    if [[ $a == "$b" ]]; then
        echo "PASS reproducible $f ($a)"; passed=$((passed + 1))
    else
        echo "FAIL reproducible $f ($a vs $b)"; failed=$((failed + 1))
    fi
done
echo "reproducible: $passed passed, $failed failed"
[[ $failed -eq 0 ]]

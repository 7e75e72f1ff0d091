//! `scripts/build-deb.sh --package tandem-image` packages this test
//! build's `tandem-image` for build hosts: lintian reports no error, the
//! package holds the builder, the payloads it puts into images and the
//! recipes, and the unpacked builder finds its shipped agent and
//! initramfs without --agent and --init. lintian and dpkg-deb are
//! required with TANDEM_TEST_REQUIRE_TOOLS=1 (CI), skipped otherwise.

mod common;

use std::path::Path;
use std::process::Command;

fn run(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap();
    assert!(
        o.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn the_image_builder_package_is_lintian_clean_and_finds_its_payloads() {
    let tools = ["dpkg-deb", "dpkg-architecture", "objdump", "lintian"];
    if !common::tools("tandem-image package", &tools) {
        return;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let t = tempfile::tempdir().unwrap();
    // Stand-ins for the static agent and initramfs: any executable will
    // do to check the package's layout.
    let bin = env!("CARGO_BIN_EXE_tandem-image");
    let stdout = run(Command::new(repo.join("scripts/build-deb.sh"))
        .args([
            "--package",
            "tandem-image",
            "--binary",
            bin,
            "--agent",
            bin,
            "--init",
            bin,
        ])
        .arg("--out")
        .arg(t.path())
        .arg("--lintian"));
    let deb = stdout.lines().last().expect("the .deb's path");
    assert!(
        deb.contains("/tandem-image_") && deb.ends_with(".deb"),
        "{stdout}"
    );

    let files = run(Command::new("dpkg-deb").arg("--contents").arg(deb));
    for want in [
        "./usr/bin/tandem-image",
        "./usr/lib/tandem-image/tandem",
        "./usr/lib/tandem-image/tandem-initramfs",
        "./usr/share/tandem-image/recipes/minimal/recipe.toml",
        "./usr/share/tandem-image/recipes/debian/recipe.toml",
        "./usr/share/man/man1/tandem-image.1.gz",
        "./usr/share/doc/tandem-image/copyright",
    ] {
        assert!(
            files.lines().any(|l| l.ends_with(want)),
            "{want} missing:\n{files}"
        );
    }
    let control = run(Command::new("dpkg-deb").args(["--field", deb, "Depends"]));
    for tool in [
        "squashfs-tools",
        "cryptsetup-bin",
        "gdisk",
        "mtools",
        "grub-common",
    ] {
        assert!(control.contains(tool), "Depends lacks {tool}: {control}");
    }

    // Unpacked, the builder takes its shipped payloads by default: without
    // --agent it gets as far as the signing key.
    let root = t.path().join("root");
    run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&root));
    let recipe = root.join("usr/share/tandem-image/recipes/minimal/recipe.toml");
    let o = Command::new(root.join("usr/bin/tandem-image"))
        .arg("build")
        .arg(&recipe)
        .arg("--key")
        .arg(t.path().join("no-such.key"))
        .arg("--out")
        .arg(t.path().join("out"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        !err.contains("--agent"),
        "the shipped agent was not found: {err}"
    );
    assert!(err.contains("no-such.key"), "{err}");
}

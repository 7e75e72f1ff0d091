//! Scenarios 15a–15d: the minimal image booted by systemd-boot 252 (OVMF,
//! `--bootloader systemd-boot`, built by scripts/build-images.sh into
//! `IMAGES/sdboot`). One Boot Loader Specification entry per slot on the
//! ESP, `tandem-<g>[+<left>[-<done>]].conf`, with the slot's kernel and
//! initrd beside it in `/tandem/<g>/`; systemd-boot counts a trial down by
//! renaming the entry, the agent (backend `systemd-boot`) arms, commits and
//! marks bad by rewriting its own entries. The bundles carry kernel and
//! initrd as images of their own, written to the other slot's files.
//!
//! systemd-boot prints nothing on the console (timeout 0): which slot it
//! chose shows in the initramfs's first line, `command line: slot <g>`.

use std::time::Duration;

use crate::scenario::{
    booted, expect_code, fail, install_and_cut, install_and_reboot, install_with, require,
    require_committed, status, verified, Fixture, Timeline,
};
use crate::scenarios::{fallback_after, trial_commits, Cuts};
use crate::vm::Vm;
use crate::RigError;

pub fn fixture(fx: &Fixture) -> Result<Fixture, RigError> {
    fx.variant(
        fx.images.join("sdboot"),
        "minimal-1.0.0.disk.img",
        "scripts/build-images.sh",
    )
}

/// The initramfs's first line: the slot the bootloader's entry named.
fn booting(slot: char) -> String {
    format!("command line: slot {slot}")
}

/// The loader entries as the guest sees them: `name@version`, in `ls`
/// order, separated by spaces.
fn entries(vm: &mut Vm) -> Result<String, RigError> {
    vm.output(
        "cd /boot/efi/loader/entries && for f in *; do printf '%s@%s ' \"$f\" \"$(sed -n 's/^version //p' \"$f\")\"; done; cd /",
        Duration::from_secs(30),
    )
}

/// Requires exactly `want` (file names, in `ls` order) in loader/entries.
fn require_entries(vm: &mut Vm, want: &[&str], t: &mut Timeline) -> Result<(), RigError> {
    let list = entries(vm)?;
    let names: Vec<&str> = list
        .split_whitespace()
        .filter_map(|e| e.split('@').next())
        .collect();
    if names != want {
        return Err(fail(format!(
            "loader/entries should hold {want:?}, holds: {list}"
        )));
    }
    t.step(format!("loader/entries (file@version): {}", list.trim()));
    Ok(())
}

/// Requires that slot `g`'s kernel and initrd on the ESP are what the
/// install recorded (the bundle's images, checked as they were written):
/// the same SHA-256 over exactly the image's length.
fn require_esp_files(vm: &mut Vm, g: &str, t: &mut Timeline) -> Result<(), RigError> {
    let st = status(vm)?;
    let images = st["slots"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["group"] == g))
        .and_then(|s| s["images"].as_array())
        .ok_or_else(|| fail(format!("status has no images for {g}: {st}")))?;
    let mut seen = Vec::new();
    for class in ["kernel", "initrd"] {
        let img = images
            .iter()
            .find(|i| i["class"] == class)
            .ok_or_else(|| fail(format!("status: slot {g} has no {class} image: {st}")))?;
        let (Some(dev), Some(sha), Some(size)) = (
            img["device"].as_str(),
            img["sha256"].as_str(),
            img["size"].as_u64(),
        ) else {
            return Err(fail(format!(
                "status: slot {g}'s {class} not recorded: {img}"
            )));
        };
        let got = vm.output(
            &format!("echo $(wc -c < {dev}) $(sha256sum {dev} | cut -d' ' -f1)"),
            Duration::from_secs(60),
        )?;
        let want = format!("{size} {sha}");
        if got.trim() != want {
            return Err(fail(format!(
                "{dev}: {got:?}, but the install wrote {want:?}"
            )));
        }
        seen.push(format!("{class} {size} bytes"));
    }
    t.step(format!(
        "slot {g}'s files on the ESP match what was installed: {}",
        seen.join(", ")
    ));
    Ok(())
}

/// 15a. Update A→B: the agent writes b's kernel, initrd and rootfs and
/// arms `tandem-b+1.conf`; power is cut the moment it says so, and
/// systemd-boot boots b all the same, counting the try; the
/// health check passes and the agent blesses it (`tandem-b.conf`). Then
/// B→A the same way. Every boot goes through dm-verity with the root hash
/// from the entry's `options`.
pub fn update_both_ways(fx: &Fixture, t: &mut Timeline) -> Result<(), RigError> {
    let sfx = fixture(fx)?;
    let server = sfx.serve()?;
    let name = "s15a-sdboot";
    let mut cfg = sfx.config(name, sfx.fresh_disk(name)?, Some(&server));
    let mut vm = Vm::start(&cfg)?;
    verified(&mut vm, 'a', t)?;
    booted(&mut vm, 'a', t)?;
    let st = status(&mut vm)?;
    require(
        &st,
        &[
            ("boot_backend", "systemd-boot"),
            ("booted", "a"),
            ("primary", "a"),
        ],
    )?;
    require_entries(&mut vm, &["tandem-a.conf"], t)?;
    // No clean reboot: power is cut the moment the install says it armed
    // b. What it wrote must already be on the disk (vfat fills in a renamed
    // file's directory entry only when the file is synced).
    let mut vm = install_and_cut(vm, &mut cfg, "minimal-1.1.0.tnd", t)?;
    verified(&mut vm, 'b', t)?;
    trial_commits(&mut vm, 'b', t)?;
    require_committed(&status(&mut vm)?, "b", "1.1.0")?;
    require_entries(&mut vm, &["tandem-a.conf", "tandem-b.conf"], t)?;
    require_esp_files(&mut vm, "b", t)?;
    install_with(&mut vm, "minimal-1.1.0.tnd", "--force", t)?;
    verified(&mut vm, 'a', t)?;
    trial_commits(&mut vm, 'a', t)?;
    require_committed(&status(&mut vm)?, "a", "1.1.0")?;
    require_entries(&mut vm, &["tandem-a.conf", "tandem-b.conf"], t)?;
    require_esp_files(&mut vm, "a", t)?;
    t.step("both slots good, a primary again");
    Ok(())
}

/// 15b. The health check of 1.2.0 fails: b stays exhausted
/// (`tandem-b+0-1.conf`, as systemd-boot's counting left it; no tries left
/// sorts it last) and is marked bad in the state, systemd-boot boots a.
pub fn health_failure(fx: &Fixture, t: &mut Timeline) -> Result<(), RigError> {
    let sfx = fixture(fx)?;
    let server = sfx.serve()?;
    let name = "s15b-sdboot-health";
    let mut vm = Vm::start(&sfx.config(name, sfx.fresh_disk(name)?, Some(&server)))?;
    booted(&mut vm, 'a', t)?;
    install_and_reboot(&mut vm, "minimal-1.2.0.tnd", t)?;
    vm.expect(&booting('b'), crate::scenario::BOOT)?;
    vm.expect("FAILED on slot b", crate::scenario::BOOT)?;
    t.step("health check failed on b; rebooting");
    vm.expect(&booting('a'), crate::scenario::BOOT)?;
    booted(&mut vm, 'a', t)?;
    // (a is the factory slot: never installed, so its state is unknown.)
    let st = status(&mut vm)?;
    require(
        &st,
        &[("booted", "a"), ("primary", "a"), ("slots.b.state", "bad")],
    )?;
    crate::scenario::require_failure(&st, "1.2.0", "b")?;
    require_entries(&mut vm, &["tandem-a.conf", "tandem-b+0-1.conf"], t)?;
    expect_code(
        &mut vm,
        "tandem install http://10.0.2.100/minimal-1.2.0.tnd",
        4,
    )?;
    t.step("status: b bad, the failure of 1.2.0 recorded; reinstall refused (exit 4)");
    Ok(())
}

/// 15c. 1.3.0's init crashes: kernel panic, `panic=5` reboots, b's entry
/// has no tries left and sorts last, systemd-boot boots a.
pub fn kernel_panic(fx: &Fixture, t: &mut Timeline) -> Result<(), RigError> {
    let sfx = fixture(fx)?;
    fallback_after(
        &sfx,
        t,
        "s15c-sdboot-panic",
        "minimal-1.3.0.tnd",
        "Kernel panic",
        booting,
    )
}

/// 15d. Scenario 5's power cuts (every phase in turn) on systemd-boot:
/// entries rewritten on FAT while power fails, and systemd-boot's own
/// counting rename cut in the firmware.
pub fn power_cuts(fx: &Fixture, t: &mut Timeline, cuts: usize, seed: u64) -> Result<(), RigError> {
    let sfx = fixture(fx)?;
    let run = Cuts {
        name: "s15d-cuts",
        bundle: "minimal-1.1.0.tnd",
        cuts,
        seed,
        phases: usize::MAX,
        window_pct: 100,
    };
    crate::scenarios::power_cuts(&sfx, t, &run)
}

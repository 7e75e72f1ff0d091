//! Scenarios 16a–16e: a verified boot chain under Secure Boot. OVMF's
//! secboot build with Debian's snakeoil PK/KEK/db (SMM on) boots
//! systemd-boot, signed with the snakeoil db key, which boots each slot's
//! unified kernel image (systemd-stub 252 + kernel + initramfs + a command
//! line naming the slot and the rootfs's dm-verity root hash), signed the
//! same way; built by scripts/build-images.sh into `IMAGES/uki`
//! (`tandem-image --uki --efi-key --efi-cert`). The entries are type #1
//! `efi /tandem/<g>/tandem.efi`, counted like 15a–15d's; the bundles carry
//! one image per slot group (`uki@a`, `uki@b`).
//!
//! When the firmware refuses an image, systemd-boot prints `Error loading
//! \tandem\b\tandem.efi: Access Denied` and returns; OVMF then tries its
//! other boot options and finally the removable-media path, which is
//! systemd-boot again: it has already counted the refused entry's try
//! (`+0-1`, sorted last), so it boots the other slot. On a real machine
//! `bootctl install`'s two firmware entries (its own and the removable
//! path) do the same.

use std::time::Duration;

use crate::http::FileServer;
use crate::scenario::{
    booted, expect_code, fail, fell_back_to_a, require, require_committed, status, verified,
    wait_armed, Fixture, Timeline, BOOT,
};
use crate::scenarios::{trial_commits, Cuts};
use crate::vm::Vm;
use crate::RigError;

pub fn fixture(fx: &Fixture) -> Result<Fixture, RigError> {
    let mut sfx = fx.variant(
        fx.images.join("uki"),
        "minimal-1.0.0.disk.img",
        "scripts/build-images.sh",
    )?;
    sfx.secure_boot = true;
    Ok(sfx)
}

/// What systemd-boot prints when the firmware refuses slot `g`'s image.
fn refused(g: char) -> String {
    format!("Error loading \\tandem\\{g}\\tandem.efi: Access Denied")
}

/// Starts the Secure Boot VM on a fresh disk, boots a, and checks that
/// Secure Boot is on and that the kernel's command line is the image's.
/// The file server must outlive the VM: keep the pair.
fn start(sfx: &Fixture, name: &str, t: &mut Timeline) -> Result<(Vm, FileServer), RigError> {
    let server = sfx.serve()?;
    let mut vm = Vm::start(&sfx.config(name, sfx.fresh_disk(name)?, Some(&server)))?;
    verified(&mut vm, 'a', t)?;
    booted(&mut vm, 'a', t)?;
    secure_boot_on(&mut vm, t)?;
    Ok((vm, server))
}

/// The kernel says Secure Boot is on (and locked itself down), and the
/// firmware's `SecureBoot` variable is 1.
fn secure_boot_on(vm: &mut Vm, t: &mut Timeline) -> Result<(), RigError> {
    expect_code(vm, "dmesg | grep -q 'Secure boot enabled'", 0)?;
    let var = vm.output(
        "od -An -tu1 /sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c",
        Duration::from_secs(30),
    )?;
    if var.split_whitespace().last() != Some("1") {
        return Err(fail(format!("SecureBoot variable: {var:?}, want 1 last")));
    }
    t.step("Secure Boot on: the kernel says so, and SecureBoot = 1");
    Ok(())
}

/// Types `tandem install` for `bundle` without rebooting and waits until
/// the other group is armed.
fn install_armed(vm: &mut Vm, bundle: &str, t: &mut Timeline) -> Result<(), RigError> {
    vm.send(&format!("tandem install http://10.0.2.100/{bundle}"))?;
    wait_armed(vm, bundle)?;
    t.step(format!("installed {bundle} into b; armed"));
    Ok(())
}

/// A shell line that flips (XORs with 0x01) the byte at `offset` of
/// `file`, in place, and syncs.
fn flip(file: &str, offset: &str) -> String {
    format!(
        "o={offset}; b=$(dd if={file} bs=1 skip=$o count=1 2>/dev/null | od -An -tu1); \
         printf \"\\\\$(printf %o $((b ^ 1)))\" | dd of={file} bs=1 seek=$o conv=notrunc 2>/dev/null; sync"
    )
}

fn reboot(vm: &mut Vm) -> Result<(), RigError> {
    vm.send("sync; reboot -f")
}

/// 16a. A signed update boots and commits, with verity on because the
/// root hash is in the signed command line: before the reboot, an
/// `options` line without it is added to b's (unsigned) entry; the stub
/// ignores it under Secure Boot, so the trial still mounts b through
/// dm-verity with 1.1.0's root hash.
pub fn signed_update(fx: &Fixture, t: &mut Timeline) -> Result<(), RigError> {
    let sfx = fixture(fx)?;
    let (mut vm, _server) = start(&sfx, "s16a-uki-update", t)?;
    let st = status(&mut vm)?;
    require(&st, &[("boot_backend", "systemd-boot"), ("booted", "a")])?;
    install_armed(&mut vm, "minimal-1.1.0.tnd", t)?;
    expect_code(
        &mut vm,
        "grep -q '^efi /tandem/b/tandem.efi$' /boot/efi/loader/entries/tandem-b+1.conf \
         && ! grep -q '^options' /boot/efi/loader/entries/tandem-b+1.conf",
        0,
    )?;
    expect_code(
        &mut vm,
        "echo 'options tandem.slot=b console=ttyS0 panic=5' >> /boot/efi/loader/entries/tandem-b+1.conf && sync",
        0,
    )?;
    t.step("b's entry boots /tandem/b/tandem.efi; an unsigned options line without the root hash added to it");
    reboot(&mut vm)?;
    verified(&mut vm, 'b', t)?;
    trial_commits(&mut vm, 'b', t)?;
    require_committed(&status(&mut vm)?, "b", "1.1.0")?;
    let cmdline = vm.output("cat /proc/cmdline", Duration::from_secs(30))?;
    if !cmdline.contains("tandem.slot=b") || !cmdline.contains("tandem.verity.roothash=") {
        return Err(fail(format!(
            "b booted with {cmdline:?}: not its image's signed command line"
        )));
    }
    t.step("b committed; /proc/cmdline is the image's own (root hash included), the added options ignored");
    secure_boot_on(&mut vm, t)?;
    Ok(())
}

/// After a refused image: the other slot boots, its boot check records
/// the fallback, and b was never run.
fn falls_back_without_booting_b(vm: &mut Vm, t: &mut Timeline) -> Result<(), RigError> {
    let (l, k) = vm.expect_any(&[&refused('b'), "command line: slot b"], BOOT)?;
    if k == 1 {
        return Err(fail(format!("slot b booted: {}", l.text)));
    }
    t.step(format!(
        "the firmware refused b's image: {:?}",
        l.text.trim()
    ));
    let (l, k) = vm.expect_any(&["command line: slot a", "command line: slot b"], BOOT)?;
    if k == 1 {
        return Err(fail(format!("slot b booted after the refusal: {}", l.text)));
    }
    fell_back_to_a(vm)?;
    t.step("systemd-boot ran again from the removable-media path and booted a; fallback recorded");
    let st = status(vm)?;
    require(&st, &[("booted", "a"), ("primary", "a")])?;
    let entries = vm.output("ls /boot/efi/loader/entries", Duration::from_secs(30))?;
    if !entries.contains("tandem-b+0-1.conf") {
        return Err(fail(format!(
            "b's entry should be exhausted (tandem-b+0-1.conf): {entries}"
        )));
    }
    t.step(format!("loader/entries: {}", entries.trim()));
    Ok(())
}

/// 16b. One flipped byte in b's signed image (in the middle: the kernel)
/// after the install wrote and armed it: the firmware refuses it, and the
/// board falls back to a.
pub fn flipped_uki(fx: &Fixture, t: &mut Timeline) -> Result<(), RigError> {
    let sfx = fixture(fx)?;
    let (mut vm, _server) = start(&sfx, "s16b-uki-flipped", t)?;
    install_armed(&mut vm, "minimal-1.1.0.tnd", t)?;
    let f = "/boot/efi/tandem/b/tandem.efi";
    expect_code(&mut vm, &flip(f, &format!("$(($(wc -c < {f}) / 2))")), 0)?;
    t.step("one byte in the middle of b's image flipped");
    reboot(&mut vm)?;
    falls_back_without_booting_b(&mut vm, t)
}

/// 16c. 1.2.0's images are not signed at all: installed and armed like
/// any other, never booted.
pub fn unsigned_uki(fx: &Fixture, t: &mut Timeline) -> Result<(), RigError> {
    let sfx = fixture(fx)?;
    let (mut vm, _server) = start(&sfx, "s16c-uki-unsigned", t)?;
    install_armed(&mut vm, "minimal-1.2.0.tnd", t)?;
    reboot(&mut vm)?;
    falls_back_without_booting_b(&mut vm, t)
}

/// 16d. A flipped byte in slot b's root filesystem (its first block)
/// after the install: the signed image boots, dm-verity refuses the block
/// when the initramfs mounts the slot, and the trial falls back to a.
pub fn flipped_slot(fx: &Fixture, t: &mut Timeline) -> Result<(), RigError> {
    let sfx = fixture(fx)?;
    let (mut vm, _server) = start(&sfx, "s16d-uki-verity", t)?;
    install_armed(&mut vm, "minimal-1.1.0.tnd", t)?;
    expect_code(&mut vm, &flip("/dev/tandem/root-b", "100"), 0)?;
    t.step("one byte of slot b's rootfs (block 0) flipped");
    reboot(&mut vm)?;
    vm.expect("command line: slot b, dm-verity root hash", BOOT)?;
    let l = vm.expect("corrupted", BOOT)?;
    t.step(format!(
        "b's signed image booted; dm-verity: {:?}",
        l.text.trim()
    ));
    let (l, k) = vm.expect_any(&["command line: slot a", "TANDEM-BOOTED slot=b"], BOOT)?;
    if k == 1 {
        return Err(fail(format!(
            "slot b came up despite the corrupt block: {}",
            l.text
        )));
    }
    fell_back_to_a(&mut vm)?;
    t.step("fell back to a; fallback recorded");
    Ok(())
}

/// 16e. Scenario 5's power cuts (every phase in turn) on the Secure Boot
/// chain: UKIs written to the ESP while power fails.
pub fn power_cuts(fx: &Fixture, t: &mut Timeline, cuts: usize, seed: u64) -> Result<(), RigError> {
    let sfx = fixture(fx)?;
    let run = Cuts {
        name: "s16e-cuts",
        bundle: "minimal-1.1.0.tnd",
        cuts,
        seed,
        phases: usize::MAX,
        // Two 10 MiB images besides the rootfs: the install alone takes
        // about 10 s of the arming phase's 20 s under TCG.
        window_pct: 150,
    };
    crate::scenarios::power_cuts(&sfx, t, &run)
}

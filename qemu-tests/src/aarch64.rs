//! Scenario 8: aarch64 with U-Boot (`-M virt -cpu cortex-a57`, Debian's
//! `qemu_arm64` U-Boot from pflash, boot.scr and the A/B state file
//! `tandem.env` on the FAT boot partition, agent backend `uboot-file`):
//! update A→B with the try counted by U-Boot and committed by the agent,
//! then a broken update that fails its health check and falls back. Every
//! boot must go through dm-verity with the parameters in tandem.env (the
//! factory image's from the disk builder, the others' from the agent).

use std::time::Duration;

use crate::scenario::{
    booted, fail, install_and_cut, install_and_reboot, require, require_committed,
    require_fell_back, status, trial_failed, verified, Fixture, Timeline, BOOT,
};
use crate::scenarios::Cuts;
use crate::vm::Vm;
use crate::RigError;

/// Scenario 8c: scenario 5's power cuts (every phase in turn) on the
/// aarch64 image: U-Boot, `tandem.env` on FAT (backend `uboot-file`).
pub fn power_cuts(fx: &Fixture, t: &mut Timeline, cuts: usize, seed: u64) -> Result<(), RigError> {
    let afx = Fixture::aarch64(&fx.images.join("arm64"), &fx.work)?;
    let run = Cuts {
        name: "s8c-cuts",
        bundle: "minimal-arm64-1.1.0.tnd",
        cuts,
        seed,
        phases: usize::MAX,
        window_pct: 100,
    };
    crate::scenarios::power_cuts(&afx, t, &run)
}

/// The A/B state file as the guest sees it (variables, sorted).
fn env_file(vm: &mut Vm) -> Result<String, RigError> {
    vm.output(
        "tr '\\0' '\\n' < /boot/firmware/tandem.env",
        Duration::from_secs(30),
    )
}

/// Scenario 8, aarch64 + U-Boot: update A→B (U-Boot counts the try in
/// tandem.env, the health check passes, B committed), then a broken update
/// into A whose health check fails: A marked bad, U-Boot boots B again.
pub fn uboot_update_and_fallback(fx: &Fixture, t: &mut Timeline) -> Result<(), RigError> {
    let afx = Fixture::aarch64(&fx.images.join("arm64"), &fx.work)?;
    let server = afx.serve()?;
    let name = "s8-aarch64";
    let mut cfg = afx.config(name, afx.fresh_disk(name)?, Some(&server));
    let mut vm = Vm::start(&cfg)?;
    let scr = vm.expect("Executing script at", BOOT)?;
    let kernel = vm.expect("Starting kernel", BOOT)?;
    t.step(format!(
        "U-Boot ran boot.scr {:.1} s after QEMU started, started the kernel at {:.1} s",
        scr.at.as_secs_f64(),
        kernel.at.as_secs_f64(),
    ));
    verified(&mut vm, 'a', t)?;
    let init = vm.expect("TANDEM-BOOTED slot=a", BOOT)?;
    t.step(format!(
        "slot a's /sbin/init runs {:.1} s after QEMU started",
        init.at.as_secs_f64()
    ));
    vm.expect("TANDEM-READY slot=a", BOOT)?;
    let st = status(&mut vm)?;
    require(
        &st,
        &[
            ("boot_backend", "uboot-file"),
            ("booted", "a"),
            ("primary", "a"),
            ("compatible", "tandem-demo-aarch64"),
        ],
    )?;
    t.step("slot a (1.0.0) up; status: backend uboot-file, a booted and primary");

    // Power cut the moment b is armed: the renamed tandem.env must be on
    // the disk already (vfat writes its directory entry with its inode).
    let mut vm = install_and_cut(vm, &mut cfg, "minimal-arm64-1.1.0.tnd", t)?;
    let l = vm.expect("tandem: trial of slot b", BOOT)?;
    t.step(format!(
        "U-Boot counted the try in tandem.env: {}",
        l.text.trim()
    ));
    vm.expect("tandem: booting slot b", BOOT)?;
    verified(&mut vm, 'b', t)?;
    vm.expect("TANDEM-BOOTED slot=b", BOOT)?;
    vm.expect("slot b committed", BOOT)?;
    vm.expect("TANDEM-READY slot=b", BOOT)?;
    t.step("trial boot of slot b (1.1.0): health check passed, committed");
    let st = status(&mut vm)?;
    require_committed(&st, "b", "1.1.0")?;
    let env = env_file(&mut vm)?;
    if !env.contains("TANDEM_ORDER=b a") || env.contains("TANDEM_B_TRIES") {
        return Err(fail(format!(
            "tandem.env after the commit should order b first with no tries: {env}"
        )));
    }
    t.step(format!(
        "status: b good (1.1.0) and primary; tandem.env: {}",
        env.trim()
    ));

    install_and_reboot(&mut vm, "minimal-arm64-1.2.0.tnd", t)?;
    vm.expect("tandem: trial of slot a", BOOT)?;
    vm.expect("tandem: booting slot a", BOOT)?;
    verified(&mut vm, 'a', t)?;
    trial_failed(&mut vm, 'a', "1.2.0", BOOT, t)?;
    vm.expect("tandem: booting slot b", BOOT)?;
    verified(&mut vm, 'b', t)?;
    booted(&mut vm, 'b', t)?;
    let st = status(&mut vm)?;
    require_fell_back(&st, "a", "b", "1.2.0")?;
    let env = env_file(&mut vm)?;
    if !env.contains("TANDEM_A_OK=0") {
        return Err(fail(format!("tandem.env should mark a not OK: {env}")));
    }
    t.step(format!(
        "fell back to b; status: a bad, failure of 1.2.0 recorded; tandem.env: {}",
        env.trim()
    ));
    vm.power_cut()?;
    Ok(())
}

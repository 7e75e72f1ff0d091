//! The scenario suite (qemu-tests issue): each is a function that passes
//! or returns an error naming what did not happen. `run_all` runs them on
//! at most two VMs at once and prints one line per scenario and a summary.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::scenario::{
    booted, expect_code, fail, fell_back_to_a, install_and_reboot, install_with, verified, Fixture,
    Timeline, BOOT,
};
use crate::vm::{Disk, Vm};
use crate::RigError;

/// A trial boot of `slot` that must commit: markers in console order.
pub fn trial_commits(vm: &mut Vm, slot: char, t: &mut Timeline) -> Result<(), RigError> {
    vm.expect(&format!("TANDEM-BOOTED slot={slot}"), BOOT)?;
    vm.expect(&format!("slot {slot} committed"), BOOT)?;
    vm.expect(&format!("TANDEM-READY slot={slot}"), BOOT)?;
    t.step(format!(
        "trial boot of slot {slot}: health check passed, committed"
    ));
    Ok(())
}

/// 1. Update A→B over HTTP, reboot, health passes, B committed; then B→A.
///
/// Every boot mounts its slot through dm-verity with the root hash the
/// disk builder (a) or the install (b, then a again) gave GRUB.
pub fn update_both_ways(fx: &Fixture, t: &mut Timeline) -> Result<(), RigError> {
    let server = fx.serve()?;
    let mut vm = Vm::start(&fx.config("s1-update", fx.fresh_disk("s1-update")?, Some(&server)))?;
    verified(&mut vm, 'a', t)?;
    booted(&mut vm, 'a', t)?;
    install_and_reboot(&mut vm, "minimal-1.1.0.tnd", t)?;
    verified(&mut vm, 'b', t)?;
    trial_commits(&mut vm, 'b', t)?;
    // 1.1.0 runs now: installing it again into a needs --force.
    expect_code(
        &mut vm,
        "tandem install http://10.0.2.100/minimal-1.1.0.tnd",
        4,
    )?;
    install_with(&mut vm, "minimal-1.1.0.tnd", "--force", t)?;
    verified(&mut vm, 'a', t)?;
    trial_commits(&mut vm, 'a', t)?;
    expect_code(
        &mut vm,
        "tandem status --json | grep -c '\"state\": \"good\"' | grep -qx 2",
        0,
    )?;
    t.step("both slots good, a primary again");
    Ok(())
}

/// Scenario 2: the health check fails, so the slot is marked bad, the old
/// slot boots, the failure is recorded, and it is not applied again
/// without --force.
pub fn health_failure(fx: &Fixture, t: &mut Timeline) -> Result<(), RigError> {
    let server = fx.serve()?;
    let mut vm = Vm::start(&fx.config("s2-health", fx.fresh_disk("s2-health")?, Some(&server)))?;
    booted(&mut vm, 'a', t)?;
    install_and_reboot(&mut vm, "minimal-1.2.0.tnd", t)?;
    vm.expect("FAILED on slot b", BOOT)?;
    t.step("health check failed on b; rebooting");
    booted(&mut vm, 'a', t)?;
    expect_code(
        &mut vm,
        "tandem status --json | grep -q 'image-self-test'",
        0,
    )?;
    expect_code(
        &mut vm,
        "tandem install http://10.0.2.100/minimal-1.2.0.tnd",
        4,
    )?;
    t.step("status names the failed check; reinstall refused (exit 4)");
    Ok(())
}

/// GRUB's console line when it boots `slot` (grub.cfg).
pub fn grub_booting(slot: char) -> String {
    format!("tandem: booting slot {slot}")
}

/// Installs `bundle`, sees `sign` in the trial of b and the bootloader
/// fall back to a (`booting(slot)`: the console line that shows the
/// bootloader chose `slot`), then the boot check record the fallback.
pub fn fallback_after(
    fx: &Fixture,
    t: &mut Timeline,
    name: &str,
    bundle: &str,
    sign: &str,
    booting: fn(char) -> String,
) -> Result<(), RigError> {
    let server = fx.serve()?;
    let mut vm = Vm::start(&fx.config(name, fx.fresh_disk(name)?, Some(&server)))?;
    booted(&mut vm, 'a', t)?;
    install_and_reboot(&mut vm, bundle, t)?;
    vm.expect(&booting('b'), BOOT)?;
    vm.expect(sign, BOOT)?;
    t.step(format!("trial of b: saw {sign:?}"));
    vm.expect(&booting('a'), Duration::from_secs(180))?;
    t.step("the bootloader fell back to a");
    fell_back_to_a(&mut vm)?;
    t.step("boot check on a recorded the fallback");
    expect_code(&mut vm, "tandem status --json | grep -q 'fell back'", 0)?;
    t.step("status records the fallback");
    Ok(())
}

/// 3. The new image's init fails → kernel panic → fallback after its try.
pub fn kernel_panic(fx: &Fixture, t: &mut Timeline) -> Result<(), RigError> {
    fallback_after(
        fx,
        t,
        "s3-panic",
        "minimal-1.3.0.tnd",
        "Kernel panic",
        grub_booting,
    )
}

/// 4. The new image hangs before commit → the watchdog resets → fallback.
pub fn watchdog_hang(fx: &Fixture, t: &mut Timeline) -> Result<(), RigError> {
    fallback_after(
        fx,
        t,
        "s4-watchdog",
        "minimal-1.4.0.tnd",
        "watchdog armed; hanging",
        grub_booting,
    )
}

/// 6. Tampered bundle, wrong compatible, downgrade: refused, slots unchanged.
pub fn hostile(fx: &Fixture, t: &mut Timeline) -> Result<(), RigError> {
    let server = fx.serve()?;
    let mut vm = Vm::start(&fx.config("s6-hostile", fx.fresh_disk("s6-hostile")?, Some(&server)))?;
    booted(&mut vm, 'a', t)?;
    let sums =
        "sha256sum /dev/disk/by-partlabel/tandem-root-a /dev/disk/by-partlabel/tandem-root-b";
    expect_code(&mut vm, &format!("{sums} > /tmp/before"), 0)?;
    expect_code(
        &mut vm,
        "sha256sum /dev/disk/by-partlabel/tandem-root-a > /tmp/before-a",
        0,
    )?;
    for (bundle, why) in [
        ("hostile-compatible.tnd", "compatible"),
        ("hostile-downgrade.tnd", "older than"),
    ] {
        expect_code(&mut vm, &format!("tandem install http://10.0.2.100/{bundle} 2>/tmp/err; r=$?; grep -q '{why}' /tmp/err && exit $r"), 4)?;
    }
    expect_code(&mut vm, &format!("{sums} | cmp - /tmp/before"), 0)?;
    t.step("wrong compatible and downgrade refused before writing; both slots byte-identical");
    expect_code(&mut vm, "tandem install http://10.0.2.100/hostile-tampered.tnd 2>/tmp/err; r=$?; grep -qE 'does not match the chunk index|zstd frame' /tmp/err && exit $r", 4)?;
    expect_code(
        &mut vm,
        "sha256sum /dev/disk/by-partlabel/tandem-root-a | cmp - /tmp/before-a",
        0,
    )?;
    expect_code(
        &mut vm,
        "tandem status --json | grep -q '\"state\": \"invalid\"'",
        0,
    )?;
    t.step(
        "tampered payload refused: target invalid, booted slot byte-identical, guest still running",
    );
    Ok(())
}

/// 7. Offline update from a second virtual disk (a FAT "USB stick").
pub fn usb_stick(fx: &Fixture, t: &mut Timeline) -> Result<(), RigError> {
    let stick = fx.work.join("s7-usb/stick.img");
    std::fs::create_dir_all(fx.work.join("s7-usb")).map_err(crate::io("mkdir"))?;
    let bundle = fx.images.join("minimal-1.1.0.tnd");
    let size_kib = std::fs::metadata(&bundle)
        .map_err(crate::io("bundle"))?
        .len()
        / 1024
        + 4096;
    let _ = std::fs::remove_file(&stick);
    let sh = |cmd: &str| -> Result<(), RigError> {
        let st = std::process::Command::new("sh")
            .args(["-c", cmd])
            .status()
            .map_err(crate::io(cmd.to_string()))?;
        st.success()
            .then_some(())
            .ok_or_else(|| fail(format!("`{cmd}` failed")))
    };
    sh(&format!(
        "mkfs.fat -C {} {size_kib} >/dev/null",
        stick.display()
    ))?;
    sh(&format!(
        "MTOOLS_SKIP_CHECK=1 mcopy -i {} {} ::/update.tnd",
        stick.display(),
        bundle.display()
    ))?;
    let mut cfg = fx.config("s7-usb", fx.fresh_disk("s7-usb")?, None);
    cfg.disks.push(Disk::raw(&stick));
    let mut vm = Vm::start(&cfg)?;
    booted(&mut vm, 'a', t)?;
    expect_code(
        &mut vm,
        "mkdir -p /tmp/usb && mount -t vfat -o ro /dev/vdb /tmp/usb",
        0,
    )?;
    vm.send("tandem install /tmp/usb/update.tnd --reboot")?;
    vm.expect("armed for", Duration::from_secs(120))?;
    t.step("installed from the stick (no network at all)");
    trial_commits(&mut vm, 'b', t)?;
    Ok(())
}

/// Scenario 14: `/etc` and `/var` across an update: on 1.0.0 the
/// administrator edits `/etc/demo/admin.conf`, rewrites `vendor.conf`
/// unchanged (a copy-up) and edits `conflict.conf`; 1.1.0 changes
/// `vendor.conf` and `conflict.conf`. After the update the administrator's
/// edit stays, the unchanged copy yields to 1.1.0's version, the conflict
/// keeps the administrator's version and `tandem status` reports it.
/// `/var/lib/demo/state` is seeded from the image on the first boot and
/// edited; 1.1.0 changes it (the edit stays) and adds `new` (seeded).
pub fn etc_merge(fx: &Fixture, t: &mut Timeline) -> Result<(), RigError> {
    let server = fx.serve()?;
    let mut vm = Vm::start(&fx.config("s14-etc", fx.fresh_disk("s14-etc")?, Some(&server)))?;
    vm.expect("/var seeded from 1.0.0", BOOT)?;
    vm.expect("/etc: base manifest recorded", BOOT)?;
    booted(&mut vm, 'a', t)?;
    let state = vm.output("cat /var/lib/demo/state", Duration::from_secs(30))?;
    if state != "s=1" {
        return Err(fail(format!(
            "/var/lib/demo/state on the first boot: {state:?}, expected the image's s=1 (seeded)"
        )));
    }
    expect_code(&mut vm, "echo s=admin > /var/lib/demo/state", 0)?;
    t.step("/var/lib/demo/state seeded from the image (s=1), then edited (s=admin)");
    expect_code(
        &mut vm,
        "echo x=2 > /etc/demo/admin.conf && cat /etc/demo/vendor.conf > /tmp/v && cat /tmp/v > /etc/demo/vendor.conf && echo c=admin > /etc/demo/conflict.conf && test -f /data/etc/upper/demo/vendor.conf",
        0,
    )?;
    t.step("edited admin.conf and conflict.conf; rewrote vendor.conf unchanged (copied up)");
    install_and_reboot(&mut vm, "minimal-1.1.0.tnd", t)?;
    vm.expect("/var seeded from 1.1.0: 1 entry copied", BOOT)?;
    let l = vm.expect("/etc merged for 1.1.0", BOOT)?;
    t.step(format!("initramfs: {}", l.text.trim()));
    trial_commits(&mut vm, 'b', t)?;
    let files = vm.output(
        "cat /etc/demo/admin.conf /etc/demo/vendor.conf /etc/demo/conflict.conf",
        Duration::from_secs(30),
    )?;
    if files != "x=2 v=2 c=admin" {
        return Err(fail(format!(
            "/etc/demo after the update: {files:?}, expected the administrator's admin.conf (x=2), 1.1.0's vendor.conf (v=2) and the administrator's conflict.conf (c=admin)"
        )));
    }
    let st = crate::scenario::status(&mut vm)?;
    let m = &st["etc_merge"];
    if m["version"] != "1.1.0"
        || m["yielded"] != serde_json::json!(["/etc/demo/vendor.conf"])
        || m["conflicts"] != serde_json::json!(["/etc/demo/conflict.conf"])
    {
        return Err(fail(format!("status etc_merge: {m}")));
    }
    t.step("admin.conf kept (x=2), vendor.conf is 1.1.0's (v=2), conflict.conf kept (c=admin) and reported in status");
    let var = vm.output(
        "cat /var/lib/demo/state /var/lib/demo/new",
        Duration::from_secs(30),
    )?;
    if var != "s=admin n=1" {
        return Err(fail(format!(
            "/var/lib/demo after the update: {var:?}, expected the edited state (s=admin) and 1.1.0's new file (n=1)"
        )));
    }
    t.step("/var: the edited state kept (s=admin), 1.1.0's new file seeded (n=1)");
    Ok(())
}

/// Deterministic pseudo-random numbers for cut times (xorshift).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// The phases of scenario 5, cut in turn: what runs (`{BUNDLE}` is the
/// update bundle's name), and the window (ms) in which the power is cut
/// after it was typed.
const PHASES: [(&str, &str, u64); 5] = [
    (
        "install",
        "tandem install --force http://10.0.2.100/{BUNDLE}",
        2500,
    ),
    (
        "arming + trial boot + commit",
        "tandem install --force --reboot http://10.0.2.100/{BUNDLE}",
        20_000,
    ),
    ("rollback", "tandem rollback", 400),
    (
        "mark-bad + mark-good",
        "tandem mark-bad; tandem mark-good",
        400,
    ),
    // The other group half-written (the install is cut first, see below),
    // then the booted one marked bad by force: nothing is marked bootable
    // until mark-good, so a cut in between leaves the bootloader its last
    // resort, which must find the booted group intact.
    (
        "half-written other group, then forced mark-bad of the booted one",
        "tandem mark-bad --force; tandem mark-good",
        400,
    ),
];

/// What a power-cut run cuts: the fixture's disk, updated with `bundle`;
/// `name` prefixes the VM names (and logs).
pub struct Cuts<'a> {
    pub name: &'a str,
    pub bundle: &'a str,
    pub cuts: usize,
    pub seed: u64,
    /// Only the first `phases` phases (4 repeats a seed from before the
    /// fifth existed).
    pub phases: usize,
    /// The phases' cut windows in percent (100: as in `PHASES`): an image
    /// that installs and boots slower needs longer ones, or its cuts land
    /// before the steps they are meant to hit.
    pub window_pct: u64,
}

/// Scenario 5: power cuts at random moments during install, arming and the
/// trial, commit and rollback, and with nothing marked bootable. After
/// every cut the next boot must reach a working slot and `tandem status`
/// must read the state cleanly. Prints the cuts per phase and the seed.
pub fn power_cuts(fx: &Fixture, t: &mut Timeline, run: &Cuts) -> Result<(), RigError> {
    let Cuts {
        name, cuts, seed, ..
    } = *run;
    let phases = run.phases.clamp(1, PHASES.len());
    let cmd_of = |i: usize| PHASES[i].1.replace("{BUNDLE}", run.bundle);
    let server = fx.serve()?;
    let disk = fx.fresh_disk(name)?;
    let mut rng = Rng::new(seed);
    let mut cfg = fx.config(name, disk, Some(&server));
    let mut vm = Vm::start(&cfg)?;
    let ready = ["TANDEM-READY slot=a", "TANDEM-READY slot=b"];
    let (l, _) = vm.expect_any(&ready, BOOT)?;
    let mut slot = if l.text.contains("slot=b") { 'b' } else { 'a' };
    let mut per_phase = [0usize; PHASES.len()];
    let mut refusals = 0;
    let mut boots = 0;
    for i in 0..cuts {
        let phase = i % phases;
        let (what, _, window_ms) = PHASES[phase];
        let cmd = cmd_of(phase);
        if phase == 4 {
            // First leave the other group half-written: an install cut
            // while it streams (the power cut below is one more boot).
            vm.send(&cmd_of(0))?;
            std::thread::sleep(Duration::from_millis(300 + rng.below(1500)));
            vm.power_cut()?;
            cfg.name = format!("{name}-{i}-pre");
            vm = Vm::start(&cfg)?;
            let (l, _) = vm.expect_any(&ready, Duration::from_secs(150))?;
            boots += 1;
            slot = if l.text.contains("slot=b") { 'b' } else { 'a' };
            let st = crate::scenario::status(&mut vm)?;
            let other = if slot == 'a' { 1 } else { 0 };
            if st["slots"][other]["state"] == "invalid" {
                // Marking the booted group bad now would leave nothing
                // to boot: refused without --force, and nothing changes.
                expect_code(&mut vm, "tandem mark-bad", 7)?;
                refusals += 1;
            }
        }
        let delay = rng.below(window_ms * run.window_pct / 100);
        vm.send(&cmd)?;
        std::thread::sleep(Duration::from_millis(delay));
        let cut = vm.power_cut()?;
        per_phase[phase] += 1;
        cfg.name = format!("{name}-{i}");
        vm = Vm::start(&cfg)?;
        let (l, _) = vm.expect_any(&ready, Duration::from_secs(150))?;
        boots += 1;
        let now = if l.text.contains("slot=b") { 'b' } else { 'a' };
        let code = vm.run("tandem status >/dev/null", Duration::from_secs(30))?;
        if code != 0 {
            return Err(fail(format!(
                "cut {i} ({what} +{delay} ms, seed {seed}): tandem status exited {code} afterwards"
            )));
        }
        t.step(format!(
            "cut {i:2} during {what} at +{delay} ms ({cut}): booted {slot}→{now}, status reads"
        ));
        slot = now;
        if phase == 4 {
            // Whatever the cut left, commit what runs before going on, so
            // the next phases start from a device with a committed group.
            vm.run("tandem mark-good", Duration::from_secs(30))?;
        }
    }
    let counts: Vec<String> = PHASES
        .iter()
        .zip(per_phase)
        .map(|((what, _, _), n)| format!("{n} during {what}"))
        .collect();
    t.step(format!(
        "seed {seed}: {cuts} cuts ({}), {boots} boots, each to a working slot; {refusals} mark-bad refused with the other group half-written",
        counts.join(", ")
    ));
    Ok(())
}

type Scenario = (
    String,
    Box<dyn FnOnce(&Fixture, &mut Timeline) -> Result<(), RigError> + Send>,
);

/// The suite in CI order (longest first, so two workers finish together;
/// the one with two VMs last).
pub fn suite(cuts: usize, seed: u64) -> Vec<Scenario> {
    suite_with_phases(cuts, seed, PHASES.len())
}

/// [`suite`] with scenario 5 cutting only its first `phases` phases
/// (4: the sequence before the forced-mark-bad phase existed, so that an
/// old seed repeats its old cut points).
pub fn suite_with_phases(cuts: usize, seed: u64, phases: usize) -> Vec<Scenario> {
    let half = cuts / 2;
    // The two debian scenarios (9, 9c) do not run beside each other: in
    // one CI run, 9's clean reboot hung in the firmware while 9c ran on
    // the other worker (qemu-tests/README.md, "clean reboot").
    let mut v: Vec<Scenario> = vec![
        (
            "5a power cuts".into(),
            Box::new(move |fx, t| {
                let run = Cuts {
                    name: "s5-cuts-a",
                    bundle: "minimal-1.1.0.tnd",
                    cuts: half,
                    seed,
                    phases,
                    window_pct: 100,
                };
                power_cuts(fx, t, &run)
            }),
        ),
        (
            "9 debian (systemd) update and fallback".into(),
            Box::new(crate::debian::systemd_update_and_fallback),
        ),
        (
            "5b power cuts".into(),
            Box::new(move |fx, t| {
                let run = Cuts {
                    name: "s5-cuts-b",
                    bundle: "minimal-1.1.0.tnd",
                    cuts: cuts - half,
                    seed: seed ^ 0x9e37_79b9,
                    phases,
                    window_pct: 100,
                };
                power_cuts(fx, t, &run)
            }),
        ),
        (
            "15d systemd-boot power cuts".into(),
            Box::new(move |fx, t| crate::sdboot::power_cuts(fx, t, half, seed ^ 0xc2b2_ae35)),
        ),
        (
            "16e Secure Boot (signed UKIs) power cuts".into(),
            Box::new(move |fx, t| crate::uki::power_cuts(fx, t, half, seed ^ 0x1656_67b1)),
        ),
        (
            "9c debian (systemd) power cuts".into(),
            Box::new(move |fx, t| crate::debian::power_cuts(fx, t, half, seed ^ 0x27d4_eb2f)),
        ),
        (
            "12 update channel (TUF), no command typed".into(),
            Box::new(crate::channel::channel_updates),
        ),
        ("1 update A->B->A".into(), Box::new(update_both_ways)),
        ("4 watchdog fallback".into(), Box::new(watchdog_hang)),
        ("3 kernel panic fallback".into(), Box::new(kernel_panic)),
        ("2 health-check fallback".into(), Box::new(health_failure)),
        (
            "8 aarch64 U-Boot update and fallback".into(),
            Box::new(crate::aarch64::uboot_update_and_fallback),
        ),
        (
            "8c aarch64 U-Boot power cuts".into(),
            Box::new(move |fx, t| crate::aarch64::power_cuts(fx, t, half, seed ^ 0x85eb_ca6b)),
        ),
        ("7 USB stick".into(), Box::new(usb_stick)),
        (
            "10 update from an OCI registry".into(),
            Box::new(registry_update),
        ),
        ("6 hostile bundles".into(), Box::new(hostile)),
        (
            "14 /etc and /var across an update".into(),
            Box::new(etc_merge),
        ),
        (
            "15a systemd-boot update A->B->A".into(),
            Box::new(crate::sdboot::update_both_ways),
        ),
        (
            "15c systemd-boot kernel panic fallback".into(),
            Box::new(crate::sdboot::kernel_panic),
        ),
        (
            "15b systemd-boot health-check fallback".into(),
            Box::new(crate::sdboot::health_failure),
        ),
        (
            "16a Secure Boot: signed update commits, verity from the signed command line".into(),
            Box::new(crate::uki::signed_update),
        ),
        (
            "16b Secure Boot: a flipped byte in the UKI is refused, fallback".into(),
            Box::new(crate::uki::flipped_uki),
        ),
        (
            "16c Secure Boot: an unsigned UKI never boots".into(),
            Box::new(crate::uki::unsigned_uki),
        ),
        (
            "16d Secure Boot: a flipped byte in the slot is caught by dm-verity".into(),
            Box::new(crate::uki::flipped_slot),
        ),
    ];
    v.extend(crate::lastresort::scenarios());
    // Last: it waits for both workers' VMs, and the scenarios before it
    // are the short ones.
    v.push((
        format!("13 FleetLock group of one {TWO_VMS}"),
        Box::new(crate::channel::fleet_lock_pair),
    ));
    if cuts == 0 {
        v.retain(|(n, _)| !n.contains("power cuts"));
    }
    v
}

/// The scenarios `--only` picks, in suite order: each comma-separated
/// part selects by the scenario's number (the first word of its name):
/// the scenario of that number (`9`, `9c`, `1`), or, when no scenario has
/// it, its lettered variants (`5` → 5a and 5b, `16` → 16a–16e). A part
/// that is no number (`13 Fleet`, `9 `, `resort`) selects the names that
/// contain it. A part that selects nothing is an error, so that a typo
/// cannot pass as a green run of nothing.
pub fn select(scenarios: Vec<Scenario>, only: Option<&str>) -> Result<Vec<Scenario>, String> {
    let Some(only) = only else {
        return Ok(scenarios);
    };
    let names: Vec<&str> = scenarios.iter().map(|(n, _)| n.as_str()).collect();
    let mut keep = vec![false; names.len()];
    for part in only.split(',') {
        let hits = part_selects(part, &names);
        if !hits.iter().any(|&h| h) {
            let mut ids: Vec<&str> = names.iter().map(|n| scenario_id(n)).collect();
            ids.sort_unstable();
            ids.dedup();
            return Err(format!(
                "--only: {part:?} selects no scenario (give a number, {}, or part of a name)",
                ids.join(", ")
            ));
        }
        keep.iter_mut().zip(hits).for_each(|(k, h)| *k |= h);
    }
    let mut keep = keep.into_iter();
    Ok(scenarios
        .into_iter()
        .filter(|_| keep.next().unwrap_or(false))
        .collect())
}

/// A scenario's number: the first word of its name (`9c`, `16e`, `last`).
fn scenario_id(name: &str) -> &str {
    name.split(' ').next().unwrap_or(name)
}

/// Which of `names` one `--only` part selects (see [`select`]).
fn part_selects(part: &str, names: &[&str]) -> Vec<bool> {
    let number = part.starts_with(|c: char| c.is_ascii_digit())
        && part.chars().all(|c| c.is_ascii_alphanumeric());
    if !number {
        return names.iter().map(|n| n.contains(part)).collect();
    }
    let exact: Vec<bool> = names.iter().map(|n| scenario_id(n) == part).collect();
    if exact.iter().any(|&e| e) {
        return exact;
    }
    names
        .iter()
        .map(|n| {
            scenario_id(n)
                .strip_prefix(part)
                .is_some_and(|rest| rest.len() == 1 && rest.chars().all(|c| c.is_ascii_lowercase()))
        })
        .collect()
}

/// Marks a scenario that boots two VMs at once: it runs while the other
/// worker waits, so no more than two VMs ever share the two cores.
pub const TWO_VMS: &str = "(two VMs)";

/// VMs that may run at once.
const VM_SLOTS: usize = 2;

/// Runs scenarios (those [`select`] picked) on two workers; prints
/// results; returns (passed, failed).
pub fn run_all(fx: &Fixture, queue: Vec<Scenario>) -> (usize, usize) {
    let slots = Arc::new((Mutex::new(VM_SLOTS), std::sync::Condvar::new()));
    let queue = Arc::new(Mutex::new(queue.into_iter()));
    let results = Arc::new(Mutex::new(Vec::new()));
    std::thread::scope(|s| {
        for _ in 0..2 {
            let (queue, results, slots) = (queue.clone(), results.clone(), slots.clone());
            s.spawn(move || loop {
                let next = queue.lock().expect("queue").next();
                let Some((name, f)) = next else { break };
                let need = if name.contains(TWO_VMS) { VM_SLOTS } else { 1 };
                let (free, cv) = &*slots;
                let mut n = cv
                    .wait_while(free.lock().expect("slots"), |n| *n < need)
                    .expect("slots");
                *n -= need;
                drop(n);
                let start = Instant::now();
                let mut t = Timeline::new(true);
                let r = f(fx, &mut t);
                *free.lock().expect("slots") += need;
                cv.notify_all();
                let secs = start.elapsed().as_secs_f64();
                let steps: Vec<String> = t
                    .steps
                    .iter()
                    .map(|(at, _, w)| format!("    [{:6.1} s] {w}", at.as_secs_f64()))
                    .collect();
                match &r {
                    Ok(()) => println!("PASS {name} ({secs:.0} s)\n{}", steps.join("\n")),
                    Err(e) => println!("FAIL {name} ({secs:.0} s): {e}\n{}", steps.join("\n")),
                }
                results
                    .lock()
                    .expect("results")
                    .push((name, r.is_ok(), secs));
            });
        }
    });
    let r = results.lock().expect("results");
    let passed = r.iter().filter(|x| x.1).count();
    (passed, r.len() - passed)
}

/// Debian's `docker-registry` on 127.0.0.1 for one scenario; stopped when
/// dropped.
struct Registry {
    child: std::process::Child,
    port: u16,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Registry {
    fn start(dir: &Path) -> Result<Registry, RigError> {
        std::fs::create_dir_all(dir).map_err(crate::io("mkdir"))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(crate::io("a free port"))?
            .port();
        let cfg = dir.join("config.yml");
        std::fs::write(
            &cfg,
            format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: tandem-qemu\n",
                dir.join("data").display()
            ),
        )
        .map_err(crate::io("registry config"))?;
        let child = std::process::Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(crate::io(
                "docker-registry (apt-get install docker-registry)",
            ))?;
        let reg = Registry { child, port };
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if start.elapsed() > Duration::from_secs(20) {
                return Err(fail("docker-registry did not start"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(reg)
    }
}

/// Scenario 10: the update comes from an OCI registry. The host pushes the bundle
/// to Debian's `docker-registry` on 127.0.0.1 with `tandem bundle push`;
/// the guest, which sees it as 10.0.2.100:5000 (plain HTTP, allowed by an
/// `/etc` drop-in), installs `oci://…:1.1.0`, reboots, and commits it.
pub fn registry_update(fx: &Fixture, t: &mut Timeline) -> Result<(), RigError> {
    let tandem = fx
        .tandem
        .as_ref()
        .ok_or_else(|| fail("the registry scenario needs the host's agent (--tandem)"))?;
    let reg = Registry::start(&fx.work.join("s10-registry"))?;
    let bundle = fx.images.join("minimal-1.1.0.tnd");
    let target = format!("oci://127.0.0.1:{}/fleet/minimal:1.1.0", reg.port);
    let o = std::process::Command::new(tandem)
        .args(["bundle", "push", "--plain-http"])
        .arg(&bundle)
        .arg(&target)
        .output()
        .map_err(crate::io("tandem bundle push"))?;
    if !o.status.success() {
        return Err(fail(format!(
            "tandem bundle push: {}",
            String::from_utf8_lossy(&o.stderr)
        )));
    }
    t.step(format!(
        "pushed minimal-1.1.0.tnd to docker-registry: {}",
        String::from_utf8_lossy(&o.stdout).trim()
    ));
    let mut cfg = fx.config("s10-registry", fx.fresh_disk("s10-registry")?, None);
    cfg.forwards = Some(vec![crate::vm::GuestFwd {
        guest_port: 5000,
        host_port: reg.port,
    }]);
    let mut vm = Vm::start(&cfg)?;
    booted(&mut vm, 'a', t)?;
    expect_code(
        &mut vm,
        "mkdir -p /etc/tandem/conf.d && printf '[oci]\\ninsecure_registries = [\"10.0.2.100:5000\"]\\n' > /etc/tandem/conf.d/90-registry.toml",
        0,
    )?;
    let source = "oci://10.0.2.100:5000/fleet/minimal:1.1.0";
    vm.send(&format!("tandem install {source} --reboot"))?;
    let (l, k) = vm.expect_any(&["armed for", "error:"], Duration::from_secs(180))?;
    if k == 1 {
        return Err(fail(format!(
            "install from the registry failed: {}",
            l.text
        )));
    }
    t.step(
        "installed oci://10.0.2.100:5000/fleet/minimal:1.1.0 into the other slot; armed; rebooting",
    );
    trial_commits(&mut vm, 'b', t)?;
    let st = crate::scenario::status(&mut vm)?;
    crate::scenario::require(
        &st,
        &[
            ("slots.b.version", "1.1.0"),
            ("slots.b.state", "good"),
            ("booted", "b"),
        ],
    )?;
    t.step("status: b runs 1.1.0 from the registry, committed");
    Ok(())
}

/// Makes the hostile bundles the suite serves, with the host's agent.
pub fn make_hostile_bundles(images: &Path, tandem: &Path) -> Result<(), RigError> {
    let key = images.join("vendor.key");
    let rootfs = images.join("minimal-1.1.0.rootfs.img");
    let run = |args: &[&str]| -> Result<(), RigError> {
        let st = std::process::Command::new(tandem)
            .args(args)
            .stdout(std::process::Stdio::null())
            .status()
            .map_err(crate::io("tandem"))?;
        st.success()
            .then_some(())
            .ok_or_else(|| fail(format!("tandem {args:?} failed")))
    };
    let out = |n: &str| images.join(n).display().to_string();
    let (k, r) = (
        key.display().to_string(),
        format!("rootfs={}", rootfs.display()),
    );
    run(&[
        "bundle",
        "create",
        "-o",
        &out("hostile-compatible.tnd"),
        "--version",
        "9.0.0",
        "--compatible",
        "some-other-board",
        "--image",
        &r,
        "--key",
        &k,
    ])?;
    run(&[
        "bundle",
        "create",
        "-o",
        &out("hostile-downgrade.tnd"),
        "--version",
        "0.9.0",
        "--compatible",
        "tandem-demo-x86_64",
        "--image",
        &r,
        "--key",
        &k,
    ])?;
    // Fixed chunks: a device streams such a bundle whole, so the flipped
    // byte is always read. (Of a content-defined bundle an adaptive
    // install may never fetch the flipped chunk: agent/tests/adaptive.rs
    // tampers fetched ranges.)
    run(&[
        "bundle",
        "create",
        "-o",
        &out("hostile-fixed.tnd"),
        "--version",
        "1.1.0",
        "--compatible",
        "tandem-demo-x86_64",
        "--chunking",
        "fixed",
        "--image",
        &r,
        "--key",
        &k,
    ])?;
    let good = std::fs::read(images.join("hostile-fixed.tnd")).map_err(crate::io("bundle"))?;
    let mut bad = good;
    let at = bad.len() / 2;
    bad[at] ^= 0x55;
    std::fs::write(images.join("hostile-tampered.tnd"), bad).map_err(crate::io("write"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_selects_by_number_or_name() {
        let pick = |only| {
            select(suite(20, 1), Some(only)).map(|v| {
                v.into_iter()
                    .map(|(n, _)| scenario_id(&n).to_string())
                    .collect::<Vec<_>>()
            })
        };
        // A number is that scenario; 5a is not 15a (once a substring match).
        assert_eq!(pick("5a").unwrap(), ["5a"]);
        assert_eq!(pick("9").unwrap(), ["9"]);
        assert_eq!(pick("9c,1").unwrap(), ["9c", "1"]);
        // No scenario 5 or 16: their lettered variants, in suite order.
        assert_eq!(pick("5").unwrap(), ["5a", "5b"]);
        assert_eq!(pick("16").unwrap(), ["16e", "16a", "16b", "16c", "16d"]);
        // Anything else is part of a name.
        assert_eq!(pick("12 ,13 ").unwrap(), ["12", "13"]);
        assert_eq!(pick("9 ").unwrap(), ["9"]);
        assert_eq!(pick("resort").unwrap(), ["last", "last"]);
        // A part that selects nothing is an error naming it.
        let e = pick("5a,nothing").unwrap_err();
        assert!(e.contains("\"nothing\" selects no scenario"), "{e}");
        assert!(pick("17").unwrap_err().contains("16e"));
        assert_eq!(
            select(suite(20, 1), None).unwrap().len(),
            suite(20, 1).len()
        );
        // The two-VM scenario runs last, and it is the only one.
        let names: Vec<String> = suite(20, 1).into_iter().map(|(n, _)| n).collect();
        assert!(names.last().unwrap().contains(TWO_VMS));
        assert_eq!(names.iter().filter(|n| n.contains(TWO_VMS)).count(), 1);
    }
}

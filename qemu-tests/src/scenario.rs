//! Scenarios against images built by `tandem-image` (see
//! scripts/qemu-scenarios.sh): each boots real firmware and bootloader,
//! drives the guest through its serial console, and checks the outcome.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::http::FileServer;
use crate::vm::{Arch, Disk, GuestFwd, Vm, VmConfig};
use crate::RigError;

/// Boot budget for one boot under TCG (measured ~18 s to the shell; 3x margin).
pub const BOOT: Duration = Duration::from_secs(90);

/// A readable, timed account of a scenario.
pub struct Timeline {
    start: Instant,
    last: Instant,
    pub steps: Vec<(Duration, Duration, String)>,
    quiet: bool,
}

impl Timeline {
    pub fn new(quiet: bool) -> Timeline {
        let now = Instant::now();
        Timeline {
            start: now,
            last: now,
            steps: vec![],
            quiet,
        }
    }

    /// Records that `what` just finished.
    pub fn step(&mut self, what: impl Into<String>) {
        let now = Instant::now();
        let (at, took) = (now - self.start, now - self.last);
        self.last = now;
        let what = what.into();
        if !self.quiet {
            println!(
                "[{:7.1} s] (+{:5.1} s) {what}",
                at.as_secs_f64(),
                took.as_secs_f64()
            );
        }
        self.steps.push((at, took, what));
    }

    pub fn total(&self) -> Duration {
        self.start.elapsed()
    }
}

/// Built images: a disk whose slot a holds `base`, and bundles.
pub struct Fixture {
    /// `tcg` or `kvm` (when a probe showed KVM works).
    pub accel: String,
    pub arch: Arch,
    pub images: PathBuf,
    pub work: PathBuf,
    pub relay: PathBuf,
    pub disk: PathBuf,
    /// aarch64: U-Boot's board environment for pflash unit 1.
    pub uboot_env: Option<PathBuf>,
    /// The host's agent (`--tandem`), for scenarios that prepare with it
    /// (a push to a registry).
    pub tandem: Option<PathBuf>,
    /// Boot OVMF's Secure Boot build ([`crate::vm::Firmware::secure_boot`]).
    pub secure_boot: bool,
}

/// The one file in `dir` whose name ends with `suffix`.
fn find_image(dir: &Path, suffix: &str, hint: &str) -> Result<PathBuf, RigError> {
    std::fs::read_dir(dir)
        .map_err(crate::io(format!("read {} ({hint})", dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.to_string_lossy().ends_with(suffix))
        .ok_or_else(|| RigError::Setup(format!("no *{suffix} in {} ({hint})", dir.display())))
}

impl Fixture {
    pub fn new(images: &Path, work: &Path) -> Result<Fixture, RigError> {
        let images =
            &std::fs::canonicalize(images).map_err(crate::io(format!("{}", images.display())))?;
        let disk = find_image(images, ".disk.img", "scripts/build-images.sh")?;
        let mut fx = Fixture {
            accel: "tcg".into(),
            arch: Arch::X86_64,
            images: images.to_path_buf(),
            work: work.to_path_buf(),
            relay: std::env::current_exe().map_err(crate::io("current exe"))?,
            disk,
            uboot_env: None,
            tandem: None,
            secure_boot: false,
        };
        // TANDEM_QEMU_ACCEL=tcg|kvm forces; otherwise KVM only if a probe works.
        fx.accel = match std::env::var("TANDEM_QEMU_ACCEL").as_deref() {
            Ok("kvm") => "kvm".into(),
            Ok("tcg") => "tcg".into(),
            _ => {
                let mut probe = fx.config("probe", Disk::raw(&fx.disk), None);
                probe.disks[0].readonly = true;
                if crate::vm::probe_kvm(&probe) {
                    "kvm"
                } else {
                    "tcg"
                }
                .into()
            }
        };
        Ok(fx)
    }

    /// The aarch64 images built by scripts/build-images-arm64.sh into
    /// `images` (a disk, its U-Boot environment, bundles). Always TCG: an
    /// x86_64 host cannot run aarch64 guests under KVM.
    pub fn aarch64(images: &Path, work: &Path) -> Result<Fixture, RigError> {
        let hint = "scripts/build-images-arm64.sh";
        let images = &std::fs::canonicalize(images)
            .map_err(crate::io(format!("{} ({hint})", images.display())))?;
        Ok(Fixture {
            accel: "tcg".into(),
            arch: Arch::Aarch64,
            images: images.to_path_buf(),
            work: work.to_path_buf(),
            relay: std::env::current_exe().map_err(crate::io("current exe"))?,
            disk: find_image(images, ".disk.img", hint)?,
            uboot_env: Some(find_image(images, ".uboot-env.img", hint)?),
            tandem: None,
            secure_boot: false,
        })
    }

    /// The same machine (accelerator, agent) booting another x86_64 image
    /// set: `disk` in `images`, which hold its bundles. `hint` says what
    /// builds them, for the error when the disk is missing.
    pub fn variant(&self, images: PathBuf, disk: &str, hint: &str) -> Result<Fixture, RigError> {
        let disk = images.join(disk);
        if !disk.exists() {
            return Err(fail(format!("no {} ({hint} builds it)", disk.display())));
        }
        Ok(Fixture {
            accel: self.accel.clone(),
            arch: Arch::X86_64,
            images,
            work: self.work.clone(),
            relay: self.relay.clone(),
            disk,
            uboot_env: None,
            tandem: self.tandem.clone(),
            secure_boot: false,
        })
    }

    /// A fresh copy-on-write disk for one VM (the base stays pristine).
    pub fn fresh_disk(&self, name: &str) -> Result<Disk, RigError> {
        let dir = self.work.join(name);
        std::fs::create_dir_all(&dir).map_err(crate::io(format!("create {}", dir.display())))?;
        let overlay = dir.join("disk.qcow2");
        let _ = std::fs::remove_file(&overlay);
        let st = std::process::Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
            .arg(&self.disk)
            .arg(&overlay)
            .status()
            .map_err(crate::io("qemu-img"))?;
        if !st.success() {
            return Err(RigError::Setup(format!(
                "qemu-img create {} failed",
                overlay.display()
            )));
        }
        Ok(Disk {
            path: overlay,
            format: "qcow2".into(),
            readonly: false,
        })
    }

    /// A VM config on `disk`, with the bundle server forwarded to
    /// http://10.0.2.100/ and a watchdog.
    pub fn config(&self, name: &str, disk: Disk, server: Option<&FileServer>) -> VmConfig {
        let mut c = VmConfig::new(name, self.arch, &self.work.join(name));
        c.disks.push(disk);
        c.accel = self.accel.clone();
        c.uboot_env = self.uboot_env.clone();
        if self.secure_boot {
            c.firmware = crate::vm::Firmware::secure_boot();
        }
        c.watchdog = true;
        c.relay = Some(self.relay.clone());
        c.forwards = server.map(|s| {
            vec![GuestFwd {
                guest_port: 80,
                host_port: s.port,
            }]
        });
        c
    }

    pub fn serve(&self) -> Result<FileServer, RigError> {
        FileServer::start(&self.images)
    }
}

/// A scenario failure with its reason.
pub fn fail(msg: impl Into<String>) -> RigError {
    RigError::Setup(msg.into())
}

/// Runs a guest command and requires an exit status.
pub fn expect_code(vm: &mut Vm, cmd: &str, want: i32) -> Result<(), RigError> {
    let got = vm.run(cmd, Duration::from_secs(120))?;
    if got != want {
        return Err(fail(format!("`{cmd}` exited {got}, expected {want}")));
    }
    Ok(())
}

/// `tandem status --json` from the guest, parsed.
pub fn status(vm: &mut Vm) -> Result<serde_json::Value, RigError> {
    let text = vm.output("tandem status --json", Duration::from_secs(60))?;
    serde_json::from_str(&text)
        .map_err(|e| fail(format!("tandem status --json: {e}; it printed: {text}")))
}

/// Requires `st[key] == want` for each pair; `slots.G.field` addresses
/// slot group G.
pub fn require(st: &serde_json::Value, wants: &[(&str, &str)]) -> Result<(), RigError> {
    for (key, want) in wants {
        let got = match key.split('.').collect::<Vec<_>>().as_slice() {
            ["slots", g, field] => st["slots"]
                .as_array()
                .and_then(|s| s.iter().find(|s| s["group"] == *g))
                .map(|s| &s[*field])
                .ok_or_else(|| fail(format!("status has no slot group {g}: {st}")))?,
            [field] => &st[*field],
            _ => return Err(fail(format!("bad status key {key}"))),
        };
        if got != want {
            return Err(fail(format!(
                "status: {key} is {got}, expected {want:?}: {st}"
            )));
        }
    }
    Ok(())
}

/// The trial boot of `slot` (`version`) reached userland and its health
/// check failed, within `timeout` for each step.
pub fn trial_failed(
    vm: &mut Vm,
    slot: char,
    version: &str,
    timeout: Duration,
    t: &mut Timeline,
) -> Result<(), RigError> {
    vm.expect(&format!("TANDEM-BOOTED slot={slot}"), timeout)?;
    let l = vm.expect(&format!("FAILED on slot {slot}"), timeout)?;
    t.step(format!(
        "trial of slot {slot} ({version}): health check failed: {}",
        l.text.trim()
    ));
    Ok(())
}

/// Requires the status after a committed trial of `slot` (`version`): it
/// is booted, primary and good.
pub fn require_committed(
    st: &serde_json::Value,
    slot: &str,
    version: &str,
) -> Result<(), RigError> {
    require(
        st,
        &[
            ("booted", slot),
            ("primary", slot),
            (&format!("slots.{slot}.state"), "good"),
            (&format!("slots.{slot}.version"), version),
        ],
    )
}

/// Requires the status after a failed trial of `bad` (`version`) and the
/// fallback to `good`: `good` booted, primary and good, `bad` marked bad,
/// the failure recorded.
pub fn require_fell_back(
    st: &serde_json::Value,
    bad: &str,
    good: &str,
    version: &str,
) -> Result<(), RigError> {
    require(
        st,
        &[
            ("booted", good),
            ("primary", good),
            (&format!("slots.{bad}.state"), "bad"),
            (&format!("slots.{good}.state"), "good"),
        ],
    )?;
    require_failure(st, version, bad)
}

/// Requires the status to record a failure of `version` on `slot`.
pub fn require_failure(st: &serde_json::Value, version: &str, slot: &str) -> Result<(), RigError> {
    let recorded = st["failures"].as_array().is_some_and(|f| {
        f.iter()
            .any(|x| x["version"] == version && x["slot"] == slot)
    });
    if recorded {
        Ok(())
    } else {
        Err(fail(format!(
            "status records no failure of {version} on {slot}: {st}"
        )))
    }
}

/// Requires that the initramfs got the group's dm-verity parameters from
/// the bootloader (TANDEM_<G>_VERITY in grubenv or tandem.env, written by
/// the agent's install or the disk builder) and mounted the slot through
/// dm-verity. Call it before [`booted`]: the initramfs prints first.
pub fn verified(vm: &mut Vm, slot: char, t: &mut Timeline) -> Result<(), RigError> {
    let (l, k) = vm.expect_any(
        &[
            &format!("command line: slot {slot}, dm-verity root hash"),
            &format!("command line: slot {slot}, no dm-verity"),
        ],
        BOOT,
    )?;
    if k != 0 {
        return Err(fail(format!(
            "slot {slot} booted without its dm-verity parameters: {}",
            l.text
        )));
    }
    vm.expect(
        &format!("dm-verity: /dev/mapper/tandem-root-{slot} over"),
        BOOT,
    )?;
    let hash = l.text.split("root hash ").nth(1).unwrap_or("?");
    t.step(format!(
        "slot {slot} mounted through dm-verity (root hash {hash})"
    ));
    Ok(())
}

/// Waits for slot a's boot, its boot check saying the bootloader fell
/// back (from a trial of b), and the shell.
pub fn fell_back_to_a(vm: &mut Vm) -> Result<(), RigError> {
    vm.expect("TANDEM-BOOTED slot=a", BOOT)?;
    vm.expect("the bootloader fell back", BOOT)?;
    vm.expect("TANDEM-READY slot=a", BOOT)?;
    Ok(())
}

/// Waits for the guest's shell after a boot on `slot`.
pub fn booted(vm: &mut Vm, slot: char, t: &mut Timeline) -> Result<(), RigError> {
    let l = vm.expect(&format!("TANDEM-BOOTED slot={slot}"), BOOT)?;
    let version = l.text.split("version=").nth(1).unwrap_or("?").to_string();
    vm.expect(&format!("TANDEM-READY slot={slot}"), BOOT)?;
    t.step(format!(
        "booted slot {slot} (version {version}), boot check done, shell ready"
    ));
    Ok(())
}

/// Installs a bundle over HTTP with --reboot; waits for the download to finish.
pub fn install_and_reboot(vm: &mut Vm, bundle: &str, t: &mut Timeline) -> Result<(), RigError> {
    install_with(vm, bundle, "", t)
}

/// Waits for the install of `bundle` typed into the guest to say it armed
/// the other group; its `error:` line fails.
pub fn wait_armed(vm: &mut Vm, bundle: &str) -> Result<(), RigError> {
    let (l, k) = vm.expect_any(&["armed for", "error:"], Duration::from_secs(180))?;
    if k == 1 {
        return Err(RigError::Setup(format!(
            "install of {bundle} failed: {}",
            l.text
        )));
    }
    Ok(())
}

/// Installs a bundle over HTTP without rebooting and cuts the power the
/// moment the install says the other group is armed; starts the VM again
/// (as `cfg`, renamed `<name>-after-cut`) on the same disk. What the
/// install wrote must already be durable: the next boot is the trial.
pub fn install_and_cut(
    mut vm: Vm,
    cfg: &mut VmConfig,
    bundle: &str,
    t: &mut Timeline,
) -> Result<Vm, RigError> {
    vm.send(&format!("tandem install http://10.0.2.100/{bundle}"))?;
    wait_armed(&mut vm, bundle)?;
    let cut = vm.power_cut()?;
    t.step(format!(
        "installed {bundle} over HTTP into the other slot, armed; power cut at once ({cut})"
    ));
    cfg.name = format!("{}-after-cut", cfg.name);
    Vm::start(cfg)
}

/// [`install_and_reboot`] with extra `tandem install` flags (e.g. `--force`
/// to install the version that runs into the other slot too).
pub fn install_with(
    vm: &mut Vm,
    bundle: &str,
    flags: &str,
    t: &mut Timeline,
) -> Result<(), RigError> {
    vm.send(&format!(
        "tandem install {flags} http://10.0.2.100/{bundle} --reboot"
    ))?;
    wait_armed(vm, bundle)?;
    t.step(format!(
        "installed {bundle} over HTTP into the other slot; armed; rebooting"
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st() -> serde_json::Value {
        serde_json::from_str(
            r#"{"booted": "b", "primary": "b", "boot_backend": "uboot-file",
                "slots": [{"group": "a", "state": "bad"},
                          {"group": "b", "state": "good", "version": "1.1.0"}]}"#,
        )
        .unwrap()
    }

    #[test]
    fn status_requirements_can_fail() {
        let st = st();
        require(&st, &[("booted", "b"), ("slots.a.state", "bad")]).unwrap();
        for wrong in [
            ("booted", "a"),
            ("primary", "a"),
            ("slots.a.state", "good"),
            ("slots.b.state", "bad"),
            ("slots.c.state", "good"),
            ("missing", "x"),
            ("x.y", "z"),
            ("a.b.c.d", "x"),
        ] {
            assert!(require(&st, &[wrong]).is_err(), "{wrong:?}");
        }
    }

    #[test]
    fn a_committed_slot_is_booted_primary_good_and_at_its_version() {
        let st = st();
        require_committed(&st, "b", "1.1.0").unwrap();
        assert!(require_committed(&st, "b", "1.2.0").is_err());
        assert!(require_committed(&st, "a", "1.1.0").is_err());
    }
}

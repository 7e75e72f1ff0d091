//! The boot sequence (docs/disk-layout.md, "Early boot"): wires the pure
//! modules to [`sys`]. Every failure ends in [`fail`]: the reason on the
//! console, then a reboot so the bootloader counts the try and falls back
//! (or `/bin/sh` with `tandem.debug`, in a `debug-shell` build only). The
//! data partition never fails the boot (crate::data: degraded instead).
//! Nothing here waits without a bound.

use std::ffi::OsString;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rustix::mount::MountFlags;

use crate::cmdline::{self, Cmdline};
use crate::data::{self, DataOps};
use crate::fsmagic::{self, Fs};
use crate::plan::{self, GptHit, Partitions, RootBy, Step};
use crate::policy::{self, Policy};
use crate::sys::{self, say};
use crate::uevent::BlockDev;
use crate::{dm, etcmerge, gpt, reset, uevent, varseed, verity};

const POLL: Duration = Duration::from_millis(50);
/// How long mke2fs or e2fsck may run before it is killed (degraded boot).
const TOOL_LIMIT: Duration = Duration::from_secs(600);
const MODULES_LIST: &str = "/etc/modules-load";
const MODULES_DIR: &str = "/lib/modules";
const CLASS_BLOCK: &str = "/sys/class/block";

/// Set once `tandem.debug` is seen; read by [`fail`] and the panic hook.
static DEBUG: AtomicBool = AtomicBool::new(false);

/// Why the boot failed, as printed after `FAILED: `.
type Failure = String;

/// Runs the initramfs; never returns (exec of init, a shell, or reboot).
/// `init_args` are passed on to `/sbin/init`.
pub fn run(init_args: Vec<OsString>) -> ! {
    std::panic::set_hook(Box::new(|info| {
        fail(&format!("internal error: {info}"));
    }));
    match boot(init_args) {
        Ok(never) => match never {},
        Err(reason) => fail(&reason),
    }
}

/// Prints the reason; with `tandem.debug` runs `/bin/sh`, else reboots.
pub fn fail(reason: &str) -> ! {
    sys::say_failed(reason);
    if DEBUG.load(Ordering::Relaxed) {
        debug_shell();
    }
    say("rebooting");
    sys::reboot()
}

#[cfg(feature = "debug-shell")]
fn debug_shell() {
    if Path::new("/bin/sh").exists() {
        say("tandem.debug: starting /bin/sh instead of rebooting");
        let e = sys::exec_shell();
        sys::say_failed(&e.to_string());
    }
}

#[cfg(not(feature = "debug-shell"))]
fn debug_shell() {
    say(
        "tandem.debug: this initramfs is built without the debug shell (cargo feature debug-shell)",
    );
}

fn boot(init_args: Vec<OsString>) -> Result<std::convert::Infallible, Failure> {
    let started = Instant::now();
    sys::mount_api_filesystems().map_err(|e| e.to_string())?;
    // Without a console nobody sees the progress; keep booting regardless.
    let console = sys::ensure_console();
    // /proc is moved away before switch_root; later uptimes are computed.
    let uptime_at_start = sys::uptime() - started.elapsed().as_secs_f64();
    say(&format!(
        "{} {} started at {:.2} s (/proc, /sys, /dev mounted)",
        env!("CARGO_PKG_NAME"),
        env!("CARGO_PKG_VERSION"),
        uptime_at_start
    ));
    if let Err(e) = console {
        say(&format!("no console on stdio: {e}"));
    }

    let text = sys::read_to_string(Path::new("/proc/cmdline")).map_err(|e| e.to_string())?;
    DEBUG.store(cmdline::wants_debug(&text), Ordering::Relaxed);
    load_modules();
    let cmd = cmdline::parse(&text).map_err(|e| e.to_string())?;
    say(&describe(&cmd));
    let policy = load_policy()?;

    let parts = wait_for_partitions(&cmd)?;
    let by = if cmd.partuuid.is_some() {
        "PARTUUID"
    } else {
        "GPT name"
    };
    say(&format!(
        "slot {} on {} (by {by}), data {}, all on disk {}",
        cmd.slot,
        parts.root.path(),
        parts.data.path(),
        parts.disk
    ));
    for i in &parts.ignored {
        say(&format!("ignoring {i}: not on the root partition's disk"));
    }

    let steps = plan::plan(&cmd, &parts, &policy).map_err(|e| e.to_string())?;
    for step in steps {
        if let Step::SwitchRoot { new_root, init } = &step {
            say(&format!(
                "switch_root to {}, exec {} ({} ms in the initramfs, uptime {:.2} s)",
                new_root.display(),
                init.display(),
                started.elapsed().as_millis(),
                uptime_at_start + started.elapsed().as_secs_f64()
            ));
            let e = sys::switch_root(new_root, init, init_args);
            return Err(e.to_string());
        }
        execute(&step)?;
    }
    Err("the plan has no switch_root step".into())
}

fn describe(cmd: &Cmdline) -> String {
    let verity = match &cmd.verity {
        Some(v) => format!(
            "dm-verity root hash {}, hash offset {}",
            v.root_hash(),
            v.hash_offset()
        ),
        None => "no dm-verity".into(),
    };
    let debug = if cmd.debug { ", debug" } else { "" };
    let root = match &cmd.partuuid {
        Some(u) => format!(", root PARTUUID {u}"),
        None => ", no root=PARTUUID (by GPT name)".into(),
    };
    format!(
        "command line: slot {}, {verity}{root}, wait {} s{debug}",
        cmd.slot,
        cmd.wait.as_secs()
    )
}

/// The policy built into this initramfs ([`policy::PATH`]).
fn load_policy() -> Result<Policy, Failure> {
    let p = match sys::read_to_string(Path::new(policy::PATH)) {
        Ok(text) => Policy::parse(&text).map_err(|e| e.to_string())?,
        Err(e) if e.source.kind() == std::io::ErrorKind::NotFound => {
            say(&format!("no {}: requiring dm-verity", policy::PATH));
            Policy::DEFAULT
        }
        Err(e) => return Err(e.to_string()),
    };
    say(&format!(
        "policy: require_verity = {}",
        if p.require_verity { "yes" } else { "no" }
    ));
    Ok(p)
}

/// Loads each module listed in /etc/modules-load, in order. A module that
/// does not load is reported and skipped: it may be built into the kernel,
/// and a missing driver shows up as a missing partition a moment later.
fn load_modules() {
    let list = match sys::read_to_string(Path::new(MODULES_LIST)) {
        Ok(l) => l,
        Err(e) if e.source.kind() == std::io::ErrorKind::NotFound => {
            say(&format!("no {MODULES_LIST}: loading no modules"));
            return;
        }
        Err(e) => {
            say(&format!("{e}: loading no modules"));
            return;
        }
    };
    let (mut loaded, mut failed) = (0, 0);
    for name in list.lines().map(str::trim) {
        if name.is_empty() || name.starts_with('#') {
            continue;
        }
        if name.contains('/') {
            say(&format!(
                "module {name:?} in {MODULES_LIST}: not a file name, skipped"
            ));
            failed += 1;
            continue;
        }
        match sys::load_module(&Path::new(MODULES_DIR).join(name)) {
            Ok(()) => loaded += 1,
            Err(e) if e.source.raw_os_error() == Some(rustix::io::Errno::EXIST.raw_os_error()) => {
                loaded += 1
            }
            Err(e) => {
                say(&format!("{e} (not fatal: it may be built in)"));
                failed += 1;
            }
        }
    }
    say(&format!("modules: {loaded} loaded, {failed} failed"));
}

/// Polls sysfs until the slot and data partitions are there, at most
/// `tandem.wait` seconds.
fn wait_for_partitions(cmd: &Cmdline) -> Result<Partitions, Failure> {
    let start = Instant::now();
    loop {
        let devs = uevent::scan(Path::new(CLASS_BLOCK))
            .map_err(|e| format!("cannot list {CLASS_BLOCK}: {e}"))?;
        let found = match &cmd.partuuid {
            Some(uuid) => {
                let hits = partuuid_hits(&devs, uuid);
                plan::locate(&devs, cmd.slot, RootBy::Partuuid { uuid, hits: &hits })
            }
            None => plan::locate(&devs, cmd.slot, RootBy::Name),
        };
        match found {
            Ok(p) => return Ok(p),
            Err(e) if !e.may_resolve() => return Err(e.to_string()),
            Err(e) if start.elapsed() >= cmd.wait => {
                return Err(format!(
                    "{e} after waiting {} s (tandem.wait=SECONDS to wait longer)",
                    cmd.wait.as_secs()
                ))
            }
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

/// Reads the GPT of every disk and returns the entries whose unique GUID
/// is `uuid`. A disk without a readable GPT has none.
fn partuuid_hits(devs: &[BlockDev], uuid: &str) -> Vec<GptHit> {
    let mut hits = Vec::new();
    for d in devs.iter().filter(|d| d.is_disk) {
        let lbs = sys::read_to_string(
            &Path::new(CLASS_BLOCK)
                .join(&d.devname)
                .join("queue/logical_block_size"),
        )
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .filter(|n| n.is_power_of_two() && *n >= 512)
        .unwrap_or(512);
        let path = d.path();
        let Ok(lba1) = sys::read_at(&path, lbs, lbs as usize) else {
            continue;
        };
        let Ok(header) = gpt::parse_header(&lba1) else {
            continue;
        };
        let Some(at) = header.entries_lba.checked_mul(lbs) else {
            continue;
        };
        let Ok(array) = sys::read_at(&path, at, header.array_len() as usize) else {
            continue;
        };
        for e in gpt::entries(&header, &array) {
            if e.unique_guid == uuid {
                hits.push(GptHit {
                    disk: d.devname.clone(),
                    number: e.number,
                    start: e.first_lba.saturating_mul(lbs / 512),
                });
            }
        }
    }
    hits
}

fn execute(step: &Step) -> Result<(), Failure> {
    let e = |e: sys::SysError| e.to_string();
    match step {
        Step::Verity {
            name,
            partition,
            table,
        } => {
            let node = sys::verity_create(name, &target(table)).map_err(e)?;
            say(&format!(
                "dm-verity: {node} over {partition} ({} data blocks)",
                table.data_blocks
            ));
        }
        Step::MountRoot { device, target } => {
            let fs = probe(device)?.ok_or_else(|| {
                format!("{device}: neither squashfs nor ext4 (no superblock magic)")
            })?;
            sys::mkdir_p(target).map_err(e)?;
            sys::mount(device, target, fs.fstype(), MountFlags::RDONLY, None).map_err(e)?;
            say(&format!(
                "mounted {device} ({}, read-only) on {}",
                fs.fstype(),
                target.display()
            ));
        }
        Step::RequireInit { path } => {
            // symlink_metadata: an absolute symlink (/sbin/init -> /bin/busybox)
            // only resolves once /sysroot is the root.
            std::fs::symlink_metadata(path)
                .map_err(|err| format!("the slot has no {}: {err}", path.display()))?;
        }
        Step::MountRun { target } => {
            if target.is_dir() {
                let flags = MountFlags::NOSUID | MountFlags::NODEV;
                sys::mount("tmpfs", target, "tmpfs", flags, Some("mode=0755")).map_err(e)?;
            } else {
                say(&format!(
                    "the slot has no {}: no /run handed over (the degraded marker cannot be written)",
                    target.display()
                ));
            }
        }
        Step::MountData {
            device,
            target,
            marker,
        } => mount_data(device, target, marker)?,
        Step::FactoryReset { dir, flag } => {
            if std::fs::symlink_metadata(dir.join(flag)).is_ok() {
                say(&format!("factory reset: wiping {}", dir.display()));
                let n = reset::wipe(dir)
                    .map_err(|err| format!("factory reset of {}: {err}", dir.display()))?;
                say(&format!("factory reset: {n} entries removed"));
            }
        }
        Step::MakeDirs(dirs) => {
            for d in dirs {
                sys::mkdir_p(d).map_err(e)?;
            }
        }
        Step::SeedVar { image, data, stamp } => {
            let version = image_version(&image.join(".."));
            match varseed::run(image, data, stamp, &version) {
                Ok(varseed::Outcome::Seeded { copied, skipped }) => say(&format!(
                    "/var seeded from {version}: {copied} {} copied{}",
                    if copied == 1 { "entry" } else { "entries" },
                    if skipped.is_empty() {
                        String::new()
                    } else {
                        format!(" (special files left out: {})", skipped.join(", "))
                    }
                )),
                Ok(varseed::Outcome::Unchanged) => {}
                Err(err) => say(&format!(
                    "/var seeding stopped: {err} (what was copied stays; the next boot goes on)"
                )),
            }
        }
        Step::Bind { source, target } => {
            sys::bind(source, target).map_err(e)?;
            say(&format!(
                "bound {} on {}",
                source.display(),
                target.display()
            ));
        }
        Step::MergeEtc {
            lower,
            upper,
            state,
        } => {
            let version = image_version(&lower.join(".."));
            match etcmerge::run(lower, upper, state, &version) {
                Ok(etcmerge::Outcome::Merged(p)) => say(&format!(
                    "/etc merged for {version}: {} yielded to the image, {} conflict(s){}",
                    p.yielded.len(),
                    p.conflicts.len(),
                    if p.conflicts.is_empty() {
                        String::new()
                    } else {
                        format!(" (kept the administrator's: {})", p.conflicts.join(", "))
                    }
                )),
                Ok(etcmerge::Outcome::Recorded) => say("/etc: base manifest recorded"),
                Ok(etcmerge::Outcome::Unchanged) => {}
                Err(err) => say(&format!(
                    "/etc merge skipped: {err} (the upper layer stays as it is)"
                )),
            }
        }
        Step::Overlay {
            target,
            lower,
            upper,
            work,
        } => {
            let opts = format!(
                "lowerdir={},upperdir={},workdir={}",
                lower.display(),
                upper.display(),
                work.display()
            );
            sys::mount(
                "overlay",
                target,
                "overlay",
                MountFlags::NOSUID | MountFlags::NODEV,
                Some(&opts),
            )
            .map_err(e)?;
            say(&format!("overlay on {} ({opts})", target.display()));
        }
        Step::Links(links) => {
            // Conveniences for the agent; the boot does not depend on them.
            for (link, to) in links {
                if let Err(err) = sys::symlink(to, link) {
                    say(&format!("{err} (not fatal)"));
                }
            }
        }
        Step::Move { source, target } => sys::move_mount(source, target).map_err(e)?,
        Step::SwitchRoot { .. } => return Err("switch_root reached execute()".into()),
    }
    Ok(())
}

/// The image's version (`/usr/lib/tandem/version` under `root`), or ""
/// when it has none.
fn image_version(root: &Path) -> String {
    std::fs::read_to_string(root.join("usr/lib/tandem/version"))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

fn target(t: &verity::Table) -> dm::Target {
    dm::Target {
        sector_start: 0,
        sectors: t.sectors(),
        target_type: verity::Table::TARGET.into(),
        params: t.params(),
    }
}

/// The filesystem on `device`, from its first bytes. A read error (say
/// dm-verity refusing a corrupted block) is a failure.
fn probe(device: &str) -> Result<Option<Fs>, Failure> {
    let head = sys::read_head(device, fsmagic::PROBE_LEN).map_err(|e| {
        let eio = e.source.raw_os_error() == Some(rustix::io::Errno::IO.raw_os_error());
        if eio && device.starts_with("/dev/mapper/") {
            format!(
                "{e}: dm-verity rejected the data (the slot is corrupt or does not \
                 match tandem.verity.roothash; the kernel log names the block)"
            )
        } else {
            e.to_string()
        }
    })?;
    Ok(fsmagic::detect(&head))
}

/// The data partition's side effects for [`data::bring_up`].
struct Data<'a> {
    device: &'a str,
    target: &'a Path,
}

impl DataOps for Data<'_> {
    fn format(&mut self) -> Result<(), String> {
        say(&format!(
            "{} ({}) is blank (first MiB all zero): formatting it ext4",
            self.device,
            plan::DATA_PARTNAME
        ));
        let code = sys::run_bounded(
            Path::new(data::MKE2FS),
            &[
                "-t",
                "ext4",
                "-F",
                "-q",
                "-L",
                plan::DATA_PARTNAME,
                self.device,
            ],
            TOOL_LIMIT,
        )?;
        if code == 0 {
            Ok(())
        } else {
            Err(format!("{} exited with {code}", data::MKE2FS))
        }
    }

    fn mount(&mut self) -> Result<(), String> {
        sys::mkdir_p(self.target).map_err(|e| e.to_string())?;
        let flags = MountFlags::NOSUID | MountFlags::NODEV;
        sys::mount(self.device, self.target, "ext4", flags, None).map_err(|e| e.to_string())
    }

    fn fsck(&mut self) -> Result<i32, String> {
        say(&format!(
            "{}: does not mount; running e2fsck -p",
            self.device
        ));
        let code = sys::run_bounded(Path::new(data::E2FSCK), &["-p", self.device], TOOL_LIMIT)?;
        say(&format!("e2fsck -p {}: exit status {code}", self.device));
        Ok(code)
    }
}

fn mount_data(device: &str, target: &Path, marker: &Path) -> Result<(), Failure> {
    let head = sys::read_head(device, data::HEAD_LEN).map_err(|e| e.to_string());
    let content = match &head {
        Ok(h) => data::classify(h),
        Err(_) => data::Content::Unrecognized,
    };
    let tools = data::Tools {
        mkfs: Path::new(data::MKE2FS).exists(),
        fsck: Path::new(data::E2FSCK).exists(),
    };
    let outcome = match head {
        Err(e) => data::Outcome::Degraded(format!("the data partition cannot be read: {e}")),
        Ok(_) => data::bring_up(&content, tools, &mut Data { device, target }),
    };
    match outcome {
        data::Outcome::Mounted {
            formatted,
            repaired,
        } => {
            let how = match (formatted, repaired) {
                (true, _) => ", newly formatted",
                (_, true) => ", repaired by e2fsck",
                _ => "",
            };
            say(&format!(
                "mounted {device} (ext4, nosuid, nodev{how}) on {}",
                target.display()
            ));
            Ok(())
        }
        data::Outcome::Degraded(reason) => degraded(device, target, marker, &reason),
    }
}

/// A tmpfs instead of the data partition, the marker, and a loud console.
fn degraded(device: &str, target: &Path, marker: &Path, reason: &str) -> Result<(), Failure> {
    let bar = "*".repeat(72);
    let lines = [
        bar.clone(),
        format!("DEGRADED: {reason}"),
        format!(
            "DEGRADED: {device} is not used: /var and /etc changes live in memory until the \
             next boot; the update state (anti-rollback floor included) is not available"
        ),
        format!("DEGRADED: marker {}", marker.display()),
        bar,
    ];
    for l in &lines {
        say(l);
        sys::kmsg(&format!("tandem-initramfs: {l}"));
    }
    sys::mkdir_p(target).map_err(|e| e.to_string())?;
    let flags = MountFlags::NOSUID | MountFlags::NODEV;
    sys::mount("tmpfs", target, "tmpfs", flags, Some("mode=0755")).map_err(|e| e.to_string())?;
    if let Err(e) = sys::write_file(marker, data::marker_text(reason, device).as_bytes()) {
        say(&format!("{e} (the agent will not see the degraded boot)"));
    }
    Ok(())
}

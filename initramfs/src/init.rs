//! The boot sequence (docs/disk-layout.md, "Early boot"): wires the pure
//! modules to [`sys`]. Every failure ends in [`fail`]: the reason on the
//! console, then a reboot so the bootloader counts the try and falls back
//! (or `/bin/sh` with `tandem.debug`). Nothing here waits without a bound.

use std::ffi::OsString;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rustix::mount::MountFlags;

use crate::cmdline::{self, Cmdline};
use crate::fsmagic::{self, Fs};
use crate::plan::{self, LocateError, Partitions, Step};
use crate::sys::{self, say};
use crate::{dm, reset, uevent, verity};

/// How long the slot and data partitions may take to appear.
pub const PARTITION_WAIT: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(50);
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
    if DEBUG.load(Ordering::Relaxed) && Path::new("/bin/sh").exists() {
        say("tandem.debug: starting /bin/sh instead of rebooting");
        let e = sys::exec_shell();
        sys::say_failed(&e.to_string());
    }
    say("rebooting");
    sys::reboot()
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

    let parts = wait_for_partitions(&cmd)?;
    say(&format!("slot {} on {}", cmd.slot, parts.root.path()));

    let steps = plan::plan(&cmd, &parts);
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
            v.root_hash, v.hash_offset
        ),
        None => "no dm-verity".into(),
    };
    let debug = if cmd.debug { ", debug" } else { "" };
    format!("command line: slot {}, {verity}{debug}", cmd.slot)
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
/// [`PARTITION_WAIT`].
fn wait_for_partitions(cmd: &Cmdline) -> Result<Partitions, Failure> {
    let start = Instant::now();
    loop {
        let devs = uevent::scan(Path::new(CLASS_BLOCK))
            .map_err(|e| format!("cannot list {CLASS_BLOCK}: {e}"))?;
        match plan::locate(&devs, cmd.slot) {
            Ok(p) => return Ok(p),
            Err(e @ LocateError::Ambiguous { .. }) => return Err(e.to_string()),
            Err(e) if start.elapsed() >= PARTITION_WAIT => {
                return Err(format!("{e} after waiting {} s", PARTITION_WAIT.as_secs()))
            }
            Err(_) => std::thread::sleep(POLL),
        }
    }
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
        Step::MountData {
            device,
            target,
            mkfs,
        } => mount_data(device, target, mkfs)?,
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
        Step::Bind { source, target } => {
            sys::bind(source, target).map_err(e)?;
            say(&format!(
                "bound {} on {}",
                source.display(),
                target.display()
            ));
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
                MountFlags::empty(),
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

fn mount_data(device: &str, target: &Path, mkfs: &Path) -> Result<(), Failure> {
    match probe(device)? {
        Some(Fs::Ext4) => {}
        Some(other) => {
            return Err(format!(
                "{device} ({}) holds {}, not ext4; refusing to format it",
                plan::DATA_PARTNAME,
                other.fstype()
            ))
        }
        None if mkfs.exists() => {
            say(&format!(
                "{device} ({}) holds no filesystem: formatting it ext4",
                plan::DATA_PARTNAME
            ));
            sys::mke2fs(mkfs, device).map_err(|e| e.to_string())?;
        }
        None => {
            return Err(format!(
                "{device} ({}) holds no filesystem and this initramfs has no {} to format it; \
                 format it ext4 when building the disk, or add mke2fs to the initramfs",
                plan::DATA_PARTNAME,
                mkfs.display()
            ))
        }
    }
    sys::mount(device, target, "ext4", MountFlags::empty(), None).map_err(|e| e.to_string())?;
    say(&format!("mounted {device} (ext4) on {}", target.display()));
    Ok(())
}

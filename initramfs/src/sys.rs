//! The only module that makes system calls with side effects: mounts,
//! module loading, device-mapper ioctls, device nodes, helper programs
//! (mke2fs, e2fsck), the console,
//! switch_root and reboot. Each function is one operation; errors carry the
//! path or device they concern.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rustix::fs::{FileType, Mode, OFlags};
use rustix::mount::MountFlags;

use crate::dm;

/// An I/O error with what we were doing.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct SysError {
    pub what: String,
    #[source]
    pub source: io::Error,
}

fn ctx<T>(
    r: Result<T, impl Into<io::Error>>,
    what: impl FnOnce() -> String,
) -> Result<T, SysError> {
    r.map_err(|e| SysError {
        what: what(),
        source: e.into(),
    })
}

pub type Result<T, E = SysError> = std::result::Result<T, E>;

/// Whether this process is PID 1 (the kernel's `/init`).
pub fn is_pid1() -> bool {
    rustix::process::getpid().is_init()
}

/// `mkdir -p`.
pub fn mkdir_p(dir: &Path) -> Result<()> {
    ctx(std::fs::create_dir_all(dir), || {
        format!("mkdir -p {}", dir.display())
    })
}

/// `mount -t fstype source target -o flags,data`.
pub fn mount(
    source: &str,
    target: &Path,
    fstype: &str,
    flags: MountFlags,
    data: Option<&str>,
) -> Result<()> {
    let what = || format!("mount -t {fstype} {source} {}", target.display());
    let data = match data {
        Some(d) => Some(ctx(std::ffi::CString::new(d), what)?),
        None => None,
    };
    ctx(
        rustix::mount::mount(source, target, fstype, flags, data.as_deref()),
        what,
    )
}

/// Mounts /proc, /sys and /dev (devtmpfs), creating the directories.
pub fn mount_api_filesystems() -> Result<()> {
    for (fstype, dir) in [("proc", "/proc"), ("sysfs", "/sys"), ("devtmpfs", "/dev")] {
        let dir = Path::new(dir);
        mkdir_p(dir)?;
        let flags = MountFlags::NOSUID | MountFlags::NOEXEC;
        mount(fstype, dir, fstype, flags, None)?;
    }
    Ok(())
}

/// Makes /dev/console stdin, stdout and stderr when the kernel could not
/// open it for us (an initramfs without a /dev/console node).
pub fn ensure_console() -> Result<()> {
    if Path::new("/proc/self/fd/1").exists() && Path::new("/proc/self/fd/2").exists() {
        return Ok(());
    }
    let c = ctx(
        rustix::fs::open("/dev/console", OFlags::RDWR | OFlags::NOCTTY, Mode::empty()),
        || "open /dev/console".into(),
    )?;
    let what = || "dup /dev/console to stdin/stdout/stderr".to_string();
    ctx(rustix::stdio::dup2_stdin(&c), what)?;
    ctx(rustix::stdio::dup2_stdout(&c), what)?;
    ctx(rustix::stdio::dup2_stderr(&c), what)?;
    Ok(())
}

/// Writes one line to the console (stdout). A console that cannot be
/// written to leaves nobody to tell, so write errors are dropped here.
pub fn say(line: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "tandem-initramfs: {line}");
    let _ = out.flush();
}

/// Writes the failure line to stderr, falling back to /dev/console, and
/// waits until a serial console has sent it (reboot would cut it off).
pub fn say_failed(reason: &str) {
    let line = format!("tandem-initramfs: FAILED: {reason}\n");
    let mut err = io::stderr().lock();
    if err.write_all(line.as_bytes()).is_err() {
        if let Ok(mut c) = std::fs::OpenOptions::new().write(true).open("/dev/console") {
            let _ = c.write_all(line.as_bytes());
            let _ = rustix::termios::tcdrain(c.as_fd());
        }
        return;
    }
    let _ = err.flush();
    let _ = rustix::termios::tcdrain(io::stderr().as_fd());
}

/// Seconds since boot, from /proc/uptime (0 if unreadable).
pub fn uptime() -> f64 {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

pub fn read_to_string(path: &Path) -> Result<String> {
    ctx(std::fs::read_to_string(path), || {
        format!("read {}", path.display())
    })
}

/// Loads one kernel module file with `finit_module(2)`.
pub fn load_module(path: &Path) -> Result<()> {
    let what = || format!("finit_module {}", path.display());
    let f = ctx(File::open(path), what)?;
    ctx(rustix::system::finit_module(&f, c"", 0), what)
}

/// The first `len` bytes of a device (fewer if it is shorter).
pub fn read_head(device: &str, len: usize) -> Result<Vec<u8>> {
    let what = || format!("read the superblock of {device}");
    let f = ctx(File::open(device), what)?;
    let mut buf = Vec::with_capacity(len);
    ctx(f.take(len as u64).read_to_end(&mut buf), what)?;
    Ok(buf)
}

/// One device-mapper ioctl on a request buffer from [`dm::encode`]; the
/// kernel writes its reply into the same buffer.
fn dm_ioctl(control: &File, cmd: dm::Command, buf: &mut [u8]) -> io::Result<()> {
    struct Call<'a> {
        opcode: rustix::ioctl::Opcode,
        buf: &'a mut [u8],
    }
    // SAFETY: device-mapper ioctls take a pointer to a `struct dm_ioctl`
    // whose `data_size` field says how many bytes follow; `dm::encode`
    // builds the buffer with `data_size == buf.len()` (at least 312 bytes),
    // so the kernel reads and writes only inside `buf`, which outlives the
    // call. The output is read from `buf` by `dm::decode`, not through
    // `output_from_ptr`.
    #[allow(unsafe_code)]
    unsafe impl rustix::ioctl::Ioctl for Call<'_> {
        type Output = ();
        const IS_MUTATING: bool = true;
        fn opcode(&self) -> rustix::ioctl::Opcode {
            self.opcode
        }
        fn as_ptr(&mut self) -> *mut std::ffi::c_void {
            self.buf.as_mut_ptr().cast()
        }
        unsafe fn output_from_ptr(
            _: rustix::ioctl::IoctlOutput,
            _: *mut std::ffi::c_void,
        ) -> rustix::io::Result<()> {
            Ok(())
        }
    }
    if buf.len() < dm::IOCTL_SIZE {
        return Err(io::Error::other("device-mapper buffer too short"));
    }
    let call = Call {
        opcode: rustix::ioctl::opcode::read_write::<[u8; dm::IOCTL_SIZE]>(dm::IOCTL_TYPE, cmd.nr()),
        buf,
    };
    // SAFETY: see the `Ioctl` impl above; `control` is an open
    // /dev/mapper/control.
    #[allow(unsafe_code)]
    let r = unsafe { rustix::ioctl::ioctl(control, call) };
    r.map_err(io::Error::from)
}

/// Creates `/dev/mapper/<name>` with the verity `target`, loaded read-only
/// and resumed. Returns the node's path.
pub fn verity_create(name: &str, target: &dm::Target) -> Result<String> {
    let control_path = "/dev/mapper/control";
    let control = ctx(
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(control_path),
        || format!("open {control_path} (is dm-mod loaded?)"),
    )?;
    let dm_err = |e: dm::DmError| SysError {
        what: format!("device-mapper request for {name}"),
        source: io::Error::new(io::ErrorKind::InvalidInput, e),
    };
    let call = |cmd: dm::Command, flags: u32, targets: &[dm::Target]| -> Result<dm::Reply> {
        let mut buf = dm::encode(name, flags, targets).map_err(dm_err)?;
        ctx(dm_ioctl(&control, cmd, &mut buf), || {
            format!("{} {name} (the kernel log says why)", cmd.name())
        })?;
        dm::decode(&buf).map_err(dm_err)
    };
    let created = call(dm::Command::DevCreate, 0, &[])?;
    let loaded = call(
        dm::Command::TableLoad,
        dm::READONLY_FLAG,
        std::slice::from_ref(target),
    )
    .and_then(|_| call(dm::Command::DevSuspend, 0, &[]));
    if let Err(e) = loaded {
        // Leave no half-made device behind for a debug shell to trip on.
        let _ = call(dm::Command::DevRemove, 0, &[]);
        return Err(e);
    }
    let (major, minor) = dm::split_dev(created.dev);
    let node = format!("/dev/mapper/{name}");
    mknod_block(Path::new(&node), major, minor)?;
    Ok(node)
}

/// A block device node (devtmpfs makes `/dev/dm-N`; the named node under
/// /dev/mapper is what udev would add).
pub fn mknod_block(path: &Path, major: u32, minor: u32) -> Result<()> {
    let what = || format!("mknod {} b {major} {minor}", path.display());
    let r = rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        FileType::BlockDevice,
        Mode::from_raw_mode(0o600),
        rustix::fs::makedev(major, minor),
    );
    match r {
        Err(rustix::io::Errno::EXIST) => Ok(()),
        r => ctx(r, what),
    }
}

/// `ln -s target link` (replacing nothing: an existing link is kept).
pub fn symlink(target: &str, link: &Path) -> Result<()> {
    if let Some(dir) = link.parent() {
        mkdir_p(dir)?;
    }
    match std::os::unix::fs::symlink(target, link) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        r => ctx(r, || format!("ln -s {target} {}", link.display())),
    }
}

/// Runs `program args...` with stdin closed (it must not prompt) and
/// returns its exit status; kills it after `limit`. A signal counts as
/// status 128 + signal, as a shell reports it.
pub fn run_bounded(program: &Path, args: &[&str], limit: Duration) -> Result<i32, String> {
    use std::os::unix::process::ExitStatusExt;
    let what = || format!("{} {}", program.display(), args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| format!("{}: {e}", what()))?;
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return Ok(st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0))),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{}: killed after {} s", what(), limit.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(format!("{}: {e}", what())),
        }
    }
}

/// `len` bytes of a device from byte `offset` (fewer at its end).
pub fn read_at(device: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
    use std::io::{Seek, SeekFrom};
    let what = || format!("read {len} bytes at {offset} of {device}");
    let mut f = ctx(File::open(device), what)?;
    ctx(f.seek(SeekFrom::Start(offset)), what)?;
    let mut buf = Vec::with_capacity(len);
    ctx(f.take(len as u64).read_to_end(&mut buf), what)?;
    Ok(buf)
}

/// Writes `data` to `path` (creating its directories), synced.
pub fn write_file(path: &Path, data: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        mkdir_p(dir)?;
    }
    let what = || format!("write {}", path.display());
    let mut f = ctx(File::create(path), what)?;
    ctx(f.write_all(data), what)?;
    ctx(f.sync_all(), what)
}

/// One line into the kernel log (`/dev/kmsg`, level "crit"), so a
/// journal or `dmesg` keeps it after the console scrolled. Best effort.
pub fn kmsg(line: &str) {
    if let Ok(mut k) = std::fs::OpenOptions::new().write(true).open("/dev/kmsg") {
        let _ = k.write_all(format!("<2>{line}\n").as_bytes());
    }
}

/// `mount --bind`.
pub fn bind(source: &Path, target: &Path) -> Result<()> {
    ctx(rustix::mount::mount_bind(source, target), || {
        format!("mount --bind {} {}", source.display(), target.display())
    })
}

/// `mount --move`.
pub fn move_mount(source: &Path, target: &Path) -> Result<()> {
    ctx(rustix::mount::mount_move(source, target), || {
        format!("mount --move {} {}", source.display(), target.display())
    })
}

/// ramfs and tmpfs: what an initramfs root can be.
fn root_is_initramfs() -> bool {
    const RAMFS_MAGIC: i64 = 0x8584_58f6;
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    rustix::fs::statfs("/").is_ok_and(|s| {
        // f_type is i64 here but narrower on some architectures.
        #[allow(clippy::unnecessary_cast)]
        let t = s.f_type as i64;
        t == RAMFS_MAGIC || t == TMPFS_MAGIC
    })
}

/// Deletes the files of the initramfs (what `switch_root` in busybox and
/// util-linux does), never crossing into another filesystem, so the memory
/// they hold is freed. Returns how many entries could not be removed.
fn delete_initramfs() -> usize {
    use std::os::unix::fs::MetadataExt;
    fn walk(dir: &Path, dev: u64, failed: &mut usize) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            *failed += 1;
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            let Ok(m) = std::fs::symlink_metadata(&p) else {
                *failed += 1;
                continue;
            };
            if m.dev() != dev {
                continue; // a mount point (the new root)
            }
            let r = if m.is_dir() {
                walk(&p, dev, failed);
                std::fs::remove_dir(&p)
            } else {
                std::fs::remove_file(&p)
            };
            if r.is_err() {
                *failed += 1;
            }
        }
    }
    let Ok(root) = std::fs::metadata("/") else {
        return 1;
    };
    let mut failed = 0;
    walk(Path::new("/"), root.dev(), &mut failed);
    failed
}

/// busybox-style `switch_root new_root init args...`: only returns on error.
/// The initramfs is deleted only when we are PID 1 on a ramfs/tmpfs root,
/// so running this anywhere else cannot wipe a real disk.
pub fn switch_root(new_root: &Path, init: &Path, args: Vec<OsString>) -> SysError {
    if is_pid1() && root_is_initramfs() {
        let failed = delete_initramfs();
        if failed > 0 {
            say(&format!("{failed} initramfs entries could not be deleted"));
        }
    }
    let err = |what: String| move |e| SysError { what, source: e };
    let steps = || -> Result<()> {
        rustix::process::chdir(new_root)
            .map_err(io::Error::from)
            .map_err(err(format!("chdir {}", new_root.display())))?;
        rustix::mount::mount_move(".", "/")
            .map_err(io::Error::from)
            .map_err(err(format!("mount --move {} /", new_root.display())))?;
        rustix::process::chroot(".")
            .map_err(io::Error::from)
            .map_err(err("chroot .".into()))?;
        rustix::process::chdir("/")
            .map_err(io::Error::from)
            .map_err(err("chdir /".into()))
    };
    if let Err(e) = steps() {
        return e;
    }
    let e = Command::new(init).args(args).exec();
    SysError {
        what: format!("exec {}", init.display()),
        source: e,
    }
}

/// Replaces this process with `/bin/sh` on the console (debug builds only).
#[cfg(feature = "debug-shell")]
pub fn exec_shell() -> SysError {
    let sh = std::path::PathBuf::from("/bin/sh");
    let e = Command::new(&sh).exec();
    SysError {
        what: format!("exec {}", sh.display()),
        source: e,
    }
}

/// Syncs and restarts the machine. If the kernel refuses, exits: PID 1
/// exiting makes the kernel panic, and `panic=N` reboots from there.
pub fn reboot() -> ! {
    rustix::fs::sync();
    let r = rustix::system::reboot(rustix::system::RebootCommand::Restart);
    say_failed(&format!("reboot(2): {r:?}; exiting so the kernel panics"));
    std::process::exit(1)
}

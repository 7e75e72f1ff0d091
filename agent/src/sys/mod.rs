//! The edge: opening slot devices, aligned writes, fsync, atomic files.
//!
//! Everything here touches the outside world; the rest of the agent takes
//! what it needs as arguments.

pub mod journal;
pub mod systemd;

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Alignment for direct I/O buffers and offsets.
pub const ALIGN: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum SysError {
    #[error("slot device {device}: {what}: {source}")]
    Io {
        device: PathBuf,
        what: &'static str,
        source: io::Error,
    },
    #[error("slot device {device} is a {kind}; expected a block device or a regular file")]
    Kind { device: PathBuf, kind: &'static str },
    #[error("slot file {0} does not exist and its size is not configured")]
    NoSize(PathBuf),
    #[error("slot device {device} is busy (mounted, or held by device-mapper or another program): {source}")]
    Busy { device: PathBuf, source: io::Error },
    #[error("slot device {device} is {why}; refusing to write it")]
    Protected { device: PathBuf, why: String },
    #[error("slot device {device} holds {actual} bytes, less than the configured {configured}")]
    Smaller {
        device: PathBuf,
        actual: u64,
        configured: u64,
    },
}

/// Writes `data` to `path` so that a crash leaves either the old or the new
/// contents: temp file, fsync, rename, fsync of the directory. The temp
/// file has a random name and is created exclusively, without following
/// symlinks, with mode 0600: nobody else can prepare it, swap it, or read
/// the new contents while they are written.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = parent_dir(path);
    let seed = random_seed()?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", hex::encode(&seed[..8])));
    let tmp = PathBuf::from(tmp);
    let written = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    sync_renamed(path, dir)
}

/// Renames `from` to `to` (in one directory) and makes the result durable
/// on every filesystem the agent writes to, FAT included.
pub fn rename_durable(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::rename(from, to)?;
    sync_renamed(to, parent_dir(to))
}

/// The directory holding `path` (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// After a rename to `path` in `dir`: fsync the file under its new name,
/// then the directory. Linux's vfat gives a new name a directory entry with
/// no data (first cluster 0, size 0), or leaves an existing name's entry
/// pointing at the old clusters, and fills in the renamed file's cluster
/// and size only when its inode is written back — which a directory fsync
/// does not do, and writeback may not do for 30 s. A power cut in that
/// window left an empty systemd-boot entry (QEMU scenario 15d); the file's
/// own fsync writes its entry.
fn sync_renamed(path: &Path, dir: &Path) -> io::Result<()> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?
        .sync_all()?;
    File::open(dir)?.sync_all()
}

/// Creates `dir` (and its parents) if needed and makes sure only its
/// owner can enter it (mode 0700): what it holds is nobody else's business,
/// and a lock in it cannot be taken by anyone else.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let m = std::fs::symlink_metadata(dir)?;
    if !m.is_dir() {
        return Err(io::Error::other("not a directory"));
    }
    if m.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Opens (creating, mode 0600) a lock file without following symlinks.
pub fn open_lock_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// Reads until `buf` is full or the input ends; returns the bytes read
/// (fewer than `buf.len()` only at the end).
pub fn read_full(src: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match src.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// A buffer whose usable window starts at an `ALIGN` boundary, as O_DIRECT
/// needs. Safe code: the window is found with `align_offset`.
pub struct AlignedBuf {
    raw: Vec<u8>,
    off: usize,
    cap: usize,
}

impl AlignedBuf {
    pub fn new(cap: usize) -> AlignedBuf {
        let raw = vec![0u8; cap + ALIGN];
        let off = raw.as_ptr().align_offset(ALIGN);
        AlignedBuf { raw, off, cap }
    }

    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.raw[self.off..self.off + self.cap]
    }

    pub fn bytes(&self) -> &[u8] {
        &self.raw[self.off..self.off + self.cap]
    }

    pub fn capacity(&self) -> usize {
        self.cap
    }
}

/// The device number of `path` if it is a block device.
pub fn block_dev(path: &Path) -> io::Result<Option<u64>> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path)?;
    Ok(m.file_type().is_block_device().then(|| m.rdev()))
}

fn dev_name(dev: u64) -> String {
    format!("{}:{}", libc::major(dev), libc::minor(dev))
}

fn parse_dev(s: &str) -> Option<u64> {
    let (a, b) = s.trim().split_once(':')?;
    Some(libc::makedev(a.parse().ok()?, b.parse().ok()?))
}

/// What a device is built on, from sysfs: its device-mapper (or md)
/// slaves and, for a partition, the disk it is on; recursively.
fn underlying(sys_block: &Path, dev: u64, out: &mut std::collections::BTreeSet<u64>) {
    if !out.insert(dev) {
        return;
    }
    let node = sys_block.join(dev_name(dev));
    if let Ok(rd) = std::fs::read_dir(node.join("slaves")) {
        for e in rd.flatten() {
            if let Some(d) = std::fs::read_to_string(e.path().join("dev"))
                .ok()
                .and_then(|t| parse_dev(&t))
            {
                underlying(sys_block, d, out);
            }
        }
    }
    // /sys/dev/block/M:N of a partition links into its disk's directory.
    if node.join("partition").exists() {
        if let Some(d) = std::fs::canonicalize(&node)
            .ok()
            .and_then(|p| std::fs::read_to_string(p.parent()?.join("dev")).ok())
            .and_then(|t| parse_dev(&t))
        {
            underlying(sys_block, d, out);
        }
    }
}

/// The block devices an install must never write, with why: what `/` is
/// mounted from and everything it is built on (dm-verity's data device,
/// the disk of a partition), and the booted group's devices and theirs.
pub fn protected_devices(booted: &[PathBuf]) -> Vec<(u64, String)> {
    use std::os::unix::fs::MetadataExt;
    let sys_block = Path::new("/sys/dev/block");
    let mut out = Vec::new();
    let mut add = |dev: u64, why: String| {
        let mut set = std::collections::BTreeSet::new();
        underlying(sys_block, dev, &mut set);
        for d in set {
            out.push((d, why.clone()));
        }
    };
    if let Ok(m) = std::fs::metadata("/") {
        add(
            m.dev(),
            format!("what / is mounted from ({})", dev_name(m.dev())),
        );
    }
    for p in booted {
        if let Ok(Some(d)) = block_dev(p) {
            add(
                d,
                format!("part of the booted slot group ({})", p.display()),
            );
        }
    }
    out
}

/// Reads a slot (the booted one, for an adaptive update) without writing
/// or claiming it: read-only, positioned reads, a regular file or a block
/// device only (never a FIFO or a character device).
pub struct SlotReader {
    device: PathBuf,
    file: File,
    len: u64,
}

impl SlotReader {
    pub fn open(device: &Path) -> Result<SlotReader, SysError> {
        let err = |what, source| SysError::Io {
            device: device.to_path_buf(),
            what,
            source,
        };
        let file = open_regular_or_block(device).map_err(|e| match e {
            OpenRegularError::Kind(kind) => SysError::Kind {
                device: device.to_path_buf(),
                kind,
            },
            OpenRegularError::Io(e) => err("open", e),
        })?;
        let mut f = &file;
        let len = f.seek(SeekFrom::End(0)).map_err(|e| err("size", e))?;
        Ok(SlotReader {
            device: device.to_path_buf(),
            file,
            len,
        })
    }

    /// The device's (or file's) length.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn device(&self) -> &Path {
        &self.device
    }

    /// Fills `buf` from `offset`; short only at the end.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, SysError> {
        use std::os::unix::fs::FileExt;
        let mut n = 0;
        while n < buf.len() {
            match self.file.read_at(&mut buf[n..], offset + n as u64) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(SysError::Io {
                        device: self.device.clone(),
                        what: "read",
                        source,
                    })
                }
            }
        }
        Ok(n)
    }

    /// Reads `len` bytes from `offset` as a stream.
    pub fn stream(&self, offset: u64, len: u64) -> impl Read + '_ {
        struct At<'a> {
            r: &'a SlotReader,
            pos: u64,
            end: u64,
        }
        impl Read for At<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let want = buf.len().min((self.end - self.pos) as usize);
                let n = self
                    .r
                    .read_at(self.pos, &mut buf[..want])
                    .map_err(io::Error::other)?;
                self.pos += n as u64;
                Ok(n)
            }
        }
        let end = offset.saturating_add(len).min(self.len);
        At {
            r: self,
            pos: offset.min(end),
            end,
        }
    }
}

/// An open slot, ready for positioned writes.
pub struct SlotWriter {
    device: PathBuf,
    /// For a block device: an `O_EXCL` open held while writing, so the
    /// kernel refuses a device that is mounted or held, and refuses to
    /// mount it meanwhile.
    _claim: Option<File>,
    /// Opened with O_DIRECT when the filesystem or device supports it.
    direct: Option<File>,
    buffered: File,
    capacity: u64,
    pub is_block: bool,
}

impl SlotWriter {
    /// Learns a slot's capacity without changing anything: the configured
    /// size, checked against a block device's real size; a missing regular
    /// file is fine when its size is configured.
    pub fn probe(device: &Path, configured: Option<u64>) -> Result<(u64, bool), SysError> {
        let err = |what, source| SysError::Io {
            device: device.to_path_buf(),
            what,
            source,
        };
        let (is_block, actual) = match std::fs::metadata(device) {
            Ok(m) if m.file_type().is_block_device() => {
                let mut f = File::open(device).map_err(|e| err("open", e))?;
                (
                    true,
                    Some(f.seek(SeekFrom::End(0)).map_err(|e| err("size", e))?),
                )
            }
            Ok(m) if m.is_file() => (false, Some(m.len())),
            Ok(m) => {
                let kind = if m.is_dir() {
                    "directory"
                } else {
                    "special file"
                };
                return Err(SysError::Kind {
                    device: device.to_path_buf(),
                    kind,
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => (false, None),
            Err(e) => return Err(err("stat", e)),
        };
        let capacity = match (is_block, configured, actual) {
            (true, Some(c), Some(a)) if c > a => {
                return Err(SysError::Smaller {
                    device: device.to_path_buf(),
                    actual: a,
                    configured: c,
                });
            }
            (_, Some(c), _) => c,
            (_, None, Some(a)) => a,
            (_, None, None) => return Err(SysError::NoSize(device.to_path_buf())),
        };
        Ok((capacity, is_block))
    }

    /// Opens a slot device for writing. A regular file that does not exist
    /// is created empty; `configured` is the most it may hold, and
    /// [`SlotWriter::fit`] gives it the image's length once written (a
    /// kernel or initrd on the ESP, a file-backed slot for tests).
    pub fn open(device: &Path, configured: Option<u64>) -> Result<SlotWriter, SysError> {
        let (capacity, is_block) = Self::probe(device, configured)?;
        let err = |what, source| SysError::Io {
            device: device.to_path_buf(),
            what,
            source,
        };
        let claim = if is_block {
            Some(
                OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_EXCL)
                    .open(device)
                    .map_err(|source| match source.raw_os_error() {
                        Some(libc::EBUSY) => SysError::Busy {
                            device: device.to_path_buf(),
                            source,
                        },
                        _ => err("open", source),
                    })?,
            )
        } else {
            None
        };
        let buffered = OpenOptions::new()
            .write(true)
            .read(true)
            .create(!is_block)
            .truncate(false)
            .open(device)
            .map_err(|e| err("open", e))?;
        let direct = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(device)
            .ok();
        Ok(SlotWriter {
            device: device.to_path_buf(),
            _claim: claim,
            direct,
            buffered,
            capacity,
            is_block,
        })
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    pub fn device(&self) -> &Path {
        &self.device
    }

    /// Writes at `offset`. Aligned, whole-block writes go through O_DIRECT.
    pub fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), SysError> {
        let aligned = offset.is_multiple_of(ALIGN as u64)
            && data.len().is_multiple_of(ALIGN)
            && data.as_ptr().align_offset(ALIGN) == 0;
        let r = match (&self.direct, aligned) {
            (Some(f), true) => match f.write_all_at(data, offset) {
                // Some filesystems accept O_DIRECT at open but not at write.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    self.direct = None;
                    self.buffered.write_all_at(data, offset)
                }
                r => r,
            },
            _ => self.buffered.write_all_at(data, offset),
        };
        r.map_err(|source| SysError::Io {
            device: self.device.clone(),
            what: "write",
            source,
        })
    }

    /// Gives a regular file exactly `len` bytes: nothing of an earlier,
    /// longer image may follow the new one (an initrd with stale bytes
    /// after it is unpacked with them). A block device keeps its size.
    pub fn fit(&self, len: u64) -> Result<(), SysError> {
        if self.is_block {
            return Ok(());
        }
        let err = |what, source| SysError::Io {
            device: self.device.clone(),
            what,
            source,
        };
        let now = self.buffered.metadata().map_err(|e| err("stat", e))?.len();
        if now != len {
            self.buffered.set_len(len).map_err(|e| err("truncate", e))?;
        }
        Ok(())
    }

    /// Flushes everything written to stable storage.
    pub fn sync(&self) -> Result<(), SysError> {
        let err = |source| SysError::Io {
            device: self.device.clone(),
            what: "fsync",
            source,
        };
        if let Some(f) = &self.direct {
            f.sync_all().map_err(err)?;
        }
        self.buffered.sync_all().map_err(err)
    }
}

/// The effective user id of this process.
#[allow(unsafe_code)]
pub fn euid() -> u32 {
    // SAFETY: geteuid(2) takes no arguments, cannot fail and touches no
    // memory of ours.
    unsafe { libc::geteuid() }
}

/// Whether a file that decides trust (configuration, a key) may be
/// believed: owned by root or by the user running tandem, and writable by
/// nobody else. `Err` says why not. Symlinks are followed: the target is
/// what is read.
pub fn check_trusted_file(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).map_err(|e| e.to_string())?;
    let (uid, me) = (m.uid(), euid());
    if uid != 0 && uid != me {
        return Err(format!(
            "owned by uid {uid}, neither root nor the user running tandem ({me})"
        ));
    }
    let mode = m.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(format!(
            "mode {mode:04o} lets group or others write it (chmod go-w)"
        ));
    }
    Ok(())
}

/// [`check_trusted_file`] for a directory and every regular file in it.
pub fn check_trusted_dir(dir: &Path) -> Result<(), (PathBuf, String)> {
    check_trusted_file(dir).map_err(|e| (dir.to_path_buf(), e))?;
    let rd = std::fs::read_dir(dir).map_err(|e| (dir.to_path_buf(), e.to_string()))?;
    for e in rd {
        let p = e.map_err(|e| (dir.to_path_buf(), e.to_string()))?.path();
        if p.is_file() {
            check_trusted_file(&p).map_err(|e| (p.clone(), e))?;
        }
    }
    Ok(())
}

/// Why [`open_regular`] did not open a file.
#[derive(Debug)]
pub enum OpenRegularError {
    /// It is not a regular file but this.
    Kind(&'static str),
    Io(io::Error),
}

impl From<io::Error> for OpenRegularError {
    fn from(e: io::Error) -> Self {
        OpenRegularError::Io(e)
    }
}

fn kind_of(t: std::fs::FileType) -> Option<&'static str> {
    Some(if t.is_file() {
        return None;
    } else if t.is_dir() {
        "directory"
    } else if t.is_fifo() {
        "FIFO"
    } else if t.is_char_device() {
        "character device"
    } else if t.is_block_device() {
        "block device"
    } else if t.is_socket() {
        "socket"
    } else if t.is_symlink() {
        "symbolic link"
    } else {
        "special file"
    })
}

/// Opens `path` for reading only if it is a regular file, deciding that
/// before anything is opened for real: an `O_PATH` descriptor is looked
/// at first (that runs no driver's open, so `/dev/watchdog` is not armed
/// and a FIFO does not block), then the same inode is opened through
/// `/proc/self/fd`. With `follow == false` a symlink is refused too.
pub fn open_regular(path: &Path, follow: bool) -> Result<File, OpenRegularError> {
    open_checked(path, follow, false)
}

/// [`open_regular`], a block device allowed too (read-only; following
/// links, as `/dev/disk/by-partlabel/…` are).
pub fn open_regular_or_block(path: &Path) -> Result<File, OpenRegularError> {
    open_checked(path, true, true)
}

fn open_checked(path: &Path, follow: bool, block: bool) -> Result<File, OpenRegularError> {
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::io::AsRawFd;
    let kind_of = |t: std::fs::FileType| {
        if block && t.is_block_device() {
            None
        } else {
            kind_of(t)
        }
    };
    let flags = libc::O_PATH | if follow { 0 } else { libc::O_NOFOLLOW };
    let handle = OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)?;
    let m = handle.metadata()?;
    if let Some(kind) = kind_of(m.file_type()) {
        return Err(OpenRegularError::Kind(kind));
    }
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(format!("/proc/self/fd/{}", handle.as_raw_fd()))?;
    let n = f.metadata()?;
    if (n.dev(), n.ino()) != (m.dev(), m.ino()) || kind_of(n.file_type()).is_some() {
        return Err(OpenRegularError::Io(io::Error::other(
            "the file changed while it was opened",
        )));
    }
    Ok(f)
}

/// Checks that an already open file (e.g. a descriptor a D-Bus client
/// passed) is a regular file.
pub fn require_regular(f: &File) -> Result<(), OpenRegularError> {
    match kind_of(f.metadata()?.file_type()) {
        Some(kind) => Err(OpenRegularError::Kind(kind)),
        None => Ok(()),
    }
}

/// Reads the kernel command line (or the file configured in its place).
pub fn read_cmdline(path: &Path) -> io::Result<String> {
    std::fs::read_to_string(path)
}

/// Reboots through systemd when it runs; otherwise syncs and forces the
/// reboot (`reboot -f`: a plain init such as a busybox script would
/// ignore the polite request).
pub fn reboot() -> io::Result<()> {
    match systemd::logind_reboot() {
        Ok(()) => return Ok(()),
        Err(e) => tracing::info!("logind reboot not available ({e}); falling back"),
    }
    let (cmd, args): (&str, &[&str]) = if Path::new("/run/systemd/system").exists() {
        ("systemctl", &["reboot"])
    } else {
        let _ = std::process::Command::new("sync").status();
        ("reboot", &["-f"])
    };
    let status = std::process::Command::new(cmd).args(args).status()?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!("{cmd} exited with {status}")))
    }
}

/// What a program run by [`run_with_timeout`] left behind.
pub struct Finished {
    /// `None` when it was killed at the timeout.
    pub status: Option<std::process::ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

/// How much of a helper's stdout and stderr is kept each (the rest is
/// read and dropped, so the program never blocks on a full pipe).
pub const OUTPUT_CAP: usize = 64 << 10;

/// The only environment a helper or health check gets.
pub const HELPER_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Runs a program (an absolute path) without a shell, stdin closed, in its
/// own process group, with a clean environment (only `PATH` and
/// `LANG=C.UTF-8`); drains its output on threads, keeping at most
/// [`OUTPUT_CAP`] bytes of each, and kills the whole group at `timeout`.
/// `tick` is called while waiting (the watchdog is petted there).
pub fn run_with_timeout(
    program: &Path,
    args: &[&str],
    timeout: std::time::Duration,
    tick: &mut dyn FnMut(),
) -> io::Result<Finished> {
    use std::io::Read;
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    if !program.is_absolute() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not an absolute path", program.display()),
        ));
    }
    let mut child = Command::new(program)
        .args(args)
        .env_clear()
        .env("PATH", HELPER_PATH)
        .env("LANG", "C.UTF-8")
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let drain = |r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut kept = Vec::new();
            let mut r = r;
            let _ = r.by_ref().take(OUTPUT_CAP as u64).read_to_end(&mut kept);
            let _ = io::copy(&mut r, &mut io::sink());
            String::from_utf8_lossy(&kept).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("piped")));
    let err = drain(Box::new(child.stderr.take().expect("piped")));
    let start = std::time::Instant::now();
    let status = loop {
        tick();
        match child.try_wait()? {
            Some(s) => break Some(s),
            None if start.elapsed() >= timeout => {
                kill_group(child.id());
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            None => std::thread::sleep(std::time::Duration::from_millis(10)),
        }
    };
    Ok(Finished {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

/// Sends SIGKILL to a whole process group (a child started with
/// `process_group(0)`), so grandchildren holding its pipes die too.
#[allow(unsafe_code)]
fn kill_group(pgid: u32) {
    let Ok(pgid) = i32::try_from(pgid) else {
        return;
    };
    if pgid <= 1 {
        return;
    }
    // SAFETY: kill(2) takes plain integers and touches no memory of ours; a
    // negative pid addresses the process group we created for the child.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}

/// A hardware watchdog device, petted while trial-boot checks run.
pub struct Watchdog {
    file: File,
    last: std::time::Instant,
}

impl Watchdog {
    pub fn open(path: &Path) -> io::Result<Watchdog> {
        let file = OpenOptions::new().write(true).open(path)?;
        let mut w = Watchdog {
            file,
            last: std::time::Instant::now(),
        };
        w.file.write_all(b"1")?;
        Ok(w)
    }

    /// Pets the watchdog, at most once a second.
    pub fn pet(&mut self) {
        if self.last.elapsed() >= std::time::Duration::from_secs(1) {
            let _ = self.file.write_all(b"1");
            self.last = std::time::Instant::now();
        }
    }

    /// Disarms it with the magic close character before closing.
    pub fn close_clean(mut self) -> io::Result<()> {
        self.file.write_all(b"V")?;
        self.file.sync_all().or(Ok(()))
    }
}

/// This machine's id for a fleet server: `/etc/machine-id`, else the host
/// name (the first that is set).
pub fn machine_id() -> Option<String> {
    ["/etc/machine-id", "/proc/sys/kernel/hostname"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|t| t.trim().to_string())
        .find(|t| !t.is_empty())
}

/// Current time as Unix seconds.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// 32 bytes from the operating system's random source.
pub fn random_seed() -> io::Result<[u8; 32]> {
    use std::io::Read;
    let mut b = [0u8; 32];
    File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b)
}

/// Creates `path` with mode 0600 and the given contents; fails if it exists.
pub fn write_private_new(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_buffer() {
        let mut b = AlignedBuf::new(8192);
        assert_eq!(b.bytes_mut().as_ptr().align_offset(ALIGN), 0);
        assert_eq!(b.bytes().len(), 8192);
    }

    #[test]
    fn file_slot_created_empty_written_and_fitted() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("slot");
        assert!(matches!(
            SlotWriter::open(&p, None),
            Err(SysError::NoSize(_))
        ));
        let mut w = SlotWriter::open(&p, Some(3 * 4096)).unwrap();
        assert_eq!(w.capacity(), 3 * 4096);
        let mut b = AlignedBuf::new(4096);
        b.bytes_mut().fill(7);
        w.write_at(4096, b.bytes()).unwrap();
        w.write_at(8192, &[1, 2, 3]).unwrap();
        w.sync().unwrap();
        // Created empty: it holds what was written, not the capacity.
        let data = std::fs::read(&p).unwrap();
        assert_eq!(data.len(), 8195);
        assert!(data[..4096].iter().all(|&x| x == 0));
        assert!(data[4096..8192].iter().all(|&x| x == 7));
        assert_eq!(&data[8192..8195], &[1, 2, 3]);
        w.fit(5000).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 5000);
    }

    #[test]
    fn the_root_devices_are_protected() {
        use std::os::unix::fs::MetadataExt;
        let root = std::fs::metadata("/").unwrap().dev();
        let p = protected_devices(&[]);
        assert!(
            p.iter()
                .any(|(d, why)| *d == root && why.contains("what / is mounted from")),
            "{p:?}"
        );
        assert_eq!(parse_dev("253:1\n"), Some(libc::makedev(253, 1)));
        assert_eq!(parse_dev("x"), None);
    }

    #[test]
    fn directory_is_not_a_slot() {
        let d = tempfile::tempdir().unwrap();
        assert!(matches!(
            SlotWriter::open(d.path(), Some(1)),
            Err(SysError::Kind { .. })
        ));
    }

    #[test]
    fn helpers_get_a_clean_environment_and_capped_output() {
        // cargo hands its test processes CARGO_* variables: none may reach
        // the helper.
        let f = run_with_timeout(
            Path::new("/bin/sh"),
            &["-c", "env; head -c 200000 /dev/zero | tr '\\0' a"],
            std::time::Duration::from_secs(10),
            &mut || {},
        )
        .unwrap();
        assert!(f.status.unwrap().success());
        if std::env::var_os("CARGO_MANIFEST_DIR").is_some() {
            assert!(
                !f.stdout.contains("CARGO_MANIFEST_DIR"),
                "{}",
                &f.stdout[..200]
            );
        }
        assert!(f.stdout.contains("PATH=/usr/local/sbin"));
        assert_eq!(f.stdout.len(), OUTPUT_CAP);
        let e = run_with_timeout(
            Path::new("sh"),
            &[],
            std::time::Duration::from_secs(1),
            &mut || {},
        )
        .err()
        .unwrap();
        assert!(e.to_string().contains("not an absolute path"), "{e}");
    }

    #[test]
    fn watchdog_pets_and_closes_with_magic() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("watchdog");
        std::fs::write(&p, "").unwrap();
        let mut w = Watchdog::open(&p).unwrap();
        w.pet(); // throttled: too soon after open
        w.last -= std::time::Duration::from_secs(2);
        w.pet();
        w.close_clean().unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "11V");
    }

    #[test]
    fn trusted_files_are_owned_by_us_and_written_by_nobody_else() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("k.pub");
        std::fs::write(&p, "x").unwrap();
        for (mode, ok) in [(0o644, true), (0o600, true), (0o664, false), (0o646, false)] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(check_trusted_file(&p).is_ok(), ok, "{mode:o}");
        }
        let e = check_trusted_file(&p).unwrap_err();
        assert!(e.contains("0646"), "{e}");
        assert!(check_trusted_dir(d.path()).is_err());
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        check_trusted_dir(d.path()).unwrap();
        if euid() == 0 {
            // Owned by someone else: nobody (65534).
            std::os::unix::fs::chown(&p, Some(65534), None).unwrap();
            let e = check_trusted_file(&p).unwrap_err();
            assert!(e.contains("uid 65534"), "{e}");
        }
    }

    #[test]
    fn atomic_write_replaces_privately() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // No temp file left behind, and none with a predictable name.
        let names: Vec<_> = std::fs::read_dir(d.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
        // A symlink planted at the old fixed temp name is never followed.
        let victim = d.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        std::os::unix::fs::symlink(&victim, d.path().join("f.tmp")).unwrap();
        write_atomic(&p, b"three").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
    }

    #[test]
    fn private_dirs_are_tightened() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("state");
        private_dir(&p).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&p), 0o700);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&p).unwrap();
        assert_eq!(mode(&p), 0o700);
        let l = p.join("lock");
        open_lock_file(&l).unwrap();
        assert_eq!(mode(&l), 0o600);
    }
}

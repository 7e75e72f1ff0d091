//! `/var` from the image: seeding what the data partition lacks
//! (docs/disk-layout.md, "/var across updates").
//!
//! The data partition's `var/` is bound over the image's `/var`, so
//! whatever the image ships there (the dpkg database, a package's empty
//! spool directory, a default state file) is hidden. On the first boot of
//! an image (its version differs from the one in the stamp file), before
//! the bind, every entry of the image's `/var` that does not exist on the
//! data partition is copied there — the way systemd's tmpfiles `C` lines
//! copy a factory tree. Nothing that exists is ever overwritten, merged or
//! removed: persistent data wins, and a directory that exists on both
//! sides is descended into to fill in what it lacks.
//!
//! Copied: directories, regular files and symlinks, with mode, owner and
//! (files) modification time. Skipped and reported: device nodes, FIFOs,
//! sockets. Extended attributes and ACLs are not copied.
//!
//! Power cuts: each file or symlink is created under a hidden temporary
//! name; once a batch of them is written, one `syncfs` makes them durable,
//! they are renamed into place, and a second `syncfs` makes the renames
//! durable, so a file is either absent or whole. The stamp is written last
//! (write, fsync, rename, fsync the directory); a cut before it repeats
//! the seeding at the next boot, which finds the entries already copied
//! and continues with the rest. Two flushes of the filesystem per batch,
//! not one fsync per file and directory: the debian image's 729 entries
//! took 9 s under QEMU with one each (docs/disk-layout.md).

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The stamp's name at the top of the data partition: the version of the
/// image `/var` was last seeded from.
pub const STAMP: &str = ".tandem-var-seeded";

/// Prefix of the temporary names (never in an image's `/var` otherwise).
const TMP_PREFIX: &str = ".tandem-seed.";

/// What [`run`] did, for the console.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The stamp names this image: nothing done.
    Unchanged,
    /// Entries copied (a new directory counts once, and so does each entry
    /// in it), and the paths (under `/var`) of special files left out.
    Seeded { copied: usize, skipped: Vec<String> },
}

/// Seeds `data` (the data partition's `var/`) from `image` (the slot's
/// `/var`, before the bind) unless `stamp` already names `version`. An
/// image without a version is seeded at every boot (it cannot be told
/// from the last one).
pub fn run(image: &Path, data: &Path, stamp: &Path, version: &str) -> io::Result<Outcome> {
    if !version.is_empty() {
        match fs::read_to_string(stamp) {
            Ok(s) if s.trim() == version => return Ok(Outcome::Unchanged),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    let mut copied = 0;
    let mut skipped = Vec::new();
    if fs::symlink_metadata(image).is_ok_and(|m| m.is_dir()) {
        let mut batch = Batch {
            fs: File::open(data)?,
            pending: Vec::new(),
        };
        fill(image, data, "", &mut copied, &mut skipped, &mut batch)?;
        batch.flush()?;
    }
    write_atomic(stamp, format!("{version}\n").as_bytes())?;
    Ok(Outcome::Seeded { copied, skipped })
}

/// Entries written under temporary names, not yet renamed into place.
struct Batch {
    /// Any file of the data filesystem, for `syncfs`.
    fs: File,
    /// (temporary name, final name)
    pending: Vec<(PathBuf, PathBuf)>,
}

/// Entries per batch: bounds the list (memory stays flat for any `/var`).
const BATCH: usize = 1024;

impl Batch {
    fn add(&mut self, tmp: PathBuf, dst: PathBuf) -> io::Result<()> {
        self.pending.push((tmp, dst));
        if self.pending.len() >= BATCH {
            self.flush()?;
        }
        Ok(())
    }

    /// Durable contents, then the renames, then durable renames.
    fn flush(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        rustix::fs::syncfs(&self.fs)?;
        for (tmp, dst) in self.pending.drain(..) {
            fs::rename(&tmp, &dst)?;
        }
        rustix::fs::syncfs(&self.fs)?;
        Ok(())
    }
}

/// Copies into `dst` each entry of `src` that `dst` lacks; descends into
/// directories both have.
fn fill(
    src: &Path,
    dst: &Path,
    rel: &str,
    copied: &mut usize,
    skipped: &mut Vec<String>,
    batch: &mut Batch,
) -> io::Result<()> {
    let mut names: Vec<_> = fs::read_dir(src)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    names.sort();
    for name in names {
        let (s, d) = (src.join(&name), dst.join(&name));
        let rel = format!("{rel}/{}", name.to_string_lossy());
        if name.to_string_lossy().starts_with(TMP_PREFIX) {
            continue;
        }
        let md = fs::symlink_metadata(&s)?;
        match fs::symlink_metadata(&d) {
            Ok(have) => {
                if md.is_dir() && have.is_dir() {
                    fill(&s, &d, &rel, copied, skipped, batch)?;
                }
                continue; // it exists: persistent data wins
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let t = md.file_type();
        if t.is_dir() {
            fs::create_dir(&d)?;
            std::os::unix::fs::chown(&d, Some(md.uid()), Some(md.gid()))?;
            fs::set_permissions(&d, fs::Permissions::from_mode(md.mode() & 0o7777))?;
            *copied += 1;
            fill(&s, &d, &rel, copied, skipped, batch)?;
        } else if t.is_file() || t.is_symlink() {
            let tmp = dst.join(format!("{TMP_PREFIX}{}", name.to_string_lossy()));
            let _ = fs::remove_file(&tmp); // a cut's leftover
            if t.is_file() {
                copy_file(&s, &tmp, &md)?;
            } else {
                std::os::unix::fs::symlink(fs::read_link(&s)?, &tmp)?;
                std::os::unix::fs::lchown(&tmp, Some(md.uid()), Some(md.gid()))?;
            }
            batch.add(tmp, d)?;
            *copied += 1;
        } else if t.is_block_device() || t.is_char_device() || t.is_fifo() || t.is_socket() {
            skipped.push(format!("/var{rel}"));
        }
    }
    Ok(())
}

/// `src` to `tmp` with its owner, mode and modification time (made
/// durable by the batch's `syncfs`).
fn copy_file(src: &Path, tmp: &Path, md: &fs::Metadata) -> io::Result<()> {
    let mut from = File::open(src)?;
    let mut to = File::create(tmp)?;
    io::copy(&mut from, &mut to)?;
    // chown first: it clears set-user-ID bits that a chmod then restores.
    std::os::unix::fs::fchown(&to, Some(md.uid()), Some(md.gid()))?;
    to.set_permissions(fs::Permissions::from_mode(md.mode() & 0o7777))?;
    to.set_modified(md.modified()?)
}

/// Write, fsync, rename, fsync the directory.
fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    if let Some(d) = path.parent() {
        File::open(d)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let (img, data) = (t.path().join("img/var"), t.path().join("data/var"));
        fs::create_dir_all(img.join("lib/dpkg/info")).unwrap();
        fs::write(img.join("lib/dpkg/status"), "Package: base\n").unwrap();
        fs::write(img.join("lib/dpkg/info/base.list"), "/usr\n").unwrap();
        fs::set_permissions(
            img.join("lib/dpkg/status"),
            fs::Permissions::from_mode(0o640),
        )
        .unwrap();
        fs::create_dir_all(img.join("spool/empty")).unwrap();
        fs::set_permissions(img.join("spool/empty"), fs::Permissions::from_mode(0o1777)).unwrap();
        std::os::unix::fs::symlink("../run/lock", img.join("lock")).unwrap();
        fs::create_dir_all(&data).unwrap();
        (t, img, data)
    }

    #[test]
    fn seeds_what_is_missing_and_keeps_what_is_there() {
        let (t, img, data) = tree();
        let stamp = t.path().join("data").join(STAMP);
        // Persistent data: an edited status file and an extra file.
        fs::create_dir_all(data.join("lib/dpkg")).unwrap();
        fs::write(data.join("lib/dpkg/status"), "Package: mine\n").unwrap();
        fs::write(data.join("lib/mine"), "keep").unwrap();
        let out = run(&img, &data, &stamp, "1.0.0").unwrap();
        assert_eq!(
            out,
            Outcome::Seeded {
                copied: 5, // dpkg/info, info/base.list, lock, spool, spool/empty
                skipped: vec![]
            }
        );
        assert_eq!(
            fs::read_to_string(data.join("lib/dpkg/status")).unwrap(),
            "Package: mine\n"
        );
        assert_eq!(fs::read_to_string(data.join("lib/mine")).unwrap(), "keep");
        assert_eq!(
            fs::read_to_string(data.join("lib/dpkg/info/base.list")).unwrap(),
            "/usr\n"
        );
        assert_eq!(
            fs::read_link(data.join("lock")).unwrap(),
            Path::new("../run/lock")
        );
        let mode = fs::metadata(data.join("spool/empty")).unwrap().mode() & 0o7777;
        assert_eq!(mode, 0o1777);
        assert_eq!(fs::read_to_string(&stamp).unwrap(), "1.0.0\n");
        // No temporary names left behind.
        assert!(fs::read_dir(data.join("lib/dpkg/info")).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with('.')));

        // The same image again: nothing done, even where the admin deleted.
        fs::remove_file(data.join("lib/dpkg/info/base.list")).unwrap();
        assert_eq!(
            run(&img, &data, &stamp, "1.0.0").unwrap(),
            Outcome::Unchanged
        );
        assert!(!data.join("lib/dpkg/info/base.list").exists());

        // A new image seeds again, only what is missing.
        fs::write(img.join("lib/dpkg/status"), "Package: base2\n").unwrap();
        let out = run(&img, &data, &stamp, "1.1.0").unwrap();
        assert_eq!(
            out,
            Outcome::Seeded {
                copied: 1,
                skipped: vec![]
            }
        );
        assert_eq!(
            fs::read_to_string(data.join("lib/dpkg/status")).unwrap(),
            "Package: mine\n"
        );
    }

    #[test]
    fn a_file_is_copied_whole_with_its_mode_and_time() {
        let (t, img, data) = tree();
        let stamp = t.path().join("data").join(STAMP);
        let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
        File::options()
            .write(true)
            .open(img.join("lib/dpkg/status"))
            .unwrap()
            .set_modified(when)
            .unwrap();
        run(&img, &data, &stamp, "1.0.0").unwrap();
        let md = fs::metadata(data.join("lib/dpkg/status")).unwrap();
        assert_eq!(md.mode() & 0o7777, 0o640);
        assert_eq!(md.modified().unwrap(), when);
        assert_eq!(
            fs::read_to_string(data.join("lib/dpkg/status")).unwrap(),
            "Package: base\n"
        );
    }

    #[test]
    fn a_cut_leftover_is_replaced_and_special_files_are_reported() {
        let (t, img, data) = tree();
        let stamp = t.path().join("data").join(STAMP);
        // A cut left a temporary file and no stamp.
        fs::create_dir_all(data.join("lib/dpkg")).unwrap();
        fs::write(data.join("lib/dpkg/.tandem-seed.status"), "Pack").unwrap();
        let fifo = img.join("lib/fifo");
        let ok = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        let Outcome::Seeded { skipped, .. } = run(&img, &data, &stamp, "1.0.0").unwrap() else {
            panic!("not seeded")
        };
        assert_eq!(
            fs::read_to_string(data.join("lib/dpkg/status")).unwrap(),
            "Package: base\n"
        );
        assert!(!data.join("lib/dpkg/.tandem-seed.status").exists());
        if ok {
            assert_eq!(skipped, vec!["/var/lib/fifo".to_string()]);
            assert!(!data.join("lib/fifo").exists());
        }
    }

    /// More entries than a batch holds: several flushes, every file in
    /// place and whole, no temporary name left.
    #[test]
    fn many_entries_go_in_batches() {
        let t = tempfile::tempdir().unwrap();
        let (img, data) = (t.path().join("img/var"), t.path().join("data/var"));
        let n = 2 * BATCH + 100;
        for i in 0..n {
            let d = img.join(format!("d{}", i % 7));
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join(format!("f{i}")), format!("{i}\n")).unwrap();
        }
        fs::create_dir_all(&data).unwrap();
        let stamp = t.path().join("data").join(STAMP);
        let out = run(&img, &data, &stamp, "1.0.0").unwrap();
        assert_eq!(
            out,
            Outcome::Seeded {
                copied: n + 7,
                skipped: vec![]
            }
        );
        for i in 0..n {
            let f = data.join(format!("d{}/f{i}", i % 7));
            assert_eq!(fs::read_to_string(&f).unwrap(), format!("{i}\n"), "{f:?}");
        }
        for d in 0..7 {
            let names = fs::read_dir(data.join(format!("d{d}"))).unwrap();
            assert!(names
                .map(|e| e.unwrap().file_name())
                .all(|n| !n.to_string_lossy().starts_with(TMP_PREFIX)));
        }
    }

    #[test]
    fn no_image_var_and_no_version() {
        let t = tempfile::tempdir().unwrap();
        let data = t.path().join("var");
        fs::create_dir(&data).unwrap();
        let stamp = t.path().join(STAMP);
        let none = t.path().join("absent");
        let seeded = Outcome::Seeded {
            copied: 0,
            skipped: vec![],
        };
        assert_eq!(run(&none, &data, &stamp, "1.0.0").unwrap(), seeded);
        // Without a version every boot seeds (it cannot tell images apart).
        assert_eq!(run(&none, &data, &stamp, "").unwrap(), seeded);
        assert_eq!(run(&none, &data, &stamp, "").unwrap(), seeded);
    }
}

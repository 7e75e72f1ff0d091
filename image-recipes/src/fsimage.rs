//! The slot image: a filesystem (squashfs gzip or ext4) padded to 4 KiB,
//! followed by its dm-verity hash tree (`veritysetup format` format).

use std::path::Path;

use tandem::bundle::manifest::Verity;

use crate::derive::{derive, derive_uuid};
use crate::recipe::{Filesystem, Recipe};
use crate::tool::{run, run_env, BuildError};

pub const BLOCK: u64 = 4096;

/// Builds the filesystem from `stage` into `out` and appends the verity
/// tree when the recipe asks. Returns the verity parameters.
pub fn make(
    r: &Recipe,
    stage: &Path,
    out: &Path,
    seed: &str,
    epoch: u64,
) -> Result<Option<Verity>, BuildError> {
    let _ = std::fs::remove_file(out);
    let o = out.display().to_string();
    let s = stage.display().to_string();
    let e = epoch.to_string();
    match r.rootfs.filesystem {
        Filesystem::Squashfs => {
            let mut args = vec![
                s.as_str(),
                o.as_str(),
                "-comp",
                "gzip",
                "-noappend",
                "-no-xattrs",
                "-quiet",
                "-all-time",
                &e,
                "-mkfs-time",
                &e,
            ];
            // As root the stage carries the image's real owners (an OCI
            // base has non-root ones); otherwise they are the builder's,
            // so everything becomes root's.
            if !crate::tool::is_root() {
                args.push("-all-root");
            }
            // mksquashfs refuses SOURCE_DATE_EPOCH together with explicit times.
            run_env(
                None,
                "mksquashfs",
                &args,
                &[("SOURCE_DATE_EPOCH", String::new())],
            )?;
        }
        Filesystem::Ext4 => {
            let size = dir_size(stage)? * 3 / 2 + (16 << 20);
            let f = std::fs::File::create(out).map_err(|err| BuildError::io(out, err))?;
            f.set_len(size.next_multiple_of(BLOCK))
                .map_err(|err| BuildError::io(out, err))?;
            let uuid = derive_uuid(seed, "ext4");
            run_env(
                None,
                "mkfs.ext4",
                &[
                    "-q",
                    "-F",
                    "-b",
                    "4096",
                    "-L",
                    "tandem-root",
                    "-U",
                    &uuid,
                    "-E",
                    &format!("root_owner=0:0,hash_seed={uuid}"),
                    "-d",
                    &s,
                    &o,
                ],
                &[("E2FSPROGS_FAKE_TIME", e.clone())],
            )?;
            pin_ext4_times(stage, out, epoch)?;
        }
    }
    let len = std::fs::metadata(out)
        .map_err(|err| BuildError::io(out, err))?
        .len();
    let data_len = len.next_multiple_of(BLOCK);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(out)
        .map_err(|err| BuildError::io(out, err))?;
    f.set_len(data_len)
        .map_err(|err| BuildError::io(out, err))?;
    drop(f);
    if !r.rootfs.verity {
        return Ok(None);
    }
    let salt = hex::encode(derive(seed, "verity-salt"));
    let uuid = derive_uuid(seed, "verity");
    let text = run(
        "veritysetup",
        &[
            "format",
            "--hash=sha256",
            "--data-block-size=4096",
            "--hash-block-size=4096",
            &format!("--data-blocks={}", data_len / BLOCK),
            &format!("--hash-offset={data_len}"),
            &format!("--salt={salt}"),
            &format!("--uuid={uuid}"),
            &o,
            &o,
        ],
    )?;
    let root_hash = text
        .lines()
        .find_map(|l| l.strip_prefix("Root hash:"))
        .map(|h| h.trim().to_string())
        .ok_or_else(|| BuildError::Step(format!("veritysetup printed no root hash:\n{text}")))?;
    Ok(Some(Verity {
        root_hash,
        salt,
        hash_offset: data_len,
        data_block_size: BLOCK as u32,
        hash_block_size: BLOCK as u32,
        hash_algorithm: "sha256".into(),
    }))
}

/// `mke2fs -d` copies each file's atime, mtime and ctime from the stage
/// (e2fsprogs 1.47.0 has no SOURCE_DATE_EPOCH; E2FSPROGS_FAKE_TIME only
/// sets the superblock and crtime). Sets all three to `epoch` on every
/// inode with one `debugfs -w` script, in sorted path order.
fn pin_ext4_times(stage: &Path, image: &Path, epoch: u64) -> Result<(), BuildError> {
    let mut paths = vec![String::from("/")];
    walk(stage, "", &mut paths)?;
    let mut script = String::new();
    for p in &paths {
        for field in ["atime", "mtime", "ctime"] {
            script += &format!("sif \"{p}\" {field} @{epoch}\n");
        }
    }
    let f = image.with_extension("debugfs");
    std::fs::write(&f, script).map_err(|err| BuildError::io(&f, err))?;
    // With the fake time debugfs also leaves the superblock's write time.
    let r = run_env(
        None,
        "debugfs",
        &[
            "-w",
            "-f",
            &f.display().to_string(),
            &image.display().to_string(),
        ],
        &[("E2FSPROGS_FAKE_TIME", epoch.to_string())],
    );
    let _ = std::fs::remove_file(&f);
    r.map(drop)
}

/// Paths under `dir` relative to the stage root (`/bin`, `/bin/sh`, ...),
/// sorted, depth first; symlinks are not followed.
fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) -> Result<(), BuildError> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| BuildError::io(dir, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| BuildError::io(dir, e))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = format!("{prefix}/{}", e.file_name().to_string_lossy());
        let is_dir = e
            .file_type()
            .map_err(|err| BuildError::io(&e.path(), err))?
            .is_dir();
        out.push(name.clone());
        if is_dir {
            walk(&e.path(), &name, out)?;
        }
    }
    Ok(())
}

fn dir_size(p: &Path) -> Result<u64, BuildError> {
    let mut n = 0;
    for e in std::fs::read_dir(p).map_err(|e| BuildError::io(p, e))? {
        let e = e.map_err(|err| BuildError::io(p, err))?;
        let m = e
            .path()
            .symlink_metadata()
            .map_err(|err| BuildError::io(&e.path(), err))?;
        n += if m.is_dir() {
            dir_size(&e.path())? + 4096
        } else {
            m.len().next_multiple_of(4096)
        };
    }
    Ok(n)
}

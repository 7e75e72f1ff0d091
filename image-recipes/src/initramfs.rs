//! The initramfs: the Rust `/init` (with its policy file and `e2fsck`) or
//! the busybox script, and the kernel modules in load order, as a gzip'd
//! `newc` cpio.

use std::path::{Path, PathBuf};

use crate::cpio::{self, Entry};
use crate::kernel::{self, KernelTree};
use crate::recipe::{Arch, Recipe};
use crate::stage::read;
use crate::tool::{run, BuildError};

const INITRAMFS_INIT: &str = include_str!("../assets/initramfs-init.sh");

/// The static `e2fsck` the Rust init runs on a data partition that does
/// not mount: Debian's `e2fsck-static` for `arch`, from the cache.
pub fn e2fsck(arch: Arch, cache: &Path) -> Result<PathBuf, BuildError> {
    let root = crate::deb::unpack(&arch.package("e2fsck-static"), cache)?;
    Ok(root.join("sbin/e2fsck.static"))
}

/// The policy file of the Rust init (initramfs/src/policy.rs): dm-verity
/// required exactly when the recipe's images carry it.
pub fn initramfs_policy(r: &Recipe) -> String {
    tandem_initramfs::policy::Policy {
        require_verity: r.rootfs.verity,
    }
    .to_text(&format!(
        "Written by tandem-image for recipe {} {}.",
        r.name, r.version
    ))
}

/// The initramfs: `/init` (the static Rust init when given, with its
/// policy file and `e2fsck`; else the busybox script with busybox), and
/// the modules in load order.
pub fn build(
    r: &Recipe,
    k: &KernelTree,
    epoch: u64,
    init: Option<(&Path, &Path)>,
    busybox: &Path,
) -> Result<Vec<u8>, BuildError> {
    let mdir = k.modules_dir();
    let dep =
        std::fs::read_to_string(mdir.join("modules.dep")).map_err(|e| BuildError::io(&mdir, e))?;
    let order = kernel::module_order(&dep, &r.kernel.modules)?;
    let mut e: Vec<(String, Entry)> = Vec::new();
    for d in [
        "bin",
        "dev",
        "etc",
        "lib",
        "lib/modules",
        "proc",
        "sys",
        "sysroot",
    ] {
        e.push((d.into(), Entry::Dir { mode: 0o755 }));
    }
    match init {
        Some((path, e2fsck)) => {
            e.push((
                "init".into(),
                Entry::File {
                    mode: 0o755,
                    data: read(path)?,
                },
            ));
            e.push(("etc/tandem".into(), Entry::Dir { mode: 0o755 }));
            e.push((
                tandem_initramfs::policy::PATH
                    .trim_start_matches('/')
                    .into(),
                Entry::File {
                    mode: 0o644,
                    data: initramfs_policy(r).into_bytes(),
                },
            ));
            e.push(("sbin".into(), Entry::Dir { mode: 0o755 }));
            e.push((
                tandem_initramfs::data::E2FSCK
                    .trim_start_matches('/')
                    .into(),
                Entry::File {
                    mode: 0o755,
                    data: read(e2fsck)?,
                },
            ));
        }
        None => {
            e.push((
                "bin/busybox".into(),
                Entry::File {
                    mode: 0o755,
                    data: read(busybox)?,
                },
            ));
            e.push((
                "init".into(),
                Entry::File {
                    mode: 0o755,
                    data: INITRAMFS_INIT.as_bytes().to_vec(),
                },
            ));
        }
    }
    let mut list = String::new();
    for rel in &order {
        let name = Path::new(rel)
            .file_name()
            .expect("module file")
            .to_string_lossy()
            .into_owned();
        e.push((
            format!("lib/modules/{name}"),
            Entry::File {
                mode: 0o644,
                data: read(&mdir.join(rel))?,
            },
        ));
        list += &name;
        list.push('\n');
    }
    e.push((
        "etc/modules-load".into(),
        Entry::File {
            mode: 0o644,
            data: list.into_bytes(),
        },
    ));
    let raw = cpio::build(&e, epoch);
    // gzip through the tool (deterministic with -n: no name, no time).
    let tmp = std::env::temp_dir().join(format!("tandem-initrd-{}.cpio", std::process::id()));
    std::fs::write(&tmp, &raw).map_err(|e| BuildError::io(&tmp, e))?;
    run("gzip", &["-n", "-9", "-f", &tmp.display().to_string()])?;
    let gz = PathBuf::from(format!("{}.gz", tmp.display()));
    let out = read(&gz)?;
    let _ = std::fs::remove_file(&gz);
    Ok(out)
}

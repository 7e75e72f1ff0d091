//! The kernel: a Debian linux-image package fetched with `apt-get download`
//! and unpacked with `dpkg-deb -x` (never installed on the build host), and
//! the load order of the modules the initramfs needs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::recipe::Arch;
use crate::tool::{run, BuildError};

/// An unpacked kernel package.
pub struct KernelTree {
    pub root: PathBuf,
    pub release: String,
}

impl KernelTree {
    pub fn vmlinuz(&self) -> PathBuf {
        self.root.join(format!("boot/vmlinuz-{}", self.release))
    }

    pub fn modules_dir(&self) -> PathBuf {
        self.root.join("lib/modules").join(&self.release)
    }
}

/// Resolves a metapackage such as `linux-image-amd64` to the versioned one,
/// for `arch` (`linux-image-arm64` on an amd64 host becomes
/// `linux-image-6.1.0-NN-arm64:arm64`).
pub fn resolve_package(pkg: &str, arch: Arch) -> Result<String, BuildError> {
    let pkg = arch.package(pkg);
    if pkg.starts_with("linux-image-6") || pkg.starts_with("linux-image-5") {
        return Ok(pkg);
    }
    let out = run("apt-cache", &["depends", &pkg])?;
    out.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|d| d.starts_with("linux-image-"))
        .map(str::to_string)
        .ok_or_else(|| {
            let hint = if arch.is_host() {
                "run apt-get update?".to_string()
            } else {
                format!(
                    "run dpkg --add-architecture {0} && apt-get update?",
                    arch.debian()
                )
            };
            BuildError::Step(format!(
                "apt-cache depends {pkg}: no linux-image dependency ({hint})"
            ))
        })
}

/// Downloads and unpacks `pkg` under `cache` (reused when present).
pub fn fetch(pkg: &str, cache: &Path) -> Result<KernelTree, BuildError> {
    let root = crate::deb::unpack(pkg, cache)?;
    let release = std::fs::read_dir(root.join("lib/modules"))
        .map_err(|e| BuildError::io(&root, e))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .next()
        .ok_or_else(|| BuildError::Step(format!("{pkg}: no lib/modules/<release>")))?;
    let tree = KernelTree { root, release };
    if !tree.modules_dir().join("modules.dep").exists() {
        run(
            "/sbin/depmod",
            &["-b", &tree.root.display().to_string(), &tree.release],
        )?;
    }
    Ok(tree)
}

fn norm(name: &str) -> String {
    name.replace('-', "_")
}

/// Orders `wanted` modules and their dependencies so each comes after what
/// it needs. Returns paths relative to the modules directory. Pure.
pub fn module_order(modules_dep: &str, wanted: &[String]) -> Result<Vec<String>, BuildError> {
    let mut deps: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
    for line in modules_dep.lines() {
        let Some((path, rest)) = line.split_once(':') else {
            continue;
        };
        let stem = Path::new(path)
            .file_name()
            .map(|f| f.to_string_lossy().trim_end_matches(".ko").to_string())
            .unwrap_or_default();
        let list = rest.split_whitespace().map(str::to_string).collect();
        deps.insert(norm(&stem), (path.to_string(), list));
    }
    let by_path: BTreeMap<&str, &str> = deps
        .iter()
        .map(|(k, (p, _))| (p.as_str(), k.as_str()))
        .collect();
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    fn visit(
        m: &str,
        deps: &BTreeMap<String, (String, Vec<String>)>,
        by_path: &BTreeMap<&str, &str>,
        seen: &mut BTreeSet<String>,
        out: &mut Vec<String>,
    ) -> Result<(), BuildError> {
        if !seen.insert(m.to_string()) {
            return Ok(());
        }
        let (path, list) = deps.get(m).ok_or_else(|| {
            BuildError::Step(format!(
                "module {m} is not in modules.dep (built in, or misspelled?)"
            ))
        })?;
        for d in list.iter().rev() {
            let name = by_path.get(d.as_str()).copied().unwrap_or(d.as_str());
            visit(name, deps, by_path, seen, out)?;
        }
        out.push(path.clone());
        Ok(())
    }
    for w in wanted {
        visit(&norm(w), &deps, &by_path, &mut seen, &mut out)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/md/dm-verity.ko: kernel/drivers/md/dm-bufio.ko kernel/drivers/md/dm-mod.ko
kernel/drivers/md/dm-bufio.ko:
kernel/drivers/md/dm-mod.ko:
";

    #[test]
    fn dependencies_first() {
        let o = module_order(
            DEP,
            &["virtio_blk".into(), "dm-verity".into(), "virtio".into()],
        )
        .unwrap();
        let pos = |s: &str| o.iter().position(|p| p.ends_with(s)).unwrap();
        assert!(pos("virtio_ring.ko") < pos("virtio.ko"));
        assert!(pos("virtio.ko") < pos("virtio_blk.ko"));
        assert!(pos("dm-mod.ko") < pos("dm-verity.ko"));
        assert_eq!(o.len(), 6, "no duplicates: {o:?}");
        assert!(module_order(DEP, &["nope".into()]).is_err());
    }
}

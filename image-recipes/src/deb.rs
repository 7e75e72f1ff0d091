//! Debian packages as inputs: `apt-get download` into the cache and
//! `dpkg-deb -x`, never installed on the build host. A foreign
//! architecture's package (`busybox-static:arm64`) needs
//! `dpkg --add-architecture arm64 && apt-get update` once
//! (scripts/setup.sh).

use std::path::{Path, PathBuf};

use crate::tool::{run, run_in, BuildError};

fn find_deb(dir: &Path) -> Result<Option<PathBuf>, BuildError> {
    Ok(std::fs::read_dir(dir)
        .map_err(|e| BuildError::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "deb")))
}

/// Downloads `pkg` into `cache/<pkg>/` and unpacks it into
/// `cache/<pkg>/root` (both reused when present). Returns that root.
pub fn unpack(pkg: &str, cache: &Path) -> Result<PathBuf, BuildError> {
    let dir = cache.join(pkg);
    let root = dir.join("root");
    if root.exists() {
        return Ok(root);
    }
    std::fs::create_dir_all(&dir).map_err(|e| BuildError::io(&dir, e))?;
    let deb = match find_deb(&dir)? {
        Some(d) => d,
        None => {
            run_in(&dir, "apt-get", &["download", pkg])?;
            find_deb(&dir)?.ok_or_else(|| {
                BuildError::Step(format!("apt-get download {pkg} produced no .deb"))
            })?
        }
    };
    let tmp = dir.join("root.tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    run(
        "dpkg-deb",
        &["-x", &deb.display().to_string(), &tmp.display().to_string()],
    )?;
    std::fs::rename(&tmp, &root).map_err(|e| BuildError::io(&root, e))?;
    Ok(root)
}

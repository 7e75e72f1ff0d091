//! Writing the staged root filesystem tree: the helpers every base and
//! the Tandem layer use. A leaf.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::tool::BuildError;

/// Reads a whole file.
pub fn read(p: &Path) -> Result<Vec<u8>, BuildError> {
    std::fs::read(p).map_err(|e| BuildError::io(p, e))
}

/// Writes one file into the staged tree, creating its directories.
pub fn write(stage: &Path, rel: &str, data: &[u8], mode: u32) -> Result<(), BuildError> {
    let p = stage.join(rel.trim_start_matches('/'));
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).map_err(|e| BuildError::io(parent, e))?;
    }
    std::fs::write(&p, data).map_err(|e| BuildError::io(&p, e))?;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))
        .map_err(|e| BuildError::io(&p, e))
}

/// `ln -sf target stage/rel`, creating its directories; replaces a file
/// or link already there.
pub fn symlink(stage: &Path, rel: &str, target: &str) -> Result<(), BuildError> {
    let p = stage.join(rel.trim_start_matches('/'));
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).map_err(|e| BuildError::io(parent, e))?;
    }
    if std::fs::symlink_metadata(&p).is_ok() {
        std::fs::remove_file(&p).map_err(|e| BuildError::io(&p, e))?;
    }
    std::os::unix::fs::symlink(target, &p).map_err(|e| BuildError::io(&p, e))
}

/// `mkdir -p` each directory of the tree.
pub fn dirs(stage: &Path, dirs: &[&str]) -> Result<(), BuildError> {
    for d in dirs {
        let p = stage.join(d.trim_start_matches('/'));
        std::fs::create_dir_all(&p).map_err(|e| BuildError::io(&p, e))?;
    }
    Ok(())
}

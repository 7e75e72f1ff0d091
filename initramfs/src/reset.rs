//! Factory reset of the data partition: everything at its top level goes,
//! `lost+found` stays (mke2fs made it; fsck wants it). Takes the mounted
//! directory as an argument, so it is tested on a temp dir.

use std::io;
use std::path::Path;

/// Kept by a factory reset.
pub const KEEP: &str = "lost+found";

/// Deletes every entry of `dir` except [`KEEP`] and returns how many top
/// level entries went. Symlinks are removed, never followed. Stops at the
/// first error (the caller fails the boot: a half-wiped partition must not
/// be handed to the system as if it were fresh).
pub fn wipe(dir: &Path) -> io::Result<usize> {
    let mut n = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name() == KEEP {
            continue;
        }
        let path = entry.path();
        let ft = entry.file_type()?;
        if ft.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        }
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wipes_all_but_lost_and_found() {
        let d = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("precious"), "x").unwrap();
        let p = d.path();
        std::fs::create_dir_all(p.join("lost+found/#12")).unwrap();
        std::fs::create_dir_all(p.join("var/lib/tandem")).unwrap();
        std::fs::write(p.join("var/lib/tandem/state.json"), "{}").unwrap();
        std::fs::create_dir_all(p.join("etc/upper")).unwrap();
        std::fs::write(p.join(".tandem-factory-reset"), "").unwrap();
        std::os::unix::fs::symlink(outside.path(), p.join("link-out")).unwrap();
        assert_eq!(wipe(p).unwrap(), 4);
        let left: Vec<_> = std::fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["lost+found"]);
        assert!(p.join("lost+found/#12").is_dir(), "lost+found untouched");
        assert!(
            outside.path().join("precious").exists(),
            "link not followed"
        );
        assert_eq!(wipe(p).unwrap(), 0);
    }
}

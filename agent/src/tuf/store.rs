//! [`DirStore`]: trusted metadata as files in one directory
//! (`root.json`, `timestamp.json`, `snapshot.json`, `targets.json`, and
//! `NAME.json` for a delegated role, its name percent-encoded so that no
//! name can leave the directory), each written atomically.

use std::io;
use std::path::{Path, PathBuf};

use super::client::{quote, MetadataStore};
use super::TufError;

/// Metadata files in `dir`.
#[derive(Debug, Clone)]
pub struct DirStore {
    dir: PathBuf,
}

impl DirStore {
    pub fn new(dir: &Path) -> DirStore {
        DirStore {
            dir: dir.to_path_buf(),
        }
    }

    /// The file of `role`.
    pub fn path(&self, role: &str) -> PathBuf {
        self.dir.join(format!("{}.json", quote(role)))
    }
}

impl MetadataStore for DirStore {
    fn load(&self, role: &str) -> Result<Option<Vec<u8>>, TufError> {
        let path = self.path(role);
        match std::fs::read(&path) {
            Ok(data) => Ok(Some(data)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(TufError::Io {
                what: format!("reading {}", path.display()),
                source,
            }),
        }
    }

    fn save(&self, role: &str, data: &[u8]) -> Result<(), TufError> {
        let path = self.path(role);
        crate::sys::write_atomic(&path, data).map_err(|source| TufError::Io {
            what: format!("writing {}", path.display()),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stay_in_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirStore::new(dir.path());
        for name in ["targets", "../escape", "/abs", "a/b"] {
            assert_eq!(store.path(name).parent(), Some(dir.path()), "{name}");
            store.save(name, name.as_bytes()).unwrap();
            assert_eq!(store.load(name).unwrap().unwrap(), name.as_bytes());
        }
        assert_eq!(store.load("absent").unwrap(), None);
    }
}

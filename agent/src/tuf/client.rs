//! The client workflow (specification §5): [`Updater::refresh`] brings
//! root, timestamp, snapshot and targets up to date; targets are then
//! looked up through the delegation tree and downloaded with their length
//! and hashes checked.
//!
//! Transport and storage are seams: a [`Fetcher`] gets bytes by URL,
//! never more than a limit; a [`MetadataStore`] keeps the last trusted
//! copy of each role. Only metadata the trusted set accepted is stored.

use std::path::{Path, PathBuf};

use super::delegation::{self, Loader};
use super::metadata::{
    check_length_and_hashes, TargetFile, Targets, ROOT, SNAPSHOT, TARGETS, TIMESTAMP,
};
use super::trusted::TrustedSet;
use super::{Limits, TufError};

/// Gets the bytes at a URL.
pub trait Fetcher {
    /// At most `max_len` bytes: more is [`TufError::TooLong`], never read
    /// past the limit; a missing file (404, 403) is [`TufError::NotFound`].
    fn fetch(&self, url: &str, max_len: u64) -> Result<Vec<u8>, TufError>;
}

/// The last trusted copy of each role's metadata, by role name (`root`,
/// `timestamp`, `snapshot`, `targets`, delegated names).
pub trait MetadataStore {
    fn load(&self, role: &str) -> Result<Option<Vec<u8>>, TufError>;
    fn save(&self, role: &str, data: &[u8]) -> Result<(), TufError>;
}

/// `s` percent-encoded except for unreserved characters (`A-Z a-z 0-9 -
/// . _ ~`): a role name in a URL or a file name (no `/`, no `..` path).
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn with_slash(url: &str) -> String {
    if url.ends_with('/') {
        url.to_string()
    } else {
        format!("{url}/")
    }
}

/// Where `role`'s metadata is under `base` (ending in `/`): `ROLE.json`,
/// or `VERSION.ROLE.json` (root always; the others under consistent
/// snapshots), the name percent-encoded.
pub fn metadata_url(base: &str, role: &str, version: Option<u64>) -> String {
    match version {
        Some(v) => format!("{base}{v}.{}.json", quote(role)),
        None => format!("{base}{}.json", quote(role)),
    }
}

/// A TUF client of one repository.
pub struct Updater<F: Fetcher, S: MetadataStore> {
    fetcher: F,
    store: S,
    metadata_url: String,
    limits: Limits,
    trusted: Option<TrustedSet>,
}

impl<F: Fetcher, S: MetadataStore> Updater<F, S> {
    /// A client of the repository whose metadata is under `metadata_url`,
    /// trusting what `store` holds (it must hold a root: the one shipped
    /// with the device, or a later one).
    pub fn new(fetcher: F, store: S, metadata_url: &str, limits: Limits) -> Self {
        Updater {
            fetcher,
            store,
            metadata_url: with_slash(metadata_url),
            limits,
            trusted: None,
        }
    }

    /// The store (to read what it holds, e.g. after a refresh).
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The trusted set after a successful [`refresh`](Self::refresh).
    pub fn trusted(&self) -> Option<&TrustedSet> {
        self.trusted.as_ref()
    }

    fn url(&self, role: &str, version: Option<u64>) -> String {
        metadata_url(&self.metadata_url, role, version)
    }

    /// Brings the top-level metadata up to date as of `now` (Unix seconds,
    /// see [`super::trusted_now`]): root (every next version, persisted one
    /// by one), timestamp, snapshot, targets.
    pub fn refresh(&mut self, now: u64) -> Result<(), TufError> {
        self.trusted = None;
        let root = self.store.load(ROOT)?.ok_or_else(|| TufError::Missing {
            role: ROOT.into(),
            reason: "no trusted root in the metadata store".into(),
        })?;
        let mut set = TrustedSet::new(&root, now)?;
        self.load_roots(&mut set)?;
        self.load_timestamp(&mut set)?;
        self.load_snapshot(&mut set)?;
        self.trusted = Some(set);
        let mut loader = self.loader()?;
        loader.load(TARGETS, ROOT)?;
        Ok(())
    }

    fn load_roots(&self, set: &mut TrustedSet) -> Result<(), TufError> {
        let first = set.root().version;
        for _ in 0..self.limits.max_root_rotations {
            let next = set.root().version + 1;
            let url = self.url(ROOT, Some(next));
            let data = match self.fetcher.fetch(&url, self.limits.root_max_length) {
                Ok(d) => d,
                Err(TufError::NotFound { .. }) => break,
                Err(e) => return Err(e),
            };
            set.update_root(&data)?;
            self.store.save(ROOT, &data)?;
        }
        if set.root().version != first {
            tracing::info!(from = first, to = set.root().version, "TUF: root updated");
        }
        set.check_root_expiry()
    }

    fn load_timestamp(&self, set: &mut TrustedSet) -> Result<(), TufError> {
        if let Some(local) = self.store.load(TIMESTAMP)? {
            if let Err(e) = set.update_timestamp(&local) {
                tracing::debug!("TUF: local timestamp not usable as final: {e}");
            }
        }
        let url = self.url(TIMESTAMP, None);
        let data = self.fetcher.fetch(&url, self.limits.timestamp_max_length)?;
        if set.update_timestamp(&data)? {
            self.store.save(TIMESTAMP, &data)?;
        }
        Ok(())
    }

    fn load_snapshot(&self, set: &mut TrustedSet) -> Result<(), TufError> {
        if let Some(local) = self.store.load(SNAPSHOT)? {
            match set.update_snapshot(&local, true) {
                Ok(()) => return Ok(()),
                Err(e) => tracing::debug!("TUF: local snapshot not usable as final: {e}"),
            }
        }
        let meta = set
            .timestamp()
            .expect("update_snapshot needs a timestamp")
            .snapshot_meta()
            .clone();
        let version = set.root().consistent_snapshot.then_some(meta.version);
        let url = self.url(SNAPSHOT, version);
        let limit = meta.length.unwrap_or(self.limits.snapshot_max_length);
        let data = self.fetcher.fetch(&url, limit)?;
        set.update_snapshot(&data, false)?;
        self.store.save(SNAPSHOT, &data)
    }

    fn loader(&mut self) -> Result<RoleLoader<'_, F, S>, TufError> {
        let Updater {
            fetcher,
            store,
            metadata_url,
            limits,
            trusted,
        } = self;
        let set = trusted.as_mut().ok_or_else(|| TufError::Missing {
            role: TARGETS.into(),
            reason: "metadata not refreshed: call refresh first".into(),
        })?;
        Ok(RoleLoader {
            fetcher,
            store,
            metadata_url,
            limits,
            set,
        })
    }

    /// The target file for `target_path` as the delegation tree resolves
    /// it; `Ok(None)` when no role lists it.
    pub fn get_target_info(&mut self, target_path: &str) -> Result<Option<TargetFile>, TufError> {
        let max = self.limits.max_delegations;
        let mut loader = self.loader()?;
        delegation::find(&mut loader, target_path, max)
    }

    /// Every target `role` lists, each as the delegation tree resolves its
    /// path (a path the role may not sign, or that a role of higher
    /// priority lists differently, comes out as the tree says, or not at
    /// all). Empty when the role is not in the tree.
    pub fn targets_of_role(&mut self, role: &str) -> Result<Vec<(String, TargetFile)>, TufError> {
        let max = self.limits.max_delegations;
        let mut loader = self.loader()?;
        let Some(listed) = delegation::reach(&mut loader, role, max)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for path in listed.targets.keys() {
            if let Some(t) = delegation::find(&mut loader, path, max)? {
                out.push((path.clone(), t));
            }
        }
        Ok(out)
    }

    /// Where [`download_target`](Self::download_target) puts `target_path`
    /// in `dest_dir`: one file per target path, its name percent-encoded.
    pub fn target_file_path(target_path: &str, dest_dir: &Path) -> PathBuf {
        dest_dir.join(quote(target_path))
    }

    /// The file of an earlier download of this target in `dest_dir`, if it
    /// still has the right length and hashes.
    pub fn find_cached_target(
        &self,
        target_path: &str,
        info: &TargetFile,
        dest_dir: &Path,
    ) -> Option<PathBuf> {
        let path = Self::target_file_path(target_path, dest_dir);
        let data = std::fs::read(&path).ok()?;
        check_length_and_hashes(target_path, &data, Some(info.length), Some(&info.hashes))
            .ok()
            .map(|_| path)
    }

    /// Downloads `target_path` from `target_base_url` (with its hash as a
    /// prefix of the file name under consistent snapshots), checks its
    /// length and hashes, and writes it atomically into `dest_dir`.
    pub fn download_target(
        &self,
        target_path: &str,
        info: &TargetFile,
        target_base_url: &str,
        dest_dir: &Path,
    ) -> Result<PathBuf, TufError> {
        let data = self.fetch_target(target_path, info, target_base_url)?;
        let path = Self::target_file_path(target_path, dest_dir);
        crate::sys::write_atomic(&path, &data).map_err(|source| TufError::Io {
            what: format!("writing {}", path.display()),
            source,
        })?;
        Ok(path)
    }

    /// The bytes of `target_path`, checked, in memory.
    pub fn fetch_target(
        &self,
        target_path: &str,
        info: &TargetFile,
        target_base_url: &str,
    ) -> Result<Vec<u8>, TufError> {
        let consistent = self
            .trusted
            .as_ref()
            .is_some_and(|t| t.root().consistent_snapshot);
        let name = if consistent {
            let hash = info
                .hashes
                .get("sha256")
                .or_else(|| info.hashes.values().next())
                .ok_or_else(|| TufError::malformed(target_path, "no hashes"))?;
            let (dir, base) = match target_path.rsplit_once('/') {
                Some((dir, base)) => (format!("{dir}/"), base),
                None => (String::new(), target_path),
            };
            format!("{dir}{hash}.{base}")
        } else {
            target_path.to_string()
        };
        let url = format!("{}{name}", with_slash(target_base_url));
        let data = self.fetcher.fetch(&url, info.length)?;
        check_length_and_hashes(
            &format!("target {target_path} ({url})"),
            &data,
            Some(info.length),
            Some(&info.hashes),
        )?;
        Ok(data)
    }
}

/// Loads targets roles into the trusted set: the local copy if it is
/// still the one snapshot names, else from the repository.
struct RoleLoader<'a, F: Fetcher, S: MetadataStore> {
    fetcher: &'a F,
    store: &'a S,
    metadata_url: &'a str,
    limits: &'a Limits,
    set: &'a mut TrustedSet,
}

impl<F: Fetcher, S: MetadataStore> Loader for RoleLoader<'_, F, S> {
    fn load(&mut self, name: &str, parent: &str) -> Result<Targets, TufError> {
        if let Some(t) = self.set.targets_via(name, parent)? {
            return Ok(t.clone());
        }
        if let Some(local) = self.store.load(name)? {
            match self.set.update_targets(&local, name, parent) {
                Ok(()) => return Ok(self.set.targets(name).cloned().expect("just set")),
                Err(e) => tracing::debug!(role = name, "TUF: local copy not usable: {e}"),
            }
        }
        let snapshot = self
            .set
            .snapshot()
            .expect("targets are loaded after snapshot");
        let meta = snapshot
            .meta
            .get(&format!("{name}.json"))
            .ok_or_else(|| TufError::Missing {
                role: name.to_string(),
                reason: format!(
                    "delegated by {parent} but not in snapshot version {}",
                    snapshot.version
                ),
            })?;
        let limit = meta.length.unwrap_or(self.limits.targets_max_length);
        let version = self.set.root().consistent_snapshot.then_some(meta.version);
        let url = metadata_url(self.metadata_url, name, version);
        let data = self.fetcher.fetch(&url, limit)?;
        self.set.update_targets(&data, name, parent)?;
        self.store.save(name, &data)?;
        Ok(self.set.targets(name).cloned().expect("just set"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_keeps_names_safe() {
        let cases = [
            ("targets", "targets"),
            ("?", "%3F"),
            ("#", "%23"),
            ("/delegatedrole", "%2Fdelegatedrole"),
            ("../delegatedrole", "..%2Fdelegatedrole"),
            ("a b~c", "a%20b~c"),
            ("é", "%C3%A9"),
        ];
        for (name, want) in cases {
            assert_eq!(quote(name), want);
        }
    }
}

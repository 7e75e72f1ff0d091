//! The repository's directories and files: keys, metadata, targets.

use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use super::RepoError;
use crate::bundle::keys;
use crate::tuf::metadata::{Root, Snapshot, Timestamp};

/// A repository directory (see the module docs of `repo`).
pub struct Repo {
    pub dir: PathBuf,
}

impl Repo {
    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RepoError + '_ {
        move |source| RepoError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub fn bad(&self, file: &str, message: &str) -> RepoError {
        RepoError::Bad {
            path: self.metadata_dir().join(file),
            message: message.into(),
        }
    }

    pub fn open(dir: &Path) -> Result<Repo, RepoError> {
        let r = Repo { dir: dir.into() };
        if !r.metadata_dir().join("timestamp.json").exists() {
            return Err(r.bad(
                "timestamp.json",
                "missing: not a repository (run `tandem repo init`)",
            ));
        }
        Ok(r)
    }

    pub(super) fn create(dir: &Path) -> Result<Repo, RepoError> {
        let r = Repo { dir: dir.into() };
        if r.metadata_dir().join("timestamp.json").exists() {
            return Err(RepoError::Usage(format!(
                "{}: a repository exists already",
                dir.display()
            )));
        }
        for d in [r.keys_dir(), r.metadata_dir().join("targets")] {
            std::fs::create_dir_all(&d).map_err(Self::io(&d))?;
        }
        crate::sys::private_dir(&r.keys_dir()).map_err(Self::io(&r.keys_dir()))?;
        Ok(r)
    }

    pub fn keys_dir(&self) -> PathBuf {
        self.dir.join("keys")
    }

    /// What a web server serves: the channel's metadata URL.
    pub fn metadata_dir(&self) -> PathBuf {
        self.dir.join("repository")
    }

    fn key_path(&self, role: &str) -> PathBuf {
        self.keys_dir().join(format!("{role}.key"))
    }

    pub fn key(&self, role: &str) -> Result<SigningKey, RepoError> {
        let p = self.key_path(role);
        let text = std::fs::read_to_string(&p).map_err(Self::io(&p))?;
        keys::parse_secret(&text, &p.display().to_string()).map_err(|e| RepoError::Bad {
            path: p.clone(),
            message: e.to_string(),
        })
    }

    pub(super) fn key_or_new(&self, role: &str) -> Result<SigningKey, RepoError> {
        if self.key_path(role).exists() {
            return self.key(role);
        }
        let seed = crate::sys::random_seed().map_err(Self::io(Path::new("/dev/urandom")))?;
        let k = keys::keypair_from_seed(seed);
        let p = self.key_path(role);
        crate::sys::write_private_new(
            &p,
            keys::format_secret(&k, &format!("tandem repo {role}")).as_bytes(),
        )
        .map_err(Self::io(&p))?;
        Ok(k)
    }

    /// Keeps the old key as ROLE.key.N (N: the first free number) and puts
    /// `k` in its place.
    pub(super) fn replace_key(&self, role: &str, k: &SigningKey) -> Result<(), RepoError> {
        let p = self.key_path(role);
        let old = (1..)
            .map(|n| self.keys_dir().join(format!("{role}.key.{n}")))
            .find(|p| !p.exists())
            .expect("a free name");
        std::fs::hard_link(&p, &old).map_err(Self::io(&old))?;
        let tmp = self.keys_dir().join(format!(".{role}.key.new"));
        let _ = std::fs::remove_file(&tmp);
        crate::sys::write_private_new(
            &tmp,
            keys::format_secret(k, &format!("tandem repo {role}")).as_bytes(),
        )
        .map_err(Self::io(&tmp))?;
        std::fs::rename(&tmp, &p).map_err(Self::io(&p))?;
        std::fs::File::open(self.keys_dir())
            .and_then(|d| d.sync_all())
            .map_err(Self::io(&self.keys_dir()))
    }

    pub(super) fn write_meta(&self, name: &str, bytes: &[u8]) -> Result<(), RepoError> {
        let p = self.metadata_dir().join(name);
        crate::sys::write_atomic(&p, bytes).map_err(Self::io(&p))
    }

    /// The `signed` part of a metadata file (this publisher's own files:
    /// not verified again).
    pub(super) fn read_signed<T: DeserializeOwned>(&self, name: &str) -> Result<T, RepoError> {
        let p = self.metadata_dir().join(name);
        let bytes = std::fs::read(&p).map_err(Self::io(&p))?;
        let v: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| self.bad(name, &e.to_string()))?;
        serde_json::from_value(v["signed"].clone()).map_err(|e| self.bad(name, &e.to_string()))
    }

    pub(super) fn timestamp(&self) -> Option<Timestamp> {
        self.read_signed("timestamp.json").ok()
    }

    pub(super) fn snapshot(&self) -> Result<Snapshot, RepoError> {
        let ts = self
            .timestamp()
            .ok_or_else(|| self.bad("timestamp.json", "missing or unreadable"))?;
        let v = ts
            .meta
            .get("snapshot.json")
            .ok_or_else(|| self.bad("timestamp.json", "lists no snapshot.json"))?
            .version;
        self.read_signed(&format!("{v}.snapshot.json"))
    }

    pub(super) fn latest_root(&self) -> Result<(u64, Root), RepoError> {
        let mut v = 1;
        while self
            .metadata_dir()
            .join(format!("{}.root.json", v + 1))
            .exists()
        {
            v += 1;
        }
        Ok((v, self.read_signed(&format!("{v}.root.json"))?))
    }

    /// Copies a bundle to `targets/CHANNEL/SHA256.NAME` (hashing as it
    /// copies, synced; `copy` false: only hashes it); returns its length
    /// and SHA-256 (hex).
    pub(super) fn store_target(
        &self,
        channel: &str,
        name: &str,
        src: &Path,
        copy: bool,
    ) -> Result<(u64, String), RepoError> {
        use std::io::{Read, Write};
        let dir = self.metadata_dir().join("targets").join(channel);
        std::fs::create_dir_all(&dir).map_err(Self::io(&dir))?;
        let tmp = dir.join(format!(".{name}.partial"));
        let mut input = std::fs::File::open(src).map_err(Self::io(src))?;
        let mut out = if copy {
            Some(std::fs::File::create(&tmp).map_err(Self::io(&tmp))?)
        } else {
            None
        };
        let mut h = Sha256::new();
        let mut n = 0u64;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let k = input.read(&mut buf).map_err(Self::io(src))?;
            if k == 0 {
                break;
            }
            h.update(&buf[..k]);
            if let Some(o) = out.as_mut() {
                o.write_all(&buf[..k]).map_err(Self::io(&tmp))?;
            }
            n += k as u64;
        }
        let sha = hex::encode(h.finalize());
        let Some(out) = out else {
            return Ok((n, sha));
        };
        out.sync_all().map_err(Self::io(&tmp))?;
        let dest = dir.join(format!("{sha}.{name}"));
        std::fs::rename(&tmp, &dest).map_err(Self::io(&dest))?;
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(Self::io(&dir))?;
        Ok((n, sha))
    }
}

//! `tandem repo`: publishing a channel as a static TUF repository
//! (docs/channel.md). Plain files, no database:
//!
//! ```text
//! DIR/keys/{root,targets,snapshot,timestamp,CHANNEL}.key   offline keys (0600)
//! DIR/repository/                                          what the server serves
//!     N.root.json  root.json  N.targets.json  N.CHANNEL.json
//!     N.snapshot.json  timestamp.json
//!     targets/CHANNEL/SHA256.NAME                          bundles (consistent snapshots)
//! ```
//!
//! Every change writes new versioned files first and `timestamp.json`
//! last, each atomically (write, fsync, rename, fsync the directory): a
//! client that fetches during a publish sees the old repository or the new
//! one, never a mix. Only `timestamp` needs the online key.

mod layout;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signer, SigningKey};
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::channel::{BundleMeta, Wave};
use crate::tuf::keys::{Key, Signature};
use crate::tuf::metadata::{
    self, DelegatedRole, Delegations, MetaFile, Role, Root, Snapshot, TargetFile, Targets,
    Timestamp,
};
pub use layout::Repo;

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Bad { path: PathBuf, message: String },
    #[error("{0}")]
    Usage(String),
}

/// How long each role's metadata stays valid, in seconds.
#[derive(Debug, Clone, Copy)]
pub struct Expiry {
    pub root: u64,
    pub targets: u64,
    pub snapshot: u64,
    pub timestamp: u64,
}

impl Default for Expiry {
    /// Root a year, targets 90 days, snapshot a week, timestamp a day
    /// (re-sign it with `tandem repo timestamp` more often than that).
    fn default() -> Self {
        Expiry {
            root: 365 * 86_400,
            targets: 90 * 86_400,
            snapshot: 7 * 86_400,
            timestamp: 86_400,
        }
    }
}

const SPEC: &str = "1.0.31";

/// The TUF key entry and key id of an ed25519 key.
pub fn tuf_key(k: &SigningKey) -> (String, Key) {
    let key = Key::ed25519(k.verifying_key().as_bytes());
    (key.compute_keyid(), key)
}

/// Signs `signed` with `keys`: the file's bytes.
pub fn sign<T: Serialize>(signed: &T, keys: &[&SigningKey]) -> Vec<u8> {
    let msg = metadata::signing_bytes(signed).expect("serializable metadata");
    let signatures: Vec<Signature> = keys
        .iter()
        .map(|k| Signature {
            keyid: tuf_key(k).0,
            sig: hex::encode(k.sign(&msg).to_bytes()),
            unknown: Map::new(),
        })
        .collect();
    let env = serde_json::json!({
        "signed": serde_json::to_value(signed).expect("plain data"),
        "signatures": signatures,
    });
    let mut b = serde_json::to_vec_pretty(&env).expect("json");
    b.push(b'\n');
    b
}

fn expires(now: u64, secs: u64) -> String {
    crate::timefmt::rfc3339(now + secs)
}

fn meta_of(version: u64, bytes: Option<&[u8]>) -> MetaFile {
    MetaFile {
        version,
        length: bytes.map(|b| b.len() as u64),
        hashes: bytes
            .map(|b| BTreeMap::from([("sha256".to_string(), hex::encode(Sha256::digest(b)))])),
        unknown: Map::new(),
    }
}

/// Role names a channel may have: a TUF role name that is also a safe
/// file and directory name.
pub fn check_channel(name: &str) -> Result<(), RepoError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && !["root", "targets", "snapshot", "timestamp"].contains(&name);
    if ok {
        Ok(())
    } else {
        Err(RepoError::Usage(format!(
            "channel {name:?}: give 1-64 of A-Z a-z 0-9 - _ . (not a top-level role name)"
        )))
    }
}

/// Creates a repository: keys (kept if present), root 1, targets 1
/// delegating `CHANNEL/*` to each channel's role, empty channel roles,
/// snapshot and timestamp.
pub fn init(dir: &Path, channels: &[String], exp: Expiry, now: u64) -> Result<Repo, RepoError> {
    if channels.is_empty() {
        return Err(RepoError::Usage(
            "give at least one --channel (for example stable)".into(),
        ));
    }
    for c in channels {
        check_channel(c)?;
    }
    let repo = Repo::create(dir)?;
    let key = |name: &str| repo.key_or_new(name);
    let (root_k, targets_k, snap_k, ts_k) = (
        key("root")?,
        key("targets")?,
        key("snapshot")?,
        key("timestamp")?,
    );
    let mut keys = BTreeMap::new();
    let mut roles = BTreeMap::new();
    for (role, k) in [
        ("root", &root_k),
        ("targets", &targets_k),
        ("snapshot", &snap_k),
        ("timestamp", &ts_k),
    ] {
        let (id, key) = tuf_key(k);
        keys.insert(id.clone(), key);
        roles.insert(
            role.to_string(),
            Role {
                keyids: vec![id],
                threshold: 1,
                unknown: Map::new(),
            },
        );
    }
    let root = Root {
        type_: "root".into(),
        spec_version: SPEC.into(),
        consistent_snapshot: true,
        version: 1,
        expires: expires(now, exp.root),
        keys,
        roles,
        unknown: Map::new(),
    };
    let root_bytes = sign(&root, &[&root_k]);
    repo.write_meta("1.root.json", &root_bytes)?;
    repo.write_meta("root.json", &root_bytes)?;

    let mut dkeys = BTreeMap::new();
    let mut droles = Vec::new();
    let mut snap_meta = BTreeMap::new();
    for c in channels {
        let k = key(c)?;
        let (id, tk) = tuf_key(&k);
        dkeys.insert(id.clone(), tk);
        droles.push(DelegatedRole {
            name: c.clone(),
            keyids: vec![id],
            threshold: 1,
            terminating: true,
            paths: Some(vec![format!("{c}/*")]),
            path_hash_prefixes: None,
            unknown: Map::new(),
        });
        let t = empty_targets(1, expires(now, exp.targets));
        repo.write_meta(&format!("1.{c}.json"), &sign(&t, &[&k]))?;
        snap_meta.insert(format!("{c}.json"), meta_of(1, None));
    }
    let mut top = empty_targets(1, expires(now, exp.targets));
    top.delegations = Some(Delegations {
        keys: dkeys,
        roles: Some(droles),
        succinct_roles: None,
        unknown: Map::new(),
    });
    repo.write_meta("1.targets.json", &sign(&top, &[&targets_k]))?;
    snap_meta.insert("targets.json".into(), meta_of(1, None));
    publish_snapshot(&repo, 1, snap_meta, exp, now)?;
    Ok(repo)
}

fn empty_targets(version: u64, expires: String) -> Targets {
    Targets {
        type_: "targets".into(),
        spec_version: SPEC.into(),
        version,
        expires,
        targets: BTreeMap::new(),
        delegations: None,
        unknown: Map::new(),
    }
}

/// Writes snapshot `version` with `meta`, then a new timestamp for it.
fn publish_snapshot(
    repo: &Repo,
    version: u64,
    meta: BTreeMap<String, MetaFile>,
    exp: Expiry,
    now: u64,
) -> Result<(), RepoError> {
    let snap = Snapshot {
        type_: "snapshot".into(),
        spec_version: SPEC.into(),
        version,
        expires: expires(now, exp.snapshot),
        meta,
        unknown: Map::new(),
    };
    let bytes = sign(&snap, &[&repo.key("snapshot")?]);
    repo.write_meta(&format!("{version}.snapshot.json"), &bytes)?;
    let ts_version = repo.timestamp().map_or(1, |t| t.version + 1);
    write_timestamp(repo, ts_version, meta_of(version, Some(&bytes)), exp, now)
}

fn write_timestamp(
    repo: &Repo,
    version: u64,
    snap: MetaFile,
    exp: Expiry,
    now: u64,
) -> Result<(), RepoError> {
    let ts = Timestamp {
        type_: "timestamp".into(),
        spec_version: SPEC.into(),
        version,
        expires: expires(now, exp.timestamp),
        meta: BTreeMap::from([("snapshot.json".to_string(), snap)]),
        unknown: Map::new(),
    };
    repo.write_meta("timestamp.json", &sign(&ts, &[&repo.key("timestamp")?]))
}

/// Re-signs the timestamp (the online key's only job): same snapshot, a
/// new version and expiry.
pub fn timestamp(repo: &Repo, exp: Expiry, now: u64) -> Result<u64, RepoError> {
    let ts = repo
        .timestamp()
        .ok_or_else(|| repo.bad("timestamp.json", "missing: run `tandem repo init` first"))?;
    let snap = ts
        .meta
        .get("snapshot.json")
        .cloned()
        .ok_or_else(|| repo.bad("timestamp.json", "lists no snapshot.json"))?;
    write_timestamp(repo, ts.version + 1, snap, exp, now)?;
    Ok(ts.version + 1)
}

/// A wave as given on the command line: `PERCENT@OFFSET` with the offset
/// in hours from `now` (`10@0`, `50@24`, `100@72`).
pub fn parse_wave(s: &str, now: u64) -> Result<Wave, RepoError> {
    let bad = || {
        RepoError::Usage(format!(
            "--wave {s:?}: give PERCENT@HOURS, e.g. 10@0 or 100@48"
        ))
    };
    let (p, h) = s.split_once('@').ok_or_else(bad)?;
    let percent: u8 = p.trim_end_matches('%').parse().map_err(|_| bad())?;
    let hours: u64 = h.trim_end_matches('h').parse().map_err(|_| bad())?;
    Ok(Wave {
        start: crate::timefmt::rfc3339(now + hours * 3600),
        percent,
    })
}

/// What `add` publishes.
pub struct Addition<'a> {
    pub channel: &'a str,
    pub bundle: &'a Path,
    pub waves: Vec<Wave>,
    /// Publish paused (start it with `tandem repo resume`).
    pub paused: bool,
    /// Where devices fetch the bundle instead (an `oci://` reference or an
    /// HTTP(S) URL): the file is hashed, not copied into `targets/`.
    pub location: Option<String>,
}

/// Adds a bundle to a channel: copies it under its hash, lists it with its
/// manifest's version, compatible and epoch, re-signs the channel role,
/// snapshot and timestamp. Returns the target path.
pub fn add(repo: &Repo, a: &Addition<'_>, exp: Expiry, now: u64) -> Result<String, RepoError> {
    check_channel(a.channel)?;
    crate::channel::waves::validate(&a.waves).map_err(RepoError::Usage)?;
    let io = |source| RepoError::Io {
        path: a.bundle.to_path_buf(),
        source,
    };
    let f = std::fs::File::open(a.bundle).map_err(io)?;
    let b =
        crate::bundle::reader::UnverifiedBundle::open(std::io::BufReader::new(f)).map_err(|e| {
            RepoError::Bad {
                path: a.bundle.into(),
                message: format!("not a bundle: {e}"),
            }
        })?;
    let m = b.manifest();
    let meta = BundleMeta {
        version: m.version.clone(),
        compatible: m.compatible.clone(),
        security_epoch: m.security_epoch,
        waves: a.waves.clone(),
        paused: a.paused,
        location: a.location.clone(),
    };
    if let Some(l) = &a.location {
        crate::fetch::Source::parse(l)
            .map_err(|e| RepoError::Usage(format!("--location {l:?}: {e}")))?;
    }
    drop(b);
    let name = a
        .bundle
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| {
            !n.starts_with('.')
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.+".contains(c))
        })
        .ok_or_else(|| {
            RepoError::Usage(format!(
                "{}: name the bundle file with A-Z a-z 0-9 - _ . +",
                a.bundle.display()
            ))
        })?;
    let path = format!("{}/{name}", a.channel);
    update_channel(repo, a.channel, exp, now, |t| {
        let same = |f: &TargetFile| {
            crate::channel::meta::parse_custom(&f.custom)
                .is_ok_and(|o| o.version == meta.version && o.compatible == meta.compatible)
        };
        if let Some(old) = t
            .targets
            .iter()
            .find(|(p, f)| **p != path && same(f))
            .map(|(p, _)| p)
        {
            return Err(RepoError::Usage(format!(
                "{old} already publishes {} for {}",
                meta.version, meta.compatible
            )));
        }
        // Only once the change is known to be allowed: nothing is copied for a refusal.
        let (length, sha) = repo.store_target(a.channel, name, a.bundle, a.location.is_none())?;
        t.targets.insert(
            path.clone(),
            TargetFile {
                length,
                hashes: BTreeMap::from([("sha256".to_string(), sha)]),
                custom: serde_json::json!({ "tandem": meta }),
                unknown: Map::new(),
            },
        );
        Ok(())
    })?;
    Ok(path)
}

/// Removes (yanks) a target from its channel: devices stop seeing it at
/// their next check. The bundle file stays for devices mid-download.
pub fn remove(
    repo: &Repo,
    channel: &str,
    name: &str,
    exp: Expiry,
    now: u64,
) -> Result<(), RepoError> {
    let path = target_path(channel, name);
    update_channel(repo, channel, exp, now, |t| {
        t.targets
            .remove(&path)
            .map(|_| ())
            .ok_or_else(|| RepoError::Usage(format!("channel {channel} lists no {path}")))
    })
}

/// Pauses or resumes a target's rollout.
pub fn set_paused(
    repo: &Repo,
    channel: &str,
    name: &str,
    paused: bool,
    exp: Expiry,
    now: u64,
) -> Result<(), RepoError> {
    let path = target_path(channel, name);
    update_channel(repo, channel, exp, now, |t| {
        let f = t
            .targets
            .get_mut(&path)
            .ok_or_else(|| RepoError::Usage(format!("channel {channel} lists no {path}")))?;
        let mut m = crate::channel::meta::parse_custom(&f.custom)
            .map_err(|e| RepoError::Usage(format!("{path}: {e}")))?;
        m.paused = paused;
        f.custom["tandem"] = serde_json::to_value(&m).expect("plain data");
        Ok(())
    })
}

fn target_path(channel: &str, name: &str) -> String {
    if name.contains('/') {
        name.to_string()
    } else {
        format!("{channel}/{name}")
    }
}

/// Loads the channel role, applies `change`, signs version+1, and
/// publishes a snapshot and timestamp for it.
fn update_channel(
    repo: &Repo,
    channel: &str,
    exp: Expiry,
    now: u64,
    change: impl FnOnce(&mut Targets) -> Result<(), RepoError>,
) -> Result<(), RepoError> {
    let (snap, v, mut t) = channel_role(repo, channel)?;
    change(&mut t)?;
    t.version = v + 1;
    t.expires = expires(now, exp.targets);
    repo.write_meta(
        &format!("{}.{channel}.json", v + 1),
        &sign(&t, &[&repo.key(channel)?]),
    )?;
    let mut meta = snap.meta.clone();
    meta.insert(format!("{channel}.json"), meta_of(v + 1, None));
    publish_snapshot(repo, snap.version + 1, meta, exp, now)
}

/// Replaces the root key with a new one: root version+1, signed by the old
/// and the new key, so devices follow the chain. Returns the new version.
pub fn rotate_root(repo: &Repo, exp: Expiry, now: u64) -> Result<u64, RepoError> {
    let (v, mut root): (u64, Root) = repo.latest_root()?;
    let old = repo.key("root")?;
    let new = SigningKey::from_bytes(&crate::sys::random_seed().map_err(|e| RepoError::Io {
        path: "/dev/urandom".into(),
        source: e,
    })?);
    let (old_id, _) = tuf_key(&old);
    let (new_id, new_key) = tuf_key(&new);
    root.keys.remove(&old_id);
    root.keys.insert(new_id.clone(), new_key);
    root.roles.insert(
        "root".into(),
        Role {
            keyids: vec![new_id],
            threshold: 1,
            unknown: Map::new(),
        },
    );
    root.version = v + 1;
    root.expires = expires(now, exp.root);
    let bytes = sign(&root, &[&old, &new]);
    // The new key first (kept beside the old one), then the metadata.
    repo.replace_key("root", &new)?;
    repo.write_meta(&format!("{}.root.json", v + 1), &bytes)?;
    repo.write_meta("root.json", &bytes)?;
    Ok(v + 1)
}

/// The current snapshot, and the version and signed part of `channel`'s role in it.
fn channel_role(repo: &Repo, channel: &str) -> Result<(Snapshot, u64, Targets), RepoError> {
    check_channel(channel)?;
    let snap = repo.snapshot()?;
    let file = format!("{channel}.json");
    let v = snap.meta.get(&file).map(|m| m.version).ok_or_else(|| {
        RepoError::Usage(format!(
            "the repository has no channel {channel:?} (init --channel {channel})"
        ))
    })?;
    let t = repo.read_signed(&format!("{v}.{file}"))?;
    Ok((snap, v, t))
}

/// What a channel lists, for `tandem repo list`.
pub fn list(repo: &Repo, channel: &str) -> Result<Vec<(String, Value)>, RepoError> {
    let (_, _, t) = channel_role(repo, channel)?;
    Ok(t.targets.into_iter().map(|(p, f)| (p, f.custom)).collect())
}

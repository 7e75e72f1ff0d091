//! What the channel loop keeps between checks: `channel.json` in the state
//! directory, written atomically. Data, never trust: the TUF metadata has
//! its own store, and the keys that judge it ship in the image.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const FILE: &str = "channel.json";
const SCHEMA: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelRecord {
    pub schema: u32,
    /// This device's place in every rollout (see `waves`), drawn once.
    pub seed: u32,
    /// The newest time this device has trusted (Unix seconds): a clock
    /// that reads earlier (no real-time clock, a reset battery) is raised
    /// to it before metadata expiry is judged.
    #[serde(default)]
    pub clock_floor: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_check: Option<Check>,
    /// The update the last successful check found, and what it waits for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub found: Option<Found>,
    /// The version the loop staged (installed, unarmed until its strategy
    /// lets it reboot); a group installed by hand is never rebooted into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staged: Option<semver::Version>,
    /// A FleetLock slot this device asked for or holds: released
    /// (steady-state) once the booted group is committed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock: Option<Lock>,
    /// Since when a reboot is postponed for logged-in users (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postponed_since: Option<u64>,
    #[serde(default)]
    pub counters: Counters,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    pub at: String,
    pub ok: bool,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Found {
    pub version: semver::Version,
    pub path: String,
    /// When this device's wave opens (RFC 3339), if it has not yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opens_at: Option<String>,
    /// What the update waits for, for a person.
    pub waiting_for: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lock {
    pub group: String,
    pub id: String,
    pub since: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Counters {
    pub checks: u64,
    pub check_failures: u64,
    pub installs: u64,
    pub install_failures: u64,
    pub bytes_fetched: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a channel record ({message}); remove it to start afresh")]
    Parse { path: PathBuf, message: String },
}

impl ChannelRecord {
    pub fn new(seed: u32) -> ChannelRecord {
        ChannelRecord {
            schema: SCHEMA,
            seed,
            clock_floor: 0,
            last_check: None,
            found: None,
            staged: None,
            lock: None,
            postponed_since: None,
            counters: Counters::default(),
        }
    }

    pub fn parse(bytes: &[u8], path: &Path) -> Result<ChannelRecord, RecordError> {
        let r: ChannelRecord = serde_json::from_slice(bytes).map_err(|e| RecordError::Parse {
            path: path.into(),
            message: e.to_string(),
        })?;
        if r.schema != SCHEMA || r.seed >= super::waves::SEED_RANGE {
            return Err(RecordError::Parse {
                path: path.into(),
                message: format!("schema {} / seed {}", r.schema, r.seed),
            });
        }
        Ok(r)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("plain data");
        v.push(b'\n');
        v
    }
}

pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE)
}

/// The record, or `None` if there is none yet.
pub fn load(state_dir: &Path) -> Result<Option<ChannelRecord>, RecordError> {
    let p = path(state_dir);
    match std::fs::read(&p) {
        Ok(b) => ChannelRecord::parse(&b, &p).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(RecordError::Io { path: p, source }),
    }
}

pub fn save(state_dir: &Path, r: &ChannelRecord) -> Result<(), RecordError> {
    let p = path(state_dir);
    crate::sys::write_atomic(&p, &r.to_bytes())
        .map_err(|source| RecordError::Io { path: p, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(load(d.path()).unwrap(), None);
        let mut r = ChannelRecord::new(42);
        r.staged = Some(semver::Version::new(1, 1, 0));
        save(d.path(), &r).unwrap();
        assert_eq!(load(d.path()).unwrap(), Some(r));
        std::fs::write(path(d.path()), b"{\"schema\": 1, \"seed\": 10000}").unwrap();
        let e = load(d.path()).unwrap_err().to_string();
        assert!(
            e.contains("channel.json") && e.contains("seed 10000"),
            "{e}"
        );
    }
}

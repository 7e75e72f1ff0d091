//! The deployment action this device works on, persisted in the state
//! directory (`hawkbit.json`) so that the result after the reboot reaches
//! the server that asked for it. Written before each step it describes
//! (temp file, fsync, rename, like the state store).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::slot::SlotGroup;

pub const FILE_NAME: &str = "hawkbit.json";
pub const SCHEMA: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("hawkBit action record {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "hawkBit action record {path} is unreadable ({message}); move it away to forget the action"
    )]
    Corrupt { path: PathBuf, message: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionRecord {
    pub schema: u32,
    /// The controller resource the action came from: a record made for
    /// another server or device is never reported to this one.
    pub controller: String,
    pub action_id: String,
    /// The version the server named for the artifact (informational).
    pub version: Option<String>,
    pub phase: Phase,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Phase {
    /// `scheduled` was sent: waiting for the maintenance window.
    Scheduled,
    /// The install started (written before the first byte is fetched).
    Installing { started_at: String },
    /// Installed into `target` and armed at `armed_at`; the final result
    /// comes after the reboot and the boot check.
    Armed { target: SlotGroup, armed_at: String },
    /// The final result; `sent` once the server took it.
    Done {
        success: bool,
        detail: String,
        sent: bool,
    },
}

impl ActionRecord {
    pub fn new(controller: &str, action_id: &str, version: Option<String>, phase: Phase) -> Self {
        ActionRecord {
            schema: SCHEMA,
            controller: controller.to_string(),
            action_id: action_id.to_string(),
            version,
            phase,
        }
    }

    pub fn parse(b: &[u8], path: &Path) -> Result<ActionRecord, RecordError> {
        let r: ActionRecord = serde_json::from_slice(b).map_err(|e| RecordError::Corrupt {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        if r.schema != SCHEMA {
            return Err(RecordError::Corrupt {
                path: path.to_path_buf(),
                message: format!("schema {} (this agent reads {SCHEMA})", r.schema),
            });
        }
        Ok(r)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("record serializes");
        v.push(b'\n');
        v
    }
}

pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE_NAME)
}

/// The record in `state_dir`, if there is one.
pub fn load(state_dir: &Path) -> Result<Option<ActionRecord>, RecordError> {
    let p = path(state_dir);
    match std::fs::read(&p) {
        Ok(b) => ActionRecord::parse(&b, &p).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(RecordError::Io { path: p, source }),
    }
}

pub fn save(state_dir: &Path, r: &ActionRecord) -> Result<(), RecordError> {
    let p = path(state_dir);
    std::fs::create_dir_all(state_dir).map_err(|source| RecordError::Io {
        path: state_dir.to_path_buf(),
        source,
    })?;
    crate::sys::write_atomic(&p, &r.to_bytes())
        .map_err(|source| RecordError::Io { path: p, source })
}

/// Forgets the action (no record is no action).
pub fn clear(state_dir: &Path) -> Result<(), RecordError> {
    let p = path(state_dir);
    match std::fs::remove_file(&p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(RecordError::Io { path: p, source: e })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), None);
        let r = ActionRecord::new(
            "http://h/DEFAULT/controller/v1/d",
            "7",
            Some("1.1.0".into()),
            Phase::Armed {
                target: SlotGroup::B,
                armed_at: "2026-12-02T07:00:00Z".into(),
            },
        );
        save(dir.path(), &r).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some(r.clone()));
        let text = String::from_utf8(r.to_bytes()).unwrap();
        assert!(text.contains("\"phase\": \"armed\""), "{text}");
        std::fs::write(
            path(dir.path()),
            text.replace("\"schema\": 1", "\"schema\": 2"),
        )
        .unwrap();
        assert!(matches!(load(dir.path()), Err(RecordError::Corrupt { .. })));
        std::fs::write(path(dir.path()), "{").unwrap();
        assert!(matches!(load(dir.path()), Err(RecordError::Corrupt { .. })));
    }
}

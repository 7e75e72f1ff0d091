//! The on-disk state store: one JSON document, replaced atomically.
//!
//! See docs/state.md. The file carries a schema number; a file this agent
//! cannot read is reported, never silently reset.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fsm::{self, Event, SlotState, TransitionError};
use crate::slot::{SlotClass, SlotGroup};

pub const SCHEMA: u32 = 1;
pub const FILE_NAME: &str = "state.json";
pub const LOCK_NAME: &str = "lock";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(
        "state file {path} has schema {found}; this agent reads schema {SCHEMA}. Upgrade the agent, or move the file away to start over"
    )]
    UnknownSchema { path: PathBuf, found: u64 },
    #[error(
        "state file {path} is corrupt ({message}); refusing to reset it. Inspect it, then move it away to start over"
    )]
    Corrupt { path: PathBuf, message: String },
    #[error("state store {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("another tandem operation holds {0}; wait for it to finish")]
    Busy(PathBuf),
    #[error("slot {slot}: {source}")]
    Transition {
        slot: SlotGroup,
        source: TransitionError,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    pub schema: u32,
    pub slots: BTreeMap<SlotGroup, SlotRecord>,
    /// The lowest security epoch this device still accepts.
    pub security_epoch_floor: u64,
    pub last_operation: Option<Operation>,
    /// Versions that failed on this device, newest last; an update agent
    /// never applies them again by itself.
    #[serde(default)]
    pub failures: Vec<Failure>,
}

/// A version that failed its trial on this device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Failure {
    pub version: Option<semver::Version>,
    pub slot: SlotGroup,
    pub at: String,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<crate::health::CheckResult>,
}

/// How many failures the state keeps.
pub const MAX_FAILURES: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlotRecord {
    pub state: SlotState,
    pub version: Option<semver::Version>,
    pub security_epoch: Option<u64>,
    pub installed_at: Option<String>,
    pub images: Vec<ImageRecord>,
    /// Whether the bootloader was told to try this installed group. An
    /// install that was cut off between "installed" and "armed" leaves
    /// `false`: the group can be armed again (`tandem arm`), and its
    /// absence from the bootloader is no failed trial.
    #[serde(default)]
    pub armed: bool,
    /// The kernel parameters the group boots with (its dm-verity root
    /// hash), kept so that it can be armed again without the bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verity_args: Option<String>,
}

impl Default for SlotRecord {
    fn default() -> Self {
        SlotRecord {
            state: SlotState::Unknown,
            version: None,
            security_epoch: None,
            installed_at: None,
            images: vec![],
            armed: false,
            verity_args: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageRecord {
    pub slot_class: SlotClass,
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OperationKind {
    Install,
    MarkGood,
    MarkBad,
    Rollback,
    BootCheck,
    Arm,
}

impl OperationKind {
    /// The name used in JSON and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            OperationKind::Install => "install",
            OperationKind::MarkGood => "mark-good",
            OperationKind::MarkBad => "mark-bad",
            OperationKind::Rollback => "rollback",
            OperationKind::BootCheck => "boot-check",
            OperationKind::Arm => "arm",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OperationResult {
    /// Started and not finished: still running, or cut off by a crash.
    InProgress,
    Succeeded,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Operation {
    pub kind: OperationKind,
    pub source: String,
    pub target: Option<SlotGroup>,
    pub version: Option<semver::Version>,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub result: OperationResult,
    pub error: Option<String>,
    /// Health check results of a boot check.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<crate::health::CheckResult>,
    /// What an adaptive install fetched and reused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer: Option<Transfer>,
}

/// What an adaptive install fetched and reused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    /// Bundle bytes transferred (the head, chunk tables, payload ranges).
    pub fetched: u64,
    /// Image bytes already on the device: taken from the booted slot, or
    /// left in place in the target by an earlier attempt.
    pub reused: u64,
    /// Range requests made.
    pub requests: u64,
    /// Whether an image was fetched whole (nothing, or too little, to
    /// reuse).
    pub full: bool,
}

impl std::ops::AddAssign for Transfer {
    fn add_assign(&mut self, o: Transfer) {
        self.fetched += o.fetched;
        self.reused += o.reused;
        self.requests += o.requests;
        self.full |= o.full;
    }
}

impl Default for State {
    fn default() -> Self {
        State {
            schema: SCHEMA,
            slots: SlotGroup::ALL
                .iter()
                .map(|&g| (g, SlotRecord::default()))
                .collect(),
            security_epoch_floor: 0,
            last_operation: None,
            failures: vec![],
        }
    }
}

impl State {
    /// Parses a state document; `path` is only for messages.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<State, StateError> {
        let corrupt = |message: String| StateError::Corrupt {
            path: path.to_path_buf(),
            message,
        };
        let v: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
        let schema = v
            .get("schema")
            .and_then(|s| s.as_u64())
            .ok_or_else(|| corrupt("no schema number".into()))?;
        if schema != SCHEMA as u64 {
            return Err(StateError::UnknownSchema {
                path: path.to_path_buf(),
                found: schema,
            });
        }
        let mut s: State = serde_json::from_value(v).map_err(|e| corrupt(e.to_string()))?;
        for g in SlotGroup::ALL {
            s.slots.entry(g).or_default();
        }
        Ok(s)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("state serializes");
        v.push(b'\n');
        v
    }

    pub fn slot(&self, g: SlotGroup) -> &SlotRecord {
        &self.slots[&g]
    }

    /// Records a failed version (keeping the newest MAX_FAILURES).
    pub fn record_failure(&mut self, f: Failure) {
        self.failures.push(f);
        let n = self.failures.len();
        if n > MAX_FAILURES {
            self.failures.drain(..n - MAX_FAILURES);
        }
    }

    /// The recorded failure of `version`, if it failed here before.
    pub fn failure_of(&self, version: &semver::Version) -> Option<&Failure> {
        self.failures
            .iter()
            .rev()
            .find(|f| f.version.as_ref() == Some(version))
    }

    /// Applies a state-machine event to one slot.
    pub fn apply(&mut self, g: SlotGroup, event: Event) -> Result<(), StateError> {
        let rec = self.slots.entry(g).or_default();
        rec.state = fsm::transition(rec.state, event)
            .map_err(|source| StateError::Transition { slot: g, source })?;
        Ok(())
    }
}

/// The state directory. Writes go through temp file, fsync, rename, fsync dir.
pub struct Store {
    dir: PathBuf,
}

/// Held while an operation runs; released on drop.
pub struct Lock {
    _file: File,
}

impl Store {
    pub fn new(dir: &Path) -> Store {
        Store {
            dir: dir.to_path_buf(),
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    fn io(&self, path: PathBuf) -> impl FnOnce(std::io::Error) -> StateError {
        move |source| StateError::Io { path, source }
    }

    /// Loads the state; a missing file is a fresh default state.
    pub fn load(&self) -> Result<State, StateError> {
        let path = self.path();
        match std::fs::read(&path) {
            Ok(b) => State::parse(&b, &path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(self.io(path)(e)),
        }
    }

    /// Saves the state (mode 0600, in a directory only its owner may enter).
    pub fn save(&self, state: &State) -> Result<(), StateError> {
        crate::sys::private_dir(&self.dir).map_err(self.io(self.dir.clone()))?;
        crate::sys::write_atomic(&self.path(), &state.to_bytes()).map_err(self.io(self.path()))
    }

    /// Takes the exclusive operation lock, or fails at once if it is held.
    /// The lock file (0600) sits in the state directory (0700), where no
    /// other user can open it, so no other user can hold it either.
    pub fn lock(&self) -> Result<Lock, StateError> {
        crate::sys::private_dir(&self.dir).map_err(self.io(self.dir.clone()))?;
        let path = self.dir.join(LOCK_NAME);
        let file = crate::sys::open_lock_file(&path).map_err(self.io(path.clone()))?;
        match file.try_lock() {
            Ok(()) => Ok(Lock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(StateError::Busy(path)),
            Err(std::fs::TryLockError::Error(e)) => Err(self.io(path)(e)),
        }
    }

    /// Whether some process holds the operation lock right now.
    pub fn is_locked(&self) -> bool {
        let path = self.dir.join(LOCK_NAME);
        match File::options().write(true).open(&path) {
            Ok(f) => matches!(f.try_lock(), Err(std::fs::TryLockError::WouldBlock)),
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let st = Store::new(&dir.path().join("sub"));
        assert_eq!(st.load().unwrap(), State::default());
        let mut s = State::default();
        s.apply(SlotGroup::B, Event::InstallStarted).unwrap();
        s.security_epoch_floor = 3;
        st.save(&s).unwrap();
        assert_eq!(st.load().unwrap(), s);
        assert_eq!(
            std::fs::read_dir(dir.path().join("sub")).unwrap().count(),
            1
        );
    }

    #[test]
    fn corrupt_and_unknown_schema_are_errors() {
        let p = Path::new("/x/state.json");
        let cases: &[(&[u8], &str)] = &[
            (b"", "corrupt"),
            (b"{\"schema\": 1", "corrupt"),
            (b"{}", "no schema"),
            (b"{\"schema\": 2}", "schema 2"),
            (b"{\"schema\": 1, \"slots\": {}, \"security_epoch_floor\": 0, \"last_operation\": null, \"x\": 1}", "unknown field"),
        ];
        for (bytes, needle) in cases {
            let e = State::parse(bytes, p).unwrap_err().to_string();
            assert!(e.contains(needle), "{needle:?} in {e}");
            assert!(e.contains("/x/state.json"), "{e}");
        }
    }

    #[test]
    fn lock_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let st = Store::new(dir.path());
        let l = st.lock().unwrap();
        assert!(st.is_locked());
        assert!(matches!(st.lock(), Err(StateError::Busy(_))));
        drop(l);
        assert!(!st.is_locked());
        st.lock().unwrap();
    }

    #[test]
    fn operation_names_match_json() {
        use OperationKind::*;
        for k in [Install, MarkGood, MarkBad, Rollback, BootCheck, Arm] {
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
    }

    #[test]
    fn bad_transition_is_an_error() {
        let mut s = State::default();
        assert!(s.apply(SlotGroup::A, Event::InstallCompleted).is_err());
    }
}

//! Slot state machine: which slot states an event may move between.
//!
//! Pure. Every transition returns a `Result`; an event that makes no sense
//! in a state is an error for the caller to report, never a panic.

use serde::{Deserialize, Serialize};

/// What the agent knows about one slot group's contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SlotState {
    /// Never written by this agent (for example the factory image).
    Unknown,
    /// Being written, or a write failed: must never be booted.
    Invalid,
    /// Fully written, synced and verified; not yet booted and committed.
    Installed,
    /// Booted and committed.
    Good,
    /// Tried and failed, or marked bad by an operator.
    Bad,
}

impl SlotState {
    pub fn as_str(self) -> &'static str {
        match self {
            SlotState::Unknown => "unknown",
            SlotState::Invalid => "invalid",
            SlotState::Installed => "installed",
            SlotState::Good => "good",
            SlotState::Bad => "bad",
        }
    }

    /// Whether a bootloader may be pointed at this slot.
    pub fn bootable(self) -> bool {
        matches!(
            self,
            SlotState::Installed | SlotState::Good | SlotState::Unknown
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Writing into this (inactive) slot begins.
    InstallStarted,
    /// All images written, synced and their hashes matched.
    InstallCompleted,
    /// Writing failed or was refused midway.
    InstallFailed,
    /// Health checks passed or an operator committed the slot.
    MarkedGood,
    /// Health checks failed or an operator rejected the slot.
    MarkedBad,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("slot state {from} does not allow {event:?}")]
pub struct TransitionError {
    pub from: &'static str,
    pub event: Event,
}

pub fn transition(from: SlotState, event: Event) -> Result<SlotState, TransitionError> {
    use Event::*;
    use SlotState::*;
    let to = match (from, event) {
        (_, InstallStarted) => Invalid,
        (Invalid, InstallCompleted) => Installed,
        (Invalid, InstallFailed) => Invalid,
        // Bad too: an operator who marked the running group bad (or whose
        // device booted it as the bootloader's last resort) may commit it.
        (Installed | Good | Unknown | Bad, MarkedGood) => Good,
        (Invalid, MarkedBad) => Invalid,
        (Unknown | Installed | Good | Bad, MarkedBad) => Bad,
        _ => {
            return Err(TransitionError {
                from: from.as_str(),
                event,
            });
        }
    };
    Ok(to)
}

#[cfg(test)]
mod tests {
    use super::Event::*;
    use super::SlotState::*;
    use super::*;

    #[test]
    fn every_transition() {
        let states = [Unknown, Invalid, Installed, Good, Bad];
        let events = [
            InstallStarted,
            InstallCompleted,
            InstallFailed,
            MarkedGood,
            MarkedBad,
        ];
        // Rows: states in the order above; columns: events in the order above.
        let table: [[Option<SlotState>; 5]; 5] = [
            [Some(Invalid), None, None, Some(Good), Some(Bad)],
            [
                Some(Invalid),
                Some(Installed),
                Some(Invalid),
                None,
                Some(Invalid),
            ],
            [Some(Invalid), None, None, Some(Good), Some(Bad)],
            [Some(Invalid), None, None, Some(Good), Some(Bad)],
            [Some(Invalid), None, None, Some(Good), Some(Bad)],
        ];
        for (i, &s) in states.iter().enumerate() {
            for (j, &e) in events.iter().enumerate() {
                assert_eq!(transition(s, e).ok(), table[i][j], "{s:?} + {e:?}");
            }
        }
    }

    #[test]
    fn only_finished_installs_become_bootable() {
        assert!(!Invalid.bootable());
        assert!(!Bad.bootable());
        assert!(Installed.bootable());
    }
}

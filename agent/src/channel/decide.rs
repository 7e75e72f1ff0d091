//! The channel loop's decisions: pure functions of what the channel
//! offers, the device's state and the clock. The loop (`ops::channel`)
//! does what they say; the tables in `decide_tests.rs` say why.
//!
//! The loop never arms a group at install time: an install stages it
//! (written, verified, unarmed), and [`step`] arms it when the strategy's
//! [`Gate`] opens. So a reboot outside the window, or before the lock is
//! held, still boots the old group.

use semver::Version;

use super::waves;
use super::Offer;
use crate::fsm::SlotState;
use crate::slot::SlotGroup;
use crate::state::State;

/// The device as the decisions see it.
#[derive(Debug, Clone, Copy)]
pub struct Device<'a> {
    pub compatible: &'a str,
    pub booted: Option<SlotGroup>,
    pub state: &'a State,
    /// The running version (the booted group's record, else the image's).
    pub running: Option<&'a Version>,
    pub seed: u32,
    /// What the loop staged (`channel.json`).
    pub staged: Option<&'a Version>,
}

/// Which bundle to take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// Install this one now.
    Take(Offer),
    /// The newest applicable bundle waits for this device's wave
    /// (`None`: no wave of the plan covers it).
    Wait { offer: Offer, opens_at: Option<u64> },
    /// The newest applicable bundle's rollout is paused.
    Paused(Offer),
    /// Nothing newer that this device may take.
    UpToDate,
}

/// Why a target was passed over, for the log and `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    pub path: String,
    pub why: String,
    /// The version failed on this device (it is never taken again).
    pub failed_here: bool,
}

/// Picks the newest applicable target: for this device, newer than the
/// running version, not failed here, epoch not below the floor; the
/// newest of those whose wave is open and not paused is taken.
pub fn choose(offers: &[Offer], d: &Device<'_>, now: u64) -> (Choice, Vec<Skip>) {
    let mut skips = Vec::new();
    let mut ok: Vec<&Offer> = Vec::new();
    for o in offers {
        let m = &o.meta;
        let why = if m.compatible != d.compatible {
            Some(format!(
                "for {:?}, this device is {:?}",
                m.compatible, d.compatible
            ))
        } else if d.running.is_some_and(|r| m.version <= *r) {
            None // older or the same: not worth a line
        } else if let Some(f) = d.state.failure_of(&m.version) {
            Some(format!(
                "passed over {}: it failed on this device at {}: {}",
                m.version, f.at, f.reason
            ))
        } else if m.security_epoch < d.state.security_epoch_floor {
            Some(format!(
                "security epoch {} is below this device's floor {}",
                m.security_epoch, d.state.security_epoch_floor
            ))
        } else {
            ok.push(o);
            continue;
        };
        if let Some(why) = why {
            skips.push(Skip {
                path: o.path.clone(),
                why,
                failed_here: d.state.failure_of(&m.version).is_some(),
            });
        }
    }
    ok.sort_by(|a, b| {
        b.meta
            .version
            .cmp(&a.meta.version)
            .then(a.path.cmp(&b.path))
    });
    let Some(newest) = ok.first() else {
        return (Choice::UpToDate, skips);
    };
    for o in &ok {
        let opens = waves::opens_at(&o.meta.waves, d.seed);
        if !o.meta.paused && opens.is_some_and(|t| t <= now) {
            return (Choice::Take((*o).clone()), skips);
        }
    }
    let choice = if newest.meta.paused {
        Choice::Paused((*newest).clone())
    } else {
        Choice::Wait {
            offer: (*newest).clone(),
            opens_at: waves::opens_at(&newest.meta.waves, d.seed),
        }
    };
    (choice, skips)
}

/// Whether the strategy lets the device reboot now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    Open,
    /// Not now: why, and when it may open (if known).
    Closed {
        why: String,
        until: Option<u64>,
    },
    /// Open once the FleetLock server grants a slot.
    NeedsLock,
}

/// The loop's next step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing to do until something changes; why.
    Idle(String),
    /// Waiting for something outside the loop (the boot check, a window,
    /// `tandem apply`); why, and until when if known.
    Wait { why: String, until: Option<u64> },
    /// The booted group is committed: tell the FleetLock server.
    ReleaseLock,
    /// Stage this bundle into the other group (unarmed).
    Install(Offer),
    /// Arm the staged group (after taking the lock if `lock`) and reboot.
    Apply { group: SlotGroup, lock: bool },
}

/// What to do next, given the choice of [`choose`], the strategy's gate and
/// whether a FleetLock slot is still held.
pub fn step(d: &Device<'_>, choice: &Choice, gate: &Gate, lock_held: bool) -> Step {
    let Some(booted) = d.booted else {
        return Step::Idle(
            "the booted slot group is unknown (no slot parameter on the kernel command line)"
                .into(),
        );
    };
    if d.state.slot(booted).state == SlotState::Installed {
        return Step::Wait {
            why: format!("the boot check has not committed slot group {booted} yet"),
            until: None,
        };
    }
    if lock_held {
        return Step::ReleaseLock;
    }
    let other = booted.other();
    let rec = d.state.slot(other);
    let staged = (rec.state == SlotState::Installed)
        .then_some(rec.version.as_ref())
        .flatten()
        .filter(|v| d.running.is_none_or(|r| *v > r));
    if let (Some(v), Choice::Take(o)) = (staged, choice) {
        if o.meta.version > *v {
            return Step::Install(o.clone());
        }
    }
    if let Some(v) = staged {
        if d.staged != Some(v) {
            return Step::Wait {
                why: format!(
                    "slot group {other} holds {v}, installed by hand; reboot or `tandem arm` is up to whoever installed it"
                ),
                until: None,
            };
        }
        return match gate {
            Gate::Open => Step::Apply {
                group: other,
                lock: false,
            },
            Gate::NeedsLock => Step::Apply {
                group: other,
                lock: true,
            },
            Gate::Closed { why, until } => Step::Wait {
                why: format!("{v} is staged in slot group {other}; {why}"),
                until: *until,
            },
        };
    }
    match choice {
        Choice::Take(o) => Step::Install(o.clone()),
        Choice::UpToDate => Step::Idle("up to date".into()),
        Choice::Paused(o) => Step::Idle(format!("the rollout of {} is paused", o.meta.version)),
        Choice::Wait {
            offer,
            opens_at: Some(t),
        } => Step::Wait {
            why: format!(
                "{} waits for this device's wave, which opens at {}",
                offer.meta.version,
                crate::timefmt::rfc3339(*t)
            ),
            until: Some(*t),
        },
        Choice::Wait { offer, .. } => Step::Idle(format!(
            "no wave of {}'s rollout reaches this device yet",
            offer.meta.version
        )),
    }
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;

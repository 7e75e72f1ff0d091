//! Boot control operations on a running system: commit (`mark-good`),
//! reject (`mark-bad`) and `rollback`. Arming after an install lives in
//! `install`.
//!
//! Order of effects: the bootloader is changed first, then the state store
//! records it. The bootloader decides what boots, so a power cut between the
//! two leaves a record that lags behind the truth (reconciled on the next
//! boot), never a record that claims a switch the bootloader never made.

use crate::boot::{BootError, Bootloader, Mark};
use crate::config::Settings;
use crate::fsm::{Event, SlotState};
use crate::health::{CheckResult, HealthSettings};
use crate::slot::{booted_from_cmdline, SlotError, SlotGroup};
use crate::state::{Failure, Operation, OperationKind, OperationResult, State, StateError, Store};
use crate::trial::{self, BootFacts, Decision};

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("bootloader: {0}")]
    Boot(#[from] BootError),
    #[error(transparent)]
    Slot(#[from] SlotError),
    #[error("cannot tell which slot is running: the kernel command line has no {0}=a|b")]
    BootedUnknown(String),
    #[error("refused: {0}")]
    Refused(String),
    #[error(
        "watchdog {path}: {source}; check [health] watchdog (the device must exist and not be held by another process)"
    )]
    Watchdog {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// What `boot-check` found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootCheck {
    Normal {
        booted: SlotGroup,
    },
    Pending {
        armed: SlotGroup,
    },
    Unhealthy {
        booted: SlotGroup,
    },
    Committed {
        booted: SlotGroup,
        checks: usize,
    },
    FellBack {
        failed: SlotGroup,
        version: Option<semver::Version>,
    },
    Failed {
        booted: SlotGroup,
        reason: String,
        reboot: bool,
    },
}

/// What a control operation needs from the outside world.
pub struct Control<'a> {
    pub settings: &'a Settings,
    pub cmdline: String,
    pub now: u64,
    pub boot: Option<&'a mut dyn Bootloader>,
}

impl Control<'_> {
    fn booted(&self) -> Result<SlotGroup, ControlError> {
        booted_from_cmdline(&self.cmdline, &self.settings.slot_parameter)?
            .ok_or_else(|| ControlError::BootedUnknown(self.settings.slot_parameter.clone()))
    }

    /// Records the operation as the last one and persists the state, once.
    fn record(
        &self,
        store: &Store,
        state: &mut State,
        kind: OperationKind,
        target: SlotGroup,
        error: Option<String>,
        checks: Vec<CheckResult>,
    ) -> Result<(), ControlError> {
        let now = crate::timefmt::rfc3339(self.now);
        state.last_operation = Some(Operation {
            kind,
            source: String::new(),
            target: Some(target),
            version: state.slot(target).version.clone(),
            started_at: now.clone(),
            finished_at: Some(now),
            result: if error.is_some() {
                OperationResult::Failed
            } else {
                OperationResult::Succeeded
            },
            error,
            checks,
        });
        store.save(state)?;
        Ok(())
    }

    /// Commits the booted slot group: the bootloader makes it the default
    /// with no trial pending, then the state records it as good.
    pub fn mark_good(&mut self) -> Result<SlotGroup, ControlError> {
        let store = Store::new(&self.settings.state_dir);
        let _lock = store.lock()?;
        let mut state = store.load()?;
        let booted = self.booted()?;
        self.commit(&store, &mut state, booted, vec![])?;
        Ok(booted)
    }

    fn commit(
        &mut self,
        store: &Store,
        state: &mut State,
        booted: SlotGroup,
        checks: Vec<CheckResult>,
    ) -> Result<(), ControlError> {
        let before = state.slot(booted).state;
        crate::fsm::transition(before, Event::MarkedGood).map_err(|_| {
            ControlError::Refused(format!(
                "slot {booted} is recorded as {}; it cannot be committed",
                before.as_str()
            ))
        })?;
        if let Some(b) = self.boot.as_deref_mut() {
            b.set_primary(booted)?;
        }
        state.apply(booted, Event::MarkedGood)?;
        if let Some(e) = state.slot(booted).security_epoch {
            state.security_epoch_floor = state.security_epoch_floor.max(e);
        }
        let kind = if checks.is_empty() {
            OperationKind::MarkGood
        } else {
            OperationKind::BootCheck
        };
        self.record(store, state, kind, booted, None, checks)
    }

    /// After boot: decide (see `trial`) and act. On a trial boot the health
    /// checks run with the watchdog petted; success commits, failure marks
    /// the group bad (the bootloader then boots the other) and records it.
    pub fn boot_check(&mut self, health: &HealthSettings) -> Result<BootCheck, ControlError> {
        let store = Store::new(&self.settings.state_dir);
        let _lock = store.lock()?;
        let mut state = store.load()?;
        let booted = self.booted()?;
        let other = booted.other();
        let (other_mark, other_tries_left, primary) = match self.boot.as_deref_mut() {
            Some(b) => {
                let s = b.snapshot()?;
                let (mark, tries) = s.slots.get(&other).copied().unzip();
                (mark, tries.flatten(), s.primary)
            }
            None => (None, None, None),
        };
        let facts = BootFacts {
            booted,
            booted_state: state.slot(booted).state,
            other_state: state.slot(other).state,
            other_mark,
            other_tries_left,
            primary,
        };
        let decision = trial::decide(&facts);
        tracing::info!(?facts, ?decision, "boot check");
        let now = crate::timefmt::rfc3339(self.now);
        match decision {
            Decision::Normal => Ok(BootCheck::Normal { booted }),
            Decision::PendingReboot { armed } => Ok(BootCheck::Pending { armed }),
            Decision::BootedUnhealthy => Ok(BootCheck::Unhealthy { booted }),
            Decision::FellBack { failed } => {
                if let Some(b) = self.boot.as_deref_mut() {
                    b.set_state(failed, Mark::Bad)?;
                }
                let version = state.slot(failed).version.clone();
                state.apply(failed, Event::MarkedBad)?;
                state.record_failure(Failure {
                    version: version.clone(),
                    slot: failed,
                    at: now,
                    reason: format!(
                        "the bootloader fell back to slot {booted}: the trial boot of slot {failed} never committed (kernel panic, hang, failed checks or power loss before commit)"
                    ),
                    checks: vec![],
                });
                self.record(
                    &store,
                    &mut state,
                    OperationKind::BootCheck,
                    failed,
                    None,
                    vec![],
                )?;
                Ok(BootCheck::FellBack { failed, version })
            }
            Decision::Trial => {
                // Armed only for the trial: a hang from here on resets the
                // board, and the bootloader's spent try makes it fall back.
                let mut watchdog = match &health.watchdog {
                    Some(p) => Some(crate::sys::Watchdog::open(p).map_err(|source| {
                        ControlError::Watchdog {
                            path: p.clone(),
                            source,
                        }
                    })?),
                    None => None,
                };
                let results = crate::health::run_all(health, &mut || {
                    if let Some(w) = watchdog.as_mut() {
                        w.pet();
                    }
                });
                let failed = results.iter().find(|r| !r.passed).cloned();
                match failed {
                    None => {
                        let n = results.len();
                        self.commit(&store, &mut state, booted, results)?;
                        if let (Some(w), Some(path)) = (watchdog, &health.watchdog) {
                            w.close_clean().map_err(|source| ControlError::Watchdog {
                                path: path.clone(),
                                source,
                            })?;
                        }
                        Ok(BootCheck::Committed { booted, checks: n })
                    }
                    Some(f) => {
                        let reason = format!("health check {:?} failed: {}", f.name, f.detail);
                        if let Some(b) = self.boot.as_deref_mut() {
                            b.set_state(booted, Mark::Bad)?;
                        }
                        let version = state.slot(booted).version.clone();
                        state.apply(booted, Event::MarkedBad)?;
                        state.record_failure(Failure {
                            version,
                            slot: booted,
                            at: now,
                            reason: reason.clone(),
                            checks: results.clone(),
                        });
                        self.record(
                            &store,
                            &mut state,
                            OperationKind::BootCheck,
                            booted,
                            Some(reason.clone()),
                            results,
                        )?;
                        // Keep the watchdog armed: if the reboot hangs, it resets.
                        std::mem::forget(watchdog);
                        Ok(BootCheck::Failed {
                            booted,
                            reason,
                            reboot: health.reboot_on_failure,
                        })
                    }
                }
            }
        }
    }

    /// Marks a slot group bad (default: the booted one) so the bootloader
    /// stops choosing it.
    pub fn mark_bad(&mut self, slot: Option<SlotGroup>) -> Result<SlotGroup, ControlError> {
        let store = Store::new(&self.settings.state_dir);
        let _lock = store.lock()?;
        let mut state = store.load()?;
        let g = match slot {
            Some(g) => g,
            None => self.booted()?,
        };
        if let Some(b) = self.boot.as_deref_mut() {
            b.set_state(g, Mark::Bad)?;
        }
        state.apply(g, Event::MarkedBad)?;
        self.record(&store, &mut state, OperationKind::MarkBad, g, None, vec![])?;
        Ok(g)
    }

    /// Makes the other slot group primary, if it is known to be good.
    pub fn rollback(&mut self) -> Result<SlotGroup, ControlError> {
        let store = Store::new(&self.settings.state_dir);
        let _lock = store.lock()?;
        let mut state = store.load()?;
        let booted = self.booted()?;
        let other = booted.other();
        let rec = state.slot(other);
        let why = match rec.state {
            SlotState::Good | SlotState::Unknown => None,
            SlotState::Invalid => Some(format!(
                "slot {other} is invalid (a write into it failed or was cut off); install an update into it instead"
            )),
            SlotState::Installed => Some(format!(
                "slot {other} holds {} but has never been booted and committed, so it is no known-good target; install with --reboot to try it",
                rec.version.as_ref().map_or("an image".into(), |v| v.to_string())
            )),
            SlotState::Bad => Some(format!("slot {other} is marked bad")),
        };
        if let Some(why) = why {
            return Err(ControlError::Refused(why));
        }
        let Some(b) = self.boot.as_deref_mut() else {
            return Err(ControlError::Refused(
                "boot backend \"none\" cannot switch slots; configure [boot] backend".into(),
            ));
        };
        if b.state(other)? == Mark::Bad {
            return Err(ControlError::Refused(format!(
                "the bootloader marks slot {other} bad"
            )));
        }
        b.set_primary(other)?;
        self.record(
            &store,
            &mut state,
            OperationKind::Rollback,
            other,
            None,
            vec![],
        )?;
        Ok(other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::abvars;
    use std::collections::BTreeMap;

    /// A bootloader over an in-memory variable map (pure logic only).
    #[derive(Default)]
    struct MemBoot(BTreeMap<String, String>);

    impl Bootloader for MemBoot {
        fn name(&self) -> &'static str {
            "mem"
        }
        fn primary(&mut self) -> Result<Option<SlotGroup>, BootError> {
            Ok(abvars::primary(&self.0))
        }
        fn set_primary(&mut self, g: SlotGroup) -> Result<(), BootError> {
            abvars::set_primary(&mut self.0, g);
            Ok(())
        }
        fn state(&mut self, g: SlotGroup) -> Result<Mark, BootError> {
            Ok(abvars::state(&self.0, g))
        }
        fn set_state(&mut self, g: SlotGroup, m: Mark) -> Result<(), BootError> {
            abvars::set_state(&mut self.0, g, m);
            Ok(())
        }
        fn arm(&mut self, g: SlotGroup, tries: u32) -> Result<(), BootError> {
            abvars::arm(&mut self.0, g, tries, 3).map_err(|e| BootError::Unsupported {
                backend: "mem",
                message: e.to_string(),
            })
        }
        fn tries_left(&mut self, g: SlotGroup) -> Result<Option<u32>, BootError> {
            Ok(abvars::tries_left(&self.0, g))
        }
        fn max_tries(&self) -> u32 {
            3
        }
    }

    fn settings(dir: &std::path::Path) -> Settings {
        let text = format!(
            "compatible = \"t\"\n[state]\ndirectory = \"{}\"\n[slots.a.rootfs]\ndevice = \"/x/a\"\n[slots.b.rootfs]\ndevice = \"/x/b\"\n",
            dir.display()
        );
        crate::config::parse(&[crate::config::Source {
            path: "t.toml".into(),
            text,
        }])
        .unwrap()
    }

    fn with_state(dir: &std::path::Path, b: SlotState) {
        let mut s = State::default();
        s.slots.get_mut(&SlotGroup::B).unwrap().state = b;
        Store::new(dir).save(&s).unwrap();
    }

    #[test]
    fn rollback_table() {
        use SlotState::*;
        for (other_state, allowed) in [
            (Good, true),
            (Unknown, true),
            (Installed, false),
            (Invalid, false),
            (Bad, false),
        ] {
            let d = tempfile::tempdir().unwrap();
            let s = settings(d.path());
            with_state(d.path(), other_state);
            let mut boot = MemBoot::default();
            abvars::set_primary(&mut boot.0, SlotGroup::A);
            let r = Control {
                settings: &s,
                cmdline: "tandem.slot=a".into(),
                now: 0,
                boot: Some(&mut boot),
            }
            .rollback();
            assert_eq!(r.is_ok(), allowed, "{other_state:?}: {r:?}");
            let primary = abvars::primary(&boot.0);
            assert_eq!(
                primary,
                Some(if allowed { SlotGroup::B } else { SlotGroup::A })
            );
        }
    }

    #[test]
    fn commit_after_trial_and_mark_bad() {
        let d = tempfile::tempdir().unwrap();
        let s = settings(d.path());
        with_state(d.path(), SlotState::Installed);
        let mut boot = MemBoot::default();
        abvars::arm(&mut boot.0, SlotGroup::B, 1, 3).unwrap();
        assert_eq!(abvars::simulate_boot(&mut boot.0), Some(SlotGroup::B));
        let mut c = Control {
            settings: &s,
            cmdline: "tandem.slot=b".into(),
            now: 0,
            boot: Some(&mut boot),
        };
        assert_eq!(c.mark_good().unwrap(), SlotGroup::B);
        assert_eq!(
            Store::new(d.path())
                .load()
                .unwrap()
                .slot(SlotGroup::B)
                .state,
            SlotState::Good
        );
        assert_eq!(c.mark_bad(None).unwrap(), SlotGroup::B);
        drop(c);
        assert_eq!(abvars::primary(&boot.0), Some(SlotGroup::A));
        let st = Store::new(d.path()).load().unwrap();
        assert_eq!(st.slot(SlotGroup::B).state, SlotState::Bad);
        assert_eq!(st.last_operation.unwrap().kind, OperationKind::MarkBad);
    }

    #[test]
    fn committing_an_invalid_slot_is_refused_and_changes_nothing() {
        let d = tempfile::tempdir().unwrap();
        let s = settings(d.path());
        with_state(d.path(), SlotState::Invalid);
        let mut boot = MemBoot::default();
        let r = Control {
            settings: &s,
            cmdline: "tandem.slot=b".into(),
            now: 0,
            boot: Some(&mut boot),
        }
        .mark_good();
        assert!(matches!(r, Err(ControlError::Refused(_))), "{r:?}");
        assert!(boot.0.is_empty(), "bootloader untouched");
    }
}

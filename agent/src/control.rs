//! Boot control operations on a running system: commit (`mark-good`),
//! reject (`mark-bad`) and `rollback`. Arming after an install lives in
//! `install`.
//!
//! Order of effects: the bootloader is changed first, then the state store
//! records it. The bootloader decides what boots, so a power cut between the
//! two leaves a record that lags behind the truth (reconciled on the next
//! boot), never a record that claims a switch the bootloader never made.

use crate::boot::{BootError, Bootloader, Mark, Snapshot};
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
    /// The other group is installed but was never armed (see
    /// [`Decision::NotArmed`]).
    NotArmed {
        installed: SlotGroup,
    },
    Failed {
        booted: SlotGroup,
        reason: String,
        reboot: bool,
    },
}

/// Whether `g` would boot if the bootloader came to it: its content is
/// whole (not invalid, not bad) and the bootloader has not ruled it out
/// (marked bad, or a trial with no tries left). Without a bootloader only
/// the content counts. Pure.
pub fn can_boot(state: &State, boot: Option<&Snapshot>, g: SlotGroup) -> bool {
    let whole = matches!(
        state.slot(g).state,
        SlotState::Good | SlotState::Unknown | SlotState::Installed
    );
    let allowed = boot.is_none_or(|s| {
        s.slots
            .get(&g)
            .is_none_or(|(m, tries)| *m == Mark::Good && tries.is_none_or(|n| n > 0))
    });
    whole && allowed
}

/// Why `g`'s content is not a place to boot, for messages.
fn why_not(state: &State, boot: Option<&Snapshot>, g: SlotGroup) -> String {
    let rec = state.slot(g);
    match rec.state {
        SlotState::Invalid => {
            format!("slot {g} is invalid (a write into it failed or was cut off)")
        }
        SlotState::Bad => format!("slot {g} is marked bad"),
        _ => match boot.and_then(|s| s.slots.get(&g)) {
            Some((Mark::Bad, _)) if !rec.armed && rec.state == SlotState::Installed => {
                format!("slot {g} is installed but not armed (tandem arm)")
            }
            Some((Mark::Bad, _)) => format!("the bootloader marks slot {g} bad"),
            Some((_, Some(0))) => format!("slot {g}'s trial has no tries left"),
            _ => format!("slot {g} cannot boot"),
        },
    }
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
            transfer: None,
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
        self.retire_below_floor(state, booted.other())?;
        let kind = if checks.is_empty() {
            OperationKind::MarkGood
        } else {
            OperationKind::BootCheck
        };
        self.record(store, state, kind, booted, None, checks)
    }

    /// The security-epoch floor binds fallbacks too: a group whose epoch is
    /// below it (an unknown epoch counts as 0) must not boot again, so it
    /// is marked bad in the bootloader and in the store.
    fn retire_below_floor(&mut self, state: &mut State, g: SlotGroup) -> Result<(), ControlError> {
        let rec = state.slot(g);
        let epoch = rec.security_epoch.unwrap_or(0);
        let floor = state.security_epoch_floor;
        if epoch >= floor || matches!(rec.state, SlotState::Invalid | SlotState::Bad) {
            return Ok(());
        }
        tracing::warn!(slot = %g, epoch, floor, "slot holds a security epoch below the floor: marking it bad");
        if let Some(b) = self.boot.as_deref_mut() {
            b.set_state(g, Mark::Bad)?;
        }
        state.apply(g, Event::MarkedBad)?;
        Ok(())
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
        let snap = match self.boot.as_deref_mut() {
            Some(b) => Some(b.snapshot()?),
            None => None,
        };
        let (other_mark, other_tries_left) = snap
            .as_ref()
            .and_then(|s| s.slots.get(&other).copied())
            .unzip();
        let facts = BootFacts {
            booted,
            booted_state: state.slot(booted).state,
            other_state: state.slot(other).state,
            other_mark,
            other_tries_left: other_tries_left.flatten(),
            other_armed: state.slot(other).armed,
            primary: snap.as_ref().and_then(|s| s.primary),
        };
        let decision = trial::decide(&facts);
        tracing::info!(?facts, ?decision, "boot check");
        let now = crate::timefmt::rfc3339(self.now);
        match decision {
            Decision::Normal => Ok(BootCheck::Normal { booted }),
            Decision::PendingReboot { armed } => Ok(BootCheck::Pending { armed }),
            Decision::NotArmed { installed } => Ok(BootCheck::NotArmed { installed }),
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
                        let mut reason = format!("health check {:?} failed: {}", f.name, f.detail);
                        // Falling back needs somewhere to fall back to.
                        let fallback = can_boot(&state, snap.as_ref(), other);
                        if !fallback {
                            reason += &format!(
                                "; {}, so the bootloader keeps booting slot {booted}",
                                why_not(&state, snap.as_ref(), other)
                            );
                        } else if let Some(b) = self.boot.as_deref_mut() {
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
                            reboot: health.reboot_on_failure && fallback,
                        })
                    }
                }
            }
        }
    }

    /// Marks a slot group bad (default: the booted one) so the bootloader
    /// stops choosing it. Refused when the other group could not boot
    /// either (the device would have nothing to boot) unless `force`.
    pub fn mark_bad(
        &mut self,
        slot: Option<SlotGroup>,
        force: bool,
    ) -> Result<SlotGroup, ControlError> {
        let store = Store::new(&self.settings.state_dir);
        let _lock = store.lock()?;
        let mut state = store.load()?;
        let g = match slot {
            Some(g) => g,
            None => self.booted()?,
        };
        let snap = match self.boot.as_deref_mut() {
            Some(b) => Some(b.snapshot()?),
            None => None,
        };
        if !force && !can_boot(&state, snap.as_ref(), g.other()) {
            return Err(ControlError::Refused(format!(
                "marking slot {g} bad would leave nothing to boot: {}. Install an update into slot {} first, or pass --force",
                why_not(&state, snap.as_ref(), g.other()),
                g.other()
            )));
        }
        if let Some(b) = self.boot.as_deref_mut() {
            b.set_state(g, Mark::Bad)?;
        }
        state.apply(g, Event::MarkedBad)?;
        self.record(&store, &mut state, OperationKind::MarkBad, g, None, vec![])?;
        Ok(g)
    }

    /// Arms the other group, installed but never armed (an install cut off
    /// between "installed" and "armed"), for a trial boot.
    pub fn arm(&mut self) -> Result<SlotGroup, ControlError> {
        let store = Store::new(&self.settings.state_dir);
        let _lock = store.lock()?;
        let mut state = store.load()?;
        let booted = self.booted()?;
        let other = booted.other();
        let rec = state.slot(other).clone();
        if rec.state != SlotState::Installed {
            return Err(ControlError::Refused(format!(
                "slot {other} is {}; only an installed, untried group can be armed (install an update into it)",
                rec.state.as_str()
            )));
        }
        let epoch = rec.security_epoch.unwrap_or(0);
        if epoch < state.security_epoch_floor {
            return Err(ControlError::Refused(format!(
                "slot {other} holds security epoch {epoch}, below this device's floor {}",
                state.security_epoch_floor
            )));
        }
        // The store is data: what it says must still be what the
        // initramfs boots, and verity must not be missing where required.
        if let Some(args) = &rec.verity_args {
            tandem_bootparams::Verity::parse_kernel_args(args).map_err(|e| {
                ControlError::Refused(format!(
                    "slot {other}'s recorded verity parameters: {e}; install it again"
                ))
            })?;
        } else if self.settings.require_verity {
            return Err(ControlError::Refused(format!(
                "slot {other} has no dm-verity parameters on record and [boot] require_verity is set; install it again"
            )));
        }
        let Some(b) = self.boot.as_deref_mut() else {
            return Err(ControlError::Refused(
                "boot backend \"none\" cannot arm a slot group; configure [boot] backend".into(),
            ));
        };
        crate::boot::arm_with_verity(
            b,
            other,
            rec.verity_args.as_deref(),
            self.settings.boot_tries,
        )?;
        state.slots.get_mut(&other).expect("both groups").armed = true;
        self.record(&store, &mut state, OperationKind::Arm, other, None, vec![])?;
        Ok(other)
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
        let epoch = rec.security_epoch.unwrap_or(0);
        if epoch < state.security_epoch_floor {
            return Err(ControlError::Refused(format!(
                "slot {other} holds security epoch {epoch}{}, below this device's floor {}; older epochs never boot again",
                if rec.security_epoch.is_none() { " (unknown, counted as 0)" } else { "" },
                state.security_epoch_floor
            )));
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
        fn set_verity(&mut self, g: SlotGroup, args: Option<&str>) -> Result<bool, BootError> {
            abvars::set_verity(&mut self.0, g, args);
            Ok(true)
        }
        fn can_pass_verity(&self) -> bool {
            true
        }
    }

    fn settings(dir: &std::path::Path) -> Settings {
        let text = format!(
            "compatible = \"t\"\n[state]\ndirectory = \"{}\"\n[slots.a.rootfs]\ndevice = \"/x/a\"\n[slots.b.rootfs]\ndevice = \"/x/b\"\n",
            dir.display()
        );
        crate::config::parse(&[crate::config::Source::image("t.toml", text)]).unwrap()
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
        assert_eq!(c.mark_bad(None, false).unwrap(), SlotGroup::B);
        drop(c);
        assert_eq!(abvars::primary(&boot.0), Some(SlotGroup::A));
        let st = Store::new(d.path()).load().unwrap();
        assert_eq!(st.slot(SlotGroup::B).state, SlotState::Bad);
        assert_eq!(st.last_operation.unwrap().kind, OperationKind::MarkBad);
    }

    fn control<'a>(s: &'a Settings, boot: &'a mut MemBoot, booted: &str) -> Control<'a> {
        Control {
            settings: s,
            cmdline: format!("tandem.slot={booted}"),
            now: 0,
            boot: Some(boot),
        }
    }

    fn save(dir: &std::path::Path, f: impl FnOnce(&mut State)) {
        let mut st = Store::new(dir).load().unwrap();
        f(&mut st);
        Store::new(dir).save(&st).unwrap();
    }

    #[test]
    fn can_boot_table() {
        use SlotState::*;
        let snap = |m: Mark, t: Option<u32>| Snapshot {
            primary: None,
            slots: [(SlotGroup::A, (m, t))].into(),
        };
        let g = Mark::Good;
        for (state, boot, want) in [
            (Good, None, true),
            (Unknown, Some(snap(g, None)), true),
            (Installed, Some(snap(g, Some(1))), true),
            (Installed, Some(snap(g, Some(0))), false),
            (Good, Some(snap(Mark::Bad, None)), false),
            (Invalid, Some(snap(g, None)), false),
            (Invalid, None, false),
            (Bad, None, false),
        ] {
            let mut st = State::default();
            st.slots.get_mut(&SlotGroup::A).unwrap().state = state;
            assert_eq!(
                can_boot(&st, boot.as_ref(), SlotGroup::A),
                want,
                "{state:?} {boot:?}"
            );
        }
    }

    #[test]
    fn mark_bad_refuses_to_leave_nothing_bootable() {
        let d = tempfile::tempdir().unwrap();
        let s = settings(d.path());
        // Booted b committed; a half-written by a cut-off install.
        save(d.path(), |st| {
            st.slots.get_mut(&SlotGroup::B).unwrap().state = SlotState::Good;
            st.slots.get_mut(&SlotGroup::A).unwrap().state = SlotState::Invalid;
        });
        let mut boot = MemBoot::default();
        abvars::set_primary(&mut boot.0, SlotGroup::B);
        abvars::set_state(&mut boot.0, SlotGroup::A, Mark::Bad);
        let before = boot.0.clone();
        let e = control(&s, &mut boot, "b")
            .mark_bad(None, false)
            .unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, ControlError::Refused(_)), "{e}");
        assert!(
            msg.contains("slot a is invalid") && msg.contains("--force"),
            "{msg}"
        );
        assert_eq!(boot.0, before, "bootloader untouched");
        // Marking the other (invalid) group bad is fine: b still boots.
        control(&s, &mut boot, "b")
            .mark_bad(Some(SlotGroup::A), false)
            .unwrap();
        // --force does it anyway: the bootloader is left to its last resort.
        control(&s, &mut boot, "b").mark_bad(None, true).unwrap();
        assert_eq!(abvars::primary(&boot.0), None);
    }

    #[test]
    fn the_epoch_floor_binds_rollback_and_commit() {
        let d = tempfile::tempdir().unwrap();
        let s = settings(d.path());
        // a: committed epoch 1; b: installed epoch 2, on trial.
        save(d.path(), |st| {
            let a = st.slots.get_mut(&SlotGroup::A).unwrap();
            a.state = SlotState::Good;
            a.security_epoch = Some(1);
            let b = st.slots.get_mut(&SlotGroup::B).unwrap();
            b.state = SlotState::Installed;
            b.security_epoch = Some(2);
            b.armed = true;
        });
        let mut boot = MemBoot::default();
        abvars::arm(&mut boot.0, SlotGroup::B, 1, 3).unwrap();
        abvars::simulate_boot(&mut boot.0);
        // Committing b raises the floor to 2 and retires a everywhere.
        control(&s, &mut boot, "b").mark_good().unwrap();
        let st = Store::new(d.path()).load().unwrap();
        assert_eq!(st.security_epoch_floor, 2);
        assert_eq!(st.slot(SlotGroup::A).state, SlotState::Bad);
        assert_eq!(abvars::state(&boot.0, SlotGroup::A), Mark::Bad);
        // Even if a is made good again by hand, a rollback to it is refused.
        save(d.path(), |st| {
            st.slots.get_mut(&SlotGroup::A).unwrap().state = SlotState::Good
        });
        abvars::set_state(&mut boot.0, SlotGroup::A, Mark::Good);
        let e = control(&s, &mut boot, "b").rollback().unwrap_err();
        assert!(e.to_string().contains("below this device's floor 2"), "{e}");
        assert_eq!(abvars::primary(&boot.0), Some(SlotGroup::B));
    }

    #[test]
    fn installed_but_never_armed_is_no_failure_and_can_be_armed() {
        let d = tempfile::tempdir().unwrap();
        let s = settings(d.path());
        // The power went after "installed" was stored, before arming.
        save(d.path(), |st| {
            let b = st.slots.get_mut(&SlotGroup::B).unwrap();
            b.state = SlotState::Installed;
            b.version = Some("1.1.0".parse().unwrap());
            b.verity_args = Some("tandem.verity.roothash=ab".into());
        });
        let mut boot = MemBoot(abvars::factory(None));
        // A record the initramfs would not boot is refused, not armed.
        let e = control(&s, &mut boot, "a").arm().unwrap_err();
        assert!(e.to_string().contains("recorded verity parameters"), "{e}");
        let args = format!(
            "tandem.verity.roothash={} tandem.verity.hashoffset=8192 tandem.verity.salt=-",
            "ab".repeat(32)
        );
        save(d.path(), |st| {
            st.slots.get_mut(&SlotGroup::B).unwrap().verity_args = Some(args.clone());
        });
        let mut boot = MemBoot(abvars::factory(None));
        let r = control(&s, &mut boot, "a").boot_check(&s.health).unwrap();
        assert_eq!(
            r,
            BootCheck::NotArmed {
                installed: SlotGroup::B
            }
        );
        let st = Store::new(d.path()).load().unwrap();
        assert!(
            st.failures.is_empty(),
            "no failure recorded: {:?}",
            st.failures
        );
        assert_eq!(st.slot(SlotGroup::B).state, SlotState::Installed);
        // `tandem arm` finishes the job, verity parameters included.
        assert_eq!(control(&s, &mut boot, "a").arm().unwrap(), SlotGroup::B);
        assert_eq!(abvars::primary(&boot.0), Some(SlotGroup::B));
        assert_eq!(abvars::tries_left(&boot.0, SlotGroup::B), Some(1));
        assert_eq!(boot.0[&abvars::verity_var(SlotGroup::B)], args);
        assert!(
            Store::new(d.path())
                .load()
                .unwrap()
                .slot(SlotGroup::B)
                .armed
        );
        // Armed now, and the trial ran out: that is a fallback.
        abvars::simulate_boot(&mut boot.0);
        let r = control(&s, &mut boot, "a").boot_check(&s.health).unwrap();
        assert!(
            matches!(
                r,
                BootCheck::FellBack {
                    failed: SlotGroup::B,
                    ..
                }
            ),
            "{r:?}"
        );
        // Nothing left to arm.
        assert!(control(&s, &mut boot, "a").arm().is_err());
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

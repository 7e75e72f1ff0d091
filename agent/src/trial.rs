//! After every boot: is this the trial of a fresh install, did the
//! bootloader fall back, or is it an ordinary boot? Pure decision logic,
//! table-tested; `tandem boot-check` acts on it.

use crate::boot::Mark;
use crate::fsm::SlotState;
use crate::slot::SlotGroup;

/// What the agent knows right after boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootFacts {
    pub booted: SlotGroup,
    pub booted_state: SlotState,
    pub other_state: SlotState,
    /// The bootloader's view of the other group (None: no bootloader).
    pub other_mark: Option<Mark>,
    pub other_tries_left: Option<u32>,
    /// Whether the state store recorded arming the other group.
    pub other_armed: bool,
    pub primary: Option<SlotGroup>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// A committed (or factory) group booted; nothing to decide.
    Normal,
    /// The booted group was installed and not yet committed: run the
    /// health checks, then commit or fall back.
    Trial,
    /// The other group was installed and armed, but this (old) group booted:
    /// the trial failed before it could commit (panic, hang, power cut,
    /// failed checks). Record the failure; never retry it by itself.
    FellBack { failed: SlotGroup },
    /// The other group is armed and the reboot into it has not happened yet.
    PendingReboot { armed: SlotGroup },
    /// The booted group is recorded invalid or bad (e.g. chosen by hand in
    /// the boot menu): report it, change nothing.
    BootedUnhealthy,
    /// The other group was installed, but the install stopped (power cut)
    /// before the bootloader was told to try it: nothing failed. It can be
    /// armed again (`tandem arm`); change nothing.
    NotArmed { installed: SlotGroup },
}

pub fn decide(f: &BootFacts) -> Decision {
    let other = f.booted.other();
    match f.booted_state {
        SlotState::Installed => return Decision::Trial,
        SlotState::Invalid | SlotState::Bad => return Decision::BootedUnhealthy,
        SlotState::Unknown | SlotState::Good => {}
    }
    if f.other_state != SlotState::Installed {
        return Decision::Normal;
    }
    // Armed, as far as anyone can tell: the store says so, or the
    // bootloader holds a trial counter for it (arming had happened; the
    // power went before the store learnt of it).
    let armed = f.other_armed || f.other_tries_left.is_some();
    if f.other_mark.is_some() && !armed {
        return Decision::NotArmed { installed: other };
    }
    let trial_pending = f.other_mark != Some(Mark::Bad)
        && f.other_tries_left.is_some_and(|n| n > 0)
        && f.primary == Some(other);
    if trial_pending {
        Decision::PendingReboot { armed: other }
    } else if f.other_mark.is_none() {
        // Without a bootloader nothing was armed: an install waiting for a
        // manual switch, not a failure.
        Decision::Normal
    } else {
        Decision::FellBack { failed: other }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SlotGroup::{A, B};
    use SlotState::*;

    fn facts(
        booted_state: SlotState,
        other_state: SlotState,
        mark: Option<Mark>,
        tries: Option<u32>,
        primary: Option<SlotGroup>,
    ) -> BootFacts {
        BootFacts {
            booted: A,
            booted_state,
            other_state,
            other_mark: mark,
            other_tries_left: tries,
            other_armed: true,
            primary,
        }
    }

    fn unarmed(mut f: BootFacts) -> BootFacts {
        f.other_armed = false;
        f
    }

    #[test]
    fn table() {
        let g = Some(Mark::Good);
        let cases = [
            // ordinary boots
            (facts(Unknown, Unknown, g, None, Some(A)), Decision::Normal),
            (facts(Good, Good, g, None, Some(A)), Decision::Normal),
            (
                facts(Good, Bad, Some(Mark::Bad), None, Some(A)),
                Decision::Normal,
            ),
            (facts(Good, Invalid, g, None, Some(A)), Decision::Normal),
            // the trial boot itself
            (facts(Installed, Good, g, None, Some(A)), Decision::Trial),
            (facts(Installed, Unknown, None, None, None), Decision::Trial),
            // installed and armed, not rebooted yet
            (
                facts(Good, Installed, g, Some(1), Some(B)),
                Decision::PendingReboot { armed: B },
            ),
            // armed b, but a booted: tries used up / marked bad / primary moved
            (
                facts(Good, Installed, g, Some(0), Some(A)),
                Decision::FellBack { failed: B },
            ),
            (
                facts(Unknown, Installed, Some(Mark::Bad), None, Some(A)),
                Decision::FellBack { failed: B },
            ),
            (
                facts(Good, Installed, g, None, Some(A)),
                Decision::FellBack { failed: B },
            ),
            (
                facts(Good, Installed, g, Some(2), Some(A)),
                Decision::FellBack { failed: B },
            ),
            // installed, then the power went before the bootloader was
            // told: the group is still marked bad there, and nothing failed
            (
                unarmed(facts(Good, Installed, Some(Mark::Bad), None, Some(A))),
                Decision::NotArmed { installed: B },
            ),
            // ...but a trial counter in the bootloader proves it was armed
            (
                unarmed(facts(Good, Installed, g, Some(0), Some(A))),
                Decision::FellBack { failed: B },
            ),
            (
                unarmed(facts(Good, Installed, g, Some(1), Some(B))),
                Decision::PendingReboot { armed: B },
            ),
            // armed, then marked bad by the boot script or an operator
            (
                facts(Good, Installed, Some(Mark::Bad), None, Some(A)),
                Decision::FellBack { failed: B },
            ),
            // no bootloader: installs wait for a manual switch
            (facts(Good, Installed, None, None, None), Decision::Normal),
            (
                unarmed(facts(Good, Installed, None, None, None)),
                Decision::Normal,
            ),
            // booted something recorded unhealthy
            (
                facts(Invalid, Good, g, None, Some(B)),
                Decision::BootedUnhealthy,
            ),
            (
                facts(Bad, Good, g, None, Some(B)),
                Decision::BootedUnhealthy,
            ),
        ];
        for (i, (f, want)) in cases.iter().enumerate() {
            assert_eq!(decide(f), *want, "case {i}: {f:?}");
        }
    }
}

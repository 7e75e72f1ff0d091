//! What to do after a poll: a pure function of the action this device
//! works on, what the server offers, and the device's state. The loop
//! (`ops::fleet`) does what it says; the tables below say why.
//!
//! Mistakes of other DDI clients this avoids: reinstalling (and
//! re-downloading) an action that is installed and waits for its reboot,
//! losing the result after the reboot, and polling again at once after an
//! error.

use std::time::Duration;

use super::ddi::{CancelAction, DeploymentBase, Handling, Window};
use super::record::{ActionRecord, Phase};
use crate::fsm::SlotState;
use crate::slot::SlotGroup;
use crate::state::State;

/// What the server offered in one poll.
#[derive(Debug, Default, Clone, Copy)]
pub struct Offer<'a> {
    pub deployment: Option<&'a DeploymentBase>,
    pub cancel: Option<&'a CancelAction>,
}

/// The device as the decision sees it.
#[derive(Debug, Clone, Copy)]
pub struct Device<'a> {
    pub state: &'a State,
    pub booted: Option<SlotGroup>,
}

/// The closed result of an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Final {
    pub success: bool,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Idle,
    /// Install the bundle at `url` for action `action_id`.
    Install {
        action_id: String,
        url: String,
        version: Option<String>,
        filename: String,
    },
    /// Tell the server the action waits for its maintenance window.
    Schedule {
        action_id: String,
    },
    /// Nothing to send: the action waits (for the reboot, the boot check,
    /// or the window, already reported).
    Wait,
    /// Send the closed result of `action_id`.
    Report {
        action_id: String,
        result: Final,
    },
    /// The deployment cannot be done as given: closed/failure.
    Refuse {
        action_id: String,
        reason: String,
    },
    /// Confirm the cancel (closed/success on the cancel action).
    AcceptCancel {
        cancel_id: String,
        stop_id: String,
    },
    /// The action is past the point where it can be cancelled.
    RejectCancel {
        cancel_id: String,
        reason: String,
    },
    /// The server no longer offers the action the record names.
    Forget,
}

pub fn next(record: Option<&ActionRecord>, offer: Offer<'_>, device: Device<'_>) -> Decision {
    if let Some(c) = offer.cancel {
        return cancel(record, c);
    }
    if let Some(r) = record {
        if let Phase::Done {
            success,
            detail,
            sent: false,
        } = &r.phase
        {
            return Decision::Report {
                action_id: r.action_id.clone(),
                result: Final {
                    success: *success,
                    detail: detail.clone(),
                },
            };
        }
        if let Phase::Armed { target, armed_at } = &r.phase {
            return match settle(*target, armed_at, device) {
                Some(result) => Decision::Report {
                    action_id: r.action_id.clone(),
                    result,
                },
                None => Decision::Wait,
            };
        }
    }
    let Some(d) = offer.deployment else {
        return match record.map(|r| &r.phase) {
            Some(Phase::Installing { .. } | Phase::Scheduled) => Decision::Forget,
            _ => Decision::Idle,
        };
    };
    let same = record.filter(|r| r.action_id == d.id);
    match same.map(|r| &r.phase) {
        // Still offered: the server has not taken the result. Again.
        Some(Phase::Done {
            success, detail, ..
        }) => {
            return Decision::Report {
                action_id: d.id.clone(),
                result: Final {
                    success: *success,
                    detail: detail.clone(),
                },
            }
        }
        Some(Phase::Scheduled) if !may_install(d) => return Decision::Wait,
        _ => {}
    }
    if !may_install(d) {
        return Decision::Schedule {
            action_id: d.id.clone(),
        };
    }
    let artifacts: Vec<_> = d
        .deployment
        .chunks
        .iter()
        .flat_map(|c| c.artifacts.iter().map(move |a| (c, a)))
        .collect();
    let [(chunk, artifact)] = artifacts[..] else {
        return Decision::Refuse {
            action_id: d.id.clone(),
            reason: format!(
                "expected exactly one artifact (a Tandem bundle), the deployment has {}",
                artifacts.len()
            ),
        };
    };
    let Some(url) = artifact.url() else {
        return Decision::Refuse {
            action_id: d.id.clone(),
            reason: format!("artifact {:?} has no download link", artifact.filename),
        };
    };
    Decision::Install {
        action_id: d.id.clone(),
        url: url.to_string(),
        version: chunk.version.clone(),
        filename: artifact.filename.clone(),
    }
}

/// Whether the server lets the device download and install now. The
/// bundle streams into the slot, so there is no download-only step: a
/// skipped update waits whole.
fn may_install(d: &DeploymentBase) -> bool {
    let dep = &d.deployment;
    dep.download != Handling::Skip
        && dep.update != Handling::Skip
        && dep.maintenance_window != Some(Window::Unavailable)
}

fn cancel(record: Option<&ActionRecord>, c: &CancelAction) -> Decision {
    let stop = &c.cancel.stop_id;
    match record.filter(|r| &r.action_id == stop).map(|r| &r.phase) {
        Some(Phase::Armed { target, .. }) => Decision::RejectCancel {
            cancel_id: c.id.clone(),
            reason: format!(
                "action {stop} is installed and armed in slot group {target}: the next boot tries it (mark-bad or rollback on the device undoes it)"
            ),
        },
        Some(Phase::Done { detail, .. }) => Decision::RejectCancel {
            cancel_id: c.id.clone(),
            reason: format!("action {stop} has finished: {detail}"),
        },
        _ => Decision::AcceptCancel {
            cancel_id: c.id.clone(),
            stop_id: stop.clone(),
        },
    }
}

/// The result of an armed action, once the device has booted it and the
/// boot check has decided (or the bootloader fell back); `None` while it
/// waits for the reboot or the boot check.
pub fn settle(target: SlotGroup, armed_at: &str, device: Device<'_>) -> Option<Final> {
    let st = device.state;
    let rec = st.slot(target);
    let version = rec
        .version
        .as_ref()
        .map_or("the new version".into(), |v| v.to_string());
    // Failures record their time as RFC 3339 UTC, which sorts as text.
    if let Some(f) = st
        .failures
        .iter()
        .rev()
        .find(|f| f.slot == target && f.at.as_str() >= armed_at)
    {
        let mut detail = format!(
            "fell back: slot group {target} ({}) failed: {}",
            f.version.as_ref().map_or("?".into(), |v| v.to_string()),
            f.reason
        );
        for c in f.checks.iter().filter(|c| !c.passed) {
            detail += &format!("; check {:?}: {}", c.name, c.detail);
        }
        return Some(Final {
            success: false,
            detail,
        });
    }
    match rec.state {
        SlotState::Good if device.booted == Some(target) => Some(Final {
            success: true,
            detail: format!("committed: {version} runs from slot group {target}"),
        }),
        SlotState::Bad => Some(Final {
            success: false,
            detail: format!("slot group {target} was marked bad before it committed"),
        }),
        SlotState::Invalid | SlotState::Unknown => Some(Final {
            success: false,
            detail: format!(
                "slot group {target} no longer holds the installed version (it is {})",
                rec.state.as_str()
            ),
        }),
        _ => None,
    }
}

/// How long to sleep before the next poll: the server's `polling.sleep`,
/// kept between 1 s and a day (default 5 min).
pub fn poll_interval(server: Option<Duration>) -> Duration {
    server
        .unwrap_or(Duration::from_secs(300))
        .clamp(Duration::from_secs(1), Duration::from_secs(86_400))
}

/// How long to wait after `failures` failed polls in a row: 10 s doubling
/// to 10 min, and never less than the poll interval — never a tight loop.
pub fn retry_delay(failures: u32, interval: Duration) -> Duration {
    let exp = Duration::from_secs(10).saturating_mul(1 << failures.saturating_sub(1).min(6));
    exp.min(Duration::from_secs(600)).max(interval)
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;

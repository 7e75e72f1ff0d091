//! The fleet use case: poll the server, decide ([`fleet::decide::next`]),
//! act, report. One poll is [`poll_once`] (`tandem hawkbit poll`); the
//! daemon runs [`run`] on a thread. The server is transport, never trust:
//! its artifact goes through the normal install, which verifies the
//! bundle's signature before a byte reaches a slot.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Error, Outcome};
use crate::config::Settings;
use crate::fleet::ddi::{Execution, Feedback, Finished};
use crate::fleet::decide::{self, Decision, Device, Final, Offer};
use crate::fleet::record::{self, ActionRecord, Phase};
pub use crate::fleet::Server;
use crate::fleet::{client, Poll, Target};
use crate::install::{self, Progress, Snapshot, Tracker};
use crate::state::Store;
use crate::{sys, timefmt};

/// The daemon's one job slot, as the loop needs it (the CLI has none).
pub trait Jobs: Sync {
    /// Claims the slot for an install; `Err(why)` when another job runs.
    fn begin(&self, cancel: Arc<AtomicBool>) -> Result<(), String>;
    fn progress(&self, _snap: &Snapshot) {}
    fn end(&self, result: Result<String, (Outcome, String)>);
}

/// No job slot: the CLI's one-shot poll (the install takes the state
/// lock like any other).
pub struct NoJobs;

impl Jobs for NoJobs {
    fn begin(&self, _: Arc<AtomicBool>) -> Result<(), String> {
        Ok(())
    }
    fn end(&self, _: Result<String, (Outcome, String)>) {}
}

/// What one poll did.
#[derive(Debug, Clone)]
pub struct Polled {
    /// When to poll next.
    pub sleep: Duration,
    /// What was done, for a person.
    pub did: String,
    /// An install armed a group and `[hawkbit] reboot` asks for it.
    pub reboot: bool,
}

/// The DDI client for `s` (`[hawkbit]` must be set).
pub fn connect(s: &Settings) -> Result<client::Ddi, Error> {
    let h = s
        .hawkbit
        .as_ref()
        .ok_or_else(|| Error::Usage("no [hawkbit] table in the configuration".into()))?;
    let id = match &h.controller_id {
        Some(id) => id.clone(),
        None => sys::machine_id().ok_or_else(|| {
            Error::Usage(
                "[hawkbit] controller_id is unset and there is no /etc/machine-id or host name"
                    .into(),
            )
        })?,
    };
    Ok(client::Ddi::new(h, &s.http, &id)?)
}

/// What the device tells the server about itself (configData): gooseBit
/// matches `hw_boardname` against the software's hardware, which its
/// Tandem plugin takes from the bundle's `compatible`.
pub fn attributes(s: &Settings) -> BTreeMap<String, String> {
    let mut a = BTreeMap::new();
    a.insert("hw_boardname".into(), s.compatible.clone());
    a.insert("hw_revision".into(), "default".into());
    a.insert("tandem_compatible".into(), s.compatible.clone());
    let booted = super::booted_slot(s);
    if let Some(g) = booted {
        a.insert("tandem_booted_slot".into(), g.to_string());
    }
    let state = Store::new(&s.state_dir).load().ok();
    let version = booted
        .and_then(|g| state.as_ref().and_then(|st| st.slot(g).version.clone()))
        .or_else(|| s.image_version.clone());
    if let Some(v) = version {
        a.insert("sw_version".into(), v.to_string());
    }
    if let Some(h) = &s.hawkbit {
        a.extend(h.attributes.clone());
    }
    a
}

/// Polls once and does what the server asks.
pub fn poll_once(s: &Settings, server: &dyn Server, jobs: &dyn Jobs) -> Result<Polled, Error> {
    let poll = server.poll()?;
    let sleep = decide::poll_interval(poll.sleep);
    let mut did = Vec::new();
    if poll.wants_config {
        server.send_config(&attributes(s))?;
        did.push("sent the device's attributes".to_string());
    }
    let rec = record::load(&s.state_dir)
        .map_err(crate::fleet::FleetError::from)?
        .filter(|r| {
            let mine = r.controller == server.controller();
            if !mine {
                tracing::warn!(controller = %r.controller, "ignoring an action record of another server or device");
            }
            mine
        });
    let state = Store::new(&s.state_dir).load()?;
    let device = Device {
        state: &state,
        booted: super::booted_slot(s),
    };
    let offer = Offer {
        deployment: poll.deployment.as_ref(),
        cancel: poll.cancel.as_ref(),
    };
    let decision = decide::next(rec.as_ref(), offer, device);
    tracing::debug!(?decision, "hawkBit poll");
    let mut act = Act {
        s,
        server,
        jobs,
        sleep,
        reboot: false,
    };
    did.push(act.run(decision, rec)?);
    Ok(Polled {
        sleep,
        did: did
            .into_iter()
            .filter(|d| !d.is_empty())
            .collect::<Vec<_>>()
            .join("; "),
        reboot: act.reboot,
    })
}

struct Act<'a> {
    s: &'a Settings,
    server: &'a dyn Server,
    jobs: &'a dyn Jobs,
    sleep: Duration,
    reboot: bool,
}

impl Act<'_> {
    fn save(&self, id: &str, version: Option<String>, phase: Phase) -> Result<(), Error> {
        let r = ActionRecord::new(self.server.controller(), id, version, phase);
        record::save(&self.s.state_dir, &r).map_err(crate::fleet::FleetError::from)?;
        Ok(())
    }

    fn send(&self, target: Target<'_>, f: Feedback) -> Result<(), Error> {
        Ok(self.server.feedback(target, &f)?)
    }

    fn run(&mut self, d: Decision, rec: Option<ActionRecord>) -> Result<String, Error> {
        let version = rec.as_ref().and_then(|r| r.version.clone());
        match d {
            Decision::Idle => Ok(String::new()),
            Decision::Wait => Ok("waiting (reboot, boot check or maintenance window)".into()),
            Decision::Forget => {
                record::clear(&self.s.state_dir).map_err(crate::fleet::FleetError::from)?;
                Ok("the server withdrew the action; forgot it".into())
            }
            Decision::Schedule { action_id } => {
                let detail = "waiting for the maintenance window (the bundle streams into the slot, so download waits too)";
                self.send(
                    Target::Deployment(&action_id),
                    Feedback::new(Execution::Scheduled, Finished::None, detail),
                )?;
                self.save(&action_id, None, Phase::Scheduled)?;
                Ok(format!("action {action_id}: {detail}"))
            }
            Decision::Report { action_id, result } => self.report(&action_id, version, result),
            Decision::Refuse { action_id, reason } => self.report(
                &action_id,
                None,
                Final {
                    success: false,
                    detail: reason,
                },
            ),
            Decision::AcceptCancel { cancel_id, stop_id } => {
                let detail = format!("nothing of action {stop_id} was written; cancelled");
                self.send(
                    Target::Cancel(&cancel_id),
                    Feedback::new(Execution::Closed, Finished::Success, &detail),
                )?;
                if rec.is_some_and(|r| r.action_id == stop_id) {
                    record::clear(&self.s.state_dir).map_err(crate::fleet::FleetError::from)?;
                }
                Ok(format!("cancel {cancel_id}: {detail}"))
            }
            Decision::RejectCancel { cancel_id, reason } => {
                self.send(
                    Target::Cancel(&cancel_id),
                    Feedback::new(Execution::Rejected, Finished::None, &reason),
                )?;
                Ok(format!("cancel {cancel_id} rejected: {reason}"))
            }
            Decision::Install {
                action_id,
                url,
                version,
                filename,
            } => self.install(&action_id, &url, version, &filename),
        }
    }

    /// Sends a closed result, recorded first so that a failed send is sent
    /// again at the next poll.
    fn report(&self, id: &str, version: Option<String>, r: Final) -> Result<String, Error> {
        let done = |sent| Phase::Done {
            success: r.success,
            detail: r.detail.clone(),
            sent,
        };
        self.save(id, version.clone(), done(false))?;
        let finished = if r.success {
            Finished::Success
        } else {
            Finished::Failure
        };
        self.send(
            Target::Deployment(id),
            Feedback::new(Execution::Closed, finished, &r.detail),
        )?;
        self.save(id, version, done(true))?;
        let word = if r.success { "success" } else { "failure" };
        Ok(format!("action {id}: reported {word}: {}", r.detail))
    }
}

#[path = "fleet_install.rs"]
mod fleet_install;

/// The daemon's loop: poll, act, sleep the server's interval; after an
/// error, back off (10 s doubling to 10 min). Returns when `stop` is set.
pub fn run(s: &Settings, server: &dyn Server, jobs: &dyn Jobs, stop: &AtomicBool) {
    let mut failures = 0u32;
    let mut interval = decide::poll_interval(None);
    while !stop.load(Ordering::Relaxed) {
        let wait = match poll_once(s, server, jobs) {
            Ok(p) => {
                failures = 0;
                interval = p.sleep;
                if !p.did.is_empty() {
                    tracing::info!("hawkBit: {}", p.did);
                }
                if p.reboot {
                    tracing::info!("hawkBit: rebooting into the new slot group");
                    if let Err(e) = super::reboot() {
                        tracing::error!("reboot failed: {e}");
                    }
                }
                p.sleep
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let d = decide::retry_delay(failures, interval);
                tracing::warn!("hawkBit poll failed ({failures} in a row; next in {d:?}): {e}");
                d
            }
        };
        let until = Instant::now() + wait;
        while !stop.load(Ordering::Relaxed) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(200).min(until - Instant::now()));
        }
    }
}

/// The install progress the server is told about: verified (1 of 3),
/// each image written and verified (2 of 3), armed (3 of 3).
fn milestone(p: &Progress<'_>) -> Option<(u32, String)> {
    match p {
        Progress::Verified {
            version, target, ..
        } => Some((
            1,
            format!("bundle signature verified: {version}, writing slot group {target}"),
        )),
        Progress::ImageDone { index, class } => Some((
            2,
            format!("image {index} ({class}) written, synced and its SHA-256 verified"),
        )),
        _ => None,
    }
}

fn now() -> String {
    timefmt::rfc3339(sys::now_unix())
}

//! The channel use case: check the TUF channel, decide
//! ([`channel::decide`]), act (stage, arm and reboot when the strategy
//! allows, release the FleetLock slot), record and export what happened.
//! One check is [`check_once`] (`tandem check`, D-Bus `Check()`); the
//! daemon runs [`run`] on a thread; [`apply`] is `tandem apply`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::fleet::Jobs;
use super::Error;
use crate::channel::decide::{self, Choice, Device, Gate, Step};
use crate::channel::record::{self, ChannelRecord, Check, Found, Lock};
use crate::channel::{fleetlock, metrics, waves, ChannelError, Offer, Repository};
use crate::config::{ChannelSettings, Settings, Strategy};
use crate::fsm::SlotState;
use crate::install::{self, Tracker};
use crate::slot::SlotGroup;
use crate::state::{State, Store};
use crate::sys::journal::{self, Event};
use crate::{sys, timefmt};

/// What one check did.
#[derive(Debug, Clone)]
pub struct Checked {
    /// `idle`, `wait`, `staged`, `reboot`, ... (the last step taken).
    pub step: &'static str,
    /// What was done and what it waits for, for a person.
    pub message: String,
    pub found: Option<Found>,
    /// The loop armed a group and asks for the reboot.
    pub reboot: bool,
}

fn settings(s: &Settings) -> Result<&ChannelSettings, Error> {
    s.channel
        .as_ref()
        .ok_or_else(|| Error::Usage("no [channel] table in the configuration".into()))
}

/// The record, made (with a fresh seed) on the first check.
fn load_record(s: &Settings) -> Result<ChannelRecord, Error> {
    Ok(
        match record::load(&s.state_dir).map_err(ChannelError::from)? {
            Some(r) => r,
            None => {
                let seed =
                    sys::random_seed().map_err(|e| Error::Other(format!("random source: {e}")))?;
                ChannelRecord::new(waves::seed_from(seed))
            }
        },
    )
}

/// Saves the record ([`exclusive`] made the state directory).
fn save(s: &Settings, r: &ChannelRecord) -> Result<(), Error> {
    record::save(&s.state_dir, r).map_err(ChannelError::from)?;
    Ok(())
}

/// One check at a time per device, across processes (the daemon's loop,
/// `tandem check`): a lock file in the state directory.
fn exclusive(s: &Settings) -> Result<std::fs::File, Error> {
    let io = |e: std::io::Error| Error::Other(format!("{}: {e}", s.state_dir.display()));
    sys::private_dir(&s.state_dir).map_err(io)?;
    let f = sys::open_lock_file(&s.state_dir.join("channel.lock")).map_err(io)?;
    f.lock().map_err(io)?;
    Ok(f)
}

/// The gate of the configured strategy at `now` (logged-in users are
/// asked about only when a reboot is due: [`postpone_for_users`]).
fn gate(c: &ChannelSettings, now: u64) -> Gate {
    match &c.strategy {
        Strategy::Immediate => Gate::Open,
        Strategy::Manual => Gate::Closed {
            why: "the strategy is manual: `tandem apply` reboots into it".into(),
            until: None,
        },
        Strategy::FleetLock { .. } => Gate::NeedsLock,
        Strategy::Periodic(sched) => match sched.gate(now) {
            crate::window::Gate::Open { .. } => Gate::Open,
            crate::window::Gate::Closed { opens } => Gate::Closed {
                why: format!(
                    "the next maintenance window opens at {}",
                    timefmt::rfc3339(opens)
                ),
                until: Some(opens),
            },
            crate::window::Gate::Never => Gate::Closed {
                why: "no maintenance window is configured".into(),
                until: None,
            },
        },
    }
}

/// Postpones a reboot while users are logged in, at most
/// `postpone_while_logged_in_secs` from the first time it was postponed.
/// `Some(why)` while the reboot waits.
fn postpone_for_users(c: &ChannelSettings, rec: &mut ChannelRecord, now: u64) -> Option<String> {
    if c.postpone_while_logged_in_secs == 0 {
        return None;
    }
    let users = sys::systemd::logind_sessions().unwrap_or_default();
    if users.is_empty() {
        rec.postponed_since = None;
        return None;
    }
    let since = *rec.postponed_since.get_or_insert(now);
    let until = since.saturating_add(c.postpone_while_logged_in_secs);
    (now < until).then(|| {
        format!(
            "{} user session(s) open ({}); postponing the reboot until {} at the latest",
            users.len(),
            users.join(", "),
            timefmt::rfc3339(until)
        )
    })
}

fn fleet_lock(s: &Settings, c: &ChannelSettings) -> Result<fleetlock::Client, Error> {
    let Strategy::FleetLock {
        base_url,
        group,
        id,
    } = &c.strategy
    else {
        return Err(Error::Usage(
            "the channel strategy is not fleet_lock".into(),
        ));
    };
    let id = match id {
        Some(i) => i.clone(),
        None => fleetlock::id_for(&sys::machine_id().ok_or_else(|| {
            Error::Usage("[channel.fleet_lock] id is unset and there is no machine id".into())
        })?),
    };
    Ok(fleetlock::Client::new(base_url, &id, group, &s.http).map_err(ChannelError::from)?)
}

/// The running version: the booted group's record, else the image's.
fn running(s: &Settings, booted: Option<SlotGroup>, st: &State) -> Option<semver::Version> {
    booted
        .and_then(|g| st.slot(g).version.clone())
        .or_else(|| s.image_version.clone())
}

/// The update a choice names; what it waits for is filled in at the end
/// of the check.
fn found(choice: &Choice) -> Option<Found> {
    let (o, opens) = match choice {
        Choice::Take(o) | Choice::Paused(o) => (o, None),
        Choice::Wait { offer, opens_at } => (offer, *opens_at),
        Choice::UpToDate => return None,
    };
    Some(Found {
        version: o.meta.version.clone(),
        path: o.path.clone(),
        opens_at: opens.filter(|&t| t > 0).map(timefmt::rfc3339),
        waiting_for: String::new(),
    })
}

/// Checks the channel once and does what the decisions say.
pub fn check_once(
    s: &Settings,
    repo: &mut dyn Repository,
    jobs: &dyn Jobs,
) -> Result<Checked, Error> {
    let c = settings(s)?;
    let _only_one = exclusive(s)?;
    let mut rec = load_record(s)?;
    let now = sys::now_unix().max(rec.clock_floor);
    rec.counters.checks += 1;
    let listing = match repo.check(now) {
        Ok(l) => l,
        Err(e) => return Err(failed_check(s, c, &mut rec, now, e)),
    };
    rec.clock_floor = now;
    for u in &listing.unusable {
        tracing::warn!(target_path = %u.path, "channel target passed over: {}", u.why);
    }
    let booted = super::booted_slot(s);
    let g = gate(c, now);
    let mut taken = Vec::new();
    let mut reboot = false;
    // A step that changes the device (release, stage) is followed by the
    // next one at once: immediate means stage and reboot in one check.
    let (message, mut found, state) = loop {
        let state = Store::new(&s.state_dir).load()?;
        let run = running(s, booted, &state);
        let d = Device {
            compatible: &s.compatible,
            booted,
            state: &state,
            running: run.as_ref(),
            seed: rec.seed,
            staged: rec.staged.as_ref(),
        };
        let (choice, skips) = decide::choose(&listing.offers, &d, now);
        for k in &skips {
            tracing::debug!(target_path = %k.path, "passed over: {}", k.why);
        }
        let step = decide::step(&d, &choice, &g, rec.lock.is_some());
        let f = found(&choice);
        if taken.is_empty() {
            // Before anything is done about it, so the journal reads in order.
            announce_found(&rec, f.as_ref());
        }
        tracing::debug!(?step, "channel step");
        match step {
            // A version that failed here is left for good: say so.
            Step::Idle(why) => {
                let failed: Vec<&str> = skips
                    .iter()
                    .filter(|k| k.failed_here)
                    .map(|k| k.why.as_str())
                    .collect();
                let why = if failed.is_empty() {
                    why
                } else {
                    format!("{why}; {}", failed.join("; "))
                };
                break (why, f, state);
            }
            Step::Wait { why, .. } => break (why, f, state),
            Step::ReleaseLock => taken.push(release_lock(s, c, &mut rec)?),
            Step::Install(o) if taken.len() < 3 => taken.push(stage(s, repo, jobs, &o, &mut rec)?),
            Step::Install(o) => {
                break (
                    format!("{}: again at the next check", o.meta.version),
                    f,
                    state,
                )
            }
            Step::Apply { group, lock } => {
                if let Some(why) = postpone_for_users(c, &mut rec, now) {
                    let v = rec
                        .staged
                        .as_ref()
                        .map(|v| v.to_string())
                        .unwrap_or_default();
                    break (
                        format!("{v} is staged in slot group {group}; {why}"),
                        f,
                        state,
                    );
                }
                if let Err(why) = arm_for_reboot(s, c, &mut rec, &state, group, lock, now)? {
                    break (why, f, state);
                }
                taken.push(format!("armed slot group {group}; rebooting into it"));
                reboot = true;
                break (String::new(), f, state);
            }
        }
    };
    if let Some(f) = found.as_mut() {
        f.waiting_for = if reboot {
            "its reboot".into()
        } else {
            message.clone()
        };
    }
    let step = if reboot {
        "reboot"
    } else if staged_in_other(booted, &state, &rec) {
        "staged"
    } else if found.is_some() {
        "wait"
    } else {
        "idle"
    };
    // What was staged and is now running, committed or fell back is no
    // longer staged.
    if !staged_in_other(booted, &state, &rec) {
        rec.staged = None;
    }
    rec.last_check = Some(Check {
        at: timefmt::rfc3339(now),
        ok: true,
        message: message.clone(),
    });
    rec.found = found.clone();
    save(s, &rec)?;
    export(s, c, &rec, booted, Some(&state), step);
    taken.push(message);
    let message = taken
        .into_iter()
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    Ok(Checked {
        step,
        message,
        found,
        reboot,
    })
}

/// Records and exports a failed check; the error to return.
fn failed_check(
    s: &Settings,
    c: &ChannelSettings,
    rec: &mut ChannelRecord,
    now: u64,
    e: ChannelError,
) -> Error {
    let kind = match e {
        ChannelError::Refused(_) => Event::MetadataRefused,
        _ => Event::CheckFailed,
    };
    journal::send(kind, &e.to_string(), &[("TANDEM_CHANNEL", &c.url)]);
    rec.counters.check_failures += 1;
    rec.last_check = Some(Check {
        at: timefmt::rfc3339(now),
        ok: false,
        message: e.to_string(),
    });
    if let Err(se) = save(s, rec) {
        tracing::warn!("cannot record the failed check: {se}");
    }
    let booted = super::booted_slot(s);
    export(
        s,
        c,
        rec,
        booted,
        Store::new(&s.state_dir).load().ok().as_ref(),
        "error",
    );
    e.into()
}

/// Asks the FleetLock server for a reboot slot, recorded before it is
/// asked (after a crash the next check releases it) and forgotten when
/// refused. `Ok(Err(e))`: refused or unreachable.
fn take_lock(
    s: &Settings,
    c: &ChannelSettings,
    rec: &mut ChannelRecord,
    now: u64,
) -> Result<Result<(), fleetlock::LockError>, Error> {
    let client = fleet_lock(s, c)?;
    rec.lock = Some(Lock {
        group: client.group.clone(),
        id: client.id.clone(),
        since: timefmt::rfc3339(now),
    });
    save(s, rec)?;
    if let Err(e) = client.pre_reboot() {
        rec.lock = None;
        save(s, rec)?;
        return Ok(Err(e));
    }
    journal::send(
        Event::LockAcquired,
        &format!("FleetLock reboot slot of group {} granted", client.group),
        &[("TANDEM_LOCK_GROUP", &client.group)],
    );
    Ok(Ok(()))
}

/// Gives the FleetLock slot back (steady state).
fn release_lock(
    s: &Settings,
    c: &ChannelSettings,
    rec: &mut ChannelRecord,
) -> Result<String, Error> {
    fleet_lock(s, c)?
        .steady_state()
        .map_err(ChannelError::from)?;
    let group = rec.lock.take().map(|l| l.group).unwrap_or_default();
    save(s, rec)?;
    journal::send(
        Event::LockReleased,
        &format!("FleetLock slot of group {group} released (steady state)"),
        &[("TANDEM_LOCK_GROUP", &group)],
    );
    Ok("released the FleetLock slot (steady state)".to_string())
}

/// Takes the FleetLock slot if `lock`, then arms `group` (unless it is
/// armed already: a check that did not reboot). `Ok(Err(why))`: not now.
fn arm_for_reboot(
    s: &Settings,
    c: &ChannelSettings,
    rec: &mut ChannelRecord,
    state: &State,
    group: SlotGroup,
    lock: bool,
    now: u64,
) -> Result<Result<(), String>, Error> {
    if lock {
        if let Err(e) = take_lock(s, c, rec, now)? {
            return Ok(Err(format!("waiting for a FleetLock reboot slot: {e}")));
        }
    }
    if !state.slot(group).armed {
        super::arm(s)?;
    }
    let v = rec
        .staged
        .as_ref()
        .map(|v| v.to_string())
        .unwrap_or_default();
    journal::send(
        Event::RebootScheduled,
        &format!("rebooting into slot group {group} for a trial of {v}"),
        &[("TANDEM_VERSION", &v), ("TANDEM_SLOT", group.as_str())],
    );
    rec.postponed_since = None;
    save(s, rec)?;
    Ok(Ok(()))
}

/// Whether the other group holds, installed and untried, what the loop staged.
fn staged_in_other(booted: Option<SlotGroup>, state: &State, rec: &ChannelRecord) -> bool {
    let Some(b) = booted else {
        return false;
    };
    let other = state.slot(b.other());
    other.state == SlotState::Installed && rec.staged.is_some() && other.version == rec.staged
}

/// A journal entry when the check found a different update than the last.
fn announce_found(rec: &ChannelRecord, found: Option<&Found>) {
    let Some(f) = found.filter(|f| rec.found.as_ref().map(|o| &o.version) != Some(&f.version))
    else {
        return;
    };
    let v = f.version.to_string();
    journal::send(
        Event::UpdateFound,
        &format!("the channel offers {v} ({})", f.path),
        &[("TANDEM_VERSION", &v), ("TANDEM_TARGET", &f.path)],
    );
}

/// Installs `o` into the other group, unarmed, in the daemon's job slot.
fn stage(
    s: &Settings,
    repo: &mut dyn Repository,
    jobs: &dyn Jobs,
    o: &Offer,
    rec: &mut ChannelRecord,
) -> Result<String, Error> {
    let cancel = Arc::new(AtomicBool::new(false));
    if let Err(why) = jobs.begin(cancel.clone()) {
        return Ok(format!(
            "{}: not now ({why}); at the next check",
            o.meta.version
        ));
    }
    rec.counters.installs += 1;
    // The bundle must be the one the channel described.
    let want = o.meta.clone();
    let approve: install::Approve = Arc::new(move |m: &crate::bundle::Manifest| {
        if m.version != want.version || m.compatible != want.compatible {
            return Err(format!(
                "the bundle is {} for {:?}, but the channel's metadata says {} for {:?}",
                m.version, m.compatible, want.version, want.compatible
            ));
        }
        Ok(())
    });
    let opts = install::Options {
        cancel: Some(cancel),
        approve: Some(approve),
        stage: true,
        ..Default::default()
    };
    let mut tracker = Tracker::default();
    let mut show = |p: install::Progress<'_>| {
        if let Some(snap) = tracker.update(p) {
            jobs.progress(&snap);
        }
    };
    let r = super::install_source(s, &o.path, || repo.bundle(o), &opts, &mut show);
    match r {
        Ok(rep) => {
            rec.staged = Some(rep.version.clone());
            rec.counters.bytes_fetched += rep.transfer.as_ref().map_or(rep.bytes, |t| t.fetched);
            save(s, rec)?;
            let text = super::describe_install(&rep);
            let v = rep.version.to_string();
            journal::send(
                Event::UpdateStaged,
                &text,
                &[("TANDEM_VERSION", &v), ("TANDEM_SLOT", rep.target.as_str())],
            );
            jobs.end(Ok(text.clone()));
            Ok(text)
        }
        Err(e) => {
            rec.counters.install_failures += 1;
            save(s, rec)?;
            let v = o.meta.version.to_string();
            journal::send(
                Event::InstallFailed,
                &format!("staging {v} failed: {e}"),
                &[("TANDEM_VERSION", &v), ("TANDEM_TARGET", &o.path)],
            );
            jobs.end(Err((e.outcome(), e.to_string())));
            Err(e)
        }
    }
}

/// `tandem apply`: arms the group the loop staged and reboots into it now
/// (taking the FleetLock slot first under that strategy).
pub fn apply(s: &Settings, reboot: bool) -> Result<String, Error> {
    let c = settings(s)?;
    let _only_one = exclusive(s)?;
    let mut rec = load_record(s)?;
    let state = Store::new(&s.state_dir).load()?;
    let booted = super::booted_slot(s)
        .ok_or_else(|| Error::Usage("the booted slot group is unknown".into()))?;
    let (Some(v), true) = (
        rec.staged.clone(),
        staged_in_other(Some(booted), &state, &rec),
    ) else {
        return Err(Error::Usage(format!(
            "nothing is staged: slot group {} holds no update the channel loop installed (`tandem check` stages one)",
            booted.other()
        )));
    };
    let now = sys::now_unix();
    if matches!(c.strategy, Strategy::FleetLock { .. }) {
        take_lock(s, c, &mut rec, now)?.map_err(ChannelError::from)?;
    }
    arm_for_reboot(s, c, &mut rec, &state, booted.other(), false, now)?.map_err(Error::Other)?;
    if reboot {
        super::reboot()?;
    }
    Ok(format!(
        "armed slot group {} with {v}{}",
        booted.other(),
        if reboot { "; rebooting" } else { "" }
    ))
}

/// The channel part of `status` (a record that cannot be read shows as
/// its error in `last_check_message`).
pub fn status(s: &Settings) -> Option<crate::status::ChannelStatus> {
    let c = s.channel.as_ref()?;
    let (rec, err) = match record::load(&s.state_dir) {
        Ok(r) => (r, None),
        Err(e) => (None, Some(e.to_string())),
    };
    let rec = rec.as_ref();
    let last = rec.and_then(|r| r.last_check.as_ref());
    let found = rec.and_then(|r| r.found.as_ref());
    Some(crate::status::ChannelStatus {
        url: crate::fetch::redact(&c.url),
        role: c.role.clone(),
        strategy: c.strategy.name().into(),
        last_check: last.map(|l| l.at.clone()),
        last_check_ok: last.map(|l| l.ok),
        last_check_message: err.or_else(|| last.map(|l| l.message.clone())),
        found_version: found.map(|f| f.version.to_string()),
        wave_opens_at: found.and_then(|f| f.opens_at.clone()),
        waiting_for: found.map(|f| f.waiting_for.clone()),
        // Only while the other group still holds it untried or armed.
        staged: rec
            .filter(|r| {
                Store::new(&s.state_dir)
                    .load()
                    .is_ok_and(|st| staged_in_other(super::booted_slot(s), &st, r))
            })
            .and_then(|r| r.staged.as_ref())
            .map(|v| v.to_string()),
        lock_group: rec.and_then(|r| r.lock.as_ref()).map(|l| l.group.clone()),
    })
}

/// Writes the metrics file, if one is configured; a failure is logged.
fn export(
    s: &Settings,
    c: &ChannelSettings,
    rec: &ChannelRecord,
    booted: Option<SlotGroup>,
    state: Option<&State>,
    what: &str,
) {
    let Some(path) = &c.metrics_file else { return };
    let m = metrics::Metrics {
        booted_slot: booted.map(|g| g.to_string()),
        booted_version: state
            .and_then(|st| running(s, booted, st))
            .map(|v| v.to_string()),
        available_version: rec.found.as_ref().map(|f| f.version.to_string()),
        state: what.into(),
        strategy: c.strategy.name().into(),
        last_check: rec
            .last_check
            .as_ref()
            .and_then(|l| timefmt::parse_rfc3339(&l.at)),
        last_check_ok: rec.last_check.as_ref().is_some_and(|l| l.ok),
        checks: rec.counters.checks,
        check_failures: rec.counters.check_failures,
        installs: rec.counters.installs,
        install_failures: rec.counters.install_failures,
        fallbacks: state.map_or(0, |st| st.failures.len() as u64),
        bytes_fetched: rec.counters.bytes_fetched,
    };
    if let Err(e) = metrics::write(path, &m) {
        tracing::warn!("cannot write the metrics file {}: {e}", path.display());
    }
}

/// The wait before the next check: the interval, less a random part of
/// the jitter (so a fleet spreads out); after failures, the bounded
/// backoff of the fleet loop.
pub fn next_wait(c: &ChannelSettings, failures: u32, random: u64) -> Duration {
    let interval = Duration::from_secs(c.interval_secs);
    if failures > 0 {
        return crate::fleet::decide::retry_delay(failures, Duration::from_secs(10)).min(interval);
    }
    let jitter = if c.jitter_secs == 0 {
        0
    } else {
        random % (c.jitter_secs + 1)
    };
    Duration::from_secs(c.interval_secs - jitter)
}

/// The daemon's loop: check, act, wait; returns when `stop` is set. A
/// `now` flag set from outside (D-Bus `Check()`) cuts the wait short.
pub fn run(
    s: &Settings,
    repo: &mut dyn Repository,
    jobs: &dyn Jobs,
    stop: &AtomicBool,
    now: &AtomicBool,
) {
    let Ok(c) = settings(s) else { return };
    let mut failures = 0u32;
    while !stop.load(Ordering::Relaxed) {
        now.store(false, Ordering::Relaxed);
        match check_once(s, repo, jobs) {
            Ok(ch) => {
                failures = 0;
                tracing::info!(step = ch.step, "channel: {}", ch.message);
                if ch.reboot {
                    if let Err(e) = super::reboot() {
                        tracing::error!("reboot failed: {e}");
                    }
                }
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                tracing::warn!("channel check failed ({failures} in a row): {e}");
            }
        }
        let random = sys::random_seed()
            .map(|b| u64::from_le_bytes(b[..8].try_into().expect("8")))
            .unwrap_or(0);
        let until = Instant::now() + next_wait(c, failures, random);
        while !stop.load(Ordering::Relaxed)
            && !now.load(Ordering::Relaxed)
            && Instant::now() < until
        {
            std::thread::sleep(Duration::from_millis(200).min(until - Instant::now()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_are_bounded_and_jittered() {
        let mut c = crate::config::ChannelSettings {
            url: "http://h".into(),
            targets_url: "http://h/targets".into(),
            role: "targets".into(),
            root: "/r".into(),
            interval_secs: 600,
            jitter_secs: 60,
            strategy: Strategy::Immediate,
            metrics_file: None,
            postpone_while_logged_in_secs: 0,
        };
        assert_eq!(next_wait(&c, 0, 0), Duration::from_secs(600));
        assert_eq!(next_wait(&c, 0, 60), Duration::from_secs(540));
        assert_eq!(next_wait(&c, 0, 61), Duration::from_secs(600));
        assert_eq!(
            next_wait(&c, 1, 0),
            Duration::from_secs(10),
            "first retry soon"
        );
        assert_eq!(
            next_wait(&c, 20, 0),
            Duration::from_secs(600),
            "never beyond the interval"
        );
        c.interval_secs = 3600;
        assert_eq!(
            next_wait(&c, 20, 0),
            Duration::from_secs(600),
            "backoff caps at 10 min"
        );
    }
}

//! `tandem daemon`: the agent as a system service on D-Bus.
//!
//! One object at [`OBJECT_PATH`] with interface [`INTERFACE`]
//! (docs/dbus.md). One job at a time: a second request while one runs is
//! refused with `…Error.Busy`. Install runs on its own thread and reports
//! through the `Progress` property and the `Completed` signal; the other
//! methods are short and answer when done. Callers are authorized per
//! method ([`super::auth`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::zvariant::OwnedValue;
use zbus::Connection;

use super::auth::{authorize, Caller};
use super::{
    ACTION_FORCE, ACTION_INSTALL, ACTION_MANAGE, BUS_NAME, INTERFACE_VERSION, OBJECT_PATH,
};
use crate::config::Settings;
use crate::install::{self, Snapshot, Tracker};
use crate::ops::{self, Outcome};
use crate::slot::SlotGroup;

/// Errors a method call can return, named `dev.tandem.Agent1.Error.<Variant>`.
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "dev.tandem.Agent1.Error")]
pub enum AgentError {
    #[zbus(error)]
    ZBus(zbus::Error),
    /// Another operation is running (exit code 5).
    Busy(String),
    /// The caller may not do this (exit code 9).
    AccessDenied(String),
    /// Bad arguments or options (exit code 2).
    InvalidArgs(String),
    /// The configuration is unusable (exit code 3).
    Config(String),
    /// The bundle was refused (exit code 4).
    Refused(String),
    /// The source could not be read (exit code 6).
    Unreachable(String),
    /// Refused because of a slot's state (exit code 7).
    SlotState(String),
    /// The operation was cancelled (exit code 8).
    Cancelled(String),
    /// Anything else (exit code 1).
    Failed(String),
}

impl From<zbus::fdo::Error> for AgentError {
    fn from(e: zbus::fdo::Error) -> Self {
        AgentError::ZBus(zbus::Error::FDO(Box::new(e)))
    }
}

impl AgentError {
    /// The error for `outcome`, named as [`Outcome::error_name`] says.
    pub fn of(outcome: Outcome, m: String) -> AgentError {
        match outcome {
            Outcome::Usage => AgentError::InvalidArgs(m),
            Outcome::Config => AgentError::Config(m),
            Outcome::Refused => AgentError::Refused(m),
            Outcome::Busy => AgentError::Busy(m),
            Outcome::Unreachable => AgentError::Unreachable(m),
            Outcome::SlotState => AgentError::SlotState(m),
            Outcome::Cancelled => AgentError::Cancelled(m),
            Outcome::NotAuthorized => AgentError::AccessDenied(m),
            Outcome::Success | Outcome::Failed => AgentError::Failed(m),
        }
    }
}

impl From<ops::Error> for AgentError {
    fn from(e: ops::Error) -> Self {
        AgentError::of(e.outcome(), e.to_string())
    }
}

#[derive(Debug)]
struct Shared {
    /// `idle`, `install`, `mark-good`, `mark-bad`, `rollback`.
    operation: &'static str,
    progress: Snapshot,
    last_error: String,
    cancel: Option<Arc<AtomicBool>>,
    /// The install thread, for a stop to wait on.
    worker: Option<JoinHandle<()>>,
    /// Set once a stop signal came: no new jobs.
    stopping: bool,
    /// What the bootloader boots next, read when the daemon starts and
    /// after every operation (never on the bus executor: a `Get` from
    /// anyone must not wait for a bootloader helper).
    primary: Option<SlotGroup>,
}

struct Inner {
    settings: Settings,
    /// From the kernel command line, which does not change while we run.
    booted: Option<SlotGroup>,
    shared: Mutex<Shared>,
}

/// The served object. Cheap to clone: the install thread keeps one.
#[derive(Clone)]
pub struct Agent {
    inner: Arc<Inner>,
}

/// Install options (`a{sv}`): booleans `allow-downgrade`, `force`,
/// `reboot`; for `InstallFile` also `name` (a string, shown in records).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct InstallOptions {
    pub allow_downgrade: bool,
    pub force: bool,
    pub reboot: bool,
    pub name: Option<String>,
}

impl InstallOptions {
    /// Reads the options; anything unknown is an error. `name` only where
    /// `with_name`.
    pub fn parse(
        map: &HashMap<String, OwnedValue>,
        with_name: bool,
    ) -> Result<InstallOptions, String> {
        let mut o = InstallOptions::default();
        for (k, v) in map {
            let flag = match k.as_str() {
                "allow-downgrade" => &mut o.allow_downgrade,
                "force" => &mut o.force,
                "reboot" => &mut o.reboot,
                "name" if with_name => {
                    let name = String::try_from(v.try_clone().map_err(|e| e.to_string())?)
                        .map_err(|_| "install option \"name\" must be a string".to_string())?;
                    o.name = Some(crate::status::printable(&name));
                    continue;
                }
                _ => {
                    return Err(format!(
                        "unknown install option {k:?} (known: allow-downgrade, force, reboot{})",
                        if with_name { ", name" } else { "" }
                    ))
                }
            };
            *flag =
                bool::try_from(v).map_err(|_| format!("install option {k:?} must be a boolean"))?;
        }
        Ok(o)
    }

    /// The polkit action: overriding a safety check needs more than an
    /// ordinary install.
    pub fn action(&self) -> &'static str {
        if self.allow_downgrade || self.force {
            ACTION_FORCE
        } else {
            ACTION_INSTALL
        }
    }

    /// polkit details: what is installed from where, and how; the version
    /// once the bundle is verified.
    pub fn details(
        &self,
        source: &str,
        version: Option<&semver::Version>,
    ) -> HashMap<String, String> {
        let mut d = HashMap::from([
            ("source".to_string(), source.to_string()),
            (
                "allow-downgrade".to_string(),
                self.allow_downgrade.to_string(),
            ),
            ("force".to_string(), self.force.to_string()),
            ("reboot".to_string(), self.reboot.to_string()),
        ]);
        if let Some(v) = version {
            d.insert("version".into(), v.to_string());
        }
        d
    }
}

/// What an install job reads.
enum JobSource {
    /// A path or URL, opened by the daemon (a path only for root callers).
    Given(String),
    /// A regular file the caller opened and passed.
    File { file: std::fs::File, name: String },
}

impl Agent {
    pub fn new(settings: Settings) -> Agent {
        let agent = Agent {
            inner: Arc::new(Inner {
                booted: ops::booted_slot(&settings),
                settings,
                shared: Mutex::new(Shared {
                    operation: "idle",
                    progress: Snapshot::new(0, "idle", ""),
                    last_error: String::new(),
                    cancel: None,
                    worker: None,
                    stopping: false,
                    primary: None,
                }),
            }),
        };
        agent.refresh_primary();
        agent
    }

    /// Publishes a running job's progress (blocking).
    pub(super) fn set_progress(&self, snap: &Snapshot, emitter: &SignalEmitter<'_>) {
        self.shared().progress = snap.clone();
        if let Err(e) = async_io::block_on(self.progress_changed(emitter)) {
            tracing::warn!("cannot publish progress: {e}");
        }
    }

    pub(super) fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// Reads the bootloader's primary group into the cache (blocking).
    fn refresh_primary(&self) {
        let primary = ops::status(&self.inner.settings)
            .ok()
            .and_then(|s| s.primary);
        self.shared().primary = primary;
    }

    fn shared(&self) -> MutexGuard<'_, Shared> {
        self.inner.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// For a stop signal: refuses new jobs, cancels a running install (as
    /// `Cancel` does) and waits up to `limit` for the job to end, so that
    /// its outcome is recorded and published rather than cut off. Returns
    /// whether nothing was left running.
    pub fn stop(&self, limit: Duration) -> bool {
        let (op, worker) = {
            let mut s = self.shared();
            s.stopping = true;
            if let Some(c) = &s.cancel {
                c.store(true, Ordering::SeqCst);
            }
            (s.operation, s.worker.take())
        };
        if op != "idle" {
            tracing::info!(operation = op, "stopping: waiting for the {op} to end");
        }
        let deadline = Instant::now() + limit;
        loop {
            let idle = self.shared().operation == "idle";
            let joined = worker.as_ref().is_none_or(|w| w.is_finished());
            if idle && joined {
                if let Some(w) = worker {
                    let _ = w.join();
                }
                return true;
            }
            if Instant::now() >= deadline {
                tracing::warn!(
                    operation = op,
                    "stopping although the {op} has not ended after {limit:?}; an install's target stays invalid"
                );
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Claims the one job slot.
    pub(super) fn begin(
        &self,
        op: &'static str,
        cancel: Option<Arc<AtomicBool>>,
    ) -> Result<(), AgentError> {
        let mut s = self.shared();
        if s.stopping {
            return Err(AgentError::Failed(
                "the daemon is stopping; ask again once it has restarted".into(),
            ));
        }
        if s.operation != "idle" {
            return Err(AgentError::Busy(format!(
                "another operation is running: {}",
                s.operation
            )));
        }
        s.operation = op;
        s.cancel = cancel;
        s.progress = Snapshot::new(0, "starting", format!("{op} started"));
        Ok(())
    }

    /// Releases the job slot and publishes the outcome.
    pub(super) async fn finish(
        &self,
        emitter: &SignalEmitter<'_>,
        result: Result<String, (Outcome, String)>,
    ) -> zbus::Result<()> {
        let op;
        // Messages may quote what a bundle or a caller said.
        let result = result.map_err(|(o, m)| (o, crate::status::printable(&m)));
        let (name, message) = {
            let mut s = self.shared();
            op = s.operation;
            s.operation = "idle";
            s.cancel = None;
            let pct = s.progress.percent;
            match &result {
                Ok(m) => {
                    s.progress = Snapshot::new(100, "done", m.clone());
                    s.last_error.clear();
                    ("success", m.clone())
                }
                Err((outcome, m)) => {
                    let stage = if *outcome == Outcome::Cancelled {
                        "cancelled"
                    } else {
                        "failed"
                    };
                    s.progress = Snapshot::new(pct, stage, m.clone());
                    s.last_error = m.clone();
                    (outcome.result_name(), m.clone())
                }
            }
        };
        tracing::info!(operation = op, result = name, "{message}");
        let me = self.clone();
        blocking::unblock(move || me.refresh_primary()).await;
        self.operation_changed(emitter).await?;
        self.progress_changed(emitter).await?;
        self.last_error_changed(emitter).await?;
        self.primary_slot_changed(emitter).await?;
        Agent::completed(emitter, op, name, &message).await
    }

    /// Runs a short slot operation (commit, mark bad, rollback) off the
    /// executor, publishes it, and answers with the group it acted on.
    async fn control(
        &self,
        op: &'static str,
        emitter: &SignalEmitter<'_>,
        f: impl FnOnce(&Settings) -> Result<SlotGroup, ops::Error> + Send + 'static,
    ) -> Result<String, AgentError> {
        self.begin(op, None)?;
        self.operation_changed(emitter).await?;
        let me = self.clone();
        let r = blocking::unblock(move || f(&me.inner.settings).map(|g| g.to_string())).await;
        let published = r
            .as_ref()
            .map(Clone::clone)
            .map_err(|e| (e.outcome(), e.to_string()));
        self.finish(emitter, published).await?;
        r.map_err(AgentError::from)
    }

    /// The install job, on its own thread.
    fn run_install(&self, job: Job, cancel: Arc<AtomicBool>, emitter: SignalEmitter<'static>) {
        let Job {
            source,
            shown,
            opts,
            caller,
            conn,
        } = job;
        let mut tracker = Tracker::default();
        let mut show = |p: install::Progress<'_>| {
            if let Some(snap) = tracker.update(p) {
                self.shared().progress = snap;
                if let Err(e) = async_io::block_on(self.progress_changed(&emitter)) {
                    tracing::warn!("cannot publish progress: {e}");
                }
            }
        };
        // polkit again once the version is known, before anything is written.
        let approve: install::Approve = {
            let opts = opts.clone();
            Arc::new(move |m: &crate::bundle::Manifest| {
                let details = opts.details(&shown, Some(&m.version));
                async_io::block_on(caller.authorize(&conn, opts.action(), &details)).map_err(|e| {
                    match e {
                        AgentError::AccessDenied(m) => m,
                        other => other.to_string(),
                    }
                })
            })
        };
        let o = install::Options {
            allow_downgrade: opts.allow_downgrade,
            force: opts.force,
            cancel: Some(cancel),
            approve: Some(approve),
            stage: false,
        };
        let settings = &self.inner.settings;
        let r = match source {
            JobSource::Given(s) => ops::install(settings, &s, &o, &mut show),
            JobSource::File { file, name } => {
                ops::install_file(settings, file, &name, &o, &mut show)
            }
        };
        let reboot = opts.reboot && matches!(&r, Ok(rep) if rep.armed.is_some());
        let published = match &r {
            Ok(rep) => Ok(ops::describe_install(rep)),
            Err(e) => Err((e.outcome(), e.to_string())),
        };
        if let Err(e) = async_io::block_on(self.finish(&emitter, published)) {
            tracing::warn!("cannot publish the result: {e}");
        }
        if reboot {
            tracing::info!("rebooting into the new slot group");
            if let Err(e) = ops::reboot() {
                tracing::error!("reboot failed: {e}");
            }
        }
    }

    /// MarkBad and MarkBadWith: `force` needs the force action.
    async fn mark_bad_as(
        &self,
        slot: &str,
        force: bool,
        conn: &Connection,
        hdr: &Header<'_>,
        emitter: &SignalEmitter<'_>,
    ) -> Result<String, AgentError> {
        let action = if force { ACTION_FORCE } else { ACTION_MANAGE };
        authorize(conn, hdr, action).await?;
        let slot = parse_slot(slot)?;
        self.control("mark-bad", emitter, move |s| ops::mark_bad(s, slot, force))
            .await
    }

    /// Authorizes, claims the job slot and starts the install thread.
    async fn start_install(&self, job: Job, emitter: SignalEmitter<'_>) -> Result<(), AgentError> {
        let details = job.opts.details(&job.shown, None);
        job.caller
            .authorize(&job.conn, job.opts.action(), &details)
            .await?;
        let cancel = Arc::new(AtomicBool::new(false));
        self.begin("install", Some(cancel.clone()))?;
        self.operation_changed(&emitter).await?;
        self.progress_changed(&emitter).await?;
        let me = self.clone();
        let emitter = emitter.into_owned();
        let worker = std::thread::Builder::new()
            .name("install".into())
            .spawn(move || me.run_install(job, cancel, emitter))
            .map_err(|e| AgentError::Failed(format!("cannot start the install thread: {e}")))?;
        self.shared().worker = Some(worker);
        Ok(())
    }
}

/// An install request, authorized and ready to run.
struct Job {
    source: JobSource,
    /// The source as shown (redacted) in records, polkit and messages.
    shown: String,
    opts: InstallOptions,
    caller: Caller,
    conn: Connection,
}

#[zbus::interface(name = "dev.tandem.Agent1")]
impl Agent {
    /// Starts installing `source` (an http(s) URL; an absolute path only
    /// for root callers) into the inactive slot group and returns at once;
    /// watch `Progress` and wait for `Completed`. Options: `allow-downgrade`,
    /// `force`, `reboot` (booleans; the first two need `dev.tandem.force`).
    async fn install(
        &self,
        source: String,
        options: HashMap<String, OwnedValue>,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<(), AgentError> {
        let caller = Caller::of(conn, &hdr).await?;
        let opts = InstallOptions::parse(&options, false).map_err(AgentError::InvalidArgs)?;
        let parsed = crate::fetch::Source::parse(&source)
            .map_err(|e| AgentError::InvalidArgs(e.to_string()))?;
        if let crate::fetch::Source::File(p) = &parsed {
            if !p.is_absolute() {
                return Err(AgentError::InvalidArgs(format!(
                    "source {:?} must be an absolute path or a URL: the daemon does not share the caller's working directory",
                    p.display()
                )));
            }
            if caller.uid != 0 {
                return Err(AgentError::AccessDenied(
                    "the daemon opens a path only for root; pass the file itself with InstallFile (as `tandem install PATH` does), so that it is read with your own rights".into(),
                ));
            }
        }
        let job = Job {
            shown: parsed.to_string(),
            source: JobSource::Given(source),
            opts,
            caller,
            conn: conn.clone(),
        };
        self.start_install(job, emitter).await
    }

    /// Like `Install`, from a regular file the caller opened and passes
    /// (`h`): the daemon reads it with the caller's rights, never opening a
    /// path itself. Options as for `Install`, plus `name` (a string, shown
    /// in the records).
    async fn install_file(
        &self,
        fd: zbus::zvariant::OwnedFd,
        options: HashMap<String, OwnedValue>,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<(), AgentError> {
        let caller = Caller::of(conn, &hdr).await?;
        let opts = InstallOptions::parse(&options, true).map_err(AgentError::InvalidArgs)?;
        let file = std::fs::File::from(std::os::fd::OwnedFd::from(fd));
        crate::sys::require_regular(&file).map_err(|e| {
            AgentError::InvalidArgs(match e {
                crate::sys::OpenRegularError::Kind(kind) => {
                    format!("the passed descriptor is a {kind}, not a regular file")
                }
                crate::sys::OpenRegularError::Io(e) => format!("the passed descriptor: {e}"),
            })
        })?;
        let name = opts
            .name
            .clone()
            .unwrap_or_else(|| "(a file passed by descriptor)".into());
        let job = Job {
            shown: name.clone(),
            source: JobSource::File { file, name },
            opts,
            caller,
            conn: conn.clone(),
        };
        self.start_install(job, emitter).await
    }

    /// Stops the running install: the target group stays invalid, the
    /// booted one is untouched. `Completed` reports `cancelled`.
    async fn cancel(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), AgentError> {
        authorize(conn, &hdr, ACTION_INSTALL).await?;
        let s = self.shared();
        match (&s.cancel, s.operation) {
            (Some(flag), "install") => {
                flag.store(true, Ordering::Relaxed);
                Ok(())
            }
            _ => Err(AgentError::InvalidArgs(format!(
                "nothing to cancel: the current operation is {}",
                s.operation
            ))),
        }
    }

    /// Commits the booted slot group; returns it (`a` or `b`).
    async fn mark_good(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<String, AgentError> {
        authorize(conn, &hdr, ACTION_MANAGE).await?;
        self.control("mark-good", &emitter, ops::mark_good).await
    }

    /// Marks `slot` (`a`, `b`, or empty for the booted one) bad; returns it.
    async fn mark_bad(
        &self,
        slot: String,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<String, AgentError> {
        self.mark_bad_as(&slot, false, conn, &hdr, &emitter).await
    }

    /// `MarkBad` with options: `force` (boolean) marks the group bad even
    /// when the other group could not boot either; it needs the
    /// `dev.tandem.force` authorization.
    async fn mark_bad_with(
        &self,
        slot: String,
        options: HashMap<String, OwnedValue>,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<String, AgentError> {
        let mut force = false;
        for (k, v) in &options {
            match k.as_str() {
                "force" => {
                    force = bool::try_from(v).map_err(|_| {
                        AgentError::InvalidArgs("option \"force\" must be a boolean".into())
                    })?
                }
                _ => {
                    return Err(AgentError::InvalidArgs(format!(
                        "unknown mark-bad option {k:?} (known: force)"
                    )))
                }
            }
        }
        self.mark_bad_as(&slot, force, conn, &hdr, &emitter).await
    }

    /// Arms the installed, never-armed other group for a trial boot;
    /// returns it.
    async fn arm(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<String, AgentError> {
        authorize(conn, &hdr, ACTION_MANAGE).await?;
        self.control("arm", &emitter, ops::arm).await
    }

    /// Makes the other slot group primary if it is known good; returns it.
    async fn rollback(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<String, AgentError> {
        authorize(conn, &hdr, ACTION_MANAGE).await?;
        self.control("rollback", &emitter, ops::rollback).await
    }

    /// Asks the channel loop (`[channel]`) to check the channel now instead
    /// of at the end of its interval, and returns at once; an install it
    /// starts shows in `Operation`/`Progress` and ends with `Completed`.
    async fn check(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), AgentError> {
        authorize(conn, &hdr, ACTION_INSTALL).await?;
        if super::channel::check_now() {
            Ok(())
        } else {
            Err(AgentError::of(
                Outcome::Config,
                "no update channel: the configuration has no [channel] table".into(),
            ))
        }
    }

    /// The same JSON document as `tandem status --json` (docs/status.md).
    async fn get_status(&self) -> Result<String, AgentError> {
        let me = self.clone();
        let st = blocking::unblock(move || ops::status(&me.inner.settings)).await?;
        Ok(st.to_json())
    }

    /// Minor version of this interface.
    #[zbus(property)]
    fn version(&self) -> u32 {
        INTERFACE_VERSION
    }

    /// `idle`, `install`, `mark-good`, `mark-bad` or `rollback`.
    #[zbus(property)]
    fn operation(&self) -> String {
        self.shared().operation.to_string()
    }

    /// (percent, stage, message) of the current or last operation.
    #[zbus(property)]
    fn progress(&self) -> (u32, String, String) {
        let s = self.shared();
        (
            s.progress.percent,
            s.progress.stage.clone(),
            s.progress.message.clone(),
        )
    }

    /// The last operation's error; empty after a success.
    #[zbus(property)]
    fn last_error(&self) -> String {
        self.shared().last_error.clone()
    }

    /// `a` or `b` from the kernel command line; empty when unknown.
    #[zbus(property)]
    fn booted_slot(&self) -> String {
        self.inner.booted.map_or(String::new(), |g| g.to_string())
    }

    /// The group the bootloader boots next; empty when unknown.
    #[zbus(property)]
    fn primary_slot(&self) -> String {
        self.shared()
            .primary
            .map_or(String::new(), |g| g.to_string())
    }

    /// Sent when an operation ends: its name, a result (`success`,
    /// `refused`, `cancelled`, … one per CLI exit code, docs/cli.md) and a
    /// message.
    #[zbus(signal)]
    async fn completed(
        emitter: &SignalEmitter<'_>,
        operation: &str,
        result: &str,
        message: &str,
    ) -> zbus::Result<()>;
}

/// `a`, `b`, or empty for "the booted one".
fn parse_slot(s: &str) -> Result<Option<SlotGroup>, AgentError> {
    match s {
        "" => Ok(None),
        s => s
            .parse::<SlotGroup>()
            .map(Some)
            .map_err(|e| AgentError::InvalidArgs(e.to_string())),
    }
}

/// How long a stop waits for a running job (systemd's default stop timeout
/// is 90 s).
const STOP_WAIT: Duration = Duration::from_secs(60);

/// Serves the agent on the system bus (`DBUS_SYSTEM_BUS_ADDRESS` or the
/// standard socket) until SIGTERM or SIGINT, then stops cleanly
/// ([`Agent::stop`]).
pub fn serve(settings: Settings) -> Result<(), ops::Error> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])
        .map_err(|e| ops::Error::Other(format!("cannot handle SIGTERM/SIGINT: {e}")))?;
    let agent = Agent::new(settings);
    let handle = agent.clone();
    let conn = zbus::blocking::connection::Builder::system()
        .and_then(|b| b.name(BUS_NAME))
        .and_then(|b| b.serve_at(OBJECT_PATH, agent))
        .and_then(|b| b.build())
        .map_err(|e| {
            ops::Error::Other(format!(
                "cannot serve {BUS_NAME} on the system bus: {e} (another daemon may hold the name; the bus policy dev.tandem.Agent1.conf lets only root own it)"
            ))
        })?;
    tracing::info!("serving {BUS_NAME} at {OBJECT_PATH}");
    eprintln!(
        "tandem daemon: serving {BUS_NAME} on {}",
        conn.unique_name()
            .map_or("the system bus".into(), |n| n.to_string())
    );
    let fleet = super::fleet::start(&handle, &conn)?;
    let channel = super::channel::start(&handle, &conn)?;
    let signal = signals.forever().next().unwrap_or(SIGTERM);
    tracing::info!(signal, "stop requested");
    handle.stop(STOP_WAIT);
    if let Some(f) = fleet {
        f.stop();
    }
    if let Some(c) = channel {
        c.stop();
    }
    drop(conn);
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_options() {
        let mut m = HashMap::new();
        assert_eq!(
            InstallOptions::parse(&m, false).unwrap(),
            InstallOptions::default()
        );
        assert_eq!(InstallOptions::default().action(), ACTION_INSTALL);
        m.insert("force".to_string(), OwnedValue::from(true));
        m.insert("reboot".to_string(), OwnedValue::from(false));
        let o = InstallOptions::parse(&m, false).unwrap();
        assert!(o.force && !o.reboot && !o.allow_downgrade);
        assert_eq!(o.action(), ACTION_FORCE);
        let d = o.details("https://h/b.tnd", Some(&"1.2.0".parse().unwrap()));
        assert_eq!(d["source"], "https://h/b.tnd");
        assert_eq!(d["force"], "true");
        assert_eq!(d["version"], "1.2.0");
        m.insert("allow-downgrade".to_string(), OwnedValue::from(7u32));
        assert!(InstallOptions::parse(&m, false)
            .unwrap_err()
            .contains("boolean"));
        m.remove("allow-downgrade");
        m.insert("fast".to_string(), OwnedValue::from(true));
        assert!(InstallOptions::parse(&m, false)
            .unwrap_err()
            .contains("unknown install option \"fast\""));
        m.remove("fast");
        let name =
            OwnedValue::try_from(zbus::zvariant::Value::from("/media/usb/u\x1b[2J.tnd")).unwrap();
        m.insert("name".to_string(), name);
        assert!(
            InstallOptions::parse(&m, false).is_err(),
            "name only for InstallFile"
        );
        let o = InstallOptions::parse(&m, true).unwrap();
        assert_eq!(o.name.as_deref(), Some("/media/usb/u\\x1b[2J.tnd"));
    }

    #[test]
    fn every_outcome_has_the_error_name_it_advertises() {
        use zbus::DBusError;
        for o in Outcome::ALL {
            if o == Outcome::Success {
                continue;
            }
            let e = AgentError::of(o, "m".into());
            let name = e.name().to_string();
            assert_eq!(name, format!("dev.tandem.Agent1.Error.{}", o.error_name()));
            let back = match o {
                Outcome::Failed => Outcome::Failed,
                _ => Outcome::from_error_name(&name),
            };
            assert_eq!(back, o, "{name}");
        }
    }
}

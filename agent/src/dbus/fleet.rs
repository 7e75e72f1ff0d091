//! The daemon's fleet loop ([`ops::fleet::run`]) on its own thread when
//! `[hawkbit]` is configured. Its installs take the daemon's one job slot
//! like a D-Bus `Install`: they show in `Operation`/`Progress`, end with
//! `Completed`, and `Cancel` stops them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use zbus::object_server::SignalEmitter;

use super::service::Agent;
use super::OBJECT_PATH;
use crate::install::Snapshot;
use crate::ops::{self, Outcome};

/// The daemon's job slot, for a loop thread (hawkBit, channel).
pub(super) struct Jobs {
    agent: Agent,
    emitter: SignalEmitter<'static>,
}

impl Jobs {
    pub(super) fn new(agent: Agent, emitter: SignalEmitter<'static>) -> Jobs {
        Jobs { agent, emitter }
    }

    pub(super) fn agent(&self) -> &Agent {
        &self.agent
    }
}

impl ops::fleet::Jobs for Jobs {
    fn begin(&self, cancel: Arc<AtomicBool>) -> Result<(), String> {
        self.agent
            .begin("install", Some(cancel))
            .map_err(|e| e.to_string())
    }

    fn progress(&self, snap: &Snapshot) {
        self.agent.set_progress(snap, &self.emitter);
    }

    fn end(&self, result: Result<String, (Outcome, String)>) {
        if let Err(e) = async_io::block_on(self.agent.finish(&self.emitter, result)) {
            tracing::warn!("cannot publish the result: {e}");
        }
    }
}

/// A loop thread (hawkBit, channel) and its stop flag.
pub(super) struct Running {
    pub(super) stop: Arc<AtomicBool>,
    pub(super) thread: JoinHandle<()>,
}

impl Running {
    /// Asks the loop to end and waits for it (it checks every 200 ms; a
    /// running install was cancelled by [`Agent::stop`] before).
    pub(super) fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.thread.join();
    }
}

/// Starts the loop if `[hawkbit]` is set.
pub(super) fn start(
    agent: &Agent,
    conn: &zbus::blocking::Connection,
) -> Result<Option<Running>, ops::Error> {
    if agent.settings().hawkbit.is_none() {
        return Ok(None);
    }
    let server = ops::fleet::connect(agent.settings())?;
    let emitter = conn
        .object_server()
        .interface::<_, Agent>(OBJECT_PATH)
        .map_err(|e| ops::Error::Other(format!("cannot find the served object: {e}")))?
        .signal_emitter()
        .clone();
    let jobs = Jobs {
        agent: agent.clone(),
        emitter,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::Builder::new()
        .name("hawkbit".into())
        .spawn(move || {
            tracing::info!(controller = %ops::fleet::Server::controller(&server), "polling the hawkBit server");
            ops::fleet::run(jobs.agent.settings(), &server, &jobs, &flag);
        })
        .map_err(|e| ops::Error::Other(format!("cannot start the hawkBit thread: {e}")))?;
    Ok(Some(Running { stop, thread }))
}

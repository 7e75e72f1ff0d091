//! The daemon's channel loop ([`ops::channel::run`]) on its own thread
//! when `[channel]` is configured. Its installs take the daemon's one job
//! slot like a D-Bus `Install` (they show in `Operation`/`Progress` and
//! end with `Completed`); `Check()` cuts its wait short.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::fleet::Jobs;
use super::service::Agent;
use super::OBJECT_PATH;
use crate::ops;

/// Set by `Check()`: the loop checks at once.
static CHECK_NOW: AtomicBool = AtomicBool::new(false);
/// Whether a loop runs in this process.
static RUNNING: AtomicBool = AtomicBool::new(false);

/// Asks the running loop to check now; `false` if there is none.
pub(super) fn check_now() -> bool {
    if !RUNNING.load(Ordering::SeqCst) {
        return false;
    }
    CHECK_NOW.store(true, Ordering::SeqCst);
    true
}

use super::fleet::Running;

/// Starts the loop if `[channel]` is set.
pub(super) fn start(
    agent: &Agent,
    conn: &zbus::blocking::Connection,
) -> Result<Option<Running>, ops::Error> {
    if agent.settings().channel.is_none() {
        return Ok(None);
    }
    let mut repo = ops::channel_tuf::TufChannel::open(agent.settings())?;
    let emitter = conn
        .object_server()
        .interface::<_, Agent>(OBJECT_PATH)
        .map_err(|e| ops::Error::Other(format!("cannot find the served object: {e}")))?
        .signal_emitter()
        .clone();
    let jobs = Jobs::new(agent.clone(), emitter);
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    RUNNING.store(true, Ordering::SeqCst);
    let thread = std::thread::Builder::new()
        .name("channel".into())
        .spawn(move || {
            let url = jobs
                .agent()
                .settings()
                .channel
                .as_ref()
                .map(|c| c.url.clone())
                .unwrap_or_default();
            tracing::info!(%url, "checking the update channel");
            ops::channel::run(jobs.agent().settings(), &mut repo, &jobs, &flag, &CHECK_NOW);
            RUNNING.store(false, Ordering::SeqCst);
        })
        .map_err(|e| ops::Error::Other(format!("cannot start the channel thread: {e}")))?;
    Ok(Some(Running { stop, thread }))
}

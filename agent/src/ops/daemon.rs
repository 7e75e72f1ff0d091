//! `tandem daemon --no-bus`: the channel and hawkBit loops without the
//! D-Bus API, for devices that run no system bus (the minimal image's
//! busybox init starts it). Their installs take the state lock like a CLI
//! command; there is no `Check()` and no job to cancel, and SIGTERM or
//! SIGINT ends the loops between two checks.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::fleet::NoJobs;
use super::Error;
use crate::config::Settings;

/// Runs the configured loops until SIGTERM or SIGINT.
pub fn serve_without_bus(s: Settings) -> Result<(), Error> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    if s.channel.is_none() && s.hawkbit.is_none() {
        return Err(Error::Usage(
            "tandem daemon --no-bus has nothing to do: neither [channel] nor [hawkbit] is configured".into(),
        ));
    }
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])
        .map_err(|e| Error::Other(format!("cannot handle SIGTERM/SIGINT: {e}")))?;
    let s = Arc::new(s);
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads: Vec<JoinHandle<()>> = Vec::new();
    if let Some(c) = &s.channel {
        // Opened here, so a broken channel (no root, bad URL) is an error
        // of the command rather than of a thread.
        let mut repo = super::channel_tuf::TufChannel::open(&s)?;
        eprintln!(
            "tandem daemon: checking the update channel {} (no D-Bus)",
            c.url
        );
        let (s, stop) = (s.clone(), stop.clone());
        threads.push(spawn("channel", move || {
            super::channel::run(&s, &mut repo, &NoJobs, &stop, &AtomicBool::new(false));
        })?);
    }
    if s.hawkbit.is_some() {
        let server = super::fleet::connect(&s)?;
        eprintln!("tandem daemon: polling the hawkBit server (no D-Bus)");
        let (s, stop) = (s.clone(), stop.clone());
        threads.push(spawn("hawkbit", move || {
            super::fleet::run(&s, &server, &NoJobs, &stop);
        })?);
    }
    let signal = signals.forever().next().unwrap_or(SIGTERM);
    tracing::info!(signal, "stop requested");
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, Error> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map_err(|e| Error::Other(format!("cannot start the {name} thread: {e}")))
}

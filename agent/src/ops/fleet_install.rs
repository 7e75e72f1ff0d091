//! The install a deployment asks for, with its feedback, and a watcher
//! that stops it when the server cancels the action meanwhile.

use std::sync::Mutex;

use super::*;
use crate::fetch::redact;

fn proceeding(cnt: u32, text: String) -> Feedback {
    Feedback {
        execution: Execution::Proceeding,
        finished: Finished::None,
        progress: Some((cnt, 3)),
        details: vec![text],
    }
}

impl Act<'_> {
    pub(super) fn install(
        &mut self,
        id: &str,
        url: &str,
        version: Option<String>,
        filename: &str,
    ) -> Result<String, Error> {
        let cancel = Arc::new(AtomicBool::new(false));
        if let Err(why) = self.jobs.begin(cancel.clone()) {
            return Ok(format!("action {id}: not now ({why}); at the next poll"));
        }
        let r = self.install_claimed(id, url, version, filename, &cancel);
        if let Err(e) = &r {
            self.jobs.end(Err((e.outcome(), e.to_string())));
        }
        r
    }

    fn install_claimed(
        &mut self,
        id: &str,
        url: &str,
        version: Option<String>,
        filename: &str,
        cancel: &Arc<AtomicBool>,
    ) -> Result<String, Error> {
        // Persist before acting: after a crash the record says what ran.
        self.save(id, version.clone(), Phase::Installing { started_at: now() })?;
        let v = version.as_deref().unwrap_or("version not given");
        self.send(
            Target::Deployment(id),
            proceeding(0, format!("downloading and installing {filename} ({v})")),
        )?;
        let cancelled_by = Mutex::new(None);
        let done = AtomicBool::new(false);
        let result = std::thread::scope(|sc| {
            sc.spawn(|| watch_cancel(self.server, id, self.sleep, cancel, &cancelled_by, &done));
            let r = self.run_install(id, url, cancel);
            done.store(true, Ordering::Relaxed);
            r
        });
        let cancel_id = cancelled_by.into_inner().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(rep) if rep.armed.is_some() => {
                self.save(
                    id,
                    version,
                    Phase::Armed {
                        target: rep.target,
                        armed_at: now(),
                    },
                )?;
                let reboot = self.s.hawkbit.as_ref().is_some_and(|h| h.reboot);
                let next = if reboot {
                    "rebooting into it"
                } else {
                    "waiting for a reboot"
                };
                let text = format!("{}; {next}", crate::ops::describe_install(&rep));
                self.send(Target::Deployment(id), proceeding(3, text.clone()))?;
                self.jobs.end(Ok(text.clone()));
                self.reboot = reboot;
                Ok(format!("action {id}: {text}"))
            }
            Ok(rep) => {
                let text = format!(
                    "{}; no boot backend is configured, so nothing will boot it",
                    crate::ops::describe_install(&rep)
                );
                self.jobs.end(Err((Outcome::Config, text.clone())));
                self.report(
                    id,
                    version,
                    Final {
                        success: false,
                        detail: text,
                    },
                )
            }
            Err(e) => {
                self.jobs.end(Err((e.outcome(), e.to_string())));
                match cancel_id {
                    Some(cid) if e.outcome() == Outcome::Cancelled => {
                        let text = format!("cancelled by the server during the install: {e}");
                        self.send(
                            Target::Cancel(&cid),
                            Feedback::new(Execution::Closed, Finished::Success, &text),
                        )?;
                        record::clear(&self.s.state_dir).map_err(crate::fleet::FleetError::from)?;
                        Ok(format!("cancel {cid}: {text}"))
                    }
                    _ => self.report(
                        id,
                        version,
                        Final {
                            success: false,
                            detail: format!("install failed: {e}"),
                        },
                    ),
                }
            }
        }
    }

    fn run_install(
        &self,
        id: &str,
        url: &str,
        cancel: &Arc<AtomicBool>,
    ) -> Result<install::Report, Error> {
        let mut tracker = Tracker::default();
        let mut show = |p: Progress<'_>| {
            if let Some((cnt, text)) = milestone(&p) {
                if let Err(e) = self
                    .server
                    .feedback(Target::Deployment(id), &proceeding(cnt, text))
                {
                    tracing::warn!("cannot send progress to the fleet server: {e}");
                }
            }
            if let Some(snap) = tracker.update(p) {
                self.jobs.progress(&snap);
            }
        };
        let opts = install::Options {
            cancel: Some(cancel.clone()),
            ..Default::default()
        };
        crate::ops::install_source(
            self.s,
            &redact(url),
            || self.server.bundle_source(url),
            &opts,
            &mut show,
        )
    }
}

/// Polls every `interval` while the install runs; a cancel of action `id`
/// sets the install's cancel flag (and says which cancel action it was).
fn watch_cancel(
    server: &dyn Server,
    id: &str,
    interval: Duration,
    cancel: &AtomicBool,
    by: &Mutex<Option<String>>,
    done: &AtomicBool,
) {
    loop {
        let until = Instant::now() + interval;
        while Instant::now() < until {
            if done.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        match server.poll() {
            Ok(Poll {
                cancel: Some(c), ..
            }) if c.cancel.stop_id == id => {
                tracing::info!(action = id, "the server cancelled the running install");
                *by.lock().unwrap_or_else(|p| p.into_inner()) = Some(c.id);
                cancel.store(true, Ordering::SeqCst);
                return;
            }
            Ok(_) => {}
            Err(e) => tracing::debug!("cancel watch poll failed: {e}"),
        }
    }
}

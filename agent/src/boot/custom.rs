//! The custom backend: a board-specific executable stores the decision.
//!
//! The agent runs `COMMAND <verb> [args]` with no shell, a clean stdin, and
//! a 30 s limit. Exit status 0 means success; anything else is a failure
//! whose stderr is reported. Verbs (all slot names are `a` or `b`):
//!
//! | verb | stdout on success |
//! |------|-------------------|
//! | `get-primary` | `a`, `b`, or empty (unknown) |
//! | `set-primary SLOT` | — (commit SLOT: good, default, no trial) |
//! | `get-state SLOT` | `good` or `bad` |
//! | `set-state SLOT good\|bad` | — |
//! | `arm SLOT TRIES` | — (boot SLOT next, at most TRIES times, then fall back) |
//! | `get-tries SLOT` | trial boots left, or empty when not on trial |
//! | `max-tries` | the largest TRIES the board can count (optional; default 1) |
//!
//! Every `set-*`/`arm` must be power-safe on the helper's side: after a
//! power cut the board must boot the old or the new choice.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{BootError, Bootloader, Mark};
use crate::slot::SlotGroup;

const BACKEND: &str = "custom";
const TIMEOUT: Duration = Duration::from_secs(30);

pub struct Custom {
    command: PathBuf,
    max_tries: u32,
}

impl Custom {
    pub fn new(command: &Path) -> Result<Custom, BootError> {
        let mut c = Custom {
            command: command.to_path_buf(),
            max_tries: 1,
        };
        // Optional verb: a helper that does not know it keeps the default.
        if let Ok(out) = c.run(&["max-tries"]) {
            c.max_tries = out.trim().parse().unwrap_or(1).max(1);
        }
        Ok(c)
    }

    fn run(&self, args: &[&str]) -> Result<String, BootError> {
        let err = |message: String| BootError::Command {
            backend: BACKEND,
            command: self.command.clone(),
            args: args.join(" "),
            message,
        };
        let mut child = Command::new(&self.command)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| err(format!("cannot run: {e}")))?;
        let start = Instant::now();
        let status = loop {
            match child.try_wait().map_err(|e| err(e.to_string()))? {
                Some(s) => break s,
                None if start.elapsed() > TIMEOUT => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(err(format!(
                        "no answer within {} s; killed",
                        TIMEOUT.as_secs()
                    )));
                }
                None => std::thread::sleep(Duration::from_millis(10)),
            }
        };
        let mut out = String::new();
        let mut errs = String::new();
        if let Some(mut o) = child.stdout.take() {
            let _ = o.read_to_string(&mut out);
        }
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut errs);
        }
        if !status.success() {
            return Err(err(format!("{status}: {}", errs.trim())));
        }
        Ok(out)
    }

    fn parse_slot(&self, out: &str, verb: &str) -> Result<Option<SlotGroup>, BootError> {
        match out.trim() {
            "" => Ok(None),
            s => s.parse().map(Some).map_err(|_| BootError::Command {
                backend: BACKEND,
                command: self.command.clone(),
                args: verb.into(),
                message: format!("answered {s:?}; expected a, b or nothing"),
            }),
        }
    }
}

impl Bootloader for Custom {
    fn name(&self) -> &'static str {
        BACKEND
    }

    fn primary(&mut self) -> Result<Option<SlotGroup>, BootError> {
        let out = self.run(&["get-primary"])?;
        self.parse_slot(&out, "get-primary")
    }

    fn set_primary(&mut self, g: SlotGroup) -> Result<(), BootError> {
        self.run(&["set-primary", g.as_str()]).map(drop)
    }

    fn state(&mut self, g: SlotGroup) -> Result<Mark, BootError> {
        let out = self.run(&["get-state", g.as_str()])?;
        match out.trim() {
            "good" => Ok(Mark::Good),
            "bad" => Ok(Mark::Bad),
            s => Err(BootError::Command {
                backend: BACKEND,
                command: self.command.clone(),
                args: format!("get-state {g}"),
                message: format!("answered {s:?}; expected good or bad"),
            }),
        }
    }

    fn set_state(&mut self, g: SlotGroup, m: Mark) -> Result<(), BootError> {
        let m = match m {
            Mark::Good => "good",
            Mark::Bad => "bad",
        };
        self.run(&["set-state", g.as_str(), m]).map(drop)
    }

    fn arm(&mut self, g: SlotGroup, tries: u32) -> Result<(), BootError> {
        if tries > self.max_tries {
            return Err(BootError::Unsupported {
                backend: BACKEND,
                message: format!(
                    "cannot arm for {tries} tries: the helper counts at most {}",
                    self.max_tries
                ),
            });
        }
        self.run(&["arm", g.as_str(), &tries.to_string()]).map(drop)
    }

    fn tries_left(&mut self, g: SlotGroup) -> Result<Option<u32>, BootError> {
        let out = self.run(&["get-tries", g.as_str()])?;
        match out.trim() {
            "" => Ok(None),
            s => s.parse().map(Some).map_err(|_| BootError::Command {
                backend: BACKEND,
                command: self.command.clone(),
                args: format!("get-tries {g}"),
                message: format!("answered {s:?}; expected a number or nothing"),
            }),
        }
    }

    fn max_tries(&self) -> u32 {
        self.max_tries
    }
}

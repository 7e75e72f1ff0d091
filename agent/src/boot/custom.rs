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
//! | `can-set-verity` | `yes` if the helper takes `set-verity` (optional; default no) |
//! | `set-verity SLOT [PARAMS]` | — (kernel parameters for SLOT's next boots, e.g. its dm-verity root hash; none: clear) |
//!
//! A bundle whose rootfs is verified by dm-verity is refused before
//! anything is written unless the helper answers `yes` to `can-set-verity`.
//!
//! Every `set-*`/`arm` must be power-safe on the helper's side: after a
//! power cut the board must boot the old or the new choice.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{BootError, Bootloader, Mark};
use crate::slot::SlotGroup;

const BACKEND: &str = "custom";
const TIMEOUT: Duration = Duration::from_secs(30);

pub struct Custom {
    command: PathBuf,
    /// Asked of the helper the first time it matters, not on every start.
    max_tries: std::cell::OnceCell<u32>,
    verity: std::cell::OnceCell<bool>,
}

impl Custom {
    pub fn new(command: &Path) -> Result<Custom, BootError> {
        Ok(Custom {
            command: command.to_path_buf(),
            max_tries: std::cell::OnceCell::new(),
            verity: std::cell::OnceCell::new(),
        })
    }

    fn max(&self) -> u32 {
        // Optional verb: a helper that does not know it keeps the default.
        *self.max_tries.get_or_init(|| {
            self.run(&["max-tries"])
                .ok()
                .and_then(|out| out.trim().parse().ok())
                .unwrap_or(1)
                .max(1)
        })
    }

    fn run(&self, args: &[&str]) -> Result<String, BootError> {
        let err = |message: String| BootError::Command {
            backend: BACKEND,
            command: self.command.clone(),
            args: args.join(" "),
            message,
        };
        let f = crate::sys::run_with_timeout(&self.command, args, TIMEOUT, &mut || {})
            .map_err(|e| err(format!("cannot run: {e}")))?;
        match f.status {
            None => Err(err(format!(
                "no answer within {} s; killed",
                TIMEOUT.as_secs()
            ))),
            Some(s) if !s.success() => Err(err(format!("{s}: {}", f.stderr.trim()))),
            Some(_) => Ok(f.stdout),
        }
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

    fn can_pass_verity(&self) -> bool {
        *self.verity.get_or_init(|| {
            self.run(&["can-set-verity"])
                .is_ok_and(|out| out.trim() == "yes")
        })
    }

    fn set_verity(&mut self, g: SlotGroup, args: Option<&str>) -> Result<bool, BootError> {
        if !self.can_pass_verity() {
            return Ok(false);
        }
        let mut argv = vec!["set-verity", g.as_str()];
        argv.extend(args.into_iter().flat_map(str::split_whitespace));
        self.run(&argv).map(|_| true)
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
        if tries > self.max() {
            return Err(BootError::Unsupported {
                backend: BACKEND,
                message: format!(
                    "cannot arm for {tries} tries: the helper counts at most {}",
                    self.max()
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
        self.max()
    }
}

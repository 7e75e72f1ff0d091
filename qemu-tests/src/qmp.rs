//! A minimal QMP client: enough to cut power (`quit`), reset, and query.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::RigError;

pub struct Qmp {
    r: BufReader<UnixStream>,
    w: UnixStream,
}

impl Qmp {
    /// Connects (retrying while QEMU creates the socket) and negotiates.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Qmp, RigError> {
        let deadline = Instant::now() + timeout;
        let s = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(RigError::Qmp(format!("connect {}: {e}", path.display()))),
            }
        };
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| RigError::Qmp(e.to_string()))?;
        let w = s.try_clone().map_err(|e| RigError::Qmp(e.to_string()))?;
        let mut q = Qmp {
            r: BufReader::new(s),
            w,
        };
        q.read_msg()?; // greeting
        q.execute("qmp_capabilities", None)?;
        Ok(q)
    }

    fn read_msg(&mut self) -> Result<serde_json::Value, RigError> {
        let mut line = String::new();
        self.r
            .read_line(&mut line)
            .map_err(|e| RigError::Qmp(format!("read: {e}")))?;
        if line.is_empty() {
            return Err(RigError::Qmp("connection closed".into()));
        }
        serde_json::from_str(&line).map_err(|e| RigError::Qmp(format!("bad JSON {line:?}: {e}")))
    }

    /// Runs a command and returns its `return` value (events are skipped).
    pub fn execute(
        &mut self,
        cmd: &str,
        args: Option<serde_json::Value>,
    ) -> Result<serde_json::Value, RigError> {
        let mut msg = serde_json::json!({ "execute": cmd });
        if let Some(a) = args {
            msg["arguments"] = a;
        }
        // One write: QEMU runs a command as soon as its closing brace
        // arrives, so a newline written separately after `quit` can find
        // the socket already closed (EPIPE; once scenario 8c's failure).
        let line = format!("{msg}\n");
        self.w
            .write_all(line.as_bytes())
            .map_err(|e| RigError::Qmp(format!("write: {e}")))?;
        loop {
            let v = self.read_msg()?;
            if let Some(r) = v.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = v.get("error") {
                return Err(RigError::Qmp(format!("{cmd}: {e}")));
            }
        }
    }

    /// Cuts power: QEMU stops at once, with no guest shutdown and no flush.
    /// Waits for QEMU's answer (or the socket closing as it exits): a
    /// command whose sender hangs up at once may never be read.
    pub fn quit(mut self) -> Result<(), RigError> {
        match self.execute("quit", None) {
            Ok(_) => Ok(()),
            Err(RigError::Qmp(m)) if m.contains("closed") || m.contains("read") => Ok(()),
            Err(e) => Err(e),
        }
    }
}

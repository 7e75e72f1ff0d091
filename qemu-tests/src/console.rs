//! The serial console: every line with the time it arrived, kept in memory
//! and written to a log file; waits for markers with timeouts.

use std::io::{BufRead, BufReader, Read, Write};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// One console line and when it arrived, relative to the console's start.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub at: Duration,
    pub text: String,
}

#[derive(Default)]
struct Inner {
    lines: Vec<Line>,
    closed: bool,
}

/// A console fed by a reader thread. Cloning shares the same console.
#[derive(Clone)]
pub struct Console {
    inner: Arc<(Mutex<Inner>, Condvar)>,
    start: Instant,
}

/// Strips ANSI escape sequences and carriage returns firmware likes to emit.
pub fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for c in chars.by_ref() {
                        if c.is_ascii_alphabetic() {
                            break;
                        }
                    }
                }
            }
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

impl Console {
    /// Starts reading `src` on a thread; lines also go to `log` with their
    /// time stamps.
    pub fn spawn(src: impl Read + Send + 'static, mut log: impl Write + Send + 'static) -> Console {
        let c = Console {
            inner: Arc::new((Mutex::new(Inner::default()), Condvar::new())),
            start: Instant::now(),
        };
        let c2 = c.clone();
        std::thread::spawn(move || {
            let mut r = BufReader::new(src);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match r.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let text = clean(String::from_utf8_lossy(&buf).trim_end_matches('\n'));
                        let at = c2.start.elapsed();
                        let _ = writeln!(log, "[{:8.3}] {text}", at.as_secs_f64());
                        let _ = log.flush();
                        let (m, cv) = &*c2.inner;
                        m.lock()
                            .expect("console lock")
                            .lines
                            .push(Line { at, text });
                        cv.notify_all();
                    }
                }
            }
            let (m, cv) = &*c2.inner;
            m.lock().expect("console lock").closed = true;
            cv.notify_all();
        });
        c
    }

    /// Number of lines so far: a cursor for [`Console::wait_from`].
    pub fn len(&self) -> usize {
        self.inner.0.lock().expect("console lock").lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Waits until a line at index >= `from` contains any of `needles`.
    /// Returns (index, line, which needle). `Err(true)` when the console
    /// closed (QEMU exited), `Err(false)` on timeout.
    pub fn wait_from(
        &self,
        from: usize,
        needles: &[&str],
        timeout: Duration,
    ) -> Result<(usize, Line, usize), bool> {
        let deadline = Instant::now() + timeout;
        let (m, cv) = &*self.inner;
        let mut g = m.lock().expect("console lock");
        let mut next = from;
        loop {
            while next < g.lines.len() {
                if let Some(k) = needles.iter().position(|n| g.lines[next].text.contains(n)) {
                    return Ok((next, g.lines[next].clone(), k));
                }
                next += 1;
            }
            if g.closed {
                return Err(true);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(false);
            }
            g = cv.wait_timeout(g, deadline - now).expect("console lock").0;
        }
    }

    /// The last `n` lines, for error messages.
    pub fn tail(&self, n: usize) -> String {
        let g = self.inner.0.lock().expect("console lock");
        let start = g.lines.len().saturating_sub(n);
        g.lines[start..]
            .iter()
            .map(|l| format!("  [{:7.2}] {}", l.at.as_secs_f64(), l.text))
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn lines(&self) -> Vec<Line> {
        self.inner.0.lock().expect("console lock").lines.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_escapes() {
        assert_eq!(clean("\u{1b}[2J\u{1b}[01;01Hhello\r"), "hello");
        assert_eq!(clean("a\u{1b}[0m\u{1b}[37m\u{1b}[40mb"), "ab");
    }

    #[test]
    fn waits_for_markers_in_order() {
        let data = b"one\r\ntwo MARK-A\nthree\nfour MARK-B\n".to_vec();
        let c = Console::spawn(std::io::Cursor::new(data), std::io::sink());
        let (i, l, k) = c.wait_from(0, &["MARK-A"], Duration::from_secs(5)).unwrap();
        assert_eq!((i, l.text.as_str(), k), (1, "two MARK-A", 0));
        let (j, _, k) = c
            .wait_from(i + 1, &["MARK-A", "MARK-B"], Duration::from_secs(5))
            .unwrap();
        assert_eq!((j, k), (3, 1));
        assert_eq!(
            c.wait_from(j + 1, &["MARK-A"], Duration::from_secs(5)),
            Err(true)
        );
    }

    #[test]
    fn times_out() {
        let (r, _w) = std::os::unix::net::UnixStream::pair().unwrap();
        let c = Console::spawn(r, std::io::sink());
        assert!(!c
            .wait_from(0, &["never"], Duration::from_millis(100))
            .unwrap_err());
    }
}

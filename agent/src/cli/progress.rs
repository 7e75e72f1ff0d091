//! Shows install progress: a redrawn bar on a terminal, plain lines
//! (milestones and every tenth percent) otherwise, e.g. in the journal.

use std::io::Write;

use crate::install::Snapshot;

pub struct Printer {
    tty: bool,
    bar_open: bool,
    last_decile: Option<u32>,
}

impl Printer {
    pub fn new(tty: bool) -> Printer {
        Printer {
            tty,
            bar_open: false,
            last_decile: None,
        }
    }

    pub fn show(&mut self, s: &Snapshot) {
        let mut err = std::io::stderr().lock();
        if s.is_milestone() {
            if self.bar_open {
                let _ = writeln!(err);
                self.bar_open = false;
            }
            let _ = writeln!(err, "{}", s.message);
            self.last_decile = None;
            return;
        }
        if self.tty {
            const WIDTH: usize = 30;
            let fill = (s.percent as usize * WIDTH / 100).min(WIDTH);
            let _ = write!(
                err,
                "\r[{}{}] {:3}% {}\x1b[K",
                "#".repeat(fill),
                " ".repeat(WIDTH - fill),
                s.percent,
                s.message
            );
            let _ = err.flush();
            self.bar_open = true;
        } else if self.last_decile != Some(s.percent / 10) {
            self.last_decile = Some(s.percent / 10);
            let _ = writeln!(err, "{:3}% {}", s.percent, s.message);
        }
    }

    /// Ends an open bar line.
    pub fn finish(&mut self) {
        if self.bar_open {
            eprintln!();
            self.bar_open = false;
        }
    }
}

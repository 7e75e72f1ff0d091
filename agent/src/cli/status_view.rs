//! `tandem status` for a person: a compact summary of both slot groups,
//! what boots next, the last operation and the failures (`--json` is the
//! machine's form, docs/status.md). Pure: a [`Status`] in, text out;
//! colour only when the caller says so (stdout is a terminal, no NO_COLOR).
//!
//! Every string that came from outside (a source URL, an error, a health
//! check's output, the initramfs's reason) goes through
//! [`printable`](crate::status::printable): no escape sequence of theirs
//! reaches the terminal.

use std::fmt::Write as _;

use crate::boot::Mark;
use crate::fsm::SlotState;
use crate::slot::SlotGroup;
use crate::state::{OperationKind, Transfer};
use crate::status::{printable, OperationStatus, SlotStatus, Status};

/// Failures listed in full; older ones are counted (all are in `--json`).
const FAILURES_SHOWN: usize = 5;

/// ANSI SGR codes, or nothing.
#[derive(Clone, Copy)]
struct Paint(bool);

impl Paint {
    fn code(self, code: &str, s: &str) -> String {
        if self.0 && !s.is_empty() {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
    fn bold(self, s: &str) -> String {
        self.code("1", s)
    }
    fn dim(self, s: &str) -> String {
        self.code("2", s)
    }
    fn red(self, s: &str) -> String {
        self.code("1;31", s)
    }
    fn green(self, s: &str) -> String {
        self.code("32", s)
    }
    fn yellow(self, s: &str) -> String {
        self.code("33", s)
    }
}

/// Whether `tandem status` colours its output: on a terminal, unless
/// NO_COLOR is set to something (no-color.org) or TERM is `dumb`.
pub fn use_color(stdout_is_terminal: bool) -> bool {
    let set = |k: &str| std::env::var_os(k).is_some_and(|v| !v.is_empty());
    stdout_is_terminal && !set("NO_COLOR") && std::env::var_os("TERM").is_none_or(|t| t != "dumb")
}

/// The summary; `color` adds ANSI colours (the layout is the same).
pub fn render(st: &Status, color: bool) -> String {
    let p = Paint(color);
    let mut out = String::new();
    header(&mut out, st, p);
    out.push('\n');
    let state_w = st
        .slots
        .iter()
        .map(|s| s.state.as_str().len())
        .max()
        .unwrap_or(0);
    let version_w = st
        .slots
        .iter()
        .map(|s| s.version.as_deref().unwrap_or("-").len())
        .max()
        .unwrap_or(0);
    for s in &st.slots {
        slot(&mut out, st, s, (state_w, version_w), p);
    }
    out.push('\n');
    match &st.last_operation {
        None => out += "last operation: none\n",
        Some(o) => operation(&mut out, o, p),
    }
    failures(&mut out, st, p);
    if let Some(c) = &st.channel {
        channel(&mut out, c, p);
    }
    out
}

fn channel(out: &mut String, c: &crate::status::ChannelStatus, p: Paint) {
    out.push('\n');
    let _ = writeln!(
        out,
        "channel:    {} ({}, strategy {})",
        printable(&c.url),
        printable(&c.role),
        c.strategy
    );
    let check = match (&c.last_check, c.last_check_ok) {
        (None, _) => "never".to_string(),
        (Some(at), Some(false)) => format!("{} {}", printable(at), p.red("failed")),
        (Some(at), _) => printable(at),
    };
    let _ = writeln!(out, "  last check: {check}");
    if let Some(m) = c.last_check_message.as_deref().filter(|m| !m.is_empty()) {
        let _ = writeln!(out, "    {}", printable(m));
    }
    if let Some(v) = &c.found_version {
        let wave = c.wave_opens_at.as_deref().map_or(String::new(), |t| {
            format!(", its wave opens {}", printable(t))
        });
        let _ = writeln!(out, "  update:     {}{wave}", p.bold(&printable(v)));
    }
    if let Some(v) = &c.staged {
        let _ = writeln!(out, "  staged:     {}", printable(v));
    }
    if let Some(g) = &c.lock_group {
        let _ = writeln!(
            out,
            "  FleetLock:  holds a reboot slot of group {}",
            printable(g)
        );
    }
}

fn group(g: Option<SlotGroup>) -> String {
    g.map_or("unknown".to_string(), |g| g.to_string())
}

fn header(out: &mut String, st: &Status, p: Paint) {
    let _ = writeln!(out, "compatible: {}", p.bold(&st.compatible));
    let _ = writeln!(out, "booted:     {}", p.bold(&group(st.booted)));
    let next = match (st.primary, st.booted) {
        (Some(pr), Some(b)) if pr != b => " (boots next)",
        _ => "",
    };
    let _ = writeln!(out, "primary:    {}{next}", p.bold(&group(st.primary)));
    let backend = serde_json::to_value(st.boot_backend)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    match &st.boot_error {
        None => {
            let _ = writeln!(out, "bootloader: {backend}");
        }
        Some(e) => {
            let _ = writeln!(
                out,
                "bootloader: {backend}, {}",
                p.red(&format!("cannot read: {}", printable(e)))
            );
        }
    }
    if st.security_epoch_floor > 0 {
        let _ = writeln!(out, "epoch:      floor {}", st.security_epoch_floor);
    }
    if let Some(why) = &st.data_degraded {
        let _ = writeln!(
            out,
            "data:       {}: {}",
            p.red("DEGRADED, nothing persists across a reboot"),
            printable(why)
        );
    }
    if let Some(m) = &st.etc_merge {
        let list = |v: &[String]| {
            v.iter()
                .map(|x| printable(x))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = write!(
            out,
            "/etc:       merged for {}: {} yielded to the image",
            printable(&m.version),
            m.yielded.len()
        );
        if m.conflicts.is_empty() {
            out.push('\n');
        } else {
            let _ = writeln!(
                out,
                "; {}: {}",
                p.yellow(&format!(
                    "{} conflict(s), the administrator's kept",
                    m.conflicts.len()
                )),
                list(&m.conflicts)
            );
        }
    }
}

fn state_word(s: SlotState, p: Paint, width: usize) -> String {
    let padded = format!("{:<width$}", s.as_str());
    match s {
        SlotState::Good => p.green(&padded),
        SlotState::Installed => p.yellow(&padded),
        SlotState::Invalid | SlotState::Bad => p.red(&padded),
        SlotState::Unknown => p.dim(&padded),
    }
}

/// What is special about a group: booted, primary, on trial, not armed,
/// refused by the bootloader.
fn marks(st: &Status, s: &SlotStatus, p: Paint) -> Vec<String> {
    let mut m = vec![];
    if s.booted {
        m.push(p.bold("booted"));
    }
    if st.primary == Some(s.group) {
        m.push(p.bold("primary"));
    }
    match (s.boot_mark, s.tries_left) {
        (Some(Mark::Good), Some(n)) => m.push(p.yellow(&format!(
            "trial: {n} {} left",
            if n == 1 { "try" } else { "tries" }
        ))),
        (Some(Mark::Bad), _) => m.push(p.red("bootloader: bad")),
        _ => {}
    }
    if s.state == SlotState::Installed && !s.armed && s.boot_mark.is_some() {
        m.push(p.red("NOT ARMED (tandem arm)"));
    }
    m
}

fn slot(out: &mut String, st: &Status, s: &SlotStatus, (sw, vw): (usize, usize), p: Paint) {
    let marks = marks(st, s, p).join(", ");
    let version = format!("{:<vw$}", s.version.as_deref().unwrap_or("-"));
    let line = format!(
        "{} {}  {}  {}  {marks}",
        if s.booted { "*" } else { " " },
        p.bold(s.group.as_str()),
        state_word(s.state, p, sw),
        version,
    );
    let _ = writeln!(out, "{}", line.trim_end());
    let mut about = vec![];
    if let Some(at) = &s.installed_at {
        about.push(format!("installed {}", printable(at)));
    }
    if let Some(e) = s.security_epoch {
        about.push(format!("security epoch {e}"));
    }
    if !about.is_empty() {
        let _ = writeln!(out, "      {}", about.join(", "));
    }
    let class_w = s.images.iter().map(|i| i.class.len()).max().unwrap_or(0);
    let dev_w = s.images.iter().map(|i| i.device.len()).max().unwrap_or(0);
    for i in &s.images {
        let mut line = format!(
            "      {:<class_w$}  {:<dev_w$}",
            i.class,
            printable(&i.device)
        );
        if let Some(n) = i.size {
            let _ = write!(line, "  {}", bytes(n));
        }
        if let Some(h) = &i.sha256 {
            let _ = write!(line, "  sha256 {}", p.dim(&short_hash(h)));
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
}

fn short_hash(h: &str) -> String {
    let h = printable(h);
    match h.char_indices().nth(12) {
        Some((i, _)) => format!("{}...", &h[..i]),
        None => h,
    }
}

fn result_word(r: &str, p: Paint) -> String {
    match r {
        "succeeded" => p.green(r),
        "failed" => p.red(r),
        "interrupted" => p.yellow(r),
        _ => p.bold(r),
    }
}

fn operation(out: &mut String, o: &OperationStatus, p: Paint) {
    let what = match o.kind {
        OperationKind::Install => format!(
            "install {} into {}",
            o.version.as_deref().unwrap_or("?"),
            group(o.target)
        ),
        kind => match o.target {
            Some(g) => format!("{} of {g}", kind.as_str()),
            None => kind.as_str().to_string(),
        },
    };
    let _ = writeln!(out, "last operation: {what}: {}", result_word(&o.result, p));
    if o.kind == OperationKind::Install {
        let _ = writeln!(out, "  from      {}", printable(&o.source));
    }
    let _ = writeln!(
        out,
        "  at        {}{}",
        printable(&o.started_at),
        o.finished_at
            .as_ref()
            .map_or(String::new(), |f| format!(" - {}", printable(f)))
    );
    if let Some(t) = &o.transfer {
        let _ = writeln!(out, "  transfer  {}", transfer(t));
    }
    if let Some(e) = &o.error {
        let _ = writeln!(out, "  error     {}", p.red(&printable(e)));
    }
    for c in &o.checks {
        let verdict = if c.passed {
            p.green("passed")
        } else {
            p.red("FAILED")
        };
        let detail = if c.passed || c.detail.is_empty() {
            String::new()
        } else {
            format!(": {}", printable(c.detail.trim_end()))
        };
        let _ = writeln!(
            out,
            "  check     {} {verdict} ({} ms){detail}",
            printable(&c.name),
            c.millis
        );
    }
}

fn transfer(t: &Transfer) -> String {
    let mut s = format!(
        "fetched {} in {} range request{}, reused {} already on the device",
        bytes(t.fetched),
        t.requests,
        if t.requests == 1 { "" } else { "s" },
        bytes(t.reused)
    );
    if t.full {
        s += "; an image fetched whole";
    }
    s
}

fn failures(out: &mut String, st: &Status, p: Paint) {
    if st.failures.is_empty() {
        return;
    }
    let _ = writeln!(out, "{}", p.red("failures:"));
    let older = st.failures.len().saturating_sub(FAILURES_SHOWN);
    if older > 0 {
        let _ = writeln!(out, "  ({older} older: tandem status --json)");
    }
    for f in &st.failures[older..] {
        let _ = writeln!(
            out,
            "  {} on {}, {}: {}",
            f.version
                .as_ref()
                .map_or("?".to_string(), |v| v.to_string()),
            f.slot,
            printable(&f.at),
            printable(&f.reason)
        );
    }
}

/// `n` bytes for a person: `512 B`, `4 KiB`, `1.5 MiB`.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    let s = format!("{v:.1}");
    format!("{} {}", s.strip_suffix(".0").unwrap_or(&s), UNITS[unit])
}

#[cfg(test)]
mod tests {
    #[test]
    fn bytes_for_a_person() {
        for (n, want) in [
            (0, "0 B"),
            (1023, "1023 B"),
            (1024, "1 KiB"),
            (1536, "1.5 KiB"),
            (268435456, "256 MiB"),
            (12_900_000, "12.3 MiB"),
            (5 << 40, "5 TiB"),
        ] {
            assert_eq!(super::bytes(n), want, "{n}");
        }
    }

    #[test]
    fn short_hash_keeps_twelve_characters() {
        assert_eq!(super::short_hash(&"ab".repeat(32)), "abababababab...");
        assert_eq!(super::short_hash("abc"), "abc");
    }
}

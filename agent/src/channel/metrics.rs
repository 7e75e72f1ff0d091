//! Metrics in the Prometheus text exposition format, written as a text
//! file for node_exporter's textfile collector (`[channel] metrics_file`,
//! e.g. /var/lib/prometheus/node-exporter/tandem.prom), atomically so the
//! collector never reads half a file.

use std::fmt::Write;

/// What one file says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metrics {
    pub booted_slot: Option<String>,
    pub booted_version: Option<String>,
    /// The update the channel offers this device, if any.
    pub available_version: Option<String>,
    /// `idle`, `waiting`, `staged`, `rebooting`, `error`, ...
    pub state: String,
    pub strategy: String,
    pub last_check: Option<u64>,
    pub last_check_ok: bool,
    pub checks: u64,
    pub check_failures: u64,
    pub installs: u64,
    pub install_failures: u64,
    /// Versions that failed their trial here (the state's failure list).
    pub fallbacks: u64,
    pub bytes_fetched: u64,
}

/// A label value, escaped as the format asks.
fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub fn render(m: &Metrics) -> String {
    let mut o = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, labels: &str, value: u64| {
        let _ = writeln!(
            o,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{labels} {value}"
        );
    };
    let info = format!(
        "{{booted_slot=\"{}\",booted_version=\"{}\",available_version=\"{}\",state=\"{}\",strategy=\"{}\"}}",
        label(m.booted_slot.as_deref().unwrap_or("")),
        label(m.booted_version.as_deref().unwrap_or("")),
        label(m.available_version.as_deref().unwrap_or("")),
        label(&m.state),
        label(&m.strategy),
    );
    metric(
        "tandem_info",
        "gauge",
        "The booted slot group and version, the update found and what the agent does.",
        &info,
        1,
    );
    metric(
        "tandem_update_available",
        "gauge",
        "1 if the channel offers this device a newer bundle.",
        "",
        u64::from(m.available_version.is_some()),
    );
    metric(
        "tandem_last_check_timestamp_seconds",
        "gauge",
        "When the channel was last checked (Unix time; 0: never).",
        "",
        m.last_check.unwrap_or(0),
    );
    metric(
        "tandem_last_check_success",
        "gauge",
        "1 if the last check of the channel succeeded.",
        "",
        u64::from(m.last_check_ok),
    );
    metric(
        "tandem_checks_total",
        "counter",
        "Checks of the channel.",
        "",
        m.checks,
    );
    metric(
        "tandem_check_failures_total",
        "counter",
        "Checks of the channel that failed.",
        "",
        m.check_failures,
    );
    metric(
        "tandem_installs_total",
        "counter",
        "Bundles the channel loop staged.",
        "",
        m.installs,
    );
    metric(
        "tandem_install_failures_total",
        "counter",
        "Installs the channel loop started that failed.",
        "",
        m.install_failures,
    );
    metric(
        "tandem_fallbacks_total",
        "gauge",
        "Versions that failed their trial boot on this device (kept in the state, newest 32).",
        "",
        m.fallbacks,
    );
    metric(
        "tandem_fetched_bytes_total",
        "counter",
        "Bundle bytes the channel loop fetched.",
        "",
        m.bytes_fetched,
    );
    o
}

/// Writes the file atomically.
pub fn write(path: &std::path::Path, m: &Metrics) -> std::io::Result<()> {
    crate::sys::write_atomic(path, render(m).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_format() {
        let m = Metrics {
            booted_slot: Some("a".into()),
            booted_version: Some("1.0.0".into()),
            available_version: Some("1.1.0".into()),
            state: "staged \"now\"".into(),
            strategy: "fleet_lock".into(),
            last_check: Some(1_764_000_000),
            last_check_ok: true,
            checks: 3,
            ..Metrics::default()
        };
        let t = render(&m);
        assert!(t.contains("tandem_info{booted_slot=\"a\",booted_version=\"1.0.0\",available_version=\"1.1.0\",state=\"staged \\\"now\\\"\",strategy=\"fleet_lock\"} 1\n"), "{t}");
        assert!(t.contains("\ntandem_checks_total 3\n"));
        assert!(t.contains("# TYPE tandem_checks_total counter\n"));
        assert!(t.contains("\ntandem_update_available 1\n"));
        // Every sample line: a name, optional labels, one integer.
        for l in t.lines().filter(|l| !l.starts_with('#')) {
            let (_, v) = l.rsplit_once(' ').unwrap();
            v.parse::<u64>().unwrap();
        }
    }
}

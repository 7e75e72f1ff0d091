//! Health checks for a trial boot: configured checks run under an overall
//! deadline while the watchdog is petted; the outcome decides commit or
//! fallback (see `trial`).
//!
//! ```toml
//! [health]
//! deadline_secs = 300          # all checks together
//! reboot_on_failure = true     # reboot into the other group at once
//! watchdog = "/dev/watchdog"   # petted while checks run; closed cleanly after commit
//!
//! [[health.check]]
//! name = "selftest"
//! command = ["/usr/bin/app-selftest", "--quick"]
//! timeout_secs = 60
//! [[health.check]]
//! file = "/run/app/ready"
//! [[health.check]]
//! http = "http://127.0.0.1:8080/healthz"
//! ```

pub mod checks;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    pub deadline_secs: Option<u64>,
    pub reboot_on_failure: Option<bool>,
    pub watchdog: Option<PathBuf>,
    #[serde(default)]
    pub check: Vec<RawCheck>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCheck {
    pub name: Option<String>,
    pub command: Option<Vec<String>>,
    pub file: Option<PathBuf>,
    pub http: Option<String>,
    pub unit: Option<String>,
    pub timeout_secs: Option<u64>,
}

/// One check, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckKind {
    /// Exit status 0 within the timeout.
    Command(Vec<String>),
    /// The path exists.
    File(PathBuf),
    /// `GET` answers 2xx within the timeout.
    Http(String),
    /// The systemd unit is active (queried over D-Bus).
    Unit(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    pub kind: CheckKind,
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthSettings {
    pub deadline: Duration,
    pub reboot_on_failure: bool,
    pub watchdog: Option<PathBuf>,
    pub checks: Vec<Check>,
}

impl Default for HealthSettings {
    fn default() -> Self {
        HealthSettings {
            deadline: Duration::from_secs(300),
            reboot_on_failure: true,
            watchdog: None,
            checks: vec![],
        }
    }
}

/// Validates the `[health]` table; errors name the check by position.
pub fn validate(raw: RawHealth) -> Result<HealthSettings, (String, String)> {
    let mut checks = Vec::new();
    for (i, c) in raw.check.into_iter().enumerate() {
        let key = format!("health.check[{i}]");
        let kinds = [
            c.command.clone().map(CheckKind::Command),
            c.file.clone().map(CheckKind::File),
            c.http.clone().map(CheckKind::Http),
            c.unit.clone().map(CheckKind::Unit),
        ];
        let mut set = kinds.into_iter().flatten();
        let kind = set.next().ok_or_else(|| {
            (
                key.clone(),
                "needs one of command, file, http, unit".to_string(),
            )
        })?;
        if set.next().is_some() {
            return Err((key, "has more than one of command, file, http, unit".into()));
        }
        if let CheckKind::Command(argv) = &kind {
            if argv.is_empty() {
                return Err((key, "command must name a program".into()));
            }
            if !argv[0].starts_with('/') {
                return Err((
                    key,
                    format!(
                        "command {:?} must be an absolute path: checks run with no PATH of their own",
                        argv[0]
                    ),
                ));
            }
        }
        if let CheckKind::Http(url) = &kind {
            if !url.starts_with("http://") && !url.starts_with("https://") {
                return Err((key, format!("http check {url:?} must be an http(s) URL")));
            }
        }
        let name = c.name.unwrap_or_else(|| match &kind {
            CheckKind::Command(a) => a[0].clone(),
            CheckKind::File(p) => p.display().to_string(),
            CheckKind::Http(u) => u.clone(),
            CheckKind::Unit(u) => u.clone(),
        });
        checks.push(Check {
            name,
            kind,
            timeout: Duration::from_secs(c.timeout_secs.unwrap_or(60).max(1)),
        });
    }
    Ok(HealthSettings {
        deadline: Duration::from_secs(raw.deadline_secs.unwrap_or(300).max(1)),
        reboot_on_failure: raw.reboot_on_failure.unwrap_or(true),
        watchdog: raw.watchdog,
        checks,
    })
}

/// The result of one check, kept in the state store for the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckResult {
    pub name: String,
    pub passed: bool,
    /// Why it failed, or what it said (the output's tail).
    pub detail: String,
    pub millis: u64,
}

/// Runs every check in order until one fails or the deadline passes;
/// `tick` is called often (the watchdog is petted there).
pub fn run_all(h: &HealthSettings, tick: &mut dyn FnMut()) -> Vec<CheckResult> {
    let start = Instant::now();
    let mut out = Vec::new();
    for c in &h.checks {
        let left = h.deadline.saturating_sub(start.elapsed());
        if left.is_zero() {
            out.push(CheckResult {
                name: c.name.clone(),
                passed: false,
                detail: format!(
                    "overall deadline of {} s passed before this check ran",
                    h.deadline.as_secs()
                ),
                millis: 0,
            });
            break;
        }
        let t = Instant::now();
        let r = checks::run(c, c.timeout.min(left), tick);
        let failed = r.is_err();
        let detail = match r {
            Ok(d) | Err(d) => d,
        };
        tracing::info!(check = %c.name, passed = !failed, "{detail}");
        out.push(CheckResult {
            name: c.name.clone(),
            passed: !failed,
            detail,
            millis: t.elapsed().as_millis() as u64,
        });
        if failed {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        let raw: RawHealth = toml::from_str(
            "deadline_secs = 10\n[[check]]\ncommand = [\"/bin/true\"]\n[[check]]\nname = \"ready\"\nfile = \"/run/x\"\n",
        )
        .unwrap();
        let h = validate(raw).unwrap();
        assert_eq!(h.checks.len(), 2);
        assert_eq!(h.checks[0].name, "/bin/true");
        assert_eq!(h.checks[1].kind, CheckKind::File("/run/x".into()));
        for bad in [
            "[[check]]\nname = \"x\"\n",
            "[[check]]\nfile = \"/a\"\nhttp = \"http://x\"\n",
            "[[check]]\ncommand = []\n",
            "[[check]]\nhttp = \"ftp://x\"\n",
        ] {
            let raw: RawHealth = toml::from_str(bad).unwrap();
            assert!(validate(raw).is_err(), "{bad}");
        }
    }

    #[test]
    fn stops_at_first_failure_and_honours_deadline() {
        let h = HealthSettings {
            deadline: Duration::from_secs(5),
            checks: vec![
                Check {
                    name: "ok".into(),
                    kind: CheckKind::Command(vec!["/bin/true".into()]),
                    timeout: Duration::from_secs(5),
                },
                Check {
                    name: "bad".into(),
                    kind: CheckKind::Command(vec!["/bin/false".into()]),
                    timeout: Duration::from_secs(5),
                },
                Check {
                    name: "never".into(),
                    kind: CheckKind::Command(vec!["/bin/true".into()]),
                    timeout: Duration::from_secs(5),
                },
            ],
            ..Default::default()
        };
        let r = run_all(&h, &mut || {});
        assert_eq!(
            r.iter()
                .map(|c| (c.name.as_str(), c.passed))
                .collect::<Vec<_>>(),
            [("ok", true), ("bad", false)]
        );
        let h = HealthSettings {
            deadline: Duration::from_millis(300),
            checks: vec![Check {
                name: "slow".into(),
                kind: CheckKind::Command(vec!["/bin/sleep".into(), "5".into()]),
                timeout: Duration::from_secs(10),
            }],
            ..Default::default()
        };
        let t = Instant::now();
        let r = run_all(&h, &mut || {});
        assert!(
            !r[0].passed && t.elapsed() < Duration::from_secs(3),
            "{r:?}"
        );
    }
}

//! `[channel]`: the TUF update channel the daemon polls (docs/channel.md).
//! Validated here, without I/O. `channel.root` is image-only: the root of
//! trust ships in `/usr`, like the keyring.

use std::path::PathBuf;

use serde::Deserialize;

use crate::window::{self, Schedule, Weekday, Window};

/// Where an image keeps the channel's root metadata.
pub const DEFAULT_ROOT: &str = "/usr/lib/tandem/channel/root.json";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawChannel {
    url: Option<String>,
    targets_url: Option<String>,
    role: Option<String>,
    root: Option<PathBuf>,
    interval_secs: Option<u64>,
    jitter_secs: Option<u64>,
    strategy: Option<String>,
    metrics_file: Option<PathBuf>,
    postpone_while_logged_in_secs: Option<u64>,
    periodic: Option<RawPeriodic>,
    fleet_lock: Option<RawFleetLock>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPeriodic {
    time_zone: Option<String>,
    window: Option<Vec<RawWindow>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWindow {
    days: Vec<String>,
    start_time: String,
    length_minutes: u32,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFleetLock {
    base_url: Option<String>,
    group: Option<String>,
    id: Option<String>,
}

/// When the loop may reboot into a staged group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Strategy {
    /// As soon as it is staged.
    Immediate,
    /// Inside a maintenance window.
    Periodic(Schedule),
    /// When the FleetLock server grants a slot of the group.
    FleetLock {
        base_url: String,
        group: String,
        /// `None`: derived from the machine id.
        id: Option<String>,
    },
    /// Only on `tandem apply`.
    Manual,
}

impl Strategy {
    pub fn name(&self) -> &'static str {
        match self {
            Strategy::Immediate => "immediate",
            Strategy::Periodic(_) => "periodic",
            Strategy::FleetLock { .. } => "fleet_lock",
            Strategy::Manual => "manual",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelSettings {
    /// The repository's metadata base URL.
    pub url: String,
    /// Where target files are (default: `url` + `/targets`).
    pub targets_url: String,
    /// The (delegated) role that lists this channel's bundles.
    pub role: String,
    pub root: PathBuf,
    pub interval_secs: u64,
    pub jitter_secs: u64,
    pub strategy: Strategy,
    pub metrics_file: Option<PathBuf>,
    /// Postpone a reboot while users are logged in, at most this long
    /// (0: never postpone).
    pub postpone_while_logged_in_secs: u64,
}

fn http_url(key: &str, s: &str) -> Result<String, (String, String)> {
    let bad = |m: &str| (format!("channel.{key}"), m.to_string());
    let u = url::Url::parse(s).map_err(|e| bad(&e.to_string()))?;
    if !matches!(u.scheme(), "http" | "https") || u.host().is_none() {
        return Err(bad("must be an http:// or https:// URL"));
    }
    if u.query().is_some() || u.username() != "" || u.password().is_some() {
        return Err(bad("must not carry credentials or a query"));
    }
    Ok(s.trim_end_matches('/').to_string())
}

pub(super) fn validate(raw: RawChannel) -> Result<ChannelSettings, (String, String)> {
    let bad = |k: &str, m: &str| (format!("channel.{k}"), m.to_string());
    let url = http_url(
        "url",
        raw.url
            .as_deref()
            .ok_or_else(|| bad("url", "must be set (the repository's metadata URL)"))?,
    )?;
    let targets_url = match &raw.targets_url {
        Some(t) => http_url("targets_url", t)?,
        None => format!("{url}/targets"),
    };
    let role = raw.role.unwrap_or_else(|| "targets".into());
    if role.is_empty()
        || role.len() > 64
        || !role
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        || role.starts_with('.')
    {
        return Err(bad(
            "role",
            "must be 1-64 of A-Z a-z 0-9 - _ . (a TUF role name)",
        ));
    }
    let interval_secs = raw.interval_secs.unwrap_or(3600);
    if interval_secs < 10 {
        return Err(bad("interval_secs", "must be at least 10"));
    }
    let jitter_secs = raw.jitter_secs.unwrap_or(interval_secs / 10);
    if jitter_secs > interval_secs {
        return Err(bad("jitter_secs", "must not exceed interval_secs"));
    }
    let strategy = strategy(raw.strategy.as_deref(), raw.periodic, raw.fleet_lock)?;
    Ok(ChannelSettings {
        url,
        targets_url,
        role,
        root: raw.root.unwrap_or_else(|| DEFAULT_ROOT.into()),
        interval_secs,
        jitter_secs,
        strategy,
        metrics_file: raw.metrics_file,
        postpone_while_logged_in_secs: raw.postpone_while_logged_in_secs.unwrap_or(0),
    })
}

fn strategy(
    name: Option<&str>,
    periodic: Option<RawPeriodic>,
    lock: Option<RawFleetLock>,
) -> Result<Strategy, (String, String)> {
    let bad = |k: &str, m: String| (format!("channel.{k}"), m);
    let name = name.unwrap_or("immediate");
    if name != "periodic" && periodic.is_some() {
        return Err(bad(
            "periodic",
            format!("is set but the strategy is {name:?}"),
        ));
    }
    if name != "fleet_lock" && lock.is_some() {
        return Err(bad(
            "fleet_lock",
            format!("is set but the strategy is {name:?}"),
        ));
    }
    match name {
        "immediate" => Ok(Strategy::Immediate),
        "manual" => Ok(Strategy::Manual),
        "periodic" => {
            let p = periodic.ok_or_else(|| {
                bad(
                    "periodic",
                    "must give [[channel.periodic.window]]s for the periodic strategy".into(),
                )
            })?;
            let zone = p.time_zone.unwrap_or_else(|| "UTC".into());
            let offset = window::parse_zone(&zone).ok_or_else(|| {
                bad(
                    "periodic.time_zone",
                    format!("{zone:?}: give UTC or a fixed offset such as +01:00"),
                )
            })?;
            let mut windows = Vec::new();
            for (i, w) in p.window.unwrap_or_default().into_iter().enumerate() {
                let k = format!("periodic.window[{i}]");
                let days = w
                    .days
                    .iter()
                    .map(|d| {
                        Weekday::parse(d)
                            .ok_or_else(|| bad(&k, format!("day {d:?}: give Mon..Sun")))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                if days.is_empty() {
                    return Err(bad(&k, "days is empty".into()));
                }
                let start = window::parse_time(&w.start_time)
                    .ok_or_else(|| bad(&k, format!("start_time {:?}: give HH:MM", w.start_time)))?;
                if w.length_minutes == 0 || w.length_minutes > 7 * 24 * 60 {
                    return Err(bad(&k, "length_minutes must be 1 to 10080".into()));
                }
                windows.push(Window {
                    days,
                    start,
                    length: w.length_minutes * 60,
                });
            }
            if windows.is_empty() {
                return Err(bad("periodic.window", "give at least one window".into()));
            }
            Ok(Strategy::Periodic(Schedule { offset, windows }))
        }
        "fleet_lock" => {
            let l = lock.ok_or_else(|| {
                bad(
                    "fleet_lock",
                    "must give [channel.fleet_lock] base_url for the fleet_lock strategy".into(),
                )
            })?;
            let base_url = http_url(
                "fleet_lock.base_url",
                l.base_url
                    .as_deref()
                    .ok_or_else(|| bad("fleet_lock.base_url", "must be set".into()))?,
            )?;
            let group = l.group.unwrap_or_else(|| "default".into());
            let ok = |s: &str| {
                !s.is_empty()
                    && s.len() <= 128
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            };
            if !ok(&group) {
                return Err(bad(
                    "fleet_lock.group",
                    "must be 1-128 of A-Z a-z 0-9 - _ .".into(),
                ));
            }
            if l.id.as_deref().is_some_and(|i| !ok(i)) {
                return Err(bad(
                    "fleet_lock.id",
                    "must be 1-128 of A-Z a-z 0-9 - _ .".into(),
                ));
            }
            Ok(Strategy::FleetLock {
                base_url,
                group,
                id: l.id,
            })
        }
        other => Err(bad(
            "strategy",
            format!("{other:?}: give immediate, periodic, fleet_lock or manual"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> Result<ChannelSettings, (String, String)> {
        validate(toml::from_str::<RawChannel>(t).unwrap())
    }

    #[test]
    fn defaults() {
        let s = parse("url = \"https://u.example/tuf/\"").unwrap();
        assert_eq!(s.url, "https://u.example/tuf");
        assert_eq!(s.targets_url, "https://u.example/tuf/targets");
        assert_eq!(
            (s.role.as_str(), s.interval_secs, s.jitter_secs),
            ("targets", 3600, 360)
        );
        assert_eq!(s.strategy, Strategy::Immediate);
        assert_eq!(s.root, PathBuf::from(DEFAULT_ROOT));
    }

    #[test]
    fn strategies() {
        let s = parse(
            "url = \"http://h\"\nstrategy = \"periodic\"\n[periodic]\ntime_zone = \"+01:00\"\n[[periodic.window]]\ndays = [\"Sat\", \"Sun\"]\nstart_time = \"23:30\"\nlength_minutes = 60\n",
        )
        .unwrap();
        let Strategy::Periodic(p) = s.strategy else {
            panic!()
        };
        assert_eq!(
            (p.offset, p.windows[0].start, p.windows[0].length),
            (3600, 84_600, 3600)
        );
        let s = parse("url = \"http://h\"\nstrategy = \"fleet_lock\"\n[fleet_lock]\nbase_url = \"http://127.0.0.1:8000\"\n").unwrap();
        assert_eq!(s.strategy.name(), "fleet_lock");
        assert_eq!(
            parse("url = \"http://h\"\nstrategy = \"manual\"")
                .unwrap()
                .strategy,
            Strategy::Manual
        );
    }

    #[test]
    fn refusals_name_the_key() {
        for (t, key) in [
            ("role = \"x\"", "channel.url"),
            ("url = \"ftp://h\"", "channel.url"),
            ("url = \"http://h\"\nrole = \"../x\"", "channel.role"),
            ("url = \"http://h\"\ninterval_secs = 1", "channel.interval_secs"),
            ("url = \"http://h\"\ninterval_secs = 60\njitter_secs = 61", "channel.jitter_secs"),
            ("url = \"http://h\"\nstrategy = \"yolo\"", "channel.strategy"),
            ("url = \"http://h\"\nstrategy = \"periodic\"", "channel.periodic"),
            ("url = \"http://h\"\n[periodic]\ntime_zone = \"UTC\"", "channel.periodic"),
            ("url = \"http://h\"\nstrategy = \"periodic\"\n[periodic]\ntime_zone = \"Europe/Berlin\"", "channel.periodic.time_zone"),
            ("url = \"http://h\"\nstrategy = \"periodic\"\n[[periodic.window]]\ndays = [\"Caturday\"]\nstart_time = \"01:00\"\nlength_minutes = 5", "channel.periodic.window[0]"),
            ("url = \"http://h\"\nstrategy = \"fleet_lock\"", "channel.fleet_lock"),
            ("url = \"http://h\"\nstrategy = \"fleet_lock\"\n[fleet_lock]\nbase_url = \"http://l\"\ngroup = \"a b\"", "channel.fleet_lock.group"),
        ] {
            assert_eq!(parse(t).unwrap_err().0, key, "{t}");
        }
    }
}

//! Maintenance windows for the `periodic` strategy, in zincati's shape:
//! days of the week, a start time and a length, in one time zone (`UTC` or
//! a fixed offset such as `+01:00`; no daylight-saving rules — a device
//! that must follow them gets one offset per season from its image or
//! from /etc). A window may cross midnight and the end of the week.

use std::fmt;

/// A day of the week, Monday first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Weekday(pub u8);

const NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

impl Weekday {
    pub fn parse(s: &str) -> Option<Weekday> {
        let long = [
            "monday",
            "tuesday",
            "wednesday",
            "thursday",
            "friday",
            "saturday",
            "sunday",
        ];
        let l = s.to_ascii_lowercase();
        (0..7u8)
            .find(|&i| l == NAMES[i as usize].to_ascii_lowercase() || l == long[i as usize])
            .map(Weekday)
    }
}

impl fmt::Display for Weekday {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(NAMES[self.0 as usize % 7])
    }
}

/// One window: on each of `days`, from `start` (seconds after local
/// midnight) for `length` seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub days: Vec<Weekday>,
    pub start: u32,
    pub length: u32,
}

/// The windows and their time zone, as seconds east of UTC.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Schedule {
    pub offset: i32,
    pub windows: Vec<Window>,
}

/// Whether a reboot may happen at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Inside a window, which closes at the given time.
    Open { until: u64 },
    /// The next window opens at the given time.
    Closed { opens: u64 },
    /// No windows at all: never.
    Never,
}

/// `HH:MM` as seconds after midnight.
pub fn parse_time(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60 && s.len() == 5).then_some(h * 3600 + m * 60)
}

/// `UTC`, `Z`, or `+HH:MM` / `-HH:MM` as seconds east of UTC.
pub fn parse_zone(s: &str) -> Option<i32> {
    if s.eq_ignore_ascii_case("utc") || s == "Z" {
        return Some(0);
    }
    let sign = match s.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let t = parse_time(&s[1..])?;
    (t <= 14 * 3600).then_some(sign * t as i32)
}

impl Schedule {
    pub fn gate(&self, now: u64) -> Gate {
        let now = now as i64;
        let off = i64::from(self.offset);
        let today = (now + off).div_euclid(86_400);
        let mut next: Option<i64> = None;
        // Yesterday's windows may still be open; a week ahead finds the next.
        for day in today - 1..=today + 7 {
            // 1970-01-01 was a Thursday (3, Monday first).
            let wd = Weekday((day + 3).rem_euclid(7) as u8);
            for w in self.windows.iter().filter(|w| w.days.contains(&wd)) {
                let start = day * 86_400 + i64::from(w.start) - off;
                let end = start + i64::from(w.length);
                if start <= now && now < end {
                    return Gate::Open { until: end as u64 };
                }
                if start > now && next.is_none_or(|n| start < n) {
                    next = Some(start);
                }
            }
        }
        match next {
            Some(t) => Gate::Closed { opens: t as u64 },
            None => Gate::Never,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timefmt::{parse_rfc3339, rfc3339};

    fn sched(offset: &str, days: &[&str], start: &str, minutes: u32) -> Schedule {
        Schedule {
            offset: parse_zone(offset).unwrap(),
            windows: vec![Window {
                days: days.iter().map(|d| Weekday::parse(d).unwrap()).collect(),
                start: parse_time(start).unwrap(),
                length: minutes * 60,
            }],
        }
    }

    fn at(s: &str) -> u64 {
        parse_rfc3339(s).unwrap()
    }

    #[test]
    fn table() {
        // 2026-12-05 is a Saturday.
        let sat_night = sched("UTC", &["Sat"], "23:30", 60);
        let cases = [
            (
                &sat_night,
                "2026-12-05T23:29:59Z",
                "closed 2026-12-05T23:30:00Z",
            ),
            (
                &sat_night,
                "2026-12-05T23:30:00Z",
                "open 2026-12-06T00:30:00Z",
            ),
            (
                &sat_night,
                "2026-12-06T00:15:00Z",
                "open 2026-12-06T00:30:00Z",
            ),
            (
                &sat_night,
                "2026-12-06T00:30:00Z",
                "closed 2026-12-12T23:30:00Z",
            ),
            (
                &sat_night,
                "2026-12-01T12:00:00Z",
                "closed 2026-12-05T23:30:00Z",
            ),
        ];
        for (s, now, want) in cases {
            let got = match s.gate(at(now)) {
                Gate::Open { until } => format!("open {}", rfc3339(until)),
                Gate::Closed { opens } => format!("closed {}", rfc3339(opens)),
                Gate::Never => "never".into(),
            };
            assert_eq!(got, want, "{now}");
        }
    }

    #[test]
    fn offsets_shift_the_window() {
        // 02:00 at +02:00 on Wednesday is 00:00 UTC on Wednesday.
        let s = sched("+02:00", &["wednesday"], "02:00", 30);
        assert_eq!(
            s.gate(at("2026-12-02T00:10:00Z")),
            Gate::Open {
                until: at("2026-12-02T00:30:00Z")
            }
        );
        // 23:00 at -05:00 on Sunday is 04:00 UTC on Monday.
        let s = sched("-05:00", &["Sun"], "23:00", 60);
        assert_eq!(
            s.gate(at("2026-12-07T04:30:00Z")),
            Gate::Open {
                until: at("2026-12-07T05:00:00Z")
            }
        );
        assert_eq!(Schedule::default().gate(0), Gate::Never);
    }

    #[test]
    fn parsing() {
        assert_eq!(parse_time("23:59"), Some(86_340));
        for bad in ["24:00", "7:00", "07:60", "0700"] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
        assert_eq!(parse_zone("-05:30"), Some(-19_800));
        assert_eq!(parse_zone("Europe/Berlin"), None);
        assert_eq!(Weekday::parse("SAT"), Some(Weekday(5)));
        assert_eq!(Weekday::parse("Sa"), None);
    }
}

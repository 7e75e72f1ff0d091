#![allow(clippy::type_complexity)] // the tables read best as tuples

use super::*;
use crate::channel::{BundleMeta, Wave};
use crate::state::Failure;
use crate::timefmt::parse_rfc3339;

const NOW: &str = "2026-12-02T12:00:00Z";

fn v(s: &str) -> Version {
    s.parse().unwrap()
}

fn offer(version: &str) -> Offer {
    Offer {
        path: format!("tandem-{version}.tnd"),
        length: 100,
        sha256: None,
        meta: BundleMeta {
            version: v(version),
            compatible: "qemu-x86".into(),
            security_epoch: 0,
            waves: vec![],
            paused: false,
            location: None,
        },
    }
}

fn waves(mut o: Offer, plan: &[(&str, u8)]) -> Offer {
    o.meta.waves = plan
        .iter()
        .map(|(s, p)| Wave {
            start: (*s).into(),
            percent: *p,
        })
        .collect();
    o
}

/// Booted from a (committed, 1.0.0); b as given.
fn state(b: SlotState, b_version: Option<&str>, failed: &[&str]) -> State {
    let mut s = State::default();
    let a = s.slots.get_mut(&SlotGroup::A).unwrap();
    a.state = SlotState::Good;
    a.version = Some(v("1.0.0"));
    let rb = s.slots.get_mut(&SlotGroup::B).unwrap();
    rb.state = b;
    rb.version = b_version.map(v);
    for f in failed {
        s.record_failure(Failure {
            version: Some(v(f)),
            slot: SlotGroup::B,
            at: "2026-12-01T00:00:00Z".into(),
            reason: "health check \"app\" failed".into(),
            checks: vec![],
        });
    }
    s
}

fn device<'a>(
    s: &'a State,
    running: &'a Version,
    seed: u32,
    staged: Option<&'a Version>,
) -> Device<'a> {
    Device {
        compatible: "qemu-x86",
        booted: Some(SlotGroup::A),
        state: s,
        running: Some(running),
        seed,
        staged,
    }
}

fn now() -> u64 {
    parse_rfc3339(NOW).unwrap()
}

fn chosen(c: &Choice) -> String {
    match c {
        Choice::Take(o) => format!("take {}", o.meta.version),
        Choice::Wait { offer, opens_at } => format!(
            "wait {} {}",
            offer.meta.version,
            opens_at
                .map(crate::timefmt::rfc3339)
                .unwrap_or("never".into())
        ),
        Choice::Paused(o) => format!("paused {}", o.meta.version),
        Choice::UpToDate => "up to date".into(),
    }
}

#[test]
fn choose_table() {
    let mut other = offer("9.0.0");
    other.meta.compatible = "rpi4".into();
    let mut low_epoch = offer("1.5.0");
    low_epoch.meta.security_epoch = 1;
    let mut paused = offer("1.4.0");
    paused.meta.paused = true;
    let later = waves(
        offer("1.6.0"),
        &[("2026-12-02T11:00:00Z", 10), ("2026-12-03T00:00:00Z", 100)],
    );
    let cases: Vec<(&str, Vec<Offer>, &[&str], u64, u32, &str)> = vec![
        ("nothing offered", vec![], &[], 0, 0, "up to date"),
        (
            "older and same",
            vec![offer("0.9.0"), offer("1.0.0")],
            &[],
            0,
            0,
            "up to date",
        ),
        (
            "newest wins",
            vec![offer("1.1.0"), offer("1.3.0"), offer("1.2.0")],
            &[],
            0,
            0,
            "take 1.3.0",
        ),
        (
            "other device's",
            vec![other.clone()],
            &[],
            0,
            0,
            "up to date",
        ),
        (
            "failed here: next one",
            vec![offer("1.2.0"), offer("1.3.0")],
            &["1.3.0"],
            0,
            0,
            "take 1.2.0",
        ),
        (
            "failed and nothing else",
            vec![offer("1.2.0")],
            &["1.2.0"],
            0,
            0,
            "up to date",
        ),
        (
            "epoch below floor",
            vec![low_epoch.clone()],
            &[],
            2,
            0,
            "up to date",
        ),
        (
            "epoch at floor",
            vec![low_epoch.clone()],
            &[],
            1,
            0,
            "take 1.5.0",
        ),
        (
            "paused newest, older open",
            vec![paused.clone(), offer("1.1.0")],
            &[],
            0,
            0,
            "take 1.1.0",
        ),
        (
            "paused alone",
            vec![paused.clone()],
            &[],
            0,
            0,
            "paused 1.4.0",
        ),
        (
            "first wave covers seed",
            vec![later.clone()],
            &[],
            0,
            999,
            "take 1.6.0",
        ),
        (
            "second wave later",
            vec![later.clone()],
            &[],
            0,
            1000,
            "wait 1.6.0 2026-12-03T00:00:00Z",
        ),
        (
            "later wave, older open",
            vec![later.clone(), offer("1.1.0")],
            &[],
            0,
            5000,
            "take 1.1.0",
        ),
        (
            "plan short of 100 %",
            vec![waves(offer("1.6.0"), &[("2026-12-01T00:00:00Z", 10)])],
            &[],
            0,
            5000,
            "wait 1.6.0 never",
        ),
    ];
    let running = v("1.0.0");
    for (name, offers, failed, floor, seed, want) in cases {
        let mut s = state(SlotState::Good, Some("1.0.0"), failed);
        s.security_epoch_floor = floor;
        let (c, _) = choose(&offers, &device(&s, &running, seed, None), now());
        assert_eq!(chosen(&c), want, "{name}");
    }
}

#[test]
fn skips_say_why() {
    let s = state(SlotState::Bad, Some("1.3.0"), &["1.3.0"]);
    let running = v("1.0.0");
    let mut other = offer("2.0.0");
    other.meta.compatible = "rpi4".into();
    let (_, skips) = choose(
        &[offer("1.3.0"), other, offer("0.1.0")],
        &device(&s, &running, 0, None),
        now(),
    );
    let text: Vec<_> = skips.iter().map(|s| s.why.as_str()).collect();
    assert_eq!(text.len(), 2, "older versions are not listed: {text:?}");
    assert!(
        text[0].contains("passed over 1.3.0: it failed on this device"),
        "{text:?}"
    );
    assert!(text[1].contains("\"rpi4\""), "{text:?}");
    let failed: Vec<_> = skips.iter().map(|s| s.failed_here).collect();
    assert_eq!(failed, [true, false]);
}

fn kind(s: &Step) -> String {
    match s {
        Step::Idle(w) => format!("idle: {w}"),
        Step::Wait { why, .. } => format!("wait: {why}"),
        Step::ReleaseLock => "release".into(),
        Step::Install(o) => format!("install {}", o.meta.version),
        Step::Apply { group, lock } => {
            format!("apply {group}{}", if *lock { " after lock" } else { "" })
        }
    }
}

#[test]
fn step_table() {
    let closed = Gate::Closed {
        why: "the next maintenance window opens at X".into(),
        until: Some(1),
    };
    let take12 = Choice::Take(offer("1.2.0"));
    let take11 = Choice::Take(offer("1.1.0"));
    let running = v("1.0.0");
    let v11 = v("1.1.0");
    // (name, group b, staged by the loop, choice, gate, lock held, want)
    let cases: Vec<(&str, (SlotState, Option<&str>), Option<&Version>, Choice, Gate, bool, &str)> = vec![
        ("nothing", (SlotState::Good, Some("0.9.0")), None, Choice::UpToDate, Gate::Open, false, "idle: up to date"),
        ("take it", (SlotState::Good, Some("0.9.0")), None, take11.clone(), Gate::Open, false, "install 1.1.0"),
        ("install while the window is shut", (SlotState::Bad, None), None, take11.clone(), closed.clone(), false, "install 1.1.0"),
        ("staged, open", (SlotState::Installed, Some("1.1.0")), Some(&v11), take11.clone(), Gate::Open, false, "apply b"),
        ("staged, lock", (SlotState::Installed, Some("1.1.0")), Some(&v11), take11.clone(), Gate::NeedsLock, false, "apply b after lock"),
        (
            "staged, window shut",
            (SlotState::Installed, Some("1.1.0")),
            Some(&v11),
            take11.clone(),
            closed.clone(),
            false,
            "wait: 1.1.0 is staged in slot group b; the next maintenance window opens at X",
        ),
        ("staged, channel has newer", (SlotState::Installed, Some("1.1.0")), Some(&v11), take12.clone(), Gate::Open, false, "install 1.2.0"),
        ("staged, channel withdrew it", (SlotState::Installed, Some("1.1.0")), Some(&v11), Choice::UpToDate, Gate::Open, false, "apply b"),
        (
            "installed by hand",
            (SlotState::Installed, Some("1.1.0")),
            None,
            take11.clone(),
            Gate::Open,
            false,
            "wait: slot group b holds 1.1.0, installed by hand; reboot or `tandem arm` is up to whoever installed it",
        ),
        ("lock held after commit", (SlotState::Good, Some("0.9.0")), None, take12.clone(), Gate::Open, true, "release"),
        ("fell back: failed version", (SlotState::Bad, Some("1.1.0")), Some(&v11), Choice::UpToDate, Gate::Open, false, "idle: up to date"),
        (
            "paused",
            (SlotState::Good, None),
            None,
            Choice::Paused(offer("1.2.0")),
            Gate::Open,
            false,
            "idle: the rollout of 1.2.0 is paused",
        ),
        (
            "wave",
            (SlotState::Good, None),
            None,
            Choice::Wait {
                offer: offer("1.2.0"),
                opens_at: Some(now()),
            },
            Gate::Open,
            false,
            "wait: 1.2.0 waits for this device's wave, which opens at 2026-12-02T12:00:00Z",
        ),
    ];
    for (name, (b, bv), staged, choice, gate, lock, want) in cases {
        let s = state(b, bv, &[]);
        let d = device(&s, &running, 0, staged);
        assert_eq!(kind(&step(&d, &choice, &gate, lock)), want, "{name}");
    }
}

#[test]
fn trial_pending_waits_for_the_boot_check() {
    // Booted from b on its trial: nothing happens, lock or not.
    let mut s = state(SlotState::Installed, Some("1.1.0"), &[]);
    let running = v("1.1.0");
    let mut d = device(&s, &running, 0, None);
    d.booted = Some(SlotGroup::B);
    let got = kind(&step(&d, &Choice::Take(offer("1.2.0")), &Gate::Open, true));
    assert_eq!(
        got,
        "wait: the boot check has not committed slot group b yet"
    );
    s.slots.get_mut(&SlotGroup::B).unwrap().state = SlotState::Good;
    let mut d = device(&s, &running, 0, None);
    d.booted = Some(SlotGroup::B);
    assert_eq!(
        kind(&step(&d, &Choice::UpToDate, &Gate::Open, true)),
        "release"
    );
    d.booted = None;
    assert!(kind(&step(&d, &Choice::UpToDate, &Gate::Open, false))
        .starts_with("idle: the booted slot group is unknown"));
}

use super::*;
use crate::fleet::ddi::{Artifact, CancelInner, Chunk, Deployment, Link};
use crate::state::Failure;

const ARMED_AT: &str = "2026-12-02T07:00:00Z";

fn deployment(
    id: &str,
    update: Handling,
    window: Option<Window>,
    artifacts: usize,
) -> DeploymentBase {
    let artifact = |i: usize| Artifact {
        filename: format!("u{i}.tnd"),
        size: Some(10),
        hashes: [("sha1".to_string(), "00".to_string())].into(),
        links: [(
            "download".to_string(),
            Link {
                href: format!("http://h/u{i}"),
            },
        )]
        .into(),
    };
    DeploymentBase {
        id: id.into(),
        deployment: Deployment {
            download: Handling::Forced,
            update,
            maintenance_window: window,
            chunks: vec![Chunk {
                part: Some("os".into()),
                version: Some("1.1.0".into()),
                name: None,
                artifacts: (0..artifacts).map(artifact).collect(),
            }],
        },
    }
}

fn record(id: &str, phase: Phase) -> ActionRecord {
    ActionRecord::new("c", id, Some("1.1.0".into()), phase)
}

fn armed(id: &str) -> ActionRecord {
    record(
        id,
        Phase::Armed {
            target: SlotGroup::B,
            armed_at: ARMED_AT.into(),
        },
    )
}

fn done(id: &str) -> ActionRecord {
    record(
        id,
        Phase::Done {
            success: true,
            detail: "committed".into(),
            sent: true,
        },
    )
}

/// A device booted from `booted` whose group b is in `b`.
fn state(b: SlotState, failed_at: Option<&str>) -> State {
    let mut s = State::default();
    let rec = s.slots.get_mut(&SlotGroup::B).unwrap();
    rec.state = b;
    rec.version = Some("1.1.0".parse().unwrap());
    if let Some(at) = failed_at {
        s.record_failure(Failure {
            version: Some("1.1.0".parse().unwrap()),
            slot: SlotGroup::B,
            at: at.into(),
            reason: "health check \"app\" failed: db unreachable".into(),
            checks: vec![],
        });
    }
    s
}

fn cancel_of(stop: &str) -> CancelAction {
    CancelAction {
        id: "9".into(),
        cancel: CancelInner {
            stop_id: stop.into(),
        },
    }
}

/// The kind of decision, for the tables.
fn kind(d: &Decision) -> &'static str {
    match d {
        Decision::Idle => "idle",
        Decision::Install { .. } => "install",
        Decision::Schedule { .. } => "schedule",
        Decision::Wait => "wait",
        Decision::Report { result, .. } if result.success => "report-success",
        Decision::Report { .. } => "report-failure",
        Decision::Refuse { .. } => "refuse",
        Decision::AcceptCancel { .. } => "accept-cancel",
        Decision::RejectCancel { .. } => "reject-cancel",
        Decision::Forget => "forget",
    }
}

#[test]
fn decision_table() {
    let forced = deployment("7", Handling::Forced, None, 1);
    let skip = deployment("7", Handling::Skip, None, 1);
    let closed_window = deployment("7", Handling::Attempt, Some(Window::Unavailable), 1);
    let open_window = deployment("7", Handling::Attempt, Some(Window::Available), 1);
    let two = deployment("7", Handling::Forced, None, 2);
    let none = deployment("7", Handling::Forced, None, 0);
    let other = deployment("8", Handling::Forced, None, 1);
    let c7 = cancel_of("7");
    let fresh = state(SlotState::Unknown, None);
    let trial = state(SlotState::Installed, None);
    let good = state(SlotState::Good, None);
    let fell = state(SlotState::Bad, Some("2026-12-02T07:05:00Z"));
    let old_failure = state(SlotState::Installed, Some("2026-11-30T00:00:00Z"));
    let on = |s, g| Device {
        state: s,
        booted: Some(g),
    };
    use SlotGroup::{A, B};
    let rows: Vec<(&str, Option<ActionRecord>, Offer, Device, &str)> = vec![
        (
            "nothing offered",
            None,
            Offer::default(),
            on(&fresh, A),
            "idle",
        ),
        (
            "a deployment",
            None,
            Offer {
                deployment: Some(&forced),
                cancel: None,
            },
            on(&fresh, A),
            "install",
        ),
        (
            "an open window",
            None,
            Offer {
                deployment: Some(&open_window),
                cancel: None,
            },
            on(&fresh, A),
            "install",
        ),
        (
            "update skip",
            None,
            Offer {
                deployment: Some(&skip),
                cancel: None,
            },
            on(&fresh, A),
            "schedule",
        ),
        (
            "window closed",
            None,
            Offer {
                deployment: Some(&closed_window),
                cancel: None,
            },
            on(&fresh, A),
            "schedule",
        ),
        (
            "window closed, told",
            Some(record("7", Phase::Scheduled)),
            Offer {
                deployment: Some(&closed_window),
                cancel: None,
            },
            on(&fresh, A),
            "wait",
        ),
        (
            "window opened",
            Some(record("7", Phase::Scheduled)),
            Offer {
                deployment: Some(&forced),
                cancel: None,
            },
            on(&fresh, A),
            "install",
        ),
        (
            "two artifacts",
            None,
            Offer {
                deployment: Some(&two),
                cancel: None,
            },
            on(&fresh, A),
            "refuse",
        ),
        (
            "no artifact",
            None,
            Offer {
                deployment: Some(&none),
                cancel: None,
            },
            on(&fresh, A),
            "refuse",
        ),
        (
            "interrupted install, still offered",
            Some(record(
                "7",
                Phase::Installing {
                    started_at: ARMED_AT.into(),
                },
            )),
            Offer {
                deployment: Some(&forced),
                cancel: None,
            },
            on(&fresh, A),
            "install",
        ),
        (
            "interrupted install, withdrawn",
            Some(record(
                "7",
                Phase::Installing {
                    started_at: ARMED_AT.into(),
                },
            )),
            Offer::default(),
            on(&fresh, A),
            "forget",
        ),
        (
            "armed, not rebooted: no re-download",
            Some(armed("7")),
            Offer {
                deployment: Some(&forced),
                cancel: None,
            },
            on(&trial, A),
            "wait",
        ),
        (
            "armed, an old failure of b",
            Some(armed("7")),
            Offer {
                deployment: Some(&forced),
                cancel: None,
            },
            on(&old_failure, A),
            "wait",
        ),
        (
            "armed, booted b, not yet checked",
            Some(armed("7")),
            Offer {
                deployment: Some(&forced),
                cancel: None,
            },
            on(&trial, B),
            "wait",
        ),
        (
            "committed after reboot",
            Some(armed("7")),
            Offer {
                deployment: Some(&forced),
                cancel: None,
            },
            on(&good, B),
            "report-success",
        ),
        (
            "committed, server no longer offers",
            Some(armed("7")),
            Offer::default(),
            on(&good, B),
            "report-success",
        ),
        (
            "fell back after reboot",
            Some(armed("7")),
            Offer {
                deployment: Some(&forced),
                cancel: None,
            },
            on(&fell, A),
            "report-failure",
        ),
        (
            "slot overwritten",
            Some(armed("7")),
            Offer::default(),
            on(&fresh, A),
            "report-failure",
        ),
        (
            "done, still offered: resend",
            Some(done("7")),
            Offer {
                deployment: Some(&forced),
                cancel: None,
            },
            on(&good, B),
            "report-success",
        ),
        (
            "done, a new action",
            Some(done("7")),
            Offer {
                deployment: Some(&other),
                cancel: None,
            },
            on(&good, B),
            "install",
        ),
        (
            "done, not sent yet",
            Some(record(
                "7",
                Phase::Done {
                    success: false,
                    detail: "x".into(),
                    sent: false,
                },
            )),
            Offer::default(),
            on(&fell, A),
            "report-failure",
        ),
        (
            "done, nothing offered",
            Some(done("7")),
            Offer::default(),
            on(&good, B),
            "idle",
        ),
        (
            "cancel, nothing started",
            None,
            Offer {
                deployment: None,
                cancel: Some(&c7),
            },
            on(&fresh, A),
            "accept-cancel",
        ),
        (
            "cancel while scheduled",
            Some(record("7", Phase::Scheduled)),
            Offer {
                deployment: None,
                cancel: Some(&c7),
            },
            on(&fresh, A),
            "accept-cancel",
        ),
        (
            "cancel of an armed action",
            Some(armed("7")),
            Offer {
                deployment: None,
                cancel: Some(&c7),
            },
            on(&trial, A),
            "reject-cancel",
        ),
        (
            "cancel of a finished action",
            Some(done("7")),
            Offer {
                deployment: None,
                cancel: Some(&c7),
            },
            on(&good, B),
            "reject-cancel",
        ),
        (
            "cancel of another action",
            Some(armed("8")),
            Offer {
                deployment: None,
                cancel: Some(&c7),
            },
            on(&trial, A),
            "accept-cancel",
        ),
    ];
    for (what, rec, offer, device, want) in rows {
        let d = next(rec.as_ref(), offer, device);
        assert_eq!(kind(&d), want, "{what}: {d:?}");
    }
}

#[test]
fn install_and_reports_carry_what_the_server_needs() {
    let d = deployment("7", Handling::Forced, None, 1);
    let dev = Device {
        state: &State::default(),
        booted: Some(SlotGroup::A),
    };
    let offer = Offer {
        deployment: Some(&d),
        cancel: None,
    };
    assert_eq!(
        next(None, offer, dev),
        Decision::Install {
            action_id: "7".into(),
            url: "http://h/u0".into(),
            version: Some("1.1.0".into()),
            filename: "u0.tnd".into(),
        }
    );
    let fell = state(SlotState::Bad, Some("2026-12-02T07:05:00Z"));
    let Decision::Report { action_id, result } = next(
        Some(&armed("7")),
        Offer::default(),
        Device {
            state: &fell,
            booted: Some(SlotGroup::A),
        },
    ) else {
        panic!("a report");
    };
    assert_eq!(action_id, "7");
    assert!(!result.success);
    assert!(
        result.detail.contains("db unreachable"),
        "{}",
        result.detail
    );
}

#[test]
fn never_a_tight_loop() {
    let s = Duration::from_secs;
    assert_eq!(poll_interval(None), s(300));
    assert_eq!(poll_interval(Some(s(0))), s(1));
    assert_eq!(poll_interval(Some(s(1 << 30))), s(86_400));
    assert_eq!(retry_delay(1, s(1)), s(10));
    assert_eq!(retry_delay(2, s(1)), s(20));
    assert_eq!(retry_delay(50, s(1)), s(600));
    assert_eq!(retry_delay(1, s(3600)), s(3600), "not sooner than a poll");
    let mut last = Duration::ZERO;
    for n in 1..100 {
        let d = retry_delay(n, s(1));
        assert!(d >= last && d >= s(10) && d <= s(600));
        last = d;
    }
}

//! The `status --json` shape (status_version 1) against a golden file.
//! and the text view of the same states (agent/tests/status_view.rs has
//! more). Regenerate with UPDATE_GOLDEN=1 after a deliberate, documented change.

use tandem::cli::status_view;
use tandem::config;
use tandem::fsm::Event;
use tandem::slot::{SlotClass, SlotGroup};
use tandem::state::{ImageRecord, Operation, OperationKind, OperationResult, State};
use tandem::status::Observed;

const CONFIG: &str = r#"
compatible = "acme-gateway-x86_64"
[image]
version = "1.0.0"
[slots.a.rootfs]
device = "/dev/disk/by-partlabel/rootfs-a"
[slots.b.rootfs]
device = "/dev/disk/by-partlabel/rootfs-b"
[slots.a.boot]
device = "/dev/disk/by-partlabel/boot-a"
[slots.b.boot]
device = "/dev/disk/by-partlabel/boot-b"
"#;

fn check(name: &str, actual: &str) {
    let path = format!("{}/tests/golden/{name}", env!("CARGO_MANIFEST_DIR"));
    if std::env::var("UPDATE_GOLDEN").is_ok() {
        std::fs::write(&path, actual).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        actual, want,
        "{path} differs; run with UPDATE_GOLDEN=1 if intended"
    );
}

#[test]
fn status_json_v1() {
    let s = config::parse(&[config::Source::image("t.toml", CONFIG)]).unwrap();
    let mut st = State::default();
    st.apply(SlotGroup::B, Event::InstallStarted).unwrap();
    st.apply(SlotGroup::B, Event::InstallCompleted).unwrap();
    let b = st.slots.get_mut(&SlotGroup::B).unwrap();
    b.version = Some("1.1.0".parse().unwrap());
    b.security_epoch = Some(1);
    b.installed_at = Some("2026-11-26T08:00:00Z".into());
    b.images = vec![
        ImageRecord {
            slot_class: SlotClass::new("rootfs").unwrap(),
            size: 268435456,
            sha256: "ab".repeat(32),
        },
        ImageRecord {
            slot_class: SlotClass::new("boot").unwrap(),
            size: 33554432,
            sha256: "cd".repeat(32),
        },
    ];
    st.security_epoch_floor = 1;
    st.last_operation = Some(Operation {
        kind: OperationKind::Install,
        source: "https://updates.example.com/gw/1.1.0.tnd".into(),
        target: Some(SlotGroup::B),
        version: Some("1.1.0".parse().unwrap()),
        started_at: "2026-11-26T07:58:00Z".into(),
        finished_at: Some("2026-11-26T08:00:00Z".into()),
        result: OperationResult::Succeeded,
        error: None,
        checks: vec![],
        transfer: None,
    });
    let seen = |lock_held| Observed {
        booted: Some(SlotGroup::A),
        lock_held,
        ..Default::default()
    };
    let status = tandem::status::build(&s, &st, &seen(false));
    check("status-v1.json", &status.to_json());
    check("status-v1.txt", &status_view::render(&status, false));

    // An in-progress operation without a lock holder reads as interrupted.
    st.last_operation.as_mut().unwrap().result = OperationResult::InProgress;
    let status = tandem::status::build(&s, &st, &seen(false));
    assert_eq!(
        status.last_operation.as_ref().unwrap().result,
        "interrupted"
    );
    let status = tandem::status::build(&s, &st, &seen(true));
    assert_eq!(status.last_operation.unwrap().result, "in-progress");
}

/// A device with the GRUB backend on a real grubenv file, in the states
/// where what boots next is not what runs: `primary` comes from the
/// bootloader, never from the kernel command line.
#[test]
fn status_with_a_bootloader_where_primary_is_not_the_booted_group() {
    use tandem::boot::grub::GrubStore;
    use tandem::boot::{Bootloader, EnvBootloader, Mark};
    use tandem::fsm::SlotState;
    use tandem::slot::SlotGroup::{A, B};
    use tandem::state::Failure;
    let d = tempfile::tempdir().unwrap();
    let env = d.path().join("grubenv");
    tandem::boot::grub::create(&env).unwrap();
    let text = format!(
        "compatible = \"acme-gateway-x86_64\"\n[image]\nversion = \"1.0.0\"\n[boot]\nbackend = \"grub\"\ngrubenv = \"{}\"\n[slots.a.rootfs]\ndevice = \"/dev/disk/by-partlabel/rootfs-a\"\n[slots.b.rootfs]\ndevice = \"/dev/disk/by-partlabel/rootfs-b\"\n",
        env.display()
    );
    let s = config::parse(&[config::Source::image("t.toml", text)]).unwrap();
    let mut boot = EnvBootloader {
        store: GrubStore::new(&env),
    };
    let installed = |st: &mut State, g, v: &str, armed| {
        st.apply(g, Event::InstallStarted).unwrap();
        st.apply(g, Event::InstallCompleted).unwrap();
        let r = st.slots.get_mut(&g).unwrap();
        r.version = Some(v.parse().unwrap());
        r.security_epoch = Some(0);
        r.installed_at = Some("2026-12-01T08:00:00Z".into());
        r.images = vec![ImageRecord {
            slot_class: SlotClass::new("rootfs").unwrap(),
            size: 268435456,
            sha256: "ab".repeat(32),
        }];
        r.armed = armed;
    };
    let render = |name: &str,
                  st: &State,
                  booted,
                  boot: &mut EnvBootloader<GrubStore>,
                  degraded: Option<&str>| {
        let view = tandem::status::boot_view(boot);
        let status = tandem::status::build(
            &s,
            st,
            &Observed {
                booted: Some(booted),
                boot: Some(&view),
                lock_held: false,
                data_degraded: degraded.map(str::to_string),
            },
        );
        check(&format!("status-v1-{name}.json"), &status.to_json());
        check(
            &format!("status-v1-{name}.txt"),
            &status_view::render(&status, false),
        );
        status
    };

    // 1. Installed and armed: a runs, b boots next (one try).
    let mut st = State::default();
    installed(&mut st, B, "1.1.0", true);
    boot.arm(B, 1).unwrap();
    let out = render("armed", &st, A, &mut boot, None);
    assert_eq!((out.booted, out.primary), (Some(A), Some(B)));
    assert_eq!(out.slots[1].tries_left, Some(1));

    // 2. b committed, then rolled back: b runs, a boots next.
    boot.set_primary(B).unwrap();
    st.apply(B, Event::MarkedGood).unwrap();
    boot.set_primary(A).unwrap();
    let out = render("rolled-back", &st, B, &mut boot, None);
    assert_eq!((out.booted, out.primary), (Some(B), Some(A)));

    // 3. A trial that failed its checks, before the reboot: b runs, is bad,
    //    a boots next; the failure is listed.
    let mut st = State::default();
    installed(&mut st, B, "1.2.0", true);
    boot.arm(B, 1).unwrap();
    boot.set_state(B, Mark::Bad).unwrap();
    st.apply(B, Event::MarkedBad).unwrap();
    st.record_failure(Failure {
        version: Some("1.2.0".parse().unwrap()),
        slot: B,
        at: "2026-12-01T08:05:00Z".into(),
        reason: "health check \"app\" failed: db unreachable".into(),
        checks: vec![],
    });
    let out = render("failed-trial", &st, B, &mut boot, None);
    assert_eq!((out.booted, out.primary), (Some(B), Some(A)));
    assert_eq!(out.slots[1].state, SlotState::Bad);

    // 4. Installed but the power went before arming; data degraded.
    let mut st = State::default();
    boot.set_primary(A).unwrap();
    installed(&mut st, B, "1.3.0", false);
    let out = render(
        "not-armed-degraded",
        &st,
        A,
        &mut boot,
        Some("tandem-data on /dev/vda4 holds LUKS, not ext4; refusing to format it"),
    );
    assert!(!out.slots[1].armed);
    let text = status_view::render(&out, false);
    assert!(text.contains("NOT ARMED") && text.contains("data:       DEGRADED"));

    // 5. The initramfs merged /etc at the first boot of 1.1.0 (its report,
    //    byte for byte as initramfs/src/etcmerge.rs writes it).
    let report = d.path().join("merge.json");
    std::fs::write(
        &report,
        "{\"merge_version\": 1, \"version\": \"1.1.0\", \"yielded\": [\"/etc/vendor.conf\"], \"conflicts\": [\"/etc/conflict.conf\"]}\n",
    )
    .unwrap();
    let mut st = State::default();
    installed(&mut st, B, "1.1.0", true);
    st.apply(B, Event::MarkedGood).unwrap();
    boot.set_primary(B).unwrap();
    let view = tandem::status::boot_view(&mut boot);
    let mut status = tandem::status::build(
        &s,
        &st,
        &Observed {
            booted: Some(B),
            boot: Some(&view),
            lock_held: false,
            data_degraded: None,
        },
    );
    status.etc_merge = tandem::status::EtcMerge::read(&report);
    let m = status.etc_merge.as_ref().expect("the report is read");
    assert_eq!(m.conflicts, ["/etc/conflict.conf"]);
    check("status-v1-etc-merge.json", &status.to_json());
    check(
        "status-v1-etc-merge.txt",
        &status_view::render(&status, false),
    );
    // Not a report of this format: not shown (never guessed at).
    for bad in [
        "{\"merge_version\": 2, \"version\": \"x\", \"yielded\": [], \"conflicts\": []}",
        "garbage",
    ] {
        std::fs::write(&report, bad).unwrap();
        assert_eq!(tandem::status::EtcMerge::read(&report), None, "{bad}");
    }
    assert_eq!(tandem::status::EtcMerge::read(&d.path().join("none")), None);
}

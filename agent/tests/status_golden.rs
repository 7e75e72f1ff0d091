//! The `status --json` shape (status_version 1) against a golden file.
//! Regenerate with UPDATE_GOLDEN=1 after a deliberate, documented change.

use tandem::config;
use tandem::fsm::Event;
use tandem::slot::{SlotClass, SlotGroup};
use tandem::state::{ImageRecord, Operation, OperationKind, OperationResult, State};

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
    });
    let status = tandem::status::build(&s, &st, Some(SlotGroup::A), None, false);
    check("status-v1.json", &status.to_json());
    check("status-v1.txt", &status.to_text());

    // An in-progress operation without a lock holder reads as interrupted.
    st.last_operation.as_mut().unwrap().result = OperationResult::InProgress;
    let status = tandem::status::build(&s, &st, Some(SlotGroup::A), None, false);
    assert_eq!(
        status.last_operation.as_ref().unwrap().result,
        "interrupted"
    );
    let status = tandem::status::build(&s, &st, Some(SlotGroup::A), None, true);
    assert_eq!(status.last_operation.unwrap().result, "in-progress");
}

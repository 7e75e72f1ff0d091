//! `tandem status` for a person, and `--json` against docs/status.schema.json.
//!
//! The text view of states built through the library is compared with
//! golden files (agent/tests/golden/status-view-*.txt; UPDATE_GOLDEN=1
//! rewrites them after a deliberate change), one of them coloured. The
//! binary, on file-backed slots with a GRUB environment, is driven through
//! a fresh device, a pending trial, a failed trial and a bootloader
//! fallback: its `--json` output must validate against the schema with
//! additional properties forbidden (so the schema names every field), its
//! text on a pipe carries no escape sequence, on a terminal (a pty from
//! `script`) it is coloured unless NO_COLOR is set.
//!
//! Validation runs Debian's python3-jsonschema; without it (or without
//! `script`) those checks are skipped unless TANDEM_TEST_REQUIRE_TOOLS=1.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use tandem::boot::grub::GrubStore;
use tandem::boot::{abvars, EnvStore};
use tandem::bundle::manifest::Compression;
use tandem::cli::status_view::render;
use tandem::config;
use tandem::fsm::Event;
use tandem::health::CheckResult;
use tandem::slot::SlotClass;
use tandem::slot::SlotGroup::{self, A, B};
use tandem::state::{
    Failure, ImageRecord, Operation, OperationKind, OperationResult, State, Transfer,
};
use tandem::status::{BootView, Observed, Status};

fn golden(name: &str, actual: &str) {
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

// ---- JSON Schema validation (python3-jsonschema) ----

const VALIDATE_PY: &str = r#"
import json, sys
from jsonschema import Draft202012Validator

def strict(s):
    # The schema lets consumers accept fields added within version 1; the
    # agent's own output must not carry a field the schema does not name.
    if isinstance(s, dict):
        if s.get("type") == "object" and "properties" in s:
            s.setdefault("additionalProperties", False)
        for v in s.values():
            strict(v)
    elif isinstance(s, list):
        for v in s:
            strict(v)

schema = json.load(open(sys.argv[1]))
Draft202012Validator.check_schema(schema)
strict(schema)
validator = Draft202012Validator(schema)
bad = 0
for f in sys.argv[2:]:
    for e in validator.iter_errors(json.load(open(f))):
        path = "/".join(str(p) for p in e.absolute_path) or "(root)"
        print(f"{f}: {path}: {e.message}")
        bad += 1
sys.exit(1 if bad else 0)
"#;

fn schema_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/status.schema.json")
}

/// A python3 with jsonschema's draft 2020-12 validator: Debian's first.
fn python() -> Option<&'static str> {
    ["/usr/bin/python3", "python3"].into_iter().find(|p| {
        Command::new(p)
            .args(["-c", "from jsonschema import Draft202012Validator"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// Validates each (name, JSON text); Err with the validator's report.
fn validate(py: &str, docs: &[(String, String)]) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let mut files = vec![];
    for (name, text) in docs {
        let f = dir.path().join(format!("{name}.json"));
        std::fs::write(&f, text).unwrap();
        files.push(f);
    }
    let o = Command::new(py)
        .args(["-c", VALIDATE_PY])
        .arg(schema_path())
        .args(&files)
        .output()
        .unwrap();
    if o.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ))
    }
}

// ---- States built through the library ----

const CONFIG: &str = r#"
compatible = "acme-gateway-x86_64"
[image]
version = "1.0.0"
[boot]
backend = "grub"
grubenv = "/boot/efi/EFI/tandem/grubenv"
[slots.a.rootfs]
device = "/dev/disk/by-partlabel/rootfs-a"
[slots.b.rootfs]
device = "/dev/disk/by-partlabel/rootfs-b"
"#;

fn installed(st: &mut State, g: SlotGroup, v: &str) {
    st.apply(g, Event::InstallStarted).unwrap();
    st.apply(g, Event::InstallCompleted).unwrap();
    let r = st.slots.get_mut(&g).unwrap();
    r.version = Some(v.parse().unwrap());
    r.security_epoch = Some(2);
    r.installed_at = Some("2026-12-01T08:00:00Z".into());
    r.images = vec![ImageRecord {
        slot_class: SlotClass::new("rootfs").unwrap(),
        size: 536870912,
        sha256: "5e".repeat(32),
    }];
    r.armed = true;
}

fn install_op(v: &str, result: OperationResult) -> Operation {
    Operation {
        kind: OperationKind::Install,
        source: "https://updates.example.com/gw/***".into(),
        target: Some(B),
        version: Some(v.parse().unwrap()),
        started_at: "2026-12-01T07:58:00Z".into(),
        finished_at: (result != OperationResult::InProgress)
            .then(|| "2026-12-01T08:00:00Z".to_string()),
        result,
        error: None,
        checks: vec![],
        transfer: None,
    }
}

fn view(marks: &[(SlotGroup, tandem::boot::Mark, Option<u32>)], primary: SlotGroup) -> BootView {
    BootView {
        primary: Some(primary),
        marks: marks.iter().map(|&(g, m, t)| (g, (m, t))).collect(),
        error: None,
    }
}

/// (name, status): the states where what the view shows differs.
fn library_states() -> Vec<(&'static str, Status)> {
    use tandem::boot::Mark::{Bad, Good};
    let s = config::parse(&[config::Source::image("t.toml", CONFIG)]).unwrap();
    let build = |st: &State, booted, boot: Option<&BootView>, lock_held| {
        tandem::status::build(
            &s,
            st,
            &Observed {
                booted: Some(booted),
                boot,
                lock_held,
                data_degraded: None,
            },
        )
    };
    let mut out = vec![];

    // A factory-fresh device: nothing recorded, a committed in GRUB.
    let fresh = State::default();
    let v = view(&[(A, Good, None), (B, Good, None)], A);
    out.push(("fresh", build(&fresh, A, Some(&v), false)));

    // An adaptive install running now (the lock is held).
    let mut st = State::default();
    st.apply(B, Event::InstallStarted).unwrap();
    let mut op = install_op("1.1.0", OperationResult::InProgress);
    op.transfer = Some(Transfer {
        fetched: 3_500_000,
        reused: 530_000_000,
        requests: 17,
        full: false,
    });
    st.last_operation = Some(op.clone());
    let v = view(&[(A, Good, None), (B, Bad, None)], A);
    out.push(("installing", build(&st, A, Some(&v), true)));

    // Installed and armed: b boots next, with two tries.
    let mut st = State::default();
    installed(&mut st, B, "1.1.0");
    let mut op = install_op("1.1.0", OperationResult::Succeeded);
    op.transfer = Some(Transfer {
        fetched: 3_500_000,
        reused: 530_000_000,
        requests: 17,
        full: true,
    });
    st.last_operation = Some(op);
    st.security_epoch_floor = 2;
    let v = view(&[(A, Good, None), (B, Good, Some(2))], B);
    out.push(("trial-pending", build(&st, A, Some(&v), false)));

    // Running the trial: b booted with one try used; a boot check is due.
    let v = view(&[(A, Good, None), (B, Good, Some(1))], B);
    out.push(("on-trial", build(&st, B, Some(&v), false)));

    // The trial's health check failed: b bad, a boots next; the check
    // output carries an escape sequence, which must not reach a terminal.
    let mut st2 = st.clone();
    st2.apply(B, Event::MarkedBad).unwrap();
    let checks = vec![
        CheckResult {
            name: "selftest".into(),
            passed: true,
            detail: "ok\n".into(),
            millis: 120,
        },
        CheckResult {
            name: "app".into(),
            passed: false,
            detail: "exit status 1: \x1b[31mdb unreachable\x1b[0m\n".into(),
            millis: 3004,
        },
    ];
    st2.last_operation = Some(Operation {
        kind: OperationKind::BootCheck,
        source: String::new(),
        target: Some(B),
        version: Some("1.1.0".parse().unwrap()),
        started_at: "2026-12-01T08:03:00Z".into(),
        finished_at: Some("2026-12-01T08:03:04Z".into()),
        result: OperationResult::Failed,
        error: Some("health check \"app\" failed: exit status 1".into()),
        checks: checks.clone(),
        transfer: None,
    });
    st2.record_failure(Failure {
        version: Some("1.1.0".parse().unwrap()),
        slot: B,
        at: "2026-12-01T08:03:04Z".into(),
        reason: "health check \"app\" failed: exit status 1".into(),
        checks,
    });
    let v = view(&[(A, Good, None), (B, Bad, None)], A);
    out.push(("failed-check", build(&st2, B, Some(&v), false)));

    // The bootloader fell back (b never committed), after earlier failures.
    let mut st3 = st.clone();
    st3.apply(B, Event::MarkedBad).unwrap();
    for i in 0..6 {
        st3.record_failure(Failure {
            version: Some(format!("1.0.{}", i + 1).parse().unwrap()),
            slot: B,
            at: format!("2026-11-2{i}T10:00:00Z"),
            reason: "the bootloader fell back: the trial did not commit".into(),
            checks: vec![],
        });
    }
    st3.last_operation = Some(Operation {
        kind: OperationKind::BootCheck,
        source: String::new(),
        target: Some(B),
        version: Some("1.1.0".parse().unwrap()),
        started_at: "2026-12-01T08:06:00Z".into(),
        finished_at: Some("2026-12-01T08:06:00Z".into()),
        result: OperationResult::Succeeded,
        error: None,
        checks: vec![],
        transfer: None,
    });
    let v = view(&[(A, Good, None), (B, Bad, None)], A);
    out.push(("fell-back", build(&st3, A, Some(&v), false)));

    // The bootloader cannot be read, and an install was cut off.
    let mut st4 = State::default();
    st4.apply(B, Event::InstallStarted).unwrap();
    st4.last_operation = Some(install_op("1.2.0", OperationResult::InProgress));
    let v = BootView {
        error: Some("/boot/efi/EFI/tandem/grubenv: No such file or directory".into()),
        ..Default::default()
    };
    out.push(("boot-unreadable", build(&st4, A, Some(&v), false)));

    // On a channel: an update staged under fleet_lock, waiting for a slot.
    let mut ch = out[0].1.clone();
    ch.channel = Some(tandem::status::ChannelStatus {
        url: "https://updates.example.com/tuf".into(),
        role: "stable".into(),
        strategy: "fleet_lock".into(),
        last_check: Some("2026-12-01T09:00:00Z".into()),
        last_check_ok: Some(true),
        last_check_message: Some("waiting for a FleetLock reboot slot: group web is full".into()),
        found_version: Some("1.2.0".into()),
        wave_opens_at: None,
        waiting_for: Some("waiting for a FleetLock reboot slot: group web is full".into()),
        staged: Some("1.2.0".into()),
        lock_group: None,
    });
    out.push(("channel-staged", ch));
    out
}

#[test]
fn text_view_golden_files() {
    for (name, st) in library_states() {
        let text = render(&st, false);
        assert!(!text.contains('\x1b'), "{name}: escape in plain text");
        golden(&format!("status-view-{name}.txt"), &text);
    }
    // Colour changes the look, never the layout.
    let states = library_states();
    let (_, st) = states.iter().find(|(n, _)| *n == "failed-check").unwrap();
    let color = render(st, true);
    golden("status-view-failed-check.color.txt", &color);
    assert!(color.contains("\x1b[1;31mFAILED\x1b[0m"));
    assert_eq!(strip_ansi(&color), render(st, false));
    // Hostile text arrives escaped: only our own colour codes remain.
    assert!(!color.contains("\x1b[31mdb"), "{color}");
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("\x1b[") {
        out += &rest[..i];
        let tail = &rest[i + 2..];
        let end = tail.find('m').expect("an SGR sequence");
        rest = &tail[end + 1..];
    }
    out + rest
}

#[test]
fn library_states_validate_against_the_schema() {
    let Some(py) = python() else {
        return common::tools::skip(
            "library_states_validate_against_the_schema",
            "python3-jsonschema",
        );
    };
    let docs: Vec<(String, String)> = library_states()
        .into_iter()
        .map(|(n, st)| (n.to_string(), st.to_json()))
        .collect();
    validate(py, &docs).unwrap();
    // The goldens of status_golden.rs too.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut docs = vec![];
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let n = p.file_name().unwrap().to_string_lossy().to_string();
        if n.starts_with("status-v1") && n.ends_with(".json") {
            docs.push((n, std::fs::read_to_string(&p).unwrap()));
        }
    }
    assert!(docs.len() >= 5, "{docs:?}");
    validate(py, &docs).unwrap();
}

/// The validator can fail: a wrong value, a missing field, a field the
/// schema does not name.
#[test]
fn the_schema_rejects_what_it_does_not_describe() {
    let Some(py) = python() else {
        return common::tools::skip(
            "the_schema_rejects_what_it_does_not_describe",
            "python3-jsonschema",
        );
    };
    let (_, st) = library_states().remove(2);
    let good: serde_json::Value = serde_json::from_str(&st.to_json()).unwrap();
    type Mutation = (&'static str, fn(&mut serde_json::Value));
    let mutations: [Mutation; 5] = [
        ("bad-state", |v| v["slots"][1]["state"] = "weird".into()),
        ("no-armed", |v| {
            v["slots"][0].as_object_mut().unwrap().remove("armed");
        }),
        ("extra-field", |v| v["slots"][0]["colour"] = "blue".into()),
        ("version-2", |v| v["status_version"] = 2.into()),
        ("three-slots", |v| {
            let s = v["slots"][0].clone();
            v["slots"].as_array_mut().unwrap().push(s);
        }),
    ];
    for (name, mutate) in mutations {
        let mut v = good.clone();
        mutate(&mut v);
        let r = validate(py, &[(name.to_string(), v.to_string())]);
        assert!(r.is_err(), "{name}: the schema accepted it");
    }
}

// ---- The binary on file-backed slots ----

fn tandem(fx: &Fx, args: &[&str]) -> Output {
    fx.tandem()
        .args(args)
        .env("TANDEM_NO_DAEMON", "1")
        .output()
        .unwrap()
}

fn ok(o: &Output) -> String {
    let t = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{t}");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn boot_on(fx: &Fx, g: SlotGroup) {
    std::fs::write(fx.path("cmdline"), format!("tandem.slot={g}\n")).unwrap();
}

/// A device on a with GRUB and a health check that fails with `detail`.
fn grub_device() -> (Fx, PathBuf) {
    let mut fx = Fx::new(&["rootfs"]);
    let env = fx.path("grubenv");
    tandem::boot::grub::create(&env).unwrap();
    fx.extra_config = format!(
        "[boot]\nbackend = \"grub\"\ngrubenv = \"{}\"\ntries = 2\n[health]\nreboot_on_failure = false\n\
         [[health.check]]\nname = \"app\"\ncommand = [\"/bin/sh\", \"-c\", \"printf '\\\\033[31mdb unreachable'; exit 1\"]\n",
        env.display()
    );
    fx.write_config();
    (fx, env)
}

/// `status --json` and `status` (on a pipe) in the device's states.
fn device_states() -> Vec<(String, String, String)> {
    let mut out = vec![];
    let mut snap = |name: &str, fx: &Fx| {
        let json = ok(&tandem(fx, &["status", "--json"]));
        let text = ok(&tandem(fx, &["status"]));
        out.push((name.to_string(), json, text));
    };
    let (fx, env) = grub_device();
    snap("fresh", &fx);
    let b = fx.bundle(
        "u.tnd",
        "1.1.0",
        &[("rootfs", &pattern(100_000, 1), Compression::Zstd)],
    );
    ok(&tandem(&fx, &["install", b.to_str().unwrap()]));
    snap("trial-pending", &fx);
    // GRUB boots b; its health check fails: b bad, a failure recorded.
    let mut v = GrubStore::new(&env).load().unwrap();
    assert_eq!(abvars::simulate_boot(&mut v), Some(B));
    GrubStore::new(&env).save(&v).unwrap();
    boot_on(&fx, B);
    snap("on-trial", &fx);
    assert!(!tandem(&fx, &["boot-check"]).status.success());
    snap("failed-check", &fx);
    // Back on a, 1.2.0 is tried and the bootloader falls back by itself.
    boot_on(&fx, A);
    let b = fx.bundle(
        "u2.tnd",
        "1.2.0",
        &[("rootfs", &pattern(100_000, 2), Compression::Zstd)],
    );
    ok(&tandem(&fx, &["install", b.to_str().unwrap()]));
    let mut v = GrubStore::new(&env).load().unwrap();
    for _ in 0..3 {
        let _ = abvars::simulate_boot(&mut v);
    }
    GrubStore::new(&env).save(&v).unwrap();
    ok(&tandem(&fx, &["boot-check"]));
    snap("fell-back", &fx);
    out
}

#[test]
fn real_status_output_in_several_states() {
    let states = device_states();
    for (name, json, text) in &states {
        assert!(!text.contains('\x1b'), "{name}: escape on a pipe:\n{text}");
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(v["status_version"], 1, "{name}");
    }
    let get = |n: &str| states.iter().find(|s| s.0 == n).unwrap();
    let (_, json, text) = get("trial-pending");
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(
        (&v["primary"], &v["slots"][1]["tries_left"]),
        (&"b".into(), &2.into())
    );
    assert!(text.contains("primary:    b (boots next)"), "{text}");
    assert!(text.contains("trial: 2 tries left"), "{text}");
    let (_, json, text) = get("failed-check");
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(v["slots"][1]["state"], "bad");
    assert_eq!(v["last_operation"]["checks"][0]["passed"], false);
    assert!(text.contains("check     app FAILED"), "{text}");
    assert!(text.contains("\\x1b[31mdb unreachable"), "escaped: {text}");
    let (_, json, text) = get("fell-back");
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(v["failures"].as_array().unwrap().len(), 2, "{json}");
    assert!(
        text.contains("failures:") && text.contains("1.2.0 on b"),
        "{text}"
    );

    let Some(py) = python() else {
        return common::tools::skip("real_status_output_in_several_states", "python3-jsonschema");
    };
    let docs: Vec<(String, String)> = states.into_iter().map(|(n, j, _)| (n, j)).collect();
    validate(py, &docs).unwrap();
}

/// On a terminal the view is coloured; NO_COLOR turns that off.
#[test]
fn colour_only_on_a_terminal_and_without_no_color() {
    let have_script = Command::new("script")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_script {
        return common::tools::skip(
            "colour_only_on_a_terminal_and_without_no_color",
            "script (util-linux)",
        );
    }
    let (fx, _) = grub_device();
    let cmd = format!(
        "{} --config {} --root {} status",
        env!("CARGO_BIN_EXE_tandem"),
        fx.path("tandem.toml").display(),
        fx.dir.path().display()
    );
    let on_pty = |no_color: Option<&str>| {
        let mut c = Command::new("script");
        c.args(["-qec", &cmd, "/dev/null"])
            .env("TANDEM_NO_DAEMON", "1")
            .env("TERM", "xterm")
            .env_remove("NO_COLOR");
        if let Some(v) = no_color {
            c.env("NO_COLOR", v);
        }
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let colored = on_pty(None);
    assert!(colored.contains("\x1b[1mbooted\x1b[0m"), "{colored:?}");
    let plain = on_pty(Some("1"));
    assert!(
        !plain.contains('\x1b') && plain.contains("booted"),
        "{plain:?}"
    );
    // An empty NO_COLOR does not count (no-color.org).
    assert!(on_pty(Some("")).contains('\x1b'));
}

//! Install → arm → trial boot → commit / mark-bad / rollback through the
//! `tandem` binary, with the GRUB backend (checked with grub-editenv) and
//! with the custom backend (a shell script storing its choice in a file).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

use common::*;
use tandem::boot::grub::GrubStore;
use tandem::boot::{abvars, EnvStore};
use tandem::bundle::manifest::Compression;
use tandem::slot::SlotGroup::{A, B};

fn tandem(fx: &Fx, args: &[&str]) -> Output {
    fx.tandem().args(args).output().unwrap()
}

fn ok(o: &Output) -> String {
    let t = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{t}");
    t
}

fn boot_on(fx: &Fx, g: tandem::slot::SlotGroup) {
    std::fs::write(fx.path("cmdline"), format!("tandem.slot={g}\n")).unwrap();
}

#[test]
fn grub_install_trial_commit_rollback() {
    let (fx, env) = grub_device("tries = 2\n");
    let vars = || GrubStore::new(&env).load().unwrap();

    // Rollback from a fresh device is refused: b was never installed... but
    // "unknown" (factory) counts as good, so refuse only untried installs.
    let b = fx.bundle(
        "u.tnd",
        "1.1.0",
        &[("rootfs", &pattern(200_000, 1), Compression::Zstd)],
    );
    let out = ok(&tandem(&fx, &["install", b.to_str().unwrap()]));
    assert!(out.contains("armed for 2 trial boot(s)"), "{out}");
    let v = vars();
    assert_eq!(abvars::primary(&v), Some(B));
    assert_eq!(abvars::tries_left(&v, B), Some(2));

    // Rolling back to an untried group is refused with exit code 7... here
    // the other group (b) is installed-not-tried, as seen from a.
    let o = tandem(&fx, &["rollback"]);
    assert_eq!(
        o.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("never been booted"));

    // GRUB boots b (consuming a try); b commits.
    let mut v = vars();
    assert_eq!(abvars::simulate_boot(&mut v), Some(B));
    GrubStore::new(&env).save(&v).unwrap();
    boot_on(&fx, B);
    let st = ok(&tandem(&fx, &["status"]));
    assert!(st.contains("booted, primary, trial: 1 try left"), "{st}");
    ok(&tandem(&fx, &["mark-good"]));
    let v = vars();
    assert_eq!(abvars::tries_left(&v, B), None);
    assert_eq!(abvars::primary(&v), Some(B));
    let json: serde_json::Value =
        serde_json::from_slice(&tandem(&fx, &["status", "--json"]).stdout).unwrap();
    assert_eq!(json["primary"], "b");
    assert_eq!(json["slots"][1]["state"], "good");
    assert_eq!(json["slots"][1]["boot_mark"], "good");

    // Roll back to a (the factory image: unknown, but bootable and good).
    ok(&tandem(&fx, &["rollback"]));
    assert_eq!(abvars::primary(&vars()), Some(A));
    // Mark a bad while running b: b becomes primary again.
    ok(&tandem(&fx, &["mark-bad", "a"]));
    assert_eq!(abvars::primary(&vars()), Some(B));
    let o = tandem(&fx, &["rollback"]);
    assert_eq!(o.status.code(), Some(7));
    assert!(String::from_utf8_lossy(&o.stderr).contains("marked bad"));
}

#[test]
fn grub_trial_runs_out_and_falls_back() {
    let (fx, env) = grub_device("");
    let b = fx.bundle(
        "u.tnd",
        "1.1.0",
        &[("rootfs", &pattern(1000, 1), Compression::None)],
    );
    ok(&tandem(&fx, &["install", b.to_str().unwrap()]));
    let mut v = GrubStore::new(&env).load().unwrap();
    assert_eq!(abvars::simulate_boot(&mut v), Some(B), "the trial boot");
    assert_eq!(
        abvars::simulate_boot(&mut v),
        Some(A),
        "never committed: back to a"
    );
}

#[test]
fn too_many_tries_for_grub_is_refused_before_writing() {
    let (fx, _) = grub_device("tries = 5\n");
    let snap = fx.snapshot();
    let b = fx.bundle(
        "u.tnd",
        "1.1.0",
        &[("rootfs", &pattern(1000, 1), Compression::None)],
    );
    let o = tandem(&fx, &["install", b.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("at most 3"));
    assert_eq!(fx.snapshot(), snap);
}

const HELPER: &str = r#"#!/bin/sh
# A board helper storing "primary a|b", "state_X good|bad", "tries_X N" in a file.
set -e
S="$(dirname "$0")/board-state"
touch "$S"
get() { sed -n "s/^$1=//p" "$S"; }
put() { grep -v "^$1=" "$S" > "$S.new" || true; echo "$1=$2" >> "$S.new"; mv "$S.new" "$S"; }
case "$1" in
  max-tries) echo 5 ;;
  get-primary) get primary ;;
  set-primary) put primary "$2"; put "state_$2" good; put "tries_$2" "" ;;
  get-state) v=$(get "state_$2"); echo "${v:-good}" ;;
  set-state) put "state_$2" "$3" ;;
  arm) put primary "$2"; put "state_$2" good; put "tries_$2" "$3" ;;
  get-tries) get "tries_$2" ;;
  *) echo "unknown verb $1" >&2; exit 2 ;;
esac
"#;

#[test]
fn custom_backend_runs_the_helper() {
    let mut fx = Fx::new(&["rootfs"]);
    let helper = fx.path("board-helper");
    std::fs::write(&helper, HELPER).unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    fx.extra_config = format!(
        "[boot]\nbackend = \"custom\"\ncustom_command = \"{}\"\ntries = 4\n",
        helper.display()
    );
    fx.write_config();
    let b = fx.bundle(
        "u.tnd",
        "1.1.0",
        &[("rootfs", &pattern(1000, 1), Compression::None)],
    );
    ok(&tandem(&fx, &["install", b.to_str().unwrap()]));
    let state = std::fs::read_to_string(fx.path("board-state")).unwrap();
    assert!(
        state.contains("primary=b") && state.contains("tries_b=4"),
        "{state}"
    );
    boot_on(&fx, B);
    ok(&tandem(&fx, &["mark-good"]));
    let state = std::fs::read_to_string(fx.path("board-state")).unwrap();
    assert!(
        state.contains("tries_b=\n") || state.ends_with("tries_b="),
        "{state}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&tandem(&fx, &["status", "--json"]).stdout).unwrap();
    assert_eq!(json["primary"], "b");
    assert_eq!(json["slots"][1]["tries_left"], serde_json::Value::Null);
}

#[test]
fn a_failing_helper_is_reported_with_its_stderr() {
    let mut fx = Fx::new(&["rootfs"]);
    let helper = fx.path("bad-helper");
    std::fs::write(
        &helper,
        "#!/bin/sh\necho \"flash is write-protected\" >&2\nexit 3\n",
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    fx.extra_config = format!(
        "[boot]\nbackend = \"custom\"\ncustom_command = \"{}\"\n",
        helper.display()
    );
    fx.write_config();
    let b = fx.bundle(
        "u.tnd",
        "1.1.0",
        &[("rootfs", &pattern(1000, 1), Compression::None)],
    );
    let snap = fx.snapshot();
    let o = tandem(&fx, &["install", b.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("flash is write-protected"), "{err}");
    // The bootloader could not even be asked about the booted group, so
    // nothing was written and the target was never touched.
    assert_eq!(fx.snapshot(), snap);
    let st = fx.state();
    assert_eq!(st.slot(B).state, tandem::fsm::SlotState::Unknown);
    assert!(st
        .last_operation
        .unwrap()
        .error
        .unwrap()
        .contains("flash is write-protected"));
}

/// A device booted from a with the GRUB backend on a fresh grubenv;
/// `extra` continues the `[boot]` table (or opens later ones).
fn grub_device(extra: &str) -> (Fx, std::path::PathBuf) {
    let mut fx = Fx::new(&["rootfs"]);
    let env = fx.path("grubenv");
    tandem::boot::grub::create(&env).unwrap();
    fx.extra_config = format!(
        "[boot]\nbackend = \"grub\"\ngrubenv = \"{}\"\n{extra}",
        env.display()
    );
    fx.write_config();
    (fx, env)
}

fn grub_fx(health: &str) -> (Fx, std::path::PathBuf) {
    grub_device(&format!("[health]\nreboot_on_failure = false\n{health}"))
}

/// Installs 1.1.0 into b and lets "GRUB" boot it once.
fn install_and_trial_boot(fx: &Fx, env: &std::path::Path) {
    let b = fx.bundle(
        "u.tnd",
        "1.1.0",
        &[("rootfs", &pattern(1000, 1), Compression::None)],
    );
    ok(&tandem(fx, &["install", b.to_str().unwrap()]));
    let out = ok(&tandem(fx, &["boot-check"]));
    assert!(out.contains("slot b is armed"), "{out}");
    let mut v = GrubStore::new(env).load().unwrap();
    assert_eq!(abvars::simulate_boot(&mut v), Some(B));
    GrubStore::new(env).save(&v).unwrap();
    boot_on(fx, B);
}

#[test]
fn boot_check_commits_when_checks_pass() {
    let (fx, env) =
        grub_fx("[[health.check]]\ncommand = [\"/bin/true\"]\n[[health.check]]\nfile = \"/\"\n");
    install_and_trial_boot(&fx, &env);
    let out = ok(&tandem(&fx, &["boot-check"]));
    assert!(
        out.contains("all 2 health check(s) passed; slot b committed"),
        "{out}"
    );
    let v = GrubStore::new(&env).load().unwrap();
    assert_eq!(
        (abvars::primary(&v), abvars::tries_left(&v, B)),
        (Some(B), None)
    );
    let out = ok(&tandem(&fx, &["boot-check"]));
    assert!(out.contains("nothing to do"), "{out}");
}

#[test]
fn boot_check_failure_marks_bad_records_and_refuses_reinstall() {
    let (fx, env) = grub_fx("[[health.check]]\nname = \"app\"\ncommand = [\"/bin/sh\", \"-c\", \"echo db unreachable; exit 1\"]\n");
    install_and_trial_boot(&fx, &env);
    let o = tandem(&fx, &["boot-check"]);
    assert!(!o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("FAILED on slot b") && out.contains("db unreachable"),
        "{out}"
    );
    let v = GrubStore::new(&env).load().unwrap();
    assert_eq!(
        abvars::primary(&v),
        Some(A),
        "the bootloader goes back to a"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&tandem(&fx, &["status", "--json"]).stdout).unwrap();
    assert_eq!(json["slots"][1]["state"], "bad");
    assert_eq!(json["failures"][0]["version"], "1.1.0");
    assert!(json["failures"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("\"app\""));
    assert_eq!(json["last_operation"]["checks"][0]["passed"], false);
    // Back on a, the failed version is not applied again by itself...
    boot_on(&fx, A);
    let b = fx.path("u.tnd");
    let o = tandem(&fx, &["install", b.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&o.stderr).contains("failed on this device before"));
    // ...unless forced.
    ok(&tandem(&fx, &["install", "--force", b.to_str().unwrap()]));
}

#[test]
fn boot_check_records_a_bootloader_fallback() {
    let (fx, env) = grub_fx("");
    let b = fx.bundle(
        "u.tnd",
        "1.1.0",
        &[("rootfs", &pattern(1000, 1), Compression::None)],
    );
    ok(&tandem(&fx, &["install", b.to_str().unwrap()]));
    // GRUB tries b (it panics before any check runs), then falls back to a.
    let mut v = GrubStore::new(&env).load().unwrap();
    assert_eq!(abvars::simulate_boot(&mut v), Some(B));
    assert_eq!(abvars::simulate_boot(&mut v), Some(A));
    GrubStore::new(&env).save(&v).unwrap();
    let out = ok(&tandem(&fx, &["boot-check"]));
    assert!(
        out.contains("the bootloader fell back") && out.contains("1.1.0"),
        "{out}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&tandem(&fx, &["status", "--json"]).stdout).unwrap();
    assert_eq!(json["slots"][1]["state"], "bad");
    assert_eq!(json["slots"][1]["boot_mark"], "bad");
    assert!(json["failures"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("fell back"));
    let out = ok(&tandem(&fx, &["boot-check"]));
    assert!(out.contains("nothing to do"), "recorded once: {out}");
}

#[test]
fn the_target_is_unbootable_while_it_is_written() {
    let (fx, env) = grub_fx("");
    // b holds a committed older version: the bootloader's fallback.
    let mut v = GrubStore::new(&env).load().unwrap();
    abvars::set_primary(&mut v, A);
    v.insert("TANDEM_B_OK".into(), "1".into());
    GrubStore::new(&env).save(&v).unwrap();
    // An install into b that fails midway (truncated) must leave b not OK.
    let img = pattern(300_000, 7);
    let m = manifest_for("1.1.0", &[("rootfs", &img)]);
    let mut bytes = signed_bundle(&m, &[&img], &fx.key);
    bytes.truncate(bytes.len() - 200_000);
    std::fs::write(fx.path("cut.tnd"), &bytes).unwrap();
    let o = tandem(&fx, &["install", fx.path("cut.tnd").to_str().unwrap()]);
    assert_eq!(
        o.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v = GrubStore::new(&env).load().unwrap();
    assert_eq!(abvars::state(&v, B), tandem::boot::Mark::Bad);
    assert_eq!(abvars::primary(&v), Some(A));
}

#[test]
fn grub_install_passes_the_verity_root_hash_before_arming() {
    use tandem::bundle::manifest::Verity;
    use tandem::bundle::writer::{self, BundleMeta, ImageInput};
    let (fx, env) = grub_device("");
    let img = fx.write_image("v.img", &pattern(200_000, 4));
    let verity = Verity {
        root_hash: "ab".repeat(32),
        salt: "cd".repeat(32),
        hash_offset: 196_608,
        data_block_size: 4096,
        hash_block_size: 4096,
        hash_algorithm: "sha256".into(),
    };
    let meta = |v: &str| BundleMeta {
        version: v.parse().unwrap(),
        compatible: "tandem-test".into(),
        security_epoch: 0,
        created_unix: 1_795_651_200,
        description: None,
    };
    let input = |verity: Option<Verity>| ImageInput {
        slot_class: tandem::slot::SlotClass::new("rootfs").unwrap(),
        path: img.clone(),
        compression: Compression::None,
        frame_size: None,
        chunk_size: Some(writer::CHUNK_SIZE),
        cdc: None,
        verity,
        group: None,
    };
    let with = fx.path("with.tnd");
    writer::create(
        &with,
        &meta("1.1.0"),
        &[input(Some(verity))],
        std::slice::from_ref(&fx.key),
    )
    .unwrap();
    ok(&tandem(&fx, &["install", with.to_str().unwrap()]));
    let want = format!(
        "tandem.verity.roothash={} tandem.verity.hashoffset=196608 tandem.verity.salt={}",
        "ab".repeat(32),
        "cd".repeat(32)
    );
    let v = GrubStore::new(&env).load().unwrap();
    assert_eq!(v.get("TANDEM_B_VERITY"), Some(&want));
    assert_eq!(v.get("TANDEM_A_VERITY"), None);
    assert_eq!(abvars::tries_left(&v, B), Some(1));
    // grub-editenv (what GRUB's load_env parses the same way) agrees.
    if let Ok(o) = Command::new("grub-editenv").arg(&env).arg("list").output() {
        let list = String::from_utf8_lossy(&o.stdout).to_string();
        assert!(
            list.contains(&format!("TANDEM_B_VERITY={want}\n")),
            "{list}"
        );
    }

    // A bundle without verity data clears the group's parameters.
    let without = fx.path("without.tnd");
    writer::create(
        &without,
        &meta("1.2.0"),
        &[input(None)],
        std::slice::from_ref(&fx.key),
    )
    .unwrap();
    ok(&tandem(&fx, &["install", without.to_str().unwrap()]));
    let v = GrubStore::new(&env).load().unwrap();
    assert_eq!(v.get("TANDEM_B_VERITY"), None);
}

//! The update channel end to end on one host: a repository made and
//! maintained with `tandem repo`, served on 127.0.0.1, and devices with
//! file-backed slots and a grubenv that run `tandem check`, the boot
//! check and simulated reboots. Nobody types an install.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::channel::{publisher, repo};
use common::fleetlock::{Etcd, FleetLock};
use common::*;
use tandem::boot::grub::GrubStore;
use tandem::boot::{abvars, EnvStore};
use tandem::bundle::manifest::Compression;
use tandem::slot::SlotGroup::{self, A, B};

fn tandem(fx: &Fx, args: &[&str]) -> Output {
    fx.tandem().arg("--direct").args(args).output().unwrap()
}

fn ok(fx: &Fx, args: &[&str]) -> String {
    let o = tandem(fx, args);
    assert!(o.status.success(), "tandem {args:?}: {}", text(&o));
    text(&o)
}

/// A device booted from a with the GRUB backend on a grubenv file, on the
/// channel of `srv` with `strategy` (extra `[channel]` lines allowed), the
/// repository's first root shipped in its image.
fn device(r: &Path, srv: &http::Server, strategy: &str, health: &str) -> (Fx, PathBuf) {
    let mut fx = Fx::new(&["rootfs"]);
    let env = fx.path("grubenv");
    tandem::boot::grub::create(&env).unwrap();
    channel::ship_root(&mut fx, r);
    set_health(&mut fx, &env, srv, strategy, health);
    (fx, env)
}

fn set_health(fx: &mut Fx, env: &Path, srv: &http::Server, strategy: &str, health: &str) {
    fx.extra_config = format!(
        "[boot]\nbackend = \"grub\"\ngrubenv = \"{}\"\n[health]\nreboot_on_failure = false\n{health}\n\
         [channel]\nurl = \"{}\"\nrole = \"stable\"\nmetrics_file = \"{}\"\n{strategy}\n",
        env.display(),
        srv.url,
        fx.path("tandem.prom").display()
    );
    fx.write_config();
}

const PASS: &str = "[[health.check]]\ncommand = [\"/bin/true\"]\n";
const FAIL: &str =
    "[[health.check]]\nname = \"app\"\ncommand = [\"/bin/sh\", \"-c\", \"echo app crashed; exit 1\"]\n";

/// What GRUB and the kernel do at a reboot.
fn reboot(fx: &Fx, env: &Path) -> SlotGroup {
    let mut v = GrubStore::new(env).load().unwrap();
    let g = abvars::simulate_boot(&mut v).expect("something boots");
    GrubStore::new(env).save(&v).unwrap();
    std::fs::write(fx.path("cmdline"), format!("tandem.slot={g}\n")).unwrap();
    g
}

fn publish(fx: &Fx, r: &Path, version: &str, extra: &[&str]) -> Vec<u8> {
    let img = pattern(200_000, version.len() as u8 + version.as_bytes()[2]);
    let b = fx.bundle(
        &format!("os-{version}.tnd"),
        version,
        &[("rootfs", &img, Compression::Zstd)],
    );
    let mut args = vec![
        "add",
        r.to_str().unwrap(),
        "--channel",
        "stable",
        b.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    repo(&args);
    img
}

fn check_json(fx: &Fx) -> serde_json::Value {
    let o = tandem(fx, &["check", "--json"]);
    assert!(o.status.success(), "tandem check: {}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o)))
}

#[test]
fn update_commit_fallback_next_version_and_a_replayed_timestamp() {
    let (_d, r, srv) = publisher();
    let (mut fx, env) = device(&r, &srv, "strategy = \"immediate\"", PASS);

    // The root of trust must be protected like the keyring.
    let root = r.join("repository/1.root.json");
    std::fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    let o = tandem(&fx, &["check"]);
    assert!(
        !o.status.success() && text(&o).contains("mode 0666"),
        "{}",
        text(&o)
    );
    std::fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();

    let first = check_json(&fx);
    assert_eq!(first["step"], "idle", "{first}");
    assert!(first["found"].is_null(), "{first}");

    // 1.1.0: found, staged, armed; after the reboot, committed.
    let img = publish(&fx, &r, "1.1.0", &[]);
    let c = check_json(&fx);
    assert_eq!(c["step"], "reboot", "{c}");
    let m = c["message"].as_str().unwrap();
    assert!(
        m.contains("installed 1.1.0 into slot group b") && m.contains("armed slot group b"),
        "{c}"
    );
    assert_eq!(&fx.slot(B, "rootfs")[..img.len()], &img[..]);
    assert_eq!(reboot(&fx, &env), B);
    assert!(ok(&fx, &["boot-check"]).contains("slot b committed"));
    assert_eq!(check_json(&fx)["step"], "idle");

    // 1.2.0 fails its health check: the device falls back and never
    // takes 1.2.0 again.
    publish(&fx, &r, "1.2.0", &[]);
    let old_timestamp = std::fs::read(r.join("repository/timestamp.json")).unwrap();
    assert_eq!(check_json(&fx)["step"], "reboot");
    set_health(&mut fx, &env, &srv, "strategy = \"immediate\"", FAIL);
    assert_eq!(reboot(&fx, &env), A);
    let o = tandem(&fx, &["boot-check"]);
    assert!(
        !o.status.success() && text(&o).contains("FAILED on slot a"),
        "{}",
        text(&o)
    );
    set_health(&mut fx, &env, &srv, "strategy = \"immediate\"", PASS);
    assert_eq!(reboot(&fx, &env), B, "the bootloader falls back");
    // What fell back is no longer "staged", even before the next check.
    let staged = |fx: &Fx| {
        let st: serde_json::Value = serde_json::from_str(&ok(fx, &["status", "--json"])).unwrap();
        st["channel"]["staged"].clone()
    };
    assert_eq!(staged(&fx), serde_json::Value::Null);
    let before = fx.snapshot();
    let c = check_json(&fx);
    assert_eq!(c["step"], "idle", "1.2.0 is not retried: {c}");
    assert!(
        c["message"]
            .as_str()
            .unwrap()
            .contains("passed over 1.2.0: it failed on this device"),
        "the check says why 1.2.0 is left: {c}"
    );
    assert_eq!(fx.snapshot(), before, "nothing written");
    assert_eq!(staged(&fx), serde_json::Value::Null);

    // 1.3.0 is taken.
    let img3 = publish(&fx, &r, "1.3.0", &[]);
    let c = check_json(&fx);
    assert_eq!(c["found"]["version"], "1.3.0", "{c}");
    assert_eq!(c["step"], "reboot", "{c}");
    assert_eq!(&fx.slot(A, "rootfs")[..img3.len()], &img3[..]);

    // The server replays the timestamp of before 1.3.0: refused, nothing changes.
    std::fs::write(r.join("repository/timestamp.json"), &old_timestamp).unwrap();
    let before = (fx.snapshot(), std::fs::read(env.clone()).unwrap());
    let o = tandem(&fx, &["check"]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("channel metadata refused") && text(&o).contains("timestamp"),
        "{}",
        text(&o)
    );
    assert_eq!((fx.snapshot(), std::fs::read(&env).unwrap()), before);

    let st: serde_json::Value = serde_json::from_str(&ok(&fx, &["status", "--json"])).unwrap();
    let ch = &st["channel"];
    assert_eq!(
        (ch["role"].as_str(), ch["strategy"].as_str()),
        (Some("stable"), Some("immediate")),
        "{st}"
    );
    assert_eq!(ch["last_check_ok"], false, "{st}");
    assert!(
        ch["last_check_message"]
            .as_str()
            .unwrap()
            .contains("refused"),
        "{st}"
    );
    assert_eq!(ch["staged"], "1.3.0", "{st}");
    assert!(ok(&fx, &["status"]).contains("channel:    http://127.0.0.1:"));

    let prom = std::fs::read_to_string(fx.path("tandem.prom")).unwrap();
    assert!(prom.contains("tandem_last_check_success 0\n"), "{prom}");
    assert!(prom.contains("tandem_check_failures_total 1\n"), "{prom}");
    assert!(prom.contains("tandem_installs_total 3\n"), "{prom}");
    assert!(prom.contains("tandem_fallbacks_total 1\n"), "{prom}");
}

#[test]
fn waves_pause_and_the_manual_strategy() {
    let (_d, r, srv) = publisher();
    let (fx, _env) = device(&r, &srv, "strategy = \"manual\"", PASS);
    // This device sits at the middle of the fleet.
    std::fs::create_dir_all(fx.path("state")).unwrap();
    std::fs::write(
        fx.path("state/channel.json"),
        "{\"schema\": 1, \"seed\": 5000}\n",
    )
    .unwrap();

    publish(&fx, &r, "1.1.0", &["--wave", "10@0", "--wave", "100@48"]);
    let c = check_json(&fx);
    assert_eq!(c["step"], "wait", "{c}");
    assert!(c["found"]["opens_at"].is_string(), "{c}");
    assert!(
        c["message"]
            .as_str()
            .unwrap()
            .contains("waits for this device's wave"),
        "{c}"
    );

    publish(&fx, &r, "1.0.5", &["--paused"]);
    assert_eq!(
        check_json(&fx)["step"],
        "wait",
        "a paused rollout does not start"
    );
    repo(&[
        "resume",
        r.to_str().unwrap(),
        "--channel",
        "stable",
        "os-1.0.5.tnd",
    ]);
    let c = check_json(&fx);
    assert_eq!(c["step"], "staged", "{c}");
    assert!(
        c["message"].as_str().unwrap().contains("`tandem apply`"),
        "{c}"
    );
    assert!(!fx.state().slot(B).armed, "manual: staged, not armed");
    let o = ok(&fx, &["apply", "--no-reboot"]);
    assert!(o.contains("armed slot group b with 1.0.5"), "{o}");
    assert!(fx.state().slot(B).armed);
}

#[test]
fn a_fleet_lock_group_of_one_reboots_one_host_at_a_time() {
    if !tools::have("etcd") {
        return tools::skip(
            "a_fleet_lock_group_of_one_reboots_one_host_at_a_time",
            "etcd (etcd-server)",
        );
    }
    let etcd = Etcd::start();
    let lock = FleetLock::start(&etcd, 1);
    let (_d, r, srv) = publisher();
    let strategy = |id: &str| {
        format!("strategy = \"fleet_lock\"\n[channel.fleet_lock]\nbase_url = \"{}\"\ngroup = \"web\"\nid = \"{id}\"\n", lock.url)
    };
    let (one, env1) = device(&r, &srv, &strategy("one"), PASS);
    let (two, env2) = device(&r, &srv, &strategy("two"), PASS);
    publish(&one, &r, "1.1.0", &[]);

    assert_eq!(check_json(&one)["step"], "reboot", "one gets the slot");
    let c = check_json(&two);
    assert_eq!(c["step"], "staged", "{c}");
    assert!(
        c["found"]["waiting_for"]
            .as_str()
            .unwrap()
            .contains("waiting for a FleetLock reboot slot"),
        "{c}"
    );
    assert!(!two.state().slot(B).armed, "two is staged but not armed");
    assert_eq!(
        two.state()
            .slot(B)
            .version
            .as_ref()
            .map(|v| v.to_string())
            .as_deref(),
        Some("1.1.0")
    );

    assert_eq!(reboot(&one, &env1), B);
    ok(&one, &["boot-check"]);
    let c = check_json(&two);
    assert_eq!(
        c["step"], "staged",
        "one has not said steady-state yet: {c}"
    );
    let c = check_json(&one);
    assert!(
        c["message"]
            .as_str()
            .unwrap()
            .contains("released the FleetLock slot"),
        "{c}"
    );
    assert_eq!(check_json(&two)["step"], "reboot", "two goes after one");
    assert_eq!(reboot(&two, &env2), B);
}

#[test]
fn a_bundle_elsewhere_is_pinned_by_the_channel() {
    let (_d, r, srv) = publisher();
    let (fx, _env) = device(&r, &srv, "strategy = \"manual\"", PASS);
    let img = pattern(150_000, 21);
    let b = fx.bundle(
        "os-1.1.0.tnd",
        "1.1.0",
        &[("rootfs", &img, Compression::Zstd)],
    );
    let other = fx.bundle(
        "os-1.2.0.tnd",
        "1.2.0",
        &[("rootfs", &img, Compression::Zstd)],
    );

    // A mirror serves another signed bundle under the name: refused, slot b untouched.
    let mirror = http::serve(std::fs::read(&other).unwrap(), vec![]);
    let args = [
        "add",
        r.to_str().unwrap(),
        "--channel",
        "stable",
        b.to_str().unwrap(),
        "--location",
        &mirror.url,
    ];
    repo(&args);
    let before = fx.snapshot();
    let o = tandem(&fx, &["check"]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("the channel's metadata"), "{}", text(&o));
    assert_eq!(fx.snapshot(), before);
    assert!(
        !r.join("repository/targets/stable").exists()
            || std::fs::read_dir(r.join("repository/targets/stable"))
                .unwrap()
                .next()
                .is_none(),
        "hashed, not copied"
    );

    // The right bytes there: taken.
    repo(&[
        "remove",
        r.to_str().unwrap(),
        "--channel",
        "stable",
        "os-1.1.0.tnd",
    ]);
    let good = http::serve(std::fs::read(&b).unwrap(), vec![]);
    let args = [
        "add",
        r.to_str().unwrap(),
        "--channel",
        "stable",
        b.to_str().unwrap(),
        "--location",
        &good.url,
    ];
    repo(&args);
    let c = check_json(&fx);
    assert_eq!(c["step"], "staged", "{c}");
    assert_eq!(&fx.slot(B, "rootfs")[..img.len()], &img[..]);
}

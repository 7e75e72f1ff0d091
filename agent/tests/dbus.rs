//! The D-Bus API against a real dbus-daemon (private bus, our shipped bus
//! policy included), driven by foreign clients: `busctl` calls, `gdbus
//! monitor` watches signals. Needs root (the policy lets only root own the
//! name) and the tools; a missing one fails the test when
//! TANDEM_TEST_REQUIRE_TOOLS=1 (CI) and skips it otherwise.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::http;
use common::*;
use tandem::bundle::manifest::Compression;
use tandem::slot::SlotGroup::{A, B};

const NAME: &str = "dev.tandem.Agent1";
const PATH: &str = "/dev/tandem/Agent1";

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// False (skip) when something needed is missing, unless CI requires it.
fn runnable(test: &str) -> bool {
    let mut missing: Vec<&str> = ["dbus-daemon", "busctl", "gdbus", "setpriv"]
        .into_iter()
        .filter(|t| !have(t))
        .collect();
    if !is_root() {
        missing.push("root");
    }
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var("TANDEM_TEST_REQUIRE_TOOLS").as_deref() != Ok("1"),
        "{test}: needs {missing:?} (TANDEM_TEST_REQUIRE_TOOLS=1)"
    );
    eprintln!("SKIP {test}: needs {missing:?}");
    false
}

fn dist(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("dist").join(rel)
}

/// A dbus-daemon with the system bus's default policy (deny method calls
/// and owning names) plus our shipped policy, and `tandem daemon` on it.
struct Bus {
    dir: tempfile::TempDir,
    address: String,
    children: Vec<Child>,
}

impl Bus {
    fn start(extra_policy: &str) -> Bus {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let sock = dir.path().join("bus");
        let conf = dir.path().join("bus.conf");
        std::fs::write(
            &conf,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={sock}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
  </policy>
  <include>{policy}</include>
  {extra_policy}
</busconfig>
"#,
                sock = sock.display(),
                policy = dist("dbus/dev.tandem.Agent1.conf").display(),
            ),
        )
        .unwrap();
        let daemon = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", conf.display()))
            .args(["--nofork", "--nopidfile"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let address = format!("unix:path={}", sock.display());
        let bus = Bus {
            dir,
            address,
            children: vec![daemon],
        };
        wait_for(Duration::from_secs(10), "the bus socket", || sock.exists());
        bus
    }

    /// Starts `tandem daemon` for the device in `fx` and waits for its name.
    fn serve(&mut self, fx: &Fx) {
        let log = std::fs::File::create(self.dir.path().join("daemon.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_tandem"))
            .arg("--config")
            .arg(fx.path("tandem.toml"))
            .arg("--root")
            .arg(fx.dir.path())
            .arg("daemon")
            .env("DBUS_SYSTEM_BUS_ADDRESS", &self.address)
            .env("TANDEM_LOG", "info")
            .stderr(log)
            .spawn()
            .unwrap();
        self.children.push(child);
        wait_for(Duration::from_secs(10), "the daemon's bus name", || {
            self.busctl(&["status", NAME]).status.success()
        });
    }

    fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    fn busctl(&self, args: &[&str]) -> Output {
        Command::new("busctl")
            .arg(format!("--address={}", self.address))
            .args(args)
            .output()
            .unwrap()
    }

    /// busctl as user nobody (65534), no groups.
    fn busctl_nobody(&self, args: &[&str]) -> Output {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "busctl"])
            .arg(format!("--address={}", self.address))
            .args(args)
            .output()
            .unwrap()
    }

    /// Calls a method of the daemon as `nobody`, allowing interactive
    /// authorization or not (busctl allows it unless told otherwise).
    fn call_as_nobody(&self, interactive: bool, member: &str, sig_args: &[&str]) -> Output {
        let flag = format!(
            "--allow-interactive-authorization={}",
            if interactive { "yes" } else { "no" }
        );
        let mut a = vec![flag.as_str(), "call", NAME, PATH, NAME, member];
        a.extend_from_slice(sig_args);
        self.busctl_nobody(&a)
    }

    /// `tandem ARGS` as `nobody` through this bus: the CLI's D-Bus client,
    /// which passes a local bundle to `InstallFile` as a descriptor it
    /// opened with nobody's rights.
    fn cli_as_nobody(&self, args: &[&str]) -> Output {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_tandem"))
            .args(["--root", "/nonexistent"])
            .args(args)
            .env("DBUS_SYSTEM_BUS_ADDRESS", &self.address)
            .output()
            .unwrap()
    }

    fn call(&self, member: &str, sig_args: &[&str]) -> Output {
        let mut a = vec!["call", NAME, PATH, NAME, member];
        a.extend_from_slice(sig_args);
        self.busctl(&a)
    }

    fn property(&self, prop: &str) -> String {
        let o = self.busctl(&["get-property", NAME, PATH, NAME, prop]);
        assert!(o.status.success(), "{}", text(&o));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    /// `gdbus monitor` on the daemon: every line it prints is collected.
    fn monitor(&mut self) -> Arc<Mutex<Vec<String>>> {
        let mut child = Command::new("gdbus")
            .args(["monitor", "--address", &self.address, "--dest", NAME])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().unwrap();
        let l2 = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                l2.lock().unwrap().push(line);
            }
        });
        self.children.push(child);
        // gdbus prints a first line once its match rules are in place.
        wait_for(Duration::from_secs(10), "gdbus monitor", || {
            !lines.lock().unwrap().is_empty()
        });
        lines
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        for c in self.children.iter_mut().rev() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn wait_for(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits for a `Completed` signal line and returns it.
fn completed(lines: &Mutex<Vec<String>>, bus: &Bus) -> String {
    let start = Instant::now();
    loop {
        if let Some(l) = lines
            .lock()
            .unwrap()
            .iter()
            .find(|l| l.contains(&format!("{NAME}.Completed")))
        {
            return l.clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no Completed signal; monitor: {:?}\ndaemon log:\n{}",
            lines.lock().unwrap(),
            bus.daemon_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The percents of the `Progress` changes the monitor saw, in order.
fn progress_percents(lines: &Mutex<Vec<String>>) -> Vec<(u32, String)> {
    lines
        .lock()
        .unwrap()
        .iter()
        .filter_map(|l| {
            let i = l.find("'Progress': <(uint32 ")?;
            let rest = &l[i + "'Progress': <(uint32 ".len()..];
            let (pct, rest) = rest.split_once(", '")?;
            let stage = rest.split('\'').next()?;
            Some((pct.parse().ok()?, stage.to_string()))
        })
        .collect()
}

fn device() -> Fx {
    let fx = Fx::new(&["rootfs"]);
    fx.write_config();
    fx
}

/// A device booted from a, and an update 1.1.0 (`u.tnd`) whose image is
/// `pattern(SLOT_SIZE, seed)`.
fn device_with_update(seed: u8) -> (Fx, Vec<u8>, PathBuf) {
    let fx = device();
    let img = pattern(SLOT_SIZE as usize, seed);
    let b = fx.bundle("u.tnd", "1.1.0", &[("rootfs", &img, Compression::None)]);
    (fx, img, b)
}

#[test]
fn install_reports_progress_and_completed_to_a_foreign_client() {
    if !runnable("install_reports_progress_and_completed_to_a_foreign_client") {
        return;
    }
    let (fx, img, b) = device_with_update(7);
    let server = http::serve(std::fs::read(&b).unwrap(), vec![]);
    let mut bus = Bus::start("");
    bus.serve(&fx);
    assert_eq!(bus.property("Operation"), "s \"idle\"");
    assert_eq!(bus.property("BootedSlot"), "s \"a\"");
    assert_eq!(bus.property("Version"), "u 3");
    let lines = bus.monitor();

    let o = bus.call("Install", &["sa{sv}", &server.url, "0"]);
    assert!(o.status.success(), "{}", text(&o));
    let done = completed(&lines, &bus);
    assert!(
        done.contains("('install', 'success', 'installed 1.1.0 into slot group b"),
        "{done}"
    );
    let seen = progress_percents(&lines);
    let writing: Vec<u32> = seen
        .iter()
        .filter(|(_, s)| s == "writing")
        .map(|(p, _)| *p)
        .collect();
    assert!(writing.len() >= 2, "progress never moved: {seen:?}");
    assert!(writing.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
    assert_eq!(seen.last().unwrap(), &(100, "done".to_string()), "{seen:?}");
    assert!(seen.iter().any(|(_, s)| s == "verified"), "{seen:?}");
    assert!(lines
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("'Operation': <'install'>")));

    assert_eq!(bus.property("Operation"), "s \"idle\"");
    assert_eq!(bus.property("LastError"), "s \"\"");
    assert_eq!(fx.slot(B, "rootfs"), img);
    let o = bus.call("GetStatus", &[]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let json = out
        .trim()
        .strip_prefix("s \"")
        .unwrap()
        .strip_suffix('"')
        .unwrap();
    let json = json.replace("\\\"", "\"").replace("\\n", "\n");
    let v: serde_json::Value =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    assert_eq!(v["status_version"], 1, "{v}");
    assert!(json.contains("\"1.1.0\""), "{json}");
}

/// A daemon on a private bus whose install is running: it has started
/// writing, and the server went silent 1 MiB in (for 3 s).
struct StalledInstall {
    fx: Fx,
    /// The device's slots before the install.
    before: Vec<(tandem::slot::SlotGroup, String, String)>,
    _server: http::Server,
    bus: Bus,
    /// The daemon's index in `bus.children`.
    daemon: usize,
    lines: Arc<Mutex<Vec<String>>>,
}

fn stalled_install(seed: u8) -> StalledInstall {
    let (fx, _, b) = device_with_update(seed);
    let before = fx.snapshot();
    let server = http::serve(
        std::fs::read(&b).unwrap(),
        vec![http::Fault::StallAfter(1 << 20, Duration::from_secs(3))],
    );
    let mut bus = Bus::start("");
    bus.serve(&fx);
    let daemon = bus.children.len() - 1;
    let lines = bus.monitor();
    let o = bus.call("Install", &["sa{sv}", &server.url, "0"]);
    assert!(o.status.success(), "{}", text(&o));
    wait_for(
        Duration::from_secs(10),
        "the install to start writing",
        || {
            progress_percents(&lines)
                .iter()
                .any(|(_, s)| s == "verified")
        },
    );
    StalledInstall {
        fx,
        before,
        _server: server,
        bus,
        daemon,
        lines,
    }
}

#[test]
fn stopping_the_daemon_cancels_its_install_and_records_the_outcome() {
    if !runnable("stopping_the_daemon_cancels_its_install_and_records_the_outcome") {
        return;
    }
    let StalledInstall {
        fx,
        before,
        _server,
        mut bus,
        daemon,
        lines,
    } = stalled_install(9);

    // What systemd does on `systemctl stop tandem`.
    let daemon = &mut bus.children[daemon];
    let kill = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let start = Instant::now();
    let status = loop {
        if let Some(st) = daemon.try_wait().unwrap() {
            break st;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the daemon did not stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}\n{}", bus.daemon_log());
    // The job ended and said so before the daemon went away.
    let done = completed(&lines, &bus);
    assert!(done.contains("'install', 'cancelled'"), "{done}");
    assert!(
        bus.daemon_log().contains("stop requested"),
        "{}",
        bus.daemon_log()
    );
    let st = fx.state();
    assert_eq!(st.slot(B).state.as_str(), "invalid");
    let op = st.last_operation.expect("the install is recorded");
    assert_eq!(op.result, tandem::state::OperationResult::Failed);
    assert!(op.error.unwrap_or_default().contains("cancelled"));
    assert_eq!(fx.snapshot()[0], before[0], "the booted group is untouched");
}

#[test]
fn one_job_at_a_time_and_cancel_leaves_the_target_invalid() {
    if !runnable("one_job_at_a_time_and_cancel_leaves_the_target_invalid") {
        return;
    }
    let StalledInstall {
        fx,
        before,
        _server: server,
        bus,
        lines,
        ..
    } = stalled_install(9);
    assert_eq!(bus.property("Operation"), "s \"install\"");

    let second = bus.call("Install", &["sa{sv}", &server.url, "0"]);
    assert!(!second.status.success());
    assert!(
        text(&second).contains("another operation is running: install"),
        "{}",
        text(&second)
    );
    let mb = bus.call("MarkGood", &[]);
    assert!(
        text(&mb).contains("another operation is running"),
        "{}",
        text(&mb)
    );

    let o = bus.call("Cancel", &[]);
    assert!(o.status.success(), "{}", text(&o));
    let done = completed(&lines, &bus);
    assert!(
        done.contains("('install', 'cancelled', 'cancelled on request; slot b left invalid')"),
        "{done}"
    );
    assert_eq!(bus.property("Operation"), "s \"idle\"");
    assert!(bus.property("LastError").contains("cancelled"));
    let st = fx.state();
    assert_eq!(st.slot(B).state.as_str(), "invalid");
    assert_eq!(st.slot(B).version, None);
    // The booted group was never written.
    assert_eq!(fx.snapshot()[0], before[0]);
    assert_eq!(fx.slot(A, "rootfs"), pattern(SLOT_SIZE as usize, 0xA0));
    // Nothing left to cancel now.
    let o = bus.call("Cancel", &[]);
    assert!(text(&o).contains("nothing to cancel"), "{}", text(&o));
}

#[test]
fn other_users_may_read_but_not_change_anything() {
    if !runnable("other_users_may_read_but_not_change_anything") {
        return;
    }
    let (fx, _, b) = device_with_update(3);
    std::fs::set_permissions(&b, std::fs::Permissions::from_mode(0o644)).unwrap();
    let before = fx.snapshot();
    let mut bus = Bus::start("");
    bus.serve(&fx);
    let bundle = b.display().to_string();

    // A path is opened by the daemon only for root: as root it could read
    // (and quote in its errors) what nobody may not.
    let o = bus.call_as_nobody(false, "Install", &["sa{sv}", &bundle, "0"]);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(t.contains("opens a path only for root"), "{t}");
    let o = bus.cli_as_nobody(&["install", &bundle]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(9), "{t}");
    assert!(t.contains("uid 65534 may not install"), "{t}");
    // Status, text or JSON, comes from the daemon: the store is root's.
    let o = bus.cli_as_nobody(&["status"]);
    assert!(
        o.status.success() && text(&o).contains("booted:     a"),
        "{}",
        text(&o)
    );
    // A file nobody may read never reaches the daemon: the client opens
    // it, with nobody's rights, and fails (6: the source is unreadable).
    let secret = fx.path("secret.tnd");
    std::fs::copy(&b, &secret).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let o = bus.cli_as_nobody(&["install", &secret.display().to_string()]);
    assert_eq!(o.status.code(), Some(6), "{}", text(&o));
    assert!(text(&o).contains("Permission denied"), "{}", text(&o));
    for m in ["MarkGood", "Rollback", "Cancel"] {
        let o = bus.call_as_nobody(false, m, &[]);
        assert!(!o.status.success(), "{m}");
        assert!(text(&o).contains("uid 65534 may not"), "{m}: {}", text(&o));
    }
    let o = bus.call_as_nobody(false, "MarkBad", &["s", "b"]);
    assert!(text(&o).contains("uid 65534 may not"), "{}", text(&o));
    // Properties.Set is not open to others by the bus policy itself.
    let o = bus.busctl_nobody(&["set-property", NAME, PATH, NAME, "Operation", "s", "x"]);
    assert!(!o.status.success());
    assert_eq!(fx.snapshot(), before);
    assert_eq!(fx.state().slot(B).version, None);

    let o = bus.call_as_nobody(false, "GetStatus", &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("status_version"), "{}", text(&o));
    let o = bus.busctl_nobody(&["get-property", NAME, PATH, NAME, "BootedSlot"]);
    assert!(o.status.success(), "{}", text(&o));
    // Nobody may own the daemon's name either.
    let o = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_tandem"))
        .arg("--config")
        .arg(fx.path("tandem.toml"))
        .arg("daemon")
        .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        text(&o).contains("cannot serve dev.tandem.Agent1"),
        "{}",
        text(&o)
    );
}

fn cli(bus: &Bus, args: &[&str]) -> Output {
    // No usable configuration here: only the daemon can do the work.
    Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(["--root", "/nonexistent"])
        .args(args)
        .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
        .output()
        .unwrap()
}

#[test]
fn the_cli_goes_through_the_daemon_when_it_runs() {
    if !runnable("the_cli_goes_through_the_daemon_when_it_runs") {
        return;
    }
    let fx = device();
    let img = pattern(SLOT_SIZE as usize, 5);
    let good = fx.bundle("good.tnd", "1.1.0", &[("rootfs", &img, Compression::None)]);
    let mut bad = std::fs::read(&good).unwrap();
    let n = bad.len();
    bad[n - 2048] ^= 1; // a payload byte
    std::fs::write(fx.path("bad.tnd"), &bad).unwrap();
    let mut bus = Bus::start("");
    bus.serve(&fx);

    let o = cli(
        &bus,
        &["install", &fx.path("bad.tnd").display().to_string()],
    );
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    let refusal = "chunk 511 (image bytes 4186112..4194304) does not match the chunk index";
    assert!(text(&o).contains(refusal), "{}", text(&o));
    assert!(bus.property("LastError").contains(refusal));

    let o = cli(&bus, &["install", &good.display().to_string()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("installed 1.1.0 into slot group b"), "{t}");
    assert!(t.contains("verified 1.1.0"), "{t}");
    assert_eq!(fx.slot(B, "rootfs"), img);

    let o = cli(&bus, &["status", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("\"1.1.0\""), "{}", text(&o));
    // Rollback to an untried group is refused with the slot-state code.
    let o = cli(&bus, &["rollback"]);
    assert_eq!(o.status.code(), Some(7), "{}", text(&o));
    let o = cli(&bus, &["cancel"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("nothing to cancel"), "{}", text(&o));
    // --direct ignores the daemon (and here finds no configuration).
    let o = cli(&bus, &["--direct", "status", "--json"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
}

/// polkit's Authority as the daemon sees it on the bus: same name, path,
/// method and signatures (`CheckAuthorization((sa{sv}) s a{ss} u s) ->
/// ((bba{ss}))`), answering per action: install yes, manage no.
struct FakeAuthority {
    asked: std::sync::Arc<Mutex<Vec<(String, String, u32)>>>,
    details: std::sync::Arc<Mutex<Vec<std::collections::HashMap<String, String>>>>,
}

#[derive(serde::Serialize, zbus::zvariant::Type)]
struct AuthResult(bool, bool, std::collections::HashMap<String, String>);

#[zbus::interface(name = "org.freedesktop.PolicyKit1.Authority")]
impl FakeAuthority {
    fn check_authorization(
        &self,
        subject: (
            String,
            std::collections::HashMap<String, zbus::zvariant::OwnedValue>,
        ),
        action_id: String,
        details: std::collections::HashMap<String, String>,
        flags: u32,
        _cancellation_id: String,
    ) -> AuthResult {
        self.details.lock().unwrap().push(details);
        let name = subject
            .1
            .get("name")
            .and_then(|v| String::try_from(v.try_clone().ok()?).ok())
            .unwrap_or_default();
        self.asked.lock().unwrap().push((
            format!("{}:{name}", subject.0),
            action_id.clone(),
            flags,
        ));
        AuthResult(
            action_id == "dev.tandem.install",
            false,
            std::collections::HashMap::new(),
        )
    }
}

/// The daemon never opens what is not a regular file, even for root: a
/// FIFO would block the job beyond Cancel's reach, a device such as
/// /dev/watchdog would act on being opened.
#[test]
fn special_files_are_refused_by_the_daemon() {
    if !runnable("special_files_are_refused_by_the_daemon") {
        return;
    }
    let (fx, _, _) = device_with_update(4);
    let fifo = fx.path("bundle.fifo");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let mut bus = Bus::start("");
    bus.serve(&fx);
    let lines = bus.monitor();
    let o = bus.call("Install", &["sa{sv}", &fifo.display().to_string(), "0"]);
    assert!(o.status.success(), "{}", text(&o));
    let done = completed(&lines, &bus);
    assert!(
        done.contains("'unreachable'") && done.contains("is a FIFO, not a regular file"),
        "{done}"
    );
    assert_eq!(bus.property("Operation"), "s \"idle\"");
    let o = bus.call("Install", &["sa{sv}", "ftp://registry/x.tnd", "0"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("unsupported source"), "{}", text(&o));
}

#[test]
fn polkit_decides_for_other_users() {
    if !runnable("polkit_decides_for_other_users") {
        return;
    }
    let (fx, img, b) = device_with_update(11);
    std::fs::set_permissions(fx.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&b, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut bus = Bus::start(
        r#"<policy user="root"><allow own="org.freedesktop.PolicyKit1"/></policy>
  <policy context="default"><allow send_destination="org.freedesktop.PolicyKit1"/></policy>"#,
    );
    let asked = Arc::new(Mutex::new(Vec::new()));
    let details = Arc::new(Mutex::new(Vec::new()));
    let _polkit = zbus::blocking::connection::Builder::address(bus.address.as_str())
        .unwrap()
        .name("org.freedesktop.PolicyKit1")
        .unwrap()
        .serve_at(
            "/org/freedesktop/PolicyKit1/Authority",
            FakeAuthority {
                asked: asked.clone(),
                details: details.clone(),
            },
        )
        .unwrap()
        .build()
        .unwrap();
    bus.serve(&fx);
    let lines = bus.monitor();

    // polkit says yes to installing: nobody's install runs, from the file
    // nobody opened (InstallFile).
    let bundle = b.display().to_string();
    let o = bus.cli_as_nobody(&["install", &bundle]);
    assert!(o.status.success(), "{}", text(&o));
    let done = completed(&lines, &bus);
    assert!(done.contains("'success'"), "{done}");
    assert_eq!(fx.slot(B, "rootfs"), img);
    // ...and no to committing.
    let o = bus.call_as_nobody(false, "MarkGood", &[]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("uid 65534 may not commit, mark bad, arm or roll back slots: polkit denied dev.tandem.manage"),
        "{}",
        text(&o)
    );
    // The interactive flag reaches polkit only when the caller sets it.
    let o = bus.call_as_nobody(true, "Rollback", &[]);
    assert!(!o.status.success());
    // Overriding a check is its own action, which this polkit denies.
    let o = bus.cli_as_nobody(&["install", "--force", &bundle]);
    assert_eq!(o.status.code(), Some(9), "{}", text(&o));
    assert!(
        text(&o).contains("polkit denied dev.tandem.force"),
        "{}",
        text(&o)
    );
    let asked = asked.lock().unwrap().clone();
    let details = details.lock().unwrap().clone();
    assert_eq!(asked.len(), 5, "{asked:?}");
    assert!(asked[0].0.starts_with("system-bus-name::1."), "{asked:?}");
    // Asked at the call, with what and how, and again once the bundle was
    // verified, now with its version.
    assert_eq!((asked[0].1.as_str(), asked[0].2), ("dev.tandem.install", 0));
    assert_eq!((asked[1].1.as_str(), asked[1].2), ("dev.tandem.install", 0));
    assert_eq!(details[0]["source"], b.display().to_string());
    assert_eq!(details[0]["force"], "false");
    assert!(!details[0].contains_key("version"), "{details:?}");
    assert_eq!(details[1]["version"], "1.1.0");
    assert_eq!((asked[2].1.as_str(), asked[2].2), ("dev.tandem.manage", 0));
    assert_eq!((asked[3].1.as_str(), asked[3].2), ("dev.tandem.manage", 1));
    assert_eq!((asked[4].1.as_str(), asked[4].2), ("dev.tandem.force", 0));
    assert_eq!(details[4]["force"], "true");
    // Root is never asked about.
    let o = bus.call("MarkBad", &["s", "b"]);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn the_daemon_polls_its_hawkbit_server_and_installs_as_a_job() {
    if !runnable("the_daemon_polls_its_hawkbit_server_and_installs_as_a_job") {
        return;
    }
    let Some(venv) = common::goosebit::venv() else {
        return tools::skip(
            "the_daemon_polls_its_hawkbit_server_and_installs_as_a_job",
            "gooseBit (TANDEM_GOOSEBIT_VENV)",
        );
    };
    let g = common::goosebit::GooseBit::start(&venv);
    let mut fx = Fx::new(&["rootfs"]);
    let env = fx.path("grubenv");
    tandem::boot::grub::create(&env).unwrap();
    fx.extra_config = format!(
        "[boot]\nbackend = \"grub\"\ngrubenv = \"{}\"\n[hawkbit]\nserver = \"{}\"\ncontroller_id = \"dev-daemon\"\nreboot = false\n",
        env.display(),
        g.url
    );
    fx.write_config();
    let img = pattern(200_000, 3);
    let b = fx.bundle("u.tnd", "1.1.0", &[("rootfs", &img, Compression::Zstd)]);
    let mut bus = Bus::start("");
    bus.serve(&fx);
    let lines = bus.monitor();
    wait_for(Duration::from_secs(20), "the device's registration", || {
        g.device("dev-daemon")
            .is_some_and(|d| d["last_state"] == "Registered")
    });
    let sw = g.upload(&b).unwrap();
    g.rollout(sw);
    // gooseBit asks a new device to poll again in 10 s.
    let done = completed(&lines, &bus);
    assert!(
        done.contains("('install', 'success', 'installed 1.1.0 into slot group b"),
        "{done}\n{}",
        bus.daemon_log()
    );
    assert!(
        progress_percents(&lines)
            .iter()
            .any(|(_, s)| s == "verified"),
        "the fleet install publishes progress like a D-Bus one"
    );
    assert_eq!(fx.slot(B, "rootfs")[..img.len()], img[..]);
    assert_eq!(g.device("dev-daemon").unwrap()["last_state"], "Running");
    assert!(g.device_log("dev-daemon").contains("waiting for a reboot"));
    assert_eq!(bus.property("Operation"), "s \"idle\"");
}

#[test]
fn the_daemon_checks_its_channel_and_check_asks_it_now() {
    if !runnable("the_daemon_checks_its_channel_and_check_asks_it_now") {
        return;
    }
    let (_d, r, srv) = common::channel::publisher();
    let mut fx = Fx::new(&["rootfs"]);
    let env = fx.path("grubenv");
    tandem::boot::grub::create(&env).unwrap();
    common::channel::ship_root(&mut fx, &r);
    // Manual: the daemon stages, and never reboots this test machine.
    fx.extra_config = format!(
        "[boot]\nbackend = \"grub\"\ngrubenv = \"{}\"\n[channel]\nurl = \"{}\"\nrole = \"stable\"\nstrategy = \"manual\"\ninterval_secs = 3600\n",
        env.display(),
        srv.url
    );
    fx.write_config();
    let mut bus = Bus::start("");
    bus.serve(&fx);
    let lines = bus.monitor();
    wait_for(Duration::from_secs(20), "the first check at start", || {
        fx.path("state/channel.json").exists()
    });
    let img = pattern(200_000, 4);
    let b = fx.bundle(
        "os-1.1.0.tnd",
        "1.1.0",
        &[("rootfs", &img, Compression::Zstd)],
    );
    common::channel::repo(&[
        "add",
        r.to_str().unwrap(),
        "--channel",
        "stable",
        b.to_str().unwrap(),
    ]);
    let o = bus.call("Check", &[]);
    assert!(o.status.success(), "{}", text(&o));
    let done = completed(&lines, &bus);
    assert!(
        done.contains("('install', 'success', 'installed 1.1.0 into slot group b")
            && done.contains("staged, not armed"),
        "{done}\n{}",
        bus.daemon_log()
    );
    assert_eq!(fx.slot(B, "rootfs")[..img.len()], img[..]);
    assert!(!fx.state().slot(B).armed, "manual: staged only");
    assert_eq!(bus.property("Version"), "u 3");
}

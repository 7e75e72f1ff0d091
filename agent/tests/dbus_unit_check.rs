//! The `unit` health check and the logind reboot request against a real dbus-daemon on which this test
//! serves a small stand-in for systemd's Manager and Unit objects and logind's Manager (the
//! same interfaces, properties and method). Skipped without dbus-daemon
//! unless TANDEM_TEST_REQUIRE_TOOLS=1 (CI).

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tandem::sys::systemd::check_unit;
use zbus::zvariant::OwnedObjectPath;

type States = Arc<Mutex<HashMap<String, (String, String)>>>;

struct Manager {
    states: States,
}

fn unit_path(name: &str) -> String {
    let esc: String = name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("_{b:02x}")
            }
        })
        .collect();
    format!("/org/freedesktop/systemd1/unit/{esc}")
}

#[zbus::interface(name = "org.freedesktop.systemd1.Manager")]
impl Manager {
    fn load_unit(&self, name: String) -> OwnedObjectPath {
        // systemd answers every name with an object; unknown ones have
        // LoadState "not-found".
        self.states
            .lock()
            .unwrap()
            .entry(name.clone())
            .or_insert(("inactive".into(), "dead".into()));
        OwnedObjectPath::try_from(unit_path(&name)).unwrap()
    }
}

struct Unit {
    name: String,
    states: States,
    known: bool,
}

#[zbus::interface(name = "org.freedesktop.systemd1.Unit")]
impl Unit {
    #[zbus(property)]
    fn load_state(&self) -> String {
        if self.known { "loaded" } else { "not-found" }.into()
    }
    #[zbus(property)]
    fn active_state(&self) -> String {
        self.states.lock().unwrap()[&self.name].0.clone()
    }
    #[zbus(property)]
    fn sub_state(&self) -> String {
        self.states.lock().unwrap()[&self.name].1.clone()
    }
}

struct Login {
    reboots: Arc<Mutex<Vec<bool>>>,
}

#[zbus::interface(name = "org.freedesktop.login1.Manager")]
impl Login {
    fn reboot(&self, interactive: bool) {
        self.reboots.lock().unwrap().push(interactive);
    }
}

struct Daemon(Child);
impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn unit_check_and_reboot_ask_systemd_over_dbus() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("bus");
    let conf = dir.path().join("bus.conf");
    std::fs::write(
        &conf,
        format!(
            r#"<busconfig><type>system</type><listen>unix:path={}</listen><auth>EXTERNAL</auth>
<policy context="default"><allow user="*"/><allow own="*"/><allow send_destination="*" eavesdrop="true"/><allow eavesdrop="true"/></policy></busconfig>"#,
            sock.display()
        ),
    )
    .unwrap();
    let _bus = match Command::new("dbus-daemon")
        .arg(format!("--config-file={}", conf.display()))
        .args(["--nofork", "--nopidfile"])
        .stdout(Stdio::null())
        .spawn()
    {
        Ok(c) => Daemon(c),
        Err(e) => {
            assert!(
                std::env::var("TANDEM_TEST_REQUIRE_TOOLS").as_deref() != Ok("1"),
                "dbus-daemon is required (TANDEM_TEST_REQUIRE_TOOLS=1): {e}"
            );
            eprintln!("SKIP: no dbus-daemon ({e})");
            return;
        }
    };
    let start = Instant::now();
    while !sock.exists() {
        assert!(start.elapsed() < Duration::from_secs(10), "no bus socket");
        std::thread::sleep(Duration::from_millis(20));
    }
    let address = format!("unix:path={}", sock.display());
    // This test binary holds only this test: the variable is ours alone.
    std::env::set_var("DBUS_SYSTEM_BUS_ADDRESS", &address);

    let states: States = Arc::new(Mutex::new(HashMap::new()));
    let mut table = states.lock().unwrap();
    for (name, active, sub) in [
        ("app.service", "active", "running"),
        ("broken.service", "failed", "failed"),
        ("slow.service", "activating", "start"),
        ("never.service", "inactive", "dead"),
    ] {
        table.insert(name.into(), (active.into(), sub.into()));
    }
    drop(table);
    let mut builder = zbus::blocking::connection::Builder::address(address.as_str())
        .unwrap()
        .name("org.freedesktop.systemd1")
        .unwrap()
        .serve_at(
            "/org/freedesktop/systemd1",
            Manager {
                states: states.clone(),
            },
        )
        .unwrap();
    for name in [
        "app.service",
        "broken.service",
        "slow.service",
        "never.service",
        "missing.service",
    ] {
        builder = builder
            .serve_at(
                unit_path(name),
                Unit {
                    name: name.into(),
                    states: states.clone(),
                    known: name != "missing.service",
                },
            )
            .unwrap();
    }
    let _systemd = builder.build().unwrap();
    let reboots = Arc::new(Mutex::new(Vec::new()));
    let _logind = zbus::blocking::connection::Builder::address(address.as_str())
        .unwrap()
        .name("org.freedesktop.login1")
        .unwrap()
        .serve_at(
            "/org/freedesktop/login1",
            Login {
                reboots: reboots.clone(),
            },
        )
        .unwrap()
        .build()
        .unwrap();

    // Reboot goes to logind, non-interactively.
    tandem::sys::systemd::logind_reboot().unwrap();
    assert_eq!(*reboots.lock().unwrap(), vec![false]);

    let mut ticks = 0;
    let mut tick = || ticks += 1;
    let t = Duration::from_secs(3);
    assert_eq!(
        check_unit("app.service", t, &mut tick),
        Ok("app.service is active (running)".into())
    );
    let e = check_unit("broken.service", t, &mut tick).unwrap_err();
    assert_eq!(e, "unit broken.service is failed (failed)");
    let e = check_unit("missing.service", t, &mut tick).unwrap_err();
    assert!(e.contains("not-found"), "{e}");

    // A unit still starting is waited for, petting the watchdog meanwhile.
    let s2 = states.clone();
    let flip = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(800));
        s2.lock()
            .unwrap()
            .insert("slow.service".into(), ("active".into(), "running".into()));
    });
    let started = Instant::now();
    assert_eq!(
        check_unit("slow.service", Duration::from_secs(10), &mut tick),
        Ok("slow.service is active (running)".into())
    );
    assert!(started.elapsed() >= Duration::from_millis(700));
    flip.join().unwrap();
    assert!(ticks >= 2, "the watchdog tick ran {ticks} times");

    // One that never starts fails at the timeout, naming its state.
    let started = Instant::now();
    let e = check_unit("never.service", Duration::from_secs(1), &mut || {}).unwrap_err();
    assert_eq!(
        e,
        "unit never.service is inactive (dead), not active after 1 s"
    );
    assert!(started.elapsed() >= Duration::from_secs(1));

    // And through the configured check, as boot-check runs it.
    let raw: tandem::health::RawHealth =
        toml::from_str("[[check]]\nunit = \"app.service\"\ntimeout_secs = 5\n").unwrap();
    let h = tandem::health::validate(raw).unwrap();
    assert_eq!(h.checks[0].name, "app.service");
    assert!(tandem::health::checks::run(&h.checks[0], Duration::from_secs(5), &mut || {}).is_ok());
}

//! Talking to systemd and logind over the system bus: the `unit` health
//! check and the preferred way to reboot.

use std::time::{Duration, Instant};

use zbus::blocking::Connection;
use zbus::proxy::CacheProperties;
use zbus::zvariant::OwnedObjectPath;

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1"
)]
trait Manager {
    fn load_unit(&self, name: &str) -> zbus::Result<OwnedObjectPath>;
}

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Unit",
    default_service = "org.freedesktop.systemd1"
)]
trait Unit {
    #[zbus(property)]
    fn load_state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn active_state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn sub_state(&self) -> zbus::Result<String>;
}

#[zbus::proxy(
    interface = "org.freedesktop.login1.Manager",
    default_service = "org.freedesktop.login1",
    default_path = "/org/freedesktop/login1"
)]
trait Login {
    fn reboot(&self, interactive: bool) -> zbus::Result<()>;
    #[allow(clippy::type_complexity)]
    fn list_sessions(&self) -> zbus::Result<Vec<(String, u32, String, String, OwnedObjectPath)>>;
}

/// How often a unit that is not active yet is asked again.
const POLL: Duration = Duration::from_millis(250);

/// The `unit` health check: passes once `unit` is `active`, fails at once
/// when it is `failed` or not found, and otherwise (inactive, activating,
/// reloading) asks again until `timeout`. `tick` runs between polls (the
/// watchdog is petted there).
pub fn check_unit(unit: &str, timeout: Duration, tick: &mut dyn FnMut()) -> Result<String, String> {
    let conn = Connection::system().map_err(|e| format!("unit {unit}: no system bus: {e}"))?;
    let manager = ManagerProxyBlocking::new(&conn)
        .map_err(|e| format!("unit {unit}: cannot reach systemd: {e}"))?;
    let path = manager
        .load_unit(unit)
        .map_err(|e| format!("unit {unit}: systemd cannot load it: {e}"))?;
    let proxy = UnitProxyBlocking::builder(&conn)
        .path(path)
        .and_then(|b| b.cache_properties(CacheProperties::No).build())
        .map_err(|e| format!("unit {unit}: {e}"))?;
    let read = |p: &UnitProxyBlocking<'_>| -> Result<(String, String, String), String> {
        let err = |e: zbus::Error| format!("unit {unit}: cannot read its state: {e}");
        Ok((
            p.load_state().map_err(err)?,
            p.active_state().map_err(err)?,
            p.sub_state().map_err(err)?,
        ))
    };
    let start = Instant::now();
    loop {
        let (load, active, sub) = read(&proxy)?;
        if load == "not-found" || load == "bad-setting" || load == "error" || load == "masked" {
            return Err(format!("unit {unit}: load state {load}"));
        }
        match active.as_str() {
            "active" => return Ok(format!("{unit} is active ({sub})")),
            "failed" => return Err(format!("unit {unit} is failed ({sub})")),
            _ => {}
        }
        if start.elapsed() >= timeout {
            return Err(format!(
                "unit {unit} is {active} ({sub}), not active after {} s",
                timeout.as_secs()
            ));
        }
        tick();
        std::thread::sleep(POLL);
    }
}

/// Asks logind to reboot (non-interactively). An error means logind is not
/// there or refused; the caller falls back to systemctl or reboot(2).
/// The user names of the sessions logind knows (logged-in users), or an
/// error when logind is not there.
pub fn logind_sessions() -> zbus::Result<Vec<String>> {
    let conn = Connection::system()?;
    Ok(LoginProxyBlocking::new(&conn)?
        .list_sessions()?
        .into_iter()
        .map(|(_, _, user, _, _)| user)
        .collect())
}

pub fn logind_reboot() -> zbus::Result<()> {
    let conn = Connection::system()?;
    LoginProxyBlocking::new(&conn)?.reboot(false)
}

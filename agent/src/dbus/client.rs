//! The CLI's side: when the daemon runs (or can be activated), commands
//! that change state go through it, so they are authorized, serialized
//! with its jobs, and visible to other clients.

use std::collections::HashMap;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use zbus::blocking::{Connection, MessageIterator};
use zbus::zvariant::{OwnedValue, Value};

use super::service::InstallOptions;
use super::{BUS_NAME, INTERFACE, OBJECT_PATH};
use crate::install::Snapshot;
use crate::ops::{Error, Outcome};

#[zbus::proxy(
    interface = "dev.tandem.Agent1",
    default_service = "dev.tandem.Agent1",
    default_path = "/dev/tandem/Agent1"
)]
trait Agent1 {
    fn install(&self, source: &str, options: HashMap<&str, Value<'_>>) -> zbus::Result<()>;
    fn install_file(
        &self,
        fd: zbus::zvariant::Fd<'_>,
        options: HashMap<&str, Value<'_>>,
    ) -> zbus::Result<()>;
    fn cancel(&self) -> zbus::Result<()>;
    fn mark_good(&self) -> zbus::Result<String>;
    fn mark_bad(&self, slot: &str) -> zbus::Result<String>;
    fn mark_bad_with(&self, slot: &str, options: HashMap<&str, Value<'_>>) -> zbus::Result<String>;
    fn arm(&self) -> zbus::Result<String>;
    fn rollback(&self) -> zbus::Result<String>;
    fn get_status(&self) -> zbus::Result<String>;
}

/// A connection to the system bus on which the daemon runs or can be
/// activated; `None` means: work directly. `TANDEM_NO_DAEMON=1` (or the
/// CLI's `--direct`) forces that.
pub fn connect() -> Option<Connection> {
    if std::env::var_os("TANDEM_NO_DAEMON").is_some_and(|v| !v.is_empty() && v != "0") {
        return None;
    }
    if std::env::var_os("DBUS_SYSTEM_BUS_ADDRESS").is_none()
        && !Path::new("/run/dbus/system_bus_socket").exists()
    {
        return None;
    }
    let conn = match Connection::system() {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!("no system bus ({e}); working directly");
            return None;
        }
    };
    let bus = zbus::blocking::fdo::DBusProxy::new(&conn).ok()?;
    let name = zbus::names::BusName::try_from(BUS_NAME).ok()?;
    if bus.name_has_owner(name).unwrap_or(false) {
        return Some(conn);
    }
    let activatable = bus
        .list_activatable_names()
        .map(|names| names.iter().any(|n| n.as_str() == BUS_NAME))
        .unwrap_or(false);
    activatable.then_some(conn)
}

fn call_error(e: zbus::Error) -> Error {
    match &e {
        zbus::Error::MethodError(name, msg, _) => Error::Daemon {
            outcome: Outcome::from_error_name(name.as_str()),
            message: msg.clone().unwrap_or_else(|| name.to_string()),
        },
        _ => Error::Other(format!(
            "talking to the tandem daemon: {e} (`tandem --direct …` works without it)"
        )),
    }
}

fn proxy(conn: &Connection) -> Result<Agent1ProxyBlocking<'_>, Error> {
    Agent1ProxyBlocking::new(conn).map_err(call_error)
}

pub fn status(conn: &Connection) -> Result<String, Error> {
    proxy(conn)?.get_status().map_err(call_error)
}

pub fn mark_good(conn: &Connection) -> Result<String, Error> {
    proxy(conn)?.mark_good().map_err(call_error)
}

pub fn mark_bad(
    conn: &Connection,
    slot: Option<crate::slot::SlotGroup>,
    force: bool,
) -> Result<String, Error> {
    let slot = slot.map(|s| s.to_string()).unwrap_or_default();
    if force {
        let options = HashMap::from([("force", Value::from(true))]);
        proxy(conn)?
            .mark_bad_with(&slot, options)
            .map_err(call_error)
    } else {
        proxy(conn)?.mark_bad(&slot).map_err(call_error)
    }
}

pub fn arm(conn: &Connection) -> Result<String, Error> {
    proxy(conn)?.arm().map_err(call_error)
}

pub fn rollback(conn: &Connection) -> Result<String, Error> {
    proxy(conn)?.rollback().map_err(call_error)
}

pub fn cancel(conn: &Connection) -> Result<(), Error> {
    proxy(conn)?.cancel().map_err(call_error)
}

enum Event {
    Progress(Snapshot),
    Completed { result: String, message: String },
}

/// Decodes one signal from the daemon.
fn event(msg: &zbus::Message) -> Option<Event> {
    let h = msg.header();
    match h.member()?.as_str() {
        "PropertiesChanged" => {
            let (iface, changed, _): (String, HashMap<String, OwnedValue>, Vec<String>) =
                msg.body().deserialize().ok()?;
            if iface != INTERFACE {
                return None;
            }
            let v = changed.get("Progress")?;
            let (percent, stage, message): (u32, String, String) =
                v.try_clone().ok()?.try_into().ok()?;
            Some(Event::Progress(Snapshot {
                percent,
                stage,
                message,
            }))
        }
        "Completed" => {
            let (op, result, message): (String, String, String) = msg.body().deserialize().ok()?;
            (op == "install").then_some(Event::Completed { result, message })
        }
        _ => None,
    }
}

/// Installs through the daemon, showing its progress, until `Completed`.
pub fn install(
    conn: &Connection,
    source: &str,
    opts: &InstallOptions,
    show: &mut dyn FnMut(&Snapshot),
) -> Result<String, Error> {
    // A local file is opened here, with the caller's own rights, and
    // passed as a descriptor: the daemon never opens a user's path.
    let local = match crate::fetch::Source::parse(source)? {
        crate::fetch::Source::File(p) => {
            let abs =
                std::path::absolute(&p).map_err(|e| Error::Usage(format!("{source}: {e}")))?;
            let file = crate::sys::open_regular(&abs, true).map_err(|e| match e {
                crate::sys::OpenRegularError::Kind(kind) => crate::fetch::FetchError::NotRegular {
                    path: abs.clone(),
                    kind,
                },
                crate::sys::OpenRegularError::Io(source) => crate::fetch::FetchError::File {
                    path: abs.clone(),
                    source,
                },
            })?;
            Some((file, abs.display().to_string()))
        }
        crate::fetch::Source::Http(_) | crate::fetch::Source::Oci(_) => None,
    };
    // Listen before calling, so no signal is missed.
    let rule = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .sender(BUS_NAME)
        .and_then(|b| b.path(OBJECT_PATH))
        .map(|b| b.build())
        .map_err(call_error)?;
    let signals = MessageIterator::for_match_rule(rule, conn, Some(256)).map_err(call_error)?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for m in signals {
            let Ok(m) = m else { break };
            if let Some(ev) = event(&m) {
                if tx.send(ev).is_err() {
                    break;
                }
            }
        }
    });
    let mut options = HashMap::from([
        ("allow-downgrade", Value::from(opts.allow_downgrade)),
        ("force", Value::from(opts.force)),
        ("reboot", Value::from(opts.reboot)),
    ]);
    let p = proxy(conn)?;
    match &local {
        Some((file, name)) => {
            use std::os::fd::AsFd;
            options.insert("name", Value::from(name.as_str()));
            p.install_file(zbus::zvariant::Fd::from(file.as_fd()), options)
                .map_err(call_error)?
        }
        None => p.install(source, options).map_err(call_error)?,
    }
    let bus = zbus::blocking::fdo::DBusProxy::new(conn).map_err(call_error)?;
    loop {
        match rx.recv_timeout(Duration::from_secs(5)) {
            Ok(Event::Progress(s)) => show(&s),
            Ok(Event::Completed { result, message }) => {
                return match Outcome::from_result_name(&result) {
                    Outcome::Success => Ok(message),
                    outcome => Err(Error::Daemon { outcome, message }),
                };
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let name = zbus::names::BusName::try_from(BUS_NAME).expect("valid name");
                if !bus.name_has_owner(name).unwrap_or(false) {
                    return Err(Error::Other(
                        "the tandem daemon went away during the install; see its journal and `tandem status`".into(),
                    ));
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(Error::Other(
                    "lost the connection to the tandem daemon".into(),
                ))
            }
        }
    }
}

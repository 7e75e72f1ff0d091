//! Who may call what. Reading (properties, GetStatus) is open to anyone the
//! bus policy lets through. Install, Cancel, MarkGood, MarkBad, Arm and
//! Rollback need uid 0, or polkit's yes for the method's action (the
//! shipped rules grant `dev.tandem.install` and `dev.tandem.manage` to the
//! `tandem` group; `dev.tandem.force`, for overriding a safety check, needs
//! an administrator). Without polkit on the bus only root may change
//! anything.

use zbus::message::{Flags, Header};
use zbus::Connection;

use super::service::AgentError;

#[zbus::proxy(
    interface = "org.freedesktop.PolicyKit1.Authority",
    default_service = "org.freedesktop.PolicyKit1",
    default_path = "/org/freedesktop/PolicyKit1/Authority"
)]
trait Authority {
    #[allow(clippy::type_complexity)]
    fn check_authorization(
        &self,
        subject: &(
            &str,
            std::collections::HashMap<&str, zbus::zvariant::Value<'_>>,
        ),
        action_id: &str,
        details: std::collections::HashMap<&str, &str>,
        flags: u32,
        cancellation_id: &str,
    ) -> zbus::Result<(bool, bool, std::collections::HashMap<String, String>)>;
}

/// What polkit said, or that it is not there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Polkit {
    Absent,
    Yes,
    No,
    /// polkit would ask for a password, but the caller did not allow
    /// interactive authorization.
    Challenge,
}

/// The decision, pure: root always; otherwise polkit's answer.
pub fn decide(uid: u32, polkit: Polkit, action: &str) -> Result<(), String> {
    match (uid, polkit) {
        (0, _) | (_, Polkit::Yes) => Ok(()),
        (_, Polkit::Absent) => Err(format!(
            "uid {uid} may not {}: only root may, since polkit is not running",
            describe(action)
        )),
        (_, Polkit::No) => Err(format!(
            "uid {uid} may not {}: polkit denied {action}",
            describe(action)
        )),
        (_, Polkit::Challenge) => Err(format!(
            "uid {uid} may not {} without authenticating: polkit needs interactive authorization for {action} (busctl --allow-interactive-authorization=yes, or run as root)",
            describe(action)
        )),
    }
}

fn describe(action: &str) -> &'static str {
    match action {
        super::ACTION_INSTALL => "install or cancel updates",
        super::ACTION_FORCE => {
            "override a safety check (downgrade, --force, marking the last bootable group bad)"
        }
        _ => "commit, mark bad, arm or roll back slots",
    }
}

/// Who sent a method call, as far as authorization needs to know.
#[derive(Debug, Clone)]
pub struct Caller {
    pub sender: zbus::names::OwnedUniqueName,
    pub uid: u32,
    /// The call allowed interactive authorization (a password prompt).
    pub interactive: bool,
}

impl Caller {
    /// The sender of `hdr` and its uid, from the bus.
    pub async fn of(conn: &Connection, hdr: &Header<'_>) -> Result<Caller, AgentError> {
        let sender = hdr
            .sender()
            .ok_or_else(|| AgentError::AccessDenied("the call has no sender".into()))?
            .to_owned();
        let bus = zbus::fdo::DBusProxy::new(conn).await?;
        let uid = bus
            .get_connection_unix_user(zbus::names::BusName::Unique(sender.clone()))
            .await?;
        Ok(Caller {
            sender: sender.into(),
            uid,
            interactive: hdr.primary().flags().contains(Flags::AllowInteractiveAuth),
        })
    }

    /// Root may; anyone else needs polkit's yes for `action`, asked with
    /// `details` (shown in its dialog and visible to its rules).
    pub async fn authorize(
        &self,
        conn: &Connection,
        action: &str,
        details: &std::collections::HashMap<String, String>,
    ) -> Result<(), AgentError> {
        if self.uid == 0 {
            return Ok(());
        }
        let bus = zbus::fdo::DBusProxy::new(conn).await?;
        let polkit_name =
            zbus::names::BusName::try_from("org.freedesktop.PolicyKit1").expect("valid bus name");
        let polkit = if !bus.name_has_owner(polkit_name).await? {
            Polkit::Absent
        } else {
            let subject = (
                "system-bus-name",
                std::collections::HashMap::from([(
                    "name",
                    zbus::zvariant::Value::from(self.sender.as_str()),
                )]),
            );
            let details: std::collections::HashMap<&str, &str> = details
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let authority = AuthorityProxy::new(conn).await?;
            let (yes, challenge, _) = authority
                .check_authorization(&subject, action, details, u32::from(self.interactive), "")
                .await?;
            match (yes, challenge) {
                (true, _) => Polkit::Yes,
                (false, true) => Polkit::Challenge,
                (false, false) => Polkit::No,
            }
        };
        decide(self.uid, polkit, action).map_err(AgentError::AccessDenied)
    }
}

/// Checks the sender of `hdr` against `action`, with no details.
pub async fn authorize(
    conn: &Connection,
    hdr: &Header<'_>,
    action: &str,
) -> Result<(), AgentError> {
    Caller::of(conn, hdr)
        .await?
        .authorize(conn, action, &std::collections::HashMap::new())
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions() {
        use Polkit::*;
        let a = crate::dbus::ACTION_INSTALL;
        let cases = [
            (0, Absent, true),
            (0, No, true),
            (1000, Absent, false),
            (1000, No, false),
            (1000, Challenge, false),
            (1000, Yes, true),
        ];
        for (uid, p, ok) in cases {
            assert_eq!(decide(uid, p, a).is_ok(), ok, "{uid} {p:?}");
        }
        let e = decide(1000, Absent, a).unwrap_err();
        assert!(
            e.contains("uid 1000") && e.contains("polkit is not running"),
            "{e}"
        );
        let e = decide(1000, Challenge, crate::dbus::ACTION_MANAGE).unwrap_err();
        assert!(e.contains("interactive"), "{e}");
    }
}

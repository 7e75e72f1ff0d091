//! The FleetLock protocol (as Zincati and airlock speak it): before a
//! reboot, `POST /v1/pre-reboot` asks the server for one of its group's
//! reboot slots; after the new group is committed, `POST /v1/steady-state`
//! gives it back. Both carry `fleet-lock-protocol: true` and
//! `{"client_params": {"id": ..., "group": ...}}`; 200 is yes, anything else
//! is no with `{"kind": ..., "value": ...}`. Both are idempotent on the
//! server side, so a request repeated after a crash does no harm.

use serde::Deserialize;

use crate::config::HttpSettings;
use crate::fetch::{http, redact};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// The server said no (the group is full, for example).
    #[error("FleetLock {url}: {kind}: {value}")]
    Refused {
        url: String,
        kind: String,
        value: String,
    },
    #[error("FleetLock {url}: {message}")]
    Transport { url: String, message: String },
}

pub struct Client {
    agent: ureq::Agent,
    base: String,
    pub id: String,
    pub group: String,
}

#[derive(Deserialize)]
struct Refusal {
    kind: String,
    value: String,
}

/// The FleetLock id for a machine id: a hash of it (the machine id stays
/// private, as systemd asks of apps), the first 32 hex digits.
pub fn id_for(machine_id: &str) -> String {
    use sha2::Digest;
    let h = sha2::Sha256::digest(format!("tandem-fleetlock:{machine_id}").as_bytes());
    hex::encode(&h[..16])
}

/// The request body.
pub fn body(id: &str, group: &str) -> String {
    serde_json::json!({"client_params": {"id": id, "group": group}}).to_string()
}

impl Client {
    pub fn new(base: &str, id: &str, group: &str, s: &HttpSettings) -> Result<Client, LockError> {
        let agent = http::agent(s).map_err(|e| LockError::Transport {
            url: redact(base),
            message: e.to_string(),
        })?;
        Ok(Client {
            agent,
            base: base.trim_end_matches('/').to_string(),
            id: id.into(),
            group: group.into(),
        })
    }

    /// Asks for a reboot slot.
    pub fn pre_reboot(&self) -> Result<(), LockError> {
        self.post("/v1/pre-reboot")
    }

    /// Gives the slot back.
    pub fn steady_state(&self) -> Result<(), LockError> {
        self.post("/v1/steady-state")
    }

    fn post(&self, path: &str) -> Result<(), LockError> {
        let url = format!("{}{path}", self.base);
        let shown = redact(&url);
        let r = self
            .agent
            .post(&url)
            .set("fleet-lock-protocol", "true")
            .set("content-type", "application/json")
            .send_string(&body(&self.id, &self.group));
        match r {
            Ok(resp) if resp.status() == 200 => Ok(()),
            Ok(resp) => Err(LockError::Transport {
                url: shown,
                message: format!("unexpected HTTP {}", resp.status()),
            }),
            Err(ureq::Error::Status(code, resp)) => {
                let text = resp.into_string().unwrap_or_default();
                match serde_json::from_str::<Refusal>(&text) {
                    Ok(r) => Err(LockError::Refused {
                        url: shown,
                        kind: r.kind,
                        value: r.value,
                    }),
                    Err(_) => Err(LockError::Transport {
                        url: shown,
                        message: format!("HTTP {code} without a FleetLock error body"),
                    }),
                }
            }
            Err(e) => Err(LockError::Transport {
                url: shown,
                message: e.to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_and_id() {
        assert_eq!(
            body("ab", "default"),
            r#"{"client_params":{"group":"default","id":"ab"}}"#
        );
        let id = id_for("0123456789abcdef0123456789abcdef");
        assert_eq!(id.len(), 32);
        assert_ne!(id, id_for("0123456789abcdef0123456789abcdee"));
        assert!(
            !id.contains("0123456789abcdef0123"),
            "the machine id stays private"
        );
    }
}

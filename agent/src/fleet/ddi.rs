//! hawkBit's Direct Device Integration API as pure types: the resources a
//! device reads (root controller, deploymentBase, cancelAction), the
//! feedback and configData it sends. Parse from bytes, serialize to bytes;
//! no I/O. Unknown fields are ignored: servers add them (hawkBit's
//! `actionHistory`, `confirmationBase`, links to `installedBase`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum DdiError {
    #[error("{what}: not the DDI JSON expected: {message}")]
    Json { what: &'static str, message: String },
    #[error("config.polling.sleep {0:?} is not HH:MM:SS")]
    Sleep(String),
}

fn json<'a, T: Deserialize<'a>>(what: &'static str, b: &'a [u8]) -> Result<T, DdiError> {
    serde_json::from_slice(b).map_err(|e| DdiError::Json {
        what,
        message: e.to_string(),
    })
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct Link {
    pub href: String,
}

/// `GET {tenant}/controller/v1/{controllerId}`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct Root {
    #[serde(default)]
    pub config: RootConfig,
    #[serde(default, rename = "_links")]
    pub links: RootLinks,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct RootConfig {
    #[serde(default)]
    pub polling: Polling,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct Polling {
    pub sleep: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct RootLinks {
    #[serde(rename = "deploymentBase")]
    pub deployment_base: Option<Link>,
    #[serde(rename = "cancelAction")]
    pub cancel_action: Option<Link>,
    #[serde(rename = "configData")]
    pub config_data: Option<Link>,
}

impl Root {
    pub fn parse(b: &[u8]) -> Result<Root, DdiError> {
        json("controller resource", b)
    }

    /// The server's polling interval, if it gives one.
    pub fn sleep(&self) -> Result<Option<Duration>, DdiError> {
        self.config
            .polling
            .sleep
            .as_deref()
            .map(parse_sleep)
            .transpose()
    }
}

/// `HH:MM:SS` as hawkBit sends it.
pub fn parse_sleep(s: &str) -> Result<Duration, DdiError> {
    let bad = || DdiError::Sleep(s.to_string());
    let parts: Vec<&str> = s.split(':').collect();
    let [h, m, sec] = parts[..] else {
        return Err(bad());
    };
    let n = |x: &str, max: u64| {
        x.parse::<u64>()
            .ok()
            .filter(|v| *v <= max && !x.is_empty() && x.len() <= 2)
            .ok_or_else(bad)
    };
    Ok(Duration::from_secs(
        n(h, 99)? * 3600 + n(m, 59)? * 60 + n(sec, 59)?,
    ))
}

/// How the server wants a step handled.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Handling {
    /// Not now (outside a maintenance window).
    Skip,
    /// The device may decide when.
    #[default]
    Attempt,
    Forced,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Window {
    Available,
    Unavailable,
}

/// `GET …/deploymentBase/{actionId}`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct DeploymentBase {
    pub id: String,
    pub deployment: Deployment,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Deployment {
    #[serde(default)]
    pub download: Handling,
    #[serde(default)]
    pub update: Handling,
    #[serde(default, rename = "maintenanceWindow")]
    pub maintenance_window: Option<Window>,
    #[serde(default)]
    pub chunks: Vec<Chunk>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Chunk {
    #[serde(default)]
    pub part: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub artifacts: Vec<Artifact>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Artifact {
    pub filename: String,
    #[serde(default)]
    pub size: Option<u64>,
    /// What the server says the file hashes to (gooseBit: SHA-1 only).
    /// Shown, never trusted: the bundle signature is the proof.
    #[serde(default)]
    pub hashes: BTreeMap<String, String>,
    #[serde(default, rename = "_links")]
    pub links: BTreeMap<String, Link>,
}

impl Artifact {
    /// The download link: `download` (HTTPS in hawkBit, whatever the server
    /// has in gooseBit), else `download-http`.
    pub fn url(&self) -> Option<&str> {
        self.links
            .get("download")
            .or_else(|| self.links.get("download-http"))
            .map(|l| l.href.as_str())
    }
}

impl DeploymentBase {
    pub fn parse(b: &[u8]) -> Result<DeploymentBase, DdiError> {
        json("deploymentBase", b)
    }
}

/// `GET …/cancelAction/{actionId}`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct CancelAction {
    pub id: String,
    #[serde(rename = "cancelAction")]
    pub cancel: CancelInner,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct CancelInner {
    /// The deployment action to stop.
    #[serde(rename = "stopId")]
    pub stop_id: String,
}

impl CancelAction {
    pub fn parse(b: &[u8]) -> Result<CancelAction, DdiError> {
        json("cancelAction", b)
    }
}

/// `status.execution` of a feedback.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Execution {
    Proceeding,
    Scheduled,
    Closed,
    Canceled,
    Rejected,
}

/// `status.result.finished`.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Finished {
    Success,
    Failure,
    None,
}

/// A feedback message (`POST …/{deploymentBase|cancelAction}/{id}/feedback`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feedback {
    pub execution: Execution,
    pub finished: Finished,
    /// `(cnt, of)` steps.
    pub progress: Option<(u32, u32)>,
    pub details: Vec<String>,
}

impl Feedback {
    pub fn new(execution: Execution, finished: Finished, detail: impl Into<String>) -> Feedback {
        Feedback {
            execution,
            finished,
            progress: None,
            details: vec![detail.into()],
        }
    }

    pub fn to_bytes(&self, action_id: &str) -> Vec<u8> {
        let mut result = serde_json::json!({ "finished": self.finished });
        if let Some((cnt, of)) = self.progress {
            result["progress"] = serde_json::json!({ "cnt": cnt, "of": of });
        }
        serde_json::to_vec(&serde_json::json!({
            "id": action_id,
            "status": {
                "execution": self.execution,
                "result": result,
                "details": self.details,
            }
        }))
        .expect("feedback serializes")
    }
}

/// `PUT …/configData` (mode merge).
pub fn config_data(attributes: &BTreeMap<String, String>) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "mode": "merge", "data": attributes }))
        .expect("config data serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleep_is_hh_mm_ss() {
        assert_eq!(parse_sleep("00:05:00").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_sleep("12:00:01").unwrap(), Duration::from_secs(43201));
        for bad in ["", "5", "00:60:00", "00:00:-1", "1:2", "a:b:c", "00:00:001"] {
            assert!(parse_sleep(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hawkbit_root_and_deployment_parse() {
        let root = Root::parse(
            br#"{"config":{"polling":{"sleep":"00:00:30"}},
            "_links":{"deploymentBase":{"href":"https://h/T/controller/v1/d/deploymentBase/7?c=-1"},
            "configData":{"href":"https://h/T/controller/v1/d/configData"}}}"#,
        )
        .unwrap();
        assert_eq!(root.sleep().unwrap(), Some(Duration::from_secs(30)));
        assert!(root
            .links
            .deployment_base
            .unwrap()
            .href
            .ends_with("/7?c=-1"));
        assert!(root.links.cancel_action.is_none() && root.links.config_data.is_some());
        let d = DeploymentBase::parse(
            br#"{"id":"7","deployment":{"download":"forced",
            "update":"skip","maintenanceWindow":"unavailable","chunks":[{"part":"os",
            "version":"1.1.0","name":"gw","artifacts":[{"filename":"u.tnd","size":42,
            "hashes":{"sha1":"ab","md5":"cd","sha256":"ef"},
            "_links":{"download-http":{"href":"http://h/u"},"download":{"href":"https://h/u"},
            "md5sum":{"href":"https://h/u.MD5SUM"}}}]}]},"actionHistory":{"status":"x"}}"#,
        )
        .unwrap();
        assert_eq!(d.id, "7");
        let dep = &d.deployment;
        assert_eq!(
            (dep.download, dep.update),
            (Handling::Forced, Handling::Skip)
        );
        assert_eq!(dep.maintenance_window, Some(Window::Unavailable));
        assert_eq!(dep.chunks[0].artifacts[0].url(), Some("https://h/u"));
        let c = CancelAction::parse(br#"{"id":"9","cancelAction":{"stopId":"7"}}"#).unwrap();
        assert_eq!((c.id.as_str(), c.cancel.stop_id.as_str()), ("9", "7"));
    }

    #[test]
    fn goosebit_deployment_parses() {
        // gooseBit 0.2.12: handling as a string, no window, one sha1.
        let d = DeploymentBase::parse(br#"{"id":"1","deployment":{"download":"forced",
            "update":"forced","chunks":[{"part":"os","version":"1.1.0","name":"u.tnd",
            "artifacts":[{"filename":"u.tnd","hashes":{"sha1":"00"},"size":10,
            "_links":{"download":{"href":"http://127.0.0.1:1/DEFAULT/controller/v1/d/download"}}}]}]}}"#)
        .unwrap();
        assert_eq!(d.deployment.maintenance_window, None);
        assert!(d.deployment.chunks[0].artifacts[0]
            .url()
            .unwrap()
            .ends_with("/download"));
        assert!(Root::parse(br#"{"config":5}"#).is_err());
        assert!(Root::parse(b"not json").is_err());
    }

    #[test]
    fn feedback_shape() {
        let mut f = Feedback::new(Execution::Proceeding, Finished::None, "writing");
        f.progress = Some((1, 3));
        let v: serde_json::Value = serde_json::from_slice(&f.to_bytes("7")).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"id":"7","status":{"execution":"proceeding",
                "result":{"finished":"none","progress":{"cnt":1,"of":3}},"details":["writing"]}})
        );
        let v: serde_json::Value = serde_json::from_slice(&config_data(
            &[("hw_boardname".to_string(), "gw".to_string())].into(),
        ))
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"mode":"merge","data":{"hw_boardname":"gw"}})
        );
    }
}

//! Fleet servers: a server is a client the daemon's loop asks "what should
//! I do now?" and tells how it went. One implementation today, hawkBit's
//! Direct Device Integration API ([`client::Ddi`]), also spoken by gooseBit
//! (docs/fleet.md).
//!
//! Pure parts: the DDI resources and feedback ([`ddi`]), the decision after
//! a poll ([`decide`]), the persisted action ([`record`]). The loop that
//! acts on decisions is a use case (`ops::fleet`).

pub mod client;
pub mod ddi;
pub mod decide;
pub mod record;

use std::collections::BTreeMap;
use std::time::Duration;

use crate::fetch::{BundleSource, FetchError};

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("{url}: {message}")]
    Http { url: String, message: String },
    #[error("{url}: server answered HTTP {code}{hint}")]
    Status {
        url: String,
        code: u16,
        hint: &'static str,
    },
    #[error(transparent)]
    Ddi(#[from] ddi::DdiError),
    #[error(transparent)]
    Record(#[from] record::RecordError),
    #[error("[hawkbit] token file {path}: {source}")]
    Token {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(String),
    #[error("the server sent the action id {0:?}; expected letters, digits, - or _")]
    BadId(String),
}

/// One poll's answer: what the server offers now.
#[derive(Debug, Clone, Default)]
pub struct Poll {
    /// The server's polling interval, if it gives one.
    pub sleep: Option<Duration>,
    pub deployment: Option<ddi::DeploymentBase>,
    pub cancel: Option<ddi::CancelAction>,
    /// The server asks for the device's attributes (registration).
    pub wants_config: bool,
}

/// Which action a feedback is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    Deployment(&'a str),
    Cancel(&'a str),
}

/// A fleet server, as the loop sees it. `&self` throughout: a cancel
/// watcher polls from another thread while an install runs.
pub trait Server: Send + Sync {
    /// Where the device's resource is (what an action record is bound to).
    fn controller(&self) -> &str;
    /// What should I do now?
    fn poll(&self) -> Result<Poll, FleetError>;
    /// The device's attributes (hardware, running version).
    fn send_config(&self, attributes: &BTreeMap<String, String>) -> Result<(), FleetError>;
    fn feedback(&self, target: Target<'_>, f: &ddi::Feedback) -> Result<(), FleetError>;
    /// The artifact at `url` as a bundle source (with the server's
    /// credentials, sent to its own origin only).
    fn bundle_source(&self, url: &str) -> Result<Box<dyn BundleSource>, FetchError>;
}

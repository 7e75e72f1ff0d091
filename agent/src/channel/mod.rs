//! The update channel: a TUF repository whose targets are bundles, polled
//! by the daemon (docs/channel.md). The TUF client (`crate::tuf`) decides
//! which metadata to trust; this module decides what to do with it.
//!
//! Pure parts, each a function of (metadata, device state, clock):
//! - [`meta`]: what a target's custom metadata says about its bundle;
//! - [`waves`]: when this device's slice of a rollout opens;
//! - [`decide`]: which target to take, and the next step of the loop;
//! - [`record`]: what the loop persists between checks (`channel.json`).
//!
//! Edges: [`fleetlock`] (the FleetLock protocol over HTTP) and
//! [`metrics`] (the Prometheus text file). The loop is `ops::channel`.

pub mod decide;
pub mod fleetlock;
pub mod meta;
pub mod metrics;
pub mod record;
pub mod waves;

pub use meta::{BundleMeta, Offer, Wave};

use crate::fetch::{BundleSource, FetchError};

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// The metadata was refused (expired, rolled back, badly signed, ...):
    /// the device changes nothing.
    #[error("channel metadata refused: {0}")]
    Refused(String),
    #[error("channel unreachable: {0}")]
    Unreachable(String),
    #[error("channel: {0}")]
    Setup(String),
    #[error(transparent)]
    Record(#[from] record::RecordError),
    #[error(transparent)]
    Lock(#[from] fleetlock::LockError),
}

/// What a check of the channel lists.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    pub offers: Vec<Offer>,
    /// Targets whose custom metadata this agent cannot use, and why.
    pub unusable: Vec<decide::Skip>,
}

/// The channel as the loop sees it. The implementation runs the TUF
/// client workflow; whatever it lists has passed it.
pub trait Repository: Send {
    /// Refreshes the metadata as of `now` and lists the role's bundles.
    fn check(&mut self, now: u64) -> Result<Listing, ChannelError>;
    /// The bundle of `offer`, pinned to its length and hash.
    fn bundle(&self, offer: &Offer) -> Result<Box<dyn BundleSource>, FetchError>;
}

//! The update channel: a TUF repository whose targets are bundles, polled
//! by the daemon (docs/channel.md). The TUF client (`crate::tuf`) decides
//! which metadata to trust; this module decides what to do with it.
//!
//! Pure parts, each a function of (metadata, device state, clock):
//! - [`meta`]: what a target's custom metadata says about its bundle;
//! - [`waves`]: when this device's slice of a rollout opens;
//! - [`decide`]: which target to take, and the next step of the loop;
//! - [`window`]: maintenance windows (the `periodic` strategy);
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
pub mod window;

pub use meta::{BundleMeta, Offer, Wave};

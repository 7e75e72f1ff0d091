//! A TUF (The Update Framework, specification 1.0) client: the channel's
//! metadata is trusted only after the client workflow of the specification
//! (§5) accepts it, so a hostile network or mirror cannot freeze the
//! device on old metadata, roll it back, mix and match metadata of
//! different moments, or feed it endless data.
//!
//! - [`canonical`]: the OLPC canonical JSON that signatures are made over.
//! - [`keys`]: public keys (ed25519, ecdsa-sha2-nistp256, rsassa-pss-sha256)
//!   and threshold counting.
//! - [`metadata`]: the four top-level roles and delegated targets as serde
//!   types, parsed and verified over the raw `signed` value.
//! - [`trusted`]: the trusted-metadata set: each update rule of §5.3–§5.6.
//! - [`delegation`]: the preorder depth-first search of the delegation tree.
//! - [`client`]: the [`client::Updater`] over a [`client::Fetcher`] and a
//!   [`client::MetadataStore`]; [`store`] and [`http`] are their
//!   implementations on disk and over HTTP(S).
//!
//! # Time
//!
//! Expiry is judged against one `now` (Unix seconds) the caller passes to
//! [`client::Updater::refresh`]. A device without a real-time clock may boot
//! at 1970: its clock would accept every expired timestamp (a freeze
//! attack). The caller therefore uses [`trusted_now`]: the later of the
//! system clock and a persisted floor, the time of the last successful
//! refresh. Time never goes back below a moment the device has already
//! seen, so metadata that expired before it stays expired; between
//! refreshes without a clock, expiry is judged as of the last refresh
//! (the device cannot know better, and the repository's timestamp expiry
//! still bounds how stale what it accepts can be).

pub mod canonical;
pub mod client;
pub mod delegation;
pub mod http;
pub mod keys;
pub mod metadata;
pub mod store;
pub mod trusted;

use thiserror::Error;

/// Everything that can make the client refuse metadata or a target.
#[derive(Debug, Error)]
pub enum TufError {
    #[error("{role}: not valid metadata: {reason}")]
    Malformed { role: String, reason: String },
    #[error(
        "{role} version {version}: signed by {valid} valid key(s) of the {threshold} required"
    )]
    Threshold {
        role: String,
        version: u64,
        valid: usize,
        threshold: u64,
    },
    #[error("{role}: version {got}, expected {expected}")]
    Version {
        role: String,
        got: u64,
        expected: String,
    },
    #[error("{role}: rollback from version {trusted} to {got}")]
    Rollback {
        role: String,
        trusted: u64,
        got: u64,
    },
    #[error("{role} version {version}: expired at {expires} (now {now})")]
    Expired {
        role: String,
        version: u64,
        expires: String,
        now: String,
    },
    #[error("{what}: {reason}")]
    Mismatch { what: String, reason: String },
    #[error("{role}: {reason}")]
    Missing { role: String, reason: String },
    #[error("{url}: {reason}")]
    Fetch { url: String, reason: String },
    #[error("{url}: not found")]
    NotFound { url: String },
    #[error("{url}: more than {limit} bytes")]
    TooLong { url: String, limit: u64 },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("key {keyid}: {reason}")]
    Key { keyid: String, reason: String },
}

impl TufError {
    pub(crate) fn malformed(role: &str, reason: impl std::fmt::Display) -> TufError {
        TufError::Malformed {
            role: role.to_string(),
            reason: reason.to_string(),
        }
    }
}

/// Length limits for what is fetched before its length is known (the
/// defaults are python-tuf's), and for the walks the client makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub root_max_length: u64,
    pub timestamp_max_length: u64,
    /// Used when the timestamp gives no length for snapshot.json.
    pub snapshot_max_length: u64,
    /// Used when snapshot gives no length for a targets role.
    pub targets_max_length: u64,
    /// Root versions fetched in one refresh.
    pub max_root_rotations: u64,
    /// Targets roles visited in one search of the delegation tree.
    pub max_delegations: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            root_max_length: 512_000,
            timestamp_max_length: 16_384,
            snapshot_max_length: 2_000_000,
            targets_max_length: 5_000_000,
            max_root_rotations: 256,
            max_delegations: 32,
        }
    }
}

/// The time to judge expiry by: the later of the system clock and
/// `floor`, the time of the last successful refresh that the caller
/// persisted (see the module docs). Both are Unix seconds.
pub fn trusted_now(system_now: u64, floor: Option<u64>) -> u64 {
    system_now.max(floor.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusted_now_never_goes_below_the_floor() {
        assert_eq!(trusted_now(10, None), 10);
        assert_eq!(trusted_now(10, Some(5)), 10);
        // A device without an RTC booting at 1970.
        assert_eq!(trusted_now(3, Some(1_700_000_000)), 1_700_000_000);
    }
}

//! The use cases both front ends share: install, status, mark-good,
//! mark-bad, rollback and boot-check, and the one outcome every result maps
//! to. The CLI (`cli`) and the D-Bus service (`dbus::service`) call these and
//! never each other; `ops` imports neither of them.
//!
//! [`Outcome`] is the documented exit code (docs/cli.md); the daemon's
//! `Completed` results and error names are spelled from it too, so a caller
//! sees the same answer whichever way it asked.

pub mod channel;
pub mod channel_tuf;
pub mod daemon;
mod device;
pub mod fleet;

pub use device::{
    arm, boot_check, booted_slot, describe_install, install, install_file, install_source,
    mark_bad, mark_good, reboot, rollback, status, with_control,
};

use std::io;

use crate::boot::BootError;
use crate::bundle::keys::KeyError;
use crate::bundle::writer::WriteError;
use crate::bundle::BundleError;
use crate::config::ConfigError;
use crate::control::ControlError;
use crate::fetch::FetchError;
use crate::install::pipeline::PipelineError;
use crate::install::InstallError;
use crate::state::StateError;

/// How an operation ended: the CLI's exit code, and the D-Bus `Completed`
/// result name. One variant per documented code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Success,
    /// Anything else: I/O on a slot device or the state store, internal.
    Failed,
    Usage,
    /// Configuration error, or the booted slot cannot be determined.
    Config,
    /// The bundle was refused: signature, manifest, compatible, version,
    /// epoch, size, hash, truncation.
    Refused,
    /// Another operation holds the lock (or the daemon runs a job).
    Busy,
    /// The source could not be read: file missing or unreadable, HTTP
    /// 404/5xx, the network gave up (before or in the middle of the bundle).
    Unreachable,
    /// Refused because of a slot's state.
    SlotState,
    Cancelled,
    /// The daemon did not authorize the caller.
    NotAuthorized,
}

impl Outcome {
    pub const ALL: [Outcome; 10] = [
        Outcome::Success,
        Outcome::Failed,
        Outcome::Usage,
        Outcome::Config,
        Outcome::Refused,
        Outcome::Busy,
        Outcome::Unreachable,
        Outcome::SlotState,
        Outcome::Cancelled,
        Outcome::NotAuthorized,
    ];

    /// The process exit code (docs/cli.md).
    pub fn code(self) -> u8 {
        match self {
            Outcome::Success => 0,
            Outcome::Failed => 1,
            Outcome::Usage => 2,
            Outcome::Config => 3,
            Outcome::Refused => 4,
            Outcome::Busy => 5,
            Outcome::Unreachable => 6,
            Outcome::SlotState => 7,
            Outcome::Cancelled => 8,
            Outcome::NotAuthorized => 9,
        }
    }

    /// The result name in the daemon's `Completed` signal (docs/dbus.md).
    pub fn result_name(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failed => "failed",
            Outcome::Usage => "invalid-args",
            Outcome::Config => "config",
            Outcome::Refused => "refused",
            Outcome::Busy => "busy",
            Outcome::Unreachable => "unreachable",
            Outcome::SlotState => "slot-state",
            Outcome::Cancelled => "cancelled",
            Outcome::NotAuthorized => "not-authorized",
        }
    }

    /// The last component of the D-Bus error name a failed method call
    /// returns (`dev.tandem.Agent1.Error.<name>`).
    pub fn error_name(self) -> &'static str {
        match self {
            Outcome::Success => "Success",
            Outcome::Failed => "Failed",
            Outcome::Usage => "InvalidArgs",
            Outcome::Config => "Config",
            Outcome::Refused => "Refused",
            Outcome::Busy => "Busy",
            Outcome::Unreachable => "Unreachable",
            Outcome::SlotState => "SlotState",
            Outcome::Cancelled => "Cancelled",
            Outcome::NotAuthorized => "AccessDenied",
        }
    }

    /// The outcome a `Completed` result name stands for; unknown names are
    /// `Failed`.
    pub fn from_result_name(name: &str) -> Outcome {
        Outcome::ALL
            .into_iter()
            .find(|o| o.result_name() == name)
            .unwrap_or(Outcome::Failed)
    }

    /// The outcome a D-Bus error name (full or last component) stands for;
    /// names not of this interface are `Failed`.
    pub fn from_error_name(name: &str) -> Outcome {
        let last = name.rsplit('.').next().unwrap_or("");
        Outcome::ALL
            .into_iter()
            .filter(|o| *o != Outcome::Success)
            .find(|o| o.error_name() == last)
            .unwrap_or(Outcome::Failed)
    }
}

/// Every error an operation can end with. `Display` is the message shown
/// after `error: `; [`Error::outcome`] is the exit code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Install(#[from] InstallError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error("bundle refused: {0}")]
    Bundle(#[from] BundleError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error(transparent)]
    Boot(#[from] BootError),
    #[error("fleet server: {0}")]
    Fleet(#[from] crate::fleet::FleetError),
    #[error(transparent)]
    Channel(#[from] crate::channel::ChannelError),
    #[error("{0}")]
    Usage(String),
    /// A bundle failed a check outside the install pipeline (`bundle verify`).
    #[error("bundle refused: {0}")]
    Refused(String),
    /// The daemon answered with this outcome and message.
    #[error("{message}")]
    Daemon { outcome: Outcome, message: String },
    #[error("{0}")]
    Other(String),
}

impl Error {
    pub fn outcome(&self) -> Outcome {
        match self {
            Error::Config(_) => Outcome::Config,
            Error::Install(e) => install_outcome(e),
            Error::Key(_) | Error::Write(_) | Error::Boot(_) | Error::Other(_) => Outcome::Failed,
            Error::Fleet(e) => fleet_outcome(e),
            Error::Channel(e) => channel_outcome(e),
            Error::Bundle(e) => bundle_outcome(e),
            Error::State(e) => state_outcome(e),
            Error::Fetch(e) => fetch_outcome(e),
            Error::Control(e) => control_outcome(e),
            Error::Usage(_) => Outcome::Usage,
            Error::Refused(_) => Outcome::Refused,
            Error::Daemon { outcome, .. } => *outcome,
        }
    }

    /// The exit code, for `main`.
    pub fn exit_code(&self) -> u8 {
        self.outcome().code()
    }
}

/// A source that cannot be read is unreachable (6); a source string that
/// is no source is a usage error, TLS settings or credential files that do
/// not load a configuration error; bytes that are not the ones a digest
/// names are refused (4).
fn fetch_outcome(e: &FetchError) -> Outcome {
    match e {
        FetchError::Scheme { .. } | FetchError::Reference { .. } => Outcome::Usage,
        FetchError::Tls { .. } | FetchError::Credentials { .. } => Outcome::Config,
        FetchError::Digest { .. } => Outcome::Refused,
        _ => Outcome::Unreachable,
    }
}

/// A server that cannot be reached or answers nonsense is unreachable;
/// a token file that cannot be read is a configuration error.
fn fleet_outcome(e: &crate::fleet::FleetError) -> Outcome {
    use crate::fleet::FleetError as F;
    match e {
        F::Token { .. } | F::Config(_) => Outcome::Config,
        F::Record(_) => Outcome::Failed,
        _ => Outcome::Unreachable,
    }
}

fn channel_outcome(e: &crate::channel::ChannelError) -> Outcome {
    use crate::channel::ChannelError as C;
    match e {
        C::Refused(_) => Outcome::Refused,
        C::Unreachable(_) | C::Lock(_) => Outcome::Unreachable,
        C::Setup(_) => Outcome::Config,
        C::Record(_) => Outcome::Failed,
    }
}

fn state_outcome(e: &StateError) -> Outcome {
    match e {
        StateError::Busy(_) => Outcome::Busy,
        _ => Outcome::Failed,
    }
}

fn bundle_outcome(e: &BundleError) -> Outcome {
    match e {
        BundleError::Io { source, .. } => read_outcome(source),
        _ => Outcome::Refused,
    }
}

fn control_outcome(e: &ControlError) -> Outcome {
    match e {
        ControlError::Refused(_) => Outcome::SlotState,
        ControlError::State(s) => state_outcome(s),
        ControlError::Slot(_) | ControlError::BootedUnknown(_) => Outcome::Config,
        ControlError::Boot(_) | ControlError::Watchdog { .. } => Outcome::Failed,
    }
}

/// What a failed read of the bundle stream means: the transport gave up or
/// the source device failed (unreachable), the operation was cancelled, or
/// the bytes that did arrive were bad (refused: truncated, corrupt).
pub fn read_outcome(e: &io::Error) -> Outcome {
    if let Some(inner) = e.get_ref() {
        if let Some(f) = inner.downcast_ref::<FetchError>() {
            return fetch_outcome(f);
        }
        if inner.is::<crate::install::CancelledRead>() {
            return Outcome::Cancelled;
        }
        if inner.is::<crate::bundle::reader::TruncatedAt>() {
            return Outcome::Refused;
        }
    }
    if e.raw_os_error().is_some() {
        // EIO from a USB stick, EACCES, ...: the source, not the bundle.
        return Outcome::Unreachable;
    }
    Outcome::Refused
}

/// Whether an install failed only because the bundle changed on the server
/// under a resumed download (then it may start again from byte 0).
pub fn restartable(e: &InstallError) -> bool {
    let fetch = match e {
        InstallError::Fetch(f) => Some(f),
        InstallError::Record(inner, _) => return restartable(inner),
        InstallError::Bundle(BundleError::Io { source, .. })
        | InstallError::Payload {
            source: PipelineError::Read { source, .. },
            ..
        } => source
            .get_ref()
            .and_then(|i| i.downcast_ref::<FetchError>()),
        _ => None,
    };
    fetch.is_some_and(FetchError::restartable)
}

/// The outcome of a failed install (also for callers of `install::install`).
pub fn install_outcome(e: &InstallError) -> Outcome {
    match e {
        InstallError::State(s) => state_outcome(s),
        InstallError::Keyring(_)
        | InstallError::UnsafeKeyring { .. }
        | InstallError::Cmdline { .. } => Outcome::Config,
        InstallError::Slot(_) | InstallError::BootedUnknown { .. } => Outcome::Config,
        InstallError::Fetch(f) => fetch_outcome(f),
        InstallError::Bundle(b) => bundle_outcome(b),
        InstallError::Policy(_)
        | InstallError::Truncated { .. }
        | InstallError::HashMismatch { .. } => Outcome::Refused,
        InstallError::Payload { source, .. } => match source {
            PipelineError::Read { source, .. } => read_outcome(source),
            PipelineError::Device(_) => Outcome::Failed,
            PipelineError::TooLong { .. }
            | PipelineError::TooShort { .. }
            | PipelineError::Chunk(_)
            | PipelineError::Hash { .. } => Outcome::Refused,
        },
        InstallError::SlotState(_) => Outcome::SlotState,
        InstallError::Cancelled(_) | InstallError::CancelledEarly => Outcome::Cancelled,
        InstallError::NotAuthorized(_) => Outcome::NotAuthorized,
        InstallError::Record(inner, _) => install_outcome(inner),
        InstallError::Device { .. }
        | InstallError::Arm { .. }
        | InstallError::Boot(_)
        | InstallError::Verity { .. } => Outcome::Failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_names_are_distinct_and_round_trip() {
        let mut codes: Vec<u8> = Outcome::ALL.iter().map(|o| o.code()).collect();
        codes.dedup();
        assert_eq!(codes, (0..=9).collect::<Vec<u8>>());
        for o in Outcome::ALL {
            assert_eq!(Outcome::from_result_name(o.result_name()), o);
            if o != Outcome::Success {
                assert_eq!(
                    Outcome::from_error_name(&format!(
                        "dev.tandem.Agent1.Error.{}",
                        o.error_name()
                    )),
                    o
                );
            }
        }
        assert_eq!(Outcome::from_result_name("no-such"), Outcome::Failed);
        assert_eq!(
            Outcome::from_error_name("org.freedesktop.DBus.Error.ServiceUnknown"),
            Outcome::Failed
        );
    }

    #[test]
    fn read_failures_are_classified_by_cause() {
        let fetch = io::Error::other(FetchError::GaveUp {
            url: "http://h/b".into(),
            offset: 7,
            attempts: 3,
            last: "reset".into(),
        });
        assert_eq!(read_outcome(&fetch), Outcome::Unreachable);
        let eio = io::Error::from_raw_os_error(libc::EIO);
        assert_eq!(read_outcome(&eio), Outcome::Unreachable);
        let corrupt = io::Error::new(io::ErrorKind::InvalidData, "zstd frame 3: bad");
        assert_eq!(read_outcome(&corrupt), Outcome::Refused);
        let cut = io::Error::new(
            io::ErrorKind::UnexpectedEof,
            crate::bundle::reader::TruncatedAt(9),
        );
        assert_eq!(read_outcome(&cut), Outcome::Refused);
        let cancel = io::Error::other(crate::install::CancelledRead);
        assert_eq!(read_outcome(&cancel), Outcome::Cancelled);
    }
}

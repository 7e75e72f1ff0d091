//! The Tandem QEMU rig: boot disk images on real firmware under QEMU, watch
//! the serial console for markers, type commands into it, cut power through
//! QMP, and serve bundles to the guest from 127.0.0.1.
//!
//! It is a library for scenario tests and a CLI (`tandem-qemu`) for users'
//! CI. See qemu-tests/README.md.

pub mod aarch64;
pub mod channel;
pub mod console;
pub mod debian;
pub mod http;
pub mod lastresort;
pub mod qmp;
pub mod scenario;
pub mod scenarios;
pub mod sdboot;
pub mod uki;
pub mod vm;

pub use console::Console;
pub use vm::{Arch, Disk, Vm, VmConfig};

/// Errors of the rig, each naming the VM and what it waited for.
#[derive(Debug, thiserror::Error)]
pub enum RigError {
    #[error("{vm}: timed out after {secs} s waiting for {what:?}; last console lines:\n{tail}")]
    Timeout {
        vm: String,
        what: String,
        secs: u64,
        tail: String,
    },
    #[error(
        "{vm}: QEMU exited ({status}) while waiting for {what:?}; last console lines:\n{tail}"
    )]
    Exited {
        vm: String,
        status: String,
        what: String,
        tail: String,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("QMP: {0}")]
    Qmp(String),
    #[error("{0}")]
    Setup(String),
}

pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RigError {
    let what = what.into();
    move |source| RigError::Io { what, source }
}

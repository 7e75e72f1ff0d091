//! The D-Bus side of tandem: the daemon's service ([`service`]), the
//! CLI's client of it ([`client`]) and who may do what ([`auth`]). The
//! interface is documented in docs/dbus.md. Calls *to* systemd and logind
//! are edge effects and live in `sys::systemd`.

pub mod auth;
mod channel;
pub mod client;
mod fleet;
pub mod service;

/// Well-known bus name of the daemon.
pub const BUS_NAME: &str = "dev.tandem.Agent1";
/// Object path of the one object.
pub const OBJECT_PATH: &str = "/dev/tandem/Agent1";
/// Interface name; the trailing digit is its major version.
pub const INTERFACE: &str = "dev.tandem.Agent1";
/// Minor revision of the interface, published as the `Version` property.
pub const INTERFACE_VERSION: u32 = 3;

/// polkit action for Install and Cancel.
pub const ACTION_INSTALL: &str = "dev.tandem.install";
/// polkit action for MarkGood, MarkBad, Arm and Rollback.
pub const ACTION_MANAGE: &str = "dev.tandem.manage";
/// polkit action (auth_admin by default) for what overrides a safety
/// check: installing a downgrade or with `force`, marking the last
/// bootable group bad.
pub const ACTION_FORCE: &str = "dev.tandem.force";

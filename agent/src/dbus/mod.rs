//! The D-Bus side of tandem: the daemon's service ([`service`]), the
//! CLI's client of it ([`client`]), who may do what ([`auth`]), and
//! systemd/logind calls ([`systemd`]). The interface is documented in
//! docs/dbus.md.

pub mod auth;
pub mod client;
pub mod service;
pub mod systemd;

/// Well-known bus name of the daemon.
pub const BUS_NAME: &str = "dev.tandem.Agent1";
/// Object path of the one object.
pub const OBJECT_PATH: &str = "/dev/tandem/Agent1";
/// Interface name; the trailing digit is its major version.
pub const INTERFACE: &str = "dev.tandem.Agent1";
/// Minor revision of the interface, published as the `Version` property.
pub const INTERFACE_VERSION: u32 = 1;

/// polkit action for Install and Cancel.
pub const ACTION_INSTALL: &str = "dev.tandem.install";
/// polkit action for MarkGood, MarkBad and Rollback.
pub const ACTION_MANAGE: &str = "dev.tandem.manage";

/// The result names `Completed` carries, one per CLI exit code
/// (docs/cli.md), so a client can exit as the direct CLI would.
pub const RESULTS: &[(u8, &str)] = &[
    (0, "success"),
    (1, "failed"),
    (2, "invalid-args"),
    (3, "config"),
    (4, "refused"),
    (5, "busy"),
    (6, "unreachable"),
    (7, "slot-state"),
    (8, "cancelled"),
    (9, "not-authorized"),
];

pub fn result_name(code: u8) -> &'static str {
    RESULTS
        .iter()
        .find(|(c, _)| *c == code)
        .map_or("failed", |(_, n)| n)
}

pub fn result_code(name: &str) -> u8 {
    RESULTS
        .iter()
        .find(|(_, n)| *n == name)
        .map_or(1, |(c, _)| *c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_names_round_trip() {
        for (code, name) in RESULTS {
            assert_eq!(result_name(*code), *name);
            assert_eq!(result_code(name), *code);
        }
        assert_eq!(result_name(200), "failed");
        assert_eq!(result_code("no-such-result"), 1);
    }
}

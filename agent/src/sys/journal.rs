//! Structured events to journald over its native protocol (the datagram
//! socket /run/systemd/journal/socket): one datagram of `KEY=VALUE` lines
//! per event, a value with a newline in the length-prefixed form. Each
//! event kind has its own MESSAGE_ID (`journalctl MESSAGE_ID=…` finds
//! them; docs/channel.md lists them). Without journald (a plain init, a
//! test machine) the event goes to the log only.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;

/// The socket; `TANDEM_JOURNAL_SOCKET` overrides it (tests).
fn socket() -> PathBuf {
    std::env::var_os("TANDEM_JOURNAL_SOCKET")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/run/systemd/journal/socket".into())
}

/// Kinds of events, each with its MESSAGE_ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    CheckFailed,
    MetadataRefused,
    UpdateFound,
    UpdateStaged,
    InstallFailed,
    RebootScheduled,
    LockAcquired,
    LockReleased,
}

impl Event {
    pub const ALL: [Event; 8] = [
        Event::CheckFailed,
        Event::MetadataRefused,
        Event::UpdateFound,
        Event::UpdateStaged,
        Event::InstallFailed,
        Event::RebootScheduled,
        Event::LockAcquired,
        Event::LockReleased,
    ];

    pub fn message_id(self) -> &'static str {
        match self {
            Event::CheckFailed => "8c0d1f6b2a3e4c59a1d7e2f03b4c5d60",
            Event::MetadataRefused => "5b2e8f7a91c34d0e8a6b1c2d3e4f5a61",
            Event::UpdateFound => "2f9a4c6e8b1d4f03a5c7e9b1d3f5a762",
            Event::UpdateStaged => "7d3b5f9e1a2c4e6080b2d4f6a8c0e263",
            Event::InstallFailed => "c1e3a5b7d9f14b2d8e0a2c4e6b8d0f64",
            Event::RebootScheduled => "9a8b7c6d5e4f40312a1b2c3d4e5f6a65",
            Event::LockAcquired => "3c5e7a9b1d2f4e6088a0c2e4b6d8f066",
            Event::LockReleased => "e6f8a0b2c4d64e8a9c1e3b5d7f9a1c67",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Event::CheckFailed => "check-failed",
            Event::MetadataRefused => "metadata-refused",
            Event::UpdateFound => "update-found",
            Event::UpdateStaged => "update-staged",
            Event::InstallFailed => "install-failed",
            Event::RebootScheduled => "reboot-scheduled",
            Event::LockAcquired => "lock-acquired",
            Event::LockReleased => "lock-released",
        }
    }

    fn priority(self) -> u8 {
        match self {
            Event::CheckFailed | Event::InstallFailed => 4,
            Event::MetadataRefused => 3,
            _ => 5,
        }
    }
}

/// Encodes one entry in journald's native format.
pub fn encode(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in fields {
        out.extend_from_slice(k.as_bytes());
        if v.contains('\n') {
            out.push(b'\n');
            out.extend_from_slice(&(v.len() as u64).to_le_bytes());
            out.extend_from_slice(v.as_bytes());
        } else {
            out.push(b'=');
            out.extend_from_slice(v.as_bytes());
        }
        out.push(b'\n');
    }
    out
}

/// Sends `event` with `message` and extra fields (upper-case names such as
/// `TANDEM_VERSION`, `TANDEM_SLOT`); also logs it.
pub fn send(event: Event, message: &str, extra: &[(&str, &str)]) {
    tracing::info!(event = event.name(), "{message}");
    let prio = event.priority().to_string();
    let mut fields = vec![
        ("MESSAGE", message),
        ("MESSAGE_ID", event.message_id()),
        ("PRIORITY", prio.as_str()),
        ("SYSLOG_IDENTIFIER", "tandem"),
        ("TANDEM_EVENT", event.name()),
    ];
    fields.extend_from_slice(extra);
    let path = socket();
    if !path.exists() {
        return;
    }
    let sent = UnixDatagram::unbound().and_then(|s| s.send_to(&encode(&fields), &path));
    if let Err(e) = sent {
        tracing::debug!("journald {}: {e}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_format() {
        let b = encode(&[("MESSAGE", "one line"), ("TANDEM_DETAIL", "a\nb")]);
        let mut want = b"MESSAGE=one line\nTANDEM_DETAIL\n".to_vec();
        want.extend_from_slice(&3u64.to_le_bytes());
        want.extend_from_slice(b"a\nb\n");
        assert_eq!(b, want);
    }

    #[test]
    fn ids_are_distinct_128_bit_hex() {
        let mut ids: Vec<_> = Event::ALL.iter().map(|e| e.message_id()).collect();
        for id in &ids {
            assert!(
                id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit()),
                "{id}"
            );
        }
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), Event::ALL.len());
    }
}

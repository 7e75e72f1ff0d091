//! `tandem status`: a report built from settings and state. Pure. The
//! text a person reads is rendered from it by `cli::status_view`.
//!
//! The JSON shape is versioned by `status_version` and documented in
//! docs/status.md; it only ever gains fields within a version.

use serde::{Deserialize, Serialize};

use crate::config::Settings;
use crate::fsm::SlotState;
use crate::slot::SlotGroup;
use crate::state::{Operation, OperationResult, State};

pub const STATUS_VERSION: u32 = 1;

/// `s` with control characters (a terminal's escape sequences, line
/// breaks, NUL) written as `\xNN`/`\u{..}` escapes, for text that came from
/// an unverified bundle or a caller and is shown on a terminal, in logs or
/// over D-Bus.
pub fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            match u32::from(c) {
                n @ 0..=0xff => out.push_str(&format!("\\x{n:02x}")),
                n => out.push_str(&format!("\\u{{{n:x}}}")),
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub status_version: u32,
    pub compatible: String,
    pub booted: Option<SlotGroup>,
    pub primary: Option<SlotGroup>,
    pub boot_backend: crate::config::BootBackend,
    pub security_epoch_floor: u64,
    /// Set when the bootloader's state could not be read.
    pub boot_error: Option<String>,
    /// Why the data partition is not in use (the initramfs booted with
    /// tmpfs for /var and /etc's changes: nothing persists); null when it is.
    pub data_degraded: Option<String>,
    pub slots: Vec<SlotStatus>,
    pub last_operation: Option<OperationStatus>,
    /// Versions that failed on this device, newest last.
    pub failures: Vec<crate::state::Failure>,
    /// The update channel (`[channel]`), when one is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<ChannelStatus>,
    /// The initramfs's last `/etc` merge (docs/disk-layout.md); absent
    /// before the first image change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etc_merge: Option<EtcMerge>,
}

/// What the `/etc` merge did at the first boot of an image: the entries
/// that yielded to the image's version and the conflicts (changed by the
/// administrator and by the image; the administrator's kept).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EtcMerge {
    /// The image version the upper layer was merged for.
    pub version: String,
    pub yielded: Vec<String>,
    pub conflicts: Vec<String>,
}

impl EtcMerge {
    /// Reads the initramfs's report; `None` if there is none or it is not
    /// one (a newer format is not guessed at).
    pub fn read(path: &std::path::Path) -> Option<EtcMerge> {
        #[derive(Deserialize)]
        struct Report {
            merge_version: u32,
            #[serde(flatten)]
            merge: EtcMerge,
        }
        let text = std::fs::read_to_string(path).ok()?;
        let r: Report = serde_json::from_str(&text).ok()?;
        (r.merge_version == 1).then_some(r.merge)
    }
}

/// What the channel loop last did and what it waits for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelStatus {
    pub url: String,
    pub role: String,
    pub strategy: String,
    /// RFC 3339; null before the first check.
    pub last_check: Option<String>,
    pub last_check_ok: Option<bool>,
    pub last_check_message: Option<String>,
    /// The update the last check found for this device.
    pub found_version: Option<String>,
    /// When this device's rollout wave opens, if it has not yet.
    pub wave_opens_at: Option<String>,
    /// What the found update waits for.
    pub waiting_for: Option<String>,
    /// The version the loop staged in the other group.
    pub staged: Option<String>,
    /// The FleetLock group whose reboot slot this device holds.
    pub lock_group: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotStatus {
    pub group: SlotGroup,
    pub booted: bool,
    pub state: SlotState,
    pub version: Option<String>,
    pub security_epoch: Option<u64>,
    pub installed_at: Option<String>,
    /// The bootloader's view: `good`/`bad`, null without a bootloader.
    pub boot_mark: Option<crate::boot::Mark>,
    /// Trial boots left; null when not on trial.
    pub tries_left: Option<u32>,
    /// An installed group the bootloader was told to try; false for one
    /// whose install was cut off before (`tandem arm`).
    pub armed: bool,
    pub images: Vec<SlotImageStatus>,
}

/// What the bootloader reports, read at the edge.
#[derive(Debug, Clone, Default)]
pub struct BootView {
    pub primary: Option<SlotGroup>,
    pub marks: std::collections::BTreeMap<SlotGroup, (crate::boot::Mark, Option<u32>)>,
    pub error: Option<String>,
}

/// Reads the bootloader's view, turning a failure into `error`.
pub fn boot_view(b: &mut dyn crate::boot::Bootloader) -> BootView {
    match b.snapshot() {
        Ok(s) => BootView {
            primary: s.primary,
            marks: s.slots,
            error: None,
        },
        Err(e) => BootView {
            error: Some(e.to_string()),
            ..Default::default()
        },
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotImageStatus {
    pub class: String,
    pub device: String,
    pub size: Option<u64>,
    pub sha256: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationStatus {
    pub kind: crate::state::OperationKind,
    pub source: String,
    pub target: Option<SlotGroup>,
    pub version: Option<String>,
    pub started_at: String,
    pub finished_at: Option<String>,
    /// `in-progress`, `interrupted`, `succeeded` or `failed`.
    pub result: String,
    pub error: Option<String>,
    pub checks: Vec<crate::health::CheckResult>,
    /// What an adaptive install fetched and reused; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer: Option<crate::state::Transfer>,
}

/// What was read of the running system, besides the state store.
#[derive(Debug, Clone, Default)]
pub struct Observed<'a> {
    /// From the kernel command line.
    pub booted: Option<SlotGroup>,
    /// The bootloader's view; `None` with backend `none`.
    pub boot: Option<&'a BootView>,
    /// Whether an operation runs right now (an in-progress operation
    /// without it was cut off).
    pub lock_held: bool,
    /// The initramfs's reason for booting without the data partition.
    pub data_degraded: Option<String>,
}

/// Builds the report.
pub fn build(settings: &Settings, state: &State, seen: &Observed<'_>) -> Status {
    let (booted, boot, lock_held) = (seen.booted, seen.boot, seen.lock_held);
    let slots = SlotGroup::ALL
        .iter()
        .map(|&g| {
            let rec = state.slot(g);
            SlotStatus {
                group: g,
                booted: booted == Some(g),
                state: rec.state,
                version: rec
                    .version
                    .as_ref()
                    .or(if booted == Some(g) && rec.version.is_none() {
                        settings.image_version.as_ref()
                    } else {
                        None
                    })
                    .map(|v| v.to_string()),
                security_epoch: rec.security_epoch,
                installed_at: rec.installed_at.clone(),
                boot_mark: boot.and_then(|b| b.marks.get(&g)).map(|m| m.0),
                tries_left: boot.and_then(|b| b.marks.get(&g)).and_then(|m| m.1),
                armed: rec.armed,
                images: settings.slots[&g]
                    .iter()
                    .map(|(class, dev)| {
                        let img = rec.images.iter().find(|i| &i.slot_class == class);
                        SlotImageStatus {
                            class: class.to_string(),
                            device: dev.device.display().to_string(),
                            size: img.map(|i| i.size),
                            sha256: img.map(|i| i.sha256.clone()),
                        }
                    })
                    .collect(),
            }
        })
        .collect();
    Status {
        status_version: STATUS_VERSION,
        compatible: settings.compatible.clone(),
        booted,
        // The bootloader decides what boots next; with no bootloader
        // integration the running slot stays primary. When the bootloader
        // cannot be read, nobody knows.
        primary: match boot {
            None => booted,
            Some(view) => view.primary,
        },
        boot_backend: settings.boot.backend(),
        security_epoch_floor: state.security_epoch_floor,
        boot_error: boot.and_then(|b| b.error.clone()),
        data_degraded: seen.data_degraded.clone(),
        slots,
        last_operation: state
            .last_operation
            .as_ref()
            .map(|o| operation(o, lock_held)),
        failures: state.failures.clone(),
        channel: None,
        etc_merge: None,
    }
}

fn operation(o: &Operation, lock_held: bool) -> OperationStatus {
    let result = match (o.result, lock_held) {
        (OperationResult::InProgress, true) => "in-progress",
        (OperationResult::InProgress, false) => "interrupted",
        (OperationResult::Succeeded, _) => "succeeded",
        (OperationResult::Failed, _) => "failed",
    };
    OperationStatus {
        kind: o.kind,
        source: o.source.clone(),
        target: o.target,
        version: o.version.as_ref().map(|v| v.to_string()),
        started_at: o.started_at.clone(),
        finished_at: o.finished_at.clone(),
        result: result.to_string(),
        error: o.error.clone(),
        checks: o.checks.clone(),
        transfer: o.transfer,
    }
}

impl Status {
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("status serializes");
        s.push('\n');
        s
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn printable_escapes_control_characters_only() {
        for (s, want) in [
            ("plain text, ünïcode", "plain text, ünïcode"),
            ("\x1b[2Jgone", "\\x1b[2Jgone"),
            ("two\nlines\r\0", "two\\x0alines\\x0d\\x00"),
            ("\u{85}next", "\\x85next"),
        ] {
            assert_eq!(super::printable(s), want, "{s:?}");
        }
    }
}

//! A channel target's custom metadata: `{"tandem": {...}}` in the target's
//! `custom` field, signed with the rest of the targets metadata. The
//! bundle's own signature is still checked at install; the agent also
//! refuses a bundle whose manifest disagrees with what the channel said
//! (version, compatible), so a mirror cannot swap two signed bundles.

use serde::{Deserialize, Serialize};

/// What the channel says about one bundle. Unknown fields are ignored so
/// that a newer publisher does not break older devices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleMeta {
    pub version: semver::Version,
    pub compatible: String,
    #[serde(default)]
    pub security_epoch: u64,
    /// The rollout plan: slices of the fleet and when each opens. Empty:
    /// every device at once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waves: Vec<Wave>,
    /// A paused rollout: devices that have not started do not start.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
    /// Where the bundle is when it is not the target file itself (an
    /// `oci://` reference or an HTTP(S) URL); the target's length and hash
    /// still pin it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

/// One slice of a rollout: devices whose seed falls below `percent` of
/// the seed range may start at `start`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wave {
    /// RFC 3339, UTC (`2026-12-02T10:00:00Z`).
    pub start: String,
    /// 1 to 100: the share of the fleet this wave reaches, counted from 0
    /// (a wave of 25 after one of 10 adds 15 %).
    pub percent: u8,
}

/// A bundle the channel offers, as the decisions see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// The target path in the repository.
    pub path: String,
    pub length: u64,
    /// `sha256:HEX`, if the target lists a SHA-256.
    pub sha256: Option<String>,
    pub meta: BundleMeta,
}

/// The `tandem` object of a target's custom metadata, or why not.
pub fn parse_custom(custom: &serde_json::Value) -> Result<BundleMeta, String> {
    let t = custom
        .get("tandem")
        .ok_or("its custom metadata has no \"tandem\" object")?;
    let m: BundleMeta =
        serde_json::from_value(t.clone()).map_err(|e| format!("custom.tandem: {e}"))?;
    if m.compatible.is_empty() {
        return Err("custom.tandem.compatible is empty".into());
    }
    crate::channel::waves::validate(&m.waves)?;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_and_ignores_unknown_fields() {
        let m = parse_custom(&json!({"tandem": {
            "version": "1.2.0", "compatible": "qemu-x86", "future": 1,
            "waves": [{"start": "2026-12-02T10:00:00Z", "percent": 10},
                      {"start": "2026-12-03T10:00:00Z", "percent": 100}]
        }}))
        .unwrap();
        assert_eq!(m.version, semver::Version::new(1, 2, 0));
        assert_eq!((m.security_epoch, m.paused, m.waves.len()), (0, false, 2));
    }

    #[test]
    fn refusals_say_what() {
        for (v, want) in [
            (json!({}), "no \"tandem\""),
            (
                json!({"tandem": {"version": "x", "compatible": "c"}}),
                "custom.tandem",
            ),
            (
                json!({"tandem": {"version": "1.0.0", "compatible": ""}}),
                "compatible is empty",
            ),
            (
                json!({"tandem": {"version": "1.0.0", "compatible": "c",
                    "waves": [{"start": "2026-12-02T10:00:00Z", "percent": 0}]}}),
                "percent",
            ),
        ] {
            let e = parse_custom(&v).unwrap_err();
            assert!(e.contains(want), "{v}: {e}");
        }
    }
}

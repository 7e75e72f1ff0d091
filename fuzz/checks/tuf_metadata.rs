//! tuf::metadata::parse of each role over any bytes (the first byte picks
//! the role, or the glob matcher): never panics; accepted metadata
//! survives serialize/parse unchanged; a root goes through the trusted
//! set's first check; a delegation answers which roles may sign a path;
//! glob matching of any pattern against any path returns.
//!
//! Shared by the fuzz target and agent/tests/fuzz_regressions.rs.

use tandem::tuf::delegation::path_matches;
use tandem::tuf::metadata::{self, Envelope, Root, Signed, Snapshot, Targets, Timestamp};
use tandem::tuf::trusted::TrustedSet;

fn round_trip<T: Signed + PartialEq + std::fmt::Debug>(role: &str, data: &[u8]) -> Option<T> {
    let parsed = metadata::parse::<T>(role, data).ok()?;
    let again = Envelope {
        signed: serde_json::to_value(&parsed.signed).expect("serializes"),
        ..parsed.envelope.clone()
    };
    let bytes = serde_json::to_vec(&again).expect("serializes");
    let reparsed = metadata::parse::<T>(role, &bytes).expect("what we write parses");
    assert_eq!(reparsed.signed, parsed.signed);
    metadata::signing_bytes(&parsed.signed).expect("canonical");
    Some(parsed.signed)
}

/// Panics if `data` breaks a property above.
pub fn check(data: &[u8]) {
    let Some((&kind, data)) = data.split_first() else {
        return;
    };
    match kind % 5 {
        0 => {
            if round_trip::<Root>("root", data).is_some() {
                let _ = TrustedSet::new(data, 0);
            }
        }
        1 => {
            round_trip::<Timestamp>("timestamp", data);
        }
        2 => {
            round_trip::<Snapshot>("snapshot", data);
        }
        3 => {
            if let Some(t) = round_trip::<Targets>("targets", data) {
                if let Some(d) = &t.delegations {
                    for path in ["a", "dir/file.tnd", "", "stable/os-1.2.tnd"] {
                        for (name, _) in d.roles_for_target(path) {
                            assert!(!name.is_empty() || d.roles.is_some());
                        }
                    }
                }
            }
        }
        _ => {
            let text = String::from_utf8_lossy(data);
            let (pattern, path) = text.split_once('\n').unwrap_or((&text, ""));
            let _ = path_matches(pattern, path);
        }
    }
}

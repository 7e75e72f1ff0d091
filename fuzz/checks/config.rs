//! tandem::config::parse with one Source over any text: never panics, and
//! parsing is a function of the text (the same text, the same outcome).
//!
//! Shared by the fuzz target and agent/tests/fuzz_regressions.rs.

use std::path::PathBuf;

use tandem::config::{self, Source};

/// Panics if `data` breaks a property above.
pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let src = || {
        vec![Source {
            path: PathBuf::from("/etc/tandem/tandem.toml"),
            text: text.to_string(),
        }]
    };
    let a = config::parse(&src());
    let b = config::parse(&src());
    assert_eq!(format!("{a:?}"), format!("{b:?}"));
}

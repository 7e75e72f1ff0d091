//! tandem::config::parse with one Source over any text, as the main file
//! (local) and as an image drop-in: never panics, and parsing is a function
//! of the text (the same text, the same outcome).
//!
//! Shared by the fuzz target and agent/tests/fuzz_regressions.rs.

use tandem::config::{self, Source};

/// Panics if `data` breaks a property above.
pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let sources: [fn(&str) -> Source; 2] = [
        |t| Source::local("/etc/tandem/tandem.toml", t),
        |t| Source::image("/usr/lib/tandem/conf.d/50-image.toml", t),
    ];
    for make in sources {
        let a = config::parse(&[make(text)]);
        let b = config::parse(&[make(text)]);
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
    }
}

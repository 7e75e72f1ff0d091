//! BLS entry names (boot::sdboot::entry): parse_tries, after_boot and
//! EntryName::parse over any string: never panic; a counted name boots to
//! one with a try fewer and one more done, as systemd-boot renames it; our
//! own names print and parse back unchanged.
//!
//! Shared by the fuzz target and agent/tests/fuzz_regressions.rs.

use tandem::boot::sdboot::entry::{after_boot, parse_tries, EntryName, Tries};

/// Panics if `data` breaks a property above.
pub fn check(data: &[u8]) {
    let Ok(name) = std::str::from_utf8(data) else {
        return;
    };
    let tries = parse_tries(name);
    let next = after_boot(name);
    assert_eq!(tries.is_some(), next.is_some());
    if let (Some(t), Some(n)) = (tries, &next) {
        assert_eq!(
            parse_tries(n),
            Some(Tries {
                left: t.left.saturating_sub(1),
                done: t.done.saturating_add(1).min(i32::MAX as u32),
            }),
            "{name:?} -> {n:?}"
        );
    }
    if let Some(e) = EntryName::parse(name) {
        let printed = e.to_string();
        assert_eq!(EntryName::parse(&printed), Some(e));
        assert_eq!(e.tries(), parse_tries(&printed));
        assert!(name.eq_ignore_ascii_case(&printed) || e.tries().is_some());
    }
}

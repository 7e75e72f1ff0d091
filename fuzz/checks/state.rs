//! tandem::state::State::parse over any bytes: never panics; a state it
//! accepts has both slot groups and survives to_bytes/parse unchanged.
//!
//! Shared by the fuzz target and agent/tests/fuzz_regressions.rs.

use std::path::Path;

use tandem::slot::SlotGroup;
use tandem::state::State;

/// Panics if `data` breaks a property above.
pub fn check(data: &[u8]) {
    let path = Path::new("/var/lib/tandem/state.json");
    let Ok(s) = State::parse(data, path) else {
        return;
    };
    for g in SlotGroup::ALL {
        let _ = s.slot(g);
    }
    let bytes = s.to_bytes();
    let again = State::parse(&bytes, path).expect("own state parses");
    assert_eq!(again.to_bytes(), bytes);
}

//! boot::grub::decode over any bytes: never panics; names it returns are
//! unique; and decode(encode(vars)) == vars whenever encode accepts them.
//!
//! Shared by the fuzz target and agent/tests/fuzz_regressions.rs.

use std::collections::BTreeMap;

use tandem::boot::grub;

/// Panics if `data` breaks a property above.
pub fn check(data: &[u8]) {
    let Ok(vars) = grub::decode(data) else {
        return;
    };
    let map: BTreeMap<String, String> = vars.iter().cloned().collect();
    assert_eq!(map.len(), vars.len(), "a name returned twice");
    let size = data.len().max(grub::DEFAULT_SIZE);
    if let Ok(block) = grub::encode(&map, size) {
        assert_eq!(block.len(), size);
        let back: BTreeMap<String, String> = grub::decode(&block)
            .expect("own block decodes")
            .into_iter()
            .collect();
        assert_eq!(back, map);
    }
}

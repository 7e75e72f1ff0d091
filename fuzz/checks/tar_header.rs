//! bundle::tar::parse_header over any 512 bytes: never panics; a member it
//! accepts has a safe name, all of it in the name field, and a size whose
//! padded length fits a u64, and
//! building that header again parses back to the same member.
//!
//! Shared by the fuzz target and agent/tests/fuzz_regressions.rs.

use tandem::bundle::tar::{self, Block, BLOCK};

/// Panics if `data` breaks a property above.
pub fn check(data: &[u8]) {
    let mut b = [0u8; BLOCK];
    let n = data.len().min(BLOCK);
    b[..n].copy_from_slice(&data[..n]);
    let Ok(Block::Member(h)) = tar::parse_header(&b) else {
        return;
    };
    tar::check_name(&h.name).expect("an accepted name is safe");
    // What any tar reader takes for the name (a v7 one reads only the name
    // field) is the name that was checked.
    let field = b[..100].split(|&x| x == 0).next().unwrap();
    assert_eq!(
        field,
        h.name.as_bytes(),
        "name not from the name field alone"
    );
    assert!(
        h.size.checked_add(tar::padding(h.size)).is_some(),
        "size {} overflows with its padding",
        h.size
    );
    if let Ok(again) = tar::build_header(&h) {
        // Name and size survive; mtime is informational and build_header
        // clamps it to 11 octal digits (a 12-digit one parses).
        let Ok(Block::Member(back)) = tar::parse_header(&again) else {
            panic!("own header refused: {:?}", tar::parse_header(&again));
        };
        assert_eq!((&back.name, back.size), (&h.name, h.size));
        assert_eq!(back.mtime, h.mtime.min(0o77777777777));
    }
}

//! boot::uboot_file::decode (the `env import -t` text file) over any
//! bytes: never panics; decode(encode(vars)) == vars whenever encode
//! accepts the decoded variables.
//!
//! Shared by the fuzz target and agent/tests/fuzz_regressions.rs.

use tandem::boot::uboot_file;

/// Panics if `data` breaks a property above.
pub fn check(data: &[u8]) {
    let Ok(vars) = uboot_file::decode(data) else {
        return;
    };
    let Ok(text) = uboot_file::encode(&vars) else {
        return;
    };
    let back = uboot_file::decode(&text).expect("own text decodes");
    // encode leaves empty values out (U-Boot reads them as absent).
    let want: std::collections::BTreeMap<_, _> =
        vars.into_iter().filter(|(_, v)| !v.is_empty()).collect();
    assert_eq!(back, want);
}

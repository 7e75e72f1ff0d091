//! boot::uboot::decode (the binary fw_env copy) over any bytes, single and
//! redundant layout: never panics; a copy it accepts encodes back (names
//! permitting) to a copy that decodes to the same variables and flag.
//!
//! Shared by the fuzz target and agent/tests/fuzz_regressions.rs.

use tandem::boot::uboot::{self, Layout};

/// Panics if `data` breaks a property above.
pub fn check(data: &[u8]) {
    let Some((&sel, raw)) = data.split_first() else {
        return;
    };
    let layout = if sel & 1 == 0 {
        Layout::Single
    } else {
        Layout::Redundant
    };
    // Most inputs fail the CRC; with bit 1 set, fix it up so the fuzzer
    // reaches the variable parser.
    let mut bytes = raw.to_vec();
    if sel & 2 != 0 && bytes.len() > layout.header() {
        let crc = uboot::crc32(&bytes[layout.header()..]);
        bytes[..4].copy_from_slice(&crc.to_le_bytes());
    }
    let Ok(copy) = uboot::decode(&bytes, bytes.len(), layout) else {
        return;
    };
    assert_eq!(copy.flag.is_some(), layout == Layout::Redundant);
    assert!(copy.vars.values().all(|v| !v.is_empty()));
    if copy.vars.keys().any(|k| uboot::check_name(k).is_err()) {
        return;
    }
    let enc = uboot::encode(&copy.vars, bytes.len(), layout, copy.flag.unwrap_or(0))
        .expect("what fit decodes fits encoded");
    assert_eq!(uboot::decode(&enc, enc.len(), layout).as_ref(), Ok(&copy));
}

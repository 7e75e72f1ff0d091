//! Everything a build derives instead of drawing at random, so that the
//! same inputs give the same bytes: identifiers, UUIDs, the build time. A
//! leaf.

use sha2::{Digest, Sha256};

/// A stable identifier derived from the recipe: same inputs, same bytes.
pub fn derive(seed: &str, what: &str) -> [u8; 32] {
    Sha256::digest(format!("tandem-image\0{seed}\0{what}").as_bytes()).into()
}

/// A UUID string derived like [`derive`].
pub fn derive_uuid(seed: &str, what: &str) -> String {
    let d = derive(seed, what);
    let h = hex::encode(&d[..16]);
    format!(
        "{}-{}-4{}-8{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// Build time: SOURCE_DATE_EPOCH, else a fixed default (2026-01-01), so
/// builds without it are reproducible too.
pub fn build_epoch() -> u64 {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_767_225_600)
}

//! bundle::manifest::Manifest::parse (and so validate) over any bytes: never
//! panics; an accepted manifest validates, survives to_bytes/parse
//! unchanged, names members the tar layer accepts, bounds its chunk index,
//! and has dm-verity parameters dm-verity can use. (The fuzz target also
//! checks them against the initramfs's command-line parser.)
//!
//! Shared by the fuzz target and agent/tests/fuzz_regressions.rs.

use tandem::bundle::chunks::{ChunkList, ENTRY};
use tandem::bundle::manifest::{chunks_member_name, member_name, Manifest, MAX_CHUNKS};
use tandem::bundle::tar;

/// Panics if `data` breaks a property above; the manifest if accepted.
pub fn check(data: &[u8]) -> Option<Manifest> {
    let m = Manifest::parse(data).ok()?;
    m.validate().expect("parse validates");
    assert_eq!(Manifest::parse(&m.to_bytes()).as_ref(), Ok(&m));
    for (i, img) in m.images.iter().enumerate() {
        tar::check_name(&member_name(i, img)).expect("payload member name");
        assert!(member_name(i, img).len() <= 100);
        if let Some(v) = &img.verity {
            // What dm-verity needs (and the initramfs checks at boot).
            assert_eq!(v.root_hash.len(), 64, "a sha256 root hash");
            assert!(v.hash_offset > 0 && v.hash_offset <= img.size);
            assert!(v.hash_offset.is_multiple_of(u64::from(v.data_block_size)));
            assert!(v.hash_offset.is_multiple_of(u64::from(v.hash_block_size)));
        }
        if let Some(c) = &img.chunks {
            tar::check_name(&chunks_member_name(i, img)).expect("chunk member name");
            let n = ChunkList::count(img.size, c.size);
            assert!(n <= MAX_CHUNKS && n * ENTRY as u64 <= MAX_CHUNKS * ENTRY as u64);
        }
    }
    Some(m)
}

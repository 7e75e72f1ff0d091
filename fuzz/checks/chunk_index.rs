//! bundle::chunks::ChunkList::new over any bytes and sizes, then a
//! ChunkCheck fed the rest of the input in pieces: never panics; an index
//! accepted holds one entry per chunk; an image checks against the index
//! built from it, whatever the piece size.
//!
//! Shared by the fuzz target and agent/tests/fuzz_regressions.rs.

use tandem::bundle::chunks::{ChunkCheck, ChunkList, ENTRY};

/// Panics if `data` breaks a property above.
pub fn check(data: &[u8]) {
    if data.len() < 13 {
        return;
    }
    let (head, rest) = data.split_at(13);
    let raw_size = u32::from_le_bytes(head[0..4].try_into().unwrap());
    let image_size = u64::from_le_bytes(head[4..12].try_into().unwrap());
    let piece = usize::from(head[12]) + 1;
    // Any sizes at all: the constructor must refuse what does not fit.
    if let Some(list) = ChunkList::new(rest.to_vec(), raw_size, image_size) {
        assert_eq!(list.as_bytes().len() as u64, list.len() * ENTRY as u64);
    }
    // Sizes the manifest allows (4 KiB..64 KiB of its 4 KiB..1 MiB: each
    // ChunkCheck hashes one chunk of zeros up front, which at 1 MiB made
    // this target run at 160 inputs/s), an image made of the input: its
    // own index accepts it, one flipped byte does not.
    let size = 4096u32 << (head[0] % 5);
    let len = (rest.len() * (1 + usize::from(head[1] % 8) * 64)).min(128 << 10);
    let image: Vec<u8> = rest.iter().cycle().take(len).copied().collect();
    let list = ChunkList::of(&image, size);
    let again = ChunkList::new(list.as_bytes().to_vec(), size, image.len() as u64)
        .expect("an index built from the image fits it");
    let mut c = ChunkCheck::new(&again);
    for p in image.chunks(piece) {
        c.update(p).expect("the image matches its own index");
    }
    c.finish().expect("complete");
    if !image.is_empty() {
        let mut bad = image.clone();
        let at = usize::from(head[2]) * 257 % bad.len();
        bad[at] ^= 1;
        let mut c = ChunkCheck::new(&again);
        let r = bad
            .chunks(piece)
            .try_for_each(|p| c.update(p))
            .and_then(|_| c.finish());
        let e = r.expect_err("a flipped byte is caught");
        assert_eq!(e.chunk, at as u64 / u64::from(size));
    }
    // The index as it would arrive in a bundle, checked against the input.
    if let Some(list) = ChunkList::new(rest.to_vec(), size, image_size % (1 << 24)) {
        let mut c = ChunkCheck::new(&list);
        let _ = image
            .chunks(piece)
            .try_for_each(|p| c.update(p))
            .and_then(|_| c.finish());
    }
}

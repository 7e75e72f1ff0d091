//! Chunk indexes: the SHA-256 of every fixed-size chunk of an image, in a
//! member of their own just before the image's payload, the index itself
//! pinned by a hash in the signed manifest (docs/bundle-format.md).
//!
//! With an index the installer checks each chunk *before* writing it, so a
//! corrupt or tampered payload never reaches the slot and the error names
//! the chunk. A chunk of zeros (free space in a filesystem image) is
//! checked by comparing it with zero, which is exact: its hash is the hash
//! of that many zero bytes, computed once. The same index lets a later
//! adaptive update fetch only the chunks a device lacks.

use sha2::{Digest, Sha256};

/// Bytes per entry: one SHA-256.
pub const ENTRY: usize = 32;

/// An image's chunk hashes, checked against the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkList {
    size: u32,
    image_size: u64,
    hashes: Vec<u8>,
}

/// A chunk that does not match its index entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "chunk {chunk} (image bytes {offset}..{end}) does not match the chunk index",
    end = offset + *len as u64
)]
pub struct ChunkMismatch {
    pub chunk: u64,
    pub offset: u64,
    pub len: usize,
}

impl ChunkList {
    /// Number of chunks an image of `image_size` bytes has.
    pub fn count(image_size: u64, size: u32) -> u64 {
        image_size.div_ceil(u64::from(size))
    }

    /// Takes the index member's bytes; `None` unless they hold exactly one
    /// entry per chunk.
    /// A zero chunk size, or an entry count whose byte length overflows,
    /// is no index at all (the manifest rules both out, but the
    /// constructor must not divide by zero or wrap on its own).
    pub fn new(bytes: Vec<u8>, size: u32, image_size: u64) -> Option<ChunkList> {
        let want = (size > 0)
            .then(|| Self::count(image_size, size).checked_mul(ENTRY as u64))
            .flatten()?;
        (bytes.len() as u64 == want).then_some(ChunkList {
            size,
            image_size,
            hashes: bytes,
        })
    }

    /// Computes the index of `data` (for tests; writers stream through a
    /// [`ChunkListBuilder`]).
    pub fn of(data: &[u8], size: u32) -> ChunkList {
        let mut b = ChunkListBuilder::new(size);
        b.update(data);
        b.finish()
    }

    pub fn size(&self) -> u32 {
        self.size
    }

    pub fn len(&self) -> u64 {
        (self.hashes.len() / ENTRY) as u64
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.hashes
    }

    fn entry(&self, chunk: u64) -> &[u8] {
        let at = chunk as usize * ENTRY;
        &self.hashes[at..at + ENTRY]
    }

    fn chunk_len(&self, chunk: u64) -> usize {
        let start = chunk * u64::from(self.size);
        self.image_size
            .saturating_sub(start)
            .min(u64::from(self.size)) as usize
    }
}

/// Builds the chunk list of an image fed front to back in pieces of any
/// size.
pub struct ChunkListBuilder {
    size: usize,
    image_size: u64,
    filled: usize,
    hash: Sha256,
    hashes: Vec<u8>,
}

impl ChunkListBuilder {
    pub fn new(size: u32) -> ChunkListBuilder {
        ChunkListBuilder {
            size: size as usize,
            image_size: 0,
            filled: 0,
            hash: Sha256::new(),
            hashes: Vec::new(),
        }
    }

    pub fn update(&mut self, mut data: &[u8]) {
        self.image_size += data.len() as u64;
        while !data.is_empty() {
            let take = (self.size - self.filled).min(data.len());
            self.hash.update(&data[..take]);
            self.filled += take;
            data = &data[take..];
            if self.filled == self.size {
                let digest = std::mem::take(&mut self.hash).finalize();
                self.hashes.extend_from_slice(&digest);
                self.filled = 0;
            }
        }
    }

    /// The list, the last (shorter) chunk included.
    pub fn finish(mut self) -> ChunkList {
        if self.filled > 0 {
            self.hashes.extend_from_slice(&self.hash.finalize());
        }
        ChunkList {
            size: self.size as u32,
            image_size: self.image_size,
            hashes: self.hashes,
        }
    }
}

/// Checks an image, fed front to back in pieces of any size, against its
/// chunk list.
pub struct ChunkCheck<'a> {
    list: &'a ChunkList,
    zero_hash: [u8; 32],
    /// The chunk being fed.
    chunk: u64,
    /// Bytes of it fed so far, and their running hash.
    filled: usize,
    partial: Sha256,
}

impl<'a> ChunkCheck<'a> {
    pub fn new(list: &'a ChunkList) -> ChunkCheck<'a> {
        // The hash of a chunk of zeros, without a chunk-sized buffer.
        let mut zero = Sha256::new();
        let block = [0u8; 4096];
        for _ in 0..list.size as usize / block.len() {
            zero.update(block);
        }
        ChunkCheck {
            list,
            zero_hash: zero.finalize().into(),
            chunk: 0,
            filled: 0,
            partial: Sha256::new(),
        }
    }

    fn mismatch(&self) -> ChunkMismatch {
        ChunkMismatch {
            chunk: self.chunk,
            offset: self.chunk * u64::from(self.list.size),
            len: self.list.chunk_len(self.chunk),
        }
    }

    /// Checks one whole chunk given at once.
    fn whole(&self, piece: &[u8]) -> bool {
        let want = self.list.entry(self.chunk);
        if piece.len() == self.list.size as usize && is_zero(piece) {
            return want == self.zero_hash;
        }
        want == Sha256::digest(piece).as_slice()
    }

    /// Feeds the next bytes of the image. More bytes than the list covers
    /// are a mismatch of the chunk after the last.
    pub fn update(&mut self, mut data: &[u8]) -> Result<(), ChunkMismatch> {
        while !data.is_empty() {
            if self.chunk >= self.list.len() {
                return Err(self.mismatch());
            }
            let len = self.list.chunk_len(self.chunk);
            let take = (len - self.filled).min(data.len());
            let (piece, rest) = data.split_at(take);
            data = rest;
            let ok = if self.filled == 0 && take == len {
                self.whole(piece)
            } else {
                self.partial.update(piece);
                self.filled += take;
                if self.filled < len {
                    continue;
                }
                self.filled = 0;
                let digest = std::mem::take(&mut self.partial).finalize();
                self.list.entry(self.chunk) == digest.as_slice()
            };
            if !ok {
                return Err(self.mismatch());
            }
            self.chunk += 1;
        }
        Ok(())
    }

    /// After the last byte: every chunk must have been fed whole.
    pub fn finish(&self) -> Result<(), ChunkMismatch> {
        if self.chunk == self.list.len() && self.filled == 0 {
            Ok(())
        } else {
            Err(self.mismatch())
        }
    }
}

/// Whether `b` is all zero bytes: 4 KiB at a time, each folded without an
/// early exit so that it vectorizes (a byte loop that stops at the first
/// non-zero byte runs no faster than SHA-256 itself).
fn is_zero(b: &[u8]) -> bool {
    b.chunks(4096)
        .all(|block| block.iter().fold(0u8, |acc, &x| acc | x) == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CS: u32 = 4096;

    fn image() -> Vec<u8> {
        // Data, a chunk of zeros, data, a partial last chunk.
        let mut v: Vec<u8> = (0..CS as usize).map(|i| (i % 251) as u8).collect();
        v.extend(std::iter::repeat_n(0u8, CS as usize));
        v.extend((0..CS as usize).map(|i| (i % 13) as u8 + 1));
        v.extend(std::iter::repeat_n(9u8, 1000));
        v
    }

    fn check_in_pieces(list: &ChunkList, data: &[u8], piece: usize) -> Result<(), ChunkMismatch> {
        let mut c = ChunkCheck::new(list);
        for p in data.chunks(piece) {
            c.update(p)?;
        }
        c.finish()
    }

    #[test]
    fn an_intact_image_passes_whatever_the_piece_size() {
        let data = image();
        let list = ChunkList::of(&data, CS);
        assert_eq!(list.len(), 4);
        for piece in [1, 7, 1000, 4096, 8192, 1 << 20] {
            check_in_pieces(&list, &data, piece).unwrap();
        }
    }

    #[test]
    fn a_changed_byte_names_its_chunk_whatever_the_piece_size() {
        let data = image();
        let list = ChunkList::of(&data, CS);
        for (at, chunk) in [(0, 0), (4096 + 17, 1), (3 * 4096 + 999, 3)] {
            let mut bad = data.clone();
            bad[at] ^= 1;
            for piece in [1, 1000, 4096, 1 << 20] {
                let e = check_in_pieces(&list, &bad, piece).unwrap_err();
                assert_eq!(e.chunk, chunk, "byte {at}, pieces of {piece}");
                assert_eq!(e.offset, chunk * 4096);
            }
        }
    }

    #[test]
    fn zeros_where_the_index_has_data_are_refused() {
        // The zero shortcut compares with the hash of zeros, never skips.
        let data = image();
        let list = ChunkList::of(&data, CS);
        let mut zeroed = data.clone();
        zeroed[..4096].fill(0);
        assert_eq!(check_in_pieces(&list, &zeroed, 4096).unwrap_err().chunk, 0);
        // And data where the index has zeros.
        let mut filled = data.clone();
        filled[4096 + 5] = 1;
        assert_eq!(check_in_pieces(&list, &filled, 4096).unwrap_err().chunk, 1);
    }

    #[test]
    fn too_short_or_too_long_is_refused() {
        let data = image();
        let list = ChunkList::of(&data, CS);
        let e = check_in_pieces(&list, &data[..data.len() - 1], 4096).unwrap_err();
        assert_eq!(e.chunk, 3);
        let mut long = data.clone();
        long.push(0);
        assert_eq!(check_in_pieces(&list, &long, 4096).unwrap_err().chunk, 4);
        let e = check_in_pieces(&list, &data[..2 * 4096], 4096).unwrap_err();
        assert_eq!(e.chunk, 2, "missing chunks are noticed at the end");
    }

    #[test]
    fn an_index_must_hold_one_entry_per_chunk() {
        let data = image();
        let bytes = ChunkList::of(&data, CS).as_bytes().to_vec();
        assert!(ChunkList::new(bytes.clone(), CS, data.len() as u64).is_some());
        assert!(ChunkList::new(bytes.clone(), CS, data.len() as u64 + 4096).is_none());
        assert!(ChunkList::new(bytes[..32 * 3].to_vec(), CS, data.len() as u64).is_none());
    }

    #[test]
    fn a_zero_chunk_size_or_an_overflowing_count_is_no_index() {
        // Used to divide by zero, and to overflow `count * 32`.
        assert!(ChunkList::new(vec![], 0, 100).is_none());
        assert!(ChunkList::new(vec![], 0, 0).is_none());
        assert!(ChunkList::new(vec![0; 32], 1, u64::MAX).is_none());
        assert!(ChunkList::new(vec![], 4096, 0).is_some());
    }

    #[test]
    fn zero_check() {
        assert!(is_zero(&[0; 10_000]));
        for at in [0, 4095, 4096, 9_999] {
            let mut b = vec![0u8; 10_000];
            b[at] = 0x80;
            assert!(!is_zero(&b), "{at}");
        }
    }
}

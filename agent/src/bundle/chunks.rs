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
/// Bytes per entry of a content-defined chunk table: the SHA-256, then the
/// chunk's length and its stored (compressed) length, u32 little-endian.
pub const TABLE_ENTRY: usize = 40;

/// An image's chunk hashes, checked against the manifest: fixed-size
/// chunks (an index), or content-defined ones (a table, which also says
/// where each chunk is stored in the payload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkList {
    /// The fixed chunk size; for a table, its largest chunk (`cdc.max`).
    size: u32,
    image_size: u64,
    /// The member's bytes: `stride`-byte entries, each starting with the hash.
    hashes: Vec<u8>,
    stride: usize,
    /// A table's image offset of each chunk and of the end (count + 1), and
    /// the same for the payload.
    starts: Vec<u64>,
    stored: Vec<u64>,
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
            stride: ENTRY,
            starts: Vec::new(),
            stored: Vec::new(),
        })
    }

    /// Takes a content-defined chunk table's bytes; `None` unless it holds
    /// `count` entries whose lengths (1 to `max` each) add up to
    /// `image_size` and whose stored lengths (at least 1) add up to
    /// `payload_size`.
    pub fn table(
        bytes: Vec<u8>,
        count: u64,
        max: u32,
        image_size: u64,
        payload_size: u64,
    ) -> Option<ChunkList> {
        if bytes.len() as u64 != count.checked_mul(TABLE_ENTRY as u64)? || max == 0 {
            return None;
        }
        let n = count as usize;
        let (mut starts, mut stored) = (Vec::with_capacity(n + 1), Vec::with_capacity(n + 1));
        let (mut at, mut sat) = (0u64, 0u64);
        for e in bytes.chunks_exact(TABLE_ENTRY) {
            let len = u32::from_le_bytes(e[32..36].try_into().expect("4 bytes"));
            let st = u32::from_le_bytes(e[36..40].try_into().expect("4 bytes"));
            if len == 0 || len > max || st == 0 {
                return None;
            }
            starts.push(at);
            stored.push(sat);
            at += u64::from(len);
            sat += u64::from(st);
        }
        starts.push(at);
        stored.push(sat);
        (at == image_size && sat == payload_size).then_some(ChunkList {
            size: max,
            image_size,
            hashes: bytes,
            stride: TABLE_ENTRY,
            starts,
            stored,
        })
    }

    /// Builds a table from (hash, length, stored length) entries.
    pub fn table_of(entries: &[([u8; 32], u32, u32)], max: u32) -> Option<ChunkList> {
        let mut bytes = Vec::with_capacity(entries.len() * TABLE_ENTRY);
        for (h, len, st) in entries {
            bytes.extend_from_slice(h);
            bytes.extend_from_slice(&len.to_le_bytes());
            bytes.extend_from_slice(&st.to_le_bytes());
        }
        let size: u64 = entries.iter().map(|e| u64::from(e.1)).sum();
        let stored: u64 = entries.iter().map(|e| u64::from(e.2)).sum();
        Self::table(bytes, entries.len() as u64, max, size, stored)
    }

    /// Whether this is a content-defined chunk table.
    pub fn is_table(&self) -> bool {
        self.stride == TABLE_ENTRY
    }

    /// Image bytes `start..end` of chunk `i`.
    pub fn span(&self, i: u64) -> (u64, u64) {
        if self.is_table() {
            (self.starts[i as usize], self.starts[i as usize + 1])
        } else {
            let start = i * u64::from(self.size);
            (start, start + self.chunk_len(i) as u64)
        }
    }

    /// Payload bytes `start..end` that store chunk `i` (tables only).
    pub fn stored_span(&self, i: u64) -> (u64, u64) {
        (self.stored[i as usize], self.stored[i as usize + 1])
    }

    /// Chunk `i`'s SHA-256.
    pub fn hash(&self, i: u64) -> &[u8] {
        self.entry(i)
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
        (self.hashes.len() / self.stride) as u64
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.hashes
    }

    fn entry(&self, chunk: u64) -> &[u8] {
        let at = chunk as usize * self.stride;
        &self.hashes[at..at + ENTRY]
    }

    fn chunk_len(&self, chunk: u64) -> usize {
        if self.is_table() {
            let (a, b) = self.span(chunk);
            return (b - a) as usize;
        }
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
            stride: ENTRY,
            starts: Vec::new(),
            stored: Vec::new(),
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
        let size = list.size as usize;
        for _ in 0..size / block.len() {
            zero.update(block);
        }
        zero.update(&block[..size % block.len()]);
        ChunkCheck {
            list,
            zero_hash: zero.finalize().into(),
            chunk: 0,
            filled: 0,
            partial: Sha256::new(),
        }
    }

    fn mismatch(&self) -> ChunkMismatch {
        let in_list = self.chunk < self.list.len();
        ChunkMismatch {
            chunk: self.chunk,
            offset: if in_list {
                self.list.span(self.chunk).0
            } else {
                self.list.image_size
            },
            len: if in_list {
                self.list.chunk_len(self.chunk)
            } else {
                0
            },
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

    fn table_image() -> (Vec<u8>, Vec<crate::bundle::cdc::Entry>) {
        // Chunks of 1000, 5000 (zeros, the max), 3, 2000 bytes.
        let data = image();
        let lens = [1000u32, 5000, 3, 2000];
        let mut v = Vec::new();
        let mut at = 0usize;
        let mut img = Vec::new();
        for (i, &l) in lens.iter().enumerate() {
            let piece: Vec<u8> = if i == 1 {
                vec![0u8; l as usize]
            } else {
                data[at..at + l as usize].to_vec()
            };
            at += l as usize;
            v.push((Sha256::digest(&piece).into(), l, l / 2 + 1));
            img.extend_from_slice(&piece);
        }
        (img, v)
    }

    #[test]
    fn tables_of_variable_chunks() {
        let (img, entries) = table_image();
        let t = ChunkList::table_of(&entries, 5000).unwrap();
        assert!(t.is_table());
        assert_eq!(t.len(), 4);
        assert_eq!(t.span(1), (1000, 6000));
        assert_eq!(t.span(3), (6003, 8003));
        assert_eq!(t.stored_span(0), (0, 501));
        assert_eq!(t.stored_span(2), (501 + 2501, 501 + 2501 + 2));
        for piece in [1, 7, 999, 1000, 4096, 100_000] {
            check_in_pieces(&t, &img, piece).unwrap();
        }
        let mut bad = img.clone();
        bad[6001] ^= 1;
        let e = check_in_pieces(&t, &bad, 333).unwrap_err();
        assert_eq!((e.chunk, e.offset, e.len), (2, 6000, 3));
        // The table's own consistency.
        let bytes = t.as_bytes().to_vec();
        let (size, stored) = (8003, 501 + 2501 + 2 + 1001);
        assert!(ChunkList::table(bytes.clone(), 4, 5000, size, stored).is_some());
        assert!(ChunkList::table(bytes.clone(), 4, 5000, size + 1, stored).is_none());
        assert!(ChunkList::table(bytes.clone(), 4, 5000, size, stored - 1).is_none());
        assert!(
            ChunkList::table(bytes.clone(), 4, 4999, size, stored).is_none(),
            "a chunk over max"
        );
        assert!(ChunkList::table(bytes.clone(), 3, 5000, size, stored).is_none());
        assert!(ChunkList::table(bytes[..79].to_vec(), 2, 5000, size, stored).is_none());
        let mut zero_len = bytes.clone();
        zero_len[32..36].fill(0);
        assert!(ChunkList::table(zero_len, 4, 5000, size - 1000, stored).is_none());
        assert!(ChunkList::table(bytes, u64::MAX, 5000, size, stored).is_none());
    }
}

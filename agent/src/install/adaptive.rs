//! Adaptive installs: a content-defined image is written from the chunks
//! the booted slot already has, and only the rest is fetched from the
//! bundle by byte range — the same bundle a full install streams, no
//! per-version-pair delta on the server.
//!
//! 1. The booted slot is cut with the bundle's own chunking
//!    ([`crate::bundle::cdc`]) and hashed: a map from chunk hash to where
//!    that content lies in the booted slot.
//! 2. [`plan`]: every chunk of the new image is either there (reuse) or
//!    not (fetch); the chunks to fetch are adjacent in the payload where
//!    they are adjacent in the image, so they become few ranges, with gaps
//!    under [`MERGE_GAP`] fetched rather than split. If the fetch would be more than 3/4
//!    of the payload, the image is fetched whole instead (and that is said).
//! 3. The pipeline asks for the chunks in order ([`pipeline::ChunkSource`]):
//!    a reused chunk is read from the booted slot and checked against the
//!    table *before* it is used (a booted slot that does not hold what its
//!    index said is fetched instead); a fetched one is decoded; the hash
//!    stage checks every chunk again before it is written, as for any plan.

use std::collections::HashMap;
use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::pipeline::{self, ChunkSource, Got, PipelineError};
use crate::bundle::cdc::{self, Params};
use crate::bundle::chunks::ChunkList;
use crate::bundle::manifest::{chunks_member_name, member_name, Image};
use crate::bundle::BundleError;
use crate::fetch::{FetchError, Shared};
use crate::sys::{SlotReader, SysError};

/// The first range an install reads of a remote bundle: its manifest and
/// signatures (most are a few KiB).
pub const HEAD_WINDOW: u64 = 16 << 10;
/// Two ranges to fetch closer than this become one (the bytes between
/// cost less than another request). Measured on Debian update pairs
/// (bench/README.md): 0 fetches 2 % fewer bytes in 30 % more requests than
/// 4 KiB; 16 KiB fetches 12 % more bytes in half the requests.
pub const MERGE_GAP: u64 = 4 << 10;

/// What an adaptive install fetched and reused (kept in the state store's
/// record of the operation, so the type lives there).
pub use crate::state::Transfer as Stats;

/// Where each chunk of a slot's content lies, by hash; and the hash of
/// all of it, so that an image the slot already holds whole needs nothing
/// from the bundle, not even its chunk table.
pub struct SlotIndex {
    map: HashMap<u128, (u64, u32)>,
    /// The first bytes hashed whole, and their SHA-256.
    prefix: u64,
    whole: [u8; 32],
}

impl SlotIndex {
    /// Cuts and hashes `len` bytes of `slot` (its content, as far as it
    /// goes) with `p`, and hashes its first `prefix` bytes whole.
    pub fn build(
        slot: &SlotReader,
        len: u64,
        prefix: u64,
        p: &Params,
    ) -> Result<SlotIndex, SysError> {
        Self::from_reader(slot.stream(0, len), prefix, p).map_err(|source| SysError::Io {
            device: slot.device().to_path_buf(),
            what: "read",
            source,
        })
    }

    /// Cuts and hashes what `r` yields (an image read from anywhere), and
    /// hashes its first `prefix` bytes whole.
    pub fn from_reader(r: impl Read, prefix: u64, p: &Params) -> io::Result<SlotIndex> {
        let mut map = HashMap::new();
        let mut at = 0u64;
        let mut whole = Sha256::new();
        cdc::chunks(r, p, |c| {
            let left = prefix.saturating_sub(at).min(c.len() as u64) as usize;
            whole.update(&c[..left]);
            let key = key(&Sha256::digest(c));
            map.entry(key).or_insert((at, c.len() as u32));
            at += c.len() as u64;
            Ok(())
        })?;
        Ok(SlotIndex {
            map,
            prefix: at.min(prefix),
            whole: whole.finalize().into(),
        })
    }

    /// Whether the slot starts with exactly image `img` (built with its
    /// size as the `prefix`).
    pub fn holds(&self, img: &Image) -> bool {
        self.prefix == img.size && hex::encode(self.whole) == img.sha256
    }

    /// From (hash, offset, len) entries (tests).
    pub fn of(entries: impl IntoIterator<Item = ([u8; 32], u64, u32)>) -> SlotIndex {
        SlotIndex {
            map: entries
                .into_iter()
                .map(|(h, at, len)| (key(&h), (at, len)))
                .collect(),
            prefix: 0,
            whole: [0; 32],
        }
    }

    fn find(&self, hash: &[u8], len: u64) -> Option<u64> {
        self.map
            .get(&key(hash))
            .filter(|(_, l)| u64::from(*l) == len)
            .map(|(at, _)| *at)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// The lookup key: the first 16 bytes of the hash (a reused chunk is
/// checked in full before use, so a prefix collision costs a fetch only).
fn key(h: &[u8]) -> u128 {
    u128::from_le_bytes(h[..16].try_into().expect("a SHA-256"))
}

/// Where a chunk the device already has lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Local {
    /// In the booted slot, at this offset.
    Booted(u64),
    /// In the target slot, where it belongs: left there by an earlier
    /// install of the same image that did not finish, say.
    InPlace,
}

/// What to do for one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Per chunk: where the device has it, or `None` to fetch it.
    pub local: Vec<Option<Local>>,
    /// Payload ranges to fetch, in order (payload-relative, end exclusive).
    pub ranges: Vec<(u64, u64)>,
    /// Bytes the ranges cover.
    pub fetch: u64,
    /// Image bytes reused.
    pub reuse: u64,
}

impl Plan {
    /// Whether fetching the whole payload is the better deal.
    pub fn worse_than_full(&self, payload_size: u64) -> bool {
        self.fetch.saturating_mul(4) > payload_size.saturating_mul(3)
    }
}

/// Decides, chunk by chunk, what to reuse and what to fetch: a chunk the
/// booted slot has (`have`), else one `in_place` says the target slot holds
/// where it belongs, else fetched. Pure but for what `in_place` looks at.
pub fn plan(table: &ChunkList, have: &SlotIndex, in_place: &mut dyn FnMut(u64) -> bool) -> Plan {
    let mut local = Vec::with_capacity(table.len() as usize);
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    let mut reuse = 0;
    for i in 0..table.len() {
        let (a, b) = table.span(i);
        let found = match have.find(table.hash(i), b - a) {
            Some(at) => Some(Local::Booted(at)),
            None => in_place(i).then_some(Local::InPlace),
        };
        match found {
            Some(l) => {
                local.push(Some(l));
                reuse += b - a;
            }
            None => {
                local.push(None);
                let (sa, sb) = table.stored_span(i);
                match ranges.last_mut() {
                    Some(r) if sa <= r.1 + MERGE_GAP => r.1 = sb,
                    _ => ranges.push((sa, sb)),
                }
            }
        }
    }
    let fetch = ranges.iter().map(|(a, b)| b - a).sum();
    Plan {
        local,
        ranges,
        fetch,
        reuse,
    }
}

/// A plan carried out: chunks for the pipeline, from the booted slot or
/// from ranges of the bundle.
pub struct Adaptive<'a> {
    pub table: &'a ChunkList,
    pub plan: &'a Plan,
    pub booted: &'a SlotReader,
    /// The slot being written, for chunks already in place there.
    pub target: Option<&'a SlotReader>,
    pub src: Shared,
    /// The payload's first byte in the bundle.
    pub payload_start: u64,
    pub compressed: bool,
    pub cancel: Option<Arc<AtomicBool>>,
    pub stats: Stats,
    next_range: usize,
    /// The open range: its reader, where it is (payload-relative) and ends.
    cur: Option<(Box<dyn Read + Send>, u64, u64)>,
}

impl<'a> Adaptive<'a> {
    pub fn new(
        table: &'a ChunkList,
        plan: &'a Plan,
        booted: &'a SlotReader,
        src: Shared,
        payload_start: u64,
        compressed: bool,
        cancel: Option<Arc<AtomicBool>>,
    ) -> Adaptive<'a> {
        Adaptive {
            table,
            plan,
            booted,
            target: None,
            src,
            payload_start,
            compressed,
            cancel,
            stats: Stats::default(),
            next_range: 0,
            cur: None,
        }
    }

    /// Takes the chunks the plan found in place from `target`.
    pub fn with_target(mut self, target: Option<&'a SlotReader>) -> Adaptive<'a> {
        self.target = target;
        self
    }

    fn open(&mut self, a: u64, b: u64) -> Result<Box<dyn Read + Send>, FetchError> {
        self.stats.requests += 1;
        self.stats.fetched += b - a;
        let mut s = self.src.lock().expect("no panics while held");
        s.range(self.payload_start + a, self.payload_start + b)
    }

    /// Reads chunk `i`'s stored bytes into `dst` (exactly their length),
    /// from the ranges of the plan, or (`alone`) from a range of its own.
    fn stored(&mut self, i: u64, alone: bool, dst: &mut [u8]) -> io::Result<()> {
        let (a, b) = self.table.stored_span(i);
        debug_assert_eq!(dst.len() as u64, b - a);
        if alone {
            let mut r = self.open(a, b).map_err(io::Error::other)?;
            return r.read_exact(dst);
        }
        loop {
            match &mut self.cur {
                Some((r, pos, end)) if *pos <= a && b <= *end => {
                    io::copy(&mut r.by_ref().take(a - *pos), &mut io::sink())?;
                    r.read_exact(dst)?;
                    *pos = b;
                    return Ok(());
                }
                _ => {
                    let Some(&(ra, rb)) = self.plan.ranges.get(self.next_range) else {
                        return Err(io::Error::other(format!(
                            "chunk {i} is in no planned range"
                        )));
                    };
                    self.next_range += 1;
                    let r = self.open(ra, rb).map_err(io::Error::other)?;
                    self.cur = Some((r, ra, rb));
                }
            }
        }
    }
}

impl ChunkSource for Adaptive<'_> {
    fn fill(&mut self, i: u64, out: &mut [u8], input: &mut Vec<u8>) -> Result<Got, PipelineError> {
        let offset = self.table.span(i).0;
        let err = |source| PipelineError::Read { offset, source };
        if self
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
        {
            return Err(err(io::Error::other(super::CancelledRead)));
        }
        let mut alone = false;
        let local = match self.plan.local[i as usize] {
            Some(Local::Booted(at)) => Some((self.booted, at)),
            Some(Local::InPlace) => self.target.map(|t| (t, offset)),
            None => None,
        };
        if let Some((slot, at)) = local {
            let n = slot.read_at(at, out)?;
            if n == out.len() && Sha256::digest(&*out).as_slice() == self.table.hash(i) {
                self.stats.reused += n as u64;
                return Ok(Got::Bytes);
            }
            tracing::warn!(
                chunk = i,
                device = %slot.device().display(),
                "the slot no longer holds this chunk where it was found; fetching it"
            );
            alone = true;
        }
        if !self.compressed {
            self.stored(i, alone, out).map_err(err)?;
            return Ok(Got::Bytes);
        }
        let (a, b) = self.table.stored_span(i);
        pipeline::append_stored(input, (b - a) as usize, |dst| self.stored(i, alone, dst))
            .map_err(err)?;
        Ok(Got::Frame)
    }
}

/// Reads, by one range, image `index`'s table member (header, table,
/// padding) and its payload's header starting at bundle offset `off`, and
/// checks them as the stream reader would: names, sizes, the table's hash
/// and sums. Returns the table, where the payload starts, where the next
/// member starts, and the bytes fetched.
pub fn read_members(
    src: &Shared,
    off: u64,
    index: usize,
    img: &Image,
) -> Result<(ChunkList, u64, u64, u64), BundleError> {
    use crate::bundle::tar::{self, Block, BLOCK};
    let Layout {
        table: tsize,
        payload_start,
        next,
    } = layout(off, img);
    let padded = tsize + tar::padding(tsize);
    let want = payload_start - off;
    let mut buf = vec![0u8; want as usize];
    let io = |offset, source| BundleError::Io { offset, source };
    {
        let mut s = src.lock().expect("no panics while held");
        let mut r = s
            .range(off, off + want)
            .map_err(|e| io(off, io::Error::other(e)))?;
        r.read_exact(&mut buf).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                BundleError::Truncated {
                    offset: off,
                    what: format!("image {index}'s chunk table"),
                }
            } else {
                io(off, e)
            }
        })?;
    }
    let header = |at: usize, name: String, size: u64| -> Result<(), BundleError> {
        let block: &[u8; BLOCK] = buf[at..at + BLOCK].try_into().expect("a block");
        let offset = off + at as u64;
        match tar::parse_header(block).map_err(|source| BundleError::Tar { offset, source })? {
            Block::Member(h) if h.name == name && h.size == size => Ok(()),
            Block::Member(h) if h.name == name => Err(BundleError::PayloadSize {
                index,
                name,
                found: h.size,
                expected: size,
            }),
            Block::Member(h) => Err(BundleError::UnexpectedMember {
                offset,
                expected: name,
                found: h.name,
            }),
            Block::End => Err(BundleError::MissingImage {
                index,
                name,
                offset,
            }),
        }
    };
    header(0, chunks_member_name(index, img), tsize)?;
    let table = buf[BLOCK..BLOCK + tsize as usize].to_vec();
    let t = crate::bundle::reader::check_table(index, img, table)?;
    header(
        BLOCK + padded as usize,
        member_name(index, img),
        img.payload_size,
    )?;
    Ok((t, payload_start, next, want))
}

/// Where a content-defined image's members lie in the bundle when its
/// table member starts at `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Bytes of the chunk table.
    pub table: u64,
    /// The payload's first byte.
    pub payload_start: u64,
    /// Where the next member starts.
    pub next: u64,
}

/// The tar layout of image `img`'s table and payload members from `off`
/// (pure: the member headers are checked where they are read).
pub fn layout(off: u64, img: &Image) -> Layout {
    use crate::bundle::tar::{padding, BLOCK};
    let c = img.cdc.as_ref().expect("a content-defined image");
    let table = c.count * crate::bundle::chunks::TABLE_ENTRY as u64;
    let payload_start = off + 2 * BLOCK as u64 + table + padding(table);
    Layout {
        table,
        payload_start,
        next: payload_start + img.payload_size + padding(img.payload_size),
    }
}

/// After the last image: only the end-of-archive marker and zero padding
/// may follow (as the stream reader requires). Returns the bytes fetched.
pub fn check_end(src: &Shared, off: u64) -> Result<u64, BundleError> {
    let mut s = src.lock().expect("no panics while held");
    let size = s.size().map_err(|e| BundleError::Io {
        offset: off,
        source: io::Error::other(e),
    })?;
    let limit = 1024 + crate::bundle::reader::END_SLACK;
    if size < off {
        return Err(BundleError::Truncated {
            offset: size,
            what: "the last image".into(),
        });
    }
    if size - off > limit {
        return Err(BundleError::AfterEnd {
            offset: off + limit,
        });
    }
    let mut tail = Vec::new();
    s.range(off, size)
        .and_then(|mut r| {
            r.read_to_end(&mut tail).map_err(|e| FetchError::Protocol {
                url: String::new(),
                message: e.to_string(),
            })
        })
        .map_err(|e| BundleError::Io {
            offset: off,
            source: io::Error::other(e),
        })?;
    if let Some(i) = tail.iter().position(|&b| b != 0) {
        return Err(BundleError::AfterEnd {
            offset: off + i as u64,
        });
    }
    Ok(tail.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(n: u8) -> [u8; 32] {
        [n; 32]
    }

    #[test]
    fn plans_merge_close_ranges_and_reuse_what_is_there() {
        // 6 chunks of 1000 bytes, stored in 500 each.
        let entries: Vec<_> = (0..6).map(|i| (h(i), 1000, 500)).collect();
        let t = ChunkList::table_of(&entries, 4096).unwrap();
        // The booted slot has chunks 1, 2 and 5 (elsewhere).
        let have = SlotIndex::of([(h(1), 7000, 1000), (h(2), 0, 1000), (h(5), 3000, 1000)]);
        let p = plan(&t, &have, &mut |_| false);
        let b = |at| Some(Local::Booted(at));
        assert_eq!(p.local, [None, b(7000), b(0), None, None, b(3000)]);
        // Chunks 0 and 3-4 are 1000 payload bytes apart: one range.
        assert_eq!(p.ranges, [(0, 2500)]);
        assert_eq!((p.fetch, p.reuse), (2500, 3000));
        assert!(!p.worse_than_full(3000 * 2));
        // A length that differs is not the same chunk.
        let p = plan(&t, &SlotIndex::of([(h(1), 0, 999)]), &mut |_| false);
        assert_eq!(p.reuse, 0);
        assert!(p.worse_than_full(3000));
    }

    #[test]
    fn far_apart_chunks_are_separate_ranges() {
        let mut entries: Vec<_> = (0..3).map(|i| (h(i), 1000, 500)).collect();
        entries.insert(1, (h(9), 60_000, 40_000)); // reused, and big
        let t = ChunkList::table_of(&entries, 65536).unwrap();
        let p = plan(&t, &SlotIndex::of([(h(9), 0, 60_000)]), &mut |_| false);
        assert_eq!(p.ranges, [(0, 500), (40_500, 41_500)]);
    }

    #[test]
    fn chunks_in_place_in_the_target_are_not_fetched() {
        let entries: Vec<_> = (0..5).map(|i| (h(i), 1000, 500)).collect();
        let t = ChunkList::table_of(&entries, 4096).unwrap();
        // The booted slot has chunk 0; the target holds 1 and 2 in place
        // (and would say so of 0 too, but the booted slot comes first).
        let mut asked = Vec::new();
        let p = plan(&t, &SlotIndex::of([(h(0), 0, 1000)]), &mut |i| {
            asked.push(i);
            i <= 2
        });
        assert_eq!(asked, [1, 2, 3, 4]);
        let l = Some(Local::InPlace);
        assert_eq!(p.local, [Some(Local::Booted(0)), l, l, None, None]);
        assert_eq!(p.ranges, [(1500, 2500)]);
        assert_eq!(p.reuse, 3000);
    }
}

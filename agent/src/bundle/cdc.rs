//! Content-defined chunking (FastCDC, Xia et al., USENIX ATC 2016): cut
//! points that depend on the bytes around them, not on their offset, so an
//! insertion or a file that moved in a filesystem image shifts only the
//! chunks it touches. The chunks of an image are what an adaptive update
//! reuses from the booted slot or fetches.
//!
//! The cut rule is part of the bundle format (docs/bundle-format.md,
//! "Content-defined chunks"): a 64-bit gear hash `h = (h << 1) + GEAR[b]`
//! over the bytes since the last cut; no cut before `min`; from `min` to
//! `avg` a cut where the top `log2(avg) + 2` bits of `h` are zero, from
//! `avg` on where the top `log2(avg) - 2` bits are (FastCDC's "normalized
//! chunking", level 2); a cut at `max` regardless. `GEAR` is 256 values of
//! splitmix64 from seed 0. The top bits of `h` depend on the last 64 bytes
//! only, so the rule resynchronizes within one window after a change.

use std::io::{self, Read};

/// Chunk size bounds in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    pub min: u32,
    pub avg: u32,
    pub max: u32,
}

/// What `tandem bundle create` uses: 4 / 8 / 64 KiB (bench/README.md,
/// "Choosing the chunking", has the measurements behind the choice).
pub const DEFAULT: Params = Params {
    min: 4 << 10,
    avg: 8 << 10,
    max: 64 << 10,
};

/// Largest `max` a bundle may name (the installer holds one chunk, and its
/// compressed frame, per worker).
pub const MAX_CHUNK: u32 = 1 << 20;

impl Params {
    /// Powers of two with 64 <= min < avg < max <= MAX_CHUNK and
    /// max >= 4096 (a chunk of zeros is checked by 4 KiB blocks).
    pub fn validate(&self) -> Result<(), String> {
        let p2 = |v: u32| v.is_power_of_two();
        if !(p2(self.min) && p2(self.avg) && p2(self.max)) {
            return Err("chunk sizes must be powers of two".into());
        }
        if !(64 <= self.min
            && self.min < self.avg
            && self.avg < self.max
            && (4096..=MAX_CHUNK).contains(&self.max))
        {
            return Err(format!(
                "need 64 <= min < avg < max, 4096 <= max <= {MAX_CHUNK} (min {}, avg {}, max {})",
                self.min, self.avg, self.max
            ));
        }
        Ok(())
    }

    fn masks(&self) -> (u64, u64) {
        let bits = self.avg.trailing_zeros();
        let top = |n: u32| !0u64 << (64 - n);
        (top(bits + 2), top(bits - 2))
    }
}

const fn gear() -> [u64; 256] {
    let mut t = [0u64; 256];
    let mut state: u64 = 0;
    let mut i = 0;
    while i < 256 {
        // splitmix64
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        t[i] = z ^ (z >> 31);
        i += 1;
    }
    t
}

static GEAR: [u64; 256] = gear();

/// The length of the chunk that starts at `data[0]`, given that `data` is
/// everything up to `max` bytes ahead (or to the end of the image).
pub fn cut(data: &[u8], p: &Params) -> usize {
    let n = data.len().min(p.max as usize);
    let min = p.min as usize;
    if n <= min {
        return n;
    }
    let (mask_s, mask_l) = p.masks();
    let avg = (p.avg as usize).min(n);
    let mut h: u64 = 0;
    // The bytes before `min` still feed the hash (its window is 64 bytes).
    for &b in &data[min.saturating_sub(64)..min] {
        h = (h << 1).wrapping_add(GEAR[b as usize]);
    }
    let mut i = min;
    while i < avg {
        h = (h << 1).wrapping_add(GEAR[data[i] as usize]);
        i += 1;
        if h & mask_s == 0 {
            return i;
        }
    }
    while i < n {
        h = (h << 1).wrapping_add(GEAR[data[i] as usize]);
        i += 1;
        if h & mask_l == 0 {
            return i;
        }
    }
    n
}

/// Splits a stream into chunks, calling `f` with each in order. Holds at
/// most 2 x `max` bytes. Returns the total length.
pub fn chunks<R: Read>(
    mut r: R,
    p: &Params,
    mut f: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<u64> {
    let max = p.max as usize;
    let mut buf = vec![0u8; 2 * max];
    let (mut start, mut end) = (0usize, 0usize);
    let mut eof = false;
    let mut total = 0u64;
    loop {
        if !eof && end - start < max {
            buf.copy_within(start..end, 0);
            end -= start;
            start = 0;
            while end < buf.len() {
                match r.read(&mut buf[end..]) {
                    Ok(0) => {
                        eof = true;
                        break;
                    }
                    Ok(k) => end += k,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        if start == end {
            return Ok(total);
        }
        let len = cut(&buf[start..end], p);
        f(&buf[start..start + len])?;
        total += len as u64;
        start += len;
    }
}

/// One chunk as stored: its hash, length and stored length.
pub type Entry = ([u8; 32], u32, u32);

/// What [`compress`] made of an image.
pub struct Compressed {
    pub size: u64,
    pub sha256: [u8; 32],
    pub entries: Vec<Entry>,
    /// Bytes written to the payload.
    pub payload_size: u64,
}

/// Chunks `input` and writes each chunk to `out` as one zstd frame at
/// `level` (or as it is, with `level` `None`), compressing on `jobs`
/// threads. The output depends only on the input, `p` and `level`, never
/// on `jobs`. At most about 4 x `jobs` chunks are in memory.
pub fn compress(
    input: &mut (dyn Read + Send),
    out: &mut (dyn io::Write + Send),
    p: &Params,
    level: Option<i32>,
    jobs: usize,
) -> io::Result<Compressed> {
    use sha2::{Digest, Sha256};
    use std::collections::BTreeMap;
    use std::sync::mpsc::sync_channel;
    let jobs = jobs.max(1);
    let mut whole = Sha256::new();
    let (work_tx, work_rx) = sync_channel::<(u64, Vec<u8>)>(2 * jobs);
    let work_rx = std::sync::Mutex::new(work_rx);
    let (done_tx, done_rx) = sync_channel::<io::Result<(u64, Entry, Vec<u8>)>>(2 * jobs);
    std::thread::scope(|s| {
        for _ in 0..jobs {
            let (rx, tx) = (&work_rx, done_tx.clone());
            s.spawn(move || {
                let mut z = match level.map(zstd::bulk::Compressor::new).transpose() {
                    Ok(z) => z,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                if let Some(z) = &mut z {
                    if let Err(e) = z.include_checksum(false) {
                        let _ = tx.send(Err(e));
                        return;
                    }
                }
                loop {
                    let next = rx.lock().expect("no panics while held").recv();
                    let Ok((seq, data)) = next else { return };
                    let hash: [u8; 32] = Sha256::digest(&data).into();
                    let stored = match &mut z {
                        Some(z) => match z.compress(&data) {
                            Ok(c) => c,
                            Err(e) => {
                                let _ = tx.send(Err(e));
                                return;
                            }
                        },
                        None => data.clone(),
                    };
                    let entry = (hash, data.len() as u32, stored.len() as u32);
                    if tx.send(Ok((seq, entry, stored))).is_err() {
                        return;
                    }
                }
            });
        }
        drop(done_tx);
        // The collector: puts results back in order and writes them.
        let collector = s.spawn(move || -> io::Result<(Vec<Entry>, u64)> {
            let mut pending = BTreeMap::new();
            let (mut next, mut entries, mut written) = (0u64, Vec::new(), 0u64);
            for r in done_rx {
                let (seq, e, stored) = r?;
                pending.insert(seq, (e, stored));
                while let Some((e, stored)) = pending.remove(&next) {
                    out.write_all(&stored)?;
                    written += stored.len() as u64;
                    entries.push(e);
                    next += 1;
                }
            }
            if !pending.is_empty() {
                return Err(io::Error::other("a compression worker stopped"));
            }
            Ok((entries, written))
        });
        let mut seq = 0u64;
        let size = chunks(input, p, |c| {
            whole.update(c);
            work_tx
                .send((seq, c.to_vec()))
                .map_err(|_| io::Error::other("the compression workers stopped"))?;
            seq += 1;
            Ok(())
        });
        drop(work_tx);
        let collected = collector.join().expect("collector panicked");
        let size = size?;
        let (entries, payload_size) = collected?;
        if entries.len() as u64 != seq {
            return Err(io::Error::other("a compression worker stopped"));
        }
        Ok(Compressed {
            size,
            sha256: whole.finalize().into(),
            entries,
            payload_size,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut s = seed;
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                s as u8
            })
            .collect()
    }

    fn lengths(data: &[u8], p: &Params) -> Vec<usize> {
        let mut v = Vec::new();
        chunks(data, p, |c| {
            v.push(c.len());
            Ok(())
        })
        .unwrap();
        v
    }

    #[test]
    fn the_gear_table_is_fixed() {
        // The first splitmix64 outputs from seed 0: part of the format.
        assert_eq!(GEAR[0], 0xe220_a839_7b1d_cdaf);
        assert_eq!(GEAR[1], 0x6e78_9e6a_a1b9_65f4);
    }

    #[test]
    fn bounds_and_average() {
        let data = noise(8 << 20, 1);
        let l = lengths(&data, &DEFAULT);
        assert_eq!(l.iter().sum::<usize>(), data.len());
        assert!(l[..l.len() - 1]
            .iter()
            .all(|&n| (4096..=65536).contains(&n)));
        let avg = data.len() / l.len();
        assert!((7 << 10..14 << 10).contains(&avg), "average {avg}");
        // Zeros (free space) cut at max.
        let z = lengths(&vec![0u8; 1 << 20], &DEFAULT);
        assert!(z.iter().all(|&n| n == 65536), "{z:?}");
    }

    #[test]
    fn an_insertion_shifts_only_nearby_chunks() {
        let a = noise(4 << 20, 7);
        let mut b = a.clone();
        b.splice(2_000_000..2_000_000, noise(1000, 9));
        let set = |d: &[u8]| {
            let mut s = std::collections::HashSet::new();
            chunks(d, &DEFAULT, |c| {
                s.insert(c.to_vec());
                Ok(())
            })
            .unwrap();
            s
        };
        let (sa, sb) = (set(&a), set(&b));
        let new = sb.difference(&sa).count();
        // The chunk with the insertion, and a few after it until a cut
        // point lands where it did before (the mask depends on the
        // distance from the chunk's start); never the rest of the image.
        assert!(
            (1..=6).contains(&new),
            "{new} new chunks of {} for one 1000-byte insertion",
            sb.len()
        );
    }

    #[test]
    fn the_stream_and_the_slice_agree() {
        let data = noise(3 << 20, 3);
        // A reader that returns odd small reads.
        struct Dribble<'a>(&'a [u8]);
        impl Read for Dribble<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = buf.len().min(self.0.len()).min(777);
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut v = Vec::new();
        chunks(Dribble(&data), &DEFAULT, |c| {
            v.push(c.len());
            Ok(())
        })
        .unwrap();
        assert_eq!(v, lengths(&data, &DEFAULT));
    }

    #[test]
    fn params() {
        DEFAULT.validate().unwrap();
        for bad in [
            Params {
                min: 4096,
                avg: 4096,
                max: 65536,
            },
            Params {
                min: 4095,
                avg: 16384,
                max: 65536,
            },
            Params {
                min: 4096,
                avg: 16384,
                max: 2 << 20,
            },
            Params {
                min: 32,
                avg: 256,
                max: 1024,
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn compressed_output_is_the_same_whatever_the_jobs() {
        let mut data = noise(1 << 20, 5);
        data.extend(vec![0u8; 300_000]);
        data.extend(noise(77_777, 6));
        let run = |jobs, level| {
            let mut out = Vec::new();
            let c = compress(&mut &data[..], &mut out, &DEFAULT, level, jobs).unwrap();
            (out, c.entries, c.payload_size, c.sha256, c.size)
        };
        let one = run(1, Some(3));
        for jobs in [2, 3, 8] {
            assert!(run(jobs, Some(3)) == one, "{jobs} jobs");
        }
        let (out, entries, payload, sha, size) = one;
        assert_eq!(size, data.len() as u64);
        assert_eq!(payload, out.len() as u64);
        assert_eq!(sha, <[u8; 32]>::from(sha2::Sha256::digest(&data)));
        // Each stored chunk is one zstd frame that decodes to its chunk.
        let (mut at, mut img) = (0usize, Vec::new());
        for (h, len, st) in &entries {
            let frame = &out[at..at + *st as usize];
            let chunk = zstd::bulk::decompress(frame, *len as usize).unwrap();
            assert_eq!(chunk.len(), *len as usize);
            assert_eq!(<[u8; 32]>::from(sha2::Sha256::digest(&chunk)), *h);
            img.extend(chunk);
            at += *st as usize;
        }
        assert!(img == data);
        // Uncompressed: the payload is the image.
        let (raw, e, ..) = run(2, None);
        assert!(raw == data);
        assert!(e.iter().all(|(_, l, s)| l == s));
    }
}

//! Compresses an image into a framed payload on several threads, hashing it
//! on the way: one pass over the image, the same bytes whatever the number
//! of threads.
//!
//! The calling thread reads the image one frame at a time, feeds the
//! whole-image SHA-256 (which only a single pass in order can compute) and
//! hands the frame to a worker. Each worker compresses its frame as an
//! independent zstd frame ([`FrameEncoder`]) and, when the chunks fall
//! within frames, hashes the frame's chunks for the chunk index. The calling
//! thread writes the compressed frames back in image order. A frame's bytes
//! depend on nothing but its input and the level, so the payload is
//! byte-identical to a one-thread build (and to [`frames::encode`]).
//!
//! Memory stays bounded: at most two frames per worker are in flight (read
//! but not yet written), each with its input and output buffer; nothing
//! grows with the image but the chunk index.
//!
//! [`frames::encode`]: super::frames::encode

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use super::chunks::{ChunkList, ChunkListBuilder, ENTRY};
use super::frames::FrameEncoder;

/// How to compress one image.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Image bytes per zstd frame.
    pub frame_size: u32,
    /// Chunk index granularity; `None` for no index.
    pub chunk_size: Option<u32>,
    /// zstd level.
    pub level: i32,
    /// Threads compressing. 1 (or 0) compresses on the calling thread;
    /// more start that many workers beside it.
    pub jobs: usize,
}

/// Frames in flight (read, not yet written) per worker: one being
/// compressed, one queued or waiting for an earlier frame to be written.
const IN_FLIGHT_PER_JOB: usize = 2;

/// What the pass over the image found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hashed {
    /// Image bytes read.
    pub size: u64,
    pub sha256: [u8; 32],
    pub chunks: Option<ChunkList>,
}

#[derive(Debug, thiserror::Error)]
pub enum CompressError {
    #[error("reading the image: {0}")]
    Read(io::Error),
    #[error("compressing: {0}")]
    Zstd(io::Error),
    #[error("writing the payload: {0}")]
    Write(io::Error),
}

/// Reads `src` to its end and writes it to `out` as independent zstd frames
/// of `opts.frame_size` image bytes (the last one the rest), on
/// `opts.jobs` threads; returns the image's size, SHA-256 and chunk index.
pub fn compress(
    src: &mut dyn Read,
    out: &mut dyn Write,
    opts: &Options,
) -> Result<Hashed, CompressError> {
    let frame_size = opts.frame_size as usize;
    // Workers hash chunks when every chunk lies within one frame (both are
    // powers of two in a valid manifest); otherwise the reader does.
    let worker_chunks = opts
        .chunk_size
        .map(|c| c as usize)
        .filter(|&c| c > 0 && frame_size.is_multiple_of(c));
    let mut input = Input {
        src,
        hash: Sha256::new(),
        size: 0,
        chunks: match worker_chunks {
            Some(_) => None,
            None => opts.chunk_size.map(ChunkListBuilder::new),
        },
        done: false,
    };
    let mut output = Output {
        out,
        chunk_digests: Vec::new(),
    };
    let work = Work {
        level: opts.level,
        chunks: worker_chunks.map(|size| (size, Sha256::digest(vec![0u8; size]).into())),
    };
    if opts.jobs <= 1 {
        serial(&mut input, &mut output, &work, frame_size)?;
    } else {
        parallel(&mut input, &mut output, &work, frame_size, opts.jobs)?;
    }
    let chunks = match (input.chunks, worker_chunks) {
        (Some(b), _) => Some(b.finish()),
        (None, Some(c)) => Some(
            ChunkList::new(output.chunk_digests, c as u32, input.size).ok_or_else(|| {
                CompressError::Zstd(io::Error::other(
                    "internal: the workers' chunk hashes do not cover the image",
                ))
            })?,
        ),
        (None, None) => None,
    };
    Ok(Hashed {
        size: input.size,
        sha256: input.hash.finalize().into(),
        chunks,
    })
}

/// One frame on its way: image bytes in, zstd frame (and chunk hashes) out.
struct Frame {
    index: u64,
    input: Vec<u8>,
    /// Image bytes in `input` (all of it but in the last frame).
    len: usize,
    output: Vec<u8>,
    /// SHA-256 of each chunk in the frame, when workers hash chunks.
    chunk_digests: Vec<u8>,
    result: io::Result<()>,
}

impl Frame {
    fn new(frame_size: usize) -> Frame {
        Frame {
            index: 0,
            input: vec![0u8; frame_size],
            len: 0,
            output: Vec::new(),
            chunk_digests: Vec::new(),
            result: Ok(()),
        }
    }
}

/// The reading side: the image, its whole hash, and chunk hashes that
/// straddle frames.
struct Input<'a> {
    src: &'a mut dyn Read,
    hash: Sha256,
    size: u64,
    chunks: Option<ChunkListBuilder>,
    /// A short frame was read: the image has ended.
    done: bool,
}

impl Input<'_> {
    /// Reads the next frame into `f`; `false` once the image has ended.
    fn next(&mut self, f: &mut Frame) -> Result<bool, CompressError> {
        if self.done {
            return Ok(false);
        }
        let n = crate::sys::read_full(self.src, &mut f.input).map_err(CompressError::Read)?;
        self.done = n < f.input.len();
        if n == 0 {
            return Ok(false);
        }
        let data = &f.input[..n];
        self.hash.update(data);
        if let Some(c) = &mut self.chunks {
            c.update(data);
        }
        self.size += n as u64;
        f.len = n;
        Ok(true)
    }
}

/// The writing side: frames in image order.
struct Output<'a> {
    out: &'a mut dyn Write,
    chunk_digests: Vec<u8>,
}

impl Output<'_> {
    fn put(&mut self, f: &mut Frame) -> Result<(), CompressError> {
        std::mem::replace(&mut f.result, Ok(())).map_err(CompressError::Zstd)?;
        self.out
            .write_all(&f.output)
            .map_err(CompressError::Write)?;
        self.chunk_digests.extend_from_slice(&f.chunk_digests);
        Ok(())
    }
}

/// What a worker does to a frame.
struct Work {
    level: i32,
    /// Chunk size, if the worker hashes chunks, and the hash of a whole
    /// chunk of zeros.
    chunks: Option<(usize, [u8; 32])>,
}

impl Work {
    fn run(&self, enc: &mut FrameEncoder, f: &mut Frame) -> io::Result<()> {
        let data = &f.input[..f.len];
        enc.frame(data, &mut f.output)?;
        f.chunk_digests.clear();
        if let Some((size, zero)) = &self.chunks {
            f.chunk_digests.reserve(data.len().div_ceil(*size) * ENTRY);
            for chunk in data.chunks(*size) {
                // Free space in a filesystem image: the same answer as
                // hashing it, at memory speed.
                if chunk.len() == *size && is_zero(chunk) {
                    f.chunk_digests.extend_from_slice(zero);
                } else {
                    f.chunk_digests.extend_from_slice(&Sha256::digest(chunk));
                }
            }
        }
        Ok(())
    }
}

fn is_zero(b: &[u8]) -> bool {
    b.chunks(4096)
        .all(|block| block.iter().fold(0u8, |acc, &x| acc | x) == 0)
}

fn serial(
    input: &mut Input,
    output: &mut Output,
    work: &Work,
    frame_size: usize,
) -> Result<(), CompressError> {
    let mut enc = FrameEncoder::new(work.level).map_err(CompressError::Zstd)?;
    let mut f = Frame::new(frame_size);
    while input.next(&mut f)? {
        f.result = work.run(&mut enc, &mut f);
        output.put(&mut f)?;
    }
    Ok(())
}

fn parallel(
    input: &mut Input,
    output: &mut Output,
    work: &Work,
    frame_size: usize,
    jobs: usize,
) -> Result<(), CompressError> {
    let in_flight = jobs * IN_FLIGHT_PER_JOB;
    let encoders = (0..jobs)
        .map(|_| FrameEncoder::new(work.level))
        .collect::<io::Result<Vec<_>>>()
        .map_err(CompressError::Zstd)?;
    // Never full: no more than `in_flight` frames exist.
    let (work_tx, work_rx) = mpsc::sync_channel::<Frame>(in_flight);
    let work_rx = Mutex::new(work_rx);
    let (done_tx, done_rx) = mpsc::channel::<Frame>();
    std::thread::scope(|s| {
        for mut enc in encoders {
            let (work_rx, done_tx) = (&work_rx, done_tx.clone());
            s.spawn(move || {
                while let Some(mut f) = next_job(work_rx) {
                    // A panic becomes this frame's error rather than a
                    // frame the writer waits for forever.
                    f.result = panic::catch_unwind(AssertUnwindSafe(|| work.run(&mut enc, &mut f)))
                        .unwrap_or_else(|_| Err(io::Error::other("a compression thread panicked")));
                    if done_tx.send(f).is_err() {
                        return;
                    }
                }
            });
        }
        drop(done_tx);
        // Returning drops `work_tx`, so the workers stop, even on an error.
        feed_and_collect(input, output, work_tx, &done_rx, frame_size, in_flight)
    })
}

fn next_job(rx: &Mutex<Receiver<Frame>>) -> Option<Frame> {
    let rx = rx.lock().ok()?;
    rx.recv().ok()
}

/// Keeps up to `in_flight` frames with the workers and writes them back in
/// order as they come.
fn feed_and_collect(
    input: &mut Input,
    output: &mut Output,
    work_tx: SyncSender<Frame>,
    done_rx: &Receiver<Frame>,
    frame_size: usize,
    in_flight: usize,
) -> Result<(), CompressError> {
    let lost = || CompressError::Zstd(io::Error::other("the compression threads stopped"));
    let mut free: Vec<Frame> = Vec::new();
    let mut waiting: BTreeMap<u64, Frame> = BTreeMap::new();
    let (mut next_in, mut next_out) = (0u64, 0u64);
    loop {
        while !input.done && next_in - next_out < in_flight as u64 {
            let mut f = free.pop().unwrap_or_else(|| Frame::new(frame_size));
            if !input.next(&mut f)? {
                break;
            }
            f.index = next_in;
            work_tx.send(f).map_err(|_| lost())?;
            next_in += 1;
        }
        if next_out == next_in {
            return Ok(());
        }
        let f = done_rx.recv().map_err(|_| lost())?;
        waiting.insert(f.index, f);
        while let Some(mut f) = waiting.remove(&next_out) {
            output.put(&mut f)?;
            next_out += 1;
            free.push(f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FS: u32 = 4096;

    /// Compressible runs, noise and zeros, so frames differ in size and
    /// finish out of order.
    fn image(len: usize) -> Vec<u8> {
        let mut x: u32 = 0x2545_F491;
        (0..len)
            .map(|i| match (i / 5000) % 3 {
                0 => (i % 253) as u8,
                1 => {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                }
                _ => 0,
            })
            .collect()
    }

    fn run(data: &[u8], chunk_size: Option<u32>, jobs: usize) -> (Vec<u8>, Hashed) {
        let mut out = Vec::new();
        let opts = Options {
            frame_size: FS,
            chunk_size,
            level: 3,
            jobs,
        };
        let h = compress(&mut &data[..], &mut out, &opts).unwrap();
        (out, h)
    }

    #[test]
    fn any_number_of_jobs_gives_the_bytes_and_hashes_of_one() {
        // Several frames plus an odd tail; exactly whole frames; less than
        // one frame; nothing.
        for len in [37 * 4096 + 1234, 16 * 4096, 100, 0] {
            let data = image(len);
            let mut reference = Vec::new();
            super::super::frames::encode(&mut &data[..], &mut reference, FS, 3).unwrap();
            // Chunks within frames (the workers hash them), equal to
            // frames, and spanning two frames (the reader does).
            for chunk_size in [None, Some(1024), Some(FS), Some(2 * FS)] {
                let want = Hashed {
                    size: len as u64,
                    sha256: Sha256::digest(&data).into(),
                    chunks: chunk_size.map(|c| ChunkList::of(&data, c)),
                };
                for jobs in [1, 2, 3, 4, 8] {
                    let (out, h) = run(&data, chunk_size, jobs);
                    assert!(
                        out == reference,
                        "len {len} chunks {chunk_size:?} jobs {jobs}"
                    );
                    assert_eq!(h, want, "len {len} chunks {chunk_size:?} jobs {jobs}");
                }
            }
        }
    }

    /// Yields `ok` bytes of `data`, then fails.
    struct FailingReader<'a> {
        data: &'a [u8],
        ok: usize,
    }

    impl Read for FailingReader<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.ok == 0 {
                return Err(io::Error::other("disk on fire"));
            }
            let n = buf.len().min(self.ok).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            self.ok -= n;
            Ok(n)
        }
    }

    /// Accepts `room` bytes, then fails.
    struct FullDisk {
        room: usize,
    }

    impl Write for FullDisk {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::Error::from(io::ErrorKind::StorageFull));
            }
            let n = buf.len().min(self.room);
            self.room -= n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_read_or_write_error_stops_every_thread_and_is_returned() {
        let data = image(64 * 4096);
        for jobs in [1, 3] {
            let opts = Options {
                frame_size: FS,
                chunk_size: Some(FS),
                level: 3,
                jobs,
            };
            let mut src = FailingReader {
                data: &data,
                ok: 20 * 4096 + 7,
            };
            let e = compress(&mut src, &mut io::sink(), &opts).unwrap_err();
            assert!(
                matches!(&e, CompressError::Read(e) if e.to_string() == "disk on fire"),
                "jobs {jobs}: {e}"
            );
            let e = compress(&mut &data[..], &mut FullDisk { room: 5000 }, &opts).unwrap_err();
            assert!(
                matches!(&e, CompressError::Write(e) if e.kind() == io::ErrorKind::StorageFull),
                "jobs {jobs}: {e}"
            );
        }
    }
}

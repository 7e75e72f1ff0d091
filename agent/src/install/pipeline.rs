//! Streams one image into a slot: read (and decompress), hash and write run
//! on three threads joined by bounded channels, so hashing and writing
//! overlap and memory stays flat whatever the image size.
//!
//! The slot's first 128 KiB (where filesystem superblocks live) are zeroed
//! before anything else is written and receive their real contents last,
//! only once every byte has arrived and been verified (each chunk against
//! the chunk index, or the whole image against its hash), so a slot cut off
//! midway or refused never starts with a valid header (coreos-installer
//! does the same with its first MiB).

use std::io::{self, Read};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use sha2::{Digest, Sha256};
use zstd::zstd_safe;

use crate::bundle::chunks::{ChunkCheck, ChunkList, ChunkMismatch};
use crate::bundle::frames::{self, Frame, FrameReader};
use crate::sys::{read_full, AlignedBuf, SlotWriter, SysError};

/// Bytes per buffer: large aligned writes (1 MiB x 6 keeps peak RSS under
/// 16 MiB with a zstd decoder and an HTTP stream; bench/).
pub const CHUNK: usize = 1 << 20;
/// Buffers in flight.
pub const BUFFERS: usize = 6;
/// The header region written last.
pub const HEAD: usize = 128 << 10;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("reading or decompressing the payload failed after {offset} image bytes: {source}")]
    Read { offset: u64, source: io::Error },
    #[error("the image yields more than the {expected} bytes the manifest declares")]
    TooLong { expected: u64 },
    #[error("the image yields {got} bytes; the manifest declares {expected}")]
    TooShort { got: u64, expected: u64 },
    #[error("{0}; it was not written")]
    Chunk(#[from] ChunkMismatch),
    #[error(
        "hash mismatch: the manifest says {expected}, the image hashes to {actual}; its header was not written"
    )]
    Hash { expected: String, actual: String },
    #[error(transparent)]
    Device(#[from] SysError),
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub bytes: u64,
}

/// How an image is verified on its way to the slot.
#[derive(Debug, Clone, Copy)]
pub enum Verify<'a> {
    /// Every chunk against the index, before the chunk is written.
    Chunks(&'a ChunkList),
    /// The whole image against this SHA-256 before its header is written
    /// (older bundles without a chunk index).
    Whole(&'a [u8; 32]),
}

/// A filled buffer (bytes used), or why a decode worker could not fill it.
type Filled = Result<(AlignedBuf, usize), PipelineError>;

/// Streams exactly `expected` bytes from `src` into `slot` at offset 0,
/// then fsyncs. With a chunk index each chunk is checked before it is
/// written; without one, the whole image is hashed and its header written
/// only if the hash matches. `progress` is called with the bytes read so far.
pub fn stream_image(
    src: &mut dyn Read,
    slot: &mut SlotWriter,
    expected: u64,
    verify: Verify<'_>,
    progress: &mut dyn FnMut(u64),
) -> Result<Written, PipelineError> {
    run(slot, expected, 1, verify, |free, mut lanes| {
        let lane = lanes.pop().expect("one lane");
        read_stage(src, expected, free, lane, progress)
    })
}

/// Like [`stream_image`], for a payload of independent zstd frames: this
/// thread splits the payload into frames and `workers` threads decode them
/// straight into the write buffers, each buffer's worth of frames at once;
/// the hash thread takes the buffers back in order. Decoding, the one
/// stage that can run on several cores, then keeps up with hashing.
pub fn stream_frames<R: Read>(
    frames: &mut FrameReader<R>,
    slot: &mut SlotWriter,
    expected: u64,
    workers: usize,
    verify: Verify<'_>,
    progress: &mut dyn FnMut(u64),
) -> Result<Written, PipelineError> {
    assert!(
        frames.frame_size() <= CHUNK && CHUNK.is_multiple_of(frames.frame_size()),
        "frame_size is validated against MAX_FRAME_SIZE"
    );
    let workers = workers.max(1);
    run(slot, expected, workers, verify, |free, lanes| {
        with_decoders(lanes, |jobs, inputs| {
            split_stage(frames, free, inputs, jobs, progress)
        })
    })
}

/// What a [`ChunkSource`] made of a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Got {
    /// Its bytes are in `out`.
    Bytes,
    /// Its stored bytes, one zstd frame, were appended to `input`; a
    /// decode worker turns them into the chunk.
    Frame,
}

/// Where the bytes of one chunk of a content-defined image come from; the
/// pipeline asks for the chunks in order.
pub trait ChunkSource {
    /// Fills `out` (exactly chunk `i`'s length) with chunk `i`, or appends
    /// its zstd frame to `input`. What becomes of it is checked against the
    /// table before it is written.
    fn fill(&mut self, i: u64, out: &mut [u8], input: &mut Vec<u8>) -> Result<Got, PipelineError>;
}

/// Streams a content-defined image: the buffers are filled with whole
/// chunks only, in order, so every chunk is checked against the table
/// before any byte of it is written, wherever it came from (the bundle's
/// payload, the booted slot). `workers` threads decode the compressed
/// chunks, as [`stream_frames`] does frames.
pub fn stream_chunks(
    table: &ChunkList,
    source: &mut dyn ChunkSource,
    slot: &mut SlotWriter,
    expected: u64,
    workers: usize,
    progress: &mut dyn FnMut(u64),
) -> Result<Written, PipelineError> {
    assert!(table.is_table(), "a content-defined chunk table");
    let workers = workers.max(1);
    run(
        slot,
        expected,
        workers,
        Verify::Chunks(table),
        |free, lanes| {
            with_decoders(lanes, |jobs, inputs| {
                chunk_stage(table, source, free, inputs, jobs, progress)
            })
        },
    )
}

/// Chunks read in order from a content-defined image's payload: each is
/// one zstd frame, or stored as it is.
pub struct PayloadChunks<'a, R> {
    pub payload: R,
    pub table: &'a ChunkList,
    pub compressed: bool,
}

impl<'a, R: Read> PayloadChunks<'a, R> {
    pub fn new(payload: R, table: &'a ChunkList, compressed: bool) -> Self {
        PayloadChunks {
            payload,
            table,
            compressed,
        }
    }
}

/// Decodes chunk `i`'s stored frame `input` into `out` (exactly its length).
pub fn decode_chunk(
    dctx: &mut zstd_safe::DCtx<'static>,
    i: u64,
    input: &[u8],
    out: &mut [u8],
) -> io::Result<()> {
    let bad = |what: String| io::Error::other(format!("chunk {i}: {what}"));
    match zstd_safe::find_frame_compressed_size(input) {
        Ok(n) if n == input.len() => {}
        Ok(n) => {
            return Err(bad(format!(
                "its {} stored bytes are not one zstd frame ({n} are)",
                input.len()
            )))
        }
        Err(code) => return Err(bad(zstd_safe::get_error_name(code).to_string())),
    }
    let n = dctx.decompress(out, input).map_err(|code| {
        bad(format!(
            "{} (it must decode to exactly {} bytes)",
            zstd_safe::get_error_name(code),
            out.len()
        ))
    })?;
    if n != out.len() {
        return Err(bad(format!(
            "decodes to {n} bytes; the chunk table says {}",
            out.len()
        )));
    }
    Ok(())
}

/// Appends `len` bytes to `input`, filled by `read` (nothing if it fails).
pub fn append_stored(
    input: &mut Vec<u8>,
    len: usize,
    read: impl FnOnce(&mut [u8]) -> io::Result<()>,
) -> io::Result<()> {
    let start = input.len();
    input.resize(start + len, 0);
    let got = read(&mut input[start..]);
    if got.is_err() {
        input.truncate(start);
    }
    got
}

impl<R: Read> ChunkSource for PayloadChunks<'_, R> {
    fn fill(&mut self, i: u64, out: &mut [u8], input: &mut Vec<u8>) -> Result<Got, PipelineError> {
        let offset = self.table.span(i).0;
        let read_err = |source| PipelineError::Read { offset, source };
        if !self.compressed {
            self.payload.read_exact(out).map_err(read_err)?;
            return Ok(Got::Bytes);
        }
        let (a, b) = self.table.stored_span(i);
        append_stored(input, (b - a) as usize, |dst| self.payload.read_exact(dst))
            .map_err(read_err)?;
        Ok(Got::Frame)
    }
}

/// Runs the hash and write stages on their own threads while `feed` fills
/// buffers from the pool on this one and hands them to the hash stage
/// through `lanes` lanes, taken in turn. Returns what was written.
fn run(
    slot: &mut SlotWriter,
    expected: u64,
    lanes: usize,
    verify: Verify<'_>,
    feed: impl FnOnce(Receiver<AlignedBuf>, Vec<SyncSender<Filled>>) -> Result<u64, PipelineError>,
) -> Result<Written, PipelineError> {
    // Invalidate the slot's header first.
    let head = (expected.min(HEAD as u64) as usize).next_multiple_of(crate::sys::ALIGN);
    let head = head.min(slot.capacity() as usize);
    let zeros = AlignedBuf::new(head);
    slot.write_at(0, zeros.bytes())?;
    slot.sync()?;
    drop(zeros);

    let (free_tx, free_rx) = sync_channel::<AlignedBuf>(BUFFERS);
    for _ in 0..BUFFERS {
        free_tx
            .send(AlignedBuf::new(CHUNK))
            .expect("pool channel open");
    }
    let (lane_tx, lane_rx): (Vec<_>, Vec<_>) =
        (0..lanes).map(|_| sync_channel::<Filled>(1)).unzip();
    let (write_tx, write_rx) = sync_channel::<(AlignedBuf, usize)>(BUFFERS);

    let written = std::thread::scope(|s| {
        let slot = &mut *slot;
        let hasher = s.spawn(move || hash_stage(lane_rx, write_tx, verify));
        let writer = s.spawn(move || write_stage(write_rx, free_tx, slot));
        let fed = feed(free_rx, lane_tx);
        let checked = hasher.join().expect("hash thread panicked");
        let write_result = writer.join().expect("write thread panicked");
        // A device error explains a stalled reader better than the reverse.
        // What the hash stage refused lies before where the feed stopped,
        // and never follows from the feed's own error.
        // The whole image's hash is only meaningful once all of it came.
        let (bytes, head, head_len) = write_result?;
        let whole = match checked {
            Err(e @ PipelineError::Hash { .. }) => Err(e),
            other => {
                other?;
                Ok(())
            }
        };
        let got = fed?;
        if got != bytes || bytes != expected {
            return Err(PipelineError::TooShort {
                got: bytes,
                expected,
            });
        }
        whole?;
        Ok((bytes, head, head_len))
    });
    // Every byte is there and verified: only now the header.
    let (bytes, head, head_len) = written?;
    if head_len > 0 {
        slot.write_at(0, &head.bytes()[..head_len])?;
    }
    slot.fit(bytes)?;
    slot.sync()?;
    Ok(Written { bytes })
}

fn read_stage(
    src: &mut dyn Read,
    expected: u64,
    free: Receiver<AlignedBuf>,
    out: SyncSender<Filled>,
    progress: &mut dyn FnMut(u64),
) -> Result<u64, PipelineError> {
    let mut total: u64 = 0;
    loop {
        let Ok(mut buf) = free.recv() else {
            // The writer stopped: its error is reported by the caller.
            return Ok(total);
        };
        let n = read_full(src, buf.bytes_mut()).map_err(|source| PipelineError::Read {
            offset: total,
            source,
        })?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > expected {
            return Err(PipelineError::TooLong { expected });
        }
        progress(total);
        if out.send(Ok((buf, n))).is_err() {
            return Ok(total);
        }
    }
    if total != expected {
        return Err(PipelineError::TooShort {
            got: total,
            expected,
        });
    }
    Ok(total)
}

/// One buffer's worth of frames for a decode worker.
struct Job {
    buf: AlignedBuf,
    input: Vec<u8>,
    /// The frames to decode, each into the buffer at its offset.
    pieces: Vec<Piece>,
    /// Bytes of the buffer the job fills (with what is already there).
    len: usize,
    /// Image offset of the buffer's first byte.
    offset: u64,
}

/// A frame of a job and where in the buffer it goes.
struct Piece {
    at: usize,
    frame: Frame,
    /// A content-defined chunk (its frame is checked to be exactly one
    /// zstd frame), or a frame of a framed payload.
    chunk: bool,
}

/// Runs one decode worker per lane while `feed` hands them jobs, in turn,
/// through the senders it gets, with the pool of compressed input buffers
/// (one per worker and one being filled).
fn with_decoders<T>(
    lanes: Vec<SyncSender<Filled>>,
    feed: impl FnOnce(&[SyncSender<Job>], Receiver<Vec<u8>>) -> T,
) -> T {
    let workers = lanes.len();
    std::thread::scope(|s| {
        let (inputs_tx, inputs_rx) = sync_channel::<Vec<u8>>(workers + 1);
        for _ in 0..=workers {
            inputs_tx.send(Vec::new()).expect("pool channel open");
        }
        let jobs: Vec<SyncSender<Job>> = lanes
            .into_iter()
            .map(|lane| {
                let (tx, rx) = sync_channel::<Job>(1);
                let inputs = inputs_tx.clone();
                s.spawn(move || decode_stage(rx, lane, inputs));
                tx
            })
            .collect();
        drop(inputs_tx);
        feed(&jobs, inputs_rx)
    })
}

/// Takes a free buffer and a free input buffer for a job at image offset
/// `offset`; `None` when the writer or a worker stopped (the caller
/// reports why).
fn new_job(free: &Receiver<AlignedBuf>, inputs: &Receiver<Vec<u8>>, offset: u64) -> Option<Job> {
    let buf = free.recv().ok()?;
    let mut input = inputs.recv().ok()?;
    input.clear();
    Some(Job {
        buf,
        input,
        pieces: Vec::new(),
        len: 0,
        offset,
    })
}

fn split_stage<R: Read>(
    frames: &mut FrameReader<R>,
    free: Receiver<AlignedBuf>,
    inputs: Receiver<Vec<u8>>,
    workers: &[SyncSender<Job>],
    progress: &mut dyn FnMut(u64),
) -> Result<u64, PipelineError> {
    let mut total: u64 = 0;
    for worker in workers.iter().cycle() {
        let read_error = |source| PipelineError::Read {
            offset: total,
            source,
        };
        if frames.next_yield() == 0 {
            // No more frames, unless the payload goes on regardless.
            frames.next_frame(&mut Vec::new()).map_err(read_error)?;
            break;
        }
        let Some(mut job) = new_job(&free, &inputs, total) else {
            return Ok(total);
        };
        while job.len + frames.next_yield() <= CHUNK && frames.next_yield() > 0 {
            let frame = frames
                .next_frame(&mut job.input)
                .map_err(read_error)?
                .expect("the image is not complete yet");
            let at = job.len;
            job.len += frame.yields;
            job.pieces.push(Piece {
                at,
                frame,
                chunk: false,
            });
        }
        total += job.len as u64;
        progress(total);
        if worker.send(job).is_err() {
            return Ok(total);
        }
    }
    Ok(total)
}

/// Fills jobs with whole chunks from `source`, in order: the bytes it has
/// go into the buffer here, its frames to a decode worker.
fn chunk_stage(
    table: &ChunkList,
    source: &mut dyn ChunkSource,
    free: Receiver<AlignedBuf>,
    inputs: Receiver<Vec<u8>>,
    workers: &[SyncSender<Job>],
    progress: &mut dyn FnMut(u64),
) -> Result<u64, PipelineError> {
    let mut total = 0u64;
    let mut chunk = 0u64;
    for worker in workers.iter().cycle() {
        if chunk == table.len() {
            break;
        }
        let Some(mut job) = new_job(&free, &inputs, total) else {
            return Ok(total);
        };
        while chunk < table.len() {
            let (a, b) = table.span(chunk);
            let len = (b - a) as usize;
            if job.len + len > CHUNK {
                break;
            }
            let at = job.len;
            let start = job.input.len();
            let out = &mut job.buf.bytes_mut()[at..at + len];
            if source.fill(chunk, out, &mut job.input)? == Got::Frame {
                let frame = Frame {
                    index: chunk,
                    payload_offset: table.stored_span(chunk).0,
                    start,
                    end: job.input.len(),
                    yields: len,
                };
                job.pieces.push(Piece {
                    at,
                    frame,
                    chunk: true,
                });
            }
            job.len += len;
            chunk += 1;
        }
        total += job.len as u64;
        progress(total);
        if worker.send(job).is_err() {
            return Ok(total);
        }
    }
    Ok(total)
}

fn decode_stage(jobs: Receiver<Job>, out: SyncSender<Filled>, inputs: SyncSender<Vec<u8>>) {
    let mut dctx = frames::context();
    for mut job in jobs {
        let mut result = Ok(());
        for p in &job.pieces {
            let f = &p.frame;
            let piece = &mut job.buf.bytes_mut()[p.at..p.at + f.yields];
            let decoded = if p.chunk {
                decode_chunk(&mut dctx, f.index, &job.input[f.start..f.end], piece)
            } else {
                frames::decode_frame(&mut dctx, f, &job.input, piece)
            };
            if let Err(source) = decoded {
                result = Err(PipelineError::Read {
                    offset: job.offset + p.at as u64,
                    source,
                });
                break;
            }
        }
        // The feed may have stopped; then nobody needs the input back.
        let _ = inputs.send(job.input);
        let failed = result.is_err();
        if out.send(result.map(|()| (job.buf, job.len))).is_err() || failed {
            return;
        }
    }
}

/// How the hash stage checks what passes through it.
enum Check<'a> {
    /// Against a chunk index, chunk by chunk, before it is written.
    Chunks(ChunkCheck<'a>),
    /// Into one hash of the whole image, compared at the end.
    Whole(Sha256, &'a [u8; 32]),
}

/// Checks the buffers from `lanes`, taken in turn, and passes them on to be
/// written; without a chunk index, compares the whole image's hash once
/// the feed is done.
fn hash_stage(
    lanes: Vec<Receiver<Filled>>,
    out: SyncSender<(AlignedBuf, usize)>,
    verify: Verify<'_>,
) -> Result<(), PipelineError> {
    let mut check = match verify {
        Verify::Chunks(list) => Check::Chunks(ChunkCheck::new(list)),
        Verify::Whole(want) => Check::Whole(Sha256::new(), want),
    };
    for lane in lanes.iter().cycle() {
        let Ok(filled) = lane.recv() else {
            break; // the feed is done
        };
        let (buf, n) = filled?;
        let data = &buf.bytes()[..n];
        match &mut check {
            Check::Chunks(c) => c.update(data)?,
            Check::Whole(h, _) => h.update(data),
        }
        if out.send((buf, n)).is_err() {
            break;
        }
    }
    // Every chunk was checked as it completed; `run` checks that all the
    // bytes came (then so did all the chunks).
    match check {
        Check::Chunks(_) => Ok(()),
        Check::Whole(h, want) => {
            let got: [u8; 32] = h.finalize().into();
            if got == *want {
                Ok(())
            } else {
                Err(PipelineError::Hash {
                    expected: hex::encode(want),
                    actual: hex::encode(got),
                })
            }
        }
    }
}

/// Writes the buffers in order but for the header region, which it keeps
/// back and returns (with its length) for `run` to write once the image is
/// complete and verified. Syncs what it wrote.
fn write_stage(
    input: Receiver<(AlignedBuf, usize)>,
    free: SyncSender<AlignedBuf>,
    slot: &mut SlotWriter,
) -> Result<(u64, AlignedBuf, usize), PipelineError> {
    let mut offset: u64 = 0;
    let mut head = AlignedBuf::new(HEAD);
    let mut head_len = 0;
    for (buf, n) in input {
        let data = &buf.bytes()[..n];
        if offset == 0 {
            // Keep the header region back; write the rest of the chunk now.
            head_len = n.min(HEAD);
            head.bytes_mut()[..head_len].copy_from_slice(&data[..head_len]);
            if n > HEAD {
                slot.write_at(HEAD as u64, &data[HEAD..])?;
            }
        } else {
            slot.write_at(offset, data)?;
        }
        offset += n as u64;
        // The reader may have stopped; then nobody needs the buffer back.
        let _ = free.send(buf);
    }
    slot.sync()?;
    Ok((offset, head, head_len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    fn slot_file(d: &tempfile::TempDir, len: usize) -> (std::path::PathBuf, SlotWriter) {
        let p = d.path().join("slot");
        std::fs::write(&p, vec![0xEEu8; len]).unwrap();
        let w = SlotWriter::open(&p, None).unwrap();
        (p, w)
    }

    /// Mixed data with a zero stretch, several buffers long.
    fn image() -> Vec<u8> {
        let mut v = pattern(2 * CHUNK + 5000);
        v[CHUNK / 2..CHUNK + 4096].fill(0);
        v
    }

    #[test]
    fn frames_decoded_by_any_number_of_workers_arrive_in_order() {
        let data = image();
        let mut payload = Vec::new();
        frames::encode(&mut &data[..], &mut payload, 64 << 10, 3).unwrap();
        let list = ChunkList::of(&data, 4096);
        let whole: [u8; 32] = Sha256::digest(&data).into();
        for workers in [1, 2, 3] {
            for verify in [Verify::Whole(&whole), Verify::Chunks(&list)] {
                let d = tempfile::tempdir().unwrap();
                let (p, mut w) = slot_file(&d, data.len() + 8192);
                let mut fr = FrameReader::new(&payload[..], 64 << 10, data.len() as u64);
                let mut seen = 0;
                let out = stream_frames(
                    &mut fr,
                    &mut w,
                    data.len() as u64,
                    workers,
                    verify,
                    &mut |n| seen = n,
                )
                .unwrap();
                assert_eq!(out.bytes, data.len() as u64);
                assert_eq!(seen, data.len() as u64);
                let back = std::fs::read(&p).unwrap();
                assert!(back[..data.len()] == data[..], "{workers} workers");
            }
        }
    }

    /// A content-defined image of `data` (zstd chunks) and its payload.
    fn cdc_image(data: &[u8]) -> (ChunkList, Vec<u8>) {
        use crate::bundle::cdc;
        let mut payload = Vec::new();
        let c = cdc::compress(&mut &data[..], &mut payload, &cdc::DEFAULT, Some(3), 2).unwrap();
        (
            ChunkList::table_of(&c.entries, cdc::DEFAULT.max).unwrap(),
            payload,
        )
    }

    #[test]
    fn chunks_decoded_by_any_number_of_workers_arrive_in_order() {
        let data = image();
        let (table, payload) = cdc_image(&data);
        assert!(table.len() > 8, "{} chunks", table.len());
        for workers in [1, 2, 3] {
            let d = tempfile::tempdir().unwrap();
            let (p, mut w) = slot_file(&d, data.len() + 8192);
            let mut src = PayloadChunks::new(&payload[..], &table, true);
            let mut seen = 0;
            let out = stream_chunks(
                &table,
                &mut src,
                &mut w,
                data.len() as u64,
                workers,
                &mut |n| seen = n,
            )
            .unwrap();
            assert_eq!((out.bytes, seen), (data.len() as u64, data.len() as u64));
            let back = std::fs::read(&p).unwrap();
            assert!(back[..data.len()] == data[..], "{workers} workers");
        }
    }

    /// A stored chunk that decodes to other bytes (a forged frame of the
    /// right length) is refused by the table before its buffer is written,
    /// and one that does not decode stops the pipeline, with any number of
    /// decode workers.
    #[test]
    fn a_compressed_chunk_that_does_not_match_is_never_written() {
        let data = image();
        let (table, payload) = cdc_image(&data);
        // A chunk in the second buffer.
        let k = (0..table.len())
            .find(|&i| table.span(i).0 > CHUNK as u64 + 4096)
            .unwrap();
        let (a, b) = table.span(k);
        let (sa, sb) = table.stored_span(k);
        let mut other = data[a as usize..b as usize].to_vec();
        other[7] ^= 1;
        let forged = zstd::bulk::compress(&other, 3).unwrap();
        let mut bad = payload[..sa as usize].to_vec();
        bad.extend_from_slice(&forged);
        bad.extend_from_slice(&payload[sb as usize..]);
        // Its stored length changed: a table that says so.
        let mut entries: Vec<_> = (0..table.len())
            .map(|i| {
                let (x, y) = table.span(i);
                let (p, q) = table.stored_span(i);
                (
                    table.hash(i).try_into().unwrap(),
                    (y - x) as u32,
                    (q - p) as u32,
                )
            })
            .collect();
        entries[k as usize].2 = forged.len() as u32;
        let forged_table = ChunkList::table_of(&entries, crate::bundle::cdc::DEFAULT.max).unwrap();
        let mut broken = payload.clone();
        broken[sa as usize] ^= 0x55; // its zstd magic: not a frame
        for workers in [1, 2, 3] {
            for (t, pl, forged) in [(&forged_table, &bad, true), (&table, &broken, false)] {
                let d = tempfile::tempdir().unwrap();
                let (p, mut w) = slot_file(&d, data.len() + 8192);
                let mut src = PayloadChunks::new(&pl[..], t, true);
                let e = stream_chunks(t, &mut src, &mut w, data.len() as u64, workers, &mut |_| {})
                    .unwrap_err();
                match &e {
                    PipelineError::Chunk(m) if forged => assert_eq!(m.chunk, k, "{e}"),
                    PipelineError::Read { .. } if !forged => {
                        assert!(e.to_string().contains(&format!("chunk {k}")), "{e}")
                    }
                    other => panic!("{workers} workers, forged {forged}: {other}"),
                }
                let back = std::fs::read(&p).unwrap();
                let buf_start = (a as usize / CHUNK) * CHUNK;
                let lo = (a as usize).max(buf_start);
                assert!(
                    back[lo..b as usize].iter().all(|&x| x == 0xEE),
                    "the bad chunk never reached the slot"
                );
                assert!(back[..HEAD].iter().all(|&x| x == 0), "header stays invalid");
            }
        }
    }

    #[test]
    fn a_chunk_that_does_not_match_is_never_written() {
        let data = image();
        let list = ChunkList::of(&data, 64 << 10);
        let mut bad = data.clone();
        let at = CHUNK + 3 * (64 << 10) + 100; // chunk 19, in the second buffer
        bad[at] ^= 0x40;
        let d = tempfile::tempdir().unwrap();
        let (p, mut w) = slot_file(&d, data.len() + 8192);
        let e = stream_image(
            &mut &bad[..],
            &mut w,
            bad.len() as u64,
            Verify::Chunks(&list),
            &mut |_| {},
        )
        .unwrap_err();
        match &e {
            PipelineError::Chunk(m) => {
                assert_eq!(m.chunk, 19);
                assert_eq!(m.offset, 19 * (64 << 10));
            }
            other => panic!("{other}"),
        }
        assert!(
            e.to_string()
                .contains("chunk 19 (image bytes 1245184..1310720)"),
            "{e}"
        );
        let back = std::fs::read(&p).unwrap();
        assert!(
            back[CHUNK..2 * CHUNK].iter().all(|&b| b == 0xEE),
            "the buffer holding the bad chunk never reached the slot"
        );
        assert!(
            back[..HEAD].iter().all(|&b| b == 0),
            "the header stays invalid"
        );
    }

    #[test]
    fn frames_the_manifest_does_not_describe_stop_the_pipeline() {
        let data = image();
        let mut payload = Vec::new();
        frames::encode(&mut &data[..], &mut payload, 64 << 10, 3).unwrap();
        for workers in [1, 2] {
            let d = tempfile::tempdir().unwrap();
            let (_p, mut w) = slot_file(&d, data.len() + 8192);
            // Declared 32 KiB frames: the first frame decodes to more.
            let mut fr = FrameReader::new(&payload[..], 32 << 10, data.len() as u64);
            let e = stream_frames(
                &mut fr,
                &mut w,
                data.len() as u64,
                workers,
                Verify::Whole(&[0; 32]),
                &mut |_| {},
            )
            .unwrap_err();
            assert!(
                matches!(&e, PipelineError::Read { offset: 0, source } if source.to_string().contains("zstd frame 0")),
                "{e}"
            );
        }
    }

    #[test]
    fn writes_and_hashes_various_sizes() {
        for len in [
            1,
            4095,
            4096,
            CHUNK - 1,
            CHUNK,
            CHUNK + 1,
            3 * CHUNK + 12345,
        ] {
            let d = tempfile::tempdir().unwrap();
            let p = d.path().join("slot");
            std::fs::write(&p, vec![0xEEu8; len + 8192]).unwrap();
            let mut w = SlotWriter::open(&p, None).unwrap();
            let data = pattern(len);
            let mut seen = 0;
            let whole: [u8; 32] = Sha256::digest(&data).into();
            let out = stream_image(
                &mut &data[..],
                &mut w,
                len as u64,
                Verify::Whole(&whole),
                &mut |n| seen = n,
            )
            .unwrap();
            assert_eq!(out.bytes, len as u64);
            assert_eq!(seen, len as u64);
            let back = std::fs::read(&p).unwrap();
            assert_eq!(&back[..len], &data[..], "len {len}");
        }
    }

    /// Without a chunk index nothing can be checked before it is written,
    /// so the header region is what keeps a refused image from booting: it
    /// is written only after the whole image's hash matched, and stays
    /// zero otherwise.
    #[test]
    fn a_whole_image_hash_mismatch_leaves_the_header_zeroed() {
        let data = image();
        let mut bad = data.clone();
        bad[2 * CHUNK + 10] ^= 1; // past the header, in the last buffer
        let whole: [u8; 32] = Sha256::digest(&data).into();
        let d = tempfile::tempdir().unwrap();
        let (p, mut w) = slot_file(&d, data.len() + 8192);
        let e = stream_image(
            &mut &bad[..],
            &mut w,
            bad.len() as u64,
            Verify::Whole(&whole),
            &mut |_| {},
        )
        .unwrap_err();
        assert!(matches!(e, PipelineError::Hash { .. }), "{e}");
        assert!(e.to_string().contains("header was not written"), "{e}");
        let back = std::fs::read(&p).unwrap();
        assert!(
            back[..HEAD].iter().all(|&b| b == 0),
            "the header stays zero"
        );
        // The same image with the right hash gets its header.
        let (p, mut w) = slot_file(&d, data.len() + 8192);
        stream_image(
            &mut &data[..],
            &mut w,
            data.len() as u64,
            Verify::Whole(&whole),
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(std::fs::read(&p).unwrap()[..HEAD], data[..HEAD]);
    }

    /// A file slot (a kernel or initrd on the ESP) ends where the image
    /// ends: a shorter image over a longer one leaves none of the old
    /// bytes after it, and a missing file is created at the image's length,
    /// not at its configured capacity.
    #[test]
    fn file_slot_takes_the_image_length() {
        let d = tempfile::tempdir().unwrap();
        let data = pattern(CHUNK + 777);
        let whole: [u8; 32] = Sha256::digest(&data).into();
        let (longer, w) = slot_file(&d, 3 * CHUNK);
        drop(w);
        let missing = d.path().join("new");
        for (p, capacity) in [(longer, None), (missing, Some(16 << 20))] {
            let mut w = SlotWriter::open(&p, capacity).unwrap();
            let len = data.len() as u64;
            stream_image(
                &mut &data[..],
                &mut w,
                len,
                Verify::Whole(&whole),
                &mut |_| {},
            )
            .unwrap();
            assert_eq!(std::fs::read(&p).unwrap(), data, "{}", p.display());
        }
    }

    #[test]
    fn size_mismatches() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("slot");
        let mut w = SlotWriter::open(&p, Some(1 << 20)).unwrap();
        let data = pattern(5000);
        let any = Verify::Whole(&[0; 32]);
        let e = stream_image(&mut &data[..], &mut w, 4000, any, &mut |_| {}).unwrap_err();
        assert!(
            matches!(e, PipelineError::TooLong { expected: 4000 }),
            "{e}"
        );
        let e = stream_image(&mut &data[..], &mut w, 6000, any, &mut |_| {}).unwrap_err();
        assert!(
            matches!(
                e,
                PipelineError::TooShort {
                    got: 5000,
                    expected: 6000
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn read_error_carries_offset() {
        struct Failing(usize);
        impl Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::other("boom"));
                }
                let k = buf.len().min(self.0);
                self.0 -= k;
                Ok(k)
            }
        }
        let d = tempfile::tempdir().unwrap();
        let mut w = SlotWriter::open(&d.path().join("s"), Some(16 << 20)).unwrap();
        let any = Verify::Whole(&[0; 32]);
        let e =
            stream_image(&mut Failing(CHUNK + 10), &mut w, 8 << 20, any, &mut |_| {}).unwrap_err();
        assert!(
            matches!(e, PipelineError::Read { offset, .. } if offset == CHUNK as u64),
            "{e}"
        );
    }
}

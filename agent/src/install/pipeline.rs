//! Streams one image into a slot: read (and decompress), hash and write run
//! on three threads joined by bounded channels, so hashing and writing
//! overlap and memory stays flat whatever the image size.
//!
//! The slot's first 128 KiB (where filesystem superblocks live) are zeroed
//! before anything else is written and receive their real contents last, so
//! a slot cut off midway never starts with a valid header (coreos-installer
//! does the same with its first MiB).

use std::io::{self, Read};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use sha2::{Digest, Sha256};

use crate::sys::{AlignedBuf, SlotWriter, SysError};

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
    #[error(transparent)]
    Device(#[from] SysError),
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub bytes: u64,
    pub sha256: [u8; 32],
}

/// Streams exactly `expected` bytes from `src` into `slot` at offset 0,
/// then fsyncs. `progress` is called with the bytes read so far.
pub fn stream_image(
    src: &mut dyn Read,
    slot: &mut SlotWriter,
    expected: u64,
    progress: &mut dyn FnMut(u64),
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
    let (hash_tx, hash_rx) = sync_channel::<(AlignedBuf, usize)>(BUFFERS);
    let (write_tx, write_rx) = sync_channel::<(AlignedBuf, usize)>(BUFFERS);

    std::thread::scope(|s| {
        let hasher = s.spawn(move || hash_stage(hash_rx, write_tx));
        let writer = s.spawn(move || write_stage(write_rx, free_tx, slot));
        let read_result = read_stage(src, expected, free_rx, hash_tx, progress);
        let digest = hasher.join().expect("hash thread panicked");
        let write_result = writer.join().expect("write thread panicked");
        // A device error explains a stalled reader better than the reverse.
        let bytes = write_result?;
        let got = read_result?;
        if got != bytes {
            return Err(PipelineError::TooShort {
                got: bytes,
                expected,
            });
        }
        Ok(Written {
            bytes,
            sha256: digest.into(),
        })
    })
}

fn read_stage(
    src: &mut dyn Read,
    expected: u64,
    free: Receiver<AlignedBuf>,
    out: SyncSender<(AlignedBuf, usize)>,
    progress: &mut dyn FnMut(u64),
) -> Result<u64, PipelineError> {
    let mut total: u64 = 0;
    loop {
        let Ok(mut buf) = free.recv() else {
            // The writer stopped: its error is reported by the caller.
            return Ok(total);
        };
        let n = fill(src, buf.bytes_mut()).map_err(|source| PipelineError::Read {
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
        if out.send((buf, n)).is_err() {
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

fn fill(src: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match src.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn hash_stage(
    input: Receiver<(AlignedBuf, usize)>,
    out: SyncSender<(AlignedBuf, usize)>,
) -> sha2::digest::Output<Sha256> {
    let mut h = Sha256::new();
    for (buf, n) in input {
        h.update(&buf.bytes()[..n]);
        if out.send((buf, n)).is_err() {
            break;
        }
    }
    h.finalize()
}

fn write_stage(
    input: Receiver<(AlignedBuf, usize)>,
    free: SyncSender<AlignedBuf>,
    slot: &mut SlotWriter,
) -> Result<u64, PipelineError> {
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
    if head_len > 0 {
        slot.sync()?;
        slot.write_at(0, &head.bytes()[..head_len])?;
    }
    slot.sync()?;
    Ok(offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
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
            let out = stream_image(&mut &data[..], &mut w, len as u64, &mut |n| seen = n).unwrap();
            assert_eq!(out.bytes, len as u64);
            assert_eq!(out.sha256, <[u8; 32]>::from(Sha256::digest(&data)));
            assert_eq!(seen, len as u64);
            let back = std::fs::read(&p).unwrap();
            assert_eq!(&back[..len], &data[..], "len {len}");
        }
    }

    #[test]
    fn size_mismatches() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("slot");
        let mut w = SlotWriter::open(&p, Some(1 << 20)).unwrap();
        let data = pattern(5000);
        let e = stream_image(&mut &data[..], &mut w, 4000, &mut |_| {}).unwrap_err();
        assert!(
            matches!(e, PipelineError::TooLong { expected: 4000 }),
            "{e}"
        );
        let e = stream_image(&mut &data[..], &mut w, 6000, &mut |_| {}).unwrap_err();
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
        let e = stream_image(&mut Failing(CHUNK + 10), &mut w, 8 << 20, &mut |_| {}).unwrap_err();
        assert!(
            matches!(e, PipelineError::Read { offset, .. } if offset == CHUNK as u64),
            "{e}"
        );
    }
}

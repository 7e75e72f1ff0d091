//! Framed zstd payloads: a sequence of independent zstd frames, each of which
//! decodes to exactly `frame_size` bytes except the last (the rest of the
//! image). The manifest says so with `frame_size` (docs/bundle-format.md).
//!
//! Any zstd decoder reads such a payload as one stream. Knowing the framing
//! lets the installer decode each frame in one call straight into its write
//! buffer: no window to keep, no copy out of it, no per-frame checksum
//! (the image's SHA-256 covers every byte). That makes decoding about a
//! fifth cheaper than streaming (bench/README.md).
//!
//! A frame's compressed length is not stored anywhere; it is found by
//! walking the frame's block headers (RFC 8878, section 3.1.1), so the
//! payload is still read front to back, from any stream, in bounded memory.

use std::io::{self, Read};

use zstd::zstd_safe;

/// zstd frame magic number, little-endian on the wire.
const MAGIC: u32 = 0xFD2F_B528;
/// Largest block content a conforming frame carries (RFC 8878, 3.1.1.2.4).
const BLOCK_MAX: usize = 128 << 10;

/// One frame's place, as [`FrameReader::next_frame`] found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// Index of the frame in the payload, from 0.
    pub index: u64,
    /// Where its compressed bytes start in the payload.
    pub payload_offset: u64,
    /// Its compressed bytes: `input[start..end]` of the buffer it was read into.
    pub start: usize,
    pub end: usize,
    /// Exactly how many image bytes it must decode to.
    pub yields: usize,
}

impl Frame {
    /// An error about this frame, naming it and where it starts.
    pub fn error(&self, what: impl std::fmt::Display) -> io::Error {
        frame_error(self.index, self.payload_offset, what)
    }
}

fn frame_error(index: u64, offset: u64, what: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("zstd frame {index} (payload byte {offset}): {what}"),
    )
}

/// Splits a framed payload into its frames, front to back, checking that
/// they add up to the image; decoding is separate ([`decode_frame`]), so
/// several frames can be decoded at once.
pub struct FrameReader<R> {
    src: R,
    frame_size: usize,
    /// Image bytes the payload must decode to.
    size: u64,
    /// Image bytes the frames read so far yield.
    yielded: u64,
    /// Payload bytes consumed so far.
    consumed: u64,
    index: u64,
}

impl<R: Read> FrameReader<R> {
    pub fn new(src: R, frame_size: u32, size: u64) -> FrameReader<R> {
        FrameReader {
            src,
            frame_size: frame_size as usize,
            size,
            yielded: 0,
            consumed: 0,
            index: 0,
        }
    }

    pub fn frame_size(&self) -> usize {
        self.frame_size
    }

    /// Image bytes the next frame must yield; 0 once the image is complete.
    pub fn next_yield(&self) -> usize {
        (self.size - self.yielded).min(self.frame_size as u64) as usize
    }

    /// Appends the next frame's compressed bytes to `input` and says where
    /// they are. `None` once the frames cover the image and the payload
    /// ends there too.
    pub fn next_frame(&mut self, input: &mut Vec<u8>) -> io::Result<Option<Frame>> {
        let yields = self.next_yield();
        if yields == 0 {
            self.check_end()?;
            return Ok(None);
        }
        let start = input.len();
        let r = self.read_frame(input, start);
        let end = input.len();
        r?;
        let frame = Frame {
            index: self.index,
            payload_offset: self.consumed,
            start,
            end,
            yields,
        };
        self.index += 1;
        self.consumed += (end - start) as u64;
        self.yielded += yields as u64;
        Ok(Some(frame))
    }

    fn invalid(&self, what: impl std::fmt::Display) -> io::Error {
        frame_error(self.index, self.consumed, what)
    }

    /// Appends exactly `n` bytes of the payload to `input`, whose current
    /// frame started at `start`.
    fn take(&mut self, input: &mut Vec<u8>, start: usize, n: usize) -> io::Result<()> {
        let at = input.len();
        input.resize(at + n, 0);
        let mut got = 0;
        while got < n {
            match self.src.read(&mut input[at + got..]) {
                Ok(0) => {
                    input.truncate(at + got);
                    let into = input.len() - start;
                    return Err(if into == 0 {
                        self.invalid(format!(
                            "the payload ends here, {} bytes short of the image's {}",
                            self.size - self.yielded,
                            self.size
                        ))
                    } else {
                        self.invalid(format!("the payload ends {into} bytes into the frame"))
                    });
                }
                Ok(k) => got += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    input.truncate(at + got);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Appends one whole frame to `input`, walking its block headers.
    fn read_frame(&mut self, input: &mut Vec<u8>, start: usize) -> io::Result<()> {
        // A frame of `frame_size` bytes never needs more than this, even
        // stored raw; anything longer is not what the manifest describes.
        let limit = zstd_safe::compress_bound(self.frame_size) + 64;
        self.take(input, start, 4)?;
        let magic = u32::from_le_bytes(input[start..start + 4].try_into().expect("4 bytes"));
        if magic != MAGIC {
            return Err(self.invalid(format!("not a zstd frame (magic {magic:#010x})")));
        }
        self.take(input, start, 1)?;
        let fhd = input[start + 4];
        if fhd & 0x08 != 0 {
            return Err(self.invalid("reserved bit set in the frame header"));
        }
        let single_segment = fhd & 0x20 != 0;
        let window = usize::from(!single_segment);
        let dict = [0, 1, 2, 4][usize::from(fhd & 0x03)];
        let fcs = match fhd >> 6 {
            0 => usize::from(single_segment),
            1 => 2,
            2 => 4,
            _ => 8,
        };
        self.take(input, start, window + dict + fcs)?;
        loop {
            let at = input.len();
            self.take(input, start, 3)?;
            let h = u32::from_le_bytes([input[at], input[at + 1], input[at + 2], 0]);
            let last = h & 1 != 0;
            let size = (h >> 3) as usize;
            let content = match (h >> 1) & 3 {
                0 | 2 => size, // raw, compressed
                1 => 1,        // RLE: one byte, repeated `size` times
                _ => return Err(self.invalid("reserved block type")),
            };
            if size > BLOCK_MAX {
                return Err(self.invalid(format!("block of {size} bytes (at most {BLOCK_MAX})")));
            }
            if input.len() - start + content > limit {
                return Err(self.invalid(format!(
                    "longer than {limit} bytes, more than a frame of {} bytes can need",
                    self.frame_size
                )));
            }
            self.take(input, start, content)?;
            if last {
                break;
            }
        }
        if fhd & 0x04 != 0 {
            self.take(input, start, 4)?; // content checksum
        }
        Ok(())
    }

    /// At the end of the image: the payload must end too.
    fn check_end(&mut self) -> io::Result<()> {
        let mut probe = [0u8; 1];
        loop {
            match self.src.read(&mut probe) {
                Ok(0) => return Ok(()),
                Ok(_) => {
                    return Err(self.invalid(format!(
                        "data after the last frame, which completes the image's {} bytes",
                        self.size
                    )))
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// A decompression context for [`decode_frame`]; one per thread.
pub fn context() -> zstd_safe::DCtx<'static> {
    zstd_safe::DCtx::create()
}

/// Decodes `frame` (read into `input`) straight into `out`, which must be
/// exactly `frame.yields` bytes: one call, no window, no copy.
pub fn decode_frame(
    dctx: &mut zstd_safe::DCtx<'static>,
    frame: &Frame,
    input: &[u8],
    out: &mut [u8],
) -> io::Result<()> {
    let n = dctx
        .decompress(out, &input[frame.start..frame.end])
        .map_err(|code| {
            frame.error(format!(
                "{} (it must decode to exactly {} bytes)",
                zstd_safe::get_error_name(code),
                out.len()
            ))
        })?;
    if n != out.len() {
        return Err(frame.error(format!(
            "decodes to {n} bytes; the manifest's frame_size makes it {}",
            out.len()
        )));
    }
    Ok(())
}

/// Reads a framed payload as the image, one frame at a time (the installer
/// decodes several at once instead; `pipeline::stream_frames`).
pub struct FramedDecoder<R> {
    frames: FrameReader<R>,
    dctx: zstd_safe::DCtx<'static>,
    input: Vec<u8>,
    /// Decoded bytes not yet handed out (only for callers whose buffer is
    /// smaller than a frame).
    spill: Vec<u8>,
    spill_pos: usize,
}

impl<R: Read> FramedDecoder<R> {
    pub fn new(src: R, frame_size: u32, size: u64) -> FramedDecoder<R> {
        FramedDecoder {
            frames: FrameReader::new(src, frame_size, size),
            dctx: context(),
            input: Vec::new(),
            spill: Vec::new(),
            spill_pos: 0,
        }
    }

    /// Decodes the next frame into `out`; `Ok(false)` at the end.
    fn next_into(&mut self, out: &mut Vec<u8>) -> io::Result<bool> {
        self.input.clear();
        let Some(frame) = self.frames.next_frame(&mut self.input)? else {
            return Ok(false);
        };
        out.resize(frame.yields, 0);
        decode_frame(&mut self.dctx, &frame, &self.input, out)?;
        Ok(true)
    }
}

impl<R: Read> Read for FramedDecoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.spill_pos == self.spill.len() {
            if buf.is_empty() {
                return Ok(0);
            }
            let mut spill = std::mem::take(&mut self.spill);
            let r = self.next_into(&mut spill);
            if !matches!(r, Ok(true)) {
                spill.clear();
            }
            self.spill = spill;
            self.spill_pos = 0;
            if !r? {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.spill.len() - self.spill_pos);
        buf[..n].copy_from_slice(&self.spill[self.spill_pos..self.spill_pos + n]);
        self.spill_pos += n;
        Ok(n)
    }
}

/// One compression context set up as framed payloads need (level `level`,
/// content size in each header, no checksum, literals stored raw). Each
/// call makes one independent frame, whatever came before, so encoders on
/// several threads give the same bytes as one (`bundle::compress`).
pub struct FrameEncoder {
    cctx: zstd_safe::CCtx<'static>,
}

fn zstd_error(what: &str, code: zstd_safe::ErrorCode) -> io::Error {
    io::Error::other(format!("zstd {what}: {}", zstd_safe::get_error_name(code)))
}

impl FrameEncoder {
    pub fn new(level: i32) -> io::Result<FrameEncoder> {
        let mut cctx = zstd_safe::CCtx::create();
        cctx.set_parameter(zstd_safe::CParameter::CompressionLevel(level))
            .map_err(|c| zstd_error("level", c))?;
        cctx.set_parameter(zstd_safe::CParameter::ChecksumFlag(false))
            .map_err(|c| zstd_error("checksum flag", c))?;
        cctx.set_parameter(zstd_safe::CParameter::LiteralCompressionMode(
            zstd_safe::ParamSwitch::Disable,
        ))
        .map_err(|c| zstd_error("literal compression", c))?;
        Ok(FrameEncoder { cctx })
    }

    /// Replaces `out` with one frame holding `input`.
    pub fn frame(&mut self, input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        out.clear();
        out.reserve(zstd_safe::compress_bound(input.len()));
        self.cctx
            .set_pledged_src_size(Some(input.len() as u64))
            .map_err(|c| zstd_error("pledged size", c))?;
        self.cctx
            .compress2(out, input)
            .map_err(|c| zstd_error("compress", c))?;
        Ok(())
    }
}

/// Compresses `src` into independent frames of `frame_size` bytes each
/// ([`FrameEncoder`]), writing them to `out`. Returns the bytes read from
/// `src`. (`bundle create` does the same on several threads and hashes on
/// the way: `bundle::compress`.)
pub fn encode(
    src: &mut dyn Read,
    out: &mut dyn io::Write,
    frame_size: u32,
    level: i32,
) -> io::Result<u64> {
    let mut enc = FrameEncoder::new(level)?;
    let mut input = vec![0u8; frame_size as usize];
    let mut frame = Vec::new();
    let mut total = 0u64;
    loop {
        let n = crate::sys::read_full(src, &mut input)?;
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
        enc.frame(&input[..n], &mut frame)?;
        out.write_all(&frame)?;
        if n < input.len() {
            return Ok(total);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FS: u32 = 4096;

    /// Mixed content: compressible runs, noise, and a zero stretch.
    fn image(len: usize) -> Vec<u8> {
        let mut x: u32 = 12345;
        (0..len)
            .map(|i| match (i / 3000) % 3 {
                0 => (i % 251) as u8,
                1 => {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (x >> 16) as u8
                }
                _ => 0,
            })
            .collect()
    }

    fn framed(data: &[u8], fs: u32) -> Vec<u8> {
        let mut out = Vec::new();
        let n = encode(&mut &data[..], &mut out, fs, 3).unwrap();
        assert_eq!(n, data.len() as u64);
        out
    }

    fn decode_all(payload: &[u8], fs: u32, size: u64, bufsize: usize) -> io::Result<Vec<u8>> {
        let mut d = FramedDecoder::new(payload, fs, size);
        let mut out = Vec::new();
        let mut buf = vec![0u8; bufsize];
        loop {
            let n = d.read(&mut buf)?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    #[test]
    fn round_trips_with_any_buffer_size() {
        for len in [1, 4095, 4096, 4097, 3 * 4096, 50_000] {
            let data = image(len);
            let payload = framed(&data, FS);
            for bufsize in [1, 100, 4096, 8192, 1 << 20] {
                let got = decode_all(&payload, FS, len as u64, bufsize).unwrap();
                assert!(got == data, "len {len} bufsize {bufsize}");
            }
        }
    }

    #[test]
    fn any_zstd_decoder_reads_a_framed_payload_as_one_stream() {
        let data = image(40_000);
        let payload = framed(&data, FS);
        assert_eq!(zstd::stream::decode_all(&payload[..]).unwrap(), data);
    }

    #[test]
    fn frames_are_found_by_their_block_headers_and_say_what_they_yield() {
        let data = image(3 * 4096 + 10);
        let payload = framed(&data, FS);
        let mut r = FrameReader::new(&payload[..], FS, data.len() as u64);
        let mut input = Vec::new();
        let mut frames = Vec::new();
        while let Some(f) = r.next_frame(&mut input).unwrap() {
            frames.push(f);
        }
        assert_eq!(input, payload, "every byte belongs to exactly one frame");
        let yields: Vec<usize> = frames.iter().map(|f| f.yields).collect();
        assert_eq!(yields, [4096, 4096, 4096, 10]);
        let mut dctx = context();
        let mut out = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            assert_eq!(f.index, i as u64);
            assert_eq!(f.payload_offset, f.start as u64);
            let mut piece = vec![0u8; f.yields];
            decode_frame(&mut dctx, f, &input, &mut piece).unwrap();
            out.extend_from_slice(&piece);
        }
        assert!(out == data);
    }

    fn refused(payload: &[u8], fs: u32, size: u64) -> String {
        let e = decode_all(payload, fs, size, 1 << 16).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
        e.to_string()
    }

    #[test]
    fn refuses_what_the_manifest_does_not_describe() {
        let data = image(5 * 4096);
        let payload = framed(&data, FS);
        let one_stream = zstd::stream::encode_all(&data[..], 3).unwrap();
        let big_frames = framed(&data, 8192);
        let mut trailing = payload.clone();
        trailing.extend_from_slice(&framed(b"more", FS));
        let mut short_last = payload.clone();
        // Drop the last frame: the image is then a frame short.
        let cut = framed(&data[..4 * 4096], FS).len();
        short_last.truncate(cut);
        let mut bad_magic = payload.clone();
        bad_magic[0] ^= 0xff;

        let cases: Vec<(&str, &[u8], u64, &str)> = vec![
            ("one big frame", &one_stream, data.len() as u64, "frame 0"),
            ("frames of 8 KiB", &big_frames, data.len() as u64, "frame 0"),
            (
                "trailing frame",
                &trailing,
                data.len() as u64,
                "data after the last frame",
            ),
            (
                "image declared larger",
                &payload,
                data.len() as u64 + 1,
                "frame 5",
            ),
            (
                "a frame missing",
                &short_last,
                data.len() as u64,
                "bytes short",
            ),
            (
                "cut inside a frame",
                &payload[..payload.len() - 3],
                data.len() as u64,
                "frame 4",
            ),
            (
                "bad magic",
                &bad_magic,
                data.len() as u64,
                "not a zstd frame",
            ),
            ("empty payload", b"", 1, "frame 0"),
        ];
        for (name, p, size, want) in cases {
            let msg = refused(p, FS, size);
            assert!(msg.contains(want), "{name}: {msg}");
        }
    }

    #[test]
    fn a_corrupt_block_is_refused_or_caught_by_the_image_hash() {
        // Flip each byte of a frame in turn: decoding either fails with a
        // named frame or yields other bytes (which the SHA-256 catches);
        // it never panics, loops or yields a different length.
        let data = image(2 * 4096);
        let payload = framed(&data, FS);
        for i in 0..payload.len() {
            let mut p = payload.clone();
            p[i] ^= 0x55;
            match decode_all(&p, FS, data.len() as u64, 1 << 16) {
                Ok(out) => assert_eq!(out.len(), data.len(), "byte {i}"),
                Err(e) => assert!(e.to_string().contains("zstd frame"), "byte {i}: {e}"),
            }
        }
    }

    #[test]
    fn an_oversized_frame_is_refused_before_it_is_read_whole() {
        // A hand-made frame of raw blocks, far more than 4 KiB can need.
        let mut p = MAGIC.to_le_bytes().to_vec();
        p.push(0x00); // no content size, window descriptor follows
        p.push(0x00);
        for _ in 0..40 {
            let h: u32 = 1000 << 3; // raw (type 0), not last
            p.extend_from_slice(&h.to_le_bytes()[..3]);
            p.extend(std::iter::repeat_n(7u8, 1000));
        }
        let msg = refused(&p, FS, 4096);
        assert!(msg.contains("longer than"), "{msg}");
    }
}

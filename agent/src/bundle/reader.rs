//! Reads a bundle front to back from any byte stream.
//!
//! The reader is a type-state: [`UnverifiedBundle`] exposes the manifest for
//! inspection only; payloads can be read only from a [`VerifiedBundle`],
//! which exists only after the signatures passed the keyring's threshold.

use std::io::{self, Read};

use sha2::{Digest, Sha256};

use super::chunks::{ChunkList, ENTRY};
use super::keys::{KeyId, Keyring};
use super::manifest::{chunks_member_name, Image, Manifest, ManifestError};
use super::signature::{SignatureError, SignatureList};
use super::tar::{self, Block, TarError, BLOCK};

pub const MANIFEST_NAME: &str = "manifest.json";
pub const SIGNATURES_NAME: &str = "signatures.json";
/// Largest manifest accepted; a bigger one is refused before it is read.
pub const MAX_MANIFEST: u64 = 1 << 20;
pub const MAX_SIGNATURES: u64 = 64 << 10;
/// Zero bytes accepted after the end-of-archive marker: a tar's padding to
/// its record size (10 KiB for GNU tar's default; 64 KiB allows a blocking
/// factor of 128).
pub const END_SLACK: u64 = 64 << 10;

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("bundle is empty")]
    Empty,
    #[error("bundle is truncated at byte offset {offset} (while reading {what})")]
    Truncated { offset: u64, what: String },
    #[error("bad tar header at byte offset {offset}: {source}")]
    Tar { offset: u64, source: TarError },
    #[error("expected member {expected:?} at byte offset {offset}, found {found:?}")]
    UnexpectedMember {
        offset: u64,
        expected: String,
        found: String,
    },
    #[error("image {index} ({name}) is missing: the archive ends at byte offset {offset}")]
    MissingImage {
        index: usize,
        name: String,
        offset: u64,
    },
    #[error("{what} member is {size} bytes; at most {limit} are accepted")]
    TooLarge {
        what: &'static str,
        size: u64,
        limit: u64,
    },
    #[error("invalid manifest: {0}")]
    Manifest(#[from] ManifestError),
    #[error("signature check failed: {0}")]
    Signature(#[from] SignatureError),
    #[error(
        "image {index} ({name}): payload member is {found} bytes, the manifest says {expected}"
    )]
    PayloadSize {
        index: usize,
        name: String,
        found: u64,
        expected: u64,
    },
    #[error("image {index} ({name}): {what}")]
    ChunkIndex {
        index: usize,
        name: String,
        what: &'static str,
    },
    #[error("unexpected member {name:?} at byte offset {offset} after the last image")]
    Trailing { offset: u64, name: String },
    #[error("data at byte offset {offset}, after the end-of-archive marker; nothing may follow it but tar's zero padding")]
    AfterEnd { offset: u64 },
    #[error("read error at byte offset {offset}: {source}")]
    Io { offset: u64, source: io::Error },
}

/// An `io::Error` payload that marks a stream ending early.
#[derive(Debug, thiserror::Error)]
#[error("bundle is truncated at byte offset {0}")]
pub struct TruncatedAt(pub u64);

/// Counts bytes consumed from the underlying stream.
struct Counted<R> {
    inner: R,
    pos: u64,
}

impl<R: Read> Counted<R> {
    /// Fills `buf` completely; returns how many bytes were read before EOF.
    fn fill(&mut self, buf: &mut [u8]) -> Result<usize, BundleError> {
        let mut n = 0;
        while n < buf.len() {
            match self.inner.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => {
                    n += k;
                    self.pos += k as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(BundleError::Io {
                        offset: self.pos,
                        source,
                    });
                }
            }
        }
        Ok(n)
    }

    fn exact(&mut self, buf: &mut [u8], what: &str) -> Result<(), BundleError> {
        if self.fill(buf)? < buf.len() {
            return Err(BundleError::Truncated {
                offset: self.pos,
                what: what.to_string(),
            });
        }
        Ok(())
    }

    fn skip(&mut self, mut n: u64, what: &str) -> Result<(), BundleError> {
        let mut scratch = [0u8; BLOCK];
        while n > 0 {
            let k = n.min(BLOCK as u64) as usize;
            self.exact(&mut scratch[..k], what)?;
            n -= k as u64;
        }
        Ok(())
    }

    /// Reads the next header block. `None` at an end marker or clean EOF.
    fn header(&mut self) -> Result<Option<tar::Header>, BundleError> {
        let start = self.pos;
        let mut b = [0u8; BLOCK];
        let n = self.fill(&mut b)?;
        if n == 0 {
            return Ok(None);
        }
        if n < BLOCK {
            return Err(BundleError::Truncated {
                offset: self.pos,
                what: "a tar header".into(),
            });
        }
        match tar::parse_header(&b).map_err(|source| BundleError::Tar {
            offset: start,
            source,
        })? {
            Block::End => Ok(None),
            Block::Member(h) => Ok(Some(h)),
        }
    }

    /// After the end marker (or at EOF): only zero padding, then EOF. A
    /// member hidden behind a lone zero block is refused, not skipped, so
    /// no reader that reads on (GNU tar -i) sees more than we checked.
    fn check_end(&mut self) -> Result<(), BundleError> {
        let limit = self.pos.saturating_add(END_SLACK);
        let mut b = [0u8; BLOCK];
        loop {
            let at = self.pos;
            let n = self.fill(&mut b)?;
            if n == 0 {
                return Ok(());
            }
            if let Some(i) = b[..n].iter().position(|&x| x != 0) {
                return Err(BundleError::AfterEnd {
                    offset: at + i as u64,
                });
            }
            if self.pos > limit {
                return Err(BundleError::AfterEnd { offset: limit });
            }
        }
    }

    fn small_member(&mut self, name: &str, limit: u64) -> Result<Vec<u8>, BundleError> {
        let offset = self.pos;
        let h = match self.header()? {
            Some(h) => h,
            None if offset == 0 => return Err(BundleError::Empty),
            None => {
                return Err(BundleError::Truncated {
                    offset,
                    what: format!("member {name}"),
                });
            }
        };
        if h.name != name {
            return Err(BundleError::UnexpectedMember {
                offset,
                expected: name.into(),
                found: h.name,
            });
        }
        if h.size > limit {
            return Err(BundleError::TooLarge {
                what: if name == MANIFEST_NAME {
                    "manifest"
                } else if name == SIGNATURES_NAME {
                    "signature list"
                } else {
                    "chunk index"
                },
                size: h.size,
                limit,
            });
        }
        let mut data = vec![0u8; h.size as usize];
        self.exact(&mut data, name)?;
        self.skip(tar::padding(h.size), name)?;
        Ok(data)
    }
}

/// A bundle whose manifest has been read but not yet trusted.
pub struct UnverifiedBundle<R> {
    src: Counted<R>,
    manifest_bytes: Vec<u8>,
    manifest: Manifest,
    signatures: SignatureList,
}

impl<R: Read> UnverifiedBundle<R> {
    /// Reads the manifest and signature members from the front of a stream.
    pub fn open(inner: R) -> Result<Self, BundleError> {
        let mut src = Counted { inner, pos: 0 };
        let manifest_bytes = src.small_member(MANIFEST_NAME, MAX_MANIFEST)?;
        let manifest = Manifest::parse(&manifest_bytes)?;
        let sig_bytes = src.small_member(SIGNATURES_NAME, MAX_SIGNATURES)?;
        let signatures = SignatureList::parse(&sig_bytes)?;
        Ok(UnverifiedBundle {
            src,
            manifest_bytes,
            manifest,
            signatures,
        })
    }

    /// The manifest, not yet authenticated: for display only.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn manifest_bytes(&self) -> &[u8] {
        &self.manifest_bytes
    }

    pub fn signatures(&self) -> &SignatureList {
        &self.signatures
    }

    /// Bytes consumed so far (the start of the first payload member).
    pub fn offset(&self) -> u64 {
        self.src.pos
    }

    /// Gives back the stream, positioned at the first payload header.
    pub fn into_inner(self) -> R {
        self.src.inner
    }

    /// The bundle read on without checking its signatures: for tools that
    /// only look at it (`tandem bundle diff`), never for installing.
    pub fn unchecked(self) -> VerifiedBundle<R> {
        VerifiedBundle {
            src: self.src,
            manifest: self.manifest,
            signers: vec![],
            next: 0,
            remaining: 0,
            padding: 0,
        }
    }

    /// Checks the signatures against the keyring and threshold.
    pub fn verify(
        self,
        keyring: &Keyring,
        threshold: usize,
    ) -> Result<VerifiedBundle<R>, BundleError> {
        let signers = self
            .signatures
            .verify(&self.manifest_bytes, keyring, threshold)?;
        Ok(VerifiedBundle {
            src: self.src,
            manifest: self.manifest,
            signers,
            next: 0,
            remaining: 0,
            padding: 0,
        })
    }
}

/// A bundle whose manifest is authenticated; payloads stream from it in order.
pub struct VerifiedBundle<R> {
    src: Counted<R>,
    manifest: Manifest,
    signers: Vec<KeyId>,
    next: usize,
    remaining: u64,
    padding: u64,
}

impl<R: Read> VerifiedBundle<R> {
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn signers(&self) -> &[KeyId] {
        &self.signers
    }

    pub fn offset(&self) -> u64 {
        self.src.pos
    }

    fn finish_member(&mut self) -> Result<(), BundleError> {
        // parse_header refuses sizes whose padding overflows; saturate
        // anyway, since skipping u64::MAX bytes just ends as truncated.
        let n = self.remaining.saturating_add(self.padding);
        self.remaining = 0;
        self.padding = 0;
        self.src.skip(n, "payload")
    }

    /// Advances to the next image's payload, reading and checking its chunk
    /// index first if it has one; `None` after the last image (having
    /// checked that nothing follows it).
    pub fn next_image(&mut self) -> Result<Option<NextImage<'_, R>>, BundleError> {
        self.finish_member()?;
        let index = self.next;
        let img = self.manifest.images.get(index).cloned();
        let chunks = match &img {
            Some(img) => self.chunk_index(index, img)?,
            None => None,
        };
        let offset = self.src.pos;
        let header = self.src.header()?;
        let Some(img) = img else {
            return match header {
                None => self.src.check_end().map(|()| None),
                Some(h) => Err(BundleError::Trailing {
                    offset,
                    name: h.name,
                }),
            };
        };
        let expected = self.manifest.member_name(index);
        let Some(h) = header else {
            return Err(BundleError::MissingImage {
                index,
                name: expected,
                offset,
            });
        };
        if h.name != expected {
            return Err(BundleError::UnexpectedMember {
                offset,
                expected,
                found: h.name,
            });
        }
        if h.size != img.payload_size {
            return Err(BundleError::PayloadSize {
                index,
                name: expected,
                found: h.size,
                expected: img.payload_size,
            });
        }
        self.next += 1;
        self.remaining = h.size;
        self.padding = tar::padding(h.size);
        Ok(Some(NextImage {
            index,
            image: img,
            chunks,
            payload: PayloadReader {
                src: &mut self.src,
                remaining: &mut self.remaining,
            },
        }))
    }

    /// Reads image `index`'s chunk index member, if the manifest names one,
    /// and checks it against the manifest's hash.
    fn chunk_index(&mut self, index: usize, img: &Image) -> Result<Option<ChunkList>, BundleError> {
        if let Some(c) = &img.cdc {
            return self.chunk_table(index, img, c).map(Some);
        }
        let Some(c) = &img.chunks else {
            return Ok(None);
        };
        let name = chunks_member_name(index, img);
        let entries = ChunkList::count(img.size, c.size);
        // Bounded: the manifest allows at most MAX_CHUNKS entries.
        let bytes = self.src.small_member(&name, entries * ENTRY as u64)?;
        let err = |what| BundleError::ChunkIndex {
            index,
            name: name.clone(),
            what,
        };
        let digest = hex::encode(Sha256::digest(&bytes));
        let list = ChunkList::new(bytes, c.size, img.size)
            .ok_or_else(|| err("the chunk index does not hold one hash per chunk"))?;
        if digest != c.sha256 {
            return Err(err("the chunk index does not match the manifest's hash"));
        }
        Ok(Some(list))
    }
}

impl<R: Read> VerifiedBundle<R> {
    /// Reads image `index`'s content-defined chunk table and checks it
    /// against the manifest: its hash, then that its chunks make the image
    /// and its stored lengths the payload (raw chunks stored as they are).
    fn chunk_table(
        &mut self,
        index: usize,
        img: &Image,
        c: &crate::bundle::manifest::Cdc,
    ) -> Result<ChunkList, BundleError> {
        let name = chunks_member_name(index, img);
        // Bounded: the manifest allows at most MAX_CDC_CHUNKS entries.
        let bytes = self
            .src
            .small_member(&name, c.count * crate::bundle::chunks::TABLE_ENTRY as u64)?;
        check_table(index, img, bytes)
    }
}

/// Checks a content-defined chunk table member's bytes against image
/// `index`'s manifest entry: its hash, then that its chunks make the image
/// and its stored lengths the payload (raw chunks stored as they are).
/// The stream reader and the adaptive installer's range reader share it.
pub fn check_table(index: usize, img: &Image, bytes: Vec<u8>) -> Result<ChunkList, BundleError> {
    let c = img.cdc.as_ref().expect("a content-defined image");
    let err = |what| BundleError::ChunkIndex {
        index,
        name: chunks_member_name(index, img),
        what,
    };
    if hex::encode(Sha256::digest(&bytes)) != c.sha256 {
        return Err(err("the chunk table does not match the manifest's hash"));
    }
    let t = ChunkList::table(bytes, c.count, c.max, img.size, img.payload_size)
        .ok_or_else(|| err("the chunk table's lengths do not make the image and its payload"))?;
    if img.compression == crate::bundle::manifest::Compression::None
        && (0..t.len()).any(|i| {
            let (a, b) = t.span(i);
            let (sa, sb) = t.stored_span(i);
            b - a != sb - sa
        })
    {
        return Err(err(
            "an uncompressed chunk's stored length differs from its length",
        ));
    }
    Ok(t)
}

/// The next image of a verified bundle: its manifest entry, its checked
/// chunk index if it has one, and its payload.
pub struct NextImage<'a, R> {
    pub index: usize,
    pub image: Image,
    pub chunks: Option<ChunkList>,
    pub payload: PayloadReader<'a, R>,
}

/// The raw bytes of one payload member. Ending early is an `io::Error`
/// whose inner error is [`TruncatedAt`].
pub struct PayloadReader<'a, R> {
    src: &'a mut Counted<R>,
    remaining: &'a mut u64,
}

impl<R: Read> Read for PayloadReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if *self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(*self.remaining).unwrap_or(usize::MAX));
        let n = loop {
            match self.src.inner.read(&mut buf[..want]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => break r?,
            }
        };
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                TruncatedAt(self.src.pos),
            ));
        }
        self.src.pos += n as u64;
        *self.remaining -= n as u64;
        Ok(n)
    }
}

/// The truncation offset inside an `io::Error`, if that is what it is.
pub fn truncated_at(e: &io::Error) -> Option<u64> {
    e.get_ref()?.downcast_ref::<TruncatedAt>().map(|t| t.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::manifest::{Cdc, Compression};

    fn image(compression: Compression, table: &[u8], count: u64) -> Image {
        Image {
            slot_class: crate::slot::SlotClass::new("rootfs").unwrap(),
            group: None,
            size: 2000,
            sha256: "0".repeat(64),
            compression,
            payload_size: 2000,
            frame_size: None,
            chunks: None,
            cdc: Some(Cdc {
                min: 64,
                avg: 1024,
                max: 4096,
                count,
                sha256: hex::encode(Sha256::digest(table)),
            }),
            verity: None,
        }
    }

    #[test]
    fn raw_chunks_must_be_stored_as_they_are() {
        // Lengths and stored lengths add up, but chunk by chunk differ.
        let t = ChunkList::table_of(&[([1; 32], 1000, 999), ([2; 32], 1000, 1001)], 4096).unwrap();
        let bytes = t.as_bytes().to_vec();
        let e = check_table(0, &image(Compression::None, &bytes, 2), bytes.clone()).unwrap_err();
        assert!(e.to_string().contains("stored length differs"), "{e}");
        // Compressed, the same table is fine.
        check_table(0, &image(Compression::Zstd, &bytes, 2), bytes.clone()).unwrap();
        // A table the manifest does not pin is refused.
        let mut other = bytes.clone();
        other[0] ^= 1;
        let e = check_table(0, &image(Compression::Zstd, &bytes, 2), other).unwrap_err();
        assert!(e.to_string().contains("manifest's hash"), "{e}");
    }
}

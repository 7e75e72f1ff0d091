//! Writes bundles: the archive layout, `create` and `sign`.
//!
//! Creating streams each image once: it is hashed while read and, when
//! compressed, compressed into a scratch file beside the output (the manifest
//! must precede the payloads and needs their sizes). Framed zstd payloads are
//! compressed on several threads (`compress`), giving the same bytes as one.
//! Nothing is held in memory but fixed-size buffers.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use sha2::{Digest, Sha256};

use super::chunks::{ChunkList, ChunkListBuilder};
use super::compress::{self, CompressError, Hashed};
use super::manifest::{
    chunks_member_name, member_name, Chunks, Compression, Image, Manifest, Verity, FORMAT,
};
use super::reader::{BundleError, UnverifiedBundle, MANIFEST_NAME, SIGNATURES_NAME};
use super::signature::SignatureList;
use super::tar::{self, Header, BLOCK};
use crate::slot::SlotClass;

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("invalid bundle metadata: {0}")]
    Manifest(#[from] super::manifest::ManifestError),
    #[error("cannot read the input bundle: {0}")]
    Input(#[from] BundleError),
    #[error("tar: {0}")]
    Tar(#[from] tar::TarError),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> WriteError + '_ {
    move |source| WriteError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes tar members in order.
pub struct ArchiveWriter<W: Write> {
    w: W,
    mtime: u64,
}

impl<W: Write> ArchiveWriter<W> {
    pub fn new(w: W, mtime: u64) -> Self {
        ArchiveWriter { w, mtime }
    }

    pub fn bytes(&mut self, name: &str, data: &[u8]) -> Result<(), WriteError> {
        self.stream(name, data.len() as u64, &mut &data[..])
    }

    /// Copies exactly `size` bytes from `r` as member `name`. From a `&File`
    /// into a `BufWriter<File>` the copy stays in the kernel
    /// (`copy_file_range`), as for compressed payloads from their scratch file.
    pub fn stream<R: Read>(&mut self, name: &str, size: u64, r: R) -> Result<(), WriteError> {
        let h = tar::build_header(&Header {
            name: name.to_string(),
            size,
            mtime: self.mtime,
        })?;
        let p = Path::new(name);
        self.w.write_all(&h).map_err(io_err(p))?;
        let n = io::copy(&mut r.take(size), &mut self.w).map_err(io_err(p))?;
        if n != size {
            return Err(WriteError::Io {
                path: p.to_path_buf(),
                source: io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("expected {size} bytes, got {n}"),
                ),
            });
        }
        let pad = [0u8; BLOCK];
        self.w
            .write_all(&pad[..tar::padding(size) as usize])
            .map_err(io_err(p))
    }

    /// Writes the end-of-archive marker and returns the writer.
    pub fn finish(mut self) -> Result<W, WriteError> {
        self.w
            .write_all(&[0u8; 2 * BLOCK])
            .map_err(io_err(Path::new("<end>")))?;
        Ok(self.w)
    }
}

/// One image to put into a new bundle.
#[derive(Debug, Clone)]
pub struct ImageInput {
    pub slot_class: SlotClass,
    pub path: PathBuf,
    pub compression: Compression,
    /// With zstd: compress into independent frames of this many bytes
    /// ([`FRAME_SIZE`] unless there is a reason not to), which the installer
    /// decodes straight into its write buffers. `None` writes one zstd
    /// stream, as agents before `frame_size` expect.
    pub frame_size: Option<u32>,
    /// Write a chunk index of this many bytes per chunk ([`CHUNK_SIZE`]
    /// unless there is a reason not to); `None` for none, as agents before
    /// chunk indexes expect.
    pub chunk_size: Option<u32>,
    /// Content-defined chunks instead (excludes `frame_size` and
    /// `chunk_size`): a chunk table and one zstd frame per chunk, what
    /// adaptive updates fetch by range ([`super::cdc::DEFAULT`]).
    pub cdc: Option<super::cdc::Params>,
    pub verity: Option<Verity>,
    /// Only for installs into this slot group (one image per group of the
    /// class; the manifest then lists feature `group-images`).
    pub group: Option<crate::slot::SlotGroup>,
}

/// Chunk size for new bundles' chunk indexes: one installer write buffer,
/// and one zstd frame.
pub const CHUNK_SIZE: u32 = super::manifest::MAX_FRAME_SIZE;

/// Frame size for new zstd bundles: one installer write buffer. Independent
/// 1 MiB frames cost about 3% in size against one stream (bench/README.md).
pub const FRAME_SIZE: u32 = super::manifest::MAX_FRAME_SIZE;

/// Bundle-wide metadata for a new bundle.
#[derive(Debug, Clone)]
pub struct BundleMeta {
    pub version: semver::Version,
    pub compatible: String,
    pub security_epoch: u64,
    pub created_unix: u64,
    pub description: Option<String>,
}

/// zstd level used for new bundles. Its default window (2 MiB for large
/// inputs) stays well within what the installer accepts
/// (`bundle::ZSTD_WINDOW_LOG_MAX`), keeping the device's memory low.
pub const ZSTD_LEVEL: i32 = 3;

/// How [`create_with`] works, as opposed to what it makes: nothing here
/// changes a byte of the bundle.
#[derive(Debug, Clone)]
pub struct CreateOptions {
    /// Threads compressing zstd frames (images with `frame_size`); at most
    /// two frames per thread are in memory at once.
    pub jobs: usize,
}

impl Default for CreateOptions {
    /// One thread per CPU.
    fn default() -> CreateOptions {
        CreateOptions {
            jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

struct Prepared {
    image: Image,
    chunks: Option<ChunkList>,
    payload: PathBuf,
    scratch: bool,
}

/// Hashes (and, if asked, compresses) one image in one pass; returns its
/// manifest entry.
fn prepare(
    input: &ImageInput,
    scratch: &Path,
    opts: &CreateOptions,
) -> Result<Prepared, WriteError> {
    let f = File::open(&input.path).map_err(io_err(&input.path))?;
    let reader = |f| HashingReader {
        inner: BufReader::with_capacity(1 << 20, f),
        hash: Sha256::new(),
        n: 0,
        chunks: input.chunk_size.map(ChunkListBuilder::new),
    };
    if let Some(p) = &input.cdc {
        return prepare_cdc(input, p, f, scratch, opts);
    }
    let (hashed, payload, payload_size, is_scratch) = match (input.compression, input.frame_size) {
        (Compression::None, _) => {
            let mut hasher = reader(f);
            io::copy(&mut hasher, &mut io::sink()).map_err(io_err(&input.path))?;
            let h = hasher.finish();
            let size = h.size;
            (h, input.path.clone(), size, false)
        }
        (Compression::Zstd, Some(frame)) => {
            let mut out = BufWriter::new(File::create(scratch).map_err(io_err(scratch))?);
            let copts = compress::Options {
                frame_size: frame,
                chunk_size: input.chunk_size,
                level: ZSTD_LEVEL,
                jobs: opts.jobs,
            };
            let h = compress::compress(&mut &f, &mut out, &copts).map_err(|e| match e {
                CompressError::Read(e) | CompressError::Zstd(e) => io_err(&input.path)(e),
                CompressError::Write(e) => io_err(scratch)(e),
            })?;
            let mut f = out
                .into_inner()
                .map_err(|e| io_err(scratch)(e.into_error()))?;
            let len = f.seek(SeekFrom::End(0)).map_err(io_err(scratch))?;
            (h, scratch.to_path_buf(), len, true)
        }
        (Compression::Zstd, None) => {
            let mut hasher = reader(f);
            let out = File::create(scratch).map_err(io_err(scratch))?;
            let mut enc = zstd::stream::write::Encoder::new(BufWriter::new(out), ZSTD_LEVEL)
                .map_err(io_err(scratch))?;
            enc.include_checksum(true).map_err(io_err(scratch))?;
            io::copy(&mut hasher, &mut enc).map_err(io_err(&input.path))?;
            let mut w = enc.finish().map_err(io_err(scratch))?;
            w.flush().map_err(io_err(scratch))?;
            let len = w
                .get_mut()
                .seek(SeekFrom::End(0))
                .map_err(io_err(scratch))?;
            (hasher.finish(), scratch.to_path_buf(), len, true)
        }
    };
    let chunks = hashed.chunks;
    Ok(Prepared {
        image: Image {
            slot_class: input.slot_class.clone(),
            group: input.group,
            size: hashed.size,
            sha256: hex::encode(hashed.sha256),
            compression: input.compression,
            payload_size,
            frame_size: match input.compression {
                Compression::Zstd => input.frame_size,
                Compression::None => None,
            },
            chunks: chunks.as_ref().map(|c| Chunks {
                size: c.size(),
                sha256: hex::encode(Sha256::digest(c.as_bytes())),
            }),
            cdc: None,
            verity: input.verity.clone(),
        },
        chunks,
        payload,
        scratch: is_scratch,
    })
}

/// [`prepare`] for content-defined chunks: one pass chunks, hashes and (on
/// `opts.jobs` threads) compresses.
fn prepare_cdc(
    input: &ImageInput,
    p: &super::cdc::Params,
    f: File,
    scratch: &Path,
    opts: &CreateOptions,
) -> Result<Prepared, WriteError> {
    let mut r = BufReader::with_capacity(1 << 20, f);
    let (c, payload, is_scratch) = match input.compression {
        Compression::Zstd => {
            let mut out = BufWriter::new(File::create(scratch).map_err(io_err(scratch))?);
            let c = super::cdc::compress(&mut r, &mut out, p, Some(ZSTD_LEVEL), opts.jobs)
                .map_err(io_err(&input.path))?;
            out.flush().map_err(io_err(scratch))?;
            (c, scratch.to_path_buf(), true)
        }
        Compression::None => {
            let c = super::cdc::compress(&mut r, &mut io::sink(), p, None, opts.jobs)
                .map_err(io_err(&input.path))?;
            (c, input.path.clone(), false)
        }
    };
    let table = ChunkList::table_of(&c.entries, p.max).ok_or_else(|| WriteError::Io {
        path: input.path.clone(),
        source: io::Error::other("the image is empty"),
    })?;
    Ok(Prepared {
        image: Image {
            slot_class: input.slot_class.clone(),
            group: input.group,
            size: c.size,
            sha256: hex::encode(c.sha256),
            compression: input.compression,
            payload_size: c.payload_size,
            frame_size: None,
            chunks: None,
            cdc: Some(super::manifest::Cdc {
                min: p.min,
                avg: p.avg,
                max: p.max,
                count: table.len(),
                sha256: hex::encode(Sha256::digest(table.as_bytes())),
            }),
            verity: input.verity.clone(),
        },
        chunks: Some(table),
        payload,
        scratch: is_scratch,
    })
}

/// Hashes what is read through it: the whole, and each chunk if asked.
struct HashingReader<R> {
    inner: R,
    hash: Sha256,
    n: u64,
    chunks: Option<ChunkListBuilder>,
}

impl<R> HashingReader<R> {
    fn finish(self) -> Hashed {
        Hashed {
            size: self.n,
            sha256: self.hash.finalize().into(),
            chunks: self.chunks.map(ChunkListBuilder::finish),
        }
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.hash.update(&buf[..k]);
        if let Some(c) = &mut self.chunks {
            c.update(&buf[..k]);
        }
        self.n += k as u64;
        Ok(k)
    }
}

fn temp_beside(out: &Path, suffix: &str) -> PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(format!(".{}.{suffix}", std::process::id()));
    PathBuf::from(s)
}

/// Creates a bundle at `out` (via a temporary file and rename) and signs it
/// with every key given, compressing on every CPU. Returns the manifest
/// written.
pub fn create(
    out: &Path,
    meta: &BundleMeta,
    inputs: &[ImageInput],
    keys: &[SigningKey],
) -> Result<Manifest, WriteError> {
    create_with(out, meta, inputs, keys, &CreateOptions::default())
}

/// [`create`] with options: the same inputs and `meta` give the same bundle,
/// byte for byte, whatever `opts` says.
pub fn create_with(
    out: &Path,
    meta: &BundleMeta,
    inputs: &[ImageInput],
    keys: &[SigningKey],
    opts: &CreateOptions,
) -> Result<Manifest, WriteError> {
    let mut prepared = Vec::new();
    let result = (|| {
        for (i, input) in inputs.iter().enumerate() {
            prepared.push(prepare(input, &temp_beside(out, &format!("img{i}")), opts)?);
        }
        let manifest = Manifest {
            format: FORMAT,
            version: meta.version.clone(),
            compatible: meta.compatible.clone(),
            security_epoch: meta.security_epoch,
            created: crate::timefmt::rfc3339(meta.created_unix),
            description: meta.description.clone(),
            features: if inputs.iter().any(|i| i.group.is_some()) {
                vec![super::manifest::GROUP_IMAGES.to_string()]
            } else {
                vec![]
            },
            images: prepared.iter().map(|p| p.image.clone()).collect(),
        };
        manifest.validate()?;
        let mbytes = manifest.to_bytes();
        let mut sigs = SignatureList::default();
        for k in keys {
            sigs.sign(&mbytes, k);
        }
        let tmp = temp_beside(out, "tmp");
        let r = (|| {
            let f = File::create(&tmp).map_err(io_err(&tmp))?;
            let mut a = ArchiveWriter::new(BufWriter::with_capacity(1 << 20, f), meta.created_unix);
            a.bytes(MANIFEST_NAME, &mbytes)?;
            a.bytes(SIGNATURES_NAME, &sigs.to_bytes())?;
            for (i, p) in prepared.iter().enumerate() {
                if let Some(c) = &p.chunks {
                    a.bytes(&chunks_member_name(i, &p.image), c.as_bytes())?;
                }
                let f = File::open(&p.payload).map_err(io_err(&p.payload))?;
                a.stream(&member_name(i, &p.image), p.image.payload_size, &f)?;
            }
            let w = a.finish()?;
            let f = w.into_inner().map_err(|e| WriteError::Io {
                path: tmp.clone(),
                source: e.into_error(),
            })?;
            f.sync_all().map_err(io_err(&tmp))?;
            std::fs::rename(&tmp, out).map_err(io_err(out))
        })();
        if r.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        r.map(|()| manifest)
    })();
    for p in prepared.iter().filter(|p| p.scratch) {
        let _ = std::fs::remove_file(&p.payload);
    }
    result
}

/// Adds signatures to an existing bundle, copying payloads byte for byte.
/// `output` may equal `input` (the file is replaced atomically).
pub fn sign(input: &Path, output: &Path, keys: &[SigningKey]) -> Result<SignatureList, WriteError> {
    let f = File::open(input).map_err(io_err(input))?;
    let bundle = UnverifiedBundle::open(BufReader::new(f))?;
    let mbytes = bundle.manifest_bytes().to_vec();
    let mut sigs = bundle.signatures().clone();
    for k in keys {
        sigs.sign(&mbytes, k);
    }
    let mtime = crate::timefmt::parse_rfc3339(&bundle.manifest().created).unwrap_or(0);
    let offset = bundle.offset();
    drop(bundle);
    let mut rest = File::open(input).map_err(io_err(input))?;
    rest.seek(SeekFrom::Start(offset)).map_err(io_err(input))?;
    let tmp = temp_beside(output, "tmp");
    let r = (|| {
        let f = File::create(&tmp).map_err(io_err(&tmp))?;
        let mut a = ArchiveWriter::new(BufWriter::new(f), mtime);
        a.bytes(MANIFEST_NAME, &mbytes)?;
        a.bytes(SIGNATURES_NAME, &sigs.to_bytes())?;
        let mut w = a.w;
        io::copy(&mut rest, &mut w).map_err(io_err(input))?;
        let f = w.into_inner().map_err(|e| WriteError::Io {
            path: tmp.clone(),
            source: e.into_error(),
        })?;
        f.sync_all().map_err(io_err(&tmp))?;
        std::fs::rename(&tmp, output).map_err(io_err(output))
    })();
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r.map(|()| sigs)
}

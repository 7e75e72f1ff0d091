//! Where a bundle comes from: a local file (or USB stick), HTTP(S), or an
//! OCI registry. Nothing is staged on disk.
//!
//! Every transport is one [`BundleSource`]: it knows the bundle's length,
//! gives any byte range of it, and streams it whole front to back (checking
//! at the end what the transport can check: an OCI blob's digest). The
//! installer reads the stream for a full install; a plan that fetches only
//! some ranges uses [`BundleSource::range`]. A new transport is one more
//! implementation of the trait and one more [`Source`] variant
//! (docs/architecture.md).
//!
//! A source string is parsed once ([`Source::parse`]): `file://`, `http://`,
//! `https://` and `oci://` URLs and plain paths; any other scheme is refused
//! rather than taken for a file name. What is shown or stored of a URL is
//! [`redact`]ed: no userinfo, no query string (presigned tokens).

pub mod http;
pub mod oci;
pub mod pinned;

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::config::{HttpSettings, OciSettings};

/// A bundle's bytes, wherever they are.
pub trait BundleSource: Send {
    /// What to show and record (redacted).
    fn shown(&self) -> String;
    /// The bundle's length in bytes.
    fn size(&mut self) -> Result<u64, FetchError>;
    /// Bytes `start..end` (end exclusive; an end past the size reads to the end).
    fn range(&mut self, start: u64, end: u64) -> Result<Box<dyn Read + Send>, FetchError>;
    /// The whole bundle from byte 0. Reading it to its end is what finishes
    /// it: a transport that can check the whole (an OCI blob digest, a
    /// pinned length) fails the last read if it does not match.
    fn stream(&mut self) -> Result<Box<dyn Read + Send>, FetchError>;
    /// Whether bytes not read are bytes not transferred (a network source):
    /// then an install reads the head by range and may fetch only parts.
    fn remote(&self) -> bool {
        false
    }
    /// The SHA-256 (`sha256:HEX`) the whole bundle must have, if the
    /// transport knows it (an OCI blob digest).
    fn digest(&self) -> Option<String> {
        None
    }
}

/// A source shared by the readers an install opens on it.
pub type Shared = Arc<std::sync::Mutex<Box<dyn BundleSource>>>;

/// Reads a source front to back as a chain of ranges: a first window
/// (`first` bytes: the manifest and signatures of most bundles), a second
/// of 1 MiB (the largest manifest and signatures), then the rest in one
/// range. Whoever stops after the head has transferred little more than
/// the head. Read to its end from byte 0, it checks the
/// transport's digest like [`BundleSource::stream`] does.
pub struct Chained {
    src: Shared,
    first: u64,
    pos: u64,
    window_end: u64,
    size: Option<u64>,
    inner: Option<Box<dyn Read + Send>>,
    hash: Option<(sha2::Sha256, String)>,
    shown: String,
    /// Set once the reader will be read to its end: the next range is the
    /// rest of the bundle, not a second window.
    rest: Arc<AtomicBool>,
}

impl Chained {
    /// Opens the first window at once, so that a missing or unreachable
    /// bundle is an error here, as opening a stream would be.
    pub fn open(src: Shared, first: u64) -> Result<Chained, FetchError> {
        let first = first.max(1);
        let (shown, digest, inner, size) = {
            let mut s = src.lock().expect("no panics while held");
            let inner = s.range(0, first)?;
            (s.shown(), s.digest(), inner, s.size()?)
        };
        Ok(Chained {
            src,
            first,
            pos: 0,
            window_end: first.min(size),
            size: Some(size),
            inner: Some(inner),
            hash: digest.map(|d| (<sha2::Sha256 as sha2::Digest>::new(), d)),
            shown,
            rest: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Setting the flag makes the next range the rest of the bundle.
    pub fn rest_flag(&self) -> Arc<AtomicBool> {
        self.rest.clone()
    }
}

impl Read for Chained {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use sha2::Digest;
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.inner.is_none() {
                if self.size.is_some_and(|size| self.pos >= size) {
                    return self.finish();
                }
                let end = if self.pos == self.first && !self.rest.load(Ordering::Relaxed) {
                    self.first + SECOND_WINDOW
                } else {
                    self.size.unwrap_or(u64::MAX)
                };
                let src = self.src.clone();
                let mut s = src.lock().expect("no panics while held");
                let r = s.range(self.pos, end).map_err(std::io::Error::other)?;
                if self.size.is_none() {
                    self.size = Some(s.size().map_err(std::io::Error::other)?);
                }
                self.window_end = end.min(self.size.unwrap_or(end));
                self.inner = Some(r);
            }
            let n = self.inner.as_mut().expect("opened").read(buf)?;
            if n == 0 {
                self.inner = None;
                if self.pos < self.window_end {
                    return Err(std::io::Error::other(FetchError::Protocol {
                        url: self.shown.clone(),
                        message: format!(
                            "a range ended at byte {} before its end {}",
                            self.pos, self.window_end
                        ),
                    }));
                }
                continue;
            }
            if let Some((h, _)) = &mut self.hash {
                h.update(&buf[..n]);
            }
            self.pos += n as u64;
            return Ok(n);
        }
    }
}

/// The second window of a [`Chained`] reader.
const SECOND_WINDOW: u64 = 1 << 20;

impl Chained {
    /// Bytes a chained reader with first window `first` has asked for by
    /// the time it has read `pos` bytes.
    pub fn fetched_for(pos: u64, first: u64) -> u64 {
        if pos <= first {
            first
        } else if pos <= first + SECOND_WINDOW {
            first + SECOND_WINDOW
        } else {
            u64::MAX
        }
    }

    /// At the end: the transport's digest, if it has one.
    fn finish(&mut self) -> std::io::Result<usize> {
        use sha2::Digest;
        if let Some((h, want)) = self.hash.take() {
            let got = format!("sha256:{}", hex::encode(h.finalize()));
            if got != want {
                return Err(std::io::Error::other(FetchError::Digest {
                    url: self.shown.clone(),
                    what: "bundle",
                    expected: want,
                    actual: got,
                }));
            }
        }
        Ok(0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("cannot open bundle {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is a {kind}, not a regular file; a bundle source must be a file or a URL")]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error(
        "unsupported source {shown:?}: give a path, or a file://, http://, https:// or oci:// URL"
    )]
    Scheme { shown: String },
    #[error("bad OCI reference {shown:?}: {message}")]
    Reference { shown: String, message: String },
    #[error("registry credentials {path}: {message}")]
    Credentials { path: PathBuf, message: String },
    #[error("{url}: authentication failed: {message}")]
    Auth { url: String, message: String },
    #[error("{url}: the {what} is not what was asked for: expected {expected}, got {actual}")]
    Digest {
        url: String,
        what: &'static str,
        expected: String,
        actual: String,
    },
    #[error("{url}: not found (HTTP 404)")]
    NotFound { url: String },
    #[error("{url}: server answered HTTP {code}{}", if *.retried > 0 { format!(" (after {} retries)", .retried) } else { String::new() })]
    Status {
        url: String,
        code: u16,
        retried: u32,
    },
    #[error("{url}: giving up at byte offset {offset} after {attempts} attempts: {last}")]
    GaveUp {
        url: String,
        offset: u64,
        attempts: u32,
        last: String,
    },
    #[error("{url}: the bundle changed on the server during the download ({old} became {new})")]
    Changed {
        url: String,
        old: String,
        new: String,
    },
    #[error("{url}: giving up at byte offset {offset}: the download took longer than [http] deadline_secs = {secs}")]
    Deadline { url: String, offset: u64, secs: u64 },
    #[error("{url}: {message}")]
    Protocol { url: String, message: String },
    #[error("[http] {key} {path}: {message}")]
    Tls {
        key: &'static str,
        path: PathBuf,
        message: String,
    },
}

impl FetchError {
    /// Whether the whole download may be started again from byte 0 (the
    /// bundle changed under a resumed download).
    pub fn restartable(&self) -> bool {
        matches!(self, FetchError::Changed { .. })
    }
}

/// A parsed bundle location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    Http(String),
    Oci(oci::Reference),
}

impl Source {
    /// `file://PATH`, `http://…`, `https://…`, `oci://HOST[:PORT]/REPO:TAG`
    /// (or `@sha256:…`), or a plain path (no `://`).
    pub fn parse(s: &str) -> Result<Source, FetchError> {
        let lower = s.get(..8).unwrap_or(s).to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            Ok(Source::Http(s.to_string()))
        } else if lower.starts_with("oci://") {
            Ok(Source::Oci(oci::Reference::parse(&s[6..])?))
        } else if lower.starts_with("file://") {
            Ok(Source::File(PathBuf::from(&s[7..])))
        } else if s.contains("://") {
            Err(FetchError::Scheme { shown: redact(s) })
        } else {
            Ok(Source::File(PathBuf::from(s)))
        }
    }
}

impl std::fmt::Display for Source {
    /// The form to show and store: URLs redacted.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::File(p) => write!(f, "{}", p.display()),
            Source::Http(u) => f.write_str(&redact(u)),
            Source::Oci(r) => write!(f, "oci://{r}"),
        }
    }
}

/// A URL as it may be shown, logged or stored: userinfo (`user:pass@`)
/// and the query string (presigned tokens) replaced by `***`; the
/// fragment dropped. Text that is not a URL is returned as is.
pub fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let (scheme, rest) = url.split_at(scheme_end + 3);
    let rest = rest.split('#').next().unwrap_or("");
    let (before_query, query) = match rest.split_once('?') {
        Some((b, _)) => (b, true),
        None => (rest, false),
    };
    let (authority, path) = match before_query.find('/') {
        Some(i) => before_query.split_at(i),
        None => (before_query, ""),
    };
    let host = match authority.rsplit_once('@') {
        Some((_, host)) => format!("***@{host}"),
        None => authority.to_string(),
    };
    format!("{scheme}{host}{path}{}", if query { "?***" } else { "" })
}

/// Read buffer between a transport and the bundle reader.
const BUF: usize = 256 << 10;

/// Opens a source. A file must be a regular file: a FIFO, a device or a
/// directory is refused before it is opened (opening `/dev/watchdog` would
/// arm it; a FIFO would block the job). An OCI reference is resolved to its
/// bundle blob here (manifest fetched and checked; nothing else read).
pub fn open(
    src: &Source,
    http: &HttpSettings,
    oci: &OciSettings,
) -> Result<Box<dyn BundleSource>, FetchError> {
    match src {
        Source::File(path) => {
            let f = crate::sys::open_regular(path, true).map_err(|e| match e {
                crate::sys::OpenRegularError::Kind(kind) => FetchError::NotRegular {
                    path: path.clone(),
                    kind,
                },
                crate::sys::OpenRegularError::Io(source) => FetchError::File {
                    path: path.clone(),
                    source,
                },
            })?;
            Ok(Box::new(FileSource::new(f, &path.display().to_string())))
        }
        Source::Http(url) => Ok(Box::new(HttpSource::new(url, http)?)),
        Source::Oci(r) => Ok(Box::new(oci::OciSource::open(r, http, oci)?)),
    }
}

/// A bundle in a regular file (a path, or a descriptor a D-Bus client
/// passed). Reads are positioned (`pread`), so ranges and the stream never
/// share a file offset.
pub struct FileSource {
    file: std::sync::Arc<File>,
    shown: String,
}

impl FileSource {
    pub fn new(file: File, shown: &str) -> FileSource {
        FileSource {
            file: std::sync::Arc::new(file),
            shown: shown.to_string(),
        }
    }

    fn io(&self, source: std::io::Error) -> FetchError {
        FetchError::File {
            path: PathBuf::from(&self.shown),
            source,
        }
    }
}

/// Reads `pos..end` of a shared file with `pread`.
struct At {
    file: std::sync::Arc<File>,
    pos: u64,
    end: u64,
}

impl Read for At {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let want = buf
            .len()
            .min(usize::try_from(self.end.saturating_sub(self.pos)).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl BundleSource for FileSource {
    fn shown(&self) -> String {
        self.shown.clone()
    }

    fn size(&mut self) -> Result<u64, FetchError> {
        Ok(self.file.metadata().map_err(|e| self.io(e))?.len())
    }

    fn range(&mut self, start: u64, end: u64) -> Result<Box<dyn Read + Send>, FetchError> {
        Ok(Box::new(BufReader::with_capacity(
            BUF,
            At {
                file: self.file.clone(),
                pos: start,
                end,
            },
        )))
    }

    fn stream(&mut self) -> Result<Box<dyn Read + Send>, FetchError> {
        // To the end of the file as it is when read (not as it was at open).
        self.range(0, u64::MAX)
    }
}

/// A bundle at an HTTP(S) URL ([`http::HttpReader`] per stream or range).
pub struct HttpSource {
    url: String,
    settings: HttpSettings,
    agent: ureq::Agent,
    len: Option<u64>,
    credentials: Option<Arc<dyn http::Credentials>>,
}

impl HttpSource {
    pub fn new(url: &str, settings: &HttpSettings) -> Result<HttpSource, FetchError> {
        Ok(HttpSource {
            url: url.to_string(),
            settings: settings.clone(),
            agent: http::agent(settings)?,
            len: None,
            credentials: None,
        })
    }

    /// A source whose requests carry `credentials` (a fleet server's
    /// token), to the URL's own origin only, never where a redirect leads.
    pub fn with_credentials(
        url: &str,
        settings: &HttpSettings,
        credentials: Arc<dyn http::Credentials>,
    ) -> Result<HttpSource, FetchError> {
        let mut s = HttpSource::new(url, settings)?;
        s.credentials = Some(credentials);
        Ok(s)
    }

    fn reader(&mut self, start: u64, end: Option<u64>) -> Result<http::HttpReader, FetchError> {
        let r = http::HttpReader::with_agent(
            self.agent.clone(),
            &self.url,
            &self.settings,
            http::Request {
                start,
                end,
                credentials: self.credentials.clone(),
                ..Default::default()
            },
        )?;
        if self.len.is_none() {
            self.len = r.total_len();
        }
        Ok(r)
    }
}

impl BundleSource for HttpSource {
    fn shown(&self) -> String {
        redact(&self.url)
    }

    fn size(&mut self) -> Result<u64, FetchError> {
        if let Some(l) = self.len {
            return Ok(l);
        }
        // One byte asked for: the answer carries the total.
        let r = self.reader(0, Some(1))?;
        r.total_len().ok_or_else(|| FetchError::Protocol {
            url: redact(&self.url),
            message: "the server does not say how long the bundle is".into(),
        })
    }

    fn range(&mut self, start: u64, end: u64) -> Result<Box<dyn Read + Send>, FetchError> {
        Ok(Box::new(BufReader::with_capacity(
            BUF,
            self.reader(start, Some(end))?,
        )))
    }

    fn stream(&mut self) -> Result<Box<dyn Read + Send>, FetchError> {
        Ok(Box::new(BufReader::with_capacity(
            BUF,
            self.reader(0, None)?,
        )))
    }
    fn remote(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_sources() {
        let ok = |s: &str| Source::parse(s).unwrap();
        assert_eq!(ok("/x/b.tnd"), Source::File("/x/b.tnd".into()));
        assert_eq!(ok("file:///x/b.tnd"), Source::File("/x/b.tnd".into()));
        assert_eq!(ok("b.tnd"), Source::File("b.tnd".into()));
        assert_eq!(
            ok("https://h/b.tnd"),
            Source::Http("https://h/b.tnd".into())
        );
        assert_eq!(ok("HTTP://h/b.tnd"), Source::Http("HTTP://h/b.tnd".into()));
        assert_eq!(
            ok("oci://127.0.0.1:5000/os/gw:2"),
            Source::Oci(oci::Reference::parse("127.0.0.1:5000/os/gw:2").unwrap())
        );
        assert_eq!(
            ok("OCI://h/r:1").to_string(),
            "oci://h/r:1",
            "the scheme is case-insensitive"
        );
        assert!(matches!(
            Source::parse("oci://h/Bad:1"),
            Err(FetchError::Reference { .. })
        ));
        for bad in ["ftp://h/b.tnd", "s3://bucket/b.tnd", "docker://h/r:1"] {
            let e = Source::parse(bad).unwrap_err();
            assert!(matches!(e, FetchError::Scheme { .. }), "{bad}: {e}");
        }
        let e = Source::parse("ftp://u:secret@h/b").unwrap_err().to_string();
        assert!(!e.contains("secret"), "{e}");
    }

    #[test]
    fn redaction_table() {
        for (url, want) in [
            ("https://h/b.tnd", "https://h/b.tnd"),
            ("https://h:8443/a/b.tnd", "https://h:8443/a/b.tnd"),
            ("https://user:pw@h/b.tnd", "https://***@h/b.tnd"),
            (
                "https://h/b.tnd?X-Amz-Signature=abc&t=1",
                "https://h/b.tnd?***",
            ),
            ("https://u@h/b?tok=1#frag", "https://***@h/b?***"),
            ("https://h?k=v", "https://h?***"),
            ("http://a@b@h/x", "http://***@h/x"),
            ("/var/b.tnd", "/var/b.tnd"),
        ] {
            assert_eq!(redact(url), want, "{url}");
        }
        let s = Source::Http("https://u:pw@h/b?sig=1".into());
        assert_eq!(s.to_string(), "https://***@h/b?***");
    }

    #[test]
    fn file_ranges_do_not_share_an_offset() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("b.tnd");
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&p, &data).unwrap();
        let mut src = FileSource::new(File::open(&p).unwrap(), "b.tnd");
        assert_eq!(src.size().unwrap(), data.len() as u64);
        let mut whole = src.stream().unwrap();
        let mut head = [0u8; 10];
        whole.read_exact(&mut head).unwrap();
        let mut mid = Vec::new();
        src.range(50_000, 50_100)
            .unwrap()
            .read_to_end(&mut mid)
            .unwrap();
        assert_eq!(mid, data[50_000..50_100]);
        let mut rest = Vec::new();
        whole.read_to_end(&mut rest).unwrap();
        assert_eq!([&head[..], &rest[..]].concat(), data);
        let mut past = Vec::new();
        src.range(99_990, 200_000)
            .unwrap()
            .read_to_end(&mut past)
            .unwrap();
        assert_eq!(past, data[99_990..]);
    }

    #[test]
    fn special_files_are_refused_before_they_are_opened() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("fifo");
        assert!(std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        let http = HttpSettings::default();
        for (path, kind) in [
            (fifo, "FIFO"),
            (d.path().to_path_buf(), "directory"),
            (PathBuf::from("/dev/null"), "character device"),
        ] {
            match open(&Source::File(path.clone()), &http, &OciSettings::default()) {
                Err(FetchError::NotRegular { kind: k, .. }) => assert_eq!(k, kind, "{path:?}"),
                Err(e) => panic!("{path:?}: {e}"),
                Ok(_) => panic!("{path:?} opened"),
            }
        }
        let f = d.path().join("b.tnd");
        std::fs::write(&f, b"x").unwrap();
        let mut s = String::new();
        open(&Source::File(f), &http, &OciSettings::default())
            .unwrap()
            .stream()
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, "x");
    }
}

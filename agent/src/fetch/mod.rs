//! Where a bundle comes from: a local file (or USB stick) or HTTP(S).
//! Every source is a plain byte stream; nothing is staged on disk.
//!
//! A source string is parsed once ([`Source::parse`]): `file://`, `http://`
//! and `https://` URLs and plain paths; any other scheme is refused rather
//! than taken for a file name. What is shown or stored of a URL is
//! [`redact`]ed: no userinfo, no query string (presigned tokens).

pub mod http;

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::PathBuf;

use crate::config::HttpSettings;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("cannot open bundle {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is a {kind}, not a regular file; a bundle source must be a file or a URL")]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error("unsupported source {shown:?}: give a path, or a file://, http:// or https:// URL")]
    Scheme { shown: String },
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
}

impl Source {
    /// `file://PATH`, `http://…`, `https://…`, or a plain path (no `://`).
    pub fn parse(s: &str) -> Result<Source, FetchError> {
        let lower = s.get(..8).unwrap_or(s).to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            Ok(Source::Http(s.to_string()))
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

/// Opens a source as a byte stream. A file must be a regular file: a FIFO,
/// a device or a directory is refused before it is opened (opening
/// `/dev/watchdog` would arm it; a FIFO would block the job).
pub fn open(src: &Source, http: &HttpSettings) -> Result<Box<dyn Read + Send>, FetchError> {
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
            Ok(from_file(f))
        }
        Source::Http(url) => Ok(Box::new(BufReader::with_capacity(
            256 << 10,
            http::HttpReader::open(url, http)?,
        ))),
    }
}

/// A bundle stream over an open regular file (e.g. one a D-Bus client
/// passed by descriptor).
pub fn from_file(f: File) -> Box<dyn Read + Send> {
    Box::new(BufReader::with_capacity(256 << 10, f))
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
        for bad in ["oci://registry/x:1", "ftp://h/b.tnd", "s3://bucket/b.tnd"] {
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
            match open(&Source::File(path.clone()), &http) {
                Err(FetchError::NotRegular { kind: k, .. }) => assert_eq!(k, kind, "{path:?}"),
                Err(e) => panic!("{path:?}: {e}"),
                Ok(_) => panic!("{path:?} opened"),
            }
        }
        let f = d.path().join("b.tnd");
        std::fs::write(&f, b"x").unwrap();
        let mut s = String::new();
        open(&Source::File(f), &http)
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, "x");
    }
}

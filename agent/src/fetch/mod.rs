//! Where a bundle comes from: a local file (or USB stick) or HTTP(S).
//! Every source is a plain byte stream; nothing is staged on disk.

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
    #[error(
        "{url}: the bundle changed on the server during the download (ETag {old} became {new})"
    )]
    Changed {
        url: String,
        old: String,
        new: String,
    },
    #[error("{url}: {message}")]
    Protocol { url: String, message: String },
}

/// A parsed bundle location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    Http(String),
}

impl Source {
    pub fn parse(s: &str) -> Source {
        if s.starts_with("http://") || s.starts_with("https://") {
            Source::Http(s.to_string())
        } else if let Some(p) = s.strip_prefix("file://") {
            Source::File(PathBuf::from(p))
        } else {
            Source::File(PathBuf::from(s))
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::File(p) => write!(f, "{}", p.display()),
            Source::Http(u) => f.write_str(u),
        }
    }
}

/// Opens a source as a byte stream.
pub fn open(src: &Source, http: &HttpSettings) -> Result<Box<dyn Read + Send>, FetchError> {
    match src {
        Source::File(path) => {
            let f = File::open(path).map_err(|source| FetchError::File {
                path: path.clone(),
                source,
            })?;
            Ok(Box::new(BufReader::with_capacity(256 << 10, f)))
        }
        Source::Http(url) => Ok(Box::new(BufReader::with_capacity(
            256 << 10,
            http::HttpReader::open(url, http)?,
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_sources() {
        assert_eq!(Source::parse("/x/b.tnd"), Source::File("/x/b.tnd".into()));
        assert_eq!(
            Source::parse("file:///x/b.tnd"),
            Source::File("/x/b.tnd".into())
        );
        assert_eq!(Source::parse("b.tnd"), Source::File("b.tnd".into()));
        assert_eq!(
            Source::parse("https://h/b.tnd"),
            Source::Http("https://h/b.tnd".into())
        );
    }
}

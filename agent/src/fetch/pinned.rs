//! A source pinned to the length and SHA-256 a channel's signed metadata
//! gives for it (a TUF target): a longer or shorter bundle is refused
//! before a byte is written, and a full read fails at its end if the hash
//! differs. (Ranged reads of an adaptive install are not hashed as a
//! whole; they are pinned by the length and by the bundle's own signature,
//! which the install checks before anything is written.)

use std::io::Read;

use super::oci::Checked;
use super::{BundleSource, FetchError};

pub struct Pinned {
    inner: Box<dyn BundleSource>,
    length: u64,
    sha256: Option<String>,
    /// The inner source's length was found to be `length`.
    checked: bool,
}

impl Pinned {
    /// `sha256`: `sha256:HEX`, if the metadata gives one.
    pub fn new(inner: Box<dyn BundleSource>, length: u64, sha256: Option<String>) -> Pinned {
        Pinned {
            inner,
            length,
            sha256,
            checked: false,
        }
    }
}

impl BundleSource for Pinned {
    fn shown(&self) -> String {
        self.inner.shown()
    }

    fn size(&mut self) -> Result<u64, FetchError> {
        if self.checked {
            return Ok(self.length);
        }
        let n = self.inner.size()?;
        if n != self.length {
            return Err(FetchError::Digest {
                url: self.inner.shown(),
                what: "bundle",
                expected: format!("{} bytes (the channel's metadata)", self.length),
                actual: format!("{n} bytes"),
            });
        }
        self.checked = true;
        Ok(n)
    }

    fn range(&mut self, start: u64, end: u64) -> Result<Box<dyn Read + Send>, FetchError> {
        self.size()?;
        self.inner.range(start, end.min(self.length))
    }

    fn stream(&mut self) -> Result<Box<dyn Read + Send>, FetchError> {
        self.size()?;
        let shown = self.inner.shown();
        let r = self.inner.stream()?;
        Ok(match &self.sha256 {
            Some(h) => Box::new(Checked::new(r, &shown, h, self.length)),
            None => Box::new(r.take(self.length)),
        })
    }

    fn remote(&self) -> bool {
        self.inner.remote()
    }

    fn digest(&self) -> Option<String> {
        self.sha256.clone().or_else(|| self.inner.digest())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    fn file(bytes: &[u8]) -> (tempfile::NamedTempFile, Box<dyn BundleSource>) {
        let t = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(t.path(), bytes).unwrap();
        let f = std::fs::File::open(t.path()).unwrap();
        (t, Box::new(super::super::FileSource::new(f, "b.tnd")))
    }

    #[test]
    fn length_and_hash_are_enforced() {
        let data = b"bundle bytes".to_vec();
        let good = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&data)));
        let (_t, src) = file(&data);
        let mut p = Pinned::new(src, data.len() as u64, Some(good.clone()));
        let mut out = Vec::new();
        p.stream().unwrap().read_to_end(&mut out).unwrap();
        assert_eq!(out, data);

        let (_t, src) = file(&data);
        let mut p = Pinned::new(src, data.len() as u64 + 1, Some(good));
        let e = p.stream().err().unwrap().to_string();
        assert!(
            e.contains("13 bytes (the channel's metadata)") && e.contains("12 bytes"),
            "{e}"
        );

        let (_t, src) = file(&data);
        let bad = format!("sha256:{}", "00".repeat(32));
        let mut p = Pinned::new(src, data.len() as u64, Some(bad));
        let mut out = Vec::new();
        let e = p
            .stream()
            .unwrap()
            .read_to_end(&mut out)
            .unwrap_err()
            .to_string();
        assert!(e.contains("expected sha256:0000"), "{e}");
    }
}

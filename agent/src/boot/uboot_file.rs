//! U-Boot text environment file backend: the A/B variables live in a small
//! text file on the FAT boot partition, which the boot script reads with
//! `load` + `env import -t` and rewrites with `env export -t` + `fatwrite`
//! (used where `saveenv` to flash does not work, e.g. QEMU's pflash).
//!
//! # Format
//!
//! Exactly what U-Boot's `env export -t` writes: one `name=value\n` line
//! per variable, sorted by name, a backslash or newline inside a value
//! escaped with a backslash, then one NUL byte (`env export -t` counts the
//! string terminator in `${filesize}`, so `fatwrite` stores it; measured
//! with U-Boot 2023.01). [`decode`] follows U-Boot's `himport_r` with a
//! `\n` separator: leading blanks are skipped, `#` lines are comments,
//! `name` or `name=` deletes `name`, a NUL ends the text or separates like
//! a newline, a later duplicate wins, and `=value` (no name) is an error.
//! Empty values are never written, since U-Boot would read them as absent.
//!
//! # Write order (agent)
//!
//! 1. write the whole file to `NAME.tmp` (created or truncated), `fsync`;
//! 2. `rename` it over `NAME`;
//! 3. `fsync` `NAME` (on vfat this writes its directory entry: see
//!    [`crate::sys::rename_durable`]), then the directory.
//!
//! A power cut before 2 leaves the old file (and a stray `.tmp`, which the
//! next save truncates); after 3 the new file is durable. FAT has no
//! atomic rename: Linux's vfat points `NAME`'s directory entry at the new
//! data, then removes the `.tmp` entry, so a cut in between leaves `NAME`
//! old or new, possibly with a leftover `.tmp` entry sharing its clusters
//! (`fsck.vfat` repairs that). Were `NAME` lost, the boot script and
//! [`UbootFileStore::load`] read the factory default (order `a b`).
//!
//! U-Boot's `fatwrite` from the boot script rewrites the file in place,
//! with no such care. What keeps that write benign: the file holds only
//! the `TANDEM_*` variables (the five of the decision, under 100 bytes,
//! plus up to two `TANDEM_<G>_VERITY` of ~220 bytes each; at most
//! [`MAX_LEN`]), U-Boot only rewrites it to count a trial down by one
//! digit (same length, so every sector but the one holding that digit is
//! rewritten with the bytes it already had, and a torn write leaves the
//! old or the new digit), and the sorted order puts `TANDEM_ORDER` last,
//! so a truncated file loses the order first and reads as `a b`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::uboot::{check_name, EnvError};
use super::{BootError, EnvStore};

pub const BACKEND: &str = "uboot-file";
/// The file name the shipped boot.cmd uses on the boot partition.
pub const FILE_NAME: &str = "tandem.env";
/// Largest file we write.
pub const MAX_LEN: usize = 4096;
/// Same counting limit as the binary U-Boot env: `setexpr` prints hex.
pub const MAX_TRIES: u32 = super::uboot::MAX_TRIES;

/// Errors of the text format.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum TextError {
    #[error(transparent)]
    Env(#[from] EnvError),
    #[error("line {0}: a value without a variable name (U-Boot's `env import` fails on it)")]
    EmptyName(usize),
    #[error("line {0} is not UTF-8")]
    Encoding(usize),
}

/// Encodes variables as `env export -t` would, sorted, empty values left
/// out. Fails on names U-Boot could not read back or a file over
/// [`MAX_LEN`].
pub fn encode(vars: &BTreeMap<String, String>) -> Result<Vec<u8>, TextError> {
    let mut out = Vec::new();
    for (k, v) in vars.iter().filter(|(_, v)| !v.is_empty()) {
        check_name(k)?;
        if v.contains('\0') {
            return Err(EnvError::Nul(k.clone()).into());
        }
        out.extend_from_slice(k.as_bytes());
        out.push(b'=');
        for &b in v.as_bytes() {
            if b == b'\\' || b == b'\n' {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'\n');
    }
    out.push(0);
    if out.len() > MAX_LEN {
        return Err(EnvError::TooLarge {
            need: out.len(),
            size: MAX_LEN,
        }
        .into());
    }
    Ok(out)
}

/// Decodes the text as U-Boot's `env import -t` does (see module docs).
pub fn decode(bytes: &[u8]) -> Result<BTreeMap<String, String>, TextError> {
    const SEP: u8 = b'\n';
    let size = bytes.len();
    // Two NULs past the end, as himport_r's NUL-terminated copy reads
    // one byte ahead.
    let mut d = bytes.to_vec();
    d.extend_from_slice(&[0, 0]);
    let mut vars = BTreeMap::new();
    let mut p = 0;
    let mut line = 1;
    if size == 0 {
        return Ok(vars);
    }
    loop {
        let start = p;
        while d[p] == b' ' || d[p] == b'\t' {
            p += 1;
        }
        if d[p] == b'#' {
            while d[p] != 0 && d[p] != SEP {
                p += 1;
            }
            p += 1;
        } else {
            let name_start = p;
            while d[p] != b'=' && d[p] != 0 && d[p] != SEP {
                p += 1;
            }
            let name = &d[name_start..p];
            let utf8 =
                |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| TextError::Encoding(line));
            if d[p] == 0 || d[p + 1] == 0 || d[p] == SEP || d[p + 1] == SEP {
                // "name" or "name=": delete.
                if d[p] == b'=' {
                    p += 1;
                }
                p += 1;
                vars.remove(&utf8(name)?);
            } else {
                p += 1;
                let mut value = Vec::new();
                while d[p] != 0 && d[p] != SEP {
                    if d[p] == b'\\' && d[p + 1] != 0 {
                        p += 1;
                    }
                    value.push(d[p]);
                    p += 1;
                }
                p += 1;
                if name.is_empty() {
                    return Err(TextError::EmptyName(line));
                }
                vars.insert(utf8(name)?, utf8(&value)?);
            }
        }
        line += d[start..p.min(size)].iter().filter(|&&b| b == SEP).count();
        if p >= size || d[p] == 0 {
            break;
        }
    }
    Ok(vars)
}

/// The text env file, e.g. `/boot/efi/tandem.env` (the FAT boot partition
/// mounted by the OS).
pub struct UbootFileStore {
    pub path: PathBuf,
}

impl UbootFileStore {
    pub fn new(path: &Path) -> UbootFileStore {
        UbootFileStore {
            path: path.to_path_buf(),
        }
    }

    fn tmp_path(&self) -> PathBuf {
        let mut name = self.path.file_name().unwrap_or_default().to_os_string();
        name.push(".tmp");
        self.path.with_file_name(name)
    }

    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BootError + '_ {
        move |source| BootError::Io {
            backend: BACKEND,
            path: path.to_path_buf(),
            source,
        }
    }

    fn format(&self, e: TextError) -> BootError {
        BootError::Format {
            backend: BACKEND,
            path: self.path.clone(),
            message: e.to_string(),
        }
    }
}

impl EnvStore for UbootFileStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    /// A missing file reads as no variables: the boot script then boots
    /// `a`, as the A/B scheme's defaults say.
    fn load(&mut self) -> Result<BTreeMap<String, String>, BootError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => decode(&bytes).map_err(|e| self.format(e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(Self::io(&self.path)(e)),
        }
    }

    /// Temp file, fsync, rename, fsync directory (module docs).
    fn save(&mut self, vars: &BTreeMap<String, String>) -> Result<(), BootError> {
        let bytes = encode(vars).map_err(|e| self.format(e))?;
        let tmp = self.tmp_path();
        let mut f = File::create(&tmp).map_err(Self::io(&tmp))?;
        f.write_all(&bytes).map_err(Self::io(&tmp))?;
        f.sync_all().map_err(Self::io(&tmp))?;
        drop(f);
        crate::sys::rename_durable(&tmp, &self.path).map_err(Self::io(&self.path))
    }

    fn max_tries(&self) -> u32 {
        MAX_TRIES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn encode_like_env_export() {
        let v = map(&[
            ("TANDEM_ORDER", "b a"),
            ("TANDEM_B_TRIES", "2"),
            ("TANDEM_A_TRIES", ""),
            ("x", "back\\slash\nnewline"),
        ]);
        assert_eq!(
            encode(&v).unwrap(),
            b"TANDEM_B_TRIES=2\nTANDEM_ORDER=b a\nx=back\\\\slash\\\nnewline\n\0"
        );
        assert_eq!(encode(&BTreeMap::new()).unwrap(), b"\0");
        assert_eq!(
            encode(&map(&[("a b", "1")])),
            Err(TextError::Env(EnvError::Name("a b".into())))
        );
        let big = "x".repeat(MAX_LEN);
        assert!(matches!(
            encode(&map(&[("a", big.as_str())])),
            Err(TextError::Env(EnvError::TooLarge { .. }))
        ));
    }

    #[test]
    fn decode_like_env_import() {
        type Want = Result<Vec<(&'static str, &'static str)>, TextError>;
        let cases: &[(&[u8], Want)] = &[
            (b"", Ok(vec![])),
            (b"a=1\nb=x y\n", Ok(vec![("a", "1"), ("b", "x y")])),
            (b"a=1", Ok(vec![("a", "1")])),
            (b"  \ta=1\n# c=3\n\n", Ok(vec![("a", "1")])),
            (b"a=1\nb=2\na=\nb\n", Ok(vec![])),
            (b"a=1\na=2\n", Ok(vec![("a", "2")])),
            (b"a=x\\\ny\nb=\\\\\n", Ok(vec![("a", "x\ny"), ("b", "\\")])),
            (b"a=1\0b=2\n", Ok(vec![("a", "1"), ("b", "2")])),
            (b"a=1\n\0b=2\n", Ok(vec![("a", "1")])),
            (b"a=1\r\n", Ok(vec![("a", "1\r")])),
            (b"a=v\\", Ok(vec![("a", "v\\")])),
            (b"a=1\n=2\n", Err(TextError::EmptyName(2))),
            (b"a=1\nb=\xff\n", Err(TextError::Encoding(2))),
        ];
        for (text, want) in cases {
            let got = decode(text).map(|m| m.into_iter().collect::<Vec<_>>());
            let want = want.clone().map(|v| {
                v.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<Vec<_>>()
            });
            assert_eq!(got, want, "{:?}", String::from_utf8_lossy(text));
        }
    }

    #[test]
    fn missing_file_is_empty_and_save_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = UbootFileStore::new(&dir.path().join(FILE_NAME));
        assert!(s.load().unwrap().is_empty());
        let v = map(&[("TANDEM_ORDER", "b a")]);
        std::fs::write(
            dir.path().join("tandem.env.tmp"),
            "stale junk that is longer",
        )
        .unwrap();
        s.save(&v).unwrap();
        assert_eq!(s.load().unwrap(), v);
        assert!(!dir.path().join("tandem.env.tmp").exists());
        assert_eq!(
            std::fs::read(dir.path().join(FILE_NAME)).unwrap(),
            b"TANDEM_ORDER=b a\n\0"
        );
    }
}

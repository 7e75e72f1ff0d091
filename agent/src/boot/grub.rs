//! GRUB environment block backend.
//!
//! Format (GRUB's `grub-editenv` and `save_env`): the file starts with
//! `# GRUB Environment Block\n`, then `name=value\n` lines (a backslash or a
//! newline inside a value is escaped with a backslash), then `#` padding to
//! the file's size — 1024 bytes normally. GRUB's `save_env` overwrites the
//! file's existing sectors in place and never resizes it, so we do the
//! same: build the whole block in memory and write it at offset 0, then
//! fsync. The `TANDEM_*` variables are written first and must end inside
//! the first 512-byte sector, so a torn two-sector write leaves either the
//! old or the new A/B decision, never a mix (docs/boot.md).

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::{BootError, EnvStore};

pub const HEADER: &str = "# GRUB Environment Block\n";
pub const DEFAULT_SIZE: usize = 1024;
pub const SECTOR: usize = 512;
/// The shipped grub.cfg counts trial boots with spelled-out if-chains
/// (Debian's GRUB 2.06 has no arithmetic), up to this many.
pub const MAX_TRIES: u32 = 3;
const BACKEND: &str = "grub";

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum EnvError {
    #[error("not a GRUB environment block (missing the header line)")]
    Header,
    #[error("variables need {need} bytes, the block holds {size}")]
    TooLarge { need: usize, size: usize },
    #[error("the TANDEM_* variables must fit the first {SECTOR}-byte sector (need {0})")]
    FirstSector(usize),
    #[error("invalid variable name {0:?}")]
    Name(String),
    #[error("block is not UTF-8")]
    Encoding,
}

/// Parses an environment block into its variables, in file order.
pub fn decode(bytes: &[u8]) -> Result<Vec<(String, String)>, EnvError> {
    let text = std::str::from_utf8(bytes).map_err(|_| EnvError::Encoding)?;
    let body = text.strip_prefix(HEADER).ok_or(EnvError::Header)?;
    let mut vars = Vec::new();
    let mut chars = body.chars().peekable();
    while chars.peek().is_some() {
        if chars.peek() == Some(&'#') {
            // Padding or a comment: skip to the end of the line.
            for c in chars.by_ref() {
                if c == '\n' {
                    break;
                }
            }
            continue;
        }
        let mut line_name = String::new();
        let mut value = String::new();
        let mut in_value = false;
        let mut ended = false;
        while let Some(c) = chars.next() {
            match (c, in_value) {
                ('\n', _) => {
                    ended = true;
                    break;
                }
                ('=', false) => in_value = true,
                ('\\', true) => {
                    if let Some(n) = chars.next() {
                        value.push(n);
                    }
                }
                (c, false) => line_name.push(c),
                (c, true) => value.push(c),
            }
        }
        // A line without '=' or cut off without its newline is not a
        // variable (GRUB ignores such lines too).
        if in_value && ended && valid_name(&line_name) {
            vars.retain(|(n, _): &(String, String)| *n != line_name);
            vars.push((line_name, value));
        }
    }
    Ok(vars)
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && !n.starts_with('#')
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

fn escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        if c == '\\' || c == '\n' {
            s.push('\\');
        }
        s.push(c);
    }
    s
}

/// Encodes variables into a block of exactly `size` bytes: the boot
/// decision's variables first (they must end within the first sector),
/// then the other `TANDEM_*` ones, then the rest.
pub fn encode(vars: &BTreeMap<String, String>, size: usize) -> Result<Vec<u8>, EnvError> {
    let mut out = String::from(HEADER);
    let (decision, rest): (Vec<_>, Vec<_>) = vars
        .iter()
        .partition(|(k, _)| super::abvars::is_decision_var(k));
    let (ours, theirs): (Vec<_>, Vec<_>) = rest
        .into_iter()
        .partition(|(k, _)| k.starts_with("TANDEM_"));
    for (i, group) in [decision, ours, theirs].into_iter().enumerate() {
        for (k, v) in group {
            if !valid_name(k) {
                return Err(EnvError::Name(k.clone()));
            }
            out.push_str(k);
            out.push('=');
            out.push_str(&escape(v));
            out.push('\n');
        }
        if i == 0 && out.len() > SECTOR {
            return Err(EnvError::FirstSector(out.len()));
        }
    }
    if out.len() > size {
        return Err(EnvError::TooLarge {
            need: out.len(),
            size,
        });
    }
    let mut b = out.into_bytes();
    b.resize(size, b'#');
    Ok(b)
}

/// The grubenv file on the ESP (or /boot).
pub struct GrubStore {
    pub path: PathBuf,
}

impl GrubStore {
    pub fn new(path: &Path) -> GrubStore {
        GrubStore {
            path: path.to_path_buf(),
        }
    }

    fn io(&self) -> impl FnOnce(std::io::Error) -> BootError + '_ {
        |source| BootError::Io {
            backend: BACKEND,
            path: self.path.clone(),
            source,
        }
    }

    fn format(&self, e: EnvError) -> BootError {
        BootError::Format {
            backend: BACKEND,
            path: self.path.clone(),
            message: e.to_string(),
        }
    }
}

impl EnvStore for GrubStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn load(&mut self) -> Result<BTreeMap<String, String>, BootError> {
        let bytes = std::fs::read(&self.path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => BootError::Format {
                backend: BACKEND,
                path: self.path.clone(),
                message: "does not exist; create it with `grub-editenv PATH create` where GRUB's $prefix points (the image build does this)".into(),
            },
            _ => self.io()(e),
        })?;
        Ok(decode(&bytes)
            .map_err(|e| self.format(e))?
            .into_iter()
            .collect())
    }

    /// One in-place write of the whole block at offset 0, then fsync. The
    /// file must exist: GRUB only ever rewrites existing sectors, so one we
    /// created on the wrong filesystem would silently never be read.
    fn save(&mut self, vars: &BTreeMap<String, String>) -> Result<(), BootError> {
        let len = std::fs::metadata(&self.path).map_err(self.io())?.len();
        let block = encode(vars, len as usize).map_err(|e| self.format(e))?;
        let f = OpenOptions::new()
            .write(true)
            .open(&self.path)
            .map_err(self.io())?;
        f.write_all_at(&block, 0).map_err(self.io())?;
        f.sync_all().map_err(self.io())
    }

    fn max_tries(&self) -> u32 {
        MAX_TRIES
    }
}

/// Writes a fresh, empty block (like `grub-editenv FILE create`).
pub fn create(path: &Path) -> std::io::Result<()> {
    let block = encode(&BTreeMap::new(), DEFAULT_SIZE).expect("empty block fits");
    let mut f = std::fs::File::create(path)?;
    f.write_all(&block)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn map(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn golden_block() {
        let b = encode(
            &map(&[
                ("saved_entry", "0"),
                ("TANDEM_ORDER", "b a"),
                ("TANDEM_B_TRIES", "1"),
            ]),
            1024,
        )
        .unwrap();
        assert_eq!(b.len(), 1024);
        let text = String::from_utf8(b.clone()).unwrap();
        assert!(text.starts_with(
            "# GRUB Environment Block\nTANDEM_B_TRIES=1\nTANDEM_ORDER=b a\nsaved_entry=0\n###"
        ));
        assert!(text.ends_with('#'));
    }

    #[test]
    fn decode_table() {
        type Want = Result<Vec<(&'static str, &'static str)>, EnvError>;
        let cases: &[(&str, Want)] = &[
            ("# GRUB Environment Block\n####", Ok(vec![])),
            (
                "# GRUB Environment Block\na=1\nb=x y\n#",
                Ok(vec![("a", "1"), ("b", "x y")]),
            ),
            (
                "# GRUB Environment Block\na=1\\\n2\n#",
                Ok(vec![("a", "1\n2")]),
            ),
            ("# GRUB Environment Block\na=\\\\\n", Ok(vec![("a", "\\")])),
            ("# GRUB Environment Block\na=1\na=2\n", Ok(vec![("a", "2")])),
            (
                "# GRUB Environment Block\nnoequals\nb=2\n",
                Ok(vec![("b", "2")]),
            ),
            ("# GRUB Environment Block\ncut=off", Ok(vec![])),
            ("# GRUB Environment Block\n=x\n", Ok(vec![])),
            ("hello", Err(EnvError::Header)),
        ];
        for (text, want) in cases {
            let got = decode(text.as_bytes());
            let want = want.clone().map(|v| {
                v.into_iter()
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .collect::<Vec<_>>()
            });
            assert_eq!(got, want, "{text:?}");
        }
    }

    #[test]
    fn limits() {
        let big = map(&[("x", &"y".repeat(2000))]);
        assert!(matches!(encode(&big, 1024), Err(EnvError::TooLarge { .. })));
        let ours = map(&[("TANDEM_ORDER", &"y".repeat(600))]);
        assert!(matches!(encode(&ours, 4096), Err(EnvError::FirstSector(_))));
        // Verity parameters of both groups need not fit the first sector.
        let v = format!(
            "tandem.verity.roothash={} tandem.verity.hashoffset=100663296 tandem.verity.salt={}",
            "a".repeat(64),
            "b".repeat(64)
        );
        let full = map(&[
            ("TANDEM_ORDER", "b a"),
            ("TANDEM_A_OK", "1"),
            ("TANDEM_B_OK", "1"),
            ("TANDEM_A_TRIES", "3"),
            ("TANDEM_B_TRIES", "3"),
            ("TANDEM_A_VERITY", &v),
            ("TANDEM_B_VERITY", &v),
        ]);
        let b = encode(&full, 1024).unwrap();
        let text = String::from_utf8_lossy(&b[..SECTOR]).to_string();
        assert!(text.contains("TANDEM_B_TRIES=3\n"), "{text}");
        assert!(matches!(
            encode(&map(&[("a b", "1")]), 1024),
            Err(EnvError::Name(_))
        ));
    }

    /// A torn write (one sector new, the other old) yields the old or the
    /// new boot decision, never a mix.
    #[test]
    fn torn_write_keeps_the_decision_whole() {
        let old = map(&[
            ("TANDEM_ORDER", "a b"),
            ("TANDEM_A_OK", "1"),
            ("TANDEM_A_VERITY", &"v".repeat(300)),
            ("saved_entry", &"s".repeat(300)),
        ]);
        let new = map(&[
            ("TANDEM_ORDER", "b a"),
            ("TANDEM_B_OK", "1"),
            ("TANDEM_B_TRIES", "1"),
            ("saved_entry", "z"),
        ]);
        let (o, n) = (encode(&old, 1024).unwrap(), encode(&new, 1024).unwrap());
        let tandem = |b: &[u8]| -> Vec<(String, String)> {
            decode(b)
                .unwrap()
                .into_iter()
                .filter(|(k, _)| crate::boot::abvars::is_decision_var(k))
                .collect()
        };
        let first_new: Vec<u8> = n[..SECTOR].iter().chain(&o[SECTOR..]).copied().collect();
        let first_old: Vec<u8> = o[..SECTOR].iter().chain(&n[SECTOR..]).copied().collect();
        assert_eq!(tandem(&first_new), tandem(&n));
        assert_eq!(tandem(&first_old), tandem(&o));
    }

    proptest! {
        #[test]
        fn round_trip(vars in proptest::collection::btree_map("[A-Za-z_][A-Za-z0-9_]{0,12}", "[ -~\n]{0,20}", 0..8)) {
            let b = encode(&vars, 1024).unwrap();
            let back: BTreeMap<String, String> = decode(&b).unwrap().into_iter().collect();
            prop_assert_eq!(back, vars);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1100)) {
            let mut b = HEADER.as_bytes().to_vec();
            b.extend(bytes);
            let _ = decode(&b);
        }
    }
}

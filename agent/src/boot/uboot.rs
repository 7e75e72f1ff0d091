//! U-Boot environment backend, as read and written by U-Boot's `saveenv`
//! and by `fw_printenv`/`fw_setenv` (libubootenv).
//!
//! # On-disk layout
//!
//! One copy is `envsize` bytes at `offset` on its device (from
//! `/etc/fw_env.config`):
//!
//! ```text
//! single:    [crc32 LE: 4][data: envsize-4]
//! redundant: [crc32 LE: 4][flag: 1][data: envsize-5]   (two copies)
//! data:      key=value\0key=value\0 ... \0  then padding
//! ```
//!
//! The CRC (IEEE/zlib) covers the whole data area, padding included. We
//! pad with `0x00` like U-Boot's `saveenv`; `mkenvimage` pads with `0xff`
//! and libubootenv leaves whatever its buffer held, so decoding accepts any
//! padding. Variables are written sorted by name, as both U-Boot and
//! libubootenv do. U-Boot has no empty variables (importing `key=` deletes
//! `key`), so an empty value is written as no variable and read as none.
//!
//! # Which copy is active (redundant)
//!
//! A copy is valid when its CRC matches. With one valid copy, that one.
//! With two, the newer flag: the flag is a counter that wraps, so `0`
//! beats `255`; otherwise the larger wins, and equal flags pick copy 0.
//! This is the rule of U-Boot's `env_import_redund` and of libubootenv
//! for files, block devices and NAND ("incremental" flags).
//!
//! # Write order (redundant)
//!
//! 1. read both copies from the device, pick the active one as above;
//! 2. build the whole new copy in memory: flag = active flag + 1 (mod 256);
//! 3. `pwrite` all `envsize` bytes over the *inactive* copy, `fsync`;
//! 4. read it back and compare.
//!
//! The active copy is never touched, so a power cut anywhere before the
//! fsync completes leaves it valid and active (a torn new copy fails its
//! CRC); after it, the new copy is valid and has the newer flag. A single
//! copy is overwritten in place and is NOT power-safe: a torn write makes
//! U-Boot fall back to its built-in default environment.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::{BootError, EnvStore};

pub const BACKEND: &str = "uboot";
/// The shipped boot script decrements with `setexpr`, which prints hex;
/// with at most 9 tries hex and decimal spell every value the same.
pub const MAX_TRIES: u32 = 9;
/// Larger `envsize` values are taken to be typos in fw_env.config.
pub const MAX_ENV_SIZE: usize = 16 << 20;

/// A pure format error, mapped to [`BootError::Format`] with the path.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum EnvError {
    #[error("invalid variable name {0:?}: use printable ASCII without '=' or spaces, not starting with '#'")]
    Name(String),
    #[error("value of {0} contains a NUL byte")]
    Nul(String),
    #[error("variables need {need} bytes, the environment holds {size}")]
    TooLarge { need: usize, size: usize },
    #[error("environment copy is {got} bytes, expected {want}")]
    Length { got: usize, want: usize },
    #[error("CRC mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    Crc { stored: u32, computed: u32 },
    #[error("variable list is not terminated by an empty entry inside the data area")]
    Unterminated,
    #[error("variable {0:?} is not UTF-8")]
    Encoding(String),
    #[error("device ends before offset {offset:#x} + envsize {size:#x}")]
    Truncated { offset: u64, size: usize },
}

const CRC_TABLE: [u32; 256] = crc_table();

const fn crc_table() -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
}

/// CRC-32 (IEEE 802.3, reflected, as zlib's `crc32(0, data, len)`).
pub fn crc32(data: &[u8]) -> u32 {
    !data.iter().fold(!0u32, |c, &b| {
        CRC_TABLE[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8)
    })
}

/// Names U-Boot and libubootenv read back the same way in both formats:
/// printable ASCII, no `=` (separator), no blank (U-Boot's import skips
/// leading blanks), no leading `#` (U-Boot's import skips comments).
pub fn check_name(k: &str) -> Result<(), EnvError> {
    let ok = !k.is_empty()
        && !k.starts_with('#')
        && k.bytes().all(|b| b.is_ascii_graphic() && b != b'=');
    if ok {
        Ok(())
    } else {
        Err(EnvError::Name(k.to_string()))
    }
}

/// Copy layout: with or without the redundancy flag byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Single,
    Redundant,
}

impl Layout {
    pub fn header(self) -> usize {
        match self {
            Layout::Single => 4,
            Layout::Redundant => 5,
        }
    }
}

/// One decoded, CRC-checked copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvCopy {
    /// The redundancy flag; `None` for a single copy.
    pub flag: Option<u8>,
    pub vars: BTreeMap<String, String>,
}

/// Encodes one copy of exactly `size` bytes. `flag` is written only for
/// [`Layout::Redundant`]. Values are stored raw, as fw_setenv does.
pub fn encode(
    vars: &BTreeMap<String, String>,
    size: usize,
    layout: Layout,
    flag: u8,
) -> Result<Vec<u8>, EnvError> {
    let header = layout.header();
    let mut out = vec![0u8; header];
    for (k, v) in vars.iter().filter(|(_, v)| !v.is_empty()) {
        check_name(k)?;
        if v.contains('\0') {
            return Err(EnvError::Nul(k.clone()));
        }
        out.extend_from_slice(k.as_bytes());
        out.push(b'=');
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out.push(0);
    if out.len() > size {
        return Err(EnvError::TooLarge {
            need: out.len(),
            size,
        });
    }
    out.resize(size, 0);
    if layout == Layout::Redundant {
        out[4] = flag;
    }
    let crc = crc32(&out[header..]);
    out[..4].copy_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// Decodes and CRC-checks one copy. Entries without `=` are skipped and
/// empty values read as absent; a later duplicate wins.
pub fn decode(bytes: &[u8], size: usize, layout: Layout) -> Result<EnvCopy, EnvError> {
    let header = layout.header();
    if bytes.len() != size || size <= header {
        return Err(EnvError::Length {
            got: bytes.len(),
            want: size,
        });
    }
    let stored = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let data = &bytes[header..];
    let computed = crc32(data);
    if stored != computed {
        return Err(EnvError::Crc { stored, computed });
    }
    let mut vars = BTreeMap::new();
    let mut rest = data;
    loop {
        let end = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(EnvError::Unterminated)?;
        if end == 0 {
            break;
        }
        let entry = &rest[..end];
        rest = &rest[end + 1..];
        let Some(eq) = entry.iter().position(|&b| b == b'=') else {
            continue;
        };
        let utf8 = |b: &[u8]| {
            String::from_utf8(b.to_vec())
                .map_err(|_| EnvError::Encoding(String::from_utf8_lossy(entry).into_owned()))
        };
        let (k, v) = (utf8(&entry[..eq])?, utf8(&entry[eq + 1..])?);
        if v.is_empty() {
            vars.remove(&k);
        } else {
            vars.insert(k, v);
        }
    }
    let flag = (layout == Layout::Redundant).then_some(bytes[4]);
    Ok(EnvCopy { flag, vars })
}

/// Index of the newer of two valid redundant copies (U-Boot's rule).
pub fn newer(flag0: u8, flag1: u8) -> usize {
    match (flag0, flag1) {
        (255, 0) => 1,
        (0, 255) => 0,
        (f0, f1) if f1 > f0 => 1,
        _ => 0,
    }
}

/// The active copy among the decoded ones: `None` if none is valid.
pub fn active(copies: &[Result<EnvCopy, EnvError>]) -> Option<usize> {
    match copies {
        [Ok(_)] => Some(0),
        [Ok(c0), Ok(c1)] => Some(newer(c0.flag.unwrap_or(0), c1.flag.unwrap_or(0))),
        [Ok(_), Err(_)] => Some(0),
        [Err(_), Ok(_)] => Some(1),
        _ => None,
    }
}

/// One line of fw_env.config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvDevice {
    pub path: PathBuf,
    pub offset: u64,
    pub size: usize,
    pub sector_size: Option<u64>,
    pub sectors: Option<u64>,
}

/// A parsed fw_env.config: one device line, or two for a redundant env.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FwEnvConfig {
    pub copies: Vec<EnvDevice>,
}

impl FwEnvConfig {
    pub fn layout(&self) -> Layout {
        if self.copies.len() == 2 {
            Layout::Redundant
        } else {
            Layout::Single
        }
    }
}

/// C `strtoll(s, 0)` without sign: `0x` hex, a leading `0` octal, else
/// decimal (libubootenv reads the offset with `%lli`).
fn parse_c_int(s: &str) -> Option<u64> {
    let (digits, radix) = if let Some(h) = s.strip_prefix("0x").or(s.strip_prefix("0X")) {
        (h, 16)
    } else if s.len() > 1 && s.starts_with('0') {
        (&s[1..], 8)
    } else {
        (s, 10)
    };
    if digits.is_empty() || digits.starts_with('+') {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

/// Hex with an optional `0x` (libubootenv reads sizes with `%zx`/`%lx`):
/// `4000` means 0x4000, as for fw_printenv.
fn parse_hex(s: &str) -> Option<u64> {
    let h = s.strip_prefix("0x").or(s.strip_prefix("0X")).unwrap_or(s);
    if h.is_empty() || h.starts_with('+') {
        return None;
    }
    u64::from_str_radix(h, 16).ok()
}

/// One `device offset envsize [sectorsize [sectors]]` line, split.
fn parse_line(f: &[&str]) -> Result<EnvDevice, String> {
    let [path, offset, size, rest @ ..] = f else {
        return Err(format!(
            "expected `device offset envsize [sectorsize [sectors]]`, got {} fields",
            f.len()
        ));
    };
    if rest.len() > 2 {
        return Err(format!("expected at most 5 fields, got {}", f.len()));
    }
    if offset.starts_with('-') {
        return Err(format!(
            "negative offset {offset} (from the end of a block device) is not supported"
        ));
    }
    let offset =
        parse_c_int(offset).ok_or(format!("bad offset {offset:?}: use 0x-hex or decimal"))?;
    let hex = |name: &str, s: &str| {
        parse_hex(s).ok_or(format!("bad {name} {s:?}: a hex number (0x optional)"))
    };
    let raw = hex("envsize", size)?;
    let size = usize::try_from(raw)
        .ok()
        .filter(|&s| s > Layout::Redundant.header() && s <= MAX_ENV_SIZE)
        .ok_or(format!(
            "envsize {raw:#x} out of range (6 bytes to {MAX_ENV_SIZE:#x})"
        ))?;
    Ok(EnvDevice {
        path: PathBuf::from(path),
        offset,
        size,
        sector_size: rest.first().map(|s| hex("sectorsize", s)).transpose()?,
        sectors: rest.get(1).map(|s| hex("sectors", s)).transpose()?,
    })
}

/// Whether `d` may be the second copy after `first`.
fn check_second(first: &EnvDevice, d: &EnvDevice) -> Result<(), String> {
    if first.size != d.size {
        return Err(format!(
            "envsize {:#x} differs from the first copy's {:#x}",
            d.size, first.size
        ));
    }
    let overlap =
        d.offset < first.offset + first.size as u64 && first.offset < d.offset + d.size as u64;
    if first.path == d.path && overlap {
        return Err("the two copies overlap on the same device".into());
    }
    Ok(())
}

/// Parses fw_env.config text: `device offset envsize [sectorsize [sectors]]`
/// per line, `#` comments, one line or two (redundant). Numbers follow
/// libubootenv: the offset is a C integer (`0x` hex, leading-`0` octal,
/// decimal), sizes are always hex. `file` only names the file in errors.
pub fn parse_config(text: &str, file: &Path) -> Result<FwEnvConfig, BootError> {
    let err = |message: String| format_err(file, message);
    let mut copies: Vec<EnvDevice> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let at = |m: String| err(format!("line {}: {m}", i + 1));
        let f: Vec<&str> = line.split_whitespace().collect();
        let d = parse_line(&f).map_err(at)?;
        match copies.as_slice() {
            [] => {}
            [first] => check_second(first, &d).map_err(at)?,
            _ => return Err(at("more than two environment copies".into())),
        }
        copies.push(d);
    }
    if copies.is_empty() {
        return Err(err("no environment device line".into()));
    }
    Ok(FwEnvConfig { copies })
}

/// Reads and parses fw_env.config at `path`.
pub fn load_config(path: &Path) -> Result<FwEnvConfig, BootError> {
    parse_config(&std::fs::read_to_string(path).map_err(io_err(path))?, path)
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BootError + '_ {
    move |source| BootError::Io {
        backend: BACKEND,
        path: path.to_path_buf(),
        source,
    }
}

fn format_err(path: &Path, message: impl std::fmt::Display) -> BootError {
    BootError::Format {
        backend: BACKEND,
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// What one save writes: `bytes` at `offset` of copy `copy`'s device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WritePlan {
    pub copy: usize,
    pub offset: u64,
    pub bytes: Vec<u8>,
}

/// The write a save makes, given the copies as currently on disk: the
/// inactive copy with the next flag (or copy 0 when none is valid, or the
/// only copy). Pure; [`UbootStore::save`] executes exactly this plan.
pub fn plan_write(
    config: &FwEnvConfig,
    on_disk: &[Result<EnvCopy, EnvError>],
    vars: &BTreeMap<String, String>,
) -> Result<WritePlan, EnvError> {
    let layout = config.layout();
    let (copy, flag) = match (layout, active(on_disk)) {
        (Layout::Single, _) => (0, 0),
        (Layout::Redundant, None) => (0, 1),
        (Layout::Redundant, Some(a)) => {
            let f = on_disk[a].as_ref().ok().and_then(|c| c.flag).unwrap_or(0);
            (1 - a, f.wrapping_add(1))
        }
    };
    let dev = &config.copies[copy];
    Ok(WritePlan {
        copy,
        offset: dev.offset,
        bytes: encode(vars, dev.size, layout, flag)?,
    })
}

/// The U-Boot environment on the devices named by fw_env.config. Regular
/// files work as devices (the tests use them). MTD and UBI devices need
/// erase handling and are refused.
pub struct UbootStore {
    pub config: FwEnvConfig,
}

impl UbootStore {
    pub fn new(config: FwEnvConfig) -> Result<UbootStore, BootError> {
        for d in &config.copies {
            let p = d.path.to_string_lossy();
            if p.starts_with("/dev/mtd") || p.starts_with("/dev/ubi") {
                return Err(BootError::Unsupported {
                    backend: BACKEND,
                    message: format!(
                        "{p}: MTD/UBI environments are not supported; use a block device or file"
                    ),
                });
            }
        }
        Ok(UbootStore { config })
    }

    /// Reads the config file and builds the store.
    pub fn from_config_file(path: &Path) -> Result<UbootStore, BootError> {
        UbootStore::new(load_config(path)?)
    }

    fn read_raw(d: &EnvDevice) -> Result<Vec<u8>, BootError> {
        let f = File::open(&d.path).map_err(io_err(&d.path))?;
        let mut buf = vec![0u8; d.size];
        f.read_exact_at(&mut buf, d.offset)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::UnexpectedEof => {
                    let (offset, size) = (d.offset, d.size);
                    format_err(&d.path, EnvError::Truncated { offset, size })
                }
                _ => io_err(&d.path)(e),
            })?;
        Ok(buf)
    }

    /// Every copy as on disk, decoded and CRC-checked.
    pub fn read_copies(&self) -> Result<Vec<Result<EnvCopy, EnvError>>, BootError> {
        let layout = self.config.layout();
        let copies = self.config.copies.iter();
        copies
            .map(|d| Ok(decode(&Self::read_raw(d)?, d.size, layout)))
            .collect()
    }
}

impl EnvStore for UbootStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    /// The active copy's variables. No valid copy is an error: U-Boot then
    /// runs its built-in default environment, and writing only what we
    /// know would drop every other variable it needs (bootcmd...).
    fn load(&mut self) -> Result<BTreeMap<String, String>, BootError> {
        let mut copies = self.read_copies()?;
        if let Some(Ok(c)) = active(&copies).map(|a| copies.swap_remove(a)) {
            return Ok(c.vars);
        }
        let why: Vec<String> = (copies.iter().zip(&self.config.copies))
            .filter_map(|(c, d)| Some(format!("copy at {:#x}: {}", d.offset, c.as_ref().err()?)))
            .collect();
        Err(format_err(
            &self.config.copies[0].path,
            format!(
                "no valid environment copy ({}); U-Boot uses its built-in default. \
                 Write a full environment with mkenvimage or fw_setenv first",
                why.join("; ")
            ),
        ))
    }

    /// Writes the inactive copy (or the only one): pwrite, fsync, read
    /// back and compare. See the module docs for the order and power cuts.
    fn save(&mut self, vars: &BTreeMap<String, String>) -> Result<(), BootError> {
        let on_disk = self.read_copies()?;
        let plan = plan_write(&self.config, &on_disk, vars)
            .map_err(|e| format_err(&self.config.copies[0].path, e))?;
        let dev = &self.config.copies[plan.copy];
        let path = &dev.path;
        tracing::debug!(copy = plan.copy, offset = plan.offset, device = %path.display(), "writing U-Boot environment");
        let f = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(io_err(path))?;
        f.write_all_at(&plan.bytes, plan.offset)
            .map_err(io_err(path))?;
        f.sync_all().map_err(io_err(path))?;
        if Self::read_raw(dev)? != plan.bytes {
            let msg = format!(
                "read-back of the copy at {:#x} differs from what was written",
                plan.offset
            );
            return Err(format_err(path, msg));
        }
        Ok(())
    }

    fn max_tries(&self) -> u32 {
        MAX_TRIES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Vars<'a> = &'a [(&'a str, &'a str)];

    fn map(kv: Vars) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn copy(flag: u8) -> Result<EnvCopy, EnvError> {
        Ok(EnvCopy {
            flag: Some(flag),
            vars: BTreeMap::new(),
        })
    }

    const BAD: Result<EnvCopy, EnvError> = Err(EnvError::Unterminated);

    #[test]
    fn crc32_matches_zlib() {
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(&[0u8; 32]), 0x190A_55AD);
    }

    #[test]
    fn encode_layout() {
        let v = map(&[("b", "x y"), ("a", "1"), ("empty", "")]);
        for (layout, flag, h) in [(Layout::Single, None, 4), (Layout::Redundant, Some(7), 5)] {
            let b = encode(&v, 32, layout, 7).unwrap();
            assert_eq!(&b[h..h + 11], b"a=1\0b=x y\0\0");
            assert!(b[h + 11..].iter().all(|&x| x == 0), "zero padding");
            assert_eq!(b[..4], crc32(&b[h..]).to_le_bytes());
            assert_eq!(flag.map(|_| b[4]), flag);
        }
    }

    #[test]
    fn encode_rejects() {
        let cases: &[(Vars, usize, EnvError)] = &[
            (&[("a=b", "1")], 64, EnvError::Name("a=b".into())),
            (&[("a b", "1")], 64, EnvError::Name("a b".into())),
            (&[("#a", "1")], 64, EnvError::Name("#a".into())),
            (&[("", "1")], 64, EnvError::Name("".into())),
            (&[("a", "x\0y")], 64, EnvError::Nul("a".into())),
            (
                &[("abc", "12345")],
                13,
                EnvError::TooLarge { need: 15, size: 13 },
            ),
        ];
        for (kv, size, want) in cases {
            let got = encode(&map(kv), *size, Layout::Single, 0);
            assert_eq!(got, Err(want.clone()), "{kv:?}");
        }
        assert!(
            encode(&map(&[("abc", "12345")]), 15, Layout::Single, 0).is_ok(),
            "exactly full"
        );
    }

    #[test]
    fn decode_table() {
        let image = |data: &[u8]| {
            let mut b = [&[0u8; 4][..], data].concat();
            b.resize(24, 0xff);
            let crc = crc32(&b[4..]).to_le_bytes();
            b[..4].copy_from_slice(&crc);
            b
        };
        let cases: &[(&[u8], Result<Vars, EnvError>)] = &[
            (b"\0", Ok(&[])),
            (b"a=1\0b=\0noeq\0a=2\0\0", Ok(&[("a", "2")])),
            (b"k=v=w\0\0", Ok(&[("k", "v=w")])),
            (b"a=1\0b=2", Err(EnvError::Unterminated)),
            (b"a=\xff\0\0", Err(EnvError::Encoding("a=\u{fffd}".into()))),
        ];
        for (data, want) in cases {
            let got = decode(&image(data), 24, Layout::Single).map(|c| c.vars);
            assert_eq!(got, want.clone().map(map), "{data:?}");
        }
        let mut bad = image(b"a=1\0\0");
        bad[9] ^= 1;
        assert!(matches!(
            decode(&bad, 24, Layout::Single),
            Err(EnvError::Crc { .. })
        ));
        assert!(matches!(
            decode(&bad[..10], 24, Layout::Single),
            Err(EnvError::Length { .. })
        ));
    }

    #[test]
    fn newer_flag_wraps() {
        let cases = [
            (1, 2, 1),
            (2, 1, 0),
            (3, 3, 0),
            (255, 0, 1),
            (0, 255, 0),
            (254, 255, 1),
        ];
        for (f0, f1, want) in cases {
            assert_eq!(newer(f0, f1), want, "flags {f0} {f1}");
        }
    }

    #[test]
    fn active_copy() {
        assert_eq!(active(&[copy(5), copy(6)]), Some(1));
        assert_eq!(active(&[copy(6), BAD]), Some(0));
        assert_eq!(active(&[BAD, copy(1)]), Some(1));
        assert_eq!(active(&[BAD, BAD]), None);
        assert_eq!(active(&[BAD]), None);
        assert_eq!(active(&[copy(0)]), Some(0));
    }

    #[test]
    fn plan_writes_inactive_copy_with_next_flag() {
        let cfg = parse_config("f 0 0x40\nf 0x40 0x40\n", Path::new("c")).unwrap();
        let v = map(&[("a", "1")]);
        for (disk, copy_idx, flag) in [
            ([copy(1), copy(0)], 1, 2),
            ([copy(1), copy(2)], 0, 3),
            ([copy(255), copy(254)], 1, 0),
            ([copy(255), copy(0)], 0, 1),
            ([BAD, copy(9)], 0, 10),
            ([BAD, BAD], 0, 1),
        ] {
            let p = plan_write(&cfg, &disk, &v).unwrap();
            assert_eq!(
                (p.copy, p.offset, p.bytes[4]),
                (copy_idx, copy_idx as u64 * 0x40, flag)
            );
        }
        let single = parse_config("f 0x100 0x40", Path::new("c")).unwrap();
        let p = plan_write(&single, &[BAD], &v).unwrap();
        assert_eq!((p.copy, p.offset, p.bytes.len()), (0, 0x100, 0x40));
    }

    #[test]
    fn config_table() {
        let dev = |path: &str, offset, size, sector_size, sectors| EnvDevice {
            path: path.into(),
            offset,
            size,
            sector_size,
            sectors,
        };
        let ok = [
            (
                "/dev/mmcblk0 0x3f8000 0x4000\n",
                vec![dev("/dev/mmcblk0", 0x3f8000, 0x4000, None, None)],
            ),
            (
                "# comment\n\n/env 0 4000 200 20 # trailing\n/env 16384 0x4000\n",
                vec![
                    dev("/env", 0, 0x4000, Some(0x200), Some(0x20)),
                    dev("/env", 16384, 0x4000, None, None),
                ],
            ),
            ("/e 010 0x10\n", vec![dev("/e", 8, 0x10, None, None)]),
        ];
        let file = Path::new("/etc/fw_env.config");
        for (text, want) in ok {
            assert_eq!(parse_config(text, file).unwrap().copies, want, "{text}");
        }
        let bad = [
            ("", "no environment device line"),
            ("/e 0\n", "line 1: expected"),
            ("#x\n/e zz 0x10\n", "line 2: bad offset"),
            ("/e -0x4000 0x4000\n", "line 1: negative offset"),
            ("/e 0 0x4g\n", "line 1: bad envsize"),
            ("/e 0 0\n", "line 1: envsize 0x0 out of range"),
            (
                "/e 0 0x4000\n/e 0x2000 0x4000\n",
                "line 2: the two copies overlap",
            ),
            (
                "/e 0 0x4000\n/f 0 0x2000\n",
                "line 2: envsize 0x2000 differs",
            ),
            (
                "/e 0 0x10\n/e 0x10 0x10\n/e 0x20 0x10\n",
                "line 3: more than two",
            ),
            ("/e 0 0x10 1 2 3\n", "line 1: expected at most 5"),
        ];
        for (text, want) in bad {
            let e = parse_config(text, file).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("uboot: /etc/fw_env.config: {want}")),
                "{text:?}: {e}"
            );
        }
    }

    #[test]
    fn mtd_is_refused() {
        let cfg = parse_config("/dev/mtd1 0 0x10000", Path::new("c")).unwrap();
        assert!(matches!(
            UbootStore::new(cfg),
            Err(BootError::Unsupported { .. })
        ));
    }
}

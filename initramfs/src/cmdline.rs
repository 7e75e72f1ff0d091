//! The `tandem.*` parameters of the kernel command line
//! (docs/disk-layout.md, "Kernel command line"). Pure: parses a `&str`.
//!
//! Rules:
//! - words are separated by ASCII whitespace; parsing stops at `--` (what
//!   follows belongs to `/sbin/init`);
//! - a parameter given twice takes its last value, as the kernel does for
//!   its own parameters (grub.cfg appends the slot's arguments last);
//! - any other `tandem.*` word is an error: a misspelt
//!   `tandem.verity.roothash` must not silently boot without verity.

use std::fmt;

/// The slot group GRUB booted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    A,
    B,
}

impl Slot {
    pub fn as_str(self) -> &'static str {
        match self {
            Slot::A => "a",
            Slot::B => "b",
        }
    }

    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// dm-verity parameters for the slot (hash tree on the same partition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerityParams {
    /// SHA-256 root hash, 64 lowercase hex digits.
    pub root_hash: String,
    /// Byte offset of the verity superblock; the filesystem ends there.
    pub hash_offset: u64,
    /// Salt in lowercase hex; `None` for no salt (`-` in the table).
    pub salt: Option<String>,
}

/// What the initramfs was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmdline {
    pub slot: Slot,
    pub verity: Option<VerityParams>,
    /// On failure, run `/bin/sh` instead of rebooting (never in production).
    pub debug: bool,
}

/// Data and hash block size; the hash offset must be a multiple of it.
pub const VERITY_BLOCK: u64 = 4096;

const SLOT: &str = "tandem.slot";
const ROOT_HASH: &str = "tandem.verity.roothash";
const HASH_OFFSET: &str = "tandem.verity.hashoffset";
const SALT: &str = "tandem.verity.salt";
const DEBUG: &str = "tandem.debug";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CmdlineError {
    #[error("no tandem.slot=a|b on the kernel command line (grub.cfg sets it)")]
    NoSlot,
    #[error("{key}={value:?}: {why}")]
    BadValue {
        key: &'static str,
        value: String,
        why: &'static str,
    },
    #[error("unknown parameter {0:?} on the kernel command line (known: tandem.slot, tandem.verity.roothash, tandem.verity.hashoffset, tandem.verity.salt, tandem.debug)")]
    Unknown(String),
    #[error("tandem.verity.roothash is set but tandem.verity.hashoffset is not: cannot find the hash tree")]
    NoHashOffset,
    #[error(
        "{0} is set without tandem.verity.roothash: refusing to guess whether verity is wanted"
    )]
    NoRootHash(&'static str),
}

fn bad(key: &'static str, value: &str, why: &'static str) -> CmdlineError {
    CmdlineError::BadValue {
        key,
        value: value.to_string(),
        why,
    }
}

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The words before `--`.
fn words(cmdline: &str) -> impl Iterator<Item = &str> {
    cmdline.split_ascii_whitespace().take_while(|w| *w != "--")
}

/// Whether `tandem.debug` is present, even if the rest does not parse:
/// the failure path needs to know.
pub fn wants_debug(cmdline: &str) -> bool {
    words(cmdline).any(|w| w == DEBUG)
}

/// Parses the whole kernel command line (`/proc/cmdline`).
pub fn parse(cmdline: &str) -> Result<Cmdline, CmdlineError> {
    let mut slot = None;
    let mut root_hash = None;
    let mut hash_offset = None;
    let mut salt = None;
    let mut debug = false;
    for w in words(cmdline) {
        if !w.starts_with("tandem.") {
            continue;
        }
        let (key, value) = match w.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (w, None),
        };
        match (key, value) {
            (SLOT, Some(v)) => {
                slot = Some(match v {
                    "a" => Slot::A,
                    "b" => Slot::B,
                    _ => return Err(bad(SLOT, v, "must be a or b")),
                })
            }
            (ROOT_HASH, Some(v)) => {
                if v.len() != 64 || !is_hex(v) {
                    return Err(bad(ROOT_HASH, v, "must be 64 hex digits (sha256)"));
                }
                root_hash = Some(v.to_ascii_lowercase());
            }
            (HASH_OFFSET, Some(v)) => {
                let n: u64 = v
                    .parse()
                    .map_err(|_| bad(HASH_OFFSET, v, "must be a decimal byte count"))?;
                if n == 0 || !n.is_multiple_of(VERITY_BLOCK) {
                    return Err(bad(
                        HASH_OFFSET,
                        v,
                        "must be a positive multiple of 4096 (the filesystem is padded to 4 KiB)",
                    ));
                }
                hash_offset = Some(n);
            }
            (SALT, Some(v)) => {
                salt = if v == "-" {
                    None
                } else if is_hex(v) && v.len() % 2 == 0 && v.len() <= 2 * 256 {
                    Some(v.to_ascii_lowercase())
                } else {
                    return Err(bad(
                        SALT,
                        v,
                        "must be an even number of hex digits (at most 256 bytes) or -",
                    ));
                };
            }
            (DEBUG, None) => debug = true,
            _ => return Err(CmdlineError::Unknown(w.to_string())),
        }
    }
    let slot = slot.ok_or(CmdlineError::NoSlot)?;
    let verity = match (root_hash, hash_offset) {
        (Some(root_hash), Some(hash_offset)) => Some(VerityParams {
            root_hash,
            hash_offset,
            salt,
        }),
        (Some(_), None) => return Err(CmdlineError::NoHashOffset),
        (None, Some(_)) => return Err(CmdlineError::NoRootHash(HASH_OFFSET)),
        (None, None) if salt.is_some() => return Err(CmdlineError::NoRootHash(SALT)),
        (None, None) => None,
    };
    Ok(Cmdline {
        slot,
        verity,
        debug,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "4392712ba01368efdf14b05c76f9e4df0d53664630b5d48632ed17a137f39076";

    fn verity(offset: u64, salt: Option<&str>) -> Option<VerityParams> {
        Some(VerityParams {
            root_hash: H.into(),
            hash_offset: offset,
            salt: salt.map(str::to_string),
        })
    }

    #[test]
    fn accepted() {
        let h_upper = H.to_ascii_uppercase();
        let cases: Vec<(String, Cmdline)> = vec![
            (
                "console=ttyS0 tandem.slot=a panic=5".into(),
                Cmdline {
                    slot: Slot::A,
                    verity: None,
                    debug: false,
                },
            ),
            (
                "tandem.slot=b tandem.debug".into(),
                Cmdline {
                    slot: Slot::B,
                    verity: None,
                    debug: true,
                },
            ),
            (
                format!("tandem.slot=a tandem.verity.roothash={H} tandem.verity.hashoffset=8192"),
                Cmdline {
                    slot: Slot::A,
                    verity: verity(8192, None),
                    debug: false,
                },
            ),
            (
                format!(
                    "tandem.slot=a\ttandem.verity.roothash={h_upper} tandem.verity.hashoffset=4096 tandem.verity.salt=00FF"
                ),
                Cmdline {
                    slot: Slot::A,
                    verity: verity(4096, Some("00ff")),
                    debug: false,
                },
            ),
            (
                format!("tandem.slot=a tandem.verity.roothash={H} tandem.verity.hashoffset=4096 tandem.verity.salt=-"),
                Cmdline {
                    slot: Slot::A,
                    verity: verity(4096, None),
                    debug: false,
                },
            ),
            (
                // last one wins
                "tandem.slot=a tandem.slot=b".into(),
                Cmdline {
                    slot: Slot::B,
                    verity: None,
                    debug: false,
                },
            ),
            (
                // after -- belongs to init
                "tandem.slot=a -- tandem.slot=b tandem.bogus".into(),
                Cmdline {
                    slot: Slot::A,
                    verity: None,
                    debug: false,
                },
            ),
            (
                // not ours
                "tandemx=1 root=/dev/vda2 tandem.slot=a".into(),
                Cmdline {
                    slot: Slot::A,
                    verity: None,
                    debug: false,
                },
            ),
        ];
        for (line, want) in cases {
            assert_eq!(parse(&line), Ok(want), "{line}");
        }
    }

    #[test]
    fn rejected() {
        let cases: Vec<(String, CmdlineError)> = vec![
            ("console=ttyS0".into(), CmdlineError::NoSlot),
            ("-- tandem.slot=a".into(), CmdlineError::NoSlot),
            ("tandem.slot=c".into(), bad(SLOT, "c", "")),
            ("tandem.slot".into(), CmdlineError::Unknown("tandem.slot".into())),
            ("tandem.slot=".into(), bad(SLOT, "", "")),
            (
                "tandem.slot=a tandem.verity.roothas=ab".into(),
                CmdlineError::Unknown("tandem.verity.roothas=ab".into()),
            ),
            (
                "tandem.slot=a tandem.debug=1".into(),
                CmdlineError::Unknown("tandem.debug=1".into()),
            ),
            (
                "tandem.slot=a tandem.verity.roothash=abcd tandem.verity.hashoffset=4096".into(),
                bad(ROOT_HASH, "abcd", ""),
            ),
            (
                format!("tandem.slot=a tandem.verity.roothash={}", &H.replace('4', "g")),
                bad(ROOT_HASH, "", ""),
            ),
            (
                format!("tandem.slot=a tandem.verity.roothash={H} tandem.verity.hashoffset=4097"),
                bad(HASH_OFFSET, "4097", ""),
            ),
            (
                format!("tandem.slot=a tandem.verity.roothash={H} tandem.verity.hashoffset=0"),
                bad(HASH_OFFSET, "0", ""),
            ),
            (
                format!("tandem.slot=a tandem.verity.roothash={H} tandem.verity.hashoffset=-4096"),
                bad(HASH_OFFSET, "-4096", ""),
            ),
            (
                format!("tandem.slot=a tandem.verity.roothash={H} tandem.verity.hashoffset=4096 tandem.verity.salt=abc"),
                bad(SALT, "abc", ""),
            ),
            (
                format!("tandem.slot=a tandem.verity.roothash={H}"),
                CmdlineError::NoHashOffset,
            ),
            (
                "tandem.slot=a tandem.verity.hashoffset=4096".into(),
                CmdlineError::NoRootHash(HASH_OFFSET),
            ),
            (
                "tandem.slot=a tandem.verity.salt=00".into(),
                CmdlineError::NoRootHash(SALT),
            ),
        ];
        for (line, want) in cases {
            let got = parse(&line).expect_err(&line);
            // BadValue: compare the key only (values/why are for humans).
            match (&got, &want) {
                (CmdlineError::BadValue { key: a, .. }, CmdlineError::BadValue { key: b, .. }) => {
                    assert_eq!(a, b, "{line}: {got}")
                }
                _ => assert_eq!(got, want, "{line}"),
            }
        }
    }

    #[test]
    fn debug_is_found_even_when_parsing_fails() {
        assert!(wants_debug("tandem.slot=x tandem.debug"));
        assert!(!wants_debug("tandem.slot=a tandem.debugx"));
        assert!(!wants_debug("tandem.slot=a -- tandem.debug"));
    }

    #[test]
    fn errors_name_the_parameter() {
        let e = parse("tandem.slot=c").unwrap_err().to_string();
        assert_eq!(e, "tandem.slot=\"c\": must be a or b");
    }
}

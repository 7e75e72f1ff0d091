//! The parameters of the kernel command line the initramfs reads
//! (docs/disk-layout.md, "Kernel command line"). Pure: parses a `&str`.
//!
//! Rules:
//! - words are separated by ASCII whitespace; parsing stops at `--` (what
//!   follows belongs to `/sbin/init`);
//! - a parameter given twice takes its last value, as the kernel does for
//!   its own parameters (grub.cfg appends the slot's arguments last);
//! - any other `tandem.*` word is an error: a misspelt
//!   `tandem.verity.roothash` must not silently boot without verity;
//! - `root=PARTUUID=<GPT unique GUID>` names the booted slot's partition
//!   (grub.cfg and boot.cmd pass it); other `root=` forms are not ours and
//!   are left alone, as the kernel leaves them with an initramfs.
//!
//! The `tandem.verity.*` values are validated by `tandem-bootparams`, the
//! same code the agent formats them with.

use std::fmt;
use std::time::Duration;

pub use tandem_bootparams::Verity;
use tandem_bootparams::VerityError;

/// The slot group the bootloader booted.
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

/// What the initramfs was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmdline {
    pub slot: Slot,
    pub verity: Option<Verity>,
    /// The GPT unique GUID of the slot's partition (`root=PARTUUID=`),
    /// lowercase; `None`: find it by GPT name.
    pub partuuid: Option<String>,
    /// How long to wait for the partitions (`tandem.wait=`).
    pub wait: Duration,
    /// On failure, run `/bin/sh` instead of rebooting; only honoured by a
    /// build with the `debug-shell` feature (never in production).
    pub debug: bool,
}

/// Default of `tandem.wait`: long enough for a slow eMMC or USB disk.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(30);
/// Largest `tandem.wait`, in seconds: every wait stays bounded.
pub const MAX_WAIT_SECS: u64 = 600;

const SLOT: &str = "tandem.slot";
const WAIT: &str = "tandem.wait";
const DEBUG: &str = "tandem.debug";
const ROOT_PARTUUID: &str = "root=PARTUUID";

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
    #[error("unknown parameter {0:?} on the kernel command line (known: tandem.slot, tandem.verity.roothash, tandem.verity.hashoffset, tandem.verity.salt, tandem.wait, tandem.debug)")]
    Unknown(String),
    #[error(transparent)]
    Verity(#[from] VerityError),
}

fn bad(key: &'static str, value: &str, why: &'static str) -> CmdlineError {
    CmdlineError::BadValue {
        key,
        value: value.to_string(),
        why,
    }
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

/// A GPT unique partition GUID as GRUB's `probe --part-uuid` and U-Boot's
/// `part uuid` print it (8-4-4-4-12 hex digits), in lowercase.
pub fn parse_partuuid(v: &str) -> Result<String, CmdlineError> {
    let groups: Vec<&str> = v.split('-').collect();
    let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    let hex = groups
        .iter()
        .all(|g| g.bytes().all(|b| b.is_ascii_hexdigit()));
    if lens != [8, 4, 4, 4, 12] || !hex {
        return Err(bad(
            ROOT_PARTUUID,
            v,
            "must be a GPT partition GUID (8-4-4-4-12 hex digits)",
        ));
    }
    Ok(v.to_ascii_lowercase())
}

fn parse_wait(v: &str) -> Result<Duration, CmdlineError> {
    let why = "must be a whole number of seconds from 1 to 600";
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(WAIT, v, why));
    }
    match v.parse::<u64>() {
        Ok(n) if (1..=MAX_WAIT_SECS).contains(&n) => Ok(Duration::from_secs(n)),
        _ => Err(bad(WAIT, v, why)),
    }
}

/// Parses the whole kernel command line (`/proc/cmdline`).
pub fn parse(cmdline: &str) -> Result<Cmdline, CmdlineError> {
    let mut slot = None;
    let (mut root_hash, mut hash_offset, mut salt) = (None, None, None);
    let mut partuuid = None;
    let mut wait = DEFAULT_WAIT;
    let mut debug = false;
    for w in words(cmdline) {
        if let Some(v) = w.strip_prefix("root=PARTUUID=") {
            partuuid = Some(parse_partuuid(v)?);
            continue;
        }
        if w.starts_with("root=") {
            // Another form (a device path, a label): not ours; a later
            // root=PARTUUID= still counts, an earlier one is overridden.
            partuuid = None;
            continue;
        }
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
            (tandem_bootparams::ROOT_HASH, Some(v)) => root_hash = Some(v),
            (tandem_bootparams::HASH_OFFSET, Some(v)) => hash_offset = Some(v),
            (tandem_bootparams::SALT, Some(v)) => salt = Some(v),
            (WAIT, Some(v)) => wait = parse_wait(v)?,
            (DEBUG, None) => debug = true,
            _ => return Err(CmdlineError::Unknown(w.to_string())),
        }
    }
    let slot = slot.ok_or(CmdlineError::NoSlot)?;
    let verity = Verity::from_params(root_hash, hash_offset, salt)?;
    Ok(Cmdline {
        slot,
        verity,
        partuuid,
        wait,
        debug,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "4392712ba01368efdf14b05c76f9e4df0d53664630b5d48632ed17a137f39076";
    const U: &str = "0a1b2c3d-1111-4222-8333-444455556666";

    fn verity(offset: u64, salt: Option<&str>) -> Option<Verity> {
        Some(Verity::new(H, offset, salt).unwrap())
    }

    fn plain(slot: Slot) -> Cmdline {
        Cmdline {
            slot,
            verity: None,
            partuuid: None,
            wait: DEFAULT_WAIT,
            debug: false,
        }
    }

    #[test]
    fn accepted() {
        let h_upper = H.to_ascii_uppercase();
        let u_upper = U.to_ascii_uppercase();
        let cases: Vec<(String, Cmdline)> = vec![
            ("console=ttyS0 tandem.slot=a panic=5".into(), plain(Slot::A)),
            (
                "tandem.slot=b tandem.debug".into(),
                Cmdline {
                    debug: true,
                    ..plain(Slot::B)
                },
            ),
            (
                format!("tandem.slot=a tandem.verity.roothash={H} tandem.verity.hashoffset=8192"),
                Cmdline {
                    verity: verity(8192, None),
                    ..plain(Slot::A)
                },
            ),
            (
                format!(
                    "tandem.slot=a\ttandem.verity.roothash={h_upper} tandem.verity.hashoffset=4096 tandem.verity.salt=00FF"
                ),
                Cmdline {
                    verity: verity(4096, Some("00ff")),
                    ..plain(Slot::A)
                },
            ),
            (
                format!("tandem.slot=a tandem.verity.roothash={H} tandem.verity.hashoffset=4096 tandem.verity.salt=-"),
                Cmdline {
                    verity: verity(4096, None),
                    ..plain(Slot::A)
                },
            ),
            // last one wins
            ("tandem.slot=a tandem.slot=b".into(), plain(Slot::B)),
            // after -- belongs to init
            (
                "tandem.slot=a -- tandem.slot=b tandem.bogus".into(),
                plain(Slot::A),
            ),
            // not ours
            ("tandemx=1 root=/dev/vda2 tandem.slot=a".into(), plain(Slot::A)),
            (
                format!("root=PARTUUID={u_upper} rootwait tandem.slot=b"),
                Cmdline {
                    partuuid: Some(U.into()),
                    ..plain(Slot::B)
                },
            ),
            // a later root= of another form overrides
            (
                format!("root=PARTUUID={U} tandem.slot=a root=/dev/sda2"),
                plain(Slot::A),
            ),
            (
                "tandem.slot=a tandem.wait=120".into(),
                Cmdline {
                    wait: Duration::from_secs(120),
                    ..plain(Slot::A)
                },
            ),
        ];
        for (line, want) in cases {
            assert_eq!(parse(&line), Ok(want), "{line}");
        }
    }

    #[test]
    fn rejected() {
        use tandem_bootparams::{HASH_OFFSET, ROOT_HASH, SALT};
        let verity_bad = |key| {
            CmdlineError::Verity(VerityError::BadValue {
                key,
                value: String::new(),
                why: "",
            })
        };
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
                "tandem.slot=a tandem.partuuid=x".into(),
                CmdlineError::Unknown("tandem.partuuid=x".into()),
            ),
            (
                "tandem.slot=a tandem.verity.roothash=abcd tandem.verity.hashoffset=4096".into(),
                verity_bad(ROOT_HASH),
            ),
            (
                format!("tandem.slot=a tandem.verity.roothash={}", &H.replace('4', "g")),
                verity_bad(ROOT_HASH),
            ),
            (
                format!("tandem.slot=a tandem.verity.roothash={H} tandem.verity.hashoffset=4097"),
                verity_bad(HASH_OFFSET),
            ),
            (
                format!("tandem.slot=a tandem.verity.roothash={H} tandem.verity.hashoffset=0"),
                verity_bad(HASH_OFFSET),
            ),
            (
                format!("tandem.slot=a tandem.verity.roothash={H} tandem.verity.hashoffset=-4096"),
                verity_bad(HASH_OFFSET),
            ),
            (
                format!("tandem.slot=a tandem.verity.roothash={H} tandem.verity.hashoffset=4096 tandem.verity.salt=abc"),
                verity_bad(SALT),
            ),
            (
                format!("tandem.slot=a tandem.verity.roothash={H}"),
                CmdlineError::Verity(VerityError::NoHashOffset),
            ),
            (
                "tandem.slot=a tandem.verity.hashoffset=4096".into(),
                CmdlineError::Verity(VerityError::NoRootHash(HASH_OFFSET)),
            ),
            (
                "tandem.slot=a tandem.verity.salt=00".into(),
                CmdlineError::Verity(VerityError::NoRootHash(SALT)),
            ),
            ("tandem.slot=a root=PARTUUID=1234".into(), bad(ROOT_PARTUUID, "", "")),
            (
                format!("tandem.slot=a root=PARTUUID={U}/PARTNROFF=1"),
                bad(ROOT_PARTUUID, "", ""),
            ),
            ("tandem.slot=a tandem.wait=0".into(), bad(WAIT, "", "")),
            ("tandem.slot=a tandem.wait=601".into(), bad(WAIT, "", "")),
            ("tandem.slot=a tandem.wait=+5".into(), bad(WAIT, "", "")),
            ("tandem.slot=a tandem.wait=".into(), bad(WAIT, "", "")),
        ];
        for (line, want) in cases {
            let got = parse(&line).expect_err(&line);
            // BadValue: compare the key only (values/why are for humans).
            match (&got, &want) {
                (CmdlineError::BadValue { key: a, .. }, CmdlineError::BadValue { key: b, .. }) => {
                    assert_eq!(a, b, "{line}: {got}")
                }
                (
                    CmdlineError::Verity(VerityError::BadValue { key: a, .. }),
                    CmdlineError::Verity(VerityError::BadValue { key: b, .. }),
                ) => assert_eq!(a, b, "{line}: {got}"),
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
        let e = parse("tandem.slot=a tandem.verity.hashoffset=1 tandem.verity.roothash=x")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("tandem.verity.roothash=\"x\""), "{e}");
    }
}

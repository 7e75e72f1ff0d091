//! Boot Loader Specification Type #1 entry files, as systemd-boot 252
//! reads them. Pure: names and contents in, values out.
//!
//! - File names: systemd-boot's `config_entry_parse_tries` takes the
//!   counter after the *last* `+`: `+LEFT[-DONE]` directly before `.conf`
//!   (any case), each part at least one decimal digit, at most `INT_MAX`.
//!   A missing `-DONE` means 0. Anything else is "no counter".
//! - Contents: `line_get_key_value`: lines split at `\n` or `\r`, blanks and
//!   tabs trimmed, `#` lines skipped, key and value split at the first run
//!   of blanks/tabs, a line with no value skipped, one pair of surrounding
//!   `"` removed. A later key replaces an earlier one, except `initrd`
//!   (collected) and `options` (joined with a space). Parsing stops at a
//!   NUL byte, like the C string it is read into.

use std::fmt;

use crate::slot::SlotGroup;

pub const PREFIX: &str = "tandem-";
pub const SUFFIX: &str = ".conf";
/// The `sort-key` of every Tandem entry.
pub const SORT_KEY: &str = "tandem";

/// systemd-boot's `EFI_MACHINE_TYPE_NAME` for the build target, which an
/// entry's `architecture` key must match (case-insensitively).
pub const EFI_ARCH: &str = if cfg!(target_arch = "x86_64") {
    "x64"
} else if cfg!(target_arch = "aarch64") {
    "aa64"
} else if cfg!(target_arch = "x86") {
    "ia32"
} else if cfg!(target_arch = "arm") {
    "arm"
} else {
    "riscv64"
};

/// A boot counter as systemd-boot parses it from a file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tries {
    pub left: u32,
    pub done: u32,
}

/// Parses the `+LEFT[-DONE].conf` counter of any entry file name exactly
/// like systemd-boot 252 (`config_entry_parse_tries`).
pub fn parse_tries(file: &str) -> Option<Tries> {
    parse_counter(file).map(|(_, left, done)| Tries {
        left,
        done: done.unwrap_or(0),
    })
}

/// Returns (index of the `+`, left, explicit done).
fn parse_counter(file: &str) -> Option<(usize, u32, Option<u32>)> {
    let plus = file.rfind('+')?;
    let rest = &file[plus + 1..];
    let (left, rest) = number(rest)?;
    let (done, rest) = match rest.strip_prefix('-') {
        Some(r) => {
            let (d, r) = number(r)?;
            (Some(d), r)
        }
        None => (None, rest),
    };
    rest.eq_ignore_ascii_case(SUFFIX)
        .then_some((plus, left, done))
}

/// At least one digit, no overflow, at most `INT_MAX` (systemd-boot's limit).
fn number(s: &str) -> Option<(u32, &str)> {
    let end = s.bytes().take_while(u8::is_ascii_digit).count();
    if end == 0 {
        return None;
    }
    let mut v: u64 = 0;
    for b in s[..end].bytes() {
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    (v <= i32::MAX as u64).then_some((v as u32, &s[end..]))
}

/// The name after systemd-boot boots a counted entry (`next_name` in
/// `config_entry_parse_tries`): left decremented (not below 0), done
/// incremented. `None` for a name without a counter.
pub fn after_boot(file: &str) -> Option<String> {
    let (plus, left, done) = parse_counter(file)?;
    let done = done.unwrap_or(0).saturating_add(1).min(i32::MAX as u32);
    Some(format!(
        "{}{}-{}{}",
        &file[..=plus],
        left.saturating_sub(1),
        done,
        &file[file.len() - SUFFIX.len()..]
    ))
}

/// The name of a Tandem entry: `tandem-<g>[+<left>[-<done>]].conf`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryName {
    pub slot: SlotGroup,
    pub counter: Option<Counter>,
}

/// A counter as written; `done: None` is the `+N` form (same as `+N-0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counter {
    pub left: u32,
    pub done: Option<u32>,
}

impl EntryName {
    pub fn blessed(slot: SlotGroup) -> EntryName {
        EntryName {
            slot,
            counter: None,
        }
    }

    pub fn counted(slot: SlotGroup, left: u32, done: Option<u32>) -> EntryName {
        EntryName {
            slot,
            counter: Some(Counter { left, done }),
        }
    }

    /// Parses one of our names (ASCII case-insensitive, as FAT is).
    pub fn parse(file: &str) -> Option<EntryName> {
        let lower = file.to_ascii_lowercase();
        let rest = lower.strip_prefix(PREFIX)?;
        let slot = match rest.as_bytes().first()? {
            b'a' => SlotGroup::A,
            b'b' => SlotGroup::B,
            _ => return None,
        };
        let rest = &rest[1..];
        if rest == SUFFIX {
            return Some(EntryName::blessed(slot));
        }
        let (plus, left, done) = parse_counter(rest)?;
        (plus == 0).then_some(EntryName::counted(slot, left, done))
    }

    pub fn tries(&self) -> Option<Tries> {
        self.counter.map(|c| Tries {
            left: c.left,
            done: c.done.unwrap_or(0),
        })
    }

    /// No tries left: systemd-boot sorts it after every other entry.
    pub fn exhausted(&self) -> bool {
        self.counter.is_some_and(|c| c.left == 0)
    }
}

impl fmt::Display for EntryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}", self.slot)?;
        match self.counter {
            None => {}
            Some(Counter { left, done: None }) => write!(f, "+{left}")?,
            Some(Counter {
                left,
                done: Some(d),
            }) => write!(f, "+{left}-{d}")?,
        }
        f.write_str(SUFFIX)
    }
}

/// The temporary file an entry is written to before its rename. It starts
/// with a dot and does not end in `.conf`, so neither systemd-boot (skips
/// names starting with `.`) nor bootctl (lists `*.conf`) reads it.
pub fn temp_name(g: SlotGroup) -> String {
    format!(".{PREFIX}{g}.tmp")
}

pub fn is_temp_name(file: &str) -> Option<SlotGroup> {
    SlotGroup::ALL
        .into_iter()
        .find(|&g| file.eq_ignore_ascii_case(&temp_name(g)))
}

/// The key/value pairs of an entry or `loader.conf`, in file order, with
/// systemd-boot's `line_get_key_value` rules (separators blank and tab).
pub fn key_values(text: &str) -> Vec<(&str, &str)> {
    let text = text.split('\0').next().unwrap_or("");
    let mut out = Vec::new();
    for line in text.split(['\n', '\r']) {
        let line = line.trim_matches([' ', '\t']);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some(k_end) = line.find([' ', '\t']) else {
            continue;
        };
        let key = &line[..k_end];
        let mut value = line[k_end..].trim_start_matches([' ', '\t']);
        if value.starts_with('"') && line.ends_with('"') {
            value = value.get(1..value.len() - 1).unwrap_or("");
        }
        out.push((key, value));
    }
    out
}

/// What systemd-boot 252 takes from a Type #1 entry
/// (`config_entry_add_type1`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conf {
    pub title: Option<String>,
    pub sort_key: Option<String>,
    pub version: Option<String>,
    pub machine_id: Option<String>,
    /// The `linux` or `efi` path, whichever came last.
    pub loader: Option<String>,
    pub initrd: Vec<String>,
    pub options: Option<String>,
    /// An `architecture` other than [`EFI_ARCH`]: systemd-boot drops it.
    pub foreign_arch: bool,
}

impl Conf {
    pub fn parse(text: &str) -> Conf {
        let mut c = Conf::default();
        for (k, v) in key_values(text) {
            let v = v.to_string();
            match k {
                "title" => c.title = Some(v),
                "sort-key" => c.sort_key = Some(v),
                "version" => c.version = Some(v),
                "machine-id" => c.machine_id = Some(v),
                "linux" | "efi" => c.loader = Some(v),
                "initrd" => c.initrd.push(v),
                "options" => {
                    c.options = Some(match c.options.take() {
                        Some(o) => format!("{o} {v}"),
                        None => v,
                    })
                }
                "architecture" if !v.eq_ignore_ascii_case(EFI_ARCH) => {
                    c.foreign_arch = true;
                    break;
                }
                _ => {}
            }
        }
        c
    }

    /// Our generation number: the `version` as a decimal integer.
    pub fn generation(&self) -> Option<u64> {
        self.version.as_deref()?.parse().ok()
    }

    /// Whether systemd-boot makes a menu entry of it at all (given that
    /// the loader file exists on the ESP).
    pub fn bootable(&self) -> bool {
        self.loader.is_some() && !self.foreign_arch
    }
}

/// Where a slot's kernel and initrd live on the ESP, and its command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// ESP path of the kernel; `{slot}` is replaced with `a` or `b`.
    pub kernel: String,
    /// ESP path of the initrd (`{slot}` replaced), if there is one.
    pub initrd: Option<String>,
    /// Appended to `<slot_parameter>=<g>` on the `options` line.
    pub options: String,
    /// The kernel parameter naming the slot (config `boot.slot_parameter`).
    pub slot_parameter: String,
    /// Per-slot parameters appended after `options` (the group's
    /// dm-verity root hash), set before the slot's entry is composed.
    pub extra: std::collections::BTreeMap<SlotGroup, String>,
    /// `kernel` is a unified kernel image: the entry says `efi <path>`
    /// and has no `options` line, so what boots is the image's own
    /// (signed) command line.
    pub efi: bool,
}

pub const DEFAULT_KERNEL: &str = "/tandem/{slot}/vmlinuz";
pub const DEFAULT_INITRD: &str = "/tandem/{slot}/initrd.img";

impl Default for Layout {
    fn default() -> Layout {
        Layout {
            kernel: DEFAULT_KERNEL.into(),
            initrd: Some(DEFAULT_INITRD.into()),
            options: String::new(),
            slot_parameter: "tandem.slot".into(),
            extra: Default::default(),
            efi: false,
        }
    }
}

impl Layout {
    pub fn kernel(&self, g: SlotGroup) -> String {
        self.kernel.replace("{slot}", g.as_str())
    }

    pub fn initrd(&self, g: SlotGroup) -> Option<String> {
        self.initrd
            .as_ref()
            .map(|i| i.replace("{slot}", g.as_str()))
    }

    /// Checks what would make a broken entry: paths must be absolute ESP
    /// paths that differ per slot; nothing may contain a line break.
    pub fn validate(&self) -> Result<(), String> {
        let paths = std::iter::once(("kernel", &self.kernel))
            .chain(self.initrd.as_ref().map(|i| ("initrd", i)));
        for (what, p) in paths {
            if !p.starts_with('/') || !p.contains("{slot}") || p.contains(char::is_whitespace) {
                return Err(format!(
                    "{what} path {p:?} must be an absolute path on the ESP containing {{slot}}, without spaces"
                ));
            }
        }
        if self.efi && self.initrd.is_some() {
            return Err("a unified kernel image carries its initrd: no initrd path with it".into());
        }
        if self.efi && !self.options.trim().is_empty() {
            return Err("a unified kernel image boots with its own signed command line: kernel options cannot be added to it".into());
        }
        if self.options.contains(['\n', '\r', '\0']) {
            return Err("kernel options must be one line".into());
        }
        if self.slot_parameter.is_empty() || self.slot_parameter.contains(['=', ' ', '\n']) {
            return Err(format!("invalid slot parameter {:?}", self.slot_parameter));
        }
        Ok(())
    }

    /// A fresh entry for `g` at generation `gen`.
    pub fn compose(&self, g: SlotGroup, gen: u64, label: Option<&str>) -> String {
        let title = match label {
            Some(l) if !l.trim().is_empty() => format!("Tandem {g} ({})", one_line(l)),
            _ => format!("Tandem {g}"),
        };
        let key = if self.efi { "efi" } else { "linux" };
        let mut s = format!(
            "title {title}\nsort-key {SORT_KEY}\nversion {gen}\n{key} {}\n",
            self.kernel(g)
        );
        if self.efi {
            return s;
        }
        if let Some(i) = self.initrd(g) {
            s.push_str(&format!("initrd {i}\n"));
        }
        let mut opts = self.options.trim().to_string();
        if let Some(extra) = self.extra.get(&g).map(|e| one_line(e.trim())) {
            if !extra.is_empty() {
                opts = format!("{opts} {extra}").trim_start().to_string();
            }
        }
        let sep = if opts.is_empty() { "" } else { " " };
        s.push_str(&format!("options {}={g}{sep}{opts}\n", self.slot_parameter));
        s
    }
}

fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

/// The same entry at another generation: every `version` line is dropped
/// and one `version <gen>` put where the first was (at the end if none).
pub fn set_version(content: &str, gen: u64) -> String {
    let mut out = String::with_capacity(content.len() + 8);
    let mut placed = false;
    for line in content.split_inclusive('\n') {
        let is_version = key_values(line)
            .first()
            .is_some_and(|(k, _)| *k == "version");
        if is_version {
            if !placed {
                out.push_str(&format!("version {gen}\n"));
                placed = true;
            }
        } else {
            out.push_str(line);
        }
    }
    if !placed {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&format!("version {gen}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use SlotGroup::{A, B};

    #[test]
    fn name_table() {
        let cases: &[(&str, Option<EntryName>)] = &[
            ("tandem-a.conf", Some(EntryName::blessed(A))),
            ("tandem-b+3.conf", Some(EntryName::counted(B, 3, None))),
            ("tandem-b+1-2.conf", Some(EntryName::counted(B, 1, Some(2)))),
            ("tandem-b+0-0.conf", Some(EntryName::counted(B, 0, Some(0)))),
            ("TANDEM-B+2.CONF", Some(EntryName::counted(B, 2, None))),
            ("tandem-c.conf", None),
            ("tandem-ab.conf", None),
            ("tandem-a+.conf", None),
            ("tandem-a+1-.conf", None),
            ("tandem-a+x.conf", None),
            ("tandem-a+1+2.conf", None),
            ("tandem-a+2147483648.conf", None),
            ("tandem-a.conf.bak", None),
            (".tandem-a.tmp", None),
            ("debian.conf", None),
        ];
        for (s, want) in cases {
            assert_eq!(EntryName::parse(s), *want, "{s}");
        }
    }

    #[test]
    fn tries_like_systemd_boot() {
        // The series from config_entry_parse_tries' comment.
        let mut n = "foobar+3.conf".to_string();
        let mut seen = vec![n.clone()];
        while let Some(next) = after_boot(&n) {
            if parse_tries(&n).unwrap().left == 0 {
                break;
            }
            n = next;
            seen.push(n.clone());
        }
        assert_eq!(
            seen,
            [
                "foobar+3.conf",
                "foobar+2-1.conf",
                "foobar+1-2.conf",
                "foobar+0-3.conf"
            ]
        );
        assert_eq!(after_boot("x+0-3.conf").as_deref(), Some("x+0-4.conf"));
        assert_eq!(after_boot("x+4-0.CONF").as_deref(), Some("x+3-1.CONF"));
        assert_eq!(parse_tries("a+b+2.conf"), Some(Tries { left: 2, done: 0 }));
        assert_eq!(parse_tries("a+2.conf+"), None);
        assert_eq!(parse_tries("a+2x.conf"), None);
        assert_eq!(parse_tries("plain.conf"), None);
    }

    #[test]
    fn conf_like_systemd_boot() {
        let c = Conf::parse(
            "# c\n  title   \"Tandem b\"  \r\nversion 3\nversion 4\nnovalue\n\
             linux /a\nefi /b\ninitrd /i1\ninitrd /i2\noptions x=1\n\toptions\ty=2\n",
        );
        assert_eq!(c.title.as_deref(), Some("Tandem b"));
        assert_eq!(c.generation(), Some(4));
        assert_eq!(c.loader.as_deref(), Some("/b"));
        assert_eq!(c.initrd, ["/i1", "/i2"]);
        assert_eq!(c.options.as_deref(), Some("x=1 y=2"));
        assert!(c.bootable());
        assert!(!Conf::parse("title x\n").bootable());
        assert!(Conf::parse("linux /k\0\nversion 9\n").version.is_none());
        let other = if EFI_ARCH == "x64" { "aa64" } else { "x64" };
        assert!(!Conf::parse(&format!("architecture {other}\nlinux /k\n")).bootable());
        assert!(Conf::parse(&format!(
            "architecture {}\nlinux /k\n",
            EFI_ARCH.to_uppercase()
        ))
        .bootable());
    }

    #[test]
    fn compose_and_set_version() {
        let l = Layout {
            options: "ro quiet".into(),
            ..Layout::default()
        };
        let c = l.compose(B, 7, Some("1.4.2\n"));
        assert_eq!(
            c,
            "title Tandem b (1.4.2)\nsort-key tandem\nversion 7\nlinux /tandem/b/vmlinuz\n\
             initrd /tandem/b/initrd.img\noptions tandem.slot=b ro quiet\n"
        );
        let c9 = set_version(&c, 9);
        assert_eq!(c9, c.replace("version 7", "version 9"));
        assert_eq!(set_version("linux /k", 2), "linux /k\nversion 2\n");
        let no_initrd = Layout {
            initrd: None,
            ..Layout::default()
        };
        assert!(!no_initrd.compose(A, 1, None).contains("initrd"));
        assert!(Layout::default().validate().is_ok());
        let uki = Layout {
            kernel: "/tandem/{slot}/tandem.efi".into(),
            initrd: None,
            efi: true,
            ..Layout::default()
        };
        assert!(uki.validate().is_ok());
        assert_eq!(
            uki.compose(B, 3, None),
            "title Tandem b\nsort-key tandem\nversion 3\nefi /tandem/b/tandem.efi\n",
            "no options: the image's own command line boots"
        );
        for bad in [
            Layout {
                initrd: Some(DEFAULT_INITRD.into()),
                ..uki.clone()
            },
            Layout {
                options: "init=/bin/sh".into(),
                ..uki.clone()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        for bad in ["tandem/{slot}/k", "/tandem/k", "/t/{slot}/a b"] {
            let l = Layout {
                kernel: bad.into(),
                ..Layout::default()
            };
            assert!(l.validate().is_err(), "{bad}");
        }
    }

    fn any_name() -> impl Strategy<Value = EntryName> {
        (
            prop_oneof![Just(A), Just(B)],
            proptest::option::of((
                0u32..=i32::MAX as u32,
                proptest::option::of(0u32..=i32::MAX as u32),
            )),
        )
            .prop_map(|(slot, c)| EntryName {
                slot,
                counter: c.map(|(left, done)| Counter { left, done }),
            })
    }

    proptest! {
        #[test]
        fn name_round_trip(n in any_name()) {
            let s = n.to_string();
            prop_assert_eq!(EntryName::parse(&s), Some(n));
            // systemd-boot reads the same counter from it.
            prop_assert_eq!(parse_tries(&s), n.tries());
        }

        #[test]
        fn after_boot_counts_down(n in any_name()) {
            let s = n.to_string();
            match (n.tries(), after_boot(&s)) {
                (None, None) => {}
                (Some(t), Some(next)) => {
                    let m = EntryName::parse(&next).unwrap();
                    prop_assert_eq!(m.slot, n.slot);
                    let u = m.tries().unwrap();
                    prop_assert_eq!(u.left, t.left.saturating_sub(1));
                    prop_assert_eq!(u.done, (t.done.saturating_add(1)).min(i32::MAX as u32));
                }
                other => prop_assert!(false, "{:?}", other),
            }
        }

        #[test]
        fn parsers_never_panic(s in "\\PC{0,40}") {
            let _ = EntryName::parse(&s);
            let _ = parse_tries(&s);
            let _ = after_boot(&s);
            let _ = Conf::parse(&s);
            let _ = set_version(&s, 1);
        }
    }
}

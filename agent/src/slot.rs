//! Slot identities: the A/B group, the slot class, and which group booted.
//!
//! Pure: the kernel command line comes in as a string.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Errors about slot names and the booted slot.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SlotError {
    #[error("invalid slot group {0:?}: expected \"a\" or \"b\"")]
    BadGroup(String),
    #[error(
        "invalid slot class {0:?}: use 1-32 characters from a-z, 0-9, '-' and '_', starting with a letter"
    )]
    BadClass(String),
    #[error("kernel command line names slot {value:?} in {param}=, expected a or b")]
    BadCmdline { param: String, value: String },
    #[error("kernel command line has {param}= more than once with different values")]
    AmbiguousCmdline { param: String },
}

/// One half of the A/B pair. A group holds one slot per class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SlotGroup {
    A,
    B,
}

impl SlotGroup {
    pub const ALL: [SlotGroup; 2] = [SlotGroup::A, SlotGroup::B];

    pub fn other(self) -> SlotGroup {
        match self {
            SlotGroup::A => SlotGroup::B,
            SlotGroup::B => SlotGroup::A,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SlotGroup::A => "a",
            SlotGroup::B => "b",
        }
    }
}

impl fmt::Display for SlotGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SlotGroup {
    type Err = SlotError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "a" | "A" => Ok(SlotGroup::A),
            "b" | "B" => Ok(SlotGroup::B),
            _ => Err(SlotError::BadGroup(s.to_string())),
        }
    }
}

/// The kind of content a slot holds (`rootfs`, `boot`, ...).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SlotClass(String);

impl SlotClass {
    pub fn new(s: &str) -> Result<Self, SlotError> {
        let ok = !s.is_empty()
            && s.len() <= 32
            && s.as_bytes()[0].is_ascii_lowercase()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if ok {
            Ok(SlotClass(s.to_string()))
        } else {
            Err(SlotError::BadClass(s.to_string()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SlotClass {
    type Error = SlotError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        SlotClass::new(&s)
    }
}

impl From<SlotClass> for String {
    fn from(c: SlotClass) -> String {
        c.0
    }
}

impl fmt::Display for SlotClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Finds `param=a|b` in a kernel command line. `Ok(None)` when absent.
pub fn booted_from_cmdline(cmdline: &str, param: &str) -> Result<Option<SlotGroup>, SlotError> {
    let mut found: Option<SlotGroup> = None;
    for word in cmdline.split_ascii_whitespace() {
        let Some((key, value)) = word.split_once('=') else {
            continue;
        };
        if key != param {
            continue;
        }
        let value = value.trim_matches('"');
        let group = SlotGroup::from_str(value).map_err(|_| SlotError::BadCmdline {
            param: param.to_string(),
            value: value.to_string(),
        })?;
        if found.is_some_and(|g| g != group) {
            return Err(SlotError::AmbiguousCmdline {
                param: param.to_string(),
            });
        }
        found = Some(group);
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_table() {
        let p = "tandem.slot";
        let cases: &[(&str, Result<Option<SlotGroup>, ()>)] = &[
            ("", Ok(None)),
            ("quiet root=/dev/sda2", Ok(None)),
            ("quiet tandem.slot=a ro", Ok(Some(SlotGroup::A))),
            ("tandem.slot=b\n", Ok(Some(SlotGroup::B))),
            ("tandem.slot=\"b\"", Ok(Some(SlotGroup::B))),
            ("tandem.slot=b tandem.slot=b", Ok(Some(SlotGroup::B))),
            ("tandem.slot=a tandem.slot=b", Err(())),
            ("tandem.slot=c", Err(())),
            ("tandem.slot=", Err(())),
            ("xtandem.slot=a", Ok(None)),
            ("tandem.slotx=a", Ok(None)),
        ];
        for (line, want) in cases {
            let got = booted_from_cmdline(line, p).map_err(|_| ());
            assert_eq!(&got, want, "cmdline {line:?}");
        }
    }

    #[test]
    fn class_names() {
        for ok in ["rootfs", "boot", "a", "data_1", "x-y"] {
            assert!(SlotClass::new(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Rootfs", "1abc", "../x", "a/b", "a b", &"x".repeat(33)] {
            assert!(SlotClass::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn other_group() {
        assert_eq!(SlotGroup::A.other(), SlotGroup::B);
        assert_eq!(SlotGroup::B.other(), SlotGroup::A);
    }
}

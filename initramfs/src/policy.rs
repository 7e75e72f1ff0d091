//! The policy built into an initramfs image: `/etc/tandem/initramfs.conf`,
//! written by `tandem-image` (image-recipes) from the recipe. Pure: parses
//! a `&str`.
//!
//! ```text
//! # Written by tandem-image for recipe minimal 1.0.0.
//! require_verity = yes
//! ```
//!
//! `key = value` lines, `#` comments, blank lines. Keys:
//!
//! | key | values | meaning |
//! |-----|--------|---------|
//! | `require_verity` | `yes` / `no` | `yes`: a command line without `tandem.verity.roothash` fails the boot (reboot; the bootloader counts the try and falls back), instead of mounting the slot unverified |
//!
//! An unknown key, a repeated key or a bad value is an error, and so the
//! boot fails: a typo must not turn verification off. A missing file means
//! `require_verity = yes` (the safe side: an initramfs assembled by hand
//! without the file refuses unverified slots until it says `no`).

/// Where the policy lives in the initramfs.
pub const PATH: &str = "/etc/tandem/initramfs.conf";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub require_verity: bool,
}

impl Policy {
    /// The policy without a file.
    pub const DEFAULT: Policy = Policy {
        require_verity: true,
    };

    /// The text `tandem-image` writes.
    pub fn to_text(self, comment: &str) -> String {
        let yn = |b: bool| if b { "yes" } else { "no" };
        format!(
            "# {comment}\nrequire_verity = {}\n",
            yn(self.require_verity)
        )
    }

    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        let mut require_verity = None;
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                return Err(PolicyError::Syntax(n));
            };
            let v = match v.trim() {
                "yes" => true,
                "no" => false,
                other => return Err(PolicyError::Value(n, other.to_string())),
            };
            match k.trim() {
                "require_verity" if require_verity.is_none() => require_verity = Some(v),
                "require_verity" => return Err(PolicyError::Repeated(n)),
                other => return Err(PolicyError::Unknown(n, other.to_string())),
            }
        }
        Ok(Policy {
            require_verity: require_verity.unwrap_or(Policy::DEFAULT.require_verity),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("{PATH} line {0}: not `key = value`")]
    Syntax(usize),
    #[error("{PATH} line {0}: {1:?} is neither yes nor no")]
    Value(usize, String),
    #[error("{PATH} line {0}: require_verity is set twice")]
    Repeated(usize),
    #[error("{PATH} line {0}: unknown key {1:?} (known: require_verity)")]
    Unknown(usize, String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let yes = Ok(Policy {
            require_verity: true,
        });
        let no = Ok(Policy {
            require_verity: false,
        });
        let cases: &[(&str, Result<Policy, PolicyError>)] = &[
            ("", yes.clone()),
            ("# nothing\n\n", yes.clone()),
            ("require_verity = yes\n", yes.clone()),
            ("  require_verity=no  \n", no.clone()),
            (
                "require_verity = 0\n",
                Err(PolicyError::Value(1, "0".into())),
            ),
            ("require_verity\n", Err(PolicyError::Syntax(1))),
            (
                "require_verity = no\nrequire_verity = yes\n",
                Err(PolicyError::Repeated(2)),
            ),
            (
                "requre_verity = no\n",
                Err(PolicyError::Unknown(1, "requre_verity".into())),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(&Policy::parse(text), want, "{text:?}");
        }
    }

    #[test]
    fn written_text_reads_back() {
        for p in [
            Policy::DEFAULT,
            Policy {
                require_verity: false,
            },
        ] {
            assert_eq!(Policy::parse(&p.to_text("test")), Ok(p));
        }
    }
}

//! The `tandem.verity.*` kernel parameters (docs/disk-layout.md, "Kernel
//! command line"): the one validator, which the initramfs uses when it
//! reads them, and the one formatter, which the agent and the image
//! builder use when they write them into the bootloader's environment.
//! What the formatter accepts, the initramfs boots; what it refuses, no
//! bootloader is ever given. Pure, std only.
//!
//! A slot's dm-verity hash tree follows its filesystem on the same
//! partition (`veritysetup format --hash-offset=N`). The initramfs builds
//! its table with sha256 and 4096-byte data and hash blocks; those are not
//! on the command line, so a bundle asking for anything else is refused by
//! [`kernel_args`] rather than booted with a table that cannot match.
//!
//! ```
//! use tandem_bootparams::{kernel_args, Verity};
//! let root = "4392712ba01368efdf14b05c76f9e4df0d53664630b5d48632ed17a137f39076";
//! let args = kernel_args(root, 8192, "", 4096, 4096, "sha256").unwrap();
//! assert_eq!(args, format!("tandem.verity.roothash={root} tandem.verity.hashoffset=8192 tandem.verity.salt=-"));
//! let back = Verity::parse_kernel_args(&args).unwrap().unwrap();
//! assert_eq!((back.root_hash(), back.hash_offset(), back.salt()), (root, 8192, None));
//! assert!(kernel_args(root, 8192, "", 1024, 4096, "sha256").is_err());
//! ```

/// The root hash parameter: 64 hex digits (sha256).
pub const ROOT_HASH: &str = "tandem.verity.roothash";
/// The hash offset parameter: bytes from the start of the partition to
/// the verity superblock, a positive multiple of [`BLOCK_SIZE`].
pub const HASH_OFFSET: &str = "tandem.verity.hashoffset";
/// The salt parameter: an even number of hex digits, or `-` for none.
pub const SALT: &str = "tandem.verity.salt";
/// The only data and hash block size the initramfs uses.
pub const BLOCK_SIZE: u32 = 4096;
/// The only hash algorithm the initramfs uses.
pub const HASH_ALGORITHM: &str = "sha256";
/// Hex digits of a sha256 root hash.
pub const ROOT_HASH_HEX_LEN: usize = 64;
/// The longest salt dm-verity takes, in bytes.
pub const MAX_SALT_BYTES: usize = 256;

/// A refused parameter or parameter set. `Display` names the parameter
/// and says what it must be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerityError {
    #[error("{key}={value:?}: {why}")]
    BadValue {
        key: &'static str,
        value: String,
        why: &'static str,
    },
    #[error("dm-verity {what} {value:?} is not supported: the initramfs uses {supported}")]
    Unsupported {
        what: &'static str,
        value: String,
        supported: &'static str,
    },
    #[error("{ROOT_HASH} is set but {HASH_OFFSET} is not: cannot find the hash tree")]
    NoHashOffset,
    #[error("{0} is set without {ROOT_HASH}: refusing to guess whether verity is wanted")]
    NoRootHash(&'static str),
}

fn bad(key: &'static str, value: &str, why: &'static str) -> VerityError {
    VerityError::BadValue {
        key,
        value: value.to_string(),
        why,
    }
}

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Validates a root hash; returns it in lowercase.
pub fn parse_root_hash(value: &str) -> Result<String, VerityError> {
    if value.len() != ROOT_HASH_HEX_LEN || !is_hex(value) {
        return Err(bad(ROOT_HASH, value, "must be 64 hex digits (sha256)"));
    }
    Ok(value.to_ascii_lowercase())
}

/// Validates a hash offset given as decimal text.
pub fn parse_hash_offset(value: &str) -> Result<u64, VerityError> {
    let why = "must be a decimal byte count";
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(HASH_OFFSET, value, why));
    }
    let n: u64 = value.parse().map_err(|_| bad(HASH_OFFSET, value, why))?;
    check_hash_offset(n).map_err(|_| {
        bad(
            HASH_OFFSET,
            value,
            "must be a positive multiple of 4096 (the filesystem is padded to 4 KiB)",
        )
    })
}

fn check_hash_offset(n: u64) -> Result<u64, VerityError> {
    if n == 0 || !n.is_multiple_of(u64::from(BLOCK_SIZE)) {
        return Err(bad(
            HASH_OFFSET,
            &n.to_string(),
            "must be a positive multiple of 4096 (the filesystem is padded to 4 KiB)",
        ));
    }
    Ok(n)
}

/// Validates a salt: `-` (or, as a formatter input, empty) for none,
/// otherwise an even number of hex digits, at most [`MAX_SALT_BYTES`]
/// bytes. Returns it in lowercase.
pub fn parse_salt(value: &str) -> Result<Option<String>, VerityError> {
    if value == "-" || value.is_empty() {
        return Ok(None);
    }
    if is_hex(value) && value.len().is_multiple_of(2) && value.len() <= 2 * MAX_SALT_BYTES {
        return Ok(Some(value.to_ascii_lowercase()));
    }
    Err(bad(
        SALT,
        value,
        "must be an even number of hex digits (at most 256 bytes) or -",
    ))
}

/// A validated set of dm-verity parameters for one slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verity {
    root_hash: String,
    hash_offset: u64,
    salt: Option<String>,
}

impl Verity {
    /// Validates the three values. `salt`: `None`, `""` or `"-"` for none.
    pub fn new(
        root_hash: &str,
        hash_offset: u64,
        salt: Option<&str>,
    ) -> Result<Verity, VerityError> {
        Ok(Verity {
            root_hash: parse_root_hash(root_hash)?,
            hash_offset: check_hash_offset(hash_offset)?,
            salt: parse_salt(salt.unwrap_or(""))?,
        })
    }

    /// From the values of the three parameters as found on a command line
    /// (`None`: absent). No root hash and nothing else is `Ok(None)`: no
    /// verity asked for. A root hash without an offset, or an offset or
    /// salt without a root hash, is an error: a half-given set must not
    /// boot unverified.
    pub fn from_params(
        root_hash: Option<&str>,
        hash_offset: Option<&str>,
        salt: Option<&str>,
    ) -> Result<Option<Verity>, VerityError> {
        let root_hash = root_hash.map(parse_root_hash).transpose()?;
        let hash_offset = hash_offset.map(parse_hash_offset).transpose()?;
        let salt = match salt {
            Some("") => return Err(bad(SALT, "", "must be hex digits or -")),
            Some(s) => Some(parse_salt(s)?),
            None => None,
        };
        match (root_hash, hash_offset) {
            (Some(root_hash), Some(hash_offset)) => Ok(Some(Verity {
                root_hash,
                hash_offset,
                salt: salt.flatten(),
            })),
            (Some(_), None) => Err(VerityError::NoHashOffset),
            (None, Some(_)) => Err(VerityError::NoRootHash(HASH_OFFSET)),
            (None, None) if salt.is_some() => Err(VerityError::NoRootHash(SALT)),
            (None, None) => Ok(None),
        }
    }

    /// The `tandem.verity.*` words of a command line: the last of a
    /// repeated parameter wins, words after `--` are not looked at, other
    /// words are ignored (a caller that refuses unknown `tandem.*` words
    /// does that itself).
    pub fn parse_kernel_args(cmdline: &str) -> Result<Option<Verity>, VerityError> {
        let (mut root_hash, mut hash_offset, mut salt) = (None, None, None);
        for w in cmdline.split_ascii_whitespace().take_while(|w| *w != "--") {
            match w.split_once('=') {
                Some((ROOT_HASH, v)) => root_hash = Some(v),
                Some((HASH_OFFSET, v)) => hash_offset = Some(v),
                Some((SALT, v)) => salt = Some(v),
                _ => {}
            }
        }
        Verity::from_params(root_hash, hash_offset, salt)
    }

    /// The root hash, 64 lowercase hex digits.
    pub fn root_hash(&self) -> &str {
        &self.root_hash
    }

    /// Where the verity superblock starts; the filesystem ends there.
    pub fn hash_offset(&self) -> u64 {
        self.hash_offset
    }

    /// The salt in lowercase hex, `None` for none.
    pub fn salt(&self) -> Option<&str> {
        self.salt.as_deref()
    }

    /// The three kernel parameters, space-separated, salt `-` when none.
    pub fn kernel_args(&self) -> String {
        format!(
            "{ROOT_HASH}={} {HASH_OFFSET}={} {SALT}={}",
            self.root_hash,
            self.hash_offset,
            self.salt.as_deref().unwrap_or("-")
        )
    }
}

/// The kernel parameters for a slot image's verity data as a bundle
/// manifest or `veritysetup format` describes it, or an error for anything
/// the initramfs would not boot: a root hash that is not 64 hex digits, an
/// offset that is zero or not a multiple of 4096, a salt that is not hex
/// (`""` or `"-"`: none), block sizes other than 4096, an algorithm other
/// than sha256.
pub fn kernel_args(
    root_hash: &str,
    hash_offset: u64,
    salt: &str,
    data_block_size: u32,
    hash_block_size: u32,
    hash_algorithm: &str,
) -> Result<String, VerityError> {
    for (what, size) in [
        ("data block size", data_block_size),
        ("hash block size", hash_block_size),
    ] {
        if size != BLOCK_SIZE {
            return Err(VerityError::Unsupported {
                what,
                value: size.to_string(),
                supported: "4096-byte blocks",
            });
        }
    }
    if hash_algorithm != HASH_ALGORITHM {
        return Err(VerityError::Unsupported {
            what: "hash algorithm",
            value: hash_algorithm.to_string(),
            supported: "sha256",
        });
    }
    Verity::new(root_hash, hash_offset, Some(salt)).map(|v| v.kernel_args())
}

#[cfg(test)]
mod tests;

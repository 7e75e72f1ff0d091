//! Ed25519 keys and the keyring of trusted public keys.
//!
//! Text formats, one key per line (`#` starts a comment line):
//! - public: `tandem-ed25519-pub <base64 32 bytes> [comment]`
//! - secret: `tandem-ed25519-secret <base64 32-byte seed> [comment]`
//!
//! A key id is the first 8 bytes of SHA-256 over the public key, in hex.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

const PUB_TAG: &str = "tandem-ed25519-pub";
const SECRET_TAG: &str = "tandem-ed25519-secret";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{origin}:{line}: {what}")]
    Parse {
        origin: String,
        line: usize,
        what: String,
    },
    #[error("{origin}: no key found")]
    Empty { origin: String },
    #[error("cannot read keyring {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("keyring {0} holds no *.pub keys; no bundle could be trusted")]
    EmptyKeyring(PathBuf),
    #[error("key {id} appears twice in the keyring ({first} and {second})")]
    Duplicate {
        id: KeyId,
        first: String,
        second: String,
    },
}

/// Short, stable identifier of a public key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(pub String);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub fn key_id(key: &VerifyingKey) -> KeyId {
    let d = Sha256::digest(key.as_bytes());
    KeyId(hex::encode(&d[..8]))
}

/// Generates a key pair from 32 bytes of seed (the caller brings randomness).
pub fn keypair_from_seed(seed: [u8; 32]) -> SigningKey {
    SigningKey::from_bytes(&seed)
}

pub fn format_public(key: &VerifyingKey, comment: &str) -> String {
    format!("{PUB_TAG} {} {comment}\n", B64.encode(key.as_bytes())).replace(" \n", "\n")
}

pub fn format_secret(key: &SigningKey, comment: &str) -> String {
    format!("{SECRET_TAG} {} {comment}\n", B64.encode(key.to_bytes())).replace(" \n", "\n")
}

fn parse_lines(text: &str, origin: &str, tag: &str) -> Result<Vec<[u8; 32]>, KeyError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |what: String| KeyError::Parse {
            origin: origin.to_string(),
            line: i + 1,
            what,
        };
        let mut words = line.split_ascii_whitespace();
        let t = words.next().unwrap_or_default();
        if t != tag {
            return Err(err(format!(
                "expected a line starting with {tag}, found {t:?}"
            )));
        }
        let b = B64
            .decode(words.next().unwrap_or_default())
            .map_err(|e| err(format!("bad base64: {e}")))?;
        let arr: [u8; 32] = b
            .try_into()
            .map_err(|b: Vec<u8>| err(format!("key is {} bytes, expected 32", b.len())))?;
        out.push(arr);
    }
    Ok(out)
}

pub fn parse_secret(text: &str, origin: &str) -> Result<SigningKey, KeyError> {
    parse_lines(text, origin, SECRET_TAG)?
        .first()
        .map(SigningKey::from_bytes)
        .ok_or_else(|| KeyError::Empty {
            origin: origin.to_string(),
        })
}

pub fn parse_public(text: &str, origin: &str) -> Result<Vec<VerifyingKey>, KeyError> {
    parse_lines(text, origin, PUB_TAG)?
        .iter()
        .enumerate()
        .map(|(i, b)| {
            VerifyingKey::from_bytes(b).map_err(|e| KeyError::Parse {
                origin: origin.to_string(),
                line: i + 1,
                what: format!("not a valid ed25519 public key: {e}"),
            })
        })
        .collect()
}

/// The trusted public keys, by key id.
#[derive(Debug, Default, Clone)]
pub struct Keyring {
    keys: BTreeMap<KeyId, (VerifyingKey, String)>,
}

impl Keyring {
    pub fn add(&mut self, key: VerifyingKey, origin: &str) -> Result<(), KeyError> {
        let id = key_id(&key);
        if let Some((_, first)) = self.keys.get(&id) {
            return Err(KeyError::Duplicate {
                id,
                first: first.clone(),
                second: origin.to_string(),
            });
        }
        self.keys.insert(id, (key, origin.to_string()));
        Ok(())
    }

    pub fn get(&self, id: &KeyId) -> Option<&VerifyingKey> {
        self.keys.get(id).map(|(k, _)| k)
    }

    pub fn ids(&self) -> impl Iterator<Item = &KeyId> {
        self.keys.keys()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Loads every `*.pub` file of a directory, in name order.
    pub fn load_dir(dir: &Path) -> Result<Keyring, KeyError> {
        let io = |source| KeyError::Io {
            path: dir.to_path_buf(),
            source,
        };
        let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "pub"))
            .collect();
        names.sort();
        let mut ring = Keyring::default();
        for path in names {
            let text = std::fs::read_to_string(&path).map_err(|source| KeyError::Io {
                path: path.clone(),
                source,
            })?;
            let origin = path.display().to_string();
            for key in parse_public(&text, &origin)? {
                ring.add(key, &origin)?;
            }
        }
        if ring.is_empty() {
            return Err(KeyError::EmptyKeyring(dir.to_path_buf()));
        }
        Ok(ring)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trip() {
        let sk = keypair_from_seed([7; 32]);
        let s = format_secret(&sk, "test");
        assert_eq!(parse_secret(&s, "x").unwrap().to_bytes(), sk.to_bytes());
        let p = format_public(&sk.verifying_key(), "");
        assert!(!p.contains(" \n"));
        assert_eq!(parse_public(&p, "x").unwrap(), vec![sk.verifying_key()]);
        assert_eq!(key_id(&sk.verifying_key()).0.len(), 16);
    }

    #[test]
    fn parse_errors_name_line() {
        let e = parse_public("# c\n\ntandem-ed25519-pub AAAA\n", "ring/x.pub").unwrap_err();
        assert!(e.to_string().starts_with("ring/x.pub:3:"), "{e}");
        let e = parse_public("ssh-ed25519 AAAA", "k").unwrap_err();
        assert!(e.to_string().contains("expected a line"), "{e}");
        assert!(parse_secret("", "k").is_err());
    }

    #[test]
    fn duplicate_key_refused() {
        let k = keypair_from_seed([1; 32]).verifying_key();
        let mut r = Keyring::default();
        r.add(k, "a").unwrap();
        assert!(matches!(r.add(k, "b"), Err(KeyError::Duplicate { .. })));
    }
}

//! Manifest signatures: the `signatures.json` member and threshold checks.

use std::collections::BTreeSet;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer, SigningKey};
use serde::{Deserialize, Serialize};

use super::keys::{key_id, KeyId, Keyring};

/// Domain separation: a signature over a manifest can mean nothing else.
const CONTEXT: &[u8] = b"tandem-manifest-v1\0";
pub const MAX_SIGNATURES: usize = 16;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("signature list is not valid JSON: {0}")]
    Syntax(String),
    #[error("bundle carries no signature")]
    Missing,
    #[error("bundle carries {0} signatures; at most {MAX_SIGNATURES} are allowed")]
    TooMany(usize),
    #[error("signature {index} uses algorithm {algorithm:?}; only ed25519 is supported")]
    Algorithm { index: usize, algorithm: String },
    #[error("signature {index} is malformed (expected 64 bytes of base64)")]
    Malformed { index: usize },
    #[error(
        "bad signature from trusted key {key_id}: the manifest was modified after signing or the signature is corrupt"
    )]
    Bad { key_id: String },
    #[error("bundle is signed only by unknown keys ({}); add the signer's .pub to the keyring if it is trusted", .0.join(", "))]
    UnknownKey(Vec<String>),
    #[error(
        "bundle has {valid} valid signature(s) from trusted keys; the keyring requires {threshold}"
    )]
    BelowThreshold { valid: usize, threshold: usize },
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureList {
    pub signatures: Vec<SignatureEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureEntry {
    pub key_id: String,
    pub algorithm: String,
    pub signature: String,
}

impl SignatureList {
    pub fn parse(bytes: &[u8]) -> Result<SignatureList, SignatureError> {
        serde_json::from_slice(bytes).map_err(|e| SignatureError::Syntax(e.to_string()))
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("signatures serialize");
        v.push(b'\n');
        v
    }

    /// Adds (or replaces) the signature of `key` over `manifest`.
    pub fn sign(&mut self, manifest: &[u8], key: &SigningKey) {
        let id = key_id(&key.verifying_key()).0;
        let sig = key.sign(&message(manifest));
        self.signatures.retain(|s| s.key_id != id);
        self.signatures.push(SignatureEntry {
            key_id: id,
            algorithm: "ed25519".into(),
            signature: B64.encode(sig.to_bytes()),
        });
    }

    /// Checks the signatures over `manifest` against the keyring. Returns the
    /// ids of the trusted keys whose signatures are valid.
    pub fn verify(
        &self,
        manifest: &[u8],
        keyring: &Keyring,
        threshold: usize,
    ) -> Result<Vec<KeyId>, SignatureError> {
        let sigs = &self.signatures;
        if sigs.is_empty() {
            return Err(SignatureError::Missing);
        }
        if sigs.len() > MAX_SIGNATURES {
            return Err(SignatureError::TooMany(sigs.len()));
        }
        let msg = message(manifest);
        let mut valid = BTreeSet::new();
        let mut unknown = Vec::new();
        for (index, s) in sigs.iter().enumerate() {
            if s.algorithm != "ed25519" {
                return Err(SignatureError::Algorithm {
                    index,
                    algorithm: s.algorithm.clone(),
                });
            }
            let bytes: [u8; 64] = B64
                .decode(&s.signature)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or(SignatureError::Malformed { index })?;
            let id = KeyId(s.key_id.clone());
            let Some(key) = keyring.get(&id) else {
                unknown.push(s.key_id.clone());
                continue;
            };
            // A trusted key's signature that does not verify refuses the
            // bundle even when other trusted signatures do: that key's
            // holder signed some other manifest, so the bytes were changed
            // after signing or the list was edited, and a bundle whose
            // trusted signers disagree is not one to install. Ignoring it
            // would also let an attacker pad a list with junk "from" keys
            // the device trusts without anyone noticing.
            key.verify_strict(&msg, &Signature::from_bytes(&bytes))
                .map_err(|_| SignatureError::Bad {
                    key_id: s.key_id.clone(),
                })?;
            // A set: the same key listed twice counts once toward the
            // threshold.
            valid.insert(id);
        }
        let threshold = threshold.max(1);
        if valid.len() >= threshold {
            Ok(valid.into_iter().collect())
        } else if valid.is_empty() && !unknown.is_empty() {
            Err(SignatureError::UnknownKey(unknown))
        } else {
            Err(SignatureError::BelowThreshold {
                valid: valid.len(),
                threshold,
            })
        }
    }
}

fn message(manifest: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(CONTEXT.len() + manifest.len());
    m.extend_from_slice(CONTEXT);
    m.extend_from_slice(manifest);
    m
}

#[cfg(test)]
mod tests {
    use super::super::keys::keypair_from_seed;
    use super::*;

    fn ring(seeds: &[u8]) -> Keyring {
        let mut r = Keyring::default();
        for &s in seeds {
            r.add(keypair_from_seed([s; 32]).verifying_key(), "t")
                .unwrap();
        }
        r
    }

    fn signed(manifest: &[u8], seeds: &[u8]) -> SignatureList {
        let mut l = SignatureList::default();
        for &s in seeds {
            l.sign(manifest, &keypair_from_seed([s; 32]));
        }
        l
    }

    #[test]
    fn threshold_table() {
        let m = b"manifest";
        type Want = Result<usize, fn(&SignatureError) -> bool>;
        let cases: &[(&[u8], &[u8], usize, Want)] = &[
            (&[1], &[1], 1, Ok(1)),
            (&[1, 2], &[1, 2], 2, Ok(2)),
            (&[1, 2], &[1, 2, 3], 1, Ok(2)),
            (&[1, 9], &[1, 2], 1, Ok(1)),
            (
                &[1, 9],
                &[1, 2],
                2,
                Err(|e| {
                    matches!(
                        e,
                        SignatureError::BelowThreshold {
                            valid: 1,
                            threshold: 2
                        }
                    )
                }),
            ),
            (
                &[9],
                &[1],
                1,
                Err(|e| matches!(e, SignatureError::UnknownKey(_))),
            ),
            (&[], &[1], 1, Err(|e| *e == SignatureError::Missing)),
            (
                &[1, 1],
                &[1],
                2,
                Err(|e| matches!(e, SignatureError::BelowThreshold { valid: 1, .. })),
            ),
        ];
        for (i, (signers, trusted, threshold, want)) in cases.iter().enumerate() {
            let got = signed(m, signers).verify(m, &ring(trusted), *threshold);
            match (want, got) {
                (Ok(n), Ok(ids)) => assert_eq!(ids.len(), *n, "case {i}"),
                (Err(check), Err(e)) => assert!(check(&e), "case {i}: {e}"),
                (w, g) => panic!("case {i}: want {:?} got {g:?}", w.is_ok()),
            }
        }
    }

    #[test]
    fn tampered_manifest_is_bad_signature() {
        let l = signed(b"manifest", &[1]);
        let e = l.verify(b"manifesT", &ring(&[1]), 1).unwrap_err();
        assert!(matches!(e, SignatureError::Bad { .. }));
    }

    #[test]
    fn malformed_entries() {
        let mut l = signed(b"m", &[1]);
        l.signatures[0].signature = "AAAA".into();
        assert_eq!(
            l.verify(b"m", &ring(&[1]), 1),
            Err(SignatureError::Malformed { index: 0 })
        );
        let mut l = signed(b"m", &[1]);
        l.signatures[0].algorithm = "rsa".into();
        assert!(matches!(
            l.verify(b"m", &ring(&[1]), 1),
            Err(SignatureError::Algorithm { .. })
        ));
    }

    #[test]
    fn domain_separated() {
        let sk = keypair_from_seed([1; 32]);
        let raw = sk.sign(b"m");
        let l = SignatureList {
            signatures: vec![SignatureEntry {
                key_id: key_id(&sk.verifying_key()).0,
                algorithm: "ed25519".into(),
                signature: B64.encode(raw.to_bytes()),
            }],
        };
        assert!(l.verify(b"m", &ring(&[1]), 1).is_err());
    }
}

//! Public keys as TUF metadata lists them, signature checks, and the
//! threshold count.
//!
//! A key is known by the key id its metadata gives it: the client never
//! recomputes key ids (the specification leaves the id's hash open, and
//! repositories differ). A threshold counts distinct keys: a key listed
//! twice under two ids, or a signature repeated, counts once.
//!
//! Schemes: `ed25519` (hex public key), `ecdsa-sha2-nistp256` and
//! `ecdsa-sha2-nistp384` (PEM SubjectPublicKeyInfo or a hex SEC1 point, DER
//! signatures), `rsassa-pss-sha256/384/512` and `rsa-pkcs1v15-sha256/384/512`
//! (PEM SubjectPublicKeyInfo). A key of another scheme is kept (metadata
//! that lists one is valid) but none of its signatures is valid.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A public key entry of `keys` in root or in a delegation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Key {
    pub keytype: String,
    pub scheme: String,
    pub keyval: KeyVal,
    /// Fields this client does not know, kept as they were.
    #[serde(flatten)]
    pub unknown: Map<String, Value>,
}

/// `keyval`: the public half (and whatever else a repository puts there).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyVal {
    pub public: String,
    #[serde(flatten)]
    pub unknown: Map<String, Value>,
}

/// One entry of a metadata file's `signatures`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    pub keyid: String,
    /// Hex-encoded signature bytes.
    pub sig: String,
    #[serde(flatten)]
    pub unknown: Map<String, Value>,
}

/// `keyids` and `threshold` of a role.
pub trait RoleKeys {
    fn keyids(&self) -> &[String];
    fn threshold(&self) -> u64;
}

impl Key {
    /// An ed25519 key from its 32 public bytes (for publishers and tests).
    pub fn ed25519(public: &[u8; 32]) -> Key {
        Key {
            keytype: "ed25519".into(),
            scheme: "ed25519".into(),
            keyval: KeyVal {
                public: hex::encode(public),
                unknown: Map::new(),
            },
            unknown: Map::new(),
        }
    }

    /// The conventional key id (python-tuf's and go-tuf's): the hex
    /// SHA-256 of the key's canonical JSON. For publishers naming a new
    /// key; the client never recomputes ids.
    pub fn compute_keyid(&self) -> String {
        use sha2::Digest;
        let value = serde_json::to_value(self).expect("a key serializes");
        let canonical = super::canonical::to_bytes(&value).unwrap_or_default();
        hex::encode(sha2::Sha256::digest(canonical))
    }

    /// Whether `sig` (hex) is this key's signature of `msg`. An unknown
    /// scheme, a malformed key or signature is `false`, not an error: one
    /// bad signature must not make metadata with enough good ones invalid.
    pub fn verify(&self, msg: &[u8], sig_hex: &str) -> bool {
        let Ok(sig) = hex::decode(sig_hex) else {
            return false;
        };
        self.verify_bytes(msg, &sig).unwrap_or(false)
    }

    fn verify_bytes(&self, msg: &[u8], sig: &[u8]) -> Option<bool> {
        use ring::signature as rs;
        let public = self.keyval.public.trim();
        let (alg, key): (&dyn rs::VerificationAlgorithm, Vec<u8>) =
            match (self.keytype.as_str(), self.scheme.as_str()) {
                ("ed25519", "ed25519") => return Some(ed25519(public, msg, sig)),
                ("ecdsa" | "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp256") => {
                    (&rs::ECDSA_P256_SHA256_ASN1, ec_point(public)?)
                }
                ("ecdsa" | "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp384") => {
                    (&rs::ECDSA_P384_SHA384_ASN1, ec_point(public)?)
                }
                ("rsa", scheme) => {
                    let alg: &dyn rs::VerificationAlgorithm = match scheme {
                        "rsassa-pss-sha256" => &rs::RSA_PSS_2048_8192_SHA256,
                        "rsassa-pss-sha384" => &rs::RSA_PSS_2048_8192_SHA384,
                        "rsassa-pss-sha512" => &rs::RSA_PSS_2048_8192_SHA512,
                        "rsa-pkcs1v15-sha256" => &rs::RSA_PKCS1_2048_8192_SHA256,
                        "rsa-pkcs1v15-sha384" => &rs::RSA_PKCS1_2048_8192_SHA384,
                        "rsa-pkcs1v15-sha512" => &rs::RSA_PKCS1_2048_8192_SHA512,
                        _ => return None,
                    };
                    (alg, spki_bits(&pem(public)?)?)
                }
                _ => return None,
            };
        Some(
            rs::UnparsedPublicKey::new(alg, key)
                .verify(msg, sig)
                .is_ok(),
        )
    }
}

fn ed25519(public: &str, msg: &[u8], sig: &[u8]) -> bool {
    let Some(public) = hex::decode(public)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
    else {
        return false;
    };
    let Ok(sig) = <[u8; 64]>::try_from(sig) else {
        return false;
    };
    let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(&public) else {
        return false;
    };
    key.verify_strict(msg, &ed25519_dalek::Signature::from_bytes(&sig))
        .is_ok()
}

/// An EC public point: from a PEM SubjectPublicKeyInfo, or hex.
fn ec_point(public: &str) -> Option<Vec<u8>> {
    if public.starts_with("-----BEGIN") {
        spki_bits(&pem(public)?)
    } else {
        hex::decode(public).ok()
    }
}

/// The DER body of a `-----BEGIN PUBLIC KEY-----` block.
fn pem(text: &str) -> Option<Vec<u8>> {
    let body = text
        .strip_prefix("-----BEGIN PUBLIC KEY-----")?
        .trim_end()
        .strip_suffix("-----END PUBLIC KEY-----")?;
    let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

/// One DER element at the start of `der`: (tag, contents, rest).
fn der(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |a, &b| (a << 8) | b as usize);
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The key bits of a SubjectPublicKeyInfo: `SEQUENCE { SEQUENCE algorithm,
/// BIT STRING key }`: an EC point, or an RSAPublicKey.
fn spki_bits(spki: &[u8]) -> Option<Vec<u8>> {
    let (0x30, body, _) = der(spki)? else {
        return None;
    };
    let (0x30, _, rest) = der(body)? else {
        return None;
    };
    let (0x03, bits, _) = der(rest)? else {
        return None;
    };
    let (&0, key) = bits.split_first()? else {
        return None;
    };
    Some(key.to_vec())
}

/// How many distinct keys of `role` made a valid signature of `msg`.
/// Key ids not in the role, keys not in `keys`, and invalid signatures
/// count nothing; a key counts once however often it is listed or signs.
pub fn count_valid(
    role: &dyn RoleKeys,
    keys: &BTreeMap<String, Key>,
    signatures: &[Signature],
    msg: &[u8],
) -> usize {
    let mut seen_ids = BTreeSet::new();
    let mut seen_keys = BTreeSet::new();
    for keyid in role.keyids() {
        if !seen_ids.insert(keyid.as_str()) {
            continue;
        }
        let Some(key) = keys.get(keyid) else {
            continue;
        };
        let valid = signatures
            .iter()
            .filter(|s| &s.keyid == keyid)
            .any(|s| key.verify(msg, &s.sig));
        if valid {
            seen_keys.insert((key.keytype.as_str(), key.keyval.public.trim()));
        }
    }
    seen_keys.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    struct R(Vec<String>);
    impl RoleKeys for R {
        fn keyids(&self) -> &[String] {
            &self.0
        }
        fn threshold(&self) -> u64 {
            1
        }
    }

    fn signer(seed: u8) -> (SigningKey, Key) {
        let sk = SigningKey::from_bytes(&[seed; 32]);
        let key = Key::ed25519(sk.verifying_key().as_bytes());
        (sk, key)
    }

    fn sig(sk: &SigningKey, id: &str, msg: &[u8]) -> Signature {
        Signature {
            keyid: id.into(),
            sig: hex::encode(sk.sign(msg).to_bytes()),
            unknown: Map::new(),
        }
    }

    #[test]
    fn threshold_counts_distinct_keys() {
        let msg = b"signed bytes";
        let (a, ka) = signer(1);
        let (b, kb) = signer(2);
        let keys: BTreeMap<String, Key> = [
            ("a".to_string(), ka.clone()),
            ("a2".to_string(), ka), // the same key under a second id
            ("b".to_string(), kb),
        ]
        .into();
        let ids = |v: &[&str]| R(v.iter().map(|s| s.to_string()).collect());
        let cases: Vec<(R, Vec<Signature>, usize)> = vec![
            (
                ids(&["a", "b"]),
                vec![sig(&a, "a", msg), sig(&b, "b", msg)],
                2,
            ),
            // a repeated signature counts once
            (
                ids(&["a", "b"]),
                vec![sig(&a, "a", msg), sig(&a, "a", msg)],
                1,
            ),
            // a repeated key id in the role counts once
            (ids(&["a", "a"]), vec![sig(&a, "a", msg)], 1),
            // one key under two ids counts once
            (
                ids(&["a", "a2"]),
                vec![sig(&a, "a", msg), sig(&a, "a2", msg)],
                1,
            ),
            // a signature by a key outside the role counts nothing
            (ids(&["a"]), vec![sig(&b, "b", msg)], 0),
            // a wrong signature under the right id counts nothing
            (ids(&["b"]), vec![sig(&a, "b", msg)], 0),
            // an id without a key counts nothing
            (ids(&["c"]), vec![sig(&a, "c", msg)], 0),
        ];
        for (i, (role, sigs, want)) in cases.into_iter().enumerate() {
            assert_eq!(count_valid(&role, &keys, &sigs, msg), want, "case {i}");
        }
    }

    #[test]
    fn key_ids_as_python_tuf_computes_them() {
        let key = Key::ed25519(&[0xab; 32]);
        assert_eq!(
            key.compute_keyid(),
            "05584cc3bfabb85de26cb80479f075fa802c97add45fd61feebaa0423da7f57a"
        );
    }

    #[test]
    fn bad_signatures_are_false_not_errors() {
        let (_, k) = signer(3);
        assert!(!k.verify(b"m", ""));
        assert!(!k.verify(b"m", "zz"));
        assert!(!k.verify(b"m", &"00".repeat(64)));
        let mut unknown = k.clone();
        unknown.scheme = "pgp".into();
        assert!(!unknown.verify(b"m", &"00".repeat(64)));
    }
}

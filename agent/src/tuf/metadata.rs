//! TUF metadata as serde types: the envelope (`signed` + `signatures`),
//! root, timestamp, snapshot and targets (with delegations).
//!
//! Signatures are checked over the canonical form of the raw `signed`
//! value as it arrived, never over these structs serialized again: a field
//! this client does not know is still covered (each struct also keeps such
//! fields in `unknown`, so a publisher that reads and writes them loses
//! nothing). [`signing_bytes`] gives the bytes a publisher signs.

use std::collections::{BTreeMap, BTreeSet};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::Digest;

use super::keys::{count_valid, Key, RoleKeys, Signature};
use super::{canonical, TufError};

/// The top-level role names.
pub const ROOT: &str = "root";
pub const TIMESTAMP: &str = "timestamp";
pub const SNAPSHOT: &str = "snapshot";
pub const TARGETS: &str = "targets";
/// The specification major version this client implements.
pub const SPEC_MAJOR: &str = "1";

/// A metadata file: what is signed and its signatures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub signed: Value,
    pub signatures: Vec<Signature>,
    #[serde(flatten)]
    pub unknown: Map<String, Value>,
}

/// `keyids` and `threshold` of a top-level role in root.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Role {
    pub keyids: Vec<String>,
    pub threshold: u64,
    #[serde(flatten)]
    pub unknown: Map<String, Value>,
}

impl RoleKeys for Role {
    fn keyids(&self) -> &[String] {
        &self.keyids
    }
    fn threshold(&self) -> u64 {
        self.threshold
    }
}

/// root.json: the keys of every top-level role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Root {
    #[serde(rename = "_type")]
    pub type_: String,
    pub spec_version: String,
    #[serde(default)]
    pub consistent_snapshot: bool,
    pub version: u64,
    /// `YYYY-MM-DDTHH:MM:SSZ`.
    pub expires: String,
    pub keys: BTreeMap<String, Key>,
    pub roles: BTreeMap<String, Role>,
    #[serde(flatten)]
    pub unknown: Map<String, Value>,
}

/// What timestamp says of snapshot.json, or snapshot of a targets role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetaFile {
    pub version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hashes: Option<BTreeMap<String, String>>,
    #[serde(flatten)]
    pub unknown: Map<String, Value>,
}

/// timestamp.json: the current snapshot.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timestamp {
    #[serde(rename = "_type")]
    pub type_: String,
    pub spec_version: String,
    pub version: u64,
    pub expires: String,
    pub meta: BTreeMap<String, MetaFile>,
    #[serde(flatten)]
    pub unknown: Map<String, Value>,
}

/// snapshot.json: the version of every targets role (`NAME.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    #[serde(rename = "_type")]
    pub type_: String,
    pub spec_version: String,
    pub version: u64,
    pub expires: String,
    pub meta: BTreeMap<String, MetaFile>,
    #[serde(flatten)]
    pub unknown: Map<String, Value>,
}

/// A target: its length, hashes and the repository's custom metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetFile {
    pub length: u64,
    pub hashes: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub custom: Value,
    #[serde(flatten)]
    pub unknown: Map<String, Value>,
}

/// targets.json or a delegated targets role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Targets {
    #[serde(rename = "_type")]
    pub type_: String,
    pub spec_version: String,
    pub version: u64,
    pub expires: String,
    pub targets: BTreeMap<String, TargetFile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegations: Option<Delegations>,
    #[serde(flatten)]
    pub unknown: Map<String, Value>,
}

/// The roles a targets role delegates to, in order of trust.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delegations {
    pub keys: BTreeMap<String, Key>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<DelegatedRole>>,
    /// Hash-bin delegation (TAP 15), instead of `roles`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub succinct_roles: Option<SuccinctRoles>,
    #[serde(flatten)]
    pub unknown: Map<String, Value>,
}

/// One delegated role: its keys, and which target paths it may sign.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DelegatedRole {
    pub name: String,
    pub keyids: Vec<String>,
    pub threshold: u64,
    #[serde(default)]
    pub terminating: bool,
    /// Glob patterns (`*` does not cross `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<String>>,
    /// Hex prefixes of the SHA-256 of the target path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_hash_prefixes: Option<Vec<String>>,
    #[serde(flatten)]
    pub unknown: Map<String, Value>,
}

impl RoleKeys for DelegatedRole {
    fn keyids(&self) -> &[String] {
        &self.keyids
    }
    fn threshold(&self) -> u64 {
        self.threshold
    }
}

/// Hash bins: `2^bit_length` roles `NAME_PREFIX-XX…`, one per prefix of
/// the target path's SHA-256, all with the same keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuccinctRoles {
    pub keyids: Vec<String>,
    pub threshold: u64,
    pub bit_length: u32,
    pub name_prefix: String,
    #[serde(flatten)]
    pub unknown: Map<String, Value>,
}

impl RoleKeys for SuccinctRoles {
    fn keyids(&self) -> &[String] {
        &self.keyids
    }
    fn threshold(&self) -> u64 {
        self.threshold
    }
}

impl SuccinctRoles {
    /// `bit_length` as used: at most 32 (metadata with more is refused at
    /// parse time; this keeps a hand-made value from overflowing).
    fn bits(&self) -> u32 {
        self.bit_length.min(32)
    }

    /// The highest bin number and the hex width of bin names.
    fn bins(&self) -> (u64, usize) {
        let max = (1u64 << self.bits()) - 1;
        (max, format!("{max:x}").len())
    }

    /// The bin role responsible for `target_path`.
    pub fn role_for(&self, target_path: &str) -> String {
        let digest = sha2::Sha256::digest(target_path.as_bytes());
        let first = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
        let bin = u64::from(first) >> (32 - self.bits());
        let (_, width) = self.bins();
        format!("{}-{bin:0width$x}", self.name_prefix)
    }

    /// Whether `name` is one of the bins.
    pub fn is_bin(&self, name: &str) -> bool {
        let Some(suffix) = name
            .strip_prefix(self.name_prefix.as_str())
            .and_then(|s| s.strip_prefix('-'))
        else {
            return false;
        };
        let (max, width) = self.bins();
        suffix.len() == width && u64::from_str_radix(suffix, 16).is_ok_and(|n| n <= max)
    }
}

/// What every signed part has.
pub trait Signed: Serialize + DeserializeOwned {
    const TYPE: &'static str;
    fn type_(&self) -> &str;
    fn spec_version(&self) -> &str;
    fn version(&self) -> u64;
    fn expires(&self) -> &str;
    /// Checks of this role's own fields.
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }
    /// `expires` as Unix seconds (validated at parse time).
    fn expires_unix(&self) -> u64 {
        crate::timefmt::parse_rfc3339(self.expires()).unwrap_or(0)
    }
    fn is_expired(&self, now: u64) -> bool {
        now >= self.expires_unix()
    }
}

macro_rules! signed {
    ($t:ty, $name:expr) => {
        impl Signed for $t {
            const TYPE: &'static str = $name;
            fn type_(&self) -> &str {
                &self.type_
            }
            fn spec_version(&self) -> &str {
                &self.spec_version
            }
            fn version(&self) -> u64 {
                self.version
            }
            fn expires(&self) -> &str {
                &self.expires
            }
            fn validate(&self) -> Result<(), String> {
                self.check()
            }
        }
    };
}
signed!(Root, ROOT);
signed!(Timestamp, TIMESTAMP);
signed!(Snapshot, SNAPSHOT);
signed!(Targets, TARGETS);

fn unique_keyids(what: &str, ids: &[String], threshold: u64) -> Result<(), String> {
    if ids.iter().collect::<BTreeSet<_>>().len() != ids.len() {
        return Err(format!("{what}: a key id is listed twice"));
    }
    if threshold < 1 {
        return Err(format!("{what}: threshold below 1"));
    }
    Ok(())
}

fn check_meta(meta: &MetaFile, name: &str) -> Result<(), String> {
    if meta.version < 1 {
        return Err(format!("{name}: version below 1"));
    }
    if meta.length == Some(0) {
        return Err(format!("{name}: length 0"));
    }
    if meta.hashes.as_ref().is_some_and(|h| h.is_empty()) {
        return Err(format!("{name}: empty hashes"));
    }
    Ok(())
}

impl Root {
    fn check(&self) -> Result<(), String> {
        let names: BTreeSet<&str> = self.roles.keys().map(String::as_str).collect();
        if names != BTreeSet::from([ROOT, TIMESTAMP, SNAPSHOT, TARGETS]) {
            return Err("roles must be exactly root, timestamp, snapshot and targets".into());
        }
        for (name, role) in &self.roles {
            unique_keyids(name, &role.keyids, role.threshold)?;
        }
        Ok(())
    }

    /// The role `name` (one of the four top-level roles).
    pub fn role(&self, name: &str) -> Option<&Role> {
        self.roles.get(name)
    }
}

impl Timestamp {
    fn check(&self) -> Result<(), String> {
        if self.meta.len() != 1 || !self.meta.contains_key("snapshot.json") {
            return Err("meta must list snapshot.json only".into());
        }
        self.meta
            .iter()
            .try_for_each(|(name, meta)| check_meta(meta, name))
    }

    /// What this timestamp says of snapshot.json.
    pub fn snapshot_meta(&self) -> &MetaFile {
        &self.meta["snapshot.json"]
    }
}

impl Snapshot {
    fn check(&self) -> Result<(), String> {
        self.meta
            .iter()
            .try_for_each(|(name, meta)| check_meta(meta, name))
    }
}

impl Targets {
    fn check(&self) -> Result<(), String> {
        for (path, t) in &self.targets {
            if t.hashes.is_empty() {
                return Err(format!("target {path:?}: no hashes"));
            }
        }
        let Some(d) = &self.delegations else {
            return Ok(());
        };
        match (&d.roles, &d.succinct_roles) {
            (Some(roles), None) => {
                let mut names = BTreeSet::new();
                for r in roles {
                    if [ROOT, TIMESTAMP, SNAPSHOT, TARGETS].contains(&r.name.as_str()) {
                        return Err(format!("delegated role name {:?} is reserved", r.name));
                    }
                    if !names.insert(r.name.as_str()) {
                        return Err(format!("delegated role {:?} listed twice", r.name));
                    }
                    if r.paths.is_some() && r.path_hash_prefixes.is_some() {
                        return Err(format!(
                            "delegated role {:?}: both paths and path_hash_prefixes",
                            r.name
                        ));
                    }
                    unique_keyids(&r.name, &r.keyids, r.threshold)?;
                }
                Ok(())
            }
            (None, Some(s)) => {
                if !(1..=32).contains(&s.bit_length) {
                    return Err("succinct_roles: bit_length must be 1 to 32".into());
                }
                unique_keyids("succinct_roles", &s.keyids, s.threshold)
            }
            _ => Err("delegations need exactly one of roles and succinct_roles".into()),
        }
    }
}

/// Metadata that parsed, with its raw signed value and signatures (not
/// yet verified: see [`verify`]).
#[derive(Debug, Clone)]
pub struct Parsed<T> {
    pub signed: T,
    pub envelope: Envelope,
}

/// Parses `bytes` as metadata of type `T` for role `role`: the envelope,
/// no key id signing twice, the type, spec version, version and expiry
/// format, and `T`'s own rules.
pub fn parse<T: Signed>(role: &str, bytes: &[u8]) -> Result<Parsed<T>, TufError> {
    let envelope: Envelope =
        serde_json::from_slice(bytes).map_err(|e| TufError::malformed(role, e))?;
    let mut ids = BTreeSet::new();
    if let Some(dup) = envelope.signatures.iter().find(|s| !ids.insert(&s.keyid)) {
        return Err(TufError::malformed(
            role,
            format!("key id {} signs twice", dup.keyid),
        ));
    }
    let signed: T = serde_json::from_value(envelope.signed.clone())
        .map_err(|e| TufError::malformed(role, e))?;
    if signed.type_() != T::TYPE {
        return Err(TufError::malformed(
            role,
            format!("_type {:?}, expected {:?}", signed.type_(), T::TYPE),
        ));
    }
    let spec: Vec<&str> = signed.spec_version().split('.').collect();
    let numeric = spec
        .iter()
        .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if !(2..=3).contains(&spec.len()) || !numeric || spec[0] != SPEC_MAJOR {
        return Err(TufError::malformed(
            role,
            format!("unsupported spec_version {:?}", signed.spec_version()),
        ));
    }
    if signed.version() < 1 {
        return Err(TufError::malformed(role, "version below 1"));
    }
    if crate::timefmt::parse_rfc3339(signed.expires()).is_none() {
        return Err(TufError::malformed(
            role,
            format!("expires {:?} is not YYYY-MM-DDTHH:MM:SSZ", signed.expires()),
        ));
    }
    signed
        .validate()
        .map_err(|e| TufError::malformed(role, e))?;
    Ok(Parsed { signed, envelope })
}

/// Checks that `parsed` is signed by at least `role.threshold()` distinct
/// keys of `role`, over the canonical form of its raw signed value.
pub fn verify<T: Signed>(
    role_name: &str,
    parsed: &Parsed<T>,
    role: &dyn RoleKeys,
    keys: &BTreeMap<String, Key>,
) -> Result<(), TufError> {
    let msg = canonical::to_bytes(&parsed.envelope.signed)
        .map_err(|e| TufError::malformed(role_name, e))?;
    let valid = count_valid(role, keys, &parsed.envelope.signatures, &msg);
    if (valid as u64) < role.threshold() {
        return Err(TufError::Threshold {
            role: role_name.to_string(),
            version: parsed.signed.version(),
            valid,
            threshold: role.threshold(),
        });
    }
    Ok(())
}

/// The canonical bytes of a signed part: what a publisher signs.
pub fn signing_bytes<T: Serialize>(signed: &T) -> Result<Vec<u8>, TufError> {
    let value = serde_json::to_value(signed).map_err(|e| TufError::malformed("signed", e))?;
    canonical::to_bytes(&value).map_err(|e| TufError::malformed("signed", e))
}

/// Checks `data` against a length and hashes: the length if given, and
/// every hash listed (an unknown algorithm fails: it cannot be checked).
pub fn check_length_and_hashes(
    what: &str,
    data: &[u8],
    length: Option<u64>,
    hashes: Option<&BTreeMap<String, String>>,
) -> Result<(), TufError> {
    let mismatch = |reason: String| TufError::Mismatch {
        what: what.to_string(),
        reason,
    };
    if let Some(len) = length {
        if data.len() as u64 != len {
            return Err(mismatch(format!("{} bytes, expected {len}", data.len())));
        }
    }
    for (alg, want) in hashes.into_iter().flatten() {
        let got = match alg.as_str() {
            "sha224" => hex::encode(sha2::Sha224::digest(data)),
            "sha256" => hex::encode(sha2::Sha256::digest(data)),
            "sha384" => hex::encode(sha2::Sha384::digest(data)),
            "sha512" => hex::encode(sha2::Sha512::digest(data)),
            _ => return Err(mismatch(format!("unsupported hash algorithm {alg:?}"))),
        };
        if !got.eq_ignore_ascii_case(want) {
            return Err(mismatch(format!("{alg} {got}, expected {want}")));
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "metadata_tests.rs"]
mod tests;

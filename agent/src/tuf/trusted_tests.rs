//! Table tests of the trusted set's update rules (trusted.rs): rotation,
//! rollback, freeze and mix-and-match, each refused with its own error.

use std::collections::BTreeMap;

use ed25519_dalek::{Signer, SigningKey};
use serde::Serialize;
use serde_json::Map;
use sha2::Digest;

use super::*;
use crate::tuf::keys::{Key, Signature};
use crate::tuf::metadata::{signing_bytes, Envelope, MetaFile, Role};

const NOW: u64 = 1_800_000_000;
const LATER: &str = "2030-01-01T00:00:00Z";
const EARLIER: &str = "2026-01-01T00:00:00Z";

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn keyid(k: &SigningKey) -> String {
    hex::encode(k.verifying_key().as_bytes())
}

fn sign<T: Serialize>(signed: &T, keys: &[&SigningKey]) -> Vec<u8> {
    let msg = signing_bytes(signed).unwrap();
    let env = Envelope {
        signed: serde_json::to_value(signed).unwrap(),
        signatures: keys
            .iter()
            .map(|k| Signature {
                keyid: keyid(k),
                sig: hex::encode(k.sign(&msg).to_bytes()),
                unknown: Map::new(),
            })
            .collect(),
        unknown: Map::new(),
    };
    serde_json::to_vec(&env).unwrap()
}

fn root(version: u64, root_key: &SigningKey, ts_key: &SigningKey) -> Root {
    let mut keys = BTreeMap::new();
    let mut roles = BTreeMap::new();
    let k = [root_key, ts_key, &key(20), &key(30)];
    for (name, k) in [ROOT, TIMESTAMP, SNAPSHOT, TARGETS].into_iter().zip(k) {
        keys.insert(keyid(k), Key::ed25519(k.verifying_key().as_bytes()));
        roles.insert(
            name.to_string(),
            Role {
                keyids: vec![keyid(k)],
                threshold: 1,
                unknown: Map::new(),
            },
        );
    }
    Root {
        type_: ROOT.into(),
        spec_version: "1.0.31".into(),
        consistent_snapshot: false,
        version,
        expires: LATER.into(),
        keys,
        roles,
        unknown: Map::new(),
    }
}

fn meta(version: u64, data: Option<&[u8]>) -> MetaFile {
    MetaFile {
        version,
        length: data.map(|d| d.len() as u64),
        hashes: data
            .map(|d| BTreeMap::from([("sha256".into(), hex::encode(sha2::Sha256::digest(d)))])),
        unknown: Map::new(),
    }
}

fn timestamp(version: u64, snapshot: MetaFile, expires: &str) -> Vec<u8> {
    let ts = Timestamp {
        type_: TIMESTAMP.into(),
        spec_version: "1.0".into(),
        version,
        expires: expires.into(),
        meta: BTreeMap::from([("snapshot.json".into(), snapshot)]),
        unknown: Map::new(),
    };
    sign(&ts, &[&key(10)])
}

fn snapshot(version: u64, roles: &[(&str, u64)]) -> Vec<u8> {
    let snap = Snapshot {
        type_: SNAPSHOT.into(),
        spec_version: "1.0".into(),
        version,
        expires: LATER.into(),
        meta: roles
            .iter()
            .map(|(name, v)| (format!("{name}.json"), meta(*v, None)))
            .collect(),
        unknown: Map::new(),
    };
    sign(&snap, &[&key(20)])
}

fn targets(version: u64, by: &SigningKey) -> Vec<u8> {
    let t = Targets {
        type_: TARGETS.into(),
        spec_version: "1.0".into(),
        version,
        expires: LATER.into(),
        targets: BTreeMap::new(),
        delegations: None,
        unknown: Map::new(),
    };
    sign(&t, &[by])
}

fn set() -> TrustedSet {
    TrustedSet::new(&sign(&root(1, &key(1), &key(10)), &[&key(1)]), NOW).unwrap()
}

#[test]
fn root_rotation_rules() {
    let (old, new) = (key(1), key(2));
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        (
            "signed by old and new",
            sign(&root(2, &new, &key(10)), &[&old, &new]),
            true,
        ),
        (
            "only by the old keys",
            sign(&root(2, &new, &key(10)), &[&old]),
            false,
        ),
        (
            "only by the new keys",
            sign(&root(2, &new, &key(10)), &[&new]),
            false,
        ),
        (
            "skips a version",
            sign(&root(3, &old, &key(10)), &[&old]),
            false,
        ),
        (
            "the same version",
            sign(&root(1, &old, &key(10)), &[&old]),
            false,
        ),
    ];
    for (what, data, ok) in cases {
        let mut s = set();
        assert_eq!(s.update_root(&data).is_ok(), ok, "{what}");
        assert_eq!(s.root().version, if ok { 2 } else { 1 }, "{what}");
    }
}

#[test]
fn an_untrusted_initial_root_is_refused() {
    assert!(TrustedSet::new(&sign(&root(1, &key(1), &key(10)), &[&key(2)]), NOW).is_err());
}

#[test]
fn an_expired_root_is_refused_after_the_updates() {
    let mut r = root(1, &key(1), &key(10));
    r.expires = EARLIER.into();
    let s = TrustedSet::new(&sign(&r, &[&key(1)]), NOW).unwrap();
    assert!(matches!(
        s.check_root_expiry(),
        Err(TufError::Expired { .. })
    ));
}

#[test]
fn timestamp_rollback_and_freeze() {
    // Trusted: timestamp 5 naming snapshot 5.
    let trusted = timestamp(5, meta(5, None), LATER);
    type Check = fn(&Result<bool, TufError>) -> bool;
    let cases: Vec<(&str, Vec<u8>, Check)> = vec![
        ("newer", timestamp(6, meta(6, None), LATER), |r| {
            matches!(r, Ok(true))
        }),
        (
            "the same version",
            timestamp(5, meta(5, None), LATER),
            |r| matches!(r, Ok(false)),
        ),
        ("older", timestamp(4, meta(5, None), LATER), |r| {
            matches!(
                r,
                Err(TufError::Rollback {
                    trusted: 5,
                    got: 4,
                    ..
                })
            )
        }),
        ("older snapshot", timestamp(6, meta(4, None), LATER), |r| {
            matches!(
                r,
                Err(TufError::Rollback {
                    trusted: 5,
                    got: 4,
                    ..
                })
            )
        }),
        ("expired", timestamp(6, meta(6, None), EARLIER), |r| {
            matches!(r, Err(TufError::Expired { .. }))
        }),
        (
            "wrong key",
            sign(&root(1, &key(1), &key(10)), &[&key(10)]),
            |r| r.is_err(),
        ),
    ];
    for (what, data, check) in cases {
        let mut s = set();
        assert!(s.update_timestamp(&trusted).unwrap());
        let got = s.update_timestamp(&data);
        assert!(check(&got), "{what}: {got:?}");
    }
}

#[test]
fn snapshot_pins_and_rollback() {
    let good = snapshot(2, &[(TARGETS, 3), ("stable", 2)]);
    type Case = (&'static str, Vec<u8>, Option<MetaFile>);
    let cases: Vec<Case> = vec![
        ("accepted", good.clone(), None),
        (
            "not the version timestamp names",
            snapshot(3, &[(TARGETS, 3), ("stable", 2)]),
            None,
        ),
        (
            "a targets role goes back",
            snapshot(2, &[(TARGETS, 2), ("stable", 2)]),
            None,
        ),
        ("a targets role removed", snapshot(2, &[(TARGETS, 3)]), None),
        (
            "hash pinned by timestamp differs",
            good.clone(),
            Some(meta(2, Some(b"other"))),
        ),
    ];
    for (i, (what, data, pin)) in cases.into_iter().enumerate() {
        // The local snapshot 1 is older than timestamp 2 names: not final,
        // but kept as the floor of the rollback checks.
        let mut s = set();
        let pin = pin.unwrap_or_else(|| meta(2, Some(&data)));
        s.update_timestamp(&timestamp(2, pin, LATER)).unwrap();
        s.update_snapshot(&snapshot(1, &[(TARGETS, 3), ("stable", 1)]), true)
            .unwrap_err();
        let got = s.update_snapshot(&data, false);
        assert_eq!(got.is_ok(), i == 0, "{what}: {got:?}");
    }
}

#[test]
fn targets_pinned_by_snapshot() {
    let cases = [
        ("accepted", targets(3, &key(30)), true),
        (
            "not the version snapshot names",
            targets(2, &key(30)),
            false,
        ),
        ("signed by another key", targets(3, &key(31)), false),
    ];
    for (what, data, ok) in cases {
        let mut s = set();
        s.update_timestamp(&timestamp(1, meta(1, None), LATER))
            .unwrap();
        s.update_snapshot(&snapshot(1, &[(TARGETS, 3)]), false)
            .unwrap();
        assert_eq!(s.update_targets(&data, TARGETS, ROOT).is_ok(), ok, "{what}");
    }
    let mut s = set();
    s.update_timestamp(&timestamp(1, meta(1, None), LATER))
        .unwrap();
    s.update_snapshot(&snapshot(1, &[(TARGETS, 3)]), false)
        .unwrap();
    let missing = s.update_targets(&targets(1, &key(30)), "stable", TARGETS);
    assert!(
        matches!(missing, Err(TufError::Missing { .. })),
        "{missing:?}"
    );
}

//! Unit tests of metadata parsing (metadata.rs).

use super::*;
use serde_json::json;

fn root_json() -> Value {
    json!({
        "signed": {
            "_type": "root", "spec_version": "1.0.31", "version": 1,
            "expires": "2030-01-01T00:00:00Z", "consistent_snapshot": true,
            "keys": {}, "x-custom": {"kept": [1, 2]},
            "roles": {
                "root": {"keyids": [], "threshold": 1},
                "timestamp": {"keyids": [], "threshold": 1},
                "snapshot": {"keyids": [], "threshold": 1},
                "targets": {"keyids": [], "threshold": 1}
            }
        },
        "signatures": []
    })
}

fn parse_root(v: &Value) -> Result<Parsed<Root>, TufError> {
    parse::<Root>("root", &serde_json::to_vec(v).unwrap())
}

#[test]
fn unknown_fields_survive_a_round_trip() {
    let v = root_json();
    let p = parse_root(&v).unwrap();
    assert_eq!(serde_json::to_value(&p.signed).unwrap(), v["signed"]);
    assert_eq!(
        signing_bytes(&p.signed).unwrap(),
        canonical::to_bytes(&v["signed"]).unwrap()
    );
}

#[test]
fn malformed_metadata_is_refused() {
    type Edit = Box<dyn Fn(&mut Value)>;
    let edits: Vec<(&str, Edit)> = vec![
        (
            "type",
            Box::new(|v| v["signed"]["_type"] = json!("targets")),
        ),
        (
            "spec",
            Box::new(|v| v["signed"]["spec_version"] = json!("2.0.0")),
        ),
        (
            "spec",
            Box::new(|v| v["signed"]["spec_version"] = json!("1")),
        ),
        ("version", Box::new(|v| v["signed"]["version"] = json!(0))),
        ("version", Box::new(|v| v["signed"]["version"] = json!(1.5))),
        (
            "expires",
            Box::new(|v| v["signed"]["expires"] = json!("2030-01-01")),
        ),
        (
            "roles",
            Box::new(|v| {
                v["signed"]["roles"]
                    .as_object_mut()
                    .unwrap()
                    .remove("snapshot");
            }),
        ),
        (
            "dup role key",
            Box::new(|v| {
                v["signed"]["roles"]["root"]["keyids"] = json!(["a", "a"]);
            }),
        ),
        (
            "dup sig",
            Box::new(|v| {
                v["signatures"] = json!([{"keyid": "a", "sig": ""}, {"keyid": "a", "sig": "00"}]);
            }),
        ),
    ];
    for (what, edit) in edits {
        let mut v = root_json();
        edit(&mut v);
        assert!(parse_root(&v).is_err(), "{what}: {v}");
    }
}

#[test]
fn lengths_and_hashes() {
    let data = b"abc";
    let sha = hex::encode(sha2::Sha256::digest(data));
    let h = |alg: &str, v: &str| BTreeMap::from([(alg.to_string(), v.to_string())]);
    assert!(check_length_and_hashes("t", data, Some(3), Some(&h("sha256", &sha))).is_ok());
    assert!(check_length_and_hashes("t", data, Some(4), None).is_err());
    assert!(check_length_and_hashes("t", data, None, Some(&h("sha256", "00"))).is_err());
    assert!(check_length_and_hashes("t", data, None, Some(&h("md7", &sha))).is_err());
}

#[test]
fn hash_bins() {
    let s = SuccinctRoles {
        keyids: vec![],
        threshold: 1,
        bit_length: 8,
        name_prefix: "bin".into(),
        unknown: Map::new(),
    };
    let name = s.role_for("file.txt");
    assert_eq!(name.len(), "bin-00".len());
    assert!(s.is_bin(&name));
    assert!(!s.is_bin("bin-100"));
    assert!(!s.is_bin("other-00"));
    // Names as python-tuf's SuccinctRoles.get_role_for_target gives them.
    let cases = [
        (1, "file.txt", "bin-1"),
        (8, "file.txt", "bin-aa"),
        (8, "dir/os-1.2.tnd", "bin-e2"),
        (13, "file.txt", "bin-155b"),
        (32, "dir/os-1.2.tnd", "bin-e2cae179"),
    ];
    for (bits, path, want) in cases {
        let s = SuccinctRoles {
            bit_length: bits,
            ..s.clone()
        };
        assert_eq!(s.role_for(path), want, "{bits} {path}");
        assert!(s.is_bin(want));
    }
    // A hand-made bit length past 32 does not overflow.
    let wide = SuccinctRoles {
        bit_length: 64,
        ..s.clone()
    };
    assert!(wide.is_bin(&wide.role_for("x")));
}

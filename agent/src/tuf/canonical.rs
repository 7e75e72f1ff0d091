//! OLPC canonical JSON, the form TUF signatures are made over: object keys
//! sorted (by code point), no insignificant whitespace, strings with only
//! `"` and `\` escaped, integers only (no floats).

use serde_json::Value;

/// The canonical bytes of `v`; `Err` names what cannot be encoded (a
/// floating-point number).
pub fn to_bytes(v: &Value) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    write(v, &mut out)?;
    Ok(out)
}

fn write(v: &Value, out: &mut Vec<u8>) -> Result<(), String> {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            if n.is_f64() {
                return Err(format!("{n} is not an integer"));
            }
            out.extend_from_slice(n.to_string().as_bytes());
        }
        Value::String(s) => string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            // serde_json's map is ordered by key (a BTreeMap): byte order of
            // UTF-8 is code point order. Sort anyway, so the feature
            // `preserve_order` elsewhere in the tree cannot change this.
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                string(k, out);
                out.push(b':');
                write(&map[k], out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for b in s.bytes() {
        if b == b'"' || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_forms() {
        let cases = [
            (
                json!({"b": 1, "a": [true, null, "x"]}),
                r#"{"a":[true,null,"x"]}"#.replace("]}", "],\"b\":1}"),
            ),
            (
                json!("q\"uote\\back\nline"),
                "\"q\\\"uote\\\\back\nline\"".to_string(),
            ),
            (
                json!({"é": 1, "z": -3, "A": {}}),
                "{\"A\":{},\"z\":-3,\"é\":1}".to_string(),
            ),
            (json!([]), "[]".to_string()),
        ];
        for (v, want) in cases {
            assert_eq!(
                String::from_utf8(to_bytes(&v).unwrap()).unwrap(),
                want,
                "{v}"
            );
        }
    }

    #[test]
    fn floats_are_refused() {
        assert!(to_bytes(&json!({"a": 1.5})).is_err());
    }
}

//! What the vector conformance tests share: where the captured vectors are, and how their
//! JSON notation of decoded values maps to [`Value`].
#![allow(dead_code)]

use aemp_proto::{Str, Value};
use serde_json::Value as J;

/// The shared vectors folder, a sibling of the checkout (as in CI).
pub const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/vectors");

/// Reads and parses a JSON file of the vectors folder.
pub fn load(name: &str) -> J {
    let path = format!("{VECTORS}/{name}");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

/// True when the notation uses one of the special objects (`$bytes_hex`, `$float`).
pub fn has_special(j: &J) -> bool {
    match j {
        J::Array(a) => a.iter().any(has_special),
        J::Object(o) => {
            o.contains_key("$bytes_hex") || o.contains_key("$float") || o.values().any(has_special)
        }
        _ => false,
    }
}

/// The vectors' JSON notation of a decoded value, as a [`Value`]: `{"$bytes_hex": ..}` is a
/// byte string, `{"$float": ..}` a non-finite float; JSON integers are integers and JSON
/// numbers with a fraction or exponent are floats.
pub fn expected(j: &J) -> Value {
    match j {
        J::Null => Value::Null,
        J::Bool(b) => Value::Bool(*b),
        J::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::Int(i)
            } else if let Some(u) = n.as_u64() {
                Value::UInt(u)
            } else {
                Value::Float(n.as_f64().unwrap())
            }
        }
        J::String(s) => Value::from(s.as_str()),
        J::Array(a) => Value::List(a.iter().map(expected).collect()),
        J::Object(o) => {
            if o.len() == 1 {
                if let Some(J::String(h)) = o.get("$bytes_hex") {
                    return Value::Bytes(hex::decode(h).unwrap());
                }
                if let Some(J::String(f)) = o.get("$float") {
                    return Value::Float(match f.as_str() {
                        "NaN" => f64::NAN,
                        "Infinity" => f64::INFINITY,
                        "-Infinity" => f64::NEG_INFINITY,
                        other => panic!("unknown $float {other}"),
                    });
                }
            }
            Value::Map(
                o.iter()
                    .map(|(k, v)| (Str::from(k.as_str()), expected(v)))
                    .collect(),
            )
        }
    }
}

/// Structural equality with maps compared unordered and NaN equal to NaN. Integers and
/// floats are distinct kinds.
pub fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => x == y || (x.is_nan() && y.is_nan()),
        (Value::List(x), Value::List(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Map(x), Value::Map(y)) => {
            let mut x: Vec<_> = x.iter().collect();
            let mut y: Vec<_> = y.iter().collect();
            x.sort_by(|a, b| a.0.cmp(&b.0));
            y.sort_by(|a, b| a.0.cmp(&b.0));
            x.len() == y.len()
                && x.iter()
                    .zip(&y)
                    .all(|(a, b)| a.0 == b.0 && same(&a.1, &b.1))
        }
        _ => a == b,
    }
}

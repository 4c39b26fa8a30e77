//! Conformance of the JSON and CBOR framings against the single messages captured from Perl
//! AnyEvent::MP 2.02 nodes (shared/vectors/frames-{cbor,json}.json, see its README.md).

use aemp_proto::codec::{decode_frame, encode_frame, encode_value, Decoder, Framing, Limits};
mod common;

use aemp_proto::Value;
use common::{expected, load, same};
use serde_json::Value as J;

fn has_multi_key_map(j: &J) -> bool {
    match j {
        J::Array(a) => a.iter().any(has_multi_key_map),
        J::Object(o) => o.len() > 1 || o.values().any(has_multi_key_map),
        _ => false,
    }
}

fn has_float(v: &Value) -> bool {
    match v {
        Value::Float(_) => true,
        Value::List(l) => l.iter().any(has_float),
        Value::Map(m) => m.iter().any(|(_, v)| has_float(v)),
        _ => false,
    }
}

/// Decodes exactly one item from `bytes`; asserts it uses all of them.
fn decode_one(framing: Framing, bytes: &[u8], id: &str) -> Value {
    let mut d = Decoder::new(framing, Limits::default());
    d.feed(bytes);
    let v = d
        .next_value()
        .unwrap_or_else(|e| panic!("{id}: {e}"))
        .unwrap_or_else(|| panic!("{id}: incomplete"));
    assert_eq!(d.buffered(), 0, "{id}: did not consume exactly the message");
    assert_eq!(d.next_value(), Ok(None), "{id}");
    v
}

fn encode(framing: Framing, v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    encode_value(framing, v, &mut out);
    out
}

/// Rewrites every CBOR text-string head (major 3) into a byte-string head (major 2), so an
/// encoding can be compared with Perl's, which uses byte strings for ASCII. Only handles
/// what the captures contain: definite lengths.
fn normalise_strings(cbor: &[u8]) -> Vec<u8> {
    let mut out = cbor.to_vec();
    let mut pos = 0;
    let mut pending: u64 = 1;
    while pending > 0 {
        pending -= 1;
        let ib = out[pos];
        let (major, ai) = (ib >> 5, ib & 0x1f);
        let n = match ai {
            0..=23 => 0,
            24 => 1,
            25 => 2,
            26 => 4,
            27 => 8,
            _ => panic!("unexpected additional information {ai} at {pos}"),
        };
        let arg = if n == 0 {
            u64::from(ai)
        } else {
            out[pos + 1..pos + 1 + n]
                .iter()
                .fold(0, |a, &b| (a << 8) | u64::from(b))
        };
        if major == 3 {
            out[pos] = (2 << 5) | ai;
        }
        pos += 1 + n;
        match major {
            2 | 3 => pos += arg as usize,
            4 => pending += arg,
            5 => pending += 2 * arg,
            6 => pending += 1,
            _ => {}
        }
    }
    assert_eq!(pos, out.len());
    out
}

#[test]
fn cbor_frames() {
    let doc = load("frames-cbor.json");
    assert_eq!(doc["framing"], "cbor");
    let msgs = doc["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 164);
    let mut byte_identical = 0;
    for m in msgs {
        let id = m["id"].as_str().unwrap();
        let bytes = hex::decode(m["hex"].as_str().unwrap()).unwrap();
        assert_eq!(bytes.len() as u64, m["length"].as_u64().unwrap(), "{id}");
        let want = expected(&m["decoded"]);
        let got = decode_one(Framing::Cbor, &bytes, id);
        assert!(same(&got, &want), "{id}: got {got}\nwant {want}");

        // Every message is a frame [port, msg...].
        let (port, msg) = decode_frame(got.clone()).unwrap_or_else(|e| panic!("{id}: {e}"));

        // Re-encode: the value survives, and encode_frame agrees with encode_value.
        let enc = encode(Framing::Cbor, &got);
        let again = decode_one(Framing::Cbor, &enc, id);
        assert!(same(&again, &got), "{id}: re-encoded {again}");
        let mut framed = Vec::new();
        encode_frame(Framing::Cbor, &port, msg.as_slice(), &mut framed);
        assert_eq!(framed, enc, "{id}: encode_frame");

        // Same structure, integer and float widths as Perl's bytes (map key order is random
        // in Perl, so multi-key maps are excluded).
        if !has_multi_key_map(&m["decoded"]) {
            assert_eq!(
                normalise_strings(&enc),
                normalise_strings(&bytes),
                "{id}: encoding differs from Perl's"
            );
            byte_identical += 1;
        }
    }
    assert!(byte_identical > 140, "only {byte_identical} compared");
}

#[test]
fn json_frames() {
    let doc = load("frames-json.json");
    assert_eq!(doc["framing"], "json");
    let msgs = doc["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 174);
    let mut byte_identical = 0;
    for m in msgs {
        let id = m["id"].as_str().unwrap();
        let bytes = hex::decode(m["hex"].as_str().unwrap()).unwrap();
        assert_eq!(bytes.len() as u64, m["length"].as_u64().unwrap(), "{id}");
        assert_eq!(bytes, m["json_text"].as_str().unwrap().as_bytes(), "{id}");
        // The vectors' `decoded` is what the JSON text parses to; in particular integral
        // floats that Perl printed without a fraction ("3", "-0") are integers there and
        // here, and "1e+15" is a float in both.
        let want = expected(&m["decoded"]);
        let got = decode_one(Framing::Json, &bytes, id);
        assert!(same(&got, &want), "{id}: got {got}\nwant {want}");
        let (port, msg) = decode_frame(got.clone()).unwrap_or_else(|e| panic!("{id}: {e}"));

        // Re-encoding is lossless for everything JSON decoding produces (no NaN, no bytes
        // come out of a JSON decoder; those exceptions are covered by cbor_values_via_json).
        let enc = encode(Framing::Json, &got);
        let again = decode_one(Framing::Json, &enc, id);
        assert!(same(&again, &got), "{id}: re-encoded {again}");
        let mut framed = Vec::new();
        encode_frame(Framing::Json, &port, msg.as_slice(), &mut framed);
        assert_eq!(framed, enc, "{id}: encode_frame");

        // Without floats (Perl prints 15 significant digits, we print the shortest
        // round-trip text) and multi-key maps (random order), the bytes match Perl's.
        if !has_float(&got) && !has_multi_key_map(&m["decoded"]) {
            assert_eq!(
                String::from_utf8_lossy(&enc),
                String::from_utf8_lossy(&bytes),
                "{id}: encoding differs from Perl's"
            );
            byte_identical += 1;
        }
    }
    assert!(byte_identical > 140, "only {byte_identical} compared");
}

/// Maps what JSON cannot carry to what the JSON encoder writes instead: non-finite floats
/// become null, byte strings become strings of Latin-1 code points.
fn through_json(v: &Value) -> Value {
    match v {
        Value::Float(f) if !f.is_finite() => Value::Null,
        Value::Bytes(b) => Value::Str(b.iter().map(|&c| char::from(c)).collect()),
        Value::List(l) => Value::List(l.iter().map(through_json).collect()),
        Value::Map(m) => Value::Map(
            m.iter()
                .map(|(k, v)| (k.clone(), through_json(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[test]
fn cbor_values_via_json() {
    // Every CBOR-decoded value survives the JSON framing, with exactly the two documented
    // exceptions of `through_json`.
    let doc = load("frames-cbor.json");
    let mut exceptions = 0;
    for m in doc["messages"].as_array().unwrap() {
        let id = m["id"].as_str().unwrap();
        let v = expected(&m["decoded"]);
        let again = decode_one(Framing::Json, &encode(Framing::Json, &v), id);
        let want = through_json(&v);
        if want != v {
            exceptions += 1;
        }
        assert!(same(&again, &want), "{id}: {again} vs {want}");
    }
    // data_latin1_bytes, data_binary_bytes, data_float_specials (ping and pong each).
    assert_eq!(exceptions, 6);
}

#[test]
fn every_truncation_is_incomplete() {
    for (file, framing) in [
        ("frames-cbor.json", Framing::Cbor),
        ("frames-json.json", Framing::Json),
    ] {
        let doc = load(file);
        for m in doc["messages"].as_array().unwrap() {
            let bytes = hex::decode(m["hex"].as_str().unwrap()).unwrap();
            if bytes.len() > 600 {
                continue; // every cut of the 105 KB message would be slow and adds nothing
            }
            for cut in 0..bytes.len() {
                let mut d = Decoder::new(framing, Limits::default());
                d.feed(&bytes[..cut]);
                assert_eq!(d.next_value(), Ok(None), "{} cut {cut}", m["id"]);
                d.feed(&bytes[cut..]);
                assert!(d.next_value().unwrap().is_some(), "{} cut {cut}", m["id"]);
                assert_eq!(d.buffered(), 0);
            }
        }
    }
}

#[test]
fn all_messages_back_to_back() {
    // The whole file as one stream, fed in odd-sized pieces.
    for (file, framing) in [
        ("frames-cbor.json", Framing::Cbor),
        ("frames-json.json", Framing::Json),
    ] {
        let doc = load(file);
        let msgs = doc["messages"].as_array().unwrap();
        let stream: Vec<u8> = msgs
            .iter()
            .flat_map(|m| hex::decode(m["hex"].as_str().unwrap()).unwrap())
            .collect();
        for piece in [1usize, 13, 4096] {
            if piece == 1 && framing == Framing::Json {
                // Covered by the sessions; keep this test quick in debug builds.
                continue;
            }
            let mut d = Decoder::new(framing, Limits::default());
            let mut got = Vec::new();
            for c in stream.chunks(piece) {
                d.feed(c);
                while let Some(v) = d.next_value().unwrap() {
                    got.push(v);
                }
            }
            assert_eq!(got.len(), msgs.len(), "{file} piece {piece}");
            for (v, m) in got.iter().zip(msgs) {
                assert!(same(v, &expected(&m["decoded"])), "{}", m["id"]);
            }
        }
    }
}

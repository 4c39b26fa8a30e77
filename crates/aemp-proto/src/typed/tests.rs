//! Tests of the typed conversions.

use super::de::perl_float;
use super::*;
use crate::{list, msg};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

fn s(v: &str) -> Value {
    Value::from(v)
}

fn map(entries: Vec<(&str, Value)>) -> Value {
    Value::Map(
        entries
            .into_iter()
            .map(|(k, v)| (Str::from(k), v))
            .collect(),
    )
}

/// Serialises `v`, checks the value, and decodes it back to an equal `T`.
#[track_caller]
fn round_trip<T>(v: T, expected: Value)
where
    T: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let value = to_value(&v).expect("to_value");
    assert_eq!(value, expected);
    let back: T = from_value(value).expect("from_value");
    assert_eq!(back, v);
}

#[track_caller]
fn err_text<T: serde::de::DeserializeOwned + std::fmt::Debug>(v: Value) -> String {
    from_value::<T>(v).expect_err("must fail").to_string()
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Ping {
    tag: String,
    seq: u64,
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct Inner {
    host: String,
    port: u16,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Outer {
    name: String,
    peers: Vec<Inner>,
    main: Inner,
    note: Option<String>,
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Clone, Copy)]
enum Color {
    Red,
    Green,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
enum Shape {
    Empty,
    Circle(f64),
    Pair(i32, String),
    Rect { w: u32, h: u32 },
}

#[test]
fn integer_edges() {
    round_trip(i64::MIN, Value::Int(i64::MIN));
    round_trip(i64::MAX, Value::Int(i64::MAX));
    round_trip(u64::MAX, Value::UInt(u64::MAX));
    // The invariant: u64 values that fit i64 are Int.
    round_trip(i64::MAX as u64, Value::Int(i64::MAX));
    round_trip(i64::MAX as u64 + 1, Value::UInt(i64::MAX as u64 + 1));
    round_trip(0u8, Value::Int(0));
    round_trip(u8::MAX, Value::Int(255));
    round_trip(i8::MIN, Value::Int(-128));
    round_trip(u32::MAX, Value::Int(u32::MAX as i64));
    round_trip(i128::from(i64::MIN), Value::Int(i64::MIN));
    round_trip(u128::from(u64::MAX), Value::UInt(u64::MAX));
    round_trip(-1i128, Value::Int(-1));
}

#[test]
fn wide_integers_out_of_range() {
    let e = to_value(&(u128::from(u64::MAX) + 1)).unwrap_err();
    assert!(matches!(e.kind(), TypedErrorKind::OutOfRange { .. }), "{e}");
    let e = to_value(&(i128::from(i64::MIN) - 1)).unwrap_err();
    assert!(matches!(e.kind(), TypedErrorKind::OutOfRange { .. }), "{e}");
    assert_eq!(
        err_text::<i64>(Value::UInt(u64::MAX)),
        format!("expected i64, got {}", u64::MAX)
    );
    assert_eq!(err_text::<u64>(Value::Int(-1)), "expected u64, got -1");
}

#[test]
fn other_scalars() {
    round_trip(true, Value::Bool(true));
    round_trip(2.5f64, Value::Float(2.5));
    round_trip(-0.5f32, Value::Float(-0.5));
    round_trip('é', s("é"));
    round_trip("hi".to_string(), s("hi"));
    round_trip((), Value::Null);
    round_trip(None::<u32>, Value::Null);
    round_trip(Some(3u32), Value::Int(3));
    round_trip(Some(Some(3u32)), Value::Int(3));
    let x = s("x");
    let borrowed: &str = from_value_ref(&x).unwrap();
    assert_eq!(borrowed, "x");
}

#[test]
fn bytes_follow_the_value_invariant() {
    struct B<'a>(&'a [u8]);
    impl Serialize for B<'_> {
        fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
            ser.serialize_bytes(self.0)
        }
    }
    assert_eq!(to_value(&B(b"abc")).unwrap(), s("abc"));
    assert_eq!(
        to_value(&B(&[0xff, 0])).unwrap(),
        Value::Bytes(vec![0xff, 0])
    );
    // Value::Bytes survives a trip through serde.
    let v = Value::Bytes(vec![0xfe, 0x80, 1]);
    let back: Value = from_value(to_value(&v).unwrap()).unwrap();
    assert_eq!(back, v);
    // A Perl binary string feeds a Vec<u8>, and a list of numbers round-trips.
    let bytes: Vec<u8> = from_value(v).unwrap();
    assert_eq!(bytes, vec![0xfe, 0x80, 1]);
    round_trip(vec![1u8, 2], list![1, 2]);
    // Bytes borrowed as &[u8], from bytes or from a UTF-8 string.
    let raw = Value::Bytes(vec![0xff]);
    let b: &[u8] = from_value_ref(&raw).unwrap();
    assert_eq!(b, &[0xff]);
    let text = s("ab");
    let b: &[u8] = from_value_ref(&text).unwrap();
    assert_eq!(b, b"ab");
}

#[test]
fn nested_structs_options_vecs() {
    let o = Outer {
        name: "n".into(),
        peers: vec![
            Inner {
                host: "a".into(),
                port: 1,
            },
            Inner {
                host: "b".into(),
                port: 2,
            },
        ],
        main: Inner {
            host: "m".into(),
            port: 4040,
        },
        note: None,
    };
    let inner = |h: &str, p: i64| map(vec![("host", s(h)), ("port", Value::Int(p))]);
    round_trip(
        o,
        map(vec![
            ("name", s("n")),
            ("peers", Value::List(vec![inner("a", 1), inner("b", 2)])),
            ("main", inner("m", 4040)),
            ("note", Value::Null),
        ]),
    );
    // A missing Option field in a map is None.
    let v = map(vec![
        ("name", s("n")),
        ("peers", list![]),
        ("main", inner("m", 1)),
    ]);
    let o: Outer = from_value(v).unwrap();
    assert_eq!(o.note, None);
}

#[test]
fn maps() {
    let mut h = HashMap::new();
    h.insert("a".to_string(), 1u32);
    let v = to_value(&h).unwrap();
    assert_eq!(v, map(vec![("a", Value::Int(1))]));
    assert_eq!(from_value::<HashMap<String, u32>>(v).unwrap(), h);

    let mut b = BTreeMap::new();
    b.insert("x".to_string(), vec![true]);
    b.insert("y".to_string(), vec![]);
    round_trip(b, map(vec![("x", list![true]), ("y", list![])]));

    // Integer, bool, char and unit-variant keys are stringified and parsed back.
    let mut ik = BTreeMap::new();
    ik.insert(-3i32, "m");
    ik.insert(7, "s");
    let v = to_value(&ik).unwrap();
    assert_eq!(v, map(vec![("-3", s("m")), ("7", s("s"))]));
    let back: BTreeMap<i32, String> = from_value(v).unwrap();
    assert_eq!(back.get(&7).map(String::as_str), Some("s"));
    let mut bk = BTreeMap::new();
    bk.insert(false, 0u8);
    bk.insert(true, 1u8);
    round_trip(
        bk,
        map(vec![("false", Value::Int(0)), ("true", Value::Int(1))]),
    );
    let mut ck = BTreeMap::new();
    ck.insert('k', 1u8);
    round_trip(ck, map(vec![("k", Value::Int(1))]));
    let mut ek = BTreeMap::new();
    ek.insert(Color::Green, 2u8);
    round_trip(ek, map(vec![("Green", Value::Int(2))]));

    // Other keys cannot be Value::Map keys.
    let mut tk = BTreeMap::new();
    tk.insert((1, 2), 0);
    let e = to_value(&tk).unwrap_err();
    assert_eq!(e.kind(), &TypedErrorKind::KeyMustBeString("tuple"));
    // A key that does not parse as the key type names the key.
    let e = from_value::<HashMap<u8, u8>>(map(vec![("300", Value::Int(0))])).unwrap_err();
    assert_eq!(e.to_string(), "field 300: expected u8, got 300");
}

#[test]
fn enums() {
    round_trip(Shape::Empty, s("Empty"));
    round_trip(Shape::Circle(1.5), map(vec![("Circle", Value::Float(1.5))]));
    round_trip(
        Shape::Pair(-1, "p".into()),
        map(vec![("Pair", list![-1, "p"])]),
    );
    round_trip(
        Shape::Rect { w: 2, h: 3 },
        map(vec![(
            "Rect",
            map(vec![("w", Value::Int(2)), ("h", Value::Int(3))]),
        )]),
    );
    // A struct variant may also come positionally.
    let r: Shape = from_value(map(vec![("Rect", list![4, 5])])).unwrap();
    assert_eq!(r, Shape::Rect { w: 4, h: 5 });
    assert_eq!(
        err_text::<Shape>(s("Hexagon")),
        "unknown variant `Hexagon`, expected one of `Empty`, `Circle`, `Pair`, `Rect`"
    );
    assert!(
        from_value::<Shape>(map(vec![("Empty", Value::Null), ("Circle", Value::Null)])).is_err()
    );
    assert_eq!(
        err_text::<Shape>(map(vec![("Circle", s("big"))])),
        "field Circle: expected f64, found string \"big\""
    );
}

#[test]
fn tuples() {
    round_trip((1u8, "a".to_string(), true), list![1, "a", true]);
    round_trip(((1i32, 2i32), vec![3i32]), list![list![1, 2], list![3]]);
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Pt(i32, i32);
    round_trip(Pt(1, -1), list![1, -1]);
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Meters(f64);
    round_trip(Meters(2.0), Value::Float(2.0));
}

#[test]
fn struct_to_positional_message_and_back() {
    let p = Ping {
        tag: "ping".into(),
        seq: 5,
    };
    let m = to_msg(&p).unwrap();
    assert_eq!(m, msg!["ping", 5]);
    assert_eq!(from_msg::<Ping>(m.clone()).unwrap(), p);
    assert_eq!(m.clone().decode::<Ping>().unwrap(), p);
    assert_eq!(m.decode_ref::<(&str, u64)>().unwrap(), ("ping", 5));

    // Nested structs inside a top-level struct stay maps.
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Join {
        tag: String,
        who: Inner,
    }
    let j = Join {
        tag: "join".into(),
        who: Inner {
            host: "h".into(),
            port: 9,
        },
    };
    let m = to_msg(&j).unwrap();
    assert_eq!(
        m,
        msg!["join", map(vec![("host", s("h")), ("port", Value::Int(9))])]
    );
    assert_eq!(from_msg::<Join>(m).unwrap(), j);
}

#[test]
fn other_messages() {
    assert_eq!(to_msg(&("say", "hi")).unwrap(), msg!["say", "hi"]);
    assert_eq!(to_msg(&vec![1, 2, 3]).unwrap(), msg![1, 2, 3]);
    assert_eq!(to_msg(&msg!["a", 1]).unwrap(), msg!["a", 1]);
    assert_eq!(to_msg(&list!["a", 1]).unwrap(), msg!["a", 1]);
    // Scalars, maps and enums are one element, and decode back from it.
    assert_eq!(to_msg(&7u8).unwrap(), msg![7]);
    assert_eq!(from_msg::<u8>(msg![7]).unwrap(), 7);
    assert_eq!(to_msg(&Color::Red).unwrap(), msg!["Red"]);
    assert_eq!(from_msg::<Color>(msg!["Red"]).unwrap(), Color::Red);
    assert_eq!(to_msg(&None::<u8>).unwrap(), msg![Value::Null]);
    assert_eq!(from_msg::<Option<u8>>(msg![Value::Null]).unwrap(), None);
    let mut h = HashMap::new();
    h.insert("k".to_string(), 1);
    let m = to_msg(&h).unwrap();
    assert_eq!(m, msg![map(vec![("k", Value::Int(1))])]);
    assert_eq!(from_msg::<HashMap<String, i32>>(m).unwrap(), h);
    // A newtype struct is transparent at the top level.
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Wrapped((String, u8));
    let w = Wrapped(("t".into(), 1));
    let m = to_msg(&w).unwrap();
    assert_eq!(m, msg!["t", 1]);
    assert_eq!(from_msg::<Wrapped>(m).unwrap(), w);
    // Whole messages decode into dynamic types.
    let m = msg!["x", 1.5, Value::Null];
    assert_eq!(from_msg::<Vec<Value>>(m.clone()).unwrap(), m.0.to_vec());
    assert_eq!(from_msg::<Msg>(m.clone()).unwrap(), m);
    let j: serde_json::Value = from_msg(m).unwrap();
    assert_eq!(j, serde_json::json!(["x", 1.5, null]));
    // A scalar cannot come from a message of several elements.
    let e = from_msg::<u8>(msg![1, 2]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid length 2, expected a message of one element"
    );
}

#[test]
fn skipped_fields_keep_positions() {
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Req {
        tag: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        reply: Option<String>,
        id: u32,
        #[serde(skip_serializing_if = "Option::is_none")]
        extra: Option<u32>,
    }
    let r = Req {
        tag: "q".into(),
        reply: None,
        id: 3,
        extra: None,
    };
    let m = to_msg(&r).unwrap();
    assert_eq!(m, msg!["q", Value::Null, 3]);
    assert_eq!(from_msg::<Req>(m).unwrap(), r);
}

#[test]
fn positional_trailing_options_and_defaults() {
    #[derive(Deserialize, Debug, PartialEq)]
    struct Upd {
        tag: String,
        family: String,
        set: Option<Value>,
        del: Option<Vec<String>>,
    }
    // g_upd may lack its fourth element.
    let u: Upd = from_msg(msg!["g_upd", "fam", Value::Null]).unwrap();
    assert_eq!(u.set, None);
    assert_eq!(u.del, None);
    let u: Upd = from_msg(msg!["g_upd", "fam"]).unwrap();
    assert_eq!((u.set, u.del), (None, None));

    #[derive(Deserialize, Debug, PartialEq)]
    struct WithDefault {
        a: u8,
        #[serde(default)]
        b: u8,
    }
    let w: WithDefault = from_value(list![1]).unwrap();
    assert_eq!(w, WithDefault { a: 1, b: 0 });

    let t: (u8, Option<u8>) = from_msg(msg![1]).unwrap();
    assert_eq!(t, (1, None));
}

#[test]
fn lenient_perl_scalars() {
    assert_eq!(from_value::<u32>(s("42")).unwrap(), 42);
    assert_eq!(from_value::<i64>(s(" -7 ")).unwrap(), -7);
    assert_eq!(from_value::<u8>(s("4.0")).unwrap(), 4);
    assert_eq!(from_value::<u64>(Value::Float(3.0)).unwrap(), 3);
    assert_eq!(from_value::<u8>(Value::Bool(true)).unwrap(), 1);
    assert_eq!(from_value::<f64>(s("2.5")).unwrap(), 2.5);
    assert_eq!(from_value::<f64>(Value::Int(2)).unwrap(), 2.0);
    assert_eq!(
        from_value::<f32>(Value::UInt(u64::MAX)).unwrap(),
        u64::MAX as f32
    );

    for (v, b) in [
        (Value::Bool(true), true),
        (Value::Bool(false), false),
        (Value::Int(1), true),
        (Value::Int(0), false),
        (s("1"), true),
        (s(""), false),
        (s("0"), false),
        (s("true"), true),
        (Value::Float(0.0), false),
    ] {
        assert_eq!(from_value::<bool>(v.clone()).unwrap(), b, "{v}");
    }
    assert_eq!(
        err_text::<bool>(Value::Int(2)),
        "expected a boolean, found integer `2`"
    );
    assert!(from_value::<bool>(s("yes")).is_err());

    // Numbers into strings, as Perl prints them.
    assert_eq!(from_value::<String>(Value::Int(-5)).unwrap(), "-5");
    assert_eq!(
        from_value::<String>(Value::UInt(u64::MAX)).unwrap(),
        u64::MAX.to_string()
    );
    assert_eq!(from_value::<String>(Value::Float(2.5)).unwrap(), "2.5");
    assert_eq!(from_value::<String>(Value::Float(3.0)).unwrap(), "3");
    assert_eq!(from_value::<String>(Value::Bool(true)).unwrap(), "1");

    // A message from Perl with numbers as strings into a typed tuple.
    let t: (String, u16, f64) = from_msg(msg!["time", "7", "1.25"]).unwrap();
    assert_eq!(t, ("time".into(), 7, 1.25));
}

#[test]
fn perl_number_formatting() {
    for (f, want) in [
        (0.0, "0"),
        (0.1 + 0.2, "0.3"),
        (1e20, "1e+20"),
        (1.5e-7, "1.5e-07"),
        (123456.789, "123456.789"),
        (-2.25, "-2.25"),
        (1e15, "1e+15"),
        (0.0001, "0.0001"),
        (f64::INFINITY, "Inf"),
        (f64::NAN, "NaN"),
        (f64::NEG_INFINITY, "-Inf"),
        // Checked against perl 5: `print 2**64, 1/3`.
        (18446744073709551616.0, "1.84467440737096e+19"),
        (1.0 / 3.0, "0.333333333333333"),
    ] {
        assert_eq!(perl_float(f), want, "{f}");
    }
}

#[test]
fn mismatch_errors() {
    assert_eq!(
        from_msg::<Ping>(msg!["ping", "abc"])
            .unwrap_err()
            .to_string(),
        "element 1: expected u64, found string \"abc\""
    );
    let e = from_msg::<Ping>(msg!["ping"]).unwrap_err();
    assert!(
        matches!(e.kind(), TypedErrorKind::InvalidLength { len: 1, .. }),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        "invalid length 1, expected struct Ping with 2 elements"
    );
    let e = from_msg::<Ping>(msg!["ping", 1, 2]).unwrap_err();
    assert_eq!(e.to_string(), "invalid length 3, expected 2 elements");
    let e = from_msg::<(u8, u8)>(msg![1]).unwrap_err();
    assert!(
        matches!(e.kind(), TypedErrorKind::InvalidLength { len: 1, .. }),
        "{e}"
    );
    assert_eq!(err_text::<u8>(Value::Int(300)), "expected u8, got 300");
    assert_eq!(err_text::<i8>(s("-129")), "expected i8, got -129");
    assert_eq!(
        err_text::<u32>(Value::Float(1.5)),
        "expected u32, found floating point `1.5`"
    );
    assert_eq!(err_text::<String>(list![]), "expected a string, found list");
    assert_eq!(
        err_text::<Vec<u8>>(map(vec![])),
        "expected a sequence, found map"
    );
    assert_eq!(err_text::<u8>(Value::Null), "expected u8, found null");
    assert_eq!(
        err_text::<Ping>(map(vec![("tag", s("t"))])),
        "missing field `seq`"
    );

    // Paths go all the way down.
    let v = map(vec![
        ("name", s("n")),
        (
            "peers",
            list![map(vec![("host", s("a")), ("port", Value::Int(70000))])],
        ),
        ("main", map(vec![("host", s("m")), ("port", Value::Int(1))])),
    ]);
    let e = from_value::<Outer>(v).unwrap_err();
    assert_eq!(
        e.to_string(),
        "field peers[0].port: expected u16, got 70000"
    );
    assert_eq!(
        e.path(),
        &[
            PathSegment::Field(Str::from("peers")),
            PathSegment::Index(0),
            PathSegment::Field(Str::from("port")),
        ]
    );
    let e = from_msg::<(String, Vec<u8>)>(msg!["x", list![1, "y"]]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "element 1[1]: expected u8, found string \"y\""
    );

    // Peer-supplied text in errors is bounded.
    let long = "x".repeat(1000);
    let text = err_text::<u8>(s(&long));
    assert!(text.len() < 200, "{text}");
}

#[test]
fn structs_from_lists_positionally() {
    let i: Inner = from_value(list!["h", "80"]).unwrap();
    assert_eq!(
        i,
        Inner {
            host: "h".into(),
            port: 80
        }
    );
    let o: Outer = from_value(list!["n", list![list!["a", 1]], list!["m", 2]]).unwrap();
    assert_eq!(o.peers[0].port, 1);
    assert_eq!(o.main.host, "m");
    assert_eq!(o.note, None);
}

#[test]
fn json_values_convert_both_ways() {
    let j = serde_json::json!({
        "s": "x",
        "i": -3,
        "u": u64::MAX,
        "f": 0.5,
        "b": false,
        "n": null,
        "l": [1, "two", [3]],
        "m": {"k": {}}
    });
    let v: Value = serde_json::from_value(j.clone()).unwrap();
    assert_eq!(v.get("u"), Some(&Value::UInt(u64::MAX)));
    assert_eq!(v.get("i"), Some(&Value::Int(-3)));
    assert_eq!(v.get("n"), Some(&Value::Null));
    assert_eq!(serde_json::to_value(&v).unwrap(), j);
    // And through this module's own serializer and deserializer.
    assert_eq!(to_value(&j).unwrap(), v);
    assert_eq!(from_value::<serde_json::Value>(v).unwrap(), j);
    // Positive integers keep the invariant.
    let v: Value = serde_json::from_value(serde_json::json!(5)).unwrap();
    assert_eq!(v, Value::Int(5));
}

#[test]
fn value_as_a_field_and_untagged_enums() {
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Envelope {
        kind: String,
        body: Value,
    }
    let e = Envelope {
        kind: "k".into(),
        body: list![1, Value::Bytes(vec![0xff]), Value::UInt(u64::MAX)],
    };
    round_trip(
        e,
        map(vec![
            ("kind", s("k")),
            (
                "body",
                list![1, Value::Bytes(vec![0xff]), Value::UInt(u64::MAX)],
            ),
        ]),
    );

    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(untagged)]
    enum Either {
        Num(i64),
        Text(String),
        Many(Vec<Either>),
    }
    let e: Either = from_value(list![1, "a"]).unwrap();
    assert_eq!(
        e,
        Either::Many(vec![Either::Num(1), Either::Text("a".into())])
    );
}

#[test]
fn value_ext_decode() {
    let v = list!["a", 2];
    assert_eq!(v.decode_ref::<(String, u8)>().unwrap(), ("a".into(), 2));
    assert_eq!(
        v.decode::<Vec<Value>>().unwrap(),
        vec![s("a"), Value::Int(2)]
    );
}

#[test]
fn sequences_of_options_end_with_the_list() {
    // Padding only applies to tuples and structs: a Vec of Options ends with the list.
    let v: Vec<Option<u8>> = from_value(list![1, Value::Null]).unwrap();
    assert_eq!(v, vec![Some(1), None]);
    // Fixed-size arrays are tuples: absent trailing Options are None.
    let a: [Option<u8>; 3] = from_value(list![1]).unwrap();
    assert_eq!(a, [Some(1), None, None]);
    let e = from_value::<[u8; 2]>(list![1]).unwrap_err();
    assert!(
        matches!(e.kind(), TypedErrorKind::InvalidLength { len: 1, .. }),
        "{e}"
    );
}

#[test]
fn non_utf8_bytes_are_not_a_string() {
    assert_eq!(
        err_text::<String>(Value::Bytes(vec![0xff])),
        "invalid value: byte array, expected a string"
    );
}

/// A string inside `levels` nested lists.
fn deep_list(levels: usize) -> Value {
    let mut v = s("x");
    for _ in 0..levels {
        v = Value::List(vec![v]);
    }
    v
}

/// Runs `f` on a thread with a 2 MiB stack (what test and tokio threads get by default).
fn on_small_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn nesting_is_bounded_both_ways() {
    on_small_stack(|| {
        // Up to the limit, both ways (a Value into a Value: every level counts once).
        let ok = deep_list(MAX_NESTING - 1);
        let v = to_value(&ok).unwrap();
        assert_eq!(v, ok);
        let back: Value = from_value_ref(&ok).unwrap();
        assert_eq!(back, ok);
        // Beyond it: an error, not a stack overflow, at any depth.
        let deep = deep_list(1_000_000);
        let errs = [
            to_value(&deep).unwrap_err(),
            from_value_ref::<Value>(&deep).unwrap_err(),
            to_msg(&deep).unwrap_err(),
        ];
        // Dropped before asserting: a failed assertion must not drop it recursively.
        crate::value::drop_nested([deep]);
        for err in errs {
            assert_eq!(err.kind(), &TypedErrorKind::TooDeep(MAX_NESTING));
            // Where: one index per level, down to the one refused.
            assert!(err.path().len() > MAX_NESTING - 2, "{}", err.path().len());
        }
        // The counter is back at zero after errors.
        assert_eq!(to_value(&ok).unwrap(), ok);
    });
}

#[test]
fn recursive_types_are_bounded() {
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    enum Tree {
        Leaf,
        Node(Box<Tree>),
    }
    /// `Option` and newtype layers that never make a container.
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Chain(Option<Box<Chain>>);
    on_small_stack(|| {
        let mut t = Tree::Leaf;
        for _ in 0..1000 {
            t = Tree::Node(Box::new(t));
        }
        let err = to_value(&t).unwrap_err();
        assert_eq!(err.kind(), &TypedErrorKind::TooDeep(MAX_NESTING));
        let mut c = Chain(None);
        for _ in 0..1000 {
            c = Chain(Some(Box::new(c)));
        }
        let err = to_value(&c).unwrap_err();
        assert_eq!(err.kind(), &TypedErrorKind::TooDeep(MAX_NESTING));
        // A value that never ends for this type: `Chain` reads a non-null as `Some(Chain)`
        // of the same value, forever.
        let err = from_value::<Chain>(Value::Int(1)).unwrap_err();
        assert_eq!(err.kind(), &TypedErrorKind::TooDeep(MAX_NESTING));
        assert_eq!(
            err.to_string(),
            format!("nested deeper than {MAX_NESTING} levels")
        );
    });
}

/// A protocol as a Rust enum: each variant is one message shape, tagged by its name.
#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
enum Req {
    Ping(u32, String),
    Stop,
    Echo(String),
    Move {
        x: i32,
        y: i32,
        label: Option<String>,
    },
}

#[test]
fn enum_messages_are_tagged_lists() {
    let cases = [
        (Req::Ping(5, "n#p".into()), msg!["Ping", 5, "n#p"]),
        (Req::Stop, msg!["Stop"]),
        (Req::Echo("hi".into()), msg!["Echo", "hi"]),
        (
            Req::Move {
                x: 1,
                y: -2,
                label: Some("a".into()),
            },
            msg!["Move", 1, -2, "a"],
        ),
        // A skipped/absent trailing field is still written (no skip_serializing_if here).
        (
            Req::Move {
                x: 1,
                y: 2,
                label: None,
            },
            msg!["Move", 1, 2, Value::Null],
        ),
    ];
    for (req, wire) in cases {
        assert_eq!(to_msg(&req).unwrap(), wire, "{req:?}");
        assert_eq!(from_msg::<Req>(wire.clone()).unwrap(), req, "{wire:?}");
        assert_eq!(wire.decode_ref::<Req>().unwrap(), req);
    }
    // A Perl sender may leave optional trailing arguments off, and send numbers as strings.
    assert_eq!(
        from_msg::<Req>(msg!["Move", "3", 4]).unwrap(),
        Req::Move {
            x: 3,
            y: 4,
            label: None
        }
    );
    // Nested in a value, an enum may come as a tagged list too (or as a one-key map).
    assert_eq!(
        from_value::<Req>(list!["Ping", 1, "x"]).unwrap(),
        Req::Ping(1, "x".into())
    );
    assert_eq!(
        from_value::<Req>(map(vec![("Ping", list![1, "x"])])).unwrap(),
        Req::Ping(1, "x".into())
    );
    // The older one-element form of a message still decodes.
    assert_eq!(
        from_msg::<Req>(msg![map(vec![("Echo", s("e"))])]).unwrap(),
        Req::Echo("e".into())
    );
}

#[test]
fn enum_message_errors_name_tag_and_arity() {
    let err = |m: Msg| from_msg::<Req>(m).unwrap_err().to_string();
    assert_eq!(
        err(msg!["Pong", 1]),
        "element 0: unknown variant `Pong`, expected one of `Ping`, `Stop`, `Echo`, `Move`"
    );
    assert_eq!(
        err(msg![5, 1]),
        "element 0: expected a variant name (a string), found integer `5`"
    );
    assert_eq!(
        err(Msg::from(Vec::<Value>::new())),
        "invalid length 0, expected a message starting with a variant name"
    );
    assert_eq!(
        err(msg!["Stop", 1]),
        "invalid length 1, expected no elements after the tag `Stop`"
    );
    assert_eq!(
        err(msg!["Ping", 1]),
        "invalid length 1, expected tuple variant Req::Ping with 2 elements"
    );
    assert_eq!(
        err(msg!["Ping", 1, "a", "b"]),
        "invalid length 3, expected 2 elements after the tag `Ping`"
    );
    assert_eq!(
        err(msg!["Echo"]),
        "invalid length 0, expected one element after the tag `Echo`"
    );
    assert_eq!(
        err(msg!["Echo", "a", "b"]),
        "invalid length 2, expected one element after the tag `Echo`"
    );
    assert_eq!(
        err(msg!["Ping", "five", "a"]),
        "element 1: expected u32, found string \"five\""
    );
    assert_eq!(
        err(msg!["Move", 1, "y"]),
        "element 2: expected i32, found string \"y\""
    );
    assert_eq!(
        err(msg!["Move", 1]),
        "invalid length 1, expected struct variant Req::Move with 3 elements"
    );
}

#[test]
fn enum_messages_round_trip_generated() {
    // A small deterministic generator: every variant, with awkward strings and edge numbers.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let strings = ["", "Ping", "n#p", "ä€", "1", "  2", "null"];
    for _ in 0..500 {
        let r = next();
        let st = strings[(r >> 8) as usize % strings.len()].to_string();
        let req = match r % 4 {
            0 => Req::Ping((r >> 16) as u32, st),
            1 => Req::Stop,
            2 => Req::Echo(st),
            _ => Req::Move {
                x: (r >> 16) as i32,
                y: (r >> 32) as i32,
                label: (r & 0x100 != 0).then_some(st),
            },
        };
        let m = to_msg(&req).unwrap();
        assert_eq!(m[0], Value::from(variant_name(&req)));
        assert_eq!(from_msg::<Req>(m).unwrap(), req);
    }
}

fn variant_name(r: &Req) -> &'static str {
    match r {
        Req::Ping(..) => "Ping",
        Req::Stop => "Stop",
        Req::Echo(_) => "Echo",
        Req::Move { .. } => "Move",
    }
}

#[test]
fn port_arguments_in_one_call() {
    let m = msg!["ping", 5, "n#r"];
    assert_eq!(m.port(2).unwrap().as_str(), "n#r");
    assert_eq!(m.reply_port().unwrap().as_str(), "n#r");
    assert_eq!(s("node").as_port().unwrap().as_str(), "node");
    let text = |e: TypedError| e.to_string();
    assert_eq!(
        text(m.port(1).unwrap_err()),
        "element 1: expected a port ID, found integer `5`"
    );
    assert_eq!(
        text(m.port(3).unwrap_err()),
        "element 3: expected a port ID, found nothing (the message has 3 elements)"
    );
    assert_eq!(
        text(msg!["x", list![1]].reply_port().unwrap_err()),
        "element 1: expected a port ID, found list"
    );
    assert_eq!(
        text(Msg::from(Vec::<Value>::new()).reply_port().unwrap_err()),
        "expected a reply port as the last element, found an empty message"
    );
    let bad = msg!["#nonode"].port(0).unwrap_err();
    assert_eq!(bad.path(), &[PathSegment::Index(0)]);
    assert_eq!(
        text(bad),
        "element 0: invalid value: string \"#nonode\" (empty node ID), expected a port ID"
    );
    // Long peer-supplied strings are cut in the error.
    let long = "x#".to_string() + &"y".repeat(500);
    assert!(msg![long.as_str()].port(0).is_ok());
    let long = ";".repeat(500);
    assert!(text(msg![long.as_str()].port(0).unwrap_err()).len() < 250);
}

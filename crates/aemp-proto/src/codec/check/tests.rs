use super::*;
use crate::codec::{encode_frame, encode_value, DecodeError, Decoder, MAX_DEPTH_CAP};
use crate::msg;
use crate::value::{Msg, Str};

const FRAMINGS: [Framing; 2] = [Framing::Json, Framing::Cbor];

/// A scalar inside `levels` nested containers (lists, or one-entry maps).
fn nested(levels: usize, maps: bool) -> Value {
    let mut v = Value::from("x");
    for _ in 0..levels {
        v = if maps {
            Value::Map(vec![(Str::from("k"), v)])
        } else {
            Value::List(vec![v])
        };
    }
    v
}

fn encoded(framing: Framing, port: &str, msg: &[Value]) -> Vec<u8> {
    let mut b = Vec::new();
    encode_frame(framing, port, msg, &mut b);
    b
}

/// What the real decoder says about `bytes`: through `next_value` whole, and through
/// `frames_into` fed in pieces the way a connection reads (both must agree).
fn decoder_accepts(framing: Framing, limits: Limits, bytes: &[u8]) -> Result<(), DecodeError> {
    let mut d = Decoder::new(framing, limits);
    d.feed(bytes);
    let whole = d.next_value().map(|v| assert!(v.is_some(), "incomplete"));
    let mut d = Decoder::new(framing, limits);
    let mut got = Vec::new();
    let mut rest = bytes;
    let mut pieces = Ok(());
    while !rest.is_empty() && pieces.is_ok() {
        rest = &rest[d.fill(rest, 4000)..];
        pieces = d.frames_into(&mut got).map(drop);
    }
    if pieces.is_ok() {
        assert_eq!(got.len(), 1, "{framing}: one frame");
    }
    assert_eq!(
        whole.is_ok(),
        pieces.is_ok(),
        "{framing}: {whole:?} {pieces:?}"
    );
    whole
}

#[test]
fn depth_boundary_matches_the_decoder() {
    for limits in [
        Limits::default(),
        Limits {
            max_depth: 5,
            ..Limits::default()
        },
        Limits {
            max_depth: usize::MAX,
            ..Limits::default()
        },
    ] {
        let max = limits.max_depth.min(MAX_DEPTH_CAP);
        for framing in FRAMINGS {
            for maps in [false, true] {
                // A message element may hold max - 1 levels: the frame is level 1.
                for levels in [max - 2, max - 1, max, max + 1] {
                    let msg = [Value::from("tag"), nested(levels, maps)];
                    let check = limits.check_frame(framing, "p", &msg);
                    let decoded = decoder_accepts(framing, limits, &encoded(framing, "p", &msg));
                    assert_eq!(
                        check.is_ok(),
                        decoded.is_ok(),
                        "{framing} maps={maps} levels={levels}: {check:?} {decoded:?}"
                    );
                    assert_eq!(check.is_ok(), levels < max, "{framing} {levels}");
                    if levels >= max {
                        assert_eq!(
                            check,
                            Err(LimitError::TooDeep {
                                depth: max + 1,
                                max
                            })
                        );
                        assert!(matches!(decoded, Err(DecodeError::TooDeep { .. })));
                    }
                }
            }
        }
    }
}

/// Messages whose frame is exactly `len` bytes in `framing`: a tag, a few awkward values and a
/// padding string (written last, so CBOR frames take the decoder's detached-tail path).
fn frame_of_len(framing: Framing, len: usize, pad: char) -> Vec<Value> {
    let mut msg = vec![
        Value::from("tag"),
        Value::from("line\nbreak \"quoted\" \u{1} é \u{1F600}"),
        Value::Bytes(vec![0x00, 0x1f, 0x7f, 0x80, 0xff]),
        Value::Map(vec![(Str::from("k\t"), Value::from(-1.5))]),
        Value::from(u64::MAX),
        Value::from(""),
    ];
    let limits = Limits::default();
    let base = limits.frame_len(framing, "port", &msg).unwrap();
    let per_char = limits
        .frame_len(
            framing,
            "port",
            &[Value::from(pad.to_string().repeat(1000))],
        )
        .unwrap()
        - limits
            .frame_len(framing, "port", &[Value::from("")])
            .unwrap();
    let per_char = per_char / 1000;
    // Grow the padding until the frame has the wanted length (head sizes change at a few
    // lengths, and a JSON escape takes two bytes: search instead of computing; an 'a' after
    // the padding makes up odd lengths).
    let mut n = (len.saturating_sub(base) / per_char).saturating_sub(16);
    loop {
        for extra in 0..per_char {
            msg[5] = Value::from(pad.to_string().repeat(n) + &"a".repeat(extra));
            let got = limits.frame_len(framing, "port", &msg).unwrap();
            if got == len {
                return msg;
            }
            assert!(
                got < len || extra > 0,
                "{framing}: no padding gives {len} bytes"
            );
        }
        n += 1;
    }
}

#[test]
fn size_boundary_matches_the_decoder() {
    // Large enough for CBOR's detached tails (64 KiB strings), small enough to be quick.
    for max in [200, 100_000] {
        let limits = Limits {
            max_message: max,
            ..Limits::default()
        };
        for framing in FRAMINGS {
            // 'a' is one byte in both framings; '\n' costs two in JSON, so its bound (six per
            // byte) is far above the truth and the exact pass decides.
            for pad in ['a', '\n'] {
                for len in [max - 1, max, max + 1] {
                    let msg = frame_of_len(framing, len, pad);
                    let bytes = encoded(framing, "port", &msg);
                    assert_eq!(bytes.len(), len);
                    let check = limits.check_frame(framing, "port", &msg);
                    let decoded = decoder_accepts(framing, limits, &bytes);
                    assert_eq!(
                        check.is_ok(),
                        decoded.is_ok(),
                        "{framing} {pad:?} {len}: {check:?} {decoded:?}"
                    );
                    if len > max {
                        assert_eq!(
                            check,
                            Err(LimitError::TooLarge {
                                size: len,
                                max,
                                framing
                            })
                        );
                        assert!(matches!(decoded, Err(DecodeError::TooLarge { .. })));
                    } else {
                        assert_eq!(check, Ok(()));
                    }
                }
            }
        }
    }
}

#[test]
fn the_default_size_limit_is_exact() {
    // 256 MiB frames, built once: the check alone (the decoder side of the same boundary is
    // tested above with a small limit).
    let limits = Limits::default();
    let max = limits.max_message;
    let big = "x".repeat(max);
    let overhead = limits
        .frame_len(Framing::Cbor, "p", &[Value::from("")])
        .unwrap();
    // A string of max - overhead bytes: its head is 4 bytes longer than the empty string's.
    let fits = Value::from(&big[..max - overhead - 4]);
    assert_eq!(
        limits.frame_len(Framing::Cbor, "p", std::slice::from_ref(&fits)),
        Some(max)
    );
    assert_eq!(
        limits.check_frame(Framing::Cbor, "p", std::slice::from_ref(&fits)),
        Ok(())
    );
    // JSON: the bound is above the limit, the exact pass says it fits (2 quotes vs a head).
    assert_eq!(
        limits.check_frame(Framing::Json, "p", std::slice::from_ref(&fits)),
        Ok(())
    );
    drop(fits);
    // One byte more in the port name.
    let err = limits.check_frame(
        Framing::Cbor,
        "pq",
        &[Value::from(&big[..max - overhead - 4])],
    );
    assert_eq!(
        err,
        Err(LimitError::TooLarge {
            size: max + 1,
            max,
            framing: Framing::Cbor
        })
    );
    // A port name alone over the limit.
    let err = limits.check_frame(Framing::Json, &big, msg!["x"].as_slice());
    assert!(matches!(err, Err(LimitError::TooLarge { size, .. }) if size == max + 8));
}

use crate::codec::tests::Rng;

fn random_value(rng: &mut Rng, depth: usize) -> Value {
    const TEXT: &[&str] = &[
        "",
        "a",
        "\"",
        "\\",
        "\n",
        "\u{1}",
        "é",
        "\u{1F600}",
        "x y",
        "\u{7f}",
    ];
    match rng.below(if depth == 0 { 9 } else { 11 }) {
        0 => Value::Null,
        1 => Value::Bool(rng.next() & 1 == 0),
        2 => Value::Int(rng.next() as i64 >> rng.below(64)),
        3 => Value::from(u64::MAX - rng.below(1000) as u64),
        4 => Value::Float(f64::from_bits(rng.next())),
        5 => Value::Float([0.0, -0.0, 1.5, 1e300, f64::NAN, f64::INFINITY, 0.1][rng.below(7)]),
        6 | 7 => {
            let n = [0, 1, 23, 24, 255, 256, 70_000][rng.below(7)];
            let s: String = (0..n.min(300))
                .map(|_| TEXT[rng.below(TEXT.len())])
                .collect();
            Value::from(if n > 300 { s.repeat(n / 300) } else { s })
        }
        8 => Value::Bytes((0..rng.below(300)).map(|_| rng.next() as u8).collect()),
        9 => Value::List(
            (0..rng.below(6))
                .map(|_| random_value(rng, depth - 1))
                .collect(),
        ),
        _ => Value::Map(
            (0..rng.below(6))
                .map(|_| {
                    let k: String = (0..rng.below(5))
                        .map(|_| TEXT[rng.below(TEXT.len())])
                        .collect();
                    (Str::from(k), random_value(rng, depth - 1))
                })
                .collect(),
        ),
    }
}

#[test]
fn frame_len_is_the_encoded_length() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let limits = Limits::default();
    for case in 0..1000 {
        let n = 1 + rng.below(5);
        let msg: Vec<Value> = (0..n).map(|_| random_value(&mut rng, 3)).collect();
        let port = ["", "p", "node#port\n"][case % 3];
        for framing in FRAMINGS {
            let want = encoded(framing, port, &msg).len();
            assert_eq!(
                limits.frame_len(framing, port, &msg),
                Some(want),
                "{framing} case {case}"
            );
        }
    }
    // Every head size, both signs.
    for i in [
        0i64,
        23,
        24,
        255,
        256,
        65_535,
        65_536,
        u32::MAX as i64,
        u32::MAX as i64 + 1,
    ] {
        for v in [Value::Int(i), Value::Int(-1 - i)] {
            for framing in FRAMINGS {
                let msg = [v.clone()];
                assert_eq!(
                    limits.frame_len(framing, "p", &msg),
                    Some(encoded(framing, "p", &msg).len()),
                    "{framing} {v}"
                );
            }
        }
    }
}

#[test]
fn any_depth_is_checked_and_encoded_without_recursion() {
    let limits = Limits::default();
    let deep = nested(1_000_000, false);
    let msg = [Value::from("tag"), deep];
    for framing in FRAMINGS {
        assert_eq!(
            limits.check_frame(framing, "p", &msg),
            Err(LimitError::TooDeep { depth: 65, max: 64 })
        );
        // The encoders do not recurse either (values of any depth can be written, for tests
        // and tools; senders check first).
        let mut out = Vec::new();
        encode_value(framing, &msg[1], &mut out);
        let want = match framing {
            Framing::Json => 2_000_000 + 3,
            Framing::Cbor => 1_000_000 + 2,
        };
        assert_eq!(out.len(), want, "{framing}");
    }
    crate::value::drop_nested(msg.into_iter().collect::<Msg>());
}

#[test]
fn flat_and_empty_messages() {
    let limits = Limits::default();
    for framing in FRAMINGS {
        assert_eq!(limits.check_frame(framing, "", &[]), Ok(()));
        assert_eq!(
            limits.check_frame(framing, "p", msg!["a", 1, 2.5, Value::Null].as_slice()),
            Ok(())
        );
        let zero = Limits {
            max_depth: 0,
            ..Limits::default()
        };
        assert_eq!(
            zero.check_frame(framing, "p", &[]),
            Err(LimitError::TooDeep { depth: 1, max: 0 })
        );
    }
}

#[test]
fn errors_read_well() {
    assert_eq!(
        LimitError::TooDeep { depth: 65, max: 64 }.to_string(),
        "message nested too deep: level 65 reached, receivers accept at most 64 (the frame \
         array is level 1)"
    );
    assert_eq!(
        LimitError::TooLarge {
            size: 300,
            max: 200,
            framing: Framing::Cbor
        }
        .to_string(),
        "message too large: 300 bytes as a cbor frame, receivers accept at most 200"
    );
}

/// A value `levels` deep with several elements per level, lists and maps alternating, so
/// that the encoders' switch from recursion to their explicit stack is crossed mid-value.
/// Values that decode as they were (no byte strings, no floats).
fn plain_value(rng: &mut Rng) -> Value {
    match rng.below(4) {
        0 => Value::Null,
        1 => Value::Bool(rng.next() & 1 == 0),
        2 => Value::Int(rng.next() as i64 >> rng.below(64)),
        _ => Value::from(["", "a", "\"q\"", "é\n", "\u{1}x"][rng.below(5)]),
    }
}

fn bushy(levels: usize, rng: &mut Rng) -> Value {
    let mut v = plain_value(rng);
    for level in 0..levels {
        let mut items: Vec<Value> = (0..rng.below(3)).map(|_| plain_value(rng)).collect();
        items.insert(rng.below(items.len() + 1), v);
        v = if level % 2 == 0 {
            Value::List(items)
        } else {
            Value::Map(
                items
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| (Str::from(format!("k{i}\n")), v))
                    .collect(),
            )
        };
    }
    v
}

#[test]
fn deep_values_encode_and_measure_the_same_on_both_paths() {
    let mut rng = Rng(0x0bad_cafe_f00d_d00d);
    let limits = Limits::default();
    for levels in [30, 31, 32, 33, 34, 40, 62] {
        let msg = vec![Value::from("tag"), bushy(levels, &mut rng), Value::Int(7)];
        for framing in FRAMINGS {
            let bytes = encoded(framing, "p", &msg);
            assert_eq!(
                limits.frame_len(framing, "p", &msg),
                Some(bytes.len()),
                "{framing} {levels}"
            );
            assert_eq!(limits.check_frame(framing, "p", &msg), Ok(()));
            let mut d = Decoder::new(framing, limits);
            d.feed(&bytes);
            let (port, got) = crate::codec::decode_frame(d.next_value().unwrap().unwrap()).unwrap();
            assert_eq!(port, "p");
            assert!(got == Msg::from(msg.clone()), "{framing} {levels}: differs");
        }
    }
}

/// `check_flat` decides like `check_frame` on the same strings, around the size limit (for
/// strings that need escapes in JSON too).
#[test]
fn check_flat_agrees_with_check_frame() {
    for max in [40, 100, 1000] {
        let limits = Limits {
            max_message: max,
            ..Limits::default()
        };
        for n in (0..max + 20).step_by(3) {
            for fill in ["x", "\"", "é"] {
                let name = fill.repeat(n / fill.len());
                for framing in FRAMINGS {
                    let parts = ["mon1", name.as_str()];
                    let values: Vec<Value> = parts.iter().map(|p| Value::from(*p)).collect();
                    assert_eq!(
                        limits.check_flat(framing, "", &parts),
                        limits.check_frame(framing, "", &values),
                        "{framing} {max} {n} {fill}"
                    );
                    let bytes = encoded(framing, "", &values);
                    assert_eq!(
                        limits.check_flat(framing, "", &parts).is_ok(),
                        bytes.len() <= max,
                        "{framing} {max} {n} {fill}: {} bytes",
                        bytes.len()
                    );
                }
            }
        }
    }
}

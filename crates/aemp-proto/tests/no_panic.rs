//! Peer input never panics: random and mutated bytes through the handshake, the decoders and
//! the node-port request parser (a deterministic generator, so failures reproduce).

use aemp_proto::codec::{decode_frame, Decoder, Framing, Limits};
use aemp_proto::handshake::{new_nonce, Handshake, HandshakeConfig};
use aemp_proto::{node_req, Msg, Value};

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn valid_greeting() -> Vec<u8> {
    let cfg = HandshakeConfig::new("peer", Some(b"secret".to_vec()));
    Handshake::new(&cfg, "127.0.0.1:1", new_nonce()).initial_bytes()
}

#[test]
fn handshake_survives_random_and_mutated_input() {
    let cfg = HandshakeConfig::new("me", Some(b"secret".to_vec()));
    let good = valid_greeting();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..3000 {
        let mut input = if round % 2 == 0 {
            let n = rng.below(300);
            rng.bytes(n)
        } else {
            let mut g = good.clone();
            for _ in 0..1 + rng.below(6) {
                let i = rng.below(g.len());
                g[i] = rng.next() as u8;
            }
            g
        };
        // Sometimes an auth line after the greeting.
        if round % 3 == 0 {
            input.extend_from_slice(b"hmac_sha3_512;00ff;cbor\n");
        }
        let mut hs = Handshake::new(&cfg, "127.0.0.1:2", new_nonce());
        let mut off = 0;
        while off < input.len() {
            let step = 1 + rng.below(64);
            let end = (off + step).min(input.len());
            match hs.feed(&input[off..end]) {
                Ok(0) => break,
                Ok(n) => off += n,
                Err(_) => break,
            }
            while hs.poll_event().is_some() {}
        }
    }
}

#[test]
fn decoders_and_frame_split_survive_mutated_frames() {
    let mut rng = Rng(0xdead_beef_cafe_f00d);
    let samples: Vec<Vec<u8>> = [Framing::Cbor, Framing::Json]
        .iter()
        .map(|f| {
            let mut out = Vec::new();
            let msg = vec![
                Value::from("ping"),
                Value::from(-5i64),
                Value::from(u64::MAX),
                Value::Float(1.5),
                Value::Map(vec![(
                    "k".into(),
                    Value::List(vec![Value::Null, true.into()]),
                )]),
            ];
            aemp_proto::codec::encode_frame(*f, "port", &msg, &mut out);
            out
        })
        .collect();
    for round in 0..6000 {
        let framing = if round % 2 == 0 {
            Framing::Cbor
        } else {
            Framing::Json
        };
        let mut input = samples[round % 2].clone();
        for _ in 0..1 + rng.below(4) {
            let i = rng.below(input.len());
            input[i] = rng.next() as u8;
        }
        let limits = Limits {
            max_depth: 16,
            max_message: 4096,
        };
        let mut dec = Decoder::new(framing, limits);
        dec.feed(&input);
        let mut via_values = Vec::new();
        for _ in 0..8 {
            match dec.next_value() {
                Ok(Some(v)) => {
                    if let Ok((port, msg)) = decode_frame(v) {
                        via_values.push((port, msg.clone()));
                        let _ = node_req::parse(msg);
                    }
                }
                Ok(None) | Err(_) => break,
            }
        }
        // The direct frame path (what connections use) survives the same input and agrees
        // with the general one on every frame it yields.
        let mut dec = Decoder::new(framing, limits);
        let mut frames = Vec::new();
        for piece in input.chunks(1 + rng.below(input.len())) {
            dec.feed(piece);
            if dec.frames_into(&mut frames).is_err() {
                break;
            }
        }
        let n = frames.len().min(via_values.len());
        // Compared as text: NaN is a possible value and never equals itself.
        assert_eq!(
            format!("{:?}", &frames[..n]),
            format!("{:?}", &via_values[..n])
        );
    }
}

#[test]
fn node_requests_with_random_arguments_never_panic() {
    let mut rng = Rng(42);
    let tags = [
        "",
        "mon1",
        "mon0",
        "kil0",
        "kil1",
        "snd",
        "can",
        "time",
        "eval",
        "aemp_nodes",
        "AnyEvent::MP::_spawn",
        "g_find",
        "x::y",
    ];
    let pick = |rng: &mut Rng| -> Value {
        match rng.below(8) {
            0 => Value::Null,
            1 => Value::from(rng.next() as i64),
            2 => Value::from(""),
            3 => Value::from("n#p"),
            4 => Value::from("#"),
            5 => Value::List(vec![Value::from("a")]),
            6 => Value::Map(vec![]),
            _ => Value::Bytes(vec![0xff, 0xfe]),
        }
    };
    for _ in 0..20_000 {
        let mut m = Msg::new();
        m.push(tags[rng.below(tags.len())]);
        for _ in 0..rng.below(5) {
            m.0.push(pick(&mut rng));
        }
        let _ = node_req::parse(m);
    }
}

/// Frames that end in long strings are received apart from the decoder's buffer; mutated
/// streams of them, read in random pieces through `tail_room` and `spare`, never panic and
/// agree with the value path up to the first error.
#[test]
fn detached_long_strings_survive_mutated_streams() {
    use aemp_proto::codec::{encode_frame, DETACH_MIN};
    let mut rng = Rng(7);
    let long = "L".repeat(DETACH_MIN + 10);
    let mut clean = Vec::new();
    for i in 0..4 {
        encode_frame(
            Framing::Cbor,
            "port",
            aemp_proto::msg!["bulk", i, long.as_str()].as_slice(),
            &mut clean,
        );
        encode_frame(
            Framing::Cbor,
            "p",
            aemp_proto::msg!["x", i].as_slice(),
            &mut clean,
        );
    }
    for round in 0..60 {
        let mut input = clean.clone();
        if round > 0 {
            for _ in 0..1 + rng.below(3) {
                // Mostly in the heads, where it matters.
                let i = if rng.below(2) == 0 {
                    rng.below(64)
                } else {
                    rng.below(input.len())
                };
                input[i] = rng.next() as u8;
            }
            input.truncate(input.len() - rng.below(100));
        }
        let limits = Limits {
            max_depth: 16,
            max_message: 4 * DETACH_MIN,
        };
        let mut via_values = Vec::new();
        let mut d = Decoder::new(Framing::Cbor, limits);
        d.feed(&input);
        while let Ok(Some(v)) = d.next_value() {
            match decode_frame(v) {
                Ok(f) => via_values.push(f),
                Err(_) => break,
            }
        }
        let mut d = Decoder::new(Framing::Cbor, limits);
        let mut frames = Vec::new();
        let mut rest = &input[..];
        while !rest.is_empty() {
            let step = 1 + rng.below(70_000);
            rest = &rest[d.fill(rest, step)..];
            if d.frames_into(&mut frames).is_err() {
                break;
            }
        }
        let n = frames.len().min(via_values.len());
        assert_eq!(
            format!("{:?}", &frames[..n]),
            format!("{:?}", &via_values[..n]),
            "round {round}"
        );
    }
}

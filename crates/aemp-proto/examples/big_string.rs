//! Encode or decode frames `["bulk", i, <1 MiB string>]` (the R4 shape), for profiling the
//! large-string paths with callgrind: run with two counts and take the difference.
//!
//! `cargo run --release -p aemp-proto --example big_string -- json|cbor enc|dec COUNT [escapes]`
//!
//! `enc` runs `encode_frame_owned` (what a connection's sender does); `dec` feeds the encoded
//! stream through `Decoder::fill` in reads of up to 256 KiB (what a connection's reader does)
//! and takes the frames with `frames_into`. With `escapes`, every 1,000th byte is a `"`.

use aemp_proto::codec::{encode_frame_owned, Decoder, Framing, Limits, Outbox};
use aemp_proto::{msg, Str, Value};
use std::hint::black_box;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const LEN: usize = 1 << 20;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let framing = Framing::from_name(&args[1]).expect("json or cbor");
    let count: usize = args[3].parse().expect("count");
    let escapes = args.get(4).is_some_and(|a| a == "escapes");
    let template: String = (0..LEN)
        .map(|i| {
            if escapes && i % 1000 == 999 {
                '"'
            } else {
                (b'a' + (i % 26) as u8) as char
            }
        })
        .collect();
    let template = Str::from(template.as_str());
    match args[2].as_str() {
        "enc" => {
            let mut out = Outbox::default();
            let mut total = 0;
            for i in 0..count {
                let mut m = msg!["bulk", i, template.clone()];
                total += encode(framing, &mut m.0, &mut out);
            }
            black_box(total);
        }
        "dec" => {
            let mut stream = Vec::new();
            for i in 0..count {
                let m = msg!["bulk", i, template.clone()];
                aemp_proto::codec::encode_frame(framing, "bulkport", &m.0, &mut stream);
            }
            assert_eq!(decode(framing, &stream), count);
        }
        _ => panic!("enc or dec"),
    }
}

/// Encodes one message; the measured part of `enc` (callgrind `--toggle-collect=*encode*`).
#[inline(never)]
fn encode(framing: Framing, m: &mut [Value], out: &mut Outbox) -> usize {
    encode_frame_owned(framing, "bulkport", m, out);
    let n = out.pieces().map(<[u8]>::len).sum::<usize>();
    out.clear();
    n
}

/// Decodes the stream; the measured part of `dec` (callgrind `--toggle-collect=*decode*`).
#[inline(never)]
fn decode(framing: Framing, stream: &[u8]) -> usize {
    let mut d = Decoder::new(framing, Limits::default());
    let mut frames = Vec::new();
    let mut rest = stream;
    let mut n = 0;
    while !rest.is_empty() {
        let k = d.fill(rest, 256 << 10);
        rest = &rest[k..];
        d.frames_into(&mut frames).expect("valid stream");
        for (_, m) in frames.drain(..) {
            assert!(matches!(m.get(2), Some(Value::Str(s)) if s.len() == LEN));
            n += 1;
        }
    }
    n
}

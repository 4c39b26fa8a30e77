//! Micro-benchmark of the data-phase codecs on the remote-benchmark frame shape
//! `["name","msg",123,"<48 chars>"]`, plus one 100 MiB message in 4 KiB feeds, and the
//! sending side's limit check (`Limits::check_frame`) on that shape and a nested one.
//!
//! Run with `cargo run --release -p aemp-proto --example codec_bench`.

use aemp_proto::codec::{decode_frame, encode_frame, Decoder, Framing, Limits};
use aemp_proto::{msg, Value};
use std::hint::black_box;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::time::Instant;

const FRAMES: usize = 2_000_000;

fn main() {
    let payload = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKL";
    assert_eq!(payload.len(), 48);
    let m = msg!["msg", 123, payload];
    for framing in [Framing::Json, Framing::Cbor] {
        // Encode into a reused buffer, as a connection's write buffer would be.
        let mut out = Vec::with_capacity(1 << 16);
        let start = Instant::now();
        for _ in 0..FRAMES {
            out.clear();
            encode_frame(
                framing,
                black_box("name"),
                black_box(m.as_slice()),
                &mut out,
            );
            black_box(&out);
        }
        let enc_ns = start.elapsed().as_nanos() as f64 / FRAMES as f64;
        let frame_len = out.len();

        // Decode a stream of back-to-back frames fed in 64 KiB reads.
        let mut stream = Vec::with_capacity(frame_len * FRAMES);
        for _ in 0..FRAMES {
            encode_frame(framing, "name", m.as_slice(), &mut stream);
        }
        let mut d = Decoder::new(framing, Limits::default());
        let start = Instant::now();
        let mut n = 0;
        for chunk in stream.chunks(64 << 10) {
            d.feed(chunk);
            while let Some(v) = d.next_value().unwrap() {
                let (port, msg) = decode_frame(v).unwrap();
                black_box((port, msg));
                n += 1;
            }
        }
        assert_eq!(n, FRAMES);
        let dec_ns = start.elapsed().as_nanos() as f64 / FRAMES as f64;
        // The same stream through the direct frame path (what connections use).
        let mut d = Decoder::new(framing, Limits::default());
        let start = Instant::now();
        let mut n = 0;
        let mut frames = Vec::new();
        for chunk in stream.chunks(64 << 10) {
            d.feed(chunk);
            n += d.frames_into(&mut frames).unwrap();
            black_box(&frames);
            frames.clear();
        }
        assert_eq!(n, FRAMES);
        let frame_ns = start.elapsed().as_nanos() as f64 / FRAMES as f64;
        // The same frame decoded over and over from a small buffer (hot cache).
        let one = &stream[..frame_len];
        let mut d = Decoder::new(framing, Limits::default());
        let start = Instant::now();
        for _ in 0..FRAMES {
            d.feed(one);
            let v = d.next_value().unwrap();
            black_box(decode_frame(black_box(v).unwrap_or_default()).unwrap());
        }
        let hot_ns = start.elapsed().as_nanos() as f64 / FRAMES as f64;
        println!(
            "{framing}: frame {frame_len} bytes, encode {enc_ns:.1} ns/frame, decode+split {dec_ns:.1} ns/frame (stream), frames_into {frame_ns:.1} ns/frame (stream), {hot_ns:.1} ns/frame (hot)"
        );

        // The limit check senders run on every message: the flat frame, and a nested one
        // (a map of lists), next to encoding the nested one.
        let limits = Limits::default();
        let nested = msg![
            "nested",
            Value::Map(vec![
                (
                    "a".into(),
                    aemp_proto::list![1, 2, 3, aemp_proto::list!["x", "y"]]
                ),
                ("b".into(), aemp_proto::list![4.5, Value::Null, true]),
            ])
        ];
        for (shape, m) in [("flat", &m), ("nested", &nested)] {
            let start = Instant::now();
            for _ in 0..FRAMES {
                black_box(limits.check_frame(framing, black_box("name"), black_box(m.as_slice())))
                    .unwrap();
            }
            let check_ns = start.elapsed().as_nanos() as f64 / FRAMES as f64;
            let start = Instant::now();
            for _ in 0..FRAMES {
                out.clear();
                encode_frame(
                    framing,
                    black_box("name"),
                    black_box(m.as_slice()),
                    &mut out,
                );
                black_box(&out);
            }
            let enc_ns = start.elapsed().as_nanos() as f64 / FRAMES as f64;
            println!(
                "{framing}: {shape} frame {} bytes: check {check_ns:.1} ns, encode {enc_ns:.1} ns",
                out.len()
            );
        }

        // One 100 MiB message arriving in 4 KiB reads: must be linear.
        let big = Value::from("z".repeat(100 << 20));
        let mut bytes = Vec::new();
        encode_frame(framing, "p", std::slice::from_ref(&big), &mut bytes);
        let mut d = Decoder::new(framing, Limits::default());
        let start = Instant::now();
        let mut got = 0;
        for chunk in bytes.chunks(4096) {
            d.feed(chunk);
            while d.next_value().unwrap().is_some() {
                got += 1;
            }
        }
        assert_eq!(got, 1);
        println!(
            "{framing}: 100 MiB message in 4 KiB feeds: {:.0} ms",
            start.elapsed().as_secs_f64() * 1000.0
        );
    }
}

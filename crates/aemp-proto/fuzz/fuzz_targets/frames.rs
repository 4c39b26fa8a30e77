//! The receive path of a connection: arbitrary bytes, split into arbitrary reads, through
//! `Decoder::fill` and `frames_into_max` (both framings, detached long strings included).
//! Must never panic, and must agree with `next_value` + `decode_frame` on every frame it
//! yields before the first error.
#![no_main]

use aemp_proto::codec::{decode_frame, Decoder, Framing, Limits, DETACH_MIN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let framing = if ctl & 1 == 0 {
        Framing::Cbor
    } else {
        Framing::Json
    };
    let limits = Limits {
        max_depth: 1 + usize::from(ctl >> 4),
        max_message: 4 * DETACH_MIN,
    };
    // Inputs are short: a long string at the end of a frame is made by repeating the input's
    // tail, so the detached path is reachable.
    let mut bytes = rest.to_vec();
    if ctl & 2 != 0 && !rest.is_empty() {
        let fill = rest[rest.len() - 1];
        bytes.extend(std::iter::repeat(fill).take(DETACH_MIN + usize::from(ctl)));
    }
    let step = 1 + usize::from(ctl >> 2) * 97;

    let mut by_values = Vec::new();
    let mut d = Decoder::new(framing, limits);
    d.feed(&bytes);
    while let Ok(Some(v)) = d.next_value() {
        match decode_frame(v) {
            Ok(f) => by_values.push(f),
            Err(_) => break,
        }
    }

    let mut d = Decoder::new(framing, limits);
    let mut frames = Vec::new();
    let mut left = &bytes[..];
    while !left.is_empty() {
        let n = d.fill(left, step);
        left = &left[n..];
        if d.frames_into_max(&mut frames, 3).is_err() {
            break;
        }
    }
    let _ = d.frames_into(&mut frames);
    let n = frames.len().min(by_values.len());
    assert_eq!(
        format!("{:?}", &frames[..n]),
        format!("{:?}", &by_values[..n])
    );
});

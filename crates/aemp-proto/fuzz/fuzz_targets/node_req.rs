//! Node-port requests decoded from arbitrary frames: the frame decoder's
//! output goes to `node_req::parse`, as a connection's node port would see it.
#![no_main]

use aemp_proto::codec::{Decoder, Framing, Limits};
use aemp_proto::node_req;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, input)) = data.split_first() else {
        return;
    };
    let framing = if ctl & 1 == 0 {
        Framing::Cbor
    } else {
        Framing::Json
    };
    let mut d = Decoder::new(framing, Limits::default());
    d.feed(input);
    let mut frames = Vec::new();
    let _ = d.frames_into(&mut frames);
    for (_, msg) in frames {
        let _ = node_req::parse(msg);
    }
});

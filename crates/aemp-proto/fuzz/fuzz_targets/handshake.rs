//! The handshake state machine fed arbitrary peer bytes in arbitrary pieces, as one side
//! with a secret: must never panic, whatever it decides.
#![no_main]

use aemp_proto::handshake::{new_nonce, Handshake, HandshakeConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, input)) = data.split_first() else {
        return;
    };
    let cfg = HandshakeConfig::new("me", Some(b"secret".to_vec()));
    let mut hs = Handshake::new(&cfg, "127.0.0.1:2", new_nonce());
    let _ = hs.initial_bytes();
    let step = 1 + usize::from(ctl);
    let mut off = 0;
    while off < input.len() {
        let end = (off + step).min(input.len());
        match hs.feed(&input[off..end]) {
            Ok(0) | Err(_) => break,
            Ok(n) => off += n,
        }
        while hs.poll_event().is_some() {}
    }
});

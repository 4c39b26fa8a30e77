//! Replays the complete TCP byte streams recorded between Perl AnyEvent::MP 2.02 nodes
//! (shared/vectors/sessions/*, see its README.md) through the data-phase decoder: fed whole,
//! in the recorded TCP chunks, and one byte at a time.

use aemp_proto::codec::{decode_frame, Decoder, Framing, Limits};
mod common;

use aemp_proto::Value;
use common::{expected, has_special, same, VECTORS};
use serde_json::Value as J;

const SESSIONS: [&str; 5] = [
    "a_join_ping_cbor",
    "b_join_ping_json",
    "c_spawn_mon_kil",
    "d_db_node_leaving",
    "e_direct_connect_after_g_find",
];

struct Direction {
    name: String,
    framing: Framing,
    /// The data phase: the file without its 3 handshake lines.
    data: Vec<u8>,
    /// Recorded `recv()` chunk boundaries, as lengths within `data`.
    chunks: Vec<usize>,
    /// Expected messages with their end offsets within `data`.
    messages: Vec<(Value, usize)>,
}

fn directions() -> Vec<Direction> {
    let mut out = Vec::new();
    for session in SESSIONS {
        let dir = format!("{VECTORS}/sessions/{session}");
        let doc: J =
            serde_json::from_str(&std::fs::read_to_string(format!("{dir}/session.json")).unwrap())
                .unwrap();
        for conn in doc["connections"].as_array().unwrap() {
            for (side, d) in conn["directions"].as_object().unwrap() {
                let name = format!("{session}/{}.{side}", conn["file_prefix"].as_str().unwrap());
                let file = std::fs::read(format!("{dir}/{}", d["file"].as_str().unwrap())).unwrap();
                assert_eq!(
                    file.len() as u64,
                    d["total_bytes"].as_u64().unwrap(),
                    "{name}"
                );
                let hs = d["handshake_bytes"].as_u64().unwrap() as usize;
                // The handshake is exactly 3 LF-terminated lines.
                let lfs: Vec<usize> = file[..hs]
                    .iter()
                    .enumerate()
                    .filter(|(_, &b)| b == b'\n')
                    .map(|(i, _)| i)
                    .collect();
                assert_eq!(lfs.len(), 3, "{name}");
                assert_eq!(lfs[2], hs - 1, "{name}");
                let auth = std::str::from_utf8(&file[lfs[1] + 1..lfs[2]]).unwrap();
                assert_eq!(auth, d["auth_line"].as_str().unwrap(), "{name}");
                // The data framing is field 3 of the sender's own auth line.
                let framing_name = auth.split(';').nth(2).unwrap();
                assert_eq!(framing_name, d["framing"].as_str().unwrap(), "{name}");
                let framing = Framing::from_name(framing_name).unwrap();
                let mut chunks = Vec::new();
                for c in d["chunks"].as_array().unwrap() {
                    let (off, len) = (
                        c["offset"].as_u64().unwrap() as usize,
                        c["length"].as_u64().unwrap() as usize,
                    );
                    let end = off + len;
                    if end > hs {
                        chunks.push(end - off.max(hs));
                    }
                }
                let messages: Vec<(Value, usize)> = d["messages"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| {
                        let end = (m["offset"].as_u64().unwrap() + m["length"].as_u64().unwrap())
                            as usize;
                        {
                            assert!(
                                !has_special(&m["decoded"]),
                                "sessions hold no special values"
                            );
                            (expected(&m["decoded"]), end - hs)
                        }
                    })
                    .collect();
                assert_eq!(
                    messages.len() as u64,
                    d["message_count"].as_u64().unwrap(),
                    "{name}"
                );
                let data = file[hs..].to_vec();
                assert_eq!(chunks.iter().sum::<usize>(), data.len(), "{name}");
                out.push(Direction {
                    name,
                    framing,
                    data,
                    chunks,
                    messages,
                });
            }
        }
    }
    out
}

/// Feeds `pieces` in order, collecting every value with the stream offset where it ended.
fn replay<'a>(
    framing: Framing,
    pieces: impl Iterator<Item = &'a [u8]>,
) -> (Vec<(Value, usize)>, usize) {
    let mut d = Decoder::new(framing, Limits::default());
    let mut fed = 0;
    let mut got = Vec::new();
    for p in pieces {
        d.feed(p);
        fed += p.len();
        while let Some(v) = d.next_value().unwrap() {
            got.push((v, fed - d.buffered()));
        }
    }
    (got, d.buffered())
}

fn check(dir: &Direction, how: &str, got: Vec<(Value, usize)>, left: usize) {
    assert_eq!(left, 0, "{} ({how}): bytes left over", dir.name);
    assert_eq!(got.len(), dir.messages.len(), "{} ({how})", dir.name);
    for (i, ((v, end), (want, want_end))) in got.iter().zip(&dir.messages).enumerate() {
        assert!(
            same(v, want),
            "{} ({how}) message {}: got {v}\nwant {want}",
            dir.name,
            i + 1
        );
        assert_eq!(
            end,
            want_end,
            "{} ({how}) message {} boundary",
            dir.name,
            i + 1
        );
        decode_frame(v.clone()).unwrap();
    }
}

#[test]
fn sessions_replay() {
    let dirs = directions();
    // 5 sessions with 1 + 1 + 1 + 2 + 3 connections, two directions each.
    assert_eq!(dirs.len(), 16);
    let mut framings = (0, 0);
    for dir in &dirs {
        match dir.framing {
            Framing::Json => framings.0 += 1,
            Framing::Cbor => framings.1 += 1,
        }
        let (got, left) = replay(dir.framing, std::iter::once(&dir.data[..]));
        check(dir, "whole", got, left);

        let mut rest = &dir.data[..];
        let pieces = dir.chunks.iter().map(|&n| {
            let (a, b) = rest.split_at(n);
            rest = b;
            a
        });
        let (got, left) = replay(dir.framing, pieces);
        check(dir, "recorded chunks", got, left);

        let (got, left) = replay(dir.framing, dir.data.chunks(1));
        check(dir, "byte by byte", got, left);
    }
    assert!(framings.0 > 0 && framings.1 > 0, "both framings covered");
}

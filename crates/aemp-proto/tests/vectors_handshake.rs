//! Conformance of the handshake against handshakes captured from Perl AnyEvent::MP 2.02
//! nodes (`shared/vectors/handshake.json`, see its README).
//!
//! The vectors live outside the crate: set `AEMP_VECTORS_DIR` to their folder, otherwise
//! `../../../shared/vectors` relative to this crate and `/work/shared/vectors` are tried.

use std::collections::BTreeMap;
use std::path::PathBuf;

use aemp_proto::handshake::{
    hmac_sha3_512_token, verify, Event, Greeting, Handshake, HandshakeConfig, HandshakeError,
    Transcript, HMAC_SHA3_512, SUPPORTED_FRAMINGS,
};
use serde_json::Value as Json;

fn vectors() -> Json {
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::var_os("AEMP_VECTORS_DIR") {
        candidates.push(PathBuf::from(dir));
    }
    candidates.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors"));
    candidates.push(PathBuf::from("/work/shared/vectors"));
    for dir in &candidates {
        if let Ok(text) = std::fs::read_to_string(dir.join("handshake.json")) {
            return serde_json::from_str(&text).expect("handshake.json is valid JSON");
        }
    }
    panic!("handshake.json not found in any of {candidates:?}; set AEMP_VECTORS_DIR");
}

fn s<'a>(v: &'a Json, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} is not a string"))
}

fn strings(v: &Json) -> Vec<String> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_str().expect("string").to_owned())
        .collect()
}

/// The configuration the captured side effectively had, as far as the choice rules see it:
/// its own auth list and its framings without `storable` (which we never speak).
fn config_for(side: &Json, secret: Vec<u8>) -> HandshakeConfig {
    let parsed = &side["line1_parsed"];
    let mut cfg = HandshakeConfig::new(s(side, "node_id"), Some(secret));
    cfg.auth_accept = strings(&parsed["auth_accept"]);
    cfg.framings = strings(&parsed["framings"])
        .into_iter()
        .filter(|f| SUPPORTED_FRAMINGS.contains(&f.as_str()))
        .collect();
    cfg
}

fn machine_for(side: &Json, secret: Vec<u8>) -> Handshake {
    let cfg = config_for(side, secret);
    let hs = Handshake::with_lines(
        &cfg,
        s(side, "line1").to_owned(),
        s(side, "line2").to_owned(),
    );
    assert_eq!(hs.error(), None, "{}", s(side, "node_id"));
    hs
}

fn drain(hs: &mut Handshake) -> Vec<Event> {
    std::iter::from_fn(|| hs.poll_event()).collect()
}

fn check_parsed(side: &Json) {
    let g = Greeting::parse(s(side, "line1")).unwrap();
    let p = &side["line1_parsed"];
    assert_eq!(g.protocol, s(p, "protocol"));
    assert_eq!(g.version, s(p, "version"));
    assert_eq!(g.node_id, s(p, "node_id"));
    assert_eq!(g.auth, strings(&p["auth_accept"]));
    assert_eq!(g.framings, strings(&p["framings"]));
    let kv: BTreeMap<String, String> =
        g.kv.iter()
            .map(|(k, v)| (k.clone(), v.clone().expect("every captured kv has a value")))
            .collect();
    let expected: BTreeMap<String, String> = p["kv"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(kv, expected);
    let order: Vec<String> = g.kv.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(order, strings(&p["kv_order_as_sent"]));
    assert_eq!(g.to_line(), s(side, "line1"));
}

fn transcript<'a>(own: &'a Json, peer: &'a Json) -> Transcript<'a> {
    Transcript {
        own_l1: s(own, "line1"),
        own_l2: s(own, "line2"),
        peer_l1: s(peer, "line1"),
        peer_l2: s(peer, "line2"),
    }
}

/// Feeds `bytes` in chunks of `chunk` bytes (0 = all at once) and returns the total consumed.
fn feed_chunked(hs: &mut Handshake, bytes: &[u8], chunk: usize) -> Result<usize, HandshakeError> {
    if chunk == 0 {
        return hs.feed(bytes);
    }
    let mut total = 0;
    for piece in bytes.chunks(chunk) {
        total += hs.feed(piece)?;
    }
    Ok(total)
}

#[test]
fn every_case_parses_and_tokens_match() {
    let v = vectors();
    let cases = v["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 18);
    for case in cases {
        let name = s(case, "name");
        let secret = hex::decode(s(case, "secret_hex")).unwrap();
        assert_eq!(
            secret.len() as u64,
            case["secret_length_bytes"].as_u64().unwrap()
        );
        let (c, a) = (&case["connecting_side"], &case["accepting_side"]);
        for (own, peer) in [(c, a), (a, c)] {
            check_parsed(own);
            assert_eq!(s(own, "line2").len(), 88, "{name}");
            let t = transcript(own, peer);
            let token = hmac_sha3_512_token(&secret, t.own_l1, t.own_l2, t.peer_l1, t.peer_l2);
            assert_eq!(token, s(own, "auth_token"), "{name}");
            assert_eq!(
                s(own, "auth_line"),
                format!("{HMAC_SHA3_512};{token};{}", s(own, "send_framing"))
            );
            // The peer verifies this token with its own view of the lines.
            let peer_view = transcript(peer, own);
            assert_eq!(
                verify(HMAC_SHA3_512, &token, Some(&secret), false, &peer_view),
                Ok(()),
                "{name}"
            );
        }
    }
}

#[test]
fn every_case_establishes_as_either_side() {
    let v = vectors();
    for case in v["cases"].as_array().unwrap() {
        let name = s(case, "name");
        let secret = hex::decode(s(case, "secret_hex")).unwrap();
        let (c, a) = (&case["connecting_side"], &case["accepting_side"]);
        for (own, peer) in [(c, a), (a, c)] {
            let peer_bytes = hex::decode(s(peer, "handshake_bytes_hex")).unwrap();
            // Whole, byte at a time, odd chunks; and with data-phase bytes behind the lines.
            for chunk in [0, 1, 7] {
                for trailer in [&b""[..], &b"\x82\x41\x31\x41\x32"[..], &b"[\"\"]"[..]] {
                    let mut hs = machine_for(own, secret.clone());
                    let mut input = peer_bytes.clone();
                    input.extend_from_slice(trailer);
                    let used = feed_chunked(&mut hs, &input, chunk).unwrap();
                    assert_eq!(used, peer_bytes.len(), "{name}");
                    assert!(hs.is_established(), "{name}");
                    let events = drain(&mut hs);
                    assert_eq!(events.len(), 3, "{name}: {events:?}");
                    let Event::PeerGreeting(g) = &events[0] else {
                        panic!("{name}: {events:?}")
                    };
                    assert_eq!(g, &Greeting::parse(s(peer, "line1")).unwrap());
                    let expected_send = format!("{}\n", s(own, "auth_line")).into_bytes();
                    assert_eq!(events[1], Event::Send(expected_send), "{name}");
                    let Event::Established(est) = &events[2] else {
                        panic!("{name}: {events:?}")
                    };
                    assert_eq!(est.peer.node_id, s(peer, "node_id"));
                    assert_eq!(est.auth_method, HMAC_SHA3_512);
                    assert_eq!(est.sent_auth_method, HMAC_SHA3_512);
                    assert_eq!(est.send_framing, s(own, "send_framing"), "{name}");
                    assert_eq!(est.recv_framing, s(peer, "send_framing"), "{name}");
                    assert!(!est.untrusted && !est.tls && !est.upgraded);
                    assert_eq!(est.protocol, "aemp");
                    // Once established, nothing more is consumed.
                    assert_eq!(hs.feed(trailer).unwrap(), 0);
                }
            }
        }
    }
}

#[test]
fn send_framings_follow_the_cases() {
    // The captured framing choices, per direction, as the README states them.
    let v = vectors();
    for case in v["cases"].as_array().unwrap() {
        let (c, a) = (&case["connecting_side"], &case["accepting_side"]);
        assert_eq!(
            s(c, "send_framing"),
            s(&case["send_framing"], "connecting_to_accepting")
        );
        assert_eq!(
            s(a, "send_framing"),
            s(&case["send_framing"], "accepting_to_connecting")
        );
    }
}

#[test]
fn wrong_secrets_are_rejected() {
    let v = vectors();
    let negatives = v["negative_cases"].as_array().unwrap();
    let mut seen = 0;
    for case in negatives.iter().filter(|c| {
        let n = s(c, "name");
        n.starts_with("n01") || n.starts_with("n02") || n.starts_with("n03")
    }) {
        seen += 1;
        let name = s(case, "name");
        let sides = [
            ("connecting_side", "accepting_side"),
            ("accepting_side", "connecting_side"),
        ];
        for (own_key, peer_key) in sides {
            let (own, peer) = (&case[own_key], &case[peer_key]);
            let secret = hex::decode(s(case, &format!("{own_key}_secret_hex"))).unwrap();
            // What we would have expected from the peer.
            let expected = hmac_sha3_512_token(
                &secret,
                s(peer, "line1"),
                s(peer, "line2"),
                s(own, "line1"),
                s(own, "line2"),
            );
            assert_eq!(
                expected,
                s(
                    &case["checks"],
                    &format!("token_expected_by_{}_from_{}", own_key, peer_key)
                ),
                "{name}"
            );
            let mut hs = machine_for(own, secret);
            let peer_bytes = hex::decode(s(peer, "handshake_bytes_hex")).unwrap();
            let auth_start = s(peer, "line1").len() + s(peer, "line2").len() + 2;
            // Our own auth line still goes out, valid under our own secret…
            assert_eq!(hs.feed(&peer_bytes[..auth_start]), Ok(auth_start));
            let events = drain(&mut hs);
            assert_eq!(
                events.last(),
                Some(&Event::Send(
                    format!("{}\n", s(own, "auth_line")).into_bytes()
                )),
                "{name}"
            );
            // …and the peer's is refused.
            assert_eq!(
                hs.feed(&peer_bytes[auth_start..]),
                Err(HandshakeError::AuthFailure),
                "{name}"
            );
            assert_eq!(hs.poll_event(), None);
            assert!(!hs.is_established());
            assert_eq!(hs.error(), Some(&HandshakeError::AuthFailure));
        }
    }
    assert_eq!(seen, 3);
}

#[test]
fn self_connection_is_refused_after_line1() {
    let v = vectors();
    let case = v["negative_cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| s(c, "name").starts_with("n04"))
        .expect("n04 exists");
    let secret = s(case, "connecting_side_secret").as_bytes().to_vec();
    let (c, a) = (&case["connecting_side"], &case["accepting_side"]);
    for (own, peer) in [(c, a), (a, c)] {
        let mut hs = machine_for(own, secret.clone());
        let peer_bytes = hex::decode(s(peer, "handshake_bytes_hex")).unwrap();
        let line1_len = s(peer, "line1").len() + 1;
        // Refused as soon as line 1 is complete, even byte by byte.
        for (i, b) in peer_bytes.iter().enumerate() {
            let r = hs.feed(std::slice::from_ref(b));
            if i + 1 < line1_len {
                assert_eq!(r, Ok(1));
            } else {
                assert_eq!(r, Err(HandshakeError::TalkToMyself));
                break;
            }
        }
        assert_eq!(hs.poll_event(), None, "no PeerGreeting and no auth line");
        assert_eq!(hs.error(), Some(&HandshakeError::TalkToMyself));
    }
}

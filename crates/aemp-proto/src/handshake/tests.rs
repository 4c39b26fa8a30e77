//! State-machine tests: two handshakes talking to each other in memory, and hand-made peers
//! for the cases Perl never produces.

use super::*;

const SECRET: &[u8] = b"geheim";

fn cfg(node: &str, secret: Option<&[u8]>) -> HandshakeConfig {
    HandshakeConfig::new(node, secret.map(<[u8]>::to_vec))
}

/// One side of an in-memory connection.
struct Side {
    hs: Handshake,
    /// Bytes sent by the other side and not yet used by `hs`.
    inbox: Vec<u8>,
    est: Option<Established>,
    tls_client: Option<bool>,
    greeting: bool,
}

impl Side {
    fn new(c: &HandshakeConfig, nonce: &str) -> Side {
        Side {
            hs: Handshake::new(c, "127.0.0.1:4040", nonce.to_owned()),
            inbox: Vec::new(),
            est: None,
            tls_client: None,
            greeting: false,
        }
    }

    /// Feeds the inbox in `chunk`-byte pieces (0 = all at once) until the handshake stops
    /// using bytes; handles events, appending what it sends to `out`.
    fn step(&mut self, chunk: usize, out: &mut Vec<u8>) -> Result<(), HandshakeError> {
        loop {
            let n = if chunk == 0 {
                self.inbox.len()
            } else {
                chunk.min(self.inbox.len())
            };
            let used = self.hs.feed(&self.inbox[..n])?;
            self.inbox.drain(..used);
            while let Some(ev) = self.hs.poll_event() {
                match ev {
                    Event::PeerGreeting(_) => self.greeting = true,
                    Event::StartTls { client } => {
                        // In memory the "TLS layer" passes bytes through unchanged.
                        self.tls_client = Some(client);
                        self.hs.tls_started()?;
                    }
                    Event::Send(bytes) => out.extend_from_slice(&bytes),
                    Event::Established(e) => self.est = Some(e),
                }
            }
            if used == 0 || self.inbox.is_empty() {
                return Ok(());
            }
        }
    }
}

/// Runs two handshakes against each other; `a_first` decides who reads first in each round.
fn run(
    ca: &HandshakeConfig,
    cb: &HandshakeConfig,
    a_first: bool,
    chunk: usize,
) -> (
    Side,
    Side,
    Result<(), HandshakeError>,
    Result<(), HandshakeError>,
) {
    let mut a = Side::new(ca, &new_nonce());
    let mut b = Side::new(cb, &new_nonce());
    a.inbox = b.hs.initial_bytes();
    b.inbox = a.hs.initial_bytes();
    let (mut ra, mut rb) = (Ok(()), Ok(()));
    for _ in 0..10 {
        for turn in [a_first, !a_first] {
            let (me, other, r) = if turn {
                (&mut a, &mut b, &mut ra)
            } else {
                (&mut b, &mut a, &mut rb)
            };
            if r.is_ok() {
                let mut out = Vec::new();
                *r = me.step(chunk, &mut out);
                other.inbox.extend_from_slice(&out);
            }
        }
    }
    (a, b, ra, rb)
}

#[test]
fn two_machines_in_memory() {
    for a_first in [true, false] {
        for chunk in [0, 1, 5] {
            let ca = cfg("alpha", Some(SECRET));
            let mut cb = cfg("beta", Some(SECRET));
            cb.framings = vec!["json".into(), "cbor".into()];
            let (a, b, ra, rb) = run(&ca, &cb, a_first, chunk);
            assert_eq!((ra, rb), (Ok(()), Ok(())));
            let (ea, eb) = (a.est.unwrap(), b.est.unwrap());
            assert!(a.greeting && b.greeting);
            assert_eq!(ea.peer.node_id, "beta");
            assert_eq!(eb.peer.node_id, "alpha");
            assert_eq!(
                (ea.auth_method.as_str(), eb.auth_method.as_str()),
                (HMAC_SHA3_512, HMAC_SHA3_512)
            );
            // Each side picks from the peer's list: alpha sends json, beta sends cbor.
            assert_eq!(ea.send_framing, "json");
            assert_eq!(eb.send_framing, "cbor");
            assert_eq!(ea.recv_framing, eb.send_framing);
            assert_eq!(eb.recv_framing, ea.send_framing);
            assert!(!ea.tls && !ea.untrusted && a.tls_client.is_none());
            assert!(a.inbox.is_empty() && b.inbox.is_empty());
        }
    }
}

#[test]
fn mismatched_secrets_fail_on_both_sides() {
    for a_first in [true, false] {
        let (_, _, ra, rb) = run(
            &cfg("alpha", Some(b"one")),
            &cfg("beta", Some(b"two")),
            a_first,
            1,
        );
        assert_eq!(ra, Err(HandshakeError::AuthFailure));
        assert_eq!(rb, Err(HandshakeError::AuthFailure));
    }
}

#[test]
fn the_own_auth_line_stays_known_after_a_mismatch() {
    let ca = cfg("alpha", Some(b"one"));
    let cb = cfg("beta", Some(b"two"));
    let mut a = Side::new(&ca, &new_nonce());
    let mut b = Side::new(&cb, &new_nonce());
    assert_eq!(
        a.hs.own_auth_line(),
        None,
        "not chosen before the peer's line 2"
    );
    // b has sent its greeting and its auth line before a reads any of it: a's own line
    // (queued, not yet taken) is dropped with the failure but can still be had.
    b.inbox = a.hs.initial_bytes();
    let mut b_out = b.hs.initial_bytes();
    b.step(0, &mut b_out).unwrap();
    a.inbox = b_out;
    assert_eq!(
        a.hs.feed(&a.inbox.clone()),
        Err(HandshakeError::AuthFailure)
    );
    let line = a.hs.own_auth_line().expect("chosen").to_vec();
    assert!(line.starts_with(b"hmac_sha3_512;") && line.ends_with(b"\n"));
    // b sees the mismatch in it.
    b.inbox = line;
    assert_eq!(b.step(0, &mut Vec::new()), Err(HandshakeError::AuthFailure));
}

#[test]
fn tls_on_both_sides_uses_tls_sha3_without_secret() {
    for a_first in [true, false] {
        let mut ca = cfg("alpha", None);
        let mut cb = cfg("beta", None);
        ca.tls_available = true;
        cb.tls_available = true;
        let (a, b, ra, rb) = run(&ca, &cb, a_first, 1);
        assert_eq!((ra, rb), (Ok(()), Ok(())));
        let (ca_client, cb_client) = (a.tls_client.unwrap(), b.tls_client.unwrap());
        assert_ne!(ca_client, cb_client, "exactly one TLS client");
        assert_eq!(ca_client, a.hs.own_line2() < b.hs.own_line2());
        let (ea, eb) = (a.est.unwrap(), b.est.unwrap());
        assert!(ea.tls && eb.tls);
        assert_eq!(ea.auth_method, TLS_SHA3_512);
        assert_eq!(eb.sent_auth_method, TLS_SHA3_512);
    }
}

#[test]
fn tls_on_one_side_only_stays_plain() {
    let mut ca = cfg("alpha", Some(SECRET));
    ca.tls_available = true;
    let (a, b, ra, rb) = run(&ca, &cfg("beta", Some(SECRET)), true, 0);
    assert_eq!((ra, rb), (Ok(()), Ok(())));
    assert!(a.tls_client.is_none() && b.tls_client.is_none());
    assert_eq!(a.est.unwrap().auth_method, HMAC_SHA3_512);
}

#[test]
fn no_tls_and_no_secret_fails() {
    let (_, _, ra, rb) = run(&cfg("alpha", None), &cfg("beta", Some(b"")), true, 0);
    assert_eq!(ra, Err(HandshakeError::NoSecret));
    assert_eq!(rb, Err(HandshakeError::NoSecret));
}

#[test]
fn tls_anon_is_untrusted() {
    let mut ca = cfg("alpha", None);
    let mut cb = cfg("beta", None);
    ca.tls_available = true;
    cb.tls_available = true;
    ca.auth_offer = vec![TLS_ANON.into()];
    let (_, b, ra, rb) = run(&ca, &cb, false, 3);
    assert_eq!((ra, rb), (Ok(()), Ok(())));
    let eb = b.est.unwrap();
    assert_eq!(eb.auth_method, TLS_ANON);
    assert!(eb.untrusted);
}

/// A handshake for "alpha" plus a scripted peer "perl" whose lines we write by hand.
fn scripted(own: &HandshakeConfig, peer_l1: &str, peer_l2: &str) -> (Handshake, Vec<u8>) {
    let hs = Handshake::new(own, "127.0.0.1:4040", new_nonce());
    let bytes = format!("{peer_l1}\n{peer_l2}\n").into_bytes();
    (hs, bytes)
}

const PERL_L1: &str = "aemp;1;perl;tls_sha3_512,hmac_sha3_512,tls_anon,cleartext;cbor,json,storable;provider=AE-2.02;peeraddr=127.0.0.1:1;mproto=1;gproto=1";
const PERL_L2: &str =
    "cKYcdRChzYkhbKFs/8rqSYdHfobbzLlwRvwuGDhOUdggxcPvgAU6iK45lt5Q6AGGWzaYZU6/UgCl+gk5uZ16HXso";

fn perl_token(hs: &Handshake) -> String {
    hmac_sha3_512_token(SECRET, PERL_L1, PERL_L2, hs.own_line1(), hs.own_line2())
}

#[test]
fn garbage_greetings() {
    let c = cfg("alpha", Some(SECRET));
    for (input, expected) in [
        (&b"GET / HTTP/1.1\r\n"[..], "unparsable"),
        (b"\n", "unparsable"),
        (b"aemp;1;;hmac_sha3_512;json\n", "unparsable"),
        (b"foo;1;x;hmac_sha3_512;json\n", "unparsable"),
        (b"aemp-;1;x;hmac_sha3_512;json\n", "unparsable"),
        (b"aemp;2;x;hmac_sha3_512;json\n", "version"),
        (b"aemp;x;x;hmac_sha3_512;json\n", "version"),
        (b"aemp;1;x\xff;hmac_sha3_512;json\n", "UTF-8"),
    ] {
        let mut hs = Handshake::new(&c, "p", new_nonce());
        let err = hs.feed(input).unwrap_err();
        assert!(err.to_string().contains(expected), "{err} for {input:?}");
        assert_eq!(hs.poll_event(), None);
        // A failed handshake stays failed.
        assert_eq!(hs.feed(b"x\n"), Err(err));
    }
    // Numeric version 1.0 passes.
    let mut hs = Handshake::new(&c, "p", new_nonce());
    assert_eq!(hs.feed(b"aemp;1.0;x;hmac_sha3_512;json\n"), Ok(30));
    assert!(matches!(hs.poll_event(), Some(Event::PeerGreeting(_))));
}

#[test]
fn line_length_limit() {
    let c = cfg("alpha", Some(SECRET));
    let mut hs = Handshake::new(&c, "p", new_nonce());
    assert_eq!(hs.feed(&[b'a'; 4096]), Ok(4096));
    assert_eq!(hs.feed(b"a"), Err(HandshakeError::LineTooLong));

    let mut hs = Handshake::new(&c, "p", new_nonce());
    assert_eq!(hs.feed(&[b'a'; 4097]), Err(HandshakeError::LineTooLong));

    // Exactly 4096 bytes before the LF is still a line.
    let head = "aemp;1;perl;hmac_sha3_512;json;pad=";
    let line = format!("{head}{}\n", "x".repeat(MAX_LINE - head.len()));
    let mut hs = Handshake::new(&c, "p", new_nonce());
    assert_eq!(hs.feed(line.as_bytes()), Ok(MAX_LINE + 1));
    assert!(matches!(hs.poll_event(), Some(Event::PeerGreeting(_))));
    // …and one more is not, also when it arrives in pieces.
    let line = format!("{head}{}\n", "x".repeat(MAX_LINE + 1 - head.len()));
    let mut hs = Handshake::new(&c, "p", new_nonce());
    let mut result = Ok(0);
    for piece in line.as_bytes().chunks(1000) {
        result = hs.feed(piece);
        if result.is_err() {
            break;
        }
    }
    assert_eq!(result, Err(HandshakeError::LineTooLong));
}

#[test]
fn storable_only_peer() {
    let c = cfg("alpha", Some(SECRET));
    let (mut hs, bytes) = scripted(
        &c,
        "aemp;1;perl;hmac_sha3_512;storable;provider=AE-2.02",
        PERL_L2,
    );
    let err = hs.feed(&bytes).unwrap_err();
    assert_eq!(
        err,
        HandshakeError::PeerFramingsUnsupported("storable".into())
    );
    assert_eq!(
        err.to_string(),
        "peer only offers framings we do not support: storable"
    );
}

#[test]
fn storable_is_never_offered() {
    let mut c = cfg("alpha", Some(SECRET));
    let line = String::from_utf8(Handshake::new(&c, "p", new_nonce()).initial_bytes()).unwrap();
    assert!(!line.contains("storable"));
    c.framings.push("storable".into());
    let hs = Handshake::new(&c, "p", new_nonce());
    assert!(matches!(hs.error(), Some(HandshakeError::InvalidConfig(_))));
    assert!(hs.initial_bytes().is_empty());
}

#[test]
fn uppercase_token_rejected_lowercase_accepted() {
    let c = cfg("alpha", Some(SECRET));
    for (upper, ok) in [(true, false), (false, true)] {
        let (mut hs, mut bytes) = scripted(&c, PERL_L1, PERL_L2);
        let token = perl_token(&hs);
        let token = if upper { token.to_uppercase() } else { token };
        bytes.extend_from_slice(format!("hmac_sha3_512;{token};cbor\n").as_bytes());
        assert_eq!(hs.feed(&bytes).is_ok(), ok);
        assert_eq!(hs.is_established(), ok);
    }
}

#[test]
fn cleartext_is_accepted_but_only_if_advertised() {
    let mut c = cfg("alpha", Some(SECRET));
    let (mut hs, mut bytes) = scripted(&c, PERL_L1, PERL_L2);
    bytes.extend_from_slice(b"cleartext;67656865696d;json\n");
    assert_eq!(hs.feed(&bytes), Ok(bytes.len()));
    let events: Vec<_> = std::iter::from_fn(|| hs.poll_event()).collect();
    let Some(Event::Established(e)) = events.last() else {
        panic!("{events:?}")
    };
    assert_eq!(e.auth_method, CLEARTEXT);
    assert_eq!(e.sent_auth_method, HMAC_SHA3_512);
    assert_eq!(
        (e.send_framing.as_str(), e.recv_framing.as_str()),
        ("cbor", "json")
    );

    c.auth_accept.retain(|m| m != CLEARTEXT);
    let (mut hs, _) = scripted(&c, PERL_L1, PERL_L2);
    assert_eq!(
        hs.feed(&bytes),
        Err(HandshakeError::AuthMethodNotAccepted(CLEARTEXT.into()))
    );
}

#[test]
fn other_auth_line_failures() {
    let c = cfg("alpha", Some(SECRET));
    // Valid token, framing we cannot decode.
    let (mut hs, mut bytes) = scripted(&c, PERL_L1, PERL_L2);
    let token = perl_token(&hs);
    bytes.extend_from_slice(format!("hmac_sha3_512;{token};storable\n").as_bytes());
    assert_eq!(
        hs.feed(&bytes),
        Err(HandshakeError::UnusableRemoteFraming("storable".into()))
    );
    // Unknown method; a TLS method without TLS; an empty line.
    for (line, err) in [
        (
            "hmac_md6_64_256;00;json\n",
            HandshakeError::UnsupportedAuthMethod("hmac_md6_64_256".into()),
        ),
        ("tls_anon;;json\n", HandshakeError::AuthFailure),
        ("\n", HandshakeError::UnsupportedAuthMethod(String::new())),
    ] {
        let (mut hs, mut bytes) = scripted(&c, PERL_L1, PERL_L2);
        bytes.extend_from_slice(line.as_bytes());
        assert_eq!(hs.feed(&bytes), Err(err));
    }
    // Extra fields after the third are ignored, as Perl does.
    let (mut hs, mut bytes) = scripted(&c, PERL_L1, PERL_L2);
    let token = perl_token(&hs);
    bytes.extend_from_slice(format!("hmac_sha3_512;{token};json;extra\n").as_bytes());
    assert_eq!(hs.feed(&bytes), Ok(bytes.len()));
    assert!(hs.is_established());
}

#[test]
fn auth_list_order_pitfall() {
    // We advertise tls_sha3_512 before hmac_sha3_512, so a Perl peer under TLS picks TLS.
    let mut c = cfg("alpha", Some(SECRET));
    c.tls_available = true;
    let hs = Handshake::new(&c, "p", new_nonce());
    let ours = Greeting::parse(hs.own_line1()).unwrap();
    let tls_pos = ours.auth.iter().position(|m| m == TLS_SHA3_512).unwrap();
    let hmac_pos = ours.auth.iter().position(|m| m == HMAC_SHA3_512).unwrap();
    assert!(tls_pos < hmac_pos);
    assert!(ours.wants_tls());
    // A peer listing HMAC first makes us pick HMAC under TLS, which cannot be sent.
    let (mut hs, bytes) = scripted(
        &c,
        "aemp;1;perl;hmac_sha3_512,tls_sha3_512;cbor;tls=1.0",
        PERL_L2,
    );
    assert!(matches!(
        hs.feed(&bytes),
        Err(HandshakeError::UnsupportedSendAuth { .. })
    ));
    // The same list without TLS works: HMAC is exactly what is needed there.
    c.tls_available = false;
    let (mut hs, bytes) = scripted(
        &c,
        "aemp;1;perl;hmac_sha3_512,tls_sha3_512;cbor;tls=1.0",
        PERL_L2,
    );
    assert_eq!(hs.feed(&bytes), Ok(bytes.len()));
}

#[test]
fn leftover_bytes_stay_with_the_caller() {
    let c = cfg("alpha", Some(SECRET));
    let (mut hs, mut bytes) = scripted(&c, PERL_L1, PERL_L2);
    let token = perl_token(&hs);
    bytes.extend_from_slice(format!("hmac_sha3_512;{token};cbor\n").as_bytes());
    let handshake_len = bytes.len();
    bytes.extend_from_slice(b"\x82\x40\x44time\n\n");
    assert_eq!(hs.feed(&bytes), Ok(handshake_len));
    assert_eq!(hs.feed(b"more"), Ok(0));

    // Under TLS, feeding stops right after line 2: the rest is TLS records.
    let mut c = cfg("alpha", None);
    c.tls_available = true;
    let l1 = "aemp;1;perl;tls_sha3_512;cbor;tls=1";
    let (mut hs, mut bytes) = scripted(&c, l1, PERL_L2);
    let greeting_len = bytes.len();
    bytes.extend_from_slice(b"\x16\x03\x01\x02\x00\x01\n");
    assert_eq!(hs.feed(&bytes), Ok(greeting_len));
    assert_eq!(hs.feed(&bytes[greeting_len..]), Ok(0));
    let events: Vec<_> = std::iter::from_fn(|| hs.poll_event()).collect();
    assert!(matches!(
        events[..],
        [Event::PeerGreeting(_), Event::StartTls { .. }]
    ));
    hs.tls_started().unwrap();
    let Some(Event::Send(line)) = hs.poll_event() else {
        panic!("auth line after tls_started")
    };
    assert!(line.starts_with(b"tls_sha3_512;"));
    let token = tls_sha3_512_token(l1, PERL_L2, hs.own_line1(), hs.own_line2());
    let auth = format!("tls_sha3_512;{token};json\nDATA");
    assert_eq!(hs.feed(auth.as_bytes()), Ok(auth.len() - 4));
    assert!(hs.is_established());
}

#[test]
fn crlf_line_ends_are_stripped() {
    let c = cfg("alpha", Some(SECRET));
    let (mut hs, _) = scripted(&c, PERL_L1, PERL_L2);
    let token = perl_token(&hs);
    let bytes = format!("{PERL_L1}\r\n{PERL_L2}\r\nhmac_sha3_512;{token};cbor\r\n");
    assert_eq!(hs.feed(bytes.as_bytes()), Ok(bytes.len()));
    assert!(hs.is_established());
}

#[test]
fn sub_protocol_upgrade_and_echo() {
    // A DataConn initiator talks to an ordinary listener; even the same node ID is fine,
    // because sub-protocols skip the self check.
    let mut ca = cfg("node", Some(SECRET));
    ca.protocol = "aemp-dataconn".into();
    ca.extra_kv = vec![("dataconn_id".into(), "b@node".into())];
    let cb = cfg("node", Some(SECRET));
    let (a, b, ra, rb) = run(&ca, &cb, true, 1);
    assert_eq!((ra, rb), (Ok(()), Ok(())));
    let a_line = Greeting::parse(a.hs.own_line1()).unwrap();
    assert_eq!(a_line.mproto(), None);
    assert_eq!(a_line.dataconn_id(), Some("b@node"));
    let (ea, eb) = (a.est.unwrap(), b.est.unwrap());
    assert!(eb.upgraded && !ea.upgraded);
    assert_eq!(eb.protocol, "aemp-dataconn");
    assert_eq!(ea.protocol, "aemp-dataconn");
    assert_eq!(eb.peer.dataconn_id(), Some("b@node"));
    assert_eq!(b.hs.protocol(), "aemp-dataconn");

    // Our own lines coming back are refused.
    let mut hs = Handshake::new(&ca, "p", new_nonce());
    let own = hs.initial_bytes();
    assert_eq!(hs.feed(&own), Err(HandshakeError::Echo));

    // A listener of a sub-protocol does not upgrade to another one.
    let mut hs = Handshake::new(&ca, "p", new_nonce());
    assert!(matches!(
        hs.feed(b"aemp-other;1;x;hmac_sha3_512;json\n"),
        Err(HandshakeError::UnparsableGreeting(_))
    ));
}

#[test]
fn initial_bytes_shape() {
    let mut c = cfg("alpha", Some(SECRET));
    c.tls_available = true;
    c.provider = "aemp-rs-0.1".into();
    let nonce = new_nonce();
    let hs = Handshake::new(&c, "[::1]:4040", nonce.clone());
    let text = String::from_utf8(hs.initial_bytes()).unwrap();
    assert_eq!(
        text,
        format!(
            "aemp;1;alpha;tls_sha3_512,hmac_sha3_512,tls_anon,cleartext;cbor,json;\
             provider=aemp-rs-0.1;peeraddr=[::1]:4040;mproto=1;gproto=1;tls=1.0\n{nonce}\n"
        )
    );
    assert_eq!(hs.own_line2().len(), 88);
}

#[test]
fn invalid_configuration_and_misuse() {
    let good = cfg("alpha", Some(SECRET));
    let mut bad_node = good.clone();
    bad_node.node_id = "a;b".into();
    let mut bad_kv = good.clone();
    bad_kv.extra_kv = vec![("k=".into(), "v".into())];
    let mut bad_proto = good.clone();
    bad_proto.protocol = "other".into();
    let mut empty_auth = good.clone();
    empty_auth.auth_accept.clear();
    for c in [bad_node, bad_kv, bad_proto, empty_auth] {
        let mut hs = Handshake::new(&c, "p", new_nonce());
        assert!(matches!(hs.error(), Some(HandshakeError::InvalidConfig(_))));
        assert!(hs.feed(b"x\n").is_err());
    }
    assert!(Handshake::new(&good, "a\nb", new_nonce()).error().is_some());
    assert!(Handshake::new(&good, "p", "n\r".into()).error().is_some());
    assert!(Handshake::with_lines(&good, "a\nb".into(), "n".into())
        .error()
        .is_some());

    let mut hs = Handshake::new(&good, "p", new_nonce());
    assert!(matches!(
        hs.tls_started(),
        Err(HandshakeError::InvalidState(_))
    ));
}

#[test]
fn debug_output_hides_the_secret() {
    let c = cfg("alpha", Some(b"topsecretvalue"));
    let hs = Handshake::new(&c, "p", new_nonce());
    for text in [format!("{c:?}"), format!("{hs:?}")] {
        assert!(!text.contains("topsecretvalue") && !text.contains("116, 111, 112"));
        assert!(text.contains("redacted"), "{text}");
    }
}

#[test]
fn a_node_that_accepts_tls_only_refuses_a_plain_peer_and_the_peer_says_why() {
    for a_first in [true, false] {
        // alpha has a certificate and requires it; beta has only the secret.
        let mut ca = cfg("alpha", Some(SECRET));
        ca.tls_available = true;
        ca.auth_accept = vec![TLS_SHA3_512.into()];
        let cb = cfg("beta", Some(SECRET));
        let (a, _, ra, rb) = run(&ca, &cb, a_first, 0);
        assert_eq!(ra, Err(HandshakeError::TlsRequired("tls_sha3_512".into())));
        assert_eq!(
            rb,
            Err(HandshakeError::PeerRequiresTls("tls_sha3_512".into()))
        );
        assert!(a.est.is_none());
        // Both with certificates: TLS, accepted.
        let mut cb = cfg("beta", None);
        cb.tls_available = true;
        let (a, _, ra, rb) = run(&ca, &cb, a_first, 0);
        assert_eq!((ra, rb), (Ok(()), Ok(())));
        assert_eq!(a.est.unwrap().auth_method, TLS_SHA3_512);
    }
}

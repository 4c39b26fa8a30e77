//! The data connection state machine in virtual time.

use super::*;
use crate::msg;

const A: &str = "node-a";
const B: &str = "node-b";

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn port(node: &str, name: &str) -> PortId {
    PortId::from_parts(node, name)
}

fn effects(dc: &mut DataConns) -> Vec<Effect> {
    std::iter::from_fn(|| dc.poll_effect()).collect()
}

/// A table of `node` that allows at most `max` data connections.
fn capped(node: &str, max: usize) -> DataConns {
    DataConns::new(
        node,
        Limits {
            max,
            ..Limits::default()
        },
    )
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// An initiator on A that opened a data connection to B; returns its id.
fn opened(dc: &mut DataConns, t0: Instant) -> Str {
    let (id, r) = dc.open(
        B,
        port(A, "p"),
        "app::sink",
        vec![Value::from(7)],
        secs(5),
        &port(A, "echo"),
        t0,
    );
    assert_eq!(r, Ok(false));
    id
}

#[test]
fn ids_count_like_perl_strings() {
    let mut s = "a".to_owned();
    let mut seen = Vec::new();
    for _ in 0..27 {
        increment(&mut s);
        seen.push(s.clone());
    }
    assert_eq!(seen[0], "b");
    assert_eq!(seen[24], "z");
    assert_eq!(seen[25], "aa");
    assert_eq!(seen[26], "ab");
    let mut s = "az".to_owned();
    increment(&mut s);
    assert_eq!(s, "ba");
    let mut s = "zz".to_owned();
    increment(&mut s);
    assert_eq!(s, "aaa");
}

#[test]
fn initiator_dials_a_listening_target() {
    let t0 = Instant::now();
    let mut dc = DataConns::new(A, Limits::default());
    let id = opened(&mut dc, t0);
    assert_eq!(id.as_str(), "b@node-a");
    // The wire form of the reference: _expect, then the echo request.
    assert_eq!(
        effects(&mut dc),
        vec![
            Effect::Send {
                node: B.into(),
                msg: msg![EXPECT, "b@node-a", "node-a#p", 5, "app::sink", 7],
            },
            Effect::Send {
                node: B.into(),
                msg: msg!["snd", "node-a#echo"],
            },
        ]
    );
    assert_eq!(dc.count(), 1);
    // Nothing happens before the echo.
    dc.handle_timeout(t0 + secs(1));
    assert!(effects(&mut dc).is_empty());
    dc.echoed(&id);
    assert_eq!(
        effects(&mut dc),
        vec![Effect::Lookup {
            id: id.clone(),
            node: B.into()
        }]
    );
    // Two addresses (one given twice): one dial at once, the next 2 s later.
    let (x, y) = (addr("127.0.0.1:1"), addr("127.0.0.1:2"));
    dc.listeners(&id, vec![x, x, y], t0 + secs(1));
    assert_eq!(
        effects(&mut dc),
        vec![Effect::Dial {
            id: id.clone(),
            addr: x
        }]
    );
    assert_eq!(dc.poll_timeout(), Some(t0 + secs(3)));
    dc.handle_timeout(t0 + secs(2));
    assert!(effects(&mut dc).is_empty());
    dc.handle_timeout(t0 + secs(3));
    assert_eq!(
        effects(&mut dc),
        vec![Effect::Dial {
            id: id.clone(),
            addr: y
        }]
    );
    // Only the deadline is left.
    assert_eq!(dc.poll_timeout(), Some(t0 + secs(5)));
    // A connection from another node is refused; from B it is handed over.
    assert!(dc.authenticated(&id, "node-c").is_err());
    let h = dc.authenticated(&id, B).unwrap();
    assert_eq!(h.side, Side::Initiator);
    assert_eq!(h.port, port(A, "p"));
    assert!(h.args.is_empty());
    assert!(dc.authenticated(&id, B).is_err(), "handed over once");
    assert_eq!((dc.pending(), dc.count()), (0, 1));
    dc.stream_closed();
    assert_eq!(dc.count(), 0);
    // The late dial's failure and the old deadline change nothing.
    dc.dial_failed(&id, "connect failed", false);
    dc.handle_timeout(t0 + secs(10));
    assert!(effects(&mut dc).is_empty());
    assert_eq!(dc.poll_timeout(), None);
}

#[test]
fn initiator_asks_a_target_without_listeners_to_dial_back() {
    let t0 = Instant::now();
    let mut dc = DataConns::new(A, Limits::default());
    let id = opened(&mut dc, t0);
    effects(&mut dc);
    dc.echoed(&id);
    effects(&mut dc);
    dc.listeners(&id, Vec::new(), t0);
    assert_eq!(
        effects(&mut dc),
        vec![Effect::Send {
            node: B.into(),
            msg: msg![CONNECT, "b@node-a", A],
        }]
    );
    // The target's connection arrives (accepted here).
    let h = dc.authenticated(&id, B).unwrap();
    assert_eq!(h.side, Side::Initiator);
}

#[test]
fn initiator_timeout_kills_the_port() {
    let t0 = Instant::now();
    let mut dc = DataConns::new(A, Limits::default());
    let id = opened(&mut dc, t0);
    effects(&mut dc);
    assert_eq!(dc.poll_timeout(), Some(t0 + secs(5)));
    dc.handle_timeout(t0 + secs(5));
    assert_eq!(
        effects(&mut dc),
        vec![Effect::Failed {
            id: id.clone(),
            port: port(A, "p"),
            failure: Failure {
                kind: FailureKind::Timeout,
                message: "node-b: unable to establish connection within 5 seconds".into(),
            },
        }]
    );
    assert_eq!(dc.count(), 0);
    // The echo coming late changes nothing.
    dc.echoed(&id);
    assert!(effects(&mut dc).is_empty());
}

#[test]
fn failed_dials() {
    let t0 = Instant::now();
    let mut dc = DataConns::new(A, Limits::default());
    // An authentication failure ends it at once.
    let id = opened(&mut dc, t0);
    dc.echoed(&id);
    dc.listeners(&id, vec![addr("127.0.0.1:1"), addr("127.0.0.1:2")], t0);
    effects(&mut dc);
    dc.dial_failed(&id, "authentication failed: shared secret mismatch", true);
    assert_eq!(
        effects(&mut dc),
        vec![Effect::Failed {
            id: id.clone(),
            port: port(A, "p"),
            failure: Failure {
                kind: FailureKind::Handshake,
                message: "node-b: authentication failed: shared secret mismatch".into(),
            },
        }]
    );
    // Refused connects: it ends when the last address has failed.
    let id = opened(&mut dc, t0);
    assert_eq!(id.as_str(), "c@node-a");
    dc.echoed(&id);
    dc.listeners(&id, vec![addr("127.0.0.1:1"), addr("127.0.0.1:2")], t0);
    effects(&mut dc);
    dc.dial_failed(&id, "connect failed: refused", false);
    assert!(effects(&mut dc).is_empty());
    dc.handle_timeout(t0 + DIAL_STEP);
    assert_eq!(effects(&mut dc).len(), 1);
    dc.dial_failed(&id, "connect failed: refused again", false);
    let fx = effects(&mut dc);
    assert!(matches!(
        &fx[..],
        [Effect::Failed { failure: Failure { kind: FailureKind::Unreachable, message }, .. }]
            if message == "node-b: connect failed: refused again"
    ));
}

#[test]
fn target_expects_and_hands_over() {
    let t0 = Instant::now();
    let mut dc = DataConns::new(B, Limits::default());
    let args = vec![
        Value::from("b@node-a"),
        Value::from("node-a#p"),
        Value::Float(2.5),
        Value::from("app::sink"),
        Value::from(1),
        Value::from("two"),
    ];
    dc.expect(A, args, |f| f == "app::sink", t0);
    assert!(effects(&mut dc).is_empty());
    assert!(dc.is_pending("b@node-a"));
    assert!(dc.authenticated("b@node-a", "node-c").is_err());
    let h = dc.authenticated("b@node-a", A).unwrap();
    assert_eq!(
        h,
        Handover {
            id: "b@node-a".into(),
            side: Side::Target,
            peer: A.into(),
            port: port(A, "p"),
            init: "app::sink".into(),
            args: vec![Value::from(1), Value::from("two")],
        }
    );
}

#[test]
fn target_timeout_and_dial_back_without_listeners() {
    let t0 = Instant::now();
    let mut dc = DataConns::new(B, Limits::default());
    let expect = |id: &str| msg![id, "node-a#p", "3", "f"].into_vec();
    dc.expect(A, expect("b@node-a"), |_| true, t0);
    dc.expect(A, expect("c@node-a"), |_| true, t0);
    assert_eq!(dc.poll_timeout(), Some(t0 + secs(3)));
    // _connect from another node, or naming another node, is ignored.
    dc.connect_request("node-c", &msg!["b@node-a", "node-c"].into_vec());
    dc.connect_request(A, &msg!["b@node-a", "node-c"].into_vec());
    assert!(effects(&mut dc)
        .iter()
        .all(|e| matches!(e, Effect::Ignored(_))));
    dc.connect_request(A, &msg!["b@node-a", A].into_vec());
    assert_eq!(
        effects(&mut dc),
        vec![Effect::Lookup {
            id: "b@node-a".into(),
            node: A.into()
        }]
    );
    dc.listeners("b@node-a", Vec::new(), t0);
    let kill = |text: &str| Effect::Send {
        node: A.into(),
        msg: msg!["kil1", "p", KILL_TAG, text],
    };
    assert_eq!(effects(&mut dc), vec![kill("node-a: no listeners found")]);
    dc.handle_timeout(t0 + secs(3));
    assert_eq!(
        effects(&mut dc),
        vec![kill("node-b: no data connection arrived within 3 seconds")]
    );
    assert_eq!(dc.count(), 0);
}

#[test]
fn target_refuses_bad_expectations() {
    let t0 = Instant::now();
    let mut dc = capped(B, 1);
    let kill = |text: &str| Effect::Send {
        node: A.into(),
        msg: msg!["kil1", "p", KILL_TAG, text],
    };
    // Unknown init function.
    dc.expect(
        A,
        msg!["b@node-a", "node-a#p", 5, "nope"].into_vec(),
        |_| false,
        t0,
    );
    let fx = effects(&mut dc);
    assert_eq!(fx[1], kill("node-b: unable to resolve function 'nope'"));
    // An id of another node, a bad timeout.
    dc.expect(
        A,
        msg!["b@node-c", "node-a#p", 5, "f"].into_vec(),
        |_| true,
        t0,
    );
    dc.expect(
        A,
        msg!["b@node-a", "node-a#p", -1, "f"].into_vec(),
        |_| true,
        t0,
    );
    let fx = effects(&mut dc);
    assert_eq!(fx.len(), 4);
    assert!(matches!(&fx[1], Effect::Send { .. }) && matches!(&fx[3], Effect::Send { .. }));
    // A port of another node: nothing is killed anywhere.
    dc.expect(
        A,
        msg!["b@node-a", "node-c#p", 5, "f"].into_vec(),
        |_| true,
        t0,
    );
    dc.expect(A, msg!["b@node-a"].into_vec(), |_| true, t0);
    let fx = effects(&mut dc);
    assert!(fx.iter().all(|e| matches!(e, Effect::Ignored(_))), "{fx:?}");
    assert_eq!(dc.count(), 0);
    // The cap, and a repeated id.
    dc.expect(
        A,
        msg!["b@node-a", "node-a#p", 5, "f"].into_vec(),
        |_| true,
        t0,
    );
    assert!(effects(&mut dc).is_empty());
    dc.expect(
        A,
        msg!["b@node-a", "node-a#p", 5, "f"].into_vec(),
        |_| true,
        t0,
    );
    dc.expect(
        A,
        msg!["c@node-a", "node-a#p", 5, "f"].into_vec(),
        |_| true,
        t0,
    );
    let fx = effects(&mut dc);
    assert_eq!(
        fx[1],
        kill("node-b: data connection b@node-a is already expected")
    );
    assert_eq!(fx[3], kill("node-b: too many data connections (at most 1)"));
    assert_eq!(dc.count(), 1);
}

#[test]
fn open_beyond_the_cap_and_to_self() {
    let t0 = Instant::now();
    let mut dc = capped(A, 2);
    let echo = port(A, "echo");
    let (_, r) = dc.open(A, port(A, "p"), "f", Vec::new(), secs(5), &echo, t0);
    assert_eq!(r, Ok(true), "a local pair");
    assert!(effects(&mut dc).is_empty());
    dc.local_pair();
    assert_eq!(dc.count(), 2);
    let (id, r) = dc.open(B, port(A, "p"), "f", Vec::new(), secs(5), &echo, t0);
    assert_eq!(r.unwrap_err().kind, FailureKind::TooMany);
    assert!(matches!(&effects(&mut dc)[..], [Effect::Failed { id: i, .. }] if *i == id));
    dc.stream_closed();
    let (id, r) = dc.open(B, port(A, "p"), "f", Vec::new(), secs(5), &echo, t0);
    assert_eq!((id.as_str(), r), ("d@node-a", Ok(false)));
    // The port died: abandoned silently.
    assert!(dc.port_died(&id));
    assert!(!dc.port_died(&id));
}

#[test]
fn listeners_in_the_database() {
    let l = Value::Map(vec![
        (
            Str::from(B),
            msg!["127.0.0.1:4040", "bad", "[::1]:5"].into(),
        ),
        (Str::from("node-c"), Value::Null),
    ]);
    assert_eq!(
        listeners_of(&l, B),
        vec![addr("127.0.0.1:4040"), addr("[::1]:5")]
    );
    assert!(listeners_of(&l, "node-c").is_empty());
    assert!(listeners_of(&l, "node-d").is_empty());
    assert!(listeners_of(&Value::Null, B).is_empty());
}

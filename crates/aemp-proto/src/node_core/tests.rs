//! Unit tests of [`NodeCore`]: one node, connections played by hand.

use super::*;
use crate::msg;
use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// A link that records what is sent on it.
#[derive(Clone)]
struct TestLink {
    id: u64,
    sent: Rc<RefCell<Vec<(String, Msg)>>>,
    closed: Rc<Cell<bool>>,
}

impl TestLink {
    fn new(id: u64) -> TestLink {
        TestLink {
            id,
            sent: Rc::default(),
            closed: Rc::default(),
        }
    }

    fn tags(&self) -> Vec<String> {
        self.sent
            .borrow()
            .iter()
            .map(|(port, m)| format!("{port}:{}", m.tag().unwrap_or("")))
            .collect()
    }
}

impl Link for TestLink {
    fn send(&self, port: &str, msg: Msg) -> bool {
        let mut sent = self.sent.borrow_mut();
        sent.push((port.to_string(), msg));
        sent.len() == 1
    }
    fn id(&self) -> u64 {
        self.id
    }
    fn close(&self) {
        self.closed.set(true);
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn core(cfg: impl FnOnce(&mut Config)) -> (NodeCore<TestLink>, Instant) {
    let mut c = Config::new("me");
    c.listening = vec![addr("10.0.0.1:1")];
    cfg(&mut c);
    let now = Instant::now();
    let mut n = NodeCore::new(c, now);
    n.start(now);
    (n, now)
}

fn effects(n: &mut NodeCore<TestLink>) -> Vec<Effect> {
    std::iter::from_fn(|| n.poll_effect()).collect()
}

/// The effects without logs and verdicts, as short strings.
fn brief(fx: &[Effect]) -> Vec<String> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Dial { id, addr, .. } => Some(format!("dial {id} {addr}")),
            Effect::NodeLost { node, reason } => Some(format!("lost {node}: {reason}")),
            Effect::NodeUp(node) => Some(format!("up {node}")),
            Effect::NodeDown { node, reason } => Some(format!("down {node}: {reason}")),
            Effect::Reply { query, .. } => Some(format!("reply {query}")),
            Effect::Notify {
                change: DbChange { family, .. },
                ..
            } => Some(format!("notify {family}")),
            Effect::Verdict { .. } | Effect::Log(_) => None,
        })
        .collect()
}

/// Brings connection `id` (accepted) from `node` up.
fn accept_up(n: &mut NodeCore<TestLink>, id: u64, node: &str, now: Instant) -> TestLink {
    n.accepted(id, now);
    n.greeted(id, node, addr("10.9.9.9:9"), false, now);
    assert!(effects(n).contains(&Effect::Verdict {
        id,
        verdict: Verdict::Commit
    }));
    n.committed(id);
    n.peer_committed(id, now);
    let link = TestLink::new(id);
    n.up(id, node, link.clone(), now);
    link
}

#[test]
fn send_on_an_up_link_is_written_and_emits_nothing() {
    let (mut n, now) = core(|_| {});
    effects(&mut n);
    let link = accept_up(&mut n, 2, "a", now);
    assert_eq!(brief(&effects(&mut n)), ["up a"]);
    assert!(n.send("a", "p", msg!["x"], now), "woke the writer");
    assert!(!n.send("a", "p", msg!["y"], now));
    assert!(!n.has_effects());
    assert_eq!(link.tags(), ["p:x", "p:y"]);
    assert!(n.send_if_up("a", "q", msg!["z"]));
    assert!(!n.send_if_up("b", "q", msg!["z"]));
    assert!(!n.has_effects(), "send_if_up never connects");
    assert_eq!(n.up_nodes().collect::<Vec<_>>(), ["a"]);
}

#[test]
fn without_network_sends_fail_at_once() {
    let (mut n, now) = core(|c| {
        c.network = false;
        c.seeds = vec![addr("10.0.0.2:1")];
    });
    assert_eq!(n.poll_timeout(), None, "no seeds without network");
    effects(&mut n);
    n.send("a", "p", msg!["x"], now);
    assert_eq!(brief(&effects(&mut n)), [format!("lost a: {NO_TRANSPORT}")]);
    n.dial(addr("10.0.0.2:1"), None, now);
    assert!(!n.has_effects());
}

#[test]
fn sends_queue_while_dialling_then_flush_before_node_up() {
    let (mut n, now) = core(|_| {});
    n.add_addresses("a", vec![addr("10.0.0.2:1")], now);
    assert!(!n.has_effects());
    n.send("a", "p", msg!["1"], now);
    n.send("a", "p", msg!["2"], now);
    let fx = effects(&mut n);
    assert_eq!(
        fx[0],
        Effect::Dial {
            id: 1,
            addr: addr("10.0.0.2:1"),
            target: Some(Str::from("a"))
        }
    );
    assert_eq!(brief(&fx), ["dial 1 10.0.0.2:1"]);
    // A second dial to a node being dialled is not started.
    n.dial(addr("10.0.0.2:1"), None, now);
    assert!(!n.has_effects());
    n.greeted(1, "a", addr("10.0.0.2:1"), true, now);
    assert_eq!(
        effects(&mut n),
        [Effect::Verdict {
            id: 1,
            verdict: Verdict::Commit
        }]
    );
    n.committed(1);
    n.peer_committed(1, now);
    let link = TestLink::new(1);
    assert!(n.up(1, "a", link.clone(), now), "the flush woke the writer");
    assert_eq!(link.tags(), ["p:1", "p:2"], "queue flushed in order");
    assert_eq!(brief(&effects(&mut n)), ["up a"]);
}

#[test]
fn a_lost_connection_gives_node_lost_then_node_down_then_master_change() {
    let seed = addr("10.0.0.2:1");
    let (mut n, now) = core(|c| c.seeds = vec![seed]);
    let fx = effects(&mut n);
    assert_eq!(brief(&fx), ["dial 1 10.0.0.2:1"]);
    n.greeted(1, "s", seed, true, now);
    n.committed(1);
    n.peer_committed(1, now);
    let link = TestLink::new(1);
    n.up(1, "s", link.clone(), now);
    assert_eq!(
        link.tags(),
        [":g_slave", ":g_slave", ":g_slave"],
        "seed greeting, node up, master set (with the database)"
    );
    assert_eq!(n.global().master(), Some("s"));
    effects(&mut n);
    // Up for longer than the back-off cap: a stable connection, no hold.
    let now = now + Duration::from_secs(31);
    n.closed(1, Some("s"), seed, true, "EOF from peer", now);
    let fx = effects(&mut n);
    assert_eq!(
        brief(&fx),
        ["lost s: EOF from peer", "down s: EOF from peer"]
    );
    let logs: Vec<&Log> = fx
        .iter()
        .filter_map(|e| match e {
            Effect::Log(l) => Some(l),
            _ => None,
        })
        .collect();
    assert_eq!(
        logs,
        [
            &Log::ConnectionLost {
                node: Str::from("s"),
                reason: "EOF from peer".into()
            },
            &Log::Master(None)
        ]
    );
    // A lost seed is dialled again within the loss spread (1 s).
    let due = n
        .poll_timeout()
        .expect("a lost seed starts the seed rounds");
    assert!(due <= now + Duration::from_secs(1), "{:?}", due - now);
    n.handle_timeout(now + Duration::from_secs(1));
    assert_eq!(brief(&effects(&mut n)), ["dial 3 10.0.0.2:1"]);
}

/// A seed connection that ends right after it came up (the seed refused what we sent)
/// holds the seed: the round that starts over skips it, and it is dialled when the hold
/// ends, later and later while this goes on.
#[test]
fn a_seed_connection_that_keeps_ending_at_once_is_redialled_with_back_off() {
    let seed = addr("10.0.0.2:1");
    let (mut n, mut now) = core(|c| c.seeds = vec![seed]);
    effects(&mut n);
    let mut id = 1;
    let mut pauses = Vec::new();
    for _ in 0..8 {
        n.greeted(id, "s", seed, true, now);
        n.committed(id);
        n.peer_committed(id, now);
        n.up(id, "s", TestLink::new(id), now);
        effects(&mut n);
        let t = now + Duration::from_millis(2);
        n.closed(id, Some("s"), seed, true, "EOF from peer", t);
        effects(&mut n);
        let (_, until) = n.peers().backoff("s").expect("a strike");
        // Nothing is dialled before the hold ends.
        let mut at = t;
        let dial = loop {
            let next = n.poll_timeout().expect("a round is due");
            assert!(next >= at);
            at = next;
            n.handle_timeout(at);
            let fx = brief(&effects(&mut n));
            if let Some(d) = fx.into_iter().find(|e| e.starts_with("dial")) {
                break d;
            }
        };
        assert!(
            at >= until,
            "dialled {:?} before the hold ended",
            until - at
        );
        id += 2;
        assert_eq!(dial, format!("dial {id} 10.0.0.2:1"));
        pauses.push(at - t);
        now = at;
    }
    let ms: Vec<u128> = pauses.iter().map(|p| p.as_millis()).collect();
    for w in pauses.windows(2) {
        assert!(w[1] * 2 >= w[0], "grows: {ms:?}");
    }
    assert!(pauses[0] >= Duration::from_millis(500), "{ms:?}");
    assert!(pauses[7] >= Duration::from_secs(15), "{ms:?}");
    assert!(pauses[7] <= Duration::from_secs(30), "bounded: {ms:?}");
}

#[test]
fn lookup_on_a_global_node_without_address_fails_the_attempt() {
    let (mut n, now) = core(|c| c.global = true);
    effects(&mut n);
    n.send("nobody", "p", msg!["x"], now);
    assert_eq!(
        brief(&effects(&mut n)),
        [format!("lost nobody: {}", peers::NO_KNOWN_ADDRESS)]
    );
}

#[test]
fn lookup_on_a_slave_asks_its_master_and_dials_the_answer() {
    let seed = addr("10.0.0.3:1");
    let (mut n, now) = core(|c| c.seeds = vec![seed]);
    assert_eq!(brief(&effects(&mut n)), ["dial 1 10.0.0.3:1"]);
    n.greeted(1, "m", seed, true, now);
    n.committed(1);
    n.peer_committed(1, now);
    let m = TestLink::new(1);
    n.up(1, "m", m.clone(), now);
    assert_eq!(n.global().master(), Some("m"));
    m.sent.borrow_mut().clear();
    effects(&mut n);
    n.send("x", "p", msg!["hi"], now);
    assert!(brief(&effects(&mut n)).is_empty(), "waiting for g_found");
    assert_eq!(m.tags(), [":g_find"]);
    n.global_request(
        "m",
        "g_found",
        vec![Value::from("x"), crate::list!["10.0.0.4:1"]],
        now,
    );
    assert_eq!(brief(&effects(&mut n)), ["dial 3 10.0.0.4:1"]);
}

#[test]
fn a_lost_simultaneous_dial_is_redialled_on_a_core_timer() {
    let (mut n, now) = core(|_| {});
    effects(&mut n);
    // "me" < "z": connections dialled by "me" win; ours comes from the address book.
    n.add_addresses("z", vec![addr("10.0.0.2:1")], now);
    n.dial(addr("10.0.0.2:1"), None, now);
    assert_eq!(brief(&effects(&mut n)), ["dial 1 10.0.0.2:1"]);
    n.accepted(2, now);
    n.greeted(2, "z", addr("10.9.9.9:9"), false, now);
    n.greeted(1, "z", addr("10.0.0.2:1"), true, now);
    let fx = effects(&mut n);
    assert!(fx.contains(&Effect::Verdict {
        id: 1,
        verdict: Verdict::Commit
    }));
    assert!(fx.contains(&Effect::Verdict {
        id: 2,
        verdict: Verdict::Close(crate::conn_registry::SIMULTANEOUS)
    }));
    // The peer decided the other way round before our auth line arrived: both close.
    n.committed(1);
    n.closed(2, Some("z"), addr("10.9.9.9:9"), false, "closed", now);
    n.closed(1, Some("z"), addr("10.0.0.2:1"), true, "EOF from peer", now);
    assert!(
        brief(&effects(&mut n)).is_empty(),
        "nothing was up: nothing lost"
    );
    let at = n.poll_timeout().expect("a re-dial is due");
    assert!(at >= now + Duration::from_millis(50) && at < now + Duration::from_millis(350));
    n.handle_timeout(at);
    assert_eq!(brief(&effects(&mut n)), ["dial 3 10.0.0.2:1"]);
}

#[test]
fn a_seed_that_is_this_node_makes_it_global() {
    let own = addr("10.0.0.1:1");
    let (mut n, now) = core(|c| c.seeds = vec![own]);
    assert_eq!(brief(&effects(&mut n)), ["dial 1 10.0.0.1:1"]);
    n.reached_self(own, now);
    n.closed(
        1,
        None,
        own,
        true,
        "handshake: I refuse to talk to myself",
        now,
    );
    let fx = effects(&mut n);
    assert!(fx.contains(&Effect::Log(Log::FoundSelf { addr: own })));
    assert!(fx.contains(&Effect::Log(Log::BecameGlobal)));
    assert!(n.global().is_global());
    assert_eq!(n.poll_timeout(), None, "no seed left to dial");
}

#[test]
fn database_requests_and_subscribers() {
    let (mut n, now) = core(|c| c.global = true);
    effects(&mut n);
    let fam = Family::user("f").unwrap();
    n.db_watch(&fam, 7, now);
    assert_eq!(brief(&effects(&mut n)), ["notify f"]);
    n.db_set(&fam, "k", Value::from(1), now);
    match &effects(&mut n)[..] {
        [Effect::Notify {
            subscribers,
            change: DbChange { added, .. },
        }] => {
            assert_eq!(subscribers, &[7]);
            assert_eq!(added, &[Str::from("k")]);
        }
        other => panic!("{other:?}"),
    }
    let q = n.db_query(QueryKind::Keys, &fam, now);
    assert_eq!(brief(&effects(&mut n)), [format!("reply {q}")]);
    n.db_set(&fam, "", Value::from(1), now);
    assert!(matches!(
        &effects(&mut n)[..],
        [Effect::Log(Log::DbSetRefused { .. })]
    ));
    n.db_unwatch("f", 8, now);
    assert!(!n.has_effects(), "unknown subscriber");
    n.db_unwatch("f", 7, now);
    n.db_set(&fam, "k2", Value::from(1), now);
    assert!(
        brief(&effects(&mut n)).is_empty(),
        "nobody watches any more"
    );
}

#[test]
fn a_connection_the_registry_closed_is_not_used() {
    let (mut n, now) = core(|_| {});
    effects(&mut n);
    let _a = accept_up(&mut n, 2, "a", now);
    effects(&mut n);
    n.accepted(4, now);
    n.greeted(4, "a", addr("10.9.9.9:9"), false, now);
    assert!(effects(&mut n).iter().any(|e| matches!(
        e,
        Effect::Verdict {
            id: 4,
            verdict: Verdict::Close(_)
        }
    )));
    let second = TestLink::new(4);
    n.up(4, "a", second.clone(), now);
    assert!(second.closed.get());
    assert!(matches!(
        &effects(&mut n)[..],
        [Effect::Log(Log::ConnectionNotUsed { .. })]
    ));
    assert_eq!(n.peers().link("a").map(|l| l.id), Some(2));
}

#[test]
fn a_dial_refused_in_its_handshake_names_the_cause_at_the_deadline() {
    let (mut n, now) = core(|c| c.connect_interval = Duration::from_secs(2));
    effects(&mut n);
    n.add_addresses("a", vec![addr("10.0.0.2:1")], now);
    n.send("a", "p", msg!["1"], now);
    assert_eq!(brief(&effects(&mut n)), ["dial 1 10.0.0.2:1"]);
    n.greeted(1, "a", addr("10.0.0.2:1"), true, now);
    let cause = "authentication failed: shared secret mismatch";
    n.closed(1, Some("a"), addr("10.0.0.2:1"), true, cause, now);
    assert!(
        brief(&effects(&mut n)).is_empty(),
        "nothing before the deadline"
    );
    let deadline = n.poll_timeout().expect("the attempt's deadline");
    assert_eq!(deadline, now + Duration::from_secs(2));
    n.handle_timeout(deadline);
    assert_eq!(brief(&effects(&mut n)), [format!("lost a: {cause}")]);

    // A dial that never reached a greeting leaves the plain timeout.
    n.send("a", "p", msg!["2"], deadline);
    assert_eq!(brief(&effects(&mut n)), ["dial 3 10.0.0.2:1"]);
    n.closed(
        3,
        None,
        addr("10.0.0.2:1"),
        true,
        "connect failed",
        deadline,
    );
    let second = n.poll_timeout().expect("deadline");
    n.handle_timeout(second);
    assert_eq!(
        brief(&effects(&mut n)),
        [format!("lost a: {}", peers::CONNECT_TIMEOUT)]
    );
}

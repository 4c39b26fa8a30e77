//! Peer table tests, in virtual time with an in-memory [`Link`].

use super::*;
use crate::{msg, Value};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cell::RefCell;
use std::rc::Rc;

#[derive(Default)]
struct Wire {
    /// Frames written and not yet taken by the test.
    frames: Vec<(Str, Msg)>,
    closed: bool,
    /// The connection broke: nothing written to it arrives any more.
    dead: bool,
}

/// A link that records its frames.
#[derive(Clone)]
struct TestLink {
    id: u64,
    wire: Rc<RefCell<Wire>>,
}

impl TestLink {
    fn new(id: u64) -> Self {
        TestLink {
            id,
            wire: Rc::default(),
        }
    }

    /// Takes the frames written so far, as the message numbers.
    fn take(&self) -> Vec<i64> {
        self.wire
            .borrow_mut()
            .frames
            .drain(..)
            .map(|(_, m)| seq_of(&m))
            .collect()
    }

    fn closed(&self) -> bool {
        self.wire.borrow().closed
    }
}

impl Link for TestLink {
    fn send(&self, port: &str, msg: Msg) -> bool {
        let mut w = self.wire.borrow_mut();
        if w.closed {
            return false;
        }
        let woke = w.frames.is_empty();
        w.frames.push((Str::from(port), msg));
        woke
    }

    fn id(&self) -> u64 {
        self.id
    }

    fn close(&self) {
        self.wire.borrow_mut().closed = true;
    }
}

fn seq_of(m: &Msg) -> i64 {
    m.0.get(1).and_then(Value::as_i64).unwrap_or(-1)
}

fn m(seq: i64) -> Msg {
    msg!["m", seq]
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 1], port))
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn table(ci_ms: u64, mt_ms: u64) -> PeerTable<TestLink> {
    PeerTable::new(ms(ci_ms), ms(mt_ms))
}

fn lost(node: &str, reason: &str, dropped: usize) -> Effect {
    Effect::NodeLost {
        node: node.into(),
        reason: reason.into(),
        dropped,
    }
}

fn dial(node: &str, a: SocketAddr) -> Effect {
    Effect::Dial {
        node: node.into(),
        addr: a,
    }
}

/// Runs the timers, each at its time, up to `until`; returns (time since `t0`, effect).
fn run_until(t: &mut PeerTable<TestLink>, t0: Instant, until: Instant) -> Vec<(Duration, Effect)> {
    let mut all = Vec::new();
    while let Some(at) = t.poll_timeout() {
        if at > until {
            break;
        }
        let mut out = Vec::new();
        t.handle_timeout(at, &mut out);
        all.extend(out.into_iter().map(|e| (at - t0, e)));
    }
    all
}

#[test]
fn queued_messages_are_flushed_in_order_before_later_sends() {
    let t0 = Instant::now();
    let mut t = table(2000, 3000);
    t.learn_address("n", addr(1));
    let mut out = Vec::new();
    for i in 0..3 {
        assert!(!t.send("n", "p", m(i), t0, &mut out));
    }
    assert_eq!(out, vec![dial("n", addr(1))], "one attempt, one dial");
    assert!(t.is_connecting("n"));
    assert_eq!(t.queued("n"), 3);
    out.clear();

    let link = TestLink::new(1);
    assert!(
        t.up("n", link.clone(), t0, &mut out),
        "the flush woke the writer"
    );
    assert_eq!(out, vec![Effect::NodeUp { node: "n".into() }]);
    assert!(t.is_up("n") && !t.is_connecting("n"));
    assert_eq!(t.poll_timeout(), None, "the attempt's timers are gone");
    out.clear();

    assert!(!t.send("n", "p", m(3), t0, &mut out), "the writer is awake");
    assert!(out.is_empty());
    assert_eq!(link.take(), vec![0, 1, 2, 3]);
    assert!(
        t.send("n", "p", m(4), t0, &mut out),
        "an empty queue wakes it"
    );
    assert_eq!(link.wire.borrow().frames[0].0, "p");
    assert_eq!(link.take(), vec![4]);
}

/// Dial times (ms since the first send) of an attempt over `n` addresses, and when it
/// failed.
fn dial_times(ci_ms: u64, mt_ms: u64, n: u16) -> (Vec<u64>, u64) {
    let t0 = Instant::now();
    let mut t = table(ci_ms, mt_ms);
    let addrs: Vec<_> = (1..=n).map(addr).collect();
    let mut out = Vec::new();
    t.addresses("n", addrs.clone(), t0, &mut out);
    assert!(out.is_empty(), "idle: addresses are only remembered");
    t.send("n", "", m(0), t0, &mut out);
    let mut all: Vec<_> = out.into_iter().map(|e| (Duration::ZERO, e)).collect();
    all.extend(run_until(&mut t, t0, t0 + Duration::from_secs(3600)));
    let mut dials = Vec::new();
    let mut failed = None;
    for (at, e) in all {
        match e {
            Effect::Dial { node, addr: a } => {
                assert_eq!(node, "n");
                assert_eq!(a, addrs[dials.len()], "addresses in order");
                dials.push(at.as_millis() as u64);
            }
            Effect::NodeLost {
                reason, dropped, ..
            } => {
                assert_eq!((reason.as_str(), dropped), (CONNECT_TIMEOUT, 1));
                assert!(failed.replace(at.as_millis() as u64).is_none());
            }
            e => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(t.poll_timeout(), None);
    (dials, failed.expect("the attempt failed"))
}

#[test]
fn pacing_spreads_dials_over_the_interval() {
    // connect_interval 2 s, monitor_timeout 3 s: step = min(2, 1 / n), at least 0.4 s.
    assert_eq!(dial_times(2000, 3000, 1), (vec![0], 2000));
    assert_eq!(dial_times(2000, 3000, 2), (vec![0, 500], 2000));
    assert_eq!(
        dial_times(2000, 3000, 5),
        (vec![0, 400, 800, 1200, 1600], 2000)
    );
    // The defaults (2 s, 30 s): step = 2 s, so only the first address fits.
    assert_eq!(dial_times(2000, 30000, 5), (vec![0], 2000));
    // The deadline cuts the list: 1 s, 1.5 s, 5 addresses: step 0.4 s.
    assert_eq!(dial_times(1000, 1500, 5), (vec![0, 400, 800], 1000));
    // monitor_timeout below connect_interval: the minimum step.
    assert_eq!(dial_times(1000, 500, 3), (vec![0, 400, 800], 1000));
}

#[test]
fn connect_timeout_drops_the_queue_and_a_later_send_starts_afresh() {
    let t0 = Instant::now();
    let mut t = table(2000, 3000);
    let mut out = Vec::new();
    for i in 0..3 {
        t.send("n", "", m(i), t0 + ms(100 * i as u64), &mut out);
    }
    assert_eq!(out, vec![Effect::Lookup { node: "n".into() }]);
    out.clear();
    // Waiting for addresses keeps the attempt alive until its deadline.
    assert_eq!(t.poll_timeout(), Some(t0 + ms(2000)));
    t.handle_timeout(t0 + ms(1999), &mut out);
    assert!(out.is_empty() && t.is_connecting("n"));
    t.handle_timeout(t0 + ms(2000), &mut out);
    assert_eq!(out, vec![lost("n", CONNECT_TIMEOUT, 3)]);
    assert!(!t.is_connecting("n"));
    assert_eq!(t.queued("n"), 0);
    assert_eq!(t.poll_timeout(), None);
    out.clear();

    t.send("n", "", m(3), t0 + ms(2500), &mut out);
    assert_eq!(out, vec![Effect::Lookup { node: "n".into() }]);
    assert_eq!(t.poll_timeout(), Some(t0 + ms(4500)));
    out.clear();
    let all = run_until(&mut t, t0, t0 + ms(10_000));
    assert_eq!(all, vec![(ms(4500), lost("n", CONNECT_TIMEOUT, 1))]);
}

#[test]
fn look_up_answers_are_dialled_with_the_attempts_deadline() {
    let t0 = Instant::now();
    let mut t = table(2000, 3000);
    let mut out = Vec::new();
    t.send("n", "", m(0), t0, &mut out);
    assert_eq!(out, vec![Effect::Lookup { node: "n".into() }]);
    out.clear();
    t.addresses("n", vec![], t0 + ms(300), &mut out);
    assert!(out.is_empty() && t.known_addresses("n").is_empty());
    t.addresses("n", vec![addr(1), addr(2), addr(1)], t0 + ms(300), &mut out);
    assert_eq!(out, vec![dial("n", addr(1))]);
    assert_eq!(t.known_addresses("n"), &[addr(1), addr(2)]);
    let all = run_until(&mut t, t0, t0 + ms(10_000));
    assert_eq!(
        all,
        vec![
            (ms(800), dial("n", addr(2))),
            (ms(2000), lost("n", CONNECT_TIMEOUT, 1))
        ]
    );
}

#[test]
fn a_look_up_that_finds_nothing_fails_at_once() {
    let t0 = Instant::now();
    let mut t = table(2000, 3000);
    let mut out = Vec::new();
    t.send("n", "", m(0), t0, &mut out);
    t.send("n", "", m(1), t0, &mut out);
    out.clear();
    t.connect_failed("n", NO_KNOWN_ADDRESS, &mut out);
    assert_eq!(out, vec![lost("n", NO_KNOWN_ADDRESS, 2)]);
    assert_eq!(t.poll_timeout(), None);
    out.clear();
    // Not connecting: ignored.
    t.connect_failed("n", NO_KNOWN_ADDRESS, &mut out);
    t.up("n", TestLink::new(1), t0, &mut out);
    out.clear();
    t.connect_failed("n", "refused", &mut out);
    assert!(out.is_empty() && t.is_up("n"));
}

/// Connections that end soon after coming up hold the node: nothing dials it before the
/// hold ends, the holds double up to the cap, a stable connection clears the strikes, and
/// so does a quiet spell.
#[test]
fn connections_that_end_at_once_hold_the_node() {
    let t0 = Instant::now();
    // monitor_timeout 60 s: the cap is BACKOFF_CAP (30 s).
    let mut t = table(2000, 60_000);
    t.learn_address("n", addr(1));
    let mut out = Vec::new();
    t.up("n", TestLink::new(1), t0, &mut out);
    let t1 = t0 + ms(10);
    t.down("n", 1, "EOF", t1, 0.0, &mut out);
    let until = t1 + ms(500);
    assert_eq!(t.backoff("n"), Some((1, until)), "half of BACKOFF_FIRST");
    assert_eq!(t.hold("n", t1), Some(until));
    assert_eq!(t.hold("n", until), None);
    out.clear();

    // A send queues; the dial waits for the end of the hold, the deadline moves with it.
    // No effect says so: the driver learns it from take_timers_changed.
    t.take_timers_changed();
    t.send("n", "p", m(0), t1, &mut out);
    assert!(out.is_empty(), "{out:?}");
    assert!(t.take_timers_changed(), "the driver must re-arm its timer");
    assert!(!t.take_timers_changed(), "once");
    assert_eq!(t.poll_timeout(), Some(until));
    t.handle_timeout(until, &mut out);
    assert_eq!(out, vec![dial("n", addr(1))]);
    out.clear();
    assert!(
        run_until(&mut t, t0, until + ms(1999)).is_empty(),
        "no timeout yet"
    );

    // More strikes: the nominal hold doubles (r = 1: all of it) up to the cap.
    let mut now = until;
    let mut holds = Vec::new();
    for id in 2..10 {
        t.up("n", TestLink::new(id), now, &mut out);
        now += ms(100);
        t.down("n", id, "EOF", now, 1.0, &mut out);
        let (strikes, until) = t.backoff("n").unwrap();
        assert_eq!(strikes, id as u32);
        holds.push((until - now).as_secs());
        now = until;
    }
    assert_eq!(holds, [2, 4, 8, 16, 30, 30, 30, 30]);
    t.connect_failed("n", "gone", &mut out);
    out.clear();

    // A connection up for the cap is stable: the strikes go.
    t.up("n", TestLink::new(20), now, &mut out);
    assert!(t.backoff("n").is_some(), "kept while up");
    now += BACKOFF_CAP;
    t.down("n", 20, "EOF", now, 0.0, &mut out);
    assert_eq!(t.backoff("n"), None);
    assert_eq!(t.hold("n", now), None);

    // A strike is forgotten after twice the cap without a connection.
    t.up("n", TestLink::new(21), now, &mut out);
    t.down("n", 21, "EOF", now, 0.0, &mut out);
    let (_, until) = t.backoff("n").unwrap();
    run_until(&mut t, t0, until + 2 * BACKOFF_CAP - ms(1));
    assert!(t.backoff("n").is_some());
    run_until(&mut t, t0, until + 2 * BACKOFF_CAP);
    assert_eq!(t.backoff("n"), None);
    assert_eq!(t.poll_timeout(), None);

    // An entry kept only for its strikes goes with them.
    let mut t = table(2000, 3000);
    t.up("x", TestLink::new(1), t0, &mut out);
    t.down("x", 1, "EOF", t0, 0.5, &mut out);
    assert!(t.backoff("x").is_some());
    run_until(&mut t, t0, t0 + Duration::from_secs(60));
    assert!(t.nodes.is_empty());
}

#[test]
fn down_of_a_stale_connection_is_ignored() {
    let t0 = Instant::now();
    let mut t = table(2000, 3000);
    let mut out = Vec::new();
    let link = TestLink::new(1);
    t.up("n", link.clone(), t0, &mut out);
    out.clear();
    t.down("n", 7, "gone", t0, 0.5, &mut out);
    t.down("other", 1, "gone", t0, 0.5, &mut out);
    assert!(out.is_empty() && t.is_up("n"));
    t.down("n", 1, "peer closed", t0, 0.5, &mut out);
    assert_eq!(
        out,
        vec![
            lost("n", "peer closed", 0),
            Effect::NodeDown {
                node: "n".into(),
                reason: "peer closed".into()
            }
        ]
    );
    assert!(!t.is_up("n") && t.link("n").is_none());
    out.clear();
    t.down("n", 1, "again", t0, 0.5, &mut out);
    assert!(out.is_empty());
    t.send("n", "", m(0), t0, &mut out);
    assert!(t.is_connecting("n"));
}

#[test]
fn a_new_link_replaces_the_one_that_is_up() {
    let t0 = Instant::now();
    let mut t = table(2000, 3000);
    let mut out = Vec::new();
    let old = TestLink::new(1);
    t.up("n", old.clone(), t0, &mut out);
    t.send("n", "", m(0), t0, &mut out);
    out.clear();
    let new = TestLink::new(2);
    assert!(!t.up("n", new.clone(), t0, &mut out));
    assert_eq!(
        out,
        vec![
            lost("n", SWITCHED_CONNECTIONS, 0),
            Effect::NodeUp { node: "n".into() }
        ]
    );
    assert!(old.closed() && !new.closed());
    out.clear();
    t.send("n", "", m(1), t0, &mut out);
    assert_eq!((old.take(), new.take()), (vec![0], vec![1]));
    // The replaced connection reports its end: nothing happens.
    t.down("n", 1, "closed", t0, 0.5, &mut out);
    assert!(out.is_empty());
    assert_eq!(t.link("n").map(Link::id), Some(2));
    // The same link reported again changes nothing.
    t.up("n", new.clone(), t0, &mut out);
    assert!(out.is_empty() && !new.closed());
}

#[test]
fn send_if_up_never_starts_a_connection() {
    let t0 = Instant::now();
    let mut t = table(2000, 3000);
    t.learn_address("n", addr(1));
    assert!(!t.send_if_up("n", "", m(0)));
    assert!(!t.is_connecting("n") && t.poll_timeout().is_none());
    let mut out = Vec::new();
    t.send("n", "", m(1), t0, &mut out);
    assert!(!t.send_if_up("n", "", m(2)), "not queued while connecting");
    assert_eq!(t.queued("n"), 1);
    let link = TestLink::new(1);
    t.up("n", link.clone(), t0, &mut out);
    assert!(t.send_if_up("n", "", m(3)));
    assert_eq!(link.take(), vec![1, 3]);
}

#[test]
fn ensure_connected_starts_an_empty_attempt_once() {
    let t0 = Instant::now();
    let mut t = table(2000, 3000);
    t.learn_address("g", addr(1));
    let mut out = Vec::new();
    t.ensure_connected("g", t0, &mut out);
    t.ensure_connected("g", t0 + ms(10), &mut out);
    assert_eq!(out, vec![dial("g", addr(1))]);
    assert_eq!(t.queued("g"), 0);
    out.clear();
    t.handle_timeout(t0 + ms(2000), &mut out);
    assert_eq!(out, vec![lost("g", CONNECT_TIMEOUT, 0)]);
    out.clear();
    t.up("g", TestLink::new(1), t0, &mut out);
    out.clear();
    t.ensure_connected("g", t0, &mut out);
    assert!(out.is_empty());
}

#[test]
fn address_book() {
    let mut t = table(2000, 3000);
    t.learn_address("n", addr(1));
    t.learn_address("n", addr(2));
    t.learn_address("n", addr(1));
    assert_eq!(t.known_addresses("n"), &[addr(2), addr(1)]);
    assert_eq!(t.node_at(addr(1)), Some("n"));
    assert_eq!(t.node_at(addr(3)), None);
    assert!(t.known_addresses("x").is_empty());
    let mut out = Vec::new();
    t.addresses("n", vec![addr(3)], Instant::now(), &mut out);
    assert_eq!(t.known_addresses("n"), &[addr(3)]);
    assert_eq!(t.node_at(addr(1)), None);
    assert!(out.is_empty());
}

#[test]
fn up_nodes_and_close_all() {
    let t0 = Instant::now();
    let mut t = table(2000, 3000);
    let mut out = Vec::new();
    let (a, b) = (TestLink::new(1), TestLink::new(2));
    t.up("a", a.clone(), t0, &mut out);
    t.up("b", b.clone(), t0, &mut out);
    t.learn_address("c", addr(1));
    t.send("c", "", m(0), t0, &mut out);
    let mut up: Vec<_> = t.up_nodes().collect();
    up.sort_unstable();
    assert_eq!(up, ["a", "b"]);
    t.close_all();
    assert!(a.closed() && b.closed());
    assert_eq!(t.up_nodes().count(), 0);
    assert!(!t.is_connecting("c") && t.poll_timeout().is_none());
    assert_eq!(t.known_addresses("c"), &[addr(1)]);
}

#[test]
fn dial_step_formula() {
    let s = |ci, mt, n| dial_step(ms(ci), ms(mt), n).as_millis();
    assert_eq!(s(2000, 30000, 1), 2000);
    assert_eq!(s(2000, 30000, 14), 2000);
    assert_eq!(s(2000, 30000, 20), 1400);
    assert_eq!(s(2000, 30000, 100), 400);
    assert_eq!(s(2000, 1000, 1), 400);
    assert_eq!(s(2000, 3000, 0), 1000);
}

// ---- no holes: random interleavings -------------------------------------------------------

const NODES: [&str; 3] = ["a", "b", "c"];

/// What the test knows about the messages to one node.
#[derive(Default)]
struct Stream {
    /// Event stamp at which message `i` was accepted.
    sent_at: Vec<u64>,
    delivered: Vec<bool>,
    last_delivered: Option<usize>,
    /// Stamp of the last call that emitted `NodeLost` for the node.
    last_lost: Option<u64>,
    /// Connections that broke and whose end was not reported yet.
    dead: Vec<u64>,
    /// Every link ever used, for stale ids.
    ids: Vec<u64>,
}

struct Sim {
    t: PeerTable<TestLink>,
    rng: StdRng,
    now: Instant,
    stamp: u64,
    next_link: u64,
    streams: Vec<Stream>,
    /// Random reactions to effects (off while draining at the end).
    react: bool,
}

impl Sim {
    fn ix(node: &str) -> usize {
        NODES.iter().position(|n| *n == node).expect("a test node")
    }

    /// Handles what one table call emitted (stamped with that call), as a kernel would:
    /// in order, reacting (with further calls) on the way.
    fn effects(&mut self, out: Vec<Effect>) {
        let stamp = self.stamp;
        for (i, e) in out.iter().enumerate() {
            if let Effect::NodeLost { node, .. } = e {
                self.streams[Self::ix(node)].last_lost = Some(stamp);
            }
            if let Effect::NodeDown { node, .. } = e {
                assert!(
                    i > 0 && matches!(&out[i - 1], Effect::NodeLost { node: n, .. } if n == node),
                    "NodeDown right after NodeLost: {out:?}"
                );
            }
        }
        for e in out {
            if !self.react {
                continue;
            }
            match e {
                Effect::Dial { node, .. } => {
                    if self.rng.gen_bool(0.3) {
                        self.up(&node);
                    }
                }
                Effect::Lookup { node } => match self.rng.gen_range(0..10) {
                    0..=3 => {
                        let a = addr(self.rng.gen_range(1..4));
                        self.call(|t, now, out| t.addresses(&node, vec![a], now, out));
                    }
                    4..=5 => self.call(|t, _, out| t.connect_failed(&node, NO_KNOWN_ADDRESS, out)),
                    _ => {}
                },
                Effect::NodeLost { node, .. } => {
                    // A monitor action that sends to the node again.
                    if self.rng.gen_bool(0.3) {
                        self.send(&node);
                    }
                }
                Effect::NodeUp { .. } | Effect::NodeDown { .. } => {}
            }
        }
    }

    fn call(&mut self, f: impl FnOnce(&mut PeerTable<TestLink>, Instant, &mut Vec<Effect>)) {
        self.stamp += 1;
        let mut out = Vec::new();
        f(&mut self.t, self.now, &mut out);
        self.effects(out);
    }

    fn send(&mut self, node: &str) {
        self.stamp += 1;
        let s = &mut self.streams[Self::ix(node)];
        let seq = s.sent_at.len() as i64;
        s.sent_at.push(self.stamp);
        s.delivered.push(false);
        let mut out = Vec::new();
        self.t.send(node, "p", m(seq), self.now, &mut out);
        self.effects(out);
    }

    fn send_if_up(&mut self, node: &str) {
        self.stamp += 1;
        let s = &mut self.streams[Self::ix(node)];
        let seq = s.sent_at.len() as i64;
        if self.t.send_if_up(node, "p", m(seq)) {
            s.sent_at.push(self.stamp);
            s.delivered.push(false);
        }
    }

    fn up(&mut self, node: &str) {
        self.next_link += 1;
        let link = TestLink::new(self.next_link);
        self.streams[Self::ix(node)].ids.push(link.id);
        self.call(|t, now, out| {
            t.up(node, link, now, out);
        });
    }

    /// The peer receives `k` frames of the node's live connection.
    fn deliver(&mut self, node: &str, k: usize) {
        let Some(link) = self.t.link(node).cloned() else {
            return;
        };
        let got: Vec<i64> = {
            let mut w = link.wire.borrow_mut();
            if w.dead || w.closed {
                return;
            }
            let k = k.min(w.frames.len());
            w.frames.drain(..k).map(|(_, m)| seq_of(&m)).collect()
        };
        for seq in got {
            self.check_delivery(node, seq as usize);
        }
    }

    fn check_delivery(&mut self, node: &str, seq: usize) {
        let s = &mut self.streams[Self::ix(node)];
        let first_gap = s.last_delivered.map_or(0, |l| l + 1);
        assert!(seq >= first_gap, "{node}: {seq} delivered out of order");
        for gap in first_gap..seq {
            assert!(
                s.last_lost.is_some_and(|l| l > s.sent_at[gap]),
                "{node}: {gap} lost without NodeLost before {seq} arrived"
            );
        }
        s.delivered[seq] = true;
        s.last_delivered = Some(seq);
    }

    /// The node's live connection breaks; its end is reported later.
    fn kill(&mut self, node: &str) {
        let Some(link) = self.t.link(node) else {
            return;
        };
        let mut w = link.wire.borrow_mut();
        if w.dead {
            return;
        }
        w.dead = true;
        w.frames.clear();
        let id = link.id;
        drop(w);
        self.streams[Self::ix(node)].dead.push(id);
    }

    fn report_down(&mut self, node: &str) {
        let s = &mut self.streams[Self::ix(node)];
        if s.dead.is_empty() {
            return;
        }
        let i = self.rng.gen_range(0..s.dead.len());
        let id = s.dead.swap_remove(i);
        self.call(|t, now, out| t.down(node, id, "peer closed", now, 0.5, out));
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        if self.rng.gen_bool(0.5) {
            // Late: one call for everything due.
            let now = self.now;
            self.call(|t, _, out| t.handle_timeout(now, out));
        } else {
            while let Some(at) = self.t.poll_timeout().filter(|at| *at <= self.now) {
                self.call(|t, _, out| t.handle_timeout(at, out));
            }
        }
    }

    fn step(&mut self) {
        let node = NODES[self.rng.gen_range(0..NODES.len())];
        match self.rng.gen_range(0..100) {
            0..=34 => self.send(node),
            35..=39 => self.send_if_up(node),
            40..=54 => {
                let k = self.rng.gen_range(0..4);
                self.deliver(node, k)
            }
            55..=59 => self.up(node),
            60..=64 => self.kill(node),
            65..=69 => self.report_down(node),
            70..=71 => {
                let ids = &self.streams[Self::ix(node)].ids;
                if !ids.is_empty() {
                    let id = ids[self.rng.gen_range(0..ids.len())];
                    if self.t.link(node).map(Link::id) != Some(id) {
                        self.call(|t, now, out| t.down(node, id, "stale", now, 0.5, out));
                    }
                }
            }
            72..=74 => self.call(|t, _, out| t.connect_failed(node, "refused", out)),
            75..=77 => {
                let a = addr(self.rng.gen_range(1..4));
                if self.rng.gen_bool(0.5) {
                    self.call(|t, now, out| t.addresses(node, vec![a], now, out));
                } else {
                    self.t.learn_address(node, a);
                }
            }
            78..=79 => self.call(|t, now, out| t.ensure_connected(node, now, out)),
            _ => {
                let by = ms(self.rng.gen_range(0..700));
                self.advance(by)
            }
        }
    }

    /// Ends the run: every broken connection is reported, every attempt runs out, what is
    /// on live links arrives; then every message is delivered or was announced lost.
    fn drain(&mut self) {
        self.react = false;
        for node in NODES {
            while !self.streams[Self::ix(node)].dead.is_empty() {
                self.report_down(node);
            }
        }
        self.advance(Duration::from_secs(3600));
        assert_eq!(self.t.poll_timeout(), None);
        for node in NODES {
            assert!(!self.t.is_connecting(node));
            self.deliver(node, usize::MAX);
            let s = &self.streams[Self::ix(node)];
            for (seq, done) in s.delivered.iter().enumerate() {
                assert!(
                    *done || s.last_lost.is_some_and(|l| l > s.sent_at[seq]),
                    "{node}: {seq} silently lost"
                );
            }
        }
    }
}

#[test]
fn no_silent_holes_under_random_interleavings() {
    let mut delivered = 0;
    let mut sent = 0;
    for seed in 0..300 {
        let mut sim = Sim {
            t: table(2000, 3000),
            rng: StdRng::seed_from_u64(seed),
            now: Instant::now(),
            stamp: 0,
            next_link: 0,
            streams: NODES.iter().map(|_| Stream::default()).collect(),
            react: true,
        };
        for _ in 0..1500 {
            sim.step();
        }
        sim.drain();
        for s in &sim.streams {
            sent += s.sent_at.len();
            delivered += s.delivered.iter().filter(|d| **d).count();
        }
    }
    // The run exercised both sides: many messages arrived, many were lost.
    assert!(
        delivered > sent / 10 && delivered < sent,
        "{delivered} of {sent}"
    );
}

#[test]
fn the_last_failure_of_an_attempt_is_its_reason_at_the_deadline() {
    let t0 = Instant::now();
    let mut t = table(2000, 3000);
    let mut out = Vec::new();
    t.addresses("n", vec![addr(1), addr(2)], t0, &mut out);
    t.send("n", "", m(0), t0, &mut out);
    assert_eq!(out, vec![dial("n", addr(1))]);
    out.clear();
    // The first address refuses our secret; the second one answers nothing.
    t.attempt_failed("n", "authentication failed: shared secret mismatch");
    assert!(t.is_connecting("n"), "the attempt goes on");
    let all = run_until(&mut t, t0, t0 + ms(10_000));
    assert_eq!(
        all,
        vec![
            (ms(500), dial("n", addr(2))),
            (
                ms(2000),
                lost("n", "authentication failed: shared secret mismatch", 1)
            )
        ]
    );
    // The next attempt starts without a cause: a plain timeout again.
    t.send("n", "", m(1), t0 + ms(3000), &mut out);
    let all = run_until(&mut t, t0, t0 + ms(10_000));
    assert_eq!(all.last(), Some(&(ms(5000), lost("n", CONNECT_TIMEOUT, 1))));
    // A failure reported while the node is not being reached is ignored.
    t.attempt_failed("n", "late");
    t.send("n", "", m(2), t0 + ms(6000), &mut out);
    let all = run_until(&mut t, t0, t0 + ms(10_000));
    assert_eq!(all.last(), Some(&(ms(8000), lost("n", CONNECT_TIMEOUT, 1))));
}

#[test]
fn a_refused_address_is_dialled_again_with_growing_pauses_until_the_deadline() {
    let t0 = Instant::now();
    let mut t = table(2000, 3000);
    let mut out = Vec::new();
    t.addresses("n", vec![addr(1)], t0, &mut out);
    t.send("n", "", m(0), t0, &mut out);
    assert_eq!(out, vec![dial("n", addr(1))]);
    out.clear();
    // Refused ten milliseconds after each dial: the pauses are 200–300, 300–400, then
    // 400–500 ms, `rand01` placing each in its range; a re-dial that would fall at or after
    // the deadline is not made.
    let mut at = ms(10);
    let mut dials = Vec::new();
    for r in [0.0, 1.0, 0.5, 1.0, 0.0] {
        t.refused("n", addr(1), t0 + at, r);
        // Reported twice (or late): still one re-dial.
        t.refused("n", addr(1), t0 + at, 0.9);
        let all = run_until(&mut t, t0, t0 + ms(1999));
        assert!(all.len() <= 1, "{all:?}");
        if let Some((when, e)) = all.into_iter().next() {
            assert_eq!(e, dial("n", addr(1)));
            dials.push(when);
            at = when + ms(10);
        }
    }
    assert_eq!(dials, vec![ms(210), ms(620), ms(1080), ms(1590)]);
    assert!(t.is_connecting("n") && t.queued("n") == 1);
    let all = run_until(&mut t, t0, t0 + ms(10_000));
    assert_eq!(all, vec![(ms(2000), lost("n", CONNECT_TIMEOUT, 1))]);
    assert_eq!(t.poll_timeout(), None);

    // Outside an attempt a refusal changes nothing.
    t.refused("n", addr(1), t0 + ms(3000), 0.0);
    assert_eq!(t.poll_timeout(), None);
}

#[test]
fn a_refused_attempt_delivers_its_queue_once_the_peer_accepts() {
    let t0 = Instant::now();
    let mut t = table(2000, 3000);
    let mut out = Vec::new();
    t.addresses("n", vec![addr(1)], t0, &mut out);
    for i in 0..3 {
        t.send("n", "", m(i), t0 + ms(i as u64), &mut out);
    }
    out.clear();
    t.refused("n", addr(1), t0 + ms(5), 0.5);
    assert!(t.take_timers_changed());
    assert_eq!(t.poll_timeout(), Some(t0 + ms(255)));
    let all = run_until(&mut t, t0, t0 + ms(255));
    assert_eq!(all, vec![(ms(255), dial("n", addr(1)))]);
    t.send("n", "", m(3), t0 + ms(256), &mut out);
    let link = TestLink::new(7);
    t.up("n", link.clone(), t0 + ms(260), &mut out);
    assert_eq!(out, vec![Effect::NodeUp { node: "n".into() }]);
    assert_eq!(link.take(), vec![0, 1, 2, 3]);
    // Nothing is left of the attempt: no re-dial, no deadline.
    assert_eq!(t.poll_timeout(), None);
}

#[test]
fn other_failures_of_an_attempt_are_not_dialled_again() {
    let t0 = Instant::now();
    let mut t = table(2000, 3000);
    let mut out = Vec::new();
    t.addresses("n", vec![addr(1)], t0, &mut out);
    t.send("n", "", m(0), t0, &mut out);
    out.clear();
    t.attempt_failed("n", "authentication failed: shared secret mismatch");
    let all = run_until(&mut t, t0, t0 + ms(10_000));
    assert_eq!(
        all,
        vec![(
            ms(2000),
            lost("n", "authentication failed: shared secret mismatch", 1)
        )]
    );
}

#[test]
fn refused_pause_ranges() {
    let r = |k, x| refused_pause(k, x).as_millis();
    assert_eq!((r(1, 0.0), r(1, 1.0)), (200, 300));
    assert_eq!((r(2, 0.0), r(2, 1.0)), (300, 400));
    assert_eq!((r(3, 0.0), r(3, 1.0)), (400, 500));
    assert_eq!(
        (r(u32::MAX, 0.5), r(9, f64::NAN), r(1, 7.0)),
        (450, 400, 300)
    );
}

mod queue;

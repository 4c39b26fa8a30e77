//! The per-peer send queue limit (`send_queue_limit`) over real sockets: a peer that
//! completes the handshake and then stops reading (a stalled process), or stops accepting
//! connections at all (a process stopped with SIGSTOP: the kernel still completes the TCP
//! handshake, nobody answers). The sender's monitors of that node fire once with
//! `("transport_error", node, "send queue over <limit> bytes")`, its queue stays bounded, the
//! gap is never filled (what was dropped never arrives, nothing arrives twice), and once the
//! peer reads again new messages flow. With the
//! unbounded policy the queue grows as in the reference implementation.

mod net_common;
use aemp::{msg, Node, NodeEvent, NodeId, PortId, Reason, SendQueueLimit, Value};
use net_common::*;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{mpsc, watch};

/// The limit of the sending node in these tests.
const LIMIT: usize = 4 << 20;
/// Size of the string carried by each message.
const BLOB: usize = 16 << 10;
/// A flood that has not overflowed after this many messages (128 MiB) never will.
const MAX_MSGS: i64 = 8 * 1024;
const SETTLE: Duration = Duration::from_millis(500);

/// The sending node, with `limit`.
async fn sender(name: &str, limit: SendQueueLimit) -> Node {
    let cfg = cfg(name, "s3cret")
        .send_queue_limit(limit)
        .build()
        .expect("config");
    Node::configure(cfg).await.expect("configure")
}

/// A listener with a small receive buffer (so that little hides in the kernel), which
/// accepts connections only while `gate` is true, completes the handshake as node `id`, and
/// hands the peers over.
async fn stalling_listener(
    id: &str,
) -> (
    SocketAddr,
    mpsc::UnboundedReceiver<Peer>,
    watch::Sender<bool>,
) {
    let sock = TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(64 << 10).unwrap();
    sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener: TcpListener = sock.listen(64).unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let (gate_tx, mut gate) = watch::channel(true);
    let hs = peer_hs(id, "s3cret", &["cbor"]);
    tokio::spawn(async move {
        loop {
            // While the gate is shut, connections wait in the backlog: a stopped process.
            if gate.wait_for(|open| *open).await.is_err() {
                return;
            }
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let hs = hs.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                if let Ok(p) = Peer::handshake(stream, &hs).await {
                    let _ = tx.send(p);
                }
            });
        }
    });
    (addr, rx, gate_tx)
}

/// Monitors of node `peer` (its node port, and port `sink` twice) that report into a
/// channel and set `fired`.
fn watch_node(
    a: &Node,
    peer: &NodeId,
    sink: &PortId,
) -> (
    mpsc::UnboundedReceiver<(&'static str, Reason)>,
    Arc<AtomicBool>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let fired = Arc::new(AtomicBool::new(false));
    for (name, port) in [
        ("node", peer.node_port()),
        ("sink", sink.clone()),
        ("sink2", sink.clone()),
    ] {
        let tx = tx.clone();
        let fired = fired.clone();
        a.mon_cb(&port, move |r| {
            fired.store(true, Ordering::SeqCst);
            let _ = tx.send((name, r));
        })
        .keep();
    }
    (rx, fired)
}

/// Waits for each of the three monitors to fire once with the overflow reason, and checks
/// that none fires again.
async fn expect_overflow_monitors(
    rx: &mut mpsc::UnboundedReceiver<(&'static str, Reason)>,
    peer: &NodeId,
) {
    let want = format!("send queue over {LIMIT} bytes");
    let mut seen = Vec::new();
    for _ in 0..3 {
        let (name, r) = within("monitor after overflow", rx.recv()).await.unwrap();
        assert_eq!(r.len(), 3, "{r:?}");
        assert_eq!(r[0], Value::from("transport_error"), "{r:?}");
        assert_eq!(r[1], Value::from(peer.as_str()), "{r:?}");
        assert_eq!(r[2], Value::from(want.as_str()), "{r:?}");
        seen.push(name);
    }
    seen.sort();
    assert_eq!(seen, ["node", "sink", "sink2"]);
    tokio::time::sleep(SETTLE).await;
    assert!(rx.try_recv().is_err(), "a monitor fired twice");
}

/// `(run, seq)` of the `sink` messages a peer reads until the connection closes (or, with
/// `until`, until that message).
async fn read_sink(p: &mut Peer, until: Option<(i64, i64)>) -> Vec<(i64, i64)> {
    let mut got = Vec::new();
    while let Some((port, m)) = p.recv().await {
        if port != "sink" {
            continue;
        }
        let key = (m[0].as_i64().unwrap(), m[1].as_i64().unwrap());
        got.push(key);
        if Some(key) == until {
            break;
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stops_reading_fails_at_the_limit_and_recovers() {
    let peer_id = NodeId::new("q-stalled").unwrap();
    let (addr, mut peers, gate) = stalling_listener(peer_id.as_str()).await;
    let a = sender("q-sender", SendQueueLimit::Bytes(LIMIT)).await;
    let mut events = a.node_events();
    a.connect(addr).unwrap();
    assert!(a.wait_up(&peer_id, T).await, "the scripted peer came up");
    let mut first = within("first connection", peers.recv()).await.unwrap();
    let sink = PortId::parse(&format!("{peer_id}#sink")).unwrap();
    let (mut mons, fired) = watch_node(&a, &peer_id, &sink);
    let blob = Value::from("x".repeat(BLOB));

    // Run 1: the peer reads nothing; the sender floods until its monitors fire.
    let mut max_queued = 0;
    let mut sent = 0;
    while !fired.load(Ordering::SeqCst) {
        assert!(sent < MAX_MSGS, "no overflow after {sent} messages");
        // `snd` never fails: the monitors are the signal.
        a.snd(&sink, msg![1, sent, blob.clone()]).unwrap();
        sent += 1;
        max_queued = max_queued.max(a.queued_bytes(&peer_id));
        if sent % 16 == 0 {
            a.port_count().await; // the node task has handled what was sent
        }
    }
    expect_overflow_monitors(&mut mons, &peer_id).await;
    // One message is a little more than BLOB bytes once encoded.
    assert!(
        max_queued <= LIMIT + BLOB + 64,
        "queued {max_queued} bytes, limit {LIMIT}"
    );
    let down: Vec<_> = drain_events(&mut events)
        .into_iter()
        .filter_map(|e| match e {
            NodeEvent::Down(n, why) if n == peer_id => Some(why),
            _ => None,
        })
        .collect();
    assert_eq!(down, [format!("send queue over {LIMIT} bytes")]);
    assert!(!a.is_up(&peer_id).await);
    assert_eq!(a.queued_bytes(&peer_id), 0, "the queue is gone");

    // What the peer reads of the dropped connection is a gap-free prefix of run 1 without
    // its end: the message that overflowed and the ones after it never arrive.
    let old = read_sink(&mut first, None).await;
    let k = old.len() as i64;
    assert!(k < sent, "read {k} of {sent}");
    assert!(
        old.iter()
            .enumerate()
            .all(|(i, &(r, s))| r == 1 && s == i as i64),
        "not a prefix of run 1"
    );

    // Run 2: the peer is stopped (connections wait in its backlog); the messages queue in
    // the node table until they are over the limit, which fails the node again.
    gate.send_replace(false);
    let (mut mons, fired) = watch_node(&a, &peer_id, &sink);
    let mut sent2 = 0;
    while !fired.load(Ordering::SeqCst) {
        assert!(sent2 < MAX_MSGS, "no overflow of the connecting queue");
        a.snd(&sink, msg![2, sent2, blob.clone()]).unwrap();
        sent2 += 1;
        if sent2 % 16 == 0 {
            // Let the node task catch up (a round trip through it), so that MAX_MSGS counts
            // messages it handled, not ones still waiting in its queue on a loaded machine.
            a.port_count().await;
        }
    }
    expect_overflow_monitors(&mut mons, &peer_id).await;

    // The peer resumes: new messages flow, in order, and nothing of run 1 comes back.
    gate.send_replace(true);
    for i in 0..10 {
        a.snd(&sink, msg![3, i, "small"]).unwrap();
    }
    assert!(a.wait_up(&peer_id, T).await, "reconnected");
    let mut got = Vec::new();
    let mut conns = Vec::new();
    while !got.contains(&(3, 9)) {
        // The connections the sender dialled while the peer was stopped are accepted in
        // turn; it keeps one and closes the others.
        let mut p = within("a new connection", peers.recv()).await.unwrap();
        got.extend(read_sink(&mut p, Some((3, 9))).await);
        conns.push(p);
    }
    // Messages of run 1 that the sender handed over after the node had failed (it sends 16
    // between checks of the monitor flag) went to a new connection and may arrive now: they
    // come after the gap (the message that overflowed is never delivered), in order.
    let late1: Vec<i64> = got.iter().filter(|m| m.0 == 1).map(|m| m.1).collect();
    assert!(
        late1.iter().all(|&s| s > k && s < sent),
        "run 1 before its gap came back ({k} read of {sent}): {late1:?}"
    );
    assert!(late1.windows(2).all(|w| w[0] < w[1]), "run 1 out of order");
    let run2: Vec<i64> = got.iter().filter(|m| m.0 == 2).map(|m| m.1).collect();
    assert!(run2.windows(2).all(|w| w[0] < w[1]), "run 2 out of order");
    let run3: Vec<i64> = got.iter().filter(|m| m.0 == 3).map(|m| m.1).collect();
    assert_eq!(run3, (0..10).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbounded_queue_keeps_the_reference_behaviour() {
    let peer_id = NodeId::new("q-slow").unwrap();
    let (addr, mut peers, _gate) = stalling_listener(peer_id.as_str()).await;
    let a = sender("q-unbounded", SendQueueLimit::Unbounded).await;
    a.connect(addr).unwrap();
    assert!(a.wait_up(&peer_id, T).await);
    let mut p = within("connection", peers.recv()).await.unwrap();
    let sink = PortId::parse(&format!("{peer_id}#sink")).unwrap();
    let (_mons, fired) = watch_node(&a, &peer_id, &sink);
    let blob = Value::from("x".repeat(BLOB));
    // Far over what the bounded sender allowed: nothing fails.
    let mut sent = 0;
    while a.queued_bytes(&peer_id) <= 3 * LIMIT {
        assert!(sent < MAX_MSGS, "the queue did not grow");
        a.snd(&sink, msg![1, sent, blob.clone()]).unwrap();
        sent += 1;
        if sent % 16 == 0 {
            a.port_count().await; // the node task has handled what was sent
        }
    }
    tokio::time::sleep(SETTLE).await;
    assert!(!fired.load(Ordering::SeqCst), "a monitor fired");
    assert!(a.is_up(&peer_id).await);
    // The peer reads again: everything arrives, in order.
    let got = within("everything", read_sink(&mut p, Some((1, sent - 1)))).await;
    assert_eq!(got.len() as i64, sent);
    assert!(got.iter().enumerate().all(|(i, &(_, s))| s == i as i64));
}

//! A wrong shared secret is refused on both sides, without side effects on other connections.

mod net_common;
use aemp::{msg, Node, NodeEvent};
use aemp_proto::handshake::{Event, Handshake};
use net_common::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secret_refused_on_both_sides() {
    let a = Node::configure(
        cfg("ws-a", "secret-one")
            .connect_interval(Duration::from_secs(1))
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    let b = node_with("ws-b", "secret-two", &["cbor", "json"]).await;
    // B has a healthy connection to C (same secret) with monitors in both directions.
    let c = node_with("ws-c", "secret-two", &["cbor", "json"]).await;
    link(&b, &c).await;
    let fired = Arc::new(AtomicUsize::new(0));
    let on_c = c.port_with(|_, _| Ok(()));
    let local = b.port_with(|_, _| Ok(()));
    for p in [&on_c, &local, &c.node_port()] {
        let f = fired.clone();
        b.mon_cb(p, move |_| {
            f.fetch_add(1, Ordering::SeqCst);
        })
        .keep();
    }
    let mut a_ev = a.node_events();
    let mut b_ev = b.node_events();

    for _ in 0..3 {
        a.connect(b.listen_addrs()[0]).unwrap();
    }
    a.add_address(b.id(), b.listen_addrs()).unwrap();
    // A cal to B's node port cannot succeed: an error (transport_error) or a timeout.
    let r = within(
        "cal to unreachable node",
        a.cal(&b.node_port(), msg!["time"])
            .timeout(Duration::from_secs(3)),
    )
    .await;
    assert!(
        r.is_err(),
        "cal across a secret mismatch got an answer: {r:?}"
    );

    // Settle, then check that nobody came up and nothing fired.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!a.is_up(b.id()).await);
    assert!(!b.is_up(a.id()).await);
    let a_events = drain_events(&mut a_ev);
    assert!(
        !a_events.iter().any(|e| matches!(e, NodeEvent::Up(_))),
        "{a_events:?}"
    );
    let b_events = drain_events(&mut b_ev);
    assert!(b_events.is_empty(), "B saw node events: {b_events:?}");
    assert_eq!(fired.load(Ordering::SeqCst), 0, "B's monitors fired");
    assert!(b.is_up(c.id()).await);
    assert_cal_works(&b, &c).await;
    assert_cal_works(&c, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripted_peer_with_wrong_token_gets_nothing_after_auth_line() {
    let b = node("wt-b").await;
    let mut s = within("connect", TcpStream::connect(b.listen_addrs()[0]))
        .await
        .unwrap();
    let hs = peer_hs("wt-peer", "not-the-secret", &["cbor", "json"]);
    let mut h = Handshake::new(&hs, "127.0.0.1:1", aemp_proto::handshake::new_nonce());
    s.write_all(&h.initial_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let lines = read_lines(&mut s, &mut buf, 2).await.expect("greeting");
    for l in &lines {
        assert_eq!(h.feed(l).unwrap(), l.len());
    }
    let mut auth = None;
    while let Some(ev) = h.poll_event() {
        if let Event::Send(b) = ev {
            auth = Some(b);
        }
    }
    // Our auth line carries a token made with the wrong secret.
    s.write_all(&auth.expect("auth line")).await.unwrap();
    buf.extend(read_to_close(&mut s).await);
    // B may or may not have sent its own auth line (it is written before ours is checked),
    // but nothing after it: no data phase.
    let nl = buf.iter().filter(|&&c| c == b'\n').count();
    assert!(
        nl <= 1,
        "more than the auth line after the greeting: {buf:?}"
    );
    if nl == 1 {
        assert_eq!(
            buf.last(),
            Some(&b'\n'),
            "bytes after the auth line: {buf:?}"
        );
        let line = String::from_utf8(buf.clone()).unwrap();
        assert!(line.starts_with("hmac_sha3_512;"), "{line}");
    } else {
        assert!(buf.is_empty(), "partial line after the greeting: {buf:?}");
    }
    assert!(!b.is_up(&aemp::NodeId::new("wt-peer").unwrap()).await);
    // B still serves correct peers.
    let mut good = Peer::connect(
        b.listen_addrs()[0],
        &peer_hs("wt-good", "s3cret", &["cbor"]),
    )
    .await
    .unwrap();
    good.ping("t").await;
}

//! Simultaneous connects end with exactly one connection; a node cannot connect to itself.

mod net_common;
use aemp::{Node, NodeEvent};
use net_common::*;
use std::time::Duration;

const SETTLE: Duration = Duration::from_millis(500);

async fn one_round(i: usize) {
    let a = node(&format!("sim-a-{i}")).await;
    let b = node(&format!("sim-b-{i}")).await;
    let mut a_ev = a.node_events();
    let mut b_ev = b.node_events();
    a.connect(b.listen_addrs()[0]).unwrap();
    b.connect(a.listen_addrs()[0]).unwrap();
    let a_up = a.wait_up(b.id(), T / 3).await;
    let b_up = b.wait_up(a.id(), T / 3).await;
    assert!(
        a_up && b_up,
        "round {i}: not both up (A sees B: {a_up}, B sees A: {b_up}); A events {:?}, B events {:?}",
        drain_events(&mut a_ev),
        drain_events(&mut b_ev)
    );
    tokio::time::sleep(SETTLE).await;
    for (me, peer, ev) in [(&a, &b, &mut a_ev), (&b, &a, &mut b_ev)] {
        let events = drain_events(ev);
        assert_eq!(
            events,
            vec![NodeEvent::Up(peer.id().clone())],
            "round {i}: node events of {}",
            me.id()
        );
        assert_eq!(me.up_nodes().await, vec![peer.id().clone()]);
    }
    assert_cal_works(&a, &b).await;
    assert_cal_works(&b, &a).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_connect_gives_one_connection() {
    // Four rounds at a time keep the suite fast; each round is independent.
    for batch in 0..5 {
        let rounds: Vec<_> = (0..4)
            .map(|j| tokio::spawn(one_round(batch * 4 + j)))
            .collect();
        for r in rounds {
            within("round", r).await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_to_itself_is_refused() {
    let a = node("self-a").await;
    let b = node("self-b").await;
    link(&a, &b).await;
    let mut ev = a.node_events();
    a.connect(a.listen_addrs()[0]).unwrap();
    tokio::time::sleep(SETTLE).await;
    let events = drain_events(&mut ev);
    assert!(events.is_empty(), "connecting to itself raised {events:?}");
    assert_eq!(a.up_nodes().await, vec![b.id().clone()]);
    // Local sends to its own node port still work, and so does the link to B.
    assert_cal_works(&a, &a).await;
    assert_cal_works(&a, &b).await;
    let _: &Node = &a;
}

/// The race of `simultaneous_connect_gives_one_connection`, scripted step by step: node A
/// ("dsim-a") and a scripted peer B ("dsim-z", the larger ID) dial each other.
///
/// 1. B dials A (conn2) and sends its greeting; A answers with greeting and auth line.
/// 2. A dials B (conn1); B sends its greeting there; A acts on it (auth line or close).
/// 3. B verifies A's auth line on conn2 and sends its own: conn2 is authenticated in both
///    directions, so B (a real node) now considers it up. A must not drop it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticated_connection_is_not_dropped_for_a_simultaneous_one() {
    use aemp_proto::codec::Framing;
    use aemp_proto::handshake::{new_nonce, Event, Handshake};
    use tokio::io::AsyncWriteExt;
    use tokio::net::{TcpListener, TcpStream};

    let a = node("dsim-a").await;
    let b_id = aemp::NodeId::new("dsim-z").unwrap();
    let hs = peer_hs(b_id.as_str(), "s3cret", &["cbor"]);

    // Step 1.
    let mut c2 = within("dial A", TcpStream::connect(a.listen_addrs()[0]))
        .await
        .unwrap();
    let mut h2 = Handshake::new(&hs, "127.0.0.1:1", new_nonce());
    c2.write_all(&h2.initial_bytes()).await.unwrap();
    let mut buf2 = Vec::new();
    let lines = read_lines(&mut c2, &mut buf2, 3)
        .await
        .expect("A answers conn2 with greeting and auth line");
    let mut auth2 = None;
    let mut established = None;
    for l in &lines {
        h2.feed(l).unwrap();
        while let Some(ev) = h2.poll_event() {
            match ev {
                Event::Send(b) => auth2 = Some(b),
                Event::Established(e) => established = Some(e),
                _ => {}
            }
        }
    }
    let est = established.expect("A's auth line on conn2 verifies");

    // Step 2.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    a.connect(listener.local_addr().unwrap()).unwrap();
    let (mut c1, _) = within("A dials B", listener.accept()).await.unwrap();
    let h1 = Handshake::new(&hs, "127.0.0.1:1", new_nonce());
    c1.write_all(&h1.initial_bytes()).await.unwrap();
    // Three lines (A went on with conn1) or EOF (A refused it): either way A has acted.
    let mut buf1 = Vec::new();
    let _ = read_lines(&mut c1, &mut buf1, 3).await;

    // Step 3.
    c2.write_all(&auth2.expect("our auth line")).await.unwrap();
    let mut p = Peer::from_parts(
        c2,
        b_id.as_str(),
        Framing::from_name(&est.send_framing).unwrap(),
        Framing::from_name(&est.recv_framing).unwrap(),
        &buf2,
    );
    p.ping("t").await;
    assert!(a.wait_up(&b_id, T).await);
    drop(c1);
}

/// A node that still holds a connection to us refuses a new one by closing it after its
/// greeting; whether we then read an end of file or a reset depends on whether our auth
/// line reached it first. Both are the same refusal: A dials again within the attempt
/// (after 200–300 ms) instead of waiting for its next regular dial.
///
/// Scripted peer P: the first connection gets P's greeting, A's greeting is read, and the
/// socket is closed with SO_LINGER 0 (a reset); the next connection completes the
/// handshake and must carry the message A was asked to send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_reset_after_the_greeting_is_dialled_again_at_once() {
    refused_after_the_greeting_is_dialled_again("reset", false, true).await;
}

/// The same refusal when both sides can do TLS: the reference closes the connection right
/// after reading our first greeting line, before TLS begins, so our TLS handshake meets an
/// end of file (or a reset) without a byte of TLS from the peer. That is the refusal, not a
/// refused certificate (where TLS records come first): A dials again at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_before_tls_begins_is_dialled_again_at_once() {
    refused_after_the_greeting_is_dialled_again("tls-eof", true, false).await;
    refused_after_the_greeting_is_dialled_again("tls-reset", true, true).await;
}

/// Node A (with a certificate if `tls`) is asked to send to scripted peer P. P's first
/// connection gets P's greeting (offering TLS if `tls`), A's greeting is read and the socket
/// closed: with a reset (SO_LINGER 0, after what A sent next arrived unread) if `reset`,
/// else with a FIN. A must dial again within the attempt; on that connection P completes
/// the handshake without TLS, and the message must arrive.
async fn refused_after_the_greeting_is_dialled_again(name: &str, tls: bool, reset: bool) {
    use aemp_proto::codec::Framing;
    use aemp_proto::handshake::{new_nonce, Handshake};
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    let mut a_cfg = cfg(&format!("{name}-a"), "s3cret");
    if tls {
        a_cfg = a_cfg.cert(pem());
    }
    let a = Node::configure(a_cfg.build().unwrap()).await.unwrap();
    let p_id = aemp::NodeId::new(format!("{name}-p")).unwrap();
    let mut hs = peer_hs(p_id.as_str(), "s3cret", &["cbor"]);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    a.add_address(&p_id, vec![listener.local_addr().unwrap()])
        .unwrap();
    let to = aemp::PortId::from_parts(p_id.as_str(), "inbox");
    a.snd(&to, aemp::msg!["hello", 1]).unwrap();

    let (mut c1, _) = within("A dials P", listener.accept()).await.unwrap();
    hs.tls_available = tls;
    let h1 = Handshake::new(&hs, "127.0.0.1:1", new_nonce());
    c1.write_all(&h1.initial_bytes()).await.unwrap();
    let mut buf1 = Vec::new();
    read_lines(&mut c1, &mut buf1, 1)
        .await
        .expect("A's greeting on the first connection");
    if reset {
        // Let what A sends next (its auth line, or the start of TLS) arrive unread, so
        // that the close below sends a reset.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let c1 = c1.into_std().unwrap();
        socket2::SockRef::from(&c1)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(c1);
    } else {
        drop(c1);
    }
    let closed_at = std::time::Instant::now();

    let (c2, _) = within("A dials P again", listener.accept()).await.unwrap();
    let again = closed_at.elapsed();
    hs.tls_available = false;
    let mut p = Peer::handshake(c2, &hs)
        .await
        .expect("handshake on the re-dial");
    let (port, m) = within("the message", p.recv_non_global())
        .await
        .expect("a frame");
    assert_eq!((port.as_str(), m), ("inbox", aemp::msg!["hello", 1]));
    assert_eq!(p.send, Framing::Cbor);
    // The re-dial pause is 200-300 ms; the bound leaves room for a loaded machine while
    // staying below A's next regular dial.
    assert!(
        again < Duration::from_millis(1500),
        "{name}: re-dialled after {again:?}"
    );
}

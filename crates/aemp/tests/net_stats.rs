//! Connection statistics: per peer through the API (`Node::stats`, `Node::peer_stats`), and
//! from another node through the `aemp::stats` node-port request.

mod net_common;
use aemp::{msg, Node, StatsError, STATS_FUNCTION};
use net_common::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_after_traffic_and_a_reconnect() {
    let a = node("st-a").await;
    let b = node("st-b").await;
    let mut inbox = b.inbox(100);
    let to = inbox.port().clone();
    link(&a, &b).await;
    for i in 0..20 {
        a.snd(&to, msg!["n", i, "payload"]).unwrap();
    }
    for _ in 0..20 {
        within("delivery", inbox.recv()).await.unwrap();
    }
    // `bytes_out` counts a write when it has returned, which may be after the peer has
    // delivered what it carried: wait for it.
    let s = within("the writes counted", async {
        loop {
            let s = a.stats();
            if s.peers.first().is_some_and(|p| p.bytes_out >= 20 * 10) {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert_eq!(&s.node, a.id());
    assert_eq!(s.peers.len(), 1);
    let p = &s.peers[0];
    assert_eq!(&p.node, b.id());
    assert!(p.msgs_out >= 20 && p.bytes_out >= 20 * 10, "{p:?}");
    assert_eq!(p.reconnects, 0);
    let q = &b.stats().peers[0];
    assert_eq!(&q.node, a.id());
    assert!(
        q.msgs_in >= 20 && q.bytes_in >= p.bytes_out.min(20 * 10),
        "{q:?}"
    );

    // The connection ends (its peer goes away) and a node with the same ID comes back.
    b.shutdown().await;
    drop(inbox);
    let mut ev = a.node_events();
    within("the peer goes down", async {
        while a.is_up(b.id()).await {
            let _ = ev.recv().await;
        }
    })
    .await;
    let b2 = node("st-b").await;
    link(&a, &b2).await;
    let p = a.peer_stats();
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].reconnects, 1, "{p:?}");
    assert!(
        p[0].msgs_out < 20,
        "counts of the current connection: {p:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_node_answers_the_stats_request() {
    let a = node("sr-a").await;
    let b = node("sr-b").await;
    let c = node("sr-c").await;
    link(&b, &c).await;
    for _ in 0..5 {
        within("cal", c.cal(&b.node_port(), msg!["time"]))
            .await
            .unwrap();
    }
    // A wrong secret refused by b shows in its count.
    let intruder = Node::configure(
        cfg("sr-x", "not-the-secret")
            .connect_interval(Duration::from_secs(1))
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    intruder.connect(b.listen_addrs()[0]).unwrap();
    within("the refusal is counted", async {
        while b.stats().handshakes_refused == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;

    a.add_address(b.id(), b.listen_addrs()).unwrap();
    let s = within("stats of b", a.stats_of(b.id(), T)).await.unwrap();
    assert_eq!(&s.node, b.id());
    assert!(s.handshakes_refused >= 1, "{s:?}");
    // b answered over its connection to a, so a is among its peers, with c.
    let peers: Vec<&str> = s.peers.iter().map(|p| p.node.as_str()).collect();
    assert_eq!(peers, ["sr-a", "sr-c"]);
    let to_c = &s.peers[1];
    assert!(to_c.msgs_in >= 5 && to_c.msgs_out >= 5, "{to_c:?}");
    // The local answer has the same form.
    let own = within("own stats", a.stats_of(a.id(), T)).await.unwrap();
    assert_eq!(&own.node, a.id());

    // The request itself, as any node (or a tool) sends it.
    let raw = within("raw request", a.cal(&b.node_port(), msg![STATS_FUNCTION]))
        .await
        .unwrap();
    assert_eq!(raw[0].get("node").and_then(|v| v.as_str()), Some("sr-b"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_the_function_gives_no_statistics() {
    let a = node("su-a").await;
    let b = node("su-b").await;
    link(&a, &b).await;
    // A node answering like a node without the function: an error text.
    b.register(STATS_FUNCTION, |cx, args| {
        let reply: aemp::PortId = args[0].as_str().unwrap_or_default().parse()?;
        cx.snd(
            &reply,
            msg!["error", "unable to resolve function 'aemp::stats'"],
        );
        Ok(())
    });
    let e = within("stats", a.stats_of(b.id(), T)).await.unwrap_err();
    assert!(
        matches!(&e, StatsError::BadAnswer(t) if t.contains("unable to resolve")),
        "{e}"
    );
    // A node that does not answer (like a Perl node): the request times out.
    b.register(STATS_FUNCTION, |_, _| Ok(()));
    let e = within("stats", a.stats_of(b.id(), Duration::from_millis(300)))
        .await
        .unwrap_err();
    assert_eq!(e, StatsError::Cal(aemp::CalError::Timeout));
}

//! Connection loss: monitors of remote ports fire exactly once with `transport_error`,
//! queued messages are dropped, and no later message overtakes a monitor (no holes).

mod net_common;
use aemp::{msg, Node, NodeEvent, NodeId, Reason, Value};
use net_common::*;
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

const SETTLE: Duration = Duration::from_millis(300);

fn assert_transport_error(r: &Reason, node: &str) {
    assert_eq!(r.len(), 3, "reason {r:?}");
    assert_eq!(r[0], Value::from("transport_error"), "reason {r:?}");
    assert_eq!(r[1], Value::from(node), "reason {r:?}");
    assert!(r[2].as_str().is_some_and(|t| !t.is_empty()), "reason {r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_shutdown_fires_each_monitor_once() {
    let a = node("sd-a").await;
    let b = node("sd-b").await;
    link(&a, &b).await;
    let mut ev = a.node_events();
    let p1 = b.port_with(|_, _| Ok(()));
    let p2 = b.port_with(|_, _| Ok(()));
    let (tx, mut rx) = mpsc::unbounded_channel::<(&'static str, Reason)>();
    for (name, port) in [
        ("p1", &p1),
        ("p2", &p2),
        ("p2bis", &p2),
        ("node", &b.node_port()),
    ] {
        let tx = tx.clone();
        a.mon_cb(port, move |r| {
            let _ = tx.send((name, r));
        })
        .keep();
    }
    // The mon1 requests are ahead of this request on the connection.
    assert_cal_works(&a, &b).await;
    b.shutdown().await;
    let mut seen = Vec::new();
    for _ in 0..4 {
        let (name, r) = within("monitor after shutdown", rx.recv()).await.unwrap();
        assert_transport_error(&r, b.id().as_str());
        seen.push(name);
    }
    seen.sort();
    assert_eq!(seen, ["node", "p1", "p2", "p2bis"]);
    tokio::time::sleep(SETTLE).await;
    assert!(rx.try_recv().is_err(), "a monitor fired twice");
    let events = drain_events(&mut ev);
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(matches!(&events[0], NodeEvent::Down(n, _) if n == b.id()));
    assert!(!a.is_up(b.id()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_node_drops_queue_and_fires() {
    let a = Node::configure(
        cfg("unr-a", "s3cret")
            .connect_interval(Duration::from_secs(1))
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    let ghost = NodeId::new("unr-ghost").unwrap();
    a.add_address(&ghost, vec![dead_addr()]).unwrap();
    let gp = ghost.port("p");
    let (tx, mut rx) = mpsc::unbounded_channel::<Reason>();
    a.mon_cb(&gp, move |r| {
        let _ = tx.send(r);
    })
    .keep();
    a.snd(&gp, msg!["queued", 1]).unwrap();
    a.snd(&gp, msg!["queued", 2]).unwrap();
    let r = within("monitor of unreachable node", rx.recv())
        .await
        .unwrap();
    assert_transport_error(&r, ghost.as_str());
    tokio::time::sleep(SETTLE).await;
    assert!(rx.try_recv().is_err(), "monitor fired twice");

    // The node becomes reachable (a scripted peer with that ID): only what is sent from now
    // on arrives; the queued messages were dropped.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    a.add_address(&ghost, vec![listener.local_addr().unwrap()])
        .unwrap();
    a.snd(&gp, msg!["after"]).unwrap();
    let (sock, _) = within("accept", listener.accept()).await.unwrap();
    let mut p = Peer::handshake(sock, &peer_hs(ghost.as_str(), "s3cret", &["cbor"]))
        .await
        .unwrap();
    let (port, m) = p.recv_non_global().await.expect("frame");
    assert_eq!((port.as_str(), m), ("p", msg!["after"]));
    assert!(a.wait_up(&ghost, T).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_later_message_before_the_monitor_fired() {
    let a = node("nh-a").await;
    let b = node("nh-b").await;
    let relay = Relay::start(b.listen_addrs()[0]).await;
    a.connect(relay.addr).unwrap();
    assert!(a.wait_up(b.id(), T).await);
    assert!(b.wait_up(a.id(), T).await);

    // One log for both nodes, in real-time order.
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let l2 = log.clone();
    let target = b.port_with(move |_, m| {
        l2.lock()
            .push(format!("recv {}", m[0].as_str().unwrap_or("?")));
        Ok(())
    });
    let l3 = log.clone();
    a.mon_cb(&target, move |r| {
        l3.lock()
            .push(format!("fired {}", r[0].as_str().unwrap_or("?")));
    })
    .keep();
    a.snd(&target, msg!["before"]).unwrap();
    let has = |log: &Arc<Mutex<Vec<String>>>, prefix: &str| {
        log.lock().iter().any(|e| e.starts_with(prefix))
    };
    within("first delivery", async {
        while !has(&log, "recv before") {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;

    relay.cut();
    // Keep sending until something gets through a new connection.
    within("delivery after reconnect", async {
        let mut i = 0;
        while !has(&log, "recv later") {
            a.snd(&target, msg![format!("later{i}")]).unwrap();
            i += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    tokio::time::sleep(SETTLE).await;
    let log = log.lock().clone();
    let fired: Vec<usize> = (0..log.len())
        .filter(|&i| log[i].starts_with("fired"))
        .collect();
    assert_eq!(fired.len(), 1, "monitor must fire exactly once: {log:?}");
    assert_eq!(log[fired[0]], "fired transport_error", "{log:?}");
    let first_later = log
        .iter()
        .position(|e| e.starts_with("recv later"))
        .unwrap();
    assert!(
        fired[0] < first_later,
        "a later message arrived before the monitor fired: {log:?}"
    );
}

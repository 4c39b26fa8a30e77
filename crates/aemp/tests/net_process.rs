//! Across processes: a peer node in a child process (this test binary re-executed) is killed
//! with SIGKILL; monitors of its ports fire with `transport_error` exactly once.

mod net_common;
use aemp::{msg, MsgExt, Node, PortId, Reason, Value};
use net_common::*;
use std::time::Duration;

const CHILD_ENV: &str = "AEMP_NETTEST_CHILD_SECRET";

/// Not a test of its own: the peer node run by `kill_9_of_peer_process_fires_monitors` in a
/// child process. Does nothing unless the environment variable is set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "helper: runs only as the child process of kill_9_of_peer_process_fires_monitors"]
async fn child_peer() {
    let Ok(secret) = std::env::var(CHILD_ENV) else {
        return;
    };
    let node = Node::configure(cfg("child-peer/%u", &secret).build().unwrap())
        .await
        .unwrap();
    let echo = node
        .port()
        .on("echo", |cx, m| {
            let reply = m.reply_port()?;
            cx.snd(&reply, msg!["echoed", m[0].clone()]);
            Ok(())
        })
        .build();
    println!("READY {} {}", node.listen_addrs()[0], echo);
    // Wait to be killed; give up eventually so that no orphan outlives a crashed parent.
    tokio::time::sleep(Duration::from_secs(60)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_peer_process_fires_monitors() {
    let secret = "process-secret";
    let (mut child, ready) = spawn_child_test("child_peer", &[(CHILD_ENV, secret)]).await;
    let mut parts = ready.split_whitespace();
    let addr: std::net::SocketAddr = parts.next().unwrap().parse().unwrap();
    let echo: PortId = parts.next().unwrap().parse().unwrap();

    let a = Node::configure(cfg("parent/%u", secret).build().unwrap())
        .await
        .unwrap();
    a.connect(addr).unwrap();
    let peer = aemp::NodeId::new(echo.node()).unwrap();
    assert!(a.wait_up(&peer, T).await, "child node never came up");
    let r = within("echo", a.cal(&echo, msg!["echo", "hi"]))
        .await
        .unwrap();
    assert_eq!(r, msg!["echoed", "hi"]);

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Reason>();
    a.mon_cb(&echo, move |r| {
        let _ = tx.send(r);
    })
    .keep();
    // The mon1 is ahead of this request: the monitor is registered on the child.
    let r = within("echo", a.cal(&echo, msg!["echo", "again"]))
        .await
        .unwrap();
    assert_eq!(r, msg!["echoed", "again"]);

    child.0.kill().unwrap(); // SIGKILL
    let _ = child.0.wait();
    let reason = within("monitor after kill -9", rx.recv()).await.unwrap();
    assert_eq!(reason.len(), 3, "{reason:?}");
    assert_eq!(reason[0], Value::from("transport_error"));
    assert_eq!(reason[1], Value::from(peer.as_str()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(rx.try_recv().is_err(), "monitor fired twice");
    assert!(!a.is_up(&peer).await);
}

//! Across processes: a peer node in a child process (this test binary re-executed) is killed
//! with SIGKILL; monitors of its ports fire with `transport_error` exactly once. A peer
//! stopped with SIGSTOP makes a flooding sender fail it at its send queue limit, and after
//! SIGCONT it gets a gap-free prefix of what was sent before the failure and everything sent
//! after it.

mod net_common;
use aemp::{msg, MsgExt, Node, PortId, Reason, Value};
use net_common::*;
use std::time::Duration;

const CHILD_ENV: &str = "AEMP_NETTEST_CHILD_SECRET";
const SINK_ENV: &str = "AEMP_NETTEST_SINK_SECRET";

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

/// Not a test of its own: the receiver stopped and resumed by
/// `sigstop_of_receiver_process_fails_the_peer_at_the_send_queue_limit`. Its port `sink`
/// takes `[run, seq, blob]`; `report` answers a `cal` with, for run 1 and run 2 in turn,
/// `[count, first seq, last seq, breaks]` (breaks: messages whose seq is not the one after
/// the previous one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "helper: runs only as the child process of sigstop_of_receiver_process_fails_the_peer_at_the_send_queue_limit"]
async fn child_sink() {
    let Ok(secret) = std::env::var(SINK_ENV) else {
        return;
    };
    let node = Node::configure(cfg("child-sink/%u", &secret).build().unwrap())
        .await
        .unwrap();
    // Per run: [count, first, last, breaks].
    let runs = std::sync::Arc::new(parking_lot::Mutex::new([[0i64, -1, -1, 0]; 2]));
    let r = runs.clone();
    let sink = node.port_with(move |_cx, m| {
        let (run, seq) = (m[0].as_i64().unwrap(), m[1].as_i64().unwrap());
        let mut runs = r.lock();
        let [count, first, last, breaks] = &mut runs[(run - 1) as usize];
        if *count == 0 {
            *first = seq;
        } else if seq != *last + 1 {
            *breaks += 1;
        }
        *last = seq;
        *count += 1;
        Ok(())
    });
    let report = node.port_with(move |cx, m| {
        let runs = *runs.lock();
        let all: Vec<Value> = runs.iter().flatten().map(|&n| Value::from(n)).collect();
        cx.reply(&m, aemp::Msg::from(all))?;
        Ok(())
    });
    println!("READY {} {sink} {report}", node.listen_addrs()[0]);
    tokio::time::sleep(Duration::from_secs(120)).await;
}

/// Sends a signal to a process with the `kill` command.
fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("run kill")
        .success();
    assert!(ok, "kill {sig} {pid} failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigstop_of_receiver_process_fails_the_peer_at_the_send_queue_limit() {
    const LIMIT: usize = 4 << 20;
    const BLOB: usize = 16 << 10;
    let secret = "sigstop-secret";
    let (child, ready) = spawn_child_test("child_sink", &[(SINK_ENV, secret)]).await;
    let mut parts = ready.split_whitespace();
    let addr: std::net::SocketAddr = parts.next().unwrap().parse().unwrap();
    let sink: PortId = parts.next().unwrap().parse().unwrap();
    let report: PortId = parts.next().unwrap().parse().unwrap();
    let peer = aemp::NodeId::new(sink.node()).unwrap();

    let a = Node::configure(
        cfg("stopper/%u", secret)
            .send_queue_limit(aemp::SendQueueLimit::Bytes(LIMIT))
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    a.connect(addr).unwrap();
    assert!(a.wait_up(&peer, T).await, "child node never came up");
    let r = within("first report", a.cal(&report, msg!["report"]))
        .await
        .unwrap();
    assert_eq!(r, msg![0, -1, -1, 0, 0, -1, -1, 0]);

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Reason>();
    a.mon_cb(&sink, move |r| {
        let _ = tx.send(r);
    })
    .keep();
    let _ = within("mon registered", a.cal(&report, msg!["report"])).await;

    // The receiver stops; the sender floods with plain snd until the peer is failed. Asking
    // the node task whether the peer is up after each message stops the flood at the
    // failure, so that every message sent belongs to the connection that failed.
    signal(child.0.id(), "-STOP");
    let blob = Value::from("x".repeat(BLOB));
    let (mut sent, mut max_queued) = (0i64, 0usize);
    while a.is_up(&peer).await {
        // 128 MiB: a flood that has not overflowed by now never will.
        assert!(sent < 8 * 1024, "no overflow after {sent} messages");
        a.snd(&sink, msg![1, sent, blob.clone()]).unwrap();
        sent += 1;
        max_queued = max_queued.max(a.queued_bytes(&peer));
    }
    let reason = within("monitor after the overflow", rx.recv())
        .await
        .unwrap();
    assert_eq!(
        reason,
        vec![
            Value::from("transport_error"),
            Value::from(peer.as_str()),
            Value::from(format!("send queue over {LIMIT} bytes")),
        ]
    );
    assert!(
        max_queued <= LIMIT + BLOB + 64,
        "queued {max_queued} bytes, limit {LIMIT}"
    );
    assert_eq!(a.queued_bytes(&peer), 0, "the queue is gone");

    // The receiver resumes: it reads what its socket buffer held, then the end of that
    // connection. Once it has noticed that end (until then it refuses a new connection as
    // "already connected"), the sender reaches it again and new messages flow.
    signal(child.0.id(), "-CONT");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        a.connect(addr).unwrap();
        if a.wait_up(&peer, Duration::from_secs(2)).await {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never reconnected");
    }
    for i in 0..10 {
        a.snd(&sink, msg![2, i, "small"]).unwrap();
    }
    let r = within("report after resume", a.cal(&report, msg!["report"]))
        .await
        .unwrap();
    let n: Vec<i64> = r.as_slice().iter().map(|v| v.as_i64().unwrap()).collect();
    let [count1, first1, last1, breaks1, count2, first2, last2, breaks2] = n[..] else {
        panic!("report {r}")
    };
    // Run 1: a gap-free prefix of what was sent (possibly empty: data still unread when the
    // connection ends may be discarded by the kernels); its end, queued when the peer
    // failed, is dropped. Messages the node task took after the failure (the flood notices
    // it one message late at most) start a new connection and arrive after the gap, in
    // order, up to the last one sent; nothing from inside the gap ever arrives.
    assert!(
        count1 < sent,
        "read {count1} of {sent}: the end of run 1 was dropped"
    );
    let prefix_only = first1 == 0 && last1 == count1 - 1;
    let tail_only = last1 == sent - 1 && first1 == sent - count1;
    match breaks1 {
        _ if count1 == 0 => {}
        0 => assert!(prefix_only || tail_only, "run 1: {r} (sent {sent})"),
        1 => assert!(
            first1 == 0 && last1 == sent - 1,
            "run 1 after its gap ends with the last sent: {r} (sent {sent})"
        ),
        _ => panic!("run 1 has holes: {r} (sent {sent})"),
    }
    assert_eq!(
        (count2, first2, last2, breaks2),
        (10, 0, 9, 0),
        "run 2: {r}"
    );
    assert!(rx.try_recv().is_err(), "monitor fired twice");
}

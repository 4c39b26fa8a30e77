//! `Node::shutdown` loses nothing silently: what is queued for connected peers is written
//! before the connections close (in order, over TCP and TLS), the peer sees an orderly close,
//! the node's monitors fire with a shutdown reason, later operations fail with
//! `Error::Shutdown`, and what a deadline cuts off is reported and logged.

mod log_capture;
mod net_common;

use aemp::{msg, CalError, Config, Error, Msg, Node, NodeId, Reason, Value};
use log_capture::Logs;
use net_common::{dead_addr, link, peer_hs, within, Peer};
use std::time::Duration;

const SECRET: &str = "shutdown-secret";
const COUNT: i64 = 20_000;

fn pem() -> &'static str {
    include_str!("certs/gencert.pem")
}

async fn node(name: &str, tls: bool) -> Node {
    let mut b = Config::builder()
        .norc(true)
        .nodeid(name)
        .binds(["127.0.0.1:0"])
        .secret(SECRET)
        .connect_interval(Duration::from_secs(3));
    if tls {
        b = b.cert(pem());
    }
    Node::configure(b.build().unwrap()).await.unwrap()
}

/// A port on `node` that checks that `["n", i]` arrive with i = 0, 1, 2, ... and reports
/// how many did.
fn counter(node: &Node) -> (aemp::PortId, tokio::sync::watch::Receiver<i64>) {
    let (tx, rx) = tokio::sync::watch::channel(0i64);
    let mut next = 0i64;
    let port = node.port_with(move |_, m: Msg| {
        if m[1] != Value::from(next) {
            return Err(format!("out of order: expected {next}, got {}", m[1]).into());
        }
        next += 1;
        tx.send_replace(next);
        Ok(())
    });
    (port, rx)
}

/// Sends [`COUNT`] messages from `a` to `b`, shuts `a` down, and checks that every one
/// arrived in order and (`check_logs`: the runtime has one thread, whose logs are captured)
/// that `b` saw an orderly close.
async fn flush_on_shutdown(tls: bool, tag: &str, check_logs: bool) {
    let logs = Logs::default();
    let _log = logs.install(tracing::Level::INFO);
    let a = node(&format!("sd-a-{tag}"), tls).await;
    let b = node(&format!("sd-b-{tag}"), tls).await;
    link(&a, &b).await;
    let (port, mut got) = counter(&b);
    let died = b.monitor(&port);
    // A third straight from the handle (while the node task is idle these go straight into
    // the connection), a third in batches through the node task's queue, and a third sent
    // by a handler of A, which runs only after the shutdown was asked for.
    let third = COUNT / 3;
    for i in 0..third {
        a.snd(&port, msg!["n", i]).unwrap();
    }
    for chunk in (third..2 * third).collect::<Vec<_>>().chunks(1000) {
        a.snd_many(&port, chunk.iter().map(|&i| msg!["n", i]))
            .unwrap();
    }
    let target = port.clone();
    let relay = a.port_with(move |cx, _| {
        for i in 2 * third..COUNT {
            cx.snd(&target, msg!["n", i]);
        }
        Ok(())
    });
    a.snd(&relay, msg!["go"]).unwrap();
    let report = within("shutdown", a.shutdown()).await;
    assert!(report.is_complete(), "{report}");
    assert_eq!(report.to_string(), "all queued messages delivered");
    let all = got.wait_for(|n| *n == COUNT);
    within("all messages", all).await.unwrap();
    // The port never failed on an out-of-order message.
    assert!(b.port_exists(&port).await);
    drop(died);
    if !check_logs {
        b.shutdown().await;
        return;
    }

    // B saw an orderly close: its only note about A is the INFO of the connection's end,
    // with the plain end of stream as its reason (no reset, no TLS error).
    let b_id = b.id().to_string();
    let lost = |l: &String| l.contains(&format!("node={b_id}")) && l.contains("connection lost");
    let wait_lost = async {
        while !logs.lines().iter().any(lost) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    within("B notices the close", wait_lost).await;
    let lines = logs.lines();
    let line = lines.iter().find(|l| lost(l)).unwrap();
    assert!(line.contains(" INFO "), "{line}");
    assert!(line.contains("EOF from peer"), "{line}");
    let noisy: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .collect();
    assert!(noisy.is_empty(), "{noisy:#?}");
    b.shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn shutdown_delivers_everything_queued_in_order() {
    flush_on_shutdown(false, "tcp", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_delivers_everything_queued_on_a_multi_thread_runtime() {
    flush_on_shutdown(false, "mt", false).await;
}

#[tokio::test(flavor = "current_thread")]
async fn shutdown_delivers_everything_queued_in_order_over_tls() {
    flush_on_shutdown(true, "tls", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitors_of_the_node_fire_with_the_shutdown_reason() {
    let a = node("sd-mon-a", false).await;
    let b = node("sd-mon-b", false).await;
    link(&a, &b).await;
    let local = a.port_with(|_, _| Ok(()));
    let remote = b.port_with(|_, _| Ok(()));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(&str, Reason)>();
    for (what, port) in [
        ("local", local.clone()),
        ("remote", remote.clone()),
        ("node", b.node_port()),
    ] {
        let tx = tx.clone();
        a.mon_cb(&port, move |r| drop(tx.send((what, r)))).keep();
    }
    // The other side watches A's port: it sees the connection close, as before.
    let from_b = b.monitor(&local);
    // Make sure the monitors are in place (mon1 reached B) before the shutdown.
    net_common::assert_cal_works(&a, &b).await;
    assert!(within("shutdown", a.shutdown()).await.is_complete());
    let want = Reason::shutdown("sd-mon-a");
    assert_eq!(
        want,
        vec![
            Value::from("shutdown"),
            "sd-mon-a".into(),
            "node shut down".into()
        ]
    );
    let mut seen = Vec::new();
    for _ in 0..3 {
        let (what, r) = within("monitor", rx.recv()).await.unwrap();
        assert_eq!(r, want, "{what}");
        seen.push(what);
    }
    seen.sort();
    assert_eq!(seen, ["local", "node", "remote"]);
    let r = within("B's monitor", from_b).await;
    assert_eq!(r[0], Value::from("transport_error"), "{r}");
    assert_eq!(r[1], Value::from("sd-mon-a"), "{r}");
    // Nothing fires twice.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(rx.try_recv().is_err());
    b.shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn operations_after_shutdown_fail_with_shutdown() {
    let a = Node::new("sd-ops/%u").unwrap();
    let p = a.port_with(|_, _| Ok(()));
    assert!(a.shutdown().await.is_complete());
    assert!(a.is_shut_down());
    assert!(matches!(a.snd(&p, msg!["x"]), Err(Error::Shutdown)));
    assert!(matches!(
        a.snd_many(&p, vec![msg!["x"]]),
        Err(Error::Shutdown)
    ));
    assert!(matches!(a.kil(&p, vec!["x".into()]), Err(Error::Shutdown)));
    assert!(matches!(
        a.rcv(&p, "t", |_, _| Ok(())),
        Err(Error::Shutdown)
    ));
    let r = within("cal", a.cal(&p, msg!["q"])).await;
    assert_eq!(r, Err(CalError::Shutdown));
    let r = within("monitor", a.monitor(&p)).await;
    assert_eq!(r, Reason::shutdown(a.id().as_str()));
    assert!(within("second shutdown", a.shutdown()).await.is_complete());
}

#[tokio::test(flavor = "current_thread")]
async fn a_deadline_that_expires_reports_and_logs_what_was_dropped() {
    let logs = Logs::default();
    let _log = logs.install(tracing::Level::INFO);
    // A long connect interval: the attempt to reach the ghost is still under way at the
    // shutdown, however slow this machine is.
    let cfg = Config::builder()
        .norc(true)
        .nodeid("sd-late-a")
        .binds(["127.0.0.1:0"])
        .secret(SECRET)
        .connect_interval(Duration::from_secs(60))
        .build()
        .unwrap();
    let a = Node::configure(cfg).await.unwrap();
    // A peer that completes the handshake and then reads nothing.
    let stalled = Peer::connect(
        a.listen_addrs()[0],
        &peer_hs("sd-stalled", SECRET, &["cbor"]),
    )
    .await
    .unwrap();
    let stalled_id = NodeId::new("sd-stalled").unwrap();
    assert!(a.wait_up(&stalled_id, Duration::from_secs(10)).await);
    // And a node that cannot be reached.
    let ghost = NodeId::new("sd-ghost").unwrap();
    a.add_address(&ghost, vec![dead_addr()]).unwrap();
    let big = "x".repeat(1 << 20);
    for i in 0..64 {
        a.snd(&stalled_id.port("sink"), msg!["big", i, big.as_str()])
            .unwrap();
    }
    for i in 0..5 {
        a.snd(&ghost.port("sink"), msg!["small", i]).unwrap();
    }
    let report = within("shutdown", a.shutdown_within(Duration::from_millis(300))).await;
    assert!(!report.is_complete());
    assert_eq!(report.undelivered.len(), 2, "{report}");
    assert_eq!(report.undelivered[0], ("sd-ghost".to_string(), 5));
    let (node, n) = &report.undelivered[1];
    assert_eq!(node, "sd-stalled");
    assert!(*n > 0 && *n <= 64, "{report}");
    assert_eq!(
        report.to_string(),
        format!(
            "{} queued messages not delivered (sd-ghost: 5, sd-stalled: {n})",
            5 + n
        )
    );
    let lines = logs.lines();
    let warn = lines
        .iter()
        .find(|l| l.contains(" WARN ") && l.contains("shut down:"))
        .unwrap_or_else(|| panic!("no warning: {lines:#?}"));
    assert!(warn.contains(&report.to_string()), "{warn}");
    drop(stalled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_last_handle_shuts_down_the_same_way() {
    let a = node("sd-drop-a", false).await;
    let b = node("sd-drop-b", false).await;
    link(&a, &b).await;
    let (port, mut got) = counter(&b);
    let watch_a = b.monitor(&a.node_port());
    for chunk in (0..COUNT).collect::<Vec<_>>().chunks(500) {
        a.snd_many(&port, chunk.iter().map(|&i| msg!["n", i]))
            .unwrap();
    }
    drop(a);
    let all = got.wait_for(|n| *n == COUNT);
    within("all messages", all).await.unwrap();
    // And the connection closed: B sees A go.
    let r = within("A goes", watch_a).await;
    assert_eq!(r[0], Value::from("transport_error"), "{r}");
    b.shutdown().await;
}

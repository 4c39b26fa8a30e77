//! Monitors (`mon` in all its forms), `mon_guard`, and several nodes in one process.

mod common;

use aemp::{msg, Monitor, Msg, Node, PortId, Reason, Value};
use common::{death, node, settle, within, Counter, DropFlag, Recorder};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

fn reason(items: &[&str]) -> Reason {
    items.iter().map(|s| Value::from(*s)).collect()
}

fn idle_port(node: &Node) -> PortId {
    node.port_with(|_, _| Ok(()))
}

// ---- the callback form ---------------------------------------------------------------------

#[tokio::test(flavor = "current_thread")]
async fn mon_callback_forms_get_the_reason() {
    let node = node();
    let p = idle_port(&node);
    let (tx1, rx1) = tokio::sync::oneshot::channel();
    let (tx2, rx2) = tokio::sync::oneshot::channel();
    let _g1 = node.mon(&p, Monitor::callback(move |r| drop(tx1.send(r))));
    let _g2 = node.mon_cb(&p, move |r| drop(tx2.send(r)));
    let fut = node.monitor(&p);
    node.kil(&p, reason(&["boom", "x"])).unwrap();
    assert_eq!(within(rx1).await.unwrap(), reason(&["boom", "x"]));
    assert_eq!(within(rx2).await.unwrap(), reason(&["boom", "x"]));
    assert_eq!(within(fut).await, reason(&["boom", "x"]));
}

#[tokio::test(flavor = "current_thread")]
async fn mon_from_inside_a_handler() {
    let node = node();
    let watched = idle_port(&node);
    let mut rec = Recorder::new(&node);
    let out = rec.port.clone();
    let w = watched.clone();
    let watcher = node.port_with(move |cx, _| {
        cx.mon(&w, Monitor::send(&out, msg!["seen"])).keep();
        Ok(())
    });
    node.snd(&watcher, msg!["watch"]).unwrap();
    settle(&node).await;
    node.kil(&watched, reason(&["gone"])).unwrap();
    assert_eq!(rec.next().await, msg!["seen", "gone"]);
}

#[tokio::test(flavor = "current_thread")]
async fn monitors_fire_in_registration_order() {
    let node = node();
    let p = idle_port(&node);
    let seen = Arc::new(Mutex::new(Vec::new()));
    for i in 0..5 {
        let seen = seen.clone();
        node.mon_cb(&p, move |_| seen.lock().push(i)).keep();
    }
    node.kil(&p, Vec::new()).unwrap();
    settle(&node).await;
    assert_eq!(*seen.lock(), vec![0, 1, 2, 3, 4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_monitor_callback_does_not_hurt_the_node() {
    let node = node();
    let p = idle_port(&node);
    node.mon_cb(&p, |_| panic!("monitor callback panics"))
        .keep();
    let after = node.monitor(&p);
    node.kil(&p, reason(&["x"])).unwrap();
    assert_eq!(within(after).await, reason(&["x"]));
    let mut rec = Recorder::new(&node);
    node.snd(&rec.port, msg!["alive"]).unwrap();
    assert_eq!(rec.next().await, msg!["alive"]);
}

// ---- Monitor::kill ---------------------------------------------------------------------------

#[tokio::test(flavor = "current_thread")]
async fn monitor_kill_propagates_abnormal_reason() {
    let node = node();
    let watched = idle_port(&node);
    let follower = idle_port(&node);
    node.mon(&watched, Monitor::kill(&follower)).keep();
    let follower_died = node.monitor(&follower);
    node.kil(&watched, vec!["crash".into(), 7.into()]).unwrap();
    assert_eq!(
        within(follower_died).await,
        vec![Value::from("crash"), Value::from(7)]
    );
}

#[tokio::test(flavor = "current_thread")]
async fn monitor_kill_ignores_normal_kill() {
    let node = node();
    let watched = idle_port(&node);
    let mut follower = Recorder::new(&node);
    node.mon(&watched, Monitor::kill(&follower.port)).keep();
    let watched_died = node.monitor(&watched);
    node.kil(&watched, Vec::new()).unwrap();
    assert_eq!(within(watched_died).await, Vec::<Value>::new());
    settle(&node).await;
    assert!(
        within(node.port_exists(&follower.port)).await,
        "normal kill must not propagate"
    );
    node.snd(&follower.port, msg!["still", "here"]).unwrap();
    assert_eq!(follower.next().await, msg!["still", "here"]);
}

#[tokio::test(flavor = "current_thread")]
async fn monitor_kill_chain_propagates() {
    let node = node();
    let a = idle_port(&node);
    let b = idle_port(&node);
    let c = idle_port(&node);
    node.mon(&a, Monitor::kill(&b)).keep();
    node.mon(&b, Monitor::kill(&c)).keep();
    let c_died = node.monitor(&c);
    node.kil(&a, reason(&["cascade"])).unwrap();
    assert_eq!(within(c_died).await, reason(&["cascade"]));
}

// ---- Monitor::send ---------------------------------------------------------------------------

#[tokio::test(flavor = "current_thread")]
async fn monitor_send_appends_the_reason() {
    let node = node();
    let mut rec = Recorder::new(&node);
    let a = idle_port(&node);
    let b = idle_port(&node);
    node.mon(&a, Monitor::send(&rec.port, msg!["died", "a"]))
        .keep();
    node.mon(&b, Monitor::send(&rec.port, msg!["died", "b"]))
        .keep();
    node.kil(&a, vec!["why".into(), 1.into()]).unwrap();
    assert_eq!(rec.next().await, msg!["died", "a", "why", 1]);
    node.kil(&b, Vec::new()).unwrap();
    assert_eq!(rec.next().await, msg!["died", "b"]);
}

// ---- node IDs --------------------------------------------------------------------------------

#[tokio::test(flavor = "current_thread")]
async fn monitoring_own_node_never_fires() {
    let node = node();
    let calls = Counter::default();
    let c = calls.clone();
    let g = node.mon_cb(&node.node_port(), move |_| c.hit());
    let c = calls.clone();
    node.mon_cb(&node.node_port(), move |_| c.hit()).keep();
    for _ in 0..5 {
        let p = idle_port(&node);
        node.kil(&p, reason(&["x"])).unwrap();
    }
    node.snd(&node.node_port(), msg!["devnull"]).unwrap();
    settle(&node).await;
    drop(g);
    settle(&node).await;
    assert_eq!(calls.get(), 0);
}

// ---- exactly once, guards --------------------------------------------------------------------

#[tokio::test(flavor = "current_thread")]
async fn monitors_fire_exactly_once() {
    let node = node();
    let p = idle_port(&node);
    let calls = Counter::default();
    let c = calls.clone();
    node.mon_cb(&p, move |_| c.hit()).keep();
    let mut rec = Recorder::new(&node);
    node.mon(&p, Monitor::send(&rec.port, msg!["dead"])).keep();
    node.kil(&p, reason(&["first"])).unwrap();
    node.kil(&p, reason(&["second"])).unwrap();
    node.kil(&p, Vec::new()).unwrap();
    settle(&node).await;
    assert_eq!(calls.get(), 1);
    assert_eq!(rec.next().await, msg!["dead", "first"]);
    settle(&node).await;
    assert_eq!(rec.try_next(), None);
}

#[tokio::test(flavor = "current_thread")]
async fn handler_failure_and_later_kill_fire_once() {
    let node = node();
    let p = node.port_with(|cx, _| {
        cx.kil_self(vec!["self".into()]);
        Err("and then failed".into())
    });
    let calls = Counter::default();
    let c = calls.clone();
    let got = Arc::new(Mutex::new(None));
    let g2 = got.clone();
    node.mon_cb(&p, move |r| {
        c.hit();
        *g2.lock() = Some(r);
    })
    .keep();
    node.snd(&p, msg!["x"]).unwrap();
    settle(&node).await;
    node.kil(&p, reason(&["again"])).unwrap();
    settle(&node).await;
    assert_eq!(calls.get(), 1);
    assert_eq!(got.lock().clone(), Some(reason(&["self"])));
}

#[tokio::test(flavor = "current_thread")]
async fn dropping_the_guard_cancels() {
    let node = node();
    let p = idle_port(&node);
    let calls = Counter::default();
    let c = calls.clone();
    let g = node.mon_cb(&p, move |_| c.hit());
    let mut rec = Recorder::new(&node);
    let g2 = node.mon(&p, Monitor::send(&rec.port, msg!["should not come"]));
    settle(&node).await;
    drop(g);
    drop(g2);
    node.kil(&p, reason(&["x"])).unwrap();
    settle(&node).await;
    assert_eq!(calls.get(), 0);
    assert_eq!(rec.try_next(), None);
}

#[tokio::test(flavor = "current_thread")]
async fn keep_keeps_the_monitor() {
    let node = node();
    let p = idle_port(&node);
    let calls = Counter::default();
    let c = calls.clone();
    node.mon_cb(&p, move |_| c.hit()).keep();
    settle(&node).await;
    node.kil(&p, Vec::new()).unwrap();
    settle(&node).await;
    assert_eq!(calls.get(), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn dropping_the_guard_releases_the_callback() {
    let node = node();
    let p = idle_port(&node);
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = DropFlag(dropped.clone());
    let g = node.mon_cb(&p, move |_| drop(flag));
    settle(&node).await;
    assert!(!dropped.load(Ordering::SeqCst));
    drop(g);
    settle(&node).await;
    assert!(
        dropped.load(Ordering::SeqCst),
        "a cancelled monitor must not be kept"
    );
    assert!(within(node.port_exists(&p)).await);
}

#[tokio::test(flavor = "current_thread")]
async fn dropping_the_monitor_future_cancels() {
    let node = node();
    let p = idle_port(&node);
    let mut rec = Recorder::new(&node);
    let fut = node.monitor(&p);
    settle(&node).await;
    drop(fut);
    node.mon(&p, Monitor::send(&rec.port, msg!["dead"])).keep();
    node.kil(&p, reason(&["x"])).unwrap();
    assert_eq!(rec.next().await, msg!["dead", "x"]);
}

/// A guard dropped before its monitor fired cancels it, also when the monitored port does
/// not exist (the `no_such_port` firing is queued, so the guard is still in time).
#[tokio::test(flavor = "current_thread")]

async fn guard_dropped_at_once_cancels_no_such_port() {
    let node = node();
    let calls = Counter::default();
    let c = calls.clone();
    drop(node.mon_cb(&node.id().port("ghost"), move |_| c.hit()));
    settle(&node).await;
    assert_eq!(calls.get(), 0);
}

// ---- no_such_port ----------------------------------------------------------------------------

#[tokio::test(flavor = "current_thread")]
async fn monitoring_a_dead_port_fires_no_such_port() {
    let node = node();
    let p = idle_port(&node);
    node.kil(&p, Vec::new()).unwrap();
    let expected = vec![
        Value::from("no_such_port"),
        Value::from("cannot monitor nonexistent port"),
        Value::from(p.as_str()),
    ];
    assert_eq!(death(&node, &p).await, expected);

    let never = node.id().port("never-existed");
    let (tx, rx) = tokio::sync::oneshot::channel();
    node.mon_cb(&never, move |r| drop(tx.send(r))).keep();
    assert_eq!(
        within(rx).await.unwrap(),
        vec![
            Value::from("no_such_port"),
            Value::from("cannot monitor nonexistent port"),
            Value::from(format!("{}#never-existed", node.id())),
        ]
    );

    let mut rec = Recorder::new(&node);
    node.mon(&p, Monitor::send(&rec.port, msg!["nsp"])).keep();
    assert_eq!(
        rec.next().await,
        msg!["nsp"]
            .0
            .into_iter()
            .chain(expected.clone())
            .collect::<Msg>()
    );
}

#[tokio::test(flavor = "current_thread")]
async fn no_such_port_is_abnormal_for_monitor_kill() {
    let node = node();
    let follower = idle_port(&node);
    let ghost = node.id().port("ghost");
    node.mon(&ghost, Monitor::kill(&follower)).keep();
    let r = death(&node, &follower).await;
    assert_eq!(r[0], Value::from("no_such_port"));
}

// ---- mon_guard -------------------------------------------------------------------------------

#[tokio::test(flavor = "current_thread")]
async fn mon_guard_keeps_value_until_port_dies() {
    let node = node();
    let p = idle_port(&node);
    let value = Arc::new(42);
    node.mon_guard(&p, value.clone());
    let dropped = Arc::new(AtomicBool::new(false));
    node.mon_guard(&p, DropFlag(dropped.clone()));
    settle(&node).await;
    assert_eq!(Arc::strong_count(&value), 2);
    assert!(!dropped.load(Ordering::SeqCst));
    node.kil(&p, Vec::new()).unwrap();
    settle(&node).await;
    assert_eq!(Arc::strong_count(&value), 1);
    assert!(dropped.load(Ordering::SeqCst));
}

#[tokio::test(flavor = "current_thread")]
async fn mon_guard_on_dead_port_drops_at_once() {
    let node = node();
    let value = Arc::new(());
    node.mon_guard(&node.id().port("ghost"), value.clone());
    settle(&node).await;
    assert_eq!(Arc::strong_count(&value), 1);
}

// ---- several nodes in one process -------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_are_independent() {
    let n1 = Node::new("multi/a/%u").unwrap();
    let n2 = Node::new("multi/b/%u").unwrap();
    assert_ne!(n1.id(), n2.id());
    let calls = Counter::default();
    let c = calls.clone();
    let p1 = n1.port_with(move |_, _| {
        c.hit();
        Ok(())
    });

    // A send from the other node (no transport) never reaches the port.
    n2.snd(&p1, msg!["via n2"]).unwrap();
    // A monitor from the other node fires with transport_error naming n1.
    let r = within(n2.monitor(&p1)).await;
    assert_eq!(r.len(), 3, "{r:?}");
    assert_eq!(r[0], Value::from("transport_error"));
    assert_eq!(r[1], Value::from(n1.id().as_str()));
    assert!(r[2].as_str().is_some_and(|t| !t.is_empty()));
    settle(&n1).await;
    settle(&n2).await;
    assert_eq!(calls.get(), 0);

    // The port is alive and local to n1 only.
    assert!(within(n1.port_exists(&p1)).await);
    assert!(!within(n2.port_exists(&p1)).await);
    n1.snd(&p1, msg!["via n1"]).unwrap();
    settle(&n1).await;
    assert_eq!(calls.get(), 1);

    // n2's own ports still work, and killing n1's port from n2 does not reach it.
    let mut rec2 = Recorder::new(&n2);
    n2.snd(&rec2.port, msg!["n2 ok"]).unwrap();
    assert_eq!(rec2.next().await, msg!["n2 ok"]);
    n2.kil(&p1, reason(&["remote kill"])).unwrap();
    settle(&n2).await;
    settle(&n1).await;
    assert!(within(n1.port_exists(&p1)).await);
}

#[tokio::test(flavor = "current_thread")]
async fn dropping_one_node_leaves_the_other_running() {
    let n1 = Node::new("multi/c/%u").unwrap();
    let n2 = Node::new("multi/d/%u").unwrap();
    let p1 = idle_port(&n1);
    let p1_died = n1.monitor(&p1);
    drop(n1);
    let mut rec = Recorder::new(&n2);
    n2.snd(&rec.port, msg!["ok"]).unwrap();
    assert_eq!(rec.next().await, msg!["ok"]);
    // The dropped node fires nothing (its monitor future sees the shutdown).
    drop(p1_died);
}

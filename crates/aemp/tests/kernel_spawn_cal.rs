//! `spawn` on the local node, `cal` in its forms, and `after` / `after_snd` timers.

mod common;

use aemp::{msg, CalError, Msg, MsgExt, Node, PortId, Value};
use common::{death, node, settle, within, Counter, Recorder};
use parking_lot::Mutex;
use std::future::IntoFuture;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Registers `name` as an init function that sets `flag` and installs a `ping` handler that
/// replies `["pong", <init args...>]` to the port given as last element.
fn register_pinger(node: &Node, name: &str, flag: Arc<AtomicBool>) {
    node.register(name, move |cx, args| {
        flag.store(true, Ordering::SeqCst);
        cx.rcv("ping", move |cx, m| {
            let reply = m.reply_port()?;
            let mut answer = msg!["pong"];
            answer.0.extend(args.iter().cloned());
            cx.snd(&reply, answer);
            Ok(())
        });
        Ok(())
    });
}

// ---- spawn ---------------------------------------------------------------------------------

#[tokio::test(flavor = "current_thread")]
async fn spawn_never_runs_init_before_returning_and_then_answers() {
    let node = node();
    let flag = Arc::new(AtomicBool::new(false));
    register_pinger(&node, "pinger", flag.clone());
    let p = node
        .spawn(node.id(), "pinger", vec![1.into(), "two".into()])
        .unwrap();
    assert!(
        !flag.load(Ordering::SeqCst),
        "init ran before spawn returned"
    );
    assert_eq!(p.node(), node.id().as_str());
    assert!(!p.is_node_port());
    let reply = within(node.cal(&p, msg!["ping"])).await.unwrap();
    assert!(flag.load(Ordering::SeqCst));
    assert_eq!(reply, msg!["pong", 1, "two"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_from_inside_a_handler_never_runs_init_before_returning() {
    let node = node();
    let flag = Arc::new(AtomicBool::new(false));
    register_pinger(&node, "pinger", flag.clone());
    let (tx, rx) = tokio::sync::oneshot::channel();
    let mut tx = Some(tx);
    let f2 = flag.clone();
    let starter = node.port_with(move |cx, _| {
        let p = cx.node().spawn(cx.node_id(), "pinger", vec![])?;
        let ran_early = f2.load(Ordering::SeqCst);
        if let Some(tx) = tx.take() {
            let _ = tx.send((p, ran_early));
        }
        Ok(())
    });
    node.snd(&starter, msg!["go"]).unwrap();
    let (p, ran_early) = within(rx).await.unwrap();
    assert!(
        !ran_early,
        "init ran before spawn returned (inside a handler)"
    );
    assert_eq!(
        within(node.cal(&p, msg!["ping"])).await.unwrap(),
        msg!["pong"]
    );
    assert!(flag.load(Ordering::SeqCst));
}

#[tokio::test(flavor = "current_thread")]
async fn spawn_init_runs_in_the_new_port_context() {
    let node = node();
    let seen = Arc::new(Mutex::new(None));
    let s2 = seen.clone();
    node.register("ctx", move |cx, args| {
        *s2.lock() = Some((cx.self_port(), cx.src_node().clone(), args));
        cx.rcv_default(|_, _| Ok(()));
        Ok(())
    });
    let p = node
        .spawn(node.id(), "ctx", vec![Value::Null, 3.5.into()])
        .unwrap();
    settle(&node).await;
    let (me, src, args) = seen.lock().clone().expect("init ran");
    assert_eq!(me, p);
    assert_eq!(&src, node.id());
    assert_eq!(args, vec![Value::Null, Value::from(3.5)]);
    assert!(within(node.port_exists(&p)).await);
}

#[tokio::test(flavor = "current_thread")]
async fn spawned_port_ids_are_fresh() {
    let node = node();
    node.register("idle", |cx, _| {
        cx.rcv_default(|_, _| Ok(()));
        Ok(())
    });
    let mut ids = std::collections::HashSet::new();
    for _ in 0..100 {
        let local = node.port_with(|_, _| Ok(()));
        let spawned = node.spawn(node.id(), "idle", vec![]).unwrap();
        assert!(ids.insert(local));
        assert!(ids.insert(spawned));
    }
}

#[tokio::test(flavor = "current_thread")]
async fn spawn_unknown_init_kills_the_port_and_a_monitor_fires() {
    let node = node();
    let p = node.spawn(node.id(), "no-such-init", vec![]).unwrap();
    let r = death(&node, &p).await;
    let tag = r[0].as_str().unwrap_or_default();
    assert!(tag == "no_such_port" || tag == "die", "{r:?}");
    assert!(!within(node.port_exists(&p)).await);
    // The node is fine afterwards.
    let mut rec = Recorder::new(&node);
    node.snd(&rec.port, msg!["ok"]).unwrap();
    assert_eq!(rec.next().await, msg!["ok"]);
}

#[tokio::test(flavor = "current_thread")]
async fn spawn_init_error_kills_the_port() {
    let node = node();
    let mut rec = Recorder::new(&node);
    let out = rec.port.clone();
    node.register("bad", move |cx, _| {
        // Install a handler and watch ourselves, then fail: the port must die with the
        // error.
        cx.rcv_default(|_, _| Ok(()));
        let me = cx.self_port();
        cx.mon(&me, aemp::Monitor::send(&out, msg!["init died"]))
            .keep();
        Err("init refused".into())
    });
    let p = node.spawn(node.id(), "bad", vec![]).unwrap();
    assert_eq!(rec.next().await, msg!["init died", "die", "init refused"]);
    assert!(!within(node.port_exists(&p)).await);
}

#[tokio::test(flavor = "current_thread")]
async fn spawn_init_panic_kills_the_port() {
    let node = node();
    let mut rec = Recorder::new(&node);
    let out = rec.port.clone();
    node.register("panicky", move |cx, _| {
        cx.rcv_default(|_, _| Ok(()));
        let me = cx.self_port();
        cx.mon(&me, aemp::Monitor::send(&out, msg!["init died"]))
            .keep();
        panic!("init exploded");
    });
    let p = node.spawn(node.id(), "panicky", vec![]).unwrap();
    let m = rec.next().await;
    assert_eq!(m[0], Value::from("init died"));
    assert_eq!(m[1], Value::from("die"));
    assert!(m[2].as_str().unwrap().contains("init exploded"), "{m}");
    assert!(!within(node.port_exists(&p)).await);
}

// ---- cal -----------------------------------------------------------------------------------

/// A port that records each request and replies `["re", <request without reply port>]`.
fn echo(node: &Node, requests: Arc<Mutex<Vec<Msg>>>) -> PortId {
    node.port_with(move |cx, m| {
        requests.lock().push(m.clone());
        let reply = m.reply_port()?;
        let mut answer = msg!["re"];
        answer.0.extend(m.0[..m.len() - 1].iter().cloned());
        cx.snd(&reply, answer);
        Ok(())
    })
}

/// A port that swallows requests, reporting each request's reply port.
fn swallow(node: &Node, replies: Arc<Mutex<Vec<PortId>>>) -> PortId {
    node.port_with(move |_, m| {
        let reply = m.reply_port()?;
        replies.lock().push(reply);
        Ok(())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cal_future_gets_reply_and_reply_port_is_last() {
    let node = node();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let target = echo(&node, requests.clone());
    settle(&node).await;
    let before = within(node.port_count()).await;
    let r = within(node.cal(&target, msg!["q", 1, "x"])).await;
    assert_eq!(r, Ok(msg!["re", "q", 1, "x"]));
    let req = requests.lock()[0].clone();
    assert_eq!(req.len(), 4);
    assert_eq!(req.0[..3], msg!["q", 1, "x"].0[..]);
    let reply: PortId = req[3].as_str().unwrap().parse().unwrap();
    assert_eq!(reply.node(), node.id().as_str());
    assert!(!reply.is_node_port());
    // The reply port is gone after the reply.
    settle(&node).await;
    assert!(!within(node.port_exists(&reply)).await);
    assert_eq!(within(node.port_count()).await, before);
}

#[tokio::test(flavor = "current_thread")]
async fn cal_callback_form() {
    let node = node();
    let target = echo(&node, Arc::default());
    let (tx, rx) = tokio::sync::oneshot::channel();
    node.cal(&target, msg!["hello"])
        .then(move |r| drop(tx.send(r)));
    assert_eq!(within(rx).await.unwrap(), Ok(msg!["re", "hello"]));
}

#[tokio::test(flavor = "current_thread")]
async fn cal_only_first_reply_counts() {
    let node = node();
    let target = node.port_with(|cx, m| {
        let reply = m.reply_port()?;
        cx.snd(&reply, msg!["first"]);
        cx.snd(&reply, msg!["second"]);
        Ok(())
    });
    settle(&node).await;
    let before = within(node.port_count()).await;
    let calls = Counter::default();
    let (c, (tx, rx)) = (calls.clone(), tokio::sync::oneshot::channel());
    node.cal(&target, msg!["q"]).then(move |r| {
        c.hit();
        let _ = tx.send(r);
    });
    assert_eq!(within(rx).await.unwrap(), Ok(msg!["first"]));
    settle(&node).await;
    assert_eq!(calls.get(), 1);
    assert_eq!(within(node.port_count()).await, before);
    // The target is not harmed by its second reply going nowhere.
    assert!(within(node.port_exists(&target)).await);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn cal_timeout_expires_and_kills_reply_port() {
    let node = node();
    let replies = Arc::new(Mutex::new(Vec::new()));
    let target = swallow(&node, replies.clone());
    settle(&node).await;
    let before = within(node.port_count()).await;
    let t0 = Instant::now();
    let r = within(node.cal(&target, msg!["q"]).timeout(Duration::from_secs(3))).await;
    assert_eq!(r, Err(CalError::Timeout));
    assert!(t0.elapsed() >= Duration::from_secs(3));
    assert_eq!(within(node.port_count()).await, before);
    let reply = replies.lock()[0].clone();
    assert!(!within(node.port_exists(&reply)).await);
    // A late reply goes nowhere and harms nothing.
    node.snd(&reply, msg!["late"]).unwrap();
    assert!(within(node.port_exists(&target)).await);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn cal_timeout_callback_form() {
    let node = node();
    let target = swallow(&node, Arc::default());
    let (tx, rx) = tokio::sync::oneshot::channel();
    node.cal(&target, msg!["q"])
        .timeout(Duration::from_millis(500))
        .then(move |r| drop(tx.send(r)));
    assert_eq!(within(rx).await.unwrap(), Err(CalError::Timeout));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn cal_with_timeout_reply_in_time() {
    let node = node();
    let target = echo(&node, Arc::default());
    settle(&node).await;
    let before = within(node.port_count()).await;
    let r = within(node.cal(&target, msg!["q"]).timeout(Duration::from_secs(5))).await;
    assert_eq!(r, Ok(msg!["re", "q"]));
    // The timer must not fire later and do anything.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(within(node.port_count()).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cal_without_timeout_target_dies() {
    let node = node();
    let replies = Arc::new(Mutex::new(Vec::new()));
    let r2 = replies.clone();
    let target = node.port_with(move |cx, m| {
        let reply = m.reply_port()?;
        r2.lock().push(reply);
        cx.kil_self(vec!["custom".into(), 1.into()]);
        Ok(())
    });
    let r = within(node.cal(&target, msg!["q"])).await;
    assert_eq!(
        r,
        Err(CalError::TargetDied(vec!["custom".into(), 1.into()].into()))
    );
    settle(&node).await;
    let reply = replies.lock()[0].clone();
    assert!(
        !within(node.port_exists(&reply)).await,
        "reply port must be killed"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn cal_target_handler_failure_is_target_died() {
    let node = node();
    let target = node.port_with(|_, _| Err("cannot answer".into()));
    let r = within(node.cal(&target, msg!["q"])).await;
    assert_eq!(
        r,
        Err(CalError::TargetDied(
            vec!["die".into(), "cannot answer".into()].into()
        ))
    );
}

#[tokio::test(flavor = "current_thread")]
async fn cal_nonexistent_target_is_target_died() {
    let node = node();
    let ghost = node.id().port("ghost");
    settle(&node).await;
    let before = within(node.port_count()).await;
    let r = within(node.cal(&ghost, msg!["q"])).await;
    assert_eq!(
        r,
        Err(CalError::TargetDied(
            vec![
                "no_such_port".into(),
                "cannot monitor nonexistent port".into(),
                ghost.as_str().into(),
            ]
            .into()
        ))
    );
    settle(&node).await;
    assert_eq!(within(node.port_count()).await, before);
}

/// A panic in a `cal` callback must not take the node down (like a handler panic).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn cal_timeout_callback_panic_keeps_node_running() {
    let node = node();
    let target = swallow(&node, Arc::default());
    let fired = Arc::new(AtomicBool::new(false));
    let f2 = fired.clone();
    node.cal(&target, msg!["q"])
        .timeout(Duration::from_millis(20))
        .then(move |_| {
            f2.store(true, Ordering::SeqCst);
            panic!("cal callback panics");
        });
    common::eventually("cal callback ran", || fired.load(Ordering::SeqCst)).await;
    let echo_port = echo(&node, Arc::default());
    assert_eq!(
        within(node.cal(&echo_port, msg!["still"])).await,
        Ok(msg!["re", "still"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cal_reply_callback_panic_keeps_node_running() {
    let node = node();
    let target = echo(&node, Arc::default());
    node.cal(&target, msg!["q"])
        .then(|_| panic!("cal reply callback panics"));
    let other = echo(&node, Arc::default());
    settle(&node).await;
    assert_eq!(
        within(node.cal(&other, msg!["still"])).await,
        Ok(msg!["re", "still"])
    );
}

// ---- after ---------------------------------------------------------------------------------

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn after_snd_delivers_after_the_delay() {
    let node = node();
    let mut rec = Recorder::new(&node);
    let t0 = Instant::now();
    node.after_snd(Duration::from_secs(5), &rec.port, msg!["tick"])
        .keep();
    assert_eq!(rec.next().await, msg!["tick"]);
    assert!(t0.elapsed() >= Duration::from_secs(5));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn after_snd_with_guard_held_delivers() {
    let node = node();
    let mut rec = Recorder::new(&node);
    let t0 = Instant::now();
    let _g = node.after_snd(Duration::from_secs(2), &rec.port, msg!["a"]);
    let _h = node.after_snd(Duration::from_secs(1), &rec.port, msg!["b"]);
    assert_eq!(rec.next().await, msg!["b"]);
    assert!(t0.elapsed() >= Duration::from_secs(1));
    assert_eq!(rec.next().await, msg!["a"]);
    assert!(t0.elapsed() >= Duration::from_secs(2));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn after_runs_callback_after_the_delay() {
    let node = node();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let t0 = Instant::now();
    node.after(Duration::from_secs(4), move || {
        let _ = tx.send(());
    })
    .keep();
    within(rx).await.unwrap();
    assert!(t0.elapsed() >= Duration::from_secs(4));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn timer_guard_drop_and_cancel_cancel() {
    let node = node();
    let mut rec = Recorder::new(&node);
    let calls = Counter::default();
    let c = calls.clone();
    drop(node.after_snd(Duration::from_secs(1), &rec.port, msg!["dropped"]));
    node.after_snd(Duration::from_secs(1), &rec.port, msg!["cancelled"])
        .cancel();
    drop(node.after(Duration::from_secs(1), move || c.hit()));
    let g = node.after_snd(Duration::from_secs(1), &rec.port, msg!["late drop"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(g);
    node.after_snd(Duration::from_secs(3), &rec.port, msg!["kept"])
        .keep();
    // The kept one arrives, nothing else ever does.
    assert_eq!(rec.next().await, msg!["kept"]);
    tokio::time::sleep(Duration::from_secs(5)).await;
    settle(&node).await;
    assert_eq!(rec.try_next(), None);
    assert_eq!(calls.get(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_snd_real_time() {
    let node = node();
    let mut rec = Recorder::new(&node);
    let t0 = std::time::Instant::now();
    node.after_snd(Duration::from_millis(50), &rec.port, msg!["tick"])
        .keep();
    assert_eq!(rec.next().await, msg!["tick"]);
    assert!(t0.elapsed() >= Duration::from_millis(50));
}

// ---- cal with a timeout still watches its target ------------------------------------------

#[tokio::test(flavor = "current_thread")]
async fn cal_with_timeout_target_dies_fails_at_once() {
    let node = node();
    let target = node.port_with(|cx, _| {
        cx.kil_self(vec!["custom".into(), 2.into()]);
        Ok(())
    });
    // An hour of timeout: only the monitor can end this within the test's limit.
    let r = within(
        node.cal(&target, msg!["q"])
            .timeout(Duration::from_secs(3600)),
    )
    .await;
    assert_eq!(
        r,
        Err(CalError::TargetDied(vec!["custom".into(), 2.into()].into()))
    );
    let failing = node.port_with(|_, _| Err("cannot answer".into()));
    let r = within(
        node.cal(&failing, msg!["q"])
            .timeout(Duration::from_secs(3600)),
    )
    .await;
    assert_eq!(
        r.unwrap_err().to_string(),
        r#"no reply: target port died: ["die","cannot answer"]"#
    );
}

#[tokio::test(flavor = "current_thread")]
async fn cal_with_timeout_to_a_dead_port_fails_at_once() {
    let node = node();
    let ghost = node.id().port("ghost");
    let r = within(
        node.cal(&ghost, msg!["q"])
            .timeout(Duration::from_secs(3600)),
    )
    .await;
    assert!(
        matches!(&r, Err(CalError::TargetDied(reason)) if reason[0].as_str() == Some("no_such_port")),
        "{r:?}"
    );
    settle(&node).await;
    assert_eq!(within(node.monitor_count()).await, 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn cal_with_timeout_still_times_out_once() {
    let node = node();
    let replies = Arc::new(Mutex::new(Vec::new()));
    let target = swallow(&node, replies.clone());
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let o = outcomes.clone();
    node.cal(&target, msg!["q"])
        .timeout(Duration::from_millis(50))
        .then(move |r| o.lock().push(r));
    tokio::time::sleep(Duration::from_millis(100)).await;
    settle(&node).await;
    // The target dies after the timeout: no second outcome.
    node.kil(&target, vec!["late".into()]).unwrap();
    settle(&node).await;
    assert_eq!(*outcomes.lock(), vec![Err(CalError::Timeout)]);
    assert_eq!(within(node.monitor_count()).await, 0);
}

#[tokio::test(flavor = "current_thread")]
async fn cals_with_timeout_leave_no_monitor_behind() {
    let node = node();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let target = echo(&node, requests);
    let replies = Arc::new(Mutex::new(Vec::new()));
    let silent = swallow(&node, replies);
    settle(&node).await;
    let (ports, mons) = (
        within(node.port_count()).await,
        within(node.monitor_count()).await,
    );
    for i in 0..200 {
        // Answered: the reply cancels the monitor.
        let r = within(
            node.cal(&target, msg!["q", i])
                .timeout(Duration::from_secs(3600)),
        )
        .await;
        assert!(r.is_ok(), "{r:?}");
        // Not answered: the timeout cancels it.
        let r = within(
            node.cal(&silent, msg!["q", i])
                .timeout(Duration::from_millis(1)),
        )
        .await;
        assert_eq!(r, Err(CalError::Timeout));
    }
    settle(&node).await;
    assert_eq!(within(node.monitor_count()).await, mons);
    assert_eq!(within(node.port_count()).await, ports);
}

// ---- reply ---------------------------------------------------------------------------------

#[tokio::test(flavor = "current_thread")]
async fn reply_goes_to_the_port_cal_appended() {
    let node = node();
    let adder = node
        .port()
        .on("add", |cx, m| {
            let (a, b) = (m[0].as_i64().unwrap_or(0), m[1].as_i64().unwrap_or(0));
            cx.reply(&m, msg!["sum", a + b])?;
            Ok(())
        })
        .build();
    assert_eq!(
        within(node.cal(&adder, msg!["add", 2, 3])).await,
        Ok(msg!["sum", 5])
    );
    // From outside a handler: a request taken from an inbox.
    let mut inbox = node.inbox(4);
    let call = tokio::spawn(node.cal(inbox.port(), msg!["time"]).into_future());
    let req = within(inbox.recv()).await.unwrap();
    node.reply(&req, msg!["now", 1.5]).unwrap();
    assert_eq!(within(call).await.unwrap(), Ok(msg!["now", 1.5]));
    // A request without a usable reply port is an error naming the position.
    let err = node.reply(&msg!["time", 7], msg!["x"]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "element 1: expected a port ID, found integer `7`"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn reply_without_reply_port_kills_the_handler_port_with_a_clear_reason() {
    let node = node();
    let adder = node
        .port()
        .on("add", |cx, m| {
            cx.reply(&m, msg!["sum"])?;
            Ok(())
        })
        .build();
    let died = node.monitor(&adder);
    node.snd(&adder, msg!["add", 1, 2]).unwrap();
    let reason = within(died).await;
    assert_eq!(
        reason,
        vec![
            Value::from("die"),
            Value::from("element 1: expected a port ID, found integer `2`")
        ]
    );
}

//! Ports: ordering, handlers (`port`, `rcv`), `snd`, `kil`, handler failures, the
//! `unhandled_message` reason, the handler context and typed messages.

mod common;

use aemp::{msg, Cx, Error, Msg, MsgExt, Node, PortId, Value};
use common::{node, settle, within, Counter, DropFlag, Recorder};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

fn int(v: &Value) -> i64 {
    v.as_i64().expect("integer element")
}

// ---- ordering ------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_many_messages_from_outside() {
    const N: i64 = 20_000;
    let node = node();
    let mut rec = Recorder::new(&node);
    for i in 0..N {
        node.snd(&rec.port, msg!["n", i]).unwrap();
    }
    for i in 0..N {
        assert_eq!(rec.next().await, msg!["n", i]);
    }
}

#[tokio::test(flavor = "current_thread")]
async fn order_snd_many_keeps_order_and_follows_earlier_snd() {
    let node = node();
    let mut rec = Recorder::new(&node);
    node.snd(&rec.port, msg!["n", 0]).unwrap();
    node.snd_many(&rec.port, (1..100).map(|i| msg!["n", i]))
        .unwrap();
    node.snd(&rec.port, msg!["n", 100]).unwrap();
    for i in 0..=100 {
        assert_eq!(rec.next().await, msg!["n", i]);
    }
}

/// A handler sends more messages than the dispatcher runs per turn (it yields in between)
/// while the outside sends its own stream to the same port: each stream stays in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_from_handler_via_cx_snd_interleaved_with_outside() {
    const N: i64 = 20_000;
    let node = node();
    let mut rec = Recorder::new(&node);
    let target = rec.port.clone();
    let sender = node.port().on("go", move |cx, _| {
        for i in 0..N {
            cx.snd(&target, msg!["h", i]);
        }
        Ok(())
    });
    let sender = sender.build();
    node.snd(&sender, msg!["go"]).unwrap();
    for i in 0..N {
        node.snd(&rec.port, msg!["o", i]).unwrap();
    }
    let (mut h, mut o) = (0, 0);
    while h < N || o < N {
        let m = rec.next().await;
        match m.tag() {
            Some("h") => {
                assert_eq!(int(&m[1]), h, "handler stream out of order");
                h += 1;
            }
            Some("o") => {
                assert_eq!(int(&m[1]), o, "outside stream out of order");
                o += 1;
            }
            other => panic!("unexpected tag {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_per_task_streams_from_several_tasks() {
    const TASKS: i64 = 4;
    const N: i64 = 5_000;
    let node = node();
    let mut rec = Recorder::new(&node);
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let node = node.clone();
        let port = rec.port.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..N {
                node.snd(&port, msg!["n", t, i]).unwrap();
                if i % 512 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    let mut next = vec![0i64; TASKS as usize];
    for _ in 0..TASKS * N {
        let m = rec.next().await;
        let (t, i) = (int(&m[1]) as usize, int(&m[2]));
        assert_eq!(i, next[t], "stream of task {t} out of order");
        next[t] += 1;
    }
    for t in tasks {
        within(t).await.unwrap();
    }
}

/// A handler that uses both its context and a node handle sends from one node to one port:
/// the messages must arrive in the order they were sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn order_node_handle_and_cx_snd_from_one_handler() {
    let node = node();
    let mut rec = Recorder::new(&node);
    let target = rec.port.clone();
    let sender = node.port_with(move |cx, _| {
        cx.node().snd(&target, msg!["n", 0]).unwrap();
        cx.snd(&target, msg!["n", 1]);
        Ok(())
    });
    node.snd(&sender, msg!["go"]).unwrap();
    assert_eq!(rec.next().await, msg!["n", 0]);
    assert_eq!(rec.next().await, msg!["n", 1]);
}

/// Same class: `rcv` through the node handle from inside a handler, then `cx.snd` of a
/// message for the new handler. The handler must be installed before the message arrives.
#[tokio::test(flavor = "current_thread")]

async fn order_node_rcv_then_cx_snd_from_one_handler() {
    let node = node();
    let mut rec = Recorder::new(&node);
    let out = rec.port.clone();
    let target = node.port().on("x", |_, _| Ok(())).build();
    let t2 = target.clone();
    let setup = node.port_with(move |cx, _| {
        let out = out.clone();
        cx.node()
            .rcv(&t2, "y", move |cx, m| {
                cx.snd(&out, m);
                Ok(())
            })
            .unwrap();
        cx.snd(&t2, msg!["y", "hello"]);
        Ok(())
    });
    let died = node.monitor(&target);
    node.snd(&setup, msg!["go"]).unwrap();
    tokio::select! {
        m = rec.next() => assert_eq!(m, msg!["hello"]),
        r = died => panic!("target died instead of handling the message: {r:?}"),
    }
}

// ---- port and rcv --------------------------------------------------------------------------

#[tokio::test(flavor = "current_thread")]
async fn port_default_handler_gets_full_message() {
    let node = node();
    let mut rec = Recorder::new(&node);
    node.snd(&rec.port, msg!["tag", 1, "x"]).unwrap();
    assert_eq!(rec.next().await, msg!["tag", 1, "x"]);
}

/// Builds a port whose handlers forward `[label, ...message as seen]` to `out`.
fn labelled(
    label: &'static str,
    out: &PortId,
) -> impl FnMut(&mut Cx<'_>, Msg) -> aemp::HandlerResult {
    let out = out.clone();
    move |cx, m| {
        let mut fwd = msg![label];
        fwd.0.extend(m);
        cx.snd(&out, fwd);
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn rcv_tag_handler_sees_message_without_tag_default_sees_all() {
    let node = node();
    let mut rec = Recorder::new(&node);
    let p = node
        .port()
        .on("a", labelled("A", &rec.port))
        .on("b", labelled("B", &rec.port))
        .default(labelled("D", &rec.port))
        .build();
    node.snd(&p, msg!["a", 1, 2]).unwrap();
    node.snd(&p, msg!["b"]).unwrap();
    node.snd(&p, msg!["c", 3]).unwrap();
    node.snd(&p, msg![7, 8]).unwrap();
    assert_eq!(rec.next().await, msg!["A", 1, 2]);
    assert_eq!(rec.next().await, msg!["B"]);
    assert_eq!(rec.next().await, msg!["D", "c", 3]);
    assert_eq!(rec.next().await, msg!["D", 7, 8]);
}

#[tokio::test(flavor = "current_thread")]
async fn rcv_on_node_replaces_and_removes_handlers() {
    let node = node();
    let mut rec = Recorder::new(&node);
    let p = node.port().default(labelled("D", &rec.port)).build();
    node.rcv(&p, "a", labelled("A1", &rec.port)).unwrap();
    node.snd(&p, msg!["a", 1]).unwrap();
    assert_eq!(rec.next().await, msg!["A1", 1]);

    // Replacing the tag handler.
    node.rcv(&p, "a", labelled("A2", &rec.port)).unwrap();
    node.snd(&p, msg!["a", 2]).unwrap();
    assert_eq!(rec.next().await, msg!["A2", 2]);

    // Replacing the default handler.
    node.rcv_default(&p, labelled("D2", &rec.port)).unwrap();
    node.snd(&p, msg!["z", 3]).unwrap();
    assert_eq!(rec.next().await, msg!["D2", "z", 3]);

    // Removing the tag handler: the message falls to the default handler, tag included.
    node.unrcv(&p, Some("a")).unwrap();
    node.snd(&p, msg!["a", 4]).unwrap();
    assert_eq!(rec.next().await, msg!["D2", "a", 4]);
}

#[tokio::test(flavor = "current_thread")]
async fn removed_tag_handler_without_default_kills_with_unhandled_message() {
    let node = node();
    let p = node.port().on("a", |_, _| Ok(())).build();
    node.unrcv(&p, Some("a")).unwrap();
    let died = node.monitor(&p);
    node.snd(&p, msg!["a"]).unwrap();
    assert_eq!(
        within(died).await,
        vec![
            Value::from("unhandled_message"),
            Value::from("no callback found for message 'a'")
        ]
    );
}

#[tokio::test(flavor = "current_thread")]
async fn removed_default_handler_kills_with_unhandled_message() {
    let node = node();
    let p = node.port_with(|_, _| Ok(()));
    node.unrcv(&p, None).unwrap();
    let died = node.monitor(&p);
    node.snd(&p, msg!["x"]).unwrap();
    assert_eq!(within(died).await[0], Value::from("unhandled_message"));
}

#[tokio::test(flavor = "current_thread")]
async fn rcv_on_remote_or_node_port_is_not_local_error() {
    let node = node();
    let remote: PortId = "some-other-node#p1".parse().unwrap();
    let h = |_: &mut Cx<'_>, _: Msg| Ok(());
    assert!(matches!(node.rcv(&remote, "a", h), Err(Error::NotLocal(_))));
    assert!(matches!(
        node.rcv_default(&remote, h),
        Err(Error::NotLocal(_))
    ));
    assert!(matches!(
        node.unrcv(&remote, Some("a")),
        Err(Error::NotLocal(_))
    ));
    assert!(matches!(
        node.rcv(&node.node_port(), "a", h),
        Err(Error::NotLocal(_))
    ));
    // The same rule inside a handler.
    let (tx, rx) = tokio::sync::oneshot::channel();
    let mut tx = Some(tx);
    let p = node.port_with(move |cx, _| {
        let r = cx.rcv_port(
            &remote,
            Some("a"),
            Some(Box::new(|_: &mut Cx<'_>, _: Msg| Ok(()))),
        );
        if let Some(tx) = tx.take() {
            let _ = tx.send(matches!(r, Err(Error::NotLocal(_))));
        }
        Ok(())
    });
    node.snd(&p, msg!["go"]).unwrap();
    assert!(
        within(rx).await.unwrap(),
        "cx.rcv_port on a remote port must be NotLocal"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn tag_handler_replacing_itself_while_running() {
    let node = node();
    let mut rec = Recorder::new(&node);
    let out = rec.port.clone();
    let p = node
        .port()
        .on("a", move |cx, m| {
            let mut fwd = msg!["old"];
            fwd.0.extend(m);
            cx.snd(&out, fwd);
            cx.rcv("a", labelled("new", &out));
            Ok(())
        })
        .build();
    for i in 0..3 {
        node.snd(&p, msg!["a", i]).unwrap();
    }
    assert_eq!(rec.next().await, msg!["old", 0]);
    assert_eq!(rec.next().await, msg!["new", 1]);
    assert_eq!(rec.next().await, msg!["new", 2]);
}

#[tokio::test(flavor = "current_thread")]
async fn default_handler_replacing_itself_while_running() {
    let node = node();
    let mut rec = Recorder::new(&node);
    let out = rec.port.clone();
    let p = node.port_with(move |cx, m| {
        let mut fwd = msg!["old"];
        fwd.0.extend(m);
        cx.snd(&out, fwd);
        cx.rcv_default(labelled("new", &out));
        Ok(())
    });
    node.snd(&p, msg!["x", 0]).unwrap();
    node.snd(&p, msg!["x", 1]).unwrap();
    assert_eq!(rec.next().await, msg!["old", "x", 0]);
    assert_eq!(rec.next().await, msg!["new", "x", 1]);
}

#[tokio::test(flavor = "current_thread")]
async fn tag_handler_removing_itself_while_running_falls_to_default() {
    let node = node();
    let mut rec = Recorder::new(&node);
    let out = rec.port.clone();
    let p = node
        .port()
        .on("a", move |cx, _| {
            cx.snd(&out, msg!["once"]);
            cx.unrcv("a");
            Ok(())
        })
        .default(labelled("D", &rec.port))
        .build();
    node.snd(&p, msg!["a", 1]).unwrap();
    node.snd(&p, msg!["a", 2]).unwrap();
    assert_eq!(rec.next().await, msg!["once"]);
    assert_eq!(rec.next().await, msg!["D", "a", 2]);
}

/// A tag handler that installs a handler for another tag must itself stay installed.
#[tokio::test(flavor = "current_thread")]

async fn tag_handler_adding_another_tag_keeps_itself() {
    let node = node();
    let mut rec = Recorder::new(&node);
    let out = rec.port.clone();
    let p = node
        .port()
        .on("a", move |cx, m| {
            let mut fwd = msg!["A"];
            fwd.0.extend(m);
            cx.snd(&out, fwd);
            cx.rcv("b", labelled("B", &out));
            Ok(())
        })
        .build();
    let died = node.monitor(&p);
    node.snd(&p, msg!["a", 1]).unwrap();
    node.snd(&p, msg!["b", 2]).unwrap();
    node.snd(&p, msg!["a", 3]).unwrap();
    assert_eq!(rec.next().await, msg!["A", 1]);
    assert_eq!(rec.next().await, msg!["B", 2]);
    tokio::select! {
        m = rec.next() => assert_eq!(m, msg!["A", 3]),
        r = died => panic!("port died: {r:?}"),
    }
}

/// A default handler that installs a tag handler must itself stay installed.
#[tokio::test(flavor = "current_thread")]

async fn default_handler_adding_tag_handler_keeps_itself() {
    let node = node();
    let mut rec = Recorder::new(&node);
    let out = rec.port.clone();
    let p = node.port_with(move |cx, m| {
        let mut fwd = msg!["D"];
        fwd.0.extend(m);
        cx.snd(&out, fwd);
        cx.rcv("t", labelled("T", &out));
        Ok(())
    });
    let died = node.monitor(&p);
    node.snd(&p, msg!["x", 1]).unwrap();
    node.snd(&p, msg!["x", 2]).unwrap();
    assert_eq!(rec.next().await, msg!["D", "x", 1]);
    tokio::select! {
        m = rec.next() => assert_eq!(m, msg!["D", "x", 2]),
        r = died => panic!("port died: {r:?}"),
    }
}

/// A tag handler that removes an *earlier* tag handler (shifting the slot indices) must stay
/// installed, and the removed tag must fall to the default handler.
#[tokio::test(flavor = "current_thread")]

async fn tag_handler_removing_other_tag_keeps_itself() {
    let node = node();
    let mut rec = Recorder::new(&node);
    let out = rec.port.clone();
    let p = node
        .port()
        .on("a", labelled("A", &rec.port))
        .on("b", move |cx, m| {
            let mut fwd = msg!["B"];
            fwd.0.extend(m);
            cx.snd(&out, fwd);
            cx.unrcv("a");
            Ok(())
        })
        .default(labelled("D", &rec.port))
        .build();
    node.snd(&p, msg!["b", 1]).unwrap();
    node.snd(&p, msg!["a", 2]).unwrap();
    node.snd(&p, msg!["b", 3]).unwrap();
    assert_eq!(rec.next().await, msg!["B", 1]);
    assert_eq!(rec.next().await, msg!["D", "a", 2]);
    assert_eq!(rec.next().await, msg!["B", 3]);
}

/// A handler that kills its own port and re-creates it with a new handler under the same
/// name (Perl's `rcv` on a dead port does that): the new handler must be the one used.
#[tokio::test(flavor = "current_thread")]

async fn handler_killing_and_recreating_its_port_keeps_the_new_handler() {
    let node = node();
    let mut rec = Recorder::new(&node);
    let out = rec.port.clone();
    let p = node
        .port()
        .on("a", move |cx, _| {
            cx.snd(&out, msg!["old"]);
            cx.kil_self(Vec::new());
            let me = cx.self_port();
            let h: aemp::Handler = Box::new(labelled("new", &out));
            cx.rcv_port(&me, Some("a"), Some(h)).unwrap();
            Ok(())
        })
        .build();
    node.snd(&p, msg!["a"]).unwrap();
    node.snd(&p, msg!["a"]).unwrap();
    assert_eq!(rec.next().await, msg!["old"]);
    assert_eq!(rec.next().await, msg!["new"]);
}

// ---- snd -----------------------------------------------------------------------------------

#[tokio::test(flavor = "current_thread")]
async fn snd_to_nonexistent_port_is_silently_dropped() {
    let node = node();
    let ghost = node.id().port("never-created");
    node.snd(&ghost, msg!["x"]).unwrap();
    let dead = node.port_with(|_, _| Ok(()));
    node.kil(&dead, Vec::new()).unwrap();
    node.snd(&dead, msg!["x"]).unwrap();
    // The node is unaffected.
    let mut rec = Recorder::new(&node);
    node.snd(&rec.port, msg!["still", "alive"]).unwrap();
    assert_eq!(rec.next().await, msg!["still", "alive"]);
    assert!(!within(node.port_exists(&ghost)).await);
}

#[tokio::test(flavor = "current_thread")]
async fn snd_empty_message_is_an_error() {
    let node = node();
    let rec = Recorder::new(&node);
    assert!(matches!(
        node.snd(&rec.port, Msg::new()),
        Err(Error::EmptyMessage)
    ));
    let remote: PortId = "elsewhere#x".parse().unwrap();
    assert!(matches!(
        node.snd(&remote, Msg::new()),
        Err(Error::EmptyMessage)
    ));
    assert!(matches!(
        node.snd(&node.node_port(), Msg::new()),
        Err(Error::EmptyMessage)
    ));
}

// ---- kil -----------------------------------------------------------------------------------

#[tokio::test(flavor = "current_thread")]
async fn kil_with_and_without_reason() {
    let node = node();
    let a = node.port_with(|_, _| Ok(()));
    let b = node.port_with(|_, _| Ok(()));
    let (da, db) = (node.monitor(&a), node.monitor(&b));
    node.kil(&a, Vec::new()).unwrap();
    node.kil(&b, vec!["custom".into(), 42.into()]).unwrap();
    assert_eq!(within(da).await, Vec::<Value>::new());
    assert_eq!(
        within(db).await,
        vec![Value::from("custom"), Value::from(42)]
    );
    assert!(!within(node.port_exists(&a)).await);
    assert!(!within(node.port_exists(&b)).await);
}

#[tokio::test(flavor = "current_thread")]
async fn kil_nonexistent_port_is_fine() {
    let node = node();
    node.kil(&node.id().port("nope"), vec!["x".into()]).unwrap();
    node.kil(&node.id().port("nope"), Vec::new()).unwrap();
    let mut rec = Recorder::new(&node);
    node.snd(&rec.port, msg!["ok"]).unwrap();
    assert_eq!(rec.next().await, msg!["ok"]);
}

#[tokio::test(flavor = "current_thread")]
async fn kil_node_port_is_an_error() {
    let node = node();
    assert!(matches!(
        node.kil(&node.node_port(), Vec::new()),
        Err(Error::KillNodePort(_))
    ));
    let other: PortId = "other-node".parse().unwrap();
    assert!(matches!(
        node.kil(&other, vec!["x".into()]),
        Err(Error::KillNodePort(_))
    ));
    let (tx, rx) = tokio::sync::oneshot::channel();
    let mut tx = Some(tx);
    let p = node.port_with(move |cx, _| {
        let own = cx.node_id().node_port();
        let r = cx.kil(&own, Vec::new());
        if let Some(tx) = tx.take() {
            let _ = tx.send(matches!(r, Err(Error::KillNodePort(_))));
        }
        Ok(())
    });
    node.snd(&p, msg!["go"]).unwrap();
    assert!(
        within(rx).await.unwrap(),
        "cx.kil of the node port must be refused"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn messages_after_kill_are_dropped() {
    let node = node();
    let calls = Counter::default();
    let c = calls.clone();
    let p = node.port_with(move |_, _| {
        c.hit();
        Ok(())
    });
    node.snd(&p, msg!["before"]).unwrap();
    node.kil(&p, Vec::new()).unwrap();
    for _ in 0..10 {
        node.snd(&p, msg!["after"]).unwrap();
    }
    settle(&node).await;
    assert_eq!(calls.get(), 1);
    assert!(!within(node.port_exists(&p)).await);
}

// ---- handler failures ----------------------------------------------------------------------

/// Checks that the node still serves other ports after a failure.
async fn node_still_answers(node: &Node) {
    let echo = node
        .port()
        .on("ping", |cx, m| {
            let reply = m.port(0)?;
            cx.snd(&reply, msg!["pong"]);
            Ok(())
        })
        .build();
    assert_eq!(
        within(node.cal(&echo, msg!["ping"])).await.unwrap(),
        msg!["pong"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_error_kills_port_with_die() {
    let node = node();
    let bystander = Recorder::new(&node);
    let p = node
        .port()
        .on("x", |_, _| Err("the frobnicator is broken".into()))
        .build();
    let died = node.monitor(&p);
    node.snd(&p, msg!["x"]).unwrap();
    let reason = within(died).await;
    assert_eq!(reason.len(), 2, "{reason:?}");
    assert_eq!(reason[0], Value::from("die"));
    assert!(
        reason[1]
            .as_str()
            .unwrap()
            .contains("the frobnicator is broken"),
        "{reason:?}"
    );
    node_still_answers(&node).await;
    assert!(within(node.port_exists(&bystander.port)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_panic_kills_port_with_die() {
    let node = node();
    let bystander = Recorder::new(&node);
    let p = node.port_with(|_, m| panic!("kaboom {}", m[1]));
    let died = node.monitor(&p);
    node.snd(&p, msg!["x", 42]).unwrap();
    let reason = within(died).await;
    assert_eq!(reason[0], Value::from("die"));
    assert!(
        reason[1].as_str().unwrap().contains("kaboom 42"),
        "{reason:?}"
    );
    node_still_answers(&node).await;
    assert!(within(node.port_exists(&bystander.port)).await);
}

// ---- unhandled_message ---------------------------------------------------------------------

async fn unhandled_reason(first: Value) -> Vec<Value> {
    let node = node();
    let p = node.port().on("known", |_, _| Ok(())).build();
    let died = node.monitor(&p);
    node.snd(&p, Msg::from(vec![first, Value::from(1)]))
        .unwrap();
    within(died).await.into_vec()
}

#[tokio::test(flavor = "current_thread")]
async fn unhandled_message_exact_text() {
    assert_eq!(
        unhandled_reason("zzz".into()).await,
        vec![
            Value::from("unhandled_message"),
            Value::from("no callback found for message 'zzz'")
        ]
    );
}

#[tokio::test(flavor = "current_thread")]
async fn unhandled_message_tag_shortened_to_30_chars() {
    let tag = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEF";
    let r = unhandled_reason(tag.into()).await;
    assert_eq!(
        r[1],
        Value::from("no callback found for message 'abcdefghijklmnopqrstuvwxyz0123'")
    );
}

#[tokio::test(flavor = "current_thread")]
async fn unhandled_message_control_chars_replaced() {
    let r = unhandled_reason("a\nb\tc\u{1}d\u{7f}e".into()).await;
    assert_eq!(
        r[1],
        Value::from("no callback found for message 'a.b.c.d.e'")
    );
}

#[tokio::test(flavor = "current_thread")]
async fn unhandled_message_non_string_tag() {
    let r = unhandled_reason(Value::from(5)).await;
    assert_eq!(r[1], Value::from("no callback found for message '5'"));
}

#[tokio::test(flavor = "current_thread")]
async fn port_without_handlers_dies_on_first_message() {
    let node = node();
    let p = node.port().build();
    let died = node.monitor(&p);
    node.snd(&p, msg!["hi"]).unwrap();
    assert_eq!(
        within(died).await,
        vec![
            Value::from("unhandled_message"),
            Value::from("no callback found for message 'hi'")
        ]
    );
}

// ---- handler context -----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_self_port_and_src_node() {
    let node = node();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let mut tx = Some(tx);
    let p = node.port_with(move |cx, _| {
        let seen = (
            cx.self_port(),
            cx.self_name().to_string(),
            cx.src_node().clone(),
            cx.node_id().clone(),
            cx.node().id().clone(),
        );
        if let Some(tx) = tx.take() {
            let _ = tx.send(seen);
        }
        Ok(())
    });
    node.snd(&p, msg!["who"]).unwrap();
    let (me, name, src, id, handle_id) = within(rx).await.unwrap();
    assert_eq!(me, p);
    assert_eq!(name, p.name());
    assert_eq!(&src, node.id(), "local messages come from the local node");
    assert_eq!(&id, node.id());
    assert_eq!(&handle_id, node.id());
}

#[tokio::test(flavor = "current_thread")]
async fn cx_port_creates_a_port_at_once() {
    let node = node();
    let mut rec = Recorder::new(&node);
    let out = rec.port.clone();
    let p = node.port_with(move |cx, _| {
        let child = cx.port(labelled("child", &out));
        cx.snd(&child, msg!["hello"]);
        Ok(())
    });
    node.snd(&p, msg!["go"]).unwrap();
    assert_eq!(rec.next().await, msg!["child", "hello"]);
}

#[tokio::test(flavor = "current_thread")]
async fn peval_ok_returns_value_and_keeps_port() {
    let node = node();
    let p = node.port_with(|_, _| Ok(()));
    let v = node.peval(&p, |port| Ok::<_, String>(port.as_str().len()));
    assert_eq!(v, Some(p.as_str().len()));
    settle(&node).await;
    assert!(within(node.port_exists(&p)).await);
}

#[tokio::test(flavor = "current_thread")]
async fn peval_err_kills_port() {
    let node = node();
    let p = node.port_with(|_, _| Ok(()));
    let died = node.monitor(&p);
    let v: Option<()> = node.peval(&p, |_| Err("peval went wrong"));
    assert_eq!(v, None);
    assert_eq!(
        within(died).await,
        vec![Value::from("die"), Value::from("peval went wrong")]
    );
}

#[tokio::test(flavor = "current_thread")]
async fn peval_panic_kills_port() {
    let node = node();
    let p = node.port_with(|_, _| Ok(()));
    let died = node.monitor(&p);
    let v: Option<()> = node.peval(&p, |_| -> Result<(), String> { panic!("peval panicked") });
    assert_eq!(v, None);
    let r = within(died).await;
    assert_eq!(r[0], Value::from("die"));
    assert!(r[1].as_str().unwrap().contains("peval panicked"), "{r:?}");
    node_still_answers(&node).await;
}

#[tokio::test(flavor = "current_thread")]
async fn psub_runs_in_port_context() {
    let node = node();
    let p = node.port_with(|_, _| Ok(()));
    let died = node.monitor(&p);
    let mut f = node.psub(&p, |x: i32| {
        if x < 0 {
            Err(format!("negative {x}"))
        } else {
            Ok(x * 2)
        }
    });
    assert_eq!(f(2), Some(4));
    assert_eq!(f(5), Some(10));
    settle(&node).await;
    assert!(within(node.port_exists(&p)).await);
    assert_eq!(f(-3), None);
    assert_eq!(
        within(died).await,
        vec![Value::from("die"), Value::from("negative -3")]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pspawn_error_kills_port() {
    let node = node();
    let p = node.port_with(|_, _| Ok(()));
    let died = node.monitor(&p);
    let task = node.pspawn(&p, async {
        tokio::task::yield_now().await;
        Err::<(), _>("async failure")
    });
    assert_eq!(
        within(died).await,
        vec![Value::from("die"), Value::from("async failure")]
    );
    within(task).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pspawn_panic_kills_port() {
    let node = node();
    let p = node.port_with(|_, _| Ok(()));
    let died = node.monitor(&p);
    let _task = node.pspawn(&p, async {
        tokio::task::yield_now().await;
        if true {
            panic!("async panic");
        }
        Ok::<(), String>(())
    });
    let r = within(died).await;
    assert_eq!(r[0], Value::from("die"));
    assert!(r[1].as_str().unwrap().contains("async panic"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pspawn_ok_keeps_port() {
    let node = node();
    let p = node.port_with(|_, _| Ok(()));
    let task = node.pspawn(&p, async { Ok::<(), String>(()) });
    within(task).await.unwrap();
    settle(&node).await;
    assert!(within(node.port_exists(&p)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pspawn_future_dropped_when_port_dies() {
    let node = node();
    let p = node.port_with(|_, _| Ok(()));
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = DropFlag(dropped.clone());
    let task = node.pspawn(&p, async move {
        let _flag = flag;
        std::future::pending::<()>().await;
        Ok::<(), String>(())
    });
    settle(&node).await;
    assert!(!dropped.load(Ordering::SeqCst));
    node.kil(&p, vec!["stop".into()]).unwrap();
    within(task).await.unwrap();
    assert!(
        dropped.load(Ordering::SeqCst),
        "the port's future must be dropped when it dies"
    );
}

// ---- typed messages ------------------------------------------------------------------------

#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
struct Move {
    tag: String,
    x: i32,
    y: i32,
    label: Option<String>,
}

#[tokio::test(flavor = "current_thread")]
async fn typed_tuple_and_struct_roundtrip() {
    let node = node();
    let mut rec = Recorder::new(&node);
    node.snd_typed(&rec.port, &("add", 1u32, 2.5f64)).unwrap();
    let m = rec.next().await;
    assert_eq!(m, msg!["add", 1, 2.5]);
    let (tag, a, b): (String, u32, f64) = m.decode().unwrap();
    assert_eq!((tag.as_str(), a, b), ("add", 1, 2.5));

    let mv = Move {
        tag: "move".into(),
        x: -3,
        y: 7,
        label: Some("north".into()),
    };
    node.snd_typed(&rec.port, &mv).unwrap();
    let m = rec.next().await;
    assert_eq!(m, msg!["move", -3, 7, "north"]);
    assert_eq!(m.decode::<Move>().unwrap(), mv);
}

#[tokio::test(flavor = "current_thread")]
async fn typed_decode_in_handler_and_mismatch_error() {
    let node = node();
    let mut rec = Recorder::new(&node);
    let out = rec.port.clone();
    let p = node
        .port()
        .on("move", move |cx, m| {
            // The tag is gone: decode the rest as a tuple.
            let (x, y, label): (i32, i32, Option<String>) = m.decode()?;
            cx.snd(&out, msg!["sum", x + y, label.is_some()]);
            Ok(())
        })
        .build();
    node.snd_typed(
        &p,
        &Move {
            tag: "move".into(),
            x: 1,
            y: 2,
            label: None,
        },
    )
    .unwrap();
    assert_eq!(rec.next().await, msg!["sum", 3, false]);

    // A shape mismatch is a clear error: in the handler it kills the port with it.
    let died = node.monitor(&p);
    node.snd(&p, msg!["move", "one", 2]).unwrap();
    let r = within(died).await;
    assert_eq!(r[0], Value::from("die"));
    let text = r[1].as_str().unwrap();
    assert!(
        text.contains("element 0") && text.contains("\"one\""),
        "unclear error: {text}"
    );

    // Directly: the error names the element and both shapes, and converts into Error.
    let err = msg!["add", "x"].decode::<(String, u32)>().unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("element 1") && text.contains("u32"),
        "unclear error: {text}"
    );
    let err: Error = err.into();
    assert!(matches!(err, Error::Typed(_)));
    let err = msg!["add"].decode::<(String, u32)>().unwrap_err();
    assert!(!err.to_string().is_empty());
}

/// A protocol as an enum: each variant is a tagged message.
#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
enum Req {
    Ping(u32, aemp::PortId),
    Stop,
}

#[tokio::test(flavor = "current_thread")]
async fn typed_enum_is_a_tagged_message_for_rcv_tags() {
    let node = node();
    let mut rec = Recorder::new(&node);
    let out = rec.port.clone();
    // A tag handler sees the fields; the default handler decodes the whole enum.
    let p = node
        .port()
        .on("Ping", |cx, m| {
            let (n, reply): (u32, aemp::PortId) = m.decode()?;
            cx.snd(&reply, msg!["pong", n]);
            Ok(())
        })
        .default(move |cx, m| {
            let req: Req = m.decode()?;
            cx.snd(&out, msg!["other", format!("{req:?}")]);
            Ok(())
        })
        .build();
    node.snd_typed(&p, &Req::Ping(5, rec.port.clone())).unwrap();
    assert_eq!(rec.next().await, msg!["pong", 5]);
    node.snd_typed(&p, &Req::Stop).unwrap();
    assert_eq!(rec.next().await, msg!["other", "Stop"]);
    // The wire form, as a Perl sender would write it.
    let m = aemp::typed::to_msg(&Req::Ping(7, rec.port.clone())).unwrap();
    assert_eq!(m, msg!["Ping", 7, rec.port.as_str()]);
    assert_eq!(m.decode::<Req>().unwrap(), Req::Ping(7, rec.port.clone()));
}

#[tokio::test(flavor = "current_thread")]
async fn typed_empty_message_is_an_error() {
    let node = node();
    let rec = Recorder::new(&node);
    let r = node.snd_typed(&rec.port, &Vec::<u32>::new());
    assert!(matches!(r, Err(Error::EmptyMessage)), "{r:?}");
}

/// A node made outside a tokio runtime is an error, not a panic.
#[test]
fn node_outside_a_runtime_is_an_error() {
    assert!(matches!(
        aemp::Node::new("no-runtime/%u"),
        Err(aemp::Error::NoRuntime)
    ));
}

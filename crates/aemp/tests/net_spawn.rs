//! Remote spawn and the node-port services across the network: spawn via a registered init
//! function, unknown init names, secure mode, `eval`, `can`, the `snd` relay, `src_node`.

mod net_common;
use aemp::{msg, Msg, Node, NodeId, PortId, Value};
use net_common::*;
use parking_lot::Mutex;
use std::sync::Arc;

/// Registers `echo_init notify`: reports `["spawned", self, src_node]` to `notify` and
/// answers `ping x reply` (the `cal` convention) with `["pong", x, src_node]`.
fn register_echo(node: &Node) {
    node.register("echo_init", |cx, args| {
        let notify: PortId = args
            .first()
            .and_then(Value::as_str)
            .ok_or("notify port missing")?
            .parse()?;
        cx.rcv("ping", |cx, m| {
            let reply: PortId =
                m.0.last()
                    .and_then(Value::as_str)
                    .ok_or("reply port missing")?
                    .parse()?;
            let src = cx.src_node().to_string();
            cx.snd(&reply, msg!["pong", m[0].clone(), src]);
            Ok(())
        });
        let me = cx.self_port();
        let src = cx.src_node().to_string();
        cx.snd(&notify, msg!["spawned", me.as_str(), src]);
        Ok(())
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_spawn_runs_the_init_function() {
    let a = node("sp-a").await;
    let b = node("sp-b").await;
    register_echo(&b);
    link(&a, &b).await;
    let mut inbox = a.inbox(16);
    let port = a
        .spawn(b.id(), "echo_init", vec![inbox.port().as_str().into()])
        .unwrap();
    assert_eq!(port.node(), b.id().as_str());
    let m = within("spawned", inbox.recv()).await.unwrap();
    // The init function runs for the new port, with A as the source node.
    assert_eq!(m, msg!["spawned", port.as_str(), a.id().as_str()]);
    let reply = a.cal(&port, msg!["ping", 7]).timeout(T / 2);
    assert_eq!(
        within("ping", reply).await.unwrap(),
        msg!["pong", 7, a.id().as_str()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_init_function_fires_the_monitor() {
    let a = node("spu-a").await;
    let b = node("spu-b").await;
    link(&a, &b).await;
    let port = a.spawn(b.id(), "no::such::init", vec![]).unwrap();
    let reason = within("monitor", a.monitor(&port)).await;
    let first = reason.first().and_then(Value::as_str);
    assert!(
        matches!(first, Some("die") | Some("no_such_port")),
        "unexpected reason {reason:?}"
    );
    assert!(!b.port_exists(&port).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secure_mode_refuses_remote_execution_only() {
    let a = node("sec-a").await;
    let b = Node::configure(cfg("sec-b", "s3cret").secure(true).build().unwrap())
        .await
        .unwrap();
    register_echo(&b);
    let calls: Arc<Mutex<Vec<String>>> = Arc::default();
    let c2 = calls.clone();
    b.register("record_call", move |cx, args| {
        c2.lock().push(format!(
            "{} {}",
            cx.src_node(),
            args.first().and_then(Value::as_str).unwrap_or("?")
        ));
        Ok(())
    });
    link(&a, &b).await;

    // Remote: refused.
    let mut a_inbox = a.inbox(16);
    let remote_port = a
        .spawn(b.id(), "echo_init", vec![a_inbox.port().as_str().into()])
        .unwrap();
    a.snd_to_func(b.id(), "record_call", vec!["remote".into()])
        .unwrap();
    let died = a.monitor(&remote_port);
    // Everything above is ahead of this request on the one connection.
    assert_cal_works(&a, &b).await;
    let reason = within("monitor of refused spawn", died).await;
    assert_eq!(reason.first().and_then(Value::as_str), Some("no_such_port"));
    assert!(
        a_inbox.try_recv().is_none(),
        "remote spawn ran in secure mode"
    );
    assert!(
        calls.lock().is_empty(),
        "remote call ran: {:?}",
        calls.lock()
    );

    // Local: allowed.
    let mut b_inbox = b.inbox(16);
    let local_port = b
        .spawn(b.id(), "echo_init", vec![b_inbox.port().as_str().into()])
        .unwrap();
    let m = within("local spawn", b_inbox.recv()).await.unwrap();
    assert_eq!(m, msg!["spawned", local_port.as_str(), b.id().as_str()]);
    b.snd_to_func(b.id(), "record_call", vec!["local".into()])
        .unwrap();
    assert_cal_works(&b, &b).await;
    assert_eq!(*calls.lock(), vec![format!("{} local", b.id())]);
    // A may still use the ports B created itself.
    let r = within("ping", a.cal(&local_port, msg!["ping", 1]).timeout(T / 2))
        .await
        .unwrap();
    assert_eq!(r, msg!["pong", 1, a.id().as_str()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eval_can_and_snd_relay() {
    let a = node("np2-a").await;
    let b = node("np2-b").await;
    b.register("Some::func", |_, _| Ok(()));
    link(&a, &b).await;

    // eval never runs anything, but answers with an error text: [extra…, error].
    let mut inbox = a.inbox(16);
    a.snd(
        &b.node_port(),
        msg!["eval", "1+1", inbox.port().as_str(), "x1", 2],
    )
    .unwrap();
    let r = within("eval reply", inbox.recv()).await.unwrap();
    assert_eq!(r.len(), 3, "{r}");
    assert_eq!((r[0].clone(), r[1].clone()), ("x1".into(), 2.into()));
    assert!(r[2].as_str().is_some_and(|e| !e.is_empty()), "{r}");
    let r = within("eval cal", a.cal(&b.node_port(), msg!["eval", "1"]))
        .await
        .unwrap();
    assert!(r[0].as_str().is_some_and(|e| !e.is_empty()), "{r}");

    // can: [extra…, bool]; accept any truthy/falsy encoding.
    let truthy = |v: &Value| match v {
        Value::Bool(b) => *b,
        Value::Int(i) => *i != 0,
        Value::Str(s) => !s.is_empty() && s != "0",
        _ => false,
    };
    for (tag, want) in [
        ("time", true),
        ("mon1", true),
        ("Some::func", true),
        ("No::such::func", false),
    ] {
        a.snd(
            &b.node_port(),
            msg!["can", tag, inbox.port().as_str(), "q", tag],
        )
        .unwrap();
        let r = within("can reply", inbox.recv()).await.unwrap();
        assert_eq!(r.len(), 3, "{r}");
        assert_eq!((r[0].clone(), r[1].clone()), ("q".into(), tag.into()));
        assert_eq!(truthy(&r[2]), want, "can {tag}: {r}");
    }

    // snd relay via B's node port: to a port on B, and back to a port on A.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Msg, NodeId)>();
    let tx2 = tx.clone();
    let on_b = b.port_with(move |cx, m| {
        let _ = tx2.send((m, cx.src_node().clone()));
        Ok(())
    });
    let on_a = a.port_with(move |cx, m| {
        let _ = tx.send((m, cx.src_node().clone()));
        Ok(())
    });
    a.snd(&b.node_port(), msg!["snd", on_b.as_str(), "relayed", 1])
        .unwrap();
    let (m, _) = within("relay to B", rx.recv()).await.unwrap();
    assert_eq!(m, msg!["relayed", 1]);
    a.snd(&b.node_port(), msg!["snd", on_a.as_str(), "back", 2])
        .unwrap();
    let (m, src) = within("relay back to A", rx.recv()).await.unwrap();
    assert_eq!(m, msg!["back", 2]);
    // It came over the connection from B.
    assert_eq!(&src, b.id());

    // src_node of a direct message is the sending node.
    a.snd(&on_b, msg!["direct"]).unwrap();
    let (m, src) = within("direct", rx.recv()).await.unwrap();
    assert_eq!((m, &src), (msg!["direct"], a.id()));
}

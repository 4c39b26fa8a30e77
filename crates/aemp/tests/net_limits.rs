//! Values a peer would refuse (nested too deep, too large) are refused where they enter the
//! sending node, with an error at the call, and never reach the wire: the link between two
//! real nodes on 127.0.0.1 stays up, nothing in flight is lost, no monitor fires, and no
//! depth crashes a node.

mod log_capture;
mod net_common;
use aemp::{msg, CalError, Error, Monitor, Msg, Node, PortId, Value};
use aemp_proto::codec::{Framing, LimitError, Limits};
use log_capture::Logs;
use net_common::*;
use std::sync::atomic::Ordering;

/// A string inside `levels` nested lists.
fn nested(levels: usize) -> Value {
    let mut v = Value::from("x");
    for _ in 0..levels {
        v = Value::List(vec![v]);
    }
    v
}

/// The refusal of a frame nested beyond the default limit.
const TOO_DEEP: LimitError = LimitError::TooDeep { depth: 65, max: 64 };

fn is_too_deep<T>(r: &Result<T, Error>) -> bool {
    matches!(r, Err(Error::Refused(e)) if *e == TOO_DEEP)
}

/// Two linked nodes speaking `framing`, a port on `b` collecting what arrives, and a node
/// monitor of `b` on `a` (it fires if the link goes down).
struct Pair {
    a: Node,
    b: Node,
    inbox: aemp::Inbox,
    link_lost: tokio::sync::oneshot::Receiver<aemp::Reason>,
    _guard: aemp::MonGuard,
}

async fn pair(tag: &str, framing: &str) -> Pair {
    let a = node_with(&format!("la-{tag}"), "limits", &[framing]).await;
    let b = node_with(&format!("lb-{tag}"), "limits", &[framing]).await;
    link(&a, &b).await;
    let inbox = b.inbox(64);
    let (tx, link_lost) = tokio::sync::oneshot::channel();
    let guard = a.mon_cb(&b.node_port(), move |r| drop(tx.send(r)));
    Pair {
        a,
        b,
        inbox,
        link_lost,
        _guard: guard,
    }
}

impl Pair {
    /// The link is still up: a message sent now arrives (after everything sent before, so
    /// nothing in flight was lost), no monitor fired, and `b` never saw a bad frame.
    async fn assert_link_up(&mut self, what: &str) {
        let port = self.inbox.port().clone();
        self.a.snd(&port, msg!["after", what]).unwrap();
        let got = within("message after the refusal", self.inbox.recv())
            .await
            .expect("inbox open");
        assert_eq!(got, msg!["after", what]);
        assert!(self.a.is_up(self.b.id()).await, "{what}: link lost");
        assert!(
            self.link_lost.try_recv().is_err(),
            "{what}: node monitor fired"
        );
        let errors = self
            .b
            .counters()
            .unwrap()
            .protocol_errors
            .load(Ordering::Relaxed);
        assert_eq!(
            errors, 0,
            "{what}: the receiver closed a connection on bad input"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snd_nested_too_deep_is_refused_and_the_link_stays_up() {
    for framing in ["cbor", "json"] {
        let mut p = pair(&format!("deep-{framing}"), framing).await;
        let port = p.inbox.port().clone();
        // The deepest message peers accept: the frame, then 63 levels of lists.
        p.a.snd(&port, msg!["deepest", nested(63)]).unwrap();
        let got = within("deepest message", p.inbox.recv()).await.unwrap();
        assert_eq!(got, msg!["deepest", nested(63)], "{framing}");
        // 64 and 65 levels: refused at the call.
        assert!(
            is_too_deep(&p.a.snd(&port, msg!["deep", nested(64)])),
            "{framing}"
        );
        assert!(
            is_too_deep(&p.a.snd(&port, msg!["deep", nested(65)])),
            "{framing}"
        );
        // A map counts like a list; so does a message of many elements, one of them deep.
        let map = Value::Map(vec![("k".into(), nested(63))]);
        assert!(
            is_too_deep(&p.a.snd(&port, msg!["map", 1, 2, map])),
            "{framing}"
        );
        // snd_many refuses the whole batch.
        let batch = vec![msg!["first"], msg!["deep", nested(64)]];
        assert!(is_too_deep(&p.a.snd_many(&port, batch)), "{framing}");
        p.assert_link_up(framing).await;
        assert!(
            p.inbox.try_recv().is_none(),
            "{framing}: a refused message arrived"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_100k_deep_is_refused_locally_and_remotely_without_a_crash() {
    let mut p = pair("100k", "cbor").await;
    let remote = p.inbox.port().clone();
    let local = p.a.inbox(4);
    let local_port = local.port().clone();
    for port in [&local_port, &remote, &p.b.node_port()] {
        assert!(
            is_too_deep(&p.a.snd(port, msg!["deep", nested(100_000)])),
            "{port}"
        );
    }
    // The other entry points. Typed messages: the serializer refuses such depths itself.
    assert!(is_too_deep(&p.a.snd_typed(&remote, &("deep", nested(64)))));
    let typed = ("deep", nested(100_000));
    let r = p.a.snd_typed(&remote, &typed);
    aemp_proto::value::drop_nested([typed.1]);
    assert!(matches!(r, Err(Error::Typed(_))), "{r:?}");
    assert!(matches!(
        p.a.spawn(p.b.id(), "init", vec![nested(100_000)]),
        Err(Error::Refused(TOO_DEEP))
    ));
    assert!(matches!(
        p.a.spawn(p.a.id(), "init", vec![nested(100_000)]),
        Err(Error::Refused(TOO_DEEP))
    ));
    assert!(matches!(
        p.a.kil(&remote, vec!["deep".into(), nested(100_000)]),
        Err(Error::Refused(TOO_DEEP))
    ));
    let cal = within("refused cal", p.a.cal(&remote, msg!["q", nested(100_000)])).await;
    assert_eq!(cal, Err(CalError::Refused(TOO_DEEP)));
    p.assert_link_up("100k").await;
    // Nothing arrived anywhere, and the ports are alive.
    assert!(p.inbox.try_recv().is_none());
    assert!(p.a.port_exists(&local_port).await);
    assert!(p.b.port_exists(&remote).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_300_mib_port_name_is_refused_and_the_link_stays_up() {
    let mut p = pair("big", "cbor").await;
    let before = p.a.counters().unwrap().bytes_out.load(Ordering::Relaxed);
    // Built once: the port ID string, parsed into a port ID, then dropped.
    let big = {
        let mut s = Vec::with_capacity((300 << 20) + 64);
        s.extend_from_slice(p.b.id().as_str().as_bytes());
        s.push(b'#');
        s.resize(s.len() + (300 << 20), b'p');
        PortId::parse(std::str::from_utf8(&s).unwrap()).unwrap()
    };
    let r = p.a.snd(&big, msg!["hello"]);
    match r {
        Err(Error::Refused(LimitError::TooLarge { size, max, framing })) => {
            assert!(size > 300 << 20, "{size}");
            assert_eq!(max, Limits::default().max_message);
            assert_eq!(framing, Framing::Cbor);
        }
        other => panic!("not refused: {other:?}"),
    }
    // Same name, on this node: a flat local message is never encoded and is not measured
    // (only nesting is checked for local ports); it goes to a port that does not exist.
    let local = p.a.id().port(big.name());
    drop(big);
    assert!(p.a.snd(&local, msg!["hello"]).is_ok());
    drop(local);
    p.assert_link_up("big").await;
    let sent = p.a.counters().unwrap().bytes_out.load(Ordering::Relaxed) - before;
    assert!(sent < 1 << 20, "{sent} bytes written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn db_values_too_deep_for_g_set_are_refused() {
    let mut p = pair("db", "cbor").await;
    // `g_set` carries a value two maps deep: `["", "g_set", {family: {key: value}}]`, so a
    // value may hold 61 levels of lists.
    p.a.db_set("limits", "ok", nested(61)).unwrap();
    let r = p.a.db_set("limits", "deep", nested(62));
    assert!(is_too_deep(&r), "{r:?}");
    let r = p.a.db_set("limits", "deeper", nested(100_000));
    assert!(is_too_deep(&r), "{r:?}");
    let port = p.a.inbox(1).port().clone();
    let r = p.a.db_reg("limits", &port, nested(62));
    assert!(is_too_deep(&r), "{r:?}");
    p.assert_link_up("db").await;
}

// One thread: the handlers run on it, under the test's log subscriber.
#[tokio::test(flavor = "current_thread")]
async fn cx_snd_of_a_too_deep_message_warns_and_the_port_survives() {
    let (logs, _log) = Logs::capture(tracing::Level::WARN);
    let mut p = pair("cx", "cbor").await;
    let remote = p.inbox.port().clone();
    let mut done = p.a.inbox(4);
    let done_port = done.port().clone();
    let (remote2, done2) = (remote.clone(), done_port.clone());
    let handler = p.a.port_with(move |cx, _m| {
        cx.snd(&remote2, msg!["deep", nested(100_000)]);
        cx.snd(&cx.self_port(), msg!["to self", nested(64)]);
        let tried = cx.try_snd(&remote2, msg!["deep", nested(64)]);
        cx.snd(&done2, msg!["done", format!("{tried:?}")]);
        Ok(())
    });
    p.a.snd(&handler, msg!["go"]).unwrap();
    let got = within("handler done", done.recv()).await.unwrap();
    assert_eq!(got[0], Value::from("done"));
    assert!(
        got[1].as_str().unwrap().contains("Refused(TooDeep"),
        "{got}"
    );
    assert!(p.a.port_exists(&handler).await, "the handler's port died");
    p.assert_link_up("cx").await;
    assert!(p.inbox.try_recv().is_none(), "a refused message arrived");
    let text = logs.text();
    let warnings: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("message not sent"))
        .collect();
    assert_eq!(warnings.len(), 2, "{text}");
    assert!(warnings[0].contains(remote.as_str()), "{text}");
    assert!(warnings[0].contains("nested too deep"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_made_messages_are_checked_too() {
    let mut p = pair("kernel", "cbor").await;
    let remote = p.inbox.port().clone();
    // A monitor message with a reason appended: a deep monitor message is refused when the
    // monitor fires (logged), a fitting one arrives.
    let watched = p.a.port_with(|_, _| Ok(()));
    // A reason that peers would refuse (in the `kil0` notice to a remote monitor): the kill
    // is refused; the port lives on.
    let r = p.a.kil(&watched, vec![nested(64)]);
    assert!(is_too_deep(&r), "{r:?}");
    assert!(p.a.port_exists(&watched).await);
    // Monitor messages get the reason appended when the monitor fires: a deep one is
    // refused then (logged), a fitting one arrives.
    p.a.mon(&watched, Monitor::send(&remote, msg!["deep", nested(64)]))
        .keep();
    p.a.mon(&watched, Monitor::send(&remote, msg!["died"]))
        .keep();
    p.a.kil(&watched, vec!["bye".into()]).unwrap();
    let got = within("monitor message", p.inbox.recv()).await.unwrap();
    assert_eq!(got, msg!["died", "bye"]);
    p.assert_link_up("kernel").await;
    assert!(p.inbox.try_recv().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_links_check_the_json_size_exactly() {
    // Small limits on both nodes: a string of newlines fits them as CBOR (one byte each)
    // but not as JSON (`\n`, two bytes each).
    let limits = Limits {
        max_depth: 64,
        max_message: 64 * 1024,
    };
    let mk = |name: &str| {
        cfg(name, "limits")
            .framing_format(["json"])
            .build()
            .unwrap()
    };
    let a = Node::configure_with_limits(mk("lja"), limits)
        .await
        .unwrap();
    let b = Node::configure_with_limits(mk("ljb"), limits)
        .await
        .unwrap();
    link(&a, &b).await;
    let mut inbox = b.inbox(8);
    let port = inbox.port().clone();
    let newlines = "\n".repeat(40 * 1024);
    // Fits as CBOR, so it passes the entry check; the JSON connection refuses it (at the
    // call when the message goes straight into the connection, else when it is written,
    // with a warning): it never reaches the wire.
    let r = a.snd(&port, msg!["nl", newlines.as_str()]);
    assert!(
        matches!(
            r,
            Ok(())
                | Err(Error::Refused(LimitError::TooLarge {
                    framing: Framing::Json,
                    ..
                }))
        ),
        "{r:?}"
    );
    // Too large as CBOR as well: refused at the call.
    let r = a.snd(&port, msg!["x", "x".repeat(64 * 1024)]);
    assert!(
        matches!(r, Err(Error::Refused(LimitError::TooLarge { .. }))),
        "{r:?}"
    );
    // What fits as JSON arrives; the link is up.
    a.snd(&port, msg!["nl", "\n".repeat(20 * 1024)]).unwrap();
    let got: Msg = within("fitting message", inbox.recv()).await.unwrap();
    assert_eq!(got[0], Value::from("nl"));
    assert_eq!(got[1].as_str().map(str::len), Some(20 * 1024));
    assert!(a.is_up(b.id()).await);
    assert_eq!(
        b.counters()
            .unwrap()
            .protocol_errors
            .load(Ordering::Relaxed),
        0
    );
}

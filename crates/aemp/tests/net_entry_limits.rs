//! Every public call that puts a user-given name or value on the wire checks it against the
//! node's [`Limits`] before anything is queued (issue 13): port names in `mon`/`kil`, node
//! IDs (the `g_find` that looks a node up), database families and keys in `db_del`,
//! `db_mon` and the queries, function names in `spawn`/`snd_to_func`, `cal` targets. Two
//! real nodes on 127.0.0.1 with a 4 KiB frame limit; each call gets a 5,000-byte name and
//! must fail with [`Error::Refused`] (or, for a monitor, fire at once naming the cause),
//! and the link stays up with no frame refused by the receiver.

mod net_common;
use aemp::{msg, CalError, Error, Monitor, Node, PortId};
use aemp_proto::codec::{LimitError, Limits};
use net_common::*;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::time::Duration;

const LIMITS: Limits = Limits {
    max_depth: 64,
    max_message: 4096,
};

async fn limited(name: &str) -> Node {
    let cfg = cfg(name, "entry").build().expect("config");
    Node::configure_with_limits(cfg, LIMITS)
        .await
        .expect("configure")
}

fn huge() -> String {
    "n".repeat(5000)
}

/// `None` if `r` is the refusal of a frame over the 4 KiB limit, else what it is.
fn not_too_large<T: std::fmt::Debug>(what: &str, r: Result<T, Error>) -> Option<String> {
    match r {
        Err(Error::Refused(LimitError::TooLarge { max: 4096, .. })) => None,
        other => Some(format!("{what}: {other:?}")),
    }
}

/// A failure line, cut short (the names are 5,000 bytes long).
fn short(s: String) -> String {
    s.chars().take(200).collect()
}

type Call = Box<dyn Fn(Node, Node) -> Pin<Box<dyn Future<Output = Result<(), Error>> + Send>>>;

fn call<F, Fut>(f: F) -> Call
where
    F: Fn(Node, Node) -> Fut + 'static,
    Fut: Future<Output = Result<(), Error>> + Send + 'static,
{
    Box::new(move |a, b| Box::pin(f(a, b)))
}

/// A port of `b` with a huge name, and a port on a node with a huge ID.
fn big_port(b: &Node) -> PortId {
    b.id().port(&huge())
}

fn big_node_port() -> PortId {
    format!("{}#p", huge()).parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_entry_point_refuses_what_the_peer_would_refuse() {
    let a = limited("entry-a").await;
    let b = limited("entry-b").await;
    link(&a, &b).await;
    let inbox = b.inbox(64);
    let target = inbox.port().clone();
    let (tx, mut link_lost) = tokio::sync::oneshot::channel();
    let _guard = a.mon_cb(&b.node_port(), move |r| drop(tx.send(r)));
    let before = a.counters().unwrap().bytes_out.load(Ordering::Relaxed);

    let table: Vec<(&str, Call)> = vec![
        (
            "snd: port name",
            call(|a, b| async move { a.snd(&big_port(&b), msg!["x"]) }),
        ),
        (
            "snd: node ID",
            call(|a, _| async move { a.snd(&big_node_port(), msg!["x"]) }),
        ),
        (
            "snd_many: node ID",
            call(|a, _| async move { a.snd_many(&big_node_port(), vec![msg!["x"]]) }),
        ),
        (
            "snd_to_func: function name",
            call(|a, b| async move { a.snd_to_func(b.id(), &huge(), vec![]) }),
        ),
        (
            "kil: port name, no reason",
            call(|a, b| async move { a.kil(&big_port(&b), aemp::Reason::normal()) }),
        ),
        (
            "kil: node ID, no reason",
            call(|a, _| async move { a.kil(&big_node_port(), aemp::Reason::normal()) }),
        ),
        (
            "try_mon: port name",
            call(|a, b| async move {
                a.try_mon(&big_port(&b), Monitor::callback(|_| {}))
                    .map(drop)
            }),
        ),
        (
            "try_mon: node ID",
            call(|a, _| async move {
                a.try_mon(&big_node_port(), Monitor::callback(|_| {}))
                    .map(drop)
            }),
        ),
        (
            "try_mon: node port of a huge node ID",
            call(|a, _| async move {
                let node: PortId = format!("{}#", huge()).parse().unwrap();
                a.try_mon(&node, Monitor::callback(|_| {})).map(drop)
            }),
        ),
        (
            "spawn: init function name",
            call(|a, b| async move { a.spawn(b.id(), &huge(), vec![]).map(drop) }),
        ),
        (
            "cal: target port name",
            call(|a, b| async move {
                let r = a
                    .cal(&big_port(&b), msg!["q"])
                    .timeout(Duration::from_secs(1))
                    .await;
                match r {
                    Err(CalError::Refused(e)) => Err(Error::Refused(e)),
                    other => Err(Error::Db(format!("{other:?}"))),
                }
            }),
        ),
        (
            "cal: target node ID",
            call(|a, _| async move {
                let r = a
                    .cal(&big_node_port(), msg!["q"])
                    .timeout(Duration::from_secs(1))
                    .await;
                match r {
                    Err(CalError::Refused(e)) => Err(Error::Refused(e)),
                    other => Err(Error::Db(format!("{other:?}"))),
                }
            }),
        ),
        (
            "db_set: key",
            call(|a, _| async move { a.db_set("fam", &huge(), 1) }),
        ),
        (
            "db_set: family",
            call(|a, _| async move { a.db_set(&huge(), "k", 1) }),
        ),
        (
            "db_del: key",
            call(|a, _| async move { a.db_del("fam", &[&huge()]) }),
        ),
        (
            "db_mon: family",
            call(|a, _| async move { a.db_mon(&huge()).map(drop) }),
        ),
        (
            "db_family: family",
            call(|a, _| async move { a.db_family(&huge()).await.map(drop) }),
        ),
        (
            "db_keys: family",
            call(|a, _| async move { a.db_keys(&huge()).await.map(drop) }),
        ),
        (
            "db_values: family",
            call(|a, _| async move { a.db_values(&huge()).await.map(drop) }),
        ),
        (
            "db_keys_then: family",
            call(|a, _| async move {
                let (tx, rx) = tokio::sync::oneshot::channel();
                a.db_keys_then(&huge(), move |r| drop(tx.send(r)));
                rx.await.unwrap().map(drop)
            }),
        ),
        (
            "db_reg: port name as key",
            call(|a, b| async move { a.db_reg("fam", &big_port(&b), 1) }),
        ),
        (
            "stats_of: node ID",
            call(|a, _| async move {
                let node = big_node_port().node_id();
                match a.stats_of(&node, Duration::from_secs(1)).await {
                    Err(aemp::StatsError::Cal(CalError::Refused(e))) => Err(Error::Refused(e)),
                    other => Err(Error::Db(format!("{other:?}"))),
                }
            }),
        ),
    ];
    let mut wrong = Vec::new();
    for (what, f) in &table {
        // Queries without a master would wait for one: a call that is not refused at once
        // counts as not refused.
        let r = tokio::time::timeout(Duration::from_secs(2), f(a.clone(), b.clone())).await;
        let r = r.unwrap_or_else(|_| Err(Error::Db("no answer".into())));
        wrong.extend(not_too_large(what, r));
    }

    // `mon` has no error to return: the monitor fires at once, naming the cause.
    for (what, port) in [
        ("mon: port name", big_port(&b)),
        ("mon: node ID", big_node_port()),
    ] {
        let (tx, rx) = tokio::sync::oneshot::channel();
        a.mon_cb(&port, move |r| drop(tx.send(r))).keep();
        match tokio::time::timeout(Duration::from_secs(2), rx).await {
            Ok(Ok(r)) if r.to_string().contains("monitor refused: message too large") => {}
            other => wrong.push(format!("{what}: {other:?}")),
        }
    }

    // The same calls from a handler (`Cx`).
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let bp = big_port(&b);
    let probe = a.port_with(move |cx, _m| {
        let mut out = vec![
            cx.try_snd(&big_node_port(), msg!["x"]).map(drop),
            cx.try_snd(&bp, msg!["x"]).map(drop),
            cx.kil(&bp, aemp::Reason::normal()),
            cx.kil(&big_node_port(), aemp::Reason::normal()),
        ];
        // `snd` logs a refusal; it must send nothing either.
        cx.snd(&big_node_port(), msg!["x"]);
        let tx2 = tx.clone();
        cx.mon(&bp, Monitor::callback(move |r| drop(tx2.send(vec![Ok(r)]))))
            .keep();
        tx.send(
            out.drain(..)
                .map(|r| r.map(|()| aemp::Reason::normal()))
                .collect(),
        )
        .unwrap();
        Ok(())
    });
    a.snd(&probe, msg!["go"]).unwrap();
    let got = within("Cx results", rx.recv()).await.unwrap();
    assert_eq!(got.len(), 4);
    let names = [
        "Cx::try_snd: node ID",
        "Cx::try_snd: port name",
        "Cx::kil: port name",
        "Cx::kil: node ID",
    ];
    for (what, r) in names.into_iter().zip(got) {
        wrong.extend(not_too_large(what, r));
    }
    match tokio::time::timeout(Duration::from_secs(2), rx.recv()).await {
        Ok(Some(r)) if format!("{r:?}").contains("monitor refused") => {}
        other => wrong.push(format!("Cx::mon: port name: {other:?}")),
    }
    let wrong: Vec<String> = wrong.into_iter().map(short).collect();
    assert!(
        wrong.is_empty(),
        "not refused at the call:\n{}",
        wrong.join("\n")
    );

    // Nothing of it reached the wire: the link is up, the receiver refused nothing, and a
    // message sent now arrives first.
    a.snd(&target, msg!["after"]).unwrap();
    let mut inbox = inbox;
    let got = within("message after the refusals", inbox.recv()).await;
    assert_eq!(got, Some(msg!["after"]));
    assert!(a.is_up(b.id()).await, "link lost");
    assert!(link_lost.try_recv().is_err(), "node monitor fired");
    assert_eq!(
        b.counters()
            .unwrap()
            .protocol_errors
            .load(Ordering::Relaxed),
        0,
        "the receiver refused a frame"
    );
    let sent = a.counters().unwrap().bytes_out.load(Ordering::Relaxed) - before;
    assert!(sent < 4096, "{sent} bytes written");
    // Names within the limit still work (a monitor of a port that does not exist fires
    // with no_such_port from the peer).
    let ok = b.id().port(&"n".repeat(1000));
    let reason = within("monitor of a long but acceptable name", a.monitor(&ok)).await;
    assert_eq!(reason[0].as_str(), Some("no_such_port"), "{reason}");
}

//! The log catcher (`AnyEvent::MP::LogCatcher`): a catcher node and two source nodes, each
//! source in a process of its own (this test binary re-executed), since a node forwards the
//! `tracing` events of its whole process. Plus the source side's handling of bad, dead and
//! refused subscriptions on single nodes.

mod log_capture;
mod net_common;
use aemp::log_catcher::{self, LogRecord, CONNECT_FUNCTION};
use aemp::{msg, Node, NodeId, PortId, Reason, Value};
use net_common::*;
use std::collections::HashMap;
use std::time::Duration;
use tracing_subscriber::layer::SubscriberExt;

const SEED_ENV: &str = "AEMP_LOGTEST_SEED";
const SECRET: &str = "log-secret";
/// Joining the network and subscribing take a few round trips; on a loaded machine, give
/// them time.
const SLOW: Duration = Duration::from_secs(60);

async fn slowly<F: std::future::IntoFuture>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(SLOW, f.into_future()).await {
        Ok(v) => v,
        Err(_) => panic!("timed out: {what}"),
    }
}

/// Not a test of its own: a source node run by `two_sources_one_catcher` in a child process,
/// with the log catcher's layer as its process's subscriber. Its control port takes
/// `["emit", n, tag]` (logs n rounds of info, debug and warn events, then replies) and
/// `["subs"]` (replies with the number of log subscribers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "helper: runs only as a child process of two_sources_one_catcher"]
async fn child_source() {
    let Ok(seed) = std::env::var(SEED_ENV) else {
        return;
    };
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry().with(log_catcher::layer()),
    )
    .unwrap();
    let node = seeded("logsrc/%u", SECRET, &[seed]).await;
    let ctl = node
        .port()
        .on("emit", |cx, m| {
            let n = m[0].as_i64().unwrap_or(0);
            let tag = m[1].as_str().unwrap_or("").to_string();
            for i in 0..n {
                tracing::info!(target: "src", round = i, "{tag} info {i}");
                tracing::debug!(target: "src", "{tag} debug {i}");
                tracing::warn!(target: "src", "{tag} warn {i}");
            }
            cx.reply(&m, msg!["done"])?;
            Ok(())
        })
        .on("subs", |cx, m| {
            let n = cx.node().log_subscribers();
            cx.reply(&m, msg![n])?;
            Ok(())
        })
        .build();
    println!("READY {ctl}");
    tokio::time::sleep(Duration::from_secs(120)).await;
}

async fn subscribers(catcher: &Node, ctl: &PortId) -> i64 {
    let r = within("subs", catcher.cal(ctl, msg!["subs"]))
        .await
        .unwrap();
    r[0].as_i64().unwrap()
}

/// Waits until the source behind `ctl` has `n` subscribers.
async fn wait_subscribers(catcher: &Node, ctl: &PortId, n: i64) {
    slowly(&format!("{n} subscriber(s) on {ctl}"), async {
        while subscribers(catcher, ctl).await != n {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

/// Reads `catch` until `want` records of target `src` have come from each of `nodes`;
/// returns them per node, in order of arrival.
async fn collect(
    catch: &mut aemp::LogCatch,
    nodes: &[NodeId],
    want: usize,
) -> HashMap<NodeId, Vec<LogRecord>> {
    let mut got: HashMap<NodeId, Vec<LogRecord>> = HashMap::new();
    slowly("the records", async {
        while nodes.iter().any(|n| got.get(n).map_or(0, Vec::len) < want) {
            let r = catch.next().await.expect("catch ended");
            assert!(nodes.contains(&r.node), "record of an unexpected node: {r}");
            assert!(r.level <= catch.level(), "record above the level: {r}");
            if r.target == "src" {
                got.entry(r.node.clone()).or_default().push(r);
            }
        }
    })
    .await;
    got
}

#[tokio::test(flavor = "current_thread")]
async fn two_sources_one_catcher() {
    // This process's events go to the layer too (on this thread: a current-thread runtime),
    // so a catcher that subscribed to itself would show.
    let _log =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(log_catcher::layer()));
    let catcher = global_seed("logcatcher/%u", SECRET, &["json"]).await;
    let seed = advertised(&catcher);
    let (mut c1, ready1) = spawn_child_test("child_source", &[(SEED_ENV, &seed)]).await;
    let (mut c2, ready2) = spawn_child_test("child_source", &[(SEED_ENV, &seed)]).await;
    let ctl: Vec<PortId> = [ready1, ready2]
        .iter()
        .map(|r| r.parse().unwrap())
        .collect();
    let nodes: Vec<NodeId> = ctl.iter().map(|p| NodeId::new(p.node()).unwrap()).collect();
    // A source prints its port before its connection to the seed is up; until then the
    // catcher knows no address of it and a `cal` fails at once.
    for n in &nodes {
        assert!(catcher.wait_up(n, SLOW).await, "{n} did not connect");
    }

    // Two catches on the same node: everything up to info, and warnings only.
    let mut info = catcher.catch_logs(log_catcher::INFO).unwrap();
    let mut warn = catcher.catch_logs(log_catcher::WARN).unwrap();
    for c in &ctl {
        wait_subscribers(&catcher, c, 2).await;
    }
    assert_eq!(info.nodes(), {
        let mut n = nodes.clone();
        n.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        n
    });
    tracing::info!(target: "src", "the catcher's own record");
    assert_eq!(
        catcher.log_subscribers(),
        0,
        "the catcher subscribed to itself"
    );

    const N: usize = 100;
    for c in &ctl {
        let r = within("emit", catcher.cal(c, msg!["emit", N, "A"]))
            .await
            .unwrap();
        assert_eq!(r, msg!["done"]);
    }
    let got = collect(&mut info, &nodes, 2 * N).await;
    for n in &nodes {
        let texts: Vec<&str> = got[n].iter().map(|r| r.message.as_str()).collect();
        let expected: Vec<String> = (0..N)
            .flat_map(|i| [format!("A info {i} round={i}"), format!("A warn {i}")])
            .collect();
        assert_eq!(texts, expected, "records of {n} at info");
        for r in &got[n] {
            assert!(r.time > 1.0e9, "time is epoch seconds: {r}");
            let expect = if r.message.contains("info") { 7 } else { 5 };
            assert_eq!(r.level, expect, "{r}");
        }
    }
    let got = collect(&mut warn, &nodes, N).await;
    for n in &nodes {
        let texts: Vec<&str> = got[n].iter().map(|r| r.message.as_str()).collect();
        let expected: Vec<String> = (0..N).map(|i| format!("A warn {i}")).collect();
        assert_eq!(texts, expected, "records of {n} at warn");
    }

    // A dying subscriber stops the forwarding on every node.
    drop(info);
    for c in &ctl {
        wait_subscribers(&catcher, c, 1).await;
    }
    drop(warn);
    for c in &ctl {
        wait_subscribers(&catcher, c, 0).await;
    }

    // And subscribing again works (the tables were not left in a bad state).
    let mut again = catcher.catch_logs(log_catcher::WARN).unwrap();
    for c in &ctl {
        wait_subscribers(&catcher, c, 1).await;
        within("emit", catcher.cal(c, msg!["emit", 1, "B"]))
            .await
            .unwrap();
    }
    let got = collect(&mut again, &nodes, 1).await;
    for n in &nodes {
        assert_eq!(got[n][0].message, "B warn 0");
    }
    drop(again);

    c1.0.kill().unwrap();
    c2.0.kill().unwrap();
    let _ = (c1.0.wait(), c2.0.wait());
}

/// A node's subscription table: bad requests are refused with a log line, a dead
/// subscriber port ends its subscription, a killed one too.
#[tokio::test(flavor = "current_thread")]
async fn subscriptions_end_with_their_port_and_bad_requests_are_refused() {
    let (logs, _guard) = log_capture::Logs::capture(tracing::Level::WARN);
    let node = Node::new("logsubs/%u").unwrap();
    let fail = |args: Vec<Value>| {
        node.snd_to_func(node.id(), CONNECT_FUNCTION, args).unwrap();
    };
    fail(vec![0.into()]);
    fail(vec![0.into(), "not a port".into(), 7.into()]);
    fail(vec![0.into(), "x#p".into(), "loud".into()]);
    // A round trip through the dispatcher: the requests were handled.
    node.port_count().await;
    assert_eq!(node.log_subscribers(), 0);
    let text = logs.text();
    assert_eq!(text.matches("connect request refused").count(), 3, "{text}");
    assert!(text.contains("got 1 argument"), "{text}");
    assert!(text.contains("not a log level"), "{text}");

    // A port that does not exist: subscribed, then dropped at once by its monitor.
    let dead = node.id().port("no-such-port");
    node.snd_to_func(
        node.id(),
        CONNECT_FUNCTION,
        vec![0.into(), dead.as_str().into(), 9.into()],
    )
    .unwrap();
    within("dead subscriber dropped", async {
        loop {
            node.port_count().await;
            if node.log_subscribers() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;

    // A live port: subscribed until it is killed.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let p = node.port_with(move |_cx, m| Ok(tx.send(m)?));
    node.snd_to_func(
        node.id(),
        CONNECT_FUNCTION,
        vec![0.into(), p.as_str().into(), 9.into()],
    )
    .unwrap();
    // Twice: one subscription per port.
    node.snd_to_func(
        node.id(),
        CONNECT_FUNCTION,
        vec![0.into(), p.as_str().into(), "warn".into()],
    )
    .unwrap();
    node.port_count().await;
    assert_eq!(node.log_subscribers(), 1);
    node.kil(&p, Reason::normal()).unwrap();
    node.port_count().await;
    assert_eq!(node.log_subscribers(), 0);
    drop(rx.try_recv());
}

/// Records reach a subscriber port in the wire form `[time, target, level, message]`, only
/// up to its level, and the records of the forwarding itself and of re-emitted records are
/// not forwarded.
#[tokio::test(flavor = "current_thread")]
async fn wire_form_level_filter_and_no_loops() {
    let _log =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(log_catcher::layer()));
    let node = Node::new("logwire/%u").unwrap();
    let mut inbox = node.inbox(1000);
    let p = inbox.port().clone();
    node.snd_to_func(
        node.id(),
        CONNECT_FUNCTION,
        vec![0.into(), p.as_str().into(), "warn".into()],
    )
    .unwrap();
    node.port_count().await;
    assert_eq!(node.log_subscribers(), 1);
    tracing::info!(target: "app", "not wanted");
    tracing::warn!(target: "app", disk = "sda", "disk full");
    tracing::warn!(target: "aemp::trace", "snd x#y: [...]");
    LogRecord {
        node: NodeId::new("elsewhere").unwrap(),
        time: 1.0,
        target: "app".into(),
        level: 4,
        message: "re-emitted".into(),
    }
    .emit();
    tracing::error!(target: "app", "last");
    // Other tests of this binary may log meanwhile (when they share the process): only the
    // records of target "app" count here.
    let mut app = Vec::new();
    while app.last().map(|m: &aemp::Msg| m[3].as_str()) != Some(Some("last")) {
        let m = within("record", inbox.recv()).await.unwrap();
        assert!(m[0].as_f64().unwrap() > 1.0e9, "time is epoch seconds: {m}");
        let target = m[1].as_str().unwrap().to_string();
        assert!(
            target != "aemp::trace" && target != log_catcher::REMOTE_TARGET,
            "forwarded: {m}"
        );
        assert!(m[2].as_i64().unwrap() <= 5, "above the level: {m}");
        if target == "app" {
            app.push(m);
        }
    }
    let app: Vec<&[Value]> = app.iter().map(|m| &m.as_slice()[1..]).collect();
    assert_eq!(
        app,
        [
            msg!["app", 5, "disk full disk=sda"].as_slice(),
            msg!["app", 4, "last"].as_slice()
        ]
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    while let Some(m) = inbox.try_recv() {
        assert_ne!(m[1].as_str(), Some("app"), "more was forwarded: {m}");
    }
}

/// `secure` mode refuses the connect request from other nodes, like every remote function
/// call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secure_nodes_refuse_remote_subscriptions() {
    let a = Node::configure(cfg("logsec-a/%u", SECRET).build().unwrap())
        .await
        .unwrap();
    let b = Node::configure(cfg("logsec-b/%u", SECRET).secure(true).build().unwrap())
        .await
        .unwrap();
    link(&a, &b).await;
    let p = a.port().build();
    a.snd_to_func(
        b.id(),
        CONNECT_FUNCTION,
        vec![0.into(), p.as_str().into(), 9.into()],
    )
    .unwrap();
    // A request behind it has been served when its reply arrives.
    within("time", a.cal(&b.node_port(), msg!["time"]))
        .await
        .unwrap();
    assert_eq!(b.log_subscribers(), 0);
    // The same request from b itself is served.
    b.snd_to_func(
        b.id(),
        CONNECT_FUNCTION,
        vec![0.into(), p.as_str().into(), 9.into()],
    )
    .unwrap();
    b.port_count().await;
    assert_eq!(b.log_subscribers(), 1);
}

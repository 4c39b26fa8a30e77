//! The distributed database: local node, and a seed with two slaves over TCP.

mod net_common;
use aemp::{msg, Config, Node, PortId, Value};
use net_common::T;
use std::time::Duration;

async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(T, f).await.expect("timed out")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_node_is_its_own_global() {
    let node = Node::new("dblocal/%u").unwrap();
    let mut watch = node.db_mon("fam").unwrap();
    let first = within(watch.next()).await.unwrap();
    assert!(first.contents.is_empty() && first.added.is_empty());
    node.db_set("fam", "k1", 1).unwrap();
    let c = within(watch.next()).await.unwrap();
    assert_eq!(c.added, vec!["k1"]);
    assert_eq!(c.contents.get("k1"), Some(&Value::Int(1)));
    node.db_set("fam", "k1", 2).unwrap();
    let c = within(watch.next()).await.unwrap();
    assert_eq!(c.changed, vec!["k1"]);
    let fam = within(node.db_family("fam")).await.unwrap();
    assert_eq!(fam.get("k1"), Some(&Value::Int(2)));
    assert_eq!(within(node.db_keys("fam")).await.unwrap(), vec!["k1"]);
    assert_eq!(
        within(node.db_values("fam")).await.unwrap(),
        vec![Value::Int(2)]
    );
    node.db_del("fam", &["k1"]).unwrap();
    let c = within(watch.next()).await.unwrap();
    assert_eq!(c.deleted, vec!["k1"]);
    assert!(within(node.db_family("nothing")).await.unwrap().is_empty());
    assert!(node.db_set("1bad", "k", 1).is_err());
    assert!(node.db_set("fam", "", 1).is_err());
    // db_reg: removed when the port dies.
    let p = node.port_with(|_, _| Ok(()));
    node.db_reg("workers", &p, Value::Null).unwrap();
    let mut w = node.db_mon("workers").unwrap();
    let first = within(w.next()).await.unwrap();
    assert_eq!(first.added, vec![p.as_str()]);
    node.kil(&p, vec![]).unwrap();
    let c = within(w.next()).await.unwrap();
    assert_eq!(c.deleted, vec![p.as_str()]);
}

async fn seeded(name: &str, seed: &str) -> Node {
    let cfg = Config::builder()
        .norc(true)
        .nodeid(name)
        .binds(["127.0.0.1:0"])
        .seeds([seed])
        .secret("dbsecret")
        .build()
        .unwrap();
    Node::configure(cfg).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_and_two_slaves_share_the_database() {
    // The seed lists itself: it becomes global.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let seed_addr = format!("127.0.0.1:{port}");
    let cfg = Config::builder()
        .norc(true)
        .nodeid("dbseed")
        .binds([seed_addr.as_str()])
        .seeds([seed_addr.as_str()])
        .secret("dbsecret")
        .build()
        .unwrap();
    let seed = Node::configure(cfg).await.unwrap();
    let a = seeded("dbslave-a", &seed_addr).await;
    let b = seeded("dbslave-b", &seed_addr).await;
    let mut watch = b.db_mon("svc").unwrap();
    let first = within(watch.next()).await.unwrap();
    assert!(first.contents.is_empty());

    // A registers a worker port; B sees it through its master and sends to it directly.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let worker = a.port_with(move |cx, m| {
        let _ = tx.send((cx.src_node().to_string(), m));
        Ok(())
    });
    a.db_reg("svc", &worker, "worker").unwrap();
    let c = within(watch.next()).await.unwrap();
    assert_eq!(c.added, vec![worker.as_str()]);
    assert_eq!(
        c.contents.get(worker.as_str()),
        Some(&Value::from("worker"))
    );
    let found: PortId = c.added[0].parse().unwrap();
    b.snd(&found, msg!["job", 1]).unwrap();
    let (src, m) = within(rx.recv()).await.unwrap();
    assert_eq!(src, b.id().as_str());
    assert_eq!(m, msg!["job", 1]);
    let keys = within(b.db_keys("svc")).await.unwrap();
    assert_eq!(keys, vec![worker.as_str()]);

    // A leaves the network: its entries vanish everywhere.
    a.shutdown().await;
    let c = within(watch.next()).await.unwrap();
    assert_eq!(c.deleted, vec![worker.as_str()]);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(within(seed.db_family("svc")).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_callback_forms() {
    let node = Node::new("dbcb/%u").unwrap();
    node.db_set("cbfam", "x", 7).unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    node.db_family_then("cbfam", move |r| {
        let _ = tx.send(r);
    });
    let fam = within(rx).await.unwrap().unwrap();
    assert_eq!(fam.get("x"), Some(&Value::Int(7)));
    let (tx, rx) = tokio::sync::oneshot::channel();
    node.db_keys_then("cbfam", move |r| {
        let _ = tx.send(r);
    });
    assert_eq!(within(rx).await.unwrap().unwrap(), vec!["x"]);
    let (tx, rx) = tokio::sync::oneshot::channel();
    node.db_values_then("cbfam", move |r| {
        let _ = tx.send(r);
    });
    assert_eq!(within(rx).await.unwrap().unwrap(), vec![Value::Int(7)]);
    let (tx, rx) = tokio::sync::oneshot::channel();
    node.db_keys_then("9bad", move |r| {
        let _ = tx.send(r);
    });
    assert!(within(rx).await.unwrap().is_err());
}

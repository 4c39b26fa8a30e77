//! Helpers shared by the network tests: nodes on 127.0.0.1 with ephemeral ports.
#![allow(dead_code)]

use aemp::{Config, Node};
use std::time::Duration;

pub const T: Duration = Duration::from_secs(10);

/// A networked node `name` listening on 127.0.0.1, with the given secret and framings.
pub async fn node_with(name: &str, secret: &str, framings: &[&str]) -> Node {
    let cfg = Config::builder()
        .norc(true)
        .nodeid(name)
        .binds(["127.0.0.1:0"])
        .secret(secret)
        .framing_format(framings.iter().copied())
        .connect_interval(Duration::from_secs(3))
        .build()
        .expect("config");
    Node::configure(cfg).await.expect("configure")
}

pub async fn node(name: &str) -> Node {
    node_with(name, "s3cret", &["cbor", "json"]).await
}

/// Connects `a` to `b` and waits until both see each other up.
pub async fn link(a: &Node, b: &Node) {
    a.connect(b.listen_addrs()[0]).unwrap();
    assert!(
        a.wait_up(b.id(), T).await,
        "{} did not see {} up",
        a.id(),
        b.id()
    );
    assert!(
        b.wait_up(a.id(), T).await,
        "{} did not see {} up",
        b.id(),
        a.id()
    );
}

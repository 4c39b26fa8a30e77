//! ID rules: node ID validation and expansion, port names never reused.

mod common;

use aemp::ids::{self, IdError};
use aemp::{msg, Error, Node, NodeId, PortId};
use common::{settle, within};
use std::collections::HashSet;

#[test]
fn node_id_validation() {
    for ok in [
        "a",
        "aemp/host/x",
        "host:4040",
        "ünïcode",
        "with space",
        "x/y-z_1.2",
    ] {
        assert!(ids::validate_node_id(ok).is_ok(), "{ok:?} must be accepted");
        assert_eq!(NodeId::new(ok).unwrap().as_str(), ok);
    }
    assert_eq!(ids::validate_node_id(""), Err(IdError::Empty));
    for (bad, c) in [
        ("a#b", '#'),
        ("a;b", ';'),
        ("a,b", ','),
        ("a\nb", '\n'),
        ("a\u{0}b", '\u{0}'),
    ] {
        assert_eq!(
            ids::validate_node_id(bad),
            Err(IdError::BadChar(bad.to_string(), c)),
            "{bad:?} must be refused"
        );
        assert!(NodeId::new(bad).is_err());
    }
}

#[test]
fn port_id_parsing() {
    let p: PortId = "node/x#abc".parse().unwrap();
    assert_eq!((p.node(), p.name()), ("node/x", "abc"));
    assert!(!p.is_node_port());
    let p: PortId = "node#a#b".parse().unwrap();
    assert_eq!((p.node(), p.name()), ("node", "a#b"));
    let n: PortId = "node/x".parse().unwrap();
    assert!(n.is_node_port());
    assert_eq!(n.node_id().as_str(), "node/x");
    assert!("#x".parse::<PortId>().is_err());
    assert!("".parse::<PortId>().is_err());
    assert!("a;b#c".parse::<PortId>().is_err());
}

#[tokio::test(flavor = "current_thread")]
async fn node_new_refuses_bad_ids() {
    assert!(matches!(Node::new(""), Err(Error::NodeId(IdError::Empty))));
    assert!(matches!(
        Node::new("a#b"),
        Err(Error::NodeId(IdError::BadChar(_, '#')))
    ));
    assert!(matches!(Node::new("a,b/%u"), Err(Error::NodeId(_))));
}

fn is_runiq(s: &str) -> bool {
    s.len() == 10 && s.chars().all(|c| c.is_ascii_alphanumeric())
}

#[tokio::test(flavor = "current_thread")]
async fn node_new_expands_patterns() {
    let host = aemp::config::nodename();
    let n = Node::new("pre/%n/x").unwrap();
    assert_eq!(n.id().as_str(), format!("pre/{host}/x"));

    let a = Node::new("pre/%u/post").unwrap();
    let b = Node::new("pre/%u/post").unwrap();
    assert_ne!(a.id(), b.id(), "%u must be random per node");
    let mid = a
        .id()
        .as_str()
        .strip_prefix("pre/")
        .unwrap()
        .strip_suffix("/post")
        .unwrap();
    assert!(is_runiq(mid), "{mid:?}");

    let t = Node::new("trail/").unwrap();
    let rest = t.id().as_str().strip_prefix("trail/").unwrap();
    assert!(is_runiq(rest), "{rest:?}");

    let both = Node::new("%n/%u").unwrap();
    assert!(both.id().as_str().starts_with(&format!("{host}/")));

    let fixed = Node::new("plain-fixed-id").unwrap();
    assert_eq!(fixed.id().as_str(), "plain-fixed-id");
    assert_eq!(fixed.node_port().as_str(), "plain-fixed-id");
    assert!(fixed.node_port().is_node_port());
}

#[tokio::test(flavor = "current_thread")]
async fn port_names_never_reused_within_a_node() {
    for pattern in ["unique/%u", "unique-fixed"] {
        let node = Node::new(pattern).unwrap();
        node.register("idle", |cx, _| {
            cx.rcv_default(|_, _| Ok(()));
            Ok(())
        });
        let prefix = format!("{}#", node.id());
        let mut seen = HashSet::with_capacity(100_100);
        for i in 0..100_000 {
            let p = node.port_with(|_, _| Ok(()));
            assert!(p.as_str().starts_with(&prefix));
            assert!(seen.insert(p), "port ID reused after {i} ports");
            if i % 10_000 == 0 {
                // Killed ports do not give their names back.
                let p = node.port().build();
                node.kil(&p, Vec::new()).unwrap();
                assert!(seen.insert(p));
                let s = node.spawn(node.id(), "idle", vec![]).unwrap();
                assert!(seen.insert(s));
                let inbox = node.inbox(1);
                assert!(seen.insert(inbox.port().clone()));
            }
        }
        settle(&node).await;
        assert!(within(node.port_count()).await >= 100_000);
    }
}

#[tokio::test(flavor = "current_thread")]
async fn same_fixed_node_id_gives_different_port_names() {
    let a = Node::new("same-fixed-id").unwrap();
    let b = Node::new("same-fixed-id").unwrap();
    assert_eq!(a.id(), b.id());
    let pa: HashSet<String> = (0..100)
        .map(|_| a.port_with(|_, _| Ok(())).name().to_string())
        .collect();
    let pb: HashSet<String> = (0..100)
        .map(|_| b.port_with(|_, _| Ok(())).name().to_string())
        .collect();
    assert!(
        pa.is_disjoint(&pb),
        "a restarted node must not reuse port names"
    );
    // A message meant for a port of one run does not reach the other run.
    let mut inbox = a.inbox(4);
    b.snd(inbox.port(), msg!["wrong node"]).unwrap();
    settle(&b).await;
    settle(&a).await;
    assert_eq!(inbox.try_recv(), None);
}

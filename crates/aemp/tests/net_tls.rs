//! Nodes with a certificate talk TLS (tls_sha3_512, mutual authentication against the shared
//! PEM); a node with a different certificate is refused; TLS on one side only falls back to
//! plain HMAC.

mod net_common;
use aemp::{msg, Config, MsgExt, Node};
use net_common::{foreign_pem, pem, within, T};
use std::time::Duration;

async fn tls_node(name: &str, cert: Option<&str>, secret: Option<&str>) -> Node {
    let mut b = Config::builder()
        .norc(true)
        .nodeid(name)
        .binds(["127.0.0.1:0"])
        .connect_interval(Duration::from_secs(3));
    if let Some(c) = cert {
        b = b.cert(c);
    }
    if let Some(s) = secret {
        b = b.secret(s);
    }
    Node::configure(b.build().unwrap()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tls_nodes_without_secret_talk() {
    let a = tls_node("tls-a", Some(pem()), None).await;
    let b = tls_node("tls-b", Some(pem()), None).await;
    a.connect(b.listen_addrs()[0]).unwrap();
    assert!(a.wait_up(b.id(), T).await);
    let echo = b
        .port()
        .on("echo", |cx, m| {
            let reply = m.port(1)?;
            cx.snd(&reply, msg!["back", m[0].clone()]);
            Ok(())
        })
        .build();
    let r = within("cal over TLS", a.cal(&echo, msg!["echo", "secret stuff"]))
        .await
        .unwrap();
    assert_eq!(r, msg!["back", "secret stuff"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_certificate_is_refused() {
    let other = foreign_pem();
    let a = tls_node("tlsx-a", Some(pem()), None).await;
    let b = tls_node("tlsx-b", Some(&other), None).await;
    a.connect(b.listen_addrs()[0]).unwrap();
    assert!(!a.wait_up(b.id(), Duration::from_secs(2)).await);
    assert!(!b.is_up(a.id()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_on_one_side_only_uses_the_secret() {
    let a = tls_node("tls1-a", Some(pem()), Some("k")).await;
    let b = tls_node("tls1-b", None, Some("k")).await;
    a.connect(b.listen_addrs()[0]).unwrap();
    assert!(a.wait_up(b.id(), T).await);
    let t = within("time", a.cal(&b.node_port(), msg!["time"]))
        .await
        .unwrap();
    assert!(t[0].as_f64().unwrap() > 1.0e9);
}

/// Large strings leave by vectored writes of their own buffers; over TLS those go through
/// the TLS writer, which may take only part of each piece per call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_strings_over_tls_arrive_intact_and_in_order() {
    let a = tls_node("tls-big-a", Some(pem()), None).await;
    let b = tls_node("tls-big-b", Some(pem()), None).await;
    let mut inbox = b.inbox(100);
    let to = inbox.port().clone();
    a.connect(b.listen_addrs()[0]).unwrap();
    assert!(a.wait_up(b.id(), T).await);
    let big = |i: usize| -> String {
        (0..300_000 + i)
            .map(|j| char::from(b'A' + ((i + j) % 26) as u8))
            .collect()
    };
    for i in 0..8 {
        a.snd(&to, msg!["big", i, big(i)]).unwrap();
        a.snd(&to, msg!["small", i]).unwrap();
    }
    for i in 0..8usize {
        let m = within("big over TLS", inbox.recv()).await.unwrap();
        assert_eq!(m[1], aemp::Value::from(i as u64));
        assert!(m[2].as_str() == Some(big(i).as_str()), "big {i}");
        let m = within("small over TLS", inbox.recv()).await.unwrap();
        assert_eq!(m, msg!["small", i]);
    }
}

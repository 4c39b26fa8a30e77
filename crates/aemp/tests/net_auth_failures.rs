//! Handshakes that fail to authenticate name their cause: the dialling node's monitors get
//! it as the `transport_error` reason (instead of a bare "connect timeout"), and the
//! accepting node writes a warning naming the peer's address and the cause. Also: a node
//! whose `auth_accept` lists only `tls_sha3_512` requires certificates.
//!
//! Each test runs on a current-thread runtime, so the log subscriber it sets for its thread
//! sees every line both nodes write.

mod log_capture;
mod net_common;
use aemp::{msg, Config, Node, Value};
use log_capture::Logs;
use net_common::{cfg, foreign_pem, pem, within, T};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// A PEM whose own identity is a fresh self-signed certificate, and which also trusts the
/// shared certificate: a node with it trusts the others, but they do not trust it.
fn trusting_foreign_pem() -> String {
    format!("{}{}", foreign_pem(), pem())
}

impl Logs {
    /// Waits until a WARN line contains `what`; returns it.
    async fn wait_warn(&self, what: &str) -> String {
        let deadline = tokio::time::Instant::now() + T;
        loop {
            if let Some(l) = self
                .text()
                .lines()
                .find(|l| l.contains(" WARN ") && l.contains(what))
            {
                return l.to_owned();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no WARN line with {what:?} in:\n{}",
                self.text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn start(b: aemp::config::ConfigBuilder) -> Node {
    Node::configure(b.build().expect("config"))
        .await
        .expect("configure")
}

fn tls_cfg(name: &str, pem: &str) -> aemp::config::ConfigBuilder {
    Config::builder()
        .norc(true)
        .nodeid(name)
        .binds(["127.0.0.1:0"])
        .connect_interval(Duration::from_secs(1))
        .cert(pem)
}

/// `a` monitors `b`'s node port (which makes it dial `b`); the reason it gets.
async fn dial_and_monitor(a: &Node, b: &Node) -> Vec<Value> {
    a.add_address(b.id(), b.listen_addrs()).unwrap();
    let reason = a.monitor(&b.node_port());
    // A message starts the attempt to reach `b`.
    a.snd(&b.node_port(), msg!["devnull"]).unwrap();
    within("the monitor of the unreachable node", reason)
        .await
        .into_vec()
}

fn transport_error(node: &Node, text: &str) -> Vec<Value> {
    vec![
        Value::from("transport_error"),
        Value::from(node.id().as_str()),
        Value::from(text),
    ]
}

/// The text of a node whose certificate the peer refused: the peer's TLS alert says so, or
/// (when the alert does not arrive before the peer closes) the TLS handshake ends early.
fn refused_ours(text: &str) -> bool {
    text.starts_with(
        "authentication failed: the peer refused this node's certificate (not trusted by its \
         PEM; TLS alert ",
    ) || text
        == "authentication failed: the peer ended the TLS handshake (it probably does not trust \
            this node's certificate)"
}

#[tokio::test]
async fn a_wrong_secret_is_named_on_both_sides() {
    let (logs, _guard) = Logs::capture(tracing::Level::WARN);
    let a = start(cfg("sec-a", "secret-one").connect_interval(Duration::from_secs(1))).await;
    let b = start(cfg("sec-b", "secret-two")).await;
    let reason = dial_and_monitor(&a, &b).await;
    assert_eq!(
        reason,
        transport_error(&b, "authentication failed: shared secret mismatch")
    );
    let line = logs.wait_warn("refused handshake from 127.0.0.1:").await;
    assert!(
        line.ends_with("(node sec-a): authentication failed: shared secret mismatch"),
        "{line}"
    );
    let refused = b
        .counters()
        .unwrap()
        .handshakes_refused
        .load(Ordering::Relaxed);
    assert!(refused >= 1, "{refused}");
    assert_eq!(
        a.counters()
            .unwrap()
            .handshakes_refused
            .load(Ordering::Relaxed),
        0,
        "the dialling side refused nothing of what it accepted"
    );
}

#[tokio::test]
async fn a_certificate_the_acceptor_does_not_trust_is_named_on_both_sides() {
    let (logs, _guard) = Logs::capture(tracing::Level::WARN);
    // a trusts b's certificate; b does not trust a's.
    let a = start(tls_cfg("cert-a", &trusting_foreign_pem())).await;
    let b = start(tls_cfg("cert-b", pem())).await;
    let reason = dial_and_monitor(&a, &b).await;
    let text = reason[2].as_str().unwrap_or_default();
    assert_eq!(reason[..2], transport_error(&b, "")[..2]);
    assert!(refused_ours(text), "{text}");
    let line = logs.wait_warn("refused handshake from 127.0.0.1:").await;
    assert!(
        line.contains(
            "(node cert-a): authentication failed: the peer's certificate is not trusted by \
             this node's PEM ("
        ),
        "{line}"
    );
}

#[tokio::test]
async fn a_certificate_the_dialler_does_not_trust_is_named_on_both_sides() {
    let (logs, _guard) = Logs::capture(tracing::Level::WARN);
    // b trusts a's certificate; a does not trust b's.
    let a = start(tls_cfg("certd-a", pem())).await;
    let b = start(tls_cfg("certd-b", &trusting_foreign_pem())).await;
    let reason = dial_and_monitor(&a, &b).await;
    let text = reason[2].as_str().unwrap_or_default();
    assert!(
        text.starts_with(
            "authentication failed: the peer's certificate is not trusted by this node's PEM ("
        ),
        "{text}"
    );
    let line = logs.wait_warn("refused handshake from 127.0.0.1:").await;
    let (_, text) = line.split_once("(node certd-a): ").expect("names the node");
    assert!(refused_ours(text), "{line}");
}

#[tokio::test]
async fn a_node_that_accepts_only_certificates_refuses_a_secret_and_takes_a_certificate() {
    let (logs, _guard) = Logs::capture(tracing::Level::WARN);
    let strict = start(
        tls_cfg("req-b", pem())
            .secret("shared")
            .auth_accept(["tls_sha3_512"]),
    )
    .await;
    // A node with the right secret but no certificate is refused, and both sides say why.
    let plain = start(cfg("req-a", "shared").connect_interval(Duration::from_secs(1))).await;
    let reason = dial_and_monitor(&plain, &strict).await;
    assert_eq!(
        reason,
        transport_error(
            &strict,
            "authentication failed: the peer accepts certificate authentication only (it \
             accepts tls_sha3_512), and this connection has no TLS"
        )
    );
    let line = logs.wait_warn("refused handshake from 127.0.0.1:").await;
    assert!(
        line.ends_with(
            "(node req-a): authentication failed: the peer did not start TLS, and this node \
             accepts certificate authentication only (auth_accept tls_sha3_512)"
        ),
        "{line}"
    );
    assert!(!strict.is_up(plain.id()).await);
    // A node with the certificate is taken (the default auth_accept; no secret needed).
    let tls = start(tls_cfg("req-c", pem())).await;
    tls.connect(strict.listen_addrs()[0]).unwrap();
    assert!(tls.wait_up(strict.id(), T).await);
    // And the other way round.
    let tls2 = start(tls_cfg("req-d", pem())).await;
    strict.connect(tls2.listen_addrs()[0]).unwrap();
    assert!(strict.wait_up(tls2.id(), T).await);
}

#[tokio::test]
async fn requiring_certificates_without_one_is_a_configuration_error() {
    let r = Node::configure(
        cfg("req-x", "shared")
            .auth_accept(["tls_sha3_512"])
            .build()
            .unwrap(),
    )
    .await;
    let Err(e) = r else {
        panic!("a node that requires certificates started without one")
    };
    let e = e.to_string();
    assert!(e.contains("accepts certificate authentication only"), "{e}");
}

#[tokio::test]
async fn a_flood_of_refused_handshakes_is_counted_but_logged_only_so_often() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (logs, _guard) = Logs::capture(tracing::Level::WARN);
    let b = start(cfg("flood-b", "s")).await;
    let addr = b.listen_addrs()[0];
    for _ in 0..30 {
        let mut s = within("connect", tokio::net::TcpStream::connect(addr))
            .await
            .unwrap();
        s.write_all(b"not a greeting\nnonce\n").await.unwrap();
        // The node closes the connection without a word.
        let mut rest = Vec::new();
        let _ = within("close", s.read_to_end(&mut rest)).await;
    }
    within("every refusal counted", async {
        while b.stats().handshakes_refused < 30 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let text = logs.text();
    let refused = text
        .lines()
        .filter(|l| l.contains(" WARN ") && l.contains("refused handshake from 127.0.0.1:"))
        .count();
    assert_eq!(refused, 20, "at most 20 lines a minute:\n{text}");
    assert!(
        text.lines()
            .last()
            .is_some_and(|l| l.contains("unparsable greeting")),
        "{text}"
    );
}

#[tokio::test]
async fn a_connection_from_this_node_itself_is_no_refused_peer() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (logs, _guard) = Logs::capture(tracing::Level::WARN);
    let b = start(cfg("selfie-b", "s")).await;
    let addr = b.listen_addrs()[0];
    // What a node that finds its own address among its seeds sends itself.
    let mut s = within("connect", tokio::net::TcpStream::connect(addr))
        .await
        .unwrap();
    s.write_all(b"aemp;1;selfie-b;tls_sha3_512,hmac_sha3_512;cbor,json;provider=x\nnonce\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let _ = within("close", s.read_to_end(&mut rest)).await;
    // A refused peer after it, to know the first one was handled.
    let mut s = within("connect", tokio::net::TcpStream::connect(addr))
        .await
        .unwrap();
    s.write_all(b"junk\n").await.unwrap();
    let _ = within("close", s.read_to_end(&mut rest)).await;
    logs.wait_warn("unparsable greeting").await;
    assert_eq!(b.stats().handshakes_refused, 1);
    assert!(!logs.text().contains("talk to myself"), "{}", logs.text());
}

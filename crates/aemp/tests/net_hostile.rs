//! Hostile input against a node B that also has a healthy connection to node A: after each
//! attack, A still gets a `cal` answered by B, and B still accepts a fresh connection.

mod net_common;
use aemp::{msg, Msg, Node, Value};
use aemp_proto::codec::Limits;
use net_common::*;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const SECRET: &str = "hostile-secret";
const LIMITS: Limits = Limits {
    max_depth: 8,
    max_message: 16 * 1024,
};

/// A and B, linked; B has small decoder limits and a 1 s handshake timeout.
async fn pair(tag: &str) -> (Node, Node) {
    let a = Node::configure(cfg(&format!("ha-{tag}"), SECRET).build().unwrap())
        .await
        .unwrap();
    let b = Node::configure_with_limits(
        cfg(&format!("hb-{tag}"), SECRET)
            .monitor_timeout(Duration::from_secs(1))
            .build()
            .unwrap(),
        LIMITS,
    )
    .await
    .unwrap();
    link(&a, &b).await;
    (a, b)
}

/// B survived: A's connection still works, and a new peer can connect and be served.
async fn assert_healthy(a: &Node, b: &Node, n: usize) {
    assert_cal_works(a, b).await;
    assert!(b.is_up(a.id()).await, "B lost A");
    let mut fresh = Peer::connect(
        b.listen_addrs()[0],
        &peer_hs(&format!("fresh-{n}-{}", b.id()), SECRET, &["cbor"]),
    )
    .await
    .expect("B refuses fresh connections");
    fresh.ping("after").await;
}

async fn raw_conn(b: &Node) -> TcpStream {
    within("raw connect", TcpStream::connect(b.listen_addrs()[0]))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_greeting_is_closed() {
    let (a, b) = pair("garbage").await;
    let mut s = raw_conn(&b).await;
    s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let got = read_to_close(&mut s).await;
    // B sent its own greeting (it does not wait for ours) and nothing beyond two lines.
    assert_eq!(got.iter().filter(|&&c| c == b'\n').count(), 2, "{got:?}");
    assert!(got.starts_with(b"aemp;1;"));
    assert_healthy(&a, &b, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlong_line_is_closed() {
    let (a, b) = pair("long").await;
    let mut s = raw_conn(&b).await;
    let _ = s.write_all(&vec![b'a'; 5000]).await;
    let got = read_to_close(&mut s).await;
    assert!(got.starts_with(b"aemp;1;"));
    assert_eq!(got.iter().filter(|&&c| c == b'\n').count(), 2);
    assert_healthy(&a, &b, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_half_greeting_times_out() {
    let (a, b) = pair("slow").await;
    let mut s = raw_conn(&b).await;
    s.write_all(b"aemp;1;slowpoke;hmac_sha3_512;cb")
        .await
        .unwrap();
    // B's monitor_timeout is 1 s; the connection must end without our help.
    let got = read_to_close(&mut s).await;
    assert_eq!(got.iter().filter(|&&c| c == b'\n').count(), 2);
    assert_healthy(&a, &b, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_frame_then_eof() {
    let (a, b) = pair("trunc").await;
    for (i, framing) in ["cbor", "json"].into_iter().enumerate() {
        let mut p = Peer::connect(
            b.listen_addrs()[0],
            &peer_hs(&format!("trunc-{framing}"), SECRET, &[framing]),
        )
        .await
        .unwrap();
        p.ping("first").await;
        let mut full = Vec::new();
        aemp_proto::codec::encode_frame(p.send, "", &msg!["devnull", "x".repeat(100)].0, &mut full);
        p.raw(&full[..full.len() / 2]).await;
        let _ = p.stream.shutdown().await;
        p.expect_closed().await;
        assert_healthy(&a, &b, i).await;
    }
}

/// Sends `bytes` after a correct handshake in `framing`; B must close the connection and
/// count a protocol error.
async fn closes_on(a: &Node, b: &Node, name: &str, framing: &str, bytes: &[u8], n: usize) {
    let errors = b
        .counters()
        .unwrap()
        .protocol_errors
        .load(Ordering::Relaxed);
    let mut p = Peer::connect(
        b.listen_addrs()[0],
        &peer_hs(&format!("{name}-{framing}"), SECRET, &[framing]),
    )
    .await
    .unwrap();
    assert_eq!(p.send.name(), framing);
    p.ping("first").await;
    p.raw(bytes).await;
    p.expect_closed().await;
    let after = b
        .counters()
        .unwrap()
        .protocol_errors
        .load(Ordering::Relaxed);
    assert!(
        after > errors,
        "{name}/{framing}: no protocol error counted"
    );
    assert_healthy(a, b, n).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_array_frames_are_refused() {
    let (a, b) = pair("nonarray").await;
    closes_on(&a, &b, "nonarray", "json", br#""x""#, 1).await;
    closes_on(&a, &b, "nonarray", "cbor", &[0x05], 2).await;
    // A map is not an array either.
    closes_on(&a, &b, "nonarray-map", "json", br#"{"a":1}"#, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_json_is_refused() {
    let (a, b) = pair("utf8").await;
    closes_on(
        &a,
        &b,
        "utf8",
        "json",
        b"[\"\",\"devnull\",\"\xff\xfe\"]",
        1,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_deep_nesting_is_refused() {
    let (a, b) = pair("deep").await;
    let depth = LIMITS.max_depth + 4;
    let json = format!(
        "[\"\",\"devnull\",{}1{}]",
        "[".repeat(depth),
        "]".repeat(depth)
    );
    closes_on(&a, &b, "deep", "json", json.as_bytes(), 1).await;
    // CBOR: 0x81 = array of one element.
    let mut cbor = vec![0x83, 0x60, 0x67];
    cbor.extend_from_slice(b"devnull");
    cbor.extend(std::iter::repeat_n(0x81, depth));
    cbor.push(0x01);
    closes_on(&a, &b, "deep", "cbor", &cbor, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_message_is_refused() {
    let (a, b) = pair("big").await;
    let big = "z".repeat(LIMITS.max_message + 1000);
    for (i, framing) in ["json", "cbor"].into_iter().enumerate() {
        let f = aemp_proto::codec::Framing::from_name(framing).unwrap();
        let mut bytes = Vec::new();
        aemp_proto::codec::encode_frame(f, "", &msg!["devnull", big.as_str()].0, &mut bytes);
        closes_on(&a, &b, "big", framing, &bytes, i).await;
    }
    // A CBOR string that only *declares* a huge length is refused before it arrives.
    let mut declared = vec![0x82, 0x60, 0x7a];
    declared.extend_from_slice(&0x4000_0000u32.to_be_bytes());
    closes_on(&a, &b, "declared", "cbor", &declared, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_port_is_dropped_silently() {
    let (a, b) = pair("noport").await;
    let mut p = Peer::connect(
        b.listen_addrs()[0],
        &peer_hs("noport-peer", SECRET, &["cbor"]),
    )
    .await
    .unwrap();
    p.send("doesnotexist", msg!["hello", 1]).await;
    // The connection stays up and the next request is served.
    p.ping("after").await;
    assert!(b.is_up(&aemp::NodeId::new("noport-peer").unwrap()).await);
    assert_healthy(&a, &b, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kil1_of_the_node_port_is_refused() {
    let (a, b) = pair("kilnp").await;
    let mut p = Peer::connect(
        b.listen_addrs()[0],
        &peer_hs("kilnp-peer", SECRET, &["json"]),
    )
    .await
    .unwrap();
    p.send("", msg!["kil1", ""]).await;
    p.send("", msg!["kil1", "", "die", "please"]).await;
    p.send("", msg!["kil1"]).await;
    // The node port still answers, this peer and everybody else.
    p.ping("t1").await;
    assert_healthy(&a, &b, 1).await;
    let live = b.port_with(|_, _| Ok(()));
    assert!(b.port_exists(&live).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mistyped_node_requests_are_refused_one_by_one() {
    let (a, b) = pair("types").await;
    let mut p = Peer::connect(
        b.listen_addrs()[0],
        &peer_hs("types-peer", SECRET, &["cbor"]),
    )
    .await
    .unwrap();
    let reply = format!("{}#r", p.id);
    // A target port on B that records what reaches it (the `snd` relay).
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Msg>();
    let target = b.port_with(move |_, m| {
        let _ = tx.send(m);
        Ok(())
    });
    let bad: Vec<Msg> = vec![
        msg!["time"],
        msg!["time", 5],
        msg!["time", Value::List(vec![])],
        msg!["time", "no-hash-mark"],
        msg!["can", "time"],
        msg!["can", Value::Map(vec![]), reply.as_str()],
        msg!["mon1", Value::List(vec![1.into()])],
        msg!["mon0"],
        msg!["kil0", Value::Null],
        msg!["snd"],
        msg!["snd", Value::Map(vec![])],
        msg![7, "x"],
        msg![Value::List(vec![]), "x"],
        msg!["eval", "1", 3],
        msg!["AnyEvent::MP::_spawn"],
        msg!["AnyEvent::MP::_spawn", "", "x"],
        msg!["AnyEvent::MP::_spawn", "pn", Value::Map(vec![])],
    ];
    for (i, m) in bad.into_iter().enumerate() {
        p.send("", m).await;
        // Refused on its own: the next good requests are still served.
        p.ping(&format!("ok{i}")).await;
        p.send("", msg!["snd", target.as_str(), "relayed", i as i64])
            .await;
        let got = within("relayed message", rx.recv()).await.unwrap();
        assert_eq!(got, msg!["relayed", i as i64]);
    }
    assert_healthy(&a, &b, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_connection_with_a_connected_node_id_is_refused() {
    let (a, b) = pair("dup").await;
    let mut ev = b.node_events();
    // Someone with the secret claims to be A while A is connected: refused before auth,
    // and A's connection is left alone (no switch, no spurious transport_error).
    let fired = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let on_a = a.port_with(|_, _| Ok(()));
    let f = fired.clone();
    b.mon_cb(&on_a, move |_| {
        f.fetch_add(1, Ordering::SeqCst);
    })
    .keep();
    assert_cal_works(&b, &a).await;
    let r = Peer::connect(
        b.listen_addrs()[0],
        &peer_hs(a.id().as_str(), SECRET, &["cbor"]),
    )
    .await;
    assert!(r.is_err(), "duplicate connection was accepted");
    assert_healthy(&a, &b, 1).await;
    assert_cal_works(&b, &a).await;
    // (The fresh peer of assert_healthy comes and goes; only A's events matter.)
    let about_a: Vec<_> = drain_events(&mut ev)
        .into_iter()
        .filter(
            |e| matches!(e, aemp::NodeEvent::Up(n) | aemp::NodeEvent::Down(n, _) if n == a.id()),
        )
        .collect();
    assert!(about_a.is_empty(), "{about_a:?}");
    assert_eq!(fired.load(Ordering::SeqCst), 0);
}

/// Good frames that arrive in the same read as a bad one are delivered before the
/// connection is closed: nothing accepted is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_before_a_bad_one_are_delivered() {
    let (a, b) = pair("goodbad").await;
    for (n, framing) in [(1, "json"), (2, "cbor")] {
        let mut inbox = b.inbox(100);
        let name = inbox.port().name().to_string();
        let mut p = Peer::connect(
            b.listen_addrs()[0],
            &peer_hs(&format!("goodbad-{framing}"), SECRET, &[framing]),
        )
        .await
        .unwrap();
        let mut bytes = Vec::new();
        for i in 0..3 {
            aemp_proto::codec::encode_frame(p.send, &name, msg!["good", i].as_slice(), &mut bytes);
        }
        aemp_proto::codec::encode_value(p.send, &Value::from("not a frame"), &mut bytes);
        p.raw(&bytes).await;
        p.expect_closed().await;
        for i in 0..3 {
            let m = within("good frame", inbox.recv()).await.unwrap();
            assert_eq!(m, msg!["good", i], "{framing}");
        }
        assert_healthy(&a, &b, n).await;
    }
}

//! Data connections (`AnyEvent::MP::DataConn`) between real nodes on 127.0.0.1: both
//! directions of who listens, TLS, failures (authentication, unknown init function, timeout,
//! the cap) that kill the initiating port with `("AnyEvent::MP::DataConn", <message>)` and
//! call nothing on the other node, peers that never authenticate, the wire form against a
//! scripted peer, and 1 GiB moved and checked.

mod net_common;
use aemp::{
    msg, Config, DataConn, DataConnError, DataConnLimits, Monitor, Node, NodeId, Reason, Value,
};
use aemp_proto::dataconn::{EXPECT, ID_KEY, KILL_TAG, PROTOCOL};
use net_common::{link, peer_hs, pem, within, Peer, T};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const SECRET: &str = "s3cret";

/// What an init function saw: its data and its stream.
type Arrivals = mpsc::UnboundedSender<(Vec<Value>, DataConn)>;

/// A node on 127.0.0.1 with an init function `t::sink` that hands what it gets to the
/// returned channel.
async fn node_with_sink(
    name: &str,
    b: aemp::config::ConfigBuilder,
    limits: DataConnLimits,
) -> (Node, mpsc::UnboundedReceiver<(Vec<Value>, DataConn)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let tx: Arrivals = tx;
    let node = Node::builder(b.nodeid(name).build().expect("config"))
        .data_conn_limits(limits)
        .data_init("t::sink", move |conn, args| {
            let _ = tx.send((args, conn));
        })
        .configure()
        .await
        .expect("configure");
    (node, rx)
}

fn base(secret: &str) -> aemp::config::ConfigBuilder {
    Config::builder()
        .norc(true)
        .binds(["127.0.0.1:0"])
        .secret(secret)
        .connect_interval(Duration::from_secs(3))
}

async fn pair(tag: &str) -> (Node, Node, mpsc::UnboundedReceiver<(Vec<Value>, DataConn)>) {
    let (a, _) = node_with_sink(&format!("{tag}-a"), base(SECRET), DataConnLimits::default()).await;
    let (b, rx) =
        node_with_sink(&format!("{tag}-b"), base(SECRET), DataConnLimits::default()).await;
    link(&a, &b).await;
    (a, b, rx)
}

/// Writes `msg` into `conn`, reads it back from `other`, and the other way round.
async fn round_trip(conn: &mut DataConn, other: &mut DataConn) {
    conn.write_all(b"ping from the initiator").await.unwrap();
    let mut got = [0u8; 23];
    within("target reads", other.read_exact(&mut got))
        .await
        .unwrap();
    assert_eq!(&got, b"ping from the initiator");
    other.write_all(b"pong").await.unwrap();
    let mut got = [0u8; 4];
    within("initiator reads", conn.read_exact(&mut got))
        .await
        .unwrap();
    assert_eq!(&got, b"pong");
}

/// Opens a data connection from a fresh port `P` of `a` (in its handler, through
/// `Cx::data_conn`); returns the result and, on failure, the reason `P` was killed with.
async fn open_from_port(
    a: &Node,
    target: &NodeId,
    init: &str,
    timeout: Duration,
) -> (Result<DataConn, DataConnError>, Option<Reason>) {
    let (res_tx, res_rx) = tokio::sync::oneshot::channel();
    let res_tx = Mutex::new(Some(res_tx));
    let (target, init) = (target.clone(), init.to_owned());
    let p = a
        .port()
        .on("go", move |cx, _m| {
            let open = cx
                .data_conn(&target, &init)
                .arg("one")
                .arg(2)
                .timeout(timeout)
                .start();
            let tx = res_tx.lock().take();
            tokio::spawn(async move {
                let r = open.await;
                if let Some(tx) = tx {
                    let _ = tx.send(r);
                }
            });
            Ok(())
        })
        .build();
    let (died_tx, mut died_rx) = mpsc::unbounded_channel();
    let _guard = a.mon(&p, Monitor::callback(move |r| drop(died_tx.send(r))));
    a.snd(&p, msg!["go"]).unwrap();
    let r = within("data connection result", res_rx).await.unwrap();
    let died = match &r {
        Ok(_) => None,
        Err(_) => Some(within("port killed", died_rx.recv()).await.unwrap()),
    };
    (r, died)
}

fn kill_reason(text: &str) -> Reason {
    Reason::from(vec![Value::from(KILL_TAG), Value::from(text)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_listens_initiator_dials() {
    let (a, b, mut arrivals) = pair("dc-dial").await;
    let (r, _) = open_from_port(&a, b.id(), "t::sink", T).await;
    let mut conn = r.expect("data connection");
    let (args, mut other) = within("init function", arrivals.recv()).await.unwrap();
    assert_eq!(args, vec![Value::from("one"), Value::from(2)]);
    assert_eq!(conn.peer(), b.id());
    assert_eq!(other.peer(), a.id());
    assert_eq!(conn.id(), other.id());
    assert!(
        conn.id().ends_with(&format!("@{}", a.id())),
        "{}",
        conn.id()
    );
    assert!(!conn.is_tls());
    round_trip(&mut conn, &mut other).await;
    // Closing one end is EOF at the other.
    drop(conn);
    let mut rest = Vec::new();
    within("EOF", other.read_to_end(&mut rest)).await.unwrap();
    assert!(rest.is_empty());

    // The same from the node handle (its own port), in the other direction.
    b.register_data_init("t::back", |mut conn: DataConn, args| {
        tokio::spawn(async move {
            let n = args[0].as_u64().unwrap_or(0) as usize;
            let _ = conn.write_all(&vec![b'x'; n]).await;
        });
    });
    let (a2, _) = (a.clone(), ());
    a2.register_data_init("t::back", |mut conn: DataConn, args| {
        tokio::spawn(async move {
            let n = args[0].as_u64().unwrap_or(0) as usize;
            let _ = conn.write_all(&vec![b'y'; n]).await;
        });
    });
    let mut conn = within("b opens to a", b.data_conn(a.id(), "t::back").arg(100_000))
        .await
        .expect("data connection from b");
    let mut got = Vec::new();
    within("100 kB", conn.read_to_end(&mut got)).await.unwrap();
    assert_eq!(got, vec![b'y'; 100_000]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_initiator_listens_so_the_target_dials_back() {
    // `a` listens; `b` has no listener and joins the network through `a` (its seed).
    let (a, _) = node_with_sink("dc-back-a", base(SECRET), DataConnLimits::default()).await;
    let seed = a.listen_addrs()[0].to_string();
    let b_cfg = base(SECRET)
        .binds(Vec::<String>::new())
        .seeds([seed.as_str()]);
    let (b, mut arrivals) = node_with_sink("dc-back-b", b_cfg, DataConnLimits::default()).await;
    assert!(b.listen_addrs().is_empty());
    assert!(a.wait_up(b.id(), T).await, "b did not reach its seed");
    let (r, _) = open_from_port(&a, b.id(), "t::sink", T).await;
    let mut conn = r.expect("data connection by dial-back");
    let (args, mut other) = within("init function on b", arrivals.recv()).await.unwrap();
    assert_eq!(args, vec![Value::from("one"), Value::from(2)]);
    round_trip(&mut conn, &mut other).await;

    // And `b` (no listener) to `a` (listens): b dials.
    let (tx, mut rx) = mpsc::unbounded_channel();
    a.register_data_init("t::on-a", move |conn, args| drop(tx.send((args, conn))));
    let mut conn = within("b opens to a", b.data_conn(a.id(), "t::on-a"))
        .await
        .expect("data connection from the node without listener");
    let (args, mut other) = within("init on a", rx.recv()).await.unwrap();
    assert!(args.is_empty());
    round_trip(&mut conn, &mut other).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_nodes_get_a_tls_stream() {
    let tls = |name: &str| {
        Config::builder()
            .norc(true)
            .nodeid(name)
            .binds(["127.0.0.1:0"])
            .cert(pem())
            .connect_interval(Duration::from_secs(3))
    };
    let (a, _) = node_with_sink("dc-tls-a", tls("dc-tls-a"), DataConnLimits::default()).await;
    let (b, mut arrivals) =
        node_with_sink("dc-tls-b", tls("dc-tls-b"), DataConnLimits::default()).await;
    link(&a, &b).await;
    let mut conn = within("TLS data connection", a.data_conn(b.id(), "t::sink"))
        .await
        .expect("data connection");
    let (_, mut other) = within("init function", arrivals.recv()).await.unwrap();
    assert!(conn.is_tls() && other.is_tls());
    round_trip(&mut conn, &mut other).await;
    // A larger transfer through TLS, checked.
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let sent = data.clone();
    let writer = tokio::spawn(async move {
        conn.write_all(&sent).await.unwrap();
        conn.shutdown().await.unwrap();
    });
    let mut got = Vec::new();
    within("3 MB over TLS", other.read_to_end(&mut got))
        .await
        .unwrap();
    writer.await.unwrap();
    assert!(got == data, "data corrupted over TLS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_to_the_node_itself_is_a_local_pair() {
    let (a, mut arrivals) =
        node_with_sink("dc-self", base(SECRET), DataConnLimits::default()).await;
    let mut conn = within("local", a.data_conn(a.id(), "t::sink").arg(1))
        .await
        .unwrap();
    let (args, mut other) = arrivals.recv().await.unwrap();
    assert_eq!(args, vec![Value::from(1)]);
    round_trip(&mut conn, &mut other).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_init_function_kills_the_port_and_calls_nothing() {
    let (a, b, mut arrivals) = pair("dc-unknown").await;
    let (r, died) = open_from_port(&a, b.id(), "t::nothing", T).await;
    let text = format!("{}: unable to resolve function 't::nothing'", b.id());
    assert_eq!(r.unwrap_err(), DataConnError::Refused(text.clone()));
    assert_eq!(died, Some(kill_reason(&text)));
    assert!(arrivals.try_recv().is_err(), "nothing ran on b");
    // `?` turns it into an aemp::Error.
    let e: aemp::Error = a
        .data_conn(b.id(), "t::nothing")
        .await
        .map_err(aemp::Error::from)
        .unwrap_err();
    assert!(e.to_string().contains("unable to resolve function"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_kills_the_port_and_calls_nothing() {
    let (a, _) = node_with_sink("dc-sec-a", base(SECRET), DataConnLimits::default()).await;
    let (b, mut arrivals) =
        node_with_sink("dc-sec-b", base("other"), DataConnLimits::default()).await;
    a.add_address(b.id(), b.listen_addrs()).unwrap();
    let (r, died) = open_from_port(&a, b.id(), "t::sink", T).await;
    let err = r.unwrap_err();
    assert!(
        matches!(&err, DataConnError::Unreachable(m) if m.contains("shared secret mismatch")),
        "{err:?}"
    );
    assert_eq!(died, Some(kill_reason(&err.message())));
    assert!(arrivals.try_recv().is_err(), "nothing ran on b");
}

/// A scripted peer `fake` that `a` dialled: its node connection, and its listener (where the
/// data connection's dial arrives, `fake` being known at that address).
async fn scripted_target(a: &Node) -> (Peer, TcpListener) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    a.connect(listener.local_addr().unwrap()).unwrap();
    let (stream, _) = within("a dials", listener.accept()).await.unwrap();
    let peer = Peer::handshake(stream, &peer_hs("fake", SECRET, &["json"]))
        .await
        .expect("node connection");
    (peer, listener)
}

/// The `_expect` and echo requests `a` sends: checks their wire form, returns the id and the
/// echo port's name.
async fn expect_requests(peer: &mut Peer, a: &Node, port_of_p: &str) -> (String, String) {
    let (port, m) = peer.recv_non_global().await.expect("_expect");
    assert_eq!(port, "");
    assert_eq!(m[0].as_str(), Some(EXPECT), "{m}");
    let id = m[1].as_str().unwrap().to_owned();
    assert!(id.ends_with(&format!("@{}", a.id())) && id.len() > a.id().as_str().len() + 1);
    if !port_of_p.is_empty() {
        assert_eq!(m[2].as_str(), Some(port_of_p));
    }
    assert_eq!(
        &m.as_slice()[4..],
        &[Value::from("t::sink"), "one".into(), 2.into()]
    );
    let (port, m) = peer.recv_non_global().await.expect("echo request");
    assert_eq!(port, "");
    assert_eq!(m[0].as_str(), Some("snd"), "{m}");
    assert_eq!(m.len(), 2, "an empty message to relay: {m}");
    let echo = m[1].as_str().unwrap();
    let (node, name) = echo.split_once('#').unwrap();
    assert_eq!(node, a.id().as_str());
    (id, name.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wire_form_and_an_authentication_failure_on_the_data_connection() {
    let (a, _) = node_with_sink("dc-wire-a", base(SECRET), DataConnLimits::default()).await;
    let (mut peer, listener) = scripted_target(&a).await;
    let fake = NodeId::new("fake").unwrap();
    let opening = tokio::spawn({
        let a = a.clone();
        async move { open_from_port(&a, &fake, "t::sink", T).await }
    });
    let (id, echo) = expect_requests(&mut peer, &a, "").await;
    // The echo: an empty message for the echo port.
    peer.send(&echo, msg![]).await;
    // `a` dials our listener for the data connection, greeting with the sub-protocol.
    let (mut s, _) = within("data connection dial", listener.accept())
        .await
        .unwrap();
    let mut line = Vec::new();
    while !line.ends_with(b"\n") {
        let mut b = [0u8; 1];
        within("greeting", s.read_exact(&mut b)).await.unwrap();
        line.push(b[0]);
    }
    let greeting = String::from_utf8(line.clone()).unwrap();
    let g = aemp_proto::handshake::Greeting::parse(greeting.trim_end()).unwrap();
    assert_eq!(g.protocol, PROTOCOL);
    assert_eq!(g.node_id, a.id().as_str());
    assert_eq!(g.dataconn_id(), Some(id.as_str()));
    assert_eq!(g.mproto(), None, "no mproto/gproto for sub-protocols");
    // Answer with another secret: `a` sees the mismatch.
    let mut hs = peer_hs("fake", "wrong", &["json"]);
    hs.protocol = "aemp".into();
    let mut prefixed = PrefixedStream::new(line, s);
    let r = prefixed.handshake(&hs).await;
    assert!(r.is_err());
    let (r, died) = within("result", opening).await.unwrap();
    drop(prefixed);
    let err = r.unwrap_err();
    assert_eq!(
        err,
        DataConnError::Handshake("fake: authentication failed: shared secret mismatch".into())
    );
    assert_eq!(died, Some(kill_reason(&err.message())));
}

/// A socket whose first bytes were read already (to look at the greeting), for
/// [`Peer::handshake`].
struct PrefixedStream {
    line: Vec<u8>,
    s: TcpStream,
}

impl PrefixedStream {
    fn new(line: Vec<u8>, s: TcpStream) -> Self {
        PrefixedStream { line, s }
    }

    /// Runs our side of the handshake (feeding the greeting read already first). Takes
    /// `&mut self`: the socket stays open after a failure until the caller drops it, so that
    /// the other side reads our auth line before it sees the connection end (closing with
    /// its auth line unread could reset the connection and hide the cause).
    async fn handshake(
        &mut self,
        hs: &aemp_proto::handshake::HandshakeConfig,
    ) -> Result<(), String> {
        use aemp_proto::handshake::{new_nonce, Event, Handshake};
        let mut h = Handshake::new(hs, "peer", new_nonce());
        self.s.write_all(&h.initial_bytes()).await.unwrap();
        let mut input = std::mem::take(&mut self.line);
        let mut buf = [0u8; 4096];
        let mut sent_auth = false;
        loop {
            let used = match h.feed(&input) {
                Ok(used) => used,
                Err(e) => {
                    // Like a node: when the node's nonce and auth line came in one read,
                    // our auth line was chosen but not sent before the mismatch showed;
                    // it still goes out, so that the node sees the mismatch too.
                    if let (false, Some(b)) = (sent_auth, h.own_auth_line()) {
                        self.s.write_all(b).await.unwrap();
                    }
                    return Err(e.to_string());
                }
            };
            input.drain(..used);
            while let Some(ev) = h.poll_event() {
                match ev {
                    Event::Send(b) => {
                        self.s.write_all(&b).await.unwrap();
                        sent_auth |= h.own_auth_line() == Some(b.as_slice());
                    }
                    Event::Established(_) => return Ok(()),
                    _ => {}
                }
            }
            let n = within("read", self.s.read(&mut buf)).await.unwrap();
            if n == 0 {
                return Err("EOF".into());
            }
            input.extend_from_slice(&buf[..n]);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_kills_the_port() {
    let (a, _) = node_with_sink("dc-time-a", base(SECRET), DataConnLimits::default()).await;
    let (mut peer, _listener) = scripted_target(&a).await;
    let fake = NodeId::new("fake").unwrap();
    let t0 = Instant::now();
    let opening = tokio::spawn({
        let a = a.clone();
        async move { open_from_port(&a, &fake, "t::sink", Duration::from_secs(1)).await }
    });
    // The target never echoes.
    expect_requests(&mut peer, &a, "").await;
    let (r, died) = within("result", opening).await.unwrap();
    let text = "fake: unable to establish connection within 1 seconds";
    assert_eq!(r.unwrap_err(), DataConnError::Timeout(text.into()));
    assert_eq!(died, Some(kill_reason(text)));
    assert!(t0.elapsed() >= Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cap_refuses_more_data_connections() {
    let one = DataConnLimits {
        max: 1,
        ..DataConnLimits::default()
    };
    let (a, _) = node_with_sink("dc-cap-a", base(SECRET), DataConnLimits::default()).await;
    let (b, mut arrivals) = node_with_sink("dc-cap-b", base(SECRET), one).await;
    link(&a, &b).await;
    let first = within("first", a.data_conn(b.id(), "t::sink"))
        .await
        .unwrap();
    let (_, b_end) = within("init", arrivals.recv()).await.unwrap();
    // b holds one: the next is refused there.
    let (r, died) = open_from_port(&a, b.id(), "t::sink", T).await;
    let text = format!("{}: too many data connections (at most 1)", b.id());
    assert_eq!(r.unwrap_err(), DataConnError::Refused(text.clone()));
    assert_eq!(died, Some(kill_reason(&text)));
    assert!(arrivals.try_recv().is_err());
    // Once b's end is closed, b takes one again.
    drop(b_end);
    drop(first);
    let again = within("after close", async {
        loop {
            match b.data_conn(a.id(), "t::nothing").timeout(T).await {
                // b's own count: refused by a (unknown function), so b could open one.
                Err(DataConnError::Refused(m)) if m.contains("unable to resolve") => break,
                Err(DataConnError::TooMany(_)) => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        a.data_conn(b.id(), "t::sink").await
    })
    .await;
    assert!(again.is_ok(), "{again:?}");
    // The local cap: b holds one again, so b cannot open another.
    let err = b.data_conn(a.id(), "t::sink").await.unwrap_err();
    assert!(matches!(err, DataConnError::TooMany(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_does_not_authenticate_gets_nothing() {
    let limits = DataConnLimits {
        handshake_timeout: Duration::from_secs(1),
        ..DataConnLimits::default()
    };
    let (b, mut arrivals) = node_with_sink("dc-unauth-b", base(SECRET), limits).await;
    let addr = b.listen_addrs()[0];
    // A scripted node `fake` announces a data connection (as a Perl initiator would).
    let mut peer = Peer::connect(addr, &peer_hs("fake", SECRET, &["json"]))
        .await
        .unwrap();
    let id = "b@fake";
    peer.send("", msg![EXPECT, id, "fake#p", 30, "t::sink", "x"])
        .await;
    peer.send("", msg!["snd", "fake#echo"]).await;
    loop {
        let (port, _) = peer.recv().await.expect("echo");
        if port == "echo" {
            break;
        }
    }
    let greeting = format!(
        "{PROTOCOL};1;fake;hmac_sha3_512;json;{ID_KEY}={id};provider=test\n{}\n",
        aemp_proto::handshake::new_nonce()
    );
    // 1: greets and then says nothing: closed at the handshake timeout (not the 30 s
    // monitor timeout).
    let t0 = Instant::now();
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(greeting.as_bytes()).await.unwrap();
    let got = net_common::read_to_close(&mut s).await;
    // Well before the 30 s monitor timeout, however loaded the machine.
    assert!(t0.elapsed() < Duration::from_secs(15), "{:?}", t0.elapsed());
    assert!(
        String::from_utf8_lossy(&got).starts_with("aemp;1;"),
        "only b's greeting"
    );
    // 2: a wrong auth line: closed, counted as a refused handshake.
    let refused = b.stats().handshakes_refused;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(greeting.as_bytes()).await.unwrap();
    s.write_all(format!("hmac_sha3_512;{};json\n", "0".repeat(128)).as_bytes())
        .await
        .unwrap();
    net_common::read_to_close(&mut s).await;
    // Counted by the connection task as it ends, which may be just after the close.
    let deadline = Instant::now() + T;
    while b.stats().handshakes_refused == refused {
        assert!(Instant::now() < deadline, "refused handshake not counted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(arrivals.try_recv().is_err(), "nothing ran");
    // The expectation is still there: a correct handshake gets the stream.
    let mut hs = peer_hs("fake", SECRET, &["json"]);
    hs.protocol = PROTOCOL.into();
    hs.extra_kv = vec![(ID_KEY.into(), id.into())];
    let mut good = Peer::connect(addr, &hs).await.expect("data connection");
    let (args, mut conn) = within("init function", arrivals.recv()).await.unwrap();
    assert_eq!(args, vec![Value::from("x")]);
    assert_eq!(conn.peer().as_str(), "fake");
    good.raw(b"raw bytes, no framing").await;
    let mut buf = [0u8; 21];
    within("raw read", conn.read_exact(&mut buf)).await.unwrap();
    assert_eq!(&buf, b"raw bytes, no framing");
}

/// A running checksum that depends on every byte and its position (FNV-1a over 8-byte
/// words; the data length is a multiple of 8).
fn checksum(mut h: u64, data: &[u8]) -> u64 {
    for w in data.chunks_exact(8) {
        let w = u64::from_le_bytes(w.try_into().unwrap());
        h = (h ^ w).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gibibyte_moves_intact() {
    const TOTAL: usize = 1 << 30;
    const CHUNK: usize = 1 << 20;
    let (a, b, _) = pair("dc-gib").await;
    let (sum_tx, sum_rx) = tokio::sync::oneshot::channel();
    let sum_tx = Mutex::new(Some(sum_tx));
    let received = Arc::new(AtomicUsize::new(0));
    let rcv = received.clone();
    b.register_data_init("t::gib", move |mut conn: DataConn, _args| {
        let tx = sum_tx.lock().take();
        let rcv = rcv.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; CHUNK];
            let mut h = 0xcbf2_9ce4_8422_2325u64;
            let mut have = 0; // bytes of an unfinished word at the start of buf
            loop {
                let n = conn.read(&mut buf[have..]).await.unwrap();
                if n == 0 {
                    break;
                }
                rcv.fetch_add(n, Ordering::Relaxed);
                let end = have + n;
                let whole = end / 8 * 8;
                h = checksum(h, &buf[..whole]);
                buf.copy_within(whole..end, 0);
                have = end - whole;
            }
            if let Some(tx) = tx {
                let _ = tx.send(h);
            }
        });
    });
    let mut conn = within("open", a.data_conn(b.id(), "t::gib")).await.unwrap();
    let t0 = Instant::now();
    let mut chunk: Vec<u8> = (0..CHUNK).map(|i| (i % 253) as u8).collect();
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for i in 0..TOTAL / CHUNK {
        chunk[..8].copy_from_slice(&(i as u64).to_le_bytes());
        h = checksum(h, &chunk);
        conn.write_all(&chunk).await.unwrap();
    }
    conn.shutdown().await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(120), sum_rx)
        .await
        .expect("1 GiB within 120 s")
        .unwrap();
    let dt = t0.elapsed().as_secs_f64();
    eprintln!("1 GiB in {dt:.2} s ({:.0} MiB/s)", 1024.0 / dt);
    assert_eq!(received.load(Ordering::Relaxed), TOTAL);
    assert_eq!(got, h, "checksum mismatch");
}

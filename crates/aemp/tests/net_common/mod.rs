//! Helpers shared by the network tests: nodes on 127.0.0.1 with ephemeral ports, a scripted
//! peer that speaks the wire protocol over a raw socket, and a TCP relay that can cut
//! connections.
#![allow(dead_code)]

use aemp::{msg, Config, Msg, Node, NodeEvent, Value};
use aemp_proto::codec::{self, Decoder, Framing, Limits};
use aemp_proto::handshake::{new_nonce, Event, Handshake, HandshakeConfig};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const T: Duration = Duration::from_secs(10);

/// Awaits `f`, failing the test with `what` if it takes longer than [`T`].
pub async fn within<F: std::future::IntoFuture>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(T, f.into_future()).await {
        Ok(v) => v,
        Err(_) => panic!("timed out: {what}"),
    }
}

/// A configuration builder for a test node on 127.0.0.1 with an ephemeral port.
pub fn cfg(name: &str, secret: &str) -> aemp::config::ConfigBuilder {
    Config::builder()
        .norc(true)
        .nodeid(name)
        .binds(["127.0.0.1:0"])
        .secret(secret)
        .connect_interval(Duration::from_secs(3))
}

/// A networked node `name` listening on 127.0.0.1, with the given secret and framings.
pub async fn node_with(name: &str, secret: &str, framings: &[&str]) -> Node {
    let cfg = cfg(name, secret)
        .framing_format(framings.iter().copied())
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

/// `a` gets a `time` request answered by `b`'s node port.
pub async fn assert_cal_works(a: &Node, b: &Node) {
    let r = within("time cal", a.cal(&b.node_port(), msg!["time"]))
        .await
        .unwrap_or_else(|e| panic!("{} got no time from {}: {e}", a.id(), b.id()));
    assert!(r[0].as_f64().unwrap_or(0.0) > 1.0e9, "bad time reply {r}");
}

/// Collects every node event currently buffered in `rx`.
pub fn drain_events(rx: &mut aemp::NodeEvents) -> Vec<NodeEvent> {
    let mut v = Vec::new();
    while let Some(e) = rx.try_recv() {
        v.push(e.expect("no node events missed"));
    }
    v
}

/// Reads from a raw socket until EOF (or a reset); returns everything read. Panics if the
/// peer keeps the connection open for longer than [`T`].
pub async fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    within("connection close", async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => all.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    all
}

/// A peer speaking AEMP over a raw socket, driven step by step by a test.
pub struct Peer {
    pub stream: TcpStream,
    pub id: String,
    /// The framing we send in.
    pub send: Framing,
    /// The framing the node sends in.
    pub recv: Framing,
    dec: Decoder,
}

/// Handshake settings for a scripted peer: node ID, secret, framings we accept (the node
/// picks its send framing from these; we send in the first one the node accepts).
pub fn peer_hs(id: &str, secret: &str, framings: &[&str]) -> HandshakeConfig {
    let mut hs = HandshakeConfig::new(id, Some(secret.as_bytes().to_vec()));
    hs.framings = framings.iter().map(|s| s.to_string()).collect();
    hs
}

impl Peer {
    /// Connects to `addr` and completes the handshake; `Err` with the reason if it fails.
    pub async fn connect(addr: SocketAddr, hs: &HandshakeConfig) -> Result<Peer, String> {
        let stream = within("connect", TcpStream::connect(addr))
            .await
            .map_err(|e| e.to_string())?;
        Peer::handshake(stream, hs).await
    }

    /// Runs the handshake on an established socket (either side: it is symmetric).
    pub async fn handshake(mut stream: TcpStream, hs: &HandshakeConfig) -> Result<Peer, String> {
        let peeraddr = stream.peer_addr().map_err(|e| e.to_string())?;
        let mut h = Handshake::new(hs, &peeraddr.to_string(), new_nonce());
        stream
            .write_all(&h.initial_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut input: Vec<u8> = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let used = h.feed(&input).map_err(|e| format!("handshake: {e}"))?;
            input.drain(..used);
            while let Some(ev) = h.poll_event() {
                match ev {
                    Event::Send(b) => stream.write_all(&b).await.map_err(|e| e.to_string())?,
                    Event::PeerGreeting(_) => {}
                    Event::StartTls { .. } => return Err("unexpected TLS".into()),
                    Event::Established(est) => {
                        let send = Framing::from_name(&est.send_framing).ok_or("send framing")?;
                        let recv = Framing::from_name(&est.recv_framing).ok_or("recv framing")?;
                        let mut dec = Decoder::new(recv, Limits::default());
                        dec.feed(&input);
                        return Ok(Peer {
                            stream,
                            id: hs.node_id.clone(),
                            send,
                            recv,
                            dec,
                        });
                    }
                }
            }
            let n = within("handshake read", stream.read(&mut buf))
                .await
                .map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("EOF during handshake".into());
            }
            input.extend_from_slice(&buf[..n]);
        }
    }

    /// A peer whose handshake was driven by the test itself; `leftover` are data-phase bytes
    /// already read.
    pub fn from_parts(
        stream: TcpStream,
        id: &str,
        send: Framing,
        recv: Framing,
        leftover: &[u8],
    ) -> Peer {
        let mut dec = Decoder::new(recv, Limits::default());
        dec.feed(leftover);
        Peer {
            stream,
            id: id.to_string(),
            send,
            recv,
            dec,
        }
    }

    /// Sends one frame `[port, msg…]` in our framing.
    pub async fn send(&mut self, port: &str, msg: Msg) {
        let mut out = Vec::new();
        codec::encode_frame(self.send, port, &msg.0, &mut out);
        self.raw(&out).await;
    }

    /// Sends raw bytes (write errors are ignored: the node may already have closed).
    pub async fn raw(&mut self, b: &[u8]) {
        let _ = self.stream.write_all(b).await;
        let _ = self.stream.flush().await;
    }

    /// The next frame from the node, `None` on EOF or error. Panics after [`T`].
    pub async fn recv(&mut self) -> Option<(String, Msg)> {
        let mut buf = [0u8; 8192];
        within("frame from node", async {
            loop {
                match self.dec.next_value() {
                    Ok(Some(v)) => {
                        let (port, msg) = codec::decode_frame(v).ok()?;
                        return Some((port.to_string(), msg));
                    }
                    Ok(None) => {}
                    Err(_) => return None,
                }
                match self.stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => self.dec.feed(&buf[..n]),
                }
            }
        })
        .await
    }

    /// The next frame that is not a global-protocol message or a no-op (`["", "g_…"]`).
    pub async fn recv_non_global(&mut self) -> Option<(String, Msg)> {
        loop {
            let (port, msg) = self.recv().await?;
            let skip = port.is_empty()
                && msg
                    .0
                    .first()
                    .and_then(Value::as_str)
                    .is_some_and(|t| t.starts_with("g_") || t.is_empty() || t == "devnull");
            if !skip {
                return Some((port, msg));
            }
        }
    }

    /// Asks the node for its time with reply port `<us>#<tag>`, and waits for the answer
    /// (skipping unrelated frames). Panics if the connection closes first.
    pub async fn ping(&mut self, tag: &str) {
        let reply = format!("{}#{tag}", self.id);
        self.send("", msg!["time", reply]).await;
        loop {
            match self.recv().await {
                Some((p, m)) if p == tag => {
                    assert!(m[0].as_f64().unwrap_or(0.0) > 1.0e9, "bad time reply {m}");
                    return;
                }
                Some(_) => {}
                None => panic!("connection closed while waiting for the {tag} time reply"),
            }
        }
    }

    /// Waits until the node closes the connection (frames that arrive first are skipped).
    pub async fn expect_closed(&mut self) {
        while self.recv().await.is_some() {}
    }
}

/// A TCP relay to `target` whose connections can all be cut at once (both sockets dropped);
/// it keeps accepting new connections afterwards.
pub struct Relay {
    pub addr: SocketAddr,
    conns: Arc<parking_lot::Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: tokio::task::AbortHandle,
}

impl Relay {
    pub async fn start(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let conns: Arc<parking_lot::Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let c2 = conns.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let h = tokio::spawn(async move {
                    if let Ok(mut out) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
                c2.lock().push(h.abort_handle());
            }
        })
        .abort_handle();
        Relay {
            addr,
            conns,
            accept,
        }
    }

    /// Drops every relayed connection (the nodes see EOF).
    pub fn cut(&self) {
        for h in self.conns.lock().drain(..) {
            h.abort();
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// An address on 127.0.0.1 where nothing listens (bound, then closed).
pub fn dead_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// Sorts map keys recursively, for comparisons "modulo map key order".
pub fn normalize(v: &Value) -> Value {
    match v {
        Value::List(l) => Value::List(l.iter().map(normalize).collect()),
        Value::Map(m) => {
            let mut m: Vec<_> = m.iter().map(|(k, v)| (k.clone(), normalize(v))).collect();
            m.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Map(m)
        }
        other => other.clone(),
    }
}

/// Reads from `s` until `n` LF-terminated lines are in `buf` and takes them out of it
/// (with their LF); `None` if the connection closes first.
pub async fn read_lines(s: &mut TcpStream, buf: &mut Vec<u8>, n: usize) -> Option<Vec<Vec<u8>>> {
    let mut tmp = [0u8; 4096];
    while buf.iter().filter(|&&c| c == b'\n').count() < n {
        match within("handshake lines", s.read(&mut tmp)).await {
            Ok(0) | Err(_) => return None,
            Ok(k) => buf.extend_from_slice(&tmp[..k]),
        }
    }
    let mut lines = Vec::new();
    for _ in 0..n {
        let pos = buf.iter().position(|&c| c == b'\n')?;
        lines.push(buf.drain(..=pos).collect());
    }
    Some(lines)
}

// ---------------------------------------------------------------------------------------
// Replays of captured Perl sessions (net_replay_*.rs): an aemp node plays the recorded
// seed, scripted peers play the recorded clients.

/// Where the captured Perl sessions live (see its README.md).
pub const VECTORS: &str = "/work/shared/vectors";

/// Reads a JSON file of the vectors folder (`sessions/<name>/session.json`,
/// `frames-cbor.json`, …).
pub fn load_vectors(rel: &str) -> serde_json::Value {
    let path = format!("{VECTORS}/{rel}");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The recorded messages of connection `conn` (0-based) of a `session.json`, direction
/// `"c2s"` or `"s2c"`, each as the wire array `[port, msg…]`. Asserts the recorded framing,
/// so that a replay cannot silently use the wrong one.
pub fn recorded_frames(
    session: &serde_json::Value,
    conn: usize,
    dir: &str,
    framing: &str,
) -> Vec<Value> {
    let d = &session["connections"][conn]["directions"][dir];
    assert_eq!(
        d["framing"],
        framing,
        "recorded framing of conn{} {dir}",
        conn + 1
    );
    let msgs = d["messages"].as_array().expect("recorded messages");
    assert_eq!(Some(msgs.len() as u64), d["message_count"].as_u64());
    msgs.iter()
        .map(|m| aemp::config::json_to_value(&m["decoded"]))
        .collect()
}

/// Renames recorded identifiers to the live ones: node IDs, port names and `host:port`
/// addresses. A string is renamed when it equals a recorded name, and a port ID
/// `node#port` has its node part and its port name renamed separately. Map keys are
/// renamed too (`'l` and `db_reg` families are keyed by node and port IDs).
#[derive(Default)]
pub struct Rename(Vec<(String, String)>);

impl Rename {
    pub fn new() -> Rename {
        Rename::default()
    }

    /// Adds one rule `from → to`.
    pub fn with(mut self, from: impl Into<String>, to: impl Into<String>) -> Rename {
        self.0.push((from.into(), to.into()));
        self
    }

    fn name<'a>(&'a self, s: &'a str) -> &'a str {
        self.0
            .iter()
            .find(|(from, _)| from == s)
            .map_or(s, |(_, to)| to.as_str())
    }

    fn string(&self, s: &str) -> String {
        match s.split_once('#') {
            Some((node, port)) => format!("{}#{}", self.name(node), self.name(port)),
            None => self.name(s).to_string(),
        }
    }

    /// Applies the rules to every string and map key of `v`.
    pub fn apply(&self, v: &Value) -> Value {
        match v {
            Value::Str(s) => Value::from(self.string(s)),
            Value::List(l) => Value::List(l.iter().map(|x| self.apply(x)).collect()),
            Value::Map(m) => Value::Map(
                m.iter()
                    .map(|(k, x)| (self.string(k).into(), self.apply(x)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
}

/// A recorded frame made comparable with a live one: map keys sorted (Perl's hash order is
/// random) and, in `g_chg2`/`g_upd`, the delete list sorted as well (also hash order in
/// Perl). The live side is only key-sorted ([`normalize`]): our database lists keys in
/// sorted order by design (`aemp_proto::db` module docs, "Data layout"), so comparing it
/// with a sorted recording also checks that documented order.
pub fn canonical_recorded(frame: &Value) -> Value {
    let mut v = normalize(frame);
    if let Value::List(l) = &mut v {
        let tag = l.get(1).and_then(Value::as_str).unwrap_or_default();
        if l.first().and_then(Value::as_str) == Some("") && matches!(tag, "g_chg2" | "g_upd") {
            if let Some(Value::List(del)) = l.get_mut(4) {
                del.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
            }
        }
    }
    v
}

/// A global node on 127.0.0.1 that lists its own listen address among its seeds, like
/// `aemp-seed.pl` of the captures; returns once it serves as its own master (its `'g`
/// family names itself), so that a peer connecting afterwards sees a global node.
pub async fn global_seed(name: &str, secret: &str, framings: &[&str]) -> Node {
    // The seed address must be known before configure: take a free port (the tiny window
    // until the node binds it again is accepted, as in tests/global_db.rs).
    let addr = dead_addr().to_string();
    let cfg = cfg(name, secret)
        .binds([addr.as_str()])
        .seeds([addr.as_str()])
        .framing_format(framings.iter().copied())
        .build()
        .expect("config");
    let node = Node::configure(cfg).await.expect("configure");
    // A query waits for a master; a node that found itself among its seeds is its own.
    let globals = within("the seed's 'g family", node.db_family("'g"))
        .await
        .expect("db_family");
    assert!(
        globals.contains_key(node.id().as_str()),
        "seed is not global: 'g = {globals:?}"
    );
    node
}

/// The `host:port` string a node advertises in `'l` for its first listen address.
pub fn advertised(node: &Node) -> String {
    node.listen_addrs()[0].to_string()
}

impl Peer {
    /// Sends one wire array `[port, msg…]` (as recorded) in our framing.
    pub async fn send_frame(&mut self, frame: &Value) {
        let Some([port, rest @ ..]) = frame.as_list() else {
            panic!("not a frame: {frame:?}")
        };
        let port = port.as_str().expect("frame port").to_string();
        self.send(&port, Msg::from(rest.to_vec())).await;
    }

    /// The next frame from the node as the wire array `[port, msg…]`; panics on EOF.
    pub async fn recv_frame(&mut self) -> Value {
        let (port, msg) = self.recv().await.expect("connection closed by the node");
        let mut l = vec![Value::from(port)];
        l.extend(msg.0);
        Value::List(l)
    }

    /// Receives `want.len()` frames and compares them, in order, with the recorded (and
    /// renamed) ones: live frames modulo map key order, recorded ones via
    /// [`canonical_recorded`].
    pub async fn expect_frames(&mut self, what: &str, want: &[Value]) {
        for (i, w) in want.iter().enumerate() {
            let got = self.recv_frame().await;
            assert_eq!(
                normalize(&got),
                canonical_recorded(w),
                "{what}: frame {i} differs from the Perl seed's"
            );
        }
    }

    /// Asserts that the node sent nothing more: a `time` request sent now must be answered
    /// by the very next frame (the node port handles requests of one connection in order).
    pub async fn expect_nothing_more(&mut self, tag: &str) {
        let reply = format!("{}#{tag}", self.id);
        self.send("", msg!["time", reply]).await;
        let got = self.recv_frame().await;
        let Some([port, t]) = got.as_list() else {
            panic!("{}: unexpected frame {got:?}", self.id)
        };
        assert_eq!(
            port.as_str(),
            Some(tag),
            "{}: unexpected frame {got:?}",
            self.id
        );
        assert!(t.as_f64().unwrap_or(0.0) > 1.0e9, "bad time reply {got:?}");
    }
}

/// The echo port of the reference setup (`aemp-seed.pl --echo-family`): answers
/// `["ping", reply-port, data…]` with `["pong", data…]` sent to `reply-port`, and ignores
/// everything else.
pub fn echo_port(node: &Node) -> aemp::PortId {
    node.port_with(|cx, m| {
        if m.tag() != Some("ping") {
            return Ok(());
        }
        let reply: aemp::PortId = m
            .get(1)
            .and_then(Value::as_str)
            .ok_or("ping needs a reply port")?
            .parse()?;
        let mut pong = msg!["pong"];
        pong.0.extend(m.0.iter().skip(2).cloned());
        cx.snd(&reply, pong);
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------
// Networks formed through seeds (global_mesh.rs, global_process.rs).

/// A node on 127.0.0.1 (ephemeral port) with the given seeds. `monitor_timeout` is lowered to
/// 3 s so that the seed back-off (capped by it) stays short when a seed comes back.
pub async fn seeded(name: &str, secret: &str, seeds: &[String]) -> Node {
    let cfg = cfg(name, secret)
        .seeds(seeds.iter().map(String::as_str))
        .monitor_timeout(Duration::from_secs(3))
        .build()
        .expect("config");
    Node::configure(cfg).await.expect("configure")
}

/// A node listening on `addr` with the given seeds (which include `addr` for a global seed).
/// Binding is retried for a while: `addr` may still be held by a listener that is going away.
pub async fn node_at(name: &str, secret: &str, addr: &str, seeds: &[String]) -> Node {
    within("binding the seed address", async {
        loop {
            let cfg = cfg(name, secret)
                .binds([addr])
                .seeds(seeds.iter().map(String::as_str))
                .monitor_timeout(Duration::from_secs(3))
                .build()
                .expect("config");
            match Node::configure(cfg).await {
                Ok(n) => return n,
                Err(e) => {
                    tracing::debug!(error = %e, "configure failed, retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    })
    .await
}

/// `n` free addresses on 127.0.0.1 (bound, then closed: see [`global_seed`] for the window).
pub fn free_addrs(n: usize) -> Vec<String> {
    let ls: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    ls.iter()
        .map(|l| l.local_addr().unwrap().to_string())
        .collect()
}

/// Two global seeds, each listing both addresses as its seeds (so each finds itself among
/// them and becomes global, and they connect to each other); returns once the `'g` family
/// of each names both.
pub async fn global_pair(n1: &str, n2: &str, secret: &str) -> (Node, Node, Vec<String>) {
    let addrs = free_addrs(2);
    let g1 = node_at(n1, secret, &addrs[0], &addrs).await;
    let g2 = node_at(n2, secret, &addrs[1], &addrs).await;
    let both = [g1.id().to_string(), g2.id().to_string()];
    for g in [&g1, &g2] {
        wait_family(g, "'g", |f| both.iter().all(|n| f.contains_key(n.as_str()))).await;
    }
    (g1, g2, addrs)
}

/// Polls `db_family(family)` on `node` until `pred` holds; returns that contents. Panics
/// after [`T`] with the last contents seen.
pub async fn wait_family(
    node: &Node,
    family: &str,
    pred: impl Fn(&aemp::DbMap) -> bool,
) -> aemp::DbMap {
    let last = parking_lot::Mutex::new(None);
    let r = tokio::time::timeout(T, async {
        loop {
            let f = node.db_family(family).await.expect("db_family");
            if pred(&f) {
                return f;
            }
            *last.lock() = Some(f);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    match r {
        Ok(f) => f,
        Err(_) => panic!(
            "{}: family {family} never matched; last seen {:?}",
            node.id(),
            last.lock()
        ),
    }
}

/// The keys of a family map (a `DbMap` or a `FamilySnapshot`), sorted (both are ordered).
pub fn keys_of<'a>(m: impl IntoIterator<Item = (&'a aemp::Str, &'a Value)>) -> Vec<String> {
    m.into_iter().map(|(k, _)| k.to_string()).collect()
}

/// Receives `db_mon` changes until the contents satisfy `pred`; returns every change seen
/// (the last one satisfies `pred`). Panics after [`T`] with the changes seen so far.
pub async fn watch_until(
    w: &mut aemp::DbWatch,
    what: &str,
    pred: impl Fn(&aemp::FamilySnapshot) -> bool,
) -> Vec<aemp::DbChange> {
    let seen = parking_lot::Mutex::new(Vec::new());
    let r = tokio::time::timeout(T, async {
        loop {
            let c = w.next().await.expect("db_mon ended");
            let done = pred(&c.contents);
            seen.lock().push(c);
            if done {
                return;
            }
        }
    })
    .await;
    let seen = seen.into_inner();
    if r.is_err() {
        panic!("timed out: {what}; changes seen: {seen:#?}");
    }
    seen
}

/// A map of string keys to values, for comparisons with a family's contents.
pub fn family_of(entries: &[(&str, Value)]) -> aemp::DbMap {
    entries
        .iter()
        .map(|(k, v)| (aemp::Str::from(*k), v.clone()))
        .collect()
}

/// A TCP relay like [`Relay`] whose target can be changed: new connections go to the current
/// target (a node restarted elsewhere stays reachable at the relay's address).
pub struct SwitchRelay {
    pub addr: SocketAddr,
    target: Arc<parking_lot::Mutex<SocketAddr>>,
    conns: Arc<parking_lot::Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: tokio::task::AbortHandle,
}

impl SwitchRelay {
    pub async fn start(target: SocketAddr) -> SwitchRelay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let target = Arc::new(parking_lot::Mutex::new(target));
        let conns: Arc<parking_lot::Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let (t2, c2) = (target.clone(), conns.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let to = *t2.lock();
                let h = tokio::spawn(async move {
                    if let Ok(mut out) = TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
                c2.lock().push(h.abort_handle());
            }
        })
        .abort_handle();
        SwitchRelay {
            addr,
            target,
            conns,
            accept,
        }
    }

    /// Sends later connections to `to`.
    pub fn retarget(&self, to: SocketAddr) {
        *self.target.lock() = to;
    }

    /// Drops every relayed connection.
    pub fn cut(&self) {
        for h in self.conns.lock().drain(..) {
            h.abort();
        }
    }
}

impl Drop for SwitchRelay {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// A child process running one `#[ignore]`d test of this test binary as a peer; killed when
/// dropped, however the test ends.
pub struct ChildTest(pub std::process::Child);

impl Drop for ChildTest {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Re-executes this test binary to run the ignored test `name` with `env`, and waits for its
/// `READY <rest>` line on stdout; returns the child and `<rest>`.
pub async fn spawn_child_test(name: &str, env: &[(&str, &str)]) -> (ChildTest, String) {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", name, "--nocapture", "--ignored"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = ChildTest(cmd.spawn().unwrap());
    let stdout = child.0.stdout.take().unwrap();
    let ready = within(
        "child READY line",
        tokio::task::spawn_blocking(move || {
            for line in BufReader::new(stdout).lines() {
                let line = line.ok()?;
                if let Some(rest) = line.strip_prefix("READY ") {
                    return Some(rest.to_string());
                }
            }
            None
        }),
    )
    .await
    .unwrap()
    .expect("child exited without READY");
    (child, ready)
}

/// The shared PEM: an `aemp gencert` key and certificate (see tests/certs/README.md).
pub fn pem() -> &'static str {
    include_str!("../certs/gencert.pem")
}

/// Another self-signed identity with the same subject and `CA:TRUE`, like a second
/// `aemp gencert` run (ECDSA, which rcgen makes quickly).
pub fn foreign_pem() -> String {
    let key = rcgen::KeyPair::generate().expect("keygen");
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "AnyEvent::MP");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).expect("self-sign");
    format!("{}{}", key.serialize_pem(), cert.pem())
}

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
pub fn drain_events(rx: &mut tokio::sync::broadcast::Receiver<NodeEvent>) -> Vec<NodeEvent> {
    let mut v = Vec::new();
    while let Ok(e) = rx.try_recv() {
        v.push(e);
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

//! The transport side of data connections: dialling one, and handing an authenticated one
//! over to the node task (the set-up itself is `aemp_proto::dataconn`).
//!
//! A data connection runs the ordinary handshake (`connection::drive`) with protocol
//! `aemp-dataconn`: we dial one with our `dataconn_id` in the greeting; an accepted
//! connection becomes one when the peer's greeting upgrades it. Neither is a node
//! connection (no `Greeted`/`Up` for the connection registry), and its handshake must finish
//! within the data connection handshake timeout. A handshake that fails is closed and, on an
//! accepted connection, counted and logged like every refused handshake; nothing reaches the
//! node task. After authentication the socket (or its TLS stream) goes to the node task as
//! [`DataEvent::Up`], with the bytes already read past the auth line.

use super::connection::{drive, ConnError, Prefixed};
use super::tls::TlsStream;
use super::{ConnEvent, Transport};
use aemp_proto::conn_registry::Verdict;
use aemp_proto::dataconn::{ID_KEY, PROTOCOL};
use aemp_proto::handshake::{Established, HandshakeConfig};
use aemp_proto::{NodeId, Str, Value};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// The byte stream under a [`DataConn`].
pub(crate) enum Io {
    /// Plain TCP: the socket itself.
    Tcp(TcpStream),
    /// TLS over the socket (the prefix of `Prefixed` was used up by the TLS handshake).
    Tls(Box<TlsStream<Prefixed<TcpStream>>>),
    /// Both ends on this node.
    Local(tokio::io::DuplexStream),
}

/// What happened to a data connection, for the node task.
pub(crate) enum DataEvent {
    /// Connection `id` authenticated with node `peer`.
    Up {
        id: Str,
        peer: NodeId,
        addr: SocketAddr,
        outgoing: bool,
        stream: DataConn,
    },
    /// A dial of `id` failed; `handshake` when the handshake failed (the peer was reached).
    Failed {
        id: Str,
        cause: String,
        handshake: bool,
    },
}

/// Our handshake settings for dialling data connection `id`.
pub(crate) fn handshake_config(hs: &HandshakeConfig, id: &str) -> HandshakeConfig {
    let mut cfg = hs.clone();
    cfg.protocol = PROTOCOL.to_owned();
    cfg.extra_kv.push((ID_KEY.to_owned(), id.to_owned()));
    cfg
}

/// A data connection authenticated: hand it to the node task. `data_id` is ours when we
/// dialled it; an accepted one carries its id in the peer's greeting.
pub(super) fn hand_over(
    net: &Arc<Transport>,
    io: Io,
    est: Established,
    rest: Vec<u8>,
    addr: SocketAddr,
    outgoing: bool,
    data_id: Option<&str>,
) -> Result<(), ConnError> {
    if est.protocol != PROTOCOL {
        return Err(ConnError::SubProtocol(est.protocol));
    }
    let Some(id) = data_id.or(est.peer.dataconn_id()).map(Str::from) else {
        return Err(ConnError::SubProtocol(format!(
            "{PROTOCOL} without {ID_KEY}"
        )));
    };
    let peer = NodeId::new(&est.peer.node_id).map_err(ConnError::PeerGreeting)?;
    // The node connection's liveness rule (data unacknowledged for a while fails the
    // connection) does not suit a stream whose reader may pause: TCP keepalive stays.
    let sock = match &io {
        Io::Tcp(s) => Some(s),
        Io::Tls(s) => Some(s.get_ref().0.get_ref()),
        Io::Local(_) => None,
    };
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Some(s) = sock {
        let _ = socket2::SockRef::from(s).set_tcp_user_timeout(None);
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = sock;
    tracing::debug!(%peer, %id, tls = est.tls, outgoing, "data connection authenticated");
    let stream = DataConn::new(io, rest, peer.clone(), id.to_string());
    net.report(ConnEvent::Data(Box::new(DataEvent::Up {
        id,
        peer,
        addr,
        outgoing,
        stream,
    })));
    Ok(())
}

impl Transport {
    /// Dials `addr` for data connection `id`; reports [`DataEvent::Up`] or
    /// [`DataEvent::Failed`].
    pub(crate) fn dial_data(self: &Arc<Self>, addr: SocketAddr, id: Str) {
        let t = self.clone();
        tokio::spawn(async move {
            let limit = t.cfg.data_conn.handshake_timeout;
            let result = match tokio::time::timeout(limit, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(t.cfg.nodelay);
                    let (_verdict, rx) = watch::channel(Verdict::Commit);
                    let mut peer = None;
                    drive(&t, stream, addr, true, 0, rx, &mut peer, Some(&id))
                        .await
                        .map_err(|e| (e.is_refused_handshake(), e.to_string()))
                }
                Ok(Err(e)) => Err((false, format!("connect to {addr} failed: {e}"))),
                Err(_) => Err((false, format!("connect to {addr} timed out"))),
            };
            if let Err((handshake, cause)) = result {
                tracing::debug!(%addr, %id, error = %cause, "data connection dial failed");
                t.report(ConnEvent::Data(Box::new(DataEvent::Failed {
                    id,
                    cause,
                    handshake,
                })));
            }
        });
    }
}

/// An init function for incoming data connections (see [`Node::register_data_init`](crate::Node::register_data_init)): gets
/// the stream and the init data the other node sent. It runs on the node's dispatcher, so it
/// must not block: spawn a task for the I/O.
pub type DataInitFn = Arc<dyn Fn(DataConn, Vec<Value>) + Send + Sync + 'static>;

/// One end of a data connection: a raw byte stream to another node, authenticated like a
/// node connection (shared secret or TLS), in TLS when the two nodes use TLS. It implements
/// tokio's [`AsyncRead`] and [`AsyncWrite`]; closing it (drop, or
/// [`shutdown`](tokio::io::AsyncWriteExt::shutdown) for an orderly end) is all there is to
/// ending it.
///
/// A plain connection is the socket itself: reads and writes go straight to the
/// [`TcpStream`](tokio::net::TcpStream) (only the few bytes the handshake read ahead, if
/// any, come first from a buffer).
///
/// ```
/// # use aemp::{Config, DataConn, Node};
/// # use std::time::Duration;
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
/// # async fn net(name: &str) -> Result<Node, aemp::Error> {
/// #     let cfg = Config::builder().norc(true).nodeid(format!("{name}/%u"))
/// #         .binds(["127.0.0.1:0"]).secret("doc").build()?;
/// #     Node::configure(cfg).await
/// # }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (a, b) = (net("a").await?, net("b").await?);
/// // B: an init function that echoes what it reads.
/// b.register_data_init("app::echo", |mut conn: DataConn, _args| {
///     tokio::spawn(async move {
///         let (mut rd, mut wr) = tokio::io::split(conn);
///         let _ = tokio::io::copy(&mut rd, &mut wr).await;
///     });
/// });
/// a.connect(b.listen_addrs()[0])?;
/// a.wait_up(b.id(), Duration::from_secs(10)).await;
/// // A: open one and talk through it.
/// let mut conn = a.data_conn(b.id(), "app::echo").await?;
/// conn.write_all(b"hello").await?;
/// let mut back = [0u8; 5];
/// conn.read_exact(&mut back).await?;
/// assert_eq!(&back, b"hello");
/// # Ok(()) }
/// ```
pub struct DataConn {
    io: Io,
    /// Bytes read past the handshake, handed out before the stream's own.
    prefix: Vec<u8>,
    pos: usize,
    peer: NodeId,
    id: String,
    on_drop: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl std::fmt::Debug for DataConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataConn")
            .field("id", &self.id)
            .field("peer", &self.peer)
            .field("tls", &self.is_tls())
            .finish_non_exhaustive()
    }
}

impl DataConn {
    pub(crate) fn new(io: Io, prefix: Vec<u8>, peer: NodeId, id: String) -> DataConn {
        DataConn {
            io,
            prefix,
            pos: 0,
            peer,
            id,
            on_drop: None,
        }
    }

    /// A connected pair on this node (a data connection to the node itself).
    pub(crate) fn local_pair(node: &NodeId, id: &str) -> (DataConn, DataConn) {
        let (x, y) = tokio::io::duplex(256 * 1024);
        let end = |io| DataConn::new(Io::Local(io), Vec::new(), node.clone(), id.to_owned());
        (end(x), end(y))
    }

    /// Runs `f` when the stream is dropped.
    pub(crate) fn set_on_drop(&mut self, f: impl FnOnce() + Send + Sync + 'static) {
        self.on_drop = Some(Box::new(f));
    }

    /// The node at the other end.
    pub fn peer(&self) -> &NodeId {
        &self.peer
    }

    /// The data connection's id (`<counter>@<initiating node>`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether the stream runs in TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self.io, Io::Tls(_))
    }
}

impl Drop for DataConn {
    fn drop(&mut self) {
        if let Some(f) = self.on_drop.take() {
            f();
        }
    }
}

impl AsyncRead for DataConn {
    #[inline]
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos < this.prefix.len() {
            let n = (this.prefix.len() - this.pos).min(buf.remaining());
            buf.put_slice(&this.prefix[this.pos..this.pos + n]);
            this.pos += n;
            if this.pos == this.prefix.len() {
                this.prefix = Vec::new();
                this.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        match &mut this.io {
            Io::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Io::Local(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for DataConn {
    #[inline]
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Io::Local(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
            Io::Local(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Tcp(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
            Io::Local(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Tcp(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Io::Local(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Io::Local(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

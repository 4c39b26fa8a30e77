//! Data connections (`AnyEvent::MP::DataConn`): a raw, authenticated byte stream between
//! two nodes, for bulk data that should not go through messages.
//!
//! See the [guide](crate::guide#10-data-connections) for an overview, [`DataConnRequest`] for
//! opening one, [`Node::register_data_init`] for accepting them, and [`DataConn`] for the
//! stream.

use crate::kernel::monitor::Reason;
use crate::runtime::{Cmd, DcCmd};
use crate::transport::dataconn::Io;
use crate::{Cx, Node};
use aemp_proto::{NodeId, PortId, Str, Value};
use std::future::{Future, IntoFuture};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;

pub use aemp_proto::dataconn::Limits as DataConnLimits;

/// How long a data connection may take to come up unless [`DataConnRequest::timeout`] says
/// otherwise.
pub const DEFAULT_DATA_CONN_TIMEOUT: Duration = Duration::from_secs(10);

/// An init function for incoming data connections (see [`Node::register_data_init`]): gets
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

/// Why a data connection did not come up. Its port (see [`DataConnRequest`]) was killed
/// with `("AnyEvent::MP::DataConn", <message>)` ([`DataConnError::message`]), except for
/// [`DataConnError::PortDied`] and [`DataConnError::Shutdown`].
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DataConnError {
    /// Not up within the timeout.
    #[error("data connection timed out: {0}")]
    Timeout(String),
    /// This node has too many data connections already ([`DataConnLimits::max`]).
    #[error("data connection not opened: {0}")]
    TooMany(String),
    /// The handshake failed (authentication, TLS).
    #[error("data connection handshake failed: {0}")]
    Handshake(String),
    /// No address of the other node could be reached.
    #[error("data connection failed: {0}")]
    Unreachable(String),
    /// The other node refused or gave up (it killed the port with a data connection
    /// reason): an unknown init function, too many data connections there, no listeners.
    #[error("data connection refused: {0}")]
    Refused(String),
    /// The port the data connection was opened for died (with this reason) before it came
    /// up.
    #[error("data connection abandoned: its port died ({0})")]
    PortDied(Reason),
    /// This node has no network (it was made by [`Node::new`]).
    #[error("data connection: this node has no network")]
    NoNetwork,
    /// The node shut down.
    #[error("data connection: node is shut down")]
    Shutdown,
}

impl DataConnError {
    /// The message of the kill reason `("AnyEvent::MP::DataConn", <message>)`.
    pub fn message(&self) -> String {
        match self {
            DataConnError::Timeout(m)
            | DataConnError::TooMany(m)
            | DataConnError::Handshake(m)
            | DataConnError::Unreachable(m)
            | DataConnError::Refused(m) => m.clone(),
            e => e.to_string(),
        }
    }

    pub(crate) fn from_failure(f: aemp_proto::dataconn::Failure) -> DataConnError {
        use aemp_proto::dataconn::FailureKind as K;
        match f.kind {
            K::Timeout => DataConnError::Timeout(f.message),
            K::TooMany => DataConnError::TooMany(f.message),
            K::Handshake => DataConnError::Handshake(f.message),
            K::Unreachable => DataConnError::Unreachable(f.message),
            K::NoListeners => DataConnError::Refused(f.message),
            K::NoNetwork => DataConnError::NoNetwork,
        }
    }
}

/// A data connection to open: made by [`Node::data_conn`] or [`Cx::data_conn`], opened when
/// awaited (or by [`DataConnRequest::start`]).
///
/// The other node runs the init function registered there under the given name
/// ([`Node::register_data_init`]) with the init data ([`DataConnRequest::arg`]) and its end of
/// the stream; this side gets its end as the result. Either node may be the one that
/// listens: this node dials the other one if it has listen addresses, and asks it to dial
/// back otherwise.
///
/// The request runs in the context of a port `P`: the handler's port for [`Cx::data_conn`],
/// a fresh port for [`Node::data_conn`]. On any failure nothing runs on the other node, `P`
/// is killed with `("AnyEvent::MP::DataConn", <message>)` (as the reference does), and the
/// result is a [`DataConnError`]. If `P` dies meanwhile, the request is abandoned.
///
/// ```
/// # use aemp::{Config, DataConn, Node};
/// # use std::time::Duration;
/// # async fn net(name: &str) -> Result<Node, aemp::Error> {
/// #     let cfg = Config::builder().norc(true).nodeid(format!("{name}/%u"))
/// #         .binds(["127.0.0.1:0"]).secret("doc").build()?;
/// #     Node::configure(cfg).await
/// # }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let (a, b) = (net("a").await?, net("b").await?);
/// # a.connect(b.listen_addrs()[0])?;
/// # a.wait_up(b.id(), Duration::from_secs(10)).await;
/// // From a handler: the handler's port is the context; spawn a task for the stream.
/// let worker = a.port().on("upload", |cx, m| {
///     let to = aemp::NodeId::new(m.get(0).and_then(|v| v.as_str()).unwrap_or(""))?;
///     let open = cx.data_conn(&to, "app::store").arg("file.bin").start();
///     tokio::spawn(async move {
///         if let Ok(mut conn) = open.await {
///             use tokio::io::AsyncWriteExt;
///             let _ = conn.write_all(b"...").await;
///         }
///     });
///     Ok(())
/// }).build();
/// // Failures are typed, and kill the port: B knows no such init function.
/// let err = a.data_conn(b.id(), "app::nothing").timeout(Duration::from_secs(5)).await;
/// assert!(matches!(err, Err(aemp::DataConnError::Refused(_))));
/// # Ok(()) }
/// ```
#[must_use = "a data connection is opened when awaited or started"]
pub struct DataConnRequest {
    node: Node,
    port: Option<PortId>,
    target: NodeId,
    init: String,
    args: Vec<Value>,
    timeout: Duration,
}

impl DataConnRequest {
    /// Adds one value to the init data.
    pub fn arg(mut self, v: impl Into<Value>) -> DataConnRequest {
        self.args.push(v.into());
        self
    }

    /// Adds values to the init data.
    pub fn args<V: Into<Value>>(mut self, vs: impl IntoIterator<Item = V>) -> DataConnRequest {
        self.args.extend(vs.into_iter().map(Into::into));
        self
    }

    /// Gives up after `d` (default [`DEFAULT_DATA_CONN_TIMEOUT`]). The other node waits as
    /// long; the reference asks for enough time for four network round trips and a message
    /// round trip.
    pub fn timeout(mut self, d: Duration) -> DataConnRequest {
        self.timeout = d;
        self
    }

    /// Sends the request now; the result is the stream or the error.
    pub fn start(self) -> PendingDataConn {
        let (reply, rx) = oneshot::channel();
        let DataConnRequest {
            node,
            port,
            target,
            init,
            args,
            timeout,
        } = self;
        if node.is_shut_down() {
            let _ = reply.send(Err(DataConnError::Shutdown));
        } else {
            node.core().push(Cmd::DataConn(Box::new(DcCmd::Open {
                target,
                port,
                init: Str::from(init),
                args,
                timeout,
                reply,
            })));
        }
        PendingDataConn { rx }
    }
}

impl IntoFuture for DataConnRequest {
    type Output = Result<DataConn, DataConnError>;
    type IntoFuture = PendingDataConn;

    fn into_future(self) -> PendingDataConn {
        self.start()
    }
}

/// A data connection being opened ([`DataConnRequest::start`]): resolves to the stream or
/// the error.
#[must_use = "the stream is lost unless this is awaited"]
pub struct PendingDataConn {
    rx: oneshot::Receiver<Result<DataConn, DataConnError>>,
}

impl Future for PendingDataConn {
    type Output = Result<DataConn, DataConnError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(DataConnError::Shutdown)))
    }
}

impl Node {
    /// A data connection to `node`, whose init function registered as `init` gets the other
    /// end (see [`DataConnRequest`]). Runs in the context of a fresh port of this node.
    pub fn data_conn(&self, node: &NodeId, init: &str) -> DataConnRequest {
        DataConnRequest {
            node: self.clone(),
            port: None,
            target: node.clone(),
            init: init.to_owned(),
            args: Vec::new(),
            timeout: DEFAULT_DATA_CONN_TIMEOUT,
        }
    }

    /// Registers `f` as the init function `name` of incoming data connections: when another
    /// node opens a data connection naming it, `f` gets the stream and the init data.
    /// Registering a name again replaces the function. Only registered names can be opened:
    /// a request for another name is refused (the requesting port is killed with
    /// `unable to resolve function '<name>'`), also in `secure` mode, where these are the
    /// only data connections allowed (see the [guide](crate::guide#10-data-connections)).
    ///
    /// `f` runs on the node's dispatcher: it must not block (spawn a task for the I/O).
    pub fn register_data_init(
        &self,
        name: &str,
        f: impl Fn(DataConn, Vec<Value>) + Send + Sync + 'static,
    ) {
        let f: DataInitFn = Arc::new(f);
        self.core().push(Cmd::DataConn(Box::new(DcCmd::Register {
            name: Str::from(name),
            f,
        })));
    }
}

impl Cx<'_> {
    /// A data connection to `node` in the context of this handler's port (see
    /// [`DataConnRequest`]): if it fails, this port is killed with
    /// `("AnyEvent::MP::DataConn", <message>)`. Start it with
    /// [`DataConnRequest::start`] and await the result in a task.
    pub fn data_conn(&mut self, node: &NodeId, init: &str) -> DataConnRequest {
        DataConnRequest {
            node: self.node(),
            port: Some(self.self_port()),
            target: node.clone(),
            init: init.to_owned(),
            args: Vec::new(),
            timeout: DEFAULT_DATA_CONN_TIMEOUT,
        }
    }
}

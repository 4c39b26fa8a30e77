//! Data connections (`AnyEvent::MP::DataConn`): a raw, authenticated byte stream between
//! two nodes, for bulk data that should not go through messages.
//!
//! See the [guide](crate::guide#10-data-connections) for an overview, [`DataConnRequest`]
//! for opening one, [`Node::register_data_init`] for accepting them, and [`DataConn`] for the
//! stream (defined with the transport, which makes it).

use crate::runtime::{Cmd, DcCmd, OpenRequest};
use crate::{Cx, Node};
use aemp_proto::{NodeId, PortId, Str, Value};
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::oneshot;

pub use crate::error::DataConnError;
pub use crate::transport::dataconn::{DataConn, DataInitFn};
pub use aemp_proto::dataconn::Limits as DataConnLimits;

/// How long a data connection may take to come up unless [`DataConnRequest::timeout`] says
/// otherwise.
pub const DEFAULT_DATA_CONN_TIMEOUT: Duration = Duration::from_secs(10);

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
            node.core()
                .push(Cmd::DataConn(Box::new(DcCmd::Open(OpenRequest {
                    target,
                    port,
                    init: Str::from(init),
                    args,
                    timeout,
                    reply,
                }))));
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

//! The public node handle: every user-facing operation of AnyEvent::MP's API.
//!
//! A [`Node`] is a cheap, clonable handle. Operations on it are queued to the node task (see
//! `crate::runtime`) and return at once; none of them blocks on the network.

mod builder;
mod cal;
mod db;
mod events;
mod inbox;
mod logs;
mod network;
mod reply;
mod stats;
mod timer;

pub use builder::{NodeBuilder, ServiceFn};
pub use cal::Cal;
pub use db::{DbEntry, DbWatch};
pub use events::{next_up, MissedEvents, NodeEvents};
pub use inbox::Inbox;
pub use logs::LogCatch;
pub use network::PeerStats;
pub use stats::{NodeStats, StatsError, STATS_FUNCTION};
pub use timer::TimerGuard;

use crate::error::{Error, HandlerResult};
use crate::kernel::context::Cx;
use crate::kernel::monitor::{Canceller, MonGuard, Monitor, Reason};
use crate::kernel::port::Handler;
use crate::kernel::registry::NamedFn;
use crate::kernel::{self, MonRequest, Shared, Task};
use crate::runtime::{self, Cmd, Core, Query, Setup, ShutdownReport, ShutdownRequest};
use crate::transport::Transport;
use aemp_proto::codec::LimitError;
use aemp_proto::ids::{self, PortNamer};
use aemp_proto::node_req::NodeReq;
use aemp_proto::value::drop_nested;
use aemp_proto::{Msg, NodeId, PortId, Str, Value};
use std::future::Future;
use std::sync::{Arc, Weak};

/// Owner of a node's core; when the last [`Node`] handle goes, the node shuts down as by
/// [`Node::shutdown`] (in the background, nobody waits for the report).
pub(crate) struct NodeInner {
    pub(crate) core: Arc<Core>,
    #[allow(dead_code)] // kept alive with the node; the node task has its own reference
    pub(crate) transport: Option<Arc<Transport>>,
}

impl Drop for NodeInner {
    fn drop(&mut self) {
        if !self.core.is_closed() {
            self.core.close();
            self.core.push(Cmd::Shutdown(Box::new(ShutdownRequest {
                deadline: DEFAULT_SHUTDOWN_DEADLINE,
                reply: None,
            })));
        }
    }
}

/// How long [`Node::shutdown`] lets the connections write what is queued for other nodes.
pub const DEFAULT_SHUTDOWN_DEADLINE: std::time::Duration = std::time::Duration::from_secs(5);

/// How long a node's dispatcher busy-polls for more work before it sleeps, unless
/// [`Node::set_spin`] says otherwise. Erlang's schedulers busy-wait by default for the same
/// reason: on virtual machines waking a sleeping CPU costs tens of microseconds per message
/// exchange (`aemp-bench` R2 p50 about 100 us without, 14 us with; R3 about 2.5x the rate).
/// At most this much CPU time is spent after each burst of work, and only while polling pays
/// off: when most recent idle periods outlasted it, the dispatcher sleeps at once.
pub const DEFAULT_SPIN: std::time::Duration = std::time::Duration::from_micros(200);

/// A node: one participant in the network, owner of ports.
///
/// Several nodes can live in one process (tests run whole networks that way). A node must be
/// created inside a tokio runtime; it runs one dispatcher task that executes all handlers of
/// its ports, one at a time.
///
/// [`Node::shutdown`] stops a node without losing what is queued for other nodes. Dropping
/// the last handle does the same in the background (nobody gets the report; the log tells
/// what was dropped).
#[derive(Clone)]
pub struct Node {
    inner: Arc<NodeInner>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Node({})", self.inner.core.shared.id)
    }
}

impl Node {
    /// Creates a local node (no network) with the given node ID pattern (`%n`, `%u` and a
    /// trailing `/` are expanded as the Perl tool does).
    ///
    /// Must be called within a tokio runtime ([`Error::NoRuntime`] otherwise).
    ///
    /// ```
    /// # use aemp::{msg, Node};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let node = Node::new("worker/%u")?; // %u: a random suffix
    /// assert!(node.id().as_str().starts_with("worker/"));
    /// # Ok(()) }
    /// ```
    pub fn new(nodeid: &str) -> Result<Node, Error> {
        tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let runiq = ids::new_runiq();
        let expanded = ids::expand_node_id(nodeid, &crate::config::nodename(), &runiq)?;
        let shared = Arc::new(Shared::new(
            expanded.id,
            PortNamer::new(&crate::config::port_prefix(expanded.randomised), &runiq),
        ));
        // A node without network is its own global node, so that the database works
        // inside it.
        Ok(Node::start(
            Arc::new(Core::new(shared, DEFAULT_SPIN)),
            None,
            Vec::new(),
            Vec::new(),
            true,
        ))
    }

    /// Starts the node task for `core` and returns the first handle.
    pub(crate) fn start(
        core: Arc<Core>,
        transport: Option<Arc<Transport>>,
        seeds: Vec<std::net::SocketAddr>,
        listening: Vec<std::net::SocketAddr>,
        global: bool,
    ) -> Node {
        let inner = Arc::new(NodeInner {
            core: core.clone(),
            transport: transport.clone(),
        });
        let owner: Weak<dyn std::any::Any + Send + Sync> = {
            let w: Weak<NodeInner> = Arc::downgrade(&inner);
            w
        };
        runtime::start(
            core,
            Setup {
                transport,
                seeds,
                listening,
                global,
                owner,
            },
        );
        let node = Node { inner };
        node.register_stats();
        node.register_log_catcher();
        node
    }

    /// A handle whose node is gone (what a handler gets while its node is torn down): it
    /// refuses everything.
    fn closed(id: &NodeId) -> Node {
        let shared = Arc::new(Shared::new(id.clone(), PortNamer::new("", "closed")));
        let core = Arc::new(Core::new(shared, std::time::Duration::ZERO));
        core.close();
        Node {
            inner: Arc::new(NodeInner {
                core,
                transport: None,
            }),
        }
    }

    pub(crate) fn core(&self) -> &Arc<Core> {
        &self.inner.core
    }

    pub(crate) fn canceller(&self) -> Weak<dyn Canceller> {
        let w: Weak<Core> = Arc::downgrade(&self.inner.core);
        w
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.inner.core.shared
    }

    /// This node's ID.
    ///
    /// ```
    /// # use aemp::{msg, Monitor, Node};
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let node = Node::new("doc/%u")?;
    /// println!("this is {}", node.id());
    /// assert_eq!(node.node_port().node(), node.id().as_str());
    /// # Ok(()) }
    /// ```
    pub fn id(&self) -> &NodeId {
        &self.inner.core.shared.id
    }

    /// The node port of this node.
    ///
    /// ```
    /// # use aemp::{msg, Monitor, Node};
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let node = Node::new("doc/%u")?;
    /// // Every node port answers "time" with the node's clock.
    /// let now = node.cal(&node.node_port(), msg!["time"]).await?;
    /// assert!(now[0].as_f64().is_some());
    /// # Ok(()) }
    /// ```
    pub fn node_port(&self) -> PortId {
        self.id().node_port()
    }

    /// True once the node was shut down.
    ///
    /// ```
    /// # use aemp::{msg, Monitor, Node};
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let node = Node::new("doc/%u")?;
    /// assert!(!node.is_shut_down());
    /// node.shutdown().await;
    /// assert!(node.is_shut_down());
    /// # Ok(()) }
    /// ```
    pub fn is_shut_down(&self) -> bool {
        self.inner.core.is_closed()
    }

    /// Lets the dispatcher busy-poll for up to `d` before it goes to sleep when it runs out of
    /// work (default [`DEFAULT_SPIN`]; zero never polls). Costs CPU for up to that long after
    /// each burst of work; saves the latency of waking an idle CPU (tens of microseconds on
    /// some virtual machines) for the next message, like the busy wait of Erlang's schedulers.
    /// The poll adapts: it lasts about twice as long as recent idle periods did, and stops
    /// while most of them outlasted `d` (sparse traffic), until short ones are back.
    /// The poll yields the thread to other runnable threads and processes at every turn.
    /// Most useful with a current-thread runtime, where the polling also drives the node's
    /// sockets.
    ///
    /// ```
    /// # use aemp::{msg, Monitor, Node};
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let node = Node::new("doc/%u")?;
    /// node.set_spin(Duration::ZERO); // never busy-poll: least CPU, a little more latency
    /// # Ok(()) }
    /// ```
    pub fn set_spin(&self, d: std::time::Duration) {
        self.inner.core.spin_nanos.store(
            d.as_nanos().min(u64::MAX as u128) as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Whether a port killed by its own handler (the handler returned an error, panicked, or
    /// the port had no handler for a message) is reported: as a `tracing` WARN with the port
    /// and the reason when a subscriber is installed, otherwise as one line on stderr
    /// (`aemp: port <id> killed by its handler: <reason>`). On by default; kills by
    /// [`Node::kil`] are not reported this way (their monitors see them).
    ///
    /// ```
    /// # use aemp::{msg, Monitor, Node};
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let node = Node::new("doc/%u")?;
    /// node.set_log_deaths(false);
    /// let p = node.port_with(|_cx, _m| Err("quietly".into()));
    /// let died = node.monitor(&p);
    /// node.snd(&p, msg!["x"])?;
    /// // Nothing is logged, but monitors still fire.
    /// assert_eq!(died.await.to_string(), r#"["die","quietly"]"#);
    /// # Ok(()) }
    /// ```
    pub fn set_log_deaths(&self, on: bool) {
        self.shared()
            .log_deaths
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Shuts the node down without losing what is queued, waiting at most
    /// [`DEFAULT_SHUTDOWN_DEADLINE`] for it to be written (see [`Node::shutdown_within`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), aemp::Error> {
    /// let node = aemp::Node::new("short-lived/%u")?;
    /// let report = node.shutdown().await;
    /// assert!(report.is_complete());
    /// assert!(matches!(node.snd(&node.node_port(), aemp::msg!["x"]), Err(aemp::Error::Shutdown)));
    /// # Ok(()) }
    /// ```
    pub async fn shutdown(&self) -> ShutdownReport {
        self.shutdown_within(DEFAULT_SHUTDOWN_DEADLINE).await
    }

    /// Shuts the node down in order:
    ///
    /// 1. From now on operations of every handle fail ([`Error::Shutdown`] from `snd`, `kil`,
    ///    `rcv`..., [`CalError::Shutdown`](crate::CalError::Shutdown) from `cal`).
    /// 2. Everything queued before runs (handlers included), so what it sends to other nodes
    ///    is queued on their connections.
    /// 3. Every monitor this node holds (on its own ports, on other nodes and their ports)
    ///    fires once with `["shutdown", <this node's ID>, "node shut down"]`
    ///    ([`Reason::shutdown`](crate::Reason::shutdown)); then every port is dropped. Other
    ///    nodes are not sent kill notices: they see the connection close, as when a Perl
    ///    node exits.
    /// 4. The node stops listening and dialling; each connection writes what is queued for
    ///    its peer, then closes in order (TLS `close_notify`, then TCP FIN) and waits for the
    ///    peer to close its side, all within `deadline`.
    /// 5. What could not be written by then (or waited for a node that was not connected) is
    ///    dropped: logged as a WARN with counts per node (on stderr when no `tracing`
    ///    subscriber is installed) and returned in the [`ShutdownReport`].
    ///
    /// Returns when the node is down. A second call returns at once with an empty report.
    /// When the last handle of a node is dropped without a shutdown, the node shuts down the
    /// same way in the background (with [`DEFAULT_SHUTDOWN_DEADLINE`]); only the log tells
    /// what was dropped, and nothing more is written once the tokio runtime itself stops, so
    /// a program should await `shutdown` before it returns from `main`.
    ///
    /// ```
    /// # use aemp::{msg, Monitor, Node};
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let node = Node::new("doc/%u")?;
    /// let report = node.shutdown_within(Duration::from_millis(500)).await;
    /// assert!(report.is_complete());
    /// println!("{report}");
    /// # Ok(()) }
    /// ```
    pub async fn shutdown_within(&self, deadline: std::time::Duration) -> ShutdownReport {
        if self.inner.core.is_closed() {
            return ShutdownReport::default();
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.inner.core.close();
        self.inner
            .core
            .push(Cmd::Shutdown(Box::new(ShutdownRequest {
                deadline,
                reply: Some(tx),
            })));
        rx.await.unwrap_or_default()
    }

    /// [`Error::Shutdown`] once the node is shut down.
    #[inline]
    fn check_open(&self) -> Result<(), Error> {
        if self.inner.core.is_closed() {
            return Err(Error::Shutdown);
        }
        Ok(())
    }

    fn local_name<'a>(&self, port: &'a PortId) -> Result<&'a str, Error> {
        if port.node() != self.id().as_str() || port.is_node_port() {
            return Err(Error::NotLocal(port.to_string()));
        }
        Ok(port.name())
    }

    // ---- ports -------------------------------------------------------------------------

    /// Starts building a port: `node.port().on("tag", h).default(h).build()`.
    ///
    /// ```
    /// # use aemp::{msg, Monitor, Node};
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let node = Node::new("doc/%u")?;
    /// let p = node
    ///     .port()
    ///     .on("add", |cx, m| {
    ///         cx.reply(&m, msg![m[0].as_i64().unwrap_or(0) + 1])?;
    ///         Ok(())
    ///     })
    ///     .build();
    /// assert_eq!(node.cal(&p, msg!["add", 41]).await?, msg![42]);
    /// # Ok(()) }
    /// ```
    pub fn port(&self) -> PortBuilder<'_> {
        PortBuilder {
            node: self,
            default: None,
            tags: Vec::new(),
        }
    }

    /// Creates a port with a default handler that gets every message (tag included).
    ///
    /// ```
    /// # use aemp::{msg, Monitor, Node};
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let node = Node::new("doc/%u")?;
    /// // A default handler sees the whole message, tag included.
    /// let p = node.port_with(|cx, m| {
    ///     cx.reply(&m, msg!["echo", m[0].clone()])?;
    ///     Ok(())
    /// });
    /// assert_eq!(node.cal(&p, msg!["hi"]).await?, msg!["echo", "hi"]);
    /// # Ok(()) }
    /// ```
    pub fn port_with(
        &self,
        h: impl FnMut(&mut Cx<'_>, Msg) -> HandlerResult + Send + 'static,
    ) -> PortId {
        self.port().default(h).build()
    }

    /// Sets the default handler of a local port (creating the port if it does not exist).
    ///
    /// ```
    /// # use aemp::{msg, Monitor, Node};
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let node = Node::new("doc/%u")?;
    /// let p = node.port().build();
    /// node.rcv_default(&p, |cx, m| {
    ///     cx.reply(&m, msg![m.len()])?; // ["a", "b", reply-port]
    ///     Ok(())
    /// })?;
    /// assert_eq!(node.cal(&p, msg!["a", "b"]).await?, msg![3]);
    /// # Ok(()) }
    /// ```
    pub fn rcv_default(
        &self,
        port: &PortId,
        h: impl FnMut(&mut Cx<'_>, Msg) -> HandlerResult + Send + 'static,
    ) -> Result<(), Error> {
        self.rcv_boxed(port, None, Some(Box::new(h)))
    }

    /// Sets the handler for messages tagged `tag` on a local port; the tag is removed before
    /// the handler sees the message.
    ///
    /// ```
    /// # use aemp::{msg, Monitor, Node};
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let node = Node::new("doc/%u")?;
    /// let p = node.port().build();
    /// node.rcv(&p, "ping", |cx, m| {
    ///     cx.reply(&m, msg!["pong"])?;
    ///     Ok(())
    /// })?;
    /// assert_eq!(node.cal(&p, msg!["ping"]).await?, msg!["pong"]);
    /// # Ok(()) }
    /// ```
    pub fn rcv(
        &self,
        port: &PortId,
        tag: &str,
        h: impl FnMut(&mut Cx<'_>, Msg) -> HandlerResult + Send + 'static,
    ) -> Result<(), Error> {
        self.rcv_boxed(port, Some(tag), Some(Box::new(h)))
    }

    /// Removes the handler for `tag` (or the default handler when `tag` is `None`).
    ///
    /// ```
    /// # use aemp::{msg, Monitor, Node};
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let node = Node::new("doc/%u")?;
    /// let p = node.port().on("ping", |_cx, _m| Ok(())).default(|_cx, _m| Ok(())).build();
    /// node.unrcv(&p, Some("ping"))?; // "ping" now goes to the default handler
    /// node.unrcv(&p, None)?; // now nothing takes it: the next message kills the port
    /// let died = node.monitor(&p);
    /// node.snd(&p, msg!["ping"])?;
    /// assert_eq!(died.await[0].as_str(), Some("unhandled_message"));
    /// # Ok(()) }
    /// ```
    pub fn unrcv(&self, port: &PortId, tag: Option<&str>) -> Result<(), Error> {
        self.rcv_boxed(port, tag, None)
    }

    fn rcv_boxed(&self, port: &PortId, tag: Option<&str>, h: Option<Handler>) -> Result<(), Error> {
        self.check_open()?;
        let name = Str::from(self.local_name(port)?);
        self.inner.core.task(Task::Rcv {
            port: name,
            tag: tag.map(Str::from),
            handler: h,
        });
        Ok(())
    }

    /// Sends a message to any port, local or remote. Returns at once. A message to a port
    /// that does not exist is dropped silently; monitors are the failure signal.
    ///
    /// Refused, with nothing sent or queued:
    ///
    /// * an empty message ([`Error::EmptyMessage`]);
    /// * a message that peers would refuse ([`Error::Refused`]): lists and maps nested
    ///   deeper than the node's [`Limits`](aemp_proto::codec::Limits) allow (64 levels by
    ///   default, the frame `[port, msg…]` counting as the first), or a frame larger than
    ///   their message size limit (256 MiB by default). A peer closes the whole connection
    ///   on such a frame, firing every monitor of the link, so it is refused here. For local
    ///   ports the nesting rule holds too; a flat local message is never encoded and is not
    ///   measured. The refused message is dropped without recursion, however deep it is.
    ///
    /// ```
    /// # use aemp::{msg, Monitor, Node};
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let node = Node::new("doc/%u")?;
    /// let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    /// let p = node.port_with(move |_cx, m| Ok(tx.send(m)?));
    /// node.snd(&p, msg!["job", 1])?;
    /// assert_eq!(rx.recv().await, Some(msg!["job", 1]));
    /// assert!(node.snd(&p, aemp::Msg::new()).is_err()); // an empty message
    /// # Ok(()) }
    /// ```
    #[inline]
    pub fn snd(&self, port: &PortId, msg: impl Into<Msg>) -> Result<(), Error> {
        // The message stays where the caller built it and is lent to the send path: moved
        // into `snd` (72 bytes), it was read back before the caller's stores had landed (a
        // store-forwarding stall, the most sampled instruction of a remote `snd`).
        self.snd_lent(port, &mut msg.into())
    }

    /// [`Node::snd`] of a lent message: what is left of it after a remote send (its large
    /// strings move into the connection's queue) is the caller's to drop.
    fn snd_lent(&self, port: &PortId, msg: &mut Msg) -> Result<(), Error> {
        self.check_open()?;
        if msg.is_empty() {
            return Err(Error::EmptyMessage);
        }
        // The parts once: every step below needs one or both.
        let (node, name) = port.parts();
        let local = self.shared().is_local(node);
        if let Err(e) = self.shared().check_to_at(node, name, local, msg.as_slice()) {
            return Err(refused(std::mem::take(msg), e));
        }
        let task = if local {
            Task::Deliver {
                port: Str::from(name),
                msg: std::mem::take(msg),
                src: None,
            }
        } else {
            // The direct path (see `runtime::direct`): straight into the connection when
            // the node task has nothing of ours pending.
            match self.inner.core.try_direct(node, name, msg) {
                Some(Ok(())) => return Ok(()),
                Some(Err(e)) => return Err(refused(std::mem::take(msg), *e)),
                None => Task::Send {
                    port: port.clone(),
                    msg: std::mem::take(msg),
                },
            }
        };
        self.inner.core.task(task);
        Ok(())
    }

    /// Sends a batch of messages to one local or remote port with a single queue operation.
    /// Empty messages are skipped. If one message would be refused (see [`Node::snd`]), none
    /// is sent and the error is returned.
    ///
    /// ```
    /// # use aemp::{msg, Monitor, Node};
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let node = Node::new("doc/%u")?;
    /// let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    /// let p = node.port_with(move |_cx, m| Ok(tx.send(m)?));
    /// node.snd_many(&p, (0..3).map(|i| msg!["n", i]))?;
    /// for i in 0..3 {
    ///     assert_eq!(rx.recv().await, Some(msg!["n", i]));
    /// }
    /// # Ok(()) }
    /// ```
    pub fn snd_many(
        &self,
        port: &PortId,
        msgs: impl IntoIterator<Item = Msg>,
    ) -> Result<(), Error> {
        self.check_open()?;
        let msgs: Vec<Msg> = msgs.into_iter().filter(|m| !m.is_empty()).collect();
        if let Some(e) = msgs
            .iter()
            .find_map(|m| self.shared().check_to(port, m.as_slice()).err())
        {
            return Err(refused(msgs.into_iter().flatten(), e));
        }
        if port.node() == self.id().as_str() {
            let name = Str::from(port.name());
            self.inner.core.push_many(
                msgs.into_iter().map(|msg| {
                    Cmd::Task(Task::Deliver {
                        port: name.clone(),
                        msg,
                        src: None,
                    })
                }),
                false,
            );
        } else {
            self.inner.core.task(Task::SendMany {
                port: port.clone(),
                msgs,
            });
        }
        Ok(())
    }

    /// Sends a typed message (a tuple or struct, or an enum variant as the tagged list
    /// `["Variant", fields...]`, see [`aemp_proto::typed::to_msg`]).
    ///
    /// ```
    /// # use aemp::{msg, Monitor, Node};
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let node = Node::new("doc/%u")?;
    /// let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    /// let p = node.port_with(move |_cx, m| Ok(tx.send(m)?));
    /// node.snd_typed(&p, &("job", 7, "fast"))?;
    /// assert_eq!(rx.recv().await, Some(msg!["job", 7, "fast"]));
    /// # Ok(()) }
    /// ```
    pub fn snd_typed<T: serde::Serialize + ?Sized>(
        &self,
        port: &PortId,
        msg: &T,
    ) -> Result<(), Error> {
        let msg = aemp_proto::typed::to_msg(msg)?;
        self.snd(port, msg)
    }

    /// Calls a function registered on `node` by name with `args` (Perl's `snd_to_func`).
    ///
    /// ```
    /// # use aemp::{msg, Monitor, Node};
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let node = Node::new("doc/%u")?;
    /// let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    /// node.register("app::hello", move |_cx, args| Ok(tx.send(args)?));
    /// node.snd_to_func(node.id(), "app::hello", vec!["world".into()])?;
    /// assert_eq!(rx.recv().await, Some(vec![aemp::Value::from("world")]));
    /// # Ok(()) }
    /// ```
    pub fn snd_to_func(&self, node: &NodeId, func: &str, args: Vec<Value>) -> Result<(), Error> {
        let mut msg = Msg::with_capacity(1 + args.len());
        msg.push(func);
        msg.0.extend(args);
        self.snd(&node.node_port(), msg)
    }

    /// Kills a port with a reason (empty = normal kill). Killing a port that does not exist is
    /// fine; killing a node port is an error.
    ///
    /// A reason that could not be sent to another node (in the `kil1` request to a remote
    /// port's node, or the `kil0` notice to a remote monitor of a local port) is refused with
    /// [`Error::Refused`], and nothing is killed (see [`Node::snd`]); so is a remote port
    /// whose name or node ID the `kil1` request (or the `g_find` that looks the node up)
    /// could not carry, with or without a reason.
    ///
    /// ```
    /// # use aemp::{msg, Monitor, Node};
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let node = Node::new("doc/%u")?;
    /// let p = node.port().build();
    /// let died = node.monitor(&p);
    /// node.kil(&p, vec![aemp::Value::from("finished")])?;
    /// assert_eq!(died.await.to_string(), r#"["finished"]"#);
    /// assert!(node.kil(&node.node_port(), aemp::Reason::normal()).is_err());
    /// # Ok(()) }
    /// ```
    pub fn kil(&self, port: &PortId, reason: impl Into<Reason>) -> Result<(), Error> {
        self.check_open()?;
        let reason = reason.into();
        if port.is_node_port() {
            return Err(Error::KillNodePort(port.to_string()));
        }
        let local = port.node() == self.id().as_str();
        let reason = self.shared().sendable_reason(port, reason)?;
        let task = if local {
            Task::Kill {
                port: Str::from(port.name()),
                reason,
            }
        } else {
            Task::Kil {
                port: port.clone(),
                reason,
            }
        };
        self.inner.core.task(task);
        Ok(())
    }

    // ---- monitors ----------------------------------------------------------------------

    /// Watches a port (local or remote) or a node (pass its node port). The monitor fires once
    /// with the kill reason; at once with `no_such_port` when the port does not exist; with
    /// `("transport_error", node, text)` when the connection to its node is lost.
    ///
    /// Dropping the returned guard cancels the monitor; [`MonGuard::keep`] keeps it forever.
    ///
    /// A monitor whose request a peer would refuse (a port or node name too large for the
    /// node's [`Limits`](aemp_proto::codec::Limits) in `["", "mon1", name]` or the `g_find`
    /// that looks the node up) sends nothing and fires at once with `("die", "monitor
    /// refused: …")`; [`Node::try_mon`] returns [`Error::Refused`] instead.
    ///
    /// ```
    /// # use aemp::{msg, Monitor, Node};
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let node = Node::new("doc/%u")?;
    /// let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    /// let watcher = node.port_with(move |_cx, m| Ok(tx.send(m)?));
    /// let p = node.port().build();
    /// node.mon(&p, Monitor::send(&watcher, msg!["died"])).keep();
    /// node.kil(&p, vec![aemp::Value::from("oops")])?;
    /// assert_eq!(rx.recv().await, Some(msg!["died", "oops"]));
    /// # Ok(()) }
    /// ```
    pub fn mon(&self, port: &PortId, action: Monitor) -> MonGuard {
        let id = self.shared().next_guard();
        if self.inner.core.is_closed() {
            // Nothing will ever fire it: a callback learns at once.
            if let Monitor::Callback(f) = action {
                f(Reason::shutdown(self.id().as_str()));
            }
            return MonGuard::new(self.canceller(), id);
        }
        self.inner.core.task(Task::Mon(Box::new(MonRequest {
            port: port.clone(),
            id,
            action,
        })));
        MonGuard::new(self.canceller(), id)
    }

    /// [`Node::mon`], refusing with [`Error::Refused`] (and registering nothing) a monitor
    /// whose request a peer would refuse, instead of firing it at once.
    ///
    /// ```
    /// # use aemp::{Monitor, Node};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let node = Node::new("doc/%u")?;
    /// let p = node.port().build();
    /// let (tx, rx) = tokio::sync::oneshot::channel();
    /// node.try_mon(&p, Monitor::callback(move |r| drop(tx.send(r))))?
    ///     .keep();
    /// node.kil(&p, aemp::Reason::normal())?;
    /// assert!(rx.await?.is_empty());
    /// # Ok(()) }
    /// ```
    pub fn try_mon(&self, port: &PortId, action: Monitor) -> Result<MonGuard, Error> {
        self.shared().check_mon(port)?;
        Ok(self.mon(port, action))
    }

    /// Monitors a port and calls `f` with the reason.
    ///
    /// ```
    /// # use aemp::{msg, Monitor, Node};
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let node = Node::new("doc/%u")?;
    /// let p = node.port().build();
    /// let (tx, rx) = tokio::sync::oneshot::channel();
    /// let _guard = node.mon_cb(&p, move |reason| drop(tx.send(reason.to_string())));
    /// node.kil(&p, aemp::Reason::normal())?;
    /// assert_eq!(rx.await?, "normal");
    /// # Ok(()) }
    /// ```
    pub fn mon_cb(&self, port: &PortId, f: impl FnOnce(Reason) + Send + 'static) -> MonGuard {
        self.mon(port, Monitor::callback(f))
    }

    /// A future that resolves with the kill reason of `port` (an async `mon`).
    ///
    /// ```
    /// # use aemp::{msg, Monitor, Node};
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let node = Node::new("doc/%u")?;
    /// let p = node.port_with(|_cx, _m| Err("bad input".into()));
    /// let died = node.monitor(&p);
    /// node.snd(&p, msg!["x"])?;
    /// assert_eq!(died.await.to_string(), r#"["die","bad input"]"#);
    /// # Ok(()) }
    /// ```
    pub fn monitor(&self, port: &PortId) -> impl Future<Output = Reason> + Send + 'static {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let guard = self.mon_cb(port, move |reason| {
            let _ = tx.send(reason);
        });
        let node = self.id().as_str().to_string();
        async move {
            let r = rx.await.unwrap_or_else(|_| Reason::shutdown(&node));
            drop(guard);
            r
        }
    }

    /// Keeps `value` alive until `port` dies (Perl's `mon_guard`).
    ///
    /// ```
    /// # use aemp::{msg, Monitor, Node};
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let node = Node::new("doc/%u")?;
    /// let p = node.port().build();
    /// let resource = std::sync::Arc::new(());
    /// node.mon_guard(&p, resource.clone()); // lives as long as the port
    /// node.kil(&p, aemp::Reason::normal())?;
    /// while std::sync::Arc::strong_count(&resource) > 1 {
    ///     tokio::task::yield_now().await;
    /// }
    /// # Ok(()) }
    /// ```
    pub fn mon_guard(&self, port: &PortId, value: impl Send + 'static) {
        self.mon_cb(port, move |_| drop(value)).keep();
    }

    // ---- context -----------------------------------------------------------------------

    /// Runs `f` in the context of `port`: an error or panic kills the port with
    /// `("die", text)` (Perl's `peval`). Returns `f`'s value when it succeeded.
    ///
    /// ```
    /// # use aemp::{msg, Monitor, Node};
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let node = Node::new("doc/%u")?;
    /// let p = node.port().build();
    /// assert_eq!(node.peval(&p, |_port| "42".parse::<u32>()), Some(42));
    /// let died = node.monitor(&p);
    /// // An error kills the port.
    /// assert_eq!(node.peval(&p, |_port| "x".parse::<u32>()), None);
    /// assert_eq!(died.await[0].as_str(), Some("die"));
    /// # Ok(()) }
    /// ```
    pub fn peval<T, E: std::fmt::Display>(
        &self,
        port: &PortId,
        f: impl FnOnce(&PortId) -> Result<T, E>,
    ) -> Option<T> {
        let text = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(port))) {
            Ok(Ok(v)) => return Some(v),
            Ok(Err(e)) => e.to_string(),
            Err(panic) => kernel::panic_text(&panic),
        };
        let _ = self.kil(port, vec!["die".into(), text.into()]);
        None
    }

    /// Wraps a closure so that each call runs in the context of `port` (Perl's `psub`).
    ///
    /// ```
    /// # use aemp::{msg, Monitor, Node};
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let node = Node::new("doc/%u")?;
    /// let p = node.port().build();
    /// let mut parse = node.psub(&p, |s: &str| s.parse::<u32>());
    /// assert_eq!(parse("7"), Some(7));
    /// assert_eq!(parse("x"), None); // and the port is killed
    /// # Ok(()) }
    /// ```
    pub fn psub<A, T, E: std::fmt::Display>(
        &self,
        port: &PortId,
        mut f: impl FnMut(A) -> Result<T, E>,
    ) -> impl FnMut(A) -> Option<T> {
        let node = self.clone();
        let port = port.clone();
        move |a| node.peval(&port, |_| f(a))
    }

    /// Spawns a future in the context of `port`: if it returns an error or panics, the port is
    /// killed with `("die", text)`; if the port dies first, the future is dropped.
    ///
    /// ```
    /// # use aemp::{msg, Monitor, Node};
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let node = Node::new("doc/%u")?;
    /// let p = node.port().build();
    /// let died = node.monitor(&p);
    /// node.pspawn(&p, async { Err::<(), _>("the download failed") });
    /// assert_eq!(died.await.to_string(), r#"["die","the download failed"]"#);
    /// # Ok(()) }
    /// ```
    pub fn pspawn<E: std::fmt::Display + Send + 'static>(
        &self,
        port: &PortId,
        fut: impl Future<Output = Result<(), E>> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let node = self.clone();
        let port2 = port.clone();
        let died = self.monitor(port);
        tokio::spawn(async move {
            use futures_util_lite::catch_unwind_future;
            tokio::select! {
                r = catch_unwind_future(fut) => {
                    let text = match r {
                        Ok(Ok(())) => return,
                        Ok(Err(e)) => e.to_string(),
                        Err(panic) => kernel::panic_text(&panic),
                    };
                    let _ = node.kil(&port2, vec!["die".into(), text.into()]);
                }
                _ = died => {}
            }
        })
    }

    // ---- spawn -------------------------------------------------------------------------

    /// Registers a named function, usable as a spawn init function and by `snd_to_func`.
    /// The function runs in the context of the (new) port and must install its handlers.
    ///
    /// ```
    /// # use aemp::{msg, Monitor, Node};
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let node = Node::new("doc/%u")?;
    /// node.register("app::counter", |cx, args| {
    ///     let mut n = args.first().and_then(|v| v.as_i64()).unwrap_or(0);
    ///     cx.rcv_default(move |cx, m| {
    ///         n += 1;
    ///         cx.reply(&m, msg![n])?;
    ///         Ok(())
    ///     });
    ///     Ok(())
    /// });
    /// let counter = node.spawn(node.id(), "app::counter", vec![10.into()])?;
    /// assert_eq!(node.cal(&counter, msg!["inc"]).await?, msg![11]);
    /// # Ok(()) }
    /// ```
    pub fn register(
        &self,
        name: &str,
        f: impl Fn(&mut Cx<'_>, Vec<Value>) -> HandlerResult + Send + Sync + 'static,
    ) {
        let f: NamedFn = Arc::new(f);
        self.shared().registry.write().insert(name, f);
    }

    /// Creates a port on `node` and runs the init function registered there under `init` in
    /// its context, with `args`. Returns the new port's ID at once. On the local node the init
    /// function never runs before this returns: it waits behind a gate that `spawn` opens as
    /// its last step (on a multi-threaded runtime it may then run at once, on another worker).
    ///
    /// Arguments that a remote node would refuse in the spawn request are refused with
    /// [`Error::Refused`], for the local node too (see [`Node::snd`]).
    ///
    /// ```
    /// # use aemp::{msg, Monitor, Node};
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let node = Node::new("doc/%u")?;
    /// // Usually on another node; any node that registered the function will do.
    /// node.register("app::echo", |cx, _args| {
    ///     cx.rcv_default(|cx, m| {
    ///         cx.reply(&m, msg![m[0].clone()])?;
    ///         Ok(())
    ///     });
    ///     Ok(())
    /// });
    /// let echo = node.spawn(node.id(), "app::echo", vec![])?; // returns at once
    /// assert_eq!(node.cal(&echo, msg!["hi"]).await?, msg!["hi"]);
    /// # Ok(()) }
    /// ```
    pub fn spawn(&self, node: &NodeId, init: &str, args: Vec<Value>) -> Result<PortId, Error> {
        let name = self.shared().namer.next_spawn();
        let port = node.port(&name);
        if node == self.id() {
            // Checked as the request a remote spawn sends: one rule for both.
            let req = NodeReq::Spawn {
                port: name.clone(),
                init: Str::from(init),
                args,
            }
            .to_msg();
            if let Err(e) = self.shared().check("", req.as_slice()) {
                return Err(refused(req, e));
            }
            // The arguments follow the tag, the port name and the init function's name.
            let args = req.into_vec().split_off(3);
            // The dispatcher may run on another thread: the init function waits behind a gate
            // that opens only when this call returns.
            let gate = Arc::new(std::sync::atomic::AtomicBool::new(false));
            self.inner.core.task(Task::Spawn {
                name,
                init: Str::from(init),
                args,
                gate: gate.clone(),
            });
            gate.store(true, std::sync::atomic::Ordering::Release);
            return Ok(port);
        }
        let req = NodeReq::Spawn {
            port: name,
            init: Str::from(init),
            args,
        };
        self.snd(&node.node_port(), req.to_msg())?;
        Ok(port)
    }

    // ---- cal, after, inbox -------------------------------------------------------------

    /// Sends `msg` with a fresh reply port appended and waits for the first reply. Await the
    /// returned [`Cal`] (optionally after `.timeout(d)`), or use [`Cal::then`] for a callback.
    ///
    /// ```
    /// # use aemp::{msg, Monitor, Node};
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let node = Node::new("doc/%u")?;
    /// let p = node.port_with(|cx, m| {
    ///     cx.reply(&m, msg!["ok"])?;
    ///     Ok(())
    /// });
    /// let reply = node.cal(&p, msg!["q"]).timeout(Duration::from_secs(5)).await?;
    /// assert_eq!(reply, msg!["ok"]);
    /// # Ok(()) }
    /// ```
    pub fn cal(&self, port: &PortId, msg: impl Into<Msg>) -> Cal {
        Cal::new(self.clone(), port.clone(), msg.into())
    }

    /// Sends `msg` to `port` after `delay`. Dropping the guard cancels it;
    /// [`TimerGuard::keep`] lets it run. What [`Node::snd`] would refuse is dropped then,
    /// with a WARN log line.
    ///
    /// ```
    /// # use aemp::{msg, Monitor, Node};
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let node = Node::new("doc/%u")?;
    /// let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    /// let p = node.port_with(move |_cx, m| Ok(tx.send(m)?));
    /// node.after_snd(Duration::from_millis(10), &p, msg!["tick"]).keep();
    /// assert_eq!(rx.recv().await, Some(msg!["tick"]));
    /// # Ok(()) }
    /// ```
    pub fn after_snd(
        &self,
        delay: std::time::Duration,
        port: &PortId,
        msg: impl Into<Msg>,
    ) -> TimerGuard {
        let node = self.clone();
        let port = port.clone();
        let msg = msg.into();
        timer::after(delay, move || {
            if let Err(e) = node.snd(&port, msg) {
                tracing::warn!(port = %port, error = %e, "delayed message not sent");
            }
        })
    }

    /// Runs `f` after `delay`. Dropping the guard cancels it.
    ///
    /// ```
    /// # use aemp::{msg, Monitor, Node};
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let node = Node::new("doc/%u")?;
    /// let (tx, rx) = tokio::sync::oneshot::channel();
    /// node.after(Duration::from_millis(10), move || drop(tx.send("later"))).keep();
    /// assert_eq!(rx.await?, "later");
    /// # Ok(()) }
    /// ```
    pub fn after(
        &self,
        delay: std::time::Duration,
        f: impl FnOnce() + Send + 'static,
    ) -> TimerGuard {
        timer::after(delay, f)
    }

    /// Creates a port whose messages are awaited one at a time. `capacity` bounds the queue:
    /// a message that finds it full kills the port with `("inbox_overflow", capacity)`, so
    /// monitors see it; messages already queued can still be received.
    ///
    /// ```
    /// # use aemp::{msg, Monitor, Node};
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let node = Node::new("doc/%u")?;
    /// let mut inbox = node.inbox(16);
    /// node.snd(inbox.port(), msg!["hello"])?;
    /// assert_eq!(inbox.recv().await, Some(msg!["hello"]));
    /// # Ok(()) }
    /// ```
    pub fn inbox(&self, capacity: usize) -> Inbox {
        Inbox::new(self, capacity)
    }

    /// Number of live local ports (for tests and statistics); asks the dispatcher.
    ///
    /// ```
    /// # use aemp::{msg, Monitor, Node};
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let node = Node::new("doc/%u")?;
    /// let before = node.port_count().await;
    /// let _p = node.port().build();
    /// assert_eq!(node.port_count().await, before + 1);
    /// # Ok(()) }
    /// ```
    pub async fn port_count(&self) -> usize {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.inner.core.push(Cmd::Query(Query::PortCount(tx)));
        rx.await.unwrap_or(0)
    }

    /// Number of monitors this node holds, on its own ports and on other nodes and their
    /// ports (for tests, statistics and leak checks: a finished `cal` leaves none behind);
    /// asks the dispatcher.
    ///
    /// ```
    /// # use aemp::{msg, Monitor, Node};
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let node = Node::new("doc/%u")?;
    /// let before = node.monitor_count().await;
    /// let p = node.port().build();
    /// let guard = node.mon_cb(&p, |_| {});
    /// assert_eq!(node.monitor_count().await, before + 1);
    /// drop(guard);
    /// assert_eq!(node.monitor_count().await, before);
    /// # Ok(()) }
    /// ```
    pub async fn monitor_count(&self) -> usize {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.inner.core.push(Cmd::Query(Query::MonitorCount(tx)));
        rx.await.unwrap_or(0)
    }

    /// Whether a local port exists; asks the dispatcher.
    ///
    /// ```
    /// # use aemp::{msg, Monitor, Node};
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let node = Node::new("doc/%u")?;
    /// let p = node.port().build();
    /// assert!(node.port_exists(&p).await);
    /// node.kil(&p, aemp::Reason::normal())?;
    /// assert!(!node.port_exists(&p).await);
    /// # Ok(()) }
    /// ```
    pub async fn port_exists(&self, port: &PortId) -> bool {
        let Ok(name) = self.local_name(port) else {
            return false;
        };
        let name = Str::from(name);
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.inner
            .core
            .push(Cmd::Query(Query::PortExists(name, tx)));
        rx.await.unwrap_or(false)
    }
}

/// The error for a refused message (or argument list, or value), which is dropped here
/// without recursion, however deeply nested it is.
pub(crate) fn refused(values: impl IntoIterator<Item = Value>, e: LimitError) -> Error {
    drop_nested(values);
    Error::Refused(e)
}

/// Builder for a port with handlers, returned by [`Node::port`].
#[must_use = "a port builder does nothing until .build()"]
pub struct PortBuilder<'n> {
    node: &'n Node,
    default: Option<Handler>,
    tags: Vec<(Str, Handler)>,
}

impl PortBuilder<'_> {
    /// Handler for messages tagged `tag` (the tag is removed before the handler sees them).
    pub fn on(
        mut self,
        tag: &str,
        h: impl FnMut(&mut Cx<'_>, Msg) -> HandlerResult + Send + 'static,
    ) -> Self {
        self.tags.push((Str::from(tag), Box::new(h)));
        self
    }

    /// Handler for every message no tag handler takes (tag included).
    pub fn default(
        mut self,
        h: impl FnMut(&mut Cx<'_>, Msg) -> HandlerResult + Send + 'static,
    ) -> Self {
        self.default = Some(Box::new(h));
        self
    }

    /// Creates the port and returns its ID. A port without any handler is killed with
    /// `unhandled_message` by its first message.
    pub fn build(self) -> PortId {
        let core = self.node.core();
        let name = core.shared.namer.next_local();
        let id = core.shared.id.port(&name);
        let PortBuilder { default, tags, .. } = self;
        core.task(Task::CreatePort {
            name,
            default,
            tags,
        });
        id
    }
}

impl Cx<'_> {
    /// A handle of this node, for async work and timers.
    pub fn node(&self) -> Node {
        let inner = self
            .host
            .owner()
            .and_then(|o| o.downcast::<NodeInner>().ok());
        match inner {
            Some(inner) => Node { inner },
            None => Node::closed(self.node_id()),
        }
    }
}

/// A tiny `catch_unwind` for futures, so that a panicking port future kills its port instead
/// of only its task.
mod futures_util_lite {
    use std::any::Any;
    use std::future::Future;
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::pin::Pin;
    use std::task::{Context, Poll};

    pub(crate) struct CatchUnwind<F>(Pin<Box<F>>);

    pub(crate) fn catch_unwind_future<F: Future>(f: F) -> CatchUnwind<F> {
        CatchUnwind(Box::pin(f))
    }

    impl<F: Future> Future for CatchUnwind<F> {
        type Output = Result<F::Output, Box<dyn Any + Send>>;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            let inner = self.0.as_mut();
            match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
                Ok(Poll::Pending) => Poll::Pending,
                Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
                Err(e) => Poll::Ready(Err(e)),
            }
        }
    }
}

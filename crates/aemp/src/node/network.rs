//! Configuring a node for the network, and the node's view of other nodes.

use super::{Node, DEFAULT_SPIN};
use crate::config::{addr::resolve_all, Config};
use crate::error::Error;
use crate::kernel::Shared;
use crate::runtime::{Cmd, Core, NodeEvent, Query};
use crate::transport::{Counters, EventSink, NetConfig, Transport};
use aemp_proto::codec::Limits;
use aemp_proto::handshake::HandshakeConfig;
use aemp_proto::ids::PortNamer;
use aemp_proto::{NodeId, Str};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

impl Node {
    /// Creates a node from a configuration (see [`Config::builder`]): binds its listeners and
    /// connects it to the network. Bad configuration (unresolvable binds, unusable handshake
    /// settings, bad certificate, a `services` entry other than the built-in
    /// `AnyEvent::MP::Global`) is an error here. A configuration that names services needs
    /// their functions: see [`Node::builder`].
    ///
    /// ```
    /// # use aemp::{msg, Node};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let cfg = aemp::Config::builder()
    ///     .norc(true) // ignore ~/.perl-anyevent-mp
    ///     .nodeid("svc/%u")
    ///     .binds(["127.0.0.1:0"])
    ///     .secret("s3cret")
    ///     .build()?;
    /// let node = Node::configure(cfg).await?;
    /// assert_eq!(node.listen_addrs().len(), 1);
    /// # Ok(()) }
    /// ```
    pub async fn configure(cfg: Config) -> Result<Node, Error> {
        Node::builder(cfg).configure().await
    }

    /// [`Node::configure`] with explicit limits (nesting depth, message size): what the node
    /// accepts from peers, and what it sends (the node assumes that its peers use the same
    /// limits: a message they would refuse is refused where it enters the node, see
    /// [`Node::snd`]).
    ///
    /// ```
    /// # use aemp::{msg, Node};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let cfg = aemp::Config::builder().norc(true).nodeid("small/%u").binds(["127.0.0.1:0"]).secret("s").build()?;
    /// let limits = aemp::Limits { max_message: 1 << 20, ..aemp::Limits::default() };
    /// let node = Node::configure_with_limits(cfg, limits).await?;
    /// let far: aemp::PortId = "elsewhere#inbox".parse()?;
    /// // Bigger than a peer with these limits would take: refused at the call.
    /// assert!(node.snd(&far, msg!["x".repeat(2 << 20)]).is_err());
    /// # Ok(()) }
    /// ```
    pub async fn configure_with_limits(cfg: Config, limits: Limits) -> Result<Node, Error> {
        Node::builder(cfg).limits(limits).configure().await
    }

    /// The network part of configuring (services are started by the caller,
    /// [`NodeBuilder::configure`](super::NodeBuilder::configure)).
    pub(super) async fn configure_network(
        cfg: Config,
        limits: Limits,
        data_conn: crate::DataConnLimits,
    ) -> Result<Node, Error> {
        tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let bind_eps = cfg.binds.clone();
        let binds = tokio::task::spawn_blocking(move || resolve_all(&bind_eps))
            .await
            .map_err(|e| Error::Io(std::io::Error::other(format!("resolving binds: {e}"))))??;
        let mut net_cfg = NetConfig {
            binds,
            cert: cfg.cert.clone(),
            monitor_timeout: cfg.monitor_timeout,
            connect_interval: cfg.connect_interval,
            nodelay: cfg.nodelay,
            limits,
            trace: false,
            send_queue_limit: cfg.send_queue_limit.bytes(),
            data_conn,
        };
        let secret = cfg
            .secret
            .as_ref()
            .map(|s| s.as_bytes().to_vec())
            .filter(|s| !s.is_empty());
        let mut hs = HandshakeConfig::new(cfg.node_id.as_str(), secret);
        hs.auth_accept = cfg.auth_accept.clone();
        hs.auth_offer = cfg.auth_offer.clone();
        hs.framings = cfg.framing_format.clone();
        let mut shared = Shared::new(
            cfg.node_id.clone(),
            PortNamer::new(&crate::config::port_prefix(cfg.randomised), &cfg.runiq),
        );
        shared.limits = limits;
        // One switch for the whole node, read once (when `Shared` was made).
        net_cfg.trace = shared.trace;
        let shared = Arc::new(shared);
        shared.secure.store(cfg.secure, Ordering::Relaxed);
        let core = Arc::new(Core::new(shared, DEFAULT_SPIN));
        let sink: Weak<dyn EventSink> = {
            let w: Weak<Core> = Arc::downgrade(&core);
            w
        };
        let transport = Arc::new(Transport::new(cfg.node_id.clone(), net_cfg, hs, sink)?);
        let bound = transport.listen().await?;
        let seed_eps = cfg.seeds.clone();
        let seeds = tokio::task::spawn_blocking(move || resolve_all(&seed_eps))
            .await
            .map_err(|e| Error::Io(std::io::Error::other(format!("resolving seeds: {e}"))))??;
        // A node that finds itself among its seeds, has no seeds at all, or runs the global
        // service as configured, is global from the start.
        let own_seed = seeds.iter().any(|s| bound.contains(s));
        let wants_global = cfg.services.iter().any(|s| s.is_global_service());
        let global = seeds.is_empty() || own_seed || wants_global;
        let seeds: Vec<SocketAddr> = seeds.into_iter().filter(|s| !bound.contains(s)).collect();
        Ok(Node::start(core, Some(transport), seeds, bound, global))
    }

    fn transport(&self) -> Option<&Arc<Transport>> {
        self.inner.transport.as_ref()
    }

    /// The addresses this node listens on (empty for a node without network).
    ///
    /// ```
    /// # use aemp::{msg, Config, Node, NodeEvent};
    /// # use std::time::Duration;
    /// # async fn net(name: &str) -> Result<Node, aemp::Error> {
    /// #     let cfg = Config::builder().norc(true).nodeid(format!("{name}/%u"))
    /// #         .binds(["127.0.0.1:0"]).secret("doc").build()?;
    /// #     Node::configure(cfg).await
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (a, b) = (net("a").await?, net("b").await?);
    /// let addr = a.listen_addrs()[0];
    /// assert!(addr.ip().is_loopback() && addr.port() != 0);
    /// # Ok(()) }
    /// ```
    pub fn listen_addrs(&self) -> Vec<SocketAddr> {
        self.transport().map(|t| t.bound()).unwrap_or_default()
    }

    /// Connects to a node at `addr` (its node ID is learned from the greeting). Returns at
    /// once; watch [`Node::node_events`] for the result.
    ///
    /// ```
    /// # use aemp::{msg, Config, Node, NodeEvent};
    /// # use std::time::Duration;
    /// # async fn net(name: &str) -> Result<Node, aemp::Error> {
    /// #     let cfg = Config::builder().norc(true).nodeid(format!("{name}/%u"))
    /// #         .binds(["127.0.0.1:0"]).secret("doc").build()?;
    /// #     Node::configure(cfg).await
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (a, b) = (net("a").await?, net("b").await?);
    /// a.connect(b.listen_addrs()[0])?;
    /// assert!(a.wait_up(b.id(), Duration::from_secs(10)).await);
    /// # Ok(()) }
    /// ```
    pub fn connect(&self, addr: SocketAddr) -> Result<(), Error> {
        if self.transport().is_none() {
            return Err(Error::NoNetwork);
        }
        self.core().push(Cmd::Dial(addr, None));
        Ok(())
    }

    /// Tells the node where `node` listens, so that sending to it can connect.
    ///
    /// ```
    /// # use aemp::{msg, Config, Node, NodeEvent};
    /// # use std::time::Duration;
    /// # async fn net(name: &str) -> Result<Node, aemp::Error> {
    /// #     let cfg = Config::builder().norc(true).nodeid(format!("{name}/%u"))
    /// #         .binds(["127.0.0.1:0"]).secret("doc").build()?;
    /// #     Node::configure(cfg).await
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (a, b) = (net("a").await?, net("b").await?);
    /// a.add_address(b.id(), b.listen_addrs())?;
    /// a.snd(&b.node_port(), msg!["devnull"])?; // connects on demand
    /// assert!(a.wait_up(b.id(), Duration::from_secs(10)).await);
    /// # Ok(()) }
    /// ```
    pub fn add_address(&self, node: &NodeId, addrs: Vec<SocketAddr>) -> Result<(), Error> {
        if self.transport().is_none() {
            return Err(Error::NoNetwork);
        }
        self.core()
            .push(Cmd::AddAddress(Str::from(node.as_str()), addrs));
        Ok(())
    }

    /// The nodes currently connected.
    ///
    /// ```
    /// # use aemp::{msg, Config, Node, NodeEvent};
    /// # use std::time::Duration;
    /// # async fn net(name: &str) -> Result<Node, aemp::Error> {
    /// #     let cfg = Config::builder().norc(true).nodeid(format!("{name}/%u"))
    /// #         .binds(["127.0.0.1:0"]).secret("doc").build()?;
    /// #     Node::configure(cfg).await
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (a, b) = (net("a").await?, net("b").await?);
    /// a.connect(b.listen_addrs()[0])?;
    /// a.wait_up(b.id(), Duration::from_secs(10)).await;
    /// assert!(a.up_nodes().await.contains(b.id()));
    /// # Ok(()) }
    /// ```
    pub async fn up_nodes(&self) -> Vec<NodeId> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.core().push(Cmd::Query(Query::UpNodes(tx)));
        rx.await.unwrap_or_default()
    }

    /// Whether `node` is connected.
    ///
    /// ```
    /// # use aemp::{msg, Config, Node, NodeEvent};
    /// # use std::time::Duration;
    /// # async fn net(name: &str) -> Result<Node, aemp::Error> {
    /// #     let cfg = Config::builder().norc(true).nodeid(format!("{name}/%u"))
    /// #         .binds(["127.0.0.1:0"]).secret("doc").build()?;
    /// #     Node::configure(cfg).await
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (a, b) = (net("a").await?, net("b").await?);
    /// assert!(!a.is_up(b.id()).await);
    /// a.connect(b.listen_addrs()[0])?;
    /// a.wait_up(b.id(), Duration::from_secs(10)).await;
    /// assert!(a.is_up(b.id()).await);
    /// # Ok(()) }
    /// ```
    pub async fn is_up(&self, node: &NodeId) -> bool {
        self.up_nodes().await.contains(node)
    }

    /// Waits until `node` is connected (or the timeout passes); returns whether it is.
    ///
    /// ```
    /// # use aemp::{msg, Config, Node, NodeEvent};
    /// # use std::time::Duration;
    /// # async fn net(name: &str) -> Result<Node, aemp::Error> {
    /// #     let cfg = Config::builder().norc(true).nodeid(format!("{name}/%u"))
    /// #         .binds(["127.0.0.1:0"]).secret("doc").build()?;
    /// #     Node::configure(cfg).await
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (a, b) = (net("a").await?, net("b").await?);
    /// a.connect(b.listen_addrs()[0])?;
    /// if !a.wait_up(b.id(), Duration::from_secs(10)).await {
    ///     eprintln!("{} did not come up", b.id());
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn wait_up(&self, node: &NodeId, timeout: std::time::Duration) -> bool {
        let mut ev = self.node_events();
        if self.is_up(node).await {
            return true;
        }
        tokio::time::timeout(timeout, async {
            while let Some(ev) = ev.recv().await {
                match ev {
                    Ok(NodeEvent::Up(n)) if &n == node => return true,
                    Ok(_) => {}
                    // The event may have been among the missed ones: look at the state.
                    Err(_) => {
                        if self.is_up(node).await {
                            return true;
                        }
                    }
                }
            }
            false
        })
        .await
        .unwrap_or(false)
    }

    /// Waits until the connection to `node` can take more data without growing its queue
    /// further (fewer than 1 MiB waiting to be written, or a quarter of a smaller
    /// `send_queue_limit`), or resolves at once when the node is not connected. `snd` never
    /// blocks; a sender that produces faster than the network carries can await this
    /// between batches (of less than a quarter of the send queue limit), which is what
    /// Erlang's busy distribution buffer does implicitly, and stays clear of the limit (see
    /// [`SendQueueLimit`](crate::SendQueueLimit)). It does not wait for a node that is
    /// being reached: await [`Node::wait_up`] first.
    ///
    /// ```
    /// # use aemp::{msg, Config, Node, NodeEvent};
    /// # use std::time::Duration;
    /// # async fn net(name: &str) -> Result<Node, aemp::Error> {
    /// #     let cfg = Config::builder().norc(true).nodeid(format!("{name}/%u"))
    /// #         .binds(["127.0.0.1:0"]).secret("doc").build()?;
    /// #     Node::configure(cfg).await
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (a, b) = (net("a").await?, net("b").await?);
    /// let sink = b.port_with(|_cx, _m| Ok(()));
    /// a.add_address(b.id(), b.listen_addrs())?;
    /// for chunk in 0..100 {
    ///     a.snd(&sink, msg!["data", chunk, "x".repeat(64 * 1024)])?;
    ///     a.writable(b.id()).await; // waits while more than 1 MiB is queued
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn writable(&self, node: &NodeId) {
        // Messages sent through the node task may not be in the connection's queue yet:
        // let it catch up first (a round trip, only while it has work).
        if self.core().has_backlog() {
            let _ = self.up_nodes().await;
        }
        let tx = self.transport().and_then(|t| {
            t.live()
                .into_iter()
                .find(|tx| tx.peer.as_str() == node.as_str())
        });
        if let Some(tx) = tx {
            tx.writable().await;
        }
    }

    /// Bytes queued for writing to `node` (0 when not connected).
    ///
    /// ```
    /// # use aemp::{msg, Config, Node, NodeEvent};
    /// # use std::time::Duration;
    /// # async fn net(name: &str) -> Result<Node, aemp::Error> {
    /// #     let cfg = Config::builder().norc(true).nodeid(format!("{name}/%u"))
    /// #         .binds(["127.0.0.1:0"]).secret("doc").build()?;
    /// #     Node::configure(cfg).await
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (a, b) = (net("a").await?, net("b").await?);
    /// println!("{} bytes waiting for {}", a.queued_bytes(b.id()), b.id());
    /// assert_eq!(a.queued_bytes(b.id()), 0); // not connected
    /// # Ok(()) }
    /// ```
    pub fn queued_bytes(&self, node: &NodeId) -> usize {
        self.transport()
            .and_then(|t| {
                t.live()
                    .into_iter()
                    .find(|tx| tx.peer.as_str() == node.as_str())
            })
            .map_or(0, |tx| tx.queued_bytes())
    }

    /// Traffic of every live connection, sorted by peer: messages and bytes in and out of
    /// the current connection, bytes waiting to be written, and how often a connection to the
    /// peer came up again. [`Node::stats`] adds node-wide counts; [`Node::stats_of`] asks
    /// another node for its own.
    ///
    /// ```no_run
    /// # async fn f(node: aemp::Node) {
    /// for p in node.peer_stats() {
    ///     println!(
    ///         "{}: {} msgs / {} bytes in, {} msgs / {} bytes out, {} bytes queued, {} reconnects",
    ///         p.node, p.msgs_in, p.bytes_in, p.msgs_out, p.bytes_out, p.queued_bytes, p.reconnects
    ///     );
    /// }
    /// # }
    /// ```
    pub fn peer_stats(&self) -> Vec<PeerStats> {
        let Some(t) = self.transport() else {
            return Vec::new();
        };
        let mut v: Vec<PeerStats> = t
            .live()
            .iter()
            .map(|tx| PeerStats {
                node: tx.peer.clone(),
                msgs_out: tx.msgs_out.load(Ordering::Relaxed),
                bytes_out: tx.bytes_out.load(Ordering::Relaxed),
                msgs_in: tx.msgs_in.load(Ordering::Relaxed),
                bytes_in: tx.bytes_in.load(Ordering::Relaxed),
                queued_bytes: tx.queued_bytes(),
                reconnects: t.connections_up(&tx.peer).saturating_sub(1),
            })
            .collect();
        v.sort_by(|a, b| a.node.cmp(&b.node));
        v
    }

    /// Traffic counters (messages and bytes in/out), if the node has a network.
    ///
    /// ```
    /// # use aemp::{msg, Config, Node, NodeEvent};
    /// # use std::time::Duration;
    /// # async fn net(name: &str) -> Result<Node, aemp::Error> {
    /// #     let cfg = Config::builder().norc(true).nodeid(format!("{name}/%u"))
    /// #         .binds(["127.0.0.1:0"]).secret("doc").build()?;
    /// #     Node::configure(cfg).await
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (a, b) = (net("a").await?, net("b").await?);
    /// if let Some(c) = a.counters() {
    ///     println!("{c:?}");
    /// }
    /// assert!(Node::new("local/%u")?.counters().is_none());
    /// # Ok(()) }
    /// ```
    pub fn counters(&self) -> Option<&Counters> {
        self.transport().map(|t| &t.counters)
    }
}

/// Traffic of the connection to one peer (see [`Node::peer_stats`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerStats {
    /// The peer.
    pub node: NodeId,
    /// Messages sent.
    pub msgs_out: u64,
    /// Bytes written: counted when a write to the socket has returned, which can be a
    /// moment after the peer has received and handled what it carried.
    pub bytes_out: u64,
    /// Messages received.
    pub msgs_in: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes queued, not yet written (the queue depth of the connection).
    pub queued_bytes: usize,
    /// How many times a connection to the peer came up after the first one, since this
    /// node started.
    pub reconnects: u64,
}

//! The tokio layer of the AEMP transport: listeners, outgoing connections, and the registry
//! that guarantees one connection per pair of nodes.
//!
//! The protocol itself (handshake, framing) is sans-IO in `aemp-proto`; this module only moves
//! bytes between sockets and those state machines, and reports connections going up and down
//! to the kernel, which owns the per-node state (`kernel::remote`).
//!
//! # One connection per node pair
//!
//! See the `registry` module: every connection asks the registry before it sends its auth line, and
//! both nodes keep the same connection when they dial each other at once, without a spurious
//! `transport_error`. A connection arriving when one is already up is refused, as the
//! reference does (PROTOCOL.md §10.13).

pub(crate) mod connection;
pub(crate) mod registry;
pub mod tls;

use crate::kernel::{Cmd, Core, Kernel};
use aemp_proto::codec::{Framing, Limits};
use aemp_proto::handshake::HandshakeConfig;
use aemp_proto::{NodeId, Str};
use parking_lot::Mutex;
use registry::Registry;
use rustc_hash::FxHashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;

/// Network settings of a node (the transport part of the configuration).
#[derive(Clone, Debug)]
pub struct NetConfig {
    /// Addresses to listen on (port 0 = ephemeral).
    pub binds: Vec<SocketAddr>,
    /// The shared secret (`None` or empty: only TLS can authenticate).
    pub secret: Option<Vec<u8>>,
    /// PEM with key and certificate(s) for TLS, also the trusted set.
    pub cert: Option<String>,
    /// Auth methods advertised (accepted) in the greeting.
    pub auth_accept: Vec<String>,
    /// Auth methods we are willing to send.
    pub auth_offer: Vec<String>,
    /// Framings we accept and may send, in order of preference.
    pub framings: Vec<String>,
    /// Handshake read-inactivity timeout.
    pub monitor_timeout: Duration,
    /// Overall timeout for reaching a node.
    pub connect_interval: Duration,
    /// TCP_NODELAY.
    pub nodelay: bool,
    /// Decoder limits (nesting depth, message size).
    pub limits: Limits,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            binds: Vec::new(),
            secret: None,
            cert: None,
            auth_accept: aemp_proto::handshake::DEFAULT_AUTH_ACCEPT
                .iter()
                .map(|s| s.to_string())
                .collect(),
            auth_offer: aemp_proto::handshake::DEFAULT_AUTH_OFFER
                .iter()
                .map(|s| s.to_string())
                .collect(),
            framings: aemp_proto::handshake::DEFAULT_FRAMINGS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            monitor_timeout: Duration::from_secs(30),
            connect_interval: Duration::from_secs(2),
            nodelay: true,
            limits: Limits::default(),
        }
    }
}

/// Waits for the next node that comes up on an event stream from [`crate::Node::node_events`]
/// (missed events, if the stream lagged, are skipped); `None` when the node is gone.
pub async fn next_up(events: &mut broadcast::Receiver<NodeEvent>) -> Option<NodeId> {
    loop {
        match events.recv().await {
            Ok(NodeEvent::Up(id)) => return Some(id),
            Ok(NodeEvent::Down(..)) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => return None,
        }
    }
}

/// A node coming up or going down.
#[derive(Clone, Debug, PartialEq)]
pub enum NodeEvent {
    /// A connection to this node was established.
    Up(NodeId),
    /// The connection to this node was lost (with the reason text).
    Down(NodeId, String),
}

/// Traffic counters of the node (all connections).
#[derive(Default, Debug)]
pub struct Counters {
    /// Messages received.
    pub msgs_in: AtomicU64,
    /// Bytes received (data phase).
    pub bytes_in: AtomicU64,
    /// Bytes written (data phase).
    pub bytes_out: AtomicU64,
    /// Connections closed because of bad input.
    pub protocol_errors: AtomicU64,
}

/// The network side of a node, shared by its listeners, connections and kernel.
pub(crate) struct Network {
    pub core: Weak<Core>,
    pub id: NodeId,
    pub cfg: NetConfig,
    pub hs: HandshakeConfig,
    pub tls: Option<Arc<tls::TlsIdentity>>,
    pub bound: Mutex<Vec<SocketAddr>>,
    pub registry: Mutex<Registry>,
    /// Known listen addresses of other nodes (from explicit connects, seeds and look-ups).
    pub addr_book: Mutex<FxHashMap<Str, Vec<SocketAddr>>>,
    conn_ids: AtomicU64,
    pub events: broadcast::Sender<NodeEvent>,
    pub counters: Counters,
    /// The live connections by node, for sends that bypass the kernel (`Node::snd`).
    /// Invariant: an entry exists only between the kernel's `conn_up` (after it flushed what
    /// was queued for the node) and its `conn_down` for the same connection.
    pub links: parking_lot::RwLock<FxHashMap<Str, Arc<connection::ConnTx>>>,
    /// The accept tasks, stopped (and their sockets closed) when the node shuts down.
    pub listeners: Mutex<Vec<tokio::task::AbortHandle>>,
    /// Re-dials left per node after lost simultaneous connects (reset when it comes up).
    pub redials: Mutex<FxHashMap<Str, u8>>,
    /// Seed addresses and the node ID learned behind each (§6.2).
    pub seeds: Mutex<FxHashMap<SocketAddr, Option<NodeId>>>,
}

impl Network {
    pub(crate) fn new(core: &Arc<Core>, cfg: NetConfig) -> Result<Arc<Network>, crate::Error> {
        let id = core.id.clone();
        let id_str = id.clone();
        let tls = match &cfg.cert {
            Some(pem) => Some(Arc::new(
                tls::TlsIdentity::from_pem(pem).map_err(|e| crate::Error::Config(e.to_string()))?,
            )),
            None => None,
        };
        let mut hs =
            HandshakeConfig::new(id.as_str(), cfg.secret.clone().filter(|s| !s.is_empty()));
        hs.auth_accept = cfg.auth_accept.clone();
        hs.auth_offer = cfg.auth_offer.clone();
        hs.framings = cfg
            .framings
            .iter()
            .filter(|f| Framing::from_name(f).is_some())
            .cloned()
            .collect();
        hs.tls_available = tls.is_some();
        hs.validate()
            .map_err(|e| crate::Error::Config(format!("handshake settings: {e}")))?;
        if hs.secret.is_none() && tls.is_none() {
            tracing::warn!(
                "no secret and no certificate configured: this node cannot connect to anything"
            );
        }
        let (events, _) = broadcast::channel(1024);
        Ok(Arc::new(Network {
            core: Arc::downgrade(core),
            id,
            cfg,
            hs,
            tls,
            bound: Mutex::new(Vec::new()),
            registry: Mutex::new(Registry::new(id_str.as_str())),
            addr_book: Mutex::new(FxHashMap::default()),
            conn_ids: AtomicU64::new(1),
            events,
            counters: Counters::default(),
            seeds: Mutex::new(FxHashMap::default()),
            redials: Mutex::new(FxHashMap::default()),
            listeners: Mutex::new(Vec::new()),
            links: parking_lot::RwLock::new(FxHashMap::default()),
        }))
    }

    /// Stops listening and closes every connection (the node shuts down).
    pub(crate) fn shutdown(&self) {
        for l in self.listeners.lock().drain(..) {
            l.abort();
        }
        for (_, tx) in self.links.write().drain() {
            tx.close();
        }
    }

    /// Queues a closure for the kernel, if the node still exists.
    pub(crate) fn to_kernel(&self, f: impl FnOnce(&mut Kernel) + Send + 'static) {
        if let Some(core) = self.core.upgrade() {
            core.push(Cmd::Exec(Box::new(f)));
        }
    }

    pub(crate) fn next_conn_id(&self) -> u64 {
        self.conn_ids.fetch_add(1, Ordering::Relaxed)
    }

    /// Binds every configured listener and starts accepting.
    pub(crate) async fn listen(self: &Arc<Self>) -> Result<Vec<SocketAddr>, crate::Error> {
        let mut bound = Vec::new();
        for addr in &self.cfg.binds {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|e| crate::Error::Config(format!("cannot bind {addr}: {e}")))?;
            let local = listener.local_addr()?;
            bound.push(local);
            tracing::info!(node = %self.id, addr = %local, "listening");
            let net = Arc::downgrade(self);
            let task = tokio::spawn(accept_loop(net, listener));
            self.listeners.lock().push(task.abort_handle());
        }
        self.bound.lock().extend(bound.iter().copied());
        Ok(bound)
    }

    /// Dials `addr`, meant for node `target` if known (else the node ID is learned from the
    /// greeting). A dial to a node that is connected or being connected is not started.
    pub(crate) fn dial(self: &Arc<Self>, addr: SocketAddr, target: Option<Str>) {
        let target = target.or_else(|| self.node_at(addr));
        let id = self.next_conn_id();
        let verdict = {
            let mut reg = self.registry.lock();
            if let Some(t) = &target {
                if reg.is_connected_or_connecting(t) {
                    return;
                }
            }
            reg.open(id, true, target, self.cfg.connect_interval)
        };
        let net = self.clone();
        tokio::spawn(async move {
            let connect = tokio::time::timeout(net.cfg.connect_interval, TcpStream::connect(addr));
            match connect.await {
                Ok(Ok(stream)) => connection::run(net, stream, addr, true, id, verdict).await,
                Ok(Err(e)) => {
                    tracing::debug!(%addr, error = %e, "connect failed");
                    let _ = net.registry.lock().closed(id);
                }
                Err(_) => {
                    tracing::debug!(%addr, "connect timed out");
                    let _ = net.registry.lock().closed(id);
                }
            }
        });
    }

    /// A dial of ours lost against a simultaneous connection: if that one does not come up
    /// either (the one race the registry cannot settle, see [`registry`]), dial again after
    /// a random pause, a few times at most.
    pub(crate) fn redial_later(self: &Arc<Self>, addr: SocketAddr, peer: NodeId) {
        const MAX_REDIALS: u8 = 5;
        {
            let mut budget = self.redials.lock();
            let n = budget.entry(Str::from(peer.as_str())).or_insert(0);
            if *n >= MAX_REDIALS {
                return;
            }
            *n += 1;
        }
        let net = self.clone();
        tokio::spawn(async move {
            let pause = Duration::from_millis(rand::random::<u64>() % 300 + 50);
            tokio::time::sleep(pause).await;
            net.dial(addr, Some(Str::from(peer.as_str())));
        });
    }

    /// Sends `msg` to `port` if its node has a live connection; gives it back otherwise.
    pub(crate) fn send_if_up(
        &self,
        port: &aemp_proto::PortId,
        msg: aemp_proto::Msg,
    ) -> Result<(), aemp_proto::Msg> {
        match self.links.read().get(port.node()) {
            Some(tx) => {
                tx.send(port.name(), msg);
                Ok(())
            }
            None => Err(msg),
        }
    }

    /// The node known to listen at `addr`, if any.
    fn node_at(&self, addr: SocketAddr) -> Option<Str> {
        self.addr_book
            .lock()
            .iter()
            .find(|(_, addrs)| addrs.contains(&addr))
            .map(|(n, _)| n.clone())
    }

    /// Starts reaching node `node`: tries its known addresses one after another, and reports
    /// failure to the kernel after `connect_interval` unless the node came up.
    pub(crate) fn connect_node(
        self: &Arc<Self>,
        node: Str,
        addrs: Vec<SocketAddr>,
    ) -> tokio::task::AbortHandle {
        let net = self.clone();
        tokio::spawn(async move {
            let deadline = net.cfg.connect_interval;
            // Spread the attempts over the interval as the reference does (§6.1), at least
            // 0.4 s apart.
            let step = {
                let per = deadline.as_secs_f64();
                let alt = (net.cfg.monitor_timeout.as_secs_f64() - deadline.as_secs_f64())
                    / addrs.len().max(1) as f64;
                Duration::from_secs_f64(per.min(alt.max(0.0)).max(0.4))
            };
            let start = tokio::time::Instant::now();
            for addr in addrs {
                net.dial(addr, Some(node.clone()));
                let next = tokio::time::Instant::now() + step;
                if next >= start + deadline {
                    break;
                }
                tokio::time::sleep_until(next).await;
            }
            tokio::time::sleep_until(start + deadline).await;
            net.to_kernel(move |k| k.connect_failed(&node, "connect timeout"));
        })
        .abort_handle()
    }

    /// An outgoing connection to `addr` greeted us as `node`: if `addr` is a seed, the
    /// global layer learns which node it is (§6.2).
    pub(crate) fn outgoing_greeting(&self, node: &NodeId, addr: SocketAddr) {
        self.learn_address(node, addr);
        let is_seed = match self.seeds.lock().get_mut(&addr) {
            Some(slot) => {
                *slot = Some(node.clone());
                true
            }
            None => false,
        };
        if is_seed {
            let node = node.clone();
            self.to_kernel(move |k| k.seed_greeting(&node));
        }
    }

    /// A seed address turned out to be ourselves: drop it and become global (§6.2).
    pub(crate) fn seed_is_self(&self, addr: SocketAddr) {
        if self.seeds.lock().remove(&addr).is_some() {
            tracing::info!(%addr, "found ourselves among our seeds");
            self.to_kernel(|k| k.become_global());
        }
    }

    /// Remembers where `node` was reached, for reconnecting later.
    pub(crate) fn learn_address(&self, node: &NodeId, addr: SocketAddr) {
        let mut book = self.addr_book.lock();
        let list = book.entry(Str::from(node.as_str())).or_default();
        if !list.contains(&addr) {
            list.insert(0, addr);
        }
    }

    /// Known listen addresses of `node`.
    pub(crate) fn known_addresses(&self, node: &str) -> Vec<SocketAddr> {
        self.addr_book.lock().get(node).cloned().unwrap_or_default()
    }

    /// Replaces the known listen addresses of `node` (from the global database).
    pub(crate) fn set_addresses(&self, node: &str, addrs: Vec<SocketAddr>) {
        self.addr_book.lock().insert(Str::from(node), addrs);
    }

    /// The addresses this node actually listens on.
    pub(crate) fn bound(&self) -> Vec<SocketAddr> {
        self.bound.lock().clone()
    }
}

async fn accept_loop(net: Weak<Network>, listener: TcpListener) {
    loop {
        let accepted = listener.accept().await;
        let Some(net) = net.upgrade() else { return };
        if net.core.upgrade().is_none_or(|c| c.is_closed()) {
            return;
        }
        match accepted {
            Ok((stream, peer)) => {
                let id = net.next_conn_id();
                let verdict = net.registry.lock().open(id, false, None, Duration::ZERO);
                tokio::spawn(connection::run(net, stream, peer, false, id, verdict));
            }
            Err(e) => {
                // Out of file descriptors and the like: log, back off a little, go on.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Formats an address as AnyEvent's `format_hostport` does (`[v6]:port`).
pub use aemp_proto::addr::format_hostport;

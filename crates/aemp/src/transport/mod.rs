//! The tokio layer of the AEMP transport: listeners, outgoing connections, and the registry
//! that guarantees one connection per pair of nodes.
//!
//! The protocol itself (handshake, framing) is sans-IO in `aemp-proto`; this module only moves
//! bytes between sockets and those state machines, and reports connections going up and down
//! to the kernel, which owns the per-node state (`kernel::remote`).
//!
//! # One connection per node pair
//!
//! When both nodes dial each other at the same time, each side sees two connections to the
//! same peer reach greeting line 1 before either is authenticated. Both sides then keep the
//! connection **dialled by the node with the smaller node ID** and close the other one before
//! sending an auth line on it (see [`Registry::arbitrate`]). Since the rule depends only on
//! the two node IDs, both sides keep the same connection, and the closed one never came up,
//! so no spurious `transport_error` fires. A connection arriving when one is already up is
//! refused, as the reference does (PROTOCOL.md §10.13).

pub(crate) mod connection;
pub mod tls;

use crate::kernel::{Cmd, Core, Kernel};
use aemp_proto::codec::{Framing, Limits};
use aemp_proto::handshake::HandshakeConfig;
use aemp_proto::{NodeId, Str};
use parking_lot::Mutex;
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

/// A node coming up or going down.
#[derive(Clone, Debug, PartialEq)]
pub enum NodeEvent {
    /// A connection to this node was established.
    Up(NodeId),
    /// The connection to this node was lost (with the reason text).
    Down(NodeId, String),
}

/// Connections that reached greeting line 1 but are not authenticated yet, and connections
/// that are up. See the module docs for the arbitration rule.
#[derive(Default)]
pub(crate) struct Registry {
    up: FxHashMap<Str, u64>,
    pending: FxHashMap<Str, Vec<Pending>>,
}

struct Pending {
    id: u64,
    outgoing: bool,
    cancel: Arc<tokio::sync::Notify>,
}

impl Registry {
    /// Decides whether connection `id` to `peer` may proceed past greeting line 1.
    fn arbitrate(
        &mut self,
        me: &str,
        peer: &str,
        id: u64,
        outgoing: bool,
        cancel: Arc<tokio::sync::Notify>,
    ) -> Result<(), &'static str> {
        if self.up.contains_key(peer) {
            return Err("already connected, not connecting again");
        }
        let pending = self.pending.entry(Str::from(peer)).or_default();
        let dialer = |outgoing: bool| if outgoing { me } else { peer };
        for other in pending.iter() {
            if other.outgoing == outgoing {
                return Err("a connection in that direction is already being set up");
            }
            if dialer(outgoing) > dialer(other.outgoing) {
                return Err("simultaneous connect: the other connection is kept");
            }
        }
        // We win: the other connection is closed before it can authenticate.
        for other in pending.drain(..) {
            other.cancel.notify_one();
        }
        pending.push(Pending {
            id,
            outgoing,
            cancel,
        });
        Ok(())
    }

    /// Connection `id` authenticated: it becomes the connection to `peer`.
    fn established(&mut self, peer: &str, id: u64) -> Result<(), &'static str> {
        self.forget_pending(peer, id);
        if self.up.contains_key(peer) {
            return Err("already connected, not connecting again");
        }
        self.up.insert(Str::from(peer), id);
        Ok(())
    }

    fn forget_pending(&mut self, peer: &str, id: u64) {
        if let Some(list) = self.pending.get_mut(peer) {
            list.retain(|p| p.id != id);
            if list.is_empty() {
                self.pending.remove(peer);
            }
        }
    }

    /// Connection `id` ended; returns true when it was the live connection of `peer`.
    fn closed(&mut self, peer: &str, id: u64) -> bool {
        self.forget_pending(peer, id);
        if self.up.get(peer) == Some(&id) {
            self.up.remove(peer);
            true
        } else {
            false
        }
    }
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
    /// Called with the peer's node ID when a connection dialled to an address learns it
    /// (the seed hook of the global layer); set once at configure time.
    pub greeting_hook: Mutex<Option<Arc<dyn Fn(&NodeId, SocketAddr) + Send + Sync>>>,
}

impl Network {
    pub(crate) fn new(core: &Arc<Core>, cfg: NetConfig) -> Result<Arc<Network>, crate::Error> {
        let id = core.id.clone();
        let tls = match &cfg.cert {
            Some(pem) => Some(Arc::new(
                tls::TlsIdentity::from_pem(pem).map_err(|e| crate::Error::Config(e.to_string()))?,
            )),
            None => None,
        };
        let mut hs = HandshakeConfig::new(id.as_str(), cfg.secret.clone().filter(|s| !s.is_empty()));
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
            tracing::warn!("no secret and no certificate configured: this node cannot connect to anything");
        }
        let (events, _) = broadcast::channel(1024);
        Ok(Arc::new(Network {
            core: Arc::downgrade(core),
            id,
            cfg,
            hs,
            tls,
            bound: Mutex::new(Vec::new()),
            registry: Mutex::new(Registry::default()),
            addr_book: Mutex::new(FxHashMap::default()),
            conn_ids: AtomicU64::new(1),
            events,
            counters: Counters::default(),
            greeting_hook: Mutex::new(None),
        }))
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
            let listener = TcpListener::bind(addr).await.map_err(|e| {
                crate::Error::Config(format!("cannot bind {addr}: {e}"))
            })?;
            let local = listener.local_addr()?;
            bound.push(local);
            tracing::info!(node = %self.id, addr = %local, "listening");
            let net = Arc::downgrade(self);
            tokio::spawn(accept_loop(net, listener));
        }
        self.bound.lock().extend(bound.iter().copied());
        Ok(bound)
    }

    /// Dials `addr` (a seed or an explicit address); the node ID is learned from the
    /// greeting.
    pub(crate) fn dial(self: &Arc<Self>, addr: SocketAddr) {
        let net = self.clone();
        tokio::spawn(async move {
            match TcpStream::connect(addr).await {
                Ok(stream) => connection::run(net, stream, addr, true).await,
                Err(e) => tracing::debug!(%addr, error = %e, "connect failed"),
            }
        });
    }

    /// Starts reaching node `node`: tries its known addresses one after another, and reports
    /// failure to the kernel after `connect_interval` unless the node came up.
    pub(crate) fn connect_node(self: &Arc<Self>, node: Str) -> tokio::task::AbortHandle {
        let net = self.clone();
        tokio::spawn(async move {
            let deadline = net.cfg.connect_interval;
            let addrs = net.addr_book.lock().get(&node).cloned().unwrap_or_default();
            if addrs.is_empty() {
                net.to_kernel(move |k| k.connect_failed(&node, "no known address"));
                return;
            }
            // Spread the attempts over the interval as the reference does (§6.1), at least
            // 0.4 s apart.
            let step = {
                let per = deadline.as_secs_f64() / addrs.len().max(1) as f64;
                let alt = (net.cfg.monitor_timeout.as_secs_f64() - deadline.as_secs_f64())
                    / addrs.len().max(1) as f64;
                Duration::from_secs_f64(per.min(alt.max(0.0)).max(0.4))
            };
            let start = tokio::time::Instant::now();
            for addr in addrs {
                net.dial(addr);
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

    /// Remembers where `node` was reached, for reconnecting later.
    pub(crate) fn learn_address(&self, node: &NodeId, addr: SocketAddr) {
        let mut book = self.addr_book.lock();
        let list = book.entry(Str::from(node.as_str())).or_default();
        if !list.contains(&addr) {
            list.insert(0, addr);
        }
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
        match accepted {
            Ok((stream, peer)) => {
                tokio::spawn(connection::run(net, stream, peer, false));
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
pub fn format_hostport(addr: &SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => format!("{}:{}", a.ip(), a.port()),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    }
}

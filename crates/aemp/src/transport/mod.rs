//! The tokio layer of the AEMP transport: listeners, outgoing connections, and the sockets'
//! read and write loops.
//!
//! The protocol itself (handshake, framing, the one-connection-per-pair rules of
//! `aemp_proto::conn_registry`) is sans-IO in `aemp-proto`; this module only moves bytes
//! between sockets and those state machines. It decides nothing about peers: connections
//! report what happens to them as typed [`ConnEvent`]s to an [`EventSink`] (the node task),
//! and learn from a verdict channel whether they may commit to the peer.

pub(crate) mod connection;
pub(crate) mod dataconn;
mod outbox_lock;
pub(crate) mod tls;

pub use tls::TlsError;

use aemp_proto::codec::{Framing, Limits};
use aemp_proto::conn_registry::Verdict;
use aemp_proto::handshake::HandshakeConfig;
use aemp_proto::log_limit::{LogLimit, Verdict as LogVerdict};
use aemp_proto::{Msg, NodeId, Str};
use connection::ConnTx;
use parking_lot::Mutex;
use rustc_hash::FxHashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};

/// Network settings of a node (the transport part of the configuration); the handshake
/// settings (secret, auth methods, framings) come separately, as the handshake's own
/// [`HandshakeConfig`].
#[derive(Clone, Debug)]
pub(crate) struct NetConfig {
    /// Addresses to listen on (port 0 = ephemeral).
    pub binds: Vec<SocketAddr>,
    /// PEM with key and certificate(s) for TLS, also the trusted set.
    pub cert: Option<String>,
    /// Handshake read-inactivity timeout.
    pub monitor_timeout: Duration,
    /// Overall timeout for reaching a node.
    pub connect_interval: Duration,
    /// TCP_NODELAY.
    pub nodelay: bool,
    /// Decoder limits (nesting depth, message size).
    pub limits: Limits,
    /// Message tracing: log every message sent to a peer.
    pub trace: bool,
    /// Bytes that may wait to be written to one peer before its connection is dropped
    /// (`None`: no limit).
    pub send_queue_limit: Option<usize>,
    /// Limits of data connections (the handshake timeout is applied here).
    pub data_conn: aemp_proto::dataconn::Limits,
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
    /// Incoming connections whose handshake this node refused (authentication failed, an
    /// unusable greeting, a TLS failure).
    pub handshakes_refused: AtomicU64,
}

/// Frames one connection read brought, for the node task.
pub(crate) struct Frames {
    /// The node they came from.
    pub src: Arc<NodeId>,
    /// `(port name, message)` in arrival order.
    pub frames: Vec<(Str, Msg)>,
    /// What they count against the received backlog ([`inbound_cost`]).
    pub cost: usize,
}

/// What happens to a connection, reported to the node task in order.
pub(crate) enum ConnEvent {
    /// An accepted connection was registered under `id`; the node task answers on `verdict`.
    Accepted {
        id: u64,
        verdict: watch::Sender<Verdict>,
    },
    /// The peer's greeting arrived: it is node `node` (speaking the node protocol).
    Greeted {
        id: u64,
        node: NodeId,
        addr: SocketAddr,
        outgoing: bool,
    },
    /// Our auth line was sent.
    Committed { id: u64 },
    /// The peer's auth line arrived and verified.
    PeerCommitted { id: u64 },
    /// Authenticated both ways; `tx` is the sending side. The node task closes `tx` if the
    /// connection must not be used after all.
    Up {
        id: u64,
        node: NodeId,
        tx: Arc<ConnTx>,
    },
    /// The connection ended (before or after it was up), with the reason; `refused_input`
    /// when this node closed it because it could not decode what the peer sent.
    Closed {
        id: u64,
        node: Option<NodeId>,
        addr: SocketAddr,
        outgoing: bool,
        text: String,
        refused_input: bool,
    },
    /// An outgoing connection reached this very node (a seed address of our own).
    ReachedSelf { addr: SocketAddr },
    /// A data connection authenticated, or a dial of one failed (boxed: rare).
    Data(Box<dataconn::DataEvent>),
}

/// Where connections report to (the node task).
pub(crate) trait EventSink: Send + Sync {
    /// One connection event.
    fn conn_event(&self, ev: ConnEvent);
    /// Frames read from a connection, in chunks.
    fn frames(&self, chunks: Vec<Frames>);
}

/// What received frames count against [`INBOUND_HIGH`]: one per frame plus one per 4 KiB,
/// so the limit bounds both many small messages (16 Ki frames) and few large ones (64 MiB).
pub(crate) fn inbound_cost(frames: usize, bytes: usize) -> usize {
    frames + bytes / 4096
}

/// Received work (in [`inbound_cost`] units) a node lets wait for its dispatcher before its
/// readers pause.
pub(crate) const INBOUND_HIGH: usize = 16 * 1024;

/// The received backlog: what readers have handed over and the node task has not delivered
/// yet. Readers stop reading while it is above [`INBOUND_HIGH`], so a fast sender is slowed
/// by TCP flow control instead of growing this node's memory.
#[derive(Default)]
pub(crate) struct Inbound {
    cost: AtomicUsize,
    drained: Notify,
}

impl Inbound {
    /// A reader hands over `cost` units.
    pub(crate) fn add(&self, cost: usize) {
        self.cost.fetch_add(cost, Ordering::AcqRel);
    }

    /// The node task delivered `cost` units.
    pub(crate) fn release(&self, cost: usize) {
        let before = self.cost.fetch_sub(cost, Ordering::AcqRel);
        if before > INBOUND_HIGH && before - cost <= INBOUND_HIGH {
            self.drained.notify_waiters();
        }
    }

    /// Waits until the backlog is at or below [`INBOUND_HIGH`].
    pub(crate) async fn wait_drained(&self) {
        while self.cost.load(Ordering::Acquire) > INBOUND_HIGH {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if self.cost.load(Ordering::Acquire) <= INBOUND_HIGH {
                break;
            }
            drained.await;
        }
    }
}

/// The network side of a node: settings, listeners and the live connections' sockets.
pub(crate) struct Transport {
    pub id: NodeId,
    pub cfg: NetConfig,
    pub hs: HandshakeConfig,
    pub tls: Option<Arc<tls::TlsIdentity>>,
    bound: Mutex<Vec<SocketAddr>>,
    conn_ids: AtomicU64,
    pub counters: Counters,
    pub inbound: Inbound,
    sink: Weak<dyn EventSink>,
    /// The connections in their data phase, by connection id: for statistics and
    /// `Node::writable`. Each connection adds itself when its data phase starts and removes
    /// itself when it ends; the node task's peer table decides which one carries messages.
    live: Mutex<FxHashMap<u64, Arc<ConnTx>>>,
    /// The accept tasks, stopped (and their sockets closed) when the node shuts down.
    listeners: Mutex<Vec<tokio::task::AbortHandle>>,
    /// How many connections came up to each peer since the node started (for the
    /// reconnect count of `Node::peer_stats`; one entry per peer that ever authenticated).
    ups: Mutex<FxHashMap<NodeId, u64>>,
    /// Rate limit of the warnings about refused handshakes (peers can cause them at will).
    refusal_log: Mutex<LogLimit>,
}

/// At most this many refused handshakes are logged per [`REFUSAL_LOG_WINDOW`].
pub(crate) const REFUSAL_LOG_MAX: u32 = 20;

/// The window of [`REFUSAL_LOG_MAX`].
pub(crate) const REFUSAL_LOG_WINDOW: Duration = Duration::from_secs(60);

/// Why the network could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The certificate (PEM) is unusable.
    #[error("certificate: {0}")]
    Certificate(String),
    /// The handshake settings are inconsistent.
    #[error("handshake settings: {0}")]
    Handshake(String),
    /// A listener could not be bound.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// What the system said.
        source: std::io::Error,
    },
}

impl Transport {
    pub(crate) fn new(
        id: NodeId,
        cfg: NetConfig,
        mut hs: HandshakeConfig,
        sink: Weak<dyn EventSink>,
    ) -> Result<Transport, TransportError> {
        let tls = match &cfg.cert {
            Some(pem) => Some(Arc::new(
                tls::TlsIdentity::from_pem(pem)
                    .map_err(|e| TransportError::Certificate(e.to_string()))?,
            )),
            None => None,
        };
        hs.framings.retain(|f| Framing::from_name(f).is_some());
        hs.tls_available = tls.is_some();
        hs.validate()
            .map_err(|e| TransportError::Handshake(e.to_string()))?;
        if tls.is_none() && hs.auth_accept.iter().all(|m| m.starts_with("tls_")) {
            return Err(TransportError::Handshake(format!(
                "auth_accept {} accepts certificate authentication only, but no certificate \
                 (cert) is configured",
                hs.auth_accept.join(",")
            )));
        }
        if hs.secret.is_none() && tls.is_none() {
            tracing::warn!(
                "no secret and no certificate configured: this node cannot connect to anything"
            );
        }
        Ok(Transport {
            id,
            cfg,
            hs,
            tls,
            bound: Mutex::new(Vec::new()),
            conn_ids: AtomicU64::new(2),
            counters: Counters::default(),
            inbound: Inbound::default(),
            sink,
            live: Mutex::new(FxHashMap::default()),
            listeners: Mutex::new(Vec::new()),
            ups: Mutex::new(FxHashMap::default()),
            refusal_log: Mutex::new(LogLimit::new(REFUSAL_LOG_MAX, REFUSAL_LOG_WINDOW)),
        })
    }

    /// This node refused the handshake of a connection it accepted from `addr`: counted, and
    /// logged as a warning (at most [`REFUSAL_LOG_MAX`] lines per [`REFUSAL_LOG_WINDOW`]; the
    /// next line after a pause says how many were left out).
    pub(crate) fn refused_handshake(&self, addr: SocketAddr, node: Option<&NodeId>, cause: &str) {
        self.counters
            .handshakes_refused
            .fetch_add(1, Ordering::Relaxed);
        let now = tokio::time::Instant::now().into_std();
        let verdict = self.refusal_log.lock().check(now);
        if let LogVerdict::Log { suppressed } = verdict {
            if suppressed > 0 {
                tracing::warn!(
                    "{suppressed} more refused handshakes were not logged (at most \
                     {REFUSAL_LOG_MAX} per {} s)",
                    REFUSAL_LOG_WINDOW.as_secs()
                );
            }
            match node {
                Some(node) => {
                    tracing::warn!("refused handshake from {addr} (node {node}): {cause}")
                }
                None => tracing::warn!("refused handshake from {addr}: {cause}"),
            }
        }
    }

    /// Reports a connection event, if the node still exists.
    pub(crate) fn report(&self, ev: ConnEvent) {
        if let Some(s) = self.sink.upgrade() {
            s.conn_event(ev);
        }
    }

    pub(crate) fn sink(&self) -> Option<Arc<dyn EventSink>> {
        self.sink.upgrade()
    }

    /// A fresh id for an accepted connection. Accepted connections have even ids; the node
    /// core gives its dials odd ones.
    pub(crate) fn next_conn_id(&self) -> u64 {
        self.conn_ids.fetch_add(2, Ordering::Relaxed)
    }

    /// Stops listening and closes every connection (the node shuts down).
    pub(crate) fn shutdown(&self) {
        self.stop_listening();
        for (_, tx) in self.live.lock().drain() {
            tx.close();
        }
    }

    /// Stops accepting connections.
    pub(crate) fn stop_listening(&self) {
        for l in self.listeners.lock().drain(..) {
            l.abort();
        }
    }

    /// Closes every connection in order ([`ConnTx::finish`]: what is queued is written
    /// first); returns them, to follow their way out.
    pub(crate) fn finish_all(&self) -> Vec<Arc<ConnTx>> {
        let live: Vec<Arc<ConnTx>> = self.live.lock().values().cloned().collect();
        for tx in &live {
            tx.finish();
        }
        live
    }

    /// Binds every configured listener and starts accepting.
    pub(crate) async fn listen(self: &Arc<Self>) -> Result<Vec<SocketAddr>, TransportError> {
        let mut bound = Vec::new();
        for addr in &self.cfg.binds {
            let bind_err = |source| TransportError::Bind {
                addr: *addr,
                source,
            };
            let listener = TcpListener::bind(addr).await.map_err(bind_err)?;
            let local = listener.local_addr().map_err(bind_err)?;
            bound.push(local);
            tracing::info!(node = %self.id, addr = %local, "listening");
            let task = tokio::spawn(accept_loop(Arc::downgrade(self), listener));
            self.listeners.lock().push(task.abort_handle());
        }
        self.bound.lock().extend(bound.iter().copied());
        Ok(bound)
    }

    /// Dials `addr` as connection `id`; `verdict` tells it whether it may commit.
    pub(crate) fn dial(
        self: &Arc<Self>,
        addr: SocketAddr,
        id: u64,
        verdict: watch::Receiver<Verdict>,
    ) {
        let t = self.clone();
        tokio::spawn(async move {
            let connect = tokio::time::timeout(t.cfg.connect_interval, TcpStream::connect(addr));
            let text = match connect.await {
                Ok(Ok(stream)) => return connection::run(t, stream, addr, true, id, verdict).await,
                Ok(Err(e)) => format!("connect failed: {e}"),
                Err(_) => "connect timed out".to_string(),
            };
            tracing::debug!(%addr, error = %text, "dial failed");
            t.report(ConnEvent::Closed {
                id,
                node: None,
                addr,
                outgoing: true,
                text,
                refused_input: false,
            });
        });
    }

    /// The addresses this node actually listens on.
    pub(crate) fn bound(&self) -> Vec<SocketAddr> {
        self.bound.lock().clone()
    }

    pub(crate) fn add_live(&self, tx: &Arc<ConnTx>) {
        *self.ups.lock().entry(tx.peer.clone()).or_insert(0) += 1;
        self.live.lock().insert(tx.id, tx.clone());
    }

    /// How many connections to `peer` came up since the node started.
    pub(crate) fn connections_up(&self, peer: &NodeId) -> u64 {
        self.ups.lock().get(peer).copied().unwrap_or(0)
    }

    pub(crate) fn remove_live(&self, id: u64) {
        self.live.lock().remove(&id);
    }

    /// The connections in their data phase.
    pub(crate) fn live(&self) -> Vec<Arc<ConnTx>> {
        self.live.lock().values().cloned().collect()
    }
}

async fn accept_loop(t: Weak<Transport>, listener: TcpListener) {
    loop {
        let accepted = listener.accept().await;
        let Some(t) = t.upgrade() else { return };
        let Some(sink) = t.sink() else { return };
        match accepted {
            Ok((stream, peer)) => {
                let id = t.next_conn_id();
                let (verdict, rx) = watch::channel(Verdict::Pending);
                // Registered before the connection can report anything else.
                sink.conn_event(ConnEvent::Accepted { id, verdict });
                tokio::spawn(connection::run(t, stream, peer, false, id, rx));
            }
            Err(e) => {
                // Out of file descriptors and the like: log, back off a little, go on.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

pub(crate) use aemp_proto::addr::format_hostport;

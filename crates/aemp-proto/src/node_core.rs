//! [`NodeCore`]: everything a node does about other nodes, composed into one sans-IO state
//! machine.
//!
//! A node's network side is four state machines: the [`PeerTable`] (connection state,
//! queues, address book, connect pacing), the connection [`Registry`] (one connection per
//! pair of nodes), the [`GlobalService`] (roles, master, mesh, look-ups, database) and the
//! [`Seeds`] connector. Each of them answers events with effects meant for the others;
//! `NodeCore` owns all four and routes those effects into each other, so that what is left
//! for the caller is I/O: dial an address, tell a connection its verdict, fire monitors,
//! publish node events, deliver database answers, write logs.
//!
//! # Driving it
//!
//! * Inputs are method calls, each with the current time where time matters: messages to
//!   send ([`NodeCore::send`], the hot path), node-port requests for the global service
//!   ([`NodeCore::global_request`]), what happens to connections (`accepted`, `greeted`,
//!   `committed`, `peer_committed`, `up`, `closed`, `reached_self`), user requests (`dial`,
//!   `add_addresses`, `become_global`, the `db_*` calls) and the clock
//!   ([`NodeCore::handle_timeout`] when [`NodeCore::poll_timeout`] is reached).
//! * Outputs are [`Effect`]s, queued in the order they arose; take them with
//!   [`NodeCore::poll_effect`] after every input and carry them out in that order. Inputs
//!   may be given while effects are still queued (e.g. while carrying one out); their
//!   effects queue behind.
//!
//! Nothing here reads a clock, spawns anything, logs or draws from a global random source:
//! randomness (seed round pauses, re-dial jitter) comes from a generator seeded by the caller
//! ([`Config::rng_seed`]), so a run is reproducible.
//!
//! # Order
//!
//! The effects keep the order the routing of the tokio node task always had:
//!
//! * [`Effect::NodeLost`] comes in the same input that made messages undeliverable, before
//!   anything accepted later can be written (no silent holes, see [`crate::peers`]): fire
//!   the node's monitors when it is taken, before sending anything else.
//! * [`Effect::NodeUp`] comes after the queue of the node was written into its new link,
//!   and before what the global service does about the new node.
//! * A node that goes down: [`Effect::NodeLost`], the seed connector schedules a round of
//!   seed dials soon if it was a seed ([`Seeds::node_down`]), [`Effect::NodeDown`], then
//!   what the global service does about it.
//! * A look-up asks the global service; what it knows at once is used right away, a
//!   global node that knows nothing fails the attempt ([`peers::NO_KNOWN_ADDRESS`]), a slave
//!   asks its master. A node without network fails it at once ([`NO_TRANSPORT`]).
//!
//! # Connection ids
//!
//! The core opens the connections it dials in its registry, under ids it allocates: odd
//! numbers (1, 3, 5, …). Connections accepted by the caller's listeners are reported with
//! [`NodeCore::accepted`] under ids the caller allocates, which must be even (and unique).

use crate::conn_registry::{Registry, Verdict};
use crate::db::names::{Family, NameError};
use crate::global::{self, DbChange, GlobalService, QueryKind, Seeds};
use crate::peers::{self, Link, PeerTable, NO_KNOWN_ADDRESS};
use crate::value::{Msg, Str, Value};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cmp::Reverse;
use std::collections::hash_map::RandomState;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Reason of the [`Effect::NodeLost`] when a node without network is sent to.
pub const NO_TRANSPORT: &str = "no known address (node has no transport)";

/// How long the database shard of a global node that went down is kept beyond
/// `connect_interval` (see [`crate::db::global`], "Orphaned shards"): its slaves notice the
/// death when we do, and take another seed they are connected to at once, or dial one
/// (at most `connect_interval`); their entries reach us again within
/// `connect_interval + ORPHAN_SLACK`, and only what did not is reported deleted.
pub const ORPHAN_SLACK: Duration = Duration::from_secs(1);

/// What a node starts with.
#[derive(Clone, Debug)]
pub struct Config {
    /// This node's ID.
    pub node: Str,
    /// The node has a network (listeners, dialling). Without one nothing is dialled, sends
    /// to other nodes fail at once with [`NO_TRANSPORT`], and no seed is contacted.
    pub network: bool,
    /// How long an attempt to reach a node may take, and how long a dial holds back
    /// decisions about other connections (see [`crate::peers`], [`crate::conn_registry`]).
    pub connect_interval: Duration,
    /// Bounds connect pacing and the pause between seed rounds.
    pub monitor_timeout: Duration,
    /// Seed addresses (the node's own listeners may be among them).
    pub seeds: Vec<SocketAddr>,
    /// The addresses this node listens on (its `'l` database entry).
    pub listening: Vec<SocketAddr>,
    /// Start as a global node.
    pub global: bool,
    /// Seed of the random generator (seed round pauses, re-dial jitter).
    pub rng_seed: u64,
    /// How many bytes may wait for a node that is being reached before the attempt fails
    /// ([`peers::send_queue_over`]); `None` for no limit (the reference's behaviour). See
    /// [`PeerTable::set_send_queue_limit`].
    pub send_queue_limit: Option<usize>,
    /// The limits peers apply to frames (the node's own decoder limits): requests of the
    /// global service are split to fit them, or not sent (see [`global::split`]).
    pub limits: crate::codec::Limits,
}

impl Config {
    /// A node `node` with network, no seeds, no listeners, the default intervals (2 s to
    /// connect, 30 s monitor timeout), random seed 0 and no send queue limit.
    pub fn new(node: &str) -> Config {
        Config {
            node: Str::from(node),
            network: true,
            connect_interval: Duration::from_secs(2),
            monitor_timeout: Duration::from_secs(30),
            seeds: Vec::new(),
            listening: Vec::new(),
            global: false,
            rng_seed: 0,
            send_queue_limit: None,
            limits: crate::codec::Limits::default(),
        }
    }
}

/// Severity of a [`Log`] record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Details for debugging.
    Debug,
    /// Normal operation worth a line.
    Info,
    /// Something was refused or went wrong.
    Warn,
    /// Data was lost: the user has to do something about it.
    Error,
}

/// Something worth a log line (the caller writes it with its logger; [`Log::level`] tells
/// the severity, `Display` a message).
#[derive(Clone, Debug, PartialEq)]
pub enum Log {
    /// A connection that was up ended (info).
    ConnectionLost {
        /// The peer.
        node: Str,
        /// Why the connection ended.
        reason: String,
    },
    /// A connection authenticated both ways but the registry had decided to close it; its
    /// link was closed (debug).
    ConnectionNotUsed {
        /// The peer.
        node: Str,
        /// The registry's reason.
        reason: &'static str,
    },
    /// An auth line went out on a connection whose verdict had changed meanwhile; the
    /// connection learns it from its verdict and closes before it is used (debug).
    CommitRaced {
        /// The connection.
        id: u64,
        /// Why committing was not allowed.
        reason: &'static str,
    },
    /// An attempt to reach a node failed with messages queued for it (info).
    DroppedQueued {
        /// The node.
        node: Str,
        /// Why the attempt failed.
        reason: String,
        /// How many queued messages were dropped.
        dropped: usize,
    },
    /// A seed address turned out to be this node itself (info).
    FoundSelf {
        /// The seed address.
        addr: SocketAddr,
    },
    /// The master of this slave changed (`None`: no master) (info).
    Master(Option<Str>),
    /// This node became a global node (info).
    BecameGlobal,
    /// A node-port request was refused (warn).
    Refused {
        /// The sender.
        from: Str,
        /// Why.
        error: String,
    },
    /// A `db_set` was refused (warn).
    DbSetRefused {
        /// Why.
        error: NameError,
    },
    /// An entry of this node's database was dropped because its master, or a global peer
    /// of this global node, refused it: each time it was sent on its own, that node closed
    /// the connection (error).
    DbEntryRefused {
        /// The family.
        family: Str,
        /// The key.
        key: Str,
        /// The node that refused it.
        peer: Str,
    },
    /// A request of the global service was not sent: too large for one frame and not
    /// splittable, or an entry too large on its own (error).
    NotSent {
        /// The node it was for.
        node: Str,
        /// What was dropped (request, family, key).
        what: String,
        /// Why.
        error: crate::codec::LimitError,
    },
    /// An entry a slave of this global node set is withheld from a global peer that
    /// refused it (error).
    DbEntryWithheld {
        /// The family.
        family: Str,
        /// The key.
        key: Str,
        /// The slave that set it.
        owner: Str,
        /// The global node that refused it.
        peer: Str,
    },
}

impl Log {
    /// How severe the record is.
    pub fn level(&self) -> Level {
        match self {
            Log::ConnectionNotUsed { .. } | Log::CommitRaced { .. } => Level::Debug,
            Log::ConnectionLost { .. }
            | Log::DroppedQueued { .. }
            | Log::FoundSelf { .. }
            | Log::Master(_)
            | Log::BecameGlobal => Level::Info,
            Log::Refused { .. } | Log::DbSetRefused { .. } => Level::Warn,
            Log::DbEntryRefused { .. } | Log::DbEntryWithheld { .. } | Log::NotSent { .. } => {
                Level::Error
            }
        }
    }
}

impl fmt::Display for Log {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Log::ConnectionLost { node, reason } => {
                write!(f, "connection lost (peer {node}: {reason})")
            }
            Log::ConnectionNotUsed { node, reason } => {
                write!(f, "connection not used (peer {node}: {reason})")
            }
            Log::CommitRaced { id, reason } => {
                write!(
                    f,
                    "auth line sent on a connection being closed (id {id}: {reason})"
                )
            }
            Log::DroppedQueued {
                node,
                reason,
                dropped,
            } => write!(
                f,
                "could not reach node, dropping queued messages (node {node}: {reason}, \
                 {dropped} dropped)"
            ),
            Log::FoundSelf { addr } => write!(f, "found ourselves among our seeds ({addr})"),
            Log::Master(Some(m)) => write!(f, "master set ({m})"),
            Log::Master(None) => write!(f, "no master"),
            Log::BecameGlobal => write!(f, "becoming a global node"),
            Log::Refused { from, error } => {
                write!(f, "error processing node message (from {from}: {error})")
            }
            Log::DbSetRefused { error } => write!(f, "db_set refused: {error}"),
            Log::DbEntryRefused { family, key, peer } => write!(
                f,
                "database entry dropped: node {peer} refuses it (family {family}, key {key}: \
                 {peer} closed the connection each time the entry was sent)"
            ),
            Log::NotSent { node, what, error } => {
                write!(f, "database message not sent (to {node}: {what}: {error})")
            }
            Log::DbEntryWithheld {
                family,
                key,
                owner,
                peer,
            } => write!(
                f,
                "database entry withheld from global node {peer}, which refuses it (family \
                 {family}, key {key}, set by {owner}: {peer} closed the connection each time \
                 the entry was sent)"
            ),
        }
    }
}

/// What the caller has to do, in the order given (see the [module docs](self)).
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Dial `addr` as connection `id` (already registered; its verdict starts as
    /// [`Verdict::Pending`]). Report what happens to it with the connection inputs; if the
    /// dial fails, report it [`NodeCore::closed`] (without node).
    Dial {
        /// The connection id (odd).
        id: u64,
        /// Where to dial.
        addr: SocketAddr,
        /// The node expected there, if known (for logs; the greeting tells for sure).
        target: Option<Str>,
    },
    /// The registry's verdict for connection `id` changed: hand it to the connection (it
    /// sends its auth line on [`Verdict::Commit`], closes on [`Verdict::Close`]).
    Verdict {
        /// The connection.
        id: u64,
        /// Its new verdict.
        verdict: Verdict,
    },
    /// Messages to `node` may have been lost: fire every monitor of `node` with
    /// `("transport_error", node, reason)` before sending anything else.
    NodeLost {
        /// The node.
        node: Str,
        /// The third element of the monitors' reason.
        reason: String,
    },
    /// A connection to the node came up (node-up event, hooks).
    NodeUp(Str),
    /// The connection to `node` went down (node-down event, hooks); follows its
    /// [`Effect::NodeLost`].
    NodeDown {
        /// The node.
        node: Str,
        /// Why.
        reason: String,
    },
    /// A watched family changed: notify these `db_mon` subscribers. Report subscribers that
    /// are gone with [`NodeCore::db_unwatch`].
    Notify {
        /// Subscriber ids given to [`NodeCore::db_watch`].
        subscribers: Vec<u64>,
        /// What changed.
        change: DbChange,
    },
    /// The answer to the database query [`NodeCore::db_query`] returned `query` for.
    Reply {
        /// The query id.
        query: u64,
        /// The raw answer (`null` when the reply had none).
        value: Value,
    },
    /// A log record.
    Log(Log),
}

/// A re-dial after a lost simultaneous connect: (when, sequence, address, node).
type Redial = Reverse<(Instant, u64, SocketAddr, Str)>;

/// The network side of one node (see the [module docs](self)).
///
/// `L` is the sending side of an established connection; `S` the hasher of the peer
/// table's node map (node names come from peers, so the default is DoS-resistant).
pub struct NodeCore<L, S = RandomState> {
    me: Str,
    network: bool,
    /// What peers accept in one frame (see [`Config::limits`]).
    limits: crate::codec::Limits,
    connect_interval: Duration,
    listening: Vec<SocketAddr>,
    start_global: bool,
    peers: PeerTable<L, S>,
    registry: Registry,
    global: GlobalService,
    seeds: Seeds,
    rng: StdRng,
    /// The next id for a connection we dial (odd).
    next_dial: u64,
    /// Pending re-dials (core timers).
    redials: BinaryHeap<Redial>,
    redial_seq: u64,
    /// Connections this node closes because it refused what the peer sent (reported with
    /// [`NodeCore::refused_input`] before [`NodeCore::closed`]).
    refusing: HashSet<u64>,
    /// True while [`NodeCore::closed`] handles such a connection's end.
    closing_by_us: bool,
    /// When the orphaned shards of global nodes that went down expire: the heap, and the
    /// deadline in force per node (a heap entry that is not it is stale).
    orphans: BinaryHeap<Reverse<(Instant, Str)>>,
    orphan_due: HashMap<Str, Instant>,
    /// Local `db_mon` subscribers.
    subscribers: HashSet<u64>,
    effects: VecDeque<Effect>,
    /// Set when a send woke a connection's writer (see [`NodeCore::take_woke`]).
    woke: bool,
    /// Reused effect buffer of the peer table.
    scratch: Vec<peers::Effect>,
}

impl<L: Link> NodeCore<L> {
    /// A node as configured, not started yet (see [`NodeCore::start`]).
    pub fn new(config: Config, now: Instant) -> Self {
        Self::with_hasher(config, now, RandomState::new())
    }
}

impl<L: Link, S: BuildHasher> NodeCore<L, S> {
    /// As [`NodeCore::new`], with the given hasher for the peer table.
    pub fn with_hasher(config: Config, now: Instant, hasher: S) -> Self {
        let rng = StdRng::seed_from_u64(config.rng_seed);
        let seeds = if config.network {
            config.seeds
        } else {
            Vec::new()
        };
        let seeds = Seeds::new(seeds, config.monitor_timeout, now);
        let mut peers =
            PeerTable::with_hasher(config.connect_interval, config.monitor_timeout, hasher);
        peers.set_send_queue_limit(config.send_queue_limit);
        NodeCore {
            limits: config.limits,
            network: config.network,
            connect_interval: config.connect_interval,
            listening: config.listening,
            start_global: config.global,
            peers,
            registry: Registry::new(config.node.as_str()),
            global: GlobalService::new(config.node.as_str()),
            seeds,
            rng,
            next_dial: 1,
            redials: BinaryHeap::new(),
            redial_seq: 0,
            refusing: HashSet::new(),
            closing_by_us: false,
            orphans: BinaryHeap::new(),
            orphan_due: HashMap::new(),
            subscribers: HashSet::new(),
            effects: VecDeque::new(),
            woke: false,
            scratch: Vec::new(),
            me: config.node,
        }
    }

    /// First steps: the listen addresses go into the database, the node becomes global if
    /// so configured, and the first round of seed dials is due.
    pub fn start(&mut self, now: Instant) {
        if !self.listening.is_empty() {
            let listening = std::mem::take(&mut self.listening);
            self.set_listen_addrs(&listening, now);
        }
        if self.start_global {
            self.become_global(now);
        }
        self.handle_timeout(now);
    }

    /// Changes the addresses this node listens on (its `'l` entry).
    pub fn set_listen_addrs(&mut self, addrs: &[SocketAddr], now: Instant) {
        self.listening = addrs.to_vec();
        let eff = self.global.set_listen_addrs(addrs);
        self.route_global(eff, now);
    }

    /// This node's ID.
    pub fn node_id(&self) -> &str {
        &self.me
    }

    // ---- outputs ---------------------------------------------------------------------------

    /// Takes the next effect, oldest first.
    #[inline]
    pub fn poll_effect(&mut self) -> Option<Effect> {
        self.effects.pop_front()
    }

    /// True when effects are waiting.
    #[inline]
    pub fn has_effects(&self) -> bool {
        !self.effects.is_empty()
    }

    /// True (once) when a [`NodeCore::send`] started an attempt to reach a node since the
    /// last call: [`NodeCore::poll_timeout`] may have moved earlier although no effect was
    /// emitted (a held node is dialled when its hold ends). A driver that re-arms its timer
    /// only after effects must check this after sends.
    pub fn take_timers_changed(&mut self) -> bool {
        self.peers.take_timers_changed()
    }

    /// True (once) when a message the core sent on its own (global service requests, a
    /// queue flushed into a new link) woke a connection's writer since the last call.
    pub fn take_woke(&mut self) -> bool {
        std::mem::take(&mut self.woke)
    }

    /// When [`NodeCore::handle_timeout`] has something to do next, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.peers.poll_timeout(),
            self.registry.poll_timeout(),
            self.seeds.poll_timeout(),
            self.redials.peek().map(|Reverse((at, ..))| *at),
            self.orphans.peek().map(|Reverse((at, _))| *at),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The clock reached `now`: paced dials and attempt deadlines of the peer table, held
    /// decisions of the registry, a round of seed dials, re-dials, orphaned shards that expire.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut out = std::mem::take(&mut self.scratch);
        self.peers.handle_timeout(now, &mut out);
        self.route_peers(&mut out, now);
        self.scratch = out;
        self.registry.handle_timeout(now);
        self.flush_verdicts();
        let peers = &self.peers;
        let due = if self.seeds.poll_timeout().is_some_and(|t| t <= now) {
            let r: f64 = self.rng.gen();
            self.seeds
                .handle_timeout(now, |n| peers.is_up(n), |n| peers.hold(n, now), r)
        } else {
            Vec::new()
        };
        for addr in due {
            self.dial(addr, None, now);
        }
        while let Some(Reverse((at, ..))) = self.redials.peek() {
            if *at > now {
                break;
            }
            if let Some(Reverse((_, _, addr, node))) = self.redials.pop() {
                self.dial(addr, Some(node), now);
            }
        }
        while let Some(Reverse((at, _))) = self.orphans.peek() {
            if *at > now {
                break;
            }
            if let Some(Reverse((at, node))) = self.orphans.pop() {
                if self.orphan_due.get(&node) == Some(&at) {
                    self.orphan_due.remove(&node);
                    let eff = self.global.expire_orphan(&node);
                    self.route_global(eff, now);
                }
            }
        }
    }

    // ---- messages --------------------------------------------------------------------------

    /// A message for port `port` (`""` = node port) of another node; connects on demand.
    /// Returns whether it woke the connection's writer. When the node is up this writes
    /// into its link and nothing else: no allocation, no effect.
    #[inline]
    pub fn send(&mut self, node: &str, port: &str, msg: Msg, now: Instant) -> bool {
        let woke = self.peers.send(node, port, msg, now, &mut self.scratch);
        if !self.scratch.is_empty() {
            let mut out = std::mem::take(&mut self.scratch);
            self.route_peers(&mut out, now);
            self.scratch = out;
        }
        woke
    }

    /// Sends only if `node` is up (death notices must not start a connection); returns
    /// whether the message was written (it is dropped otherwise).
    #[inline]
    pub fn send_if_up(&mut self, node: &str, port: &str, msg: Msg) -> bool {
        self.peers.send_if_up(node, port, msg)
    }

    /// A global-protocol request (`g_*`, then its arguments) that arrived at the node port
    /// from `from`.
    pub fn global_request(&mut self, from: &str, tag: &str, args: Vec<Value>, now: Instant) {
        let eff = self.global.request(from, tag, args);
        self.route_global(eff, now);
    }

    /// The nodes that are up (in no particular order).
    pub fn up_nodes(&self) -> impl Iterator<Item = &str> {
        self.peers.up_nodes()
    }

    // ---- connections -----------------------------------------------------------------------

    /// Dials `addr`, meant for `target` if known (else the node at `addr` in the address
    /// book, or whoever greets). Nothing when the node has no network, or a connection to
    /// that node is up or being set up.
    pub fn dial(&mut self, addr: SocketAddr, target: Option<Str>, now: Instant) {
        if !self.network {
            return;
        }
        let target = target.or_else(|| self.peers.node_at(addr).map(Str::from));
        if let Some(n) = &target {
            if self.registry.is_connected_or_connecting(n) {
                return;
            }
        }
        let id = self.next_dial;
        self.next_dial += 2;
        self.registry
            .open(id, true, target.clone(), self.connect_interval, now);
        self.effects.push_back(Effect::Dial { id, addr, target });
        self.flush_verdicts();
    }

    /// A listener accepted connection `id` (even, unique).
    pub fn accepted(&mut self, id: u64, now: Instant) {
        self.registry.open(id, false, None, Duration::ZERO, now);
        self.flush_verdicts();
    }

    /// The peer's greeting arrived on connection `id`: it is node `node`. `addr` is the
    /// address dialled (for an outgoing connection; it is remembered as an address of
    /// `node`, and tells which node a seed address is).
    pub fn greeted(&mut self, id: u64, node: &str, addr: SocketAddr, outgoing: bool, now: Instant) {
        // The registry first: the seed's `g_slave` below starts an attempt to reach the
        // node, which must see this connection as one to that node, not dial it again.
        self.registry.greeted(id, node, now);
        if outgoing {
            self.peers.learn_address(node, addr);
            if self.seeds.greeted(addr, node) {
                let eff = self.global.seed_greeting(node);
                self.route_global(eff, now);
            }
        }
        self.flush_verdicts();
    }

    /// Our auth line was sent on `id` (its verdict was [`Verdict::Commit`]).
    pub fn committed(&mut self, id: u64) {
        if let Err(reason) = self.registry.committed(id) {
            self.log(Log::CommitRaced { id, reason });
        }
        self.flush_verdicts();
    }

    /// The peer's auth line arrived and verified on `id`.
    pub fn peer_committed(&mut self, id: u64, now: Instant) {
        self.registry.peer_committed(id, now);
        self.flush_verdicts();
    }

    /// Connection `id` to `node` is authenticated both ways; `link` is its sending side.
    /// If the registry decided to close it, `link` is closed and dropped; otherwise it
    /// carries the node's messages from now on. Returns whether flushing the node's queue
    /// woke its writer.
    pub fn up(&mut self, id: u64, node: &str, link: L, now: Instant) -> bool {
        let mut woke = false;
        match self.registry.established(id, now) {
            Err(reason) => {
                self.log(Log::ConnectionNotUsed {
                    node: Str::from(node),
                    reason,
                });
                link.close();
            }
            Ok(()) => {
                let mut out = std::mem::take(&mut self.scratch);
                woke = self.peers.up(node, link, now, &mut out);
                self.route_peers(&mut out, now);
                self.scratch = out;
            }
        }
        self.flush_verdicts();
        woke
    }

    /// Connection `id` is being closed by this node because it refused what the peer sent
    /// (a frame it could not decode). Reported before [`NodeCore::closed`]: such an end is no
    /// sign that the peer refused anything of ours (see [`crate::global::probe`]).
    pub fn refused_input(&mut self, id: u64) {
        self.refusing.insert(id);
    }

    /// Connection `id` ended (also a dial that failed). `node` is the peer if its greeting
    /// arrived, `addr` the address dialled (outgoing) or the peer's address, `text` why.
    ///
    /// A dial of ours that ends after the greeting, before it came up (the handshake failed:
    /// a shared secret mismatch, an untrusted certificate), leaves `text` as the cause of the
    /// attempt to reach the node: if no other connection comes up before the attempt's
    /// deadline, its [`Effect::NodeLost`] names that cause instead of a bare
    /// [`peers::CONNECT_TIMEOUT`].
    pub fn closed(
        &mut self,
        id: u64,
        node: Option<&str>,
        addr: SocketAddr,
        outgoing: bool,
        text: &str,
        now: Instant,
    ) {
        self.closing_by_us = self.refusing.remove(&id);
        let closed = self.registry.closed(id, now);
        match node {
            Some(node) if closed.was_up => {
                self.log(Log::ConnectionLost {
                    node: Str::from(node),
                    reason: text.to_string(),
                });
                let mut out = std::mem::take(&mut self.scratch);
                let r: f64 = self.rng.gen();
                self.peers.down(node, id, text, now, r, &mut out);
                self.route_peers(&mut out, now);
                self.scratch = out;
            }
            Some(node) if outgoing && closed.contested => {
                // A dial that lost a race against another connection to the same node: if
                // that one does not come up either, try again later.
                let r: u64 = self.rng.gen();
                if let Some(pause) = self.registry.redial_delay(node, r) {
                    self.redial_seq += 1;
                    self.redials.push(Reverse((
                        now.checked_add(pause).unwrap_or(now),
                        self.redial_seq,
                        addr,
                        Str::from(node),
                    )));
                }
            }
            // A dial that failed in its handshake (authentication, TLS, an unusable
            // greeting): if the attempt to reach the node times out, this is why. If the
            // peer closed it after its greeting, it still holds a connection to us that we
            // lost ("already connected"): dial it again shortly (peers, "Refused
            // connections").
            Some(node) if outgoing => {
                self.peers.attempt_failed(node, text);
                if text == peers::CLOSED_DURING_HANDSHAKE {
                    let r: f64 = self.rng.gen();
                    self.peers.refused(node, addr, now, r);
                }
            }
            _ => {}
        }
        self.flush_verdicts();
    }

    /// A dial of `addr` reached this very node. If `addr` is a seed, it is dropped from the
    /// seeds and the node becomes global.
    pub fn reached_self(&mut self, addr: SocketAddr, now: Instant) {
        if self.seeds.is_self(addr) {
            self.log(Log::FoundSelf { addr });
            self.become_global(now);
        }
    }

    /// Listen addresses of `node`, from the user or a look-up: remembered, and dialled if
    /// the node is being reached.
    pub fn add_addresses(&mut self, node: &str, addrs: Vec<SocketAddr>, now: Instant) {
        let mut out = std::mem::take(&mut self.scratch);
        self.peers.addresses(node, addrs, now, &mut out);
        self.route_peers(&mut out, now);
        self.scratch = out;
    }

    /// Makes this node global (nothing if it is already).
    pub fn become_global(&mut self, now: Instant) {
        let eff = self.global.become_global();
        self.route_global(eff, now);
    }

    /// The node shuts down: every link is closed, every attempt abandoned (no effects).
    pub fn shutdown(&mut self) {
        self.peers.close_all();
        self.redials.clear();
    }

    // ---- database --------------------------------------------------------------------------

    /// `db_set`; a refused key is logged ([`Log::DbSetRefused`]).
    pub fn db_set(&mut self, family: &Family, key: &str, value: Value, now: Instant) {
        match self.global.db_set(family, key, value) {
            Ok(eff) => self.route_global(eff, now),
            Err(error) => self.log(Log::DbSetRefused { error }),
        }
    }

    /// `db_del` of keys this node set.
    pub fn db_del(&mut self, family: &Family, keys: &[Str], now: Instant) {
        let eff = self.global.db_del(family, keys);
        self.route_global(eff, now);
    }

    /// A database query; its answer comes as [`Effect::Reply`] with the returned id (it
    /// waits for a master if there is none, and is re-sent to every new master).
    pub fn db_query(&mut self, kind: QueryKind, family: &Family, now: Instant) -> u64 {
        let (id, eff) = self.global.query(kind, family);
        self.route_global(eff, now);
        id
    }

    /// `db_mon`: subscriber `subscriber` (an id unique on this node) watches `family`; it
    /// is named in every [`Effect::Notify`] of the family from now on.
    pub fn db_watch(&mut self, family: &Family, subscriber: u64, now: Instant) {
        self.subscribers.insert(subscriber);
        let eff = self.global.watch(family, subscriber);
        self.route_global(eff, now);
    }

    /// Subscriber `subscriber` of `family` is gone. Nothing for an unknown subscriber.
    pub fn db_unwatch(&mut self, family: &str, subscriber: u64, now: Instant) {
        if self.subscribers.remove(&subscriber) {
            let eff = self.global.unwatch(family, subscriber);
            self.route_global(eff, now);
        }
    }

    // ---- state -----------------------------------------------------------------------------

    /// The peer table.
    pub fn peers(&self) -> &PeerTable<L, S> {
        &self.peers
    }

    /// The connection registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The global service.
    pub fn global(&self) -> &GlobalService {
        &self.global
    }

    /// The seed connector.
    pub fn seeds(&self) -> &Seeds {
        &self.seeds
    }

    // ---- routing ---------------------------------------------------------------------------

    fn log(&mut self, record: Log) {
        self.effects.push_back(Effect::Log(record));
    }

    /// Hands the registry's verdict changes to their connections.
    fn flush_verdicts(&mut self) {
        while let Some((id, verdict)) = self.registry.poll_verdict() {
            self.effects.push_back(Effect::Verdict { id, verdict });
        }
    }

    /// Carries out what the peer table asked for (and empties `out`).
    fn route_peers(&mut self, out: &mut Vec<peers::Effect>, now: Instant) {
        // Taken while routing (the routing may use the scratch buffer again), handed back
        // empty with its capacity.
        let mut batch = std::mem::take(out);
        for e in batch.drain(..) {
            match e {
                peers::Effect::Dial { node, addr } => self.dial(addr, Some(node), now),
                peers::Effect::Lookup { node } => {
                    let mut more = Vec::new();
                    if !self.network {
                        self.peers.connect_failed(&node, NO_TRANSPORT, &mut more);
                    } else {
                        let (addrs, eff) = self.global.lookup(&node);
                        self.route_global(eff, now);
                        if !addrs.is_empty() {
                            self.peers.addresses(&node, addrs, now, &mut more);
                        } else if self.global.is_global() {
                            self.peers
                                .connect_failed(&node, NO_KNOWN_ADDRESS, &mut more);
                        }
                    }
                    self.route_peers(&mut more, now);
                }
                peers::Effect::NodeLost {
                    node,
                    reason,
                    dropped,
                } => {
                    if dropped > 0 {
                        self.log(Log::DroppedQueued {
                            node: node.clone(),
                            reason: reason.clone(),
                            dropped,
                        });
                    }
                    self.effects.push_back(Effect::NodeLost { node, reason });
                }
                peers::Effect::NodeUp { node } => {
                    self.effects.push_back(Effect::NodeUp(node.clone()));
                    let eff = self.global.node_up(&node);
                    self.route_global(eff, now);
                }
                peers::Effect::NodeDown { node, reason } => {
                    let r: f64 = self.rng.gen();
                    self.seeds.node_down(&node, now, r);
                    // The peer table counted a strike if the connection ended early.
                    let early = self.peers.backoff(&node).is_some();
                    let by_us = std::mem::take(&mut self.closing_by_us);
                    self.effects.push_back(Effect::NodeDown {
                        node: node.clone(),
                        reason,
                    });
                    let mut eff = self.global.connection_ended(&node, early, by_us);
                    eff.extend(self.global.node_down(&node));
                    self.route_global(eff, now);
                }
            }
        }
        *out = batch;
    }

    /// Carries out what the global service asked for.
    fn route_global(&mut self, effects: Vec<global::Effect>, now: Instant) {
        for e in effects {
            match e {
                global::Effect::Send { node, msg } => {
                    let fitted = global::split::fit(msg, &self.limits);
                    for (what, error) in fitted.dropped {
                        self.log(Log::NotSent {
                            node: node.clone(),
                            what,
                            error,
                        });
                    }
                    for msg in fitted.msgs {
                        self.woke |= self.send(&node, "", msg, now);
                    }
                }
                global::Effect::Connect { node } => {
                    if self.network {
                        let mut out = std::mem::take(&mut self.scratch);
                        self.peers.ensure_connected(&node, now, &mut out);
                        self.route_peers(&mut out, now);
                        self.scratch = out;
                    }
                }
                global::Effect::Addresses { node, addrs } => {
                    self.add_addresses(&node, addrs, now);
                }
                global::Effect::Reply { query, value } => {
                    self.effects.push_back(Effect::Reply { query, value })
                }
                global::Effect::Notify {
                    subscribers,
                    change,
                } => self.effects.push_back(Effect::Notify {
                    subscribers,
                    change,
                }),
                global::Effect::Master(m) => self.log(Log::Master(m)),
                global::Effect::BecameGlobal => self.log(Log::BecameGlobal),
                global::Effect::EntryDropped { family, key, peer } => {
                    self.log(Log::DbEntryRefused { family, key, peer })
                }
                global::Effect::EntryWithheld {
                    family,
                    key,
                    owner,
                    peer,
                } => self.log(Log::DbEntryWithheld {
                    family,
                    key,
                    owner,
                    peer,
                }),
                global::Effect::Orphaned { node } => {
                    let at = later(now, self.connect_interval + ORPHAN_SLACK);
                    self.orphan_due.insert(node.clone(), at);
                    self.orphans.push(Reverse((at, node)));
                }
                global::Effect::Refused { from, error } => self.log(Log::Refused { from, error }),
            }
        }
    }
}

/// `now + d`, saturating at `now` should the clock's range end.
fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d).unwrap_or(now)
}

#[cfg(test)]
mod tests;

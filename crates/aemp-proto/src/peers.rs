//! The per-node peer table: connection state, address book and connect pacing of every
//! remote node, as a sans-IO state machine.
//!
//! The table is driven by events (a message to send, a connection that came up or went
//! down, a failed attempt, addresses learned, the clock passing a deadline) and answers with
//! [`Effect`]s for the caller to carry out (dial, look up, fire monitors, run node hooks).
//! It never reads the clock: every call that can start or pace an attempt takes `now`, and
//! [`PeerTable::poll_timeout`] / [`PeerTable::handle_timeout`] drive the pacing timers.
//!
//! # States of a node
//!
//! ```text
//!                send, ensure_connected
//!   ┌──────┐ ───────────────────────────▶ ┌────────────┐
//!   │ Idle │                              │ Connecting │ sends queued; dials or look-up
//!   └──────┘ ◀─────────────────────────── └────────────┘
//!     ▲  │    connect_failed, deadline          │
//!     │  │    (NodeLost, dropped = queue)       │ up: queue flushed, NodeUp
//!     │  │                                      ▼
//!     │  │    up (incoming connection)        ┌────┐ ───┐ up (another link): old one
//!     │  └──────────────────────────────────▶ │ Up │    │ closed, NodeLost "switched
//!     │                                       └────┘ ◀──┘ connections", NodeUp
//!     │    down (current link only)             │
//!     └─────────────────────────────────────────┘
//!          NodeLost, NodeDown
//! ```
//!
//! * **Idle**: nothing is going on with the node (its addresses may still be known). A
//!   [`send`](PeerTable::send) queues the message and starts an attempt: the known addresses
//!   are dialled one after another, or, when none is known, a look-up is asked for.
//! * **Connecting**: sends are queued in order. The attempt ends when a connection comes up
//!   ([`up`](PeerTable::up)), or fails: reported by the caller
//!   ([`connect_failed`](PeerTable::connect_failed)) or at its deadline, `connect_interval`
//!   after it started ("connect timeout", or the cause of the last connection that failed
//!   during the attempt, see [`attempt_failed`](PeerTable::attempt_failed)), which holds even
//!   while waiting for addresses.
//! * **Up**: sends are written straight into the connection's [`Link`]; this is the hot
//!   path, one hash look-up and no allocation.
//!
//! # No silent holes
//!
//! Messages to one node arrive in the order they were sent, or a gap is announced: whenever
//! messages that were accepted for a node can no longer arrive (the queue of a failed attempt
//! is dropped, a connection is lost or replaced with data still in flight), the table emits
//! [`Effect::NodeLost`] for that node in the same call, before it accepts anything that could
//! be delivered after the gap. The caller fires the node's monitors with
//! `("transport_error", node, reason)` when it processes that effect, so a monitor always
//! learns of a loss before it could see a later message. Two details keep this true: a new
//! link is handed the queued messages (in order) before anything else, and a link that
//! replaces a live one produces `NodeLost` ("switched connections") because the old one may
//! have had data in flight.
//!
//! # Send queue limit
//!
//! The messages queued for a node that is being reached count against a limit in bytes
//! ([`PeerTable::set_send_queue_limit`]; none by default, as in the reference): each one by
//! [`frame_size_estimate`], an upper bound of its CBOR size computed from lengths alone. A
//! message that takes the queue over the limit fails the attempt like a failed connect: the
//! whole queue, that message included, is dropped and [`Effect::NodeLost`] emitted with
//! [`send_queue_over`]`(limit)` as its reason, in the same call (no holes); the next message
//! starts a new attempt. A message alone in the queue is never over the limit, however
//! large. Once the node is up, its link enforces the same limit on its own write buffer
//! (the tokio transport closes the connection, which comes back here as
//! [`down`](PeerTable::down) with that reason).
//!
//! # Connect pacing
//!
//! An attempt dials its addresses one after another, the first at once, then one every
//! `step = min(connect_interval, (monitor_timeout - connect_interval) / addresses)`, at
//! least 0.4 s, as long as the next dial falls before the deadline.
//!
//! # Refused connections
//!
//! A node that still holds a connection to us refuses a new one ("already connected": it
//! closes it right after the greeting, as the reference does). That happens after a
//! half-open break, when our end noticed the loss before the peer's end did: the peer
//! learns of it only from its own keepalive timeout, and accepts a new connection from
//! then on. So when the caller reports such a refusal ([`PeerTable::refused`]), the attempt
//! dials the same address again after a short pause, as often as it is refused, as long as
//! the re-dial falls before the attempt's deadline: the `k`-th pause is a random time in
//! `[p, p + 100 ms]` with `p = min(200 ms + (k-1) · 100 ms, 400 ms)` (200–300 ms, then
//! 300–400 ms, then 400–500 ms). The queue is delivered as soon as the peer has noticed,
//! instead of being dropped at the deadline. Other failures are not re-dialled.
//!
//! # Reconnect back-off
//!
//! A connection that ends soon after it came up is a strike against the node: a peer that
//! refuses a frame we send (too deep, too large for its decoder) closes the connection right
//! after it came up, every time, and so does one of ours that refuses a frame the peer
//! sends on every new connection. Without a pause the node would be dialled again at once,
//! in a tight loop. So after strike `n` the node is *held* for a random time in
//! `[d/2, d]` with `d = min(BACKOFF_FIRST · 2^(n-1), cap)`: attempts to reach it dial
//! nothing before the hold ends (their deadline moves by as much), and the seed connector
//! skips it ([`PeerTable::hold`]). `cap` is `monitor_timeout`, at most [`BACKOFF_CAP`] (and
//! at least [`BACKOFF_FIRST`]); a connection that stays up for `cap` ("stable") clears the
//! strikes, and so does a quiet spell of `2 · cap` after a hold in which no connection came
//! up. The randomness comes in with [`PeerTable::down`]. Ordinary recovery is not slowed:
//! the loss of a connection that was up for a while holds nothing, and neither do dials
//! that fail (their pacing is the business of the attempt, or of the seed connector).

use crate::codec::frame_size_estimate;
use crate::{Msg, Str};
use std::cmp::Reverse;
use std::collections::hash_map::RandomState;
use std::collections::{BinaryHeap, HashMap};
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The shortest pause between two dials of one attempt.
pub const MIN_DIAL_STEP: Duration = Duration::from_millis(400);

/// Reason of the [`Effect::NodeLost`] when an attempt reaches its deadline.
pub const CONNECT_TIMEOUT: &str = "connect timeout";

/// Reason of the [`Effect::NodeLost`] when a new link replaces one that was up.
pub const SWITCHED_CONNECTIONS: &str = "switched connections";

/// How a dialled connection ends when the peer closed it during the handshake, after its
/// greeting: the way a node refuses a connection while it still holds another one to us
/// ("already connected"; the reason does not cross the wire). Such a refusal is re-dialled
/// within the attempt (see [Refused connections](self#refused-connections)).
pub const CLOSED_DURING_HANDSHAKE: &str = "connection closed during handshake";

/// Reason for [`PeerTable::connect_failed`] when a look-up found no address.
pub const NO_KNOWN_ADDRESS: &str = "no known address";

/// The reason of a node's failure when more than `limit` bytes waited to be sent to it
/// (see [Send queue limit](self#send-queue-limit)): `"send queue over <limit> bytes"`.
pub fn send_queue_over(limit: usize) -> String {
    format!("send queue over {limit} bytes")
}

/// The nominal hold after the first strike (see [Reconnect back-off](self#reconnect-back-off));
/// the actual hold is a random time between half of it and all of it.
pub const BACKOFF_FIRST: Duration = Duration::from_secs(1);

/// The longest nominal hold (if `monitor_timeout` is shorter, that), and how long a
/// connection must stay up to clear the strikes.
pub const BACKOFF_CAP: Duration = Duration::from_secs(30);

/// The shortest pause before the first re-dial of a refused address (see
/// [Refused connections](self#refused-connections)).
pub const REFUSED_REDIAL_FIRST: Duration = Duration::from_millis(200);

/// The longest pause before a re-dial of a refused address.
pub const REFUSED_REDIAL_MAX: Duration = Duration::from_millis(500);

/// How much a refused address's pause grows with each refusal, and its random part.
const REFUSED_REDIAL_STEP: Duration = Duration::from_millis(100);

/// Timer id of a back-off record's expiry (attempt ids start at 1).
const FORGET: u64 = 0;

/// Longest interval the table works with; longer settings are cut to this so that no
/// deadline overflows [`Instant`].
const MAX_INTERVAL: Duration = Duration::from_secs(365 * 24 * 3600);

/// The sending side of an established connection, as the peer table sees it (the tokio layer
/// implements it with its connection write buffer; tests and the simulator with an in-memory
/// queue).
pub trait Link {
    /// Queues `[port, msg…]` for the peer; returns true when this woke the writer (its queue
    /// was empty).
    fn send(&self, port: &str, msg: Msg) -> bool;
    /// Identity of the connection (unique per node).
    fn id(&self) -> u64;
    /// Stops the connection.
    fn close(&self);
}

impl<T: Link + ?Sized> Link for std::sync::Arc<T> {
    #[inline]
    fn send(&self, port: &str, msg: Msg) -> bool {
        (**self).send(port, msg)
    }

    fn id(&self) -> u64 {
        (**self).id()
    }

    fn close(&self) {
        (**self).close()
    }
}

/// What the caller has to do after an event, in the order the table emitted them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Dial `addr` for `node`.
    Dial {
        /// The node meant to answer at `addr`.
        node: Str,
        /// Where to dial.
        addr: SocketAddr,
    },
    /// No address is known for `node`: ask the global service (look-up), then call
    /// [`PeerTable::addresses`] with what it finds, or [`PeerTable::connect_failed`] (with
    /// [`NO_KNOWN_ADDRESS`]) once it is certain there is nothing (e.g. a global node whose
    /// database has no entry for `node`). Without either, the attempt fails at its deadline.
    Lookup {
        /// The node to look up.
        node: Str,
    },
    /// Everything queued for or in flight to `node` is lost: fire every monitor of that node
    /// with `("transport_error", node, reason)` before anything later is sent (no holes).
    NodeLost {
        /// The node.
        node: Str,
        /// Why (the third element of the monitors' reason).
        reason: String,
        /// How many queued messages were dropped (in-flight ones are not counted).
        dropped: usize,
    },
    /// A connection to `node` came up (after its queue was flushed into the link, in order):
    /// run the node-up hooks.
    NodeUp {
        /// The node.
        node: Str,
    },
    /// The connection to `node` went down (after [`Effect::NodeLost`]): forget the remote
    /// monitors it held and run the node-down hooks.
    NodeDown {
        /// The node.
        node: Str,
        /// Why.
        reason: String,
    },
}

/// An attempt to reach a node.
struct Attempt {
    /// Unique among the table's attempts; tells a timer of this attempt from a stale one.
    id: u64,
    /// Messages waiting for the connection, in order, with their port.
    queue: Vec<(Str, Msg)>,
    /// The estimated size of `queue` ([`frame_size_estimate`]), while the table has a send
    /// queue limit (0 otherwise).
    queued_bytes: usize,
    /// When the attempt fails with [`CONNECT_TIMEOUT`].
    deadline: Instant,
    /// The addresses being dialled, in order.
    plan: Vec<SocketAddr>,
    /// Index in `plan` of the next address to dial.
    next: usize,
    /// Pause between two dials of `plan`.
    step: Duration,
    /// When the next address of `plan` is dialled, if one is left before the deadline.
    next_dial: Option<Instant>,
    /// Why the last connection of this attempt failed (see [`PeerTable::attempt_failed`]):
    /// the reason at the deadline instead of [`CONNECT_TIMEOUT`].
    last_failure: Option<String>,
    /// Connections of this attempt the peer refused (see [`PeerTable::refused`]).
    refusals: u32,
    /// Refused addresses to dial again, and when.
    redials: Vec<(Instant, SocketAddr)>,
}

enum State<L> {
    Idle,
    Connecting(Attempt),
    Up(L),
}

/// Strikes against a node whose connections end soon after coming up.
#[derive(Clone, Copy, Debug)]
struct Backoff {
    /// Connections in a row that ended before they were stable.
    strikes: u32,
    /// No dial before this.
    until: Instant,
    /// The record is dropped then, unless a connection is up.
    forget: Instant,
}

/// What the table knows about one node.
struct Entry<L> {
    /// Listen addresses of the node, in the order to try them.
    addrs: Vec<SocketAddr>,
    state: State<L>,
    /// When the current link came up.
    up_since: Option<Instant>,
    backoff: Option<Backoff>,
}

impl<L> Entry<L> {
    fn idle() -> Self {
        Entry {
            addrs: Vec::new(),
            state: State::Idle,
            up_since: None,
            backoff: None,
        }
    }

    /// An idle entry without addresses or strikes carries nothing and can go.
    fn is_empty(&self) -> bool {
        matches!(self.state, State::Idle) && self.addrs.is_empty() && self.backoff.is_none()
    }

    /// The end of the node's hold, if it is later than `now`.
    fn hold(&self, now: Instant) -> Option<Instant> {
        self.backoff.map(|b| b.until).filter(|u| *u > now)
    }
}

/// A timer: (when, attempt id, node). Stale timers (their attempt ended or was re-planned)
/// are skipped when they come up.
type Timer = Reverse<(Instant, u64, Str)>;

/// Connection state, address book and connect pacing of every remote node (see the
/// [module documentation](self)).
///
/// `S` is the hasher of the node map; the default is the standard library's DoS-resistant
/// one, as node names can come from peers.
pub struct PeerTable<L, S = RandomState> {
    nodes: HashMap<Str, Entry<L>, S>,
    timers: BinaryHeap<Timer>,
    /// An attempt started since [`PeerTable::take_timers_changed`] was last called: its
    /// timers (a dial at the end of a hold, the deadline) may come before the driver's.
    timers_changed: bool,
    next_attempt: u64,
    connect_interval: Duration,
    monitor_timeout: Duration,
    /// Bytes that may wait for a node ([`usize::MAX`]: no limit).
    queue_limit: usize,
}

impl<L: Link> PeerTable<L> {
    /// An empty table. `connect_interval` is how long an attempt may take (its deadline) and
    /// the longest pause between two dials; `monitor_timeout` also bounds the pacing (see the
    /// [module documentation](self)).
    pub fn new(connect_interval: Duration, monitor_timeout: Duration) -> Self {
        Self::with_hasher(connect_interval, monitor_timeout, RandomState::new())
    }
}

impl<L: Link, S: BuildHasher> PeerTable<L, S> {
    /// As [`PeerTable::new`], with the given hasher for the node map.
    pub fn with_hasher(connect_interval: Duration, monitor_timeout: Duration, hasher: S) -> Self {
        PeerTable {
            nodes: HashMap::with_hasher(hasher),
            timers: BinaryHeap::new(),
            timers_changed: false,
            next_attempt: 1,
            connect_interval: connect_interval.min(MAX_INTERVAL),
            monitor_timeout: monitor_timeout.min(MAX_INTERVAL),
            queue_limit: usize::MAX,
        }
    }

    /// How many bytes (estimated, see [Send queue limit](self#send-queue-limit)) may wait
    /// for a node that is being reached; `None` (the default) for no limit. Applies to the
    /// messages queued from now on.
    pub fn set_send_queue_limit(&mut self, limit: Option<usize>) {
        self.queue_limit = limit.unwrap_or(usize::MAX);
    }

    /// The send queue limit in bytes, if there is one.
    pub fn send_queue_limit(&self) -> Option<usize> {
        (self.queue_limit != usize::MAX).then_some(self.queue_limit)
    }

    /// A message for port `port` (a bare name, `""` = node port) of `node`.
    ///
    /// Up: written into the link at once; returns whether that woke the writer. Connecting:
    /// queued; if that takes the queue over the send queue limit, the attempt fails instead
    /// (the queue and this message dropped, [`Effect::NodeLost`] with [`send_queue_over`]:
    /// see [Send queue limit](self#send-queue-limit)). Idle: queued, and an attempt starts
    /// (dial or look-up effects). Only the Up case is the hot path: it does not allocate and
    /// emits nothing.
    #[inline]
    pub fn send(
        &mut self,
        node: &str,
        port: &str,
        msg: Msg,
        now: Instant,
        out: &mut Vec<Effect>,
    ) -> bool {
        match self.nodes.get_mut(node) {
            Some(Entry {
                state: State::Up(link),
                ..
            }) => return link.send(port, msg),
            Some(Entry {
                state: State::Connecting(attempt),
                ..
            }) => {
                if self.queue_limit != usize::MAX {
                    let size = frame_size_estimate(port, msg.as_slice());
                    attempt.queued_bytes = attempt.queued_bytes.saturating_add(size);
                    if attempt.queued_bytes > self.queue_limit && !attempt.queue.is_empty() {
                        // The message is part of the dropped queue.
                        attempt.queue.push((Str::from(port), msg));
                        let reason = send_queue_over(self.queue_limit);
                        self.fail(node, &reason, out);
                        self.prune_timers();
                        return false;
                    }
                }
                attempt.queue.push((Str::from(port), msg));
                return false;
            }
            _ => {}
        }
        self.start(node, Some((Str::from(port), msg)), now, out);
        false
    }

    /// Sends only if `node` is up (death notices to remote monitors must not start a
    /// connection). Returns whether the message was written; the message is dropped
    /// otherwise, and the caller knows it.
    #[inline]
    pub fn send_if_up(&mut self, node: &str, port: &str, msg: Msg) -> bool {
        match self.nodes.get(node) {
            Some(Entry {
                state: State::Up(link),
                ..
            }) => {
                link.send(port, msg);
                true
            }
            _ => false,
        }
    }

    /// Makes sure `node` is up or being reached (keepalive of the global nodes): starts an
    /// attempt with an empty queue if it is idle.
    pub fn ensure_connected(&mut self, node: &str, now: Instant, out: &mut Vec<Effect>) {
        match self.nodes.get(node).map(|e| &e.state) {
            Some(State::Up(_)) | Some(State::Connecting(_)) => {}
            None | Some(State::Idle) => self.start(node, None, now, out),
        }
    }

    /// A connection to `node` authenticated and is ready to carry messages.
    ///
    /// What was queued for the node is written into `link` first, in order; then
    /// [`Effect::NodeUp`]. A link that replaces one that is up closes the old one and emits
    /// [`Effect::NodeLost`] ([`SWITCHED_CONNECTIONS`]) first. Reporting the current link again
    /// (same id) changes nothing. Returns whether flushing the queue woke the writer.
    pub fn up(&mut self, node: &str, link: L, now: Instant, out: &mut Vec<Effect>) -> bool {
        let key = Str::from(node);
        let entry = self.nodes.entry(key.clone()).or_insert_with(Entry::idle);
        let mut woke = false;
        match &mut entry.state {
            State::Up(old) if old.id() == link.id() => return false,
            State::Up(old) => {
                old.close();
                out.push(Effect::NodeLost {
                    node: key.clone(),
                    reason: SWITCHED_CONNECTIONS.to_string(),
                    dropped: 0,
                });
            }
            State::Connecting(attempt) => {
                for (port, msg) in attempt.queue.drain(..) {
                    woke |= link.send(&port, msg);
                }
            }
            State::Idle => {}
        }
        entry.state = State::Up(link);
        entry.up_since = Some(now);
        out.push(Effect::NodeUp { node: key });
        self.prune_timers();
        woke
    }

    /// The connection `conn` to `node` was lost. Ignored unless `conn` is the node's current
    /// link (a replaced or refused connection reports its end too). Emits
    /// [`Effect::NodeLost`], then [`Effect::NodeDown`]. A link that was up for less than the
    /// back-off cap is a strike against the node and holds it for a while (see
    /// [Reconnect back-off](self#reconnect-back-off)); `rand01`, in `[0, 1)`, picks the hold
    /// within its range. A stable link clears the strikes.
    pub fn down(
        &mut self,
        node: &str,
        conn: u64,
        reason: &str,
        now: Instant,
        rand01: f64,
        out: &mut Vec<Effect>,
    ) {
        let cap = self.backoff_cap();
        let Some(entry) = self.nodes.get_mut(node) else {
            return;
        };
        if !matches!(&entry.state, State::Up(link) if link.id() == conn) {
            return;
        }
        entry.state = State::Idle;
        let lived = entry
            .up_since
            .take()
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        if lived >= cap {
            entry.backoff = None;
        } else {
            let strikes = entry.backoff.map_or(0, |b| b.strikes).saturating_add(1);
            let until = later(now, hold_for(strikes, cap, rand01));
            let forget = later(until, cap.saturating_mul(2));
            entry.backoff = Some(Backoff {
                strikes,
                until,
                forget,
            });
            self.timers.push(Reverse((forget, FORGET, Str::from(node))));
        }
        if entry.is_empty() {
            self.nodes.remove(node);
        }
        let node = Str::from(node);
        out.push(Effect::NodeLost {
            node: node.clone(),
            reason: reason.to_string(),
            dropped: 0,
        });
        out.push(Effect::NodeDown {
            node,
            reason: reason.to_string(),
        });
    }

    /// The attempt to reach `node` failed: its queue is dropped and [`Effect::NodeLost`]
    /// emitted (also when the queue was empty: the node's monitors fire). Ignored unless the
    /// node is connecting.
    pub fn connect_failed(&mut self, node: &str, reason: &str, out: &mut Vec<Effect>) {
        self.fail(node, reason, out);
        self.prune_timers();
    }

    /// A connection of the attempt to reach `node` failed before it came up, for `cause`
    /// (the peer refused to authenticate, or we refused the peer): the attempt goes on (other
    /// addresses, other connections may still succeed), but if it reaches its deadline, the
    /// last such cause is its reason instead of [`CONNECT_TIMEOUT`], so that the monitors
    /// learn why the node could not be reached. Ignored unless the node is connecting.
    pub fn attempt_failed(&mut self, node: &str, cause: &str) {
        if let Some(Entry {
            state: State::Connecting(attempt),
            ..
        }) = self.nodes.get_mut(node)
        {
            attempt.last_failure = Some(cause.to_owned());
        }
    }

    /// The connection of the attempt to reach `node` that dialled `addr` was refused by the
    /// peer during the handshake (it closed the connection after its greeting, as a node
    /// does that still holds a connection to us: "already connected"). `addr` is dialled
    /// again after a short pause that grows with each refusal of the attempt, if that falls
    /// before the attempt's deadline (see [Refused connections](self#refused-connections));
    /// `rand01`, in `[0, 1)`, picks the pause within its range. Ignored unless the node is
    /// connecting, or if `addr` is already due to be dialled again.
    pub fn refused(&mut self, node: &str, addr: SocketAddr, now: Instant, rand01: f64) {
        let Some(Entry {
            state: State::Connecting(attempt),
            ..
        }) = self.nodes.get_mut(node)
        else {
            return;
        };
        if attempt.redials.iter().any(|(_, a)| *a == addr) {
            return;
        }
        attempt.refusals = attempt.refusals.saturating_add(1);
        let at = later(now, refused_pause(attempt.refusals, rand01));
        if at < attempt.deadline {
            attempt.redials.push((at, addr));
            self.timers.push(Reverse((at, attempt.id, Str::from(node))));
            self.timers_changed = true;
        }
    }

    /// Addresses of `node` from a look-up (the global database, `g_found`): they replace the
    /// known ones. If the node is connecting, they are dialled at once with the usual pacing
    /// (the attempt keeps its deadline). An empty list changes nothing; duplicates are
    /// dropped.
    pub fn addresses(
        &mut self,
        node: &str,
        mut addrs: Vec<SocketAddr>,
        now: Instant,
        out: &mut Vec<Effect>,
    ) {
        dedup_in_order(&mut addrs);
        if addrs.is_empty() {
            return;
        }
        let entry = self
            .nodes
            .entry(Str::from(node))
            .or_insert_with(Entry::idle);
        let hold = entry.hold(now);
        if let State::Connecting(attempt) = &mut entry.state {
            let key = Str::from(node);
            let step = dial_step(self.connect_interval, self.monitor_timeout, addrs.len());
            attempt.plan.clone_from(&addrs);
            attempt.next = 0;
            attempt.step = step;
            dial_first(attempt, &key, now, hold, &mut self.timers, out);
        }
        entry.addrs = addrs;
        self.prune_timers();
    }

    /// `node` was reached at `addr` (its greeting on an outgoing connection): remember it,
    /// first in the list unless it is already known.
    pub fn learn_address(&mut self, node: &str, addr: SocketAddr) {
        let entry = self
            .nodes
            .entry(Str::from(node))
            .or_insert_with(Entry::idle);
        if !entry.addrs.contains(&addr) {
            entry.addrs.insert(0, addr);
        }
    }

    /// Known listen addresses of `node`, in the order they are tried.
    pub fn known_addresses(&self, node: &str) -> &[SocketAddr] {
        self.nodes.get(node).map_or(&[], |e| &e.addrs)
    }

    /// The node known to listen at `addr`, if any (one of them if several nodes list it).
    pub fn node_at(&self, addr: SocketAddr) -> Option<&str> {
        self.nodes
            .iter()
            .find(|(_, e)| e.addrs.contains(&addr))
            .map(|(n, _)| n.as_str())
    }

    /// When [`PeerTable::handle_timeout`] has something to do next (a paced dial or an
    /// attempt's deadline), if anything.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _, _))| *at)
    }

    /// True (once) when an attempt started since the last call, so that
    /// [`PeerTable::poll_timeout`] may have moved earlier. A [`PeerTable::send`] that starts an
    /// attempt on a held node emits no effect at all (the dial waits for the hold), so a
    /// driver that re-arms its timer only after effects must ask this too.
    pub fn take_timers_changed(&mut self) -> bool {
        std::mem::take(&mut self.timers_changed)
    }

    /// The clock reached `now`: dials the addresses whose turn has come and fails the
    /// attempts whose deadline passed ([`Effect::NodeLost`] with [`CONNECT_TIMEOUT`]).
    pub fn handle_timeout(&mut self, now: Instant, out: &mut Vec<Effect>) {
        loop {
            match self.timers.peek() {
                Some(Reverse((at, _, _))) if *at <= now => {}
                _ => break,
            }
            let Some(Reverse((at, id, node))) = self.timers.pop() else {
                break;
            };
            if id == FORGET {
                self.forget(&node, at);
                continue;
            }
            let Some(Entry {
                state: State::Connecting(attempt),
                ..
            }) = self.nodes.get_mut(node.as_str())
            else {
                continue;
            };
            if attempt.id != id {
                continue;
            }
            if attempt.deadline <= now {
                let reason = attempt
                    .last_failure
                    .take()
                    .unwrap_or_else(|| CONNECT_TIMEOUT.to_owned());
                self.fail(&node, &reason, out);
            } else {
                if attempt.next_dial == Some(at) {
                    dial_next(attempt, &node, now, &mut self.timers, out);
                }
                redial_due(attempt, &node, now, out);
            }
        }
        self.prune_timers();
    }

    /// When the hold on `node` ends, if it is held at `now` (its connections kept ending
    /// soon after they came up: see [Reconnect back-off](self#reconnect-back-off)). Nothing
    /// dials it before.
    pub fn hold(&self, node: &str, now: Instant) -> Option<Instant> {
        self.nodes.get(node).and_then(|e| e.hold(now))
    }

    /// The strikes against `node` and the end of its (last) hold, while they are
    /// remembered. Right after [`PeerTable::down`] this is `Some` exactly when the
    /// connection ended before it was stable.
    pub fn backoff(&self, node: &str) -> Option<(u32, Instant)> {
        self.nodes
            .get(node)
            .and_then(|e| e.backoff)
            .map(|b| (b.strikes, b.until))
    }

    /// The live link to `node`, if it is up.
    pub fn link(&self, node: &str) -> Option<&L> {
        match self.nodes.get(node) {
            Some(Entry {
                state: State::Up(link),
                ..
            }) => Some(link),
            _ => None,
        }
    }

    /// Whether `node` is up.
    pub fn is_up(&self, node: &str) -> bool {
        self.link(node).is_some()
    }

    /// Whether an attempt to reach `node` is under way.
    pub fn is_connecting(&self, node: &str) -> bool {
        matches!(
            self.nodes.get(node),
            Some(Entry {
                state: State::Connecting(_),
                ..
            })
        )
    }

    /// Messages queued for `node` while it is being reached.
    pub fn queued(&self, node: &str) -> usize {
        match self.nodes.get(node) {
            Some(Entry {
                state: State::Connecting(attempt),
                ..
            }) => attempt.queue.len(),
            _ => 0,
        }
    }

    /// Every node being reached with messages queued for it, and how many (in no particular
    /// order).
    pub fn queued_all(&self) -> impl Iterator<Item = (&str, usize)> {
        self.nodes.iter().filter_map(|(n, e)| match &e.state {
            State::Connecting(attempt) if !attempt.queue.is_empty() => {
                Some((n.as_str(), attempt.queue.len()))
            }
            _ => None,
        })
    }

    /// The nodes that are up (in no particular order).
    pub fn up_nodes(&self) -> impl Iterator<Item = &str> {
        self.nodes.iter().filter_map(|(n, e)| match e.state {
            State::Up(_) => Some(n.as_str()),
            _ => None,
        })
    }

    /// The node shuts down: closes every link and abandons every attempt (queues dropped,
    /// no effects). Known addresses stay.
    pub fn close_all(&mut self) {
        for entry in self.nodes.values_mut() {
            if let State::Up(link) = &entry.state {
                link.close();
            }
            entry.state = State::Idle;
        }
        self.nodes.retain(|_, e| !e.is_empty());
        self.timers.clear();
    }

    /// Moves an idle `node` to Connecting with `first` queued, and starts dialling its known
    /// addresses or asks for a look-up.
    fn start(
        &mut self,
        node: &str,
        first: Option<(Str, Msg)>,
        now: Instant,
        out: &mut Vec<Effect>,
    ) {
        let key = Str::from(node);
        let id = self.next_attempt;
        self.next_attempt += 1;
        let entry = self.nodes.entry(key.clone()).or_insert_with(Entry::idle);
        // A held node is dialled when its hold ends; the attempt has its usual time from then.
        let hold = entry.hold(now);
        let deadline = later(hold.unwrap_or(now), self.connect_interval);
        let queued_bytes = match &first {
            Some((port, msg)) if self.queue_limit != usize::MAX => {
                frame_size_estimate(port, msg.as_slice())
            }
            _ => 0,
        };
        let mut attempt = Attempt {
            id,
            queue: first.into_iter().collect(),
            queued_bytes,
            deadline,
            plan: Vec::new(),
            next: 0,
            step: Duration::ZERO,
            next_dial: None,
            last_failure: None,
            refusals: 0,
            redials: Vec::new(),
        };
        self.timers.push(Reverse((deadline, id, key.clone())));
        self.timers_changed = true;
        if entry.addrs.is_empty() {
            out.push(Effect::Lookup { node: key });
        } else {
            attempt.plan.clone_from(&entry.addrs);
            attempt.step = dial_step(
                self.connect_interval,
                self.monitor_timeout,
                attempt.plan.len(),
            );
            dial_first(&mut attempt, &key, now, hold, &mut self.timers, out);
        }
        entry.state = State::Connecting(attempt);
    }

    /// Ends the attempt to reach `node` (if any) with `reason`.
    fn fail(&mut self, node: &str, reason: &str, out: &mut Vec<Effect>) {
        let Some(entry) = self.nodes.get_mut(node) else {
            return;
        };
        let State::Connecting(attempt) = &entry.state else {
            return;
        };
        let dropped = attempt.queue.len();
        entry.state = State::Idle;
        if entry.is_empty() {
            self.nodes.remove(node);
        }
        out.push(Effect::NodeLost {
            node: Str::from(node),
            reason: reason.to_string(),
            dropped,
        });
    }

    /// The nominal hold is capped at this, and a connection up this long is stable.
    fn backoff_cap(&self) -> Duration {
        self.monitor_timeout.clamp(BACKOFF_FIRST, BACKOFF_CAP)
    }

    /// The back-off record of `node` expires at `at` (unless it was renewed, or a
    /// connection is up: its end decides).
    fn forget(&mut self, node: &str, at: Instant) {
        let Some(entry) = self.nodes.get_mut(node) else {
            return;
        };
        if matches!(entry.state, State::Up(_)) || entry.backoff.is_none_or(|b| b.forget != at) {
            return;
        }
        entry.backoff = None;
        if entry.is_empty() {
            self.nodes.remove(node);
        }
    }

    /// Drops stale timers from the top of the heap, so that [`PeerTable::poll_timeout`] is
    /// exact.
    fn prune_timers(&mut self) {
        while let Some(Reverse((at, id, node))) = self.timers.peek() {
            let live = match self.nodes.get(node.as_str()) {
                Some(Entry {
                    state: State::Up(_),
                    ..
                }) if *id == FORGET => false,
                Some(Entry { backoff, .. }) if *id == FORGET => {
                    backoff.is_some_and(|b| b.forget == *at)
                }
                Some(Entry {
                    state: State::Connecting(a),
                    ..
                }) => {
                    a.id == *id
                        && (a.deadline == *at
                            || a.next_dial == Some(*at)
                            || a.redials.iter().any(|(t, _)| t == at))
                }
                _ => false,
            };
            if live {
                break;
            }
            self.timers.pop();
        }
    }
}

/// The pause between two dials of an attempt over `n` addresses.
fn dial_step(connect_interval: Duration, monitor_timeout: Duration, n: usize) -> Duration {
    let n = u32::try_from(n.max(1)).unwrap_or(u32::MAX);
    connect_interval
        .min(monitor_timeout.saturating_sub(connect_interval) / n)
        .max(MIN_DIAL_STEP)
}

/// The nominal hold after strike `strikes` (doubling from [`BACKOFF_FIRST`], at most `cap`),
/// scaled into `[1/2, 1]` of itself by `rand01`.
fn hold_for(strikes: u32, cap: Duration, rand01: f64) -> Duration {
    let r = if rand01.is_finite() {
        rand01.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let doublings = strikes.saturating_sub(1).min(20);
    let nominal = BACKOFF_FIRST.saturating_mul(1 << doublings).min(cap);
    nominal.mul_f64(0.5 + r / 2.0)
}

/// The pause before re-dialling an address refused for the `refusals`-th time in an
/// attempt (see [Refused connections](self#refused-connections)), `rand01` placing it in
/// its range.
fn refused_pause(refusals: u32, rand01: f64) -> Duration {
    let r = if rand01.is_finite() {
        rand01.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let low = REFUSED_REDIAL_FIRST
        .saturating_add(REFUSED_REDIAL_STEP.saturating_mul(refusals.saturating_sub(1)))
        .min(REFUSED_REDIAL_MAX.saturating_sub(REFUSED_REDIAL_STEP));
    low + REFUSED_REDIAL_STEP.mul_f64(r)
}

/// Dials the refused addresses whose pause is over.
fn redial_due(attempt: &mut Attempt, node: &Str, now: Instant, out: &mut Vec<Effect>) {
    attempt.redials.retain(|&(at, addr)| {
        if at <= now {
            out.push(Effect::Dial {
                node: node.clone(),
                addr,
            });
            false
        } else {
            true
        }
    });
}

/// Starts dialling the attempt's plan: at once, or when the node's hold ends (if that is
/// before the deadline).
fn dial_first(
    attempt: &mut Attempt,
    node: &Str,
    now: Instant,
    hold: Option<Instant>,
    timers: &mut BinaryHeap<Timer>,
    out: &mut Vec<Effect>,
) {
    match hold {
        Some(at) if at > now => {
            attempt.next_dial = (at < attempt.deadline).then_some(at);
            if attempt.next_dial.is_some() {
                timers.push(Reverse((at, attempt.id, node.clone())));
            }
        }
        _ => dial_next(attempt, node, now, timers, out),
    }
}

/// Dials the next address of the attempt's plan and schedules the one after, if it falls
/// before the deadline.
fn dial_next(
    attempt: &mut Attempt,
    node: &Str,
    now: Instant,
    timers: &mut BinaryHeap<Timer>,
    out: &mut Vec<Effect>,
) {
    attempt.next_dial = None;
    let Some(&addr) = attempt.plan.get(attempt.next) else {
        return;
    };
    attempt.next += 1;
    out.push(Effect::Dial {
        node: node.clone(),
        addr,
    });
    if attempt.next < attempt.plan.len() {
        let at = later(now, attempt.step);
        if at < attempt.deadline {
            attempt.next_dial = Some(at);
            timers.push(Reverse((at, attempt.id, node.clone())));
        }
    }
}

/// `now + d`, saturating at `now` should the clock's range end (it never does with the
/// intervals the table allows).
fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d).unwrap_or(now)
}

/// Removes repeated addresses, keeping the first of each.
fn dedup_in_order(addrs: &mut Vec<SocketAddr>) {
    let mut i = 0;
    while i < addrs.len() {
        if addrs[..i].contains(&addrs[i]) {
            addrs.remove(i);
        } else {
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests;

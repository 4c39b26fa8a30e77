//! A deterministic network simulator for [`NodeCore`]s (tests only).
//!
//! Many nodes run in virtual time, driven by one priority queue of events (timer expiry,
//! TCP connects, handshake lines, frames, closes). Connections are modelled at the level of
//! the connection events the tokio transport reports (`transport/connection.rs`):
//!
//! ```text
//!   dialer                          acceptor
//!   Dial effect ── SYN (latency) ──▶ accepted(id); sends greeting
//!   greeting ◀────────────────────── (dialer sends its greeting on connect)
//!   greeted(id); auth held until the verdict is Commit, then sent; committed(id)
//!   (acting on a verdict, and reporting the auth line, may lag: `Opts::task_delay`)
//!   peer's auth arrives: peer_committed(id); once both auth lines are through and the
//!   verdict is not Close: up(id, node, link)
//!   close of either end: closed(...) there, FIN to the other end ("EOF from peer")
//! ```
//!
//! Links queue frames with a random latency per frame, FIFO per direction. Partitions
//! either drop traffic (crossing connections break: both ends notice after a random delay,
//! what was in flight is lost) or hold it (delivered in order when the partition heals).
//! Dials across a partition time out after `connect_interval`; dials to a dead node are
//! refused. A killed node stops at once; its peers see its connections end.
//!
//! Frames to the node port (`""`) whose tag starts with `g_` go to the receiving core's
//! `global_request`; frames to port `seq` carry a counter (`[n]`) and are recorded, as are
//! the effects that a kernel would act on (monitors firing on `NodeLost`, node events,
//! replies, `db_mon` changes), each with its virtual time.

use crate::conn_registry::Verdict;
use crate::db::names::Family;
use crate::global::DbChange;
use crate::global::QueryKind;
use crate::node_core::{Config, Effect, Log, NodeCore};
use crate::peers::Link;
use crate::value::{Msg, Str, Value};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::hash::BuildHasherDefault;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// How a connection end reads when the receiving node refused a frame (see [`Sim::refuse`]).
const REFUSED: &str = "protocol error: frame refused";

#[cfg(test)]
mod refusal_tests;
#[cfg(test)]
mod seed_restart_tests;
#[cfg(test)]
mod tests;

/// A fixed-key hasher, so that the cores' hash maps iterate in the same order every run.
type FixedHasher = BuildHasherDefault<DefaultHasher>;

/// The core of a simulated node.
pub type Core = NodeCore<SimLink, FixedHasher>;

/// What a link did while a core was running; carried out right after the call.
enum Op {
    Frame {
        conn: usize,
        side: usize,
        port: Str,
        msg: Msg,
    },
    Close {
        conn: usize,
        side: usize,
    },
}

/// The sending side of one end of a simulated connection.
pub struct SimLink {
    conn: usize,
    side: usize,
    id: u64,
    ops: Rc<RefCell<Vec<Op>>>,
}

impl Link for SimLink {
    fn send(&self, port: &str, msg: Msg) -> bool {
        let mut ops = self.ops.borrow_mut();
        let woke = ops.is_empty();
        ops.push(Op::Frame {
            conn: self.conn,
            side: self.side,
            port: Str::from(port),
            msg,
        });
        woke
    }

    fn id(&self) -> u64 {
        self.id
    }

    fn close(&self) {
        self.ops.borrow_mut().push(Op::Close {
            conn: self.conn,
            side: self.side,
        });
    }
}

/// What travels on a connection.
#[derive(Debug)]
enum Wire {
    Greeting,
    Auth,
    Frame(Str, Msg),
    Fin,
}

#[derive(Debug)]
enum Ev {
    /// A node's deadline.
    Timer(usize),
    /// A dial reaches the listener.
    Syn(usize),
    /// A dial failed.
    DialFail(usize, &'static str),
    /// Something arrives at end `to` of a connection.
    Wire { conn: usize, to: usize, wire: Wire },
    /// An end looks at its verdict again.
    Progress { conn: usize, side: usize },
    /// The node task learns that an end sent its auth line (see [`Opts::task_delay`]).
    Committed { conn: usize, side: usize },
    /// An end notices that its connection is broken (or its writer was closed).
    Close {
        conn: usize,
        side: usize,
        text: &'static str,
    },
}

struct Item {
    at: Instant,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Item {
    fn eq(&self, o: &Item) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Item {}
impl PartialOrd for Item {
    fn partial_cmp(&self, o: &Item) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Item {
    fn cmp(&self, o: &Item) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

/// One end of a connection.
#[derive(Debug)]
struct End {
    node: usize,
    /// Registered at its node (the acceptor's end once the SYN arrived).
    open: bool,
    id: u64,
    outgoing: bool,
    /// Dialled address (outgoing) or the peer's address.
    addr: SocketAddr,
    peer: Option<Str>,
    greeting_sent: bool,
    auth_sent: bool,
    /// Its node was told that the auth line was sent (`committed`).
    commit_reported: bool,
    /// The peer's auth line arrived.
    est: bool,
    verdict: Verdict,
    /// Data phase (the link was handed to the core).
    up: bool,
    /// The writer was closed: frames are no longer sent.
    tx_closed: bool,
    closed: bool,
    /// Still reading (false once a frame was refused).
    open_rx: bool,
}

impl End {
    fn new(node: usize, id: u64, outgoing: bool, addr: SocketAddr, open: bool) -> End {
        End {
            node,
            open,
            id,
            outgoing,
            addr,
            peer: None,
            greeting_sent: false,
            auth_sent: false,
            commit_reported: false,
            est: false,
            verdict: Verdict::Pending,
            up: false,
            tx_closed: false,
            closed: false,
            open_rx: true,
        }
    }
}

struct Conn {
    ends: [End; 2],
    /// The listener's node (`None`: nobody listens at the address).
    target: Option<usize>,
    dialed_at: Instant,
    /// Traffic is dropped; both ends are about to notice.
    broken: bool,
    /// Last delivery time per receiving side (FIFO).
    last: [Instant; 2],
    /// Held traffic per receiving side (hold partitions).
    held: [VecDeque<Wire>; 2],
}

/// What a node's "kernel" saw, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Rec {
    /// Monitors of the node fired (`NodeLost`).
    Lost(Str, String),
    /// Node event: up.
    Up(Str),
    /// Node event: down.
    Down(Str, String),
    /// A counter message arrived from a node.
    Recv(Str, u64),
    /// A counter message was handed to the core for a node.
    Sent(Str, u64),
    /// The master changed.
    Master(Option<Str>),
    /// This node became global.
    Global,
    /// A query was answered.
    Reply(u64, Value),
}

/// How a partition treats traffic between its groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartitionMode {
    /// Crossing connections break (both ends notice within `detect`), traffic is lost.
    Drop,
    /// Traffic is held and delivered when the partition heals; connections stay.
    Hold,
}

/// Settings of a simulation.
#[derive(Clone, Debug)]
pub struct Opts {
    /// Shortest one-way latency.
    pub latency: Duration,
    /// Random extra latency, up to this much, per frame.
    pub jitter: Duration,
    /// Longest time an end takes to notice that its connection broke.
    pub detect: Duration,
    /// Longest time between the node deciding a verdict and the connection acting on it,
    /// and again between the connection sending its auth line and the node learning of it
    /// (random per step). In the tokio runtime each connection is a task of its own that
    /// reads its verdict from a channel and reports back through another one, so a node may
    /// revise a verdict that its connection already acted on. Zero: both happen at once.
    pub task_delay: Duration,
    /// Print every log record and connection event.
    pub verbose: bool,
    /// Check the registries' indexes after every event (costs a scan per node and event).
    pub check: bool,
}

impl Default for Opts {
    fn default() -> Opts {
        Opts {
            latency: Duration::from_millis(1),
            jitter: Duration::from_millis(1),
            detect: Duration::from_millis(200),
            task_delay: Duration::ZERO,
            verbose: std::env::var_os("SIM_VERBOSE").is_some(),
            check: true,
        }
    }
}

/// A simulated node.
pub struct Node {
    /// Its ID.
    pub name: Str,
    /// Its listen address.
    pub addr: SocketAddr,
    /// Its core.
    pub core: Core,
    /// False once killed.
    pub alive: bool,
    group: u32,
    connect_interval: Duration,
    next_accept: u64,
    armed: Option<Instant>,
    /// Core connection id → (connection, side).
    ends: HashMap<u64, (usize, usize)>,
    /// What its kernel saw.
    pub recs: Vec<(Instant, Rec)>,
    /// Mirrors of watched families, kept from the `Notify` changes.
    pub mirrors: BTreeMap<Str, BTreeMap<Str, Value>>,
    /// Log records seen.
    pub logs: Vec<(Instant, Log)>,
    /// Keys reported deleted by `Notify` (family, key), with the time.
    pub deletions: Vec<(Instant, Str, Str)>,
    /// The frames this node's decoder refuses (see [`Sim::refuse`]).
    refuse: Option<Refuse>,
    /// Its configuration (for [`Sim::restart`]).
    cfg: Config,
    /// Every dial it made: when, and the address.
    pub dials: Vec<(Instant, SocketAddr)>,
    /// When each connection to its listener arrived (accepted while alive).
    pub accepts: Vec<Instant>,
}

/// Decides whether a receiving node refuses a frame (`port`, message): `Some(delay)` closes
/// the connection `delay` after the frame arrived, as a decoder error would (the frame and
/// everything after it are not delivered).
pub type Refuse = Rc<dyn Fn(&str, &Msg) -> Option<Duration>>;

/// The simulated network.
pub struct Sim {
    /// The start of virtual time.
    pub t0: Instant,
    /// The current virtual time.
    pub now: Instant,
    /// The nodes, by index.
    pub nodes: Vec<Node>,
    by_name: HashMap<Str, usize>,
    by_addr: HashMap<SocketAddr, usize>,
    conns: Vec<Conn>,
    queue: BinaryHeap<Reverse<Item>>,
    seq: u64,
    rng: StdRng,
    ops: Rc<RefCell<Vec<Op>>>,
    opts: Opts,
    mode: PartitionMode,
    /// Events run so far.
    pub events: u64,
    /// Nodes with a master (kept up to date after every event).
    pub with_master: usize,
    has_master: Vec<bool>,
    same_instant: u64,
}

impl Sim {
    /// An empty network; `seed` drives every random choice.
    pub fn new(seed: u64, opts: Opts) -> Sim {
        let t0 = Instant::now();
        Sim {
            t0,
            now: t0,
            nodes: Vec::new(),
            by_name: HashMap::new(),
            by_addr: HashMap::new(),
            conns: Vec::new(),
            queue: BinaryHeap::new(),
            seq: 0,
            rng: StdRng::seed_from_u64(seed),
            ops: Rc::new(RefCell::new(Vec::new())),
            opts,
            mode: PartitionMode::Drop,
            events: 0,
            with_master: 0,
            has_master: Vec::new(),
            same_instant: 0,
        }
    }

    /// The listen address node number `i` gets.
    pub fn addr_of(i: usize) -> SocketAddr {
        SocketAddr::from(([127, 1, (i >> 8) as u8, i as u8], 4040))
    }

    /// Adds a node (not started); `f` adjusts its configuration (listening address and a
    /// random seed are filled in).
    pub fn add(&mut self, name: &str, f: impl FnOnce(&mut Config)) -> usize {
        let i = self.nodes.len();
        let addr = Sim::addr_of(i);
        let mut cfg = Config::new(name);
        cfg.listening = vec![addr];
        cfg.monitor_timeout = Duration::from_secs(5);
        cfg.rng_seed = self.rng.gen();
        f(&mut cfg);
        let core = Core::with_hasher(cfg.clone(), self.now, FixedHasher::default());
        let connect_interval = cfg.connect_interval;
        self.nodes.push(Node {
            name: Str::from(name),
            addr,
            core,
            alive: true,
            group: 0,
            connect_interval,
            next_accept: 2,
            armed: None,
            ends: HashMap::new(),
            recs: Vec::new(),
            mirrors: BTreeMap::new(),
            logs: Vec::new(),
            deletions: Vec::new(),
            refuse: None,
            cfg,
            dials: Vec::new(),
            accepts: Vec::new(),
        });
        self.has_master.push(false);
        self.by_name.insert(Str::from(name), i);
        self.by_addr.insert(addr, i);
        i
    }

    /// The index of node `name`.
    pub fn idx(&self, name: &str) -> usize {
        self.by_name[name]
    }

    /// From now on node `i` refuses the frames `refuse` picks: the connection it arrived on
    /// is closed with a protocol error (as the transport does after a decode error).
    pub fn refuse(&mut self, i: usize, refuse: impl Fn(&str, &Msg) -> Option<Duration> + 'static) {
        self.nodes[i].refuse = Some(Rc::new(refuse));
    }

    /// Node `i`, killed before, starts again with the same configuration (a new process:
    /// new core, nothing remembered).
    pub fn restart(&mut self, i: usize) {
        assert!(!self.nodes[i].alive, "restart of a live node");
        let mut cfg = self.nodes[i].cfg.clone();
        cfg.rng_seed = self.rng.gen();
        let n = &mut self.nodes[i];
        n.core = Core::with_hasher(cfg, self.now, FixedHasher::default());
        n.alive = true;
        n.armed = None;
        n.ends.clear();
        n.mirrors.clear();
        self.start(i);
    }

    /// Starts node `i`.
    pub fn start(&mut self, i: usize) {
        let now = self.now;
        self.nodes[i].core.start(now);
        self.pump(i);
    }

    /// Runs `f` on node `i`'s core now, then carries out its effects.
    pub fn with<R>(&mut self, i: usize, f: impl FnOnce(&mut Core, Instant) -> R) -> R {
        let now = self.now;
        let r = f(&mut self.nodes[i].core, now);
        self.pump(i);
        r
    }

    /// Node `i` sends counter `n` to port `seq` of node `to`.
    pub fn send_seq(&mut self, i: usize, to: &str, n: u64) {
        let now = self.now;
        self.nodes[i].recs.push((now, Rec::Sent(Str::from(to), n)));
        self.with(i, |c, now| c.send(to, "seq", crate::msg![n], now));
    }

    /// `db_set` on node `i`.
    pub fn db_set(&mut self, i: usize, family: &str, key: &str, value: Value) {
        let fam = Family::user(family).unwrap();
        self.with(i, |c, now| c.db_set(&fam, key, value, now));
    }

    /// `db_mon` on node `i` (subscriber id 1).
    pub fn db_mon(&mut self, i: usize, family: &str) {
        let fam = Family::user(family).unwrap();
        self.with(i, |c, now| c.db_watch(&fam, 1, now));
    }

    /// A `g_db_keys` query on node `i`; returns its id.
    pub fn query_keys(&mut self, i: usize, family: &str) -> u64 {
        let fam = Family::user(family).unwrap();
        self.with(i, |c, now| c.db_query(QueryKind::Keys, &fam, now))
    }

    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.t0
    }

    // ---- the network -----------------------------------------------------------------------

    /// Splits the network: node `i` goes to group `groups(i)`.
    pub fn partition(&mut self, mode: PartitionMode, groups: impl Fn(usize) -> u32) {
        self.mode = mode;
        for (i, n) in self.nodes.iter_mut().enumerate() {
            n.group = groups(i);
        }
        if mode == PartitionMode::Drop {
            for c in 0..self.conns.len() {
                let conn = &self.conns[c];
                let a = conn.ends[0].node;
                let b = conn.target;
                if let Some(b) = b {
                    if self.nodes[a].group != self.nodes[b].group {
                        self.break_conn(c);
                    }
                }
            }
        }
    }

    /// Ends every partition; held traffic is delivered.
    pub fn heal(&mut self) {
        for n in &mut self.nodes {
            n.group = 0;
        }
        for c in 0..self.conns.len() {
            for to in 0..2 {
                let held: Vec<Wire> = self.conns[c].held[to].drain(..).collect();
                for w in held {
                    self.transmit(c, to, w);
                }
            }
        }
    }

    /// Breaks every live connection between nodes `a` and `b`.
    pub fn break_links(&mut self, a: usize, b: usize) {
        for c in 0..self.conns.len() {
            let conn = &self.conns[c];
            let x = conn.ends[0].node;
            if conn
                .target
                .is_some_and(|y| (x, y) == (a, b) || (x, y) == (b, a))
            {
                self.break_conn(c);
            }
        }
    }

    /// Every live connection between `noticer` and `other` goes half-open: nothing written
    /// to it arrives any more, `noticer`'s end fails at once (a write error, a reset), and
    /// `other`'s end, which just stops getting data, notices only `late` afterwards (its
    /// keepalive timeout).
    pub fn half_open(&mut self, noticer: usize, other: usize, late: Duration) {
        for c in 0..self.conns.len() {
            let conn = &self.conns[c];
            let x = conn.ends[0].node;
            let pair = conn
                .target
                .is_some_and(|y| (x, y) == (noticer, other) || (x, y) == (other, noticer));
            if !pair || conn.broken {
                continue;
            }
            self.conns[c].broken = true;
            for side in 0..2 {
                let e = &self.conns[c].ends[side];
                if e.open && !e.closed {
                    let (at, text) = if e.node == noticer {
                        (self.now, "connection reset by peer")
                    } else {
                        (self.now + late, "connection timed out")
                    };
                    self.at(
                        at,
                        Ev::Close {
                            conn: c,
                            side,
                            text,
                        },
                    );
                }
            }
        }
    }

    /// Node `i` dies: its connections end at the other nodes.
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].alive = false;
        if self.has_master[i] {
            self.has_master[i] = false;
            self.with_master -= 1;
        }
        for c in 0..self.conns.len() {
            for side in 0..2 {
                let e = &mut self.conns[c].ends[side];
                if e.node == i && e.open && !e.closed {
                    e.closed = true;
                    e.tx_closed = true;
                    if !self.conns[c].broken {
                        self.transmit(c, 1 - side, Wire::Fin);
                    }
                }
            }
        }
    }

    fn break_conn(&mut self, c: usize) {
        if self.conns[c].broken {
            return;
        }
        self.conns[c].broken = true;
        for side in 0..2 {
            let e = &self.conns[c].ends[side];
            if e.open && !e.closed {
                let d = self.rand_dur(self.opts.detect);
                self.at(
                    self.now + d,
                    Ev::Close {
                        conn: c,
                        side,
                        text: "connection timed out",
                    },
                );
            }
        }
    }

    fn rand_dur(&mut self, max: Duration) -> Duration {
        let n = max.as_nanos() as u64;
        if n == 0 {
            Duration::ZERO
        } else {
            Duration::from_nanos(self.rng.gen_range(0..=n))
        }
    }

    fn at(&mut self, at: Instant, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse(Item {
            at,
            seq: self.seq,
            ev,
        }));
    }

    fn split(&self, a: usize, b: usize) -> bool {
        self.nodes[a].group != self.nodes[b].group
    }

    /// Sends `w` to end `to` of connection `c` (FIFO, random latency).
    fn transmit(&mut self, c: usize, to: usize, w: Wire) {
        if self.conns[c].broken {
            return;
        }
        let (from_node, to_node) = (self.conns[c].ends[1 - to].node, self.conns[c].ends[to].node);
        if self.mode == PartitionMode::Hold
            && (self.split(from_node, to_node) || !self.conns[c].held[to].is_empty())
        {
            self.conns[c].held[to].push_back(w);
            return;
        }
        let d = self.opts.latency + self.rand_dur(self.opts.jitter);
        let at = (self.now + d).max(self.conns[c].last[to]);
        self.conns[c].last[to] = at;
        self.at(
            at,
            Ev::Wire {
                conn: c,
                to,
                wire: w,
            },
        );
    }

    // ---- running ---------------------------------------------------------------------------

    /// Runs every event due until `t` (virtual), then sets the clock to `t`.
    pub fn run_until(&mut self, t: Instant) {
        while self.queue.peek().is_some_and(|Reverse(i)| i.at <= t) {
            self.step();
        }
        self.now = self.now.max(t);
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let t = self.now + d;
        self.run_until(t);
    }

    /// Starts every node.
    pub fn start_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.start(i);
        }
    }

    /// Each of `nodes` sets `family`/<its name> to `value(node)`.
    pub fn set_each(&mut self, nodes: &[usize], family: &str, value: impl Fn(usize) -> Value) {
        for &n in nodes {
            let name = self.nodes[n].name.clone();
            self.db_set(n, family, &name, value(n));
        }
    }

    /// Runs until every node has a master and `watcher`'s `db_mon` mirror of `family` holds
    /// `keys` entries; returns the virtual time that took.
    pub fn run_until_formed(
        &mut self,
        limit: Duration,
        watcher: usize,
        family: &str,
        keys: usize,
    ) -> Option<Duration> {
        let total = self.nodes.len();
        self.run_until_cond(limit, |s| {
            s.with_master == total
                && s.nodes[watcher]
                    .mirrors
                    .get(family)
                    .is_some_and(|m| m.len() == keys)
        })
    }

    /// Runs until `cond` holds (checked after every event) or `limit` of virtual time has
    /// passed; returns the virtual time when it first held.
    pub fn run_until_cond(
        &mut self,
        limit: Duration,
        mut cond: impl FnMut(&Sim) -> bool,
    ) -> Option<Duration> {
        let end = self.now + limit;
        loop {
            if cond(self) {
                return Some(self.elapsed());
            }
            if self.queue.peek().is_none_or(|Reverse(i)| i.at > end) {
                self.now = end;
                return None;
            }
            self.step();
        }
    }

    fn step(&mut self) {
        let Some(Reverse(item)) = self.queue.pop() else {
            return;
        };
        if item.at == self.now {
            self.same_instant += 1;
            assert!(self.same_instant < 1_000_000, "event storm at one instant");
        } else {
            self.same_instant = 0;
        }
        self.now = self.now.max(item.at);
        self.events += 1;
        match item.ev {
            Ev::Timer(i) => self.timer(i, item.at),
            Ev::Syn(c) => self.syn(c),
            Ev::DialFail(c, text) => self.close_end(c, 0, text),
            Ev::Wire { conn, to, wire } => self.wire(conn, to, wire),
            Ev::Progress { conn, side } => self.progress(conn, side),
            Ev::Committed { conn, side } => self.report_committed(conn, side),
            Ev::Close { conn, side, text } => self.close_end(conn, side, text),
        }
        if self.opts.check {
            for n in self.nodes.iter().filter(|n| n.alive) {
                n.core.registry().check_indexes();
            }
        }
    }

    fn timer(&mut self, i: usize, at: Instant) {
        let n = &mut self.nodes[i];
        if !n.alive || n.armed != Some(at) {
            return;
        }
        n.armed = None;
        if n.core.poll_timeout().is_some_and(|t| t <= self.now) {
            let now = self.now;
            n.core.handle_timeout(now);
        }
        self.pump(i);
    }

    fn rearm(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        if !n.alive {
            return;
        }
        if let Some(t) = n.core.poll_timeout() {
            let t = t.max(self.now);
            if n.armed.is_none_or(|a| t < a) {
                n.armed = Some(t);
                self.at(t, Ev::Timer(i));
            }
        }
    }

    /// Carries out what node `i`'s core asked for.
    fn pump(&mut self, i: usize) {
        loop {
            let ops: Vec<Op> = std::mem::take(&mut *self.ops.borrow_mut());
            let any_ops = !ops.is_empty();
            for op in ops {
                match op {
                    Op::Frame {
                        conn,
                        side,
                        port,
                        msg,
                    } => {
                        if !self.conns[conn].ends[side].tx_closed {
                            self.transmit(conn, 1 - side, Wire::Frame(port, msg));
                        }
                    }
                    Op::Close { conn, side } => {
                        let e = &mut self.conns[conn].ends[side];
                        if !e.tx_closed {
                            e.tx_closed = true;
                            let now = self.now;
                            self.at(
                                now,
                                Ev::Close {
                                    conn,
                                    side,
                                    text: "connection closed",
                                },
                            );
                        }
                    }
                }
            }
            let Some(e) = self.nodes[i].core.poll_effect() else {
                if any_ops {
                    continue;
                }
                break;
            };
            self.effect(i, e);
        }
        let m = self.nodes[i].alive && self.nodes[i].core.global().master().is_some();
        if m != self.has_master[i] {
            self.has_master[i] = m;
            if m {
                self.with_master += 1;
            } else {
                self.with_master -= 1;
            }
        }
        self.rearm(i);
    }

    fn effect(&mut self, i: usize, e: Effect) {
        let now = self.now;
        let verbose = self.opts.verbose;
        let n = &mut self.nodes[i];
        if verbose {
            eprintln!("{:?} {} {:?}", now - self.t0, n.name, e);
        }
        match e {
            Effect::Dial { id, addr, .. } => {
                n.dials.push((now, addr));
                let target = self.by_addr.get(&addr).copied();
                let c = self.conns.len();
                self.nodes[i].ends.insert(id, (c, 0));
                let dummy = Sim::addr_of(0);
                self.conns.push(Conn {
                    ends: [
                        End::new(i, id, true, addr, true),
                        End::new(target.unwrap_or(usize::MAX), 0, false, dummy, false),
                    ],
                    target,
                    dialed_at: now,
                    broken: false,
                    last: [now, now],
                    held: [VecDeque::new(), VecDeque::new()],
                });
                if target.is_some_and(|t| self.split(i, t)) {
                    let ci = self.nodes[i].connect_interval;
                    self.at(now + ci, Ev::DialFail(c, "connect timed out"));
                } else {
                    let d = self.opts.latency + self.rand_dur(self.opts.jitter);
                    self.at(now + d, Ev::Syn(c));
                }
            }
            Effect::Verdict { id, verdict } => {
                if let Some(&(conn, side)) = n.ends.get(&id) {
                    let e = &mut self.conns[conn].ends[side];
                    if !e.closed {
                        e.verdict = verdict;
                        let d = self.rand_dur(self.opts.task_delay);
                        self.at(now + d, Ev::Progress { conn, side });
                    }
                }
            }
            Effect::NodeLost { node, reason } => n.recs.push((now, Rec::Lost(node, reason))),
            Effect::NodeUp(node) => n.recs.push((now, Rec::Up(node))),
            Effect::NodeDown { node, reason } => n.recs.push((now, Rec::Down(node, reason))),
            Effect::Notify {
                change:
                    DbChange {
                        family,
                        contents,
                        added,
                        changed,
                        deleted,
                        ..
                    },
                ..
            } => {
                let family_name = family.clone();
                let m = n.mirrors.entry(family).or_default();
                for k in added.iter().chain(&changed) {
                    m.insert(k.clone(), contents[k].clone());
                }
                for k in &deleted {
                    m.remove(k);
                    n.deletions.push((now, family_name.clone(), k.clone()));
                }
                assert_eq!(m.len(), contents.len(), "mirror follows the changes");
            }
            Effect::Reply { query, value } => n.recs.push((now, Rec::Reply(query, value))),
            Effect::Log(l) => {
                match &l {
                    Log::Master(m) => n.recs.push((now, Rec::Master(m.clone()))),
                    Log::BecameGlobal => n.recs.push((now, Rec::Global)),
                    Log::Refused { .. } | Log::DbSetRefused { .. } => {
                        panic!("{}: {l}", n.name)
                    }
                    _ => {}
                }
                n.logs.push((now, l));
            }
        }
    }

    // ---- connections -----------------------------------------------------------------------

    fn syn(&mut self, c: usize) {
        let now = self.now;
        let conn = &self.conns[c];
        if conn.ends[0].closed {
            return;
        }
        let a = conn.ends[0].node;
        let Some(b) = conn.target.filter(|&b| self.nodes[b].alive) else {
            let d = self.opts.latency;
            self.at(
                now + d,
                Ev::DialFail(c, "connect failed: Connection refused"),
            );
            return;
        };
        if conn.broken || self.split(a, b) {
            let at = (conn.dialed_at + self.nodes[a].connect_interval).max(now);
            self.at(at, Ev::DialFail(c, "connect timed out"));
            return;
        }
        self.nodes[b].accepts.push(now);
        let id = self.nodes[b].next_accept;
        self.nodes[b].next_accept += 2;
        self.nodes[b].ends.insert(id, (c, 1));
        let peer_addr = SocketAddr::from(([127, 2, (a >> 8) as u8, a as u8], 50000));
        self.conns[c].ends[1] = End::new(b, id, false, peer_addr, true);
        self.conns[c].ends[1].greeting_sent = true;
        self.nodes[b].core.accepted(id, now);
        self.pump(b);
        self.transmit(c, 0, Wire::Greeting);
    }

    fn wire(&mut self, c: usize, to: usize, w: Wire) {
        let now = self.now;
        let conn = &self.conns[c];
        let e = &conn.ends[to];
        if conn.broken || !e.open || e.closed || !e.open_rx || !self.nodes[e.node].alive {
            return;
        }
        let i = e.node;
        match w {
            Wire::Greeting => {
                if !e.greeting_sent {
                    // The dialer's connect completed: it sends its greeting.
                    self.conns[c].ends[to].greeting_sent = true;
                    self.transmit(c, 1 - to, Wire::Greeting);
                }
                let peer = self.nodes[self.conns[c].ends[1 - to].node].name.clone();
                let e = &mut self.conns[c].ends[to];
                if peer == self.nodes[i].name {
                    if e.outgoing {
                        let addr = e.addr;
                        self.nodes[i].core.reached_self(addr, now);
                        self.pump(i);
                    }
                    self.close_end(c, to, "handshake: I refuse to talk to myself");
                    return;
                }
                e.peer = Some(peer.clone());
                let (id, addr, outgoing) = (e.id, e.addr, e.outgoing);
                self.nodes[i].core.greeted(id, &peer, addr, outgoing, now);
                self.pump(i);
                self.progress(c, to);
            }
            Wire::Auth => {
                self.conns[c].ends[to].est = true;
                let id = self.conns[c].ends[to].id;
                self.nodes[i].core.peer_committed(id, now);
                self.pump(i);
                self.progress(c, to);
            }
            Wire::Frame(port, msg) => {
                assert!(e.up, "a frame before the data phase");
                if let Some(delay) = self.nodes[i].refuse.as_ref().and_then(|r| r(&port, &msg)) {
                    // The decoder stops here: nothing more is read, the connection closes.
                    self.conns[c].ends[to].open_rx = false;
                    self.at(
                        now + delay,
                        Ev::Close {
                            conn: c,
                            side: to,
                            text: REFUSED,
                        },
                    );
                    return;
                }
                let from = e.peer.clone().unwrap();
                self.deliver(i, &from, &port, msg);
            }
            Wire::Fin => {
                let text = if e.up {
                    "EOF from peer"
                } else {
                    crate::peers::CLOSED_DURING_HANDSHAKE
                };
                self.close_end(c, to, text);
            }
        }
    }

    /// What connection.rs does with its held auth line and the verdict.
    fn progress(&mut self, c: usize, side: usize) {
        let now = self.now;
        let e = &self.conns[c].ends[side];
        if !e.open || e.closed || e.peer.is_none() || e.up {
            return;
        }
        let i = e.node;
        if !e.auth_sent {
            match e.verdict {
                Verdict::Pending => return,
                Verdict::Close(why) => return self.close_end(c, side, why),
                Verdict::Commit => {
                    self.conns[c].ends[side].auth_sent = true;
                    self.transmit(c, 1 - side, Wire::Auth);
                    if !self.opts.task_delay.is_zero() {
                        let d = self.rand_dur(self.opts.task_delay);
                        return self.at(now + d, Ev::Committed { conn: c, side });
                    }
                    self.conns[c].ends[side].commit_reported = true;
                    let id = self.conns[c].ends[side].id;
                    self.nodes[i].core.committed(id);
                    self.pump(i);
                }
            }
        }
        let e = &mut self.conns[c].ends[side];
        if e.closed || !e.est || e.up || !e.commit_reported {
            return;
        }
        if let Verdict::Close(why) = e.verdict {
            return self.close_end(c, side, why);
        }
        e.up = true;
        let (id, peer) = (e.id, e.peer.clone().unwrap());
        let link = SimLink {
            conn: c,
            side,
            id,
            ops: self.ops.clone(),
        };
        self.nodes[i].core.up(id, &peer, link, now);
        self.pump(i);
    }

    /// The node of end `side` of `c` learns that the end sent its auth line (some time after
    /// it did, see [`Opts::task_delay`]); then the end goes on as after the auth line.
    fn report_committed(&mut self, c: usize, side: usize) {
        let e = &mut self.conns[c].ends[side];
        if e.closed || e.commit_reported {
            return;
        }
        e.commit_reported = true;
        let (i, id) = (e.node, e.id);
        self.nodes[i].core.committed(id);
        self.pump(i);
        self.progress(c, side);
    }

    /// End `side` of `c` closes with `text` (reported to its core); the other end gets a
    /// FIN unless the connection is broken.
    fn close_end(&mut self, c: usize, side: usize, text: &'static str) {
        let now = self.now;
        let e = &mut self.conns[c].ends[side];
        if !e.open || e.closed {
            return;
        }
        e.closed = true;
        e.tx_closed = true;
        let (i, id, addr, outgoing, peer) = (e.node, e.id, e.addr, e.outgoing, e.peer.clone());
        if !self.nodes[i].alive {
            return;
        }
        if self.opts.verbose {
            eprintln!(
                "{:?} {} conn {c}/{side} id {id} closed: {text}",
                now - self.t0,
                self.nodes[i].name
            );
        }
        self.nodes[i].ends.remove(&id);
        if text == REFUSED {
            self.nodes[i].core.refused_input(id);
        }
        self.nodes[i]
            .core
            .closed(id, peer.as_deref(), addr, outgoing, text, now);
        self.pump(i);
        if self.conns[c].ends[1 - side].open {
            self.transmit(c, 1 - side, Wire::Fin);
        }
    }

    /// The receiving node's kernel: node-port requests and counters.
    fn deliver(&mut self, i: usize, from: &str, port: &str, msg: Msg) {
        let now = self.now;
        match port {
            "" => {
                let mut it = msg.into_iter();
                let tag = it.next().and_then(|t| t.as_str().map(Str::from));
                match tag {
                    Some(tag) if tag.starts_with("g_") => {
                        self.nodes[i]
                            .core
                            .global_request(from, &tag, it.collect(), now);
                        self.pump(i);
                    }
                    other => panic!("unexpected node-port message {other:?}"),
                }
            }
            "seq" => {
                let n = msg.get(0).and_then(Value::as_u64).unwrap();
                self.nodes[i]
                    .recs
                    .push((now, Rec::Recv(Str::from(from), n)));
            }
            other => panic!("message for unknown port {other}"),
        }
    }

    // ---- checks ----------------------------------------------------------------------------

    /// The connections that are in their data phase at both ends, between nodes `a` and
    /// `b` (connection indices).
    pub fn live_between(&self, a: usize, b: usize) -> Vec<usize> {
        (0..self.conns.len())
            .filter(|&c| {
                let conn = &self.conns[c];
                let (x, y) = (conn.ends[0].node, conn.ends[1].node);
                ((x, y) == (a, b) || (x, y) == (b, a))
                    && conn.ends.iter().all(|e| e.open && e.up && !e.closed)
            })
            .collect()
    }

    /// The id of the link node `a` uses for node `b`, with its connection index.
    pub fn link_of(&self, a: usize, b: usize) -> Option<(usize, u64)> {
        let link = self.nodes[a].core.peers().link(&self.nodes[b].name)?;
        Some((link.conn, link.id))
    }

    /// Every `Lost` record of node `i`.
    pub fn lost(&self, i: usize) -> Vec<(Duration, Str, String)> {
        self.nodes[i]
            .recs
            .iter()
            .filter_map(|(t, r)| match r {
                Rec::Lost(n, why) => Some((*t - self.t0, n.clone(), why.clone())),
                _ => None,
            })
            .collect()
    }
}

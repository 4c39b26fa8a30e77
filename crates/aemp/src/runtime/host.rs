//! The kernel's host: the node task's state besides the kernel (peer table, connection
//! registry, global service, seeds), and the routing of their effects.
//!
//! Each state machine returns what it wants done; this file turns those effects into events
//! for the others, into dials and into messages for connections. Nothing here decides a
//! protocol question.

use super::{Cmd, Core, DbChange, DbCmd, NodeEvent, ReplyFn, Setup};
use crate::kernel::monitor::Canceller;
use crate::kernel::{Host, Task};
use crate::transport::connection::ConnTx;
use crate::transport::{ConnEvent, Transport};
use aemp_proto::conn_registry::{Registry, Verdict};
use aemp_proto::global::{self, GlobalService, Seeds};
use aemp_proto::peers::{self, PeerTable, NO_KNOWN_ADDRESS};
use aemp_proto::{Msg, NodeId, Str, Value};
use rustc_hash::{FxBuildHasher, FxHashMap};
use std::any::Any;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// The node task's state besides the kernel.
pub(super) struct NodeHost {
    pub(super) core: Arc<Core>,
    owner: Weak<dyn Any + Send + Sync>,
    /// Postponed work while the dispatcher is not running a batch (see `Runtime::run`).
    pub(super) run: VecDeque<Cmd>,
    /// True while the dispatcher runs a batch (the run queue is the thread-local one).
    pub(super) dispatching: bool,
    /// Set when a send woke a connection's writer (its buffer was empty); the dispatcher
    /// then lets the writer run before it goes on with a long batch.
    pub(super) woke_writer: bool,
    /// The time of the current batch (read once per batch, not per message).
    now: Instant,
    transport: Option<Arc<Transport>>,
    peers: PeerTable<Arc<ConnTx>, FxBuildHasher>,
    registry: Registry,
    /// Where each registered connection learns its verdict.
    verdicts: FxHashMap<u64, watch::Sender<Verdict>>,
    global: GlobalService,
    seeds: Seeds,
    listening: Vec<SocketAddr>,
    start_global: bool,
    /// Local `db_mon` subscribers.
    subs: FxHashMap<u64, mpsc::UnboundedSender<DbChange>>,
    /// Database queries waiting for their answer.
    queries: FxHashMap<u64, ReplyFn>,
    /// Nodes the peer table reported lost, for the kernel's monitors (fired right after the
    /// current command, see `Runtime::exec`).
    lost: Vec<(Str, String)>,
    /// Reused effect buffer of the peer table.
    scratch: Vec<peers::Effect>,
    /// The deadline the timer task is armed for.
    armed: Option<Instant>,
    /// Something happened that may have moved a deadline.
    pub(super) timers_dirty: bool,
    timer: Option<watch::Sender<Option<Instant>>>,
}

/// Randomness for back-off and redial jitter (the state machines take it as numbers).
fn rand01() -> f64 {
    rand::random::<f64>()
}

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

impl NodeHost {
    pub(super) fn new(core: Arc<Core>, setup: Setup) -> NodeHost {
        let me = core.shared.id.clone();
        let (connect_interval, monitor_timeout) = match &setup.transport {
            Some(t) => (t.cfg.connect_interval, t.cfg.monitor_timeout),
            None => (Duration::from_secs(2), Duration::from_secs(30)),
        };
        let now = now();
        NodeHost {
            owner: setup.owner,
            run: VecDeque::new(),
            dispatching: false,
            woke_writer: false,
            now,
            peers: PeerTable::with_hasher(connect_interval, monitor_timeout, FxBuildHasher),
            registry: Registry::new(me.as_str()),
            verdicts: FxHashMap::default(),
            global: GlobalService::new(me.as_str()),
            seeds: Seeds::new(setup.seeds, monitor_timeout, now, rand01()),
            listening: setup.listening,
            start_global: setup.global,
            subs: FxHashMap::default(),
            queries: FxHashMap::default(),
            lost: Vec::new(),
            scratch: Vec::new(),
            armed: None,
            timers_dirty: true,
            timer: None,
            transport: setup.transport,
            core,
        }
    }

    /// First steps of the node task: listen addresses into the database, global role.
    pub(super) fn start(&mut self) {
        if !self.listening.is_empty() {
            let eff = self.global.set_listen_addrs(&self.listening);
            self.route_global(eff);
        }
        if self.start_global {
            self.become_global();
        }
        if self.transport.is_some() {
            let (tx, rx) = watch::channel(None);
            self.timer = Some(tx);
            tokio::spawn(timer_task(Arc::downgrade(&self.core), rx));
        }
        self.tick();
    }

    pub(super) fn teardown(&mut self) {
        self.core.direct.clear();
        self.peers.close_all();
        if let Some(t) = &self.transport {
            t.shutdown();
        }
    }

    pub(super) fn refresh_now(&mut self) {
        self.now = now();
    }

    pub(super) fn has_lost(&self) -> bool {
        !self.lost.is_empty()
    }

    pub(super) fn take_lost(&mut self) -> Option<(Str, String)> {
        if self.lost.is_empty() {
            None
        } else {
            Some(self.lost.remove(0))
        }
    }

    pub(super) fn release_inbound(&self, cost: usize) {
        if let Some(t) = &self.transport {
            t.inbound.release(cost);
        }
    }

    // ---- timers --------------------------------------------------------------------------

    /// The earliest deadline of the state machines.
    fn next_deadline(&self) -> Option<Instant> {
        [
            self.peers.poll_timeout(),
            self.registry.poll_timeout(),
            self.seeds.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Tells the timer task the next deadline, if it changed.
    pub(super) fn arm_timer(&mut self) {
        self.timers_dirty = false;
        let Some(timer) = &self.timer else { return };
        let next = self.next_deadline();
        if next != self.armed {
            self.armed = next;
            timer.send_replace(next);
        }
    }

    /// Gives every state machine whose deadline passed its turn.
    pub(super) fn tick(&mut self) {
        self.timers_dirty = true;
        self.now = now();
        self.armed = None;
        let now = self.now;
        let mut out = std::mem::take(&mut self.scratch);
        self.peers.handle_timeout(now, &mut out);
        self.route_peers(&mut out);
        self.scratch = out;
        self.registry.handle_timeout(now);
        self.flush_verdicts();
        let peers = &self.peers;
        let due = self.seeds.handle_timeout(now, |n| peers.is_up(n));
        for addr in due {
            self.dial(addr, None);
        }
    }

    // ---- connections ---------------------------------------------------------------------

    /// Hands the registry's verdict changes to their connections.
    fn flush_verdicts(&mut self) {
        while let Some((id, v)) = self.registry.poll_verdict() {
            if let Some(tx) = self.verdicts.get(&id) {
                tx.send_replace(v);
            }
        }
    }

    /// Dials `addr`, meant for node `target` if known (else the node ID is learned from the
    /// greeting). A dial to a node that is connected or being connected is not started.
    pub(super) fn dial(&mut self, addr: SocketAddr, target: Option<Str>) {
        let Some(t) = self.transport.clone() else {
            return;
        };
        let target = target.or_else(|| self.peers.node_at(addr).map(Str::from));
        if let Some(n) = &target {
            if self.registry.is_connected_or_connecting(n) {
                return;
            }
        }
        let id = t.next_conn_id();
        let (tx, rx) = watch::channel(Verdict::Pending);
        self.registry
            .open(id, true, target, t.cfg.connect_interval, self.now);
        self.verdicts.insert(id, tx);
        self.flush_verdicts();
        t.dial(addr, id, rx);
    }

    pub(super) fn conn_event(&mut self, ev: ConnEvent) {
        self.timers_dirty = true;
        let now = now();
        self.now = now;
        match ev {
            ConnEvent::Accepted { id, verdict } => {
                self.registry.open(id, false, None, Duration::ZERO, now);
                self.verdicts.insert(id, verdict);
            }
            ConnEvent::Greeted {
                id,
                node,
                addr,
                outgoing,
            } => {
                if outgoing {
                    // Where a node was reached, for reconnecting later; a seed address
                    // tells which node is behind it (§6.2).
                    self.peers.learn_address(node.as_str(), addr);
                    if self.seeds.greeted(addr, node.as_str()) {
                        let eff = self.global.seed_greeting(node.as_str());
                        self.route_global(eff);
                    }
                }
                self.registry.greeted(id, node.as_str(), now);
            }
            ConnEvent::Committed { id } => {
                if let Err(why) = self.registry.committed(id) {
                    // The verdict changed while the auth line was on its way; the connection
                    // learns it from its verdict and closes before it is used.
                    tracing::debug!(
                        id,
                        reason = why,
                        "auth line sent on a connection being closed"
                    );
                }
            }
            ConnEvent::PeerCommitted { id } => self.registry.peer_committed(id, now),
            ConnEvent::Up { id, node, tx } => match self.registry.established(id, now) {
                Err(why) => {
                    tracing::debug!(peer = %node, reason = why, "connection not used");
                    tx.close();
                }
                Ok(()) => {
                    let mut out = std::mem::take(&mut self.scratch);
                    self.peers.up(node.as_str(), tx, &mut out);
                    self.route_peers(&mut out);
                    self.scratch = out;
                }
            },
            ConnEvent::Closed {
                id,
                node,
                addr,
                outgoing,
                text,
            } => {
                self.verdicts.remove(&id);
                let closed = self.registry.closed(id, now);
                match node {
                    Some(node) if closed.was_up => {
                        tracing::info!(peer = %node, reason = %text, "connection lost");
                        let mut out = std::mem::take(&mut self.scratch);
                        self.peers.down(node.as_str(), id, &text, &mut out);
                        self.route_peers(&mut out);
                        self.scratch = out;
                    }
                    Some(node) if outgoing && closed.contested => {
                        // A dial that lost a race against another connection to the same
                        // node: if that one did not come up either, try again later.
                        if let Some(pause) =
                            self.registry.redial_delay(node.as_str(), rand::random())
                        {
                            let core = Arc::downgrade(&self.core);
                            let node = Str::from(node.as_str());
                            tokio::spawn(async move {
                                tokio::time::sleep(pause).await;
                                if let Some(core) = core.upgrade() {
                                    core.push(Cmd::Dial(addr, Some(node)));
                                }
                            });
                        }
                    }
                    _ => {}
                }
            }
            ConnEvent::ReachedSelf { addr } => {
                if self.seeds.is_self(addr) {
                    tracing::info!(%addr, "found ourselves among our seeds");
                    self.become_global();
                }
            }
        }
        self.flush_verdicts();
    }

    pub(super) fn add_addresses(&mut self, node: &str, addrs: Vec<SocketAddr>) {
        let mut out = std::mem::take(&mut self.scratch);
        self.peers.addresses(node, addrs, self.now, &mut out);
        self.route_peers(&mut out);
        self.scratch = out;
    }

    pub(super) fn become_global(&mut self) {
        let eff = self.global.become_global();
        self.route_global(eff);
    }

    // ---- effects -------------------------------------------------------------------------

    /// Carries out what the peer table asked for (and empties `out`).
    fn route_peers(&mut self, out: &mut Vec<peers::Effect>) {
        self.timers_dirty = true;
        for e in std::mem::take(out) {
            match e {
                peers::Effect::Dial { node, addr } => self.dial(addr, Some(node)),
                peers::Effect::Lookup { node } => {
                    if self.transport.is_none() {
                        let mut more = Vec::new();
                        self.peers.connect_failed(
                            &node,
                            "no known address (node has no transport)",
                            &mut more,
                        );
                        self.route_peers(&mut more);
                        continue;
                    }
                    let (addrs, eff) = self.global.lookup(&node);
                    self.route_global(eff);
                    let mut more = Vec::new();
                    if !addrs.is_empty() {
                        self.peers.addresses(&node, addrs, self.now, &mut more);
                    } else if self.global.is_global() {
                        self.peers
                            .connect_failed(&node, NO_KNOWN_ADDRESS, &mut more);
                    }
                    self.route_peers(&mut more);
                }
                peers::Effect::NodeLost {
                    node,
                    reason,
                    dropped,
                } => {
                    if dropped > 0 {
                        tracing::info!(
                            node = %node,
                            reason = %reason,
                            dropped,
                            "could not reach node, dropping queued messages"
                        );
                    }
                    self.core.direct.withdraw(&node);
                    self.lost.push((node, reason));
                }
                peers::Effect::NodeUp { node } => {
                    if let Some(link) = self.peers.link(&node) {
                        self.core.direct.publish(&node, link.clone());
                    }
                    if let Ok(id) = NodeId::new(node.as_str()) {
                        let _ = self.core.events.send(NodeEvent::Up(id));
                    }
                    let eff = self.global.node_up(&node);
                    self.route_global(eff);
                }
                peers::Effect::NodeDown { node, reason } => {
                    self.seeds.node_down(&node, self.now, rand01());
                    if let Ok(id) = NodeId::new(node.as_str()) {
                        let _ = self.core.events.send(NodeEvent::Down(id, reason));
                    }
                    let eff = self.global.node_down(&node);
                    self.route_global(eff);
                }
            }
        }
    }

    /// Carries out what the global service asked for.
    fn route_global(&mut self, effects: Vec<global::Effect>) {
        for e in effects {
            match e {
                global::Effect::Send { node, msg } => self.send_remote(&node, "", msg),
                global::Effect::Connect { node } => {
                    if self.transport.is_some() {
                        let mut out = std::mem::take(&mut self.scratch);
                        self.peers.ensure_connected(&node, self.now, &mut out);
                        self.route_peers(&mut out);
                        self.scratch = out;
                    }
                }
                global::Effect::Addresses { node, addrs } => self.add_addresses(&node, addrs),
                global::Effect::Reply { query, value } => match self.queries.remove(&query) {
                    Some(cb) => {
                        if catch_unwind(AssertUnwindSafe(|| cb(value))).is_err() {
                            tracing::warn!("database query callback panicked");
                        }
                    }
                    None => tracing::debug!(query, "answer for no pending query"),
                },
                global::Effect::Notify {
                    subscribers,
                    family,
                    contents,
                    added,
                    changed,
                    deleted,
                } => {
                    let change = DbChange {
                        family: family.clone(),
                        contents,
                        added,
                        changed,
                        deleted,
                    };
                    for id in subscribers {
                        let alive = self
                            .subs
                            .get(&id)
                            .is_some_and(|tx| tx.send(change.clone()).is_ok());
                        if !alive {
                            self.subs.remove(&id);
                            let eff = self.global.unwatch(&family, id);
                            self.route_global(eff);
                        }
                    }
                }
                global::Effect::Master(Some(m)) => {
                    tracing::info!(node = %self.core.shared.id, master = %m, "master set")
                }
                global::Effect::Master(None) => {
                    tracing::info!(node = %self.core.shared.id, "no master")
                }
                global::Effect::BecameGlobal => {
                    tracing::info!(node = %self.core.shared.id, "becoming a global node")
                }
                global::Effect::Refused { from, error } => {
                    tracing::warn!(src = %from, error = %error, "error processing node message")
                }
            }
        }
    }

    // ---- database requests ---------------------------------------------------------------

    pub(super) fn db(&mut self, cmd: DbCmd) {
        match cmd {
            DbCmd::Set { family, key, value } => match self.global.db_set(&family, &key, value) {
                Ok(eff) => self.route_global(eff),
                Err(e) => tracing::warn!(error = %e, "db_set refused"),
            },
            DbCmd::Del { family, keys } => {
                let eff = self.global.db_del(&family, &keys);
                self.route_global(eff);
            }
            DbCmd::Query {
                kind,
                family,
                reply,
            } => {
                let (id, eff) = self.global.query(kind, &family);
                self.queries.insert(id, reply);
                self.route_global(eff);
            }
            DbCmd::Watch { family, id, tx } => {
                self.subs.insert(id, tx);
                let eff = self.global.watch(&family, id);
                self.route_global(eff);
            }
            DbCmd::Unwatch { family, id } => {
                if self.subs.remove(&id).is_some() {
                    let eff = self.global.unwatch(&family, id);
                    self.route_global(eff);
                }
            }
        }
    }
}

impl Host for NodeHost {
    #[inline]
    fn postpone(&mut self, task: Task) {
        if self.dispatching {
            super::RUNQ.with_borrow_mut(|q| q.push_back(Cmd::Task(task)));
        } else {
            self.run.push_back(Cmd::Task(task));
        }
    }

    #[inline]
    fn send_remote(&mut self, node: &str, port: &str, msg: Msg) {
        let mut out = std::mem::take(&mut self.scratch);
        self.woke_writer |= self.peers.send(node, port, msg, self.now, &mut out);
        if !out.is_empty() {
            self.route_peers(&mut out);
        }
        self.scratch = out;
    }

    fn send_if_up(&mut self, node: &str, port: &str, msg: Msg) {
        self.woke_writer |= self.peers.send_if_up(node, port, msg);
    }

    fn global_request(&mut self, from: &NodeId, tag: Str, args: Vec<Value>) {
        let eff = self.global.request(from.as_str(), &tag, args);
        self.route_global(eff);
    }

    fn up_nodes(&self) -> Vec<NodeId> {
        self.peers
            .up_nodes()
            .filter_map(|n| NodeId::new(n).ok())
            .collect()
    }

    fn owner(&self) -> Option<Arc<dyn Any + Send + Sync>> {
        self.owner.upgrade()
    }

    fn canceller(&self) -> Weak<dyn Canceller> {
        let w: Weak<Core> = Arc::downgrade(&self.core);
        w
    }
}

/// Sleeps until the deadline the node task asks for, then queues a [`Cmd::Tick`].
async fn timer_task(core: Weak<Core>, mut deadline: watch::Receiver<Option<Instant>>) {
    loop {
        let next = *deadline.borrow_and_update();
        match next {
            None => {
                if deadline.changed().await.is_err() {
                    return;
                }
            }
            Some(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(at.into()) => {
                        let Some(core) = core.upgrade() else { return };
                        core.push(Cmd::Tick);
                        drop(core);
                        if deadline.changed().await.is_err() {
                            return;
                        }
                    }
                    changed = deadline.changed() => {
                        if changed.is_err() {
                            return;
                        }
                    }
                }
            }
        }
    }
}

//! The kernel's host: the node task's state besides the kernel.
//!
//! The network state machines of the node (peer table, connection registry, global service,
//! seeds) are composed in `aemp_proto::node_core::NodeCore`, which decides everything and
//! returns effects. This file feeds it events with the current time and carries the effects
//! out with tokio: dials, verdicts for connections, monitors for lost nodes, node events,
//! `db_mon` subscribers, query callbacks, log lines, its timer.

use super::{Cmd, Core, DbChange, DbCmd, NodeEvent, ReplyFn, Setup};
use crate::kernel::monitor::Canceller;
use crate::kernel::{Host, Task};
use crate::transport::connection::ConnTx;
use crate::transport::{ConnEvent, Transport};
use aemp_proto::conn_registry::Verdict;
use aemp_proto::node_core::{self, Effect, Level, NodeCore};
use aemp_proto::{Msg, NodeId, Str, Value};
use rustc_hash::{FxBuildHasher, FxHashMap};
use std::any::Any;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Weak};
use std::time::Instant;
use tokio::sync::{mpsc, watch};

/// The node task's state besides the kernel.
pub(super) struct NodeHost {
    pub(super) core: Arc<Core>,
    owner: Weak<dyn Any + Send + Sync>,
    /// Postponed work while the dispatcher is not running a batch (see `Runtime::run`).
    pub(super) run: VecDeque<Cmd>,
    /// The rest of the generation of the run queue the dispatcher is running (see
    /// `Runtime::run`): commands queued before the one running now.
    pub(super) gen: VecDeque<Cmd>,
    /// How many commands of `gen` are not received frames (see `Core::pending`), once
    /// counted in this generation.
    pub(super) gen_others: Option<usize>,
    /// True while the dispatcher runs a batch (the run queue is the thread-local one).
    pub(super) dispatching: bool,
    /// Set when a send woke a connection's writer (its buffer was empty); the dispatcher
    /// then lets the writer run before it goes on with a long batch.
    pub(super) woke_writer: bool,
    /// The time of the current batch (read once per batch, not per message).
    now: Instant,
    transport: Option<Arc<Transport>>,
    net: NodeCore<Arc<ConnTx>, FxBuildHasher>,
    /// Where each registered connection learns its verdict.
    verdicts: FxHashMap<u64, watch::Sender<Verdict>>,
    /// Local `db_mon` subscribers.
    subs: FxHashMap<u64, mpsc::UnboundedSender<DbChange>>,
    /// Database queries waiting for their answer.
    queries: FxHashMap<u64, ReplyFn>,
    /// Nodes reported lost, for the kernel's monitors (fired right after the current
    /// command, see `Runtime::exec`).
    lost: VecDeque<(Str, String)>,
    /// The deadline the timer task is armed for.
    armed: Option<Instant>,
    /// Something happened that may have moved a deadline.
    pub(super) timers_dirty: bool,
    timer: Option<watch::Sender<Option<Instant>>>,
    /// Data connections (see `super::dataconn`).
    pub(super) dc: super::dataconn::DcState,
}

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

impl NodeHost {
    pub(super) fn new(core: Arc<Core>, setup: Setup) -> NodeHost {
        let mut config = node_core::Config::new(core.shared.id.as_str());
        config.network = setup.transport.is_some();
        config.limits = core.shared.limits;
        if let Some(t) = &setup.transport {
            config.connect_interval = t.cfg.connect_interval;
            config.monitor_timeout = t.cfg.monitor_timeout;
            config.send_queue_limit = t.cfg.send_queue_limit;
        }
        config.seeds = setup.seeds;
        config.listening = setup.listening;
        config.global = setup.global;
        config.rng_seed = rand::random();
        let now = now();
        let dc_limits = setup
            .transport
            .as_ref()
            .map(|t| t.cfg.data_conn)
            .unwrap_or_default();
        NodeHost {
            dc: super::dataconn::DcState::new(core.shared.id.as_str(), dc_limits),
            owner: setup.owner,
            run: VecDeque::new(),
            gen: VecDeque::new(),
            gen_others: None,
            dispatching: false,
            woke_writer: false,
            now,
            net: NodeCore::with_hasher(config, now, FxBuildHasher),
            verdicts: FxHashMap::default(),
            subs: FxHashMap::default(),
            queries: FxHashMap::default(),
            lost: VecDeque::new(),
            armed: None,
            timers_dirty: true,
            timer: None,
            transport: setup.transport,
            core,
        }
    }

    /// First steps of the node task: listen addresses into the database, global role,
    /// the first round of seed dials, the timer.
    pub(super) fn start(&mut self) {
        if self.transport.is_some() {
            let (tx, rx) = watch::channel(None);
            self.timer = Some(tx);
            tokio::spawn(timer_task(Arc::downgrade(&self.core), rx));
        }
        self.now = now();
        self.net.start(self.now);
        self.drain();
    }

    /// First step of a shutdown: no more direct sends, dials or accepted connections; every
    /// connection is closed in order ([`ConnTx::finish`]) and returned, to follow; messages
    /// waiting for nodes that are not connected are dropped and counted, per node.
    pub(super) fn begin_shutdown(&mut self) -> (Vec<Arc<ConnTx>>, Vec<(String, u64)>) {
        self.core.direct.clear();
        let waiting: Vec<(String, u64)> = self
            .net
            .peers()
            .queued_all()
            .map(|(node, n)| (node.to_string(), n as u64))
            .collect();
        let links = match &self.transport {
            Some(t) => {
                t.stop_listening();
                t.finish_all()
            }
            None => Vec::new(),
        };
        self.net.shutdown();
        (links, waiting)
    }

    pub(super) fn teardown(&mut self) {
        self.core.direct.clear();
        self.net.shutdown();
        if let Some(t) = &self.transport {
            t.shutdown();
        }
    }

    pub(super) fn refresh_now(&mut self) {
        self.now = now();
    }

    /// The time of the current step.
    pub(super) fn now(&self) -> Instant {
        self.now
    }

    /// The node's network, if it has one.
    pub(super) fn transport(&self) -> Option<&Arc<Transport>> {
        self.transport.as_ref()
    }

    /// The listen addresses the peer table knows for `node`.
    pub(super) fn known_addresses(&self, node: &str) -> Vec<SocketAddr> {
        self.net.peers().known_addresses(node).to_vec()
    }

    /// A database query whose answer goes to `reply`.
    pub(super) fn db_query_raw(
        &mut self,
        kind: aemp_proto::global::QueryKind,
        family: &aemp_proto::db::names::Family,
        reply: impl FnOnce(Value) + Send + 'static,
    ) {
        let now = self.now;
        let id = self.net.db_query(kind, family, now);
        self.queries.insert(id, Box::new(reply));
        self.drain();
    }

    pub(super) fn has_lost(&self) -> bool {
        !self.lost.is_empty()
    }

    pub(super) fn take_lost(&mut self) -> Option<(Str, String)> {
        self.lost.pop_front()
    }

    pub(super) fn release_inbound(&self, cost: usize) {
        if let Some(t) = &self.transport {
            t.inbound.release(cost);
        }
    }

    // ---- timers --------------------------------------------------------------------------

    /// Tells the timer task the next deadline, if it changed.
    pub(super) fn arm_timer(&mut self) {
        self.timers_dirty = false;
        let Some(timer) = &self.timer else { return };
        let next = match (self.net.poll_timeout(), self.dc.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if next != self.armed {
            self.armed = next;
            timer.send_replace(next);
        }
    }

    /// A deadline may have passed.
    pub(super) fn tick(&mut self) {
        self.now = now();
        self.armed = None;
        self.net.handle_timeout(self.now);
        self.drain();
        self.dc_tick();
    }

    // ---- inputs --------------------------------------------------------------------------

    /// The user asks to dial `addr` (for `node`, if known).
    pub(super) fn dial(&mut self, addr: SocketAddr, node: Option<Str>) {
        self.now = now();
        self.net.dial(addr, node, self.now);
        self.drain();
    }

    pub(super) fn add_addresses(&mut self, node: &str, addrs: Vec<SocketAddr>) {
        self.net.add_addresses(node, addrs, self.now);
        self.drain();
    }

    pub(super) fn conn_event(&mut self, ev: ConnEvent) {
        let now = now();
        self.now = now;
        match ev {
            ConnEvent::Accepted { id, verdict } => {
                self.verdicts.insert(id, verdict);
                self.net.accepted(id, now);
            }
            ConnEvent::Greeted {
                id,
                node,
                addr,
                outgoing,
            } => self.net.greeted(id, node.as_str(), addr, outgoing, now),
            ConnEvent::Committed { id } => self.net.committed(id),
            ConnEvent::PeerCommitted { id } => self.net.peer_committed(id, now),
            ConnEvent::Up { id, node, tx } => {
                // The core closes the link itself when the registry refuses it.
                self.woke_writer |= self.net.up(id, node.as_str(), tx, now);
            }
            ConnEvent::Closed {
                id,
                node,
                addr,
                outgoing,
                text,
                refused_input,
            } => {
                self.verdicts.remove(&id);
                if refused_input {
                    self.net.refused_input(id);
                }
                let node = node.as_ref().map(|n| n.as_str());
                self.net.closed(id, node, addr, outgoing, &text, now);
            }
            ConnEvent::ReachedSelf { addr } => self.net.reached_self(addr, now),
            ConnEvent::Data(ev) => return self.data_event(*ev),
        }
        self.drain();
    }

    pub(super) fn db(&mut self, cmd: DbCmd) {
        let now = self.now;
        match cmd {
            DbCmd::Set { family, key, value } => self.net.db_set(&family, &key, value, now),
            DbCmd::Del { family, keys } => self.net.db_del(&family, &keys, now),
            DbCmd::Query {
                kind,
                family,
                reply,
            } => {
                let id = self.net.db_query(kind, &family, now);
                // The answer may already be among the effects (a global node answers
                // itself): the callback is registered before they are carried out.
                self.queries.insert(id, reply);
            }
            DbCmd::Watch { family, id, tx } => {
                self.subs.insert(id, tx);
                self.net.db_watch(&family, id, now);
            }
            DbCmd::Unwatch { family, id } => {
                if self.subs.remove(&id).is_some() {
                    self.net.db_unwatch(&family, id, now);
                }
            }
        }
        self.drain();
    }

    // ---- effects -------------------------------------------------------------------------

    /// Carries out what the node core asked for.
    fn drain(&mut self) {
        self.timers_dirty = true;
        self.woke_writer |= self.net.take_woke();
        while let Some(e) = self.net.poll_effect() {
            match e {
                Effect::Dial { id, addr, target } => match self.transport.clone() {
                    Some(t) => {
                        let (tx, rx) = watch::channel(Verdict::Pending);
                        self.verdicts.insert(id, tx);
                        tracing::debug!(%addr, target = ?target, id, "dialling");
                        t.dial(addr, id, rx);
                    }
                    None => {
                        let now = self.now;
                        self.net.closed(id, None, addr, true, "no network", now);
                    }
                },
                Effect::Verdict { id, verdict } => {
                    if let Some(tx) = self.verdicts.get(&id) {
                        tx.send_replace(verdict);
                    }
                }
                Effect::NodeLost { node, reason } => {
                    self.core.direct.withdraw(&node);
                    self.lost.push_back((node, reason));
                }
                Effect::NodeUp(node) => {
                    if let Some(link) = self.net.peers().link(&node) {
                        self.core.direct.publish(&node, link.clone());
                    }
                    if let Ok(id) = NodeId::new(node.as_str()) {
                        let _ = self.core.events.send(NodeEvent::Up(id));
                    }
                }
                Effect::NodeDown { node, reason } => {
                    if let Ok(id) = NodeId::new(node.as_str()) {
                        let _ = self.core.events.send(NodeEvent::Down(id, reason));
                    }
                }
                Effect::Notify {
                    subscribers,
                    change,
                } => {
                    for id in subscribers {
                        let alive = self
                            .subs
                            .get(&id)
                            .is_some_and(|tx| tx.send(change.clone()).is_ok());
                        if !alive {
                            self.subs.remove(&id);
                            let now = self.now;
                            self.net.db_unwatch(&change.family, id, now);
                        }
                    }
                }
                Effect::Reply { query, value } => match self.queries.remove(&query) {
                    Some(cb) => {
                        if catch_unwind(AssertUnwindSafe(|| cb(value))).is_err() {
                            tracing::warn!("database query callback panicked");
                        }
                    }
                    None => tracing::debug!(query, "answer for no pending query"),
                },
                Effect::Log(record) => {
                    let node = &self.core.shared.id;
                    match record.level() {
                        Level::Debug => tracing::debug!(node = %node, "{record}"),
                        Level::Info => tracing::info!(node = %node, "{record}"),
                        Level::Warn => tracing::warn!(node = %node, "{record}"),
                        Level::Error => tracing::error!(node = %node, "{record}"),
                    }
                }
            }
        }
        self.woke_writer |= self.net.take_woke();
    }
}

impl NodeHost {
    /// Whether commands queued before now that may send something have not run yet (see
    /// `Core::pending`); the rest of the current generation is counted once per generation,
    /// when a handler's send first asks.
    fn pending(&mut self) -> bool {
        let gen = &self.gen;
        let others = *self
            .gen_others
            .get_or_insert_with(|| gen.iter().filter(|c| super::is_other(c)).count());
        self.core.pending(others)
    }
}

impl Host for NodeHost {
    #[inline]
    fn postpone(&mut self, task: Task) {
        if self.dispatching {
            let core = &self.core;
            super::RUNQ.with_borrow_mut(|q| {
                core.join_outside(q);
                q.push_back(Cmd::Task(task))
            });
        } else {
            self.run.push_back(Cmd::Task(task));
        }
    }

    #[inline]
    fn send_from_handler(&mut self, node: &str, port: &str, msg: Msg) {
        if self.dispatching && self.pending() {
            // Something queued before this send has not run yet: the message goes behind it.
            self.postpone(Task::Send {
                port: aemp_proto::PortId::from_parts(node, port),
                msg,
            });
        } else {
            self.send_remote(node, port, msg);
        }
    }

    // Not inlined: `send_from_handler` calls it too, and with two copies of this body the
    // compiler left `NodeCore::send` and the peer table's send out of line in both. With
    // one, they are inlined here again (callgrind, R3: the replying node 3334 -> 3315
    // instructions per request).
    #[inline(never)]
    fn send_remote(&mut self, node: &str, port: &str, msg: Msg) {
        self.woke_writer |= self.net.send(node, port, msg, self.now);
        // A send that starts an attempt on a held node emits nothing but a new deadline:
        // the timer must be re-armed all the same (drain marks it).
        if self.net.has_effects() || self.net.take_timers_changed() {
            self.drain();
        }
    }

    fn send_if_up(&mut self, node: &str, port: &str, msg: Msg) {
        self.woke_writer |= self.net.send_if_up(node, port, msg);
    }

    fn global_request(&mut self, from: &NodeId, tag: Str, args: Vec<Value>) {
        let now = self.now;
        self.net.global_request(from.as_str(), &tag, args, now);
        self.drain();
    }

    fn data_conn_request(&mut self, from: &NodeId, func: &str, args: Vec<Value>) {
        NodeHost::data_conn_request(self, from, func, args);
    }

    fn up_nodes(&self) -> Vec<NodeId> {
        self.net
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

//! The kernel: a node's ports, the dispatch of messages to their handlers, kills and
//! monitors.
//!
//! All kernel state is owned by one dispatcher task per node (see `run`); nothing in it is
//! locked. Everything else talks to it through the node's command queue (`Core::push`):
//! `snd`, `kil`, `rcv`, `mon` from any thread become `Cmd`s that the dispatcher executes in
//! order. Handlers get `&mut Kernel` through their [`Cx`], so what they do takes effect at
//! once, and their sends are queued behind what is already waiting. This gives:
//!
//! * per-sender FIFO order to each port (one queue, executed in order);
//! * no handler ever runs inside another (sends are queued, never called through);
//! * `spawn` on the local node never runs the init function before `spawn` returns (it is a
//!   queued command).

pub mod context;
pub mod monitor;
pub(crate) mod node_port;
pub mod port;
pub(crate) mod registry;
pub(crate) mod remote;
mod table;

use crate::error::Error;
use crate::node::{Node, NodeInner};
use aemp_proto::ids::PortNamer;
use aemp_proto::{Msg, NodeId, PortId, Str, Value};
use context::Cx;
use monitor::{MonAction, MonTarget, Monitor, Reason, RemoteMonitors};
use parking_lot::{Mutex, RwLock};
use port::{Handler, Port};
use registry::Registry;
use rustc_hash::FxHashMap;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use tokio::sync::Notify;

thread_local! {
    /// The core whose dispatcher is running on this thread right now (null when none).
    static ACTIVE: Cell<*const Core> = const { Cell::new(std::ptr::null()) };
    /// That dispatcher's run queue, while it runs. Everything queued on this thread for this
    /// node (by the kernel, by a handler's `Cx`, or by a `Node` handle used inside a handler)
    /// goes here, so it all keeps one FIFO order.
    static RUNQ: RefCell<VecDeque<Cmd>> = const { RefCell::new(VecDeque::new()) };
}

/// A unit of work for the dispatcher.
pub(crate) enum Cmd {
    /// Deliver a message to a local port (by name; `""` is the node port).
    Deliver {
        port: Str,
        msg: Msg,
        /// The node it came from; `None` = this node.
        src: Option<Arc<NodeId>>,
    },
    /// Deliver what one read of a connection brought: frames from node `src`, in order.
    /// One command per read instead of one per message (the receive hot path). `cost` is
    /// what these frames count in `Core::inbound` ([`inbound_cost`]).
    DeliverFrom {
        src: Arc<NodeId>,
        frames: Vec<(Str, Msg)>,
        cost: usize,
    },
    /// Kill a local port.
    Kill { port: Str, reason: Reason },
    /// Nothing (what a taken command leaves behind in the dispatcher's batch).
    Nop,
    /// Anything else: a closure run with the kernel.
    Exec(Box<dyn FnOnce(&mut Kernel) + Send + 'static>),
}

/// The part of a node shared between the dispatcher and every handle: identity, the command
/// queue, counters.
pub(crate) struct Core {
    pub id: NodeId,
    pub namer: PortNamer,
    queue: Mutex<Vec<Cmd>>,
    /// True while `queue` is not empty (set with the lock held by whoever makes it
    /// non-empty, cleared by the dispatcher when it takes the queue): lets the busy-polling
    /// dispatcher look for work without taking the lock that producers need.
    queued: AtomicBool,
    notify: Notify,
    closed: AtomicBool,
    guard_ids: AtomicU64,
    pub registry: RwLock<Registry>,
    pub secure: AtomicBool,
    /// Closures queued by node handles and not yet run. While any is pending, a handle's
    /// remote `snd` goes through the kernel too, behind them, so that one sender's messages
    /// to a node stay in order (see `Node::snd`).
    pub pending_execs: AtomicUsize,
    /// How long the dispatcher busy-polls before it sleeps (0 = never); see `Node::set_spin`.
    pub spin_nanos: AtomicU64,
    /// What connection readers have queued (`Cmd::DeliverFrom`) and the dispatcher has not
    /// delivered yet, in [`inbound_cost`] units. Readers stop reading while it is above
    /// [`INBOUND_HIGH`], so a fast sender is slowed by TCP flow control instead of growing
    /// this node's memory (and the working set stays small enough for the caches).
    pub inbound: AtomicUsize,
    /// Signalled when `inbound` falls to [`INBOUND_HIGH`] or below, for the readers waiting
    /// for that (see `transport::connection`).
    pub drained: Notify,
}

/// What received frames count against [`INBOUND_HIGH`]: one per frame plus one per 4 KiB,
/// so the limit bounds both many small messages (16 Ki frames) and few large ones (64 MiB).
pub(crate) fn inbound_cost(frames: usize, bytes: usize) -> usize {
    frames + bytes / 4096
}

/// Received work (in [`inbound_cost`] units) a node lets wait for its dispatcher before its
/// readers pause.
pub(crate) const INBOUND_HIGH: usize = 16 * 1024;

impl Core {
    pub(crate) fn new(id: NodeId, namer: PortNamer) -> Core {
        Core {
            id,
            namer,
            queue: Mutex::new(Vec::with_capacity(INITIAL_QUEUE)),
            queued: AtomicBool::new(false),
            notify: Notify::new(),
            closed: AtomicBool::new(false),
            guard_ids: AtomicU64::new(1),
            registry: RwLock::new(Registry::default()),
            secure: AtomicBool::new(false),
            pending_execs: AtomicUsize::new(0),
            inbound: AtomicUsize::new(0),
            drained: Notify::new(),
            spin_nanos: AtomicU64::new(crate::node::DEFAULT_SPIN.as_nanos() as u64),
        }
    }

    /// Queues a command for the dispatcher. Never blocks on anything but a short lock.
    pub(crate) fn push(&self, cmd: Cmd) {
        if std::ptr::eq(ACTIVE.get(), self) {
            // Called from a handler of this very node: join its run queue, behind what the
            // handler already queued through its Cx.
            RUNQ.with_borrow_mut(|q| q.push_back(cmd));
            return;
        }
        let was_empty = {
            let mut q = self.queue.lock();
            let was_empty = q.is_empty();
            q.push(cmd);
            if was_empty {
                self.queued.store(true, Ordering::Release);
            }
            was_empty
        };
        // Only the transition empty -> non-empty needs a wake-up: the dispatcher takes the
        // whole queue at once, and Notify keeps one permit if it is busy.
        if was_empty {
            self.notify.notify_one();
        }
    }

    /// Queues many commands at once (one lock, one wake-up).
    pub(crate) fn push_many(&self, cmds: impl IntoIterator<Item = Cmd>) {
        if std::ptr::eq(ACTIVE.get(), self) {
            RUNQ.with_borrow_mut(|q| q.extend(cmds));
            return;
        }
        let was_empty = {
            let mut q = self.queue.lock();
            let was_empty = q.is_empty();
            q.extend(cmds);
            if was_empty && !q.is_empty() {
                self.queued.store(true, Ordering::Release);
            }
            was_empty
        };
        if was_empty {
            self.notify.notify_one();
        }
    }

    pub(crate) fn next_guard(&self) -> u64 {
        self.guard_ids.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.notify.notify_one();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

/// The dispatcher-owned state of a node.
pub struct Kernel {
    pub(crate) id: NodeId,
    pub(crate) core: Arc<Core>,
    /// The public handle, weakly (a strong one would keep the node alive forever).
    pub(crate) handle: Weak<NodeInner>,
    pub(crate) weak: Weak<Core>,
    ports: table::PortTable,
    run: VecDeque<Cmd>,
    mon_index: FxHashMap<u64, MonTarget>,
    pub(crate) remote_mons: RemoteMonitors,
    /// Monitors on our own node port: they can never fire (the node port never dies) but are
    /// kept so their guards behave.
    self_node_mons: Vec<(u64, MonAction)>,
    /// Monitors whose firing is queued (`no_such_port`), until it runs or is cancelled.
    pending_fires: FxHashMap<u64, MonAction>,
    pub(crate) remote: remote::Remotes,
    pub(crate) global: crate::global::GlobalState,
    /// True while the dispatcher runs commands, i.e. while its run queue lives in `RUNQ`.
    dispatching: bool,
    /// Set when a send woke a connection's writer (its buffer was empty); the dispatcher
    /// then lets the writer run before it goes on with a long batch (see `run`).
    pub(crate) woke_writer: bool,
}

impl Kernel {
    pub(crate) fn new(core: Arc<Core>, handle: Weak<NodeInner>) -> Kernel {
        let global = crate::global::GlobalState::new(core.id.as_str(), &[]);
        Kernel {
            id: core.id.clone(),
            weak: Arc::downgrade(&core),
            core,
            handle,
            ports: table::PortTable::default(),
            run: VecDeque::with_capacity(INITIAL_QUEUE),
            mon_index: FxHashMap::default(),
            remote_mons: RemoteMonitors::default(),
            self_node_mons: Vec::new(),
            pending_fires: FxHashMap::default(),
            remote: remote::Remotes::default(),
            global,
            dispatching: false,
            woke_writer: false,
        }
    }

    pub(crate) fn shared(&self) -> &Core {
        &self.core
    }

    /// A public handle of this node. Panics never: the dispatcher only runs while a handle
    /// exists (it stops when the last one is dropped).
    pub(crate) fn node(&self) -> Node {
        Node::from_inner(self.handle.upgrade(), &self.id)
    }

    /// Number of live local ports.
    pub(crate) fn port_count(&self) -> usize {
        self.ports.len()
    }

    pub(crate) fn port_exists(&self, name: &str) -> bool {
        self.ports.contains(name)
    }

    pub(crate) fn exec(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Deliver { port, msg, src } => self.deliver(port, msg, src.as_deref()),
            Cmd::DeliverFrom { src, frames, cost } => self.deliver_from(&src, frames, cost),
            Cmd::Kill { port, reason } => self.kill_local(&port, reason),
            Cmd::Nop => {}
            Cmd::Exec(f) => {
                // Internal closures may call user callbacks; a panic there must not stop
                // the node.
                if let Err(panic) = catch_unwind(AssertUnwindSafe(|| f(self))) {
                    tracing::warn!(error = %panic_text(&panic), "callback panicked");
                }
            }
        }
    }

    /// Delivers what a connection read brought. Out of line, so that `exec`, which local
    /// messaging runs for every command, stays small.
    #[inline(never)]
    fn deliver_from(&mut self, src: &NodeId, frames: Vec<(Str, Msg)>, cost: usize) {
        for (port, msg) in frames {
            self.deliver(port, msg, Some(src));
        }
        let before = self.core.inbound.fetch_sub(cost, Ordering::AcqRel);
        if before > INBOUND_HIGH && before - cost <= INBOUND_HIGH {
            self.core.drained.notify_waiters();
        }
    }

    /// Queues a command behind everything already queued in the kernel.
    #[inline]
    pub(crate) fn postpone(&mut self, cmd: Cmd) {
        if self.dispatching {
            RUNQ.with_borrow_mut(|q| q.push_back(cmd));
        } else {
            self.run.push_back(cmd);
        }
    }

    /// Runs a handler of a local port on a message.
    fn deliver(&mut self, name: Str, mut msg: Msg, src: Option<&NodeId>) {
        if name.is_empty() {
            self.node_request(msg, src);
            return;
        }
        let Some((idx, uid)) = self.ports.lookup(&name) else {
            // Unknown ports drop messages silently (PROTOCOL.md §3.2); monitors are the only
            // failure signal.
            return;
        };
        let Some(slot) = self.ports.slot_mut(idx, uid) else {
            return;
        };
        let port = &mut slot.port;
        let Some(route) = port.route(msg.tag()) else {
            let text = port::unhandled_text(msg.0.first());
            self.kill_local(&name, vec!["unhandled_message".into(), text.into()]);
            return;
        };
        let Some(mut h) = port.take(&route) else {
            // Cannot happen: handlers never run re-entrantly. Treat like no handler.
            return;
        };
        let tag = match route {
            port::Route::Tag(_) => match msg.0.remove(0) {
                Value::Str(t) => t,
                _ => Str::default(),
            },
            port::Route::Default => Str::default(),
        };
        let result = {
            let mut cx = Cx {
                k: self,
                port: &name,
                src,
            };
            catch_unwind(AssertUnwindSafe(|| h(&mut cx, msg)))
        };
        // The uid check: a port killed and re-created by its handler is another port.
        match self.ports.slot_mut(idx, uid) {
            Some(s) => s.port.restore(&route, &tag, h),
            None => drop(h),
        }
        let failure = match result {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e.to_string(),
            Err(panic) => panic_text(&panic),
        };
        tracing::debug!(port = %name, error = %failure, "handler failed, killing port");
        self.kill_local(&name, vec!["die".into(), failure.into()]);
    }

    /// Sends a message to any port.
    pub(crate) fn snd(&mut self, port: &PortId, msg: Msg) {
        if port::short_eq(port.node(), self.id.as_str()) {
            self.postpone(Cmd::Deliver {
                port: Str::from(port.name()),
                msg,
                src: None,
            });
        } else {
            self.send_remote(port.node(), port.name(), msg);
        }
    }

    /// Kills any port; node ports are refused.
    pub(crate) fn kil(&mut self, port: &PortId, reason: Reason) -> Result<(), Error> {
        if port.is_node_port() {
            return Err(Error::KillNodePort(port.to_string()));
        }
        if port.node() == self.id.as_str() {
            self.kill_local(&Str::from(port.name()), reason);
        } else {
            let mut req = Msg::with_capacity(2 + reason.len());
            req.push("kil1");
            req.push(port.name());
            req.0.extend(reason);
            self.send_node_request(port.node(), req);
        }
        Ok(())
    }

    /// Kills a local port: removes it, fires its local monitors and notifies remote ones.
    pub(crate) fn kill_local(&mut self, name: &str, reason: Reason) {
        let Some(mut port) = self.ports.remove(name) else {
            return;
        };
        let port::Watchers {
            monitors,
            remote: remote_monitors,
        } = port.take_watchers();
        if !reason.is_empty() && monitors.is_empty() && remote_monitors.is_empty() {
            let shown = Value::List(reason.clone());
            tracing::info!(port = %name, reason = %shown, "port killed");
        }
        for node in remote_monitors {
            let mut req = Msg::with_capacity(2 + reason.len());
            req.push("kil0");
            req.push(name);
            req.0.extend(reason.iter().cloned());
            self.send_node_request_if_up(node.as_str(), req);
        }
        for (id, action) in monitors {
            self.mon_index.remove(&id);
            self.fire(action, reason.clone());
        }
    }

    /// Runs one monitor action.
    pub(crate) fn fire(&mut self, action: MonAction, reason: Reason) {
        match action {
            Monitor::Callback(f) => {
                if let Err(panic) = catch_unwind(AssertUnwindSafe(|| f(reason))) {
                    tracing::warn!(error = %panic_text(&panic), "monitor callback panicked");
                }
            }
            Monitor::Kill(port) => {
                if !reason.is_empty() {
                    if port.node() == self.id.as_str() {
                        self.postpone(Cmd::Kill {
                            port: Str::from(port.name()),
                            reason,
                        });
                    } else {
                        let _ = self.kil(&port, reason);
                    }
                }
            }
            Monitor::Send(port, mut msg) => {
                msg.0.extend(reason);
                self.snd(&port, msg);
            }
        }
    }

    /// Adds a new port under a fresh name.
    pub(crate) fn insert_port(&mut self, name: Str, port: Port) {
        self.ports.insert(name, port);
    }

    /// Sets (`h = Some`) or removes a handler of a local port; creates the port if needed.
    pub(crate) fn rcv_local(&mut self, name: &Str, tag: Option<&str>, h: Option<Handler>) {
        match self.ports.get_mut(name) {
            Some(p) => p.set_handler(tag, h),
            None => {
                if h.is_none() {
                    return;
                }
                let mut p = Port::default();
                p.set_handler(tag, h);
                self.ports.insert(name.clone(), p);
            }
        }
    }

    /// Registers a monitor on any port.
    pub(crate) fn mon(&mut self, port: &PortId, id: u64, action: MonAction) {
        if port.node() == self.id.as_str() {
            if port.is_node_port() {
                self.self_node_mons.push((id, action));
                return;
            }
            let name = port.name();
            match self.ports.get_mut(name) {
                Some(p) => {
                    p.watchers().monitors.push((id, action));
                    self.mon_index.insert(id, MonTarget::Local(Str::from(name)));
                }
                None => {
                    // Fired asynchronously, like every other monitor, and cancellable by its
                    // guard until then.
                    let reason = no_such_port(port);
                    self.mon_index.insert(id, MonTarget::Pending);
                    self.pending_fires.insert(id, action);
                    self.postpone(Cmd::Exec(Box::new(move |k: &mut Kernel| {
                        if let Some(action) = k.pending_fires.remove(&id) {
                            k.mon_index.remove(&id);
                            k.fire(action, reason)
                        }
                    })));
                }
            }
        } else {
            let (node, name) = (port.node(), port.name());
            self.mon_index
                .insert(id, MonTarget::Remote(Str::from(node), Str::from(name)));
            let first = self.remote_mons.add(node, name, id, action);
            if name.is_empty() {
                // Monitoring a node sends nothing and starts no connection (§10.17); it fires
                // only on connection loss.
                return;
            }
            if first {
                self.send_node_request(node, aemp_proto::msg!["mon1", name]);
            }
        }
    }

    /// Cancels a monitor (its guard was dropped).
    pub(crate) fn unmon(&mut self, id: u64) {
        match self.mon_index.remove(&id) {
            Some(MonTarget::Local(name)) => {
                if let Some(w) = self.ports.get_mut(&name).and_then(|p| p.watchers_mut()) {
                    w.monitors.retain(|(i, _)| *i != id);
                }
            }
            Some(MonTarget::Remote(node, name)) => {
                if let Some((_, last)) = self.remote_mons.remove(&node, &name, id) {
                    if last && !name.is_empty() {
                        self.send_node_request(&node, aemp_proto::msg!["mon0", name.as_str()]);
                    }
                }
            }
            Some(MonTarget::Pending) => {
                self.pending_fires.remove(&id);
            }
            None => self.self_node_mons.retain(|(i, _)| *i != id),
        }
    }

    /// Fires every monitor of every port of `node` (and of the node itself) with
    /// `("transport_error", node, text)`.
    pub(crate) fn fire_node_lost(&mut self, node: &str, text: &str) {
        let reason: Reason = vec!["transport_error".into(), node.into(), text.into()];
        for (id, action) in self.remote_mons.take_node(node) {
            self.mon_index.remove(&id);
            self.fire(action, reason.clone());
        }
    }

    /// A remote node told us (`kil0`) that one of its ports we monitor died.
    pub(crate) fn remote_port_died(&mut self, node: &str, name: &str, reason: Reason) {
        for (id, action) in self.remote_mons.take_port(node, name) {
            self.mon_index.remove(&id);
            self.fire(action, reason.clone());
        }
    }

    /// A remote node wants to monitor (`mon1`) one of our ports.
    pub(crate) fn add_remote_monitor(&mut self, node: &NodeId, name: &str) {
        match self.ports.get_mut(name) {
            Some(p) => {
                let w = p.watchers();
                if !w.remote.contains(node) {
                    w.remote.push(node.clone());
                }
            }
            None => {
                let reason = no_such_port(&self.id.port(name));
                let mut req = aemp_proto::msg!["kil0", name];
                req.0.extend(reason);
                self.send_node_request(node.as_str(), req);
            }
        }
    }

    /// A remote node no longer monitors (`mon0`) one of our ports.
    pub(crate) fn remove_remote_monitor(&mut self, node: &str, name: &str) {
        if let Some(w) = self.ports.get_mut(name).and_then(|p| p.watchers_mut()) {
            w.remote.retain(|n| n.as_str() != node);
        }
    }

    /// A node disconnected: its monitors on our ports are gone (it re-sends `mon1` when it
    /// monitors again over a new connection).
    pub(crate) fn forget_remote_monitors_of(&mut self, node: &str) {
        for w in self.ports.ports_mut().filter_map(|p| p.watchers_mut()) {
            w.remote.retain(|n| n.as_str() != node);
        }
    }

    /// Runs a named function in the context of port `name` (spawn), or of the node port.
    pub(crate) fn run_named(
        &mut self,
        name: &Str,
        func: &str,
        args: Vec<Value>,
        src: Option<&NodeId>,
    ) {
        let f = self.core.registry.read().get(func);
        let Some(f) = f else {
            tracing::warn!(function = func, "unable to resolve function");
            self.kill_local(
                name,
                vec![
                    "die".into(),
                    format!("unable to resolve function '{func}'").into(),
                ],
            );
            return;
        };
        let result = {
            let mut cx = Cx {
                k: self,
                port: name,
                src,
            };
            catch_unwind(AssertUnwindSafe(|| f(&mut cx, args)))
        };
        let failure = match result {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e.to_string(),
            Err(panic) => panic_text(&panic),
        };
        tracing::debug!(port = %name, function = func, error = %failure, "named function failed");
        self.kill_local(name, vec!["die".into(), failure.into()]);
    }

    /// Drops every port, firing nothing (the node is going away; remote peers see the
    /// connection loss instead).
    fn teardown(&mut self) {
        self.ports.clear();
        self.run.clear();
        self.remote.teardown();
    }
}

/// The reason given when monitoring a port that does not exist.
pub(crate) fn no_such_port(port: &PortId) -> Reason {
    vec![
        "no_such_port".into(),
        "cannot monitor nonexistent port".into(),
        port.as_str().into(),
    ]
}

/// Text of a panic payload.
pub(crate) fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".to_string()
    }
}

/// Initial capacity (in commands) of the dispatcher's queues; a busy node grows them once
/// and keeps them (up to [`KEEP_QUEUE`]). Reserved, not touched, until used. (64 measured
/// the same speed but a worse L3 figure: growing in steps touched more fresh memory.)
const INITIAL_QUEUE: usize = 1024;

/// Queue buffers larger than this (in commands) are released once empty.
const KEEP_QUEUE: usize = 64 * 1024;

/// Received frames (or other commands) a dispatcher runs before it lets a connection writer
/// it woke send the answers so far (see `run`).
const SLICE: usize = 32;

/// How many commands the dispatcher runs before it yields to other tasks.
const BUDGET: usize = 8192;

/// The dispatcher: owns the kernel and executes commands until the node is closed.
pub(crate) async fn run(mut k: Kernel) {
    let core = k.core.clone();
    let mut batch: Vec<Cmd> = Vec::with_capacity(INITIAL_QUEUE);
    // batch[..at] has run (those slots hold `Cmd::Nop`).
    let mut at = 0;
    let mut gen: VecDeque<Cmd> = VecDeque::with_capacity(INITIAL_QUEUE);
    loop {
        if at == batch.len() {
            batch.clear();
            at = 0;
            if batch.capacity() > KEEP_QUEUE {
                // A burst is over: do not keep its peak size (this vector goes back to the
                // queue at the swap).
                batch = Vec::with_capacity(INITIAL_QUEUE);
            }
            let mut q = core.queue.lock();
            std::mem::swap(&mut *q, &mut batch);
            core.queued.store(false, Ordering::Relaxed);
        }
        if batch.is_empty() && k.run.is_empty() {
            if core.is_closed() {
                break;
            }
            // Busy-poll for a while before sleeping, if configured (like the busy wait of
            // Erlang's schedulers): yielding keeps the runtime thread awake, polling sockets
            // and timers, so the next message does not pay for waking an idle CPU.
            let spin = core.spin_nanos.load(Ordering::Relaxed);
            if spin > 0 {
                let until = std::time::Instant::now() + std::time::Duration::from_nanos(spin);
                let mut turns = 0u32;
                // The flag, not the lock: producers must not contend with the poller.
                while !core.queued.load(Ordering::Acquire) {
                    tokio::task::yield_now().await;
                    // Also offer the CPU to other threads and processes: pollers must not
                    // starve whoever has the work.
                    std::thread::yield_now();
                    turns += 1;
                    // The clock is read every few turns only (it is not free on every VM).
                    if turns & 7 == 0 && std::time::Instant::now() >= until {
                        break;
                    }
                }
                if core.queued.load(Ordering::Acquire) {
                    continue;
                }
            }
            core.notify.notified().await;
            continue;
        }
        // Commands from outside run in arrival order; what their handlers queue goes to the
        // run queue and runs after them. A long batch runs in slices: when a slice has
        // produced data for a connection, the rest waits until the writer has run (below),
        // so the peer can start on the first answers while this node works on the rest
        // (pipelining instead of one strict batch after the other).
        ACTIVE.set(Arc::as_ptr(&core));
        RUNQ.with_borrow_mut(|q| std::mem::swap(q, &mut k.run));
        k.dispatching = true;
        k.woke_writer = false;
        let mut work = 0;
        while at < batch.len() && (work < SLICE || !k.woke_writer) {
            let cmd = std::mem::replace(&mut batch[at], Cmd::Nop);
            at += 1;
            work += match &cmd {
                Cmd::DeliverFrom { frames, .. } => frames.len(),
                _ => 1,
            };
            k.exec(cmd);
        }
        // The run queue is taken a generation at a time: what runs now may queue more (into
        // the emptied RUNQ), which runs in the next generation, so FIFO order holds and the
        // thread-local is touched once per generation instead of once per command.
        let mut n = 0;
        loop {
            RUNQ.with_borrow_mut(|q| std::mem::swap(q, &mut gen));
            if gen.is_empty() {
                break;
            }
            while let Some(cmd) = gen.pop_front() {
                k.exec(cmd);
                n += 1;
                if n == BUDGET {
                    break;
                }
            }
            if n == BUDGET {
                // Unfinished commands of this generation go before the newer ones.
                RUNQ.with_borrow_mut(|q| {
                    while let Some(c) = gen.pop_back() {
                        q.push_front(c);
                    }
                });
                break;
            }
        }
        k.dispatching = false;
        RUNQ.with_borrow_mut(|q| std::mem::swap(q, &mut k.run));
        ACTIVE.set(std::ptr::null());
        if k.run.is_empty() && k.run.capacity() > KEEP_QUEUE {
            k.run = VecDeque::with_capacity(INITIAL_QUEUE);
        }
        if n == BUDGET || at < batch.len() {
            // A local ping-pong never empties the run queue, and a sliced batch waits for
            // the writers: let other tasks and the outside queue have their turn.
            tokio::task::yield_now().await;
        }
        if core.is_closed() {
            break;
        }
    }
    k.teardown();
}

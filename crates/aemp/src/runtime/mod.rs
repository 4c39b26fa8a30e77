//! The node task: one task per node owns the kernel, the peer table, the connection
//! registry and the global service, and routes the effects of each to the others.
//!
//! Everything reaches it as a typed [`Cmd`] through the node's command queue ([`Core`]):
//! kernel work from node handles, frames and connection events from the transport, database
//! requests, timer ticks. The protocol decisions are taken by the state machines
//! (`kernel::Kernel`, and `aemp_proto::node_core::NodeCore`, which composes the peer table,
//! the connection registry, the global service and the seeds); this module only feeds them
//! events with the current time and carries out what they return.
//!
//! Order: one run queue holds everything in the order it was queued. Commands from other
//! threads join it a batch at a time, and at the latest when a handler queues something
//! itself (so what a thread queued before a handler's send runs before it); what handlers
//! and the kernel queue goes behind. A handler's message to another node goes straight into
//! the connection only while no command that may send something waits (received frames
//! do not count); otherwise it is queued like the rest. So messages from one node to one
//! port keep the order they were sent in, whichever thread or handler sends them.

mod cal;
mod dataconn;
mod direct;
mod host;
mod spin;

pub(crate) use cal::CalRequest;
pub(crate) use dataconn::{DcCmd, OpenRequest};

use crate::kernel::monitor::Canceller;
use crate::kernel::{Kernel, Shared, Task};
use crate::transport::connection::LinkState;
use crate::transport::{ConnEvent, EventSink, Frames, Transport};
use aemp_proto::db::names::Family;
use aemp_proto::global::QueryKind;
use aemp_proto::{Msg, NodeId, Str, Value};
use host::NodeHost;
use parking_lot::Mutex;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc, oneshot, Notify};

thread_local! {
    /// The core whose dispatcher is running on this thread right now (null when none).
    static ACTIVE: Cell<*const Core> = const { Cell::new(std::ptr::null()) };
    /// That dispatcher's run queue, while it runs. Everything queued on this thread for this
    /// node (by the kernel, by a handler's `Cx`, or by a `Node` handle used inside a handler)
    /// goes here, so it all keeps one FIFO order.
    static RUNQ: RefCell<VecDeque<Cmd>> = const { RefCell::new(VecDeque::new()) };
}

/// A node coming up or going down.
#[derive(Clone, Debug, PartialEq)]
pub enum NodeEvent {
    /// A connection to this node was established.
    Up(NodeId),
    /// The connection to this node was lost (with the reason text).
    Down(NodeId, String),
}

pub use aemp_proto::global::DbChange;

/// What a shutdown could not do (see [`Node::shutdown`](crate::Node::shutdown)): messages
/// queued for other nodes that were not written to their connection before the deadline,
/// or that waited for a node that was not connected.
///
/// Displays as `all queued messages delivered`, or e.g.
/// `120 queued messages not delivered (n2: 100, n3: 20)`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Messages not delivered, per node (sorted by node ID; nodes with none are left out).
    /// A connection writes what is queued in batches, and a batch whose write had not
    /// finished at the deadline counts whole: its first messages may have reached the socket
    /// (this is an upper bound).
    pub undelivered: Vec<(String, u64)>,
}

impl ShutdownReport {
    /// True when nothing queued was lost.
    pub fn is_complete(&self) -> bool {
        self.undelivered.is_empty()
    }

    /// Messages not delivered, in total.
    pub fn undelivered_total(&self) -> u64 {
        self.undelivered.iter().map(|(_, n)| n).sum()
    }
}

impl std::fmt::Display for ShutdownReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_complete() {
            return f.write_str("all queued messages delivered");
        }
        write!(
            f,
            "{} queued messages not delivered (",
            self.undelivered_total()
        )?;
        for (i, (node, n)) in self.undelivered.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{node}: {n}")?;
        }
        f.write_str(")")
    }
}

/// A shutdown, as a node handle asks for it.
pub(crate) struct ShutdownRequest {
    /// How long the connections may take to write what is queued.
    pub deadline: std::time::Duration,
    /// Where the report goes (`None`: the last handle was dropped, nobody waits).
    pub reply: Option<oneshot::Sender<ShutdownReport>>,
}

/// The answer callback of a database query.
pub(crate) type ReplyFn = Box<dyn FnOnce(Value) + Send + 'static>;

/// Database requests of node handles, for the global service.
pub(crate) enum DbCmd {
    Set {
        family: Family,
        key: Str,
        value: Value,
    },
    Del {
        family: Family,
        keys: Vec<Str>,
    },
    Query {
        kind: QueryKind,
        family: Family,
        reply: ReplyFn,
    },
    Watch {
        family: Family,
        id: u64,
        tx: mpsc::UnboundedSender<DbChange>,
    },
    Unwatch {
        family: Str,
        id: u64,
    },
}

/// Questions of node handles about the node's state.
pub(crate) enum Query {
    PortCount(oneshot::Sender<usize>),
    MonitorCount(oneshot::Sender<usize>),
    PortExists(Str, oneshot::Sender<bool>),
    UpNodes(oneshot::Sender<Vec<NodeId>>),
}

/// A unit of work for the node task.
pub(crate) enum Cmd {
    /// Kernel work.
    Task(Task),
    /// Frames one connection read brought.
    Frames(Frames),
    /// Something happened to a connection.
    Conn(ConnEvent),
    /// A database request.
    Db(DbCmd),
    /// A question about the node's state.
    Query(Query),
    /// A `cal` (boxed: rare, and larger than a message).
    Cal(Box<CalRequest>),
    /// A `cal` timed out (its reply port, the monitor of its target).
    CalTimeout(cal::Pending, Str, u64),
    /// Shut the node down (boxed: once per node).
    Shutdown(Box<ShutdownRequest>),
    /// Dial an address (`node`, if known, is who should answer there).
    Dial(SocketAddr, Option<Str>),
    /// Listen addresses of a node, from the user.
    AddAddress(Str, Vec<SocketAddr>),
    /// Data connection work (boxed: rare).
    DataConn(Box<DcCmd>),
    /// A deadline of one of the state machines may have passed.
    Tick,
}

/// The part of a node shared between the node task and every handle: identity, the command
/// queue, settings.
pub(crate) struct Core {
    pub shared: Arc<Shared>,
    queue: Mutex<Vec<Cmd>>,
    /// True while `queue` is not empty (set with the lock held by whoever makes it
    /// non-empty, cleared by the dispatcher when it takes the queue): lets the busy-polling
    /// dispatcher look for work without taking the lock that producers need.
    queued: AtomicBool,
    /// Set with `queued` when the queue holds a command that may send something (see
    /// `is_other`): a handler's send must then wait for it (see `Core::pending`).
    queued_others: AtomicBool,
    notify: Notify,
    closed: AtomicBool,
    /// True from the moment the dispatcher takes a batch until it is idle again (see
    /// [`direct`]).
    busy: AtomicBool,
    /// The direct path of remote sends (written by the node task only, see [`direct`]).
    pub(crate) direct: direct::DirectLinks,
    /// How long the dispatcher busy-polls before it sleeps (0 = never); see `Node::set_spin`.
    pub spin_nanos: AtomicU64,
    /// Node up/down notifications.
    pub events: broadcast::Sender<NodeEvent>,
}

impl Core {
    pub(crate) fn new(shared: Arc<Shared>, spin: std::time::Duration) -> Core {
        let (events, _) = broadcast::channel(1024);
        Core {
            shared,
            queue: Mutex::new(Vec::with_capacity(INITIAL_QUEUE)),
            queued: AtomicBool::new(false),
            queued_others: AtomicBool::new(false),
            notify: Notify::new(),
            closed: AtomicBool::new(false),
            busy: AtomicBool::new(false),
            direct: direct::DirectLinks::default(),
            spin_nanos: AtomicU64::new(spin.as_nanos().min(u64::MAX as u128) as u64),
            events,
        }
    }

    /// Moves what other threads queued for the node task to the end of `run`, the run queue
    /// of the dispatcher (called on the dispatcher's thread, while it runs), if it holds a
    /// command that may send something: everything queued from now on goes behind it. One
    /// FIFO order for the whole node: a command queued by a thread before a handler queues
    /// one runs first, though the handler runs in the middle of a batch. Received frames
    /// alone need not go first: they send nothing by themselves.
    #[inline]
    fn join_outside(&self, run: &mut VecDeque<Cmd>) {
        if self.queued_others.load(Ordering::Acquire) {
            self.take_outside(run);
        }
    }

    /// Moves everything other threads queued to the end of `run` (the dispatcher's batch
    /// take, and [`Core::join_outside`]).
    fn take_outside(&self, run: &mut VecDeque<Cmd>) {
        let mut q = self.queue.lock();
        // Busy before the queue looks empty: a direct send must not overtake what the run
        // queue holds.
        if !q.is_empty() {
            self.busy.store(true, Ordering::Release);
            if run.is_empty() {
                // The usual case, without copying: the batch becomes the run queue, and the
                // run queue's buffer collects the next batch.
                let mut next = Vec::from(std::mem::take(run));
                if next.capacity() > KEEP_QUEUE {
                    // A burst is over: do not keep its peak size.
                    next = Vec::with_capacity(INITIAL_QUEUE);
                }
                *run = VecDeque::from(std::mem::replace(&mut *q, next));
            } else {
                run.extend(q.drain(..));
            }
        }
        self.queued.store(false, Ordering::Release);
        self.queued_others.store(false, Ordering::Release);
    }

    /// Whether commands that may send something are waiting to run on this node's
    /// dispatcher, which is the running one on this thread: in the rest of the current
    /// generation of its run queue (`rest_others` of them are not received frames), in
    /// its run queue, or in the queue of other threads (received frames alone do not
    /// count: they send nothing by themselves).
    pub(super) fn pending(&self, rest_others: usize) -> bool {
        rest_others > 0
            || self.queued_others.load(Ordering::Acquire)
            || RUNQ.with_borrow(|q| !q.is_empty())
    }

    /// Queues a command for the node task. Never blocks on anything but a short lock.
    pub(crate) fn push(&self, cmd: Cmd) {
        if std::ptr::eq(ACTIVE.get(), self) {
            // Called from a handler of this very node: join its run queue, behind what the
            // handler already queued through its Cx and what other threads queued before.
            RUNQ.with_borrow_mut(|q| {
                self.join_outside(q);
                q.push_back(cmd)
            });
            return;
        }
        let other = is_other(&cmd);
        let was_empty = {
            let mut q = self.queue.lock();
            let was_empty = q.is_empty();
            q.push(cmd);
            if was_empty {
                self.queued.store(true, Ordering::Release);
            }
            if other {
                self.queued_others.store(true, Ordering::Release);
            }
            was_empty
        };
        // Only the transition empty -> non-empty needs a wake-up: the dispatcher takes the
        // whole queue at once, and Notify keeps one permit if it is busy.
        if was_empty {
            self.notify.notify_one();
        }
    }

    /// Queues many commands at once (one lock, one wake-up). `frames`: they are all
    /// [`Cmd::Frames`].
    pub(crate) fn push_many(&self, cmds: impl IntoIterator<Item = Cmd>, frames: bool) {
        if std::ptr::eq(ACTIVE.get(), self) {
            RUNQ.with_borrow_mut(|q| {
                self.join_outside(q);
                q.extend(cmds)
            });
            return;
        }
        let was_empty = {
            let mut q = self.queue.lock();
            let was_empty = q.is_empty();
            q.extend(cmds);
            if was_empty && !q.is_empty() {
                self.queued.store(true, Ordering::Release);
            }
            if !frames && !q.is_empty() {
                self.queued_others.store(true, Ordering::Release);
            }
            was_empty
        };
        if was_empty {
            self.notify.notify_one();
        }
    }

    /// Sends a message of a node handle to a remote port straight into its connection, if
    /// the node task is idle and the node is up (see [`direct`]): `Some` with the
    /// connection's verdict (a message checked for CBOR may still be too large for a JSON
    /// connection), the caller dropping what is left of `msg`; `None`, `msg` untouched,
    /// otherwise. `node` and `name` are the port ID's parts.
    #[inline]
    pub(crate) fn try_direct(
        &self,
        node: &str,
        name: &str,
        msg: &mut Msg,
    ) -> Option<Result<(), Box<aemp_proto::codec::LimitError>>> {
        if self.queued.load(Ordering::Acquire)
            || self.busy.load(Ordering::Acquire)
            || std::ptr::eq(ACTIVE.get(), self)
        {
            return None;
        }
        self.direct.send(node, name, msg)
    }

    /// Whether the node task has work queued or is running a batch: messages sent through
    /// it may not have reached their connection's write buffer yet.
    pub(crate) fn has_backlog(&self) -> bool {
        self.queued.load(Ordering::Acquire) || self.busy.load(Ordering::Acquire)
    }

    /// Queues kernel work.
    #[inline]
    pub(crate) fn task(&self, task: Task) {
        self.push(Cmd::Task(task));
    }

    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.notify.notify_one();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

impl Canceller for Core {
    fn cancel_monitor(&self, id: u64) {
        self.task(Task::Unmon(id));
    }
}

impl EventSink for Core {
    fn conn_event(&self, ev: ConnEvent) {
        self.push(Cmd::Conn(ev));
    }

    fn frames(&self, chunks: Vec<Frames>) {
        self.push_many(chunks.into_iter().map(Cmd::Frames), true);
    }
}

/// What a node starts with.
pub(crate) struct Setup {
    /// The network, if the node has one.
    pub transport: Option<Arc<Transport>>,
    /// Seed addresses (without our own listeners).
    pub seeds: Vec<SocketAddr>,
    /// The addresses we listen on.
    pub listening: Vec<SocketAddr>,
    /// Global from the start.
    pub global: bool,
    /// The node's public handle (opaque here; the kernel gives it to handlers).
    pub owner: std::sync::Weak<dyn std::any::Any + Send + Sync>,
}

/// Starts the node task.
pub(crate) fn start(core: Arc<Core>, setup: Setup) {
    let rt = Runtime::new(core, setup);
    tokio::spawn(rt.run());
}

/// The node task's state: the kernel, and everything else as the kernel's host.
struct Runtime {
    kernel: Kernel,
    host: NodeHost,
    /// Set by the first `Cmd::Shutdown`: the deadline, and who waits for the report.
    stop: Option<(std::time::Duration, Vec<oneshot::Sender<ShutdownReport>>)>,
    /// Received frames delivered in the current run beyond one per command (see
    /// `Runtime::slice_done`).
    frames_run: usize,
}

/// Initial capacity (in commands) of the dispatcher's queues; a busy node grows them once
/// and keeps them (up to [`KEEP_QUEUE`]). Reserved, not touched, until used.
const INITIAL_QUEUE: usize = 1024;

/// Queue buffers larger than this (in commands) are released once empty.
const KEEP_QUEUE: usize = 64 * 1024;

/// Received frames (or other commands) a dispatcher runs before it lets a connection writer
/// it woke send the answers so far (see `run`).
const SLICE: usize = 32;

/// How many commands the dispatcher runs before it yields to other tasks.
const BUDGET: usize = 8192;

impl Runtime {
    fn new(core: Arc<Core>, setup: Setup) -> Runtime {
        let kernel = Kernel::new(core.shared.clone());
        let host = NodeHost::new(core, setup);
        Runtime {
            kernel,
            host,
            stop: None,
            frames_run: 0,
        }
    }

    /// Runs one command.
    #[inline]
    fn exec(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Task(t) => self.kernel.exec(t, &mut self.host),
            Cmd::Frames(f) => self.deliver_frames(f),
            other => self.exec_other(other),
        }
        if self.host.has_lost() {
            self.fire_lost();
        }
    }

    /// Whether the current slice of a run is over, once a send woke a connection's writer:
    /// [`SLICE`] commands or received frames have run since the run began, counting every
    /// frame of a command that delivered many (see `run`). After a shutdown request, what
    /// ran before it may still queue more (a handler's sends): that runs too, unsliced,
    /// within the budget.
    #[inline(never)]
    fn slice_done(&self, commands: usize) -> bool {
        commands + self.frames_run >= SLICE && self.stop.is_none()
    }

    /// Delivers what a connection read brought. Out of line, so that `exec`, which local
    /// messaging runs for every command, stays small.
    #[inline(never)]
    fn deliver_frames(&mut self, f: Frames) {
        self.frames_run += f.frames.len().saturating_sub(1);
        self.kernel
            .deliver_all(f.frames, Some(&f.src), &mut self.host);
        self.host.release_inbound(f.cost);
    }

    #[inline(never)]
    fn exec_other(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Conn(ev) => self.host.conn_event(ev),
            Cmd::Db(d) => self.host.db(d),
            Cmd::Query(q) => match q {
                Query::PortCount(tx) => drop(tx.send(self.kernel.port_count())),
                Query::MonitorCount(tx) => drop(tx.send(self.kernel.monitor_count())),
                Query::PortExists(name, tx) => drop(tx.send(self.kernel.port_exists(&name))),
                Query::UpNodes(tx) => {
                    use crate::kernel::Host;
                    drop(tx.send(self.host.up_nodes()))
                }
            },
            Cmd::Cal(req) => {
                let core = self.host.core.clone();
                cal::start(&core, &mut self.kernel, &mut self.host, *req)
            }
            Cmd::CalTimeout(pending, reply, mon_id) => {
                cal::timed_out(&mut self.kernel, &mut self.host, pending, &reply, mon_id)
            }
            Cmd::Shutdown(req) => {
                let stop = self.stop.get_or_insert((req.deadline, Vec::new()));
                stop.1.extend(req.reply);
            }
            Cmd::Dial(addr, node) => self.host.dial(addr, node),
            Cmd::AddAddress(node, addrs) => self.host.add_addresses(&node, addrs),
            Cmd::DataConn(cmd) => self.host.data_conn(*cmd),
            Cmd::Tick => self.host.tick(),
            // Taken by `exec` before it gets here; handled the same way all the same.
            Cmd::Task(t) => self.kernel.exec(t, &mut self.host),
            Cmd::Frames(f) => self.deliver_frames(f),
        }
    }

    /// Fires the monitors of nodes the peer table reported lost, in the same step.
    fn fire_lost(&mut self) {
        while let Some((node, text)) = self.host.take_lost() {
            self.kernel.node_lost(&node, &text, &mut self.host);
        }
    }

    /// The dispatcher: executes commands until the node is closed.
    ///
    /// One run queue holds the node's commands in the order they were queued: what other
    /// threads queue (taken a batch at a time here, or as soon as a handler queues something
    /// itself, see `Core::join_outside`) and what the kernel and the node's handlers queue
    /// while it runs. So a message a thread sent before a handler sends one goes first, even
    /// when the handler runs in the middle of a batch.
    async fn run(mut self) {
        let core = self.host.core.clone();
        let mut gauge = spin::SpinGauge::new();
        // When the current idle period began (while polling is configured).
        let mut idle_since: Option<std::time::Instant> = None;
        self.host.start();
        self.fire_lost();
        loop {
            if core.queued.load(Ordering::Acquire) {
                core.take_outside(&mut self.host.run);
            }
            if self.host.run.is_empty() {
                if self.host.timers_dirty {
                    self.host.arm_timer();
                }
                // Everything queued so far has run (and was written to its connections).
                core.busy.store(false, Ordering::Release);
                // Busy-poll for a while before sleeping, if configured (like the busy wait of
                // Erlang's schedulers): yielding keeps the runtime thread awake, polling
                // sockets and timers, so the next message does not pay for waking an idle
                // CPU. Only while it pays off: the gauge shortens the poll to what recent
                // idle periods needed, or skips it when most of them outlasted it.
                // The idle period starts at the first pass only: a wake-up without work (a
                // stale permit of the notifier) does not poll again from the start.
                let limit = core.spin_nanos.load(Ordering::Relaxed);
                let since = if limit > 0 {
                    Some(*idle_since.get_or_insert_with(std::time::Instant::now))
                } else {
                    None
                };
                let spin = gauge.window(limit);
                if let (true, Some(since)) = (spin > 0, since) {
                    let until = since + std::time::Duration::from_nanos(spin);
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
            if let Some(since) = idle_since.take() {
                // Work again: how long the idle period lasted tells the gauge whether
                // polling pays off.
                gauge.record(nanos_since(since), core.spin_nanos.load(Ordering::Relaxed));
            }
            self.host.refresh_now();
            ACTIVE.set(Arc::as_ptr(&core));
            RUNQ.with_borrow_mut(|q| std::mem::swap(q, &mut self.host.run));
            self.host.dispatching = true;
            self.host.woke_writer = false;
            // The run queue is taken a generation at a time: what runs now may queue more
            // (into the emptied RUNQ), which runs in the next generation, so FIFO order holds
            // and the thread-local is touched once per generation instead of once per
            // command. A long run goes in slices: when a slice has produced data for a
            // connection, the rest waits until the writer has run (below), so the peer can
            // start on the first answers while this node works on the rest (pipelining
            // instead of one strict batch after the other).
            let mut n = 0;
            self.frames_run = 0;
            'run: loop {
                RUNQ.with_borrow_mut(|q| std::mem::swap(q, &mut self.host.gen));
                if self.host.gen.is_empty() {
                    break;
                }
                // Counted when a handler's send first needs it (see `NodeHost::pending`).
                self.host.gen_others = None;
                while let Some(cmd) = self.host.gen.pop_front() {
                    n += 1;
                    if let Some(k) = self.host.gen_others.as_mut() {
                        *k -= usize::from(is_other(&cmd));
                    }
                    self.exec(cmd);
                    if n == BUDGET || (self.host.woke_writer && self.slice_done(n)) {
                        break 'run;
                    }
                }
            }
            self.host.gen_others = None;
            if !self.host.gen.is_empty() {
                // Unfinished commands of this generation go before the newer ones.
                let gen = &mut self.host.gen;
                RUNQ.with_borrow_mut(|q| {
                    while let Some(c) = gen.pop_back() {
                        q.push_front(c);
                    }
                });
            }
            self.host.dispatching = false;
            RUNQ.with_borrow_mut(|q| std::mem::swap(q, &mut self.host.run));
            ACTIVE.set(std::ptr::null());
            if self.host.run.is_empty() && self.host.run.capacity() > KEEP_QUEUE {
                self.host.run = VecDeque::with_capacity(INITIAL_QUEUE);
            }
            if self.host.timers_dirty {
                self.host.arm_timer();
            }
            if self.stop.is_some() {
                break;
            }
            if !self.host.run.is_empty() {
                // A local ping-pong never empties the run queue, and a sliced run waits for
                // the writers: let other tasks and the other threads' queue have their turn.
                tokio::task::yield_now().await;
            }
        }
        self.shutdown(core).await;
    }

    /// The node shuts down, after everything queued before the request ran: its monitors
    /// fire (see `Kernel::shutdown`), its ports go, it stops listening and dialling, and its
    /// connections write what is queued and close in order, within the deadline; what could
    /// not be written by then is dropped, logged (WARN, with counts per node) and reported.
    async fn shutdown(mut self, core: Arc<Core>) {
        let (deadline, replies) = self.stop.take().unwrap_or_default();
        core.close();
        self.kernel.shutdown(&mut self.host);
        let (links, mut undelivered) = self.host.begin_shutdown();
        // Sends still queued (past the budget, or queued by other threads while the
        // request ran) never reach a connection: reported like unwritten ones.
        let left = std::mem::take(&mut *core.queue.lock());
        undelivered.extend(unsent(self.host.run.drain(..).chain(left)));
        let until = tokio::time::Instant::now() + deadline;
        for tx in &links {
            let mut state = tx.state();
            let ended = state.wait_for(|s| *s == LinkState::Ended);
            let _ = tokio::time::timeout_at(until, ended).await;
        }
        for tx in &links {
            if *tx.state().borrow() != LinkState::Ended {
                let n = tx.unwritten();
                if n > 0 {
                    undelivered.push((tx.peer.to_string(), n));
                }
                tx.abort();
            }
        }
        undelivered.sort();
        undelivered.dedup_by(|b, a| {
            let same = a.0 == b.0;
            if same {
                a.1 += b.1;
            }
            same
        });
        let report = ShutdownReport { undelivered };
        if !report.is_complete() {
            let id = &core.shared.id;
            if crate::kernel::tracing_is_set() {
                tracing::warn!(node = %id, deadline = ?deadline, "shut down: {report}");
            } else {
                eprintln!("aemp: node {id} shut down: {report}");
            }
        }
        self.host.teardown();
        for r in replies {
            let _ = r.send(report.clone());
        }
    }
}

/// Whether `cmd` may send something by itself: anything but received frames and a
/// shutdown request (see `Core::pending`; a handler that runs before the request is
/// handled sends as usual).
#[inline]
pub(super) fn is_other(cmd: &Cmd) -> bool {
    !matches!(cmd, Cmd::Frames(_) | Cmd::Shutdown(_))
}

/// The messages for other nodes among `cmds`, per node (a node may repeat).
fn unsent(cmds: impl Iterator<Item = Cmd>) -> Vec<(String, u64)> {
    cmds.filter_map(|c| match c {
        Cmd::Task(Task::Send { port, .. }) => Some((port.node().to_string(), 1)),
        Cmd::Task(Task::SendMany { port, msgs }) => {
            Some((port.node().to_string(), msgs.len() as u64))
        }
        _ => None,
    })
    .collect()
}

/// Nanoseconds since `t` (saturating).
fn nanos_since(t: std::time::Instant) -> u64 {
    t.elapsed().as_nanos().min(u64::MAX as u128) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use aemp_proto::{msg, PortId};

    /// What a shutdown reports as not delivered from commands that never ran: every message
    /// for another node, one per message of a batch, none for anything else.
    #[test]
    fn unsent_counts_the_messages_for_other_nodes() {
        let port = |s: &str| PortId::parse(s).unwrap();
        let cmds = vec![
            Cmd::Task(Task::Send {
                port: port("n2#p"),
                msg: msg!["a"],
            }),
            Cmd::Tick,
            Cmd::Task(Task::SendMany {
                port: port("n3#q"),
                msgs: vec![msg!["b"], msg!["c"]],
            }),
            Cmd::Task(Task::Deliver {
                port: Str::from("local"),
                msg: msg!["d"],
                src: None,
            }),
            Cmd::Task(Task::Send {
                port: port("n2#r"),
                msg: msg!["e"],
            }),
        ];
        assert_eq!(
            unsent(cmds.into_iter()),
            vec![("n2".into(), 1), ("n3".into(), 2), ("n2".into(), 1)]
        );
    }
}

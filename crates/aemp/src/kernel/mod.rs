//! The kernel: a node's ports, the dispatch of messages to their handlers, kills and
//! monitors, as a plain synchronous state machine.
//!
//! The kernel knows nothing of the network, the global service or the public `Node` handle.
//! Its owner (the node task, `crate::runtime`) calls it with [`Task`]s and lends it a
//! [`Host`] for the duration of each call: the kernel asks the host to queue follow-up work
//! behind what is already queued ([`Host::postpone`]), to send to other nodes, and to serve
//! the node-port requests that belong to other services (`g_*`). Handlers get the kernel and
//! the host through their [`Cx`], so what they do takes effect at once, and their local sends
//! are queued behind the work already waiting. This gives:
//!
//! * per-sender FIFO order to each port (one run queue, executed in order);
//! * no handler ever runs inside another (sends are queued, never called through);
//! * `spawn` on the local node never runs the init function before `spawn` returns (it is a
//!   queued task).
//!
//! Because the host is a trait, the kernel is tested without a runtime or sockets (see the
//! tests at the end of this file).

pub(crate) mod context;
pub(crate) mod monitor;
pub(crate) mod node_port;
pub(crate) mod port;
pub(crate) mod registry;
mod reply;
mod table;

use crate::error::Error;
use aemp_proto::codec::{Framing, LimitError, Limits};
use aemp_proto::ids::PortNamer;
use aemp_proto::node_req::NodeReq;
use aemp_proto::{Msg, NodeId, PortId, Str, Value};
use context::Cx;
use monitor::{Canceller, MonAction, MonTarget, Monitor, Reason, RemoteMonitors};
use parking_lot::RwLock;
use port::{Handler, Port};
use registry::Registry;
use rustc_hash::FxHashMap;
use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

/// What the kernel needs from its owner while it runs. Implemented by the node task; the
/// kernel's unit tests implement it with plain queues.
pub(crate) trait Host {
    /// Queues kernel work behind everything already queued for this node.
    fn postpone(&mut self, task: Task);
    /// A message for port `port` (`""` = node port) of another node; starts connecting if
    /// needed.
    fn send_remote(&mut self, node: &str, port: &str, msg: Msg);
    /// A message a handler sends to port `port` of another node ([`Cx::snd`], and the
    /// control messages of [`Cx::kil`] and [`Cx::mon`]): like [`Host::send_remote`], but
    /// behind every command queued for this node before it (by another thread, by the
    /// kernel or by the handler itself) that has not run yet, so that messages to one port
    /// keep the order they were sent in. A host whose queued work always runs before a
    /// handler does (the kernel's unit tests) sends at once.
    fn send_from_handler(&mut self, node: &str, port: &str, msg: Msg) {
        self.send_remote(node, port, msg);
    }
    /// A message for another node, only if it is connected (death notices must not start a
    /// connection).
    fn send_if_up(&mut self, node: &str, port: &str, msg: Msg);
    /// A global-protocol request (`g_*`) for the global service.
    fn global_request(&mut self, from: &NodeId, tag: Str, args: Vec<Value>);
    /// A data connection request (`AnyEvent::MP::DataConn::_expect` or `_connect`) from
    /// node `from`, for the node's data connections.
    fn data_conn_request(&mut self, from: &NodeId, func: &str, args: Vec<Value>) {
        let _ = args;
        tracing::warn!(src = %from, function = %func, "data connections are not served here");
    }
    /// The nodes currently connected (for `aemp_nodes`).
    fn up_nodes(&self) -> Vec<NodeId>;
    /// The node's public handle, opaque to the kernel (see `Cx::node`).
    fn owner(&self) -> Option<Arc<dyn Any + Send + Sync>>;
    /// Where monitor guards send their cancellation.
    fn canceller(&self) -> Weak<dyn Canceller>;
}

/// Identity and shared settings of a node, readable from every handle without the kernel.
pub(crate) struct Shared {
    pub id: NodeId,
    pub namer: PortNamer,
    /// Named functions (spawn init functions, `snd_to_func` targets).
    pub registry: RwLock<Registry>,
    /// Secure mode: refuse remote spawns and function calls.
    pub secure: AtomicBool,
    /// What this node's peers accept (the node's own decoder limits: one rule for both
    /// directions). Every message that enters the node is checked against them
    /// ([`Shared::check`]).
    pub limits: Limits,
    /// Report ports killed by their own handler (see [`Kernel::report_death`]).
    pub log_deaths: AtomicBool,
    /// Message tracing (`AEMP_TRACE` when the node started): every message delivered to a
    /// port of this node is logged (see the crate docs, "Diagnostics").
    pub trace: bool,
    guard_ids: AtomicU64,
}

impl Shared {
    pub(crate) fn new(id: NodeId, namer: PortNamer) -> Shared {
        Shared {
            id,
            namer,
            registry: RwLock::new(Registry::default()),
            secure: AtomicBool::new(false),
            limits: Limits::default(),
            log_deaths: AtomicBool::new(true),
            trace: aemp_proto::trace::enabled(
                std::env::var(aemp_proto::trace::TRACE_ENV).ok().as_deref(),
            ),
            guard_ids: AtomicU64::new(1),
        }
    }

    /// Checks that a peer would accept `msg` for the port named `port` (`""`: a node port)
    /// in a frame of [`Framing::PREFERRED`] (CBOR): the rule for every message that enters
    /// the node, whatever its destination. It is checked there, before anyone knows which
    /// connection (if any) will carry it; for CBOR the check is exact, and a connection
    /// that speaks JSON checks the JSON size again, exactly, before it encodes (escapes can
    /// make a JSON frame larger than its CBOR form; see `ConnTx::send_checked`).
    #[inline]
    pub(crate) fn check(&self, port: &str, msg: &[Value]) -> Result<(), LimitError> {
        self.limits.check_frame(Framing::PREFERRED, port, msg)
    }

    /// [`Shared::check`] for a message to `port`. A flat message (no list or map in it) for
    /// a port of this node is accepted without measuring it: it is never encoded, and only
    /// nesting can hurt a local receiver (a value nested too deep is refused for local
    /// ports as for remote ones). This keeps local messaging at a few instructions per
    /// message for the check.
    ///
    /// For a port of another node, its node ID is checked too ([`Shared::check_node`]).
    #[inline]
    pub(crate) fn check_to(&self, port: &PortId, msg: &[Value]) -> Result<(), LimitError> {
        let (node, name) = port.parts();
        self.check_to_at(node, name, self.is_local(node), msg)
    }

    /// Whether `node` (the node part of a port ID) is this node.
    #[inline]
    pub(crate) fn is_local(&self, node: &str) -> bool {
        port::short_eq(node, self.id.as_str())
    }

    /// [`Shared::check_to`] for a sender that has the port ID's parts ([`PortId::parts`])
    /// and knows `local` ([`Shared::is_local`]) already because it branches on it too
    /// (`Node::snd`): node IDs are mostly longer than the 24 bytes that [`port::short_eq`]
    /// compares without a `memcmp` call, so comparing them once saves a call per message.
    #[inline]
    pub(crate) fn check_to_at(
        &self,
        node: &str,
        name: &str,
        local: bool,
        msg: &[Value],
    ) -> Result<(), LimitError> {
        if local
            && !msg
                .iter()
                .any(|v| matches!(v, Value::List(_) | Value::Map(_)))
        {
            return Ok(());
        }
        self.check(name, msg)?;
        if !local {
            self.check_node(node)?;
        }
        Ok(())
    }

    /// Checks a node-port request made of strings only, `["", parts…]` (a request that
    /// carries a user-given name: `mon1`, `kil1`, `g_find`, `g_mon1`, `g_db_family`, …), as
    /// [`Shared::check`] would, without building it in the common case.
    #[inline]
    pub(crate) fn check_names(&self, parts: &[&str]) -> Result<(), LimitError> {
        self.limits.check_flat(Framing::PREFERRED, "", parts)
    }

    /// Checks the ID of a node that a call addresses, as the `["", "g_find", node]` request
    /// a slave sends its master to find the node's addresses: a node ID that request could
    /// not carry is refused where it enters the node, like any other value.
    #[inline]
    pub(crate) fn check_node(&self, node: &str) -> Result<(), LimitError> {
        self.check_names(&["g_find", node])
    }

    /// What a monitor of `port` sends (`["", "mon1", name]`, and `g_find` for a node that
    /// has to be found), checked; nothing for a port of this node.
    pub(crate) fn check_mon(&self, port: &PortId) -> Result<(), LimitError> {
        if port::short_eq(port.node(), self.id.as_str()) {
            return Ok(());
        }
        self.check_node(port.node())?;
        if port.is_node_port() {
            return Ok(());
        }
        self.check_names(&["mon1", port.name()])
    }

    /// Checks a kill reason as the `kil0`/`kil1` request that carries it to another node:
    /// `["", tag, port name, reason...]`. Gives the reason back either way.
    pub(crate) fn check_reason(
        &self,
        tag: &str,
        name: &str,
        reason: Reason,
    ) -> (Reason, Result<(), LimitError>) {
        let mut req = Vec::with_capacity(reason.len() + 2);
        req.push(Value::from(tag));
        req.push(Value::from(name));
        req.extend(reason);
        let checked = self.check("", &req);
        req.drain(..2);
        (Reason::from(req), checked)
    }

    /// The reason of a kill by `kil` (`local`: of a port of this node, named `name`), if it
    /// could be sent to another node: as the `kil1` request to a remote port's node, or the
    /// `kil0` notice to a remote monitor of a local port. A refused reason is dropped.
    ///
    /// For a remote port, the `kil1` request is checked even without a reason (it carries
    /// the port's name), and so is its node ID ([`Shared::check_node`]).
    pub(crate) fn sendable_reason(&self, port: &PortId, reason: Reason) -> Result<Reason, Error> {
        let local = port::short_eq(port.node(), self.id.as_str());
        let name = port.name();
        if !local {
            let names = self
                .check_node(port.node())
                .and_then(|()| self.check_names(&["kil1", name]));
            if let Err(e) = names {
                aemp_proto::value::drop_nested(reason);
                return Err(Error::Refused(e));
            }
        }
        if reason.is_empty() {
            return Ok(reason);
        }
        match self.check_reason(if local { "kil0" } else { "kil1" }, name, reason) {
            (reason, Ok(())) => Ok(reason),
            (refused, Err(e)) => {
                aemp_proto::value::drop_nested(refused);
                Err(Error::Refused(e))
            }
        }
    }

    /// A fresh id for a monitor or another guarded registration.
    pub(crate) fn next_guard(&self) -> u64 {
        self.guard_ids.fetch_add(1, Ordering::Relaxed)
    }
}

/// A unit of kernel work.
pub(crate) enum Task {
    /// Deliver a message to a local port (by name; `""` is the node port).
    Deliver {
        port: Str,
        msg: Msg,
        /// The node it came from; `None` = this node.
        src: Option<Arc<NodeId>>,
    },
    /// Send a message to any port (from a node handle).
    Send { port: PortId, msg: Msg },
    /// Send messages to one port of another node (from a node handle).
    SendMany { port: PortId, msgs: Vec<Msg> },
    /// Kill a local port.
    Kill { port: Str, reason: Reason },
    /// Kill any port (from a node handle; remote ports get `kil1`).
    Kil { port: PortId, reason: Reason },
    /// Set (`handler = Some`) or remove a handler of a local port.
    Rcv {
        port: Str,
        tag: Option<Str>,
        handler: Option<Handler>,
    },
    /// Create a port with handlers.
    CreatePort {
        name: Str,
        default: Option<Handler>,
        tags: Vec<(Str, Handler)>,
    },
    /// Register a monitor (boxed: a rare command, kept out of the size of every task).
    Mon(Box<MonRequest>),
    /// Cancel a monitor.
    Unmon(u64),
    /// Fire a queued `no_such_port` monitor, unless it was cancelled meanwhile.
    FirePending(u64),
    /// Run a named function in the context of a new local port (local `spawn`), once `gate`
    /// is open (re-queued until then).
    Spawn {
        name: Str,
        init: Str,
        args: Vec<Value>,
        gate: Arc<AtomicBool>,
    },
}

/// A monitor to register: on `port`, cancelled by guard `id`.
pub(crate) struct MonRequest {
    pub port: PortId,
    pub id: u64,
    pub action: Monitor,
}

/// The default handler of a port, taken out of its slot to run a stream of messages to
/// that port (see [`Kernel::deliver_all`]).
struct Run {
    /// The port's name.
    name: Str,
    /// Its slot and uid in the port table.
    idx: u32,
    uid: u64,
    h: Handler,
}

/// The tag a handler on `route` is called without: a tag handler gets the message without
/// its first element (the tag, taken out and returned), the default handler all of it.
#[inline(always)]
fn take_tag(route: &port::Route, msg: &mut Msg) -> Str {
    match route {
        port::Route::Tag(_) => match msg.0.remove(0) {
            Value::Str(t) => t,
            _ => Str::default(),
        },
        port::Route::Default => Str::default(),
    }
}

/// The dispatcher-owned state of a node: ports and monitors.
pub(crate) struct Kernel {
    pub(crate) id: NodeId,
    pub(crate) shared: Arc<Shared>,
    /// [`Shared::trace`], read once.
    trace: bool,
    ports: table::PortTable,
    mon_index: FxHashMap<u64, MonTarget>,
    remote_mons: RemoteMonitors,
    /// Monitors on our own node port: they can never fire (the node port never dies) but are
    /// kept so their guards behave.
    self_node_mons: Vec<(u64, MonAction)>,
    /// Monitors whose firing is queued (`no_such_port`), until it runs or is cancelled.
    pending_fires: FxHashMap<u64, MonAction>,
}

impl Kernel {
    pub(crate) fn new(shared: Arc<Shared>) -> Kernel {
        Kernel {
            id: shared.id.clone(),
            trace: shared.trace,
            shared,
            ports: table::PortTable::default(),
            mon_index: FxHashMap::default(),
            remote_mons: RemoteMonitors::default(),
            self_node_mons: Vec::new(),
            pending_fires: FxHashMap::default(),
        }
    }

    /// Number of live local ports.
    pub(crate) fn port_count(&self) -> usize {
        self.ports.len()
    }

    /// Number of monitors this node holds (on its own ports, on other nodes and their ports,
    /// and queued `no_such_port` firings).
    pub(crate) fn monitor_count(&self) -> usize {
        self.mon_index.len() + self.self_node_mons.len()
    }

    pub(crate) fn port_exists(&self, name: &str) -> bool {
        self.ports.contains(name)
    }

    /// Runs one task. The common case (a message for a local port) is matched here, inline
    /// in the dispatcher's loop, so that the task is not copied again on its way.
    #[inline(always)]
    pub(crate) fn exec(&mut self, task: Task, host: &mut dyn Host) {
        match task {
            Task::Deliver { port, msg, src } => self.deliver(port, msg, src.as_deref(), host),
            other => self.exec_other(other, host),
        }
    }

    /// Every task but a local delivery.
    #[inline(never)]
    fn exec_other(&mut self, task: Task, host: &mut dyn Host) {
        match task {
            Task::Deliver { port, msg, src } => self.deliver(port, msg, src.as_deref(), host),
            Task::Send { port, msg } => self.snd(&port, msg, host),
            Task::SendMany { port, msgs } => {
                for m in msgs {
                    self.snd(&port, m, host);
                }
            }
            Task::Kill { port, reason } => self.kill_local(&port, reason, host),
            Task::Kil { port, reason } => {
                let _ = self.kil(&port, reason, host);
            }
            Task::Rcv { port, tag, handler } => self.rcv_local(&port, tag.as_deref(), handler),
            Task::CreatePort {
                name,
                default,
                tags,
            } => self.create_port(name, default, tags),
            Task::Mon(m) => {
                let MonRequest { port, id, action } = *m;
                self.mon(&port, id, action, host)
            }
            Task::Unmon(id) => self.unmon(id, host),
            Task::FirePending(id) => {
                if let Some(action) = self.pending_fires.remove(&id) {
                    let reason = match self.mon_index.remove(&id) {
                        Some(MonTarget::Pending(reason)) => reason,
                        _ => Reason::normal(),
                    };
                    self.fire(action, reason, host);
                }
            }
            Task::Spawn {
                name,
                init,
                args,
                gate,
            } => {
                if gate.load(Ordering::Acquire) {
                    self.run_named(&name, &init, args, None, host);
                } else {
                    host.postpone(Task::Spawn {
                        name,
                        init,
                        args,
                        gate,
                    });
                }
            }
        }
    }

    /// Runs a handler of a local port on a message.
    #[inline]
    pub(crate) fn deliver(
        &mut self,
        name: Str,
        mut msg: Msg,
        src: Option<&NodeId>,
        host: &mut dyn Host,
    ) {
        if self.trace {
            trace_delivery(&self.id, &name, &msg, src);
        }
        if name.is_empty() {
            self.node_request(msg, src, host);
            return;
        }
        let Some((idx, uid)) = self.ports.lookup(&name) else {
            // Unknown ports drop messages silently; monitors are the only
            // failure signal.
            return;
        };
        let Some(slot) = self.ports.slot_mut(idx, uid) else {
            return;
        };
        let port = &mut slot.port;
        let Some(route) = port.route(msg.tag()) else {
            self.unhandled(&name, &msg, host);
            return;
        };
        let Some(mut h) = port.take(&route) else {
            // Cannot happen: handlers never run re-entrantly. Treat like no handler.
            return;
        };
        let tag = take_tag(&route, &mut msg);
        let result = self.call(&mut h, &name, msg, src, host);
        // The uid check: a port killed and re-created by its handler is another port.
        match self.ports.slot_mut(idx, uid) {
            Some(s) => s.port.restore(&route, &tag, h),
            None => drop(h),
        }
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => self.handler_failed(&name, e.to_string(), host),
            Err(panic) => self.handler_failed(&name, panic_text(&panic), host),
        }
    }

    /// Delivers the frames a connection read brought, in order, exactly as [`Kernel::deliver`]
    /// one by one would. While consecutive frames go to the default handler of one port,
    /// that handler stays taken out of its slot (which stays `Running`, as while it runs)
    /// from one message to the next: the port is not looked up, and the handler not taken
    /// and put back, for every message of a stream. It goes back before anything else runs:
    /// a frame for another port or handler, a node-port request, or the end of the frames.
    pub(crate) fn deliver_all(
        &mut self,
        frames: Vec<(Str, Msg)>,
        src: Option<&NodeId>,
        host: &mut dyn Host,
    ) {
        let mut held: Option<Run> = None;
        for (name, msg) in frames {
            if let Some(run) = held.as_mut() {
                if port::short_eq(&run.name, &name) && self.still_default(run, &msg) {
                    drop(name);
                    if self.trace {
                        trace_delivery(&self.id, &run.name, &msg, src);
                    }
                    let result = self.call(&mut run.h, &run.name, msg, src, host);
                    if matches!(result, Ok(Ok(()))) && self.default_running(run) {
                        continue;
                    }
                    if let Some(run) = held.take() {
                        self.after_call(run, port::Route::Default, "", result, false, host);
                    }
                    continue;
                }
                if let Some(run) = held.take() {
                    self.put_back(run);
                }
            }
            held = self.deliver_start(name, msg, src, host);
        }
        if let Some(run) = held {
            self.put_back(run);
        }
    }

    /// [`Kernel::deliver`] for the first frame of a run (see [`Kernel::deliver_all`]): a
    /// default handler that ran without failure and whose slot was left alone is returned,
    /// still taken out, instead of put back. (A separate copy, so that `deliver`, which
    /// local messaging runs for every message, stays as small as it was: ending `deliver`
    /// with [`Kernel::after_call`] too cost it about 60 instructions per local message,
    /// callgrind L1 928 -> 987.)
    fn deliver_start(
        &mut self,
        name: Str,
        mut msg: Msg,
        src: Option<&NodeId>,
        host: &mut dyn Host,
    ) -> Option<Run> {
        if self.trace {
            trace_delivery(&self.id, &name, &msg, src);
        }
        if name.is_empty() {
            self.node_request(msg, src, host);
            return None;
        }
        let Some((idx, uid)) = self.ports.lookup(&name) else {
            // Unknown ports drop messages silently; monitors are the only
            // failure signal.
            return None;
        };
        let slot = self.ports.slot_mut(idx, uid)?;
        let port = &mut slot.port;
        let Some(route) = port.route(msg.tag()) else {
            self.unhandled(&name, &msg, host);
            return None;
        };
        // None cannot happen: handlers never run re-entrantly. Treated like no handler.
        let mut h = port.take(&route)?;
        let tag = take_tag(&route, &mut msg);
        let result = self.call(&mut h, &name, msg, src, host);
        let run = Run { name, idx, uid, h };
        self.after_call(run, route, &tag, result, true, host)
    }

    /// Runs a handler taken out of port `name`, catching a panic.
    #[inline(always)]
    fn call(
        &mut self,
        h: &mut Handler,
        name: &Str,
        msg: Msg,
        src: Option<&NodeId>,
        host: &mut dyn Host,
    ) -> std::thread::Result<crate::error::HandlerResult> {
        let mut cx = Cx {
            k: self,
            host,
            port: name,
            src,
        };
        catch_unwind(AssertUnwindSafe(|| h(&mut cx, msg)))
    }

    /// After a handler of a run ran: keeps it out (`keep`, see [`Kernel::deliver_start`]) or
    /// puts it back, and kills its port if it failed.
    #[inline]
    fn after_call(
        &mut self,
        run: Run,
        route: port::Route,
        tag: &str,
        result: std::thread::Result<crate::error::HandlerResult>,
        keep: bool,
        host: &mut dyn Host,
    ) -> Option<Run> {
        // The uid check: a port killed and re-created by its handler is another port.
        match self.ports.slot_mut(run.idx, run.uid) {
            Some(s) => {
                if keep
                    && matches!(route, port::Route::Default)
                    && matches!(result, Ok(Ok(())))
                    && s.port.default.is_running()
                {
                    return Some(run);
                }
                s.port.restore(&route, tag, run.h)
            }
            None => drop(run.h),
        }
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => self.handler_failed(&run.name, e.to_string(), host),
            Err(panic) => self.handler_failed(&run.name, panic_text(&panic), host),
        }
        None
    }

    /// Kills port `name`, which has no handler for `msg` (out of line: rare, and the
    /// delivery path stays small).
    #[cold]
    #[inline(never)]
    fn unhandled(&mut self, name: &str, msg: &Msg, host: &mut dyn Host) {
        let text = port::unhandled_text(msg.0.first());
        let reason = vec!["unhandled_message".into(), text.into()].into();
        self.kill_port(name, reason, Death::Handler, host);
    }

    /// Kills a port whose handler failed (out of line: rare, and the delivery path stays
    /// small).
    #[cold]
    #[inline(never)]
    fn handler_failed(&mut self, name: &str, failure: String, host: &mut dyn Host) {
        let reason = vec!["die".into(), failure.into()].into();
        self.kill_port(name, reason, Death::Handler, host);
    }

    /// Whether the next message of a run goes to the default handler held out of its slot:
    /// no tag handler (added by the handler meanwhile) takes it. That the port and the
    /// slot are still there was checked right after the handler ran (nothing runs between).
    #[inline]
    fn still_default(&mut self, run: &Run, msg: &Msg) -> bool {
        self.ports.slot_mut(run.idx, run.uid).is_some_and(|s| {
            !s.port.has_tags() || matches!(s.port.route(msg.tag()), Some(port::Route::Default))
        })
    }

    /// Whether the port of a held default handler is still there with its default slot
    /// still waiting for the handler (nobody replaced or removed it).
    #[inline]
    fn default_running(&mut self, run: &Run) -> bool {
        self.ports
            .slot_mut(run.idx, run.uid)
            .is_some_and(|s| s.port.default.is_running())
    }

    /// Puts a held default handler back into its slot (if the port and the slot's
    /// `Running` state are still there; otherwise it is dropped).
    fn put_back(&mut self, run: Run) {
        match self.ports.slot_mut(run.idx, run.uid) {
            Some(s) => s.port.restore(&port::Route::Default, "", run.h),
            None => drop(run.h),
        }
    }

    /// Sends a message the kernel made or relays itself (monitor messages, replies of the
    /// node port, relayed `snd` requests), checked like every message that enters the node
    /// ([`Shared::check`]): a refused one is logged and dropped.
    pub(crate) fn snd_checked(&mut self, port: &PortId, msg: Msg, host: &mut dyn Host) {
        match self.shared.check(port.name(), &msg.0) {
            Ok(()) => self.snd(port, msg, host),
            Err(e) => {
                tracing::warn!(port = %port, error = %e, "message not sent");
                aemp_proto::value::drop_nested(msg);
            }
        }
    }

    /// Sends a message that was checked where it entered the node (see [`Shared::check`])
    /// to any port.
    #[inline]
    pub(crate) fn snd(&mut self, port: &PortId, msg: Msg, host: &mut dyn Host) {
        if port::short_eq(port.node(), self.id.as_str()) {
            host.postpone(Task::Deliver {
                port: Str::from(port.name()),
                msg,
                src: None,
            });
        } else {
            host.send_remote(port.node(), port.name(), msg);
        }
    }

    /// Kills any port; node ports are refused, and so is a reason that could not be sent to
    /// another node (see [`Shared::sendable_reason`]).
    pub(crate) fn kil(
        &mut self,
        port: &PortId,
        reason: Reason,
        host: &mut dyn Host,
    ) -> Result<(), Error> {
        if port.is_node_port() {
            return Err(Error::KillNodePort(port.to_string()));
        }
        let local = port.node() == self.id.as_str();
        let reason = self.shared.sendable_reason(port, reason)?;
        if local {
            self.kill_local(&Str::from(port.name()), reason, host);
        } else {
            let req = NodeReq::Kil1(Str::from(port.name()), reason.into_vec()).to_msg();
            host.send_remote(port.node(), "", req);
        }
        Ok(())
    }

    /// Kills a local port: removes it, fires its local monitors and notifies remote ones.
    ///
    /// A reason that the `kil0` notice to a remote monitor could not carry (nested too deep,
    /// too large) is replaced, for every monitor, by `("die", "kill reason refused: …")`:
    /// monitors still fire exactly once, and no peer gets a frame it refuses.
    pub(crate) fn kill_local(&mut self, name: &str, reason: Reason, host: &mut dyn Host) {
        self.kill_port(name, reason, Death::Kill, host)
    }

    /// [`Kernel::kill_local`], saying who killed the port: a death by its own handler is
    /// reported ([`Kernel::report_death`]).
    fn kill_port(&mut self, name: &str, reason: Reason, death: Death, host: &mut dyn Host) {
        let Some(mut port) = self.ports.remove(name) else {
            aemp_proto::value::drop_nested(reason);
            return;
        };
        let reason = if reason.is_empty() {
            reason
        } else {
            match self.shared.check_reason("kil0", name, reason) {
                (reason, Ok(())) => reason,
                (refused, Err(e)) => {
                    tracing::warn!(port = %name, error = %e, "kill reason refused");
                    aemp_proto::value::drop_nested(refused);
                    vec!["die".into(), format!("kill reason refused: {e}").into()].into()
                }
            }
        };
        let port::Watchers {
            monitors,
            remote: remote_monitors,
        } = port.take_watchers();
        match death {
            Death::Handler => self.report_death(name, &reason),
            Death::Kill => {
                if !reason.is_empty() && monitors.is_empty() && remote_monitors.is_empty() {
                    tracing::info!(port = %name, reason = %reason, "port killed");
                }
            }
        }
        for node in remote_monitors {
            let req = NodeReq::Kil0(Str::from(name), reason.to_vec()).to_msg();
            host.send_if_up(node.as_str(), "", req);
        }
        for (id, action) in monitors {
            self.mon_index.remove(&id);
            self.fire(action, reason.clone(), host);
        }
    }

    /// Reports a port killed by its own handler (it failed, panicked, or had no handler for a
    /// message), unless switched off (`Node::set_log_deaths`): a `tracing` WARN with the port
    /// and the reason when a subscriber is installed, otherwise one line on stderr, so that
    /// the failure is seen even by a program that set up no logging.
    fn report_death(&self, name: &str, reason: &Reason) {
        if !self.shared.log_deaths.load(Ordering::Relaxed) {
            return;
        }
        let port = self.id.port(name);
        if tracing_is_set() {
            tracing::warn!(port = %port, reason = %reason, "port killed by its handler");
        } else {
            eprintln!("aemp: port {port} killed by its handler: {reason}");
        }
    }

    /// Runs one monitor action.
    fn fire(&mut self, action: MonAction, reason: Reason, host: &mut dyn Host) {
        match action {
            Monitor::Callback(f) => {
                if let Err(panic) = catch_unwind(AssertUnwindSafe(|| f(reason))) {
                    tracing::warn!(error = %panic_text(&panic), "monitor callback panicked");
                }
            }
            Monitor::Kill(port) => {
                if !reason.is_empty() {
                    if port.node() == self.id.as_str() {
                        host.postpone(Task::Kill {
                            port: Str::from(port.name()),
                            reason,
                        });
                    } else if let Err(e) = self.kil(&port, reason, host) {
                        tracing::warn!(port = %port, error = %e, "monitor could not kill");
                    }
                }
            }
            Monitor::Send(port, mut msg) => {
                msg.0.extend(reason.into_vec());
                self.snd_checked(&port, msg, host);
            }
        }
    }

    /// Creates a port with handlers under a fresh name.
    pub(crate) fn create_port(
        &mut self,
        name: Str,
        default: Option<Handler>,
        tags: Vec<(Str, Handler)>,
    ) {
        let mut p = Port::default();
        p.set_handler(None, default);
        for (t, h) in tags {
            p.set_handler(Some(&t), Some(h));
        }
        self.ports.insert(name, p);
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
    pub(crate) fn mon(&mut self, port: &PortId, id: u64, action: MonAction, host: &mut dyn Host) {
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
                    self.mon_index
                        .insert(id, MonTarget::Pending(no_such_port(port)));
                    self.pending_fires.insert(id, action);
                    host.postpone(Task::FirePending(id));
                }
            }
        } else {
            if let Err(e) = self.shared.check_mon(port) {
                // Nothing goes on the wire: the monitor fires at once, naming the cause.
                tracing::warn!(port = %port, error = %e, "monitor refused");
                let reason =
                    Reason::from(vec!["die".into(), format!("monitor refused: {e}").into()]);
                self.mon_index.insert(id, MonTarget::Pending(reason));
                self.pending_fires.insert(id, action);
                host.postpone(Task::FirePending(id));
                return;
            }
            let (node, name) = (port.node(), port.name());
            self.mon_index
                .insert(id, MonTarget::Remote(Str::from(node), Str::from(name)));
            let first = self.remote_mons.add(node, name, id, action);
            if name.is_empty() {
                // Monitoring a node sends nothing and starts no connection (docs/protocol.md §5); it fires
                // only on connection loss.
                return;
            }
            if first {
                host.send_remote(node, "", NodeReq::Mon1(Str::from(name)).to_msg());
            }
        }
    }

    /// Cancels a monitor (its guard was dropped).
    pub(crate) fn unmon(&mut self, id: u64, host: &mut dyn Host) {
        match self.mon_index.remove(&id) {
            Some(MonTarget::Local(name)) => {
                if let Some(w) = self.ports.get_mut(&name).and_then(|p| p.watchers_mut()) {
                    w.monitors.retain(|(i, _)| *i != id);
                }
            }
            Some(MonTarget::Remote(node, name)) => {
                if let Some((_, last)) = self.remote_mons.remove(&node, &name, id) {
                    if last && !name.is_empty() {
                        host.send_remote(&node, "", NodeReq::Mon0(name).to_msg());
                    }
                }
            }
            Some(MonTarget::Pending(_)) => {
                self.pending_fires.remove(&id);
            }
            None => self.self_node_mons.retain(|(i, _)| *i != id),
        }
    }

    /// A node is lost: every monitor of it and its ports fires with `("transport_error",
    /// node, text)`, and its monitors of our ports are forgotten (it re-sends `mon1` when it
    /// monitors again over a new connection).
    pub(crate) fn node_lost(&mut self, node: &str, text: &str, host: &mut dyn Host) {
        let reason = Reason::from(vec!["transport_error".into(), node.into(), text.into()]);
        for (id, action) in self.remote_mons.take_node(node) {
            self.mon_index.remove(&id);
            self.fire(action, reason.clone(), host);
        }
        for w in self.ports.ports_mut().filter_map(|p| p.watchers_mut()) {
            w.remote.retain(|n| n.as_str() != node);
        }
    }

    /// A remote node told us (`kil0`) that one of its ports we monitor died.
    fn remote_port_died(&mut self, node: &str, name: &str, reason: Reason, host: &mut dyn Host) {
        for (id, action) in self.remote_mons.take_port(node, name) {
            self.mon_index.remove(&id);
            self.fire(action, reason.clone(), host);
        }
    }

    /// A remote node wants to monitor (`mon1`) one of our ports.
    fn add_remote_monitor(&mut self, node: &NodeId, name: &str, host: &mut dyn Host) {
        match self.ports.get_mut(name) {
            Some(p) => {
                let w = p.watchers();
                if !w.remote.contains(node) {
                    w.remote.push(node.clone());
                }
            }
            None => {
                let reason = no_such_port(&self.id.port(name));
                let req = NodeReq::Kil0(Str::from(name), reason.into_vec()).to_msg();
                host.send_remote(node.as_str(), "", req);
            }
        }
    }

    /// A remote node no longer monitors (`mon0`) one of our ports.
    fn remove_remote_monitor(&mut self, node: &str, name: &str) {
        if let Some(w) = self.ports.get_mut(name).and_then(|p| p.watchers_mut()) {
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
        host: &mut dyn Host,
    ) {
        let f = self.shared.registry.read().get(func);
        let Some(f) = f else {
            tracing::warn!(function = func, "unable to resolve function");
            self.kill_port(
                name,
                vec![
                    "die".into(),
                    format!("unable to resolve function '{func}'").into(),
                ]
                .into(),
                Death::Handler,
                host,
            );
            return;
        };
        let result = {
            let mut cx = Cx {
                k: self,
                host: &mut *host,
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
        let reason: Reason = vec!["die".into(), failure.into()].into();
        if name.is_empty() {
            // A function called on the node port: no port dies, but its failure is reported
            // like a handler's, so that it is not silent.
            self.report_function_failure(func, src, &reason);
            return;
        }
        self.kill_port(name, reason, Death::Handler, host);
    }

    /// Reports a function run on the node port (a request `[function, args...]`) that failed
    /// or panicked, under the same switch and in the same way as [`Kernel::report_death`].
    fn report_function_failure(&self, func: &str, src: Option<&NodeId>, reason: &Reason) {
        if !self.shared.log_deaths.load(Ordering::Relaxed) {
            return;
        }
        let from = src.unwrap_or(&self.id);
        if tracing_is_set() {
            tracing::warn!(function = func, src = %from, reason = %reason, "node-port function failed");
        } else {
            eprintln!("aemp: function {func} (called by {from}) failed: {reason}");
        }
    }

    /// The node shuts down: every monitor this node holds (on its own ports, on other nodes
    /// and their ports) fires once, in the order they were registered, with
    /// [`Reason::shutdown`] (a queued `no_such_port` firing keeps its own reason); then every
    /// port is dropped. Peers are not told (no `kil0`): they see the connection close.
    pub(crate) fn shutdown(&mut self, host: &mut dyn Host) {
        let reason = Reason::shutdown(self.id.as_str());
        let mut fire: Vec<(u64, MonAction, Option<Reason>)> = Vec::new();
        for w in self.ports.ports_mut().filter_map(|p| p.watchers_mut()) {
            fire.extend(w.monitors.drain(..).map(|(id, a)| (id, a, None)));
            w.remote.clear();
        }
        for (_, ports) in self.remote_mons.by_node.drain() {
            fire.extend(ports.into_values().flatten().map(|(id, a)| (id, a, None)));
        }
        fire.extend(self.self_node_mons.drain(..).map(|(id, a)| (id, a, None)));
        for (id, action) in self.pending_fires.drain() {
            let own = match self.mon_index.get(&id) {
                Some(MonTarget::Pending(r)) => Some(r.clone()),
                _ => None,
            };
            fire.push((id, action, own));
        }
        self.mon_index.clear();
        fire.sort_by_key(|(id, ..)| *id);
        for (_, action, own) in fire {
            self.fire(action, own.unwrap_or_else(|| reason.clone()), host);
        }
        self.ports.clear();
    }
}

/// Who killed a port.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Death {
    /// `kil` (of this node, a handler, a monitor, or a peer's `kil1`).
    Kill,
    /// Its own handler: it failed, panicked, or had none for the message.
    Handler,
}

/// Whether a `tracing` subscriber takes this thread's events (the global one, or one set as
/// this thread's default).
pub(crate) fn tracing_is_set() -> bool {
    tracing::dispatcher::get_default(|d| !d.is::<tracing::subscriber::NoSubscriber>())
}

/// The reason given when monitoring a port that does not exist.
pub(crate) fn no_such_port(port: &PortId) -> Reason {
    Reason::from(vec![
        "no_such_port".into(),
        "cannot monitor nonexistent port".into(),
        port.as_str().into(),
    ])
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

#[cfg(test)]
mod tests;

/// The trace line of a message delivered to port `name` of node `me` (`src`: the node it
/// came from, `None` for a local send).
#[cold]
#[inline(never)]
fn trace_delivery(me: &NodeId, name: &str, msg: &Msg, src: Option<&NodeId>) {
    use aemp_proto::trace::{bounded_display, TRACE_MAX_CHARS};
    let text = bounded_display(msg, TRACE_MAX_CHARS);
    let sep = if name.is_empty() { "" } else { "#" };
    match src {
        Some(src) => {
            tracing::info!(target: "aemp::trace", "rcv {me}{sep}{name} from {src}: {text}")
        }
        None => tracing::info!(target: "aemp::trace", "rcv {me}{sep}{name} (local): {text}"),
    }
}

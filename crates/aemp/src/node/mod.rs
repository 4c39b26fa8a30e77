//! The public node handle: every user-facing operation of API.md.
//!
//! A [`Node`] is a cheap, clonable handle. Operations on it are queued to the node's
//! dispatcher (see [`crate::kernel`]) and return at once; none of them blocks on the network.

mod cal;
mod inbox;
mod network;
mod timer;

pub use cal::Cal;
pub use inbox::{Inbox, InboxClosed};
pub use network::PeerStats;
pub use timer::TimerGuard;

use crate::error::{Error, HandlerResult};
use crate::kernel::context::Cx;
use crate::kernel::monitor::{Monitor, Reason};
use crate::kernel::port::Handler;
use crate::kernel::registry::NamedFn;
use crate::kernel::{self, Cmd, Core, Kernel};
use aemp_proto::ids::{self, PortNamer};
use aemp_proto::{Msg, NodeId, PortId, Str, Value};
use std::future::Future;
use std::sync::{Arc, Weak};

/// Owner of a node's core; when the last [`Node`] handle goes, the dispatcher stops.
pub(crate) struct NodeInner {
    pub(crate) core: Arc<Core>,
    pub(crate) net: std::sync::OnceLock<Arc<crate::transport::Network>>,
}

impl Drop for NodeInner {
    fn drop(&mut self) {
        self.core.close();
        if let Some(net) = self.net.get() {
            net.shutdown();
        }
    }
}

/// How long a node's dispatcher busy-polls for more work before it sleeps, unless
/// [`Node::set_spin`] says otherwise. Erlang's schedulers busy-wait by default for the same
/// reason: on virtual machines waking a sleeping CPU costs tens of microseconds per message
/// exchange (`aemp-bench` R2 p50 about 100 us without, 14 us with; R3 about 2.5x the rate).
/// At most this much CPU time is spent after each burst of work.
pub const DEFAULT_SPIN: std::time::Duration = std::time::Duration::from_micros(200);

/// A node: one participant in the network, owner of ports.
///
/// Several nodes can live in one process (tests run whole networks that way). A node must be
/// created inside a tokio runtime; it runs one dispatcher task that executes all handlers of
/// its ports, one at a time.
#[derive(Clone)]
pub struct Node {
    inner: Arc<NodeInner>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Node({})", self.inner.core.id)
    }
}

impl Node {
    /// Creates a local node (no network) with the given node ID pattern (`%n`, `%u` and a
    /// trailing `/` are expanded, see PROTOCOL.md §8.3).
    ///
    /// Must be called within a tokio runtime.
    pub fn new(nodeid: &str) -> Result<Node, Error> {
        let runiq = ids::new_runiq();
        let expanded = ids::expand_node_id(nodeid, &crate::config::nodename(), &runiq)?;
        let prefix = crate::config::port_prefix(expanded.randomised);
        Ok(Node::start_local(
            expanded.id,
            PortNamer::new(&prefix, &runiq),
        ))
    }

    pub(crate) fn start(id: NodeId, namer: PortNamer) -> Node {
        let core = Arc::new(Core::new(id, namer));
        let inner = Arc::new(NodeInner::new(core.clone()));
        let k = Kernel::new(core, Arc::downgrade(&inner));
        tokio::spawn(kernel::run(k));
        Node { inner }
    }

    /// Creates a local node and makes it its own global node, so that the database works
    /// inside it.
    fn start_local(id: NodeId, namer: PortNamer) -> Node {
        let node = Node::start(id, namer);
        node.exec(|k| k.become_global());
        node
    }

    /// Used by the kernel to hand out handles; the dispatcher only runs while one exists.
    pub(crate) fn from_inner(inner: Option<Arc<NodeInner>>, id: &NodeId) -> Node {
        match inner {
            Some(inner) => Node { inner },
            None => {
                // The node is being torn down; give a handle that refuses everything.
                let core = Arc::new(Core::new(id.clone(), PortNamer::new("", "closed")));
                core.close();
                Node {
                    inner: Arc::new(NodeInner::new(core)),
                }
            }
        }
    }

    pub(crate) fn core(&self) -> &Arc<Core> {
        &self.inner.core
    }

    pub(crate) fn weak_core(&self) -> Weak<Core> {
        Arc::downgrade(&self.inner.core)
    }

    /// Runs a closure on the dispatcher with the kernel.
    pub(crate) fn exec(&self, f: impl FnOnce(&mut Kernel) + Send + 'static) {
        let core = &self.inner.core;
        core.pending_execs
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        core.push(Cmd::Exec(Box::new(move |k: &mut Kernel| {
            // Decrements even if `f` panics (the kernel contains the panic).
            struct Done<'a>(&'a std::sync::atomic::AtomicUsize);
            impl Drop for Done<'_> {
                fn drop(&mut self) {
                    self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
                }
            }
            let core = k.core.clone();
            let _done = Done(&core.pending_execs);
            f(k);
        })));
    }

    /// This node's ID.
    pub fn id(&self) -> &NodeId {
        &self.inner.core.id
    }

    /// The node port of this node.
    pub fn node_port(&self) -> PortId {
        self.id().node_port()
    }

    /// True once the node was shut down.
    pub fn is_shut_down(&self) -> bool {
        self.inner.core.is_closed()
    }

    /// Lets the dispatcher busy-poll for up to `d` before it goes to sleep when it runs out of
    /// work (default [`DEFAULT_SPIN`]; zero never polls). Costs CPU for that long after each
    /// burst of work; saves the latency of waking an idle CPU (tens of microseconds on some
    /// virtual machines) for the next message, like the busy wait of Erlang's schedulers.
    /// The poll yields the thread to other runnable threads and processes at every turn.
    /// Most useful with a current-thread runtime, where the polling also drives the node's
    /// sockets.
    pub fn set_spin(&self, d: std::time::Duration) {
        self.inner.core.spin_nanos.store(
            d.as_nanos().min(u64::MAX as u128) as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Stops the dispatcher and drops every port, stops listening and closes every
    /// connection. Handles stay valid but do nothing.
    pub fn shutdown(&self) {
        self.inner.core.close();
        if let Some(net) = self.inner.net.get() {
            net.shutdown();
        }
    }

    fn local_name<'a>(&self, port: &'a PortId) -> Result<&'a str, Error> {
        if port.node() != self.id().as_str() || port.is_node_port() {
            return Err(Error::NotLocal(port.to_string()));
        }
        Ok(port.name())
    }

    // ---- ports -------------------------------------------------------------------------

    /// Starts building a port: `node.port().on("tag", h).default(h).build()`.
    pub fn port(&self) -> PortBuilder<'_> {
        PortBuilder {
            node: self,
            default: None,
            tags: Vec::new(),
        }
    }

    /// Creates a port with a default handler that gets every message (tag included).
    pub fn port_with(
        &self,
        h: impl FnMut(&mut Cx<'_>, Msg) -> HandlerResult + Send + 'static,
    ) -> PortId {
        self.port().default(h).build()
    }

    /// Sets the default handler of a local port (creating the port if it does not exist).
    pub fn rcv_default(
        &self,
        port: &PortId,
        h: impl FnMut(&mut Cx<'_>, Msg) -> HandlerResult + Send + 'static,
    ) -> Result<(), Error> {
        self.rcv_boxed(port, None, Some(Box::new(h)))
    }

    /// Sets the handler for messages tagged `tag` on a local port; the tag is removed before
    /// the handler sees the message.
    pub fn rcv(
        &self,
        port: &PortId,
        tag: &str,
        h: impl FnMut(&mut Cx<'_>, Msg) -> HandlerResult + Send + 'static,
    ) -> Result<(), Error> {
        self.rcv_boxed(port, Some(tag), Some(Box::new(h)))
    }

    /// Removes the handler for `tag` (or the default handler when `tag` is `None`).
    pub fn unrcv(&self, port: &PortId, tag: Option<&str>) -> Result<(), Error> {
        self.rcv_boxed(port, tag, None)
    }

    fn rcv_boxed(&self, port: &PortId, tag: Option<&str>, h: Option<Handler>) -> Result<(), Error> {
        let name = Str::from(self.local_name(port)?);
        let tag = tag.map(Str::from);
        self.exec(move |k| k.rcv_local(&name, tag.as_deref(), h));
        Ok(())
    }

    /// Sends a message to any port, local or remote. Returns at once. A message to a port
    /// that does not exist is dropped silently; monitors are the failure signal.
    pub fn snd(&self, port: &PortId, msg: impl Into<Msg>) -> Result<(), Error> {
        let mut msg = msg.into();
        if msg.is_empty() {
            return Err(Error::EmptyMessage);
        }
        if port.node() == self.id().as_str() {
            self.inner.core.push(Cmd::Deliver {
                port: Str::from(port.name()),
                msg,
                src: None,
            });
        } else {
            // Fast path: a node that is up gets the frame encoded straight into its
            // connection's write buffer, without a trip through the dispatcher. Only when no
            // command of a handle is still waiting in the kernel (one might be an earlier
            // message of this very sender, which must go first).
            if self
                .inner
                .core
                .pending_execs
                .load(std::sync::atomic::Ordering::Acquire)
                == 0
            {
                if let Some(net) = self.net() {
                    match net.send_if_up(port, msg) {
                        Ok(()) => return Ok(()),
                        Err(m) => msg = m,
                    }
                }
            }
            let port = port.clone();
            self.exec(move |k| k.snd(&port, msg));
        }
        Ok(())
    }

    /// Sends a batch of messages to one local or remote port with a single queue operation.
    pub fn snd_many(
        &self,
        port: &PortId,
        msgs: impl IntoIterator<Item = Msg>,
    ) -> Result<(), Error> {
        if port.node() == self.id().as_str() {
            let name = Str::from(port.name());
            self.inner
                .core
                .push_many(
                    msgs.into_iter()
                        .filter(|m| !m.is_empty())
                        .map(|msg| Cmd::Deliver {
                            port: name.clone(),
                            msg,
                            src: None,
                        }),
                );
        } else {
            let port = port.clone();
            let msgs: Vec<Msg> = msgs.into_iter().filter(|m| !m.is_empty()).collect();
            self.exec(move |k| {
                for m in msgs {
                    k.snd(&port, m)
                }
            });
        }
        Ok(())
    }

    /// Sends a typed message (a tuple or struct, see [`aemp_proto::typed::to_msg`]).
    pub fn snd_typed<T: serde::Serialize + ?Sized>(
        &self,
        port: &PortId,
        msg: &T,
    ) -> Result<(), Error> {
        let msg = aemp_proto::typed::to_msg(msg)?;
        self.snd(port, msg)
    }

    /// Calls a function registered on `node` by name with `args` (Perl's `snd_to_func`).
    pub fn snd_to_func(&self, node: &NodeId, func: &str, args: Vec<Value>) -> Result<(), Error> {
        let mut msg = Msg::with_capacity(1 + args.len());
        msg.push(func);
        msg.0.extend(args);
        self.snd(&node.node_port(), msg)
    }

    /// Kills a port with a reason (empty = normal kill). Killing a port that does not exist is
    /// fine; killing a node port is an error.
    pub fn kil(&self, port: &PortId, reason: Reason) -> Result<(), Error> {
        if port.is_node_port() {
            return Err(Error::KillNodePort(port.to_string()));
        }
        if port.node() == self.id().as_str() {
            self.inner.core.push(Cmd::Kill {
                port: Str::from(port.name()),
                reason,
            });
        } else {
            let port = port.clone();
            self.exec(move |k| {
                let _ = k.kil(&port, reason);
            });
        }
        Ok(())
    }

    // ---- monitors ----------------------------------------------------------------------

    /// Watches a port (local or remote) or a node (pass its node port). The monitor fires once
    /// with the kill reason; at once with `no_such_port` when the port does not exist; with
    /// `("transport_error", node, text)` when the connection to its node is lost.
    ///
    /// Dropping the returned guard cancels the monitor; [`MonGuard::keep`] keeps it forever.
    pub fn mon(&self, port: &PortId, action: Monitor) -> MonGuard {
        let id = self.inner.core.next_guard();
        let port = port.clone();
        self.exec(move |k| k.mon(&port, id, action));
        MonGuard::new(self.weak_core(), id)
    }

    /// Monitors a port and calls `f` with the reason.
    pub fn mon_cb(&self, port: &PortId, f: impl FnOnce(Reason) + Send + 'static) -> MonGuard {
        self.mon(port, Monitor::callback(f))
    }

    /// A future that resolves with the kill reason of `port` (an async `mon`).
    pub fn monitor(&self, port: &PortId) -> impl Future<Output = Reason> + Send + 'static {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let guard = self.mon_cb(port, move |reason| {
            let _ = tx.send(reason);
        });
        async move {
            let r = rx.await.unwrap_or_else(|_| vec!["node_shutdown".into()]);
            drop(guard);
            r
        }
    }

    /// Keeps `value` alive until `port` dies (Perl's `mon_guard`).
    pub fn mon_guard(&self, port: &PortId, value: impl Send + 'static) {
        self.mon_cb(port, move |_| drop(value)).keep();
    }

    // ---- context -----------------------------------------------------------------------

    /// Runs `f` in the context of `port`: an error or panic kills the port with
    /// `("die", text)` (Perl's `peval`). Returns `f`'s value when it succeeded.
    pub fn peval<T, E: std::fmt::Display>(
        &self,
        port: &PortId,
        f: impl FnOnce(&PortId) -> Result<T, E>,
    ) -> Option<T> {
        let text = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(port))) {
            Ok(Ok(v)) => return Some(v),
            Ok(Err(e)) => e.to_string(),
            Err(panic) => kernel::panic_text(&panic),
        };
        let _ = self.kil(port, vec!["die".into(), text.into()]);
        None
    }

    /// Wraps a closure so that each call runs in the context of `port` (Perl's `psub`).
    pub fn psub<A, T, E: std::fmt::Display>(
        &self,
        port: &PortId,
        mut f: impl FnMut(A) -> Result<T, E>,
    ) -> impl FnMut(A) -> Option<T> {
        let node = self.clone();
        let port = port.clone();
        move |a| node.peval(&port, |_| f(a))
    }

    /// Spawns a future in the context of `port`: if it returns an error or panics, the port is
    /// killed with `("die", text)`; if the port dies first, the future is dropped.
    pub fn pspawn<E: std::fmt::Display + Send + 'static>(
        &self,
        port: &PortId,
        fut: impl Future<Output = Result<(), E>> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let node = self.clone();
        let port2 = port.clone();
        let died = self.monitor(port);
        tokio::spawn(async move {
            use futures_util_lite::catch_unwind_future;
            tokio::select! {
                r = catch_unwind_future(fut) => {
                    let text = match r {
                        Ok(Ok(())) => return,
                        Ok(Err(e)) => e.to_string(),
                        Err(panic) => kernel::panic_text(&panic),
                    };
                    let _ = node.kil(&port2, vec!["die".into(), text.into()]);
                }
                _ = died => {}
            }
        })
    }

    // ---- spawn -------------------------------------------------------------------------

    /// Registers a named function, usable as a spawn init function and by `snd_to_func`.
    /// The function runs in the context of the (new) port and must install its handlers.
    pub fn register(
        &self,
        name: &str,
        f: impl Fn(&mut Cx<'_>, Vec<Value>) -> HandlerResult + Send + Sync + 'static,
    ) {
        let f: NamedFn = Arc::new(f);
        self.inner.core.registry.write().insert(name, f);
    }

    /// Creates a port on `node` and runs the init function registered there under `init` in
    /// its context, with `args`. Returns the new port's ID at once. On the local node the init
    /// function never runs before this returns: it waits behind a gate that `spawn` opens as
    /// its last step (on a multi-threaded runtime it may then run at once, on another worker).
    pub fn spawn(&self, node: &NodeId, init: &str, args: Vec<Value>) -> Result<PortId, Error> {
        let name = self.inner.core.namer.next_spawn();
        let port = node.port(&name);
        if node == self.id() {
            // The dispatcher may run on another thread: the init function waits behind a gate
            // that opens only when this call returns.
            let gate = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let init = Str::from(init);
            spawn_when_open(self.core(), gate.clone(), name, init, args);
            gate.store(true, std::sync::atomic::Ordering::Release);
            return Ok(port);
        }
        let mut req = Msg::with_capacity(3 + args.len());
        req.push(aemp_proto::node_req::SPAWN_FUNC);
        req.push(name);
        req.push(init);
        req.0.extend(args);
        self.snd(&node.node_port(), req)?;
        Ok(port)
    }

    // ---- cal, after, inbox -------------------------------------------------------------

    /// Sends `msg` with a fresh reply port appended and waits for the first reply. Await the
    /// returned [`Cal`] (optionally after `.timeout(d)`), or use [`Cal::then`] for a callback.
    pub fn cal(&self, port: &PortId, msg: impl Into<Msg>) -> Cal {
        Cal::new(self.clone(), port.clone(), msg.into())
    }

    /// Sends `msg` to `port` after `delay`. Dropping the guard cancels it;
    /// [`TimerGuard::keep`] lets it run.
    pub fn after_snd(
        &self,
        delay: std::time::Duration,
        port: &PortId,
        msg: impl Into<Msg>,
    ) -> TimerGuard {
        let node = self.clone();
        let port = port.clone();
        let msg = msg.into();
        timer::after(delay, move || {
            let _ = node.snd(&port, msg);
        })
    }

    /// Runs `f` after `delay`. Dropping the guard cancels it.
    pub fn after(
        &self,
        delay: std::time::Duration,
        f: impl FnOnce() + Send + 'static,
    ) -> TimerGuard {
        timer::after(delay, f)
    }

    /// Creates a port whose messages are awaited one at a time. `capacity` bounds the queue:
    /// a message that finds it full kills the port with `("inbox_overflow", capacity)`, so
    /// monitors see it; messages already queued can still be received.
    pub fn inbox(&self, capacity: usize) -> Inbox {
        Inbox::new(self, capacity)
    }

    /// Number of live local ports (for tests and statistics); asks the dispatcher.
    pub async fn port_count(&self) -> usize {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.exec(move |k| {
            let _ = tx.send(k.port_count());
        });
        rx.await.unwrap_or(0)
    }

    /// Whether a local port exists; asks the dispatcher.
    pub async fn port_exists(&self, port: &PortId) -> bool {
        let Ok(name) = self.local_name(port) else {
            return false;
        };
        let name = Str::from(name);
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.exec(move |k| {
            let _ = tx.send(k.port_exists(&name));
        });
        rx.await.unwrap_or(false)
    }
}

/// Queues a local spawn that runs only once `gate` is open (re-queued until then).
fn spawn_when_open(
    core: &Core,
    gate: Arc<std::sync::atomic::AtomicBool>,
    name: Str,
    init: Str,
    args: Vec<Value>,
) {
    core.push(Cmd::Exec(Box::new(move |k: &mut Kernel| {
        if gate.load(std::sync::atomic::Ordering::Acquire) {
            k.run_named(&name, &init, args, None);
        } else {
            let core = k.core.clone();
            spawn_when_open(&core, gate, name, init, args);
        }
    })));
}

/// Builder for a port with handlers, returned by [`Node::port`].
#[must_use = "a port builder does nothing until .build()"]
pub struct PortBuilder<'n> {
    node: &'n Node,
    default: Option<Handler>,
    tags: Vec<(Str, Handler)>,
}

impl PortBuilder<'_> {
    /// Handler for messages tagged `tag` (the tag is removed before the handler sees them).
    pub fn on(
        mut self,
        tag: &str,
        h: impl FnMut(&mut Cx<'_>, Msg) -> HandlerResult + Send + 'static,
    ) -> Self {
        self.tags.push((Str::from(tag), Box::new(h)));
        self
    }

    /// Handler for every message no tag handler takes (tag included).
    pub fn default(
        mut self,
        h: impl FnMut(&mut Cx<'_>, Msg) -> HandlerResult + Send + 'static,
    ) -> Self {
        self.default = Some(Box::new(h));
        self
    }

    /// Creates the port and returns its ID. A port without any handler is killed with
    /// `unhandled_message` by its first message.
    pub fn build(self) -> PortId {
        let core = self.node.core();
        let name = core.namer.next_local();
        let id = core.id.port(&name);
        let PortBuilder { default, tags, .. } = self;
        core.push(Cmd::Exec(Box::new(move |k: &mut Kernel| {
            k.create_port(name, default, tags);
        })));
        id
    }
}

impl Kernel {
    pub(crate) fn create_port(
        &mut self,
        name: Str,
        default: Option<Handler>,
        tags: Vec<(Str, Handler)>,
    ) {
        let mut p = crate::kernel::port::Port::default();
        p.set_handler(None, default);
        for (t, h) in tags {
            p.set_handler(Some(&t), Some(h));
        }
        self.insert_port(name, p);
    }
}

/// Cancels a monitor when dropped.
#[must_use = "dropping a MonGuard cancels the monitor at once; call .keep() to keep it"]
pub struct MonGuard {
    core: Weak<Core>,
    id: u64,
}

impl MonGuard {
    pub(crate) fn new(core: Weak<Core>, id: u64) -> MonGuard {
        MonGuard { core, id }
    }

    /// Keeps the monitor for as long as it has not fired (forgets the guard).
    pub fn keep(mut self) {
        self.core = Weak::new();
    }
}

impl Drop for MonGuard {
    fn drop(&mut self) {
        if let Some(core) = self.core.upgrade() {
            let id = self.id;
            core.push(Cmd::Exec(Box::new(move |k: &mut Kernel| k.unmon(id))));
        }
    }
}

impl std::fmt::Debug for MonGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MonGuard({})", self.id)
    }
}

/// A tiny `catch_unwind` for futures, so that a panicking port future kills its port instead
/// of only its task.
mod futures_util_lite {
    use std::any::Any;
    use std::future::Future;
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::pin::Pin;
    use std::task::{Context, Poll};

    pub(crate) struct CatchUnwind<F>(Pin<Box<F>>);

    pub(crate) fn catch_unwind_future<F: Future>(f: F) -> CatchUnwind<F> {
        CatchUnwind(Box::pin(f))
    }

    impl<F: Future> Future for CatchUnwind<F> {
        type Output = Result<F::Output, Box<dyn Any + Send>>;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            let inner = self.0.as_mut();
            match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
                Ok(Poll::Pending) => Poll::Pending,
                Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
                Err(e) => Poll::Ready(Err(e)),
            }
        }
    }
}

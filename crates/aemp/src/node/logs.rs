//! The log catcher on a node (see [`crate::log_catcher`]): the `connect` function that makes
//! a node forward its log records, and [`Node::catch_logs`], which catches those of the
//! other nodes.

use super::{DbWatch, Node};
use crate::error::Error;
use crate::kernel::monitor::{MonGuard, Monitor, Reason};
use crate::log_catcher::{self as lc, unix_now, LogRecord, Sink, CATCH_QUEUE};
use aemp_proto::log_catch::{ConnectRequest, LogEntry, CONNECT_FUNCTION};
use aemp_proto::{Msg, NodeId, PortId};
use rustc_hash::{FxHashMap, FxHashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::mpsc;

/// How long a catcher waits before it subscribes again to a node whose subscription port
/// died while the node is still in `'l` (the connection was lost, say). The reference
/// subscribes again at once; the pause keeps a node that fails at once from causing a loop.
const RESUBSCRIBE_AFTER: Duration = Duration::from_secs(1);

impl Node {
    /// Installs the `AnyEvent::MP::LogCatcher::connect` function (at node start).
    pub(crate) fn register_log_catcher(&self) {
        let node = Arc::downgrade(&self.inner);
        let sink = Sink::new(
            self.owner(),
            Box::new(move |out| {
                if let Some(inner) = node.upgrade() {
                    send_all(&Node { inner }, out);
                }
            }),
        );
        self.register(CONNECT_FUNCTION, move |cx, args| {
            let req = match ConnectRequest::parse(&args) {
                Ok(r) => r,
                Err(e) => {
                    // Logged here with the catcher's own wording; the request is dropped
                    // (a returned error would be logged as a failed node-port function).
                    tracing::warn!(src = %cx.src_node(), error = %e, "log catcher: connect request refused");
                    return Ok(());
                }
            };
            sink.subscribe(req.port.clone(), req.level);
            let (sink, port) = (sink.clone(), req.port.clone());
            // Ends the subscription when the port dies (at once if it is dead already; a lost
            // connection to its node counts as its death).
            cx.mon(
                &req.port,
                Monitor::callback(move |_reason| sink.unsubscribe(&port)),
            )
            .keep();
            tracing::debug!(port = %req.port, level = req.level, "log catcher: forwarding log records");
            Ok(())
        });
    }

    /// This node as the owner of its log catcher sink.
    fn owner(&self) -> Weak<dyn std::any::Any + Send + Sync> {
        let w: Weak<super::NodeInner> = Arc::downgrade(&self.inner);
        w
    }

    /// The number of ports this node forwards its log records to (catchers subscribed with
    /// `AnyEvent::MP::LogCatcher::connect`, see [`crate::log_catcher`]). Each catcher uses one
    /// port per node, so this is the number of catchers of this node's logs.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), aemp::Error> {
    /// let node = aemp::Node::new("subs-doc/%u")?;
    /// assert_eq!(node.log_subscribers(), 0);
    /// # Ok(()) }
    /// ```
    pub fn log_subscribers(&self) -> usize {
        lc::sink_of(&self.owner()).map_or(0, |s| s.subscribers())
    }

    /// Catches the log records of every other node of the network whose level is at most
    /// `level` (AnyEvent::Log's levels, 1 fatal ... 9 trace; see [`crate::log_catcher`];
    /// above 9 counts as 9), as the reference's `AnyEvent::MP::LogCatcher::catch` does:
    /// watches `'l` and subscribes to each node in it but this one, including nodes that
    /// join later; a node that leaves `'l` is dropped, one that lost its subscription
    /// otherwise (a broken connection) is subscribed to again after a second.
    ///
    /// The records come out of the returned [`LogCatch`]. Dropping it ends the
    /// subscriptions on every node.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), aemp::Error> {
    /// let node = aemp::Node::new("catch-doc/%u")?;
    /// let mut catch = node.catch_logs(aemp::log_catcher::WARN)?;
    /// # drop(catch); let mut catch = node.catch_logs(aemp::log_catcher::WARN)?;
    /// # if false {
    /// while let Some(record) = catch.next().await {
    ///     println!("{record}"); // <time> <node> <level> <target>: <message>
    /// }
    /// # }
    /// # Ok(()) }
    /// ```
    pub fn catch_logs(&self, level: u8) -> Result<LogCatch, Error> {
        self.catch(level, None)
    }

    /// [`Node::catch_logs`] for one node only (while it is in `'l`). Catching this node
    /// itself yields nothing (records are never looped back).
    pub fn catch_logs_from(&self, node: &NodeId, level: u8) -> Result<LogCatch, Error> {
        self.catch(level, Some(node.clone()))
    }

    fn catch(&self, level: u8, only: Option<NodeId>) -> Result<LogCatch, Error> {
        self.check_open()?;
        let level = level.min(lc::TRACE);
        let watch = self.db_mon("'l")?;
        let (tx, rx) = mpsc::channel(CATCH_QUEUE);
        let shared = Arc::new(CatchShared::default());
        let driver = tokio::spawn(drive(self.clone(), level, only, watch, tx, shared.clone()));
        Ok(LogCatch {
            rx,
            shared,
            driver,
            node: self.clone(),
            level,
        })
    }
}

/// Sends the messages, one batch per port, each port's in order.
fn send_all(node: &Node, out: Vec<(PortId, Msg)>) {
    let mut batches: Vec<(PortId, Vec<Msg>)> = Vec::new();
    for (port, msg) in out {
        match batches.iter_mut().find(|(p, _)| *p == port) {
            Some((_, msgs)) => msgs.push(msg),
            None => batches.push((port, vec![msg])),
        }
    }
    for (port, msgs) in batches {
        // Fails only once the node is shut down (records are small, flat messages), and
        // then its subscriptions are ending anyway.
        let _ = node.snd_many(&port, msgs);
    }
}

/// The state a [`LogCatch`] shares with its driver task and ports.
#[derive(Default)]
struct CatchShared {
    subs: parking_lot::Mutex<CatchSubs>,
    /// Records dropped because the reader's queue was full, not reported yet.
    missed: AtomicU64,
}

#[derive(Default)]
struct CatchSubs {
    closed: bool,
    /// Per node: the subscription port and the monitors that watch it and its node.
    by_node: FxHashMap<NodeId, (PortId, [MonGuard; 2])>,
}

impl CatchShared {
    /// Records a new subscription; false once the catch is closed.
    fn insert(&self, node: NodeId, port: PortId, guards: [MonGuard; 2]) -> bool {
        let mut s = self.subs.lock();
        if s.closed {
            return false;
        }
        s.by_node.insert(node, (port, guards));
        true
    }

    /// Forgets `node`'s subscription if it is still through `port`; true if it was.
    fn forget(&self, node: &NodeId, port: &PortId) -> bool {
        let mut s = self.subs.lock();
        if s.by_node.get(node).is_some_and(|(p, _)| p == port) {
            s.by_node.remove(node);
            return true;
        }
        false
    }

    fn remove(&self, node: &NodeId) -> Option<PortId> {
        self.subs.lock().by_node.remove(node).map(|(p, _)| p)
    }

    fn has(&self, node: &NodeId) -> bool {
        self.subs.lock().by_node.contains_key(node)
    }

    fn deliver(&self, tx: &mpsc::Sender<LogRecord>, r: LogRecord) {
        if let Err(mpsc::error::TrySendError::Full(_)) = tx.try_send(r) {
            self.missed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

enum Ctl {
    /// A subscription port died.
    Died(NodeId, PortId, Reason),
    /// Time to subscribe again.
    Retry(NodeId),
}

/// Follows `'l`: subscribes to nodes that appear, drops those that go.
async fn drive(
    node: Node,
    level: u8,
    only: Option<NodeId>,
    mut watch: DbWatch,
    tx: mpsc::Sender<LogRecord>,
    shared: Arc<CatchShared>,
) {
    let (ctl_tx, mut ctl_rx) = mpsc::unbounded_channel();
    let mut present: FxHashSet<NodeId> = FxHashSet::default();
    let wanted = |n: &NodeId| {
        n != node.id()
            && match &only {
                Some(o) => o == n,
                None => true,
            }
    };
    loop {
        tokio::select! {
            change = watch.next() => {
                let Some(change) = change else { return };
                for key in &change.deleted {
                    let Ok(n) = NodeId::new(key.as_str()) else { continue };
                    present.remove(&n);
                    if let Some(p) = shared.remove(&n) {
                        let _ = node.kil(&p, Reason::normal());
                    }
                }
                for key in change.added.iter().chain(&change.changed) {
                    let Ok(n) = NodeId::new(key.as_str()) else { continue };
                    if wanted(&n) && present.insert(n.clone()) {
                        subscribe(&node, &n, level, &tx, &shared, &ctl_tx);
                    }
                }
            }
            Some(ctl) = ctl_rx.recv() => match ctl {
                Ctl::Died(n, port, reason) => {
                    if shared.forget(&n, &port) && present.contains(&n) {
                        // INFO, not WARN: nodes without a listener (short-lived tools)
                        // are in `'l` too, and are only reachable while they are connected.
                        if !reason.is_normal() {
                            tracing::info!(node = %n, reason = %reason, "log catcher: subscription lost, subscribing again");
                        }
                        let ctl_tx = ctl_tx.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(RESUBSCRIBE_AFTER).await;
                            let _ = ctl_tx.send(Ctl::Retry(n));
                        });
                    }
                }
                Ctl::Retry(n) => {
                    if present.contains(&n) && !shared.has(&n) {
                        subscribe(&node, &n, level, &tx, &shared, &ctl_tx);
                    }
                }
            }
        }
    }
}

/// Subscribes to `source`'s records: a port that takes them, monitors that end it when
/// `source`'s connection breaks and report its death, and the connect request.
fn subscribe(
    node: &Node,
    source: &NodeId,
    level: u8,
    tx: &mpsc::Sender<LogRecord>,
    shared: &Arc<CatchShared>,
    ctl: &mpsc::UnboundedSender<Ctl>,
) {
    let (from, tx, shared2) = (source.clone(), tx.clone(), shared.clone());
    let port = node.port_with(move |_cx, m| {
        match LogEntry::parse(m.as_slice()) {
            Ok(e) => shared2.deliver(&tx, LogRecord::from_entry(from.clone(), e)),
            Err(e) => tracing::warn!(node = %from, error = %e, "log catcher: malformed record"),
        }
        Ok(())
    });
    let node_mon = node.mon(&source.node_port(), Monitor::kill(&port));
    let (ctl, n, p) = (ctl.clone(), source.clone(), port.clone());
    let port_mon = node.mon_cb(&port, move |reason| {
        let _ = ctl.send(Ctl::Died(n, p, reason));
    });
    if !shared.insert(source.clone(), port.clone(), [node_mon, port_mon]) {
        let _ = node.kil(&port, Reason::normal());
        return;
    }
    let req = ConnectRequest { port, level }.to_msg();
    if let Err(e) = node.snd(&source.node_port(), req) {
        tracing::warn!(node = %source, error = %e, "log catcher: cannot send the connect request");
    }
}

/// Log records caught from other nodes, from [`Node::catch_logs`]: [`LogCatch::next`], a
/// [`futures_core::Stream`] of [`LogRecord`]s, or a task that handles them
/// ([`LogCatch::spawn_tracing`], [`LogCatch::spawn_callback`]).
///
/// Dropping it kills its subscription ports, which ends the subscriptions on every node.
/// It keeps its node running while it lives. The stream ends when the node shuts down.
///
/// A reader that does not keep up: at most [`CATCH_QUEUE`] records wait; further ones are
/// dropped and counted, and once the waiting ones are read, a record from this node (target
/// [`lc::NOTICE_TARGET`], level warn) says how many were dropped.
pub struct LogCatch {
    rx: mpsc::Receiver<LogRecord>,
    shared: Arc<CatchShared>,
    driver: tokio::task::JoinHandle<()>,
    node: Node,
    level: u8,
}

impl LogCatch {
    /// The next record; `None` once the node is shut down.
    pub async fn next(&mut self) -> Option<LogRecord> {
        std::future::poll_fn(|cx| self.poll_record(cx)).await
    }

    /// A record if one is waiting right now.
    pub fn try_next(&mut self) -> Option<LogRecord> {
        match self.rx.try_recv() {
            Ok(r) => Some(r),
            Err(_) => self.missed_notice(),
        }
    }

    /// The level asked for.
    pub fn level(&self) -> u8 {
        self.level
    }

    /// The nodes subscribed to right now.
    pub fn nodes(&self) -> Vec<NodeId> {
        let mut v: Vec<NodeId> = self.shared.subs.lock().by_node.keys().cloned().collect();
        v.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        v
    }

    /// Re-emits every record as a local `tracing` event ([`LogRecord::emit`]) in a task.
    /// Aborting the task (or the node shutting down) ends the catch.
    pub fn spawn_tracing(self) -> tokio::task::JoinHandle<()> {
        self.spawn_callback(|r| r.emit())
    }

    /// Calls `f` with every record, in a task. Aborting the task (or the node shutting down)
    /// ends the catch.
    pub fn spawn_callback(
        mut self,
        mut f: impl FnMut(LogRecord) + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            while let Some(r) = self.next().await {
                f(r);
            }
        })
    }

    fn missed_notice(&self) -> Option<LogRecord> {
        let n = self.shared.missed.swap(0, Ordering::Relaxed);
        (n > 0).then(|| LogRecord {
            node: self.node.id().clone(),
            time: unix_now(),
            target: lc::NOTICE_TARGET.to_string(),
            level: lc::WARN,
            message: format!("{n} caught log record(s) dropped: the reader did not keep up"),
        })
    }

    fn poll_record(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<LogRecord>> {
        use std::task::Poll;
        match self.rx.poll_recv(cx) {
            Poll::Ready(r) => Poll::Ready(r),
            Poll::Pending => match self.missed_notice() {
                Some(n) => Poll::Ready(Some(n)),
                None => Poll::Pending,
            },
        }
    }
}

impl futures_core::Stream for LogCatch {
    type Item = LogRecord;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<LogRecord>> {
        self.get_mut().poll_record(cx)
    }
}

impl std::fmt::Debug for LogCatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogCatch")
            .field("node", self.node.id())
            .field("level", &self.level)
            .field("nodes", &self.nodes())
            .finish()
    }
}

impl Drop for LogCatch {
    fn drop(&mut self) {
        self.driver.abort();
        let ports: Vec<PortId> = {
            let mut s = self.shared.subs.lock();
            s.closed = true;
            s.by_node.drain().map(|(_, (p, _guards))| p).collect()
        };
        for p in ports {
            let _ = self.node.kil(&p, Reason::normal());
        }
    }
}

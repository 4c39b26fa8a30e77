//! The log catcher (Perl's `AnyEvent::MP::LogCatcher`): a node catches the log records of
//! every other node of the network, live.
//!
//! # The two sides
//!
//! * **Forwarding.** Every aemp node answers the node-port function
//!   `AnyEvent::MP::LogCatcher::connect` ([`CONNECT_FUNCTION`]) from the start, as a Perl
//!   node does once it has loaded `AnyEvent::MP::LogCatcher`. A node in `secure` mode refuses
//!   it from other nodes, like every remote function call (the reference refuses it there
//!   too). The node then sends each of its log records whose level is at most the level the
//!   catcher asked for to the catcher's port, as `[time, target, level, message]`, until that
//!   port dies: the node monitors it, and the monitor ends the subscription (a port that is
//!   already dead ends it at once; a lost connection ends it too).
//!   [`Node::log_subscribers`](crate::Node::log_subscribers) counts the live subscriptions.
//! * **Catching.** [`Node::catch_logs`](crate::Node::catch_logs) watches the `'l` family (every node of the network)
//!   and subscribes to each node in it but itself, also to nodes that appear later, with one
//!   port per node, as the reference's `catch` does. The records come out of the returned
//!   [`LogCatch`](crate::LogCatch) as [`LogRecord`]s; dropping it kills the ports, which ends the
//!   subscriptions everywhere. [`LogCatch::spawn_tracing`](crate::LogCatch::spawn_tracing) re-emits them as local `tracing`
//!   events, [`LogCatch::spawn_callback`](crate::LogCatch::spawn_callback) hands them to a closure.
//!
//! # Where the records come from: the `tracing` layer
//!
//! A node forwards the events of the process's `tracing` subscriber, captured by the layer
//! [`layer()`]: without it in the subscriber, a node has subscribers but nothing to send.
//! Install it beside the usual output, with the output's filter on the output layer only, so
//! that catchers get what they ask for whatever the local log shows:
//!
//! ```no_run
//! use tracing_subscriber::prelude::*;
//! tracing_subscriber::registry()
//!     .with(tracing_subscriber::fmt::layer()
//!         .with_filter(tracing_subscriber::EnvFilter::from_default_env()))
//!     .with(aemp::log_catcher::layer())
//!     .init();
//! ```
//!
//! (A filter on the whole subscriber, such as `fmt().with_env_filter(..)`, also filters what
//! the layer sees.) While no catcher is subscribed anywhere in the process, the layer costs
//! one atomic load per event.
//!
//! A record has the event's target (the reference sends its logging context's title, a
//! package name; a module path is the counterpart), its message followed by its other fields
//! as `name=value`, the time of the event and its level, mapped to AnyEvent::Log's numeric
//! levels:
//!
//! | `tracing` | AnyEvent::Log | back to `tracing` ([`LogRecord::tracing_level`]) |
//! |---|---|---|
//! | ERROR | 4 error | 1 fatal, 2 alert, 3 critical, 4 error → ERROR |
//! | WARN | 5 warn | 5 warn → WARN |
//! | INFO | 7 info | 6 note, 7 info → INFO |
//! | DEBUG | 8 debug | 8 debug → DEBUG |
//! | TRACE | 9 trace | 9 trace → TRACE |
//!
//! **One process, several nodes.** The layer is process-wide, like the reference's
//! collecting log context: every node of the process that has subscribers forwards every
//! record of the process, since a `tracing` event does not say which node it belongs to.
//! With one node per process (the usual deployment, and the reference's model) that is
//! exactly the node's log; in a process with several nodes, a catcher may also receive the
//! records of its own process's other nodes (and of itself) through them.
//!
//! **No loops, no blocking, no silent loss.** Records are neither taken from the forwarding
//! itself (what a node's log catcher code logs while it sends, and the per-message lines of
//! `AEMP_TRACE`, target `aemp::trace`), nor from the re-emission of caught records (target
//! [`REMOTE_TARGET`]), so that two nodes catching each other's logs do not send records back
//! and forth. Capturing never blocks: each node keeps at most [`FORWARD_QUEUE`] records
//! waiting to be sent; when that is full, records are dropped and counted, and each
//! subscriber that missed some gets a record saying how many (target [`NOTICE_TARGET`]).
//! The same holds on the catching side ([`CATCH_QUEUE`]).
//!
//! ```
//! # use aemp::log_catcher::{self, LogRecord};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), aemp::Error> {
//! let node = aemp::Node::new("catcher-doc/%u")?;
//! // Everything up to info (7) from every other node; none here, so nothing arrives.
//! let catch = node.catch_logs(log_catcher::INFO)?;
//! let printer = catch.spawn_callback(|r: LogRecord| println!("{r}"));
//! printer.abort(); // stops catching: the subscriptions end on every node
//! # Ok(()) }
//! ```

use aemp_proto::log_catch::{Forwarder, LogEntry, Offer};
use aemp_proto::{Msg, NodeId, PortId};
use std::any::Any;
use std::cell::Cell;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, RwLock, Weak};

pub use aemp_proto::log_catch::{
    level_name, parse_level, LevelError, ALERT, CONNECT_FUNCTION, CRITICAL, DEBUG, ERROR, FATAL,
    INFO, NOTE, NOTICE_TARGET, OFF, TRACE, WARN,
};

/// The target of the `tracing` events that re-emit caught records
/// ([`LogRecord::emit`]); the layer never forwards them.
pub const REMOTE_TARGET: &str = "aemp::remote_log";

/// How many records a node keeps waiting to be forwarded before it drops (and counts) them.
pub const FORWARD_QUEUE: usize = 4096;

/// How many caught records a [`LogCatch`](crate::LogCatch) keeps for its reader before it drops (and counts)
/// them.
pub const CATCH_QUEUE: usize = 4096;

/// Longest message text forwarded, in bytes; longer ones are cut (marked with `…`).
pub const MAX_MESSAGE: usize = 16 * 1024;

/// The AnyEvent::Log level of a `tracing` level (see the [module documentation](self)).
pub fn ae_level(level: &tracing::Level) -> u8 {
    match *level {
        tracing::Level::ERROR => ERROR,
        tracing::Level::WARN => WARN,
        tracing::Level::INFO => INFO,
        tracing::Level::DEBUG => DEBUG,
        _ => TRACE,
    }
}

/// The `tracing` level of an AnyEvent::Log level (see the [module documentation](self)).
pub fn tracing_level(level: u8) -> tracing::Level {
    match level {
        0..=4 => tracing::Level::ERROR,
        5 => tracing::Level::WARN,
        6 | 7 => tracing::Level::INFO,
        8 => tracing::Level::DEBUG,
        _ => tracing::Level::TRACE,
    }
}

thread_local! {
    /// Set while this thread forwards or re-emits records: what is logged meanwhile is not
    /// captured.
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with capturing off on this thread (restored afterwards).
pub(crate) fn quietly<R>(f: impl FnOnce() -> R) -> R {
    let before = QUIET.with(|q| q.replace(true));
    let r = f();
    QUIET.with(|q| q.set(before));
    r
}

/// Seconds since the Unix epoch, as Perl's `AE::now`.
pub(crate) fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// How a sink sends what its forwarder drained (to the node's ports, through its handle).
pub(crate) type SendFn = Box<dyn Fn(Vec<(PortId, Msg)>) + Send + Sync>;

/// The forwarding state of one node: its subscribers and queue ([`Forwarder`]), how its
/// sender task is woken, and how it sends.
pub(crate) struct Sink {
    state: parking_lot::Mutex<SinkState>,
    wake: tokio::sync::Notify,
    /// The node this sink belongs to (compared by address only; a `Weak` keeps its
    /// allocation, so no other node can ever have the same address while the sink lives).
    owner: Weak<dyn Any + Send + Sync>,
    send: SendFn,
}

struct SinkState {
    fwd: Forwarder,
    /// The sender task runs (it stops when the last subscriber is gone).
    running: bool,
    /// Listed in the hub.
    listed: bool,
}

impl Sink {
    /// The sink of the node `owner`, which sends with `send`.
    pub(crate) fn new(owner: Weak<dyn Any + Send + Sync>, send: SendFn) -> Arc<Sink> {
        Arc::new(Sink {
            state: parking_lot::Mutex::new(SinkState {
                fwd: Forwarder::new(FORWARD_QUEUE),
                running: false,
                listed: false,
            }),
            wake: tokio::sync::Notify::new(),
            owner,
            send,
        })
    }

    /// Adds (or updates) a subscriber; starts the sender task if it is not running. Must run
    /// inside a tokio runtime.
    pub(crate) fn subscribe(self: &Arc<Sink>, port: PortId, level: u8) {
        let spawn = {
            let mut st = self.state.lock();
            st.fwd.subscribe(port, level);
            !std::mem::replace(&mut st.running, true)
        };
        if spawn {
            tokio::spawn(forward(self.clone()));
        }
        sink_changed(self);
    }

    /// Removes a subscriber (its port died); the sender task ends after the last one.
    pub(crate) fn unsubscribe(self: &Arc<Sink>, port: &PortId) {
        let wake = {
            let mut st = self.state.lock();
            st.fwd.unsubscribe(port);
            st.fwd.is_empty() && st.running
        };
        if wake {
            self.wake.notify_one();
        }
        sink_changed(self);
    }

    /// The number of subscribers.
    pub(crate) fn subscribers(&self) -> usize {
        self.state.lock().fwd.len()
    }
}

/// Sends what the forwarder queued, whenever woken; ends once the last subscriber is gone.
async fn forward(sink: Arc<Sink>) {
    loop {
        sink.wake.notified().await;
        let (out, done) = {
            let mut st = sink.state.lock();
            let out = st.fwd.drain(unix_now());
            let done = st.fwd.is_empty();
            if done {
                st.running = false;
            }
            (out, done)
        };
        if !out.is_empty() {
            quietly(|| (sink.send)(out));
        }
        if done {
            return;
        }
    }
}

/// The sinks of the process's nodes that ever had subscribers, and the highest level any of
/// them wants.
struct Hub {
    sinks: RwLock<Vec<Weak<Sink>>>,
    max_level: AtomicU8,
}

static HUB: Hub = Hub {
    sinks: RwLock::new(Vec::new()),
    max_level: AtomicU8::new(OFF),
};

/// Lists `sink` in the hub (once) and recomputes the level records must have to be captured.
/// Call after a subscriber came or went, without holding the sink's lock.
fn sink_changed(sink: &Arc<Sink>) {
    let newly = {
        let mut st = sink.state.lock();
        !std::mem::replace(&mut st.listed, true)
    };
    if newly {
        let mut sinks = HUB.sinks.write().unwrap_or_else(|e| e.into_inner());
        sinks.retain(|w| w.strong_count() > 0);
        sinks.push(Arc::downgrade(sink));
    }
    let sinks = HUB.sinks.read().unwrap_or_else(|e| e.into_inner());
    let max = sinks
        .iter()
        .filter_map(Weak::upgrade)
        .map(|s| s.state.lock().fwd.max_level())
        .max()
        .unwrap_or(OFF);
    HUB.max_level.store(max, Ordering::Relaxed);
}

/// The sink of the node `owner`, if it ever had subscribers.
pub(crate) fn sink_of(owner: &Weak<dyn Any + Send + Sync>) -> Option<Arc<Sink>> {
    HUB.sinks
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter_map(Weak::upgrade)
        .find(|s| s.owner.ptr_eq(owner))
}

/// The `tracing` layer that hands the process's events to the log catcher (see the
/// [module documentation](self)); made by [`layer()`].
#[derive(Debug, Clone, Copy, Default)]
pub struct LogLayer {
    _private: (),
}

/// The layer that lets this process's nodes forward its `tracing` events to log catchers.
pub fn layer() -> LogLayer {
    LogLayer::default()
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for LogLayer {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        capture(event);
    }
}

/// Whether records of `target` are never forwarded: per-message tracing, re-emitted caught
/// records.
fn excluded(target: &str) -> bool {
    target == REMOTE_TARGET
        || target
            .strip_prefix("aemp::trace")
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
}

fn capture(event: &tracing::Event<'_>) {
    let meta = event.metadata();
    let level = ae_level(meta.level());
    if level > HUB.max_level.load(Ordering::Relaxed) || QUIET.with(Cell::get) {
        return;
    }
    if excluded(meta.target()) {
        return;
    }
    quietly(|| {
        let mut text = Text::default();
        event.record(&mut text);
        let entry = LogEntry::new(unix_now(), meta.target(), level, text.finish());
        let sinks: Vec<Arc<Sink>> = HUB
            .sinks
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        for sink in sinks {
            let offer = sink.state.lock().fwd.offer(entry.clone());
            if offer == (Offer::Queued { wake: true }) {
                sink.wake.notify_one();
            }
        }
    });
}

/// The text of an event: its `message` field, then the other fields as `name=value`.
#[derive(Default)]
struct Text {
    message: String,
    fields: String,
}

impl Text {
    fn finish(mut self) -> String {
        if !self.fields.is_empty() {
            if !self.message.is_empty() {
                self.message.push(' ');
            }
            self.message.push_str(&self.fields);
        }
        if self.message.len() > MAX_MESSAGE {
            let mut end = MAX_MESSAGE;
            while !self.message.is_char_boundary(end) {
                end -= 1;
            }
            self.message.truncate(end);
            self.message.push('…');
        }
        self.message
    }

    fn field(&mut self, name: &str, value: std::fmt::Arguments<'_>) {
        use std::fmt::Write;
        if name.starts_with("log.") {
            return; // tracing-log's bookkeeping fields
        }
        if self.fields.len() > MAX_MESSAGE {
            return;
        }
        if !self.fields.is_empty() {
            self.fields.push(' ');
        }
        let _ = write!(self.fields, "{name}={value}");
    }
}

impl tracing::field::Visit for Text {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.field(field.name(), format_args!("{value}"));
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write;
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            self.field(field.name(), format_args!("{value:?}"));
        }
    }
}

/// One log record caught from another node (see [`Node::catch_logs`](crate::Node::catch_logs)).
#[derive(Debug, Clone, PartialEq)]
pub struct LogRecord {
    /// The node that logged it.
    pub node: NodeId,
    /// When, in seconds since the Unix epoch (that node's clock).
    pub time: f64,
    /// Where: the `tracing` target for an aemp node, the logging context's title (a package
    /// name) for a Perl node.
    pub target: String,
    /// AnyEvent::Log's level, 1 fatal ... 9 trace.
    pub level: u8,
    /// The text.
    pub message: String,
}

impl LogRecord {
    pub(crate) fn from_entry(node: NodeId, e: LogEntry) -> LogRecord {
        LogRecord {
            node,
            time: e.time,
            target: e.target.to_string(),
            level: e.level,
            message: e.message,
        }
    }

    /// The name of its level (`"warn"`, `"info"`...).
    pub fn level_name(&self) -> &'static str {
        level_name(self.level)
    }

    /// Its level as a `tracing` level (see [`crate::log_catcher`] for the mapping).
    pub fn tracing_level(&self) -> tracing::Level {
        tracing_level(self.level)
    }

    /// Re-emits it as a local `tracing` event: target [`REMOTE_TARGET`], its level mapped
    /// back to `tracing`'s, its message, and the fields `node` (where it was logged),
    /// `origin` (its target there) and `time`. This node does not forward such events to
    /// its own catchers.
    pub fn emit(&self) {
        let (node, origin, time, msg) = (
            self.node.as_str(),
            self.target.as_str(),
            self.time,
            self.message.as_str(),
        );
        quietly(|| match self.tracing_level() {
            tracing::Level::ERROR => {
                tracing::error!(target: REMOTE_TARGET, node, origin, time, "{msg}")
            }
            tracing::Level::WARN => {
                tracing::warn!(target: REMOTE_TARGET, node, origin, time, "{msg}")
            }
            tracing::Level::INFO => {
                tracing::info!(target: REMOTE_TARGET, node, origin, time, "{msg}")
            }
            tracing::Level::DEBUG => {
                tracing::debug!(target: REMOTE_TARGET, node, origin, time, "{msg}")
            }
            _ => tracing::trace!(target: REMOTE_TARGET, node, origin, time, "{msg}"),
        });
    }
}

impl std::fmt::Display for LogRecord {
    /// `<time> <node> <level> <target>: <message>`, the time in seconds since the epoch with
    /// millisecond precision.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.3} {} {} {}: {}",
            self.time,
            self.node,
            self.level_name(),
            self.target,
            self.message
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_mapping_both_ways() {
        use tracing::Level;
        for (t, ae) in [
            (Level::ERROR, 4),
            (Level::WARN, 5),
            (Level::INFO, 7),
            (Level::DEBUG, 8),
            (Level::TRACE, 9),
        ] {
            assert_eq!(ae_level(&t), ae);
            assert_eq!(tracing_level(ae), t);
        }
        for ae in 1..=3 {
            assert_eq!(tracing_level(ae), Level::ERROR);
        }
        assert_eq!(tracing_level(6), Level::INFO);
    }

    #[test]
    fn excluded_targets() {
        assert!(excluded("aemp::trace"));
        assert!(excluded("aemp::trace::x"));
        assert!(excluded(REMOTE_TARGET));
        assert!(!excluded("aemp::tracer"));
        assert!(!excluded("aemp::kernel"));
        assert!(!excluded("app"));
    }

    #[test]
    fn event_text_has_message_and_fields_and_is_bounded() {
        use tracing_subscriber::layer::SubscriberExt;
        // A layer that records the text of each event, as the catcher's layer makes it.
        struct Grab(Arc<parking_lot::Mutex<Vec<String>>>);
        impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Grab {
            fn on_event(
                &self,
                e: &tracing::Event<'_>,
                _: tracing_subscriber::layer::Context<'_, S>,
            ) {
                let mut t = Text::default();
                e.record(&mut t);
                self.0.lock().push(t.finish());
            }
        }
        let got = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let sub = tracing_subscriber::registry().with(Grab(got.clone()));
        tracing::subscriber::with_default(sub, || {
            tracing::info!(port = "a#b", n = 3, "port {} died", "x");
            tracing::warn!(reason = ?vec![1, 2], "");
            tracing::info!("{}", "y".repeat(MAX_MESSAGE + 10));
        });
        let got = got.lock();
        assert_eq!(got[0], "port x died port=a#b n=3");
        assert_eq!(got[1], "reason=[1, 2]");
        assert_eq!(got[2].len(), MAX_MESSAGE + '…'.len_utf8());
        assert!(got[2].ends_with('…'));
    }
}

//! # aemp: Erlang-style message passing for Rust, wire compatible with Perl AnyEvent::MP 2.02
//!
//! A [`Node`] owns *ports*: string IDs (`nodeid#portname`) that receive messages. Messages are
//! lists of simple [`Value`]s, built with [`msg!`]. Handlers run one at a time on the node's
//! dispatcher; a failing handler kills its port, and monitors report every death exactly
//! once.
//!
//! ```
//! use aemp::{msg, Node};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), aemp::Error> {
//! let node = Node::new("demo/%u")?;
//! let echo = node.port().on("ping", |cx, m| {
//!     // m is the message without its tag: [n, reply-port]; cal put the reply port last.
//!     cx.reply(&m, msg!["pong", m[0].clone()])?;
//!     Ok(())
//! }).build();
//! let reply = node.cal(&echo, msg!["ping", 1]).await.unwrap();
//! assert_eq!(reply, msg!["pong", 1]);
//! # Ok(()) }
//! ```
//!
//! A networked node comes from a [`Config`] (the same rc file and profiles as the Perl
//! `aemp` tool, or built in code) through [`Node::configure`]; it listens, keeps its seeds
//! connected, joins the global mesh and serves the replicated database (`db_set`, `db_reg`,
//! `db_mon`, ...).
//!
//! **New here?** The [`guide`] walks from one node to a network of seeds, globals and
//! workers, the database, typed messages, TLS, logging and shutdown. The repository's
//! `docs/protocol.md` describes the protocol and its semantics as aemp implements them, and
//! `docs/perl.md` maps each AnyEvent::MP call to its Rust form.
//!
//! # Failures and logs
//!
//! A port dies with a [`Reason`], which its monitors get; it prints in the notation of the
//! `aemp` tool (`["die","no such job"]`; `normal` for an empty reason). A port killed by its
//! own handler (the handler returned an error or panicked, a typed decode with `?` failed,
//! or a message matched no tag and the port has no default handler) is also reported, so
//! that such failures are never silent:
//!
//! * with a [`tracing`](https://docs.rs/tracing) subscriber installed, as a WARN event
//!   `port killed by its handler` with the fields `port` and `reason`. Everything else this
//!   crate logs goes there too (connections at INFO, refused input at WARN, details at
//!   DEBUG). A program shows them with, for example, `tracing_subscriber::fmt()
//!   .with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init()` and
//!   `RUST_LOG=aemp=info`;
//! * without any subscriber, as one line on stderr:
//!   `aemp: port <port id> killed by its handler: <reason>`.
//!
//! [`Node::set_log_deaths(false)`](Node::set_log_deaths) turns these reports off for a node
//! (monitors still fire); with a subscriber, a filter such as `RUST_LOG=aemp=error` silences
//! them too. Kills by [`Node::kil`] are not reported this way: their monitors see them.
//!
//! # Layers
//!
//! ```text
//!  Node (node)            the public handle: snd, kil, mon, spawn, cal, db_*, inbox ...
//!  dataconn               data connections: open one, register init functions
//!  log_catcher            the tracing layer that captures records for log catchers
//!    │ typed commands (runtime::Cmd) through the node's queue
//!  node task (runtime)    owns and wires the state machines, routes their effects
//!    ├─ Kernel (kernel)          ports, handlers, monitors; knows nothing else
//!    ├─ NodeCore (aemp-proto)    peer table, connection registry, global service, seeds
//!    └─ DataConns (aemp-proto)   data connection set-up, cap and timeouts
//!    ▲ typed connection events (transport::ConnEvent) and frames
//!  transport              sockets, handshake driving, read and write loops, TLS;
//!                         hands authenticated data connections over as raw streams
//! ```
//!
//! The protocol rules (framing, handshake, the peer table, the connection registry, the
//! global service, the database, data connection set-up, the log catcher's subscriptions)
//! live in the sans-IO `aemp-proto` crate, which takes events and the current time and
//! returns effects; this crate only drives them with tokio.
//!
//! # Diagnostics
//!
//! * **Message tracing** (like Perl's `PERL_ANYEVENT_MP_TRACE`): a node started while the
//!   environment variable `AEMP_TRACE` is set (to anything but empty or `0`) logs every
//!   message it sends to a peer (`snd node#port: [...]`), receives from one
//!   (`rcv node#port from peer: [...]`) and delivers locally (`rcv node#port (local): [...]`),
//!   at INFO under the log target `aemp::trace`, with the message cut after 256 bytes. The
//!   variable is read once when the node starts; without it, tracing costs one branch per
//!   message.
//! * **Statistics**: [`Node::stats`] and [`Node::peer_stats`] (messages, bytes, queue,
//!   reconnects per peer; refused handshakes), and [`Node::stats_of`] for another node
//!   ([`STATS_FUNCTION`], an aemp extension); `aemp stats <node>` prints them.
//! * **Log catcher** ([`log_catcher`], Perl's `AnyEvent::MP::LogCatcher`):
//!   [`Node::catch_logs`] receives the log records of every other node of the network, live;
//!   every node forwards its process's `tracing` events (with [`log_catcher::layer`]
//!   installed) to such subscribers, unless it runs in `secure` mode. `aemp log` shows them.
//! * **Refused handshakes** are logged at WARN with the peer's address and the cause (at most
//!   20 lines a minute), and the dialling node's monitors get the cause as their
//!   `transport_error` reason, e.g. `authentication failed: shared secret mismatch`.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod config;
mod dataconn;
mod error;
#[doc = include_str!("guide.md")]
pub mod guide {}
mod kernel;
pub mod log_catcher;
mod node;
mod runtime;
mod transport;

pub use aemp_proto::codec::{LimitError, Limits};
pub use aemp_proto::db::{DbMap, FamilySnapshot};
pub use aemp_proto::typed::{self, MsgExt, ValueExt};
pub use aemp_proto::{ids, list, msg, Msg, NodeId, PortId, Str, Value};
pub use config::{Config, SendQueueLimit};
pub use dataconn::{
    DataConn, DataConnError, DataConnLimits, DataConnRequest, DataInitFn, PendingDataConn,
    DEFAULT_DATA_CONN_TIMEOUT,
};
pub use error::{CalError, Error, HandlerError, HandlerResult, InboxClosed, Reason};
pub use kernel::context::Cx;
pub use kernel::monitor::{MonGuard, Monitor};
pub use kernel::port::Handler;
pub use node::{
    next_up, Cal, DbEntry, DbWatch, Inbox, LogCatch, MissedEvents, Node, NodeBuilder, NodeEvents,
    NodeStats, PeerStats, PortBuilder, ServiceFn, StatsError, TimerGuard,
    DEFAULT_SHUTDOWN_DEADLINE, DEFAULT_SPIN, STATS_FUNCTION,
};
pub use runtime::{DbChange, NodeEvent, ShutdownReport};
pub use transport::{Counters, TlsError, TransportError};

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
//! # Layers
//!
//! ```text
//!  Node (node)            the public handle: snd, kil, mon, spawn, cal, db_*, inbox ...
//!    │ typed commands (runtime::Cmd) through the node's queue
//!  node task (runtime)    owns and wires the state machines, routes their effects
//!    ├─ Kernel (kernel)          ports, handlers, monitors; knows nothing else
//!    └─ NodeCore (aemp-proto)    peer table, connection registry, global service, seeds
//!    ▲ typed connection events (transport::ConnEvent) and frames
//!  transport              sockets, handshake driving, read and write loops, TLS
//! ```
//!
//! The protocol rules (framing, handshake, the peer table, the connection registry, the
//! global service, the database) live in the sans-IO `aemp-proto` crate, which takes events
//! and the current time and returns effects; this crate only drives them with tokio.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod config;
mod error;
mod kernel;
mod node;
mod runtime;
mod transport;

pub use aemp_proto::db::DbMap;
pub use aemp_proto::typed::{self, MsgExt, ValueExt};
pub use aemp_proto::{ids, list, msg, Msg, NodeId, PortId, Str, Value};
pub use config::Config;
pub use error::{CalError, Error, HandlerError, HandlerResult};
pub use kernel::context::Cx;
pub use kernel::monitor::{MonGuard, Monitor, Reason};
pub use kernel::port::Handler;
pub use node::{
    next_up, Cal, DbEntry, DbWatch, Inbox, InboxClosed, MissedEvents, Node, NodeBuilder,
    NodeEvents, PeerStats, PortBuilder, ServiceFn, TimerGuard, DEFAULT_SPIN,
};
pub use runtime::{DbChange, NodeEvent};
pub use transport::{Counters, TlsError, TransportError};

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
//!     // m is the message without its tag: [n, reply-port]
//!     let reply: aemp::PortId = m[1].as_str().unwrap_or_default().parse()?;
//!     cx.snd(&reply, msg!["pong", m[0].clone()]);
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
//! Layout: [`kernel`] (ports, dispatch, monitors), [`node`] (the public handle: snd, kil,
//! mon, spawn, cal, after, inbox, network), [`transport`] (listeners, connections, the
//! one-connection-per-pair registry, TLS), [`global`] (seeds, master, mesh, database API),
//! [`config`] (rc file, profiles, binds). The sans-IO protocol core (ids, values, codecs,
//! handshake, node-port requests, database rules) is the `aemp-proto` crate, re-exported
//! here.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod config;
pub mod error;
pub mod global;
pub mod kernel;
pub mod node;
pub mod transport;

pub use aemp_proto::typed::{self, MsgExt, ValueExt};
pub use aemp_proto::{ids, list, msg, node_req, value, Msg, NodeId, PortId, Str, Value};
pub use config::Config;
pub use error::{CalError, Error, HandlerError, HandlerResult};
pub use global::{DbChange, DbEntry, DbMap, DbWatch};
pub use kernel::context::Cx;
pub use kernel::monitor::{Monitor, Reason};
pub use node::{Cal, Inbox, InboxClosed, MonGuard, Node, PeerStats, PortBuilder, TimerGuard};
pub use transport::NodeEvent;

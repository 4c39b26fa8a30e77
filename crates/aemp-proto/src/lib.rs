//! # aemp-proto: the sans-IO core of aemp
//!
//! Everything in this crate is a plain data structure or state machine, fed with bytes and
//! events and returning bytes and events; no sockets, no timers, no async runtime. The `aemp`
//! crate is the thin tokio layer around it. This is what makes the protocol testable against
//! the bytes captured from Perl AnyEvent::MP 2.02 nodes, and fuzzable.
//!
//! * [`ids`]: node IDs, port IDs, port-name generation; [`addr`]: socket addresses as text.
//! * [`value`]: the dynamic [`Value`] type and [`Msg`]; [`typed`]: serde to and from values.
//! * [`codec`]: the `json` and `cbor` framings, incremental decoders and encoders.
//! * [`handshake`]: the AEMP greeting/nonce/auth handshake as a state machine.
//! * [`conn_registry`]: one connection per pair of nodes (simultaneous connects, re-dials).
//! * [`dataconn`]: the set-up of data connections (raw streams between two nodes).
//! * [`peers`]: the per-node peer table (connection state, address book, connect pacing).
//! * [`global`]: the global service (roles, master selection, the global mesh, address
//!   look-up, queries, `db_mon` subscribers) and the seed connector's timing.
//! * [`db`]: the replicated database of global nodes (shards, merge, monitors).
//! * [`trace`]: bounded message texts for trace lines.
//! * [`log_catch`]: the log catcher's wire form and forwarding state machine
//!   (`AnyEvent::MP::LogCatcher`).
//! * [`log_limit`]: a rate limit for log lines peers can cause (refused handshakes).
//! * [`node_core`]: the four state machines above (peer table, registry, global service,
//!   seeds) composed into one: everything a node does about other nodes, minus the I/O.
//!
//! Because nothing here reads a clock, draws randomness or touches a socket, whole networks
//! of [`node_core::NodeCore`]s run in a deterministic simulator (the crate's `sim` tests:
//! virtual time, in-memory links, seeded randomness): master changes, partitions, simultaneous
//! connects, no-holes and the formation of 1,000-node networks are tested in milliseconds.

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod addr;
pub mod codec;
pub mod conn_registry;
pub mod dataconn;
pub mod db;
pub mod global;
pub mod handshake;
pub mod ids;
pub mod log_catch;
pub mod log_limit;
pub mod node_core;
pub mod node_req;
pub mod peers;
#[cfg(test)]
mod sim;
pub mod trace;
pub mod typed;
pub mod value;

pub use ids::{NodeId, PortId};
pub use value::{Msg, Str, Value};

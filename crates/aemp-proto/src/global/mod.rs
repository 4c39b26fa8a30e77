//! The global service of a node as sans-IO state machines.
//!
//! The database rules live in [`crate::db`]; this module decides *which* of them is active
//! on a node and what the surrounding network has to do about it. Nothing here opens a
//! socket, reads a clock or draws a random number: the runtime feeds in events (a node came
//! up, a request arrived, the application wrote to the database, a timer is due) and carries
//! out the [`Effect`]s that come back, in order.
//!
//! # Roles
//!
//! * **Slave.** Every node starts as one. It keeps its own database ([`crate::db::LocalDb`])
//!   and the mirrors of the families it watches ([`crate::db::Watches`]), and binds itself
//!   to a *master*: the first of its seed nodes that is up. Writes, watches, queries and
//!   address look-ups all go to that master; when it goes down, the next seed node that is
//!   up takes over and receives the whole local database and every request still waiting
//!   for an answer.
//! * **Global.** A node becomes global when the runtime says so
//!   ([`GlobalService::become_global`]: it is its own seed, it has no seeds, it runs the
//!   global service by configuration) or when another node makes it its master (`g_slave`).
//!   From then on a [`crate::db::GlobalDb`] holds the replicated database; the node is its
//!   own master (requests it addresses to itself are handled inside the service, never
//!   emitted), tells every node it meets that it is global, and keeps a connection to every
//!   global node listed in the `'g` family.
//!
//! # Effects
//!
//! Every event returns a `Vec<`[`Effect`]`>`. Sends are node-port requests for a given node
//! (the runtime connects on demand, queues while connecting and prepends the node-port name
//! `""` when framing); [`Effect::Connect`] asks for a connection without a message;
//! [`Effect::Addresses`] hands over listen addresses learned from a look-up;
//! [`Effect::Reply`] and [`Effect::Notify`] are for the application (answers to database
//! queries, `db_mon` changes); the rest is for logs and node events.
//!
//! # Refused entries
//!
//! [`probe`]: how a slave whose master keeps closing the connection right after it sent its
//! database finds the entry the master refuses, and drops it. [`mesh`]: the same between
//! global nodes. [`split`]: requests built from many entries that are too large for one
//! frame.
//!
//! # Seeds
//!
//! [`Seeds`] is the timer-driven part: which seed addresses to dial and when (first round at
//! once, then a randomised back-off that doubles up to `monitor_timeout`, restarting when a
//! seed node is lost).

pub mod mesh;
pub mod probe;
mod seeds;
mod service;
pub mod split;

#[cfg(test)]
mod sim_tests;
#[cfg(test)]
mod tests;

pub use seeds::Seeds;
pub use service::{DbChange, Effect, GlobalService, QueryKind};

use crate::value::Value;
use std::net::SocketAddr;

/// Reads a `'l` value (a list of `host:port` strings). Entries that are not strings or do
/// not parse as an IP address with a port are skipped; anything but a list gives nothing.
pub fn parse_addrs(v: Option<&Value>) -> Vec<SocketAddr> {
    v.and_then(Value::as_list)
        .unwrap_or_default()
        .iter()
        .filter_map(|a| a.as_str()?.parse().ok())
        .collect()
}

//! The direct path for remote `snd` from node handles.
//!
//! A message that a node handle sends to a node that is up can be encoded straight into the
//! connection's write buffer by the sending thread, without a trip through the node task
//! (on two cores that trip costs about half the throughput of one-way streams). The
//! [`DirectLinks`] are the one handle for that: a read-only view of the peer table's up
//! links, **written only by the node task** (published when the peer table reports a node
//! up, after it flushed what was queued for it; withdrawn when it reports the node lost).
//!
//! Order: a handle's messages must not overtake its earlier commands that are still waiting
//! for the node task (a `mon` that sends `mon1`, a `kil`, a `snd` queued while the node was
//! connecting). So the direct path is taken only while the node task is idle: its queue is
//! empty and it is not running a batch ([`Core::try_direct`](super::Core)). Anything a thread
//! queued before is then already written to its connection. Inside a handler the node task
//! is busy by definition, so handlers never take it.

use crate::transport::connection::ConnTx;
use aemp_proto::codec::LimitError;
use aemp_proto::{Msg, Str};
use parking_lot::RwLock;
use rustc_hash::FxHashMap;
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The up links, by node, as published by the node task.
///
/// A stream of messages goes to one node, so each thread keeps the link it used last
/// ([`LAST`]) and takes it again without the table's lock and without hashing the node ID
/// (about 170 instructions per message, callgrind R1 sender), as long as the table has not
/// changed since: every change bumps [`DirectLinks::version`], and a kept link counts only
/// with the version it was found under. So a withdrawn link is never used again; what a
/// thread keeps is at most one connection's sending side, until its next direct send
/// (after the connection is gone, only the memory of its buffer). A send to another node
/// than the kept one replaces it: one more reference count change than a lookup alone.
pub(crate) struct DirectLinks {
    links: RwLock<FxHashMap<Str, Arc<ConnTx>>>,
    /// Changed (with the write lock held) by every change of `links`.
    version: AtomicU64,
    /// Tells this table from every other in the process (nodes come and go; an address
    /// could be reused).
    id: u64,
}

/// A thread's last direct link: table, version and the connection (whose peer is the
/// node it was found for).
struct Last {
    table: u64,
    version: u64,
    tx: Arc<ConnTx>,
}

thread_local! {
    /// See [`DirectLinks`].
    static LAST: RefCell<Option<Last>> = const { RefCell::new(None) };
}

impl Default for DirectLinks {
    fn default() -> Self {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        DirectLinks {
            links: RwLock::default(),
            version: AtomicU64::new(0),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        }
    }
}

impl DirectLinks {
    /// Applies `change` to the table and makes every thread's kept link stale.
    fn change(&self, change: impl FnOnce(&mut FxHashMap<Str, Arc<ConnTx>>)) {
        let mut links = self.links.write();
        change(&mut links);
        self.version.fetch_add(1, Ordering::Release);
    }

    /// The node task: `node` is up on `tx` (its queue is flushed).
    pub(super) fn publish(&self, node: &str, tx: Arc<ConnTx>) {
        self.change(|links| drop(links.insert(Str::from(node), tx)));
    }

    /// The node task: `node` is lost.
    pub(super) fn withdraw(&self, node: &str) {
        self.change(|links| drop(links.remove(node)));
    }

    /// The node task: everything goes (shutdown).
    pub(super) fn clear(&self) {
        self.change(|links| links.clear());
    }

    /// Encodes `msg` for port `name` of `node` into that node's connection if the node is
    /// up (`Some`, with the connection's verdict on a message checked for CBOR: see
    /// `ConnTx::send_checked`, which leaves what is left of `msg` to the caller); `None`,
    /// with `msg` untouched, when it is not. The rare refusal is boxed: the verdict then
    /// fits two registers, where an unboxed one went through memory on every send (and
    /// was read back before its stores had landed, a store-forwarding stall).
    #[inline]
    pub(super) fn send(
        &self,
        node: &str,
        name: &str,
        msg: &mut Msg,
    ) -> Option<Result<(), Box<LimitError>>> {
        let version = self.version.load(Ordering::Acquire);
        let kept = LAST.with(|last| match &*last.borrow() {
            Some(l)
                if l.table == self.id
                    && l.version == version
                    && aemp_text::short_eq(l.tx.peer.as_str().as_bytes(), node.as_bytes()) =>
            {
                Some(l.tx.send_checked(name, msg).map(drop).map_err(Box::new))
            }
            _ => None,
        });
        kept.or_else(|| self.send_looked_up(node, name, msg))
    }

    /// [`DirectLinks::send`] through the table, keeping the link found for the next send.
    #[inline(never)]
    fn send_looked_up(
        &self,
        node: &str,
        name: &str,
        msg: &mut Msg,
    ) -> Option<Result<(), Box<LimitError>>> {
        let (tx, version) = {
            let links = self.links.read();
            // The version cannot change while the read lock is held.
            let tx = links.get(node)?;
            (tx.clone(), self.version.load(Ordering::Acquire))
        };
        let verdict = tx.send_checked(name, msg).map(drop).map_err(Box::new);
        // Kept (and found again by its peer's ID) only when that is the node it was found
        // for, as it always is for a published link.
        if tx.peer.as_str() == node {
            LAST.with(|last| {
                *last.borrow_mut() = Some(Last {
                    table: self.id,
                    version,
                    tx,
                })
            });
        }
        Some(verdict)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aemp_proto::codec::{Framing, Limits};
    use aemp_proto::{msg, NodeId};

    fn tx(id: u64) -> Arc<ConnTx> {
        let peer = NodeId::new("peer").unwrap();
        Arc::new(ConnTx::new(
            id,
            Framing::Cbor,
            Limits::default(),
            peer,
            false,
            None,
        ))
    }

    /// A thread's kept link serves the next sends to its node, and never outlives a change
    /// of the table: after a withdrawal the node is not up (the message comes back), and a
    /// link published anew gets the sends, not the old one.
    #[test]
    fn a_kept_link_never_outlives_a_change_of_the_table() {
        let links = DirectLinks::default();
        let (old, new) = (tx(1), tx(2));
        assert!(links.send("peer", "p", &mut msg!["x"]).is_none());
        links.publish("peer", old.clone());
        assert!(links.send("peer", "p", &mut msg!["x"]).is_some());
        assert!(links.send("peer", "p", &mut msg!["x"]).is_some());
        assert_eq!(old.unwritten(), 2);
        // The same node in another table (at the same version) has its own link.
        let (other, third) = (DirectLinks::default(), tx(3));
        other.publish("peer", third.clone());
        assert!(other.send("peer", "p", &mut msg!["x"]).is_some());
        assert_eq!((old.unwritten(), third.unwritten()), (2, 1));
        assert!(links.send("peer", "p", &mut msg!["x"]).is_some());
        assert_eq!(old.unwritten(), 3);
        links.withdraw("peer");
        assert!(links.send("peer", "p", &mut msg!["x"]).is_none());
        links.publish("peer", new.clone());
        assert!(links.send("peer", "p", &mut msg!["x"]).is_some());
        links.clear();
        assert!(links.send("peer", "p", &mut msg!["x"]).is_none());
        assert_eq!((old.unwritten(), new.unwritten()), (3, 1));
    }
}

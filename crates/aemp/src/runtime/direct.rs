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
use std::sync::Arc;

/// The up links, by node, as published by the node task.
#[derive(Default)]
pub(crate) struct DirectLinks {
    links: RwLock<FxHashMap<Str, Arc<ConnTx>>>,
}

impl DirectLinks {
    /// The node task: `node` is up on `tx` (its queue is flushed).
    pub(super) fn publish(&self, node: &str, tx: Arc<ConnTx>) {
        self.links.write().insert(Str::from(node), tx);
    }

    /// The node task: `node` is lost.
    pub(super) fn withdraw(&self, node: &str) {
        self.links.write().remove(node);
    }

    /// The node task: everything goes (shutdown).
    pub(super) fn clear(&self) {
        self.links.write().clear();
    }

    /// Encodes `msg` for port `name` of `node` into that node's connection if the node is
    /// up (`Ok`, with the connection's verdict on a message checked for CBOR: see
    /// `ConnTx::send_checked`); gives the message back otherwise.
    #[inline]
    pub(super) fn send(
        &self,
        node: &str,
        name: &str,
        msg: Msg,
    ) -> Result<Result<(), LimitError>, Msg> {
        match self.links.read().get(node) {
            Some(tx) => Ok(tx.send_checked(name, msg).map(drop)),
            None => Err(msg),
        }
    }
}

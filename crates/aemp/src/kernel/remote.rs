//! Messages for other nodes: the per-node connection state (PROTOCOL.md §6.1), owned by the
//! kernel.
//!
//! * **Idle** (no entry): a send queues the message and starts connecting.
//! * **Connecting**: sends are queued; the attempt reports success (`conn_up`) or failure
//!   (`connect_failed`, after `connect_interval`).
//! * **Up**: sends are encoded straight into the connection's write buffer.
//!
//! Invariant (no silent holes): whenever queued or in-flight messages to a node are lost
//! (connect failure, connection loss), the same kernel step fires every monitor of that node
//! with `transport_error` before anything later can be sent on a new connection.

use super::Kernel;
use crate::transport::connection::ConnTx;
use crate::transport::{Network, NodeEvent};
use aemp_proto::{Msg, NodeId, Str};
use rustc_hash::FxHashMap;
use std::sync::Arc;

pub(crate) enum Peer {
    Connecting {
        queue: Vec<(Str, Msg)>,
        attempt: Option<tokio::task::AbortHandle>,
    },
    Up {
        tx: Arc<ConnTx>,
    },
}

/// Connection state of every remote node we talk to.
#[derive(Default)]
pub(crate) struct Remotes {
    pub peers: FxHashMap<Str, Peer>,
    pub net: Option<Arc<Network>>,
}

impl Remotes {
    pub(crate) fn teardown(&mut self) {
        for (_, p) in self.peers.drain() {
            match p {
                Peer::Up { tx } => tx.close(),
                Peer::Connecting { attempt, .. } => {
                    if let Some(a) = attempt {
                        a.abort()
                    }
                }
            }
        }
    }
}

impl Kernel {
    /// Sends `msg` to port `port` (a bare name; `""` = node port) of another node.
    pub(crate) fn send_remote(&mut self, node: &str, port: &str, msg: Msg) {
        match self.remote.peers.get_mut(node) {
            Some(Peer::Up { tx }) => self.woke_writer |= tx.send(port, msg),
            Some(Peer::Connecting { queue, .. }) => queue.push((Str::from(port), msg)),
            None => {
                let node = Str::from(node);
                self.start_connecting(&node, vec![(Str::from(port), msg)]);
            }
        }
    }

    /// Moves an idle node to Connecting with `queue` and starts reaching it.
    fn start_connecting(&mut self, node: &Str, queue: Vec<(Str, Msg)>) {
        let attempt = match self.remote.net.clone() {
            Some(net) => {
                let mut addrs = net.known_addresses(node);
                if addrs.is_empty() {
                    addrs = self.lookup_addresses(node);
                }
                if addrs.is_empty() && self.global.is_global() {
                    self.postpone_connect_failed(node, "no known address");
                    None
                } else {
                    Some(net.connect_node(node.clone(), addrs))
                }
            }
            None => {
                self.postpone_connect_failed(node, "no known address (node has no transport)");
                None
            }
        };
        self.remote
            .peers
            .insert(node.clone(), Peer::Connecting { queue, attempt });
    }

    fn postpone_connect_failed(&mut self, node: &Str, text: &'static str) {
        let n = node.clone();
        self.postpone(super::Cmd::Exec(Box::new(move |k: &mut Kernel| {
            k.connect_failed(&n, text)
        })));
    }

    /// Makes sure a connection to `node` exists or is being made (global keepalive).
    pub(crate) fn ensure_connected(&mut self, node: &str) {
        if !self.remote.peers.contains_key(node) && self.remote.net.is_some() {
            self.start_connecting(&Str::from(node), Vec::new());
        }
    }

    /// `g_found` brought addresses for `node`: remember them, and dial them if we are
    /// trying to reach it.
    pub(crate) fn found_addresses(&mut self, node: &str, addrs: Vec<std::net::SocketAddr>) {
        let Some(net) = self.remote.net.clone() else {
            return;
        };
        net.set_addresses(node, addrs.clone());
        if matches!(self.remote.peers.get(node), Some(Peer::Connecting { .. })) {
            for a in addrs {
                net.dial(a, Some(Str::from(node)));
            }
        }
    }

    /// Sends a node-port request (`msg` starts with the request tag) to another node.
    pub(crate) fn send_node_request(&mut self, node: &str, req: Msg) {
        self.send_remote(node, "", req);
    }

    /// Sends a node-port request only if the node is connected (death notices to remote
    /// monitors: the reference sends them only to connected nodes, and they must not start
    /// a connection).
    pub(crate) fn send_node_request_if_up(&mut self, node: &str, req: Msg) {
        if let Some(Peer::Up { tx }) = self.remote.peers.get(node) {
            self.woke_writer |= tx.send("", req);
        }
    }

    /// A connection to `node` authenticated.
    pub(crate) fn conn_up(&mut self, node: &NodeId, tx: Arc<ConnTx>) {
        let prev = self
            .remote
            .peers
            .insert(Str::from(node.as_str()), Peer::Up { tx: tx.clone() });
        match prev {
            Some(Peer::Connecting { queue, attempt }) => {
                if let Some(a) = attempt {
                    a.abort();
                }
                // Queued messages first, in order; node-up hooks send after them (§6.1).
                for (port, msg) in queue {
                    tx.send(&port, msg);
                }
            }
            Some(Peer::Up { tx: old }) => {
                // The registry allows one live connection per node, so this is a connection
                // that replaced one whose loss we have not processed yet.
                old.close();
                self.fire_node_lost(node.as_str(), "switched connections");
            }
            None => {}
        }
        if let Some(net) = &self.remote.net {
            net.links
                .write()
                .insert(Str::from(node.as_str()), tx.clone());
            let _ = net.events.send(NodeEvent::Up(node.clone()));
        }
        self.node_up_hooks(node);
    }

    /// The connection `conn` to `node` was lost.
    pub(crate) fn conn_down(&mut self, node: &NodeId, conn: u64, text: &str) {
        match self.remote.peers.get(node.as_str()) {
            Some(Peer::Up { tx }) if tx.id == conn => {}
            _ => return,
        }
        self.remote.peers.remove(node.as_str());
        if let Some(net) = &self.remote.net {
            net.links.write().remove(node.as_str());
        }
        self.fire_node_lost(node.as_str(), text);
        self.forget_remote_monitors_of(node.as_str());
        if let Some(net) = &self.remote.net {
            let _ = net
                .events
                .send(NodeEvent::Down(node.clone(), text.to_string()));
        }
        self.node_down_hooks(node);
    }

    /// Reaching `node` failed: drop what was queued for it and fire its monitors.
    pub(crate) fn connect_failed(&mut self, node: &str, text: &str) {
        if let Some(Peer::Connecting { queue, .. }) = self.remote.peers.get(node) {
            if !queue.is_empty() {
                tracing::info!(
                    node,
                    reason = text,
                    dropped = queue.len(),
                    "could not reach node, dropping queued messages"
                );
            }
            self.remote.peers.remove(node);
            self.fire_node_lost(node, text);
        }
    }

    /// Node-up hooks of the layers above the transport (global service).
    fn node_up_hooks(&mut self, node: &NodeId) {
        self.global_node_up(node);
    }

    /// Node-down hooks of the layers above the transport (global service).
    fn node_down_hooks(&mut self, node: &NodeId) {
        self.global_node_down(node);
    }

    /// Nodes currently connected.
    pub(crate) fn up_nodes(&self) -> Vec<NodeId> {
        self.remote
            .peers
            .iter()
            .filter(|(_, p)| matches!(p, Peer::Up { .. }))
            .filter_map(|(n, _)| NodeId::new(n.as_str()).ok())
            .collect()
    }
}

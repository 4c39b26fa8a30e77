//! Messages for other nodes: the seam between the kernel and the transport.
//!
//! Without a transport (a node that was never configured for the network) a message to
//! another node cannot be delivered: it is dropped and every monitor of that node fires with
//! `transport_error`, so that nothing is lost silently.

use super::{Cmd, Kernel};
use aemp_proto::{Msg, Str};

/// Per-remote-node connection state, owned by the kernel.
#[derive(Default)]
pub(crate) struct Remotes {}

impl Remotes {
    pub(crate) fn teardown(&mut self) {}
}

impl Kernel {
    /// Sends `msg` to port `port` (a bare name; `""` = node port) of another node.
    pub(crate) fn send_remote(&mut self, node: &str, port: &str, msg: Msg) {
        let _ = (port, msg);
        let node = Str::from(node);
        self.postpone(Cmd::Exec(Box::new(move |k: &mut Kernel| {
            k.fire_node_lost(&node, "no known address (node has no transport)")
        })));
    }

    /// Sends a node-port request (`msg` starts with the request tag) to another node.
    pub(crate) fn send_node_request(&mut self, node: &str, req: Msg) {
        self.send_remote(node, "", req);
    }
}

//! The handler context (`SELF` in Perl): what a handler may do while it runs.
//!
//! A [`Cx`] borrows the kernel and its host mutably, so everything a handler does through it
//! takes effect directly (sends are queued behind the messages already waiting, exactly like
//! sends from outside, so a handler never runs inside another handler).

use super::monitor::{MonGuard, Monitor, Reason};
use super::port::Handler;
use super::{Host, Kernel};
use crate::error::{Error, HandlerResult};
use aemp_proto::{Msg, NodeId, PortId, Str, Value};

/// Handler context: the port a handler runs for, the node the message came from, and the
/// kernel operations.
pub struct Cx<'k> {
    pub(crate) k: &'k mut Kernel,
    pub(crate) host: &'k mut dyn Host,
    pub(crate) port: &'k Str,
    pub(crate) src: Option<&'k NodeId>,
}

impl<'k> Cx<'k> {
    /// The port this handler runs for (Perl's `$SELF`).
    pub fn self_port(&self) -> PortId {
        self.k.id.port(self.port)
    }

    /// Name of the port this handler runs for (without the node part).
    pub fn self_name(&self) -> &str {
        self.port
    }

    /// The node the message came from (Perl's `$SRCNODE`): this node for local messages.
    pub fn src_node(&self) -> &NodeId {
        self.src.unwrap_or(&self.k.id)
    }

    /// This node's ID.
    pub fn node_id(&self) -> &NodeId {
        &self.k.id
    }

    /// Sends a message (see [`Node::snd`](crate::Node::snd)). What `Node::snd` refuses with an
    /// error is dropped here with a WARN log line naming the port and the reason (use
    /// [`Cx::try_snd`] to get the error instead):
    ///
    /// * an empty message;
    /// * a message that peers would refuse ([`Error::Refused`]: nested too deep or too large
    ///   for the node's limits), whatever the destination, local ports included. Nothing is
    ///   sent, the handler and its port carry on, and the message is dropped without
    ///   recursion however deep it is.
    #[inline]
    pub fn snd(&mut self, port: &PortId, msg: impl Into<Msg>) {
        let msg = msg.into();
        // The hot paths: a flat local message is queued at once (only nesting could hurt a
        // local receiver, see `Shared::check_to`), a remote one once it passed the check;
        // everything else (empty, nested, refused) takes the out-of-line path that checks
        // fully and explains a refusal.
        if !msg.is_empty() {
            if super::port::short_eq(port.node(), self.k.id.as_str()) {
                if !msg
                    .0
                    .iter()
                    .any(|v| matches!(v, Value::List(_) | Value::Map(_)))
                {
                    self.host.postpone(super::Task::Deliver {
                        port: Str::from(port.name()),
                        msg,
                        src: None,
                    });
                    return;
                }
            } else if self.k.shared.check(port.name(), &msg.0).is_ok()
                && self.k.shared.check_node(port.node()).is_ok()
            {
                self.host.send_from_handler(port.node(), port.name(), msg);
                return;
            }
        }
        self.snd_slow(port, msg);
    }

    /// [`Cx::snd`] for what its hot paths do not take: checked fully, sent or refused.
    #[inline(never)]
    fn snd_slow(&mut self, port: &PortId, msg: Msg) {
        if let Err(e) = self.try_snd(port, msg) {
            tracing::warn!(port = %port, error = %e, "message not sent");
        }
    }

    /// [`Cx::snd`], returning [`Error::EmptyMessage`] or [`Error::Refused`] instead of
    /// logging them.
    pub fn try_snd(&mut self, port: &PortId, msg: impl Into<Msg>) -> Result<(), Error> {
        let msg = msg.into();
        if msg.is_empty() {
            return Err(Error::EmptyMessage);
        }
        if let Err(e) = self.k.shared.check_to(port, &msg.0) {
            aemp_proto::value::drop_nested(msg);
            return Err(Error::Refused(e));
        }
        if super::port::short_eq(port.node(), self.k.id.as_str()) {
            self.k.snd(port, msg, self.host);
        } else {
            self.host.send_from_handler(port.node(), port.name(), msg);
        }
        Ok(())
    }

    /// Sends a typed message (a tuple, struct or enum variant, see
    /// [`aemp_proto::typed::to_msg`]); returns
    /// the errors that [`Cx::try_snd`] returns.
    pub fn snd_typed<T: serde::Serialize + ?Sized>(
        &mut self,
        port: &PortId,
        msg: &T,
    ) -> Result<(), Error> {
        let msg = aemp_proto::typed::to_msg(msg)?;
        self.try_snd(port, msg)
    }

    /// Kills a port (see [`Node::kil`](crate::Node::kil)).
    pub fn kil(&mut self, port: &PortId, reason: impl Into<Reason>) -> Result<(), Error> {
        self.k
            .kil(port, reason.into(), &mut InHandler(&mut *self.host))
    }

    /// Kills the port this handler runs for. A reason that could not be sent to a remote
    /// monitor is replaced by `("die", "kill reason refused: …")` (logged as a warning).
    pub fn kil_self(&mut self, reason: impl Into<Reason>) {
        let name = self.port.clone();
        self.k.kill_local(&name, reason.into(), self.host);
    }

    /// Creates a new local port with a default handler, at once.
    pub fn port(
        &mut self,
        h: impl FnMut(&mut Cx<'_>, Msg) -> HandlerResult + Send + 'static,
    ) -> PortId {
        let name = self.k.shared.namer.next_local();
        let id = self.k.id.port(&name);
        self.k.rcv_local(&name, None, Some(Box::new(h)));
        id
    }

    /// Sets the default handler of this port.
    pub fn rcv_default(
        &mut self,
        h: impl FnMut(&mut Cx<'_>, Msg) -> HandlerResult + Send + 'static,
    ) {
        let name = self.port.clone();
        self.k.rcv_local(&name, None, Some(Box::new(h)));
    }

    /// Sets a tag handler of this port (the tag is removed before the handler sees it).
    pub fn rcv(
        &mut self,
        tag: &str,
        h: impl FnMut(&mut Cx<'_>, Msg) -> HandlerResult + Send + 'static,
    ) {
        let name = self.port.clone();
        self.k.rcv_local(&name, Some(tag), Some(Box::new(h)));
    }

    /// Removes a tag handler of this port.
    pub fn unrcv(&mut self, tag: &str) {
        let name = self.port.clone();
        self.k.rcv_local(&name, Some(tag), None);
    }

    /// Sets or removes a handler of any local port (created if missing).
    pub fn rcv_port(
        &mut self,
        port: &PortId,
        tag: Option<&str>,
        h: Option<Handler>,
    ) -> Result<(), Error> {
        if port.node() != self.k.id.as_str() || port.is_node_port() {
            return Err(Error::NotLocal(port.to_string()));
        }
        self.k.rcv_local(&Str::from(port.name()), tag, h);
        Ok(())
    }

    /// Monitors a port (see [`Node::mon`](crate::Node::mon)).
    pub fn mon(&mut self, port: &PortId, action: Monitor) -> MonGuard {
        let id = self.k.shared.next_guard();
        self.k
            .mon(port, id, action, &mut InHandler(&mut *self.host));
        MonGuard::new(self.host.canceller(), id)
    }
}

/// The host as a handler's own actions see it: what they send to another node goes through
/// [`Host::send_from_handler`], behind what was queued before (see [`Cx::kil`],
/// [`Cx::mon`]: their `kil1`/`mon1` must not overtake a message a thread sent that port
/// earlier). Everything else is the host's own.
struct InHandler<'h>(&'h mut dyn Host);

impl Host for InHandler<'_> {
    fn postpone(&mut self, task: super::Task) {
        self.0.postpone(task);
    }
    fn send_remote(&mut self, node: &str, port: &str, msg: Msg) {
        self.0.send_from_handler(node, port, msg);
    }
    fn send_from_handler(&mut self, node: &str, port: &str, msg: Msg) {
        self.0.send_from_handler(node, port, msg);
    }
    fn send_if_up(&mut self, node: &str, port: &str, msg: Msg) {
        self.0.send_if_up(node, port, msg);
    }
    fn global_request(&mut self, from: &NodeId, tag: Str, args: Vec<Value>) {
        self.0.global_request(from, tag, args);
    }
    fn data_conn_request(&mut self, from: &NodeId, func: &str, args: Vec<Value>) {
        self.0.data_conn_request(from, func, args);
    }
    fn up_nodes(&self) -> Vec<NodeId> {
        self.0.up_nodes()
    }
    fn owner(&self) -> Option<std::sync::Arc<dyn std::any::Any + Send + Sync>> {
        self.0.owner()
    }
    fn canceller(&self) -> std::sync::Weak<dyn super::monitor::Canceller> {
        self.0.canceller()
    }
}

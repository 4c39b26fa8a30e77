//! `cal`: a request with a fresh reply port, answered by the first reply.

use super::Node;
use crate::error::CalError;
use crate::runtime::{CalRequest, Cmd};
use aemp_proto::value::drop_nested;
use aemp_proto::{Msg, PortId};
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::time::Duration;

/// A pending `cal`, created by [`Node::cal`]. Await it, or pass a callback to [`Cal::then`].
///
/// The target is monitored: its death (or the loss of its node) gives
/// [`CalError::TargetDied`] at once, with the kill reason, timeout or not. With a timeout,
/// expiry gives [`CalError::Timeout`]. Exactly one outcome is reported; on every path the
/// reply port is killed, the monitor cancelled and the timer stopped.
#[must_use = "a cal is sent when awaited or when .then() is called"]
pub struct Cal {
    node: Node,
    target: PortId,
    msg: Msg,
    timeout: Option<Duration>,
}

impl Cal {
    pub(crate) fn new(node: Node, target: PortId, msg: Msg) -> Cal {
        Cal {
            node,
            target,
            msg,
            timeout: None,
        }
    }

    /// Gives up after `d`.
    pub fn timeout(mut self, d: Duration) -> Cal {
        self.timeout = Some(d);
        self
    }

    /// Sends the request; `cb` gets the first reply or the reason there was none.
    ///
    /// A request that peers would refuse, reply port included (see
    /// [`Node::snd`](crate::Node::snd)), is not sent: `cb` gets [`CalError::Refused`] at
    /// once, before this returns.
    pub fn then(self, cb: impl FnOnce(Result<Msg, CalError>) + Send + 'static) {
        let Cal {
            node,
            target,
            mut msg,
            timeout,
        } = self;
        if node.is_shut_down() {
            drop_nested(msg);
            cb(Err(CalError::Shutdown));
            return;
        }
        let shared = node.shared();
        let reply_name = shared.namer.next_local();
        msg.push(shared.id.port(&reply_name));
        let checked = shared.check(target.name(), msg.as_slice()).and_then(|()| {
            if target.node() == shared.id.as_str() {
                Ok(())
            } else {
                shared.check_node(target.node())
            }
        });
        if let Err(e) = checked {
            drop_nested(msg);
            cb(Err(CalError::Refused(e)));
            return;
        }
        node.core().push(Cmd::Cal(Box::new(CalRequest {
            target,
            msg,
            reply_name,
            timeout,
            callback: Box::new(cb),
        })));
    }
}

impl IntoFuture for Cal {
    type Output = Result<Msg, CalError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.then(move |r| {
            let _ = tx.send(r);
        });
        Box::pin(async move { rx.await.unwrap_or(Err(CalError::Shutdown)) })
    }
}

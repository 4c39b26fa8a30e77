//! `cal`: a request with a fresh reply port, answered by the first reply.

use super::Node;
use crate::error::CalError;
use crate::kernel::monitor::Monitor;
use crate::kernel::{Cmd, Kernel};
use aemp_proto::{Msg, PortId, Str};
use parking_lot::Mutex;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

type Callback = Box<dyn FnOnce(Result<Msg, CalError>) + Send + 'static>;

/// A pending `cal`, created by [`Node::cal`]. Await it, or pass a callback to [`Cal::then`].
///
/// With a timeout, expiry gives [`CalError::Timeout`] and kills the reply port. Without one,
/// the target is monitored and its death gives [`CalError::TargetDied`].
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
    pub fn then(self, cb: impl FnOnce(Result<Msg, CalError>) + Send + 'static) {
        let Cal {
            node,
            target,
            msg,
            timeout,
        } = self;
        let cb: Callback = Box::new(cb);
        node.exec(move |k| k.start_cal(target, msg, timeout, cb));
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

impl Kernel {
    pub(crate) fn start_cal(
        &mut self,
        target: PortId,
        mut msg: Msg,
        timeout: Option<Duration>,
        cb: Callback,
    ) {
        // Whoever takes the callback first (reply, timeout, target death) reports; the others
        // find it gone.
        let pending = Arc::new(Mutex::new(Some(cb)));
        let reply_name = self.core.namer.next_local();
        let reply = self.id.port(&reply_name);
        let mon_id = self.core.next_guard();
        let timer = timeout.map(|d| {
            let core = Arc::downgrade(&self.core);
            let pending = pending.clone();
            let name = reply_name.clone();
            tokio::spawn(async move {
                tokio::time::sleep(d).await;
                if let Some(core) = core.upgrade() {
                    core.push(Cmd::Exec(Box::new(move |k: &mut Kernel| {
                        let cb = pending.lock().take();
                        if let Some(cb) = cb {
                            k.kill_local(&name, Vec::new());
                            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                cb(Err(CalError::Timeout))
                            }));
                            if r.is_err() {
                                tracing::warn!("cal callback panicked");
                            }
                        }
                    })));
                }
            })
            .abort_handle()
        });
        let p2 = pending.clone();
        let watch_target = timeout.is_none();
        self.create_port(
            reply_name.clone(),
            Some(Box::new(move |cx, reply_msg| {
                if let Some(cb) = p2.lock().take() {
                    if let Some(t) = &timer {
                        t.abort();
                    }
                    if watch_target {
                        cx.k.unmon(mon_id);
                    }
                    cb(Ok(reply_msg));
                }
                cx.kil_self(Vec::new());
                Ok(())
            })),
            Vec::new(),
        );
        if watch_target {
            let core = Arc::downgrade(&self.core);
            let name: Str = reply_name;
            self.mon(
                &target,
                mon_id,
                Monitor::callback(move |reason| {
                    if let Some(cb) = pending.lock().take() {
                        if let Some(core) = core.upgrade() {
                            core.push(Cmd::Kill {
                                port: name,
                                reason: Vec::new(),
                            });
                        }
                        cb(Err(CalError::TargetDied(reason)));
                    }
                }),
            );
        }
        msg.push(reply);
        self.snd(&target, msg);
    }
}

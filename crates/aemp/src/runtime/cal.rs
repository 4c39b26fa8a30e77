//! `cal`: a request with a fresh reply port, answered by the first reply, built from kernel
//! primitives (a port, a monitor) and a timer.

use super::{Cmd, Core};
use crate::error::CalError;
use crate::kernel::monitor::{Monitor, Reason};
use crate::kernel::{Host, Kernel, Task};
use aemp_proto::{Msg, PortId, Str};
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;

/// What the caller gets: the first reply or the reason there was none.
pub(crate) type Callback = Box<dyn FnOnce(Result<Msg, CalError>) + Send + 'static>;

/// The callback of a `cal`, taken by whoever reports first (reply, timeout, target death).
pub(crate) type Pending = Arc<Mutex<Option<Callback>>>;

/// A `cal` as a node handle asks for it.
pub(crate) struct CalRequest {
    pub target: PortId,
    /// The request, its reply port appended and checked (see `Shared::check`).
    pub msg: Msg,
    /// The name of the reply port (to be created).
    pub reply_name: Str,
    pub timeout: Option<Duration>,
    pub callback: Callback,
}

/// Starts a `cal`: creates the reply port, watches the target, starts the timer (with a
/// timeout), and sends the request (its reply port already appended).
///
/// Exactly one outcome: the first of reply, target death and timeout takes the callback
/// (`pending`); each path then cancels what the others would have done: the reply cancels
/// the monitor and the timer, the death kills the reply port and stops the timer, the
/// timeout kills the reply port and cancels the monitor (a `mon0` for a remote target).
pub(crate) fn start(core: &Arc<Core>, k: &mut Kernel, host: &mut dyn Host, req: CalRequest) {
    let CalRequest {
        target,
        msg,
        reply_name,
        timeout,
        callback,
    } = req;
    let pending: Pending = Arc::new(Mutex::new(Some(callback)));
    let mon_id = k.shared.next_guard();
    let timer = timeout.map(|d| {
        let core = Arc::downgrade(core);
        let pending = pending.clone();
        let name = reply_name.clone();
        tokio::spawn(async move {
            tokio::time::sleep(d).await;
            if let Some(core) = core.upgrade() {
                core.push(Cmd::CalTimeout(pending, name, mon_id));
            }
        })
        .abort_handle()
    });
    let p2 = pending.clone();
    let reply_timer = timer.clone();
    k.create_port(
        reply_name.clone(),
        Some(Box::new(move |cx, reply_msg| {
            if let Some(cb) = p2.lock().take() {
                if let Some(t) = &reply_timer {
                    t.abort();
                }
                cx.k.unmon(mon_id, cx.host);
                cb(Ok(reply_msg));
            }
            cx.kil_self(Reason::normal());
            Ok(())
        })),
        Vec::new(),
    );
    let core = Arc::downgrade(core);
    let name: Str = reply_name;
    k.mon(
        &target,
        mon_id,
        Monitor::callback(move |reason| {
            if let Some(cb) = pending.lock().take() {
                if let Some(t) = &timer {
                    t.abort();
                }
                if let Some(core) = core.upgrade() {
                    core.task(Task::Kill {
                        port: name,
                        reason: Reason::normal(),
                    });
                }
                cb(Err(CalError::TargetDied(reason)));
            }
        }),
        host,
    );
    k.snd(&target, msg, host);
}

/// The timer of a `cal` expired: report the timeout unless a reply (or the target's death)
/// came first; kill the reply port and cancel the monitor of the target (`mon_id`).
pub(crate) fn timed_out(
    k: &mut Kernel,
    host: &mut dyn Host,
    pending: Pending,
    reply: &str,
    mon_id: u64,
) {
    let cb = pending.lock().take();
    if let Some(cb) = cb {
        k.unmon(mon_id, host);
        k.kill_local(reply, Reason::normal(), host);
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cb(Err(CalError::Timeout))))
            .is_err()
        {
            tracing::warn!("cal callback panicked");
        }
    }
}

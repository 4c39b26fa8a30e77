//! A port whose messages are awaited one at a time.
//!
//! Overflow rule: the queue holds at most `capacity` messages. A message that arrives when it
//! is full kills the port with `("inbox_overflow", capacity)`: the sender's monitors see the
//! loss (no silent hole), while everything queued before stays receivable. After the port is
//! dead, [`Inbox::recv`] drains the queue and then returns `None`; [`Inbox::reason`] tells
//! why it died.

use super::Node;
use crate::kernel::monitor::Reason;
use aemp_proto::{Msg, PortId};
use parking_lot::Mutex;
use std::sync::Arc;
use tokio::sync::mpsc;

/// An awaitable port: [`Inbox::recv`], or the [`futures_core::Stream`] of its messages.
///
/// Slow readers: the queue holds `capacity` messages; the message that finds it full kills
/// the port with `("inbox_overflow", capacity)` (its monitors fire, senders see the loss).
/// The messages queued before stay receivable; then `recv` (and the stream) end with `None`.
pub struct Inbox {
    port: PortId,
    node: Node,
    rx: mpsc::Receiver<Msg>,
    reason: Arc<Mutex<Option<Reason>>>,
}

pub use crate::error::InboxClosed;

impl Inbox {
    pub(crate) fn new(node: &Node, capacity: usize) -> Inbox {
        let capacity = capacity.max(1);
        let (tx, rx) = mpsc::channel::<Msg>(capacity);
        let port = node.port_with(move |cx, msg| {
            match tx.try_send(msg) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::warn!(port = %cx.self_port(), capacity, "inbox overflow, killing port");
                    cx.kil_self(vec!["inbox_overflow".into(), capacity.into()]);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => cx.kil_self(Vec::new()),
            }
            Ok(())
        });
        let reason = Arc::new(Mutex::new(None));
        let r2 = reason.clone();
        node.mon_cb(&port, move |why| *r2.lock() = Some(why)).keep();
        Inbox {
            port,
            node: node.clone(),
            rx,
            reason,
        }
    }

    /// The inbox's port ID (give it to senders).
    pub fn port(&self) -> &PortId {
        &self.port
    }

    /// The next message; `None` once the port is dead and the queue is drained.
    pub async fn recv(&mut self) -> Option<Msg> {
        self.rx.recv().await
    }

    /// The next message, or the reason the port died.
    pub async fn next(&mut self) -> Result<Msg, InboxClosed> {
        match self.rx.recv().await {
            Some(m) => Ok(m),
            None => Err(InboxClosed(self.reason().unwrap_or_default())),
        }
    }

    /// A message if one is queued right now.
    pub fn try_recv(&mut self) -> Option<Msg> {
        self.rx.try_recv().ok()
    }

    /// Why the port died, once it has (and the monitor has run).
    pub fn reason(&self) -> Option<Reason> {
        self.reason.lock().clone()
    }
}

impl futures_core::Stream for Inbox {
    type Item = Msg;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Msg>> {
        self.get_mut().rx.poll_recv(cx)
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        let _ = self.node.kil(&self.port, Vec::new());
    }
}

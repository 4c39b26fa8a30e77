//! Node up/down notifications as a stream that says when its reader fell behind.
//!
//! The node keeps the last 1024 events for its readers. A reader that falls further behind
//! loses the oldest ones; instead of skipping them silently, [`NodeEvents`] then yields one
//! `Err(`[`MissedEvents`]`)` saying how many were lost, and goes on with the oldest event it
//! still has. A reader that saw a [`MissedEvents`] should ask for the current state again
//! ([`Node::up_nodes`]).

use super::Node;
use crate::runtime::NodeEvent;
use aemp_proto::NodeId;
use futures_core::Stream;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};

/// How many node events the reader missed because it fell behind (see [`NodeEvents`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("missed {0} node events: the reader fell behind")]
pub struct MissedEvents(pub u64);

/// A receive in progress; it owns the receiver until it completes.
type Pending = Pin<
    Box<dyn Future<Output = (Result<NodeEvent, RecvError>, broadcast::Receiver<NodeEvent>)> + Send>,
>;

/// Node up/down events from [`Node::node_events`], in order: a [`futures_core::Stream`] of
/// `Result<NodeEvent, MissedEvents>`, and [`NodeEvents::recv`] for the same one at a time.
///
/// Slow readers: the node keeps the last 1024 events. A reader that falls further behind
/// gets one `Err(MissedEvents(n))` with the number of events it lost, then the oldest events
/// still kept; nothing is skipped without saying so. The stream ends (`None`) when the node
/// is gone.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), aemp::Error> {
/// let node = aemp::Node::new("events-doc/%u")?;
/// let mut events = node.node_events();
/// // Nothing happened yet.
/// assert!(events.try_recv().is_none());
/// # Ok(()) }
/// ```
pub struct NodeEvents {
    /// The receiver, unless a pending receive owns it.
    rx: Option<broadcast::Receiver<NodeEvent>>,
    pending: Option<Pending>,
}

fn item(r: Result<NodeEvent, RecvError>) -> Option<Result<NodeEvent, MissedEvents>> {
    match r {
        Ok(e) => Some(Ok(e)),
        Err(RecvError::Lagged(n)) => Some(Err(MissedEvents(n))),
        Err(RecvError::Closed) => None,
    }
}

impl NodeEvents {
    pub(crate) fn new(rx: broadcast::Receiver<NodeEvent>) -> NodeEvents {
        NodeEvents {
            rx: Some(rx),
            pending: None,
        }
    }

    /// The next event, `Err(MissedEvents(n))` after the reader fell behind by `n` events, or
    /// `None` once the node is gone. Cancel safe: dropping the future loses no event.
    pub async fn recv(&mut self) -> Option<Result<NodeEvent, MissedEvents>> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// The next event if one is waiting right now (or the news of missed ones); `None` when
    /// nothing is waiting or the node is gone.
    pub fn try_recv(&mut self) -> Option<Result<NodeEvent, MissedEvents>> {
        if self.pending.is_some() {
            let waker = Waker::from(Arc::new(NoWake));
            return match Pin::new(&mut *self).poll_next(&mut Context::from_waker(&waker)) {
                Poll::Ready(r) => r,
                Poll::Pending => None,
            };
        }
        match self.rx.as_mut()?.try_recv() {
            Ok(e) => Some(Ok(e)),
            Err(TryRecvError::Lagged(n)) => Some(Err(MissedEvents(n))),
            Err(TryRecvError::Empty | TryRecvError::Closed) => None,
        }
    }

    /// Waits for the next node that comes up; `None` when the node is gone. Down events and
    /// missed events are passed over (after a [`MissedEvents`], a node may have come up
    /// unseen: [`Node::wait_up`] checks the current state then).
    pub async fn next_up(&mut self) -> Option<NodeId> {
        loop {
            if let Ok(NodeEvent::Up(id)) = self.recv().await? {
                return Some(id);
            }
        }
    }
}

impl Stream for NodeEvents {
    type Item = Result<NodeEvent, MissedEvents>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.pending.is_none() {
            let Some(rx) = this.rx.as_mut() else {
                return Poll::Ready(None);
            };
            // The common case without an allocation: an event is already waiting.
            match rx.try_recv() {
                Ok(e) => return Poll::Ready(Some(Ok(e))),
                Err(TryRecvError::Lagged(n)) => return Poll::Ready(Some(Err(MissedEvents(n)))),
                Err(TryRecvError::Closed) => return Poll::Ready(None),
                Err(TryRecvError::Empty) => {}
            }
            let Some(mut rx) = this.rx.take() else {
                return Poll::Ready(None);
            };
            this.pending = Some(Box::pin(async move {
                let r = rx.recv().await;
                (r, rx)
            }));
        }
        let Some(fut) = this.pending.as_mut() else {
            return Poll::Ready(None);
        };
        let (r, rx) = std::task::ready!(fut.as_mut().poll(cx));
        this.pending = None;
        this.rx = Some(rx);
        Poll::Ready(item(r))
    }
}

impl std::fmt::Debug for NodeEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeEvents")
            .field("waiting", &self.pending.is_some())
            .finish()
    }
}

/// A waker for polling once without waiting ([`NodeEvents::try_recv`]).
struct NoWake;

impl Wake for NoWake {
    fn wake(self: Arc<Self>) {}
}

/// Waits for the next node that comes up on `events` (see [`NodeEvents::next_up`]).
pub async fn next_up(events: &mut NodeEvents) -> Option<NodeId> {
    events.next_up().await
}

impl Node {
    /// Node up/down notifications from now on, as a stream that reports a reader falling
    /// behind (see [`NodeEvents`]).
    ///
    /// ```
    /// # use aemp::{msg, Config, Node, NodeEvent};
    /// # use std::time::Duration;
    /// # async fn net(name: &str) -> Result<Node, aemp::Error> {
    /// #     let cfg = Config::builder().norc(true).nodeid(format!("{name}/%u"))
    /// #         .binds(["127.0.0.1:0"]).secret("doc").build()?;
    /// #     Node::configure(cfg).await
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (a, b) = (net("a").await?, net("b").await?);
    /// let mut events = a.node_events();
    /// a.connect(b.listen_addrs()[0])?;
    /// while let Some(event) = events.recv().await {
    ///     match event {
    ///         Ok(NodeEvent::Up(n)) if &n == b.id() => break,
    ///         Ok(other) => println!("{other:?}"),
    ///         Err(missed) => eprintln!("{missed}"), // this reader fell behind
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn node_events(&self) -> NodeEvents {
        NodeEvents::new(self.core().events.subscribe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(n: usize) -> NodeEvent {
        NodeEvent::Up(NodeId::new(format!("n{n}")).expect("node ID"))
    }

    async fn next(ev: &mut NodeEvents) -> Option<Result<NodeEvent, MissedEvents>> {
        std::future::poll_fn(|cx| Pin::new(&mut *ev).poll_next(cx)).await
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_lagging_reader_is_told_how_many_events_it_missed() {
        let (tx, rx) = broadcast::channel(4);
        let mut ev = NodeEvents::new(rx);
        for i in 0..10 {
            tx.send(up(i)).unwrap();
        }
        // Ten sent, four kept: six missed, said once, then the four newest in order.
        assert_eq!(next(&mut ev).await, Some(Err(MissedEvents(6))));
        for i in 6..10 {
            assert_eq!(next(&mut ev).await, Some(Ok(up(i))));
        }
        // recv and try_recv say it the same way.
        for i in 10..15 {
            tx.send(up(i)).unwrap();
        }
        assert_eq!(ev.try_recv(), Some(Err(MissedEvents(1))));
        assert_eq!(ev.recv().await, Some(Ok(up(11))));
        assert_eq!(ev.try_recv(), Some(Ok(up(12))));
        assert_eq!(
            MissedEvents(6).to_string(),
            "missed 6 node events: the reader fell behind"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_node_keeps_1024_events_for_a_slow_reader() {
        let node = Node::new("events-test/%u").unwrap();
        let mut ev = node.node_events();
        for i in 0..1100 {
            node.core().events.send(up(i)).unwrap();
        }
        assert_eq!(ev.recv().await, Some(Err(MissedEvents(76))));
        assert_eq!(ev.recv().await, Some(Ok(up(76))));
        node.shutdown().await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn waiting_reader_wakes_and_a_dropped_recv_loses_nothing() {
        let (tx, rx) = broadcast::channel(4);
        let mut ev = NodeEvents::new(rx);
        // A receive that is given up (timed out) while waiting ...
        let r = tokio::time::timeout(std::time::Duration::from_millis(10), ev.recv()).await;
        assert!(r.is_err());
        assert_eq!(ev.try_recv(), None);
        // ... leaves the reader intact: the next event arrives, also for try_recv.
        tx.send(up(1)).unwrap();
        assert_eq!(ev.try_recv(), Some(Ok(up(1))));
        let waiter = tokio::spawn(async move {
            let first = ev.recv().await;
            let next = ev.recv().await;
            (first, next)
        });
        tokio::task::yield_now().await;
        tx.send(up(2)).unwrap();
        drop(tx);
        let (first, next) = waiter.await.unwrap();
        assert_eq!(first, Some(Ok(up(2))));
        // The node is gone: the stream ends.
        assert_eq!(next, None);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn next_up_passes_over_down_and_missed_events() {
        let (tx, rx) = broadcast::channel(2);
        let mut ev = NodeEvents::new(rx);
        for i in 0..3 {
            tx.send(up(i)).unwrap();
        }
        let down = NodeEvent::Down(NodeId::new("d").unwrap(), "gone".into());
        tx.send(down).unwrap();
        tx.send(up(7)).unwrap();
        assert_eq!(ev.next_up().await, Some(NodeId::new("n7").unwrap()));
        drop(tx);
        assert_eq!(next_up(&mut ev).await, None);
    }
}

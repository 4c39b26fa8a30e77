//! Helpers shared by the kernel integration tests.
//!
//! Every await in the tests goes through [`within`], so that a kernel bug makes a test fail
//! after 10 s instead of hanging the suite.

#![allow(dead_code)]

use aemp::{Msg, Node, PortId, Reason};
use std::future::IntoFuture;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Upper bound for any single await in the tests.
pub const LIMIT: Duration = Duration::from_secs(10);

/// Awaits `f`, failing the test if it takes longer than [`LIMIT`].
pub async fn within<F: IntoFuture>(f: F) -> F::Output {
    match tokio::time::timeout(LIMIT, f.into_future()).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {LIMIT:?}"),
    }
}

/// A fresh local node with a randomised ID.
pub fn node() -> Node {
    Node::new("ktest/%u").expect("valid node ID pattern")
}

/// Lets the dispatcher run everything queued so far, including what those commands queue in
/// turn (handler sends, monitor firings): each `port_count` round trip is queued behind the
/// previous batch and its follow-ups.
pub async fn settle(node: &Node) {
    for _ in 0..4 {
        within(node.port_count()).await;
    }
}

/// A port that forwards every message it gets (tag included) to a channel the test reads.
/// Built on a plain default handler, so that it does not depend on `Inbox`.
pub struct Recorder {
    pub port: PortId,
    rx: mpsc::UnboundedReceiver<Msg>,
}

impl Recorder {
    pub fn new(node: &Node) -> Recorder {
        let (tx, rx) = mpsc::unbounded_channel();
        let port = node.port_with(move |_, m| {
            let _ = tx.send(m);
            Ok(())
        });
        Recorder { port, rx }
    }

    /// The next message; fails the test if none comes within [`LIMIT`].
    pub async fn next(&mut self) -> Msg {
        within(self.rx.recv())
            .await
            .expect("recorder port died before the expected message")
    }

    /// A message if one has been delivered already.
    pub fn try_next(&mut self) -> Option<Msg> {
        self.rx.try_recv().ok()
    }
}

/// A reason-carrying future for `port`'s death, bounded by [`LIMIT`].
pub async fn death(node: &Node, port: &PortId) -> Reason {
    within(node.monitor(port)).await
}

/// A shared call counter.
#[derive(Clone, Default)]
pub struct Counter(Arc<AtomicUsize>);

impl Counter {
    pub fn hit(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// Sets a flag when dropped (to observe that the kernel dropped a closure or future).
pub struct DropFlag(pub Arc<std::sync::atomic::AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Polls `cond` until it holds, failing after [`LIMIT`] (for effects without a message).
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let poll = async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    if tokio::time::timeout(LIMIT, poll).await.is_err() {
        panic!("condition never held: {what}");
    }
}

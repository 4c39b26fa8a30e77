//! "Messages from one node to one port arrive in the order sent", when the two sends come
//! from different places of the node: a thread's `Node` handle, and a port handler that
//! runs after that send returned (it waits for it). The handle's message is queued for the
//! node task, which is busy running the handler; the handler's message must still go out
//! after it, locally and to another node, whichever way the handler sends.

mod net_common;
use aemp::{msg, Cx, HandlerResult, Msg, Node, PortId, Reason, Value};
use net_common::*;
use std::sync::mpsc as std_mpsc;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::mpsc;

/// How the handler sends its message.
#[derive(Clone, Copy, Debug)]
enum Via {
    /// `Cx::snd`.
    Cx,
    /// A `Node` handle used inside the handler.
    Handle,
}

/// A port on `node` that records what it receives.
fn recorder(node: &Node) -> (PortId, mpsc::UnboundedReceiver<Msg>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let port = node.port_with(move |_cx, m| {
        let _ = tx.send(m);
        Ok(())
    });
    (port, rx)
}

/// `sender`'s handler blocks until a thread has sent `["first"]` to `target` with a handle
/// of `sender` (queued: the node task is busy with that very handler), then does `then`.
async fn thread_then_handler(
    sender: &Node,
    target: PortId,
    mut then: impl FnMut(&mut Cx<'_>, &PortId) -> HandlerResult + Send + 'static,
) {
    let (entered_tx, entered_rx) = std_mpsc::channel::<()>();
    let (sent_tx, sent_rx) = std_mpsc::channel::<()>();
    let sent_rx = Mutex::new(sent_rx);
    let to = target.clone();
    let h = sender.port_with(move |cx, _m| {
        let _ = entered_tx.send(());
        // The thread's send has returned before this one starts.
        let waited = sent_rx
            .lock()
            .map(|r| r.recv_timeout(Duration::from_secs(10)).is_ok())
            .unwrap_or(false);
        assert!(waited, "the thread never sent");
        then(cx, &to)
    });
    sender.snd(&h, msg!["go"]).unwrap();
    let handle = sender.clone();
    let thread = tokio::task::spawn_blocking(move || {
        entered_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the handler never ran");
        handle.snd(&target, msg!["first"]).unwrap();
        sent_tx.send(()).unwrap();
    });
    within("thread", thread).await.unwrap();
}

/// After [`thread_then_handler`], the handler sends `["second"]` `via`: `rx` must see the
/// two messages in order.
async fn handle_then_handler(
    sender: &Node,
    target: PortId,
    mut rx: mpsc::UnboundedReceiver<Msg>,
    via: Via,
) {
    let inner = sender.clone();
    thread_then_handler(sender, target, move |cx, to| {
        match via {
            Via::Cx => cx.snd(to, msg!["second"]),
            Via::Handle => inner.snd(to, msg!["second"])?,
        }
        Ok(())
    })
    .await;
    let a = within("first message", rx.recv()).await.unwrap();
    let b = within("second message", rx.recv()).await.unwrap();
    assert_eq!((a, b), (msg!["first"], msg!["second"]), "{via:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_send_does_not_overtake_an_earlier_send_of_a_thread_locally() {
    for via in [Via::Cx, Via::Handle] {
        let n = node(&format!("order-local-{via:?}")).await;
        let (target, rx) = recorder(&n);
        handle_then_handler(&n, target, rx, via).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_send_does_not_overtake_an_earlier_send_of_a_thread_remotely() {
    for via in [Via::Cx, Via::Handle] {
        let a = node(&format!("order-a-{via:?}")).await;
        let b = node(&format!("order-b-{via:?}")).await;
        link(&a, &b).await;
        let (target, rx) = recorder(&b);
        handle_then_handler(&a, target, rx, via).await;
    }
}

/// A handler's `kil` of a port of another node does not overtake a message a thread sent
/// that port before: the port gets the message, then dies with the handler's reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_kil_does_not_overtake_an_earlier_send_of_a_thread() {
    let a = node("order-kil-a").await;
    let b = node("order-kil-b").await;
    link(&a, &b).await;
    let (target, mut rx) = recorder(&b);
    let died = b.monitor(&target);
    thread_then_handler(&a, target, |cx, to| {
        cx.kil(to, Reason::from(vec![Value::from("done")]))?;
        Ok(())
    })
    .await;
    let first = within("first message", rx.recv()).await;
    assert_eq!(
        first,
        Some(msg!["first"]),
        "killed before the message arrived"
    );
    let reason = within("death", died).await;
    assert_eq!(reason[0], Value::from("done"), "{reason}");
}

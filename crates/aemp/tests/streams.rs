//! `Inbox`, `DbWatch` and `NodeEvents` as `futures_core::Stream`s, and what a slow reader
//! of each gets.

mod net_common;

use aemp::{msg, Node, NodeEvent, Value};
use futures_core::Stream;
use net_common::{node, within};
use std::pin::Pin;

/// The next item of any stream (what `StreamExt::next` does).
async fn next<S: Stream + Unpin>(s: &mut S) -> Option<S::Item> {
    std::future::poll_fn(|cx| Pin::new(&mut *s).poll_next(cx)).await
}

fn local() -> Node {
    Node::new("streams/%u").unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn inbox_stream_yields_messages_and_ends_after_an_overflow() {
    let node = local();
    let mut inbox = node.inbox(2);
    let port = inbox.port().clone();
    node.snd(&port, msg!["a", 1]).unwrap();
    assert_eq!(within("first", next(&mut inbox)).await, Some(msg!["a", 1]));
    // A slow reader: the third message finds the queue full and kills the port; the two
    // queued ones are still delivered, then the stream ends.
    for i in 0..5 {
        node.snd(&port, msg!["b", i]).unwrap();
    }
    assert_eq!(within("b0", next(&mut inbox)).await, Some(msg!["b", 0]));
    assert_eq!(within("b1", next(&mut inbox)).await, Some(msg!["b", 1]));
    assert_eq!(within("end", next(&mut inbox)).await, None);
    assert_eq!(
        inbox.reason(),
        Some(vec![Value::from("inbox_overflow"), Value::from(2)].into())
    );
}

#[tokio::test(flavor = "current_thread")]
async fn db_watch_stream_yields_contents_then_every_change() {
    let node = local();
    let mut watch = node.db_mon("jobs").unwrap();
    let first = within("contents", next(&mut watch)).await.unwrap();
    assert!(first.contents.is_empty());
    // A slow reader loses nothing: three changes wait until it reads them.
    for k in ["a", "b", "c"] {
        node.db_set("jobs", k, Value::from(k)).unwrap();
    }
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let c = within("change", next(&mut watch)).await.unwrap();
        seen.extend(c.added.iter().map(|k| k.to_string()));
    }
    assert_eq!(seen, ["a", "b", "c"]);
}

#[tokio::test(flavor = "current_thread")]
async fn node_events_stream_sees_up_and_down() {
    let a = node("streams-a").await;
    let b = node("streams-b").await;
    let mut events = a.node_events();
    a.connect(b.listen_addrs()[0]).unwrap();
    assert_eq!(
        within("up", next(&mut events)).await,
        Some(Ok(NodeEvent::Up(b.id().clone())))
    );
    b.shutdown().await;
    match within("down", next(&mut events)).await {
        Some(Ok(NodeEvent::Down(n, _))) => assert_eq!(&n, b.id()),
        other => panic!("expected Down, got {other:?}"),
    }
}

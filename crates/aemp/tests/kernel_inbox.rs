//! Inbox ports: awaited one message at a time, bounded, with a defined overflow.

mod common;

use aemp::{msg, InboxClosed, Reason, Value};
use common::{node, settle, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_receives_in_order() {
    let node = node();
    let mut inbox = node.inbox(2_000);
    for i in 0..1_000 {
        node.snd(inbox.port(), msg!["n", i]).unwrap();
    }
    for i in 0..1_000 {
        assert_eq!(within(inbox.recv()).await, Some(msg!["n", i]));
    }
    assert_eq!(inbox.try_recv(), None);
    assert_eq!(inbox.reason(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_producer_task_and_consumer_interleave() {
    let node = node();
    let mut inbox = node.inbox(64);
    let n2 = node.clone();
    let port = inbox.port().clone();
    // The producer waits for an ack every 32 messages, so the queue never overflows.
    let mut acks = node.inbox(16);
    let ack_port = acks.port().clone();
    let producer = tokio::spawn(async move {
        for i in 0..2_000 {
            n2.snd(&port, msg!["n", i]).unwrap();
            if i % 32 == 31 {
                within(acks.recv()).await.unwrap();
            }
        }
    });
    for i in 0..2_000 {
        assert_eq!(within(inbox.recv()).await, Some(msg!["n", i]));
        if i % 32 == 31 {
            node.snd(&ack_port, msg!["ack"]).unwrap();
        }
    }
    within(producer).await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn inbox_receives_from_handlers() {
    let node = node();
    let mut inbox = node.inbox(8);
    let out = inbox.port().clone();
    let p = node.port_with(move |cx, m| {
        cx.snd(&out, msg!["seen", m[0].clone()]);
        Ok(())
    });
    node.snd(&p, msg!["a"]).unwrap();
    node.snd(&p, msg!["b"]).unwrap();
    assert_eq!(within(inbox.next()).await, Ok(msg!["seen", "a"]));
    assert_eq!(within(inbox.next()).await, Ok(msg!["seen", "b"]));
}

#[tokio::test(flavor = "current_thread")]
async fn inbox_overflow_kills_port_keeps_queued_messages() {
    let node = node();
    let mut inbox = node.inbox(4);
    let port = inbox.port().clone();
    let died = node.monitor(&port);
    for i in 0..10 {
        node.snd(&port, msg!["n", i]).unwrap();
    }
    let expected = Reason::from(vec![Value::from("inbox_overflow"), Value::from(4)]);
    assert_eq!(within(died).await, expected);
    assert!(!within(node.port_exists(&port)).await);
    // Everything queued before the overflow is still there, in order.
    for i in 0..4 {
        assert_eq!(within(inbox.recv()).await, Some(msg!["n", i]));
    }
    assert_eq!(within(inbox.recv()).await, None);
    assert_eq!(inbox.reason(), Some(expected.clone()));
    assert_eq!(within(inbox.next()).await, Err(InboxClosed(expected)));
    // Later messages are dropped.
    node.snd(&port, msg!["late"]).unwrap();
    settle(&node).await;
    assert_eq!(inbox.try_recv(), None);
}

#[tokio::test(flavor = "current_thread")]
async fn inbox_killed_explicitly_reports_reason() {
    let node = node();
    let mut inbox = node.inbox(4);
    node.snd(inbox.port(), msg!["one"]).unwrap();
    node.kil(inbox.port(), vec!["shutdown".into()]).unwrap();
    assert_eq!(within(inbox.recv()).await, Some(msg!["one"]));
    assert_eq!(within(inbox.recv()).await, None);
    assert_eq!(inbox.reason(), Some(vec![Value::from("shutdown")].into()));
}

#[tokio::test(flavor = "current_thread")]
async fn dropping_the_inbox_kills_its_port() {
    let node = node();
    let inbox = node.inbox(4);
    let port = inbox.port().clone();
    settle(&node).await;
    let before = within(node.port_count()).await;
    assert!(within(node.port_exists(&port)).await);
    let died = node.monitor(&port);
    settle(&node).await;
    drop(inbox);
    assert_eq!(within(died).await, Vec::<Value>::new());
    assert!(!within(node.port_exists(&port)).await);
    assert_eq!(within(node.port_count()).await, before - 1);
}

#[tokio::test(flavor = "current_thread")]
async fn inbox_capacity_zero_holds_one() {
    let node = node();
    let mut inbox = node.inbox(0);
    node.snd(inbox.port(), msg!["only"]).unwrap();
    assert_eq!(within(inbox.recv()).await, Some(msg!["only"]));
    let died = node.monitor(inbox.port());
    node.snd(inbox.port(), msg!["a"]).unwrap();
    node.snd(inbox.port(), msg!["b"]).unwrap();
    let r = within(died).await;
    assert_eq!(r[0], Value::from("inbox_overflow"));
    assert_eq!(within(inbox.recv()).await, Some(msg!["a"]));
    assert_eq!(within(inbox.recv()).await, None);
}

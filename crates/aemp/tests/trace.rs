//! Message tracing: with `AEMP_TRACE=1` at node start, every message a node sends to a peer,
//! receives from one, or delivers locally is logged (target `aemp::trace`, INFO); without it
//! nothing is. One test in this binary, as it changes the process environment.

mod log_capture;
mod net_common;
use aemp::{msg, Node};
use log_capture::Logs;
use net_common::{link, node, within};

fn trace_lines(logs: &Logs) -> Vec<String> {
    let lines = logs.lines();
    lines
        .into_iter()
        .filter(|l| l.contains("aemp::trace"))
        .collect()
}

/// `a` sends to a port of `b` and to a port of its own; both arrive.
async fn traffic(a: &Node, b: &Node) {
    link(a, b).await;
    let mut remote = b.inbox(4);
    let mut local = a.inbox(4);
    a.snd(remote.port(), msg!["hello", 1, "x".repeat(1000)])
        .unwrap();
    a.snd(local.port(), msg!["self", 2]).unwrap();
    within("remote", remote.recv()).await.unwrap();
    within("local", local.recv()).await.unwrap();
}

#[tokio::test]
async fn tracing_logs_every_message_when_on_and_nothing_when_off() {
    let (logs, _guard) = Logs::capture(tracing::Level::INFO);

    std::env::set_var("AEMP_TRACE", "1");
    let a = node("tr-a").await;
    let b = node("tr-b").await;
    std::env::remove_var("AEMP_TRACE");
    traffic(&a, &b).await;
    let lines = trace_lines(&logs);
    let has = |what: &str| lines.iter().any(|l| l.contains(what));
    assert!(
        has(r#" INFO aemp::trace: snd tr-b#"#) && has(r#": ["hello",1,"xxxx"#),
        "{lines:#?}"
    );
    assert!(
        has(r#"rcv tr-b#"#) && has(" from tr-a: [\"hello\",1,"),
        "{lines:#?}"
    );
    assert!(has(r#" (local): ["self",2]"#), "{lines:#?}");
    // The long string is cut: no line carries all of it.
    assert!(lines.iter().all(|l| !l.contains(&"x".repeat(1000))));
    assert!(lines.iter().any(|l| l.ends_with('…')), "{lines:#?}");

    // Nodes started without the variable trace nothing.
    let before = lines.len();
    let c = node("tr-c").await;
    let d = node("tr-d").await;
    traffic(&c, &d).await;
    let lines = trace_lines(&logs);
    let new: Vec<_> = lines[before..]
        .iter()
        .filter(|l| l.contains("tr-c") || l.contains("tr-d"))
        .collect();
    assert!(new.is_empty(), "{new:#?}");
}

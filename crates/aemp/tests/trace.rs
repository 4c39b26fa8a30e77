//! Message tracing: with `AEMP_TRACE=1` at node start, every message a node sends to a peer,
//! receives from one, or delivers locally is logged (target `aemp::trace`, INFO); without it
//! nothing is. One test in this binary, as it changes the process environment.

mod net_common;
use aemp::{msg, Node};
use net_common::{link, node, within};
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;
    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}

impl Logs {
    fn trace_lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .filter(|l| l.contains("aemp::trace"))
            .map(str::to_owned)
            .collect()
    }
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
    let logs = Logs::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    std::env::set_var("AEMP_TRACE", "1");
    let a = node("tr-a").await;
    let b = node("tr-b").await;
    std::env::remove_var("AEMP_TRACE");
    traffic(&a, &b).await;
    let lines = logs.trace_lines();
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
    let lines = logs.trace_lines();
    let new: Vec<_> = lines[before..]
        .iter()
        .filter(|l| l.contains("tr-c") || l.contains("tr-d"))
        .collect();
    assert!(new.is_empty(), "{new:#?}");
}

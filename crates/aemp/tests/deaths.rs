//! A port killed by its own handler is reported: a `tracing` WARN with the port and the
//! reason when a subscriber is installed, one line on stderr when none is; switched off by
//! `Node::set_log_deaths(false)`. What monitors see is unchanged.

mod common;
mod log_capture;

use aemp::{msg, MsgExt, Node, PortId, Value};
use common::{node, settle, within};
use log_capture::Logs;

/// Four ports that die by their handler in the four ways, each sent one message; returns
/// them with the reason their monitor saw.
async fn four_deaths(node: &Node) -> Vec<(PortId, aemp::Reason)> {
    let failing = node.port_with(|_, _| Err("no such job".into()));
    let panicking = node.port_with(|_, _| panic!("worker bug"));
    let typed = node.port_with(|_, m| {
        let (_n,): (u64,) = m.decode()?;
        Ok(())
    });
    let untagged = node.port().on("known", |_, _| Ok(())).build();
    let mut out = Vec::new();
    for (port, m) in [
        (failing, msg!["job", 1]),
        (panicking, msg!["job", 2]),
        (typed, msg!["not a number"]),
        (untagged, msg!["unknown", 3]),
    ] {
        let died = node.monitor(&port);
        node.snd(&port, m).unwrap();
        out.push((port, within(died).await));
    }
    out
}

// One thread: the handlers run on it, under the test's subscriber.
#[tokio::test(flavor = "current_thread")]
async fn handler_deaths_are_warnings_with_port_and_reason() {
    let (logs, _log) = Logs::capture(tracing::Level::INFO);
    let node = node();
    let deaths = four_deaths(&node).await;
    // Monitors see the same reasons as before.
    assert_eq!(deaths[0].1, vec![Value::from("die"), "no such job".into()]);
    assert_eq!(deaths[1].1, vec![Value::from("die"), "worker bug".into()]);
    assert_eq!(deaths[2].1[0], Value::from("die"));
    assert_eq!(deaths[3].1[0], Value::from("unhandled_message"));
    let lines = logs.lines();
    for (port, reason) in &deaths {
        let line = lines
            .iter()
            .find(|l| l.contains(&format!("port={port} ")))
            .unwrap_or_else(|| panic!("no log line for {port}: {lines:#?}"));
        assert!(line.contains(" WARN "), "{line}");
        assert!(line.contains("port killed by its handler"), "{line}");
        assert!(line.contains(&format!("reason={reason}")), "{line}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l.contains(r#"reason=["die","no such job"]"#)),
        "{lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l.contains(
            r#"reason=["die","element 0: expected u64, found string \"not a number\""]"#
        )),
        "{lines:#?}"
    );

    // A kil is not a handler death: no warning (its monitors see it).
    let before = logs.lines().len();
    let killed = node.port_with(|_, _| Ok(()));
    let died = node.monitor(&killed);
    node.kil(&killed, vec!["stop".into()]).unwrap();
    within(died).await;
    settle(&node).await;
    assert_eq!(logs.lines().len(), before, "{:#?}", logs.lines());

    // Switched off: nothing.
    node.set_log_deaths(false);
    four_deaths(&node).await;
    settle(&node).await;
    assert_eq!(logs.lines().len(), before, "{:#?}", logs.lines());
}

/// Run by `without_a_subscriber_deaths_go_to_stderr` in a child process, so that no
/// subscriber is installed at all.
#[tokio::test(flavor = "current_thread")]
#[ignore = "run as a child process by without_a_subscriber_deaths_go_to_stderr"]
async fn child_dies_without_subscriber() {
    let node = node();
    let deaths = four_deaths(&node).await;
    for (port, _) in &deaths {
        println!("PORT {port}");
    }
    let quiet = aemp::Node::new("quiet/%u").unwrap();
    quiet.set_log_deaths(false);
    let p = quiet.port_with(|_, _| Err("silenced".into()));
    let died = quiet.monitor(&p);
    quiet.snd(&p, msg!["x"]).unwrap();
    within(died).await;
}

#[test]
fn without_a_subscriber_deaths_go_to_stderr() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_dies_without_subscriber",
            "--nocapture",
            "--ignored",
        ])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let ports: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("PORT "))
        .collect();
    assert_eq!(ports.len(), 4, "{stdout}");
    let wanted = [
        format!(
            r#"aemp: port {} killed by its handler: ["die","no such job"]"#,
            ports[0]
        ),
        format!(
            r#"aemp: port {} killed by its handler: ["die","worker bug"]"#,
            ports[1]
        ),
        format!(
            r#"aemp: port {} killed by its handler: ["die","element 0: expected u64, found string \"not a number\""]"#,
            ports[2]
        ),
        format!(
            r#"aemp: port {} killed by its handler: ["unhandled_message","#,
            ports[3]
        ),
    ];
    for w in &wanted {
        assert!(
            stderr.lines().any(|l| l.starts_with(w.as_str())),
            "missing {w:?} in:\n{stderr}"
        );
    }
    assert!(!stderr.contains("silenced"), "{stderr}");
}

/// A function called on the node port (`["app::f", args...]` to `node#`) that fails or
/// panics kills no port, but its failure is reported the same way (was silently dropped).
#[tokio::test(flavor = "current_thread")]
async fn failing_node_port_functions_are_warnings() {
    let (logs, _log) = Logs::capture(tracing::Level::INFO);
    let node = node();
    node.register("app::refuse", |_cx, _args| Err("bad request".into()));
    node.register("app::crash", |_cx, _args| panic!("function bug"));
    node.register("app::fine", |_cx, _args| Ok(()));
    let node_port = node.id().node_port();
    for f in ["app::refuse", "app::crash", "app::fine"] {
        node.snd(&node_port, msg![f, 1]).unwrap();
    }
    settle(&node).await;
    let lines = logs.lines();
    let failed: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("node-port function failed"))
        .collect();
    assert_eq!(failed.len(), 2, "{lines:#?}");
    assert!(failed[0].contains(" WARN "), "{failed:#?}");
    assert!(
        failed[0].contains("function=\"app::refuse\""),
        "{failed:#?}"
    );
    assert!(
        failed[0].contains(r#"reason=["die","bad request"]"#),
        "{failed:#?}"
    );
    assert!(failed[1].contains("function=\"app::crash\""), "{failed:#?}");
    assert!(
        failed[1].contains(r#"reason=["die","function bug"]"#),
        "{failed:#?}"
    );

    // Switched off with the handler deaths.
    node.set_log_deaths(false);
    node.snd(&node_port, msg!["app::refuse", 2]).unwrap();
    settle(&node).await;
    assert_eq!(
        logs.lines()
            .iter()
            .filter(|l| l.contains("node-port function failed"))
            .count(),
        2
    );
}

//! `aemp stats <node>` against a node running in this test process: the built binary asks
//! the node (through `--connect`) and prints its statistics table.

use aemp::{msg, Config, Node};
use std::process::{Command, Stdio};
use std::time::Duration;

const AEMP: &str = env!("CARGO_BIN_EXE_aemp");

async fn node(name: &str) -> Node {
    let cfg = Config::builder()
        .norc(true)
        .nodeid(name)
        .binds(["127.0.0.1:0"])
        .secret("t0p")
        .build()
        .unwrap();
    Node::configure(cfg).await.unwrap()
}

/// Runs the tool with a fresh rc file holding the shared secret.
async fn aemp(args: &[&str]) -> std::process::Output {
    let dir = std::env::temp_dir().join(format!("aemp-cli-stats-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rc = dir.join("rc");
    std::fs::write(&rc, r#"{"secret": "t0p"}"#).unwrap();
    let mut c = Command::new(AEMP);
    c.args(args)
        .env("PERL_ANYEVENT_MP_RC", &rc)
        .env("HOME", &dir)
        .env_remove("RUST_LOG")
        .env_remove("AE_VERBOSE")
        .stdin(Stdio::null());
    let out = tokio::task::spawn_blocking(move || c.output().expect("aemp runs"))
        .await
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_prints_the_peers_of_a_node() {
    let target = node("cli-stats-b").await;
    let peer = node("cli-stats-a").await;
    peer.connect(target.listen_addrs()[0]).unwrap();
    assert!(peer.wait_up(target.id(), Duration::from_secs(10)).await);
    for _ in 0..3 {
        tokio::time::timeout(
            Duration::from_secs(10),
            peer.cal(&target.node_port(), msg!["time"]),
        )
        .await
        .unwrap()
        .unwrap();
    }
    let addr = target.listen_addrs()[0].to_string();
    let o = aemp(&["--connect", &addr, "stats", "cli-stats-b"]).await;
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("node cli-stats-b: 0 refused handshakes, 0 protocol errors, "),
        "{out}"
    );
    let cols: Vec<&str> = lines[1]
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        cols,
        [
            "peer",
            "msgs in",
            "bytes in",
            "msgs out",
            "bytes out",
            "queued bytes",
            "reconnects"
        ],
        "{out}"
    );
    // The peer that asked three times: at least 3 messages each way, no reconnect.
    let row: Vec<&str> = lines
        .iter()
        .find(|l| l.starts_with("cli-stats-a "))
        .unwrap_or_else(|| panic!("no row for the peer:\n{out}"))
        .split_whitespace()
        .collect();
    let n = |i: usize| row[i].parse::<u64>().unwrap();
    assert!(n(1) >= 3 && n(3) >= 3, "{out}");
    assert!(n(2) > 0 && n(4) > 0, "{out}");
    assert_eq!(n(6), 0, "{out}");
    // The tool's own node is connected too (it asked): its row is there as well.
    assert!(lines.iter().any(|l| l.starts_with("aemp/")), "{out}");

    // A usage error names the command.
    let o = aemp(&["stats"]).await;
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("stats: node ID missing"));
}

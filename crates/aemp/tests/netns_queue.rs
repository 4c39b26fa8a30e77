//! The send queue limit over a slow link: a sender and a receiver in their own network
//! namespaces (Linux only, needs root / CAP_NET_ADMIN; the test skips with a message
//! otherwise), the sender's link slowed with `tc netem rate`. A producer that awaits
//! `Node::writable` never comes near the limit and loses nothing; one that ignores it goes
//! over the limit and is told by its monitors, and the receiver gets a gap-free prefix.
//!
//! Each node is this test binary re-executed in a namespace (see `queue_child`), driven by
//! commands on its stdin; it answers with JSON lines on its stdout.

mod netns_common;
use netns_common::{Host, Lab};
use std::io::Write;
use std::process::{Child, ChildStdin, Command};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const ROLE_ENV: &str = "AEMP_QUEUE_CHILD_ROLE";
const ID_ENV: &str = "AEMP_QUEUE_CHILD_ID";
const BIND_ENV: &str = "AEMP_QUEUE_CHILD_BIND";
const LIMIT_ENV: &str = "AEMP_QUEUE_CHILD_LIMIT";
const PREFIX: &str = "QUEUE ";
const SECRET: &str = "netns-queue-secret";

/// The sender's limit.
const LIMIT: usize = 2 << 20;
/// Bytes of payload per message.
const BLOB: usize = 16 << 10;
/// Bound of every single wait: generous, the machine is small and shared.
const WAIT: Duration = Duration::from_secs(120);

/// Not a test of its own: a node run in a namespace by the test below. Does nothing unless
/// the child environment variable is set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "helper: runs only as a child process of the netns queue test"]
async fn queue_child() {
    child::run().await;
}

/// A node in a child process inside a namespace; killed on drop.
struct Proc {
    child: Child,
    stdin: ChildStdin,
    rx: mpsc::Receiver<serde_json::Value>,
}

impl Proc {
    fn spawn(h: &Host, role: &str, id: &str) -> Proc {
        let (child, stdin, rx) = netns_common::spawn_child(
            &h.ns,
            "queue_child",
            PREFIX,
            &[
                (ROLE_ENV, role.to_string()),
                (ID_ENV, id.to_string()),
                (BIND_ENV, format!("{}:4040", h.ip)),
                (LIMIT_ENV, LIMIT.to_string()),
            ],
        );
        let mut p = Proc { child, stdin, rx };
        p.wait(role, "ready");
        p
    }

    fn cmd(&mut self, line: &str) {
        writeln!(self.stdin, "{line}")
            .and_then(|()| self.stdin.flush())
            .expect("command to child");
    }

    /// The next line whose `ev` is `ev`.
    fn wait(&mut self, who: &str, ev: &str) -> serde_json::Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(v) if v["ev"] == ev => return v,
                Ok(v) if v["ev"] == "error" => panic!("{who}: {v}"),
                Ok(_) => {}
                Err(e) => panic!("{who}: no {ev} event: {e}"),
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a command in a namespace; `Err` with its stderr when it fails.
fn in_ns(h: &Host, cmd: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(["netns", "exec", &h.ns])
        .args(cmd)
        .output()
        .map_err(|e| format!("ip netns exec: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Slows the egress of the host's `eth0` to 8 Mbit/s (1 MB/s) with a short queue: `netem`,
/// or `tbf` where the kernel has no `netem`. `false` (after printing why) if neither works.
fn slow_link(h: &Host) -> bool {
    let netem = ["netem", "rate", "8mbit", "limit", "100"];
    let tbf = ["tbf", "rate", "8mbit", "burst", "16kb", "latency", "50ms"];
    let mut why = Vec::new();
    for q in [&netem[..], &tbf[..]] {
        let mut cmd = vec!["tc", "qdisc", "add", "dev", "eth0", "root"];
        cmd.extend_from_slice(q);
        match in_ns(h, &cmd) {
            Ok(()) => return true,
            Err(e) => why.push(e),
        }
    }
    println!("SKIP: cannot slow a link with tc here: {why:?}");
    false
}

#[test]
fn slow_link_writable_producer_stays_below_the_limit_and_a_blind_one_is_told() {
    if std::env::var(ROLE_ENV).is_ok() {
        return;
    }
    let Some(mut lab) = Lab::new("q", 31) else {
        return;
    };
    let hs = lab.add_host(1, false);
    let hr = lab.add_host(2, false);
    // Little room in the sender's kernel, so that what waits, waits in the node; 8 Mbit/s
    // (1 MB/s) out of it.
    in_ns(
        &hs,
        &[
            "sh",
            "-c",
            "echo '4096 16384 262144' > /proc/sys/net/ipv4/tcp_wmem",
        ],
    )
    .expect("tcp_wmem");
    if !slow_link(&hs) {
        return;
    }
    let mut r = Proc::spawn(&hr, "recv", "qr");
    let mut s = Proc::spawn(&hs, "send", "qs");
    let peer = format!("qr {}:4040", hr.ip);

    // 6 MiB, three times the limit, at the pace of `writable`: about 6 s on this link.
    s.cmd(&format!("flood {peer} 1 384 writable"));
    let v = s.wait("sender", "flooded");
    assert_eq!(v["sent"], 384, "{v}");
    assert_eq!(
        v["fired"], false,
        "a writable producer was told to stop: {v}"
    );
    let max = v["max_queued"].as_u64().unwrap() as usize;
    assert!(
        max < LIMIT / 2,
        "queued {max} bytes while awaiting writable"
    );
    r.cmd("stats 1 384");
    let v = r.wait("receiver", "stats");
    assert_eq!(v["n"], 384, "{v}");
    assert_eq!(v["in_order"], true, "{v}");

    // 64 MiB as fast as `snd` takes them: over the limit in a moment.
    s.cmd(&format!("flood {peer} 2 4096 blind"));
    let v = s.wait("sender", "flooded");
    assert_eq!(v["fired"], true, "the blind producer was not told: {v}");
    let reason = v["reason"].as_array().expect("reason").clone();
    assert_eq!(reason[0], "transport_error");
    assert_eq!(reason[1], "qr");
    assert_eq!(reason[2], format!("send queue over {LIMIT} bytes"));
    let sent = v["sent"].as_u64().unwrap();
    assert!(sent < 4096, "{v}");
    let max = v["max_queued"].as_u64().unwrap() as usize;
    assert!(
        max <= LIMIT + BLOB + 64,
        "queued {max} bytes, limit {LIMIT}"
    );
    // What arrived of run 2 is a prefix without holes, without the message that overflowed.
    r.cmd("stats 2 0");
    let v = r.wait("receiver", "stats");
    assert_eq!(v["in_order"], true, "{v}");
    assert!(v["n"].as_u64().unwrap() < sent, "{v}");

    // What the blind producer sent after the node was lost and before it saw the monitor
    // waits for the reconnect that queue starts (after the first back-off hold): that
    // connection may fail again on it. Let it settle before the next run, whose monitor
    // must not see it.
    s.cmd("settle qr");
    s.wait("sender", "settled");

    // The sender reconnects and carries on.
    s.cmd(&format!("flood {peer} 3 16 writable"));
    let v = s.wait("sender", "flooded");
    assert_eq!(v["fired"], false, "{v}");
    r.cmd("stats 3 16");
    let v = r.wait("receiver", "stats");
    assert_eq!(v["n"], 16, "{v}");
    assert_eq!(v["in_order"], true, "{v}");
}

/// The child side.
mod child {
    use super::*;
    use aemp::{msg, Config, Node, NodeId, PortId, SendQueueLimit, Value};
    use parking_lot::Mutex;
    use serde_json::json;
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    fn emit(v: serde_json::Value) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{PREFIX}{v}");
        let _ = out.flush();
    }

    /// Per run: messages received and whether their numbers were 0, 1, 2, … so far.
    type Runs = Arc<Mutex<HashMap<i64, (u64, bool)>>>;

    pub async fn run() {
        let Ok(role) = std::env::var(ROLE_ENV) else {
            return;
        };
        let var = |k: &str| std::env::var(k).unwrap_or_default();
        let limit: usize = var(LIMIT_ENV).parse().expect("limit");
        let cfg = Config::builder()
            .norc(true)
            .nodeid(var(ID_ENV))
            .binds([var(BIND_ENV)])
            .secret(SECRET)
            .send_queue_limit(SendQueueLimit::Bytes(limit))
            .build()
            .expect("child config");
        let node = Node::configure(cfg).await.expect("child configure");
        let runs: Runs = Arc::default();
        if role == "recv" {
            let sink = PortId::parse(&format!("{}#sink", node.id())).unwrap();
            let runs = runs.clone();
            node.rcv_default(&sink, move |_, m| {
                let (run, seq) = (m[0].as_i64().unwrap_or(-1), m[1].as_i64().unwrap_or(-1));
                let mut runs = runs.lock();
                let e = runs.entry(run).or_insert((0, true));
                e.1 &= seq == e.0 as i64;
                e.0 += 1;
                Ok(())
            })
            .expect("sink");
        }
        emit(json!({"ev": "ready"}));
        let mut lines = crate::netns_common::stdin_lines();
        let lifetime = tokio::time::sleep(Duration::from_secs(600));
        tokio::pin!(lifetime);
        loop {
            let line = tokio::select! {
                l = lines.recv() => match l { Some(l) => l, None => break },
                _ = &mut lifetime => break,
            };
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["flood", peer, addr, run, count, mode] => {
                    let peer = NodeId::new(*peer).unwrap();
                    flood(
                        &node,
                        &peer,
                        addr.parse().unwrap(),
                        run.parse().unwrap(),
                        count.parse().unwrap(),
                        *mode == "writable",
                    )
                    .await
                }
                ["settle", peer] => {
                    // Until the node is up again (the reconnect of the queue a blind run
                    // left) and its queue is written, or a few seconds passed (the queue
                    // failed the node again: it stays down until the next run dials).
                    let peer = NodeId::new(*peer).unwrap();
                    let deadline = Instant::now() + Duration::from_secs(5);
                    while !node.is_up(&peer).await && Instant::now() < deadline {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    let deadline = Instant::now() + WAIT;
                    while node.queued_bytes(&peer) > 0 && Instant::now() < deadline {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    emit(json!({"ev": "settled"}));
                }
                ["stats", run, want] => {
                    let (run, want): (i64, u64) = (run.parse().unwrap(), want.parse().unwrap());
                    // Wait (a bounded time) for `want` messages; then report what came.
                    let deadline = Instant::now() + Duration::from_secs(60);
                    loop {
                        let (n, in_order) = runs.lock().get(&run).copied().unwrap_or((0, true));
                        if n >= want || Instant::now() > deadline {
                            emit(json!({"ev": "stats", "n": n, "in_order": in_order}));
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
                ["quit"] => break,
                _ => emit(json!({"ev": "error", "line": line})),
            }
        }
        node.shutdown().await;
    }

    /// Sends `count` messages `[run, seq, blob]` to `peer#sink`, awaiting `writable` before
    /// each one or not; stops early when the monitor of the sink fires.
    async fn flood(
        node: &Node,
        peer: &NodeId,
        addr: std::net::SocketAddr,
        run: i64,
        count: i64,
        writable: bool,
    ) {
        if !node.is_up(peer).await {
            node.connect(addr).unwrap();
            if !node.wait_up(peer, WAIT).await {
                emit(json!({"ev": "error", "line": "peer not up"}));
                return;
            }
        }
        let sink = PortId::parse(&format!("{peer}#sink")).unwrap();
        let fired = Arc::new(AtomicBool::new(false));
        let reason = Arc::new(Mutex::new(None));
        let guard = {
            let (fired, reason) = (fired.clone(), reason.clone());
            node.mon_cb(&sink, move |r| {
                *reason.lock() = Some(r);
                fired.store(true, Ordering::SeqCst);
            })
        };
        let blob = Value::from("x".repeat(BLOB));
        let (mut sent, mut max_queued) = (0, 0);
        while sent < count && !fired.load(Ordering::SeqCst) {
            if writable {
                node.writable(peer).await;
            }
            node.snd(&sink, msg![run, sent, blob.clone()]).unwrap();
            sent += 1;
            max_queued = max_queued.max(node.queued_bytes(peer));
            if sent % 16 == 0 {
                tokio::task::yield_now().await;
            }
        }
        if !fired.load(Ordering::SeqCst) {
            // Everything is written before the verdict (a monitor may still fire).
            let deadline = Instant::now() + WAIT;
            while node.queued_bytes(peer) > 0 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        } else {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        drop(guard);
        let reason = reason.lock().take().map(|r| {
            serde_json::Value::Array(
                r.iter()
                    .map(|v| json!(v.as_str().map_or_else(|| v.to_string(), str::to_string)))
                    .collect(),
            )
        });
        emit(json!({
            "ev": "flooded",
            "sent": sent,
            "max_queued": max_queued,
            "fired": fired.load(Ordering::SeqCst),
            "reason": reason,
        }));
    }
}

//! D1: propagation of a database update through the global seed, across three processes.
//!
//! Three nodes, as the D1 workload defines them: a global seed G (its seeds list its own bind address),
//! and two slaves A and B that use G as their seed. This process is A, the measuring one; G
//! and B are re-executions of this binary in hidden modes:
//!
//! * `--serve-d1g <framing> <secret> <addr>`: node G, bound to `addr` (a port A picked),
//!   prints `READY <nodeid>` once listening.
//! * `--serve-d1b <framing> <secret> <seed> <seen>`: node B, seeded with `seed`, watches the
//!   family `bench` and, for every key added or changed, snds `["seen", key, value]` to the
//!   port `seen` of A. Prints `READY <nodeid>` once its watch has delivered the family's
//!   contents (so it is synced with its master, G).
//!
//! Both serve until their stdin closes, so neither outlives A; A also kills them at the end
//! (or on failure) through [`ChildGuard`]. Their logs go to the inherited stderr.
//!
//! An update travels A → G (A's `db_set` goes to its master), G → B (G pushes the change to
//! B, which watches the family), and B → A (the `seen` message, on a direct B–A connection):
//! two real TCP hops for the propagation plus one back. The time recorded per update is from
//! A's `db_set` to the arrival of `seen` at A, with nothing subtracted, so it includes that
//! third hop: about one and a half round trips of messaging, plus the database work at G
//! and B.

use crate::child::{pct, spawn_self, ChildGuard};
use crate::{result, within, BenchResult, Opts};
use aemp::DbChange;
use aemp::{msg, Config, Msg, Node, PortId, Str};
use std::io::Read;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// The database family of D1.
const FAMILY: &str = "bench";
/// The key A sets (with increasing values) until B reports it, before the timed loop.
const WARM_KEY: &str = "warm";
/// Warm-up attempts, each waiting [`WARM_WAIT`] for B to report the key.
const WARM_TRIES: u32 = 50;
/// How long one warm-up attempt waits.
const WARM_WAIT: Duration = Duration::from_millis(200);
/// Upper bound for the timed loop.
const LIMIT: Duration = Duration::from_secs(300);
/// How often A checks, during the timed loop, that G and B are still running.
const CHILD_POLL: Duration = Duration::from_millis(100);
/// How long a child may take to start and come up.
const START: Duration = Duration::from_secs(30);

// ---- processes G and B ----------------------------------------------------------------

/// Ends this process when stdin closes: the parent (A) holds the other end, so a child
/// never outlives it, even if A is killed.
fn exit_with_parent() {
    std::thread::spawn(|| {
        let mut stdin = std::io::stdin();
        let mut buf = [0u8; 64];
        while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
        std::process::exit(0);
    });
}

/// Runs `body` on a fresh runtime of the same shape as A's (`AEMP_BENCH_WORKERS`).
fn run_child<F>(body: F) -> Result<(), String>
where
    F: std::future::Future<Output = Result<(), String>>,
{
    exit_with_parent();
    let rt = crate::runtime(crate::remote_workers())
        .map_err(|e| format!("cannot start runtime: {e}"))?;
    rt.block_on(body)
}

/// Prints the `READY <nodeid>` line on stdout and flushes it.
fn announce(node: &Node) -> Result<(), String> {
    use std::io::Write;
    let mut out = std::io::stdout();
    writeln!(out, "READY {}", node.id().as_str())
        .and_then(|()| out.flush())
        .map_err(|e| format!("stdout: {e}"))
}

/// A node on 127.0.0.1 using `seed` as its seed, bound to `bind`, speaking only `framing`.
/// A node whose seeds contain its own bind address becomes the global seed.
async fn seeded_node(
    nodeid: &str,
    bind: &str,
    seed: &str,
    framing: &str,
    secret: &str,
) -> Result<Node, String> {
    let cfg = Config::builder()
        .norc(true)
        .nodeid(nodeid)
        .binds([bind])
        .seeds([seed])
        .secret(secret)
        .framing_format([framing])
        .build()
        .map_err(|e| format!("config: {e}"))?;
    let node = Node::configure(cfg)
        .await
        .map_err(|e| format!("configure: {e}"))?;
    node.set_spin(crate::spin());
    Ok(node)
}

/// Entry point of the hidden `--serve-d1g <framing> <secret> <addr>` mode: node G, the
/// global seed, until stdin closes.
pub fn serve_g(framing: &str, secret: &str, addr: &str) -> Result<(), String> {
    run_child(async {
        let node = seeded_node("bench-d1g/%u", addr, addr, framing, secret).await?;
        announce(&node)?;
        std::future::pending::<()>().await;
        Ok(())
    })
}

/// Entry point of the hidden `--serve-d1b <framing> <secret> <seed> <seen>` mode: node B,
/// which reports every key of `bench` it sees added or changed to A's port `seen`, until
/// stdin closes.
pub fn serve_b(framing: &str, secret: &str, seed: &str, seen: &str) -> Result<(), String> {
    let seen = PortId::parse(seen).map_err(|e| format!("seen port {seen}: {e}"))?;
    run_child(async move {
        let node = seeded_node("bench-d1b/%u", "127.0.0.1:0", seed, framing, secret).await?;
        let mut watch = node.db_mon(FAMILY).map_err(|e| e.to_string())?;
        // The first change (the family's contents) comes once B is synced with G.
        let first = within(START, "node B: first db_mon change", watch.next())
            .await?
            .ok_or("node B: watch ended")?;
        report(&node, &seen, &first.added, &first)?;
        announce(&node)?;
        while let Some(c) = watch.next().await {
            report(&node, &seen, &c.added, &c)?;
            report(&node, &seen, &c.changed, &c)?;
        }
        Err("node B: watch ended".into())
    })
}

/// B: snds `["seen", key, value]` to A for each of `keys` (of change `c`).
fn report(node: &Node, seen: &PortId, keys: &[Str], c: &DbChange) -> Result<(), String> {
    for key in keys {
        let value = c.contents.get(key).cloned().unwrap_or_default();
        node.snd(seen, msg!["seen", key.as_str(), value])
            .map_err(|e| format!("node B: snd seen: {e}"))?;
    }
    Ok(())
}

// ---- process A ------------------------------------------------------------------------

/// Starts this binary with `args` and returns it with the node ID of its `READY <nodeid>`
/// line.
async fn start_child(what: &str, args: &[&str]) -> Result<(ChildGuard, String), String> {
    // The children run like A: same runtime shape, same busy-poll setting.
    let workers = tokio::runtime::Handle::current()
        .metrics()
        .num_workers()
        .to_string();
    let env = [
        ("AEMP_BENCH_WORKERS", workers),
        ("AEMP_BENCH_SPIN_US", crate::spin().as_micros().to_string()),
    ];
    let (child, fields) = spawn_self(what, args, &env).await?;
    match &fields[..] {
        [id] => Ok((child, id.clone())),
        _ => Err(format!(
            "{what} said READY {fields:?}, expected one node ID"
        )),
    }
}

/// A loopback port that is free right now: bound, read and released, for G to bind (a
/// global seed must know its own address in advance, to find it among its seeds).
fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("local_addr: {e}"))
}

/// A `seen` report from B as (key, value).
fn parse_seen(m: &Msg) -> Option<(&str, u64)> {
    if m.tag() != Some("seen") {
        return None;
    }
    Some((m.get(1)?.as_str()?, m.get(2)?.as_u64()?))
}

/// A's `seen` port. Until `["start"]` (sent by A itself) it forwards B's reports to `warm`
/// (the untimed warm-up). From then on it drives the timed loop from the handler, so that
/// no task wake-up sits between the arrival of a report and the next `db_set`: it sets
/// `k0`, and on each `["seen", "k<i>", i]` records the time since `k<i>` was set and sets
/// `k<i+1>`, until `n` updates are done. Resolves `done` with the times in milliseconds.
fn seen_port(
    a: &Node,
    n: u64,
    warm: mpsc::UnboundedSender<(String, u64)>,
) -> (PortId, oneshot::Receiver<Result<Vec<f64>, String>>) {
    let (done_tx, done) = oneshot::channel();
    let mut done_tx = Some(done_tx);
    let mut finish = move |r: Result<Vec<f64>, String>| {
        if let Some(tx) = done_tx.take() {
            let _ = tx.send(r);
        }
    };
    let mut timed = false;
    let mut next = 0u64;
    let mut key = String::new();
    let mut set_at = Instant::now();
    let mut lat_ms: Vec<f64> = Vec::with_capacity(n as usize);
    let port = a
        .port()
        .default(move |cx, m| {
            if !timed {
                if m.tag() == Some("start") {
                    timed = true;
                } else {
                    if let Some((k, v)) = parse_seen(&m) {
                        let _ = warm.send((k.to_string(), v));
                    }
                    return Ok(());
                }
            } else {
                let Some((k, v)) = parse_seen(&m) else {
                    finish(Err(format!("D1: unexpected message {m:?}")));
                    return Ok(());
                };
                if k == WARM_KEY {
                    return Ok(()); // A late report of the warm-up.
                }
                let elapsed = set_at.elapsed();
                if k != key || v != next {
                    finish(Err(format!(
                        "D1: waiting for {key} = {next}, B reported {k} = {v}"
                    )));
                    return Ok(());
                }
                lat_ms.push(elapsed.as_secs_f64() * 1e3);
                next += 1;
                if next == n {
                    finish(Ok(std::mem::take(&mut lat_ms)));
                    return Ok(());
                }
            }
            key = format!("k{next}");
            set_at = Instant::now();
            if let Err(e) = cx.node().db_set(FAMILY, &key, next) {
                finish(Err(format!("D1: db_set {key}: {e}")));
            }
            Ok(())
        })
        .build();
    (port, done)
}

/// Waits for the timed loop's result, failing early if node G or B exits (an update would
/// then never be seen). The children are looked at every [`CHILD_POLL`].
async fn until_done(
    mut done: oneshot::Receiver<Result<Vec<f64>, String>>,
    mut children: [(&str, &mut ChildGuard); 2],
) -> Result<Vec<f64>, String> {
    let mut poll = tokio::time::interval(CHILD_POLL);
    loop {
        tokio::select! {
            r = &mut done => return r.map_err(|_| "D1 seen port vanished".to_string())?,
            _ = poll.tick() => {
                for (what, child) in &mut children {
                    if let Ok(Some(status)) = child.0.try_wait() {
                        return Err(format!("D1: {what} exited ({status})"));
                    }
                }
            }
        }
    }
}

/// Median of a slice of samples (unsorted).
fn median(samples: &[f64]) -> f64 {
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    pct(&v, 0.5)
}

/// D1: `db_set bench k<i> i` on A, one at a time, each once B's `db_mon bench` has seen the
/// previous one; `p50` and `p99` of the time from `db_set` to B's report at A.
pub async fn d1(o: &Opts) -> BenchResult {
    let n = o.count.unwrap_or(1_000).max(1);
    let secret = aemp::config::generate_secret();
    let seed = format!("127.0.0.1:{}", free_port()?);
    let (mut g, g_id) = start_child(
        "node G",
        &["--serve-d1g", &o.framing, &secret, seed.as_str()],
    )
    .await?;
    let a = seeded_node("bench-d1a/%u", "127.0.0.1:0", &seed, &o.framing, &secret).await?;
    let (warm_tx, mut warm_rx) = mpsc::unbounded_channel();
    let (seen, done) = seen_port(&a, n, warm_tx);
    let (mut b, b_id) = start_child(
        "node B",
        &[
            "--serve-d1b",
            &o.framing,
            &secret,
            seed.as_str(),
            seen.as_str(),
        ],
    )
    .await?;
    eprintln!(
        "D1: G {g_id} at {seed}, A {}, B {b_id} (framing {})",
        a.id(),
        o.framing
    );

    // Warm-up (untimed): set `warm` to 1, 2, ... until B reports the value just set. Then
    // A is synced with G, B is synced with G, and B has a connection to A.
    let mut warmed = false;
    for v in 1..=u64::from(WARM_TRIES) {
        a.db_set(FAMILY, WARM_KEY, v).map_err(|e| e.to_string())?;
        let deadline = tokio::time::Instant::now() + WARM_WAIT;
        while let Ok(Some((k, got))) = tokio::time::timeout_at(deadline, warm_rx.recv()).await {
            if k == WARM_KEY && got == v {
                warmed = true;
                break;
            }
        }
        if warmed {
            break;
        }
    }
    if !warmed {
        return Err(format!(
            "D1: B did not report the warm-up key within {WARM_TRIES} tries"
        ));
    }

    let t0 = Instant::now();
    a.snd(&seen, msg!["start"]).map_err(|e| e.to_string())?;
    let lat = within(
        LIMIT,
        "D1",
        until_done(done, [("node G", &mut g), ("node B", &mut b)]),
    )
    .await??;
    let dt = t0.elapsed().as_secs_f64();
    if lat.len() as u64 != n {
        return Err(format!("D1: {} of {n} updates", lat.len()));
    }
    // The first and last tenth separately: shows whether an update costs more as the
    // family grows (each db_mon change carries the family's whole contents).
    let tenth = (lat.len() / 10).max(1);
    eprintln!(
        "D1: {n} updates in {dt:.3} s; median of the first {tenth} {:.3} ms, of the last {tenth} {:.3} ms",
        median(&lat[..tenth]),
        median(&lat[lat.len() - tenth..]),
    );
    let mut s = lat;
    s.sort_by(f64::total_cmp);
    eprintln!(
        "D1: min {:.3} ms, p90 {:.3} ms, max {:.3} ms",
        pct(&s, 0.0),
        pct(&s, 0.90),
        pct(&s, 1.0)
    );
    result("D1", "p50", pct(&s, 0.50), "ms");
    result("D1", "p99", pct(&s, 0.99), "ms");
    Ok(())
}

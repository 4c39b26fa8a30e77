//! S1 and S2: how aemp scales with the number of nodes and with the size of one node.
//!
//! **S1** (`--nodes N`, `--seeds K`, `--restart-after S`, `--idle S`): K seed processes
//! (global nodes), N slave nodes spread over [`S1_PROCS`] child processes (every node its own
//! `Node::configure`, listening on 127.0.0.1 with an ephemeral port, with all seeds
//! configured), and an observer node in this process (a slave like the others, so it survives
//! the seed kill). Every slave `db_reg`s one port in the family `s1`; the observer
//! `db_mon`s it.
//!
//! * formation: from telling the slave processes to start until the observer sees N entries,
//!   every slave has answered a database query (it has a master) and every seed has all
//!   nodes up and all N entries.
//! * idle CPU: CPU time of all processes (seeds, slaves, this one) over `--idle` seconds of
//!   quiet after formation, as a percentage of one core.
//! * RSS per connection: growth of the first seed's RSS from before the slaves started to
//!   after formation, divided by N (a connection, the slave's shard and its `'l` entry).
//! * re-attachment: the first seed's process is killed with SIGKILL, restarted on the same
//!   port after `--restart-after` seconds; from the new process listening until it has all
//!   nodes up and all N entries again, every slave answers a database query, and a fresh
//!   `db_mon` of the observer lists N entries.
//!
//! Child processes are this binary in hidden modes (`--s1-seed`, `--s1-slaves`); they exit
//! when their stdin closes, so none outlives the benchmark.
//!
//! **S2** (one process): 1,000,000 live ports (bytes per port, `snd` rate to random ports)
//! and a family of 1,000,000 subkeys on a global node (bytes per entry, the first `db_mon`
//! call of a slave, the update rate a `db_mon` watcher keeps up with).

use crate::child::ChildGuard;
use crate::{result, within, BenchResult, Opts};
use aemp::{Config, Node, Value};
use std::io::{BufRead, BufReader, Write};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Slave processes of S1 (fewer when N is smaller).
pub const S1_PROCS: usize = 4;
/// Upper bound for any phase.
const LIMIT: Duration = Duration::from_secs(120);

/// The options only S1 reads, taken out of the command line by [`take_args`].
#[derive(Clone, Debug)]
pub struct ScaleOpts {
    pub nodes: usize,
    pub seeds: usize,
    pub restart_after: f64,
    pub idle: f64,
}

static SCALE_OPTS: OnceLock<ScaleOpts> = OnceLock::new();

fn scale_opts() -> ScaleOpts {
    SCALE_OPTS.get().cloned().unwrap_or(ScaleOpts {
        nodes: 100,
        seeds: 1,
        restart_after: 3.0,
        idle: 5.0,
    })
}

/// Removes `--nodes N`, `--seeds K`, `--restart-after S` and `--idle S` from `args` and
/// keeps them for S1; `Err` for a malformed value.
pub fn take_args(args: Vec<String>) -> Result<Vec<String>, String> {
    let mut o = scale_opts();
    let mut rest = Vec::new();
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        let num = |v: Option<String>| -> Result<f64, String> {
            v.and_then(|s| s.parse::<f64>().ok())
                .filter(|x| *x >= 0.0)
                .ok_or_else(|| format!("{a} needs a number"))
        };
        match a.as_str() {
            "--nodes" => o.nodes = num(it.next())? as usize,
            "--seeds" => o.seeds = num(it.next())? as usize,
            "--restart-after" => o.restart_after = num(it.next())?,
            "--idle" => o.idle = num(it.next())?,
            _ => rest.push(a),
        }
    }
    if o.nodes == 0 || o.seeds == 0 {
        return Err("--nodes and --seeds must be at least 1".into());
    }
    let _ = SCALE_OPTS.set(o);
    Ok(rest)
}

// ---- process plumbing -------------------------------------------------------------------

/// A child process of S1 and the lines it prints, each with the moment it was read.
struct Proc {
    child: ChildGuard,
    stdin: ChildStdin,
    lines: mpsc::UnboundedReceiver<(Instant, String)>,
    what: String,
}

impl Proc {
    fn start(what: &str, args: &[String]) -> Result<Proc, String> {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let mut child = Command::new(exe)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start {what}: {e}"))?;
        let stdout = child.stdout.take();
        let stdin = child.stdin.take();
        let child = ChildGuard(child);
        let stdout = stdout.ok_or_else(|| format!("no stdout of {what}"))?;
        let stdin = stdin.ok_or_else(|| format!("no stdin of {what}"))?;
        let (tx, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        });
        Ok(Proc {
            child,
            stdin,
            lines,
            what: what.to_string(),
        })
    }

    fn pid(&self) -> u32 {
        self.child.0.id()
    }

    /// The next line, which must start with `word`; returns when it was read.
    async fn expect(&mut self, word: &str) -> Result<Instant, String> {
        let what = format!("{word} from {}", self.what);
        match within(LIMIT, &what, self.lines.recv()).await? {
            Some((t, l)) if l.split_whitespace().next() == Some(word) => Ok(t),
            Some((_, l)) => Err(format!("{} said {l:?} instead of {word}", self.what)),
            None => Err(format!("{} ended before {word}", self.what)),
        }
    }

    fn tell(&mut self, line: &str) -> BenchResult {
        writeln!(self.stdin, "{line}")
            .and_then(|_| self.stdin.flush())
            .map_err(|e| format!("writing to {}: {e}", self.what))
    }
}

/// Lines from this process's stdin; the process exits when stdin closes (its parent is
/// gone or done).
fn stdin_lines() -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
        std::process::exit(0);
    });
    rx
}

fn say(line: &str) -> BenchResult {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|_| out.flush())
        .map_err(|e| format!("stdout: {e}"))
}

fn rss_of(pid: u32) -> Result<i64, String> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm"))
        .map_err(|e| format!("/proc/{pid}/statm: {e}"))?;
    statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<i64>().ok())
        .map(|p| p * 4096)
        .ok_or_else(|| format!("/proc/{pid}/statm: {statm:?}"))
}

fn s1_config(id: &str, bind: &str, seeds: &[String], secret: &str) -> Result<Config, String> {
    Config::builder()
        .norc(true)
        .nodeid(id)
        .binds([bind])
        .seeds(seeds.iter().map(String::as_str))
        .secret(secret)
        .build()
        .map_err(|e| format!("config: {e}"))
}

/// A node for S1: many share a thread, so no dispatcher busy-polls.
async fn s1_node(id: &str, bind: &str, seeds: &[String], secret: &str) -> Result<Node, String> {
    let node = Node::configure(s1_config(id, bind, seeds, secret)?)
        .await
        .map_err(|e| format!("{id}: configure: {e}"))?;
    node.set_spin(Duration::ZERO);
    Ok(node)
}

// ---- S1 child processes -----------------------------------------------------------------

/// Hidden modes of S1; `None` if `argv` names none of them.
pub fn hidden(argv: &[String]) -> Option<Result<(), String>> {
    let mode = argv.get(1)?.as_str();
    let a = &argv[2.min(argv.len())..];
    let run = |f: std::pin::Pin<Box<dyn std::future::Future<Output = BenchResult>>>| {
        crate::runtime(1)
            .map_err(|e| format!("cannot start runtime: {e}"))
            .and_then(|rt| rt.block_on(f))
    };
    match (mode, a) {
        ("--s1-seed", [secret, idx, seeds, up, entries]) => {
            let (Ok(idx), Ok(up), Ok(entries)) = (idx.parse(), up.parse(), entries.parse()) else {
                return Some(Err("--s1-seed: bad numbers".into()));
            };
            let seeds: Vec<String> = seeds.split(',').map(str::to_string).collect();
            Some(run(Box::pin(seed_main(
                secret.clone(),
                idx,
                seeds,
                up,
                entries,
            ))))
        }
        ("--s1-slaves", [secret, count, first, seeds]) => {
            let (Ok(count), Ok(first)) = (count.parse(), first.parse()) else {
                return Some(Err("--s1-slaves: bad numbers".into()));
            };
            let seeds: Vec<String> = seeds.split(',').map(str::to_string).collect();
            Some(run(Box::pin(slaves_main(
                secret.clone(),
                count,
                first,
                seeds,
            ))))
        }
        ("--s1-seed" | "--s1-slaves", _) => Some(Err(format!("{mode}: bad arguments"))),
        _ => None,
    }
}

/// A seed: prints `READY` once listening, `FULL` once its `db_mon("s1")` lists `entries`
/// entries, `ALLUP` once `up` nodes are connected.
async fn seed_main(
    secret: String,
    idx: usize,
    seeds: Vec<String>,
    up: usize,
    entries: usize,
) -> BenchResult {
    let _stdin = stdin_lines();
    let bind = seeds.get(idx).ok_or("seed index out of range")?.clone();
    let node = s1_node(&format!("s1-seed{idx}"), &bind, &seeds, &secret).await?;
    let mut watch = node.db_mon("s1").map_err(|e| e.to_string())?;
    say("READY")?;
    let full = tokio::spawn(async move {
        while let Some(c) = watch.next().await {
            if c.contents.len() >= entries {
                let _ = say("FULL");
                break;
            }
        }
        // Keep the watch alive: dropping it would change what the node does.
        std::future::pending::<()>().await;
    });
    loop {
        if node.up_nodes().await.len() >= up {
            say("ALLUP")?;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = full.await;
    Ok(())
}

/// `count` slave nodes: after `go` on stdin, creates them (each `db_reg`s a port in `s1`),
/// prints `CREATED`, then `MASTERS` once every node answered a database query; `probe` on
/// stdin asks every node again and prints `MASTERS` again.
async fn slaves_main(
    secret: String,
    count: usize,
    first: usize,
    seeds: Vec<String>,
) -> BenchResult {
    let mut cmds = stdin_lines();
    say("READY")?;
    if cmds.recv().await.as_deref() != Some("go") {
        return Err("expected go".into());
    }
    let mut nodes = Vec::with_capacity(count);
    for i in first..first + count {
        let node = s1_node(&format!("s1-n{i}"), "127.0.0.1:0", &seeds, &secret).await?;
        let port = node.port().default(|_cx, _m| Ok(())).build();
        node.db_reg("s1", &port, i as u64)
            .map_err(|e| e.to_string())?;
        nodes.push(node);
    }
    say("CREATED")?;
    loop {
        let mut set = tokio::task::JoinSet::new();
        for n in &nodes {
            let n = n.clone();
            set.spawn(async move { n.db_keys("s1probe").await.map(|_| ()) });
        }
        while let Some(r) = set.join_next().await {
            r.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
        }
        say("MASTERS")?;
        match cmds.recv().await.as_deref() {
            Some("probe") => continue,
            _ => return Ok(()),
        }
    }
}

// ---- S1 ---------------------------------------------------------------------------------

/// Waits until `watch` lists `n` entries.
async fn until_entries(watch: &mut aemp::DbWatch, n: usize) -> Result<Instant, String> {
    within(LIMIT, "observer's db_mon", async {
        while let Some(c) = watch.next().await {
            if c.contents.len() == n {
                return Ok(Instant::now());
            }
        }
        Err("observer's db_mon ended".to_string())
    })
    .await?
}

fn seed_args(secret: &str, i: usize, seeds: &[String], up: usize, n: usize) -> Vec<String> {
    vec![
        "--s1-seed".into(),
        secret.into(),
        i.to_string(),
        seeds.join(","),
        up.to_string(),
        n.to_string(),
    ]
}

fn secs(a: Instant, b: Instant) -> f64 {
    b.saturating_duration_since(a).as_secs_f64()
}

pub async fn s1(_o: &Opts) -> BenchResult {
    let so = scale_opts();
    let (n, k) = (so.nodes, so.seeds);
    let tag = format!("n{n}k{k}");
    let procs = S1_PROCS.min(n);
    let secret = aemp::config::generate_secret();
    let mut seeds = Vec::new();
    for _ in 0..k {
        let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        seeds.push(l.local_addr().map_err(|e| e.to_string())?.to_string());
    }
    // A seed sees every slave, the observer and the other seeds.
    let up = n + 1 + (k - 1);
    let mut seed_procs = Vec::new();
    for i in 0..k {
        let mut p = Proc::start(&format!("seed {i}"), &seed_args(&secret, i, &seeds, up, n))?;
        p.expect("READY").await?;
        seed_procs.push(p);
    }
    let observer = s1_node("s1-observer", "127.0.0.1:0", &seeds, &secret).await?;
    within(LIMIT, "observer's master", observer.db_keys("s1"))
        .await?
        .map_err(|e| e.to_string())?;
    let mut watch = observer.db_mon("s1").map_err(|e| e.to_string())?;
    within(LIMIT, "observer's first db_mon call", watch.next()).await?;
    let mut slave_procs = Vec::new();
    for p in 0..procs {
        let (first, count) = (p * n / procs, (p + 1) * n / procs - p * n / procs);
        let args = vec![
            "--s1-slaves".to_string(),
            secret.clone(),
            count.to_string(),
            first.to_string(),
            seeds.join(","),
        ];
        let mut pr = Proc::start(&format!("slave process {p}"), &args)?;
        pr.expect("READY").await?;
        slave_procs.push(pr);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seed0_pid = seed_procs[0].pid();
    let rss0 = rss_of(seed0_pid)?;

    // Formation.
    let t0 = Instant::now();
    for p in &mut slave_procs {
        p.tell("go")?;
    }
    let t_obs = until_entries(&mut watch, n).await?;
    let mut t_created = t0;
    let mut t_masters = t0;
    for p in &mut slave_procs {
        t_created = t_created.max(p.expect("CREATED").await?);
        t_masters = t_masters.max(p.expect("MASTERS").await?);
    }
    let (mut t_full, mut t_allup) = (t0, t0);
    for p in &mut seed_procs {
        // The order of the two lines is not fixed.
        for _ in 0..2 {
            let (t, l) = within(LIMIT, "seed report", p.lines.recv())
                .await?
                .ok_or("a seed ended")?;
            match l.as_str() {
                "FULL" => t_full = t_full.max(t),
                "ALLUP" => t_allup = t_allup.max(t),
                _ => return Err(format!("{} said {l:?}", p.what)),
            }
        }
    }
    let formation = secs(t0, t_obs.max(t_masters).max(t_full).max(t_allup));
    eprintln!(
        "S1 {tag}: {procs} slave processes; created {:.3} s, observer saw {n} entries {:.3} s, \
         all masters {:.3} s, seeds full {:.3} s, seeds all up {:.3} s",
        secs(t0, t_created),
        secs(t0, t_obs),
        secs(t0, t_masters),
        secs(t0, t_full),
        secs(t0, t_allup)
    );
    result("S1", &format!("formation@{tag}"), formation, "s");

    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss1 = rss_of(seed0_pid)?;
    result(
        "S1",
        &format!("rss_per_conn@{tag}"),
        ((rss1 - rss0) as f64 / n as f64).max(0.0),
        "bytes",
    );

    // Idle CPU of every process.
    let mut pids: Vec<u32> = vec![std::process::id()];
    pids.extend(seed_procs.iter().map(Proc::pid));
    pids.extend(slave_procs.iter().map(Proc::pid));
    let total = |pids: &[u32]| -> Result<u64, String> {
        pids.iter()
            .map(|&p| crate::rate::cpu_ticks(&p.to_string()))
            .sum::<Result<u64, String>>()
    };
    let c0 = total(&pids)?;
    let ti = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(so.idle)).await;
    let c1 = total(&pids)?;
    let cpu = (c1 - c0) as f64 / crate::rate::clk_tck()?;
    result(
        "S1",
        &format!("idle_cpu@{tag}"),
        cpu / ti.elapsed().as_secs_f64() * 100.0,
        "%",
    );

    // Re-attachment after SIGKILL of seed 0 and a restart on the same port.
    drop(watch);
    {
        let p = &mut seed_procs[0];
        p.child.0.kill().map_err(|e| format!("kill seed 0: {e}"))?;
        let _ = p.child.0.wait();
    }
    tokio::time::sleep(Duration::from_secs_f64(so.restart_after)).await;
    let mut p = Proc::start("restarted seed 0", &seed_args(&secret, 0, &seeds, up, n))?;
    let t_r = p.expect("READY").await?;
    seed_procs[0] = p;
    let mut watch = observer.db_mon("s1").map_err(|e| e.to_string())?;
    for p in &mut slave_procs {
        p.tell("probe")?;
    }
    let t_obs = until_entries(&mut watch, n).await?;
    let mut t_masters = t_r;
    for p in &mut slave_procs {
        t_masters = t_masters.max(p.expect("MASTERS").await?);
    }
    let (mut t_full, mut t_allup) = (t_r, t_r);
    for _ in 0..2 {
        let (t, l) = within(LIMIT, "restarted seed report", seed_procs[0].lines.recv())
            .await?
            .ok_or("the restarted seed ended")?;
        match l.as_str() {
            "FULL" => t_full = t,
            "ALLUP" => t_allup = t,
            _ => return Err(format!("restarted seed said {l:?}")),
        }
    }
    eprintln!(
        "S1 {tag}: seed 0 killed, restarted after {:.1} s; from its listening: observer saw {n} \
         entries {:.3} s, all masters {:.3} s, seed full {:.3} s, seed all up {:.3} s",
        so.restart_after,
        secs(t_r, t_obs),
        secs(t_r, t_masters),
        secs(t_r, t_full),
        secs(t_r, t_allup)
    );
    result(
        "S1",
        &format!("reattach@{tag}"),
        secs(t_r, t_obs.max(t_masters).max(t_full).max(t_allup)),
        "s",
    );
    drop(slave_procs);
    drop(seed_procs);
    Ok(())
}

// ---- S2 ---------------------------------------------------------------------------------

fn self_rss() -> Result<i64, String> {
    rss_of(std::process::id())
}

/// A small xorshift generator (the benchmark needs spread, not quality).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

pub async fn s2(o: &Opts) -> BenchResult {
    let n = o.count.unwrap_or(1_000_000) as usize;
    s2_ports(n).await?;
    s2_family(n, &o.framing).await
}

/// 1,000,000 live ports: bytes per port, then `snd`s to random ones of them.
async fn s2_ports(n: usize) -> BenchResult {
    let node = Node::new("s2/%u").map_err(|e| e.to_string())?;
    node.port_count().await;
    let handled = Arc::new(AtomicU64::new(0));
    let mut ids = Vec::with_capacity(n);
    let before = self_rss()?;
    for i in 0..n {
        let h = handled.clone();
        ids.push(node.port_with(move |_cx, _m| {
            h.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }));
        if i % 1000 == 999 {
            node.port_count().await;
        }
    }
    let count = within(LIMIT, "S2 ports", node.port_count()).await?;
    if count < n {
        return Err(format!("S2: {count} ports alive, expected {n}"));
    }
    let after = self_rss()?;
    // The Vec of IDs belongs to the benchmark, not to the ports.
    let ids_bytes = (n * std::mem::size_of::<aemp::PortId>()) as f64;
    result(
        "S2",
        "rss_per_port",
        (((after - before) as f64 - ids_bytes) / n as f64).max(0.0),
        "bytes",
    );
    let msgs = 2 * n as u64;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let t0 = Instant::now();
    for i in 0..msgs {
        let to = &ids[rng.below(n as u64) as usize];
        node.snd(to, aemp::msg!["hit", i])
            .map_err(|e| e.to_string())?;
        if i % 4096 == 4095 {
            // Keep the command queue short, as a program on a busy node would.
            node.port_count().await;
        }
    }
    within(LIMIT, "S2 snd", async {
        while handled.load(Ordering::Relaxed) < msgs {
            node.port_count().await;
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    })
    .await?;
    let dt = t0.elapsed().as_secs_f64();
    result("S2", "snd_rate_random", msgs as f64 / dt, "msg/s");
    Ok(())
}

/// One run of updates for [`s2_family`]: `window` updates in flight at most, for 3 s, then
/// until the watcher has seen the last. Returns (rate, updates, seconds).
async fn s2_updates(
    g: &Node,
    n: usize,
    seq: &mut u64,
    window: u64,
    mut seen: tokio::sync::watch::Receiver<u64>,
) -> Result<(f64, u64, f64), String> {
    let run = Duration::from_secs(3);
    let first = *seq;
    let t0 = Instant::now();
    while t0.elapsed() < run {
        let s = *seen.borrow_and_update();
        if *seq < s.max(first) + window {
            *seq += 1;
            g.db_set("big", &format!("k{}", *seq as usize % n), *seq)
                .map_err(|e| e.to_string())?;
        } else {
            within(LIMIT, "watcher catching up", seen.changed())
                .await?
                .map_err(|_| "watcher gone")?;
        }
    }
    let last = *seq;
    within(LIMIT, "watcher catching up", seen.wait_for(|s| *s >= last))
        .await?
        .map_err(|_| "watcher gone")?;
    let dt = t0.elapsed().as_secs_f64();
    let updates = last - first;
    Ok((updates as f64 / dt, updates, dt))
}

/// A family of `n` subkeys on a global node G, watched by a slave B (both in this process,
/// connected over loopback).
async fn s2_family(n: usize, framing: &str) -> BenchResult {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        l.local_addr().map_err(|e| e.to_string())?.port()
    };
    let seed = format!("127.0.0.1:{port}");
    let secret = aemp::config::generate_secret();
    let cfg = |id: &str, bind: &str| {
        Config::builder()
            .norc(true)
            .nodeid(id)
            .binds([bind])
            .seeds([seed.as_str()])
            .secret(secret.as_str())
            .framing_format([framing])
            .build()
            .map_err(|e| e.to_string())
    };
    let g = Node::configure(cfg("s2-g", &seed)?)
        .await
        .map_err(|e| e.to_string())?;
    within(LIMIT, "warm-up", g.db_family("big"))
        .await?
        .map_err(|e| e.to_string())?;
    let before = self_rss()?;
    let t0 = Instant::now();
    for i in 0..n {
        g.db_set("big", &format!("k{i}"), i as u64)
            .map_err(|e| e.to_string())?;
        if i % 10_000 == 9_999 {
            g.port_count().await;
        }
    }
    let keys = within(LIMIT, "db_keys", g.db_keys("big"))
        .await?
        .map_err(|e| e.to_string())?;
    let fill = t0.elapsed().as_secs_f64();
    if keys.len() != n {
        return Err(format!("S2: {} keys instead of {n}", keys.len()));
    }
    drop(keys);
    let after = self_rss()?;
    eprintln!("S2: {n} db_set on the global node took {fill:.3} s");
    result(
        "S2",
        "rss_per_entry",
        ((after - before) as f64 / n as f64).max(0.0),
        "bytes",
    );

    let b = Node::configure(cfg("s2-b", "127.0.0.1:0")?)
        .await
        .map_err(|e| e.to_string())?;
    within(LIMIT, "B joins", b.db_keys("nothing"))
        .await?
        .map_err(|e| e.to_string())?;
    let t1 = Instant::now();
    let mut watch = b.db_mon("big").map_err(|e| e.to_string())?;
    let first = within(LIMIT, "first db_mon call", watch.next())
        .await?
        .ok_or("db_mon ended")?;
    let dt = t1.elapsed().as_secs_f64();
    if first.contents.len() != n {
        return Err(format!(
            "S2: first db_mon call listed {} of {n} entries",
            first.contents.len()
        ));
    }
    drop(first);
    result("S2", "db_mon_first_call", dt, "s");

    // Updates as fast as the watcher keeps up: G sets k<seq % n> to a rising sequence
    // number `seq`, never more than `window` ahead of the highest number B's watcher has
    // seen. Every change hands out a snapshot of B's mirror of the family (a
    // `FamilySnapshot`, sharing its unchanged parts with the mirror), so the rate should not
    // depend on how many changes are queued for the watcher.
    let (seen_tx, seen_rx) = tokio::sync::watch::channel(0u64);
    let watcher = tokio::spawn(async move {
        while let Some(c) = watch.next().await {
            let mut top = 0;
            for k in c.changed.iter().chain(c.added.iter()) {
                if let Some(v) = c.contents.get(k).and_then(Value::as_u64) {
                    top = top.max(v);
                }
            }
            drop(c);
            seen_tx.send_if_modified(|s| {
                let grew = top > *s;
                *s = (*s).max(top);
                grew
            });
        }
    });
    // Sequence numbers above every initial value.
    let mut seq = n as u64;
    for window in [1u64, 16] {
        let (rate, updates, dt) = s2_updates(&g, n, &mut seq, window, seen_rx.clone()).await?;
        eprintln!("S2: window {window}: {updates} updates seen by the watcher in {dt:.3} s");
        result(
            "S2",
            &format!("db_mon_update_rate@w{window}"),
            rate,
            "upd/s",
        );
    }
    watcher.abort();
    Ok(())
}

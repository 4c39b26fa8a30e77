//! A worker pool registered in the global database, all in one process.
//!
//! * a seed node (global: it holds the database);
//! * N worker nodes, each with one port registered with `db_reg("workers", port, name)`;
//! * a client node that watches the family with `db_mon("workers")`, keeps its pool in step
//!   with the changes, and hands out jobs round-robin with `cal`;
//! * one worker node shuts down half way: its entry disappears from the database (entries
//!   belong to the node that made them), the watch reports it deleted, and the next round of
//!   jobs goes to the workers that are left.
//!
//! Every node is a real network node on 127.0.0.1; they only share the process.
//!
//! ```text
//! cargo run -p aemp --example worker_pool -- [--workers N] [--jobs M] [--secret S]
//! ```

use aemp::DbChange;
use aemp::{msg, Config, Node, PortId, Value};
use std::error::Error;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

const USAGE: &str = "usage: worker_pool [--workers N] [--jobs M] [--secret SECRET]";

/// How long any single step may take before the example gives up.
const STEP: Duration = Duration::from_secs(10);

struct Args {
    workers: usize,
    jobs: u64,
    secret: String,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        workers: 3,
        jobs: 9,
        secret: "chat".into(),
    };
    let mut it = std::env::args().skip(1);
    let number = |v: Option<String>| -> Result<u64, String> {
        let v = v.ok_or(USAGE)?;
        v.parse().map_err(|_| format!("bad number {v:?}\n{USAGE}"))
    };
    while let Some(a) = it.next() {
        match a.as_str() {
            "--workers" => args.workers = number(it.next())? as usize,
            "--jobs" => args.jobs = number(it.next())?,
            "--secret" => args.secret = it.next().ok_or(USAGE)?,
            _ => return Err(USAGE.into()),
        }
    }
    // One worker dies half way; the second round needs someone left.
    if !(2..=64).contains(&args.workers) {
        return Err(format!("--workers must be 2..=64\n{USAGE}"));
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // Errors are printed with Display (returning them from main would print Debug).
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("worker_pool: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn Error>> {
    let args = parse_args()?;
    let started = Instant::now();

    // No seeds: a node without seeds is global. An ephemeral port, given to the others.
    let seed = configure("pool_seed/", &[], &args.secret).await?;
    let seed_addr = seed
        .listen_addrs()
        .first()
        .ok_or("seed has no listener")?
        .to_string();
    println!("seed {} on {seed_addr}", seed.id());

    let mut workers = Vec::with_capacity(args.workers);
    for i in 1..=args.workers {
        workers.push(start_worker(i, &seed_addr, &args.secret).await?);
    }

    let client = configure("pool_client/", &[&seed_addr], &args.secret).await?;
    let mut watch = client.db_mon("workers")?;
    let mut pool: Vec<PortId> = Vec::new();
    // The first notification holds whatever is registered by now; later ones add the rest.
    while pool.len() < args.workers {
        pool = apply(next_change(&mut watch).await?)?;
    }

    println!("-- round 1: {} jobs over {} workers", args.jobs, pool.len());
    run_jobs(&client, &pool, 1..=args.jobs).await;

    // A worker leaves the network (as if its process ended): the seed drops its entries, and
    // every db_mon sees the deletion.
    let victim = workers.remove(0);
    println!("-- {} shuts down", victim.id());
    victim.shutdown().await;
    let before = pool.len();
    while pool.len() >= before {
        pool = apply(next_change(&mut watch).await?)?;
    }

    println!("-- round 2: {} jobs over {} workers", args.jobs, pool.len());
    run_jobs(&client, &pool, args.jobs + 1..=2 * args.jobs).await;

    drop(watch);
    client.shutdown().await;
    for w in &workers {
        w.shutdown().await;
    }
    seed.shutdown().await;
    println!("done in {:.0?}", started.elapsed());
    Ok(())
}

/// A node on 127.0.0.1 (ephemeral port) with the given seeds.
async fn configure(nodeid: &str, seeds: &[&str], secret: &str) -> Result<Node, Box<dyn Error>> {
    let cfg = Config::builder()
        // The example's settings must win over whatever ~/.perl-anyevent-mp says.
        .norc(true)
        // A trailing `/` appends a random suffix.
        .nodeid(nodeid)
        .binds(["127.0.0.1:0"])
        .seeds(seeds.iter().copied())
        .secret(secret)
        .build()?;
    Ok(Node::configure(cfg).await?)
}

/// A worker node: one port that answers `["job", n, reply_port]` with
/// `["done", n, collatz_steps(n), worker_name]` (steps `null` on overflow), registered under
/// `workers`.
async fn start_worker(i: usize, seed: &str, secret: &str) -> Result<Node, Box<dyn Error>> {
    let name = format!("worker{i}");
    let node = configure(&format!("{name}/"), &[seed], secret).await?;
    let me = name.clone();
    let port = node
        .port()
        .on("job", move |cx, m| {
            // A malformed job is an error: it kills this worker's port (and so removes it
            // from the pool, since db_reg entries die with their port).
            let n = m
                .get(0)
                .and_then(Value::as_u64)
                .ok_or("job needs a number")?;
            let reply: PortId = m
                .as_slice()
                .last()
                .and_then(Value::as_str)
                .ok_or("no reply port")?
                .parse()?;
            cx.snd(&reply, msg!["done", n, collatz_steps(n), me.as_str()]);
            Ok(())
        })
        .build();
    // The value is free-form; here a human-readable name. The entry goes away when the port
    // dies or the node leaves the network.
    node.db_reg("workers", &port, name.as_str())?;
    println!("{name}: {port} registered");
    Ok(node)
}

/// The number of Collatz steps from `n` down to 1: a little work with a checkable answer.
/// `None` when the trajectory leaves `u64` (the input comes from the network: a worker must
/// not loop or panic on it).
fn collatz_steps(mut n: u64) -> Option<u64> {
    let mut steps = 0;
    while n > 1 {
        // `n & 1` rather than `is_multiple_of`, which is newer than the crate's rust-version.
        n = if n & 1 == 0 {
            n / 2
        } else {
            n.checked_mul(3)?.checked_add(1)?
        };
        steps += 1;
    }
    Some(steps)
}

/// The next db_mon notification (with a time limit), printed.
async fn next_change(watch: &mut aemp::DbWatch) -> Result<DbChange, Box<dyn Error>> {
    let change = tokio::time::timeout(STEP, watch.next())
        .await?
        .ok_or("client node shut down")?;
    for k in &change.added {
        println!(
            "pool + {k} ({})",
            change.contents.get(k).unwrap_or(&Value::Null)
        );
    }
    for k in &change.deleted {
        println!("pool - {k}");
    }
    Ok(change)
}

/// The pool after a change: every registered port, in a stable order.
fn apply(change: DbChange) -> Result<Vec<PortId>, Box<dyn Error>> {
    // `contents` is the whole family after the change (a sorted map), so the pool is simply
    // rebuilt from it instead of patched.
    let mut pool = Vec::with_capacity(change.contents.len());
    for key in change.contents.keys() {
        pool.push(key.parse()?);
    }
    Ok(pool)
}

/// Sends the jobs round-robin over `pool`, all at once, and prints the answers in job order.
async fn run_jobs(client: &Node, pool: &[PortId], jobs: std::ops::RangeInclusive<u64>) {
    if pool.is_empty() {
        println!("no workers");
        return;
    }
    let mut calls = JoinSet::new();
    for (i, job) in jobs.enumerate() {
        let worker = &pool[i % pool.len()];
        // `cal` appends a fresh reply port; with a timeout, silence becomes an error.
        let call = client.cal(worker, msg!["job", job]).timeout(STEP);
        calls.spawn(async move { (job, call.await) });
    }
    let mut results = Vec::new();
    while let Some(joined) = calls.join_next().await {
        if let Ok(r) = joined {
            results.push(r);
        }
    }
    results.sort_by_key(|(job, _)| *job);
    for (job, r) in results {
        match r {
            Ok(m) => println!(
                "job {job:>2}: {} steps, by {}",
                m.get(2).unwrap_or(&Value::Null),
                m.get(3).and_then(Value::as_str).unwrap_or("?")
            ),
            Err(e) => println!("job {job:>2}: failed: {e}"),
        }
    }
}

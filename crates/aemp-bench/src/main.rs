//! `aemp-bench`: the benchmark workloads by which aemp is compared with its peers
//! (Erlang/OTP distribution, raw TCP) on the same machine; the workloads are described in the
//! repository's `docs/benchmarks.md`.
//!
//! Prints `RESULT <workload> <figure> <value> <unit>` lines on stdout, everything else on
//! stderr, and exits non-zero when a workload fails (lost message, wrong reply, timeout).
//!
//! Usage: `aemp-bench [L1 L2 L3 ...] [--count N] [--framing json|cbor] [--duration SECS]
//! [--rates 1k,10k,100k]` (the last two for R5 only); S1 and S2 (not run by default) also take
//! `--nodes N --seeds K --restart-after S --idle S` (see scale.rs).

mod bigfam;
mod child;
mod dataconn;
mod dbprop;
mod local;
mod rate;
mod remote;
mod scale;

mod alloc;

// The benchmark uses mimalloc: messages are allocated by one thread and freed by another,
// which glibc malloc handles poorly. Erlang brings its own allocators too.
#[global_allocator]
static GLOBAL: alloc::MiMalloc = alloc::MiMalloc;

use aemp::config::SUPPORTED_FRAMINGS;
use std::process::ExitCode;
use std::time::Duration;

/// Options shared by all workloads.
#[derive(Clone, Debug)]
pub struct Opts {
    /// `--count N`, overriding the workload's default count.
    pub count: Option<u64>,
    /// `--framing json|cbor` for the remote workloads.
    pub framing: String,
    /// `--duration SECS`: how long R5 runs at each rate (default 10).
    pub duration: Option<f64>,
    /// `--rates 1k,10k`: the rates of R5 in requests per second (multiples of 1000).
    pub rates: Option<Vec<u64>>,
}

/// A workload failure: printed, and the exit code becomes 1.
pub type BenchResult = Result<(), String>;

/// Prints one result line in the format every compared implementation prints:
/// `RESULT <workload> <figure> <value> <unit>`.
pub fn result(workload: &str, figure: &str, value: f64, unit: &str) {
    let v = if value >= 1000.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.3}")
    };
    println!("RESULT {workload} {figure} {v} {unit}");
}

/// Fails if `fut` takes longer than `limit`.
pub async fn within<T>(
    limit: Duration,
    what: &str,
    fut: impl std::future::Future<Output = T>,
) -> Result<T, String> {
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| format!("{what}: timed out after {limit:?}"))
}

const ALL: &[&str] = &["L1", "L2", "L3", "R1", "R2", "R3", "R4", "R5", "D1", "DC1"];

/// Runtime threads per process in the two-process workloads (`AEMP_BENCH_WORKERS`,
/// default 1: both processes share the machine's cores, and one thread per process keeps
/// reader, dispatcher and writer of a node from waking each other across threads).
pub fn remote_workers() -> usize {
    std::env::var("AEMP_BENCH_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n >= 1)
        .unwrap_or(1)
}

/// The busy-poll time of the current workload in microseconds (`u64::MAX` = not chosen yet).
static SPIN_US: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(u64::MAX);

/// How long node dispatchers busy-poll before sleeping (see `Node::set_spin`): the
/// `AEMP_BENCH_SPIN_US` environment variable (microseconds), else the library default
/// (`aemp::DEFAULT_SPIN`, like the default busy wait of Erlang's schedulers: without
/// it, every message to an idle process pays for waking an idle CPU, which costs tens of
/// microseconds on this kind of VM; rawtcp's R2-limit shows it). R4 runs without: it uses
/// more threads than there are cores, and pollers would take CPU from the copying threads.
pub fn spin() -> Duration {
    let chosen = SPIN_US.load(std::sync::atomic::Ordering::Relaxed);
    if chosen != u64::MAX {
        return Duration::from_micros(chosen);
    }
    configured_spin()
}

/// `AEMP_BENCH_SPIN_US` if set, else the library default.
fn configured_spin() -> Duration {
    std::env::var("AEMP_BENCH_SPIN_US")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(aemp::DEFAULT_SPIN, Duration::from_micros)
}

fn choose_spin(workload: &str) {
    let d = if workload == "R4" || workload == "DC1" {
        Duration::ZERO
    } else {
        configured_spin()
    };
    SPIN_US.store(d.as_micros() as u64, std::sync::atomic::Ordering::Relaxed);
}

/// A tokio runtime with `workers` threads (current-thread for one).
pub fn runtime(workers: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if workers <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
    }
}

/// `1k,10k,100000` → `[1000, 10000, 100000]`; every rate a positive multiple of 1000 (R5
/// schedules its requests per millisecond).
fn parse_rates(s: &str) -> Option<Vec<u64>> {
    s.split(',')
        .map(|r| {
            let r = r.trim();
            let n = match r.strip_suffix('k') {
                Some(k) => k.parse::<u64>().ok()?.checked_mul(1000)?,
                None => r.parse().ok()?,
            };
            (n > 0 && n.is_multiple_of(1000)).then_some(n)
        })
        .collect()
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: aemp-bench [{}] [--count N] [--framing {}] [--duration SECS] [--rates 1k,10k,100k]",
        ALL.join(" "),
        SUPPORTED_FRAMINGS.join("|")
    );
    eprintln!("       aemp-bench S1 [--nodes N] [--seeds K] [--restart-after S] [--idle S]");
    eprintln!("       aemp-bench S2 [--count N]");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    // Hidden modes of S1: a seed process or a process of slave nodes (see scale.rs).
    if let Some(r) = scale::hidden(&argv) {
        return match r {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("S1 child: {e}");
                ExitCode::FAILURE
            }
        };
    }
    // Hidden modes: this process is node G or node B of D1 (see dbprop.rs).
    let child = match (argv.get(1).map(String::as_str), &argv.get(2..)) {
        (Some("--serve-d1g"), Some([framing, secret, addr])) => {
            Some(("node G", dbprop::serve_g(framing, secret, addr)))
        }
        (Some("--serve-d1b"), Some([framing, secret, seed, seen])) => {
            Some(("node B", dbprop::serve_b(framing, secret, seed, seen)))
        }
        (Some("--serve-d1g" | "--serve-d1b"), _) => return usage(),
        _ => None,
    };
    if let Some((what, r)) = child {
        return match r {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{what}: {e}");
                ExitCode::FAILURE
            }
        };
    }
    // Hidden mode: the fresh process that measures L3's memory per port (see local.rs).
    if argv.get(1).map(String::as_str) == Some("--l3-rss") {
        return match local::l3_rss_child() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("L3-RSS: {e}");
                ExitCode::FAILURE
            }
        };
    }
    // Hidden mode: this process is node B of DC1 (see dataconn.rs).
    if argv.get(1).map(String::as_str) == Some("--serve-dc") {
        let Some(secret) = argv.get(2) else {
            return usage();
        };
        return match dataconn::serve(secret) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("node B: {e}");
                ExitCode::FAILURE
            }
        };
    }
    // Hidden mode: this process is node B of a remote workload (see remote.rs).
    if argv.get(1).map(String::as_str) == Some("--serve-b") {
        let (Some(framing), Some(secret)) = (argv.get(2), argv.get(3)) else {
            return usage();
        };
        return match remote::serve_b(framing, secret) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("node B: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let mut args = match scale::take_args(std::env::args().skip(1).collect()) {
        Ok(rest) => rest.into_iter(),
        Err(e) => {
            eprintln!("{e}");
            return usage();
        }
    };
    let mut workloads = Vec::new();
    let mut opts = Opts {
        count: None,
        // Our preferred framing, as a node would choose it.
        framing: SUPPORTED_FRAMINGS[0].to_string(),
        duration: None,
        rates: None,
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--count" => match args.next().and_then(|n| n.parse().ok()) {
                Some(n) => opts.count = Some(n),
                None => return usage(),
            },
            "--framing" => match args.next() {
                Some(f) if SUPPORTED_FRAMINGS.contains(&f.as_str()) => opts.framing = f,
                _ => return usage(),
            },
            "--duration" => match args.next().and_then(|s| s.parse::<f64>().ok()) {
                Some(d) if d.is_finite() && d >= 0.001 => opts.duration = Some(d),
                _ => return usage(),
            },
            "--rates" => match args.next().as_deref().and_then(parse_rates) {
                Some(r) => opts.rates = Some(r),
                None => return usage(),
            },
            "-h" | "--help" => return usage(),
            w if ALL.contains(&w) || matches!(w, "Rmem" | "Dbig" | "S1" | "S2") => {
                workloads.push(w.to_string())
            }
            _ => return usage(),
        }
    }
    if workloads.is_empty() {
        workloads = ALL.iter().map(|s| s.to_string()).collect();
    }
    let mut failed = false;
    for w in workloads {
        choose_spin(&w);
        let workers = match w.as_str() {
            // Bulk copying (R4) gains from a second thread; the message-rate workloads lose
            // more to cross-thread wake-ups than they gain.
            "R4" | "DC1" => std::env::var("AEMP_BENCH_WORKERS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(2),
            w if w.starts_with('R') || w == "D1" => remote_workers(),
            _ => 2,
        };
        let rt = match runtime(workers) {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("cannot start runtime: {e}");
                return ExitCode::FAILURE;
            }
        };
        let r = rt.block_on(async {
            match w.as_str() {
                "L1" => local::l1(&opts).await,
                "L2" => local::l2(&opts).await,
                "L3" => local::l3(&opts).await,
                "R1" => remote::r1(&opts).await,
                "R2" => remote::r2(&opts).await,
                "R3" => remote::r3(&opts).await,
                "R4" => remote::r4(&opts).await,
                "R5" => rate::r5(&opts).await,
                "Rmem" => remote::rmem(&opts).await,
                "D1" => dbprop::d1(&opts).await,
                "DC1" => dataconn::dc1(&opts).await,
                "Dbig" => bigfam::dbig(&opts).await,
                "S1" => scale::s1(&opts).await,
                "S2" => scale::s2(&opts).await,
                _ => Err(format!("unknown workload {w}")),
            }
        });
        rt.shutdown_timeout(Duration::from_secs(1));
        if let Err(e) = r {
            eprintln!("{w} FAILED: {e}");
            failed = true;
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

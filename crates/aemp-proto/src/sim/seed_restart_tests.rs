//! A seed node that dies and comes back (a new process, nothing remembered): how soon its
//! slaves are back, how spread their dials are, and what a seed that stays down costs them.
//!
//! Every node runs with the default `monitor_timeout` of 30 s, as deployed: under the old
//! seed back-off (doubling up to `monitor_timeout`) that is what decided how long a
//! returning seed waited for its slaves.

use super::*;
use std::collections::BTreeMap;
use std::time::Instant as WallClock;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// The default monitor timeout (the simulator's own default is shorter).
const MONITOR_TIMEOUT: Duration = Duration::from_secs(30);

/// Adds `n` nodes named `prefix0…` with the given seeds and the default monitor timeout.
fn add_nodes(sim: &mut Sim, prefix: &str, n: usize, seeds: &[SocketAddr]) -> Vec<usize> {
    (0..n)
        .map(|k| {
            sim.add(&format!("{prefix}{k}"), |c| {
                c.seeds = seeds.to_vec();
                c.monitor_timeout = MONITOR_TIMEOUT;
            })
        })
        .collect()
}

/// Dials of `nodes` to `addr` made in `[from, to]`, by virtual millisecond.
fn dials_per_ms(
    sim: &Sim,
    nodes: &[usize],
    addr: SocketAddr,
    from: Instant,
    to: Instant,
) -> BTreeMap<u128, usize> {
    let mut per_ms = BTreeMap::new();
    for &i in nodes {
        for &(t, a) in &sim.nodes[i].dials {
            if a == addr && t >= from && t <= to {
                *per_ms.entry((t - sim.t0).as_millis()).or_insert(0) += 1;
            }
        }
    }
    per_ms
}

fn peak(per_ms: &BTreeMap<u128, usize>) -> usize {
    per_ms.values().copied().max().unwrap_or(0)
}

/// What a seed restart looked like.
struct Restart {
    /// From the seed listening again to every slave linked to it, with a master, and the
    /// seed's `db_mon` showing every slave's entry (`None`: not within 40 s).
    back_after: Option<Duration>,
    /// Most dials of the seed's address made in one virtual millisecond, from its death to
    /// the end of the run.
    peak_dials: usize,
    /// Most connections arriving at the restarted seed in one virtual millisecond.
    peak_accepts: usize,
}

/// `n_seeds` seeds and `n_slaves` slaves form and run for 40 s (their links are old, as in
/// a network that has been up for a while); seed 0 is killed and restarted 30 s later.
fn seed_restart(n_seeds: usize, n_slaves: usize, rng_seed: u64) -> Restart {
    let wall = WallClock::now();
    let opts = Opts {
        check: false,
        ..Opts::default()
    };
    let mut sim = Sim::new(rng_seed, opts);
    let seeds: Vec<SocketAddr> = (0..n_seeds).map(Sim::addr_of).collect();
    let globals = add_nodes(&mut sim, "G", n_seeds, &seeds);
    let slaves = add_nodes(&mut sim, "S", n_slaves, &seeds);
    let seed = globals[0];
    let seed_name = sim.nodes[seed].name.clone();
    let total = sim.nodes.len();
    sim.start_all();
    sim.set_each(&slaves, "svc", |s| Value::from(s as u64));
    sim.db_mon(seed, "svc");
    sim.run_until_formed(secs(60), seed, "svc", n_slaves)
        .expect("the network forms");
    sim.run_for(secs(40));

    let died = sim.now;
    sim.kill(seed);
    sim.run_for(secs(30));
    sim.restart(seed);
    let listening = sim.now;
    sim.db_mon(seed, "svc");
    let back = sim.run_until_cond(secs(40), |s| {
        s.with_master == total
            && s.nodes[seed]
                .mirrors
                .get("svc")
                .is_some_and(|m| m.len() == n_slaves)
            && slaves
                .iter()
                .all(|&i| s.nodes[i].core.peers().is_up(&seed_name))
    });
    let back_after = back.map(|_| sim.now - listening);
    let per_ms = dials_per_ms(&sim, &slaves, sim.nodes[seed].addr, died, sim.now);
    let mut accepts: BTreeMap<u128, usize> = BTreeMap::new();
    for &t in &sim.nodes[seed].accepts {
        if t >= listening {
            *accepts.entry((t - sim.t0).as_millis()).or_insert(0) += 1;
        }
    }
    let r = Restart {
        back_after,
        peak_dials: peak(&per_ms),
        peak_accepts: peak(&accepts),
    };
    eprintln!(
        "seed restart: {n_seeds} seed(s) + {n_slaves} slaves: back {:?} after the seed \
         listened; peak {} dials/ms of the seed ({} in all), peak {} accepts/ms \
         ({} events, {:?} wall)",
        r.back_after,
        r.peak_dials,
        per_ms.values().sum::<usize>(),
        r.peak_accepts,
        sim.events,
        wall.elapsed()
    );
    r
}

/// A seed node of 1,000 slaves dies and is back 30 s later: within 5 s of its listening,
/// every slave has it as master again and its `db_mon` shows all 1,000 entries; the slaves'
/// dials of it stay spread out, also in the moment they all lose it.
#[test]
fn seed_restart_1000_slaves_one_seed() {
    let r = seed_restart(1, 1000, 11);
    let back = r.back_after.expect("the slaves come back");
    assert!(back < secs(5), "back after {back:?}");
    assert!(r.peak_dials <= 20, "{} dials in one ms", r.peak_dials);
    assert!(r.peak_accepts <= 20, "{} accepts in one ms", r.peak_accepts);
}

/// The same with three seeds, of which one dies and comes back: every slave is linked to it
/// again within 5 s (the other two seeds kept them attached meanwhile).
#[test]
fn seed_restart_1000_slaves_three_seeds() {
    let r = seed_restart(3, 1000, 12);
    let back = r.back_after.expect("the slaves come back");
    assert!(back < secs(5), "back after {back:?}");
    assert!(r.peak_dials <= 20, "{} dials in one ms", r.peak_dials);
    assert!(r.peak_accepts <= 20, "{} accepts in one ms", r.peak_accepts);
}

/// A seed that stays down is dialled by each slave at a steady, bounded pace: never two
/// rounds less than 1.2 s apart (no tight loop, at most 50 a minute), never more than
/// 2.4 s between two (so that it is found soon once it is back).
#[test]
fn seed_that_stays_down_is_dialled_at_a_bounded_pace() {
    let opts = Opts {
        check: false,
        ..Opts::default()
    };
    let mut sim = Sim::new(13, opts);
    let seeds = [Sim::addr_of(0)];
    let seed = add_nodes(&mut sim, "G", 1, &seeds)[0];
    let slaves = add_nodes(&mut sim, "S", 50, &seeds);
    sim.start_all();
    sim.set_each(&slaves, "svc", |s| Value::from(s as u64));
    sim.db_mon(seed, "svc");
    sim.run_until_formed(secs(60), seed, "svc", slaves.len())
        .expect("the network forms");
    sim.run_for(secs(40));
    let died = sim.now;
    sim.kill(seed);
    sim.run_for(secs(300));
    let addr = sim.nodes[seed].addr;
    let (mut fewest, mut most) = (usize::MAX, 0);
    for &i in &slaves {
        let times: Vec<Instant> = sim.nodes[i]
            .dials
            .iter()
            .filter(|&&(t, a)| a == addr && t > died)
            .map(|&(t, _)| t)
            .collect();
        fewest = fewest.min(times.len());
        most = most.max(times.len());
        // The first dial follows the loss within the spread of the first round.
        assert!(
            times[0] - died <= Duration::from_millis(1200),
            "{}: first dial {:?} after the loss",
            sim.nodes[i].name,
            times[0] - died
        );
        for w in times.windows(2) {
            let gap = w[1] - w[0];
            assert!(
                gap >= Duration::from_millis(1200) && gap <= Duration::from_millis(2400),
                "{}: {gap:?} between two dials of a dead seed",
                sim.nodes[i].name
            );
        }
        let last = *times.last().unwrap();
        assert!(
            sim.now - last <= Duration::from_millis(2400),
            "dials stopped"
        );
    }
    eprintln!("dead seed: {fewest}..={most} dials per slave in 5 minutes");
    assert!(most <= 5 * 50 + 1, "{most} dials in 5 minutes");
}

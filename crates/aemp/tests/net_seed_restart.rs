//! A seed that goes away and comes back on the same port with the same node ID and nothing
//! remembered: its slaves, running with the default `monitor_timeout` (30 s), re-attach and
//! register their entries again within a few seconds of it listening.
//!
//! Under the old seed back-off (a pause doubling up to `monitor_timeout`, 30 s) a seed that
//! was down for 15 s waited up to 21 s for its slaves; about half of them took longer than
//! 8 s, so with 30 slaves the bound below failed every time. With the pause between seed
//! rounds kept at 1.2–2.4 s, every slave dials it again within 2.4 s.

mod net_common;
use aemp::{Node, NodeId};
use net_common::*;
use std::time::{Duration, Instant};

const SECRET: &str = "seed-restart-secret";
const SLAVES: usize = 30;
/// How long the seed stays away.
const DOWN: Duration = Duration::from_secs(15);
/// From the new seed listening to every slave attached and every entry visible.
const BOUND: Duration = Duration::from_secs(8);

/// A node with the default `monitor_timeout`, listening on `bind`, with the given seeds.
async fn configure(name: &str, bind: &str, seeds: &[String]) -> Node {
    let cfg = cfg(name, SECRET)
        .binds([bind])
        .seeds(seeds.iter().map(String::as_str))
        .build()
        .expect("config");
    Node::configure(cfg).await.expect("configure")
}

/// The seed at `addr` (its own seed: it becomes global). Binding is retried briefly, as the
/// port of the seed before may take a moment to be released.
async fn seed_at(addr: &str) -> Node {
    let seeds = [addr.to_string()];
    within("binding the seed address", async {
        loop {
            let cfg = cfg("seed", SECRET)
                .binds([addr])
                .seeds(seeds.iter().map(String::as_str))
                .build()
                .expect("config");
            match Node::configure(cfg).await {
                Ok(n) => return n,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    })
    .await
}

/// Waits until every slave sees `seed` up; panics if that takes longer than `limit`.
async fn all_up(slaves: &[Node], seed: &NodeId, limit: Duration) {
    let deadline = Instant::now() + limit;
    for s in slaves {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            s.wait_up(seed, left).await,
            "{} did not see the seed up within {limit:?}",
            s.id()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slaves_return_to_a_restarted_seed_within_seconds() {
    let addr = free_addrs(1).remove(0);
    let seed = seed_at(&addr).await;
    let seed_id = seed.id().clone();
    let seeds = [addr.clone()];
    let mut slaves = Vec::new();
    let mut ports = Vec::new();
    for k in 0..SLAVES {
        let s = configure(&format!("slave{k}"), "127.0.0.1:0", &seeds).await;
        let p = s.port_with(|_, _| Ok(()));
        s.db_reg("svc", &p, k as i64).unwrap();
        ports.push(p);
        slaves.push(s);
    }
    all_up(&slaves, &seed_id, T).await;
    wait_family(&seed, "svc", |m| m.len() == SLAVES).await;

    // The seed goes away (its connections close, its listener stops), and stays away.
    seed.shutdown().await;
    drop(seed);
    tokio::time::sleep(DOWN).await;

    // A new process, so to speak: same node ID, same port, an empty database.
    let seed = seed_at(&addr).await;
    let listening = Instant::now();
    all_up(&slaves, &seed_id, BOUND).await;
    let fam = wait_family(&seed, "svc", |m| m.len() == SLAVES).await;
    let back = listening.elapsed();
    eprintln!("{SLAVES} slaves back at the restarted seed after {back:?}");
    assert!(back < BOUND, "slaves back only after {back:?}");
    for p in &ports {
        assert!(fam.contains_key(p.as_str()), "{p} missing");
    }
    for s in slaves {
        s.shutdown().await;
    }
    seed.shutdown().await;
}

//! A slave in another process (this test binary re-executed, as in net_process.rs) is killed
//! with SIGKILL: its database entries (plain and `db_reg`) vanish from both global nodes and
//! from a slave on the other side of the mesh, and its port registrations made by others
//! (remote `db_reg`) go too.

mod net_common;
use aemp::{PortId, Value};
use net_common::*;
use std::time::Duration;

const CHILD_SECRET: &str = "AEMP_GLOBALTEST_CHILD_SECRET";
const CHILD_SEED: &str = "AEMP_GLOBALTEST_CHILD_SEED";

/// Not a test of its own: the slave run by `kill_9_of_a_slave_process_removes_its_entries`
/// in a child process. Does nothing unless the environment variables are set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "helper: runs only as the child process of kill_9_of_a_slave_process_removes_its_entries"]
async fn child_slave() {
    let (Ok(secret), Ok(seed)) = (std::env::var(CHILD_SECRET), std::env::var(CHILD_SEED)) else {
        return;
    };
    let node = seeded("gp-child/%u", &secret, &[seed]).await;
    let worker = node.port_with(|_, _| Ok(()));
    node.db_set("proc", "plain", "from the child").unwrap();
    node.db_reg("proc", &worker, "worker").unwrap();
    println!("READY {} {}", node.id(), worker);
    // Wait to be killed; give up eventually so that no orphan outlives a crashed parent.
    tokio::time::sleep(Duration::from_secs(60)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_slave_process_removes_its_entries() {
    let secret = "global-process-secret";
    let (g1, g2, addrs) = global_pair("gp-g1", "gp-g2", secret).await;
    let watcher = seeded("gp-watcher", secret, &addrs[1..]).await;
    let mut w = watcher.db_mon("proc").unwrap();

    let (mut child, ready) = spawn_child_test(
        "child_slave",
        &[(CHILD_SECRET, secret), (CHILD_SEED, addrs[0].as_str())],
    )
    .await;
    let mut parts = ready.split_whitespace();
    let child_id = parts.next().unwrap().to_string();
    let worker: PortId = parts.next().unwrap().parse().unwrap();

    // The watcher (a slave of G2) registers the child's worker port as well.
    watcher.db_reg("proc", &worker, "seen by watcher").unwrap();
    // A local entry of the watcher, which must survive.
    watcher.db_set("proc", "watcher", 1).unwrap();
    let all = ["plain", worker.as_str(), "watcher"];
    watch_until(&mut w, "the child's entries", |m| {
        all.iter().all(|k| m.contains_key(k))
    })
    .await;
    for g in [&g1, &g2] {
        let l = wait_family(g, "'l", |m| m.contains_key(child_id.as_str())).await;
        assert!(l.contains_key(watcher.id().as_str()));
    }

    child.0.kill().unwrap(); // SIGKILL
    let _ = child.0.wait();

    let only_watcher = family_of(&[("watcher", Value::Int(1))]);
    let changes = watch_until(&mut w, "the child's entries gone", |m| *m == only_watcher).await;
    assert!(
        changes.iter().all(|c| c.added.is_empty()),
        "nothing may be added: {changes:#?}"
    );
    for n in [&g1, &g2, &watcher] {
        wait_family(n, "proc", |m| *m == only_watcher).await;
        wait_family(n, "'l", |m| !m.contains_key(child_id.as_str())).await;
    }
}

//! With real sockets: a master whose decoder takes fewer nesting levels than its slave's (a
//! node configured otherwise, or a Perl node) refuses the slave's entry on every new
//! connection. The slave must not reconnect in a tight loop; it finds the entry, drops it
//! (an error in its log), and its other entries arrive.

mod net_common;
use aemp::{Node, Value};
use aemp_proto::codec::Limits;
use net_common::*;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const SECRET: &str = "refused-entry";

/// A list nested `n` deep.
fn nested(n: usize) -> Value {
    let mut v = Value::from(1);
    for _ in 0..n {
        v = Value::List(vec![v]);
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entry_the_master_refuses_is_dropped_without_a_reconnect_loop() {
    let addrs = free_addrs(1);
    let cfg = cfg("re-g", SECRET)
        .binds([addrs[0].as_str()])
        .seeds([addrs[0].as_str()])
        .monitor_timeout(Duration::from_secs(3))
        .build()
        .expect("config");
    let limits = Limits {
        max_depth: 16,
        ..Limits::default()
    };
    let g = Node::configure_with_limits(cfg, limits)
        .await
        .expect("configure");
    let s = seeded("re-s", SECRET, &addrs).await;
    for k in 0..10 {
        s.db_set("svc", &format!("k{k}"), k).unwrap();
    }
    s.db_set("zdeep", "k", nested(20)).unwrap();

    let t0 = Instant::now();
    let refusals = || {
        g.counters()
            .unwrap()
            .protocol_errors
            .load(Ordering::Relaxed)
    };
    let found = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let f = g.db_family("svc").await.expect("db_family");
            if f.len() == 10 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    let took = t0.elapsed();
    eprintln!(
        "refused entry: the master refused {} frames; the other entries arrived after {took:?}",
        refusals()
    );
    assert!(
        found.is_ok(),
        "the other entries never arrived ({} refusals)",
        refusals()
    );
    assert!(refusals() <= 15, "{} refusals in {took:?}", refusals());
    assert!(g.db_family("zdeep").await.unwrap().is_empty());
    // Settled: no more refusals, and a later write goes through at once.
    let before = refusals();
    s.db_set("svc", "later", 1).unwrap();
    wait_family(&g, "svc", |m| m.contains_key("later")).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(refusals(), before);
}

//! Networks formed through seeds, in one process: global nodes meshing and merging, slaves
//! sharing the distributed database through them, master changes, departures, `db_reg`
//! cleanup, a restarted seed, the query and guard forms of the API, and node events.
//!
//! Every await is bounded (`within`, `wait_family`, `watch_until`: [`net_common::T`]).
//! Nothing asserts an upper bound on elapsed time; "nothing else happened" is shown with a
//! sentinel entry set afterwards, whose change must be the very next one.

mod net_common;
use aemp::{DbChange, DbWatch};
use aemp::{NodeEvent, NodeId, Str, Value};
use net_common::*;
use std::time::Duration;

const SECRET: &str = "mesh-secret";

/// Waits for the next change of `w`, bounded.
async fn next_change(w: &mut DbWatch, what: &str) -> DbChange {
    within(what, w.next()).await.expect("db_mon ended")
}

/// The first `db_mon` call: the full contents (possibly empty).
async fn first(w: &mut DbWatch) -> DbChange {
    next_change(w, "first db_mon call").await
}

/// True when the family map (a `DbMap` or a `FamilySnapshot`) holds every key.
fn has_keys<'a>(m: impl IntoIterator<Item = (&'a Str, &'a Value)>, keys: &[&str]) -> bool {
    let present = keys_of(m);
    keys.iter().all(|k| present.iter().any(|p| p == k))
}

/// True when the family map holds none of the keys.
fn lacks_keys<'a>(m: impl IntoIterator<Item = (&'a Str, &'a Value)>, keys: &[&str]) -> bool {
    let present = keys_of(m);
    keys.iter().all(|k| !present.iter().any(|p| p == k))
}

/// Sets a sentinel key on `setter` and asserts that the next change `w` reports is exactly
/// that key being added: whatever was reported before it, nothing else is pending.
async fn expect_only_sentinel(w: &mut DbWatch, setter: &aemp::Node, family: &str, key: &str) {
    setter.db_set(family, key, "sentinel").unwrap();
    let c = next_change(w, "sentinel change").await;
    assert_eq!(
        (c.added.clone(), c.changed.clone(), c.deleted.clone()),
        (vec![aemp::Str::from(key)], vec![], vec![]),
        "unexpected change before the sentinel: {c:#?}"
    );
}

// ---- 1. two seeds, slaves on both sides ---------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_global_seeds_mesh_and_their_slaves_share_entries() {
    let (g1, g2, addrs) = global_pair("m1-g1", "m1-g2", SECRET).await;
    let s1a = seeded("m1-s1a", SECRET, &addrs[..1]).await;
    let s1b = seeded("m1-s1b", SECRET, &addrs[..1]).await;
    let s2a = seeded("m1-s2a", SECRET, &addrs[1..]).await;
    let s2b = seeded("m1-s2b", SECRET, &addrs[1..]).await;

    // Watches on both sides before anything is set.
    let mut w2 = s2a.db_mon("mesh").unwrap();
    let mut w1 = s1b.db_mon("mesh").unwrap();
    assert!(first(&mut w2).await.contents.is_empty());
    assert!(first(&mut w1).await.contents.is_empty());

    s1a.db_set("mesh", "from_s1a", 1).unwrap();
    s2b.db_set("mesh", "from_s2b", 2).unwrap();
    g1.db_set("mesh", "from_g1", 3).unwrap();

    let want = family_of(&[
        ("from_g1", Value::Int(3)),
        ("from_s1a", Value::Int(1)),
        ("from_s2b", Value::Int(2)),
    ]);
    let changes = watch_until(&mut w2, "G1 side entries on a slave of G2", |m| *m == want).await;
    // Every key was reported as added exactly once, never deleted.
    let mut added: Vec<_> = changes.iter().flat_map(|c| c.added.clone()).collect();
    added.sort();
    assert_eq!(added, vec!["from_g1", "from_s1a", "from_s2b"]);
    assert!(changes.iter().all(|c| c.deleted.is_empty()), "{changes:#?}");
    watch_until(&mut w1, "G2 side entries on a slave of G1", |m| *m == want).await;

    // The queries agree on every node, slave or global.
    for n in [&g1, &g2, &s1a, &s1b, &s2a, &s2b] {
        let fam = wait_family(n, "mesh", |m| *m == want).await;
        assert_eq!(fam, want, "{}", n.id());
    }
    let keys = within("db_keys", s1a.db_keys("mesh")).await.unwrap();
    assert_eq!(keys, vec!["from_g1", "from_s1a", "from_s2b"]);
    let values = within("db_values", s2b.db_values("mesh")).await.unwrap();
    assert_eq!(values, vec![Value::Int(3), Value::Int(1), Value::Int(2)]);

    // 'g lists both globals (and nothing else) on every global, and so do the slaves' views.
    let globals = [g1.id().as_str(), g2.id().as_str()];
    for n in [&g1, &g2, &s1a, &s2a] {
        let g = within("'g", n.db_family("'g")).await.unwrap();
        assert_eq!(keys_of(&g), globals, "'g on {}", n.id());
    }
    // Every node advertises itself in 'l.
    let l = wait_family(&s2a, "'l", |m| m.len() == 6).await;
    for n in [&g1, &g2, &s1a, &s1b, &s2a, &s2b] {
        assert_eq!(
            l.get(n.id().as_str()),
            Some(&Value::List(vec![Value::from(advertised(n))])),
            "'l of {}",
            n.id()
        );
    }

    // A change made on one side is a "changed" on the other, a delete a "deleted".
    s2b.db_set("mesh", "from_s2b", 20).unwrap();
    let c = next_change(&mut w1, "change of from_s2b").await;
    assert_eq!(c.changed, vec!["from_s2b"], "{c:#?}");
    assert_eq!(c.contents.get("from_s2b"), Some(&Value::Int(20)));
    s1a.db_del("mesh", &["from_s1a"]).unwrap();
    let c = watch_until(&mut w2, "deletion of from_s1a", |m| {
        !m.contains_key("from_s1a")
    })
    .await;
    assert_eq!(c.last().unwrap().deleted, vec!["from_s1a"], "{c:#?}");
    // Before it, w2 saw only S2B's change (S2A is a slave of G2 as well).
    assert!(c.len() <= 2, "{c:#?}");
    expect_only_sentinel(&mut w2, &s1b, "mesh", "sentinel").await;
}

// ---- 2. two separate networks merge --------------------------------------------------------

/// G1 with slave S1 and G2 with slave S2, formed apart, then G1 learns G2's address. Returns
/// once the slaves' watches (also returned) have seen the union.
async fn merged_networks(
    p: &str,
) -> (
    [aemp::Node; 4],
    DbWatch,
    DbWatch,
    Vec<DbChange>,
    aemp::DbMap,
) {
    let g1 = global_seed(&format!("{p}-g1"), SECRET, &["cbor", "json"]).await;
    let g2 = global_seed(&format!("{p}-g2"), SECRET, &["json", "cbor"]).await;
    let s1 = seeded(&format!("{p}-s1"), SECRET, &[advertised(&g1)]).await;
    let s2 = seeded(&format!("{p}-s2"), SECRET, &[advertised(&g2)]).await;
    g1.db_set("merge", "g1", 1).unwrap();
    s1.db_set("merge", "s1", 2).unwrap();
    g2.db_set("merge", "g2", 3).unwrap();
    s2.db_set("merge", "s2", 4).unwrap();

    // Each network on its own.
    let mut w1 = s1.db_mon("merge").unwrap();
    watch_until(&mut w1, "network 1 alone", |m| keys_of(m) == ["g1", "s1"]).await;
    let mut w2 = s2.db_mon("merge").unwrap();
    watch_until(&mut w2, "network 2 alone", |m| keys_of(m) == ["g2", "s2"]).await;
    let seen = within("g2's 'g", g2.db_family("'g")).await.unwrap();
    assert_eq!(keys_of(&seen), [g2.id().as_str()]);

    // G1 learns G2's address.
    g1.connect(g2.listen_addrs()[0]).unwrap();
    let union = family_of(&[
        ("g1", Value::Int(1)),
        ("g2", Value::Int(3)),
        ("s1", Value::Int(2)),
        ("s2", Value::Int(4)),
    ]);
    let mut changes = watch_until(&mut w1, "union on s1", |m| *m == union).await;
    changes.extend(watch_until(&mut w2, "union on s2", |m| *m == union).await);
    ([g1, g2, s1, s2], w1, w2, changes, union)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_separate_globals_merge_their_databases() {
    let ([g1, g2, s1, s2], _w1, mut w2, changes, union) = merged_networks("m2").await;
    for c in &changes {
        assert!(
            c.deleted.is_empty(),
            "nothing may be deleted by a merge: {c:#?}"
        );
    }
    for n in [&g1, &g2, &s1, &s2] {
        wait_family(n, "merge", |m| *m == union).await;
    }
    let both = [g1.id().as_str(), g2.id().as_str()];
    for g in [&g1, &g2] {
        wait_family(g, "'g", |m| keys_of(m) == both).await;
    }
    // Later writes cross over as well; whatever comes before them changes no value.
    s1.db_set("merge", "after", 5).unwrap();
    let later = watch_until(&mut w2, "later write", |m| m.contains_key("after")).await;
    for c in &later {
        assert!(c.deleted.is_empty(), "{c:#?}");
        assert!(c.added.iter().all(|k| k == "after"), "{c:#?}");
        for k in &c.changed {
            assert_eq!(c.contents.get(k), union.get(k), "{c:#?}");
        }
    }
}

/// After the merge, no key is reported "changed" without a new value: each global sends
/// its peer one `g_set`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_reports_no_unchanged_keys_as_changed() {
    let ([_g1, _g2, s1, _s2], _w1, mut w2, changes, _) = merged_networks("m2b").await;
    for c in &changes {
        assert!(c.changed.is_empty(), "{c:#?}");
    }
    expect_only_sentinel(&mut w2, &s1, "merge", "after").await;
}

// ---- 3. master change ----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slave_reattaches_to_second_seed_and_reports_only_the_difference() {
    let addrs = free_addrs(2);
    // Only G1 runs when S starts, so G1 is certainly S's first connected seed: its master.
    let g1 = node_at("m3-g1", SECRET, &addrs[0], &addrs).await;
    let s = seeded("m3-s", SECRET, &addrs).await;
    assert!(s.wait_up(g1.id(), T).await, "S never reached G1");
    let g2 = node_at("m3-g2", SECRET, &addrs[1], &addrs).await;
    let s2 = seeded("m3-s2", SECRET, &addrs[1..]).await;
    // S keeps trying its other seed and gets there too (seed back-off).
    assert!(s.wait_up(g2.id(), T).await, "S never reached G2");

    g1.db_set("fam", "by_g1", 1).unwrap();
    g2.db_set("fam", "by_g2", 2).unwrap();
    s2.db_set("fam", "by_s2", 3).unwrap();
    s.db_set("fam", "by_s", 4).unwrap();
    let mut w = s.db_mon("fam").unwrap();
    let all = ["by_g1", "by_g2", "by_s", "by_s2"];
    watch_until(&mut w, "all four entries", |m| keys_of(m) == all).await;

    g1.shutdown().await;
    drop(g1);
    let rest = family_of(&[
        ("by_g2", Value::Int(2)),
        ("by_s", Value::Int(4)),
        ("by_s2", Value::Int(3)),
    ]);
    let changes = watch_until(&mut w, "G1's entry gone", |m| *m == rest).await;
    let deleted: Vec<_> = changes.iter().flat_map(|c| c.deleted.clone()).collect();
    let added: Vec<_> = changes.iter().flat_map(|c| c.added.clone()).collect();
    let changed: Vec<_> = changes.iter().flat_map(|c| c.changed.clone()).collect();
    assert_eq!(deleted, vec!["by_g1"], "{changes:#?}");
    assert!(
        added.is_empty(),
        "entries reported as re-added: {changes:#?}"
    );
    assert!(
        !changed.iter().any(|k| k == "by_g2" || k == "by_s2"),
        "entries of others reported as changed: {changes:#?}"
    );
    // S now works through G2: its writes reach S2, and S2's reach S.
    let mut w2 = s2.db_mon("fam").unwrap();
    watch_until(&mut w2, "S2 sees the rest", |m| *m == rest).await;
    expect_only_sentinel(&mut w2, &s, "fam", "s_after").await;
    // On S, a late snapshot of the re-subscription may still come before the sentinel; it
    // may not change anything, though.
    let late = watch_until(&mut w, "own sentinel", |m| m.contains_key("s_after")).await;
    for c in &late {
        assert!(c.deleted.is_empty(), "{late:#?}");
        assert!(c.added.iter().all(|k| k == "s_after"), "{late:#?}");
        for k in &c.changed {
            assert_eq!(c.contents.get(k), rest.get(k), "{late:#?}");
        }
    }
    expect_only_sentinel(&mut w, &s2, "fam", "s2_after").await;
}

// ---- 4. a departed node's entries vanish ---------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_of_a_shut_down_node_disappear_everywhere() {
    let (g1, g2, addrs) = global_pair("m4-g1", "m4-g2", SECRET).await;
    let s1 = seeded("m4-s1", SECRET, &addrs[..1]).await;
    let s2 = seeded("m4-s2", SECRET, &addrs[1..]).await;
    let s3 = seeded("m4-s3", SECRET, &addrs[1..]).await;
    s1.db_set("dept", "s1_a", 1).unwrap();
    s1.db_set("other", "s1_b", 1).unwrap();
    s2.db_set("dept", "s2_a", 2).unwrap();
    g2.db_set("dept", "g2_a", 3).unwrap();
    let mut w = s3.db_mon("dept").unwrap();
    watch_until(&mut w, "three entries", |m| m.len() == 3).await;

    // A slave of G1 goes: seen on a slave of G2 and on both globals.
    s1.shutdown().await;
    let c = watch_until(&mut w, "s1's entry gone", |m| lacks_keys(m, &["s1_a"])).await;
    assert_eq!(c.last().unwrap().deleted, vec!["s1_a"]);
    for n in [&g1, &g2, &s2] {
        wait_family(n, "dept", |m| keys_of(m) == ["g2_a", "s2_a"]).await;
        wait_family(n, "other", |m| m.is_empty()).await;
        wait_family(n, "'l", |m| lacks_keys(m, &[s1.id().as_str()])).await;
    }
    expect_only_sentinel(&mut w, &s2, "dept", "after_s1").await;

    // A global goes: its own entry and those of its slaves vanish; G1 stays alone.
    let s4 = seeded("m4-s4", SECRET, &addrs[..1]).await;
    let mut w4 = s4.db_mon("dept").unwrap();
    watch_until(&mut w4, "s4 sees G2's side", |m| m.len() == 3).await;
    g2.shutdown().await;
    let c = watch_until(&mut w4, "g2 side gone", |m| m.is_empty()).await;
    assert!(c.iter().all(|c| c.added.is_empty()), "{c:#?}");
    wait_family(&g1, "dept", |m| m.is_empty()).await;
    wait_family(&g1, "'g", |m| keys_of(m) == [g1.id().as_str()]).await;
}

// ---- 5. db_reg cleanup ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn db_reg_entries_vanish_with_their_port_local_and_remote() {
    let (_g1, g2, addrs) = global_pair("m5-g1", "m5-g2", SECRET).await;
    let a = seeded("m5-a", SECRET, &addrs[..1]).await;
    let b = seeded("m5-b", SECRET, &addrs[1..]).await;
    let c = seeded("m5-c", SECRET, &addrs[1..]).await;
    let mut w = b.db_mon("reg").unwrap();
    assert!(first(&mut w).await.contents.is_empty());
    // A finds B and C by asking its master: wait until the master knows their addresses
    // (a look-up that finds none fails the connection, and with it the monitor).
    let (bid, cid) = (b.id().as_str(), c.id().as_str());
    wait_family(&a, "'l", |m| has_keys(m, &[bid, cid])).await;

    // A local port of A, registered by A.
    let local = a.port_with(|_, _| Ok(()));
    a.db_reg("reg", &local, "local").unwrap();
    // A port of B, registered by A (a remote monitor from A to B).
    let on_b = b.port_with(|_, _| Ok(()));
    a.db_reg("reg", &on_b, "on_b").unwrap();
    // A port of C, registered by A; C will go away as a whole.
    let on_c = c.port_with(|_, _| Ok(()));
    a.db_reg("reg", &on_c, "on_c").unwrap();
    let keys = [local.as_str(), on_b.as_str(), on_c.as_str()];
    watch_until(&mut w, "three registrations", |m| has_keys(m, &keys)).await;
    // The monitors are in place before anything is killed: A reached B and C, whose
    // addresses it had to look up through its master.
    assert!(a.wait_up(b.id(), T).await, "A never connected to B");
    assert!(a.wait_up(c.id(), T).await, "A never connected to C");
    // B's node port answers A only after it has handled A's earlier mon1 on that connection.
    assert_cal_works(&a, &b).await;
    assert_cal_works(&a, &c).await;

    a.kil(&local, vec![]).unwrap();
    let ch = next_change(&mut w, "local port death").await;
    assert_eq!(ch.deleted, vec![local.as_str()], "{ch:#?}");

    b.kil(&on_b, vec!["boom".into()]).unwrap();
    let ch = next_change(&mut w, "remote port death").await;
    assert_eq!(ch.deleted, vec![on_b.as_str()], "{ch:#?}");

    c.shutdown().await;
    let ch = watch_until(&mut w, "remote node death", |m| {
        lacks_keys(m, &[on_c.as_str()])
    })
    .await;
    assert!(
        ch.iter()
            .all(|c| c.deleted.iter().all(|k| k == on_c.as_str())),
        "{ch:#?}"
    );
    wait_family(&g2, "reg", |m| m.is_empty()).await;
    expect_only_sentinel(&mut w, &a, "reg", "still_here").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn db_reg_guard_and_unknown_port() {
    let g = global_seed("m5b-g", SECRET, &["cbor"]).await;
    let s = seeded("m5b-s", SECRET, &[advertised(&g)]).await;
    let mut w = g.db_mon("greg").unwrap();
    assert!(first(&mut w).await.contents.is_empty());
    let p = s.port_with(|_, _| Ok(()));
    let guard = s.db_reg_guarded("greg", &p, 7).unwrap();
    let ch = next_change(&mut w, "guarded registration").await;
    assert_eq!(ch.added, vec![p.as_str()]);
    assert_eq!(ch.contents.get(p.as_str()), Some(&Value::Int(7)));
    drop(guard);
    let ch = next_change(&mut w, "guard dropped").await;
    assert_eq!(ch.deleted, vec![p.as_str()]);
    // The port lives on, and its later death deletes nothing more.
    assert!(s.port_exists(&p).await);
    s.kil(&p, vec![]).unwrap();

    // Registering a port that does not exist: the monitor fires at once, the entry goes.
    let gone = s.port_with(|_, _| Ok(()));
    s.kil(&gone, vec![]).unwrap();
    s.db_reg("greg", &gone, Value::Null).unwrap();
    let ch = watch_until(&mut w, "dead port registration removed", |m| m.is_empty()).await;
    assert!(
        ch.iter()
            .all(|c| c.added.iter().chain(&c.deleted).all(|k| k == gone.as_str())),
        "{ch:#?}"
    );
    expect_only_sentinel(&mut w, &s, "greg", "sentinel").await;
}

// ---- 6. restarted seed ---------------------------------------------------------------------

/// A global node without seeds (global from the start) with node ID `name`, on a fresh port.
async fn seedless_global(name: &str) -> aemp::Node {
    aemp::Node::configure(cfg(name, SECRET).build().unwrap())
        .await
        .unwrap()
}

/// The slaves know the seed by one address; it restarts with the same node ID. (The
/// address is a relay that follows the restarted seed, because a shut-down node keeps its
/// listener: see `shut_down_node_stops_listening`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slaves_reupload_their_entries_to_a_restarted_seed() {
    let seed = seedless_global("m6-seed").await;
    let relay = SwitchRelay::start(seed.listen_addrs()[0]).await;
    let addr = [relay.addr.to_string()];
    let s1 = seeded("m6-s1", SECRET, &addr).await;
    let s2 = seeded("m6-s2", SECRET, &addr).await;
    s1.db_set("svc", "s1", 1).unwrap();
    s2.db_set("svc", "s2", 2).unwrap();
    let both = family_of(&[("s1", Value::Int(1)), ("s2", Value::Int(2))]);
    wait_family(&seed, "svc", |m| *m == both).await;
    let mut w = s1.db_mon("svc").unwrap();
    watch_until(&mut w, "both entries", |m| *m == both).await;

    // The seed goes away; for a while nothing answers at its address, so the slaves' first
    // redial fails and they must retry later (seed back-off).
    relay.retarget(dead_addr());
    let mut ev = s1.node_events();
    relay.cut();
    seed.shutdown().await;
    drop(seed);
    within("s1 sees the seed down", async {
        loop {
            if let Some(Ok(NodeEvent::Down(n, _))) = ev.recv().await {
                if n.as_str() == "m6-seed" {
                    return;
                }
            }
        }
    })
    .await;
    // Same node ID, fresh state, reachable at the old address again.
    let seed2 = seedless_global("m6-seed").await;
    relay.retarget(seed2.listen_addrs()[0]);

    // The slaves come back (seed retry) and upload their databases again.
    let fam = wait_family(&seed2, "svc", |m| *m == both).await;
    assert_eq!(fam, both);
    let l = wait_family(&seed2, "'l", |m| {
        has_keys(m, &[s1.id().as_str(), s2.id().as_str()])
    })
    .await;
    assert_eq!(
        l.get(s2.id().as_str()),
        Some(&Value::List(vec![Value::from(advertised(&s2))]))
    );
    // S1's watch re-subscribed at the new seed and works: S2's writes reach it.
    s2.db_set("svc", "s2", 22).unwrap();
    // (Until S2 is back, the new seed may have shown S1 a family without S2's entry.)
    watch_until(&mut w, "s2 changed", |m| {
        m.get("s2") == Some(&Value::Int(22)) && m.get("s1") == Some(&Value::Int(1))
    })
    .await;
    // And S1 and S2 reach each other by address look-up through the new seed.
    assert_cal_works(&s1, &s2).await;
}

/// After `shutdown`, the node takes no new connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shut_down_node_stops_listening() {
    let n = seedless_global("m6c-node").await;
    let addr = n.listen_addrs()[0];
    n.shutdown().await;
    let mut ev = n.node_events();
    let r = Peer::connect(addr, &peer_hs("m6c-peer", SECRET, &["json"])).await;
    assert!(r.is_err(), "handshake with a shut-down node succeeded");
    assert!(drain_events(&mut ev).is_empty());
}

// ---- 7. query forms, validation, guards ----------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_wait_for_a_master_and_run_concurrently() {
    let addr = free_addrs(1);
    // The slave starts before its seed exists: its queries wait for a master.
    let s = seeded("m7-s", SECRET, &addr).await;
    s.db_set("q", "early", "set before any master").unwrap();
    let s2 = s.clone();
    let pending = tokio::spawn(async move { s2.db_family("q").await });
    let seed = node_at("m7-seed", SECRET, &addr[0], &addr).await;
    seed.db_set("q", "seed", 1).unwrap();
    let fam = within("pending query", pending).await.unwrap().unwrap();
    // The query was answered after S's upload (both went to the master in order).
    assert_eq!(
        fam.get("early"),
        Some(&Value::from("set before any master"))
    );
    wait_family(&s, "q", |m| keys_of(m) == ["early", "seed"]).await;

    // Several queries in flight at once, each answered with its own result.
    s.db_set("q2", "x", 10).unwrap();
    let _ = wait_family(&s, "q2", |m| m.len() == 1).await;
    let (a, b, c, d, e) = within("concurrent queries", async {
        tokio::join!(
            s.db_family("q"),
            s.db_keys("q2"),
            s.db_values("q2"),
            s.db_family("nothing_here"),
            s.db_keys("'g"),
        )
    })
    .await;
    assert_eq!(keys_of(&a.unwrap()), ["early", "seed"]);
    assert_eq!(b.unwrap(), vec!["x"]);
    assert_eq!(c.unwrap(), vec![Value::Int(10)]);
    assert!(d.unwrap().is_empty());
    assert_eq!(e.unwrap(), vec![seed.id().as_str()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_are_validated() {
    let g = global_seed("m7v-g", SECRET, &["cbor"]).await;
    let s = seeded("m7v-s", SECRET, &[advertised(&g)]).await;
    let p = s.port_with(|_, _| Ok(()));
    for bad in ["", "1abc", "_abc", "a-b", "a b", "ä", "'l", "'g", "fam/x"] {
        assert!(s.db_set(bad, "k", 1).is_err(), "db_set family {bad:?}");
        assert!(s.db_set_guarded(bad, "k", 1).is_err(), "guarded {bad:?}");
        assert!(s.db_del(bad, &["k"]).is_err(), "db_del family {bad:?}");
        assert!(s.db_reg(bad, &p, 1).is_err(), "db_reg family {bad:?}");
    }
    for bad in ["", "1abc", "a-b", "a b"] {
        assert!(s.db_mon(bad).is_err(), "db_mon family {bad:?}");
        assert!(
            within("db_family", s.db_family(bad)).await.is_err(),
            "db_family {bad:?}"
        );
        assert!(within("db_keys", s.db_keys(bad)).await.is_err());
        assert!(within("db_values", s.db_values(bad)).await.is_err());
    }
    assert!(s.db_set("ok", "", 1).is_err(), "empty subkey");
    assert!(s.db_set_guarded("ok", "", 1).is_err(), "empty subkey");
    for good in ["a", "Z", "a1_:b", "x:y:z"] {
        s.db_set(good, "k", 1).unwrap();
    }
    // Internal families can be read and watched.
    assert!(within("'l", s.db_family("'l")).await.unwrap().len() == 2);
    let mut wl = s.db_mon("'l").unwrap();
    assert!(has_keys(&first(&mut wl).await.contents, &[s.id().as_str()]));
    // Nothing of the refused calls reached the database.
    wait_family(&g, "x:y:z", |m| m.len() == 1).await;
    let ok = within("ok", g.db_family("ok")).await.unwrap();
    assert!(ok.is_empty(), "{ok:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn db_del_refuses_empty_subkeys() {
    let n = aemp::Node::new("m7d/%u").unwrap();
    assert!(n.db_del("fam", &[""]).is_err());
    assert!(n.db_del("fam", &["ok", ""]).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_db_set_guard_deletes_everywhere() {
    let (g1, g2, addrs) = global_pair("m7g-g1", "m7g-g2", SECRET).await;
    let s1 = seeded("m7g-s1", SECRET, &addrs[..1]).await;
    let s2 = seeded("m7g-s2", SECRET, &addrs[1..]).await;
    let mut w = s2.db_mon("guarded").unwrap();
    assert!(first(&mut w).await.contents.is_empty());
    let guard = s1.db_set_guarded("guarded", "tmp", "v").unwrap();
    let kept = s1.db_set_guarded("guarded", "kept", "k").unwrap();
    kept.keep();
    watch_until(&mut w, "both guarded entries", |m| m.len() == 2).await;
    drop(guard);
    let c = next_change(&mut w, "guard dropped").await;
    assert_eq!(c.deleted, vec!["tmp"], "{c:#?}");
    for n in [&g1, &g2, &s1, &s2] {
        wait_family(n, "guarded", |m| keys_of(m) == ["kept"]).await;
    }
    // A guard on a global node works the same way.
    let gg = g2.db_set_guarded("guarded", "on_g2", 1).unwrap();
    watch_until(&mut w, "on_g2 added", |m| m.contains_key("on_g2")).await;
    drop(gg);
    let c = next_change(&mut w, "global guard dropped").await;
    assert_eq!(c.deleted, vec!["on_g2"], "{c:#?}");
    wait_family(&g1, "guarded", |m| keys_of(m) == ["kept"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_watches_of_one_family_and_unwatch() {
    let g = global_seed("m7w-g", SECRET, &["cbor"]).await;
    let s = seeded("m7w-s", SECRET, &[advertised(&g)]).await;
    g.db_set("multi", "a", 1).unwrap();
    let mut w1 = s.db_mon("multi").unwrap();
    watch_until(&mut w1, "a on w1", |m| m.contains_key("a")).await;
    // A second watch of the same family starts with the current contents.
    let mut w2 = s.db_mon("multi").unwrap();
    let f = first(&mut w2).await;
    assert_eq!(f.added, vec!["a"], "{f:#?}");
    drop(w1);
    g.db_set("multi", "b", 2).unwrap();
    let c = next_change(&mut w2, "b on w2").await;
    assert_eq!(c.added, vec!["b"]);
    drop(w2);
    // A fresh watch after all were dropped gets a fresh snapshot.
    let mut w3 = s.db_mon("multi").unwrap();
    let f = watch_until(&mut w3, "fresh snapshot", |m| m.len() == 2).await;
    assert!(f.iter().all(|c| c.deleted.is_empty()), "{f:#?}");
    expect_only_sentinel(&mut w3, &g, "multi", "c").await;
}

// ---- 8. node events --------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_events_up_nodes_and_is_up() {
    let g = global_seed("m8-g", SECRET, &["cbor"]).await;
    let mut gev = g.node_events();
    let s = aemp::Node::configure(cfg("m8-s", SECRET).build().unwrap())
        .await
        .unwrap();
    let mut sev = s.node_events();
    let gid = g.id().clone();
    let sid = s.id().clone();
    assert!(!s.is_up(&gid).await);
    assert!(s.up_nodes().await.is_empty());

    s.connect(g.listen_addrs()[0]).unwrap();
    let up = within("Up on s", sev.recv()).await.unwrap().unwrap();
    assert_eq!(up, NodeEvent::Up(gid.clone()));
    let up = within("Up on g", gev.recv()).await.unwrap().unwrap();
    assert_eq!(up, NodeEvent::Up(sid.clone()));
    assert!(s.is_up(&gid).await);
    assert!(g.is_up(&sid).await);
    assert_eq!(s.up_nodes().await, vec![gid.clone()]);
    assert_eq!(g.up_nodes().await, vec![sid.clone()]);
    assert!(!s.is_up(&NodeId::new("m8-nobody").unwrap()).await);
    // A second subscriber sees only later events.
    let mut late = s.node_events();
    assert!(drain_events(&mut late).is_empty());

    s.shutdown().await;
    let down = within("Down on g", gev.recv()).await.unwrap().unwrap();
    match down {
        NodeEvent::Down(n, _) => assert_eq!(n, sid),
        other => panic!("expected Down, got {other:?}"),
    }
    assert!(!g.is_up(&sid).await);
    assert!(g.up_nodes().await.is_empty());
    // Exactly one Up and one Down on g for s.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(drain_events(&mut gev).is_empty());
    // The events of a seeded connection.
    let s3 = seeded("m8-s3", SECRET, &[advertised(&g)]).await;
    let up = within("Up of seeded s3", gev.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(up, NodeEvent::Up(s3.id().clone()));
    assert!(s3.wait_up(&gid, T).await);
}

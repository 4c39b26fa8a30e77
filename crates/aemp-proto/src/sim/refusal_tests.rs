//! Scenarios of the issue "refused frames loop forever": a peer that closes the connection
//! on a frame it refuses (too deep, too large), reconnect back-off, refused database entries,
//! and `db_mon` watchers when a global node dies.

use super::*;
use std::collections::BTreeSet;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Nesting depth of a value (a scalar is 0, `[x]` is 1 more than `x`).
fn depth(v: &Value) -> usize {
    match v {
        Value::List(l) => 1 + l.iter().map(depth).max().unwrap_or(0),
        Value::Map(m) => 1 + m.iter().map(|(_, v)| depth(v)).max().unwrap_or(0),
        _ => 0,
    }
}

/// Depth of a frame as the decoder counts it: the frame array is level 1, and the port
/// name is its first element.
fn frame_depth(msg: &Msg) -> usize {
    1 + msg.as_slice().iter().map(depth).max().unwrap_or(0)
}

/// A list nested `n` deep.
fn nested(n: usize) -> Value {
    let mut v = Value::from(1);
    for _ in 0..n {
        v = Value::List(vec![v]);
    }
    v
}

/// The longest string in a value.
fn longest(v: &Value) -> usize {
    match v {
        Value::Str(s) => s.len(),
        Value::List(l) => l.iter().map(longest).max().unwrap_or(0),
        Value::Map(m) => m
            .iter()
            .map(|(k, v)| k.len().max(longest(v)))
            .max()
            .unwrap_or(0),
        _ => 0,
    }
}

/// Refuses frames nested deeper than 64 levels at once (the default decoder limit).
fn too_deep(_port: &str, msg: &Msg) -> Option<Duration> {
    (frame_depth(msg) > 64).then_some(Duration::ZERO)
}

/// Refuses frames with a string longer than 10 kB, 400 ms after they started arriving:
/// a stand-in for a 300 MiB value that takes its time to read before the size limit trips.
fn too_large(_port: &str, msg: &Msg) -> Option<Duration> {
    (msg.as_slice().iter().map(longest).max().unwrap_or(0) > 10_000).then_some(ms(400))
}

/// The limits of the nodes that send the values [`too_deep`] refuses: deeper than the
/// refusing peer's, as for a node configured otherwise (with equal limits, a node does not
/// send what its peers would refuse).
fn deeper() -> crate::codec::Limits {
    crate::codec::Limits {
        max_depth: 128,
        ..crate::codec::Limits::default()
    }
}

/// How often node `i` saw node `peer` come up.
fn ups(sim: &Sim, i: usize, peer: &str) -> usize {
    sim.nodes[i]
        .recs
        .iter()
        .filter(|(_, r)| matches!(r, Rec::Up(n) if n == peer))
        .count()
}

/// The keys of `family` in global node `g`'s merged database.
fn global_keys(sim: &Sim, g: usize, family: &str) -> BTreeSet<Str> {
    sim.nodes[g]
        .core
        .global()
        .global_db()
        .and_then(|db| db.family(family))
        .map(|f| f.keys().cloned().collect())
        .unwrap_or_default()
}

/// A slave whose database holds an entry its master refuses (the master closes the
/// connection on the frame that carries it, like a decoder at its depth or size limit).
/// Before: the slave reconnected at once and re-sent its database forever (tens of
/// thousands of cycles in 20 s), and its other entries never arrived. Now its reconnects
/// back off, the entry is found, dropped with an error logged on the slave, and the other
/// entries arrive.
#[test]
fn refused_slave_entry_is_dropped_and_reconnects_back_off() {
    type Rule = fn(&str, &Msg) -> Option<Duration>;
    let cases: [(&str, Rule, Value); 2] = [
        ("too deep", too_deep, nested(70)),
        ("too large", too_large, Value::from("x".repeat(20_000))),
    ];
    for (what, refuse, poison) in cases {
        let mut sim = Sim::new(11, Opts::default());
        let seed = [Sim::addr_of(0)];
        let g = sim.add("G", |c| c.seeds = seed.to_vec());
        let s = sim.add("S", |c| {
            c.seeds = seed.to_vec();
            c.limits = deeper();
        });
        sim.refuse(g, refuse);
        sim.start(g);
        sim.start(s);
        // 60 entries, the refused one sorts after them all (the search has to narrow
        // its batches down to it), and a watcher of the slave's own family.
        for k in 0..60 {
            sim.db_set(s, "svc", &format!("k{k:02}"), Value::from(k));
        }
        sim.db_set(s, "zpoison", "k", poison.clone());
        sim.db_set(s, "svc", "last", Value::from(99));
        sim.db_mon(s, "svc");
        sim.run_for(secs(20));
        let cycles = ups(&sim, s, "G");
        eprintln!("refused slave entry ({what}): {cycles} connections to the master in 20 s");
        assert!(cycles <= 20, "{what}: {cycles} connections in 20 s");
        let dropped_at = sim.run_until_cond(secs(120), |sim| {
            sim.nodes[s]
                .logs
                .iter()
                .any(|(_, l)| matches!(l, Log::DbEntryRefused { .. }))
        });
        let dropped: Vec<String> = sim.nodes[s]
            .logs
            .iter()
            .filter(|(_, l)| matches!(l, Log::DbEntryRefused { .. }))
            .map(|(t, l)| format!("{:?} {l}", *t - sim.t0))
            .collect();
        sim.run_for(secs(10));
        eprintln!(
            "refused slave entry ({what}): dropped after {dropped_at:?}, {} connections in \
             all: {dropped:?}",
            ups(&sim, s, "G")
        );
        assert_eq!(
            dropped.len(),
            1,
            "{what}: the refused entry is dropped once"
        );
        assert!(
            sim.nodes[s]
                .core
                .global()
                .local_db()
                .get("zpoison", "k")
                .is_none(),
            "{what}: gone from the slave's database"
        );
        assert!(!sim.nodes[s].core.global().probing());
        let want: BTreeSet<Str> = (0..60)
            .map(|k| Str::from(format!("k{k:02}")))
            .chain([Str::from("last")])
            .collect();
        assert_eq!(
            global_keys(&sim, g, "svc"),
            want,
            "{what}: the other entries"
        );
        assert!(global_keys(&sim, g, "zpoison").is_empty());
        let seen: BTreeSet<Str> = sim.nodes[s].mirrors["svc"].keys().cloned().collect();
        assert_eq!(seen, want, "{what}: the watcher sees them");
        // Written after the search: goes out at once as usual.
        sim.db_set(s, "svc", "later", Value::from(1));
        sim.run_for(ms(100));
        assert!(global_keys(&sim, g, "svc").contains("later"));
        // Settled: the connection stays up from now on.
        let before = ups(&sim, s, "G");
        sim.run_for(secs(30));
        assert_eq!(ups(&sim, s, "G"), before, "{what}: no more reconnects");
        assert!(sim.nodes[s].core.peers().is_up("G"));
    }
}

/// A global node sets a value that a slave watching its family refuses: the slave closes
/// the connection on every snapshot. Before: it reconnected at once, forever (about 1,850
/// cycles/s). Now its reconnects back off.
#[test]
fn watcher_refusing_a_value_backs_off() {
    let mut sim = Sim::new(12, Opts::default());
    let seed = [Sim::addr_of(0)];
    let g = sim.add("G", |c| {
        c.seeds = seed.to_vec();
        c.limits = deeper();
    });
    let w = sim.add("W", |c| c.seeds = seed.to_vec());
    sim.refuse(w, too_deep);
    sim.start(g);
    sim.start(w);
    sim.run_for(secs(1));
    sim.db_set(g, "f", "poison", nested(70));
    for k in 0..5 {
        sim.db_set(w, "svc", &format!("w{k}"), Value::from(k));
    }
    sim.db_mon(w, "f");
    sim.run_for(secs(20));
    let cycles = ups(&sim, w, "G");
    eprintln!("watcher refusing a value: {cycles} connections to the master in 20 s");
    assert!(cycles <= 20, "{cycles} connections in 20 s");
    // The slave closed the connections itself: none of its own entries is blamed.
    assert!(!sim.nodes[w]
        .logs
        .iter()
        .any(|(_, l)| matches!(l, Log::DbEntryRefused { .. })));
    assert!(!sim.nodes[w].core.global().probing());
    assert_eq!(
        sim.nodes[w]
            .core
            .global()
            .local_db()
            .family("svc")
            .map(|f| f.len()),
        Some(5)
    );
}

/// Ordinary recovery stays fast: a seed that restarts (after a long uptime, and after a
/// short one) has its slaves back within a few seconds.
#[test]
fn restarted_seed_is_reattached_quickly() {
    for uptime in [secs(40), ms(1500)] {
        let mut sim = Sim::new(13, Opts::default());
        let seed = [Sim::addr_of(0)];
        let g = sim.add("G", |c| c.seeds = seed.to_vec());
        let slaves: Vec<usize> = (0..20)
            .map(|k| sim.add(&format!("S{k}"), |c| c.seeds = seed.to_vec()))
            .collect();
        sim.start_all();
        let total = sim.nodes.len();
        assert!(sim
            .run_until_cond(secs(5), |s| s.with_master == total)
            .is_some());
        sim.run_for(uptime);
        sim.kill(g);
        sim.run_for(ms(500));
        sim.restart(g);
        let t = sim.elapsed();
        let back = sim
            .run_until_cond(secs(30), |s| {
                slaves
                    .iter()
                    .all(|&i| s.nodes[i].core.global().master() == Some("G"))
            })
            .expect("the slaves come back");
        eprintln!(
            "seed restarted after {uptime:?} up: slaves re-attached after {:?}",
            back - t
        );
        assert!(back - t < secs(4), "{:?}", back - t);
    }
}

/// Three global seeds, a few hundred slaves, a `db_mon` watcher on a slave; one global
/// dies. Its slaves move to the others; no slave died, so the watcher must see no entry
/// deleted. Before: when a global noticed the death before the dead global's slaves had
/// re-attached, it dropped their entries and the watcher saw them deleted and re-added.
#[test]
fn global_death_deletes_no_live_entry() {
    let mut spurious = Vec::new();
    for seed in 0..5u64 {
        let opts = Opts {
            check: false,
            detect: ms(50),
            ..Opts::default()
        };
        let mut sim = Sim::new(500 + seed, opts);
        let seeds: Vec<SocketAddr> = (0..3).map(Sim::addr_of).collect();
        let globals: Vec<usize> = (0..3)
            .map(|k| sim.add(&format!("G{k}"), |c| c.seeds = seeds.clone()))
            .collect();
        let slaves: Vec<usize> = (0..300)
            .map(|k| sim.add(&format!("S{k:03}"), |c| c.seeds = seeds.clone()))
            .collect();
        sim.start_all();
        sim.set_each(&slaves, "svc", |s| Value::from(s as u64));
        let watcher = slaves[0];
        sim.db_mon(watcher, "svc");
        let formed = sim.run_until_formed(secs(20), watcher, "svc", slaves.len());
        assert!(formed.is_some(), "formation");
        sim.run_for(secs(2));
        // Alternate between killing the watcher's master and another global.
        let wm = sim.nodes[watcher].core.global().master().map(Str::from);
        let victim = *globals
            .iter()
            .find(|&&g| (Some(&sim.nodes[g].name) == wm.as_ref()) == (seed % 2 == 0))
            .unwrap();
        let t_kill = sim.now;
        sim.kill(victim);
        sim.run_for(secs(15));
        let deleted = sim.nodes[watcher]
            .deletions
            .iter()
            .filter(|(t, f, _)| *t >= t_kill && f == "svc")
            .count();
        eprintln!(
            "global death, seed {seed} (killed {}, the watcher's master: {}): {deleted} \
             live entries reported deleted",
            sim.nodes[victim].name,
            seed % 2 == 0
        );
        spurious.push(deleted);
        let keys: BTreeSet<Str> = sim.nodes[watcher].mirrors["svc"].keys().cloned().collect();
        assert_eq!(keys.len(), slaves.len(), "every entry is there in the end");
    }
    assert_eq!(spurious, vec![0; 5], "deletions of live entries per run");
}

/// A global node with slaves dies for good, and so do its slaves (a whole rack): their
/// entries do disappear from a watcher's view, only later (after the grace period).
#[test]
fn entries_of_nodes_that_died_with_their_global_are_deleted() {
    let mut sim = Sim::new(600, Opts::default());
    let seeds: Vec<SocketAddr> = (0..2).map(Sim::addr_of).collect();
    let g0 = sim.add("G0", |c| c.seeds = seeds.clone());
    let g1 = sim.add("G1", |c| c.seeds = seeds.clone());
    // Slaves of G1 only, and slaves of G0 only.
    let far: Vec<usize> = (0..5)
        .map(|k| sim.add(&format!("F{k}"), |c| c.seeds = vec![seeds[1]]))
        .collect();
    let near: Vec<usize> = (0..5)
        .map(|k| sim.add(&format!("N{k}"), |c| c.seeds = vec![seeds[0]]))
        .collect();
    sim.start_all();
    for &s in far.iter().chain(&near) {
        let name = sim.nodes[s].name.clone();
        sim.db_set(s, "svc", &name, Value::from(1));
    }
    let watcher = near[0];
    sim.db_mon(watcher, "svc");
    let formed = sim.run_until_cond(secs(10), |s| {
        s.nodes[watcher]
            .mirrors
            .get("svc")
            .is_some_and(|m| m.len() == 10)
    });
    assert!(formed.is_some(), "formation");
    sim.run_for(secs(1));
    sim.kill(g1);
    for &f in &far {
        sim.kill(f);
    }
    let t = sim.elapsed();
    let gone = sim
        .run_until_cond(secs(30), |s| {
            s.nodes[watcher].mirrors.get("svc").map(|m| m.len()) == Some(5)
        })
        .expect("the dead nodes' entries go");
    eprintln!(
        "entries of a dead global's dead slaves deleted after {:?}",
        gone - t
    );
    let keys: BTreeSet<Str> = sim.nodes[watcher].mirrors["svc"].keys().cloned().collect();
    let want: BTreeSet<Str> = near.iter().map(|&i| sim.nodes[i].name.clone()).collect();
    assert_eq!(keys, want);
    assert!(global_keys(&sim, g0, "svc") == want);
}

/// Two global nodes; a value set by one (by itself, and by one of its slaves) is refused by
/// the other (its mesh forwarding, `g_upd` and `g_set`, carries it on every new
/// connection). Before: the entries were never found; the mesh connection was only backed
/// off, re-established and cut again on every attempt, and the rest of the database never
/// settled. Now the global's own entry is dropped from its database with an error logged
/// there, the slave's entry is withheld from the refusing peer with an error naming the
/// slave, everything else arrives, and the connection stays up.
#[test]
fn global_mesh_finds_and_drops_a_refused_value() {
    let mut sim = Sim::new(14, Opts::default());
    let seeds: Vec<SocketAddr> = (0..2).map(Sim::addr_of).collect();
    let g1 = sim.add("G1", |c| {
        c.seeds = seeds.clone();
        c.limits = deeper();
    });
    let g2 = sim.add("G2", |c| c.seeds = seeds.clone());
    let s = sim.add("S", |c| {
        c.seeds = vec![seeds[0]];
        c.limits = deeper();
    });
    sim.refuse(g2, too_deep);
    sim.start(g1);
    sim.start(g2);
    sim.start(s);
    sim.run_for(secs(2));
    assert!(sim.nodes[g1].core.peers().is_up("G2"));
    assert_eq!(sim.nodes[s].core.global().master(), Some("G1"));
    let before = ups(&sim, g1, "G2");
    for k in 0..30 {
        sim.db_set(g1, "svc", &format!("g{k:02}"), Value::from(k));
        sim.db_set(s, "svc", &format!("s{k:02}"), Value::from(k));
    }
    sim.db_set(g1, "zpoison", "g", nested(70));
    sim.db_set(s, "zpoison", "s", nested(70));
    sim.db_set(g1, "svc", "last", Value::from(1));
    sim.db_mon(g2, "svc");
    let found = sim.run_until_cond(secs(180), |sim| {
        let logs = &sim.nodes[g1].logs;
        logs.iter()
            .any(|(_, l)| matches!(l, Log::DbEntryRefused { .. }))
            && logs
                .iter()
                .any(|(_, l)| matches!(l, Log::DbEntryWithheld { .. }))
    });
    let logs: Vec<String> = sim.nodes[g1]
        .logs
        .iter()
        .filter(|(_, l)| matches!(l, Log::DbEntryRefused { .. } | Log::DbEntryWithheld { .. }))
        .map(|(t, l)| format!("{:?} {l}", *t - sim.t0))
        .collect();
    eprintln!(
        "global mesh refusing values: found after {found:?}, {} connections G1-G2: {logs:?}",
        ups(&sim, g1, "G2") - before
    );
    assert!(found.is_some(), "both entries found");
    assert_eq!(logs.len(), 2, "each entry logged once: {logs:?}");
    assert!(logs.iter().any(|l| l.contains("family zpoison, key g: G2")));
    assert!(logs
        .iter()
        .any(|l| l.contains("family zpoison, key s, set by S")));
    sim.run_for(secs(5));
    // G1's own entry is gone from its database (and so from G1's view); S's is kept on G1
    // and withheld from G2.
    assert!(sim.nodes[g1]
        .core
        .global()
        .local_db()
        .get("zpoison", "g")
        .is_none());
    let on_g1 = global_keys(&sim, g1, "zpoison");
    assert_eq!(on_g1, BTreeSet::from([Str::from("s")]));
    assert_eq!(
        sim.nodes[g1].core.global().withheld_from("G2"),
        vec![(Str::from("zpoison"), Str::from("s"))]
    );
    assert!(!sim.nodes[g1].core.global().probing_peer("G2"));
    // Everything else reached G2, and its watcher.
    let want: BTreeSet<Str> = (0..30)
        .flat_map(|k| [format!("g{k:02}"), format!("s{k:02}")])
        .map(Str::from)
        .chain([Str::from("last")])
        .collect();
    assert_eq!(global_keys(&sim, g2, "svc"), want);
    assert!(global_keys(&sim, g2, "zpoison").is_empty());
    let seen: BTreeSet<Str> = sim.nodes[g2].mirrors["svc"].keys().cloned().collect();
    assert_eq!(seen, want);
    // Settled: no more reconnects, and later writes go through at once.
    let settled = ups(&sim, g1, "G2");
    sim.db_set(s, "svc", "later", Value::from(1));
    sim.db_set(g1, "svc", "later_g", Value::from(1));
    sim.run_for(secs(30));
    assert_eq!(ups(&sim, g1, "G2"), settled, "no more reconnects");
    assert!(sim.nodes[g1].core.peers().is_up("G2"));
    let on_g2 = global_keys(&sim, g2, "svc");
    assert!(on_g2.contains("later") && on_g2.contains("later_g"));
}

/// Requests the global service builds from many entries, larger than the frame limit (4 KiB
/// here, on every node): a slave's whole database (`g_slave`), a family's snapshot for a
/// watcher (`g_chg1`), a global's shard for a new global peer (`g_set`), the deletion of a
/// whole family (`g_upd` to the master and on to the other global, `g_chg2` to the
/// watcher). Each entry fits; together they do not. Before: each such frame was refused by
/// its receiver, which closed the connection, again on every reconnection. Now they are
/// split into requests of the same meaning and everything arrives; a query's answer that
/// cannot be split is not sent, with an error logged on the global node that built it.
#[test]
fn large_database_requests_are_split_to_fit_the_frame_limit() {
    use crate::codec::{Framing, Limits};
    let limits = Limits {
        max_message: 4096,
        ..Limits::default()
    };
    let over = move |port: &str, msg: &Msg| {
        let cbor = limits.check_frame(Framing::Cbor, port, msg.as_slice());
        let json = limits.check_frame(Framing::Json, port, msg.as_slice());
        (cbor.is_err() || json.is_err()).then_some(Duration::ZERO)
    };
    let mut sim = Sim::new(15, Opts::default());
    let seeds: Vec<SocketAddr> = (0..2).map(Sim::addr_of).collect();
    let add = |sim: &mut Sim, name: &str, seeds: Vec<SocketAddr>| {
        let i = sim.add(name, |c| {
            c.seeds = seeds;
            c.limits = limits;
        });
        sim.refuse(i, over);
        i
    };
    let g1 = add(&mut sim, "G1", seeds.clone());
    let g2 = add(&mut sim, "G2", seeds.clone());
    let s = add(&mut sim, "S", vec![seeds[0]]);
    let w = add(&mut sim, "W", vec![seeds[0]]);
    let keys: Vec<String> = (0..150)
        .map(|k| format!("{k:03}{}", "k".repeat(37)))
        .collect();
    // Before S has a master: its database goes out in one g_slave (about 15 kB).
    for k in &keys {
        sim.db_set(s, "svc", k, Value::from("v".repeat(60)));
    }
    sim.start(g1);
    sim.start(s);
    sim.start(w);
    sim.run_for(secs(3));
    sim.db_mon(w, "svc");
    sim.query_keys(w, "svc");
    // G2 comes later: G1's shard goes to it in one g_set.
    sim.start(g2);
    sim.run_for(secs(10));
    let want: BTreeSet<Str> = keys.iter().map(|k| Str::from(k.as_str())).collect();
    let seen: BTreeSet<Str> = sim.nodes[w]
        .mirrors
        .get("svc")
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    let not_sent: Vec<String> = sim.nodes[g1]
        .logs
        .iter()
        .filter(|(_, l)| matches!(l, Log::NotSent { .. }))
        .map(|(_, l)| l.to_string())
        .collect();
    eprintln!(
        "split requests: G1 has {}, G2 {}, the watcher {}; connections S {}, W {}, G2 {}; \
         not sent: {not_sent:?}",
        global_keys(&sim, g1, "svc").len(),
        global_keys(&sim, g2, "svc").len(),
        seen.len(),
        ups(&sim, s, "G1"),
        ups(&sim, w, "G1"),
        ups(&sim, g1, "G2"),
    );
    assert_eq!(global_keys(&sim, g1, "svc"), want, "g_slave");
    assert_eq!(seen, want, "g_chg1 to the watcher");
    assert_eq!(
        global_keys(&sim, g2, "svc"),
        want,
        "g_set to the new global"
    );
    assert_eq!(
        (ups(&sim, s, "G1"), ups(&sim, w, "G1"), ups(&sim, g1, "G2")),
        (1, 1, 1),
        "no connection was cut"
    );
    assert_eq!(not_sent.len(), 1, "{not_sent:?}");
    assert!(not_sent[0].contains("to W: g_reply request: message too large"));
    // The whole family deleted at once: one g_upd from S, forwarded to G2, and a g_chg2
    // to the watcher, each too large as one frame.
    let all: Vec<Str> = want.iter().cloned().collect();
    let fam = Family::user("svc").unwrap();
    sim.with(s, |c, now| c.db_del(&fam, &all, now));
    sim.run_for(secs(3));
    assert!(global_keys(&sim, g1, "svc").is_empty());
    assert!(global_keys(&sim, g2, "svc").is_empty());
    assert!(sim.nodes[w].mirrors["svc"].is_empty());
    assert_eq!(
        (ups(&sim, s, "G1"), ups(&sim, w, "G1"), ups(&sim, g1, "G2")),
        (1, 1, 1)
    );
}

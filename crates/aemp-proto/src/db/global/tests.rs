//! Unit tests of the global node rules, one node at a time.

use super::*;
use crate::db::FamilyChange;
use crate::list;

fn s(x: &str) -> Str {
    Str::from(x)
}

fn fam(x: &str) -> Family {
    Family::user(x).unwrap()
}

fn map(entries: &[(&str, Value)]) -> Value {
    Value::Map(entries.iter().map(|(k, v)| (s(k), v.clone())).collect())
}

fn keys(v: &[&str]) -> Value {
    Value::List(v.iter().map(|k| Value::from(*k)).collect())
}

/// A fresh global node "G" advertising "g:1".
fn global() -> GlobalDb {
    let (g, outs) = GlobalDb::new(LocalDb::new("G", &[s("g:1")]), Watches::new());
    assert!(outs.is_empty(), "nobody to tell yet: {outs:?}");
    check(&g);
    g
}

/// The documented invariants of `GlobalDb`.
fn check(g: &GlobalDb) {
    assert!(g.inbox.is_empty());
    let mut union: Db = Db::new();
    for shard in g.shards.values().chain(g.orphans.values()) {
        assert!(!shard.is_empty(), "empty shard kept");
        for (f, m) in shard {
            assert!(!m.is_empty(), "empty shard family {f} kept");
            for (k, v) in m {
                union
                    .entry(f.clone())
                    .or_default()
                    .insert(k.clone(), v.clone());
            }
        }
    }
    assert_eq!(
        g.global.keys().collect::<Vec<_>>(),
        union.keys().collect::<Vec<_>>(),
        "global families differ from the union of the shards"
    );
    for (f, m) in &g.global {
        assert!(!m.is_empty());
        for (k, v) in m {
            assert!(union[f].contains_key(k), "{f}/{k} owned by no shard");
            assert!(
                g.shards.values().chain(g.orphans.values()).any(|sh| sh
                    .get(f)
                    .and_then(|x| x.get(k))
                    .is_some_and(|sv| values_equal(sv, v))),
                "{f}/{k} = {v} is the value of no shard"
            );
        }
        assert_eq!(m.len(), union[f].len());
    }
}

fn handle(g: &mut GlobalDb, from: &str, m: Msg) -> Vec<Out> {
    let outs = g.handle(from, &m).unwrap_or_else(|e| panic!("{m}: {e}"));
    check(g);
    outs
}

fn to(node: &str, m: Msg) -> Out {
    Out::ToNode {
        node: s(node),
        msg: m,
    }
}

#[test]
fn becoming_global_creates_own_shard() {
    let g = global();
    assert!(g.is_slave("G"));
    assert_eq!(g.lookup("G"), Some(&list!["g:1"]));
    assert_eq!(g.family("'g").unwrap().get("G"), Some(&Value::Null));
    assert_eq!(g.shard("G"), Some(g.db()));
    assert_eq!(g.local().get("'g", "G"), Some(&Value::Null));
    assert_eq!(g.node_up("X"), vec![to("X", msg!["g_global"])]);
    assert!(g.node_up("G").is_empty());
}

#[test]
fn becoming_global_resubscribes_watches() {
    let mut w = Watches::new();
    w.watch(&fam("f"));
    let (g, outs) = GlobalDb::new(LocalDb::new("G", &[]), w);
    // The own watch now has ourselves as master and got its (empty) snapshot.
    assert_eq!(g.watches().master(), Some("G"));
    assert_eq!(
        outs,
        vec![Out::FamilyChanged(FamilyChange {
            family: s("f"),
            ..Default::default()
        })]
    );
    assert_eq!(g.monitors("f").collect::<Vec<_>>(), vec!["G"]);
}

#[test]
fn slave_hello_is_a_no_op() {
    let mut g = global();
    let before = g.clone();
    assert!(handle(&mut g, "S", msg!["g_slave"]).is_empty());
    assert_eq!(g, before);
}

#[test]
fn g_slave_replaces_the_shard_and_tells_monitors() {
    let mut g = global();
    handle(&mut g, "M", msg!["g_mon1", "f"]);
    let outs = handle(
        &mut g,
        "S",
        msg![
            "g_slave",
            map(&[
                ("f", map(&[("a", 1.into()), ("b", 2.into())])),
                ("'l", map(&[("S", list!["s:1"])]))
            ])
        ],
    );
    assert!(g.is_slave("S"));
    assert_eq!(g.lookup("S"), Some(&list!["s:1"]));
    assert_eq!(
        outs,
        vec![to(
            "M",
            msg![
                "g_chg2",
                "f",
                map(&[("a", 1.into()), ("b", 2.into())]),
                keys(&[])
            ]
        )]
    );
    // A second g_slave (same node, new database): b disappears, a changes, 'l is gone.
    let outs = handle(
        &mut g,
        "S",
        msg!["g_slave", map(&[("f", map(&[("a", 5.into())]))])],
    );
    assert_eq!(
        outs,
        vec![to(
            "M",
            msg!["g_chg2", "f", map(&[("a", 5.into())]), keys(&["b"])]
        )]
    );
    assert_eq!(g.lookup("S"), None);
    assert_eq!(g.family("f").unwrap().len(), 1);
    // g_slave with a null database: counts as empty.
    let outs = handle(&mut g, "S", msg!["g_slave", Value::Null]);
    assert_eq!(
        outs,
        vec![to("M", msg!["g_chg2", "f", map(&[]), keys(&["a"])])]
    );
    assert!(g.family("f").is_none());
    assert!(g.is_slave("S"));
}

#[test]
fn g_upd_set_and_delete_forward_for_slaves() {
    let mut g = global();
    handle(&mut g, "P", msg!["g_global"]);
    handle(&mut g, "S", msg!["g_slave", map(&[])]);
    handle(&mut g, "M", msg!["g_mon1", "f"]);
    let outs = handle(&mut g, "S", msg!["g_upd", "f", map(&[("k", "v".into())])]);
    assert_eq!(
        outs,
        vec![
            to(
                "P",
                msg!["g_upd", "f", map(&[("k", "v".into())]), keys(&[])]
            ),
            to(
                "M",
                msg!["g_chg2", "f", map(&[("k", "v".into())]), keys(&[])]
            ),
        ]
    );
    let outs = handle(&mut g, "S", msg!["g_upd", "f", Value::Null, keys(&["k"])]);
    assert_eq!(
        outs,
        vec![
            to("P", msg!["g_upd", "f", map(&[]), keys(&["k"])]),
            to("M", msg!["g_chg2", "f", map(&[]), keys(&["k"])]),
        ]
    );
    assert!(g.family("f").is_none());
    // Deleting what exists nowhere: nothing at all.
    assert!(handle(&mut g, "S", msg!["g_upd", "f", Value::Null, keys(&["zz"])]).is_empty());
}

#[test]
fn updates_from_other_globals_are_not_forwarded() {
    let mut g = global();
    handle(&mut g, "P", msg!["g_global"]);
    handle(&mut g, "Q", msg!["g_global"]);
    handle(&mut g, "M", msg!["g_mon1", "f"]);
    let outs = handle(
        &mut g,
        "P",
        msg!["g_upd", "f", map(&[("k", 1.into())]), keys(&[])],
    );
    assert_eq!(
        outs,
        vec![to(
            "M",
            msg!["g_chg2", "f", map(&[("k", 1.into())]), keys(&[])]
        )]
    );
    let outs = handle(&mut g, "P", msg!["g_upd", "f", map(&[]), keys(&["k"])]);
    assert_eq!(
        outs,
        vec![to("M", msg!["g_chg2", "f", map(&[]), keys(&["k"])])]
    );
}

#[test]
fn delete_restores_own_slave_value_and_forwards_it() {
    let mut g = global();
    handle(&mut g, "P", msg!["g_global"]);
    handle(
        &mut g,
        "S1",
        msg!["g_slave", map(&[("f", map(&[("k", "one".into())]))])],
    );
    handle(
        &mut g,
        "S2",
        msg!["g_slave", map(&[("f", map(&[("k", "two".into())]))])],
    );
    assert_eq!(
        g.family("f").unwrap()["k"],
        Value::from("two"),
        "last write wins"
    );
    handle(&mut g, "M", msg!["g_mon1", "f"]);
    let outs = handle(&mut g, "S2", msg!["g_upd", "f", Value::Null, keys(&["k"])]);
    // S1 still owns k: its value wins back, and other globals hear it as a set.
    assert_eq!(
        outs,
        vec![
            to(
                "P",
                msg!["g_upd", "f", map(&[("k", "one".into())]), keys(&[])]
            ),
            to(
                "M",
                msg!["g_chg2", "f", map(&[("k", "one".into())]), keys(&[])]
            ),
        ]
    );
    assert_eq!(g.family("f").unwrap()["k"], Value::from("one"));
    // When the surviving value is already the global one, nothing is reported.
    handle(
        &mut g,
        "S2",
        msg!["g_upd", "f", map(&[("k", "one".into())])],
    );
    let outs = handle(&mut g, "S2", msg!["g_upd", "f", Value::Null, keys(&["k"])]);
    assert!(outs.is_empty(), "{outs:?}");
}

#[test]
fn delete_restores_other_global_value_locally() {
    let mut g = global();
    handle(&mut g, "P", msg!["g_global"]);
    handle(
        &mut g,
        "P",
        msg!["g_set", map(&[("f", map(&[("k", "p".into())]))])],
    );
    handle(
        &mut g,
        "S",
        msg!["g_slave", map(&[("f", map(&[("k", "s".into())]))])],
    );
    handle(&mut g, "M", msg!["g_mon1", "f"]);
    let outs = handle(&mut g, "S", msg!["g_upd", "f", Value::Null, keys(&["k"])]);
    // Other globals delete their copy of our slave's key; monitors see P's value.
    assert_eq!(
        outs,
        vec![
            to("P", msg!["g_upd", "f", map(&[]), keys(&["k"])]),
            to(
                "M",
                msg!["g_chg2", "f", map(&[("k", "p".into())]), keys(&[])]
            ),
        ]
    );
    assert_eq!(g.family("f").unwrap()["k"], Value::from("p"));
}

#[test]
fn own_slave_owner_is_preferred_over_other_global() {
    let mut g = global();
    handle(&mut g, "A", msg!["g_global"]); // "A" sorts before the slaves
    handle(
        &mut g,
        "A",
        msg!["g_set", map(&[("f", map(&[("k", "a".into())]))])],
    );
    handle(
        &mut g,
        "S1",
        msg!["g_slave", map(&[("f", map(&[("k", "s1".into())]))])],
    );
    handle(
        &mut g,
        "S2",
        msg!["g_slave", map(&[("f", map(&[("k", "s2".into())]))])],
    );
    handle(&mut g, "S2", msg!["g_upd", "f", Value::Null, keys(&["k"])]);
    assert_eq!(g.family("f").unwrap()["k"], Value::from("s1"));
}

#[test]
fn monitors_get_chg1_and_stop_after_mon0() {
    let mut g = global();
    assert_eq!(
        handle(&mut g, "M", msg!["g_mon1", "f"]),
        vec![to("M", msg!["g_chg1", "f", Value::Null])]
    );
    handle(
        &mut g,
        "S",
        msg!["g_slave", map(&[("f", map(&[("a", 1.into())]))])],
    );
    // Repeated g_mon1 (after a master change) is idempotent and gets the current map.
    assert_eq!(
        handle(&mut g, "M", msg!["g_mon1", "f"]),
        vec![to("M", msg!["g_chg1", "f", map(&[("a", 1.into())])])]
    );
    assert_eq!(g.monitors("f").count(), 1);
    assert!(handle(&mut g, "M", msg!["g_mon0", "f"]).is_empty());
    assert_eq!(g.monitors("f").count(), 0);
    assert!(handle(&mut g, "S", msg!["g_upd", "f", map(&[("b", 2.into())])]).is_empty());
    assert!(handle(&mut g, "M", msg!["g_mon0", "nothing"]).is_empty());
}

#[test]
fn queries_and_find() {
    let mut g = global();
    handle(
        &mut g,
        "S",
        msg![
            "g_slave",
            map(&[
                ("f", map(&[("a", 1.into()), ("b", 2.into())])),
                ("'l", map(&[("S", list!["s:1"])]))
            ])
        ],
    );
    assert_eq!(
        handle(&mut g, "Q", msg!["g_db_family", "f", "b"]),
        vec![to(
            "Q",
            msg!["g_reply", "b", map(&[("a", 1.into()), ("b", 2.into())])]
        )]
    );
    assert_eq!(
        handle(&mut g, "Q", msg!["g_db_keys", "f", "c"]),
        vec![to("Q", msg!["g_reply", "c", keys(&["a", "b"])])]
    );
    assert_eq!(
        handle(&mut g, "Q", msg!["g_db_values", "f", 7]),
        vec![to("Q", msg!["g_reply", 7, list![1, 2]])]
    );
    assert_eq!(
        handle(&mut g, "Q", msg!["g_db_family", "nope", "d"]),
        vec![to("Q", msg!["g_reply", "d", map(&[])])]
    );
    assert_eq!(
        handle(&mut g, "Q", msg!["g_db_keys", "nope", "e"]),
        vec![to("Q", msg!["g_reply", "e", list![]])]
    );
    assert_eq!(
        handle(&mut g, "Q", msg!["g_db_values", "nope", "f"]),
        vec![to("Q", msg!["g_reply", "f", list![]])]
    );
    assert_eq!(
        handle(&mut g, "Q", msg!["g_find", "S"]),
        vec![to("Q", msg!["g_found", "S", list!["s:1"]])]
    );
    assert_eq!(
        handle(&mut g, "Q", msg!["g_find", "G"]),
        vec![to("Q", msg!["g_found", "G", list!["g:1"]])]
    );
    assert_eq!(
        handle(&mut g, "Q", msg!["g_find", "X"]),
        vec![to("Q", msg!["g_found", "X", Value::Null])]
    );
    // Our own queries: the reply goes to our own node port, through the caller.
    assert_eq!(
        handle(&mut g, "G", msg!["g_find", "S"]),
        vec![to("G", msg!["g_found", "S", list!["s:1"]])]
    );
}

#[test]
fn node_down_clears_shard_monitors_and_mirrors() {
    let mut g = global();
    handle(&mut g, "P", msg!["g_global"]);
    handle(
        &mut g,
        "S",
        msg![
            "g_slave",
            map(&[
                ("f", map(&[("a", 1.into())])),
                ("'l", map(&[("S", list!["s:1"])]))
            ])
        ],
    );
    handle(&mut g, "S", msg!["g_mon1", "f"]);
    handle(&mut g, "M", msg!["g_mon1", "f"]);
    handle(&mut g, "M", msg!["g_mon1", "'l"]);
    let outs = g.node_down("S");
    check(&g);
    assert_eq!(
        outs,
        vec![
            to("P", msg!["g_upd", "'l", map(&[]), keys(&["S"])]),
            to("M", msg!["g_chg2", "'l", map(&[]), keys(&["S"])]),
            to("P", msg!["g_upd", "f", map(&[]), keys(&["a"])]),
            to("M", msg!["g_chg2", "f", map(&[]), keys(&["a"])]),
        ],
        "no g_chg2 for the departed node itself"
    );
    assert!(!g.is_slave("S"));
    assert!(g.shard("S").is_none());
    assert_eq!(g.monitors("f").collect::<Vec<_>>(), vec!["M"]);
    assert!(g.node_down("S").is_empty(), "second node_down is a no-op");
    assert!(
        g.node_down("G").is_empty(),
        "we never go down from our own view"
    );
}

#[test]
fn global_peer_connect_and_departure() {
    let mut g = global();
    handle(
        &mut g,
        "S",
        msg!["g_slave", map(&[("f", map(&[("a", 1.into())]))])],
    );
    handle(&mut g, "M", msg!["g_mon1", "'g"]);
    let outs = handle(&mut g, "P", msg!["g_global"]);
    // g_set with the merged databases of all our slaves (S and ourselves) comes first, then
    // the g_upd of 'g (queued through our own node port, as in the reference).
    let merged = map(&[
        ("'g", map(&[("G", Value::Null)])),
        ("'l", map(&[("G", list!["g:1"])])),
        ("f", map(&[("a", 1.into())])),
    ]);
    assert_eq!(
        outs,
        vec![
            to("P", msg!["g_set", merged]),
            to(
                "P",
                msg!["g_upd", "'g", map(&[("P", Value::Null)]), keys(&[])]
            ),
            to(
                "M",
                msg!["g_chg2", "'g", map(&[("P", Value::Null)]), keys(&[])]
            ),
        ]
    );
    assert_eq!(g.peers().collect::<Vec<_>>(), vec!["P"]);

    // P sends its shard; its 'l entry is mirrored in our own database (and thus forwarded).
    let outs = handle(
        &mut g,
        "P",
        msg![
            "g_set",
            map(&[
                ("'l", map(&[("P", list!["p:1"]), ("T", list!["t:1"])])),
                ("f", map(&[("b", 2.into())]))
            ])
        ],
    );
    assert_eq!(g.local().get("'l", "P"), Some(&list!["p:1"]));
    assert_eq!(g.lookup("T"), Some(&list!["t:1"]));
    assert_eq!(g.family("f").unwrap().len(), 2);
    assert_eq!(
        outs,
        vec![to(
            "P",
            msg!["g_upd", "'l", map(&[("P", list!["p:1"])]), keys(&[])]
        )]
    );

    // P disappears: its shard goes, our mirrors go, nothing is forwarded to it any more.
    let outs = g.node_down("P");
    check(&g);
    assert_eq!(g.peers().count(), 0);
    assert!(g.lookup("T").is_none() && g.lookup("P").is_none());
    assert_eq!(g.family("f").unwrap().len(), 1);
    assert!(g.local().get("'g", "P").is_none() && g.local().get("'l", "P").is_none());
    assert!(
        outs.iter()
            .all(|o| !matches!(o, Out::ToNode { node, .. } if node == "P")),
        "{outs:?}"
    );
    assert!(outs.contains(&to("M", msg!["g_chg2", "'g", map(&[]), keys(&["P"])])));
}

/// The shard of a global peer that goes down is kept as an orphan: nothing is reported
/// deleted, a slave of the peer that fails over to us takes its keys back, and only what
/// nobody re-sent is deleted when the orphan expires.
#[test]
fn orphaned_shard_of_a_departed_global() {
    let mut g = global();
    handle(&mut g, "M", msg!["g_mon1", "f"]);
    handle(&mut g, "P", msg!["g_global"]);
    let abc = map(&[("a", 1.into()), ("b", 2.into()), ("c", 3.into())]);
    handle(&mut g, "P", msg!["g_set", map(&[("f", abc)])]);
    assert_eq!(g.family("f").unwrap().len(), 3);

    let (outs, orphaned) = g.node_down_orphaning("P");
    check(&g);
    assert!(orphaned);
    assert_eq!(g.peers().count(), 0);
    assert_eq!(g.orphans().collect::<Vec<_>>(), ["P"]);
    assert!(
        !outs.iter().any(|o| matches!(o, Out::ToNode { msg, .. }
            if msg.tag() == Some("g_chg2") && msg.get(1) == Some(&Value::from("f")))),
        "no change of f reported: {outs:?}"
    );
    assert_eq!(g.family("f").unwrap().len(), 3);

    // A slave of P fails over to us: a unchanged, b with a new value.
    let outs = handle(
        &mut g,
        "S",
        msg![
            "g_slave",
            map(&[("f", map(&[("a", 1.into()), ("b", 20.into())]))])
        ],
    );
    assert!(outs.contains(&to(
        "M",
        msg![
            "g_chg2",
            "f",
            map(&[("a", 1.into()), ("b", 20.into())]),
            keys(&[])
        ]
    )));
    assert_eq!(
        g.orphan("P").unwrap()["f"].keys().collect::<Vec<_>>(),
        ["c"]
    );

    // The grace period ends: c, which nobody re-sent, goes.
    let outs = g.expire_orphan("P");
    check(&g);
    assert_eq!(
        outs,
        vec![to("M", msg!["g_chg2", "f", map(&[]), keys(&["c"])])]
    );
    assert_eq!(g.orphans().count(), 0);
    assert_eq!(g.family("f").unwrap().len(), 2);
    assert!(g.expire_orphan("P").is_empty(), "once");

    // A slave's departure is not orphaned.
    let (_, orphaned) = g.node_down_orphaning("S");
    assert!(!orphaned);
    assert!(g.family("f").is_none());
}

#[test]
fn g_global_from_former_slave_drops_its_state() {
    let mut g = global();
    handle(
        &mut g,
        "S",
        msg!["g_slave", map(&[("f", map(&[("a", 1.into())]))])],
    );
    handle(&mut g, "S", msg!["g_global"]);
    assert!(!g.is_slave("S"));
    assert!(g.family("f").is_none());
    assert_eq!(g.peers().collect::<Vec<_>>(), vec!["S"]);
}

#[test]
fn own_writes_and_own_watch() {
    let mut g = global();
    handle(&mut g, "P", msg!["g_global"]);
    let outs = g.watch(&fam("f"));
    assert_eq!(
        outs,
        vec![Out::FamilyChanged(FamilyChange {
            family: s("f"),
            ..Default::default()
        })]
    );
    let outs = g.db_set(&fam("f"), "x", Value::from(1)).unwrap();
    assert_eq!(
        outs,
        vec![
            to("P", msg!["g_upd", "f", map(&[("x", 1.into())]), keys(&[])]),
            Out::FamilyChanged(FamilyChange {
                family: s("f"),
                added: vec![s("x")],
                ..Default::default()
            }),
        ]
    );
    assert!(
        g.db_set(&fam("f"), "x", Value::from(1)).unwrap().is_empty(),
        "unchanged"
    );
    assert!(g.db_set(&fam("f"), "", Value::from(1)).is_err());
    let outs = handle(
        &mut g,
        "S",
        msg![
            "g_slave",
            map(&[("f", map(&[("x", 2.into()), ("y", 3.into())]))])
        ],
    );
    assert!(outs.contains(&Out::FamilyChanged(FamilyChange {
        family: s("f"),
        added: vec![s("y")],
        changed: vec![s("x")],
        ..Default::default()
    })));
    let outs = g.db_del(&fam("f"), &["x"]);
    // S still owns x: its value stays, nothing is deleted.
    assert_eq!(g.family("f").unwrap()["x"], Value::from(2));
    assert!(!outs
        .iter()
        .any(|o| matches!(o, Out::FamilyChanged(c) if !c.deleted.is_empty())));
    assert_eq!(
        g.watches().mirror("f").map(|m| m.to_map()).as_ref(),
        g.family("f")
    );
    // Changes from anyone but ourselves are ignored.
    assert!(handle(&mut g, "P", msg!["g_chg1", "f", Value::Null]).is_empty());
    assert_eq!(
        g.watches().mirror("f").map(|m| m.to_map()).as_ref(),
        g.family("f")
    );
    let outs = g.unwatch("f");
    assert!(outs.is_empty());
    assert_eq!(g.monitors("f").count(), 0);
}

#[test]
fn malformed_requests_are_refused_without_change() {
    let mut g = global();
    handle(
        &mut g,
        "S",
        msg!["g_slave", map(&[("f", map(&[("a", 1.into())]))])],
    );
    let before = g.clone();
    let bad = [
        msg!["g_slave", "x"],
        msg![
            "g_slave",
            map(&[("f", map(&[("a", 2.into())])), ("h", list![1])])
        ],
        msg!["g_set", 5],
        msg!["g_upd"],
        msg!["g_upd", list![], map(&[])],
        msg!["g_upd", "f", "set"],
        msg!["g_upd", "f", map(&[("a", 9.into())]), "del"],
        msg!["g_upd", "f", Value::Null, list![map(&[])]],
        msg!["g_find"],
        msg!["g_find", map(&[])],
        msg!["g_db_family", "f"],
        msg!["g_db_keys"],
        msg!["g_db_values", Value::Null, "id"],
        msg!["g_mon1"],
        msg!["g_mon0", 1.5],
        msg!["g_chg2", "f", 3],
        msg!["nonsense"],
        msg![1, 2],
        Msg::new(),
    ];
    for m in bad {
        assert!(g.handle("S", &m).is_err(), "{m} must be refused");
        assert_eq!(g, before, "{m} must not change anything");
    }
}

//! Unit tests of [`GlobalService`] and [`Seeds`]: one node at a time, peers played by hand,
//! virtual time.

use super::*;
use crate::addr::format_hostport;
use crate::db::names::{Family, NameError};
use crate::db::DbMap;
use crate::value::{Msg, Str, Value};
use crate::{list, msg};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fn s(x: &str) -> Str {
    Str::from(x)
}

fn fam(x: &str) -> Family {
    Family::user(x).unwrap()
}

fn addr(x: &str) -> SocketAddr {
    x.parse().unwrap()
}

fn send(node: &str, msg: Msg) -> Effect {
    Effect::Send { node: s(node), msg }
}

/// The `Send` effects as `node: json` lines.
fn sends(fx: &[Effect]) -> Vec<String> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Send { node, msg } => Some(format!("{node}: {msg}")),
            _ => None,
        })
        .collect()
}

/// Delivers a node-port request as the runtime would.
fn deliver(svc: &mut GlobalService, from: &str, msg: Msg) -> Vec<Effect> {
    let mut it = msg.into_iter();
    let tag = it.next().and_then(|t| t.as_str().map(Str::from)).unwrap();
    svc.request(from, &tag, it.collect())
}

fn map(entries: &[(&str, Value)]) -> Value {
    Value::Map(entries.iter().map(|(k, v)| (s(k), v.clone())).collect())
}

fn dbmap(entries: &[(&str, Value)]) -> DbMap {
    entries.iter().map(|(k, v)| (s(k), v.clone())).collect()
}

fn keys(v: &[&str]) -> Vec<Str> {
    v.iter().map(|k| s(k)).collect()
}

/// The only `Notify` among the effects.
fn notify(fx: &[Effect]) -> (Vec<u64>, Str, DbMap, Vec<Str>, Vec<Str>, Vec<Str>) {
    let n: Vec<_> = fx
        .iter()
        .filter_map(|e| match e {
            Effect::Notify {
                subscribers,
                change:
                    DbChange {
                        family,
                        contents,
                        added,
                        changed,
                        deleted,
                    },
            } => Some((
                subscribers.clone(),
                family.clone(),
                contents.to_map(),
                added.clone(),
                changed.clone(),
                deleted.clone(),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(n.len(), 1, "expected one Notify in {fx:?}");
    n.into_iter().next().unwrap()
}

/// A slave of `master` (learned as a seed, up), with one listen address.
fn slave_with_master(me: &str, master: &str) -> GlobalService {
    let mut svc = GlobalService::new(me);
    svc.set_listen_addrs(&[addr("10.0.0.9:4040")]);
    svc.seed_greeting(master);
    svc.node_up(master);
    assert_eq!(svc.master(), Some(master));
    svc
}

#[test]
fn slave_picks_first_connected_seed_as_master() {
    let mut svc = GlobalService::new("S");
    assert!(!svc.is_global());
    assert_eq!(svc.master(), None);
    assert!(svc
        .set_listen_addrs(&[addr("10.0.0.9:4040"), addr("[::1]:5")])
        .is_empty());
    assert_eq!(svc.seed_greeting("G1"), vec![send("G1", msg!["g_slave"])]);
    assert_eq!(svc.seed_greeting("G2"), vec![send("G2", msg!["g_slave"])]);
    assert!(svc.node_up("X").is_empty(), "not a seed");
    let fx = svc.node_up("G2");
    assert_eq!(
        fx,
        vec![
            send("G2", msg!["g_slave"]),
            Effect::Master(Some(s("G2"))),
            send(
                "G2",
                msg![
                    "g_slave",
                    map(&[("'l", map(&[("S", list!["10.0.0.9:4040", "[::1]:5"])]))])
                ]
            ),
        ]
    );
    assert_eq!(svc.master(), Some("G2"));
    // A later seed gets g_slave (it must run the global service) but is not the master.
    assert_eq!(svc.node_up("G1"), vec![send("G1", msg!["g_slave"])]);
    assert_eq!(svc.master(), Some("G2"));
    assert_eq!(svc.up_nodes().collect::<Vec<_>>(), ["X", "G2", "G1"]);
    assert!(svc.is_seed_node("G1") && !svc.is_seed_node("X"));
    // Our own ID is never a peer.
    assert!(svc.node_up("S").is_empty());
    assert!(svc.node_down("S").is_empty());
}

#[test]
fn seed_already_up_when_greeting_becomes_master() {
    let mut svc = GlobalService::new("S");
    assert!(svc.node_up("G").is_empty());
    let fx = svc.seed_greeting("G");
    assert_eq!(
        sends(&fx),
        [r#"G: ["g_slave"]"#, r#"G: ["g_slave",{"'l":{"S":[]}}]"#]
    );
    assert_eq!(svc.master(), Some("G"));
}

#[test]
fn master_loss_picks_next_seed_and_resends_pending() {
    let mut svc = GlobalService::new("S");
    for n in ["A", "B", "C"] {
        svc.seed_greeting(n);
        svc.node_up(n);
    }
    assert_eq!(svc.master(), Some("A"));
    let (q, fx) = svc.query(QueryKind::Family, &fam("f"));
    assert_eq!(q, 1);
    assert_eq!(sends(&fx), [r#"A: ["g_db_family","f","b"]"#]);
    let (found, fx) = svc.lookup("N");
    assert!(found.is_empty());
    assert_eq!(sends(&fx), [r#"A: ["g_find","N"]"#]);
    assert!(svc.lookup("N").1.is_empty(), "one g_find per node");
    assert_eq!(sends(&svc.watch(&fam("w"), 1)), [r#"A: ["g_mon1","w"]"#]);
    assert_eq!(
        sends(&svc.db_set(&fam("f"), "k", Value::from(1)).unwrap()),
        [r#"A: ["g_upd","f",{"k":1}]"#]
    );

    // A non-master going down changes nothing.
    assert!(svc.node_down("C").is_empty());
    svc.node_up("C");
    // The master goes down: the seed up longest (B) takes over.
    let fx = svc.node_down("A");
    assert_eq!(fx[0], Effect::Master(Some(s("B"))));
    assert_eq!(
        sends(&fx),
        [
            r#"B: ["g_slave",{"'l":{"S":[]},"f":{"k":1}}]"#,
            r#"B: ["g_mon1","w"]"#,
            r#"B: ["g_db_family","f","b"]"#,
            r#"B: ["g_find","N"]"#,
        ]
    );
    // B answers the look-up: no longer pending.
    let fx = deliver(&mut svc, "B", msg!["g_found", "N", list!["10.0.0.7:4040"]]);
    assert_eq!(
        fx,
        vec![Effect::Addresses {
            node: s("N"),
            addrs: vec![addr("10.0.0.7:4040")]
        }]
    );
    assert_eq!(svc.pending_finds().count(), 0);
    let fx = svc.node_down("B");
    assert_eq!(
        sends(&fx),
        [
            r#"C: ["g_slave",{"'l":{"S":[]},"f":{"k":1}}]"#,
            r#"C: ["g_mon1","w"]"#,
            r#"C: ["g_db_family","f","b"]"#,
        ]
    );
    let fx = deliver(&mut svc, "C", msg!["g_reply", "b", map(&[])]);
    assert_eq!(
        fx,
        vec![Effect::Reply {
            query: 1,
            value: map(&[])
        }]
    );
    // The last seed goes: no master, nothing to send.
    assert_eq!(svc.node_down("C"), vec![Effect::Master(None)]);
    assert_eq!(svc.master(), None);
    assert!(svc
        .db_set(&fam("f"), "k", Value::from(2))
        .unwrap()
        .is_empty());
}

#[test]
fn g_slave_makes_a_node_global() {
    let mut g = GlobalService::new("G");
    g.set_listen_addrs(&[addr("10.0.0.1:4040")]);
    g.node_up("S");
    let fx = deliver(&mut g, "S", msg!["g_slave"]);
    assert_eq!(fx[0], Effect::BecameGlobal);
    assert_eq!(sends(&fx), [r#"S: ["g_global"]"#]);
    assert!(g.is_global());
    assert_eq!(g.master(), Some("G"));
    // Becoming global again is a no-op.
    assert!(g.become_global().is_empty());
    assert!(deliver(&mut g, "S", msg!["g_slave"]).is_empty());

    let db = map(&[
        ("'l", map(&[("S", list!["10.0.0.9:4040"])])),
        ("f", map(&[("k", Value::from(1))])),
    ]);
    assert!(sends(&deliver(&mut g, "S", msg!["g_slave", db])).is_empty());
    let (addrs, fx) = g.lookup("S");
    assert_eq!(addrs, vec![addr("10.0.0.9:4040")]);
    assert!(fx.is_empty());
    assert_eq!(g.lookup("G").0, vec![addr("10.0.0.1:4040")]);
    assert!(g.lookup("unknown").0.is_empty());
    assert!(g.global_db().unwrap().is_slave("S"));
    // Malformed requests are refused, nothing else happens.
    let fx = deliver(&mut g, "S", msg!["g_upd", list![]]);
    assert!(matches!(fx.as_slice(), [Effect::Refused { from, .. }] if from == "S"));
    let fx = deliver(&mut g, "S", msg!["g_nonsense"]);
    assert!(matches!(fx.as_slice(), [Effect::Refused { .. }]));
}

#[test]
fn slave_refuses_database_requests() {
    let mut svc = GlobalService::new("S");
    for m in [
        msg!["g_find", "N"],
        msg!["g_upd", "f", map(&[])],
        msg!["g_db_keys", "f", "b"],
    ] {
        let fx = deliver(&mut svc, "X", m);
        assert!(matches!(fx.as_slice(), [Effect::Refused { .. }]), "{fx:?}");
    }
    // g_global on a slave is only remembered.
    assert!(deliver(&mut svc, "X", msg!["g_global"]).is_empty());
    assert_eq!(svc.global_nodes().collect::<Vec<_>>(), ["X"]);
    assert!(!svc.is_global());
}

#[test]
fn become_global_meshes_with_known_globals() {
    let mut n = GlobalService::new("N");
    n.node_up("G1");
    n.node_up("X");
    assert!(deliver(&mut n, "G1", msg!["g_global"]).is_empty());
    // Pending before becoming global: answered by ourselves.
    let (q, fx) = n.query(QueryKind::Keys, &fam("f"));
    assert!(fx.is_empty(), "no master yet");
    assert!(n.lookup("G1").1.is_empty());

    let fx = n.become_global();
    assert_eq!(fx[0], Effect::BecameGlobal);
    assert_eq!(
        sends(&fx),
        [
            r#"G1: ["g_global"]"#,
            r#"X: ["g_global"]"#,
            r#"G1: ["g_set",{"'g":{"N":null},"'l":{"N":[]}}]"#,
            r#"G1: ["g_upd","'g",{"G1":null},[]]"#,
        ]
    );
    assert!(fx.contains(&Effect::Connect { node: s("G1") }));
    assert!(!fx.contains(&Effect::Connect { node: s("X") }));
    assert!(!fx.contains(&Effect::Connect { node: s("N") }));
    assert!(fx.contains(&Effect::Reply {
        query: q,
        value: list![]
    }));
    assert_eq!(n.pending_queries().count(), 0);
    assert_eq!(n.pending_finds().count(), 0, "g_found from ourselves");
    assert!(!fx
        .iter()
        .any(|e| matches!(e, Effect::Send { node, .. } if node == "N")));

    // A node coming up later hears g_global; a global one that answers joins the mesh.
    assert_eq!(sends(&n.node_up("G2")), [r#"G2: ["g_global"]"#]);
    let fx = deliver(&mut n, "G2", msg!["g_global"]);
    assert_eq!(
        sends(&fx),
        [
            r#"G2: ["g_set",{"'g":{"G1":null,"N":null},"'l":{"N":[]}}]"#,
            r#"G1: ["g_upd","'g",{"G2":null},[]]"#,
            r#"G2: ["g_upd","'g",{"G2":null},[]]"#,
        ]
    );
    assert!(fx.contains(&Effect::Connect { node: s("G2") }));
    let (subs, family, contents, ..) = notify(&fx);
    assert!(subs.is_empty(), "internal watch");
    assert_eq!(family, "'g");
    assert!(contents.contains_key("G2"));
    assert_eq!(
        n.global_db().unwrap().peers().collect::<Vec<_>>(),
        ["G1", "G2"]
    );
}

#[test]
fn db_set_and_del_wire_shapes() {
    // Slave: g_upd to the master, without a delete list for sets.
    let mut sl = slave_with_master("S", "M");
    assert_eq!(
        sl.db_set(&fam("f"), "k", Value::from(1)).unwrap(),
        vec![send("M", msg!["g_upd", "f", map(&[("k", Value::from(1))])])]
    );
    assert!(sl
        .db_set(&fam("f"), "k", Value::from("1"))
        .unwrap()
        .is_empty());
    assert_eq!(
        sl.db_set(&fam("f"), "", Value::Null),
        Err(NameError::EmptySubkey)
    );
    assert_eq!(
        sends(&sl.db_del(&fam("f"), &keys(&["k", "zz"]))),
        [r#"M: ["g_upd","f",null,["k"]]"#]
    );
    assert!(sl.db_del(&fam("f"), &keys(&["k"])).is_empty());
    assert_eq!(
        sends(&sl.set_listen_addrs(&[addr("10.0.0.2:1")])),
        [r#"M: ["g_upd","'l",{"S":["10.0.0.2:1"]}]"#]
    );

    // Global with a global peer P and a slave T monitoring f: forward and g_chg2.
    let mut g = GlobalService::new("G");
    g.become_global();
    g.node_up("P");
    g.node_up("T");
    deliver(&mut g, "P", msg!["g_global"]);
    deliver(&mut g, "T", msg!["g_slave", map(&[])]);
    assert_eq!(
        sends(&deliver(&mut g, "T", msg!["g_mon1", "f"])),
        [r#"T: ["g_chg1","f",null]"#]
    );
    let fx = g.db_set(&fam("f"), "k", Value::from(1)).unwrap();
    assert_eq!(
        sends(&fx),
        [
            r#"P: ["g_upd","f",{"k":1},[]]"#,
            r#"T: ["g_chg2","f",{"k":1},[]]"#,
        ]
    );
    let fx = g.db_del(&fam("f"), &keys(&["k"]));
    assert_eq!(
        sends(&fx),
        [
            r#"P: ["g_upd","f",{},["k"]]"#,
            r#"T: ["g_chg2","f",{},["k"]]"#,
        ]
    );
    assert_eq!(
        sends(&g.set_listen_addrs(&[addr("[2001:db8::5]:37211")])),
        [r#"P: ["g_upd","'l",{"G":["[2001:db8::5]:37211"]},[]]"#]
    );
}

#[test]
fn watch_unwatch_and_late_subscribers_on_a_slave() {
    let mut sl = slave_with_master("S", "M");
    assert_eq!(sends(&sl.watch(&fam("f"), 1)), [r#"M: ["g_mon1","f"]"#]);
    assert!(sl.watch(&fam("f"), 2).is_empty(), "no snapshot yet");
    let fx = deliver(
        &mut sl,
        "M",
        msg!["g_chg1", "f", map(&[("a", Value::from(1))])],
    );
    let (subs, family, contents, added, changed, deleted) = notify(&fx);
    assert_eq!((subs, family), (vec![1, 2], s("f")));
    assert_eq!(contents, dbmap(&[("a", Value::from(1))]));
    assert_eq!(added, keys(&["a"]));
    assert!(changed.is_empty() && deleted.is_empty());

    // A late subscriber gets everything at once, and only it.
    let fx = sl.watch(&fam("f"), 3);
    assert!(sends(&fx).is_empty());
    let (subs, _, contents, added, ..) = notify(&fx);
    assert_eq!(subs, vec![3]);
    assert_eq!(added, keys(&["a"]));
    assert_eq!(contents.len(), 1);

    let fx = deliver(
        &mut sl,
        "M",
        msg!["g_chg2", "f", map(&[("b", Value::from(2))]), list!["a"]],
    );
    let (subs, _, contents, added, _, deleted) = notify(&fx);
    assert_eq!(subs, vec![1, 2, 3]);
    assert_eq!(added, keys(&["b"]));
    assert_eq!(deleted, keys(&["a"]));
    assert_eq!(contents, dbmap(&[("b", Value::from(2))]));
    assert_eq!(sl.family_mirror("f"), contents);

    // Not from the master: ignored. Malformed: refused.
    assert!(deliver(&mut sl, "X", msg!["g_chg1", "f", map(&[])]).is_empty());
    let fx = deliver(&mut sl, "M", msg!["g_chg2", "f", list![1]]);
    assert!(matches!(fx.as_slice(), [Effect::Refused { .. }]));

    assert!(sl.unwatch("f", 1).is_empty());
    assert!(sl.unwatch("f", 99).is_empty());
    assert!(sl.unwatch("f", 2).is_empty());
    assert_eq!(sends(&sl.unwatch("f", 3)), [r#"M: ["g_mon0","f"]"#]);
    assert!(sl.unwatch("f", 3).is_empty());
    assert!(sl.family_mirror("f").is_empty());
    // Internal families stay watched after their last subscriber.
    let l = Family::internal("'l").unwrap();
    assert_eq!(sends(&sl.watch(&l, 4)), [r#"M: ["g_mon1","'l"]"#]);
    assert!(sl.unwatch("'l", 4).is_empty());
    assert_eq!(sends(&sl.watch(&l, 5)), Vec::<String>::new());
}

#[test]
fn watch_on_a_global_node_is_answered_at_once() {
    let mut g = GlobalService::new("G");
    g.become_global();
    g.db_set(&fam("f"), "k", Value::from("v")).unwrap();
    let fx = g.watch(&fam("f"), 1);
    assert!(sends(&fx).is_empty());
    let (subs, _, contents, added, ..) = notify(&fx);
    assert_eq!(subs, vec![1]);
    assert_eq!(added, keys(&["k"]));
    assert_eq!(contents, dbmap(&[("k", Value::from("v"))]));
    let (subs, _, _, _, changed, _) = notify(&g.db_set(&fam("f"), "k", Value::from("w")).unwrap());
    assert_eq!(subs, vec![1]);
    assert_eq!(changed, keys(&["k"]));
    assert!(g.unwatch("f", 1).is_empty());
    assert!(g
        .db_set(&fam("f"), "k", Value::from("x"))
        .unwrap()
        .is_empty());
    // The internal 'g watch survives a user's watch of it.
    let gfam = Family::globals();
    let (subs, _, contents, added, ..) = notify(&g.watch(&gfam, 2));
    assert_eq!((subs, added), (vec![2], keys(&["G"])));
    assert!(contents.contains_key("G"));
    assert!(g.unwatch("'g", 2).is_empty());
    assert!(g.is_watched("'g"));
}

#[test]
fn watches_survive_becoming_global() {
    let mut sl = slave_with_master("S", "M");
    sl.watch(&fam("f"), 1);
    deliver(
        &mut sl,
        "M",
        msg!["g_chg1", "f", map(&[("a", Value::from(1))])],
    );
    sl.db_set(&fam("f"), "b", Value::from(2)).unwrap();
    let fx = sl.become_global();
    // The own database is now the only one: a is gone, b (our own) is there.
    let n: Vec<_> = fx
        .iter()
        .filter(|e| matches!(e, Effect::Notify { change: DbChange { family, .. }, .. } if family == "f"))
        .collect();
    assert_eq!(n.len(), 1);
    if let Effect::Notify {
        subscribers,
        change: DbChange { added, deleted, .. },
    } = n[0]
    {
        assert_eq!(subscribers, &vec![1]);
        assert_eq!(added, &keys(&["b"]));
        assert_eq!(deleted, &keys(&["a"]));
    }
    assert_eq!(sl.master(), Some("S"));
}

#[test]
fn lookup_on_a_slave() {
    let mut sl = GlobalService::new("S");
    let (addrs, fx) = sl.lookup("N");
    assert!(addrs.is_empty() && fx.is_empty(), "no master: waits");
    sl.seed_greeting("M");
    let fx = sl.node_up("M");
    assert_eq!(sends(&fx).last().unwrap(), r#"M: ["g_find","N"]"#);
    // A null or useless answer ends the wait without addresses.
    assert!(deliver(&mut sl, "M", msg!["g_found", "N", Value::Null]).is_empty());
    assert_eq!(sl.pending_finds().count(), 0);
    assert_eq!(sends(&sl.lookup("N").1), [r#"M: ["g_find","N"]"#]);
    let fx = deliver(
        &mut sl,
        "M",
        msg!["g_found", "N", list!["nohost:1", 7, "10.0.0.7:4040"]],
    );
    assert_eq!(
        fx,
        vec![Effect::Addresses {
            node: s("N"),
            addrs: vec![addr("10.0.0.7:4040")]
        }]
    );
    assert!(deliver(&mut sl, "M", msg!["g_found"]).is_empty());
    assert!(deliver(&mut sl, "M", msg!["g_found", 5, list![]]).is_empty());
}

#[test]
fn query_reply_routing() {
    let mut sl = slave_with_master("S", "M");
    let (a, fx) = sl.query(QueryKind::Keys, &fam("f"));
    assert_eq!(sends(&fx), [r#"M: ["g_db_keys","f","b"]"#]);
    let (b, fx) = sl.query(QueryKind::Values, &fam("f"));
    assert_eq!(sends(&fx), [r#"M: ["g_db_values","f","c"]"#]);
    assert_eq!((a, b), (1, 2));
    assert_eq!(
        deliver(&mut sl, "M", msg!["g_reply", "c", list![1]]),
        vec![Effect::Reply {
            query: b,
            value: list![1]
        }]
    );
    assert!(deliver(&mut sl, "M", msg!["g_reply", "c", list![1]]).is_empty());
    assert!(deliver(&mut sl, "M", msg!["g_reply", 1, list![1]]).is_empty());
    assert!(deliver(&mut sl, "M", msg!["g_reply", "B"]).is_empty());
    assert!(deliver(&mut sl, "M", msg!["g_reply"]).is_empty());
    // From any node, with a missing value.
    assert_eq!(
        deliver(&mut sl, "Y", msg!["g_reply", "b"]),
        vec![Effect::Reply {
            query: a,
            value: Value::Null
        }]
    );
    // Many queries: the letter counter keeps going.
    for _ in 0..23 {
        sl.query(QueryKind::Family, &fam("f"));
    }
    let (z, fx) = sl.query(QueryKind::Family, &fam("f"));
    assert_eq!(sends(&fx), [r#"M: ["g_db_family","f","aa"]"#]);
    assert_eq!(z, 26);

    // A global node answers itself at once.
    let mut g = GlobalService::new("G");
    g.become_global();
    g.db_set(&fam("f"), "k", Value::from(1)).unwrap();
    let (q, fx) = g.query(QueryKind::Family, &fam("f"));
    assert_eq!(
        fx,
        vec![Effect::Reply {
            query: q,
            value: map(&[("k", Value::from(1))])
        }]
    );
}

// ---------------------------------------------------------------------------------------
// Seeds

fn approx(a: Instant, b: Instant) -> bool {
    let d = if a > b { a - b } else { b - a };
    d < Duration::from_micros(1)
}

fn secs(x: f64) -> Duration {
    Duration::from_secs_f64(x)
}

#[test]
fn seeds_first_round_at_once_then_every_1_2_to_2_4_s() {
    let t0 = Instant::now();
    let (a, b) = (addr("10.0.0.1:1"), addr("10.0.0.2:1"));
    let mut sd = Seeds::new(vec![a, b, a], secs(30.0), t0);
    assert_eq!(sd.addrs().collect::<Vec<_>>(), [a, b]);
    assert_eq!(sd.poll_timeout(), Some(t0));
    assert_eq!(sd.handle_timeout(t0, |_| false, |_| None, 0.5), vec![a, b]);
    // The reference's first retry: 1.2–2.4 s.
    let t1 = sd.poll_timeout().unwrap();
    assert!(approx(t1, t0 + secs(1.8)));
    assert!(
        sd.handle_timeout(t0 + secs(1.0), |_| false, |_| None, 0.5)
            .is_empty(),
        "not due"
    );
    assert_eq!(sd.poll_timeout(), Some(t1), "an early call changes nothing");
    assert!(sd.greeted(a, "A"));
    assert!(!sd.greeted(addr("10.0.0.3:1"), "C"));
    assert_eq!(sd.node_of(a), Some("A"));
    // A's node is up: only b is dialled.
    assert_eq!(sd.handle_timeout(t1, |n| n == "A", |_| None, 0.0), vec![b]);
    let t2 = sd.poll_timeout().unwrap();
    assert!(approx(t2, t1 + secs(1.2)));
    // No doubling: a seed that stays down is dialled every 1.2–2.4 s, drawn afresh.
    let mut t = t2;
    for r in [1.0, 0.25, 1.0, 0.0, 1.0, 1.0, 1.0] {
        assert_eq!(sd.handle_timeout(t, |_| false, |_| None, r), vec![a, b]);
        let next = sd.poll_timeout().unwrap();
        assert!(approx(next, t + secs(1.2 + 1.2 * r)), "{r}");
        t = next;
    }
    // Every seed's node is up: no round until one goes down.
    assert!(sd.greeted(b, "B"));
    assert!(sd.handle_timeout(t, |_| true, |_| None, 0.5).is_empty());
    assert_eq!(sd.poll_timeout(), None);
}

#[test]
fn seeds_retry_range() {
    let t0 = Instant::now();
    for (r, monitor_timeout, first) in [
        (0.0, 60.0, 1.2),
        (1.0, 60.0, 2.4),
        (0.5, 60.0, 1.8),
        (f64::NAN, 60.0, 1.2),
        (-3.0, 60.0, 1.2),
        (7.0, 60.0, 2.4),
        (1.0, 2.0, 2.0),
        (0.0, 0.5, 0.5),
    ] {
        let mut sd = Seeds::new(vec![addr("10.0.0.1:1")], secs(monitor_timeout), t0);
        sd.handle_timeout(t0, |_| false, |_| None, r);
        assert!(
            approx(sd.poll_timeout().unwrap(), t0 + secs(first)),
            "{r} {monitor_timeout}"
        );
    }
}

#[test]
fn seeds_lost_seed_node_dialled_within_the_loss_spread() {
    let t0 = Instant::now();
    let a = addr("10.0.0.1:1");
    let mut sd = Seeds::new(vec![a], secs(30.0), t0);
    assert_eq!(sd.handle_timeout(t0, |_| false, |_| None, 0.0), vec![a]);
    sd.greeted(a, "A");
    let t1 = sd.poll_timeout().unwrap();
    assert!(sd.handle_timeout(t1, |_| true, |_| None, 0.0).is_empty());
    assert_eq!(sd.poll_timeout(), None, "A is up");
    let now = t1 + secs(100.0);
    assert!(!sd.node_down("other", now, 0.0), "not a seed node");
    assert_eq!(sd.poll_timeout(), None);
    // The round after a loss comes within a random delay of up to 1 s.
    assert!(sd.node_down("A", now, 0.5));
    assert!(approx(sd.poll_timeout().unwrap(), now + secs(0.5)));
    assert!(sd.handle_timeout(now, |_| false, |_| None, 0.0).is_empty());
    let due = sd.poll_timeout().unwrap();
    assert_eq!(sd.handle_timeout(due, |_| false, |_| None, 1.0), vec![a]);
    let next = sd.poll_timeout().unwrap();
    assert!(approx(next, due + secs(2.4)));
    // Lost again (it came up in between): a round that is due sooner stays.
    assert!(sd.node_down("A", next - secs(0.2), 1.0));
    assert_eq!(sd.poll_timeout(), Some(next));
    // One due later moves forward.
    assert!(sd.node_down("A", next - secs(2.0), 0.0));
    assert!(approx(sd.poll_timeout().unwrap(), next - secs(2.0)));
    // At most 1 s after the loss.
    let mut sd = Seeds::new(vec![a], secs(30.0), t0);
    sd.handle_timeout(t0, |_| false, |_| None, 0.0);
    sd.greeted(a, "A");
    let t = sd.poll_timeout().unwrap();
    sd.handle_timeout(t, |_| true, |_| None, 0.0);
    assert!(sd.node_down("A", t, 7.0));
    assert!(approx(sd.poll_timeout().unwrap(), t + secs(1.0)));
}

#[test]
fn seeds_held_seed_skipped_until_its_hold_ends() {
    let t0 = Instant::now();
    let (a, b) = (addr("10.0.0.1:1"), addr("10.0.0.2:1"));
    let mut sd = Seeds::new(vec![a, b], secs(30.0), t0);
    sd.handle_timeout(t0, |_| false, |_| None, 0.0);
    sd.greeted(a, "A");
    sd.greeted(b, "B");
    let t = sd.poll_timeout().unwrap();
    let hold = t + secs(0.3);
    let got = sd.handle_timeout(t, |n| n == "B", |n| (n == "A").then_some(hold), 1.0);
    assert!(got.is_empty());
    assert_eq!(sd.poll_timeout(), Some(hold), "due when the hold ends");
    assert_eq!(
        sd.handle_timeout(hold, |n| n == "B", |_| None, 1.0),
        vec![a]
    );
}

#[test]
fn seeds_that_are_ourselves_are_dropped() {
    let t0 = Instant::now();
    let (a, b) = (addr("10.0.0.1:1"), addr("10.0.0.2:1"));
    let mut sd = Seeds::new(vec![a, b], secs(5.0), t0);
    assert!(sd.is_self(a));
    assert!(!sd.is_self(a));
    assert_eq!(sd.handle_timeout(t0, |_| false, |_| None, 0.5), vec![b]);
    assert!(sd.is_self(b));
    assert_eq!(sd.poll_timeout(), None);
    assert!(sd
        .handle_timeout(t0 + secs(100.0), |_| false, |_| None, 0.5)
        .is_empty());
    let empty = Seeds::new(Vec::new(), secs(5.0), t0);
    assert_eq!(empty.poll_timeout(), None);
}

#[test]
fn hostport_format_and_parse() {
    assert_eq!(format_hostport(&addr("1.2.3.4:5")), "1.2.3.4:5");
    assert_eq!(format_hostport(&addr("[::1]:5")), "[::1]:5");
    let v6: SocketAddr = std::net::SocketAddrV6::new("fe80::1".parse().unwrap(), 7, 0, 3).into();
    assert_eq!(format_hostport(&v6), "[fe80::1]:7");
    assert_eq!(
        parse_addrs(Some(&list!["1.2.3.4:5", "x", Value::Null, "[::1]:5"])),
        vec![addr("1.2.3.4:5"), addr("[::1]:5")]
    );
    assert!(parse_addrs(Some(&Value::from("1.2.3.4:5"))).is_empty());
    assert!(parse_addrs(None).is_empty());
}

#[test]
fn odd_peer_requests_never_panic() {
    // Every global-protocol tag this implementation knows, and two it does not.
    let tags: Vec<&str> = crate::node_req::KNOWN_TAGS
        .iter()
        .copied()
        .filter(|t| t.starts_with("g_"))
        .chain(["g_", ""])
        .collect();
    let odd = [
        Value::Null,
        Value::from(-1),
        Value::from(u64::MAX),
        Value::from(1.5),
        Value::from(""),
        Value::from("zzzzzzzzzzzzzzzzzzzzzzzz"),
        Value::Bytes(vec![0xff, 0xfe]),
        list![],
        list![Value::Null, list![1]],
        map(&[]),
        map(&[("", Value::Null), ("f", map(&[("", list![])]))]),
    ];
    let mut sl = slave_with_master("S", "M");
    sl.watch(&fam("f"), 1);
    let mut g = GlobalService::new("G");
    g.become_global();
    g.watch(&fam("f"), 1);
    for svc in [&mut sl, &mut g] {
        for &tag in &tags {
            for from in ["M", "G", "S", ""] {
                svc.request(from, tag, Vec::new());
                for a in &odd {
                    svc.request(from, tag, vec![a.clone()]);
                    for b in &odd {
                        let fx = svc.request(from, tag, vec![a.clone(), b.clone(), a.clone()]);
                        assert!(!fx.iter().any(
                            |e| matches!(e, Effect::Send { node, .. } if node == svc.node_id())
                        ));
                    }
                }
            }
        }
    }
}

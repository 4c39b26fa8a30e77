//! Several [`GlobalService`]s wired together: every `Send` is delivered to the target's
//! `request`, FIFO, until the network is quiet. Every node is up to every other one.

use super::*;
use crate::db::names::Family;
use crate::db::DbMap;
use crate::list;
use crate::value::{Msg, Str, Value};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

fn s(x: &str) -> Str {
    Str::from(x)
}

fn fam(x: &str) -> Family {
    Family::user(x).unwrap()
}

#[derive(Default)]
struct Net {
    nodes: BTreeMap<Str, GlobalService>,
    gone: BTreeSet<Str>,
    queue: VecDeque<(Str, Str, Msg)>,
    /// Every effect other than `Send`, per node, in order.
    seen: BTreeMap<Str, Vec<Effect>>,
}

impl Net {
    fn add(&mut self, id: &str, port: u16) {
        let mut svc = GlobalService::new(id);
        let fx = svc.set_listen_addrs(&[format!("10.0.0.1:{port}").parse().unwrap()]);
        assert!(fx.is_empty());
        self.nodes.insert(s(id), svc);
    }

    fn apply(&mut self, at: &str, fx: Vec<Effect>) {
        for e in fx {
            match e {
                Effect::Send { node, msg } => {
                    assert_ne!(node, at, "a node never sends itself");
                    assert!(
                        self.nodes.contains_key(&node),
                        "{at} sends to unknown {node}"
                    );
                    if !self.gone.contains(&node) {
                        self.queue.push_back((s(at), node, msg));
                    }
                }
                Effect::Refused { .. } => panic!("refused at {at}: {e:?}"),
                other => self.seen.entry(s(at)).or_default().push(other),
            }
        }
    }

    fn run(&mut self) {
        let mut steps = 0;
        while let Some((from, to, msg)) = self.queue.pop_front() {
            steps += 1;
            assert!(steps < 10_000, "message storm");
            let mut it = msg.into_iter();
            let tag = it.next().and_then(|t| t.as_str().map(Str::from)).unwrap();
            let fx = self
                .nodes
                .get_mut(&to)
                .unwrap()
                .request(&from, &tag, it.collect());
            self.apply(&to, fx);
        }
    }

    /// Runs an event at `id`, then the network until quiet.
    fn at(&mut self, id: &str, f: impl FnOnce(&mut GlobalService) -> Vec<Effect>) {
        let fx = f(self.nodes.get_mut(id).unwrap());
        self.apply(id, fx);
        self.run();
    }

    /// Every pair of nodes comes up (both sides), in name order.
    fn connect_all(&mut self) {
        let ids: Vec<Str> = self.nodes.keys().cloned().collect();
        for (i, a) in ids.iter().enumerate() {
            for b in &ids[i + 1..] {
                let fx = self.nodes.get_mut(a).unwrap().node_up(b);
                self.apply(a, fx);
                let fx = self.nodes.get_mut(b).unwrap().node_up(a);
                self.apply(b, fx);
            }
        }
        self.run();
    }

    /// `id` leaves: messages to it are lost, everyone else sees it go down; then the grace
    /// period of the shard it leaves on global nodes ends.
    fn kill(&mut self, id: &str) {
        self.gone.insert(s(id));
        self.queue.retain(|(f, t, _)| f != id && t != id);
        let others: Vec<Str> = self.nodes.keys().filter(|n| *n != id).cloned().collect();
        for n in &others {
            let fx = self.nodes.get_mut(n).unwrap().node_down(id);
            self.apply(n, fx);
        }
        self.run();
        for n in &others {
            let fx = self.nodes.get_mut(n).unwrap().expire_orphan(id);
            self.apply(n, fx);
        }
        self.run();
    }

    fn node(&self, id: &str) -> &GlobalService {
        &self.nodes[id]
    }

    /// Drains the non-`Send` effects seen at `id`.
    fn take(&mut self, id: &str) -> Vec<Effect> {
        self.seen.remove(id).unwrap_or_default()
    }

    /// The last `Notify` of `family` seen at `id` (drains): subscribers, contents, added,
    /// deleted.
    fn last_notify(&mut self, id: &str, family: &str) -> (Vec<u64>, DbMap, Vec<Str>, Vec<Str>) {
        self.take(id)
            .into_iter()
            .filter_map(|e| match e {
                Effect::Notify {
                    subscribers,
                    change:
                        DbChange {
                            family: f,
                            contents,
                            added,
                            deleted,
                            ..
                        },
                } if f == family => Some((subscribers, contents.to_map(), added, deleted)),
                _ => None,
            })
            .last()
            .unwrap_or_else(|| panic!("no Notify of {family} at {id}"))
    }

    fn reply(&mut self, id: &str, query: u64) -> Value {
        self.take(id)
            .into_iter()
            .find_map(|e| match e {
                Effect::Reply { query: q, value } if q == query => Some(value),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no reply to {query} at {id}"))
    }
}

#[test]
fn three_nodes_slave_write_reaches_other_slave() {
    let mut net = Net::default();
    net.add("G", 1);
    net.add("S1", 2);
    net.add("S2", 3);
    for sl in ["S1", "S2"] {
        net.at(sl, |n| n.seed_greeting("G"));
    }
    net.connect_all();
    assert!(net.node("G").is_global(), "g_slave made the seed global");
    assert_eq!(net.node("S1").master(), Some("G"));
    assert_eq!(net.node("S2").master(), Some("G"));
    assert!(net.take("G").contains(&Effect::BecameGlobal));
    net.take("S1");

    net.at("S2", |n| n.watch(&fam("chat"), 7));
    let (subs, contents, added, _) = net.last_notify("S2", "chat");
    assert_eq!(subs, vec![7]);
    assert!(
        contents.is_empty() && added.is_empty(),
        "first snapshot, empty"
    );

    net.at("S1", |n| {
        n.db_set(&fam("chat"), "room", Value::from("v")).unwrap()
    });
    let (subs, contents, added, _) = net.last_notify("S2", "chat");
    assert_eq!(subs, vec![7]);
    assert_eq!(added, vec![s("room")]);
    assert_eq!(contents.get("room"), Some(&Value::from("v")));

    net.at("S1", |n| n.db_del(&fam("chat"), &[s("room")]));
    let (_, contents, _, deleted) = net.last_notify("S2", "chat");
    assert_eq!(deleted, vec![s("room")]);
    assert!(contents.is_empty());

    // Queries and look-ups go through the master.
    let mut q = 0;
    net.at("S2", |n| {
        let (id, fx) = n.query(QueryKind::Keys, &Family::listeners());
        q = id;
        fx
    });
    assert_eq!(
        net.reply("S2", q),
        list!["G", "S1", "S2"],
        "every node advertised its addresses"
    );
    net.at("S1", |n| n.lookup("S2").1);
    assert_eq!(
        net.take("S1"),
        vec![Effect::Addresses {
            node: s("S2"),
            addrs: vec!["10.0.0.1:3".parse().unwrap()]
        }]
    );
}

#[test]
fn five_nodes_two_globals_and_master_failover() {
    let mut net = Net::default();
    net.add("G1", 1);
    net.add("G2", 2);
    net.add("S1", 3);
    net.add("S2", 4);
    net.add("S3", 5);
    net.at("G1", |n| n.become_global());
    net.at("G2", |n| n.become_global());
    net.at("S1", |n| n.seed_greeting("G1"));
    net.at("S2", |n| n.seed_greeting("G2"));
    net.at("S3", |n| {
        let mut fx = n.seed_greeting("G1");
        fx.extend(n.seed_greeting("G2"));
        fx
    });
    net.connect_all();
    assert_eq!(net.node("S1").master(), Some("G1"));
    assert_eq!(net.node("S2").master(), Some("G2"));
    assert_eq!(net.node("S3").master(), Some("G1"), "first seed up");
    let g1 = net.node("G1").global_db().unwrap();
    assert_eq!(g1.peers().collect::<Vec<_>>(), ["G2"]);
    assert!(net.take("G1").contains(&Effect::Connect { node: s("G2") }));
    assert!(net.take("G2").contains(&Effect::Connect { node: s("G1") }));
    assert!(net
        .seen
        .values()
        .flatten()
        .all(|e| !matches!(e, Effect::Connect { node } if node.starts_with('S'))));

    // A write on a slave of G1 reaches a watcher that is a slave of G2.
    net.at("S2", |n| n.watch(&fam("svc"), 1));
    net.at("S1", |n| {
        n.db_set(&fam("svc"), "k", Value::from(1)).unwrap()
    });
    let (subs, contents, added, _) = net.last_notify("S2", "svc");
    assert_eq!((subs, added), (vec![1], vec![s("k")]));
    assert_eq!(contents.get("k"), Some(&Value::from(1)));
    let mut q = 0;
    net.at("S3", |n| {
        let (id, fx) = n.query(QueryKind::Family, &fam("svc"));
        q = id;
        fx
    });
    let mut want = DbMap::new();
    want.insert(s("k"), Value::from(1));
    assert_eq!(net.reply("S3", q), crate::db::map_value(&want));

    // G1 leaves: S3 moves to G2, S1 has no master left, S1's entry disappears everywhere.
    net.take("S1");
    net.take("S3");
    net.kill("G1");
    assert_eq!(net.node("S3").master(), Some("G2"));
    assert_eq!(net.node("S1").master(), None);
    assert!(net.take("S3").contains(&Effect::Master(Some(s("G2")))));
    assert!(net.take("S1").contains(&Effect::Master(None)));
    let (_, contents, _, deleted) = net.last_notify("S2", "svc");
    assert_eq!(deleted, vec![s("k")]);
    assert!(contents.is_empty());

    // The failed-over slave keeps working through its new master.
    net.at("S3", |n| {
        n.db_set(&fam("svc"), "m", Value::from(2)).unwrap()
    });
    let (_, contents, added, _) = net.last_notify("S2", "svc");
    assert_eq!(added, vec![s("m")]);
    assert_eq!(contents.len(), 1);
    net.at("S3", |n| {
        let (id, fx) = n.query(QueryKind::Keys, &fam("svc"));
        q = id;
        fx
    });
    assert_eq!(net.reply("S3", q), list!["m"]);
}

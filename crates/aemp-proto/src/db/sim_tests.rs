//! Several database state machines wired together by a tiny in-test router, and a replay of
//! the database traffic recorded from a Perl seed (vectors `d_db_node_leaving`).

use super::*;
use crate::msg;
use std::collections::{BTreeSet, VecDeque};

fn s(x: &str) -> Str {
    Str::from(x)
}

fn fam(x: &str) -> Family {
    Family::user(x).unwrap()
}

enum Node {
    Global(Box<GlobalDb>),
    Slave { local: LocalDb, watches: Watches },
}

/// Delivers messages in FIFO order over links that are up.
#[derive(Default)]
struct Net {
    nodes: BTreeMap<Str, Node>,
    links: BTreeSet<(Str, Str)>,
    queue: VecDeque<(Str, Str, Msg)>,
    changes: BTreeMap<Str, Vec<FamilyChange>>,
}

impl Net {
    fn link_up(&self, a: &str, b: &str) -> bool {
        a == b || self.links.contains(&(s(a), s(b))) || self.links.contains(&(s(b), s(a)))
    }

    fn push(&mut self, from: &str, outs: Vec<Out>) {
        for o in outs {
            match o {
                Out::ToNode { node, msg } => {
                    if self.link_up(from, &node) {
                        self.queue.push_back((s(from), node, msg));
                    }
                }
                Out::FamilyChanged(c) => self.changes.entry(s(from)).or_default().push(c),
            }
        }
    }

    fn add_global(&mut self, id: &str) {
        let (g, outs) = GlobalDb::new(LocalDb::new(id, &[s(&format!("{id}:1"))]), Watches::new());
        self.nodes.insert(s(id), Node::Global(Box::new(g)));
        self.push(id, outs);
    }

    fn add_slave(&mut self, id: &str) {
        let local = LocalDb::new(id, &[s(&format!("{id}:1"))]);
        self.nodes.insert(
            s(id),
            Node::Slave {
                local,
                watches: Watches::new(),
            },
        );
    }

    fn global(&mut self, id: &str) -> &mut GlobalDb {
        match self.nodes.get_mut(id) {
            Some(Node::Global(g)) => g,
            _ => panic!("{id} is not a global node"),
        }
    }

    fn watches(&self, id: &str) -> &Watches {
        match self.nodes.get(id) {
            Some(Node::Slave { watches, .. }) => watches,
            _ => panic!("{id} is not a slave"),
        }
    }

    /// Two globals meet: both send g_global on node-up.
    fn connect_globals(&mut self, a: &str, b: &str) {
        self.links.insert((s(a), s(b)));
        let outs = self.global(a).node_up(b);
        self.push(a, outs);
        let outs = self.global(b).node_up(a);
        self.push(b, outs);
        self.run();
    }

    /// A slave picks its master: g_slave with its database, then its subscriptions.
    fn attach(&mut self, slave: &str, master: &str) {
        self.links.insert((s(slave), s(master)));
        let outs = self.global(master).node_up(slave);
        self.push(master, outs);
        let outs = match self.nodes.get_mut(slave) {
            Some(Node::Slave { local, watches }) => {
                let mut outs = vec![Out::ToNode {
                    node: s(master),
                    msg: local.slave_msg(),
                }];
                outs.extend(watches.set_master(Some(master)));
                outs
            }
            _ => panic!("{slave} is not a slave"),
        };
        self.push(slave, outs);
        self.run();
    }

    fn slave_set(&mut self, slave: &str, f: &str, k: &str, v: Value) {
        let outs = match self.nodes.get_mut(slave) {
            Some(Node::Slave { local, watches }) => {
                let m = local.set(&fam(f), k, v).unwrap();
                match (m, watches.master()) {
                    (Some(m), Some(master)) => vec![Out::ToNode {
                        node: s(master),
                        msg: m,
                    }],
                    _ => vec![],
                }
            }
            _ => panic!(),
        };
        self.push(slave, outs);
        self.run();
    }

    fn slave_del(&mut self, slave: &str, f: &str, k: &str) {
        let outs = match self.nodes.get_mut(slave) {
            Some(Node::Slave { local, watches }) => {
                match (local.del(&fam(f), &[k]), watches.master()) {
                    (Some(m), Some(master)) => vec![Out::ToNode {
                        node: s(master),
                        msg: m,
                    }],
                    _ => vec![],
                }
            }
            _ => panic!(),
        };
        self.push(slave, outs);
        self.run();
    }

    fn slave_watch(&mut self, slave: &str, f: &str) {
        let outs = match self.nodes.get_mut(slave) {
            Some(Node::Slave { watches, .. }) => watches.watch(&fam(f)),
            _ => panic!(),
        };
        self.push(slave, outs);
        self.run();
    }

    /// The link between `a` and `b` breaks; both sides (if still present) see node-down.
    fn disconnect(&mut self, a: &str, b: &str) {
        self.links.remove(&(s(a), s(b)));
        self.links.remove(&(s(b), s(a)));
        for (me, other) in [(a, b), (b, a)] {
            let outs = match self.nodes.get_mut(me) {
                Some(Node::Global(g)) => g.node_down(other),
                Some(Node::Slave { watches, .. }) if watches.master() == Some(other) => {
                    watches.set_master(None)
                }
                _ => vec![],
            };
            self.push(me, outs);
        }
        self.run();
    }

    fn run(&mut self) {
        let mut steps = 0;
        while let Some((from, to, msg)) = self.queue.pop_front() {
            steps += 1;
            assert!(steps < 10_000, "message storm");
            if !self.link_up(&from, &to) {
                continue;
            }
            let outs = match self.nodes.get_mut(&to) {
                Some(Node::Global(g)) => {
                    if msg.tag().is_some_and(is_global_tag) {
                        g.handle(&from, &msg).unwrap()
                    } else {
                        vec![]
                    }
                }
                Some(Node::Slave { watches, .. }) => match msg.tag() {
                    Some("g_chg1" | "g_chg2") => watches.handle(&from, &msg).unwrap(),
                    _ => vec![],
                },
                None => vec![],
            };
            self.push(&to, outs);
        }
    }

    fn deleted_seen(&self, node: &str, family: &str, key: &str) -> bool {
        self.changes.get(node).is_some_and(|cs| {
            cs.iter()
                .any(|c| c.family == family && c.deleted.iter().any(|k| k == key))
        })
    }
}

#[test]
fn two_globals_with_slaves_converge_and_forget_departed_nodes() {
    let mut net = Net::default();
    net.add_global("G1");
    net.add_global("G2");
    net.connect_globals("G1", "G2");
    let g1 = net.global("G1").db().clone();
    assert_eq!(&g1, net.global("G2").db());
    assert_eq!(net.global("G1").peers().collect::<Vec<_>>(), vec!["G2"]);
    assert_eq!(net.global("G1").family("'g").map(|m| m.len()), Some(2));

    net.add_slave("S1");
    net.add_slave("S2");
    net.slave_watch("S1", "f");
    net.slave_set("S2", "f", "b", Value::from(2)); // before it has a master
    net.slave_set("S2", "f", "k", Value::from("s2"));
    net.attach("S1", "G1");
    net.attach("S2", "G2");
    net.slave_set("S1", "f", "a", Value::from(1));
    net.slave_set("S1", "f", "k", Value::from("s1"));

    let g1 = net.global("G1").db().clone();
    assert_eq!(&g1, net.global("G2").db(), "globals converge");
    assert_eq!(g1["f"]["k"], Value::from("s1"), "last write wins");
    assert_eq!(g1["f"].len(), 3);
    assert!(g1["'l"].contains_key("S2") && g1["'l"].contains_key("S1"));
    assert_eq!(net.watches("S1").mirror("f").unwrap(), &g1["f"]);

    // S1 deletes k; S2 still owns it, so its value comes back everywhere.
    net.slave_del("S1", "f", "k");
    let g1 = net.global("G1").db().clone();
    assert_eq!(&g1, net.global("G2").db());
    assert_eq!(g1["f"]["k"], Value::from("s2"));
    assert_eq!(net.watches("S1").mirror("f").unwrap(), &g1["f"]);

    // S2 drops off its master: everything it owned disappears on both globals, and the
    // monitor on S1 sees the deletions.
    net.disconnect("S2", "G2");
    let g1 = net.global("G1").db().clone();
    assert_eq!(&g1, net.global("G2").db());
    assert!(!g1["f"].contains_key("b") && !g1["f"].contains_key("k"));
    assert!(!g1["'l"].contains_key("S2"));
    assert!(net.deleted_seen("S1", "f", "b"));
    assert!(net.deleted_seen("S1", "f", "k"));
    assert_eq!(net.watches("S1").mirror("f").unwrap(), &g1["f"]);

    // The other global goes away: G1 forgets G2's data, including its listener mirror.
    net.disconnect("G1", "G2");
    let g1 = net.global("G1").db().clone();
    assert!(!g1["'l"].contains_key("G2"));
    assert!(!g1["'g"].contains_key("G2"));
    assert_eq!(g1["f"].keys().collect::<Vec<_>>(), vec!["a"]);
}

#[test]
fn slave_resyncs_after_master_change() {
    let mut net = Net::default();
    net.add_global("G1");
    net.add_global("G2");
    net.connect_globals("G1", "G2");
    net.add_slave("W");
    net.add_slave("A");
    net.add_slave("B");
    net.slave_watch("W", "f");
    net.attach("W", "G1");
    net.attach("A", "G1");
    net.attach("B", "G2");
    net.slave_set("A", "f", "a", Value::from(1));
    net.slave_set("B", "f", "b", Value::from(2));
    assert_eq!(net.watches("W").mirror("f").map(|m| m.len()), Some(2));

    // W loses its master G1; while W has no master, A leaves the network (its key is
    // deleted everywhere). W then picks G2 and must learn about that deletion.
    net.disconnect("W", "G1");
    net.disconnect("A", "G1");
    net.changes.clear();
    net.attach("W", "G2");
    let changes = &net.changes["W"];
    assert_eq!(
        changes,
        &vec![FamilyChange {
            family: s("f"),
            deleted: vec![s("a")],
            ..Default::default()
        }],
        "the new master's snapshot is reported as a difference"
    );
    let g2 = net.global("G2").family("f").cloned();
    assert_eq!(net.watches("W").mirror("f").map(|m| m.to_map()), g2);
}

// ---------------------------------------------------------------------------------------
// replay of vectors/sessions/d_db_node_leaving

fn json_to_value(j: &serde_json::Value) -> Value {
    match j {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::Int(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::Float(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        serde_json::Value::String(x) => Value::from(x.as_str()),
        serde_json::Value::Array(a) => Value::List(a.iter().map(json_to_value).collect()),
        serde_json::Value::Object(o) => {
            Value::Map(o.iter().map(|(k, v)| (s(k), json_to_value(v))).collect())
        }
    }
}

/// Map keys sorted recursively, so Perl's random hash order does not matter.
fn canon(v: &Value) -> Value {
    match v {
        Value::Map(m) => {
            let mut e: Vec<(Str, Value)> = m.iter().map(|(k, v)| (k.clone(), canon(v))).collect();
            e.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Map(e)
        }
        Value::List(l) => Value::List(l.iter().map(canon).collect()),
        other => other.clone(),
    }
}

enum Event {
    Up(Str),
    Msg(Str, Msg),
    Down(Str),
}

fn vectors_dir() -> std::path::PathBuf {
    std::env::var_os("AEMP_VECTORS")
        .map(Into::into)
        .unwrap_or_else(|| "/work/shared/vectors".into())
}

#[test]
fn replay_d_db_node_leaving() {
    let path = vectors_dir().join("sessions/d_db_node_leaving/session.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (set AEMP_VECTORS)", path.display()));
    let session: serde_json::Value = serde_json::from_str(&text).unwrap();

    // Timeline of what the seed saw, and per peer the messages it sent back.
    let mut events: Vec<(f64, usize, Event)> = Vec::new();
    let mut expected: BTreeMap<Str, VecDeque<Msg>> = BTreeMap::new();
    let mut seq = 0usize;
    let mut ev = |t: f64, e: Event, events: &mut Vec<(f64, usize, Event)>| {
        seq += 1;
        events.push((t, seq, e));
    };
    for conn in session["connections"].as_array().unwrap() {
        let peer = s(conn["connecting_node"].as_str().unwrap());
        assert_eq!(conn["accepting_node"], "seed");
        let t0 = conn["accepted_at_s"].as_f64().unwrap();
        let c2s = &conn["directions"]["c2s"];
        ev(t0, Event::Up(peer.clone()), &mut events);
        let chunks = c2s["chunks"].as_array().unwrap();
        for m in c2s["messages"].as_array().unwrap() {
            let off = m["offset"].as_u64().unwrap();
            let t = chunks
                .iter()
                .find(|c| {
                    let o = c["offset"].as_u64().unwrap();
                    o <= off && off < o + c["length"].as_u64().unwrap()
                })
                .and_then(|c| c["t"].as_f64())
                .unwrap();
            let mut v = match json_to_value(&m["decoded"]) {
                Value::List(v) => v,
                other => panic!("not a list: {other}"),
            };
            assert_eq!(v.first(), Some(&Value::from("")), "node-port request");
            v.remove(0);
            ev(t0 + t, Event::Msg(peer.clone(), Msg::from(v)), &mut events);
        }
        ev(
            t0 + c2s["eof_at_s"].as_f64().unwrap(),
            Event::Down(peer.clone()),
            &mut events,
        );
        let replies = expected.entry(peer).or_default();
        for m in conn["directions"]["s2c"]["messages"].as_array().unwrap() {
            let mut v = match json_to_value(&m["decoded"]) {
                Value::List(v) => v,
                other => panic!("not a list: {other}"),
            };
            v.remove(0);
            replies.push_back(Msg::from(v));
        }
    }
    events.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));

    // The seed: global, its own listener as recorded in its g_found replies.
    let (mut seed, outs) = GlobalDb::new(
        LocalDb::new("seed", &[s("127.0.0.1:46330")]),
        Watches::new(),
    );
    assert!(outs.is_empty());
    let mut handled = 0;
    for (_, _, e) in events {
        let outs = match e {
            Event::Up(n) => seed.node_up(&n),
            Event::Down(n) => seed.node_down(&n),
            Event::Msg(n, m) => {
                handled += 1;
                seed.handle(&n, &m)
                    .unwrap_or_else(|err| panic!("{m}: {err}"))
            }
        };
        // What one input produced for a peer must be the next recorded messages to that
        // peer, in any order (Perl iterates hashes in random order).
        let mut per_peer: BTreeMap<Str, Vec<Value>> = BTreeMap::new();
        for o in outs {
            match o {
                Out::ToNode { node, msg } => per_peer
                    .entry(node)
                    .or_default()
                    .push(canon(&Value::from(msg))),
                Out::FamilyChanged(c) => panic!("seed has no local monitors: {c:?}"),
            }
        }
        for (peer, mut got) in per_peer {
            let queue = expected
                .get_mut(&peer)
                .unwrap_or_else(|| panic!("unexpected peer {peer}"));
            assert!(
                queue.len() >= got.len(),
                "too many messages to {peer}: {got:?}"
            );
            let mut want: Vec<Value> = queue
                .drain(..got.len())
                .map(|m| canon(&Value::from(m)))
                .collect();
            let key = |v: &Value| v.to_string();
            got.sort_by_key(key);
            want.sort_by_key(key);
            assert_eq!(got, want, "messages to {peer}");
        }
    }
    assert_eq!(handled, 16);
    for (peer, rest) in expected {
        assert!(rest.is_empty(), "the seed did not send {peer}: {rest:?}");
    }
    // Everything the departed nodes owned is gone; only the seed's own entries remain.
    assert_eq!(seed.db().keys().collect::<Vec<_>>(), vec!["'g", "'l"]);
    assert_eq!(seed.db()["'l"].keys().collect::<Vec<_>>(), vec!["seed"]);
    // And a query for a family after the fact answers empty.
    let outs = seed.handle("x", &msg!["g_db_keys", "dfam", "b"]).unwrap();
    assert_eq!(
        outs,
        vec![Out::ToNode {
            node: s("x"),
            msg: msg!["g_reply", "b", Value::List(vec![])]
        }]
    );
}

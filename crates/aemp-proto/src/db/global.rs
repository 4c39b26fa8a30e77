//! The database role of a global node.
//!
//! A [`GlobalDb`] holds one shard per node that sent us its data (`LOCAL_DBS`): our slaves,
//! ourselves (a global node is its own slave), and every other global node, whose shard is
//! the merge of *its* slaves. The merged view of all shards (`GLOBAL_DB`) answers queries and
//! feeds family monitors.
//!
//! # Orphaned shards
//!
//! When another global node goes away, its slaves are usually alive: they fail over to
//! another seed and send their database there, which reaches us again (as our own slave's
//! shard, or forwarded by the global they chose). Clearing the departed global's shard at
//! once (as the reference does) would report their live entries as deleted to every
//! monitor, and as added again a moment later, whenever we notice the death before they
//! have failed over. [`GlobalDb::node_down_orphaning`] keeps that shard instead, as an
//! *orphan*: it still counts in the merged view, is never forwarded, and gives way key by
//! key to every later update of the same key from a live shard. The caller ends it with
//! [`GlobalDb::expire_orphan`] after a grace period; what nobody re-sent by then is
//! deleted (the entries of nodes that really went away). [`GlobalDb::node_down`] keeps
//! the reference's behaviour.
//!
//! # Self-addressed messages
//!
//! The reference global node talks to itself through its own node port: its writes are
//! `g_upd`s to its master (itself), its `db_mon`s are `g_mon1`s to itself, and it receives
//! `g_chg1`/`g_chg2` like any slave. Those local sends are queued, not run inline (which is
//! why a peer sees `g_set` *before* the `g_upd` of `'g` in a global-to-global meeting, docs/protocol.md §6). `GlobalDb` keeps that
//! order with an internal FIFO: a database request addressed to ourselves is queued and
//! processed after the current step, before the public method returns. Replies that are not
//! database requests (`g_reply`, `g_found` for our own queries) are returned as
//! [`Out::ToNode`] to our own node ID, for the caller's node-port handler.
//!
//! # Deliberate differences from the reference
//!
//! * `g_slave` with a database *replaces* the sender's shard (keys missing from the new
//!   database are deleted). The reference merges, which is the same whenever the shard was
//!   empty, i.e. in every sequence the reference itself produces.
//! * Monitor registrations are kept apart from the slave table, so a repeated `g_slave`
//!   does not forget them and a `g_mon1` does not turn its sender into a slave.
//! * On node departure the node's monitors are removed *before* its shard is cleared, so no
//!   `g_chg2` is addressed to the departed node.
//! * Deleting a key that exists nowhere produces no `g_chg2` and no forward.
//! * Where the reference picks "some other shard" in hash order, the smallest node ID wins.

use super::local::LocalDb;
use super::names::{Family, NameError, GLOBALS, LISTENERS};
use super::watch::Watches;
use super::{
    arg_str, db_value, is_global_tag, map_value, parse_db, parse_keys, parse_map, values_equal, Db,
    DbError, DbMap, Out,
};
use crate::msg;
use crate::value::{Msg, Str, Value};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Which query a `g_db_*` request is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Query {
    Family,
    Keys,
    Values,
}

/// A parsed database request; parsing happens before any state changes, so a malformed
/// request is refused as a whole.
#[derive(Debug)]
enum Request {
    /// `g_slave` without arguments: "start the global service", a no-op here.
    SlaveHello,
    Slave(Db),
    Set(Db),
    Upd {
        family: Str,
        set: DbMap,
        del: Vec<Str>,
    },
    Find(Str),
    Query {
        kind: Query,
        family: Str,
        id: Value,
    },
    Mon1(Str),
    Mon0(Str),
    Global,
    /// `g_chg1`/`g_chg2`: handled by our own [`Watches`].
    Change,
}

fn parse(msg: &Msg) -> Result<Request, DbError> {
    let tag = msg.tag().unwrap_or("");
    let req = match tag {
        "g_slave" => match msg.get(1) {
            None => Request::SlaveHello,
            Some(v) => Request::Slave(parse_db(tag, Some(v))?),
        },
        "g_set" => Request::Set(parse_db(tag, msg.get(1))?),
        "g_upd" => Request::Upd {
            family: arg_str(tag, msg, 1, "family")?,
            set: parse_map(tag, msg.get(2))?,
            del: parse_keys(tag, msg.get(3))?,
        },
        "g_find" => Request::Find(arg_str(tag, msg, 1, "node ID")?),
        "g_db_family" | "g_db_keys" | "g_db_values" => Request::Query {
            kind: match tag {
                "g_db_family" => Query::Family,
                "g_db_keys" => Query::Keys,
                _ => Query::Values,
            },
            family: arg_str(tag, msg, 1, "family")?,
            id: msg
                .get(2)
                .cloned()
                .ok_or_else(|| DbError::malformed(tag, "missing request id"))?,
        },
        "g_mon1" => Request::Mon1(arg_str(tag, msg, 1, "family")?),
        "g_mon0" => Request::Mon0(arg_str(tag, msg, 1, "family")?),
        "g_global" => Request::Global,
        "g_chg1" | "g_chg2" => Request::Change,
        _ => return Err(DbError::UnknownTag(Str::from(tag))),
    };
    Ok(req)
}

/// The database state of a global node.
///
/// Invariants (checked by the tests after every step):
/// * for every family, the keys of `global` are exactly the union of the keys of all
///   shards and orphans, and every global value equals the value of some shard or orphan
///   holding the key;
/// * no family map (in `global`, a shard or an orphan), no shard and no orphan is empty;
/// * `inbox` is empty whenever no public method is running.
#[derive(Clone, Debug, PartialEq)]
pub struct GlobalDb {
    me: Str,
    /// Our own `LOCAL_DB`; its writes reach our own shard through `g_upd` to ourselves.
    local: LocalDb,
    /// Our own `db_mon` mirrors; their master is always ourselves.
    watches: Watches,
    /// `LOCAL_DBS`: node → its database.
    shards: BTreeMap<Str, Db>,
    /// `GLOBAL_DB`: merge of all shards.
    global: Db,
    /// `GLOBAL_SLAVE`: nodes that made us their master (including ourselves).
    slaves: BTreeSet<Str>,
    /// `GLOBAL_MON`: family → nodes monitoring it.
    monitors: BTreeMap<Str, BTreeSet<Str>>,
    /// `GLOBAL_NODE`: the other global nodes we know.
    peers: BTreeSet<Str>,
    /// Shards of global nodes that went away, kept until [`GlobalDb::expire_orphan`] (see
    /// the module docs).
    orphans: BTreeMap<Str, Db>,
    /// Database requests we sent ourselves, processed in order after the current step.
    inbox: VecDeque<Msg>,
}

impl GlobalDb {
    /// Turns a node into a global node (docs/protocol.md §6, global nodes): it becomes its own master and slave
    /// (a `g_slave` with `local` to itself, then every watched family is subscribed again
    /// at ourselves), and it sets `'g: {me: null}`.
    ///
    /// The caller then sends `["g_global"]` to every connected node ([`GlobalDb::node_up`])
    /// and calls [`GlobalDb::global_connect`] for those already known to be global.
    pub fn new(local: LocalDb, watches: Watches) -> (GlobalDb, Vec<Out>) {
        let me = Str::from(local.node_id());
        let mut g = GlobalDb {
            me: me.clone(),
            local,
            watches,
            shards: BTreeMap::new(),
            global: Db::new(),
            slaves: BTreeSet::new(),
            monitors: BTreeMap::new(),
            peers: BTreeSet::new(),
            orphans: BTreeMap::new(),
            inbox: VecDeque::new(),
        };
        let mut out = Vec::new();
        let slave = g.local.slave_msg();
        g.emit(&me, slave, &mut out);
        let resubscribe = g.watches.set_master(Some(&me));
        g.route(resubscribe, &mut out);
        if let Ok(Some(m)) = g.local.set(&Family::globals(), &me, Value::Null) {
            g.emit(&me, m, &mut out);
        }
        g.drain(&mut out);
        (g, out)
    }

    /// Our node ID.
    pub fn node_id(&self) -> &str {
        &self.me
    }

    /// Handles a database request (tag first, no leading `""`) that arrived from `from`.
    ///
    /// Every tag of [`super::GLOBAL_TAGS`] is handled; `g_chg1`/`g_chg2` are only taken from
    /// ourselves (we are our own master). A malformed request is refused with an error and
    /// changes nothing.
    pub fn handle(&mut self, from: &str, msg: &Msg) -> Result<Vec<Out>, DbError> {
        let mut out = Vec::new();
        self.dispatch(from, msg, &mut out)?;
        self.drain(&mut out);
        Ok(out)
    }

    /// A node came up: a global node tells it that it is global (`["g_global"]`).
    pub fn node_up(&self, node: &str) -> Vec<Out> {
        if node == self.me {
            return Vec::new();
        }
        vec![Out::ToNode {
            node: Str::from(node),
            msg: msg!["g_global"],
        }]
    }

    /// A node went down (`g_disconnect`): its shard is cleared (deletes are forwarded to the
    /// other globals when it was our slave, and monitors hear `g_chg2`), its monitors are
    /// dropped, and our own `'g`/`'l` mirror entries for it are deleted.
    pub fn node_down(&mut self, node: &str) -> Vec<Out> {
        let mut out = Vec::new();
        if node != self.me {
            self.disconnect(node, false, &mut out);
        }
        self.drain(&mut out);
        out
    }

    /// As [`GlobalDb::node_down`], except that the shard of a global peer is kept as an
    /// orphan (see the module docs); returns whether it was. The caller ends it with
    /// [`GlobalDb::expire_orphan`] after a grace period. An orphan that `node` left earlier
    /// takes the new shard's entries.
    pub fn node_down_orphaning(&mut self, node: &str) -> (Vec<Out>, bool) {
        let mut out = Vec::new();
        let mut orphaned = false;
        if node != self.me {
            orphaned = self.peers.contains(node) && self.shards.contains_key(node);
            self.disconnect(node, orphaned, &mut out);
        }
        self.drain(&mut out);
        (out, orphaned)
    }

    /// Ends the orphan `node` left (nothing if there is none): its entries that no live
    /// shard holds are deleted (monitors hear `g_chg2`; nothing is forwarded, every global
    /// node clears its own copy), those another shard holds with another value take that
    /// value.
    pub fn expire_orphan(&mut self, node: &str) -> Vec<Out> {
        let mut out = Vec::new();
        let Some(db) = self.orphans.remove(node) else {
            return out;
        };
        for (family, m) in db {
            let mut set = DbMap::new();
            let mut del = Vec::new();
            for k in m.into_keys() {
                let owner = self.owner_value(&family, &k).map(|(v, _)| v.clone());
                let Some(gdb) = self.global.get_mut(&family) else {
                    continue;
                };
                match owner {
                    Some(v) => {
                        if !gdb.get(&k).is_some_and(|g| values_equal(g, &v)) {
                            gdb.insert(k.clone(), v.clone());
                            set.insert(k, v);
                        }
                    }
                    None => {
                        if gdb.remove(&k).is_some() {
                            del.push(k);
                        }
                    }
                }
            }
            if self.global.get(&family).is_some_and(|m| m.is_empty()) {
                self.global.remove(&family);
            }
            self.tell_monitors(&family, set, del, &mut out);
        }
        self.drain(&mut out);
        out
    }

    /// The global nodes whose orphaned shard is still kept.
    pub fn orphans(&self) -> impl Iterator<Item = &str> {
        self.orphans.keys().map(|n| n.as_str())
    }

    /// The orphaned shard `node` left, if it is still kept.
    pub fn orphan(&self, node: &str) -> Option<&Db> {
        self.orphans.get(node)
    }

    /// `g_global_connect(P)`: `P` is a global peer. Records it, sets `'g: {P: null}` in our
    /// own database and sends `P` `["g_set", <merged databases of all our slaves>]`.
    pub fn global_connect(&mut self, peer: &str) -> Vec<Out> {
        let mut out = Vec::new();
        if peer != self.me {
            self.connect_peer(peer, &mut out);
        }
        self.drain(&mut out);
        out
    }

    /// `db_set` on this node.
    pub fn db_set(
        &mut self,
        family: &Family,
        key: &str,
        value: Value,
    ) -> Result<Vec<Out>, NameError> {
        let mut out = Vec::new();
        if let Some(m) = self.local.set(family, key, value)? {
            let me = self.me.clone();
            self.emit(&me, m, &mut out);
        }
        self.drain(&mut out);
        Ok(out)
    }

    /// `db_del` on this node.
    pub fn db_del<K: AsRef<str>>(&mut self, family: &Family, keys: &[K]) -> Vec<Out> {
        let mut out = Vec::new();
        if let Some(m) = self.local.del(family, keys) {
            let me = self.me.clone();
            self.emit(&me, m, &mut out);
        }
        self.drain(&mut out);
        out
    }

    /// Starts a local `db_mon` of `family`; the first call yields the initial
    /// [`Out::FamilyChanged`] (all current keys added).
    pub fn watch(&mut self, family: &Family) -> Vec<Out> {
        let mut out = Vec::new();
        let outs = self.watches.watch(family);
        self.route(outs, &mut out);
        self.drain(&mut out);
        out
    }

    /// Ends the local `db_mon` of `family`.
    pub fn unwatch(&mut self, family: &str) -> Vec<Out> {
        let mut out = Vec::new();
        let outs = self.watches.unwatch(family);
        self.route(outs, &mut out);
        self.drain(&mut out);
        out
    }

    /// The merged contents of `family` (`GLOBAL_DB`), if it has any key.
    pub fn family(&self, family: &str) -> Option<&DbMap> {
        self.global.get(family)
    }

    /// The listen addresses of `node` from the merged `'l` family.
    pub fn lookup(&self, node: &str) -> Option<&Value> {
        self.global.get(LISTENERS)?.get(node)
    }

    /// The merged database.
    pub fn db(&self) -> &Db {
        &self.global
    }

    /// The shard of `node`, if it has one.
    pub fn shard(&self, node: &str) -> Option<&Db> {
        self.shards.get(node)
    }

    /// The value of `family`/`key` that this node forwards to other global nodes (`g_set`,
    /// `g_upd`): from the shard of one of its own slaves, itself included (the last in ID
    /// order, as `g_set` merges them), with that slave.
    pub fn slave_value(&self, family: &str, key: &str) -> Option<(&Value, &str)> {
        self.shards
            .iter()
            .rev()
            .filter(|(n, _)| self.slaves.contains(*n))
            .find_map(|(n, s)| Some((s.get(family)?.get(key)?, n.as_str())))
    }

    /// Every entry (family, key) of a user family that this node forwards to other global
    /// nodes (see [`GlobalDb::slave_value`]), in order.
    pub fn slave_entries(&self) -> BTreeSet<(Str, Str)> {
        self.shards
            .iter()
            .filter(|(n, _)| self.slaves.contains(*n))
            .flat_map(|(_, s)| s.iter())
            .filter(|(f, _)| !f.starts_with('\''))
            .flat_map(|(f, m)| m.keys().map(move |k| (f.clone(), k.clone())))
            .collect()
    }

    /// True when `node` made us its master (we are our own slave).
    pub fn is_slave(&self, node: &str) -> bool {
        self.slaves.contains(node)
    }

    /// The other global nodes we know.
    pub fn peers(&self) -> impl Iterator<Item = &str> {
        self.peers.iter().map(|p| p.as_str())
    }

    /// The nodes monitoring `family`.
    pub fn monitors(&self, family: &str) -> impl Iterator<Item = &str> {
        self.monitors
            .get(family)
            .into_iter()
            .flat_map(|s| s.iter().map(|n| n.as_str()))
    }

    /// Our own local database.
    pub fn local(&self) -> &LocalDb {
        &self.local
    }

    /// Our own `db_mon` mirrors.
    pub fn watches(&self) -> &Watches {
        &self.watches
    }

    // ---------------------------------------------------------------------------------
    // internals

    /// Sends `msg` to `to`; database requests to ourselves are queued for [`Self::drain`].
    fn emit(&mut self, to: &str, msg: Msg, out: &mut Vec<Out>) {
        if to == self.me && msg.tag().is_some_and(is_global_tag) {
            self.inbox.push_back(msg);
        } else {
            out.push(Out::ToNode {
                node: Str::from(to),
                msg,
            });
        }
    }

    fn route(&mut self, outs: Vec<Out>, out: &mut Vec<Out>) {
        for o in outs {
            match o {
                Out::ToNode { node, msg } => self.emit(&node, msg, out),
                other => out.push(other),
            }
        }
    }

    /// Processes the self-addressed requests. Terminates: each request handled here only
    /// queues follow-ups of strictly later kinds (g_slave/g_upd → g_chg2, g_mon1 → g_chg1,
    /// and changes produce nothing further).
    fn drain(&mut self, out: &mut Vec<Out>) {
        let me = self.me.clone();
        while let Some(msg) = self.inbox.pop_front() {
            // Our own requests are well-formed by construction; an error cannot happen and
            // would, like any refused request, have changed nothing.
            let _ = self.dispatch(&me, &msg, out);
        }
    }

    fn dispatch(&mut self, from: &str, msg: &Msg, out: &mut Vec<Out>) -> Result<(), DbError> {
        match parse(msg)? {
            Request::SlaveHello => {}
            Request::Slave(db) => self.slave(from, db, out),
            Request::Set(db) => self.merge_global(from, db, out),
            Request::Upd { family, set, del } => self.upd(from, &family, set, del, out),
            Request::Find(node) => {
                let addrs = self.lookup(&node).cloned().unwrap_or(Value::Null);
                self.emit(from, msg!["g_found", node, addrs], out);
            }
            Request::Query { kind, family, id } => {
                let fam = self.global.get(&family);
                let result = match kind {
                    Query::Family => fam.map_or(Value::Map(Vec::new()), map_value),
                    Query::Keys => Value::List(
                        fam.into_iter()
                            .flat_map(|m| m.keys().cloned().map(Value::Str))
                            .collect(),
                    ),
                    Query::Values => {
                        Value::List(fam.into_iter().flat_map(|m| m.values().cloned()).collect())
                    }
                };
                self.emit(from, msg!["g_reply", id, result], out);
            }
            Request::Mon1(family) => {
                self.monitors
                    .entry(family.clone())
                    .or_default()
                    .insert(Str::from(from));
                let snapshot = self.global.get(&family).map_or(Value::Null, map_value);
                self.emit(from, msg!["g_chg1", family, snapshot], out);
            }
            Request::Mon0(family) => {
                if let Some(set) = self.monitors.get_mut(&family) {
                    set.remove(from);
                    if set.is_empty() {
                        self.monitors.remove(&family);
                    }
                }
            }
            Request::Global => {
                if from != self.me {
                    // Usually a no-op; not when a former slave became global.
                    self.disconnect(from, false, out);
                    self.connect_peer(from, out);
                }
            }
            Request::Change => {
                let outs = self.watches.handle(from, msg)?;
                out.extend(outs);
            }
        }
        Ok(())
    }

    /// `g_slave db`: `node` makes us its master; its shard becomes `db`.
    fn slave(&mut self, node: &str, db: Db, out: &mut Vec<Out>) {
        self.slaves.insert(Str::from(node));
        let old = self.shards.get(node).cloned().unwrap_or_default();
        // Families of the old shard that the new database lacks lose all their keys.
        for (family, m) in &old {
            if !db.contains_key(family) {
                let keys = m.keys().cloned().collect();
                self.upd(node, family, DbMap::new(), keys, out);
            }
        }
        for (family, set) in db {
            let del = old
                .get(&family)
                .map(|m| {
                    m.keys()
                        .filter(|k| !set.contains_key(*k))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            self.upd(node, &family, set, del, out);
        }
    }

    /// `g_set db` from another global node: merge its shard family by family, then mirror its
    /// `'l` entry in our own database so that global nodes always find each other.
    fn merge_global(&mut self, node: &str, db: Db, out: &mut Vec<Out>) {
        let binds = db
            .get(LISTENERS)
            .and_then(|m| m.get(node))
            .cloned()
            .unwrap_or(Value::Null);
        for (family, set) in db {
            self.upd(node, &family, set, Vec::new(), out);
        }
        if let Ok(Some(m)) = self.local.set(&Family::listeners(), node, binds) {
            let me = self.me.clone();
            self.emit(&me, m, out);
        }
    }

    /// `g_global_connect(peer)`.
    fn connect_peer(&mut self, peer: &str, out: &mut Vec<Out>) {
        self.peers.insert(Str::from(peer));
        if let Ok(Some(m)) = self.local.set(&Family::globals(), peer, Value::Null) {
            let me = self.me.clone();
            self.emit(&me, m, out);
        }
        let mut merged = Db::new();
        for (node, shard) in &self.shards {
            if !self.slaves.contains(node) {
                continue;
            }
            for (family, m) in shard {
                let dst = merged.entry(family.clone()).or_default();
                for (k, v) in m {
                    dst.insert(k.clone(), v.clone());
                }
            }
        }
        out.push(Out::ToNode {
            node: Str::from(peer),
            msg: msg!["g_set", db_value(&merged)],
        });
    }

    /// `g_disconnect(node)`; with `orphan`, the node's shard is kept as an orphan instead of
    /// being cleared.
    fn disconnect(&mut self, node: &str, orphan: bool, out: &mut Vec<Out>) {
        self.peers.remove(node);
        let me = self.me.clone();
        for family in [GLOBALS, LISTENERS] {
            if let Ok(fam) = Family::internal(family) {
                if let Some(m) = self.local.del(&fam, &[node]) {
                    self.emit(&me, m, out);
                }
            }
        }
        // Monitors first, so that no g_chg2 of the clearing below goes to the departed node.
        self.monitors.retain(|_, nodes| {
            nodes.remove(node);
            !nodes.is_empty()
        });
        if orphan {
            if let Some(shard) = self.shards.remove(node) {
                let kept = self.orphans.entry(Str::from(node)).or_default();
                for (family, m) in shard {
                    kept.entry(family).or_default().extend(m);
                }
            }
        }
        // Clear the shard while `node` still counts as our slave: its deletes must reach
        // the other global nodes.
        if let Some(shard) = self.shards.get(node).cloned() {
            for (family, m) in shard {
                let keys = m.keys().cloned().collect();
                self.upd(node, &family, DbMap::new(), keys, out);
            }
        }
        self.shards.remove(node);
        self.slaves.remove(node);
    }

    /// The `g_upd` rule (docs/protocol.md §7) for one family of `node`'s shard.
    fn upd(&mut self, node: &str, family: &Str, mut set: DbMap, del: Vec<Str>, out: &mut Vec<Out>) {
        if !self.orphans.is_empty() {
            // A live shard speaks for these keys from now on.
            self.orphans.retain(|_, db| {
                if let Some(m) = db.get_mut(family) {
                    for k in set.keys().chain(&del) {
                        m.remove(k);
                    }
                    if m.is_empty() {
                        db.remove(family);
                    }
                }
                !db.is_empty()
            });
        }
        let node_is_slave = self.slaves.contains(node);
        let shard = self.shards.entry(Str::from(node)).or_default();
        let ldb = shard.entry(family.clone()).or_default();
        let gdb = self.global.entry(family.clone()).or_default();

        for (k, v) in &set {
            ldb.insert(k.clone(), v.clone());
            gdb.insert(k.clone(), v.clone());
        }

        // Values restored from another global's shard: reported to monitors, not forwarded.
        let mut local_set = DbMap::new();
        let mut del_local: Vec<Str> = Vec::new();
        let mut del_global: Vec<Str> = Vec::new();

        for k in del {
            if let Some(l) = self.shards.get_mut(node).and_then(|s| s.get_mut(family)) {
                l.remove(&k);
            }
            let owner = self.owner_value(family, &k).map(|(v, s)| (v.clone(), s));
            let gdb = self.global.entry(family.clone()).or_default();
            match owner {
                Some((v, own_slave)) => {
                    if !own_slave {
                        del_global.push(k.clone());
                    }
                    let same = gdb.get(&k).is_some_and(|g| values_equal(g, &v));
                    if !same {
                        gdb.insert(k.clone(), v.clone());
                        if own_slave {
                            set.insert(k, v);
                        } else {
                            local_set.insert(k, v);
                        }
                    }
                }
                None => {
                    if gdb.remove(&k).is_some() {
                        if node_is_slave {
                            del_global.push(k.clone());
                        }
                        del_local.push(k);
                    }
                }
            }
        }

        // Empty families (and shards) disappear.
        if self.global.get(family).is_some_and(|m| m.is_empty()) {
            self.global.remove(family);
        }
        if let Some(s) = self.shards.get_mut(node) {
            if s.get(family).is_some_and(|m| m.is_empty()) {
                s.remove(family);
            }
            if s.is_empty() {
                self.shards.remove(node);
            }
        }

        // Only updates from our own slaves go to the other globals (never re-forwarded).
        if node_is_slave && (!set.is_empty() || !del_global.is_empty()) {
            let keys: Vec<Value> = del_global.iter().cloned().map(Value::Str).collect();
            for peer in &self.peers {
                out.push(Out::ToNode {
                    node: peer.clone(),
                    msg: msg![
                        "g_upd",
                        family.clone(),
                        map_value(&set),
                        Value::List(keys.clone())
                    ],
                });
            }
        }

        set.extend(local_set);
        self.tell_monitors(family, set, del_local, out);
    }
}

impl GlobalDb {
    /// The value `family`/`k` takes from the shards that hold it (smallest node ID first; a
    /// shard of one of our own slaves wins over one of another global), else from an
    /// orphan; with whether it comes from one of our own slaves.
    fn owner_value(&self, family: &str, k: &str) -> Option<(&Value, bool)> {
        let mut owner: Option<(&Value, bool)> = None;
        for (n, s) in &self.shards {
            if let Some(v) = s.get(family).and_then(|m| m.get(k)) {
                let is_slave = self.slaves.contains(n);
                match owner {
                    None => owner = Some((v, is_slave)),
                    Some((_, false)) if is_slave => owner = Some((v, true)),
                    _ => {}
                }
            }
        }
        owner.or_else(|| {
            self.orphans
                .values()
                .find_map(|db| db.get(family).and_then(|m| m.get(k)))
                .map(|v| (v, false))
        })
    }

    /// `g_chg2` of what changed in `family` to every node monitoring it (nothing when
    /// nothing changed).
    fn tell_monitors(&mut self, family: &Str, set: DbMap, del: Vec<Str>, out: &mut Vec<Out>) {
        if set.is_empty() && del.is_empty() {
            return;
        }
        let change = map_value(&set);
        let dels = Value::List(del.into_iter().map(Value::Str).collect());
        let targets: Vec<Str> = self
            .monitors
            .get(family)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        for t in targets {
            self.emit(
                &t,
                msg!["g_chg2", family.clone(), change.clone(), dels.clone()],
                out,
            );
        }
    }
}

#[cfg(test)]
mod tests;

//! [`GlobalService`]: the per-node global service (roles, master, mesh, database API).

use super::mesh::MeshProbe;
use super::parse_addrs;
use super::probe::Probe;
use crate::addr::format_hostport;
use crate::db::names::{Family, NameError, GLOBALS};
use crate::db::{FamilyChange, FamilySnapshot, GlobalDb, LocalDb, Out, Watches};
use crate::msg;
use crate::value::{Msg, Str, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

/// What the runtime has to do after an event, in the order given.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Send node-port request `msg` (tag first, no leading `""`) to `node`; the runtime
    /// connects if needed. Never addressed to this node itself.
    Send {
        /// Destination node ID.
        node: Str,
        /// The request, e.g. `["g_upd", family, {key: value}]`.
        msg: Msg,
    },
    /// Keep a connection to this node (a global node meshes with every global in `'g`).
    /// Asking again while connected or connecting is harmless.
    Connect {
        /// The node to stay connected to.
        node: Str,
    },
    /// Listen addresses learned for `node` (from `g_found`): the runtime remembers them and
    /// dials them if it is trying to reach the node. Never empty.
    Addresses {
        /// The node the addresses belong to.
        node: Str,
        /// Its listen addresses, in the order given by the global node.
        addrs: Vec<SocketAddr>,
    },
    /// A database query (see [`GlobalService::query`]) was answered.
    Reply {
        /// The id [`GlobalService::query`] returned.
        query: u64,
        /// The raw answer (`null` when the reply had none).
        value: Value,
    },
    /// A watched family changed: notify these local subscribers. The list is empty for a
    /// family only the service itself watches (`'g` on a global node).
    Notify {
        /// The subscriber ids given to [`GlobalService::watch`].
        subscribers: Vec<u64>,
        /// What changed.
        change: DbChange,
    },
    /// The master of this slave changed (`None`: lost, no other seed node is up). For logs
    /// and events; the requests it needs are among the effects that follow.
    Master(Option<Str>),
    /// This node became a global node (it is now its own master).
    BecameGlobal,
    /// An entry of this node's database was dropped: its master (see [`super::probe`]),
    /// or a global peer of this global node (see [`super::mesh`]), refused it. It is gone
    /// from the local database; the runtime logs an error.
    EntryDropped {
        /// The family.
        family: Str,
        /// The key.
        key: Str,
        /// The node that refused it.
        peer: Str,
    },
    /// An entry that a slave of this global node set is withheld from global peer `peer`,
    /// which refused it (see [`super::mesh`]); the runtime logs an error.
    EntryWithheld {
        /// The family.
        family: Str,
        /// The key.
        key: Str,
        /// The slave that set it.
        owner: Str,
        /// The global node that refused it.
        peer: Str,
    },
    /// The database shard of global node `node`, which went down, is kept for now so that
    /// its slaves can fail over without their entries being reported deleted (see
    /// [`crate::db::global`], "Orphaned shards"): call [`GlobalService::expire_orphan`]
    /// with it after a grace period.
    Orphaned {
        /// The global node that went down.
        node: Str,
    },
    /// A request from `from` was refused (malformed database request, a database request to
    /// a node that is not global, …); nothing changed. The runtime logs it.
    Refused {
        /// The sender of the request.
        from: Str,
        /// Why it was refused.
        error: String,
    },
}

/// One `db_mon` notification: a family's contents after a change and what changed. The
/// first notification of a watch lists every current key as added (it comes even when the
/// family is empty).
#[derive(Clone, Debug, PartialEq)]
pub struct DbChange {
    /// The family.
    pub family: Str,
    /// The family's contents after the change: a snapshot that shares its unchanged parts
    /// with the node's mirror and with the other changes' snapshots, so every change has its
    /// own view at O(log family) cost, however many are queued.
    pub contents: FamilySnapshot,
    /// Keys that appeared.
    pub added: Vec<Str>,
    /// Keys whose value was set again.
    pub changed: Vec<Str>,
    /// Keys that disappeared.
    pub deleted: Vec<Str>,
}

/// Which database query [`GlobalService::query`] sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QueryKind {
    /// The whole family as a map (`g_db_family`).
    Family,
    /// The family's keys as a list (`g_db_keys`).
    Keys,
    /// The family's values as a list (`g_db_values`).
    Values,
}

impl QueryKind {
    /// The request tag on the wire.
    pub fn tag(self) -> &'static str {
        match self {
            QueryKind::Family => "g_db_family",
            QueryKind::Keys => "g_db_keys",
            QueryKind::Values => "g_db_values",
        }
    }
}

/// Which database role the node plays.
#[derive(Clone, Debug)]
enum Role {
    Slave {
        local: LocalDb,
        watches: Watches,
        master: Option<Str>,
    },
    Global(Box<GlobalDb>),
}

/// Local `db_mon` subscribers of one family.
#[derive(Clone, Debug, Default)]
struct Subscribers {
    /// The family has had its first snapshot: a later subscriber gets the current contents
    /// at once.
    synced: bool,
    ids: Vec<u64>,
}

/// The global service of one node: its database role, its master, the nodes it sees up,
/// and the requests that wait for an answer.
///
/// Invariants:
/// * no [`Effect::Send`] is addressed to this node: what the node sends itself is handled
///   before the method returns;
/// * a query stays pending (and is re-sent to every new master) until its `g_reply`; a
///   node stays in the `g_find` set until its `g_found`;
/// * a family is watched at the database layer exactly while it has an entry in `subs`.
#[derive(Clone, Debug)]
pub struct GlobalService {
    me: Str,
    role: Role,
    /// Nodes up, with the sequence number of their arrival.
    up: BTreeMap<Str, u64>,
    /// The same nodes in order of arrival ("first connected seed").
    up_order: BTreeMap<u64, Str>,
    up_seq: u64,
    /// Nodes that told us they are global (`g_global`), while up.
    global_nodes: BTreeSet<Str>,
    /// Node IDs learned for our seeds (docs/protocol.md §6, seeds).
    seed_nodes: BTreeSet<Str>,
    /// Queries waiting for `g_reply`, by id, with the request to re-send.
    queries: BTreeMap<u64, Msg>,
    last_query: u64,
    /// Node IDs we sent `g_find` for and wait on.
    finds: BTreeSet<Str>,
    /// Local `db_mon` subscribers per family (internal watches have none).
    subs: BTreeMap<Str, Subscribers>,
    /// Finding an entry the master refuses (slaves only).
    probe: Probe,
    /// Finding entries each global peer refuses (global nodes only).
    mesh: BTreeMap<Str, MeshProbe>,
}

impl GlobalService {
    /// A node in the slave role without master. Its `'l` entry lists no address until
    /// [`GlobalService::set_listen_addrs`].
    pub fn new(me: &str) -> GlobalService {
        GlobalService {
            me: Str::from(me),
            role: Role::Slave {
                local: LocalDb::new(me, &[]),
                watches: Watches::new(),
                master: None,
            },
            up: BTreeMap::new(),
            up_order: BTreeMap::new(),
            up_seq: 0,
            global_nodes: BTreeSet::new(),
            seed_nodes: BTreeSet::new(),
            queries: BTreeMap::new(),
            last_query: 0,
            finds: BTreeSet::new(),
            subs: BTreeMap::new(),
            probe: Probe::default(),
            mesh: BTreeMap::new(),
        }
    }

    /// This node's ID.
    pub fn node_id(&self) -> &str {
        &self.me
    }

    /// True once the node is global.
    pub fn is_global(&self) -> bool {
        matches!(self.role, Role::Global(_))
    }

    /// The current master: this node itself when global, the chosen seed node on a slave.
    pub fn master(&self) -> Option<&str> {
        match &self.role {
            Role::Slave { master, .. } => master.as_deref(),
            Role::Global(g) => Some(g.node_id()),
        }
    }

    /// The nodes that are up, in the order they came up.
    pub fn up_nodes(&self) -> impl Iterator<Item = &str> {
        self.up_order.values().map(|n| n.as_str())
    }

    /// True while `node` is up (between [`GlobalService::node_up`] and
    /// [`GlobalService::node_down`]).
    pub fn is_up(&self, node: &str) -> bool {
        self.up.contains_key(node)
    }

    /// True when `node` was learned to be one of our seeds.
    pub fn is_seed_node(&self, node: &str) -> bool {
        self.seed_nodes.contains(node)
    }

    /// The nodes known to be global (they sent `g_global` and are still up).
    pub fn global_nodes(&self) -> impl Iterator<Item = &str> {
        self.global_nodes.iter().map(|n| n.as_str())
    }

    /// The ids of the queries still waiting for an answer.
    pub fn pending_queries(&self) -> impl Iterator<Item = u64> + '_ {
        self.queries.keys().copied()
    }

    /// The node IDs with a `g_find` waiting for its `g_found`.
    pub fn pending_finds(&self) -> impl Iterator<Item = &str> {
        self.finds.iter().map(|n| n.as_str())
    }

    /// True while `family` is watched (by a local subscriber or by the service itself).
    pub fn is_watched(&self, family: &str) -> bool {
        self.subs.contains_key(family)
    }

    /// What this node set itself.
    pub fn local_db(&self) -> &LocalDb {
        match &self.role {
            Role::Slave { local, .. } => local,
            Role::Global(g) => g.local(),
        }
    }

    /// The replicated database, on a global node.
    pub fn global_db(&self) -> Option<&GlobalDb> {
        match &self.role {
            Role::Slave { .. } => None,
            Role::Global(g) => Some(g),
        }
    }

    /// A shared snapshot of the mirror of a watched family (empty if not watched).
    pub fn family_mirror(&self, family: &str) -> FamilySnapshot {
        let m = match &self.role {
            Role::Slave { watches, .. } => watches.snapshot(family),
            Role::Global(g) => g.watches().snapshot(family),
        };
        m.unwrap_or_default()
    }

    // ---------------------------------------------------------------------------------
    // events

    /// Turns this node into a global node (docs/protocol.md §6, global nodes): it becomes its own master and slave,
    /// lists itself in `'g`, sends `g_global` to every node up, connects the mesh with the
    /// nodes up that are known to be global, watches `'g` (every global in it gets
    /// [`Effect::Connect`]) and answers its own pending queries and look-ups. Nothing when
    /// it is global already.
    pub fn become_global(&mut self) -> Vec<Effect> {
        let mut fx = Vec::new();
        let placeholder = Role::Slave {
            local: LocalDb::new(&self.me, &[]),
            watches: Watches::new(),
            master: None,
        };
        let (local, watches) = match std::mem::replace(&mut self.role, placeholder) {
            Role::Slave { local, watches, .. } => (local, watches),
            global => {
                self.role = global;
                return fx;
            }
        };
        fx.push(Effect::BecameGlobal);
        self.probe = Probe::default();
        let (g, mut outs) = GlobalDb::new(local, watches);
        for n in self.up_order.values() {
            outs.extend(g.node_up(n));
        }
        self.role = Role::Global(Box::new(g));
        self.route(outs, &mut fx);
        let known: Vec<Str> = self
            .up_order
            .values()
            .filter(|n| self.global_nodes.contains(*n))
            .cloned()
            .collect();
        for peer in known {
            if let Role::Global(g) = &mut self.role {
                let outs = g.global_connect(&peer);
                self.route(outs, &mut fx);
            }
        }
        self.watch_internal(Family::globals(), &mut fx);
        self.resend_pending(&mut fx);
        fx
    }

    /// A connection to `node` is up. A global node sends it `g_global`; a seed node gets
    /// `g_slave`, and becomes the master of a slave that has none. Our own ID is ignored.
    pub fn node_up(&mut self, node: &str) -> Vec<Effect> {
        let mut fx = Vec::new();
        if node == self.me {
            return fx;
        }
        if !self.up.contains_key(node) {
            self.up_seq += 1;
            self.up.insert(Str::from(node), self.up_seq);
            self.up_order.insert(self.up_seq, Str::from(node));
        }
        if let Role::Global(g) = &self.role {
            let outs = g.node_up(node);
            self.route(outs, &mut fx);
        }
        if self.seed_nodes.contains(node) {
            self.send(node, msg!["g_slave"], &mut fx);
            if !self.is_global() && self.master().is_none() {
                self.master_set(Some(Str::from(node)), &mut fx);
            }
        }
        fx
    }

    /// The connection to `node` is gone. A global node forgets the node's monitors and
    /// shard (the shard of another global node is kept until [`GlobalService::expire_orphan`],
    /// see [`Effect::Orphaned`]); a slave that lost its master takes the seed node that has been up longest
    /// (or none).
    pub fn node_down(&mut self, node: &str) -> Vec<Effect> {
        let mut fx = Vec::new();
        if node == self.me {
            return fx;
        }
        if let Some(seq) = self.up.remove(node) {
            self.up_order.remove(&seq);
        }
        self.global_nodes.remove(node);
        match &mut self.role {
            Role::Global(g) => {
                let (outs, orphaned) = g.node_down_orphaning(node);
                self.route(outs, &mut fx);
                if orphaned {
                    fx.push(Effect::Orphaned {
                        node: Str::from(node),
                    });
                }
            }
            Role::Slave { master, .. } => {
                if master.as_deref() == Some(node) {
                    let next = self
                        .up_order
                        .values()
                        .find(|c| self.seed_nodes.contains(*c))
                        .cloned();
                    self.master_set(next, &mut fx);
                }
            }
        }
        fx
    }

    /// The connection to `node` ended (call before [`GlobalService::node_down`]). `early`:
    /// it ended soon after it came up (the peer table's back-off counted a strike); `by_us`:
    /// this node closed it because it refused a frame `node` sent. On a slave whose master
    /// `node` is, this drives the search for an entry the master refuses ([`super::probe`]),
    /// which may end with [`Effect::EntryDropped`].
    pub fn connection_ended(&mut self, node: &str, early: bool, by_us: bool) -> Vec<Effect> {
        let mut fx = Vec::new();
        if self.is_global() {
            self.mesh_lost(node, early, by_us, &mut fx);
            return fx;
        }
        let Role::Slave { local, master, .. } = &mut self.role else {
            return fx;
        };
        if master.as_deref() != Some(node) {
            return fx;
        }
        if let Some((family, key)) = self.probe.master_lost(early, by_us, local) {
            if let Ok(fam) = Family::internal(&family).or_else(|_| Family::user(&family)) {
                // Never accepted by the master: nothing to tell it.
                let _ = local.del(&fam, &[key.as_str()]);
            }
            fx.push(Effect::EntryDropped {
                family,
                key,
                peer: Str::from(node),
            });
        }
        fx
    }

    /// True while this slave is searching for an entry its master refuses
    /// ([`super::probe`]).
    pub fn probing(&self) -> bool {
        self.probe.is_active()
    }

    /// True while this global node is searching for an entry global peer `peer` refuses
    /// ([`super::mesh`]).
    pub fn probing_peer(&self, peer: &str) -> bool {
        self.mesh.get(peer).is_some_and(|m| m.probe.is_active())
    }

    /// The entries of this global node's slaves withheld from global peer `peer`, which
    /// refused them ([`super::mesh`]).
    pub fn withheld_from(&self, peer: &str) -> Vec<(Str, Str)> {
        self.mesh
            .get(peer)
            .map(|m| m.withheld().cloned().collect())
            .unwrap_or_default()
    }

    /// The connection to global peer `node` ended ([`GlobalService::connection_ended`] on
    /// a global node): drives the search for the entry it refuses ([`super::mesh`]).
    fn mesh_lost(&mut self, node: &str, early: bool, by_us: bool, fx: &mut Vec<Effect>) {
        let Role::Global(g) = &mut self.role else {
            return;
        };
        let is_peer = self.global_nodes.contains(node) || g.peers().any(|p| p == node);
        if !is_peer && !self.mesh.contains_key(node) {
            return;
        }
        let mp = self.mesh.entry(Str::from(node)).or_default();
        let withheld: BTreeSet<(Str, Str)> = mp.withheld().cloned().collect();
        let entries = || {
            g.slave_entries()
                .into_iter()
                .filter(|e| !withheld.contains(e))
                .collect()
        };
        let Some((family, key)) = mp.probe.lost(early, by_us, entries) else {
            return;
        };
        let owner = g.slave_value(&family, &key).map(|(_, n)| Str::from(n));
        if owner.as_deref() == Some(self.me.as_str()) || owner.is_none() {
            // Our own entry: deleted here, which the other global nodes see too.
            if let Ok(fam) = Family::user(&family) {
                let outs = g.db_del(&fam, &[key.as_str()]);
                self.route(outs, fx);
            }
            fx.push(Effect::EntryDropped {
                family,
                key,
                peer: Str::from(node),
            });
        } else if let Some(owner) = owner {
            if let Some(mp) = self.mesh.get_mut(node) {
                mp.withhold((family.clone(), key.clone()));
            }
            fx.push(Effect::EntryWithheld {
                family,
                key,
                owner,
                peer: Str::from(node),
            });
        }
    }

    /// Sends global peer `peer` what its search has for it now (see [`Probe::next`]).
    fn mesh_next(&mut self, peer: &str, after_set: bool, fx: &mut Vec<Effect>) {
        let (Role::Global(g), Some(mp)) = (&self.role, self.mesh.get_mut(peer)) else {
            return;
        };
        let msgs = mp.probe.next_from(
            &self.me,
            |f, k| g.slave_value(f, k).map(|(v, _)| v),
            after_set,
        );
        for msg in msgs {
            fx.push(Effect::Send {
                node: Str::from(peer),
                msg,
            });
        }
    }

    /// The grace period of the shard global node `node` left ([`Effect::Orphaned`]) is over:
    /// its entries that no live node re-sent meanwhile are deleted. Nothing if there is no
    /// such shard (any more).
    pub fn expire_orphan(&mut self, node: &str) -> Vec<Effect> {
        let mut fx = Vec::new();
        if let Role::Global(g) = &mut self.role {
            let outs = g.expire_orphan(node);
            self.route(outs, &mut fx);
        }
        fx
    }

    /// A seed connection greeted us as `node` (docs/protocol.md §6, seeds): it is recorded as a seed node and gets
    /// `g_slave` (queued by the runtime until the connection is up). If it is up already, a
    /// slave without master takes it. If `node` is our own ID we are our own seed and
    /// become global.
    pub fn seed_greeting(&mut self, node: &str) -> Vec<Effect> {
        if node == self.me {
            return self.become_global();
        }
        let mut fx = Vec::new();
        self.seed_nodes.insert(Str::from(node));
        self.send(node, msg!["g_slave"], &mut fx);
        if self.is_up(node) && !self.is_global() && self.master().is_none() {
            self.master_set(Some(Str::from(node)), &mut fx);
        }
        fx
    }

    /// Handles a `g_*` node-port request (`tag`, then its arguments) from `from`.
    ///
    /// `g_reply` and `g_found` answer our own queries and look-ups (from any node);
    /// `g_global` records a global node (and meshes with it when we are global); `g_slave`
    /// makes this node global; `g_chg1`/`g_chg2` feed the watched families; every other
    /// database request needs a global node and is refused otherwise.
    pub fn request(&mut self, from: &str, tag: &str, args: Vec<Value>) -> Vec<Effect> {
        let mut msg = Msg::with_capacity(1 + args.len());
        msg.push(tag);
        msg.0.extend(args);
        let mut fx = Vec::new();
        self.dispatch(from, msg, &mut fx);
        fx
    }

    /// Sets the addresses this node listens on (its `'l` entry). A slave with a master
    /// sends the change to it; without one it goes out with the next `g_slave`.
    pub fn set_listen_addrs(&mut self, addrs: &[SocketAddr]) -> Vec<Effect> {
        let binds: Vec<Str> = addrs.iter().map(|a| format_hostport(a).into()).collect();
        let mut fx = Vec::new();
        match &mut self.role {
            Role::Slave { local, master, .. } => {
                let m = local.set_binds(&binds);
                if let (Some(m), Some(master)) = (m, master.clone()) {
                    self.send(&master, m, &mut fx);
                }
            }
            Role::Global(g) => {
                let value = Value::List(binds.into_iter().map(Value::Str).collect());
                let me = self.me.clone();
                if let Ok(outs) = g.db_set(&Family::listeners(), &me, value) {
                    self.route(outs, &mut fx);
                }
            }
        }
        fx
    }

    /// `db_set`: sets `family`/`key` in this node's own database. A slave sends the change
    /// to its master (`["g_upd", family, {key: value}]`, nothing without a master); a global
    /// node applies it at once. Refused for an empty key.
    pub fn db_set(
        &mut self,
        family: &Family,
        key: &str,
        value: Value,
    ) -> Result<Vec<Effect>, NameError> {
        let mut fx = Vec::new();
        match &mut self.role {
            Role::Slave { local, master, .. } => {
                let m = local.set(family, key, value)?;
                if m.is_some() && self.probe.is_active() {
                    self.probe.written(family.as_str(), key);
                    self.probe_next(false, &mut fx);
                } else if let (Some(m), Some(master)) = (m, master.clone()) {
                    self.send(&master, m, &mut fx);
                }
            }
            Role::Global(g) => {
                let outs = g.db_set(family, key, value)?;
                self.route(outs, &mut fx);
            }
        }
        Ok(fx)
    }

    /// `db_del`: deletes keys this node set (`["g_upd", family, null, [keys]]` for those that
    /// existed).
    pub fn db_del(&mut self, family: &Family, keys: &[Str]) -> Vec<Effect> {
        let mut fx = Vec::new();
        match &mut self.role {
            Role::Slave { local, master, .. } => {
                if self.probe.is_active() {
                    for k in keys {
                        self.probe.deleted(family.as_str(), k);
                    }
                }
                if let (Some(m), Some(master)) = (local.del(family, keys), master.clone()) {
                    self.send(&master, m, &mut fx);
                }
            }
            Role::Global(g) => {
                let outs = g.db_del(family, keys);
                self.route(outs, &mut fx);
            }
        }
        fx
    }

    /// Asks the master for `family` (`g_db_family`/`g_db_keys`/`g_db_values`). Returns the
    /// query's id; the answer comes as [`Effect::Reply`] with that id, at once on a global
    /// node. Without a master the query waits for one. On the wire the id is written with
    /// letters like the reference's counter: query 1 is `b`, 2 is `c`, 26 is `aa`.
    pub fn query(&mut self, kind: QueryKind, family: &Family) -> (u64, Vec<Effect>) {
        self.last_query += 1;
        let id = self.last_query;
        let req = msg![kind.tag(), family.to_str(), wire_query_id(id)];
        self.queries.insert(id, req.clone());
        let mut fx = Vec::new();
        if let Some(master) = self.master().map(Str::from) {
            self.send(&master, req, &mut fx);
        }
        (id, fx)
    }

    /// Adds local subscriber `subscriber` to `family`. The first subscriber starts the watch
    /// (`g_mon1` to the master); a later one of a family that already had its first snapshot
    /// gets an [`Effect::Notify`] of its own with every current key as added.
    pub fn watch(&mut self, family: &Family, subscriber: u64) -> Vec<Effect> {
        let mut fx = Vec::new();
        let name = family.to_str();
        if let Some(subs) = self.subs.get(&name) {
            if subs.synced {
                let contents = self.family_mirror(&name);
                fx.push(Effect::Notify {
                    subscribers: vec![subscriber],
                    change: DbChange {
                        family: name.clone(),
                        added: contents.keys().cloned().collect(),
                        contents,
                        changed: Vec::new(),
                        deleted: Vec::new(),
                    },
                });
            }
            if let Some(subs) = self.subs.get_mut(&name) {
                if !subs.ids.contains(&subscriber) {
                    subs.ids.push(subscriber);
                }
            }
            return fx;
        }
        self.subs.insert(
            name,
            Subscribers {
                synced: false,
                ids: vec![subscriber],
            },
        );
        let outs = self.db_watch(family);
        self.route(outs, &mut fx);
        fx
    }

    /// Removes a local subscriber. After the last one of a user family the watch ends
    /// (`g_mon0`); internal families (`'l`, `'g`) stay watched.
    pub fn unwatch(&mut self, family: &str, subscriber: u64) -> Vec<Effect> {
        let mut fx = Vec::new();
        let Some(subs) = self.subs.get_mut(family) else {
            return fx;
        };
        let before = subs.ids.len();
        subs.ids.retain(|s| *s != subscriber);
        if before > 0 && subs.ids.is_empty() && !family.starts_with('\'') {
            self.subs.remove(family);
            let outs = match &mut self.role {
                Role::Slave { watches, .. } => watches.unwatch(family),
                Role::Global(g) => g.unwatch(family),
            };
            self.route(outs, &mut fx);
        }
        fx
    }

    /// The listen addresses of `node` known right now. A global node reads them from the
    /// merged `'l`; a slave knows none and asks its master (`g_find`, once per node until
    /// the `g_found`, re-sent to every new master), whose answer comes as
    /// [`Effect::Addresses`].
    pub fn lookup(&mut self, node: &str) -> (Vec<SocketAddr>, Vec<Effect>) {
        let mut fx = Vec::new();
        match &self.role {
            Role::Global(g) => return (parse_addrs(g.lookup(node)), fx),
            Role::Slave { master, .. } => {
                let master = master.clone();
                if self.finds.insert(Str::from(node)) {
                    if let Some(m) = master {
                        self.send(&m, msg!["g_find", node], &mut fx);
                    }
                }
            }
        }
        (Vec::new(), fx)
    }

    // ---------------------------------------------------------------------------------
    // internals

    /// One `g_*` request; also what this node sends itself.
    fn dispatch(&mut self, from: &str, msg: Msg, fx: &mut Vec<Effect>) {
        let tag = msg.tag().unwrap_or_default();
        match tag {
            "g_reply" => {
                let id = msg
                    .get(1)
                    .and_then(Value::as_str)
                    .and_then(query_number)
                    .filter(|id| self.queries.contains_key(id));
                // A reply to no pending query (answered already by a former master, or not
                // ours) is dropped.
                if let Some(id) = id {
                    self.queries.remove(&id);
                    let value = msg.0.into_iter().nth(2).unwrap_or(Value::Null);
                    fx.push(Effect::Reply { query: id, value });
                }
            }
            "g_found" => {
                let Some(node) = msg.get(1).and_then(Value::as_str).map(Str::from) else {
                    return;
                };
                if node == self.me {
                    // Our own address: only ever asked as the probe's marker.
                    if self.is_global() {
                        let more = self
                            .mesh
                            .get_mut(from)
                            .is_some_and(|m| m.probe.awaits_marker() && m.probe.confirmed());
                        if more {
                            self.mesh_next(from, false, fx);
                        }
                    } else if self.master() == Some(from)
                        && self.probe.awaits_marker()
                        && self.probe.confirmed()
                    {
                        self.probe_next(false, fx);
                    }
                    return;
                }
                self.finds.remove(&node);
                let addrs = parse_addrs(msg.get(2));
                if !addrs.is_empty() {
                    fx.push(Effect::Addresses { node, addrs });
                }
            }
            "g_global" => {
                self.global_nodes.insert(Str::from(from));
                if from != self.me {
                    self.global_handle(from, &msg, fx);
                }
            }
            "g_slave" => {
                if !self.is_global() {
                    fx.extend(self.become_global());
                }
                self.global_handle(from, &msg, fx);
            }
            "g_chg1" | "g_chg2" => match &mut self.role {
                Role::Slave { watches, .. } => match watches.handle(from, &msg) {
                    Ok(outs) => self.route(outs, fx),
                    Err(e) => fx.push(Effect::Refused {
                        from: Str::from(from),
                        error: format!("bad database change: {e}"),
                    }),
                },
                Role::Global(_) => self.global_handle(from, &msg, fx),
            },
            _ => {
                if self.is_global() {
                    self.global_handle(from, &msg, fx);
                } else {
                    fx.push(Effect::Refused {
                        from: Str::from(from),
                        error: format!("{tag} ignored: this node is not global"),
                    });
                }
            }
        }
    }

    /// Passes a request to the global role (nothing on a slave).
    fn global_handle(&mut self, from: &str, msg: &Msg, fx: &mut Vec<Effect>) {
        if let Role::Global(g) = &mut self.role {
            match g.handle(from, msg) {
                Ok(outs) => self.route(outs, fx),
                Err(e) => fx.push(Effect::Refused {
                    from: Str::from(from),
                    error: e.to_string(),
                }),
            }
        }
    }

    /// Carries out the outputs of a database state machine.
    fn route(&mut self, outs: Vec<Out>, fx: &mut Vec<Effect>) {
        for o in outs {
            match o {
                Out::ToNode { node, msg } => self.send(&node, msg, fx),
                Out::FamilyChanged(c) => self.notify(c, fx),
            }
        }
    }

    /// Sends `msg` to `node`; what we send ourselves is handled right here. (Terminates:
    /// the global role only sends itself `g_reply`/`g_found`, which send nothing further.)
    fn send(&mut self, node: &str, msg: Msg, fx: &mut Vec<Effect>) {
        if node == self.me {
            let me = self.me.clone();
            self.dispatch(&me, msg, fx);
            return;
        }
        if let Some(mp) = self.mesh.get_mut(node).filter(|m| !m.is_idle()) {
            // A global peer that refused entries (see `super::mesh`).
            let after_set = msg.tag() == Some("g_set");
            if let Some(msg) = mp.outgoing(msg) {
                fx.push(Effect::Send {
                    node: Str::from(node),
                    msg,
                });
            }
            self.mesh_next(node, after_set, fx);
            return;
        }
        fx.push(Effect::Send {
            node: Str::from(node),
            msg,
        });
    }

    /// A watched family changed: keep the global mesh for `'g`, notify its subscribers.
    fn notify(&mut self, c: FamilyChange, fx: &mut Vec<Effect>) {
        let contents = self.family_mirror(&c.family);
        if c.family == GLOBALS && self.is_global() {
            for node in contents.keys() {
                if *node != self.me {
                    fx.push(Effect::Connect { node: node.clone() });
                }
            }
        }
        let Some(subs) = self.subs.get_mut(&c.family) else {
            return;
        };
        subs.synced = true;
        fx.push(Effect::Notify {
            subscribers: subs.ids.clone(),
            change: DbChange {
                family: c.family,
                contents,
                added: c.added,
                changed: c.changed,
                deleted: c.deleted,
            },
        });
    }

    /// Starts watching a family for the service itself (no subscriber), once.
    fn watch_internal(&mut self, family: Family, fx: &mut Vec<Effect>) {
        let name = family.to_str();
        if self.subs.contains_key(&name) {
            return;
        }
        self.subs.insert(name, Subscribers::default());
        let outs = self.db_watch(&family);
        self.route(outs, fx);
    }

    fn db_watch(&mut self, family: &Family) -> Vec<Out> {
        match &mut self.role {
            Role::Slave { watches, .. } => watches.watch(family),
            Role::Global(g) => g.watch(family),
        }
    }

    /// A slave's master is set (or lost): full database, resubscriptions, pending requests.
    fn master_set(&mut self, m: Option<Str>, fx: &mut Vec<Effect>) {
        let Role::Slave {
            local,
            watches,
            master,
        } = &mut self.role
        else {
            return;
        };
        master.clone_from(&m);
        fx.push(Effect::Master(m.clone()));
        let mut outs = Vec::new();
        if let Some(m) = &m {
            outs.push(Out::ToNode {
                node: m.clone(),
                msg: self.probe.slave_msg(local),
            });
        }
        outs.extend(watches.set_master(m.as_deref()));
        self.route(outs, fx);
        self.resend_pending(fx);
        self.probe_next(true, fx);
    }

    /// Sends what the probe has for the master now, if there is a master.
    fn probe_next(&mut self, after_slave: bool, fx: &mut Vec<Effect>) {
        let Role::Slave {
            local,
            master: Some(master),
            ..
        } = &self.role
        else {
            return;
        };
        let master = master.clone();
        let msgs = self.probe.next(&self.me, local, after_slave);
        for m in msgs {
            self.send(&master, m, fx);
        }
    }

    /// Sends every pending query and `g_find` to the (new) master.
    fn resend_pending(&mut self, fx: &mut Vec<Effect>) {
        let Some(master) = self.master().map(Str::from) else {
            return;
        };
        let mut reqs: Vec<Msg> = self.queries.values().cloned().collect();
        reqs.extend(self.finds.iter().map(|n| msg!["g_find", n.clone()]));
        for r in reqs {
            self.send(&master, r, fx);
        }
    }
}

/// Query id `n` as the reference's magic-increment counter writes it: 1 → `b`, 2 → `c`,
/// 25 → `z`, 26 → `aa` (bijective base 26 of `n + 1`).
fn wire_query_id(n: u64) -> Str {
    let mut n = n.saturating_add(1);
    let mut s = Vec::new();
    while n > 0 {
        n -= 1;
        s.push(b'a' + (n % 26) as u8);
        n /= 26;
    }
    s.reverse();
    s.into_iter().map(char::from).collect()
}

/// The query id of a wire id (inverse of [`wire_query_id`]); `None` for anything that is
/// not lower-case letters or is out of range.
fn query_number(s: &str) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for b in s.bytes() {
        if !b.is_ascii_lowercase() {
            return None;
        }
        n = n.checked_mul(26)?.checked_add(u64::from(b - b'a') + 1)?;
    }
    n.checked_sub(1)
}

#[cfg(test)]
mod id_tests {
    use super::*;

    #[test]
    fn query_ids_round_trip() {
        assert_eq!(wire_query_id(1), "b");
        assert_eq!(wire_query_id(2), "c");
        assert_eq!(wire_query_id(25), "z");
        assert_eq!(wire_query_id(26), "aa");
        assert_eq!(wire_query_id(27), "ab");
        for n in [0, 1, 2, 24, 25, 26, 700, 701, 702, 123_456, u64::MAX - 1] {
            assert_eq!(query_number(&wire_query_id(n)), Some(n), "{n}");
        }
        for bad in ["", "B", "a1", "é", "zzzzzzzzzzzzzzzzzzzzzzzzzzzz"] {
            assert_eq!(query_number(bad), None, "{bad:?}");
        }
        assert_eq!(query_number("a"), Some(0));
    }
}

//! The global service (PROTOCOL.md §6): seeds, master selection, the global mesh and the
//! distributed database, as the kernel runs them.
//!
//! The database rules themselves are the sans-IO state machines of `aemp_proto::db`; this
//! module decides which one is active (`Role`), routes their outputs to connections and to
//! local `db_mon` subscribers, keeps the requests that wait for a master (`g_find`,
//! `g_db_*`, re-sent on every master change), and reacts to nodes coming and going.
//!
//! * A node that is not global keeps a [`LocalDb`] and [`Watches`]; its master is its first
//!   connected seed.
//! * A node becomes global when it finds itself among its seeds, when it receives
//!   `g_slave`, when it has no seeds at all (it is its own network), or when configured to
//!   (`AnyEvent::MP::Global` among its services). From then on the [`GlobalDb`] is its own
//!   master, and it meshes with every other global node.

pub(crate) mod api;
pub(crate) mod seeds;

use crate::kernel::Kernel;
use aemp_proto::db::{self, names::Family, FamilyChange, GlobalDb, LocalDb, Out, Watches};
use aemp_proto::{msg, Msg, NodeId, Str, Value};
use rustc_hash::{FxHashMap, FxHashSet};
use std::net::SocketAddr;

pub use aemp_proto::db::DbMap;
pub use api::{DbChange, DbEntry, DbWatch};

/// Which database role the node plays.
pub(crate) enum Role {
    Slave {
        local: LocalDb,
        watches: Watches,
        master: Option<Str>,
    },
    Global(Box<GlobalDb>),
    /// Only while switching roles.
    Switching,
}

type ReplyFn = Box<dyn FnOnce(Value) + Send + 'static>;

/// A local `db_mon` subscriber.
pub(crate) struct Subscriber {
    pub id: u64,
    pub tx: tokio::sync::mpsc::UnboundedSender<DbChange>,
}

/// Kernel-side state of the global service.
pub(crate) struct GlobalState {
    pub role: Role,
    /// Nodes that told us they are global (`g_global`).
    pub global_nodes: FxHashSet<Str>,
    /// Node IDs learned for our seeds (seed connections, §6.2).
    pub seed_nodes: FxHashSet<Str>,
    /// Queries waiting for `g_reply`, by request id, with the request (re-sent to every new
    /// master until answered).
    queries: FxHashMap<Str, (Msg, ReplyFn)>,
    next_query: u64,
    /// Node IDs we sent `g_find` for and wait on.
    finds: FxHashSet<Str>,
    /// Local `db_mon` subscribers per family, and whether the family has had its first
    /// snapshot (later subscribers then get the current contents at once).
    subs: FxHashMap<Str, (bool, Vec<Subscriber>)>,
}

impl GlobalState {
    pub(crate) fn new(me: &str, binds: &[SocketAddr]) -> GlobalState {
        let binds: Vec<Str> = binds
            .iter()
            .map(|a| Str::from(crate::transport::format_hostport(a)))
            .collect();
        GlobalState {
            role: Role::Slave {
                local: LocalDb::new(me, &binds),
                watches: Watches::new(),
                master: None,
            },
            global_nodes: FxHashSet::default(),
            seed_nodes: FxHashSet::default(),
            queries: FxHashMap::default(),
            next_query: 0,
            finds: FxHashSet::default(),
            subs: FxHashMap::default(),
        }
    }

    pub(crate) fn is_global(&self) -> bool {
        matches!(self.role, Role::Global(_))
    }

    pub(crate) fn master(&self) -> Option<&str> {
        match &self.role {
            Role::Slave { master, .. } => master.as_deref(),
            Role::Global(g) => Some(g.node_id()),
            Role::Switching => None,
        }
    }

    /// The next request id, written with letters like the reference's counter (`b`, `c`, …).
    fn next_id(&mut self) -> Str {
        self.next_query += 1;
        let mut n = self.next_query + 1;
        let mut s = Vec::new();
        while n > 0 {
            n -= 1;
            s.push(b'a' + (n % 26) as u8);
            n /= 26;
        }
        s.reverse();
        Str::from(String::from_utf8_lossy(&s).as_ref())
    }
}

impl Kernel {
    /// Routes the outputs of a database state machine.
    pub(crate) fn route_db(&mut self, outs: Vec<Out>) {
        for o in outs {
            match o {
                Out::ToNode { node, msg } => {
                    if node == self.id.as_str() {
                        self.db_from_self(msg);
                    } else {
                        self.send_node_request(&node, msg);
                    }
                }
                Out::FamilyChanged(c) => self.notify_db_mons(c),
            }
        }
    }

    /// A database message our own global role addressed to us (`g_reply`, `g_found`,
    /// `g_chg*` for our own queries and watches).
    fn db_from_self(&mut self, msg: Msg) {
        let me = self.id.clone();
        let tag = msg.tag().unwrap_or_default().to_string();
        let args = msg.0.into_iter().skip(1).collect();
        self.global_request(&me, &tag, args);
    }

    /// Handles a `g_*` node-port request from `from`.
    pub(crate) fn global_request(&mut self, from: &NodeId, tag: &str, args: Vec<Value>) {
        let mut msg = Msg::with_capacity(1 + args.len());
        msg.push(tag);
        msg.0.extend(args);
        match tag {
            "g_reply" => {
                let id = msg.get(1).and_then(Value::as_str).map(Str::from);
                match id.and_then(|id| self.global.queries.remove(&id)) {
                    Some((_, cb)) => cb(msg.0.into_iter().nth(2).unwrap_or(Value::Null)),
                    None => tracing::debug!(src = %from, "g_reply for no pending query"),
                }
            }
            "g_found" => {
                let Some(node) = msg.get(1).and_then(Value::as_str).map(Str::from) else {
                    return;
                };
                self.global.finds.remove(&node);
                let addrs = parse_addrs(msg.get(2));
                if addrs.is_empty() {
                    tracing::debug!(node = %node, "g_found: no known address");
                    return;
                }
                self.found_addresses(&node, addrs);
            }
            "g_global" => {
                self.global.global_nodes.insert(Str::from(from.as_str()));
                if from == &self.id {
                    return;
                }
                // The global role answers it (drop stale state, `'g` entry, one `g_set`).
                if let Role::Global(g) = &mut self.global.role {
                    let outs = g.handle(from.as_str(), &msg).unwrap_or_default();
                    self.route_db(outs);
                }
            }
            "g_slave" => {
                if !self.global.is_global() {
                    self.become_global();
                }
                self.global_db_handle(from, &msg);
            }
            "g_chg1" | "g_chg2" => match &mut self.global.role {
                Role::Slave { watches, .. } => match watches.handle(from.as_str(), &msg) {
                    Ok(outs) => self.route_db(outs),
                    Err(e) => tracing::warn!(src = %from, error = %e, "bad database change"),
                },
                Role::Global(_) => self.global_db_handle(from, &msg),
                Role::Switching => {}
            },
            _ => {
                if self.global.is_global() {
                    self.global_db_handle(from, &msg);
                } else {
                    tracing::debug!(src = %from, tag, "global request ignored: node is not global");
                }
            }
        }
    }

    fn global_db_handle(&mut self, from: &NodeId, msg: &Msg) {
        if let Role::Global(g) = &mut self.global.role {
            match g.handle(from.as_str(), msg) {
                Ok(outs) => self.route_db(outs),
                Err(e) => tracing::warn!(src = %from, error = %e, "error processing node message"),
            }
        }
    }

    /// Turns this node into a global node (§6.4).
    pub(crate) fn become_global(&mut self) {
        let (local, watches) = match std::mem::replace(&mut self.global.role, Role::Switching) {
            Role::Slave { local, watches, .. } => (local, watches),
            other => {
                self.global.role = other;
                return;
            }
        };
        tracing::info!(node = %self.id, "becoming a global node");
        let (g, mut outs) = GlobalDb::new(local, watches);
        let up = self.up_nodes();
        for n in &up {
            outs.extend(g.node_up(n.as_str()));
        }
        self.global.role = Role::Global(Box::new(g));
        self.route_db(outs);
        let known: Vec<Str> = up
            .iter()
            .filter(|n| self.global.global_nodes.contains(n.as_str()))
            .map(|n| Str::from(n.as_str()))
            .collect();
        for peer in known {
            if let Role::Global(g) = &mut self.global.role {
                let outs = g.global_connect(&peer);
                self.route_db(outs);
            }
        }
        // Keep connected to every global node listed in 'g.
        self.watch_internal(Family::globals());
        // Our own queries now have a master: ourselves.
        self.resend_pending();
    }

    /// Records the addresses we listen on in our `'l` entry.
    pub(crate) fn set_listen_addrs(&mut self, addrs: &[SocketAddr]) {
        let binds: Vec<Str> = addrs
            .iter()
            .map(|a| Str::from(crate::transport::format_hostport(a)))
            .collect();
        let value = Value::List(binds.iter().cloned().map(Value::Str).collect());
        match &mut self.global.role {
            Role::Slave { local, .. } => {
                local.set_binds(&binds);
            }
            Role::Global(_) => {
                let me = self.id.as_str().to_string();
                self.db_set(&Family::listeners(), &me, value);
            }
            Role::Switching => {}
        }
    }

    /// Sends every pending `g_find`/`g_db_*` to the (new) master.
    fn resend_pending(&mut self) {
        let Some(master) = self.global.master().map(Str::from) else {
            return;
        };
        let mut reqs: Vec<Msg> = self
            .global
            .queries
            .values()
            .map(|(m, _)| m.clone())
            .collect();
        reqs.extend(self.global.finds.iter().map(|n| msg!["g_find", n.clone()]));
        for r in reqs {
            self.request_master(&master, r);
        }
    }

    fn request_master(&mut self, master: &str, req: Msg) {
        if master == self.id.as_str() {
            let me = self.id.clone();
            self.global_db_handle(&me, &req);
        } else {
            self.send_node_request(master, req);
        }
    }

    /// A slave's master is set (or lost, `None`).
    fn master_set(&mut self, m: Option<Str>) {
        let Role::Slave {
            local,
            watches,
            master,
        } = &mut self.global.role
        else {
            return;
        };
        *master = m.clone();
        let mut outs = Vec::new();
        if let Some(m) = &m {
            tracing::info!(node = %self.id, master = %m, "master set");
            outs.push(Out::ToNode {
                node: m.clone(),
                msg: local.slave_msg(),
            });
        }
        outs.extend(watches.set_master(m.as_deref()));
        self.route_db(outs);
        self.resend_pending();
    }

    /// Node-up hook of the global service.
    pub(crate) fn global_node_up(&mut self, node: &NodeId) {
        let n = node.as_str();
        if let Role::Global(g) = &self.global.role {
            let outs = g.node_up(n);
            self.route_db(outs);
        }
        if self.global.seed_nodes.contains(n) {
            self.send_node_request(n, msg!["g_slave"]);
            if !self.global.is_global() && self.global.master().is_none() {
                self.master_set(Some(Str::from(n)));
            }
        }
    }

    /// Node-down hook of the global service.
    pub(crate) fn global_node_down(&mut self, node: &NodeId) {
        let n = node.as_str();
        self.global.global_nodes.remove(n);
        match &mut self.global.role {
            Role::Global(g) => {
                let outs = g.node_down(n);
                self.route_db(outs);
            }
            Role::Slave { master, .. } => {
                if master.as_deref() == Some(n) {
                    let next = self
                        .up_nodes()
                        .into_iter()
                        .find(|c| self.global.seed_nodes.contains(c.as_str()))
                        .map(|c| Str::from(c.as_str()));
                    self.master_set(next);
                }
            }
            Role::Switching => {}
        }
    }

    /// A seed connection told us the node ID behind a seed address.
    pub(crate) fn seed_greeting(&mut self, node: &NodeId) {
        self.global.seed_nodes.insert(Str::from(node.as_str()));
        // Queued now, sent once the connection is up (before the node-up hook's).
        self.send_node_request(node.as_str(), msg!["g_slave"]);
    }

    /// Looks up the addresses of `node`: from the merged `'l` on a global node, by `g_find`
    /// through the master otherwise. Returns the addresses known right now.
    pub(crate) fn lookup_addresses(&mut self, node: &str) -> Vec<SocketAddr> {
        match &self.global.role {
            Role::Global(g) => parse_addrs(g.lookup(node)),
            Role::Slave { master, .. } => {
                if self.global.finds.insert(Str::from(node)) {
                    if let Some(m) = master.clone() {
                        self.send_node_request(&m, msg!["g_find", node]);
                    }
                }
                Vec::new()
            }
            Role::Switching => Vec::new(),
        }
    }

    /// Notifies the local `db_mon` subscribers of a change.
    fn notify_db_mons(&mut self, c: FamilyChange) {
        let contents = self.family_mirror(&c.family);
        if c.family.as_str() == db::names::GLOBALS {
            self.keep_globals_connected(&contents);
        }
        let Some((synced, subs)) = self.global.subs.get_mut(c.family.as_str()) else {
            return;
        };
        *synced = true;
        let change = DbChange {
            family: c.family.clone(),
            contents,
            added: c.added,
            changed: c.changed,
            deleted: c.deleted,
        };
        subs.retain(|s| s.tx.send(change.clone()).is_ok());
    }

    /// A shared snapshot of the mirror of a watched family (empty if unknown).
    pub(crate) fn family_mirror(&self, family: &str) -> std::sync::Arc<db::DbMap> {
        let m = match &self.global.role {
            Role::Slave { watches, .. } => watches.snapshot(family),
            Role::Global(g) => g.watches().snapshot(family),
            Role::Switching => None,
        };
        m.unwrap_or_default()
    }

    /// Global nodes keep a connection to every global node listed in `'g` (§6.4).
    fn keep_globals_connected(&mut self, globals: &db::DbMap) {
        if !self.global.is_global() {
            return;
        }
        for node in globals.keys() {
            if node.as_str() != self.id.as_str() {
                self.ensure_connected(node);
            }
        }
    }

    /// Starts watching an internal family for the kernel itself (no subscriber).
    fn watch_internal(&mut self, family: Family) {
        let name = family.to_str();
        if self.global.subs.contains_key(&name) {
            return;
        }
        self.global.subs.insert(name, (false, Vec::new()));
        let outs = match &mut self.global.role {
            Role::Slave { watches, .. } => watches.watch(&family),
            Role::Global(g) => g.watch(&family),
            Role::Switching => Vec::new(),
        };
        self.route_db(outs);
    }
}

/// Reads a list of `host:port` strings (the `'l` values); unparsable entries are skipped.
pub(crate) fn parse_addrs(v: Option<&Value>) -> Vec<SocketAddr> {
    v.and_then(Value::as_list)
        .unwrap_or_default()
        .iter()
        .filter_map(|a| a.as_str()?.parse().ok())
        .collect()
}

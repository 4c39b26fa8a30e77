//! The database API of a node: `db_set`, `db_del`, `db_reg`, queries and `db_mon`.

use super::{Role, Subscriber};
use crate::error::Error;
use crate::kernel::monitor::Monitor;
use crate::kernel::{Cmd, Core, Kernel};
use crate::node::Node;
use aemp_proto::db::names::Family;
use aemp_proto::db::DbMap;
use aemp_proto::{msg, PortId, Str, Value};
use std::sync::Weak;
use tokio::sync::mpsc;

/// One `db_mon` notification: the family's current contents and what changed. The first
/// notification of a watch lists every current key as added (it comes even when the family
/// is empty).
#[derive(Clone, Debug, PartialEq)]
pub struct DbChange {
    /// The family.
    pub family: Str,
    /// The family's contents after the change (a shared snapshot).
    pub contents: std::sync::Arc<DbMap>,
    /// Keys that appeared.
    pub added: Vec<Str>,
    /// Keys whose value changed.
    pub changed: Vec<Str>,
    /// Keys that disappeared.
    pub deleted: Vec<Str>,
}

/// A stream of changes of one family, from [`Node::db_mon`]. Dropping it stops the watch.
pub struct DbWatch {
    rx: mpsc::UnboundedReceiver<DbChange>,
    core: Weak<Core>,
    family: Str,
    id: u64,
}

impl DbWatch {
    /// The next change; `None` when the node is gone.
    pub async fn next(&mut self) -> Option<DbChange> {
        self.rx.recv().await
    }

    /// A change if one is waiting right now.
    pub fn try_next(&mut self) -> Option<DbChange> {
        self.rx.try_recv().ok()
    }
}

impl Drop for DbWatch {
    fn drop(&mut self) {
        if let Some(core) = self.core.upgrade() {
            let (family, id) = (self.family.clone(), self.id);
            core.push(Cmd::Exec(Box::new(move |k: &mut Kernel| {
                k.db_unwatch(&family, id)
            })));
        }
    }
}

/// Deletes a database entry when dropped (from [`Node::db_set_guarded`] and
/// [`Node::db_reg_guarded`]). [`DbEntry::keep`] keeps the entry.
#[must_use = "dropping a DbEntry deletes the entry at once; call .keep() to keep it"]
pub struct DbEntry {
    core: Weak<Core>,
    family: Family,
    key: Str,
    mon: Option<u64>,
}

impl DbEntry {
    /// Keeps the entry (forgets the guard).
    pub fn keep(mut self) {
        self.core = Weak::new();
    }
}

impl Drop for DbEntry {
    fn drop(&mut self) {
        if let Some(core) = self.core.upgrade() {
            let (family, key, mon) = (self.family.clone(), self.key.clone(), self.mon);
            core.push(Cmd::Exec(Box::new(move |k: &mut Kernel| {
                if let Some(id) = mon {
                    k.unmon(id);
                }
                k.db_del(&family, &[key]);
            })));
        }
    }
}

fn family(name: &str) -> Result<Family, Error> {
    Family::user(name).map_err(|e| Error::Db(e.to_string()))
}

/// Family names for reading and watching may also be internal ones (`'l`, `'g`).
fn readable_family(name: &str) -> Result<Family, Error> {
    if name.starts_with('\'') {
        Family::internal(name).map_err(|e| Error::Db(e.to_string()))
    } else {
        family(name)
    }
}

/// `g_reply` of `g_db_family`: a map (anything else, such as `null`, counts as empty).
fn family_reply(v: Value) -> DbMap {
    match v {
        Value::Map(m) => m.into_iter().collect(),
        _ => DbMap::new(),
    }
}

/// `g_reply` of `g_db_keys`: the string keys of a list.
fn keys_reply(v: Value) -> Vec<Str> {
    match v {
        Value::List(l) => l
            .into_iter()
            .filter_map(|k| match k {
                Value::Str(s) => Some(s),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// `g_reply` of `g_db_values`: a list.
fn values_reply(v: Value) -> Vec<Value> {
    match v {
        Value::List(l) => l,
        _ => Vec::new(),
    }
}

fn subkey(key: &str) -> Result<(), Error> {
    aemp_proto::db::names::validate_subkey(key).map_err(|e| Error::Db(e.to_string()))
}

impl Node {
    /// Sets (or replaces) `family`/`key` to `value`. The entry is owned by this node: when
    /// the node leaves the network it disappears everywhere. Family names must match
    /// `[A-Za-z][A-Za-z0-9_:]*`, keys must be non-empty.
    pub fn db_set(
        &self,
        family_name: &str,
        key: &str,
        value: impl Into<Value>,
    ) -> Result<(), Error> {
        let fam = family(family_name)?;
        subkey(key)?;
        let (key, value) = (Str::from(key), value.into());
        self.exec(move |k| k.db_set(&fam, &key, value));
        Ok(())
    }

    /// [`Node::db_set`], returning a guard that deletes the entry when dropped.
    pub fn db_set_guarded(
        &self,
        family_name: &str,
        key: &str,
        value: impl Into<Value>,
    ) -> Result<DbEntry, Error> {
        self.db_set(family_name, key, value)?;
        Ok(DbEntry {
            core: self.weak_core(),
            family: family(family_name)?,
            key: Str::from(key),
            mon: None,
        })
    }

    /// Deletes keys of `family` that this node set.
    pub fn db_del(&self, family_name: &str, keys: &[&str]) -> Result<(), Error> {
        let fam = family(family_name)?;
        for k in keys {
            subkey(k)?;
        }
        let keys: Vec<Str> = keys.iter().map(|k| Str::from(*k)).collect();
        self.exec(move |k| k.db_del(&fam, &keys));
        Ok(())
    }

    /// Registers `port` under `family` (a `db_set` with the port ID as key); the entry is
    /// deleted when the port dies.
    pub fn db_reg(
        &self,
        family_name: &str,
        port: &PortId,
        value: impl Into<Value>,
    ) -> Result<(), Error> {
        self.db_reg_guarded(family_name, port, value)?.keep();
        Ok(())
    }

    /// [`Node::db_reg`], returning a guard that also deletes the entry when dropped.
    pub fn db_reg_guarded(
        &self,
        family_name: &str,
        port: &PortId,
        value: impl Into<Value>,
    ) -> Result<DbEntry, Error> {
        let fam = family(family_name)?;
        let key = Str::from(port.as_str());
        let value = value.into();
        let id = self.core().next_guard();
        let (f2, k2, p2) = (fam.clone(), key.clone(), port.clone());
        let core = self.weak_core();
        self.exec(move |k| {
            k.db_set(&f2, &k2, value);
            let (f3, k3) = (f2.clone(), k2.clone());
            k.mon(
                &p2,
                id,
                Monitor::callback(move |_reason| {
                    if let Some(core) = core.upgrade() {
                        core.push(Cmd::Exec(Box::new(move |k: &mut Kernel| {
                            k.db_del(&f3, &[k3])
                        })));
                    }
                }),
            );
        });
        Ok(DbEntry {
            core: self.weak_core(),
            family: fam,
            key,
            mon: Some(id),
        })
    }

    /// The whole family as seen by the global nodes (an empty map for an unknown family).
    /// Waits for a master if there is none yet.
    pub async fn db_family(&self, family_name: &str) -> Result<DbMap, Error> {
        Ok(family_reply(
            self.db_query("g_db_family", family_name).await?,
        ))
    }

    /// The keys of a family as seen by the global nodes.
    pub async fn db_keys(&self, family_name: &str) -> Result<Vec<Str>, Error> {
        Ok(keys_reply(self.db_query("g_db_keys", family_name).await?))
    }

    /// The values of a family as seen by the global nodes.
    pub async fn db_values(&self, family_name: &str) -> Result<Vec<Value>, Error> {
        Ok(values_reply(
            self.db_query("g_db_values", family_name).await?,
        ))
    }

    /// Callback form of [`Node::db_family`]: `cb` runs on the node's dispatcher with the
    /// result (keep it short; it must not block).
    pub fn db_family_then(
        &self,
        family_name: &str,
        cb: impl FnOnce(Result<DbMap, Error>) + Send + 'static,
    ) {
        self.db_query_then("g_db_family", family_name, move |v| cb(v.map(family_reply)));
    }

    /// Callback form of [`Node::db_keys`].
    pub fn db_keys_then(
        &self,
        family_name: &str,
        cb: impl FnOnce(Result<Vec<Str>, Error>) + Send + 'static,
    ) {
        self.db_query_then("g_db_keys", family_name, move |v| cb(v.map(keys_reply)));
    }

    /// Callback form of [`Node::db_values`].
    pub fn db_values_then(
        &self,
        family_name: &str,
        cb: impl FnOnce(Result<Vec<Value>, Error>) + Send + 'static,
    ) {
        self.db_query_then("g_db_values", family_name, move |v| cb(v.map(values_reply)));
    }

    /// Future form of `db_query_then`.
    async fn db_query(&self, tag: &'static str, family_name: &str) -> Result<Value, Error> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.db_query_then(tag, family_name, move |v| drop(tx.send(v)));
        rx.await.map_err(|_| Error::Shutdown)?
    }

    fn db_query_then(
        &self,
        tag: &'static str,
        family_name: &str,
        cb: impl FnOnce(Result<Value, Error>) + Send + 'static,
    ) {
        match readable_family(family_name) {
            Ok(fam) => {
                self.exec(move |k| k.db_query(tag, fam.as_str(), Box::new(move |v| cb(Ok(v)))))
            }
            Err(e) => cb(Err(e)),
        }
    }

    /// Watches a family: the first change lists the full current contents (even if empty),
    /// then one change per update. Keeps working across a change of master.
    pub fn db_mon(&self, family_name: &str) -> Result<DbWatch, Error> {
        let fam = readable_family(family_name)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let id = self.core().next_guard();
        let name = fam.to_str();
        self.exec(move |k| k.db_watch(&fam, Subscriber { id, tx }));
        Ok(DbWatch {
            rx,
            core: self.weak_core(),
            family: name,
            id,
        })
    }
}

impl Kernel {
    pub(crate) fn db_set(&mut self, family: &Family, key: &str, value: Value) {
        match &mut self.global.role {
            Role::Slave { local, master, .. } => match local.set(family, key, value) {
                Ok(Some(m)) => {
                    if let Some(master) = master.clone() {
                        self.send_node_request(&master, m);
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "db_set refused"),
            },
            Role::Global(g) => match g.db_set(family, key, value) {
                Ok(outs) => self.route_db(outs),
                Err(e) => tracing::warn!(error = %e, "db_set refused"),
            },
            Role::Switching => {}
        }
    }

    pub(crate) fn db_del(&mut self, family: &Family, keys: &[Str]) {
        match &mut self.global.role {
            Role::Slave { local, master, .. } => {
                if let Some(m) = local.del(family, keys) {
                    if let Some(master) = master.clone() {
                        self.send_node_request(&master, m);
                    }
                }
            }
            Role::Global(g) => {
                let outs = g.db_del(family, keys);
                self.route_db(outs)
            }
            Role::Switching => {}
        }
    }

    pub(crate) fn db_query(&mut self, tag: &str, family: &str, cb: Box<dyn FnOnce(Value) + Send>) {
        let id = self.global.next_id();
        let req = msg![tag, family, id.clone()];
        self.global.queries.insert(id, (req.clone(), cb));
        if let Some(master) = self.global.master().map(Str::from) {
            self.request_master(&master, req);
        }
    }

    pub(crate) fn db_watch(&mut self, family: &Family, sub: Subscriber) {
        let name = family.to_str();
        if let Some(synced) = self.global.subs.get(&name).map(|(s, _)| *s) {
            if synced {
                let contents = self.family_mirror(&name);
                let change = super::DbChange {
                    family: name.clone(),
                    added: contents.keys().cloned().collect(),
                    contents,
                    changed: Vec::new(),
                    deleted: Vec::new(),
                };
                let _ = sub.tx.send(change);
            }
            if let Some((_, subs)) = self.global.subs.get_mut(&name) {
                subs.push(sub);
            }
            return;
        }
        self.global.subs.insert(name, (false, vec![sub]));
        let outs = match &mut self.global.role {
            Role::Slave { watches, .. } => watches.watch(family),
            Role::Global(g) => g.watch(family),
            Role::Switching => Vec::new(),
        };
        self.route_db(outs);
    }

    pub(crate) fn db_unwatch(&mut self, family: &str, id: u64) {
        let Some((_, subs)) = self.global.subs.get_mut(family) else {
            return;
        };
        let before = subs.len();
        subs.retain(|s| s.id != id);
        // Internal watches (the kernel's own, e.g. 'g) have no subscribers and are kept.
        if before > 0 && subs.is_empty() && !family.starts_with('\'') {
            self.global.subs.remove(family);
            let outs = match &mut self.global.role {
                Role::Slave { watches, .. } => watches.unwatch(family),
                Role::Global(g) => g.unwatch(family),
                Role::Switching => Vec::new(),
            };
            self.route_db(outs);
        }
    }
}

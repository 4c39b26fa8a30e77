//! The database API of a node: `db_set`, `db_del`, `db_reg`, queries and `db_mon`.

use super::Node;
use crate::error::Error;
use crate::kernel::monitor::Monitor;
use crate::kernel::{MonRequest, Task};
use crate::runtime::{Cmd, Core, DbChange, DbCmd};
use aemp_proto::db::names::Family;
use aemp_proto::db::DbMap;
use aemp_proto::global::QueryKind;
use aemp_proto::{PortId, Str, Value};
use std::sync::Weak;
use tokio::sync::mpsc;

/// A stream of changes of one family, from [`Node::db_mon`]: [`DbWatch::next`] or the
/// [`futures_core::Stream`] of [`DbChange`]s. Dropping it stops the watch.
///
/// Slow readers: changes wait in an unbounded queue, so none is ever lost, and a reader that
/// never catches up makes the queue (and the node's memory) grow. Each change carries the
/// lists of keys added, changed and deleted, so a reader may also drain the queue with
/// [`DbWatch::try_next`] and act on the latest contents only.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), aemp::Error> {
/// use futures_core::Stream;
/// fn changes(_: impl Stream<Item = aemp::DbChange>) {}
///
/// let node = aemp::Node::new("watch-doc/%u")?;
/// let mut watch = node.db_mon("workers")?;
/// let first = watch.next().await.unwrap(); // the full contents first (empty here)
/// assert!(first.added.is_empty());
/// changes(watch); // and a Stream for stream combinators
/// # Ok(()) }
/// ```
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

impl futures_core::Stream for DbWatch {
    type Item = DbChange;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<DbChange>> {
        self.get_mut().rx.poll_recv(cx)
    }
}

impl Drop for DbWatch {
    fn drop(&mut self) {
        if let Some(core) = self.core.upgrade() {
            core.push(Cmd::Db(DbCmd::Unwatch {
                family: self.family.clone(),
                id: self.id,
            }));
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
            if let Some(id) = self.mon {
                core.task(Task::Unmon(id));
            }
            core.push(Cmd::Db(DbCmd::Del {
                family: self.family.clone(),
                keys: vec![self.key.clone()],
            }));
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

/// Checks a database value as the deepest message that carries it between nodes, a global
/// node's `g_set` (and `g_slave`): `["", "g_set", {family: {key: value}}]`, two map levels
/// above the value (the size is that of the value's own entry). Gives the value back, or
/// drops a refused one.
fn sendable_value(node: &Node, family: &Family, key: &Str, value: Value) -> Result<Value, Error> {
    let entry = Value::Map(vec![(key.clone(), value)]);
    let msg = [
        Value::from("g_set"),
        Value::Map(vec![(family.to_str(), entry)]),
    ];
    if let Err(e) = node.shared().check("", &msg) {
        return Err(super::refused(msg, e));
    }
    let [_, Value::Map(mut families)] = msg else {
        return Ok(Value::Null);
    };
    match families.pop() {
        Some((_, Value::Map(mut entries))) => Ok(entries.pop().map_or(Value::Null, |(_, v)| v)),
        _ => Ok(Value::Null),
    }
}

/// The longest id a database query can carry on the wire (query `u64::MAX - 1`, written
/// with letters, see `GlobalService::query`).
const LONGEST_QUERY_ID: &str = "zzzzzzzzzzzzzz";

fn subkey(key: &str) -> Result<(), Error> {
    aemp_proto::db::names::validate_subkey(key).map_err(|e| Error::Db(e.to_string()))
}

impl Node {
    /// Sets (or replaces) `family`/`key` to `value`. The entry is owned by this node: when
    /// the node leaves the network it disappears everywhere. Family names must match
    /// `[A-Za-z][A-Za-z0-9_:]*`, keys must be non-empty.
    ///
    /// A value that could not travel between nodes is refused with [`Error::Refused`]:
    /// nested so deep, or so large, that the `g_set` message carrying it (where the value is
    /// nested two maps deep) would exceed the node's limits (see [`Node::snd`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), aemp::Error> {
    /// # let node = aemp::Node::new("doc/%u")?;
    /// node.db_set("config", "colour", "blue")?;
    /// node.db_set("config", "size", 3)?;
    /// let all = node.db_family("config").await?;
    /// assert_eq!(all.len(), 2);
    /// assert!(node.db_set("9bad family", "k", 1).is_err()); // family names start with a letter
    /// # Ok(()) }
    /// ```
    pub fn db_set(
        &self,
        family_name: &str,
        key: &str,
        value: impl Into<Value>,
    ) -> Result<(), Error> {
        let fam = family(family_name)?;
        subkey(key)?;
        let key = Str::from(key);
        let value = sendable_value(self, &fam, &key, value.into())?;
        self.core().push(Cmd::Db(DbCmd::Set {
            family: fam,
            key,
            value,
        }));
        Ok(())
    }

    /// [`Node::db_set`], returning a guard that deletes the entry when dropped.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), aemp::Error> {
    /// # let node = aemp::Node::new("doc/%u")?;
    /// let entry = node.db_set_guarded("leases", "printer", "me")?;
    /// assert_eq!(node.db_keys("leases").await?.len(), 1);
    /// drop(entry); // deletes the entry
    /// assert!(node.db_keys("leases").await?.is_empty());
    /// # Ok(()) }
    /// ```
    pub fn db_set_guarded(
        &self,
        family_name: &str,
        key: &str,
        value: impl Into<Value>,
    ) -> Result<DbEntry, Error> {
        self.db_set(family_name, key, value)?;
        Ok(DbEntry {
            core: std::sync::Arc::downgrade(self.core()),
            family: family(family_name)?,
            key: Str::from(key),
            mon: None,
        })
    }

    /// Deletes keys of `family` that this node set.
    ///
    /// Keys that the `g_upd` request carrying the deletion could not carry (too large for the
    /// node's limits, see [`Node::snd`]) are refused with [`Error::Refused`], nothing deleted.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), aemp::Error> {
    /// # let node = aemp::Node::new("doc/%u")?;
    /// node.db_set("config", "colour", "blue")?;
    /// node.db_del("config", &["colour"])?;
    /// assert!(node.db_family("config").await?.is_empty());
    /// # Ok(()) }
    /// ```
    pub fn db_del(&self, family_name: &str, keys: &[&str]) -> Result<(), Error> {
        let fam = family(family_name)?;
        for k in keys {
            subkey(k)?;
        }
        let keys: Vec<Str> = keys.iter().map(|k| Str::from(*k)).collect();
        // Checked as the `g_upd` that carries the deletion to the master and on to the
        // other global nodes: `["", "g_upd", family, {}, [keys…]]`.
        let upd = [
            Value::from("g_upd"),
            Value::from(fam.to_str()),
            Value::Map(Vec::new()),
            Value::List(keys.iter().cloned().map(Value::Str).collect()),
        ];
        self.shared().check("", &upd)?;
        self.core().push(Cmd::Db(DbCmd::Del { family: fam, keys }));
        Ok(())
    }

    /// Registers `port` under `family` (a `db_set` with the port ID as key); the entry is
    /// deleted when the port dies.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), aemp::Error> {
    /// # let node = aemp::Node::new("doc/%u")?;
    /// let worker = node.port().default(|_cx, _m| Ok(())).build();
    /// node.db_reg("workers", &worker, "fast")?;
    /// assert_eq!(node.db_keys("workers").await?, vec![aemp::Str::from(worker.as_str())]);
    /// node.kil(&worker, vec![])?; // the entry goes with the port
    /// # Ok(()) }
    /// ```
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
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), aemp::Error> {
    /// # let node = aemp::Node::new("doc/%u")?;
    /// let worker = node.port().default(|_cx, _m| Ok(())).build();
    /// let reg = node.db_reg_guarded("workers", &worker, aemp::Value::Null)?;
    /// drop(reg); // unregisters; the port lives on
    /// assert!(node.db_keys("workers").await?.is_empty());
    /// # Ok(()) }
    /// ```
    pub fn db_reg_guarded(
        &self,
        family_name: &str,
        port: &PortId,
        value: impl Into<Value>,
    ) -> Result<DbEntry, Error> {
        let fam = family(family_name)?;
        let key = Str::from(port.as_str());
        let value = sendable_value(self, &fam, &key, value.into())?;
        let id = self.shared().next_guard();
        let core = std::sync::Arc::downgrade(self.core());
        self.core().push(Cmd::Db(DbCmd::Set {
            family: fam.clone(),
            key: key.clone(),
            value,
        }));
        let (f2, k2) = (fam.clone(), key.clone());
        self.core().task(Task::Mon(Box::new(MonRequest {
            port: port.clone(),
            id,
            action: Monitor::callback(move |_reason| {
                if let Some(core) = core.upgrade() {
                    core.push(Cmd::Db(DbCmd::Del {
                        family: f2,
                        keys: vec![k2],
                    }));
                }
            }),
        })));
        Ok(DbEntry {
            core: std::sync::Arc::downgrade(self.core()),
            family: fam,
            key,
            mon: Some(id),
        })
    }

    /// The whole family as seen by the global nodes (an empty map for an unknown family).
    /// Waits for a master if there is none yet. A family name too large for the request
    /// (`g_db_family`, likewise for the other queries) is refused with [`Error::Refused`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), aemp::Error> {
    /// # let node = aemp::Node::new("doc/%u")?;
    /// node.db_set("config", "colour", "blue")?;
    /// let family = node.db_family("config").await?;
    /// assert_eq!(family.get("colour").and_then(|v| v.as_str()), Some("blue"));
    /// # Ok(()) }
    /// ```
    pub async fn db_family(&self, family_name: &str) -> Result<DbMap, Error> {
        Ok(family_reply(
            self.db_query(QueryKind::Family, family_name).await?,
        ))
    }

    /// The keys of a family as seen by the global nodes.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), aemp::Error> {
    /// # let node = aemp::Node::new("doc/%u")?;
    /// node.db_set("config", "colour", "blue")?;
    /// assert_eq!(node.db_keys("config").await?, vec![aemp::Str::from("colour")]);
    /// # Ok(()) }
    /// ```
    pub async fn db_keys(&self, family_name: &str) -> Result<Vec<Str>, Error> {
        Ok(keys_reply(
            self.db_query(QueryKind::Keys, family_name).await?,
        ))
    }

    /// The values of a family as seen by the global nodes.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), aemp::Error> {
    /// # let node = aemp::Node::new("doc/%u")?;
    /// node.db_set("config", "colour", "blue")?;
    /// assert_eq!(node.db_values("config").await?, vec![aemp::Value::from("blue")]);
    /// # Ok(()) }
    /// ```
    pub async fn db_values(&self, family_name: &str) -> Result<Vec<Value>, Error> {
        Ok(values_reply(
            self.db_query(QueryKind::Values, family_name).await?,
        ))
    }

    /// Callback form of [`Node::db_family`]: `cb` runs on the node's dispatcher with the
    /// result (keep it short; it must not block).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), aemp::Error> {
    /// # let node = aemp::Node::new("doc/%u")?;
    /// node.db_set("config", "colour", "blue")?;
    /// let (tx, rx) = tokio::sync::oneshot::channel();
    /// node.db_family_then("config", move |r| drop(tx.send(r.map(|m| m.len()))));
    /// assert_eq!(rx.await.unwrap()?, 1);
    /// # Ok(()) }
    /// ```
    pub fn db_family_then(
        &self,
        family_name: &str,
        cb: impl FnOnce(Result<DbMap, Error>) + Send + 'static,
    ) {
        self.db_query_then(QueryKind::Family, family_name, move |v| {
            cb(v.map(family_reply))
        });
    }

    /// Callback form of [`Node::db_keys`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), aemp::Error> {
    /// # let node = aemp::Node::new("doc/%u")?;
    /// node.db_keys_then("config", |r| println!("keys: {:?}", r));
    /// # Ok(()) }
    /// ```
    pub fn db_keys_then(
        &self,
        family_name: &str,
        cb: impl FnOnce(Result<Vec<Str>, Error>) + Send + 'static,
    ) {
        self.db_query_then(QueryKind::Keys, family_name, move |v| cb(v.map(keys_reply)));
    }

    /// Callback form of [`Node::db_values`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), aemp::Error> {
    /// # let node = aemp::Node::new("doc/%u")?;
    /// node.db_values_then("config", |r| println!("values: {:?}", r));
    /// # Ok(()) }
    /// ```
    pub fn db_values_then(
        &self,
        family_name: &str,
        cb: impl FnOnce(Result<Vec<Value>, Error>) + Send + 'static,
    ) {
        self.db_query_then(QueryKind::Values, family_name, move |v| {
            cb(v.map(values_reply))
        });
    }

    /// Future form of `db_query_then`.
    async fn db_query(&self, kind: QueryKind, family_name: &str) -> Result<Value, Error> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.db_query_then(kind, family_name, move |v| drop(tx.send(v)));
        rx.await.map_err(|_| Error::Shutdown)?
    }

    fn db_query_then(
        &self,
        kind: QueryKind,
        family_name: &str,
        cb: impl FnOnce(Result<Value, Error>) + Send + 'static,
    ) {
        // Checked as the request that goes to the master, with the longest query id.
        let checked = readable_family(family_name).and_then(|family| {
            self.shared()
                .check_names(&[kind.tag(), family_name, LONGEST_QUERY_ID])
                .map_err(Error::Refused)?;
            Ok(family)
        });
        match checked {
            Ok(family) => self.core().push(Cmd::Db(DbCmd::Query {
                kind,
                family,
                reply: Box::new(move |v| cb(Ok(v))),
            })),
            Err(e) => cb(Err(e)),
        }
    }

    /// Watches a family: the first change lists the full current contents (even if empty),
    /// then one change per update. Keeps working across a change of master. A family name
    /// too large for the `g_mon1` request is refused with [`Error::Refused`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), aemp::Error> {
    /// # let node = aemp::Node::new("doc/%u")?;
    /// let mut watch = node.db_mon("workers")?;
    /// let first = watch.next().await.unwrap(); // the full contents, here empty
    /// assert!(first.contents.is_empty());
    /// node.db_set("workers", "w1", 1)?;
    /// let change = watch.next().await.unwrap();
    /// assert_eq!(change.added, vec![aemp::Str::from("w1")]);
    /// # Ok(()) }
    /// ```
    pub fn db_mon(&self, family_name: &str) -> Result<DbWatch, Error> {
        let fam = readable_family(family_name)?;
        self.shared().check_names(&["g_mon1", family_name])?;
        let (tx, rx) = mpsc::unbounded_channel();
        let id = self.shared().next_guard();
        let name = fam.to_str();
        self.core().push(Cmd::Db(DbCmd::Watch {
            family: fam,
            id,
            tx,
        }));
        Ok(DbWatch {
            rx,
            core: std::sync::Arc::downgrade(self.core()),
            family: name,
            id,
        })
    }
}

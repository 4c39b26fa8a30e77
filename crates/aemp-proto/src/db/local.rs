//! A node's own database (`LOCAL_DB`: writes, slave to master).
//!
//! Every write returns the `g_upd` request the master must receive, or `None` when nothing
//! changed. The caller sends it to the current master, or drops it when there is none: the
//! complete database goes to the next master anyway, inside `g_slave`
//! ([`LocalDb::slave_msg`]). A global node feeds it to its own [`super::GlobalDb`], which
//! does this internally.

use super::names::{validate_subkey, Family, NameError, LISTENERS};
use super::{db_value, values_equal, Db, DbMap};
use crate::msg;
use crate::value::{Msg, Str, Value};

/// What this node has set itself: family → subkey → value.
///
/// Invariant: no family is empty (deleting the last key removes the family), and the `'l`
/// entry of this node is present from construction on, so `g_slave` always carries it.
#[derive(Clone, Debug, PartialEq)]
pub struct LocalDb {
    me: Str,
    db: Db,
}

impl LocalDb {
    /// A node's database holding only `'l: {me: [binds…]}` (the advertisement every node
    /// makes at configure time, docs/protocol.md §7).
    pub fn new(me: &str, binds: &[Str]) -> LocalDb {
        let mut db = Db::new();
        let addrs = Value::List(binds.iter().cloned().map(Value::Str).collect());
        db.entry(Str::from(LISTENERS))
            .or_default()
            .insert(Str::from(me), addrs);
        LocalDb {
            me: Str::from(me),
            db,
        }
    }

    /// This node's ID.
    pub fn node_id(&self) -> &str {
        &self.me
    }

    /// `db_set family => key => value`. Returns `["g_upd", family, {key: value}]` (no
    /// fourth element, as the reference sends it) when the value is new or changed, `None`
    /// when it equals the current one ([`super::values_equal`]).
    pub fn set(
        &mut self,
        family: &Family,
        key: &str,
        value: Value,
    ) -> Result<Option<Msg>, NameError> {
        validate_subkey(key)?;
        let fam = self.db.entry(family.to_str()).or_default();
        if let Some(old) = fam.get(key) {
            if values_equal(old, &value) {
                return Ok(None);
            }
        }
        fam.insert(Str::from(key), value.clone());
        let set = Value::Map(vec![(Str::from(key), value)]);
        Ok(Some(msg!["g_upd", family.to_str(), set]))
    }

    /// `db_del family => keys…`. Only keys that exist are deleted and reported:
    /// `["g_upd", family, null, [keys…]]`, or `None` when none existed.
    pub fn del<K: AsRef<str>>(&mut self, family: &Family, keys: &[K]) -> Option<Msg> {
        let fam = self.db.get_mut(family.as_str())?;
        let mut gone: Vec<Value> = Vec::new();
        for k in keys {
            // A key given twice is deleted (and reported) once.
            if fam.remove(k.as_ref()).is_some() {
                gone.push(Value::from(k.as_ref()));
            }
        }
        if fam.is_empty() {
            self.db.remove(family.as_str());
        }
        if gone.is_empty() {
            None
        } else {
            Some(msg![
                "g_upd",
                family.to_str(),
                Value::Null,
                Value::List(gone)
            ])
        }
    }

    /// Replaces this node's advertised listen addresses (`'l` entry).
    pub fn set_binds(&mut self, binds: &[Str]) -> Option<Msg> {
        let addrs = Value::List(binds.iter().cloned().map(Value::Str).collect());
        let me = self.me.clone();
        // An empty node ID is refused as a subkey; then nothing changes, which is right.
        self.set(&Family::listeners(), &me, addrs).ok().flatten()
    }

    /// One value.
    pub fn get(&self, family: &str, key: &str) -> Option<&Value> {
        self.db.get(family)?.get(key)
    }

    /// One family's contents.
    pub fn family(&self, family: &str) -> Option<&DbMap> {
        self.db.get(family)
    }

    /// The whole local database.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The whole database as a wire value `{family: {key: value}}`.
    pub fn snapshot(&self) -> Value {
        db_value(&self.db)
    }

    /// `["g_slave", {family: {key: value}}]`: what a node sends to a new master (docs/protocol.md §6, masters).
    pub fn slave_msg(&self) -> Msg {
        msg!["g_slave", self.snapshot()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::list;

    fn fam(s: &str) -> Family {
        Family::user(s).unwrap()
    }

    #[test]
    fn new_db_advertises_listeners() {
        let db = LocalDb::new("n1", &[Str::from("127.0.0.1:4040")]);
        assert_eq!(db.node_id(), "n1");
        assert_eq!(db.get("'l", "n1"), Some(&list!["127.0.0.1:4040"]));
        assert_eq!(
            db.slave_msg().to_string(),
            r#"["g_slave",{"'l":{"n1":["127.0.0.1:4040"]}}]"#
        );
    }

    #[test]
    fn set_emits_upd_without_fifth_element() {
        let mut db = LocalDb::new("n1", &[]);
        let m = db.set(&fam("dfam"), "a1", Value::from(1)).unwrap().unwrap();
        assert_eq!(m.len(), 3, "g_upd after set has no delete list");
        assert_eq!(m.to_string(), r#"["g_upd","dfam",{"a1":1}]"#);
        assert_eq!(db.get("dfam", "a1"), Some(&Value::from(1)));
    }

    #[test]
    fn set_same_value_is_silent() {
        let mut db = LocalDb::new("n1", &[]);
        let v = Value::Map(vec![
            (Str::from("owner"), Value::from("w")),
            (Str::from("n"), Value::from(1)),
        ]);
        assert!(db.set(&fam("f"), "k", v).unwrap().is_some());
        let reordered = Value::Map(vec![
            (Str::from("n"), Value::from(1)),
            (Str::from("owner"), Value::from("w")),
        ]);
        assert_eq!(db.set(&fam("f"), "k", reordered).unwrap(), None);
        assert!(db.set(&fam("f"), "k", Value::from(2)).unwrap().is_some());
        // Null is a real value: setting a new key to null is a change, repeating it is not.
        assert!(db.set(&fam("f"), "n", Value::Null).unwrap().is_some());
        assert_eq!(db.set(&fam("f"), "n", Value::Null).unwrap(), None);
        // A different "false" scalar is a different value.
        assert!(db.set(&fam("f"), "n", Value::from("")).unwrap().is_some());
    }

    #[test]
    fn set_refuses_empty_subkey() {
        let mut db = LocalDb::new("n1", &[]);
        assert_eq!(
            db.set(&fam("f"), "", Value::Null),
            Err(NameError::EmptySubkey)
        );
        assert_eq!(db.family("f"), None);
    }

    #[test]
    fn del_reports_existing_keys_only() {
        let mut db = LocalDb::new("n1", &[]);
        assert_eq!(db.del(&fam("f"), &["x"]), None, "unknown family");
        db.set(&fam("f"), "a", Value::from(1)).unwrap();
        db.set(&fam("f"), "b", Value::from(2)).unwrap();
        assert_eq!(db.del(&fam("f"), &["zz"]), None, "unknown key");
        let m = db.del(&fam("f"), &["a", "zz", "a"]).unwrap();
        assert_eq!(m.to_string(), r#"["g_upd","f",null,["a"]]"#);
        let m = db.del(&fam("f"), &["b"]).unwrap();
        assert_eq!(m.to_string(), r#"["g_upd","f",null,["b"]]"#);
        assert_eq!(db.family("f"), None, "empty families disappear");
        assert!(db.family("'l").is_some());
    }

    #[test]
    fn binds_update() {
        let mut db = LocalDb::new("n1", &[Str::from("a:1")]);
        assert_eq!(db.set_binds(&[Str::from("a:1")]), None);
        let m = db.set_binds(&[Str::from("b:2")]).unwrap();
        assert_eq!(m.to_string(), r#"["g_upd","'l",{"n1":["b:2"]}]"#);
    }
}

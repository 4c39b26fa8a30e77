//! The distributed database of AnyEvent::MP 2.02 as sans-IO
//! state machines.
//!
//! * [`LocalDb`] ([`local`]): what one node set itself (`LOCAL_DB`), and the `g_upd`
//!   requests its writes produce for the master.
//! * [`GlobalDb`] ([`global`]): the role of a global node: one shard per slave and per other
//!   global node, the merged view, family monitors, forwarding to the other globals. A global
//!   node is its own slave and its own master, so it owns its [`LocalDb`] and [`Watches`].
//! * [`Watches`] ([`watch`]): the slave-side mirrors of monitored families (`db_mon`), fed
//!   with `g_chg1`/`g_chg2` from the master.
//! * [`names`]: family and subkey validation.
//! * [`FamilySnapshot`] ([`snapshot`]): a watched family's contents as handed to `db_mon`
//!   subscribers, a persistent map shared with the mirror.
//!
//! # Messages
//!
//! Everything here speaks in node-port requests: a [`Msg`] whose element 0 is the request
//! tag, e.g. `msg!["g_upd", family, {k: v}]`. The leading `""` (the node-port name) of the
//! wire array is **not** part of these messages; the transport prepends it when it frames an
//! [`Out::ToNode`], and strips it before passing a received request to `handle`.
//!
//! # Data layout
//!
//! Families and their contents are [`BTreeMap`]s (the mirrors of watched families are
//! [`FamilySnapshot`]s, also ordered), so every output lists keys in a stable (sorted)
//! order; Perl's own order is random, so peers cannot depend on any order.

pub mod global;
pub mod local;
pub mod names;
pub mod snapshot;
pub mod watch;

#[cfg(test)]
mod sim_tests;

pub use global::GlobalDb;
pub use local::LocalDb;
pub use names::{Family, NameError};
pub use snapshot::FamilySnapshot;
pub use watch::Watches;

use crate::value::{Msg, Str, Value};
use std::collections::BTreeMap;

/// The contents of one family: subkey → value.
pub type DbMap = BTreeMap<Str, Value>;

/// A whole database: family → subkey → value.
pub type Db = BTreeMap<Str, DbMap>;

/// One effect a database state machine asks its caller to carry out.
#[derive(Clone, Debug, PartialEq)]
pub enum Out {
    /// Send the node-port request `msg` (tag first, no leading `""`) to `node`.
    ToNode {
        /// Destination node ID.
        node: Str,
        /// The request, e.g. `["g_chg2", family, {set}, [deleted]]`.
        msg: Msg,
    },
    /// A monitored family changed: call the local `db_mon` subscribers of `family`. The
    /// current contents are available from [`Watches::mirror`].
    FamilyChanged(FamilyChange),
}

/// What changed in a monitored family (the arguments of a `db_mon` callback).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct FamilyChange {
    /// The family.
    pub family: Str,
    /// Keys that did not exist before.
    pub added: Vec<Str>,
    /// Keys that existed and were set again.
    pub changed: Vec<Str>,
    /// Keys that were removed.
    pub deleted: Vec<Str>,
}

/// Why a database request was refused. A refused request changes no state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DbError {
    /// The request's arguments do not have the expected shape.
    #[error("malformed {tag} request: {reason}")]
    Malformed {
        /// The request tag.
        tag: Str,
        /// What is wrong.
        reason: String,
    },
    /// The tag is not one of the database requests this state machine handles.
    #[error("{0:?} is not a database request")]
    UnknownTag(Str),
}

impl DbError {
    fn malformed(tag: &str, reason: impl Into<String>) -> DbError {
        DbError::Malformed {
            tag: Str::from(tag),
            reason: reason.into(),
        }
    }
}

/// The node-port request tags handled by [`GlobalDb::handle`] (on global nodes).
pub const GLOBAL_TAGS: &[&str] = &[
    "g_slave",
    "g_set",
    "g_upd",
    "g_find",
    "g_db_family",
    "g_db_keys",
    "g_db_values",
    "g_mon1",
    "g_mon0",
    "g_global",
    "g_chg1",
    "g_chg2",
];

/// True when `tag` is handled by [`GlobalDb::handle`].
pub fn is_global_tag(tag: &str) -> bool {
    GLOBAL_TAGS.contains(&tag)
}

/// Value equality as the reference decides "unchanged" (`sv_eq`): scalars compare by their
/// string form plus definedness (so `1` equals `"1"`, but `null` differs from `""`);
/// structures compare by content, where map key order does not matter (the reference
/// compares JSON encodings; Perl's key order is random, so content equality is what it means).
pub fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::List(x), Value::List(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| nested_equal(p, q))
        }
        (Value::Map(_), Value::Map(_)) => nested_equal(a, b),
        (Value::List(_) | Value::Map(_), _) | (_, Value::List(_) | Value::Map(_)) => false,
        // Perl booleans are objects (references), compared by encoding: only to booleans.
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Bool(_), _) | (_, Value::Bool(_)) => false,
        (Value::Null, Value::Null) => true,
        (Value::Null, _) | (_, Value::Null) => false,
        _ => scalar_bytes(a) == scalar_bytes(b),
    }
}

/// Equality inside a structure: exact types, numbers by numeric value, maps unordered.
fn nested_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Map(x), Value::Map(y)) => {
            let x = to_btree(x);
            let y = to_btree(y);
            x.len() == y.len()
                && x.iter()
                    .zip(y.iter())
                    .all(|((kx, vx), (ky, vy))| kx == ky && nested_equal(vx, vy))
        }
        (Value::List(x), Value::List(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| nested_equal(p, q))
        }
        (Value::Int(_) | Value::UInt(_) | Value::Float(_), _)
            if matches!(b, Value::Int(_) | Value::UInt(_) | Value::Float(_)) =>
        {
            match (a, b) {
                (Value::Float(_), _) | (_, Value::Float(_)) => a.as_f64() == b.as_f64(),
                _ => a == b,
            }
        }
        _ => a == b,
    }
}

/// A map's entries as a sorted map; a repeated key keeps its last value, as a decoder would.
fn to_btree(entries: &[(Str, Value)]) -> BTreeMap<&str, &Value> {
    entries.iter().map(|(k, v)| (k.as_str(), v)).collect()
}

/// The string form Perl would compare with `eq` (only called for non-null scalars).
fn scalar_bytes(v: &Value) -> Vec<u8> {
    match v {
        Value::Str(s) => s.as_bytes().to_vec(),
        Value::Bytes(b) => b.clone(),
        Value::Int(i) => i.to_string().into_bytes(),
        Value::UInt(u) => u.to_string().into_bytes(),
        Value::Float(f) => {
            // Perl prints integral floats without a fraction ("1", not "1.0").
            if f.fract() == 0.0 && f.abs() < 1e15 {
                format!("{}", *f as i64).into_bytes()
            } else {
                format!("{f}").into_bytes()
            }
        }
        _ => Vec::new(),
    }
}

/// A family's contents as a wire map.
pub fn map_value(m: &DbMap) -> Value {
    Value::Map(m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

/// A whole database as a wire map of maps.
pub fn db_value(db: &Db) -> Value {
    Value::Map(db.iter().map(|(f, m)| (f.clone(), map_value(m))).collect())
}

/// Reads a family's contents from the wire. `null` counts as empty (docs/protocol.md §7); a repeated
/// key keeps its last value.
fn parse_map(tag: &str, v: Option<&Value>) -> Result<DbMap, DbError> {
    match v {
        None | Some(Value::Null) => Ok(DbMap::new()),
        Some(Value::Map(m)) => Ok(m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
        Some(other) => Err(DbError::malformed(
            tag,
            format!("expected a map or null, got {}", other.kind()),
        )),
    }
}

/// Reads a whole database (`{family: {key: value}}`) from the wire; `null` families are
/// empty.
fn parse_db(tag: &str, v: Option<&Value>) -> Result<Db, DbError> {
    match v {
        None | Some(Value::Null) => Ok(Db::new()),
        Some(Value::Map(fams)) => {
            let mut db = Db::new();
            for (f, m) in fams {
                db.insert(f.clone(), parse_map(tag, Some(m))?);
            }
            Ok(db)
        }
        Some(other) => Err(DbError::malformed(
            tag,
            format!("expected a database map, got {}", other.kind()),
        )),
    }
}

/// Reads a list of subkeys; missing or `null` is empty (docs/protocol.md §7). Integers are accepted as
/// their decimal string, because Perl does not distinguish the two (docs/protocol.md §3).
fn parse_keys(tag: &str, v: Option<&Value>) -> Result<Vec<Str>, DbError> {
    let list = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::List(l)) => l,
        Some(other) => {
            return Err(DbError::malformed(
                tag,
                format!("expected a key list, got {}", other.kind()),
            ))
        }
    };
    list.iter()
        .map(|k| key_string(k).ok_or_else(|| DbError::malformed(tag, "key is not a string")))
        .collect()
}

/// A string argument (family, node ID); integers are accepted as their decimal form.
fn key_string(v: &Value) -> Option<Str> {
    match v {
        Value::Str(s) => Some(s.clone()),
        Value::Int(i) => Some(Str::from(i.to_string())),
        Value::UInt(u) => Some(Str::from(u.to_string())),
        _ => None,
    }
}

/// Required string argument `i` of `msg`.
fn arg_str(tag: &str, msg: &Msg, i: usize, what: &str) -> Result<Str, DbError> {
    match msg.get(i) {
        Some(v) => key_string(v).ok_or_else(|| {
            DbError::malformed(tag, format!("{what} must be a string, got {}", v.kind()))
        }),
        None => Err(DbError::malformed(tag, format!("missing {what}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::list;

    fn map(entries: &[(&str, Value)]) -> Value {
        Value::Map(
            entries
                .iter()
                .map(|(k, v)| (Str::from(*k), v.clone()))
                .collect(),
        )
    }

    #[test]
    fn sv_eq_scalars() {
        assert!(values_equal(&Value::from(1), &Value::from("1")));
        assert!(values_equal(&Value::from(1.0), &Value::from(1)));
        assert!(!values_equal(&Value::Null, &Value::from("")));
        assert!(values_equal(&Value::Null, &Value::Null));
        assert!(!values_equal(&Value::from("a"), &Value::from("b")));
        assert!(!values_equal(&Value::from(true), &Value::from(1)));
        assert!(values_equal(&Value::from(true), &Value::from(true)));
    }

    #[test]
    fn sv_eq_structures() {
        let a = map(&[("n", Value::from(1)), ("owner", Value::from("w"))]);
        let b = map(&[("owner", Value::from("w")), ("n", Value::from(1))]);
        let c = map(&[("owner", Value::from("w")), ("n", Value::from(2))]);
        assert!(values_equal(&a, &b), "key order must not matter");
        assert!(!values_equal(&a, &c));
        assert!(values_equal(&list![1, "x"], &list![1, "x"]));
        assert!(!values_equal(&list![1, "x"], &list![1]));
        assert!(!values_equal(&list![1], &map(&[])));
        // Inside structures the JSON encoding differs between 1 and "1".
        assert!(!values_equal(&list![1], &list!["1"]));
    }

    #[test]
    fn lenient_parsing() {
        assert_eq!(parse_map("t", Some(&Value::Null)), Ok(DbMap::new()));
        assert_eq!(parse_map("t", None), Ok(DbMap::new()));
        assert!(parse_map("t", Some(&Value::from(3))).is_err());
        assert_eq!(parse_keys("t", None), Ok(vec![]));
        assert_eq!(
            parse_keys("t", Some(&list!["a", 7])),
            Ok(vec![Str::from("a"), Str::from("7")])
        );
        assert!(parse_keys("t", Some(&list![list![]])).is_err());
        assert!(parse_keys("t", Some(&Value::from("a"))).is_err());
        let db = parse_db("t", Some(&map(&[("f", Value::Null)]))).unwrap();
        assert_eq!(db.get("f"), Some(&DbMap::new()));
        assert!(parse_db("t", Some(&map(&[("f", Value::from(1))]))).is_err());
    }
}

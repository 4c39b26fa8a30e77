//! Slave-side mirrors of monitored families (`db_mon`).
//!
//! [`Watches`] keeps one mirror per watched family and the current master. Watching a family
//! sends `["g_mon1", family]` to the master; the master answers with a full snapshot
//! (`g_chg1`) and then increments (`g_chg2`). Both are accepted only from the current
//! master, exactly like the reference, so stale messages of a previous master cannot corrupt
//! a mirror. After a change of master every watched family is subscribed again
//! ([`Watches::set_master`]); the new snapshot is diffed against the old mirror, so
//! subscribers see the difference instead of a reset.
//!
//! Reference-counting local subscribers is the caller's business: call
//! [`Watches::watch`] for the first subscriber of a family and [`Watches::unwatch`] after
//! the last one is gone.

use super::names::Family;
use super::snapshot::FamilySnapshot;
use super::{arg_str, parse_keys, parse_map, values_equal, DbError, DbMap, FamilyChange, Out};
use crate::msg;
use crate::value::{Msg, Str};
use std::cmp::Ordering;
use std::collections::BTreeMap;

/// The watched families of one node and the master they come from.
///
/// Invariant: a family has a mirror exactly while it is watched; `g_chg*` messages for
/// other families are ignored, so no mirror appears without a `watch`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Watches {
    master: Option<Str>,
    /// Shared with `db_mon` subscribers as snapshots: persistent maps, so handing out a
    /// snapshot costs O(1) and a change costs O(log family) even while subscribers still
    /// hold older snapshots.
    mirrors: BTreeMap<Str, FamilySnapshot>,
}

impl Watches {
    /// No master, nothing watched.
    pub fn new() -> Watches {
        Watches::default()
    }

    /// The current master, if any.
    pub fn master(&self) -> Option<&str> {
        self.master.as_deref()
    }

    /// Switches to a new master (or to none when it went down). Returns a `g_mon1` for every
    /// watched family, addressed to the new master: the resubscription that makes the new
    /// master send a fresh `g_chg1`. Mirrors are kept, so that snapshot is reported as a
    /// difference. (The caller must not resend these `g_mon1` itself.)
    pub fn set_master(&mut self, master: Option<&str>) -> Vec<Out> {
        self.master = master.map(Str::from);
        match &self.master {
            Some(m) => self
                .mirrors
                .keys()
                .map(|f| Out::ToNode {
                    node: m.clone(),
                    msg: msg!["g_mon1", f.clone()],
                })
                .collect(),
            None => Vec::new(),
        }
    }

    /// Starts watching `family`. The first call creates an empty mirror and returns
    /// `["g_mon1", family]` for the master (nothing when there is no master yet:
    /// [`Watches::set_master`] sends it later); a repeated call returns nothing.
    pub fn watch(&mut self, family: &Family) -> Vec<Out> {
        if self.mirrors.contains_key(family.as_str()) {
            return Vec::new();
        }
        self.mirrors.insert(family.to_str(), FamilySnapshot::new());
        self.to_master(msg!["g_mon1", family.to_str()])
    }

    /// Stops watching `family`: drops the mirror and returns `["g_mon0", family]` for the
    /// master, if any. Nothing when the family was not watched.
    pub fn unwatch(&mut self, family: &str) -> Vec<Out> {
        if self.mirrors.remove(family).is_none() {
            return Vec::new();
        }
        self.to_master(msg!["g_mon0", family])
    }

    fn to_master(&self, msg: Msg) -> Vec<Out> {
        match &self.master {
            Some(m) => vec![Out::ToNode {
                node: m.clone(),
                msg,
            }],
            None => Vec::new(),
        }
    }

    /// True while `family` is watched.
    pub fn is_watched(&self, family: &str) -> bool {
        self.mirrors.contains_key(family)
    }

    /// The current contents of a watched family, as far as the master has told us.
    pub fn mirror(&self, family: &str) -> Option<&FamilySnapshot> {
        self.mirrors.get(family)
    }

    /// A shared snapshot of the mirror of `family` (O(1): see [`FamilySnapshot`]).
    pub fn snapshot(&self, family: &str) -> Option<FamilySnapshot> {
        self.mirrors.get(family).cloned()
    }

    /// The watched families.
    pub fn families(&self) -> impl Iterator<Item = &str> {
        self.mirrors.keys().map(|f| f.as_str())
    }

    /// Handles `["g_chg1", family, map-or-null]` or `["g_chg2", family, set, [del]]` from
    /// node `from`.
    ///
    /// Returns one [`Out::FamilyChanged`] for a watched family when `from` is the current
    /// master, nothing otherwise (ignored like the reference does). Malformed messages are
    /// refused without touching the mirror.
    ///
    /// * `g_chg1` (`null` = empty): keys new to the mirror are added, keys whose value
    ///   differs are changed, keys missing from the snapshot are deleted. It is always
    ///   reported, even without a difference, because the first snapshot is the initial
    ///   `db_mon` call ("full contents, even if empty").
    /// * `g_chg2`: keys of `set` are added if new, changed otherwise (even when the value is
    ///   equal: the master did set them again); deleted keys are reported when the mirror
    ///   held them.
    pub fn handle(&mut self, from: &str, msg: &Msg) -> Result<Vec<Out>, DbError> {
        let tag = msg.tag().unwrap_or("");
        match tag {
            "g_chg1" => {
                let family = arg_str(tag, msg, 1, "family")?;
                let snapshot = parse_map(tag, msg.get(2))?;
                Ok(self
                    .apply_chg1(from, family, snapshot)
                    .into_iter()
                    .collect())
            }
            "g_chg2" => {
                let family = arg_str(tag, msg, 1, "family")?;
                let set = parse_map(tag, msg.get(2))?;
                let del = parse_keys(tag, msg.get(3))?;
                Ok(self
                    .apply_chg2(from, family, set, del)
                    .into_iter()
                    .collect())
            }
            _ => Err(DbError::UnknownTag(Str::from(tag))),
        }
    }

    fn accepts(&self, from: &str) -> bool {
        self.master.as_deref() == Some(from)
    }

    fn apply_chg1(&mut self, from: &str, family: Str, snapshot: DbMap) -> Option<Out> {
        if !self.accepts(from) {
            return None;
        }
        let mirror = self.mirrors.get_mut(&family)?;
        let mut change = FamilyChange {
            family,
            ..FamilyChange::default()
        };
        diff_sorted(mirror, &snapshot, &mut change);
        *mirror = FamilySnapshot::from(snapshot);
        Some(Out::FamilyChanged(change))
    }

    fn apply_chg2(&mut self, from: &str, family: Str, set: DbMap, del: Vec<Str>) -> Option<Out> {
        if !self.accepts(from) {
            return None;
        }
        let mirror = self.mirrors.get_mut(&family)?;
        let mut change = FamilyChange {
            family,
            ..FamilyChange::default()
        };
        for (k, v) in set {
            if mirror.contains_key(&k) {
                change.changed.push(k.clone());
            } else {
                change.added.push(k.clone());
            }
            mirror.insert(k, v);
        }
        for k in del {
            if mirror.remove(k.as_str()).is_some() {
                change.deleted.push(k);
            }
        }
        Some(Out::FamilyChanged(change))
    }
}

/// Fills `change` with the difference from `old` to `new`: keys only in `new` are added,
/// keys in both whose values differ ([`values_equal`]) are changed, keys only in `old` are
/// deleted. One merge pass over both (both iterate in key order): O(old + new).
fn diff_sorted(old: &FamilySnapshot, new: &DbMap, change: &mut FamilyChange) {
    let mut o = old.iter().peekable();
    let mut n = new.iter().peekable();
    loop {
        let ord = match (o.peek(), n.peek()) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some((ok, _)), Some((nk, _))) => ok.cmp(nk),
        };
        match ord {
            Ordering::Less => {
                if let Some((k, _)) = o.next() {
                    change.deleted.push(k.clone());
                }
            }
            Ordering::Greater => {
                if let Some((k, _)) = n.next() {
                    change.added.push(k.clone());
                }
            }
            Ordering::Equal => {
                if let (Some((_, ov)), Some((k, nv))) = (o.next(), n.next()) {
                    if !values_equal(ov, nv) {
                        change.changed.push(k.clone());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Value;

    fn fam(s: &str) -> Family {
        Family::user(s).unwrap()
    }

    fn m(entries: &[(&str, i64)]) -> Value {
        Value::Map(
            entries
                .iter()
                .map(|(k, v)| (Str::from(*k), Value::from(*v)))
                .collect(),
        )
    }

    fn keys(v: &[&str]) -> Vec<Str> {
        v.iter().map(|s| Str::from(*s)).collect()
    }

    fn change(outs: Vec<Out>) -> FamilyChange {
        match outs.as_slice() {
            [Out::FamilyChanged(c)] => c.clone(),
            other => panic!("expected one FamilyChanged, got {other:?}"),
        }
    }

    #[test]
    fn watch_sends_mon1_once_and_resends_on_master() {
        let mut w = Watches::new();
        assert!(w.watch(&fam("f")).is_empty(), "no master yet");
        assert!(w.is_watched("f"));
        let outs = w.set_master(Some("M"));
        assert_eq!(
            outs,
            vec![Out::ToNode {
                node: "M".into(),
                msg: msg!["g_mon1", "f"]
            }]
        );
        assert!(w.watch(&fam("f")).is_empty(), "already watched");
        assert_eq!(
            w.watch(&fam("g")),
            vec![Out::ToNode {
                node: "M".into(),
                msg: msg!["g_mon1", "g"]
            }]
        );
        assert_eq!(
            w.unwatch("g"),
            vec![Out::ToNode {
                node: "M".into(),
                msg: msg!["g_mon0", "g"]
            }]
        );
        assert!(w.unwatch("g").is_empty());
        assert!(w.set_master(None).is_empty());
        assert_eq!(w.master(), None);
    }

    #[test]
    fn chg1_null_is_empty_and_always_reported() {
        let mut w = Watches::new();
        w.set_master(Some("M"));
        w.watch(&fam("f"));
        let c = change(w.handle("M", &msg!["g_chg1", "f", Value::Null]).unwrap());
        assert_eq!(
            c,
            FamilyChange {
                family: "f".into(),
                ..Default::default()
            }
        );
        assert_eq!(w.mirror("f"), Some(&FamilySnapshot::new()));
    }

    #[test]
    fn chg1_then_chg2() {
        let mut w = Watches::new();
        w.set_master(Some("M"));
        w.watch(&fam("f"));
        let c = change(
            w.handle("M", &msg!["g_chg1", "f", m(&[("a", 1), ("b", 2)])])
                .unwrap(),
        );
        assert_eq!(c.added, keys(&["a", "b"]));
        assert!(c.changed.is_empty() && c.deleted.is_empty());

        let c = change(
            w.handle(
                "M",
                &msg![
                    "g_chg2",
                    "f",
                    m(&[("b", 2), ("c", 3)]),
                    vec![Value::from("a"), Value::from("zz")]
                ],
            )
            .unwrap(),
        );
        assert_eq!(c.added, keys(&["c"]));
        assert_eq!(c.changed, keys(&["b"]), "re-set keys count as changed");
        assert_eq!(
            c.deleted,
            keys(&["a"]),
            "unknown deleted keys are not reported"
        );
        let mirror = w.mirror("f").unwrap();
        assert_eq!(
            mirror.keys().cloned().collect::<Vec<_>>(),
            keys(&["b", "c"])
        );

        // Lenient shapes: null set and a missing delete list.
        let c = change(w.handle("M", &msg!["g_chg2", "f", Value::Null]).unwrap());
        assert_eq!(
            c,
            FamilyChange {
                family: "f".into(),
                ..Default::default()
            }
        );
    }

    #[test]
    fn only_current_master_and_watched_families() {
        let mut w = Watches::new();
        w.set_master(Some("M"));
        w.watch(&fam("f"));
        assert!(w
            .handle("X", &msg!["g_chg1", "f", m(&[("a", 1)])])
            .unwrap()
            .is_empty());
        assert!(w
            .handle(
                "X",
                &msg!["g_chg2", "f", m(&[("a", 1)]), Value::List(vec![])]
            )
            .unwrap()
            .is_empty());
        assert!(w
            .handle("M", &msg!["g_chg1", "other", m(&[("a", 1)])])
            .unwrap()
            .is_empty());
        assert_eq!(w.mirror("f"), Some(&FamilySnapshot::new()));
        assert!(w.mirror("other").is_none());
        w.set_master(None);
        assert!(w
            .handle("M", &msg!["g_chg1", "f", m(&[("a", 1)])])
            .unwrap()
            .is_empty());
    }

    #[test]
    fn malformed_is_refused_without_change() {
        let mut w = Watches::new();
        w.set_master(Some("M"));
        w.watch(&fam("f"));
        w.handle("M", &msg!["g_chg1", "f", m(&[("a", 1)])]).unwrap();
        let before = w.clone();
        for bad in [
            msg!["g_chg1"],
            msg!["g_chg1", 1.5, Value::Null],
            msg!["g_chg1", "f", "notamap"],
            msg!["g_chg2", "f", m(&[("b", 1)]), "notalist"],
            msg!["g_chg2", "f", m(&[("b", 1)]), vec![Value::Null]],
            msg!["g_chg2", "f", vec![Value::from(1)]],
        ] {
            assert!(w.handle("M", &bad).is_err(), "{bad} must be refused");
            assert_eq!(w, before, "{bad} must not change state");
        }
        assert_eq!(
            w.handle("M", &msg!["g_mon1", "f"]),
            Err(DbError::UnknownTag("g_mon1".into()))
        );
        assert!(w.handle("M", &Msg::new()).is_err());
    }

    #[test]
    fn resync_after_master_change_reports_difference() {
        let mut w = Watches::new();
        w.set_master(Some("M1"));
        w.watch(&fam("f"));
        w.handle(
            "M1",
            &msg!["g_chg1", "f", m(&[("a", 1), ("b", 2), ("c", 3)])],
        )
        .unwrap();

        // M1 goes down; M2 becomes master: g_mon1 goes to M2.
        assert!(w.set_master(None).is_empty());
        let outs = w.set_master(Some("M2"));
        assert_eq!(
            outs,
            vec![Out::ToNode {
                node: "M2".into(),
                msg: msg!["g_mon1", "f"]
            }]
        );
        // A late message of the old master is ignored.
        assert!(w
            .handle(
                "M1",
                &msg!["g_chg2", "f", m(&[("z", 9)]), Value::List(vec![])]
            )
            .unwrap()
            .is_empty());

        let c = change(
            w.handle(
                "M2",
                &msg!["g_chg1", "f", m(&[("a", 1), ("b", 20), ("d", 4)])],
            )
            .unwrap(),
        );
        assert_eq!(c.added, keys(&["d"]));
        assert_eq!(c.changed, keys(&["b"]));
        assert_eq!(c.deleted, keys(&["c"]));
        assert_eq!(w.mirror("f").unwrap().get("b"), Some(&Value::from(20)));
        assert!(w.mirror("f").unwrap().get("z").is_none());
    }
}

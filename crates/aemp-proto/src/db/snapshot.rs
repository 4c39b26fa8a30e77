//! [`FamilySnapshot`]: the contents of a watched family at one moment, shared between the
//! slave's mirror and every `db_mon` change handed out.
//!
//! A watcher may hold many changes at once (they queue until it reads them), and each must
//! show the family as it was after that change. A plain map shared copy-on-write copies the
//! whole family on the next change while any older snapshot is still held, so a watcher that
//! falls a few changes behind would cost O(family) per change.
//!
//! # Layout
//!
//! A snapshot is a **base**, an ordinary [`DbMap`] shared read-only (`Arc`), plus an
//! **overlay** of the changes since that base: a persistent ordered map ([`imbl::OrdMap`], a
//! B+ tree of shared nodes) of subkey → new value, or `None` for a subkey deleted from the
//! base. A change copies only the overlay's path to the entry (O(log changes) nodes of at
//! most 16 entries), whatever the number of snapshots alive. Reads look in the overlay first;
//! iteration merges the two in key order.
//!
//! When the overlay outgrows a quarter of the base (plus [`COMPACT_SLACK`]), the next change
//! folds it into a fresh base: O(family) once every family/4 distinct subkeys changed, so
//! O(1) per change amortised. A new full snapshot (`g_chg1`) becomes the base as it is, so
//! the first `db_mon` call of a large family costs no more than building the map once.

use super::DbMap;
use crate::value::{Str, Value};
use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

/// Overlay entries allowed beyond a quarter of the base before it is folded into the base.
pub const COMPACT_SLACK: usize = 64;

type Overlay = imbl::OrdMap<Str, Option<Value>>;

/// The contents of one family (subkey → value, ordered by subkey) at one moment: what
/// [`crate::global::DbChange::contents`] holds.
///
/// Cloning is O(1), and changing a clone never changes the others: snapshots share their
/// unchanged parts (see [the module](self)). Reading works like a [`DbMap`] (`get`,
/// `contains_key`, `keys`, `iter`, indexing by subkey); [`FamilySnapshot::to_map`] makes an
/// independent [`DbMap`].
///
/// ```
/// use aemp_proto::db::FamilySnapshot;
/// use aemp_proto::Value;
///
/// let mut a = FamilySnapshot::new();
/// a.insert("w1".into(), Value::from(1));
/// let b = a.clone();
/// a.insert("w2".into(), Value::from(2));
/// assert_eq!((a.len(), b.len()), (2, 1)); // b still shows the old contents
/// assert_eq!(a["w2"], Value::from(2));
/// assert_eq!(b.keys().collect::<Vec<_>>(), ["w1"]);
/// ```
#[derive(Clone, Default)]
pub struct FamilySnapshot {
    /// Never changed in place once shared.
    base: Arc<DbMap>,
    /// Changes since `base`: `Some` sets a subkey, `None` deletes one of `base` (a subkey
    /// not in `base` is never `None` here).
    overlay: Overlay,
    /// The number of subkeys (`base` with `overlay` applied).
    len: usize,
}

impl FamilySnapshot {
    /// An empty family.
    pub fn new() -> FamilySnapshot {
        FamilySnapshot::default()
    }

    /// The number of subkeys.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the family has no subkey.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self.overlay.get(key) {
            Some(v) => v.as_ref(),
            None => self.base.get(key),
        }
    }

    /// True when `key` is set.
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The subkeys, in order.
    pub fn keys(&self) -> Keys<'_> {
        Keys(self.iter())
    }

    /// The values, in the order of their subkeys.
    pub fn values(&self) -> Values<'_> {
        Values(self.iter())
    }

    /// The entries, in subkey order.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            base: Side::new(self.base.iter()),
            overlay: Side::new(self.overlay.iter()),
            remaining: self.len,
        }
    }

    /// Sets `key` to `value`; returns the previous value. Only this snapshot changes.
    pub fn insert(&mut self, key: Str, value: Value) -> Option<Value> {
        let old = match self.overlay.insert(key.clone(), Some(value)) {
            Some(old) => old,
            None => self.base.get(&key).cloned(),
        };
        if old.is_none() {
            self.len += 1;
        }
        self.compact_if_large();
        old
    }

    /// Removes `key`; returns its value. Only this snapshot changes.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        let in_base = self.base.contains_key(key);
        let old = if in_base {
            if matches!(self.overlay.get(key), Some(None)) {
                return None; // already deleted
            }
            match self.overlay.insert(Str::from(key), None) {
                Some(old) => old,
                None => self.base.get(key).cloned(),
            }
        } else {
            self.overlay.remove(key).flatten()
        };
        if old.is_some() {
            self.len -= 1;
        }
        self.compact_if_large();
        old
    }

    /// Folds a large overlay into a new base (see the module documentation).
    fn compact_if_large(&mut self) {
        if self.overlay.len() > COMPACT_SLACK + self.base.len() / 4 {
            let merged: DbMap = self.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            *self = FamilySnapshot::from(merged);
        }
    }

    /// An independent copy as an ordinary ordered map (O(family)).
    pub fn to_map(&self) -> DbMap {
        if self.overlay.is_empty() {
            return (*self.base).clone();
        }
        self.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

impl fmt::Debug for FamilySnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl PartialEq for FamilySnapshot {
    fn eq(&self, other: &FamilySnapshot) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl PartialEq<DbMap> for FamilySnapshot {
    fn eq(&self, other: &DbMap) -> bool {
        self.len == other.len() && self.iter().eq(other.iter())
    }
}

impl PartialEq<FamilySnapshot> for DbMap {
    fn eq(&self, other: &FamilySnapshot) -> bool {
        other == self
    }
}

impl std::ops::Index<&str> for FamilySnapshot {
    type Output = Value;

    /// The value of `key`; panics when it is not set, like [`DbMap`]'s indexing.
    fn index(&self, key: &str) -> &Value {
        match self.get(key) {
            Some(v) => v,
            None => panic!("subkey {key:?} is not in the family"),
        }
    }
}

impl FromIterator<(Str, Value)> for FamilySnapshot {
    /// Later entries win over earlier ones with the same subkey.
    fn from_iter<I: IntoIterator<Item = (Str, Value)>>(iter: I) -> FamilySnapshot {
        FamilySnapshot::from(iter.into_iter().collect::<DbMap>())
    }
}

impl From<DbMap> for FamilySnapshot {
    /// O(1): the map becomes the base.
    fn from(m: DbMap) -> FamilySnapshot {
        FamilySnapshot {
            len: m.len(),
            base: Arc::new(m),
            overlay: Overlay::new(),
        }
    }
}

impl From<&FamilySnapshot> for DbMap {
    fn from(s: &FamilySnapshot) -> DbMap {
        s.to_map()
    }
}

impl<'a> IntoIterator for &'a FamilySnapshot {
    type Item = (&'a Str, &'a Value);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

/// One sorted, double-ended source of [`Iter`] with an entry taken from either end but not
/// yet used. Both iterators hand out each entry once, whichever end asks, so an entry held
/// at one end is the last one left when the other end finds its iterator empty.
struct Side<I: DoubleEndedIterator> {
    it: I,
    front: Option<I::Item>,
    back: Option<I::Item>,
}

impl<I: DoubleEndedIterator> Side<I> {
    fn new(it: I) -> Side<I> {
        Side {
            it,
            front: None,
            back: None,
        }
    }

    fn peek_front(&mut self) -> Option<&I::Item> {
        if self.front.is_none() {
            self.front = self.it.next().or_else(|| self.back.take());
        }
        self.front.as_ref()
    }

    fn peek_back(&mut self) -> Option<&I::Item> {
        if self.back.is_none() {
            self.back = self.it.next_back().or_else(|| self.front.take());
        }
        self.back.as_ref()
    }
}

type BaseIter<'a> = std::collections::btree_map::Iter<'a, Str, Value>;
type OverlayIter<'a> =
    imbl::ordmap::Iter<'a, Str, Option<Value>, imbl::shared_ptr::DefaultSharedPtr>;

/// The entries of a [`FamilySnapshot`] in subkey order ([`FamilySnapshot::iter`]): the base
/// and the overlay merged, the overlay winning.
pub struct Iter<'a> {
    base: Side<BaseIter<'a>>,
    overlay: Side<OverlayIter<'a>>,
    remaining: usize,
}

/// Which source the next entry comes from.
enum Pick {
    Base,
    Overlay,
    Both,
    Done,
}

impl<'a> Iter<'a> {
    /// Chooses by comparing the candidates' keys; `smaller` is the order that goes first.
    fn pick(base: Option<&Str>, overlay: Option<&Str>, smaller: Ordering) -> Pick {
        match (base, overlay) {
            (None, None) => Pick::Done,
            (Some(_), None) => Pick::Base,
            (None, Some(_)) => Pick::Overlay,
            (Some(b), Some(o)) => match b.cmp(o) {
                Ordering::Equal => Pick::Both,
                ord if ord == smaller => Pick::Base,
                _ => Pick::Overlay,
            },
        }
    }

    /// The next entry from the front (`front`) or the back.
    fn step(&mut self, front: bool) -> Option<(&'a Str, &'a Value)> {
        loop {
            let (b, o) = if front {
                (
                    self.base.peek_front().map(|e| e.0),
                    self.overlay.peek_front().map(|e| e.0),
                )
            } else {
                (
                    self.base.peek_back().map(|e| e.0),
                    self.overlay.peek_back().map(|e| e.0),
                )
            };
            let smaller = if front {
                Ordering::Less
            } else {
                Ordering::Greater
            };
            let take_base = |s: &mut Side<BaseIter<'a>>| {
                if front {
                    s.front.take()
                } else {
                    s.back.take()
                }
            };
            let take_overlay = |s: &mut Side<OverlayIter<'a>>| {
                if front {
                    s.front.take()
                } else {
                    s.back.take()
                }
            };
            let entry = match Self::pick(b, o, smaller) {
                Pick::Done => return None,
                Pick::Base => take_base(&mut self.base),
                Pick::Overlay => overlay_entry(take_overlay(&mut self.overlay)),
                Pick::Both => {
                    take_base(&mut self.base);
                    overlay_entry(take_overlay(&mut self.overlay))
                }
            };
            // `None`: a deleted subkey; look further.
            if let Some(e) = entry {
                self.remaining = self.remaining.saturating_sub(1);
                return Some(e);
            }
        }
    }
}

/// An overlay entry as an entry of the family (`None` for a deletion).
fn overlay_entry<'a>(e: Option<(&'a Str, &'a Option<Value>)>) -> Option<(&'a Str, &'a Value)> {
    let (k, v) = e?;
    v.as_ref().map(|v| (k, v))
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a Str, &'a Value);

    fn next(&mut self) -> Option<(&'a Str, &'a Value)> {
        self.step(true)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl DoubleEndedIterator for Iter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.step(false)
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl std::iter::FusedIterator for Iter<'_> {}

impl fmt::Debug for Iter<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Iter")
            .field("remaining", &self.remaining)
            .finish_non_exhaustive()
    }
}

/// Iterators of a [`FamilySnapshot`] that give one part of each entry.
macro_rules! part_iter {
    ($(#[$doc:meta])* $name:ident, $item:ty, $part:tt) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name<'a>(Iter<'a>);

        impl<'a> Iterator for $name<'a> {
            type Item = $item;

            fn next(&mut self) -> Option<$item> {
                self.0.next().map(|e| e.$part)
            }

            fn size_hint(&self) -> (usize, Option<usize>) {
                self.0.size_hint()
            }
        }

        impl<'a> DoubleEndedIterator for $name<'a> {
            fn next_back(&mut self) -> Option<$item> {
                self.0.next_back().map(|e| e.$part)
            }
        }

        impl ExactSizeIterator for $name<'_> {}

        impl std::iter::FusedIterator for $name<'_> {}
    };
}

part_iter!(
    /// The subkeys of a [`FamilySnapshot`] in order ([`FamilySnapshot::keys`]).
    Keys,
    &'a Str,
    0
);
part_iter!(
    /// The values of a [`FamilySnapshot`] in subkey order ([`FamilySnapshot::values`]).
    Values,
    &'a Value,
    1
);

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(entries: &[(&str, i64)]) -> FamilySnapshot {
        entries
            .iter()
            .map(|(k, v)| (Str::from(*k), Value::from(*v)))
            .collect()
    }

    #[test]
    fn clones_are_independent() {
        let mut a = snap(&[("a", 1), ("b", 2)]);
        let b = a.clone();
        assert_eq!(a.insert("c".into(), Value::from(3)), None);
        assert_eq!(a.insert("a".into(), Value::from(10)), Some(Value::from(1)));
        assert_eq!(a.remove("b"), Some(Value::from(2)));
        assert_eq!(a.remove("b"), None);
        assert_eq!(a, snap(&[("a", 10), ("c", 3)]));
        assert_eq!(b, snap(&[("a", 1), ("b", 2)]));
    }

    #[test]
    fn reads_like_a_map() {
        let s = snap(&[("b", 2), ("a", 1), ("a", 5)]);
        assert_eq!(s.len(), 2);
        assert_eq!(s["a"], Value::from(5), "a later entry wins");
        assert!(s.contains_key("b") && !s.contains_key("z"));
        assert_eq!(s.get("z"), None);
        assert_eq!(s.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(
            s.values().rev().collect::<Vec<_>>(),
            [&Value::from(2), &Value::from(5)]
        );
        let m: DbMap = s.to_map();
        assert_eq!(s, m);
        assert_eq!(m, s);
        assert_eq!(FamilySnapshot::from(m.clone()), s);
        assert_ne!(s, DbMap::new());
        assert_eq!(format!("{s:?}"), format!("{m:?}"));
        assert_eq!((&s).into_iter().count(), 2);
    }

    /// A small xorshift generator: spread, not quality.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    /// Reads `s` from both ends at once (the order of ends drawn from `rng`) and checks the
    /// result against the plain map `want`.
    fn check_both_ends(s: &FamilySnapshot, want: &DbMap, rng: &mut Rng) {
        let mut it = s.iter();
        let mut front = Vec::new();
        let mut back = Vec::new();
        loop {
            assert_eq!(it.len(), want.len() - front.len() - back.len());
            let e = if rng.below(2) == 0 {
                it.next().map(|e| front.push(e))
            } else {
                it.next_back().map(|e| back.push(e))
            };
            if e.is_none() {
                break;
            }
        }
        assert!(it.next().is_none() && it.next_back().is_none(), "fused");
        front.extend(back.into_iter().rev());
        let want: Vec<_> = want.iter().collect();
        assert_eq!(front, want);
    }

    #[test]
    fn random_changes_match_a_plain_map() {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        for base_len in [0u64, 3, 50, 700] {
            let mut reference: DbMap = (0..base_len)
                .map(|i| (Str::from(format!("k{:04}", i * 2)), Value::from(i as i64)))
                .collect();
            let mut cur = FamilySnapshot::from(reference.clone());
            let mut held = vec![(cur.clone(), reference.clone())];
            for step in 0..3000i64 {
                // Keys both in and out of the base, added, re-added and deleted.
                let key = format!("k{:04}", rng.below(base_len * 2 + 40));
                match rng.below(3) {
                    0 => assert_eq!(cur.remove(&key), reference.remove(key.as_str()), "{key}"),
                    _ => assert_eq!(
                        cur.insert(Str::from(key.as_str()), Value::from(step)),
                        reference.insert(Str::from(key.as_str()), Value::from(step)),
                        "{key}"
                    ),
                }
                assert_eq!(cur.len(), reference.len());
                assert_eq!(cur.get(&key), reference.get(key.as_str()));
                assert_eq!(cur.contains_key(&key), reference.contains_key(key.as_str()));
                if step % 97 == 0 {
                    held.push((cur.clone(), reference.clone()));
                }
            }
            held.push((cur, reference));
            for (s, want) in &held {
                assert_eq!(s, want);
                assert_eq!(&s.to_map(), want);
                check_both_ends(s, want, &mut rng);
                assert_eq!(
                    s.keys().rev().collect::<Vec<_>>(),
                    want.keys().rev().collect::<Vec<_>>()
                );
                assert_eq!(
                    s.values().collect::<Vec<_>>(),
                    want.values().collect::<Vec<_>>()
                );
            }
        }
    }

    #[test]
    fn overlay_is_folded_into_the_base() {
        let base: DbMap = (0..1000)
            .map(|i| (Str::from(format!("k{i:04}")), Value::from(i)))
            .collect();
        let mut s = FamilySnapshot::from(base);
        let old = s.clone();
        for i in 0..400 {
            s.insert(Str::from(format!("n{i:04}")), Value::from(i));
            assert!(s.overlay.len() <= COMPACT_SLACK + s.base.len() / 4);
        }
        assert!(!Arc::ptr_eq(&s.base, &old.base), "folded at least once");
        assert_eq!(s.len(), 1400);
        assert_eq!(old.len(), 1000, "an older snapshot keeps its base");
        assert_eq!(old.get("n0000"), None);
        assert_eq!(s.get("n0399"), Some(&Value::from(399)));
    }

    #[test]
    fn many_snapshots_alive_stay_correct() {
        // A writer that runs ahead of its reader: every change keeps its own view, checked
        // against a plain map copied at each step.
        let mut cur = FamilySnapshot::new();
        let mut reference = DbMap::new();
        for i in 0..2000u32 {
            let k = Str::from(format!("k{i:05}"));
            cur.insert(k.clone(), Value::from(i64::from(i)));
            reference.insert(k, Value::from(i64::from(i)));
        }
        let mut held = Vec::new();
        for i in 0..300u32 {
            let k = Str::from(format!("k{:05}", (i * 7919) % 2500));
            cur.insert(k.clone(), Value::from(-i64::from(i)));
            reference.insert(k, Value::from(-i64::from(i)));
            if i % 3 == 0 {
                let gone = format!("k{:05}", (i * 104_729) % 2000);
                assert_eq!(cur.remove(&gone), reference.remove(gone.as_str()));
            }
            held.push((cur.clone(), reference.clone()));
        }
        for (i, (s, r)) in held.iter().enumerate() {
            assert_eq!(s, r, "snapshot {i}");
        }
    }
}

//! `Clone`, `PartialEq` and `Debug` for [`Value`] that work at any nesting depth.
//!
//! Each recurses like a derived implementation for the first [`RECURSE`] levels (the
//! usual case: fast, no allocation) and continues any deeper part with an explicit stack,
//! so a value nested a million levels deep (which a program can build, though no peer
//! accepts it) is cloned, compared and printed without overflowing the thread's stack.
//! The results are those of the derived implementations, with one exception: the
//! pretty-printed `Debug` (`{:#?}`) prints the part below [`RECURSE`] levels on one line,
//! in the compact `{:?}` form.

use super::{Str, Value};
use std::fmt;
use std::slice::Iter;

/// Levels handled by recursion before the explicit stack takes over. Small enough for a
/// thread with a small stack (a formatter frame takes a few hundred bytes per level).
const RECURSE: usize = 32;

impl Clone for Value {
    fn clone(&self) -> Value {
        clone_at(self, 0)
    }
}

/// A scalar's clone; `None` for a list or map.
#[inline]
fn clone_scalar(v: &Value) -> Option<Value> {
    Some(match v {
        Value::Null => Value::Null,
        Value::Bool(b) => Value::Bool(*b),
        Value::Int(i) => Value::Int(*i),
        Value::UInt(u) => Value::UInt(*u),
        Value::Float(x) => Value::Float(*x),
        Value::Str(s) => Value::Str(s.clone()),
        Value::Bytes(b) => Value::Bytes(b.clone()),
        Value::List(_) | Value::Map(_) => return None,
    })
}

fn clone_at(v: &Value, depth: usize) -> Value {
    match v {
        Value::List(items) if depth < RECURSE => {
            Value::List(items.iter().map(|x| clone_at(x, depth + 1)).collect())
        }
        Value::Map(entries) if depth < RECURSE => Value::Map(
            entries
                .iter()
                .map(|(k, x)| (k.clone(), clone_at(x, depth + 1)))
                .collect(),
        ),
        Value::List(_) | Value::Map(_) => clone_deep(v),
        scalar => clone_scalar(scalar).unwrap_or_default(),
    }
}

/// A container being read: what is left of it.
enum Src<'a> {
    List(Iter<'a, Value>),
    Map(Iter<'a, (Str, Value)>),
}

impl<'a> Src<'a> {
    /// The container's reader; `None` for a scalar.
    fn of(v: &'a Value) -> Option<Src<'a>> {
        match v {
            Value::List(items) => Some(Src::List(items.iter())),
            Value::Map(entries) => Some(Src::Map(entries.iter())),
            _ => None,
        }
    }

    /// The next element, with its key in a map.
    fn next(&mut self) -> Option<(Option<&'a Str>, &'a Value)> {
        match self {
            Src::List(it) => it.next().map(|v| (None, v)),
            Src::Map(it) => it.next().map(|(k, v)| (Some(k), v)),
        }
    }
}

/// A container being cloned: its source, its copy so far, and its key in its parent.
struct Building<'a> {
    src: Src<'a>,
    dst: Value,
    key: Option<Str>,
}

impl<'a> Building<'a> {
    fn of(v: &'a Value, key: Option<Str>) -> Option<Building<'a>> {
        let dst = match v {
            Value::List(items) => Value::List(Vec::with_capacity(items.len())),
            Value::Map(entries) => Value::Map(Vec::with_capacity(entries.len())),
            _ => return None,
        };
        Some(Building {
            src: Src::of(v)?,
            dst,
            key,
        })
    }

    fn push(&mut self, key: Option<Str>, v: Value) {
        match &mut self.dst {
            Value::List(items) => items.push(v),
            Value::Map(entries) => entries.push((key.unwrap_or_default(), v)),
            _ => {}
        }
    }
}

/// Clones a container with an explicit stack.
fn clone_deep(v: &Value) -> Value {
    let Some(first) = Building::of(v, None) else {
        return clone_scalar(v).unwrap_or_default();
    };
    let mut stack = vec![first];
    while let Some(top) = stack.last_mut() {
        match top.src.next() {
            Some((key, x)) => match Building::of(x, key.cloned()) {
                Some(open) => stack.push(open),
                None => top.push(key.cloned(), clone_scalar(x).unwrap_or_default()),
            },
            None => {
                let Some(done) = stack.pop() else { break };
                match stack.last_mut() {
                    Some(parent) => parent.push(done.key, done.dst),
                    None => return done.dst,
                }
            }
        }
    }
    Value::Null
}

impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        eq_at(self, other, 0)
    }
}

/// Equality of two values that are not both lists or both maps (derived semantics: same
/// variant and equal contents; floats by `==`).
#[inline]
fn eq_shallow(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Int(x), Value::Int(y)) => x == y,
        (Value::UInt(x), Value::UInt(y)) => x == y,
        (Value::Float(x), Value::Float(y)) => x == y,
        (Value::Str(x), Value::Str(y)) => x == y,
        (Value::Bytes(x), Value::Bytes(y)) => x == y,
        _ => false,
    }
}

fn eq_at(a: &Value, b: &Value, depth: usize) -> bool {
    match (a, b) {
        (Value::List(x), Value::List(y)) if depth < RECURSE => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| eq_at(p, q, depth + 1))
        }
        (Value::Map(x), Value::Map(y)) if depth < RECURSE => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((kx, p), (ky, q))| kx == ky && eq_at(p, q, depth + 1))
        }
        (Value::List(_), Value::List(_)) | (Value::Map(_), Value::Map(_)) => eq_deep(a, b),
        _ => eq_shallow(a, b),
    }
}

/// Two containers of the same kind and length, ready to be compared element by element;
/// `None` when they differ already in kind or length (or are not containers).
fn pair<'a>(a: &'a Value, b: &'a Value) -> Option<(Src<'a>, Src<'a>)> {
    match (a, b) {
        (Value::List(x), Value::List(y)) if x.len() == y.len() => Some((Src::of(a)?, Src::of(b)?)),
        (Value::Map(x), Value::Map(y)) if x.len() == y.len() => Some((Src::of(a)?, Src::of(b)?)),
        _ => None,
    }
}

/// Compares two containers with an explicit stack.
fn eq_deep(a: &Value, b: &Value) -> bool {
    let Some(first) = pair(a, b) else {
        return false;
    };
    let mut stack = vec![first];
    while let Some((x, y)) = stack.last_mut() {
        match (x.next(), y.next()) {
            (Some((kx, p)), Some((ky, q))) => {
                if kx != ky {
                    return false;
                }
                let containers = matches!(p, Value::List(_) | Value::Map(_))
                    || matches!(q, Value::List(_) | Value::Map(_));
                if containers {
                    match pair(p, q) {
                        Some(next) => stack.push(next),
                        None => return false,
                    }
                } else if !eq_shallow(p, q) {
                    return false;
                }
            }
            // Same lengths: both end together.
            _ => {
                stack.pop();
            }
        }
    }
    true
}

impl fmt::Debug for Value {
    /// As derived: `Int(1)`, `Str("x")`, `List([Int(1), Null])`, `Map([("k", Bool(true))])`.
    /// `{:#?}` pretty-prints the first levels and the part below them on one line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            fmt::Debug::fmt(&Pretty(self, 0), f)
        } else {
            debug_compact(self, f)
        }
    }
}

/// A scalar as derived `Debug` writes it (not for containers).
fn debug_scalar(v: &Value, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match v {
        Value::Null => f.write_str("Null"),
        Value::Bool(b) => f.debug_tuple("Bool").field(b).finish(),
        Value::Int(i) => f.debug_tuple("Int").field(i).finish(),
        Value::UInt(u) => f.debug_tuple("UInt").field(u).finish(),
        Value::Float(x) => f.debug_tuple("Float").field(x).finish(),
        Value::Str(s) => f.debug_tuple("Str").field(&s.as_str()).finish(),
        Value::Bytes(b) => f.debug_tuple("Bytes").field(b).finish(),
        Value::List(_) => f.write_str("List(..)"),
        Value::Map(_) => f.write_str("Map(..)"),
    }
}

/// The one-line derived form, with an explicit stack.
fn debug_compact(v: &Value, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let open = |v: &Value, f: &mut fmt::Formatter<'_>| match v {
        Value::List(_) => f.write_str("List(["),
        _ => f.write_str("Map(["),
    };
    let Some(first) = Src::of(v) else {
        return debug_scalar(v, f);
    };
    open(v, f)?;
    // Each open container with whether an element was written.
    let mut stack = vec![(first, false)];
    while let Some((src, started)) = stack.last_mut() {
        let Some((key, x)) = src.next() else {
            // A map element is a tuple: close it too.
            f.write_str("])")?;
            stack.pop();
            if let Some((Src::Map(_), _)) = stack.last() {
                f.write_str(")")?;
            }
            continue;
        };
        if std::mem::replace(started, true) {
            f.write_str(", ")?;
        }
        if let Some(k) = key {
            write!(f, "({:?}, ", k.as_str())?;
        }
        match Src::of(x) {
            Some(inner) => {
                open(x, f)?;
                stack.push((inner, false));
            }
            None => {
                debug_scalar(x, f)?;
                if key.is_some() {
                    f.write_str(")")?;
                }
            }
        }
    }
    Ok(())
}

/// The compact form of a value, for `format!`.
struct Compact<'a>(&'a Value);

impl fmt::Debug for Compact<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_compact(self.0, f)
    }
}

/// `{:#?}` of a value `.1` levels down: the derived form through the formatter's own
/// builders, the compact form below [`RECURSE`] levels.
struct Pretty<'a>(&'a Value, usize);

impl fmt::Debug for Pretty<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Pretty(v, depth) = *self;
        if depth >= RECURSE && matches!(v, Value::List(_) | Value::Map(_)) {
            // Rendered apart and written at once: written piece by piece, every piece would
            // pass through the indenting adapter of each level above.
            return f.write_str(&format!("{:?}", Compact(v)));
        }
        match v {
            Value::List(items) => f
                .debug_tuple("List")
                .field(&PrettyList(items, depth + 1))
                .finish(),
            Value::Map(entries) => f
                .debug_tuple("Map")
                .field(&PrettyMap(entries, depth + 1))
                .finish(),
            scalar => debug_scalar(scalar, f),
        }
    }
}

struct PrettyList<'a>(&'a [Value], usize);

impl fmt::Debug for PrettyList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|v| Pretty(v, self.1)))
            .finish()
    }
}

struct PrettyMap<'a>(&'a [(Str, Value)], usize);

impl fmt::Debug for PrettyMap<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(k, v)| (k.as_str(), Pretty(v, self.1))))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::list;

    /// The derived implementations, for comparison.
    #[derive(Clone, Debug, PartialEq)]
    enum Derived {
        Null,
        Bool(bool),
        Int(i64),
        UInt(u64),
        Float(f64),
        Str(Str),
        Bytes(Vec<u8>),
        List(Vec<Derived>),
        Map(Vec<(Str, Derived)>),
    }

    fn derived(v: &Value) -> Derived {
        match v {
            Value::Null => Derived::Null,
            Value::Bool(b) => Derived::Bool(*b),
            Value::Int(i) => Derived::Int(*i),
            Value::UInt(u) => Derived::UInt(*u),
            Value::Float(x) => Derived::Float(*x),
            Value::Str(s) => Derived::Str(s.clone()),
            Value::Bytes(b) => Derived::Bytes(b.clone()),
            Value::List(l) => Derived::List(l.iter().map(derived).collect()),
            Value::Map(m) => Derived::Map(m.iter().map(|(k, v)| (k.clone(), derived(v))).collect()),
        }
    }

    /// Container levels of a value (a scalar has none).
    fn levels(v: &Value) -> usize {
        match v {
            Value::List(l) => 1 + l.iter().map(levels).max().unwrap_or(0),
            Value::Map(m) => 1 + m.iter().map(|(_, v)| levels(v)).max().unwrap_or(0),
            _ => 0,
        }
    }

    /// Values of every kind, shallow and past [`RECURSE`] levels.
    fn samples() -> Vec<Value> {
        let scalars = vec![
            Value::Null,
            Value::Bool(true),
            Value::Int(-3),
            Value::UInt(u64::MAX),
            Value::Float(1.5),
            Value::Float(f64::NAN),
            Value::from("a \"q\"\n"),
            Value::Bytes(vec![0, 255]),
        ];
        let mut out = scalars.clone();
        out.push(list![]);
        out.push(Value::Map(vec![]));
        out.push(Value::List(scalars.clone()));
        out.push(Value::Map(
            scalars
                .iter()
                .enumerate()
                .map(|(i, v)| (Str::from(format!("k{i}")), v.clone()))
                .collect(),
        ));
        for levels in [RECURSE - 1, RECURSE, RECURSE + 1, 3 * RECURSE + 2] {
            for (i, leaf) in scalars.iter().enumerate() {
                let mut v = leaf.clone();
                for l in 0..levels {
                    v = match (l + i) % 3 {
                        0 => Value::List(vec![v, Value::Int(l as i64)]),
                        1 => Value::Map(vec![("x".into(), Value::Null), ("k".into(), v)]),
                        _ => Value::List(vec![list![], v, Value::Map(vec![])]),
                    };
                }
                out.push(v);
            }
        }
        out
    }

    #[test]
    fn same_as_derived() {
        let vals = samples();
        for a in &vals {
            // (Compared through `Debug`: NaN is not equal to itself.)
            let c = a.clone();
            assert_eq!(format!("{:?}", derived(&c)), format!("{:?}", derived(a)));
            assert_eq!(format!("{a:?}"), format!("{:?}", derived(a)));
            let pretty = format!("{a:#?}");
            let want = format!("{:#?}", derived(a));
            if levels(a) <= RECURSE {
                assert_eq!(pretty, want);
            } else {
                // Deeper than RECURSE: the pretty form gives way to the compact one.
                assert!(pretty.len() < want.len(), "{pretty}");
            }
            for b in &vals {
                assert_eq!(a == b, derived(a) == derived(b), "{a} == {b}");
            }
        }
    }

    #[test]
    fn deep_clone_and_eq_past_the_recursion_limit() {
        // Differences found below the recursion limit: a key, a length, a kind, a scalar.
        let base = |leaf: Value, key: &str| {
            let mut v = leaf;
            for _ in 0..(RECURSE * 4) {
                v = Value::Map(vec![(key.into(), list![v])]);
            }
            v
        };
        let a = base(Value::Int(1), "k");
        assert_eq!(a.clone(), a);
        assert_ne!(a, base(Value::Int(1), "j"));
        assert_ne!(a, base(Value::Int(2), "k"));
        assert_ne!(a, base(list![], "k"));
        assert_ne!(a, base(Value::from("1"), "k"));
        assert_ne!(base(list![1], "k"), base(list![1, 2], "k"));
        assert_ne!(base(list![1], "k"), base(Value::Map(vec![]), "k"));
    }
}

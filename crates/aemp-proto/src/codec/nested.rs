//! Encoding values of any nesting depth without recursion, for both framings.
//!
//! The encoders recurse for the first levels (fast, and what nearly every message needs)
//! and hand anything deeper to [`encode_nested`], which walks the value with an explicit
//! stack, so no depth can overflow the thread's stack. What differs between the framings
//! (heads or brackets, separators, keys) is a [`Nesting`].

use crate::value::{Str, Value};

/// What a framing writes around the elements of lists and maps.
pub(super) trait Nesting {
    /// Opens a list of `len` elements.
    fn open_list(len: usize, out: &mut Vec<u8>);
    /// Opens a map of `len` entries.
    fn open_map(len: usize, out: &mut Vec<u8>);
    /// Writes a value that is neither list nor map.
    fn scalar(v: &Value, out: &mut Vec<u8>);
    /// Before every element of a list or entry of a map but the first.
    fn separator(out: &mut Vec<u8>);
    /// Writes a map key (and what stands between it and its value).
    fn key(k: &str, out: &mut Vec<u8>);
    /// Closes a list.
    fn close_list(out: &mut Vec<u8>);
    /// Closes a map.
    fn close_map(out: &mut Vec<u8>);
}

/// The elements of a container still to be written.
enum Items<'a> {
    List(std::slice::Iter<'a, Value>),
    Map(std::slice::Iter<'a, (Str, Value)>),
}

/// An open container: what is left of it, and whether an element was written already.
struct Open<'a> {
    items: Items<'a>,
    started: bool,
}

impl<'a> Open<'a> {
    /// Opens `v` and returns what is left to write of it (`None`: a scalar, written whole).
    fn new<N: Nesting>(v: &'a Value, out: &mut Vec<u8>) -> Option<Open<'a>> {
        let items = match v {
            Value::List(items) => {
                N::open_list(items.len(), out);
                Items::List(items.iter())
            }
            Value::Map(entries) => {
                N::open_map(entries.len(), out);
                Items::Map(entries.iter())
            }
            scalar => {
                N::scalar(scalar, out);
                return None;
            }
        };
        Some(Open {
            items,
            started: false,
        })
    }
}

/// Writes `v` with an explicit stack instead of recursion.
#[inline(never)]
pub(super) fn encode_nested<N: Nesting>(v: &Value, out: &mut Vec<u8>) {
    let Some(mut cur) = Open::new::<N>(v, out) else {
        return;
    };
    // `cur` is the innermost open container, `parents` the ones around it.
    let mut parents: smallvec::SmallVec<[Open<'_>; 8]> = smallvec::SmallVec::new();
    loop {
        let next = match &mut cur.items {
            Items::List(it) => it.next().map(|v| (None, v)),
            Items::Map(it) => it.next().map(|(k, v)| (Some(k), v)),
        };
        match next {
            Some((key, v)) => {
                if std::mem::replace(&mut cur.started, true) {
                    N::separator(out);
                }
                if let Some(k) = key {
                    N::key(k, out);
                }
                if let Some(inner) = Open::new::<N>(v, out) {
                    parents.push(std::mem::replace(&mut cur, inner));
                }
            }
            None => {
                match cur.items {
                    Items::List(_) => N::close_list(out),
                    Items::Map(_) => N::close_map(out),
                }
                match parents.pop() {
                    Some(p) => cur = p,
                    None => return,
                }
            }
        }
    }
}

//! The sending side of [`Limits`]: whether a peer's [`Decoder`](super::Decoder) would accept
//! a frame, decided before the frame is encoded ([`Limits::check_frame`], whose
//! documentation states the rules and the cost).
//!
//! Three passes share one iterative walk ([`walk_nested`], generic over a [`Sizer`]): an
//! upper bound from lengths ([`Bound`], per framing), the exact CBOR length ([`CborLen`],
//! lengths only) and the exact JSON length ([`JsonLen`], which reads strings for escapes).
//! The exact lengths are what the encoders write, byte for byte (tested against them).

use super::{cbor, json, Framing, Limits};
use crate::value::{Str, Value};

/// Why a frame would be refused by a receiver with the same [`Limits`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// Arrays and maps nested deeper than [`Limits::max_depth`].
    #[error(
        "message nested too deep: level {depth} reached, receivers accept at most {max} \
         (the frame array is level 1)"
    )]
    TooDeep {
        /// The level at which the check stopped (the first one beyond `max`; the message
        /// may go deeper still).
        depth: usize,
        /// The limit.
        max: usize,
    },
    /// The encoded frame is longer than [`Limits::max_message`].
    #[error(
        "message too large: {size} bytes as a {framing} frame, receivers accept at most {max}"
    )]
    TooLarge {
        /// The exact encoded size of the frame.
        size: usize,
        /// The limit.
        max: usize,
        /// The framing the size was computed for.
        framing: Framing,
    },
}

/// How a pass over a frame counts bytes: the frame's own (array head or brackets, port
/// name, separators), each value's (for a list or map: its head or brackets and separators;
/// its elements are counted as values of their own), and each map key's.
trait Sizer {
    fn frame(&self, port: &str, elements: usize) -> usize;
    /// A value; for a list or map, the same as [`Sizer::list`] or [`Sizer::map`].
    fn value(&self, v: &Value) -> usize;
    fn list(&self, elements: usize) -> usize;
    fn map(&self, entries: usize) -> usize;
    fn key(&self, k: &str) -> usize;
}

/// An upper bound for either framing, from lengths only: `byte` per string byte plus
/// `string` per string, `scalar` per other value, `container` per list or map plus
/// `element` per element. Cheap: one type test and an addition per value.
struct Bound {
    byte: usize,
    string: usize,
    scalar: usize,
    container: usize,
    element: usize,
}

/// CBOR: a head is at most 9 bytes.
const CBOR_BOUND: Bound = Bound {
    byte: 1,
    string: 9,
    scalar: 9,
    container: 9,
    element: 0,
};

/// JSON: a string byte takes at most 6 (`\u00XX`), quotes 2, a number at most 24; a
/// container its brackets and at most a comma and a colon per element.
const JSON_BOUND: Bound = Bound {
    byte: json::MAX_EXPANSION,
    string: 2,
    scalar: json::MAX_NUMBER,
    container: 2,
    element: 2,
};

impl Bound {
    #[inline(always)]
    fn string(&self, len: usize) -> usize {
        len * self.byte + self.string
    }
}

impl Sizer for Bound {
    fn frame(&self, port: &str, elements: usize) -> usize {
        self.string(port.len()) + self.container + self.element * elements
    }

    #[inline(always)]
    fn value(&self, v: &Value) -> usize {
        match v {
            Value::Str(s) => self.string(s.len()),
            Value::Bytes(b) => self.string(b.len()),
            Value::List(items) => self.list(items.len()),
            Value::Map(entries) => self.map(entries.len()),
            _ => self.scalar,
        }
    }

    #[inline(always)]
    fn list(&self, elements: usize) -> usize {
        self.container + self.element * elements
    }

    #[inline(always)]
    fn map(&self, entries: usize) -> usize {
        self.container + self.element * entries
    }

    #[inline(always)]
    fn key(&self, k: &str) -> usize {
        self.string(k.len())
    }
}

/// The exact CBOR length (lengths only: strings are not read).
struct CborLen;

impl Sizer for CborLen {
    fn frame(&self, port: &str, elements: usize) -> usize {
        cbor::head_len(elements as u64 + 1) + self.key(port)
    }

    fn value(&self, v: &Value) -> usize {
        cbor::scalar_len(v)
    }

    fn list(&self, elements: usize) -> usize {
        cbor::head_len(elements as u64)
    }

    fn map(&self, entries: usize) -> usize {
        cbor::head_len(entries as u64)
    }

    fn key(&self, k: &str) -> usize {
        cbor::head_len(k.len() as u64) + k.len()
    }
}

/// The exact JSON length (reads every string, for its escapes).
struct JsonLen;

impl Sizer for JsonLen {
    fn frame(&self, port: &str, elements: usize) -> usize {
        // `[`, the port name, a comma before each element, `]`.
        json::str_len(port) + elements + 2
    }

    fn value(&self, v: &Value) -> usize {
        match v {
            Value::List(items) => self.list(items.len()),
            Value::Map(entries) => self.map(entries.len()),
            _ => json::scalar_len(v),
        }
    }

    fn list(&self, elements: usize) -> usize {
        // Brackets and the commas between elements.
        2 + elements.saturating_sub(1)
    }

    fn map(&self, entries: usize) -> usize {
        // Braces and the commas between entries (colons go with the keys).
        2 + entries.saturating_sub(1)
    }

    fn key(&self, k: &str) -> usize {
        // The key and its colon.
        json::str_len(k) + 1
    }
}

/// What the inline fast path of [`Limits::check_frame`] allows per value of a flat frame,
/// beyond 6 bytes per string byte: a JSON number (24) or a CBOR head (9), a separator, and
/// for the frame itself brackets or an array head. Generous on purpose: it only decides
/// whether the exact check must run.
const FLAT_VALUE_MAX: usize = 32;

/// The elements of a container still to be visited.
enum Pending<'a> {
    List(std::slice::Iter<'a, Value>),
    Map(std::slice::Iter<'a, (Str, Value)>),
}

/// The first pass of [`Limits::check_frame`] (beyond its inline fast path): an upper bound
/// of the frame's length with the weights `b`, refusing containers nested beyond
/// `max_depth` (the frame is level 1).
///
/// The top level only sums string lengths and counts values; lists and maps are walked with
/// an explicit stack. Additions cannot overflow: every byte counted belongs to a string in
/// memory (values own their strings), and the weights are at most 24, so totals stay far
/// below `usize::MAX` on any address space.
fn bound(b: &Bound, port: &str, msg: &[Value], max_depth: usize) -> Result<usize, LimitError> {
    if max_depth == 0 {
        return Err(LimitError::TooDeep { depth: 1, max: 0 });
    }
    let (mut bytes, mut strings, mut scalars, mut nested) = (port.len(), 1, 0, 0);
    for v in msg {
        match v {
            Value::Str(s) => {
                bytes += s.len();
                strings += 1;
            }
            Value::Bytes(x) => {
                bytes += x.len();
                strings += 1;
            }
            Value::List(_) | Value::Map(_) => {
                nested += walk_nested(b, v, max_depth).ok_or(LimitError::TooDeep {
                    depth: max_depth + 1,
                    max: max_depth,
                })?
            }
            _ => scalars += 1,
        }
    }
    Ok(b.byte * bytes
        + b.string * strings
        + b.scalar * scalars
        + b.container
        + b.element * msg.len()
        + nested)
}

/// Counts the frame `[port, msg…]` with `sizer`, refusing containers nested beyond
/// `max_depth` (the frame is level 1).
fn walk<S: Sizer>(
    sizer: &S,
    port: &str,
    msg: &[Value],
    max_depth: usize,
) -> Result<usize, LimitError> {
    if max_depth == 0 {
        return Err(LimitError::TooDeep { depth: 1, max: 0 });
    }
    let mut total = sizer.frame(port, msg.len());
    for v in msg {
        total += match v {
            Value::List(_) | Value::Map(_) => {
                walk_nested(sizer, v, max_depth).ok_or(LimitError::TooDeep {
                    depth: max_depth + 1,
                    max: max_depth,
                })?
            }
            _ => sizer.value(v),
        };
    }
    Ok(total)
}

/// Counts a list or map that is a message element (level 2) and everything in it, with an
/// explicit stack; `None` when something is nested beyond `max_depth` (the first level
/// beyond it is then `max_depth + 1`).
#[inline(never)]
fn walk_nested<S: Sizer>(sizer: &S, first: &Value, max_depth: usize) -> Option<usize> {
    let (mut total, mut cur) = match first {
        Value::List(items) => (sizer.list(items.len()), Pending::List(items.iter())),
        Value::Map(entries) => (sizer.map(entries.len()), Pending::Map(entries.iter())),
        scalar => return Some(sizer.value(scalar)),
    };
    if max_depth < 2 {
        return None;
    }
    // `cur` is the innermost open container (kept out of the stack: most steps touch only
    // it), at level `parents.len() + 2`; `parents` are the ones around it.
    let mut parents: smallvec::SmallVec<[Pending<'_>; 8]> = smallvec::SmallVec::new();
    loop {
        let next = match &mut cur {
            Pending::List(it) => it.next(),
            Pending::Map(it) => it.next().map(|(k, v)| {
                total += sizer.key(k);
                v
            }),
        };
        let Some(v) = next else {
            match parents.pop() {
                Some(p) => cur = p,
                None => return Some(total),
            }
            continue;
        };
        let inner = match v {
            Value::List(items) => {
                total += sizer.list(items.len());
                Pending::List(items.iter())
            }
            Value::Map(entries) => {
                total += sizer.map(entries.len());
                Pending::Map(entries.iter())
            }
            scalar => {
                total += sizer.value(scalar);
                continue;
            }
        };
        if parents.len() + 3 > max_depth {
            return None;
        }
        parents.push(std::mem::replace(&mut cur, inner));
    }
}

/// A cheap upper bound of the CBOR length of the frame `[port, msg…]`, from lengths only
/// (no string is read): what a message queued for a node that is not connected yet counts
/// against the send queue limit ([`crate::peers`]). One type test and an addition per value;
/// nested lists and maps are walked without recursion, at any depth.
pub fn frame_size_estimate(port: &str, msg: &[Value]) -> usize {
    // With a depth bound this large nothing is refused (values cannot nest deeper than the
    // memory they take), so the bound is always computed.
    bound(&CBOR_BOUND, port, msg, usize::MAX / 2).unwrap_or(usize::MAX)
}

/// The exact length of the frame in `framing`, its depth checked.
fn exact_len(
    framing: Framing,
    port: &str,
    msg: &[Value],
    max_depth: usize,
) -> Result<usize, LimitError> {
    match framing {
        Framing::Cbor => walk(&CborLen, port, msg, max_depth),
        Framing::Json => walk(&JsonLen, port, msg, max_depth),
    }
}

impl Limits {
    /// Checks that a receiver enforcing these limits accepts the frame `[port, msg…]` sent
    /// in `framing`, before it is encoded: a receiver closes the whole connection on a frame
    /// it refuses, so a sender must never write one.
    ///
    /// * Depth: lists and maps nested more than [`Limits::max_depth`] levels (at most
    ///   [`MAX_DEPTH_CAP`](super::MAX_DEPTH_CAP)), the frame array counting as level 1: with
    ///   the default, a scalar inside 63 nested lists is the deepest message element.
    /// * Size: the encoded frame longer than [`Limits::max_message`] bytes in `framing`. The
    ///   size is exact for both framings, so the frame the check accepts is accepted by the
    ///   [`Decoder`](super::Decoder) and one byte more is refused.
    ///
    /// Never recurses, whatever the depth of `msg` (lists and maps are walked with an
    /// explicit stack, which stops at the first level beyond the limit).
    ///
    /// Cost: a flat message (no list or map) whose strings add up to well below the limit
    /// costs a type test and an addition per element, inline, reading no string. Otherwise
    /// a pass over all values computes the depth and an upper bound of the size from
    /// lengths; only if that bound exceeds the limit (within a few bytes per value for CBOR,
    /// a factor of six for JSON, which assumes every string byte escaped) does a second pass
    /// compute the exact size (for JSON it reads every string).
    ///
    /// ```
    /// use aemp_proto::codec::{Framing, LimitError, Limits};
    /// use aemp_proto::{msg, Value};
    /// let limits = Limits::default();
    /// assert!(limits.check_frame(Framing::Cbor, "port", msg!["tag", 1].as_slice()).is_ok());
    /// // A scalar in 64 nested lists: with the frame, 65 levels.
    /// let mut deep = Value::Null;
    /// for _ in 0..64 {
    ///     deep = Value::List(vec![deep]);
    /// }
    /// let err = limits.check_frame(Framing::Cbor, "port", &[deep]).unwrap_err();
    /// assert_eq!(err, LimitError::TooDeep { depth: 65, max: 64 });
    /// ```
    #[inline]
    pub fn check_frame(
        &self,
        framing: Framing,
        port: &str,
        msg: &[Value],
    ) -> Result<(), LimitError> {
        // The common case, inline: a flat message far below the size limit. Only string
        // lengths are summed; a list or map, or a total near the limit, takes the full check.
        let mut bytes = port.len();
        for v in msg {
            match v {
                Value::Str(s) => bytes += s.len(),
                Value::Bytes(b) => bytes += b.len(),
                Value::List(_) | Value::Map(_) => return self.check_walk(framing, port, msg),
                _ => {}
            }
        }
        // In either framing a string takes at most 6 bytes per byte plus 9, any other value
        // at most 24, plus a separator; the frame's own brackets or head fit the slack of
        // the port name's entry. (No overflow: see `bound`.)
        if bytes * json::MAX_EXPANSION + (msg.len() + 1) * FLAT_VALUE_MAX <= self.max_message
            && self.max_depth > 0
        {
            return Ok(());
        }
        self.check_walk(framing, port, msg)
    }

    /// [`Limits::check_frame`] for a frame of strings only, `[port, parts…]`, without
    /// building [`Value`]s in the common case: the requests a node makes of user-given
    /// names (`["", "mon1", name]`, `["", "g_find", node]`, `["", "g_mon1", family]`).
    ///
    /// ```
    /// use aemp_proto::codec::{Framing, Limits};
    /// let small = Limits { max_message: 64, ..Limits::default() };
    /// assert!(small.check_flat(Framing::Cbor, "", &["mon1", "port"]).is_ok());
    /// assert!(small.check_flat(Framing::Cbor, "", &["mon1", &"x".repeat(64)]).is_err());
    /// ```
    #[inline]
    pub fn check_flat(
        &self,
        framing: Framing,
        port: &str,
        parts: &[&str],
    ) -> Result<(), LimitError> {
        let bytes = port.len() + parts.iter().map(|p| p.len()).sum::<usize>();
        if bytes * json::MAX_EXPANSION + (parts.len() + 1) * FLAT_VALUE_MAX <= self.max_message
            && self.max_depth > 0
        {
            return Ok(());
        }
        let msg: Vec<Value> = parts.iter().map(|p| Value::from(*p)).collect();
        self.check_walk(framing, port, &msg)
    }

    /// [`Limits::check_frame`] beyond its inline fast path: the depth and bound pass, then
    /// the exact size if the bound is above the limit.
    #[inline(never)]
    fn check_walk(&self, framing: Framing, port: &str, msg: &[Value]) -> Result<(), LimitError> {
        let max_depth = self.depth();
        let bound = match framing {
            Framing::Cbor => bound(&CBOR_BOUND, port, msg, max_depth)?,
            Framing::Json => bound(&JSON_BOUND, port, msg, max_depth)?,
        };
        let max = self.max_message;
        if bound <= max {
            return Ok(());
        }
        let size = exact_len(framing, port, msg, max_depth)?;
        if size > max {
            return Err(LimitError::TooLarge { size, max, framing });
        }
        Ok(())
    }

    /// The exact encoded length of the frame `[port, msg…]` in `framing`, without encoding
    /// it; `None` when it is nested deeper than these limits allow (then it is never
    /// encoded, so its length does not matter).
    pub fn frame_len(&self, framing: Framing, port: &str, msg: &[Value]) -> Option<usize> {
        exact_len(framing, port, msg, self.depth()).ok()
    }
}

#[cfg(test)]
mod tests;

//! The dynamic value type that messages are made of.
//!
//! AEMP messages are lists of "simple" values: what JSON and CBOR can both carry.
//! [`Value`] is that model, with two refinements the wire needs:
//!
//! * integers cover the whole `i64` **and** `u64` range (CBOR major types 0/1 go up to
//!   `u64::MAX`; Perl emits such values). Invariant: [`Value::UInt`] only ever holds values
//!   above `i64::MAX`; everything that fits an `i64` is a [`Value::Int`]. The `From`
//!   conversions and the decoders keep this, so derived equality is numeric equality.
//! * Perl byte strings may hold bytes that are not UTF-8 (Latin-1, binary). Those decode to
//!   [`Value::Bytes`]; every byte or text string that *is* valid UTF-8 becomes a
//!   [`Value::Str`], because Perl does not distinguish them for ASCII.
//!
//! A [`Msg`] is the non-empty list that travels to a port; its first element is by
//! convention the tag string.
//!
//! # Deeply nested values
//!
//! Nothing stops a program from building a value nested a million levels deep, but peers
//! refuse anything deeper than [`Limits::max_depth`](crate::codec::Limits) (64 by default),
//! and senders refuse to send it ([`Limits::check_frame`](crate::codec::Limits::check_frame)).
//! What works at any depth, without recursion past a few dozen levels: that check, the
//! encoders, [`Value`]'s and [`Msg`]'s `Display`, `Debug`, `Clone` and `==` (recursive for
//! the first 32 levels, then with an explicit stack; `{:#?}` prints what lies deeper on one
//! line), and [`drop_nested`]. What recurses once per level: an ordinary drop (a `Drop`
//! implementation on [`Value`] would forbid moving out of its variants) and serde's
//! (de)serialisation of a [`Value`]. Values that come out of a decoder or passed the check
//! are at most [`MAX_DEPTH_CAP`](crate::codec::MAX_DEPTH_CAP) levels deep, for which all of
//! these are safe.

use compact_str::CompactString;
use std::fmt;
use std::mem::MaybeUninit;

mod deep;

/// Inline-optimised string used for every string in a [`Value`] (tags, port IDs and map
/// keys are short, so most never allocate).
pub type Str = CompactString;

/// One dynamically typed value of a message.
///
/// `Clone`, `==` and `Debug` work at any nesting depth (see the [module docs](self)); a
/// value is dropped without recursion by [`drop_nested`].
///
/// The layout is `#[repr(C, u8)]` (a byte for the variant, then its fields at the value's
/// alignment) so that the decoders can write a string value in two stores (see
/// `Value::write_str`).
#[derive(Default)]
#[repr(C, u8)]
pub enum Value {
    /// JSON `null`, CBOR null (Perl `undef`).
    #[default]
    Null,
    /// A real boolean.
    Bool(bool),
    /// Any integer that fits an `i64`.
    Int(i64),
    /// An integer above `i64::MAX` (invariant: never `<= i64::MAX`).
    UInt(u64),
    /// A floating point number.
    Float(f64),
    /// A UTF-8 string (CBOR text or byte string that is valid UTF-8, JSON string).
    Str(Str) = STR_TAG,
    /// A byte string that is not valid UTF-8.
    Bytes(Vec<u8>),
    /// An ordered list.
    List(Vec<Value>),
    /// A map with string keys, in the order received or inserted.
    Map(Vec<(Str, Value)>),
}

/// The variant byte of [`Value::Str`] (the variants before it are numbered from 0).
const STR_TAG: u8 = 5;

impl Value {
    /// Writes `Value::Str(s)` into `slot` as its two parts, the string where a string
    /// variant's field goes and then the variant byte, and returns the value.
    ///
    /// What this is for: written whole, a value is built in a temporary on the stack (the
    /// variant byte, then the string's words) and copied out with two 16-byte loads, the
    /// first covering the variant byte and the start of the string, which the processor
    /// cannot forward from those narrower stores: a stall of a dozen cycles or more, the
    /// most sampled instructions of both decoders' frame parsers (`perf annotate` of R1's
    /// receiver) until string values were written this way.
    #[allow(unsafe_code)]
    #[inline(always)]
    pub(crate) fn write_str(slot: &mut MaybeUninit<Value>, s: Str) -> &mut Value {
        let p = slot.as_mut_ptr().cast::<u8>();
        // SAFETY: `Value` is `#[repr(C, u8)]`, whose layout is defined (the primitive
        // representation of enums with fields): a `u8` variant byte followed by a
        // `#[repr(C)]` union of one `#[repr(C)]` struct per variant holding its fields. The
        // union starts at the next multiple of its alignment after the byte, which is the
        // alignment of `Value` (the byte's is 1); `Str` is the first and only field of its
        // struct, so it starts there too, suitably aligned for it (`Value`'s alignment is at
        // least `Str`'s). `STR_TAG` is `Value::Str`'s variant byte (its declared
        // discriminant). Writing both initializes the slot as a `Value::Str(s)`.
        unsafe {
            p.add(std::mem::align_of::<Value>()).cast::<Str>().write(s);
            p.write(STR_TAG);
            slot.assume_init_mut()
        }
    }

    /// The string, if this is a [`Value::Str`].
    #[inline]
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The value as an `i64`, if it is an integer in range (floats are not converted).
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::Int(i) => Some(i),
            _ => None,
        }
    }

    /// The value as a `u64`, if it is a non-negative integer.
    #[inline]
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::Int(i) if i >= 0 => Some(i as u64),
            Value::UInt(u) => Some(u),
            _ => None,
        }
    }

    /// The value as an `f64` (integers are converted).
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::Float(f) => Some(f),
            Value::Int(i) => Some(i as f64),
            Value::UInt(u) => Some(u as f64),
            _ => None,
        }
    }

    /// The list, if this is a [`Value::List`].
    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }

    /// The map entries, if this is a [`Value::Map`].
    pub fn as_map(&self) -> Option<&[(Str, Value)]> {
        match self {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// Looks up a key in a map value (linear; maps on the wire are small).
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// True for `null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Perl's idea of truth, which is how booleans arrive from Perl peers
    ///: `null`, `false`, `0`, `0.0`, `""` and `"0"` are false.
    pub fn is_truthy(&self) -> bool {
        match self {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::UInt(_) => true,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !(s.is_empty() || s == "0"),
            Value::Bytes(b) => !(b.is_empty() || b == b"0"),
            Value::List(_) | Value::Map(_) => true,
        }
    }

    /// Short name of the variant, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::UInt(_) => "integer",
            Value::Float(_) => "float",
            Value::Str(_) => "string",
            Value::Bytes(_) => "bytes",
            Value::List(_) => "list",
            Value::Map(_) => "map",
        }
    }

    /// Builds a string value, or [`Value::Bytes`] when `bytes` is not valid UTF-8.
    /// This is how both CBOR string kinds are read.
    pub fn from_wire_bytes(bytes: &[u8]) -> Value {
        match aemp_text::str_from_utf8(bytes) {
            Ok(s) => Value::Str(Str::from(s)),
            Err(_) => Value::Bytes(bytes.to_vec()),
        }
    }
}

macro_rules! from_signed {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Value { Value::Int(v as i64) }
        }
    )*};
}
from_signed!(i8, i16, i32, i64, u8, u16, u32);

impl From<u64> for Value {
    fn from(v: u64) -> Value {
        if v <= i64::MAX as u64 {
            Value::Int(v as i64)
        } else {
            Value::UInt(v)
        }
    }
}

impl From<usize> for Value {
    fn from(v: usize) -> Value {
        Value::from(v as u64)
    }
}

impl From<isize> for Value {
    fn from(v: isize) -> Value {
        Value::Int(v as i64)
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Value {
        Value::Float(v)
    }
}

impl From<f32> for Value {
    fn from(v: f32) -> Value {
        Value::Float(v as f64)
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Bool(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Str(Str::from(v))
    }
}

impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Str(Str::from(v))
    }
}

impl From<&String> for Value {
    fn from(v: &String) -> Value {
        Value::Str(Str::from(v.as_str()))
    }
}

impl From<Str> for Value {
    fn from(v: Str) -> Value {
        Value::Str(v)
    }
}

impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Value {
        Value::Bytes(v)
    }
}

impl From<Vec<Value>> for Value {
    fn from(v: Vec<Value>) -> Value {
        Value::List(v)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}

impl From<()> for Value {
    fn from(_: ()) -> Value {
        Value::Null
    }
}

impl From<Msg> for Value {
    fn from(m: Msg) -> Value {
        Value::List(m.0.into_vec())
    }
}

impl fmt::Display for Value {
    /// Compact JSON-like rendering, for logs and the CLI (bytes are shown as hex). Written
    /// with an explicit stack: any depth renders without recursion.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::List(items) => display_nested(Open::List(items.iter(), false), f),
            Value::Map(entries) => display_nested(Open::Map(entries.iter(), false), f),
            scalar => display_scalar(scalar, f),
        }
    }
}

fn display_scalar(v: &Value, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match v {
        Value::Null => f.write_str("null"),
        Value::Bool(b) => write!(f, "{b}"),
        Value::Int(i) => write!(f, "{i}"),
        Value::UInt(u) => write!(f, "{u}"),
        Value::Float(x) => write!(f, "{x:?}"),
        Value::Str(s) => write!(f, "{:?}", s.as_str()),
        Value::Bytes(b) => {
            f.write_str("h'")?;
            for byte in b {
                write!(f, "{byte:02x}")?;
            }
            f.write_str("'")
        }
        Value::List(_) => f.write_str("[..]"),
        Value::Map(_) => f.write_str("{..}"),
    }
}

/// A container being rendered: what is left of it, and whether an element was written.
enum Open<'a> {
    List(std::slice::Iter<'a, Value>, bool),
    Map(std::slice::Iter<'a, (Str, Value)>, bool),
}

/// Renders a container and everything in it without recursion.
fn display_nested(first: Open<'_>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let mut stack = vec![first];
    f.write_str(match stack[0] {
        Open::List(..) => "[",
        Open::Map(..) => "{",
    })?;
    while let Some(top) = stack.last_mut() {
        let (next, started, close) = match top {
            Open::List(it, started) => (it.next().map(|v| (None, v)), started, "]"),
            Open::Map(it, started) => (it.next().map(|(k, v)| (Some(k), v)), started, "}"),
        };
        let Some((key, v)) = next else {
            f.write_str(close)?;
            stack.pop();
            continue;
        };
        if std::mem::replace(started, true) {
            f.write_str(",")?;
        }
        if let Some(k) = key {
            write!(f, "{:?}:", k.as_str())?;
        }
        match v {
            Value::List(items) => {
                f.write_str("[")?;
                stack.push(Open::List(items.iter(), false));
            }
            Value::Map(entries) => {
                f.write_str("{")?;
                stack.push(Open::Map(entries.iter(), false));
            }
            scalar => display_scalar(scalar, f)?,
        }
    }
    Ok(())
}

/// Drops values of any nesting depth without recursion.
///
/// Dropping a [`Value`] the ordinary way recurses once per nesting level, so a value nested
/// hundreds of thousands of levels deep (which no decoder produces, but a program can build)
/// overflows the thread's stack when it goes out of scope. This takes the containers apart
/// with an explicit stack instead. `aemp` uses it wherever it drops a value that was not
/// checked against [`Limits`](crate::codec::Limits) (a refused message); a value that
/// passed the check, or came out of a decoder, is at most
/// [`MAX_DEPTH_CAP`](crate::codec::MAX_DEPTH_CAP) levels deep and drops normally.
///
/// Takes anything that yields values: a [`Msg`], a `Vec<Value>`, or `[value]`.
///
/// ```
/// use aemp_proto::value::{drop_nested, Value};
/// let mut v = Value::Null;
/// for _ in 0..1_000_000 {
///     v = Value::List(vec![v]);
/// }
/// drop_nested([v]); // `drop(v)` would overflow the stack
/// ```
pub fn drop_nested(values: impl IntoIterator<Item = Value>) {
    let is_container = |v: &Value| matches!(v, Value::List(_) | Value::Map(_));
    // Containers only: scalars are dropped on the spot.
    let mut stack: Vec<Value> = values.into_iter().filter(is_container).collect();
    while let Some(mut v) = stack.pop() {
        match &mut v {
            Value::List(items) => stack.extend(items.drain(..).filter(is_container)),
            Value::Map(entries) => {
                stack.extend(entries.drain(..).map(|(_, v)| v).filter(is_container))
            }
            _ => {}
        }
        // `v` holds no container any more: dropping it does not recurse.
    }
}

/// The element storage of a [`Msg`]: up to [`MSG_INLINE`] values are stored inline, so the
/// typical small message (a tag and one or two arguments) costs no allocation between sender
/// and handler.
pub type MsgVec = smallvec::SmallVec<[Value; MSG_INLINE]>;

/// Gives `items`, a new and empty message, room for `n` elements: on the heap at once
/// when they do not fit inline (`SmallVec`'s general growth, which also moves inline
/// elements out, was 2% of R1's receive CPU).
#[inline(always)]
pub(crate) fn reserve_new(items: &mut MsgVec, n: usize) {
    debug_assert!(items.is_empty());
    if n > MSG_INLINE {
        *items = MsgVec::from_vec(Vec::with_capacity(n));
    }
}

/// How many elements a [`Msg`] holds without allocating.
pub const MSG_INLINE: usize = 2;

/// A message: the non-empty list of values sent to a port.
///
/// Element 0 is by convention the tag string that `rcv` matches on. On the wire the
/// destination port name is prepended; that happens in the framing layer,
/// never here.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Msg(pub MsgVec);

impl Msg {
    /// An empty message (only useful as a builder start; `snd` refuses empty messages).
    pub fn new() -> Msg {
        Msg(MsgVec::new())
    }

    /// Message with room for `n` elements.
    pub fn with_capacity(n: usize) -> Msg {
        Msg(MsgVec::with_capacity(n))
    }

    /// Appends one element (builder style).
    pub fn push(&mut self, v: impl Into<Value>) {
        self.0.push(v.into());
    }

    /// The tag: element 0 if it is a string.
    #[inline]
    pub fn tag(&self) -> Option<&str> {
        self.0.first().and_then(Value::as_str)
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when the message has no element.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The elements.
    pub fn as_slice(&self) -> &[Value] {
        &self.0
    }

    /// Element `i`, if present.
    #[inline]
    pub fn get(&self, i: usize) -> Option<&Value> {
        self.0.get(i)
    }

    /// Consumes the message and returns its elements.
    pub fn into_vec(self) -> Vec<Value> {
        self.0.into_vec()
    }
}

impl From<Vec<Value>> for Msg {
    fn from(v: Vec<Value>) -> Msg {
        Msg(MsgVec::from_vec(v))
    }
}

impl FromIterator<Value> for Msg {
    fn from_iter<I: IntoIterator<Item = Value>>(it: I) -> Msg {
        Msg(it.into_iter().collect())
    }
}

impl std::ops::Index<usize> for Msg {
    type Output = Value;
    fn index(&self, i: usize) -> &Value {
        &self.0[i]
    }
}

impl IntoIterator for Msg {
    type Item = Value;
    type IntoIter = smallvec::IntoIter<[Value; MSG_INLINE]>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl fmt::Display for Msg {
    /// Renders the elements as a list, like [`Value`]'s `Display`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        display_nested(Open::List(self.0.iter(), false), f)
    }
}

#[doc(hidden)]
pub use smallvec::smallvec as __smallvec;

/// Builds a [`Msg`] from anything convertible into [`Value`]s, as short as Perl's list:
///
/// ```
/// use aemp_proto::{msg, Value};
/// let m = msg!["ping", 1, 2.5, true];
/// assert_eq!(m.tag(), Some("ping"));
/// assert_eq!(m[1], Value::Int(1));
/// ```
#[macro_export]
macro_rules! msg {
    ($($e:expr),* $(,)?) => {
        $crate::value::Msg($crate::value::__smallvec![$($crate::value::Value::from($e)),*])
    };
}

/// Builds a [`Value::List`] the same way as [`msg!`].
#[macro_export]
macro_rules! list {
    ($($e:expr),* $(,)?) => {
        $crate::value::Value::List(::std::vec![$($crate::value::Value::from($e)),*])
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_str_makes_a_string_value() {
        use aemp_text::PushWith;
        let long = "longer than the twenty-four bytes kept inline";
        let mut v: Vec<Value> = Vec::new();
        let mut m = MsgVec::new();
        for s in ["", "tag", long] {
            v.push_init(|slot| Value::write_str(slot, Str::from(s)));
            m.push_init(|slot| Value::write_str(slot, Str::from(s)));
        }
        let want = [Value::from(""), Value::from("tag"), Value::from(long)];
        assert_eq!(v, want);
        assert_eq!(m.as_slice(), want);
        assert_eq!(v[2].as_str(), Some(long));
    }

    #[test]
    fn integer_invariant() {
        assert_eq!(Value::from(5u64), Value::Int(5));
        assert_eq!(Value::from(u64::MAX), Value::UInt(u64::MAX));
        assert_eq!(Value::from(i64::MAX as u64), Value::Int(i64::MAX));
        assert_eq!(Value::from(i64::MIN), Value::Int(i64::MIN));
    }

    #[test]
    fn wire_bytes() {
        assert_eq!(Value::from_wire_bytes(b"abc"), Value::from("abc"));
        assert_eq!(
            Value::from_wire_bytes(&[0xff, 0x00]),
            Value::Bytes(vec![0xff, 0])
        );
    }

    #[test]
    fn truthiness_follows_perl() {
        for v in [
            Value::Null,
            Value::from(""),
            Value::from("0"),
            Value::Int(0),
            Value::Bool(false),
        ] {
            assert!(!v.is_truthy(), "{v} should be false");
        }
        for v in [Value::from("1"), Value::Int(1), Value::Bool(true)] {
            assert!(v.is_truthy(), "{v} should be true");
        }
    }

    /// A string inside `levels` nested lists.
    fn deep(levels: usize) -> Value {
        let mut v = Value::from("x");
        for _ in 0..levels {
            v = Value::List(vec![v]);
        }
        v
    }

    #[test]
    fn nested_values_display_like_json() {
        let v = Value::Map(vec![
            ("a".into(), list![1, list![], Value::Map(vec![])]),
            ("b\"".into(), list!["x", Value::Bytes(vec![0xff, 1])]),
        ]);
        assert_eq!(v.to_string(), r#"{"a":[1,[],{}],"b\"":["x",h'ff01']}"#);
        assert_eq!(
            msg![v, 2.5].to_string(),
            r#"[{"a":[1,[],{}],"b\"":["x",h'ff01']},2.5]"#
        );
        assert_eq!(Msg::new().to_string(), "[]");
    }

    #[test]
    fn deep_values_display_and_drop_without_recursion() {
        assert_eq!(deep(2).to_string(), r#"[["x"]]"#);
        let v = deep(1_000_000);
        let text = v.to_string();
        // Dropped first: a failed assertion must not drop it the ordinary way.
        drop_nested([v]);
        assert_eq!(text.len(), 2_000_003);
        assert_eq!(&text[999_998..1_000_005], r#"[["x"]]"#);
        // A map nesting, a wide list of deep values, a message.
        let mut m = Value::Null;
        for _ in 0..1_000_000 {
            m = Value::Map(vec![("k".into(), m), ("s".into(), "t".into())]);
        }
        drop_nested(vec![m, deep(100_000), Value::Null, deep(3)]);
        drop_nested(msg!["tag", deep(1_000_000)]);
    }

    /// Runs `f` on a thread with a 256 KiB stack (a derived, recursive `Clone`, `==` or
    /// `Debug` overflows it long before a million levels).
    fn on_small_stack(f: impl FnOnce() + Send + 'static) {
        std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(f)
            .unwrap()
            .join()
            .expect("no stack overflow");
    }

    /// A million levels of lists with a map every other level, and a string at the bottom.
    fn deep_mixed(levels: usize, leaf: &str) -> Value {
        let mut v = Value::from(leaf);
        for i in 0..levels {
            v = if i % 2 == 0 {
                Value::List(vec![Value::Int(i as i64), v])
            } else {
                Value::Map(vec![("k".into(), v), ("n".into(), Value::Null)])
            };
        }
        v
    }

    #[test]
    fn deep_values_clone_without_recursion() {
        on_small_stack(|| {
            let v = deep_mixed(1_000_000, "x");
            let c = v.clone();
            let same = c.to_string() == v.to_string();
            drop_nested([v, c]);
            assert!(same, "the clone reads the same");
        });
    }

    #[test]
    fn deep_values_compare_without_recursion() {
        on_small_stack(|| {
            let a = deep_mixed(1_000_000, "x");
            let b = deep_mixed(1_000_000, "x");
            let c = deep_mixed(1_000_000, "y");
            let d = deep_mixed(999_999, "x");
            let (ma, mb) = (msg!["t", a.clone()], msg!["t", b.clone()]);
            let results = (a == b, a == c, a != c, a == d, ma == mb);
            drop_nested([a, b, c, d]);
            drop_nested(ma.into_iter().chain(mb));
            assert_eq!(results, (true, false, true, false, true));
        });
    }

    #[test]
    fn deep_values_debug_without_recursion() {
        on_small_stack(|| {
            let v = deep_mixed(1_000_000, "x");
            let plain = format!("{v:?}");
            let pretty = format!("{v:#?}");
            let m = format!("{:?}", msg!["t", Value::Null]);
            drop_nested([v]);
            assert!(plain.starts_with("Map([(\"k\", List([Int(999998), Map([(\"k\", "));
            assert!(plain.contains("Map([(\"k\", List([Int(0), Str(\"x\")])), (\"n\", Null)])"));
            assert!(plain.ends_with("Null)])])), (\"n\", Null)])"));
            assert!(pretty.starts_with("Map(\n    [\n        (\n            \"k\",\n"));
            assert!(pretty.contains("Str(\"x\")"));
            assert_eq!(m, r#"Msg([Str("t"), Null])"#);
        });
    }

    #[test]
    fn msg_macro() {
        let m = msg!["a", 1u64, -2, "x".to_string(), Value::Null];
        assert_eq!(m.len(), 5);
        assert_eq!(m.tag(), Some("a"));
        assert_eq!(m.to_string(), r#"["a",1,-2,"x",null]"#);
    }
}

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
//!   [`Value::Str`], because Perl does not distinguish them for ASCII (PROTOCOL.md §2.7).
//!
//! A [`Msg`] is the non-empty list that travels to a port; its first element is by
//! convention the tag string.

use compact_str::CompactString;
use std::fmt;

/// Inline-optimised string used for every string in a [`Value`] (tags, port IDs and map
/// keys are short, so most never allocate).
pub type Str = CompactString;

/// One dynamically typed value of a message.
#[derive(Clone, Debug, PartialEq, Default)]
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
    Str(Str),
    /// A byte string that is not valid UTF-8.
    Bytes(Vec<u8>),
    /// An ordered list.
    List(Vec<Value>),
    /// A map with string keys, in the order received or inserted.
    Map(Vec<(Str, Value)>),
}

impl Value {
    /// The string, if this is a [`Value::Str`].
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
    /// (PROTOCOL.md §3.3, §10.21): `null`, `false`, `0`, `0.0`, `""` and `"0"` are false.
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
        match std::str::from_utf8(bytes) {
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
    /// Compact JSON-like rendering, for logs and the CLI (bytes are shown as hex).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
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
            Value::List(l) => {
                f.write_str("[")?;
                for (i, v) in l.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
            Value::Map(m) => {
                f.write_str("{")?;
                for (i, (k, v)) in m.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{:?}:{v}", k.as_str())?;
                }
                f.write_str("}")
            }
        }
    }
}

/// The element storage of a [`Msg`]: up to [`MSG_INLINE`] values are stored inline, so the
/// typical small message (a tag and one or two arguments) costs no allocation between sender
/// and handler.
pub type MsgVec = smallvec::SmallVec<[Value; MSG_INLINE]>;

/// How many elements a [`Msg`] holds without allocating.
pub const MSG_INLINE: usize = 2;

/// A message: the non-empty list of values sent to a port.
///
/// Element 0 is by convention the tag string that `rcv` matches on. On the wire the
/// destination port name is prepended (PROTOCOL.md §3.2); that happens in the framing layer,
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
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&Value::List(self.0.to_vec()), f)
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

    #[test]
    fn msg_macro() {
        let m = msg!["a", 1u64, -2, "x".to_string(), Value::Null];
        assert_eq!(m.len(), 5);
        assert_eq!(m.tag(), Some("a"));
        assert_eq!(m.to_string(), r#"["a",1,-2,"x",null]"#);
    }
}

//! Serde support: typed messages to and from [`Value`] and [`Msg`].
//!
//! * [`to_value`] / [`from_value`] convert any serde type to and from the dynamic [`Value`].
//! * [`to_msg`] / [`from_msg`] do the same for whole messages. A top-level tuple, tuple
//!   struct, sequence or **struct** is the list of message elements, positionally (a struct's
//!   fields in declaration order), so `struct Ping { tag: String, seq: u64 }` is the message
//!   `["ping", 5]`. A top-level **enum** is a tagged list (see [Enums as
//!   protocols](#enums-as-protocols)). Any other top-level value becomes a one-element
//!   message.
//! * [`MsgExt::decode`] and [`ValueExt::decode`] are the same as method calls.
//! * [`Value`] and [`Msg`] implement [`Serialize`] and [`Deserialize`], so they can be fields
//!   of typed structs and convert to and from `serde_json::Value`.
//!
//! ```
//! use aemp_proto::msg;
//! use aemp_proto::typed::{to_msg, MsgExt};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, Debug, PartialEq)]
//! struct Ping {
//!     tag: String,
//!     seq: u64,
//! }
//!
//! let m = to_msg(&Ping { tag: "ping".into(), seq: 5 })?;
//! assert_eq!(m, msg!["ping", 5]);
//! let back: Ping = m.decode()?;
//! assert_eq!(back.seq, 5);
//! // A Perl peer may send the number as a string.
//! let lenient: Ping = msg!["ping", "5"].decode()?;
//! assert_eq!(lenient, back);
//! let err = msg!["ping", "five"].decode::<Ping>().unwrap_err();
//! assert_eq!(err.to_string(), r#"element 1: expected u64, found string "five""#);
//! # Ok::<(), aemp_proto::typed::TypedError>(())
//! ```
//!
//! # Enums as protocols
//!
//! An enum whose variants are the messages a port understands is sent as the tagged list a
//! Perl port matches with its `rcv` tags: the variant name first, then the variant's fields
//! in declaration order.
//!
//! | variant | message |
//! |---|---|
//! | unit `Stop` | `["Stop"]` |
//! | newtype `Echo(x)` | `["Echo", x]` (the payload is one element, whatever its type) |
//! | tuple `Ping(5, port)` | `["Ping", 5, "node#port"]` |
//! | struct `Move { x, y }` | `["Move", x, y]` (fields by position, like a top-level struct) |
//!
//! Decoding checks the tag against the variant names and the number of elements after it;
//! `Option` and `#[serde(default)]` fields may be left off the end. A one-element message
//! holding the nested form (a one-key map) still decodes. Enums *inside* a message keep the
//! nested form of the table below, and decode from either form.
//!
//! ```
//! use aemp_proto::msg;
//! use aemp_proto::typed::{to_msg, MsgExt};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, Debug, PartialEq)]
//! enum Req {
//!     Ping(u32, String),
//!     Move { x: i32, y: i32 },
//!     Stop,
//! }
//!
//! assert_eq!(to_msg(&Req::Ping(5, "n#p".into()))?, msg!["Ping", 5, "n#p"]);
//! assert_eq!(to_msg(&Req::Move { x: 1, y: 2 })?, msg!["Move", 1, 2]);
//! assert_eq!(to_msg(&Req::Stop)?, msg!["Stop"]);
//! assert_eq!(msg!["Move", 1, 2].decode::<Req>()?, Req::Move { x: 1, y: 2 });
//!
//! let err = msg!["Pong"].decode::<Req>().unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     "element 0: unknown variant `Pong`, expected one of `Ping`, `Move`, `Stop`"
//! );
//! let err = msg!["Stop", 1].decode::<Req>().unwrap_err();
//! assert_eq!(err.to_string(), "invalid length 1, expected no elements after the tag `Stop`");
//! # Ok::<(), aemp_proto::typed::TypedError>(())
//! ```
//!
//! # Shapes
//!
//! | Rust | [`Value`] |
//! |---|---|
//! | `bool`, integers, floats, `char`, `str` | `Bool`, `Int`/`UInt`, `Float`, `Str`, `Str` |
//! | bytes (`serde_bytes`) | `Str` when valid UTF-8, else `Bytes` (the [`Value`] invariant) |
//! | `None`, `()`, unit struct | `Null` |
//! | sequences, tuples, tuple structs | `List` |
//! | structs | `Map` by field name, in declaration order |
//! | maps | `Map`; keys must be strings, integers, bools, chars or unit variants |
//! | unit variant | `Str(variant)` |
//! | newtype / tuple / struct variant | one-entry `Map {variant: inner}` (at the top of a message: a tagged list, see above) |
//!
//! # Leniency
//!
//! Perl scalars are untyped, so decoding accepts what a Perl peer may send for a field:
//!
//! * integer fields: integers, integral floats (`3.0`), numeric strings (`"42"`, `" 42"`,
//!   `"4.0"`) and booleans (as 1/0); the target range is always checked
//!   (`expected u8, got 300`);
//! * float fields: numbers, numeric strings and booleans;
//! * string fields: strings, and numbers or booleans formatted the way Perl prints them
//!   (`5`, `2.5`, `1`/`0`);
//! * `bool` fields: `true`/`false`, `1`/`0`, `"1"`/`""`/`"0"` and `"true"`/`"false"`;
//! * structs: a `Map` by field name **or** a `List` positionally; struct and tuple positions
//!   past the end of a list decode as absent (`None` for `Option` fields, the default for
//!   `#[serde(default)]` fields, an error otherwise); extra list elements are an error;
//! * enums: a string (unit variant), a one-entry map, or a tagged list (`["Variant",
//!   fields...]`);
//! * `Vec<u8>` fields also accept `Bytes`; fields using `serde_bytes` accept strings and bytes.
//!
//! `deserialize_any` is faithful (each [`Value`] variant visits as itself), so
//! `serde_json::Value`, untagged enums and [`Value`] itself decode without loss.

mod de;
mod port;
mod ser;
#[cfg(test)]
mod tests;

use crate::ids::PortId;
use crate::value::{Msg, Str, Value};
use serde::de::{DeserializeOwned, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Longest rendering of a peer-supplied string (a found value or a map key) inside an error
/// message; errors are logged, and a peer must not be able to blow them up.
const MAX_ERROR_TEXT: usize = 64;

/// How deep typed conversions nest: a value (or a Rust type being serialized) nested deeper
/// than this is refused with [`TypedErrorKind::TooDeep`] instead of recursing on. Counted per
/// nested value and per `Option`/newtype layer. Above what peers accept anyway (64 by
/// default, see [`Limits`](crate::codec::Limits)), and low enough for a 2 MiB thread stack in
/// unoptimised builds.
pub const MAX_NESTING: usize = 256;

thread_local! {
    /// Nesting of the typed conversions running on this thread (they recurse once per
    /// level, so the call stack is the nesting).
    static NESTING: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// One level of nesting, given back when dropped.
struct Nesting;

impl Nesting {
    fn enter() -> Result<Nesting, TypedError> {
        NESTING.with(|n| {
            let depth = n.get();
            if depth >= MAX_NESTING {
                return Err(TypedError::new(TypedErrorKind::TooDeep(MAX_NESTING)));
            }
            n.set(depth + 1);
            Ok(Nesting)
        })
    }
}

impl Drop for Nesting {
    fn drop(&mut self) {
        NESTING.with(|n| n.set(n.get().saturating_sub(1)));
    }
}

/// Runs `f` (which converts a nested value) one level deeper, or refuses beyond
/// [`MAX_NESTING`].
fn nested<R>(f: impl FnOnce() -> Result<R, TypedError>) -> Result<R, TypedError> {
    let _level = Nesting::enter()?;
    f()
}

/// Upper bound on capacity reserved from a size hint. Hints from our own deserializers are
/// exact, but other formats may pass a peer-supplied length; the vector still grows as far
/// as the real elements need.
const MAX_PREALLOC: usize = 1024;

/// Converts a serde type to a [`Value`].
///
/// Fails for map keys that are not strings, integers, bools, chars or unit variants, for
/// 128-bit integers outside the `i64`/`u64` range, and for errors raised by the type's own
/// `Serialize` implementation.
pub fn to_value<T: Serialize + ?Sized>(v: &T) -> Result<Value, TypedError> {
    v.serialize(ser::ValueSerializer)
}

/// Converts a [`Value`] to a serde type, leniently (see the [module docs](self)).
pub fn from_value<T: DeserializeOwned>(v: Value) -> Result<T, TypedError> {
    from_value_ref(&v)
}

/// Converts a borrowed [`Value`] to a serde type; `&str` and `&[u8]` fields may borrow from
/// `v`.
pub fn from_value_ref<'de, T: Deserialize<'de>>(v: &'de Value) -> Result<T, TypedError> {
    T::deserialize(de::ValueDe::new(v))
}

/// Converts a serde type to a message.
///
/// A top-level tuple, tuple struct, sequence or struct gives the elements (a struct's
/// fields in declaration order; a field skipped by `skip_serializing_if` is `null` in the
/// middle and left out at the end); a newtype struct is transparent; an enum variant gives
/// its name followed by its fields (see [Enums as protocols](self#enums-as-protocols)); any
/// other value becomes a one-element message. Nested values follow [`to_value`]. An empty sequence gives an empty
/// message, which the sending layer refuses.
pub fn to_msg<T: Serialize + ?Sized>(v: &T) -> Result<Msg, TypedError> {
    v.serialize(ser::MsgSerializer).map(Msg::from)
}

/// Converts a message to a serde type: the inverse of [`to_msg`].
///
/// Tuples, tuple structs and structs take the elements positionally, sequences take all of
/// them, enums take the variant name from the first element and its fields from the rest,
/// and any other type takes the only element of a one-element message.
pub fn from_msg<T: DeserializeOwned>(m: Msg) -> Result<T, TypedError> {
    from_msg_ref(&m)
}

/// Converts a borrowed message to a serde type, like [`from_msg`]; `&str` and `&[u8]`
/// fields may borrow from `m`.
pub fn from_msg_ref<'de, T: Deserialize<'de>>(m: &'de Msg) -> Result<T, TypedError> {
    T::deserialize(de::MsgDe::new(&m.0))
}

/// Typed decoding as a method of [`Msg`] (see [`from_msg`]), and port arguments in one
/// call.
///
/// ```
/// use aemp_proto::msg;
/// use aemp_proto::typed::MsgExt;
///
/// // What a handler for tag "ping" sees of `cal(port, ["ping", 5])`: the tag is gone, the
/// // reply port that cal appended is last.
/// let m = msg![5, "calling-node#r1"];
/// assert_eq!(m.reply_port()?.as_str(), "calling-node#r1");
/// assert_eq!(m.port(1)?, m.reply_port()?);
/// assert_eq!(
///     m.port(0).unwrap_err().to_string(),
///     "element 0: expected a port ID, found integer `5`"
/// );
/// assert_eq!(
///     m.port(2).unwrap_err().to_string(),
///     "element 2: expected a port ID, found nothing (the message has 2 elements)"
/// );
/// # Ok::<(), aemp_proto::typed::TypedError>(())
/// ```
pub trait MsgExt {
    /// Decodes the message into `T` (see [`from_msg`]).
    fn decode<T: DeserializeOwned>(self) -> Result<T, TypedError>;
    /// Decodes the borrowed message into `T` (see [`from_msg_ref`]).
    fn decode_ref<'de, T: Deserialize<'de>>(&'de self) -> Result<T, TypedError>;
    /// Element `i` as a port ID; the error names the position and what was there.
    fn port(&self, i: usize) -> Result<PortId, TypedError>;
    /// The last element as a port ID: the reply port that `cal` appends to its request.
    fn reply_port(&self) -> Result<PortId, TypedError>;
}

impl MsgExt for Msg {
    fn decode<T: DeserializeOwned>(self) -> Result<T, TypedError> {
        from_msg(self)
    }

    fn decode_ref<'de, T: Deserialize<'de>>(&'de self) -> Result<T, TypedError> {
        from_msg_ref(self)
    }

    fn port(&self, i: usize) -> Result<PortId, TypedError> {
        port::port_at(&self.0, i)
    }

    fn reply_port(&self) -> Result<PortId, TypedError> {
        port::reply_port(&self.0)
    }
}

/// Typed decoding as a method of [`Value`] (see [`from_value`]).
///
/// ```
/// use aemp_proto::typed::ValueExt;
/// use aemp_proto::Value;
///
/// assert_eq!(Value::from("n#p").as_port()?.name(), "p");
/// assert_eq!(
///     Value::Null.as_port().unwrap_err().to_string(),
///     "expected a port ID, found null"
/// );
/// # Ok::<(), aemp_proto::typed::TypedError>(())
/// ```
pub trait ValueExt {
    /// Decodes the value into `T` (see [`from_value`]).
    fn decode<T: DeserializeOwned>(self) -> Result<T, TypedError>;
    /// Decodes the borrowed value into `T` (see [`from_value_ref`]).
    fn decode_ref<'de, T: Deserialize<'de>>(&'de self) -> Result<T, TypedError>;
    /// The value as a port ID (a string `node#name`, or a bare node ID for a node port);
    /// the error says what was found instead.
    fn as_port(&self) -> Result<PortId, TypedError>;
}

impl ValueExt for Value {
    fn decode<T: DeserializeOwned>(self) -> Result<T, TypedError> {
        from_value(self)
    }

    fn decode_ref<'de, T: Deserialize<'de>>(&'de self) -> Result<T, TypedError> {
        from_value_ref(self)
    }

    fn as_port(&self) -> Result<PortId, TypedError> {
        port::as_port(self)
    }
}

/// Where in a value an error happened: one step from the outside in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathSegment {
    /// An element of a list or message, by position.
    Index(usize),
    /// A map entry or struct field, by key.
    Field(Str),
}

/// What went wrong in a typed conversion (see [`TypedError`] for where).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum TypedErrorKind {
    /// The value has the wrong type for the field.
    #[error("expected {expected}, found {found}")]
    InvalidType {
        /// What the Rust type wanted.
        expected: String,
        /// What the value was, e.g. `string "abc"`.
        found: String,
    },
    /// The value has the right type but an unacceptable value.
    #[error("invalid value: {found}, expected {expected}")]
    InvalidValue {
        /// What the Rust type wanted.
        expected: String,
        /// What the value was.
        found: String,
    },
    /// An integer does not fit the Rust type.
    #[error("expected {expected}, got {value}")]
    OutOfRange {
        /// The Rust type, e.g. `u8`.
        expected: &'static str,
        /// The integer that did not fit.
        value: String,
    },
    /// A list has too few or too many elements.
    #[error("invalid length {len}, expected {expected}")]
    InvalidLength {
        /// How many elements there were (or how many were consumed before running out).
        len: usize,
        /// What the Rust type wanted.
        expected: String,
    },
    /// A struct field is missing from a map.
    #[error("missing field `{0}`")]
    MissingField(&'static str),
    /// A map key that is not known to a `deny_unknown_fields` struct.
    #[error("unknown field `{found}`, expected {expected}")]
    UnknownField {
        /// The key.
        found: String,
        /// The known fields.
        expected: String,
    },
    /// An enum variant name that the Rust enum does not have.
    #[error("unknown variant `{found}`, expected {expected}")]
    UnknownVariant {
        /// The name found.
        found: String,
        /// The known variants.
        expected: String,
    },
    /// A field appears twice in a map.
    #[error("duplicate field `{0}`")]
    DuplicateField(&'static str),
    /// A map key that cannot be a [`Value::Map`] key (only strings, integers, bools, chars
    /// and unit variants can).
    #[error("map key must be a string, integer, bool or char, found {0}")]
    KeyMustBeString(&'static str),
    /// A position past the end of a list (internal: turned into "no more elements" by the
    /// positional decoders, visible only if a `Deserialize` impl passes it on).
    #[error("missing element")]
    MissingElement,
    /// Any other message, e.g. from a type's own `Serialize`/`Deserialize` implementation.
    #[error("{0}")]
    Custom(String),
    /// Nested deeper than [`MAX_NESTING`] levels.
    #[error("nested deeper than {0} levels")]
    TooDeep(usize),
}

/// Error of a typed conversion: what went wrong and where.
///
/// Displays as `<path>: <what>`, for example
/// `element 1: expected u64, found string "abc"` or `field peers[0].port: expected u16,
/// got 70000`.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{}{kind}", PathDisplay(&self.path))]
pub struct TypedError {
    kind: TypedErrorKind,
    /// Outermost segment first.
    path: Vec<PathSegment>,
}

impl TypedError {
    fn new(kind: TypedErrorKind) -> TypedError {
        TypedError {
            kind,
            path: Vec::new(),
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> &TypedErrorKind {
        &self.kind
    }

    /// Where it went wrong, outermost segment first (empty: at the top level).
    pub fn path(&self) -> &[PathSegment] {
        &self.path
    }

    /// Adds an enclosing path segment as the error travels outwards. Paths are as deep as
    /// the value is nested, so the front insertion stays cheap.
    fn at(mut self, seg: PathSegment) -> TypedError {
        self.path.insert(0, seg);
        self
    }

    fn at_index(self, i: usize) -> TypedError {
        self.at(PathSegment::Index(i))
    }

    fn at_field(self, key: &str) -> TypedError {
        self.at(PathSegment::Field(Str::from(key)))
    }

    /// True for the bare "past the end" marker of [`TypedErrorKind::MissingElement`] coming
    /// straight from the padding deserializer (no path: nothing nested produced it).
    fn is_missing_marker(&self) -> bool {
        self.path.is_empty() && self.kind == TypedErrorKind::MissingElement
    }
}

/// Renders a path prefix: `element 1.name[0]: ` or `field name[2]: `, nothing for the root.
struct PathDisplay<'a>(&'a [PathSegment]);

impl fmt::Display for PathDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match (i, seg) {
                (0, PathSegment::Index(n)) => write!(f, "element {n}")?,
                (0, PathSegment::Field(k)) => write!(f, "field {}", Truncated(k))?,
                (_, PathSegment::Index(n)) => write!(f, "[{n}]")?,
                (_, PathSegment::Field(k)) => write!(f, ".{}", Truncated(k))?,
            }
        }
        if !self.0.is_empty() {
            f.write_str(": ")?;
        }
        Ok(())
    }
}

/// A string cut to [`MAX_ERROR_TEXT`] characters for error messages.
struct Truncated<'a>(&'a str);

impl fmt::Display for Truncated<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.char_indices().nth(MAX_ERROR_TEXT) {
            Some((cut, _)) => write!(f, "{}…", &self.0[..cut]),
            None => f.write_str(self.0),
        }
    }
}

pub(super) fn truncated(s: &str) -> String {
    Truncated(s).to_string()
}

impl serde::ser::Error for TypedError {
    fn custom<T: fmt::Display>(msg: T) -> TypedError {
        TypedError::new(TypedErrorKind::Custom(msg.to_string()))
    }
}

impl serde::de::Error for TypedError {
    fn custom<T: fmt::Display>(msg: T) -> TypedError {
        TypedError::new(TypedErrorKind::Custom(msg.to_string()))
    }

    fn invalid_type(unexp: serde::de::Unexpected<'_>, exp: &dyn serde::de::Expected) -> Self {
        TypedError::new(TypedErrorKind::InvalidType {
            expected: exp.to_string(),
            found: truncated(&unexp.to_string()),
        })
    }

    fn invalid_value(unexp: serde::de::Unexpected<'_>, exp: &dyn serde::de::Expected) -> Self {
        TypedError::new(TypedErrorKind::InvalidValue {
            expected: exp.to_string(),
            found: truncated(&unexp.to_string()),
        })
    }

    fn invalid_length(len: usize, exp: &dyn serde::de::Expected) -> Self {
        TypedError::new(TypedErrorKind::InvalidLength {
            len,
            expected: exp.to_string(),
        })
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        TypedError::new(TypedErrorKind::UnknownVariant {
            found: truncated(variant),
            expected: one_of(expected),
        })
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        TypedError::new(TypedErrorKind::UnknownField {
            found: truncated(field),
            expected: one_of(expected),
        })
    }

    fn missing_field(field: &'static str) -> Self {
        TypedError::new(TypedErrorKind::MissingField(field))
    }

    fn duplicate_field(field: &'static str) -> Self {
        TypedError::new(TypedErrorKind::DuplicateField(field))
    }
}

/// "one of `a`, `b`" / "no variants" for unknown-name errors.
fn one_of(names: &[&str]) -> String {
    if names.is_empty() {
        return "nothing".to_owned();
    }
    let list: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    format!("one of {}", list.join(", "))
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(i) => s.serialize_i64(*i),
            Value::UInt(u) => s.serialize_u64(*u),
            Value::Float(f) => s.serialize_f64(*f),
            Value::Str(v) => s.serialize_str(v),
            Value::Bytes(b) => s.serialize_bytes(b),
            Value::List(l) => {
                let mut seq = s.serialize_seq(Some(l.len()))?;
                for v in l {
                    seq.serialize_element(v)?;
                }
                seq.end()
            }
            Value::Map(m) => {
                let mut map = s.serialize_map(Some(m.len()))?;
                for (k, v) in m {
                    map.serialize_entry(k.as_str(), v)?;
                }
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

/// Builds a [`Value`] from whatever a self-describing format has, keeping the [`Value`]
/// invariants (small unsigned integers are `Int`, UTF-8 bytes are `Str`).
struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_i128<E: serde::de::Error>(self, v: i128) -> Result<Value, E> {
        int_value(v).ok_or_else(|| E::custom(format_args!("integer {v} is out of range")))
    }

    fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<Value, E> {
        i128::try_from(v)
            .ok()
            .and_then(int_value)
            .ok_or_else(|| E::custom(format_args!("integer {v} is out of range")))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(Str::from(v)))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(Str::from(v)))
    }

    fn visit_bytes<E>(self, v: &[u8]) -> Result<Value, E> {
        Ok(Value::from_wire_bytes(v))
    }

    fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Value, E> {
        // Reuses the buffer when it is not UTF-8; UTF-8 is moved into the string.
        Ok(match String::from_utf8(v) {
            Ok(s) => Value::Str(Str::from(s)),
            Err(e) => Value::Bytes(e.into_bytes()),
        })
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(ValueVisitor)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(ValueVisitor)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(MAX_PREALLOC));
        while let Some(v) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::List(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(map.size_hint().unwrap_or(0).min(MAX_PREALLOC));
        while let Some((k, v)) = map.next_entry::<MapKey, Value>()? {
            out.push((k.0, v));
        }
        Ok(Value::Map(out))
    }
}

/// The `Value` for an integer, if it is in the `i64`/`u64` range.
fn int_value(v: i128) -> Option<Value> {
    if let Ok(i) = i64::try_from(v) {
        Some(Value::Int(i))
    } else {
        u64::try_from(v).ok().map(Value::UInt)
    }
}

/// A map key read from another format: strings, and the scalars that
/// [`to_value`] would stringify (CBOR maps from other encoders may have integer keys).
struct MapKey(Str);

impl<'de> Deserialize<'de> for MapKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<MapKey, D::Error> {
        d.deserialize_any(MapKeyVisitor)
    }
}

struct MapKeyVisitor;

impl Visitor<'_> for MapKeyVisitor {
    type Value = MapKey;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, integer or bool map key")
    }

    fn visit_bool<E>(self, v: bool) -> Result<MapKey, E> {
        Ok(MapKey(Str::from(if v { "true" } else { "false" })))
    }

    fn visit_i64<E>(self, v: i64) -> Result<MapKey, E> {
        Ok(MapKey(Str::from(itoa::Buffer::new().format(v))))
    }

    fn visit_u64<E>(self, v: u64) -> Result<MapKey, E> {
        Ok(MapKey(Str::from(itoa::Buffer::new().format(v))))
    }

    fn visit_str<E>(self, v: &str) -> Result<MapKey, E> {
        Ok(MapKey(Str::from(v)))
    }

    fn visit_string<E>(self, v: String) -> Result<MapKey, E> {
        Ok(MapKey(Str::from(v)))
    }

    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<MapKey, E> {
        match std::str::from_utf8(v) {
            Ok(s) => Ok(MapKey(Str::from(s))),
            Err(_) => Err(E::invalid_value(serde::de::Unexpected::Bytes(v), &self)),
        }
    }
}

impl Serialize for Msg {
    /// A message serialises as the sequence of its elements.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for v in &self.0 {
            seq.serialize_element(v)?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for Msg {
    /// A message deserialises from a sequence (of any values).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Msg, D::Error> {
        struct MsgVisitor;
        impl<'de> Visitor<'de> for MsgVisitor {
            type Value = Msg;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a message (a list of values)")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Msg, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(MAX_PREALLOC));
                while let Some(v) = seq.next_element()? {
                    out.push(v);
                }
                Ok(Msg::from(out))
            }
        }
        d.deserialize_seq(MsgVisitor)
    }
}

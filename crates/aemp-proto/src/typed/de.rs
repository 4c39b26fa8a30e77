//! The deserializers: a [`Value`] or message elements into any `Deserialize` type, leniently
//! (see the [module docs](super)).

use super::{nested, TypedError, TypedErrorKind};
use crate::value::{Str, Value};
use serde::de::value::{BorrowedStrDeserializer, U8Deserializer};
use serde::de::{
    self, DeserializeSeed, EnumAccess, Expected, IntoDeserializer, MapAccess, SeqAccess,
    Unexpected, VariantAccess, Visitor,
};
use serde::forward_to_deserialize_any;

/// How a [`Value`] appears in a type error.
fn unexpected(v: &Value) -> Unexpected<'_> {
    match v {
        Value::Null => Unexpected::Other("null"),
        Value::Bool(b) => Unexpected::Bool(*b),
        Value::Int(i) => Unexpected::Signed(*i),
        Value::UInt(u) => Unexpected::Unsigned(*u),
        Value::Float(f) => Unexpected::Float(*f),
        Value::Str(s) => Unexpected::Str(s),
        Value::Bytes(b) => Unexpected::Bytes(b),
        Value::List(_) => Unexpected::Other("list"),
        Value::Map(_) => Unexpected::Map,
    }
}

/// How a [`Value`] is named in an error message, e.g. ``integer `5` `` or `list`.
pub(super) fn describe(v: &Value) -> String {
    super::truncated(&unexpected(v).to_string())
}

fn invalid_type(v: &Value, exp: &dyn Expected) -> TypedError {
    de::Error::invalid_type(unexpected(v), exp)
}

fn out_of_range(expected: &'static str, n: i128) -> TypedError {
    TypedError::new(TypedErrorKind::OutOfRange {
        expected,
        value: n.to_string(),
    })
}

/// An integral float as an integer; `None` for fractions, infinities, NaN and magnitudes no
/// integer type here can hold (which also keeps the `as` conversion from saturating).
fn float_int(f: f64) -> Option<i128> {
    (f.is_finite() && f.fract() == 0.0 && f.abs() < i128::MAX as f64).then_some(f as i128)
}

/// A Perl numeric string as an integer: `"42"`, `" -7 "`, `"4.0"`, `"1e3"`.
fn str_int(s: &str) -> Option<i128> {
    let t = s.trim();
    t.parse::<i128>()
        .ok()
        .or_else(|| t.parse::<f64>().ok().and_then(float_int))
}

/// A Perl numeric string as a float.
fn str_float(s: &str) -> Option<f64> {
    s.trim().parse::<f64>().ok()
}

/// A Perl boolean spelled as a string: `"1"`/`""`/`"0"`, and `"true"`/`"false"` (how
/// [`super::to_value`] writes bool map keys).
fn str_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "true" => Some(true),
        "" | "0" | "false" => Some(false),
        _ => None,
    }
}

/// Formats a float the way Perl stringifies a number (`%.15g`): `3`, `0.3`, `1e+20`,
/// `1.5e-07`, `Inf`, `NaN`.
pub(super) fn perl_float(f: f64) -> String {
    const DIGITS: i32 = 15;
    if f.is_nan() {
        return "NaN".to_owned();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Inf" } else { "-Inf" }.to_owned();
    }
    if f == 0.0 {
        return "0".to_owned();
    }
    // Rounding to 15 significant digits first gives the exponent %g decides on.
    let sci = format!("{:.*e}", (DIGITS - 1) as usize, f);
    let Some((mantissa, exp)) = sci.split_once('e') else {
        return sci;
    };
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..DIGITS).contains(&exp) {
        let decimals = (DIGITS - 1 - exp).max(0) as usize;
        strip_zeros(format!("{f:.decimals$}"))
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!(
            "{}e{sign}{:02}",
            strip_zeros(mantissa.to_owned()),
            exp.unsigned_abs()
        )
    }
}

/// Drops trailing fractional zeros and a trailing point, as `%g` does.
fn strip_zeros(mut s: String) -> String {
    if s.contains('.') {
        let keep = s.trim_end_matches('0').trim_end_matches('.').len();
        s.truncate(keep);
    }
    s
}

/// Visits a list as a sequence.
///
/// `pad_to` is the number of positions of a tuple or struct: positions past the end of the
/// list up to it are offered to the visitor as absent ([`MissingDe`]), so `Option` and
/// `#[serde(default)]` fields may be left off the end, as Perl senders do. Elements the
/// visitor did not take are an error.
fn visit_list<'de, V: Visitor<'de>>(
    items: &'de [Value],
    pad_to: usize,
    visitor: V,
) -> Result<V::Value, TypedError> {
    visit_list_at(items, 0, pad_to, visitor, None)
}

/// [`visit_list`] over elements that start at position `base` of the enclosing list (the
/// elements after the enum tag `tag`), so that error paths name the enclosing positions and
/// a length error names the tag.
fn visit_list_at<'de, V: Visitor<'de>>(
    items: &'de [Value],
    base: usize,
    pad_to: usize,
    visitor: V,
    tag: Option<&str>,
) -> Result<V::Value, TypedError> {
    let mut seq = SeqDe {
        items,
        base,
        pos: 0,
        pad_to,
    };
    let value = visitor.visit_seq(&mut seq)?;
    if seq.pos < items.len() {
        return Err(TypedError::new(TypedErrorKind::InvalidLength {
            len: items.len(),
            expected: match tag {
                None => format!("{} elements", seq.pos),
                Some(t) => format!(
                    "{} elements after the tag `{}`",
                    seq.pos,
                    super::truncated(t)
                ),
            },
        }));
    }
    Ok(value)
}

/// Deserializer over one borrowed [`Value`].
pub(super) struct ValueDe<'de>(&'de Value);

impl<'de> ValueDe<'de> {
    pub(super) fn new(v: &'de Value) -> ValueDe<'de> {
        ValueDe(v)
    }

    /// The value as an integer for a field of type `expected`, leniently.
    fn int(&self, expected: &'static str) -> Result<i128, TypedError> {
        let n = match self.0 {
            Value::Int(i) => Some(i128::from(*i)),
            Value::UInt(u) => Some(i128::from(*u)),
            Value::Float(f) => float_int(*f),
            Value::Bool(b) => Some(i128::from(*b)),
            Value::Str(s) => str_int(s),
            _ => None,
        };
        n.ok_or_else(|| invalid_type(self.0, &expected))
    }

    /// The value as a float, leniently.
    fn float(&self, expected: &'static str) -> Result<f64, TypedError> {
        let f = match self.0 {
            Value::Float(f) => Some(*f),
            Value::Int(i) => Some(*i as f64),
            Value::UInt(u) => Some(*u as f64),
            Value::Bool(b) => Some(f64::from(u8::from(*b))),
            Value::Str(s) => str_float(s),
            _ => None,
        };
        f.ok_or_else(|| invalid_type(self.0, &expected))
    }
}

/// Integer and float methods, shared by [`ValueDe`] and [`KeyDe`] through their `int` and
/// `float` helpers; the range of the target type is always checked.
macro_rules! de_numbers {
    ($($method:ident => $visit:ident: $t:ty),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TypedError> {
            let n = self.int(stringify!($t))?;
            let x = <$t>::try_from(n).map_err(|_| out_of_range(stringify!($t), n))?;
            visitor.$visit(x)
        }
    )*
        fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TypedError> {
            // Narrowing is what f32 means; values beyond its range become infinite.
            visitor.visit_f32(self.float("f32")? as f32)
        }

        fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TypedError> {
            visitor.visit_f64(self.float("f64")?)
        }
    };
}

impl<'de> de::Deserializer<'de> for ValueDe<'de> {
    type Error = TypedError;

    /// Faithful: each variant visits as itself.
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TypedError> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Int(i) => visitor.visit_i64(*i),
            Value::UInt(u) => visitor.visit_u64(*u),
            Value::Float(f) => visitor.visit_f64(*f),
            Value::Str(s) => visitor.visit_borrowed_str(s),
            Value::Bytes(b) => visitor.visit_borrowed_bytes(b),
            Value::List(l) => visit_list(l, 0, visitor),
            Value::Map(m) => visitor.visit_map(MapDe::new(m)),
        }
    }

    de_numbers! {
        deserialize_i8 => visit_i8: i8,
        deserialize_i16 => visit_i16: i16,
        deserialize_i32 => visit_i32: i32,
        deserialize_i64 => visit_i64: i64,
        deserialize_i128 => visit_i128: i128,
        deserialize_u8 => visit_u8: u8,
        deserialize_u16 => visit_u16: u16,
        deserialize_u32 => visit_u32: u32,
        deserialize_u64 => visit_u64: u64,
        deserialize_u128 => visit_u128: u128,
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TypedError> {
        let b = match self.0 {
            Value::Bool(b) => Some(*b),
            Value::Int(0) => Some(false),
            Value::Int(1) => Some(true),
            Value::Float(f) if *f == 0.0 => Some(false),
            Value::Float(f) if *f == 1.0 => Some(true),
            Value::Str(s) => str_bool(s),
            _ => None,
        };
        match b {
            Some(b) => visitor.visit_bool(b),
            None => Err(invalid_type(self.0, &visitor)),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TypedError> {
        match self.0 {
            Value::Str(s) => visitor.visit_borrowed_str(s),
            // Perl numbers and booleans are strings too, as Perl prints them.
            Value::Int(i) => visitor.visit_str(itoa::Buffer::new().format(*i)),
            Value::UInt(u) => visitor.visit_str(itoa::Buffer::new().format(*u)),
            Value::Float(f) => visitor.visit_string(perl_float(*f)),
            Value::Bool(b) => visitor.visit_borrowed_str(if *b { "1" } else { "0" }),
            // Not UTF-8 (the Value invariant), so a string visitor refuses it with a clear
            // "invalid value: byte array" rather than a type error.
            Value::Bytes(b) => visitor.visit_borrowed_bytes(b),
            other => Err(invalid_type(other, &visitor)),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TypedError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TypedError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TypedError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TypedError> {
        match self.0 {
            Value::Bytes(b) => visitor.visit_borrowed_bytes(b),
            // Perl byte strings that happen to be UTF-8 arrive as strings.
            Value::Str(s) => visitor.visit_borrowed_bytes(s.as_bytes()),
            Value::List(l) => visit_list(l, 0, visitor),
            other => Err(invalid_type(other, &visitor)),
        }
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TypedError> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TypedError> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => nested(|| visitor.visit_some(self)),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TypedError> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            other => Err(invalid_type(other, &visitor)),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, TypedError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, TypedError> {
        nested(|| visitor.visit_newtype_struct(self))
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TypedError> {
        match self.0 {
            Value::List(l) => visit_list(l, 0, visitor),
            // A Perl binary string into a `Vec<u8>`.
            Value::Bytes(b) => visitor.visit_seq(BytesSeq(b.iter())),
            other => Err(invalid_type(other, &visitor)),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, TypedError> {
        match self.0 {
            Value::List(l) => visit_list(l, len, visitor),
            other => Err(invalid_type(other, &visitor)),
        }
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, TypedError> {
        self.deserialize_tuple(len, visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TypedError> {
        match self.0 {
            Value::Map(m) => visitor.visit_map(MapDe::new(m)),
            other => Err(invalid_type(other, &visitor)),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, TypedError> {
        match self.0 {
            Value::Map(m) => visitor.visit_map(MapDe::new(m)),
            Value::List(l) => visit_list(l, fields.len(), visitor),
            other => Err(invalid_type(other, &visitor)),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, TypedError> {
        match self.0 {
            Value::Str(s) => visitor.visit_enum(EnumDe {
                variant: s,
                value: None,
            }),
            Value::Map(m) => match m.as_slice() {
                [(k, v)] => visitor.visit_enum(EnumDe {
                    variant: k,
                    value: Some(v),
                }),
                _ => Err(de::Error::invalid_value(
                    Unexpected::Map,
                    &"a variant name or a map with exactly one key",
                )),
            },
            Value::List(items) if matches!(items.first(), Some(Value::Str(_))) => {
                tagged_enum(items, visitor)
            }
            other => Err(invalid_type(
                other,
                &"a variant name, a one-key map or a tagged list",
            )),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TypedError> {
        visitor.visit_unit()
    }
}

/// The elements of a list; see [`visit_list`] for `pad_to`.
struct SeqDe<'de> {
    items: &'de [Value],
    /// Position of `items[0]` in the enclosing list (for error paths).
    base: usize,
    /// Positions handed out so far (real elements and padding).
    pos: usize,
    pad_to: usize,
}

impl<'de> SeqAccess<'de> for SeqDe<'de> {
    type Error = TypedError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, TypedError> {
        let i = self.pos;
        if let Some(v) = self.items.get(i) {
            self.pos += 1;
            return nested(|| seed.deserialize(ValueDe(v)))
                .map(Some)
                .map_err(|e| e.at_index(self.base + i));
        }
        // Bounded by `pad_to`, so a visitor that reads until `None` always gets one.
        if i < self.pad_to {
            self.pos += 1;
            return match seed.deserialize(MissingDe) {
                Ok(v) => Ok(Some(v)),
                // Not an Option: report the end of the list; the visitor decides whether
                // that is a default or an "invalid length" error.
                Err(e) if e.is_missing_marker() => Ok(None),
                Err(e) => Err(e.at_index(self.base + i)),
            };
        }
        Ok(None)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len().saturating_sub(self.pos))
    }
}

/// A position past the end of a positional list: `None` for an `Option`, the
/// [`TypedErrorKind::MissingElement`] marker for anything else.
struct MissingDe;

impl<'de> de::Deserializer<'de> for MissingDe {
    type Error = TypedError;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, TypedError> {
        Err(TypedError::new(TypedErrorKind::MissingElement))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TypedError> {
        visitor.visit_none()
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier
        ignored_any
    }
}

/// The bytes of a [`Value::Bytes`] as a sequence of `u8`.
struct BytesSeq<'de>(std::slice::Iter<'de, u8>);

impl<'de> SeqAccess<'de> for BytesSeq<'de> {
    type Error = TypedError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, TypedError> {
        match self.0.next() {
            Some(b) => {
                let d: U8Deserializer<TypedError> = b.into_deserializer();
                seed.deserialize(d).map(Some)
            }
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

/// The entries of a [`Value::Map`].
struct MapDe<'de> {
    iter: std::slice::Iter<'de, (Str, Value)>,
    /// The entry whose key was just handed out, until its value is asked for.
    current: Option<&'de (Str, Value)>,
}

impl<'de> MapDe<'de> {
    fn new(m: &'de [(Str, Value)]) -> MapDe<'de> {
        MapDe {
            iter: m.iter(),
            current: None,
        }
    }
}

impl<'de> MapAccess<'de> for MapDe<'de> {
    type Error = TypedError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, TypedError> {
        let Some(entry) = self.iter.next() else {
            return Ok(None);
        };
        self.current = Some(entry);
        seed.deserialize(KeyDe(&entry.0))
            .map(Some)
            .map_err(|e| e.at_field(&entry.0))
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<T::Value, TypedError> {
        let Some((k, v)) = self.current.take() else {
            return Err(de::Error::custom("map value asked for before its key"));
        };
        nested(|| seed.deserialize(ValueDe(v))).map_err(|e| e.at_field(k))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.iter.len())
    }
}

/// Deserializer over a map key: a string that may stand for an integer, bool or unit variant
/// (the keys [`super::to_value`] stringifies).
struct KeyDe<'de>(&'de str);

impl KeyDe<'_> {
    fn int(&self, expected: &'static str) -> Result<i128, TypedError> {
        str_int(self.0).ok_or_else(|| de::Error::invalid_type(Unexpected::Str(self.0), &expected))
    }

    fn float(&self, expected: &'static str) -> Result<f64, TypedError> {
        str_float(self.0).ok_or_else(|| de::Error::invalid_type(Unexpected::Str(self.0), &expected))
    }
}

impl<'de> de::Deserializer<'de> for KeyDe<'de> {
    type Error = TypedError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TypedError> {
        visitor.visit_borrowed_str(self.0)
    }

    de_numbers! {
        deserialize_i8 => visit_i8: i8,
        deserialize_i16 => visit_i16: i16,
        deserialize_i32 => visit_i32: i32,
        deserialize_i64 => visit_i64: i64,
        deserialize_i128 => visit_i128: i128,
        deserialize_u8 => visit_u8: u8,
        deserialize_u16 => visit_u16: u16,
        deserialize_u32 => visit_u32: u32,
        deserialize_u64 => visit_u64: u64,
        deserialize_u128 => visit_u128: u128,
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TypedError> {
        match str_bool(self.0) {
            Some(b) => visitor.visit_bool(b),
            None => Err(de::Error::invalid_type(Unexpected::Str(self.0), &visitor)),
        }
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TypedError> {
        visitor.visit_borrowed_bytes(self.0.as_bytes())
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TypedError> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TypedError> {
        nested(|| visitor.visit_some(self))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, TypedError> {
        nested(|| visitor.visit_newtype_struct(self))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, TypedError> {
        visitor.visit_enum(BorrowedStrDeserializer::<TypedError>::new(self.0))
    }

    forward_to_deserialize_any! {
        char str string unit unit_struct seq tuple tuple_struct map struct identifier
        ignored_any
    }
}

/// An enum: a variant name, with the payload of a one-key map if there was one.
struct EnumDe<'de> {
    variant: &'de str,
    value: Option<&'de Value>,
}

impl<'de> EnumAccess<'de> for EnumDe<'de> {
    type Error = TypedError;
    type Variant = VariantDe<'de>;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, VariantDe<'de>), TypedError> {
        let v = seed.deserialize(BorrowedStrDeserializer::<TypedError>::new(self.variant))?;
        Ok((
            v,
            VariantDe {
                variant: self.variant,
                value: self.value,
            },
        ))
    }
}

/// The payload of an enum variant.
struct VariantDe<'de> {
    variant: &'de str,
    value: Option<&'de Value>,
}

impl<'de> VariantAccess<'de> for VariantDe<'de> {
    type Error = TypedError;

    fn unit_variant(self) -> Result<(), TypedError> {
        match self.value {
            None | Some(Value::Null) => Ok(()),
            Some(other) => Err(invalid_type(other, &"unit variant").at_field(self.variant)),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<T::Value, TypedError> {
        match self.value {
            Some(v) => {
                nested(|| seed.deserialize(ValueDe(v))).map_err(|e| e.at_field(self.variant))
            }
            None => Err(de::Error::invalid_type(
                Unexpected::UnitVariant,
                &"newtype variant",
            )),
        }
    }

    fn tuple_variant<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, TypedError> {
        match self.value {
            Some(v) => nested(|| de::Deserializer::deserialize_tuple(ValueDe(v), len, visitor))
                .map_err(|e| e.at_field(self.variant)),
            None => Err(de::Error::invalid_type(
                Unexpected::UnitVariant,
                &"tuple variant",
            )),
        }
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, TypedError> {
        match self.value {
            Some(v) => {
                nested(|| de::Deserializer::deserialize_struct(ValueDe(v), "", fields, visitor))
                    .map_err(|e| e.at_field(self.variant))
            }
            None => Err(de::Error::invalid_type(
                Unexpected::UnitVariant,
                &"struct variant",
            )),
        }
    }
}

/// Visits `items` (a list or message whose first element is a string) as an enum: the
/// variant name, then the variant's fields.
fn tagged_enum<'de, V: Visitor<'de>>(
    items: &'de [Value],
    visitor: V,
) -> Result<V::Value, TypedError> {
    match items {
        [Value::Str(tag), args @ ..] => visitor.visit_enum(TaggedDe { tag, args }),
        _ => Err(TypedError::new(TypedErrorKind::InvalidLength {
            len: items.len(),
            expected: "a list starting with a variant name".to_owned(),
        })),
    }
}

/// An enum as a tagged list: `tag` (element 0) names the variant, `args` (elements 1..) are
/// its fields.
struct TaggedDe<'de> {
    tag: &'de str,
    args: &'de [Value],
}

impl TaggedDe<'_> {
    fn arity(&self, expected: &str) -> TypedError {
        TypedError::new(TypedErrorKind::InvalidLength {
            len: self.args.len(),
            expected: format!("{expected} after the tag `{}`", super::truncated(self.tag)),
        })
    }
}

impl<'de> EnumAccess<'de> for TaggedDe<'de> {
    type Error = TypedError;
    type Variant = TaggedDe<'de>;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, TaggedDe<'de>), TypedError> {
        let v = seed
            .deserialize(BorrowedStrDeserializer::<TypedError>::new(self.tag))
            .map_err(|e| e.at_index(0))?;
        Ok((v, self))
    }
}

impl<'de> VariantAccess<'de> for TaggedDe<'de> {
    type Error = TypedError;

    fn unit_variant(self) -> Result<(), TypedError> {
        if self.args.is_empty() {
            Ok(())
        } else {
            Err(self.arity("no elements"))
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<T::Value, TypedError> {
        match self.args {
            [v] => nested(|| seed.deserialize(ValueDe(v))).map_err(|e| e.at_index(1)),
            // An absent payload is `None` for an `Option`, like a missing trailing field.
            [] => match seed.deserialize(MissingDe) {
                Err(e) if e.is_missing_marker() => Err(self.arity("one element")),
                r => r.map_err(|e| e.at_index(1)),
            },
            _ => Err(self.arity("one element")),
        }
    }

    fn tuple_variant<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, TypedError> {
        nested(|| visit_list_at(self.args, 1, len, visitor, Some(self.tag)))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, TypedError> {
        nested(|| visit_list_at(self.args, 1, fields.len(), visitor, Some(self.tag)))
    }
}

/// Deserializer over the elements of a message; see [`super::from_msg`].
pub(super) struct MsgDe<'de>(&'de [Value]);

impl<'de> MsgDe<'de> {
    pub(super) fn new(items: &'de [Value]) -> MsgDe<'de> {
        MsgDe(items)
    }

    /// The only element, for a type that is not a sequence.
    fn single(&self) -> Result<ValueDe<'de>, TypedError> {
        match self.0 {
            [v] => Ok(ValueDe(v)),
            _ => Err(TypedError::new(TypedErrorKind::InvalidLength {
                len: self.0.len(),
                expected: "a message of one element".to_owned(),
            })),
        }
    }
}

/// Non-sequence types decode the only element of a one-element message.
macro_rules! msg_single {
    ($($method:ident($($arg:ident: $ty:ty),*)),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V)
            -> Result<V::Value, TypedError>
        {
            self.single()?
                .$method($($arg,)* visitor)
                .map_err(|e| e.at_index(0))
        }
    )*};
}

impl<'de> de::Deserializer<'de> for MsgDe<'de> {
    type Error = TypedError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TypedError> {
        visit_list(self.0, 0, visitor)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TypedError> {
        visit_list(self.0, 0, visitor)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, TypedError> {
        visit_list(self.0, len, visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, TypedError> {
        visit_list(self.0, len, visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, TypedError> {
        visit_list(self.0, fields.len(), visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, TypedError> {
        nested(|| visitor.visit_newtype_struct(self))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TypedError> {
        visitor.visit_unit()
    }

    /// An enum is a tagged list: the variant name, then its fields. A one-element message
    /// holding a one-key map (the nested form) is accepted too.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, TypedError> {
        match self.0 {
            [] => Err(TypedError::new(TypedErrorKind::InvalidLength {
                len: 0,
                expected: "a message starting with a variant name".to_owned(),
            })),
            [Value::Map(_)] => self
                .single()?
                .deserialize_enum(name, variants, visitor)
                .map_err(|e| e.at_index(0)),
            [Value::Str(_), ..] => tagged_enum(self.0, visitor),
            [other, ..] => Err(invalid_type(other, &"a variant name (a string)").at_index(0)),
        }
    }

    msg_single! {
        deserialize_bool(), deserialize_i8(), deserialize_i16(), deserialize_i32(),
        deserialize_i64(), deserialize_i128(), deserialize_u8(), deserialize_u16(),
        deserialize_u32(), deserialize_u64(), deserialize_u128(), deserialize_f32(),
        deserialize_f64(), deserialize_char(), deserialize_str(), deserialize_string(),
        deserialize_bytes(), deserialize_byte_buf(), deserialize_option(), deserialize_unit(),
        deserialize_unit_struct(name: &'static str), deserialize_map(),
        deserialize_identifier(),
    }
}

//! The serializers: any `Serialize` type to a [`Value`] or to message elements.

use super::{int_value, nested, TypedError, TypedErrorKind, MAX_PREALLOC};
use crate::value::{Str, Value};
use serde::ser::{self, Impossible, Serialize};

/// Serializes into a [`Value`] (see the shape table in the [module docs](super)).
pub(super) struct ValueSerializer;

fn out_of_range(expected: &'static str, v: impl ToString) -> TypedError {
    TypedError::new(TypedErrorKind::OutOfRange {
        expected,
        value: v.to_string(),
    })
}

/// Capacity for a collection from its own length hint: the serialized value is ours, but a
/// `Serialize` impl may report any length, so the reservation is capped.
fn capacity(len: Option<usize>) -> usize {
    len.unwrap_or(0).min(MAX_PREALLOC)
}

impl ser::Serializer for ValueSerializer {
    type Ok = Value;
    type Error = TypedError;
    type SerializeSeq = SeqSer;
    type SerializeTuple = SeqSer;
    type SerializeTupleStruct = SeqSer;
    type SerializeTupleVariant = VariantSeqSer;
    type SerializeMap = MapSer;
    type SerializeStruct = StructSer;
    type SerializeStructVariant = StructVariantSer;

    fn serialize_bool(self, v: bool) -> Result<Value, TypedError> {
        Ok(Value::Bool(v))
    }

    fn serialize_i8(self, v: i8) -> Result<Value, TypedError> {
        Ok(Value::from(v))
    }

    fn serialize_i16(self, v: i16) -> Result<Value, TypedError> {
        Ok(Value::from(v))
    }

    fn serialize_i32(self, v: i32) -> Result<Value, TypedError> {
        Ok(Value::from(v))
    }

    fn serialize_i64(self, v: i64) -> Result<Value, TypedError> {
        Ok(Value::from(v))
    }

    fn serialize_i128(self, v: i128) -> Result<Value, TypedError> {
        int_value(v).ok_or_else(|| out_of_range("an integer in the i64 or u64 range", v))
    }

    fn serialize_u8(self, v: u8) -> Result<Value, TypedError> {
        Ok(Value::from(v))
    }

    fn serialize_u16(self, v: u16) -> Result<Value, TypedError> {
        Ok(Value::from(v))
    }

    fn serialize_u32(self, v: u32) -> Result<Value, TypedError> {
        Ok(Value::from(v))
    }

    fn serialize_u64(self, v: u64) -> Result<Value, TypedError> {
        // `From<u64>` keeps the invariant: UInt only above i64::MAX.
        Ok(Value::from(v))
    }

    fn serialize_u128(self, v: u128) -> Result<Value, TypedError> {
        u64::try_from(v)
            .map(Value::from)
            .map_err(|_| out_of_range("an integer in the u64 range", v))
    }

    fn serialize_f32(self, v: f32) -> Result<Value, TypedError> {
        Ok(Value::Float(f64::from(v)))
    }

    fn serialize_f64(self, v: f64) -> Result<Value, TypedError> {
        Ok(Value::Float(v))
    }

    fn serialize_char(self, v: char) -> Result<Value, TypedError> {
        let mut buf = [0u8; 4];
        Ok(Value::Str(Str::from(v.encode_utf8(&mut buf) as &str)))
    }

    fn serialize_str(self, v: &str) -> Result<Value, TypedError> {
        Ok(Value::Str(Str::from(v)))
    }

    fn serialize_bytes(self, v: &[u8]) -> Result<Value, TypedError> {
        // The Value invariant: only bytes that are not UTF-8 stay Bytes.
        Ok(Value::from_wire_bytes(v))
    }

    fn serialize_none(self) -> Result<Value, TypedError> {
        Ok(Value::Null)
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Value, TypedError> {
        nested(|| value.serialize(self))
    }

    fn serialize_unit(self) -> Result<Value, TypedError> {
        Ok(Value::Null)
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<Value, TypedError> {
        Ok(Value::Null)
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<Value, TypedError> {
        Ok(Value::Str(Str::from(variant)))
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<Value, TypedError> {
        nested(|| value.serialize(self))
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<Value, TypedError> {
        let inner = nested(|| value.serialize(ValueSerializer)).map_err(|e| e.at_field(variant))?;
        Ok(Value::Map(vec![(Str::from(variant), inner)]))
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<SeqSer, TypedError> {
        Ok(SeqSer::new(len))
    }

    fn serialize_tuple(self, len: usize) -> Result<SeqSer, TypedError> {
        Ok(SeqSer::new(Some(len)))
    }

    fn serialize_tuple_struct(self, _name: &'static str, len: usize) -> Result<SeqSer, TypedError> {
        Ok(SeqSer::new(Some(len)))
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<VariantSeqSer, TypedError> {
        Ok(VariantSeqSer {
            variant,
            seq: SeqSer::new(Some(len)),
        })
    }

    fn serialize_map(self, len: Option<usize>) -> Result<MapSer, TypedError> {
        Ok(MapSer {
            entries: Vec::with_capacity(capacity(len)),
            key: None,
        })
    }

    fn serialize_struct(self, _name: &'static str, len: usize) -> Result<StructSer, TypedError> {
        Ok(StructSer::new(len))
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<StructVariantSer, TypedError> {
        Ok(StructVariantSer {
            variant,
            fields: StructSer::new(len),
        })
    }
}

/// Collects the elements of a sequence, tuple or tuple struct into a `List`.
pub(super) struct SeqSer {
    items: Vec<Value>,
}

impl SeqSer {
    fn new(len: Option<usize>) -> SeqSer {
        SeqSer {
            items: Vec::with_capacity(capacity(len)),
        }
    }

    fn push<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), TypedError> {
        let index = self.items.len();
        let v = nested(|| value.serialize(ValueSerializer)).map_err(|e| e.at_index(index))?;
        self.items.push(v);
        Ok(())
    }
}

impl ser::SerializeSeq for SeqSer {
    type Ok = Value;
    type Error = TypedError;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), TypedError> {
        self.push(value)
    }

    fn end(self) -> Result<Value, TypedError> {
        Ok(Value::List(self.items))
    }
}

impl ser::SerializeTuple for SeqSer {
    type Ok = Value;
    type Error = TypedError;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), TypedError> {
        self.push(value)
    }

    fn end(self) -> Result<Value, TypedError> {
        Ok(Value::List(self.items))
    }
}

impl ser::SerializeTupleStruct for SeqSer {
    type Ok = Value;
    type Error = TypedError;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), TypedError> {
        self.push(value)
    }

    fn end(self) -> Result<Value, TypedError> {
        Ok(Value::List(self.items))
    }
}

/// A tuple variant: `{variant: [fields…]}`.
pub(super) struct VariantSeqSer {
    variant: &'static str,
    seq: SeqSer,
}

impl ser::SerializeTupleVariant for VariantSeqSer {
    type Ok = Value;
    type Error = TypedError;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), TypedError> {
        let variant = self.variant;
        self.seq.push(value).map_err(|e| e.at_field(variant))
    }

    fn end(self) -> Result<Value, TypedError> {
        Ok(Value::Map(vec![(
            Str::from(self.variant),
            Value::List(self.seq.items),
        )]))
    }
}

/// Collects map entries; keys go through [`KeySerializer`].
pub(super) struct MapSer {
    entries: Vec<(Str, Value)>,
    /// The key of the entry being written, between `serialize_key` and `serialize_value`.
    key: Option<Str>,
}

impl ser::SerializeMap for MapSer {
    type Ok = Value;
    type Error = TypedError;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), TypedError> {
        self.key = Some(key.serialize(KeySerializer)?);
        Ok(())
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), TypedError> {
        let Some(key) = self.key.take() else {
            return Err(ser::Error::custom("map value written before its key"));
        };
        let v = nested(|| value.serialize(ValueSerializer)).map_err(|e| e.at_field(&key))?;
        self.entries.push((key, v));
        Ok(())
    }

    fn end(self) -> Result<Value, TypedError> {
        Ok(Value::Map(self.entries))
    }
}

/// Collects struct fields by name, in declaration order.
pub(super) struct StructSer {
    entries: Vec<(Str, Value)>,
}

impl StructSer {
    fn new(len: usize) -> StructSer {
        StructSer {
            entries: Vec::with_capacity(capacity(Some(len))),
        }
    }

    fn push<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), TypedError> {
        let v = nested(|| value.serialize(ValueSerializer)).map_err(|e| e.at_field(key))?;
        self.entries.push((Str::from(key), v));
        Ok(())
    }
}

impl ser::SerializeStruct for StructSer {
    type Ok = Value;
    type Error = TypedError;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), TypedError> {
        self.push(key, value)
    }

    fn end(self) -> Result<Value, TypedError> {
        Ok(Value::Map(self.entries))
    }
}

/// A struct variant: `{variant: {fields…}}`.
pub(super) struct StructVariantSer {
    variant: &'static str,
    fields: StructSer,
}

impl ser::SerializeStructVariant for StructVariantSer {
    type Ok = Value;
    type Error = TypedError;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), TypedError> {
        let variant = self.variant;
        self.fields
            .push(key, value)
            .map_err(|e| e.at_field(variant))
    }

    fn end(self) -> Result<Value, TypedError> {
        Ok(Value::Map(vec![(
            Str::from(self.variant),
            Value::Map(self.fields.entries),
        )]))
    }
}

/// Serializes a map key to a string. Strings and chars are taken as they are; integers and
/// bools are written in decimal / `true`/`false` (and parsed back by the lenient
/// deserializer); unit variants by name; newtypes and `Some` look through. Everything else
/// cannot be a [`Value::Map`] key.
struct KeySerializer;

fn key_error(found: &'static str) -> TypedError {
    TypedError::new(TypedErrorKind::KeyMustBeString(found))
}

fn int_key(v: impl itoa::Integer) -> Result<Str, TypedError> {
    Ok(Str::from(itoa::Buffer::new().format(v)))
}

impl ser::Serializer for KeySerializer {
    type Ok = Str;
    type Error = TypedError;
    type SerializeSeq = Impossible<Str, TypedError>;
    type SerializeTuple = Impossible<Str, TypedError>;
    type SerializeTupleStruct = Impossible<Str, TypedError>;
    type SerializeTupleVariant = Impossible<Str, TypedError>;
    type SerializeMap = Impossible<Str, TypedError>;
    type SerializeStruct = Impossible<Str, TypedError>;
    type SerializeStructVariant = Impossible<Str, TypedError>;

    fn serialize_bool(self, v: bool) -> Result<Str, TypedError> {
        Ok(Str::from(if v { "true" } else { "false" }))
    }

    fn serialize_i8(self, v: i8) -> Result<Str, TypedError> {
        int_key(v)
    }

    fn serialize_i16(self, v: i16) -> Result<Str, TypedError> {
        int_key(v)
    }

    fn serialize_i32(self, v: i32) -> Result<Str, TypedError> {
        int_key(v)
    }

    fn serialize_i64(self, v: i64) -> Result<Str, TypedError> {
        int_key(v)
    }

    fn serialize_i128(self, v: i128) -> Result<Str, TypedError> {
        int_key(v)
    }

    fn serialize_u8(self, v: u8) -> Result<Str, TypedError> {
        int_key(v)
    }

    fn serialize_u16(self, v: u16) -> Result<Str, TypedError> {
        int_key(v)
    }

    fn serialize_u32(self, v: u32) -> Result<Str, TypedError> {
        int_key(v)
    }

    fn serialize_u64(self, v: u64) -> Result<Str, TypedError> {
        int_key(v)
    }

    fn serialize_u128(self, v: u128) -> Result<Str, TypedError> {
        int_key(v)
    }

    fn serialize_f32(self, _v: f32) -> Result<Str, TypedError> {
        Err(key_error("float"))
    }

    fn serialize_f64(self, _v: f64) -> Result<Str, TypedError> {
        Err(key_error("float"))
    }

    fn serialize_char(self, v: char) -> Result<Str, TypedError> {
        let mut buf = [0u8; 4];
        Ok(Str::from(v.encode_utf8(&mut buf) as &str))
    }

    fn serialize_str(self, v: &str) -> Result<Str, TypedError> {
        Ok(Str::from(v))
    }

    fn serialize_bytes(self, v: &[u8]) -> Result<Str, TypedError> {
        std::str::from_utf8(v)
            .map(Str::from)
            .map_err(|_| key_error("bytes that are not UTF-8"))
    }

    fn serialize_none(self) -> Result<Str, TypedError> {
        Err(key_error("none"))
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Str, TypedError> {
        nested(|| value.serialize(self))
    }

    fn serialize_unit(self) -> Result<Str, TypedError> {
        Err(key_error("unit"))
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<Str, TypedError> {
        Err(key_error("unit struct"))
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<Str, TypedError> {
        Ok(Str::from(variant))
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<Str, TypedError> {
        nested(|| value.serialize(self))
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result<Str, TypedError> {
        Err(key_error("newtype variant"))
    }

    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq, TypedError> {
        Err(key_error("sequence"))
    }

    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple, TypedError> {
        Err(key_error("tuple"))
    }

    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleStruct, TypedError> {
        Err(key_error("tuple struct"))
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant, TypedError> {
        Err(key_error("tuple variant"))
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap, TypedError> {
        Err(key_error("map"))
    }

    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStruct, TypedError> {
        Err(key_error("struct"))
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant, TypedError> {
        Err(key_error("struct variant"))
    }
}

/// Serializes the top level of a message into its elements: sequences, tuples, tuple
/// structs and structs give their elements positionally, newtype structs are transparent,
/// enum variants are tagged lists (the variant name, then its fields), anything else is one
/// element. Below the top level, [`ValueSerializer`] takes over, so
/// nested structs stay maps.
pub(super) struct MsgSerializer;

/// A one-element message: wraps a [`ValueSerializer`] compound whose value is the element.
pub(super) struct One<S>(S);

fn one(v: Value) -> Vec<Value> {
    vec![v]
}

impl ser::Serializer for MsgSerializer {
    type Ok = Vec<Value>;
    type Error = TypedError;
    type SerializeSeq = MsgSeq;
    type SerializeTuple = MsgSeq;
    type SerializeTupleStruct = MsgSeq;
    type SerializeTupleVariant = MsgSeq;
    type SerializeMap = One<MapSer>;
    type SerializeStruct = MsgStruct;
    type SerializeStructVariant = MsgStruct;

    fn serialize_bool(self, v: bool) -> Result<Vec<Value>, TypedError> {
        ValueSerializer.serialize_bool(v).map(one)
    }

    fn serialize_i8(self, v: i8) -> Result<Vec<Value>, TypedError> {
        ValueSerializer.serialize_i8(v).map(one)
    }

    fn serialize_i16(self, v: i16) -> Result<Vec<Value>, TypedError> {
        ValueSerializer.serialize_i16(v).map(one)
    }

    fn serialize_i32(self, v: i32) -> Result<Vec<Value>, TypedError> {
        ValueSerializer.serialize_i32(v).map(one)
    }

    fn serialize_i64(self, v: i64) -> Result<Vec<Value>, TypedError> {
        ValueSerializer.serialize_i64(v).map(one)
    }

    fn serialize_i128(self, v: i128) -> Result<Vec<Value>, TypedError> {
        ValueSerializer.serialize_i128(v).map(one)
    }

    fn serialize_u8(self, v: u8) -> Result<Vec<Value>, TypedError> {
        ValueSerializer.serialize_u8(v).map(one)
    }

    fn serialize_u16(self, v: u16) -> Result<Vec<Value>, TypedError> {
        ValueSerializer.serialize_u16(v).map(one)
    }

    fn serialize_u32(self, v: u32) -> Result<Vec<Value>, TypedError> {
        ValueSerializer.serialize_u32(v).map(one)
    }

    fn serialize_u64(self, v: u64) -> Result<Vec<Value>, TypedError> {
        ValueSerializer.serialize_u64(v).map(one)
    }

    fn serialize_u128(self, v: u128) -> Result<Vec<Value>, TypedError> {
        ValueSerializer.serialize_u128(v).map(one)
    }

    fn serialize_f32(self, v: f32) -> Result<Vec<Value>, TypedError> {
        ValueSerializer.serialize_f32(v).map(one)
    }

    fn serialize_f64(self, v: f64) -> Result<Vec<Value>, TypedError> {
        ValueSerializer.serialize_f64(v).map(one)
    }

    fn serialize_char(self, v: char) -> Result<Vec<Value>, TypedError> {
        ValueSerializer.serialize_char(v).map(one)
    }

    fn serialize_str(self, v: &str) -> Result<Vec<Value>, TypedError> {
        ValueSerializer.serialize_str(v).map(one)
    }

    fn serialize_bytes(self, v: &[u8]) -> Result<Vec<Value>, TypedError> {
        ValueSerializer.serialize_bytes(v).map(one)
    }

    fn serialize_none(self) -> Result<Vec<Value>, TypedError> {
        ValueSerializer.serialize_none().map(one)
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Vec<Value>, TypedError> {
        // `Some(x)` is one element, whatever x is, so that it mirrors `None` -> `[null]`.
        ValueSerializer.serialize_some(value).map(one)
    }

    fn serialize_unit(self) -> Result<Vec<Value>, TypedError> {
        ValueSerializer.serialize_unit().map(one)
    }

    fn serialize_unit_struct(self, name: &'static str) -> Result<Vec<Value>, TypedError> {
        ValueSerializer.serialize_unit_struct(name).map(one)
    }

    fn serialize_unit_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
    ) -> Result<Vec<Value>, TypedError> {
        ValueSerializer
            .serialize_unit_variant(name, index, variant)
            .map(one)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<Vec<Value>, TypedError> {
        nested(|| value.serialize(self))
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<Vec<Value>, TypedError> {
        // The tag, then the payload as one element.
        let mut seq = tagged(variant, 1);
        seq.push(value)?;
        Ok(seq.items)
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<MsgSeq, TypedError> {
        Ok(MsgSeq(SeqSer::new(len)))
    }

    fn serialize_tuple(self, len: usize) -> Result<MsgSeq, TypedError> {
        Ok(MsgSeq(SeqSer::new(Some(len))))
    }

    fn serialize_tuple_struct(self, _name: &'static str, len: usize) -> Result<MsgSeq, TypedError> {
        Ok(MsgSeq(SeqSer::new(Some(len))))
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<MsgSeq, TypedError> {
        Ok(MsgSeq(tagged(variant, len)))
    }

    fn serialize_map(self, len: Option<usize>) -> Result<One<MapSer>, TypedError> {
        ValueSerializer.serialize_map(len).map(One)
    }

    fn serialize_struct(self, _name: &'static str, len: usize) -> Result<MsgStruct, TypedError> {
        Ok(MsgStruct {
            seq: SeqSer::new(Some(len)),
            written: 0,
        })
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<MsgStruct, TypedError> {
        Ok(MsgStruct {
            seq: tagged(variant, len),
            written: 1,
        })
    }
}

/// The start of a top-level enum variant's message: the variant name as the tag, room for
/// `len` elements after it.
fn tagged(variant: &'static str, len: usize) -> SeqSer {
    let mut seq = SeqSer::new(Some(len.saturating_add(1)));
    seq.items.push(Value::Str(Str::from(variant)));
    seq
}

/// The elements of a top-level sequence, tuple, tuple struct or tuple variant (after its
/// tag).
pub(super) struct MsgSeq(SeqSer);

impl ser::SerializeTupleVariant for MsgSeq {
    type Ok = Vec<Value>;
    type Error = TypedError;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), TypedError> {
        self.0.push(value)
    }

    fn end(self) -> Result<Vec<Value>, TypedError> {
        Ok(self.0.items)
    }
}

impl ser::SerializeSeq for MsgSeq {
    type Ok = Vec<Value>;
    type Error = TypedError;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), TypedError> {
        self.0.push(value)
    }

    fn end(self) -> Result<Vec<Value>, TypedError> {
        Ok(self.0.items)
    }
}

impl ser::SerializeTuple for MsgSeq {
    type Ok = Vec<Value>;
    type Error = TypedError;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), TypedError> {
        self.0.push(value)
    }

    fn end(self) -> Result<Vec<Value>, TypedError> {
        Ok(self.0.items)
    }
}

impl ser::SerializeTupleStruct for MsgSeq {
    type Ok = Vec<Value>;
    type Error = TypedError;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), TypedError> {
        self.0.push(value)
    }

    fn end(self) -> Result<Vec<Value>, TypedError> {
        Ok(self.0.items)
    }
}

/// The fields of a top-level struct (or struct variant, after its tag), as positional
/// elements.
pub(super) struct MsgStruct {
    seq: SeqSer,
    /// Elements up to and including the last field actually written. Skipped fields are
    /// `null` placeholders so later fields keep their positions; skipped fields at the end
    /// are cut off, so optional trailing arguments are absent as a Perl sender leaves them.
    written: usize,
}

impl ser::SerializeStruct for MsgStruct {
    type Ok = Vec<Value>;
    type Error = TypedError;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        _key: &'static str,
        value: &T,
    ) -> Result<(), TypedError> {
        self.seq.push(value)?;
        self.written = self.seq.items.len();
        Ok(())
    }

    fn skip_field(&mut self, _key: &'static str) -> Result<(), TypedError> {
        self.seq.items.push(Value::Null);
        Ok(())
    }

    fn end(mut self) -> Result<Vec<Value>, TypedError> {
        self.seq.items.truncate(self.written);
        Ok(self.seq.items)
    }
}

impl ser::SerializeStructVariant for MsgStruct {
    type Ok = Vec<Value>;
    type Error = TypedError;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), TypedError> {
        ser::SerializeStruct::serialize_field(self, key, value)
    }

    fn skip_field(&mut self, key: &'static str) -> Result<(), TypedError> {
        ser::SerializeStruct::skip_field(self, key)
    }

    fn end(self) -> Result<Vec<Value>, TypedError> {
        ser::SerializeStruct::end(self)
    }
}

impl ser::SerializeMap for One<MapSer> {
    type Ok = Vec<Value>;
    type Error = TypedError;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), TypedError> {
        self.0.serialize_key(key)
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), TypedError> {
        self.0.serialize_value(value)
    }

    fn end(self) -> Result<Vec<Value>, TypedError> {
        ser::SerializeMap::end(self.0).map(one)
    }
}

//! `fc::variant` and `fc::variant_object` as hello's `user_data` and fc exceptions carry them.
//!
//! In fc::raw a variant is a one-byte type tag then the value: 0 null, 1 int64, 2 uint64,
//! 4 bool, 5 string, 6 array, 7 object. Tags 3 (double) and 8 (blob) exist in fc's enumeration
//! but fc can neither pack nor unpack them, so neither do we. An object is a varint count of
//! (string key, variant) pairs in insertion order.
//!
//! JSON cannot tell an int64 of 64 from a uint64 of 64. Like fc's JSON parser we read a
//! non-negative number as uint64 and a negative one as int64; the single-key object
//! `{"$int64": n}` forces int64, and is printed in [`crate::wire::json::lossless`] mode so a
//! decoded message can be re-encoded byte for byte; there an object with keys starting with "$"
//! is wrapped as `{"$object": {...}}` so its keys are never mistaken for markers.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeTuple, Serializer};
use serde::{Deserialize, Serialize};

/// The JSON key that marks a non-negative number as fc's int64.
pub const INT64_MARKER: &str = "$int64";
/// The JSON key that wraps an object whose own keys start with "$", so they are not read as
/// markers (lossless mode only).
pub const OBJECT_MARKER: &str = "$object";

const TAG_NULL: u8 = 0;
const TAG_INT64: u8 = 1;
const TAG_UINT64: u8 = 2;
const TAG_BOOL: u8 = 4;
const TAG_STRING: u8 = 5;
const TAG_ARRAY: u8 = 6;
const TAG_OBJECT: u8 = 7;

/// A dynamically typed fc value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Variant {
    Null,
    Int64(i64),
    Uint64(u64),
    Bool(bool),
    String(String),
    Array(Vec<Variant>),
    Object(VariantObject),
}

/// An ordered list of key/value pairs, as fc keeps them.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct VariantObject(pub Vec<(String, Variant)>);

impl VariantObject {
    /// An empty object.
    pub fn new() -> Self {
        Self(Vec::new())
    }

    /// Appends or replaces `key` (fc's `mutable_variant_object::set`).
    pub fn set(&mut self, key: impl Into<String>, value: Variant) {
        let key = key.into();
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.0.push((key, value)),
        }
    }

    /// The value stored under `key`, if any.
    pub fn get(&self, key: &str) -> Option<&Variant> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Variant {
    /// The string inside, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Variant::String(s) => Some(s),
            _ => None,
        }
    }

    /// The number inside as u64, if it is a non-negative integer of either kind.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Variant::Uint64(v) => Some(*v),
            Variant::Int64(v) => u64::try_from(*v).ok(),
            _ => None,
        }
    }
}

impl Serialize for Variant {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            return match self {
                Variant::Null => s.serialize_unit(),
                Variant::Int64(v) if *v >= 0 && crate::wire::json::lossless() => {
                    let mut m = s.serialize_map(Some(1))?;
                    m.serialize_entry(INT64_MARKER, v)?;
                    m.end()
                }
                Variant::Int64(v) => s.serialize_i64(*v),
                Variant::Uint64(v) => s.serialize_u64(*v),
                Variant::Bool(v) => s.serialize_bool(*v),
                Variant::String(v) => s.serialize_str(v),
                Variant::Array(v) => v.serialize(s),
                Variant::Object(v)
                    if crate::wire::json::lossless()
                        && v.0.iter().any(|(k, _)| k.starts_with('$')) =>
                {
                    let mut m = s.serialize_map(Some(1))?;
                    m.serialize_entry(OBJECT_MARKER, v)?;
                    m.end()
                }
                Variant::Object(v) => v.serialize(s),
            };
        }
        match self {
            Variant::Null => {
                let mut t = s.serialize_tuple(1)?;
                t.serialize_element(&TAG_NULL)?;
                t.end()
            }
            Variant::Int64(v) => tagged(s, TAG_INT64, v),
            Variant::Uint64(v) => tagged(s, TAG_UINT64, v),
            Variant::Bool(v) => tagged(s, TAG_BOOL, v),
            Variant::String(v) => tagged(s, TAG_STRING, v),
            Variant::Array(v) => tagged(s, TAG_ARRAY, v),
            Variant::Object(v) => tagged(s, TAG_OBJECT, v),
        }
    }
}

fn tagged<S: Serializer, T: Serialize>(s: S, tag: u8, value: &T) -> Result<S::Ok, S::Error> {
    let mut t = s.serialize_tuple(2)?;
    t.serialize_element(&tag)?;
    t.serialize_element(value)?;
    t.end()
}

impl<'de> Deserialize<'de> for Variant {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            d.deserialize_any(JsonVariant)
        } else {
            d.deserialize_tuple(2, RawVariant)
        }
    }
}

struct RawVariant;

impl<'de> Visitor<'de> for RawVariant {
    type Value = Variant;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an fc::variant")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Variant, A::Error> {
        let tag: u8 = seq
            .next_element()?
            .ok_or_else(|| de::Error::custom("variant tag missing"))?;
        fn value<'de, A: SeqAccess<'de>, T: Deserialize<'de>>(seq: &mut A) -> Result<T, A::Error> {
            seq.next_element()?
                .ok_or_else(|| de::Error::custom("variant value missing"))
        }
        Ok(match tag {
            TAG_NULL => Variant::Null,
            TAG_INT64 => Variant::Int64(value(&mut seq)?),
            TAG_UINT64 => Variant::Uint64(value(&mut seq)?),
            TAG_BOOL => Variant::Bool(value(&mut seq)?),
            TAG_STRING => Variant::String(value(&mut seq)?),
            TAG_ARRAY => Variant::Array(value(&mut seq)?),
            TAG_OBJECT => Variant::Object(value(&mut seq)?),
            other => {
                return Err(de::Error::custom(format!(
                    "unsupported fc::variant type tag {other}"
                )));
            }
        })
    }
}

struct JsonVariant;

impl<'de> Visitor<'de> for JsonVariant {
    type Value = Variant;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("null, an integer, a bool, a string, an array or an object")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Variant, E> {
        Ok(Variant::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Variant, E> {
        Ok(Variant::Null)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Variant, E> {
        Ok(Variant::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Variant, E> {
        Ok(if v >= 0 {
            Variant::Uint64(v as u64)
        } else {
            Variant::Int64(v)
        })
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Variant, E> {
        Ok(Variant::Uint64(v))
    }
    fn visit_f64<E: de::Error>(self, _v: f64) -> Result<Variant, E> {
        Err(E::custom("fc::variant doubles cannot be packed"))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Variant, E> {
        Ok(Variant::String(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Variant, E> {
        Ok(Variant::String(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Variant, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element()? {
            out.push(v);
        }
        Ok(Variant::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Variant, A::Error> {
        let Some(first) = map.next_key::<String>()? else {
            return Ok(Variant::Object(VariantObject::new()));
        };
        let marked = match first.as_str() {
            INT64_MARKER => Some(Variant::Int64(map.next_value()?)),
            OBJECT_MARKER => Some(Variant::Object(map.next_value()?)),
            _ => None,
        };
        if let Some(v) = marked {
            if map.next_key::<String>()?.is_some() {
                return Err(de::Error::custom(format!(
                    "{first} must be the only key of its object"
                )));
            }
            return Ok(v);
        }
        let mut obj = VariantObject::new();
        obj.set(first, map.next_value()?);
        while let Some((k, v)) = map.next_entry::<String, Variant>()? {
            obj.set(k, v);
        }
        Ok(Variant::Object(obj))
    }
}

impl Serialize for VariantObject {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

struct ObjectVisitor;

impl<'de> Visitor<'de> for ObjectVisitor {
    type Value = VariantObject;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an fc::variant_object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<VariantObject, A::Error> {
        let mut obj = VariantObject::new();
        while let Some((k, v)) = map.next_entry::<String, Variant>()? {
            obj.set(k, v);
        }
        Ok(obj)
    }
}

impl<'de> Deserialize<'de> for VariantObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ObjectVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::raw;

    #[test]
    fn raw_tags() {
        let mut obj = VariantObject::new();
        obj.set("a", Variant::Int64(-5));
        obj.set("b", Variant::Uint64(64));
        obj.set(
            "c",
            Variant::Array(vec![Variant::Null, Variant::Bool(true)]),
        );
        let bytes = raw::to_vec(&obj).unwrap();
        assert_eq!(
            hex::encode(&bytes),
            "030161 01fbffffffffffffff 0162 024000000000000000 0163 0602 00 0401".replace(' ', "")
        );
        assert_eq!(raw::from_slice::<VariantObject>(&bytes).unwrap(), obj);
    }

    #[test]
    fn double_and_blob_tags_are_refused() {
        assert!(raw::from_slice::<Variant>(&[3, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
        assert!(raw::from_slice::<Variant>(&[8, 0]).is_err());
    }

    #[test]
    fn json_int64_marker_round_trips() {
        let v = Variant::Array(vec![
            Variant::Int64(64),
            Variant::Uint64(64),
            Variant::Int64(-1),
        ]);
        let plain = serde_json::to_string(&v).unwrap();
        assert_eq!(plain, "[64,64,-1]");
        let marked = crate::wire::json::with_lossless(|| serde_json::to_string(&v).unwrap());
        assert_eq!(marked, r#"[{"$int64":64},64,-1]"#);
        assert_eq!(serde_json::from_str::<Variant>(&marked).unwrap(), v);
    }
}

//! fc::raw deserializer over a byte slice.

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};

use super::{MAX_DEPTH, RawError, varint};

/// Decodes a whole value; bytes left over are an error.
pub fn from_slice<'de, T: de::Deserialize<'de>>(input: &'de [u8]) -> Result<T, RawError> {
    let (value, used) = from_slice_prefix(input)?;
    if used != input.len() {
        return Err(RawError::TrailingBytes(input.len() - used));
    }
    Ok(value)
}

/// Decodes a value from the front of `input` and says how many bytes it took. fc's unpack of a
/// message ignores whatever follows the last field, and so does the message codec built on this.
pub fn from_slice_prefix<'de, T: de::Deserialize<'de>>(
    input: &'de [u8],
) -> Result<(T, usize), RawError> {
    let mut de = Deserializer::new(input);
    let value = T::deserialize(&mut de)?;
    Ok((value, input.len() - de.input.len()))
}

/// Reads fc::raw from a byte slice, tracking nesting depth.
pub struct Deserializer<'de> {
    input: &'de [u8],
    depth: usize,
}

impl<'de> Deserializer<'de> {
    /// A deserializer over `input`.
    pub fn new(input: &'de [u8]) -> Self {
        Self { input, depth: 0 }
    }

    fn take(&mut self, n: usize) -> Result<&'de [u8], RawError> {
        if self.input.len() < n {
            return Err(RawError::UnexpectedEof {
                needed: n - self.input.len(),
            });
        }
        let (head, tail) = self.input.split_at(n);
        self.input = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], RawError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn varint(&mut self) -> Result<u64, RawError> {
        let (v, used) = varint::read(self.input)?;
        self.input = &self.input[used..];
        Ok(v)
    }

    /// A length prefix, refused unless `len * min_item_size` bytes are still there: every
    /// element of every fc::raw container takes at least one byte, so a length beyond the input
    /// is a lie and nothing is allocated for it.
    fn length(&mut self) -> Result<usize, RawError> {
        let len = self.varint()?;
        let limit = self.input.len();
        if len > limit as u64 {
            return Err(RawError::LengthTooLarge { len, limit });
        }
        Ok(len as usize)
    }

    fn byte_string(&mut self) -> Result<&'de [u8], RawError> {
        let len = self.length()?;
        self.take(len)
    }

    fn enter(&mut self) -> Result<(), RawError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(RawError::TooDeep(MAX_DEPTH));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    fn bool_byte(&mut self) -> Result<bool, RawError> {
        match self.take(1)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(RawError::InvalidBool(b)),
        }
    }

    fn nested<V, F>(&mut self, f: F) -> Result<V, RawError>
    where
        F: FnOnce(&mut Self) -> Result<V, RawError>,
    {
        self.enter()?;
        let r = f(self);
        self.leave();
        r
    }
}

macro_rules! fixed {
    ($method:ident, $visit:ident, $ty:ty) => {
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, RawError> {
            visitor.$visit(<$ty>::from_le_bytes(self.array()?))
        }
    };
}

impl<'de> de::Deserializer<'de> for &mut Deserializer<'de> {
    type Error = RawError;

    fn is_human_readable(&self) -> bool {
        false
    }

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, RawError> {
        Err(RawError::Unsupported("fc::raw is not self-describing"))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, RawError> {
        visitor.visit_bool(self.bool_byte()?)
    }

    fixed!(deserialize_i8, visit_i8, i8);
    fixed!(deserialize_i16, visit_i16, i16);
    fixed!(deserialize_i32, visit_i32, i32);
    fixed!(deserialize_i64, visit_i64, i64);
    fixed!(deserialize_u8, visit_u8, u8);
    fixed!(deserialize_u16, visit_u16, u16);
    fixed!(deserialize_u32, visit_u32, u32);
    fixed!(deserialize_u64, visit_u64, u64);
    fixed!(deserialize_f32, visit_f32, f32);
    fixed!(deserialize_f64, visit_f64, f64);

    fn deserialize_char<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, RawError> {
        Err(RawError::Unsupported("char"))
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, RawError> {
        // fc strings are byte strings. A peer may send any bytes (the reference accepts them),
        // so invalid UTF-8 is replaced rather than refused.
        let bytes = self.byte_string()?;
        match std::str::from_utf8(bytes) {
            Ok(s) => visitor.visit_borrowed_str(s),
            Err(_) => visitor.visit_string(String::from_utf8_lossy(bytes).into_owned()),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, RawError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, RawError> {
        visitor.visit_borrowed_bytes(self.byte_string()?)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, RawError> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, RawError> {
        if self.bool_byte()? {
            self.nested(|de| visitor.visit_some(de))
        } else {
            visitor.visit_none()
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, RawError> {
        visitor.visit_unit()
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, RawError> {
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, RawError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, RawError> {
        let len = self.length()?;
        self.nested(|de| visitor.visit_seq(Counted { de, left: len }))
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, RawError> {
        self.nested(|de| visitor.visit_seq(Counted { de, left: len }))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, RawError> {
        self.deserialize_tuple(len, visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, RawError> {
        let len = self.length()?;
        self.nested(|de| visitor.visit_map(Counted { de, left: len }))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, RawError> {
        self.deserialize_tuple(fields.len(), visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, RawError> {
        self.nested(|de| visitor.visit_enum(de))
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, RawError> {
        Err(RawError::Unsupported("identifiers"))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, RawError> {
        Err(RawError::Unsupported("skipping unknown data"))
    }
}

/// A run of `left` items with no prefix of its own (the length, if any, was read already).
struct Counted<'a, 'de> {
    de: &'a mut Deserializer<'de>,
    left: usize,
}

impl<'de> de::SeqAccess<'de> for Counted<'_, 'de> {
    type Error = RawError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, RawError> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(&mut *self.de).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.left)
    }
}

impl<'de> de::MapAccess<'de> for Counted<'_, 'de> {
    type Error = RawError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, RawError> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(&mut *self.de).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, RawError> {
        seed.deserialize(&mut *self.de)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.left)
    }
}

impl<'de> de::EnumAccess<'de> for &mut Deserializer<'de> {
    type Error = RawError;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self), RawError> {
        let tag = self.varint()?;
        let tag = u32::try_from(tag).map_err(|_| RawError::InvalidEnum(tag))?;
        let value = seed.deserialize(tag.into_deserializer())?;
        Ok((value, self))
    }
}

impl<'de> de::VariantAccess<'de> for &mut Deserializer<'de> {
    type Error = RawError;

    fn unit_variant(self) -> Result<(), RawError> {
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, RawError> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, RawError> {
        de::Deserializer::deserialize_tuple(self, len, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, RawError> {
        de::Deserializer::deserialize_tuple(self, fields.len(), visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::raw::to_vec;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Sample {
        a: u8,
        b: u32,
        c: String,
        d: Vec<u16>,
        e: Option<bool>,
        f: [u8; 3],
        g: i64,
    }

    #[test]
    fn struct_layout_is_fields_in_order() {
        let s = Sample {
            a: 1,
            b: 0x01020304,
            c: "hi".into(),
            d: vec![5, 6],
            e: Some(true),
            f: [7, 8, 9],
            g: -2,
        };
        let bytes = to_vec(&s).unwrap();
        assert_eq!(
            hex::encode(&bytes),
            "01040302010268690205000600010107080 9feffffffffffffff".replace(' ', "")
        );
        assert_eq!(from_slice::<Sample>(&bytes).unwrap(), s);
    }

    #[test]
    fn hostile_lengths_are_refused_before_allocating() {
        // A vector claiming 2^40 elements in a 6-byte input.
        let bytes = [0x80, 0x80, 0x80, 0x80, 0x80, 0x20];
        assert!(matches!(
            from_slice::<Vec<u64>>(&bytes),
            Err(RawError::LengthTooLarge { .. })
        ));
        assert!(matches!(
            from_slice::<String>(&[0x05, b'a']),
            Err(RawError::LengthTooLarge { len: 5, limit: 1 })
        ));
    }

    #[test]
    fn bool_must_be_zero_or_one() {
        assert_eq!(from_slice::<bool>(&[2]), Err(RawError::InvalidBool(2)));
        assert_eq!(
            from_slice::<Option<u8>>(&[3, 0]),
            Err(RawError::InvalidBool(3))
        );
    }

    #[test]
    fn trailing_bytes_are_reported_by_the_strict_entry_point() {
        assert_eq!(from_slice::<u8>(&[1, 2]), Err(RawError::TrailingBytes(1)));
        assert_eq!(from_slice_prefix::<u8>(&[1, 2]).unwrap(), (1, 1));
    }

    #[test]
    fn deep_nesting_is_refused() {
        // Option<Option<...>> nested beyond the limit, all present.
        let bytes = vec![1u8; MAX_DEPTH + 2];
        type Deep = Option<Box<Nest>>;
        #[derive(Deserialize, Debug)]
        struct Nest(#[allow(dead_code)] Deep);
        assert_eq!(
            from_slice_prefix::<Deep>(&bytes).unwrap_err(),
            RawError::TooDeep(MAX_DEPTH)
        );
    }
}

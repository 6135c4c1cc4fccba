//! fc::raw as a serde data format.
//!
//! fc::raw is not self-describing: a value is its fields in declaration order, fixed-width
//! integers little-endian, `bool` one byte (0 or 1), strings and vectors behind an unsigned
//! LEB128 length (fc's `unsigned_int`), optionals behind a presence byte, fixed arrays and
//! structs with no prefix at all, and tagged unions (`static_variant`) behind a LEB128 tag.
//! The serde mapping is:
//!
//! | serde | fc::raw |
//! |---|---|
//! | bool, u8..u64, i8..i64, f32, f64 | fixed width, little-endian |
//! | str, bytes, seq, map | varint length, then the items |
//! | tuple, tuple struct, struct, `[T; N]` | the items, no prefix |
//! | option | presence byte, then the value |
//! | unit, unit struct | nothing |
//! | enum variant | varint variant index, then the payload |
//!
//! Both sides report `is_human_readable() == false`, so one set of types can print itself as
//! the reference's JSON (hex hashes, "ip:port", ISO times) under serde_json and as fc::raw here.
//!
//! Decoding never trusts the input: every declared length is checked against the bytes that
//! are left before anything is allocated, and nesting is capped at [`MAX_DEPTH`].

mod de;
mod error;
mod ser;
pub mod varint;

pub use de::{Deserializer, from_slice, from_slice_prefix};
pub use error::RawError;
pub use ser::{Serializer, to_vec, to_writer};

/// Deepest nesting of containers decoded. fc allows more, but no graphene message nests more
/// than a handful of levels except through `fc::variant`, where a hostile peer could otherwise
/// nest until our stack runs out.
pub const MAX_DEPTH: usize = 64;

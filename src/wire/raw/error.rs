//! Errors of the fc::raw format.

use std::fmt::Display;

/// Why bytes could not be decoded as (or a value encoded into) fc::raw.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RawError {
    /// The input ended in the middle of a value.
    #[error("input ended early: needed {needed} more bytes")]
    UnexpectedEof { needed: usize },
    /// The value was decoded but bytes are left over.
    #[error("{0} bytes left over after the value")]
    TrailingBytes(usize),
    /// A varint longer than 64 bits.
    #[error("varint overflows 64 bits")]
    VarintOverflow,
    /// A declared length that cannot fit in what is left of the input, or above the limit.
    #[error("declared length {len} exceeds the {limit} bytes available")]
    LengthTooLarge { len: u64, limit: usize },
    /// Nesting deeper than the limit.
    #[error("nesting deeper than {0}")]
    TooDeep(usize),
    /// A bool or optional presence byte other than 0 or 1.
    #[error("invalid bool byte {0:#04x}")]
    InvalidBool(u8),
    /// A variant type tag fc cannot unpack (3 double, 8 blob, or unknown).
    #[error("unsupported fc::variant type tag {0}")]
    InvalidVariantTag(u8),
    /// An enum discriminant outside the known values.
    #[error("invalid enum value {0}")]
    InvalidEnum(u64),
    /// The serde data model asked for something fc::raw cannot express.
    #[error("not expressible in fc::raw: {0}")]
    Unsupported(&'static str),
    /// A type's own validation failed.
    #[error("{0}")]
    Custom(String),
}

impl serde::ser::Error for RawError {
    fn custom<T: Display>(msg: T) -> Self {
        RawError::Custom(msg.to_string())
    }
}

impl serde::de::Error for RawError {
    fn custom<T: Display>(msg: T) -> Self {
        RawError::Custom(msg.to_string())
    }
}

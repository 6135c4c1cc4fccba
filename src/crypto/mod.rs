//! Cryptography of the graphene stcp transport: the ephemeral key exchange, the per-direction
//! CBC streams, fc's CityHash (which seeds the IV) and the node identity signatures.
//!
//! This layer knows nothing of frames or messages.

pub mod cipher;
pub mod city;
mod error;
#[cfg(fuzzing)]
mod fuzz_memo;
pub mod identity;
pub mod key_exchange;
pub mod keys;

pub use cipher::CipherStream;
pub use error::CryptoError;
pub use identity::{CompactSignature, NodeKey};
pub use key_exchange::{ExchangeProgress, KeyExchange, SessionKeys};
pub use keys::PublicKeyBytes;

//! The wire layer: frames, the fc::raw format and the message types.
//!
//! Nothing here knows about sockets or peers.

pub mod channel;
pub mod frame;
pub mod json;
pub mod message;
pub mod protocol;
pub mod raw;
pub mod time;
pub mod types;
pub mod variant;

pub use message::{DecodeError, Message};

//! grapevine: a BitShares (graphene) peer-to-peer node that speaks the protocol byte for byte.
//!
//! The crate is a sans-IO protocol core driven by a thin runtime:
//!
//! ```text
//!   socket bytes ─► crypto (CipherStream) ─► wire (frames, fc::raw, Message) ─► peer ─► node
//!   socket bytes ◄─ crypto (CipherStream) ◄─ wire (frame + padding)          ◄─ peer ◄─ node
//! ```
//!
//! - [`crypto`]: the stcp key exchange, the per-direction AES-256-CBC streams, fc's CityHash and
//!   the node identity signatures;
//! - [`wire`]: frames, the fc::raw serde format and every graphene message;
//! - [`cli`]: the `grapevine` command line.

pub mod api;
pub mod app;
pub mod cli;
pub mod crypto;
pub mod fuzzing;
pub mod node;
pub mod peer;
pub mod runtime;
pub mod store;
pub mod wire;

//! grapevine: a BitShares (graphene) peer-to-peer node that speaks the protocol byte for byte.
//!
//! The crate is a sans-IO protocol core driven by a thin runtime:
//!
//! ```text
//!   socket bytes ─► crypto (CipherStream) ─► wire (frames, fc::raw, Message) ─► peer ─► node
//!   socket bytes ◄─ crypto (CipherStream) ◄─ wire (frame + padding)          ◄─ peer ◄─ node
//! ```
//!
//! Modules, from the bytes up:
//!
//! - [`crypto`]: the stcp key exchange, the per-direction AES-256-CBC streams, fc's CityHash and
//!   the node identity signatures;
//! - [`wire`]: frames, the fc::raw serde format, fc::variant, the lossless JSON documents and
//!   every graphene message;
//! - [`peer`]: one connection's protocol state as the node core sees it (sans IO);
//! - [`node`]: the node's policy, sans IO: handshakes, connection lists, sync, item fetching,
//!   broadcast, bans and bandwidth, driven by `now` and emitting commands (plus a simulated
//!   network for tests);
//! - [`app`]: the application boundary ([`app::Delegate`]): what the node asks of the chain
//!   it relays, and the default relay store;
//! - [`store`]: what the node keeps on disk: the peer database and the ban list, written
//!   atomically, unreadable files moved aside;
//! - [`runtime`]: the tokio runtime around the node core: listener, dialer, connection tasks,
//!   timers and the [`runtime::NodeHandle`];
//! - [`api`]: the status API: HTTP + JSON (`/info`, `/peers`, ...), Prometheus metrics and
//!   the live status page;
//! - [`cli`]: the `grapevine` command line (`run`, `info`, `peers`, `bans`, `unban`,
//!   `broadcast`, `inspect`, `encode`);
//! - [`fuzzing`]: the fuzz targets' logic, called by `fuzz/` and replayed by `cargo test`;
//! - [`bench`](mod@bench): `grapevine-bench`, load generators that speak the protocol to any graphene node
//!   (or one they start), each figure beside a baseline of the same run.
//!
//! The node serves one chain: [`node::NodeConfig::chain_id`] builds the default application
//! and [`runtime::start_with_delegate`] refuses an application serving another.

pub mod api;
pub mod app;
pub mod bench;
pub mod cli;
pub mod crypto;
pub mod fuzzing;
pub mod node;
pub mod peer;
pub mod runtime;
pub mod store;
pub mod wire;

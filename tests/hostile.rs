//! The hostile-peer table (SECURITY.md), as tests: for each row a scripted peer on a real
//! socket (127.0.0.N, port 0) misbehaves the way the row says, and the test asserts what the
//! node does to it, that an honest peer connected beside it keeps being served (its time
//! request answered in under [`common::SERVED_WITHIN`]), and that the node's own accounting
//! of memory stays within its bounds.

#[path = "support/mod.rs"]
mod support;

#[path = "hostile/bans.rs"]
mod bans;
#[path = "hostile/common.rs"]
mod common;
#[path = "hostile/floods.rs"]
mod floods;
#[path = "hostile/handshake.rs"]
mod handshake;
#[path = "hostile/limits.rs"]
mod limits;
#[path = "hostile/messages.rs"]
mod messages;
#[path = "hostile/slowloris.rs"]
mod slowloris;
#[path = "hostile/wire.rs"]
mod wire;

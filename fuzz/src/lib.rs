//! The fuzz targets call into `grapevine::fuzzing`, which `cargo test` also replays.

pub use grapevine::fuzzing::*;

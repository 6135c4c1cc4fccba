//! The wire layer: frames, the fc::raw format and the message types.
pub mod raw;

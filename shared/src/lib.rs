//! Types both halves of voxline compile: the edge (wasm32) and the media sidecar (native).
//!
//! Everything here is plain data with serde; no I/O, no clocks, no randomness.

pub mod call;

pub use call::{CallStatus, EndedReason};

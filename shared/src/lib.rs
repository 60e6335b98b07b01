//! Types both halves of voxline compile: the edge (wasm32) and the media sidecar (native).
//!
//! Everything here is plain data with serde, plus pure HMAC signing; no I/O, no
//! clocks, no randomness (time and nonces come in as arguments).

pub mod analysis;
pub mod call;
pub mod engine;
pub mod ip_ranges;
pub mod sidecar_link;
pub mod signing;
pub mod sip_digest;
pub mod sip_outcome;

pub use call::{CallStatus, EndedReason};
pub use engine::{EngineKind, OfferedEngine};
pub use sidecar_link::PROTOCOL_VERSION;

//! Traffic control, sans-IO: per-tenant rate limits and idempotency keys.
//!
//! Exactness comes from one `RateLimiter` Durable Object per tenant (glue in
//! `glue/rate_limiter.rs`) being the single writer of that tenant's counters and
//! idempotency records: [`admit`] is a synchronous decision with no I/O in
//! the middle, so one round trip checks every scope of a request at once
//! (API key, client IP, destination number) and begins its idempotency key.
//!
//! Rate limits are FIXED windows aligned on multiples of `window_seconds`
//! since the unix epoch: a counter per (scope, window). Chosen over a
//! sliding window because it is exact, O(1) in memory per scope and its
//! `Reset` is a fact rather than an estimate; the cost is that a client may
//! spend up to 2x the limit across one window boundary. A rejected request
//! consumes nothing in any scope.

pub mod auth_failures;
pub mod idempotency;
#[cfg(any(test, feature = "bench-support"))]
pub mod memory;
pub mod port;
pub mod rate;
#[cfg(test)]
mod tests;
pub mod tokens;

pub use auth_failures::*;
pub use idempotency::*;
pub use port::*;
pub use rate::*;

//! Request limits that both the validators (`api::validate`, the handlers)
//! and the OpenAPI document (`api::openapi`) read, so the document states
//! exactly what the server enforces.

/// Largest body any JSON endpoint accepts (the sidecar link's too).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Page size of a listing when `limit` is not given.
pub const LIST_LIMIT_DEFAULT: u32 = 20;
/// Largest `limit` a listing takes.
pub const LIST_LIMIT_MAX: u32 = 100;

/// `Retry-After` on `concurrency_limit_reached`.
pub const CONCURRENCY_RETRY_AFTER_SECONDS: u64 = 15;

/// Largest `max_concurrent_calls` a tenant may set.
pub const MAX_CONCURRENT_CALLS_MAX: i64 = 10_000;

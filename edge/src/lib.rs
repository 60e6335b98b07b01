//! voxline edge: the public call API as a Cloudflare Worker.
//!
//! Everything but `glue` is plain Rust that compiles and tests natively
//! (`cargo test -p voxline-edge`); `glue` (wasm32-unknown-unknown only: the
//! Worker) adapts workers-rs requests, KV, Durable Objects, the Queue, R2,
//! the clock and secrets to the ports the plain modules define.
//!
//! Groups, by responsibility:
//!
//! - [`api`]: the public and admin HTTP API: routing, authentication,
//!   validation, the handlers and the generated OpenAPI document.
//! - [`calls`]: a tenant's calls: the call store (the one writer), the call
//!   state machine and recording uploads.
//! - [`dispatch`]: the per-region dispatch queue (its waiting line, the port
//!   the API and the call store reach it through) and the edge's half of the
//!   sidecar link.
//! - [`webhooks`]: webhook events, their delivery jobs and signatures.
//! - [`traffic`]: rate limits, idempotency keys and failed-credential counts.
//! - [`dialects`]: the seed-API dialects (none yet).
//! - common, used by all groups: [`model`] (KV records), [`ids`], [`store`]
//!   (the `Kv` port), [`sql`] (the `Sql` port), [`engine_keys`] (sealed
//!   secrets), [`url_guard`], [`error`] and [`http`] (the request, the
//!   response and the error catalogue, shared by the API and the sidecar
//!   link), [`calling_window`] and [`transcript`] (data the dispatch queue
//!   and the call store both hold).
//! - `glue` (wasm32 only): the Worker's fetch and queue handlers and one
//!   module per Durable Object or binding.

pub mod api;
pub mod calls;
pub mod dialects;
pub mod dispatch;
pub mod traffic;
pub mod webhooks;

pub mod calling_window;
pub mod engine_keys;
pub mod error;
pub mod http;
pub mod ids;
pub mod model;
pub mod sql;
pub mod store;
pub mod transcript;
pub mod url_guard;

#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
mod glue;

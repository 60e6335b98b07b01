//! voxline edge: the public call API as a Cloudflare Worker.
//!
//! Everything but `glue` is plain Rust that compiles and tests natively:
//! `service` handles a request against the `store::Kv` port; `glue` (wasm32-unknown-unknown
//! only: the Worker) adapts workers-rs requests, KV, clock and secrets to it.

pub mod call_state;
pub mod call_store;
pub mod calling_window;
pub mod dialects;
pub mod dispatch;
pub mod dispatcher;
pub mod engine_keys;
pub mod error;
pub mod fields;
pub mod http;
pub mod ids;
pub mod model;
pub mod openapi;
pub mod recordings;
pub mod request_signing;
pub mod router;
pub mod service;
pub mod sidecar_link;
pub mod sql;
pub mod store;
pub mod traffic;
pub mod transcript;
pub mod url_guard;
pub mod validate;
pub mod waiting_line;
pub mod webhook_api;
pub mod webhook_signing;
pub mod webhooks;

#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
mod glue;
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
mod glue_calls;
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
mod glue_dispatch;
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
mod glue_recordings;
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
mod glue_traffic;
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
mod glue_webhooks;

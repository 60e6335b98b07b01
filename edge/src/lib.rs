//! voxline edge: the public call API as a Cloudflare Worker.
//!
//! Everything but `glue` is plain Rust that compiles and tests natively
//! (`cargo test -p voxline-edge`); `glue` (wasm32-unknown-unknown only: the
//! Worker) adapts workers-rs requests, KV, Durable Objects, the Queue, R2,
//! the clock and secrets to the ports the plain modules define.
//!
//! Groups, by responsibility. No import circles: a group never imports one
//! that imports it back, nor a file one that imports it back
//! (`edge/tests/module_graph.rs` enforces both). From the top:
//!
//! - `glue` (wasm32 only) and [`api`]: the public and admin HTTP API:
//!   routing, authentication, validation, the handlers and the generated
//!   OpenAPI document; it uses every group below.
//! - [`calls`]: a tenant's calls: the call store (the one writer), the call
//!   state machine and recording uploads.
//! - [`campaigns`]: a campaign's contacts, their state machine and its
//!   pacing (the `Campaign` Durable Object's pure core).
//! - [`console`]: the operator console's page, script and style sheet
//!   (served by the API, calling it from the browser; a leaf).
//! - [`webhooks`]: webhook events, their delivery jobs and signatures.
//! - [`mail`]: the transcript email (its job, message and sans-IO SMTP
//!   client), made with a call's end and sent through the delivery queue.
//! - [`dispatch`]: the per-region dispatch queue (its waiting line, the port
//!   the API and the call store reach it through) and the edge's half of the
//!   sidecar link.
//! - [`traffic`]: rate limits, idempotency keys and failed-credential counts.
//! - [`dialects`]: the seed-API dialects (pure cores of VoiceB, BuildVoiceAI, Calldock; not yet routed).
//! - common, used by all groups: [`model`] (KV records), [`ids`], [`store`]
//!   (the `Kv` port), [`sql`] (the `Sql` port), [`engine_keys`] (sealed
//!   secrets), [`recording_links`] (signed links to a call's recording),
//!   [`url_guard`], [`limits`] (request limits the validators and
//!   the OpenAPI document both read), [`error`] and [`http`] (the request, the
//!   response and the error catalogue, shared by the API and the sidecar
//!   link), [`calling_window`] and [`transcript`] (data the dispatch queue
//!   and the call store both hold).
//!
//! `glue` holds the Worker's fetch and queue handlers, its environment
//! (`glue::env`, a leaf), the Durable Object stubs (`glue::stubs`) and one
//! module per Durable Object or binding.

pub mod api;
pub mod calls;
pub mod campaigns;
pub mod console;
pub mod dialects;
pub mod directory;
pub mod dispatch;
pub mod mail;
pub mod traffic;
pub mod webhooks;

pub mod calling_window;
pub mod campaign_notice;
pub mod contacts;
pub mod engine_keys;
pub mod error;
pub mod http;
pub mod ids;
pub mod limits;
pub mod messages;
pub mod model;
pub mod numbers;
pub mod password;
pub mod prompt_variables;
pub mod recording_links;
pub mod sql;
pub mod store;
pub mod transcript;
pub mod url_guard;

#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
mod glue;

//! Webhook events and their delivery, as pure Rust over the [`Kv`](crate::store::Kv) port and
//! an HTTP port ([`delivery::WebhookHttp`]). The Worker glue (`glue::webhook_queue`) only
//! moves [`delivery::DeliveryJob`]s through the Cloudflare Queue and does the fetch.
//!
//! Flow: a call state change emits (`events::jobs_for_event`) an event: one job per enabled endpoint
//! that wants it. The queue consumer runs [`delivery::process`] on each job: it checks
//! the endpoint (still there, enabled, URL still allowed), signs the body
//! (Standard Webhooks), POSTs it, records the attempt in the delivery log
//! and says what happens next: done, or the same job again after the
//! endpoint's retry delay. At least once: a job is only acknowledged after
//! its outcome is recorded and any follow-up job is queued.

pub mod delivery;
pub mod events;
pub mod signing;

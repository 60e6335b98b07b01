//! Webhook events and their delivery, as pure Rust over the [`Kv`](crate::store::Kv) port and
//! an HTTP port ([`delivery::WebhookHttp`]). The Worker glue (`glue::webhook_queue`) only
//! moves [`delivery::DeliveryJob`]s through the Cloudflare Queue and does the fetch.
//!
//! Flow: a call state change emits an event into its store's outbox; the drain turns it
//! into jobs (`events::jobs_for_event`): one per enabled endpoint that wants it and whose
//! agent filter the call passes. An endpoint's `format` decides what it gets: native
//! endpoints the events they subscribed to, with the event's body; dialect endpoints
//! (`post_call`) one delivery when the call has ended, with the vendor's body. The queue
//! consumer runs [`delivery::process`] on each job: it checks the endpoint (still there,
//! enabled, URL still allowed), signs the body as its format does (Standard Webhooks, or
//! the vendor's HMAC header), POSTs it, records the attempt in the delivery log and says
//! what happens next: done, or the same job again after the format's retry delay. At
//! least once: a job is only acknowledged after its outcome is recorded and any
//! follow-up job is queued.

pub mod delivery;
pub mod events;
pub mod post_call;
pub mod signing;
pub mod tool_calls;

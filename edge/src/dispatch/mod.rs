//! The per-region dispatch queue and the edge's half of the sidecar link:
//! the queue's pure state ([`queue`], a `DispatchQueue` Durable Object in the
//! Worker) with its [`waiting_line`], the port the API and the call store
//! reach the queues through ([`port`]), and the checked sidecar link messages
//! ([`sidecar_link`]) with the link's timing ([`link_timing`]).

pub mod link_timing;
pub mod message_line;
pub mod port;
pub mod queue;
pub mod queued_call;
pub mod sidecar_link;
pub mod sidecar_request;
pub mod waiting_line;

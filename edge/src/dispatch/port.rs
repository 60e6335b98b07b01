//! The port through which the edge reaches a region's dispatch queue (the
//! `DispatchQueue` Durable Object in the Worker), and building a queued call
//! from its record. What the queue changes reaches each call's record as
//! numbered reports to the tenant's `CallStore` (see `calls::store`).

use crate::dispatch::message_line::{EnqueueMessageVerdict, QueuedMessage};
use crate::dispatch::queue::{CancelVerdict, EnqueueVerdict, SidecarStatus};
use crate::dispatch::queued_call::{OfferBody, QueuedCall};
use crate::dispatch::sidecar_link::SidecarEnvelope;
use crate::ids::parse_rfc3339_utc_ms;
use crate::model::CallRecord;
use crate::store::StoreError;
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[allow(async_fn_in_trait)]
pub trait DispatchQueues {
    async fn enqueue(&self, region: &str, call: &QueuedCall) -> Result<EnqueueVerdict, StoreError>;
    async fn cancel(&self, region: &str, call_id: &str) -> Result<CancelVerdict, StoreError>;
    /// Queues a text message for the region's sidecars (no call slot needed).
    async fn enqueue_message(
        &self,
        region: &str,
        message: &QueuedMessage,
    ) -> Result<EnqueueMessageVerdict, StoreError>;
    /// Forwards a verified sidecar request; returns the HTTP status and body.
    async fn sidecar(
        &self,
        region: &str,
        envelope: &SidecarEnvelope,
    ) -> Result<(u16, Value), StoreError>;
    /// The region's live sidecars with their load and link timing (read only).
    async fn sidecar_status(&self, region: &str) -> Result<Vec<SidecarStatus>, StoreError>;
}

/// The queue's view of a new call: its routing, retry policy and offer fields.
pub fn queued_call(tenant_id: &str, record: &CallRecord, now_ms: u64) -> QueuedCall {
    let ready_at_ms = record
        .schedule_at
        .as_deref()
        .and_then(parse_rfc3339_utc_ms)
        .unwrap_or(now_ms);
    QueuedCall {
        call_id: record.id.clone(),
        tenant_id: tenant_id.to_string(),
        ready_at_ms,
        attempt: 1,
        retries: record.retries,
        retry_delay_ms: u64::from(record.retry_delay_minutes) * 60_000,
        scheduled: record.schedule_at.is_some(),
        agent_id: record.agent_id.clone(),
        phone: record.phone.clone(),
        // Set by the caller from the tenant and the request.
        max_concurrent: None,
        reject_over_cap: false,
        calling_window: None,
        max_seconds: record.max_seconds,
        // Set by the caller for an inbound call.
        held_by: None,
        // Set by the caller for a person's call.
        sidecars: Vec::new(),
        offer: Some(OfferBody {
            phone: record.phone.clone(),
            caller_name: record.caller_name.clone(),
            caller_number: record.caller_number.clone(),
            agent_id: record.agent_id.clone(),
            system_prompt: record.system_prompt.clone(),
            voice: record.voice.clone(),
            language: record.language.clone(),
            engine: record.engine,
            model: record.model.clone(),
            max_seconds: record.max_seconds,
            record: record.record,
            metadata: record
                .metadata
                .as_ref()
                .map(crate::model::Metadata::to_value),
            engine_base_url: record.engine_base_url.clone(),
            silence_timeout_seconds: Some(record.silence_timeout_seconds),
            first_speaker: record.first_speaker,
            analysis: record.analysis_plan.clone(),
            amd: record.amd,
            amd_message: record.amd_message.clone(),
            // Set by the caller when the call or its agent has a key.
            engine_api_key_sealed: None,
            // Set by the caller from the agent.
            tools: Vec::new(),
            // Set by the caller for a person's call.
            connect: None,
        }),
    }
}

/// In-process [`DispatchQueues`] over the same pure queue, for native tests of
/// the request handling. The real one is the Durable Object (tests/ e2e).
#[cfg(any(test, feature = "bench-support"))]
pub mod memory {
    use super::*;
    use crate::dispatch::queue::{CallUpdate, DispatchTimings, Queue};
    use crate::dispatch::sidecar_link;
    use crate::transcript::TranscriptUpdate;
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    #[derive(Default)]
    pub struct MemoryDispatchQueues {
        pub queues: RefCell<BTreeMap<String, Queue>>,
        pub now_ms: std::cell::Cell<u64>,
        /// Call updates and transcript turns the Durable Object would report
        /// to the tenants' call stores.
        pub updates: RefCell<Vec<CallUpdate>>,
        pub turns: RefCell<Vec<TranscriptUpdate>>,
        /// Text message changes the Durable Object would report.
        pub message_updates: RefCell<Vec<crate::messages::MessageUpdate>>,
        /// The last report number handed out.
        pub report_seq: std::cell::Cell<u64>,
    }

    impl MemoryDispatchQueues {
        /// What happened since the last call: (call updates, transcript turns).
        pub fn take_reports(&self) -> (Vec<CallUpdate>, Vec<TranscriptUpdate>) {
            (
                std::mem::take(&mut *self.updates.borrow_mut()),
                std::mem::take(&mut *self.turns.borrow_mut()),
            )
        }

        /// The text message changes since the last call.
        pub fn take_message_reports(&self) -> Vec<crate::messages::MessageUpdate> {
            std::mem::take(&mut *self.message_updates.borrow_mut())
        }

        /// Time passes in every queue, as the Durable Object's alarm lets it.
        pub fn tick_all(&self) {
            let now = self.now_ms.get();
            for q in self.queues.borrow_mut().values_mut() {
                self.updates
                    .borrow_mut()
                    .extend(q.tick(now, &DispatchTimings::default()));
                self.message_updates
                    .borrow_mut()
                    .extend(q.messages.tick(now));
            }
        }

        /// Lets time pass in `q` first, like the Durable Object on every request.
        fn ticked(&self, q: &mut Queue) {
            let now = self.now_ms.get();
            self.updates
                .borrow_mut()
                .extend(q.tick(now, &DispatchTimings::default()));
            self.message_updates
                .borrow_mut()
                .extend(q.messages.tick(now));
        }
    }

    impl DispatchQueues for MemoryDispatchQueues {
        // Like the Durable Object, every operation first lets time pass.
        async fn enqueue(
            &self,
            region: &str,
            call: &QueuedCall,
        ) -> Result<EnqueueVerdict, StoreError> {
            let mut queues = self.queues.borrow_mut();
            let q = queues.entry(region.to_string()).or_default();
            self.ticked(q);
            Ok(q.enqueue(call.clone()))
        }
        async fn cancel(&self, region: &str, call_id: &str) -> Result<CancelVerdict, StoreError> {
            let mut queues = self.queues.borrow_mut();
            let q = queues.entry(region.to_string()).or_default();
            self.ticked(q);
            Ok(q.cancel(call_id))
        }
        async fn enqueue_message(
            &self,
            region: &str,
            message: &QueuedMessage,
        ) -> Result<EnqueueMessageVerdict, StoreError> {
            let mut queues = self.queues.borrow_mut();
            let q = queues.entry(region.to_string()).or_default();
            self.ticked(q);
            Ok(q.messages.enqueue(message.clone()))
        }
        async fn sidecar(
            &self,
            region: &str,
            envelope: &SidecarEnvelope,
        ) -> Result<(u16, Value), StoreError> {
            let mut queues = self.queues.borrow_mut();
            let q = queues.entry(region.to_string()).or_default();
            self.ticked(q);
            let mut reply =
                sidecar_link::handle(q, envelope, self.now_ms.get(), &DispatchTimings::default());
            // Bodies stay on the calls here; no sealing key in tests.
            reply.finish(|_| None, None);
            self.updates.borrow_mut().extend(reply.updates);
            self.turns.borrow_mut().extend(reply.turns);
            self.message_updates.borrow_mut().extend(reply.messages);
            Ok((reply.status, reply.body))
        }
        async fn sidecar_status(&self, region: &str) -> Result<Vec<SidecarStatus>, StoreError> {
            let mut queues = self.queues.borrow_mut();
            let q = queues.entry(region.to_string()).or_default();
            self.ticked(q);
            Ok(q.sidecar_status())
        }
    }
}

/// One request to a region's `DispatchQueue` object, and its answer: the
/// wire form of [`DispatchQueues`], so a renamed field fails to compile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum DispatchQueueRequest {
    Enqueue {
        call: Box<QueuedCall>,
    },
    Cancel {
        call_id: String,
    },
    EnqueueMessage {
        message: QueuedMessage,
    },
    /// A sidecar link request the Worker verified.
    Sidecar {
        envelope: SidecarEnvelope,
    },
    /// The operators' view of the region's sidecars.
    SidecarStatus,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub enum DispatchQueueAnswer {
    Enqueued {
        outcome: EnqueueVerdict,
    },
    Cancel {
        outcome: CancelVerdict,
    },
    EnqueuedMessage {
        outcome: EnqueueMessageVerdict,
    },
    /// The HTTP status and body the Worker answers the sidecar with.
    Sidecar {
        status: u16,
        body: Value,
    },
    SidecarStatus {
        sidecars: Vec<SidecarStatus>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::queued_call::OfferBody;
    use crate::dispatch::sidecar_link::SidecarMessage;
    use serde_json::json;

    #[test]
    fn every_dispatch_queue_request_and_answer_round_trips_through_serde() {
        let call = QueuedCall {
            call_id: "call_1".into(),
            tenant_id: "ten_1".into(),
            attempt: 1,
            offer: Some(OfferBody {
                engine_api_key_sealed: Some("v1.sealed".into()),
                silence_timeout_seconds: Some(20),
                ..OfferBody::example("+14155550100")
            }),
            ..QueuedCall::default()
        };
        let requests = [
            DispatchQueueRequest::Enqueue {
                call: Box::new(call),
            },
            DispatchQueueRequest::Cancel {
                call_id: "call_1".into(),
            },
            DispatchQueueRequest::Sidecar {
                envelope: SidecarEnvelope {
                    sidecar_id: "sc-1".into(),
                    nonce: "n1".into(),
                    message: SidecarMessage::Lease(voxline_shared::sidecar_link::LeaseRequest {
                        protocol_version: 1,
                        sidecar_id: "sc-1".into(),
                        region: "local".into(),
                        free_slots: 1,
                        held_calls: vec!["call_0".into()],
                        wait_ms: 500,
                    }),
                },
            },
            DispatchQueueRequest::Sidecar {
                envelope: SidecarEnvelope {
                    sidecar_id: "sc-1".into(),
                    nonce: "n2".into(),
                    message: SidecarMessage::Recording,
                },
            },
            DispatchQueueRequest::SidecarStatus,
        ];
        for request in requests {
            let text = serde_json::to_string(&request).unwrap();
            let back: DispatchQueueRequest = serde_json::from_str(&text).unwrap();
            assert_eq!(back, request, "{text}");
        }
        let answers = [
            DispatchQueueAnswer::Enqueued {
                outcome: EnqueueVerdict::ConcurrencyLimit {
                    limit: 2,
                    active: 2,
                },
            },
            DispatchQueueAnswer::Cancel {
                outcome: CancelVerdict::Signalled {
                    sidecar_id: "sc-1".into(),
                },
            },
            DispatchQueueAnswer::Cancel {
                outcome: CancelVerdict::Unknown,
            },
            DispatchQueueAnswer::Sidecar {
                status: 409,
                body: json!({"error": {"code": "lease_not_held"}}),
            },
            DispatchQueueAnswer::SidecarStatus {
                sidecars: vec![SidecarStatus {
                    sidecar_id: "sc-1".into(),
                    capacity: 4,
                    free_slots: Some(3),
                    active_calls: 1,
                    offered_calls: 0,
                    last_seen_ms: 5,
                    samples: vec![crate::dispatch::link_timing::LinkSample {
                        at_ms: 5,
                        turnaround_ms: 2,
                    }],
                }],
            },
        ];
        for answer in answers {
            let text = serde_json::to_string(&answer).unwrap();
            let back: DispatchQueueAnswer = serde_json::from_str(&text).unwrap();
            assert_eq!(back, answer, "{text}");
        }
        assert_eq!(
            serde_json::to_value(DispatchQueueRequest::Cancel {
                call_id: "c".into()
            })
            .unwrap(),
            json!({"op": "cancel", "call_id": "c"})
        );
    }
}

//! The port through which request handling reaches a region's dispatch queue
//! (the `DispatchQueue` Durable Object in the Worker), plus what both sides
//! share: building a queued call from its record, and mirroring queue
//! updates onto call records in KV.

use crate::call_state;
use crate::dispatch::{CallUpdate, CancelOutcome, EnqueueOutcome, QueuedCall};
use crate::ids::parse_rfc3339_utc_ms;
use crate::model::{keys, CallRecord};
use crate::sidecar_link::SidecarEnvelope;
use crate::store::{get_json, put_json, Kv, StoreError};
use serde_json::{json, Value};
use voxline_shared::CallStatus;

#[allow(async_fn_in_trait)]
pub trait Dispatcher {
    async fn enqueue(&self, region: &str, call: &QueuedCall) -> Result<EnqueueOutcome, StoreError>;
    async fn cancel(&self, region: &str, call_id: &str) -> Result<CancelOutcome, StoreError>;
    /// Forwards a verified sidecar request; returns the HTTP status and body.
    async fn sidecar(&self, region: &str, envelope: &SidecarEnvelope) -> Result<(u16, Value), StoreError>;
}

/// The queue's view of a new call: its routing, retry policy and offer fields.
pub fn queued_call(tenant_id: &str, record: &CallRecord, now_ms: u64) -> QueuedCall {
    let ready_at_ms = record.schedule_at.as_deref().and_then(parse_rfc3339_utc_ms).unwrap_or(now_ms);
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
        offer: json!({
            "phone": record.phone,
            "agent_id": record.agent_id,
            "system_prompt": record.system_prompt,
            "voice": record.voice,
            "language": record.language,
            "engine": record.engine,
            "model": record.model,
            "max_seconds": record.max_seconds,
            "record": record.record,
            "metadata": record.metadata,
            "engine_base_url": record.engine_base_url,
            "silence_timeout_secs": record.silence_timeout_seconds,
        }),
    }
}

/// A change the state machine accepted: the status before, the record after.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub tenant_id: String,
    pub before: CallStatus,
    pub record: CallRecord,
}

/// Applies queue updates to the call records in KV and returns the applied
/// ones (webhook events are emitted from them). Illegal transitions are
/// refused by the state machine, logged through `log`, and skipped. On a
/// storage error the changes applied so far are still returned with it.
pub async fn mirror_updates(kv: &impl Kv, updates: &[CallUpdate], log: &mut dyn FnMut(String)) -> (Vec<Applied>, Result<(), StoreError>) {
    let mut applied = Vec::new();
    let result = mirror_into(kv, updates, log, &mut applied).await;
    (applied, result)
}

async fn mirror_into(kv: &impl Kv, updates: &[CallUpdate], log: &mut dyn FnMut(String), applied: &mut Vec<Applied>) -> Result<(), StoreError> {
    for update in updates {
        let key = keys::call(&update.tenant_id, &update.call_id);
        let Some(mut record) = get_json::<CallRecord>(kv, &key).await? else {
            log(format!("call {} not found for update {:?}", update.call_id, update.change));
            continue;
        };
        let before = record.status;
        match call_state::apply(&mut record, update) {
            Ok(()) => {
                put_json(kv, &key, &record, Some(&record.list_metadata())).await?;
                applied.push(Applied { tenant_id: update.tenant_id.clone(), before, record });
            }
            Err(e) => log(format!("call {}: {e}; update dropped", update.call_id)),
        }
    }
    Ok(())
}

/// In-process [`Dispatcher`] over the same pure queue, for native tests of
/// the request handling. The real one is the Durable Object (tests/ e2e).
#[cfg(any(test, feature = "bench-support"))]
pub mod memory {
    use super::*;
    use crate::dispatch::{DispatchTimings, RegionQueue};
    use crate::sidecar_link;
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    #[derive(Default)]
    pub struct MemoryDispatcher {
        pub queues: RefCell<BTreeMap<String, RegionQueue>>,
        pub now_ms: std::cell::Cell<u64>,
        /// Updates the Durable Object would mirror into KV.
        pub updates: RefCell<Vec<CallUpdate>>,
    }

    impl Dispatcher for MemoryDispatcher {
        async fn enqueue(&self, region: &str, call: &QueuedCall) -> Result<EnqueueOutcome, StoreError> {
            Ok(self.queues.borrow_mut().entry(region.to_string()).or_default().enqueue(call.clone()))
        }
        async fn cancel(&self, region: &str, call_id: &str) -> Result<CancelOutcome, StoreError> {
            Ok(self.queues.borrow_mut().entry(region.to_string()).or_default().cancel(call_id))
        }
        async fn sidecar(&self, region: &str, envelope: &SidecarEnvelope) -> Result<(u16, Value), StoreError> {
            let mut queues = self.queues.borrow_mut();
            let q = queues.entry(region.to_string()).or_default();
            let reply = sidecar_link::handle(q, envelope, self.now_ms.get(), &DispatchTimings::default());
            self.updates.borrow_mut().extend(reply.updates);
            Ok((reply.status, reply.body))
        }
    }
}

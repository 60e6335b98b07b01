//! A call as the dispatch queue keeps it (in its waiting line or leased).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use voxline_shared::sidecar_link::{AmdMode, FirstSpeaker};
use voxline_shared::EngineKind;

/// A call as the queue knows it: routing and retry policy plus the offer
/// body (built from the call record when it was enqueued).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QueuedCall {
    pub call_id: String,
    pub tenant_id: String,
    /// Not leased before this time (schedule_at, retry delay).
    pub ready_at_ms: u64,
    /// 1 for the first dial.
    pub attempt: u32,
    pub retries: u32,
    pub retry_delay_ms: u64,
    /// What the call's offers carry besides lease data. `None` once the
    /// Durable Object keeps it in a row of its own (see
    /// [`crate::dispatch::queue::take_offer_body`]); persisted queues wrote `null`.
    #[serde(default)]
    pub offer: Option<OfferBody>,
    /// Created with `schedule_at`: its record is `scheduled` until released.
    #[serde(default)]
    pub scheduled: bool,
    /// With `phone`, what makes two calls the same conversation: one at a
    /// time per (tenant, agent, number). Empty for calls queued before this existed.
    #[serde(default)]
    pub agent_id: String,
    #[serde(default)]
    pub phone: String,
    /// The tenant's `max_concurrent_calls` (None: unlimited). While the
    /// tenant has that many calls leased or held, its waiting calls are
    /// skipped by `lease`.
    #[serde(default)]
    pub max_concurrent: Option<u32>,
    /// Enqueue only (`on_concurrency_limit: reject`): refuse the call rather
    /// than let it wait when the tenant is at its cap.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reject_over_cap: bool,
    /// The agent's calling window when the call was placed: a retry that
    /// would fall outside it waits for the window's next start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calling_window: Option<crate::calling_window::CallingWindow>,
    /// The call's `max_seconds`: the sidecar ends an attempt after this long
    /// whatever happens, which bounds how long a stranded one can still run.
    #[serde(default = "default_max_seconds")]
    pub max_seconds: u32,
    /// An inbound call (issue 16): the sidecar that is ringing its caller
    /// and asked for it. Enqueueing it makes it that sidecar's held call at
    /// once (no lease, no ack), or refuses it at the tenant's cap: a caller
    /// cannot wait in the queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_by: Option<String>,
    /// Only these sidecars may lease the call while one of them is
    /// registered (empty: any). A click-to-call (issue 16) goes to a sidecar
    /// that holds a phone of its person; with all of them gone, to any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sidecars: Vec<String>,
}

/// For entries queued before `max_seconds` was carried: the API's maximum.
fn default_max_seconds() -> u32 {
    3_600
}

/// A call's offer, less what each leasing adds (lease id, attempt, ack
/// deadline): built from the call record when the call is placed, turned into
/// a [`voxline_shared::sidecar_link::Offer`] by [`crate::dispatch::queue::offer`].
/// Field names are the offer's, so bodies stored before this type existed
/// (spliced JSON) still read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OfferBody {
    /// E.164.
    pub phone: String,
    /// The caller-ID label (SIP From display-name), when the call has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller_name: Option<String>,
    /// The caller ID number (E.164, one of the tenant's), when the call has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller_number: Option<String>,
    pub agent_id: String,
    #[serde(default)]
    pub system_prompt: Option<String>,
    #[serde(default)]
    pub voice: Option<String>,
    /// BCP-47.
    pub language: String,
    pub engine: EngineKind,
    #[serde(default)]
    pub model: Option<String>,
    pub max_seconds: u32,
    pub record: bool,
    #[serde(default)]
    pub metadata: Option<Value>,
    #[serde(default)]
    pub engine_base_url: Option<String>,
    /// Stored as `silence_timeout_secs` before the rename.
    #[serde(default, alias = "silence_timeout_secs")]
    pub silence_timeout_seconds: Option<u32>,
    /// Its agent's `first_speaker` (bodies stored before it: `agent`).
    #[serde(default, skip_serializing_if = "FirstSpeaker::is_agent")]
    pub first_speaker: FirstSpeaker,
    /// Its agent's post-call analysis plan (bodies stored before it: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<voxline_shared::analysis::AnalysisPlan>,
    /// Answering-machine detection (bodies stored before it: `off`).
    #[serde(default, skip_serializing_if = "AmdMode::is_off")]
    pub amd: AmdMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amd_message: Option<String>,
    /// The call's engine key, sealed (see `engine_keys`) while the call
    /// waits: opened only into the offer that leaves for a sidecar.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_api_key_sealed: Option<String>,
    /// Its agent's customer tools as the engine declares them (no URLs;
    /// set by the caller from the agent).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<voxline_shared::sidecar_link::OfferedTool>,
    /// A person's call without an engine (issue 16: click-to-call rings the
    /// person first); bodies stored before it: none (an agent's call).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect: Option<voxline_shared::sidecar_link::Connect>,
}

#[cfg(test)]
impl OfferBody {
    /// A body for tests: a local-engine call to `phone`.
    pub fn example(phone: &str) -> OfferBody {
        OfferBody {
            phone: phone.into(),
            caller_name: None,
            caller_number: None,
            agent_id: "agt_1".into(),
            system_prompt: None,
            voice: None,
            language: "en-US".into(),
            engine: EngineKind::Local,
            model: None,
            max_seconds: 300,
            record: false,
            metadata: None,
            engine_base_url: None,
            silence_timeout_seconds: None,
            first_speaker: FirstSpeaker::Agent,
            analysis: None,
            amd: AmdMode::Off,
            amd_message: None,
            engine_api_key_sealed: None,
            tools: Vec::new(),
            connect: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn offer_bodies_stored_as_spliced_json_still_read() {
        // As `queued_call` wrote them before the body was typed (nulls,
        // the old silence field name, the sealed key spliced in).
        let stored = json!({"phone": "+14155550100", "agent_id": "agt_1", "system_prompt": null,
            "voice": null, "language": "en-US", "engine": "gemini_live", "model": null,
            "max_seconds": 300, "record": true, "metadata": {"crm": 1}, "engine_base_url": null,
            "silence_timeout_secs": 12, "engine_api_key_sealed": "v1.x"});
        let body: OfferBody = serde_json::from_value(stored).unwrap();
        assert_eq!(
            (
                body.engine,
                body.silence_timeout_seconds,
                body.engine_api_key_sealed.as_deref()
            ),
            (EngineKind::GeminiLive, Some(12), Some("v1.x"))
        );
        // Stored before `first_speaker`: the agent speaks first.
        assert_eq!(body.first_speaker, FirstSpeaker::Agent);
        let callee = OfferBody {
            first_speaker: FirstSpeaker::Callee,
            ..OfferBody::example("+14155550100")
        };
        let text = serde_json::to_value(&callee).unwrap();
        assert_eq!(text["first_speaker"], "callee");
        assert_eq!(serde_json::from_value::<OfferBody>(text).unwrap(), callee);
        // A queued call persisted after its body was taken out.
        let row = json!({"call_id": "c", "tenant_id": "t", "ready_at_ms": 0, "attempt": 1,
            "retries": 0, "retry_delay_ms": 0, "offer": null});
        let call: QueuedCall = serde_json::from_value(row).unwrap();
        assert_eq!(call.offer, None);
    }
}

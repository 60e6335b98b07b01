//! Inbound calls (issue 16, slice 1): a trunk calls one of a tenant's
//! numbers, the sidecar rings the caller and asks the edge with one
//! `POST /v1/sidecar/inbound-calls` ([`InboundCall`]); [`decide`] answers in
//! that one round trip. The number (KV `number/{e164}`, configuration)
//! names the tenant and the route; a route to an AI agent becomes a call
//! record in the tenant's call store (`direction: inbound`, created
//! `ringing`), which the region's dispatch queue holds for that sidecar at
//! once, within the tenant's concurrency cap (`QueuedCall::held_by`), so
//! everything after (events, transcript, recording, webhooks, hangup, the
//! call APIs) is an outbound call's path. People and queues as routes come
//! with later slices: 480 until then.

use crate::calls::store::{Created, NewCall};
use crate::dispatch::port::{self, DispatchQueues};
use crate::dispatch::queue::{self, Lease};
use crate::error::{ApiError, ErrorCode};
use crate::http::{ApiRequest, ApiResponse};
use crate::ids::{self, rfc3339_ms};
use crate::model::{self, keys, Agent, CallDirection, CallRecord, Tenant};
use crate::numbers::{self, NumberRoute, NumberStatus, PhoneNumber};
use crate::store::{get_json, Kv};
use voxline_shared::sidecar_link::{
    inbound_refusals, InboundCall, InboundCallAnswer, InboundDecision, PROTOCOL_VERSION,
};
use voxline_shared::CallStatus;

use crate::api::env::{Env, Result};

/// An inbound call's `max_seconds` (the API's default for placed calls).
pub const INBOUND_MAX_SECONDS: u32 = crate::limits::MAX_SECONDS.2 as u32;

const REFUSALS: [&str; 5] = [
    inbound_refusals::UNKNOWN_NUMBER,
    inbound_refusals::NO_ROUTE,
    inbound_refusals::AGENT_UNAVAILABLE,
    inbound_refusals::AT_CAPACITY,
    inbound_refusals::UNAVAILABLE,
];

fn refuse(sip_code: u16, reason: &str) -> InboundDecision {
    InboundDecision::Refuse {
        sip_code,
        reason: reason.to_string(),
    }
}

/// `POST /v1/sidecar/inbound-calls` once the sidecar link admitted it
/// (signature, fields, region, nonce): always 200 with the decision (a
/// refusal is an answer, not an error: the sidecar tells the caller).
pub(crate) async fn inbound_call<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
) -> Result<ApiResponse> {
    let call: InboundCall = admitted_message(req)?;
    let decision = decide(env, &call).await?;
    // The Worker's request log names a refusal by its reason.
    let refused = match &decision {
        InboundDecision::Refuse { reason, .. } => REFUSALS.iter().copied().find(|r| r == reason),
        InboundDecision::Answer { .. } => None,
    };
    let answer = InboundCallAnswer {
        protocol_version: PROTOCOL_VERSION,
        decision,
    };
    Ok(decided(&answer, refused))
}

/// The body of a sidecar link request the link admitted (parsed and
/// checked once already, `sidecar_link::parse_message`).
pub(crate) fn admitted_message<T: serde::de::DeserializeOwned>(req: &ApiRequest) -> Result<T> {
    serde_json::from_slice(&req.body).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidType,
            format!("not a valid protocol message: {e}"),
        )
    })
}

/// 200 with a decision for the sidecar; a refusal is an answer, not an
/// error, and the Worker's request log names it by its reason (`refused`).
pub(crate) fn decided<T: serde::Serialize>(
    answer: &T,
    refused: Option<&'static str>,
) -> ApiResponse {
    let body = serde_json::to_value(answer).unwrap_or(serde_json::Value::Null);
    let mut resp = ApiResponse::json(200, &body);
    resp.error_code = refused;
    resp
}

/// What to do with an inbound call: refuse it with a SIP code, or create
/// its call (held by the asking sidecar) and answer with its offer.
pub async fn decide<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    call: &InboundCall,
) -> Result<InboundDecision> {
    let number: Option<PhoneNumber> =
        get_json(env.kv, &numbers::keys::number(&call.called)).await?;
    let Some(number) = number.filter(|n| n.status == NumberStatus::Active) else {
        return Ok(refuse(404, inbound_refusals::UNKNOWN_NUMBER));
    };
    let agent_id = match &number.route {
        Some(NumberRoute::Agent { agent_id }) => agent_id.clone(),
        // A person or a queue: not reached by inbound calls yet (issue 16's
        // later slices); the request log says `no_route`.
        Some(NumberRoute::User { .. } | NumberRoute::Queue { .. }) | None => {
            return Ok(refuse(480, inbound_refusals::NO_ROUTE))
        }
    };
    let tenant: Option<Tenant> = get_json(env.kv, &keys::tenant(&number.tenant_id)).await?;
    let Some(tenant) = tenant.filter(|t| !t.disabled) else {
        return Ok(refuse(480, inbound_refusals::AGENT_UNAVAILABLE));
    };
    let agent: Option<Agent> = get_json(env.kv, &keys::agent(&tenant.id, &agent_id)).await?;
    let Some(agent) = agent.filter(|a| a.enabled) else {
        return Ok(refuse(480, inbound_refusals::AGENT_UNAVAILABLE));
    };
    let record = inbound_record(env.now_ms, call, &number, &agent);
    let mut queued = port::queued_call(&tenant.id, &record, env.now_ms);
    queued.max_concurrent = tenant.max_concurrent_calls;
    queued.held_by = Some(call.sidecar_id.clone());
    if let Some(offer) = queued.offer.as_mut() {
        offer.engine_api_key_sealed = agent.engine_api_key_sealed.clone();
        offer.tools = agent.tools.iter().map(model::AgentTool::offered).collect();
    }
    let new = NewCall {
        record,
        queued,
        idempotency: None,
    };
    match env.calls.create(&tenant.id, &new).await? {
        Created::Created { record } => {
            let Some(body) = new.queued.offer.clone() else {
                return Ok(refuse(503, inbound_refusals::UNAVAILABLE));
            };
            let lease = Lease {
                lease_id: format!("inbound_{}", record.id),
                sidecar_id: call.sidecar_id.clone(),
                deadline_ms: 0,
                call: new.queued,
            };
            let offer = queue::offer(&lease, body, env.sealing_key);
            Ok(InboundDecision::Answer {
                offer: Box::new(offer),
            })
        }
        Created::ConcurrencyLimit { .. } => Ok(refuse(486, inbound_refusals::AT_CAPACITY)),
        Created::DispatchUnavailable { .. }
        | Created::Existing { .. }
        | Created::KeyReused
        | Created::Duplicate { .. } => Ok(refuse(503, inbound_refusals::UNAVAILABLE)),
    }
}

/// The call record of an inbound call answered by `agent`: ringing now,
/// first attempt, `phone` the caller, `caller_number` the number called.
fn inbound_record(
    now_ms: u64,
    call: &InboundCall,
    number: &PhoneNumber,
    agent: &Agent,
) -> CallRecord {
    let now = rfc3339_ms(now_ms);
    // The caller is the only thing known about the call: `{{phone}}` is
    // theirs; a prompt naming anything else is sent as written.
    let system_prompt = agent.system_prompt.as_ref().map(|template| {
        use crate::prompt_variables::{render, Variables};
        let vars = Variables {
            name: None,
            phone: &call.caller,
            metadata: None,
            custom: &[],
        };
        render(template, &vars).unwrap_or_else(|_| template.clone())
    });
    CallRecord {
        id: ids::call_id(now_ms),
        status: CallStatus::Ringing,
        phone: call.caller.clone(),
        name: None,
        caller_name: None,
        email: None,
        transcript_email: None,
        metadata: None,
        agent_id: agent.id.clone(),
        system_prompt,
        voice: agent.voice.clone(),
        language: agent.language.clone(),
        engine: agent.default_engine,
        model: agent.model.clone(),
        max_seconds: INBOUND_MAX_SECONDS,
        retries: 0,
        retry_delay_minutes: 1,
        schedule_at: None,
        record: true,
        region: call.region.clone(),
        attempts: 1,
        dispatched_at: Some(now.clone()),
        ringing_at: Some(now.clone()),
        answered_at: None,
        next_attempt_at: None,
        sip_code: None,
        created_at: now.clone(),
        updated_at: now,
        hangup_requested_at: None,
        ended_at: None,
        ended_reason: None,
        scheduled_reason: None,
        engine_base_url: agent.engine_base_url.clone(),
        engine_api_key_set: agent.engine_api_key_sealed.is_some(),
        silence_timeout_seconds: agent
            .silence_timeout_seconds
            .unwrap_or(model::DEFAULT_SILENCE_TIMEOUT_SECONDS),
        placed_with: None,
        caller_number: Some(number.number.clone()),
        from_user: None,
        campaign_id: None,
        campaign_row: None,
        // As the agent says: for a caller who waits to be greeted, `agent`.
        first_speaker: agent.first_speaker,
        direction: CallDirection::Inbound,
        analysis_plan: agent.analysis.clone(),
        analysis: None,
        // Someone called us: nobody's machine to detect.
        amd: Default::default(),
        amd_message: None,
        answered_by: None,
        amd_decision_ms: None,
    }
}

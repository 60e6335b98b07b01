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
    inbound_refusals, InboundCall, InboundCallAnswer, InboundDecision, Offer, RingUser,
    DEFAULT_RING_TIMEOUT_SECONDS, PROTOCOL_VERSION,
};
use voxline_shared::CallStatus;

use crate::api::env::{Env, Result};

/// An inbound call's `max_seconds` (the API's default for placed calls).
pub const INBOUND_MAX_SECONDS: u32 = crate::limits::MAX_SECONDS.2 as u32;

const REFUSALS: [&str; 6] = [
    inbound_refusals::UNKNOWN_NUMBER,
    inbound_refusals::NO_ROUTE,
    inbound_refusals::AGENT_UNAVAILABLE,
    inbound_refusals::AT_CAPACITY,
    inbound_refusals::UNAVAILABLE,
    inbound_refusals::USER_UNAVAILABLE,
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
        InboundDecision::Answer { .. }
        | InboundDecision::RingUser { .. }
        | InboundDecision::Queue { .. } => None,
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
        Some(NumberRoute::User { user_id }) => {
            return ring_user(env, call, &number, *user_id).await
        }
        // A queue: not reached by inbound calls yet (issue 16's later
        // slices); the request log says `no_route`.
        Some(NumberRoute::Queue { .. }) | None => {
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
    let transfer_people = crate::api::calls::transfer_people(env, &tenant.id, &agent).await?;
    let held = create_held(env, call, &tenant, record, |offer| {
        offer.engine_api_key_sealed = agent.engine_api_key_sealed.clone();
        offer.tools = agent.tools.iter().map(model::AgentTool::offered).collect();
        offer.transfer_people = transfer_people;
    })
    .await?;
    Ok(match held {
        Ok(offer) => InboundDecision::Answer {
            offer: Box::new(offer),
        },
        Err(refusal) => refusal,
    })
}

/// A number routed to person `user_pk` (issue 16): their phones registered
/// with the asking sidecar ring (the sidecar holds the contacts; the edge
/// knows which sidecar holds a binding). None there: their forwarding
/// number if the profile forwards, else `user_unavailable`. Only a person
/// is rung: an `ai_agent` user answers through its agent's route.
async fn ring_user<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    call: &InboundCall,
    number: &PhoneNumber,
    user_pk: u64,
) -> Result<InboundDecision> {
    use crate::directory::{ops, UserKind};
    let unavailable = || Ok(refuse(480, inbound_refusals::USER_UNAVAILABLE));
    let tenant: Option<Tenant> = get_json(env.kv, &keys::tenant(&number.tenant_id)).await?;
    let Some(tenant) = tenant.filter(|t| !t.disabled) else {
        return unavailable();
    };
    let users = ops::users(env.directory, &tenant.id).await?;
    let Some(user) = users
        .into_iter()
        .find(|u| u.pk == user_pk && u.fields.kind == UserKind::Person)
    else {
        return unavailable();
    };
    // A live binding of theirs that the asking sidecar holds.
    let here = ops::bindings(env.directory, &tenant.id)
        .await?
        .iter()
        .any(|b| {
            b.user_pk == user_pk && b.sidecar_id == call.sidecar_id && b.expires_ms > env.now_ms
        });
    let forward_number = user
        .fields
        .forward_number
        .clone()
        .filter(|n| user.fields.forward_enabled && !n.is_empty());
    if !here && forward_number.is_none() {
        return unavailable();
    }
    let ring = RingUser {
        user_pk,
        extension: user.fields.extension.clone(),
        display_name: user.fields.caller_id.clone(),
        ring_timeout_seconds: DEFAULT_RING_TIMEOUT_SECONDS,
        forward_number,
        voicemail: false,
    };
    let record = ring_user_record(env.now_ms, call, number, user_pk);
    let held = create_held(env, call, &tenant, record, |_| {}).await?;
    Ok(match held {
        Ok(offer) => InboundDecision::RingUser {
            offer: Box::new(offer),
            ring,
        },
        Err(refusal) => refusal,
    })
}

/// Creates `record` as a call held by the asking sidecar (within the
/// tenant's cap) and gives its offer, or the refusal the caller hears.
async fn create_held<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    call: &InboundCall,
    tenant: &Tenant,
    record: CallRecord,
    complete_offer: impl FnOnce(&mut crate::dispatch::queued_call::OfferBody),
) -> Result<std::result::Result<Offer, InboundDecision>> {
    let mut queued = port::queued_call(&tenant.id, &record, env.now_ms);
    queued.max_concurrent = tenant.max_concurrent_calls;
    queued.held_by = Some(call.sidecar_id.clone());
    if let Some(offer) = queued.offer.as_mut() {
        complete_offer(offer);
    }
    let new = NewCall {
        record,
        queued,
        idempotency: None,
    };
    match env.calls.create(&tenant.id, &new).await? {
        Created::Created { record } => {
            let Some(body) = new.queued.offer.clone() else {
                return Ok(Err(refuse(503, inbound_refusals::UNAVAILABLE)));
            };
            let lease = Lease {
                lease_id: format!("inbound_{}", record.id),
                sidecar_id: call.sidecar_id.clone(),
                deadline_ms: 0,
                call: new.queued,
            };
            Ok(Ok(queue::offer(&lease, body, env.sealing_key)))
        }
        Created::ConcurrencyLimit { .. } => Ok(Err(refuse(486, inbound_refusals::AT_CAPACITY))),
        Created::DispatchUnavailable { .. }
        | Created::Existing { .. }
        | Created::KeyReused
        | Created::Duplicate { .. } => Ok(Err(refuse(503, inbound_refusals::UNAVAILABLE))),
    }
}

/// The call record of an inbound call that rings person `user_pk`: no
/// agent (`agent_id` empty), no prompt, an engine that runs nothing;
/// recorded (the bridge keeps both sides).
fn ring_user_record(
    now_ms: u64,
    call: &InboundCall,
    number: &PhoneNumber,
    user_pk: u64,
) -> CallRecord {
    let now = rfc3339_ms(now_ms);
    CallRecord {
        id: ids::call_id(now_ms),
        status: CallStatus::Ringing,
        phone: call.caller.clone(),
        name: None,
        caller_name: None,
        email: None,
        transcript_email: None,
        metadata: None,
        agent_id: String::new(),
        system_prompt: None,
        voice: None,
        language: "en-US".to_string(),
        engine: model::Engine::Local,
        model: None,
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
        engine_base_url: None,
        engine_api_key_set: false,
        silence_timeout_seconds: model::DEFAULT_SILENCE_TIMEOUT_SECONDS,
        placed_with: None,
        caller_number: Some(number.number.clone()),
        from_user: None,
        campaign_id: None,
        campaign_row: None,
        first_speaker: Default::default(),
        direction: CallDirection::Inbound,
        analysis_plan: None,
        analysis: None,
        amd: Default::default(),
        amd_message: None,
        answered_by: None,
        amd_decision_ms: None,
        rings_user: Some(user_pk),
        transfer_request: None,
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
        rings_user: None,
        transfer_request: None,
    }
}

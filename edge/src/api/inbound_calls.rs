//! Inbound calls (issue 16, slice 1): a trunk calls one of a tenant's
//! numbers, the sidecar rings the caller and asks the edge with one
//! `POST /v1/sidecar/inbound-calls` ([`InboundCall`]); [`decide`] answers in
//! that one round trip. The number (KV `number/{e164}`, configuration)
//! names the tenant and the route; a route to an AI agent becomes a call
//! record in the tenant's call store (`direction: inbound`, created
//! `ringing`), which the region's dispatch queue holds for that sidecar at
//! once, within the tenant's concurrency cap (`QueuedCall::held_by`), so
//! everything after (events, transcript, recording, webhooks, hangup, the
//! call APIs) is an outbound call's path. A route to a person rings their
//! phones ([`InboundDecision::RingUser`]); to a queue, the caller waits
//! while its members ring ([`InboundDecision::Queue`]).

use crate::calls::store::{Created, NewCall};
use crate::dialects::voice360::Strategy;
use crate::dispatch::port::{self, DispatchQueues};
use crate::dispatch::queue::{self, Lease};
use crate::error::{ApiError, ErrorCode};
use crate::http::{ApiRequest, ApiResponse};
use crate::ids::{self, rfc3339_ms};
use crate::model::{self, keys, Agent, CallDirection, CallRecord, Tenant};
use crate::numbers::{self, NumberRoute, NumberStatus, PhoneNumber};
use crate::store::{get_json, Kv};
use voxline_shared::sidecar_link::{
    inbound_refusals, InboundCall, InboundCallAnswer, InboundDecision, Offer, QueueOverflow,
    QueuePlan, RingUser, MAX_QUEUE_MEMBERS, PROTOCOL_VERSION,
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
        Some(NumberRoute::Queue { queue_id }) => {
            return queue_call(env, call, &number, *queue_id).await
        }
        None => return Ok(refuse(480, inbound_refusals::NO_ROUTE)),
    };
    let tenant: Option<Tenant> = get_json(env.kv, &keys::tenant(&number.tenant_id)).await?;
    let Some(tenant) = tenant.filter(|t| !t.disabled) else {
        return Ok(refuse(480, inbound_refusals::AGENT_UNAVAILABLE));
    };
    let agent: Option<Agent> = get_json(env.kv, &keys::agent(&tenant.id, &agent_id)).await?;
    let Some(agent) = agent.filter(|a| a.enabled) else {
        return Ok(refuse(480, inbound_refusals::AGENT_UNAVAILABLE));
    };
    answer_with_agent(env, call, &tenant, &number, &agent).await
}

/// `agent` answers the call (its number's route, or a queue's agent
/// overflow when the queue's `leavewhenempty` sends the caller straight
/// there): the call created held by the asking sidecar, an `answer`.
async fn answer_with_agent<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    call: &InboundCall,
    tenant: &Tenant,
    number: &PhoneNumber,
    agent: &Agent,
) -> Result<InboundDecision> {
    let record = inbound_record(env.now_ms, call, number, agent);
    let transfer_people = crate::api::calls::transfer_people(env, &tenant.id, agent).await?;
    let held = create_held(env, call, tenant, record, |offer| {
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
    // Voicemail takes the call nobody answered, phones here or not.
    let voicemail = user.fields.voicemail_enabled;
    if !here && forward_number.is_none() && !voicemail {
        return unavailable();
    }
    let ring = user.ring_user(forward_number, voicemail);
    let record = person_record(env.now_ms, call, number, Some(user_pk));
    let held = create_held(env, call, &tenant, record, |_| {}).await?;
    Ok(match held {
        Ok(offer) => InboundDecision::RingUser {
            offer: Box::new(offer),
            ring,
        },
        Err(refusal) => refusal,
    })
}

/// A number routed to queue `queue_pk` (issue 16): the caller waits in the
/// queue ([`QueuePlan`]) while its members ring. Members are the people of
/// the queue with a phone registered with the asking sidecar, without
/// those on a live call unless the queue rings members in use, nor those
/// whose call ended less than the queue's `wrapuptime` ago, in the
/// order of its strategy ([`ring_order`]). A full queue (`maxlen`) is
/// `at_capacity`; no member to ring and `leavewhenempty` on, the caller is
/// not queued: answered by the agent overflow as that agent's own number
/// would be (`answer`), else `user_unavailable`; no member to ring and
/// `joinempty` off, `user_unavailable`; an unknown queue, `no_route`. With an agent overflow the offer is that
/// agent's, as an answered call's would be (an agent gone or disabled
/// overflows as `hangup`).
async fn queue_call<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    call: &InboundCall,
    number: &PhoneNumber,
    queue_pk: u64,
) -> Result<InboundDecision> {
    use crate::directory::ops;
    let no_route = || Ok(refuse(480, inbound_refusals::NO_ROUTE));
    let tenant: Option<Tenant> = get_json(env.kv, &keys::tenant(&number.tenant_id)).await?;
    let Some(tenant) = tenant.filter(|t| !t.disabled) else {
        return no_route();
    };
    let queues = ops::queues(env.directory, &tenant.id).await?;
    let Some(q) = queues.into_iter().find(|q| q.pk == queue_pk) else {
        return no_route();
    };
    let planned = match plan_queue(env, &tenant, &q, &call.sidecar_id).await? {
        Ok(p) => p,
        Err(QueueRefusal::Full) => return Ok(refuse(486, inbound_refusals::AT_CAPACITY)),
        Err(QueueRefusal::NoMember | QueueRefusal::LeaveWhenEmpty { agent: None }) => {
            return Ok(refuse(480, inbound_refusals::USER_UNAVAILABLE))
        }
        // Straight to the overflow's agent, as that agent's own number.
        Err(QueueRefusal::LeaveWhenEmpty { agent: Some(agent) }) => {
            return answer_with_agent(env, call, &tenant, number, &agent).await
        }
    };
    let PlannedQueue { plan, agent } = planned;
    let mut record = match &agent {
        Some(agent) => inbound_record(env.now_ms, call, number, agent),
        None => person_record(env.now_ms, call, number, None),
    };
    record.queue = Some(crate::model::CallQueue {
        pk: q.pk,
        name: q.fields.name.clone(),
        left: false,
    });
    let held = create_held(env, call, &tenant, record, |offer| {
        if let Some(agent) = &agent {
            offer.engine_api_key_sealed = agent.engine_api_key_sealed.clone();
            offer.tools = agent.tools.iter().map(model::AgentTool::offered).collect();
        }
    })
    .await?;
    Ok(match held {
        Ok(offer) => InboundDecision::Queue {
            offer: Box::new(offer),
            queue: plan,
        },
        Err(refusal) => refusal,
    })
}

/// A queue's plan and its overflow agent ([`plan_queue`]).
pub(crate) struct PlannedQueue {
    pub plan: QueuePlan,
    /// The queue's `agent` overflow's agent (enabled; `None`: none, and
    /// the plan's overflow is `hangup`).
    pub agent: Option<Agent>,
}

/// Why a caller cannot enter a queue now.
#[derive(Debug, Clone)]
pub(crate) enum QueueRefusal {
    /// As many callers wait as `maxlen` allows.
    Full,
    /// No member can be rung and the queue does not take callers then
    /// (`joinempty` off).
    NoMember,
    /// No member can be rung and the queue sends callers away then
    /// (`leavewhenempty` on): to its `agent` overflow's agent (enabled)
    /// when it has one, else nowhere (a queue's voicemail needs the queue
    /// call the caller is not put in).
    LeaveWhenEmpty { agent: Option<Box<Agent>> },
}

/// The plan for a caller entering queue `q` on the sidecar `sidecar_id`
/// (an inbound call to the queue's number, or a call transferred to it):
/// its members with a phone registered with that sidecar, not on a call
/// (unless `ringinuse`) nor wrapping up, in the order of the queue's
/// strategy ([`ring_order`]); the caller's position; the overflow.
pub(crate) async fn plan_queue<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    tenant: &Tenant,
    q: &crate::directory::DirectoryQueue,
    sidecar_id: &str,
) -> Result<std::result::Result<PlannedQueue, QueueRefusal>> {
    use crate::directory::{ops, QueueOverflowRule, UserKind};
    let f = &q.fields;
    let live = crate::api::calls::live_calls(env, &tenant.id).await?;
    let waiting = live
        .iter()
        .filter(|c| c.queue.as_ref().is_some_and(|cq| cq.pk == q.pk && !cq.left))
        .count();
    if f.maxlen > 0 && waiting >= f.maxlen as usize {
        return Ok(Err(QueueRefusal::Full));
    }
    let users = ops::users(env.directory, &tenant.id).await?;
    let bindings = ops::bindings(env.directory, &tenant.id).await?;
    let here = |pk: u64| {
        bindings
            .iter()
            .any(|b| b.user_pk == pk && b.sidecar_id == sidecar_id && b.expires_ms > env.now_ms)
    };
    let strategy = crate::dialects::voice360::Strategy::parse(&f.strategy)
        .unwrap_or(crate::dialects::voice360::Strategy::RingAll);
    let history =
        if f.wrapuptime > 0 || matches!(strategy, Strategy::LeastRecent | Strategy::FewestCalls) {
            crate::api::calls::recent_calls(env, &tenant.id).await?
        } else {
            Vec::new()
        };
    // A member whose call ended less than `wrapuptime` ago is wrapping up.
    let wrapping_up = |pk: u64| {
        let since = env.now_ms.saturating_sub(u64::from(f.wrapuptime) * 1000);
        f.wrapuptime > 0
            && history.iter().any(|c| {
                c.has_user(pk)
                    && c.ended_at
                        .as_deref()
                        .and_then(crate::ids::parse_rfc3339_utc_ms)
                        .is_some_and(|end| end > since)
            })
    };
    let mut members: Vec<&crate::directory::DirectoryUser> = Vec::new();
    for pk in &f.members {
        let Some(u) = users
            .iter()
            .find(|u| u.pk == *pk && u.fields.kind == UserKind::Person)
        else {
            continue;
        };
        let busy = !f.ringinuse && live.iter().any(|c| c.has_user(u.pk));
        if here(u.pk) && !busy && !wrapping_up(u.pk) && !members.iter().any(|m| m.pk == u.pk) {
            members.push(u);
        }
    }
    let turn = match strategy {
        Strategy::RoundRobinMemory if !members.is_empty() => {
            ops::queue_turn(env.directory, &tenant.id, q.pk).await?
        }
        _ => 0,
    };
    let mut pks: Vec<u64> = members.iter().map(|m| m.pk).collect();
    ring_order(
        strategy,
        &mut pks,
        &Ordering {
            queue_pk: q.pk,
            turn,
            history: &history,
            random: crate::ids::random_bytes::<32>(),
            now_ms: env.now_ms,
        },
    );
    pks.truncate(MAX_QUEUE_MEMBERS);
    let agent = match &f.overflow {
        QueueOverflowRule::Agent { agent_id } => {
            get_json::<Agent>(env.kv, &keys::agent(&tenant.id, agent_id))
                .await?
                .filter(|a| a.enabled)
        }
        QueueOverflowRule::Voicemail | QueueOverflowRule::Hangup => None,
    };
    if pks.is_empty() && f.leavewhenempty {
        // Nobody to ring and the queue says leave: not queued.
        return Ok(Err(QueueRefusal::LeaveWhenEmpty {
            agent: agent.map(Box::new),
        }));
    }
    if pks.is_empty() && !f.joinempty {
        return Ok(Err(QueueRefusal::NoMember));
    }
    let ring: Vec<RingUser> = pks
        .iter()
        .filter_map(|pk| members.iter().find(|m| m.pk == *pk))
        .map(|m| m.ring_user(None, false))
        .collect();
    let overflow = match (&f.overflow, &agent) {
        (QueueOverflowRule::Agent { .. }, Some(_)) => QueueOverflow::Agent,
        (QueueOverflowRule::Voicemail, _) => QueueOverflow::Voicemail,
        _ => QueueOverflow::Hangup,
    };
    let plan = QueuePlan {
        queue_pk: q.pk,
        name: f.name.clone(),
        extension: f.extension.clone(),
        ring_all: strategy == Strategy::RingAll,
        members: ring,
        member_timeout_seconds: f.timeout,
        retry_seconds: f.retry,
        max_wait_seconds: f.max_wait_seconds,
        announce_every_seconds: f.announce_every_seconds,
        position: u32::try_from(waiting).unwrap_or(u32::MAX).saturating_add(1),
        overflow,
    };
    Ok(Ok(PlannedQueue { plan, agent }))
}

/// What a queue's ring order is decided from besides its members.
pub struct Ordering<'a> {
    pub queue_pk: u64,
    /// This call's round-robin turn (1, 2, 3...; `rrmemory`).
    pub turn: u64,
    /// The tenant's latest calls, newest first (`leastrecent`, `fewestcalls`).
    pub history: &'a [CallRecord],
    /// Randomness for `random`.
    pub random: [u8; 32],
    pub now_ms: u64,
}

/// Puts a queue's members (`pks`, in the queue's order) in the order they
/// ring by `strategy`: `ringall` and `linear` as listed; `rrmemory` the list
/// rotated by the call's turn (turn 1 starts at the first member, turn 2 at
/// the second...); `leastrecent` the longest idle first, by the end of their
/// latest call in `history` (live: now; none there: idle longest);
/// `fewestcalls` fewest calls of this queue answered (in `history`) first;
/// `random` shuffled. Ties keep the listed order.
pub fn ring_order(strategy: Strategy, pks: &mut [u64], o: &Ordering<'_>) {
    match strategy {
        Strategy::RingAll | Strategy::Linear => {}
        Strategy::RoundRobinMemory => {
            if !pks.is_empty() {
                let start = (o.turn.max(1) - 1) % pks.len() as u64;
                pks.rotate_left(start as usize);
            }
        }
        Strategy::LeastRecent => {
            let last_end = |pk: u64| {
                o.history
                    .iter()
                    .find(|c| {
                        c.answered_user == Some(pk)
                            || c.from_user == Some(pk)
                            || c.rings_user == Some(pk)
                    })
                    .map_or(0, |c| {
                        c.ended_at
                            .as_deref()
                            .and_then(crate::ids::parse_rfc3339_utc_ms)
                            .unwrap_or(o.now_ms)
                    })
            };
            pks.sort_by_key(|pk| last_end(*pk));
        }
        Strategy::FewestCalls => {
            let answered = |pk: u64| {
                o.history
                    .iter()
                    .filter(|c| {
                        c.answered_user == Some(pk)
                            && c.queue.as_ref().is_some_and(|q| q.pk == o.queue_pk)
                    })
                    .count()
            };
            pks.sort_by_key(|pk| answered(*pk));
        }
        Strategy::Random => {
            // Fisher-Yates over the random bytes (two per draw).
            for i in (1..pks.len()).rev() {
                let k = (i * 2) % o.random.len();
                let r = u16::from_le_bytes([o.random[k], o.random[(k + 1) % o.random.len()]]);
                pks.swap(i, usize::from(r) % (i + 1));
            }
        }
    }
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

/// The call record of an inbound call that rings people: person
/// `rings_user`, or a queue's members. No agent (`agent_id` empty), no
/// prompt, an engine that runs nothing; recorded (the bridge keeps both
/// sides).
fn person_record(
    now_ms: u64,
    call: &InboundCall,
    number: &PhoneNumber,
    rings_user: Option<u64>,
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
        rings_user,
        queue: None,
        answered_user: None,
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
        queue: None,
        answered_user: None,
        transfer_request: None,
    }
}

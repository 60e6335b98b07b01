//! The call routes: create (admission, engine credentials, calling window),
//! read, transcript, recording, hang up, list.

use crate::api::fields::parse_request;
use crate::api::list::{
    decode_list_cursor, encode_list_cursor, parse_list_filter, parse_list_limit, parse_query_params,
};
use crate::api::validate;
use crate::calls::store::{Created, ListFilter, NewCall};
use crate::directory::{DirectoryUser, UserKind};
use crate::dispatch::port::{self, DispatchQueues};
use crate::error::{ApiError, ErrorCode};
use crate::http::{ApiRequest, ApiResponse};
use crate::ids::{self, rfc3339_ms};
use crate::limits::CONCURRENCY_RETRY_AFTER_SECONDS;
use crate::model::{self, keys, Agent, CallRecord, ScheduledReason, Tenant};
use crate::numbers::{self, NumberStatus, PhoneNumber};
use crate::store::{get_json, Kv};
use crate::traffic::IdemRequest;
use serde_json::{json, Value};
use voxline_shared::CallStatus;

use crate::api::env::{Env, Result};

/// Who a new call is from: an agent (its engine talks to the callee), or a
/// person of the tenant's directory (`from_extension`, issue 16: their phones
/// ring first, then the callee is dialled and the two are bridged).
pub(crate) enum CallFrom {
    Agent(Box<Agent>),
    Person(Box<DirectoryUser>),
}

/// The person of the tenant's directory with extension `ext` (an AI agent's
/// extension is no person's).
pub(crate) async fn person_with_extension<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    tenant_id: &str,
    ext: &str,
) -> Result<Option<DirectoryUser>> {
    Ok(crate::directory::ops::users(env.directory, tenant_id)
        .await?
        .into_iter()
        .find(|u| u.fields.extension == ext && u.fields.kind == UserKind::Person))
}

/// Validates a new call and resolves who it is from: its agent, or the
/// person `from_extension` names (no writes).
pub(crate) async fn prepare_call<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
    tenant: &Tenant,
) -> Result<(validate::CreateCallInput, CallFrom)> {
    let input = validate::create_call(req.content_type.as_deref(), &req.body, env.now_ms)?;
    if let Some(ext) = input.from_extension.clone() {
        let user = person_with_extension(env, &tenant.id, &ext)
            .await?
            .ok_or_else(|| {
                ApiError::field(
                    ErrorCode::UnknownExtension,
                    "from_extension",
                    format!("no person of this tenant's directory has extension '{ext}'"),
                )
            })?;
        return Ok((input, CallFrom::Person(Box::new(user))));
    }
    let (input, agent) = prepare_agent_call(env, input, tenant).await?;
    Ok((input, CallFrom::Agent(Box::new(agent))))
}

/// Resolves a new agent's call's agent: the one named, else the tenant's
/// default; enabled, with usable engine credentials.
async fn prepare_agent_call<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    input: validate::CreateCallInput,
    tenant: &Tenant,
) -> Result<(validate::CreateCallInput, Agent)> {
    let agent = match &input.agent_id {
        Some(aid) => get_json::<Agent>(env.kv, &keys::agent(&tenant.id, aid))
            .await?
            .ok_or_else(|| {
                ApiError::field(
                    ErrorCode::UnknownAgent,
                    "agent_id",
                    format!("no agent '{aid}'"),
                )
            })?,
        None => {
            let no_default = || {
                ApiError::field(
                    ErrorCode::AgentRequired,
                    "agent_id",
                    "give agent_id: this tenant has no default agent",
                )
            };
            let aid = tenant.default_agent_id.as_deref().ok_or_else(no_default)?;
            get_json::<Agent>(env.kv, &keys::agent(&tenant.id, aid))
                .await?
                .ok_or_else(no_default)?
        }
    };
    if !agent.enabled {
        return Err(ApiError::field(
            ErrorCode::AgentDisabled,
            "agent_id",
            format!("agent '{}' is disabled", agent.id),
        ));
    }
    check_engine_credentials(
        env,
        input.engine_api_key.is_some(),
        input.engine_base_url.as_deref(),
    )?;
    Ok((input, agent))
}

/// The limits a new call counts against besides its credential's and address's:
/// its number (the agent's `per_number_limit`, else the tenant's) and, when the
/// agent sets one, its `per_ip_limit` for this client address.
pub(crate) fn new_call_checks(
    agent: &Agent,
    limits: &crate::traffic::RateLimits,
    phone: &str,
    client_ip: &str,
) -> Vec<crate::traffic::Check> {
    let mut checks = vec![crate::traffic::Check {
        scope: format!("number:{phone}"),
        limit: agent.per_number_limit.unwrap_or(limits.per_number),
        new_work_only: true,
    }];
    if let Some(limit) = agent.per_ip_limit {
        checks.push(crate::traffic::Check {
            scope: format!("agent_ip:{}:{client_ip}", agent.id),
            limit,
            new_work_only: true,
        });
    }
    checks
}

/// The limit a person's new call counts against besides its credential's
/// and address's: its number's (the tenant's `per_number`; no agent sets one).
pub(crate) fn person_call_checks(
    limits: &crate::traffic::RateLimits,
    phone: &str,
) -> Vec<crate::traffic::Check> {
    vec![crate::traffic::Check {
        scope: format!("number:{phone}"),
        limit: limits.per_number,
        new_work_only: true,
    }]
}

/// A key needs the sealing secret; a base URL must pass the SSRF rules.
pub(crate) fn check_engine_credentials<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    has_key: bool,
    base_url: Option<&str>,
) -> Result<()> {
    if has_key && env.sealing_key.is_none() {
        return Err(ApiError::field(
            ErrorCode::EngineKeysUnavailable,
            "engine_api_key",
            "this deployment cannot keep engine API keys (no VOXLINE_SEALING_KEY secret)",
        ));
    }
    if let Some(url) = base_url {
        crate::engine_keys::check_base_url(url, env.dev_mode).map_err(|why| {
            ApiError::field(
                ErrorCode::InvalidUrl,
                "engine_base_url",
                format!("engine_base_url {why}"),
            )
        })?;
    }
    Ok(())
}

/// Seals a clear engine key for the tenant (checked available beforehand).
pub(crate) fn seal_engine_key<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    tenant_id: &str,
    key: &str,
) -> Result<String> {
    let sealing = env.sealing_key.ok_or_else(|| {
        ApiError::field(
            ErrorCode::EngineKeysUnavailable,
            "engine_api_key",
            "no VOXLINE_SEALING_KEY secret",
        )
    })?;
    Ok(sealing.seal(tenant_id, key))
}

/// Applies the agent's calling window to when the call would start (now, or
/// `schedule_at`): inside, unchanged; outside, moved to the next window start
/// or, with `outside_window: reject`, refused.
pub(crate) fn apply_calling_window(
    agent: &Agent,
    input: &mut validate::CreateCallInput,
    now_ms: u64,
) -> Result<Option<ScheduledReason>> {
    let Some(window) = &agent.calling_window else {
        return Ok(None);
    };
    let wanted = input
        .schedule_at
        .as_deref()
        .and_then(ids::parse_rfc3339_utc_ms)
        .unwrap_or(now_ms);
    let start = window.earliest_start(wanted).ok_or_else(|| {
        ApiError::new(
            ErrorCode::InternalError,
            "the agent's calling window could not be evaluated",
        )
    })?;
    if start == wanted {
        return Ok(None);
    }
    if input.reject_outside_window {
        let field = if input.schedule_at.is_some() {
            "schedule_at"
        } else {
            "outside_window"
        };
        return Err(ApiError::field(
            ErrorCode::OutsideCallingWindow,
            field,
            format!(
                "agent {} calls only {} {}-{} {}; the next window starts at {}",
                agent.id,
                window.days.join(","),
                window.start,
                window.end,
                window.time_zone,
                rfc3339_ms(start)
            ),
        ));
    }
    input.schedule_at = Some(rfc3339_ms(start));
    Ok(Some(ScheduledReason::CallingWindow))
}

/// `POST /v1/calls` once admitted: 201 with the call (or the call an
/// `Idempotency-Key` already made).
pub(crate) async fn create_call<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    tenant: &Tenant,
    input: validate::CreateCallInput,
    from: CallFrom,
    idempotency: Option<IdemRequest>,
) -> Result<ApiResponse> {
    if let Some(n) = &input.caller_number {
        check_caller_number(env, tenant, n).await?;
    }
    let origin = CallOrigin {
        caller_number: input.caller_number.clone(),
        ..CallOrigin::default()
    };
    let placed = match from {
        CallFrom::Agent(agent) => place_call(env, tenant, input, *agent, idempotency, origin).await,
        CallFrom::Person(user) => {
            place_person_call(env, tenant, input, &user, idempotency, origin).await
        }
    };
    match placed {
        Ok(record) => Ok(ApiResponse::json_text(201, record.to_public_json())
            .with_header("Location", format!("/v1/calls/{}", record.id))),
        // A slot frees when a call ends, which no clock can tell: a polling hint.
        Err(e) if e.code == ErrorCode::ConcurrencyLimitReached => Ok(ApiResponse::error(&e)
            .with_header("Retry-After", CONCURRENCY_RETRY_AFTER_SECONDS.to_string())),
        Err(e) => Err(e),
    }
}

/// The call's prompt (its own or its agent's) with its dynamic variables
/// filled in; 422 `unknown_variable` names a placeholder the call does not
/// fill, 422 `value_too_long` when the filled prompt outgrows the limit.
fn fill_prompt(template: &str, input: &validate::CreateCallInput) -> Result<String> {
    use crate::prompt_variables::{render, RenderError, Variables};
    let metadata: Option<serde_json::Map<String, Value>> = input
        .metadata
        .as_ref()
        .and_then(|m| serde_json::from_str(m.as_str()).ok());
    let vars = Variables {
        name: input.name.as_deref(),
        phone: &input.phone,
        metadata: metadata.as_ref(),
        custom: &input.variables,
    };
    let filled = render(template, &vars).map_err(|e| {
        let message = match e {
            RenderError::Unknown(name) => format!(
                "the prompt has {{{{{name}}}}} but the call does not fill it: give it in `variables` (or `name`/`metadata` for the built-ins)"
            ),
            RenderError::NotText(name) => format!(
                "the prompt has {{{{{name}}}}} but that metadata value is not a string, number or boolean"
            ),
        };
        ApiError::field(ErrorCode::UnknownVariable, "system_prompt", message)
    })?;
    if filled.chars().count() > crate::limits::MAX_PROMPT_CHARS {
        return Err(ApiError::field(
            ErrorCode::ValueTooLong,
            "system_prompt",
            format!(
                "the prompt with its variables filled in is longer than {} characters",
                crate::limits::MAX_PROMPT_CHARS
            ),
        ));
    }
    Ok(filled)
}

/// `caller_number` must be one of the tenant's numbers, in service: a caller
/// ID the tenant does not hold is spoofing. Another tenant's number reads as
/// unknown (nothing says whose it is). 422 `unknown_number`.
async fn check_caller_number<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    tenant: &Tenant,
    number: &str,
) -> Result<()> {
    let held: Option<PhoneNumber> = get_json(env.kv, &numbers::keys::number(number)).await?;
    match held.filter(|n| n.tenant_id == tenant.id) {
        Some(n) if n.status == NumberStatus::Active => Ok(()),
        Some(n) => Err(ApiError::field(
            ErrorCode::UnknownNumber,
            "caller_number",
            format!(
                "{number} is not in service (status: {}); only active numbers can be shown as caller ID",
                n.status.as_str()
            ),
        )),
        None => Err(ApiError::field(
            ErrorCode::UnknownNumber,
            "caller_number",
            format!("{number} is not one of this tenant's numbers"),
        )),
    }
}

/// Who placed a call, beyond the API key: what only some APIs say.
#[derive(Debug, Clone, Default)]
pub(crate) struct CallOrigin {
    /// A dialect's credential (for its webhooks).
    pub placed_with: Option<model::PlacedWith>,
    /// The caller ID number, one of the tenant's (checked by the caller).
    pub caller_number: Option<String>,
    /// The directory user whose extension placed it.
    pub from_user: Option<u64>,
    /// The campaign and the contact row it placed the call for.
    pub campaign: Option<(String, u32)>,
}

/// Writes a validated, admitted call and queues it in its region: the one
/// path every API (native and dialects) places calls through.
pub(crate) async fn place_call<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    tenant: &Tenant,
    mut input: validate::CreateCallInput,
    agent: Agent,
    idempotency: Option<IdemRequest>,
    origin: CallOrigin,
) -> Result<CallRecord> {
    let transfer_people = transfer_people(env, &tenant.id, &agent).await?;
    let CallOrigin {
        placed_with,
        caller_number,
        from_user,
        campaign,
    } = origin;
    let (campaign_id, campaign_row) = campaign.unzip();
    let now = rfc3339_ms(env.now_ms);
    let reject_over_cap = input.reject_over_cap;
    let scheduled_reason = apply_calling_window(&agent, &mut input, env.now_ms)?;
    let calling_window = agent.calling_window.clone();
    // A key travels only with its own endpoint: the call's key and URL if it
    // gives either, else its agent's pair (never the agent's key to a URL the
    // call names). The key is sealed, and only ever in the queued offer.
    let (sealed_key, engine_base_url) =
        if input.engine_api_key.is_some() || input.engine_base_url.is_some() {
            let key = match &input.engine_api_key {
                Some(k) => Some(seal_engine_key(env, &tenant.id, k)?),
                None => None,
            };
            (key, input.engine_base_url.take())
        } else {
            (
                agent.engine_api_key_sealed.clone(),
                agent.engine_base_url.clone(),
            )
        };
    let system_prompt = match input.system_prompt.take().or(agent.system_prompt) {
        Some(template) => Some(fill_prompt(&template, &input)?),
        None => None,
    };
    let record = CallRecord {
        id: ids::call_id(env.now_ms),
        status: if input.schedule_at.is_some() {
            CallStatus::Scheduled
        } else {
            CallStatus::Queued
        },
        phone: input.phone,
        name: input.name,
        caller_name: input.caller_name,
        email: input.email,
        transcript_email: input.transcript_email,
        metadata: input.metadata,
        agent_id: agent.id.clone(),
        system_prompt,
        voice: input.voice.or(agent.voice),
        language: input.language.unwrap_or(agent.language),
        engine: agent.default_engine,
        model: input.model.or(agent.model),
        max_seconds: input.max_seconds,
        retries: input.retries,
        retry_delay_minutes: input.retry_delay_minutes,
        schedule_at: input.schedule_at,
        record: input.record,
        region: env.default_region.to_string(),
        attempts: 0,
        dispatched_at: None,
        ringing_at: None,
        answered_at: None,
        next_attempt_at: None,
        sip_code: None,
        created_at: now.clone(),
        updated_at: now,
        hangup_requested_at: None,
        ended_at: None,
        ended_reason: None,
        scheduled_reason,
        engine_base_url,
        engine_api_key_set: sealed_key.is_some(),
        silence_timeout_seconds: input
            .silence_timeout_seconds
            .or(agent.silence_timeout_seconds)
            .unwrap_or(model::DEFAULT_SILENCE_TIMEOUT_SECONDS),
        placed_with,
        caller_number,
        from_user,
        campaign_id,
        campaign_row,
        first_speaker: agent.first_speaker,
        direction: model::CallDirection::Outbound,
        analysis_plan: agent.analysis.clone(),
        analysis: None,
        amd: input.amd.unwrap_or(agent.amd),
        amd_message: input.amd_message.or(agent.amd_message),
        answered_by: None,
        amd_decision_ms: None,
        rings_user: None,
        queue: None,
        answered_user: None,
        transfer_request: None,
    };
    let mut queued = port::queued_call(&tenant.id, &record, env.now_ms);
    queued.max_concurrent = tenant.max_concurrent_calls;
    // Retries that would land outside the window wait for its next start.
    queued.calling_window = calling_window;
    queued.reject_over_cap = reject_over_cap;
    if let Some(offer) = queued.offer.as_mut() {
        offer.engine_api_key_sealed = sealed_key;
        offer.tools = agent.tools.iter().map(model::AgentTool::offered).collect();
        offer.transfer_people = transfer_people;
    }
    submit_call(env, tenant, record, queued, idempotency).await
}

/// Has the tenant's call store write the record, then queue it in its
/// region; a call the queue refuses is deleted again (it never existed).
async fn submit_call<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    tenant: &Tenant,
    record: CallRecord,
    queued: crate::dispatch::queued_call::QueuedCall,
    idempotency: Option<IdemRequest>,
) -> Result<CallRecord> {
    let phone = record.phone.clone();
    let from = match record.from_user.filter(|_| record.agent_id.is_empty()) {
        Some(pk) => format!("person {pk}"),
        None => format!("agent {}", record.agent_id),
    };
    let created = env
        .calls
        .create(
            &tenant.id,
            &NewCall {
                record,
                queued,
                idempotency,
            },
        )
        .await?;
    match created {
        Created::Created { record } | Created::Existing { record } => Ok(record),
        Created::KeyReused => Err(ApiError::field(
            ErrorCode::IdempotencyKeyReused,
            "Idempotency-Key",
            "this Idempotency-Key was used with a different request",
        )),
        Created::Duplicate { call_id } => Err(ApiError::field(
            ErrorCode::CallInProgress,
            "phone",
            format!("call {call_id} from {from} to {phone} is already in progress"),
        )),
        Created::ConcurrencyLimit { limit, active } => Err(ApiError::field(
            ErrorCode::ConcurrencyLimitReached,
            "on_concurrency_limit",
            format!("{active} calls are in flight or due against this tenant's max_concurrent_calls of {limit}; retry later or omit on_concurrency_limit to queue"),
        )),
        Created::DispatchUnavailable { .. } => Err(ApiError::new(
            ErrorCode::StorageUnavailable,
            "the dispatch queue did not answer; the call was not placed",
        )),
    }
}

/// The caller ID of a person's call when none is given: the first of the
/// tenant's active numbers routed to them (their direct line), else none
/// (the trunk's).
async fn persons_number<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    tenant: &Tenant,
    user_pk: u64,
) -> Result<Option<String>> {
    let numbers = crate::api::numbers::tenant_numbers(env, &tenant.id).await?;
    Ok(numbers
        .into_iter()
        .filter(|n| n.status == NumberStatus::Active)
        .find(|n| matches!(n.route, Some(numbers::NumberRoute::User { user_id }) if user_id == user_pk))
        .map(|n| n.number))
}

/// Places a person's call (issue 16, click-to-call): no agent, no engine;
/// the offer's `connect` has the sidecar ring `user`'s phones first, then
/// dial `phone` with the call's caller ID (given, else the person's number)
/// and bridge the two. `from_user` is the person (their availability, and
/// Voice360's `USER_DIAL` / `USER_HANGUP`). One call at a time per person
/// and number, as per agent and number.
pub(crate) async fn place_person_call<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    tenant: &Tenant,
    input: validate::CreateCallInput,
    user: &DirectoryUser,
    idempotency: Option<IdemRequest>,
    origin: CallOrigin,
) -> Result<CallRecord> {
    use voxline_shared::sidecar_link::Connect;
    let caller_number = match origin.caller_number {
        Some(n) => Some(n),
        None => persons_number(env, tenant, user.pk).await?,
    };
    let now = rfc3339_ms(env.now_ms);
    let record = CallRecord {
        id: ids::call_id(env.now_ms),
        status: if input.schedule_at.is_some() {
            CallStatus::Scheduled
        } else {
            CallStatus::Queued
        },
        phone: input.phone,
        name: input.name,
        // The callee sees the person's name unless the call says otherwise.
        caller_name: input
            .caller_name
            .or_else(|| Some(user.fields.caller_id.clone()).filter(|n| !n.is_empty())),
        email: input.email,
        transcript_email: input.transcript_email,
        metadata: input.metadata,
        agent_id: String::new(),
        system_prompt: None,
        voice: None,
        language: "en-US".to_string(),
        engine: model::Engine::Local,
        model: None,
        max_seconds: input.max_seconds,
        retries: input.retries,
        retry_delay_minutes: input.retry_delay_minutes,
        schedule_at: input.schedule_at,
        record: input.record,
        region: env.default_region.to_string(),
        attempts: 0,
        dispatched_at: None,
        ringing_at: None,
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
        placed_with: origin.placed_with,
        caller_number,
        from_user: Some(user.pk),
        campaign_id: None,
        campaign_row: None,
        first_speaker: Default::default(),
        direction: model::CallDirection::Outbound,
        analysis_plan: None,
        analysis: None,
        amd: Default::default(),
        amd_message: None,
        answered_by: None,
        amd_decision_ms: None,
        rings_user: None,
        queue: None,
        answered_user: None,
        transfer_request: None,
    };
    let mut queued = port::queued_call(&tenant.id, &record, env.now_ms);
    queued.max_concurrent = tenant.max_concurrent_calls;
    queued.reject_over_cap = input.reject_over_cap;
    // The same conversation: this person and this number (no agent).
    queued.agent_id = person_conversation(user.pk);
    // Their phones ring from the sidecars they registered with.
    let mut sidecars: Vec<String> = crate::directory::ops::bindings(env.directory, &tenant.id)
        .await?
        .into_iter()
        .filter(|b| b.user_pk == user.pk && b.expires_ms > env.now_ms)
        .map(|b| b.sidecar_id)
        .collect();
    sidecars.sort_unstable();
    sidecars.dedup();
    queued.sidecars = sidecars;
    if let Some(offer) = queued.offer.as_mut() {
        offer.connect = Some(Connect::ClickToCall {
            // Their own call: no forwarding, no voicemail.
            user: user.ring_user(None, false),
        });
    }
    submit_call(env, tenant, record, queued, idempotency).await
}

/// What stands for the agent in a person's calls' "one call at a time per
/// agent and number" (the dispatch queue's conversation key).
pub(crate) fn person_conversation(user_pk: u64) -> String {
    format!("user:{user_pk}")
}

/// The tenant's calls on the line now (dialing, ringing, talking), at most
/// the list limit.
pub(crate) async fn live_calls<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    tenant_id: &str,
) -> Result<Vec<CallRecord>> {
    calls_with(
        env,
        tenant_id,
        vec![
            CallStatus::Dialing,
            CallStatus::Ringing,
            CallStatus::InProgress,
        ],
    )
    .await
}

/// The tenant's latest calls, newest first, at most the list limit.
pub(crate) async fn recent_calls<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    tenant_id: &str,
) -> Result<Vec<CallRecord>> {
    calls_with(env, tenant_id, Vec::new()).await
}

async fn calls_with<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    tenant_id: &str,
    statuses: Vec<CallStatus>,
) -> Result<Vec<CallRecord>> {
    let filter = ListFilter {
        statuses,
        after_id: None,
        offset: 0,
        limit: crate::limits::LIST_LIMIT_MAX,
        records: true,
    };
    let rows = env.calls.list(tenant_id, &filter).await?;
    Ok(rows
        .into_iter()
        .filter_map(|row| serde_json::from_value(row).ok())
        .collect())
}

pub(crate) fn call_not_found(cid: &str) -> ApiError {
    ApiError::new(ErrorCode::CallNotFound, format!("no call '{cid}'"))
}

/// The call, exactly as its store has it (another tenant's id: not found).
pub(crate) async fn load_call<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    tid: &str,
    cid: &str,
) -> Result<CallRecord> {
    if !ids::is_id(cid, "call") {
        return Err(call_not_found(cid));
    }
    env.calls
        .get(tid, cid)
        .await?
        .ok_or_else(|| call_not_found(cid))
}

pub(crate) async fn get_call<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    tenant: &Tenant,
    cid: &str,
) -> Result<ApiResponse> {
    let record = load_call(env, &tenant.id, cid).await?;
    Ok(ApiResponse::json_text(200, record.to_public_json()))
}

/// The call's transcript so far: JSON (turns + text), or plain text lines with
/// `?format=txt` or `Accept: text/plain`.
pub(crate) async fn get_transcript<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
    tenant: &Tenant,
    cid: &str,
) -> Result<ApiResponse> {
    let mut format = None;
    for (k, v) in form_urlencoded::parse(req.query.as_bytes()) {
        match (k.as_ref(), v.as_ref()) {
            ("format", "txt" | "json") if format.is_none() => format = Some(v.into_owned()),
            ("format", _) => {
                return Err(ApiError::field(
                    ErrorCode::InvalidParameter,
                    "format",
                    "format must be txt or json, given once",
                ))
            }
            (other, _) => {
                return Err(ApiError::field(
                    ErrorCode::InvalidParameter,
                    other,
                    format!(
                        "unknown query parameter '{}'; allowed: format",
                        other.chars().take(64).collect::<String>()
                    ),
                ))
            }
        }
    }
    if !ids::is_id(cid, "call") {
        return Err(call_not_found(cid));
    }
    let (record, transcript) = env
        .calls
        .transcript(&tenant.id, cid)
        .await?
        .ok_or_else(|| call_not_found(cid))?;
    // An extension on the path wins over `format`, which wins over Accept.
    let by_extension = match req.path.rsplit_once("/transcript.") {
        Some((_, ext @ ("txt" | "json"))) => Some(ext),
        Some((_, other)) => {
            let shown: String = other.chars().take(16).collect();
            return Err(ApiError::field(
                ErrorCode::InvalidParameter,
                "format",
                format!("'.{shown}': the transcript is served as .txt or .json"),
            ));
        }
        None => None,
    };
    let wants_text = match by_extension.or(format.as_deref()) {
        Some(f) => f == "txt",
        None => req
            .header("accept")
            .is_some_and(|a| a.contains("text/plain") && !a.contains("application/json")),
    };
    if wants_text {
        let mut resp = ApiResponse::json(200, &Value::Null);
        resp.body = crate::transcript::render_text(&transcript.turns);
        return Ok(resp.with_header("Content-Type", "text/plain; charset=utf-8"));
    }
    Ok(ApiResponse::json(
        200,
        &crate::transcript::to_json(&record.id, &transcript),
    ))
}

/// Idempotent. A call not yet handed to a sidecar is cancelled at once (200);
/// an ended call is returned unchanged (200); a live call is marked for hangup
/// and the holding sidecar is told (202).
pub(crate) async fn hangup_call<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
    tenant: &Tenant,
    cid: &str,
) -> Result<ApiResponse> {
    if !req.body.iter().all(u8::is_ascii_whitespace) {
        parse_request(req, &[])?;
    }
    if !ids::is_id(cid, "call") {
        return Err(call_not_found(cid));
    }
    let (status, record) = env
        .calls
        .hangup(&tenant.id, cid)
        .await?
        .ok_or_else(|| call_not_found(cid))?;
    Ok(ApiResponse::json_text(status, record.to_public_json()))
}

/// The people `agent`'s `transfer` tool may reach (its
/// `transfer_extensions` that name a person of the tenant's directory),
/// for the offer; the directory is read only for an agent that lists some.
pub(crate) async fn transfer_people<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    tenant_id: &str,
    agent: &Agent,
) -> Result<Vec<voxline_shared::sidecar_link::TransferPerson>> {
    if agent.transfer_extensions.is_empty() {
        return Ok(Vec::new());
    }
    let users = crate::directory::ops::users(env.directory, tenant_id).await?;
    Ok(agent
        .transfer_extensions
        .iter()
        .filter_map(|ext| {
            users.iter().find(|u| {
                u.fields.extension == *ext
                    && u.fields.kind == crate::directory::records::UserKind::Person
            })
        })
        .take(voxline_shared::sidecar_link::MAX_TRANSFER_PEOPLE)
        .map(|u| voxline_shared::sidecar_link::TransferPerson {
            user_pk: u.pk,
            extension: u.fields.extension.clone(),
            display_name: Some(u.fields.caller_id.clone()).filter(|n| !n.is_empty()),
        })
        .collect())
}

pub(crate) struct ListQuery {
    statuses: Vec<CallStatus>,
    filter_text: String,
    limit: u32,
    kv_cursor: Option<String>,
}

pub(crate) fn parse_list_query(query: &str) -> Result<ListQuery> {
    let [status, limit, cursor] = parse_query_params(query, ["status", "limit", "cursor"])?;
    let names: Vec<&str> = CallStatus::ALL.iter().map(|s| s.as_str()).collect();
    let statuses = parse_list_filter("status", status.as_deref(), &names)?
        .iter()
        .filter_map(|s| CallStatus::parse(s))
        .collect();
    let filter_text = status.unwrap_or_default();
    let limit = parse_list_limit(limit)?;
    let kv_cursor = decode_list_cursor(cursor, &filter_text)?;
    Ok(ListQuery {
        statuses,
        filter_text,
        limit,
        kv_cursor,
    })
}

/// Lists from the tenant's call store, newest first, a page at a time.
pub(crate) async fn list_calls<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
    tenant: &Tenant,
) -> Result<ApiResponse> {
    let q = parse_list_query(&req.query)?;
    // One row more than asked tells whether another page follows.
    let filter = ListFilter {
        statuses: q.statuses,
        after_id: q.kv_cursor,
        offset: 0,
        limit: q.limit + 1,
        records: false,
    };
    let mut data = env.calls.list(&tenant.id, &filter).await?;
    let has_more = data.len() > q.limit as usize;
    data.truncate(q.limit as usize);
    let next_cursor = if has_more {
        data.last()
            .and_then(|r| r["id"].as_str())
            .map(|id| encode_list_cursor(id.to_string(), &q.filter_text))
    } else {
        None
    };
    Ok(ApiResponse::json(
        200,
        &json!({"object": "list", "data": data, "has_more": has_more, "next_cursor": next_cursor}),
    ))
}

// ---- sidecar link ----

/// `GET /v1/calls/{id}/recording`: the newest attempt's WAV. The answer names
/// the R2 object; the glue streams it as the body.
pub async fn get_recording<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    tenant_id: &str,
    cid: &str,
) -> Result<ApiResponse> {
    if !ids::is_id(cid, "call") {
        return Err(call_not_found(cid));
    }
    let (record, info) = env
        .calls
        .recording(tenant_id, cid)
        .await?
        .ok_or_else(|| call_not_found(cid))?;
    let Some(info) = info else {
        let why = if !record.record {
            "this call was placed without record: true".to_string()
        } else if record.status.is_terminal() {
            "not uploaded yet: the sidecar uploads it once the call has ended (recording.saved tells when), or the call was never answered".to_string()
        } else {
            "the call has not ended; its recording is uploaded after it ends (recording.saved tells when)".to_string()
        };
        return Err(ApiError::new(
            ErrorCode::RecordingNotFound,
            format!("no recording for call '{}': {why}", record.id),
        ));
    };
    let mut resp = ApiResponse::json(200, &Value::Null)
        .with_header("Content-Type", info.content_type.clone())
        .with_header("Content-Length", info.bytes.to_string())
        .with_header(
            "Content-Disposition",
            format!("attachment; filename=\"{}.wav\"", record.id),
        )
        .with_header("X-Recording-Attempt", info.attempt.to_string())
        .with_header("X-Recording-Duration-Ms", info.duration_ms.to_string())
        .with_header("X-Recording-Sha256", info.sha256.clone());
    resp.body = String::new();
    resp.stored_object = Some(info.object_key);
    Ok(resp)
}

/// `GET /v1/recordings/{tenant_id}/{call_id}?expires=..&signature=..`: the
/// recording through a signed link (`recording_links`), without an
/// API key. The signature is checked before anything is read, so a refused
/// link (403 `invalid_recording_link`, counted against the client address
/// like a wrong API key) never tells whether the call exists; a good one
/// answers exactly as `GET /v1/calls/{call_id}/recording`, except that a
/// call gone from its store reads as a recording not there.
pub async fn get_recording_by_link<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
    tid: &str,
    cid: &str,
) -> Result<ApiResponse> {
    let refused = |why: String| ApiError::new(ErrorCode::InvalidRecordingLink, why);
    let checked = match env.sealing_key {
        // Without the sealing key no link was ever made here.
        None => Err(refused(
            "this deployment makes no recording links (no VOXLINE_SEALING_KEY secret)".into(),
        )),
        Some(_) if !ids::is_id(tid, "ten") || !ids::is_id(cid, "call") => Err(refused(
            crate::recording_links::LinkRefusal::WrongSignature.message(),
        )),
        Some(key) => crate::recording_links::verify(
            key.recording_link_key(),
            tid,
            cid,
            &req.query,
            env.now_ms / 1000,
        )
        .map_err(|r| refused(r.message())),
    };
    if let Err(e) = checked {
        return crate::api::auth::failed_api_key(env, req, e).await;
    }
    // A link outlives nothing its tenant could not do: disabled, nothing is served.
    let tenant: Option<Tenant> = get_json(env.kv, &keys::tenant(tid)).await?;
    if tenant.is_none_or(|t| t.disabled) {
        return Err(ApiError::new(
            ErrorCode::TenantDisabled,
            "the tenant of this recording is disabled",
        ));
    }
    get_recording(env, tid, cid).await.map_err(|e| {
        if e.code == ErrorCode::CallNotFound {
            ApiError::new(
                ErrorCode::RecordingNotFound,
                format!("no recording for call '{cid}'"),
            )
        } else {
            e
        }
    })
}

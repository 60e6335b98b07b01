//! Serves the Voice360 v3 API (`/v3/voice/{account_id}/...`; docs/dialects.md)
//! over the pure `dialects::voice360`: the account is a tenant (its
//! `voice360_account`), keys and users live in the tenant's directory
//! (`crate::directory`), numbers in KV (`crate::numbers`), live channels in
//! the tenant's call store; a call from an AI agent's extension is placed by
//! the same code as `POST /v1/calls`.
//!
//! Order: the route, the key (a wrong one counts against the address like a
//! native one), the account, the key's kind for the endpoint, the rate limit
//! (per key, or per address without one), then the operation. Every answer
//! is in Voice360's envelope.

use crate::api::auth::client_ip;
use crate::api::calls::{
    new_call_checks, person_call_checks, place_call, place_person_call, CallOrigin,
};
use crate::api::validate;
use crate::dialects::voice360::{
    self as v360, Caller, Channel, Direction, KeyKind, Member, NumberView, Operation, QueueLoad,
    QueueView, RateLimitHeaders, Routed, UserPresence, V360Error,
};
use crate::dialects::Refusal;
use crate::directory::{ops, DirectoryQueue, DirectoryUser, UserKind, V360Key, V360KeyKind};
use crate::dispatch::port::DispatchQueues;
use crate::http::{ApiRequest, ApiResponse};
use crate::ids;
use crate::model::{keys, Agent, CallRecord, Tenant};
use crate::numbers::{NumberRoute, PhoneNumber};
use crate::store::{get_json, Kv, StoreError};
use crate::traffic::{Admission, Check, RateLimit};

use crate::api::env::Env;

/// The whole answer to a request under `/v3/voice/`.
pub(crate) async fn serve<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
    routed: Routed<'_>,
) -> ApiResponse {
    let mut headers = Vec::new();
    let result = match routed {
        Routed::NotFound => Err(V360Error::NotFound { what: "endpoint" }),
        Routed::MethodNotAllowed { allow } => Err(V360Error::MethodNotAllowed { allow }),
        Routed::Operation { account_id, op } => run(env, req, account_id, op, &mut headers).await,
    };
    let mut resp = match result {
        Ok(body) => ApiResponse::json_text(200, body),
        Err(e) => {
            let mut r = ApiResponse::json_text(e.status(), e.body(env.now_ms));
            r.headers
                .extend(e.headers().into_iter().map(|(k, v)| (k.to_string(), v)));
            r
        }
    };
    // Not a native error: keep the access log's code column empty.
    resp.error_code = None;
    resp.headers.extend(headers);
    resp
}

fn storage(e: StoreError) -> V360Error {
    match e {
        StoreError::Unavailable(_) => V360Error::ServiceUnavailable {
            retry_after_seconds: Some(1),
        },
        StoreError::Corrupt(_) => V360Error::Internal,
    }
}

/// Who the key says the caller is: the tenant and, for a key, its record.
struct Authenticated {
    tenant: Tenant,
    key: Option<V360Key>,
}

async fn run<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
    account_id: &str,
    op: Operation,
    headers: &mut Vec<(String, String)>,
) -> Result<String, V360Error> {
    let key_text = req
        .header(v360::HEADER_KEY)
        .map(str::trim)
        .filter(|k| !k.is_empty());
    let who = authenticate(env, req, account_id, key_text).await?;
    let caller = match &who.key {
        None => Caller::Anonymous,
        Some(k) => match k.kind {
            V360KeyKind::User => Caller::User,
            V360KeyKind::Developer => Caller::Developer,
        },
    };
    let view = op.access().admit(caller)?;
    admit(env, req, &who, caller, headers).await?;
    let tenant = &who.tenant;
    let body = match op {
        Operation::UserAvailability => {
            let users = ops::users(env.directory, &tenant.id)
                .await
                .map_err(storage)?;
            let live = live_calls(env, tenant).await?;
            let online = online_users(env, tenant, &users).await?;
            let presences: Vec<UserPresence> = users
                .iter()
                .map(|u| presence(u, &online, &live, env.now_ms))
                .collect();
            v360::ok_body(
                &v360::availability_result(&presences, view),
                op.message(),
                env.now_ms,
            )
        }
        Operation::ListQueues | Operation::GetQueue { .. } => {
            let users = ops::users(env.directory, &tenant.id)
                .await
                .map_err(storage)?;
            let queues = ops::queues(env.directory, &tenant.id)
                .await
                .map_err(storage)?;
            let views: Vec<QueueView> = queues.iter().map(|q| queue_view(q, &users)).collect();
            match op {
                Operation::GetQueue { queue_id } => {
                    let q = views
                        .iter()
                        .find(|q| q.pk == queue_id)
                        .ok_or(V360Error::NotFound { what: "queue" })?;
                    v360::ok_body(&v360::queue_value(q, view, true), op.message(), env.now_ms)
                }
                _ => v360::ok_body(&v360::queues_result(&views, view), op.message(), env.now_ms),
            }
        }
        Operation::QueuesAvailability | Operation::QueueAvailability { .. } => {
            let users = ops::users(env.directory, &tenant.id)
                .await
                .map_err(storage)?;
            let queues = ops::queues(env.directory, &tenant.id)
                .await
                .map_err(storage)?;
            let live = live_calls(env, tenant).await?;
            let online = online_users(env, tenant, &users).await?;
            let value = |q: &DirectoryQueue| {
                let load = queue_load(q, &users, &online, &live);
                v360::queue_availability_value(&queue_view(q, &users), load)
            };
            match op {
                Operation::QueueAvailability { queue_id } => {
                    let q = queues
                        .iter()
                        .find(|q| q.pk == queue_id)
                        .ok_or(V360Error::NotFound { what: "queue" })?;
                    v360::ok_body(&value(q), op.message(), env.now_ms)
                }
                _ => {
                    let all = v360::Json::Array(queues.iter().map(value).collect());
                    v360::ok_body(&all, op.message(), env.now_ms)
                }
            }
        }
        Operation::ListNumbers => {
            let filter = v360::read_numbers_query(&req.query)?;
            let numbers = tenant_numbers(env, tenant).await?;
            let views: Vec<NumberView> = numbers
                .iter()
                .map(number_view)
                .filter(|n| filter.matches(n))
                .collect();
            v360::ok_body(&v360::numbers_result(&views), op.message(), env.now_ms)
        }
        Operation::UserNumbers => {
            let pk = who.key.as_ref().and_then(|k| k.user_pk);
            let numbers = tenant_numbers(env, tenant).await?;
            let views: Vec<NumberView> = numbers
                .iter()
                .filter(|n| pk.is_some() && (number_user(n) == pk || n.sms_user_id == pk))
                .map(number_view)
                .collect();
            v360::ok_body(&v360::numbers_result(&views), op.message(), env.now_ms)
        }
        Operation::UserProfile => {
            let user = key_user(env, tenant, who.key.as_ref()).await?;
            let f = &user.fields;
            let profile = v360::ProfileView {
                pk: user.pk,
                sip_endpoint_id: user.sip_endpoint_id,
                presence_id: &f.extension,
                caller_id: &f.caller_id,
                first_name: &f.first_name,
                last_name: &f.last_name,
                email: f.email.as_deref().unwrap_or(""),
                voicemail_enabled: f.voicemail_enabled,
                forward_enabled: f.forward_enabled,
                forward_number: f.forward_number.as_deref(),
                time_zone: &f.time_zone,
            };
            v360::ok_body(&v360::profile_result(&profile), op.message(), env.now_ms)
        }
        Operation::OutboundCall => {
            let call = v360::read_outbound_call(&req.body)?;
            let call_id = outbound_call(env, req, tenant, &call).await?;
            v360::ok_body(
                &v360::outbound_result(&call_id, &call, env.now_ms),
                op.message(),
                env.now_ms,
            )
        }
        Operation::SendSms => {
            let sms = v360::read_sms_send(&req.body)?;
            let result = send_sms(env, tenant, who.key.as_ref(), &sms).await?;
            v360::ok_body(&result, op.message(), env.now_ms)
        }
    };
    Ok(body)
}

/// The tenant `account_id` names and, with a key, the key. A key that is
/// unknown, revoked, of another account, or of a kind its text does not
/// claim is 403 `AUTH_INVALID_KEY` (and counts against the address); an
/// unknown account without a key is 404.
async fn authenticate<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
    account_id: &str,
    key_text: Option<&str>,
) -> Result<Authenticated, V360Error> {
    let tenant_id: Option<String> = get_json(env.kv, &keys::voice360_account(account_id))
        .await
        .map_err(storage)?;
    let tenant: Option<Tenant> = match &tenant_id {
        Some(tid) => get_json(env.kv, &keys::tenant(tid))
            .await
            .map_err(storage)?
            // The index may be a minute stale: the tenant must still say so.
            .filter(|t: &Tenant| t.voice360_account.as_deref() == Some(account_id)),
        None => None,
    };
    let Some(text) = key_text else {
        let tenant = tenant.ok_or(V360Error::NotFound { what: "account" })?;
        if tenant.disabled {
            return Err(V360Error::NotFound { what: "account" });
        }
        return Ok(Authenticated { tenant, key: None });
    };
    let invalid = || async {
        match crate::api::dialects::failed_credential(env, req).await {
            Refusal::RateLimited {
                retry_after_seconds,
            } => V360Error::RateLimited {
                limit: env.auth_failures.limit,
                retry_after_seconds,
            },
            _ => V360Error::AuthInvalidKey {
                provided_key: v360::key_hint(text),
            },
        }
    };
    let Some(tenant) = tenant.filter(|_| v360::plausible_key(text)) else {
        return Err(invalid().await);
    };
    let found = ops::find_key(env.directory, &tenant.id, &ids::hash_api_key(text))
        .await
        .map_err(storage)?;
    let key = match found {
        Some(k)
            if matches!(
                (KeyKind::of(text), k.kind),
                (KeyKind::User, V360KeyKind::User) | (KeyKind::Developer, V360KeyKind::Developer)
            ) =>
        {
            k
        }
        _ => return Err(invalid().await),
    };
    if tenant.disabled || !tenant.api_access {
        return Err(V360Error::from(&Refusal::AccessDisabled));
    }
    Ok(Authenticated {
        tenant,
        key: Some(key),
    })
}

/// 1,000 requests a minute per key; 100 per client address without one.
async fn admit<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
    who: &Authenticated,
    caller: Caller,
    headers: &mut Vec<(String, String)>,
) -> Result<(), V360Error> {
    let scope = match &who.key {
        Some(k) => format!("v360key:{}", k.id),
        None => format!("v360ip:{}", client_ip(req)),
    };
    let limit = caller.rate_limit_per_minute();
    let admission = Admission {
        checks: vec![Check {
            scope,
            limit: RateLimit {
                limit,
                window_seconds: v360::RATE_WINDOW_SECONDS as u32,
            },
            new_work_only: false,
        }],
        idempotency: None,
        signature: None,
    };
    let admitted = env
        .traffic
        .admit(&who.tenant.id, &admission)
        .await
        .map_err(storage)?;
    let rate = RateLimitHeaders {
        limit,
        remaining: admitted.rate.remaining,
    };
    headers.extend(rate.headers().into_iter().map(|(k, v)| (k.to_string(), v)));
    if !admitted.rate.allowed {
        return Err(V360Error::RateLimited {
            limit,
            retry_after_seconds: admitted.rate.reset_seconds,
        });
    }
    Ok(())
}

/// The tenant's calls on the line now (dialing, ringing, talking).
async fn live_calls<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    tenant: &Tenant,
) -> Result<Vec<CallRecord>, V360Error> {
    crate::api::calls::live_calls(env, &tenant.id)
        .await
        .map_err(api_storage)
}

/// The `pk`s of the users online now: AI-agent users whose agent can take
/// calls (exists and is enabled), and people with a phone registered now
/// (a live binding in the directory, issue 16). Online and not on a call
/// (no `channels`) is available.
async fn online_users<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    tenant: &Tenant,
    users: &[DirectoryUser],
) -> Result<Vec<u64>, V360Error> {
    let registered: std::collections::BTreeSet<u64> = ops::bindings(env.directory, &tenant.id)
        .await
        .map_err(storage)?
        .into_iter()
        .filter(|b| b.expires_ms > env.now_ms)
        .map(|b| b.user_pk)
        .collect();
    let mut online = Vec::new();
    for u in users {
        if u.fields.kind == UserKind::Person && registered.contains(&u.pk) {
            online.push(u.pk);
        }
        if let (UserKind::AiAgent, Some(aid)) = (u.fields.kind, u.fields.agent_id.as_deref()) {
            let agent: Option<Agent> = if ids::is_id(aid, "agt") {
                get_json(env.kv, &keys::agent(&tenant.id, aid))
                    .await
                    .map_err(storage)?
            } else {
                None
            };
            if agent.is_some_and(|a| a.enabled) {
                online.push(u.pk);
            }
        }
    }
    Ok(online)
}

/// The user's live calls: those they placed (outbound: to the callee), and
/// the inbound ones their phones ring or took (from the caller, to them).
fn channels<'a>(user: &'a DirectoryUser, live: &'a [CallRecord], now_ms: u64) -> Vec<Channel<'a>> {
    live.iter()
        .filter(|c| c.has_user(user.pk))
        .map(|c| {
            let inbound = c.direction == crate::model::CallDirection::Inbound;
            Channel {
                to: if inbound {
                    &user.fields.extension
                } else {
                    &c.phone
                },
                from: if inbound {
                    &c.phone
                } else {
                    &user.fields.extension
                },
                call_seconds: c
                    .answered_at
                    .as_deref()
                    .and_then(ids::parse_rfc3339_utc_ms)
                    .map_or(0, |t| now_ms.saturating_sub(t) / 1000),
                direction: if inbound {
                    Direction::Inbound
                } else {
                    Direction::Outbound
                },
            }
        })
        .collect()
}

fn presence<'a>(
    u: &'a DirectoryUser,
    online: &[u64],
    live: &'a [CallRecord],
    now_ms: u64,
) -> UserPresence<'a> {
    UserPresence {
        pk: u.pk,
        presence_id: &u.fields.extension,
        caller_id: &u.fields.caller_id,
        first_name: &u.fields.first_name,
        last_name: &u.fields.last_name,
        devices_registered: online.contains(&u.pk),
        channels: channels(u, live, now_ms),
    }
}

fn queue_view<'a>(q: &'a DirectoryQueue, users: &'a [DirectoryUser]) -> QueueView<'a> {
    let f = &q.fields;
    QueueView {
        pk: q.pk,
        queue_name: &f.name,
        extension: &f.extension,
        strategy: v360::Strategy::parse(&f.strategy).unwrap_or(v360::Strategy::RingAll),
        musiconhold: &f.musiconhold,
        timeout: f.timeout,
        retry: f.retry,
        wrapuptime: f.wrapuptime,
        maxlen: f.maxlen,
        joinempty: f.joinempty,
        leavewhenempty: f.leavewhenempty,
        ringinuse: f.ringinuse,
        members: f
            .members
            .iter()
            .filter_map(|pk| users.iter().find(|u| u.pk == *pk))
            .map(|u| match (u.fields.kind, u.fields.agent_id.as_deref()) {
                (UserKind::AiAgent, Some(agent_id)) => Member::AiAgent {
                    agent_id,
                    presence_id: &u.fields.extension,
                    name: &u.fields.caller_id,
                },
                _ => Member::User {
                    pk: u.pk,
                    presence_id: &u.fields.extension,
                    caller_id: &u.fields.caller_id,
                },
            })
            .collect(),
    }
}

fn queue_load(
    q: &DirectoryQueue,
    users: &[DirectoryUser],
    online: &[u64],
    live: &[CallRecord],
) -> QueueLoad {
    // Each member once (a queue may list one twice).
    let mut members: Vec<&u64> = q
        .fields
        .members
        .iter()
        .filter(|pk| users.iter().any(|u| u.pk == **pk))
        .collect();
    members.sort_unstable();
    members.dedup();
    let (mut agents_online, mut agents_on_call) = (0u32, 0u32);
    for pk in members {
        if online.contains(pk) {
            agents_online += 1;
            if live.iter().any(|c| c.has_user(*pk)) {
                agents_on_call += 1;
            }
        }
    }
    QueueLoad {
        agents_online,
        agents_on_call,
        // The queue's callers on the line: waiting, or connected to a member.
        active_calls: live
            .iter()
            .filter(|c| c.queue.as_ref().is_some_and(|cq| cq.pk == q.pk))
            .count() as u32,
    }
}

async fn tenant_numbers<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    tenant: &Tenant,
) -> Result<Vec<PhoneNumber>, V360Error> {
    crate::api::numbers::tenant_numbers(env, &tenant.id)
        .await
        .map_err(api_storage)
}

/// A native read's failure, as Voice360 says it.
fn api_storage(e: crate::error::ApiError) -> V360Error {
    match e.code {
        crate::error::ErrorCode::StorageUnavailable => V360Error::ServiceUnavailable {
            retry_after_seconds: Some(1),
        },
        _ => V360Error::Internal,
    }
}

/// The user a number belongs to (its inbound route's user).
fn number_user(n: &PhoneNumber) -> Option<u64> {
    match &n.route {
        Some(NumberRoute::User { user_id }) => Some(*user_id),
        _ => None,
    }
}

fn number_view(n: &PhoneNumber) -> NumberView<'_> {
    NumberView {
        pk: n.pk,
        number: &n.number,
        friendly_name: n.name.as_deref().unwrap_or(&n.number),
        sms_enabled: n.sms_enabled,
        mms_enabled: n.mms_enabled,
        status: v360::NumberStatus::parse(n.status.as_str()).unwrap_or(v360::NumberStatus::Active),
        owner_id: number_user(n),
        sms_assigned_user_id: n.sms_user_id,
        ai_agent_id: match &n.route {
            Some(NumberRoute::Agent { agent_id }) => Some(agent_id),
            _ => None,
        },
    }
}

/// The directory user a user key belongs to.
async fn key_user<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    tenant: &Tenant,
    key: Option<&V360Key>,
) -> Result<DirectoryUser, V360Error> {
    let pk = key
        .and_then(|k| k.user_pk)
        .ok_or(V360Error::NotFound { what: "user" })?;
    ops::users(env.directory, &tenant.id)
        .await
        .map_err(storage)?
        .into_iter()
        .find(|u| u.pk == pk)
        .ok_or(V360Error::NotFound { what: "user" })
}

/// A call from an extension: an AI agent's is the native create-call with
/// that agent; a person's is click-to-call (issue 16: their phones ring,
/// then `to` is dialled and bridged). Admitted per number like every call,
/// placed on the native path.
async fn outbound_call<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
    tenant: &Tenant,
    call: &v360::OutboundCall,
) -> Result<String, V360Error> {
    let users = ops::users(env.directory, &tenant.id)
        .await
        .map_err(storage)?;
    let user = users
        .iter()
        .find(|u| u.fields.extension == call.from)
        .ok_or(V360Error::NotFound { what: "extension" })?;
    let agent_id = match (user.fields.kind, user.fields.agent_id.as_deref()) {
        (UserKind::AiAgent, Some(aid)) => Some(aid),
        (UserKind::Person, _) => None,
        (UserKind::AiAgent, None) => {
            return Err(V360Error::from(&Refusal::AgentNotConfigured));
        }
    };
    if let Some(cid) = &call.caller_id {
        let numbers = tenant_numbers(env, tenant).await?;
        let ours = numbers
            .iter()
            .any(|n| &n.number == cid && n.status == crate::numbers::NumberStatus::Active);
        if !ours {
            return Err(V360Error::bad(
                "caller_id",
                "caller_id must be one of the account's active numbers",
            ));
        }
    }
    let native = match agent_id {
        Some(agent_id) => serde_json::json!({
            "phone": call.to,
            "agent_id": agent_id,
            "record": call.recording,
        }),
        None => serde_json::json!({
            "phone": call.to,
            "from_extension": call.from,
            "record": call.recording,
        }),
    };
    let input = validate::create_call(
        Some("application/json"),
        native.to_string().as_bytes(),
        env.now_ms,
    )
    .map_err(|e| V360Error::from(&Refusal::from_native(&e)))?;
    let origin = CallOrigin {
        placed_with: None,
        caller_number: call.caller_id.clone(),
        from_user: Some(user.pk),
        campaign: None,
    };
    let Some(agent_id) = agent_id else {
        admit_call(
            env,
            tenant,
            person_call_checks(&tenant.rate_limits, &input.phone),
        )
        .await?;
        let record = place_person_call(env, tenant, input, user, None, origin)
            .await
            .map_err(|e| V360Error::from(&Refusal::from_native(&e)))?;
        return Ok(record.id);
    };
    let agent: Agent = get_json(env.kv, &keys::agent(&tenant.id, agent_id))
        .await
        .map_err(storage)?
        .ok_or_else(|| V360Error::from(&Refusal::AgentNotConfigured))?;
    if !agent.enabled {
        return Err(V360Error::from(&Refusal::AgentDisabled));
    }
    admit_call(
        env,
        tenant,
        new_call_checks(&agent, &tenant.rate_limits, &input.phone, client_ip(req)),
    )
    .await?;
    let record = place_call(env, tenant, input, agent, None, origin)
        .await
        .map_err(|e| V360Error::from(&Refusal::from_native(&e)))?;
    Ok(record.id)
}

/// A new call's own limits (its number's, its agent's per address).
async fn admit_call<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    tenant: &Tenant,
    checks: Vec<Check>,
) -> Result<(), V360Error> {
    let admission = Admission {
        checks,
        idempotency: None,
        signature: None,
    };
    let admitted = env
        .traffic
        .admit(&tenant.id, &admission)
        .await
        .map_err(storage)?;
    if !admitted.rate.allowed {
        return Err(V360Error::RateLimited {
            limit: admitted.rate.limit,
            retry_after_seconds: admitted.rate.reset_seconds,
        });
    }
    Ok(())
}

/// `POST /sms/send`: a native text message (`api::messages::send_message`),
/// sent through a sidecar's trunk; the answer says `queued` (the trunk's
/// answer comes later, as `SMS_SENT` or a failure). A user key sends only
/// from its user's numbers (those routed to them or whose texts they get).
async fn send_sms<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    tenant: &Tenant,
    key: Option<&V360Key>,
    sms: &v360::SmsSend,
) -> Result<v360::Json, V360Error> {
    if let Some(pk) = key.and_then(|k| k.user_pk) {
        let numbers = tenant_numbers(env, tenant).await?;
        let theirs = numbers.iter().any(|n| {
            n.number == sms.from && (number_user(n) == Some(pk) || n.sms_user_id == Some(pk))
        });
        if !theirs {
            return Err(V360Error::bad("from", "from must be one of your numbers"));
        }
    }
    let message = crate::api::messages::SendMessage {
        from: sms.from.clone(),
        to: sms.to.clone(),
        body: sms.message.clone(),
        metadata: None,
        idempotency: None,
    };
    let record = crate::api::messages::send_message(env, tenant, message)
        .await
        .map_err(|e| match e.code {
            crate::error::ErrorCode::UnknownNumber
            | crate::error::ErrorCode::NumberNotSmsCapable => V360Error::bad(
                "from",
                "from must be one of the account's numbers with SMS enabled",
            ),
            _ => V360Error::from(&Refusal::from_native(&e)),
        })?;
    Ok(v360::sms_result(
        &record.id,
        record.status.as_str(),
        sms,
        env.now_ms,
    ))
}

//! Request handling as pure async Rust over the [`Kv`] port: routing, auth,
//! validation, records. The Worker glue only converts HTTP values and supplies
//! KV, the clock and secrets, so everything here is unit-tested natively.

pub mod fields;
pub mod openapi;
pub mod request_signing;
pub mod router;
pub mod validate;
pub mod webhooks;

use crate::api::fields::parse_object;
use crate::api::router::{route, Match, RouteId};
use crate::api::validate::MAX_BODY_BYTES;
use crate::calls::store::{Calls, Created, ListFilter, NewCall};
use crate::dispatch::port::{self, Dispatcher};
use crate::dispatch::sidecar_link::{self, SidecarEnvelope, SidecarOp};
use crate::engine_keys::{SecretOwner, StoredSecret};
use crate::error::{ApiError, ErrorCode};
use crate::http::{ApiRequest, ApiResponse};
use crate::ids::{self, rfc3339_ms};
use crate::model::{
    self, keys, Agent, ApiKeyAuth, ApiKeyInfo, CallRecord, Engine, ScheduledReason, SidecarRecord,
    Tenant,
};
use crate::store::{get_json, put_json, Kv};
use crate::traffic::{
    self, Admission, Check, IdemOutcome, IdemRequest, SignatureUse, StoredResponse, Traffic,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};
use voxline_shared::signing::{self, SignedHeaders};
use voxline_shared::CallStatus;

/// What a request runs against.
pub struct Env<'a, K: Kv, D: Dispatcher> {
    pub kv: &'a K,
    /// The region dispatch queues (Durable Objects in the Worker).
    pub dispatch: &'a D,
    pub now_ms: u64,
    /// `ADMIN_TOKEN` secret; the admin API is closed without it.
    pub admin_token: Option<&'a str>,
    /// Local development (`VOXLINE_ENV=development`): allows plain-http loopback webhooks.
    pub dev_mode: bool,
    /// Region whose sidecars dial new calls (`DEFAULT_REGION`, "local" when unset).
    pub default_region: &'a str,
    /// Per-tenant rate limits and idempotency keys (a Durable Object per tenant in the Worker).
    pub traffic: &'a dyn Traffic,
    /// Each tenant's calls: the `CallStore` Durable Objects in the Worker.
    pub calls: &'a dyn Calls,
    /// Webhook deliveries this request produced; the glue queues them.
    pub outbox: &'a crate::webhooks::Outbox,
    /// `VOXLINE_SEALING_KEY`: seals engine API keys (none: they are refused).
    pub sealing_key: Option<&'a crate::engine_keys::SealingKey>,
    /// Wrong credentials allowed per client address and window
    /// (`traffic::AUTH_FAILURES` unless the Worker's vars say otherwise).
    pub auth_failures: traffic::RateLimit,
}

type Result<T> = std::result::Result<T, ApiError>;

pub const WEBHOOK_EVENTS: &[&str] = &[
    "call.queued",
    "call.ringing",
    "call.answered",
    "call.completed",
    "call.failed",
    "transcript.saved",
    "recording.saved",
];

pub(crate) const LIST_LIMIT_DEFAULT: u32 = 20;
pub(crate) const LIST_LIMIT_MAX: u32 = 100;

pub async fn handle<K: Kv, D: Dispatcher>(env: &Env<'_, K, D>, req: &ApiRequest) -> ApiResponse {
    match dispatch(env, req).await {
        Ok(resp) => resp,
        Err(e) => {
            let resp = ApiResponse::error(&e);
            if e.code == ErrorCode::MethodNotAllowed {
                let allowed = match route(&req.method, &req.path) {
                    Match::WrongMethod(m) => m.join(", "),
                    // The sidecar link is routed outside the table: POST only.
                    _ if SidecarOp::from_path(&req.path).is_some() => "POST".to_string(),
                    _ => String::new(),
                };
                return resp.with_header("Allow", allowed);
            }
            resp
        }
    }
}

async fn dispatch<K: Kv, D: Dispatcher>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
) -> Result<ApiResponse> {
    if let Some(op) = SidecarOp::from_path(&req.path) {
        if !req.method.eq_ignore_ascii_case("POST") {
            return Err(ApiError::new(
                ErrorCode::MethodNotAllowed,
                format!("{} takes POST only", req.path),
            ));
        }
        return sidecar_request(env, req, op).await;
    }
    let (id, params) = match route(&req.method, &req.path) {
        Match::Found(id, params) => (id, params),
        Match::WrongMethod(allowed) => {
            return Err(ApiError::new(
                ErrorCode::MethodNotAllowed,
                format!(
                    "{} is not allowed on {}; allowed: {}",
                    req.method,
                    req.path,
                    allowed.join(", ")
                ),
            ))
        }
        Match::NotFound => {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                format!("no route {} {}", req.method, req.path),
            ))
        }
    };
    let p = |i: usize| params.get(i).copied().unwrap_or("");
    match id {
        RouteId::Health => Ok(ApiResponse::json(200, &json!({"ok": true}))),
        RouteId::OpenApi => Ok(ApiResponse::json(200, &crate::api::openapi::spec())),
        RouteId::CreateCall
        | RouteId::ListCalls
        | RouteId::GetCall
        | RouteId::GetTranscript
        | RouteId::GetTranscriptAs
        | RouteId::GetRecording
        | RouteId::HangupCall => v1_route(env, req, id, p(0)).await,
        RouteId::ListDeliveries | RouteId::GetDelivery | RouteId::RedeliverDelivery => {
            v1_route(env, req, id, p(0)).await
        }
        admin => {
            // Admin tokens are chosen by people and may be guessable, so
            // every admin request asks the address's object (admin requests
            // are few: one round trip), which in one step refuses an address
            // over its failures or counts this failure: exact under parallel
            // guesses. The token is compared here first, but a refused
            // address's answer never depends on it: a guess over the limit
            // teaches nothing, even a right one.
            let scope = traffic::auth_failure_scope(client_ip(req));
            let checked = authenticate_admin(env, req);
            let failed = matches!(&checked, Err(e) if e.code == ErrorCode::InvalidCredentials);
            let standing = env
                .traffic
                .auth_attempt(&scope, env.auth_failures, failed)
                .await?;
            if !standing.allowed {
                return Ok(too_many_failed_attempts(&standing));
            }
            checked?;
            admin_route(env, req, admin, p(0), p(1)).await
        }
    }
}

// ---- authentication ----

fn bearer(req: &ApiRequest) -> Result<&str> {
    let header = req
        .authorization
        .as_deref()
        .map(str::trim)
        .filter(|h| !h.is_empty());
    let Some(header) = header else {
        return Err(ApiError::new(
            ErrorCode::MissingCredentials,
            "send Authorization: Bearer <key>",
        ));
    };
    match header.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(token.trim())
        }
        _ => Err(ApiError::new(
            ErrorCode::MissingCredentials,
            "the Authorization header must be 'Bearer <key>'",
        )),
    }
}

fn invalid_key() -> ApiError {
    ApiError::new(
        ErrorCode::InvalidCredentials,
        "the API key is unknown or revoked",
    )
}

/// Resolves the API key to its tenant. Only the key's SHA-256 touches storage.
async fn authenticate_tenant<K: Kv, D: Dispatcher>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
) -> Result<(Tenant, ApiKeyAuth)> {
    let token = bearer(req)?;
    if !token.starts_with("ak_") || token.len() > 128 {
        return Err(invalid_key());
    }
    let auth: ApiKeyAuth = get_json(env.kv, &keys::api_key_by_hash(&ids::hash_api_key(token)))
        .await?
        .ok_or_else(invalid_key)?;
    let tenant: Tenant = get_json(env.kv, &keys::tenant(&auth.tenant_id))
        .await?
        .ok_or_else(invalid_key)?;
    if tenant.disabled {
        return Err(ApiError::new(
            ErrorCode::TenantDisabled,
            "this tenant is disabled",
        ));
    }
    Ok((tenant, auth))
}

/// 429 for an address whose credential failures are spent, with `Retry-After`
/// (and the `X-RateLimit-*` of that limit, like any 429 of a limit).
fn too_many_failed_attempts(v: &traffic::RateVerdict) -> ApiResponse {
    let e = ApiError::new(
        ErrorCode::TooManyFailedAttempts,
        format!(
            "more than {} requests with wrong credentials from this address; retry after {} s",
            v.limit, v.reset_secs
        ),
    );
    let mut resp = ApiResponse::error(&e);
    // X-RateLimit-* of the failure limit, and Retry-After: its window's end.
    resp.headers.extend(v.headers());
    resp
}

/// An API key that failed: counted against the client address, and once the
/// address has spent its failures, answered 429 instead of 401. Only failures
/// pay this round trip: a valid key's request is never held up by it (and an
/// API key, 192 random bits, cannot be guessed, so a blocked address with a
/// valid key may go on).
async fn failed_api_key<K: Kv, D: Dispatcher>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
    e: ApiError,
) -> Result<ApiResponse> {
    let scope = traffic::auth_failure_scope(client_ip(req));
    match env
        .traffic
        .auth_attempt(&scope, env.auth_failures, true)
        .await
    {
        Ok(v) if !v.allowed => Ok(too_many_failed_attempts(&v)),
        // Counted, or the count failed: the answer is the 401 either way.
        _ => Err(e),
    }
}

fn authenticate_admin<K: Kv, D: Dispatcher>(env: &Env<'_, K, D>, req: &ApiRequest) -> Result<()> {
    let token = bearer(req)?;
    match env.admin_token {
        Some(expected) if !expected.is_empty() && ids::constant_time_eq(token, expected) => Ok(()),
        Some(expected) if !expected.is_empty() => Err(ApiError::new(
            ErrorCode::InvalidCredentials,
            "the admin token is wrong",
        )),
        _ => Err(ApiError::new(
            ErrorCode::InvalidCredentials,
            "the admin API is closed: no ADMIN_TOKEN secret is set",
        )),
    }
}

// ---- calls ----

// ---- traffic control: rate limits and idempotency around every /v1 call route ----

/// Client IP for the per-IP limit: Cloudflare's `CF-Connecting-IP`; a fixed
/// loopback address when absent (local `wrangler dev`).
fn client_ip(req: &ApiRequest) -> &str {
    req.header("cf-connecting-ip")
        .map(str::trim)
        .filter(|ip| !ip.is_empty() && ip.len() <= 64)
        .unwrap_or("127.0.0.1")
}

/// Authenticates once, then admits the request in the tenant's `RateLimiter`
/// object in one round trip (API key, client IP and, for a new call, the
/// destination number, plus the `Idempotency-Key`), runs the route, and
/// stamps the `X-RateLimit-*` headers of the tightest limit on the answer.
async fn v1_route<K: Kv, D: Dispatcher>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
    id: RouteId,
    cid: &str,
) -> Result<ApiResponse> {
    let (tenant, auth) = match authenticate_tenant(env, req).await {
        Ok(found) => found,
        Err(e) if e.code == ErrorCode::InvalidCredentials => {
            return failed_api_key(env, req, e).await
        }
        Err(e) => return Err(e),
    };
    // A key minted with require_signature: checked here (pure), spent once in
    // the tenant's object below (same round trip as the rate limits).
    let signature = match &auth.signing_secret {
        None => None,
        Some(sealed) => {
            let owner = SecretOwner::ApiKeySigning {
                tenant: &auth.tenant_id,
                key_id: &auth.key_id,
            };
            let secret = sealed
                .open(env.sealing_key, owner)
                .map_err(secret_unavailable)?;
            let path_and_query = signing::path_and_query(&req.path, &req.query);
            let target = request_signing::Target {
                method: &req.method,
                path_and_query: &path_and_query,
            };
            let ok = request_signing::verify(
                req.header(request_signing::HEADER),
                secret.as_bytes(),
                target,
                &req.body,
                env.now_ms / 1000,
            )
            .map_err(|e| {
                let code = match e {
                    request_signing::SignatureError::VersionUnsupported => {
                        ErrorCode::SignatureVersionUnsupported
                    }
                    _ => ErrorCode::InvalidRequestSignature,
                };
                ApiError::new(code, e.message())
            })?;
            let until_ms = ok.replayable_until_ms();
            Some(SignatureUse {
                key: traffic::signature_storage_key(until_ms, &ok.signature),
                until_ms,
            })
        }
    };
    let limits = tenant.rate_limits;
    let mut checks = vec![
        Check {
            scope: format!("key:{}", auth.key_id),
            limit: limits.per_key,
            new_work_only: false,
        },
        Check {
            scope: format!("ip:{}", client_ip(req)),
            limit: limits.per_ip,
            new_work_only: false,
        },
    ];
    let mut idempotency = None;
    // A new call is validated (pure) and its agent resolved before admission,
    // so its number joins the same round trip; an invalid one still counts.
    let prepared = if id == RouteId::CreateCall {
        let prepared = prepare_call(env, req, &tenant).await;
        if let Ok((input, agent)) = &prepared {
            let limit = agent.per_number_limit.unwrap_or(limits.per_number);
            checks.push(Check {
                scope: format!("number:{}", input.phone),
                limit,
                new_work_only: true,
            });
        }
        if let Some(key) = req.header("idempotency-key") {
            if !traffic::valid_idempotency_key(key) {
                return Err(ApiError::field(
                    ErrorCode::InvalidParameter,
                    "Idempotency-Key",
                    "Idempotency-Key must be 1-255 visible ASCII characters",
                ));
            }
            idempotency = Some(IdemRequest {
                key: key.to_string(),
                fingerprint: ids::fingerprint(&req.method, &req.path, &req.body),
            });
        }
        Some(prepared)
    } else {
        None
    };
    let admission = Admission {
        checks,
        idempotency,
        signature,
    };
    let admitted = env.traffic.admit(&tenant.id, &admission).await?;
    if admitted.replayed {
        return Err(ApiError::new(
            ErrorCode::ReplayedRequest,
            "this X-Signature was already used; sign each request anew",
        ));
    }
    let rate_headers = admitted.rate.headers();
    let stamp = |mut resp: ApiResponse| {
        resp.headers.extend(rate_headers.iter().cloned());
        resp
    };
    if !admitted.rate.allowed {
        let e = ApiError::new(
            ErrorCode::RateLimited,
            format!(
                "rate limit of {} requests exceeded ({}); retry after {} s",
                admitted.rate.limit,
                admitted.rate.scope.split(':').next().unwrap_or(""),
                admitted.rate.reset_secs
            ),
        );
        return Ok(stamp(ApiResponse::error(&e)));
    }
    let idem_key = admission.idempotency.as_ref().map(|r| r.key.as_str());
    match admitted.idempotency {
        IdemOutcome::Replay { response } => {
            let mut resp = ApiResponse {
                status: response.status,
                headers: response.headers,
                body: response.body,
                error_code: None,
                stored_object: None,
            };
            resp.headers
                .push(("Idempotent-Replayed".into(), "true".into()));
            return Ok(stamp(resp));
        }
        IdemOutcome::Mismatch => {
            let e = ApiError::field(
                ErrorCode::IdempotencyKeyReused,
                "Idempotency-Key",
                "this Idempotency-Key was used with a different request",
            );
            return Ok(stamp(ApiResponse::error(&e)));
        }
        IdemOutcome::InFlight => {
            let e = ApiError::field(
                ErrorCode::IdempotencyKeyInFlight,
                "Idempotency-Key",
                "a request with this Idempotency-Key is still in progress; retry shortly",
            );
            return Ok(stamp(ApiResponse::error(&e)));
        }
        IdemOutcome::None | IdemOutcome::Proceed => {}
    }
    let result = match (id, prepared) {
        (RouteId::CreateCall, Some(prepared)) => match prepared {
            Ok((input, agent)) => {
                create_call(env, &tenant, input, agent, admission.idempotency.clone()).await
            }
            Err(e) => Err(e),
        },
        (RouteId::ListCalls, _) => list_calls(env, req, &tenant).await,
        (RouteId::GetCall, _) => get_call(env, &tenant, cid).await,
        (RouteId::GetTranscript | RouteId::GetTranscriptAs, _) => {
            get_transcript(env, req, &tenant, cid).await
        }
        (RouteId::GetRecording, _) => {
            crate::calls::recordings::get_recording(env, &tenant, cid).await
        }
        (RouteId::HangupCall, _) => hangup_call(env, req, &tenant, cid).await,
        (RouteId::ListDeliveries | RouteId::GetDelivery | RouteId::RedeliverDelivery, _) => {
            crate::api::webhooks::tenant_route(env, req, id, &tenant, cid).await
        }
        _ => Err(ApiError::new(
            ErrorCode::InternalError,
            "route without handler",
        )),
    };
    let resp = result.unwrap_or_else(|e| ApiResponse::error(&e));
    if let Some(key) = idem_key {
        // 5xx is our failure, and 429 (a full concurrency cap) a "not now",
        // not an answer: let a retry run again.
        let done = if resp.status >= 500 || resp.status == 429 {
            env.traffic.release(&tenant.id, key).await
        } else {
            let headers = resp
                .headers
                .iter()
                .filter(|(h, _)| h == "Location")
                .cloned()
                .collect();
            env.traffic
                .complete(
                    &tenant.id,
                    key,
                    &StoredResponse {
                        status: resp.status,
                        body: resp.body.clone(),
                        headers,
                    },
                )
                .await
        };
        // The call exists either way; a lost record only costs a replay (it expires as abandoned).
        if let Err(e) = done {
            let _ = e;
        }
    }
    Ok(stamp(resp))
}

/// Validates a new call and resolves its agent (no writes).
async fn prepare_call<K: Kv, D: Dispatcher>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
    tenant: &Tenant,
) -> Result<(validate::CreateCallInput, Agent)> {
    let input = validate::create_call(req.content_type.as_deref(), &req.body, env.now_ms)?;
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

/// A key needs the sealing secret; a base URL must pass the SSRF rules.
fn check_engine_credentials<K: Kv, D: Dispatcher>(
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

/// The sealing key for sidecar, webhook and request-signing secrets: without
/// one they are not minted (never stored in clear), like engine keys.
pub(crate) fn secrets_sealing_key(
    key: Option<&crate::engine_keys::SealingKey>,
) -> Result<&crate::engine_keys::SealingKey> {
    key.ok_or_else(|| {
        ApiError::new(
            ErrorCode::SecretsUnavailable,
            "this deployment cannot keep secrets (no VOXLINE_SEALING_KEY secret)",
        )
    })
}

/// A stored secret that does not open: the operator's problem, not the caller's.
pub(crate) fn secret_unavailable(e: crate::engine_keys::SecretUnavailable) -> ApiError {
    ApiError::new(
        ErrorCode::SecretsUnavailable,
        format!("a stored secret cannot be used: {e}"),
    )
}

/// Seals a clear engine key for the tenant (checked available beforehand).
fn seal_engine_key<K: Kv, D: Dispatcher>(
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

/// `Retry-After` on `concurrency_limit_reached`.
pub const CONCURRENCY_RETRY_AFTER_SECS: u64 = 15;

/// Applies the agent's calling window to when the call would start (now, or
/// `schedule_at`): inside, unchanged; outside, moved to the next window start
/// or, with `outside_window: reject`, refused.
fn apply_calling_window(
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

async fn create_call<K: Kv, D: Dispatcher>(
    env: &Env<'_, K, D>,
    tenant: &Tenant,
    mut input: validate::CreateCallInput,
    agent: Agent,
    idempotency: Option<IdemRequest>,
) -> Result<ApiResponse> {
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
    let record = CallRecord {
        id: ids::call_id(env.now_ms),
        status: if input.schedule_at.is_some() {
            CallStatus::Scheduled
        } else {
            CallStatus::Queued
        },
        phone: input.phone,
        name: input.name,
        email: input.email,
        metadata: input.metadata,
        agent_id: agent.id.clone(),
        system_prompt: input.system_prompt.or(agent.system_prompt),
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
    };
    let mut queued = port::queued_call(&tenant.id, &record, env.now_ms);
    queued.max_concurrent = tenant.max_concurrent_calls;
    // Retries that would land outside the window wait for its next start.
    queued.calling_window = calling_window;
    queued.reject_over_cap = reject_over_cap;
    if let (Some(sealed), Value::Object(offer)) = (sealed_key, &mut queued.offer) {
        offer.insert(
            crate::engine_keys::SEALED_FIELD.into(),
            Value::String(sealed),
        );
    }
    // The tenant's call store writes the record, then queues it in its
    // region; a call the queue refuses is deleted again (it never existed).
    let (phone, agent_id) = (record.phone.clone(), record.agent_id.clone());
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
        Created::Created { record } | Created::Existing { record } => {
            Ok(ApiResponse::json_text(201, record.to_public_json())
                .with_header("Location", format!("/v1/calls/{}", record.id)))
        }
        Created::KeyReused => Err(ApiError::field(
            ErrorCode::IdempotencyKeyReused,
            "Idempotency-Key",
            "this Idempotency-Key was used with a different request",
        )),
        Created::Duplicate { call_id } => Err(ApiError::field(
            ErrorCode::CallInProgress,
            "phone",
            format!("call {call_id} from agent {agent_id} to {phone} is already in progress"),
        )),
        Created::ConcurrencyLimit { limit, active } => {
            let e = ApiError::field(
                ErrorCode::ConcurrencyLimitReached,
                "on_concurrency_limit",
                format!("{active} calls are in flight or due against this tenant's max_concurrent_calls of {limit}; retry later or omit on_concurrency_limit to queue"),
            );
            // A slot frees when a call ends, which no clock can tell: a polling hint.
            Ok(ApiResponse::error(&e)
                .with_header("Retry-After", CONCURRENCY_RETRY_AFTER_SECS.to_string()))
        }
        Created::DispatchUnavailable { .. } => Err(ApiError::new(
            ErrorCode::StorageUnavailable,
            "the dispatch queue did not answer; the call was not placed",
        )),
    }
}

fn call_not_found(cid: &str) -> ApiError {
    ApiError::new(ErrorCode::CallNotFound, format!("no call '{cid}'"))
}

/// The call, exactly as its store has it (another tenant's id: not found).
pub(crate) async fn load_call<K: Kv, D: Dispatcher>(
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

async fn get_call<K: Kv, D: Dispatcher>(
    env: &Env<'_, K, D>,
    tenant: &Tenant,
    cid: &str,
) -> Result<ApiResponse> {
    let record = load_call(env, &tenant.id, cid).await?;
    Ok(ApiResponse::json_text(200, record.to_public_json()))
}

/// The call's transcript so far: JSON (turns + text), or plain text lines with
/// `?format=txt` or `Accept: text/plain`.
async fn get_transcript<K: Kv, D: Dispatcher>(
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
async fn hangup_call<K: Kv, D: Dispatcher>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
    tenant: &Tenant,
    cid: &str,
) -> Result<ApiResponse> {
    if !req.body.iter().all(u8::is_ascii_whitespace) {
        parse_object(req.content_type.as_deref(), &req.body, MAX_BODY_BYTES, &[])?;
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

#[derive(serde::Serialize, serde::Deserialize)]
struct ListCursor {
    /// The last id of the page before.
    k: String,
    /// The status filter it was issued for.
    f: String,
}

/// A listing's query string: each of `names` at most once, nothing else
/// (`invalid_parameter` naming the parameter).
pub(crate) fn parse_query_params<const N: usize>(
    query: &str,
    names: [&str; N],
) -> Result<[Option<String>; N]> {
    let mut values: [Option<String>; N] = std::array::from_fn(|_| None);
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        let Some(slot) = names.iter().position(|n| *n == k).map(|i| &mut values[i]) else {
            return Err(ApiError::field(
                ErrorCode::InvalidParameter,
                &k,
                format!(
                    "unknown query parameter '{}'; allowed: {}",
                    k.chars().take(64).collect::<String>(),
                    names.join(", ")
                ),
            ));
        };
        if slot.replace(v.into_owned()).is_some() {
            return Err(ApiError::field(
                ErrorCode::InvalidParameter,
                &k,
                format!("'{k}' is given twice"),
            ));
        }
    }
    Ok(values)
}

/// A comma-separated list filter (`status=a,b`): absent, no filter; given, one
/// or more of `allowed`, exactly (`status=` or `status=a,,b` is a mistake, not
/// "everything").
pub(crate) fn parse_list_filter(
    name: &str,
    text: Option<&str>,
    allowed: &[&str],
) -> Result<Vec<String>> {
    let Some(text) = text else {
        return Ok(Vec::new());
    };
    text.split(',')
        .map(|s| {
            if allowed.contains(&s) {
                Ok(s.to_string())
            } else {
                Err(ApiError::field(
                    ErrorCode::InvalidParameter,
                    name,
                    format!(
                        "{name} must be one or more of {} (comma-separated)",
                        allowed.join(", ")
                    ),
                ))
            }
        })
        .collect()
}

/// `limit` of a listing: 1..=LIST_LIMIT_MAX, LIST_LIMIT_DEFAULT when absent.
pub(crate) fn parse_list_limit(limit: Option<String>) -> Result<u32> {
    match limit {
        None => Ok(LIST_LIMIT_DEFAULT),
        Some(l) => l
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=LIST_LIMIT_MAX).contains(n))
            .ok_or_else(|| {
                ApiError::field(
                    ErrorCode::InvalidParameter,
                    "limit",
                    format!("limit must be an integer from 1 to {LIST_LIMIT_MAX}"),
                )
            }),
    }
}

/// A listing cursor: where the page before ended, with the filters it was issued for.
pub(crate) fn encode_list_cursor(kv_cursor: String, filter_text: &str) -> String {
    URL_SAFE_NO_PAD.encode(
        serde_json::to_vec(&ListCursor {
            k: kv_cursor,
            f: filter_text.to_string(),
        })
        .unwrap_or_default(),
    )
}

/// Where the page before ended, if `cursor` was issued by us for these same filters.
pub(crate) fn decode_list_cursor(
    cursor: Option<String>,
    filter_text: &str,
) -> Result<Option<String>> {
    let Some(c) = cursor else { return Ok(None) };
    let bad = || {
        ApiError::field(
            ErrorCode::InvalidCursor,
            "cursor",
            "cursor was not issued by this API for this query",
        )
    };
    let raw = URL_SAFE_NO_PAD.decode(c.as_bytes()).map_err(|_| bad())?;
    let cur: ListCursor = serde_json::from_slice(&raw).map_err(|_| bad())?;
    if cur.f != filter_text || cur.k.is_empty() {
        return Err(bad());
    }
    Ok(Some(cur.k))
}

struct ListQuery {
    statuses: Vec<CallStatus>,
    filter_text: String,
    limit: u32,
    kv_cursor: Option<String>,
}

fn parse_list_query(query: &str) -> Result<ListQuery> {
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
async fn list_calls<K: Kv, D: Dispatcher>(
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

/// The signing sidecar, if it exists, is not revoked, and signed `signed`
/// (the body, or a recording upload's manifest) within the window.
pub(crate) async fn authenticate_sidecar(
    kv: &impl Kv,
    sealing_key: Option<&crate::engine_keys::SealingKey>,
    headers: &SignedHeaders<'_>,
    target: signing::Target<'_>,
    signed: &[u8],
    now_ms: u64,
) -> Result<SidecarRecord> {
    let unknown = || ApiError::new(ErrorCode::InvalidCredentials, "unknown or revoked sidecar");
    let sid = headers
        .sidecar
        .filter(|s| voxline_shared::protocol::is_valid_id(s))
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidSignature,
                format!("missing or malformed {}", signing::HEADER_SIDECAR),
            )
        })?;
    let sidecar: SidecarRecord = get_json(kv, &keys::sidecar(sid))
        .await?
        .filter(|s: &SidecarRecord| s.revoked_at.is_none())
        .ok_or_else(unknown)?;
    let secret = sidecar
        .secret
        .open(sealing_key, SecretOwner::Sidecar(&sidecar.id))
        .map_err(secret_unavailable)?;
    signing::verify(
        secret.as_bytes(),
        headers,
        target,
        signed,
        now_ms / 1000,
        signing::DEFAULT_WINDOW_SECS,
    )
    .map_err(|e| match e {
        // Not a wrong secret: an old (or newer) signer; its own code, so
        // the sidecar can stop and say so rather than retry forever.
        signing::SignatureError::UnsupportedVersion => {
            ApiError::new(ErrorCode::SignatureVersionUnsupported, e.to_string())
        }
        _ => ApiError::new(
            ErrorCode::InvalidSignature,
            format!("signature refused: {e}"),
        ),
    })?;
    Ok(sidecar)
}

/// A media sidecar's request: authenticated by its HMAC signature (no bearer
/// token), checked, and forwarded to its region's dispatch queue, which also
/// refuses replayed nonces.
async fn sidecar_request<K: Kv, D: Dispatcher>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
    op: SidecarOp,
) -> Result<ApiResponse> {
    sidecar_link::check_transport(&req.scheme, env.dev_mode)?;
    // Before the signature: the glue never buffers an oversized body, so its
    // signature cannot match, and a 401 would make the sidecar re-register
    // and resend the same batch forever. 413 says what is wrong.
    let declared: Option<usize> = req
        .header("content-length")
        .and_then(|v| v.trim().parse().ok());
    let size = declared.unwrap_or(0).max(req.body.len());
    if size > MAX_BODY_BYTES {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("request body is {size} bytes; the limit is {MAX_BODY_BYTES}"),
        ));
    }
    let headers = SignedHeaders::from_lookup(|name| req.header(name));
    let path_and_query = signing::path_and_query(&req.path, &req.query);
    let target = signing::Target {
        method: &req.method,
        path: &path_and_query,
    };
    let sidecar = authenticate_sidecar(
        env.kv,
        env.sealing_key,
        &headers,
        target,
        &req.body,
        env.now_ms,
    )
    .await?;
    let sid = sidecar.id.as_str();
    let body = sidecar_link::parse_message(op, &req.body, sid)?;
    if let Some(region) = body.get("region").and_then(Value::as_str) {
        if region != sidecar.region {
            return Err(ApiError::new(
                ErrorCode::RegionMismatch,
                format!(
                    "sidecar {sid} belongs to region '{}', not '{region}'",
                    sidecar.region
                ),
            ));
        }
    }
    let envelope = SidecarEnvelope {
        op,
        sidecar_id: sid.to_string(),
        nonce: headers.nonce.unwrap_or_default().to_string(),
        body,
    };
    let (status, reply) = env.dispatch.sidecar(&sidecar.region, &envelope).await?;
    let mut resp = ApiResponse::json(status, &reply);
    resp.error_code = reply["error"]["code"]
        .as_str()
        .and_then(|c| ErrorCode::ALL.iter().find(|k| k.as_str() == c))
        .map(|k| k.as_str());
    Ok(resp)
}

async fn create_sidecar<K: Kv, D: Dispatcher>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
) -> Result<ApiResponse> {
    let f = parse_object(
        req.content_type.as_deref(),
        &req.body,
        MAX_BODY_BYTES,
        &["sidecar_id", "region"],
    )?;
    let id = f.str_req("sidecar_id", voxline_shared::protocol::MAX_ID_LEN)?;
    let region = f.str_req("region", voxline_shared::protocol::MAX_ID_LEN)?;
    for (name, v) in [("sidecar_id", &id), ("region", &region)] {
        if !voxline_shared::protocol::is_valid_id(v) {
            return Err(ApiError::field(
                ErrorCode::InvalidValue,
                name,
                format!(
                    "'{name}' must be 1-64 of A-Z a-z 0-9 . _ - starting with a letter or digit"
                ),
            ));
        }
    }
    let sealing = secrets_sealing_key(env.sealing_key)?;
    let secret = format!("scs_{}", URL_SAFE_NO_PAD.encode(ids::random_bytes::<32>()));
    let sidecar = SidecarRecord {
        secret: StoredSecret::seal(sealing, SecretOwner::Sidecar(&id), &secret),
        id,
        region,
        created_at: rfc3339_ms(env.now_ms),
        revoked_at: None,
    };
    // Creating again rotates the secret (the old one stops working).
    put_json(env.kv, &keys::sidecar(&sidecar.id), &sidecar, None).await?;
    let mut body = sidecar.to_public();
    body["secret"] = json!(secret);
    Ok(ApiResponse::json(201, &body))
}

async fn revoke_sidecar<K: Kv, D: Dispatcher>(
    env: &Env<'_, K, D>,
    sid: &str,
) -> Result<ApiResponse> {
    let not_found = || ApiError::new(ErrorCode::SidecarNotFound, format!("no sidecar '{sid}'"));
    if !voxline_shared::protocol::is_valid_id(sid) {
        return Err(not_found());
    }
    let mut sidecar: SidecarRecord = get_json(env.kv, &keys::sidecar(sid))
        .await?
        .ok_or_else(not_found)?;
    if sidecar.revoked_at.is_none() {
        sidecar.revoked_at = Some(rfc3339_ms(env.now_ms));
        // A legacy clear secret does not stay in clear in a rewritten record.
        sidecar.secret = sidecar
            .secret
            .sealed_if_clear(env.sealing_key, SecretOwner::Sidecar(sid));
        put_json(env.kv, &keys::sidecar(sid), &sidecar, None).await?;
    }
    Ok(ApiResponse::json(200, &sidecar.to_public()))
}

// ---- admin ----

async fn admin_route<K: Kv, D: Dispatcher>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
    id: RouteId,
    tid: &str,
    sub: &str,
) -> Result<ApiResponse> {
    match id {
        RouteId::CreateTenant => return create_tenant(env, req).await,
        RouteId::CreateSidecar => return create_sidecar(env, req).await,
        RouteId::ListSidecars => {
            let list: Vec<SidecarRecord> = list_values(env, keys::SIDECARS_PREFIX).await?;
            return Ok(list_response(
                list.iter().map(SidecarRecord::to_public).collect(),
            ));
        }
        RouteId::RevokeSidecar => return revoke_sidecar(env, tid).await,
        _ => {}
    }
    let mut tenant = load_tenant(env, tid).await?;
    match id {
        RouteId::GetTenant => Ok(ApiResponse::json(200, &tenant_public(&tenant))),
        RouteId::UpdateTenant => update_tenant(env, req, tenant).await,
        RouteId::CreateAgent => create_agent(env, req, &mut tenant).await,
        RouteId::ListAgents => {
            let agents = list_values(env, &keys::agents_prefix(&tenant.id)).await?;
            Ok(list_response(
                agents
                    .into_iter()
                    .map(|a: Agent| agent_public(&a, &tenant))
                    .collect(),
            ))
        }
        RouteId::GetAgent => {
            let agent = load_agent(env, &tenant.id, sub).await?;
            Ok(ApiResponse::json(200, &agent_public(&agent, &tenant)))
        }
        RouteId::UpdateAgent => update_agent(env, req, &mut tenant, sub).await,
        RouteId::CreateApiKey => create_api_key(env, req, &tenant).await,
        RouteId::ListApiKeys => {
            let list = list_values(env, &keys::api_keys_prefix(&tenant.id)).await?;
            Ok(list_response(
                list.iter().map(ApiKeyInfo::to_public).collect(),
            ))
        }
        RouteId::RevokeApiKey => revoke_api_key(env, &tenant, sub).await,
        RouteId::CreateWebhook
        | RouteId::ListWebhooks
        | RouteId::GetWebhook
        | RouteId::UpdateWebhook
        | RouteId::DeleteWebhook
        | RouteId::RotateWebhookSecret => {
            crate::api::webhooks::admin_route(env, req, id, &tenant, sub).await
        }
        _ => Err(ApiError::new(
            ErrorCode::InternalError,
            "route without handler",
        )),
    }
}

pub(crate) fn list_response(data: Vec<Value>) -> ApiResponse {
    ApiResponse::json(
        200,
        &json!({"object": "list", "data": data, "has_more": false, "next_cursor": null}),
    )
}

/// Reads every record under a small admin prefix (agents, keys, webhooks: a
/// handful per tenant). Call records never go through here.
pub(crate) async fn list_values<K: Kv, D: Dispatcher, T: serde::de::DeserializeOwned>(
    env: &Env<'_, K, D>,
    prefix: &str,
) -> Result<Vec<T>> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = env.kv.list(prefix, 1000, cursor.as_deref()).await?;
        for entry in page.keys {
            if let Some(v) = get_json(env.kv, &entry.name).await? {
                out.push(v);
            }
        }
        match page.cursor {
            Some(c) => cursor = Some(c),
            None => return Ok(out),
        }
    }
}

/// Largest `max_concurrent_calls` a tenant may set.
pub const MAX_CONCURRENT_CALLS_MAX: i64 = 10_000;

fn max_concurrent_calls(f: &crate::api::fields::Fields) -> Result<Option<u32>> {
    Ok(
        f.int_opt("max_concurrent_calls", 1, MAX_CONCURRENT_CALLS_MAX)?
            .map(|n| n as u32),
    )
}

fn tenant_public(t: &Tenant) -> Value {
    let mut v = serde_json::to_value(t).unwrap_or(Value::Null);
    v["object"] = json!("tenant");
    v
}

fn agent_public(a: &Agent, tenant: &Tenant) -> Value {
    let mut v = serde_json::to_value(a).unwrap_or(Value::Null);
    v["object"] = json!("agent");
    // The key never leaves, sealed or not: only whether there is one.
    if let Value::Object(m) = &mut v {
        m.remove("engine_api_key_sealed");
    }
    v["engine_api_key_set"] = json!(a.engine_api_key_sealed.is_some());
    v["engine_base_url"] = json!(a.engine_base_url);
    v["default"] = json!(tenant.default_agent_id.as_deref() == Some(a.id.as_str()));
    v
}

async fn load_tenant<K: Kv, D: Dispatcher>(env: &Env<'_, K, D>, tid: &str) -> Result<Tenant> {
    let not_found = || ApiError::new(ErrorCode::TenantNotFound, format!("no tenant '{tid}'"));
    if !ids::is_id(tid, "ten") {
        return Err(not_found());
    }
    get_json(env.kv, &keys::tenant(tid))
        .await?
        .ok_or_else(not_found)
}

async fn load_agent<K: Kv, D: Dispatcher>(
    env: &Env<'_, K, D>,
    tid: &str,
    aid: &str,
) -> Result<Agent> {
    let not_found = || ApiError::new(ErrorCode::AgentNotFound, format!("no agent '{aid}'"));
    if !ids::is_id(aid, "agt") {
        return Err(not_found());
    }
    get_json(env.kv, &keys::agent(tid, aid))
        .await?
        .ok_or_else(not_found)
}

async fn create_tenant<K: Kv, D: Dispatcher>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
) -> Result<ApiResponse> {
    let f = parse_object(
        req.content_type.as_deref(),
        &req.body,
        MAX_BODY_BYTES,
        &["name", "disabled", "max_concurrent_calls"],
    )?;
    let tenant = Tenant {
        id: ids::random_id("ten"),
        name: f.str_req("name", 200)?,
        default_agent_id: None,
        disabled: f.bool_opt("disabled")?.unwrap_or(false),
        created_at: rfc3339_ms(env.now_ms),
        rate_limits: traffic::RateLimits::default(),
        max_concurrent_calls: max_concurrent_calls(&f)?,
    };
    put_json(env.kv, &keys::tenant(&tenant.id), &tenant, None).await?;
    Ok(ApiResponse::json(201, &tenant_public(&tenant)))
}

async fn update_tenant<K: Kv, D: Dispatcher>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
    mut tenant: Tenant,
) -> Result<ApiResponse> {
    let f = parse_object(
        req.content_type.as_deref(),
        &req.body,
        MAX_BODY_BYTES,
        &[
            "name",
            "disabled",
            "default_agent_id",
            "rate_limits",
            "max_concurrent_calls",
        ],
    )?;
    // Unlike the other fields, an explicit null removes the cap.
    if f.is_null("max_concurrent_calls") {
        tenant.max_concurrent_calls = None;
    } else if let Some(n) = max_concurrent_calls(&f)? {
        tenant.max_concurrent_calls = Some(n);
    }
    if let Some(v) = f.object_opt("rate_limits")? {
        tenant.rate_limits = traffic::parse_rate_limits(&Value::Object(v), tenant.rate_limits)
            .map_err(|(field, why)| ApiError::field(ErrorCode::InvalidValue, &field, why))?;
    }
    if f.has("name") {
        tenant.name = f.str_req("name", 200)?;
    }
    if let Some(d) = f.bool_opt("disabled")? {
        tenant.disabled = d;
    }
    if let Some(aid) = f.str_opt("default_agent_id", 64)? {
        let exists =
            ids::is_id(&aid, "agt") && env.kv.get(&keys::agent(&tenant.id, &aid)).await?.is_some();
        if !exists {
            return Err(ApiError::field(
                ErrorCode::UnknownAgent,
                "default_agent_id",
                format!("no agent '{aid}'"),
            ));
        }
        tenant.default_agent_id = Some(aid);
    }
    put_json(env.kv, &keys::tenant(&tenant.id), &tenant, None).await?;
    Ok(ApiResponse::json(200, &tenant_public(&tenant)))
}

async fn create_agent<K: Kv, D: Dispatcher>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
    tenant: &mut Tenant,
) -> Result<ApiResponse> {
    let input = validate::agent(req.content_type.as_deref(), &req.body, true)?;
    check_engine_credentials(
        env,
        matches!(input.engine_api_key, Some(Some(_))),
        input.engine_base_url.clone().flatten().as_deref(),
    )?;
    let engine_api_key_sealed = match input.engine_api_key.clone().flatten() {
        Some(k) => Some(seal_engine_key(env, &tenant.id, &k)?),
        None => None,
    };
    let now = rfc3339_ms(env.now_ms);
    let agent = Agent {
        id: ids::random_id("agt"),
        name: input.name.unwrap_or_default(),
        system_prompt: input.system_prompt,
        voice: input.voice,
        language: input.language.unwrap_or_else(|| "en-US".to_string()),
        default_engine: input.default_engine.unwrap_or(Engine::Local),
        model: input.model,
        enabled: input.enabled.unwrap_or(true),
        created_at: now.clone(),
        updated_at: now,
        per_number_limit: input.per_number_limit,
        calling_window: input.calling_window.flatten(),
        engine_api_key_sealed,
        engine_base_url: input.engine_base_url.flatten(),
        silence_timeout_seconds: input.silence_timeout_seconds,
    };
    put_json(env.kv, &keys::agent(&tenant.id, &agent.id), &agent, None).await?;
    // The first agent becomes the default unless the caller says otherwise.
    let make_default = input
        .make_default
        .unwrap_or(tenant.default_agent_id.is_none());
    if make_default {
        tenant.default_agent_id = Some(agent.id.clone());
        put_json(env.kv, &keys::tenant(&tenant.id), tenant, None).await?;
    }
    Ok(ApiResponse::json(201, &agent_public(&agent, tenant)))
}

async fn update_agent<K: Kv, D: Dispatcher>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
    tenant: &mut Tenant,
    aid: &str,
) -> Result<ApiResponse> {
    let mut agent = load_agent(env, &tenant.id, aid).await?;
    let input = validate::agent(req.content_type.as_deref(), &req.body, false)?;
    check_engine_credentials(
        env,
        matches!(input.engine_api_key, Some(Some(_))),
        input.engine_base_url.clone().flatten().as_deref(),
    )?;
    // Like the calling window: an explicit null removes them.
    match &input.engine_api_key {
        Some(Some(k)) => agent.engine_api_key_sealed = Some(seal_engine_key(env, &tenant.id, k)?),
        Some(None) => agent.engine_api_key_sealed = None,
        None => {}
    }
    if let Some(url) = input.engine_base_url.clone() {
        agent.engine_base_url = url;
    }
    agent.name = input.name.unwrap_or(agent.name);
    agent.system_prompt = input.system_prompt.or(agent.system_prompt);
    agent.voice = input.voice.or(agent.voice);
    agent.language = input.language.unwrap_or(agent.language);
    agent.default_engine = input.default_engine.unwrap_or(agent.default_engine);
    agent.model = input.model.or(agent.model);
    agent.enabled = input.enabled.unwrap_or(agent.enabled);
    agent.per_number_limit = input.per_number_limit.or(agent.per_number_limit);
    agent.silence_timeout_seconds = input
        .silence_timeout_seconds
        .or(agent.silence_timeout_seconds);
    // Unlike the other fields, an explicit null removes the window.
    if let Some(window) = input.calling_window {
        agent.calling_window = window;
    }
    agent.updated_at = rfc3339_ms(env.now_ms);
    put_json(env.kv, &keys::agent(&tenant.id, &agent.id), &agent, None).await?;
    let is_default = tenant.default_agent_id.as_deref() == Some(agent.id.as_str());
    match input.make_default {
        Some(true) if !is_default => {
            tenant.default_agent_id = Some(agent.id.clone());
            put_json(env.kv, &keys::tenant(&tenant.id), tenant, None).await?;
        }
        Some(false) if is_default => {
            tenant.default_agent_id = None;
            put_json(env.kv, &keys::tenant(&tenant.id), tenant, None).await?;
        }
        _ => {}
    }
    Ok(ApiResponse::json(200, &agent_public(&agent, tenant)))
}

async fn create_api_key<K: Kv, D: Dispatcher>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
    tenant: &Tenant,
) -> Result<ApiResponse> {
    let (name, require_signature) = if req.body.iter().all(u8::is_ascii_whitespace) {
        (None, false)
    } else {
        let f = parse_object(
            req.content_type.as_deref(),
            &req.body,
            MAX_BODY_BYTES,
            &["name", "require_signature"],
        )?;
        (
            f.str_opt("name", 100)?,
            f.bool_opt("require_signature")?.unwrap_or(false),
        )
    };
    let sealing = if require_signature {
        Some(secrets_sealing_key(env.sealing_key)?)
    } else {
        None
    };
    let signing_secret = require_signature
        .then(|| format!("sks_{}", URL_SAFE_NO_PAD.encode(ids::random_bytes::<32>())));
    let minted = ids::mint_api_key();
    let key_id = ids::random_id("key");
    let sealed_signing_secret = match (sealing, &signing_secret) {
        (Some(k), Some(secret)) => Some(StoredSecret::seal(
            k,
            SecretOwner::ApiKeySigning {
                tenant: &tenant.id,
                key_id: &key_id,
            },
            secret,
        )),
        _ => None,
    };
    let info = ApiKeyInfo {
        id: key_id,
        name,
        prefix: minted.prefix,
        hash: minted.hash,
        created_at: rfc3339_ms(env.now_ms),
        revoked_at: None,
        require_signature,
    };
    let auth = ApiKeyAuth {
        key_id: info.id.clone(),
        tenant_id: tenant.id.clone(),
        signing_secret: sealed_signing_secret,
    };
    put_json(env.kv, &keys::api_key(&tenant.id, &info.id), &info, None).await?;
    put_json(env.kv, &keys::api_key_by_hash(&info.hash), &auth, None).await?;
    let mut body = info.to_public();
    // The only time the clear key (and the signing secret) leave the edge.
    body["key"] = json!(minted.clear);
    body["signing_secret"] = json!(signing_secret);
    Ok(ApiResponse::json(201, &body))
}

async fn revoke_api_key<K: Kv, D: Dispatcher>(
    env: &Env<'_, K, D>,
    tenant: &Tenant,
    kid: &str,
) -> Result<ApiResponse> {
    let not_found = || ApiError::new(ErrorCode::ApiKeyNotFound, format!("no API key '{kid}'"));
    if !ids::is_id(kid, "key") {
        return Err(not_found());
    }
    let mut info: ApiKeyInfo = get_json(env.kv, &keys::api_key(&tenant.id, kid))
        .await?
        .ok_or_else(not_found)?;
    if info.revoked_at.is_none() {
        env.kv.delete(&keys::api_key_by_hash(&info.hash)).await?;
        info.revoked_at = Some(rfc3339_ms(env.now_ms));
        put_json(env.kv, &keys::api_key(&tenant.id, kid), &info, None).await?;
    }
    Ok(ApiResponse::json(200, &info.to_public()))
}

/// The SSRF guard on webhook URLs (see `url_guard`), also run at delivery.
pub fn check_webhook_url(url: &str, dev_mode: bool) -> std::result::Result<(), String> {
    crate::url_guard::check_webhook(url, dev_mode)
}

#[cfg(test)]
mod tests;

//! Serves CodeB's outbound-AI REST API (seed `codeb-outbound-ai-rest.txt`,
//! docs/dialects.md "CodeB") on the one call pipeline: the pure module
//! [`crate::dialects::codeb`] reads requests and writes answers; this file
//! authenticates, turns a create request into the native create-call body
//! (validated by the native validator), admits and places it with the code
//! `POST /v1/calls` uses, and reads calls and transcripts from the tenant's
//! `CallStore`.
//!
//! CodeB is not a [`crate::dialects::Dialect`]: it has no dialect
//! credentials. Its bearer is a tenant user's access token or a native `ak_`
//! API key ("Either works on every endpoint on this page").

use crate::api::calls::place_call;
use crate::api::codeb_auth::CodebPrincipal;
use crate::api::dialects::admit_new_call;
use crate::api::env::Env;
use crate::api::validate;
use crate::calls::store::ListFilter;
use crate::dialects::codeb::{self, CodebError, Operation, Routed, StoredCall};
use crate::dialects::Refusal;
use crate::dispatch::port::DispatchQueues;
use crate::http::{ApiRequest, ApiResponse};
use crate::model::{keys, Agent, CallRecord, Tenant};
use crate::store::{get_json, Kv};

/// The whole answer to a request on a CodeB path.
pub(crate) async fn serve<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
    routed: Routed<'_>,
) -> ApiResponse {
    let op = match routed {
        Routed::Operation(op) => op,
        Routed::MethodNotAllowed { allow } => {
            return failed(&CodebError::MethodNotAllowed { allow })
        }
        Routed::NotFound => return failed(&CodebError::NotFound),
    };
    if let Operation::Token = op {
        return crate::api::codeb_auth::token(env, req).await;
    }
    let caller = match crate::api::codeb_auth::authenticate(env, req).await {
        Ok(c) => c,
        Err(e) => return failed(&e),
    };
    let mut rate_headers = Vec::new();
    let answer = match op {
        // Answered above, before authentication.
        Operation::Token => Err(CodebError::Internal),
        Operation::CreateCall => create(env, req, &caller, &mut rate_headers).await,
        Operation::ListCalls => list(env, req, &caller).await,
        Operation::GetCall { call_id } => get(env, &caller, call_id).await,
        Operation::Hangup { call_id } => hangup(env, &caller, call_id).await,
        Operation::Transcript { name } => transcript(env, &caller, name).await,
    };
    let mut resp = answer.unwrap_or_else(|e| failed(&e));
    resp.headers.extend(rate_headers);
    resp
}

fn json_answer(status: u16, body: String) -> ApiResponse {
    let mut resp = ApiResponse::json_text(status, body);
    // Not a native error: keep the access log's code column empty.
    resp.error_code = None;
    resp
}

/// The error in CodeB's shape, with its headers (`Allow`, `Retry-After`,
/// `WWW-Authenticate`).
pub(crate) fn failed(e: &CodebError) -> ApiResponse {
    let mut resp = json_answer(e.status(), e.body());
    for (name, value) in e.headers() {
        resp = resp.with_header(name, value);
    }
    resp
}

fn internal<E>(_: E) -> CodebError {
    CodebError::Internal
}

/// The tenant's name in CodeB's answers and webhooks.
fn tenant_name(tenant: &Tenant) -> String {
    crate::model::codeb_tenant_name(tenant)
}

fn stored(record: &CallRecord) -> StoredCall<'_> {
    StoredCall {
        id: &record.id,
        phone: &record.phone,
        caller_name: record.caller_name.as_deref(),
        status: record.status,
        ended_reason: record.ended_reason,
        dispatched_at: record.dispatched_at.as_deref(),
        answered_at: record.answered_at.as_deref(),
        ended_at: record.ended_at.as_deref(),
        attempts: record.attempts,
        retries: record.retries,
    }
}

// ---------------------------------------------------------------- create

/// `POST /api.ashx/v1/calls`.
async fn create<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
    caller: &CodebPrincipal,
    rate_headers: &mut Vec<(String, String)>,
) -> Result<ApiResponse, CodebError> {
    let tenant = &caller.tenant;
    let wanted = codeb::read_create_call(&req.body)?;
    let agent = default_agent(env, tenant).await?;
    // "Plain-text instructions to the AI, or a slug of a saved tenant prompt".
    let prompt = match wanted.prompt_slug() {
        Some(slug) => saved_prompt(env, tenant, slug)
            .await?
            .unwrap_or_else(|| wanted.system_prompt.clone()),
        None => wanted.system_prompt.clone(),
    };
    let native = native_body(&wanted, &agent.id, &prompt);
    let input = validate::create_call(Some("application/json"), &native, env.now_ms)
        .map_err(|e| codeb_refusal(&e))?;
    let key_id = caller.limit_key_id();
    admit_new_call(
        env,
        req,
        tenant,
        &agent,
        &key_id,
        &input.phone,
        rate_headers,
    )
    .await
    .map_err(|r| CodebError::from(&r))?;
    let record = place_call(env, tenant, input, agent, None, Default::default())
        .await
        .map_err(|e| codeb_refusal(&e))?;
    // The call is placed: a whitelist that cannot be written is reported
    // in `whitelistError`, as the document's answer has room for.
    let (added, whitelist_error) = match env.calls.whitelist_add(&tenant.id, &record.phone).await {
        Ok(added) => (added, None),
        Err(_) => (false, Some("the whitelist could not be written")),
    };
    let call_id = codeb::codeb_call_id(&record.id).ok_or(CodebError::Internal)?;
    let body = codeb::created_body(
        &call_id,
        &tenant_name(tenant),
        added,
        whitelist_error,
        &record.to_public_json(),
    );
    Ok(json_answer(200, body))
}

/// A native refusal in CodeB's words, with the native field names in its
/// message written as CodeB's (`schedule_at` -> `scheduleAtUtc`).
fn codeb_refusal(e: &crate::error::ApiError) -> CodebError {
    let mut err = CodebError::from(&Refusal::from_native(e));
    if let CodebError::BadRequest(message) = &mut err {
        *message = codeb::codeb_field_names(message);
    }
    err
}

/// CodeB has no agent in its body: its calls are placed with the tenant's
/// default agent (its engine, voice and language unless the body gives them).
async fn default_agent<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    tenant: &Tenant,
) -> Result<Agent, CodebError> {
    let aid = tenant
        .default_agent_id
        .as_deref()
        .ok_or_else(|| CodebError::from(&Refusal::AgentNotConfigured))?;
    let agent: Agent = get_json(env.kv, &keys::agent(&tenant.id, aid))
        .await
        .map_err(internal)?
        .ok_or_else(|| CodebError::from(&Refusal::AgentNotConfigured))?;
    if !agent.enabled {
        return Err(CodebError::from(&Refusal::AgentDisabled));
    }
    Ok(agent)
}

/// The tenant's saved prompt called `slug` (admin API
/// `/admin/tenants/{t}/prompts/{slug}`), if any.
async fn saved_prompt<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    tenant: &Tenant,
    slug: &str,
) -> Result<Option<String>, CodebError> {
    let saved: Option<crate::model::SavedPrompt> =
        get_json(env.kv, &keys::prompt(&tenant.id, slug))
            .await
            .map_err(internal)?;
    Ok(saved.map(|p| p.text))
}

/// The native create-call body for a CodeB request: what a `POST /v1/calls`
/// client would send, so the one validator decides.
fn native_body(w: &codeb::CreateCall, agent_id: &str, prompt: &str) -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct Native<'a> {
        phone: &'a str,
        agent_id: &'a str,
        caller_name: &'a str,
        transcript_email: &'a str,
        system_prompt: &'a str,
        engine_api_key: &'a str,
        voice: &'a str,
        language: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        model: Option<&'a str>,
        max_seconds: u32,
        retries: u32,
        retry_delay_minutes: u32,
        #[serde(skip_serializing_if = "Option::is_none")]
        schedule_at: Option<String>,
    }
    serde_json::to_vec(&Native {
        phone: &w.phone,
        agent_id,
        caller_name: &w.display_name,
        transcript_email: &w.email,
        system_prompt: prompt,
        engine_api_key: w.api_key.expose(),
        voice: &w.voice,
        language: &w.language,
        model: w.model.as_deref(),
        max_seconds: w.max_seconds,
        retries: w.retries,
        retry_delay_minutes: w.retry_delay_minutes,
        schedule_at: w.schedule_at_ms.map(crate::ids::rfc3339_ms),
    })
    .unwrap_or_default()
}

// ---------------------------------------------------------------- reads

async fn load<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    caller: &CodebPrincipal,
    codeb_id: &str,
) -> Result<CallRecord, CodebError> {
    let native = codeb::native_call_id(codeb_id).ok_or(CodebError::NotFound)?;
    env.calls
        .get(&caller.tenant.id, &native)
        .await
        .map_err(internal)?
        .ok_or(CodebError::NotFound)
}

/// `GET /api.ashx/v1/calls/{id}`.
async fn get<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    caller: &CodebPrincipal,
    codeb_id: &str,
) -> Result<ApiResponse, CodebError> {
    let record = load(env, caller, codeb_id).await?;
    let body = codeb::call_body(&stored(&record), &tenant_name(&caller.tenant));
    Ok(json_answer(200, body))
}

/// `POST /api.ashx/v1/calls/{id}/hangup`: idempotent, as the native hangup
/// (a scheduled or queued call is cancelled, a live one told to hang up, an
/// ended one left as it is).
async fn hangup<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    caller: &CodebPrincipal,
    codeb_id: &str,
) -> Result<ApiResponse, CodebError> {
    let native = codeb::native_call_id(codeb_id).ok_or(CodebError::NotFound)?;
    let (_, record) = env
        .calls
        .hangup(&caller.tenant.id, &native)
        .await
        .map_err(internal)?
        .ok_or(CodebError::NotFound)?;
    Ok(json_answer(
        200,
        codeb::hangup_body(codeb_id, record.status),
    ))
}

/// `GET /api.ashx/v1/calls?status=...&limit=...&offset=...`, newest first.
async fn list<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
    caller: &CodebPrincipal,
) -> Result<ApiResponse, CodebError> {
    let q = codeb::read_list_query(&req.query)?;
    let filter = ListFilter {
        statuses: q.statuses.iter().flat_map(|w| w.natives()).collect(),
        after_id: None,
        offset: q.offset,
        limit: q.limit,
        records: true,
    };
    let rows = env
        .calls
        .list(&caller.tenant.id, &filter)
        .await
        .map_err(internal)?;
    let records = rows
        .into_iter()
        .map(serde_json::from_value::<CallRecord>)
        .collect::<Result<Vec<_>, _>>()
        .map_err(internal)?;
    let views: Vec<StoredCall<'_>> = records.iter().map(stored).collect();
    let body = codeb::list_body(&views, &tenant_name(&caller.tenant), &q);
    Ok(json_answer(200, body))
}

/// `GET /api.ashx/v1/transcripts/outbound-ai-YYYYMMDD-HHMMSS-oac-<id>.txt|.json`:
/// served once the call has ended after being answered, and only under the
/// name the call's own answers give (another stamp: not found).
async fn transcript<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    caller: &CodebPrincipal,
    name: codeb::TranscriptName<'_>,
) -> Result<ApiResponse, CodebError> {
    let native = codeb::native_call_id(name.call_id).ok_or(CodebError::NotFound)?;
    let (record, transcript) = env
        .calls
        .transcript(&caller.tenant.id, &native)
        .await
        .map_err(internal)?
        .ok_or(CodebError::NotFound)?;
    if !record.status.is_terminal() || record.answered_at.is_none() {
        return Err(CodebError::NotFound);
    }
    let ended = crate::webhooks::post_call::ended_call(&record, &transcript, "", None, env.now_ms);
    let expected = codeb::transcript_name(
        name.call_id,
        ended.dispatched_ms,
        ended.answered_ms,
        ended.ended_ms,
        name.format,
    );
    if expected != name.to_string() {
        return Err(CodebError::NotFound);
    }
    let body = match name.format {
        codeb::TranscriptFormat::Txt => codeb::transcript_text(&ended),
        codeb::TranscriptFormat::Json => {
            codeb::transcript_json(&ended, &tenant_name(&caller.tenant))
        }
    };
    Ok(json_answer(200, body).with_header("Content-Type", name.format.content_type()))
}

//! The admin routes: tenants, agents, API keys, sidecars (webhook endpoints
//! are in [`crate::api::webhooks`]).

use crate::api::calls::{check_engine_credentials, seal_engine_key};
use crate::api::codeb_users::{check_host_free, codeb_host_field, index_host};
use crate::api::fields::parse_request;
use crate::api::list::{list_response, list_values};
use crate::api::router::RouteId;
use crate::api::validate;
use crate::engine_keys::secrets_sealing_key;
use crate::limits::{API_KEY_NAME_MAX, ID_FIELD_MAX, MAX_CONCURRENT_CALLS_MAX, TENANT_NAME_MAX};

use crate::dispatch::port::DispatchQueues;
use crate::engine_keys::{SecretOwner, StoredSecret};
use crate::error::{ApiError, ErrorCode};
use crate::http::{ApiRequest, ApiResponse};
use crate::ids::{self, rfc3339_ms};
use crate::model::{keys, Agent, ApiKeyAuth, ApiKeyInfo, Engine, SidecarRecord, Tenant};
use crate::store::{get_json, put_json, Kv};
use crate::traffic::{self};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};

use crate::api::env::{Env, Result};

pub(crate) async fn create_sidecar<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
) -> Result<ApiResponse> {
    let f = parse_request(req, &["sidecar_id", "region"])?;
    let id = f.str_req("sidecar_id", voxline_shared::sidecar_link::MAX_ID_LEN)?;
    let region = f.str_req("region", voxline_shared::sidecar_link::MAX_ID_LEN)?;
    for (name, v) in [("sidecar_id", &id), ("region", &region)] {
        if !voxline_shared::sidecar_link::is_valid_id(v) {
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

pub(crate) async fn revoke_sidecar<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    sid: &str,
) -> Result<ApiResponse> {
    let not_found = || ApiError::new(ErrorCode::SidecarNotFound, format!("no sidecar '{sid}'"));
    if !voxline_shared::sidecar_link::is_valid_id(sid) {
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

/// `GET /admin/sidecars`: every sidecar with, for those its region's
/// dispatch queue counts as live, its `load` (calls it holds and is offered
/// against its capacity, the free slots of its last poll, when it was last
/// seen) and the link's lease turnaround (see `dispatch::link_timing`):
/// summary and samples. One request per region with a live sidecar.
async fn list_sidecars<K: Kv, D: DispatchQueues>(env: &Env<'_, K, D>) -> Result<ApiResponse> {
    let list: Vec<SidecarRecord> = list_values(env, keys::SIDECARS_PREFIX).await?;
    let mut regions: Vec<&str> = list
        .iter()
        .filter(|s| s.revoked_at.is_none())
        .map(|s| s.region.as_str())
        .collect();
    regions.sort_unstable();
    regions.dedup();
    let mut live = std::collections::BTreeMap::new();
    for region in regions {
        for status in env.dispatch_queues.sidecar_status(region).await? {
            live.insert((region.to_string(), status.sidecar_id.clone()), status);
        }
    }
    let data = list
        .iter()
        .map(|s| {
            let mut v = s.to_public();
            let status = live.get(&(s.region.clone(), s.id.clone()));
            v["load"] = status
                .filter(|_| s.revoked_at.is_none())
                .map_or(Value::Null, sidecar_load);
            v
        })
        .collect();
    Ok(list_response(data))
}

/// A live sidecar's `load`, as the API shows it.
fn sidecar_load(s: &crate::dispatch::queue::SidecarStatus) -> Value {
    let mut ms: Vec<u64> = s.samples.iter().map(|x| x.turnaround_ms).collect();
    let last = ms.last().copied();
    ms.sort_unstable();
    // The lower median: a sample that was measured, never an average of two.
    let p50 = (!ms.is_empty()).then(|| ms[(ms.len() - 1) / 2]);
    let samples: Vec<Value> = s
        .samples
        .iter()
        .map(|x| json!({"at": rfc3339_ms(x.at_ms), "turnaround_ms": x.turnaround_ms}))
        .collect();
    json!({
        "active_calls": s.active_calls,
        "offered_calls": s.offered_calls,
        "capacity": s.capacity,
        "free_slots": s.free_slots,
        "last_seen_at": rfc3339_ms(s.last_seen_ms),
        "lease_turnaround_ms": {"last": last, "p50": p50, "max": ms.last().copied()},
        "lease_turnaround_samples": samples,
    })
}

// ---- admin ----

pub(crate) async fn admin_route<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
    id: RouteId,
    tid: &str,
    sub: &str,
) -> Result<ApiResponse> {
    match id {
        RouteId::CreateTenant => return create_tenant(env, req).await,
        RouteId::CreateSidecar => return create_sidecar(env, req).await,
        RouteId::ListSidecars => return list_sidecars(env).await,
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
        RouteId::DeleteAgent => delete_agent(env, &mut tenant, sub).await,
        RouteId::CreateApiKey => create_api_key(env, req, &tenant).await,
        RouteId::ListApiKeys => {
            let list = list_values(env, &keys::api_keys_prefix(&tenant.id)).await?;
            Ok(list_response(
                list.iter().map(ApiKeyInfo::to_public).collect(),
            ))
        }
        RouteId::RevokeApiKey => revoke_api_key(env, &tenant, sub).await,
        RouteId::CreateDialectKey => {
            crate::api::dialect_keys::create_dialect_key(env, req, &tenant).await
        }
        RouteId::ListDialectKeys => crate::api::dialect_keys::list_dialect_keys(env, &tenant).await,
        RouteId::RevokeDialectKey => {
            crate::api::dialect_keys::revoke_dialect_key(env, &tenant, sub).await
        }
        RouteId::PutPrompt => crate::api::prompts::put_prompt(env, req, &tenant, sub).await,
        RouteId::ListPrompts => crate::api::prompts::list_prompts(env, &tenant).await,
        RouteId::GetPrompt => crate::api::prompts::get_prompt(env, &tenant, sub).await,
        RouteId::DeletePrompt => crate::api::prompts::delete_prompt(env, &tenant, sub).await,
        RouteId::CreateUser
        | RouteId::ListUsers
        | RouteId::GetUser
        | RouteId::UpdateUser
        | RouteId::DeleteUser => crate::api::codeb_users::route(env, req, id, &tenant, sub).await,
        RouteId::PutNumber => crate::api::numbers::put_number(env, req, &tenant, sub).await,
        RouteId::ListNumbers => crate::api::numbers::list_numbers(env, &tenant).await,
        RouteId::GetNumber => crate::api::numbers::get_number(env, &tenant, sub).await,
        RouteId::DeleteNumber => crate::api::numbers::delete_number(env, &tenant, sub).await,
        RouteId::CreateDirectoryUser
        | RouteId::ListDirectoryUsers
        | RouteId::UpdateDirectoryUser
        | RouteId::DeleteDirectoryUser
        | RouteId::CreateQueue
        | RouteId::ListQueues
        | RouteId::UpdateQueue
        | RouteId::DeleteQueue
        | RouteId::CreateVoice360Key
        | RouteId::ListVoice360Keys
        | RouteId::RevokeVoice360Key
        | RouteId::SetSipPassword => crate::api::directory::route(env, req, id, &tenant, sub).await,
        RouteId::CreateWebhook
        | RouteId::ListWebhooks
        | RouteId::GetWebhook
        | RouteId::UpdateWebhook
        | RouteId::DeleteWebhook
        | RouteId::RotateWebhookSecret
        | RouteId::TestWebhook => {
            crate::api::webhooks::admin_route(env, req, id, &tenant, sub).await
        }
        _ => Err(ApiError::new(
            ErrorCode::InternalError,
            "route without handler",
        )),
    }
}

pub(crate) fn max_concurrent_calls(f: &crate::api::fields::Fields) -> Result<Option<u32>> {
    Ok(
        f.int_opt("max_concurrent_calls", 1, MAX_CONCURRENT_CALLS_MAX)?
            .map(|n| n as u32),
    )
}

pub(crate) fn tenant_public(t: &Tenant) -> Value {
    let mut v = serde_json::to_value(t).unwrap_or(Value::Null);
    v["object"] = json!("tenant");
    v
}

pub(crate) fn agent_public(a: &Agent, tenant: &Tenant) -> Value {
    let mut v = serde_json::to_value(a).unwrap_or(Value::Null);
    v["object"] = json!("agent");
    // The key never leaves, sealed or not: only whether there is one.
    if let Value::Object(m) = &mut v {
        m.remove("engine_api_key_sealed");
        m.remove("tools_secret");
    }
    v["tools"] = json!(a.tools);
    v["transfer_extensions"] = json!(a.transfer_extensions);
    v["tools_secret_set"] = json!(a.tools_secret.is_some());
    v["engine_api_key_set"] = json!(a.engine_api_key_sealed.is_some());
    v["engine_base_url"] = json!(a.engine_base_url);
    v["default"] = json!(tenant.default_agent_id.as_deref() == Some(a.id.as_str()));
    v["analysis"] = json!(a.analysis);
    v
}

pub(crate) async fn load_tenant<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    tid: &str,
) -> Result<Tenant> {
    let not_found = || ApiError::new(ErrorCode::TenantNotFound, format!("no tenant '{tid}'"));
    env.load_by_id(tid, "ten", &keys::tenant(tid), not_found)
        .await
}

pub(crate) async fn load_agent<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    tid: &str,
    aid: &str,
) -> Result<Agent> {
    let not_found = || ApiError::new(ErrorCode::AgentNotFound, format!("no agent '{aid}'"));
    env.load_by_id(aid, "agt", &keys::agent(tid, aid), not_found)
        .await
}

pub(crate) async fn create_tenant<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
) -> Result<ApiResponse> {
    let f = parse_request(
        req,
        &[
            "name",
            "disabled",
            "max_concurrent_calls",
            "api_access",
            "codeb_host",
            "voice360_account",
        ],
    )?;
    let id = ids::random_id("ten");
    let codeb_host = codeb_host_field(&f)?.flatten();
    if let Some(host) = &codeb_host {
        check_host_free(env, host, &id).await?;
    }
    let voice360_account = crate::api::directory::account_field(&f)?.flatten();
    if let Some(account) = &voice360_account {
        crate::api::directory::claim_account(env, account, &id).await?;
    }
    let tenant = Tenant {
        id,
        name: f.str_req("name", TENANT_NAME_MAX)?,
        default_agent_id: None,
        disabled: f.bool_opt("disabled")?.unwrap_or(false),
        created_at: rfc3339_ms(env.now_ms),
        rate_limits: traffic::RateLimits::default(),
        max_concurrent_calls: max_concurrent_calls(&f)?,
        api_access: f.bool_opt("api_access")?.unwrap_or(true),
        codeb_host,
        voice360_account,
    };
    put_json(env.kv, &keys::tenant(&tenant.id), &tenant, None).await?;
    index_host(env, &tenant, None).await?;
    crate::api::directory::index_account(env, &tenant, None).await?;
    Ok(ApiResponse::json(201, &tenant_public(&tenant)))
}

pub(crate) async fn update_tenant<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
    mut tenant: Tenant,
) -> Result<ApiResponse> {
    let f = parse_request(
        req,
        &[
            "name",
            "disabled",
            "default_agent_id",
            "rate_limits",
            "max_concurrent_calls",
            "api_access",
            "codeb_host",
            "voice360_account",
        ],
    )?;
    let previous_host = tenant.codeb_host.clone();
    let previous_account = tenant.voice360_account.clone();
    if let Some(account) = crate::api::directory::account_field(&f)? {
        if let Some(a) = &account {
            crate::api::directory::claim_account(env, a, &tenant.id).await?;
        }
        tenant.voice360_account = account;
    }
    if let Some(host) = codeb_host_field(&f)? {
        if let Some(h) = &host {
            check_host_free(env, h, &tenant.id).await?;
        }
        tenant.codeb_host = host;
    }
    if let Some(on) = f.bool_opt("api_access")? {
        tenant.api_access = on;
    }
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
        tenant.name = f.str_req("name", TENANT_NAME_MAX)?;
    }
    if let Some(d) = f.bool_opt("disabled")? {
        tenant.disabled = d;
    }
    if let Some(aid) = f.str_opt("default_agent_id", ID_FIELD_MAX)? {
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
    index_host(env, &tenant, previous_host.as_deref()).await?;
    crate::api::directory::index_account(env, &tenant, previous_account.as_deref()).await?;
    Ok(ApiResponse::json(200, &tenant_public(&tenant)))
}

pub(crate) async fn create_agent<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
    tenant: &mut Tenant,
) -> Result<ApiResponse> {
    let input = validate::agent(req.content_type.as_deref(), &req.body, true, env.dev_mode)?;
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
    let mut agent = Agent {
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
        per_ip_limit: input.per_ip_limit,
        calling_window: input.calling_window.flatten(),
        engine_api_key_sealed,
        engine_base_url: input.engine_base_url.flatten(),
        silence_timeout_seconds: input.silence_timeout_seconds,
        first_speaker: input.first_speaker.unwrap_or_default(),
        analysis: input.analysis.flatten(),
        amd: input.amd.unwrap_or_default(),
        amd_message: input.amd_message.flatten(),
        tools: input.tools.unwrap_or_default(),
        tools_secret: None,
        transfer_extensions: input.transfer_extensions.unwrap_or_default(),
    };
    let minted = mint_tools_secret(env, &tenant.id, &mut agent, input.rotate_tools_secret)?;
    put_json(env.kv, &keys::agent(&tenant.id, &agent.id), &agent, None).await?;
    // The first agent becomes the default unless the client says otherwise.
    let make_default = input
        .make_default
        .unwrap_or(tenant.default_agent_id.is_none());
    if make_default {
        tenant.default_agent_id = Some(agent.id.clone());
        put_json(env.kv, &keys::tenant(&tenant.id), tenant, None).await?;
    }
    Ok(ApiResponse::json(
        201,
        &with_tools_secret(agent_public(&agent, tenant), minted),
    ))
}

pub(crate) async fn update_agent<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
    tenant: &mut Tenant,
    aid: &str,
) -> Result<ApiResponse> {
    let mut agent = load_agent(env, &tenant.id, aid).await?;
    let input = validate::agent(req.content_type.as_deref(), &req.body, false, env.dev_mode)?;
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
    agent.per_ip_limit = input.per_ip_limit.or(agent.per_ip_limit);
    agent.silence_timeout_seconds = input
        .silence_timeout_seconds
        .or(agent.silence_timeout_seconds);
    agent.first_speaker = input.first_speaker.unwrap_or(agent.first_speaker);
    // Like the calling window: an explicit null removes it.
    if let Some(plan) = input.analysis {
        agent.analysis = plan;
    }
    agent.amd = input.amd.unwrap_or(agent.amd);
    if let Some(message) = input.amd_message {
        agent.amd_message = message;
    }
    // Unlike the other fields, an explicit null removes the window.
    if let Some(window) = input.calling_window {
        agent.calling_window = window;
    }
    if let Some(tools) = input.tools {
        agent.tools = tools;
    }
    if let Some(extensions) = input.transfer_extensions {
        agent.transfer_extensions = extensions;
    }
    let minted = mint_tools_secret(env, &tenant.id, &mut agent, input.rotate_tools_secret)?;
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
    Ok(ApiResponse::json(
        200,
        &with_tools_secret(agent_public(&agent, tenant), minted),
    ))
}

/// Mints the agent's tools secret when it first has tools (or when asked to
/// rotate it): the clear secret, which leaves the edge this once.
fn mint_tools_secret<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    tid: &str,
    agent: &mut Agent,
    rotate: bool,
) -> Result<Option<String>> {
    let first = agent.tools_secret.is_none() && !agent.tools.is_empty();
    if !first && !rotate {
        return Ok(None);
    }
    let sealing = secrets_sealing_key(env.sealing_key)?;
    let secret = ids::mint_webhook_secret();
    let owner = SecretOwner::AgentTools {
        tenant: tid,
        agent: &agent.id,
    };
    agent.tools_secret = Some(StoredSecret::seal(sealing, owner, &secret));
    Ok(Some(secret))
}

/// The agent's public form plus its new tools secret, if one was minted.
fn with_tools_secret(mut body: Value, minted: Option<String>) -> Value {
    if let Some(secret) = minted {
        body["tools_secret"] = json!(secret);
    }
    body
}

/// Removes the agent. Calls already accepted keep the settings they were
/// created with; new calls cannot name it, it stops being the default, and
/// its dialect credentials stop placing calls (VoiceB `ctc:005`).
pub(crate) async fn delete_agent<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    tenant: &mut Tenant,
    aid: &str,
) -> Result<ApiResponse> {
    let agent = load_agent(env, &tenant.id, aid).await?;
    if tenant.default_agent_id.as_deref() == Some(agent.id.as_str()) {
        tenant.default_agent_id = None;
        put_json(env.kv, &keys::tenant(&tenant.id), tenant, None).await?;
    }
    env.kv.delete(&keys::agent(&tenant.id, &agent.id)).await?;
    Ok(ApiResponse::json(
        200,
        &json!({"id": agent.id, "object": "agent", "deleted": true}),
    ))
}

pub(crate) async fn create_api_key<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
    tenant: &Tenant,
) -> Result<ApiResponse> {
    let (name, require_signature) = if req.body.iter().all(u8::is_ascii_whitespace) {
        (None, false)
    } else {
        let f = parse_request(req, &["name", "require_signature"])?;
        (
            f.str_opt("name", API_KEY_NAME_MAX)?,
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

pub(crate) async fn revoke_api_key<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    tenant: &Tenant,
    kid: &str,
) -> Result<ApiResponse> {
    let not_found = || ApiError::new(ErrorCode::ApiKeyNotFound, format!("no API key '{kid}'"));
    let mut info: ApiKeyInfo = env
        .load_by_id(kid, "key", &keys::api_key(&tenant.id, kid), not_found)
        .await?;
    if info.revoked_at.is_none() {
        env.kv.delete(&keys::api_key_by_hash(&info.hash)).await?;
        info.revoked_at = Some(rfc3339_ms(env.now_ms));
        put_json(env.kv, &keys::api_key(&tenant.id, kid), &info, None).await?;
    }
    Ok(ApiResponse::json(200, &info.to_public()))
}

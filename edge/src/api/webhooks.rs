//! The webhook routes: endpoints under the admin API (create, read, change,
//! delete, rotate the secret, send a test event) and the tenant's delivery
//! log under `/v1/webhooks/deliveries` (list, read, redeliver; webhook
//! deliveries and customer tool requests). Pure, like the rest of `api`.

use crate::api::env::Env;
use crate::api::fields::{parse_request, Fields};
use crate::api::list::{
    decode_list_cursor, encode_list_cursor, list_response, list_values, parse_list_filter,
    parse_list_limit, parse_query_params,
};
use crate::api::router::RouteId;
use crate::dispatch::port::DispatchQueues;
use crate::engine_keys::secrets_sealing_key;
use crate::engine_keys::{SecretOwner, StoredSecret};
use crate::error::{ApiError, ErrorCode};
use crate::http::{ApiRequest, ApiResponse};
use crate::ids::{self, rfc3339_ms};
use crate::limits::{ID_FIELD_MAX, WEBHOOK_EVENT_MAX, WEBHOOK_URL_MAX};
use crate::model::{keys, Agent, Tenant, WebhookEndpoint, WebhookFormat};
use crate::store::{get_json, put_json, Kv};
use crate::url_guard;
use crate::webhooks::delivery::{
    self, DeliveryJob, DeliveryKind, DeliveryRecord, DeliveryStatus, TEST_EVENT_TYPE,
    TOOL_CALL_EVENT_TYPE,
};
use crate::webhooks::events::WEBHOOK_EVENTS;
use serde_json::{json, Value};

type Result<T> = std::result::Result<T, ApiError>;

pub const WEBHOOK_FIELDS: &[&str] = &[
    "url",
    "events",
    "enabled",
    "retry_schedule",
    "format",
    "agent_id",
    "voice360_event",
];
/// KV list calls one listing request may spend when a filter skips keys.
const LIST_MAX_SCANS: usize = 10;

/// Admin routes on `/admin/tenants/{tenant_id}/webhooks[/{webhook_id}[/rotate]]`.
pub(crate) async fn admin_route<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
    id: RouteId,
    tenant: &Tenant,
    wid: &str,
) -> Result<ApiResponse> {
    match id {
        RouteId::CreateWebhook => create(env, req, tenant).await,
        RouteId::ListWebhooks => {
            let list = list_values(env, &keys::webhooks_prefix(&tenant.id)).await?;
            Ok(list_response(
                list.iter().map(WebhookEndpoint::to_public).collect(),
            ))
        }
        RouteId::GetWebhook => Ok(ApiResponse::json(
            200,
            &load(env, &tenant.id, wid).await?.to_public(),
        )),
        RouteId::UpdateWebhook => update(env, req, tenant, wid).await,
        RouteId::DeleteWebhook => {
            let endpoint = load(env, &tenant.id, wid).await?;
            env.kv.delete(&keys::webhook(&tenant.id, wid)).await?;
            Ok(ApiResponse::json(200, &endpoint.to_public()))
        }
        RouteId::RotateWebhookSecret => rotate(env, req, tenant, wid).await,
        RouteId::TestWebhook => test_send(env, req, tenant, wid).await,
        _ => Err(ApiError::new(
            ErrorCode::InternalError,
            "route without handler",
        )),
    }
}

/// `/v1/webhooks/deliveries[/{delivery_id}[/redeliver]]`, for the tenant of
/// the API key (authenticated and rate limited by `api::v1_route`).
pub(crate) async fn tenant_route<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
    id: RouteId,
    tenant: &Tenant,
    did: &str,
) -> Result<ApiResponse> {
    match id {
        RouteId::ListDeliveries => list_deliveries(env, req, tenant).await,
        RouteId::GetDelivery => Ok(ApiResponse::json_text(
            200,
            load_delivery(env, &tenant.id, did).await?.to_public_json(),
        )),
        RouteId::RedeliverDelivery => redeliver(env, tenant, did).await,
        _ => Err(ApiError::new(
            ErrorCode::InternalError,
            "route without handler",
        )),
    }
}

async fn load<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    tid: &str,
    wid: &str,
) -> Result<WebhookEndpoint> {
    let not_found = || {
        ApiError::new(
            ErrorCode::WebhookNotFound,
            format!("no webhook endpoint '{wid}'"),
        )
    };
    env.load_by_id(wid, "wh", &keys::webhook(tid, wid), not_found)
        .await
}

fn url_field(f: &Fields, dev_mode: bool) -> Result<Option<String>> {
    let Some(url) = f.str_opt("url", WEBHOOK_URL_MAX)? else {
        return Ok(None);
    };
    url_guard::check_webhook(&url, dev_mode)
        .map_err(|why| ApiError::field(ErrorCode::InvalidUrl, "url", why))?;
    Ok(Some(url))
}

fn events_field(f: &Fields) -> Result<Option<Vec<String>>> {
    let events = f.str_list_opt("events", WEBHOOK_EVENTS.len(), WEBHOOK_EVENT_MAX)?;
    if let Some(bad) = events
        .iter()
        .flatten()
        .find(|e| !WEBHOOK_EVENTS.contains(&e.as_str()))
    {
        return Err(ApiError::field(
            ErrorCode::InvalidValue,
            "events",
            format!(
                "unknown event '{bad}'; known: {}",
                WEBHOOK_EVENTS.join(", ")
            ),
        ));
    }
    Ok(events)
}

/// Steps of at least 1 s in development, 30 s in production; at most a day.
fn schedule_field(f: &Fields, dev_mode: bool) -> Result<Option<Vec<u32>>> {
    let min = i64::from(delivery::min_retry_step(dev_mode));
    let steps = f.int_list_opt(
        "retry_schedule",
        delivery::MAX_RETRY_STEPS,
        min,
        i64::from(delivery::MAX_RETRY_STEP),
    )?;
    Ok(steps.map(|s| s.into_iter().map(|n| n as u32).collect()))
}

/// `voice360_event`: one of Voice360's event types. `None`: absent;
/// `Some(None)`: an explicit null.
fn voice360_event_field(f: &Fields) -> Result<Option<Option<String>>> {
    let Some(name) = f.str_opt("voice360_event", WEBHOOK_EVENT_MAX)? else {
        return Ok(f.is_null("voice360_event").then_some(None));
    };
    match crate::dialects::voice360::EventType::parse(&name) {
        Some(t) => Ok(Some(Some(t.as_str().to_string()))),
        None => Err(ApiError::field(
            ErrorCode::InvalidValue,
            "voice360_event",
            format!(
                "unknown Voice360 event type '{}'",
                name.chars().take(40).collect::<String>()
            ),
        )),
    }
}

/// `format`: `native`, `buildvoiceai`, `calldock`, `codeb` or `voice360` (None: absent or null).
fn format_field(f: &Fields) -> Result<Option<WebhookFormat>> {
    let Some(name) = f.str_opt("format", WEBHOOK_EVENT_MAX)? else {
        return Ok(None);
    };
    WebhookFormat::parse(&name).map(Some).ok_or_else(|| {
        ApiError::field(
            ErrorCode::InvalidValue,
            "format",
            format!(
                "unknown format '{name}'; known: {}",
                WebhookFormat::NAMES.join(", ")
            ),
        )
    })
}

/// `agent_id`: an agent of the tenant (422 `unknown_agent` otherwise).
/// `None`: absent; `Some(None)`: an explicit null (no filter).
async fn agent_field<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    f: &Fields,
    tenant: &Tenant,
) -> Result<Option<Option<String>>> {
    let Some(aid) = f.str_opt("agent_id", ID_FIELD_MAX)? else {
        return Ok(f.is_null("agent_id").then_some(None));
    };
    let unknown = || {
        ApiError::field(
            ErrorCode::UnknownAgent,
            "agent_id",
            format!("no agent '{aid}' in this tenant"),
        )
    };
    let agent: Agent = env
        .load_by_id(&aid, "agt", &keys::agent(&tenant.id, &aid), unknown)
        .await?;
    Ok(Some(Some(agent.id)))
}

/// What a dialect endpoint cannot have: subscribed events (it gets its
/// deliveries when the call has ended), and for BuildVoiceAI a retry schedule of
/// its own (the vendor's is fixed). Checked on the endpoint as it would be
/// stored, so a change of `format` is checked against the other fields too.
fn check_format(endpoint: &WebhookEndpoint, schedule_given: bool) -> Result<()> {
    let voice360 = endpoint.format == WebhookFormat::Voice360;
    match (&endpoint.voice360_event, voice360) {
        (None, true) => {
            return Err(ApiError::field(
                ErrorCode::MissingField,
                "voice360_event",
                "a voice360 endpoint listens for one event type: voice360_event (e.g. CALL_ENDED)",
            ))
        }
        // Named on `format`: the event type says the endpoint is Voice360's.
        (Some(_), false) => {
            return Err(ApiError::field(
                ErrorCode::InvalidValue,
                "format",
                "an endpoint with a voice360_event has format voice360",
            ))
        }
        _ => {}
    }
    let retries = endpoint.retry_schedule.len() as u32;
    let (min, max) = crate::dialects::voice360::RETRIES_RANGE;
    if voice360 && !(min..=max).contains(&retries) {
        return Err(ApiError::field(
            ErrorCode::InvalidValue,
            "retry_schedule",
            format!("a voice360 endpoint retries {min} to {max} times: give {min} to {max} delays"),
        ));
    }
    if !endpoint.format.is_dialect() {
        return Ok(());
    }
    if !endpoint.events.is_empty() {
        return Err(ApiError::field(
            ErrorCode::InvalidValue,
            "events",
            format!(
                "a {} endpoint is sent the call's end only: events must be empty",
                endpoint.format.as_str()
            ),
        ));
    }
    if schedule_given && endpoint.format == WebhookFormat::BuildVoiceAi {
        return Err(ApiError::field(
            ErrorCode::InvalidValue,
            "retry_schedule",
            "a buildvoiceai endpoint retries as BuildVoiceAI documents (30 s, 5 min, 30 min, then dropped): leave retry_schedule out",
        ));
    }
    Ok(())
}

/// The public form plus the new clear secret: the one time it leaves the edge.
fn created_body(endpoint: &WebhookEndpoint, clear_secret: &str) -> Value {
    let mut body = endpoint.to_public();
    body["secret"] = json!(clear_secret);
    body
}

fn owner<'a>(tid: &'a str, wid: &'a str) -> SecretOwner<'a> {
    SecretOwner::Webhook {
        tenant: tid,
        endpoint: wid,
    }
}

async fn create<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
    tenant: &Tenant,
) -> Result<ApiResponse> {
    let f = parse_request(req, WEBHOOK_FIELDS)?;
    if !f.has("url") {
        return Err(ApiError::field(
            ErrorCode::MissingField,
            "url",
            "'url' is required",
        ));
    }
    let url = url_field(&f, env.dev_mode)?.unwrap_or_default();
    let format = format_field(&f)?.unwrap_or_default();
    let agent_id = agent_field(env, &f, tenant).await?.flatten();
    let schedule = schedule_field(&f, env.dev_mode)?;
    let sealing = secrets_sealing_key(env.sealing_key)?;
    let now = rfc3339_ms(env.now_ms);
    let id = ids::random_id("wh");
    let secret = ids::mint_webhook_secret();
    let endpoint = WebhookEndpoint {
        secret: StoredSecret::seal(sealing, owner(&tenant.id, &id), &secret),
        id,
        url,
        events: events_field(&f)?.unwrap_or_default(),
        enabled: f.bool_opt("enabled")?.unwrap_or(true),
        created_at: now.clone(),
        retry_schedule: schedule
            .clone()
            .unwrap_or_else(crate::model::default_retry_schedule),
        disabled_reason: None,
        previous_secret: None,
        previous_secret_expires_ms: None,
        updated_at: Some(now),
        format,
        agent_id,
        voice360_event: voice360_event_field(&f)?.flatten(),
    };
    check_format(&endpoint, schedule.is_some())?;
    put_json(
        env.kv,
        &keys::webhook(&tenant.id, &endpoint.id),
        &endpoint,
        None,
    )
    .await?;
    Ok(ApiResponse::json(201, &created_body(&endpoint, &secret)))
}

async fn update<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
    tenant: &Tenant,
    wid: &str,
) -> Result<ApiResponse> {
    let mut endpoint = load(env, &tenant.id, wid).await?;
    let f = parse_request(req, WEBHOOK_FIELDS)?;
    if let Some(url) = url_field(&f, env.dev_mode)? {
        endpoint.url = url;
    }
    if let Some(events) = events_field(&f)? {
        endpoint.events = events;
    }
    let schedule = schedule_field(&f, env.dev_mode)?;
    if let Some(schedule) = &schedule {
        endpoint.retry_schedule = schedule.clone();
    }
    if let Some(format) = format_field(&f)? {
        endpoint.format = format;
    }
    if let Some(agent_id) = agent_field(env, &f, tenant).await? {
        endpoint.agent_id = agent_id;
    }
    if let Some(event) = voice360_event_field(&f)? {
        endpoint.voice360_event = event;
    }
    check_format(&endpoint, schedule.is_some())?;
    if let Some(enabled) = f.bool_opt("enabled")? {
        if enabled {
            endpoint.disabled_reason = None;
        }
        endpoint.enabled = enabled;
    }
    endpoint.updated_at = Some(rfc3339_ms(env.now_ms));
    endpoint.seal_legacy_secrets(&tenant.id, env.sealing_key);
    put_json(env.kv, &keys::webhook(&tenant.id, wid), &endpoint, None).await?;
    Ok(ApiResponse::json(200, &endpoint.to_public()))
}

/// A new secret, shown once; the old one keeps signing (alongside) for the overlap.
async fn rotate<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
    tenant: &Tenant,
    wid: &str,
) -> Result<ApiResponse> {
    let mut endpoint = load(env, &tenant.id, wid).await?;
    let overlap_seconds = if req.body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        parse_request(req, &["overlap_seconds"])?.int_opt(
            "overlap_seconds",
            0,
            delivery::MAX_ROTATION_OVERLAP_SECONDS as i64,
        )?
    };
    // Voice360: "The old secret stops being valid the moment you confirm."
    let overlap_ms = if endpoint.format == WebhookFormat::Voice360 {
        if overlap_seconds.is_some_and(|s| s > 0) {
            return Err(ApiError::field(
                ErrorCode::InvalidValue,
                "overlap_seconds",
                "a voice360 endpoint's old secret ends at once: overlap_seconds must be 0 or absent",
            ));
        }
        0
    } else {
        overlap_seconds.map_or(delivery::DEFAULT_ROTATION_OVERLAP_SECONDS, |s| s as u64) * 1000
    };
    let sealing = secrets_sealing_key(env.sealing_key)?;
    let secret = ids::mint_webhook_secret();
    let new = StoredSecret::seal(sealing, owner(&tenant.id, wid), &secret);
    let old = std::mem::replace(&mut endpoint.secret, new);
    endpoint.previous_secret = (overlap_ms > 0).then_some(old);
    endpoint.previous_secret_expires_ms = (overlap_ms > 0).then_some(env.now_ms + overlap_ms);
    endpoint.updated_at = Some(rfc3339_ms(env.now_ms));
    endpoint.seal_legacy_secrets(&tenant.id, env.sealing_key);
    put_json(env.kv, &keys::webhook(&tenant.id, wid), &endpoint, None).await?;
    Ok(ApiResponse::json(200, &created_body(&endpoint, &secret)))
}

/// `POST .../webhooks/{id}/test`: one `webhook.test` event for this
/// endpoint, whatever it subscribes to, through the path every event takes
/// (the delivery queue, signed as the endpoint's format signs, retried by
/// its schedule), so it is in the delivery log with each attempt and the
/// receiver's answer. Answers 202 with the delivery as logged (`pending`).
async fn test_send<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
    tenant: &Tenant,
    wid: &str,
) -> Result<ApiResponse> {
    if !req.body.iter().all(u8::is_ascii_whitespace) {
        parse_request(req, &[] as &[&str])?;
    }
    let endpoint = load(env, &tenant.id, wid).await?;
    if !endpoint.enabled {
        return Err(ApiError::new(
            ErrorCode::WebhookDisabled,
            format!("webhook endpoint '{wid}' is disabled; enable it (PATCH) first"),
        ));
    }
    let event_id = ids::random_id("evt");
    let data = json!({
        "endpoint_id": endpoint.id,
        "tenant_id": tenant.id,
        "message": "A test event: this endpoint receives voxline webhooks signed with its secret.",
    });
    let payload = json!({"id": event_id, "type": TEST_EVENT_TYPE,
                         "timestamp": rfc3339_ms(env.now_ms), "data": data})
    .to_string();
    let job = DeliveryJob {
        tenant_id: tenant.id.clone(),
        delivery_id: delivery::delivery_id(env.now_ms),
        endpoint_id: endpoint.id.clone(),
        event_id,
        event_type: TEST_EVENT_TYPE.to_string(),
        payload,
        call_id: None,
        created_at_ms: env.now_ms,
        attempt: 1,
        step: 0,
        due_at_ms: env.now_ms,
        manual: true,
        format: endpoint.format,
        placed_with_key: None,
    };
    // Logged at once (pending), so the log lists it before its first attempt.
    let record = DeliveryRecord::from_job(&job);
    put_json(
        env.kv,
        &keys::webhook_delivery(&tenant.id, &record.id),
        &record,
        Some(&record.list_metadata()),
    )
    .await?;
    env.outbox.push(vec![job]);
    Ok(ApiResponse::json_text(202, record.to_public_json()))
}

// ---- the delivery log ----

async fn load_delivery<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    tid: &str,
    did: &str,
) -> Result<DeliveryRecord> {
    let not_found = || {
        ApiError::new(
            ErrorCode::DeliveryNotFound,
            format!("no webhook delivery '{did}'"),
        )
    };
    env.load_by_id(did, "dlv", &keys::webhook_delivery(tid, did), not_found)
        .await
}

/// Queues the delivery again with a fresh retry schedule (202). The log
/// shows the new attempts as they happen, marked `manual`.
async fn redeliver<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    tenant: &Tenant,
    did: &str,
) -> Result<ApiResponse> {
    let record = load_delivery(env, &tenant.id, did).await?;
    if record.kind == DeliveryKind::ToolCall {
        return Err(ApiError::new(
            ErrorCode::NotRedeliverable,
            format!(
                "'{did}' is a tool call's request, made once during its call; it is not sent again"
            ),
        ));
    }
    let endpoint: Option<WebhookEndpoint> =
        get_json(env.kv, &keys::webhook(&tenant.id, &record.endpoint_id)).await?;
    if !endpoint.is_some_and(|e| e.enabled) {
        return Err(ApiError::new(
            ErrorCode::WebhookDisabled,
            format!(
                "webhook endpoint '{}' is disabled or was deleted",
                record.endpoint_id
            ),
        ));
    }
    env.outbox
        .push(vec![record.redelivery_job(&tenant.id, env.now_ms)]);
    Ok(ApiResponse::json_text(202, record.to_public_json()))
}

struct Query {
    events: Vec<String>,
    statuses: Vec<String>,
    kinds: Vec<String>,
    call_id: Option<String>,
    filter_text: String,
    limit: u32,
    kv_cursor: Option<String>,
}

/// `call_id`: an id as the API mints them (letters, digits, `_`).
fn call_id_param(call_id: Option<String>) -> Result<Option<String>> {
    match call_id {
        Some(c)
            if c.is_empty()
                || c.len() > ID_FIELD_MAX
                || !c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') =>
        {
            Err(ApiError::field(
                ErrorCode::InvalidParameter,
                "call_id",
                format!(
                    "call_id must be a call id (letters, digits and _, at most {ID_FIELD_MAX})"
                ),
            ))
        }
        c => Ok(c),
    }
}

fn parse_query(query: &str) -> Result<Query> {
    let [event, status, kind, call_id, limit, cursor] = parse_query_params(
        query,
        ["event", "status", "kind", "call_id", "limit", "cursor"],
    )?;
    // Besides the events endpoints subscribe to: test events and tool calls.
    let event_types: Vec<&str> = WEBHOOK_EVENTS
        .iter()
        .copied()
        .chain([TEST_EVENT_TYPE, TOOL_CALL_EVENT_TYPE])
        .collect();
    let events = parse_list_filter("event", event.as_deref(), &event_types)?;
    let statuses = parse_list_filter("status", status.as_deref(), &DeliveryStatus::NAMES)?;
    let kinds = parse_list_filter("kind", kind.as_deref(), &DeliveryKind::NAMES)?;
    let call_id = call_id_param(call_id)?;
    let filter_text = format!(
        "{}|{}|{}|{}",
        event.unwrap_or_default(),
        status.unwrap_or_default(),
        kind.unwrap_or_default(),
        call_id.as_deref().unwrap_or_default()
    );
    let limit = parse_list_limit(limit)?;
    let kv_cursor = decode_list_cursor(cursor, &filter_text)?;
    Ok(Query {
        events,
        statuses,
        kinds,
        call_id,
        filter_text,
        limit,
        kv_cursor,
    })
}

/// Newest first, from KV key metadata only (as call listing does).
async fn list_deliveries<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
    tenant: &Tenant,
) -> Result<ApiResponse> {
    let q = parse_query(&req.query)?;
    let prefix = keys::webhook_deliveries_prefix(&tenant.id);
    let mut data = Vec::new();
    let mut cursor = q.kv_cursor;
    for _ in 0..LIST_MAX_SCANS {
        let want = q.limit - data.len() as u32;
        let page = env.kv.list(&prefix, want, cursor.as_deref()).await?;
        for entry in page.keys {
            let meta = entry.metadata.unwrap_or(Value::Null);
            let wanted = |filter: &[String], v: Option<&str>| {
                filter.is_empty() || v.is_some_and(|s| filter.iter().any(|f| f == s))
            };
            // Entries written before kinds existed are webhook deliveries.
            let kind = meta["t"].as_str().unwrap_or(DeliveryKind::Webhook.as_str());
            let of_the_call = q
                .call_id
                .as_deref()
                .is_none_or(|c| meta["k"].as_str() == Some(c));
            if wanted(&q.events, meta["e"].as_str())
                && wanted(&q.statuses, meta["s"].as_str())
                && wanted(&q.kinds, Some(kind))
                && of_the_call
            {
                let id = entry.name.strip_prefix(&prefix).unwrap_or(&entry.name);
                data.push(delivery::delivery_summary_from_metadata(id, &meta));
            }
        }
        cursor = page.cursor;
        if cursor.is_none() || data.len() as u32 >= q.limit {
            break;
        }
    }
    let next_cursor = cursor.map(|k| encode_list_cursor(k, &q.filter_text));
    Ok(ApiResponse::json(
        200,
        &json!({"object": "list", "data": data, "has_more": next_cursor.is_some(), "next_cursor": next_cursor}),
    ))
}
/// The SSRF guard on webhook URLs (see `url_guard`), also run at delivery.
pub fn check_webhook_url(url: &str, dev_mode: bool) -> std::result::Result<(), String> {
    crate::url_guard::check_webhook(url, dev_mode)
}

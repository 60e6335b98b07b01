//! The campaign routes (`/v1/campaigns`): create from a JSON list or a CSV
//! upload, read with counts, list, start / pause / resume / cancel; and
//! [`run_alarm`], what a campaign's object runs on its alarm: lease the
//! contacts its pacing allows and place each one's call through
//! [`place_call`], the one path every call takes.

use crate::api::calls::{place_call, CallOrigin};
use crate::api::env::{Env, Result};
use crate::api::fields::{parse_object, Fields};
use crate::api::list::{
    decode_list_cursor, encode_list_cursor, parse_list_limit, parse_query_params,
};
use crate::api::validate::{self, CreateCallInput};
use crate::campaigns::{
    Action, CallOptions, CampaignAnswer, CampaignRecord, CampaignRequest, CampaignSpec,
    CampaignStatus, NewContact, Placement, CALLS_PER_MINUTE, MAX_CONCURRENT_CALLS, MAX_CONTACTS,
};
use crate::dispatch::port::DispatchQueues;
use crate::error::{ApiError, ErrorCode};
use crate::http::{ApiRequest, ApiResponse};
use crate::ids::{self, rfc3339_ms};
use crate::limits::{
    CALL_NAME_MAX, ID_FIELD_MAX, MAX_CAMPAIGN_BODY_BYTES, MAX_METADATA_BYTES, MAX_SECONDS, RETRIES,
    RETRY_DELAY_MINUTES,
};
use crate::model::{keys, Agent, Metadata, Tenant};
use crate::store::{get_json, Kv};
use crate::traffic::IdemRequest;
use serde_json::{json, Map, Value};

/// The settings of `POST /v1/campaigns` (JSON body fields besides
/// `contacts`, or the query parameters of a CSV upload).
pub const CAMPAIGN_SETTINGS: &[&str] = &[
    "name",
    "agent_id",
    "calling_window",
    "max_concurrent_calls",
    "calls_per_minute",
    "max_seconds",
    "retries",
    "retry_delay_minutes",
    "record",
];
/// A campaign's `name`.
pub const CAMPAIGN_NAME_MAX: usize = 200;
/// Invalid rows listed in a 422 at most.
pub const MAX_ROWS_REPORTED: usize = 100;
/// The fields of one contact of a JSON `contacts` list.
pub const CONTACT_FIELDS: &[&str] = &["phone", "name", "metadata"];

fn campaign_not_found(id: &str) -> ApiError {
    ApiError::new(
        ErrorCode::CampaignNotFound,
        format!("no campaign '{}'", id.chars().take(64).collect::<String>()),
    )
}

/// One invalid row: its number and what is wrong with it.
struct BadRow {
    row: u64,
    error: ApiError,
}

/// The contacts read so far, their phones (to refuse a number twice) and
/// the invalid rows.
#[derive(Default)]
struct ContactList {
    contacts: Vec<NewContact>,
    first_row_of: std::collections::HashMap<String, u64>,
    bad: Vec<BadRow>,
    bad_count: usize,
}

impl ContactList {
    fn refuse(&mut self, row: u64, error: ApiError) {
        self.bad_count += 1;
        if self.bad.len() < MAX_ROWS_REPORTED {
            self.bad.push(BadRow { row, error });
        }
    }

    /// Checks one contact (as a JSON object) and keeps it, or its error.
    fn add(&mut self, row: u64, text: &str) {
        match contact_of(text) {
            Err(e) => self.refuse(row, e),
            Ok(c) => match self.first_row_of.get(&c.phone) {
                Some(first) => {
                    let e = ApiError::field(
                        ErrorCode::InvalidValue,
                        "phone",
                        format!(
                            "{} repeats row {first}: a campaign dials a number once",
                            c.phone
                        ),
                    );
                    self.refuse(row, e)
                }
                None => {
                    self.first_row_of.insert(c.phone.clone(), row);
                    self.contacts.push(c);
                }
            },
        }
    }

    fn into_contacts(self) -> Result<Vec<NewContact>> {
        if self.bad_count > 0 {
            return Err(invalid_contacts(self.bad, self.bad_count));
        }
        if self.contacts.is_empty() {
            return Err(ApiError::field(
                ErrorCode::MissingField,
                "contacts",
                "a campaign needs at least one contact",
            ));
        }
        Ok(self.contacts)
    }
}

/// The 422 of invalid rows; its `rows` go with the error (see `respond`).
fn invalid_contacts(bad: Vec<BadRow>, count: usize) -> ApiError {
    let rows: Vec<Value> = bad
        .iter()
        .map(|b| json!({"row": b.row, "code": b.error.code.as_str(), "field": b.error.field, "message": b.error.message}))
        .collect();
    ApiError::field(
        ErrorCode::InvalidContacts,
        "contacts",
        // The rows ride in the message's tail, split off into `rows` by `respond`.
        format!(
            "{count} contact row(s) are invalid; nothing was created{ROWS_MARK}{}",
            Value::Array(rows)
        ),
    )
}

const ROWS_MARK: &str = "\u{0}rows:";

/// An error answer; `invalid_contacts` carries its rows as `error.rows`.
fn respond(e: &ApiError) -> ApiResponse {
    let split = e.message.split_once(ROWS_MARK);
    let Some((message, rows)) = split.filter(|_| e.code == ErrorCode::InvalidContacts) else {
        return ApiResponse::error(e);
    };
    let plain = ApiError {
        message: message.to_string(),
        ..e.clone()
    };
    let mut body = plain.to_json();
    body["error"]["rows"] = serde_json::from_str(rows).unwrap_or(Value::Array(Vec::new()));
    let mut resp = ApiResponse::error(&plain);
    resp.body = body.to_string();
    resp
}

/// One contact from its JSON object text (a list entry, or a CSV row made one).
fn contact_of(text: &str) -> Result<NewContact> {
    let f = parse_object(
        Some("application/json"),
        text.as_bytes(),
        usize::MAX,
        CONTACT_FIELDS,
    )?;
    let phone = f.str_req("phone", 32)?;
    validate::check_e164("phone", &phone)?;
    let name = f.str_opt("name", CALL_NAME_MAX)?;
    let metadata = match f.object_opt("metadata")? {
        None => None,
        Some(m) => {
            let text = Value::Object(m).to_string();
            if text.len() > MAX_METADATA_BYTES {
                return Err(ApiError::field(
                    ErrorCode::MetadataTooLarge,
                    "metadata",
                    format!(
                        "metadata is {} bytes serialized; the limit is {MAX_METADATA_BYTES}",
                        text.len()
                    ),
                ));
            }
            Metadata::from_json_text(&text)
        }
    };
    Ok(NewContact {
        phone,
        name,
        metadata,
    })
}

fn too_many() -> ApiError {
    ApiError::field(
        ErrorCode::OutOfRange,
        "contacts",
        format!("a campaign has at most {MAX_CONTACTS} contacts"),
    )
}

/// The JSON body's `contacts`: each entry checked on its own (row = its
/// 1-based position), every bad one reported.
fn contacts_from_json(f: &Fields, body: &[u8]) -> Result<Vec<NewContact>> {
    if !f.has("contacts") {
        return Err(ApiError::field(
            ErrorCode::MissingField,
            "contacts",
            "contacts is required: a list of {phone, name, metadata}",
        ));
    }
    // Each entry as its own text, so a contact's metadata is kept as written.
    #[derive(serde::Deserialize)]
    struct Raw<'a> {
        #[serde(borrow)]
        contacts: Vec<&'a serde_json::value::RawValue>,
    }
    #[derive(serde::Deserialize)]
    struct Outer<'a> {
        #[serde(borrow)]
        contacts: Option<&'a serde_json::value::RawValue>,
    }
    let outer: Outer = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidJson,
            format!("body is not valid JSON: {e}"),
        )
    })?;
    let list = outer.contacts.map(|r| r.get()).unwrap_or("null");
    let wrapped = format!("{{\"contacts\":{list}}}");
    let entries: Raw = serde_json::from_str(&wrapped).map_err(|_| {
        ApiError::field(
            ErrorCode::InvalidType,
            "contacts",
            "contacts must be a list of objects",
        )
    })?;
    if entries.contacts.len() > MAX_CONTACTS {
        return Err(too_many());
    }
    let mut out = ContactList::default();
    for (i, raw) in entries.contacts.iter().enumerate() {
        out.add(i as u64 + 1, raw.get());
    }
    out.into_contacts()
}

/// A CSV upload: a header row naming `phone` (required), `name`, and any
/// other columns, which become each contact's `metadata` (strings; empty
/// cells left out). Rows are numbered as lines of the file (the header is
/// line 1). Read record by record, never all at once.
fn contacts_from_csv(body: &[u8]) -> Result<Vec<NewContact>> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .trim(csv::Trim::All)
        .from_reader(body);
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| {
            ApiError::field(
                ErrorCode::InvalidValue,
                "contacts",
                format!("the CSV header row could not be read: {e}"),
            )
        })?
        .iter()
        .map(|h| h.trim_start_matches('\u{feff}').to_ascii_lowercase())
        .collect();
    let Some(phone_at) = headers.iter().position(|h| h == "phone") else {
        return Err(ApiError::field(
            ErrorCode::MissingField,
            "phone",
            "the CSV header row must name a 'phone' column",
        ));
    };
    let name_at = headers.iter().position(|h| h == "name");
    let mut out = ContactList::default();
    let mut record = csv::StringRecord::new();
    let mut count = 0usize;
    loop {
        let line = reader.position().line() + 1;
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let row = e.position().map_or(line, |p| p.line());
                out.refuse(
                    row,
                    ApiError::field(
                        ErrorCode::InvalidValue,
                        "contacts",
                        format!("unreadable CSV row: {e}"),
                    ),
                );
                if matches!(e.kind(), csv::ErrorKind::Io(_)) {
                    break;
                }
                continue;
            }
        }
        count += 1;
        if count > MAX_CONTACTS {
            return Err(too_many());
        }
        let row = record.position().map_or(line, |p| p.line());
        let mut contact = Map::new();
        let mut metadata = Map::new();
        for (i, cell) in record.iter().enumerate() {
            if i == phone_at {
                contact.insert("phone".into(), json!(cell));
            } else if Some(i) == name_at {
                if !cell.is_empty() {
                    contact.insert("name".into(), json!(cell));
                }
            } else if !cell.is_empty() {
                let key = headers.get(i).cloned().unwrap_or_default();
                metadata.insert(key, json!(cell));
            }
        }
        if !metadata.is_empty() {
            contact.insert("metadata".into(), Value::Object(metadata));
        }
        out.add(row, &Value::Object(contact).to_string());
    }
    out.into_contacts()
}

/// A CSV upload's settings, from the query string, as the JSON fields they
/// would be (`calling_window` is JSON text; numbers and booleans as written).
fn settings_from_query(query: &str) -> Result<Fields> {
    let map = query_settings(query)?;
    parse_object(
        Some("application/json"),
        Value::Object(map).to_string().as_bytes(),
        usize::MAX,
        CAMPAIGN_SETTINGS,
    )
}

/// A JSON body with the settings of the query string added (the document
/// allows them there for every content type); a setting given in both is
/// 422 `invalid_value`. A body that is not a JSON object is left as it is,
/// for the body's own parser to refuse.
fn with_query_settings(query: &str, body: &[u8]) -> Result<Vec<u8>> {
    let settings = query_settings(query)?;
    let Ok(Value::Object(mut fields)) = serde_json::from_slice::<Value>(body) else {
        return Ok(body.to_vec());
    };
    for (name, value) in settings {
        if fields.get(&name).is_some_and(|v| !v.is_null()) {
            return Err(ApiError::field(
                ErrorCode::InvalidValue,
                &name,
                format!("{name} is given both in the query string and in the body; give it once"),
            ));
        }
        fields.insert(name, value);
    }
    serde_json::to_vec(&Value::Object(fields))
        .map_err(|_| ApiError::new(ErrorCode::InternalError, "the settings could not be merged"))
}

/// The campaign settings of a query string, typed as their JSON fields.
fn query_settings(query: &str) -> Result<Map<String, Value>> {
    let values = parse_query_params(
        query,
        [
            "name",
            "agent_id",
            "calling_window",
            "max_concurrent_calls",
            "calls_per_minute",
            "max_seconds",
            "retries",
            "retry_delay_minutes",
            "record",
        ],
    )?;
    let mut map = Map::new();
    for (name, value) in CAMPAIGN_SETTINGS.iter().zip(values) {
        let Some(v) = value else { continue };
        let typed = match *name {
            "calling_window" => serde_json::from_str(&v).map_err(|_| {
                ApiError::field(
                    ErrorCode::InvalidType,
                    "calling_window",
                    "calling_window must be a JSON object (URL-encoded)",
                )
            })?,
            "record" => match v.as_str() {
                "true" => json!(true),
                "false" => json!(false),
                _ => json!(v),
            },
            "name" | "agent_id" => json!(v),
            _ => v.parse::<i64>().map_or_else(|_| json!(v), |n| json!(n)),
        };
        map.insert(name.to_string(), typed);
    }
    Ok(map)
}

/// The campaign's settings, checked (the agent is resolved by the caller).
struct Settings {
    name: Option<String>,
    agent_id: Option<String>,
    calling_window: Option<crate::calling_window::CallingWindow>,
    max_concurrent_calls: u32,
    calls_per_minute: u32,
    call: CallOptions,
}

fn settings(f: &Fields) -> Result<Settings> {
    let range = |name: &str, (lo, hi, default): (i64, i64, i64)| -> Result<u32> {
        Ok(f.int_opt(name, lo, hi)?.unwrap_or(default) as u32)
    };
    let agent_id = f.str_opt("agent_id", ID_FIELD_MAX)?;
    if let Some(a) = &agent_id {
        if !ids::is_id(a, "agt") {
            return Err(ApiError::field(
                ErrorCode::UnknownAgent,
                "agent_id",
                format!("no agent '{a}'"),
            ));
        }
    }
    Ok(Settings {
        name: f.str_opt("name", CAMPAIGN_NAME_MAX)?,
        agent_id,
        calling_window: match f.object_opt("calling_window")? {
            None => None,
            Some(m) => Some(
                crate::calling_window::parse(&Value::Object(m)).map_err(|(field, why)| {
                    ApiError::field(ErrorCode::InvalidValue, &field, why)
                })?,
            ),
        },
        max_concurrent_calls: range("max_concurrent_calls", MAX_CONCURRENT_CALLS)?,
        calls_per_minute: range("calls_per_minute", CALLS_PER_MINUTE)?,
        call: CallOptions {
            max_seconds: range("max_seconds", MAX_SECONDS)?,
            retries: range("retries", RETRIES)?,
            retry_delay_minutes: range("retry_delay_minutes", RETRY_DELAY_MINUTES)?,
            record: f.bool_opt("record")?.unwrap_or(false),
        },
    })
}

fn is_csv(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|c| c.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("text/csv"))
}

/// The agent a campaign names, or the tenant's default; enabled.
async fn campaign_agent<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    tenant: &Tenant,
    agent_id: Option<&str>,
) -> Result<Agent> {
    let (aid, code) = match agent_id {
        Some(a) => (a, ErrorCode::UnknownAgent),
        None => (
            tenant.default_agent_id.as_deref().ok_or_else(|| {
                ApiError::field(
                    ErrorCode::AgentRequired,
                    "agent_id",
                    "give agent_id: this tenant has no default agent",
                )
            })?,
            ErrorCode::AgentRequired,
        ),
    };
    let agent = get_json::<Agent>(env.kv, &keys::agent(&tenant.id, aid))
        .await?
        .ok_or_else(|| ApiError::field(code, "agent_id", format!("no agent '{aid}'")))?;
    if !agent.enabled {
        return Err(ApiError::field(
            ErrorCode::AgentDisabled,
            "agent_id",
            format!("agent '{}' is disabled", agent.id),
        ));
    }
    Ok(agent)
}

/// `POST /v1/campaigns`: 201 with the campaign (status `created`).
pub(crate) async fn create_campaign<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
    tenant: &Tenant,
) -> Result<ApiResponse> {
    create(env, req, tenant).await.or_else(|e| Ok(respond(&e)))
}

async fn create<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
    tenant: &Tenant,
) -> Result<ApiResponse> {
    if req.body.len() > MAX_CAMPAIGN_BODY_BYTES {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "request body is {} bytes; the limit is {MAX_CAMPAIGN_BODY_BYTES}",
                req.body.len()
            ),
        ));
    }
    let (settings, contacts) = if is_csv(req.content_type.as_deref()) {
        let f = settings_from_query(&req.query)?;
        let s = settings(&f)?;
        (s, contacts_from_csv(&req.body)?)
    } else {
        let merged;
        let body: &[u8] = if req.query.is_empty() {
            &req.body
        } else {
            merged = with_query_settings(&req.query, &req.body)?;
            &merged
        };
        let mut allowed = CAMPAIGN_SETTINGS.to_vec();
        allowed.push("contacts");
        let f = parse_object(
            req.content_type.as_deref(),
            body,
            MAX_CAMPAIGN_BODY_BYTES,
            &allowed,
        )?;
        let s = settings(&f)?;
        (s, contacts_from_json(&f, body)?)
    };
    let agent = campaign_agent(env, tenant, settings.agent_id.as_deref()).await?;
    let id = ids::campaign_id(env.now_ms);
    let now = rfc3339_ms(env.now_ms);
    let record = CampaignRecord {
        spec: CampaignSpec {
            id: id.clone(),
            tenant_id: tenant.id.clone(),
            name: settings.name,
            agent_id: agent.id,
            calling_window: settings.calling_window,
            max_concurrent_calls: settings.max_concurrent_calls,
            calls_per_minute: settings.calls_per_minute,
            call: settings.call,
            created_at: now.clone(),
        },
        status: CampaignStatus::Created,
        total_contacts: 0,
        next_slot_ms: 0,
        started_at: None,
        paused_reason: None,
        cancelled_at: None,
        finished_at: None,
        updated_at: now,
    };
    // Indexed first: a campaign object never exists unlisted (an index
    // entry whose object never got its rows is left out of listings).
    env.calls.index_campaign(&tenant.id, &id).await?;
    let request = CampaignRequest::Create {
        record: Box::new(record),
        contacts,
    };
    match env.campaigns.send(&id, request).await? {
        CampaignAnswer::Campaign { view: Some(view) } => Ok(
            ApiResponse::json(201, &view).with_header("Location", format!("/v1/campaigns/{id}"))
        ),
        a => Err(unexpected(a)),
    }
}

fn unexpected(a: CampaignAnswer) -> ApiError {
    ApiError::new(
        ErrorCode::InternalError,
        format!("unexpected campaign answer {a:?}"),
    )
}

/// `GET /v1/campaigns/{id}`: the campaign with its counts.
pub(crate) async fn get_campaign<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    tenant: &Tenant,
    id: &str,
) -> Result<ApiResponse> {
    Ok(ApiResponse::json(200, &load(env, tenant, id).await?))
}

async fn load<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    tenant: &Tenant,
    id: &str,
) -> Result<Value> {
    if !ids::is_id(id, "cmp") {
        return Err(campaign_not_found(id));
    }
    let request = CampaignRequest::Get {
        tenant_id: tenant.id.clone(),
    };
    match env.campaigns.send(id, request).await? {
        CampaignAnswer::Campaign { view: Some(v) } => Ok(v),
        CampaignAnswer::Campaign { view: None } => Err(campaign_not_found(id)),
        a => Err(unexpected(a)),
    }
}

/// `POST /v1/campaigns/{id}/{start|pause|resume|cancel}`: 200 with the
/// campaign; the same action again answers the same; 409 when its status
/// does not allow it.
pub(crate) async fn control_campaign<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
    tenant: &Tenant,
    id: &str,
    action: Action,
) -> Result<ApiResponse> {
    if !req.body.iter().all(u8::is_ascii_whitespace) {
        crate::api::fields::parse_request(req, &[])?;
    }
    if !ids::is_id(id, "cmp") {
        return Err(campaign_not_found(id));
    }
    let request = CampaignRequest::Control {
        tenant_id: tenant.id.clone(),
        action,
    };
    match env.campaigns.send(id, request).await? {
        CampaignAnswer::Campaign { view: Some(v) } => Ok(ApiResponse::json(200, &v)),
        CampaignAnswer::Campaign { view: None } => Err(campaign_not_found(id)),
        CampaignAnswer::Conflict { status } => Err(ApiError::new(
            ErrorCode::CampaignStateConflict,
            format!(
                "campaign {id} is {}: it cannot {}",
                status.as_str(),
                action.as_str()
            ),
        )),
        a => Err(unexpected(a)),
    }
}

/// `GET /v1/campaigns`: the tenant's campaigns, newest first, each with its counts.
pub(crate) async fn list_campaigns<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
    tenant: &Tenant,
) -> Result<ApiResponse> {
    let [limit, cursor] = parse_query_params(&req.query, ["limit", "cursor"])?;
    let limit = parse_list_limit(limit)?;
    let after = decode_list_cursor(cursor, "")?;
    let ids = env
        .calls
        .list_campaigns(&tenant.id, after.as_deref(), limit + 1)
        .await?;
    let has_more = ids.len() > limit as usize;
    let page = &ids[..ids.len().min(limit as usize)];
    let mut data = Vec::with_capacity(page.len());
    for id in page {
        match load(env, tenant, id).await {
            Ok(v) => data.push(v),
            // Indexed, but its object never got its rows: not a campaign.
            Err(e) if e.code == ErrorCode::CampaignNotFound => {}
            Err(e) => return Err(e),
        }
    }
    let next_cursor = has_more
        .then(|| page.last().map(|id| encode_list_cursor(id.clone(), "")))
        .flatten();
    Ok(ApiResponse::json(
        200,
        &json!({"object": "list", "data": data, "has_more": has_more, "next_cursor": next_cursor}),
    ))
}

/// The idempotency key of a campaign contact's call: one per (campaign,
/// row), with a space, which no client's `Idempotency-Key` may hold.
pub fn contact_idempotency(campaign_id: &str, row: u32) -> IdemRequest {
    IdemRequest {
        key: format!("campaign {campaign_id} {row}"),
        fingerprint: format!("campaign {campaign_id} {row}"),
    }
}

/// What the campaign's object runs on its alarm: leases what the pacing
/// allows now and places each contact's call, reporting every placement
/// back (the object then sets its next alarm).
pub async fn run_alarm<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    campaign_id: &str,
) -> std::result::Result<(), crate::store::StoreError> {
    let CampaignAnswer::Leased { lease: Some(lease) } = env
        .campaigns
        .send(campaign_id, CampaignRequest::Lease)
        .await?
    else {
        return Ok(());
    };
    let lease = *lease;
    let spec = &lease.spec;
    let tenant = get_json::<Tenant>(env.kv, &keys::tenant(&spec.tenant_id)).await?;
    let agent = get_json::<Agent>(env.kv, &keys::agent(&spec.tenant_id, &spec.agent_id)).await?;
    let halt = match (&tenant, &agent) {
        (None, _) => Some("tenant_deleted"),
        (Some(t), _) if t.disabled => Some("tenant_disabled"),
        (_, None) => Some("agent_deleted"),
        (_, Some(a)) if !a.enabled => Some("agent_disabled"),
        _ => None,
    };
    for leased in lease.contacts {
        let placement = match (halt, &tenant, &agent) {
            (Some(reason), _, _) => Placement::Halt {
                reason: reason.to_string(),
            },
            (None, Some(tenant), Some(agent)) => {
                place_contact(env, tenant, agent, spec, leased.row, leased.contact).await
            }
            _ => Placement::Retry,
        };
        let report = CampaignRequest::Placed {
            row: leased.row,
            placement,
        };
        env.campaigns.send(campaign_id, report).await?;
    }
    Ok(())
}

/// Places one contact's call as an ordinary call of the campaign's agent.
async fn place_contact<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    tenant: &Tenant,
    agent: &Agent,
    spec: &CampaignSpec,
    row: u32,
    contact: NewContact,
) -> Placement {
    let input = CreateCallInput {
        phone: contact.phone,
        name: contact.name,
        caller_name: None,
        caller_number: None,
        email: None,
        transcript_email: None,
        metadata: contact.metadata,
        agent_id: Some(agent.id.clone()),
        system_prompt: None,
        voice: None,
        language: None,
        model: None,
        max_seconds: spec.call.max_seconds,
        retries: spec.call.retries,
        retry_delay_minutes: spec.call.retry_delay_minutes,
        schedule_at: None,
        record: spec.call.record,
        reject_over_cap: false,
        reject_outside_window: false,
        engine_api_key: None,
        engine_base_url: None,
        silence_timeout_seconds: None,
        // The agent's prompt is filled from the contact's name and metadata.
        variables: Vec::new(),
        // The agent's answering-machine detection.
        amd: None,
        amd_message: None,
        from_extension: None,
    };
    let origin = CallOrigin {
        campaign: Some((spec.id.clone(), row)),
        ..CallOrigin::default()
    };
    let idem = contact_idempotency(&spec.id, row);
    match place_call(env, tenant, input, agent.clone(), Some(idem), origin).await {
        Ok(record) => Placement::Placed {
            call_id: record.id,
            status: record.status,
        },
        // Not now: the same contact is placed again later, same key.
        Err(e)
            if matches!(
                e.code,
                ErrorCode::StorageUnavailable
                    | ErrorCode::InternalError
                    | ErrorCode::ConcurrencyLimitReached
            ) =>
        {
            Placement::Retry
        }
        Err(e) => Placement::Refused {
            code: e.code.as_str().to_string(),
            message: e.message,
        },
    }
}

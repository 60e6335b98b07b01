//! The text message routes: `POST /v1/messages` (send), `GET
//! /v1/messages/{message_id}`, `GET /v1/messages` (list). Sending goes
//! through [`send_message`], the one path every API (native and dialects)
//! sends a text through.

use crate::api::fields::parse_request;
use crate::api::list::{
    decode_list_cursor, encode_list_cursor, parse_list_filter, parse_list_limit, parse_query_params,
};
use crate::api::validate;
use crate::calls::messages::{InboundVerdict, MessageCreated, MessageFilter, NewMessage};
use crate::dispatch::message_line::QueuedMessage;
use crate::dispatch::port::DispatchQueues;
use crate::error::{ApiError, ErrorCode};
use crate::http::{ApiRequest, ApiResponse};
use crate::ids::{self, rfc3339_ms};
use crate::messages::{MessageDirection, MessageRecord, MessageStatus};
use crate::model::{Metadata, Tenant};
use crate::numbers::{self, PhoneNumber};
use crate::store::{get_json, Kv};
use crate::traffic::IdemRequest;
use serde_json::json;
use voxline_shared::sidecar_link::{
    InboundMessage, InboundMessageReceipt, MAX_MESSAGE_CHARS, PROTOCOL_VERSION,
};

use crate::api::env::{Env, Result};

/// The fields of `POST /v1/messages`.
pub const SEND_MESSAGE_FIELDS: &[&str] = &["from", "to", "body", "metadata"];

/// A text message to send, validated or not (see [`send_message`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SendMessage {
    /// E.164: one of the tenant's numbers that can send texts.
    pub from: String,
    /// E.164.
    pub to: String,
    /// 1 to [`MAX_MESSAGE_CHARS`] characters.
    pub body: String,
    pub metadata: Option<Metadata>,
    /// Makes a retried send return the first message instead of sending twice.
    pub idempotency: Option<IdemRequest>,
}

/// `POST /v1/messages`'s body as a [`SendMessage`] (no idempotency key).
pub fn parse_send_message(req: &ApiRequest) -> Result<SendMessage> {
    let f = parse_request(req, SEND_MESSAGE_FIELDS)?;
    // Long enough for any number; check_e164 says what is wrong with it.
    let from = f.str_req("from", 32)?;
    let to = f.str_req("to", 32)?;
    let body = f.str_req("body", MAX_MESSAGE_CHARS)?;
    let metadata = validate::metadata(&f, &req.body)?;
    Ok(SendMessage {
        from,
        to,
        body,
        metadata,
        idempotency: None,
    })
}

/// Checks what needs no storage: both numbers E.164, the body 1 to
/// [`MAX_MESSAGE_CHARS`] characters.
fn check(m: &SendMessage) -> Result<()> {
    validate::check_e164("from", &m.from)?;
    validate::check_e164("to", &m.to)?;
    if m.body.trim().is_empty() {
        return Err(ApiError::field(
            ErrorCode::InvalidValue,
            "body",
            "'body' must not be blank",
        ));
    }
    let chars = m.body.chars().count();
    if chars > MAX_MESSAGE_CHARS {
        return Err(ApiError::field(
            ErrorCode::ValueTooLong,
            "body",
            format!("body is {chars} characters; the limit is {MAX_MESSAGE_CHARS}"),
        ));
    }
    Ok(())
}

/// Sends a text message from one of `tenant`'s numbers: validates it,
/// checks that `from` is the tenant's and can send texts (KV, the number's
/// record), stores it `queued` in the tenant's call store and queues it in
/// the default region, whose next sidecar poll takes it. The one path every
/// API sends a text through; the `POST` handler is this plus HTTP.
///
/// Errors: `invalid_phone_number`, `invalid_value`/`value_too_long` (body),
/// `unknown_number` (not the tenant's), `number_not_sms_capable`,
/// `idempotency_key_reused`, `storage_unavailable` (the queue is full or did
/// not answer; a message the queue did not answer is kept as `failed`).
pub async fn send_message<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    tenant: &Tenant,
    m: SendMessage,
) -> Result<MessageRecord> {
    check(&m)?;
    let number: Option<PhoneNumber> = get_json(env.kv, &numbers::keys::number(&m.from)).await?;
    // Another tenant's number reads as unknown: nothing says whose it is.
    let number = number.filter(|n| n.tenant_id == tenant.id).ok_or_else(|| {
        ApiError::field(
            ErrorCode::UnknownNumber,
            "from",
            format!("{} is not one of this tenant's numbers", m.from),
        )
    })?;
    if !number.can_send_text() {
        return Err(ApiError::field(
            ErrorCode::NumberNotSmsCapable,
            "from",
            format!(
                "{} cannot send texts (sms_enabled: {}, status: {})",
                m.from,
                number.sms_enabled,
                number.status.as_str()
            ),
        ));
    }
    let now = rfc3339_ms(env.now_ms);
    let record = MessageRecord {
        id: ids::message_id(env.now_ms),
        direction: MessageDirection::Outbound,
        status: MessageStatus::Queued,
        from: m.from,
        to: m.to,
        body: m.body,
        metadata: m.metadata,
        region: env.default_region.to_string(),
        sidecar_id: None,
        sip_code: None,
        failure_reason: None,
        created_at: now.clone(),
        updated_at: now,
        sending_at: None,
        sent_at: None,
        failed_at: None,
        delivered_at: None,
        received_at: None,
        imdn_message_id: None,
        sip_call_id: None,
    };
    let queued = QueuedMessage {
        message_id: record.id.clone(),
        tenant_id: tenant.id.clone(),
        from: record.from.clone(),
        to: record.to.clone(),
        body: record.body.clone(),
        queued_ms: env.now_ms,
    };
    let new = NewMessage {
        record,
        queued,
        idempotency: m.idempotency,
    };
    match env.calls.create_message(&tenant.id, &new).await? {
        MessageCreated::Created { record } | MessageCreated::Existing { record } => Ok(record),
        MessageCreated::KeyReused => Err(ApiError::field(
            ErrorCode::IdempotencyKeyReused,
            "Idempotency-Key",
            "this Idempotency-Key was used with a different request",
        )),
        MessageCreated::QueueFull => Err(ApiError::new(
            ErrorCode::StorageUnavailable,
            "the region's message queue is full; the message was not sent, retry later",
        )),
        MessageCreated::DispatchUnavailable { .. } => Err(ApiError::new(
            ErrorCode::StorageUnavailable,
            "the dispatch queue did not answer; the message was not sent",
        )),
    }
}

/// `POST /v1/messages` once admitted: 202 with the message (`queued`), or
/// the message an `Idempotency-Key` already made.
pub(crate) async fn create_message<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
    tenant: &Tenant,
    idempotency: Option<IdemRequest>,
) -> Result<ApiResponse> {
    let mut m = parse_send_message(req)?;
    m.idempotency = idempotency;
    let record = send_message(env, tenant, m).await?;
    Ok(ApiResponse::json_text(202, record.to_public_json())
        .with_header("Location", format!("/v1/messages/{}", record.id)))
}

fn message_not_found(id: &str) -> ApiError {
    let shown: String = id.chars().take(64).collect();
    ApiError::new(ErrorCode::MessageNotFound, format!("no message '{shown}'"))
}

/// The message, as its store has it (another tenant's id: not found).
pub async fn load_message<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    tenant_id: &str,
    id: &str,
) -> Result<MessageRecord> {
    if !ids::is_id(id, "msg") {
        return Err(message_not_found(id));
    }
    env.calls
        .get_message(tenant_id, id)
        .await?
        .ok_or_else(|| message_not_found(id))
}

pub(crate) async fn get_message<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    tenant: &Tenant,
    id: &str,
) -> Result<ApiResponse> {
    let record = load_message(env, &tenant.id, id).await?;
    Ok(ApiResponse::json_text(200, record.to_public_json()))
}

/// `GET /v1/messages`: newest first, a page at a time, optionally of one
/// direction and some statuses.
pub(crate) async fn list_messages<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
    tenant: &Tenant,
) -> Result<ApiResponse> {
    let [direction, status, limit, cursor] =
        parse_query_params(&req.query, ["direction", "status", "limit", "cursor"])?;
    let directions: Vec<&str> = MessageDirection::ALL.iter().map(|d| d.as_str()).collect();
    let direction = match direction.as_deref() {
        None => None,
        Some(d) => Some(MessageDirection::parse(d).ok_or_else(|| {
            ApiError::field(
                ErrorCode::InvalidParameter,
                "direction",
                format!("direction must be one of {}", directions.join(", ")),
            )
        })?),
    };
    let names: Vec<&str> = MessageStatus::ALL.iter().map(|s| s.as_str()).collect();
    let statuses = parse_list_filter("status", status.as_deref(), &names)?
        .iter()
        .filter_map(|s| MessageStatus::parse(s))
        .collect();
    // The cursor is bound to both filters.
    let filter_text = format!(
        "{}|{}",
        direction.map_or("", MessageDirection::as_str),
        status.unwrap_or_default()
    );
    let limit = parse_list_limit(limit)?;
    let after_id = decode_list_cursor(cursor, &filter_text)?;
    let filter = MessageFilter {
        direction,
        statuses,
        after_id,
        // One row more than asked tells whether another page follows.
        limit: limit + 1,
    };
    let mut data = env.calls.list_messages(&tenant.id, &filter).await?;
    let has_more = data.len() > limit as usize;
    data.truncate(limit as usize);
    let next_cursor = if has_more {
        data.last()
            .and_then(|r| r["id"].as_str())
            .map(|id| encode_list_cursor(id.to_string(), &filter_text))
    } else {
        None
    };
    Ok(ApiResponse::json(
        200,
        &json!({"object": "list", "data": data, "has_more": has_more, "next_cursor": next_cursor}),
    ))
}

/// `POST /v1/sidecar/inbound-messages` once the sidecar link admitted it
/// (signature, fields, nonce): the number it was sent to (KV) names the
/// tenant; unknown, or not taking texts: 404 (the sidecar answers the trunk
/// `404 Not Found`). Else the tenant's call store keeps it (deduped) or
/// applies the delivery report (404 when it names no message of the tenant).
pub(crate) async fn inbound_message<K: Kv, D: DispatchQueues>(
    env: &Env<'_, K, D>,
    req: &ApiRequest,
) -> Result<ApiResponse> {
    // Parsed and checked once already (`sidecar_link::parse_message`).
    let m: InboundMessage = serde_json::from_slice(&req.body).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidType,
            format!("not a valid protocol message: {e}"),
        )
    })?;
    let number: Option<PhoneNumber> = get_json(env.kv, &numbers::keys::number(&m.to)).await?;
    let Some(number) = number.filter(PhoneNumber::can_send_text) else {
        return Err(ApiError::new(
            ErrorCode::NumberNotFound,
            format!("{} is no number that takes texts", m.to),
        ));
    };
    let message_id = match env.calls.inbound_message(&number.tenant_id, &m).await? {
        InboundVerdict::Stored { message_id }
        | InboundVerdict::Duplicate { message_id }
        | InboundVerdict::Reported { message_id } => message_id,
        InboundVerdict::Ignored => String::new(),
        InboundVerdict::NoSuchMessage => {
            return Err(ApiError::new(
                ErrorCode::MessageNotFound,
                "the delivery report names no message sent from this number",
            ))
        }
    };
    let receipt = InboundMessageReceipt {
        protocol_version: PROTOCOL_VERSION,
        message_id,
    };
    let body = serde_json::to_value(receipt).unwrap_or(serde_json::Value::Null);
    Ok(ApiResponse::json(200, &body))
}

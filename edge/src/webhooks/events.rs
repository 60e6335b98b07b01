//! Webhook events: the event a call's state change produces, its payload
//! (the exact body every endpoint receives) and the delivery jobs of one event.

use crate::contacts::{ContactEvent, ContactRecord};
use crate::dialects::Dialect;
use crate::ids::{self, rfc3339_ms};
use crate::messages::{MessageEvent, MessageRecord};
use crate::model::{keys, Agent, CallRecord, Tenant, WebhookEndpoint, WebhookFormat};
use crate::recording_links::RecordingLinks;
use crate::store::{get_json, Kv, StoreError};
use crate::transcript::Transcript;
use crate::webhooks::delivery::{delivery_id, DeliveryJob};
use crate::webhooks::post_call;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use voxline_shared::CallStatus;

/// A webhook event type: the one list of their names (`type` in the
/// payload, what endpoints subscribe to, the OpenAPI `webhooks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WebhookEvent {
    #[serde(rename = "call.queued")]
    CallQueued,
    #[serde(rename = "call.ringing")]
    CallRinging,
    #[serde(rename = "call.answered")]
    CallAnswered,
    #[serde(rename = "call.completed")]
    CallCompleted,
    #[serde(rename = "call.failed")]
    CallFailed,
    /// The agent transferred the callee (issue 16, the `transfer` tool).
    #[serde(rename = "call.transferred")]
    CallTransferred,
    /// A person's leg of a call dialled, rang, answered or ended (issue 16).
    #[serde(rename = "call.leg")]
    CallLeg,
    /// A step of the caller's wait in a queue (issue 16).
    #[serde(rename = "call.queue")]
    CallQueue,
    #[serde(rename = "transcript.saved")]
    TranscriptSaved,
    #[serde(rename = "recording.saved")]
    RecordingSaved,
    #[serde(rename = "message.sent")]
    MessageSent,
    #[serde(rename = "message.failed")]
    MessageFailed,
    #[serde(rename = "message.received")]
    MessageReceived,
    #[serde(rename = "message.delivered")]
    MessageDelivered,
    #[serde(rename = "message.undelivered")]
    MessageUndelivered,
    #[serde(rename = "contact.created")]
    ContactCreated,
    #[serde(rename = "contact.updated")]
    ContactUpdated,
    #[serde(rename = "contact.deleted")]
    ContactDeleted,
    #[serde(rename = "campaign.completed")]
    CampaignCompleted,
}

impl WebhookEvent {
    /// Every event type, in the order of [`WEBHOOK_EVENTS`].
    pub const ALL: [WebhookEvent; 19] = [
        WebhookEvent::CallQueued,
        WebhookEvent::CallRinging,
        WebhookEvent::CallAnswered,
        WebhookEvent::CallCompleted,
        WebhookEvent::CallFailed,
        WebhookEvent::TranscriptSaved,
        WebhookEvent::RecordingSaved,
        WebhookEvent::MessageSent,
        WebhookEvent::MessageFailed,
        WebhookEvent::MessageReceived,
        WebhookEvent::MessageDelivered,
        WebhookEvent::MessageUndelivered,
        WebhookEvent::ContactCreated,
        WebhookEvent::ContactUpdated,
        WebhookEvent::ContactDeleted,
        WebhookEvent::CampaignCompleted,
        WebhookEvent::CallTransferred,
        WebhookEvent::CallLeg,
        WebhookEvent::CallQueue,
    ];

    /// The name on the wire, as serde writes it.
    pub const fn as_str(self) -> &'static str {
        match self {
            WebhookEvent::CallQueued => "call.queued",
            WebhookEvent::CallRinging => "call.ringing",
            WebhookEvent::CallAnswered => "call.answered",
            WebhookEvent::CallCompleted => "call.completed",
            WebhookEvent::CallFailed => "call.failed",
            WebhookEvent::TranscriptSaved => "transcript.saved",
            WebhookEvent::RecordingSaved => "recording.saved",
            WebhookEvent::MessageSent => "message.sent",
            WebhookEvent::MessageFailed => "message.failed",
            WebhookEvent::MessageReceived => "message.received",
            WebhookEvent::MessageDelivered => "message.delivered",
            WebhookEvent::MessageUndelivered => "message.undelivered",
            WebhookEvent::ContactCreated => "contact.created",
            WebhookEvent::ContactUpdated => "contact.updated",
            WebhookEvent::ContactDeleted => "contact.deleted",
            WebhookEvent::CampaignCompleted => "campaign.completed",
            WebhookEvent::CallTransferred => "call.transferred",
            WebhookEvent::CallLeg => "call.leg",
            WebhookEvent::CallQueue => "call.queue",
        }
    }

    /// The text message event this is, if it is one.
    pub fn message_event(self) -> Option<MessageEvent> {
        match self {
            WebhookEvent::MessageSent => Some(MessageEvent::Sent),
            WebhookEvent::MessageFailed => Some(MessageEvent::Failed),
            WebhookEvent::MessageReceived => Some(MessageEvent::Received),
            WebhookEvent::MessageDelivered => Some(MessageEvent::Delivered),
            WebhookEvent::MessageUndelivered => Some(MessageEvent::Undelivered),
            WebhookEvent::CallQueued
            | WebhookEvent::CallRinging
            | WebhookEvent::CallAnswered
            | WebhookEvent::CallCompleted
            | WebhookEvent::CallFailed
            | WebhookEvent::CallTransferred
            | WebhookEvent::CallLeg
            | WebhookEvent::CallQueue
            | WebhookEvent::TranscriptSaved
            | WebhookEvent::RecordingSaved
            | WebhookEvent::ContactCreated
            | WebhookEvent::ContactUpdated
            | WebhookEvent::ContactDeleted
            | WebhookEvent::CampaignCompleted => None,
        }
    }

    /// The contact event this is, if it is one.
    pub fn contact_event(self) -> Option<ContactEvent> {
        match self {
            WebhookEvent::ContactCreated => Some(ContactEvent::Created),
            WebhookEvent::ContactUpdated => Some(ContactEvent::Updated),
            WebhookEvent::ContactDeleted => Some(ContactEvent::Deleted),
            _ => None,
        }
    }

    /// Whether the event is about a call (not a text message, a contact or a campaign).
    pub fn is_about_a_call(self) -> bool {
        self.message_event().is_none()
            && self.contact_event().is_none()
            && self != WebhookEvent::CampaignCompleted
    }

    pub fn parse(s: &str) -> Option<WebhookEvent> {
        WebhookEvent::ALL.into_iter().find(|e| e.as_str() == s)
    }
}

/// A text message's internal event as a native event type.
impl From<MessageEvent> for WebhookEvent {
    fn from(e: MessageEvent) -> Self {
        match e {
            MessageEvent::Sent => WebhookEvent::MessageSent,
            MessageEvent::Failed => WebhookEvent::MessageFailed,
            MessageEvent::Received => WebhookEvent::MessageReceived,
            MessageEvent::Delivered => WebhookEvent::MessageDelivered,
            MessageEvent::Undelivered => WebhookEvent::MessageUndelivered,
        }
    }
}

/// A contact's event as a native event type.
impl From<ContactEvent> for WebhookEvent {
    fn from(e: ContactEvent) -> Self {
        match e {
            ContactEvent::Created => WebhookEvent::ContactCreated,
            ContactEvent::Updated => WebhookEvent::ContactUpdated,
            ContactEvent::Deleted => WebhookEvent::ContactDeleted,
        }
    }
}

impl core::fmt::Display for WebhookEvent {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every event type an endpoint may subscribe to, by name.
pub const WEBHOOK_EVENTS: &[&str] = &{
    let mut names = [""; WebhookEvent::ALL.len()];
    let mut i = 0;
    while i < names.len() {
        names[i] = WebhookEvent::ALL[i].as_str();
        i += 1;
    }
    names
};

/// A webhook event waiting to be turned into deliveries (kept in the call
/// store's outbox until then).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingEvent {
    pub event_id: String,
    pub event_type: WebhookEvent,
    /// The call the event is about, or the text message (`msg_...`) for
    /// the `message.*` events, the contact (`con_...`) for `contact.*`, the
    /// campaign (`cmp_...`) for `campaign.completed`.
    pub call_id: String,
    /// The exact body every endpoint receives.
    pub payload: String,
    pub created_ms: u64,
}

/// The event a state change produces, if any: ringing, answered, and the end
/// (`call.failed` for `failed`, `call.completed` for every other terminal status).
pub fn event_for_change(before: CallStatus, after: &CallRecord) -> Option<WebhookEvent> {
    if before == after.status {
        return None;
    }
    match after.status {
        CallStatus::Ringing => Some(WebhookEvent::CallRinging),
        CallStatus::InProgress => Some(WebhookEvent::CallAnswered),
        CallStatus::Failed if !before.is_terminal() => Some(WebhookEvent::CallFailed),
        s if s.is_terminal() && !before.is_terminal() => Some(WebhookEvent::CallCompleted),
        _ => None,
    }
}

fn seconds_between(from: Option<&str>, to: Option<&str>) -> Option<f64> {
    let (a, b) = (
        ids::parse_rfc3339_utc_ms(from?)?,
        ids::parse_rfc3339_utc_ms(to?)?,
    );
    Some(b.saturating_sub(a) as f64 / 1000.0)
}

/// The event body: `{type, timestamp, data}` as Standard Webhooks suggests.
/// `data` has one shape for every call event; durations are null until the
/// call ends (its final status is `status`), `recording_url` always (the
/// recording arrives later, with `recording.saved`).
pub fn call_event_payload(
    event_type: WebhookEvent,
    event_id: &str,
    record: &CallRecord,
    now_ms: u64,
) -> String {
    let ended = record.status.is_terminal();
    let ring_start = record
        .ringing_at
        .as_deref()
        .or(record.dispatched_at.as_deref());
    let ring_end = record.answered_at.as_deref().or(record.ended_at.as_deref());
    let ring_seconds = if ended || record.answered_at.is_some() {
        seconds_between(ring_start, ring_end)
    } else {
        None
    };
    let talk_seconds = if ended {
        seconds_between(record.answered_at.as_deref(), record.ended_at.as_deref())
    } else {
        None
    };
    let data = json!({
        "object": "call",
        "id": record.id,
        "status": record.status,
        "direction": record.direction,
        "ended_reason": record.ended_reason,
        "sip_code": record.sip_code,
        "attempts": record.attempts,
        "phone": record.phone,
        "name": record.name,
        "caller_name": record.caller_name,
        "caller_number": record.caller_number,
        "campaign_id": record.campaign_id,
        "agent_id": record.agent_id,
        "schedule_at": record.schedule_at,
        "created_at": record.created_at,
        "dispatched_at": record.dispatched_at,
        "ringing_at": record.ringing_at,
        "answered_at": record.answered_at,
        "ended_at": record.ended_at,
        "ring_seconds": ring_seconds,
        "talk_seconds": talk_seconds,
        // Answering-machine detection's verdict (null: not asked, or not
        // answered).
        "answered_by": record.answered_by,
        "amd_decision_ms": record.amd_decision_ms,
        // Complete once the call has ended (`transcript.saved` says so).
        "transcript_url": format!("/v1/calls/{}/transcript", record.id),
        // The recording is uploaded after the call ends: `recording.saved` carries it.
        "recording_url": null,
        // The post-call analysis, when the agent asks for one (set as the call ends).
        "analysis": record.analysis,
    });
    // The client's metadata goes out as its own JSON text (see `model::Metadata`).
    let Value::Object(fields) = data else {
        return event_payload(event_type, event_id, now_ms, data);
    };
    let data = crate::model::object_with_raw(
        &fields,
        "metadata",
        record.metadata.as_ref().map(crate::model::Metadata::raw),
    );
    match serde_json::value::RawValue::from_string(data) {
        Ok(raw) => envelope(event_type, event_id, now_ms, &raw),
        Err(_) => event_payload(event_type, event_id, now_ms, Value::Object(fields)),
    }
}

/// `call.transferred`'s body: the call (as [`call_event_payload`] gives
/// it) with `transfer`: where the callee was handed (`destination`), how
/// (`method`: `refer`, the trunk took the call over; `bridge`, the sidecar
/// bridges a second leg) and when (`at_offset_ms` from the answer).
pub fn call_transferred_payload(
    event_id: &str,
    record: &CallRecord,
    now_ms: u64,
    transfer: Value,
) -> String {
    call_step_payload(
        WebhookEvent::CallTransferred,
        event_id,
        record,
        now_ms,
        "transfer",
        transfer,
    )
}

/// A call event about one step of the call rather than its status
/// (`call.transferred`, `call.leg`, `call.queue`): the call, as
/// [`call_event_payload`] gives it, with the step under `key` in `data`.
pub fn call_step_payload(
    event_type: WebhookEvent,
    event_id: &str,
    record: &CallRecord,
    now_ms: u64,
    key: &str,
    step: Value,
) -> String {
    let body = call_event_payload(event_type, event_id, record, now_ms);
    match serde_json::from_str::<Value>(&body) {
        Ok(mut v) => {
            v["data"][key] = step;
            v.to_string()
        }
        Err(_) => body,
    }
}

/// `call.leg`'s step (`data.leg`): a person's leg (issue 16). `user_pk`: the
/// person rung (null: a number dialled, `destination`); `sip_code` and
/// `talk_ms` at `ended`.
pub fn leg_json(
    step: voxline_shared::sidecar_link::LegStep,
    user_pk: Option<u64>,
    destination: Option<&str>,
    sip_code: Option<u16>,
    talk_ms: u64,
) -> Value {
    json!({"step": step, "user_pk": user_pk, "destination": destination,
           "sip_code": sip_code, "talk_ms": talk_ms})
}

/// `call.queue`'s step (`data.queue`): the caller's wait (issue 16), in the
/// queue `queue_pk` (its `name` when the call knows it).
pub fn queue_json(
    step: voxline_shared::sidecar_link::QueueStep,
    queue_pk: u64,
    name: Option<&str>,
    position: Option<u32>,
    wait_ms: u64,
) -> Value {
    json!({"step": step, "queue_pk": queue_pk, "name": name,
           "position": position, "wait_ms": wait_ms})
}

/// The native body of a text message event: the common envelope with the
/// public message record (as `GET /v1/messages/{id}` shows it) as `data`.
/// Another format renders from the same [`PendingEvent`]: its
/// `event_type.message_event()` and the record in this payload's `data`.
pub fn message_event_payload(
    event: MessageEvent,
    event_id: &str,
    record: &MessageRecord,
    now_ms: u64,
) -> String {
    let data = record.to_public_json();
    match serde_json::value::RawValue::from_string(data) {
        Ok(raw) => envelope(event.into(), event_id, now_ms, &raw),
        Err(_) => event_payload(event.into(), event_id, now_ms, record.to_public()),
    }
}

/// The native body of a contact event: the common envelope with the public
/// contact (as `GET /v1/contacts/{id}` shows it; for `contact.deleted` as it
/// was) as `data`, plus, for `contact.updated`, `updated_fields`: the names
/// of the fields whose value changed. Voice360 endpoints are rendered from
/// this payload's `data` (`post_call::voice360_contact_body`).
pub fn contact_event_payload(
    event: ContactEvent,
    event_id: &str,
    record: &ContactRecord,
    updated_fields: &[&str],
    now_ms: u64,
) -> String {
    let mut data = record.to_public_json();
    if event == ContactEvent::Updated {
        if let (Ok(Value::Object(mut fields)), Ok(names)) = (
            serde_json::from_str::<Value>(&data),
            serde_json::to_value(updated_fields),
        ) {
            // The record's metadata goes back in as its own text.
            fields.remove("metadata");
            fields.insert("updated_fields".into(), names);
            data = crate::model::object_with_raw(
                &fields,
                "metadata",
                record.metadata.as_ref().map(crate::model::Metadata::raw),
            );
        }
    }
    match serde_json::value::RawValue::from_string(data) {
        Ok(raw) => envelope(event.into(), event_id, now_ms, &raw),
        Err(_) => event_payload(event.into(), event_id, now_ms, record.to_public()),
    }
}

/// One job per endpoint of the tenant that is enabled and wants the event
/// (a test helper: calls' events go through their store's outbox).
#[cfg(test)]
pub async fn emit(
    kv: &impl Kv,
    tenant_id: &str,
    event_type: WebhookEvent,
    record: &CallRecord,
    now_ms: u64,
) -> Result<Vec<DeliveryJob>, StoreError> {
    /// The one call the event is about, without a transcript.
    struct OneCall<'a>(&'a CallRecord);
    impl CallSource for OneCall<'_> {
        fn record(&self, call_id: &str) -> Result<Option<CallRecord>, StoreError> {
            Ok((self.0.id == call_id).then(|| self.0.clone()))
        }
        fn transcript(&self, _: &str) -> Result<Transcript, StoreError> {
            Ok(Transcript::default())
        }
    }
    let event_id = ids::random_id("evt");
    let payload = call_event_payload(event_type, &event_id, record, now_ms);
    let event = PendingEvent {
        event_id,
        event_type,
        call_id: record.id.clone(),
        payload,
        created_ms: now_ms,
    };
    let endpoints = endpoints(kv, tenant_id).await?;
    jobs_for_event(
        kv,
        tenant_id,
        &endpoints,
        &event,
        &OneCall(record),
        None,
        now_ms,
    )
    .await
}

/// The envelope every event shares: `{id, type, timestamp, data}`.
pub fn event_payload(event_type: WebhookEvent, event_id: &str, now_ms: u64, data: Value) -> String {
    json!({"id": event_id, "type": event_type, "timestamp": rfc3339_ms(now_ms), "data": data})
        .to_string()
}

/// [`event_payload`] with `data` already JSON text, kept verbatim.
fn envelope(
    event_type: WebhookEvent,
    event_id: &str,
    now_ms: u64,
    data: &serde_json::value::RawValue,
) -> String {
    let head = json!({"id": event_id, "type": event_type, "timestamp": rfc3339_ms(now_ms)});
    let Value::Object(head) = head else {
        return String::new();
    };
    crate::model::object_with_raw(&head, "data", Some(data))
}

/// What making an event's deliveries may read about its call: the call's
/// store (the `CallStore` Durable Object), asked only when an endpoint needs
/// it (an agent filter, or a dialect body to render).
pub trait CallSource {
    fn record(&self, call_id: &str) -> Result<Option<CallRecord>, StoreError>;
    fn transcript(&self, call_id: &str) -> Result<Transcript, StoreError>;
}

/// The tenant's enabled webhook endpoints (configuration, read from KV).
pub async fn endpoints(kv: &impl Kv, tenant_id: &str) -> Result<Vec<WebhookEndpoint>, StoreError> {
    let mut all: Vec<WebhookEndpoint> =
        crate::store::get_all_json(kv, &keys::webhooks_prefix(tenant_id)).await?;
    all.retain(|e| e.enabled);
    Ok(all)
}

/// The events a dialect endpoint is sent: the call's end, which is exactly
/// one of these per call ([`event_for_change`] emits it once, when the record
/// first reaches a terminal status; a call the dispatch queue never took ends
/// with `call.failed` at creation).
pub fn is_post_call_event(event: WebhookEvent) -> bool {
    matches!(
        event,
        WebhookEvent::CallCompleted | WebhookEvent::CallFailed
    )
}

/// The transcript email of a call's end: one job when `event` is the end
/// ([`is_post_call_event`], emitted once per call) and the call was placed
/// with a `transcript_email`; rendered from the record and transcript as
/// they are now, like the dialect bodies. None for a call gone from its store.
pub fn mail_job(
    tenant_id: &str,
    event: &PendingEvent,
    calls: &impl CallSource,
    now_ms: u64,
) -> Result<Option<crate::mail::MailJob>, StoreError> {
    if !is_post_call_event(event.event_type) {
        return Ok(None);
    }
    let Some(record) = calls.record(&event.call_id)? else {
        return Ok(None);
    };
    let Some(to) = record.transcript_email.as_deref() else {
        return Ok(None);
    };
    let transcript = calls.transcript(&record.id)?;
    let call = post_call::ended_call(&record, &transcript, "", None, now_ms);
    Ok(Some(crate::mail::transcript_job(
        tenant_id,
        &event.event_id,
        &call,
        to,
        now_ms,
    )))
}

/// Whether `endpoint` is sent `event` at all, before its agent filter: a
/// native endpoint the events it subscribed to, a dialect endpoint the call's
/// end only.
fn wants(endpoint: &WebhookEndpoint, event: WebhookEvent) -> bool {
    match endpoint.format {
        WebhookFormat::Native => endpoint.wants(event.as_str()),
        WebhookFormat::BuildVoiceAi | WebhookFormat::Calldock | WebhookFormat::Codeb => {
            endpoint.enabled && is_post_call_event(event)
        }
        WebhookFormat::Voice360 => {
            use crate::dialects::voice360::EventType as T;
            let listens = endpoint.voice360_event.as_deref().and_then(T::parse);
            endpoint.enabled
                && match listens {
                    Some(T::UserDial) => event == WebhookEvent::CallQueued,
                    // An inbound call is created ringing: its one `call.ringing`.
                    Some(T::IncomingExternalCall) => event == WebhookEvent::CallRinging,
                    // Rendered from the step in the native payload; a step
                    // with no Voice360 event renders nothing.
                    Some(
                        T::UserAnswer
                        | T::QueueMemberDial
                        | T::QueueMemberAnswer
                        | T::QueueMemberDialHangup,
                    ) => event == WebhookEvent::CallLeg,
                    Some(
                        T::QueueEnter
                        | T::QueueHangup
                        | T::QueueNoAnswer
                        | T::QueueHangupTimeout
                        | T::QueueHangupAbandoned,
                    ) => event == WebhookEvent::CallQueue,
                    Some(T::UserHangup | T::CallEnded) => is_post_call_event(event),
                    Some(T::TranscriptionFinished) => event == WebhookEvent::TranscriptSaved,
                    Some(T::SmsSent) => event == WebhookEvent::MessageSent,
                    Some(T::SmsReceived) => event == WebhookEvent::MessageReceived,
                    Some(T::SmsDelivered) => event == WebhookEvent::MessageDelivered,
                    Some(T::ContactCreated) => event == WebhookEvent::ContactCreated,
                    Some(T::ContactUpdated) => event == WebhookEvent::ContactUpdated,
                    Some(T::ContactDeleted) => event == WebhookEvent::ContactDeleted,
                    _ => false,
                }
        }
    }
}

/// The `account_id` of Voice360's webhook bodies: the tenant's
/// `voice360_account`, else its id.
async fn voice360_account(kv: &impl Kv, tenant_id: &str) -> Result<String, StoreError> {
    let tenant = get_json::<Tenant>(kv, &keys::tenant(tenant_id)).await?;
    Ok(tenant
        .and_then(|t| t.voice360_account)
        .unwrap_or_else(|| tenant_id.to_string()))
}

/// The `tenant` of CodeB's webhook bodies.
async fn codeb_tenant(kv: &impl Kv, tenant_id: &str) -> Result<String, StoreError> {
    let tenant = get_json::<Tenant>(kv, &keys::tenant(tenant_id)).await?;
    Ok(tenant.map_or_else(
        || tenant_id.to_string(),
        |t| crate::model::codeb_tenant_name(&t),
    ))
}

/// The deliveries of one event: a job per endpoint of `endpoints` that wants
/// it and whose agent filter (if any) the call passes (CodeB's: two for an
/// answered call with a transcript). Native endpoints get the event's own
/// payload; dialect endpoints get their dialect's bodies, rendered here once
/// per format from the call's record and transcript as
/// they are now (the transcript turns and summary are stored before the end:
/// the sidecar reports them first and the region's queue forwards them
/// first). A dialect delivery of a call gone from its store is not made.
pub async fn jobs_for_event(
    kv: &impl Kv,
    tenant_id: &str,
    endpoints: &[WebhookEndpoint],
    event: &PendingEvent,
    calls: &impl CallSource,
    links: Option<&RecordingLinks>,
    now_ms: u64,
) -> Result<Vec<DeliveryJob>, StoreError> {
    let wanted: Vec<&WebhookEndpoint> = endpoints
        .iter()
        .filter(|e| wants(e, event.event_type))
        .collect();
    let needs_record = wanted
        .iter()
        .any(|e| e.agent_id.is_some() || e.format != WebhookFormat::Native);
    let record = if needs_record {
        calls.record(&event.call_id)?
    } else {
        None
    };
    // Dialect bodies, rendered at most once per format.
    let mut rendered: Vec<(WebhookFormat, Vec<String>)> = Vec::new();
    let mut ended: Option<(Transcript, String)> = None;
    let mut codeb_name: Option<String> = None;
    let mut account_id: Option<String> = None;
    let mut jobs = Vec::new();
    for endpoint in wanted {
        if let Some(agent) = &endpoint.agent_id {
            if record.as_ref().map(|r| &r.agent_id) != Some(agent) {
                continue;
            }
        }
        let is_message = event.event_type.message_event().is_some();
        let is_contact = event.event_type.contact_event().is_some();
        let payloads = match (endpoint.format, &record) {
            (WebhookFormat::Native, _) => vec![event.payload.clone()],
            // A text message: rendered from the public record in the native payload.
            (WebhookFormat::Voice360, _) if is_message => {
                if account_id.is_none() {
                    account_id = Some(voice360_account(kv, tenant_id).await?);
                }
                let event_type = endpoint.voice360_event.as_deref().unwrap_or("");
                let account = account_id.as_deref().unwrap_or(tenant_id);
                post_call::voice360_message_body(event_type, &event.payload, account, now_ms)
                    .into_iter()
                    .collect()
            }
            // A contact: rendered from the public contact in the native payload.
            (WebhookFormat::Voice360, _) if is_contact => {
                if account_id.is_none() {
                    account_id = Some(voice360_account(kv, tenant_id).await?);
                }
                let event_type = endpoint.voice360_event.as_deref().unwrap_or("");
                let account = account_id.as_deref().unwrap_or(tenant_id);
                post_call::voice360_contact_body(event_type, &event.payload, account, now_ms)
                    .into_iter()
                    .collect()
            }
            (_, None) => continue,
            // An inbound call created (its one `call.ringing`): rendered
            // from the call's fixed facts (caller, number, id).
            (WebhookFormat::Voice360, Some(record))
                if event.event_type == WebhookEvent::CallRinging =>
            {
                if account_id.is_none() {
                    account_id = Some(voice360_account(kv, tenant_id).await?);
                }
                let event_type = endpoint.voice360_event.as_deref().unwrap_or("");
                let account = account_id.as_deref().unwrap_or(tenant_id);
                post_call::voice360_incoming_body(event_type, record, account, now_ms)
                    .into_iter()
                    .collect()
            }
            // A leg's or a queue's step: rendered from the step in the
            // native payload (as it was when the sidecar reported it) and
            // the call's fixed facts (caller, number, queue).
            (WebhookFormat::Voice360, Some(record))
                if matches!(
                    event.event_type,
                    WebhookEvent::CallLeg | WebhookEvent::CallQueue
                ) =>
            {
                if account_id.is_none() {
                    account_id = Some(voice360_account(kv, tenant_id).await?);
                }
                let event_type = endpoint.voice360_event.as_deref().unwrap_or("");
                let account = account_id.as_deref().unwrap_or(tenant_id);
                post_call::voice360_step_bodies(event_type, &event.payload, record, account, now_ms)
            }
            (format, Some(record)) => {
                if let (Some(found), false) = (
                    rendered.iter().find(|(f, _)| *f == format),
                    format == WebhookFormat::Voice360,
                ) {
                    let (_, bodies) = found;
                    bodies.clone()
                } else {
                    if ended.is_none() {
                        let agent_name =
                            get_json::<Agent>(kv, &keys::agent(tenant_id, &record.agent_id))
                                .await?
                                .map(|a| a.name)
                                .unwrap_or_default();
                        ended = Some((calls.transcript(&record.id)?, agent_name));
                    }
                    let Some((transcript, agent_name)) = &ended else {
                        continue;
                    };
                    if format == WebhookFormat::Codeb && codeb_name.is_none() {
                        codeb_name = Some(codeb_tenant(kv, tenant_id).await?);
                    }
                    if format == WebhookFormat::Voice360 && account_id.is_none() {
                        account_id = Some(voice360_account(kv, tenant_id).await?);
                    }
                    let recording_url = post_call::recording_url(links, tenant_id, record, now_ms);
                    let call = post_call::ended_call(
                        record,
                        transcript,
                        agent_name,
                        recording_url,
                        now_ms,
                    );
                    if format == WebhookFormat::Voice360 {
                        // One event type per endpoint: rendered per endpoint.
                        let event_type = endpoint.voice360_event.as_deref().unwrap_or("");
                        let account = account_id.as_deref().unwrap_or(tenant_id);
                        post_call::voice360_body(event_type, &call, record, account, now_ms)
                            .into_iter()
                            .collect()
                    } else {
                        let bodies = post_call::bodies(
                            format,
                            &call,
                            codeb_name.as_deref().unwrap_or(tenant_id),
                            now_ms,
                        );
                        rendered.push((format, bodies.clone()));
                        bodies
                    }
                }
            }
        };
        // BuildVoiceAI signs with the credential that placed the call.
        let placed_with_key = match (
            endpoint.format,
            record.as_ref().and_then(|r| r.placed_with.as_ref()),
        ) {
            (WebhookFormat::BuildVoiceAi, Some(p)) if p.dialect == Dialect::BuildVoiceAi => {
                Some(p.key_id.clone())
            }
            _ => None,
        };
        // One job per body (CodeB's two share the event: its id and type).
        jobs.extend(payloads.into_iter().map(|payload| {
            DeliveryJob {
                tenant_id: tenant_id.to_string(),
                delivery_id: delivery_id(now_ms),
                endpoint_id: endpoint.id.clone(),
                event_id: event.event_id.clone(),
                event_type: event.event_type.to_string(),
                payload,
                // A text message's or a contact's event is about no call.
                call_id: event
                    .event_type
                    .is_about_a_call()
                    .then(|| event.call_id.clone()),
                created_at_ms: event.created_ms,
                attempt: 1,
                step: 0,
                due_at_ms: now_ms,
                manual: false,
                format: endpoint.format,
                placed_with_key: placed_with_key.clone(),
            }
        }));
    }
    Ok(jobs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_are_what_serde_writes_and_parse_reads() {
        assert_eq!(WEBHOOK_EVENTS.len(), WebhookEvent::ALL.len());
        for (event, name) in WebhookEvent::ALL.into_iter().zip(WEBHOOK_EVENTS) {
            assert_eq!(serde_json::to_value(event).unwrap(), *name);
            assert_eq!(WebhookEvent::parse(name), Some(event));
            assert_eq!(event.to_string(), *name);
        }
        assert_eq!(WebhookEvent::parse("call.dialing"), None);
        // The payload's `type` is the name.
        let p: Value = serde_json::from_str(&event_payload(
            WebhookEvent::CallQueued,
            "evt_1",
            0,
            json!({}),
        ))
        .unwrap();
        assert_eq!(p["type"], "call.queued");
        // An outbox row written when the type was a string reads back typed.
        let row = r#"{"event_id":"evt_1","event_type":"transcript.saved","call_id":"c","payload":"{}","created_ms":1}"#;
        let event: PendingEvent = serde_json::from_str(row).unwrap();
        assert_eq!(event.event_type, WebhookEvent::TranscriptSaved);
        assert_eq!(serde_json::to_string(&event).unwrap(), row);
    }
}

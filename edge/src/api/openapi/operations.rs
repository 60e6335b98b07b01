//! The operations: one per [`RouteId`] (an exhaustive match, so a new route
//! does not compile until it is documented), and the webhook events.

use super::builders::*;
use super::patterns::*;
use crate::api::router::RouteId;
use crate::error::ErrorCode;
use crate::limits::{LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX};
use crate::messages::MessageStatus;
use crate::recording_links::LINK_LIFETIME_SECONDS;
use crate::traffic;
use crate::webhooks::events::WebhookEvent;
use serde_json::{json, Map, Value};
use voxline_shared::sidecar_link::MAX_MESSAGE_CHARS;

/// What the edge POSTs to webhook endpoints (OpenAPI 3.1 `webhooks`).
pub(super) fn webhook_operations() -> Value {
    let mut out = Map::new();
    for event in WebhookEvent::ALL {
        let (schema, what) = match event {
            WebhookEvent::TranscriptSaved => ("WebhookTranscriptEvent", "Sent once when an answered call has ended, with the whole transcript."),
            WebhookEvent::RecordingSaved => ("WebhookRecordingEvent", "Sent when a call's recording (`record: true`) has been uploaded and can be downloaded."),
            WebhookEvent::CallRinging => ("WebhookCallEvent", "A change of the call's status: ringing. An inbound call (`direction: inbound`) is created ringing, so its one `call.ringing` is sent when the edge creates it (a number routed to an AI agent, a person or a queue), before anyone answers: `phone` the caller, `caller_number` our number called (Voice360's `INCOMING_EXTERNAL_CALL`). A refused inbound call creates no call and sends nothing."),
            WebhookEvent::CallQueued
            | WebhookEvent::CallAnswered
            | WebhookEvent::CallCompleted
            | WebhookEvent::CallFailed => ("WebhookCallEvent", "A change of the call's status."),
            WebhookEvent::CallTransferred => ("WebhookCallEvent", "The agent (its `transfer` tool) or the API (`POST /v1/calls/{call_id}/transfer`) transferred the callee, once the other side answered: the call, with `transfer` (`destination`: the number, or the person's extension; `extension`: the person's, null for a number; `method` `refer` (the trunk took the call over), `bridge` (the sidecar relays the callee and the other side, recorded) or `warm` (bridged after the person heard a briefing); `mode` `blind` or `warm`; `transfer_id`: the API's `xfr_...`, null for the agent's tool; `at_offset_ms` from the answer). The call ends later with `ended_reason` `transferred`."),
            WebhookEvent::CallLeg => ("WebhookCallEvent", "A person's leg of the call (issue 16), as the sidecar reports it: the call, with `leg` (`step` `dialing`, `ringing`, `answered` or `ended`; `user_pk`, the directory person rung: the person a number routes to, a queue member, the click-to-call's person, or null for a number dialled (`destination`: a forward, the click-to-call's callee); `sip_code`, the leg's final SIP code at `ended` if it had one; `talk_ms`, how long the leg talked, 0 before `ended` or unanswered). A person who answers an inbound call is the call's from then on (their availability)."),
            WebhookEvent::CallQueue => ("WebhookCallEvent", "A step of the caller's wait in a queue (issue 16; the number routes to a queue): the call, with `queue` (`step` `entered` (answered, waiting), `announced` (their position said again), `no_answer` (a ring round nobody answered), `connected` (a member answered: the caller leaves the queue), `timed_out` (the longest wait passed: the overflow follows) or `abandoned` (the caller hung up waiting); `queue_pk`; `name`, the queue's; `position`, the caller's (1: next) at `entered` and `announced`, else null; `wait_ms`, since the caller entered)."),
            WebhookEvent::MessageSent => ("WebhookMessageEvent", "The trunk accepted an outbound text message (SIP 2xx): `status` `sent`. Not yet delivered: `message.delivered` follows if the carrier reports delivery."),
            WebhookEvent::MessageFailed => ("WebhookMessageEvent", "An outbound text message could not be sent: `status` `failed`, with `failure_reason` and, when the trunk answered, `sip_code`."),
            WebhookEvent::MessageReceived => ("WebhookMessageEvent", "A text message to one of the tenant's numbers (`sms_enabled`) arrived: `direction` `inbound`, `status` `received`."),
            WebhookEvent::MessageDelivered => ("WebhookMessageEvent", "The carrier reported an outbound text message delivered (an IMDN delivery notification, RFC 5438): `status` `delivered`."),
            WebhookEvent::MessageUndelivered => ("WebhookMessageEvent", "The carrier reported an outbound text message not delivered (IMDN `failed`, `forbidden` or `error`, in `failure_reason`): `status` `undelivered`."),
            WebhookEvent::ContactCreated => ("WebhookContactEvent", "A contact was created (`POST /v1/contacts`): the contact."),
            WebhookEvent::ContactUpdated => ("WebhookContactEvent", "A contact's values changed (`PATCH /v1/contacts/{contact_id}`): the contact as it is now, with `updated_fields`, the fields that changed."),
            WebhookEvent::ContactDeleted => ("WebhookContactEvent", "A contact was deleted: the contact as it was."),
            WebhookEvent::CampaignCompleted => ("WebhookCampaignEvent", "Sent once when a campaign has finished: every contact dialled and every call ended (`status` `completed`), or cancelled once its last call in flight has ended (`status` `cancelled`); `data` is the campaign with its final `counts`. Endpoints with an `agent_id` filter do not receive it."),
        };
        out.insert(event.to_string(), json!({"post": {
            "operationId": format!("webhook_{}", event.as_str().replace('.', "_")),
            "summary": format!("`{event}` event"),
            "description": format!("{what} Signed per Standard Webhooks v1: `webhook-id` (the event id), `webhook-timestamp` (unix seconds of the attempt), \
`webhook-signature` (`v1,<base64 HMAC-SHA256>` of `{{id}}.{{timestamp}}.{{body}}` with the base64-decoded part of the `whsec_` secret; during a \
rotation's overlap two signatures, space-separated). Delivered at least once through a queue: any 2xx ends it; anything else (or no answer \
within 15 s) is retried per the endpoint's `retry_schedule`, honouring a longer `Retry-After`; 410 Gone disables the endpoint. \
Redirects are not followed."),
            "requestBody": {"required": true, "content": {"application/json": {"schema": schema_ref(schema)}}},
            "responses": {"2XX": {"description": "Received; no further attempts."}, "410": {"description": "Gone: the endpoint is disabled."}}
        }}));
    }
    let delivered = "Delivered at least once through a queue: any 2xx ends it; 410 Gone disables the endpoint; redirects are not followed.";
    out.insert("buildvoiceai.call.completed".into(), json!({"post": {
        "operationId": "webhook_buildvoiceai_call_completed",
        "summary": "BuildVoiceAI `call.completed` (endpoint `format` `buildvoiceai`)",
        "description": format!("Sent once per call of the tenant (or of the endpoint's `agent_id`), when it has ended, answered or not. \
`X-Signature`: hex HMAC-SHA256 of the raw body keyed with the token of the BuildVoiceAI credential that placed the call (if it was revoked \
since, or the call was placed otherwise, the tenant's newest unrevoked BuildVoiceAI credential; with none, nothing is sent and the attempt \
fails). Retried 30 s, 5 min and 30 min after a failure (no answer within 10 s is one), then dropped. {delivered}"),
        "parameters": [{"name": "X-Signature", "in": "header", "required": true, "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}],
        "requestBody": {"required": true, "content": {"application/json": {"schema": schema_ref("BuildVoiceAiCallCompleted")}}},
        "responses": {"2XX": {"description": "Received; no further attempts."}, "410": {"description": "Gone: the endpoint is disabled."}}
    }}));
    out.insert("calldock.post_call".into(), json!({"post": {
        "operationId": "webhook_calldock_post_call",
        "summary": "Calldock `post_call` (endpoint `format` `calldock`)",
        "description": format!("Sent once per call of the tenant (or of the endpoint's `agent_id`), when it has ended, answered or not. \
`X-Calldock-Event: post_call`; `X-Calldock-Signature`: hex HMAC-SHA256 of the body keyed with the endpoint's secret string (UTF-8 bytes), \
the body written as `JSON.stringify` writes it. Retried per the endpoint's `retry_schedule`, each attempt waiting at most 15 s. {delivered}"),
        "parameters": [
            {"name": "X-Calldock-Event", "in": "header", "required": true, "schema": {"const": "post_call"}},
            {"name": "X-Calldock-Signature", "in": "header", "required": true, "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}
        ],
        "requestBody": {"required": true, "content": {"application/json": {"schema": schema_ref("CalldockPostCall")}}},
        "responses": {"2XX": {"description": "Received; no further attempts."}, "410": {"description": "Gone: the endpoint is disabled."}}
    }}));
    let codeb_signature = || json!({"name": "X-CodeB-Signature", "in": "header", "required": true, "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"}});
    let codeb_signed = "`X-CodeB-Signature`: hex HMAC-SHA256 of the raw body keyed with the endpoint's secret string (UTF-8 bytes), the subscription \
secret; after a rotation the new secret signs at once. Retried per the endpoint's `retry_schedule`, each attempt waiting at most 15 s.";
    out.insert("codeb.outbound-ai.finished".into(), json!({"post": {
        "operationId": "webhook_codeb_outbound_ai_finished",
        "summary": "CodeB `outbound-ai.finished` (endpoint `format` `codeb`)",
        "description": format!("Sent once per call of the tenant (or of the endpoint's `agent_id`), when it has ended, answered or not. {codeb_signed} {delivered}"),
        "parameters": [codeb_signature()],
        "requestBody": {"required": true, "content": {"application/json": {"schema": schema_ref("CodebOutboundAiFinished")}}},
        "responses": {"2XX": {"description": "Received; no further attempts."}, "410": {"description": "Gone: the endpoint is disabled."}}
    }}));
    out.insert("codeb.transcript.saved".into(), json!({"post": {
        "operationId": "webhook_codeb_transcript_saved",
        "summary": "CodeB `transcript.saved` (endpoint `format` `codeb`)",
        "description": format!("Sent with `outbound-ai.finished` (a delivery of its own) when the call was answered and has at least one transcript turn. {codeb_signed} {delivered}"),
        "parameters": [codeb_signature()],
        "requestBody": {"required": true, "content": {"application/json": {"schema": schema_ref("CodebTranscriptSaved")}}},
        "responses": {"2XX": {"description": "Received; no further attempts."}, "410": {"description": "Gone: the endpoint is disabled."}}
    }}));
    Value::Object(out)
}
/// What every console answer carries (`crate::console`).
fn console_headers() -> Value {
    json!({
        "Content-Security-Policy": {"description": "The console's policy: scripts, styles and connections to this origin only, media also from `blob:`, no framing.",
            "schema": {"const": crate::console::CONTENT_SECURITY_POLICY}},
        "X-Content-Type-Options": {"schema": {"const": "nosniff"}}
    })
}
pub(super) fn operation(id: RouteId) -> Value {
    use ErrorCode as E;
    if let Some(op) = super::directory::operation(id) {
        return op;
    }
    if let Some(op) = super::contacts::operation(id) {
        return op;
    }
    if let Some(op) = super::campaigns::operation(id) {
        return op;
    }
    match id {
        RouteId::PutNumber
        | RouteId::ListNumbers
        | RouteId::GetNumber
        | RouteId::DeleteNumber
        | RouteId::CreateDirectoryUser
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
        | RouteId::SetSipPassword => json!({}), // documented in `directory.rs` (returned above)
        RouteId::CreateContact
        | RouteId::ListContacts
        | RouteId::GetContact
        | RouteId::UpdateContact
        | RouteId::DeleteContact => json!({}), // documented in `contacts.rs` (returned above)
        RouteId::CreateCampaign
        | RouteId::ListCampaigns
        | RouteId::GetCampaign
        | RouteId::StartCampaign
        | RouteId::PauseCampaign
        | RouteId::ResumeCampaign
        | RouteId::CancelCampaign => json!({}), // documented in `campaigns.rs` (returned above)
        RouteId::Health => op("healthCheck", "meta", Auth::None, "Liveness check", "Answers 200 while the edge is up.")
            .ok(200, "The edge is up.", "Health")
            .build(),
        RouteId::Console => op("getConsole", "console", Auth::None, "The operator console",
            "The console's one HTML page (views by URL fragment: `#/calls`, `#/calls/{call_id}`, `#/agents`, `#/keys`, `#/webhooks`, `#/sidecars`). \
It holds no data and needs no credentials: its script asks for a tenant API key and/or the admin token, keeps them in the tab's `sessionStorage` \
and calls this API with them as `Authorization: Bearer`. Served with a strict `Content-Security-Policy` (this origin only, no inline script, \
`blob:` media for the recording, no framing).")
            .ok_files("The page.", &["text/html"], console_headers())
            .build(),
        RouteId::ConsoleAsset => op("getConsoleAsset", "console", Auth::None, "The console's script or style sheet",
            "`app.js` (an ES module, `text/javascript`) or `app.css` (`text/css`), compiled into the Worker. Any other name answers 404 `not_found`.")
            .ok_files("The asset.", &["text/javascript", "text/css"], console_headers())
            .errors(&[E::NotFound])
            .build(),
        RouteId::OpenApi => op("getOpenApi", "meta", Auth::None, "This OpenAPI document", "The OpenAPI 3.1 description of the API.")
            .ok(200, "The document.", "OpenApiDocument")
            .build(),
        RouteId::CreateCall => op(
            "createCall",
            "calls",
            Auth::ApiKey,
            "Place a call",
            "Accepts a call and queues it for a media sidecar (status `queued`), or holds it until `schedule_at` (status `scheduled`). Settings not given are taken from the agent. With `from_extension` instead of an agent, a person's click-to-call: their phones ring first, then `phone` is dialled and bridged. One call at a time per agent (or person) and number: while another call of the same agent to the same number is queued, scheduled (including between retries) or live, the request is refused with 409 `call_in_progress` and nothing is created.",
        )
        .body("CreateCallRequest", true)
        .query(json!([
            {"name": "Idempotency-Key", "in": "header", "required": false,
             "description": format!("Makes retries safe: 1-{} visible ASCII characters, remembered for 24 h per tenant. The same key with the same request (method, path, raw body) returns the original status and body with `Idempotent-Replayed: true` and places no second call; with a different request 422 `idempotency_key_reused`; while the first is still running 409 `idempotency_key_in_flight`. Malformed: 400 `invalid_parameter`.", traffic::IDEMPOTENCY_KEY_MAX),
             "schema": {"type": "string", "minLength": 1, "maxLength": traffic::IDEMPOTENCY_KEY_MAX, "pattern": IDEMPOTENCY_KEY_PATTERN}}
        ]))
        .ok_with_headers(201, "The call was accepted (or, with `Idempotent-Replayed: true`, a replay of the first answer to this `Idempotency-Key`).", "Call", json!({"Location": {"description": "The call's URL, `/v1/calls/{call_id}`.", "schema": {"type": "string"}}}))
        .errors(&[
            E::InvalidParameter,
            E::CallInProgress,
            E::ConcurrencyLimitReached,
            E::OutsideCallingWindow,
            E::IdempotencyKeyInFlight,
            E::IdempotencyKeyReused,
            E::AgentDisabled,
            E::UnknownNumber,
            E::UnknownVariable,
            E::MissingField,
            E::InvalidValue,
            E::ValueTooLong,
            E::OutOfRange,
            E::InvalidPhoneNumber,
            E::InvalidEmail,
            E::InvalidLanguage,
            E::InvalidTimestamp,
            E::ScheduleInPast,
            E::MetadataTooLarge,
            E::UnknownAgent,
            E::UnknownExtension,
            E::AgentRequired,
            E::InvalidUrl,
            E::EngineKeysUnavailable,
        ])
        .build(),
        RouteId::ListCalls => {
            let statuses = status_names();
            op(
                "listCalls",
                "calls",
                Auth::ApiKey,
                "List calls",
                "The tenant's calls, newest first, as summaries. Unknown or repeated query parameters are refused with 400 `invalid_parameter`.",
            )
            .query(json!([
                {"name": "status", "in": "query", "required": false, "style": "form", "explode": false,
                 "description": format!("Only calls in one of these statuses, comma-separated (e.g. `queued,dialing`). One of: {}.", statuses.join(", ")),
                 "schema": {"type": "array", "minItems": 1, "items": schema_ref("CallStatus")}},
                {"name": "limit", "in": "query", "required": false, "description": "Page size.",
                 "schema": {"type": "integer", "minimum": 1, "maximum": LIST_LIMIT_MAX, "default": LIST_LIMIT_DEFAULT}},
                {"name": "cursor", "in": "query", "required": false,
                 "description": "`next_cursor` of the previous page; only valid with the same `status` filter (else 400 `invalid_cursor`).",
                 "schema": {"type": "string", "minLength": 1}}
            ]))
            .ok(200, "A page of calls.", "CallList")
            .errors(&[E::InvalidParameter, E::InvalidCursor])
            .build()
        }
        RouteId::GetTranscript => op(
            "getTranscript",
            "calls",
            Auth::ApiKey,
            "Get a call's transcript",
            "The turns reported so far (complete once the call has ended), as JSON, or as plain text with `?format=txt` or `Accept: text/plain`.",
        )
        .query(json!([
            {"name": "format", "in": "query", "required": false, "description": "`txt` for plain text, `json` (default) for JSON.",
             "schema": {"type": "string", "enum": ["json", "txt"]}}
        ]))
        .ok_json_or_text("The transcript.", "Transcript", "One line per turn: `[hh:mm:ss] AGENT: ...` / `[hh:mm:ss] CALLEE: ...` (offsets from the answer).")
        .errors(&[E::CallNotFound, E::InvalidParameter])
        .build(),
        RouteId::GetTranscriptAs => op(
            "getTranscriptAs",
            "calls",
            Auth::ApiKey,
            "Get a call's transcript as a file",
            "`transcript.txt` or `transcript.json`: the same as `GET /v1/calls/{call_id}/transcript` in that format. Any other extension answers 400 `invalid_parameter`.",
        )
        .ok_json_or_text("The transcript.", "Transcript", "One line per turn: `[hh:mm:ss] AGENT: ...` / `[hh:mm:ss] CALLEE: ...` (offsets from the answer).")
        .errors(&[E::CallNotFound, E::InvalidParameter])
        .build(),
        RouteId::GetRecording => op(
            "getRecording",
            "calls",
            Auth::ApiKey,
            "Download a call's recording",
            "The stereo 16-bit PCM WAV of the call's newest answered attempt (left: the agent, right: the callee), for calls placed with `record: true`. The sidecar uploads it after the call ends; `recording.saved` tells when it is here. Until then, and for calls without `record: true` or never answered, 404 `recording_not_found` with a message saying which.",
        )
        .ok_binary("The recording.", "audio/wav", json!({
            "Content-Length": {"schema": {"type": "integer"}},
            "X-Recording-Attempt": {"description": "The attempt the recording is of.", "schema": {"type": "integer"}},
            "X-Recording-Duration-Ms": {"schema": {"type": "integer"}},
            "X-Recording-Sha256": {"description": "Lowercase hex SHA-256 of the body.", "schema": {"type": "string"}}
        }))
        .errors(&[E::CallNotFound, E::RecordingNotFound])
        .build(),
        RouteId::GetRecordingByLink => op(
            "getRecordingByLink",
            "calls",
            Auth::None,
            "Download a call's recording through a signed link",
            &format!("What dialect webhooks give as `recording_url` (e.g. Calldock's `post_call`, when the deployment sets `PUBLIC_BASE_URL`): a capability link to one call's recording, needing no API key. `signature` is the lowercase hex HMAC-SHA256 of `\"{{tenant_id}}\\n{{call_id}}\\n{{expires}}\"` under a key only the edge holds (derived from its sealing secret); a link works for {} days from when it was made. A good link answers exactly as `GET /v1/calls/{{call_id}}/recording` (404 `recording_not_found` until the sidecar has uploaded it). A missing, malformed, wrong or expired signature answers 403 `invalid_recording_link` without saying whether the call exists, and counts against the client address like a wrong API key. A disabled tenant's links answer 403 `tenant_disabled`.", LINK_LIFETIME_SECONDS / 86_400),
        )
        .query(json!([
            {"name": "expires", "in": "query", "required": true, "description": "When the link stops working, in unix seconds.",
             "schema": {"type": "string", "pattern": "^[0-9]{1,20}$"}},
            {"name": "signature", "in": "query", "required": true, "description": "Lowercase hex HMAC-SHA256 of the tenant id, call id and `expires`, newline-separated.",
             "schema": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"}}
        ]))
        .ok_binary("The recording.", "audio/wav", json!({
            "Content-Length": {"schema": {"type": "integer"}},
            "X-Recording-Attempt": {"description": "The attempt the recording is of.", "schema": {"type": "integer"}},
            "X-Recording-Duration-Ms": {"schema": {"type": "integer"}},
            "X-Recording-Sha256": {"description": "Lowercase hex SHA-256 of the body.", "schema": {"type": "string"}}
        }))
        .errors(&[E::InvalidRecordingLink, E::TenantDisabled, E::RecordingNotFound, E::TooManyFailedAttempts])
        .build(),
        RouteId::GetCall => op("getCall", "calls", Auth::ApiKey, "Get a call", "The call with all its settings and its current status.")
            .ok(200, "The call.", "Call")
            .errors(&[E::CallNotFound])
            .build(),
        RouteId::HangupCall => op(
            "hangupCall",
            "calls",
            Auth::ApiKey,
            "Hang up a call",
            "Idempotent. A call not yet handed to a sidecar (`queued`, `scheduled`) is cancelled at once (200, status `cancelled`); an ended call is returned unchanged (200); a live call is marked for hangup and the sidecar holding it is told (202, `hangup_requested_at` set).",
        )
        .body("HangupRequest", false)
        .ok(200, "The call was cancelled, or had already ended.", "Call")
        .ok(202, "The call is live; the hangup was requested.", "Call")
        .errors(&[E::CallNotFound])
        .build(),
        RouteId::TransferCall => op(
            "transferCall",
            "calls",
            Auth::ApiKey,
            "Transfer a call",
            &format!("Hands the callee of an answered AI call (`in_progress`) to a number (`destination`, E.164), a person of the tenant's directory (`extension`), or a call queue (`queue`, its `pk`; blind only), as the agent's own `transfer` tool does (issue 16). `blind` (the default): the sidecar holding the call sends a SIP REFER where the call's trunk takes it (a number only), else it dials the other side as a second leg and bridges the two once it answers (30 s to answer). `warm`: the callee waits on hold (hold audio) while the other side is dialled; once it answers it first hears `message` (or a briefing the sidecar composes from the conversation) spoken by the sidecar's speech synthesis, then the two are connected; a sidecar without speech synthesis connects them without the briefing. A person is rung on their phone registered with the sidecar holding the call (the one registered most recently). A queue: the callee waits in it as an inbound caller to the queue does (hold audio, its members with a phone registered with that sidecar rung in the queue's order, `call.queue` webhooks, the call's `queue`); `transferred` with `method` `queue` once they enter it; its overflow `agent` brings them back to this call's own agent, `voicemail` (a recorded call only, else `hangup`) and `hangup` as configured; a full queue, or one with no member to ring there that takes no callers then, is 409 `call_not_transferable`. 202 with the call, its `transfer_request` `requested`; the outcome follows: `transfer_request.status` `completed` (with `method` `refer`, `bridge`, `warm` or `queue`) and the `call.transferred` webhook, or `failed` with a stable `error` (`busy`, `no_answer`, `rejected`, `user_unavailable`: no phone of that person is registered there, `transfer_failed`, `transfer_in_progress`: the agent's own transfer was under way) after which the call goes on with the agent. A transfer without an outcome within {} s no longer counts as under way. 409: `call_not_answered`, `call_ended`, `call_not_transferable` (a call ringing a person, or its sidecar unreachable), `transfer_in_progress` (one requested and not settled, or completed); 422 `unknown_extension`, `unknown_queue`; 422 `invalid_value` for `queue` with `mode` `warm`.", crate::model::TRANSFER_PENDING_MS / 1000),
        )
        .body("TransferCallRequest", true)
        .ok(202, "The transfer was requested from the sidecar holding the call.", "Call")
        .errors(&[
            E::CallNotFound,
            E::CallNotAnswered,
            E::CallEnded,
            E::CallNotTransferable,
            E::TransferInProgress,
            E::MissingField,
            E::InvalidValue,
            E::ValueTooLong,
            E::InvalidPhoneNumber,
            E::UnknownExtension,
            E::UnknownQueue,
        ])
        .build(),
        RouteId::CreateMessage => op(
            "sendMessage",
            "messages",
            Auth::ApiKey,
            "Send a text message",
            &format!("Accepts a text message (SMS) and queues it for a media sidecar of the deployment's region, which sends it through its SIP trunk as a SIP MESSAGE (RFC 3428): 202 with the message, status `queued`. `from` must be one of the tenant's numbers that can send texts (`sms_enabled` and `active`): else 422 `unknown_number` or `number_not_sms_capable`. `body` is 1 to {MAX_MESSAGE_CHARS} characters. It is handed to a sidecar at most once (status `sending`) and never sent twice: the trunk's final answer makes it `sent` or `failed` (`message.sent` / `message.failed`); with no answer within {} s of the hand-out it is `failed` with `failure_reason` `no_result`, and one no sidecar took within {} minutes `failed` with `no_sidecar`. A carrier's delivery report then makes a sent message `delivered` or `undelivered`.", crate::messages::RESULT_DEADLINE_MS / 1000, crate::messages::QUEUED_TTL_MS / 60_000),
        )
        .body("SendMessageRequest", true)
        .query(json!([
            {"name": "Idempotency-Key", "in": "header", "required": false,
             "description": format!("Makes retries safe: 1-{} visible ASCII characters, remembered for 24 h per tenant. The same key with the same request (method, path, raw body) returns the original status and body with `Idempotent-Replayed: true` and sends no second message; with a different request 422 `idempotency_key_reused`; while the first is still running 409 `idempotency_key_in_flight`. Malformed: 400 `invalid_parameter`.", traffic::IDEMPOTENCY_KEY_MAX),
             "schema": {"type": "string", "minLength": 1, "maxLength": traffic::IDEMPOTENCY_KEY_MAX, "pattern": IDEMPOTENCY_KEY_PATTERN}}
        ]))
        .ok_with_headers(202, "The message was accepted and queued (or, with `Idempotent-Replayed: true`, a replay of the first answer to this `Idempotency-Key`).", "Message", json!({"Location": {"description": "The message's URL, `/v1/messages/{message_id}`.", "schema": {"type": "string"}}}))
        .errors(&[
            E::InvalidParameter,
            E::IdempotencyKeyInFlight,
            E::IdempotencyKeyReused,
            E::MissingField,
            E::InvalidValue,
            E::ValueTooLong,
            E::InvalidPhoneNumber,
            E::MetadataTooLarge,
            E::UnknownNumber,
            E::NumberNotSmsCapable,
        ])
        .build(),
        RouteId::ListMessages => op(
            "listMessages",
            "messages",
            Auth::ApiKey,
            "List text messages",
            "The tenant's text messages, sent and received, newest first, as summaries (without `metadata`). Unknown or repeated query parameters are refused with 400 `invalid_parameter`.",
        )
        .query(json!([
            {"name": "direction", "in": "query", "required": false, "description": "Only `outbound` (sent) or `inbound` (received) messages.",
             "schema": schema_ref("MessageDirection")},
            {"name": "status", "in": "query", "required": false, "style": "form", "explode": false,
             "description": format!("Only messages in one of these statuses, comma-separated (e.g. `sent,delivered`). One of: {}.", MessageStatus::ALL.map(MessageStatus::as_str).join(", ")),
             "schema": {"type": "array", "minItems": 1, "items": schema_ref("MessageStatus")}},
            {"name": "limit", "in": "query", "required": false, "description": "Page size.",
             "schema": {"type": "integer", "minimum": 1, "maximum": LIST_LIMIT_MAX, "default": LIST_LIMIT_DEFAULT}},
            {"name": "cursor", "in": "query", "required": false,
             "description": "`next_cursor` of the previous page; only valid with the same `direction` and `status` filters (else 400 `invalid_cursor`).",
             "schema": {"type": "string", "minLength": 1}}
        ]))
        .ok(200, "A page of messages.", "MessageList")
        .errors(&[E::InvalidParameter, E::InvalidCursor])
        .build(),
        RouteId::GetMessage => op("getMessage", "messages", Auth::ApiKey, "Get a text message", "The message and its current status.")
            .ok(200, "The message.", "Message")
            .errors(&[E::MessageNotFound])
            .build(),
        RouteId::CreateTenant => op("createTenant", "admin", Auth::Admin, "Create a tenant", "A new customer account, with no agents or keys yet.")
            .body("CreateTenantRequest", true)
            .ok(201, "The tenant.", "Tenant")
            .errors(&[E::MissingField, E::InvalidValue, E::ValueTooLong, E::OutOfRange, E::CodebHostTaken, E::Voice360AccountTaken])
            .build(),
        RouteId::GetTenant => op("getTenant", "admin", Auth::Admin, "Get a tenant", "The tenant.")
            .ok(200, "The tenant.", "Tenant")
            .errors(&[E::TenantNotFound])
            .build(),
        RouteId::UpdateTenant => op("updateTenant", "admin", Auth::Admin, "Update a tenant", "Rename, disable or enable a tenant, set its default agent, rate limits or concurrent-call cap.")
            .body("UpdateTenantRequest", true)
            .ok(200, "The updated tenant.", "Tenant")
            .errors(&[E::TenantNotFound, E::InvalidValue, E::ValueTooLong, E::OutOfRange, E::UnknownAgent, E::CodebHostTaken, E::Voice360AccountTaken])
            .build(),
        RouteId::CreateAgent => op(
            "createAgent",
            "admin",
            Auth::Admin,
            "Create an agent",
            "A new agent for the tenant. The tenant's first agent becomes its default unless `default` is false.",
        )
        .body("CreateAgentRequest", true)
        .ok(201, "The agent.", "Agent")
        .errors(&[E::TenantNotFound, E::MissingField, E::InvalidValue, E::ValueTooLong, E::OutOfRange, E::InvalidLanguage, E::InvalidUrl, E::EngineKeysUnavailable])
        .build(),
        RouteId::ListAgents => op("listAgents", "admin", Auth::Admin, "List agents", "All agents of the tenant, in one page.")
            .ok(200, "The agents.", "AgentList")
            .errors(&[E::TenantNotFound])
            .build(),
        RouteId::GetAgent => op("getAgent", "admin", Auth::Admin, "Get an agent", "The agent.")
            .ok(200, "The agent.", "Agent")
            .errors(&[E::TenantNotFound, E::AgentNotFound])
            .build(),
        RouteId::UpdateAgent => op(
            "updateAgent",
            "admin",
            Auth::Admin,
            "Update an agent",
            "Changes the given fields. Calls already accepted keep the settings they were created with.",
        )
        .body("UpdateAgentRequest", true)
        .ok(200, "The updated agent.", "Agent")
        .errors(&[E::TenantNotFound, E::AgentNotFound, E::MissingField, E::InvalidValue, E::ValueTooLong, E::OutOfRange, E::InvalidLanguage, E::InvalidUrl, E::EngineKeysUnavailable])
        .build(),
        RouteId::DeleteAgent => op(
            "deleteAgent",
            "admin",
            Auth::Admin,
            "Delete an agent",
            "Removes the agent. Calls already accepted keep the settings they were created with; new calls cannot name it (422 `unknown_agent`), it stops being the tenant's default, and its dialect credentials stop placing calls (VoiceB answers `ctc:005`).",
        )
        .ok(200, "The deleted agent's id.", "AgentDeleted")
        .errors(&[E::TenantNotFound, E::AgentNotFound])
        .build(),
        RouteId::CreateApiKey => op(
            "createApiKey",
            "admin",
            Auth::Admin,
            "Create an API key",
            "Mints a key for the tenant. The clear key is in this response only; the edge keeps just its SHA-256. With `require_signature` the `signing_secret` is also shown only here and stored sealed (AES-256-GCM under `VOXLINE_SEALING_KEY`); without that secret such a key is refused with 503 `secrets_unavailable`.",
        )
        .body("CreateApiKeyRequest", false)
        .ok(201, "The key, with the clear key.", "ApiKeyCreated")
        .errors(&[E::TenantNotFound, E::ValueTooLong, E::SecretsUnavailable])
        .build(),
        RouteId::ListApiKeys => op("listApiKeys", "admin", Auth::Admin, "List API keys", "All API keys of the tenant, revoked ones included, without the keys themselves.")
            .ok(200, "The keys.", "ApiKeyList")
            .errors(&[E::TenantNotFound])
            .build(),
        RouteId::RevokeApiKey => op(
            "revokeApiKey",
            "admin",
            Auth::Admin,
            "Revoke an API key",
            "The key stops working at once. Idempotent: revoking a revoked key returns it unchanged.",
        )
        .ok(200, "The revoked key.", "ApiKey")
        .errors(&[E::TenantNotFound, E::ApiKeyNotFound])
        .build(),
        RouteId::CreateDialectKey => op(
            "createDialectKey",
            "admin",
            Auth::Admin,
            "Create a dialect credential",
            "Mints a credential for one seed API served as a dialect (`voiceb`, `buildvoiceai`, `calldock`; see docs/dialects.md): VoiceB and Calldock credentials belong to one agent (`agent_id` required), BuildVoiceAI's to the tenant (`agent_id` refused). The clear `token` (and VoiceB's API Secret, `secret`) are in this response only; the edge keeps the token's SHA-256, and keeps sealed (AES-256-GCM under `VOXLINE_SEALING_KEY`) what the vendor's protocol uses again: VoiceB's secret (request HMAC) and BuildVoiceAI's token (webhook HMAC). Without that sealing key those two are refused with 503 `secrets_unavailable`.",
        )
        .body("CreateDialectKeyRequest", true)
        .ok(201, "The credential, with its clear token.", "DialectKeyCreated")
        .errors(&[E::TenantNotFound, E::AgentNotFound, E::MissingField, E::InvalidValue, E::ValueTooLong, E::SecretsUnavailable])
        .build(),
        RouteId::ListDialectKeys => op("listDialectKeys", "admin", Auth::Admin, "List dialect credentials", "All dialect credentials of the tenant, revoked ones included, without tokens or secrets.")
            .ok(200, "The credentials.", "DialectKeyList")
            .errors(&[E::TenantNotFound])
            .build(),
        RouteId::RevokeDialectKey => op(
            "revokeDialectKey",
            "admin",
            Auth::Admin,
            "Revoke a dialect credential",
            "The credential stops working at once. Idempotent: revoking a revoked credential returns it unchanged.",
        )
        .ok(200, "The revoked credential.", "DialectKey")
        .errors(&[E::TenantNotFound, E::DialectKeyNotFound])
        .build(),
        RouteId::PutPrompt => op(
            "putPrompt",
            "admin",
            Auth::Admin,
            "Save a prompt",
            "Creates or replaces the tenant's prompt called `slug` (1 to 64 lowercase letters, digits and dashes). A CodeB create request whose `systemPrompt` is a saved slug (e.g. `reminder`) uses its text.",
        )
        .body("PutPromptRequest", true)
        .ok(200, "The saved prompt.", "SavedPrompt")
        .errors(&[E::TenantNotFound, E::InvalidParameter, E::MissingField, E::InvalidValue, E::ValueTooLong])
        .build(),
        RouteId::ListPrompts => op("listPrompts", "admin", Auth::Admin, "List saved prompts", "All saved prompts of the tenant.")
            .ok(200, "The prompts.", "SavedPromptList")
            .errors(&[E::TenantNotFound])
            .build(),
        RouteId::GetPrompt => op("getPrompt", "admin", Auth::Admin, "Get a saved prompt", "One saved prompt by its slug.")
            .ok(200, "The prompt.", "SavedPrompt")
            .errors(&[E::TenantNotFound, E::PromptNotFound])
            .build(),
        RouteId::DeletePrompt => op(
            "deletePrompt",
            "admin",
            Auth::Admin,
            "Delete a saved prompt",
            "Idempotent: deleting a prompt that is not there answers the same. Calls already accepted keep the text they were created with. A `slug` of another shape names no prompt: 404 `prompt_not_found`.",
        )
        .ok(200, "The deleted prompt's slug.", "PromptDeleted")
        .errors(&[E::TenantNotFound, E::PromptNotFound])
        .build(),
        RouteId::CreateUser => op(
            "createUser",
            "admin",
            Auth::Admin,
            "Create a CodeB user",
            "A tenant user of the CodeB dialect, who trades `username` and `password` for an access token at `POST /oidc.ashx/token` (at the tenant's `codeb_host`; see docs/dialects.md). The username is lowercased; the password is kept only as an Argon2id hash and never shown.",
        )
        .body("CreateUserRequest", true)
        .ok(201, "The user.", "User")
        .errors(&[E::TenantNotFound, E::MissingField, E::InvalidValue, E::ValueTooLong, E::UserExists])
        .build(),
        RouteId::ListUsers => op("listUsers", "admin", Auth::Admin, "List CodeB users", "All CodeB users of the tenant, without their passwords.")
            .ok(200, "The users.", "UserList")
            .errors(&[E::TenantNotFound])
            .build(),
        RouteId::GetUser => op("getUser", "admin", Auth::Admin, "Get a CodeB user", "The user (the username is matched lowercased).")
            .ok(200, "The user.", "User")
            .errors(&[E::TenantNotFound, E::UserNotFound])
            .build(),
        RouteId::UpdateUser => op(
            "updateUser",
            "admin",
            Auth::Admin,
            "Update a CodeB user",
            "Sets a new password and/or disables or enables the user. A new password or disabling revokes all of the user's access tokens at once.",
        )
        .body("UpdateUserRequest", true)
        .ok(200, "The updated user.", "User")
        .errors(&[E::TenantNotFound, E::UserNotFound, E::InvalidValue, E::ValueTooLong])
        .build(),
        RouteId::DeleteUser => op(
            "deleteUser",
            "admin",
            Auth::Admin,
            "Delete a CodeB user",
            "Removes the user and revokes all of their access tokens at once.",
        )
        .ok(200, "The deleted user's name.", "UserDeleted")
        .errors(&[E::TenantNotFound, E::UserNotFound])
        .build(),
        RouteId::CreateWebhook => op(
            "createWebhook",
            "admin",
            Auth::Admin,
            "Create a webhook endpoint",
            "Call events for the tenant (or for one agent's calls, `agent_id`) will be POSTed to this URL: natively, signed per Standard Webhooks with the returned secret; or, with a dialect `format`, once per call as that vendor's post-call webhook (`buildvoiceai`: signed with the BuildVoiceAI credential's token; `calldock`: signed with the returned secret, Calldock's Webhook Secret). The secret is in this response only; the edge stores it sealed (AES-256-GCM under `VOXLINE_SEALING_KEY`), and without that secret refuses with 503 `secrets_unavailable`.",
        )
        .body("CreateWebhookRequest", true)
        .ok(201, "The endpoint, with its signing secret.", "WebhookEndpointCreated")
        .errors(&[E::TenantNotFound, E::MissingField, E::InvalidValue, E::ValueTooLong, E::OutOfRange, E::InvalidUrl, E::UnknownAgent, E::SecretsUnavailable])
        .build(),
        RouteId::ListWebhooks => op("listWebhooks", "admin", Auth::Admin, "List webhook endpoints", "All webhook endpoints of the tenant, without their secrets.")
            .ok(200, "The endpoints.", "WebhookEndpointList")
            .errors(&[E::TenantNotFound])
            .build(),
        RouteId::GetWebhook => op("getWebhook", "admin", Auth::Admin, "Get a webhook endpoint", "The endpoint, without its secret.")
            .ok(200, "The endpoint.", "WebhookEndpoint")
            .errors(&[E::TenantNotFound, E::WebhookNotFound])
            .build(),
        RouteId::UpdateWebhook => op(
            "updateWebhook",
            "admin",
            Auth::Admin,
            "Update a webhook endpoint",
            "Change its URL, events, retry schedule, format or agent filter, or enable/disable it. Deliveries already queued for a disabled endpoint end as `failed`; ones already queued keep the format they were rendered in.",
        )
        .body("UpdateWebhookRequest", true)
        .ok(200, "The updated endpoint.", "WebhookEndpoint")
        .errors(&[E::TenantNotFound, E::WebhookNotFound, E::InvalidValue, E::ValueTooLong, E::OutOfRange, E::InvalidUrl, E::UnknownAgent, E::MissingField])
        .build(),
        RouteId::DeleteWebhook => op("deleteWebhook", "admin", Auth::Admin, "Delete a webhook endpoint", "Stops deliveries to it; ones already queued end as `failed`. The delivery log stays.")
            .ok(200, "The deleted endpoint.", "WebhookEndpoint")
            .errors(&[E::TenantNotFound, E::WebhookNotFound])
            .build(),
        RouteId::RotateWebhookSecret => op(
            "rotateWebhookSecret",
            "admin",
            Auth::Admin,
            "Rotate a webhook endpoint's secret",
            "Mints a new signing secret, returned in this response only. For `overlap_seconds` (default a day) deliveries carry two signatures, one with each secret, so the receiver can switch over without failing any.",
        )
        .body("RotateWebhookSecretRequest", false)
        .ok(200, "The endpoint with its new secret.", "WebhookEndpointCreated")
        .errors(&[E::TenantNotFound, E::WebhookNotFound, E::OutOfRange, E::SecretsUnavailable])
        .build(),
        RouteId::TestWebhook => op(
            "testWebhookEndpoint",
            "admin",
            Auth::Admin,
            "Send a webhook endpoint a test event",
            "Queues one `webhook.test` event (`WebhookTestEvent`) for this endpoint, whatever events it subscribes to, on the path every event takes: signed as the endpoint's format signs (Standard Webhooks for `native`), delivered through the queue and retried by the endpoint's schedule. The delivery is in the tenant's delivery log at once (`pending`, `GET /v1/webhooks/deliveries/{delivery_id}`), then with each attempt and the receiver's answer. No body, or an empty JSON object.",
        )
        .body("TestWebhookRequest", false)
        .ok(202, "Queued; the delivery as logged.", "WebhookDelivery")
        .errors(&[E::TenantNotFound, E::WebhookNotFound, E::WebhookDisabled])
        .build(),
        RouteId::ListDeliveries => op(
            "listWebhookDeliveries",
            "webhooks",
            Auth::ApiKey,
            "List webhook deliveries",
            "The tenant's delivery log, newest first, as summaries: webhook deliveries (`kind: webhook`, test events included) and the customer tools' requests of its calls (`kind: tool_call`). Filters may leave a page short while `has_more` is true: follow `next_cursor` until null.",
        )
        .query(json!([
            {"name": "event", "in": "query", "required": false, "style": "form", "explode": false,
             "description": "Only these event types, comma-separated (`webhook.test` and `tool.call` too).", "schema": {"type": "array", "minItems": 1, "items": {"anyOf": [schema_ref("WebhookEvent"), {"type": "string", "enum": ["webhook.test", "tool.call"]}]}}},
            {"name": "status", "in": "query", "required": false, "style": "form", "explode": false,
             "description": "Only deliveries in these statuses, comma-separated.", "schema": {"type": "array", "minItems": 1, "items": schema_ref("WebhookDeliveryStatus")}},
            {"name": "kind", "in": "query", "required": false, "style": "form", "explode": false,
             "description": "Only these kinds, comma-separated: `webhook`, `tool_call`.", "schema": {"type": "array", "minItems": 1, "items": {"type": "string", "enum": ["webhook", "tool_call"]}}},
            {"name": "call_id", "in": "query", "required": false,
             "description": "Only the entries of this call (its events' deliveries and its tool calls).", "schema": {"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[A-Za-z0-9_]+$"}},
            {"name": "limit", "in": "query", "required": false, "description": "Page size.",
             "schema": {"type": "integer", "minimum": 1, "maximum": LIST_LIMIT_MAX, "default": LIST_LIMIT_DEFAULT}},
            {"name": "cursor", "in": "query", "required": false,
             "description": "`next_cursor` of the previous page; only valid with the same filters (else 400 `invalid_cursor`).", "schema": {"type": "string", "minLength": 1}}
        ]))
        .ok(200, "A page of deliveries.", "WebhookDeliveryList")
        .errors(&[E::InvalidParameter, E::InvalidCursor])
        .build(),
        RouteId::GetDelivery => op("getWebhookDelivery", "webhooks", Auth::ApiKey, "Get a webhook delivery", "The delivery with its payload and every attempt.")
            .ok(200, "The delivery.", "WebhookDelivery")
            .errors(&[E::DeliveryNotFound])
            .build(),
        RouteId::RedeliverDelivery => op(
            "redeliverWebhookDelivery",
            "webhooks",
            Auth::ApiKey,
            "Redeliver a webhook",
            "Queues the same event (same body and `webhook-id`) to the same endpoint again, with a fresh retry schedule; the new attempts appear in the log marked `manual`. Any request body is ignored.",
        )
        .ok(202, "Queued; the delivery as it stands.", "WebhookDelivery")
        .errors(&[E::DeliveryNotFound, E::WebhookDisabled, E::NotRedeliverable])
        .build(),
        RouteId::CreateSidecar => op(
            "createSidecar",
            "admin",
            Auth::Admin,
            "Create sidecar credentials",
            "Mints the HMAC secret a media sidecar signs its sidecar-link requests with (see `voxline_shared::sidecar_link`). Creating an existing id rotates the secret. The secret is in this response only; the edge stores it sealed (AES-256-GCM under `VOXLINE_SEALING_KEY`), and without that secret refuses with 503 `secrets_unavailable`.",
        )
        .body("CreateSidecarRequest", true)
        .ok(201, "The sidecar, with its secret.", "SidecarCreated")
        .errors(&[E::MissingField, E::InvalidValue, E::ValueTooLong, E::SecretsUnavailable])
        .build(),
        RouteId::ListSidecars => op("listSidecars", "admin", Auth::Admin, "List sidecars", "All sidecars, without their secrets; each live one with its `load` from its region's dispatch queue: calls held and offered against its capacity, the free slots of its last poll, when it was last seen, and its link's lease turnaround (summary and the newest samples).")
            .ok(200, "The sidecars.", "SidecarList")
            .build(),
        RouteId::RevokeSidecar => op("revokeSidecar", "admin", Auth::Admin, "Revoke a sidecar", "Its signatures stop being accepted. Idempotent.")
            .ok(200, "The revoked sidecar.", "Sidecar")
            .errors(&[E::SidecarNotFound])
            .build(),
    }
}

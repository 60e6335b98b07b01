//! The OpenAPI 3.1 description served at `GET /v1/openapi.json`.
//!
//! What the code already knows is generated from it, so the document cannot
//! drift: the operations come from [`router::ROUTES`] (an exhaustive match on
//! [`RouteId`] means a new route does not compile until it is documented), the
//! error codes and their statuses from [`ErrorCode::ALL`], call statuses from
//! [`CallStatus::ALL`], engines from [`Engine::NAMES`], webhook events from
//! [`WEBHOOK_EVENTS`], and the limits from [`crate::limits`] (which the
//! validators read too) and the modules that own the rest. Descriptions are
//! written here; the tests below probe every documented limit against the
//! real validators and check every response of every route against its schema.
//!
//! [`router::ROUTES`]: crate::api::router::ROUTES
//! [`WEBHOOK_EVENTS`]: crate::webhooks::events::WEBHOOK_EVENTS

use crate::api::router::{RouteId, ROUTES};
use crate::api::validate;
use crate::calling_window;
use crate::error::ErrorCode;
use crate::limits::{
    AGENT_NAME_MAX, API_KEY_NAME_MAX, CALL_NAME_MAX, CONCURRENCY_RETRY_AFTER_SECONDS, EMAIL_MAX,
    ID_FIELD_MAX, LANGUAGE_MAX, LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX, MAX_BODY_BYTES,
    MAX_CONCURRENT_CALLS_MAX, MAX_METADATA_BYTES, MAX_PROMPT_CHARS, MAX_SCHEDULE_AHEAD_DAYS,
    MAX_SECONDS, MODEL_MAX, RETRIES, RETRY_DELAY_MINUTES, SCHEDULE_AT_MAX, SILENCE_TIMEOUT_SECONDS,
    TENANT_NAME_MAX, VOICE_MAX, WEBHOOK_EVENT_MAX, WEBHOOK_URL_MAX,
};
use crate::model::Engine;
use crate::traffic;
use crate::webhooks::delivery::{self, DeliveryStatus};
use crate::webhooks::events::WEBHOOK_EVENTS;
use serde_json::{json, Map, Value};
use voxline_shared::{CallStatus, EndedReason};

const SILENCE_TIMEOUT: (i64, i64, i64) = (
    SILENCE_TIMEOUT_SECONDS.0,
    SILENCE_TIMEOUT_SECONDS.1,
    crate::model::DEFAULT_SILENCE_TIMEOUT_SECONDS as i64,
);

/// E.164 as `validate::check_e164` reads it.
pub const E164_PATTERN: &str = r"^\+[1-9][0-9]{6,14}$";
/// `validate::check_email`: one `@`, a dotted domain that neither starts nor ends with a dot,
/// no whitespace or control characters.
pub const EMAIL_PATTERN: &str = r"^[^@\s\x00-\x1f\x7f-\x9f]+@[^@\s.\x00-\x1f\x7f-\x9f][^@\s\x00-\x1f\x7f-\x9f]*\.[^@\s\x00-\x1f\x7f-\x9f]*[^@\s.\x00-\x1f\x7f-\x9f]$";
/// `traffic::is_valid_idempotency_key`: visible ASCII.
const IDEMPOTENCY_KEY_PATTERN: &str = r"^[!-~]+$";
/// `schedule_at`: RFC 3339 (`format: date-time`) in UTC, as `ids::parse_rfc3339_utc_ms` reads it.
const SCHEDULE_AT_PATTERN: &str =
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-]00:00)$";
/// The shape of a webhook URL that `url_guard` then judges: http(s), no `user:pass@`, no
/// whitespace or control characters. (Whether the host is public is not a shape: 422 `invalid_url`.)
const WEBHOOK_URL_PATTERN: &str =
    r"^[Hh][Tt][Tt][Pp][Ss]?://[^@/?#\\\s\x00-\x1f\x7f-\x9f]+([/?#\\][^\s\x00-\x1f\x7f-\x9f]*)?$";
/// The same for an engine endpoint: ws(s).
const ENGINE_URL_PATTERN: &str =
    r"^[Ww][Ss][Ss]?://[^@/?#\\\s\x00-\x1f\x7f-\x9f]+([/?#\\][^\s\x00-\x1f\x7f-\x9f]*)?$";
/// A voice name (`validate::voice`).
pub const VOICE_PATTERN: &str = r"^[A-Za-z0-9._-]+$";
/// `Fields::str_req`: not empty or only whitespace.
const NOT_BLANK_PATTERN: &str = r"\S";

/// Every [`EndedReason`], in declaration order. `ended_reason_index` below
/// matches exhaustively, so a new variant does not compile until listed here.
const ENDED_REASONS: [EndedReason; 12] = [
    EndedReason::HangupRequested,
    EndedReason::CalleeHangup,
    EndedReason::AgentHangup,
    EndedReason::MaxDurationReached,
    EndedReason::NoAnswer,
    EndedReason::Busy,
    EndedReason::Rejected,
    EndedReason::TrunkError,
    EndedReason::MediaLost,
    EndedReason::EngineError,
    EndedReason::DispatchUnavailable,
    EndedReason::SilenceTimeout,
];

#[allow(dead_code)] // exists for its exhaustiveness; the tests call it
fn ended_reason_index(r: EndedReason) -> usize {
    match r {
        EndedReason::HangupRequested => 0,
        EndedReason::CalleeHangup => 1,
        EndedReason::AgentHangup => 2,
        EndedReason::MaxDurationReached => 3,
        EndedReason::NoAnswer => 4,
        EndedReason::Busy => 5,
        EndedReason::Rejected => 6,
        EndedReason::TrunkError => 7,
        EndedReason::MediaLost => 8,
        EndedReason::EngineError => 9,
        EndedReason::DispatchUnavailable => 10,
        EndedReason::SilenceTimeout => 11,
    }
}

/// The whole document. Cheap enough to build per request (a few hundred nodes).
pub fn spec() -> Value {
    let mut paths = Map::new();
    for (method, pattern, id) in ROUTES {
        let item = paths
            .entry(pattern.to_string())
            .or_insert_with(|| path_item(pattern));
        item[method.to_ascii_lowercase().as_str()] = operation(*id);
    }
    json!({
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "info": {
            "title": "voxline API",
            "version": env!("CARGO_PKG_VERSION"),
            "summary": "Outbound AI phone calls: place a call to a phone number and an AI agent talks.",
            "description": info_description(),
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"}
        },
        "tags": [
            {"name": "calls", "description": "Place, inspect and hang up calls. Authenticated with a tenant API key."},
            {"name": "admin", "description": "Operator API: tenants, agents, API keys and webhook endpoints. Authenticated with the admin token."},
            {"name": "webhooks", "description": "The tenant's webhook delivery log and redelivery. Authenticated with a tenant API key."},
            {"name": "meta", "description": "Health and this document. No authentication."}
        ],
        "paths": paths,
        "webhooks": webhook_operations(),
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "ak_...",
                    "description": "A tenant API key (`ak_` then 32 characters) minted by `POST /admin/tenants/{tenant_id}/api-keys`, sent as `Authorization: Bearer ak_...`.\n\nA key minted with `require_signature: true` must also sign every request: `X-Signature: t=<unix seconds>,v2=<lowercase hex HMAC-SHA256(signing_secret, \"{t}\\n{METHOD}\\n{path and query}\\n{raw body}\")>` (`\\n` is one line feed; the key is the UTF-8 bytes of the `signing_secret` string; `METHOD` in uppercase; `path and query` is the path, then `?` and the query string only when there is one, exactly as sent, e.g. `/v1/calls?status=queued&limit=50`; the body is the exact bytes sent, empty for GET). Missing, malformed, wrong, or `t` more than 300 s from now: 401 `invalid_request_signature`; only a `v1` (the retired body-only scheme): 401 `signature_version_unsupported`. Each signature is accepted once: the same `X-Signature` again within the window is 401 `replayed_request`. Unknown `k=v` entries are ignored, several `v2` may be given, and `v1` beside a `v2` is ignored.\n\nAn unknown or revoked key counts against the client address (`CF-Connecting-IP`; an IPv6 address by its /64): after 20 in 5 minutes (the defaults) further failing requests from it get 429 `too_many_failed_attempts` with `Retry-After` until the window ends; valid keys are not affected."
                },
                "adminBearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The operator's admin token (the `ADMIN_TOKEN` secret of the Worker), sent as `Authorization: Bearer <token>`. Without that secret the admin API refuses every request. A wrong token counts against the client address (`CF-Connecting-IP`; an IPv6 address by its /64): after 20 in 5 minutes (the defaults) every admin request from it, right token or not, gets 429 `too_many_failed_attempts` with `Retry-After` until the window ends."
                }
            },
            "schemas": schemas()
        }
    })
}

/// What the edge POSTs to webhook endpoints (OpenAPI 3.1 `webhooks`).
fn webhook_operations() -> Value {
    let mut out = Map::new();
    for event in WEBHOOK_EVENTS {
        let (schema, what) = match *event {
            "transcript.saved" => ("WebhookTranscriptEvent", "Sent once when an answered call has ended, with the whole transcript."),
            "recording.saved" => ("WebhookRecordingEvent", "Sent when a call's recording (`record: true`) has been uploaded and can be downloaded."),
            _ => ("WebhookCallEvent", "A change of the call's status."),
        };
        out.insert(event.to_string(), json!({"post": {
            "operationId": format!("webhook_{}", event.replace('.', "_")),
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
    Value::Object(out)
}

fn info_description() -> String {
    format!(
        "All request and response bodies are JSON. Request bodies must be sent with \
`Content-Type: application/json`, be at most {MAX_BODY_BYTES} bytes and be a JSON object without \
unknown fields; in them `null` means the same as leaving an optional field out.\n\n\
Every failure has one shape, `{{\"error\": {{\"code\", \"message\", \"field\"}}}}` (see the `Error` schema): \
`code` is stable and machine-readable, `field` names the offending field or query parameter or is null. \
Any path that is not listed here answers 404 `not_found`; a listed path called with another method \
answers 405 `method_not_allowed` with an `Allow` header.\n\n\
Tenant-scoped objects are only visible to their own tenant: another tenant's id answers 404, never 403.\n\n\
`/v1/sidecar/*` is the media sidecars' HMAC-signed dispatch link (see `voxline_shared::protocol`), not part of this API; \
its error codes appear in the `Error` schema's `code` enum."
    )
}

// ---- schema helpers ----

fn engine_key_doc(what: &str) -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": crate::engine_keys::MAX_KEY_CHARS, "pattern": "^[!-~]+$", "writeOnly": true,
        "description": format!("{what} Printable ASCII without spaces (422 `invalid_value`). Sealed (AES-256-GCM) before it is stored, handed only to the sidecar that runs the call, never returned or logged; a deployment without the `VOXLINE_SEALING_KEY` secret refuses it (503 `engine_keys_unavailable`).")})
}

fn engine_url_doc(what: &str) -> Value {
    json!({"type": "string", "maxLength": crate::engine_keys::MAX_BASE_URL_CHARS, "pattern": ENGINE_URL_PATTERN,
        "description": format!("{what} `wss://` to a public host (`ws://` loopback in local development only); anything else is 422 `invalid_url`. The engine's path (`/v1/realtime`, Gemini's BidiGenerateContent) is appended.")})
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// Lets a schema also be `null`: `"type": "x"` becomes `["x", "null"]` and an `enum` gains `null`.
fn nullable(mut s: Value) -> Value {
    // No `type` to widen (e.g. a `$ref` in `allOf`): any of it or null.
    if s.get("type").is_none() && s.get("enum").is_none() {
        let description = s.as_object_mut().and_then(|o| o.remove("description"));
        let mut either = json!({"anyOf": [s, {"type": "null"}]});
        if let Some(d) = description {
            either["description"] = d;
        }
        return either;
    }
    match s.get("type").cloned() {
        Some(Value::String(t)) => s["type"] = json!([t, "null"]),
        Some(Value::Array(mut ts)) => {
            ts.push(json!("null"));
            s["type"] = Value::Array(ts);
        }
        _ => {}
    }
    if let Some(Value::Array(e)) = s.get_mut("enum") {
        e.push(Value::Null);
    }
    s
}

fn with_description(mut s: Value, d: &str) -> Value {
    s["description"] = json!(d);
    s
}

fn string_max(max: usize) -> Value {
    json!({"type": "string", "maxLength": max})
}

fn id_schema(prefix: &str) -> Value {
    json!({"type": "string", "pattern": format!("^{prefix}_[0-9a-f]{{10,40}}$")})
}

fn timestamp() -> Value {
    json!({"type": "string", "format": "date-time", "description": "RFC 3339 in UTC with milliseconds, e.g. `2026-01-02T15:04:05.000Z`."})
}

fn object_const(name: &str) -> Value {
    json!({"type": "string", "const": name})
}

fn int_range((min, max, default): (i64, i64, i64)) -> Value {
    json!({"type": "integer", "minimum": min, "maximum": max, "default": default})
}

fn props(fields: Vec<(&str, Value)>) -> Map<String, Value> {
    fields
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

/// A response record: every property is always present (optional ones as `null`).
fn record(description: &str, fields: Vec<(&str, Value)>) -> Value {
    let properties = props(fields);
    let required: Vec<&String> = properties.keys().collect();
    json!({"type": "object", "description": description, "required": required, "properties": properties})
}

/// A request body: closed (`additionalProperties: false`), with these required.
fn input(description: &str, fields: Vec<(&str, Value)>, required: &[&str]) -> Value {
    json!({"type": "object", "description": description, "additionalProperties": false,
           "required": required, "properties": props(fields)})
}

fn list_of(description: &str, item: &str) -> Value {
    record(
        description,
        vec![
            ("object", object_const("list")),
            ("data", json!({"type": "array", "items": schema_ref(item)})),
            (
                "has_more",
                json!({"type": "boolean", "description": "True when `next_cursor` leads to more items."}),
            ),
            (
                "next_cursor",
                nullable(
                    json!({"type": "string", "description": "Pass as `cursor` to get the next page; null on the last page."}),
                ),
            ),
        ],
    )
}

fn status_names() -> Vec<&'static str> {
    CallStatus::ALL.iter().map(|s| s.as_str()).collect()
}

fn ended_reason_names() -> Vec<Value> {
    ENDED_REASONS
        .iter()
        .map(|r| serde_json::to_value(r).unwrap_or(Value::Null))
        .collect()
}

fn error_code_description() -> String {
    let mut d = String::from("Stable machine code. Codes never change meaning once shipped:\n");
    for c in ErrorCode::ALL {
        d.push_str(&format!(
            "- `{}` ({}): {}\n",
            c.as_str(),
            c.http_status(),
            c.describe()
        ));
    }
    d
}

// ---- components ----

fn schemas() -> Value {
    let engine = json!({"type": "string", "enum": Engine::NAMES,
        "description": "Speech engine: `local` (offline VAD, recognition, scripted dialog and synthesis), `openai_realtime` or `gemini_live`."});
    let language = json!({"type": "string", "maxLength": LANGUAGE_MAX, "pattern": validate::LANGUAGE_PATTERN,
        "description": "A BCP-47 language tag, well-formed as RFC 5646's `langtag` (language, then optional script, region, variants, extensions, private use), e.g. `en`, `en-US`, `pt-BR`."});
    let voice = json!({"type": "string", "maxLength": VOICE_MAX, "pattern": VOICE_PATTERN,
        "description": "Engine voice name: letters, digits, `-`, `_` or `.`."});
    let prompt = with_description(
        string_max(MAX_PROMPT_CHARS),
        "Instructions for the AI agent.",
    );
    let model = with_description(
        string_max(MODEL_MAX),
        "Engine model name, passed through to the engine.",
    );
    let phone = json!({"type": "string", "pattern": E164_PATTERN,
        "description": "E.164: `+`, then 7 to 15 digits without spaces or punctuation, the first not 0.", "examples": ["+14155550100"]});
    let events = json!({"type": "array", "maxItems": WEBHOOK_EVENTS.len(),
        "items": {"type": "string", "maxLength": WEBHOOK_EVENT_MAX, "enum": WEBHOOK_EVENTS}});

    let mut s = Map::new();
    let mut add = |name: &str, v: Value| {
        s.insert(name.to_string(), v);
    };

    add(
        "CallStatus",
        json!({"type": "string", "enum": status_names(), "description":
        "`queued`: waiting for a media sidecar. `scheduled`: waiting for `schedule_at`. `dialing`, `ringing`, \
`in_progress`: live. `completed`, `failed`, `no_answer`, `busy`, `cancelled`: ended, never change again."}),
    );
    add("Engine", engine.clone());
    add(
        "EndedReason",
        json!({"type": "string", "enum": ended_reason_names(), "description": "Why a call ended."}),
    );
    add(
        "WebhookEvent",
        json!({"type": "string", "enum": WEBHOOK_EVENTS}),
    );

    add(
        "Error",
        record(
            "The one error shape of the API.",
            vec![(
                "error",
                record(
                    "The failure.",
                    vec![
                        (
                            "code",
                            json!({"type": "string", "enum": ErrorCode::ALL.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
                            "description": error_code_description()}),
                        ),
                        (
                            "message",
                            json!({"type": "string", "minLength": 1, "description": "For humans; wording may change."}),
                        ),
                        (
                            "field",
                            nullable(
                                json!({"type": "string", "description": "The body field or query parameter at fault, if any."}),
                            ),
                        ),
                    ],
                ),
            )],
        ),
    );
    add(
        "OpenApiDocument",
        json!({"type": "object", "required": ["openapi", "info", "paths", "components"],
        "properties": {"openapi": {"type": "string", "pattern": "^3\\.1\\."}}, "additionalProperties": true,
        "description": "An OpenAPI 3.1 document: this one."}),
    );
    add(
        "Health",
        record(
            "Liveness.",
            vec![("ok", json!({"type": "boolean", "const": true}))],
        ),
    );

    let call_fields = |full: bool| {
        let mut f = vec![
            ("id", id_schema("call")),
            ("object", object_const("call")),
            ("status", schema_ref("CallStatus")),
            ("phone", phone.clone()),
            ("agent_id", id_schema("agt")),
            ("created_at", timestamp()),
            ("updated_at", timestamp()),
            (
                "ended_reason",
                nullable(json!({"type": "string", "enum": ended_reason_names(),
                "description": "Why the call ended; also set while a retry is pending (status `scheduled` with `next_attempt_at`)."})),
            ),
        ];
        if full {
            f.extend([
                ("name", nullable(json!({"type": "string"}))),
                ("email", nullable(json!({"type": "string"}))),
                ("metadata", nullable(json!({"type": "object", "description": "Your own data, returned as given."}))),
                ("system_prompt", nullable(prompt.clone())),
                ("voice", nullable(json!({"type": "string"}))),
                ("language", json!({"type": "string"})),
                ("engine", schema_ref("Engine")),
                ("model", nullable(json!({"type": "string"}))),
                ("max_seconds", json!({"type": "integer", "minimum": MAX_SECONDS.0, "maximum": MAX_SECONDS.1})),
                ("silence_timeout_seconds", json!({"type": "integer", "minimum": SILENCE_TIMEOUT.0, "maximum": SILENCE_TIMEOUT.1,
                    "description": "Hang up (`ended_reason` `silence_timeout`) after this long with neither side speaking."})),
                ("retries", json!({"type": "integer", "minimum": RETRIES.0, "maximum": RETRIES.1})),
                ("retry_delay_minutes", json!({"type": "integer", "minimum": RETRY_DELAY_MINUTES.0, "maximum": RETRY_DELAY_MINUTES.1})),
                ("schedule_at", nullable(timestamp())),
                ("record", json!({"type": "boolean", "description": "A stereo WAV recording (callee and agent channels) was requested."})),
                ("region", json!({"type": "string", "description": "The dispatch region whose media sidecars dial this call."})),
                ("attempts", json!({"type": "integer", "minimum": 0, "description": "Dial attempts started so far (1 once first dialled)."})),
                ("dispatched_at", nullable(with_description(timestamp(), "When the current or last attempt was handed to a sidecar."))),
                ("ringing_at", nullable(with_description(timestamp(), "When the callee's phone started ringing on the current or last attempt."))),
                ("answered_at", nullable(with_description(timestamp(), "When the current or last attempt was answered."))),
                ("next_attempt_at", nullable(with_description(timestamp(), "Set while waiting to redial after an unsuccessful attempt."))),
                ("sip_code", nullable(json!({"type": "integer", "minimum": 100, "maximum": 699,
                    "description": "The SIP final response code of the last attempt, when it failed with one (e.g. 486 busy)."}))),
                ("hangup_requested_at", nullable(timestamp())),
                ("ended_at", nullable(timestamp())),
                ("scheduled_reason", nullable(json!({"type": "string", "enum": ["calling_window"],
                    "description": "Why `schedule_at` differs from what was asked: `calling_window`, the call would have started outside its agent's calling window and was moved to the window's next start."}))),
                ("engine_base_url", nullable(json!({"type": "string", "description": "Where the engine connects (the call's or its agent's); null: the engine's default."}))),
                ("engine_api_key_set", json!({"type": "boolean", "description": "An engine API key came with the call or its agent. The key is never returned."})),
            ]);
        }
        f
    };
    add(
        "TranscriptTurn",
        record(
            "One turn of the conversation.",
            vec![
                ("role", json!({"type": "string", "enum": ["ai", "user"]})),
                ("text", json!({"type": "string"})),
                (
                    "start_ms",
                    json!({"type": "integer", "minimum": 0, "description": "Offset from the moment the call was answered."}),
                ),
                ("end_ms", json!({"type": "integer", "minimum": 0})),
            ],
        ),
    );
    let transcript_fields = || {
        vec![
            ("object", object_const("transcript")),
            ("call_id", id_schema("call")),
            (
                "turns",
                json!({"type": "array", "items": schema_ref("TranscriptTurn")}),
            ),
            (
                "summary",
                nullable(
                    json!({"type": "string", "description": "What the engine concluded, when it gives one (the local engine: the caller's last answer and the script's outcome)."}),
                ),
            ),
            (
                "outcome",
                nullable(
                    json!({"type": "string", "description": "A short outcome when the engine gives one (the local engine: the first expected phrase of the script rule the answer matched, e.g. `yes`; `no_match`; or `no_answer` when the callee never answered the script)."}),
                ),
            ),
            (
                "text",
                json!({"type": "string", "description": "The same turns as plain text lines."}),
            ),
        ]
    };
    add(
        "Transcript",
        record("A call's transcript.", transcript_fields()),
    );
    add(
        "Recording",
        record(
            "A call's stored recording (the newest answered attempt's).",
            vec![
                ("object", object_const("recording")),
                ("call_id", id_schema("call")),
                ("attempt", json!({"type": "integer", "minimum": 1})),
                ("content_type", json!({"const": "audio/wav"})),
                ("bytes", json!({"type": "integer", "minimum": 44})),
                (
                    "sha256",
                    json!({"type": "string", "pattern": "^[0-9a-f]{64}$", "description": "SHA-256 of the WAV, checked by storage when it was uploaded."}),
                ),
                ("duration_ms", json!({"type": "integer", "minimum": 0})),
                (
                    "channels",
                    json!({"type": "object", "description": "Stereo: the AI (what the sidecar sent) on the left channel, the callee on the right.",
            "properties": {"left": {"const": "ai"}, "right": {"const": "callee"}}, "required": ["left", "right"], "additionalProperties": false}),
                ),
                ("saved_at", timestamp()),
                (
                    "url",
                    json!({"type": "string", "description": "`GET` it with your API key for the WAV."}),
                ),
            ],
        ),
    );
    add("Call", record(
        "A call. Agent settings (prompt, voice, language, engine, model) are resolved when the call is created, so later agent edits do not change it.",
        call_fields(true),
    ));
    add(
        "CallSummary",
        record("A call as listed (a subset of `Call`).", call_fields(false)),
    );
    add(
        "CallList",
        list_of("A page of calls, newest first.", "CallSummary"),
    );

    add(
        "Tenant",
        record(
            "A customer account.",
            vec![
                ("id", id_schema("ten")),
                ("object", object_const("tenant")),
                ("name", json!({"type": "string"})),
                (
                    "default_agent_id",
                    nullable(with_description(
                        id_schema("agt"),
                        "The agent used when a call names none.",
                    )),
                ),
                (
                    "disabled",
                    json!({"type": "boolean", "description": "A disabled tenant's API keys are refused with 403 `tenant_disabled`."}),
                ),
                ("created_at", timestamp()),
                ("rate_limits", schema_ref("RateLimits")),
                (
                    "max_concurrent_calls",
                    nullable(
                        json!({"type": "integer", "minimum": 1, "maximum": MAX_CONCURRENT_CALLS_MAX,
            "description": "Most calls of this tenant leased to a sidecar or live at once; null: unlimited. Calls over it wait `queued` (the region's queue skips them until one ends), or are refused with 429 `concurrency_limit_reached` when placed with `on_concurrency_limit: reject`."}),
                    ),
                ),
            ],
        ),
    );
    add(
        "RateLimit",
        json!({"type": "object", "additionalProperties": false, "required": ["limit", "window_seconds"],
        "description": "At most `limit` requests per fixed window of `window_seconds` (windows are aligned on multiples of `window_seconds` since the unix epoch).",
        "properties": {
            "limit": {"type": "integer", "minimum": 1, "maximum": traffic::LIMIT_MAX},
            "window_seconds": {"type": "integer", "minimum": 1, "maximum": traffic::WINDOW_SECONDS_MAX}
        }}),
    );
    let d = traffic::RateLimits::default();
    let limit_doc = |what: &str, l: traffic::RateLimit| {
        with_description(
            schema_ref("RateLimit"),
            &format!("{what} Default: {} per {} s.", l.limit, l.window_seconds),
        )
    };
    add(
        "RateLimits",
        json!({"type": "object", "required": ["per_key", "per_ip", "per_number"],
        "description": "The tenant's rate limits, enforced exactly (a Durable Object per tenant). Every `/v1` request counts against its API key and client IP; `POST /v1/calls` with a valid body also against its destination number. Over a limit: 429 `rate_limited` with `Retry-After`; a refused request consumes nothing.",
        "properties": {
            "per_key": limit_doc("Requests per API key.", d.per_key),
            "per_ip": limit_doc("Requests per client IP (`CF-Connecting-IP`).", d.per_ip),
            "per_number": limit_doc("Call requests per destination number; an agent's `per_number_limit` overrides it for that agent's calls.", d.per_number)
        }}),
    );

    let agent_fields = vec![
        ("id", id_schema("agt")),
        ("object", object_const("agent")),
        ("name", json!({"type": "string"})),
        ("system_prompt", nullable(prompt.clone())),
        ("voice", nullable(json!({"type": "string"}))),
        ("language", json!({"type": "string"})),
        ("default_engine", schema_ref("Engine")),
        ("model", nullable(json!({"type": "string"}))),
        ("enabled", json!({"type": "boolean"})),
        (
            "default",
            json!({"type": "boolean", "description": "Whether this is the tenant's default agent."}),
        ),
        ("created_at", timestamp()),
        ("updated_at", timestamp()),
        (
            "per_number_limit",
            json!({"anyOf": [schema_ref("RateLimit"), {"type": "null"}],
            "description": "Overrides the tenant's `per_number` rate limit for this agent's calls; null: the tenant's applies."}),
        ),
        (
            "calling_window",
            json!({"anyOf": [schema_ref("CallingWindow"), {"type": "null"}],
            "description": "When this agent's calls may start; null: any time."}),
        ),
        (
            "engine_base_url",
            nullable(
                json!({"type": "string", "description": "Where this agent's engine connects; null: the engine's default."}),
            ),
        ),
        (
            "engine_api_key_set",
            json!({"type": "boolean", "description": "The agent has an engine API key. The key is never returned."}),
        ),
        (
            "silence_timeout_seconds",
            nullable(
                json!({"type": "integer", "minimum": SILENCE_TIMEOUT.0, "maximum": SILENCE_TIMEOUT.1,
            "description": "For this agent's calls unless a call sets its own; null: 30."}),
            ),
        ),
    ];
    add(
        "Agent",
        record(
            "An AI agent: the defaults a call starts from.",
            agent_fields,
        ),
    );
    let calling_window_doc = "Weekdays and a wall-clock span in an IANA time zone during which the agent's calls may start. \
A call placed (or with a `schedule_at`) outside it is moved to the next window start (`scheduled`, `scheduled_reason: calling_window`) \
or, with `outside_window: reject`, refused (422 `outside_calling_window`); a retry that would fall outside waits for the next start too. \
`end` before `start` crosses midnight (the window belongs to the day it starts); `end` may be `24:00`; `start` and `end` must differ. \
Times are wall-clock times of that day: one inside a DST gap moves forward by the gap, one that occurs twice means the first. \
A call already queued inside the window is not stopped when the window closes.";
    add(
        "CallingWindow",
        json!({"type": "object", "additionalProperties": false, "required": ["days", "start", "end", "time_zone"],
        "description": calling_window_doc,
        "properties": {
            "days": {"type": "array", "minItems": 1, "maxItems": 7, "uniqueItems": true, "items": {"type": "string", "enum": calling_window::DAY_NAMES},
                     "description": "Days the window opens on (returned in week order)."},
            "start": {"type": "string", "pattern": calling_window::TIME_PATTERN, "description": "Opening time, `HH:MM` (24 h)."},
            "end": {"type": "string", "pattern": calling_window::END_PATTERN, "description": "Closing time, `HH:MM` or `24:00`; before `start`: the next day."},
            "time_zone": {"type": "string", "maxLength": calling_window::TIME_ZONE_MAX, "enum": calling_window::time_zone_names(), "description": "IANA time zone name, e.g. `Europe/Berlin`, spelled exactly as in the time zone database."}
        }}),
    );
    add(
        "AgentList",
        list_of("All agents of a tenant (one page).", "Agent"),
    );

    let key_fields = || {
        vec![
            ("id", id_schema("key")),
            ("object", object_const("api_key")),
            ("name", nullable(json!({"type": "string"}))),
            (
                "prefix",
                json!({"type": "string", "pattern": "^ak_", "description": "The first characters of the key, to recognise it."}),
            ),
            (
                "require_signature",
                json!({"type": "boolean", "description": "Requests with this key must carry `X-Signature` (see the `bearerAuth` scheme)."}),
            ),
            ("created_at", timestamp()),
            ("revoked_at", nullable(timestamp())),
        ]
    };
    add(
        "ApiKey",
        record(
            "An API key. The key itself is only ever shown once, when it is created.",
            key_fields(),
        ),
    );
    let mut created = key_fields();
    created.push((
        "key",
        json!({"type": "string", "pattern": "^ak_[A-Za-z0-9_-]{32}$",
        "description": "The clear key. Shown only in this response; store it now."}),
    ));
    created.push(("signing_secret", nullable(json!({"type": "string", "pattern": "^sks_[A-Za-z0-9_-]{43}$",
        "description": "With `require_signature`: the HMAC key (its UTF-8 bytes, as is) that signs this key's requests. Shown only in this response; null otherwise."}))));
    add(
        "ApiKeyCreated",
        record("A new API key, with the clear key.", created),
    );
    add(
        "ApiKeyList",
        list_of("All API keys of a tenant, revoked ones included.", "ApiKey"),
    );

    let webhook_fields = || {
        vec![
            ("id", id_schema("wh")),
            ("object", object_const("webhook_endpoint")),
            ("url", json!({"type": "string"})),
            ("events", json!({"type": "array", "items": schema_ref("WebhookEvent"), "description": "Empty means every event."})),
            ("enabled", json!({"type": "boolean"})),
            ("disabled_reason", nullable(json!({"type": "string", "description": "Set when the edge disabled the endpoint itself (it answered 410 Gone); cleared by enabling it."}))),
            ("retry_schedule", json!({"type": "array", "items": {"type": "integer", "minimum": 1},
                "description": "Seconds to wait after each failed attempt; one retry per entry."})),
            ("previous_secret_expires_at", nullable(with_description(timestamp(),
                "After a rotation: until this time deliveries are signed with the previous secret too (two signatures)."))),
            ("created_at", timestamp()),
            ("updated_at", timestamp()),
        ]
    };
    add(
        "WebhookEndpoint",
        record(
            "Where call events are delivered (Standard Webhooks signatures).",
            webhook_fields(),
        ),
    );
    let mut created = webhook_fields();
    created.push(("secret", json!({"type": "string", "pattern": "^whsec_[A-Za-z0-9+/]+={0,2}$",
        "description": "The signing secret (Standard Webhooks `whsec_` + base64 of the HMAC key). Shown only in this response."})));
    add(
        "WebhookEndpointCreated",
        record("A webhook endpoint with its (new) signing secret.", created),
    );
    add(
        "WebhookEndpointList",
        list_of("All webhook endpoints of a tenant.", "WebhookEndpoint"),
    );

    let delivery_status = json!({"type": "string", "enum": DeliveryStatus::NAMES,
        "description": "`pending`: queued or waiting for a retry. `delivered`: a 2xx answer. `failed`: gave up (retry schedule exhausted, 410 Gone, endpoint disabled, deleted or its URL refused)."});
    add("WebhookDeliveryStatus", delivery_status);
    let delivery_fields = |full: bool| {
        let mut f = vec![
            ("id", id_schema("dlv")),
            ("object", object_const("webhook_delivery")),
            ("endpoint_id", id_schema("wh")),
            ("event_type", schema_ref("WebhookEvent")),
            ("call_id", nullable(id_schema("call"))),
            ("status", schema_ref("WebhookDeliveryStatus")),
            ("attempt_count", json!({"type": "integer", "minimum": 0})),
            (
                "last_status_code",
                nullable(
                    json!({"type": "integer", "description": "The HTTP status of the last attempt; null if it got no answer."}),
                ),
            ),
            ("created_at", timestamp()),
            ("updated_at", timestamp()),
        ];
        if full {
            f.extend([
                ("event_id", json!({"type": "string", "pattern": "^evt_", "description": "The `webhook-id` header: the same on every attempt and redelivery."})),
                ("next_attempt_at", nullable(timestamp())),
                ("last_error", nullable(json!({"type": "string"}))),
                ("payload", json!({"description": "The exact body sent.", "anyOf": [
                    schema_ref("WebhookCallEvent"), schema_ref("WebhookTranscriptEvent"), schema_ref("WebhookRecordingEvent")]})),
                ("attempts", json!({"type": "array", "items": schema_ref("WebhookAttempt"), "description": "Every attempt, oldest first."})),
            ]);
        }
        f
    };
    add(
        "WebhookAttempt",
        record(
            "One delivery attempt.",
            vec![
                ("attempt", json!({"type": "integer", "minimum": 1})),
                ("at", timestamp()),
                ("url", json!({"type": "string"})),
                (
                    "status_code",
                    nullable(
                        json!({"type": "integer", "description": "The receiver's HTTP status; null when none came (refused, timed out after 15 s)."}),
                    ),
                ),
                ("error", nullable(json!({"type": "string"}))),
                ("duration_ms", json!({"type": "integer", "minimum": 0})),
                (
                    "manual",
                    json!({"type": "boolean", "description": "Made by a manual redelivery."}),
                ),
            ],
        ),
    );
    add(
        "WebhookDelivery",
        record(
            "One event's delivery to one endpoint, with every attempt.",
            delivery_fields(true),
        ),
    );
    add(
        "WebhookDeliverySummary",
        record(
            "A delivery as listed (a subset of `WebhookDelivery`).",
            delivery_fields(false),
        ),
    );
    add(
        "WebhookDeliveryList",
        list_of(
            "A page of deliveries, newest first.",
            "WebhookDeliverySummary",
        ),
    );
    let maybe_seconds =
        |d: &str| nullable(json!({"type": "number", "minimum": 0, "description": d}));
    add("WebhookCallEvent", record(
        "The body POSTed to webhook endpoints for call events, signed per Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`).",
        vec![
            ("id", json!({"type": "string", "pattern": "^evt_", "description": "Equals the `webhook-id` header; use it to drop duplicates (delivery is at least once)."})),
            ("type", schema_ref("WebhookEvent")),
            ("timestamp", with_description(timestamp(), "When the event happened.")),
            ("data", record("The call at the time of the event.", vec![
                ("object", object_const("call")),
                ("id", id_schema("call")),
                ("status", schema_ref("CallStatus")),
                ("outcome", nullable(json!({"type": "string", "enum": status_names(), "description": "The final status; null until the call ends."}))),
                ("ended_reason", nullable(json!({"type": "string", "enum": ended_reason_names()}))),
                ("sip_code", nullable(json!({"type": "integer"}))),
                ("attempts", json!({"type": "integer", "minimum": 0})),
                ("phone", phone.clone()),
                ("name", nullable(json!({"type": "string"}))),
                ("agent_id", id_schema("agt")),
                ("metadata", nullable(json!({"type": "object", "description": "Your metadata, as given when placing the call."}))),
                ("schedule_at", nullable(timestamp())),
                ("created_at", timestamp()),
                ("dispatched_at", nullable(timestamp())),
                ("ringing_at", nullable(timestamp())),
                ("answered_at", nullable(timestamp())),
                ("ended_at", nullable(timestamp())),
                ("ring_seconds", maybe_seconds("From dialing (or ringing) to answer or end.")),
                ("talk_seconds", maybe_seconds("From answer to end; null until the call ends or if it was never answered.")),
                ("transcript_url", json!({"type": "string", "description": "The call's transcript (`GET`, with your API key); complete once `transcript.saved` was sent."})),
                ("recording_url", json!({"type": "null", "description": "Always null here: a recording is uploaded after the call ends, and `recording.saved` carries its URL."})),
            ])),
        ],
    ));

    let envelope = |event: &str, data: Value| {
        record(
            &format!("The body POSTed for `{event}`, signed like every event."),
            vec![
                (
                    "id",
                    json!({"type": "string", "pattern": "^evt_", "description": "Equals the `webhook-id` header."}),
                ),
                ("type", json!({"const": event})),
                ("timestamp", timestamp()),
                ("data", data),
            ],
        )
    };
    let mut transcript_data = transcript_fields();
    transcript_data.push((
        "call_status",
        json!({"type": "string", "enum": status_names(), "description": "How the call ended."}),
    ));
    transcript_data.push((
        "url",
        json!({"type": "string", "description": "Where the transcript can be fetched again."}),
    ));
    let transcript_data = record("The call's whole transcript.", transcript_data);
    add(
        "WebhookTranscriptEvent",
        envelope("transcript.saved", transcript_data),
    );
    add(
        "WebhookRecordingEvent",
        envelope("recording.saved", schema_ref("Recording")),
    );

    let sidecar_fields = || {
        vec![
            (
                "id",
                json!({"type": "string", "pattern": SIDECAR_ID_PATTERN}),
            ),
            ("object", object_const("sidecar")),
            (
                "region",
                json!({"type": "string", "pattern": SIDECAR_ID_PATTERN}),
            ),
            ("created_at", timestamp()),
            ("revoked_at", nullable(timestamp())),
        ]
    };
    add("Sidecar", record("A media sidecar's credentials (it signs its requests to /v1/sidecar/* with the secret).", sidecar_fields()));
    let mut created = sidecar_fields();
    created.push((
        "secret",
        json!({"type": "string", "pattern": "^scs_",
        "description": "The HMAC secret the sidecar signs with. Shown only in this response."}),
    ));
    add(
        "SidecarCreated",
        record("A sidecar's new credentials, with its secret.", created),
    );
    add(
        "SidecarList",
        list_of("All sidecars, revoked ones included.", "Sidecar"),
    );

    // ---- request bodies ----
    let not_blank = |max: usize, d: &str| json!({"type": "string", "minLength": 1, "maxLength": max, "pattern": NOT_BLANK_PATTERN, "description": d});
    add("CreateCallRequest", input(
        "A call to place. Only `phone` is required; unset settings come from the agent.",
        vec![
            ("phone", with_description(phone.clone(), "The number to call, E.164 (`+` then 7 to 15 digits, no spaces).")),
            ("name", nullable(with_description(string_max(CALL_NAME_MAX), "The callee's name, for the agent and for you."))),
            ("email", nullable(json!({"type": "string", "maxLength": EMAIL_MAX, "pattern": EMAIL_PATTERN, "description": "The callee's email address."}))),
            ("metadata", nullable(json!({"type": "object", "description": format!("Your own data, returned with the call and in webhooks; at most {MAX_METADATA_BYTES} bytes once serialized (422 `metadata_too_large`).")}))),
            ("agent_id", nullable(json!({"type": "string", "maxLength": ID_FIELD_MAX, "pattern": "^agt_[0-9a-f]{10,40}$",
                "description": "The agent to use; the tenant's default agent when absent (422 `agent_required` if there is none). It must exist (422 `unknown_agent`) and be enabled (409 `agent_disabled`)."}))),
            ("system_prompt", nullable(with_description(string_max(MAX_PROMPT_CHARS), "Overrides the agent's prompt."))),
            ("voice", nullable(with_description(voice.clone(), "Overrides the agent's voice: letters, digits, `-`, `_` or `.`."))),
            ("language", nullable(with_description(language.clone(), "Overrides the agent's language: a BCP-47 tag such as `en-US`."))),
            ("model", nullable(with_description(string_max(MODEL_MAX), "Overrides the agent's model."))),
            ("max_seconds", nullable(with_description(int_range(MAX_SECONDS), "Longest the call may last once answered, in seconds."))),
            ("silence_timeout_seconds", nullable(with_description(int_range(SILENCE_TIMEOUT), "Hang up (`ended_reason` `silence_timeout`) after this long with neither side speaking; default: the agent's, else 30."))),
            ("retries", nullable(with_description(int_range(RETRIES), "Further attempts when nobody answers or the line is busy."))),
            ("retry_delay_minutes", nullable(with_description(int_range(RETRY_DELAY_MINUTES), "Wait between attempts."))),
            ("record", nullable(json!({"type": "boolean", "default": false, "description": "Keep a stereo WAV recording of the call (left: agent, right: callee); `GET /v1/calls/{call_id}/recording` once `recording.saved` was sent."}))),
            ("engine_api_key", nullable(engine_key_doc("This call's engine API key (OpenAI or Gemini), instead of its agent's or the sidecar's."))),
            ("engine_base_url", nullable(engine_url_doc("This call's engine endpoint, instead of its agent's or the engine's default."))),
            ("schedule_at", nullable(json!({"type": "string", "format": "date-time", "maxLength": SCHEDULE_AT_MAX, "pattern": SCHEDULE_AT_PATTERN,
                "description": format!("Place the call at this time instead of now: RFC 3339 in UTC (`Z` or `+00:00`), in the future (422 `schedule_in_past`) and at most {MAX_SCHEDULE_AHEAD_DAYS} days ahead (422 `out_of_range`). The call is `scheduled` until then.")}))),
            ("on_concurrency_limit", nullable(json!({"type": "string", "enum": validate::ON_CONCURRENCY_LIMIT, "default": "queue",
                "description": "When the tenant's `max_concurrent_calls` are taken: `queue` (the call waits `queued` until a slot frees) or `reject` (429 `concurrency_limit_reached`, nothing is created). Counted are the tenant's calls leased or live plus those already due and waiting; a call with a future `schedule_at` is never refused for it."}))),
            ("outside_window", nullable(json!({"type": "string", "enum": validate::OUTSIDE_WINDOW, "default": "schedule",
                "description": "When the agent has a `calling_window` and the call (now, or its `schedule_at`) would start outside it: `schedule` moves it to the next window start (status `scheduled`, `schedule_at` set, `scheduled_reason: calling_window`) or `reject` refuses it with 422 `outside_calling_window`."}))),
        ],
        &["phone"],
    ));
    add(
        "HangupRequest",
        json!({"type": "object", "maxProperties": 0, "additionalProperties": false, "properties": {},
        "description": "Optional; if a body is sent it must be the empty object `{}`."}),
    );
    let max_concurrent = |d: &str| {
        nullable(
            json!({"type": "integer", "minimum": 1, "maximum": MAX_CONCURRENT_CALLS_MAX, "description": d}),
        )
    };
    add(
        "CreateTenantRequest",
        input(
            "A new tenant.",
            vec![
                ("name", not_blank(TENANT_NAME_MAX, "Display name.")),
                (
                    "disabled",
                    nullable(json!({"type": "boolean", "default": false})),
                ),
                (
                    "max_concurrent_calls",
                    max_concurrent("Most calls leased or live at once; absent or null: unlimited."),
                ),
            ],
            &["name"],
        ),
    );
    add("UpdateTenantRequest", input("Fields to change; absent or null fields keep their value.", vec![
        ("name", nullable(not_blank(TENANT_NAME_MAX, "Display name."))),
        ("disabled", nullable(json!({"type": "boolean"}))),
        ("default_agent_id", nullable(json!({"type": "string", "maxLength": ID_FIELD_MAX, "pattern": "^agt_[0-9a-f]{10,40}$",
            "description": "Make this agent of the tenant the default (422 `unknown_agent` if it does not exist). To unset the default, PATCH that agent with `\"default\": false`."}))),
        ("rate_limits", nullable(json!({"type": "object", "description": "Any of `per_key`, `per_ip`, `per_number`, each a `RateLimit` (`{limit, window_seconds}`); those not given keep their value. Out of range or unknown names: 422 `invalid_value` naming the field (e.g. `rate_limits.per_key.limit`).",
            "properties": {"per_key": schema_ref("RateLimit"), "per_ip": schema_ref("RateLimit"), "per_number": schema_ref("RateLimit")}, "additionalProperties": false}))),
        ("max_concurrent_calls", max_concurrent("Most calls leased or live at once. Unlike other fields, an explicit null removes the cap (unlimited); absent keeps it. A change applies to waiting calls once the next call is placed.")),
    ], &[]));
    let agent_input = |creating: bool| {
        let name = if creating {
            not_blank(AGENT_NAME_MAX, "Display name.")
        } else {
            nullable(not_blank(AGENT_NAME_MAX, "Display name."))
        };
        let opt = |v: Value| nullable(v);
        vec![
            ("name", name),
            ("system_prompt", opt(prompt.clone())),
            ("voice", opt(voice.clone())),
            (
                "language",
                opt(if creating {
                    json!({"type": "string", "maxLength": LANGUAGE_MAX, "pattern": validate::LANGUAGE_PATTERN, "default": "en-US", "description": language["description"]})
                } else {
                    language.clone()
                }),
            ),
            (
                "default_engine",
                opt(if creating {
                    json!({"type": "string", "enum": Engine::NAMES, "default": "local", "description": engine["description"]})
                } else {
                    engine.clone()
                }),
            ),
            ("model", opt(model.clone())),
            (
                "enabled",
                opt(if creating {
                    json!({"type": "boolean", "default": true})
                } else {
                    json!({"type": "boolean"})
                }),
            ),
            (
                "per_number_limit",
                opt(
                    json!({"allOf": [schema_ref("RateLimit")], "description": "A `RateLimit` (`{limit, window_seconds}`) overriding the tenant's `per_number` limit for this agent's calls (422 `invalid_value` when out of range)."}),
                ),
            ),
            (
                "calling_window",
                opt(json!({"description": if creating {
                "A `CallingWindow` (`{days, start, end, time_zone}`); absent or null: calls may start any time. Invalid parts: 422 `invalid_value` naming them (e.g. `calling_window.time_zone`)."
            } else {
                "A `CallingWindow` (`{days, start, end, time_zone}`) replacing the current one. Unlike other fields, an explicit null removes the window; absent keeps it. Invalid parts: 422 `invalid_value` naming them."
            },
                "allOf": [schema_ref("CallingWindow")]})),
            ),
            (
                "silence_timeout_seconds",
                opt(
                    json!({"type": "integer", "minimum": SILENCE_TIMEOUT.0, "maximum": SILENCE_TIMEOUT.1,
                "description": "Hang up this agent's calls after this long with neither side speaking, unless a call sets its own (default 30)."}),
                ),
            ),
            (
                "engine_api_key",
                opt(engine_key_doc(if creating {
                    "The engine API key (OpenAI or Gemini) for this agent's calls, unless a call brings its own; absent: the sidecar's own key."
                } else {
                    "Replaces the agent's engine API key. Unlike other fields, an explicit null removes it; absent keeps it."
                })),
            ),
            (
                "engine_base_url",
                opt(engine_url_doc(if creating {
                    "The engine endpoint for this agent's calls, unless a call brings its own."
                } else {
                    "Replaces the agent's engine endpoint. Unlike other fields, an explicit null removes it; absent keeps it."
                })),
            ),
            (
                "default",
                opt(json!({"type": "boolean", "description": if creating {
                    "Make it the tenant's default agent. Defaults to true for a tenant's first agent (when it has no default), else false."
                } else {
                    "true makes it the tenant's default agent; false unsets the default if it is this agent."
                }})),
            ),
        ]
    };
    add(
        "CreateAgentRequest",
        input(
            "A new agent. Only `name` is required.",
            agent_input(true),
            &["name"],
        ),
    );
    add(
        "UpdateAgentRequest",
        input(
            "Fields to change; absent or null fields keep their value.",
            agent_input(false),
            &[],
        ),
    );
    add(
        "CreateApiKeyRequest",
        input(
            "Optional body.",
            vec![
                (
                    "name",
                    nullable(with_description(
                        string_max(API_KEY_NAME_MAX),
                        "A label to recognise the key by.",
                    )),
                ),
                (
                    "require_signature",
                    nullable(json!({"type": "boolean", "default": false,
            "description": "Every request with this key must then be signed (`X-Signature`, see the `bearerAuth` scheme); the response carries the `signing_secret`, once."})),
                ),
            ],
            &[],
        ),
    );
    let url_doc = "Where to POST events: https to a public host (private, loopback, link-local, CGNAT and metadata addresses, \
internal names, numeric IPv4 forms, IPv6 forms embedding an IPv4 address and `user:password@` credentials are refused, \
422 `invalid_url`; checked again before every delivery); in local development also http or https to loopback. Names that resolve to private addresses cannot be detected from a Worker.";
    let url = json!({"type": "string", "minLength": 1, "maxLength": WEBHOOK_URL_MAX, "pattern": WEBHOOK_URL_PATTERN, "description": url_doc});
    let schedule = |with_default: bool| {
        let mut s = json!({"type": "array", "maxItems": delivery::MAX_RETRY_STEPS,
            "items": {"type": "integer", "minimum": delivery::MIN_RETRY_STEP_DEV, "maximum": delivery::MAX_RETRY_STEP},
            "description": format!("Seconds to wait after each failed attempt, one retry per entry (empty: no retries). Each step at least {} s in production ({} s in local development), at most {} s; a receiver's longer `Retry-After` wins.",
                delivery::MIN_RETRY_STEP_PROD, delivery::MIN_RETRY_STEP_DEV, delivery::MAX_RETRY_STEP)});
        if with_default {
            s["default"] = json!(crate::model::DEFAULT_RETRY_SCHEDULE);
        }
        nullable(s)
    };
    add(
        "CreateWebhookRequest",
        input(
            "A new webhook endpoint.",
            vec![
                ("url", url.clone()),
                (
                    "events",
                    nullable(with_description(
                        events.clone(),
                        "Events to deliver; empty or absent means every event.",
                    )),
                ),
                (
                    "enabled",
                    nullable(json!({"type": "boolean", "default": true})),
                ),
                ("retry_schedule", schedule(true)),
            ],
            &["url"],
        ),
    );
    add("UpdateWebhookRequest", input("Fields to change; absent or null fields keep their value. Enabling clears `disabled_reason`.", vec![
        ("url", nullable(url)),
        ("events", nullable(with_description(events, "Events to deliver; empty means every event."))),
        ("enabled", nullable(json!({"type": "boolean"}))),
        ("retry_schedule", schedule(false)),
    ], &[]));
    add("RotateWebhookSecretRequest", input("Optional body.", vec![
        ("overlap_seconds", nullable(with_description(
            int_range((0, delivery::MAX_ROTATION_OVERLAP_SECONDS as i64, delivery::DEFAULT_ROTATION_OVERLAP_SECONDS as i64)),
            "How long deliveries are also signed with the previous secret (both signatures, space-separated in `webhook-signature`). 0 retires it at once."))),
    ], &[]));
    add("CreateSidecarRequest", input("Credentials for a media sidecar of a region. Creating an existing id rotates its secret.", vec![
        ("sidecar_id", json!({"type": "string", "maxLength": 64, "pattern": SIDECAR_ID_PATTERN})),
        ("region", json!({"type": "string", "maxLength": 64, "pattern": SIDECAR_ID_PATTERN,
            "description": "The dispatch region whose calls this sidecar dials."})),
    ], &["sidecar_id", "region"]));
    Value::Object(s)
}

// ---- operations ----

#[derive(Clone, Copy, PartialEq)]
enum Auth {
    None,
    ApiKey,
    Admin,
}

struct Op {
    value: Value,
    auth: Auth,
    success: Vec<(u16, Value)>,
    errors: Vec<ErrorCode>,
}

fn op(operation_id: &str, tag: &str, auth: Auth, summary: &str, description: &str) -> Op {
    Op {
        value: json!({"operationId": operation_id, "tags": [tag], "summary": summary, "description": description}),
        auth,
        success: Vec::new(),
        errors: Vec::new(),
    }
}

impl Op {
    fn ok(mut self, status: u16, description: &str, schema: &str) -> Op {
        self.success.push((status, json!({"description": description, "content": {"application/json": {"schema": schema_ref(schema)}}})));
        self
    }

    /// 200 as JSON (`schema`) or as plain text (`text_description`).
    fn ok_json_or_text(mut self, description: &str, schema: &str, text_description: &str) -> Op {
        self.success.push((
            200,
            json!({"description": description, "content": {
            "application/json": {"schema": schema_ref(schema)},
            "text/plain": {"schema": {"type": "string", "description": text_description}}}}),
        ));
        self
    }

    /// A non-JSON body (`content_type`), with response headers.
    fn ok_binary(mut self, description: &str, content_type: &str, headers: Value) -> Op {
        self.success.push((200, json!({"description": description, "headers": headers,
            "content": {content_type: {"schema": {"type": "string", "contentMediaType": content_type}}}})));
        self
    }

    fn ok_with_headers(
        mut self,
        status: u16,
        description: &str,
        schema: &str,
        headers: Value,
    ) -> Op {
        self.success.push((
            status,
            json!({"description": description, "headers": headers,
            "content": {"application/json": {"schema": schema_ref(schema)}}}),
        ));
        self
    }

    /// A JSON body; `parse_object`'s failures come with it.
    fn body(mut self, schema: &str, required: bool) -> Op {
        self.value["requestBody"] = json!({"required": required, "content": {"application/json": {"schema": schema_ref(schema)}}});
        self.errors(&[
            ErrorCode::PayloadTooLarge,
            ErrorCode::UnsupportedMediaType,
            ErrorCode::InvalidJson,
            ErrorCode::UnknownField,
            ErrorCode::InvalidType,
        ])
    }

    fn errors(mut self, codes: &[ErrorCode]) -> Op {
        self.errors.extend_from_slice(codes);
        self
    }

    fn query(mut self, params: Value) -> Op {
        self.value["parameters"] = params;
        self
    }

    fn build(mut self) -> Value {
        match self.auth {
            Auth::None => self.value["security"] = json!([]),
            Auth::ApiKey => {
                self.value["security"] = json!([{"bearerAuth": []}]);
                self.errors.extend([
                    ErrorCode::MissingCredentials,
                    ErrorCode::InvalidCredentials,
                    ErrorCode::InvalidRequestSignature,
                    ErrorCode::SignatureVersionUnsupported,
                    ErrorCode::ReplayedRequest,
                    ErrorCode::TenantDisabled,
                    ErrorCode::RateLimited,
                    ErrorCode::TooManyFailedAttempts,
                    ErrorCode::SecretsUnavailable,
                ]);
                // Keys with `require_signature` sign every request.
                let signature = json!({"name": "X-Signature", "in": "header", "required": false,
                    "description": "Required for API keys minted with `require_signature`: `t=<unix seconds>,v2=<hex HMAC-SHA256(signing_secret, \"{t}\\n{METHOD}\\n{path and query}\\n{raw body}\")>` (see `bearerAuth`).",
                    "schema": {"type": "string"}});
                match self
                    .value
                    .get_mut("parameters")
                    .and_then(Value::as_array_mut)
                {
                    Some(params) => params.push(signature),
                    None => self.value["parameters"] = json!([signature]),
                }
                // Every authenticated /v1 answer carries the tightest limit's state.
                for (_, r) in &mut self.success {
                    let headers = r
                        .as_object_mut()
                        .and_then(|o| o.entry("headers").or_insert(json!({})).as_object_mut());
                    if let Some(h) = headers {
                        h.extend(
                            rate_limit_headers(false)
                                .as_object()
                                .cloned()
                                .unwrap_or_default(),
                        );
                    }
                }
            }
            Auth::Admin => {
                self.value["security"] = json!([{"adminBearerAuth": []}]);
                self.errors.extend([
                    ErrorCode::MissingCredentials,
                    ErrorCode::InvalidCredentials,
                    ErrorCode::TooManyFailedAttempts,
                ]);
            }
        }
        if self.auth != Auth::None {
            // Every authenticated route reads storage.
            self.errors
                .extend([ErrorCode::InternalError, ErrorCode::StorageUnavailable]);
        }
        let mut responses = Map::new();
        for (status, r) in self.success {
            responses.insert(status.to_string(), r);
        }
        let mut statuses: Vec<u16> = self.errors.iter().map(|c| c.http_status()).collect();
        statuses.sort_unstable();
        statuses.dedup();
        for status in statuses {
            // In ErrorCode::ALL order, each once.
            let codes: Vec<ErrorCode> = ErrorCode::ALL
                .iter()
                .copied()
                .filter(|c| c.http_status() == status && self.errors.contains(c))
                .collect();
            let mut r = error_response(status, &codes);
            if status == 429 {
                r["headers"] = rate_limit_headers(true);
            }
            responses.insert(status.to_string(), r);
        }
        self.value["responses"] = Value::Object(responses);
        self.value
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not found",
        405 => "Method not allowed",
        409 => "Conflict",
        413 => "Payload too large",
        415 => "Unsupported media type",
        422 => "Unprocessable content",
        429 => "Too many requests",
        500 => "Internal server error",
        503 => "Service unavailable",
        _ => "Error",
    }
}

/// `X-RateLimit-*` (and, on 429, `Retry-After`) as response headers.
fn rate_limit_headers(refused: bool) -> Value {
    let int = |d: &str| json!({"description": d, "schema": {"type": "integer", "minimum": 0}});
    let mut h = json!({
        "X-RateLimit-Limit": int("The limit of the tightest applicable rate limit (per API key, client IP or, for a new call, destination number); on `too_many_failed_attempts`, the client address's limit of wrong credentials."),
        "X-RateLimit-Remaining": int("Requests left in that limit's current window."),
        "X-RateLimit-Reset": int("Seconds until that window resets."),
    });
    if refused {
        h["Retry-After"] = int(&format!("Seconds to wait before retrying: for `rate_limited` the refusing limit's reset; for `too_many_failed_attempts` the end of the client address's failure window; for `concurrency_limit_reached` a fixed {CONCURRENCY_RETRY_AFTER_SECONDS} s polling hint (a slot frees when a call ends)."));
    }
    h
}

/// The shared `Error` schema with `code` narrowed to what this operation can return with this status.
fn error_response(status: u16, codes: &[ErrorCode]) -> Value {
    let mut d = format!("{}. `error.code` is one of:", reason_phrase(status));
    for c in codes {
        d.push_str(&format!("\n- `{}`: {}", c.as_str(), c.describe()));
    }
    let names: Vec<&str> = codes.iter().map(|c| c.as_str()).collect();
    json!({
        "description": d,
        "content": {"application/json": {"schema": {"allOf": [
            schema_ref("Error"),
            {"properties": {"error": {"properties": {"code": {"enum": names}}}}}
        ]}}}
    })
}

/// The `{name}` parameters of a path template, in order, wherever they stand
/// in a segment (`transcript.{format}` has one too).
fn template_params(pattern: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = pattern;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        out.push(&rest[open + 1..open + close]);
        rest = &rest[open + close + 1..];
    }
    out
}

fn path_item(pattern: &str) -> Value {
    let params: Vec<Value> = template_params(pattern)
        .into_iter()
        .map(|name| {
            let (prefix, what) = match name {
                "call_id" => ("call", "The call's id."),
                "tenant_id" => ("ten", "The tenant's id."),
                "agent_id" => ("agt", "The agent's id."),
                "key_id" => ("key", "The API key's id."),
                "sidecar_id" => ("", "The sidecar's id."),
                "webhook_id" => ("wh", "The webhook endpoint's id."),
                "delivery_id" => ("dlv", "The webhook delivery's id."),
                "format" => ("", "The file's format."),
                _ => ("", "An id."),
            };
            let schema = match (name, prefix) {
                ("sidecar_id", _) => json!({"type": "string", "pattern": SIDECAR_ID_PATTERN}),
                ("format", _) => json!({"type": "string", "enum": ["txt", "json"]}),
                (_, "") => json!({"type": "string", "minLength": 1}),
                _ => id_schema(prefix),
            };
            let description = if name == "format" { what.to_string() } else { format!("{what} An id of another shape answers 404.") };
            json!({"name": name, "in": "path", "required": true, "description": description, "schema": schema})
        })
        .collect();
    if params.is_empty() {
        json!({})
    } else {
        json!({"parameters": params})
    }
}

const SIDECAR_ID_PATTERN: &str = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$";

fn operation(id: RouteId) -> Value {
    use ErrorCode as E;
    match id {
        RouteId::Health => op("healthCheck", "meta", Auth::None, "Liveness check", "Answers 200 while the edge is up.")
            .ok(200, "The edge is up.", "Health")
            .build(),
        RouteId::OpenApi => op("getOpenApi", "meta", Auth::None, "This OpenAPI document", "The OpenAPI 3.1 description of the API.")
            .ok(200, "The document.", "OpenApiDocument")
            .build(),
        RouteId::CreateCall => op(
            "createCall",
            "calls",
            Auth::ApiKey,
            "Place a call",
            "Accepts a call and queues it for a media sidecar (status `queued`), or holds it until `schedule_at` (status `scheduled`). Settings not given are taken from the agent. One call at a time per agent and number: while another call of the same agent to the same number is queued, scheduled (including between retries) or live, the request is refused with 409 `call_in_progress` and nothing is created.",
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
        .ok_json_or_text("The transcript.", "Transcript", "One line per turn: `[hh:mm:ss] AI: ...` / `[hh:mm:ss] USER: ...` (offsets from the answer).")
        .errors(&[E::CallNotFound, E::InvalidParameter])
        .build(),
        RouteId::GetTranscriptAs => op(
            "getTranscriptAs",
            "calls",
            Auth::ApiKey,
            "Get a call's transcript as a file",
            "`transcript.txt` or `transcript.json`: the same as `GET /v1/calls/{call_id}/transcript` in that format. Any other extension answers 400 `invalid_parameter`.",
        )
        .ok_json_or_text("The transcript.", "Transcript", "One line per turn: `[hh:mm:ss] AI: ...` / `[hh:mm:ss] USER: ...` (offsets from the answer).")
        .errors(&[E::CallNotFound, E::InvalidParameter])
        .build(),
        RouteId::GetRecording => op(
            "getRecording",
            "calls",
            Auth::ApiKey,
            "Download a call's recording",
            "The stereo 16-bit PCM WAV of the call's newest answered attempt (left: the AI, right: the callee), for calls placed with `record: true`. The sidecar uploads it after the call ends; `recording.saved` tells when it is here. Until then, and for calls without `record: true` or never answered, 404 `recording_not_found` with a message saying which.",
        )
        .ok_binary("The recording.", "audio/wav", json!({
            "Content-Length": {"schema": {"type": "integer"}},
            "X-Recording-Attempt": {"description": "The attempt the recording is of.", "schema": {"type": "integer"}},
            "X-Recording-Duration-Ms": {"schema": {"type": "integer"}},
            "X-Recording-Sha256": {"description": "Lowercase hex SHA-256 of the body.", "schema": {"type": "string"}}
        }))
        .errors(&[E::CallNotFound, E::RecordingNotFound])
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
        RouteId::CreateTenant => op("createTenant", "admin", Auth::Admin, "Create a tenant", "A new customer account, with no agents or keys yet.")
            .body("CreateTenantRequest", true)
            .ok(201, "The tenant.", "Tenant")
            .errors(&[E::MissingField, E::InvalidValue, E::ValueTooLong, E::OutOfRange])
            .build(),
        RouteId::GetTenant => op("getTenant", "admin", Auth::Admin, "Get a tenant", "The tenant.")
            .ok(200, "The tenant.", "Tenant")
            .errors(&[E::TenantNotFound])
            .build(),
        RouteId::UpdateTenant => op("updateTenant", "admin", Auth::Admin, "Update a tenant", "Rename, disable or enable a tenant, set its default agent, rate limits or concurrent-call cap.")
            .body("UpdateTenantRequest", true)
            .ok(200, "The updated tenant.", "Tenant")
            .errors(&[E::TenantNotFound, E::InvalidValue, E::ValueTooLong, E::OutOfRange, E::UnknownAgent])
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
        .errors(&[E::TenantNotFound, E::AgentNotFound, E::InvalidValue, E::ValueTooLong, E::OutOfRange, E::InvalidLanguage, E::InvalidUrl, E::EngineKeysUnavailable])
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
        RouteId::CreateWebhook => op(
            "createWebhook",
            "admin",
            Auth::Admin,
            "Create a webhook endpoint",
            "Call events for the tenant will be POSTed to this URL, signed per Standard Webhooks with the returned secret. The secret is in this response only; the edge stores it sealed (AES-256-GCM under `VOXLINE_SEALING_KEY`), and without that secret refuses with 503 `secrets_unavailable`.",
        )
        .body("CreateWebhookRequest", true)
        .ok(201, "The endpoint, with its signing secret.", "WebhookEndpointCreated")
        .errors(&[E::TenantNotFound, E::MissingField, E::InvalidValue, E::ValueTooLong, E::OutOfRange, E::InvalidUrl, E::SecretsUnavailable])
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
            "Change its URL, events, retry schedule, or enable/disable it. Deliveries already queued for a disabled endpoint end as `failed`.",
        )
        .body("UpdateWebhookRequest", true)
        .ok(200, "The updated endpoint.", "WebhookEndpoint")
        .errors(&[E::TenantNotFound, E::WebhookNotFound, E::InvalidValue, E::ValueTooLong, E::OutOfRange, E::InvalidUrl])
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
        RouteId::ListDeliveries => op(
            "listWebhookDeliveries",
            "webhooks",
            Auth::ApiKey,
            "List webhook deliveries",
            "The tenant's webhook delivery log, newest first, as summaries. Filters may leave a page short while `has_more` is true: follow `next_cursor` until null.",
        )
        .query(json!([
            {"name": "event", "in": "query", "required": false, "style": "form", "explode": false,
             "description": "Only these event types, comma-separated.", "schema": {"type": "array", "minItems": 1, "items": schema_ref("WebhookEvent")}},
            {"name": "status", "in": "query", "required": false, "style": "form", "explode": false,
             "description": "Only deliveries in these statuses, comma-separated.", "schema": {"type": "array", "minItems": 1, "items": schema_ref("WebhookDeliveryStatus")}},
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
        .errors(&[E::DeliveryNotFound, E::WebhookDisabled])
        .build(),
        RouteId::CreateSidecar => op(
            "createSidecar",
            "admin",
            Auth::Admin,
            "Create sidecar credentials",
            "Mints the HMAC secret a media sidecar signs its dispatch-link requests with (see `voxline_shared::protocol`). Creating an existing id rotates the secret. The secret is in this response only; the edge stores it sealed (AES-256-GCM under `VOXLINE_SEALING_KEY`), and without that secret refuses with 503 `secrets_unavailable`.",
        )
        .body("CreateSidecarRequest", true)
        .ok(201, "The sidecar, with its secret.", "SidecarCreated")
        .errors(&[E::MissingField, E::InvalidValue, E::ValueTooLong, E::SecretsUnavailable])
        .build(),
        RouteId::ListSidecars => op("listSidecars", "admin", Auth::Admin, "List sidecars", "All sidecars, without their secrets.")
            .ok(200, "The sidecars.", "SidecarList")
            .build(),
        RouteId::RevokeSidecar => op("revokeSidecar", "admin", Auth::Admin, "Revoke a sidecar", "Its signatures stop being accepted. Idempotent.")
            .ok(200, "The revoked sidecar.", "Sidecar")
            .errors(&[E::SidecarNotFound])
            .build(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::env::Env;
    use crate::api::handle;
    use crate::api::router::{route, Match};
    use crate::api::validate::{self, AGENT_FIELDS, CREATE_CALL_FIELDS};
    use crate::api::webhooks::check_webhook_url;
    use crate::http::{ApiRequest, ApiResponse};
    use crate::store::memory::MemoryKv;
    use crate::store::{Kv, KvPage, StoreError};
    use crate::traffic::memory::MemoryTraffic;
    use futures::executor::block_on;
    use std::cell::RefCell;
    use std::collections::{BTreeSet, HashMap};

    const NOW: u64 = 1_764_082_200_000; // 2025-11-25T14:50:00Z
    const ADMIN: &str = "adm_openapi_test";
    const JSON_CT: &str = "application/json";
    const HTTP_METHODS: [&str; 8] = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];

    // ---- validation against the spec ----

    /// The spec's components with every object schema that lists its
    /// properties closed, so a response field the spec does not know fails.
    /// (The served spec leaves responses open so clients tolerate additions.)
    fn closed_components(spec: &Value) -> Value {
        fn close(v: &mut Value) {
            match v {
                Value::Object(m) => {
                    if m.contains_key("properties") && !m.contains_key("additionalProperties") {
                        m.insert("additionalProperties".into(), json!(false));
                    }
                    m.values_mut().for_each(close);
                }
                Value::Array(a) => a.iter_mut().for_each(close),
                _ => {}
            }
        }
        let mut c = spec["components"].clone();
        close(&mut c["schemas"]);
        c
    }

    struct Checker {
        components: Value,
        cache: RefCell<HashMap<String, jsonschema::Validator>>,
    }

    impl Checker {
        fn new(spec: &Value) -> Checker {
            Checker {
                components: closed_components(spec),
                cache: RefCell::default(),
            }
        }

        /// Validates `instance` against `schema`, whose `$ref`s point into the spec's components.
        fn check(&self, schema: &Value, instance: &Value) -> Result<(), String> {
            let mut cache = self.cache.borrow_mut();
            let v = cache.entry(schema.to_string()).or_insert_with(|| {
                let root = json!({"$schema": "https://json-schema.org/draft/2020-12/schema",
                                  "components": self.components, "allOf": [schema]});
                jsonschema::draft202012::options()
                    .should_validate_formats(true)
                    .build(&root)
                    .unwrap_or_else(|e| panic!("schema {schema} does not compile: {e}"))
            });
            let errors: Vec<String> = v
                .iter_errors(instance)
                .map(|e| format!("{e} (at '{}')", e.instance_path()))
                .collect();
            if errors.is_empty() {
                Ok(())
            } else {
                Err(errors.join("; "))
            }
        }
    }

    fn matches_pattern(pattern: &str, s: &str) -> bool {
        jsonschema::draft202012::new(&json!({"type": "string", "pattern": pattern}))
            .unwrap()
            .is_valid(&json!(s))
    }

    /// A KV that never answers.
    struct DownKv;

    impl Kv for DownKv {
        async fn get(&self, _: &str) -> Result<Option<String>, StoreError> {
            Err(StoreError::Unavailable("down".into()))
        }
        async fn put(&self, _: &str, _: &str, _: Option<&Value>) -> Result<(), StoreError> {
            Err(StoreError::Unavailable("down".into()))
        }
        async fn delete(&self, _: &str) -> Result<(), StoreError> {
            Err(StoreError::Unavailable("down".into()))
        }
        async fn list(&self, _: &str, _: u32, _: Option<&str>) -> Result<KvPage, StoreError> {
            Err(StoreError::Unavailable("down".into()))
        }
    }

    /// The service over an in-memory KV; every response is checked against the spec.
    struct Api {
        kv: MemoryKv,
        calls: crate::calls::store::memory::MemoryCalls<
            crate::calls::store::SqlCallRows<crate::sql::sqlite::LimitedSqlite>,
        >,
        traffic: MemoryTraffic,
        /// Webhook jobs the requests queued.
        outbox: crate::webhooks::delivery::Outbox,
        spec: Value,
        checker: Checker,
        /// (METHOD, path pattern, status) answered so far.
        seen: RefCell<BTreeSet<(String, String, String)>>,
        sealing: crate::engine_keys::SealingKey,
        /// Wrong credentials allowed per address: unlimited but where a test lowers it.
        auth_limit: std::cell::Cell<u32>,
    }

    impl Api {
        fn new() -> Api {
            let spec = spec();
            Api {
                kv: MemoryKv::default(),
                calls: crate::calls::store::memory::test_calls(),
                traffic: MemoryTraffic::default(),
                outbox: Default::default(),
                checker: Checker::new(&spec),
                spec,
                seen: RefCell::default(),
                // The key test fixtures seal their secrets with.
                sealing: crate::webhooks::delivery::tests_support::sealing_key(),
                auth_limit: std::cell::Cell::new(crate::traffic::LIMIT_MAX),
            }
        }

        fn send_to<K: Kv>(
            &self,
            kv: &K,
            method: &str,
            target: &str,
            token: Option<&str>,
            ct: Option<&str>,
            body: &[u8],
        ) -> ApiResponse {
            let (path, query) = target.split_once('?').unwrap_or((target, ""));
            let req = ApiRequest {
                method: method.into(),
                scheme: "https".into(),
                path: path.into(),
                query: query.into(),
                content_type: ct.map(Into::into),
                authorization: token.map(|t| format!("Bearer {t}")),
                body: body.to_vec(),
                headers: Vec::new(),
            };
            self.traffic.now_ms.set(NOW);
            self.calls.now_ms.set(NOW);
            self.calls.dispatch.now_ms.set(NOW);
            let env = Env {
                kv,
                dispatch_queues: &self.calls.dispatch,
                now_ms: NOW,
                admin_token: Some(ADMIN),
                dev_mode: true,
                default_region: "local",
                traffic: &self.traffic,
                calls: &self.calls,
                outbox: &self.outbox,
                sealing_key: Some(&self.sealing),
                auth_failures: crate::traffic::RateLimit {
                    limit: self.auth_limit.get(),
                    ..crate::traffic::AUTH_FAILURES
                },
            };
            let resp = block_on(handle(&env, &req));
            block_on(self.calls.drain(kv, &self.outbox)).unwrap();
            self.conform(method, path, &resp);
            resp
        }

        fn raw(
            &self,
            method: &str,
            target: &str,
            token: Option<&str>,
            ct: Option<&str>,
            body: &[u8],
        ) -> ApiResponse {
            self.send_to(&self.kv, method, target, token, ct, body)
        }

        fn send(
            &self,
            method: &str,
            target: &str,
            token: Option<&str>,
            body: Option<&Value>,
        ) -> ApiResponse {
            let text = body.map(Value::to_string).unwrap_or_default();
            self.raw(
                method,
                target,
                token,
                body.map(|_| JSON_CT),
                text.as_bytes(),
            )
        }

        fn admin(&self, method: &str, target: &str, body: Option<Value>) -> ApiResponse {
            self.send(method, target, Some(ADMIN), body.as_ref())
        }

        /// The response must be documented for its operation and status, and its body must match.
        fn conform(&self, method: &str, path: &str, resp: &ApiResponse) {
            let body = resp.body_json();
            let what = format!("{method} {path} -> {} {}", resp.status, resp.body);
            let pattern = match route(method, path) {
                Match::Found(id, _) => ROUTES.iter().find(|r| r.2 == id).map(|r| r.1).unwrap(),
                _ => {
                    // No operation: the generic error shape.
                    assert!(matches!(resp.status, 404 | 405), "{what}");
                    self.checker
                        .check(&schema_ref("Error"), &body)
                        .unwrap_or_else(|e| panic!("{what}: {e}"));
                    return;
                }
            };
            let op = &self.spec["paths"][pattern][method.to_ascii_lowercase()];
            let status = resp.status.to_string();
            let Some(r) = op["responses"].get(&status) else {
                panic!("{what}: status {status} is not documented for {method} {pattern}")
            };
            let content_type = resp
                .headers
                .iter()
                .find(|(h, _)| h.eq_ignore_ascii_case("content-type"))
                .map(|(_, v)| v.as_str());
            let media = content_type.map(|v| v.split(';').next().unwrap_or("").trim());
            if let Some(m) = media.filter(|m| *m != "application/json") {
                assert!(
                    r["content"].get(m).is_some(),
                    "{what}: {m} is not documented"
                );
                if m != "text/plain" {
                    assert!(
                        resp.stored_object.is_some(),
                        "{what}: a binary body comes from storage"
                    );
                }
            } else {
                let schema = &r["content"]["application/json"]["schema"];
                self.checker
                    .check(schema, &body)
                    .unwrap_or_else(|e| panic!("{what}\ndoes not match the spec: {e}"));
            }
            if let Some(headers) = r.get("headers").and_then(Value::as_object) {
                for name in headers.keys() {
                    assert!(
                        resp.headers
                            .iter()
                            .any(|(h, _)| h.eq_ignore_ascii_case(name)),
                        "{what}: header {name} missing"
                    );
                }
            }
            self.seen
                .borrow_mut()
                .insert((method.to_string(), pattern.to_string(), status));
        }
    }

    #[track_caller]
    fn expect(resp: ApiResponse, status: u16) -> Value {
        assert_eq!(resp.status, status, "body: {}", resp.body);
        resp.body_json()
    }

    #[track_caller]
    fn expect_error(resp: ApiResponse, status: u16, code: &str) -> Value {
        let body = expect(resp, status);
        assert_eq!(body["error"]["code"], code, "body: {body}");
        body
    }

    fn id_of(v: &Value) -> String {
        v["id"].as_str().expect("an id").to_string()
    }

    /// A tenant with a default agent, an API key, and one queued call; and a sidecar.
    struct World {
        tid: String,
        aid: String,
        key: String,
        kid: String,
        cid: String,
        sid: String,
        /// A webhook endpoint and the delivery of the call's `call.queued` to it.
        wid: String,
        did: String,
    }

    /// A receiver that answers every delivery with one status.
    struct Answer(u16);

    impl crate::webhooks::delivery::WebhookHttp for Answer {
        async fn post(
            &self,
            _: &str,
            _: &[(String, String)],
            _: &str,
        ) -> Result<crate::webhooks::delivery::HttpReply, String> {
            Ok(crate::webhooks::delivery::HttpReply {
                status: self.0,
                retry_after: None,
            })
        }
    }

    /// Runs the queued webhook jobs as the queue consumer would; returns their delivery ids.
    fn deliver_all(api: &Api) -> Vec<String> {
        let jobs = api.outbox.take();
        for job in &jobs {
            block_on(crate::webhooks::delivery::process(
                &api.kv,
                &Answer(200),
                job.clone(),
                &|| NOW,
                true,
                Some(&api.sealing),
            ))
            .unwrap();
        }
        jobs.into_iter().map(|j| j.delivery_id).collect()
    }

    fn provision(api: &Api, name: &str) -> World {
        let tid = id_of(&expect(
            api.admin("POST", "/admin/tenants", Some(json!({"name": name}))),
            201,
        ));
        let aid = id_of(&expect(
            api.admin(
                "POST",
                &format!("/admin/tenants/{tid}/agents"),
                Some(json!({"name": "agent"})),
            ),
            201,
        ));
        let k = expect(
            api.admin(
                "POST",
                &format!("/admin/tenants/{tid}/api-keys"),
                Some(json!({"name": "k"})),
            ),
            201,
        );
        let key = k["key"].as_str().unwrap().to_string();
        let wh = expect(
            api.admin(
                "POST",
                &format!("/admin/tenants/{tid}/webhooks"),
                Some(json!({"url": "https://hooks.example.com/h"})),
            ),
            201,
        );
        deliver_all(api);
        // Not the probes' number: one call at a time per agent and number.
        let call = expect(
            api.send(
                "POST",
                "/v1/calls",
                Some(&key),
                Some(&json!({"phone": "+14155550199"})),
            ),
            201,
        );
        let did = deliver_all(api)
            .pop()
            .expect("call.queued was queued for the endpoint");
        let sid = format!("sc-{name}");
        expect(
            api.admin(
                "POST",
                "/admin/sidecars",
                Some(json!({"sidecar_id": sid, "region": "local"})),
            ),
            201,
        );
        World {
            tid,
            aid,
            key,
            kid: id_of(&k),
            cid: id_of(&call),
            sid,
            wid: id_of(&wh),
            did,
        }
    }

    /// `pattern` with its `{params}` replaced.
    fn fill(pattern: &str, value: impl Fn(&str) -> String) -> String {
        pattern
            .split('/')
            .map(
                |seg| match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    Some(name) => value(name),
                    None => seg.to_string(),
                },
            )
            .collect::<Vec<_>>()
            .join("/")
    }

    fn world_param(w: &World) -> impl Fn(&str) -> String + '_ {
        move |name| match name {
            "tenant_id" => w.tid.clone(),
            "agent_id" => w.aid.clone(),
            "key_id" => w.kid.clone(),
            "call_id" => w.cid.clone(),
            "sidecar_id" => w.sid.clone(),
            "webhook_id" => w.wid.clone(),
            "delivery_id" => w.did.clone(),
            other => panic!("unknown path parameter {other}"),
        }
    }

    fn missing_id(name: &str) -> String {
        let prefix = match name {
            "tenant_id" => "ten",
            "agent_id" => "agt",
            "key_id" => "key",
            "call_id" => "call",
            "webhook_id" => "wh",
            "delivery_id" => "dlv",
            "sidecar_id" => return "sc-missing".to_string(),
            other => panic!("unknown path parameter {other}"),
        };
        format!("{prefix}_00000000000000000000")
    }

    fn operation_of<'s>(spec: &'s Value, method: &str, pattern: &str) -> &'s Value {
        &spec["paths"][pattern][method.to_ascii_lowercase()]
    }

    fn security_of(spec: &Value, method: &str, pattern: &str) -> Option<String> {
        operation_of(spec, method, pattern)["security"]
            .as_array()
            .and_then(|s| s.first())
            .and_then(Value::as_object)
            .and_then(|o| o.keys().next().cloned())
    }

    // ---- the document against the code ----

    #[test]
    fn every_route_is_documented_and_nothing_else() {
        let spec = spec();
        let mut documented = BTreeSet::new();
        let mut op_ids = BTreeSet::new();
        for (path, item) in spec["paths"].as_object().unwrap() {
            for (key, op) in item.as_object().unwrap() {
                if HTTP_METHODS.contains(&key.as_str()) {
                    documented.insert((key.to_ascii_uppercase(), path.clone()));
                    let op_id = op["operationId"].as_str().expect("operationId");
                    assert!(
                        op_ids.insert(op_id.to_string()),
                        "duplicate operationId {op_id}"
                    );
                    for field in ["summary", "description"] {
                        assert!(
                            op[field].as_str().is_some_and(|s| !s.is_empty()),
                            "{key} {path}: no {field}"
                        );
                    }
                    assert!(
                        op["responses"]
                            .as_object()
                            .is_some_and(|r| r.keys().any(|s| s.starts_with('2'))),
                        "{key} {path}"
                    );
                } else {
                    assert_eq!(key, "parameters", "{path}: unexpected path item key");
                }
            }
            // Path parameters: exactly the template's, declared once, required.
            let template = template_params(path);
            let declared: Vec<&str> = item["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .map(|p| {
                            assert_eq!(
                                (p["in"].as_str(), p["required"].as_bool()),
                                (Some("path"), Some(true))
                            );
                            p["name"].as_str().unwrap()
                        })
                        .collect()
                })
                .unwrap_or_default();
            assert_eq!(template, declared, "{path}: path parameters");
        }
        let routes: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|(m, p, _)| (m.to_string(), p.to_string()))
            .collect();
        assert_eq!(documented, routes);
        for (method, path, _) in ROUTES {
            let sec = security_of(&spec, method, path);
            let expected = if *path == "/healthz" || *path == "/v1/openapi.json" {
                None
            } else if path.starts_with("/v1/") {
                Some("bearerAuth")
            } else {
                assert!(path.starts_with("/admin/"), "{path}: which credentials?");
                Some("adminBearerAuth")
            };
            assert_eq!(sec.as_deref(), expected, "{method} {path}: security");
            if let Some(s) = expected {
                assert!(spec["components"]["securitySchemes"][s]["scheme"] == "bearer");
            }
        }
    }

    #[test]
    fn error_code_enum_is_error_code_all() {
        let spec = spec();
        let code =
            &spec["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"];
        let all: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(code["enum"], json!(all));
        let description = code["description"].as_str().unwrap();
        for c in ErrorCode::ALL {
            let line = format!("- `{}` ({}): {}", c.as_str(), c.http_status(), c.describe());
            assert!(description.contains(&line), "missing {line}");
        }
    }

    fn property_names(spec: &Value, schema: &str) -> BTreeSet<String> {
        spec["components"]["schemas"][schema]["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    }

    #[test]
    fn request_bodies_list_exactly_the_validated_fields() {
        let spec = spec();
        let set = |fields: &[&str]| {
            fields
                .iter()
                .map(|f| f.to_string())
                .collect::<BTreeSet<_>>()
        };
        assert_eq!(
            property_names(&spec, "CreateCallRequest"),
            set(CREATE_CALL_FIELDS)
        );
        assert_eq!(
            spec["components"]["schemas"]["CreateCallRequest"]["required"],
            json!(["phone"])
        );
        assert_eq!(
            property_names(&spec, "CreateAgentRequest"),
            set(AGENT_FIELDS)
        );
        assert_eq!(
            property_names(&spec, "UpdateAgentRequest"),
            set(AGENT_FIELDS)
        );
        // Every request body is closed, like `parse_object`.
        for (method, path, _) in ROUTES {
            let body = &operation_of(&spec, method, path)["requestBody"];
            if body.is_null() {
                continue;
            }
            let r = body["content"]["application/json"]["schema"]["$ref"]
                .as_str()
                .unwrap();
            let schema = &spec["components"]["schemas"][r.rsplit('/').next().unwrap()];
            assert_eq!(
                schema["additionalProperties"],
                json!(false),
                "{method} {path}"
            );
        }
    }

    #[test]
    fn documented_error_statuses_match_their_codes() {
        let spec = spec();
        for (method, path, _) in ROUTES {
            let responses = operation_of(&spec, method, path)["responses"]
                .as_object()
                .unwrap();
            for (status, r) in responses {
                let status: u16 = status.parse().unwrap();
                let schema = &r["content"]["application/json"]["schema"];
                if status < 400 {
                    let binary = r["content"]
                        .as_object()
                        .is_some_and(|c| c.keys().all(|k| k != "application/json"));
                    assert!(
                        schema["$ref"].is_string() || binary,
                        "{method} {path} {status}"
                    );
                    continue;
                }
                assert_eq!(
                    schema["allOf"][0],
                    schema_ref("Error"),
                    "{method} {path} {status}"
                );
                let codes = schema["allOf"][1]["properties"]["error"]["properties"]["code"]["enum"]
                    .as_array()
                    .unwrap();
                assert!(!codes.is_empty());
                for code in codes {
                    let c = ErrorCode::ALL
                        .iter()
                        .find(|c| c.as_str() == code)
                        .unwrap_or_else(|| panic!("unknown code {code}"));
                    assert_eq!(
                        c.http_status(),
                        status,
                        "{method} {path}: {code} documented under {status}"
                    );
                    assert!(r["description"]
                        .as_str()
                        .unwrap()
                        .contains(&format!("`{}`", c.as_str())));
                }
            }
        }
    }

    #[test]
    fn every_ref_resolves_and_every_schema_compiles() {
        let spec = spec();
        fn refs(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::Object(m) => {
                    if let Some(Value::String(r)) = m.get("$ref") {
                        out.push(r.clone());
                    }
                    m.values().for_each(|v| refs(v, out));
                }
                Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
                _ => {}
            }
        }
        let mut all = Vec::new();
        refs(&spec, &mut all);
        assert!(!all.is_empty());
        for r in all {
            let pointer = r
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("non-local $ref {r}"));
            assert!(spec.pointer(pointer).is_some(), "dangling $ref {r}");
        }
        let checker = Checker::new(&spec);
        for name in spec["components"]["schemas"].as_object().unwrap().keys() {
            // Compiles (panics otherwise) and rejects a non-object where it wants an object.
            let _ = checker.check(&schema_ref(name), &json!(null));
        }
    }

    #[test]
    fn a_parameter_inside_a_segment_is_declared_too() {
        assert_eq!(
            template_params("/v1/calls/{call_id}/transcript.{format}"),
            ["call_id", "format"]
        );
        let spec = spec();
        let params = &spec["paths"]["/v1/calls/{call_id}/transcript.{format}"]["parameters"];
        let names: Vec<&str> = params
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["call_id", "format"]);
        assert_eq!(params[1]["schema"]["enum"], json!(["txt", "json"]));
    }

    #[test]
    fn transcript_and_recording_events_match_their_schemas() {
        use crate::calls::store::{
            apply_reports, memory::test_calls, CallRows, Report, ReportItem,
        };
        use crate::dispatch::queue::{CallChange, CallUpdate};
        use crate::transcript::{Change, TranscriptUpdate, Turn};
        let spec = spec();
        let checker = Checker::new(&spec);
        let kv = MemoryKv::default();
        crate::webhooks::delivery::tests_support::endpoint(&kv, "ten_1", &["transcript.saved"]);
        let turn = Turn {
            role: "ai".into(),
            text: "Hello".into(),
            start_ms: 0,
            end_ms: 900,
        };
        let cid = "call_0123456789abcdef";
        let calls = test_calls();
        let rows = calls.rows("ten_1");
        let mut live = crate::model::test_call(CallStatus::InProgress);
        live.id = cid.into();
        live.answered_at = Some("2026-11-25T14:50:01.000Z".into());
        rows.put_call(&live).unwrap();
        let up = |change| ReportItem::Transcript {
            update: TranscriptUpdate {
                tenant_id: "ten_1".into(),
                call_id: cid.into(),
                change,
            },
        };
        let ended = CallChange::Ended {
            status: CallStatus::Completed,
            reason: voxline_shared::EndedReason::CalleeHangup,
            sip_code: None,
        };
        let items = [
            up(Change::Turn(turn)),
            up(Change::Summary {
                summary: Some("s".into()),
                outcome: None,
            }),
            ReportItem::Call {
                update: CallUpdate {
                    call_id: cid.into(),
                    tenant_id: "ten_1".into(),
                    at_ms: 1_780_000_000_000,
                    change: ended,
                },
            },
        ];
        let reports: Vec<Report> = items
            .into_iter()
            .enumerate()
            .map(|(i, item)| Report {
                seq: i as u64 + 1,
                item,
            })
            .collect();
        apply_reports(&*rows, "local", &reports, 1_780_000_000_000, &mut |_| {}).unwrap();
        let outbox = crate::webhooks::delivery::Outbox::default();
        block_on(calls.drain(&kv, &outbox)).unwrap();
        let jobs = outbox.take();
        let payload: Value = serde_json::from_str(&jobs[0].payload).unwrap();
        checker
            .check(&schema_ref("WebhookTranscriptEvent"), &payload)
            .unwrap_or_else(|e| panic!("{payload}: {e}"));
        let info = crate::calls::store::RecordingInfo {
            attempt: 1,
            object_key: "k".into(),
            content_type: "audio/wav".into(),
            bytes: 44,
            sha256: "a".repeat(64),
            duration_ms: 0,
            saved_at: "2026-11-25T15:00:00.000Z".into(),
        };
        let rec = json!({"id": "evt_1", "type": "recording.saved", "timestamp": "2026-11-25T15:00:00.000Z", "data": info.to_public("call_0123456789abcdef")});
        checker
            .check(&schema_ref("WebhookRecordingEvent"), &rec)
            .unwrap_or_else(|e| panic!("{rec}: {e}"));
    }

    #[test]
    fn generated_vocabularies_follow_the_code() {
        let spec = spec();
        let s = &spec["components"]["schemas"];
        let statuses: Vec<&str> = CallStatus::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(s["CallStatus"]["enum"], json!(statuses));
        assert_eq!(s["Engine"]["enum"], json!(Engine::NAMES));
        assert_eq!(s["WebhookEvent"]["enum"], json!(WEBHOOK_EVENTS));
        for (i, r) in ENDED_REASONS.iter().enumerate() {
            assert_eq!(ended_reason_index(*r), i, "ENDED_REASONS is out of order");
            let name = &s["EndedReason"]["enum"][i];
            assert_eq!(
                serde_json::from_value::<EndedReason>(name.clone()).unwrap(),
                *r
            );
        }
        let limit = &operation_of(&spec, "GET", "/v1/calls")["parameters"][1];
        assert_eq!(limit["name"], "limit");
        assert_eq!(
            limit["schema"],
            json!({"type": "integer", "minimum": 1, "maximum": LIST_LIMIT_MAX, "default": LIST_LIMIT_DEFAULT})
        );
        assert!(spec["info"]["description"]
            .as_str()
            .unwrap()
            .contains(&MAX_BODY_BYTES.to_string()));
        assert_eq!(
            s["CreateCallRequest"]["properties"]["system_prompt"]["maxLength"],
            json!(MAX_PROMPT_CHARS)
        );
        // The clear key really has the documented shape.
        let key = crate::ids::mint_api_key();
        assert!(matches_pattern(
            s["ApiKeyCreated"]["properties"]["key"]["pattern"]
                .as_str()
                .unwrap(),
            &key.clear
        ));
    }

    #[test]
    fn documented_patterns_agree_with_the_validators() {
        let j = Some(JSON_CT);
        for s in [
            "+14155550100",
            "+1234567",
            "+123456",
            "+123456789012345",
            "+1234567890123456",
            "+0123456789",
            "14155550100",
            "+1 415 555 0100",
            "+1415555o100",
            "",
            "+",
            "+٣٤٥٦٧٨٩٠",
            "+14155550100\n",
            "++14155550100",
        ] {
            let server = validate::check_e164("phone", s).is_ok();
            assert_eq!(matches_pattern(E164_PATTERN, s), server, "phone {s:?}");
        }
        let call_ok = |extra: Value| {
            let mut body = json!({"phone": "+14155550100"});
            body.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            validate::create_call(j, body.to_string().as_bytes(), NOW).is_ok()
        };
        for s in [
            "a@b.c",
            "ada@example.org",
            "x.y+z@sub.example.co.uk",
            "nope",
            "@b.c",
            "a@.b",
            "a@b.",
            "a@b",
            "a@@b.c",
            "a b@c.d",
            "a@b..c",
            "a@b.c@d",
            "a@b.c\t",
            "a@.",
            "a@..",
            "é@ü.de",
        ] {
            assert_eq!(
                matches_pattern(EMAIL_PATTERN, s),
                call_ok(json!({"email": s})),
                "email {s:?}"
            );
        }
        for s in ["alloy", "a.b_c-d", "A1", "", "a b", "é", "a/b", "a\n"] {
            assert_eq!(
                matches_pattern(VOICE_PATTERN, s),
                call_ok(json!({"voice": s})),
                "voice {s:?}"
            );
        }
        let agent_pattern = spec()["components"]["schemas"]["CreateCallRequest"]["properties"]
            ["agent_id"]["pattern"]
            .clone();
        for s in [
            "agt_0011223344",
            "agt_00112233445566778899",
            "agt_001122334",
            "agt_ABCDEF0123",
            "agt_",
            "ten_0011223344",
            "agt_0011223344/x",
        ] {
            assert_eq!(
                matches_pattern(agent_pattern.as_str().unwrap(), s),
                crate::ids::is_id(s, "agt"),
                "agent id {s:?}"
            );
        }
        let long = "a".repeat(64);
        let too_long = "a".repeat(65);
        for s in [
            "sc-1",
            "a",
            "A.b_c-9",
            long.as_str(),
            too_long.as_str(),
            "",
            "-x",
            ".x",
            "a b",
            "a/b",
            "é",
        ] {
            assert_eq!(
                matches_pattern(SIDECAR_ID_PATTERN, s),
                voxline_shared::protocol::is_valid_id(s),
                "sidecar id {s:?}"
            );
        }
        // Calling window times.
        let window = |start: &str, end: &str| {
            crate::calling_window::parse(
                &json!({"days": ["mon"], "start": start, "end": end, "time_zone": "UTC"}),
            )
            .map_err(|e| e.0)
        };
        for t in [
            "00:00", "09:30", "23:59", "24:00", "24:01", "9:00", "12:60", "ab:cd", "", "09:00:00",
        ] {
            assert_eq!(
                matches_pattern(crate::calling_window::TIME_PATTERN, t),
                window(t, "00:01").is_ok() || t == "00:01",
                "start {t:?}"
            );
            assert_eq!(
                matches_pattern(crate::calling_window::END_PATTERN, t),
                window("00:01", t).is_ok() || t == "00:01",
                "end {t:?}"
            );
        }
        // The URL pattern is a necessary condition: what the server accepts, it matches.
        let url_pattern = spec()["components"]["schemas"]["CreateWebhookRequest"]["properties"]
            ["url"]["pattern"]
            .clone();
        for s in [
            "https://example.com/h",
            "HTTPS://example.com",
            "http://127.0.0.1:9/h",
            "http://localhost/x",
            "http://[::1]:80/",
            "ftp://x",
            "https//x",
            "https://",
            " https://x",
            "http://example.com/",
            "https://a b",
        ] {
            if check_webhook_url(s, true).is_ok() {
                assert!(
                    matches_pattern(url_pattern.as_str().unwrap(), s),
                    "url {s:?}"
                );
            }
        }
    }

    // ---- the documented constraints against the validators ----

    /// Sends bodies that sit on and just past every documented constraint of
    /// `schema` and checks the server agrees, field by field.
    fn probe_request_schema(
        api: &Api,
        method: &str,
        path: &str,
        token: &str,
        schema_name: &str,
        base: Value,
    ) {
        let schema = api.spec["components"]["schemas"][schema_name].clone();
        let send = |b: &Value| api.send(method, path, Some(token), Some(b));
        let with = |k: &str, v: Value| {
            let mut b = base.clone();
            b[k] = v;
            b
        };
        let fails_with = |b: Value, code: &str, field: &str| {
            let r = send(&b);
            let e = r.body_json()["error"].clone();
            assert!(
                e["code"] == code && e["field"] == field,
                "{method} {path} {b}: want {code} on '{field}', got {} {}",
                r.status,
                r.body
            );
        };
        let accepted_field = |b: Value, field: &str| {
            let r = send(&b);
            assert!(
                r.status < 300 || r.body_json()["error"]["field"] != field,
                "{method} {path} {b}: '{field}' refused: {}",
                r.body
            );
        };
        let not_with = |b: Value, code: &str, field: &str| {
            let r = send(&b);
            let e = r.body_json()["error"].clone();
            assert!(
                !(e["code"] == code && e["field"] == field),
                "{method} {path} {b}: got {code} on '{field}'"
            );
        };

        // The base body is valid, and documented defaults are what the server applies.
        let r = send(&base);
        assert!(r.status < 300, "{method} {path} {base}: {}", r.body);
        let created = r.body_json();
        let properties = schema["properties"].as_object().unwrap();
        for (name, p) in properties {
            if let (Some(default), Some(actual)) = (p.get("default"), created.get(name.as_str())) {
                if base.get(name.as_str()).is_none() {
                    assert_eq!(actual, default, "{schema_name}.{name}: documented default");
                }
            }
        }

        let required: Vec<&str> = schema["required"]
            .as_array()
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        for (name, p) in properties {
            let name = name.as_str();
            // A `type`, or `anyOf` branches (a `$ref`/`allOf` branch is one of our objects).
            fn type_of(v: &Value) -> Vec<String> {
                match &v["type"] {
                    Value::String(t) => vec![t.clone()],
                    Value::Array(ts) => ts
                        .iter()
                        .filter_map(Value::as_str)
                        .map(String::from)
                        .collect(),
                    _ if v.get("$ref").is_some() || v.get("allOf").is_some() => {
                        vec!["object".into()]
                    }
                    _ => Vec::new(),
                }
            }
            let types: Vec<String> = match p.get("anyOf").and_then(Value::as_array) {
                Some(branches) => branches.iter().flat_map(type_of).collect(),
                None => type_of(p),
            };
            assert!(!types.is_empty(), "{schema_name}.{name}: no type");
            let types: Vec<&str> = types.iter().map(String::as_str).collect();
            let primary = *types.iter().find(|t| **t != "null").unwrap();
            let wrong = match primary {
                "string" => json!(5),
                "integer" => json!("5"),
                "boolean" => json!("yes"),
                "object" => json!([1]),
                "array" => json!("x"),
                other => panic!("{schema_name}.{name}: type {other}"),
            };
            fails_with(with(name, wrong), "invalid_type", name);
            if types.contains(&"null") {
                assert!(
                    !required.contains(&name),
                    "{schema_name}.{name}: required and nullable"
                );
                accepted_field(with(name, Value::Null), name);
            } else if required.contains(&name) {
                fails_with(with(name, Value::Null), "missing_field", name);
                let mut b = base.clone();
                b.as_object_mut().unwrap().remove(name);
                fails_with(b, "missing_field", name);
            } else {
                panic!("{schema_name}.{name}: optional fields take null too");
            }
            if let Some(max) = p["maxLength"].as_u64() {
                let max = max as usize;
                not_with(with(name, json!("a".repeat(max))), "value_too_long", name);
                fails_with(
                    with(name, json!("a".repeat(max + 1))),
                    "value_too_long",
                    name,
                );
            }
            // Blank strings: refused exactly where the schema says "not blank"
            // (fields with another pattern are covered by their pattern).
            if primary == "string"
                && p["enum"].is_null()
                && (p["pattern"].is_null() || p["pattern"] == NOT_BLANK_PATTERN)
            {
                let r = send(&with(name, json!(" \t ")));
                let e = r.body_json()["error"].clone();
                let refused = e["code"] == "invalid_value" && e["field"] == name;
                assert_eq!(
                    refused,
                    p["pattern"] == NOT_BLANK_PATTERN,
                    "{method} {path}: blank '{name}': {}",
                    r.body
                );
            }
            if primary == "integer" {
                let (min, max) = (
                    p["minimum"].as_i64().unwrap(),
                    p["maximum"].as_i64().unwrap(),
                );
                accepted_field(with(name, json!(min)), name);
                accepted_field(with(name, json!(max)), name);
                accepted_field(with(name, json!(min as f64)), name);
                fails_with(with(name, json!(min - 1)), "out_of_range", name);
                fails_with(with(name, json!(max + 1)), "out_of_range", name);
                fails_with(with(name, json!(min as f64 + 0.5)), "invalid_type", name);
            }
            if let Some(values) = p["enum"].as_array() {
                for v in values.iter().filter(|v| !v.is_null()) {
                    accepted_field(with(name, v.clone()), name);
                }
                fails_with(with(name, json!("zz_bogus")), "invalid_value", name);
            }
            if primary == "array" && p["items"]["type"] == "integer" {
                let items = &p["items"];
                let (min, max) = (
                    items["minimum"].as_i64().unwrap(),
                    items["maximum"].as_i64().unwrap(),
                );
                let max_items = p["maxItems"].as_u64().unwrap() as usize;
                for ok in [
                    json!([]),
                    json!([min, max]),
                    json!([min as f64]),
                    json!(vec![min; max_items]),
                ] {
                    accepted_field(with(name, ok), name);
                }
                fails_with(with(name, json!([min - 1])), "out_of_range", name);
                fails_with(with(name, json!([max + 1])), "out_of_range", name);
                fails_with(
                    with(name, json!(vec![min; max_items + 1])),
                    "out_of_range",
                    name,
                );
                fails_with(with(name, json!([min as f64 + 0.5])), "invalid_type", name);
                fails_with(with(name, json!(["1"])), "invalid_type", name);
            } else if primary == "array" {
                let items = &p["items"];
                let values = items["enum"]
                    .as_array()
                    .expect("array items are an enum or integers");
                for v in values {
                    accepted_field(with(name, json!([v])), name);
                }
                accepted_field(with(name, json!([])), name);
                fails_with(with(name, json!(["zz_bogus"])), "invalid_value", name);
                fails_with(with(name, json!([1])), "invalid_type", name);
                let max_items = p["maxItems"].as_u64().unwrap() as usize;
                accepted_field(with(name, json!(vec![values[0].clone(); max_items])), name);
                fails_with(
                    with(name, json!(vec![values[0].clone(); max_items + 1])),
                    "out_of_range",
                    name,
                );
                let item_max = items["maxLength"].as_u64().unwrap() as usize;
                fails_with(
                    with(name, json!(["a".repeat(item_max + 1)])),
                    "value_too_long",
                    name,
                );
            }
        }
        fails_with(with("zz_extra", json!(1)), "unknown_field", "zz_extra");
    }

    #[test]
    fn documented_request_constraints_match_the_validators() {
        let api = Api::new();
        let w = provision(&api, "probe");
        let t = &w.tid;
        probe_request_schema(
            &api,
            "POST",
            "/v1/calls",
            &w.key,
            "CreateCallRequest",
            json!({"phone": "+14155550100"}),
        );
        probe_request_schema(
            &api,
            "POST",
            &format!("/v1/calls/{}/hangup", w.cid),
            &w.key,
            "HangupRequest",
            json!({}),
        );
        probe_request_schema(
            &api,
            "POST",
            "/admin/tenants",
            ADMIN,
            "CreateTenantRequest",
            json!({"name": "t"}),
        );
        probe_request_schema(
            &api,
            "PATCH",
            &format!("/admin/tenants/{t}"),
            ADMIN,
            "UpdateTenantRequest",
            json!({}),
        );
        probe_request_schema(
            &api,
            "POST",
            &format!("/admin/tenants/{t}/agents"),
            ADMIN,
            "CreateAgentRequest",
            json!({"name": "a"}),
        );
        probe_request_schema(
            &api,
            "PATCH",
            &format!("/admin/tenants/{t}/agents/{}", w.aid),
            ADMIN,
            "UpdateAgentRequest",
            json!({}),
        );
        probe_request_schema(
            &api,
            "POST",
            &format!("/admin/tenants/{t}/api-keys"),
            ADMIN,
            "CreateApiKeyRequest",
            json!({}),
        );
        probe_request_schema(
            &api,
            "POST",
            &format!("/admin/tenants/{t}/webhooks"),
            ADMIN,
            "CreateWebhookRequest",
            json!({"url": "https://example.com/h"}),
        );
        probe_request_schema(
            &api,
            "PATCH",
            &format!("/admin/tenants/{t}/webhooks/{}", w.wid),
            ADMIN,
            "UpdateWebhookRequest",
            json!({}),
        );
        probe_request_schema(
            &api,
            "POST",
            &format!("/admin/tenants/{t}/webhooks/{}/rotate", w.wid),
            ADMIN,
            "RotateWebhookSecretRequest",
            json!({}),
        );
        probe_request_schema(
            &api,
            "POST",
            "/admin/sidecars",
            ADMIN,
            "CreateSidecarRequest",
            json!({"sidecar_id": "sc-probe", "region": "local"}),
        );

        // The query parameters of GET /v1/calls.
        let list = |q: &str| api.send("GET", &format!("/v1/calls?{q}"), Some(&w.key), None);
        for i in 0..LIST_LIMIT_DEFAULT {
            expect(
                api.send(
                    "POST",
                    "/v1/calls",
                    Some(&w.key),
                    Some(&json!({"phone": format!("+1415555{:04}", 2000 + i)})),
                ),
                201,
            );
        }
        assert_eq!(
            expect(list(""), 200)["data"].as_array().unwrap().len(),
            LIST_LIMIT_DEFAULT as usize
        );
        expect(list("limit=1"), 200);
        expect(list(&format!("limit={LIST_LIMIT_MAX}")), 200);
        for bad in [
            "limit=0".to_string(),
            format!("limit={}", LIST_LIMIT_MAX + 1),
            "limit=x".into(),
            "status=nope".into(),
            "zz=1".into(),
            "limit=1&limit=2".into(),
        ] {
            expect_error(list(&bad), 400, "invalid_parameter");
        }
        for s in CallStatus::ALL {
            expect(list(&format!("status={}", s.as_str())), 200);
        }
        let names: Vec<&str> = CallStatus::ALL.iter().map(|s| s.as_str()).collect();
        expect(list(&format!("status={}", names.join(","))), 200);
    }

    // ---- every route, its successes and its errors, against the spec ----

    #[test]
    fn every_route_answers_as_documented() {
        let api = Api::new();
        let spec = api.spec.clone();

        expect(api.send("GET", "/healthz", None, None), 200);
        assert_eq!(
            expect(api.send("GET", "/v1/openapi.json", None, None), 200),
            spec
        );
        expect_error(api.send("GET", "/v1/nope", None, None), 404, "not_found");
        expect_error(
            api.send("DELETE", "/v1/calls", None, None),
            405,
            "method_not_allowed",
        );

        // Admin, the happy paths.
        let w = provision(&api, "main");
        let t = w.tid.clone();
        let tp = format!("/admin/tenants/{t}");
        expect(api.admin("GET", &tp, None), 200);
        expect(
            api.admin(
                "PATCH",
                &tp,
                Some(json!({"name": "Main Co", "disabled": false})),
            ),
            200,
        );
        let a2 = expect(
            api.admin(
                "POST",
                &format!("{tp}/agents"),
                Some(json!({
            "name": "second", "system_prompt": "Be brief.", "voice": "alloy", "language": "pt-BR",
            "default_engine": "gemini_live", "model": "m", "enabled": true, "default": false})),
            ),
            201,
        );
        assert_eq!(a2["default"], false);
        let a2 = id_of(&a2);
        assert_eq!(
            expect(api.admin("GET", &format!("{tp}/agents"), None), 200)["data"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        expect(api.admin("GET", &format!("{tp}/agents/{a2}"), None), 200);
        expect(
            api.admin(
                "PATCH",
                &format!("{tp}/agents/{a2}"),
                Some(json!({"default": true})),
            ),
            200,
        );
        expect(
            api.admin("PATCH", &tp, Some(json!({"default_agent_id": w.aid}))),
            200,
        );
        expect_error(
            api.admin(
                "PATCH",
                &tp,
                Some(json!({"default_agent_id": "agt_00000000000000000000"})),
            ),
            422,
            "unknown_agent",
        );
        let k2 = expect(
            api.raw("POST", &format!("{tp}/api-keys"), Some(ADMIN), None, b""),
            201,
        );
        let k2 = id_of(&k2);
        expect(api.admin("GET", &format!("{tp}/api-keys"), None), 200);
        let revoked = expect(
            api.admin("DELETE", &format!("{tp}/api-keys/{k2}"), None),
            200,
        );
        assert!(revoked["revoked_at"].is_string());
        assert_eq!(
            expect(
                api.admin("DELETE", &format!("{tp}/api-keys/{k2}"), None),
                200
            ),
            revoked
        );
        expect(
            api.admin(
                "POST",
                &format!("{tp}/webhooks"),
                Some(json!({"url": "http://127.0.0.1:9/h", "events": ["call.completed"]})),
            ),
            201,
        );
        expect_error(
            api.admin(
                "POST",
                &format!("{tp}/webhooks"),
                Some(json!({"url": "http://example.com/h"})),
            ),
            422,
            "invalid_url",
        );
        expect(api.admin("GET", &format!("{tp}/webhooks"), None), 200);
        // Sidecars: create (again = rotate), list, revoke (idempotent).
        let sc = expect(
            api.admin(
                "POST",
                "/admin/sidecars",
                Some(json!({"sidecar_id": "sc-extra", "region": "eu-1"})),
            ),
            201,
        );
        let rotated = expect(
            api.admin(
                "POST",
                "/admin/sidecars",
                Some(json!({"sidecar_id": "sc-extra", "region": "eu-1"})),
            ),
            201,
        );
        assert_ne!(sc["secret"], rotated["secret"]);
        assert!(
            expect(api.admin("GET", "/admin/sidecars", None), 200)["data"]
                .as_array()
                .unwrap()
                .len()
                >= 2
        );
        let gone = expect(api.admin("DELETE", "/admin/sidecars/sc-extra", None), 200);
        assert!(gone["revoked_at"].is_string());
        assert_eq!(
            expect(api.admin("DELETE", "/admin/sidecars/sc-extra", None), 200),
            gone
        );
        expect_error(
            api.admin(
                "POST",
                "/admin/sidecars",
                Some(json!({"sidecar_id": "-bad", "region": "eu-1"})),
            ),
            422,
            "invalid_value",
        );

        // Calls.
        let key = Some(w.key.as_str());
        let created = api.send("POST", "/v1/calls", key, Some(&json!({
            "phone": "+442071838750", "name": "Ada", "email": "ada@example.org", "metadata": {"crm": 7},
            "agent_id": a2, "system_prompt": "hi", "voice": "alloy", "language": "en-GB", "model": "gpt-realtime",
            "max_seconds": 3600, "retries": 10, "retry_delay_minutes": 1440, "schedule_at": "2025-11-26T09:00:00Z"})));
        let location = created
            .headers
            .iter()
            .find(|(h, _)| h == "Location")
            .map(|(_, v)| v.clone())
            .unwrap();
        let scheduled = expect(created, 201);
        assert_eq!(
            (scheduled["status"].as_str(), location),
            (
                Some("scheduled"),
                format!("/v1/calls/{}", id_of(&scheduled))
            )
        );
        let page = expect(
            api.send(
                "GET",
                "/v1/calls?status=queued,scheduled&limit=1",
                key,
                None,
            ),
            200,
        );
        assert_eq!(page["has_more"], true);
        let cursor = page["next_cursor"].as_str().unwrap().to_string();
        expect(
            api.send(
                "GET",
                &format!("/v1/calls?status=queued,scheduled&limit=1&cursor={cursor}"),
                key,
                None,
            ),
            200,
        );
        expect_error(
            api.send(
                "GET",
                &format!("/v1/calls?status=queued&cursor={cursor}"),
                key,
                None,
            ),
            400,
            "invalid_cursor",
        );
        expect_error(
            api.send("GET", "/v1/calls?cursor=!!", key, None),
            400,
            "invalid_cursor",
        );
        expect_error(
            api.send("GET", "/v1/calls?limit=0", key, None),
            400,
            "invalid_parameter",
        );
        expect(
            api.send("GET", &format!("/v1/calls/{}", w.cid), key, None),
            200,
        );
        let tr = expect(
            api.send("GET", &format!("/v1/calls/{}/transcript", w.cid), key, None),
            200,
        );
        assert_eq!(
            (tr["object"].as_str(), tr["turns"].as_array().map(Vec::len)),
            (Some("transcript"), Some(0))
        );
        let txt = api.send(
            "GET",
            &format!("/v1/calls/{}/transcript?format=txt", w.cid),
            key,
            None,
        );
        assert_eq!((txt.status, txt.body.as_str()), (200, ""));
        expect_error(
            api.send(
                "GET",
                &format!("/v1/calls/{}/transcript?format=pdf", w.cid),
                key,
                None,
            ),
            400,
            "invalid_parameter",
        );
        let txt = api.send(
            "GET",
            &format!("/v1/calls/{}/transcript.txt", w.cid),
            key,
            None,
        );
        assert_eq!((txt.status, txt.body.as_str()), (200, ""));
        assert_eq!(
            expect(
                api.send(
                    "GET",
                    &format!("/v1/calls/{}/transcript.json?format=txt", w.cid),
                    key,
                    None
                ),
                200
            )["object"],
            "transcript"
        );
        expect_error(
            api.send(
                "GET",
                &format!("/v1/calls/{}/transcript.pdf", w.cid),
                key,
                None,
            ),
            400,
            "invalid_parameter",
        );
        // Recordings: none yet (404), then one stored by an upload.
        let none = expect_error(
            api.send("GET", &format!("/v1/calls/{}/recording", w.cid), key, None),
            404,
            "recording_not_found",
        );
        assert!(
            none["error"]["message"]
                .as_str()
                .unwrap()
                .contains("without record: true"),
            "{none}"
        );
        let info = crate::calls::store::RecordingInfo {
            attempt: 1,
            object_key: crate::calls::recordings::object_key(&t, &w.cid, 1),
            content_type: "audio/wav".into(),
            bytes: 32_044,
            sha256: "0".repeat(64),
            duration_ms: 1_000,
            saved_at: "2026-11-25T15:00:00.000Z".into(),
        };
        crate::calls::store::recording_saved(&*api.calls.rows(&t), &w.cid, &info, NOW).unwrap();
        let wav = api.send("GET", &format!("/v1/calls/{}/recording", w.cid), key, None);
        assert_eq!(
            (wav.status, wav.stored_object.as_deref()),
            (200, Some(info.object_key.as_str()))
        );
        // Hangup: waiting -> cancelled (200), ended -> unchanged (200), live -> requested (202).
        let cancelled = expect(
            api.send(
                "POST",
                &format!("/v1/calls/{}/hangup", w.cid),
                key,
                Some(&json!({})),
            ),
            200,
        );
        assert_eq!(cancelled["status"], "cancelled");
        expect(
            api.raw(
                "POST",
                &format!("/v1/calls/{}/hangup", w.cid),
                key,
                None,
                b"",
            ),
            200,
        );
        let live = id_of(&expect(
            api.send(
                "POST",
                "/v1/calls",
                key,
                Some(&json!({"phone": "+14155550101"})),
            ),
            201,
        ));
        {
            // A sidecar leased and acked it: live in the queue, dialing in its store.
            let mut queues = api.calls.dispatch.queues.borrow_mut();
            let q = queues.get_mut("local").unwrap();
            let (offers, _) = q.lease("s1", 10, NOW, &Default::default());
            for o in offers {
                q.ack("s1", &o.lease_id, true, NOW);
            }
        }
        let hung = expect(
            api.raw("POST", &format!("/v1/calls/{live}/hangup"), key, None, b""),
            202,
        );
        assert!(hung["hangup_requested_at"].is_string());
        expect(
            api.raw("POST", &format!("/v1/calls/{live}/hangup"), key, None, b""),
            202,
        );
        // Agent rules.
        expect(
            api.admin(
                "PATCH",
                &format!("{tp}/agents/{a2}"),
                Some(json!({"enabled": false})),
            ),
            200,
        );
        expect_error(
            api.send(
                "POST",
                "/v1/calls",
                key,
                Some(&json!({"phone": "+14155550100", "agent_id": a2})),
            ),
            409,
            "agent_disabled",
        );
        expect_error(
            api.send(
                "POST",
                "/v1/calls",
                key,
                Some(&json!({"phone": "+14155550100", "agent_id": "agt_00000000000000000000"})),
            ),
            422,
            "unknown_agent",
        );
        let bare = id_of(&expect(
            api.admin("POST", "/admin/tenants", Some(json!({"name": "bare"}))),
            201,
        ));
        let bare_key = expect(
            api.admin(
                "POST",
                &format!("/admin/tenants/{bare}/api-keys"),
                Some(json!({})),
            ),
            201,
        )["key"]
            .as_str()
            .unwrap()
            .to_string();
        expect_error(
            api.send(
                "POST",
                "/v1/calls",
                Some(&bare_key),
                Some(&json!({"phone": "+14155550100"})),
            ),
            422,
            "agent_required",
        );
        expect_error(
            api.send(
                "POST",
                "/v1/calls",
                key,
                Some(&json!({"phone": "+14155550100", "schedule_at": "2025-11-25T14:00:00Z"})),
            ),
            422,
            "schedule_in_past",
        );
        expect_error(api.send("POST", "/v1/calls", key, Some(&json!({"phone": "+14155550100", "metadata": {"k": "m".repeat(MAX_METADATA_BYTES)}}))), 422, "metadata_too_large");

        // One call at a time per agent and number.
        expect(
            api.send(
                "POST",
                "/v1/calls",
                key,
                Some(&json!({"phone": "+14155550102"})),
            ),
            201,
        );
        expect_error(
            api.send(
                "POST",
                "/v1/calls",
                key,
                Some(&json!({"phone": "+14155550102"})),
            ),
            409,
            "call_in_progress",
        );
        // A full concurrency cap refuses a call that asks to be refused (provision queued one call).
        let capped = provision(&api, "capped");
        expect(
            api.admin(
                "PATCH",
                &format!("/admin/tenants/{}", capped.tid),
                Some(json!({"max_concurrent_calls": 1})),
            ),
            200,
        );
        let over = json!({"phone": "+14155550103", "on_concurrency_limit": "reject"});
        expect_error(
            api.send("POST", "/v1/calls", Some(&capped.key), Some(&over)),
            429,
            "concurrency_limit_reached",
        );
        // A key that requires signatures refuses unsigned requests.
        let signed = expect(
            api.admin(
                "POST",
                &format!("{tp}/api-keys"),
                Some(json!({"name": "signed", "require_signature": true})),
            ),
            201,
        );
        assert!(signed["signing_secret"].is_string());
        expect_error(
            api.send("GET", "/v1/calls", signed["key"].as_str(), None),
            401,
            "invalid_request_signature",
        );
        // A calling window (NOW is a Tuesday): moved, or refused on request.
        let windowed = expect(api.admin("POST", &format!("{tp}/agents"), Some(json!({"name": "weekend",
            "calling_window": {"days": ["sat", "sun"], "start": "09:00", "end": "24:00", "time_zone": "Europe/Berlin"}}))), 201);
        let moved = expect(
            api.send(
                "POST",
                "/v1/calls",
                key,
                Some(&json!({"phone": "+14155550104", "agent_id": id_of(&windowed)})),
            ),
            201,
        );
        assert_eq!(moved["scheduled_reason"], "calling_window");
        let refused = json!({"phone": "+14155550105", "agent_id": id_of(&windowed), "outside_window": "reject"});
        expect_error(
            api.send("POST", "/v1/calls", key, Some(&refused)),
            422,
            "outside_calling_window",
        );
        // Rate limits: a tenant whose key allows one request answers 429 on every /v1 route after it.
        let limited = provision(&api, "limited");
        expect(
            api.admin(
                "PATCH",
                &format!("/admin/tenants/{}", limited.tid),
                Some(json!({"rate_limits": {"per_key": {"limit": 1, "window_seconds": 60}}})),
            ),
            200,
        );
        for (method, pattern, _) in ROUTES
            .iter()
            .filter(|r| r.1.starts_with("/v1/calls") || r.1.starts_with("/v1/webhooks"))
        {
            let body = (*method == "POST").then(|| json!({"phone": "+14155550123"}));
            let body = if pattern.ends_with("/hangup") {
                Some(json!({}))
            } else {
                body
            };
            expect_error(
                api.send(
                    method,
                    &fill(pattern, world_param(&limited)),
                    Some(&limited.key),
                    body.as_ref(),
                ),
                429,
                "rate_limited",
            );
        }

        // Webhook endpoints: read, change, rotate (overlap or not), delete.
        let wh = expect(
            api.admin(
                "POST",
                &format!("{tp}/webhooks"),
                Some(json!({"url": "https://hooks.example.com/2", "retry_schedule": [1, 2]})),
            ),
            201,
        );
        let whp = format!("{tp}/webhooks/{}", id_of(&wh));
        assert_eq!(
            expect(api.admin("GET", &whp, None), 200)["retry_schedule"],
            json!([1, 2])
        );
        let changed = expect(
            api.admin(
                "PATCH",
                &whp,
                Some(json!({"events": ["call.completed"], "enabled": false})),
            ),
            200,
        );
        assert_eq!(
            (changed["events"].clone(), changed["enabled"].clone()),
            (json!(["call.completed"]), json!(false))
        );
        let rotated = expect(
            api.admin(
                "POST",
                &format!("{whp}/rotate"),
                Some(json!({"overlap_seconds": 60})),
            ),
            200,
        );
        assert!(
            rotated["previous_secret_expires_at"].is_string() && rotated["secret"] != wh["secret"],
            "{rotated}"
        );
        let at_once = expect(
            api.admin(
                "POST",
                &format!("{whp}/rotate"),
                Some(json!({"overlap_seconds": 0})),
            ),
            200,
        );
        assert!(at_once["previous_secret_expires_at"].is_null());
        expect(
            api.raw("POST", &format!("{whp}/rotate"), Some(ADMIN), None, b""),
            200,
        );
        expect_error(
            api.admin(
                "PATCH",
                &whp,
                Some(json!({"url": "https://169.254.169.254/x"})),
            ),
            422,
            "invalid_url",
        );
        expect(api.admin("DELETE", &whp, None), 200);
        expect_error(api.admin("GET", &whp, None), 404, "webhook_not_found");
        // The delivery log: list (filters, cursor), read, redeliver.
        deliver_all(&api);
        let dp = "/v1/webhooks/deliveries";
        let page = expect(
            api.send(
                "GET",
                &format!("{dp}?event=call.queued&status=delivered&limit=1"),
                key,
                None,
            ),
            200,
        );
        assert_eq!(page["has_more"], true, "{page}");
        let cursor = page["next_cursor"].as_str().unwrap().to_string();
        expect(
            api.send(
                "GET",
                &format!("{dp}?event=call.queued&status=delivered&limit=1&cursor={cursor}"),
                key,
                None,
            ),
            200,
        );
        expect_error(
            api.send(
                "GET",
                &format!("{dp}?status=delivered&cursor={cursor}"),
                key,
                None,
            ),
            400,
            "invalid_cursor",
        );
        expect_error(
            api.send("GET", &format!("{dp}?status=nope"), key, None),
            400,
            "invalid_parameter",
        );
        expect_error(
            api.send("GET", &format!("{dp}?event=call.nope"), key, None),
            400,
            "invalid_parameter",
        );
        let one = expect(api.send("GET", &format!("{dp}/{}", w.did), key, None), 200);
        assert_eq!(
            (
                one["status"].as_str(),
                one["attempts"][0]["status_code"].as_u64()
            ),
            (Some("delivered"), Some(200))
        );
        expect(
            api.send("POST", &format!("{dp}/{}/redeliver", w.did), key, None),
            202,
        );
        assert_eq!(api.outbox.take().len(), 1, "redelivery queues one job");
        let wep = format!("{tp}/webhooks/{}", w.wid);
        expect(
            api.admin("PATCH", &wep, Some(json!({"enabled": false}))),
            200,
        );
        expect_error(
            api.send("POST", &format!("{dp}/{}/redeliver", w.did), key, None),
            409,
            "webhook_disabled",
        );
        expect(
            api.admin("PATCH", &wep, Some(json!({"enabled": true}))),
            200,
        );

        // Each operation's generic failures: credentials, body, missing objects.
        let disabled = provision(&api, "disabled");
        expect(
            api.admin(
                "PATCH",
                &format!("/admin/tenants/{}", disabled.tid),
                Some(json!({"disabled": true})),
            ),
            200,
        );
        let too_big = format!("{{{}}}", " ".repeat(MAX_BODY_BYTES));
        for (method, pattern, _) in ROUTES {
            let Some(scheme) = security_of(&spec, method, pattern) else {
                continue;
            };
            let token = if scheme == "bearerAuth" {
                w.key.as_str()
            } else {
                ADMIN
            };
            let path = fill(pattern, world_param(&w));
            expect_error(
                api.raw(method, &path, None, None, b""),
                401,
                "missing_credentials",
            );
            expect_error(
                api.raw(method, &path, Some("ak_wrong"), None, b""),
                401,
                "invalid_credentials",
            );
            // This address has failed before: with a limit of one it is blocked,
            // for admin routes even with the right token.
            api.auth_limit.set(1);
            expect_error(
                api.raw(method, &path, Some("ak_wrong"), None, b""),
                429,
                "too_many_failed_attempts",
            );
            if scheme != "bearerAuth" {
                expect_error(
                    api.raw(method, &path, Some(ADMIN), None, b""),
                    429,
                    "too_many_failed_attempts",
                );
            }
            api.auth_limit.set(crate::traffic::LIMIT_MAX);
            if scheme == "bearerAuth" {
                let path = fill(pattern, world_param(&disabled));
                expect_error(
                    api.raw(method, &path, Some(&disabled.key), None, b""),
                    403,
                    "tenant_disabled",
                );
            }
            if !operation_of(&spec, method, pattern)["requestBody"].is_null() {
                let j = Some(JSON_CT);
                expect_error(
                    api.raw(method, &path, Some(token), j, too_big.as_bytes()),
                    413,
                    "payload_too_large",
                );
                expect_error(
                    api.raw(method, &path, Some(token), Some("text/plain"), b"{}"),
                    415,
                    "unsupported_media_type",
                );
                expect_error(
                    api.raw(method, &path, Some(token), j, b"{\"a\":"),
                    400,
                    "invalid_json",
                );
                expect_error(
                    api.raw(method, &path, Some(token), j, b"{\"zz\":1}"),
                    400,
                    "unknown_field",
                );
                expect_error(
                    api.raw(method, &path, Some(token), j, b"[1]"),
                    422,
                    "invalid_type",
                );
            }
            // Each path parameter in turn names nothing.
            let params: Vec<&str> = pattern
                .split('/')
                .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
                .collect();
            for missing in &params {
                let path = fill(pattern, |name| {
                    if name == *missing {
                        missing_id(name)
                    } else {
                        world_param(&w)(name)
                    }
                });
                let body = (*method != "GET" && *method != "DELETE").then(|| json!({}));
                let code = format!(
                    "{}_not_found",
                    missing.trim_end_matches("_id").replace("key", "api_key")
                );
                expect_error(
                    api.send(method, &path, Some(token), body.as_ref()),
                    404,
                    &code,
                );
            }
            // Storage down.
            let body = match (*method, *pattern) {
                ("POST", "/admin/tenants") => br#"{"name":"x"}"#.as_slice(),
                ("POST", "/admin/sidecars") => {
                    br#"{"sidecar_id":"sc-1","region":"local"}"#.as_slice()
                }
                _ => b"".as_slice(),
            };
            let ct = (!body.is_empty()).then_some(JSON_CT);
            expect_error(
                api.send_to(&DownKv, method, &path, Some(token), ct, body),
                503,
                "storage_unavailable",
            );
        }
        // A record that cannot be read is a 500 wherever it is read: the
        // tenant (every tenant route) and the sidecar (the sidecar routes).
        let wp = world_param(&w);
        block_on(
            api.kv
                .put(&crate::model::keys::tenant(&t), "{not json", None),
        )
        .unwrap();
        block_on(
            api.kv
                .put(&crate::model::keys::sidecar(&w.sid), "{not json", None),
        )
        .unwrap();
        for (method, pattern, _) in ROUTES {
            let Some(scheme) = security_of(&spec, method, pattern) else {
                continue;
            };
            // These only write.
            if matches!(
                (*method, *pattern),
                ("POST", "/admin/tenants") | ("POST", "/admin/sidecars")
            ) {
                continue;
            }
            let token = if scheme == "bearerAuth" {
                w.key.as_str()
            } else {
                ADMIN
            };
            expect_error(
                api.raw(method, &fill(pattern, &wp), Some(token), None, b""),
                500,
                "internal_error",
            );
        }

        // Every documented response was seen, except what cannot happen here.
        let unreachable: BTreeSet<(String, String, String)> =
            // Creating a tenant or a sidecar reads nothing, and writes cannot be corrupt.
            [("POST", "/admin/tenants", "500"), ("POST", "/admin/sidecars", "500")].iter().map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string())).collect();
        let mut documented = BTreeSet::new();
        for (method, pattern, _) in ROUTES {
            for status in operation_of(&spec, method, pattern)["responses"]
                .as_object()
                .unwrap()
                .keys()
            {
                documented.insert((method.to_string(), pattern.to_string(), status.clone()));
            }
        }
        assert!(unreachable.is_subset(&documented));
        let seen = api.seen.borrow();
        let missing: Vec<_> = documented
            .difference(&seen)
            .filter(|d| !unreachable.contains(*d))
            .collect();
        assert!(
            missing.is_empty(),
            "documented but never produced: {missing:?}"
        );
    }
}

//! The document's components: every schema, request body and parameter.

use super::builders::*;
use super::patterns::*;
use crate::api::validate;
use crate::calling_window;
use crate::dialects::codeb_users;
use crate::dispatch::link_timing::MAX_LINK_SAMPLES;
use crate::error::ErrorCode;
use crate::limits::{
    AGENT_NAME_MAX, API_KEY_NAME_MAX, CALLER_NAME_MAX, CALL_NAME_MAX, EMAIL_MAX, ID_FIELD_MAX,
    LANGUAGE_MAX, MAX_CONCURRENT_CALLS_MAX, MAX_METADATA_BYTES, MAX_PROMPT_CHARS,
    MAX_SCHEDULE_AHEAD_DAYS, MAX_SECONDS, MODEL_MAX, RETRIES, RETRY_DELAY_MINUTES, SCHEDULE_AT_MAX,
    TENANT_NAME_MAX, VOICE_MAX, WEBHOOK_EVENT_MAX, WEBHOOK_URL_MAX,
};
use crate::messages::{MessageDirection, MessageStatus};
use crate::model::{Engine, WebhookFormat};
use crate::traffic;
use crate::webhooks::delivery::{
    self, DeliveryKind, DeliveryStatus, RESPONSE_SNIPPET_CHARS, TEST_EVENT_TYPE,
    TOOL_CALL_EVENT_TYPE,
};
use crate::webhooks::events::{WebhookEvent, WEBHOOK_EVENTS};
use serde_json::{json, Map, Value};
use voxline_shared::sidecar_link::{AmdMode, AnsweredBy, FirstSpeaker, MAX_MESSAGE_CHARS};

/// `amd`, as the API documents it (calls and agents).
const AMD_DOC: &str = "Answering-machine detection (issue 18): `off` (the default) starts the conversation at the answer; otherwise the sidecar classifies who answered from the greeting's length and cadence, a beep and silence, within 4 s (`answered_by`, `amd_decision_ms`), and then `hangup` hangs up on a machine at once (`ended_reason` `answering_machine`), `leave_message` waits for the machine's beep (or the end of its greeting and 1.5 s of silence), speaks `amd_message` (or, without one, lets the agent speak its greeting) and hangs up, `continue` only reports. With `hangup` and `leave_message` the agent waits for the verdict before it speaks; `unknown` is treated as a person.";
/// An agent's `transfer_extensions`, as the API documents it.
const TRANSFER_EXTENSIONS_DOC: &str = "The extensions of the tenant's people (directory users of `kind` `person`) this agent's built-in `transfer` tool may hand a caller to (issue 16), e.g. `[\"1001\"]`: each call offers the sidecar those people (an extension nobody has, or an AI agent's, is left out) and tells the model their names and extensions; the tool reaches no other extension. Numbers (`destination`) need no listing.";
/// `amd_message`, as the API documents it.
const AMD_MESSAGE_DOC: &str = "With `amd: leave_message`: the words left on the machine after its beep, synthesised by the sidecar's local voice; null or absent: the agent speaks its own greeting instead.";

/// An agent's `first_speaker`, as the API documents it.
const FIRST_SPEAKER_DOC: &str = "Who speaks first once a call is answered: `agent` greets the callee at once; `callee` waits for the callee's first words (a person answering \"Hello?\"), greets when they stop speaking, and greets anyway after a few seconds of silence (the local engine: 3 s; cloud engines answer the callee's first turn by their own voice activity detection). Default `agent`.";

pub(super) fn schemas() -> Value {
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
        "WebhookFormat",
        json!({"type": "string", "enum": WebhookFormat::NAMES, "description":
        "What an endpoint is sent and how it is signed. `native`: the events it subscribes to, signed per Standard Webhooks. \
`buildvoiceai`: BuildVoiceAI's `call.completed` body once per call, when it has ended, with `X-Signature` (hex HMAC-SHA256 of the raw body keyed \
with the token of the BuildVoiceAI credential that placed the call, else the tenant's newest unrevoked one), retried 30 s, 5 min and 30 min \
after a failure, then dropped, each attempt waiting at most 10 s. `calldock`: Calldock's `post_call` body once per call, when it has ended, \
with `X-Calldock-Event: post_call` and `X-Calldock-Signature` (hex HMAC-SHA256 of the body keyed with the endpoint's secret string, \
the Webhook Secret). `codeb`: CodeB's `outbound-ai.finished` once per call, when it has ended, and `transcript.saved` after an answered \
call with a transcript, each with `X-CodeB-Signature` (hex HMAC-SHA256 of the raw body keyed with the endpoint's secret string, the \
subscription secret). A rotation signs `calldock` and `codeb` deliveries with the new secret at once (one signature header). \
See docs/dialects.md."}),
    );

    let mut error = record(
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
    );
    // Only with `invalid_contacts`: not required.
    error["properties"]["rows"] = json!({"type": "array", "description": "`invalid_contacts` only: the invalid contact rows (at most 100).",
        "items": {"type": "object", "required": ["row", "code", "field", "message"], "properties": {
            "row": {"type": "integer", "minimum": 1, "description": "A JSON contact's 1-based position in `contacts`; a CSV row's line (the header is line 1)."},
            "code": {"type": "string", "description": "What is wrong, as an error code (`invalid_phone_number`, `missing_field`, `invalid_value`, ...)."},
            "field": {"type": ["string", "null"]},
            "message": {"type": "string"}}}});
    add(
        "Error",
        record("The one error shape of the API.", vec![("error", error)]),
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

    add(
        "AnalysisPlan",
        json!({"type": "object", "additionalProperties": false,
        "description": "What the post-call analysis of an agent's calls reads. Every answered call of the agent gets a `CallAnalysis` when it ends: from the engine's outcome and the callee's words by fixed rules (`source: local`).",
        "properties": {
            "success_outcomes": {"type": "array", "maxItems": voxline_shared::analysis::MAX_LIST_ITEMS,
                "items": {"type": "string", "minLength": 1, "maxLength": voxline_shared::analysis::MAX_NAME_CHARS, "pattern": "\\S"},
                "description": "Engine outcomes (the local script's `outcome`, e.g. `yes`) that mean the call reached its goal: `success` is whether the call's outcome is one of them (case-insensitive). Empty or absent: `success` is null."},
            "success_criteria": {"type": "string", "minLength": 1, "maxLength": voxline_shared::analysis::MAX_TEXT_CHARS, "pattern": "\\S",
                "description": "What success means, in words, for an engine with a language model that reads the call."},
            "data_schema": {"type": "object", "required": ["type", "properties"],
                "properties": {
                    "type": {"const": "object"},
                    "properties": {"type": "object", "minProperties": 1, "maxProperties": voxline_shared::analysis::MAX_DATA_FIELDS,
                        "propertyNames": {"pattern": "^[A-Za-z0-9_]{1,64}$"},
                        "additionalProperties": {"type": "object", "required": ["type"], "properties": {
                            "type": {"enum": ["string", "number", "integer", "boolean"]},
                            "description": {"type": "string", "maxLength": voxline_shared::analysis::MAX_TEXT_CHARS},
                            "enum": {"type": "array", "minItems": 1, "maxItems": voxline_shared::analysis::MAX_LIST_ITEMS,
                                "items": {"type": "string", "minLength": 1, "maxLength": voxline_shared::analysis::MAX_NAME_CHARS, "pattern": "\\S"}}}}}},
                "description": "A JSON Schema `object` of the data to extract: 1 to 20 `properties` (names of A-Z a-z 0-9 _), each `string` (optionally with `enum`), `number`, `integer` or `boolean`, with an optional `description`. Local rules take the callee's answer to the agent's last turn that names the field (its name's words, `_` as a space), else everything the callee said: `enum` the value said last, `boolean` the last yes or no, `number`/`integer` the first number (digits, or spelled below 100), `string` the answer's words (only when asked)."}}}),
    );
    add(
        "CallAnalysis",
        json!({"type": "object", "required": ["summary", "sentiment", "success", "data", "source"],
        "description": "The post-call analysis of an answered call whose agent has an `analysis` plan.",
        "properties": {
            "summary": {"type": ["string", "null"], "description": "The engine's summary, else the callee's first words."},
            "sentiment": {"type": "string", "enum": ["positive", "neutral", "negative"], "description": "A lexicon reading of the engine's outcome, else of the callee's words."},
            "success": {"type": ["boolean", "null"], "description": "Whether the call reached its goal (`success_outcomes`); null when the plan gives no way to tell."},
            "data": {"type": ["object", "null"], "description": "The `data_schema`'s fields, each null when not found; null without a schema."},
            "source": {"type": "string", "enum": ["local", "engine"], "description": "`local`: the fixed rules; `engine`: the call's engine read the call."}}}),
    );

    let call_direction = json!({"type": "string", "enum": crate::model::CallDirection::NAMES,
        "description": "`outbound`: placed through the API (we dialled `phone`); `inbound`: `phone` called the tenant's number `caller_number` and the number's agent answered."});
    let call_fields = |full: bool| {
        let mut f = vec![
            ("id", id_schema("call")),
            ("object", object_const("call")),
            ("status", schema_ref("CallStatus")),
            ("direction", call_direction.clone()),
            (
                "phone",
                with_description(
                    phone.clone(),
                    "The number called (`outbound`), or the caller (`inbound`).",
                ),
            ),
            (
                "agent_id",
                json!({"type": "string", "pattern": "^(agt_[0-9a-f]{10,40})?$", "description": "The agent whose engine takes the call; empty for a person's call (no agent: click-to-call from `from_extension`, or an inbound call to a number routed to a person or a queue)."}),
            ),
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
                ("caller_name", nullable(json!({"type": "string", "description": "The caller-ID label the callee is shown (SIP `From` display-name); null: the trunk's."}))),
                ("caller_number", nullable(with_description(phone.clone(), "The caller ID number the callee is shown (SIP `From` user), one of the tenant's numbers; null: the trunk's."))),
                ("campaign_id", nullable(with_description(id_schema("cmp"), "The campaign that placed the call (`/v1/campaigns/{campaign_id}`); null for a call placed otherwise."))),
                ("analysis", nullable(with_description(schema_ref("CallAnalysis"), "The post-call analysis, set when an answered call whose agent has an `analysis` plan ends; null otherwise."))),
                ("email", nullable(json!({"type": "string"}))),
                ("transcript_email", nullable(json!({"type": "string", "description": "Where the transcript and outcome are emailed when the call ends."}))),
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
                ("amd", json!({"type": "string", "enum": AmdMode::ALL.map(AmdMode::as_str), "description": AMD_DOC})),
                ("amd_message", nullable(json!({"type": "string", "description": AMD_MESSAGE_DOC}))),
                ("answered_by", nullable(json!({"type": "string", "enum": AnsweredBy::ALL.map(AnsweredBy::as_str),
                    "description": "Who answered, as answering-machine detection decided: `human`, `machine`, or `unknown` (no decision within its time bound). Null when `amd` is `off` or the call was not answered."}))),
                ("amd_decision_ms", nullable(json!({"type": "integer", "minimum": 0, "description": "From the answer to the `answered_by` decision, in milliseconds."}))),
                ("transfer_request", nullable(with_description(schema_ref("CallTransfer"), "The last transfer asked with `POST /v1/calls/{call_id}/transfer` and how it went; null when none was."))),
            ]);
        }
        f
    };
    add(
        "TranscriptTurn",
        record(
            "One turn of the conversation.",
            vec![
                (
                    "role",
                    json!({"type": "string", "enum": voxline_shared::sidecar_link::Role::ALL.map(|r| r.as_str())}),
                ),
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
                    json!({"type": "string", "description": "What the engine concluded, when it gives one (the local engine: the callee's last answer and the script's outcome)."}),
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
            "properties": {"left": {"const": "agent"}, "right": {"const": "callee"}}, "required": ["left", "right"], "additionalProperties": false}),
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
        "MessageStatus",
        json!({"type": "string", "enum": MessageStatus::ALL.map(MessageStatus::as_str), "description":
        "Sent (`outbound`): `queued` (waiting for a media sidecar), `sending` (handed to one, at most once), `sent` (the trunk accepted it) or \
`failed` (see `failure_reason`), then `delivered` or `undelivered` when the carrier reports it. Received (`inbound`): `received`."}),
    );
    add(
        "MessageDirection",
        json!({"type": "string", "enum": MessageDirection::ALL.map(MessageDirection::as_str),
        "description": "`outbound`: sent from one of the tenant's numbers; `inbound`: received on one."}),
    );
    let message_fields = |full: bool| {
        let mut f = vec![
            ("id", id_schema("msg")),
            ("object", object_const("message")),
            ("direction", schema_ref("MessageDirection")),
            ("status", schema_ref("MessageStatus")),
            (
                "from",
                json!({"type": "string", "description": "Sent: the tenant's number (E.164). Received: the sender, E.164 where the trunk gave a number."}),
            ),
            (
                "to",
                json!({"type": "string", "description": "Sent: the recipient (E.164). Received: the tenant's number (E.164)."}),
            ),
            (
                "body",
                json!({"type": "string", "maxLength": MAX_MESSAGE_CHARS, "description": "The text."}),
            ),
            (
                "sip_code",
                nullable(
                    json!({"type": "integer", "description": "The trunk's final SIP status to the MESSAGE, once it answered."}),
                ),
            ),
            (
                "failure_reason",
                nullable(
                    json!({"type": "string", "description": "Why it failed or was not delivered: `rejected` (a final 4xx-6xx), `timeout`, `transport`, `expired`, `no_trunk` (the sidecar's), `no_result` (no result from the sidecar in time), `no_sidecar` (no sidecar took it in time), `dispatch_unavailable`; for `undelivered` the carrier's IMDN status (`failed`, `forbidden`, `error`)."}),
                ),
            ),
            ("created_at", timestamp()),
            ("updated_at", timestamp()),
            (
                "sending_at",
                nullable(with_description(
                    timestamp(),
                    "When it was handed to a media sidecar.",
                )),
            ),
            (
                "sent_at",
                nullable(with_description(timestamp(), "When the trunk accepted it.")),
            ),
            (
                "failed_at",
                nullable(with_description(
                    timestamp(),
                    "When it failed, or was reported undelivered.",
                )),
            ),
            (
                "delivered_at",
                nullable(with_description(
                    timestamp(),
                    "When the carrier reported it delivered.",
                )),
            ),
            (
                "received_at",
                nullable(with_description(
                    timestamp(),
                    "Received messages: when it arrived.",
                )),
            ),
        ];
        if full {
            f.push(("metadata", nullable(json!({"type": "object", "description": "Your metadata, as given when sending."}))));
        }
        f
    };
    add(
        "Message",
        record(
            "A text message (SMS), sent or received.",
            message_fields(true),
        ),
    );
    add(
        "MessageSummary",
        record(
            "A message as listed (`Message` without `metadata`).",
            message_fields(false),
        ),
    );
    add(
        "MessageList",
        list_of("A page of messages, newest first.", "MessageSummary"),
    );
    add(
        "SendMessageRequest",
        input(
            "A text message to send.",
            vec![
                (
                    "from",
                    with_description(
                        phone.clone(),
                        "One of the tenant's numbers with `sms_enabled`, `active`.",
                    ),
                ),
                ("to", with_description(phone.clone(), "The recipient.")),
                (
                    "body",
                    json!({"type": "string", "minLength": 1, "maxLength": MAX_MESSAGE_CHARS, "pattern": "\\S",
                "description": format!("The text: 1 to {MAX_MESSAGE_CHARS} characters (Unicode scalar values), not blank. Longer texts go as one MESSAGE; the trunk or carrier may split them.")}),
                ),
                (
                    "metadata",
                    json!({"type": "object", "description": format!("Your own JSON object, returned with the message and its webhooks; at most {MAX_METADATA_BYTES} bytes serialized.")}),
                ),
            ],
            &["from", "to", "body"],
        ),
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
                (
                    "api_access",
                    json!({"type": "boolean", "description": "Off: the tenant's API keys are refused with 403 `api_access_disabled` and its dialect credentials in their dialect's words (BuildVoiceAI's 403), while calls already placed, webhooks and the admin API go on. `disabled` stops everything."}),
                ),
                ("codeb_host", nullable(codeb_host_schema())),
                (
                    "voice360_account",
                    nullable(super::directory::account_schema()),
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
            "per_ip_limit",
            json!({"anyOf": [schema_ref("RateLimit"), {"type": "null"}], "description": "New calls of this agent per client address, on top of the tenant's `per_ip`; null: only the tenant's applies."}),
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
        (
            "first_speaker",
            json!({"type": "string", "enum": FirstSpeaker::ALL.map(FirstSpeaker::as_str),
            "description": FIRST_SPEAKER_DOC}),
        ),
        (
            "analysis",
            nullable(with_description(
                schema_ref("AnalysisPlan"),
                "The post-call analysis of this agent's calls; null: none.",
            )),
        ),
        (
            "amd",
            json!({"type": "string", "enum": AmdMode::ALL.map(AmdMode::as_str), "description": AMD_DOC}),
        ),
        (
            "amd_message",
            nullable(json!({"type": "string", "description": AMD_MESSAGE_DOC})),
        ),
        (
            "tools",
            json!({"type": "array", "items": schema_ref("AgentTool"), "description": "Customer tools the engine may call mid-call; the edge POSTs each call to the tool's `url`."}),
        ),
        (
            "tools_secret_set",
            json!({"type": "boolean", "description": "The agent has a tools secret (minted with its first tools). The secret is shown only when minted."}),
        ),
        (
            "transfer_extensions",
            json!({"type": "array", "items": {"type": "string", "pattern": "^[0-9]{2,16}$"}, "description": TRANSFER_EXTENSIONS_DOC}),
        ),
    ];
    let mut agent_schema = record(
        "An AI agent: the defaults a call starts from.",
        agent_fields,
    );
    agent_schema["properties"]["tools_secret"] = json!({"type": "string", "pattern": "^whsec_[A-Za-z0-9+/]+={0,2}$",
        "description": "Only in the answer that minted it (the agent's first tools, or `rotate_tools_secret`): the Standard Webhooks secret that signs this agent's tool requests (`webhook-id`, `webhook-timestamp`, `webhook-signature`)."});
    add("Agent", agent_schema);
    add(
        "AgentTool",
        json!({"type": "object", "additionalProperties": false, "required": ["name", "url"],
        "description": "A customer tool (issue 18). When the engine calls it, the edge (never the sidecar) POSTs `{type: \"tool.call\", call_id, agent_id, tool_call_id, name, arguments, metadata}` to `url`, signed with the agent's tools secret like a webhook, waits up to `timeout_ms` for a 2xx answer (at most 64 KiB, JSON or text) and gives that answer to the engine. Failures reach the engine as error codes: `tool_timeout`, `tool_http_error`, `tool_response_too_large`, `tool_blocked_url`, `tool_unknown`, `tool_bad_arguments`.",
        "properties": {
            "name": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$", "not": {"enum": voxline_shared::sidecar_link::BUILT_IN_TOOLS},
                     "description": "The function name the model sees; unique per agent, not a built-in tool's (`end_call`, `send_dtmf`, `transfer`)."},
            "description": {"type": "string", "maxLength": crate::limits::TOOL_DESCRIPTION_MAX, "description": "What the tool does and when to call it, for the model. Say that the answer may take a moment: the model then tells the caller."},
            "parameters": {"type": "object", "required": ["type"], "properties": {"type": {"const": "object"}},
                           "description": "A JSON Schema of the arguments, `\"type\": \"object\"` (at most 8 KiB serialized). Default: no arguments."},
            "url": {"type": "string", "minLength": 1, "maxLength": WEBHOOK_URL_MAX, "pattern": WEBHOOK_URL_PATTERN, "description": "Where the edge POSTs the call: https to a public host (plain http to loopback only in local development), no user name or password (422 `invalid_url`)."},
            "timeout_ms": {"type": "integer", "minimum": crate::limits::TOOL_TIMEOUT_MS.0, "maximum": crate::limits::TOOL_TIMEOUT_MS.1, "default": crate::limits::TOOL_TIMEOUT_MS.2,
                           "description": "How long the edge waits for the answer (`tool_timeout` after)."}
        }}),
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
        "AgentDeleted",
        record(
            "An agent that was deleted.",
            vec![
                ("id", id_schema("agt")),
                ("object", object_const("agent")),
                ("deleted", json!({"const": true})),
            ],
        ),
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

    let dialect_names: Vec<&str> = crate::dialects::Dialect::ALL
        .iter()
        .map(|d| d.name())
        .collect();
    let dialect_key_fields = || {
        vec![
            ("id", id_schema("dky")),
            ("object", object_const("dialect_key")),
            (
                "dialect",
                json!({"type": "string", "enum": dialect_names, "description": "The seed API the credential speaks."}),
            ),
            (
                "agent_id",
                nullable(with_description(id_schema("agt"), "The agent every call of this credential is placed for (VoiceB, Calldock); null for BuildVoiceAI (the request's `agent_id`, else the default agent).")),
            ),
            ("name", nullable(json!({"type": "string"}))),
            (
                "prefix",
                json!({"type": "string", "description": "The first characters of the token, to recognise it."}),
            ),
            ("created_at", timestamp()),
            ("revoked_at", nullable(timestamp())),
        ]
    };
    add(
        "User",
        record(
            "A CodeB tenant user (its password is never shown).",
            vec![
                ("object", object_const("user")),
                ("username", username_schema()),
                (
                    "disabled",
                    json!({"type": "boolean", "description": "A disabled user gets no access tokens (`invalid_grant`)."}),
                ),
                ("created_at", timestamp()),
                ("updated_at", timestamp()),
            ],
        ),
    );
    add(
        "UserDeleted",
        record(
            "A CodeB user that was deleted.",
            vec![
                ("object", object_const("user")),
                ("username", username_schema()),
                ("deleted", json!({"const": true})),
            ],
        ),
    );
    add("UserList", list_of("All CodeB users of a tenant.", "User"));
    add(
        "DialectKey",
        record(
            "A dialect credential. Its token (and VoiceB's secret) are only ever shown once, when it is created.",
            dialect_key_fields(),
        ),
    );
    let mut created = dialect_key_fields();
    created.push((
        "token",
        json!({"type": "string", "pattern": "^(vbk_[A-Za-z0-9_-]{32}|bvai_[A-Za-z0-9_-]{32}|ck_live_[0-9a-f]{32})$",
        "description": "The clear token: VoiceB's `api-key` header, BuildVoiceAI's `Authorization: Bearer`, Calldock's `X-API-Key`. Shown only in this response."}),
    ));
    created.push(("secret", nullable(json!({"type": "string", "pattern": "^vbs_[A-Za-z0-9_-]{43}$",
        "description": "VoiceB only: the API Secret that keys the `signature` header's HMAC-SHA256 of the body. Shown only in this response; null for the other dialects."}))));
    add(
        "DialectKeyCreated",
        record("A new dialect credential, with its clear token.", created),
    );
    let slug = || {
        json!({"type": "string", "minLength": 1, "maxLength": crate::api::prompts::SLUG_MAX,
               "pattern": "^[a-z0-9][a-z0-9-]*$", "description": "The prompt's name, as requests give it."})
    };
    add(
        "SavedPrompt",
        record(
            "A tenant's saved prompt: instructions a request names by slug.",
            vec![
                ("slug", slug()),
                ("object", object_const("prompt")),
                (
                    "text",
                    with_description(
                        string_max(crate::limits::MAX_PROMPT_CHARS),
                        "The instructions.",
                    ),
                ),
                (
                    "created_at",
                    json!({"type": "string", "format": "date-time"}),
                ),
                (
                    "updated_at",
                    json!({"type": "string", "format": "date-time"}),
                ),
            ],
        ),
    );
    add(
        "SavedPromptList",
        list_of("All saved prompts of a tenant.", "SavedPrompt"),
    );
    add(
        "PromptDeleted",
        record(
            "A prompt that was deleted (or was not there).",
            vec![
                ("slug", slug()),
                ("object", object_const("prompt")),
                ("deleted", json!({"const": true})),
            ],
        ),
    );
    add(
        "PutPromptRequest",
        input(
            "The prompt's text.",
            vec![(
                "text",
                with_description(
                    json!({"type": "string", "minLength": 1, "maxLength": crate::limits::MAX_PROMPT_CHARS, "pattern": "\\S"}),
                    "The instructions (not blank).",
                ),
            )],
            &["text"],
        ),
    );
    add(
        "DialectKeyList",
        list_of(
            "All dialect credentials of a tenant, revoked ones included.",
            "DialectKey",
        ),
    );

    let webhook_fields = || {
        vec![
            ("id", id_schema("wh")),
            ("object", object_const("webhook_endpoint")),
            ("url", json!({"type": "string"})),
            ("format", schema_ref("WebhookFormat")),
            ("agent_id", nullable(with_description(id_schema("agt"), "Only calls of this agent are delivered; null: every call of the tenant."))),
            ("events", json!({"type": "array", "items": schema_ref("WebhookEvent"), "description": "Empty means every event (always empty for a dialect format, which is sent the call's end only)."})),
            ("voice360_event", nullable(voice360_event())),
            ("enabled", json!({"type": "boolean"})),
            ("disabled_reason", nullable(json!({"type": "string", "description": "Set when the edge disabled the endpoint itself (it answered 410 Gone); cleared by enabling it."}))),
            ("retry_schedule", json!({"type": "array", "items": {"type": "integer", "minimum": 1},
                "description": "Seconds to wait after each failed attempt; one retry per entry. A `buildvoiceai` endpoint shows (and follows) BuildVoiceAI's fixed schedule, `[30, 300, 1800]`."})),
            ("previous_secret_expires_at", nullable(with_description(timestamp(),
                "After a rotation: until this time deliveries are signed with the previous secret too (two signatures)."))),
            ("created_at", timestamp()),
            ("updated_at", timestamp()),
        ]
    };
    add(
        "WebhookEndpoint",
        record(
            "Where call events are delivered: native events (Standard Webhooks signatures) or a dialect's post-call webhook, see `format`.",
            webhook_fields(),
        ),
    );
    let mut created = webhook_fields();
    created.push(("secret", json!({"type": "string", "pattern": "^whsec_[A-Za-z0-9+/]+={0,2}$",
        "description": "The signing secret (Standard Webhooks `whsec_` + base64 of the HMAC key). Shown only in this response. For a `calldock` endpoint this whole string is the Webhook Secret: `X-Calldock-Signature` is keyed with its UTF-8 bytes."})));
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
            (
                "kind",
                json!({"type": "string", "enum": DeliveryKind::NAMES,
                "description": "`webhook`: an event sent to a webhook endpoint (test events too). `tool_call`: a customer tool's request, made by the edge once during a call (issue 18): never retried or redelivered (409 `not_redeliverable`)."}),
            ),
            (
                "endpoint_id",
                nullable(with_description(
                    id_schema("wh"),
                    "The endpoint; null for a `tool_call`.",
                )),
            ),
            (
                "event_type",
                json!({"description": "The event delivered; for a dialect endpoint the call's end that caused it (`call.completed` or `call.failed`; both of a `codeb` endpoint's deliveries, told apart by the payload's `type`). `webhook.test`: a test event (`POST /admin/tenants/{tenant_id}/webhooks/{webhook_id}/test`); `tool.call`: a tool call's request.",
                "anyOf": [schema_ref("WebhookEvent"), {"type": "string", "enum": [TEST_EVENT_TYPE, TOOL_CALL_EVENT_TYPE]}]}),
            ),
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
                ("event_id", json!({"type": "string", "pattern": "^(evt_|msg_)|^$", "description": "The `webhook-id` header: the same on every attempt and redelivery (`msg_...` for a tool call; empty when nothing was sent)."})),
                ("next_attempt_at", nullable(timestamp())),
                ("last_error", nullable(json!({"type": "string"}))),
                ("payload", json!({"description": "The exact body sent (a dialect endpoint's is its dialect's).", "anyOf": [
                    schema_ref("WebhookCallEvent"), schema_ref("WebhookTranscriptEvent"), schema_ref("WebhookRecordingEvent"), schema_ref("WebhookMessageEvent"), schema_ref("WebhookContactEvent"),
                    schema_ref("BuildVoiceAiCallCompleted"), schema_ref("CalldockPostCall"),
                    schema_ref("CodebOutboundAiFinished"), schema_ref("CodebTranscriptSaved"),
                    schema_ref("WebhookTestEvent"), schema_ref("ToolCallRequest"), {"type": "null", "description": "A tool call that sent nothing (no such tool, bad arguments, a refused URL)."}]})),
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
                        json!({"type": "integer", "description": "The receiver's HTTP status; null when none came (refused, or timed out: after 15 s, 10 s for a `buildvoiceai` endpoint)."}),
                    ),
                ),
                ("error", nullable(json!({"type": "string"}))),
                ("duration_ms", json!({"type": "integer", "minimum": 0})),
                (
                    "manual",
                    json!({"type": "boolean", "description": "Made by a manual redelivery or a test-send."}),
                ),
                (
                    "response_snippet",
                    nullable(
                        json!({"type": "string", "maxLength": RESPONSE_SNIPPET_CHARS,
                        "description": "The start of the receiver's answer body (at most 256 characters, bytes that are not UTF-8 replaced); null when no body came."}),
                    ),
                ),
            ],
        ),
    );
    add("WebhookTestEvent", record(
        "The body of a test event (`POST /admin/tenants/{tenant_id}/webhooks/{webhook_id}/test`), signed as the endpoint's format signs its events.",
        vec![
            ("id", json!({"type": "string", "pattern": "^evt_"})),
            ("type", json!({"const": TEST_EVENT_TYPE})),
            ("timestamp", timestamp()),
            ("data", record("What was tested.", vec![
                ("endpoint_id", id_schema("wh")),
                ("tenant_id", id_schema("ten")),
                ("message", json!({"type": "string"})),
            ])),
        ],
    ));
    add("ToolCallRequest", record(
        "The body the edge POSTs to a customer tool's URL (issue 18), signed per Standard Webhooks with the agent's tools secret.",
        vec![
            ("type", json!({"const": TOOL_CALL_EVENT_TYPE})),
            ("call_id", id_schema("call")),
            ("agent_id", id_schema("agt")),
            ("tool_call_id", json!({"type": "string", "description": "The engine's id of this call."})),
            ("name", json!({"type": "string"})),
            ("arguments", json!({"type": "object", "description": "The model's arguments."})),
            ("metadata", json!({"description": "The call's `metadata` (null when none)."})),
        ],
    ));
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
                ("direction", call_direction.clone()),
                ("ended_reason", nullable(json!({"type": "string", "enum": ended_reason_names()}))),
                ("sip_code", nullable(json!({"type": "integer"}))),
                ("attempts", json!({"type": "integer", "minimum": 0})),
                ("phone", phone.clone()),
                ("name", nullable(json!({"type": "string"}))),
                ("caller_name", nullable(json!({"type": "string", "description": "The caller-ID label the callee is shown (SIP `From` display-name); null: the trunk's."}))),
                ("caller_number", nullable(with_description(phone.clone(), "The caller ID number the callee is shown (SIP `From` user), one of the tenant's numbers; null: the trunk's."))),
                ("campaign_id", nullable(with_description(id_schema("cmp"), "The campaign that placed the call; null for a call placed otherwise."))),
                ("agent_id", json!({"type": "string", "pattern": "^(agt_[0-9a-f]{10,40})?$", "description": "The agent whose engine takes the call; empty for a person's call (no agent: click-to-call from `from_extension`, or an inbound call to a number routed to a person or a queue)."})),
                ("metadata", nullable(json!({"type": "object", "description": "Your metadata, as given when placing the call."}))),
                ("schedule_at", nullable(timestamp())),
                ("created_at", timestamp()),
                ("dispatched_at", nullable(timestamp())),
                ("ringing_at", nullable(timestamp())),
                ("answered_at", nullable(timestamp())),
                ("ended_at", nullable(timestamp())),
                ("ring_seconds", maybe_seconds("From dialing (or ringing) to answer or end.")),
                ("talk_seconds", maybe_seconds("From answer to end; null until the call ends or if it was never answered.")),
                ("answered_by", nullable(json!({"type": "string", "enum": AnsweredBy::ALL.map(AnsweredBy::as_str),
                    "description": "Who answered, as answering-machine detection decided (`human`, `machine`, `unknown`); null when the call's `amd` is `off` or it was not answered."}))),
                ("amd_decision_ms", nullable(json!({"type": "integer", "minimum": 0, "description": "From the answer to the `answered_by` decision, in milliseconds."}))),
                ("transcript_url", json!({"type": "string", "description": "The call's transcript (`GET`, with your API key); complete once `transcript.saved` was sent."})),
                ("recording_url", json!({"type": "null", "description": "Always null here: a recording is uploaded after the call ends, and `recording.saved` carries its URL."})),
                ("analysis", nullable(with_description(schema_ref("CallAnalysis"), "The post-call analysis (set in the event of the call's end when its agent has an `analysis` plan and it was answered); null otherwise."))),
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
    transcript_data.push((
        "analysis",
        nullable(with_description(
            schema_ref("CallAnalysis"),
            "The post-call analysis when the call's agent has an `analysis` plan; null otherwise.",
        )),
    ));
    let transcript_data = record("The call's whole transcript.", transcript_data);
    add(
        "WebhookTranscriptEvent",
        envelope(WebhookEvent::TranscriptSaved.as_str(), transcript_data),
    );
    add(
        "WebhookRecordingEvent",
        envelope(
            WebhookEvent::RecordingSaved.as_str(),
            schema_ref("Recording"),
        ),
    );
    add(
        "WebhookMessageEvent",
        record(
            "The body POSTed for the `message.*` events, signed like every event.",
            vec![
                (
                    "id",
                    json!({"type": "string", "pattern": "^evt_", "description": "Equals the `webhook-id` header."}),
                ),
                (
                    "type",
                    json!({"type": "string", "enum": WebhookEvent::ALL.iter().filter(|e| e.message_event().is_some()).map(|e| e.as_str()).collect::<Vec<_>>()}),
                ),
                ("timestamp", timestamp()),
                ("data", schema_ref("Message")),
            ],
        ),
    );
    add_dialect_bodies(&mut add);

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
    let mut listed = sidecar_fields();
    listed.push(("load", nullable(schema_ref("SidecarLoad"))));
    add("SidecarListed", record("A sidecar as listed: its credentials' record and, while its region's dispatch queue counts it live (registered, polling, not presumed dead), its `load`; null otherwise (offline or revoked).", listed));
    let count = |d: &str| json!({"type": "integer", "minimum": 0, "description": d});
    add("SidecarLoad", record(
        "A live sidecar's load and its link's timing, as its region's dispatch queue sees them.",
        vec![
            ("active_calls", count("Calls the queue has it holding (acked offers and inbound calls).")),
            ("offered_calls", count("Offers leased to it, not acked yet.")),
            ("capacity", count("Concurrent calls it registered for.")),
            ("free_slots", nullable(count("The free call slots its last lease poll reported (null before its first poll)."))),
            ("last_seen_at", with_description(timestamp(), "Its last request on the link.")),
            ("lease_turnaround_ms", record(
                "Summary of the samples: the last, the (lower) median and the largest; null without samples.",
                vec![
                    ("last", nullable(count("ms"))),
                    ("p50", nullable(count("ms"))),
                    ("max", nullable(count("ms"))),
                ],
            )),
            ("lease_turnaround_samples", json!({"type": "array", "maxItems": MAX_LINK_SAMPLES,
                "description": "Its newest lease turnarounds, oldest first: from the queue's answer to one lease poll to the arrival of its next (the link's round trip plus the sidecar's time to poll again; the edge's clock only). Polls after a gap over 30 s (a reconnect) are not samples.",
                "items": record("One lease poll's turnaround.", vec![
                    ("at", with_description(timestamp(), "When the poll arrived.")),
                    ("turnaround_ms", count("ms")),
                ])})),
        ],
    ));
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
        list_of(
            "All sidecars, revoked ones included, each with its load.",
            "SidecarListed",
        ),
    );

    // ---- request bodies ----
    let not_blank = |max: usize, d: &str| json!({"type": "string", "minLength": 1, "maxLength": max, "pattern": NOT_BLANK_PATTERN, "description": d});
    add("CreateCallRequest", input(
        "A call to place. Only `phone` is required; unset settings come from the agent.",
        vec![
            ("phone", with_description(phone.clone(), "The number to call, E.164 (`+` then 7 to 15 digits, no spaces).")),
            ("name", nullable(with_description(string_max(CALL_NAME_MAX), "The callee's name, for the agent and for you."))),
            ("caller_name", nullable(json!({"type": "string", "minLength": 1, "maxLength": CALLER_NAME_MAX, "pattern": CALLER_NAME_PATTERN,
                "description": "The caller-ID label the callee is shown: the display-name of the SIP `From` header of this call, over the trunk's. No control characters (422 `invalid_value`); the sidecar quotes it (RFC 3261). CodeB's `displayName`."}))),
            ("caller_number", nullable(with_description(phone.clone(), "The caller ID number the callee is shown: the user part of the SIP `From` header (and of `P-Asserted-Identity` / `Remote-Party-ID` where the trunk is configured to send one), over the trunk's `from_number`. E.164 (422 `invalid_phone_number`); it must be one of the tenant's numbers with status `active` (422 `unknown_number`): a number the tenant does not hold is never shown. Voice360's `caller_id`."))),
            ("email", nullable(json!({"type": "string", "maxLength": EMAIL_MAX, "pattern": EMAIL_PATTERN, "description": "The callee's email address."}))),
            ("transcript_email", nullable(json!({"type": "string", "maxLength": EMAIL_MAX, "pattern": validate::TRANSCRIPT_EMAIL_PATTERN,
                "description": "Where to email the transcript and outcome when the call ends (one plain-text mail, sent from `MAIL_FROM` through the deployment's mail transport; none configured: the mail is skipped and logged). Not the callee's `email`. ASCII only: a dot-atom local part and a domain of letters, digits and hyphens (422 `invalid_email`)."}))),
            ("metadata", nullable(json!({"type": "object", "description": format!("Your own data, returned with the call and in webhooks; at most {MAX_METADATA_BYTES} bytes once serialized (422 `metadata_too_large`).")}))),
            ("agent_id", nullable(json!({"type": "string", "maxLength": ID_FIELD_MAX, "pattern": "^agt_[0-9a-f]{10,40}$",
                "description": "The agent to use; the tenant's default agent when absent (422 `agent_required` if there is none). It must exist (422 `unknown_agent`) and be enabled (409 `agent_disabled`)."}))),
            ("from_extension", nullable(json!({"type": "string", "minLength": 2, "maxLength": crate::dialects::voice360::MAX_EXTENSION_DIGITS, "pattern": "^[0-9]+$",
                "description": format!("Click-to-call, instead of an agent: the extension of a person of the tenant's directory (422 `unknown_extension` if none has it; an AI agent's extension is not a person's: give its `agent_id`). The sidecar rings that person's SIP phones first (those registered with the sidecar that takes the call; none there: the call ends `no_answer`), then dials `phone` and bridges the two; no agent and no engine take part, so the agent's fields ({}) are refused with it (422 `invalid_value` naming the field). `caller_number` defaults to the person's own number (the first active number routed to them), `caller_name` to their `caller_id`. One call at a time per person and number (409 `call_in_progress`). Voice360's `from` of a person.", crate::api::validate::AGENT_CALL_FIELDS.iter().map(|f| format!("`{f}`")).collect::<Vec<_>>().join(", "))}))),
            ("system_prompt", nullable(with_description(string_max(MAX_PROMPT_CHARS), "Overrides the agent's prompt. Either prompt may hold dynamic variables, filled in when the call is placed: `{{name}}` (the callee's `name`), `{{phone}}`, `{{metadata.KEY}}` (a string, number or boolean of `metadata`) and `{{KEY}}` of `variables`. A placeholder the call does not fill is refused (422 `unknown_variable`, naming it); other text between braces is kept as written."))),
            ("voice", nullable(with_description(voice.clone(), "Overrides the agent's voice: letters, digits, `-`, `_` or `.`."))),
            ("language", nullable(with_description(language.clone(), "Overrides the agent's language: a BCP-47 tag such as `en-US`."))),
            ("model", nullable(with_description(string_max(MODEL_MAX), "Overrides the agent's model."))),
            ("max_seconds", nullable(with_description(int_range(MAX_SECONDS), "Longest the call may last once answered, in seconds."))),
            ("silence_timeout_seconds", nullable(with_description(int_range(SILENCE_TIMEOUT), "Hang up (`ended_reason` `silence_timeout`) after this long with neither side speaking; default: the agent's, else 30."))),
            ("amd", nullable(json!({"type": "string", "enum": AmdMode::ALL.map(AmdMode::as_str), "description": format!("{AMD_DOC} Default: the agent's.")}))),
            ("amd_message", nullable(json!({"type": "string", "maxLength": crate::limits::AMD_MESSAGE_MAX, "description": format!("{AMD_MESSAGE_DOC} Default: the agent's.")}))),
            ("variables", nullable(json!({"type": "object", "maxProperties": crate::prompt_variables::MAX_VARIABLES,
                "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]{0,63}$", "not": {"enum": crate::prompt_variables::RESERVED}},
                "additionalProperties": {"type": "string", "maxLength": crate::prompt_variables::MAX_VALUE_CHARS},
                "description": "This call's dynamic variables: `{{KEY}}` in the prompt becomes the value. Names are letters, digits and `_` (not first a digit), not `name`, `phone` or `metadata` (built in)."}))),
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
        "TransferCallRequest",
        input(
            "Whom to hand the callee to: one of `destination`, `extension` or `queue`.",
            vec![
                (
                    "destination",
                    with_description(phone.clone(), "A number, E.164."),
                ),
                (
                    "extension",
                    json!({"type": "string", "pattern": "^[0-9]{2,16}$", "description": "The extension of a person (`kind` `person`) of the tenant's directory."}),
                ),
                (
                    "queue",
                    json!({"type": "integer", "minimum": 1, "maximum": crate::directory::MAX_PK, "description": "The `pk` of a call queue of the tenant's directory (blind only): the callee waits in it as an inbound caller to the queue does."}),
                ),
                (
                    "mode",
                    json!({"type": "string", "enum": ["blind", "warm"], "default": "blind",
                    "description": "`blind`: connect as soon as the other side answers; `warm`: the callee waits on hold and the other side hears `message` first."}),
                ),
                (
                    "message",
                    json!({"type": "string", "maxLength": voxline_shared::sidecar_link::MAX_TRANSFER_MESSAGE_CHARS,
                    "description": "`warm` only: what the person hears before they are connected (default: a briefing from the conversation)."}),
                ),
            ],
            &[],
        ),
    );
    add(
        "CallTransfer",
        record(
            "The last transfer the API asked for, and how it went.",
            vec![
                ("id", id_schema("xfr")),
                (
                    "status",
                    json!({"type": "string", "enum": crate::model::TransferStatus::ALL.map(crate::model::TransferStatus::as_str),
                    "description": "`requested`: sent to the sidecar; `completed`: the callee was handed over; `failed`: it did not happen and the call went on with the agent."}),
                ),
                ("destination", nullable(phone.clone())),
                ("extension", nullable(json!({"type": "string"}))),
                (
                    "queue",
                    nullable(
                        json!({"type": "integer", "description": "The queue's `pk` (a transfer to a queue)."}),
                    ),
                ),
                ("mode", json!({"type": "string", "enum": ["blind", "warm"]})),
                ("requested_at", timestamp()),
                (
                    "ended_at",
                    nullable(with_description(
                        timestamp(),
                        "When it completed or failed.",
                    )),
                ),
                (
                    "method",
                    nullable(
                        json!({"type": "string", "enum": ["refer", "bridge", "warm", "queue"], "description": "How it completed (`queue`: the callee entered the queue)."}),
                    ),
                ),
                (
                    "error",
                    nullable(
                        json!({"type": "string", "enum": voxline_shared::sidecar_link::transfer_errors::ALL, "description": "Why it failed."}),
                    ),
                ),
                (
                    "sip_code",
                    nullable(
                        json!({"type": "integer", "minimum": 100, "maximum": 699, "description": "The other side's final SIP answer, when it failed with one."}),
                    ),
                ),
            ],
        ),
    );
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
                (
                    "api_access",
                    nullable(
                        json!({"type": "boolean", "default": true, "description": "Switch off to refuse the tenant's API keys and dialect credentials (see `Tenant`)."}),
                    ),
                ),
                ("codeb_host", nullable(codeb_host_schema())),
                (
                    "voice360_account",
                    nullable(super::directory::account_schema()),
                ),
            ],
            &["name"],
        ),
    );
    let password = json!({"type": "string", "minLength": codeb_users::PASSWORD_MIN, "maxLength": codeb_users::PASSWORD_MAX,
        "description": "Kept only as an Argon2id hash; never shown."});
    add(
        "CreateUserRequest",
        input(
            "A new CodeB user.",
            vec![
                (
                    "username",
                    with_description(
                        username_schema(),
                        "Lowercased on input; unique in the tenant (409 `user_exists`).",
                    ),
                ),
                ("password", password.clone()),
                (
                    "disabled",
                    nullable(json!({"type": "boolean", "default": false})),
                ),
            ],
            &["username", "password"],
        ),
    );
    add(
        "UpdateUserRequest",
        input(
            "Fields to change; absent or null fields keep their value. A new password or disabling revokes the user's access tokens.",
            vec![
                ("password", nullable(password)),
                ("disabled", nullable(json!({"type": "boolean"}))),
            ],
            &[],
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
        ("api_access", nullable(json!({"type": "boolean", "description": "Switch the tenant's API access (API keys and dialect credentials) off or on again (see `Tenant`)."}))),
        ("codeb_host", nullable(with_description(codeb_host_schema(), "Set or change the host CodeB serves the tenant at; unlike other fields, an explicit null removes it."))),
        ("voice360_account", nullable(with_description(super::directory::account_schema(), "Set or change the Voice360 account id of the tenant; unlike other fields, an explicit null removes it."))),
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
                "per_ip_limit",
                opt(
                    json!({"allOf": [schema_ref("RateLimit")], "description": "A `RateLimit` (`{limit, window_seconds}`) on new calls of this agent per client address, on top of the tenant's `per_ip` (422 `invalid_value` when out of range)."}),
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
                "amd",
                opt(if creating {
                    json!({"type": "string", "enum": AmdMode::ALL.map(AmdMode::as_str), "default": "off", "description": AMD_DOC})
                } else {
                    json!({"type": "string", "enum": AmdMode::ALL.map(AmdMode::as_str), "description": AMD_DOC})
                }),
            ),
            (
                "amd_message",
                opt(
                    json!({"type": "string", "maxLength": crate::limits::AMD_MESSAGE_MAX, "description": if creating {
                        AMD_MESSAGE_DOC
                    } else {
                        "Replaces the agent's `amd_message`. Unlike other fields, an explicit null removes it; absent keeps it."
                    }}),
                ),
            ),
            (
                "first_speaker",
                opt(if creating {
                    json!({"type": "string", "enum": FirstSpeaker::ALL.map(FirstSpeaker::as_str), "default": "agent", "description": FIRST_SPEAKER_DOC})
                } else {
                    json!({"type": "string", "enum": FirstSpeaker::ALL.map(FirstSpeaker::as_str), "description": FIRST_SPEAKER_DOC})
                }),
            ),
            (
                "analysis",
                opt(with_description(
                    schema_ref("AnalysisPlan"),
                    if creating {
                        "Post-call analysis of this agent's calls (see `AnalysisPlan`). Invalid parts: 422 `invalid_value` naming them."
                    } else {
                        "Replaces the agent's analysis plan. Unlike other fields, an explicit null removes it; absent keeps it."
                    },
                )),
            ),
            (
                "tools",
                opt(
                    json!({"type": "array", "maxItems": crate::limits::MAX_AGENT_TOOLS, "items": schema_ref("AgentTool"),
                    "description": if creating {
                        "Customer tools (at most 16, names unique). The answer carries the agent's new `tools_secret` when there are any."
                    } else {
                        "Replaces the agent's tools; null or `[]` removes them. The agent's first tools mint its `tools_secret`, carried in this answer."
                    }}),
                ),
            ),
            (
                "rotate_tools_secret",
                opt(
                    json!({"type": "boolean", "description": "true mints a new tools secret (carried in this answer, `tools_secret`); the old one stops signing at once."}),
                ),
            ),
            (
                "transfer_extensions",
                opt(
                    json!({"type": "array", "maxItems": voxline_shared::sidecar_link::MAX_TRANSFER_PEOPLE, "items": {"type": "string", "pattern": "^[0-9]{2,16}$", "maxLength": 16, "example": "1001"},
                    "description": if creating {
                        TRANSFER_EXTENSIONS_DOC
                    } else {
                        "Replaces the agent's `transfer_extensions`; null or `[]` removes them."
                    }}),
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
    let mut dialect_key_request = input(
            "A new dialect credential.",
            vec![
                (
                    "dialect",
                    json!({"type": "string", "enum": crate::dialects::Dialect::ALL.iter().map(|d| d.name()).collect::<Vec<_>>(),
                        "description": "The seed API the credential speaks."}),
                ),
                (
                    "agent_id",
                    nullable(with_description(string_max(ID_FIELD_MAX), "Required for `voiceb` and `calldock` (their credentials belong to one agent); refused for `buildvoiceai`.")),
                ),
                (
                    "name",
                    nullable(with_description(
                        string_max(API_KEY_NAME_MAX),
                        "A label to recognise the credential by.",
                    )),
                ),
            ],
            &["dialect"],
    );
    // Whose credential it is depends on the dialect: say so in the schema.
    {
        dialect_key_request["allOf"] = json!([
            {"if": {"properties": {"dialect": {"enum": ["voiceb", "calldock"]}}, "required": ["dialect"]},
             "then": {"required": ["agent_id"], "properties": {"agent_id": {"type": "string"}}}},
            {"if": {"properties": {"dialect": {"const": "buildvoiceai"}}, "required": ["dialect"]},
             "then": {"properties": {"agent_id": {"type": "null"}}}}
        ]);
    }
    add("CreateDialectKeyRequest", dialect_key_request);
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
    let format = |with_default: bool| {
        let mut f = json!({"type": "string", "enum": WebhookFormat::NAMES,
            "description": "What the endpoint is sent and how it is signed (see `WebhookFormat`). `voice360` is sent its one `voice360_event`. A dialect format (`buildvoiceai`, `calldock`, `codeb`) is sent the call's end only: `events` must then be empty (422 `invalid_value`); `buildvoiceai` retries on BuildVoiceAI's fixed schedule, so `retry_schedule` is refused with it (422 `invalid_value`)."});
        if with_default {
            f["default"] = json!(WebhookFormat::Native.as_str());
        }
        nullable(f)
    };
    let v360_event = |what: &str| nullable(with_description(voice360_event(), what));
    let webhook_agent = |absent: &str| {
        nullable(
            json!({"type": "string", "maxLength": ID_FIELD_MAX, "pattern": "^agt_[0-9a-f]{10,40}$",
            "description": format!("Deliver only calls of this agent of the tenant (422 `unknown_agent` if there is none); {absent} Calldock configures its webhook per agent.")}),
        )
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
                ("format", format(true)),
                (
                    "agent_id",
                    webhook_agent("null or absent: every call of the tenant."),
                ),
                (
                    "voice360_event",
                    v360_event(
                        "Required with `format: voice360` (its one event type), refused otherwise.",
                    ),
                ),
            ],
            &["url"],
        ),
    );
    add("UpdateWebhookRequest", input("Fields to change; absent or null fields keep their value (but `agent_id`: null removes the filter). Enabling clears `disabled_reason`. The result must still be a valid endpoint: a dialect `format` with non-empty `events` is 422 `invalid_value`.", vec![
        ("url", nullable(url)),
        ("events", nullable(with_description(events, "Events to deliver; empty means every event."))),
        ("enabled", nullable(json!({"type": "boolean"}))),
        ("retry_schedule", schedule(false)),
        ("format", format(false)),
        ("agent_id", webhook_agent("null: remove the filter; absent: keep it.")),
        ("voice360_event", v360_event("A `voice360` endpoint's event type.")),
    ], &[]));
    add(
        "TestWebhookRequest",
        input(
            "Optional body: none, or an empty object (a test event has no settings).",
            vec![],
            &[],
        ),
    );
    add("RotateWebhookSecretRequest", input("Optional body.", vec![
        ("overlap_seconds", nullable(with_description(
            int_range((0, delivery::MAX_ROTATION_OVERLAP_SECONDS as i64, delivery::DEFAULT_ROTATION_OVERLAP_SECONDS as i64)),
            "How long deliveries are also signed with the previous secret (both signatures, space-separated in `webhook-signature`). 0 retires it at once. Native endpoints only: `calldock` and `codeb` endpoints (one signature header) are signed with the new secret at once."))),
    ], &[]));
    add("CreateSidecarRequest", input("Credentials for a media sidecar of a region. Creating an existing id rotates its secret.", vec![
        ("sidecar_id", json!({"type": "string", "maxLength": 64, "pattern": SIDECAR_ID_PATTERN})),
        ("region", json!({"type": "string", "maxLength": 64, "pattern": SIDECAR_ID_PATTERN,
            "description": "The dispatch region whose calls this sidecar dials."})),
    ], &["sidecar_id", "region"]));
    super::directory::schemas(&mut s);
    super::contacts::schemas(&mut s);
    super::campaigns::schemas(&mut s);
    Value::Object(s)
}

/// The bodies dialect endpoints are sent (`format` `buildvoiceai`, `calldock`, `codeb`).
fn add_dialect_bodies(add: &mut impl FnMut(&str, Value)) {
    let seconds_time = || json!({"type": "string", "format": "date-time", "description": "RFC 3339 in UTC, whole seconds."});
    let text = || json!({"type": "string"});
    let count = || json!({"type": "integer", "minimum": 0});
    add("BuildVoiceAiCallCompleted", record(
        "What a `buildvoiceai` endpoint is sent once per call, when it has ended (answered or not), as BuildVoiceAI's document shows it, keys in its order.",
        vec![
            ("event", json!({"const": crate::dialects::buildvoiceai::EVENT})),
            ("call_id", id_schema("call")),
            ("agent_id", id_schema("agt")),
            ("agent_name", with_description(text(), "The agent's name now (empty if it was deleted).")),
            ("direction", json!({"const": "outbound"})),
            ("phone_number", text()),
            ("duration_seconds", with_description(count(), "From answer to end; 0 if never answered.")),
            ("started_at", with_description(seconds_time(), "The answer, else the hand-over to a sidecar, else the end.")),
            ("ended_at", seconds_time()),
            ("sentiment", nullable(json!({"type": "string", "enum": ["positive", "neutral", "negative"],
                "description": "A deterministic reading of the engine's outcome and the callee's words (`dialects::post_call::sentiment`)."}))),
            ("summary", nullable(text())),
            ("transcript", json!({"type": "array", "items": record("One turn.", vec![
                ("role", json!({"type": "string", "enum": ["agent", "human"]})),
                ("content", text()),
                ("timestamp", with_description(seconds_time(), "The answer plus the turn's start.")),
            ])})),
            ("metadata", json!({"type": "object", "description": "The request's `metadata`, as given; `{}` without one."})),
        ],
    ));
    let number = || json!({"type": "number", "minimum": 0});
    add("CalldockPostCall", record(
        "What a `calldock` endpoint is sent once per call, when it has ended, as Calldock's document shows it, keys in its order, \
written exactly as JavaScript's `JSON.stringify` writes it (so its Node verifier holds).",
        vec![
            ("webhook_version", json!({"const": "v1"})),
            ("webhook_timestamp", with_description(seconds_time(), "When the body was rendered.")),
            ("webhook_type", json!({"const": crate::dialects::calldock::EVENT_POST_CALL})),
            ("call_id", id_schema("call")),
            ("agent_id", id_schema("agt")),
            ("phone_number", text()),
            ("from_phone_number", nullable(json!({"type": "string", "description": "The call's own caller ID number (one of the tenant's), when it has one; null: the sidecar's trunk's, unknown to the edge."}))),
            ("status", json!({"type": "string", "enum": ["done", "no_answer", "busy", "cancelled", "failed"]})),
            ("intent", nullable(with_description(text(), "The engine's outcome."))),
            ("intent_confidence", json!({"type": "null", "description": "Null: the engines give no confidence."})),
            ("lead_data", record("The callee.", vec![
                ("name", nullable(text())),
                ("email", nullable(text())),
                ("phone", text()),
            ])),
            ("duration_minutes", with_description(number(), "Seconds / 60, two decimals.")),
            ("duration_seconds", count()),
            ("start_time", seconds_time()),
            ("end_time", seconds_time()),
            ("call_successful", json!({"type": "string", "enum": ["success", "failure"]})),
            ("language", with_description(text(), "The primary subtag of the call's language (`en-US` -> `en`).")),
            ("credits_deducted", json!({"const": 0, "description": "0: voxline has no credits."})),
            ("metadata", record("The call's outcome in words.", vec![
                ("summary", nullable(text())),
                ("transcript", with_description(text(), "`Agent: ...` and `User: ...` lines.")),
                ("transcript_turns", json!({"type": "array", "items": record("One turn.", vec![
                    ("role", json!({"type": "string", "enum": ["agent", "user"]})),
                    ("message", text()),
                    ("time_in_call_secs", count()),
                ])})),
            ])),
            ("recording_url", json!({"type": ["string", "null"], "format": "uri", "description": "A signed link to the call's recording (`GET /v1/recordings/{tenant_id}/{call_id}?expires=..&signature=..`, no API key; works for 7 days; 404 until the recording is uploaded) for calls placed with `record: true` (every Calldock call). Null for other calls, and when the deployment has no `PUBLIC_BASE_URL` (or no sealing secret)."})),
        ],
    ));
    let ms_time = || json!({"type": "string", "format": "date-time", "description": "RFC 3339 in UTC, milliseconds, `Z`."});
    let codeb_id = || json!({"type": "string", "pattern": "^oac-[0-9a-f]+$", "description": "`oac-` + the hex of the native `call_` id."});
    let transcript_file = |ext: &str| {
        json!({"type": "string", "pattern": format!("^outbound-ai-[0-9]{{8}}-[0-9]{{6}}-oac-[0-9a-f]+\\.{ext}$"),
        "description": "A name under `GET /api.ashx/v1/transcripts/`."})
    };
    let codeb_envelope = |description: &str, kind: &str, data: Value| {
        record(
            description,
            vec![
                ("type", json!({"const": kind})),
                (
                    "tenant",
                    with_description(text(), "The tenant's CodeB name."),
                ),
                (
                    "timestamp",
                    with_description(ms_time(), "When the body was rendered."),
                ),
                ("data", data),
            ],
        )
    };
    add("CodebOutboundAiFinished", codeb_envelope(
        "What a `codeb` endpoint is sent once per call, when it has ended (answered or not), as CodeB's document shows it, keys in its order.",
        crate::dialects::codeb::EVENT_FINISHED,
        record("The call.", vec![
            ("callId", codeb_id()),
            ("phone", text()),
            ("displayName", with_description(text(), "The call's `caller_name`, else `phone`.")),
            ("status", json!({"type": "string", "enum": ["ended-success", "ended-failed-final", "cancelled"]})),
            ("endedReason", nullable(with_description(text(), "`finished` for a call hung up after the answer; else the reason in words (`no-answer`, `busy`, ...)."))),
            ("durationSec", with_description(count(), "From answer to end, rounded; 0 if never answered.")),
            ("dispatchedAtUtc", nullable(ms_time())),
            ("answeredAtUtc", nullable(ms_time())),
            ("endedAtUtc", nullable(ms_time())),
            ("transcriptPath", nullable(with_description(transcript_file("txt"), "Null if never answered."))),
            ("attempt", count()),
            ("retriesLeft", count()),
        ]),
    ));
    add("CodebTranscriptSaved", codeb_envelope(
        "What a `codeb` endpoint is sent after `outbound-ai.finished` when the call was answered and has a transcript.",
        crate::dialects::codeb::EVENT_TRANSCRIPT_SAVED,
        record("Where the transcript is.", vec![
            ("callId", codeb_id()),
            ("transcriptPath", transcript_file("txt")),
            ("jsonPath", transcript_file("json")),
            ("turns", with_description(json!({"type": "integer", "minimum": 1}), "Turns in the transcript.")),
        ]),
    ));
}

// ---- operations ----

/// A Voice360 webhook's "Event Type".
fn voice360_event() -> Value {
    let names: Vec<&str> = crate::dialects::voice360::EventType::ALL
        .iter()
        .map(|e| e.as_str())
        .collect();
    json!({"type": "string", "enum": names, "description": "The one Voice360 event type a `voice360` endpoint listens for. Served today: `INCOMING_EXTERNAL_CALL` (an inbound call the edge created, routed to an AI agent, a person or a queue, before it is answered; refused calls send nothing), `USER_DIAL` (a call placed from a directory user's extension, when it is created), `USER_HANGUP` (its end), `CALL_ENDED` (every call's end), `TRANSCRIPTION_FINISHED` (after an answered call's transcript), people's and queues' calls (issue 16, from the sidecar's `leg` / `queue` events): `USER_ANSWER`, `QUEUE_ENTER`, `QUEUE_MEMBER_DIAL`, `QUEUE_MEMBER_ANSWER`, `QUEUE_MEMBER_DIAL_HANGUP`, `QUEUE_HANGUP`, `QUEUE_NO_ANSWER`, `QUEUE_HANGUP_TIMEOUT`, `QUEUE_HANGUP_ABANDONED`, `SMS_SENT`, `SMS_RECEIVED`, `SMS_DELIVERED` (text messages), `CONTACT_CREATED`, `CONTACT_UPDATED`, `CONTACT_DELETED` (`/v1/contacts`; `contact_id` is the contact's `con_` id). Signed `X-Voice360-Signature: sha256=<hex HMAC-SHA256 of the raw body>` with the endpoint's secret; retries: 1 to 10 (`retry_schedule`); a rotation ends the old secret at once."})
}

/// `Tenant.codeb_host` as `dialects::codeb_users::normalize_host` accepts it (lowercased on input).
fn codeb_host_schema() -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": codeb_users::HOST_MAX,
        "pattern": codeb_users::HOST_PATTERN,
        "description": "The host (optionally `:port`; a default port is left out) the CodeB dialect serves this tenant at: its token endpoint and REST paths answer for this tenant only there, and its answers and webhooks name the tenant so. Lowercased; unique among tenants (409 `codeb_host_taken`). Indexed in KV, so a change may take up to 60 s to reach every location."})
}

/// A CodeB username (`dialects::codeb_users::normalize_username`).
fn username_schema() -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": codeb_users::USERNAME_MAX, "pattern": codeb_users::USERNAME_PATTERN})
}

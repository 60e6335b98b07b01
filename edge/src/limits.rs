//! Request limits that both the validators (`api::validate`, the handlers)
//! and the OpenAPI document (`api::openapi`) read, so the document states
//! exactly what the server enforces. (Limits owned by one module and also
//! documented stay there and are read from there: engine key lengths in
//! `engine_keys`, rate limits and idempotency keys in `traffic`, retry
//! schedules in `webhooks::delivery`, calling windows in `calling_window`.)

/// Largest body any JSON endpoint accepts (the sidecar link's too).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Largest body of `POST /v1/campaigns` (up to 100,000 contacts, JSON or CSV).
pub const MAX_CAMPAIGN_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Page size of a listing when `limit` is not given.
pub const LIST_LIMIT_DEFAULT: u32 = 20;
/// Largest `limit` a listing takes.
pub const LIST_LIMIT_MAX: u32 = 100;

/// `Retry-After` on `concurrency_limit_reached`.
pub const CONCURRENCY_RETRY_AFTER_SECONDS: u64 = 15;

/// Largest `max_concurrent_calls` a tenant may set.
pub const MAX_CONCURRENT_CALLS_MAX: i64 = 10_000;

/// Largest `metadata` object, serialized.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;
/// Longest `system_prompt` (characters).
pub const MAX_PROMPT_CHARS: usize = 20_000;
/// How far ahead `schedule_at` may be.
pub const MAX_SCHEDULE_AHEAD_DAYS: u64 = 90;

// String lengths (characters, not bytes).
/// A call's `name`.
pub const CALL_NAME_MAX: usize = 200;
/// A call's `caller_name` (the sidecar bounds it again, by the same constant).
pub const CALLER_NAME_MAX: usize = voxline_shared::sidecar_link::MAX_CALLER_NAME_CHARS;
/// A call's `email`.
pub const EMAIL_MAX: usize = 254;
/// Ids given in a body (`agent_id`, `default_agent_id`).
pub const ID_FIELD_MAX: usize = 64;
/// `schedule_at` (an RFC 3339 timestamp).
pub const SCHEDULE_AT_MAX: usize = 64;
/// `voice`.
pub const VOICE_MAX: usize = 64;
/// `language` (a BCP-47 tag).
pub const LANGUAGE_MAX: usize = 35;
/// `model`.
pub const MODEL_MAX: usize = 128;
/// A tenant's `name`.
pub const TENANT_NAME_MAX: usize = 200;
/// An agent's `name`.
pub const AGENT_NAME_MAX: usize = 100;
/// An API key's `name`.
pub const API_KEY_NAME_MAX: usize = 100;
/// A webhook endpoint's `url`.
pub const WEBHOOK_URL_MAX: usize = 2048;
/// One entry of a webhook endpoint's `events`.
pub const WEBHOOK_EVENT_MAX: usize = 64;

// Integer ranges of POST /v1/calls: (min, max, default).
/// `max_seconds`.
pub const MAX_SECONDS: (i64, i64, i64) = (10, 3600, 300);
/// `retries`.
pub const RETRIES: (i64, i64, i64) = (0, 10, 0);
/// `retry_delay_minutes`.
pub const RETRY_DELAY_MINUTES: (i64, i64, i64) = (1, 1440, 5);
/// `silence_timeout_seconds`: the range calls and agents accept (the default
/// is `model::DEFAULT_SILENCE_TIMEOUT_SECONDS`).
pub const SILENCE_TIMEOUT_SECONDS: (i64, i64) = (10, 3600);

/// `amd_message` (calls and agents): the words left on an answering machine.
pub const AMD_MESSAGE_MAX: usize = 1_000;
/// An agent's customer tools (issue 18): how many, and the bounds of each.
pub const MAX_AGENT_TOOLS: usize = 16;
/// A tool's `name`: 1-64 of `A-Za-z0-9_-`.
pub const TOOL_NAME_MAX: usize = 64;
/// A tool's `description`, in characters.
pub const TOOL_DESCRIPTION_MAX: usize = 1_024;
/// A tool's `parameters` JSON Schema, serialized.
pub const TOOL_PARAMETERS_MAX_BYTES: usize = 8 * 1024;
/// A tool's `timeout_ms`: (min, max, default).
pub const TOOL_TIMEOUT_MS: (i64, i64, i64) = (100, 20_000, 8_000);

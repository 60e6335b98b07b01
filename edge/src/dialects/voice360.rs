//! Voice360 API v3 (seed document `voice360-api-v3.txt`).
//!
//! Pure: paths and the route matcher (each operation with the access its
//! badges give), the answer envelope and the error answers with the
//! document's `error_code`s, rate-limit headers, the request readers
//! (`POST /call/outbound`, `POST /sms/send`, the `GET /numbers` filters), the
//! `result` of every GET endpoint from plain view structs, and the webhook
//! bodies with their `X-Voice360-Signature`. Not wired yet (no `Dialect`
//! variant): the next slice keeps accounts, users, numbers and queues, checks
//! keys and serves the paths (docs/dialects.md, "Voice360").
//!
//! Choices where the document is silent or loose (each also on the item):
//! - The public endpoints (its "Public Endpoints" list) are served without a
//!   key although their badges say "Auth Required": `GET /availability` shows
//!   presence without `channels`, `GET /queues` and `/queues/{id}` show the
//!   queue's basics, the queue availability endpoints their whole (counts
//!   only) answer. A developer key gets the full view; a user key is refused
//!   there (its comparison table: user keys have no `/queues`, `/availability`).
//! - An unknown key is 403 `AUTH_INVALID_KEY` ("Invalid API key provided",
//!   with the `details` of its error example); a known key of the wrong kind
//!   is 403 `AUTH_INVALID` ("insufficient permissions").
//! - 405 (not in its table) is `METHOD_NOT_ALLOWED` with `Allow`; a native
//!   "call in progress" is `BAD_REQUEST` (its list has no 409).
//! - Success envelopes always carry `timestamp` ("All API responses follow a
//!   consistent JSON structure"; some endpoint examples leave it out).

use serde::Serialize;
use serde_json::Value;

use super::js_json::JsNumber;
use super::post_call::{EndedCall, Speaker};
use crate::ids::{rfc3339_ms, rfc3339_seconds};

// ---------------------------------------------------------------- ordered JSON

/// JSON written in the order built: serde_json's `Value` sorts object keys
/// (no `preserve_order` feature here), and the document's examples fix the
/// order of every answer and event.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Value(Value),
    /// A number written as JavaScript writes it (`16.59`, `0`, not `0.0`).
    Number(JsNumber),
    Object(Vec<(&'static str, Json)>),
    Array(Vec<Json>),
}

/// A scalar (string, integer, bool, null, `Option` of those).
fn v(x: impl Into<Value>) -> Json {
    Json::Value(x.into())
}

fn obj(fields: Vec<(&'static str, Json)>) -> Json {
    Json::Object(fields)
}

impl Serialize for Json {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self {
            Json::Value(x) => x.serialize(s),
            Json::Number(n) => n.serialize(s),
            Json::Object(fields) => {
                let mut map = s.serialize_map(Some(fields.len()))?;
                for (k, x) in fields {
                    map.serialize_entry(k, x)?;
                }
                map.end()
            }
            Json::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for x in items {
                    seq.serialize_element(x)?;
                }
                seq.end()
            }
        }
    }
}

// ---------------------------------------------------------------- paths

/// Every Voice360 path starts with this, then `{account_id}` (no native path does).
pub const PATH_PREFIX: &str = "/v3/voice/";
/// Longest path looked at; a longer Voice360 path is not found, unread.
const MAX_PATH_CHARS: usize = 256;
/// Longest `account_id` path segment.
pub const MAX_ACCOUNT_ID_CHARS: usize = 64;

/// The request header carrying either kind of key.
pub const HEADER_KEY: &str = "X-API-Key";
pub const HEADER_SIGNATURE: &str = "X-Voice360-Signature";
pub const HEADER_RATE_LIMIT: &str = "X-RateLimit-Limit";
pub const HEADER_RATE_REMAINING: &str = "X-RateLimit-Remaining";
/// The prefix of developer keys (`v360_dev_...`); every other key is a user key.
pub const DEVELOPER_KEY_PREFIX: &str = "v360_dev_";
/// Longest key looked up; a longer one is invalid unread.
pub const MAX_KEY_CHARS: usize = 128;

/// "1000 requests per minute (applies to both key types)", per key.
pub const KEY_LIMIT_PER_MINUTE: u32 = 1000;
/// "100 requests per minute per IP" for requests without a key.
pub const PUBLIC_LIMIT_PER_MINUTE: u32 = 100;
pub const RATE_WINDOW_SECONDS: u64 = 60;

/// What a Voice360 request asks for, with its checked path parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `GET /availability`
    UserAvailability,
    /// `GET /queues`
    ListQueues,
    /// `GET /queues/{queue_id}`
    GetQueue { queue_id: u64 },
    /// `GET /availability/queues`
    QueuesAvailability,
    /// `GET /availability/queues/{queue_id}`
    QueueAvailability { queue_id: u64 },
    /// `POST /call/outbound` ([`read_outbound_call`])
    OutboundCall,
    /// `POST /sms/send` ([`read_sms_send`])
    SendSms,
    /// `GET /numbers` ([`read_numbers_query`])
    ListNumbers,
    /// `GET /user/numbers`
    UserNumbers,
    /// `GET /user/profile`
    UserProfile,
}

/// Who may call an operation, as its badges (and the public list) say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Without a key (the public view, limited per IP) or with a developer key
    /// (the full view); a user key is refused.
    PublicOrDeveloper,
    /// "Developer API Key (Only)".
    Developer,
    /// "User API Key Only": the key's own user.
    User,
    /// Both badges (`POST /sms/send`).
    UserOrDeveloper,
}

/// Who is calling, once the wiring has looked the key up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// No `X-API-Key` header (or an empty one).
    Anonymous,
    User,
    Developer,
}

impl Caller {
    /// Requests per minute: per key with one, per client address without.
    pub fn rate_limit_per_minute(self) -> u32 {
        match self {
            Caller::Anonymous => PUBLIC_LIMIT_PER_MINUTE,
            Caller::User | Caller::Developer => KEY_LIMIT_PER_MINUTE,
        }
    }
}

/// What an admitted caller sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// A public endpoint without a key: the reduced answer.
    Public,
    Full,
}

impl Access {
    /// Whether `caller` may call; a missing key where one is needed is 401
    /// `AUTH_REQUIRED`, a key of the wrong kind 403 `AUTH_INVALID`.
    pub fn admit(self, caller: Caller) -> Result<View, V360Error> {
        let wrong_kind = |kind| V360Error::AuthInvalid {
            key_type: kind,
            required: self.required(),
        };
        match (self, caller) {
            (Access::PublicOrDeveloper, Caller::Anonymous) => Ok(View::Public),
            (_, Caller::Anonymous) => Err(V360Error::AuthRequired),
            (Access::PublicOrDeveloper | Access::Developer, Caller::Developer)
            | (Access::User, Caller::User)
            | (Access::UserOrDeveloper, _) => Ok(View::Full),
            (Access::PublicOrDeveloper | Access::Developer, Caller::User) => {
                Err(wrong_kind("user"))
            }
            (Access::User, Caller::Developer) => Err(wrong_kind("developer")),
        }
    }

    /// The key kinds accepted, as `details.required` says them.
    fn required(self) -> &'static str {
        match self {
            Access::PublicOrDeveloper | Access::Developer => "developer",
            Access::User => "user",
            Access::UserOrDeveloper => "user or developer",
        }
    }
}

impl Operation {
    pub fn access(self) -> Access {
        match self {
            Operation::UserAvailability
            | Operation::ListQueues
            | Operation::GetQueue { .. }
            | Operation::QueuesAvailability
            | Operation::QueueAvailability { .. } => Access::PublicOrDeveloper,
            Operation::OutboundCall | Operation::ListNumbers => Access::Developer,
            Operation::UserNumbers | Operation::UserProfile => Access::User,
            Operation::SendSms => Access::UserOrDeveloper,
        }
    }

    /// The success answer's `message`, as the document's examples write it
    /// (ours where it shows none).
    pub fn message(self) -> &'static str {
        match self {
            Operation::UserAvailability => "User availability data",
            Operation::ListQueues => "List of queues",
            Operation::GetQueue { .. } => "Queue details",
            Operation::QueuesAvailability | Operation::QueueAvailability { .. } => {
                "Queue availability data"
            }
            Operation::OutboundCall => "Call initiated successfully",
            Operation::SendSms => "SMS sent successfully",
            Operation::ListNumbers => "List of numbers",
            Operation::UserNumbers => "List of phone numbers assigned to user",
            Operation::UserProfile => "User profile details",
        }
    }
}

/// The route matcher's answer for a path under [`PATH_PREFIX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routed<'a> {
    Operation {
        /// The `{account_id}` segment as sent (shape checked, not looked up).
        account_id: &'a str,
        op: Operation,
    },
    /// The path is Voice360's but not with this method; `allow` is the `Allow` header.
    MethodNotAllowed { allow: &'static str },
    /// Under the prefix, but nothing there (or a malformed account or queue id).
    NotFound,
}

/// An `{account_id}`: the document's are integers (`61`); ours name a
/// tenant, so 1-64 of ASCII letters, digits, `-` and `_`.
pub fn account_id_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ACCOUNT_ID_CHARS
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A `{queue_id}`: a queue's `pk`, 1-18 decimal digits (no sign, no leading zero).
fn queue_id(s: &str) -> Option<u64> {
    let ok = !s.is_empty()
        && s.len() <= 18
        && s.bytes().all(|b| b.is_ascii_digit())
        && !(s.len() > 1 && s.starts_with('0'));
    ok.then(|| s.parse().ok()).flatten()
}

/// Matches `method` and `path` (no query string). `None`: not under
/// [`PATH_PREFIX`], so another router decides.
pub fn route<'a>(method: &str, path: &'a str) -> Option<Routed<'a>> {
    let rest = path.strip_prefix(PATH_PREFIX)?;
    if path.len() > MAX_PATH_CHARS {
        return Some(Routed::NotFound);
    }
    let (account_id, tail) = match rest.split_once('/') {
        Some((a, t)) if account_id_ok(a) => (a, t),
        _ => return Some(Routed::NotFound),
    };
    let only = |wanted: &'static str, op: Operation| {
        if method == wanted {
            Routed::Operation { account_id, op }
        } else {
            Routed::MethodNotAllowed { allow: wanted }
        }
    };
    let routed = match tail {
        "availability" => only("GET", Operation::UserAvailability),
        "queues" => only("GET", Operation::ListQueues),
        "availability/queues" => only("GET", Operation::QueuesAvailability),
        "call/outbound" => only("POST", Operation::OutboundCall),
        "sms/send" => only("POST", Operation::SendSms),
        "numbers" => only("GET", Operation::ListNumbers),
        "user/numbers" => only("GET", Operation::UserNumbers),
        "user/profile" => only("GET", Operation::UserProfile),
        _ => {
            if let Some(id) = tail.strip_prefix("availability/queues/") {
                match queue_id(id) {
                    Some(queue_id) => only("GET", Operation::QueueAvailability { queue_id }),
                    None => Routed::NotFound,
                }
            } else if let Some(id) = tail.strip_prefix("queues/") {
                match queue_id(id) {
                    Some(queue_id) => only("GET", Operation::GetQueue { queue_id }),
                    None => Routed::NotFound,
                }
            } else {
                Routed::NotFound
            }
        }
    };
    Some(routed)
}

// ---------------------------------------------------------------- keys

/// The two kinds of `X-API-Key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// "abc123xyz...": one user's own profile, numbers and calls.
    User,
    /// "v360_dev_...": the whole account.
    Developer,
}

impl KeyKind {
    /// The kind a key's text claims (its prefix); the lookup must agree.
    pub fn of(key: &str) -> KeyKind {
        if key.starts_with(DEVELOPER_KEY_PREFIX) {
            KeyKind::Developer
        } else {
            KeyKind::User
        }
    }

    pub fn caller(self) -> Caller {
        match self {
            KeyKind::User => Caller::User,
            KeyKind::Developer => Caller::Developer,
        }
    }

    /// A new key: a developer key is `v360_dev_` + 48 hex digits (192 bits),
    /// a user key 48 hex digits (the document's user keys have no prefix).
    pub fn mint(self, random: &[u8; 24]) -> String {
        match self {
            KeyKind::User => hex::encode(random),
            KeyKind::Developer => format!("{DEVELOPER_KEY_PREFIX}{}", hex::encode(random)),
        }
    }
}

/// Whether `key` is worth looking up: 1-128 visible ASCII characters.
pub fn plausible_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= MAX_KEY_CHARS && key.bytes().all(|b| b.is_ascii_graphic())
}

/// `details.provided_key` of an invalid key: at most 8 of its first
/// characters (never more than half of it), then `xxx...` (the document's
/// `"partial_key_xxx..."`).
pub fn key_hint(key: &str) -> String {
    let shown = (key.chars().count() / 2).min(8);
    let head: String = key
        .chars()
        .take(shown)
        .filter(|c| c.is_ascii_graphic())
        .collect();
    format!("{head}xxx...")
}

// ---------------------------------------------------------------- rate limits

/// `X-RateLimit-Limit` and `X-RateLimit-Remaining` of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitHeaders {
    pub limit: u32,
    pub remaining: u32,
}

impl RateLimitHeaders {
    pub fn headers(self) -> [(&'static str, String); 2] {
        [
            (HEADER_RATE_LIMIT, self.limit.to_string()),
            (HEADER_RATE_REMAINING, self.remaining.to_string()),
        ]
    }
}

// ---------------------------------------------------------------- envelope and errors

/// A success answer: `{"result":...,"error":false,"message":"...","timestamp":"..."}`
/// (`timestamp` RFC 3339, whole seconds, UTC, as the document's).
pub fn ok_body<T: Serialize>(result: &T, message: &str, now_ms: u64) -> String {
    #[derive(Serialize)]
    struct Ok<'a, T> {
        result: &'a T,
        error: bool,
        message: &'a str,
        timestamp: String,
    }
    serde_json::to_string(&Ok {
        result,
        error: false,
        message,
        timestamp: rfc3339_seconds(now_ms),
    })
    .unwrap_or_default()
}

/// The document's error codes (its "Error Handling" table, and
/// `AUTH_INVALID_KEY` of its response-format example), and ours for 405.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum V360Error {
    /// 400: a malformed body, query or field; `field` names it in `details`.
    BadRequest {
        field: Option<&'static str>,
        message: String,
    },
    /// 401: no `X-API-Key` where one is needed.
    AuthRequired,
    /// 403: an unknown, revoked or malformed key; `provided_key` is [`key_hint`].
    AuthInvalidKey { provided_key: String },
    /// 403: a key of the wrong kind for this endpoint, or of another account.
    AuthInvalid {
        key_type: &'static str,
        required: &'static str,
    },
    /// 404: no such account, queue, extension or number (or one of another account).
    NotFound { what: &'static str },
    /// 405 (not in the document): the path exists with another method.
    MethodNotAllowed { allow: &'static str },
    /// 429: over the key's or the IP's limit.
    RateLimited {
        limit: u32,
        retry_after_seconds: u64,
    },
    /// 500
    Internal,
    /// 503: a dependency (storage, the trunk) is unavailable for now.
    ServiceUnavailable { retry_after_seconds: Option<u64> },
}

pub const HELP: &str = "Please check your API key with your account administrator";

impl V360Error {
    /// (status, `error_code`, `message`)
    pub fn parts(&self) -> (u16, &'static str, String) {
        match self {
            V360Error::BadRequest { message, .. } => (400, "BAD_REQUEST", message.clone()),
            V360Error::AuthRequired => (
                401,
                "AUTH_REQUIRED",
                "Authentication required: pass your API key in the X-API-Key header".into(),
            ),
            V360Error::AuthInvalidKey { .. } => {
                (403, "AUTH_INVALID_KEY", "Invalid API key provided".into())
            }
            V360Error::AuthInvalid { .. } => (
                403,
                "AUTH_INVALID",
                "Insufficient permissions for this endpoint".into(),
            ),
            V360Error::NotFound { what } => (404, "NOT_FOUND", format!("{what} not found")),
            V360Error::MethodNotAllowed { .. } => {
                (405, "METHOD_NOT_ALLOWED", "Method not allowed".into())
            }
            V360Error::RateLimited { .. } => (
                429,
                "RATE_LIMITED",
                "Too many requests - rate limit exceeded".into(),
            ),
            V360Error::Internal => (
                500,
                "INTERNAL_ERROR",
                "Internal server error - please try again".into(),
            ),
            V360Error::ServiceUnavailable { .. } => (
                503,
                "SERVICE_UNAVAILABLE",
                "Service temporarily unavailable".into(),
            ),
        }
    }

    pub fn status(&self) -> u16 {
        self.parts().0
    }

    /// Headers the answer carries besides `Content-Type: application/json`
    /// (the wiring adds the rate-limit headers of admitted requests).
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        match self {
            V360Error::MethodNotAllowed { allow } => vec![("Allow", (*allow).into())],
            V360Error::RateLimited {
                limit,
                retry_after_seconds,
            } => vec![
                ("Retry-After", retry_after_seconds.to_string()),
                (HEADER_RATE_LIMIT, limit.to_string()),
                (HEADER_RATE_REMAINING, "0".into()),
            ],
            V360Error::ServiceUnavailable {
                retry_after_seconds: Some(s),
            } => vec![("Retry-After", s.to_string())],
            _ => vec![],
        }
    }

    fn details(&self) -> Option<Json> {
        match self {
            V360Error::BadRequest {
                field: Some(field), ..
            } => Some(obj(vec![("field", v(*field))])),
            V360Error::AuthInvalidKey { provided_key } => Some(obj(vec![
                ("provided_key", v(provided_key.as_str())),
                ("help", v(HELP)),
            ])),
            V360Error::AuthInvalid { key_type, required } => Some(obj(vec![
                ("key_type", v(*key_type)),
                ("required", v(*required)),
            ])),
            V360Error::RateLimited {
                limit,
                retry_after_seconds,
            } => Some(obj(vec![
                ("limit", v(*limit)),
                ("window_seconds", v(RATE_WINDOW_SECONDS)),
                ("retry_after", v(*retry_after_seconds)),
            ])),
            _ => None,
        }
    }

    /// `{"result":null,"error":true,"message","error_code","details"?,"timestamp"}`,
    /// in the order of the document's error example.
    pub fn body(&self, now_ms: u64) -> String {
        #[derive(Serialize)]
        struct Failed {
            result: (),
            error: bool,
            message: String,
            error_code: &'static str,
            #[serde(skip_serializing_if = "Option::is_none")]
            details: Option<Json>,
            timestamp: String,
        }
        let (_, error_code, message) = self.parts();
        serde_json::to_string(&Failed {
            result: (),
            error: true,
            message,
            error_code,
            details: self.details(),
            timestamp: rfc3339_seconds(now_ms),
        })
        .unwrap_or_default()
    }

    pub fn bad(field: &'static str, message: impl Into<String>) -> V360Error {
        V360Error::BadRequest {
            field: Some(field),
            message: message.into(),
        }
    }
}

impl From<&super::refusal::Refusal> for V360Error {
    fn from(r: &super::refusal::Refusal) -> V360Error {
        use super::refusal::Refusal as R;
        match r {
            R::MissingCredentials => V360Error::AuthRequired,
            R::InvalidCredentials | R::InvalidSignature => V360Error::AuthInvalidKey {
                provided_key: "xxx...".into(),
            },
            R::AccessDisabled => V360Error::AuthInvalid {
                key_type: "disabled",
                required: "an enabled account",
            },
            R::AgentDisabled => V360Error::bad("from", "The extension's AI agent is disabled"),
            R::AgentNotConfigured => {
                V360Error::bad("from", "The extension has no AI agent to place calls with")
            }
            R::InvalidRequest(why) => V360Error::BadRequest {
                field: None,
                message: why.clone(),
            },
            R::CallInProgress => V360Error::bad(
                "to",
                "A call to this number is already queued, scheduled or in progress",
            ),
            R::RateLimited {
                retry_after_seconds,
            } => V360Error::RateLimited {
                limit: KEY_LIMIT_PER_MINUTE,
                retry_after_seconds: *retry_after_seconds,
            },
            R::AgentLookupFailed | R::Internal => V360Error::Internal,
        }
    }
}

// ---------------------------------------------------------------- request readers

/// Longest body read by the POST endpoints.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// Longest extension (`presence_id`): 2-16 digits.
pub const MAX_EXTENSION_DIGITS: usize = 16;
/// "SMS message content (max 160 chars)", counted in characters.
pub const MAX_SMS_CHARS: usize = 160;

fn read_object(body: &[u8]) -> Result<Value, V360Error> {
    let malformed = |m: &str| V360Error::BadRequest {
        field: None,
        message: m.into(),
    };
    if body.len() > MAX_BODY_BYTES {
        return Err(malformed(&format!(
            "The body is larger than {MAX_BODY_BYTES} bytes"
        )));
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|_| malformed("The request body is not valid JSON"))?;
    if !value.is_object() {
        return Err(malformed("The request body must be a JSON object"));
    }
    Ok(value)
}

fn required_string(value: &Value, name: &'static str, max: usize) -> Result<String, V360Error> {
    super::body::optional_string(value, name, max)
        .map_err(|m| V360Error::bad(name, m))?
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| V360Error::bad(name, format!("{name} is required")))
}

fn phone_field(value: &Value, name: &'static str) -> Result<String, V360Error> {
    let raw = required_string(value, name, super::phone::MAX_INPUT_CHARS)?;
    super::phone::normalize(&raw).ok_or_else(|| {
        V360Error::bad(
            name,
            format!("{name} must be a phone number in E.164 format, e.g. +15551234567"),
        )
    })
}

/// An extension: 2-16 digits (the document's `"1001"`).
pub fn extension_ok(s: &str) -> bool {
    (2..=MAX_EXTENSION_DIGITS).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

/// A `POST /call/outbound` body. Unknown fields are ignored (its clients
/// spread an `options` object into it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundCall {
    /// The calling extension (a user's or an AI agent's `presence_id`).
    pub from: String,
    /// E.164 after `dialects::phone::normalize`.
    pub to: String,
    /// E.164; `None`: the extension's (or trunk's) caller ID.
    pub caller_id: Option<String>,
    /// "Enable call recording (default: false)".
    pub recording: bool,
}

pub fn read_outbound_call(body: &[u8]) -> Result<OutboundCall, V360Error> {
    let value = read_object(body)?;
    let from = required_string(&value, "from", 64)?;
    let from = from.trim().to_string();
    if !extension_ok(&from) {
        return Err(V360Error::bad(
            "from",
            "from must be an extension number, e.g. \"1001\"",
        ));
    }
    let to = phone_field(&value, "to")?;
    let caller_id = match value.get("caller_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(_) => Some(phone_field(&value, "caller_id")?),
    };
    let recording = match value.get("recording") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(V360Error::bad("recording", "recording must be a boolean")),
    };
    Ok(OutboundCall {
        from,
        to,
        caller_id,
        recording,
    })
}

/// `result` of `POST /call/outbound`:
/// `{"call_id","status":"initiating","from","to","timestamp"}`.
pub fn outbound_result(call_id: &str, call: &OutboundCall, now_ms: u64) -> Json {
    obj(vec![
        ("call_id", v(call_id)),
        ("status", v("initiating")),
        ("from", v(call.from.as_str())),
        ("to", v(call.to.as_str())),
        ("timestamp", v(rfc3339_seconds(now_ms))),
    ])
}

/// A `POST /sms/send` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsSend {
    /// One of the account's numbers (the wiring checks that, and SMS on it).
    pub from: String,
    pub to: String,
    /// 1-160 characters, as sent.
    pub message: String,
}

pub fn read_sms_send(body: &[u8]) -> Result<SmsSend, V360Error> {
    let value = read_object(body)?;
    let from = phone_field(&value, "from")?;
    let to = phone_field(&value, "to")?;
    let message = match value.get("message") {
        Some(Value::String(s)) if s.trim().is_empty() => {
            return Err(V360Error::bad("message", "message is required"));
        }
        Some(Value::String(s)) if s.chars().count() > MAX_SMS_CHARS => {
            return Err(V360Error::bad(
                "message",
                format!(
                    "message is {} characters; at most {MAX_SMS_CHARS} are allowed",
                    s.chars().count()
                ),
            ));
        }
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => return Err(V360Error::bad("message", "message is required")),
        Some(_) => return Err(V360Error::bad("message", "message must be a string")),
    };
    if message
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(V360Error::bad(
            "message",
            "message must not contain control characters",
        ));
    }
    Ok(SmsSend { from, to, message })
}

/// `result` of `POST /sms/send` (the document shows none):
/// `{"message_id","status","from","to","body","timestamp"}`; `status` is
/// where the message is (`sending` until the trunk answers).
pub fn sms_result(message_id: &str, status: &str, sms: &SmsSend, now_ms: u64) -> Json {
    obj(vec![
        ("message_id", v(message_id)),
        ("status", v(status)),
        ("from", v(sms.from.as_str())),
        ("to", v(sms.to.as_str())),
        ("body", v(sms.message.as_str())),
        ("timestamp", v(rfc3339_seconds(now_ms))),
    ])
}

/// A number's status (the `status` filter). The document shows `active` only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumberStatus {
    Active,
    Inactive,
    Porting,
}

impl NumberStatus {
    pub const ALL: [NumberStatus; 3] = [
        NumberStatus::Active,
        NumberStatus::Inactive,
        NumberStatus::Porting,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NumberStatus::Active => "active",
            NumberStatus::Inactive => "inactive",
            NumberStatus::Porting => "porting",
        }
    }

    pub fn parse(s: &str) -> Option<NumberStatus> {
        NumberStatus::ALL.into_iter().find(|n| n.as_str() == s)
    }
}

/// `GET /numbers` query filters; all must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NumbersFilter {
    pub number: Option<String>,
    pub owner_id: Option<u64>,
    pub status: Option<NumberStatus>,
    pub sms_assigned_user_id: Option<u64>,
    pub ai_agent_id: Option<String>,
}

/// Longest query string read.
pub const MAX_QUERY_CHARS: usize = 1024;

/// Reads the `GET /numbers` query (without `?`). Unknown parameters are
/// ignored, a repeated or empty one is 400. `number` is read leniently, and
/// a leading space is taken for the `+` an unencoded `?number=+1555...`
/// becomes in form decoding.
pub fn read_numbers_query(query: &str) -> Result<NumbersFilter, V360Error> {
    if query.len() > MAX_QUERY_CHARS {
        return Err(V360Error::BadRequest {
            field: None,
            message: "The query string is too long".into(),
        });
    }
    let mut filter = NumbersFilter::default();
    let mut seen: Vec<&'static str> = Vec::new();
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        let field: &'static str = match name.as_ref() {
            "number" => "number",
            "owner_id" => "owner_id",
            "status" => "status",
            "sms_assigned_user_id" => "sms_assigned_user_id",
            "ai_agent_id" => "ai_agent_id",
            _ => continue,
        };
        if seen.contains(&field) {
            return Err(V360Error::bad(
                field,
                format!("{field} is given more than once"),
            ));
        }
        seen.push(field);
        if value.trim().is_empty() {
            return Err(V360Error::bad(field, format!("{field} must not be empty")));
        }
        let user_id = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| V360Error::bad(field, format!("{field} must be a user ID (integer)")))
        };
        match field {
            "number" => {
                let v = match value.strip_prefix(' ') {
                    Some(rest) => format!("+{rest}"),
                    None => value.to_string(),
                };
                filter.number = Some(super::phone::normalize(&v).ok_or_else(|| {
                    V360Error::bad(
                        "number",
                        "number must be in E.164 format, e.g. +15551234567",
                    )
                })?);
            }
            "owner_id" => filter.owner_id = Some(user_id(&value)?),
            "sms_assigned_user_id" => filter.sms_assigned_user_id = Some(user_id(&value)?),
            "status" => {
                filter.status = Some(NumberStatus::parse(&value).ok_or_else(|| {
                    V360Error::bad("status", "status must be one of active, inactive, porting")
                })?);
            }
            _ => {
                if value.chars().count() > 64 {
                    return Err(V360Error::bad(
                        "ai_agent_id",
                        "ai_agent_id is longer than 64 characters",
                    ));
                }
                filter.ai_agent_id = Some(value.into_owned());
            }
        }
    }
    Ok(filter)
}

// ---------------------------------------------------------------- GET answers

/// Direction of a call, as `channels[].direction` and `call_direction` say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Inbound,
    Outbound,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

/// One active call of a user (`channels[]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Channel<'a> {
    pub to: &'a str,
    pub from: &'a str,
    pub call_seconds: u64,
    pub direction: Direction,
}

/// What `GET /availability` reads of one user.
#[derive(Debug, Clone, PartialEq)]
pub struct UserPresence<'a> {
    pub pk: u64,
    /// The extension.
    pub presence_id: &'a str,
    /// The display name.
    pub caller_id: &'a str,
    pub first_name: &'a str,
    pub last_name: &'a str,
    /// A device of the user is registered (online).
    pub devices_registered: bool,
    pub channels: Vec<Channel<'a>>,
}

/// `result` of `GET /availability`, fields in the example's order. The
/// public view ("online/offline only") leaves `channels` out (the document:
/// "requires authentication").
pub fn availability_result(users: &[UserPresence<'_>], view: View) -> Json {
    Json::Array(
        users
            .iter()
            .map(|u| {
                let mut fields = vec![
                    ("pk", v(u.pk)),
                    ("presence_id", v(u.presence_id)),
                    ("callerID", v(u.caller_id)),
                    ("first_name", v(u.first_name)),
                    ("last_name", v(u.last_name)),
                    ("devices_registered", v(u.devices_registered)),
                ];
                if view == View::Full {
                    let channels = u
                        .channels
                        .iter()
                        .map(|c| {
                            obj(vec![
                                ("to", v(c.to)),
                                ("from", v(c.from)),
                                ("call_seconds", v(c.call_seconds)),
                                ("direction", v(c.direction.as_str())),
                            ])
                        })
                        .collect();
                    fields.push(("channels", Json::Array(channels)));
                }
                obj(fields)
            })
            .collect(),
    )
}

/// A queue's ring strategy (Asterisk's words, which the document uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    RingAll,
    LeastRecent,
    FewestCalls,
    Random,
    RoundRobinMemory,
    Linear,
}

impl Strategy {
    pub const ALL: [Strategy; 6] = [
        Strategy::RingAll,
        Strategy::LeastRecent,
        Strategy::FewestCalls,
        Strategy::Random,
        Strategy::RoundRobinMemory,
        Strategy::Linear,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::RingAll => "ringall",
            Strategy::LeastRecent => "leastrecent",
            Strategy::FewestCalls => "fewestcalls",
            Strategy::Random => "random",
            Strategy::RoundRobinMemory => "rrmemory",
            Strategy::Linear => "linear",
        }
    }

    pub fn parse(s: &str) -> Option<Strategy> {
        Strategy::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// A queue member as `assigned_users[]` shows it (its shape is not in the
/// document): `{"type":"user"|"ai_agent","user_id","ai_agent_id","presence_id","callerID"}`.
#[derive(Debug, Clone, PartialEq)]
pub enum Member<'a> {
    User {
        pk: u64,
        presence_id: &'a str,
        caller_id: &'a str,
    },
    AiAgent {
        agent_id: &'a str,
        presence_id: &'a str,
        name: &'a str,
    },
}

/// What the queue answers read of one queue.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueView<'a> {
    pub pk: u64,
    pub queue_name: &'a str,
    pub extension: &'a str,
    pub strategy: Strategy,
    pub musiconhold: &'a str,
    pub timeout: u32,
    pub retry: u32,
    pub wrapuptime: u32,
    pub maxlen: u32,
    pub joinempty: bool,
    pub leavewhenempty: bool,
    pub ringinuse: bool,
    pub members: Vec<Member<'a>>,
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// One queue: the basics (public view: `pk`, `name`, `queue_name`,
/// `extension`), the configuration (full view), and `assigned_users` for
/// `GET /queues/{id}` with a developer key. `name` is the `pk` as text, as
/// in every example ("100134").
pub fn queue_value(q: &QueueView<'_>, view: View, with_members: bool) -> Json {
    let mut out = vec![
        ("pk", v(q.pk)),
        ("name", v(q.pk.to_string())),
        ("queue_name", v(q.queue_name)),
        ("extension", v(q.extension)),
    ];
    if view == View::Full {
        out.extend([
            ("strategy", v(q.strategy.as_str())),
            ("musiconhold", v(q.musiconhold)),
            ("timeout", v(q.timeout)),
            ("retry", v(q.retry)),
            ("wrapuptime", v(q.wrapuptime)),
            ("maxlen", v(q.maxlen)),
            ("joinempty", v(yes_no(q.joinempty))),
            ("leavewhenempty", v(yes_no(q.leavewhenempty))),
            ("ringinuse", v(yes_no(q.ringinuse))),
        ]);
        if with_members {
            let members = q
                .members
                .iter()
                .map(|m| match m {
                    Member::User {
                        pk,
                        presence_id,
                        caller_id,
                    } => obj(vec![
                        ("type", v("user")),
                        ("user_id", v(*pk)),
                        ("ai_agent_id", v(Value::Null)),
                        ("presence_id", v(*presence_id)),
                        ("callerID", v(*caller_id)),
                    ]),
                    Member::AiAgent {
                        agent_id,
                        presence_id,
                        name,
                    } => obj(vec![
                        ("type", v("ai_agent")),
                        ("user_id", v(Value::Null)),
                        ("ai_agent_id", v(*agent_id)),
                        ("presence_id", v(*presence_id)),
                        ("callerID", v(*name)),
                    ]),
                })
                .collect();
            out.push(("assigned_users", Json::Array(members)));
        }
    }
    obj(out)
}

/// `result` of `GET /queues`.
pub fn queues_result(queues: &[QueueView<'_>], view: View) -> Json {
    Json::Array(queues.iter().map(|q| queue_value(q, view, false)).collect())
}

/// Live counts of a queue's members and callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLoad {
    /// Members logged in (users with a registered device; AI agents that are enabled).
    pub agents_online: u32,
    /// Online members on a call now.
    pub agents_on_call: u32,
    /// Calls in this queue now (waiting or connected).
    pub active_calls: u32,
}

/// One queue's availability; `is_ready` ("at least one online agent") and
/// `agents_available` ("online but not on calls") are derived, so they
/// always agree with the counts.
pub fn queue_availability_value(q: &QueueView<'_>, load: QueueLoad) -> Json {
    obj(vec![
        ("pk", v(q.pk)),
        ("name", v(q.pk.to_string())),
        ("queue_name", v(q.queue_name)),
        ("extension", v(q.extension)),
        ("is_ready", v(load.agents_online > 0)),
        ("agents_online", v(load.agents_online)),
        (
            "agents_available",
            v(load.agents_online.saturating_sub(load.agents_on_call)),
        ),
        (
            "agents_on_call",
            v(load.agents_on_call.min(load.agents_online)),
        ),
        ("active_calls", v(load.active_calls)),
    ])
}

/// One number as `GET /numbers` and `GET /user/numbers` read it.
#[derive(Debug, Clone, PartialEq)]
pub struct NumberView<'a> {
    pub pk: u64,
    pub number: &'a str,
    pub friendly_name: &'a str,
    pub sms_enabled: bool,
    pub mms_enabled: bool,
    // What the filters read (not shown in the answer).
    pub status: NumberStatus,
    pub owner_id: Option<u64>,
    pub sms_assigned_user_id: Option<u64>,
    pub ai_agent_id: Option<&'a str>,
}

impl NumbersFilter {
    pub fn matches(&self, n: &NumberView<'_>) -> bool {
        self.number.as_deref().is_none_or(|x| x == n.number)
            && self.owner_id.is_none_or(|x| Some(x) == n.owner_id)
            && self.status.is_none_or(|x| x == n.status)
            && self
                .sms_assigned_user_id
                .is_none_or(|x| Some(x) == n.sms_assigned_user_id)
            && self
                .ai_agent_id
                .as_deref()
                .is_none_or(|x| Some(x) == n.ai_agent_id)
    }
}

/// `result` of both number lists: `[{"pk","number","friendly_name","sms_enabled","mms_enabled"}]`.
pub fn numbers_result(numbers: &[NumberView<'_>]) -> Json {
    Json::Array(
        numbers
            .iter()
            .map(|n| {
                obj(vec![
                    ("pk", v(n.pk)),
                    ("number", v(n.number)),
                    ("friendly_name", v(n.friendly_name)),
                    ("sms_enabled", v(n.sms_enabled)),
                    ("mms_enabled", v(n.mms_enabled)),
                ])
            })
            .collect(),
    )
}

/// What `GET /user/profile` reads of the key's user.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileView<'a> {
    pub pk: u64,
    /// The id of the user's SIP endpoint (the document's `asterisk_user_id`).
    pub sip_endpoint_id: u64,
    pub presence_id: &'a str,
    pub caller_id: &'a str,
    pub first_name: &'a str,
    pub last_name: &'a str,
    pub email: &'a str,
    pub voicemail_enabled: bool,
    pub forward_enabled: bool,
    pub forward_number: Option<&'a str>,
    /// IANA time zone.
    pub time_zone: &'a str,
}

/// `result` of `GET /user/profile`, in the example's order.
pub fn profile_result(p: &ProfileView<'_>) -> Json {
    obj(vec![
        ("pk", v(p.pk)),
        ("asterisk_user_id", v(p.sip_endpoint_id)),
        ("presence_id", v(p.presence_id)),
        ("callerID", v(p.caller_id)),
        ("first_name", v(p.first_name)),
        ("last_name", v(p.last_name)),
        ("email", v(p.email)),
        ("voicemail_enabled", v(p.voicemail_enabled)),
        ("forward_enabled", v(p.forward_enabled)),
        ("forward_number", v(p.forward_number)),
        ("time_zone", v(p.time_zone)),
    ])
}

// ---------------------------------------------------------------- webhooks

/// Every event type a webhook can listen for (its "Event Type").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    IncomingExternalCall,
    CallEnded,
    UserDial,
    UserAnswer,
    UserHangup,
    SmsReceived,
    SmsSent,
    SmsDelivered,
    QueueEnter,
    QueueMemberDial,
    QueueMemberAnswer,
    QueueMemberDialHangup,
    QueueHangup,
    QueueNoAnswer,
    QueueHangupTimeout,
    QueueHangupAbandoned,
    ContactCreated,
    ContactUpdated,
    ContactDeleted,
    TranscriptionFinished,
}

impl EventType {
    pub const ALL: [EventType; 20] = [
        EventType::IncomingExternalCall,
        EventType::CallEnded,
        EventType::UserDial,
        EventType::UserAnswer,
        EventType::UserHangup,
        EventType::SmsReceived,
        EventType::SmsSent,
        EventType::SmsDelivered,
        EventType::QueueEnter,
        EventType::QueueMemberDial,
        EventType::QueueMemberAnswer,
        EventType::QueueMemberDialHangup,
        EventType::QueueHangup,
        EventType::QueueNoAnswer,
        EventType::QueueHangupTimeout,
        EventType::QueueHangupAbandoned,
        EventType::ContactCreated,
        EventType::ContactUpdated,
        EventType::ContactDeleted,
        EventType::TranscriptionFinished,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::IncomingExternalCall => "INCOMING_EXTERNAL_CALL",
            EventType::CallEnded => "CALL_ENDED",
            EventType::UserDial => "USER_DIAL",
            EventType::UserAnswer => "USER_ANSWER",
            EventType::UserHangup => "USER_HANGUP",
            EventType::SmsReceived => "SMS_RECEIVED",
            EventType::SmsSent => "SMS_SENT",
            EventType::SmsDelivered => "SMS_DELIVERED",
            EventType::QueueEnter => "QUEUE_ENTER",
            EventType::QueueMemberDial => "QUEUE_MEMBER_DIAL",
            EventType::QueueMemberAnswer => "QUEUE_MEMBER_ANSWER",
            EventType::QueueMemberDialHangup => "QUEUE_MEMBER_DIAL_HANGUP",
            EventType::QueueHangup => "QUEUE_HANGUP",
            EventType::QueueNoAnswer => "QUEUE_NO_ANSWER",
            EventType::QueueHangupTimeout => "QUEUE_HANGUP_TIMEOUT",
            EventType::QueueHangupAbandoned => "QUEUE_HANGUP_ABANDONED",
            EventType::ContactCreated => "CONTACT_CREATED",
            EventType::ContactUpdated => "CONTACT_UPDATED",
            EventType::ContactDeleted => "CONTACT_DELETED",
            EventType::TranscriptionFinished => "TRANSCRIPTION_FINISHED",
        }
    }

    pub fn parse(s: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|e| e.as_str() == s)
    }
}

/// `INCOMING_EXTERNAL_CALL` metadata.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IncomingExternalCall<'a> {
    pub caller_id_number: &'a str,
    pub caller_id_name: Option<&'a str>,
    pub dnis: &'a str,
    pub uniqueid: &'a str,
}

/// `CALL_ENDED`: any call. For an outbound call `caller_id_number` is our
/// caller ID, `dnis` the number dialled and `to_user_id` our side's user
/// (the one who placed it); inbound, as the example.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallEnded<'a> {
    pub caller_id_number: Option<&'a str>,
    pub dnis: &'a str,
    pub uniqueid: &'a str,
    pub call_direction: Direction,
    pub to_user_id: Option<&'a str>,
    /// Whole seconds talked (0 unanswered).
    pub duration: u64,
}

/// `USER_DIAL`
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UserDial<'a> {
    pub dialed_number: &'a str,
    pub from_user_id: &'a str,
    pub uniqueid: &'a str,
}

/// `USER_ANSWER`
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UserAnswer<'a> {
    pub caller_id_number: &'a str,
    pub to_user_id: &'a str,
    pub uniqueid: &'a str,
}

/// `USER_HANGUP`
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UserHangup<'a> {
    pub dialed_number: &'a str,
    pub from_user_id: &'a str,
    pub uniqueid: &'a str,
    pub duration: u64,
}

/// `SMS_RECEIVED` (`to_number` one number).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SmsReceived<'a> {
    pub from_number: &'a str,
    pub to_number: &'a str,
    pub body: &'a str,
    pub message_id: &'a str,
}

/// `SMS_SENT` (`to_number` a list, as the example).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SmsSent<'a> {
    pub from_number: &'a str,
    pub to_number: Vec<&'a str>,
    pub body: &'a str,
    pub message_id: &'a str,
    pub sms_sent_by_user_id: Option<&'a str>,
}

/// `SMS_DELIVERED`
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SmsDelivered<'a> {
    pub to_number: Vec<&'a str>,
    pub message_id: &'a str,
    /// `delivered` (the carrier's report).
    pub status: &'a str,
}

/// `QUEUE_ENTER`
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueEnter<'a> {
    pub queue_id: &'a str,
    pub queuecall_id: &'a str,
    pub uniqueid: &'a str,
    pub queuename: &'a str,
    pub callerid_number: &'a str,
    pub callerid_name: Option<&'a str>,
}

/// `"App-Name": "Queue"` of the queue events.
pub const APP_QUEUE: &str = "Queue";

/// `QUEUE_MEMBER_DIAL`
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueMemberDial<'a> {
    #[serde(rename = "App-Name")]
    pub app_name: &'static str,
    pub to_user_id: &'a str,
    pub from_user_id: Option<&'a str>,
    pub uniqueid: &'a str,
    pub caller_id_number: &'a str,
    pub dnis: &'a str,
    pub queuecall_id: &'a str,
}

/// `QUEUE_MEMBER_ANSWER`
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueMemberAnswer<'a> {
    #[serde(rename = "App-Name")]
    pub app_name: &'static str,
    pub to_user_id: &'a str,
    pub caller_id_number: &'a str,
    pub uniqueid: &'a str,
    pub dnis: &'a str,
    pub queuecall_id: &'a str,
}

/// `QUEUE_MEMBER_DIAL_HANGUP`
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueMemberDialHangup<'a> {
    #[serde(rename = "App-Name")]
    pub app_name: &'static str,
    pub to_user_id: &'a str,
    pub from_user_id: Option<&'a str>,
    pub uniqueid: &'a str,
    pub caller_id_number: &'a str,
    pub dnis: &'a str,
    pub queuecall_id: &'a str,
    pub duration: u64,
}

/// `QUEUE_HANGUP` (`duration` in seconds with hundredths, as the example's 16.59).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueHangup<'a> {
    #[serde(rename = "App-Name")]
    pub app_name: &'static str,
    pub queue_id: &'a str,
    pub queuecall_id: &'a str,
    pub uniqueid: &'a str,
    pub queuename: &'a str,
    pub duration: JsNumber,
    pub dnis: &'a str,
    pub dialed_number: &'a str,
    pub caller_id_number: &'a str,
}

/// `QUEUE_NO_ANSWER`, `QUEUE_HANGUP_TIMEOUT`, `QUEUE_HANGUP_ABANDONED`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueWait<'a> {
    pub caller_id_number: &'a str,
    pub queue_name: &'a str,
    pub queue_id: &'a str,
    /// Seconds waited.
    pub wait_time: u64,
}

/// `CONTACT_CREATED`
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContactCreated<'a> {
    pub contact_id: &'a str,
    pub phone: &'a str,
    pub first_name: Option<&'a str>,
    pub last_name: Option<&'a str>,
    pub email: Option<&'a str>,
}

/// `CONTACT_UPDATED`
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContactUpdated<'a> {
    pub contact_id: &'a str,
    pub updated_fields: Vec<&'a str>,
    pub phone: &'a str,
}

/// `CONTACT_DELETED`
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContactDeleted<'a> {
    pub contact_id: &'a str,
    pub phone: &'a str,
}

/// `TRANSCRIPTION_FINISHED`: `transcription` is the AWS Call Analytics–style
/// JSON *as a string* ([`transcription_json`]); on failure `success: false`,
/// `transcription: null` and `error` says why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TranscriptionFinished<'a> {
    pub uniqueid: &'a str,
    pub transcription: Option<String>,
    pub provider: &'a str,
    pub model: &'a str,
    pub total_tokens: u64,
    pub success: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
}

/// One webhook event with its metadata.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Event<'a> {
    IncomingExternalCall(IncomingExternalCall<'a>),
    CallEnded(CallEnded<'a>),
    UserDial(UserDial<'a>),
    UserAnswer(UserAnswer<'a>),
    UserHangup(UserHangup<'a>),
    SmsReceived(SmsReceived<'a>),
    SmsSent(SmsSent<'a>),
    SmsDelivered(SmsDelivered<'a>),
    QueueEnter(QueueEnter<'a>),
    QueueMemberDial(QueueMemberDial<'a>),
    QueueMemberAnswer(QueueMemberAnswer<'a>),
    QueueMemberDialHangup(QueueMemberDialHangup<'a>),
    QueueHangup(QueueHangup<'a>),
    QueueNoAnswer(QueueWait<'a>),
    QueueHangupTimeout(QueueWait<'a>),
    QueueHangupAbandoned(QueueWait<'a>),
    ContactCreated(ContactCreated<'a>),
    ContactUpdated(ContactUpdated<'a>),
    ContactDeleted(ContactDeleted<'a>),
    TranscriptionFinished(TranscriptionFinished<'a>),
}

impl Event<'_> {
    pub fn event_type(&self) -> EventType {
        match self {
            Event::IncomingExternalCall(_) => EventType::IncomingExternalCall,
            Event::CallEnded(_) => EventType::CallEnded,
            Event::UserDial(_) => EventType::UserDial,
            Event::UserAnswer(_) => EventType::UserAnswer,
            Event::UserHangup(_) => EventType::UserHangup,
            Event::SmsReceived(_) => EventType::SmsReceived,
            Event::SmsSent(_) => EventType::SmsSent,
            Event::SmsDelivered(_) => EventType::SmsDelivered,
            Event::QueueEnter(_) => EventType::QueueEnter,
            Event::QueueMemberDial(_) => EventType::QueueMemberDial,
            Event::QueueMemberAnswer(_) => EventType::QueueMemberAnswer,
            Event::QueueMemberDialHangup(_) => EventType::QueueMemberDialHangup,
            Event::QueueHangup(_) => EventType::QueueHangup,
            Event::QueueNoAnswer(_) => EventType::QueueNoAnswer,
            Event::QueueHangupTimeout(_) => EventType::QueueHangupTimeout,
            Event::QueueHangupAbandoned(_) => EventType::QueueHangupAbandoned,
            Event::ContactCreated(_) => EventType::ContactCreated,
            Event::ContactUpdated(_) => EventType::ContactUpdated,
            Event::ContactDeleted(_) => EventType::ContactDeleted,
            Event::TranscriptionFinished(_) => EventType::TranscriptionFinished,
        }
    }

    /// The POSTed body: `{"event_name","account_id","timestamp","metadata"}`,
    /// `account_id` a string, `timestamp` unix seconds (when rendered).
    pub fn body(&self, account_id: &str, now_ms: u64) -> String {
        #[derive(Serialize)]
        struct Envelope<'a, M> {
            event_name: &'static str,
            account_id: &'a str,
            timestamp: u64,
            metadata: &'a M,
        }
        serde_json::to_string(&Envelope {
            event_name: self.event_type().as_str(),
            account_id,
            timestamp: now_ms / 1000,
            metadata: self,
        })
        .unwrap_or_default()
    }
}

/// Our outbound AI calls as the document's call events. `uniqueid` is the
/// native call id, `user_id` the `pk` (as text) of the extension's owner
/// that placed it (an AI agent's extension has one too), `our_number` the
/// caller ID the callee was shown, when known.
pub fn user_dial<'a>(call: &EndedCall<'a>, user_id: &'a str) -> Event<'a> {
    Event::UserDial(UserDial {
        dialed_number: call.phone,
        from_user_id: user_id,
        uniqueid: call.call_id,
    })
}

/// `USER_HANGUP` ("an outbound call ends (user hangs up or call is not
/// answered)"): `duration` is seconds talked, 0 unanswered.
pub fn user_hangup<'a>(call: &EndedCall<'a>, user_id: &'a str) -> Event<'a> {
    Event::UserHangup(UserHangup {
        dialed_number: call.phone,
        from_user_id: user_id,
        uniqueid: call.call_id,
        duration: call.duration_seconds(),
    })
}

/// `CALL_ENDED` of an outbound call: `caller_id_number` our caller ID (null
/// when the trunk's is not known), `dnis` the number dialled, `to_user_id`
/// our side's user.
pub fn call_ended<'a>(call: &EndedCall<'a>, user_id: &'a str) -> Event<'a> {
    Event::CallEnded(CallEnded {
        caller_id_number: call.from_phone,
        dnis: call.phone,
        uniqueid: call.call_id,
        call_direction: Direction::Outbound,
        to_user_id: Some(user_id),
        duration: call.duration_seconds(),
    })
}

/// `X-Voice360-Signature`: `sha256=` + hex HMAC-SHA256 of the raw body keyed
/// with the webhook's signing secret (its UTF-8 bytes), as both of the
/// document's verifiers compute it.
pub fn signature(signing_secret: &[u8], body: &[u8]) -> String {
    format!(
        "sha256={}",
        super::post_call::hex_hmac_sha256(signing_secret, body)
    )
}

/// "Retries: Number of retry attempts (1-10)".
pub const RETRIES_RANGE: (u32, u32) = (1, 10);

// ---------------------------------------------------------------- transcription

/// What the transcription reads besides the call: the engine's recap.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Recap<'a> {
    pub action_items: Vec<&'a str>,
    pub topics: Vec<&'a str>,
}

/// A sentiment label as AWS writes it, and a score in -1..=1 for
/// `OverallSentiment` (positive 0.6, neutral 0, negative -0.6: the
/// lexicon reading has three values, not a scale).
fn sentiment_of(words: &[&str], outcome: Option<&str>) -> (&'static str, f64) {
    use super::post_call::Sentiment as S;
    match super::post_call::sentiment(outcome, words.iter().copied()) {
        S::Positive => ("POSITIVE", 0.6),
        S::Neutral => ("NEUTRAL", 0.0),
        S::Negative => ("NEGATIVE", -0.6),
    }
}

/// The AWS Call Analytics–style transcription of an ended call (the text of
/// `metadata.transcription`), keys in the document's order. The agent is our
/// AI (`AGENT`), the callee `CUSTOMER`. A turn ends where the next begins
/// (or at the call's end); `Id` is `{uniqueid}-{index}`; confidences are
/// not measured by our engines, so the per-channel lists carry none.
/// `CompletedAt` has microseconds, as the example.
pub fn transcription_json(
    call: &EndedCall<'_>,
    account_id: &str,
    uniqueid: &str,
    recap: &Recap<'_>,
    completed_ms: u64,
) -> String {
    let answered = call.answered_ms.unwrap_or_else(|| call.started_ms());
    let total_ms = call.ended_ms.saturating_sub(answered);
    let role = |s: Speaker| match s {
        Speaker::Agent => "AGENT",
        Speaker::Callee => "CUSTOMER",
    };
    let mut transcript = Vec::new();
    let (mut agent_list, mut customer_list) = (Vec::new(), Vec::new());
    let (mut agent_ms, mut customer_ms) = (0u64, 0u64);
    let (mut agent_words, mut customer_words) = (0u64, 0u64);
    for (i, turn) in call.turns.iter().enumerate() {
        let end = call
            .turns
            .get(i + 1)
            .map(|t| t.start_ms)
            .unwrap_or(total_ms)
            .max(turn.start_ms);
        let (label, _) = sentiment_of(&[turn.text], None);
        transcript.push(obj(vec![
            ("Id", v(format!("{uniqueid}-{i}"))),
            ("ParticipantRole", v(role(turn.speaker))),
            ("BeginOffsetMillis", v(turn.start_ms)),
            ("EndOffsetMillis", v(end)),
            ("Content", v(turn.text)),
            ("Sentiment", v(label)),
        ]));
        let words = turn.text.split_whitespace().count() as u64;
        let entry = obj(vec![
            (
                "start",
                Json::Number(JsNumber(turn.start_ms as f64 / 1000.0)),
            ),
            ("end", Json::Number(JsNumber(end as f64 / 1000.0))),
            ("text", v(turn.text)),
        ]);
        match turn.speaker {
            Speaker::Agent => {
                agent_ms += end - turn.start_ms;
                agent_words += words;
                agent_list.push(entry);
            }
            Speaker::Callee => {
                customer_ms += end - turn.start_ms;
                customer_words += words;
                customer_list.push(entry);
            }
        }
    }
    let wpm = |words: u64, ms: u64| words.saturating_mul(60_000).checked_div(ms).unwrap_or(0);
    let texts = |s: Speaker| -> Vec<&str> {
        call.turns
            .iter()
            .filter(|t| t.speaker == s)
            .map(|t| t.text)
            .collect()
    };
    let (_, agent_score) = sentiment_of(&texts(Speaker::Agent), None);
    let (_, customer_score) = sentiment_of(&texts(Speaker::Callee), call.outcome);
    let completed = rfc3339_ms(completed_ms);
    let completed = format!("{}000Z", completed.strip_suffix('Z').unwrap_or(&completed));
    let per_participant =
        |agent: Json, customer: Json| obj(vec![("AGENT", agent), ("CUSTOMER", customer)]);
    let value = obj(vec![
        ("AccountId", v(account_id)),
        ("JobName", v(format!("call-analytics-{uniqueid}"))),
        ("LanguageCode", v(call.language)),
        ("JobStatus", v("COMPLETED")),
        ("Channel", v("VOICE")),
        (
            "Participants",
            Json::Array(vec![
                obj(vec![("ParticipantRole", v("AGENT"))]),
                obj(vec![("ParticipantRole", v("CUSTOMER"))]),
            ]),
        ),
        (
            "ConversationCharacteristics",
            obj(vec![
                ("TotalConversationDurationMillis", v(total_ms)),
                (
                    "TalkTime",
                    obj(vec![
                        ("TotalTimeMillis", v(agent_ms + customer_ms)),
                        (
                            "DetailsByParticipant",
                            per_participant(
                                obj(vec![("TotalTimeMillis", v(agent_ms))]),
                                obj(vec![("TotalTimeMillis", v(customer_ms))]),
                            ),
                        ),
                    ]),
                ),
                (
                    "TalkSpeed",
                    obj(vec![(
                        "DetailsByParticipant",
                        per_participant(
                            obj(vec![(
                                "AverageWordsPerMinute",
                                v(wpm(agent_words, agent_ms)),
                            )]),
                            obj(vec![(
                                "AverageWordsPerMinute",
                                v(wpm(customer_words, customer_ms)),
                            )]),
                        ),
                    )]),
                ),
                (
                    "Sentiment",
                    obj(vec![
                        (
                            "OverallSentiment",
                            per_participant(
                                Json::Number(JsNumber(agent_score)),
                                Json::Number(JsNumber(customer_score)),
                            ),
                        ),
                        ("SentimentByPeriod", obj(vec![])),
                    ]),
                ),
            ]),
        ),
        (
            "ContactSummary",
            obj(vec![(
                "AutoGenerated",
                obj(vec![(
                    "OverallSummary",
                    obj(vec![("Content", v(call.summary))]),
                )]),
            )]),
        ),
        ("Transcript", Json::Array(transcript)),
        (
            "CallRecap",
            obj(vec![
                ("summary", v(call.summary)),
                ("outcome", v(call.outcome)),
                ("action_items", v(recap.action_items.clone())),
                ("topics", v(recap.topics.clone())),
            ]),
        ),
        ("AgentTranscript", Json::Array(agent_list)),
        ("CustomerTranscript", Json::Array(customer_list)),
        ("CompletedAt", v(completed)),
    ]);
    serde_json::to_string(&value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The document's `"timestamp": "2024-01-15T10:30:00Z"`.
    const NOW: u64 = 1_705_314_600_000;
    /// The webhook examples' `"timestamp": 1704067200`.
    const HOOK_NOW: u64 = 1_704_067_200_000;

    /// A document example as compact JSON: whitespace outside strings removed
    /// (the examples are pretty-printed; the bytes we send are compact).
    fn compact(pretty: &str) -> String {
        let (mut out, mut in_string, mut escaped) = (String::new(), false, false);
        for c in pretty.chars() {
            if in_string {
                out.push(c);
                match (escaped, c) {
                    (true, _) => escaped = false,
                    (false, '\\') => escaped = true,
                    (false, '"') => in_string = false,
                    _ => {}
                }
            } else if !c.is_whitespace() {
                in_string = c == '"';
                out.push(c);
            }
        }
        out
    }

    fn body(result: &Json, op: Operation) -> String {
        ok_body(result, op.message(), NOW)
    }

    /// The document's example, with the envelope's `timestamp` it leaves out.
    fn with_timestamp(example: &str) -> String {
        let c = compact(example);
        format!(
            "{},\"timestamp\":\"2024-01-15T10:30:00Z\"}}",
            c.strip_suffix('}').unwrap()
        )
    }

    #[test]
    fn routes_match_every_documented_endpoint_with_its_access() {
        use Operation::*;
        let cases = [
            (
                "GET",
                "/availability",
                UserAvailability,
                Access::PublicOrDeveloper,
            ),
            ("GET", "/queues", ListQueues, Access::PublicOrDeveloper),
            (
                "GET",
                "/queues/100134",
                GetQueue { queue_id: 100134 },
                Access::PublicOrDeveloper,
            ),
            (
                "GET",
                "/availability/queues",
                QueuesAvailability,
                Access::PublicOrDeveloper,
            ),
            (
                "GET",
                "/availability/queues/100134",
                QueueAvailability { queue_id: 100134 },
                Access::PublicOrDeveloper,
            ),
            ("POST", "/call/outbound", OutboundCall, Access::Developer),
            ("POST", "/sms/send", SendSms, Access::UserOrDeveloper),
            ("GET", "/numbers", ListNumbers, Access::Developer),
            ("GET", "/user/numbers", UserNumbers, Access::User),
            ("GET", "/user/profile", UserProfile, Access::User),
        ];
        for (method, tail, op, access) in cases {
            let path = format!("/v3/voice/61{tail}");
            assert_eq!(
                route(method, &path),
                Some(Routed::Operation {
                    account_id: "61",
                    op
                }),
                "{path}"
            );
            assert_eq!(op.access(), access, "{path}");
            let other = if method == "GET" { "POST" } else { "GET" };
            assert_eq!(
                route(other, &path),
                Some(Routed::MethodNotAllowed { allow: method }),
                "{path}"
            );
        }
        assert_eq!(
            route("GET", "/v3/voice/acme-co_2/queues"),
            Some(Routed::Operation {
                account_id: "acme-co_2",
                op: ListQueues
            })
        );
        for path in [
            "/v3/voice/61",
            "/v3/voice/61/",
            "/v3/voice//queues",
            "/v3/voice/6 1/queues",
            "/v3/voice/61/queues/",
            "/v3/voice/61/queues/abc",
            "/v3/voice/61/queues/0100",
            "/v3/voice/61/queues/-1",
            "/v3/voice/61/queues/1234567890123456789",
            "/v3/voice/61/queues/1/extra",
            "/v3/voice/61/availability/queues/x",
            "/v3/voice/61/user",
            "/v3/voice/61/calls",
            &format!("/v3/voice/{}/queues", "a".repeat(65)),
            &format!("/v3/voice/61/{}", "q".repeat(300)),
        ] {
            assert_eq!(route("GET", path), Some(Routed::NotFound), "{path}");
        }
        for path in ["/v1/calls", "/v3/voices/61/queues", "/v3/voice", "/"] {
            assert_eq!(route("GET", path), None, "{path}");
        }
    }

    #[test]
    fn no_native_route_or_other_dialect_is_under_the_prefix() {
        for (_, pattern, _) in crate::api::router::ROUTES {
            assert!(!pattern.starts_with(PATH_PREFIX), "{pattern}");
        }
        for d in super::super::Dialect::ALL {
            for (method, path) in d.routes() {
                assert_eq!(route(method, path), None, "{path}");
            }
        }
        for prefix in super::super::codeb::PATH_PREFIXES {
            assert!(!prefix.starts_with(PATH_PREFIX) && !PATH_PREFIX.starts_with(prefix));
        }
    }

    #[test]
    fn access_follows_the_badges() {
        use Access::*;
        use Caller::*;
        assert_eq!(PublicOrDeveloper.admit(Anonymous), Ok(View::Public));
        assert_eq!(PublicOrDeveloper.admit(Caller::Developer), Ok(View::Full));
        assert_eq!(Access::Developer.admit(Caller::Developer), Ok(View::Full));
        assert_eq!(Access::User.admit(Caller::User), Ok(View::Full));
        assert_eq!(UserOrDeveloper.admit(Caller::User), Ok(View::Full));
        assert_eq!(UserOrDeveloper.admit(Caller::Developer), Ok(View::Full));
        for access in [Access::Developer, Access::User, UserOrDeveloper] {
            assert_eq!(access.admit(Anonymous), Err(V360Error::AuthRequired));
        }
        for (access, caller) in [
            (PublicOrDeveloper, Caller::User),
            (Access::Developer, Caller::User),
            (Access::User, Caller::Developer),
        ] {
            let e = access.admit(caller).unwrap_err();
            assert_eq!(e.parts().1, "AUTH_INVALID", "{access:?} {caller:?}");
            assert_eq!(e.status(), 403);
        }
        assert_eq!(Anonymous.rate_limit_per_minute(), 100);
        assert_eq!(Caller::User.rate_limit_per_minute(), 1000);
    }

    #[test]
    fn keys_of_both_kinds() {
        let dev = KeyKind::Developer.mint(&[0xab; 24]);
        let user = KeyKind::User.mint(&[0xab; 24]);
        assert!(dev.starts_with("v360_dev_") && dev.len() == 9 + 48);
        assert_eq!(KeyKind::of(&dev), KeyKind::Developer);
        assert_eq!(KeyKind::of(&user), KeyKind::User);
        assert_eq!(KeyKind::of("your_api_key"), KeyKind::User);
        assert!(plausible_key(&dev) && plausible_key(&user));
        for bad in ["", "has space", "tab\t", &"k".repeat(129), "ключ"] {
            assert!(!plausible_key(bad), "{bad:?}");
        }
        assert_eq!(key_hint("v360_dev_0123456789abcdef"), "v360_devxxx...");
        assert_eq!(key_hint("abcd"), "abxxx...");
        assert_eq!(key_hint(""), "xxx...");
    }

    #[test]
    fn every_error_code_with_its_status_and_body() {
        let cases: Vec<(V360Error, u16, &str)> = vec![
            (
                V360Error::BadRequest {
                    field: None,
                    message: "x".into(),
                },
                400,
                "BAD_REQUEST",
            ),
            (V360Error::AuthRequired, 401, "AUTH_REQUIRED"),
            (
                V360Error::AuthInvalidKey {
                    provided_key: "p".into(),
                },
                403,
                "AUTH_INVALID_KEY",
            ),
            (
                V360Error::AuthInvalid {
                    key_type: "user",
                    required: "developer",
                },
                403,
                "AUTH_INVALID",
            ),
            (V360Error::NotFound { what: "Queue" }, 404, "NOT_FOUND"),
            (
                V360Error::MethodNotAllowed { allow: "GET" },
                405,
                "METHOD_NOT_ALLOWED",
            ),
            (
                V360Error::RateLimited {
                    limit: 100,
                    retry_after_seconds: 7,
                },
                429,
                "RATE_LIMITED",
            ),
            (V360Error::Internal, 500, "INTERNAL_ERROR"),
            (
                V360Error::ServiceUnavailable {
                    retry_after_seconds: Some(30),
                },
                503,
                "SERVICE_UNAVAILABLE",
            ),
        ];
        for (e, status, code) in cases {
            assert_eq!((e.status(), e.parts().1), (status, code));
            let body = e.body(NOW);
            assert!(
                body.starts_with(r#"{"result":null,"error":true,"message":""#),
                "{body}"
            );
            assert!(
                body.ends_with(r#""timestamp":"2024-01-15T10:30:00Z"}"#),
                "{body}"
            );
            assert!(
                body.contains(&format!(r#""error_code":"{code}""#)),
                "{body}"
            );
        }
        // The document's error example, with our help text.
        let e = V360Error::AuthInvalidKey {
            provided_key: key_hint("partial_key_0123456789"),
        };
        assert_eq!(
            e.body(NOW),
            concat!(
                r#"{"result":null,"error":true,"message":"Invalid API key provided","error_code":"AUTH_INVALID_KEY","#,
                r#""details":{"provided_key":"partial_xxx...","help":"Please check your API key with your account administrator"},"#,
                r#""timestamp":"2024-01-15T10:30:00Z"}"#
            )
        );
        assert_eq!(
            V360Error::AuthRequired.body(NOW),
            concat!(
                r#"{"result":null,"error":true,"message":"Authentication required: pass your API key in the X-API-Key header","#,
                r#""error_code":"AUTH_REQUIRED","timestamp":"2024-01-15T10:30:00Z"}"#
            )
        );
        let limited = V360Error::RateLimited {
            limit: 1000,
            retry_after_seconds: 12,
        };
        assert_eq!(
            limited.headers(),
            vec![
                ("Retry-After", "12".to_string()),
                ("X-RateLimit-Limit", "1000".to_string()),
                ("X-RateLimit-Remaining", "0".to_string()),
            ]
        );
        assert_eq!(
            V360Error::MethodNotAllowed { allow: "POST" }.headers(),
            vec![("Allow", "POST".to_string())]
        );
        assert_eq!(
            RateLimitHeaders {
                limit: 100,
                remaining: 99
            }
            .headers(),
            [
                ("X-RateLimit-Limit", "100".to_string()),
                ("X-RateLimit-Remaining", "99".to_string())
            ]
        );
        // Every refusal of the native pipeline has an answer.
        use super::super::refusal::Refusal as R;
        for (r, code) in [
            (R::MissingCredentials, "AUTH_REQUIRED"),
            (R::InvalidCredentials, "AUTH_INVALID_KEY"),
            (R::AccessDisabled, "AUTH_INVALID"),
            (R::CallInProgress, "BAD_REQUEST"),
            (R::InvalidRequest("to is bad".into()), "BAD_REQUEST"),
            (
                R::RateLimited {
                    retry_after_seconds: 3,
                },
                "RATE_LIMITED",
            ),
            (R::Internal, "INTERNAL_ERROR"),
        ] {
            assert_eq!(V360Error::from(&r).parts().1, code, "{r:?}");
        }
    }

    #[test]
    fn outbound_call_as_the_documents_curl_sends_it() {
        let call = read_outbound_call(
            br#"{
    "from": "1001",
    "to": "+15551234567",
    "caller_id": "+15559876543",
    "recording": true
  }"#,
        )
        .unwrap();
        assert_eq!(
            call,
            OutboundCall {
                from: "1001".into(),
                to: "+15551234567".into(),
                caller_id: Some("+15559876543".into()),
                recording: true,
            }
        );
        // The bash example: no caller_id; recording defaults to false; unknown fields ignored.
        let call =
            read_outbound_call(br#"{"from":"1001","to":"+1 (555) 123-4567","x":1}"#).unwrap();
        assert_eq!((call.caller_id, call.recording), (None, false));
        assert_eq!(call.to, "+15551234567");
        // The document's example answer, byte for byte (plus the envelope's timestamp).
        let call = read_outbound_call(br#"{"from":"1001","to":"+15551234567"}"#).unwrap();
        assert_eq!(
            body(
                &outbound_result("c12345-67890-abcdef", &call, NOW),
                Operation::OutboundCall
            ),
            with_timestamp(
                r#"{
  "result": {
    "call_id": "c12345-67890-abcdef",
    "status": "initiating",
    "from": "1001",
    "to": "+15551234567",
    "timestamp": "2024-01-15T10:30:00Z"
  },
  "error": false,
  "message": "Call initiated successfully"
}"#
            )
        );
    }

    fn refused_field(e: V360Error) -> Option<&'static str> {
        match e {
            V360Error::BadRequest { field, .. } => field,
            other => panic!("not a BAD_REQUEST: {other:?}"),
        }
    }

    #[test]
    fn bad_outbound_bodies_are_400_naming_the_field() {
        for (body, field) in [
            (&br#"{"to":"+15551234567"}"#[..], Some("from")),
            (br#"{"from":1001,"to":"+15551234567"}"#, Some("from")),
            (br#"{"from":"alice","to":"+15551234567"}"#, Some("from")),
            (br#"{"from":"1","to":"+15551234567"}"#, Some("from")),
            (br#"{"from":"1001"}"#, Some("to")),
            (br#"{"from":"1001","to":"5551234"}"#, Some("to")),
            (
                br#"{"from":"1001","to":"+15551234567","caller_id":"abc"}"#,
                Some("caller_id"),
            ),
            (
                br#"{"from":"1001","to":"+15551234567","recording":"yes"}"#,
                Some("recording"),
            ),
            (b"not json", None),
            (b"[1]", None),
        ] {
            let e = read_outbound_call(body).unwrap_err();
            assert_eq!(e.status(), 400);
            assert_eq!(refused_field(e), field, "{}", String::from_utf8_lossy(body));
        }
        let big = vec![b' '; MAX_BODY_BYTES + 1];
        assert_eq!(refused_field(read_outbound_call(&big).unwrap_err()), None);
    }

    #[test]
    fn sms_as_the_documents_client_sends_it_and_refusals() {
        // JSON.stringify({from, to, message}) of the JavaScript example.
        let sms = read_sms_send(
            br#"{"from":"+15559876543","to":"+15551234567","message":"Hello from Voice360!"}"#,
        )
        .unwrap();
        assert_eq!(
            sms,
            SmsSend {
                from: "+15559876543".into(),
                to: "+15551234567".into(),
                message: "Hello from Voice360!".into(),
            }
        );
        assert_eq!(
            body(
                &sms_result("msg_xyz789", "sending", &sms, NOW),
                Operation::SendSms
            ),
            concat!(
                r#"{"result":{"message_id":"msg_xyz789","status":"sending","from":"+15559876543","to":"+15551234567","#,
                r#""body":"Hello from Voice360!","timestamp":"2024-01-15T10:30:00Z"},"error":false,"#,
                r#""message":"SMS sent successfully","timestamp":"2024-01-15T10:30:00Z"}"#
            )
        );
        // 160 characters (not bytes) is the limit.
        let ok = format!(
            r#"{{"from":"+15559876543","to":"+15551234567","message":"{}"}}"#,
            "é".repeat(160)
        );
        assert!(read_sms_send(ok.as_bytes()).is_ok());
        let long = format!(
            r#"{{"from":"+15559876543","to":"+15551234567","message":"{}"}}"#,
            "a".repeat(161)
        );
        let e = read_sms_send(long.as_bytes()).unwrap_err();
        assert_eq!(
            e.parts().2,
            "message is 161 characters; at most 160 are allowed"
        );
        for (body, field) in [
            (&br#"{"to":"+15551234567","message":"hi"}"#[..], "from"),
            (br#"{"from":"+15559876543","message":"hi"}"#, "to"),
            (br#"{"from":"+15559876543","to":"+15551234567"}"#, "message"),
            (
                br#"{"from":"+15559876543","to":"+15551234567","message":"  "}"#,
                "message",
            ),
            (
                br#"{"from":"+15559876543","to":"+15551234567","message":5}"#,
                "message",
            ),
            (
                br#"{"from":"+15559876543","to":"+15551234567","message":"a\u0000b"}"#,
                "message",
            ),
            (
                br#"{"from":"555","to":"+15551234567","message":"hi"}"#,
                "from",
            ),
        ] {
            let e = read_sms_send(body).unwrap_err();
            assert_eq!(
                refused_field(e),
                Some(field),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn numbers_filters_read_and_match() {
        assert_eq!(read_numbers_query(""), Ok(NumbersFilter::default()));
        let f = read_numbers_query("status=active").unwrap();
        assert_eq!(f.status, Some(NumberStatus::Active));
        let f = read_numbers_query(
            "number=%2B15551234567&owner_id=123&sms_assigned_user_id=9&ai_agent_id=agt_1&x=y",
        )
        .unwrap();
        assert_eq!(
            f,
            NumbersFilter {
                number: Some("+15551234567".into()),
                owner_id: Some(123),
                status: None,
                sms_assigned_user_id: Some(9),
                ai_agent_id: Some("agt_1".into()),
            }
        );
        // An unencoded `+` decodes to a space.
        assert_eq!(
            read_numbers_query("number=+15551234567").unwrap().number,
            Some("+15551234567".into())
        );
        for (q, field) in [
            ("status=gone", "status"),
            ("owner_id=abc", "owner_id"),
            ("sms_assigned_user_id=-1", "sms_assigned_user_id"),
            ("number=5551234", "number"),
            ("status=active&status=inactive", "status"),
            ("owner_id=", "owner_id"),
        ] {
            assert_eq!(
                refused_field(read_numbers_query(q).unwrap_err()),
                Some(field),
                "{q}"
            );
        }
        let n = NumberView {
            pk: 789,
            number: "+15551234567",
            friendly_name: "Main Business Line",
            sms_enabled: true,
            mms_enabled: true,
            status: NumberStatus::Active,
            owner_id: Some(123),
            sms_assigned_user_id: None,
            ai_agent_id: Some("agt_1"),
        };
        assert!(NumbersFilter::default().matches(&n));
        assert!(
            read_numbers_query("status=active&owner_id=123&ai_agent_id=agt_1")
                .unwrap()
                .matches(&n)
        );
        for q in [
            "status=inactive",
            "owner_id=124",
            "sms_assigned_user_id=123",
            "ai_agent_id=agt_2",
            "number=%2B15559876543",
        ] {
            assert!(!read_numbers_query(q).unwrap().matches(&n), "{q}");
        }
    }

    fn number<'a>(pk: u64, number: &'a str, name: &'a str, sms: bool, mms: bool) -> NumberView<'a> {
        NumberView {
            pk,
            number,
            friendly_name: name,
            sms_enabled: sms,
            mms_enabled: mms,
            status: NumberStatus::Active,
            owner_id: None,
            sms_assigned_user_id: None,
            ai_agent_id: None,
        }
    }

    #[test]
    fn number_lists_are_the_documents_examples() {
        let all = [
            number(789, "+15551234567", "Main Business Line", true, true),
            number(790, "+15559876543", "Support Line", true, false),
            number(791, "+15551112222", "AI Agent Line", false, false),
        ];
        let numbers_example = r#"{
  "result": [
    {
      "pk": 789,
      "number": "+15551234567",
      "friendly_name": "Main Business Line",
      "sms_enabled": true,
      "mms_enabled": true
    },
    {
      "pk": 790,
      "number": "+15559876543",
      "friendly_name": "Support Line",
      "sms_enabled": true,
      "mms_enabled": false
    },
    {
      "pk": 791,
      "number": "+15551112222",
      "friendly_name": "AI Agent Line",
      "sms_enabled": false,
      "mms_enabled": false
    }
  ],
  "error": false,
  "message": "List of numbers"
}"#;
        assert_eq!(
            body(&numbers_result(&all), Operation::ListNumbers),
            with_timestamp(numbers_example)
        );
        let user_example = r#"{
  "result": [
    {
      "pk": 789,
      "number": "+15551234567",
      "friendly_name": "Main Business Line",
      "sms_enabled": true,
      "mms_enabled": true
    },
    {
      "pk": 790,
      "number": "+15559876543",
      "friendly_name": "Support Line",
      "sms_enabled": true,
      "mms_enabled": false
    }
  ],
  "error": false,
  "message": "List of phone numbers assigned to user"
}"#;
        assert_eq!(
            body(&numbers_result(&all[..2]), Operation::UserNumbers),
            with_timestamp(user_example)
        );
    }

    #[test]
    fn availability_is_the_documents_example_and_public_has_no_channels() {
        let users = [UserPresence {
            pk: 123,
            presence_id: "1001",
            caller_id: "John Smith",
            first_name: "John",
            last_name: "Smith",
            devices_registered: true,
            channels: vec![Channel {
                to: "5551234",
                from: "1001",
                call_seconds: 45,
                direction: Direction::Outbound,
            }],
        }];
        let example = r#"{
  "result": [
    {
      "pk": 123,
      "presence_id": "1001",
      "callerID": "John Smith",
      "first_name": "John",
      "last_name": "Smith",
      "devices_registered": true,
      "channels": [
        {
          "to": "5551234",
          "from": "1001",
          "call_seconds": 45,
          "direction": "outbound"
        }
      ]
    }
  ],
  "error": false,
  "message": "User availability data"
}"#;
        assert_eq!(
            body(
                &availability_result(&users, View::Full),
                Operation::UserAvailability
            ),
            with_timestamp(example)
        );
        assert_eq!(
            serde_json::to_string(&availability_result(&users, View::Public)).unwrap(),
            r#"[{"pk":123,"presence_id":"1001","callerID":"John Smith","first_name":"John","last_name":"Smith","devices_registered":true}]"#
        );
    }

    fn queue<'a>(
        pk: u64,
        name: &'a str,
        ext: &'a str,
        strategy: Strategy,
        timeout: u32,
    ) -> QueueView<'a> {
        QueueView {
            pk,
            queue_name: name,
            extension: ext,
            strategy,
            musiconhold: "default",
            timeout,
            retry: 5,
            wrapuptime: 10,
            maxlen: 0,
            joinempty: true,
            leavewhenempty: false,
            ringinuse: false,
            members: vec![],
        }
    }

    #[test]
    fn queues_are_the_documents_examples() {
        let queues = [
            queue(100134, "Sales Queue", "8001", Strategy::RingAll, 20),
            queue(100135, "Support Queue", "8002", Strategy::FewestCalls, 30),
        ];
        let example = r#"{
  "result": [
    {
      "pk": 100134,
      "name": "100134",
      "queue_name": "Sales Queue",
      "extension": "8001",
      "strategy": "ringall",
      "musiconhold": "default",
      "timeout": 20,
      "retry": 5,
      "wrapuptime": 10,
      "maxlen": 0,
      "joinempty": "yes",
      "leavewhenempty": "no",
      "ringinuse": "no"
    },
    {
      "pk": 100135,
      "name": "100135",
      "queue_name": "Support Queue",
      "extension": "8002",
      "strategy": "fewestcalls",
      "musiconhold": "default",
      "timeout": 30,
      "retry": 5,
      "wrapuptime": 10,
      "maxlen": 0,
      "joinempty": "yes",
      "leavewhenempty": "no",
      "ringinuse": "no"
    }
  ],
  "error": false,
  "message": "List of queues"
}"#;
        assert_eq!(
            body(&queues_result(&queues, View::Full), Operation::ListQueues),
            with_timestamp(example)
        );
        assert_eq!(
            serde_json::to_string(&queues_result(&queues[..1], View::Public)).unwrap(),
            r#"[{"pk":100134,"name":"100134","queue_name":"Sales Queue","extension":"8001"}]"#
        );
        // The detail: the same fields in the table's order, then assigned_users.
        let mut detail = queues[0].clone();
        detail.members = vec![
            Member::User {
                pk: 123,
                presence_id: "1001",
                caller_id: "John Smith",
            },
            Member::AiAgent {
                agent_id: "agt_1",
                presence_id: "1900",
                name: "Sales Qualifier",
            },
        ];
        let text = serde_json::to_string(&queue_value(&detail, View::Full, true)).unwrap();
        assert!(
            text.ends_with(concat!(
                r#""ringinuse":"no","assigned_users":[{"type":"user","user_id":123,"ai_agent_id":null,"presence_id":"1001","callerID":"John Smith"},"#,
                r#"{"type":"ai_agent","user_id":null,"ai_agent_id":"agt_1","presence_id":"1900","callerID":"Sales Qualifier"}]}"#
            )),
            "{text}"
        );
        for s in Strategy::ALL {
            assert_eq!(Strategy::parse(s.as_str()), Some(s));
        }
    }

    #[test]
    fn queue_availability_is_the_documents_example_and_derives_readiness() {
        let q = queue(100134, "Sales Queue", "8001", Strategy::RingAll, 20);
        let load = QueueLoad {
            agents_online: 3,
            agents_on_call: 1,
            active_calls: 5,
        };
        let example = r#"{
  "result": [
    {
      "pk": 100134,
      "name": "100134",
      "queue_name": "Sales Queue",
      "extension": "8001",
      "is_ready": true,
      "agents_online": 3,
      "agents_available": 2,
      "agents_on_call": 1,
      "active_calls": 5
    }
  ],
  "error": false,
  "message": "Queue availability data"
}"#;
        assert_eq!(
            body(
                &Json::Array(vec![queue_availability_value(&q, load)]),
                Operation::QueuesAvailability
            ),
            with_timestamp(example)
        );
        let empty = serde_json::to_string(&queue_availability_value(
            &q,
            QueueLoad {
                agents_online: 0,
                agents_on_call: 2,
                active_calls: 1,
            },
        ))
        .unwrap();
        assert!(
            empty.contains(
                r#""is_ready":false,"agents_online":0,"agents_available":0,"agents_on_call":0"#
            ),
            "{empty}"
        );
    }

    #[test]
    fn profile_is_the_documents_example() {
        let p = ProfileView {
            pk: 123,
            sip_endpoint_id: 456,
            presence_id: "1001",
            caller_id: "John Smith",
            first_name: "John",
            last_name: "Smith",
            email: "john.smith@company.com",
            voicemail_enabled: true,
            forward_enabled: false,
            forward_number: None,
            time_zone: "America/New_York",
        };
        let example = r#"{
  "result": {
    "pk": 123,
    "asterisk_user_id": 456,
    "presence_id": "1001",
    "callerID": "John Smith",
    "first_name": "John",
    "last_name": "Smith",
    "email": "john.smith@company.com",
    "voicemail_enabled": true,
    "forward_enabled": false,
    "forward_number": null,
    "time_zone": "America/New_York"
  },
  "error": false,
  "message": "User profile details"
}"#;
        assert_eq!(
            body(&profile_result(&p), Operation::UserProfile),
            with_timestamp(example)
        );
    }

    const U: &str = "1704067200.12345";
    const CALLER: &str = "+15551234567";
    const DNIS: &str = "+15559876543";

    fn envelope(name: &str, metadata: &str) -> String {
        compact(&format!(
            r#"{{"event_name": "{name}", "account_id": "12345", "timestamp": 1704067200, "metadata": {metadata}}}"#
        ))
    }

    #[test]
    fn every_webhook_body_is_the_documents_example() {
        let wait = |name, id, t| QueueWait {
            caller_id_number: CALLER,
            queue_name: name,
            queue_id: id,
            wait_time: t,
        };
        let cases: Vec<(Event<'_>, &str)> = vec![
            (
                Event::IncomingExternalCall(IncomingExternalCall {
                    caller_id_number: CALLER,
                    caller_id_name: Some("John Doe"),
                    dnis: DNIS,
                    uniqueid: U,
                }),
                r#"{"caller_id_number": "+15551234567", "caller_id_name": "John Doe", "dnis": "+15559876543", "uniqueid": "1704067200.12345"}"#,
            ),
            (
                Event::CallEnded(CallEnded {
                    caller_id_number: Some(CALLER),
                    dnis: DNIS,
                    uniqueid: U,
                    call_direction: Direction::Inbound,
                    to_user_id: Some("67890"),
                    duration: 120,
                }),
                r#"{"caller_id_number": "+15551234567", "dnis": "+15559876543", "uniqueid": "1704067200.12345", "call_direction": "inbound", "to_user_id": "67890", "duration": 120}"#,
            ),
            (
                Event::UserDial(UserDial {
                    dialed_number: CALLER,
                    from_user_id: "67890",
                    uniqueid: U,
                }),
                r#"{"dialed_number": "+15551234567", "from_user_id": "67890", "uniqueid": "1704067200.12345"}"#,
            ),
            (
                Event::UserAnswer(UserAnswer {
                    caller_id_number: CALLER,
                    to_user_id: "67890",
                    uniqueid: U,
                }),
                r#"{"caller_id_number": "+15551234567", "to_user_id": "67890", "uniqueid": "1704067200.12345"}"#,
            ),
            (
                Event::UserHangup(UserHangup {
                    dialed_number: CALLER,
                    from_user_id: "67890",
                    uniqueid: U,
                    duration: 45,
                }),
                r#"{"dialed_number": "+15551234567", "from_user_id": "67890", "uniqueid": "1704067200.12345", "duration": 45}"#,
            ),
            (
                Event::SmsReceived(SmsReceived {
                    from_number: CALLER,
                    to_number: DNIS,
                    body: "Hello, this is a test message",
                    message_id: "msg_abc123",
                }),
                r#"{"from_number": "+15551234567", "to_number": "+15559876543", "body": "Hello, this is a test message", "message_id": "msg_abc123"}"#,
            ),
            (
                Event::SmsSent(SmsSent {
                    from_number: DNIS,
                    to_number: vec![CALLER],
                    body: "Hello from Voice360!",
                    message_id: "msg_xyz789",
                    sms_sent_by_user_id: Some("67890"),
                }),
                r#"{"from_number": "+15559876543", "to_number": ["+15551234567"], "body": "Hello from Voice360!", "message_id": "msg_xyz789", "sms_sent_by_user_id": "67890"}"#,
            ),
            (
                Event::SmsDelivered(SmsDelivered {
                    to_number: vec![CALLER],
                    message_id: "msg_xyz789",
                    status: "delivered",
                }),
                r#"{"to_number": ["+15551234567"], "message_id": "msg_xyz789", "status": "delivered"}"#,
            ),
            (
                Event::QueueEnter(QueueEnter {
                    queue_id: "queue_123",
                    queuecall_id: "456",
                    uniqueid: U,
                    queuename: "queue_123",
                    callerid_number: CALLER,
                    callerid_name: Some("John Doe"),
                }),
                r#"{"queue_id": "queue_123", "queuecall_id": "456", "uniqueid": "1704067200.12345", "queuename": "queue_123", "callerid_number": "+15551234567", "callerid_name": "John Doe"}"#,
            ),
            (
                Event::QueueMemberDial(QueueMemberDial {
                    app_name: APP_QUEUE,
                    to_user_id: "67890",
                    from_user_id: None,
                    uniqueid: U,
                    caller_id_number: CALLER,
                    dnis: DNIS,
                    queuecall_id: "456",
                }),
                r#"{"App-Name": "Queue", "to_user_id": "67890", "from_user_id": null, "uniqueid": "1704067200.12345", "caller_id_number": "+15551234567", "dnis": "+15559876543", "queuecall_id": "456"}"#,
            ),
            (
                Event::QueueMemberAnswer(QueueMemberAnswer {
                    app_name: APP_QUEUE,
                    to_user_id: "67890",
                    caller_id_number: CALLER,
                    uniqueid: U,
                    dnis: DNIS,
                    queuecall_id: "456",
                }),
                r#"{"App-Name": "Queue", "to_user_id": "67890", "caller_id_number": "+15551234567", "uniqueid": "1704067200.12345", "dnis": "+15559876543", "queuecall_id": "456"}"#,
            ),
            (
                Event::QueueMemberDialHangup(QueueMemberDialHangup {
                    app_name: APP_QUEUE,
                    to_user_id: "67890",
                    from_user_id: None,
                    uniqueid: U,
                    caller_id_number: CALLER,
                    dnis: DNIS,
                    queuecall_id: "456",
                    duration: 120,
                }),
                r#"{"App-Name": "Queue", "to_user_id": "67890", "from_user_id": null, "uniqueid": "1704067200.12345", "caller_id_number": "+15551234567", "dnis": "+15559876543", "queuecall_id": "456", "duration": 120}"#,
            ),
            (
                Event::QueueHangup(QueueHangup {
                    app_name: APP_QUEUE,
                    queue_id: "queue_123",
                    queuecall_id: "456",
                    uniqueid: U,
                    queuename: "queue_123",
                    duration: JsNumber(16.59),
                    dnis: DNIS,
                    dialed_number: DNIS,
                    caller_id_number: CALLER,
                }),
                r#"{"App-Name": "Queue", "queue_id": "queue_123", "queuecall_id": "456", "uniqueid": "1704067200.12345", "queuename": "queue_123", "duration": 16.59, "dnis": "+15559876543", "dialed_number": "+15559876543", "caller_id_number": "+15551234567"}"#,
            ),
            (
                Event::QueueNoAnswer(wait("Sales Queue", "queue_123", 60)),
                r#"{"caller_id_number": "+15551234567", "queue_name": "Sales Queue", "queue_id": "queue_123", "wait_time": 60}"#,
            ),
            (
                Event::QueueHangupTimeout(wait("Support Queue", "queue_456", 300)),
                r#"{"caller_id_number": "+15551234567", "queue_name": "Support Queue", "queue_id": "queue_456", "wait_time": 300}"#,
            ),
            (
                Event::QueueHangupAbandoned(wait("Support Queue", "queue_456", 45)),
                r#"{"caller_id_number": "+15551234567", "queue_name": "Support Queue", "queue_id": "queue_456", "wait_time": 45}"#,
            ),
            (
                Event::ContactCreated(ContactCreated {
                    contact_id: "98765",
                    phone: CALLER,
                    first_name: Some("John"),
                    last_name: Some("Doe"),
                    email: Some("john@example.com"),
                }),
                r#"{"contact_id": "98765", "phone": "+15551234567", "first_name": "John", "last_name": "Doe", "email": "john@example.com"}"#,
            ),
            (
                Event::ContactUpdated(ContactUpdated {
                    contact_id: "98765",
                    updated_fields: vec!["first_name", "email"],
                    phone: CALLER,
                }),
                r#"{"contact_id": "98765", "updated_fields": ["first_name", "email"], "phone": "+15551234567"}"#,
            ),
            (
                Event::ContactDeleted(ContactDeleted {
                    contact_id: "98765",
                    phone: CALLER,
                }),
                r#"{"contact_id": "98765", "phone": "+15551234567"}"#,
            ),
            (
                Event::TranscriptionFinished(TranscriptionFinished {
                    uniqueid: U,
                    transcription: Some(r#"{"AccountId":"12345", ...}"#.into()),
                    provider: "together_ai",
                    model: "openai/whisper-large-v3",
                    total_tokens: 1842,
                    success: true,
                    error: None,
                }),
                r#"{"uniqueid": "1704067200.12345", "transcription": "{\"AccountId\":\"12345\", ...}", "provider": "together_ai", "model": "openai/whisper-large-v3", "total_tokens": 1842, "success": true}"#,
            ),
        ];
        let mut seen = Vec::new();
        for (event, metadata) in &cases {
            let name = event.event_type().as_str();
            assert_eq!(
                event.body("12345", HOOK_NOW + 999),
                envelope(name, metadata),
                "{name}"
            );
            assert_eq!(EventType::parse(name), Some(event.event_type()));
            seen.push(event.event_type());
        }
        // Every event type the document lists has its example here.
        assert_eq!(seen, EventType::ALL);
        assert_eq!(EventType::parse("USER_DIAL "), None);
        // The failure form: success false, transcription null, a top-level error.
        let failed = Event::TranscriptionFinished(TranscriptionFinished {
            uniqueid: U,
            transcription: None,
            provider: "voxline",
            model: "gpt-realtime",
            total_tokens: 0,
            success: false,
            error: Some("no audio"),
        });
        assert!(failed.body("12345", HOOK_NOW).ends_with(
            r#""transcription":null,"provider":"voxline","model":"gpt-realtime","total_tokens":0,"success":false,"error":"no audio"}}"#
        ));
    }

    #[test]
    fn outbound_ai_calls_as_call_events() {
        let call = super::super::post_call::test_call::ended(None);
        // Answered 10:30:00.000, ended 10:32:21.400: 141 s talked.
        assert_eq!(
            user_dial(&call, "67890").body("12345", HOOK_NOW),
            envelope(
                "USER_DIAL",
                r#"{"dialed_number": "+15551234567", "from_user_id": "67890", "uniqueid": "call_01"}"#
            )
        );
        assert_eq!(
            user_hangup(&call, "67890").body("12345", HOOK_NOW),
            envelope(
                "USER_HANGUP",
                r#"{"dialed_number": "+15551234567", "from_user_id": "67890", "uniqueid": "call_01", "duration": 141}"#
            )
        );
        assert_eq!(
            call_ended(&call, "67890").body("12345", HOOK_NOW),
            envelope(
                "CALL_ENDED",
                r#"{"caller_id_number": "+13239776447", "dnis": "+15551234567", "uniqueid": "call_01", "call_direction": "outbound", "to_user_id": "67890", "duration": 141}"#
            )
        );
        let unanswered = EndedCall {
            answered_ms: None,
            from_phone: None,
            ..call
        };
        let body = call_ended(&unanswered, "67890").body("12345", HOOK_NOW);
        assert!(body.contains(r#""caller_id_number":null"#), "{body}");
        assert!(body.ends_with(r#""duration":0}}"#), "{body}");
    }

    #[test]
    fn signature_is_what_the_documents_verifiers_compute() {
        // python3 -c 'import hmac,hashlib;print(hmac.new(b"whsec_test",b"{}",hashlib.sha256).hexdigest())'
        assert_eq!(
            signature(b"whsec_test", b"{}"),
            "sha256=46bdc2a2e83964bd2695acc6a1f97162d8bafc135a071aa5cd5c99aae5481440"
        );
        // The Node verifier splits on '=': the hex has none, so it reads the whole digest.
        let sig = signature(b"k", b"body");
        let (scheme, hex_part) = sig.split_once('=').unwrap();
        assert_eq!((scheme, hex_part.len()), ("sha256", 64));
        assert!(!hex_part.contains('='));
    }

    #[test]
    fn transcription_is_call_analytics_shaped() {
        let call = super::super::post_call::test_call::ended(None);
        let recap = Recap {
            action_items: vec!["Send updated invoice"],
            topics: vec!["billing"],
        };
        let text = transcription_json(&call, "12345", U, &recap, 1_779_301_800_000);
        let v: Value = serde_json::from_str(&text).unwrap();
        // Keys in the document's order.
        let keys: Vec<&str> = [
            "AccountId",
            "JobName",
            "LanguageCode",
            "JobStatus",
            "Channel",
            "Participants",
            "ConversationCharacteristics",
            "ContactSummary",
            "Transcript",
            "CallRecap",
            "AgentTranscript",
            "CustomerTranscript",
            "CompletedAt",
        ]
        .to_vec();
        let mut at = 0;
        for k in &keys {
            let pos = text.find(&format!("\"{k}\":")).unwrap();
            assert!(pos >= at, "{k} out of order");
            at = pos;
        }
        assert_eq!(v["JobName"], "call-analytics-1704067200.12345");
        assert_eq!(v["CompletedAt"], "2026-05-20T18:30:00.000000Z");
        assert_eq!(
            v["ConversationCharacteristics"]["TotalConversationDurationMillis"],
            141_400
        );
        let transcript = v["Transcript"].as_array().unwrap();
        assert_eq!(transcript.len(), call.turns.len());
        assert_eq!(transcript[0]["Id"], "1704067200.12345-0");
        assert_eq!(transcript[0]["BeginOffsetMillis"], call.turns[0].start_ms);
        assert_eq!(transcript[0]["EndOffsetMillis"], call.turns[1].start_ms);
        let talk = &v["ConversationCharacteristics"]["TalkTime"];
        assert_eq!(
            talk["TotalTimeMillis"].as_u64().unwrap(),
            talk["DetailsByParticipant"]["AGENT"]["TotalTimeMillis"]
                .as_u64()
                .unwrap()
                + talk["DetailsByParticipant"]["CUSTOMER"]["TotalTimeMillis"]
                    .as_u64()
                    .unwrap()
        );
        assert_eq!(v["CallRecap"]["summary"], "Caller expressed interest.");
        assert_eq!(v["CallRecap"]["action_items"][0], "Send updated invoice");
        assert_eq!(
            v["AgentTranscript"].as_array().unwrap().len()
                + v["CustomerTranscript"].as_array().unwrap().len(),
            call.turns.len()
        );
        // It travels as a string inside the event, as the document says.
        let event = Event::TranscriptionFinished(TranscriptionFinished {
            uniqueid: U,
            transcription: Some(text.clone()),
            provider: "voxline",
            model: "gpt-realtime",
            total_tokens: 0,
            success: true,
            error: None,
        });
        let body: Value = serde_json::from_str(&event.body("12345", HOOK_NOW)).unwrap();
        assert_eq!(
            body["metadata"]["transcription"].as_str(),
            Some(text.as_str())
        );
    }
}

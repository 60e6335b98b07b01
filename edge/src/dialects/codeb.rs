//! CodeB outbound AI over REST (seed document `codeb-outbound-ai-rest.txt`).
//!
//! Pure: paths and the route matcher, the OIDC password-grant token request
//! and its answers, the create-call body, the answers of the call endpoints,
//! transcript names and lines, and the two webhook bodies with their
//! `X-CodeB-Signature`. The webhooks are sent to endpoints of `format: codeb`
//! (`webhooks::post_call::bodies`). The REST surface is not wired yet (no
//! `Dialect` variant): the next slice routes it, mints and checks tokens and
//! keeps users (docs/dialects.md, "CodeB").
//!
//! Choices where the document is silent or loose (each also on the item):
//! - Call ids are `oac-` + the hex of our native `call_<hex>` id, so one maps
//!   to the other without storage ([`codeb_call_id`], [`native_call_id`]).
//! - Error bodies of the REST surface (the document shows none) mirror its
//!   success answer: `{"ok":false,"error":"<code>","message":"..."}`; the
//!   token endpoint answers RFC 6749 §5.2 bodies instead.
//! - Unknown request fields are ignored (the document lists fields and says
//!   nothing of others; its curl examples are copied into CRMs that add some).
//! - `GET /v1/calls/{id}` in the document is shorthand: only the
//!   `/api.ashx/v1/...` paths are CodeB's (`/v1/calls/{id}` is native).

use serde::Serialize;
use serde_json::Value;
use voxline_shared::{CallStatus, EndedReason};

use super::post_call::{EndedCall, Speaker, Turn};
use crate::ids::{parse_rfc3339_utc_ms, rfc3339_ms};
use crate::limits;

// ---------------------------------------------------------------- paths

/// The OIDC token endpoint (password grant).
pub const TOKEN_PATH: &str = "/oidc.ashx/token";
/// `POST` creates a call, `GET` lists calls.
pub const CALLS_PATH: &str = "/api.ashx/v1/calls";
/// `GET {CALLS_PATH}/{id}`, `POST {CALLS_PATH}/{id}/hangup`.
const CALL_PREFIX: &str = "/api.ashx/v1/calls/";
const HANGUP_SUFFIX: &str = "/hangup";
/// `GET {TRANSCRIPTS_PREFIX}{name}`.
pub const TRANSCRIPTS_PREFIX: &str = "/api.ashx/v1/transcripts/";
/// Every CodeB path starts with one of these (and no native one does).
pub const PATH_PREFIXES: [&str; 2] = ["/oidc.ashx/", "/api.ashx/"];
/// Longest path looked at; a longer CodeB path is not found, unread.
const MAX_PATH_CHARS: usize = 256;

pub const HEADER_SIGNATURE: &str = "X-CodeB-Signature";
pub const EVENT_FINISHED: &str = "outbound-ai.finished";
pub const EVENT_TRANSCRIPT_SAVED: &str = "transcript.saved";

/// What a CodeB request asks for, with its path parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation<'a> {
    /// `POST /oidc.ashx/token`
    Token,
    /// `POST /api.ashx/v1/calls`
    CreateCall,
    /// `GET /api.ashx/v1/calls` (query: [`read_list_query`])
    ListCalls,
    /// `GET /api.ashx/v1/calls/{id}`
    GetCall { call_id: &'a str },
    /// `POST /api.ashx/v1/calls/{id}/hangup`
    Hangup { call_id: &'a str },
    /// `GET /api.ashx/v1/transcripts/{name}`
    Transcript { name: TranscriptName<'a> },
}

/// The route matcher's answer for a path under a CodeB prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routed<'a> {
    Operation(Operation<'a>),
    /// The path is CodeB's but not with this method; `allow` is the `Allow` header.
    MethodNotAllowed {
        allow: &'static str,
    },
    /// Under a CodeB prefix, but nothing there (or a malformed id or name).
    NotFound,
}

/// Matches `method` and `path` (no query string). `None`: not a CodeB path
/// (neither prefix), so the native router decides. Ids and transcript names
/// are checked for their shape here, so nothing else reaches a lookup.
pub fn route<'a>(method: &str, path: &'a str) -> Option<Routed<'a>> {
    if !PATH_PREFIXES.iter().any(|p| path.starts_with(p)) {
        return None;
    }
    if path.len() > MAX_PATH_CHARS {
        return Some(Routed::NotFound);
    }
    let only = |wanted: &'static str, op: Operation<'a>| {
        if method == wanted {
            Routed::Operation(op)
        } else {
            Routed::MethodNotAllowed { allow: wanted }
        }
    };
    let routed = if path == TOKEN_PATH {
        only("POST", Operation::Token)
    } else if path == CALLS_PATH {
        match method {
            "POST" => Routed::Operation(Operation::CreateCall),
            "GET" => Routed::Operation(Operation::ListCalls),
            _ => Routed::MethodNotAllowed { allow: "GET, POST" },
        }
    } else if let Some(rest) = path.strip_prefix(CALL_PREFIX) {
        match rest.strip_suffix(HANGUP_SUFFIX) {
            Some(id) if native_call_id(id).is_some() => {
                only("POST", Operation::Hangup { call_id: id })
            }
            None if native_call_id(rest).is_some() => {
                only("GET", Operation::GetCall { call_id: rest })
            }
            _ => Routed::NotFound,
        }
    } else if let Some(name) = path.strip_prefix(TRANSCRIPTS_PREFIX) {
        match TranscriptName::parse(name) {
            Some(name) => only("GET", Operation::Transcript { name }),
            None => Routed::NotFound,
        }
    } else {
        Routed::NotFound
    };
    Some(routed)
}

// ---------------------------------------------------------------- call ids

/// The prefix of CodeB call ids (the document's `oac-0123456789ab`).
pub const CALL_ID_PREFIX: &str = "oac-";

/// `call_<hex>` -> `oac-<hex>`. The document's ids are opaque to clients, so
/// ours carry the native id's hex (22 digits, not the example's 12): no map
/// to store, and the newest-first order of native ids is kept.
pub fn codeb_call_id(native: &str) -> Option<String> {
    crate::ids::is_id(native, "call")
        .then(|| native.get("call_".len()..))
        .flatten()
        .map(|hex| format!("{CALL_ID_PREFIX}{hex}"))
}

/// `oac-<hex>` -> `call_<hex>`; `None` for anything not shaped like one of ours.
pub fn native_call_id(codeb: &str) -> Option<String> {
    let hex = codeb.strip_prefix(CALL_ID_PREFIX)?;
    let native = format!("call_{hex}");
    crate::ids::is_id(&native, "call").then_some(native)
}

// ---------------------------------------------------------------- errors

/// The REST surface's errors. The document shows no error body; ours mirrors
/// its success answer: `{"ok":false,"error":"<code>","message":"..."}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodebError {
    /// A malformed body, query or field; the message names it.
    BadRequest(String),
    /// No bearer token, or an unknown, expired or revoked one.
    Unauthorized,
    /// The tenant is disabled or its API access is off.
    Forbidden,
    /// No such call or transcript (or one of another tenant).
    NotFound,
    MethodNotAllowed {
        allow: &'static str,
    },
    /// A call to this number is already queued, scheduled or live.
    CallInProgress,
    RateLimited {
        retry_after_seconds: u64,
    },
    Internal,
}

impl CodebError {
    /// (status, stable code, message)
    pub fn parts(&self) -> (u16, &'static str, String) {
        match self {
            CodebError::BadRequest(why) => (400, "invalid_request", why.clone()),
            CodebError::Unauthorized => (
                401,
                "unauthorized",
                "Missing or invalid bearer token".into(),
            ),
            CodebError::Forbidden => (403, "forbidden", "API access is disabled".into()),
            CodebError::NotFound => (404, "not_found", "Not found".into()),
            CodebError::MethodNotAllowed { .. } => {
                (405, "method_not_allowed", "Method not allowed".into())
            }
            CodebError::CallInProgress => (
                409,
                "call_in_progress",
                "A call to this number is already scheduled or in flight".into(),
            ),
            CodebError::RateLimited { .. } => (429, "rate_limited", "Too many requests".into()),
            CodebError::Internal => (500, "internal_error", "Internal error".into()),
        }
    }

    pub fn status(&self) -> u16 {
        self.parts().0
    }

    /// Headers the answer carries besides `Content-Type: application/json`.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        match self {
            CodebError::Unauthorized => vec![("WWW-Authenticate", "Bearer".into())],
            CodebError::MethodNotAllowed { allow } => vec![("Allow", (*allow).into())],
            CodebError::RateLimited {
                retry_after_seconds,
            } => vec![("Retry-After", retry_after_seconds.to_string())],
            _ => vec![],
        }
    }

    pub fn body(&self) -> String {
        #[derive(Serialize)]
        struct Failed {
            ok: bool,
            error: &'static str,
            message: String,
        }
        let (_, error, message) = self.parts();
        serde_json::to_string(&Failed {
            ok: false,
            error,
            message,
        })
        .unwrap_or_default()
    }
}

impl From<&super::refusal::Refusal> for CodebError {
    fn from(r: &super::refusal::Refusal) -> CodebError {
        use super::refusal::Refusal as R;
        match r {
            R::MissingCredentials | R::InvalidCredentials | R::InvalidSignature => {
                CodebError::Unauthorized
            }
            R::AccessDisabled => CodebError::Forbidden,
            R::AgentDisabled => CodebError::BadRequest("The tenant's agent is disabled".into()),
            R::AgentNotConfigured => {
                CodebError::BadRequest("The tenant has no agent to place calls with".into())
            }
            R::InvalidRequest(why) => CodebError::BadRequest(why.clone()),
            R::CallInProgress => CodebError::CallInProgress,
            R::RateLimited {
                retry_after_seconds,
            } => CodebError::RateLimited {
                retry_after_seconds: *retry_after_seconds,
            },
            R::AgentLookupFailed | R::Internal => CodebError::Internal,
        }
    }
}

// ---------------------------------------------------------------- token endpoint

/// Longest token request body read.
pub const MAX_TOKEN_BODY_BYTES: usize = 4 * 1024;
const MAX_USERNAME_CHARS: usize = 254;
const MAX_PASSWORD_CHARS: usize = 1024;
const MAX_SCOPE_CHARS: usize = 256;
/// Lifetime of an access token (the document: "short-lived"; we choose one hour).
pub const TOKEN_LIFETIME_SECONDS: u64 = 3600;
/// RFC 6749 §5.1: token answers (success and error) must not be cached.
pub const TOKEN_RESPONSE_HEADERS: [(&str, &str); 2] =
    [("Cache-Control", "no-store"), ("Pragma", "no-cache")];

/// A password that never shows in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Secret {
        Secret(s)
    }
    /// The clear value, for the one place that needs it (hashing, sealing).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// `grant_type=password&username=...&password=...&scope=openid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    pub username: String,
    pub password: Secret,
    /// As sent; `None` when absent. Any scope is accepted (the token grants
    /// the REST surface, whatever is asked), and echoed in the answer.
    pub scope: Option<String>,
}

/// RFC 6749 §5.2 errors of the token endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// Missing or repeated parameter, not a form body, too large (400).
    InvalidRequest(String),
    /// `grant_type` is not `password` (400).
    UnsupportedGrantType,
    /// Wrong username or password, or a disabled user or tenant (400, as
    /// RFC 6749 says for the resource owner's credentials).
    InvalidGrant,
    /// Too many failed attempts from this client: 429 with `Retry-After`
    /// (`slow_down` is the registered token-endpoint code for it, RFC 8628).
    SlowDown { retry_after_seconds: u64 },
    /// Our failure (500 `server_error`).
    ServerError,
}

impl TokenError {
    /// (status, `error`, `error_description`)
    pub fn parts(&self) -> (u16, &'static str, String) {
        match self {
            TokenError::InvalidRequest(why) => (400, "invalid_request", why.clone()),
            TokenError::UnsupportedGrantType => (
                400,
                "unsupported_grant_type",
                "Only grant_type=password is supported".into(),
            ),
            TokenError::InvalidGrant => {
                (400, "invalid_grant", "Invalid username or password".into())
            }
            TokenError::SlowDown { .. } => (
                429,
                "slow_down",
                "Too many failed attempts; retry later".into(),
            ),
            TokenError::ServerError => (500, "server_error", "Internal error".into()),
        }
    }

    pub fn status(&self) -> u16 {
        self.parts().0
    }

    /// `{"error":"...","error_description":"..."}`
    pub fn body(&self) -> String {
        #[derive(Serialize)]
        struct Failed {
            error: &'static str,
            error_description: String,
        }
        let (_, error, error_description) = self.parts();
        serde_json::to_string(&Failed {
            error,
            error_description,
        })
        .unwrap_or_default()
    }
}

/// Reads the token request. `content_type` must be
/// `application/x-www-form-urlencoded` (parameters such as `charset` ignored).
/// RFC 6749 §3.2: a parameter sent twice, or one with an empty value where a
/// value is required, is `invalid_request`; unknown parameters are ignored.
/// `grant_type` is checked before the credentials are read.
pub fn read_token_request(
    content_type: Option<&str>,
    body: &[u8],
) -> Result<TokenRequest, TokenError> {
    let invalid = |why: &str| TokenError::InvalidRequest(why.into());
    let media_type = content_type
        .and_then(|c| c.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase());
    if media_type.as_deref() != Some("application/x-www-form-urlencoded") {
        return Err(invalid(
            "Content-Type must be application/x-www-form-urlencoded",
        ));
    }
    if body.len() > MAX_TOKEN_BODY_BYTES {
        return Err(invalid("The request body is too large"));
    }
    let (mut grant_type, mut username, mut password, mut scope) = (None, None, None, None);
    for (name, value) in form_urlencoded::parse(body) {
        let slot = match name.as_ref() {
            "grant_type" => &mut grant_type,
            "username" => &mut username,
            "password" => &mut password,
            "scope" => &mut scope,
            _ => continue,
        };
        if slot.is_some() {
            return Err(TokenError::InvalidRequest(format!(
                "{name} is included more than once"
            )));
        }
        *slot = Some(value.into_owned());
    }
    match grant_type.as_deref() {
        None | Some("") => return Err(invalid("grant_type is required")),
        Some("password") => {}
        Some(_) => return Err(TokenError::UnsupportedGrantType),
    }
    let required = |v: Option<String>, name: &str, max: usize| match v {
        Some(v) if v.is_empty() => Err(TokenError::InvalidRequest(format!("{name} is required"))),
        Some(v) if v.chars().count() > max => Err(TokenError::InvalidRequest(format!(
            "{name} is longer than {max} characters"
        ))),
        Some(v) => Ok(v),
        None => Err(TokenError::InvalidRequest(format!("{name} is required"))),
    };
    let username = required(username, "username", MAX_USERNAME_CHARS)?;
    let password = Secret(required(password, "password", MAX_PASSWORD_CHARS)?);
    let scope = match scope {
        Some(s) if s.chars().count() > MAX_SCOPE_CHARS => {
            return Err(invalid("scope is too long"));
        }
        other => other.filter(|s| !s.is_empty()),
    };
    Ok(TokenRequest {
        username,
        password,
        scope,
    })
}

/// The 200 answer (RFC 6749 §5.1), in this order:
/// `{"access_token","token_type":"Bearer","expires_in","scope"}`; `scope`
/// is left out when the request had none. The document reads only
/// `access_token`; no `id_token` is issued (the token is for this API, not
/// for signing a user into another application).
pub fn token_body(access_token: &str, scope: Option<&str>) -> String {
    #[derive(Serialize)]
    struct Issued<'a> {
        access_token: &'a str,
        token_type: &'static str,
        expires_in: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        scope: Option<&'a str>,
    }
    serde_json::to_string(&Issued {
        access_token,
        token_type: "Bearer",
        expires_in: TOKEN_LIFETIME_SECONDS,
        scope,
    })
    .unwrap_or_default()
}

// ---------------------------------------------------------------- create call

pub const MAX_CREATE_BODY_BYTES: usize = 64 * 1024;
pub const DEFAULT_VOICE: &str = "Aoede";
pub const DEFAULT_LANGUAGE: &str = "en-US";
/// Longest `systemPrompt` that is read as a saved prompt's slug.
const MAX_SLUG_CHARS: usize = 64;

/// The engine key a request carries: never in `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// The clear key, for sealing it into the call's offer.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// A `POST /api.ashx/v1/calls` body, read as the document's table says, with
/// its defaults applied. Unknown fields are ignored.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateCall {
    /// E.164 after `dialects::phone::normalize` ("Numbers are normalised").
    pub phone: String,
    /// The caller-ID label (the native `caller_name`: at most 64
    /// characters, no control characters); the phone when absent.
    pub display_name: String,
    pub email: String,
    /// Plain text, or a saved prompt's slug: see [`CreateCall::prompt_slug`].
    pub system_prompt: String,
    pub api_key: ApiKey,
    /// `None`: the tenant's configured model.
    pub model: Option<String>,
    pub voice: String,
    pub language: String,
    pub max_seconds: u32,
    pub retries: u32,
    pub retry_delay_minutes: u32,
    /// Unix ms of `scheduleAtUtc`; `None`: dial now. Whether it is in the
    /// future is the native validator's to say.
    pub schedule_at_ms: Option<u64>,
}

impl CreateCall {
    /// The slug to look up when `systemPrompt` could name a saved prompt: one
    /// word of lowercase letters, digits and dashes (`reminder`), at most 64
    /// characters. The document does not say how a slug is told from text;
    /// we look the slug up and, if the tenant has no such prompt, use the
    /// word itself as the prompt (plain text never has this shape in practice).
    pub fn prompt_slug(&self) -> Option<&str> {
        let s = self.system_prompt.as_str();
        let shaped = !s.is_empty()
            && s.len() <= MAX_SLUG_CHARS
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-');
        shaped.then_some(s)
    }
}

fn string_field(value: &Value, name: &str, max_chars: usize) -> Result<Option<String>, CodebError> {
    super::body::optional_string(value, name, max_chars).map_err(CodebError::BadRequest)
}

fn required_string(value: &Value, name: &str, max_chars: usize) -> Result<String, CodebError> {
    string_field(value, name, max_chars)?
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| CodebError::BadRequest(format!("{name} is required")))
}

/// An optional integer field within `(min, max, default)`.
fn int_field(value: &Value, name: &str, range: (i64, i64, i64)) -> Result<u32, CodebError> {
    let (min, max, default) = range;
    let n = match value.get(name) {
        None | Some(Value::Null) => default,
        Some(v) => v
            .as_i64()
            .ok_or_else(|| CodebError::BadRequest(format!("{name} must be an integer")))?,
    };
    if !(min..=max).contains(&n) {
        return Err(CodebError::BadRequest(format!(
            "{name} must be between {min} and {max}"
        )));
    }
    u32::try_from(n).map_err(|_| CodebError::BadRequest(format!("{name} is out of range")))
}

/// Reads a create-call body (400 naming the field on any problem).
/// Bounds are the native API's (`limits`), which the call is placed through.
pub fn read_create_call(body: &[u8]) -> Result<CreateCall, CodebError> {
    if body.len() > MAX_CREATE_BODY_BYTES {
        return Err(CodebError::BadRequest(format!(
            "The body is larger than {MAX_CREATE_BODY_BYTES} bytes"
        )));
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|_| CodebError::BadRequest("The body is not valid JSON".into()))?;
    if !value.is_object() {
        return Err(CodebError::BadRequest(
            "The body must be a JSON object".into(),
        ));
    }
    let raw_phone = required_string(&value, "phone", super::phone::MAX_INPUT_CHARS)?;
    let phone = super::phone::normalize(&raw_phone)
        .ok_or_else(|| CodebError::BadRequest("phone must be E.164, e.g. +4915157610183".into()))?;
    // The native `caller_name` (the SIP From display-name): its bounds.
    let display_name = string_field(&value, "displayName", limits::CALLER_NAME_MAX)?
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| phone.clone());
    if display_name.chars().any(char::is_control) {
        return Err(CodebError::BadRequest(
            "displayName must not contain control characters".into(),
        ));
    }
    let email = required_string(&value, "email", limits::EMAIL_MAX)?;
    let system_prompt = required_string(&value, "systemPrompt", limits::MAX_PROMPT_CHARS)?;
    let api_key = ApiKey(required_string(
        &value,
        "apiKey",
        crate::engine_keys::MAX_KEY_CHARS,
    )?);
    let schedule_at_ms = match string_field(&value, "scheduleAtUtc", limits::SCHEDULE_AT_MAX)? {
        None => None,
        Some(s) => Some(parse_rfc3339_utc_ms(&s).ok_or_else(|| {
            CodebError::BadRequest(
                "scheduleAtUtc must be ISO-8601 in UTC, e.g. 2026-06-23T12:00:00Z".into(),
            )
        })?),
    };
    Ok(CreateCall {
        phone,
        display_name,
        email,
        system_prompt,
        api_key,
        model: string_field(&value, "model", limits::MODEL_MAX)?,
        voice: string_field(&value, "voice", limits::VOICE_MAX)?
            .unwrap_or_else(|| DEFAULT_VOICE.into()),
        language: string_field(&value, "language", limits::LANGUAGE_MAX)?
            .unwrap_or_else(|| DEFAULT_LANGUAGE.into()),
        max_seconds: int_field(&value, "maxSeconds", limits::MAX_SECONDS)?,
        retries: int_field(&value, "retries", limits::RETRIES)?,
        retry_delay_minutes: int_field(&value, "retryDelayMinutes", limits::RETRY_DELAY_MINUTES)?,
        schedule_at_ms,
    })
}

/// The create answer, fields in the document's order:
/// `{"ok":true,"callId","tenant","whitelistAdded","whitelistError","bridgeReply"}`.
/// voxline keeps no per-number whitelist (admission is the tenant's rate
/// limits and calling window), so the wiring passes `whitelist_added: true`,
/// `whitelist_error: None`; `bridge_reply` is a JSON *text* (a string in the
/// answer, as the document's `"{...}"` shows): the native create answer.
pub fn created_body(
    call_id: &str,
    tenant: &str,
    whitelist_added: bool,
    whitelist_error: Option<&str>,
    bridge_reply: &str,
) -> String {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Created<'a> {
        ok: bool,
        call_id: &'a str,
        tenant: &'a str,
        whitelist_added: bool,
        whitelist_error: Option<&'a str>,
        bridge_reply: &'a str,
    }
    serde_json::to_string(&Created {
        ok: true,
        call_id,
        tenant,
        whitelist_added,
        whitelist_error,
        bridge_reply,
    })
    .unwrap_or_default()
}

// ---------------------------------------------------------------- status words

/// The document's status words. A call is polled "until status is one of
/// ended-success, ended-failed-final, or cancelled".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusWord {
    Scheduled,
    InFlight,
    EndedSuccess,
    EndedFailedFinal,
    Cancelled,
}

impl StatusWord {
    pub const ALL: [StatusWord; 5] = [
        StatusWord::Scheduled,
        StatusWord::InFlight,
        StatusWord::EndedSuccess,
        StatusWord::EndedFailedFinal,
        StatusWord::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StatusWord::Scheduled => "scheduled",
            StatusWord::InFlight => "in-flight",
            StatusWord::EndedSuccess => "ended-success",
            StatusWord::EndedFailedFinal => "ended-failed-final",
            StatusWord::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<StatusWord> {
        StatusWord::ALL.into_iter().find(|w| w.as_str() == s)
    }

    /// A total match. `queued` reads `scheduled` (accepted, not dialled yet:
    /// the document's hangup "cancels a scheduled call"), as does a call
    /// waiting to redial (stored `scheduled`). A terminal failure is final:
    /// a call with redials left is stored `scheduled` again, never terminal.
    pub fn from_native(status: CallStatus) -> StatusWord {
        match status {
            CallStatus::Queued | CallStatus::Scheduled => StatusWord::Scheduled,
            CallStatus::Dialing | CallStatus::Ringing | CallStatus::InProgress => {
                StatusWord::InFlight
            }
            CallStatus::Completed => StatusWord::EndedSuccess,
            CallStatus::Failed | CallStatus::NoAnswer | CallStatus::Busy => {
                StatusWord::EndedFailedFinal
            }
            CallStatus::Cancelled => StatusWord::Cancelled,
        }
    }

    /// The native statuses that read as this word (for the list filter).
    pub fn natives(self) -> impl Iterator<Item = CallStatus> {
        CallStatus::ALL
            .into_iter()
            .filter(move |s| StatusWord::from_native(*s) == self)
    }
}

/// `endedReason`. The document shows one word, `finished` (an answered call
/// that ended normally); the others are ours, in its lowercase-dashed style.
/// A total match over the native reasons.
pub fn ended_reason_word(reason: EndedReason) -> &'static str {
    match reason {
        EndedReason::CalleeHangup | EndedReason::AgentHangup => "finished",
        EndedReason::HangupRequested => "hangup-requested",
        EndedReason::MaxDurationReached => "max-duration",
        EndedReason::NoAnswer => "no-answer",
        EndedReason::Busy => "busy",
        EndedReason::Declined => "declined",
        EndedReason::Rejected => "rejected",
        EndedReason::TrunkError => "trunk-error",
        EndedReason::MediaLost => "media-lost",
        EndedReason::EngineError => "engine-error",
        EndedReason::DispatchUnavailable => "dispatch-unavailable",
        EndedReason::SilenceTimeout => "silence-timeout",
        EndedReason::AnsweringMachine => "answering-machine",
        EndedReason::Transferred => "transferred",
        EndedReason::Voicemail => "voicemail",
        EndedReason::QueueTimeout => "queue-timeout",
    }
}

// ---------------------------------------------------------------- transcripts

/// `.txt` (one line per turn) or `.json` (the structured sidecar).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TranscriptFormat {
    Txt,
    Json,
}

impl TranscriptFormat {
    pub fn extension(self) -> &'static str {
        match self {
            TranscriptFormat::Txt => "txt",
            TranscriptFormat::Json => "json",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            TranscriptFormat::Txt => "text/plain; charset=utf-8",
            TranscriptFormat::Json => "application/json",
        }
    }
}

/// A transcript's file name `outbound-ai-YYYYMMDD-HHMMSS-<callId>.<ext>`,
/// read from a path. Only the shape is checked here: the stamp must equal
/// the call's (see [`transcript_name`]) when the wiring looks it up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TranscriptName<'a> {
    /// `YYYYMMDD-HHMMSS`
    pub stamp: &'a str,
    /// `oac-...`
    pub call_id: &'a str,
    pub format: TranscriptFormat,
}

const TRANSCRIPT_NAME_PREFIX: &str = "outbound-ai-";

impl<'a> TranscriptName<'a> {
    pub fn parse(name: &'a str) -> Option<TranscriptName<'a>> {
        let rest = name.strip_prefix(TRANSCRIPT_NAME_PREFIX)?;
        let (rest, format) = match rest.strip_suffix(".txt") {
            Some(r) => (r, TranscriptFormat::Txt),
            None => (rest.strip_suffix(".json")?, TranscriptFormat::Json),
        };
        let stamp = rest.get(..15)?;
        let b = stamp.as_bytes();
        let stamp_ok = b.iter().enumerate().all(|(i, c)| match i {
            8 => *c == b'-',
            _ => c.is_ascii_digit(),
        });
        let call_id = rest.get(15..)?.strip_prefix('-')?;
        (stamp_ok && native_call_id(call_id).is_some()).then_some(TranscriptName {
            stamp,
            call_id,
            format,
        })
    }
}

/// When a transcript's name is stamped: the (last) dispatch, as the
/// document's example (`dispatchedAtUtc` 12:00:00.000 names `-120000-`); a
/// call never dispatched, its answer, else its end. UTC.
fn name_stamp(dispatched_ms: Option<u64>, answered_ms: Option<u64>, ended_ms: u64) -> String {
    let t = rfc3339_ms(dispatched_ms.or(answered_ms).unwrap_or(ended_ms));
    // `2026-06-23T12:00:00.000Z` -> `20260623-120000`
    let digits: String = t.chars().take(19).filter(char::is_ascii_digit).collect();
    let (date, time) = digits.split_at(digits.len().min(8));
    format!("{date}-{time}")
}

/// `outbound-ai-20260623-120000-oac-0123456789ab.txt`. `call_id` is the CodeB id.
pub fn transcript_name(
    call_id: &str,
    dispatched_ms: Option<u64>,
    answered_ms: Option<u64>,
    ended_ms: u64,
    format: TranscriptFormat,
) -> String {
    format!(
        "{TRANSCRIPT_NAME_PREFIX}{}-{call_id}.{}",
        name_stamp(dispatched_ms, answered_ms, ended_ms),
        format.extension()
    )
}

fn role_label(s: Speaker) -> &'static str {
    match s {
        Speaker::Agent => "AI",
        Speaker::Callee => "USER",
    }
}

/// `hh:mm:ss` UTC of a turn: the sample's `[12:00:06]` for a call answered at
/// 12:00:05.5 is wall-clock time of day (an offset would read `[00:00:00]`),
/// so a turn's time is the answer plus its offset, in UTC, whole seconds.
fn clock(answered_ms: u64, turn: &Turn<'_>) -> String {
    let t = rfc3339_ms(answered_ms.saturating_add(turn.start_ms));
    t.get(11..19).unwrap_or("00:00:00").to_string()
}

/// The plain-text transcript, one line per turn: `[hh:mm:ss] AI: text` and
/// `[hh:mm:ss] USER: text`, each ending in `\n`. A turn's own line breaks
/// are kept (the sample shows a turn continuing on the next line, with no
/// prefix); `\r\n` and `\r` become `\n`.
pub fn transcript_text(call: &EndedCall<'_>) -> String {
    let answered = call.answered_ms.unwrap_or_else(|| call.started_ms());
    let mut out = String::new();
    for turn in &call.turns {
        let text = turn.text.replace("\r\n", "\n").replace('\r', "\n");
        out.push_str(&format!(
            "[{}] {}: {}\n",
            clock(answered, turn),
            role_label(turn.speaker),
            text.trim_end()
        ));
    }
    out
}

/// The JSON sidecar (its shape is not in the document, which names its
/// content: "per-turn timestamps, role labels, and tool-call records"):
/// `{"callId","tenant","turns":[{"role","timestampUtc","offsetMs","text"}],"toolCalls":[]}`.
/// Tool calls are not recorded by our engines, so the list is empty.
pub fn transcript_json(call: &EndedCall<'_>, tenant: &str) -> String {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct TurnOut<'a> {
        role: &'static str,
        timestamp_utc: String,
        offset_ms: u64,
        text: &'a str,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Sidecar<'a> {
        call_id: String,
        tenant: &'a str,
        turns: Vec<TurnOut<'a>>,
        tool_calls: [(); 0],
    }
    let answered = call.answered_ms.unwrap_or_else(|| call.started_ms());
    serde_json::to_string(&Sidecar {
        call_id: codeb_call_id(call.call_id).unwrap_or_default(),
        tenant,
        turns: call
            .turns
            .iter()
            .map(|t| TurnOut {
                role: role_label(t.speaker),
                timestamp_utc: rfc3339_ms(answered.saturating_add(t.start_ms)),
                offset_ms: t.start_ms,
                text: t.text,
            })
            .collect(),
        tool_calls: [],
    })
    .unwrap_or_default()
}

// ---------------------------------------------------------------- call answers and webhooks

/// One call as the webhook's `data` and `GET /api.ashx/v1/calls/{id}` show
/// it, fields in the webhook example's order. The GET answer uses the same
/// names (the document: "status, outcome, transcript path, attempt counter,
/// retry budget"), inside `{"ok":true,"tenant",...}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CallData {
    pub call_id: String,
    pub phone: String,
    pub display_name: String,
    pub status: &'static str,
    pub ended_reason: Option<&'static str>,
    pub duration_sec: u64,
    pub dispatched_at_utc: Option<String>,
    pub answered_at_utc: Option<String>,
    pub ended_at_utc: Option<String>,
    /// The `.txt` name, once the call has ended after being answered.
    pub transcript_path: Option<String>,
    pub attempt: u32,
    pub retries_left: u32,
}

/// `durationSec`: answer to end, rounded to the nearest second (the
/// document's example, 12:00:05.500 to 12:02:30.000, says 145); 0 unanswered.
fn rounded_seconds(answered_ms: Option<u64>, ended_ms: Option<u64>) -> u64 {
    match (answered_ms, ended_ms) {
        (Some(a), Some(e)) => e.saturating_sub(a).saturating_add(500) / 1000,
        _ => 0,
    }
}

/// What the GET and list answers read of a stored call (the wiring builds it
/// from `model::CallRecord`; this module does not import the model, which
/// imports the dialects).
#[derive(Debug, Clone, Copy)]
pub struct StoredCall<'a> {
    pub id: &'a str,
    pub phone: &'a str,
    /// The call's `caller_name` (CodeB's `displayName`; the phone when none).
    pub caller_name: Option<&'a str>,
    pub status: CallStatus,
    pub ended_reason: Option<EndedReason>,
    pub dispatched_at: Option<&'a str>,
    pub answered_at: Option<&'a str>,
    pub ended_at: Option<&'a str>,
    pub attempts: u32,
    pub retries: u32,
}

impl CallData {
    /// From a call that has ended (the webhooks). `displayName` is the
    /// call's `caller_name` (the label the callee was shown), else the phone.
    pub fn from_ended(call: &EndedCall<'_>) -> CallData {
        let call_id = codeb_call_id(call.call_id).unwrap_or_default();
        let transcript_path = call.answered_ms.map(|_| {
            transcript_name(
                &call_id,
                call.dispatched_ms,
                call.answered_ms,
                call.ended_ms,
                TranscriptFormat::Txt,
            )
        });
        CallData {
            phone: call.phone.to_string(),
            display_name: call.caller_name.unwrap_or(call.phone).to_string(),
            status: StatusWord::from_native(call.status).as_str(),
            ended_reason: call.ended_reason.map(ended_reason_word),
            duration_sec: rounded_seconds(call.answered_ms, Some(call.ended_ms)),
            dispatched_at_utc: call.dispatched_ms.map(rfc3339_ms),
            answered_at_utc: call.answered_ms.map(rfc3339_ms),
            ended_at_utc: Some(rfc3339_ms(call.ended_ms)),
            transcript_path,
            attempt: call.attempt,
            retries_left: call.retries_left,
            call_id,
        }
    }

    /// From a stored call, in any status (the GET and list answers).
    pub fn from_record(record: &StoredCall<'_>) -> CallData {
        let ms = |t: Option<&str>| t.and_then(parse_rfc3339_utc_ms);
        let (dispatched, answered) = (ms(record.dispatched_at), ms(record.answered_at));
        let ended = ms(record.ended_at).filter(|_| record.status.is_terminal());
        let call_id = codeb_call_id(record.id).unwrap_or_default();
        let transcript_path = match (answered, ended) {
            (Some(_), Some(end)) => Some(transcript_name(
                &call_id,
                dispatched,
                answered,
                end,
                TranscriptFormat::Txt,
            )),
            _ => None,
        };
        CallData {
            phone: record.phone.to_string(),
            display_name: record.caller_name.unwrap_or(record.phone).to_string(),
            status: StatusWord::from_native(record.status).as_str(),
            ended_reason: record.ended_reason.map(ended_reason_word),
            duration_sec: rounded_seconds(answered, ended),
            dispatched_at_utc: dispatched.map(rfc3339_ms),
            answered_at_utc: answered.map(rfc3339_ms),
            ended_at_utc: ended.map(rfc3339_ms),
            transcript_path,
            attempt: record.attempts,
            retries_left: record
                .retries
                .saturating_sub(record.attempts.saturating_sub(1)),
            call_id,
        }
    }
}

/// `GET /api.ashx/v1/calls/{id}`: `{"ok":true,"tenant","call":{CallData}}`.
pub fn call_body(record: &StoredCall<'_>, tenant: &str) -> String {
    #[derive(Serialize)]
    struct One<'a> {
        ok: bool,
        tenant: &'a str,
        call: CallData,
    }
    serde_json::to_string(&One {
        ok: true,
        tenant,
        call: CallData::from_record(record),
    })
    .unwrap_or_default()
}

/// The hangup answer (idempotent: the same for a call already ended):
/// `{"ok":true,"callId","status"}` with the call's status after the request.
pub fn hangup_body(call_id: &str, status: CallStatus) -> String {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct HungUp<'a> {
        ok: bool,
        call_id: &'a str,
        status: &'static str,
    }
    serde_json::to_string(&HungUp {
        ok: true,
        call_id,
        status: StatusWord::from_native(status).as_str(),
    })
    .unwrap_or_default()
}

pub const LIST_DEFAULT_LIMIT: u32 = 50;
pub const LIST_MAX_LIMIT: u32 = 200;
/// Deepest `offset` served (offset paging reads and skips that many).
pub const LIST_MAX_OFFSET: u32 = 10_000;
const MAX_QUERY_BYTES: usize = 1024;

/// `GET /api.ashx/v1/calls?status=scheduled,in-flight&limit=50&offset=0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    /// Empty: every status.
    pub statuses: Vec<StatusWord>,
    pub limit: u32,
    pub offset: u32,
}

/// Reads the list query (without the `?`); unknown parameters are ignored,
/// an unknown status word or a number out of range is 400.
pub fn read_list_query(query: &str) -> Result<ListQuery, CodebError> {
    if query.len() > MAX_QUERY_BYTES {
        return Err(CodebError::BadRequest("The query is too long".into()));
    }
    let mut q = ListQuery {
        statuses: vec![],
        limit: LIST_DEFAULT_LIMIT,
        offset: 0,
    };
    let number = |name: &str, v: &str, min: u32, max: u32| {
        v.parse::<u32>()
            .ok()
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(|| {
                CodebError::BadRequest(format!("{name} must be an integer from {min} to {max}"))
            })
    };
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        match name.as_ref() {
            "status" => {
                for word in value.split(',').map(str::trim).filter(|w| !w.is_empty()) {
                    let w = StatusWord::parse(word).ok_or_else(|| {
                        CodebError::BadRequest(format!("status {word:?} is not a status"))
                    })?;
                    if !q.statuses.contains(&w) {
                        q.statuses.push(w);
                    }
                }
            }
            "limit" => q.limit = number("limit", &value, 1, LIST_MAX_LIMIT)?,
            "offset" => q.offset = number("offset", &value, 0, LIST_MAX_OFFSET)?,
            _ => {}
        }
    }
    Ok(q)
}

/// The list answer: `{"ok":true,"tenant","calls":[CallData...],"limit","offset"}`.
pub fn list_body(records: &[StoredCall<'_>], tenant: &str, query: &ListQuery) -> String {
    #[derive(Serialize)]
    struct Page<'a> {
        ok: bool,
        tenant: &'a str,
        calls: Vec<CallData>,
        limit: u32,
        offset: u32,
    }
    serde_json::to_string(&Page {
        ok: true,
        tenant,
        calls: records.iter().map(CallData::from_record).collect(),
        limit: query.limit,
        offset: query.offset,
    })
    .unwrap_or_default()
}

#[derive(Serialize)]
struct Envelope<'a, D: Serialize> {
    #[serde(rename = "type")]
    kind: &'static str,
    tenant: &'a str,
    timestamp: String,
    data: D,
}

/// `outbound-ai.finished`: `{"type","tenant","timestamp","data":{CallData}}`
/// exactly in the document's order; `timestamp` is when the body was
/// rendered (ms, `Z`). Sent for every ended call.
pub fn finished_body(call: &EndedCall<'_>, tenant: &str, now_ms: u64) -> String {
    serde_json::to_string(&Envelope {
        kind: EVENT_FINISHED,
        tenant,
        timestamp: rfc3339_ms(now_ms),
        data: CallData::from_ended(call),
    })
    .unwrap_or_default()
}

/// `transcript.saved` (the document: "with the path"; its data is not shown):
/// `data` = `{"callId","transcriptPath","jsonPath","turns"}`. `None` for a
/// call never answered (no transcript: the document sends it only "if
/// recording or transcription was enabled", and there is nothing to save).
pub fn transcript_saved_body(call: &EndedCall<'_>, tenant: &str, now_ms: u64) -> Option<String> {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Saved {
        call_id: String,
        transcript_path: String,
        json_path: String,
        turns: usize,
    }
    call.answered_ms?;
    let call_id = codeb_call_id(call.call_id)?;
    let name = |format| {
        transcript_name(
            &call_id,
            call.dispatched_ms,
            call.answered_ms,
            call.ended_ms,
            format,
        )
    };
    serde_json::to_string(&Envelope {
        kind: EVENT_TRANSCRIPT_SAVED,
        tenant,
        timestamp: rfc3339_ms(now_ms),
        data: Saved {
            transcript_path: name(TranscriptFormat::Txt),
            json_path: name(TranscriptFormat::Json),
            turns: call.turns.len(),
            call_id,
        },
    })
    .ok()
}

/// `X-CodeB-Signature`: hex HMAC-SHA256 of the raw body with the
/// subscription secret (its UTF-8 bytes), as the document's verifiers compute it.
pub fn signature(subscription_secret: &[u8], body: &[u8]) -> String {
    super::post_call::hex_hmac_sha256(subscription_secret, body)
}

/// The native create-call fields a CodeB request is written into, and the
/// request's names for them (refusals name what the client sent).
const FIELD_NAMES: [(&str, &str); 9] = [
    ("retry_delay_minutes", "retryDelayMinutes"),
    ("engine_api_key", "apiKey"),
    ("system_prompt", "systemPrompt"),
    ("transcript_email", "email"),
    ("max_seconds", "maxSeconds"),
    ("caller_name", "displayName"),
    ("schedule_at", "scheduleAtUtc"),
    // Last: a prefix of nothing above, a word of its own.
    ("retries", "retries"),
    ("language", "language"),
];

/// A native refusal's message with the native field names written as
/// CodeB's (`schedule_at must be in the future` -> `scheduleAtUtc ...`).
pub fn codeb_field_names(message: &str) -> String {
    FIELD_NAMES
        .iter()
        .fold(message.to_string(), |m, (native, codeb)| {
            m.replace(native, codeb)
        })
}

impl std::fmt::Display for TranscriptName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{TRANSCRIPT_NAME_PREFIX}{}-{}.{}",
            self.stamp,
            self.call_id,
            self.format.extension()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialects::post_call::test_call;

    const NATIVE: &str = "call_0123456789ab";
    const CODEB: &str = "oac-0123456789ab";
    const TENANT: &str = "phone.yourtenant.com";
    /// The document's webhook example: dispatched 2026-06-23T12:00:00.000Z,
    /// answered 12:00:05.500, ended 12:02:30.000.
    const DISPATCHED: u64 = 1_782_216_000_000;

    fn documents_call() -> EndedCall<'static> {
        EndedCall {
            call_id: NATIVE,
            phone: "+4915157610183",
            caller_name: Some("Reminder"),
            ended_reason: Some(EndedReason::CalleeHangup),
            attempt: 1,
            retries_left: 1,
            dispatched_ms: Some(DISPATCHED),
            answered_ms: Some(DISPATCHED + 5_500),
            ended_ms: DISPATCHED + 150_000,
            turns: vec![
                Turn {
                    speaker: Speaker::Agent,
                    text: "Hello, this is your reminder service. Am I speaking with Alex?",
                    start_ms: 500,
                },
                Turn {
                    speaker: Speaker::Callee,
                    text: "Yes, this is Alex.",
                    start_ms: 3_600,
                },
                Turn {
                    speaker: Speaker::Agent,
                    text: "Just a quick reminder about your dentist appointment tomorrow at 14:00.\r\nWill you still be able to make it?",
                    start_ms: 5_600,
                },
            ],
            ..test_call::ended(None)
        }
    }

    #[test]
    fn routes_match_the_documents_paths_and_nothing_else() {
        use Operation::*;
        let op = |m, p| {
            route(m, p).and_then(|r| match r {
                Routed::Operation(op) => Some(op),
                _ => None,
            })
        };
        assert_eq!(op("POST", "/oidc.ashx/token"), Some(Token));
        assert_eq!(op("POST", "/api.ashx/v1/calls"), Some(CreateCall));
        assert_eq!(op("GET", "/api.ashx/v1/calls"), Some(ListCalls));
        assert_eq!(
            op("GET", "/api.ashx/v1/calls/oac-0123456789ab"),
            Some(GetCall { call_id: CODEB })
        );
        assert_eq!(
            op("POST", "/api.ashx/v1/calls/oac-0123456789ab/hangup"),
            Some(Hangup { call_id: CODEB })
        );
        let name = "outbound-ai-20260623-120000-oac-0123456789ab.txt";
        assert_eq!(
            op("GET", &format!("/api.ashx/v1/transcripts/{name}")),
            Some(Transcript {
                name: TranscriptName {
                    stamp: "20260623-120000",
                    call_id: CODEB,
                    format: TranscriptFormat::Txt
                }
            })
        );
        assert_eq!(
            route("GET", "/oidc.ashx/token"),
            Some(Routed::MethodNotAllowed { allow: "POST" })
        );
        assert_eq!(
            route("DELETE", "/api.ashx/v1/calls"),
            Some(Routed::MethodNotAllowed { allow: "GET, POST" })
        );
        for hostile in [
            "/api.ashx/v1/calls/",
            "/api.ashx/v1/calls/oac-XYZ",
            "/api.ashx/v1/calls/call_0123456789ab",
            "/api.ashx/v1/calls/oac-0123456789ab/hangup/x",
            "/api.ashx/v1/calls/oac-0123456789ab/../x",
            "/api.ashx/v1/transcripts/outbound-ai-2026062-120000-oac-0123456789ab.txt",
            "/api.ashx/v1/transcripts/outbound-ai-20260623-120000-oac-0123456789ab.pdf",
            "/api.ashx/v1/transcripts/outbound-ai-20260623-120000-oac-0123456789ab",
            "/api.ashx/v1/transcripts/outbound-ai-20260623-12é000-oac-0123456789ab.txt",
            "/api.ashx/v1/transcripts/../../etc/passwd",
            "/api.ashx/v1/transcripts/",
            "/oidc.ashx/token/",
        ] {
            assert_eq!(route("GET", hostile), Some(Routed::NotFound), "{hostile}");
        }
        let long = format!("/api.ashx/v1/calls/oac-{}", "a".repeat(10_000));
        assert_eq!(route("GET", &long), Some(Routed::NotFound));
        // Not CodeB's: the native router decides (and knows none of CodeB's paths).
        assert_eq!(route("GET", "/v1/calls/call_0123456789ab"), None);
        for path in [
            TOKEN_PATH,
            CALLS_PATH,
            "/api.ashx/v1/calls/oac-0123456789ab",
        ] {
            assert!(matches!(
                crate::api::router::route("GET", path),
                crate::api::router::Match::NotFound
            ));
        }
    }

    #[test]
    fn call_ids_map_both_ways() {
        assert_eq!(codeb_call_id(NATIVE).as_deref(), Some(CODEB));
        assert_eq!(native_call_id(CODEB).as_deref(), Some(NATIVE));
        for bad in [
            "oac-",
            "oac-0123",
            "oac-0123456789AB",
            "oac_0123456789ab",
            "call_0123456789ab",
        ] {
            assert_eq!(native_call_id(bad), None, "{bad}");
        }
        assert_eq!(codeb_call_id("call_1"), None);
    }

    #[test]
    fn token_request_as_the_documents_curl_sends_it() {
        let form = Some("application/x-www-form-urlencoded");
        let got = read_token_request(
            form,
            b"grant_type=password&username=alice&password=YOUR_PASSWORD&scope=openid",
        )
        .unwrap();
        assert_eq!(got.username, "alice");
        assert_eq!(got.password.expose(), "YOUR_PASSWORD");
        assert_eq!(got.scope.as_deref(), Some("openid"));
        assert!(!format!("{got:?}").contains("YOUR_PASSWORD"));
        // URLSearchParams encodes; charset parameters and unknown fields are fine.
        let got = read_token_request(
            Some("Application/X-WWW-Form-URLEncoded; charset=UTF-8"),
            b"grant_type=password&username=a%40b.example&password=p%26w+d&client_id=x",
        )
        .unwrap();
        assert_eq!(
            (got.username.as_str(), got.password.expose()),
            ("a@b.example", "p&w d")
        );
        assert_eq!(got.scope, None);

        for (ct, body, want) in [
            (Some("application/json"), &b"{}"[..], "invalid_request"),
            (None, b"grant_type=password", "invalid_request"),
            (form, b"username=a&password=b", "invalid_request"),
            (
                form,
                b"grant_type=client_credentials&username=a&password=b",
                "unsupported_grant_type",
            ),
            (form, b"grant_type=password&password=b", "invalid_request"),
            (
                form,
                b"grant_type=password&username=a&password=",
                "invalid_request",
            ),
            (
                form,
                b"grant_type=password&username=a&username=b&password=c",
                "invalid_request",
            ),
        ] {
            let err = read_token_request(ct, body).unwrap_err();
            assert_eq!((err.status(), err.parts().1), (400, want), "{body:?}");
        }
        let big = vec![b'a'; MAX_TOKEN_BODY_BYTES + 1];
        assert!(matches!(
            read_token_request(form, &big),
            Err(TokenError::InvalidRequest(_))
        ));
    }

    #[test]
    fn token_answers_are_rfc_6749_shaped() {
        assert_eq!(
            token_body("tok", Some("openid")),
            r#"{"access_token":"tok","token_type":"Bearer","expires_in":3600,"scope":"openid"}"#
        );
        assert_eq!(
            token_body("tok", None),
            r#"{"access_token":"tok","token_type":"Bearer","expires_in":3600}"#
        );
        assert_eq!(
            TokenError::InvalidGrant.body(),
            r#"{"error":"invalid_grant","error_description":"Invalid username or password"}"#
        );
        assert_eq!(TokenError::InvalidGrant.status(), 400);
        assert_eq!(
            TokenError::SlowDown {
                retry_after_seconds: 5
            }
            .status(),
            429
        );
        assert_eq!(TokenError::ServerError.parts().1, "server_error");
    }

    const DOCUMENTS_BODY: &[u8] = br#"{ "phone": "+4915157610183", "displayName": "Reminder", "email": "ops@yourcompany.example", "systemPrompt": "You are calling Alex to confirm the dentist appointment tomorrow at 14:00. Be brief and warm. If they answer YES, say goodbye. If NO, offer to reschedule for the same time next week.", "apiKey": "YOUR_AI_API_KEY", "voice": "Aoede", "language": "en-US", "maxSeconds": 180, "retries": 2, "retryDelayMinutes": 10 }"#;

    #[test]
    fn create_call_as_the_documents_curl_sends_it() {
        let c = read_create_call(DOCUMENTS_BODY).unwrap();
        assert_eq!(c.phone, "+4915157610183");
        assert_eq!(c.display_name, "Reminder");
        assert_eq!(c.email, "ops@yourcompany.example");
        assert_eq!(c.api_key.expose(), "YOUR_AI_API_KEY");
        assert_eq!((c.voice.as_str(), c.language.as_str()), ("Aoede", "en-US"));
        assert_eq!(
            (c.max_seconds, c.retries, c.retry_delay_minutes),
            (180, 2, 10)
        );
        assert_eq!((c.model.as_deref(), c.schedule_at_ms), (None, None));
        assert_eq!(c.prompt_slug(), None);
        let debug = format!("{c:?}");
        assert!(!debug.contains("YOUR_AI_API_KEY"), "{debug}");
        assert!(debug.contains("ApiKey(<redacted>)"));

        // Defaults, normalisation, a slug, a schedule, unknown fields ignored.
        let c = read_create_call(
            br#"{"phone":"0049 151 5761-0183","email":"a@b.example","systemPrompt":"reminder",
                "apiKey":"k","scheduleAtUtc":"2026-06-23T12:00:00Z","crmId":7}"#,
        )
        .unwrap();
        assert_eq!(
            (c.phone.as_str(), c.display_name.as_str()),
            ("+4915157610183", "+4915157610183")
        );
        assert_eq!(
            (c.voice.as_str(), c.language.as_str()),
            (DEFAULT_VOICE, DEFAULT_LANGUAGE)
        );
        assert_eq!(
            (c.max_seconds, c.retries, c.retry_delay_minutes),
            (300, 0, 5)
        );
        assert_eq!(c.prompt_slug(), Some("reminder"));
        assert_eq!(c.schedule_at_ms, Some(DISPATCHED));
    }

    #[test]
    fn bad_create_bodies_are_400_naming_the_field() {
        let base =
            r#""phone":"+4915157610183","email":"a@b.example","systemPrompt":"p","apiKey":"k""#;
        let with = |extra: &str| format!("{{{base}{extra}}}");
        for (body, needle) in [
            (
                r#"{"email":"a@b.example","systemPrompt":"p","apiKey":"k"}"#.to_string(),
                "phone is required",
            ),
            (
                r#"{"phone":"+4915157610183","systemPrompt":"p","apiKey":"k"}"#.into(),
                "email is required",
            ),
            (
                r#"{"phone":"+4915157610183","email":"a@b.example","apiKey":"k"}"#.into(),
                "systemPrompt is required",
            ),
            (
                r#"{"phone":"+4915157610183","email":"a@b.example","systemPrompt":"p"}"#.into(),
                "apiKey is required",
            ),
            (
                r#"{"phone":"015157610183","email":"a@b.example","systemPrompt":"p","apiKey":"k"}"#
                    .into(),
                "phone must be E.164",
            ),
            (
                with(r#","maxSeconds":9"#),
                "maxSeconds must be between 10 and 3600",
            ),
            (
                with(r#","maxSeconds":3601"#),
                "maxSeconds must be between 10 and 3600",
            ),
            (with(r#","retries":11"#), "retries must be between 0 and 10"),
            (
                with(r#","retryDelayMinutes":0"#),
                "retryDelayMinutes must be between 1 and 1440",
            ),
            (
                with(r#","maxSeconds":"180""#),
                "maxSeconds must be an integer",
            ),
            (
                with(r#","maxSeconds":1e99"#),
                "maxSeconds must be an integer",
            ),
            (
                with(r#","scheduleAtUtc":"2026-06-23T14:00:00+02:00""#),
                "scheduleAtUtc must be ISO-8601",
            ),
            (with(r#","voice":7"#), "voice must be a string"),
            (
                with(r#","displayName":"Re\r\nminder""#),
                "displayName must not contain control characters",
            ),
            (
                with(&format!(r#","displayName":"{}""#, "n".repeat(65))),
                "displayName",
            ),
            ("[1]".into(), "JSON object"),
            ("{".into(), "not valid JSON"),
        ] {
            let err = read_create_call(body.as_bytes()).unwrap_err();
            assert_eq!(err.status(), 400);
            assert!(err.parts().2.contains(needle), "{err:?} for {body}");
        }
        assert!(read_create_call(with("").as_bytes()).is_ok());
        let big = vec![b' '; MAX_CREATE_BODY_BYTES + 1];
        assert_eq!(read_create_call(&big).unwrap_err().status(), 400);
        assert_eq!(
            CodebError::Unauthorized.body(),
            r#"{"ok":false,"error":"unauthorized","message":"Missing or invalid bearer token"}"#
        );
        assert_eq!(
            CodebError::Unauthorized.headers(),
            vec![("WWW-Authenticate", "Bearer".into())]
        );
        let limited = CodebError::from(&super::super::Refusal::RateLimited {
            retry_after_seconds: 3,
        });
        assert_eq!(
            (limited.status(), limited.headers()),
            (429, vec![("Retry-After", "3".into())])
        );
    }

    #[test]
    fn created_answer_is_the_documents_in_its_order() {
        assert_eq!(
            created_body(CODEB, TENANT, true, None, "{...}"),
            r#"{"ok":true,"callId":"oac-0123456789ab","tenant":"phone.yourtenant.com","whitelistAdded":true,"whitelistError":null,"bridgeReply":"{...}"}"#
        );
    }

    #[test]
    fn every_native_status_has_one_document_word() {
        use CallStatus as C;
        let words: Vec<_> = C::ALL
            .into_iter()
            .map(|s| StatusWord::from_native(s).as_str())
            .collect();
        assert_eq!(
            words,
            [
                "scheduled",
                "scheduled",
                "in-flight",
                "in-flight",
                "in-flight",
                "ended-success",
                "ended-failed-final",
                "ended-failed-final",
                "ended-failed-final",
                "cancelled"
            ]
        );
        for w in StatusWord::ALL {
            assert_eq!(StatusWord::parse(w.as_str()), Some(w));
            assert!(w.natives().count() >= 1);
            // The document's poll-until set is exactly the terminal natives.
            let ends = matches!(
                w,
                StatusWord::EndedSuccess | StatusWord::EndedFailedFinal | StatusWord::Cancelled
            );
            assert!(w.natives().all(|s| s.is_terminal() == ends), "{w:?}");
        }
        assert_eq!(ended_reason_word(EndedReason::CalleeHangup), "finished");
        assert_eq!(ended_reason_word(EndedReason::NoAnswer), "no-answer");
    }

    #[test]
    fn transcript_name_and_lines_as_the_document_shows() {
        let call = documents_call();
        assert_eq!(
            transcript_name(
                CODEB,
                call.dispatched_ms,
                call.answered_ms,
                call.ended_ms,
                TranscriptFormat::Txt
            ),
            "outbound-ai-20260623-120000-oac-0123456789ab.txt"
        );
        assert_eq!(
            transcript_name(
                CODEB,
                None,
                None,
                DISPATCHED + 1_000,
                TranscriptFormat::Json
            ),
            "outbound-ai-20260623-120001-oac-0123456789ab.json"
        );
        // Wall-clock UTC: answered 12:00:05.500, first turn 0.5 s later.
        assert_eq!(
            transcript_text(&call),
            concat!(
                "[12:00:06] AI: Hello, this is your reminder service. Am I speaking with Alex?\n",
                "[12:00:09] USER: Yes, this is Alex.\n",
                "[12:00:11] AI: Just a quick reminder about your dentist appointment tomorrow at 14:00.\n",
                "Will you still be able to make it?\n",
            )
        );
        let json: Value = serde_json::from_str(&transcript_json(&call, TENANT)).unwrap();
        assert_eq!(json["callId"], CODEB);
        assert_eq!(json["turns"][1]["role"], "USER");
        assert_eq!(json["turns"][1]["timestampUtc"], "2026-06-23T12:00:09.100Z");
        assert_eq!(json["toolCalls"], serde_json::json!([]));
    }

    #[test]
    fn finished_webhook_is_the_documents_example() {
        let body = finished_body(&documents_call(), TENANT, DISPATCHED + 151_000);
        assert_eq!(
            body,
            concat!(
                r#"{"type":"outbound-ai.finished","tenant":"phone.yourtenant.com","timestamp":"2026-06-23T12:02:31.000Z","data":{"#,
                r#""callId":"oac-0123456789ab","phone":"+4915157610183","displayName":"Reminder","status":"ended-success","#,
                r#""endedReason":"finished","durationSec":145,"dispatchedAtUtc":"2026-06-23T12:00:00.000Z","#,
                r#""answeredAtUtc":"2026-06-23T12:00:05.500Z","endedAtUtc":"2026-06-23T12:02:30.000Z","#,
                r#""transcriptPath":"outbound-ai-20260623-120000-oac-0123456789ab.txt","attempt":1,"retriesLeft":1}}"#
            )
        );
        // The document's verifier: hmac.new(secret, raw_body, sha256).hexdigest().
        // python3 -c 'import hmac,hashlib;print(hmac.new(b"whsec_test",b"{}",hashlib.sha256).hexdigest())'
        assert_eq!(
            signature(b"whsec_test", b"{}"),
            "46bdc2a2e83964bd2695acc6a1f97162d8bafc135a071aa5cd5c99aae5481440"
        );
        let saved = transcript_saved_body(&documents_call(), TENANT, DISPATCHED + 151_000).unwrap();
        assert_eq!(
            saved,
            concat!(
                r#"{"type":"transcript.saved","tenant":"phone.yourtenant.com","timestamp":"2026-06-23T12:02:31.000Z","data":{"#,
                r#""callId":"oac-0123456789ab","transcriptPath":"outbound-ai-20260623-120000-oac-0123456789ab.txt","#,
                r#""jsonPath":"outbound-ai-20260623-120000-oac-0123456789ab.json","turns":3}}"#
            )
        );
        let unanswered = EndedCall {
            answered_ms: None,
            status: CallStatus::NoAnswer,
            ended_reason: Some(EndedReason::NoAnswer),
            ..documents_call()
        };
        assert_eq!(transcript_saved_body(&unanswered, TENANT, 0), None);
        let body = finished_body(&unanswered, TENANT, 0);
        assert!(
            body.contains(
                r#""status":"ended-failed-final","endedReason":"no-answer","durationSec":0"#
            ),
            "{body}"
        );
        assert!(
            body.contains(r#""answeredAtUtc":null"#) && body.contains(r#""transcriptPath":null"#),
            "{body}"
        );
    }

    #[test]
    fn get_and_list_answers_read_the_record() {
        let mut r = crate::model::test_call(CallStatus::InProgress);
        r.id = NATIVE.into();
        r.retries = 2;
        r.attempts = 1;
        r.dispatched_at = Some("2026-06-23T12:00:00Z".into());
        r.answered_at = Some("2026-06-23T12:00:05.5Z".into());
        fn view(r: &crate::model::CallRecord) -> StoredCall<'_> {
            StoredCall {
                id: &r.id,
                phone: &r.phone,
                caller_name: r.caller_name.as_deref(),
                status: r.status,
                ended_reason: r.ended_reason,
                dispatched_at: r.dispatched_at.as_deref(),
                answered_at: r.answered_at.as_deref(),
                ended_at: r.ended_at.as_deref(),
                attempts: r.attempts,
                retries: r.retries,
            }
        }
        let live = CallData::from_record(&view(&r));
        assert_eq!(
            (live.status, live.duration_sec, live.retries_left),
            ("in-flight", 0, 2)
        );
        assert_eq!((live.ended_at_utc, live.transcript_path), (None, None));
        assert_eq!(live.display_name, r.phone);
        r.caller_name = Some("Reminder".into());
        assert_eq!(CallData::from_record(&view(&r)).display_name, "Reminder");
        r.status = CallStatus::Completed;
        r.ended_at = Some("2026-06-23T12:02:30Z".into());
        r.ended_reason = Some(EndedReason::AgentHangup);
        let body: Value = serde_json::from_str(&call_body(&view(&r), TENANT)).unwrap();
        assert_eq!(body["ok"], true);
        assert_eq!(body["call"]["callId"], CODEB);
        assert_eq!(body["call"]["status"], "ended-success");
        assert_eq!(body["call"]["durationSec"], 145);
        assert_eq!(body["call"]["answeredAtUtc"], "2026-06-23T12:00:05.500Z");
        assert_eq!(
            body["call"]["transcriptPath"],
            "outbound-ai-20260623-120000-oac-0123456789ab.txt"
        );
        assert_eq!(
            hangup_body(CODEB, CallStatus::Cancelled),
            r#"{"ok":true,"callId":"oac-0123456789ab","status":"cancelled"}"#
        );

        let q =
            read_list_query("status=scheduled,in-flight,scheduled&limit=10&offset=20&x=1").unwrap();
        assert_eq!(q.statuses, [StatusWord::Scheduled, StatusWord::InFlight]);
        assert_eq!((q.limit, q.offset), (10, 20));
        assert_eq!(read_list_query("").unwrap().limit, LIST_DEFAULT_LIMIT);
        for bad in [
            "status=done",
            "limit=0",
            "limit=201",
            "offset=-1",
            "offset=99999999999",
        ] {
            assert_eq!(read_list_query(bad).unwrap_err().status(), 400, "{bad}");
        }
        let page: Value = serde_json::from_str(&list_body(&[view(&r)], TENANT, &q)).unwrap();
        assert_eq!(page["calls"][0]["callId"], CODEB);
        assert_eq!(
            (page["limit"].as_u64(), page["offset"].as_u64()),
            (Some(10), Some(20))
        );
    }
}

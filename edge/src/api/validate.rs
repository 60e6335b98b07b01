//! Validation of request bodies into typed inputs. Pure: time comes in as
//! `now_ms`, nothing touches storage.

use crate::api::fields::{parse_object, Fields};
use crate::error::{ApiError, ErrorCode};
use crate::ids::{parse_rfc3339_utc_ms, rfc3339_ms};
use crate::limits::{
    AGENT_NAME_MAX, AMD_MESSAGE_MAX, CALLER_NAME_MAX, CALL_NAME_MAX, EMAIL_MAX, ID_FIELD_MAX,
    LANGUAGE_MAX, MAX_BODY_BYTES, MAX_METADATA_BYTES, MAX_PROMPT_CHARS, MAX_SCHEDULE_AHEAD_DAYS,
    MAX_SECONDS, MODEL_MAX, RETRIES, RETRY_DELAY_MINUTES, SCHEDULE_AT_MAX, SILENCE_TIMEOUT_SECONDS,
    VOICE_MAX,
};
use crate::model::{Engine, Metadata};
use serde_json::Value;
use voxline_shared::analysis::AnalysisPlan;
use voxline_shared::sidecar_link::{AmdMode, FirstSpeaker};

pub const CREATE_CALL_FIELDS: &[&str] = &[
    "phone",
    "name",
    "caller_name",
    "caller_number",
    "email",
    "transcript_email",
    "metadata",
    "agent_id",
    "system_prompt",
    "voice",
    "language",
    "model",
    "max_seconds",
    "retries",
    "retry_delay_minutes",
    "schedule_at",
    "record",
    "on_concurrency_limit",
    "outside_window",
    "engine_api_key",
    "engine_base_url",
    "silence_timeout_seconds",
    "variables",
    "amd",
    "amd_message",
    "from_extension",
];
/// The fields that set up a call's agent and engine: a person's call
/// (`from_extension`, issue 16) has neither, and is refused them (422
/// `invalid_value` naming the field) rather than have them ignored.
pub const AGENT_CALL_FIELDS: &[&str] = &[
    "agent_id",
    "system_prompt",
    "voice",
    "language",
    "model",
    "outside_window",
    "engine_api_key",
    "engine_base_url",
    "silence_timeout_seconds",
    "variables",
    "amd",
    "amd_message",
];
/// `on_concurrency_limit`: wait in the queue (default) or be refused with 429.
pub const ON_CONCURRENCY_LIMIT: [&str; 2] = ["queue", "reject"];
/// `outside_window`: move to the next window start (default) or be refused with 422.
pub const OUTSIDE_WINDOW: [&str; 2] = ["schedule", "reject"];

#[derive(Debug, Clone, PartialEq)]
pub struct CreateCallInput {
    pub phone: String,
    pub name: Option<String>,
    /// The caller-ID label the callee is shown (SIP From display-name).
    pub caller_name: Option<String>,
    /// The caller ID number the callee is shown (SIP From user), over the
    /// trunk's: E.164 here; that it is one of the tenant's active numbers is
    /// the handler's check (it needs storage).
    pub caller_number: Option<String>,
    pub email: Option<String>,
    /// Where the transcript is emailed when the call ends (see `mail`).
    pub transcript_email: Option<String>,
    /// The client's JSON text (see `model::Metadata`).
    pub metadata: Option<Metadata>,
    pub agent_id: Option<String>,
    pub system_prompt: Option<String>,
    pub voice: Option<String>,
    pub language: Option<String>,
    pub model: Option<String>,
    pub max_seconds: u32,
    pub retries: u32,
    pub retry_delay_minutes: u32,
    /// Normalised RFC 3339 (ms, `Z`) when given.
    pub schedule_at: Option<String>,
    /// Keep a stereo WAV recording of the call.
    pub record: bool,
    /// `on_concurrency_limit: reject`.
    pub reject_over_cap: bool,
    /// `outside_window: reject`.
    pub reject_outside_window: bool,
    /// This call's engine API key (clear; sealed before it is stored).
    pub engine_api_key: Option<String>,
    /// Not yet checked against the SSRF rules (the service knows the mode).
    pub engine_base_url: Option<String>,
    pub silence_timeout_seconds: Option<u32>,
    /// The call's own prompt variables (`{{KEY}}`), in the order given.
    pub variables: Vec<(String, String)>,
    /// Answering-machine detection (None: the agent's).
    pub amd: Option<AmdMode>,
    /// `leave_message`'s words (None: the agent's).
    pub amd_message: Option<String>,
    /// A person's call (issue 16, click-to-call): the extension of the
    /// directory person whose phones ring first; then no agent is involved.
    pub from_extension: Option<String>,
}

/// An optional `RateLimit` field (`{limit, window_seconds}`); out of range: 422 naming the part.
fn rate_limit_opt(f: &Fields, name: &str) -> Result<Option<crate::traffic::RateLimit>, ApiError> {
    match f.object_opt(name)? {
        None => Ok(None),
        Some(m) => crate::traffic::parse_rate_limit(&Value::Object(m), name)
            .map(Some)
            .map_err(|(field, why)| ApiError::field(ErrorCode::InvalidValue, &field, why)),
    }
}

/// `engine_api_key`: printable ASCII, at most 512 characters.
fn engine_key(f: &Fields) -> Result<Option<String>, ApiError> {
    let key = f.str_opt("engine_api_key", crate::engine_keys::MAX_KEY_CHARS)?;
    if let Some(k) = &key {
        crate::engine_keys::check_key(k).map_err(|why| {
            ApiError::field(
                ErrorCode::InvalidValue,
                "engine_api_key",
                format!("engine_api_key {why}"),
            )
        })?;
    }
    Ok(key)
}

/// An optional string field with a fixed vocabulary; `Some(true)` when it is `choices[1]`.
fn second_choice(f: &Fields, name: &str, choices: [&str; 2]) -> Result<bool, ApiError> {
    match f.str_opt(name, 32)?.as_deref() {
        None => Ok(false),
        Some(v) if v == choices[0] => Ok(false),
        Some(v) if v == choices[1] => Ok(true),
        Some(_) => Err(ApiError::field(
            ErrorCode::InvalidValue,
            name,
            format!("'{name}' must be '{}' or '{}'", choices[0], choices[1]),
        )),
    }
}

pub fn create_call(
    content_type: Option<&str>,
    body: &[u8],
    now_ms: u64,
) -> Result<CreateCallInput, ApiError> {
    let f = parse_object(content_type, body, MAX_BODY_BYTES, CREATE_CALL_FIELDS)?;
    let phone = f.str_req("phone", 32)?;
    check_e164("phone", &phone)?;
    let email = f.str_opt("email", EMAIL_MAX)?;
    if let Some(e) = &email {
        check_email(e)?;
    }
    let transcript_email = f.str_opt("transcript_email", EMAIL_MAX)?;
    if let Some(e) = &transcript_email {
        check_transcript_email(e)?;
    }
    let metadata = metadata(&f, body)?;
    let agent_id = f.str_opt("agent_id", ID_FIELD_MAX)?;
    if let Some(a) = &agent_id {
        if !crate::ids::is_id(a, "agt") {
            return Err(ApiError::field(
                ErrorCode::UnknownAgent,
                "agent_id",
                format!("no agent '{a}'"),
            ));
        }
    }
    let schedule_at = match f.str_opt("schedule_at", SCHEDULE_AT_MAX)? {
        None => None,
        Some(s) => {
            let at = match parse_rfc3339_utc_ms(&s) {
                Some(at) => at,
                // Well-formed UTC but before 1970 (no unix ms): simply in the past.
                None if crate::ids::is_rfc3339_utc_before_epoch(&s) => 0,
                None => {
                    return Err(ApiError::field(
                        ErrorCode::InvalidTimestamp,
                        "schedule_at",
                        "schedule_at must be RFC 3339 in UTC, e.g. 2026-01-02T15:04:05Z",
                    ))
                }
            };
            if at <= now_ms {
                return Err(ApiError::field(
                    ErrorCode::ScheduleInPast,
                    "schedule_at",
                    format!(
                        "schedule_at {s} is not in the future (now is {})",
                        rfc3339_ms(now_ms)
                    ),
                ));
            }
            if at - now_ms > MAX_SCHEDULE_AHEAD_DAYS * 86_400_000 {
                return Err(ApiError::field(
                    ErrorCode::OutOfRange,
                    "schedule_at",
                    format!("schedule_at may be at most {MAX_SCHEDULE_AHEAD_DAYS} days ahead"),
                ));
            }
            Some(rfc3339_ms(at))
        }
    };
    Ok(CreateCallInput {
        phone,
        name: f.str_opt("name", CALL_NAME_MAX)?,
        caller_name: caller_name(&f)?,
        caller_number: match f.str_opt("caller_number", 32)? {
            Some(n) => {
                check_e164("caller_number", &n)?;
                Some(n)
            }
            None => None,
        },
        email,
        transcript_email,
        metadata,
        agent_id,
        system_prompt: f.str_opt("system_prompt", MAX_PROMPT_CHARS)?,
        voice: voice(&f)?,
        language: language(&f)?,
        model: f.str_opt("model", MODEL_MAX)?,
        max_seconds: f
            .int_opt("max_seconds", MAX_SECONDS.0, MAX_SECONDS.1)?
            .unwrap_or(MAX_SECONDS.2) as u32,
        retries: f
            .int_opt("retries", RETRIES.0, RETRIES.1)?
            .unwrap_or(RETRIES.2) as u32,
        retry_delay_minutes: f
            .int_opt(
                "retry_delay_minutes",
                RETRY_DELAY_MINUTES.0,
                RETRY_DELAY_MINUTES.1,
            )?
            .unwrap_or(RETRY_DELAY_MINUTES.2) as u32,
        schedule_at,
        record: f.bool_opt("record")?.unwrap_or(false),
        reject_over_cap: second_choice(&f, "on_concurrency_limit", ON_CONCURRENCY_LIMIT)?,
        reject_outside_window: second_choice(&f, "outside_window", OUTSIDE_WINDOW)?,
        engine_api_key: engine_key(&f)?,
        engine_base_url: f.str_opt("engine_base_url", crate::engine_keys::MAX_BASE_URL_CHARS)?,
        silence_timeout_seconds: silence_timeout(&f)?,
        variables: variables(&f)?,
        amd: amd(&f)?,
        amd_message: f.str_opt("amd_message", AMD_MESSAGE_MAX)?,
        from_extension: from_extension(&f)?,
    })
}

/// `from_extension`: 2-16 digits; with it, none of [`AGENT_CALL_FIELDS`]
/// (a null one is as absent).
fn from_extension(f: &Fields) -> Result<Option<String>, ApiError> {
    use crate::dialects::voice360::{extension_ok, MAX_EXTENSION_DIGITS};
    let Some(ext) = f.str_opt("from_extension", MAX_EXTENSION_DIGITS)? else {
        return Ok(None);
    };
    if !extension_ok(&ext) {
        return Err(ApiError::field(
            ErrorCode::InvalidValue,
            "from_extension",
            format!("'from_extension' must be 2 to {MAX_EXTENSION_DIGITS} digits"),
        ));
    }
    if let Some(name) = AGENT_CALL_FIELDS.iter().find(|n| f.has(n)) {
        return Err(ApiError::field(
            ErrorCode::InvalidValue,
            name,
            format!("a call from_extension is a person's call, with no agent: '{name}' cannot be given with it"),
        ));
    }
    Ok(Some(ext))
}

/// The optional `metadata` object, as the client wrote it and at most
/// [`MAX_METADATA_BYTES`] serialized (calls and text messages alike).
pub fn metadata(f: &Fields, body: &[u8]) -> Result<Option<Metadata>, ApiError> {
    let metadata = match f.object_opt("metadata")? {
        None => None,
        Some(_) => Some(raw_metadata(body)?),
    };
    if let Some(m) = &metadata {
        let size = m.as_str().len();
        if size > MAX_METADATA_BYTES {
            return Err(ApiError::field(
                ErrorCode::MetadataTooLarge,
                "metadata",
                format!("metadata is {size} bytes serialized; the limit is {MAX_METADATA_BYTES}"),
            ));
        }
    }
    Ok(metadata)
}

/// `metadata` as the client wrote it, from the body already checked by
/// `parse_object` (strict JSON, no duplicate keys) and found to be an object.
fn raw_metadata(body: &[u8]) -> Result<Metadata, ApiError> {
    #[derive(serde::Deserialize)]
    struct Body<'a> {
        #[serde(borrow)]
        metadata: Option<&'a serde_json::value::RawValue>,
    }
    let unreadable = || {
        ApiError::field(
            ErrorCode::InvalidType,
            "metadata",
            "'metadata' must be an object",
        )
    };
    let raw = serde_json::from_slice::<Body>(body)
        .ok()
        .and_then(|b| b.metadata)
        .ok_or_else(unreadable)?;
    Metadata::from_json_text(raw.get()).ok_or_else(unreadable)
}

/// `caller_name`: 1 to [`CALLER_NAME_MAX`] characters, none of them a
/// control character (it becomes a SIP header's display-name).
fn caller_name(f: &Fields) -> Result<Option<String>, ApiError> {
    let name = f.str_opt("caller_name", CALLER_NAME_MAX)?;
    if let Some(n) = &name {
        if n.trim().is_empty() || n.chars().any(char::is_control) {
            return Err(ApiError::field(
                ErrorCode::InvalidValue,
                "caller_name",
                format!("caller_name must be 1 to {CALLER_NAME_MAX} characters, not blank, without control characters"),
            ));
        }
    }
    Ok(name)
}

/// `variables`: an object of at most [`pv::MAX_VARIABLES`] strings (each at
/// most [`pv::MAX_VALUE_CHARS`] characters), named like identifiers, none of
/// them a built-in (`name`, `phone`, `metadata`). 422 names the variable.
fn variables(f: &Fields) -> Result<Vec<(String, String)>, ApiError> {
    use crate::prompt_variables as pv;
    let Some(map) = f.object_opt("variables")? else {
        return Ok(Vec::new());
    };
    if map.len() > pv::MAX_VARIABLES {
        return Err(ApiError::field(
            ErrorCode::OutOfRange,
            "variables",
            format!("variables holds at most {} entries", pv::MAX_VARIABLES),
        ));
    }
    let mut out = Vec::with_capacity(map.len());
    for (name, value) in map {
        let field = format!("variables.{name}");
        if !pv::is_variable_name(&name) || pv::RESERVED.contains(&name.as_str()) {
            return Err(ApiError::field(
                ErrorCode::InvalidValue,
                "variables",
                format!(
                    "variable names are letters, digits and _ (not starting with a digit, at most {} bytes) and not name, phone or metadata (built in): {name:?}",
                    pv::MAX_NAME_BYTES
                ),
            ));
        }
        let Value::String(value) = value else {
            return Err(ApiError::field(
                ErrorCode::InvalidType,
                &field,
                format!("{field} must be a string"),
            ));
        };
        if value.chars().count() > pv::MAX_VALUE_CHARS {
            return Err(ApiError::field(
                ErrorCode::ValueTooLong,
                &field,
                format!("{field} is longer than {} characters", pv::MAX_VALUE_CHARS),
            ));
        }
        out.push((name, value));
    }
    Ok(out)
}

/// `amd`: `off`, `hangup`, `leave_message` or `continue`.
fn amd(f: &Fields) -> Result<Option<AmdMode>, ApiError> {
    match f.str_opt("amd", 16)? {
        None => Ok(None),
        Some(s) => AmdMode::parse(&s).map(Some).ok_or_else(|| {
            ApiError::field(
                ErrorCode::InvalidValue,
                "amd",
                "amd must be one of off, hangup, leave_message, continue",
            )
        }),
    }
}

fn silence_timeout(f: &Fields) -> Result<Option<u32>, ApiError> {
    let (lo, hi) = SILENCE_TIMEOUT_SECONDS;
    Ok(f.int_opt("silence_timeout_seconds", lo, hi)?
        .map(|s| s as u32))
}

/// E.164: `+`, a non-zero country code digit, 7 to 15 digits in all.
pub fn check_e164(field: &str, s: &str) -> Result<(), ApiError> {
    if crate::messages::is_e164(s) {
        Ok(())
    } else {
        Err(ApiError::field(
            ErrorCode::InvalidPhoneNumber,
            field,
            format!("'{field}' must be E.164: '+' then 7 to 15 digits, no spaces or punctuation (e.g. +14155550100)"),
        ))
    }
}

pub(crate) fn check_email(s: &str) -> Result<(), ApiError> {
    let ok = match s.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !s.chars().any(|c| c.is_whitespace() || c.is_control())
        }
        None => false,
    };
    if ok {
        Ok(())
    } else {
        Err(ApiError::field(
            ErrorCode::InvalidEmail,
            "email",
            "email must look like name@example.com",
        ))
    }
}

/// `transcript_email`: an address that goes into a mail header (`To:`) and an
/// SMTP command (`RCPT TO:<...>`), so only RFC 5321's dot-atom local part and
/// a domain of LDH labels (ASCII letters, digits, `-`): no CR/LF, space,
/// quote, angle bracket, comma or anything else a header or a command could
/// be split on. The OpenAPI document publishes this very pattern.
pub const TRANSCRIPT_EMAIL_PATTERN: &str = r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)+$";

/// Whether `s` is a transcript email address ([`TRANSCRIPT_EMAIL_PATTERN`]);
/// the mail path checks it again before it writes a header.
pub fn is_transcript_email(s: &str) -> bool {
    static PATTERN: std::sync::OnceLock<regex_lite::Regex> = std::sync::OnceLock::new();
    s.len() <= EMAIL_MAX
        && PATTERN
            .get_or_init(|| {
                regex_lite::Regex::new(TRANSCRIPT_EMAIL_PATTERN).expect("a valid constant pattern")
            })
            .is_match(s)
}

fn check_transcript_email(s: &str) -> Result<(), ApiError> {
    if is_transcript_email(s) {
        Ok(())
    } else {
        Err(ApiError::field(
            ErrorCode::InvalidEmail,
            "transcript_email",
            "transcript_email must look like name@example.com (ASCII letters, digits and . _ + - etc.; no spaces, quotes or line breaks)",
        ))
    }
}

fn voice(f: &Fields) -> Result<Option<String>, ApiError> {
    let v = f.str_opt("voice", VOICE_MAX)?;
    if let Some(v) = &v {
        if v.is_empty()
            || !v
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(ApiError::field(
                ErrorCode::InvalidValue,
                "voice",
                "voice must be a voice name: letters, digits, '-', '_' or '.'",
            ));
        }
    }
    Ok(v)
}

/// RFC 5646's `langtag` production (language with up to three extlangs, or a
/// 4-8 letter language; then script, region, variants, extensions, private
/// use), ASCII letters in either case. Private-use-only tags (`x-foo`) and the
/// grandfathered irregular tags do not match: they name no language an engine
/// knows. The OpenAPI document publishes this very pattern.
pub const LANGUAGE_PATTERN: &str = r"^([A-Za-z]{2,3}(-[A-Za-z]{3}){0,3}|[A-Za-z]{4,8})(-[A-Za-z]{4})?(-([A-Za-z]{2}|[0-9]{3}))?(-([A-Za-z0-9]{5,8}|[0-9][A-Za-z0-9]{3}))*(-[0-9A-WYZa-wyz](-[A-Za-z0-9]{2,8})+)*(-[Xx](-[A-Za-z0-9]{1,8})+)?$";

fn language(f: &Fields) -> Result<Option<String>, ApiError> {
    static PATTERN: std::sync::OnceLock<regex_lite::Regex> = std::sync::OnceLock::new();
    let lang = f.str_opt("language", LANGUAGE_MAX)?;
    if let Some(l) = &lang {
        let pattern = PATTERN.get_or_init(|| {
            regex_lite::Regex::new(LANGUAGE_PATTERN).expect("a valid constant pattern")
        });
        if !pattern.is_match(l) {
            return Err(ApiError::field(
                ErrorCode::InvalidLanguage,
                "language",
                format!("'{l}' is not a BCP-47 language tag such as en, en-US or pt-BR"),
            ));
        }
    }
    Ok(lang)
}

pub const AGENT_FIELDS: &[&str] = &[
    "name",
    "system_prompt",
    "voice",
    "language",
    "default_engine",
    "model",
    "enabled",
    "default",
    "per_number_limit",
    "per_ip_limit",
    "calling_window",
    "engine_api_key",
    "engine_base_url",
    "silence_timeout_seconds",
    "first_speaker",
    "analysis",
    "amd",
    "amd_message",
    "tools",
    "rotate_tools_secret",
];

/// Agent fields as given; `None` means "not in the body" (PATCH keeps the old value).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AgentInput {
    pub name: Option<String>,
    pub system_prompt: Option<String>,
    pub voice: Option<String>,
    pub language: Option<String>,
    pub default_engine: Option<Engine>,
    pub model: Option<String>,
    pub enabled: Option<bool>,
    /// Make this the tenant's default agent.
    pub make_default: Option<bool>,
    /// Overrides the tenant's per-number rate limit for this agent's calls.
    pub per_number_limit: Option<crate::traffic::RateLimit>,
    pub per_ip_limit: Option<crate::traffic::RateLimit>,
    /// `None`: not in the body; `Some(None)`: an explicit null (remove it).
    pub calling_window: Option<Option<crate::calling_window::CallingWindow>>,
    /// Like `calling_window`: an explicit null removes it.
    pub engine_api_key: Option<Option<String>>,
    pub engine_base_url: Option<Option<String>>,
    pub silence_timeout_seconds: Option<u32>,
    /// `agent` or `callee`.
    pub first_speaker: Option<FirstSpeaker>,
    /// Like `calling_window`: an explicit null removes it.
    pub analysis: Option<Option<AnalysisPlan>>,
    pub amd: Option<AmdMode>,
    /// Like `calling_window`: an explicit null removes it.
    pub amd_message: Option<Option<String>>,
    /// The whole list (PATCH replaces it; `null` or `[]` removes them).
    pub tools: Option<Vec<crate::model::AgentTool>>,
    /// Mint a new tools secret (shown once in the answer).
    pub rotate_tools_secret: bool,
}

pub fn agent(
    content_type: Option<&str>,
    body: &[u8],
    creating: bool,
    dev_mode: bool,
) -> Result<AgentInput, ApiError> {
    let f = parse_object(content_type, body, MAX_BODY_BYTES, AGENT_FIELDS)?;
    // Never blank: required on create, and a PATCH may not blank it either.
    let name = if creating || f.has("name") {
        Some(f.str_req("name", AGENT_NAME_MAX)?)
    } else {
        None
    };
    let default_engine = match f.str_opt("default_engine", 32)? {
        None => None,
        Some(e) => Some(Engine::parse(&e).ok_or_else(|| {
            ApiError::field(
                ErrorCode::InvalidValue,
                "default_engine",
                format!("default_engine must be one of {}", Engine::NAMES.join(", ")),
            )
        })?),
    };
    Ok(AgentInput {
        name,
        system_prompt: f.str_opt("system_prompt", MAX_PROMPT_CHARS)?,
        voice: voice(&f)?,
        language: language(&f)?,
        default_engine,
        model: f.str_opt("model", MODEL_MAX)?,
        enabled: f.bool_opt("enabled")?,
        make_default: f.bool_opt("default")?,
        per_number_limit: rate_limit_opt(&f, "per_number_limit")?,
        per_ip_limit: rate_limit_opt(&f, "per_ip_limit")?,
        calling_window: match f.object_opt("calling_window")? {
            None if f.is_null("calling_window") => Some(None),
            None => None,
            Some(m) => Some(Some(
                crate::calling_window::parse(&Value::Object(m)).map_err(|(field, why)| {
                    ApiError::field(ErrorCode::InvalidValue, &field, why)
                })?,
            )),
        },
        engine_api_key: match engine_key(&f)? {
            None if f.is_null("engine_api_key") => Some(None),
            k => k.map(Some),
        },
        engine_base_url: match f
            .str_opt("engine_base_url", crate::engine_keys::MAX_BASE_URL_CHARS)?
        {
            None if f.is_null("engine_base_url") => Some(None),
            u => u.map(Some),
        },
        silence_timeout_seconds: silence_timeout(&f)?,
        first_speaker: match f.str_opt("first_speaker", 16)? {
            None => None,
            Some(s) => Some(FirstSpeaker::parse(&s).ok_or_else(|| {
                ApiError::field(
                    ErrorCode::InvalidValue,
                    "first_speaker",
                    "first_speaker must be one of agent, callee",
                )
            })?),
        },
        amd: amd(&f)?,
        amd_message: match f.str_opt("amd_message", AMD_MESSAGE_MAX)? {
            None if f.is_null("amd_message") => Some(None),
            m => m.map(Some),
        },
        analysis: match f.object_opt("analysis")? {
            None if f.is_null("analysis") => Some(None),
            None => None,
            Some(m) => Some(Some(analysis_plan(m)?)),
        },
        tools: match f.raw("tools") {
            None => None,
            Some(v) => Some(crate::api::agent_tools::parse(v, dev_mode)?),
        },
        rotate_tools_secret: f.bool_opt("rotate_tools_secret")?.unwrap_or(false),
    })
}

/// Largest `analysis` object accepted (its JSON text).
const MAX_ANALYSIS_BYTES: usize = 16 * 1024;

/// An agent's `analysis` (see `voxline_shared::analysis`): each part
/// checked, the schema field by field.
fn analysis_plan(m: serde_json::Map<String, Value>) -> Result<AnalysisPlan, ApiError> {
    use voxline_shared::analysis::{MAX_LIST_ITEMS, MAX_NAME_CHARS, MAX_TEXT_CHARS};
    let bad = |field: &str, why: String| ApiError::field(ErrorCode::InvalidValue, field, why);
    if serde_json::to_string(&m).map_or(usize::MAX, |t| t.len()) > MAX_ANALYSIS_BYTES {
        return Err(bad(
            "analysis",
            format!("analysis must be at most {MAX_ANALYSIS_BYTES} bytes of JSON"),
        ));
    }
    if let Some(unknown) = m
        .keys()
        .find(|k| !["success_outcomes", "success_criteria", "data_schema"].contains(&k.as_str()))
    {
        return Err(ApiError::field(
            ErrorCode::UnknownField,
            &format!("analysis.{unknown}"),
            format!("unknown field analysis.{unknown}: expected success_outcomes, success_criteria, data_schema"),
        ));
    }
    let success_outcomes = match m.get("success_outcomes") {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => v
            .as_array()
            .filter(|a| a.len() <= MAX_LIST_ITEMS)
            .and_then(|a| {
                a.iter()
                    .map(|o| {
                        o.as_str()
                            .map(str::trim)
                            .filter(|o| !o.is_empty() && o.chars().count() <= MAX_NAME_CHARS)
                            .map(String::from)
                    })
                    .collect::<Option<Vec<String>>>()
            })
            .ok_or_else(|| {
                bad(
                    "analysis.success_outcomes",
                    format!("analysis.success_outcomes must be at most {MAX_LIST_ITEMS} non-empty strings of at most {MAX_NAME_CHARS} characters"),
                )
            })?,
    };
    let success_criteria = match m.get("success_criteria") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_str()
                .map(str::trim)
                .filter(|c| !c.is_empty() && c.chars().count() <= MAX_TEXT_CHARS)
                .map(String::from)
                .ok_or_else(|| {
                    bad(
                        "analysis.success_criteria",
                        format!("analysis.success_criteria must be a non-empty string of at most {MAX_TEXT_CHARS} characters"),
                    )
                })?,
        ),
    };
    let data_schema = match m.get("data_schema") {
        None | Some(Value::Null) => None,
        Some(schema) => {
            voxline_shared::analysis::schema_fields(schema)
                .map_err(|why| bad("analysis.data_schema", why))?;
            Some(schema.clone())
        }
    };
    Ok(AnalysisPlan {
        success_outcomes,
        success_criteria,
        data_schema,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_764_082_200_000; // 2025-11-25T14:50:00Z
    const JSON: Option<&str> = Some("application/json");

    fn call(body: &str) -> Result<CreateCallInput, ApiError> {
        create_call(JSON, body.as_bytes(), NOW)
    }

    fn err(body: &str) -> (ErrorCode, Option<String>) {
        let e = call(body).unwrap_err();
        (e.code, e.field)
    }

    #[test]
    fn minimal_call_gets_defaults() {
        let c = call(r#"{"phone":"+14155550100"}"#).unwrap();
        assert_eq!(
            (c.max_seconds, c.retries, c.retry_delay_minutes),
            (300, 0, 5)
        );
        assert_eq!(c.schedule_at, None);
    }

    #[test]
    fn full_call_is_accepted_and_schedule_normalised() {
        let c = call(
            r#"{"phone":"+442071838750","name":"Ada","email":"ada@example.org","metadata":{"crm":7},
                "agent_id":"agt_00112233445566778899","system_prompt":"hi","voice":"alloy","language":"en-GB",
                "model":"gpt-realtime","max_seconds":3600,"retries":10,"retry_delay_minutes":1440,
                "schedule_at":"2025-11-26T09:00:00+00:00"}"#,
        )
        .unwrap();
        assert_eq!(c.schedule_at.as_deref(), Some("2025-11-26T09:00:00.000Z"));
        assert_eq!(c.metadata.unwrap().as_str(), r#"{"crm":7}"#);
    }

    #[test]
    fn transcript_email_is_kept_and_refuses_header_injection() {
        let c = call(r#"{"phone":"+14155550100","transcript_email":"ops@yourcompany.example"}"#)
            .unwrap();
        assert_eq!(
            c.transcript_email.as_deref(),
            Some("ops@yourcompany.example")
        );
        assert_eq!(c.email, None);
        // What is accepted is a plain address the mail path sends as it is.
        assert!(crate::mail::is_plain_address("ops@yourcompany.example"));
        for bad in [
            r#""ops@example.com\r\nBcc: x@evil.example""#,
            r#""ops@example.com\n""#,
            r#""Ops <ops@example.com>""#,
            r#""ops@example.com,x@evil.example""#,
            r#""\"o p\"@example.com""#,
            r#""nope""#,
            // What the callee's `email` accepts but a header or RCPT TO must not carry.
            r#""<ops@example.com""#,
            r#""ops@example.com>""#,
            r#""ops;x@example.com""#,
            r#""o(p)s@example.com""#,
            r#""ops@exa_mple.com""#,
        ] {
            let e = err(&format!(
                r#"{{"phone":"+14155550100","transcript_email":{bad}}}"#
            ));
            assert_eq!(
                e,
                (ErrorCode::InvalidEmail, Some("transcript_email".into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn each_bad_field_gets_its_own_code_and_field() {
        let f = |s: &str| Some(s.to_string());
        assert_eq!(err(r#"{}"#), (ErrorCode::MissingField, f("phone")));
        assert_eq!(
            err(r#"{"phone":null}"#),
            (ErrorCode::MissingField, f("phone"))
        );
        assert_eq!(
            err(r#"{"phone":14155550100}"#),
            (ErrorCode::InvalidType, f("phone"))
        );
        for bad in [
            "14155550100",
            "+1 415 555 0100",
            "+0123456789",
            "+123456",
            "+1234567890123456",
            "+1415555o100",
        ] {
            assert_eq!(
                err(&format!(r#"{{"phone":"{bad}"}}"#)),
                (ErrorCode::InvalidPhoneNumber, f("phone")),
                "{bad}"
            );
        }
        let p = r#""phone":"+14155550100""#;
        assert_eq!(
            err(&format!(r#"{{{p},"max_seconds":9}}"#)),
            (ErrorCode::OutOfRange, f("max_seconds"))
        );
        assert_eq!(
            err(&format!(r#"{{{p},"max_seconds":3601}}"#)),
            (ErrorCode::OutOfRange, f("max_seconds"))
        );
        assert_eq!(
            err(&format!(r#"{{{p},"max_seconds":"60"}}"#)),
            (ErrorCode::InvalidType, f("max_seconds"))
        );
        assert_eq!(
            err(&format!(r#"{{{p},"retries":11}}"#)),
            (ErrorCode::OutOfRange, f("retries"))
        );
        assert_eq!(
            err(&format!(r#"{{{p},"retries":-1}}"#)),
            (ErrorCode::OutOfRange, f("retries"))
        );
        assert_eq!(
            err(&format!(r#"{{{p},"retry_delay_minutes":0}}"#)),
            (ErrorCode::OutOfRange, f("retry_delay_minutes"))
        );
        assert_eq!(
            err(&format!(r#"{{{p},"email":"nope"}}"#)),
            (ErrorCode::InvalidEmail, f("email"))
        );
        assert_eq!(
            err(&format!(r#"{{{p},"language":"english please"}}"#)),
            (ErrorCode::InvalidLanguage, f("language"))
        );
        assert_eq!(
            err(&format!(r#"{{{p},"language":"x-foo"}}"#)),
            (ErrorCode::InvalidLanguage, f("language"))
        );
        assert_eq!(
            err(&format!(r#"{{{p},"language":"X-Foo"}}"#)),
            (ErrorCode::InvalidLanguage, f("language"))
        );
        assert_eq!(
            call(&format!(r#"{{{p},"language":"en-x-foo"}}"#))
                .unwrap()
                .language
                .as_deref(),
            Some("en-x-foo")
        );
        // RFC 5646 `langtag`: extlangs, script, region, variants, extensions.
        for ok in [
            "zh-yue-HK",
            "sr-Latn-RS",
            "es-419",
            "de-CH-1996",
            "en-a-bbb-x-a",
            "EN-us",
        ] {
            assert!(
                call(&format!(r#"{{{p},"language":"{ok}"}}"#)).is_ok(),
                "{ok}"
            );
        }
        // Grandfathered irregular tags, a doubled hyphen, a trailing newline, a lone singleton.
        for bad in ["i-klingon", "en--US", "en\\n", "en-a", "en-US-"] {
            assert_eq!(
                err(&format!(r#"{{{p},"language":"{bad}"}}"#)),
                (ErrorCode::InvalidLanguage, f("language")),
                "{bad}"
            );
        }
        assert_eq!(
            err(&format!(r#"{{{p},"voice":"a b"}}"#)),
            (ErrorCode::InvalidValue, f("voice"))
        );
        assert_eq!(
            err(&format!(r#"{{{p},"metadata":[1]}}"#)),
            (ErrorCode::InvalidType, f("metadata"))
        );
        assert_eq!(
            err(&format!(r#"{{{p},"agent_id":"bogus"}}"#)),
            (ErrorCode::UnknownAgent, f("agent_id"))
        );
        assert_eq!(
            err(&format!(r#"{{{p},"schedule_at":"tomorrow"}}"#)),
            (ErrorCode::InvalidTimestamp, f("schedule_at"))
        );
        assert_eq!(
            err(&format!(
                r#"{{{p},"schedule_at":"2025-11-26T09:00:00+02:00"}}"#
            )),
            (ErrorCode::InvalidTimestamp, f("schedule_at"))
        );
        assert_eq!(
            err(&format!(r#"{{{p},"schedule_at":"2025-11-25T14:49:59Z"}}"#)),
            (ErrorCode::ScheduleInPast, f("schedule_at"))
        );
        assert_eq!(
            err(&format!(r#"{{{p},"schedule_at":"1969-12-31T23:59:59Z"}}"#)),
            (ErrorCode::ScheduleInPast, f("schedule_at"))
        );
        assert_eq!(
            err(&format!(
                r#"{{{p},"schedule_at":"1969-12-31T23:59:59+01:00"}}"#
            )),
            (ErrorCode::InvalidTimestamp, f("schedule_at"))
        );
        assert_eq!(
            err(&format!(r#"{{{p},"schedule_at":"2026-11-25T14:49:59Z"}}"#)),
            (ErrorCode::OutOfRange, f("schedule_at"))
        );
        assert_eq!(
            err(&format!(r#"{{{p},"name":"{}"}}"#, "n".repeat(201))),
            (ErrorCode::ValueTooLong, f("name"))
        );
        assert_eq!(
            err(&format!(r#"{{{p},"extra":1}}"#)),
            (ErrorCode::UnknownField, f("extra"))
        );
        let big_meta = format!(
            r#"{{{p},"metadata":{{"k":"{}"}}}}"#,
            "m".repeat(MAX_METADATA_BYTES)
        );
        assert_eq!(err(&big_meta), (ErrorCode::MetadataTooLarge, f("metadata")));
    }

    #[test]
    fn agent_create_requires_name_and_checks_engine() {
        assert_eq!(
            agent(JSON, br#"{}"#, true, false).unwrap_err().code,
            ErrorCode::MissingField
        );
        assert!(agent(JSON, br#"{}"#, false, false).unwrap().name.is_none());
        assert_eq!(
            agent(JSON, br#"{"name":" "}"#, false, false)
                .unwrap_err()
                .code,
            ErrorCode::InvalidValue
        );
        let e = agent(JSON, br#"{"name":"a","default_engine":"gpt"}"#, true, false).unwrap_err();
        assert_eq!(
            (e.code, e.field.as_deref()),
            (ErrorCode::InvalidValue, Some("default_engine"))
        );
        let a = agent(
            JSON,
            br#"{"name":"a","default_engine":"gemini_live","enabled":false,"default":true}"#,
            true,
            false,
        )
        .unwrap();
        assert_eq!(
            (a.default_engine, a.enabled, a.make_default),
            (Some(Engine::GeminiLive), Some(false), Some(true))
        );
    }
}

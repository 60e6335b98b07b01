//! Calldock API v1 (seed document `calldock-api.txt`).
//!
//! `POST /v1/make-call` with `X-API-Key: ck_live_...` and `X-Agent-ID:
//! agent_...` (a key belongs to one agent); body `phone` (with its country
//! code), `name`, `email`, `metadata`. 200 `{"success": true, "data":
//! {"callId", "status": "initiated", "timestamp"}}`; errors 400, 401, 429, 500.
//!
//! The post-call webhook carries `X-Calldock-Event: post_call` and
//! `X-Calldock-Signature: hex(HMAC-SHA256(webhook secret, body))`. The
//! document's verifiers hash the *re-serialised* parsed body: Node's
//! `JSON.stringify(req.body)` and Python's `json.dumps(request.json)` (which
//! adds a space after `:` and `,`, and escapes non-ASCII). They cannot both
//! hold; we send the body exactly as `JSON.stringify` writes it (see
//! `js_json`), so the Node verifier holds, and so does any verifier that hashes
//! the raw body. README says so.

use serde::Serialize;

use super::js_json::JsNumber;
use super::post_call::{EndedCall, Speaker};
use crate::ids::rfc3339_seconds;
use voxline_shared::CallStatus;

pub const PATH: &str = "/v1/make-call";
pub const HEADER_KEY: &str = "X-API-Key";
pub const HEADER_AGENT: &str = "X-Agent-ID";
pub const HEADER_EVENT: &str = "X-Calldock-Event";
pub const HEADER_SIGNATURE: &str = "X-Calldock-Signature";
pub const EVENT_POST_CALL: &str = "post_call";
/// The prefix of the keys we mint for this dialect (the document's form).
pub const KEY_PREFIX: &str = "ck_live_";
pub const MAX_BODY_BYTES: usize = 32 * 1024;
const MAX_HEADER_CHARS: usize = 128;
const MAX_NAME_CHARS: usize = 200;
const MAX_EMAIL_CHARS: usize = 254;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CalldockError {
    /// Missing fields, an invalid phone, a malformed body (the document's 400).
    BadRequest(String),
    /// Missing or invalid API key, or a key of another agent (401).
    Unauthorized,
    /// A call from this agent to this number is already queued or live.
    CallInProgress,
    /// A rate limit (per key, per number or per IP as the agent sets them).
    RateLimited,
    Internal,
}

impl CalldockError {
    /// (status, stable code, message)
    pub fn parts(&self) -> (u16, &'static str, String) {
        match self {
            CalldockError::BadRequest(why) => (400, "bad_request", why.clone()),
            CalldockError::Unauthorized => {
                (401, "unauthorized", "Missing or invalid API key".into())
            }
            CalldockError::CallInProgress => (
                400,
                "call_in_progress",
                "A call to this number is already in progress".into(),
            ),
            CalldockError::RateLimited => (429, "rate_limited", "Rate limit exceeded".into()),
            CalldockError::Internal => (500, "internal_error", "Internal server error".into()),
        }
    }

    pub fn status(&self) -> u16 {
        self.parts().0
    }

    /// `{"success":false,"error":{"code":"...","message":"..."}}` (the
    /// document shows statuses, not bodies; this shape mirrors its success one).
    pub fn body(&self) -> String {
        #[derive(Serialize)]
        struct Error {
            code: &'static str,
            message: String,
        }
        #[derive(Serialize)]
        struct Failed {
            success: bool,
            error: Error,
        }
        let (_, code, message) = self.parts();
        serde_json::to_string(&Failed {
            success: false,
            error: Error { code, message },
        })
        .unwrap_or_default()
    }
}

impl From<&super::refusal::Refusal> for CalldockError {
    fn from(r: &super::refusal::Refusal) -> CalldockError {
        use super::refusal::Refusal as R;
        match r {
            // The document's 401: "Missing or invalid API key" (a key of another agent too).
            R::MissingCredentials
            | R::InvalidCredentials
            | R::AccessDisabled
            | R::InvalidSignature
            | R::AgentNotConfigured => CalldockError::Unauthorized,
            R::AgentDisabled => CalldockError::BadRequest("The agent is disabled".into()),
            R::InvalidRequest(why) => CalldockError::BadRequest(why.clone()),
            R::CallInProgress => CalldockError::CallInProgress,
            R::RateLimited { .. } => CalldockError::RateLimited,
            R::AgentLookupFailed | R::Internal => CalldockError::Internal,
        }
    }
}

/// The two headers, present and non-empty (else 401).
pub fn read_headers<'a>(
    api_key: Option<&'a str>,
    agent_id: Option<&'a str>,
) -> Result<(&'a str, &'a str), CalldockError> {
    let present = |v: Option<&'a str>| {
        v.map(str::trim)
            .filter(|v| !v.is_empty() && v.len() <= MAX_HEADER_CHARS)
    };
    match (present(api_key), present(agent_id)) {
        (Some(key), Some(agent)) => Ok((key, agent)),
        _ => Err(CalldockError::Unauthorized),
    }
}

#[derive(Debug, Clone)]
pub struct MakeCall {
    /// E.164 after normalisation (spaces, dashes, parentheses, `00`).
    pub phone: String,
    pub name: Option<String>,
    pub email: Option<String>,
    /// The `metadata` object's JSON text, as sent.
    pub metadata: Option<Box<serde_json::value::RawValue>>,
}

fn string_field(
    value: &serde_json::Value,
    name: &str,
    max_chars: usize,
) -> Result<Option<String>, CalldockError> {
    super::body::optional_string(value, name, max_chars).map_err(CalldockError::BadRequest)
}

pub fn read_make_call(body: &[u8]) -> Result<MakeCall, CalldockError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(CalldockError::BadRequest(format!(
            "The body is larger than {MAX_BODY_BYTES} bytes"
        )));
    }
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|_| CalldockError::BadRequest("Invalid request format".into()))?;
    if !value.is_object() {
        return Err(CalldockError::BadRequest("Invalid request format".into()));
    }
    let raw_phone = string_field(&value, "phone", 64)?
        .ok_or_else(|| CalldockError::BadRequest("Missing required field: phone".into()))?;
    let phone = super::phone::normalize(&raw_phone).ok_or_else(|| {
        CalldockError::BadRequest(
            "Invalid phone format: use the country code, e.g. +1234567890".into(),
        )
    })?;
    let metadata = super::body::metadata(&value, body).map_err(CalldockError::BadRequest)?;
    Ok(MakeCall {
        phone,
        name: string_field(&value, "name", MAX_NAME_CHARS)?,
        email: string_field(&value, "email", MAX_EMAIL_CHARS)?,
        metadata,
    })
}

/// The 200 answer: `status` is always `initiated` (the call is accepted).
pub fn accepted_body(call_id: &str, now_ms: u64) -> String {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Data<'a> {
        call_id: &'a str,
        status: &'static str,
        timestamp: String,
    }
    #[derive(Serialize)]
    struct Accepted<'a> {
        success: bool,
        data: Data<'a>,
    }
    serde_json::to_string(&Accepted {
        success: true,
        data: Data {
            call_id,
            status: "initiated",
            timestamp: rfc3339_seconds(now_ms),
        },
    })
    .unwrap_or_default()
}

#[derive(Serialize)]
struct LeadData<'a> {
    name: Option<&'a str>,
    email: Option<&'a str>,
    phone: &'a str,
}

#[derive(Serialize)]
struct TranscriptTurn<'a> {
    role: &'static str,
    message: &'a str,
    time_in_call_secs: u64,
}

#[derive(Serialize)]
struct PostCallMetadata<'a> {
    summary: Option<&'a str>,
    transcript: String,
    transcript_turns: Vec<TranscriptTurn<'a>>,
}

/// Field order exactly as the document's example.
#[derive(Serialize)]
struct PostCall<'a> {
    webhook_version: &'static str,
    webhook_timestamp: String,
    webhook_type: &'static str,
    call_id: &'a str,
    agent_id: &'a str,
    phone_number: &'a str,
    from_phone_number: Option<&'a str>,
    status: &'static str,
    intent: Option<&'a str>,
    intent_confidence: Option<JsNumber>,
    lead_data: LeadData<'a>,
    duration_minutes: JsNumber,
    duration_seconds: u64,
    start_time: String,
    end_time: String,
    call_successful: &'static str,
    language: &'a str,
    credits_deducted: JsNumber,
    metadata: PostCallMetadata<'a>,
    recording_url: Option<&'a str>,
}

/// `status`: `done` for a call that was answered and ended normally; else
/// what happened (`no_answer`, `busy`, `failed`, `cancelled`).
fn status_word(status: CallStatus) -> &'static str {
    match status {
        CallStatus::Completed => "done",
        CallStatus::NoAnswer => "no_answer",
        CallStatus::Busy => "busy",
        CallStatus::Cancelled => "cancelled",
        _ => "failed",
    }
}

fn speaker_word(s: Speaker) -> (&'static str, &'static str) {
    match s {
        Speaker::Agent => ("agent", "Agent"),
        Speaker::Callee => ("user", "User"),
    }
}

/// The post-call body, `JSON.stringify`-exact. Values we cannot fill honestly:
/// `intent_confidence` is `null` (our engines give an intent, `outcome`, but no
/// confidence), `credits_deducted` is `0` (voxline has no credits).
pub fn post_call_body(call: &EndedCall<'_>, now_ms: u64) -> String {
    let seconds = call.duration_seconds();
    // Minutes to two decimals, as the example (141 s -> 2.35).
    let minutes = (seconds as f64 / 60.0 * 100.0).round() / 100.0;
    let body = PostCall {
        webhook_version: "v1",
        webhook_timestamp: rfc3339_seconds(now_ms),
        webhook_type: EVENT_POST_CALL,
        call_id: call.call_id,
        agent_id: call.agent_id,
        phone_number: call.phone,
        from_phone_number: call.from_phone,
        status: status_word(call.status),
        intent: call.outcome,
        intent_confidence: None,
        lead_data: LeadData {
            name: call.name,
            email: call.email,
            phone: call.phone,
        },
        duration_minutes: JsNumber(minutes),
        duration_seconds: seconds,
        start_time: rfc3339_seconds(call.started_ms()),
        end_time: rfc3339_seconds(call.ended_ms),
        call_successful: if call.status == CallStatus::Completed {
            "success"
        } else {
            "failure"
        },
        language: call.language,
        credits_deducted: JsNumber(0.0),
        metadata: PostCallMetadata {
            summary: call.summary,
            transcript: call
                .turns
                .iter()
                .map(|t| format!("{}: {}", speaker_word(t.speaker).1, t.text))
                .collect::<Vec<_>>()
                .join("\n"),
            transcript_turns: call
                .turns
                .iter()
                .map(|t| TranscriptTurn {
                    role: speaker_word(t.speaker).0,
                    message: t.text,
                    time_in_call_secs: t.start_ms / 1000,
                })
                .collect(),
        },
        recording_url: call.recording_url.as_deref(),
    };
    super::js_json::to_string(&body).unwrap_or_default()
}

/// `X-Calldock-Signature` for a body sent as [`post_call_body`] wrote it.
pub fn signature(webhook_secret: &[u8], body: &[u8]) -> String {
    super::post_call::hex_hmac_sha256(webhook_secret, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialects::post_call::test_call;

    #[test]
    fn make_call_as_the_documents_curl_sends_it() {
        let body = br#"{ "name": "John Doe", "email": "john@example.com", "phone": "+1234567890", "metadata": { "source": "website", "campaign": "summer-promo" } }"#;
        let got = read_make_call(body).unwrap();
        assert_eq!(got.phone, "+1234567890");
        assert_eq!(got.name.as_deref(), Some("John Doe"));
        assert_eq!(
            got.metadata.unwrap().get(),
            r#"{ "source": "website", "campaign": "summer-promo" }"#
        );
        assert_eq!(
            read_make_call(br#"{"phone":"+1 (234) 567-890"}"#)
                .unwrap()
                .phone,
            "+1234567890"
        );
        assert_eq!(
            read_headers(Some("ck_live_x"), Some("agent_y")),
            Ok(("ck_live_x", "agent_y"))
        );
        assert_eq!(
            read_headers(Some("ck_live_x"), None),
            Err(CalldockError::Unauthorized)
        );
    }

    #[test]
    fn answers_and_errors() {
        assert_eq!(
            accepted_body("call_abc123", 1_705_314_600_000),
            r#"{"success":true,"data":{"callId":"call_abc123","status":"initiated","timestamp":"2024-01-15T10:30:00Z"}}"#
        );
        for (body, needle) in [
            (&b"{}"[..], "Missing required field: phone"),
            (br#"{"phone":"1234567890"}"#, "Invalid phone format"),
            (
                br#"{"phone":"+1234567890","metadata":"x"}"#,
                "metadata must be an object",
            ),
            (b"{", "Invalid request format"),
        ] {
            let err = read_make_call(body).unwrap_err();
            assert_eq!(err.status(), 400);
            assert!(err.parts().2.contains(needle), "{err:?}");
        }
        assert_eq!(
            CalldockError::RateLimited.body(),
            r#"{"success":false,"error":{"code":"rate_limited","message":"Rate limit exceeded"}}"#
        );
    }

    #[test]
    fn post_call_body_in_the_documents_order_and_javascripts_numbers() {
        let body = post_call_body(&test_call::ended(None), 1_705_314_900_000);
        assert_eq!(
            body,
            concat!(
                r#"{"webhook_version":"v1","webhook_timestamp":"2024-01-15T10:35:00Z","webhook_type":"post_call","#,
                r#""call_id":"call_01","agent_id":"agt_01","phone_number":"+15551234567","from_phone_number":"+13239776447","#,
                r#""status":"done","intent":"account_setup","intent_confidence":null,"#,
                r#""lead_data":{"name":"Jane Smith","email":"jane@example.com","phone":"+15551234567"},"#,
                r#""duration_minutes":2.35,"duration_seconds":141,"start_time":"2024-01-15T10:30:00Z","#,
                r#""end_time":"2024-01-15T10:32:21Z","call_successful":"success","language":"en","credits_deducted":0,"#,
                r#""metadata":{"summary":"Caller expressed interest.","#,
                r#""transcript":"Agent: Hello, this is Sarah.\nUser: Hi, I was wondering about your pricing.","#,
                r#""transcript_turns":[{"role":"agent","message":"Hello, this is Sarah.","time_in_call_secs":1},"#,
                r#"{"role":"user","message":"Hi, I was wondering about your pricing.","time_in_call_secs":5}]},"#,
                r#""recording_url":"https://edge.example/v1/calls/call_01/recording"}"#
            )
        );
        let unanswered = EndedCall {
            answered_ms: None,
            status: CallStatus::NoAnswer,
            turns: vec![],
            ..test_call::ended(None)
        };
        let body = post_call_body(&unanswered, 1_705_314_900_000);
        assert!(body.contains(r#""status":"no_answer""#), "{body}");
        assert!(
            body.contains(r#""duration_minutes":0,"duration_seconds":0"#),
            "{body}"
        );
        assert!(body.contains(r#""call_successful":"failure""#), "{body}");
    }
}

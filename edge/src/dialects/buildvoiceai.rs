//! BuildVoiceAI API & Webhooks (seed document `buildvoiceai-api-webhooks.txt`).
//!
//! `POST /api/trigger-call` with `Authorization: Bearer <key>`; body `phone`
//! (E.164, required), `name`, `email`, `agent_id` (else the tenant's default
//! agent), `metadata`. 403 when the key is wrong or the tenant's API access is
//! switched off. Answer `{"success": true, "call_id": "..."}`.
//!
//! One `call.completed` webhook after every call that ends, signed
//! `X-Signature: hex(HMAC-SHA256(api key, raw body))` with the key that placed
//! the call; retried 30 s, 5 min and 30 min after a failure, then dropped;
//! each attempt waits at most 10 s for the answer.

use serde::Serialize;
use serde_json::value::RawValue;

use super::post_call::{EndedCall, Speaker};
use crate::ids::rfc3339_seconds;

pub const PATH: &str = "/api/trigger-call";
pub const HEADER_SIGNATURE: &str = "X-Signature";
pub const EVENT: &str = "call.completed";
/// Seconds between a failed attempt and the next (three retries, then dropped).
pub const RETRY_SCHEDULE: [u32; 3] = [30, 300, 1800];
pub const RESPONSE_TIMEOUT_SECONDS: u32 = 10;
pub const MAX_BODY_BYTES: usize = 32 * 1024;
const MAX_NAME_CHARS: usize = 200;
const MAX_EMAIL_CHARS: usize = 254;
const MAX_AGENT_ID_CHARS: usize = 64;

/// What a trigger-call request asks for, read leniently as the vendor's
/// server would (unknown fields ignored) but bounded.
#[derive(Debug, Clone)]
pub struct TriggerCall {
    pub phone: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub agent_id: Option<String>,
    /// The `metadata` object's JSON text, as sent (passed to the webhook).
    pub metadata: Option<Box<RawValue>>,
}

/// The errors this dialect answers. The document only fixes 403; the others
/// use its `{"success": ...}` shape with an `error` message (README).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BviError {
    /// Wrong or missing key, or API access switched off (the document's 403).
    Forbidden,
    /// The body or one field is not as the document says; the message names it.
    InvalidRequest(String),
    /// `agent_id` names no agent of the tenant, or no default agent is set.
    AgentNotFound,
    /// A call from this agent to this number is already queued or live.
    CallInProgress,
    RateLimited,
    Internal,
}

impl BviError {
    pub fn status(&self) -> u16 {
        match self {
            BviError::Forbidden => 403,
            BviError::InvalidRequest(_) | BviError::AgentNotFound => 400,
            BviError::CallInProgress => 409,
            BviError::RateLimited => 429,
            BviError::Internal => 500,
        }
    }

    pub fn message(&self) -> String {
        match self {
            BviError::Forbidden => "Forbidden: invalid API key or API access is disabled".into(),
            BviError::InvalidRequest(why) => why.clone(),
            BviError::AgentNotFound => {
                "No agent: agent_id names no agent and no default agent is set".into()
            }
            BviError::CallInProgress => "A call to this number is already in progress".into(),
            BviError::RateLimited => "Too many requests".into(),
            BviError::Internal => "Internal error".into(),
        }
    }

    /// `{"success":false,"error":"..."}`.
    pub fn body(&self) -> String {
        #[derive(Serialize)]
        struct Failed {
            success: bool,
            error: String,
        }
        serde_json::to_string(&Failed {
            success: false,
            error: self.message(),
        })
        .unwrap_or_default()
    }
}

impl From<&super::refusal::Refusal> for BviError {
    fn from(r: &super::refusal::Refusal) -> BviError {
        use super::refusal::Refusal as R;
        match r {
            // The document's one error: 403 for a wrong key or API access off.
            R::MissingCredentials
            | R::InvalidCredentials
            | R::AccessDisabled
            | R::InvalidSignature => BviError::Forbidden,
            R::AgentNotConfigured => BviError::AgentNotFound,
            R::AgentDisabled => BviError::InvalidRequest("The agent is disabled".into()),
            R::InvalidRequest(why) => BviError::InvalidRequest(why.clone()),
            R::CallInProgress => BviError::CallInProgress,
            R::RateLimited { .. } => BviError::RateLimited,
            R::AgentLookupFailed | R::Internal => BviError::Internal,
        }
    }
}

fn string_field(
    value: &serde_json::Value,
    name: &str,
    max_chars: usize,
) -> Result<Option<String>, BviError> {
    super::body::optional_string(value, name, max_chars).map_err(BviError::InvalidRequest)
}

/// Reads a trigger-call body. `phone` must be E.164 as the document says
/// (no normalisation: its users already send E.164).
pub fn read_trigger_call(body: &[u8]) -> Result<TriggerCall, BviError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(BviError::InvalidRequest(format!(
            "The body is larger than {MAX_BODY_BYTES} bytes"
        )));
    }
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|_| BviError::InvalidRequest("The body is not valid JSON".into()))?;
    if !value.is_object() {
        return Err(BviError::InvalidRequest(
            "The body must be a JSON object".into(),
        ));
    }
    let phone = string_field(&value, "phone", 32)?
        .ok_or_else(|| BviError::InvalidRequest("phone is required".into()))?;
    if super::phone::normalize(&phone).as_deref() != Some(phone.as_str()) {
        return Err(BviError::InvalidRequest(
            "phone must be in E.164 format (e.g. +15551234567)".into(),
        ));
    }
    let metadata = super::body::metadata(&value, body).map_err(BviError::InvalidRequest)?;
    Ok(TriggerCall {
        phone,
        name: string_field(&value, "name", MAX_NAME_CHARS)?,
        email: string_field(&value, "email", MAX_EMAIL_CHARS)?,
        agent_id: string_field(&value, "agent_id", MAX_AGENT_ID_CHARS)?,
        metadata,
    })
}

/// `{"success":true,"call_id":"..."}`, in the document's order.
pub fn accepted_body(call_id: &str) -> String {
    #[derive(Serialize)]
    struct Accepted<'a> {
        success: bool,
        call_id: &'a str,
    }
    serde_json::to_string(&Accepted {
        success: true,
        call_id,
    })
    .unwrap_or_default()
}

#[derive(Serialize)]
struct TranscriptEntry<'a> {
    role: &'static str,
    content: &'a str,
    timestamp: String,
}

/// Field order as in the document's example.
#[derive(Serialize)]
struct CallCompleted<'a> {
    event: &'static str,
    call_id: &'a str,
    agent_id: &'a str,
    agent_name: &'a str,
    direction: &'static str,
    phone_number: &'a str,
    duration_seconds: u64,
    started_at: String,
    ended_at: String,
    sentiment: Option<&'a str>,
    summary: Option<&'a str>,
    transcript: Vec<TranscriptEntry<'a>>,
    metadata: &'a RawValue,
}

/// The `call.completed` body for a call that ended (sent for every ended
/// call: a call nobody answered has `duration_seconds: 0` and no transcript).
/// Turn `timestamp`s are clock times: the answer plus the turn's offset.
pub fn call_completed_body(call: &EndedCall<'_>) -> String {
    let empty = RawValue::from_string("{}".into());
    let empty = match &empty {
        Ok(raw) => raw.as_ref(),
        Err(_) => unreachable!("`{{}}` is JSON"),
    };
    let answered = call.answered_ms.unwrap_or_else(|| call.started_ms());
    let body = CallCompleted {
        event: EVENT,
        call_id: call.call_id,
        agent_id: call.agent_id,
        agent_name: call.agent_name,
        direction: "outbound",
        phone_number: call.phone,
        duration_seconds: call.duration_seconds(),
        started_at: rfc3339_seconds(call.started_ms()),
        ended_at: rfc3339_seconds(call.ended_ms),
        sentiment: call.sentiment,
        summary: call.summary,
        transcript: call
            .turns
            .iter()
            .map(|t| TranscriptEntry {
                role: match t.speaker {
                    Speaker::Agent => "agent",
                    Speaker::Callee => "human",
                },
                content: t.text,
                timestamp: rfc3339_seconds(answered.saturating_add(t.start_ms)),
            })
            .collect(),
        metadata: call.metadata.unwrap_or(empty),
    };
    serde_json::to_string(&body).unwrap_or_default()
}

/// `X-Signature` for a body: hex HMAC-SHA256 keyed with the API key itself.
pub fn signature(api_key: &str, body: &[u8]) -> String {
    super::post_call::hex_hmac_sha256(api_key.as_bytes(), body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialects::post_call::test_call;

    #[test]
    fn trigger_call_as_the_documents_curl_sends_it() {
        let body = br#"{ "phone": "+15551234567", "name": "Jane Smith", "email": "jane@example.com", "agent_id": "optional-agent-uuid", "metadata": {"b": 1.50, "a": [1]} }"#;
        let got = read_trigger_call(body).unwrap();
        assert_eq!(got.phone, "+15551234567");
        assert_eq!(got.name.as_deref(), Some("Jane Smith"));
        assert_eq!(got.email.as_deref(), Some("jane@example.com"));
        assert_eq!(got.agent_id.as_deref(), Some("optional-agent-uuid"));
        assert_eq!(got.metadata.unwrap().get(), r#"{"b": 1.50, "a": [1]}"#);
        let bare = read_trigger_call(br#"{"phone":"+15551234567"}"#).unwrap();
        assert_eq!(
            (bare.name, bare.agent_id, bare.metadata.is_none()),
            (None, None, true)
        );
    }

    #[test]
    fn bad_bodies_are_400_with_the_field_named() {
        for (body, needle) in [
            (&br#"{}"#[..], "phone is required"),
            (br#"{"phone":"+1 555 123 4567"}"#, "E.164"),
            (br#"{"phone":15551234567}"#, "phone must be a string"),
            (
                br#"{"phone":"+15551234567","metadata":[1]}"#,
                "metadata must be an object",
            ),
            (
                br#"{"phone":"+15551234567","name":7}"#,
                "name must be a string",
            ),
            (br#"[1]"#, "JSON object"),
            (b"nope", "not valid JSON"),
        ] {
            let err = read_trigger_call(body).unwrap_err();
            assert_eq!(err.status(), 400);
            assert!(
                err.message().contains(needle),
                "{err:?} for {:?}",
                String::from_utf8_lossy(body)
            );
        }
        assert_eq!(
            BviError::Forbidden.body(),
            r#"{"success":false,"error":"Forbidden: invalid API key or API access is disabled"}"#
        );
        assert_eq!(
            accepted_body("call_1"),
            r#"{"success":true,"call_id":"call_1"}"#
        );
    }

    #[test]
    fn webhook_body_has_the_documents_fields_in_its_order() {
        let meta = RawValue::from_string(r#"{"source":"your-custom-field"}"#.into()).unwrap();
        let body = call_completed_body(&test_call::ended(Some(&meta)));
        assert_eq!(
            body,
            concat!(
                r#"{"event":"call.completed","call_id":"call_01","agent_id":"agt_01","agent_name":"Sales Qualifier","#,
                r#""direction":"outbound","phone_number":"+15551234567","duration_seconds":141,"#,
                r#""started_at":"2024-01-15T10:30:00Z","ended_at":"2024-01-15T10:32:21Z","sentiment":"positive","#,
                r#""summary":"Caller expressed interest.","transcript":["#,
                r#"{"role":"agent","content":"Hello, this is Sarah.","timestamp":"2024-01-15T10:30:01Z"},"#,
                r#"{"role":"human","content":"Hi, I was wondering about your pricing.","timestamp":"2024-01-15T10:30:05Z"}],"#,
                r#""metadata":{"source":"your-custom-field"}}"#
            )
        );
        let no_meta = call_completed_body(&test_call::ended(None));
        assert!(no_meta.ends_with(r#""metadata":{}}"#), "{no_meta}");
    }

    #[test]
    fn signature_is_keyed_with_the_api_key() {
        // python3 -c 'import hmac,hashlib;print(hmac.new(b"bvk_1",b"{}",hashlib.sha256).hexdigest())'
        assert_eq!(
            signature("bvk_1", b"{}"),
            "2881cd45a0be0dda4d532db65fa6bcd9c6fa442fb9f367c571c7298bb0876c2a"
        );
        assert_ne!(signature("bvk_1", b"{}"), signature("bvk_2", b"{}"));
    }
}

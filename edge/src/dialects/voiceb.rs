//! VoiceB click-to-call (seed document `voiceb-click-to-call.txt`).
//!
//! `POST /api/click-to-call`, headers `api-key` (the agent's API Token) and
//! `signature` (hex HMAC-SHA256 of the raw body with the agent's API Secret),
//! body `{"phone": "+34612345678"}`. Credentials belong to one agent.
//!
//! The signature has no timestamp, so an identical request sent again is
//! legitimate: repeats are bounded by `ctc:007` (one live call per agent and
//! number) and the rate limits, never refused as replays.
//!
//! Checks run in the document's table order: headers, key, agent, then the
//! signature (so a wrong key is `ctc:003` even when the signature is wrong too).

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

pub const PATH: &str = "/api/click-to-call";
pub const HEADER_KEY: &str = "api-key";
pub const HEADER_SIGNATURE: &str = "signature";
/// Longest body read (the document's body is one short field).
pub const MAX_BODY_BYTES: usize = 4 * 1024;
/// Longest header value looked at.
const MAX_HEADER_CHARS: usize = 256;

/// The document's error table, plus two of ours (`ctc:009`, `ctc:010`) for
/// what the table does not cover: a malformed body or phone number, and a rate
/// limit. Both are 4xx, so a client's "any 4xx is final" rule still holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtcError {
    MissingHeaders,
    ErrorFetchingAgent,
    InvalidApiKey,
    AgentDisabled,
    AgentNotConfigured,
    InvalidSignature,
    CallInProgress,
    ErrorInitiatingCall,
    InvalidRequest,
    TooManyRequests,
}

impl CtcError {
    pub const ALL: [CtcError; 10] = [
        CtcError::MissingHeaders,
        CtcError::ErrorFetchingAgent,
        CtcError::InvalidApiKey,
        CtcError::AgentDisabled,
        CtcError::AgentNotConfigured,
        CtcError::InvalidSignature,
        CtcError::CallInProgress,
        CtcError::ErrorInitiatingCall,
        CtcError::InvalidRequest,
        CtcError::TooManyRequests,
    ];

    /// (code, message, HTTP status), the first eight exactly as the document's table.
    pub fn parts(self) -> (&'static str, &'static str, u16) {
        match self {
            CtcError::MissingHeaders => ("ctc:001", "Missing headers", 400),
            CtcError::ErrorFetchingAgent => ("ctc:002", "Error fetching agent", 500),
            CtcError::InvalidApiKey => ("ctc:003", "Invalid API key", 403),
            CtcError::AgentDisabled => ("ctc:004", "Agent is disabled", 400),
            CtcError::AgentNotConfigured => ("ctc:005", "Agent not configured", 400),
            CtcError::InvalidSignature => ("ctc:006", "Invalid signature", 403),
            CtcError::CallInProgress => ("ctc:007", "Call already in progress", 400),
            CtcError::ErrorInitiatingCall => ("ctc:008", "Error initiating call", 500),
            CtcError::InvalidRequest => (
                "ctc:009",
                "Invalid request: phone must be a number with its country code",
                400,
            ),
            CtcError::TooManyRequests => ("ctc:010", "Too many requests", 429),
        }
    }

    pub fn status(self) -> u16 {
        self.parts().2
    }

    /// `{"code":"ctc:003","message":"Invalid API key"}` (the document shows
    /// codes and messages but no body; this is ours, documented in README).
    pub fn body(self) -> String {
        #[derive(Serialize)]
        struct Failed {
            code: &'static str,
            message: &'static str,
        }
        let (code, message, _) = self.parts();
        serde_json::to_string(&Failed { code, message }).unwrap_or_default()
    }
}

impl From<&super::refusal::Refusal> for CtcError {
    fn from(r: &super::refusal::Refusal) -> CtcError {
        use super::refusal::Refusal as R;
        match r {
            R::MissingCredentials => CtcError::MissingHeaders,
            // A disabled tenant's token is as good as unknown to its client.
            R::InvalidCredentials | R::AccessDisabled => CtcError::InvalidApiKey,
            R::AgentLookupFailed => CtcError::ErrorFetchingAgent,
            R::AgentDisabled => CtcError::AgentDisabled,
            R::AgentNotConfigured => CtcError::AgentNotConfigured,
            R::InvalidSignature => CtcError::InvalidSignature,
            R::InvalidRequest(_) => CtcError::InvalidRequest,
            R::CallInProgress => CtcError::CallInProgress,
            R::RateLimited { .. } => CtcError::TooManyRequests,
            R::Internal => CtcError::ErrorInitiatingCall,
        }
    }
}

/// The two headers, present and non-empty (else `ctc:001`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Headers<'a> {
    pub api_key: &'a str,
    pub signature: &'a str,
}

pub fn read_headers<'a>(
    api_key: Option<&'a str>,
    signature: Option<&'a str>,
) -> Result<Headers<'a>, CtcError> {
    let present = |v: Option<&'a str>| {
        v.map(str::trim)
            .filter(|v| !v.is_empty() && v.len() <= MAX_HEADER_CHARS)
    };
    match (present(api_key), present(signature)) {
        (Some(api_key), Some(signature)) => Ok(Headers { api_key, signature }),
        _ => Err(CtcError::MissingHeaders),
    }
}

/// The `signature` header against the raw body: hex (either case) of
/// HMAC-SHA256(secret, body), compared in constant time.
pub fn signature_matches(secret: &[u8], body: &[u8], signature_hex: &str) -> bool {
    let Ok(given) = hex::decode(signature_hex.trim()) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

/// The body's phone number, normalised to E.164 (see `dialects::phone`).
/// Unknown fields are ignored, as the vendor's own server would.
pub fn read_phone(body: &[u8]) -> Result<String, CtcError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(CtcError::InvalidRequest);
    }
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| CtcError::InvalidRequest)?;
    let phone = value
        .get("phone")
        .and_then(|p| p.as_str())
        .ok_or(CtcError::InvalidRequest)?;
    super::phone::normalize(phone).ok_or(CtcError::InvalidRequest)
}

/// The 200 answer (the document defines none): the call's id and status.
#[derive(Debug, Serialize)]
pub struct Accepted<'a> {
    pub success: bool,
    pub call_id: &'a str,
    pub status: &'a str,
}

pub fn accepted_body(call_id: &str, status: &str) -> String {
    serde_json::to_string(&Accepted {
        success: true,
        call_id,
        status,
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &str, body: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    #[test]
    fn error_table_is_the_documents() {
        let table: Vec<(&str, &str, u16)> = CtcError::ALL[..8].iter().map(|e| e.parts()).collect();
        assert_eq!(
            table,
            [
                ("ctc:001", "Missing headers", 400),
                ("ctc:002", "Error fetching agent", 500),
                ("ctc:003", "Invalid API key", 403),
                ("ctc:004", "Agent is disabled", 400),
                ("ctc:005", "Agent not configured", 400),
                ("ctc:006", "Invalid signature", 403),
                ("ctc:007", "Call already in progress", 400),
                ("ctc:008", "Error initiating call", 500),
            ]
        );
        assert_eq!(
            CtcError::InvalidApiKey.body(),
            r#"{"code":"ctc:003","message":"Invalid API key"}"#
        );
    }

    #[test]
    fn headers_must_both_be_there() {
        assert_eq!(read_headers(None, Some("s")), Err(CtcError::MissingHeaders));
        assert_eq!(read_headers(Some("k"), None), Err(CtcError::MissingHeaders));
        assert_eq!(
            read_headers(Some(" "), Some("s")),
            Err(CtcError::MissingHeaders)
        );
        let long = "a".repeat(300);
        assert_eq!(
            read_headers(Some(&long), Some("s")),
            Err(CtcError::MissingHeaders)
        );
        assert_eq!(
            read_headers(Some("k"), Some("s")),
            Ok(Headers {
                api_key: "k",
                signature: "s"
            })
        );
    }

    #[test]
    fn signature_is_hmac_of_the_raw_body() {
        // The document's Node sample signs JSON.stringify({phone}) and the
        // Python one json.dumps(...) (with a space): both are the raw body sent.
        for body in [
            r#"{"phone":"+34612345678"}"#,
            r#"{"phone": "+34612345678"}"#,
        ] {
            let sig = sign("secret", body);
            assert!(signature_matches(b"secret", body.as_bytes(), &sig));
            assert!(signature_matches(
                b"secret",
                body.as_bytes(),
                &sig.to_uppercase()
            ));
            assert!(!signature_matches(b"other", body.as_bytes(), &sig));
            assert!(!signature_matches(b"secret", b"{}", &sig));
        }
        assert!(!signature_matches(b"secret", b"{}", "not hex"));
        assert!(!signature_matches(b"secret", b"{}", ""));
    }

    #[test]
    fn phone_is_read_leniently_and_bad_bodies_are_ctc_009() {
        assert_eq!(
            read_phone(br#"{"phone":"+34 612 345 678"}"#),
            Ok("+34612345678".into())
        );
        assert_eq!(
            read_phone(br#"{"phone":"+34612345678","extra":1}"#),
            Ok("+34612345678".into())
        );
        for body in [
            &b"{}"[..],
            b"[]",
            b"not json",
            br#"{"phone":34612345678}"#,
            br#"{"phone":"612345678"}"#,
        ] {
            assert_eq!(read_phone(body), Err(CtcError::InvalidRequest));
        }
        let big = format!(
            r#"{{"phone":"+34612345678","pad":"{}"}}"#,
            "x".repeat(MAX_BODY_BYTES)
        );
        assert_eq!(read_phone(big.as_bytes()), Err(CtcError::InvalidRequest));
    }
}

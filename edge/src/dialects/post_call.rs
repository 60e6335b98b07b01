//! What every dialect's post-call webhook reads: a call that has ended, its
//! turns, and the two formats they share (RFC 3339 seconds, hex HMAC-SHA256).

/// Who spoke a transcript turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speaker {
    Agent,
    Callee,
}

/// One transcript turn, as the post-call webhooks read it.
#[derive(Debug, Clone, PartialEq)]
pub struct Turn<'a> {
    pub speaker: Speaker,
    pub text: &'a str,
    /// From the answer, in ms.
    pub start_ms: u64,
}

/// A call that has ended, as every dialect's post-call webhook reads it
/// (filled from the call record and its transcript at delivery time).
#[derive(Debug, Clone)]
pub struct EndedCall<'a> {
    pub call_id: &'a str,
    pub agent_id: &'a str,
    pub agent_name: &'a str,
    /// The number dialled (E.164).
    pub phone: &'a str,
    /// Our caller ID, when the trunk's is known.
    pub from_phone: Option<&'a str>,
    pub status: voxline_shared::CallStatus,
    /// Why it ended, when known (CodeB's `endedReason`).
    pub ended_reason: Option<voxline_shared::EndedReason>,
    /// Attempts started (1 once first dialled) and redials still allowed
    /// (CodeB's `attempt`, `retriesLeft`).
    pub attempt: u32,
    pub retries_left: u32,
    /// The callee's name (the request's `name`).
    pub name: Option<&'a str>,
    /// The caller-ID label the callee was shown (the request's
    /// `caller_name`, CodeB's `displayName`).
    pub caller_name: Option<&'a str>,
    pub email: Option<&'a str>,
    /// The request's `metadata` JSON text, as given.
    pub metadata: Option<&'a serde_json::value::RawValue>,
    pub language: &'a str,
    /// Unix ms: handed to a sidecar, answered, ended.
    pub dispatched_ms: Option<u64>,
    pub answered_ms: Option<u64>,
    pub ended_ms: u64,
    pub summary: Option<&'a str>,
    /// What the engine concluded (`outcome`), e.g. `account_setup`.
    pub outcome: Option<&'a str>,
    /// `positive` | `neutral` | `negative`, from the post-call analysis.
    pub sentiment: Option<&'a str>,
    pub turns: Vec<Turn<'a>>,
    /// An absolute URL that serves the recording, when there is one.
    pub recording_url: Option<String>,
}

impl EndedCall<'_> {
    /// When the call started: answered, else handed to a sidecar, else its end.
    pub fn started_ms(&self) -> u64 {
        self.answered_ms
            .or(self.dispatched_ms)
            .unwrap_or(self.ended_ms)
    }

    /// Seconds talked (0 when never answered).
    pub fn duration_seconds(&self) -> u64 {
        match self.answered_ms {
            Some(a) => self.ended_ms.saturating_sub(a) / 1000,
            None => 0,
        }
    }
}

pub use voxline_shared::analysis::{sentiment, Sentiment};

/// Hex HMAC-SHA256 of `body` with `key`: how BuildVoiceAI and Calldock sign.
pub fn hex_hmac_sha256(key: &[u8], body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = match Hmac::<sha2::Sha256>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
pub(crate) mod test_call {
    use super::*;
    use voxline_shared::CallStatus;

    /// The call of the seeds' examples: answered 2024-01-15T10:30:00Z, 141 s.
    pub fn ended<'a>(metadata: Option<&'a serde_json::value::RawValue>) -> EndedCall<'a> {
        EndedCall {
            call_id: "call_01",
            agent_id: "agt_01",
            agent_name: "Sales Qualifier",
            phone: "+15551234567",
            from_phone: Some("+13239776447"),
            status: CallStatus::Completed,
            ended_reason: Some(voxline_shared::EndedReason::CalleeHangup),
            attempt: 1,
            retries_left: 0,
            name: Some("Jane Smith"),
            caller_name: None,
            email: Some("jane@example.com"),
            metadata,
            language: "en",
            dispatched_ms: Some(1_705_314_595_000),
            answered_ms: Some(1_705_314_600_000),
            ended_ms: 1_705_314_741_400,
            summary: Some("Caller expressed interest."),
            outcome: Some("account_setup"),
            sentiment: Some("positive"),
            turns: vec![
                Turn {
                    speaker: Speaker::Agent,
                    text: "Hello, this is Sarah.",
                    start_ms: 1_200,
                },
                Turn {
                    speaker: Speaker::Callee,
                    text: "Hi, I was wondering about your pricing.",
                    start_ms: 5_000,
                },
            ],
            recording_url: Some("https://edge.example/v1/calls/call_01/recording".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::rfc3339_seconds;

    #[test]
    fn times_and_durations() {
        let call = test_call::ended(None);
        assert_eq!(rfc3339_seconds(call.started_ms()), "2024-01-15T10:30:00Z");
        assert_eq!(call.duration_seconds(), 141);
        let never = EndedCall {
            answered_ms: None,
            ..call
        };
        assert_eq!(never.duration_seconds(), 0);
        assert_eq!(rfc3339_seconds(never.started_ms()), "2024-01-15T10:29:55Z");
        assert_eq!(rfc3339_seconds(u64::MAX), "1970-01-01T00:00:00Z");
    }
}

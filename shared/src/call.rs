//! The call lifecycle vocabulary shared by the edge API and the sidecar protocol.

use serde::{Deserialize, Serialize};

/// Where a call is in its life. The wire form is the snake_case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallStatus {
    /// Accepted, waiting for a sidecar to take it.
    Queued,
    /// Accepted with a future `schedule_at`; becomes `queued` at that time.
    Scheduled,
    /// A sidecar holds it and is sending the INVITE.
    Dialing,
    /// The callee's phone rings (180/183 seen).
    Ringing,
    /// Answered; audio flows between the callee and the AI engine.
    InProgress,
    /// Ended after being answered.
    Completed,
    /// Ended with an error (trunk, media, engine, ...). See `ended_reason`.
    Failed,
    /// Nobody answered within the ring timeout.
    NoAnswer,
    /// The callee was busy (`ended_reason` `busy`) or declined
    /// (`declined`, never dialled again).
    Busy,
    /// Hung up through the API before it was answered, or never dialled.
    Cancelled,
}

impl CallStatus {
    pub const ALL: [CallStatus; 10] = [
        CallStatus::Queued,
        CallStatus::Scheduled,
        CallStatus::Dialing,
        CallStatus::Ringing,
        CallStatus::InProgress,
        CallStatus::Completed,
        CallStatus::Failed,
        CallStatus::NoAnswer,
        CallStatus::Busy,
        CallStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CallStatus::Queued => "queued",
            CallStatus::Scheduled => "scheduled",
            CallStatus::Dialing => "dialing",
            CallStatus::Ringing => "ringing",
            CallStatus::InProgress => "in_progress",
            CallStatus::Completed => "completed",
            CallStatus::Failed => "failed",
            CallStatus::NoAnswer => "no_answer",
            CallStatus::Busy => "busy",
            CallStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<CallStatus> {
        CallStatus::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// A terminal status never changes again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            CallStatus::Completed
                | CallStatus::Failed
                | CallStatus::NoAnswer
                | CallStatus::Busy
                | CallStatus::Cancelled
        )
    }

    /// Not yet handed to a sidecar: hanging up needs no media action.
    pub fn is_waiting(self) -> bool {
        matches!(self, CallStatus::Queued | CallStatus::Scheduled)
    }
}

/// Why a call ended. Kept next to the terminal status so users can tell
/// "the callee hung up" from "we hung up" from "the trunk refused".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndedReason {
    /// Hung up through `POST /v1/calls/{id}/hangup`.
    HangupRequested,
    CalleeHangup,
    AgentHangup,
    MaxDurationReached,
    NoAnswer,
    Busy,
    /// The callee declined the call (SIP 603): never dialled again.
    Declined,
    /// The trunk or network gave a definite refusal (404, 410, 484, 604, ...).
    Rejected,
    TrunkError,
    MediaLost,
    EngineError,
    /// The edge could not queue the call for dialing.
    DispatchUnavailable,
    /// Neither side said anything for the call's `silence_timeout_seconds`.
    SilenceTimeout,
    /// Answering-machine detection heard a machine and the call's `amd` is
    /// `hangup` (issue 18): we hung up without speaking.
    AnsweringMachine,
    /// The agent transferred the callee (issue 16, the `transfer` tool):
    /// by REFER (the trunk took the call over and our side hung up), or
    /// bridged to a second leg that then ended (either side hung up).
    Transferred,
    /// Nobody answered a person's call and the caller left a message
    /// (issue 16: the profile's voicemail); the message is the recording.
    Voicemail,
    /// The caller waited a queue's longest wait and nobody answered, with
    /// no agent to overflow to (issue 16).
    QueueTimeout,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_round_trip_through_serde_and_parse() {
        for s in CallStatus::ALL {
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
            assert_eq!(CallStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(CallStatus::parse("nope"), None);
    }

    #[test]
    fn only_end_states_are_terminal() {
        let terminal: Vec<_> = CallStatus::ALL
            .into_iter()
            .filter(|s| s.is_terminal())
            .collect();
        assert_eq!(terminal.len(), 5);
        assert!(!CallStatus::Queued.is_terminal());
        assert!(CallStatus::Scheduled.is_waiting());
        assert!(!CallStatus::Dialing.is_waiting());
    }
}

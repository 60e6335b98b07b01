//! Patterns, enumerations and ranges the document states that the validators
//! check with code rather than read from [`crate::limits`]; the tests pin each
//! against the validators.

use crate::limits::SILENCE_TIMEOUT_SECONDS;
use voxline_shared::EndedReason;

pub(super) const SILENCE_TIMEOUT: (i64, i64, i64) = (
    SILENCE_TIMEOUT_SECONDS.0,
    SILENCE_TIMEOUT_SECONDS.1,
    crate::model::DEFAULT_SILENCE_TIMEOUT_SECONDS as i64,
);
/// E.164 as `validate::check_e164` reads it.
pub const E164_PATTERN: &str = r"^\+[1-9][0-9]{6,14}$";
/// `validate::check_email`: one `@`, a dotted domain that neither starts nor ends with a dot,
/// no whitespace or control characters.
pub const EMAIL_PATTERN: &str = r"^[^@\s\x00-\x1f\x7f-\x9f]+@[^@\s.\x00-\x1f\x7f-\x9f][^@\s\x00-\x1f\x7f-\x9f]*\.[^@\s\x00-\x1f\x7f-\x9f]*[^@\s.\x00-\x1f\x7f-\x9f]$";
/// `traffic::is_valid_idempotency_key`: visible ASCII.
pub(super) const IDEMPOTENCY_KEY_PATTERN: &str = r"^[!-~]+$";
/// `schedule_at`: RFC 3339 (`format: date-time`) in UTC, as `ids::parse_rfc3339_utc_ms` reads it.
pub(super) const SCHEDULE_AT_PATTERN: &str =
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-]00:00)$";
/// The shape of a webhook URL that `url_guard` then judges: http(s), no `user:pass@`, no
/// whitespace or control characters. (Whether the host is public is not a shape: 422 `invalid_url`.)
pub(super) const WEBHOOK_URL_PATTERN: &str =
    r"^[Hh][Tt][Tt][Pp][Ss]?://[^@/?#\\\s\x00-\x1f\x7f-\x9f]+([/?#\\][^\s\x00-\x1f\x7f-\x9f]*)?$";
/// The same for an engine endpoint: ws(s).
pub(super) const ENGINE_URL_PATTERN: &str =
    r"^[Ww][Ss][Ss]?://[^@/?#\\\s\x00-\x1f\x7f-\x9f]+([/?#\\][^\s\x00-\x1f\x7f-\x9f]*)?$";
/// A voice name (`validate::voice`).
pub const VOICE_PATTERN: &str = r"^[A-Za-z0-9._-]+$";
/// `Fields::str_req`: not empty or only whitespace.
pub(super) const NOT_BLANK_PATTERN: &str = r"\S";
/// `validate::caller_name`: no control character, not only whitespace.
pub(super) const CALLER_NAME_PATTERN: &str =
    r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$";
/// Every [`EndedReason`], in declaration order. `ended_reason_index` below
/// matches exhaustively, so a new variant does not compile until listed here.
pub(super) const ENDED_REASONS: [EndedReason; 17] = [
    EndedReason::HangupRequested,
    EndedReason::CalleeHangup,
    EndedReason::AgentHangup,
    EndedReason::MaxDurationReached,
    EndedReason::NoAnswer,
    EndedReason::Busy,
    EndedReason::Declined,
    EndedReason::Rejected,
    EndedReason::TrunkError,
    EndedReason::MediaLost,
    EndedReason::EngineError,
    EndedReason::DispatchUnavailable,
    EndedReason::SilenceTimeout,
    EndedReason::AnsweringMachine,
    EndedReason::Transferred,
    EndedReason::Voicemail,
    EndedReason::QueueTimeout,
];
#[allow(dead_code)] // exists for its exhaustiveness; the tests call it
pub(super) fn ended_reason_index(r: EndedReason) -> usize {
    match r {
        EndedReason::HangupRequested => 0,
        EndedReason::CalleeHangup => 1,
        EndedReason::AgentHangup => 2,
        EndedReason::MaxDurationReached => 3,
        EndedReason::NoAnswer => 4,
        EndedReason::Busy => 5,
        EndedReason::Declined => 6,
        EndedReason::Rejected => 7,
        EndedReason::TrunkError => 8,
        EndedReason::MediaLost => 9,
        EndedReason::EngineError => 10,
        EndedReason::DispatchUnavailable => 11,
        EndedReason::SilenceTimeout => 12,
        EndedReason::AnsweringMachine => 13,
        EndedReason::Transferred => 14,
        EndedReason::Voicemail => 15,
        EndedReason::QueueTimeout => 16,
    }
}
pub(super) const SIDECAR_ID_PATTERN: &str = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$";

/// A directory user's or queue's `pk` in a path: 1-18 digits, no leading zero.
pub(super) const PK_PATTERN: &str = "^[1-9][0-9]{0,15}$";

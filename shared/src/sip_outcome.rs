//! What a final SIP response to our INVITE means for a call, in one table
//! that both halves use: the sidecar for the call's status and reason and for
//! trunk failover ([`sip_final`]), the edge for whether the call is dialled
//! again per its `retries` ([`worth_redialling`]).
//!
//! | code | status / reason | next trunk | redial per `retries` |
//! |---|---|---|---|
//! | 408 Request Timeout, 480 Temporarily Unavailable | `no_answer` / `no_answer` | yes | yes |
//! | 487 Request Terminated (our CANCEL) | `no_answer` / `no_answer` | no | yes |
//! | 486 Busy Here, 600 Busy Everywhere | `busy` / `busy` | no | yes |
//! | 603 Decline | `busy` / `declined` | no | **never** |
//! | 401, 407 (our credentials refused) | `failed` / `trunk_error` | no | yes |
//! | 5xx (503, 504, 500, ...) | `failed` / `trunk_error` | yes | yes |
//! | 422 Session Interval Too Small (after our retries with its Min-SE) | `failed` / `trunk_error` | yes | never |
//! | 3xx (a redirect not followed: no allowed target, a loop, or past the limit) | `failed` / `rejected` | yes | never |
//! | other 4xx (404, 410, 484, 403, 488, ...) | `failed` / `rejected` | no | never |
//! | other 6xx (604, 606, ...) | `failed` / `rejected` | no | never |
//!
//! A 6xx is final everywhere (RFC 3261 §21.6): no other trunk is tried, and
//! only 600 (busy, a later call may find the line free) is dialled again.
//! Definite answers about the number (404 Not Found, 410 Gone, 484 Address
//! Incomplete, 604 Does Not Exist Anywhere) would get the same answer again.

use crate::call::{CallStatus, EndedReason};

/// The outcome of a final (non-2xx) response to the INVITE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SipFinal {
    pub status: CallStatus,
    pub reason: EndedReason,
    /// The trunk did not take the call: try the next trunk, if any.
    pub next_trunk: bool,
    /// The call may be dialled again later (per its `retries`).
    pub redial: bool,
}

/// The table in the module docs. Codes outside 300-699 (a malformed answer)
/// read as a trunk error.
pub fn sip_final(code: u16) -> SipFinal {
    use CallStatus as S;
    use EndedReason as R;
    let (status, reason, next_trunk, redial) = match code {
        408 | 480 => (S::NoAnswer, R::NoAnswer, true, true),
        487 => (S::NoAnswer, R::NoAnswer, false, true),
        486 | 600 => (S::Busy, R::Busy, false, true),
        603 => (S::Busy, R::Declined, false, false),
        401 | 407 => (S::Failed, R::TrunkError, false, true),
        // The sidecar already asked again with the 422's Min-SE: this trunk
        // and our session-timer settings disagree; another trunk may not.
        422 => (S::Failed, R::TrunkError, true, false),
        500..=599 => (S::Failed, R::TrunkError, true, true),
        // The sidecar follows the 301/302s it may; what reaches here this
        // trunk could not route for us, another trunk may.
        300..=399 => (S::Failed, R::Rejected, true, false),
        400..=499 | 600..=699 => (S::Failed, R::Rejected, false, false),
        _ => (S::Failed, R::TrunkError, false, true),
    };
    SipFinal {
        status,
        reason,
        next_trunk,
        redial,
    }
}

/// Whether an attempt that ended this way is dialled again while the call's
/// `retries` last: only unanswered, busy or failed attempts, never one hung up
/// through the API or declined, and never one whose final SIP answer (3xx-6xx)
/// the table says is definite.
pub fn worth_redialling(status: CallStatus, reason: EndedReason, sip_code: Option<u16>) -> bool {
    let by_status = matches!(
        status,
        CallStatus::NoAnswer | CallStatus::Busy | CallStatus::Failed
    );
    let by_reason = !matches!(reason, EndedReason::HangupRequested | EndedReason::Declined);
    let by_code = sip_code
        .filter(|c| (300..700).contains(c))
        .is_none_or(|c| sip_final(c).redial);
    by_status && by_reason && by_code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table() {
        use CallStatus as S;
        use EndedReason as R;
        let cases = [
            (408, S::NoAnswer, R::NoAnswer, true, true),
            (480, S::NoAnswer, R::NoAnswer, true, true),
            (487, S::NoAnswer, R::NoAnswer, false, true),
            (486, S::Busy, R::Busy, false, true),
            (600, S::Busy, R::Busy, false, true),
            (603, S::Busy, R::Declined, false, false),
            (401, S::Failed, R::TrunkError, false, true),
            (407, S::Failed, R::TrunkError, false, true),
            (422, S::Failed, R::TrunkError, true, false),
            (500, S::Failed, R::TrunkError, true, true),
            (503, S::Failed, R::TrunkError, true, true),
            (504, S::Failed, R::TrunkError, true, true),
            (302, S::Failed, R::Rejected, true, false),
            (403, S::Failed, R::Rejected, false, false),
            (404, S::Failed, R::Rejected, false, false),
            (410, S::Failed, R::Rejected, false, false),
            (484, S::Failed, R::Rejected, false, false),
            (488, S::Failed, R::Rejected, false, false),
            (604, S::Failed, R::Rejected, false, false),
            (606, S::Failed, R::Rejected, false, false),
            (699, S::Failed, R::Rejected, false, false),
            (0, S::Failed, R::TrunkError, false, true),
            (u16::MAX, S::Failed, R::TrunkError, false, true),
        ];
        for (code, status, reason, next_trunk, redial) in cases {
            assert_eq!(
                sip_final(code),
                SipFinal {
                    status,
                    reason,
                    next_trunk,
                    redial
                },
                "{code}"
            );
        }
    }

    #[test]
    fn no_6xx_tries_another_trunk() {
        for code in 600..700 {
            assert!(!sip_final(code).next_trunk, "{code}");
        }
    }

    #[test]
    fn declined_and_definite_answers_are_never_redialled() {
        use CallStatus as S;
        use EndedReason as R;
        assert!(!worth_redialling(S::Busy, R::Declined, Some(603)));
        // A sidecar older than the table reported 603 as busy: the code decides.
        assert!(!worth_redialling(S::Busy, R::Busy, Some(603)));
        assert!(!worth_redialling(S::Failed, R::Rejected, Some(404)));
        assert!(!worth_redialling(S::Failed, R::Rejected, Some(604)));
        assert!(!worth_redialling(S::Cancelled, R::HangupRequested, None));
        assert!(!worth_redialling(
            S::NoAnswer,
            R::HangupRequested,
            Some(487)
        ));
        assert!(!worth_redialling(S::Completed, R::CalleeHangup, Some(200)));
        assert!(worth_redialling(S::Busy, R::Busy, Some(486)));
        assert!(worth_redialling(S::Busy, R::Busy, Some(600)));
        assert!(worth_redialling(S::NoAnswer, R::NoAnswer, Some(487)));
        assert!(worth_redialling(S::NoAnswer, R::NoAnswer, Some(480)));
        assert!(worth_redialling(S::Failed, R::TrunkError, Some(503)));
        assert!(worth_redialling(S::Failed, R::TrunkError, None));
        assert!(worth_redialling(S::Failed, R::MediaLost, None));
        // A failure after the 200 (e.g. no common codec) is not vetoed by it.
        assert!(worth_redialling(S::Failed, R::TrunkError, Some(200)));
    }
}

//! The call state machine at the edge: applies a [`CallUpdate`] from the
//! dispatch queue to a call record, or rejects an illegal transition (which
//! the caller logs and drops; the record stays as it was).
//!
//! queued|scheduled -> dialing -> ringing -> in_progress -> completed|failed|...
//! An unsuccessful attempt with retries left goes back to `scheduled` with
//! `next_attempt_at`; terminal statuses never change again.

use crate::dispatch::queue::{CallChange, CallUpdate};
use crate::ids::rfc3339_ms;
use crate::model::CallRecord;
use voxline_shared::CallStatus;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IllegalTransition {
    pub from: CallStatus,
    pub change: &'static str,
}

impl std::fmt::Display for IllegalTransition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "illegal transition: {} on a {} call",
            self.change,
            self.from.as_str()
        )
    }
}

fn change_name(c: &CallChange) -> &'static str {
    match c {
        CallChange::Released => "released",
        CallChange::Dialing { .. } => "dialing",
        CallChange::Ringing => "ringing",
        CallChange::Answered => "answered",
        CallChange::RetryScheduled { .. } => "retry_scheduled",
        CallChange::Ended { .. } => "ended",
    }
}

pub fn apply(record: &mut CallRecord, update: &CallUpdate) -> Result<(), IllegalTransition> {
    use CallStatus::*;
    let from = record.status;
    let illegal = || IllegalTransition {
        from,
        change: change_name(&update.change),
    };
    let at = rfc3339_ms(update.at_ms);
    match &update.change {
        CallChange::Released => match from {
            Scheduled => record.status = Queued,
            _ => return Err(illegal()),
        },
        CallChange::Dialing { attempt, .. } => match from {
            Queued | Scheduled => {
                record.status = Dialing;
                record.attempts = *attempt;
                record.dispatched_at = Some(at.clone());
                record.ringing_at = None;
                record.answered_at = None;
                record.next_attempt_at = None;
            }
            _ => return Err(illegal()),
        },
        CallChange::Ringing => match from {
            Dialing => {
                record.status = Ringing;
                record.ringing_at = Some(at.clone());
            }
            _ => return Err(illegal()),
        },
        CallChange::Answered => match from {
            Dialing | Ringing => {
                record.status = InProgress;
                record.answered_at = Some(at.clone());
            }
            _ => return Err(illegal()),
        },
        CallChange::RetryScheduled {
            reason,
            sip_code,
            retry_at_ms,
            ..
        } => match from {
            Dialing | Ringing | InProgress => {
                record.status = Scheduled;
                record.ended_reason = Some(*reason);
                record.sip_code = *sip_code;
                record.next_attempt_at = Some(rfc3339_ms(*retry_at_ms));
            }
            _ => return Err(illegal()),
        },
        CallChange::Ended {
            status,
            reason,
            sip_code,
        } => {
            if from.is_terminal() || !status.is_terminal() {
                return Err(illegal());
            }
            record.status = *status;
            record.ended_reason = Some(*reason);
            record.sip_code = *sip_code;
            record.ended_at = Some(at.clone());
            record.next_attempt_at = None;
        }
    }
    record.updated_at = at;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use voxline_shared::EndedReason;

    fn record(status: CallStatus) -> CallRecord {
        CallRecord {
            retries: 1,
            retry_delay_minutes: 1,
            ..crate::model::test_call(status)
        }
    }

    fn up(change: CallChange) -> CallUpdate {
        CallUpdate {
            call_id: "call_1".into(),
            tenant_id: "ten_1".into(),
            at_ms: 1_000,
            change,
        }
    }

    #[test]
    fn a_call_walks_the_happy_path() {
        let mut r = record(CallStatus::Queued);
        apply(
            &mut r,
            &up(CallChange::Dialing {
                sidecar_id: "s".into(),
                attempt: 1,
            }),
        )
        .unwrap();
        apply(&mut r, &up(CallChange::Ringing)).unwrap();
        apply(&mut r, &up(CallChange::Answered)).unwrap();
        let end = CallChange::Ended {
            status: CallStatus::Completed,
            reason: EndedReason::CalleeHangup,
            sip_code: None,
        };
        apply(&mut r, &up(end.clone())).unwrap();
        assert_eq!(
            (r.status, r.attempts, r.ended_reason),
            (CallStatus::Completed, 1, Some(EndedReason::CalleeHangup))
        );
        assert!(
            r.dispatched_at.is_some()
                && r.ringing_at.is_some()
                && r.answered_at.is_some()
                && r.ended_at.is_some()
        );
        assert_eq!(
            apply(&mut r, &up(end)).unwrap_err().from,
            CallStatus::Completed,
            "terminal stays terminal"
        );
    }

    #[test]
    fn illegal_transitions_leave_the_record_alone() {
        let mut r = record(CallStatus::Queued);
        let before = r.clone();
        assert!(apply(&mut r, &up(CallChange::Answered)).is_err());
        assert!(apply(&mut r, &up(CallChange::Released)).is_err());
        let not_terminal = CallChange::Ended {
            status: CallStatus::Ringing,
            reason: EndedReason::Busy,
            sip_code: None,
        };
        assert!(apply(&mut r, &up(not_terminal)).is_err());
        assert_eq!(r, before);
    }

    #[test]
    fn retry_goes_back_to_scheduled_then_dials_again() {
        let mut r = record(CallStatus::Queued);
        apply(
            &mut r,
            &up(CallChange::Dialing {
                sidecar_id: "s".into(),
                attempt: 1,
            }),
        )
        .unwrap();
        let retry = CallChange::RetryScheduled {
            status: CallStatus::Busy,
            reason: EndedReason::Busy,
            sip_code: Some(486),
            retry_at_ms: 61_000,
        };
        apply(&mut r, &up(retry)).unwrap();
        assert_eq!(
            (r.status, r.sip_code, r.next_attempt_at.as_deref()),
            (
                CallStatus::Scheduled,
                Some(486),
                Some("1970-01-01T00:01:01.000Z")
            )
        );
        apply(
            &mut r,
            &up(CallChange::Dialing {
                sidecar_id: "s".into(),
                attempt: 2,
            }),
        )
        .unwrap();
        assert_eq!(
            (r.status, r.attempts, r.next_attempt_at.clone()),
            (CallStatus::Dialing, 2, None)
        );
    }
}

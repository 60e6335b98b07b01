//! Ringing a person (issue 16), the pure part: an inbound call the edge
//! routes to a user ([`voxline_shared::sidecar_link::RingUser`]) forks one
//! INVITE to each of the user's contacts registered here while the caller
//! hears ringback (the trunk leg stays at 180). [`RingFork`] decides, fed
//! the legs' outcomes and time, what the driver does next (RFC 3261
//! 16.7's forking rules, as a B2BUA applies them):
//! - the first 2xx wins: the other legs are cancelled, and the caller's
//!   leg is answered and bridged to the winner ([`ForkAction::Connect`]);
//!   a later 2xx from another leg gets a BYE;
//! - every leg failing, or nothing answering within the ring timeout,
//!   ends the call: `486` / `busy` when a phone said busy or declined,
//!   else `480` / `no_answer` ([`ForkAction::Refuse`]);
//! - the caller hanging up (CANCEL) before an answer cancels every leg.
//!
//! Not wired into the call task yet: the driver that dials the legs and
//! relays media (`super::transfer::Relay`) is the next slice.

use std::time::{Duration, Instant};

use voxline_shared::{CallStatus, EndedReason};

/// The most phones one call rings (the edge holds at most this many
/// bindings per user).
pub const MAX_FORKED_LEGS: usize = voxline_shared::sidecar_link::MAX_PHONE_CONTACTS;

/// Where one forked leg is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LegState {
    /// INVITE sent, nothing final yet (ringing or not).
    Trying,
    /// Answered: the winner.
    Won,
    /// Refused or lost, with its final code if any.
    Failed(Option<u16>),
    /// Cancelled (or hung up) by us.
    Dropped,
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForkAction {
    /// Send an INVITE to contact `contact` (index into the contacts given).
    Dial { leg: usize },
    /// The first phone rings: report `ringing` (the caller already hears
    /// ringback).
    Ringing,
    /// CANCEL leg `leg` (not answered), or BYE it (answered after another).
    Drop { leg: usize },
    /// Answer the caller (200 with our SDP) and bridge them to `leg`.
    Connect { leg: usize },
    /// Refuse the caller with `sip_code` and end the call so.
    Refuse {
        sip_code: u16,
        status: CallStatus,
        reason: EndedReason,
    },
    /// The caller gave up before an answer: end the call `cancelled`.
    CallerGone,
}

/// One inbound call's fork to a person's phones, sans-IO.
#[derive(Debug, Clone)]
pub struct RingFork {
    legs: Vec<LegState>,
    deadline: Instant,
    rang: bool,
    finished: bool,
}

impl RingFork {
    /// Forks to `contacts` phones (at most [`MAX_FORKED_LEGS`]) until
    /// `now + ring_timeout`. No phone: the caller is refused at once.
    pub fn start(
        contacts: usize,
        now: Instant,
        ring_timeout: Duration,
    ) -> (RingFork, Vec<ForkAction>) {
        let n = contacts.min(MAX_FORKED_LEGS);
        let mut fork = RingFork {
            legs: vec![LegState::Trying; n],
            deadline: now + ring_timeout,
            rang: false,
            finished: false,
        };
        if n == 0 {
            let out = fork.give_up();
            return (fork, out);
        }
        let out = (0..n).map(|leg| ForkAction::Dial { leg }).collect();
        (fork, out)
    }

    /// The leg that answered first, once one did.
    pub fn winner(&self) -> Option<usize> {
        self.legs.iter().position(|s| *s == LegState::Won)
    }

    /// Whether the fork has decided (connected, refused or cancelled).
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// When [`RingFork::handle_timeout`] is due, while still ringing.
    pub fn poll_timeout(&self) -> Option<Instant> {
        (!self.finished).then_some(self.deadline)
    }

    /// Leg `leg` sent a provisional response (180/183).
    pub fn leg_ringing(&mut self, leg: usize) -> Vec<ForkAction> {
        if self.finished || self.legs.get(leg) != Some(&LegState::Trying) || self.rang {
            return Vec::new();
        }
        self.rang = true;
        vec![ForkAction::Ringing]
    }

    /// Leg `leg` answered (2xx).
    pub fn leg_answered(&mut self, leg: usize) -> Vec<ForkAction> {
        match self.legs.get(leg) {
            Some(LegState::Trying) => {}
            // Its 200 crossed our CANCEL: hung up (BYE), never connected.
            Some(LegState::Dropped) => return vec![ForkAction::Drop { leg }],
            _ => return Vec::new(),
        }
        if self.finished {
            // Too late (timed out, refused, or another leg won): hang it up.
            self.legs[leg] = LegState::Dropped;
            return vec![ForkAction::Drop { leg }];
        }
        self.legs[leg] = LegState::Won;
        self.finished = true;
        let mut out = self.drop_trying();
        out.push(ForkAction::Connect { leg });
        out
    }

    /// Leg `leg` failed: a final non-2xx `sip_code`, or lost (`None`).
    pub fn leg_failed(&mut self, leg: usize, sip_code: Option<u16>) -> Vec<ForkAction> {
        if self.legs.get(leg) != Some(&LegState::Trying) {
            return Vec::new();
        }
        self.legs[leg] = LegState::Failed(sip_code);
        if self.finished || self.legs.contains(&LegState::Trying) {
            return Vec::new();
        }
        self.give_up()
    }

    /// The caller cancelled before an answer.
    pub fn caller_cancelled(&mut self) -> Vec<ForkAction> {
        if self.finished {
            return Vec::new();
        }
        self.finished = true;
        let mut out = self.drop_trying();
        out.push(ForkAction::CallerGone);
        out
    }

    /// Time passed: at the deadline, nobody answered.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<ForkAction> {
        if self.finished || now < self.deadline {
            return Vec::new();
        }
        let mut out = self.drop_trying();
        out.extend(self.give_up());
        out
    }

    /// Cancels every leg still trying.
    fn drop_trying(&mut self) -> Vec<ForkAction> {
        let mut out = Vec::new();
        for (leg, s) in self.legs.iter_mut().enumerate() {
            if *s == LegState::Trying {
                *s = LegState::Dropped;
                out.push(ForkAction::Drop { leg });
            }
        }
        out
    }

    /// Nobody will answer: busy if a phone said so (486, 600) or declined
    /// (603), else no answer.
    fn give_up(&mut self) -> Vec<ForkAction> {
        self.finished = true;
        let busy = self
            .legs
            .iter()
            .any(|s| matches!(s, LegState::Failed(Some(486 | 600 | 603))));
        let (sip_code, status, reason) = if busy {
            (486, CallStatus::Busy, EndedReason::Busy)
        } else {
            (480, CallStatus::NoAnswer, EndedReason::NoAnswer)
        };
        vec![ForkAction::Refuse {
            sip_code,
            status,
            reason,
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RING: Duration = Duration::from_secs(30);

    fn no_answer() -> ForkAction {
        ForkAction::Refuse {
            sip_code: 480,
            status: CallStatus::NoAnswer,
            reason: EndedReason::NoAnswer,
        }
    }

    fn busy() -> ForkAction {
        ForkAction::Refuse {
            sip_code: 486,
            status: CallStatus::Busy,
            reason: EndedReason::Busy,
        }
    }

    #[test]
    fn every_phone_is_dialled_and_the_first_answer_wins_the_others_cancelled() {
        let t0 = Instant::now();
        let (mut f, out) = RingFork::start(3, t0, RING);
        assert_eq!(
            out,
            vec![
                ForkAction::Dial { leg: 0 },
                ForkAction::Dial { leg: 1 },
                ForkAction::Dial { leg: 2 }
            ]
        );
        assert_eq!(f.leg_ringing(1), vec![ForkAction::Ringing]);
        assert_eq!(f.leg_ringing(0), vec![], "ringing is reported once");
        assert_eq!(f.leg_failed(2, Some(486)), vec![]);
        assert_eq!(
            f.leg_answered(1),
            vec![ForkAction::Drop { leg: 0 }, ForkAction::Connect { leg: 1 }]
        );
        assert_eq!(f.winner(), Some(1));
        assert!(f.is_finished());
        assert_eq!(f.poll_timeout(), None);
        // The cancelled phone answered anyway (crossing 200): hung up.
        assert_eq!(f.leg_answered(0), vec![ForkAction::Drop { leg: 0 }]);
        // A later failure, the timeout and a late CANCEL change nothing.
        assert_eq!(f.leg_failed(0, Some(487)), vec![]);
        assert_eq!(f.handle_timeout(t0 + RING), vec![]);
        assert_eq!(f.caller_cancelled(), vec![]);
        assert_eq!(f.winner(), Some(1));
    }

    #[test]
    fn nobody_answering_by_the_ring_timeout_cancels_every_phone_and_ends_no_answer() {
        let t0 = Instant::now();
        let (mut f, _) = RingFork::start(2, t0, RING);
        assert_eq!(f.poll_timeout(), Some(t0 + RING));
        assert_eq!(
            f.handle_timeout(t0 + RING - Duration::from_millis(1)),
            vec![]
        );
        assert_eq!(
            f.handle_timeout(t0 + RING),
            vec![
                ForkAction::Drop { leg: 0 },
                ForkAction::Drop { leg: 1 },
                no_answer()
            ]
        );
        // An answer crossing the CANCEL is hung up, never connected.
        assert_eq!(f.leg_answered(0), vec![ForkAction::Drop { leg: 0 }]);
        assert_eq!(f.winner(), None);
    }

    #[test]
    fn all_phones_refusing_ends_busy_if_one_was_busy_else_no_answer() {
        let t0 = Instant::now();
        let (mut f, _) = RingFork::start(2, t0, RING);
        assert_eq!(f.leg_failed(0, Some(480)), vec![]);
        assert_eq!(f.leg_failed(1, Some(603)), vec![busy()]);

        let (mut f, _) = RingFork::start(2, t0, RING);
        assert_eq!(f.leg_failed(0, None), vec![]);
        assert_eq!(f.leg_failed(1, Some(404)), vec![no_answer()]);
        assert_eq!(f.leg_failed(1, Some(404)), vec![], "once");
    }

    #[test]
    fn no_phone_registered_refuses_at_once_and_the_fork_is_bounded() {
        let t0 = Instant::now();
        let (f, out) = RingFork::start(0, t0, RING);
        assert_eq!(out, vec![no_answer()]);
        assert!(f.is_finished());
        let (_, out) = RingFork::start(MAX_FORKED_LEGS + 5, t0, RING);
        assert_eq!(out.len(), MAX_FORKED_LEGS);
    }

    #[test]
    fn the_caller_hanging_up_while_phones_ring_cancels_them() {
        let t0 = Instant::now();
        let (mut f, _) = RingFork::start(2, t0, RING);
        assert_eq!(f.leg_failed(1, Some(486)), vec![]);
        assert_eq!(
            f.caller_cancelled(),
            vec![ForkAction::Drop { leg: 0 }, ForkAction::CallerGone]
        );
        assert_eq!(f.leg_answered(0), vec![ForkAction::Drop { leg: 0 }]);
        assert_eq!(f.leg_answered(1), vec![], "a refused leg answers nothing");
        assert_eq!(f.handle_timeout(t0 + RING), vec![]);
    }

    #[test]
    fn events_for_legs_that_do_not_exist_are_ignored() {
        let t0 = Instant::now();
        let (mut f, _) = RingFork::start(1, t0, RING);
        assert_eq!(f.leg_ringing(7), vec![]);
        assert_eq!(f.leg_answered(7), vec![]);
        assert_eq!(f.leg_failed(7, Some(486)), vec![]);
        assert!(!f.is_finished());
    }
}

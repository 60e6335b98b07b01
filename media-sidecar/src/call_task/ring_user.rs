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
//! After the fork, [`after_nobody_answered`] says what a person's call
//! does next (forward, voicemail, or refuse the caller), [`MessageTake`]
//! when a voicemail message is over, and [`bridged_end`] how a bridged
//! call ends by who hung up. The tokio driver is [`super::person`].

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

/// What a person's call does once nobody answered their phones (or none
/// is registered here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoAnswerNext {
    /// Dial this number through the trunks and bridge it (the profile's
    /// forwarding; the caller's number as caller ID).
    Forward(String),
    /// Answer and record the caller's message.
    Voicemail,
    /// Refuse the caller with the fork's (or the forward's) outcome.
    Refuse,
}

/// The rule after an unanswered fork: forward first (a valid E.164
/// `forward_number`, not tried yet), then voicemail when the profile has
/// it, else refuse. Busy and declined phones forward too (call forwarding
/// on busy and on no answer are one setting here).
pub fn after_nobody_answered(
    ring: &voxline_shared::sidecar_link::RingUser,
    forwarded: bool,
) -> NoAnswerNext {
    match ring.forward_number.as_deref() {
        Some(n) if !forwarded && super::tools::is_e164(n) => NoAnswerNext::Forward(n.to_string()),
        _ if ring.voicemail => NoAnswerNext::Voicemail,
        _ => NoAnswerNext::Refuse,
    }
}

/// The longest voicemail message.
pub const MESSAGE_MAX: Duration = Duration::from_secs(120);
/// A message ends after this much silence.
pub const MESSAGE_SILENCE: Duration = Duration::from_secs(10);
/// A 20 ms frame quieter than this RMS (about -44 dBFS) is silence (line
/// noise, comfort noise).
pub const SILENCE_RMS: f64 = 200.0;

/// Why a voicemail message ended on our side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TakeEnd {
    /// [`MESSAGE_MAX`] reached.
    Cap,
    /// [`MESSAGE_SILENCE`] of silence.
    Silence,
}

/// When a voicemail message is over, sans-IO: fed the caller's audio and
/// time from the beep on.
#[derive(Debug, Clone)]
pub struct MessageTake {
    until: Instant,
    last_voice: Instant,
    silence: Duration,
}

impl MessageTake {
    /// Recording from `now` (the beep's end) for at most `max`, ending on
    /// `silence` of silence.
    pub fn start(now: Instant, max: Duration, silence: Duration) -> MessageTake {
        MessageTake {
            until: now + max,
            last_voice: now,
            silence,
        }
    }

    /// The caller's audio (8 kHz PCM) heard at `now`.
    pub fn heard(&mut self, now: Instant, pcm: &[i16]) {
        if pcm.is_empty() {
            return;
        }
        let power = pcm.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / pcm.len() as f64;
        if power.sqrt() >= SILENCE_RMS {
            self.last_voice = now;
        }
    }

    /// When [`MessageTake::is_over`] may next say yes.
    pub fn poll_timeout(&self) -> Instant {
        self.until.min(self.last_voice + self.silence)
    }

    pub fn is_over(&self, now: Instant) -> Option<TakeEnd> {
        if now >= self.until {
            Some(TakeEnd::Cap)
        } else if now >= self.last_voice + self.silence {
            Some(TakeEnd::Silence)
        } else {
            None
        }
    }
}

/// Which leg of a bridged person's call hung up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HungUp {
    /// The call's callee: the caller of an inbound call, the destination
    /// of a click-to-call.
    Callee,
    /// The person's phone (or the forward): our side of the call.
    Person,
}

/// How a bridged call ends when `who` hung up with `end` (its dialog's
/// end): a BYE is `completed` with `callee_hangup` (the callee's) or
/// `agent_hangup` (the person's: on a person's call they stand where the
/// agent does); any other end (our BYE at `max_seconds`, lost media) is
/// the dialog's own.
pub fn bridged_end(who: HungUp, end: Option<&crate::sip::DialogEnd>) -> (CallStatus, EndedReason) {
    match end {
        Some(e) if e.reason != EndedReason::CalleeHangup => (e.status, e.reason),
        _ => match who {
            HungUp::Callee => (CallStatus::Completed, EndedReason::CalleeHangup),
            HungUp::Person => (CallStatus::Completed, EndedReason::AgentHangup),
        },
    }
}

/// The ringback a person hears while the sidecar rings someone for them
/// (click-to-call: their phone answered, the destination rings), sans-IO:
/// 440 + 480 Hz, 2 s on, 4 s off (the North American cadence), in 20 ms
/// frames of 8 kHz PCM.
#[derive(Debug, Clone, Default)]
pub struct Ringback {
    /// Samples produced so far.
    at: usize,
}

/// One ringback cycle, in samples (6 s).
const RINGBACK_CYCLE: usize = 6 * 8_000;
const RINGBACK_ON: usize = 2 * 8_000;

impl Ringback {
    /// The next 20 ms.
    pub fn next_frame(&mut self) -> Vec<i16> {
        let frame = (self.at..self.at + crate::media::codec::FRAME_8K)
            .map(|i| {
                if i % RINGBACK_CYCLE >= RINGBACK_ON {
                    return 0;
                }
                let t = i as f64 / 8_000.0;
                let tau = 2.0 * std::f64::consts::PI;
                (3_000.0 * ((tau * 440.0 * t).sin() + (tau * 480.0 * t).sin())) as i16
            })
            .collect();
        self.at += crate::media::codec::FRAME_8K;
        frame
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

    fn ring(forward: Option<&str>, voicemail: bool) -> voxline_shared::sidecar_link::RingUser {
        voxline_shared::sidecar_link::RingUser {
            user_pk: 7,
            extension: "1002".into(),
            display_name: "John".into(),
            ring_timeout_seconds: 20,
            forward_number: forward.map(str::to_string),
            voicemail,
        }
    }

    #[test]
    fn nobody_answering_forwards_once_then_takes_a_message_or_refuses() {
        let n = "+14155550123";
        assert_eq!(
            after_nobody_answered(&ring(Some(n), true), false),
            NoAnswerNext::Forward(n.into())
        );
        assert_eq!(
            after_nobody_answered(&ring(Some(n), true), true),
            NoAnswerNext::Voicemail
        );
        assert_eq!(
            after_nobody_answered(&ring(Some(n), false), true),
            NoAnswerNext::Refuse
        );
        assert_eq!(
            after_nobody_answered(&ring(None, true), false),
            NoAnswerNext::Voicemail
        );
        assert_eq!(
            after_nobody_answered(&ring(None, false), false),
            NoAnswerNext::Refuse
        );
        // Not a number the trunks take: never dialled.
        assert_eq!(
            after_nobody_answered(&ring(Some("sip:x@evil"), false), false),
            NoAnswerNext::Refuse
        );
    }

    #[test]
    fn a_message_ends_after_ten_seconds_of_silence_or_at_the_cap() {
        let t0 = Instant::now();
        let loud = vec![3_000i16; 160];
        let quiet = vec![30i16; 160];
        let mut m = MessageTake::start(t0, MESSAGE_MAX, MESSAGE_SILENCE);
        assert_eq!(m.poll_timeout(), t0 + MESSAGE_SILENCE);
        // Speaking keeps it going; line noise does not.
        let mut t = t0;
        for _ in 0..500 {
            t += Duration::from_millis(20);
            m.heard(t, &loud);
        }
        assert_eq!(m.is_over(t + Duration::from_secs(9)), None);
        for _ in 0..250 {
            t += Duration::from_millis(20);
            m.heard(t, &quiet);
        }
        let spoke_until = t0 + Duration::from_secs(10);
        assert_eq!(m.poll_timeout(), spoke_until + MESSAGE_SILENCE);
        assert_eq!(
            m.is_over(spoke_until + MESSAGE_SILENCE - Duration::from_millis(1)),
            None
        );
        assert_eq!(
            m.is_over(spoke_until + MESSAGE_SILENCE),
            Some(TakeEnd::Silence)
        );
        // Someone talking all along stops at the cap.
        let mut m = MessageTake::start(t0, MESSAGE_MAX, MESSAGE_SILENCE);
        let mut t = t0;
        while t < t0 + MESSAGE_MAX {
            t += Duration::from_millis(20);
            m.heard(t, &loud);
            if t < t0 + MESSAGE_MAX {
                assert_eq!(m.is_over(t), None);
            }
        }
        assert_eq!(m.poll_timeout(), t0 + MESSAGE_MAX);
        assert_eq!(m.is_over(t0 + MESSAGE_MAX), Some(TakeEnd::Cap));
    }

    #[test]
    fn a_bridged_call_ends_by_who_hung_up_unless_the_dialog_ended_otherwise() {
        use crate::sip::DialogEnd;
        let bye = DialogEnd {
            status: CallStatus::Completed,
            reason: EndedReason::CalleeHangup,
            sip_code: None,
            try_next_trunk: false,
            detail: "bye_received".into(),
            retry_after_s: None,
        };
        assert_eq!(
            bridged_end(HungUp::Callee, Some(&bye)),
            (CallStatus::Completed, EndedReason::CalleeHangup)
        );
        assert_eq!(
            bridged_end(HungUp::Person, Some(&bye)),
            (CallStatus::Completed, EndedReason::AgentHangup)
        );
        assert_eq!(
            bridged_end(HungUp::Person, None),
            (CallStatus::Completed, EndedReason::AgentHangup)
        );
        let capped = DialogEnd {
            reason: EndedReason::MaxDurationReached,
            ..bye
        };
        assert_eq!(
            bridged_end(HungUp::Callee, Some(&capped)),
            (CallStatus::Completed, EndedReason::MaxDurationReached)
        );
    }

    #[test]
    fn ringback_is_two_seconds_of_440_and_480_hz_then_four_of_silence() {
        let amp = |f: &[i16], hz: f64| {
            let (mut s, mut c) = (0.0, 0.0);
            for (i, &v) in f.iter().enumerate() {
                let ph = 2.0 * std::f64::consts::PI * hz * i as f64 / 8_000.0;
                s += f64::from(v) * ph.sin();
                c += f64::from(v) * ph.cos();
            }
            2.0 * (s * s + c * c).sqrt() / f.len() as f64
        };
        let mut r = Ringback::default();
        // 12 s: two cycles.
        let frames: Vec<Vec<i16>> = (0..600).map(|_| r.next_frame()).collect();
        let on: Vec<bool> = frames
            .iter()
            .map(|f| {
                assert_eq!(f.len(), 160);
                f.iter().any(|&v| v != 0)
            })
            .collect();
        for (k, &sounding) in on.iter().enumerate() {
            let t_ms = k * 20 % 6_000;
            assert_eq!(sounding, t_ms < 2_000, "frame {k}");
        }
        // Both tones, clearly, over a second of the first burst.
        let burst: Vec<i16> = frames[..50].concat();
        assert!(amp(&burst, 440.0) > 2_000.0 && amp(&burst, 480.0) > 2_000.0);
        assert!(amp(&burst, 1_000.0) < 100.0);
    }
}

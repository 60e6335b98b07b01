//! A caller waiting in a call queue (issue 16), the pure part: the edge
//! decided [`voxline_shared::sidecar_link::InboundDecision::Queue`] with a
//! [`QueuePlan`]; the driver (`super::queue_call`) answered the caller and
//! feeds [`QueueCall`] the member legs' outcomes and time; it answers with
//! [`QueueAction`]s:
//!
//! - at once: `queue` `entered` (the plan's position), hold audio on, the
//!   position said (when `announce_every_seconds` > 0) and again every
//!   `announce_every_seconds` (`queue` `announced`);
//! - ringing in rounds: `ring_all` rings every member at once for
//!   `member_timeout_seconds`, otherwise one member at a time in the plan's
//!   order for `member_timeout_seconds` each; a round nobody answered is
//!   `queue` `no_answer`, then a `retry_seconds` pause (at least
//!   [`MIN_PAUSE`]) and the next round. A member is rung on every phone
//!   registered here ([`QueueAction::Ring`]: the driver looks the phones up,
//!   skips a member this sidecar is bridging now, and reports how many legs
//!   it dialled). A phone answering busy (486/600) makes its member busy for
//!   the round: its other phones are cancelled and, one at a time, the next
//!   member rings at once;
//! - the first phone to answer wins: every other leg is cancelled, hold
//!   audio stops, `queue` `connected`, and the caller is bridged to it until
//!   either hangs up (`completed`: `callee_hangup` when the caller hung up,
//!   `agent_hangup` when the member did, as our side of the call);
//! - at `max_wait_seconds`: `queue` `timed_out`, every leg cancelled, and the
//!   plan's overflow: `agent` hands the answered caller to the offer's AI
//!   agent ([`QueueAction::AgentTakesOver`]: the bridge reports the rest),
//!   `voicemail` takes a message as a person's voicemail does
//!   ([`QueueAction::Voicemail`]: `completed` / `voicemail`), `hangup` hangs
//!   up (`no_answer` / `queue_timeout`);
//! - the caller hanging up while waiting: `queue` `abandoned`, every leg
//!   cancelled, and the call ends as the caller's dialog ended (`completed` /
//!   `callee_hangup`: the caller was answered, so not `cancelled`, which
//!   means "before the answer").
//!
//! Every member leg reports `leg` events (`dialing`, `ringing`, `answered`,
//! `ended` with the member's `user_pk`, the final SIP code and the talk time).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use voxline_shared::sidecar_link::{
    EventKind, LegStep, QueueOverflow, QueuePlan, QueueStep, MAX_PHONE_CONTACTS,
};
use voxline_shared::{CallStatus, EndedReason};

/// The shortest pause between two rounds (a round with nobody to ring ends
/// at once: never spin).
pub const MIN_PAUSE: Duration = Duration::from_secs(1);

/// The most member legs alive at once (every member's phones, bounded).
pub const MAX_QUEUE_LEGS: usize = voxline_shared::sidecar_link::MAX_QUEUE_MEMBERS * 4;

/// A member leg: one INVITE to one phone of one member.
pub type LegId = u32;

/// What the driver must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueAction {
    /// Report this call event (a `queue` or `leg` event) now.
    Event(EventKind),
    /// Hold audio to the caller on or off.
    Hold(bool),
    /// Say the caller's position (hold audio resumes after it).
    Announce { position: u32 },
    /// Ring `member` (index into the plan's members) on its phones, then
    /// report [`QueueCall::ring_started`] with how many legs were dialled.
    Ring { member: usize, user_pk: u64 },
    /// CANCEL (or BYE) leg `leg`; its outcome no longer matters.
    Drop { leg: LegId },
    /// Bridge the caller and leg `leg` (relay both ways, recorded on the
    /// caller's leg) from now.
    Connect { leg: LegId },
    /// Overflow to the offer's agent: its engine takes the caller's leg.
    /// The queue is over; the bridge reports the call's end.
    AgentTakesOver,
    /// Overflow to voicemail: greeting, beep, the message recorded (the
    /// call's recording). The queue is over; the take reports the end.
    Voicemail,
    /// BYE the caller's leg.
    HangupCaller(EndedReason),
    /// The call is over: report `ended` so.
    Finish {
        status: CallStatus,
        reason: EndedReason,
        sip_code: Option<u16>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LegState {
    Trying,
    Ringing,
    /// Answered, bridged to the caller since.
    Bridged(Instant),
    Over,
}

#[derive(Debug, Clone)]
struct Leg {
    id: LegId,
    member: usize,
    state: LegState,
}

impl Leg {
    fn live(&self) -> bool {
        matches!(self.state, LegState::Trying | LegState::Ringing)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting in the queue: a round rings until `until`, or the pause
    /// between rounds lasts until `until`.
    Ringing {
        until: Instant,
    },
    Pausing {
        until: Instant,
    },
    /// Bridged to a member's leg.
    Bridged,
    /// The agent or voicemail took over, or the call is finished.
    Done,
}

/// One caller's wait in a queue, sans-IO.
#[derive(Debug, Clone)]
pub struct QueueCall {
    queue_pk: u64,
    members: Vec<u64>,
    ring_all: bool,
    member_timeout: Duration,
    pause: Duration,
    overflow: QueueOverflow,
    announce_every: Option<Duration>,
    position: u32,
    entered: Instant,
    deadline: Instant,
    next_announce: Option<Instant>,
    phase: Phase,
    /// One at a time: the member ringing now (index into `members`).
    cursor: usize,
    /// Members rung this round whose driver has not said how yet.
    pending_rings: usize,
    /// Members busy for this round.
    busy: Vec<bool>,
    legs: Vec<Leg>,
    next_leg: LegId,
    actions: VecDeque<QueueAction>,
}

impl QueueCall {
    /// The caller (answered `now`) enters the queue `plan`.
    pub fn enter(plan: &QueuePlan, now: Instant) -> QueueCall {
        let members: Vec<u64> = plan
            .members
            .iter()
            .take(voxline_shared::sidecar_link::MAX_QUEUE_MEMBERS)
            .map(|m| m.user_pk)
            .collect();
        let every = Duration::from_secs(u64::from(plan.announce_every_seconds));
        let mut q = QueueCall {
            queue_pk: plan.queue_pk,
            busy: vec![false; members.len()],
            members,
            ring_all: plan.ring_all,
            member_timeout: Duration::from_secs(u64::from(plan.member_timeout_seconds.max(1))),
            pause: Duration::from_secs(u64::from(plan.retry_seconds)).max(MIN_PAUSE),
            overflow: plan.overflow,
            announce_every: (!every.is_zero()).then_some(every),
            position: plan.position.max(1),
            entered: now,
            deadline: now + Duration::from_secs(u64::from(plan.max_wait_seconds)),
            next_announce: None,
            phase: Phase::Done,
            cursor: 0,
            pending_rings: 0,
            legs: Vec::new(),
            next_leg: 0,
            actions: VecDeque::new(),
        };
        q.queue_event(now, QueueStep::Entered, Some(q.position));
        q.actions.push_back(QueueAction::Hold(true));
        if let Some(every) = q.announce_every {
            q.actions.push_back(QueueAction::Announce {
                position: q.position,
            });
            q.next_announce = Some(now + every);
        }
        if now >= q.deadline {
            q.time_out(now);
        } else {
            q.start_round(now);
        }
        q
    }

    /// The next thing to do, if any.
    pub fn poll_action(&mut self) -> Option<QueueAction> {
        self.actions.pop_front()
    }

    /// When [`QueueCall::handle_timeout`] is due next, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Ringing { until } | Phase::Pausing { until } => {
                [Some(until), Some(self.deadline), self.next_announce]
                    .into_iter()
                    .flatten()
                    .min()
            }
            Phase::Bridged | Phase::Done => None,
        }
    }

    /// Whether the caller still waits (ringing or between rounds).
    pub fn is_waiting(&self) -> bool {
        matches!(self.phase, Phase::Ringing { .. } | Phase::Pausing { .. })
    }

    /// Whether the queue has nothing more to do (finished or handed over).
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// The member leg `leg` rings (which member's it is).
    pub fn member_of(&self, leg: LegId) -> Option<u64> {
        let l = self.legs.iter().find(|l| l.id == leg)?;
        self.members.get(l.member).copied()
    }

    /// The driver dialled `legs` phones of `member` for [`QueueAction::Ring`]
    /// (0: none registered here, or the member is on a call): the leg ids to
    /// dial them as, in order. Empty when the round moved on meanwhile.
    pub fn ring_started(&mut self, now: Instant, member: usize, legs: usize) -> Vec<LegId> {
        self.pending_rings = self.pending_rings.saturating_sub(1);
        if !matches!(self.phase, Phase::Ringing { .. }) || member >= self.members.len() {
            self.round_step_over(now);
            return Vec::new();
        }
        let room = MAX_QUEUE_LEGS.saturating_sub(self.legs.iter().filter(|l| l.live()).count());
        let n = legs.min(MAX_PHONE_CONTACTS).min(room);
        // Legs that are over are forgotten (bounded: at most MAX_QUEUE_LEGS kept).
        self.legs.retain(|l| l.state != LegState::Over);
        let mut ids = Vec::with_capacity(n);
        for _ in 0..n {
            let id = self.next_leg;
            self.next_leg = self.next_leg.wrapping_add(1);
            self.legs.push(Leg {
                id,
                member,
                state: LegState::Trying,
            });
            self.leg_event(member, LegStep::Dialing, None, 0);
            ids.push(id);
        }
        if n == 0 {
            self.round_step_over(now);
        }
        ids
    }

    /// Leg `leg` sent a provisional response.
    pub fn leg_ringing(&mut self, _now: Instant, leg: LegId) {
        let Some(l) = self.legs.iter_mut().find(|l| l.id == leg) else {
            return;
        };
        if l.state == LegState::Trying {
            l.state = LegState::Ringing;
            let member = l.member;
            self.leg_event(member, LegStep::Ringing, None, 0);
        }
    }

    /// Leg `leg` answered (2xx).
    pub fn leg_answered(&mut self, now: Instant, leg: LegId) {
        let Some(i) = self.legs.iter().position(|l| l.id == leg) else {
            self.actions.push_back(QueueAction::Drop { leg });
            return;
        };
        if !self.legs[i].live() || !self.is_waiting() {
            // Cancelled already (a crossing 200), or someone else won.
            self.legs[i].state = LegState::Over;
            self.actions.push_back(QueueAction::Drop { leg });
            return;
        }
        self.legs[i].state = LegState::Bridged(now);
        let member = self.legs[i].member;
        self.drop_live_legs();
        self.phase = Phase::Bridged;
        self.next_announce = None;
        self.actions.push_back(QueueAction::Hold(false));
        self.leg_event(member, LegStep::Answered, None, 0);
        self.queue_event(now, QueueStep::Connected, None);
        self.actions.push_back(QueueAction::Connect { leg });
    }

    /// Leg `leg` ended: refused or lost before an answer (`sip_code` the
    /// final response, if any), or hung up by the member once bridged.
    pub fn leg_ended(&mut self, now: Instant, leg: LegId, sip_code: Option<u16>) {
        let Some(i) = self.legs.iter().position(|l| l.id == leg) else {
            return;
        };
        let (member, state) = (self.legs[i].member, self.legs[i].state);
        match state {
            LegState::Over => {}
            LegState::Bridged(since) => {
                self.legs[i].state = LegState::Over;
                let talk = now.saturating_duration_since(since);
                self.leg_event(member, LegStep::Ended, sip_code, millis(talk));
                self.actions
                    .push_back(QueueAction::HangupCaller(EndedReason::AgentHangup));
                self.finish(CallStatus::Completed, EndedReason::AgentHangup, None);
            }
            LegState::Trying | LegState::Ringing => {
                self.legs[i].state = LegState::Over;
                self.leg_event(member, LegStep::Ended, sip_code, 0);
                if matches!(sip_code, Some(486 | 600)) {
                    // Busy for this round: its other phones stop too.
                    if let Some(b) = self.busy.get_mut(member) {
                        *b = true;
                    }
                    let others: Vec<usize> = (0..self.legs.len())
                        .filter(|&j| self.legs[j].member == member && self.legs[j].live())
                        .collect();
                    for j in others {
                        self.drop_leg(j);
                    }
                }
                self.round_step_over(now);
            }
        }
    }

    /// The caller's dialog ended (they hung up, or it was lost), as `status`
    /// / `reason`.
    pub fn caller_ended(
        &mut self,
        now: Instant,
        status: CallStatus,
        reason: EndedReason,
        sip_code: Option<u16>,
    ) {
        match self.phase {
            Phase::Done => {}
            Phase::Ringing { .. } | Phase::Pausing { .. } => {
                self.drop_live_legs();
                self.actions.push_back(QueueAction::Hold(false));
                self.queue_event(now, QueueStep::Abandoned, None);
                self.finish(status, reason, sip_code);
            }
            Phase::Bridged => {
                self.end_bridged_leg(now);
                self.finish(status, reason, sip_code);
            }
        }
    }

    /// We hang up (the edge's hangup command: `completed` /
    /// `hangup_requested`; the sidecar stopping: `failed` / `media_lost`).
    pub fn hang_up(&mut self, now: Instant, status: CallStatus, reason: EndedReason) {
        match self.phase {
            Phase::Done => return,
            Phase::Ringing { .. } | Phase::Pausing { .. } => {
                self.drop_live_legs();
                self.actions.push_back(QueueAction::Hold(false));
            }
            Phase::Bridged => self.end_bridged_leg(now),
        }
        self.actions.push_back(QueueAction::HangupCaller(reason));
        self.finish(status, reason, None);
    }

    /// Time passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        if matches!(self.phase, Phase::Done | Phase::Bridged) {
            return;
        }
        if now >= self.deadline {
            self.time_out(now);
            return;
        }
        if let (Some(at), Some(every)) = (self.next_announce, self.announce_every) {
            if now >= at {
                self.actions.push_back(QueueAction::Announce {
                    position: self.position,
                });
                self.queue_event(now, QueueStep::Announced, Some(self.position));
                self.next_announce = Some(now + every);
            }
        }
        match self.phase {
            Phase::Ringing { until } if now >= until => {
                // This member's (or this round's) time is up.
                self.drop_live_legs();
                self.pending_rings = 0;
                self.next_step(now);
            }
            Phase::Pausing { until } if now >= until => self.start_round(now),
            _ => {}
        }
    }

    fn time_out(&mut self, now: Instant) {
        self.drop_live_legs();
        self.next_announce = None;
        self.actions.push_back(QueueAction::Hold(false));
        self.queue_event(now, QueueStep::TimedOut, None);
        match self.overflow {
            QueueOverflow::Agent => {
                self.phase = Phase::Done;
                self.actions.push_back(QueueAction::AgentTakesOver);
            }
            QueueOverflow::Voicemail => {
                self.phase = Phase::Done;
                self.actions.push_back(QueueAction::Voicemail);
            }
            QueueOverflow::Hangup => {
                self.actions
                    .push_back(QueueAction::HangupCaller(EndedReason::QueueTimeout));
                self.finish(CallStatus::NoAnswer, EndedReason::QueueTimeout, None);
            }
        }
    }

    /// A new round: everyone may ring again.
    fn start_round(&mut self, now: Instant) {
        self.busy.iter_mut().for_each(|b| *b = false);
        self.cursor = 0;
        if self.ring_all {
            self.phase = Phase::Ringing {
                until: now + self.member_timeout,
            };
            self.pending_rings = self.members.len();
            for (member, &user_pk) in self.members.iter().enumerate() {
                self.actions
                    .push_back(QueueAction::Ring { member, user_pk });
            }
            if self.members.is_empty() {
                self.round_over(now);
            }
        } else {
            self.ring_member(now);
        }
    }

    /// One at a time: ring the member at the cursor, or skip to the next
    /// free one; past the last, the round is over.
    fn ring_member(&mut self, now: Instant) {
        while self.cursor < self.members.len() && self.busy[self.cursor] {
            self.cursor += 1;
        }
        let Some(&user_pk) = self.members.get(self.cursor) else {
            self.round_over(now);
            return;
        };
        self.phase = Phase::Ringing {
            until: now + self.member_timeout,
        };
        self.pending_rings = 1;
        self.actions.push_back(QueueAction::Ring {
            member: self.cursor,
            user_pk,
        });
    }

    /// A leg or a ring ended: when nothing of this step rings any more,
    /// the step is over early.
    fn round_step_over(&mut self, now: Instant) {
        if matches!(self.phase, Phase::Ringing { .. })
            && self.pending_rings == 0
            && !self.legs.iter().any(Leg::live)
        {
            self.next_step(now);
        }
    }

    /// The current member (one at a time) or round (all at once) is over
    /// unanswered.
    fn next_step(&mut self, now: Instant) {
        if self.ring_all {
            self.round_over(now);
        } else {
            self.cursor += 1;
            self.ring_member(now);
        }
    }

    fn round_over(&mut self, now: Instant) {
        self.queue_event(now, QueueStep::NoAnswer, None);
        self.phase = Phase::Pausing {
            until: now + self.pause,
        };
    }

    fn drop_leg(&mut self, i: usize) {
        let l = &mut self.legs[i];
        if l.live() {
            l.state = LegState::Over;
            let (id, member) = (l.id, l.member);
            self.actions.push_back(QueueAction::Drop { leg: id });
            self.leg_event(member, LegStep::Ended, None, 0);
        }
    }

    fn drop_live_legs(&mut self) {
        for i in 0..self.legs.len() {
            self.drop_leg(i);
        }
    }

    fn end_bridged_leg(&mut self, now: Instant) {
        for i in 0..self.legs.len() {
            if let LegState::Bridged(since) = self.legs[i].state {
                self.legs[i].state = LegState::Over;
                let (id, member) = (self.legs[i].id, self.legs[i].member);
                self.actions.push_back(QueueAction::Drop { leg: id });
                let talk = millis(now.saturating_duration_since(since));
                self.leg_event(member, LegStep::Ended, None, talk);
            }
        }
    }

    fn finish(&mut self, status: CallStatus, reason: EndedReason, sip_code: Option<u16>) {
        self.phase = Phase::Done;
        self.next_announce = None;
        self.actions.push_back(QueueAction::Finish {
            status,
            reason,
            sip_code,
        });
    }

    fn queue_event(&mut self, now: Instant, step: QueueStep, position: Option<u32>) {
        self.actions.push_back(QueueAction::Event(EventKind::Queue {
            step,
            queue_pk: self.queue_pk,
            position,
            wait_ms: millis(now.saturating_duration_since(self.entered)),
        }));
    }

    fn leg_event(&mut self, member: usize, step: LegStep, sip_code: Option<u16>, talk_ms: u64) {
        self.actions.push_back(QueueAction::Event(EventKind::Leg {
            step,
            user_pk: self.members.get(member).copied(),
            destination: None,
            sip_code,
            talk_ms,
        }));
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;

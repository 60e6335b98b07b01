//! The queue in virtual time: `Instant`s advanced by hand, every action asserted.

use super::*;
use voxline_shared::sidecar_link::RingUser;

const S: Duration = Duration::from_secs(1);

fn member(pk: u64) -> RingUser {
    RingUser {
        user_pk: pk,
        extension: format!("1{pk:02}"),
        display_name: String::new(),
        ring_timeout_seconds: 20,
        forward_number: None,
        voicemail: false,
    }
}

fn plan(ring_all: bool, overflow: QueueOverflow) -> QueuePlan {
    QueuePlan {
        queue_pk: 9,
        name: "support".into(),
        extension: "600".into(),
        ring_all,
        members: vec![member(1), member(2)],
        member_timeout_seconds: 10,
        retry_seconds: 5,
        max_wait_seconds: 60,
        announce_every_seconds: 0,
        position: 2,
        overflow,
    }
}

fn drain(q: &mut QueueCall) -> Vec<QueueAction> {
    std::iter::from_fn(|| q.poll_action()).collect()
}

fn queue(step: QueueStep, position: Option<u32>, wait_ms: u64) -> QueueAction {
    QueueAction::Event(EventKind::Queue {
        step,
        queue_pk: 9,
        position,
        wait_ms,
    })
}

fn leg(step: LegStep, user_pk: u64, sip_code: Option<u16>, talk_ms: u64) -> QueueAction {
    QueueAction::Event(EventKind::Leg {
        step,
        user_pk: Some(user_pk),
        destination: None,
        sip_code,
        talk_ms,
    })
}

fn ring(member: usize) -> QueueAction {
    QueueAction::Ring {
        member,
        user_pk: member as u64 + 1,
    }
}

#[test]
fn ring_all_rings_everyone_and_the_first_answer_is_bridged_the_rest_cancelled() {
    let t0 = Instant::now();
    let mut q = QueueCall::enter(&plan(true, QueueOverflow::Hangup), t0);
    assert_eq!(
        drain(&mut q),
        vec![
            queue(QueueStep::Entered, Some(2), 0),
            QueueAction::Hold(true),
            ring(0),
            ring(1),
        ]
    );
    let a = q.ring_started(t0, 0, 2);
    let b = q.ring_started(t0, 1, 1);
    assert_eq!((a.len(), b.len()), (2, 1));
    assert_eq!(
        drain(&mut q),
        vec![
            leg(LegStep::Dialing, 1, None, 0),
            leg(LegStep::Dialing, 1, None, 0),
            leg(LegStep::Dialing, 2, None, 0),
        ]
    );
    q.leg_ringing(t0, b[0]);
    q.leg_ringing(t0, b[0]);
    assert_eq!(drain(&mut q), vec![leg(LegStep::Ringing, 2, None, 0)]);
    let t1 = t0 + 3 * S;
    q.leg_answered(t1, b[0]);
    assert_eq!(
        drain(&mut q),
        vec![
            QueueAction::Drop { leg: a[0] },
            leg(LegStep::Ended, 1, None, 0),
            QueueAction::Drop { leg: a[1] },
            leg(LegStep::Ended, 1, None, 0),
            QueueAction::Hold(false),
            leg(LegStep::Answered, 2, None, 0),
            queue(QueueStep::Connected, None, 3_000),
            QueueAction::Connect { leg: b[0] },
        ]
    );
    assert_eq!(q.member_of(b[0]), Some(2));
    assert_eq!(q.poll_timeout(), None, "no deadline while bridged");
    // A cancelled phone answering anyway is hung up; its 487 changes nothing.
    q.leg_answered(t1, a[0]);
    assert_eq!(drain(&mut q), vec![QueueAction::Drop { leg: a[0] }]);
    q.leg_ended(t1, a[1], Some(487));
    assert_eq!(drain(&mut q), vec![]);
    // The max wait passing while bridged changes nothing either.
    q.handle_timeout(t0 + 100 * S);
    assert_eq!(drain(&mut q), vec![]);
    // The member hangs up after 40 s: the caller is hung up, completed.
    q.leg_ended(t1 + 40 * S, b[0], None);
    assert_eq!(
        drain(&mut q),
        vec![
            leg(LegStep::Ended, 2, None, 40_000),
            QueueAction::HangupCaller(EndedReason::AgentHangup),
            QueueAction::Finish {
                status: CallStatus::Completed,
                reason: EndedReason::AgentHangup,
                sip_code: None
            },
        ]
    );
    assert!(q.is_done());
}

#[test]
fn the_caller_hanging_up_while_bridged_hangs_up_the_member() {
    let t0 = Instant::now();
    let mut q = QueueCall::enter(&plan(true, QueueOverflow::Hangup), t0);
    drain(&mut q);
    let a = q.ring_started(t0, 0, 1);
    assert!(
        q.ring_started(t0, 1, 0).is_empty(),
        "member 2 has no phone here"
    );
    q.leg_answered(t0 + S, a[0]);
    drain(&mut q);
    q.caller_ended(
        t0 + 11 * S,
        CallStatus::Completed,
        EndedReason::CalleeHangup,
        None,
    );
    assert_eq!(
        drain(&mut q),
        vec![
            QueueAction::Drop { leg: a[0] },
            leg(LegStep::Ended, 1, None, 10_000),
            QueueAction::Finish {
                status: CallStatus::Completed,
                reason: EndedReason::CalleeHangup,
                sip_code: None
            },
        ]
    );
}

#[test]
fn one_at_a_time_rings_members_in_order_then_pauses_and_starts_again() {
    let t0 = Instant::now();
    let mut q = QueueCall::enter(&plan(false, QueueOverflow::Hangup), t0);
    assert_eq!(
        drain(&mut q),
        vec![
            queue(QueueStep::Entered, Some(2), 0),
            QueueAction::Hold(true),
            ring(0)
        ]
    );
    let a = q.ring_started(t0, 0, 1);
    drain(&mut q);
    assert_eq!(q.poll_timeout(), Some(t0 + 10 * S));
    q.handle_timeout(t0 + 10 * S - Duration::from_millis(1));
    assert_eq!(drain(&mut q), vec![]);
    // Member 1's time is up: cancelled, member 2 rings.
    q.handle_timeout(t0 + 10 * S);
    assert_eq!(
        drain(&mut q),
        vec![
            QueueAction::Drop { leg: a[0] },
            leg(LegStep::Ended, 1, None, 0),
            ring(1)
        ]
    );
    let b = q.ring_started(t0 + 10 * S, 1, 1);
    drain(&mut q);
    // Member 2 refuses (480): the round is over at once, no answer, a pause.
    q.leg_ended(t0 + 12 * S, b[0], Some(480));
    assert_eq!(
        drain(&mut q),
        vec![
            leg(LegStep::Ended, 2, Some(480), 0),
            queue(QueueStep::NoAnswer, None, 12_000)
        ]
    );
    assert_eq!(q.poll_timeout(), Some(t0 + 17 * S));
    q.handle_timeout(t0 + 17 * S);
    assert_eq!(drain(&mut q), vec![ring(0)], "round two from the first");
}

#[test]
fn a_busy_phone_makes_its_member_busy_for_the_round_and_the_next_rings_at_once() {
    let t0 = Instant::now();
    let mut q = QueueCall::enter(&plan(false, QueueOverflow::Hangup), t0);
    drain(&mut q);
    let a = q.ring_started(t0, 0, 2);
    drain(&mut q);
    q.leg_ended(t0 + S, a[1], Some(486));
    assert_eq!(
        drain(&mut q),
        vec![
            leg(LegStep::Ended, 1, Some(486), 0),
            QueueAction::Drop { leg: a[0] },
            leg(LegStep::Ended, 1, None, 0),
            ring(1),
        ]
    );
    // Member 2 is on a call here (the driver dialled nothing): round over.
    assert!(q.ring_started(t0 + S, 1, 0).is_empty());
    assert_eq!(drain(&mut q), vec![queue(QueueStep::NoAnswer, None, 1_000)]);
}

#[test]
fn nobody_to_ring_never_spins_the_rounds_pause_at_least_a_second() {
    let t0 = Instant::now();
    let mut p = plan(true, QueueOverflow::Hangup);
    p.retry_seconds = 0;
    let mut q = QueueCall::enter(&p, t0);
    drain(&mut q);
    q.ring_started(t0, 0, 0);
    q.ring_started(t0, 1, 0);
    assert_eq!(drain(&mut q), vec![queue(QueueStep::NoAnswer, None, 0)]);
    assert_eq!(q.poll_timeout(), Some(t0 + MIN_PAUSE));
    q.handle_timeout(t0 + MIN_PAUSE);
    assert_eq!(drain(&mut q), vec![ring(0), ring(1)]);
}

#[test]
fn the_longest_wait_cancels_the_legs_and_hangup_overflow_ends_queue_timeout() {
    let t0 = Instant::now();
    let mut p = plan(true, QueueOverflow::Hangup);
    p.member_timeout_seconds = 100;
    let mut q = QueueCall::enter(&p, t0);
    drain(&mut q);
    let a = q.ring_started(t0, 0, 1);
    q.ring_started(t0, 1, 0);
    drain(&mut q);
    assert_eq!(q.poll_timeout(), Some(t0 + 60 * S));
    q.handle_timeout(t0 + 60 * S);
    assert_eq!(
        drain(&mut q),
        vec![
            QueueAction::Drop { leg: a[0] },
            leg(LegStep::Ended, 1, None, 0),
            QueueAction::Hold(false),
            queue(QueueStep::TimedOut, None, 60_000),
            QueueAction::HangupCaller(EndedReason::QueueTimeout),
            QueueAction::Finish {
                status: CallStatus::NoAnswer,
                reason: EndedReason::QueueTimeout,
                sip_code: None
            },
        ]
    );
    // A ring reported late dials nothing; an answer crossing is hung up.
    assert!(q.ring_started(t0 + 60 * S, 1, 1).is_empty());
    q.leg_answered(t0 + 60 * S, a[0]);
    assert_eq!(drain(&mut q), vec![QueueAction::Drop { leg: a[0] }]);
}

#[test]
fn agent_overflow_hands_the_caller_over_and_the_queue_is_done() {
    let t0 = Instant::now();
    let mut p = plan(true, QueueOverflow::Agent);
    p.max_wait_seconds = 8;
    let mut q = QueueCall::enter(&p, t0);
    drain(&mut q);
    let a = q.ring_started(t0, 0, 1);
    let b = q.ring_started(t0, 1, 1);
    drain(&mut q);
    q.handle_timeout(t0 + 8 * S);
    assert_eq!(
        drain(&mut q),
        vec![
            QueueAction::Drop { leg: a[0] },
            leg(LegStep::Ended, 1, None, 0),
            QueueAction::Drop { leg: b[0] },
            leg(LegStep::Ended, 2, None, 0),
            QueueAction::Hold(false),
            queue(QueueStep::TimedOut, None, 8_000),
            QueueAction::AgentTakesOver,
        ]
    );
    assert!(q.is_done());
    assert_eq!(q.poll_timeout(), None);
    q.caller_ended(
        t0 + 9 * S,
        CallStatus::Completed,
        EndedReason::CalleeHangup,
        None,
    );
    assert_eq!(drain(&mut q), vec![], "the bridge reports the rest");
}

#[test]
fn voicemail_overflow_hands_the_caller_to_the_message_take() {
    let t0 = Instant::now();
    let mut p = plan(true, QueueOverflow::Voicemail);
    p.members.clear();
    p.max_wait_seconds = 5;
    let mut q = QueueCall::enter(&p, t0);
    assert_eq!(
        drain(&mut q),
        vec![
            queue(QueueStep::Entered, Some(2), 0),
            QueueAction::Hold(true),
            queue(QueueStep::NoAnswer, None, 0),
        ]
    );
    q.handle_timeout(t0 + 5 * S);
    assert_eq!(
        drain(&mut q),
        vec![
            QueueAction::Hold(false),
            queue(QueueStep::TimedOut, None, 5_000),
            QueueAction::Voicemail,
        ]
    );
    assert!(q.is_done());
    assert_eq!(q.poll_timeout(), None);
    q.caller_ended(
        t0 + 30 * S,
        CallStatus::Completed,
        EndedReason::CalleeHangup,
        None,
    );
    assert_eq!(drain(&mut q), vec![], "the take reports the end");
}

#[test]
fn the_caller_giving_up_while_waiting_is_abandoned_and_legs_cancelled() {
    let t0 = Instant::now();
    let mut q = QueueCall::enter(&plan(false, QueueOverflow::Agent), t0);
    drain(&mut q);
    let a = q.ring_started(t0, 0, 1);
    drain(&mut q);
    q.caller_ended(
        t0 + 4 * S,
        CallStatus::Completed,
        EndedReason::CalleeHangup,
        None,
    );
    assert_eq!(
        drain(&mut q),
        vec![
            QueueAction::Drop { leg: a[0] },
            leg(LegStep::Ended, 1, None, 0),
            QueueAction::Hold(false),
            queue(QueueStep::Abandoned, None, 4_000),
            QueueAction::Finish {
                status: CallStatus::Completed,
                reason: EndedReason::CalleeHangup,
                sip_code: None
            },
        ]
    );
    q.handle_timeout(t0 + 100 * S);
    assert_eq!(drain(&mut q), vec![]);
}

#[test]
fn the_position_is_said_at_entry_and_every_announce_period() {
    let t0 = Instant::now();
    let mut p = plan(false, QueueOverflow::Hangup);
    p.announce_every_seconds = 7;
    p.member_timeout_seconds = 100;
    let mut q = QueueCall::enter(&p, t0);
    assert_eq!(
        drain(&mut q),
        vec![
            queue(QueueStep::Entered, Some(2), 0),
            QueueAction::Hold(true),
            QueueAction::Announce { position: 2 },
            ring(0),
        ]
    );
    q.ring_started(t0, 0, 1);
    drain(&mut q);
    assert_eq!(q.poll_timeout(), Some(t0 + 7 * S));
    q.handle_timeout(t0 + 7 * S);
    assert_eq!(
        drain(&mut q),
        vec![
            QueueAction::Announce { position: 2 },
            queue(QueueStep::Announced, Some(2), 7_000),
        ]
    );
    assert_eq!(q.poll_timeout(), Some(t0 + 14 * S));
}

#[test]
fn the_edge_hanging_up_a_waiting_caller_cancels_everything() {
    let t0 = Instant::now();
    let mut q = QueueCall::enter(&plan(true, QueueOverflow::Agent), t0);
    drain(&mut q);
    let a = q.ring_started(t0, 0, 1);
    drain(&mut q);
    q.hang_up(t0 + S, CallStatus::Completed, EndedReason::HangupRequested);
    assert_eq!(
        drain(&mut q),
        vec![
            QueueAction::Drop { leg: a[0] },
            leg(LegStep::Ended, 1, None, 0),
            QueueAction::Hold(false),
            QueueAction::HangupCaller(EndedReason::HangupRequested),
            QueueAction::Finish {
                status: CallStatus::Completed,
                reason: EndedReason::HangupRequested,
                sip_code: None
            },
        ]
    );
    // Member 2's ring reported after the end dials nothing.
    assert!(q.ring_started(t0 + S, 1, 1).is_empty());
}

#[test]
fn legs_are_bounded_per_member() {
    let t0 = Instant::now();
    let mut q = QueueCall::enter(&plan(true, QueueOverflow::Hangup), t0);
    drain(&mut q);
    assert_eq!(q.ring_started(t0, 0, 1000).len(), MAX_PHONE_CONTACTS);
    assert!(q.ring_started(t0, 7, 1).is_empty(), "no such member");
}

//! The bridge in virtual time: no sockets, no tokio; `Instant`s are advanced
//! by hand and every test asserts the exact actions and the final result.

use super::*;
use crate::media::Codec;
use crate::sip::sdp::Direction;
use voxline_shared::sidecar_link::Role;

/// The wall clock at dispatch (unix ms).
const D: u64 = 1_700_000_000_000;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn neg() -> Negotiated {
    Negotiated {
        remote_rtp: "192.0.2.7:40000".parse().unwrap(),
        codec: Codec::Pcmu,
        pt: 0,
        dtmf_pt: Some(101),
        ptime_ms: 20,
        direction: Direction::SendRecv,
        srtp: None,
    }
}

fn outcome(status: CallStatus, reason: EndedReason, sip_code: Option<u16>) -> DialogEnd {
    DialogEnd {
        status,
        reason,
        sip_code,
        try_next_trunk: false,
        detail: "test".into(),
        retry_after_s: None,
    }
}

fn ended(status: CallStatus, reason: EndedReason, sip_code: Option<u16>) -> DialogEvent {
    DialogEvent::Ended(outcome(status, reason, sip_code))
}

fn ringing() -> DialogEvent {
    DialogEvent::Ringing {
        code: 180,
        early_media: None,
    }
}

/// A spoken 20 ms frame (well above the speech level).
fn speech() -> Vec<i16> {
    [3_000i16, -3_000].repeat(80)
}

/// `n` ms of spoken engine audio (8 kHz).
fn speech_ms(n: usize) -> Vec<i16> {
    [3_000i16, -3_000].repeat(n * 4)
}

fn emit(kind: EventKind, at_ms: u64) -> Action {
    Action::Emit { kind, at_ms }
}

fn finish(
    status: CallStatus,
    reason: EndedReason,
    sip_code: Option<u16>,
    ringing_ms: Option<u64>,
    answered_ms: Option<u64>,
    ended_ms: u64,
) -> Action {
    Action::Finish(Some(CallEnd {
        status,
        reason,
        sip_code,
        retry_after_s: None,
        timings: Timings {
            dispatched_ms: D,
            ringing_ms,
            answered_ms,
            ended_ms,
        },
    }))
}

fn drain(b: &mut Bridge) -> Vec<Action> {
    std::iter::from_fn(|| b.poll_action()).collect()
}

fn cfg(silence_s: u64) -> BridgeConfig {
    BridgeConfig {
        silence_timeout: Duration::from_secs(silence_s),
        hangup_delay: HANGUP_DELAY,
        amd: AmdMode::Off,
        amd_message: None,
        amd_detector: AmdConfig::default(),
        transfer_people: Vec::new(),
    }
}

/// A bridge dispatched at `t0` (its `dialing` drained and checked).
fn dispatched(silence_s: u64) -> (Bridge, Instant) {
    let t0 = Instant::now();
    let mut b = Bridge::new("c_test", cfg(silence_s), t0, D);
    assert_eq!(drain(&mut b), [emit(EventKind::Dialing, D)]);
    assert_eq!(b.poll_timeout(), None);
    (b, t0)
}

/// Ringing at +1 s (the engine starts, and is up at +1.5 s), answered at
/// +2 s, media started: the conversation runs.
fn answered(silence_s: u64) -> (Bridge, Instant) {
    let (mut b, t0) = dispatched(silence_s);
    b.handle_dialog_event(t0 + ms(1_000), ringing());
    assert_eq!(
        drain(&mut b),
        [emit(EventKind::Ringing, D + 1_000), Action::StartEngine]
    );
    b.engine_started(t0 + ms(1_500));
    assert_eq!(drain(&mut b), []);
    b.handle_dialog_event(t0 + ms(2_000), DialogEvent::Answered(neg()));
    assert_eq!(
        drain(&mut b),
        [
            emit(EventKind::Answered, D + 2_000),
            Action::StartMedia(neg())
        ]
    );
    b.media_started(t0 + ms(2_000));
    assert_eq!(drain(&mut b), [Action::EngineAnswered]);
    (b, t0)
}

#[test]
fn an_answered_call_with_a_transcript_ends_when_the_callee_hangs_up() {
    let (mut b, t0) = answered(30);
    // The callee's audio goes to the engine, with what it has heard so far.
    b.heard(t0 + ms(2_020), speech());
    assert_eq!(
        drain(&mut b),
        [Action::EnginePlayed(0), Action::SendToEngine(speech())]
    );
    // The engine's audio goes to the callee.
    b.handle_engine_event(t0 + ms(2_500), EngineEvent::Audio(speech_ms(100)));
    assert_eq!(drain(&mut b), [Action::SendToMedia(speech_ms(100))]);
    b.heard(t0 + ms(2_540), speech());
    assert_eq!(
        drain(&mut b),
        [Action::EnginePlayed(40), Action::SendToEngine(speech())]
    );
    let turn = |text: &str| EngineEvent::Transcript {
        role: Role::Agent,
        text: text.into(),
        start_ms: 500,
        end_ms: 600,
    };
    b.handle_engine_event(t0 + ms(3_000), turn("Hello"));
    assert_eq!(
        drain(&mut b),
        [emit(
            EventKind::TranscriptTurn {
                role: Role::Agent,
                text: "Hello".into(),
                start_ms: 500,
                end_ms: 600,
            },
            D + 3_000
        )]
    );
    b.handle_engine_event(
        t0 + ms(3_100),
        EngineEvent::Summary {
            summary: Some("said hello".into()),
            outcome: Some("greeted".into()),
        },
    );
    assert_eq!(
        drain(&mut b),
        [emit(
            EventKind::Summary {
                summary: Some("said hello".into()),
                outcome: Some("greeted".into()),
            },
            D + 3_100
        )]
    );
    // A built-in tool called without what it needs (`transfer` without a
    // destination) is answered with an error at once (never a hang), and
    // shown in the transcript; a re-INVITE moves the media.
    b.handle_engine_event(
        t0 + ms(3_200),
        EngineEvent::FunctionCall {
            name: "transfer".into(),
            call_id: "fc".into(),
            arguments: "{}".into(),
        },
    );
    let output = tools::error_output(
        "invalid_arguments",
        "destination (an E.164 number) or extension (a person's) is required",
    );
    assert_eq!(
        drain(&mut b),
        [
            emit(
                EventKind::TranscriptTurn {
                    role: Role::Agent,
                    text: format!("[tool transfer {{}} -> {output}]"),
                    start_ms: 1_200,
                    end_ms: 1_200,
                },
                D + 3_200
            ),
            Action::FunctionResult {
                call_id: "fc".into(),
                output
            }
        ]
    );
    let mut moved = neg();
    moved.remote_rtp = "192.0.2.8:40002".parse().unwrap();
    b.handle_dialog_event(t0 + ms(3_300), DialogEvent::MediaUpdated(moved));
    assert_eq!(
        drain(&mut b),
        [Action::SetMediaRemote("192.0.2.8:40002".parse().unwrap())]
    );
    // The callee's BYE.
    b.handle_dialog_event(
        t0 + ms(9_000),
        ended(CallStatus::Completed, EndedReason::CalleeHangup, None),
    );
    assert_eq!(
        drain(&mut b),
        [finish(
            CallStatus::Completed,
            EndedReason::CalleeHangup,
            None,
            Some(D + 1_000),
            Some(D + 2_000),
            D + 9_000
        )]
    );
    assert!(b.is_finished());
    assert_eq!(b.poll_timeout(), None);
    // Nothing after the end.
    b.heard(t0 + ms(9_020), speech());
    b.handle_engine_event(t0 + ms(9_020), EngineEvent::Audio(speech()));
    b.hangup_command(t0 + ms(9_020), Some(HangupCause::Requested));
    b.dialog_lost(t0 + ms(9_020));
    assert_eq!(drain(&mut b), []);
}

#[test]
fn a_retry_after_reaches_the_ended_event() {
    let (mut b, t0) = dispatched(30);
    let mut end = outcome(CallStatus::Failed, EndedReason::TrunkError, Some(503));
    end.retry_after_s = Some(300);
    b.handle_dialog_event(t0 + ms(100), DialogEvent::Ended(end));
    let actions = drain(&mut b);
    let Some(Action::Finish(Some(call_end))) = actions.last() else {
        panic!("{actions:?}")
    };
    assert!(
        matches!(
            call_end.event(),
            EventKind::Ended {
                retry_after_s: Some(300),
                sip_code: Some(503),
                ..
            }
        ),
        "{call_end:?}"
    );
}

#[test]
fn a_call_never_answered_ends_with_the_dialogs_status_reason_and_code() {
    let cases = [
        // Ring timeout: the dialog CANCELs (487 to the INVITE).
        (CallStatus::NoAnswer, EndedReason::NoAnswer, Some(487)),
        (CallStatus::Busy, EndedReason::Busy, Some(486)),
        (CallStatus::NoAnswer, EndedReason::NoAnswer, Some(480)),
        (CallStatus::Failed, EndedReason::Rejected, Some(404)),
        (CallStatus::Failed, EndedReason::TrunkError, Some(503)),
    ];
    for (status, reason, code) in cases {
        let (mut b, t0) = dispatched(30);
        b.handle_dialog_event(t0 + ms(500), ringing());
        assert_eq!(
            drain(&mut b),
            [emit(EventKind::Ringing, D + 500), Action::StartEngine]
        );
        // Ringing is reported once (the engine asked for once), and no timer
        // runs before the answer.
        b.handle_dialog_event(t0 + ms(600), ringing());
        b.handle_dialog_event(t0 + ms(700), DialogEvent::EarlyMedia(neg()));
        assert_eq!(drain(&mut b), []);
        assert_eq!(b.poll_timeout(), None);
        b.handle_dialog_event(t0 + ms(60_500), ended(status, reason, code));
        assert_eq!(
            drain(&mut b),
            [finish(
                status,
                reason,
                code,
                Some(D + 500),
                None,
                D + 60_500
            )],
            "{status:?} {reason:?}"
        );
    }
}

#[test]
fn silence_hangs_up_after_the_timeout_and_speech_resets_it() {
    let (mut b, t0) = answered(10);
    // Armed at the answer (+2 s).
    assert_eq!(b.poll_timeout(), Some(t0 + ms(12_000)));
    // The callee speaks at +5 s: ten more seconds from there.
    b.heard(t0 + ms(5_000), speech());
    drain(&mut b);
    assert_eq!(b.poll_timeout(), Some(t0 + ms(15_000)));
    // Line noise does not count.
    b.heard(t0 + ms(6_000), vec![100; 160]);
    drain(&mut b);
    assert_eq!(b.poll_timeout(), Some(t0 + ms(15_000)));
    // A transcript turn does.
    b.handle_engine_event(
        t0 + ms(7_000),
        EngineEvent::Transcript {
            role: Role::Callee,
            text: "hm".into(),
            start_ms: 0,
            end_ms: 1,
        },
    );
    drain(&mut b);
    assert_eq!(b.poll_timeout(), Some(t0 + ms(17_000)));
    // Early: nothing happens.
    b.handle_timeout(t0 + ms(16_999));
    assert_eq!(drain(&mut b), []);
    b.handle_timeout(t0 + ms(17_000));
    assert_eq!(drain(&mut b), [Action::Hangup(EndedReason::SilenceTimeout)]);
    // Once: no timer, no second hangup.
    assert_eq!(b.poll_timeout(), None);
    b.handle_timeout(t0 + ms(30_000));
    assert_eq!(drain(&mut b), []);
    // Our BYE is answered: our reason.
    b.handle_dialog_event(
        t0 + ms(17_050),
        ended(CallStatus::Completed, EndedReason::SilenceTimeout, None),
    );
    assert_eq!(
        drain(&mut b),
        [finish(
            CallStatus::Completed,
            EndedReason::SilenceTimeout,
            None,
            Some(D + 1_000),
            Some(D + 2_000),
            D + 17_050
        )]
    );
}

#[test]
fn the_engines_end_call_hangs_up_once_its_last_words_have_played() {
    let (mut b, t0) = answered(30);
    // Two seconds of speech queued at +5 s play until +7 s.
    b.handle_engine_event(t0 + ms(5_000), EngineEvent::Audio(speech_ms(2_000)));
    assert_eq!(drain(&mut b), [Action::SendToMedia(speech_ms(2_000))]);
    // The engine's speech holds off the silence timeout until it has played.
    assert_eq!(b.poll_timeout(), Some(t0 + ms(37_000)));
    b.handle_engine_event(
        t0 + ms(5_500),
        EngineEvent::EndCall {
            reason: "done".into(),
        },
    );
    assert_eq!(drain(&mut b), []);
    assert_eq!(b.poll_timeout(), Some(t0 + ms(7_300)));
    b.handle_timeout(t0 + ms(7_299));
    assert_eq!(drain(&mut b), []);
    b.handle_timeout(t0 + ms(7_300));
    assert_eq!(drain(&mut b), [Action::Hangup(EndedReason::AgentHangup)]);
    // The edge's hangup after ours changes nothing.
    b.hangup_command(t0 + ms(7_310), Some(HangupCause::Requested));
    assert_eq!(drain(&mut b), []);
    b.handle_dialog_event(
        t0 + ms(7_400),
        ended(CallStatus::Completed, EndedReason::AgentHangup, None),
    );
    assert_eq!(
        drain(&mut b),
        [finish(
            CallStatus::Completed,
            EndedReason::AgentHangup,
            None,
            Some(D + 1_000),
            Some(D + 2_000),
            D + 7_400
        )]
    );
}

#[test]
fn an_end_call_with_nothing_left_to_play_hangs_up_after_the_delay() {
    let (mut b, t0) = answered(30);
    b.handle_engine_event(
        t0 + ms(4_000),
        EngineEvent::EndCall {
            reason: "bye".into(),
        },
    );
    assert_eq!(b.poll_timeout(), Some(t0 + ms(4_300)));
    b.handle_timeout(t0 + ms(4_300));
    assert_eq!(drain(&mut b), [Action::Hangup(EndedReason::AgentHangup)]);
}

#[test]
fn max_seconds_is_the_dialogs_bye_and_ends_completed() {
    let (mut b, t0) = answered(30);
    // The dialog's own timer (`max_duration`) sent the BYE: no hangup from the bridge.
    b.handle_dialog_event(
        t0 + ms(602_000),
        ended(CallStatus::Completed, EndedReason::MaxDurationReached, None),
    );
    assert_eq!(
        drain(&mut b),
        [finish(
            CallStatus::Completed,
            EndedReason::MaxDurationReached,
            None,
            Some(D + 1_000),
            Some(D + 2_000),
            D + 602_000
        )]
    );
}

#[test]
fn the_edges_hangup_while_ringing_cancels() {
    let (mut b, t0) = dispatched(30);
    b.handle_dialog_event(t0 + ms(1_000), ringing());
    drain(&mut b);
    b.hangup_command(t0 + ms(1_500), Some(HangupCause::Requested));
    assert_eq!(
        drain(&mut b),
        [Action::Hangup(EndedReason::HangupRequested)]
    );
    // The dialog CANCELs; the INVITE ends 487.
    b.handle_dialog_event(
        t0 + ms(1_600),
        ended(
            CallStatus::Cancelled,
            EndedReason::HangupRequested,
            Some(487),
        ),
    );
    assert_eq!(
        drain(&mut b),
        [finish(
            CallStatus::Cancelled,
            EndedReason::HangupRequested,
            Some(487),
            Some(D + 1_000),
            None,
            D + 1_600
        )]
    );
}

#[test]
fn the_edges_hangup_while_answered_says_bye() {
    let (mut b, t0) = answered(30);
    b.hangup_command(t0 + ms(4_000), Some(HangupCause::Requested));
    assert_eq!(
        drain(&mut b),
        [Action::Hangup(EndedReason::HangupRequested)]
    );
    assert_eq!(b.poll_timeout(), None);
    b.handle_dialog_event(
        t0 + ms(4_100),
        ended(CallStatus::Completed, EndedReason::HangupRequested, None),
    );
    assert_eq!(
        drain(&mut b),
        [finish(
            CallStatus::Completed,
            EndedReason::HangupRequested,
            None,
            Some(D + 1_000),
            Some(D + 2_000),
            D + 4_100
        )]
    );
}

#[test]
fn a_shutdown_fails_the_call_even_before_the_answer() {
    let (mut b, t0) = dispatched(30);
    b.hangup_command(t0 + ms(200), Some(HangupCause::Shutdown));
    assert_eq!(drain(&mut b), [Action::Hangup(SHUTDOWN_REASON)]);
    b.handle_dialog_event(
        t0 + ms(300),
        ended(CallStatus::Cancelled, SHUTDOWN_REASON, Some(487)),
    );
    assert_eq!(
        drain(&mut b),
        [finish(
            CallStatus::Failed,
            SHUTDOWN_REASON,
            Some(487),
            None,
            None,
            D + 300
        )]
    );
}

#[test]
fn a_sidecar_stopping_at_once_hangs_up_and_reports_no_end() {
    let (mut b, t0) = answered(30);
    b.hangup_command(t0 + ms(3_000), None);
    assert_eq!(
        drain(&mut b),
        [Action::Hangup(EndedReason::HangupRequested)]
    );
    b.handle_dialog_event(
        t0 + ms(3_100),
        ended(CallStatus::Completed, EndedReason::HangupRequested, None),
    );
    assert_eq!(drain(&mut b), [Action::Finish(None)]);
}

#[test]
fn an_engine_failing_mid_call_hangs_up_and_fails_the_call() {
    let (mut b, t0) = answered(30);
    b.engine_failed(t0 + ms(3_000), &EngineError::Disconnected("gone".into()));
    assert_eq!(drain(&mut b), [Action::Hangup(EndedReason::EngineError)]);
    // No more audio to the dead engine, and no second hangup.
    b.heard(t0 + ms(3_020), speech());
    b.engine_failed(t0 + ms(3_030), &EngineError::Disconnected("again".into()));
    assert_eq!(drain(&mut b), []);
    // Our BYE's dialog end says completed; an engine failure is a failure.
    b.handle_dialog_event(
        t0 + ms(3_100),
        ended(CallStatus::Completed, EndedReason::EngineError, None),
    );
    assert_eq!(
        drain(&mut b),
        [finish(
            CallStatus::Failed,
            EndedReason::EngineError,
            None,
            Some(D + 1_000),
            Some(D + 2_000),
            D + 3_100
        )]
    );
}

#[test]
fn an_engine_or_media_that_does_not_start_ends_the_call_at_once() {
    // The engine.
    let (mut b, t0) = dispatched(30);
    b.handle_dialog_event(t0 + ms(1_000), DialogEvent::Answered(neg()));
    drain(&mut b);
    b.media_started(t0 + ms(1_000));
    assert_eq!(drain(&mut b), [Action::StartEngine]);
    b.engine_failed(t0 + ms(1_200), &EngineError::Auth("bad key".into()));
    assert_eq!(drain(&mut b), [Action::Hangup(EndedReason::EngineError)]);
    // Heard audio goes nowhere.
    b.heard(t0 + ms(1_220), speech());
    assert_eq!(drain(&mut b), []);

    // The media: no engine is started.
    let (mut b, t0) = dispatched(30);
    b.handle_dialog_event(t0 + ms(1_000), DialogEvent::Answered(neg()));
    drain(&mut b);
    b.media_failed(t0 + ms(1_000), "no ports");
    assert_eq!(drain(&mut b), [Action::Hangup(EndedReason::MediaLost)]);
    b.handle_dialog_event(
        t0 + ms(1_100),
        ended(CallStatus::Completed, EndedReason::MediaLost, None),
    );
    assert_eq!(
        drain(&mut b),
        [finish(
            CallStatus::Failed,
            EndedReason::MediaLost,
            None,
            None,
            Some(D + 1_000),
            D + 1_100
        )]
    );
}

/// Issue 17: the engine fails while the phone rings (e.g. a wrong key): the
/// call is cancelled before anyone answers into dead air, and it ends
/// `failed` / `engine_error`, not `cancelled`.
#[test]
fn an_engine_failing_while_ringing_cancels_the_call_as_failed() {
    let (mut b, t0) = dispatched(30);
    b.handle_dialog_event(t0 + ms(500), ringing());
    drain(&mut b);
    b.engine_failed(t0 + ms(700), &EngineError::Auth("bad key".into()));
    assert_eq!(drain(&mut b), [Action::Hangup(EndedReason::EngineError)]);
    b.handle_dialog_event(
        t0 + ms(800),
        ended(
            CallStatus::Cancelled,
            EndedReason::HangupRequested,
            Some(487),
        ),
    );
    assert_eq!(
        drain(&mut b),
        [finish(
            CallStatus::Failed,
            EndedReason::EngineError,
            Some(487),
            Some(D + 500),
            None,
            D + 800
        )]
    );
}

#[test]
fn a_barge_in_flushes_the_media_and_tells_the_engine_what_was_heard() {
    let (mut b, t0) = answered(30);
    b.handle_engine_event(t0 + ms(5_000), EngineEvent::Audio(speech_ms(1_000)));
    drain(&mut b);
    b.heard(t0 + ms(5_400), speech());
    assert_eq!(
        drain(&mut b),
        [Action::EnginePlayed(400), Action::SendToEngine(speech())]
    );
    b.handle_engine_event(t0 + ms(5_600), EngineEvent::Interrupt);
    assert_eq!(
        drain(&mut b),
        [Action::EnginePlayed(600), Action::FlushMedia]
    );
    // What was dropped is never counted as heard.
    b.heard(t0 + ms(7_000), speech());
    assert_eq!(
        drain(&mut b),
        [Action::EnginePlayed(600), Action::SendToEngine(speech())]
    );
}

#[test]
fn a_call_not_placed_or_whose_sip_driver_went_away_fails() {
    let (mut b, t0) = dispatched(30);
    b.not_placed(t0 + ms(5), EndedReason::MediaLost);
    assert_eq!(
        drain(&mut b),
        [finish(
            CallStatus::Failed,
            EndedReason::MediaLost,
            None,
            None,
            None,
            D + 5
        )]
    );
    let (mut b, t0) = answered(30);
    b.dialog_lost(t0 + ms(2_500));
    assert_eq!(
        drain(&mut b),
        [finish(
            CallStatus::Failed,
            EndedReason::TrunkError,
            None,
            Some(D + 1_000),
            Some(D + 2_000),
            D + 2_500
        )]
    );
}

#[test]
fn timings_stay_in_order_when_everything_happens_in_the_same_instant() {
    let t0 = Instant::now();
    let mut b = Bridge::new("c_test", cfg(30), t0, D);
    b.handle_dialog_event(t0, ringing());
    b.handle_dialog_event(t0, DialogEvent::Answered(neg()));
    b.media_started(t0);
    b.engine_started(t0);
    b.handle_dialog_event(
        t0,
        ended(CallStatus::Completed, EndedReason::CalleeHangup, None),
    );
    assert_eq!(
        drain(&mut b),
        [
            emit(EventKind::Dialing, D),
            emit(EventKind::Ringing, D),
            Action::StartEngine,
            emit(EventKind::Answered, D),
            Action::StartMedia(neg()),
            Action::EngineAnswered,
            finish(
                CallStatus::Completed,
                EndedReason::CalleeHangup,
                None,
                Some(D),
                Some(D),
                D
            ),
        ]
    );
    // An input stamped before the dispatch (a clock that moved back) does
    // not stamp before it either.
    let mut b = Bridge::new("c_test", cfg(30), t0 + ms(1_000), D);
    b.handle_dialog_event(t0, ringing());
    b.handle_dialog_event(t0 + ms(1_500), DialogEvent::Answered(neg()));
    assert_eq!(
        drain(&mut b)[..4],
        [
            emit(EventKind::Dialing, D),
            emit(EventKind::Ringing, D),
            Action::StartEngine,
            emit(EventKind::Answered, D + 500),
        ]
    );
}

#[test]
fn silence_is_counted_from_the_last_speech_or_the_end_of_playback() {
    let t0 = Instant::now();
    let speech = speech();
    let mut w = SilenceWatch::new(t0, Duration::from_secs(10));
    assert_eq!(w.deadline(), t0 + ms(10_000));
    // Line noise does not count; a spoken frame does.
    w.heard(t0 + ms(2_000), &[100i16; 160]);
    assert_eq!(w.deadline(), t0 + ms(10_000));
    w.heard(t0 + ms(3_000), &speech);
    assert_eq!(w.deadline(), t0 + ms(13_000));
    // The engine's speech counts until it has played; its silence never.
    w.engine_audio(&[0i16; 160], t0 + ms(9_000));
    assert_eq!(w.deadline(), t0 + ms(13_000));
    w.engine_audio(&speech, t0 + ms(8_000));
    assert_eq!(w.deadline(), t0 + ms(18_000));
    // Never backwards.
    w.heard(t0 + ms(5_000), &speech);
    assert_eq!(w.deadline(), t0 + ms(18_000));
    w.activity(t0 + ms(20_000));
    assert_eq!(w.deadline(), t0 + ms(30_000));
}

#[test]
fn playout_clock_counts_only_audio_heard() {
    let t0 = Instant::now();
    let mut c = PlayoutClock::new(t0);
    c.enqueue(t0, 1_000);
    c.enqueue(t0 + ms(100), 500); // queued behind the first second
    assert_eq!(c.heard(t0 + ms(400)), 400);
    assert_eq!(c.done_at(), t0 + ms(1_500));
    c.interrupt(t0 + ms(600)); // barge-in: 900 ms never heard
    assert_eq!(c.heard(t0 + ms(5_000)), 600);
    c.enqueue(t0 + ms(5_000), 200); // silence in between does not count
    assert_eq!(c.heard(t0 + ms(5_100)), 700);
    assert_eq!(c.heard(t0 + ms(9_000)), 800);
    c.enqueue(t0 + ms(9_000), 100);
    assert_eq!(c.heard(t0 + ms(9_050)), 850);
}

/// Issue 21: a re-INVITE `a=sendonly` (the callee holds the call; we answer
/// recvonly) stops our RTP and tells the engine; `sendrecv` resumes both.
#[test]
fn the_callees_hold_stops_sending_and_tells_the_engine_until_resumed() {
    let (mut b, t0) = answered(30);
    let mut held = neg();
    held.direction = Direction::SendOnly;
    b.handle_dialog_event(t0 + ms(3_000), DialogEvent::MediaUpdated(held.clone()));
    assert_eq!(
        drain(&mut b),
        [
            Action::SetMediaRemote(held.remote_rtp),
            Action::SetMediaSending(false),
            Action::EngineHold(true)
        ]
    );
    // Hold music is not fed to the engine.
    b.heard(t0 + ms(3_020), speech());
    assert_eq!(drain(&mut b), []);
    // The same hold again (a refresh) changes nothing; inactive is held too.
    held.direction = Direction::Inactive;
    b.handle_dialog_event(t0 + ms(3_100), DialogEvent::MediaUpdated(held));
    assert_eq!(drain(&mut b), [Action::SetMediaRemote(neg().remote_rtp)]);
    b.handle_dialog_event(t0 + ms(4_000), DialogEvent::MediaUpdated(neg()));
    assert_eq!(
        drain(&mut b),
        [
            Action::SetMediaRemote(neg().remote_rtp),
            Action::SetMediaSending(true),
            Action::EngineHold(false)
        ]
    );
    b.heard(t0 + ms(4_020), speech());
    assert!(drain(&mut b).contains(&Action::SendToEngine(speech())));
}

/// Answered `sendonly`: held from the start; the engine learns it once live.
#[test]
fn an_answer_that_holds_stops_sending_from_the_start() {
    let (mut b, t0) = dispatched(30);
    let mut held = neg();
    held.direction = Direction::SendOnly;
    b.handle_dialog_event(t0 + ms(1_000), DialogEvent::Answered(held.clone()));
    assert_eq!(
        drain(&mut b),
        [
            emit(EventKind::Answered, D + 1_000),
            Action::StartMedia(held),
            Action::SetMediaSending(false),
            Action::EngineHold(true)
        ]
    );
    b.media_started(t0 + ms(1_000));
    assert_eq!(drain(&mut b), [Action::StartEngine]);
    b.engine_started(t0 + ms(1_000));
    assert_eq!(
        drain(&mut b),
        [Action::EngineHold(true), Action::EngineAnswered]
    );
}

/// Issue 17: the engine starts at the first provisional response, so it is
/// ready at the answer; what it says before waits for the answer's media and
/// the callee's audio reaches it only from then.
#[test]
fn the_engine_starts_while_ringing_and_speaks_at_the_answer() {
    let (mut b, t0) = dispatched(30);
    b.handle_dialog_event(t0 + ms(300), DialogEvent::EarlyMedia(neg()));
    assert_eq!(drain(&mut b), [Action::StartEngine]);
    b.handle_dialog_event(t0 + ms(400), ringing());
    assert_eq!(drain(&mut b), [emit(EventKind::Ringing, D + 400)]);
    b.engine_started(t0 + ms(800));
    assert_eq!(drain(&mut b), []);
    // An engine that speaks before it is told (it should not): held.
    b.handle_engine_event(t0 + ms(900), EngineEvent::Audio(speech_ms(200)));
    assert_eq!(drain(&mut b), []);
    b.handle_dialog_event(t0 + ms(5_000), DialogEvent::Answered(neg()));
    assert_eq!(
        drain(&mut b),
        [
            emit(EventKind::Answered, D + 5_000),
            Action::StartMedia(neg())
        ]
    );
    b.media_started(t0 + ms(5_000));
    assert_eq!(
        drain(&mut b),
        [Action::EngineAnswered, Action::SendToMedia(speech_ms(200))]
    );
    b.heard(t0 + ms(5_020), speech());
    assert_eq!(
        drain(&mut b),
        [Action::EnginePlayed(20), Action::SendToEngine(speech())]
    );
}

/// Issue 17: a call never answered ends with the engine (started while it
/// rang) never told to speak; Finish closes it.
#[test]
fn an_engine_started_for_a_call_never_answered_is_only_closed() {
    let (mut b, t0) = dispatched(30);
    b.handle_dialog_event(t0 + ms(500), ringing());
    assert_eq!(
        drain(&mut b),
        [emit(EventKind::Ringing, D + 500), Action::StartEngine]
    );
    b.engine_started(t0 + ms(900));
    b.handle_engine_event(t0 + ms(950), EngineEvent::Audio(speech_ms(20)));
    b.handle_dialog_event(
        t0 + ms(30_500),
        ended(CallStatus::NoAnswer, EndedReason::NoAnswer, Some(487)),
    );
    assert_eq!(
        drain(&mut b),
        [finish(
            CallStatus::NoAnswer,
            EndedReason::NoAnswer,
            Some(487),
            Some(D + 500),
            None,
            D + 30_500
        )]
    );
}

/// Issue 21: the silence timeout waits while the callee holds the call (a
/// long hold is no silence of the callee's) and starts afresh on resume.
#[test]
fn a_hold_longer_than_the_silence_timeout_does_not_hang_up() {
    let (mut b, t0) = answered(30);
    let mut held = neg();
    held.direction = Direction::SendOnly;
    b.handle_dialog_event(t0 + ms(10_000), DialogEvent::MediaUpdated(held));
    drain(&mut b);
    assert_eq!(b.poll_timeout(), None, "no silence deadline while held");
    b.handle_timeout(t0 + ms(120_000));
    assert!(!b.is_finished(), "{:?}", drain(&mut b));
    // Resumed after two minutes: 30 s of silence from now, not from before the hold.
    b.handle_dialog_event(t0 + ms(130_000), DialogEvent::MediaUpdated(neg()));
    drain(&mut b);
    assert_eq!(b.poll_timeout(), Some(t0 + ms(160_000)));
    b.handle_timeout(t0 + ms(159_000));
    assert!(!b.is_finished());
    b.handle_timeout(t0 + ms(160_000));
    assert!(
        drain(&mut b).contains(&Action::Hangup(EndedReason::SilenceTimeout)),
        "hangs up 30 s after the resume"
    );
}

/// Keys the callee presses within [`KEYPAD_GAP`] of each other are one
/// group: one callee turn `[DTMF ..]` and one input to the engine.
#[test]
fn the_callees_keys_reach_the_engine_and_the_transcript_in_groups() {
    let (mut b, t0) = answered(30);
    // Before the answer nobody listens: see `answered` (not conversing yet
    // is covered by a fresh bridge below).
    b.keypad(t0 + ms(3_000), '1');
    b.keypad(t0 + ms(3_400), '2');
    b.handle_dialog_event(t0 + ms(3_900), DialogEvent::KeyPressed('#'));
    assert_eq!(drain(&mut b), []);
    assert_eq!(b.poll_timeout(), Some(t0 + ms(4_900)));
    b.handle_timeout(t0 + ms(4_900));
    assert_eq!(
        drain(&mut b),
        [
            emit(
                EventKind::TranscriptTurn {
                    role: Role::Callee,
                    text: "[DTMF 12#]".into(),
                    start_ms: 1_000,
                    end_ms: 1_900,
                },
                D + 4_900
            ),
            Action::EngineKeypad("12#".into())
        ]
    );
    // A later key is a group of its own; keys count as activity.
    b.keypad(t0 + ms(20_000), '5');
    b.handle_timeout(t0 + ms(21_000));
    let acts = drain(&mut b);
    assert_eq!(acts.last(), Some(&Action::EngineKeypad("5".into())));
    assert!(b.poll_timeout().unwrap() >= t0 + ms(50_000));
    // A key that is none is ignored.
    b.keypad(t0 + ms(22_000), 'x');
    assert_eq!(b.poll_timeout().unwrap(), t0 + ms(50_000));
    // Keys pressed just before the callee hangs up are in the transcript.
    b.keypad(t0 + ms(23_000), '9');
    b.handle_dialog_event(
        t0 + ms(23_200),
        ended(CallStatus::Completed, EndedReason::CalleeHangup, None),
    );
    let acts = drain(&mut b);
    assert!(
        matches!(&acts[..], [Action::Emit { kind: EventKind::TranscriptTurn { text, .. }, .. }, Action::Finish(_)]
            if text == "[DTMF 9]"),
        "{acts:?}"
    );
    // Keys before the conversation runs are dropped.
    let (mut early, t1) = dispatched(30);
    early.keypad(t1 + ms(10), '1');
    assert_eq!(drain(&mut early), []);
    assert_eq!(early.poll_timeout(), None);
}

fn tool_call(name: &str, id: &str, args: &str) -> EngineEvent {
    EngineEvent::FunctionCall {
        name: name.into(),
        call_id: id.into(),
        arguments: args.into(),
    }
}

/// `send_dtmf` presses the keys (RFC 4733 with `telephone-event`) and
/// answers the engine once they have played, not before.
#[test]
fn send_dtmf_is_answered_once_the_keys_have_played() {
    let (mut b, t0) = answered(30);
    b.handle_engine_event(
        t0 + ms(3_000),
        tool_call("send_dtmf", "t1", r#"{"digits":"2#"}"#),
    );
    assert_eq!(
        drain(&mut b),
        [Action::SendDtmf {
            digits: "2#".into(),
            via: DtmfVia::Rtp
        }]
    );
    // A second one while the first plays is refused (busy), at once.
    b.handle_engine_event(
        t0 + ms(3_100),
        tool_call("send_dtmf", "t2", r#"{"digits":"3"}"#),
    );
    let acts = drain(&mut b);
    assert!(
        matches!(&acts[..], [Action::Emit { .. }, Action::FunctionResult { call_id, output }]
            if call_id == "t2" && output.contains("busy")),
        "{acts:?}"
    );
    // A SIP INFO report does not answer an RTP press.
    b.handle_dialog_event(t0 + ms(3_200), DialogEvent::KeysSent(Ok(())));
    assert_eq!(drain(&mut b), []);
    b.media_dtmf_sent(t0 + ms(3_500));
    let output = tools::dtmf_output("2#", "rfc4733");
    assert_eq!(
        drain(&mut b),
        [
            emit(
                EventKind::TranscriptTurn {
                    role: Role::Agent,
                    text: format!(r#"[tool send_dtmf {{"digits":"2#"}} -> {output}]"#),
                    start_ms: 1_000,
                    end_ms: 1_500,
                },
                D + 3_500
            ),
            Action::FunctionResult {
                call_id: "t1".into(),
                output
            }
        ]
    );
    // Bad digits: an error result, nothing pressed.
    b.handle_engine_event(
        t0 + ms(4_000),
        tool_call("send_dtmf", "t3", r#"{"digits":"9x"}"#),
    );
    let acts = drain(&mut b);
    assert!(
        matches!(&acts[..], [Action::Emit { .. }, Action::FunctionResult { call_id, output }]
            if call_id == "t3" && output.contains("invalid_arguments")),
        "{acts:?}"
    );
}

/// Without `telephone-event` the keys go as SIP INFO; keys never reported
/// played are answered with an error after [`DTMF_TOOL_TIMEOUT`].
#[test]
fn without_telephone_event_keys_go_as_sip_info_and_never_hang() {
    let (mut b, t0) = dispatched(300);
    b.handle_dialog_event(t0 + ms(1_000), ringing());
    b.engine_started(t0 + ms(1_100));
    let mut no_te = neg();
    no_te.dtmf_pt = None;
    b.handle_dialog_event(t0 + ms(2_000), DialogEvent::Answered(no_te));
    b.media_started(t0 + ms(2_000));
    drain(&mut b);
    b.handle_engine_event(
        t0 + ms(3_000),
        tool_call("send_dtmf", "i1", r#"{"digits":"1"}"#),
    );
    assert_eq!(
        drain(&mut b),
        [Action::SendDtmf {
            digits: "1".into(),
            via: DtmfVia::SipInfo
        }]
    );
    b.handle_dialog_event(t0 + ms(3_100), DialogEvent::KeysSent(Ok(())));
    let acts = drain(&mut b);
    assert!(
        matches!(&acts[..], [Action::Emit { .. }, Action::FunctionResult { output, .. }]
            if output.contains("sip_info")),
        "{acts:?}"
    );
    b.handle_engine_event(
        t0 + ms(4_000),
        tool_call("send_dtmf", "i2", r#"{"digits":"2"}"#),
    );
    drain(&mut b);
    assert_eq!(b.poll_timeout(), Some(t0 + ms(4_000) + DTMF_TOOL_TIMEOUT));
    b.handle_timeout(t0 + ms(4_000) + DTMF_TOOL_TIMEOUT);
    let acts = drain(&mut b);
    assert!(
        matches!(&acts[..], [Action::Emit { .. }, Action::FunctionResult { call_id, output }]
            if call_id == "i2" && output.contains("dtmf_failed")),
        "{acts:?}"
    );
}

/// `end_call` is answered at once and hangs up after the audio queued,
/// and after keys still being pressed.
#[test]
fn end_call_hangs_up_after_pending_audio_and_keys() {
    let (mut b, t0) = answered(30);
    b.handle_engine_event(t0 + ms(3_000), EngineEvent::Audio(speech_ms(1_000)));
    b.handle_engine_event(
        t0 + ms(3_000),
        tool_call("send_dtmf", "k", r#"{"digits":"9"}"#),
    );
    b.handle_engine_event(t0 + ms(3_000), tool_call("end_call", "e", "{}"));
    let acts = drain(&mut b);
    assert!(
        acts.iter()
            .any(|a| matches!(a, Action::FunctionResult { call_id, .. } if call_id == "e")),
        "{acts:?}"
    );
    // The audio ends at +4 s, plus the delay; the keys are still pressed then.
    assert_eq!(b.poll_timeout(), Some(t0 + ms(3_000) + DTMF_TOOL_TIMEOUT));
    b.handle_timeout(t0 + ms(4_300));
    assert!(!drain(&mut b).contains(&Action::Hangup(EndedReason::AgentHangup)));
    b.media_dtmf_sent(t0 + ms(4_500));
    let acts = drain(&mut b);
    assert_eq!(
        acts.last(),
        Some(&Action::Hangup(EndedReason::AgentHangup)),
        "{acts:?}"
    );
}

/// Keys being pressed when the callee holds the call are dropped by the
/// media: `send_dtmf` is answered with an error at once.
#[test]
fn a_hold_fails_the_keys_being_pressed() {
    let (mut b, t0) = answered(30);
    b.handle_engine_event(
        t0 + ms(3_000),
        tool_call("send_dtmf", "h", r#"{"digits":"1"}"#),
    );
    drain(&mut b);
    let mut held = neg();
    held.direction = Direction::SendOnly;
    b.handle_dialog_event(t0 + ms(3_100), DialogEvent::MediaUpdated(held));
    let acts = drain(&mut b);
    assert!(
        acts.iter()
            .any(|a| matches!(a, Action::FunctionResult { call_id, output }
            if call_id == "h" && output.contains("dtmf_failed") && output.contains("hold"))),
        "{acts:?}"
    );
    b.media_dtmf_sent(t0 + ms(3_200));
    assert_eq!(drain(&mut b), [], "answered once");
}
/// Ringing, engine up, answered at +2 s with `amd` on, media started:
/// the conversation waits for the verdict unless `amd` is `continue`.
fn answered_amd(mode: AmdMode, message: Option<&str>) -> (Bridge, Instant) {
    let t0 = Instant::now();
    let c = BridgeConfig {
        amd: mode,
        amd_message: message.map(str::to_string),
        ..cfg(30)
    };
    let mut b = Bridge::new("c_test", c, t0, D);
    b.handle_dialog_event(t0 + ms(1_000), ringing());
    b.engine_started(t0 + ms(1_500));
    // The engine's greeting, ready before the answer: held.
    b.handle_engine_event(t0 + ms(1_600), EngineEvent::Audio(speech_ms(500)));
    b.handle_dialog_event(t0 + ms(2_000), DialogEvent::Answered(neg()));
    drain(&mut b);
    b.media_started(t0 + ms(2_000));
    let expect: &[Action] = if mode == AmdMode::Continue {
        &[Action::EngineAnswered, Action::SendToMedia(speech_ms(500))]
    } else {
        &[]
    };
    assert_eq!(drain(&mut b), expect, "{mode:?}");
    (b, t0)
}

/// A 20 ms frame of a 1 kHz tone (a voicemail beep).
fn beep_frame(i: usize) -> Vec<i16> {
    (0..160)
        .map(|n| {
            let t = (i * 160 + n) as f64 / 8000.0;
            (8000.0 * (2.0 * std::f64::consts::PI * 1000.0 * t).sin()) as i16
        })
        .collect()
}

/// Feeds frames heard from +2 s (the answer) on, one per 20 ms, from the
/// answer's `from_ms`; every action that came out, with its frame's time.
fn hear(
    b: &mut Bridge,
    t0: Instant,
    from_ms: u64,
    frames: impl IntoIterator<Item = Vec<i16>>,
) -> (Vec<Action>, u64) {
    let mut out = vec![];
    let mut at = from_ms;
    for f in frames {
        at += 20;
        b.heard(t0 + ms(2_000 + at), f);
        out.extend(drain(b));
    }
    (out, at)
}

fn emitted_answered_by(actions: &[Action]) -> Option<(AnsweredBy, u64)> {
    actions.iter().find_map(|a| match a {
        Action::Emit {
            kind:
                EventKind::AnsweredBy {
                    answered_by,
                    decision_ms,
                },
            ..
        } => Some((*answered_by, *decision_ms)),
        _ => None,
    })
}

/// Issue 18, `amd: hangup`: a long greeting is a machine; no word of the
/// agent's is played, the `answered_by` event is out and the BYE follows
/// at once, the call ending `completed` / `answering_machine`.
#[test]
fn amd_hangup_hangs_up_on_a_machine_without_a_word() {
    let (mut b, t0) = answered_amd(AmdMode::Hangup, None);
    let (out, _) = hear(&mut b, t0, 0, std::iter::repeat_n(speech(), 150));
    let (who, decision_ms) = emitted_answered_by(&out).expect("a verdict");
    assert_eq!(who, AnsweredBy::Machine);
    assert!((2_500..=2_600).contains(&decision_ms), "{decision_ms}");
    assert!(
        out.contains(&Action::Hangup(EndedReason::AnsweringMachine)),
        "{out:?}"
    );
    assert!(
        !out.iter().any(|a| matches!(
            a,
            Action::EngineAnswered | Action::SendToMedia(_) | Action::SendToEngine(_)
        )),
        "{out:?}"
    );
    assert_eq!(b.poll_timeout(), None);
    b.handle_dialog_event(
        t0 + ms(6_000),
        ended(CallStatus::Completed, EndedReason::AgentHangup, None),
    );
    let fin = drain(&mut b);
    assert!(
        matches!(
            fin.last(),
            Some(Action::Finish(Some(CallEnd {
                status: CallStatus::Completed,
                reason: EndedReason::AnsweringMachine,
                ..
            })))
        ),
        "{fin:?}"
    );
}

/// `amd: hangup` and a person: "Hello?" then silence; the conversation
/// starts at the verdict with the greeting held since the answer.
#[test]
fn amd_hangup_lets_a_person_talk_after_a_short_hello() {
    let (mut b, t0) = answered_amd(AmdMode::Hangup, None);
    let frames = std::iter::repeat_n(speech(), 25).chain(std::iter::repeat_n(vec![0i16; 160], 60));
    let (out, _) = hear(&mut b, t0, 0, frames);
    let (who, decision_ms) = emitted_answered_by(&out).expect("a verdict");
    assert_eq!(who, AnsweredBy::Human);
    assert!((1_260..=1_340).contains(&decision_ms), "{decision_ms}");
    assert!(out.contains(&Action::EngineAnswered), "{out:?}");
    assert!(
        out.contains(&Action::SendToMedia(speech_ms(500))),
        "{out:?}"
    );
    assert!(!out.iter().any(|a| matches!(a, Action::Hangup(_))));
}

/// Nothing heard at all (RTP silent): `unknown` at the bound, from the
/// timer, and the call goes on as with a person.
#[test]
fn amd_without_any_audio_is_unknown_at_the_bound() {
    let (mut b, t0) = answered_amd(AmdMode::Hangup, None);
    assert_eq!(b.poll_timeout(), Some(t0 + ms(2_000 + 4_000)));
    b.handle_timeout(t0 + ms(6_000));
    let out = drain(&mut b);
    assert_eq!(
        emitted_answered_by(&out),
        Some((AnsweredBy::Unknown, 4_000))
    );
    assert!(out.contains(&Action::EngineAnswered), "{out:?}");
}

/// `amd: continue`: the conversation runs from the answer; the verdict is
/// reported and nothing else happens.
#[test]
fn amd_continue_only_reports() {
    let (mut b, t0) = answered_amd(AmdMode::Continue, None);
    let (out, _) = hear(&mut b, t0, 0, std::iter::repeat_n(speech(), 150));
    assert_eq!(
        emitted_answered_by(&out).map(|v| v.0),
        Some(AnsweredBy::Machine)
    );
    assert!(!out
        .iter()
        .any(|a| matches!(a, Action::Hangup(_) | Action::PlayMessage(_))));
    assert!(out.iter().any(|a| matches!(a, Action::SendToEngine(_))));
}

/// `amd: leave_message` with a text: after the greeting and the beep the
/// message is asked for, played, and the BYE follows its end.
#[test]
fn amd_leave_message_speaks_after_the_beep_then_hangs_up() {
    let (mut b, t0) = answered_amd(AmdMode::LeaveMessage, Some("Please call us back."));
    let (out, at) = hear(&mut b, t0, 0, std::iter::repeat_n(speech(), 200));
    assert_eq!(
        emitted_answered_by(&out).map(|v| v.0),
        Some(AnsweredBy::Machine)
    );
    assert!(
        !out.iter().any(|a| matches!(
            a,
            Action::Hangup(_) | Action::PlayMessage(_) | Action::EngineAnswered
        )),
        "{out:?}"
    );
    // Silence, then the beep: nothing until the beep ends.
    let (out, at) = hear(&mut b, t0, at, std::iter::repeat_n(vec![0i16; 160], 20));
    assert_eq!(out, []);
    let (out, at) = hear(&mut b, t0, at, (0..25).map(beep_frame));
    assert_eq!(out, []);
    let (out, at) = hear(&mut b, t0, at, std::iter::repeat_n(vec![0i16; 160], 3));
    assert_eq!(
        out,
        [Action::PlayMessage("Please call us back.".into())],
        "beep ended at {at}"
    );
    let spoken = t0 + ms(2_000 + at);
    b.message_audio(spoken, Some(speech_ms(1_000)));
    assert_eq!(drain(&mut b), [Action::SendToMedia(speech_ms(1_000))]);
    assert_eq!(b.poll_timeout(), Some(spoken + ms(1_000) + HANGUP_DELAY));
    b.handle_timeout(spoken + ms(1_000) + HANGUP_DELAY);
    assert_eq!(drain(&mut b), [Action::Hangup(EndedReason::AgentHangup)]);
}

/// `leave_message` with no text: the agent's own greeting is the message;
/// the BYE comes once it has played out and the agent stayed quiet.
#[test]
fn amd_leave_message_without_a_text_lets_the_agent_speak_then_hangs_up() {
    let (mut b, t0) = answered_amd(AmdMode::LeaveMessage, None);
    let frames =
        std::iter::repeat_n(speech(), 200).chain(std::iter::repeat_n(vec![0i16; 160], 100));
    let (out, at) = hear(&mut b, t0, 0, frames);
    let answered_at = out
        .iter()
        .position(|a| *a == Action::EngineAnswered)
        .expect("agent speaks");
    assert_eq!(out[answered_at + 1], Action::SendToMedia(speech_ms(500)));
    // Greeting ended at 4000 ms; + 1500 ms of silence.
    let (who, _) = emitted_answered_by(&out).unwrap();
    assert_eq!(who, AnsweredBy::Machine);
    assert!(at >= 5_500);
    let due = b.poll_timeout().expect("the BYE is due");
    b.handle_timeout(due);
    assert_eq!(drain(&mut b), [Action::Hangup(EndedReason::AgentHangup)]);
}

/// `leave_message` whose text cannot be synthesised falls back to the agent.
#[test]
fn amd_leave_message_falls_back_to_the_agent_without_tts() {
    let (mut b, t0) = answered_amd(AmdMode::LeaveMessage, Some("Hi"));
    let frames =
        std::iter::repeat_n(speech(), 200).chain(std::iter::repeat_n(vec![0i16; 160], 100));
    let (out, at) = hear(&mut b, t0, 0, frames);
    assert!(out.contains(&Action::PlayMessage("Hi".into())));
    b.message_audio(t0 + ms(2_000 + at), None);
    assert_eq!(
        drain(&mut b),
        [Action::EngineAnswered, Action::SendToMedia(speech_ms(500))]
    );
}

/// Issue 18: a customer tool is asked of the edge (an action, never a wait:
/// audio keeps flowing), its answer goes to the engine and into a
/// `tool_call` event stamped from the answer; a fifth at once is `tool_busy`.
#[test]
fn customer_tools_are_asked_of_the_edge_without_holding_up_the_call() {
    use crate::call_task::customer_tools::ToolAsk;
    use voxline_shared::sidecar_link::ToolCallAnswer;
    let (mut b, t0) = answered(30);
    let call = |b: &mut Bridge, at: u64, id: &str| {
        b.handle_engine_event(
            t0 + ms(at),
            EngineEvent::FunctionCall {
                name: "lookup_order".into(),
                call_id: id.into(),
                arguments: r#"{"order":"A-17"}"#.into(),
            },
        )
    };
    call(&mut b, 3_000, "fc_1");
    assert_eq!(
        drain(&mut b),
        [Action::AskTool(ToolAsk {
            tool_call_id: "fc_1".into(),
            name: "lookup_order".into(),
            arguments: r#"{"order":"A-17"}"#.into(),
        })]
    );
    // The call goes on while the tool runs.
    b.handle_engine_event(t0 + ms(3_100), EngineEvent::Audio(speech_ms(20)));
    assert_eq!(drain(&mut b), [Action::SendToMedia(speech_ms(20))]);
    b.heard(t0 + ms(3_120), speech());
    assert!(drain(&mut b).contains(&Action::SendToEngine(speech())));

    let answer = ToolCallAnswer {
        protocol_version: 1,
        ok: true,
        output: Some(r#"{"status":"shipped"}"#.into()),
        error: None,
        duration_ms: Some(700),
    };
    b.tool_answered(t0 + ms(3_800), "fc_1", &answer);
    assert_eq!(
        drain(&mut b),
        [
            emit(
                EventKind::ToolCall {
                    tool_call_id: "fc_1".into(),
                    name: "lookup_order".into(),
                    arguments: r#"{"order":"A-17"}"#.into(),
                    ok: true,
                    output: Some(r#"{"status":"shipped"}"#.into()),
                    error_code: None,
                    // Offsets from the answer (+2 s), as transcript turns are.
                    start_ms: 1_000,
                    end_ms: 1_800,
                },
                D + 3_800
            ),
            Action::FunctionResult {
                call_id: "fc_1".into(),
                output: r#"{"status":"shipped"}"#.into(),
            }
        ]
    );
    // Answered once: a late duplicate is dropped.
    b.tool_answered(t0 + ms(3_900), "fc_1", &answer);
    assert_eq!(drain(&mut b), []);

    // Four at once are asked; the fifth is answered `tool_busy` at once.
    for (i, id) in ["a", "b", "c", "d"].iter().enumerate() {
        call(&mut b, 4_000 + i as u64, id);
        assert!(matches!(drain(&mut b)[..], [Action::AskTool(_)]));
    }
    call(&mut b, 4_100, "e");
    let actions = drain(&mut b);
    assert!(
        matches!(&actions[..], [Action::Emit { kind: EventKind::ToolCall { ok: false, error_code: Some(code), .. }, .. }, Action::FunctionResult { call_id, output }]
            if code == "tool_busy" && call_id == "e" && output.contains("tool_busy")),
        "{actions:?}"
    );
    // After the end, answers are dropped.
    b.handle_dialog_event(
        t0 + ms(5_000),
        ended(CallStatus::Completed, EndedReason::CalleeHangup, None),
    );
    drain(&mut b);
    b.tool_answered(t0 + ms(5_100), "a", &answer);
    assert_eq!(drain(&mut b), []);
}

// ---------------------------------------------------------------- transfers

const XFER_ARGS: &str = r#"{"destination":"+15550002222"}"#;

/// The engine asks for a transfer at +3 s: a REFER first.
fn transfer_asked() -> (Bridge, Instant) {
    let (mut b, t0) = answered(30);
    b.handle_engine_event(t0 + ms(3_000), tool_call("transfer", "x1", XFER_ARGS));
    assert_eq!(
        drain(&mut b),
        [Action::Refer {
            destination: "+15550002222".into()
        }]
    );
    (b, t0)
}

fn leg_neg() -> Negotiated {
    Negotiated {
        remote_rtp: "192.0.2.8:41000".parse().unwrap(),
        codec: Codec::Pcma,
        pt: 8,
        ..neg()
    }
}

/// Without REFER, the second leg is dialled, bridged once its media runs
/// (engine detached, tool turn, `transferred` event), audio is relayed
/// both ways in 20 ms frames, and the callee's BYE hangs up the second
/// leg: the call ends `transferred`.
#[test]
fn without_refer_the_sidecar_bridges_a_second_leg_and_relays_audio() {
    use crate::sip::ReferEvent;
    let (mut b, t0) = transfer_asked();
    b.handle_dialog_event(
        t0 + ms(3_001),
        DialogEvent::Refer(ReferEvent::NotSupported("refer_off")),
    );
    assert_eq!(
        drain(&mut b),
        [Action::DialTransferee {
            target: transfer::LegTarget::Number("+15550002222".into())
        }]
    );
    // While it rings the conversation goes on: the engine hears the callee.
    b.heard(t0 + ms(4_000), speech());
    assert!(drain(&mut b)
        .iter()
        .any(|a| matches!(a, Action::SendToEngine(_))));
    b.transferee_event(t0 + ms(5_000), ringing());
    b.transferee_event(t0 + ms(8_000), DialogEvent::Answered(leg_neg()));
    assert_eq!(drain(&mut b), [Action::StartTransfereeMedia(leg_neg())]);
    b.transferee_media_started(t0 + ms(8_000));
    let output = tools::transfer_output("+15550002222", "bridge");
    assert_eq!(
        drain(&mut b),
        [
            Action::DetachEngine,
            Action::FlushMedia,
            emit(
                EventKind::TranscriptTurn {
                    role: Role::Agent,
                    text: format!("[tool transfer {XFER_ARGS} -> {output}]"),
                    start_ms: 1_000,
                    end_ms: 6_000,
                },
                D + 8_000
            ),
            emit(
                EventKind::Transferred {
                    destination: "+15550002222".into(),
                    method: "bridge".into(),
                    at_offset_ms: 6_000,
                    extension: None,
                    mode: Some(TransferMode::Blind),
                    transfer_id: None,
                },
                D + 8_000
            ),
        ]
    );
    // No silence timeout once bridged, and the engine is gone for good.
    assert_eq!(b.poll_timeout(), None);
    b.engine_failed(
        t0 + ms(8_100),
        &EngineError::Disconnected("detached".into()),
    );
    assert_eq!(drain(&mut b), []);
    // Callee -> transferee and back, frame by frame; nothing to the engine.
    let callee = speech();
    b.heard(t0 + ms(8_020), callee.clone());
    assert_eq!(drain(&mut b), [Action::SendToTransferee(callee)]);
    let person: Vec<i16> = (0..160).map(|i| (i * 10) as i16).collect();
    b.transferee_heard(t0 + ms(8_040), person.clone());
    assert_eq!(drain(&mut b), [Action::SendToMedia(person)]);
    // The callee hangs up: the second leg goes too; `transferred`.
    b.handle_dialog_event(
        t0 + ms(20_000),
        ended(CallStatus::Completed, EndedReason::CalleeHangup, None),
    );
    assert_eq!(
        drain(&mut b),
        [
            Action::HangupTransferee(EndedReason::Transferred),
            finish(
                CallStatus::Completed,
                EndedReason::Transferred,
                None,
                Some(D + 1_000),
                Some(D + 2_000),
                D + 20_000
            ),
        ]
    );
}

/// The transferee hangs up first: the callee's leg is hung up (BYE).
#[test]
fn the_transferees_bye_hangs_up_the_callee() {
    use crate::sip::ReferEvent;
    let (mut b, t0) = transfer_asked();
    b.handle_dialog_event(t0 + ms(3_001), DialogEvent::Refer(ReferEvent::Refused(501)));
    assert!(matches!(
        &drain(&mut b)[..],
        [Action::DialTransferee { .. }]
    ));
    b.transferee_event(t0 + ms(4_000), DialogEvent::Answered(leg_neg()));
    b.transferee_media_started(t0 + ms(4_000));
    drain(&mut b);
    b.transferee_event(
        t0 + ms(9_000),
        ended(CallStatus::Completed, EndedReason::CalleeHangup, None),
    );
    assert_eq!(drain(&mut b), [Action::Hangup(EndedReason::Transferred)]);
    b.handle_dialog_event(
        t0 + ms(9_050),
        ended(CallStatus::Completed, EndedReason::AgentHangup, None),
    );
    assert_eq!(
        drain(&mut b),
        [finish(
            CallStatus::Completed,
            EndedReason::Transferred,
            None,
            Some(D + 1_000),
            Some(D + 2_000),
            D + 9_050
        )]
    );
}

/// A busy or unanswered destination answers the engine with a stable
/// error code; the conversation goes on (and a new transfer may follow).
#[test]
fn a_busy_destination_is_an_error_result_and_the_call_goes_on() {
    use crate::sip::ReferEvent;
    let (mut b, t0) = transfer_asked();
    b.handle_dialog_event(
        t0 + ms(3_001),
        DialogEvent::Refer(ReferEvent::NotSupported("refer_off")),
    );
    drain(&mut b);
    b.transferee_event(
        t0 + ms(4_000),
        ended(CallStatus::Busy, EndedReason::Busy, Some(486)),
    );
    let acts = drain(&mut b);
    let [Action::Emit {
        kind: EventKind::TranscriptTurn { text, .. },
        ..
    }, Action::FunctionResult { call_id, output }] = &acts[..]
    else {
        panic!("{acts:?}")
    };
    assert_eq!(call_id, "x1");
    let v: serde_json::Value = serde_json::from_str(output).unwrap();
    assert_eq!(
        (v["ok"].as_bool(), v["error"].as_str()),
        (Some(false), Some("busy"))
    );
    assert!(text.starts_with("[tool transfer "), "{text}");
    // The engine still hears the callee, and a second try is taken.
    b.heard(t0 + ms(4_100), speech());
    assert!(drain(&mut b)
        .iter()
        .any(|a| matches!(a, Action::SendToEngine(_))));
    b.handle_engine_event(t0 + ms(5_000), tool_call("transfer", "x2", XFER_ARGS));
    assert!(matches!(&drain(&mut b)[..], [Action::Refer { .. }]));
    // ... but not a third one while it runs.
    b.handle_engine_event(t0 + ms(5_001), tool_call("transfer", "x3", XFER_ARGS));
    let acts = drain(&mut b);
    assert!(
        matches!(&acts[..], [Action::Emit { .. }, Action::FunctionResult { call_id, output }]
            if call_id == "x3" && output.contains("transfer_in_progress")),
        "{acts:?}"
    );
}

/// REFER (RFC 3515): the NOTIFY's 200 sipfrag hands the call over; our
/// side says BYE and the call ends `transferred`.
#[test]
fn a_refer_whose_notify_reports_200_ends_our_side_transferred() {
    use crate::sip::ReferEvent;
    let (mut b, t0) = transfer_asked();
    b.handle_dialog_event(t0 + ms(3_050), DialogEvent::Refer(ReferEvent::Accepted));
    b.handle_dialog_event(
        t0 + ms(3_100),
        DialogEvent::Refer(ReferEvent::Progress {
            code: 100,
            terminated: false,
        }),
    );
    assert_eq!(drain(&mut b), []);
    b.handle_dialog_event(
        t0 + ms(6_000),
        DialogEvent::Refer(ReferEvent::Progress {
            code: 200,
            terminated: true,
        }),
    );
    let acts = drain(&mut b);
    assert_eq!(acts[0], Action::DetachEngine);
    assert!(acts.contains(&emit(
        EventKind::Transferred {
            destination: "+15550002222".into(),
            method: "refer".into(),
            at_offset_ms: 4_000,
            extension: None,
            mode: Some(TransferMode::Blind),
            transfer_id: None,
        },
        D + 6_000
    )));
    assert_eq!(acts.last(), Some(&Action::Hangup(EndedReason::Transferred)));
    assert!(
        !acts
            .iter()
            .any(|a| matches!(a, Action::HangupTransferee(_))),
        "{acts:?}"
    );
    b.handle_dialog_event(
        t0 + ms(6_050),
        ended(CallStatus::Completed, EndedReason::AgentHangup, None),
    );
    assert!(matches!(
        &drain(&mut b)[..],
        [Action::Finish(Some(CallEnd {
            status: CallStatus::Completed,
            reason: EndedReason::Transferred,
            ..
        }))]
    ));
}

/// A REFER the destination does not answer (NOTIFY 480), or one whose
/// NOTIFYs never report an answer, is an error result; the call goes on.
#[test]
fn a_refer_that_fails_or_times_out_is_an_error_result() {
    use crate::sip::ReferEvent;
    let (mut b, t0) = transfer_asked();
    b.handle_dialog_event(
        t0 + ms(5_000),
        DialogEvent::Refer(ReferEvent::Progress {
            code: 480,
            terminated: true,
        }),
    );
    let acts = drain(&mut b);
    assert!(
        matches!(&acts[..], [Action::Emit { .. }, Action::FunctionResult { output, .. }]
            if output.contains(r#""error":"no_answer""#)),
        "{acts:?}"
    );
    // Again, and the trunk stays silent.
    b.handle_engine_event(t0 + ms(6_000), tool_call("transfer", "x2", XFER_ARGS));
    drain(&mut b);
    let deadline = t0 + ms(6_000) + transfer::REFER_TIMEOUT;
    assert_eq!(b.poll_timeout(), Some(deadline));
    b.handle_timeout(deadline);
    let acts = drain(&mut b);
    assert!(
        matches!(&acts[..], [Action::Emit { .. }, Action::FunctionResult { call_id, output }]
            if call_id == "x2" && output.contains(r#""error":"no_answer""#)),
        "{acts:?}"
    );
    // A late NOTIFY changes nothing.
    b.handle_dialog_event(
        deadline + ms(1),
        DialogEvent::Refer(ReferEvent::Progress {
            code: 200,
            terminated: true,
        }),
    );
    assert_eq!(drain(&mut b), []);
}

/// The edge's hangup while bridged hangs up both legs.
#[test]
fn the_edges_hangup_while_bridged_hangs_up_both_legs() {
    use crate::sip::ReferEvent;
    let (mut b, t0) = transfer_asked();
    b.handle_dialog_event(
        t0 + ms(3_001),
        DialogEvent::Refer(ReferEvent::NotSupported("inbound_call")),
    );
    b.transferee_event(t0 + ms(4_000), DialogEvent::Answered(leg_neg()));
    b.transferee_media_started(t0 + ms(4_000));
    drain(&mut b);
    b.hangup_command(t0 + ms(5_000), Some(HangupCause::Requested));
    assert_eq!(
        drain(&mut b),
        [
            Action::Hangup(EndedReason::HangupRequested),
            Action::HangupTransferee(EndedReason::HangupRequested)
        ]
    );
}

// ------------------------------------------------- transfers the edge asks for

fn order(id: &str, target: TransferTarget, mode: TransferMode) -> TransferOrder {
    TransferOrder {
        transfer_id: id.into(),
        target,
        mode,
        message: None,
    }
}

fn number(n: &str) -> TransferTarget {
    TransferTarget::Number {
        destination: n.into(),
    }
}

fn person(pk: u64, ext: &str) -> TransferTarget {
    TransferTarget::User {
        user_pk: pk,
        extension: ext.into(),
        display_name: None,
    }
}

/// The edge's transfer command starts the same REFER as the tool; the
/// outcome is a `transferred` event naming the API's transfer (no tool
/// turn, no result to the engine), and a repeated command runs once.
#[test]
fn the_edges_transfer_command_refers_as_the_tool_does() {
    use crate::sip::ReferEvent;
    let (mut b, t0) = answered(30);
    let o = order("xfr_1", number("+15550002222"), TransferMode::Blind);
    b.transfer_command(t0 + ms(3_000), o.clone());
    assert_eq!(
        drain(&mut b),
        [Action::Refer {
            destination: "+15550002222".into()
        }]
    );
    b.transfer_command(t0 + ms(3_010), o);
    assert_eq!(drain(&mut b), [], "the same command again is ignored");
    b.handle_dialog_event(
        t0 + ms(6_000),
        DialogEvent::Refer(ReferEvent::Progress {
            code: 200,
            terminated: true,
        }),
    );
    assert_eq!(
        drain(&mut b),
        [
            Action::DetachEngine,
            Action::FlushMedia,
            emit(
                EventKind::Transferred {
                    destination: "+15550002222".into(),
                    method: "refer".into(),
                    at_offset_ms: 4_000,
                    extension: None,
                    mode: Some(TransferMode::Blind),
                    transfer_id: Some("xfr_1".into()),
                },
                D + 6_000
            ),
            Action::Hangup(EndedReason::Transferred),
        ]
    );
}

/// A target kind a newer edge may send is refused with `transfer_failed`
/// and the call goes on with the agent.
#[test]
fn a_transfer_to_an_unknown_target_kind_fails_and_the_call_goes_on() {
    let (mut b, t0) = answered(30);
    b.transfer_command(
        t0 + ms(3_000),
        order("xfr_1", TransferTarget::Unknown, TransferMode::Blind),
    );
    assert_eq!(
        drain(&mut b),
        [emit(
            EventKind::TransferFailed {
                destination: String::new(),
                error: "transfer_failed".into(),
                sip_code: None,
                transfer_id: Some("xfr_1".into()),
            },
            D + 3_000
        )]
    );
    b.heard(t0 + ms(3_100), speech());
    assert!(drain(&mut b)
        .iter()
        .any(|a| matches!(a, Action::SendToEngine(_))));
}

/// A command for a call not up yet, or while another transfer runs, is a
/// `transfer_failed` event with a stable code; the call goes on.
#[test]
fn a_transfer_command_that_cannot_run_is_a_transfer_failed_event() {
    let (mut b, t0) = dispatched(30);
    b.handle_dialog_event(t0 + ms(1_000), ringing());
    drain(&mut b);
    b.transfer_command(
        t0 + ms(1_500),
        order("xfr_1", number("+15550002222"), TransferMode::Blind),
    );
    assert_eq!(
        drain(&mut b),
        [emit(
            EventKind::TransferFailed {
                destination: "+15550002222".into(),
                error: "transfer_failed".into(),
                sip_code: None,
                transfer_id: Some("xfr_1".into()),
            },
            D + 1_500
        )]
    );
    let (mut b, t0) = transfer_asked();
    b.transfer_command(
        t0 + ms(3_500),
        order("xfr_2", person(7, "1001"), TransferMode::Blind),
    );
    assert_eq!(
        drain(&mut b),
        [emit(
            EventKind::TransferFailed {
                destination: "1001".into(),
                error: "transfer_in_progress".into(),
                sip_code: None,
                transfer_id: Some("xfr_2".into()),
            },
            D + 3_500
        )]
    );
}

/// A transfer to a person never REFERs (the trunk cannot reach a phone
/// registered here): their phone is dialled; none registered here is
/// `user_unavailable` and the engine keeps the callee.
#[test]
fn a_transfer_to_a_person_dials_their_phone_or_fails_user_unavailable() {
    let (mut b, t0) = answered(30);
    b.transfer_command(
        t0 + ms(3_000),
        order("xfr_1", person(7, "1001"), TransferMode::Blind),
    );
    assert_eq!(
        drain(&mut b),
        [Action::DialTransferee {
            target: transfer::LegTarget::User {
                user_pk: 7,
                extension: "1001".into()
            }
        }]
    );
    b.transferee_unavailable(t0 + ms(3_001));
    assert_eq!(
        drain(&mut b),
        [emit(
            EventKind::TransferFailed {
                destination: "1001".into(),
                error: "user_unavailable".into(),
                sip_code: None,
                transfer_id: Some("xfr_1".into()),
            },
            D + 3_001
        )]
    );
    b.heard(t0 + ms(3_100), speech());
    assert!(drain(&mut b)
        .iter()
        .any(|a| matches!(a, Action::SendToEngine(_))));
    // Again, and this time the phone answers: bridged, `transferred`
    // naming the extension.
    b.transfer_command(
        t0 + ms(4_000),
        order("xfr_2", person(7, "1001"), TransferMode::Blind),
    );
    drain(&mut b);
    b.transferee_event(t0 + ms(6_000), DialogEvent::Answered(leg_neg()));
    assert_eq!(drain(&mut b), [Action::StartTransfereeMedia(leg_neg())]);
    b.transferee_media_started(t0 + ms(6_000));
    assert_eq!(
        drain(&mut b),
        [
            Action::DetachEngine,
            Action::FlushMedia,
            emit(
                EventKind::Transferred {
                    destination: "1001".into(),
                    method: "bridge".into(),
                    at_offset_ms: 4_000,
                    extension: Some("1001".into()),
                    mode: Some(TransferMode::Blind),
                    transfer_id: Some("xfr_2".into()),
                },
                D + 6_000
            ),
        ]
    );
}

/// The tool may name an extension, but only one the offer lists: any
/// other is refused before anything is dialled.
#[test]
fn the_tool_transfers_only_to_the_people_the_offer_lists() {
    let t0 = Instant::now();
    let c = BridgeConfig {
        transfer_people: vec![voxline_shared::sidecar_link::TransferPerson {
            user_pk: 7,
            extension: "1001".into(),
            display_name: Some("Alice".into()),
        }],
        ..cfg(30)
    };
    let mut b = Bridge::new("c_test", c, t0, D);
    b.handle_dialog_event(t0 + ms(1_000), ringing());
    b.engine_started(t0 + ms(1_500));
    b.handle_dialog_event(t0 + ms(2_000), DialogEvent::Answered(neg()));
    b.media_started(t0 + ms(2_000));
    drain(&mut b);
    b.handle_engine_event(
        t0 + ms(3_000),
        tool_call("transfer", "x1", r#"{"extension":"1002"}"#),
    );
    let acts = drain(&mut b);
    assert!(
        matches!(&acts[..], [Action::Emit { .. }, Action::FunctionResult { output, .. }]
            if output.contains("invalid_arguments") && output.contains("1002")),
        "{acts:?}"
    );
    b.handle_engine_event(
        t0 + ms(3_100),
        tool_call("transfer", "x2", r#"{"extension":"1001"}"#),
    );
    assert_eq!(
        drain(&mut b),
        [Action::DialTransferee {
            target: transfer::LegTarget::User {
                user_pk: 7,
                extension: "1001".into()
            }
        }]
    );
    b.transferee_unavailable(t0 + ms(3_101));
    let acts = drain(&mut b);
    assert!(
        matches!(&acts[..], [Action::Emit { .. }, Action::FunctionResult { call_id, output }]
            if call_id == "x2" && output.contains(r#""error":"user_unavailable""#)),
        "{acts:?}"
    );
}

/// Warm: the callee is held (hold audio; the engine neither hears nor is
/// heard), the person is dialled without a REFER, hears the briefing once
/// they answer, and only then are the legs bridged (`method: warm`).
#[test]
fn a_warm_transfer_holds_the_callee_briefs_the_person_then_bridges() {
    let (mut b, t0) = answered(30);
    let mut o = order("xfr_1", number("+15550002222"), TransferMode::Warm);
    o.message = Some("A customer about order 17.".into());
    b.transfer_command(t0 + ms(3_000), o);
    let acts = drain(&mut b);
    assert!(
        matches!(&acts[..], [Action::FlushMedia, Action::PlayHold(hold), Action::DialTransferee {
            target: transfer::LegTarget::Number(n) }] if n == "+15550002222"
            && hold.len() == (transfer::TRANSFER_RING_TIMEOUT + transfer::HOLD_AUDIO_MARGIN).as_millis() as usize * 8),
        "{acts:?}"
    );
    // On hold: the callee's words do not reach the engine, its words not the callee.
    b.heard(t0 + ms(3_100), speech());
    b.handle_engine_event(t0 + ms(3_200), EngineEvent::Audio(speech_ms(100)));
    assert_eq!(drain(&mut b), []);
    b.transferee_event(t0 + ms(5_000), DialogEvent::Answered(leg_neg()));
    assert_eq!(drain(&mut b), [Action::StartTransfereeMedia(leg_neg())]);
    b.transferee_media_started(t0 + ms(5_000));
    assert_eq!(
        drain(&mut b),
        [Action::SynthesizeBriefing(
            "A customer about order 17.".into()
        )]
    );
    // Not bridged while the briefing plays: the callee still hears hold audio.
    b.briefing_audio(t0 + ms(5_200), Some(speech_ms(1_000)));
    assert_eq!(drain(&mut b), [Action::PlayToTransferee(speech_ms(1_000))]);
    b.heard(t0 + ms(5_300), speech());
    assert_eq!(drain(&mut b), []);
    let bridged_at = t0 + ms(6_200) + BRIEFING_TAIL;
    assert_eq!(b.poll_timeout(), Some(bridged_at));
    b.handle_timeout(bridged_at - ms(1));
    assert_eq!(drain(&mut b), []);
    b.handle_timeout(bridged_at);
    assert_eq!(
        drain(&mut b),
        [
            Action::DetachEngine,
            Action::FlushMedia,
            emit(
                EventKind::Transferred {
                    destination: "+15550002222".into(),
                    method: "warm".into(),
                    at_offset_ms: 4_500,
                    extension: None,
                    mode: Some(TransferMode::Warm),
                    transfer_id: Some("xfr_1".into()),
                },
                D + 6_500
            ),
        ]
    );
    // Bridged: audio both ways.
    b.heard(t0 + ms(6_600), speech());
    assert_eq!(drain(&mut b), [Action::SendToTransferee(speech())]);
}

/// Warm, and nobody answers: the hold audio stops and the callee is back
/// with the agent (the engine hears them again); `transfer_failed`.
#[test]
fn a_warm_transfer_nobody_answers_gives_the_callee_back_to_the_agent() {
    let (mut b, t0) = answered(30);
    b.transfer_command(
        t0 + ms(3_000),
        order("xfr_1", person(7, "1001"), TransferMode::Warm),
    );
    drain(&mut b);
    b.transferee_event(
        t0 + ms(33_000),
        ended(CallStatus::NoAnswer, EndedReason::NoAnswer, Some(408)),
    );
    assert_eq!(
        drain(&mut b),
        [
            Action::FlushMedia,
            emit(
                EventKind::TransferFailed {
                    destination: "1001".into(),
                    error: "no_answer".into(),
                    sip_code: Some(408),
                    transfer_id: Some("xfr_1".into()),
                },
                D + 33_000
            ),
        ]
    );
    b.heard(t0 + ms(33_100), speech());
    assert!(drain(&mut b)
        .iter()
        .any(|a| matches!(a, Action::SendToEngine(_))));
    b.handle_engine_event(t0 + ms(33_200), EngineEvent::Audio(speech_ms(100)));
    assert_eq!(drain(&mut b), [Action::SendToMedia(speech_ms(100))]);
}

/// Warm without speech synthesis (no local engine), or a failed one: the
/// person is connected at once, and the briefing the sidecar composes
/// itself quotes the engine's summary.
#[test]
fn a_warm_briefing_that_cannot_be_spoken_connects_at_once() {
    let (mut b, t0) = answered(30);
    b.handle_engine_event(
        t0 + ms(2_500),
        EngineEvent::Summary {
            summary: Some("Wants to move their delivery to Friday.".into()),
            outcome: None,
        },
    );
    drain(&mut b);
    b.transfer_command(
        t0 + ms(3_000),
        order("xfr_1", number("+15550002222"), TransferMode::Warm),
    );
    drain(&mut b);
    b.transferee_event(t0 + ms(5_000), DialogEvent::Answered(leg_neg()));
    b.transferee_media_started(t0 + ms(5_000));
    assert_eq!(
        drain(&mut b),
        [
            Action::StartTransfereeMedia(leg_neg()),
            Action::SynthesizeBriefing(
                "Transferred call. Wants to move their delivery to Friday.".into()
            )
        ]
    );
    b.briefing_audio(t0 + ms(5_100), None);
    let acts = drain(&mut b);
    assert!(
        matches!(&acts[..], [Action::DetachEngine, Action::FlushMedia, Action::Emit {
            kind: EventKind::Transferred { method, .. }, .. }] if method == "warm"),
        "{acts:?}"
    );
}

/// The tool may ask for a warm transfer too: the callee is held, the
/// person briefed (the sidecar's own briefing: the callee's last words),
/// and the engine's result, once bridged, says `warm`.
#[test]
fn the_tools_warm_transfer_briefs_with_the_callees_words_and_answers_warm() {
    let (mut b, t0) = answered(30);
    b.handle_engine_event(
        t0 + ms(2_500),
        EngineEvent::Transcript {
            role: Role::Callee,
            text: "I want to talk to billing.".into(),
            start_ms: 100,
            end_ms: 400,
        },
    );
    drain(&mut b);
    let args = r#"{"destination":"+15550002222","mode":"warm"}"#;
    b.handle_engine_event(t0 + ms(3_000), tool_call("transfer", "x1", args));
    let acts = drain(&mut b);
    assert!(
        matches!(
            &acts[..],
            [
                Action::FlushMedia,
                Action::PlayHold(_),
                Action::DialTransferee { .. }
            ]
        ),
        "no REFER for a warm transfer: {acts:?}"
    );
    b.transferee_event(t0 + ms(4_000), DialogEvent::Answered(leg_neg()));
    b.transferee_media_started(t0 + ms(4_000));
    assert_eq!(
        drain(&mut b),
        [
            Action::StartTransfereeMedia(leg_neg()),
            Action::SynthesizeBriefing(
                "Transferred call. The caller said: I want to talk to billing.".into()
            )
        ]
    );
    b.briefing_audio(t0 + ms(4_100), Some(speech_ms(500)));
    drain(&mut b);
    b.handle_timeout(t0 + ms(4_600) + BRIEFING_TAIL);
    let output = tools::transfer_output("+15550002222", "warm");
    let acts = drain(&mut b);
    assert!(
        acts.contains(&emit(
            EventKind::TranscriptTurn {
                role: Role::Agent,
                text: format!("[tool transfer {args} -> {output}]"),
                start_ms: 1_000,
                end_ms: 2_900,
            },
            D + 4_900
        )),
        "{acts:?}"
    );
    assert!(
        !acts
            .iter()
            .any(|a| matches!(a, Action::FunctionResult { .. })),
        "the engine is detached before its result: {acts:?}"
    );
}

/// A second transfer while a warm one holds the callee is refused without
/// touching the first: the callee stays on hold, nothing is flushed.
#[test]
fn a_transfer_refused_during_a_warm_one_leaves_the_callee_on_hold() {
    let (mut b, t0) = answered(30);
    b.transfer_command(
        t0 + ms(3_000),
        order("xfr_1", person(7, "1001"), TransferMode::Warm),
    );
    drain(&mut b);
    b.handle_engine_event(t0 + ms(3_500), tool_call("transfer", "x1", XFER_ARGS));
    let acts = drain(&mut b);
    assert!(
        matches!(&acts[..], [Action::Emit { .. }, Action::FunctionResult { output, .. }]
            if output.contains("transfer_in_progress")),
        "{acts:?}"
    );
    // Still held: the callee's words do not reach the engine.
    b.heard(t0 + ms(3_600), speech());
    assert_eq!(drain(&mut b), []);
}

/// A queue caller answered 2 s after dispatch and waiting 30 s: the agent
/// takes the call over. Nothing is reported again, the engine starts, the
/// conversation runs once it is up, and the end carries the queue's
/// timings, stamped from the dispatch.
#[test]
fn an_answered_call_handed_over_starts_the_engine_and_keeps_its_timings() {
    let t0 = Instant::now();
    let so_far = Timings {
        dispatched_ms: D,
        ringing_ms: None,
        answered_ms: Some(D + 2_000),
        ended_ms: 0,
    };
    let now = t0 + ms(32_000);
    let mut b = Bridge::taking_over("c_q", cfg(30), now, D + 32_000, so_far, &neg());
    assert_eq!(drain(&mut b), [Action::StartEngine]);
    b.engine_started(now + ms(500));
    assert_eq!(drain(&mut b), [Action::EngineAnswered]);
    // What the caller says goes to the engine.
    b.heard(now + ms(600), speech());
    assert!(drain(&mut b)
        .iter()
        .any(|a| matches!(a, Action::SendToEngine(_))));
    b.handle_dialog_event(
        now + ms(10_000),
        ended(CallStatus::Completed, EndedReason::CalleeHangup, None),
    );
    assert_eq!(
        drain(&mut b),
        [finish(
            CallStatus::Completed,
            EndedReason::CalleeHangup,
            None,
            None,
            Some(D + 2_000),
            D + 42_000
        )]
    );
}

/// Silence is counted from the hand-over, not from the answer.
#[test]
fn a_handed_over_call_counts_silence_from_the_hand_over() {
    let t0 = Instant::now();
    let so_far = Timings {
        dispatched_ms: D,
        ringing_ms: None,
        answered_ms: Some(D),
        ended_ms: 0,
    };
    let mut b = Bridge::taking_over("c_q", cfg(5), t0, D, so_far, &neg());
    b.engine_started(t0);
    drain(&mut b);
    assert_eq!(b.poll_timeout(), Some(t0 + ms(5_000)));
}

fn queue(overflow: voxline_shared::sidecar_link::QueueOverflow) -> TransferTarget {
    TransferTarget::Queue {
        plan: Box::new(voxline_shared::sidecar_link::QueuePlan {
            queue_pk: 3,
            name: "Sales".into(),
            extension: "600".into(),
            ring_all: true,
            members: vec![],
            member_timeout_seconds: 15,
            retry_seconds: 5,
            max_wait_seconds: 60,
            announce_every_seconds: 0,
            position: 1,
            overflow,
        }),
    }
}

/// A blind transfer to a queue hands the callee's answered leg over at
/// once: `transferred` (method `queue`, the queue's extension), the engine
/// detached, then the leg and the plan to the queue call, with the
/// timings so far; nothing more from the bridge (no `ended`, no hangup, no
/// silence timeout), whatever comes after.
#[test]
fn a_transfer_to_a_queue_hands_the_answered_leg_to_the_queue_call() {
    use voxline_shared::sidecar_link::QueueOverflow;
    let (mut b, t0) = answered(30);
    b.transfer_command(
        t0 + ms(5_000),
        order("xfr_q", queue(QueueOverflow::Agent), TransferMode::Blind),
    );
    let TransferTarget::Queue { plan } = queue(QueueOverflow::Agent) else {
        unreachable!()
    };
    assert_eq!(
        drain(&mut b),
        [
            Action::DetachEngine,
            Action::FlushMedia,
            emit(
                EventKind::Transferred {
                    destination: "600".into(),
                    method: "queue".into(),
                    at_offset_ms: 3_000,
                    extension: None,
                    mode: Some(TransferMode::Blind),
                    transfer_id: Some("xfr_q".into()),
                },
                D + 5_000
            ),
            Action::HandToQueue {
                plan,
                timings: Timings {
                    dispatched_ms: D,
                    ringing_ms: Some(D + 1_000),
                    answered_ms: Some(D + 2_000),
                    ended_ms: 0,
                },
            },
        ]
    );
    assert_eq!(b.poll_timeout(), None, "no silence timeout any more");
    b.heard(t0 + ms(5_020), speech());
    b.handle_timeout(t0 + ms(60_000));
    b.handle_dialog_event(
        t0 + ms(61_000),
        ended(CallStatus::Completed, EndedReason::CalleeHangup, None),
    );
    assert_eq!(drain(&mut b), [], "the queue call has the leg now");
}

/// A queue takes blind transfers only: a warm one is `transfer_failed`
/// and the agent keeps the callee (nothing detached, nothing handed).
#[test]
fn a_warm_transfer_to_a_queue_is_refused_and_the_call_goes_on() {
    use voxline_shared::sidecar_link::QueueOverflow;
    let (mut b, t0) = answered(30);
    b.transfer_command(
        t0 + ms(5_000),
        order("xfr_w", queue(QueueOverflow::Hangup), TransferMode::Warm),
    );
    assert_eq!(
        drain(&mut b),
        [emit(
            EventKind::TransferFailed {
                destination: "600".into(),
                error: "transfer_failed".into(),
                sip_code: None,
                transfer_id: Some("xfr_w".into()),
            },
            D + 5_000
        )]
    );
    // The conversation goes on: the callee's speech reaches the engine.
    b.heard(t0 + ms(5_020), speech());
    assert!(drain(&mut b)
        .iter()
        .any(|a| matches!(a, Action::SendToEngine(_))));
}

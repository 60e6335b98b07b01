//! The per-call bridge, sans-IO: every decision a SIP call task makes, with
//! no socket, no task and no clock of its own.
//!
//! The driver ([`super::sip`]) feeds it what happens — dialog events from the
//! SIP call, engine events, frames heard from the callee, the edge's hangup
//! command, the results of starting media and the engine — and the time
//! ([`Bridge::handle_timeout`] when [`Bridge::poll_timeout`] is due). After
//! each input it drains [`Bridge::poll_action`] and performs what comes out:
//! emit a call event, start media or the engine, move audio between them, hang
//! up the SIP call, finish. Times are `Instant`s passed in, so tests run a
//! whole call in virtual time.
//!
//! What it decides:
//! - call events and their timings: `ringing` once, `answered`, transcript
//!   turns and summaries, and `ended` with the status, reason and SIP code
//!   (a hangup we asked for keeps our reason; the dialog's otherwise);
//! - the silence timeout ([`SilenceWatch`], armed at the answer);
//! - the hangup after the engine's `EndCall`, once its last words have played
//!   ([`PlayoutClock`]) plus [`HANGUP_DELAY`];
//! - the edge's hangup command (CANCEL while ringing, BYE once answered: the
//!   dialog picks), and the sidecar's shutdown;
//! - engine failure at start or mid-call: hang up, never leave dead air;
//! - when the engine starts (issue 17): at the first provisional response
//!   (ringing or early media), so its session is open and configured, its
//!   recognizer loaded and greeting synthesised before the answer (at the
//!   answer if none came). It is told [`Action::EngineAnswered`] once the
//!   callee answered and media runs, and only then hears the callee; what it
//!   says before is held (bounded) and played from then. A call never
//!   answered closes it with [`Action::Finish`].
//!
//! - the keypad (issue 18): keys the callee pressed (RFC 4733 or SIP INFO)
//!   grouped while they come within [`KEYPAD_GAP`] of each other, then
//!   given to the engine ([`Action::EngineKeypad`]) and the transcript as
//!   one callee turn `[DTMF 12#]` ([`crate::engine::dtmf_text`]);
//! - the built-in tools ([`super::tools`]): `send_dtmf` presses keys
//!   ([`Action::SendDtmf`], RFC 4733 when `telephone-event` was negotiated,
//!   else SIP INFO) and answers the engine once they have played (or after
//!   [`DTMF_TOOL_TIMEOUT`]); `end_call` hangs up after the pending audio;
//!   any other name gets an error result at once. Each call and its result
//!   is one agent turn `[tool NAME ARGS -> RESULT]`.
//! - answering-machine detection (issue 18, the offer's `amd`): from the
//!   answer the callee's frames also go to an [`AmdDetector`]; its verdict is
//!   the `answered_by` event. With `hangup` or `leave_message` the
//!   conversation waits for it (at most [`AmdConfig::max_decision`]); a
//!   machine is hung up on (`answering_machine`) or, once it records (its
//!   beep ended, or its greeting and a silence), gets the offer's message
//!   ([`Action::PlayMessage`], then the BYE) or the agent's own greeting
//!   (the BYE once the agent has been quiet for [`AGENT_MESSAGE_TAIL`]).
//!   `continue` only reports. `unknown` is treated as a person.
//!
//! - transfers (issues 16 and 18, the `transfer` tool; [`super::transfer`]):
//!   a REFER first ([`Action::Refer`]); where the dialog does not take it,
//!   a second leg dialled ([`Action::DialTransferee`]) and, once it
//!   answered and its media runs, the engine detached
//!   ([`Action::DetachEngine`]) and the two legs' audio relayed
//!   ([`Action::SendToTransferee`] one way, [`Action::SendToMedia`] the
//!   other, so the callee's recording keeps both). A failure (busy, no
//!   answer, refused) answers the engine with a stable error code and the
//!   conversation goes on. Once transferred, either leg's end hangs up the
//!   other and the call ends `transferred`.
//!
//! `max_seconds` is enforced by the SIP dialog itself (it sends the BYE and
//! ends `completed` / `max_duration_reached`); the bridge maps that end.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use voxline_shared::sidecar_link::{
    transfer_errors, AmdMode, AnsweredBy, EventKind, Offer, Timings, TransferMode, TransferTarget,
};
use voxline_shared::{CallStatus, EndedReason};

use super::tools::{self, ToolRequest};
use super::transfer::{self, Leg, Relay};
use super::{HangupCause, SHUTDOWN_REASON};
use crate::engine::{dtmf_text, EngineError, EngineEvent};
use crate::media::amd::{AmdConfig, AmdDetector, AmdEvent};
use crate::sip::sdp::{Direction, Negotiated};
use crate::sip::{DialogEnd, DialogEvent};
use voxline_shared::sidecar_link::Role;

/// The silence timeout when the offer names none (the edge always does).
pub const DEFAULT_SILENCE_TIMEOUT: Duration = Duration::from_secs(30);

/// After the engine ends the call, how long past the end of its last words
/// the BYE waits (so the callee hears them out).
pub const HANGUP_DELAY: Duration = Duration::from_millis(300);

/// Keys the callee presses within this of each other are one group (one
/// engine input, one transcript turn `[DTMF 123]`).
pub const KEYPAD_GAP: Duration = Duration::from_millis(1_000);

/// The most keys in one group (more start the next group).
pub const MAX_KEYPAD_GROUP: usize = 32;

/// A `send_dtmf` whose keys were not reported played by then is answered
/// with an error (never a hang): 32 keys of 120 ms with their gaps take 6.4 s.
pub const DTMF_TOOL_TIMEOUT: Duration = Duration::from_secs(15);

/// `leave_message` spoken by the agent: the BYE once its audio has played
/// out and it has said nothing more for this long.
pub const AGENT_MESSAGE_TAIL: Duration = Duration::from_secs(2);

/// RMS of a 20 ms frame above which the callee counts as speaking (about
/// -38 dBFS: above line noise and comfort noise, below quiet speech).
const SPEECH_RMS: f64 = 400.0;

/// What a bridge is configured with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeConfig {
    /// Hang up when nobody has spoken for this long (from the answer).
    pub silence_timeout: Duration,
    /// See [`HANGUP_DELAY`].
    pub hangup_delay: Duration,
    /// Answering-machine detection (the offer's `amd`).
    pub amd: AmdMode,
    /// `leave_message`: the words to leave (`None`: the agent speaks).
    pub amd_message: Option<String>,
    pub amd_detector: AmdConfig,
    /// The people the `transfer` tool may name by extension (the offer's).
    pub transfer_people: Vec<voxline_shared::sidecar_link::TransferPerson>,
}

impl BridgeConfig {
    /// The offer's silence timeout, the default delay.
    pub fn for_offer(offer: &Offer) -> Self {
        BridgeConfig {
            silence_timeout: offer
                .silence_timeout_seconds
                .map_or(DEFAULT_SILENCE_TIMEOUT, |s| {
                    Duration::from_secs(u64::from(s))
                }),
            hangup_delay: HANGUP_DELAY,
            amd: offer.amd,
            amd_message: offer.amd_message.clone().filter(|m| !m.trim().is_empty()),
            amd_detector: AmdConfig::default(),
            transfer_people: offer.transfer_people.clone(),
        }
    }
}

/// How a call ended, for the `ended` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallEnd {
    pub status: CallStatus,
    pub reason: EndedReason,
    /// The final SIP response code that decided it, if any.
    pub sip_code: Option<u16>,
    pub timings: Timings,
    /// Dial again no earlier than this (the SIP `Retry-After`).
    pub retry_after_s: Option<u32>,
}

impl CallEnd {
    /// The `ended` call event (stamped `timings.ended_ms`).
    pub fn event(&self) -> EventKind {
        EventKind::Ended {
            status: self.status,
            reason: self.reason,
            retry_after_s: self.retry_after_s,
            sip_code: self.sip_code,
            timings: self.timings,
        }
    }
}

/// What the driver must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Report this call event to the edge, stamped `at_ms` (unix ms).
    Emit { kind: EventKind, at_ms: u64 },
    /// Start the media with what the answer settled; then tell the bridge
    /// [`Bridge::media_started`] or [`Bridge::media_failed`].
    StartMedia(Negotiated),
    /// The callee moved its RTP (re-INVITE / UPDATE).
    SetMediaRemote(SocketAddr),
    /// Whether RTP may go out: `false` while the negotiated direction makes
    /// us recvonly or inactive (the callee holds the call).
    SetMediaSending(bool),
    /// Tell the engine the call is on hold (`true`) or resumed (`false`).
    EngineHold(bool),
    /// Play this engine audio (8 kHz PCM) to the callee.
    SendToMedia(Vec<i16>),
    /// Barge-in: drop the engine audio queued and not yet played.
    FlushMedia,
    /// `leave_message`: synthesise this text and hand the audio to
    /// [`Bridge::message_audio`] (`None` when it cannot: the agent speaks).
    PlayMessage(String),
    /// Connect the offer's engine (it may take a while: keep driving the
    /// call meanwhile); then tell the bridge [`Bridge::engine_started`] or
    /// [`Bridge::engine_failed`].
    StartEngine,
    /// The callee answered and media runs: the engine starts the
    /// conversation ([`crate::engine::Engine::answered`]).
    EngineAnswered,
    /// Feed a frame heard from the callee to the engine (a failure goes to
    /// [`Bridge::engine_failed`]).
    SendToEngine(Vec<i16>),
    /// Tell the engine how much of its audio (ms) the callee has heard.
    EnginePlayed(u64),
    /// Give the engine the keys the callee pressed (one group; a failure
    /// goes to [`Bridge::engine_failed`]).
    EngineKeypad(String),
    /// Press these keys (checked: [`tools::KEYS`], at most
    /// [`tools::MAX_TOOL_DIGITS`]) `via` RTP events or SIP INFO; then tell
    /// the bridge [`Bridge::dtmf_sent`] once they have played (or failed).
    SendDtmf { digits: String, via: DtmfVia },
    /// Answer the engine's tool call `call_id` with `output` (JSON): a
    /// built-in tool's result or a customer tool's answer
    /// (`Engine::function_result`).
    FunctionResult { call_id: String, output: String },
    /// Ask the edge for a customer tool's answer without holding up the
    /// call; then tell the bridge [`Bridge::tool_answered`] (issue 18).
    AskTool(super::customer_tools::ToolAsk),
    /// Hang up the SIP call: BYE if answered, CANCEL if not. The dialog's
    /// `Ended` follows.
    Hangup(EndedReason),
    /// Blind transfer by REFER to `destination` (E.164): the dialog's
    /// [`DialogEvent::Refer`] events follow (to [`Bridge::handle_dialog_event`]).
    Refer { destination: String },
    /// Dial `target` as the transfer's second leg; its dialog events go
    /// to [`Bridge::transferee_event`], a leg that cannot be placed to
    /// [`Bridge::transferee_failed`].
    DialTransferee { target: transfer::LegTarget },
    /// The second leg answered: start its media (not recorded: the callee's
    /// leg records both sides); then [`Bridge::transferee_media_started`] or
    /// [`Bridge::transferee_media_failed`].
    StartTransfereeMedia(Negotiated),
    /// The transferee moved its RTP (re-INVITE / UPDATE).
    SetTransfereeRemote(SocketAddr),
    /// Relay this 20 ms frame, heard from the callee, to the transferee.
    SendToTransferee(Vec<i16>),
    /// Hang up the second leg (BYE, or CANCEL while it rings).
    HangupTransferee(EndedReason),
    /// Warm transfer: play this to the callee while they wait (hold audio,
    /// one chunk; [`Action::FlushMedia`] cuts it when they are connected or
    /// back with the agent).
    PlayHold(Vec<i16>),
    /// Warm transfer: synthesise the briefing in the call's voice and hand
    /// the audio to [`Bridge::briefing_audio`] (`None` when it cannot).
    SynthesizeBriefing(String),
    /// Warm transfer: play this (the briefing) to the transferee, one chunk.
    PlayToTransferee(Vec<i16>),
    /// Close the engine: the callee has been handed over.
    DetachEngine,
    /// Blind transfer to a queue (issue 16): hand the callee's answered
    /// leg and its media, as they are, to a queue call running `plan`
    /// (the engine is detached, `transferred` sent); the bridge is done,
    /// its call not ended. Always the last action.
    HandToQueue {
        plan: Box<voxline_shared::sidecar_link::QueuePlan>,
        /// The events reported so far (`answered` included).
        timings: Timings,
    },
    /// The call is over: close the engine and stop the media, then emit
    /// `end`'s `ended` event. `None`: the sidecar is stopping at once, no
    /// `ended` (the edge settles the call). Always the last action.
    Finish(Option<CallEnd>),
}

/// How keys are pressed on the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtmfVia {
    /// RFC 4733 telephone-events in the RTP stream (negotiated `telephone-event`).
    Rtp,
    /// SIP INFO `application/dtmf-relay`, one request per key (the fallback).
    SipInfo,
}

impl DtmfVia {
    /// The `method` of `send_dtmf`'s result.
    pub fn name(self) -> &'static str {
        match self {
            DtmfVia::Rtp => "rfc4733",
            DtmfVia::SipInfo => "sip_info",
        }
    }
}

/// Keys the callee is pressing, not yet handed on.
#[derive(Debug, Clone)]
struct KeypadGroup {
    digits: String,
    first: Instant,
    last: Instant,
}

/// A `send_dtmf` whose keys are being played.
#[derive(Debug, Clone)]
struct PendingDtmf {
    call_id: String,
    arguments: String,
    digits: String,
    via: DtmfVia,
    asked: Instant,
}

/// Where a transfer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TransferStage {
    /// The REFER is out; its NOTIFYs tell.
    Referring,
    /// The second leg is being dialled.
    Dialing,
    /// It answered; its media is starting.
    MediaStarting,
    /// Warm: the briefing is being synthesised ([`Action::SynthesizeBriefing`]).
    Briefing,
    /// Warm: the briefing plays to the person until this time.
    BriefingPlays(Instant),
    /// The legs are bridged.
    Bridged,
    /// The trunk took the call over (REFER): our side hangs up.
    Referred,
}

/// Who asked for a transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TransferOrigin {
    /// The engine's `transfer` tool: answered as its tool call.
    Tool {
        tool_call_id: String,
        arguments: String,
    },
    /// The edge's transfer command (`POST /v1/calls/{id}/transfer`):
    /// answered with a `transferred` or `transfer_failed` event.
    Api { transfer_id: String },
}

/// A transfer the edge's command asks for ([`Bridge::transfer_command`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferOrder {
    pub transfer_id: String,
    pub target: TransferTarget,
    pub mode: TransferMode,
    /// Warm: the briefing's words (else [`Bridge`] composes one).
    pub message: Option<String>,
}

/// A transfer being carried out.
#[derive(Debug, Clone)]
struct Transfer {
    origin: TransferOrigin,
    target: TransferTarget,
    mode: TransferMode,
    message: Option<String>,
    asked: Instant,
    stage: TransferStage,
}

impl Transfer {
    /// The `destination` the events and results name: the number, or the
    /// person's extension.
    fn destination(&self) -> String {
        self.target.label().to_string()
    }
}

/// API transfer ids a call remembers (a repeated command runs once).
const SEEN_TRANSFER_IDS: usize = 8;

/// Callee turns a warm transfer's own briefing may quote.
const BRIEFING_TURNS: usize = 3;

/// Between the end of the briefing and the bridge, so its last word is heard.
pub const BRIEFING_TAIL: Duration = Duration::from_millis(300);

/// Engine events held while the engine runs before the answer (a greeting
/// is a few; anything past this is dropped).
const EARLY_EVENTS: usize = 256;

/// Where the call's engine is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EngineState {
    /// Not asked for yet (before the first provisional response).
    Off,
    /// [`Action::StartEngine`] is out.
    Starting,
    /// Connected: it takes the callee's audio.
    Live,
    /// Failed, or the call is over.
    Gone,
}

/// Where answering-machine detection is in a call.
#[derive(Debug)]
struct Amd {
    det: AmdDetector,
    /// The answer: the detector's time zero.
    answered_at: Instant,
    /// The verdict, once given.
    answered_by: Option<AnsweredBy>,
    /// The conversation waits (`hangup`, `leave_message` until released).
    holds: bool,
}

/// One SIP call's bridge between the dialog, the media and the engine.
#[derive(Debug)]
pub struct Bridge {
    call_id: String,
    cfg: BridgeConfig,
    /// When the call was dispatched: event times are `timings.dispatched_ms`
    /// plus the monotonic time since, so they never run backwards.
    started: Instant,
    timings: Timings,
    actions: VecDeque<Action>,
    engine: EngineState,
    playout: PlayoutClock,
    /// Armed at the answer.
    silence: Option<SilenceWatch>,
    /// The engine ended the call: hang up at this time.
    hangup_at: Option<Instant>,
    /// We hung up, for this reason (the `ended` reason then).
    hangup_sent: Option<EndedReason>,
    /// The dialog's `Retry-After`, passed on in the `ended` event.
    retry_after_s: Option<u32>,
    /// Cut short by the sidecar's shutdown: the call ends `failed`.
    shutdown: bool,
    /// The sidecar is stopping at once: no `ended` event.
    stopping: bool,
    /// The callee holds the call (we may not send): no RTP out, no audio to
    /// the engine.
    on_hold: bool,
    /// Answering-machine detection, from the answer (when the offer asks).
    amd: Option<Amd>,
    /// `leave_message` by the agent: hang up after its words (see
    /// [`AGENT_MESSAGE_TAIL`]); armed once it has said something.
    agent_message: bool,
    agent_spoke: bool,
    /// The answer's media runs.
    media_up: bool,
    /// [`Action::EngineAnswered`] is out: the conversation runs.
    conversing: bool,
    /// What the engine said before the conversation ran.
    early_events: VecDeque<EngineEvent>,
    /// The callee negotiated `telephone-event` (keys go as RFC 4733 events).
    telephone_event: bool,
    /// Keys the callee is pressing ([`KEYPAD_GAP`]).
    keypad: Option<KeypadGroup>,
    /// Our `send_dtmf` being played (one at a time).
    dtmf_out: Option<PendingDtmf>,
    finished: bool,
    /// Customer tool calls waiting for the edge (issue 18).
    tools: super::customer_tools::ToolCalls,
    /// A `transfer` under way or done (issue 16).
    transfer: Option<Transfer>,
    /// The API transfers this call has run (their commands may repeat).
    seen_transfer_ids: VecDeque<String>,
    /// Warm: the callee waits on hold: the engine neither hears them nor
    /// is heard.
    callee_held: bool,
    /// The engine's last summary and the callee's last words (a warm
    /// transfer's own briefing).
    last_summary: Option<String>,
    recent_callee_turns: VecDeque<String>,
    /// The second leg exists (dialled, not ended) and whether we hung it up.
    transferee_live: bool,
    transferee_hung_up: bool,
    /// The bridged legs' audio.
    relay: Relay,
}

/// Whether we may send RTP given the callee's SDP direction (RFC 3264 6.1:
/// they receive when sendrecv or recvonly).
fn we_may_send(neg: &Negotiated) -> bool {
    matches!(neg.direction, Direction::SendRecv | Direction::RecvOnly)
}

impl Bridge {
    /// A call dispatched `now` (`now_ms` on the wall clock): `dialing`.
    pub fn new(call_id: &str, cfg: BridgeConfig, now: Instant, now_ms: u64) -> Bridge {
        let mut b = Bridge {
            call_id: call_id.to_string(),
            cfg,
            started: now,
            timings: Timings {
                dispatched_ms: now_ms,
                ringing_ms: None,
                answered_ms: None,
                ended_ms: 0,
            },
            actions: VecDeque::new(),
            engine: EngineState::Off,
            playout: PlayoutClock::new(now),
            silence: None,
            hangup_at: None,
            hangup_sent: None,
            retry_after_s: None,
            shutdown: false,
            stopping: false,
            on_hold: false,
            amd: None,
            agent_message: false,
            agent_spoke: false,
            media_up: false,
            conversing: false,
            early_events: VecDeque::new(),
            telephone_event: false,
            keypad: None,
            dtmf_out: None,
            finished: false,
            tools: Default::default(),
            transfer: None,
            seen_transfer_ids: VecDeque::new(),
            callee_held: false,
            last_summary: None,
            recent_callee_turns: VecDeque::new(),
            transferee_live: false,
            transferee_hung_up: false,
            relay: Relay::default(),
        };
        b.emit(now, EventKind::Dialing);
        b
    }

    /// A call already answered and with its media running (a queue caller
    /// the agent takes over, issue 16): `timings` so far (nothing is
    /// emitted again), `neg` what the answer settled. The engine starts
    /// and the conversation runs as after [`Bridge::media_started`].
    pub fn taking_over(
        call_id: &str,
        cfg: BridgeConfig,
        now: Instant,
        now_ms: u64,
        timings: Timings,
        neg: &Negotiated,
    ) -> Bridge {
        let mut b = Bridge::new(call_id, cfg, now, timings.dispatched_ms);
        // Not `dialing` again: the call was reported answered already.
        b.actions.clear();
        // Event times keep counting from the dispatch.
        let since = Duration::from_millis(now_ms.saturating_sub(timings.dispatched_ms));
        b.started = now.checked_sub(since).unwrap_or(now);
        b.timings = timings;
        b.silence = Some(SilenceWatch::new(now, b.cfg.silence_timeout));
        b.telephone_event = neg.dtmf_pt.is_some();
        b.on_hold = !we_may_send(neg);
        b.media_up = true;
        b.start_engine();
        b
    }

    /// The next thing to do, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Bridge::handle_timeout`] is due next, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.finished || self.hangup_sent.is_some() {
            return None;
        }
        // On hold nobody is expected to speak: no silence deadline.
        let silence = self.silence.filter(|_| !self.on_hold).map(|w| w.deadline());
        // The hangup waits for keys being pressed (their own deadline).
        let hangup = self.hangup_at.filter(|_| self.dtmf_out.is_none());
        let amd = self
            .amd
            .as_ref()
            .and_then(|a| Some(a.answered_at + a.det.poll_timeout()?));
        let agent_message = (self.agent_message && self.agent_spoke)
            .then(|| self.playout.done_at() + AGENT_MESSAGE_TAIL);
        let refer = self
            .transfer
            .as_ref()
            .filter(|t| t.stage == TransferStage::Referring)
            .map(|t| t.asked + transfer::REFER_TIMEOUT);
        let briefing = self.transfer.as_ref().and_then(|t| match t.stage {
            TransferStage::BriefingPlays(until) => Some(until),
            _ => None,
        });
        [
            refer,
            briefing,
            hangup,
            silence,
            self.keypad.as_ref().map(|k| k.last + KEYPAD_GAP),
            self.dtmf_out.as_ref().map(|d| d.asked + DTMF_TOOL_TIMEOUT),
            amd,
            agent_message,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Whether [`Action::Finish`] has been given.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.finished || self.hangup_sent.is_some() {
            return;
        }
        if self.transfer.as_ref().is_some_and(|t| {
            t.stage == TransferStage::Referring && now >= t.asked + transfer::REFER_TIMEOUT
        }) {
            tracing::info!(call_id = %self.call_id, "the REFER's NOTIFYs reported no answer in time");
            self.transfer_failed(now, Some(408), "the destination did not answer in time");
        }
        if self
            .transfer
            .as_ref()
            .is_some_and(|t| matches!(t.stage, TransferStage::BriefingPlays(until) if now >= until))
        {
            self.connect_warm(now);
        }
        if let Some(a) = self.amd.as_mut() {
            let ev = a
                .det
                .handle_timeout(now.saturating_duration_since(a.answered_at));
            self.amd_event(now, ev);
            if self.hangup_sent.is_some() || self.finished {
                return;
            }
        }
        if self
            .keypad
            .as_ref()
            .is_some_and(|k| now >= k.last + KEYPAD_GAP)
        {
            self.flush_keypad(now);
        }
        if self
            .dtmf_out
            .as_ref()
            .is_some_and(|d| now >= d.asked + DTMF_TOOL_TIMEOUT)
        {
            tracing::warn!(call_id = %self.call_id, "keys not reported played in time");
            self.dtmf_sent(now, Err("the keys were not played in time".into()));
        }
        if self.hangup_at.is_some_and(|at| now >= at) && self.dtmf_out.is_none() {
            self.hang_up(EndedReason::AgentHangup);
        } else if self.agent_message
            && self.agent_spoke
            && now >= self.playout.done_at() + AGENT_MESSAGE_TAIL
        {
            tracing::info!(call_id = %self.call_id, "the agent left its message; hanging up");
            self.hang_up(EndedReason::AgentHangup);
        } else if !self.on_hold && self.silence.is_some_and(|w| now >= w.deadline()) {
            tracing::info!(call_id = %self.call_id, timeout_seconds = self.cfg.silence_timeout.as_secs(), "nobody spoke; hanging up");
            self.hang_up(EndedReason::SilenceTimeout);
        }
    }

    /// The call could not be placed at all (no RTP port: `media_lost`; the
    /// SIP driver refused it: `trunk_error`).
    pub fn not_placed(&mut self, now: Instant, reason: EndedReason) {
        if self.finished {
            return;
        }
        self.finish(now, CallStatus::Failed, reason, None);
    }

    /// An event of the SIP dialog.
    pub fn handle_dialog_event(&mut self, now: Instant, ev: DialogEvent) {
        if self.finished {
            return;
        }
        match ev {
            DialogEvent::Ringing { .. } => {
                if self.timings.ringing_ms.is_none() {
                    self.timings.ringing_ms = Some(self.emit(now, EventKind::Ringing));
                }
                self.start_engine();
            }
            DialogEvent::EarlyMedia(_) => self.start_engine(),
            DialogEvent::Answered(neg) => {
                self.timings.answered_ms = Some(self.emit(now, EventKind::Answered));
                self.silence = Some(SilenceWatch::new(now, self.cfg.silence_timeout));
                if self.cfg.amd != AmdMode::Off && self.amd.is_none() {
                    self.amd = Some(Amd {
                        det: AmdDetector::new(self.cfg.amd_detector),
                        answered_at: now,
                        answered_by: None,
                        holds: matches!(self.cfg.amd, AmdMode::Hangup | AmdMode::LeaveMessage),
                    });
                }
                tracing::info!(call_id = %self.call_id, codec = neg.codec.encoding_name(), pt = neg.pt, remote = %neg.remote_rtp, srtp = neg.srtp.as_ref().map_or("off", |s| s.keys.suite.name()), "answered; media negotiated");
                let held = !we_may_send(&neg);
                self.telephone_event = neg.dtmf_pt.is_some();
                self.actions.push_back(Action::StartMedia(neg));
                self.set_hold(now, held);
            }
            DialogEvent::MediaUpdated(neg) => {
                self.telephone_event = neg.dtmf_pt.is_some();
                self.actions
                    .push_back(Action::SetMediaRemote(neg.remote_rtp));
                self.set_hold(now, !we_may_send(&neg));
            }
            DialogEvent::Ended(outcome) => self.dialog_ended(now, outcome),
            DialogEvent::Refer(ev) => self.refer_event(now, ev),
            DialogEvent::KeyPressed(digit) => self.keypad(now, digit),
            DialogEvent::KeysSent(result) => {
                if self
                    .dtmf_out
                    .as_ref()
                    .is_some_and(|d| d.via == DtmfVia::SipInfo)
                {
                    self.dtmf_sent(now, result);
                }
            }
        }
    }

    /// A key the callee pressed (RFC 4733 event or SIP INFO). Ignored until
    /// the conversation runs (nobody listens yet).
    pub fn keypad(&mut self, now: Instant, digit: char) {
        if self.finished || !self.conversing {
            return;
        }
        let Some(digit) =
            crate::media::dtmf::event_code(digit).and_then(crate::media::dtmf::event_digit)
        else {
            return;
        };
        tracing::info!(call_id = %self.call_id, %digit, "the callee pressed a key");
        if let Some(w) = self.silence.as_mut() {
            w.activity(now);
        }
        let group = self.keypad.get_or_insert_with(|| KeypadGroup {
            digits: String::new(),
            first: now,
            last: now,
        });
        group.digits.push(digit);
        group.last = now;
        if group.digits.len() >= MAX_KEYPAD_GROUP {
            self.flush_keypad(now);
        }
    }

    /// The keys pressed so far go to the transcript and the engine.
    fn flush_keypad(&mut self, now: Instant) {
        let Some(group) = self.keypad.take() else {
            return;
        };
        let (start_ms, end_ms) = (self.offset_ms(group.first), self.offset_ms(group.last));
        self.emit(
            now,
            EventKind::TranscriptTurn {
                role: Role::Callee,
                text: dtmf_text(&group.digits),
                start_ms,
                end_ms,
            },
        );
        if self.engine == EngineState::Live {
            self.actions.push_back(Action::EngineKeypad(group.digits));
        }
    }

    /// The media reports the RFC 4733 keys it was given all sent.
    pub fn media_dtmf_sent(&mut self, now: Instant) {
        if self
            .dtmf_out
            .as_ref()
            .is_some_and(|d| d.via == DtmfVia::Rtp)
        {
            self.dtmf_sent(now, Ok(()));
        }
    }

    /// Our keys ([`Action::SendDtmf`]) have been played (`Ok`) or could
    /// not be: the engine gets `send_dtmf`'s result.
    pub fn dtmf_sent(&mut self, now: Instant, result: Result<(), String>) {
        let Some(d) = self.dtmf_out.take() else {
            return;
        };
        let output = match result {
            Ok(()) => tools::dtmf_output(&d.digits, d.via.name()),
            Err(why) => tools::error_output("dtmf_failed", &why),
        };
        self.builtin_tool_answered(
            now,
            d.asked,
            tools::SEND_DTMF,
            &d.arguments,
            d.call_id,
            output,
        );
        if self.finished || self.hangup_sent.is_some() {
            return;
        }
        // An `end_call` waited for the keys.
        if self.hangup_at.is_some_and(|at| now >= at) {
            self.hang_up(EndedReason::AgentHangup);
        }
    }

    /// The engine called tool `name`.
    fn function_call(&mut self, now: Instant, name: String, call_id: String, arguments: String) {
        tracing::info!(call_id = %self.call_id, tool = %name, "engine tool call");
        match tools::request(&name, &arguments) {
            ToolRequest::SendDtmf { digits } => {
                if self.dtmf_out.is_some() {
                    let output = tools::error_output("busy", "keys are being pressed already");
                    return self
                        .builtin_tool_answered(now, now, &name, &arguments, call_id, output);
                }
                let via = if self.telephone_event {
                    DtmfVia::Rtp
                } else {
                    DtmfVia::SipInfo
                };
                self.dtmf_out = Some(PendingDtmf {
                    call_id,
                    arguments,
                    digits: digits.clone(),
                    via,
                    asked: now,
                });
                self.actions.push_back(Action::SendDtmf { digits, via });
            }
            ToolRequest::Transfer { to, mode } => {
                let target = match to {
                    tools::TransferTo::Number(destination) => {
                        TransferTarget::Number { destination }
                    }
                    tools::TransferTo::Extension(ext) => {
                        match self.cfg.transfer_people.iter().find(|p| p.extension == ext) {
                            Some(p) => TransferTarget::User {
                                user_pk: p.user_pk,
                                extension: p.extension.clone(),
                                display_name: p.display_name.clone(),
                            },
                            None => {
                                let output = tools::error_output(
                                    "invalid_arguments",
                                    &format!("{ext} is not an extension you may transfer to"),
                                );
                                return self.builtin_tool_answered(
                                    now, now, &name, &arguments, call_id, output,
                                );
                            }
                        }
                    }
                };
                self.start_transfer(
                    now,
                    TransferOrigin::Tool {
                        tool_call_id: call_id,
                        arguments,
                    },
                    target,
                    mode,
                    None,
                )
            }
            ToolRequest::EndCall => {
                let output = tools::end_call_output();
                self.builtin_tool_answered(now, now, &name, &arguments, call_id, output);
                self.end_after_playout(now);
            }
            ToolRequest::Refused { output } => {
                self.builtin_tool_answered(now, now, &name, &arguments, call_id, output);
            }
        }
    }

    /// A built-in tool call's result: to the engine, and one agent turn in the transcript.
    fn builtin_tool_answered(
        &mut self,
        now: Instant,
        asked: Instant,
        name: &str,
        arguments: &str,
        call_id: String,
        output: String,
    ) {
        let text = tools::tool_turn_text(name, arguments, &output);
        let (start_ms, end_ms) = (self.offset_ms(asked), self.offset_ms(now));
        self.emit(
            now,
            EventKind::TranscriptTurn {
                role: Role::Agent,
                text,
                start_ms,
                end_ms,
            },
        );
        if self.engine == EngineState::Live {
            self.actions
                .push_back(Action::FunctionResult { call_id, output });
        }
    }

    /// Hang up once the engine's last words have played (and keys being
    /// pressed are done), plus the hangup delay.
    fn end_after_playout(&mut self, now: Instant) {
        let at = self.playout.done_at().max(now) + self.cfg.hangup_delay;
        self.hangup_at = Some(self.hangup_at.map_or(at, |t| t.min(at)));
    }

    /// ms since the answer (transcript offsets), 0 before it.
    fn offset_ms(&self, at: Instant) -> u64 {
        self.timings
            .answered_ms
            .map_or(0, |answered| self.at_ms(at).saturating_sub(answered))
    }

    /// Hold (the callee's SDP does not let us send) or resume: tells the
    /// media and the engine once per change. The silence timeout waits while
    /// the call is held and starts afresh when it resumes (hold music, or
    /// none, is not the callee's silence).
    fn set_hold(&mut self, now: Instant, held: bool) {
        if held == self.on_hold {
            return;
        }
        self.on_hold = held;
        if !held {
            if let Some(w) = self.silence.as_mut() {
                w.activity(now);
            }
        }
        tracing::info!(call_id = %self.call_id, on_hold = held, "the callee changed the hold state");
        if held
            && self
                .dtmf_out
                .as_ref()
                .is_some_and(|d| d.via == DtmfVia::Rtp)
        {
            // The media drops keys queued while held.
            self.dtmf_sent(now, Err("the callee put the call on hold".into()));
        }
        self.actions.push_back(Action::SetMediaSending(!held));
        self.actions.push_back(Action::EngineHold(held));
    }

    /// The SIP driver went away without ending the call.
    pub fn dialog_lost(&mut self, now: Instant) {
        if self.finished {
            return;
        }
        self.finish(now, CallStatus::Failed, EndedReason::TrunkError, None);
    }

    fn dialog_ended(&mut self, now: Instant, end: DialogEnd) {
        // `detail` says why (e.g. `auth_realm_mismatch`, `bye_timeout`).
        tracing::info!(call_id = %self.call_id, detail = %end.detail, code = ?end.sip_code, "SIP call ended");
        // A hangup we asked for keeps our reason; otherwise the dialog's
        // (a callee who hangs up on the party they were handed to: `transferred`).
        let reason = match (self.hangup_sent, end.reason) {
            (Some(r), _) => r,
            (None, EndedReason::CalleeHangup) if self.is_bridged() => EndedReason::Transferred,
            (None, r) => r,
        };
        self.hang_up_transferee(reason);
        let status = match (self.hangup_sent, end.status) {
            // Our failure, answered or not (an engine that fails while the
            // phone rings cancels the call: `failed`, not `cancelled`).
            (Some(EndedReason::EngineError | EndedReason::MediaLost), _) => CallStatus::Failed,
            // Cut short by the sidecar's shutdown, even before the answer.
            _ if self.shutdown => CallStatus::Failed,
            (_, s) => s,
        };
        self.retry_after_s = end.retry_after_s;
        self.finish(now, status, reason, end.sip_code);
    }

    /// The legs are bridged (the engine is detached).
    fn is_bridged(&self) -> bool {
        self.transfer
            .as_ref()
            .is_some_and(|t| t.stage == TransferStage::Bridged)
    }

    /// The callee has been handed over (bridged, or referred to the trunk).
    fn is_transferred(&self) -> bool {
        self.transfer
            .as_ref()
            .is_some_and(|t| matches!(t.stage, TransferStage::Bridged | TransferStage::Referred))
    }

    /// The edge's transfer command (`POST /v1/calls/{id}/transfer`):
    /// started as the agent's `transfer` tool starts one; its outcome is a
    /// `transferred` or `transfer_failed` event. A `transfer_id` seen
    /// before is ignored (the edge may repeat a command).
    pub fn transfer_command(&mut self, now: Instant, order: TransferOrder) {
        if self.finished || self.seen_transfer_ids.contains(&order.transfer_id) {
            return;
        }
        if self.seen_transfer_ids.len() >= SEEN_TRANSFER_IDS {
            self.seen_transfer_ids.pop_front();
        }
        self.seen_transfer_ids.push_back(order.transfer_id.clone());
        tracing::info!(call_id = %self.call_id, transfer_id = %order.transfer_id, destination = order.target.label(), mode = order.mode.as_str(), "transfer command");
        self.start_transfer(
            now,
            TransferOrigin::Api {
                transfer_id: order.transfer_id,
            },
            order.target,
            order.mode,
            order.message,
        );
    }

    /// A transfer asked by the engine or the edge: a REFER first for a
    /// blind transfer to a number (the dialog says whether the trunk takes
    /// it), else a second leg at once; warm: the callee is held first.
    fn start_transfer(
        &mut self,
        now: Instant,
        origin: TransferOrigin,
        target: TransferTarget,
        mode: TransferMode,
        message: Option<String>,
    ) {
        let refused = if self.transfer.is_some() {
            Some((
                transfer_errors::TRANSFER_IN_PROGRESS,
                "a transfer is under way already",
            ))
        } else if !self.media_up
            || self.hangup_sent.is_some()
            || self.hangup_at.is_some()
            || self.engine == EngineState::Gone
        {
            Some((
                transfer_errors::TRANSFER_FAILED,
                "the call is not up or is ending",
            ))
        } else {
            None
        };
        let t = Transfer {
            origin,
            target,
            mode,
            message,
            asked: now,
            stage: TransferStage::Referring,
        };
        if let Some((code, why)) = refused {
            return self.transfer_refused(now, t, code, None, why);
        }
        tracing::info!(call_id = %self.call_id, destination = t.target.label(), mode = mode.as_str(), "transfer asked");
        if t.target == TransferTarget::Unknown {
            return self.transfer_refused(
                now,
                t,
                transfer_errors::TRANSFER_FAILED,
                None,
                "a transfer target this sidecar does not know (a newer edge)",
            );
        }
        if let TransferTarget::Queue { plan } = &t.target {
            // Nobody to brief in a queue: blind only.
            if mode == TransferMode::Warm {
                return self.transfer_refused(
                    now,
                    t,
                    transfer_errors::TRANSFER_FAILED,
                    None,
                    "a queue takes blind transfers only",
                );
            }
            let plan = plan.clone();
            self.transfer = Some(Transfer {
                stage: TransferStage::Bridged,
                ..t
            });
            return self.hand_to_queue(now, plan);
        }
        if let Some(w) = self.silence.as_mut() {
            // Waiting for the destination is not silence on the line.
            w.activity(now + transfer::TRANSFER_RING_TIMEOUT);
        }
        let refer_to = match (&t.target, mode) {
            (TransferTarget::Number { destination }, TransferMode::Blind) => {
                Some(destination.clone())
            }
            _ => None,
        };
        self.transfer = Some(t);
        match refer_to {
            Some(destination) => self.actions.push_back(Action::Refer { destination }),
            None => {
                if mode == TransferMode::Warm {
                    self.hold_callee(now, true);
                }
                self.dial_transferee(now);
            }
        }
    }

    /// Warm: the callee waits (hold audio, the engine neither hears nor
    /// is heard) or is back with the agent.
    fn hold_callee(&mut self, now: Instant, held: bool) {
        if held == self.callee_held {
            return;
        }
        self.callee_held = held;
        self.playout.interrupt(now);
        self.actions.push_back(Action::FlushMedia);
        if held {
            self.actions
                .push_back(Action::PlayHold(transfer::hold_audio(
                    transfer::TRANSFER_RING_TIMEOUT + transfer::HOLD_AUDIO_MARGIN,
                )));
        } else if let Some(w) = self.silence.as_mut() {
            w.activity(now);
        }
    }

    /// How the REFER goes (RFC 3515): not taken (a second leg instead),
    /// refused, or the NOTIFYs' progress.
    fn refer_event(&mut self, now: Instant, ev: crate::sip::ReferEvent) {
        use crate::sip::ReferEvent;
        let Some(t) = self
            .transfer
            .as_mut()
            .filter(|t| t.stage == TransferStage::Referring)
        else {
            return;
        };
        match ev {
            ReferEvent::NotSupported(why) => {
                tracing::info!(call_id = %self.call_id, why, "no REFER: the sidecar bridges a second leg");
                self.dial_transferee(now);
            }
            ReferEvent::Refused(code) if transfer::refer_falls_back(code) => {
                tracing::info!(call_id = %self.call_id, code, "the trunk does not take REFER: the sidecar bridges a second leg");
                self.dial_transferee(now);
            }
            ReferEvent::Refused(code) => {
                self.transfer_failed(now, Some(code), "the trunk refused the transfer");
            }
            ReferEvent::Accepted => {
                tracing::info!(call_id = %self.call_id, "REFER accepted");
            }
            ReferEvent::Progress { code, .. } if (200..300).contains(&code) => {
                t.stage = TransferStage::Referred;
                tracing::info!(call_id = %self.call_id, "the trunk connected the transfer; hanging up our side");
                self.transfer_succeeded(now, "refer");
                self.hang_up(EndedReason::Transferred);
            }
            ReferEvent::Progress { code, terminated } if code >= 300 || terminated => {
                let code = (code >= 300).then_some(code);
                self.transfer_failed(now, code, "the destination did not take the call");
            }
            ReferEvent::Progress { .. } => {}
        }
    }

    /// The callee goes to a queue: `transferred` (method `queue`), the
    /// engine detached, and the answered leg handed over
    /// ([`Action::HandToQueue`]); nothing more from this bridge.
    fn hand_to_queue(&mut self, now: Instant, plan: Box<voxline_shared::sidecar_link::QueuePlan>) {
        self.transfer_succeeded(now, "queue");
        self.finished = true;
        self.flush_keypad(now);
        self.actions.push_back(Action::HandToQueue {
            plan,
            timings: self.timings,
        });
    }

    fn dial_transferee(&mut self, _now: Instant) {
        let Some(t) = self.transfer.as_mut() else {
            return;
        };
        let target = match &t.target {
            TransferTarget::Number { destination } => {
                transfer::LegTarget::Number(destination.clone())
            }
            TransferTarget::User {
                user_pk, extension, ..
            } => transfer::LegTarget::User {
                user_pk: *user_pk,
                extension: extension.clone(),
            },
            // Handed over whole ([`Bridge::hand_to_queue`]), never dialled;
            // an unknown target is refused before.
            TransferTarget::Queue { .. } | TransferTarget::Unknown => return,
        };
        t.stage = TransferStage::Dialing;
        self.transferee_live = true;
        self.transferee_hung_up = false;
        self.actions.push_back(Action::DialTransferee { target });
    }

    /// The person to transfer to has no phone registered here: the
    /// transfer fails `user_unavailable` and the conversation goes on.
    pub fn transferee_unavailable(&mut self, now: Instant) {
        if self.finished {
            return;
        }
        self.transferee_live = false;
        let Some(t) = self.transfer.take() else {
            return;
        };
        tracing::info!(call_id = %self.call_id, destination = t.target.label(), "transfer: no phone of that person is registered here");
        self.hold_callee(now, false);
        self.transfer_refused(
            now,
            t,
            transfer_errors::USER_UNAVAILABLE,
            None,
            "that person has no phone registered",
        );
    }

    /// The second leg could not be placed at all (no RTP port, no trunk).
    pub fn transferee_failed(&mut self, now: Instant, why: &str) {
        if self.finished {
            return;
        }
        tracing::warn!(call_id = %self.call_id, %why, "the transfer's leg was not placed");
        self.transferee_live = false;
        self.transfer_failed(now, None, "the transfer could not be placed");
    }

    /// An event of the second leg's dialog.
    pub fn transferee_event(&mut self, now: Instant, ev: DialogEvent) {
        if self.finished {
            return;
        }
        let stage = self.transfer.as_ref().map(|t| t.stage);
        match ev {
            DialogEvent::Answered(neg) if stage == Some(TransferStage::Dialing) => {
                tracing::info!(call_id = %self.call_id, codec = neg.codec.encoding_name(), "the transfer's destination answered");
                if let Some(t) = self.transfer.as_mut() {
                    t.stage = TransferStage::MediaStarting;
                }
                self.actions.push_back(Action::StartTransfereeMedia(neg));
            }
            DialogEvent::MediaUpdated(neg) => {
                self.actions
                    .push_back(Action::SetTransfereeRemote(neg.remote_rtp));
            }
            DialogEvent::Ended(end) => {
                self.transferee_live = false;
                tracing::info!(call_id = %self.call_id, detail = %end.detail, code = ?end.sip_code, "the transfer's leg ended");
                match stage {
                    Some(
                        TransferStage::Dialing
                        | TransferStage::MediaStarting
                        | TransferStage::Briefing
                        | TransferStage::BriefingPlays(_),
                    ) => {
                        let code = end.sip_code.or(match end.reason {
                            EndedReason::NoAnswer => Some(408),
                            EndedReason::Busy => Some(486),
                            _ => None,
                        });
                        self.transfer_failed(now, code, "the destination did not take the call");
                    }
                    // The person the callee was handed to hung up.
                    Some(TransferStage::Bridged) => self.hang_up(EndedReason::Transferred),
                    _ => {}
                }
            }
            _ => {}
        }
    }

    /// [`Action::StartTransfereeMedia`] succeeded: the legs are bridged.
    pub fn transferee_media_started(&mut self, now: Instant) {
        if self.finished {
            return;
        }
        let Some(t) = self
            .transfer
            .as_mut()
            .filter(|t| t.stage == TransferStage::MediaStarting)
        else {
            return;
        };
        if t.mode == TransferMode::Warm {
            t.stage = TransferStage::Briefing;
            let text = t.message.clone().unwrap_or_else(|| self.briefing_text());
            self.actions.push_back(Action::SynthesizeBriefing(text));
            return;
        }
        t.stage = TransferStage::Bridged;
        self.relay = Relay::default();
        self.transfer_succeeded(now, "bridge");
    }

    /// A warm transfer's own briefing: the engine's summary so far, else
    /// the callee's last words.
    fn briefing_text(&self) -> String {
        let mut text = String::from("Transferred call.");
        if let Some(summary) = &self.last_summary {
            text.push(' ');
            text.push_str(summary);
        } else if !self.recent_callee_turns.is_empty() {
            text.push_str(" The caller said: ");
            let said: Vec<&str> = self
                .recent_callee_turns
                .iter()
                .map(String::as_str)
                .collect();
            text.push_str(&said.join(" "));
        }
        text
    }

    /// The answer to [`Action::SynthesizeBriefing`]: the briefing's 8 kHz
    /// audio, played to the person, then the legs are bridged. `None` (no
    /// speech synthesis in this sidecar, or it failed): connected at once,
    /// as a blind transfer would (the person has answered; hanging up on
    /// them would be worse than an unannounced call).
    pub fn briefing_audio(&mut self, now: Instant, pcm: Option<Vec<i16>>) {
        if self.finished {
            return;
        }
        let Some(t) = self
            .transfer
            .as_mut()
            .filter(|t| t.stage == TransferStage::Briefing)
        else {
            return;
        };
        match pcm.filter(|p| !p.is_empty()) {
            Some(pcm) => {
                let plays = Duration::from_millis(pcm.len() as u64 / 8);
                t.stage = TransferStage::BriefingPlays(now + plays + BRIEFING_TAIL);
                self.actions.push_back(Action::PlayToTransferee(pcm));
            }
            None => {
                tracing::warn!(call_id = %self.call_id, "the briefing could not be synthesised; connecting without it");
                self.connect_warm(now);
            }
        }
    }

    /// Warm: the person has heard the briefing: the legs are bridged.
    fn connect_warm(&mut self, now: Instant) {
        let Some(t) = self.transfer.as_mut() else {
            return;
        };
        t.stage = TransferStage::Bridged;
        self.relay = Relay::default();
        // The hold audio stops; the engine is detached next.
        self.callee_held = false;
        self.transfer_succeeded(now, "warm");
    }

    /// [`Action::StartTransfereeMedia`] failed: the second leg is hung up
    /// and the conversation goes on.
    pub fn transferee_media_failed(&mut self, now: Instant, why: &str) {
        if self.finished {
            return;
        }
        tracing::warn!(call_id = %self.call_id, %why, "the transfer's media did not start");
        self.hang_up_transferee(EndedReason::MediaLost);
        self.transfer_failed(now, None, "the transfer's audio could not be connected");
    }

    /// A 20 ms frame heard from the transferee: to the callee (and so into
    /// the recording's left channel).
    pub fn transferee_heard(&mut self, _now: Instant, pcm: Vec<i16>) {
        if self.finished || !self.is_bridged() {
            return;
        }
        self.relay.heard(Leg::Transferee, &pcm);
        while let Some(f) = self.relay.next_frame(Leg::Callee) {
            self.actions.push_back(Action::SendToMedia(f));
        }
    }

    /// The callee was handed over (`method`: `refer`, `bridge` or
    /// `warm`): the tool's result (the engine's transfer) and turn, the
    /// `transferred` event, the engine detached and its audio not yet
    /// played dropped; no silence timeout from now on.
    fn transfer_succeeded(&mut self, now: Instant, method: &str) {
        let Some(t) = self.transfer.clone() else {
            return;
        };
        let destination = t.destination();
        self.engine = EngineState::Gone;
        self.actions.push_back(Action::DetachEngine);
        self.playout.interrupt(now);
        self.actions.push_back(Action::FlushMedia);
        self.silence = None;
        self.amd = None;
        self.agent_message = false;
        self.hangup_at = None;
        if let TransferOrigin::Tool {
            tool_call_id,
            arguments,
        } = t.origin.clone()
        {
            let output = tools::transfer_output(&destination, method);
            self.builtin_tool_answered(
                now,
                t.asked,
                tools::TRANSFER,
                &arguments,
                tool_call_id,
                output,
            );
        }
        let at_offset_ms = self.offset_ms(now);
        let (extension, transfer_id) = (
            match &t.target {
                TransferTarget::User { extension, .. } => Some(extension.clone()),
                TransferTarget::Number { .. }
                | TransferTarget::Queue { .. }
                | TransferTarget::Unknown => None,
            },
            match t.origin {
                TransferOrigin::Api { transfer_id } => Some(transfer_id),
                TransferOrigin::Tool { .. } => None,
            },
        );
        self.emit(
            now,
            EventKind::Transferred {
                destination,
                method: method.to_string(),
                at_offset_ms,
                extension,
                mode: Some(t.mode),
                transfer_id,
            },
        );
    }

    /// The transfer did not happen (`code`: the destination's final SIP
    /// answer, if any): the asker hears why (a stable code) and the
    /// conversation goes on.
    fn transfer_failed(&mut self, now: Instant, code: Option<u16>, why: &str) {
        let Some(t) = self.transfer.take() else {
            return;
        };
        let error = code.map_or(transfer_errors::TRANSFER_FAILED, tools::transfer_error_code);
        // A warm transfer's callee is back with the agent.
        self.hold_callee(now, false);
        self.transfer_refused(now, t, error, code, why);
    }

    /// Ends transfer `t` (not or no longer `self.transfer`) with `error`:
    /// the engine's tool gets the error result, the edge's command a
    /// `transfer_failed` event. (A transfer refused while another runs
    /// leaves that one, and its held callee, alone.)
    fn transfer_refused(
        &mut self,
        now: Instant,
        t: Transfer,
        error: &str,
        code: Option<u16>,
        why: &str,
    ) {
        tracing::info!(call_id = %self.call_id, ?code, error, %why, "transfer failed");
        if let Some(w) = self.silence.as_mut() {
            w.activity(now);
        }
        match t.origin {
            TransferOrigin::Tool {
                tool_call_id,
                arguments,
            } => {
                let output = tools::transfer_error_output(error, code, why);
                self.builtin_tool_answered(
                    now,
                    t.asked,
                    tools::TRANSFER,
                    &arguments,
                    tool_call_id,
                    output,
                );
            }
            TransferOrigin::Api { transfer_id } => {
                self.emit(
                    now,
                    EventKind::TransferFailed {
                        destination: t.target.label().to_string(),
                        error: error.to_string(),
                        sip_code: code,
                        transfer_id: Some(transfer_id),
                    },
                );
            }
        }
    }

    /// Asks for the engine once (while ringing, or at the answer).
    fn start_engine(&mut self) {
        if self.engine == EngineState::Off && self.hangup_sent.is_none() {
            self.engine = EngineState::Starting;
            self.actions.push_back(Action::StartEngine);
        }
    }

    /// The engine is live and the answer's media runs: the conversation
    /// starts, with what the engine said before it.
    fn start_conversation(&mut self, now: Instant) {
        if self.conversing
            || !self.media_up
            || self.engine != EngineState::Live
            || self.amd.as_ref().is_some_and(|a| a.holds)
        {
            return;
        }
        self.conversing = true;
        self.actions.push_back(Action::EngineAnswered);
        for ev in std::mem::take(&mut self.early_events) {
            self.handle_engine_event(now, ev);
        }
    }

    /// [`Action::StartMedia`] succeeded: the engine, if not already there,
    /// comes next.
    pub fn media_started(&mut self, now: Instant) {
        if self.finished {
            return;
        }
        self.media_up = true;
        self.start_engine();
        self.start_conversation(now);
    }

    /// [`Action::StartMedia`] failed: no call without media.
    pub fn media_failed(&mut self, _now: Instant, why: &str) {
        if self.finished {
            return;
        }
        tracing::warn!(call_id = %self.call_id, %why, "media did not start; hanging up");
        self.hang_up(EndedReason::MediaLost);
    }

    /// [`Action::StartEngine`] succeeded.
    pub fn engine_started(&mut self, now: Instant) {
        if self.finished || self.engine != EngineState::Starting {
            return;
        }
        self.engine = EngineState::Live;
        if self.on_hold {
            // Held before the engine was there (answered `sendonly`).
            self.actions.push_back(Action::EngineHold(true));
        }
        self.start_conversation(now);
    }

    /// The engine did not start, or failed since (the driver drops it):
    /// never leave the callee in dead air, end at once.
    pub fn engine_failed(&mut self, _now: Instant, err: &EngineError) {
        if self.finished || self.is_transferred() {
            // Detached on purpose: the call goes on without it.
            return;
        }
        match self.engine {
            EngineState::Starting => {
                tracing::warn!(call_id = %self.call_id, code = err.code(), error = %err, "engine failed to start; hanging up");
            }
            EngineState::Live => {
                tracing::warn!(call_id = %self.call_id, code = err.code(), error = %err, "engine failed; hanging up");
            }
            EngineState::Off | EngineState::Gone => {}
        }
        self.engine = EngineState::Gone;
        self.hang_up(EndedReason::EngineError);
    }

    /// A 20 ms frame heard from the callee.
    pub fn heard(&mut self, now: Instant, pcm: Vec<i16>) {
        if self.finished {
            return;
        }
        if self.is_bridged() {
            // The transferee hears the callee now; the engine is gone.
            self.relay.heard(Leg::Callee, &pcm);
            while let Some(f) = self.relay.next_frame(Leg::Transferee) {
                self.actions.push_back(Action::SendToTransferee(f));
            }
            return;
        }
        if let Some(w) = self.silence.as_mut() {
            w.heard(now, &pcm);
        }
        if let Some(a) = self.amd.as_mut() {
            let ev = a
                .det
                .push(now.saturating_duration_since(a.answered_at), &pcm);
            self.amd_event(now, ev);
            if self.finished {
                return;
            }
        }
        // On hold the callee hears nothing and what we hear is hold music:
        // the engine gets none of it.
        if self.engine == EngineState::Live && self.conversing && !self.on_hold && !self.callee_held
        {
            self.actions
                .push_back(Action::EnginePlayed(self.playout.heard(now)));
            self.actions.push_back(Action::SendToEngine(pcm));
        }
    }

    /// An event from the engine.
    pub fn handle_engine_event(&mut self, now: Instant, ev: EngineEvent) {
        if self.finished {
            return;
        }
        if !self.conversing {
            // Before the answer: held for it (an engine waiting for the
            // answer says nothing; this bounds one that does).
            if self.early_events.len() < EARLY_EVENTS {
                self.early_events.push_back(ev);
            }
            return;
        }
        match ev {
            // Warm transfer: the callee waits on hold; the agent is not heard.
            EngineEvent::Audio(_) if self.callee_held => {}
            EngineEvent::Audio(pcm) => {
                self.agent_spoke |= SilenceWatch::is_speech(&pcm);
                self.playout.enqueue(now, pcm.len() as u64 / 8);
                if let Some(w) = self.silence.as_mut() {
                    w.engine_audio(&pcm, self.playout.done_at());
                }
                self.actions.push_back(Action::SendToMedia(pcm));
            }
            EngineEvent::Interrupt => {
                if let Some(w) = self.silence.as_mut() {
                    w.activity(now);
                }
                // Tell the engine what was really heard (it truncates its turn there).
                if self.engine == EngineState::Live {
                    self.actions
                        .push_back(Action::EnginePlayed(self.playout.heard(now)));
                }
                self.playout.interrupt(now);
                self.actions.push_back(Action::FlushMedia);
            }
            EngineEvent::Transcript {
                role,
                text,
                start_ms,
                end_ms,
            } => {
                if let Some(w) = self.silence.as_mut() {
                    w.activity(now);
                }
                if role == Role::Callee {
                    if self.recent_callee_turns.len() >= BRIEFING_TURNS {
                        self.recent_callee_turns.pop_front();
                    }
                    self.recent_callee_turns
                        .push_back(text.chars().take(300).collect());
                }
                self.emit(
                    now,
                    EventKind::TranscriptTurn {
                        role,
                        text,
                        start_ms,
                        end_ms,
                    },
                );
            }
            EngineEvent::EndCall { reason } => {
                tracing::info!(call_id = %self.call_id, %reason, "engine ends the call");
                self.end_after_playout(now);
            }
            EngineEvent::FunctionCall {
                name,
                call_id,
                arguments,
            } if super::customer_tools::is_customer_tool(&name) => {
                self.customer_tool(now, call_id, name, arguments);
            }
            EngineEvent::FunctionCall {
                name,
                call_id,
                arguments,
            } => self.function_call(now, name, call_id, arguments),
            EngineEvent::Summary { summary, outcome } => {
                if let Some(text) = summary.as_ref().filter(|t| !t.trim().is_empty()) {
                    self.last_summary = Some(text.chars().take(600).collect());
                }
                self.emit(now, EventKind::Summary { summary, outcome });
            }
        }
    }

    /// What the detector said (if anything), acted on per the offer's `amd`.
    fn amd_event(&mut self, now: Instant, ev: Option<AmdEvent>) {
        let Some(a) = self.amd.as_mut() else { return };
        match ev {
            None => {}
            Some(AmdEvent::Decided(d)) => {
                a.answered_by = Some(d.answered_by);
                tracing::info!(call_id = %self.call_id, answered_by = d.answered_by.as_str(), decision_ms = d.decision_ms, cue = ?d.cue, amd = self.cfg.amd.as_str(), "answering-machine detection decided");
                let machine = d.answered_by == AnsweredBy::Machine;
                if !machine {
                    // A person (or nobody we could tell): talk.
                    a.holds = false;
                }
                self.emit(
                    now,
                    EventKind::AnsweredBy {
                        answered_by: d.answered_by,
                        decision_ms: d.decision_ms,
                    },
                );
                if machine && self.cfg.amd == AmdMode::Hangup {
                    self.hang_up(EndedReason::AnsweringMachine);
                } else {
                    self.start_conversation(now);
                }
            }
            Some(AmdEvent::ReadyForMessage { at_ms, cue }) => {
                if self.cfg.amd != AmdMode::LeaveMessage || self.hangup_sent.is_some() {
                    return;
                }
                tracing::info!(call_id = %self.call_id, at_ms, ?cue, "the machine records; leaving the message");
                match self.cfg.amd_message.clone() {
                    Some(text) => self.actions.push_back(Action::PlayMessage(text)),
                    None => self.leave_by_agent(now),
                }
            }
        }
    }

    /// `leave_message` with no text (or none could be synthesised): the
    /// agent speaks, and the call ends once it has.
    fn leave_by_agent(&mut self, now: Instant) {
        self.agent_message = true;
        if let Some(a) = self.amd.as_mut() {
            a.holds = false;
        }
        self.start_conversation(now);
    }

    /// The answer to [`Action::PlayMessage`]: its 8 kHz audio, played to the
    /// machine and followed by the BYE; `None`: it could not be synthesised,
    /// the agent speaks instead.
    pub fn message_audio(&mut self, now: Instant, pcm: Option<Vec<i16>>) {
        if self.finished || self.hangup_sent.is_some() {
            return;
        }
        let Some(pcm) = pcm.filter(|p| !p.is_empty()) else {
            tracing::warn!(call_id = %self.call_id, "the message could not be synthesised; the agent speaks");
            self.leave_by_agent(now);
            return;
        };
        self.playout.enqueue(now, pcm.len() as u64 / 8);
        if let Some(w) = self.silence.as_mut() {
            w.engine_audio(&pcm, self.playout.done_at());
        }
        self.actions.push_back(Action::SendToMedia(pcm));
        self.hangup_at = Some(self.playout.done_at() + self.cfg.hangup_delay);
    }

    /// The engine called a customer tool: asked of the edge, or answered
    /// at once when the call has too many waiting.
    fn customer_tool(
        &mut self,
        now: Instant,
        tool_call_id: String,
        name: String,
        arguments: String,
    ) {
        if let Some(w) = self.silence.as_mut() {
            // Waiting for a tool is not silence on the line.
            w.activity(now);
        }
        let at = self.offset_ms(now);
        match self.tools.start(tool_call_id, name, arguments, at) {
            super::customer_tools::Started::Ask(ask) => {
                self.actions.push_back(Action::AskTool(ask))
            }
            super::customer_tools::Started::Done(done) => self.tool_done(now, done),
        }
    }

    /// The edge's answer to a tool call (issue 18): the engine gets its
    /// output, the call's events the `tool_call`.
    pub fn tool_answered(
        &mut self,
        now: Instant,
        tool_call_id: &str,
        answer: &voxline_shared::sidecar_link::ToolCallAnswer,
    ) {
        if self.finished {
            return;
        }
        let at = self.offset_ms(now);
        if let Some(done) = self.tools.finish(tool_call_id, answer, at) {
            if let Some(w) = self.silence.as_mut() {
                w.activity(now);
            }
            self.tool_done(now, done);
        }
    }

    fn tool_done(&mut self, now: Instant, done: super::customer_tools::ToolDone) {
        self.emit(now, done.event);
        if self.engine == EngineState::Live {
            self.actions.push_back(Action::FunctionResult {
                call_id: done.tool_call_id,
                output: done.output,
            });
        }
    }

    /// The edge's hangup command, or `None` when its sender is gone (the
    /// sidecar is stopping at once). Ignored once we have hung up.
    pub fn hangup_command(&mut self, _now: Instant, cause: Option<HangupCause>) {
        if self.finished || self.hangup_sent.is_some() || self.stopping {
            return;
        }
        let reason = match cause {
            Some(HangupCause::Requested) => EndedReason::HangupRequested,
            Some(HangupCause::Shutdown) => {
                tracing::warn!(call_id = %self.call_id, "the sidecar is shutting down; hanging up");
                self.shutdown = true;
                SHUTDOWN_REASON
            }
            None => {
                self.stopping = true;
                EndedReason::HangupRequested
            }
        };
        self.hang_up(reason);
    }

    /// Hangs up once: the first reason is the one `ended` reports.
    fn hang_up(&mut self, reason: EndedReason) {
        if self.hangup_sent.is_none() {
            self.hangup_sent = Some(reason);
            self.actions.push_back(Action::Hangup(reason));
        }
        self.hang_up_transferee(reason);
    }

    /// Hangs up the second leg, if there is one, once.
    fn hang_up_transferee(&mut self, reason: EndedReason) {
        if self.transferee_live && !self.transferee_hung_up {
            self.transferee_hung_up = true;
            self.actions.push_back(Action::HangupTransferee(reason));
        }
    }

    fn at_ms(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.started).as_millis();
        self.timings
            .dispatched_ms
            .saturating_add(u64::try_from(since).unwrap_or(u64::MAX))
    }

    fn emit(&mut self, now: Instant, kind: EventKind) -> u64 {
        let at_ms = self.at_ms(now);
        self.actions.push_back(Action::Emit { kind, at_ms });
        at_ms
    }

    fn finish(
        &mut self,
        now: Instant,
        status: CallStatus,
        reason: EndedReason,
        sip_code: Option<u16>,
    ) {
        self.finished = true;
        self.engine = EngineState::Gone;
        // Keys pressed just before the end still reach the transcript.
        self.flush_keypad(now);
        self.timings.ended_ms = self.at_ms(now);
        let end = (!self.stopping).then_some(CallEnd {
            status,
            reason,
            sip_code,
            timings: self.timings,
            retry_after_s: self.retry_after_s,
        });
        self.actions.push_back(Action::Finish(end));
    }
}

/// How much engine audio the callee has heard: audio is played in order at
/// real time from when it is queued, and a barge-in drops what was not heard.
#[derive(Debug, Clone, Copy)]
pub struct PlayoutClock {
    /// Audio fully played before the current backlog.
    heard_ms: u64,
    backlog_start: Instant,
    backlog_ms: u64,
}

impl PlayoutClock {
    pub fn new(now: Instant) -> Self {
        PlayoutClock {
            heard_ms: 0,
            backlog_start: now,
            backlog_ms: 0,
        }
    }

    pub fn heard(&self, now: Instant) -> u64 {
        let into = now
            .saturating_duration_since(self.backlog_start)
            .as_millis() as u64;
        self.heard_ms + into.min(self.backlog_ms)
    }

    pub fn enqueue(&mut self, now: Instant, ms: u64) {
        if now >= self.done_at() {
            self.heard_ms += self.backlog_ms;
            self.backlog_start = now;
            self.backlog_ms = 0;
        }
        self.backlog_ms += ms;
    }

    /// Barge-in: what was not heard is dropped.
    pub fn interrupt(&mut self, now: Instant) {
        self.heard_ms = self.heard(now);
        self.backlog_start = now;
        self.backlog_ms = 0;
    }

    pub fn done_at(&self) -> Instant {
        self.backlog_start + Duration::from_millis(self.backlog_ms)
    }
}

/// Hangs up a call nobody speaks in (`silence_timeout`). Speech is audio
/// above a speech level, the callee's as heard and the engine's until it has
/// played out (silent frames, e.g. the echo engine's, do not count), and any
/// transcript or barge-in from the engine.
#[derive(Debug, Clone, Copy)]
pub struct SilenceWatch {
    timeout: Duration,
    last_activity: Instant,
}

impl SilenceWatch {
    pub fn new(now: Instant, timeout: Duration) -> Self {
        SilenceWatch {
            timeout,
            last_activity: now,
        }
    }

    fn is_speech(pcm: &[i16]) -> bool {
        let energy: f64 = pcm
            .iter()
            .map(|&s| f64::from(s) * f64::from(s))
            .sum::<f64>()
            / pcm.len().max(1) as f64;
        energy.sqrt() > SPEECH_RMS
    }

    /// A frame heard from the callee now.
    pub fn heard(&mut self, now: Instant, pcm: &[i16]) {
        if Self::is_speech(pcm) {
            self.activity(now);
        }
    }

    /// Engine audio queued now that finishes playing at `plays_until`.
    pub fn engine_audio(&mut self, pcm: &[i16], plays_until: Instant) {
        if Self::is_speech(pcm) {
            self.activity(plays_until);
        }
    }

    pub fn activity(&mut self, at: Instant) {
        self.last_activity = self.last_activity.max(at);
    }

    pub fn deadline(&self) -> Instant {
        self.last_activity + self.timeout
    }
}

#[cfg(test)]
mod tests;

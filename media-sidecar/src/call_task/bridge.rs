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
//! `max_seconds` is enforced by the SIP dialog itself (it sends the BYE and
//! ends `completed` / `max_duration_reached`); the bridge maps that end.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use voxline_shared::sidecar_link::{EventKind, Offer, Timings};
use voxline_shared::{CallStatus, EndedReason};

use super::{HangupCause, SHUTDOWN_REASON};
use crate::engine::{EngineError, EngineEvent};
use crate::sip::sdp::{Direction, Negotiated};
use crate::sip::{DialogEnd, DialogEvent};

/// The silence timeout when the offer names none (the edge always does).
pub const DEFAULT_SILENCE_TIMEOUT: Duration = Duration::from_secs(30);

/// After the engine ends the call, how long past the end of its last words
/// the BYE waits (so the callee hears them out).
pub const HANGUP_DELAY: Duration = Duration::from_millis(300);

/// RMS of a 20 ms frame above which the callee counts as speaking (about
/// -38 dBFS: above line noise and comfort noise, below quiet speech).
const SPEECH_RMS: f64 = 400.0;

/// What a bridge is configured with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BridgeConfig {
    /// Hang up when nobody has spoken for this long (from the answer).
    pub silence_timeout: Duration,
    /// See [`HANGUP_DELAY`].
    pub hangup_delay: Duration,
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
    /// Ask the edge for a customer tool's answer without holding up the
    /// call; then tell the bridge [`Bridge::tool_answered`] (issue 18).
    AskTool(super::tools::ToolAsk),
    /// Give the engine a tool call's output (`function_result`).
    ToolResult {
        tool_call_id: String,
        output: String,
    },
    /// Hang up the SIP call: BYE if answered, CANCEL if not. The dialog's
    /// `Ended` follows.
    Hangup(EndedReason),
    /// The call is over: close the engine and stop the media, then emit
    /// `end`'s `ended` event. `None`: the sidecar is stopping at once, no
    /// `ended` (the edge settles the call). Always the last action.
    Finish(Option<CallEnd>),
}

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
    /// The answer's media runs.
    media_up: bool,
    /// [`Action::EngineAnswered`] is out: the conversation runs.
    conversing: bool,
    /// What the engine said before the conversation ran.
    early_events: VecDeque<EngineEvent>,
    finished: bool,
    /// Customer tool calls waiting for the edge (issue 18).
    tools: super::tools::ToolCalls,
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
            media_up: false,
            conversing: false,
            early_events: VecDeque::new(),
            finished: false,
            tools: Default::default(),
        };
        b.emit(now, EventKind::Dialing);
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
        match (self.hangup_at, silence) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether [`Action::Finish`] has been given.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.finished || self.hangup_sent.is_some() {
            return;
        }
        if self.hangup_at.is_some_and(|at| now >= at) {
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
                tracing::info!(call_id = %self.call_id, codec = neg.codec.encoding_name(), pt = neg.pt, remote = %neg.remote_rtp, srtp = neg.srtp.as_ref().map_or("off", |s| s.keys.suite.name()), "answered; media negotiated");
                let held = !we_may_send(&neg);
                self.actions.push_back(Action::StartMedia(neg));
                self.set_hold(now, held);
            }
            DialogEvent::MediaUpdated(neg) => {
                self.actions
                    .push_back(Action::SetMediaRemote(neg.remote_rtp));
                self.set_hold(now, !we_may_send(&neg));
            }
            DialogEvent::Ended(outcome) => self.dialog_ended(now, outcome),
        }
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
        // A hangup we asked for keeps our reason; otherwise the dialog's.
        let reason = self.hangup_sent.unwrap_or(end.reason);
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
        if self.conversing || !self.media_up || self.engine != EngineState::Live {
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
        if self.finished {
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
        if let Some(w) = self.silence.as_mut() {
            w.heard(now, &pcm);
        }
        // On hold the callee hears nothing and what we hear is hold music:
        // the engine gets none of it.
        if self.engine == EngineState::Live && self.conversing && !self.on_hold {
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
            EngineEvent::Audio(pcm) => {
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
                self.hangup_at = Some(self.playout.done_at().max(now) + self.cfg.hangup_delay);
            }
            EngineEvent::FunctionCall {
                name,
                call_id,
                arguments,
            } if super::tools::is_customer_tool(&name) => {
                self.customer_tool(now, call_id, name, arguments);
            }
            EngineEvent::FunctionCall { name, .. } => {
                tracing::info!(call_id = %self.call_id, %name, "engine function call (not handled)");
            }
            EngineEvent::Summary { summary, outcome } => {
                self.emit(now, EventKind::Summary { summary, outcome });
            }
        }
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
        let at = self.since_answer_ms(now);
        match self.tools.start(tool_call_id, name, arguments, at) {
            super::tools::Started::Ask(ask) => self.actions.push_back(Action::AskTool(ask)),
            super::tools::Started::Done(done) => self.tool_done(now, done),
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
        let at = self.since_answer_ms(now);
        if let Some(done) = self.tools.finish(tool_call_id, answer, at) {
            if let Some(w) = self.silence.as_mut() {
                w.activity(now);
            }
            self.tool_done(now, done);
        }
    }

    fn tool_done(&mut self, now: Instant, done: super::tools::ToolDone) {
        self.emit(now, done.event);
        if self.engine == EngineState::Live {
            self.actions.push_back(Action::ToolResult {
                tool_call_id: done.tool_call_id,
                output: done.output,
            });
        }
    }

    /// Offset (ms) from the answer, as transcript turns are stamped.
    fn since_answer_ms(&self, now: Instant) -> u64 {
        let answered = self
            .timings
            .answered_ms
            .unwrap_or(self.timings.dispatched_ms);
        self.at_ms(now).saturating_sub(answered)
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

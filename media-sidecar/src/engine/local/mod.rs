//! The `local` engine: a fully offline, scripted voice agent.
//!
//! Pipeline per call:
//! - callee audio (8 kHz, 20 ms frames) -> [`vad`] (earshot, hangover) ->
//!   utterances -> [`stt`] (pocketsphinx on its own thread, per-call grammar,
//!   sample-repeat 8->16 kHz) -> recognised words;
//! - words -> [`script::Dialog`] (keyword rules parsed from the system prompt's
//!   `[script]` block; see [`script`] for the format) -> the next line;
//! - line -> [`tts`] (flite, pre-synthesised when the call starts and cached
//!   per sidecar) -> 8 kHz audio events.
//!
//! It is keyword-level dialog, not a language model: it says only the script's
//! lines and understands only the answers the script lists (plus a bounded
//! "didn't catch that" reprompt and silence handling). English only.
//!
//! Timing: the engine's clock is `max(audio clock, wall clock)` since it was
//! created (= when the call was answered), where the audio clock is 20 ms per
//! frame passed to `send_audio`. Fed in real time both agree; fed faster
//! (tests) the audio clock leads, so silence timeouts and playback are
//! simulated consistently. A line counts as played when `played()` reports its
//! end (cumulative ms of our audio heard since the call started) or when the
//! clock passes its estimated end, whichever comes first.
//!
//! Events: `Audio` for each line (200 ms chunks); `Transcript{Ai}` when a line
//! has been played (or truncated to the words heard, on barge-in);
//! `Transcript{User}` per recognised utterance with its VAD start/end;
//! `Interrupt` when the callee talks over a line for `barge_in_ms` (the line is
//! cut; closing lines with `[end]` are not interruptible); `Summary` +
//! `EndCall` once a closing line has been played.
//!
//! End of turn: the VAD's hangover (700 ms without voice), or sooner: after
//! [`LocalConfig::quick_endpoint_ms`] of pause the recognizer is asked for
//! the words so far, and when they already answer the script (a rule
//! matches) or sound finished ([`script::sounds_finished`]: they do not end
//! on "and", "the", "um", a number...) the turn ends there (issue 17: about
//! 350 ms sooner; a turn that trails off keeps the patient hangover).
//!
//! Who speaks first ([`EngineConfig::first_speaker`], issue 17): `agent`
//! greets at the answer; `callee` holds the greeting until the end of the
//! callee's first utterance (VAD), which is transcribed but not taken as an
//! answer, or until [`LocalConfig::callee_first_wait_ms`] pass in silence.

pub mod script;
pub mod stt;
pub mod tts;
pub mod vad;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use voxline_shared::sidecar_link::Role;

use super::{Engine, EngineConfig, EngineError, EngineEvent};
use script::{Cause, Dialog, Say, Script};
use stt::{SttCmd, SttResult, SttWorker, Vocabulary};
use tts::Voice;
use vad::{Vad, VadConfig, VadEvent};

const FRAME_MS: u64 = 20;
/// RMS of a frame above which it is not a pause (about -38 dBFS, the call
/// task's speech level): the VAD scores some speech sounds unvoiced, so a
/// quick end of turn also wants the line quiet.
pub const QUIET_RMS: f64 = 400.0;
const AUDIO_CHUNK: usize = 1600; // 200 ms

/// Tunables (defaults suit telephone calls).
#[derive(Debug, Clone)]
pub struct LocalConfig {
    pub vad: VadConfig,
    /// Talk-over needed to interrupt our playback.
    pub barge_in_ms: u64,
    /// A pause this long in the callee's speech (no voice, and no frame
    /// above [`QUIET_RMS`]) ends their turn early when the words so far
    /// already answer the script (a rule matches) or sound finished
    /// ([`script::sounds_finished`]); speech that trails off waits for the
    /// VAD's full hangover ([`VadConfig::hangover_ms`]).
    pub quick_endpoint_ms: u64,
    /// Audio kept from before the VAD onset and given to the recognizer.
    pub preroll_ms: u64,
    /// An utterance longer than this is cut and recognised.
    pub max_utterance_ms: u64,
    /// Voice when the call's `voice` is not a flite voice name.
    pub default_voice: Voice,
    /// `first_speaker: callee`: how long after the answer a callee who says
    /// nothing is waited for before the agent greets anyway.
    pub callee_first_wait_ms: u64,
}

impl Default for LocalConfig {
    fn default() -> Self {
        LocalConfig {
            vad: VadConfig::default(),
            barge_in_ms: 100,
            quick_endpoint_ms: 350,
            preroll_ms: 300,
            max_utterance_ms: 15_000,
            default_voice: Voice::Kal16,
            callee_first_wait_ms: 3_000,
        }
    }
}

struct Playing {
    text: String,
    cause: Cause,
    end_call: bool,
    /// `[dtmf KEYS]`: pressed once the line has played.
    keys: Option<String>,
    /// Engine clock span (estimated).
    start_ms: u64,
    end_ms: u64,
    /// Span on the output timeline (cumulative audio we emitted), for `played()`.
    out_start: u64,
    out_end: u64,
}

struct UttMeta {
    /// Began while we were speaking and did not barge in: a backchannel or
    /// echo, transcribed but not acted on.
    overlap_only: bool,
}

/// Counters for tests and metrics.
#[derive(Debug, Clone, Default)]
pub struct LocalStats {
    pub utterances: u64,
    pub stt_decode_ms: u64,
    pub barge_ins: u64,
    pub lines_said: u64,
}

pub struct LocalEngine {
    call_id: String,
    cfg: LocalConfig,
    dialog: Dialog,
    voice: Voice,
    lines: HashMap<String, Arc<[i16]>>,
    vad: Vad,
    stt: Option<SttWorker>,
    stt_rx: mpsc::UnboundedReceiver<SttResult>,
    preroll: VecDeque<i16>,
    events: VecDeque<EngineEvent>,
    created: Instant,
    audio_ms: u64,
    playing: Option<Playing>,
    emitted_ms: u64,
    played_ms: u64,
    /// Current utterance: (start_ms, overlapped our playback, barged in).
    utt: Option<(u64, bool, bool)>,
    pending: VecDeque<UttMeta>,
    /// Silence is measured from here (end of our last line / the callee's last speech).
    last_activity_ms: u64,
    end_sent: bool,
    closed: bool,
    last_user_text: Option<String>,
    stats: LocalStats,
    /// Started while the phone rang ([`EngineConfig::greet_on_answer`]):
    /// no clock, no events, no greeting until [`Engine::answered`].
    waiting_for_answer: bool,
    /// `first_speaker: callee` ([`EngineConfig::first_speaker`]): the
    /// greeting waits for the end of the callee's first utterance (or
    /// [`LocalConfig::callee_first_wait_ms`] of their silence).
    greeting_held: bool,
    /// The callee's last voiced time (stream ms) at which the words so far
    /// were asked for ([`SttCmd::Peek`]): once per pause.
    peeked_at: Option<u64>,
    /// Peeks whose words have not come back yet.
    peeks_out: usize,
    /// Stream time after the last frame above [`QUIET_RMS`].
    loud_until_ms: u64,
    /// `send_dtmf` calls made so far (their ids).
    tool_calls: u64,
}

impl LocalEngine {
    /// Builds the engine for an answered call: parses the script, synthesises
    /// its lines and loads the recognizer (both off the executor, in parallel),
    /// then queues the greeting.
    pub async fn connect(cfg: EngineConfig) -> Result<LocalEngine, EngineError> {
        Self::connect_with(cfg, LocalConfig::default()).await
    }

    pub async fn connect_with(
        cfg: EngineConfig,
        local: LocalConfig,
    ) -> Result<LocalEngine, EngineError> {
        let lang = cfg.language.to_ascii_lowercase();
        if !(lang.is_empty() || lang == "auto" || lang.starts_with("en")) {
            return Err(EngineError::Unavailable(format!(
                "the local engine speaks English only (language {:?})",
                cfg.language
            )));
        }
        let script = Script::from_prompt(cfg.system_prompt.as_deref());
        for w in &script.warnings {
            tracing::warn!(call_id = %cfg.call_id, warning = %w, "local engine script");
        }
        let voice = cfg
            .voice
            .as_deref()
            .and_then(Voice::parse)
            .unwrap_or(local.default_voice);

        let texts = script.all_lines();
        let tts_job =
            tokio::task::spawn_blocking(move || -> Result<HashMap<String, Arc<[i16]>>, String> {
                let mut m = HashMap::new();
                for t in texts {
                    let pcm = tts::synthesize(&t, voice)?;
                    m.insert(t, pcm);
                }
                Ok(m)
            });
        let corpus = script.corpus();
        let (res_tx, stt_rx) = mpsc::unbounded_channel();
        let stt_job =
            tokio::task::spawn_blocking(move || -> Result<(SttWorker, Vec<String>), String> {
                let vocab = Vocabulary::build(corpus)?;
                let unknown = vocab.unknown.clone();
                Ok((SttWorker::spawn(vocab, res_tx)?, unknown))
            });
        let lines = tts_job
            .await
            .map_err(|e| EngineError::Unavailable(format!("tts task: {e}")))?
            .map_err(|e| EngineError::Unavailable(format!("tts (flite): {e}")))?;
        let (worker, unknown) = stt_job
            .await
            .map_err(|e| EngineError::Unavailable(format!("stt task: {e}")))?
            .map_err(|e| EngineError::Unavailable(format!("stt (pocketsphinx): {e}")))?;
        if !unknown.is_empty() {
            tracing::warn!(call_id = %cfg.call_id, words = ?unknown, "script answer words not in the recognizer's dictionary (dropped)");
        }

        let mut e = LocalEngine {
            call_id: cfg.call_id,
            vad: Vad::new(local.vad),
            cfg: local,
            dialog: Dialog::new(script),
            voice,
            lines,
            stt: Some(worker),
            stt_rx,
            preroll: VecDeque::new(),
            events: VecDeque::new(),
            created: Instant::now(),
            audio_ms: 0,
            playing: None,
            emitted_ms: 0,
            played_ms: 0,
            utt: None,
            pending: VecDeque::new(),
            last_activity_ms: 0,
            end_sent: false,
            closed: false,
            last_user_text: None,
            stats: LocalStats::default(),
            waiting_for_answer: cfg.greet_on_answer,
            greeting_held: cfg.first_speaker == super::FirstSpeaker::Callee,
            peeked_at: None,
            peeks_out: 0,
            loud_until_ms: 0,
            tool_calls: 0,
        };
        if !e.waiting_for_answer {
            e.start_dialog();
        }
        Ok(e)
    }

    /// The call is answered: the clock starts and the greeting is queued
    /// (held for the callee's first words when they speak first).
    fn start_dialog(&mut self) {
        self.waiting_for_answer = false;
        self.created = Instant::now();
        if !self.greeting_held {
            self.greet();
        }
    }

    fn greet(&mut self) {
        self.greeting_held = false;
        if let Some(g) = self.dialog.start() {
            self.say(g);
        }
    }

    /// Whether the greeting still waits for the callee to speak first.
    pub fn greeting_held(&self) -> bool {
        self.greeting_held
    }

    /// The parsed script (for logs and tests).
    pub fn script(&self) -> &Script {
        &self.dialog.script
    }

    pub fn stats(&self) -> &LocalStats {
        &self.stats
    }

    /// Engine clock: ms since the call was answered.
    pub fn now_ms(&self) -> u64 {
        self.audio_ms.max(self.created.elapsed().as_millis() as u64)
    }

    /// Utterances (and requests for the words so far) handed to the
    /// recognizer whose result has not come back yet.
    pub fn stt_pending(&self) -> usize {
        self.pending.len() + self.peeks_out
    }

    /// Whether a line is (estimated to be) playing.
    pub fn speaking(&self) -> bool {
        self.playing.is_some()
    }

    /// Non-blocking `next_event`: results already decoded and due timers only.
    pub fn try_event(&mut self) -> Option<EngineEvent> {
        if self.waiting_for_answer {
            return None;
        }
        while let Ok(r) = self.stt_rx.try_recv() {
            self.on_stt(r);
        }
        self.tick();
        self.events.pop_front()
    }

    fn say(&mut self, s: Say) {
        if let Some(tool) = &s.tool {
            self.call_tool(tool);
        }
        if s.text.is_empty() {
            // Keys alone: pressed now, after any line still playing.
            if self.playing.is_some() {
                self.finish_line(false);
            }
            if let Some(keys) = &s.keys {
                self.press(keys);
            }
            if s.end {
                self.end_call(s.cause);
            }
            return;
        }
        let synth_started = Instant::now();
        let pcm = match self.lines.get(&s.text) {
            Some(p) => p.clone(),
            None => match tts::synthesize(&s.text, self.voice) {
                Ok(p) => {
                    self.lines.insert(s.text.clone(), p.clone());
                    p
                }
                Err(err) => {
                    tracing::error!(call_id = %self.call_id, error = %err, "tts failed");
                    Arc::from(Vec::new())
                }
            },
        };
        let dur = pcm.len() as u64 / 8;
        latency_mark(
            &self.call_id,
            "reply_queued",
            synth_started.elapsed().as_micros() as u64,
        );
        let now = self.now_ms();
        let start = self.playing.as_ref().map_or(now, |p| p.end_ms.max(now));
        // A line still "playing" (overlap without barge-in) is finished first.
        if self.playing.is_some() {
            self.finish_line(false);
        }
        self.playing = Some(Playing {
            text: s.text,
            cause: s.cause,
            end_call: s.end,
            keys: s.keys,
            start_ms: start,
            end_ms: start + dur,
            out_start: self.emitted_ms,
            out_end: self.emitted_ms + dur,
        });
        self.emitted_ms += dur;
        self.stats.lines_said += 1;
        for c in pcm.chunks(AUDIO_CHUNK) {
            self.events.push_back(EngineEvent::Audio(c.to_vec()));
        }
    }

    /// The playing line is over (played, or cut after `heard_ms`).
    fn finish_line(&mut self, cut: bool) {
        let Some(p) = self.playing.take() else { return };
        let now = self.now_ms();
        let (text, end_ms) = if cut {
            let by_clock = now.saturating_sub(p.start_ms);
            let by_report = self.played_ms.saturating_sub(p.out_start);
            let heard = by_clock.max(by_report).min(p.end_ms - p.start_ms);
            let total = (p.end_ms - p.start_ms).max(1);
            let words: Vec<&str> = p.text.split_whitespace().collect();
            let n = ((words.len() as u64 * heard).div_ceil(total) as usize).min(words.len());
            // Our output timeline continues from what was actually heard.
            self.emitted_ms = p.out_start + heard;
            (format!("{}...", words[..n].join(" ")), p.start_ms + heard)
        } else {
            (p.text.clone(), p.end_ms.min(now.max(p.start_ms)))
        };
        self.last_activity_ms = self.last_activity_ms.max(end_ms);
        self.events.push_back(EngineEvent::Transcript {
            role: Role::Agent,
            text,
            start_ms: p.start_ms,
            end_ms,
        });
        if let Some(keys) = &p.keys {
            self.press(keys);
        }
        if p.end_call {
            self.end_call(p.cause);
        }
    }

    /// Calls the line's customer tool (the bridge asks the edge; its
    /// answer is in the transcript, not read back).
    fn call_tool(&mut self, tool: &script::ScriptTool) {
        self.tool_calls += 1;
        self.events.push_back(EngineEvent::FunctionCall {
            name: tool.name.clone(),
            call_id: format!("local-{}", self.tool_calls),
            arguments: tool.arguments.clone(),
        });
    }

    /// Presses `keys` through the built-in `send_dtmf` tool (the bridge
    /// plays them; its result needs no answer here).
    fn press(&mut self, keys: &str) {
        self.tool_calls += 1;
        self.events.push_back(EngineEvent::FunctionCall {
            name: crate::call_task::tools::SEND_DTMF.into(),
            call_id: format!("local-{}", self.tool_calls),
            arguments: serde_json::json!({ "digits": keys }).to_string(),
        });
    }

    /// The script ended the call (after a line of `cause`): the summary and
    /// the end, once.
    fn end_call(&mut self, cause: Cause) {
        if !self.end_sent {
            self.end_sent = true;
            let (outcome, reason) = match cause {
                Cause::Rule(i) => {
                    let rule = &self.dialog.script.rules[i];
                    (
                        rule.phrases
                            .first()
                            .map(|ph| ph.join(" "))
                            .or_else(|| rule.keys.first().cloned()),
                        "script_end",
                    )
                }
                Cause::NoMatch => (Some("no_match".to_string()), "script_end"),
                Cause::Goodbye => (Some("no_answer".to_string()), "retries_exhausted"),
                Cause::Greeting | Cause::Silence => (None, "script_end"),
            };
            let summary = match &self.last_user_text {
                Some(t) => format!("Callee said \"{t}\"; the script ended ({reason})."),
                None => format!("The callee did not answer the script ({reason})."),
            };
            self.events.push_back(EngineEvent::Summary {
                summary: Some(summary),
                outcome,
            });
            self.events.push_back(EngineEvent::EndCall {
                reason: reason.into(),
            });
        }
    }

    /// Timers: end of playback, silence.
    fn tick(&mut self) {
        let now = self.now_ms();
        if let Some(p) = &self.playing {
            if now >= p.end_ms || self.played_ms >= p.out_end {
                self.finish_line(false);
            }
        }
        if self.greeting_held {
            // Callee first: nobody spoke after the answer, greet anyway.
            if self.utt.is_none() && now >= self.cfg.callee_first_wait_ms {
                self.greet();
            }
            return;
        }
        if self.playing.is_none()
            && !self.dialog.ended()
            && self.utt.is_none()
            && self.pending.is_empty()
            && now.saturating_sub(self.last_activity_ms)
                >= self.dialog.script.silence_after.as_millis() as u64
        {
            if let Some(s) = self.dialog.on_silence() {
                self.say(s);
            }
        }
    }

    /// When (engine clock) the next timer is due.
    fn next_deadline_ms(&self) -> Option<u64> {
        if self.greeting_held {
            return self.utt.is_none().then_some(self.cfg.callee_first_wait_ms);
        }
        if let Some(p) = &self.playing {
            return Some(p.end_ms);
        }
        if self.dialog.ended() || self.utt.is_some() || !self.pending.is_empty() {
            return None;
        }
        Some(self.last_activity_ms + self.dialog.script.silence_after.as_millis() as u64)
    }

    fn on_stt(&mut self, r: SttResult) {
        if r.partial {
            self.on_partial(r);
            return;
        }
        let meta = self.pending.pop_front().unwrap_or(UttMeta {
            overlap_only: false,
        });
        self.stats.stt_decode_ms += r.decode_ms;
        latency_mark(&self.call_id, "recognised", r.decode_ms * 1000);
        self.last_activity_ms = self.last_activity_ms.max(r.end_ms).max(self.now_ms());
        let text = r.text.trim().to_string();
        tracing::debug!(call_id = %self.call_id, text = %text, decode_ms = r.decode_ms, "recognised");
        if text.is_empty() {
            return;
        }
        self.events.push_back(EngineEvent::Transcript {
            role: Role::Callee,
            text: text.clone(),
            start_ms: r.start_ms,
            end_ms: r.end_ms,
        });
        self.last_user_text = Some(text.clone());
        if meta.overlap_only {
            return;
        }
        if let Some(s) = self.dialog.on_user(&text) {
            self.say(s);
        }
    }

    /// The words so far, asked for in a pause: when the callee is still in
    /// that pause and the words answer the script or sound finished, their
    /// turn ends now.
    fn on_partial(&mut self, r: SttResult) {
        self.peeks_out = self.peeks_out.saturating_sub(1);
        let still_paused = self.utt.is_some() && self.vad.last_voiced_ms() == Some(r.end_ms);
        if !still_paused || self.dialog.ended() {
            return;
        }
        let words = script::normalize(&r.text);
        let answers = self.dialog.script.match_rule(&words).is_some();
        if !answers && !script::sounds_finished(&words) {
            return;
        }
        tracing::debug!(call_id = %self.call_id, text = %r.text, answers, "the callee's words sound finished: end of turn");
        if let Some(VadEvent::SpeechEnd { start_ms, end_ms }) = self.vad.force_end() {
            self.end_utterance(start_ms, end_ms);
        }
    }

    fn send_stt(&self, cmd: SttCmd) {
        if let Some(w) = &self.stt {
            w.send(cmd);
        }
    }

    fn end_utterance(&mut self, start_ms: u64, end_ms: u64) {
        let Some((_, overlapped, barged)) = self.utt.take() else {
            return;
        };
        self.stats.utterances += 1;
        latency_mark(
            &self.call_id,
            "endpoint",
            self.audio_ms.saturating_sub(end_ms) * 1000,
        );
        self.send_stt(SttCmd::End { start_ms, end_ms });
        // The callee's first words when they speak first ("Hello?") are
        // transcribed, not taken as an answer to a greeting not yet said.
        let before_greeting = self.greeting_held;
        self.pending.push_back(UttMeta {
            overlap_only: (overlapped && !barged) || before_greeting,
        });
        if before_greeting {
            // Greet at the end of their turn, without waiting for the recognizer.
            self.greet();
        }
    }

    fn on_frame(&mut self, frame: &[i16]) {
        let ev = self.vad.push(frame);
        self.audio_ms += FRAME_MS;
        let energy =
            frame.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / frame.len().max(1) as f64;
        if energy.sqrt() > QUIET_RMS {
            self.loud_until_ms = self.audio_ms;
        }
        // Playback may have ended by now; updates `playing` before barge-in checks.
        self.tick();
        match ev {
            Some(VadEvent::SpeechStart { start_ms }) => {
                let interruptible = self.playing.as_ref().is_some_and(|p| !p.end_call);
                let overlapped = self.playing.is_some();
                if overlapped && !interruptible {
                    // Talking over a closing line: ignored entirely.
                } else {
                    self.utt = Some((start_ms, overlapped, false));
                    self.send_stt(SttCmd::Start);
                    let pre: Vec<i16> = self.preroll.iter().copied().collect();
                    self.send_stt(SttCmd::Audio(pre));
                }
            }
            Some(VadEvent::SpeechEnd { start_ms, end_ms }) if self.utt.is_some() => {
                self.send_stt(SttCmd::Audio(frame.to_vec()));
                self.end_utterance(start_ms, end_ms);
            }
            _ => {}
        }
        if let Some((start_ms, overlapped, barged)) = self.utt {
            if !matches!(ev, Some(VadEvent::SpeechEnd { .. })) {
                self.send_stt(SttCmd::Audio(frame.to_vec()));
            }
            // Barge-in: sustained talk over an interruptible line.
            let voiced_for = self
                .vad
                .last_voiced_ms()
                .unwrap_or(start_ms)
                .saturating_sub(start_ms);
            if !barged
                && self.playing.as_ref().is_some_and(|p| !p.end_call)
                && voiced_for >= self.cfg.barge_in_ms
            {
                self.stats.barge_ins += 1;
                self.events.push_back(EngineEvent::Interrupt);
                self.finish_line(true);
                self.utt = Some((start_ms, overlapped, true));
            }
            // A pause: ask for the words so far (once per pause); they may
            // end the turn before the full hangover ([`Self::on_partial`]).
            if let Some(voiced) = self.vad.last_voiced_ms() {
                let quiet_since = voiced.max(self.loud_until_ms);
                if self.audio_ms.saturating_sub(quiet_since) >= self.cfg.quick_endpoint_ms
                    && self.peeked_at != Some(voiced)
                {
                    self.peeked_at = Some(voiced);
                    self.peeks_out += 1;
                    self.send_stt(SttCmd::Peek {
                        voiced_end_ms: voiced,
                    });
                }
            }
            if self.audio_ms.saturating_sub(start_ms) >= self.cfg.max_utterance_ms {
                if let Some(VadEvent::SpeechEnd { start_ms, end_ms }) = self.vad.force_end() {
                    self.end_utterance(start_ms, end_ms);
                }
            }
        }
        self.preroll.extend(frame.iter().copied());
        let keep = (self.cfg.preroll_ms * 8) as usize;
        while self.preroll.len() > keep {
            self.preroll.pop_front();
        }
    }
}

/// One step of a turn, for the turn-latency bench (`cargo xtask bench-turn`):
/// `endpoint` (the VAD decided the callee's turn ended; `took_us`: audio
/// since their last voiced frame), `recognised` (`took_us`: the decoder's
/// finishing pass), `reply_queued` (`took_us`: getting the line's audio,
/// cached or synthesised). Debug level, target `voxline_latency`; `unix_us`
/// is the wall clock, comparable with the bench's packet times.
fn latency_mark(call_id: &str, stage: &'static str, took_us: u64) {
    if tracing::enabled!(target: "voxline_latency", tracing::Level::DEBUG) {
        let unix_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        tracing::debug!(target: "voxline_latency", call_id, stage, took_us, unix_us, "latency mark");
    }
}

impl Engine for LocalEngine {
    async fn send_audio(&mut self, frame: &[i16]) -> Result<(), EngineError> {
        if self.closed {
            return Err(EngineError::Disconnected("engine closed".into()));
        }
        if !self.waiting_for_answer {
            self.on_frame(frame);
        }
        Ok(())
    }

    /// Cancel-safe: it only awaits the recognizer's channel and a timer.
    async fn next_event(&mut self) -> Result<EngineEvent, EngineError> {
        loop {
            if let Some(e) = self.try_event() {
                return Ok(e);
            }
            if self.closed {
                return Err(EngineError::Disconnected("engine closed".into()));
            }
            if self.waiting_for_answer {
                // Nothing happens before the answer; the call task drops this
                // future when it tells us (cancel-safe).
                return std::future::pending().await;
            }
            let wait = match self.next_deadline_ms() {
                Some(ms) => Duration::from_millis(ms.saturating_sub(self.now_ms()).max(1)),
                None => Duration::from_secs(3600),
            };
            tokio::select! {
                r = self.stt_rx.recv() => match r {
                    Some(r) => self.on_stt(r),
                    None => return Err(EngineError::Unavailable("recognizer thread ended".into())),
                },
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    fn played(&mut self, played_ms: u64) {
        self.played_ms = self.played_ms.max(played_ms);
    }

    fn answered(&mut self) {
        if self.waiting_for_answer {
            self.start_dialog();
        }
    }

    /// Keys the callee pressed: matched against the script's key answers
    /// (the bridge puts them in the transcript).
    async fn keypad(&mut self, digits: &str) -> Result<(), EngineError> {
        if self.closed {
            return Err(EngineError::Disconnected("engine closed".into()));
        }
        if self.waiting_for_answer {
            return Ok(());
        }
        tracing::debug!(call_id = %self.call_id, %digits, "keys pressed");
        self.last_user_text = Some(super::dtmf_text(digits));
        self.last_activity_ms = self.last_activity_ms.max(self.now_ms());
        if self.greeting_held {
            // The callee spoke first, with keys: greet.
            self.greet();
            return Ok(());
        }
        if let Some(s) = self.dialog.on_keys(digits) {
            self.say(s);
        }
        Ok(())
    }

    async fn close(&mut self) {
        self.closed = true;
        self.stt = None; // closes the command channel: the decoder thread exits
        self.events.clear();
    }
}

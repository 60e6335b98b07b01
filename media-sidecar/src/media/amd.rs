//! Answering-machine detection (AMD, issue 18), sans-IO: fed the callee's
//! 8 kHz PCM in 20 ms frames from the answer on, with the time since the
//! answer, it says who answered ([`AnsweredBy`]) within a bounded time, and
//! then (for `leave_message`) when the machine is ready to record.
//!
//! How it decides, from the cadence of what it hears (the classic rules of
//! telephone AMD, as in Asterisk's `AMD()`, tuned on the bench's greetings):
//! - a person answers with a short "Hello?" (or "Yes, hello, who is this?")
//!   and then waits: speech shorter than [`AmdConfig::greeting_max`]
//!   followed by [`AmdConfig::after_greeting_silence`] is `human`;
//! - a machine plays a long continuous greeting ("Hi, you've reached ...,
//!   please leave a message after the tone"): speech that runs past
//!   `greeting_max` without such a pause is `machine`;
//! - a beep (a steady tone, any frequency in 350-3000 Hz, held at least
//!   [`AmdConfig::beep_min`]) is a machine whatever came before;
//! - nothing decided by [`AmdConfig::max_decision`] (silence, or speech that
//!   starts too late) is `unknown`: the call goes on as if a person answered.
//!
//! Speech is energy above an adaptive noise floor (line noise and comfort
//! noise raise the floor, not the speech count), so the detector needs no
//! speech library and runs in every build (the earshot VAD in
//! `engine/local/vad.rs` belongs to the `local-engine` feature, and gates
//! tones out on purpose, where AMD wants to hear them). A tone is told from a
//! vowel by a second-order linear predictor: a sinusoid is predicted almost
//! exactly from its last two samples (the residual is the noise), a voice
//! never is, and the tone's frequency (from the predictor) must hold still.

use std::time::Duration;

use voxline_shared::sidecar_link::AnsweredBy;

/// Samples of one frame (20 ms at 8 kHz).
const FRAME: usize = 160;
const FRAME_MS: u64 = 20;
/// The window the tone test looks at (40 ms).
const TONE_WINDOW: usize = 320;
/// Residual energy fraction of the 2nd-order predictor below which a window
/// is a pure tone (about 20 dB of prediction gain; speech manages 3-10 dB).
const TONE_RESIDUAL: f64 = 0.01;
/// How far a beep's frequency may drift between frames, in Hz.
const TONE_DRIFT_HZ: f64 = 30.0;
/// Beeps are in this band (voicemail beeps are 400-2100 Hz; a tone below
/// this could be a hum, above it is out of the telephone band).
const TONE_BAND_HZ: (f64, f64) = (350.0, 3000.0);
/// RMS below which nothing is speech, whatever the floor (-50 dBFS).
const MIN_SPEECH_RMS: f64 = 100.0;
/// Speech must be this far above the noise floor (in amplitude: 10 dB).
const SPEECH_OVER_FLOOR: f64 = 3.16;
/// The noise floor is the quietest frame of this many (1 s): speech always
/// has a pause or a closure within a second, line noise never dips below
/// itself.
const FLOOR_FRAMES: usize = 50;
/// The floor never counts above this (-36 dBFS; line noise is quieter), so
/// speech with no pause in the window (a greeting from the first frame) is
/// still speech: it is then what is 10 dB above this.
const FLOOR_CAP_RMS: f64 = 500.0;
/// Voiced frames in a row that start speech (a click is not a word).
const ONSET_FRAMES: u32 = 2;

/// What the detector is configured with. `Default` is what calls use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AmdConfig {
    /// Decide by this long after the answer (`unknown` when it cannot).
    pub max_decision: Duration,
    /// Speech running longer than this without a pause is a greeting.
    pub greeting_max: Duration,
    /// Silence after short speech that makes it a person waiting.
    pub after_greeting_silence: Duration,
    /// A steady tone held this long is a beep.
    pub beep_min: Duration,
    /// `leave_message` without a beep: silence after the greeting that says
    /// the machine is recording.
    pub message_silence: Duration,
    /// `leave_message`: speak after this long from the decision whatever
    /// was heard (a greeting that never ends).
    pub message_wait_max: Duration,
}

impl Default for AmdConfig {
    fn default() -> Self {
        AmdConfig {
            max_decision: Duration::from_millis(4000),
            greeting_max: Duration::from_millis(2500),
            after_greeting_silence: Duration::from_millis(800),
            beep_min: Duration::from_millis(120),
            message_silence: Duration::from_millis(1500),
            message_wait_max: Duration::from_secs(30),
        }
    }
}

/// Which cue decided (logs and the bench).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmdCue {
    /// Short speech, then silence.
    ShortGreeting,
    /// Speech past `greeting_max`.
    LongGreeting,
    Beep,
    /// `max_decision` passed.
    Timeout,
}

/// The verdict, once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AmdDecision {
    pub answered_by: AnsweredBy,
    /// Time since the answer when it was decided.
    pub decision_ms: u64,
    pub cue: AmdCue,
}

/// What ended the wait for the machine to record (`leave_message`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordingCue {
    /// The beep ended.
    BeepEnded,
    /// The greeting ended and `message_silence` passed.
    Silence,
    /// `message_wait_max` passed.
    Timeout,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmdEvent {
    Decided(AmdDecision),
    /// After a `machine` decision: the machine records now (speak).
    ReadyForMessage {
        at_ms: u64,
        cue: RecordingCue,
    },
}

/// One frame's analysis.
#[derive(Debug, Clone, Copy, PartialEq)]
struct FrameClass {
    voiced: bool,
    /// The frequency of a steady tone heard in the last 40 ms.
    tone_hz: Option<f64>,
}

/// The detector of one call.
#[derive(Debug, Clone)]
pub struct AmdDetector {
    cfg: AmdConfig,
    /// The last [`TONE_WINDOW`] samples.
    recent: Vec<i16>,
    /// RMS of the last [`FLOOR_FRAMES`] frames.
    levels: std::collections::VecDeque<f64>,
    /// Consecutive voiced frames (onset).
    voiced_run: u32,
    /// Start and last voiced frame's end of the current utterance (ms since the answer).
    speech_start: Option<u64>,
    last_voice_end: u64,
    /// The current tone: its start (ms since the answer) and frequency.
    tone: Option<(u64, f64)>,
    /// A beep was heard (held `beep_min`) and has not ended yet.
    beep_on: bool,
    decision: Option<AmdDecision>,
    ready: bool,
    /// Time since the answer (end of the last frame, or the last timeout).
    now_ms: u64,
}

impl AmdDetector {
    pub fn new(cfg: AmdConfig) -> Self {
        AmdDetector {
            cfg,
            recent: Vec::with_capacity(TONE_WINDOW + FRAME),
            levels: std::collections::VecDeque::with_capacity(FLOOR_FRAMES + 1),
            voiced_run: 0,
            speech_start: None,
            last_voice_end: 0,
            tone: None,
            beep_on: false,
            decision: None,
            ready: false,
            now_ms: 0,
        }
    }

    pub fn decision(&self) -> Option<AmdDecision> {
        self.decision
    }

    /// Decided and (for a machine) done waiting for its beep: nothing more
    /// will come out.
    pub fn is_done(&self) -> bool {
        match self.decision {
            None => false,
            Some(d) => d.answered_by != AnsweredBy::Machine || self.ready,
        }
    }

    /// A frame heard from the callee, ending `at` after the answer (frames
    /// are 20 ms; a shorter or longer one is analysed as it is).
    pub fn push(&mut self, at: Duration, frame: &[i16]) -> Option<AmdEvent> {
        if self.is_done() {
            return None;
        }
        let at_ms = ms(at).max(self.now_ms);
        self.now_ms = at_ms;
        let class = self.classify(frame);
        self.track(at_ms, class);
        self.decide(at_ms)
    }

    /// No frame came (RTP stopped): the time bounds still hold.
    pub fn handle_timeout(&mut self, at: Duration) -> Option<AmdEvent> {
        if self.is_done() {
            return None;
        }
        self.now_ms = ms(at).max(self.now_ms);
        self.decide(self.now_ms)
    }

    /// When [`Self::handle_timeout`] is next due (since the answer).
    pub fn poll_timeout(&self) -> Option<Duration> {
        if self.is_done() {
            return None;
        }
        let due = match self.decision {
            None => ms(self.cfg.max_decision),
            Some(d) => {
                let cap = d.decision_ms.saturating_add(ms(self.cfg.message_wait_max));
                let silence = self.last_voice_end.max(d.decision_ms) + ms(self.cfg.message_silence);
                cap.min(silence)
            }
        };
        // Never in the past: a beep still on when frames stop waits a frame.
        Some(Duration::from_millis(due.max(self.now_ms + FRAME_MS)))
    }

    fn classify(&mut self, frame: &[i16]) -> FrameClass {
        let n = frame.len().max(1) as f64;
        let rms = (frame.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / n).sqrt();
        self.recent.extend_from_slice(frame);
        if self.recent.len() > TONE_WINDOW {
            self.recent.drain(..self.recent.len() - TONE_WINDOW);
        }
        let tone_hz = (rms > MIN_SPEECH_RMS)
            .then(|| steady_tone_hz(&self.recent))
            .flatten();
        self.levels.push_back(rms);
        if self.levels.len() > FLOOR_FRAMES {
            self.levels.pop_front();
        }
        let floor = self.levels.iter().copied().fold(FLOOR_CAP_RMS, f64::min);
        let voiced = rms > MIN_SPEECH_RMS.max(floor * SPEECH_OVER_FLOOR);
        FrameClass { voiced, tone_hz }
    }

    fn track(&mut self, at_ms: u64, class: FrameClass) {
        // A tone: steady frequency frame after frame.
        match (class.tone_hz, self.tone) {
            (Some(f), Some((start, f0))) if (f - f0).abs() <= TONE_DRIFT_HZ => {
                self.tone = Some((start, f0));
                if at_ms - start >= ms(self.cfg.beep_min) {
                    self.beep_on = true;
                }
            }
            (Some(f), _) => self.tone = Some((at_ms.saturating_sub(FRAME_MS), f)),
            (None, _) => self.tone = None,
        }
        if self.tone.is_some() {
            // A tone is not speech, and resets the greeting's count.
            self.voiced_run = 0;
            return;
        }
        if class.voiced {
            self.voiced_run += 1;
            if self.voiced_run >= ONSET_FRAMES && self.speech_start.is_none() {
                self.speech_start = Some(at_ms - u64::from(self.voiced_run) * FRAME_MS);
            }
            if self.speech_start.is_some() {
                self.last_voice_end = at_ms;
            }
        } else {
            self.voiced_run = 0;
        }
    }

    fn decide(&mut self, at_ms: u64) -> Option<AmdEvent> {
        let beep_ended = self.beep_on && self.tone.is_none();
        if beep_ended {
            self.beep_on = false;
        }
        match self.decision {
            None => {
                let verdict = if self.beep_on || beep_ended {
                    Some((AnsweredBy::Machine, AmdCue::Beep))
                } else if let Some(start) = self.speech_start {
                    let silence = at_ms.saturating_sub(self.last_voice_end);
                    if self.last_voice_end - start >= ms(self.cfg.greeting_max) {
                        Some((AnsweredBy::Machine, AmdCue::LongGreeting))
                    } else if silence >= ms(self.cfg.after_greeting_silence) {
                        Some((AnsweredBy::Human, AmdCue::ShortGreeting))
                    } else {
                        None
                    }
                } else {
                    None
                };
                let verdict = verdict.or_else(|| {
                    (at_ms >= ms(self.cfg.max_decision))
                        .then_some((AnsweredBy::Unknown, AmdCue::Timeout))
                });
                let (answered_by, cue) = verdict?;
                let d = AmdDecision {
                    answered_by,
                    decision_ms: at_ms,
                    cue,
                };
                self.decision = Some(d);
                if beep_ended {
                    // Decided on a beep that has already ended: it records.
                    self.ready = true;
                }
                Some(AmdEvent::Decided(d))
            }
            Some(d) => {
                // A machine: wait for its beep to end, or the greeting's end.
                let cue = if beep_ended {
                    RecordingCue::BeepEnded
                } else if !self.beep_on
                    && self.tone.is_none()
                    && at_ms.saturating_sub(self.last_voice_end.max(d.decision_ms))
                        >= ms(self.cfg.message_silence)
                    && self.voiced_run == 0
                {
                    RecordingCue::Silence
                } else if at_ms.saturating_sub(d.decision_ms) >= ms(self.cfg.message_wait_max) {
                    RecordingCue::Timeout
                } else {
                    return None;
                };
                self.ready = true;
                Some(AmdEvent::ReadyForMessage { at_ms, cue })
            }
        }
    }
}

/// The frequency of `x` when it is one steady sinusoid in the telephone
/// band, from a 2nd-order linear predictor (covariance method, exact on a
/// sinusoid whatever the window's edges): a
/// sinusoid at `w` obeys `x[n] = 2cos(w) x[n-1] - x[n-2]`, so its residual is
/// near zero and `cos(w)` is the first coefficient over two.
fn steady_tone_hz(x: &[i16]) -> Option<f64> {
    if x.len() < TONE_WINDOW {
        return None;
    }
    // c(i, j) = sum over n of x[n-i] x[n-j], n = 2..len.
    let c = |i: usize, j: usize| -> f64 {
        (2..x.len())
            .map(|n| f64::from(x[n - i]) * f64::from(x[n - j]))
            .sum()
    };
    let (c00, c01, c02, c11, c12, c22) = (c(0, 0), c(0, 1), c(0, 2), c(1, 1), c(1, 2), c(2, 2));
    let det = c11 * c22 - c12 * c12;
    if c00 <= 0.0 || det <= 1e-9 * c11 * c22 {
        return None;
    }
    let a1 = (c01 * c22 - c02 * c12) / det;
    let a2 = (c11 * c02 - c12 * c01) / det;
    let residual = (c00 - a1 * c01 - a2 * c02) / c00;
    if residual > TONE_RESIDUAL || a2 >= 0.0 {
        return None;
    }
    let c = (a1 / (2.0 * (-a2).sqrt())).clamp(-1.0, 1.0);
    let hz = c.acos() * 8000.0 / (2.0 * std::f64::consts::PI);
    (TONE_BAND_HZ.0..=TONE_BAND_HZ.1)
        .contains(&hz)
        .then_some(hz)
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;

//! Voice activity detection on 8 kHz call audio with `earshot` (pure Rust,
//! its small network is compiled in).
//!
//! Why earshot and not `webrtc-vad`: webrtc-vad's GMM flags stationary tones
//! (ringback, DTMF, some hold music) as speech; earshot does not (see the
//! tests below). It wants 16 kHz audio in 256-sample (16 ms) frames, so each
//! 20 ms / 160-sample input frame is interpolated to 320 samples with a real
//! low-pass ([`WidebandUpsampler`]; the network should see telephone speech, not
//! sample-repeat images) and fed through a 256-sample re-framing buffer. A
//! frame's score is the max over the earshot frames completed inside it.
//!
//! Measured here, earshot alone DOES score ringback (440+480 Hz) and DTMF
//! above 0.5 on 8 kHz audio, whichever 2x upsampler is used (the tests below
//! failed without the gate). So a tone gate runs first: Goertzel energies at
//! the call-progress and DTMF frequencies over the last 40 ms; when they hold
//! most of the frame's energy, the frame is a tone, not voice. Speech spreads
//! its energy over many harmonics and formants and is not gated (tested).
//!
//! On top of the per-frame score sits a small state machine on the 20 ms grid:
//! speech starts after `onset_ms` of consecutive voiced frames (its start is
//! back-dated to the first of them) and ends after `hangover_ms` without a
//! voiced frame (its end is the last voiced frame, not the hangover's end).

use earshot::Detector;

use crate::media::resample::WidebandUpsampler;

const FRAME_MS: u64 = 20;

/// Call-progress tones (NA 350/440/480/620, EU 425, UK 400/450, SIT
/// 950/1400/1800) and the DTMF rows/columns.
const TONES_HZ: [f64; 20] = [
    350.0, 400.0, 425.0, 440.0, 450.0, 480.0, 620.0, 950.0, 1400.0, 1800.0, 697.0, 770.0, 852.0,
    941.0, 1209.0, 1336.0, 1477.0, 1633.0, 1000.0, 2100.0,
];
/// Fraction of energy at those frequencies above which a frame is a tone.
const TONE_FRACTION: f64 = 0.6;
const GATE_WINDOW: usize = 320; // 40 ms at 8 kHz
/// earshot's scores lag (it keeps ~context frames), so frames up to this long
/// after a tone are still not voice (also covers gaps between DTMF digits).
const GATE_HOLD_MS: u64 = 200;

/// Fraction of `x`'s energy found at [`TONES_HZ`] (Goertzel, Hann window).
pub fn tone_fraction(x: &[i16]) -> f64 {
    let n = x.len();
    if n == 0 {
        return 0.0;
    }
    let w: Vec<f64> = (0..n)
        .map(|i| {
            let h = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / n as f64).cos();
            x[i] as f64 * h
        })
        .collect();
    let energy: f64 = w.iter().map(|v| v * v).sum();
    if energy < 1e3 * n as f64 / 4.0 {
        return 0.0; // near silence: leave it to the detector
    }
    let mut tonal = 0.0;
    for f in TONES_HZ {
        let k = 2.0 * (2.0 * std::f64::consts::PI * f / 8000.0).cos();
        let (mut s1, mut s2) = (0.0f64, 0.0f64);
        for v in &w {
            let s0 = v + k * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        let p = s1 * s1 + s2 * s2 - k * s1 * s2;
        // A windowed sinusoid's energy appears as |X|^2 * 2 / (n * sum(h^2)/n)
        tonal += 2.0 * p / (n as f64 * 0.375);
    }
    tonal / energy
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VadConfig {
    /// earshot score at or above which a frame is voiced (0..1).
    pub threshold: f32,
    /// Consecutive voiced time needed to declare speech.
    pub onset_ms: u64,
    /// Unvoiced time that ends speech (end of turn).
    pub hangover_ms: u64,
}

impl Default for VadConfig {
    fn default() -> Self {
        VadConfig {
            threshold: 0.5,
            onset_ms: 60,
            hangover_ms: 700,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VadEvent {
    /// Speech began at `start_ms` (stream time: 20 ms per frame pushed).
    SpeechStart { start_ms: u64 },
    /// Speech ended: voiced from `start_ms` to `end_ms`.
    SpeechEnd { start_ms: u64, end_ms: u64 },
}

enum State {
    Silence {
        voiced_run: u64,
    },
    Speech {
        start_ms: u64,
        last_voiced_end_ms: u64,
    },
}

pub struct Vad {
    cfg: VadConfig,
    det: Box<Detector>,
    interp: WidebandUpsampler,
    up: Vec<i16>,
    pending: Vec<i16>,
    /// The last 40 ms at 8 kHz, for the tone gate.
    recent: Vec<i16>,
    /// Stream time of the last tonal frame's end.
    last_tone_ms: Option<u64>,
    /// Stream time of the end of the last frame pushed.
    now_ms: u64,
    state: State,
    last_score: f32,
}

impl Vad {
    pub fn new(cfg: VadConfig) -> Self {
        Vad {
            cfg,
            det: Detector::default_boxed(),
            interp: WidebandUpsampler::default(),
            up: Vec::with_capacity(320),
            pending: Vec::with_capacity(512),
            recent: Vec::with_capacity(GATE_WINDOW + 160),
            last_tone_ms: None,
            now_ms: 0,
            state: State::Silence { voiced_run: 0 },
            last_score: 0.0,
        }
    }

    /// Scores one frame (any length; 160 samples = 20 ms expected) and advances
    /// the state machine by 20 ms.
    pub fn push(&mut self, frame: &[i16]) -> Option<VadEvent> {
        self.up.clear();
        self.interp.process(frame, &mut self.up);
        self.pending.extend_from_slice(&self.up);
        let mut score: Option<f32> = None;
        while self.pending.len() >= 256 {
            let s = self.det.predict_i16(&self.pending[..256]);
            self.pending.drain(..256);
            score = Some(score.map_or(s, |m: f32| m.max(s)));
        }
        let mut score = score.unwrap_or(self.last_score);
        self.recent.extend_from_slice(frame);
        if self.recent.len() > GATE_WINDOW {
            self.recent.drain(..self.recent.len() - GATE_WINDOW);
        }
        if tone_fraction(&self.recent) > TONE_FRACTION {
            self.last_tone_ms = Some(self.now_ms + FRAME_MS);
        }
        if self
            .last_tone_ms
            .is_some_and(|t| self.now_ms + FRAME_MS <= t + GATE_HOLD_MS)
        {
            score = 0.0;
        }
        self.last_score = score;
        self.now_ms += FRAME_MS;
        let voiced = score >= self.cfg.threshold;
        match &mut self.state {
            State::Silence { voiced_run } => {
                if voiced {
                    *voiced_run += FRAME_MS;
                    if *voiced_run >= self.cfg.onset_ms {
                        let start_ms = self.now_ms - *voiced_run;
                        self.state = State::Speech {
                            start_ms,
                            last_voiced_end_ms: self.now_ms,
                        };
                        return Some(VadEvent::SpeechStart { start_ms });
                    }
                } else {
                    *voiced_run = 0;
                }
                None
            }
            State::Speech {
                start_ms,
                last_voiced_end_ms,
            } => {
                if voiced {
                    *last_voiced_end_ms = self.now_ms;
                    None
                } else if self.now_ms - *last_voiced_end_ms >= self.cfg.hangover_ms {
                    let ev = VadEvent::SpeechEnd {
                        start_ms: *start_ms,
                        end_ms: *last_voiced_end_ms,
                    };
                    self.state = State::Silence { voiced_run: 0 };
                    Some(ev)
                } else {
                    None
                }
            }
        }
    }

    /// Forces the end of a speech segment now (max utterance length reached).
    pub fn force_end(&mut self) -> Option<VadEvent> {
        match self.state {
            State::Speech {
                start_ms,
                last_voiced_end_ms,
            } => {
                self.state = State::Silence { voiced_run: 0 };
                Some(VadEvent::SpeechEnd {
                    start_ms,
                    end_ms: last_voiced_end_ms,
                })
            }
            State::Silence { .. } => None,
        }
    }

    pub fn in_speech(&self) -> bool {
        matches!(self.state, State::Speech { .. })
    }

    /// Start of the current speech segment, if any.
    pub fn speech_start(&self) -> Option<u64> {
        match self.state {
            State::Speech { start_ms, .. } => Some(start_ms),
            State::Silence { .. } => None,
        }
    }

    /// Last voiced time of the current segment (== now while voiced).
    pub fn last_voiced_ms(&self) -> Option<u64> {
        match self.state {
            State::Speech {
                last_voiced_end_ms, ..
            } => Some(last_voiced_end_ms),
            State::Silence { .. } => None,
        }
    }

    /// Stream time (ms) after the last frame pushed.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    pub fn last_score(&self) -> f32 {
        self.last_score
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::tts::{synthesize, Voice};
    use super::*;

    fn tones(freqs: &[f64], ms: u64, amp: f64, t0: &mut u64) -> Vec<i16> {
        let n = (ms * 8) as usize;
        let out = (0..n)
            .map(|i| {
                let t = (*t0 as usize + i) as f64 / 8000.0;
                let v: f64 = freqs
                    .iter()
                    .map(|f| (2.0 * std::f64::consts::PI * f * t).sin())
                    .sum();
                (amp * v / freqs.len() as f64) as i16
            })
            .collect();
        *t0 += n as u64;
        out
    }

    /// North American ringback: 440+480 Hz, 2 s on / 4 s off, for `cycles` cycles.
    pub fn ringback(cycles: usize) -> Vec<i16> {
        let mut t = 0;
        let mut out = Vec::new();
        for _ in 0..cycles {
            out.extend(tones(&[440.0, 480.0], 2000, 8000.0, &mut t));
            out.extend(vec![0; 4 * 8000]);
        }
        out
    }

    /// DTMF digits: `tone_ms` on / `gap_ms` off each, loud (as phones send them).
    pub fn dtmf(digits: &str, tone_ms: u64, gap_ms: u64) -> Vec<i16> {
        let mut t = 0;
        let mut out = Vec::new();
        for d in digits.chars() {
            let (r, c) = match d {
                '1' => (697.0, 1209.0),
                '2' => (697.0, 1336.0),
                '3' => (697.0, 1477.0),
                '4' => (770.0, 1209.0),
                '5' => (770.0, 1336.0),
                '6' => (770.0, 1477.0),
                '7' => (852.0, 1209.0),
                '8' => (852.0, 1336.0),
                '9' => (852.0, 1477.0),
                '*' => (941.0, 1209.0),
                '0' => (941.0, 1336.0),
                _ => (941.0, 1477.0),
            };
            out.extend(tones(&[r, c], tone_ms, 16000.0, &mut t));
            out.extend(vec![0; (gap_ms * 8) as usize]);
        }
        out
    }

    pub fn run(vad: &mut Vad, audio: &[i16]) -> (Vec<VadEvent>, u64) {
        let mut evs = Vec::new();
        let mut voiced_frames = 0;
        for f in audio.chunks(160) {
            if let Some(e) = vad.push(f) {
                evs.push(e);
            }
            if vad.last_score() >= vad.cfg.threshold {
                voiced_frames += 1;
            }
        }
        for _ in 0..100 {
            if let Some(e) = vad.push(&[0; 160]) {
                evs.push(e);
            }
        }
        (evs, voiced_frames)
    }

    #[test]
    fn tone_gate_separates_tones_from_speech() {
        let speech = synthesize(
            "Yes, I can make it tomorrow at ten. No problem at all.",
            Voice::Slt,
        )
        .unwrap();
        let fr: Vec<f64> = speech
            .chunks_exact(GATE_WINDOW)
            .map(tone_fraction)
            .collect();
        let gated = fr.iter().filter(|f| **f > TONE_FRACTION).count();
        eprintln!(
            "speech windows gated: {gated}/{} (max fraction {:.2})",
            fr.len(),
            fr.iter().cloned().fold(0.0, f64::max)
        );
        assert!(gated * 20 <= fr.len(), "too much speech gated");
        let rb = ringback(1);
        assert!(tone_fraction(&rb[800..800 + GATE_WINDOW]) > 0.9);
        let d = dtmf("5", 200, 0);
        assert!(tone_fraction(&d[400..400 + GATE_WINDOW]) > 0.9);
    }

    #[test]
    fn ringback_is_not_speech() {
        let mut vad = Vad::new(VadConfig::default());
        let (evs, voiced) = run(&mut vad, &ringback(3));
        assert!(
            evs.is_empty(),
            "ringback flagged as speech: {evs:?} ({voiced} voiced frames)"
        );
    }

    #[test]
    fn dtmf_is_not_speech() {
        for (tone, gap) in [(100, 100), (250, 80), (1000, 200)] {
            let mut vad = Vad::new(VadConfig::default());
            let (evs, voiced) = run(&mut vad, &dtmf("1234567890*#", tone, gap));
            assert!(
                evs.is_empty(),
                "DTMF {tone}/{gap} ms flagged as speech: {evs:?} ({voiced} voiced frames)"
            );
        }
    }

    #[test]
    fn silence_and_hiss_are_not_speech() {
        let mut seed = 7u32;
        let hiss: Vec<i16> = (0..8000 * 5)
            .map(|_| {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                ((seed >> 16) as i32 % 200 - 100) as i16
            })
            .collect();
        let mut vad = Vad::new(VadConfig::default());
        let (evs, _) = run(&mut vad, &hiss);
        assert!(evs.is_empty(), "{evs:?}");
    }

    #[test]
    fn flite_utterance_is_speech_with_plausible_bounds() {
        let speech = synthesize("Yes, I can make it tomorrow at ten.", Voice::Slt).unwrap();
        let lead = 8000; // 1 s of silence first
        let mut audio = vec![0i16; lead];
        audio.extend_from_slice(&speech);
        let mut vad = Vad::new(VadConfig::default());
        let (evs, _) = run(&mut vad, &audio);
        let starts: Vec<_> = evs
            .iter()
            .filter(|e| matches!(e, VadEvent::SpeechStart { .. }))
            .collect();
        assert_eq!(starts.len(), 1, "one utterance expected: {evs:?}");
        let Some(VadEvent::SpeechEnd { start_ms, end_ms }) = evs.last().copied() else {
            panic!("{evs:?}")
        };
        let speech_ms = speech.len() as u64 / 8;
        assert!((900..1400).contains(&start_ms), "start {start_ms}");
        assert!(
            end_ms > 1000 + speech_ms * 6 / 10 && end_ms <= 1000 + speech_ms + 100,
            "end {end_ms} (speech {speech_ms})"
        );
    }
}

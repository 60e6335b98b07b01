//! What a caller waiting in a queue hears (issue 16), sans-IO: hold music
//! generated in code (no audio file, so nothing to license: a slow
//! pentatonic phrase of soft sine tones, each note faded in and out so
//! nothing clicks, looping with a rest), and prompts played over it (the
//! position announcement, the voicemail greeting and beep). 8 kHz PCM in
//! 20 ms frames, pulled by the driver at the media's pace.

use std::collections::VecDeque;
use std::f64::consts::PI;

use crate::media::codec::FRAME_8K;

const RATE: f64 = 8_000.0;

/// The phrase: (frequency in Hz, or 0 for a rest; length in ms).
/// C major pentatonic around middle C: gentle and in a phone's band.
const PHRASE: &[(f64, u32)] = &[
    (523.25, 400),
    (659.25, 400),
    (783.99, 400),
    (659.25, 400),
    (587.33, 400),
    (523.25, 400),
    (440.00, 800),
    (0.0, 400),
    (392.00, 400),
    (523.25, 400),
    (587.33, 400),
    (659.25, 800),
    (0.0, 800),
];

/// The music's peak amplitude (about -20 dBFS: soft, clearly audible).
pub const MUSIC_PEAK: f64 = 3_300.0;

/// Fade-in and fade-out of each note.
const ATTACK_MS: u32 = 30;
const RELEASE_MS: u32 = 120;

/// The longest prompt queued at once (60 s): older audio is not dropped,
/// a prompt past it is cut.
pub const MAX_PROMPT_SAMPLES: usize = 60 * 8_000;

/// Samples in one loop of the phrase.
pub fn phrase_samples() -> usize {
    PHRASE.iter().map(|&(_, ms)| ms as usize * 8).sum()
}

/// The hold music, one sample after another, looping.
#[derive(Debug, Clone, Default)]
pub struct HoldMusic {
    /// Position in the loop, in samples.
    at: usize,
}

impl HoldMusic {
    pub fn new() -> HoldMusic {
        HoldMusic::default()
    }

    fn sample(&self, at: usize) -> i16 {
        let mut start = 0usize;
        for &(hz, ms) in PHRASE {
            let len = ms as usize * 8;
            if at < start + len {
                if hz == 0.0 {
                    return 0;
                }
                let i = at - start;
                let env = envelope(i, len);
                let t = i as f64 / RATE;
                // A fundamental and a soft octave: warmer than a bare sine.
                let v = (2.0 * PI * hz * t).sin() * 0.8 + (4.0 * PI * hz * t).sin() * 0.2;
                return (v * env * MUSIC_PEAK) as i16;
            }
            start += len;
        }
        0
    }

    /// The next 20 ms.
    pub fn next_frame(&mut self) -> Vec<i16> {
        let n = phrase_samples();
        let frame = (0..FRAME_8K)
            .map(|k| self.sample((self.at + k) % n))
            .collect();
        self.at = (self.at + FRAME_8K) % n;
        frame
    }
}

/// 0 at a note's edges, 1 in its middle: a raised-cosine attack and release.
fn envelope(i: usize, len: usize) -> f64 {
    let attack = (ATTACK_MS as usize * 8).min(len / 2).max(1);
    let release = (RELEASE_MS as usize * 8).min(len / 2).max(1);
    let rise = if i < attack {
        0.5 - 0.5 * (PI * i as f64 / attack as f64).cos()
    } else {
        1.0
    };
    let left = len - 1 - i.min(len - 1);
    let fall = if left < release {
        0.5 - 0.5 * (PI * left as f64 / release as f64).cos()
    } else {
        1.0
    };
    rise * fall
}

/// A sine tone of `ms` at `hz`, faded in and out (5 ms), `peak` high.
pub fn tone(hz: f64, ms: u32, peak: f64) -> Vec<i16> {
    let len = ms as usize * 8;
    let fade = 40usize.min(len / 2).max(1);
    (0..len)
        .map(|i| {
            let edge = i.min(len - 1 - i);
            let env = if edge < fade {
                edge as f64 / fade as f64
            } else {
                1.0
            };
            ((2.0 * PI * hz * i as f64 / RATE).sin() * env * peak) as i16
        })
        .collect()
}

fn silence(ms: u32) -> Vec<i16> {
    vec![0; ms as usize * 8]
}

/// The position said without a voice (no local engine's flite): a short
/// chime, then one pip per place in the queue (at most 9), then a pause.
pub fn position_tones(position: u32) -> Vec<i16> {
    let mut pcm = tone(880.0, 120, 6_000.0);
    pcm.extend(silence(250));
    for _ in 0..position.clamp(1, 9) {
        pcm.extend(tone(660.0, 150, 6_000.0));
        pcm.extend(silence(150));
    }
    pcm.extend(silence(350));
    pcm
}

/// The voicemail beep (1 kHz, 400 ms) after a short pause.
pub fn beep() -> Vec<i16> {
    let mut pcm = silence(300);
    pcm.extend(tone(1_000.0, 400, 8_000.0));
    pcm
}

/// The words of the position announcement.
pub fn position_words(position: u32) -> String {
    if position <= 1 {
        "Thank you for waiting. You are next in line.".into()
    } else {
        format!("Thank you for waiting. You are caller number {position} in line.")
    }
}

/// The voicemail greeting's words.
pub const VOICEMAIL_WORDS: &str =
    "Sorry, nobody is available to take your call. Please leave a message after the tone.";

/// What the caller's leg plays while not bridged: prompts first, then the
/// hold music when hold is on, else nothing.
#[derive(Debug, Clone, Default)]
pub struct HoldPlayer {
    music: HoldMusic,
    prompt: VecDeque<i16>,
    hold: bool,
}

impl HoldPlayer {
    pub fn new() -> HoldPlayer {
        HoldPlayer::default()
    }

    /// Hold music on or off (prompts queued play either way).
    pub fn set_hold(&mut self, on: bool) {
        self.hold = on;
    }

    /// Queues `pcm` to play before the music (bounded by
    /// [`MAX_PROMPT_SAMPLES`]).
    pub fn play(&mut self, pcm: &[i16]) {
        let room = MAX_PROMPT_SAMPLES.saturating_sub(self.prompt.len());
        self.prompt.extend(pcm.iter().take(room).copied());
    }

    /// Drops the prompts not played yet.
    pub fn clear(&mut self) {
        self.prompt.clear();
    }

    /// Whether a prompt is still playing.
    pub fn prompting(&self) -> bool {
        !self.prompt.is_empty()
    }

    /// The next 20 ms to send, if anything plays.
    pub fn next_frame(&mut self) -> Option<Vec<i16>> {
        if !self.prompt.is_empty() {
            let n = self.prompt.len().min(FRAME_8K);
            let mut f: Vec<i16> = self.prompt.drain(..n).collect();
            f.resize(FRAME_8K, 0);
            return Some(f);
        }
        self.hold.then(|| self.music.next_frame())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rms(pcm: &[i16]) -> f64 {
        (pcm.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / pcm.len().max(1) as f64).sqrt()
    }

    #[test]
    fn the_music_is_audible_soft_and_never_clips() {
        let mut m = HoldMusic::new();
        let frames: Vec<Vec<i16>> = (0..phrase_samples() / FRAME_8K)
            .map(|_| m.next_frame())
            .collect();
        let all: Vec<i16> = frames.concat();
        let level = rms(&all);
        assert!((700.0..3_000.0).contains(&level), "rms {level}");
        let peak = all.iter().map(|s| s.unsigned_abs()).max().unwrap();
        assert!(f64::from(peak) <= MUSIC_PEAK + 1.0, "peak {peak}");
        // Mostly sound: the rests (1.2 s of the 6.4 s loop) and the notes'
        // fade edges are quiet, nothing else.
        let quiet = frames.iter().filter(|f| rms(f) < 100.0).count();
        assert!(quiet * FRAME_8K <= 1_600 * 8, "{quiet} quiet frames");
        assert!(quiet > 0, "the phrase breathes");
    }

    #[test]
    fn the_music_is_continuous_across_frames_and_notes_and_loops() {
        let mut m = HoldMusic::new();
        let n = phrase_samples();
        let two_loops: Vec<i16> = (0..2 * n / FRAME_8K).flat_map(|_| m.next_frame()).collect();
        // No click: one sample never jumps more than the steepest slope of
        // the highest note at full level (2*pi*f*A/8000, plus its octave).
        let max_step = 2.0 * PI * 783.99 * MUSIC_PEAK * 1.2 / RATE;
        for (i, w) in two_loops.windows(2).enumerate() {
            let step = (f64::from(w[1]) - f64::from(w[0])).abs();
            assert!(step <= max_step + 2.0, "jump {step} at sample {i}");
        }
        // Notes start and end at silence (faded), so the loop joins cleanly.
        assert!(two_loops[0].abs() < 50 && two_loops[n - 1].abs() < 50);
        assert_eq!(two_loops[..n], two_loops[n..], "it loops exactly");
    }

    #[test]
    fn prompts_play_first_then_the_music_and_nothing_once_hold_is_off() {
        let mut p = HoldPlayer::new();
        assert_eq!(p.next_frame(), None, "nothing before hold");
        p.set_hold(true);
        let beeps = position_tones(3);
        p.play(&beeps);
        assert!(p.prompting());
        let mut heard = Vec::new();
        while p.prompting() {
            heard.extend(p.next_frame().unwrap());
        }
        assert_eq!(heard[..beeps.len()], beeps[..]);
        assert!(heard[beeps.len()..].iter().all(|&s| s == 0), "padded");
        let music = p.next_frame().unwrap();
        assert_eq!(music, HoldMusic::new().next_frame());
        p.set_hold(false);
        assert_eq!(p.next_frame(), None);
        p.play(&beep());
        assert!(p.next_frame().is_some(), "a prompt plays without hold");
        p.clear();
        assert_eq!(p.next_frame(), None);
    }

    #[test]
    fn position_tones_count_the_place_and_prompts_are_bounded() {
        let pips = |pcm: &[i16]| {
            // Count rising edges of 20 ms-ish loud stretches at 660 Hz level.
            let loud: Vec<bool> = pcm.chunks(80).map(|c| rms(c) > 1_000.0).collect();
            loud.windows(2).filter(|w| !w[0] && w[1]).count()
        };
        // The chime, then one pip per place.
        assert_eq!(pips(&position_tones(1)), 1);
        assert_eq!(pips(&position_tones(4)), 4);
        assert_eq!(pips(&position_tones(40)), 9);
        let mut p = HoldPlayer::new();
        p.play(&vec![1; MAX_PROMPT_SAMPLES + 5]);
        p.play(&[1; 10]);
        let mut n = 0;
        while p.next_frame().is_some() {
            n += 1;
        }
        assert_eq!(n, MAX_PROMPT_SAMPLES / FRAME_8K);
        assert!(position_words(1).contains("next"));
        assert!(position_words(3).contains("number 3"));
    }
}

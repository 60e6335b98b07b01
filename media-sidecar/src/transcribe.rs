//! Post-call transcription of a recording (issue 16): a bridged human call or
//! a voicemail message had no engine listening, so after it ends its stereo
//! 8 kHz WAV is read back and turned into transcript turns.
//!
//! Per channel, the local engine's VAD ([`Vad`]) cuts the audio into
//! utterances and pocketsphinx with the model's general en-us LM
//! ([`Search::GeneralLm`]: no call script to restrict the words to) decodes
//! each. Left (what the sidecar sent: the person) is `agent`, right (the
//! caller or the person called) is `callee`; a mono file is all `callee`.
//!
//! Blocking and CPU-bound (about real time per channel on one core): run it
//! with `spawn_blocking`. Streaming: memory stays bounded by one utterance
//! ([`MAX_UTTERANCE_MS`]) per channel whatever the file's length, which is
//! itself capped ([`MAX_AUDIO_MS`]). Never panics on a malformed file: it is
//! an error or fewer turns.

use std::path::Path;

use voxline_shared::sidecar_link::{
    CallTranscriptTurn, Role, MAX_TRANSCRIPT_CHARS, MAX_TRANSCRIPT_TURNS, MAX_TRANSCRIPT_TURN_CHARS,
};

use crate::engine::local::stt::{Recognizer, Search, Vocabulary};
use crate::engine::local::vad::{Vad, VadConfig, VadEvent};

/// Audio past this point is not transcribed (2 h: a longer call keeps its
/// first two hours).
pub const MAX_AUDIO_MS: u64 = 2 * 3600 * 1000;
/// An utterance longer than this is cut and decoded in pieces.
pub const MAX_UTTERANCE_MS: u64 = 30_000;
/// Audio before a segment's detected start given to the decoder (the VAD's
/// onset trims the first phone otherwise).
const PRE_ROLL_MS: u64 = 200;
/// And after its last voiced frame.
const POST_ROLL_MS: u64 = 300;
const FRAME: usize = 160; // 20 ms at 8 kHz

/// Why a recording could not be transcribed. `code()` is stable (logs, metrics).
#[derive(Debug, thiserror::Error)]
pub enum TranscribeError {
    #[error("recording unreadable: {0}")]
    Unreadable(String),
    #[error("recording format not supported: {0}")]
    Format(String),
    #[error("recogniser unavailable: {0}")]
    Recogniser(String),
}

impl TranscribeError {
    pub fn code(&self) -> &'static str {
        match self {
            TranscribeError::Unreadable(_) => "unreadable",
            TranscribeError::Format(_) => "format",
            TranscribeError::Recogniser(_) => "recogniser",
        }
    }
}

/// One channel's segmentation: its VAD and the audio kept since
/// `buf_start_ms` (a short tail while silent, the utterance while speaking).
struct Channel {
    role: Role,
    vad: Vad,
    buf: Vec<i16>,
    buf_start_ms: u64,
}

impl Channel {
    fn new(role: Role) -> Self {
        Channel {
            role,
            vad: Vad::new(VadConfig::default()),
            buf: Vec::with_capacity(8000),
            buf_start_ms: 0,
        }
    }

    /// Pushes one 20 ms frame; a finished segment as `(start_ms, end_ms)`.
    fn push(&mut self, frame: &[i16]) -> Option<(u64, u64)> {
        self.buf.extend_from_slice(frame);
        let mut ended = match self.vad.push(frame) {
            Some(VadEvent::SpeechEnd { start_ms, end_ms }) => Some((start_ms, end_ms)),
            _ => None,
        };
        if ended.is_none() {
            if let Some(start) = self.vad.speech_start() {
                if self.vad.now_ms().saturating_sub(start) >= MAX_UTTERANCE_MS {
                    ended = match self.vad.force_end() {
                        Some(VadEvent::SpeechEnd { start_ms, end_ms }) => Some((start_ms, end_ms)),
                        _ => None,
                    };
                }
            }
        }
        if ended.is_none() && !self.vad.in_speech() {
            // Silent: keep only the pre-roll (and the onset frames before a start).
            self.trim_to(self.vad.now_ms().saturating_sub(PRE_ROLL_MS + 200));
        }
        ended
    }

    /// The audio from `from_ms` to `to_ms` (clamped to what is kept).
    fn slice(&self, from_ms: u64, to_ms: u64) -> &[i16] {
        let off = |ms: u64| (ms.saturating_sub(self.buf_start_ms) * 8) as usize;
        let a = off(from_ms).min(self.buf.len());
        let b = off(to_ms).clamp(a, self.buf.len());
        &self.buf[a..b]
    }

    /// Drops the audio before `ms`.
    fn trim_to(&mut self, ms: u64) {
        if ms <= self.buf_start_ms {
            return;
        }
        let n = (((ms - self.buf_start_ms) * 8) as usize).min(self.buf.len());
        self.buf.drain(..n);
        self.buf_start_ms += n as u64 / 8;
    }
}

/// A decoded word sequence without fillers (`<sil>`, `[noise]`, `(2)`
/// variants), capped at [`MAX_TRANSCRIPT_TURN_CHARS`] on a word boundary.
fn clean_text(hyp: &str) -> String {
    let mut out = String::new();
    for w in hyp.split_whitespace() {
        if w.starts_with('<') || w.starts_with('[') || w.starts_with('+') {
            continue;
        }
        let w = w.split('(').next().unwrap_or(w);
        if w.is_empty() {
            continue;
        }
        let extra = w.chars().count() + usize::from(!out.is_empty());
        if out.chars().count() + extra > MAX_TRANSCRIPT_TURN_CHARS {
            break;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(w);
    }
    out
}

/// Transcribes a recording file (see the module docs).
pub fn transcribe_file(path: &Path) -> Result<Vec<CallTranscriptTurn>, TranscribeError> {
    let reader =
        hound::WavReader::open(path).map_err(|e| TranscribeError::Unreadable(e.to_string()))?;
    transcribe_wav(reader)
}

/// Transcribes WAV bytes from any reader.
pub fn transcribe_wav<R: std::io::Read>(
    mut reader: hound::WavReader<R>,
) -> Result<Vec<CallTranscriptTurn>, TranscribeError> {
    let spec = reader.spec();
    if spec.sample_rate != 8000
        || spec.bits_per_sample != 16
        || spec.sample_format != hound::SampleFormat::Int
        || !(1..=2).contains(&spec.channels)
    {
        return Err(TranscribeError::Format(format!(
            "{} Hz, {} bits, {} channels (want 8000 Hz 16-bit mono or stereo)",
            spec.sample_rate, spec.bits_per_sample, spec.channels
        )));
    }
    let stereo = spec.channels == 2;
    let mut channels = if stereo {
        vec![Channel::new(Role::Agent), Channel::new(Role::Callee)]
    } else {
        vec![Channel::new(Role::Callee)]
    };
    // The general LM and full dictionary; the vocabulary is unused by that
    // search but must not be empty.
    let vocab = Vocabulary::build_exact([vec!["hello".to_string()]])
        .map_err(TranscribeError::Recogniser)?;
    let rec = Recognizer::with_args(&vocab, &[], Search::GeneralLm)
        .map_err(TranscribeError::Recogniser)?;

    let mut out = Turns {
        rec,
        turns: Vec::new(),
        chars: 0,
    };
    let max_frames = MAX_AUDIO_MS / 20;
    let mut frames = vec![[0i16; FRAME]; channels.len()];
    let mut samples = reader.samples::<i16>();
    for _ in 0..max_frames {
        // Samples of this frame read on every channel; a truncated or
        // damaged tail ends the audio there.
        let mut filled = FRAME;
        'frame: for i in 0..FRAME {
            for f in frames.iter_mut() {
                match samples.next() {
                    Some(Ok(s)) => f[i] = s,
                    Some(Err(_)) | None => {
                        filled = i;
                        break 'frame;
                    }
                }
            }
        }
        if filled == 0 {
            break;
        }
        for f in frames.iter_mut() {
            f[filled..].fill(0);
        }
        for (ch, f) in channels.iter_mut().zip(&frames) {
            if let Some((s, e)) = ch.push(f) {
                out.decode(ch, s, e);
            }
        }
        if filled < FRAME || out.full() {
            break;
        }
    }
    // Speech running at the end of the file.
    for ch in channels.iter_mut() {
        if let Some(VadEvent::SpeechEnd { start_ms, end_ms }) = ch.vad.force_end() {
            out.decode(ch, start_ms, end_ms);
        }
    }
    let mut turns = out.turns;
    turns.sort_by_key(|t| (t.start_ms, t.role != Role::Agent));
    Ok(turns)
}

/// The decoder and the turns so far, within [`MAX_TRANSCRIPT_TURNS`] and
/// [`MAX_TRANSCRIPT_CHARS`].
struct Turns {
    rec: Recognizer,
    turns: Vec<CallTranscriptTurn>,
    chars: usize,
}

impl Turns {
    fn full(&self) -> bool {
        self.turns.len() >= MAX_TRANSCRIPT_TURNS || self.chars >= MAX_TRANSCRIPT_CHARS
    }

    /// Decodes a channel's segment (with its pre- and post-roll) into a turn.
    fn decode(&mut self, ch: &mut Channel, start_ms: u64, end_ms: u64) {
        let from = start_ms.saturating_sub(PRE_ROLL_MS);
        let audio = ch.slice(from, end_ms + POST_ROLL_MS);
        if !audio.is_empty() && !self.full() {
            self.rec.start();
            for f in audio.chunks(FRAME) {
                self.rec.process_8k(f);
            }
            let text = clean_text(&self.rec.finish());
            let n = text.chars().count();
            if !text.is_empty() && self.chars + n <= MAX_TRANSCRIPT_CHARS {
                self.chars += n;
                self.turns.push(CallTranscriptTurn {
                    role: ch.role,
                    text,
                    start_ms,
                    end_ms,
                });
            }
        }
        ch.trim_to(end_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::local::tts::{synthesize, Voice};

    /// A stereo WAV: each line is (channel 0 = left / 1 = right, at ms, text).
    fn conversation(lines: &[(usize, u64, &str)], total_ms: u64) -> Vec<u8> {
        let n = (total_ms * 8) as usize;
        let mut ch = [vec![0i16; n], vec![0i16; n]];
        for (side, at, text) in lines {
            let voice = if *side == 0 { Voice::Slt } else { Voice::Rms };
            let pcm = synthesize(text, voice).unwrap();
            let at = (*at * 8) as usize;
            for (i, s) in pcm.iter().enumerate() {
                if let Some(d) = ch[*side].get_mut(at + i) {
                    *d = *s;
                }
            }
        }
        let mut out = std::io::Cursor::new(Vec::new());
        let mut w = hound::WavWriter::new(&mut out, crate::media::record::spec()).unwrap();
        for (l, r) in ch[0].iter().zip(&ch[1]) {
            w.write_sample(*l).unwrap();
            w.write_sample(*r).unwrap();
        }
        w.finalize().unwrap();
        out.into_inner()
    }

    fn run(bytes: &[u8]) -> Result<Vec<CallTranscriptTurn>, TranscribeError> {
        transcribe_wav(hound::WavReader::new(std::io::Cursor::new(bytes)).unwrap())
    }

    #[test]
    fn both_channels_come_out_as_sorted_turns_with_their_roles_and_times() {
        let wav = conversation(
            &[
                (1, 500, "Hello, I would like to book a table for tomorrow."),
                (0, 5_000, "Certainly. What time would you like the table?"),
                (1, 10_000, "Seven o'clock in the evening please."),
            ],
            14_000,
        );
        let turns = run(&wav).unwrap();
        for t in &turns {
            eprintln!("{:?} {}-{}: {}", t.role, t.start_ms, t.end_ms, t.text);
        }
        assert!(turns.len() >= 3, "{turns:?}");
        assert!(turns.windows(2).all(|w| w[0].start_ms <= w[1].start_ms));
        assert!(turns.iter().all(|t| t.start_ms < t.end_ms));
        let said = |role: Role, from: u64, to: u64| -> String {
            turns
                .iter()
                .filter(|t| t.role == role && t.start_ms >= from && t.start_ms < to)
                .map(|t| t.text.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        };
        // Right channel: the callee, at its times; left: the person (agent).
        let first = said(Role::Callee, 300, 5_000);
        assert!(
            first.contains("table") || first.contains("tomorrow"),
            "{first:?}"
        );
        let answer = said(Role::Agent, 4_800, 10_000);
        assert!(
            answer.contains("certainly") || answer.contains("time"),
            "{answer:?}"
        );
        let last = said(Role::Callee, 9_800, 14_000);
        assert!(
            last.contains("seven") || last.contains("evening"),
            "{last:?}"
        );
        // Nothing on the left before the person spoke, nothing on the right while they did.
        assert_eq!(said(Role::Agent, 0, 4_800), "");
        assert_eq!(said(Role::Callee, 5_000, 9_800), "");
    }

    #[test]
    fn a_mono_message_is_the_callees_and_odd_files_are_errors_not_panics() {
        let pcm = synthesize("Please call me back about the invoice.", Voice::Rms).unwrap();
        let mut out = std::io::Cursor::new(Vec::new());
        let spec = hound::WavSpec {
            channels: 1,
            ..crate::media::record::spec()
        };
        let mut w = hound::WavWriter::new(&mut out, spec).unwrap();
        for s in std::iter::repeat_n(0, 4000)
            .chain(pcm.iter().copied())
            .chain(std::iter::repeat_n(0, 8000))
        {
            w.write_sample(s).unwrap();
        }
        w.finalize().unwrap();
        let turns = run(out.get_ref()).unwrap();
        assert!(!turns.is_empty());
        assert!(turns.iter().all(|t| t.role == Role::Callee));
        let text: String = turns.iter().map(|t| t.text.clone()).collect();
        assert!(
            text.contains("call") || text.contains("invoice"),
            "{text:?}"
        );

        // Wrong rate: a format error.
        let mut out = std::io::Cursor::new(Vec::new());
        let spec = hound::WavSpec {
            sample_rate: 16000,
            ..crate::media::record::spec()
        };
        let mut w = hound::WavWriter::new(&mut out, spec).unwrap();
        w.write_sample(0i16).unwrap();
        w.write_sample(0i16).unwrap();
        w.finalize().unwrap();
        assert_eq!(run(out.get_ref()).unwrap_err().code(), "format");
        // Not a WAV, and a truncated one.
        let dir = std::env::temp_dir().join(format!("voxline-transcribe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let junk = dir.join("junk.wav");
        std::fs::write(&junk, b"RIFF\x10\0\0\0nonsense").unwrap();
        assert_eq!(transcribe_file(&junk).unwrap_err().code(), "unreadable");
        let wav = conversation(&[(1, 200, "Hello there.")], 3_000);
        let cut = dir.join("cut.wav");
        std::fs::write(&cut, &wav[..wav.len() / 2 + 1]).unwrap();
        // hound reads a declared length past the end as an error: fewer turns, no panic.
        let _ = transcribe_file(&cut);
        std::fs::remove_dir_all(&dir).unwrap();
        // Silence: no turns.
        assert!(run(&conversation(&[], 2_000)).unwrap().is_empty());
    }

    #[test]
    fn text_is_cleaned_and_capped() {
        assert_eq!(clean_text("<s> hello [noise] world(2) </s>"), "hello world");
        let long = "word ".repeat(1000);
        let t = clean_text(&long);
        assert!(t.chars().count() <= MAX_TRANSCRIPT_TURN_CHARS && t.ends_with("word"));
    }
}

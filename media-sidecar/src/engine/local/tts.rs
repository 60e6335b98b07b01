//! Text to speech with flite, linked from Debian's `flite1-dev` (libflite 2.2).
//!
//! Why the library and not the `flite` binary: the FFI surface is four
//! functions (`flite_init`, `register_cmu_us_*`, `flite_text_to_wave`,
//! `delete_wave`), linking is plain `-lflite*` from the system path (no
//! build script, no pkg-config file needed; Debian ships none for flite), and
//! in-process synthesis costs ~2 ms per second of speech for `kal16` with no
//! process spawn or WAV parsing.
//!
//! flite keeps global state (voice list, feature registries) and is not
//! documented as thread-safe, so every call into it holds one process-wide
//! mutex. Synthesis is fast, and results are cached per (voice, text): a
//! campaign's script lines are synthesised once per sidecar, not once per call.
//!
//! Voices: `kal16` (default, male diphone, fastest), `slt` (female), `rms`,
//! `awb` (clustergen voices, ~10x slower but still far faster than real time).
//! Output is converted to 8 kHz with a proper anti-alias filter ([`crate::media::resample::to_8k`]),
//! and starts with its first audible sample: flite leads every utterance with
//! ~250 ms of near-silence, which a caller would hear as the agent's delay
//! (issue 17; [`trim_leading_silence`]).

// FFI to a C library: the one place the sidecar needs unsafe code (the
// workspace denies it everywhere else).
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_short, c_void, CString};
use std::sync::{Arc, Mutex, OnceLock};

#[repr(C)]
struct CstWave {
    kind: *const c_char,
    sample_rate: c_int,
    num_samples: c_int,
    num_channels: c_int,
    samples: *mut c_short,
}

#[link(name = "flite")]
#[link(name = "flite_usenglish")]
#[link(name = "flite_cmulex")]
#[link(name = "flite_cmu_us_kal16")]
#[link(name = "flite_cmu_us_slt")]
#[link(name = "flite_cmu_us_rms")]
#[link(name = "flite_cmu_us_awb")]
extern "C" {
    fn flite_init() -> c_int;
    fn flite_text_to_wave(text: *const c_char, voice: *mut c_void) -> *mut CstWave;
    fn delete_wave(w: *mut CstWave);
    fn register_cmu_us_kal16(voxdir: *const c_char) -> *mut c_void;
    fn register_cmu_us_slt(voxdir: *const c_char) -> *mut c_void;
    fn register_cmu_us_rms(voxdir: *const c_char) -> *mut c_void;
    fn register_cmu_us_awb(voxdir: *const c_char) -> *mut c_void;
}

/// The flite voices we link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Voice {
    Kal16,
    Slt,
    Rms,
    Awb,
}

impl Voice {
    /// `kal16`/`kal`, `slt`, `rms`, `awb` (case-insensitive, `cmu_us_` prefix allowed).
    /// Anything else (e.g. an OpenAI voice name) is `None`: the caller picks the default.
    pub fn parse(s: &str) -> Option<Voice> {
        let s = s.trim().to_ascii_lowercase();
        match s.strip_prefix("cmu_us_").unwrap_or(&s) {
            "kal16" | "kal" => Some(Voice::Kal16),
            "slt" => Some(Voice::Slt),
            "rms" => Some(Voice::Rms),
            "awb" => Some(Voice::Awb),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Voice::Kal16 => "kal16",
            Voice::Slt => "slt",
            Voice::Rms => "rms",
            Voice::Awb => "awb",
        }
    }
}

struct Flite {
    voices: HashMap<Voice, *mut c_void>,
}
// SAFETY: the voice pointers are only dereferenced by flite while FLITE's mutex is held.
unsafe impl Send for Flite {}

fn flite() -> &'static Mutex<Flite> {
    static F: OnceLock<Mutex<Flite>> = OnceLock::new();
    F.get_or_init(|| {
        // SAFETY: called once, before any other flite call.
        unsafe { flite_init() };
        Mutex::new(Flite {
            voices: HashMap::new(),
        })
    })
}

/// Synthesises `text` with `voice`, returning 8 kHz mono PCM16. Blocking
/// (milliseconds to a few hundred ms): call from `spawn_blocking` or a thread.
pub fn synthesize(text: &str, voice: Voice) -> Result<Arc<[i16]>, String> {
    type CacheMap = Mutex<HashMap<(Voice, String), Arc<[i16]>>>;
    static CACHE: OnceLock<CacheMap> = OnceLock::new();
    const CACHE_MAX: usize = 1024;
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let key = (voice, text.to_string());
    if let Some(hit) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Ok(hit.clone());
    }
    let pcm: Arc<[i16]> = synthesize_uncached(text, voice)?.into();
    let mut c = cache.lock().unwrap_or_else(|e| e.into_inner());
    if c.len() >= CACHE_MAX {
        c.clear();
    }
    c.insert(key, pcm.clone());
    Ok(pcm)
}

fn synthesize_uncached(text: &str, voice: Voice) -> Result<Vec<i16>, String> {
    let (rate, raw) = synthesize_native(text, voice)?;
    let mut pcm = crate::media::resample::to_8k(&raw, rate)?;
    trim_leading_silence(&mut pcm);
    Ok(pcm)
}

/// A sample above this magnitude is audible (about -48 dBFS; flite's
/// lead-in stays below it, its speech onsets cross it within a few ms).
const AUDIBLE: u16 = 128;
/// Kept before the first audible sample (8 kHz), so a soft onset is not cut.
const ONSET_KEEP: usize = 80;

/// Drops what comes before the first audible sample (less [`ONSET_KEEP`]).
/// Audio with no audible sample is left as it is.
pub fn trim_leading_silence(pcm: &mut Vec<i16>) {
    if let Some(first) = pcm.iter().position(|s| s.unsigned_abs() > AUDIBLE) {
        pcm.drain(..first.saturating_sub(ONSET_KEEP));
    }
}

/// flite's own output: (sample rate, mono PCM16). Blocking.
pub fn synthesize_native(text: &str, voice: Voice) -> Result<(u32, Vec<i16>), String> {
    let ctext = CString::new(text.replace('\0', " ")).map_err(|e| e.to_string())?;
    let (rate, raw) = {
        let mut f = flite().lock().unwrap_or_else(|e| e.into_inner());
        let v = *f.voices.entry(voice).or_insert_with(|| {
            // SAFETY: flite is initialised; NULL voxdir means "built-in data".
            unsafe {
                match voice {
                    Voice::Kal16 => register_cmu_us_kal16(std::ptr::null()),
                    Voice::Slt => register_cmu_us_slt(std::ptr::null()),
                    Voice::Rms => register_cmu_us_rms(std::ptr::null()),
                    Voice::Awb => register_cmu_us_awb(std::ptr::null()),
                }
            }
        });
        if v.is_null() {
            return Err(format!("flite voice {} failed to load", voice.name()));
        }
        // SAFETY: v is a registered voice, ctext a valid C string; the wave is
        // owned by us and freed with delete_wave below, all under the mutex.
        unsafe {
            let w = flite_text_to_wave(ctext.as_ptr(), v);
            if w.is_null() {
                return Err("flite returned no audio".into());
            }
            let wr = &*w;
            let n = (wr.num_samples.max(0) as usize) * (wr.num_channels.max(1) as usize);
            let samples = if wr.samples.is_null() || n == 0 {
                Vec::new()
            } else {
                let s = std::slice::from_raw_parts(wr.samples, n);
                if wr.num_channels > 1 {
                    s.iter()
                        .step_by(wr.num_channels as usize)
                        .copied()
                        .collect()
                } else {
                    s.to_vec()
                }
            };
            let rate = wr.sample_rate as u32;
            delete_wave(w);
            (rate, samples)
        }
    };
    Ok((rate, raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthesizes_8k_audio_of_plausible_length() {
        for v in [Voice::Kal16, Voice::Slt] {
            let pcm = synthesize("Hello, this is a test of the speech synthesizer.", v).unwrap();
            let secs = pcm.len() as f64 / 8000.0;
            assert!((1.5..6.0).contains(&secs), "{v:?}: {secs} s");
            let peak = pcm.iter().map(|s| s.unsigned_abs()).max().unwrap();
            assert!(peak > 2000, "{v:?}: peak {peak}");
        }
        // Cached: same Arc back.
        let a = synthesize("Cache me.", Voice::Kal16).unwrap();
        let b = synthesize("Cache me.", Voice::Kal16).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
    }

    /// Issue 17: a line starts with its first audible sample, not with
    /// flite's ~250 ms lead-in.
    #[test]
    fn synthesised_lines_start_with_their_first_audible_sample() {
        for v in [Voice::Kal16, Voice::Slt] {
            let pcm = synthesize("Hi, this is Demo Dental calling.", v).unwrap();
            let first = pcm.iter().position(|s| s.unsigned_abs() > AUDIBLE).unwrap();
            assert!(
                first <= ONSET_KEEP,
                "{v:?}: first audible sample at {first}"
            );
        }
        let mut x: Vec<i16> = [vec![0; 1000], vec![50; 500], vec![3000; 10]].concat();
        trim_leading_silence(&mut x);
        assert_eq!(x.len(), ONSET_KEEP + 10);
        assert_eq!(x[..ONSET_KEEP], [50; ONSET_KEEP]);
        let mut quiet = vec![10i16; 300];
        trim_leading_silence(&mut quiet);
        assert_eq!(quiet.len(), 300, "nothing audible: kept as is");
        let mut early = vec![3000i16; 5];
        trim_leading_silence(&mut early);
        assert_eq!(early.len(), 5);
    }

    #[test]
    fn voice_names() {
        assert_eq!(Voice::parse("SLT"), Some(Voice::Slt));
        assert_eq!(Voice::parse("cmu_us_kal16"), Some(Voice::Kal16));
        assert_eq!(Voice::parse("alloy"), None);
    }
}

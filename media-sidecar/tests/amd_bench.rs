//! Answering-machine detection accuracy and decision time (issue 18), for
//! `cargo xtask bench-amd` / `cargo xtask bench` (ignored here: it measures,
//! it asserts nothing about the figures).
//!
//! A labelled set generated on this machine with flite (voices `kal`,
//! `awb`, `rms`, `slt`, each at three speaking rates): machine greetings
//! ("Hi, you've reached ..., please leave a message after the tone") with
//! and without a beep (several frequencies, gaps and lengths), and short
//! human answers ("Hello?", "Yes, hello, who is this?") followed by silence,
//! each after a short lead-in, over white line noise at -70 to -45 dBFS and
//! through G.711 mu-law as on the line. Every sample is fed to the sidecar's
//! [`AmdDetector`] in 20 ms frames; one JSON line per sample goes to
//! `VOXLINE_BENCH_OUT` (label, verdict, cue, decision time, and for a beep
//! how long after its end the machine was judged to record).

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use voxline_media_sidecar::media::amd::{AmdConfig, AmdDetector, AmdEvent};
use voxline_testkit::{mulaw_decode, mulaw_encode, read_wav, resample_to_8k, FLITE};

const MACHINE_TEXTS: [&str; 6] = [
    "Hi, you've reached John Smith. I can't take your call right now, please leave a message after the tone.",
    "Hello, you have reached the voicemail of Doctor Alice Brown at Riverside Dental. Please leave your name and number and we will call you back.",
    "The person you are calling is not available. Please leave a message after the beep.",
    "Hey, it's Mike. Leave a message.",
    "Thank you for calling Acme Plumbing. Our office is now closed. Please leave a message and we will return your call as soon as possible.",
    "You have reached five five five, one two three four. At the tone, please record your message.",
];

const HUMAN_TEXTS: [&str; 6] = [
    "Hello?",
    "Yes, hello, who is this?",
    "Hi, this is Sam.",
    "Hello, yes?",
    "Hello, Smith residence.",
    "Yeah?",
];

const VOICES: [&str; 4] = ["kal", "awb", "rms", "slt"];
/// flite's `duration_stretch`: faster, as is, slower.
const STRETCH: [f64; 3] = [0.85, 1.0, 1.2];
/// Beeps: (Hz, ms).
const BEEPS: [(f64, u64); 4] = [(1000.0, 500), (850.0, 300), (1400.0, 700), (440.0, 400)];
/// White noise RMS (dBFS) over the whole sample, by sample index.
const NOISE_DBFS: [f64; 4] = [-70.0, -60.0, -50.0, -45.0];

fn flite(dir: &std::path::Path, voice: &str, stretch: f64, text: &str) -> Vec<i16> {
    let wav = dir.join(format!("amd-bench-{}.wav", std::process::id()));
    let ok = Command::new(FLITE.require())
        .args(["-voice", voice, "--setf"])
        .arg(format!("duration_stretch={stretch}"))
        .args(["-t", text, "-o"])
        .arg(&wav)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("flite");
    assert!(ok.success(), "flite {voice}");
    let (rate, pcm) = read_wav(&wav).expect("flite's wav");
    let x: Vec<f64> = pcm.into_iter().map(f64::from).collect();
    resample_to_8k(&x, rate)
        .into_iter()
        .map(|v| v.clamp(-32768.0, 32767.0) as i16)
        .collect()
}

fn silence(ms: u64) -> Vec<i16> {
    vec![0; (ms * 8) as usize]
}

fn tone(hz: f64, ms: u64, amp: f64) -> Vec<i16> {
    (0..ms * 8)
        .map(|i| (amp * (2.0 * std::f64::consts::PI * hz * i as f64 / 8000.0).sin()) as i16)
        .collect()
}

/// Adds white noise at `dbfs` (xorshift, seeded) and passes the result
/// through mu-law, as a G.711 line would.
fn line(mut pcm: Vec<i16>, dbfs: f64, seed: u64) -> Vec<i16> {
    let rms = 32768.0 * 10f64.powf(dbfs / 20.0);
    let mut s = seed | 1;
    for v in &mut pcm {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        let u = (s >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
        let n = u * rms * 12f64.sqrt();
        *v = mulaw_decode(mulaw_encode(
            (f64::from(*v) + n).clamp(-32768.0, 32767.0) as i16
        ));
    }
    pcm
}

struct Outcome {
    answered_by: &'static str,
    cue: String,
    decision_ms: u64,
    ready_ms: Option<u64>,
}

fn detect(pcm: &[i16]) -> Outcome {
    let mut det = AmdDetector::new(AmdConfig::default());
    let mut out = Outcome {
        answered_by: "none",
        cue: String::new(),
        decision_ms: 0,
        ready_ms: None,
    };
    for (i, f) in pcm.chunks(160).enumerate() {
        match det.push(Duration::from_millis((i as u64 + 1) * 20), f) {
            Some(AmdEvent::Decided(d)) => {
                out.answered_by = d.answered_by.as_str();
                out.cue = format!("{:?}", d.cue);
                out.decision_ms = d.decision_ms;
            }
            Some(AmdEvent::ReadyForMessage { at_ms, .. }) => out.ready_ms = Some(at_ms),
            None => {}
        }
        if det.is_done() {
            break;
        }
    }
    out
}

#[test]
#[ignore = "a benchmark: cargo xtask bench-amd"]
fn amd_bench() {
    let dir = voxline_testkit::temp_dir("amd-bench");
    let out_path = std::env::var("VOXLINE_BENCH_OUT").ok();
    let mut lines = Vec::new();
    let mut n = 0u64;
    let mut record = |label: &str,
                      kind: &str,
                      text: &str,
                      voice: &str,
                      stretch: f64,
                      noise: f64,
                      pcm: Vec<i16>,
                      beep_end_ms: Option<u64>| {
        let o = detect(&pcm);
        let line = serde_json::json!({
            "label": label, "kind": kind, "text": text, "voice": voice, "stretch": stretch,
            "noise_dbfs": noise, "answered_by": o.answered_by, "cue": o.cue,
            "decision_ms": o.decision_ms,
            "beep_end_ms": beep_end_ms,
            "ready_after_beep_ms": beep_end_ms.zip(o.ready_ms).map(|(b, r)| r as i64 - b as i64),
        });
        println!("{line}");
        lines.push(line.to_string());
    };
    for (t, text) in MACHINE_TEXTS.iter().enumerate() {
        for voice in VOICES {
            for stretch in STRETCH {
                n += 1;
                let greeting = flite(&dir, voice, stretch, text);
                let lead = 100 + (n * 137) % 500;
                let noise = NOISE_DBFS[(n as usize) % NOISE_DBFS.len()];
                // Without a beep: the greeting, then the machine records (silence).
                let plain = [silence(lead), greeting.clone(), silence(5_000)].concat();
                record(
                    "machine",
                    "greeting",
                    text,
                    voice,
                    stretch,
                    noise,
                    line(plain, noise, n),
                    None,
                );
                // With one: after a gap, the beep, then silence.
                let (hz, beep_ms) = BEEPS[(n as usize + t) % BEEPS.len()];
                let gap = 200 + (n * 71) % 600;
                let before = [
                    silence(lead),
                    greeting,
                    silence(gap),
                    tone(hz, beep_ms, 6_000.0),
                ]
                .concat();
                let beep_end = before.len() as u64 / 8;
                let beeped = [before, silence(3_000)].concat();
                record(
                    "machine",
                    "greeting+beep",
                    text,
                    voice,
                    stretch,
                    noise,
                    line(beeped, noise, n + 1_000),
                    Some(beep_end),
                );
            }
        }
    }
    for text in HUMAN_TEXTS {
        for voice in VOICES {
            for stretch in STRETCH {
                n += 1;
                let hello = flite(&dir, voice, stretch, text);
                let lead = 200 + (n * 113) % 700;
                let noise = NOISE_DBFS[(n as usize) % NOISE_DBFS.len()];
                let pcm = [silence(lead), hello, silence(5_000)].concat();
                record(
                    "human",
                    "hello",
                    text,
                    voice,
                    stretch,
                    noise,
                    line(pcm, noise, n),
                    None,
                );
            }
        }
    }
    if let Some(p) = out_path {
        let mut f = std::fs::File::create(&p).expect("VOXLINE_BENCH_OUT");
        for l in &lines {
            writeln!(f, "{l}").unwrap();
        }
    }
}

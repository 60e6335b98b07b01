//! The detector on synthetic signals: tones, speech-like bursts (a voice's
//! harmonics under moving formants, in syllables), silence and line noise.

use super::*;

const RATE: f64 = 8000.0;

fn samples(ms: u64) -> usize {
    (ms * 8) as usize
}

fn silence(ms: u64) -> Vec<i16> {
    vec![0; samples(ms)]
}

/// Deterministic white noise at `rms` (xorshift).
fn noise(ms: u64, rms: f64, seed: u64) -> Vec<i16> {
    let mut s = seed | 1;
    (0..samples(ms))
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let u = (s >> 11) as f64 / (1u64 << 53) as f64; // 0..1
            ((u - 0.5) * rms * 12f64.sqrt()) as i16
        })
        .collect()
}

fn tone(hz: f64, ms: u64, amp: f64) -> Vec<i16> {
    (0..samples(ms))
        .map(|i| (amp * (2.0 * std::f64::consts::PI * hz * i as f64 / RATE).sin()) as i16)
        .collect()
}

/// Speech-like: a gliding pitch (110-190 Hz) with 25 harmonics shaped by
/// two formants that move, in syllables of `syllable_ms` with 60 ms dips.
fn speech(ms: u64, syllable_ms: u64, amp: f64) -> Vec<i16> {
    let n = samples(ms);
    let mut phase = 0.0f64;
    (0..n)
        .map(|i| {
            let t = i as f64 / RATE;
            let f0 = 150.0 + 40.0 * (2.0 * std::f64::consts::PI * 1.3 * t).sin();
            phase += 2.0 * std::f64::consts::PI * f0 / RATE;
            let f1 = 600.0 + 250.0 * (2.0 * std::f64::consts::PI * 3.1 * t).sin();
            let f2 = 1700.0 + 500.0 * (2.0 * std::f64::consts::PI * 2.3 * t).cos();
            let mut v = 0.0;
            for h in 1..=25 {
                let f = f0 * h as f64;
                if f > 3800.0 {
                    break;
                }
                let g = 1.0 / (1.0 + ((f - f1) / 150.0).powi(2))
                    + 0.5 / (1.0 + ((f - f2) / 200.0).powi(2));
                v += g * (phase * h as f64).sin();
            }
            let in_syl = (t * 1000.0) as u64 % syllable_ms;
            let env = if in_syl + 60 >= syllable_ms {
                0.05
            } else {
                1.0
            };
            (amp * env * v / 2.0).clamp(-32000.0, 32000.0) as i16
        })
        .collect()
}

fn mix(a: &[i16], b: &[i16]) -> Vec<i16> {
    a.iter()
        .zip(b.iter().chain(std::iter::repeat(&0)))
        .map(|(&x, &y)| x.saturating_add(y))
        .collect()
}

/// Feeds `audio` in 20 ms frames; every event with the frame's end time.
fn run(cfg: AmdConfig, audio: &[i16]) -> Vec<AmdEvent> {
    let mut d = AmdDetector::new(cfg);
    let mut out = vec![];
    for (i, f) in audio.chunks(160).enumerate() {
        let at = Duration::from_millis((i as u64 + 1) * 20);
        out.extend(d.push(at, f));
    }
    out
}

fn decided(evs: &[AmdEvent]) -> AmdDecision {
    evs.iter()
        .find_map(|e| match e {
            AmdEvent::Decided(d) => Some(*d),
            _ => None,
        })
        .expect("a decision")
}

fn cat(parts: &[Vec<i16>]) -> Vec<i16> {
    parts.concat()
}

#[test]
fn a_short_hello_then_silence_is_a_human() {
    let audio = cat(&[silence(300), speech(500, 250, 6000.0), silence(3000)]);
    let d = decided(&run(AmdConfig::default(), &audio));
    assert_eq!(d.answered_by, AnsweredBy::Human);
    assert_eq!(d.cue, AmdCue::ShortGreeting);
    // Speech ends at ~800 ms (the last syllable's dip may end it 60 ms
    // early); 800 ms of silence later.
    assert!((1500..=1700).contains(&d.decision_ms), "{d:?}");
}

#[test]
fn a_long_continuous_greeting_is_a_machine_within_the_bound() {
    let audio = cat(&[silence(200), speech(6000, 300, 6000.0), silence(1000)]);
    let d = decided(&run(AmdConfig::default(), &audio));
    assert_eq!(d.answered_by, AnsweredBy::Machine);
    assert_eq!(d.cue, AmdCue::LongGreeting);
    assert!((2600..=2800).contains(&d.decision_ms), "{d:?}");
}

#[test]
fn pauses_inside_a_greeting_do_not_make_it_a_person() {
    // Phrases of 900 ms with 400 ms commas: still one greeting.
    let phrase = cat(&[speech(900, 300, 6000.0), silence(400)]);
    let audio = cat(&[phrase.clone(), phrase.clone(), phrase.clone(), phrase]);
    let d = decided(&run(AmdConfig::default(), &audio));
    assert_eq!(
        (d.answered_by, d.cue),
        (AnsweredBy::Machine, AmdCue::LongGreeting)
    );
}

#[test]
fn silence_is_unknown_at_the_bound_with_frames_or_without() {
    let d = decided(&run(AmdConfig::default(), &silence(6000)));
    assert_eq!(
        (d.answered_by, d.cue),
        (AnsweredBy::Unknown, AmdCue::Timeout)
    );
    assert_eq!(d.decision_ms, 4000);

    // RTP stopped: the driver's timer decides.
    let cfg = AmdConfig {
        max_decision: Duration::from_millis(3000),
        ..AmdConfig::default()
    };
    let mut det = AmdDetector::new(cfg);
    assert_eq!(det.poll_timeout(), Some(Duration::from_millis(3000)));
    assert_eq!(det.handle_timeout(Duration::from_millis(2999)), None);
    let ev = det.handle_timeout(Duration::from_millis(3000));
    assert!(
        matches!(
            ev,
            Some(AmdEvent::Decided(AmdDecision {
                answered_by: AnsweredBy::Unknown,
                decision_ms: 3000,
                ..
            }))
        ),
        "{ev:?}"
    );
    assert!(det.is_done());
    assert_eq!(det.poll_timeout(), None);
}

#[test]
fn line_noise_alone_is_not_speech_and_a_hello_over_it_is_heard() {
    let hiss = noise(6000, 300.0, 7);
    let d = decided(&run(AmdConfig::default(), &hiss));
    assert_eq!(d.answered_by, AnsweredBy::Unknown);

    let hello = cat(&[silence(700), speech(600, 300, 5000.0), silence(4700)]);
    let d = decided(&run(AmdConfig::default(), &mix(&hiss, &hello)));
    assert_eq!(d.answered_by, AnsweredBy::Human, "{d:?}");
}

#[test]
fn a_beep_of_any_usual_frequency_is_a_machine() {
    for hz in [440.0, 850.0, 1000.0, 1400.0, 2100.0] {
        let audio = cat(&[silence(1000), tone(hz, 400, 8000.0), silence(2000)]);
        let audio = mix(&audio, &noise(3400, 60.0, 3));
        let d = decided(&run(AmdConfig::default(), &audio));
        assert_eq!(
            (d.answered_by, d.cue),
            (AnsweredBy::Machine, AmdCue::Beep),
            "{hz} Hz"
        );
        // Tone from 1000 ms; beep_min 120 ms plus the 40 ms window.
        assert!((1100..=1220).contains(&d.decision_ms), "{hz} Hz: {d:?}");
    }
}

#[test]
fn speech_is_never_taken_for_a_tone() {
    let s = speech(3000, 250, 6000.0);
    let noisy = mix(&s, &noise(3000, 100.0, 11));
    for audio in [&s, &noisy] {
        let tones = audio
            .windows(TONE_WINDOW)
            .step_by(FRAME)
            .filter(|w| steady_tone_hz(w).is_some())
            .count();
        assert_eq!(tones, 0);
    }
    // The predictor names the tone's frequency.
    let hz = steady_tone_hz(&tone(1000.0, 40, 8000.0)).expect("a tone");
    assert!((hz - 1000.0).abs() < 5.0, "{hz}");
    // A hum below the band is not a beep.
    assert_eq!(steady_tone_hz(&tone(120.0, 40, 8000.0)), None);
}

#[test]
fn a_blip_shorter_than_a_beep_is_not_one() {
    // 60 ms of tone, then a short hello: a person.
    let audio = cat(&[
        silence(500),
        tone(1000.0, 60, 8000.0),
        silence(300),
        speech(500, 250, 6000.0),
        silence(2000),
    ]);
    let d = decided(&run(AmdConfig::default(), &audio));
    assert_eq!(d.answered_by, AnsweredBy::Human, "{d:?}");
}

#[test]
fn leave_message_waits_for_the_end_of_the_beep() {
    let audio = cat(&[
        silence(200),
        speech(4000, 300, 6000.0),
        silence(500),
        tone(1000.0, 500, 8000.0),
        silence(3000),
    ]);
    let evs = run(AmdConfig::default(), &audio);
    let d = decided(&evs);
    assert_eq!(
        (d.answered_by, d.cue),
        (AnsweredBy::Machine, AmdCue::LongGreeting)
    );
    let ready: Vec<_> = evs
        .iter()
        .filter_map(|e| match e {
            AmdEvent::ReadyForMessage { at_ms, cue } => Some((*at_ms, *cue)),
            _ => None,
        })
        .collect();
    assert_eq!(ready.len(), 1, "{evs:?}");
    let (at, cue) = ready[0];
    assert_eq!(cue, RecordingCue::BeepEnded);
    // The beep ends at 5200 ms; its last 40 ms window clears one frame later.
    assert!((5200..=5260).contains(&at), "{at}");
}

#[test]
fn leave_message_without_a_beep_speaks_after_the_greeting_and_silence() {
    let audio = cat(&[silence(200), speech(4000, 300, 6000.0), silence(4000)]);
    let evs = run(AmdConfig::default(), &audio);
    let ready = evs.iter().find_map(|e| match e {
        AmdEvent::ReadyForMessage { at_ms, cue } => Some((*at_ms, *cue)),
        _ => None,
    });
    let (at, cue) = ready.expect("ready");
    assert_eq!(cue, RecordingCue::Silence);
    // Greeting ends at ~4200 ms (its last dip up to 60 ms earlier), + 1500 ms.
    assert!((5620..=5720).contains(&at), "{at}");
}

#[test]
fn a_beep_decides_and_readies_at_once_when_it_ends_before_the_decision() {
    // A beep 100 ms past beep_min then silence: one Decided, then ready
    // without waiting for anything else.
    let audio = cat(&[silence(400), tone(1400.0, 300, 8000.0), silence(400)]);
    let mut det = AmdDetector::new(AmdConfig::default());
    let mut evs = vec![];
    for (i, f) in audio.chunks(160).enumerate() {
        evs.extend(det.push(Duration::from_millis((i as u64 + 1) * 20), f));
    }
    assert!(
        matches!(
            evs[0],
            AmdEvent::Decided(AmdDecision {
                answered_by: AnsweredBy::Machine,
                cue: AmdCue::Beep,
                ..
            })
        ),
        "{evs:?}"
    );
    assert!(
        matches!(
            evs[1],
            AmdEvent::ReadyForMessage {
                cue: RecordingCue::BeepEnded,
                ..
            }
        ),
        "{evs:?}"
    );
    assert!(det.is_done());
}

#[test]
fn leave_message_speaks_anyway_after_the_wait_cap() {
    let cfg = AmdConfig {
        message_wait_max: Duration::from_secs(5),
        ..AmdConfig::default()
    };
    // A greeting that never pauses.
    let audio = speech(12_000, 10_000, 6000.0);
    let evs = run(cfg, &audio);
    let d = decided(&evs);
    let ready = evs.iter().find_map(|e| match e {
        AmdEvent::ReadyForMessage { at_ms, cue } => Some((*at_ms, *cue)),
        _ => None,
    });
    assert_eq!(ready, Some((d.decision_ms + 5000, RecordingCue::Timeout)));
}
